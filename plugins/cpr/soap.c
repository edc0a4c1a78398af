/*
 * plugins/cpr/soap.c — the cpr plugin's side of the CPR lookup service's SOAP 1.1
 * protocol: it builds the PersonLookupRequest envelope (InvocationContext + PNR) with
 * libxml2's tree API, so every value is escaped, and reads the answer — a
 * PersonLookupResponse mapped to the person.lookup.response data of
 * docs/message-types.md, or a SOAP Fault with its ServiceplatformFault ErrorCode and
 * ErrorText.
 *
 * Answers are read by local element names, whatever namespace prefix or URI the service
 * uses (the real service's namespaces differ between versions; the request's are options).
 * The parser runs with no network access, no entity substitution and no DTD loading, and
 * refuses a document that declares a DTD at all: a SOAP message never has one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <kanal/kanal.h>

#include "cpr_int.h"

#define NS_SOAP "http://schemas.xmlsoap.org/soap/envelope/"

/* ---- the request ------------------------------------------------------------------------ */

char *cpr_soap_request(const cpr_soap_opts_t *o, const char *pnr, size_t *len)
{
	xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");
	xmlNode *env, *body, *req, *ctx;
	xmlNs *soap, *ns, *cns, *pns;
	xmlChar *mem = NULL;
	char *out = NULL;
	int n = 0;

	if (!doc)
		return NULL;
	env = xmlNewDocNode(doc, NULL, BAD_CAST "Envelope", NULL);
	if (!env)
		goto done;
	xmlDocSetRootElement(doc, env);
	soap = xmlNewNs(env, BAD_CAST NS_SOAP, BAD_CAST "soap");
	xmlSetNs(env, soap);
	xmlNewChild(env, soap, BAD_CAST "Header", NULL);
	body = xmlNewChild(env, soap, BAD_CAST "Body", NULL);
	req = body ? xmlNewChild(body, soap, BAD_CAST "PersonLookupRequest", NULL) : NULL;
	if (!req)
		goto done;
	ns = xmlNewNs(req, BAD_CAST o->ns, BAD_CAST "pbde");
	xmlSetNs(req, ns);
	/* The schema's sequence: CallContext?, AuthorityContext?, InvocationContext?, PNR. */
	if (o->version >= 5 && o->cvr && *o->cvr) {
		ctx = xmlNewChild(req, NULL, BAD_CAST "AuthorityContext", NULL);
		if (!ctx)
			goto done;
		cns = xmlNewNs(ctx, BAD_CAST CPR_NS_AUTCTX, BAD_CAST "autctx");
		xmlSetNs(ctx, cns);
		xmlNewTextChild(ctx, cns, BAD_CAST "MunicipalityCVR", BAD_CAST o->cvr);
	}
	if (o->version < 5) {
		ctx = xmlNewChild(req, NULL, BAD_CAST "InvocationContext", NULL);
		if (!ctx)
			goto done;
		cns = xmlNewNs(ctx, BAD_CAST o->ctx_ns, BAD_CAST "invctx");
		xmlSetNs(ctx, cns);
		xmlNewTextChild(ctx, cns, BAD_CAST "ServiceAgreementUUID", BAD_CAST o->agreement);
		xmlNewTextChild(ctx, cns, BAD_CAST "UserSystemUUID", BAD_CAST o->usersystem);
		xmlNewTextChild(ctx, cns, BAD_CAST "UserUUID", BAD_CAST o->user);
		xmlNewTextChild(ctx, cns, BAD_CAST "ServiceUUID", BAD_CAST o->service);
	}
	pns = xmlNewNs(req, BAD_CAST CPR_NS_PNR, BAD_CAST "pnr");
	xmlNewTextChild(req, pns, BAD_CAST "PNR", BAD_CAST pnr);
	xmlDocDumpMemoryEnc(doc, &mem, &n, "UTF-8");
	if (mem && n > 0 && (out = malloc((size_t)n + 1))) {
		memcpy(out, mem, (size_t)n);
		out[n] = '\0';
		if (len)
			*len = (size_t)n;
	}
	if (mem) {
		/* The envelope holds a CPR number: wipe the library's copy. */
		memset(mem, 0, (size_t)n);
		xmlFree(mem);
	}
done:
	xmlFreeDoc(doc);
	return out;
}

/* ---- reading the answer ----------------------------------------------------------------- */

/* The first element child of node with this local name, any namespace. */
static xmlNode *s_child(const xmlNode *node, const char *name)
{
	for (xmlNode *c = node ? node->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name))
			return c;
	return NULL;
}

/* The next element sibling after `after` with this local name. */
static xmlNode *s_next(const xmlNode *after, const char *name)
{
	for (xmlNode *c = after ? after->next : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name))
			return c;
	return NULL;
}

/* The first element with this local name anywhere below node (depth first). */
static xmlNode *s_find(const xmlNode *node, const char *name)
{
	for (xmlNode *c = node ? node->children : NULL; c; c = c->next) {
		xmlNode *hit;
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (!strcmp((const char *)c->name, name))
			return c;
		if ((hit = s_find(c, name)))
			return hit;
	}
	return NULL;
}

/* The element's text with surrounding blanks trimmed, as a new JSON string, or NULL when
 * the element is absent or empty. */
static json_t *s_text_json(const xmlNode *node)
{
	xmlChar *t;
	const char *s, *e;
	json_t *j = NULL;

	if (!node || !(t = xmlNodeGetContent(node)))
		return NULL;
	s = (const char *)t;
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		e--;
	if (e > s)
		j = json_stringn(s, (size_t)(e - s));
	xmlFree(t);
	return j;
}

/* Copies the trimmed text of node into buf ("" when absent). */
static void s_text_buf(const xmlNode *node, char *buf, size_t size)
{
	json_t *j = s_text_json(node);

	snprintf(buf, size, "%s", j ? json_string_value(j) : "");
	json_decref(j);
}

/* Sets obj[key] to the text of node when it has one. */
static void s_set_text(json_t *obj, const char *key, const xmlNode *node)
{
	json_t *j = s_text_json(node);

	if (j)
		json_object_set_new(obj, key, j);
}

/* A schema boolean: "true" or "1". */
static bool s_bool(const xmlNode *node)
{
	char buf[16];

	s_text_buf(node, buf, sizeof buf);
	return !strcmp(buf, "true") || !strcmp(buf, "1");
}

/* The value of a register field that the contract wraps: <status><status>1</status>
 * <statusdato>…</statusdato></status>, <foedselsdato><dato>…</dato>…>. The inner element
 * `inner` when present, else the element itself (a flat answer). */
static const xmlNode *s_inner(const xmlNode *node, const char *inner)
{
	const xmlNode *in = s_child(node, inner);
	return in ? in : node;
}

/* The personnummer of a relation (<mor><personnummer>…), or NULL when the relative has
 * none: the register then writes foedselsdato and navn instead (personRelationType). */
static json_t *s_relation_cpr(const xmlNode *rel)
{
	return s_text_json(s_child(rel, "personnummer"));
}

/* A relative the register knows without a CPR number: {relation, name?, birth_date?}. */
static void s_without_cpr(json_t *list, const xmlNode *rel, const char *relation)
{
	json_t *o, *j;
	char buf[32];

	if (!rel || s_child(rel, "personnummer") || !(o = json_pack("{s:s}", "relation", relation)))
		return;
	if ((j = s_text_json(s_child(rel, "navn"))))
		json_object_set_new(o, "name", j);
	s_text_buf(s_inner(s_child(rel, "foedselsdato"), "dato"), buf, sizeof buf);
	if (strlen(buf) >= 10 && buf[4] == '-' && buf[7] == '-')
		json_object_set_new(o, "birth_date", json_stringn(buf, 10));
	json_array_append_new(list, o);
}

/* Maps relationer to {spouse, children[], mother, father, custody[{cpr, type, code}],
 * without_cpr[]}. Custody is recorded on the child: type 3 is the mother (her CPR is
 * relationer/mor), 4 the father (relationer/far), 5 and 6 another holder whose CPR is
 * relationPersonnummer; an entry with foraeldremyndighedSletdato has ended and is left
 * out, as is one whose holder has no CPR number. */
static json_t *s_relations(const xmlNode *rel)
{
	json_t *out = json_object(), *children = json_array(), *custody = json_array();
	json_t *nocpr = json_array(), *j;
	const xmlNode *mor = s_child(rel, "mor"), *far = s_child(rel, "far");

	if (!out || !children || !custody || !nocpr) {
		json_decref(out);
		json_decref(children);
		json_decref(custody);
		json_decref(nocpr);
		return NULL;
	}
	if ((j = s_relation_cpr(s_child(rel, "aegtefaelle"))))
		json_object_set_new(out, "spouse", j);
	for (xmlNode *b = s_child(rel, "barn"); b; b = s_next(b, "barn"))
		if ((j = s_relation_cpr(b)))
			json_array_append_new(children, j);
	json_object_set_new(out, "children", children);
	if ((j = s_relation_cpr(mor)))
		json_object_set_new(out, "mother", j);
	if ((j = s_relation_cpr(far)))
		json_object_set_new(out, "father", j);
	s_without_cpr(nocpr, s_child(rel, "aegtefaelle"), "spouse");
	s_without_cpr(nocpr, mor, "mother");
	s_without_cpr(nocpr, far, "father");
	if (json_array_size(nocpr))
		json_object_set(out, "without_cpr", nocpr);
	json_decref(nocpr);
	for (xmlNode *f = s_child(rel, "foraeldremyndighed"); f;
	     f = s_next(f, "foraeldremyndighed")) {
		json_t *holder;
		char type[16];
		const char *kind;

		if (s_child(f, "foraeldremyndighedSletdato"))
			continue; /* ended */
		s_text_buf(s_child(f, "foraeldremyndighedtype"), type, sizeof type);
		if (!strcmp(type, "3")) {
			kind = "mother";
			holder = s_relation_cpr(mor);
		} else if (!strcmp(type, "4")) {
			kind = "father";
			holder = s_relation_cpr(far);
		} else if (!strcmp(type, "5") || !strcmp(type, "6")) {
			kind = "other";
			holder = s_text_json(s_child(f, "relationPersonnummer"));
		} else {
			continue; /* not a type the contract has */
		}
		if (!holder)
			continue;
		json_array_append_new(custody, json_pack("{s:o, s:s, s:i}", "cpr", holder, "type",
							 kind, "code", atoi(type)));
	}
	json_object_set_new(out, "custody", custody);
	return out;
}

bool cpr_holds_custody(json_t *child, const char *cpr)
{
	json_t *custody = json_object_get(json_object_get(child, "relations"), "custody");
	size_t i;
	json_t *h;

	json_array_foreach(custody, i, h) if (cpr && json_is_string(json_object_get(h, "cpr")) &&
					      !strcmp(json_string_value(json_object_get(h, "cpr")),
						      cpr)) return true;
	return false;
}

/* Maps adresse/udrejseoplysninger (an emigrated person's): {country, date}; NULL when none. */
static json_t *s_abroad(const xmlNode *udr)
{
	json_t *a;
	char buf[32];

	if (!udr || !(a = json_object()))
		return NULL;
	s_set_text(a, "country", s_child(udr, "udrejselandekode"));
	s_text_buf(s_inner(s_child(udr, "udrejsedato"), "dato"), buf, sizeof buf);
	if (strlen(buf) >= 10 && buf[4] == '-' && buf[7] == '-')
		json_object_set_new(a, "date", json_stringn(buf, 10));
	return a;
}

/* Maps adresse/aktuelAdresse; NULL when there is none. */
static json_t *s_address(const xmlNode *akt)
{
	json_t *a;
	char code[16];
	char *end;
	long m;

	if (!akt || !(a = json_object()))
		return NULL;
	s_set_text(a, "street", s_child(akt, "vejnavn"));
	s_set_text(a, "number", s_child(akt, "husnummer"));
	s_set_text(a, "floor", s_child(akt, "etage"));
	s_set_text(a, "door", s_child(akt, "sidedoer"));
	s_set_text(a, "postcode", s_child(akt, "postnummer"));
	s_set_text(a, "city", s_child(akt, "postdistrikt"));
	s_text_buf(s_child(akt, "kommunekode"), code, sizeof code);
	m = strtol(code, &end, 10);
	if (*code && !*end)
		json_object_set_new(a, "municipality", json_integer(m));
	s_set_text(a, "co", s_child(akt, "conavn"));
	if (json_object_size(a) == 0) {
		json_decref(a);
		return NULL;
	}
	return a;
}

/* Maps PersonLookupResponse into res->person, or says why it cannot. */
static cpr_soap_kind_t s_answer(const xmlNode *resp, const char *pnr, cpr_soap_result_t *res)
{
	const xmlNode *pd = s_child(resp, "persondata"), *navn;
	json_t *p, *name, *cpr, *address, *relations, *protection;
	char buf[32], *end;
	bool prot;
	long status;

	cpr = s_text_json(s_child(pd, "personnummer"));
	if (!pd || !cpr) {
		json_decref(cpr);
		snprintf(res->why, sizeof res->why, "the answer has no persondata/personnummer");
		return res->kind = CPR_SOAP_GARBAGE;
	}
	/* An answer about somebody else must never be passed on as this person's. The
	 * service may write the number with its hyphen; the event carries ten digits. */
	{
		const char *t = json_string_value(cpr);
		char digits[16];
		size_t n = 0;

		for (; *t && n < sizeof digits - 1; t++)
			if (*t != '-')
				digits[n++] = *t;
		digits[n] = '\0';
		json_string_set(cpr, digits);
	}
	if (strcmp(json_string_value(cpr), pnr)) {
		json_decref(cpr);
		snprintf(res->why, sizeof res->why, "the answer is about another person");
		return res->kind = CPR_SOAP_GARBAGE;
	}
	if (!(p = json_object())) {
		json_decref(cpr);
		snprintf(res->why, sizeof res->why, "out of memory");
		return res->kind = CPR_SOAP_GARBAGE;
	}
	json_object_set_new(p, "cpr", cpr);
	if ((navn = s_child(pd, "navn")) && (name = json_object())) {
		s_set_text(name, "first", s_child(navn, "fornavn"));
		s_set_text(name, "middle", s_child(navn, "mellemnavn"));
		s_set_text(name, "last", s_child(navn, "efternavn"));
		s_set_text(name, "addressing", s_child(navn, "personadresseringsnavn"));
		json_object_set_new(p, "name", name);
	}
	/* xs:date may carry a zone ("2021-04-14+01:00"): events want YYYY-MM-DD. */
	s_text_buf(s_inner(s_child(pd, "foedselsdato"), "dato"), buf, sizeof buf);
	if (strlen(buf) >= 10 && buf[4] == '-' && buf[7] == '-')
		json_object_set_new(p, "birth_date", json_stringn(buf, 10));
	s_set_text(p, "sex", s_child(pd, "koen"));
	s_text_buf(s_inner(s_child(pd, "status"), "status"), buf, sizeof buf);
	status = strtol(buf, &end, 10);
	if (*buf && !*end) {
		/* "Alive" is every status but 90; "resident" 1, 3, 5, 7 (contract §2). */
		json_object_set_new(p, "status", json_integer(status));
		json_object_set_new(p, "alive", json_boolean(status != 90));
		json_object_set_new(
			p, "resident",
			json_boolean(status == 1 || status == 3 || status == 5 || status == 7));
	}
	s_set_text(p, "civil_status", s_inner(s_child(pd, "civilstand"), "civilstand"));
	prot = s_bool(s_child(s_child(pd, "adressebeskyttelse"), "beskyttet"));
	if ((address = s_address(s_child(s_child(resp, "adresse"), "aktuelAdresse"))))
		json_object_set_new(p, "address", address);
	if ((address = s_abroad(s_child(s_child(resp, "adresse"), "udrejseoplysninger"))))
		json_object_set_new(p, "abroad", address);
	json_object_set_new(p, "protected_address", json_boolean(prot));
	protection = json_pack(
		"{s:b, s:b, s:b}", "address", prot, "directory",
		s_bool(s_child(s_child(pd, "vejviserbeskyttelse"), "beskyttet")), "marketing",
		s_bool(s_child(s_child(pd, "markedsfoeringsbeskyttelse"), "beskyttet")));
	if (protection)
		json_object_set_new(p, "protection", protection);
	json_object_set_new(p, "digital_post",
			    json_boolean(s_bool(s_child(pd, "tilmeldtDigitalpost"))));
	json_object_set_new(p, "nemsms", json_boolean(s_bool(s_child(pd, "tilmeldtNemsms"))));
	if ((relations = s_relations(s_child(resp, "relationer"))))
		json_object_set_new(p, "relations", relations);
	res->person = p;
	return res->kind = CPR_SOAP_ANSWER;
}

/* Reads a SOAP 1.1 Fault. */
static cpr_soap_kind_t s_fault(const xmlNode *fault, cpr_soap_result_t *res)
{
	const xmlNode *spf = s_find(s_child(fault, "detail"), "ServiceplatformFault");
	const xmlNode *err = s_find(spf, "Error");
	char faultcode[64];

	s_text_buf(s_child(fault, "faultcode"), faultcode, sizeof faultcode);
	/* "soap:Server" (or "Server"): the service's own trouble, worth another try. */
	res->server = strstr(faultcode, "Server") != NULL;
	s_text_buf(s_child(err, "ErrorCode"), res->code, sizeof res->code);
	s_text_buf(s_child(err, "ErrorText"), res->text, sizeof res->text);
	{
		/* Clients recognise "not found" by this text in the fault (contract §0). */
		char fs[256];

		s_text_buf(s_child(fault, "faultstring"), fs, sizeof fs);
		res->not_found = strstr(fs, "PNR not found") || strstr(res->text, "PNR not found");
		/* The faultstring's first line; the CallUUID lines follow it. */
		fs[strcspn(fs, "\r\n")] = '\0';
		if (!*res->text)
			snprintf(res->text, sizeof res->text, "%s", fs);
	}
	if (!*res->text)
		snprintf(res->text, sizeof res->text, "%s", *faultcode ? faultcode : "SOAP fault");
	/* Keep the code to a safe token: it goes into audit lines and errors. */
	for (char *c = res->code; *c; c++)
		if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		      (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || *c == '.'))
			*c = '_';
	for (char *c = res->text; *c; c++)
		if ((unsigned char)*c < 0x20)
			*c = ' ';
	kanal_cpr_redact_inplace(res->code);
	{
		/* DDMMYY-XXXX, as everywhere else (the in-place form cannot add the hyphen). */
		char *masked = kanal_cpr_redact(res->text, strlen(res->text));
		if (masked)
			snprintf(res->text, sizeof res->text, "%s", masked);
		else
			kanal_cpr_redact_inplace(res->text);
		kanal_free(masked);
	}
	return res->kind = CPR_SOAP_FAULT;
}

cpr_soap_kind_t cpr_soap_parse(const char *body, size_t len, const char *pnr,
			       cpr_soap_result_t *res)
{
	xmlDoc *doc;
	xmlNode *env, *soap_body, *first;
	cpr_soap_kind_t kind;

	memset(res, 0, sizeof *res);
	if (!body || len == 0 || len > (size_t)INT32_MAX) {
		snprintf(res->why, sizeof res->why, "the answer is empty");
		return res->kind = CPR_SOAP_GARBAGE;
	}
	/* No XML_PARSE_NOENT (entities stay unexpanded), no DTDLOAD, no network, no
	 * messages on stderr (they could quote the answer). */
	doc = xmlReadMemory(body, (int)len, "answer.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
				    XML_PARSE_NOCDATA);
	if (!doc) {
		snprintf(res->why, sizeof res->why, "the answer is not well-formed XML");
		return res->kind = CPR_SOAP_GARBAGE;
	}
	if (doc->intSubset || doc->extSubset) {
		snprintf(res->why, sizeof res->why, "the answer declares a DTD (refused)");
		kind = res->kind = CPR_SOAP_GARBAGE;
		goto done;
	}
	env = xmlDocGetRootElement(doc);
	if (!env || strcmp((const char *)env->name, "Envelope") || !env->ns ||
	    strcmp((const char *)env->ns->href, NS_SOAP)) {
		snprintf(res->why, sizeof res->why, "the answer is not a SOAP 1.1 envelope");
		kind = res->kind = CPR_SOAP_GARBAGE;
		goto done;
	}
	soap_body = s_child(env, "Body");
	first = soap_body ? s_child(soap_body, "Fault") : NULL;
	if (first) {
		kind = s_fault(first, res);
		goto done;
	}
	first = soap_body ? s_child(soap_body, "PersonLookupResponse") : NULL;
	if (!first) {
		snprintf(res->why, sizeof res->why,
			 "the SOAP Body holds neither PersonLookupResponse nor a Fault");
		kind = res->kind = CPR_SOAP_GARBAGE;
		goto done;
	}
	kind = s_answer(first, pnr, res);
done:
	xmlFreeDoc(doc);
	return kind;
}

void cpr_soap_result_clear(cpr_soap_result_t *res)
{
	if (!res)
		return;
	json_decref(res->person);
	memset(res, 0, sizeof *res);
}
