/*
 * examples/simulators/cpr.c — kanal-sim-cpr, the simulated CPR lookup service (the
 * municipal "person base data extended" service): SOAP 1.1 over HTTP with one operation,
 * PersonLookup, answering from the synthetic population (population.h). The cpr plugin
 * (plugins/cpr) is tested against it, and the demo points the cpr instance at it.
 *
 *   POST /cpr       a SOAP 1.1 envelope whose Body holds PersonLookupRequest
 *                   (InvocationContext + PNR); answers PersonLookupResponse, or a SOAP Fault
 *                   (HTTP 500) with detail ServiceplatformFault/ErrorList/Error
 *                   (ErrorCode, ErrorText)
 *   GET  /lookups   {"lookups": N, "answered": N, "faults": N}: PersonLookup operations
 *                   served (tests check a cache with it; /_sim/stats counts every request)
 *
 * Settings (--set NAME=VALUE): agreement, usersystem, user, service — the InvocationContext
 * UUIDs the service accepts (defaults below); namespace, context_namespace,
 * fault_namespace — the XML namespaces (defaults below, written down in docs/plugins/cpr.md);
 * answer_file — a test hook: every valid request is answered with that file's current
 * content (HTTP 500 when it holds a Fault), to try the client on odd or hostile answers.
 *
 * Fault codes: PNR_NOT_FOUND (a valid number nobody has), PNR_MALFORMED (not a CPR number),
 * INVOCATION_CONTEXT_INVALID (a UUID differs from the settings), REQUEST_MALFORMED (not a
 * PersonLookupRequest envelope). The `garbage` fault of sim.c answers 200 with broken XML.
 *
 * What population.h does not hold is derived: children from the other people's mother and
 * father; vejviserbeskyttelse follows adressebeskyttelse; markedsfoeringsbeskyttelse is
 * false; tilmeldtNemsms is true for people enrolled in Digital Post who are alive and in
 * the country.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <kanal/cpr.h>

#include "population.h"
#include "sim.h"

#define NS_SOAP "http://schemas.xmlsoap.org/soap/envelope/"
#define NS_SVC_DEFAULT "urn:kanal:sim:cpr:personlookup:1"
#define NS_CTX_DEFAULT "urn:kanal:sim:invocationcontext:1"
#define NS_FAULT_DEFAULT "urn:kanal:sim:serviceplatformfault:1"

#define UUID_AGREEMENT "6f1c7c44-1b0a-4c52-9a8e-1d2f0c6b7a01"
#define UUID_USERSYSTEM "0c9b1a7e-3d5f-4e21-8b6a-2a7c9e4d5f02"
#define UUID_USER "9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c03"
#define UUID_SERVICE "4a3b2c1d-0e9f-4a8b-8c7d-6e5f4a3b2c04"

#define XML_TYPE "text/xml; charset=utf-8"

typedef struct cpr_sim {
	const char *ns, *ctx_ns, *fault_ns;
	const char *agreement, *usersystem, *user, *service;
	const char *answer_file; /* NULL: answer from the population */
	unsigned long lookups, answered, faults;
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
	while (end > start && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' ||
			       end[-1] == '\r'))
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

/* Answers a SOAP 1.1 Fault (HTTP 500) with a ServiceplatformFault detail. */
static void s_fault(sim_t *sim, sim_response_t *res, const char *faultcode, const char *code,
		    const char *text)
{
	cpr_sim_t *st = sim_state(sim);
	xmlNode *body, *fault, *detail, *spf, *list, *err;
	xmlDoc *doc = s_envelope(&body);
	xmlNs *fns;

	st->faults++;
	fault = xmlNewChild(body, body->ns, BAD_CAST "Fault", NULL);
	/* faultcode, faultstring and detail are unqualified in SOAP 1.1 (xmlNewChild would
	 * give them the parent's namespace). */
	s_add_unqualified(fault, "faultcode", faultcode);
	s_add_unqualified(fault, "faultstring", text);
	detail = s_add_unqualified(fault, "detail", NULL);
	spf = s_add_unqualified(detail, "ServiceplatformFault", NULL);
	fns = xmlNewNs(spf, BAD_CAST st->fault_ns, NULL);
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

/* Builds PersonLookupResponse for person p. */
static void s_answer(sim_t *sim, sim_response_t *res, const sim_person_t *p)
{
	cpr_sim_t *st = sim_state(sim);
	xmlNode *body, *resp, *pd, *navn, *adr, *akt, *rel;
	xmlDoc *doc = s_envelope(&body);
	kanal_cpr_t parsed;
	char buf[256];
	xmlNs *ns;

	resp = xmlNewChild(body, NULL, BAD_CAST "PersonLookupResponse", NULL);
	ns = xmlNewNs(resp, BAD_CAST st->ns, NULL);
	xmlSetNs(resp, ns);

	pd = xmlNewChild(resp, ns, BAD_CAST "persondata", NULL);
	xmlNewTextChild(pd, ns, BAD_CAST "personnummer", BAD_CAST p->cpr);
	navn = xmlNewChild(pd, ns, BAD_CAST "navn", NULL);
	xmlNewTextChild(navn, ns, BAD_CAST "fornavn", BAD_CAST p->first);
	s_opt_text(navn, ns, "mellemnavn", p->middle);
	xmlNewTextChild(navn, ns, BAD_CAST "efternavn", BAD_CAST p->last);
	/* The addressing name as the register writes it: "Efternavn,Fornavn Mellemnavn". */
	snprintf(buf, sizeof buf, "%s,%s%s%s", p->last, p->first, p->middle ? " " : "",
		 p->middle ? p->middle : "");
	xmlNewTextChild(navn, ns, BAD_CAST "personadresseringsnavn", BAD_CAST buf);
	if (kanal_cpr_parse(p->cpr, &parsed, NULL) == 0) {
		snprintf(buf, sizeof buf, "%04d-%02d-%02d", parsed.year, parsed.month, parsed.day);
		xmlNewTextChild(pd, ns, BAD_CAST "foedselsdato", BAD_CAST buf);
	}
	snprintf(buf, sizeof buf, "%c", p->sex);
	xmlNewTextChild(pd, ns, BAD_CAST "koen", BAD_CAST buf);
	snprintf(buf, sizeof buf, "%d", p->status);
	xmlNewTextChild(pd, ns, BAD_CAST "status", BAD_CAST buf);
	snprintf(buf, sizeof buf, "%c", p->civil);
	xmlNewTextChild(pd, ns, BAD_CAST "civilstand", BAD_CAST buf);
	s_protection(pd, ns, "adressebeskyttelse", p->protected_address);
	s_protection(pd, ns, "vejviserbeskyttelse", p->protected_address);
	s_protection(pd, ns, "markedsfoeringsbeskyttelse", false);
	s_bool_child(pd, ns, "tilmeldtDigitalpost", p->digital_post);
	s_bool_child(pd, ns, "tilmeldtNemsms", p->digital_post && p->status == 1);

	if (p->street) {
		adr = xmlNewChild(resp, ns, BAD_CAST "adresse", NULL);
		akt = xmlNewChild(adr, ns, BAD_CAST "aktuelAdresse", NULL);
		s_opt_text(akt, ns, "vejnavn", p->street);
		s_opt_text(akt, ns, "husnummer", p->number);
		s_opt_text(akt, ns, "etage", p->floor);
		s_opt_text(akt, ns, "sidedoer", p->door);
		s_opt_text(akt, ns, "postnummer", p->postcode);
		s_opt_text(akt, ns, "postdistrikt", p->city);
		if (p->municipality) {
			snprintf(buf, sizeof buf, "%04d", p->municipality);
			xmlNewTextChild(akt, ns, BAD_CAST "kommunekode", BAD_CAST buf);
		}
	}

	rel = xmlNewChild(resp, ns, BAD_CAST "relationer", NULL);
	s_relation(rel, ns, "aegtefaelle", p->spouse);
	for (size_t i = 0; i < sim_n_people; i++) {
		const sim_person_t *c = &sim_people[i];
		if ((c->mother && !strcmp(c->mother, p->cpr)) ||
		    (c->father && !strcmp(c->father, p->cpr)))
			s_relation(rel, ns, "barn", c->cpr);
	}
	s_relation(rel, ns, "mor", p->mother);
	s_relation(rel, ns, "far", p->father);
	for (int i = 0; i < 2; i++) {
		xmlNode *fm;
		if (!p->custody[i])
			continue;
		fm = xmlNewChild(rel, ns, BAD_CAST "foraeldremyndighed", NULL);
		snprintf(buf, sizeof buf, "%d", p->custody_type[i]);
		xmlNewTextChild(fm, ns, BAD_CAST "foraeldremyndighedtype", BAD_CAST buf);
		xmlNewTextChild(fm, ns, BAD_CAST "relationPersonnummer", BAD_CAST p->custody[i]);
	}
	st->answered++;
	sim_log(sim, "PersonLookup %s -> answered", p->cpr);
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
static bool s_ctx_matches(const cpr_sim_t *st, const xmlNode *ctx, const char *name,
			  const char *want)
{
	char *v = s_text(s_child(ctx, st->ctx_ns, name));
	bool ok = v && !strcasecmp(v, want);

	free(v);
	return ok;
}

static void s_person_lookup(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	cpr_sim_t *st = sim_state(sim);
	xmlNode *env, *body, *op, *ctx;
	const sim_person_t *p;
	char *pnr = NULL;
	xmlDoc *doc;

	st->lookups++;
	/* No network, no entities, no DTD: a request is data, never instructions. */
	doc = xmlReadMemory(req->body, (int)req->body_len, "request.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	env = doc ? xmlDocGetRootElement(doc) : NULL;
	if (!env || doc->intSubset || strcmp((const char *)env->name, "Envelope") || !env->ns ||
	    strcmp((const char *)env->ns->href, NS_SOAP)) {
		s_fault(sim, res, "soap:Client", "REQUEST_MALFORMED",
			"the request is not a SOAP 1.1 envelope");
		goto done;
	}
	body = s_child(env, NS_SOAP, "Body");
	op = s_child(body, st->ns, "PersonLookupRequest");
	if (!op) {
		s_fault(sim, res, "soap:Client", "REQUEST_MALFORMED",
			"the SOAP Body holds no PersonLookupRequest in the service's namespace");
		goto done;
	}
	ctx = s_child(op, st->ctx_ns, "InvocationContext");
	if (!ctx || !s_ctx_matches(st, ctx, "ServiceAgreementUUID", st->agreement) ||
	    !s_ctx_matches(st, ctx, "UserSystemUUID", st->usersystem) ||
	    !s_ctx_matches(st, ctx, "UserUUID", st->user) ||
	    !s_ctx_matches(st, ctx, "ServiceUUID", st->service)) {
		s_fault(sim, res, "soap:Client", "INVOCATION_CONTEXT_INVALID",
			"no service agreement for this invocation context");
		goto done;
	}
	pnr = s_text(s_child(op, st->ns, "PNR"));
	if (!pnr || !kanal_cpr_valid(pnr)) {
		s_fault(sim, res, "soap:Client", "PNR_MALFORMED", "PNR is not a valid CPR number");
		goto done;
	}
	if (st->answer_file) {
		s_canned(sim, res);
		goto done;
	}
	p = sim_person_find(pnr);
	if (!p) {
		s_fault(sim, res, "soap:Client", "PNR_NOT_FOUND", "no person with this PNR");
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

	if (!strcmp(req->path, "/cpr")) {
		if (strcmp(req->method, "POST")) {
			sim_reply(res, 405, "text/plain", "POST a SOAP 1.1 envelope\n", -1);
			sim_reply_header(res, "Allow", "POST");
			return;
		}
		s_person_lookup(sim, req, res);
		return;
	}
	if (!strcmp(req->path, "/lookups") && !strcmp(req->method, "GET")) {
		sim_replyf(res, 200, "application/json",
			   "{\"lookups\": %lu, \"answered\": %lu, \"faults\": %lu}", st->lookups,
			   st->answered, st->faults);
		return;
	}
	sim_reply(res, 404, "text/plain", "no such path (POST /cpr, GET /lookups)\n", -1);
}

static int s_setup(sim_t *sim)
{
	xmlInitParser();
	s_state.ns = sim_setting(sim, "namespace", NS_SVC_DEFAULT);
	s_state.ctx_ns = sim_setting(sim, "context_namespace", NS_CTX_DEFAULT);
	s_state.fault_ns = sim_setting(sim, "fault_namespace", NS_FAULT_DEFAULT);
	s_state.agreement = sim_setting(sim, "agreement", UUID_AGREEMENT);
	s_state.usersystem = sim_setting(sim, "usersystem", UUID_USERSYSTEM);
	s_state.user = sim_setting(sim, "user", UUID_USER);
	s_state.service = sim_setting(sim, "service", UUID_SERVICE);
	s_state.answer_file = sim_setting(sim, "answer_file", NULL);
	sim_set_state(sim, &s_state);
	return 0;
}

int main(int argc, char **argv)
{
	return sim_main(argc, argv,
			&(sim_def_t){ .name = "cpr",
				      .handle = s_handle,
				      .setup = s_setup,
				      .garbage_type = XML_TYPE,
				      .garbage_body =
					      "<?xml version=\"1.0\"?><soap:Envelope xmlns:soap=\""
					      NS_SOAP "\"><soap:Body><PersonLookupResponse><persondata>"
					      "<personnummer>" });
}
