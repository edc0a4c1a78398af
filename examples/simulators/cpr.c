/*
 * examples/simulators/cpr.c — kanal-sim-cpr, a simulated SF1520 PersonBaseDataExtended
 * service (Serviceplatformen's CPR lookup, operation PersonLookup) that enforces the
 * contract in contracts/ (README.md §2, schemas/sf1520): SOAP 1.1 over HTTP, answering from
 * the synthetic population (population.h) with the register's real response structure.
 *
 *   POST /cpr       v4 ("context"): the Body's PersonLookupRequest must validate against
 *                   schemas/sf1520/PersonBaseDataExtendedServiceMsg.libxml2.xsd (libxml2,
 *                   xmlSchemaValidateOneElement) and carry an InvocationContext whose four
 *                   UUIDs are the ones configured; answers PersonLookupResponse (itself
 *                   checked against the schema before it leaves), or a Serviceplatformen
 *                   SOAP Fault (HTTP 500): faultstring ending in the CallUUID/Received lines,
 *                   detail spf:ServiceplatformFault/ErrorList/Error(ErrorCode, ErrorText)
 *   POST /cpr/5     v5 ("token"): validated against the derived v5 schema; a request
 *                   without a wsse:Security header is refused with the platform's "Security
 *                   model … was not provided" fault. With --set sts_cert=F (the certificate
 *                   kanal-sim-sts signs with: its tls_cert) the header's saml:Assertion must
 *                   carry an enveloped signature that verifies with that certificate
 *                   (xmlsec), be for SF1520 v5's entity id (Audience), be within its
 *                   NotBefore/NotOnOrAfter, and — over mutual TLS — be bound to the TLS
 *                   client certificate (holder-of-key); otherwise the fault is
 *                   SECURITY_TOKEN_INVALID saying which. Without sts_cert only the header's
 *                   presence is checked. The message signature itself is not verified here
 *                   (its STR-Transform reference is what xmlsec cannot do).
 *   GET  /lookups   {"lookups": N, "answered": N, "faults": N, "invalid": N}: PersonLookup
 *                   operations served (tests check a cache with it; /_sim/stats counts every
 *                   request); invalid counts the REQUEST_INVALID faults — requests that are
 *                   no SOAP envelope or do not validate — which tests assert stay 0
 *
 * Settings (--set NAME=VALUE): agreement, usersystem, user, service — the InvocationContext
 * UUIDs the service accepts (defaults below; service is SF1520 v4's real ServiceUUID);
 * schemas — the folder holding the SF1520 schemas (default: contracts/schemas/sf1520 of
 * the source tree the binary was built in); answer_file — a test hook: every valid request
 * is answered with that file's current content (HTTP 500 when it holds a Fault), to try the
 * client on odd or hostile answers; slow_pnr and slow_ms (default 3000) — a test hook: a
 * request about that one number is answered slow_ms late (the others at once), to try a
 * client that asks several lookups at once.
 *
 * Fault texts and codes: "PNR not found" (a valid number nobody has; the text is how
 * clients recognise it, the code PNR_NOT_FOUND is a placeholder — the real codes are not
 * public), REQUEST_INVALID (the request does not validate: the schema's complaint is the
 * text), INVOCATION_CONTEXT_INVALID (a UUID differs from the settings), SECURITY_MODEL
 * (v5 without a token). The `garbage` fault of sim.c answers 200 with broken XML.
 *
 * Mutual TLS: with sim.h's --set tls_cert/tls_key/tls_ca the simulator serves https and
 * refuses, with a SOAP fault naming what to do, a request without a client certificate
 * (CERTIFICATE_MISSING), with one that expired or is not yet valid (CERTIFICATE_EXPIRED), or
 * with one not issued by tls_ca (CERTIFICATE_UNTRUSTED). token_clock_offset=S (a test hook)
 * judges token expiry S seconds ahead of the real clock.
 *
 * What population.h does not hold is derived: children (barn) from the other people's
 * mother and father — with or without custody; vejviserbeskyttelse follows
 * adressebeskyttelse; markedsfoeringsbeskyttelse is false; tilmeldtNemsms is true for
 * people enrolled in Digital Post who are alive and in the country; the emigration date.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <limits.h>
#include <time.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>
#include <xmlsec/crypto.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/xmlsec.h>

#include <kanal/cpr.h>
#include <kanal/time.h>

#include "population.h"
#include "sim.h"

#define NS_SOAP "http://schemas.xmlsoap.org/soap/envelope/"
#define NS_V4 "http://serviceplatformen.dk/xml/wsdl/soap11/CPR/PersonBaseDataExtended/4/"
#define NS_V5 "http://serviceplatformen.dk/xml/wsdl/soap11/CPR/PersonBaseDataExtended/5/"
#define NS_CTX "http://serviceplatformen.dk/xml/schemas/InvocationContext/1/"
#define NS_PNR "http://serviceplatformen.dk/xml/schemas/cpr/PNR/1/"
#define NS_FAULT "http://serviceplatformen.dk/xml/schemas/ServiceplatformFault/1/"
#define NS_WSSE "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
#define NS_SAML "urn:oasis:names:tc:SAML:2.0:assertion"
#define NS_DS "http://www.w3.org/2000/09/xmldsig#"
#define ENTITY_V5 "http://cpr.serviceplatformen.dk/service/personbasedataextended/5"

#define UUID_AGREEMENT "6f1c7c44-1b0a-4c52-9a8e-1d2f0c6b7a01"
#define UUID_USERSYSTEM "0c9b1a7e-3d5f-4e21-8b6a-2a7c9e4d5f02"
#define UUID_USER "9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c03"
#define UUID_SERVICE "e6be2436-bf35-4df2-83fe-925142825dc2" /* SF1520 v4's ServiceUUID */

#define XML_TYPE "text/xml; charset=utf-8"

typedef struct cpr_sim {
	const char *ns; /* the version being answered: NS_V4 or NS_V5 */
	xmlSchemaPtr schema_v4, schema_v5;
	const char *agreement, *usersystem, *user, *service;
	const char *answer_file; /* NULL: answer from the population */
	char *sts_cert;          /* PEM of the STS's signing certificate, NULL: token unchecked */
	bool tls;                /* serving https: a client certificate is required */
	int64_t token_clock_offset_ms;
	unsigned long lookups, answered, faults;
	unsigned long invalid; /* REQUEST_INVALID faults: a connector bug, tests assert none */
} cpr_sim_t;

static cpr_sim_t s_state;

/* ---- XML helpers ------------------------------------------------------------------------ */

/* The first element child of node with this local name (any namespace when ns is NULL). */
static xmlNode *s_child(const xmlNode *node, const char *ns, const char *name)
{
	for (xmlNode *c = node ? node->children : NULL; c; c = c->next) {
		if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, name))
			continue;
		if (ns && (!c->ns || !c->ns->href || strcmp((const char *)c->ns->href, ns)))
			continue;
		return c;
	}
	return NULL;
}

/* The trimmed text of an element, malloc'd ("" for an empty one), or NULL when absent. */
static char *s_text(const xmlNode *node)
{
	xmlChar *t;
	char *out, *start, *end;

	if (!node)
		return NULL;
	t = xmlNodeGetContent(node);
	out = strdup(t ? (const char *)t : "");
	xmlFree(t);
	if (!out)
		return NULL;
	for (start = out; *start == ' ' || *start == '\t' || *start == '\n' || *start == '\r';)
		start++;
	end = start + strlen(start);
	while (end > start &&
	       (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
		end--;
	*end = '\0';
	memmove(out, start, (size_t)(end - start) + 1);
	return out;
}

/* A new SOAP envelope document; *body_out is its Body element. */
static xmlDoc *s_envelope(xmlNode **body_out)
{
	xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
	xmlNode *env = xmlNewNode(NULL, BAD_CAST "Envelope");
	xmlNs *soap = xmlNewNs(env, BAD_CAST NS_SOAP, BAD_CAST "soap");

	xmlSetNs(env, soap);
	xmlDocSetRootElement(doc, env);
	*body_out = xmlNewChild(env, soap, BAD_CAST "Body", NULL);
	return doc;
}

/* Serialises doc into the response with the given status, and frees it. */
static void s_reply_doc(sim_response_t *res, int status, xmlDoc **doc_p)
{
	xmlChar *mem = NULL;
	int len = 0;

	xmlDocDumpMemoryEnc(*doc_p, &mem, &len, "UTF-8");
	xmlFreeDoc(*doc_p);
	*doc_p = NULL;
	if (!mem) {
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
		return;
	}
	sim_reply(res, status, XML_TYPE, (const char *)mem, len);
	xmlFree(mem);
}

/* Adds an element in no namespace (with escaped text when not NULL) and returns it. */
static xmlNode *s_add_unqualified(xmlNode *parent, const char *name, const char *text)
{
	xmlNode *n = xmlNewDocNode(parent->doc, NULL, BAD_CAST name, NULL);

	if (text)
		xmlNodeAddContent(n, BAD_CAST text);
	return xmlAddChild(parent, n);
}

/* A random version-4 UUID (the CallUUID of a fault). */
static void s_uuid(char buf[37])
{
	unsigned char r[16];
	FILE *f = fopen("/dev/urandom", "rb");

	if (!f || fread(r, 1, sizeof r, f) != sizeof r)
		for (size_t i = 0; i < sizeof r; i++)
			r[i] = (unsigned char)rand();
	if (f)
		fclose(f);
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
	snprintf(buf, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
		 r[13], r[14], r[15]);
}

/* Answers Serviceplatformen's SOAP 1.1 Fault (HTTP 500): faultstring is `text` followed by
 * the helpdesk lines with a CallUUID and the time received; the detail is
 * spf:ServiceplatformFault/ErrorList/Error(ErrorCode, ErrorText). */
static void s_fault(sim_t *sim, sim_response_t *res, const char *faultcode, const char *code,
		    const char *text)
{
	cpr_sim_t *st = sim_state(sim);
	xmlNode *body, *fault, *detail, *spf, *list, *err;
	xmlDoc *doc = s_envelope(&body);
	char fs[1024], uuid[37], now[40];
	xmlNs *fns;

	st->faults++;
	if (!strcmp(code, "REQUEST_INVALID"))
		st->invalid++;
	s_uuid(uuid);
	sim_rfc3339_now(now);
	snprintf(fs, sizeof fs,
		 "%s\n\nFor further information contact Serviceplatformen Helpdesk and inform:\n"
		 "  CallUUID: %s\n  Received: %s",
		 text, uuid, now);
	fault = xmlNewChild(body, body->ns, BAD_CAST "Fault", NULL);
	/* faultcode, faultstring and detail are unqualified in SOAP 1.1 (xmlNewChild would
	 * give them the parent's namespace). */
	s_add_unqualified(fault, "faultcode", faultcode);
	s_add_unqualified(fault, "faultstring", fs);
	detail = s_add_unqualified(fault, "detail", NULL);
	spf = s_add_unqualified(detail, "ServiceplatformFault", NULL);
	fns = xmlNewNs(spf, BAD_CAST NS_FAULT, BAD_CAST "spf");
	xmlSetNs(spf, fns);
	list = xmlNewChild(spf, fns, BAD_CAST "ErrorList", NULL);
	err = xmlNewChild(list, fns, BAD_CAST "Error", NULL);
	xmlNewTextChild(err, fns, BAD_CAST "ErrorCode", BAD_CAST code);
	xmlNewTextChild(err, fns, BAD_CAST "ErrorText", BAD_CAST text);
	sim_log(sim, "PersonLookup -> fault %s: %s", code, text);
	s_reply_doc(res, 500, &doc);
}

/* ---- the answer ------------------------------------------------------------------------- */

static void s_bool_child(xmlNode *parent, xmlNs *ns, const char *name, bool value)
{
	xmlNewTextChild(parent, ns, BAD_CAST name, BAD_CAST(value ? "true" : "false"));
}

/* <name><beskyttet>true|false</beskyttet></name> */
static void s_protection(xmlNode *parent, xmlNs *ns, const char *name, bool value)
{
	xmlNode *p = xmlNewChild(parent, ns, BAD_CAST name, NULL);
	s_bool_child(p, ns, "beskyttet", value);
}

/* <name><personnummer>cpr</personnummer></name> */
static void s_relation(xmlNode *parent, xmlNs *ns, const char *name, const char *cpr)
{
	xmlNode *r;

	if (!cpr)
		return;
	r = xmlNewChild(parent, ns, BAD_CAST name, NULL);
	xmlNewTextChild(r, ns, BAD_CAST "personnummer", BAD_CAST cpr);
}

static void s_opt_text(xmlNode *parent, xmlNs *ns, const char *name, const char *value)
{
	if (value)
		xmlNewTextChild(parent, ns, BAD_CAST name, BAD_CAST value);
}

/* <name><dato>value</dato></name> (usikkerhedDato / usikkerhedDatoTid). */
static void s_dato(xmlNode *parent, xmlNs *ns, const char *name, const char *value)
{
	xmlNode *d = xmlNewChild(parent, ns, BAD_CAST name, NULL);
	xmlNewTextChild(d, ns, BAD_CAST "dato", BAD_CAST value);
}

/* The birth date of a CPR number as the register writes an xs:date: "2021-04-14+01:00". */
static bool s_birth(const char *cpr, char buf[32], int *year)
{
	kanal_cpr_t parsed;

	if (kanal_cpr_parse(cpr, &parsed, NULL) != 0)
		return false;
	snprintf(buf, 32, "%04d-%02d-%02d+01:00", parsed.year, parsed.month, parsed.day);
	*year = parsed.year;
	return true;
}

/* Age in whole years this year (good enough for a simulator). */
static int s_age(int year)
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	return tm.tm_year + 1900 - year;
}

/* True when child c has p as mother or father. */
static bool s_child_of(const sim_person_t *c, const sim_person_t *p)
{
	return (c->mother && !strcmp(c->mother, p->cpr)) ||
	       (c->father && !strcmp(c->father, p->cpr));
}

/* Checks the answer against the schema before it leaves: a simulator that answers what
 * the contract does not allow would let a look-alike client pass. Returns 0 when valid. */
static int s_self_check(sim_t *sim, xmlNode *resp)
{
	cpr_sim_t *st = sim_state(sim);
	xmlSchemaPtr schema = strcmp(st->ns, NS_V5) ? st->schema_v4 : st->schema_v5;
	xmlSchemaValidCtxtPtr v = xmlSchemaNewValidCtxt(schema);
	int rc = v ? xmlSchemaValidateOneElement(v, resp) : -1;

	xmlSchemaFreeValidCtxt(v);
	if (rc != 0)
		sim_log(sim, "PersonLookup: the simulator's own answer does not validate (%d)", rc);
	return rc;
}

/* Builds PersonLookupResponse for person p, in the schema's element order. */
static void s_answer(sim_t *sim, sim_response_t *res, const sim_person_t *p)
{
	cpr_sim_t *st = sim_state(sim);
	xmlNode *body, *resp, *pd, *navn, *node, *adr, *akt, *rel;
	xmlDoc *doc = s_envelope(&body);
	char buf[256];
	int year = 0, minors = 0;
	xmlNs *ns;

	resp = xmlNewChild(body, NULL, BAD_CAST "PersonLookupResponse", NULL);
	ns = xmlNewNs(resp, BAD_CAST st->ns, BAD_CAST "ns2");
	xmlSetNs(resp, ns);

	pd = xmlNewChild(resp, ns, BAD_CAST "persondata", NULL);
	xmlNewTextChild(pd, ns, BAD_CAST "personnummer", BAD_CAST p->cpr);
	navn = xmlNewChild(pd, ns, BAD_CAST "navn", NULL);
	/* The addressing name as the register writes it: "Efternavn,Fornavn Mellemnavn". */
	snprintf(buf, sizeof buf, "%s,%s%s%s", p->last, p->first, p->middle ? " " : "",
		 p->middle ? p->middle : "");
	xmlNewTextChild(navn, ns, BAD_CAST "personadresseringsnavn", BAD_CAST buf);
	xmlNewTextChild(navn, ns, BAD_CAST "fornavn", BAD_CAST p->first);
	s_opt_text(navn, ns, "mellemnavn", p->middle);
	xmlNewTextChild(navn, ns, BAD_CAST "efternavn", BAD_CAST p->last);
	if (s_birth(p->cpr, buf, &year)) {
		s_dato(pd, ns, "foedselsdato", buf);
		snprintf(buf, sizeof buf, "%d", s_age(year));
		xmlNewTextChild(pd, ns, BAD_CAST "alder", BAD_CAST buf);
	}
	snprintf(buf, sizeof buf, "%c", p->sex);
	xmlNewTextChild(pd, ns, BAD_CAST "koen", BAD_CAST buf);
	for (size_t i = 0; i < sim_n_people; i++) {
		const sim_person_t *c = &sim_people[i];
		int cy;
		char cb[32];
		if (s_child_of(c, p) &&
		    (c->status == 1 || c->status == 3 || c->status == 5 || c->status == 7) &&
		    s_birth(c->cpr, cb, &cy) && s_age(cy) < 18)
			minors++;
	}
	snprintf(buf, sizeof buf, "%d", minors);
	xmlNewTextChild(pd, ns, BAD_CAST "antalBoernUnder18", BAD_CAST buf);
	node = xmlNewChild(pd, ns, BAD_CAST "status", NULL);
	snprintf(buf, sizeof buf, "%d", p->status);
	xmlNewTextChild(node, ns, BAD_CAST "status", BAD_CAST buf);
	if (p->status != 1)
		s_dato(node, ns, "statusdato", "2024-11-30T00:00:00.000+01:00");
	node = xmlNewChild(pd, ns, BAD_CAST "civilstand", NULL);
	snprintf(buf, sizeof buf, "%c", p->civil);
	xmlNewTextChild(node, ns, BAD_CAST "civilstand", BAD_CAST buf);
	node = xmlNewChild(pd, ns, BAD_CAST "statsborgerskab", NULL);
	xmlNewTextChild(node, ns, BAD_CAST "landekode", BAD_CAST "5100");
	s_protection(pd, ns, "adressebeskyttelse", p->protected_address);
	s_protection(pd, ns, "vejviserbeskyttelse", p->protected_address);
	s_protection(pd, ns, "markedsfoeringsbeskyttelse", false);
	s_bool_child(pd, ns, "tilmeldtNemsms", p->digital_post && p->status == 1);
	s_bool_child(pd, ns, "tilmeldtDigitalpost", p->digital_post);

	if (p->street || p->status == 80) {
		adr = xmlNewChild(resp, ns, BAD_CAST "adresse", NULL);
		if (p->street) {
			akt = xmlNewChild(adr, ns, BAD_CAST "aktuelAdresse", NULL);
			if (p->municipality) {
				snprintf(buf, sizeof buf, "%04d", p->municipality);
				xmlNewTextChild(akt, ns, BAD_CAST "kommunekode", BAD_CAST buf);
			}
			s_opt_text(akt, ns, "husnummer", p->number);
			s_opt_text(akt, ns, "etage", p->floor);
			s_opt_text(akt, ns, "sidedoer", p->door);
			s_opt_text(akt, ns, "postnummer", p->postcode);
			s_opt_text(akt, ns, "postdistrikt", p->city);
			s_opt_text(akt, ns, "vejnavn", p->street);
		}
		if (p->status == 80) {
			node = xmlNewChild(adr, ns, BAD_CAST "udrejseoplysninger", NULL);
			xmlNewTextChild(node, ns, BAD_CAST "udrejselandekode", BAD_CAST "5110");
			s_dato(node, ns, "udrejsedato", "2024-06-01T00:00:00.000+02:00");
		}
	}

	rel = xmlNewChild(resp, ns, BAD_CAST "relationer", NULL);
	s_relation(rel, ns, "aegtefaelle", p->spouse);
	for (size_t i = 0; i < sim_n_people; i++)
		if (s_child_of(&sim_people[i], p))
			s_relation(rel, ns, "barn", sim_people[i].cpr);
	s_relation(rel, ns, "mor", p->mother);
	s_relation(rel, ns, "far", p->father);
	/* Custody on the child: 3/4 point sideways to mor/far and carry no CPR; 5/6 do. */
	if (s_birth(p->cpr, buf, &year) && p->custody_ended_type) {
		xmlNode *fm = xmlNewChild(rel, ns, BAD_CAST "foraeldremyndighed", NULL);
		char type[8];
		snprintf(type, sizeof type, "%d", p->custody_ended_type);
		xmlNewTextChild(fm, ns, BAD_CAST "foraeldremyndighedtype", BAD_CAST type);
		s_dato(fm, ns, "foraeldremyndighedStartdato", buf);
		xmlNewTextChild(fm, ns, BAD_CAST "foraeldremyndighedSletdato",
				BAD_CAST "2021-09-01+02:00");
	}
	for (int i = 0; i < 2; i++) {
		xmlNode *fm;
		char type[8];
		if (!p->custody[i])
			continue;
		fm = xmlNewChild(rel, ns, BAD_CAST "foraeldremyndighed", NULL);
		snprintf(type, sizeof type, "%d", p->custody_type[i]);
		xmlNewTextChild(fm, ns, BAD_CAST "foraeldremyndighedtype", BAD_CAST type);
		if (s_birth(p->cpr, buf, &year))
			s_dato(fm, ns, "foraeldremyndighedStartdato", buf);
		if (p->custody_type[i] >= 5)
			xmlNewTextChild(fm, ns, BAD_CAST "relationPersonnummer",
					BAD_CAST p->custody[i]);
	}
	if (!rel->children) {
		xmlUnlinkNode(rel);
		xmlFreeNode(rel);
	}
	if (s_self_check(sim, resp) != 0) {
		xmlFreeDoc(doc);
		sim_reply(res, 500, "text/plain", "the simulator's answer breaks the schema\n", -1);
		return;
	}
	st->answered++;
	sim_log(sim, "PersonLookup -> answered");
	s_reply_doc(res, 200, &doc);
}

/* ---- the operation ---------------------------------------------------------------------- */

/* Answers a valid request with the file `answer_file` as it is now (tests rewrite it
 * between requests to try hostile or odd answers): 500 when it holds a SOAP Fault, else
 * 200. */
static void s_canned(sim_t *sim, sim_response_t *res)
{
	cpr_sim_t *st = sim_state(sim);
	FILE *f = fopen(st->answer_file, "rb");
	char *body = NULL;
	size_t len = 0, cap = 0, n;
	char chunk[4096];

	if (!f) {
		sim_reply(res, 500, "text/plain", "answer_file cannot be read\n", -1);
		return;
	}
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (len + n + 1 > cap) {
			char *b = realloc(body, cap = (len + n + 1) * 2);
			if (!b)
				break;
			body = b;
		}
		memcpy(body + len, chunk, n);
		len += n;
		body[len] = '\0';
	}
	fclose(f);
	sim_log(sim, "PersonLookup -> answered from %s", st->answer_file);
	sim_reply(res, body && strstr(body, "Fault>") ? 500 : 200, XML_TYPE, body ? body : "",
		  (long)len);
	free(body);
}

/* True when the InvocationContext's element `name` holds `want`. */
static bool s_ctx_matches(const xmlNode *ctx, const char *name, const char *want)
{
	char *v = s_text(s_child(ctx, NS_CTX, name));
	bool ok = v && !strcmp(v, want);

	free(v);
	return ok;
}

/* The schema's first complaint, kept for the fault's text. */
static void s_schema_error(void *ctx, const xmlError *e)
{
	char *buf = ctx;

	if (!*buf && e && e->message) {
		snprintf(buf, 256, "%s", e->message);
		buf[strcspn(buf, "\n")] = '\0';
	}
}

/* Validates the operation element against the version's schema. Returns 0, or -1 with the
 * schema's complaint in why[256]. */
static int s_validate(xmlSchemaPtr schema, xmlNode *op, char why[256])
{
	xmlSchemaValidCtxtPtr v = xmlSchemaNewValidCtxt(schema);
	int rc;

	*why = '\0';
	if (!v) {
		snprintf(why, 256, "out of memory");
		return -1;
	}
	xmlSchemaSetValidStructuredErrors(v, (xmlStructuredErrorFunc)s_schema_error, why);
	rc = xmlSchemaValidateOneElement(v, op);
	xmlSchemaFreeValidCtxt(v);
	kanal_cpr_redact_inplace(why); /* a value quoted by the schema stays unquoted */
	if (rc != 0 && !*why)
		snprintf(why, 256, "the request does not validate");
	return rc == 0 ? 0 : -1;
}

/* Checks the STS assertion in the Security header: signed by the STS (sts_cert), for
 * SF1520 v5, within its validity, bound to the TLS client certificate. Returns NULL when
 * it is good, else what is wrong (a static text). */
static const char *s_token_problem(const cpr_sim_t *st, const sim_request_t *req, xmlDoc *doc,
				   xmlNode *security)
{
	xmlNode *a = s_child(security, NS_SAML, "Assertion"), *sig, *cond, *aud, *x509;
	xmlSecDSigCtxPtr ctx = NULL;
	const char *problem = NULL;
	xmlChar *id = NULL, *nb = NULL, *na = NULL;
	char *audience = NULL, *holder = NULL;
	int64_t now = kanal_wall_ms() + st->token_clock_offset_ms, t_nb = 0, t_na = 0;

	if (!a)
		return "the Security header carries no saml:Assertion";
	sig = s_child(a, NS_DS, "Signature");
	if ((id = xmlGetProp(a, BAD_CAST "ID")))
		xmlAddID(NULL, doc, id, xmlHasProp(a, BAD_CAST "ID"));
	ctx = xmlSecDSigCtxCreate(NULL);
	if (!sig || !ctx ||
	    !(ctx->signKey = xmlSecCryptoAppKeyLoadMemory(
		      (const xmlSecByte *)st->sts_cert, (xmlSecSize)strlen(st->sts_cert),
		      xmlSecKeyDataFormatCertPem, NULL, NULL, NULL)) ||
	    xmlSecDSigCtxVerify(ctx, sig) != 0 || ctx->status != xmlSecDSigStatusSucceeded) {
		problem = "the assertion is not signed by the Security Token Service (a token from "
			  "another issuer, or one that was altered)";
		goto done;
	}
	cond = s_child(a, NS_SAML, "Conditions");
	aud = s_child(s_child(cond, NS_SAML, "AudienceRestriction"), NS_SAML, "Audience");
	audience = s_text(aud);
	if (!audience || strcmp(audience, ENTITY_V5)) {
		problem = "the token is for another service (its Audience is not SF1520 v5's "
			  "entity id)";
		goto done;
	}
	nb = cond ? xmlGetProp(cond, BAD_CAST "NotBefore") : NULL;
	na = cond ? xmlGetProp(cond, BAD_CAST "NotOnOrAfter") : NULL;
	if (!nb || !na || kanal_time_parse_rfc3339((const char *)nb, &t_nb) != 0 ||
	    kanal_time_parse_rfc3339((const char *)na, &t_na) != 0 || now < t_nb - 60000 ||
	    now >= t_na) {
		problem = "the token has expired or is not yet valid: ask the STS for a new one";
		goto done;
	}
	x509 = s_child(s_child(s_child(s_child(s_child(s_child(a, NS_SAML, "Subject"), NS_SAML,
						       "SubjectConfirmation"),
					       NS_SAML, "SubjectConfirmationData"),
				       NS_DS, "KeyInfo"),
			       NS_DS, "X509Data"),
		       NS_DS, "X509Certificate");
	holder = s_text(x509);
	if (st->tls && (!holder || strcmp(holder, req->client_cert_b64)))
		problem = "the token is bound to another certificate than the TLS client "
			  "certificate (holder-of-key)";
done:
	xmlSecDSigCtxDestroy(ctx);
	xmlFree(id);
	xmlFree(nb);
	xmlFree(na);
	free(audience);
	free(holder);
	return problem;
}

/* Refuses a request without a good TLS client certificate, as the platform's mutual TLS
 * does; true when it did. */
static bool s_client_refused(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	cpr_sim_t *st = sim_state(sim);

	if (!st->tls || req->client_cert == SIM_CERT_OK)
		return false;
	if (req->client_cert == SIM_CERT_EXPIRED)
		s_fault(sim, res, "soap:Client", "CERTIFICATE_EXPIRED",
			"the client certificate has expired or is not yet valid: renew the "
			"function "
			"certificate and register the new one on the IT system");
	else if (req->client_cert == SIM_CERT_UNTRUSTED)
		s_fault(sim, res, "soap:Client", "CERTIFICATE_UNTRUSTED",
			"the client certificate is not issued by a trusted CA: use the function "
			"certificate (OCES3) registered on the IT system");
	else
		s_fault(sim, res, "soap:Client", "CERTIFICATE_MISSING",
			"no client certificate: the service requires mutual TLS with the function "
			"certificate registered on the IT system");
	return true;
}

static void s_person_lookup(sim_t *sim, const sim_request_t *req, sim_response_t *res, int ver)
{
	cpr_sim_t *st = sim_state(sim);
	xmlNode *env, *body, *op, *header;
	const sim_person_t *p;
	char *pnr = NULL, why[256];
	xmlDoc *doc;

	st->lookups++;
	st->ns = ver == 5 ? NS_V5 : NS_V4;
	if (s_client_refused(sim, req, res))
		return;
	/* No network, no entities, no DTD: a request is data, never instructions. */
	doc = xmlReadMemory(req->body, (int)req->body_len, "request.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	env = doc ? xmlDocGetRootElement(doc) : NULL;
	if (!env || doc->intSubset || strcmp((const char *)env->name, "Envelope") || !env->ns ||
	    strcmp((const char *)env->ns->href, NS_SOAP)) {
		s_fault(sim, res, "soap:Client", "REQUEST_INVALID",
			"the request is not a SOAP 1.1 envelope");
		goto done;
	}
	body = s_child(env, NS_SOAP, "Body");
	op = s_child(body, st->ns, "PersonLookupRequest");
	if (!op) {
		s_fault(sim, res, "soap:Client", "REQUEST_INVALID",
			"the SOAP Body holds no PersonLookupRequest of this service version");
		goto done;
	}
	if (s_validate(ver == 5 ? st->schema_v5 : st->schema_v4, op, why) != 0) {
		s_fault(sim, res, "soap:Client", "REQUEST_INVALID", why);
		goto done;
	}
	if (ver == 5) {
		/* The token model: a WS-Security header with the STS assertion. */
		xmlNode *security;
		const char *problem;

		header = s_child(env, NS_SOAP, "Header");
		if (!(security = s_child(header, NS_WSSE, "Security"))) {
			s_fault(sim, res, "soap:Client", "SECURITY_MODEL",
				"Security model for the called operation was not provided. The "
				"following are supported: [KombitToken]");
			goto done;
		}
		if (st->sts_cert && (problem = s_token_problem(st, req, doc, security))) {
			s_fault(sim, res, "soap:Client", "SECURITY_TOKEN_INVALID", problem);
			goto done;
		}
	} else {
		xmlNode *ctx = s_child(op, NS_CTX, "InvocationContext");
		if (!ctx || !s_ctx_matches(ctx, "ServiceAgreementUUID", st->agreement) ||
		    !s_ctx_matches(ctx, "UserSystemUUID", st->usersystem) ||
		    !s_ctx_matches(ctx, "UserUUID", st->user) ||
		    !s_ctx_matches(ctx, "ServiceUUID", st->service)) {
			s_fault(sim, res, "soap:Client", "INVOCATION_CONTEXT_INVALID",
				"no service agreement for this invocation context");
			goto done;
		}
	}
	pnr = s_text(s_child(op, NS_PNR, "PNR"));
	if (!pnr || strlen(pnr) != 10 || !kanal_cpr_valid(pnr)) {
		s_fault(sim, res, "soap:Client", "PNR_INVALID", "PNR is not a valid CPR number");
		goto done;
	}
	if (st->answer_file) {
		s_canned(sim, res);
		goto done;
	}
	p = sim_person_find(pnr);
	if (!p) {
		s_fault(sim, res, "soap:Server", "PNR_NOT_FOUND", "PNR not found");
		goto done;
	}
	s_answer(sim, res, p);
done:
	free(pnr);
	xmlFreeDoc(doc);
}

static void s_handle(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	cpr_sim_t *st = sim_state(sim);
	bool v5 = !strcmp(req->path, "/cpr/5");

	if (!strcmp(req->path, "/cpr") || v5) {
		if (strcmp(req->method, "POST")) {
			sim_reply(res, 405, "text/plain", "POST a SOAP 1.1 envelope\n", -1);
			sim_reply_header(res, "Allow", "POST");
			return;
		}
		s_person_lookup(sim, req, res, v5 ? 5 : 4);
		return;
	}
	if (!strcmp(req->path, "/lookups") && !strcmp(req->method, "GET")) {
		sim_replyf(
			res, 200, "application/json",
			"{\"lookups\": %lu, \"answered\": %lu, \"faults\": %lu, \"invalid\": %lu}",
			st->lookups, st->answered, st->faults, st->invalid);
		return;
	}
	sim_reply(res, 404, "text/plain", "no such path (POST /cpr, POST /cpr/5, GET /lookups)\n",
		  -1);
}

/* Compiles one schema of the SF1520 folder; NULL (and a message) when it cannot. */
static xmlSchemaPtr s_schema(const char *dir, const char *file)
{
	char path[PATH_MAX];
	xmlSchemaParserCtxtPtr pc;
	xmlSchemaPtr schema;

	snprintf(path, sizeof path, "%s/%s", dir, file);
	pc = xmlSchemaNewParserCtxt(path);
	schema = pc ? xmlSchemaParse(pc) : NULL;
	xmlSchemaFreeParserCtxt(pc);
	if (!schema)
		fprintf(stderr, "kanal-sim-cpr: cannot compile the schema %s\n", path);
	return schema;
}

static int s_setup(sim_t *sim)
{
	char exe[PATH_MAX], dir[PATH_MAX + 32];
	const char *schemas;
	ssize_t n;

	xmlInitParser();
	/* The default: contracts/schemas/sf1520 of the tree whose build/bin holds us. */
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	exe[n > 0 ? n : 0] = '\0';
	for (int up = 0; up < 3; up++) {
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = '\0';
	}
	snprintf(dir, sizeof dir, "%s/contracts/schemas/sf1520", exe);
	schemas = sim_setting(sim, "schemas", dir);
	s_state.schema_v4 = s_schema(schemas, "PersonBaseDataExtendedServiceMsg.libxml2.xsd");
	s_state.schema_v5 = s_schema(schemas, "derived-v5/PersonBaseDataExtendedServiceMsg.xsd");
	if (!s_state.schema_v4 || !s_state.schema_v5)
		return -1;
	s_state.ns = NS_V4;
	s_state.agreement = sim_setting(sim, "agreement", UUID_AGREEMENT);
	s_state.usersystem = sim_setting(sim, "usersystem", UUID_USERSYSTEM);
	s_state.user = sim_setting(sim, "user", UUID_USER);
	s_state.service = sim_setting(sim, "service", UUID_SERVICE);
	s_state.answer_file = sim_setting(sim, "answer_file", NULL);
	s_state.tls = sim_setting(sim, "tls_cert", NULL) != NULL;
	s_state.token_clock_offset_ms = sim_setting_int(sim, "token_clock_offset", 0) * 1000;
	if (sim_setting(sim, "sts_cert", NULL)) {
		FILE *f = fopen(sim_setting(sim, "sts_cert", NULL), "r");
		size_t got = 0;
		char *text = NULL;
		if (f) {
			text = calloc(1, 1 << 16);
			got = text ? fread(text, 1, (1 << 16) - 1, f) : 0;
			fclose(f);
		}
		if (!got || xmlSecInit() < 0 || xmlSecCryptoAppInit(NULL) < 0 ||
		    xmlSecCryptoInit() < 0) {
			fprintf(stderr, "kanal-sim-cpr: cannot read sts_cert or start xmlsec\n");
			free(text);
			return -1;
		}
		s_state.sts_cert = text;
	}
	sim_set_state(sim, &s_state);
	return 0;
}

/* slow_pnr's delay for a request that names that number, else 0 (sim_def_t.delay_ms). */
static int64_t s_delay(sim_t *sim, const sim_request_t *req)
{
	const char *pnr = sim_setting(sim, "slow_pnr", NULL);

	if (!pnr || strlen(pnr) != 10 || !strstr(req->body, pnr))
		return 0;
	return sim_setting_int(sim, "slow_ms", 3000);
}

int main(int argc, char **argv)
{
	return sim_main(
		argc, argv,
		&(sim_def_t){ .name = "cpr",
			      .handle = s_handle,
			      .setup = s_setup,
			      .delay_ms = s_delay,
			      .garbage_type = XML_TYPE,
			      .garbage_body =
				      "<?xml version=\"1.0\"?><soap:Envelope xmlns:soap=\"" NS_SOAP
				      "\"><soap:Body><PersonLookupResponse><persondata>"
				      "<personnummer>" });
}
