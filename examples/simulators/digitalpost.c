/*
 * examples/simulators/digitalpost.c — kanal-sim-digitalpost, the simulated Digital Post
 * service: it takes MeMo letters over HTTP, checks them as strictly as the real service
 * would, refuses recipients without a Digital Post mailbox (from the synthetic population:
 * not enrolled, exempt, under 15, dead, emigrated, unknown) with a machine-readable code,
 * and "delivers" the rest into an in-memory mailbox that tests and the demo can list.
 *
 * The API (docs/plugins/digitalpost.md has the full text):
 *
 *   POST /digitalpost/v1/messages      Content-Type: application/xml, body a SendRequest:
 *       <dp:SendRequest xmlns:dp="urn:kanal:digitalpost:1">
 *         <dp:channel>Digital Post</dp:channel>           (or NemSMS)
 *         <memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1"> … </memo:Message>
 *       </dp:SendRequest>
 *     201 {"transaction", "messageUUID", "channel", "duplicate": false}   delivered
 *     200 the same, "duplicate": true    a messageUUID seen before: no second letter
 *     400 {"code": "invalid-memo" | "invalid-request", "reason"}   the letter is malformed
 *     409 {"code": "uuid-conflict"}      the messageUUID was used for another recipient
 *     415 not XML; 401 {"code": "unauthorized"} when --set token=… is given and not sent
 *     422 {"code": "not-enrolled" | "exempt" | "under-15" | "deceased" | "emigrated" |
 *          "unknown-recipient" | "unsupported-channel", "reason"}   no mailbox for this one
 *   GET /digitalpost/v1/messages       what was delivered, recipients masked:
 *     {"received": N, "delivered": N, "refused": N, "duplicates": N, "messages": [ … ]}
 *   GET /digitalpost/v1/messages/<transaction>   the SendRequest as received (XML)
 *
 * Settings: --set token=SECRET (require Authorization: Bearer SECRET on /digitalpost/).
 * A "garbage" fault answers 200 with a broken JSON body, as a broken proxy might.
 *
 * Privacy, as the real service: a refusal never says why a citizen is exempt (the reason
 * can be health data), and nothing logged or listed holds a clear CPR number.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include <kanal/kanal.h>

#include "population.h"
#include "sim.h"

#define DP_NS_MEMO "https://DigitalPost.dk/MeMo-1"
#define DP_NS_SEND "urn:kanal:digitalpost:1"
#define DP_PATH "/digitalpost/v1/messages"
#define DP_MAX_LABEL 1024
#define DP_MAX_FILENAME 255

/* One delivered letter. */
typedef struct dp_letter {
	char uuid[37];
	char transaction[40];
	char recipient[16];   /* masked */
	char recipient_digits[11];
	char channel[16];
	char created[40];     /* when the simulator took it (RFC 3339) */
	char *label;
	char *sender;         /* the sender's label */
	char *filename;
	char *action;         /* the action code, or NULL */
	char *request;        /* the SendRequest as received */
} dp_letter_t;

typedef struct dp_state {
	dp_letter_t *letters;
	size_t n_letters, cap;
	unsigned run_id;      /* keeps transactions of two simulator runs apart */
	unsigned long received, refused, duplicates;
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
		if (n->type == XML_ELEMENT_NODE && n->ns && !strcmp((const char *)n->ns->href, ns) &&
		    !strcmp((const char *)n->name, name))
			return n;
	return NULL;
}

/* The text of the MeMo element parent/name, trimmed of surrounding blanks, in a malloc'd
 * string; NULL after s_fail when it is missing (or empty and required). */
static char *s_text(dp_check_t *c, xmlNodePtr parent, const char *where, const char *name,
		    bool required)
{
	xmlNodePtr n = s_child(parent, DP_NS_MEMO, name);
	xmlChar *raw;
	char *start, *end, *out;

	if (!n) {
		if (required)
			s_fail(c, "%s/%s: missing", where, name);
		return NULL;
	}
	raw = xmlNodeGetContent(n);
	start = (char *)raw;
	while (start && isspace((unsigned char)*start))
		start++;
	end = start ? start + strlen(start) : NULL;
	while (end && end > start && isspace((unsigned char)end[-1]))
		end--;
	if (!start || end == start) {
		xmlFree(raw);
		if (required)
			s_fail(c, "%s/%s: empty", where, name);
		return NULL;
	}
	out = strndup(start, (size_t)(end - start));
	xmlFree(raw);
	return out;
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
	if (p[0] == 0xE2 && p[1] == 0x80 && ((p[2] >= 0x80 && p[2] <= 0x8B) || p[2] == 0xA8 ||
					      p[2] == 0xA9 || p[2] == 0xAF))
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

/* True when text is canonical base64 (standard alphabet, padded, no blanks), non-empty. */
static bool s_base64_ok(const char *text)
{
	size_t n = strlen(text), pad = 0;

	if (n == 0 || n % 4)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = text[i];
		if (ch == '=') {
			if (i < n - 2)
				return false;
			pad++;
		} else if (pad || !(isalnum((unsigned char)ch) || ch == '+' || ch == '/')) {
			return false;
		}
	}
	return true;
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

/* What a checked MeMo says, for the mailbox. Strings malloc'd. */
typedef struct dp_memo {
	char *type, *uuid, *label, *sender_id, *sender_label, *recipient, *filename, *action;
} dp_memo_t;

static void s_memo_free(dp_memo_t *m)
{
	free(m->type);
	free(m->uuid);
	free(m->label);
	free(m->sender_id);
	free(m->sender_label);
	free(m->recipient);
	free(m->filename);
	free(m->action);
	memset(m, 0, sizeof *m);
}

/* Checks one MeMo Message element; fills m and leaves c->reason empty when it is valid. */
static void s_check_memo(dp_check_t *c, xmlNodePtr msg, dp_memo_t *m)
{
	xmlNodePtr header = s_child(msg, DP_NS_MEMO, "MessageHeader");
	xmlNodePtr body = s_child(msg, DP_NS_MEMO, "MessageBody");
	xmlNodePtr sender, recipient, doc, file, action;
	char *v;

	if (!header) {
		s_fail(c, "Message/MessageHeader: missing");
		return;
	}
	if (!body) {
		s_fail(c, "Message/MessageBody: missing");
		return;
	}
	m->type = s_text(c, header, "MessageHeader", "messageType", true);
	if (m->type && strcmp(m->type, "DIGITALPOST") && strcmp(m->type, "NEMSMS"))
		s_fail(c, "MessageHeader/messageType: '%.40s' is neither DIGITALPOST nor NEMSMS",
		       m->type);
	m->uuid = s_text(c, header, "MessageHeader", "messageUUID", true);
	if (m->uuid && !s_uuid_ok(m->uuid))
		s_fail(c, "MessageHeader/messageUUID: not a UUID");
	m->label = s_text(c, header, "MessageHeader", "label", true);
	if (m->label && strlen(m->label) > DP_MAX_LABEL)
		s_fail(c, "MessageHeader/label: longer than %d bytes", DP_MAX_LABEL);

	sender = s_child(header, DP_NS_MEMO, "Sender");
	if (!sender)
		s_fail(c, "MessageHeader/Sender: missing");
	m->sender_id = s_text(c, sender, "MessageHeader/Sender", "senderID", sender != NULL);
	v = s_text(c, sender, "MessageHeader/Sender", "idType", sender != NULL);
	if (v && strcmp(v, "CVR"))
		s_fail(c, "MessageHeader/Sender/idType: must be CVR");
	free(v);
	if (m->sender_id && !s_digits(m->sender_id, 8))
		s_fail(c, "MessageHeader/Sender/senderID: a CVR number is 8 digits");
	m->sender_label = s_text(c, sender, "MessageHeader/Sender", "label", sender != NULL);

	recipient = s_child(header, DP_NS_MEMO, "Recipient");
	if (!recipient)
		s_fail(c, "MessageHeader/Recipient: missing");
	m->recipient = s_text(c, recipient, "MessageHeader/Recipient", "recipientID",
			      recipient != NULL);
	v = s_text(c, recipient, "MessageHeader/Recipient", "idType", recipient != NULL);
	if (v && strcmp(v, "CPR"))
		s_fail(c, "MessageHeader/Recipient/idType: must be CPR");
	free(v);
	if (m->recipient && (!s_digits(m->recipient, 10) ||
			     kanal_cpr_parse(m->recipient, NULL, NULL) != 0))
		s_fail(c, "MessageHeader/Recipient/recipientID: not a CPR number (ten digits)");

	v = s_text(c, body, "MessageBody", "createdDateTime", true);
	if (v && (strlen(v) < 19 || v[4] != '-' || v[7] != '-' || v[10] != 'T' || v[13] != ':'))
		s_fail(c, "MessageBody/createdDateTime: not an xs:dateTime");
	free(v);
	doc = s_child(body, DP_NS_MEMO, "MainDocument");
	if (!doc) {
		s_fail(c, "MessageBody/MainDocument: missing");
		return;
	}
	file = s_child(doc, DP_NS_MEMO, "File");
	if (!file) {
		s_fail(c, "MessageBody/MainDocument/File: missing");
		return;
	}
	v = s_text(c, file, "MessageBody/MainDocument/File", "encodingFormat", true);
	if (v && !strchr(v, '/'))
		s_fail(c, "MessageBody/MainDocument/File/encodingFormat: not a media type");
	free(v);
	m->filename = s_text(c, file, "MessageBody/MainDocument/File", "filename", true);
	if (m->filename)
		s_check_filename(c, m->filename);
	v = s_text(c, file, "MessageBody/MainDocument/File", "language", true);
	if (v && (strlen(v) != 2 || !islower((unsigned char)v[0]) || !islower((unsigned char)v[1])))
		s_fail(c, "MessageBody/MainDocument/File/language: not an ISO 639-1 code");
	free(v);
	v = s_text(c, file, "MessageBody/MainDocument/File", "content", true);
	if (v && !s_base64_ok(v))
		s_fail(c, "MessageBody/MainDocument/File/content: not valid base64");
	free(v);

	/* Actions may sit in MainDocument (MeMo 1.1); one is checked like every other. */
	for (action = doc->children; action; action = action->next) {
		if (action->type != XML_ELEMENT_NODE || !action->ns ||
		    strcmp((const char *)action->ns->href, DP_NS_MEMO) ||
		    strcmp((const char *)action->name, "Action"))
			continue;
		free(m->action);
		m->action = s_text(c, action, "MessageBody/MainDocument/Action", "actionCode", true);
		{
			xmlNodePtr entry = s_child(action, DP_NS_MEMO, "EntryPoint");
			char *url = entry ? s_text(c, entry, "MessageBody/MainDocument/Action/EntryPoint",
						   "url", true)
					  : NULL;
			if (!entry)
				s_fail(c, "MessageBody/MainDocument/Action/EntryPoint: missing");
			if (url && !s_https_ok(url))
				s_fail(c, "MessageBody/MainDocument/Action/EntryPoint/url: not an "
					  "absolute https URL");
			free(url);
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

/* Whether this recipient has a mailbox on this channel: 0, or an HTTP status after
 * answering with the code and reason. */
static int s_check_recipient(const char *cpr_digits, const char *channel, sim_response_t *res)
{
	const sim_person_t *p = sim_person_find(cpr_digits);
	kanal_cpr_t cpr;

	if (!p || kanal_cpr_parse(cpr_digits, &cpr, NULL) != 0) {
		s_error(res, 422, "unknown-recipient", "no such person in the CPR register");
		return 422;
	}
	if (p->status == 90) {
		s_error(res, 422, "deceased", "the recipient is dead (CPR status 90)");
		return 422;
	}
	if (p->status == 80) {
		s_error(res, 422, "emigrated", "the recipient has emigrated (CPR status 80)");
		return 422;
	}
	if (p->status != 1 && p->status != 3 && p->status != 5 && p->status != 7) {
		s_error(res, 422, "unknown-recipient", "the recipient is not an active person");
		return 422;
	}
	if (s_age(cpr.year, cpr.month, cpr.day) < 15) {
		s_error(res, 422, "under-15", "no Digital Post mailbox for under-15s");
		return 422;
	}
	/* The reason for an exemption (disability, no computer …) is never told. */
	if (p->exempt && !p->digital_post) {
		s_error(res, 422, "exempt", "the recipient is exempt from Digital Post");
		return 422;
	}
	if (!p->digital_post) {
		s_error(res, 422, "not-enrolled",
			!strcmp(channel, "NemSMS") ? "the recipient is not enrolled in NemSMS"
						   : "the recipient is not enrolled in Digital Post");
		return 422;
	}
	return 0;
}

/* ---- the handlers ------------------------------------------------------------------------ */

static dp_letter_t *s_find_uuid(dp_state_t *st, const char *uuid)
{
	for (size_t i = 0; i < st->n_letters; i++)
		if (!strcasecmp(st->letters[i].uuid, uuid))
			return &st->letters[i];
	return NULL;
}

static void s_reply_letter(sim_response_t *res, int status, const dp_letter_t *l, bool dup)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:b}", "transaction", l->transaction, "messageUUID",
			      l->uuid, "channel", l->channel, "duplicate", dup);
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	if (text)
		sim_reply_take(res, status, "application/json", text, strlen(text));
	else
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
}

/* POST /digitalpost/v1/messages: check, refuse or deliver one letter. */
static void s_post(sim_t *sim, dp_state_t *st, const sim_request_t *req, sim_response_t *res)
{
	dp_check_t c = { .reason = "" };
	dp_memo_t m = { 0 };
	xmlDocPtr doc = NULL;
	xmlNodePtr root, msg;
	char *channel = NULL;
	dp_letter_t *l;

	st->received++;
	if (!req->content_type || (strncasecmp(req->content_type, "application/xml", 15) &&
				   strncasecmp(req->content_type, "text/xml", 8))) {
		s_error(res, 415, "invalid-request", "the body must be XML (application/xml)");
		goto refused;
	}
	doc = xmlReadMemory(req->body, (int)req->body_len, "request.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (!root) {
		s_error(res, 400, "invalid-request", "the body is not well-formed XML");
		goto refused;
	}
	if (!root->ns || strcmp((const char *)root->ns->href, DP_NS_SEND) ||
	    strcmp((const char *)root->name, "SendRequest")) {
		s_error(res, 400, "invalid-request",
			"the root element must be SendRequest in namespace " DP_NS_SEND);
		goto refused;
	}
	{
		xmlNodePtr ch = s_child(root, DP_NS_SEND, "channel");
		xmlChar *raw = ch ? xmlNodeGetContent(ch) : NULL;
		channel = raw ? strdup((const char *)raw) : NULL;
		xmlFree(raw);
	}
	if (!channel) {
		s_error(res, 400, "invalid-request", "SendRequest/channel: missing");
		goto refused;
	}
	if (!strcmp(channel, "Fysisk Post")) {
		s_error(res, 422, "unsupported-channel",
			"this service does not print letters: send 'Fysisk Post' to the print service");
		goto refused;
	}
	if (strcmp(channel, "Digital Post") && strcmp(channel, "NemSMS")) {
		s_error(res, 400, "invalid-request",
			"SendRequest/channel: must be 'Digital Post', 'NemSMS' or 'Fysisk Post'");
		goto refused;
	}
	msg = s_child(root, DP_NS_MEMO, "Message");
	if (!msg) {
		s_error(res, 400, "invalid-memo",
			"SendRequest/Message: missing (a MeMo Message in namespace " DP_NS_MEMO ")");
		goto refused;
	}
	s_check_memo(&c, msg, &m);
	if (!c.reason[0] && strcmp(m.type, !strcmp(channel, "NemSMS") ? "NEMSMS" : "DIGITALPOST"))
		s_fail(&c, "MessageHeader/messageType: %s does not go by channel '%s'", m.type,
		       channel);
	if (c.reason[0]) {
		s_error(res, 400, "invalid-memo", c.reason);
		goto refused;
	}

	/* The same messageUUID again is the same letter: the first answer, no second letter. */
	if ((l = s_find_uuid(st, m.uuid))) {
		if (strcmp(l->recipient_digits, m.recipient)) {
			s_error(res, 409, "uuid-conflict",
				"this messageUUID was used for another recipient");
			goto refused;
		}
		st->duplicates++;
		s_reply_letter(res, 200, l, true);
		sim_log(sim, "duplicate messageUUID %s: transaction %s again", m.uuid,
			l->transaction);
		goto done;
	}
	if (s_check_recipient(m.recipient, channel, res) != 0)
		goto refused;

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
	snprintf(l->uuid, sizeof l->uuid, "%s", m.uuid);
	snprintf(l->transaction, sizeof l->transaction, "dp-%08x-%06zu", st->run_id, st->n_letters);
	kanal_cpr_mask(m.recipient, l->recipient, sizeof l->recipient);
	snprintf(l->recipient_digits, sizeof l->recipient_digits, "%s", m.recipient);
	snprintf(l->channel, sizeof l->channel, "%s", channel);
	sim_rfc3339_now(l->created);
	l->label = m.label;
	l->sender = m.sender_label;
	l->filename = m.filename;
	l->action = m.action;
	m.label = m.sender_label = m.filename = m.action = NULL;
	l->request = strndup(req->body, req->body_len);
	s_reply_letter(res, 201, l, false);
	sim_log(sim, "delivered %s to %s by %s: transaction %s", l->uuid, l->recipient, channel,
		l->transaction);
	goto done;
refused:
	st->refused++;
	sim_log(sim, "refused: %d %.*s", res->status, (int)res->len, res->body ? res->body : "");
done:
	free(channel);
	s_memo_free(&m);
	xmlFreeDoc(doc);
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
	j = json_pack("{s:I, s:I, s:I, s:I, s:o}", "received", (json_int_t)st->received,
		      "delivered", (json_int_t)st->n_letters, "refused", (json_int_t)st->refused,
		      "duplicates", (json_int_t)st->duplicates, "messages", list);
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (text)
		sim_reply_take(res, 200, "application/json", text, strlen(text));
	else
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
}

static void s_handle(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	dp_state_t *st = sim_state(sim);
	const char *token = sim_setting(sim, "token", NULL);
	const char *path = req->path;

	if (strncmp(path, "/digitalpost/", 13)) {
		s_error(res, 404, "not-found", "no such resource");
		return;
	}
	if (token && (!req->bearer || strcmp(req->bearer, token))) {
		s_error(res, 401, "unauthorized", "a valid bearer token is required");
		sim_reply_header(res, "WWW-Authenticate", "Bearer realm=\"digitalpost\"");
		return;
	}
	if (!strcmp(path, DP_PATH)) {
		if (!strcmp(req->method, "POST"))
			s_post(sim, st, req, res);
		else if (!strcmp(req->method, "GET"))
			s_list(st, res);
		else
			s_error(res, 405, "method-not-allowed", "use GET or POST");
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
	sim_set_state(sim, &state);
	return 0;
}

int main(int argc, char **argv)
{
	return sim_main(argc, argv,
			&(sim_def_t){ .name = "digitalpost",
				      .handle = s_handle,
				      .setup = s_setup,
				      .garbage_type = "application/json",
				      .garbage_body = "{\"transaction\": \"dp-\x01\", \"messageUUID\": [" });
}
