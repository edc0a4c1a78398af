/*
 * examples/simulators/digitalpost.c — kanal-sim-digitalpost, the simulated SF1601 Digital Post
 * service of Serviceplatformen ("Afsend post"), as contracts/README.md §3 describes it: it
 * validates every kombi_request and the MeMo and print parts in it against the contract's
 * schemas with libxml2 (xmlSchemaValidateDoc), applies the rules the schemas cannot say
 * (which parts each KombiValgKode needs, the dummy recipient CPR of the print part, the file
 * name and https rules of the "øget validering"), answers PostForespoerg from the synthetic
 * population, and "delivers" what it accepts into an in-memory mailbox tests can list.
 *
 *   POST /service/KombiPostAfsend_1/kombi   (also /memos) Content-Type: application/xml,
 *       Authorization: Holder-of-key <token> with --set sts=… or --set token=…,
 *       x-TransaktionsId and x-TransaktionsTid required.
 *     200 <KombiPostAfsendResponse><Result>true</Result><TransmissionID>…</…>  accepted
 *         (the same messageUUID again: the first TransmissionID, no second letter)
 *     400 <KombiPostAfsendResponse><Result>false</Result><FejlKode>memo.invalid |
 *         request.invalid</FejlKode><FejlTekst>…</FejlTekst></…>   refused, naming the fault
 *     401 {"code","reason"}: no, untrusted or expired client certificate (over https), no
 *         token, a token the STS did not issue or that expired, one for the other service's
 *         entity ID, or one bound to another certificate than the TLS client's; 409 a messageUUID used for another recipient; 415 not XML
 *   GET /service/PostForespoerg_1/digitalpost?cprNumber=DDMMYYSSSS   {"result": true|false}
 *   GET /digitalpost/v1/messages        what was accepted, recipients masked (tests, demo),
 *                                       with counts: received, refused, and invalid — the
 *                                       requests that broke the contract (schema, headers,
 *                                       cprNumber), which tests assert stay 0
 *   GET /digitalpost/v1/messages/<TransmissionID>   the kombi_request as received
 *
 * Settings: --set tls_cert/tls_key/tls_ca (sim.h: https with mutual TLS); --set sts=URL,
 * the STS simulator (kanal-sim-sts) that issued the access tokens: each token is checked
 * there (its introspection, over mutual TLS with tls_cert/tls_key) for this service's entity
 * ID and the caller's certificate, as the real platform checks its own tokens; or, for tests
 * without an STS, --set token=SECRET, one fixed token; --set schemas=DIR (default: contracts/schemas of the source
 * tree, found from the working directory or beside the program).
 * A "garbage" fault answers 200 with a body that is not the response XML.
 *
 * Privacy, as the real service: PostForespoerg never says why a citizen cannot receive
 * Digital Post (the reason can be health data), and nothing logged or listed holds a clear
 * CPR number.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <unistd.h>

#include <kanal/kanal.h>

#include "population.h"
#include "sim.h"

#define DP_NS_MEMO "https://DigitalPost.dk/MeMo-1"
#define DP_NS_PRINT "urn:oio:fjernprint:1.0.0"
#define DP_PATH "/digitalpost/v1/messages"
#define DP_KOMBI_PATH "/service/KombiPostAfsend_1/kombi"
#define DP_MEMOS_PATH "/service/KombiPostAfsend_1/memos"
#define DP_FORESPOERG_PATH "/service/PostForespoerg_1/digitalpost"
#define DP_ENTITY_KOMBI "http://entityid.kombit.dk/service/kombipostafsend/1"
#define DP_ENTITY_FORESPOERG "http://entityid.kombit.dk/service/postforespoerg/1"
#define DP_MAX_LABEL 1024
#define DP_MAX_FILENAME 255
#define DP_PUSH_RETRY_MS 250      /* the first wait before a push again; doubles */
#define DP_PUSH_RETRY_MAX_MS 8000 /* up to this */

/* One delivered letter. */
typedef struct dp_letter {
	char uuid[37];
	char transaction[40];
	char recipient[16]; /* masked */
	char recipient_digits[11];
	char channel[16];
	char created[40]; /* when the simulator took it (RFC 3339) */
	char *label;
	char *sender; /* the sender's label */
	char *filename;
	char *action;  /* the action code, or NULL */
	char *request; /* the SendRequest as received */
} dp_letter_t;

/* A PKO_PostStatus waiting to be pushed to the callback. */
typedef struct dp_push {
	char uuid[37], transaction[40], kanal[16], code[48], fejl[32];
} dp_push_t;

typedef struct dp_state {
	/* The statuses waiting to be pushed, shared with the pusher's thread under push_lock
	 * (taken, when both are, after the simulator's lock). */
	pthread_mutex_t push_lock;
	pthread_cond_t push_cond;
	dp_push_t pushes[256];
	size_t n_pushes;
	unsigned long pushed, push_failures;
	char status_fault[16]; /* "none", "failed" or "silent" */
	dp_letter_t *letters;
	size_t n_letters, cap;
	unsigned run_id; /* keeps transactions of two simulator runs apart */
	unsigned long received, refused, duplicates;
	unsigned long invalid;         /* requests breaking the contract: tests assert none */
	xmlSchemaPtr kombi11, kombi12; /* kombi_request with MeMo 1.1 / 1.2 */
} dp_state_t;

/* What a check found wrong: the first problem wins. */
typedef struct dp_check {
	char reason[512];
} dp_check_t;

static void s_fail(dp_check_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void s_fail(dp_check_t *c, const char *fmt, ...)
{
	va_list ap;

	if (c->reason[0])
		return;
	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof c->reason, fmt, ap);
	va_end(ap);
}

/* Answers a JSON error {"code", "reason"}. */
static void s_error(sim_response_t *res, int status, const char *code, const char *reason)
{
	json_t *j = json_pack("{s:s, s:s}", "code", code, "reason", reason);
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	if (text)
		sim_reply_take(res, status, "application/json", text, strlen(text));
	else
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
}

/* ---- checking a MeMo ------------------------------------------------------------------ */

/* The first child element of parent named `name` in namespace ns, or NULL. */
static xmlNodePtr s_child(xmlNodePtr parent, const char *ns, const char *name)
{
	for (xmlNodePtr n = parent ? parent->children : NULL; n; n = n->next)
		if (n->type == XML_ELEMENT_NODE && n->ns &&
		    !strcmp((const char *)n->ns->href, ns) && !strcmp((const char *)n->name, name))
			return n;
	return NULL;
}

/* Length in bytes of the UTF-8 sequence at p that is a forbidden unicode blank or line
 * break (NBSP, NEL, U+1680, U+2000-U+200B, U+2028/9, U+202F, U+205F, U+3000, U+FEFF),
 * or 0. */
static size_t s_unicode_blank(const unsigned char *p)
{
	if (p[0] == 0xC2 && (p[1] == 0xA0 || p[1] == 0x85))
		return 2;
	if (p[0] == 0xE1 && p[1] == 0x9A && p[2] == 0x80)
		return 3;
	if (p[0] == 0xE2 && p[1] == 0x80 &&
	    ((p[2] >= 0x80 && p[2] <= 0x8B) || p[2] == 0xA8 || p[2] == 0xA9 || p[2] == 0xAF))
		return 3;
	if (p[0] == 0xE2 && p[1] == 0x81 && p[2] == 0x9F)
		return 3;
	if (p[0] == 0xE3 && p[1] == 0x80 && p[2] == 0x80)
		return 3;
	if (p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
		return 3;
	return 0;
}

/* Checks a file name as Digital Post does. */
static void s_check_filename(dp_check_t *c, const char *name)
{
	const char *where = "MessageBody/MainDocument/File/filename";

	if (strlen(name) > DP_MAX_FILENAME) {
		s_fail(c, "%s: longer than %d bytes", where, DP_MAX_FILENAME);
		return;
	}
	if (!strcmp(name, ".") || !strcmp(name, "..")) {
		s_fail(c, "%s: not a file name", where);
		return;
	}
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (*p < 0x20 || *p == 0x7F) {
			s_fail(c, "%s: control character or line break at byte %zu", where,
			       (size_t)(p - (const unsigned char *)name));
			return;
		}
		if (strchr("<>:\"/\\|?*", *p)) {
			s_fail(c, "%s: character '%c' is not allowed", where, *p);
			return;
		}
		if (s_unicode_blank(p)) {
			s_fail(c, "%s: unicode space or line break at byte %zu", where,
			       (size_t)(p - (const unsigned char *)name));
			return;
		}
	}
}

/* True when text is an absolute https URL with a host and no blanks or controls. */
static bool s_https_ok(const char *text)
{
	if (strncmp(text, "https://", 8) || !text[8] || text[8] == '/' || text[8] == ':')
		return false;
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		if (*p <= 0x20 || *p == 0x7F)
			return false;
	return true;
}

static bool s_uuid_ok(const char *text)
{
	if (strlen(text) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? text[i] != '-' : !isxdigit((unsigned char)text[i]))
			return false;
	}
	return true;
}

static bool s_digits(const char *text, size_t n)
{
	if (strlen(text) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)text[i]))
			return false;
	return true;
}

/* What a kombi_request says, for the mailbox. Strings malloc'd. */
typedef struct dp_memo {
	char *kombi, *type, *uuid, *label, *sender_label, *recipient, *filename, *action;
	bool print;
} dp_memo_t;

static void s_memo_free(dp_memo_t *m)
{
	free(m->kombi);
	free(m->type);
	free(m->uuid);
	free(m->label);
	free(m->sender_label);
	free(m->recipient);
	free(m->filename);
	free(m->action);
	memset(m, 0, sizeof *m);
}

/* The first schema validation error, kept for the fault text. */
static void s_schema_error(void *ctx, const xmlError *err)
{
	dp_check_t *c = ctx;

	if (err && err->message)
		s_fail(c, "line %d: %.400s", err->line, err->message);
}

/* The text of a descendant path of element names (namespace ns), or NULL. */
static char *s_path_text(xmlNodePtr n, const char *ns, const char *const *names)
{
	xmlChar *raw;
	char *out;

	for (; n && *names; names++)
		n = s_child(n, ns, *names);
	if (!n)
		return NULL;
	raw = xmlNodeGetContent(n);
	out = raw ? strdup((const char *)raw) : NULL;
	xmlFree(raw);
	return out;
}

/* Applies the rules the schemas cannot express (contracts/README.md 3.1, 3.2, 3.4) to a
 * kombi_request that validated, and fills m. */
static void s_check_kombi(dp_check_t *c, xmlNodePtr root, dp_memo_t *m)
{
	xmlNodePtr code = NULL, msg = NULL, print = NULL, header, body, doc;

	for (xmlNodePtr n = root->children; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (!n->ns && !strcmp((const char *)n->name, "KombiValgKode"))
			code = n;
		else if (n->ns && !strcmp((const char *)n->ns->href, DP_NS_MEMO))
			msg = n;
		else if (n->ns && !strcmp((const char *)n->ns->href, DP_NS_PRINT))
			print = n;
	}
	{
		xmlChar *raw = code ? xmlNodeGetContent(code) : NULL;
		m->kombi = raw ? strdup((const char *)raw) : NULL;
		xmlFree(raw);
	}
	if (!m->kombi) {
		s_fail(c, "kombi_request/KombiValgKode: missing");
		return;
	}
	m->print = print != NULL;
	/* Which parts each code needs: Digital Post and NemSMS a Message and no print part,
	 * Automatisk Valg both, Fysisk Post the print part. */
	if (!strcmp(m->kombi, "Automatisk Valg") && (!msg || !print)) {
		s_fail(c, "KombiValgKode 'Automatisk Valg' needs both memo:Message and "
			  "ForsendelseISamling");
		return;
	}
	if (!strcmp(m->kombi, "Fysisk Post") && !print) {
		s_fail(c, "KombiValgKode 'Fysisk Post' needs ForsendelseISamling");
		return;
	}
	if ((!strcmp(m->kombi, "Digital Post") || !strcmp(m->kombi, "NemSMS")) && !msg) {
		s_fail(c, "KombiValgKode '%s' needs memo:Message", m->kombi);
		return;
	}
	if ((!strcmp(m->kombi, "Digital Post") || !strcmp(m->kombi, "NemSMS")) && print) {
		s_fail(c, "KombiValgKode '%s' takes no ForsendelseISamling", m->kombi);
		return;
	}
	if (print) {
		static const char *const cpr[] = { "ForsendelseI", "ForsendelseModtager", NULL };
		xmlNodePtr rcv = s_child(s_child(print, DP_NS_PRINT, cpr[0]), DP_NS_PRINT, cpr[1]);
		xmlNodePtr who = s_child(rcv, "urn:oio:dkal:1.0.0", "AfsendelseModtager");
		xmlNodePtr num =
			s_child(who, "urn:oio:adir:dagpenge:2009.07.01", "CPRnummerIdentifikator");
		xmlChar *raw = num ? xmlNodeGetContent(num) : NULL;
		bool dummy = !num || (raw && !strcmp((const char *)raw, "0000000000"));
		xmlFree(raw);
		if (!dummy) {
			s_fail(c, "ForsendelseI/ForsendelseModtager: the recipient CPR must be "
				  "the dummy 0000000000 with the full postal address");
			return;
		}
		if (!rcv || !s_child(rcv, DP_NS_PRINT, "ModtagerAdresse")) {
			s_fail(c, "ForsendelseI/ForsendelseModtager/ModtagerAdresse: missing");
			return;
		}
	}
	if (!msg)
		return;
	header = s_child(msg, DP_NS_MEMO, "MessageHeader");
	body = s_child(msg, DP_NS_MEMO, "MessageBody");
	{
		static const char *const t[] = { "messageType", NULL },
					 *const u[] = { "messageUUID", NULL },
					 *const l[] = { "label", NULL },
					 *const sl[] = { "Sender", "label", NULL },
					 *const r[] = { "Recipient", "recipientID", NULL };
		m->type = s_path_text(header, DP_NS_MEMO, t);
		m->uuid = s_path_text(header, DP_NS_MEMO, u);
		m->label = s_path_text(header, DP_NS_MEMO, l);
		m->sender_label = s_path_text(header, DP_NS_MEMO, sl);
		m->recipient = s_path_text(header, DP_NS_MEMO, r);
	}
	if (!m->type || !m->uuid || !m->label || !m->recipient) {
		s_fail(c, "memo:Message: header incomplete");
		return;
	}
	if (!strcmp(m->kombi, "NemSMS") != !strcmp(m->type, "NEMSMS")) {
		s_fail(c, "MessageHeader/messageType: %s does not go with KombiValgKode '%s'",
		       m->type, m->kombi);
		return;
	}
	if (!m->sender_label || !*m->sender_label) {
		s_fail(c, "MessageHeader/Sender/label: empty");
		return;
	}
	if (strcmp(m->type, "NEMSMS") && !body) {
		s_fail(c, "memo:Message/MessageBody: missing");
		return;
	}
	/* The "øget validering": file names and https entry points, in every document. */
	for (doc = body ? body->children : NULL; doc; doc = doc->next) {
		if (doc->type != XML_ELEMENT_NODE || !doc->ns ||
		    strcmp((const char *)doc->ns->href, DP_NS_MEMO) ||
		    (strcmp((const char *)doc->name, "MainDocument") &&
		     strcmp((const char *)doc->name, "AdditionalDocument")))
			continue;
		for (xmlNodePtr f = doc->children; f; f = f->next) {
			static const char *const fn[] = { "filename", NULL },
						 *const ac[] = { "actionCode", NULL },
						 *const url[] = { "EntryPoint", "url", NULL };
			char *v;
			if (f->type != XML_ELEMENT_NODE)
				continue;
			if (!strcmp((const char *)f->name, "File") &&
			    (v = s_path_text(f, DP_NS_MEMO, fn))) {
				s_check_filename(c, v);
				if (!m->filename)
					m->filename = v;
				else
					free(v);
			} else if (!strcmp((const char *)f->name, "Action")) {
				if (!m->action)
					m->action = s_path_text(f, DP_NS_MEMO, ac);
				v = s_path_text(f, DP_NS_MEMO, url);
				if (v && !s_https_ok(v))
					s_fail(c,
					       "Action/EntryPoint/url: not an absolute https URL");
				free(v);
			}
		}
	}
}

/* ---- recipients ------------------------------------------------------------------------ */

/* Age in whole years on today's date of someone born y-m-d. */
static int s_age(int y, int mo, int d)
{
	time_t t = time(NULL);
	struct tm tm;
	int age;

	localtime_r(&t, &tm);
	age = tm.tm_year + 1900 - y;
	if (tm.tm_mon + 1 < mo || (tm.tm_mon + 1 == mo && tm.tm_mday < d))
		age--;
	return age;
}

/* Whether this person can receive Digital Post: alive, resident, 15 or older, enrolled and
 * not exempt — what PostForespoerg answers. */
static bool s_can_receive(const char *cpr_digits)
{
	const sim_person_t *p = sim_person_find(cpr_digits);
	kanal_cpr_t cpr;

	if (!p || kanal_cpr_parse(cpr_digits, &cpr, NULL) != 0)
		return false;
	if (p->status != 1 && p->status != 3 && p->status != 5 && p->status != 7)
		return false;
	if (s_age(cpr.year, cpr.month, cpr.day) < 15)
		return false;
	return p->digital_post && !p->exempt;
}

/* ---- the handlers ------------------------------------------------------------------------ */

static dp_letter_t *s_find_uuid(dp_state_t *st, const char *uuid)
{
	for (size_t i = 0; i < st->n_letters; i++)
		if (!strcasecmp(st->letters[i].uuid, uuid))
			return &st->letters[i];
	return NULL;
}

/* Answers the KombiPostAfsend response XML: Result true with the TransmissionID, or Result
 * false with FejlKode and FejlTekst (escaped by libxml2). */
static void s_reply_kombi(sim_response_t *res, int status, const char *tx, const char *code,
			  const char *text)
{
	xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
	xmlNodePtr root = doc ? xmlNewNode(NULL, (const xmlChar *)"KombiPostAfsendResponse") : NULL;
	xmlChar *out = NULL;
	int n = 0;

	if (root) {
		xmlDocSetRootElement(doc, root);
		xmlNewTextChild(root, NULL, (const xmlChar *)"Result",
				(const xmlChar *)(tx ? "true" : "false"));
		if (tx)
			xmlNewTextChild(root, NULL, (const xmlChar *)"TransmissionID",
					(const xmlChar *)tx);
		if (code) {
			xmlNewTextChild(root, NULL, (const xmlChar *)"FejlKode",
					(const xmlChar *)code);
			xmlNewTextChild(root, NULL, (const xmlChar *)"FejlTekst",
					(const xmlChar *)text);
		}
		xmlDocDumpMemoryEnc(doc, &out, &n, "UTF-8");
	}
	if (out)
		sim_reply(res, status, "application/xml", (const char *)out, n);
	else
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
	xmlFree(out);
	xmlFreeDoc(doc);
}

/* The MeMo version a kombi_request carries (its memo:Message's memoVersion): 11 or 12. */
static int s_memo_version(xmlNodePtr root)
{
	for (xmlNodePtr n = root->children; n; n = n->next)
		if (n->type == XML_ELEMENT_NODE && n->ns &&
		    !strcmp((const char *)n->ns->href, DP_NS_MEMO)) {
			xmlChar *v = xmlGetProp(n, (const xmlChar *)"memoVersion");
			int version = v && !strcmp((const char *)v, "1.1") ? 11 : 12;
			xmlFree(v);
			return version;
		}
	return 12;
}

/* Queues the letter's PKO_PostStatus for the callback (--set callback=URL), as the platform
 * would decide it: delivered to the inbox when the recipient can receive Digital Post,
 * printed when Automatisk Valg or Fysisk Post sends it on paper, failed when Digital Post
 * cannot deliver it — or what the status fault says (failed: every letter fails; silent:
 * no status at all). */
static void s_queue_status(sim_t *sim, dp_state_t *st, const dp_letter_t *l)
{
	dp_push_t *p;
	bool can = s_can_receive(l->recipient_digits);

	if (!sim_setting(sim, "callback", NULL) || !strcmp(st->status_fault, "silent"))
		return;
	pthread_mutex_lock(&st->push_lock);
	if (st->n_pushes == sizeof st->pushes / sizeof *st->pushes) {
		pthread_mutex_unlock(&st->push_lock);
		sim_log(sim, "%zu statuses waiting to be pushed: the one for %s is dropped",
			st->n_pushes, l->uuid);
		return;
	}
	p = &st->pushes[st->n_pushes++];
	memset(p, 0, sizeof *p);
	snprintf(p->uuid, sizeof p->uuid, "%s", l->uuid);
	snprintf(p->transaction, sizeof p->transaction, "%s", l->transaction);
	if (!strcmp(st->status_fault, "failed") || (!strcmp(l->channel, "Digital Post") && !can)) {
		snprintf(p->kanal, sizeof p->kanal, "Digital Post");
		snprintf(p->code, sizeof p->code, "Fejlet");
		snprintf(p->fejl, sizeof p->fejl, "%s", can ? "memo.invalid" : "recipient.blocked");
	} else if (!strcmp(l->channel, "Fysisk Post") ||
		   (!strcmp(l->channel, "Automatisk Valg") && !can)) {
		snprintf(p->kanal, sizeof p->kanal, "Fysisk Post");
		snprintf(p->code, sizeof p->code, "Afleveret til print og kuvertering");
	} else {
		snprintf(p->kanal, sizeof p->kanal, "%s",
			 !strcmp(l->channel, "NemSMS") ? "NemSMS" : "Digital Post");
		snprintf(p->code, sizeof p->code, "Afleveret Digital Post");
	}
	pthread_cond_signal(&st->push_cond);
	pthread_mutex_unlock(&st->push_lock);
}

/* The ModtagBeskedInput the Beskedfordeler POSTs: the envelope with the PKO_PostStatus in
 * Beskeddata/Base64 (contracts/examples/sf1601/ModtagBeskedInput.PKO_PostStatus.xml). */
static char *s_besked(const dp_push_t *p)
{
	char stamp[40], pko[2048], *b64, *out = NULL;
	int n;

	sim_rfc3339_now(stamp);
	n = snprintf(
		pko, sizeof pko,
		"<PKO_PostStatus xmlns=\"http://serviceplatformen.dk/xml/print/PKO_PostStatus/1/"
		"types\"><TransmissionId>%s</TransmissionId><MessageUUID>%s</MessageUUID>"
		"<KanalKode>%s</KanalKode><TransaktionsDatoTid>%s</TransaktionsDatoTid>"
		"<TransaktionsStatusKode>%s</TransaktionsStatusKode><CorrelationId>%s"
		"</CorrelationId>%s%s%s</PKO_PostStatus>",
		p->transaction, p->uuid, p->kanal, stamp, p->code, p->transaction,
		*p->fejl ? "<FejlDetaljer><FejlKode>" : "<FejlDetaljer/>", p->fejl,
		*p->fejl ? "</FejlKode><FejlTekst>the simulator's synthetic failure"
			   "</FejlTekst></FejlDetaljer>"
			 : "");
	if (n < 0 || (size_t)n >= sizeof pko || !(b64 = malloc(((size_t)n + 2) / 3 * 4 + 1)))
		return NULL;
	EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)pko, n);
	if (asprintf(&out,
		     "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
		     "<ns4:ModtagBeskedInput xmlns=\"urn:oio:sagdok:3.0.0\" "
		     "xmlns:ns2=\"urn:oio:besked:kuvert:1.0\" xmlns:ns4=\"urn:oio:sts:1.0.0\">"
		     "<ns2:Haendelsesbesked><ns2:BeskedId><UUIDIdentifikator>%s</UUIDIdentifikator>"
		     "</ns2:BeskedId><ns2:BeskedVersion>1.0</ns2:BeskedVersion><ns2:Beskeddata>"
		     "<Base64 xmlns=\"urn:besked:kuvert:1.0\" content-type=\"application/xml\" "
		     "encoding=\"UTF-8\" file-type=\".xml\">%s</Base64></ns2:Beskeddata>"
		     "</ns2:Haendelsesbesked></ns4:ModtagBeskedInput>\n",
		     p->transaction, b64) < 0)
		out = NULL;
	free(b64);
	return out;
}

/* Collects an answer body (up to 64 KiB). */
static size_t s_collect(char *ptr, size_t size, size_t n, void *arg)
{
	FILE *m = arg;

	return fwrite(ptr, size, n, m);
}

/* POSTs one status to the callback: true when it was taken, that is HTTP 200 with
 * ModtagBeskedOutput's StatusKode 20 (contract 3.7); 40 or anything else is a failure. */
static bool s_push(sim_t *sim, const char *url, const dp_push_t *p)
{
	char *body = s_besked(p), *answer = NULL;
	size_t answer_len = 0;
	FILE *m = open_memstream(&answer, &answer_len);
	CURL *c = body && m ? curl_easy_init() : NULL;
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/xml");
	long status = 0;
	bool taken;

	if (c) {
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_collect);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, m);
		if (curl_easy_perform(c) == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	}
	if (m)
		fclose(m);
	taken = status == 200 && answer && strstr(answer, "<StatusKode>20</StatusKode>");
	if (taken)
		sim_log(sim, "pushed PKO_PostStatus '%s' for %s", p->code, p->uuid);
	else
		sim_log(sim, "callback answered %ld for %s; will push again", status, p->uuid);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(answer);
	free(body);
	return taken;
}

/* The pusher's thread: pushes the queued statuses in order, whenever there are any, as the
 * Beskedfordeler does — on its own, never holding up the service's answers (the connector
 * may be waiting for one while its callback is pushed to). A status not taken is pushed again
 * after DP_PUSH_RETRY_MS, doubling up to DP_PUSH_RETRY_MAX_MS, until it is: the contract
 * says only that the same message may come more than once. */
static void *s_pusher(void *arg)
{
	sim_t *sim = arg;
	dp_state_t *st = sim_state(sim);
	const char *url = sim_setting(sim, "callback", NULL);
	int64_t wait_ms = DP_PUSH_RETRY_MS;

	for (;;) {
		dp_push_t p;
		bool taken;

		pthread_mutex_lock(&st->push_lock);
		while (!st->n_pushes)
			pthread_cond_wait(&st->push_cond, &st->push_lock);
		p = st->pushes[0];
		pthread_mutex_unlock(&st->push_lock);
		taken = s_push(sim, url, &p);
		pthread_mutex_lock(&st->push_lock);
		if (taken) {
			st->pushed++;
			memmove(st->pushes, st->pushes + 1, --st->n_pushes * sizeof *st->pushes);
		} else {
			st->push_failures++;
		}
		pthread_mutex_unlock(&st->push_lock);
		sim_push_backoff(&wait_ms, taken, DP_PUSH_RETRY_MS, DP_PUSH_RETRY_MAX_MS);
	}
	return NULL;
}

/* POST /service/KombiPostAfsend_1/kombi: validate, refuse or accept one kombi_request. */
static void s_post(sim_t *sim, dp_state_t *st, const sim_request_t *req, sim_response_t *res)
{
	dp_check_t c = { .reason = "" };
	dp_memo_t m = { 0 };
	xmlDocPtr doc = NULL;
	xmlNodePtr root;
	xmlSchemaValidCtxtPtr vctx = NULL;
	const char *txid = sim_header(req, "x-TransaktionsId");
	const char *txtime = sim_header(req, "x-TransaktionsTid");
	dp_letter_t *l;

	st->received++;
	if (!req->content_type || (strncasecmp(req->content_type, "application/xml", 15) &&
				   strncasecmp(req->content_type, "text/xml", 8))) {
		s_reply_kombi(res, 415, NULL, "request.invalid",
			      "the body must be application/xml");
		goto invalid;
	}
	if (!txid || !s_uuid_ok(txid) || !txtime || strlen(txtime) != 20 || txtime[19] != 'Z') {
		s_reply_kombi(res, 400, NULL, "request.invalid",
			      "x-TransaktionsId (a UUID) and x-TransaktionsTid (UTC, "
			      "YYYY-MM-DDThh:mm:ssZ) are required");
		goto invalid;
	}
	doc = xmlReadMemory(req->body, (int)req->body_len, "kombi_request.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (!root) {
		s_reply_kombi(res, 400, NULL, "request.invalid", "the body is not well-formed XML");
		goto invalid;
	}
	/* The schema first: what does not validate is refused, naming the line and element. */
	vctx = xmlSchemaNewValidCtxt(s_memo_version(root) == 11 ? st->kombi11 : st->kombi12);
	if (!vctx) {
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
		goto done;
	}
	xmlSchemaSetValidStructuredErrors(vctx, (xmlStructuredErrorFunc)s_schema_error, &c);
	if (xmlSchemaValidateDoc(vctx, doc) != 0 && !c.reason[0])
		s_fail(&c, "the kombi_request does not validate");
	if (!c.reason[0])
		s_check_kombi(&c, root, &m);
	if (c.reason[0]) {
		s_reply_kombi(res, 400, NULL, "memo.invalid", c.reason);
		goto invalid;
	}

	/* The same messageUUID again is the same letter: the first answer, no second letter. */
	if (m.uuid && (l = s_find_uuid(st, m.uuid))) {
		if (strcmp(l->recipient_digits, m.recipient)) {
			s_reply_kombi(res, 409, NULL, "request.invalid",
				      "this messageUUID was used for another recipient");
			goto refused;
		}
		st->duplicates++;
		s_reply_kombi(res, 200, l->transaction, NULL, NULL);
		sim_log(sim, "duplicate messageUUID %s: TransmissionID %s again", m.uuid,
			l->transaction);
		goto done;
	}
	if (st->n_letters == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 16;
		dp_letter_t *a = realloc(st->letters, cap * sizeof *a);
		if (!a) {
			sim_reply(res, 500, "text/plain", "out of memory\n", -1);
			goto done;
		}
		st->letters = a;
		st->cap = cap;
	}
	l = &st->letters[st->n_letters++];
	memset(l, 0, sizeof *l);
	snprintf(l->uuid, sizeof l->uuid, "%s", m.uuid ? m.uuid : "");
	/* A UUID, as the real TransmissionID; the run id keeps two runs apart. */
	snprintf(l->transaction, sizeof l->transaction, "%08x-0000-4000-8000-%012zx", st->run_id,
		 st->n_letters);
	if (m.recipient) {
		kanal_cpr_mask(m.recipient, l->recipient, sizeof l->recipient);
		snprintf(l->recipient_digits, sizeof l->recipient_digits, "%s", m.recipient);
	}
	snprintf(l->channel, sizeof l->channel, "%s", m.kombi);
	sim_rfc3339_now(l->created);
	l->label = m.label ? m.label : strdup("");
	l->sender = m.sender_label;
	l->filename = m.filename ? m.filename : strdup("");
	l->action = m.action;
	m.label = m.sender_label = m.filename = m.action = NULL;
	l->request = strndup(req->body, req->body_len);
	s_reply_kombi(res, 200, l->transaction, NULL, NULL);
	sim_log(sim, "accepted %s to %s by '%s': TransmissionID %s", l->uuid, l->recipient,
		l->channel, l->transaction);
	s_queue_status(sim, st, l);
	goto done;
invalid:
	/* What the contract forbids, as opposed to a refused caller or a conflict: a bug in
	 * the connector, which the tests assert never happens (GET /digitalpost/v1/messages,
	 * "invalid"). */
	st->invalid++;
refused:
	st->refused++;
	sim_log(sim, "refused: %d %.*s", res->status, (int)res->len, res->body ? res->body : "");
done:
	xmlSchemaFreeValidCtxt(vctx);
	s_memo_free(&m);
	xmlFreeDoc(doc);
}

/* GET /service/PostForespoerg_1/digitalpost?cprNumber=…: {"result": true|false}. */
static void s_forespoerg(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	dp_state_t *st = sim_state(sim);
	const char *cpr = sim_query(req, "cprNumber");

	if (!cpr || !s_digits(cpr, 10)) {
		st->invalid++;
		sim_reply(res, 400, "text/plain", "cprNumber: ten digits required\n", -1);
		return;
	}
	sim_replyf(res, 200, "application/json", "{\"result\": %s}",
		   s_can_receive(cpr) ? "true" : "false");
}

/* GET /digitalpost/v1/messages: the mailbox, recipients masked. */
static void s_list(dp_state_t *st, sim_response_t *res)
{
	json_t *list = json_array(), *j;
	char *text;

	for (size_t i = 0; i < st->n_letters; i++) {
		const dp_letter_t *l = &st->letters[i];
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "transaction",
				      l->transaction, "messageUUID", l->uuid, "label", l->label,
				      "recipient", l->recipient, "channel", l->channel, "sender",
				      l->sender ? l->sender : "", "filename", l->filename,
				      "received", l->created);
		if (o && l->action)
			json_object_set_new(o, "action", json_string(l->action));
		json_array_append_new(list, o);
	}
	pthread_mutex_lock(&st->push_lock);
	j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "received",
		      (json_int_t)st->received, "delivered", (json_int_t)st->n_letters, "refused",
		      (json_int_t)st->refused, "invalid", (json_int_t)st->invalid, "duplicates",
		      (json_int_t)st->duplicates, "statuses_pushed", (json_int_t)st->pushed,
		      "statuses_push_failures", (json_int_t)st->push_failures, "messages", list);
	pthread_mutex_unlock(&st->push_lock);
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (text)
		sim_reply_take(res, 200, "application/json", text, strlen(text));
	else
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
}

/* Asks the STS simulator (--set sts=URL) about an access token, as the real platform checks
 * its own tokens: over mutual TLS with this simulator's certificate. Returns the answer's
 * JSON ({"active", "entity", "holder"}) or NULL when the STS could not be asked. */
static json_t *s_introspect(sim_t *sim, const char *token)
{
	char url[1024], *body = NULL, *form = NULL, *answer = NULL;
	size_t alen = 0;
	long status = 0;
	CURL *c = curl_easy_init();
	FILE *m = open_memstream(&answer, &alen);
	json_t *j = NULL;

	snprintf(url, sizeof url, "%s/service/AccessTokenService_1/introspect",
		 sim_setting(sim, "sts", ""));
	if (c && m && (body = curl_easy_escape(c, token, 0)) &&
	    asprintf(&form, "token=%s", body) >= 0) {
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_collect);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, m);
		if (sim_setting(sim, "tls_cert", NULL)) {
			curl_easy_setopt(c, CURLOPT_SSLCERT, sim_setting(sim, "tls_cert", NULL));
			curl_easy_setopt(c, CURLOPT_SSLKEY, sim_setting(sim, "tls_key", NULL));
			curl_easy_setopt(c, CURLOPT_CAINFO, sim_setting(sim, "tls_ca", NULL));
		}
		if (curl_easy_perform(c) == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	}
	if (m)
		fclose(m);
	if (status == 200 && answer)
		j = json_loadb(answer, alen, 0, NULL);
	if (!j)
		sim_log(sim, "cannot ask the STS at %s about a token (status %ld)", url, status);
	curl_free(body);
	free(form);
	free(answer);
	curl_easy_cleanup(c);
	return j;
}

/* Whether the caller may use the service at path, as Serviceplatformen decides it: over https
 * (tls_cert) a client certificate from the trusted CA, valid now; with --set sts=URL an
 * access token "Holder-of-key <token>" that the STS issued for this service's entity ID and
 * bound to that same TLS certificate; with --set token=SECRET that fixed token (tests without
 * an STS). Refuses with 401 (and says why) when not. */
static bool s_authorised(sim_t *sim, const sim_request_t *req, const char *path,
			 sim_response_t *res)
{
	const char *token = sim_setting(sim, "token", NULL);
	const char *auth = sim_header(req, "Authorization");
	const char *entity =
		!strcmp(path, DP_FORESPOERG_PATH) ? DP_ENTITY_FORESPOERG : DP_ENTITY_KOMBI;
	json_t *j;
	bool ok;

	if (sim_setting(sim, "tls_cert", NULL) && req->client_cert != SIM_CERT_OK) {
		s_error(res, 401,
			req->client_cert == SIM_CERT_EXPIRED     ? "certificate-expired"
			: req->client_cert == SIM_CERT_UNTRUSTED ? "certificate-untrusted"
								 : "certificate-missing",
			req->client_cert == SIM_CERT_EXPIRED
				? "the client certificate has expired or is not yet valid"
			: req->client_cert == SIM_CERT_UNTRUSTED
				? "the client certificate is not issued by a trusted CA"
				: "no client certificate (mutual TLS is required)");
		return false;
	}
	if (!sim_setting(sim, "sts", NULL) && !token)
		return true;
	/* The access token goes with its type, "Holder-of-key", never as a Bearer token. */
	if (!auth || strncmp(auth, "Holder-of-key ", 14)) {
		s_error(res, 401, "token-missing",
			"Authorization: Holder-of-key <access token> is required");
		return false;
	}
	if (!sim_setting(sim, "sts", NULL)) {
		if (strcmp(auth + 14, token)) {
			s_error(res, 401, "token-invalid", "the access token is not valid");
			return false;
		}
		return true;
	}
	if (!(j = s_introspect(sim, auth + 14))) {
		s_error(res, 503, "sts-unavailable", "the token cannot be checked now");
		return false;
	}
	ok = false;
	if (!json_is_true(json_object_get(j, "active")))
		s_error(res, 401, "token-invalid",
			json_string_value(json_object_get(j, "reason"))
				? json_string_value(json_object_get(j, "reason"))
				: "inactive token");
	else if (!json_string_value(json_object_get(j, "entity")) ||
		 strcmp(json_string_value(json_object_get(j, "entity")), entity))
		s_error(res, 401, "token-wrong-service",
			"the access token was issued for another service's entity ID");
	else if (!json_string_value(json_object_get(j, "holder")) ||
		 strcmp(json_string_value(json_object_get(j, "holder")), req->client_cert_b64))
		s_error(res, 401, "holder-of-key-mismatch",
			"the TLS client certificate is not the one the token is bound to");
	else
		ok = true;
	json_decref(j);
	return ok;
}

static void s_handle(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	dp_state_t *st = sim_state(sim);
	const char *path = req->path;

	if (strncmp(path, DP_PATH, strlen(DP_PATH)) && !s_authorised(sim, req, path, res)) {
		st->refused++;
		return;
	}
	if (!strcmp(path, DP_KOMBI_PATH) || !strcmp(path, DP_MEMOS_PATH)) {
		if (!strcmp(req->method, "POST"))
			s_post(sim, st, req, res);
		else
			sim_reply(res, 405, "text/plain", "use POST\n", -1);
		return;
	}
	if (!strcmp(path, DP_FORESPOERG_PATH) && !strcmp(req->method, "GET")) {
		s_forespoerg(sim, req, res);
		return;
	}
	if (!strcmp(path, DP_PATH "-status-fault") && !strcmp(req->method, "POST")) {
		snprintf(st->status_fault, sizeof st->status_fault, "%.*s",
			 (int)(req->body_len < 15 ? req->body_len : 15),
			 req->body ? req->body : "");
		sim_replyf(res, 200, "text/plain", "status fault: %s\n", st->status_fault);
		return;
	}
	if (!strcmp(path, DP_PATH) && !strcmp(req->method, "GET")) {
		s_list(st, res);
		return;
	}
	if (!strncmp(path, DP_PATH "/", strlen(DP_PATH) + 1) && !strcmp(req->method, "GET")) {
		const char *tx = path + strlen(DP_PATH) + 1;
		for (size_t i = 0; i < st->n_letters; i++)
			if (!strcmp(st->letters[i].transaction, tx)) {
				sim_reply(res, 200, "application/xml", st->letters[i].request, -1);
				return;
			}
		s_error(res, 404, "not-found", "no such transaction");
		return;
	}
	s_error(res, 404, "not-found", "no such resource");
}

static int s_setup(sim_t *sim)
{
	static dp_state_t state;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	state.run_id = (unsigned)(ts.tv_nsec ^ (ts.tv_sec << 10));
	xmlInitParser();
	state.kombi11 = sim_schema(sim, "sf1601/kanal-authored/kombi_request-memo11.xsd");
	state.kombi12 = sim_schema(sim, "sf1601/kanal-authored/kombi_request-memo12.xsd");
	if (!state.kombi11 || !state.kombi12)
		return -1;
	sim_set_state(sim, &state);
	pthread_mutex_init(&state.push_lock, NULL);
	pthread_cond_init(&state.push_cond, NULL);
	/* Before any second thread: curl's global set-up is not thread-safe. */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (sim_setting(sim, "callback", NULL)) {
		sim_thread_start(sim, s_pusher, "the pusher");
	}
	return 0;
}

int main(int argc, char **argv)
{
	return sim_main(argc, argv,
			&(sim_def_t){ .name = "digitalpost",
				      .handle = s_handle,
				      .setup = s_setup,
				      .garbage_type = "application/xml",
				      .garbage_body = "<KombiPostAfsendResponse><Result>tr" });
}
