/*
 * examples/simulators/sts.c — kanal-sim-sts, a simulated Security Token Service (SF1514,
 * "Adgangsstyring") and AccessTokenService as ../shared/contracts/README.md section 1
 * describes them, serving https with mutual TLS (sim.h: --set tls_cert/tls_key/tls_ca).
 * It checks what the real one checks — a client certificate issued by the test CA and
 * valid now, the request's fixed strings, UseKey equal to the TLS certificate, a CVR, a
 * known entity ID, for SOAP a signature over the contract's parts (verified with xmlsec,
 * independently of the client's hand-made one) — and issues holder-of-key SAML assertions
 * signed with its own key (xmlsec, enveloped), with an expiry.
 *
 * API:
 *   POST /runtime/api/rest/wstrust/v1/issue      JSON (examples/sts/rest-issue.request.json)
 *        200 {"RequestedSecurityToken":{"Assertion":"<base64>"},"Lifetime":"MM/dd/yyyy HH:mm:ss"}
 *   POST /runtime/services/kombittrust/14/certificatemixed   signed WS-Trust RST (SOAP 1.2)
 *        200 RequestSecurityTokenResponseCollection with the assertion and wst:Lifetime
 *   POST /service/AccessTokenService_1/token     saml-token=<base64 assertion, urlencoded>
 *        200 {"access_token":"<uuid>","token_type":"Holder-of-key","expires_in":N}
 *   POST /service/AccessTokenService_1/introspect token=<access token>   (mutual TLS)
 *        200 {"active":true,"entity":…,"holder":<cert DER base64>,"expires_in":N} or
 *            {"active":false,"reason":…}: how a simulated REST service (kanal-sim-digitalpost
 *            --set sts=URL) checks a Holder-of-key token, which the real platform does inside
 *   GET  /sts/stats                              {"issued":N,"exchanged":N,"refused":N}
 *   POST /sts/revoke                             test switch: all access tokens stop being good
 * Refusals: REST answers 400 (a malformed request, an unknown entity ID) or 401 (no,
 * untrusted or expired client certificate; UseKey not the TLS certificate) with
 * {"ErrorCode": …, "ErrorText": …} (kanal's shape: the contract does not give the real
 * one); SOAP answers a SOAP 1.2 Fault (Sender) with the same text.
 *
 * Settings: entities (comma-separated entity IDs it knows; default the contract's table),
 * saml_ttl (seconds, default 28800), access_ttl (seconds, default 3600).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <xmlsec/crypto.h>
#include <xmlsec/templates.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <kanal/time.h>

#include "sim.h"

#define NS_SAML "urn:oasis:names:tc:SAML:2.0:assertion"
#define NS_WSU "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
#define NS_WSSE "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
#define NS_WST "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
#define NS_DS "http://www.w3.org/2000/09/xmldsig#"
#define TOKEN_TYPE "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0"
#define REQUEST_TYPE "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue"
#define KEY_TYPE "http://docs.oasis-open.org/ws-sx/ws-trust/200512/PublicKey"
#define STS_MAX_ACCESS 1024

static const char s_default_entities[] =
	"http://entityid.kombit.dk/service/kombipostafsend/1,"
	"http://entityid.kombit.dk/service/postforespoerg/1,"
	"http://cpr.serviceplatformen.dk/service/personbasedataextended/5,"
	"http://cpr.serviceplatformen.dk/service/personbasedataextended/4,"
	"http://sp.serviceplatformen.dk/service/fordeling/3,"
	"http://entityid.kombit.dk/service/bfo_modtag/2";

typedef struct issued {
	char id[48];
	char *cert_b64; /* the holder-of-key certificate */
	char *entity;   /* the service it is for (Audience) */
	int64_t expires_ms;
} issued_t;

/* An access token handed out by the exchange: which assertion it came from. */
typedef struct access {
	char token[40];
	size_t assertion; /* index into sts_t.tokens */
	int64_t expires_ms;
} access_t;

typedef struct sts {
	char *key_pem, *cert_pem; /* the simulator signs with its TLS key */
	issued_t *tokens;
	size_t n, cap;
	access_t access[STS_MAX_ACCESS]; /* the latest access tokens, a ring */
	size_t n_access;                 /* how many were handed out (since a revoke) */
	unsigned long serial;
	unsigned issued, exchanged, refused;
} sts_t;

static char *s_read(const char *path)
{
	FILE *f = path ? fopen(path, "r") : NULL;
	char *buf = NULL;
	size_t len = 0;
	FILE *m;

	if (!f)
		return NULL;
	if ((m = open_memstream(&buf, &len))) {
		char chunk[4096];
		size_t n;
		while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
			fwrite(chunk, 1, n, m);
		fclose(m);
	}
	fclose(f);
	return buf;
}

static bool s_entity_known(sim_t *sim, const char *entity)
{
	const char *list = sim_setting(sim, "entities", s_default_entities);
	size_t n = strlen(entity);

	for (const char *p = list; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && !strncmp(p, entity, n))
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

static void s_refuse(sim_t *sim, sim_response_t *res, bool soap, int status, const char *code,
		     const char *text)
{
	sts_t *sts = sim_state(sim);

	sts->refused++;
	sim_log(sim, "refused: %s: %s", code, text);
	if (soap) {
		sim_replyf(
			res, status == 401 ? 400 : status, "application/soap+xml; charset=utf-8",
			"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>"
			"<s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code><s:Reason>"
			"<s:Text xml:lang=\"en\">%s: %s</s:Text></s:Reason></s:Fault></s:Body>"
			"</s:Envelope>",
			code, text);
		return;
	}
	{
		json_t *j = json_pack("{s:s, s:s}", "ErrorCode", code, "ErrorText", text);
		char *body = json_dumps(j, JSON_COMPACT);
		sim_reply_take(res, status, "application/json", body, strlen(body));
		json_decref(j);
	}
}

/* Whether the TLS client certificate may ask for tokens; refuses (and says why) if not. */
static bool s_client_ok(sim_t *sim, const sim_request_t *req, sim_response_t *res, bool soap)
{
	switch (req->client_cert) {
	case SIM_CERT_OK:
		return true;
	case SIM_CERT_EXPIRED:
		s_refuse(sim, res, soap, 401, "CERTIFICATE_EXPIRED",
			 "the client certificate has expired or is not yet valid");
		return false;
	case SIM_CERT_UNTRUSTED:
		s_refuse(sim, res, soap, 401, "CERTIFICATE_UNTRUSTED",
			 "the client certificate is not issued by a trusted CA");
		return false;
	default:
		s_refuse(sim, res, soap, 401, "CERTIFICATE_MISSING",
			 "no client certificate (mutual TLS is required)");
		return false;
	}
}

/* Mints and signs (xmlsec, enveloped, exc-c14n, RSA-SHA256) the assertion for entity, bound
 * to the holder's certificate. Returns its XML (malloc'd) and its expiry. */
static char *s_mint(sim_t *sim, const char *entity, const char *cvr, const char *cert_b64,
		    int64_t *expires_out)
{
	sts_t *sts = sim_state(sim);
	int64_t now = kanal_wall_ms(), exp = now + sim_setting_int(sim, "saml_ttl", 28800) * 1000;
	char nb[KANAL_TIME_RFC3339_SIZE], na[KANAL_TIME_RFC3339_SIZE], id[48], *text = NULL;
	xmlDocPtr doc = NULL;
	xmlNodePtr root, issuer, sig, ref, ki;
	xmlSecDSigCtxPtr ctx = NULL;
	xmlChar *out = NULL;
	int len = 0;

	kanal_time_rfc3339(now, nb, sizeof nb);
	kanal_time_rfc3339(exp, na, sizeof na);
	snprintf(id, sizeof id, "_sim%08lx%08lx", (unsigned long)(now & 0xffffffff), ++sts->serial);
	if (asprintf(&text,
		     "<saml:Assertion xmlns:saml=\"" NS_SAML
		     "\" ID=\"%s\" IssueInstant=\"%s\" Version=\"2.0\">"
		     "<saml:Issuer>http://saml.kanal-sim-sts.invalid/runtime</saml:Issuer>"
		     "<saml:Subject><saml:NameID "
		     "Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName\">kanal "
		     "test</saml:NameID>"
		     "<saml:SubjectConfirmation "
		     "Method=\"urn:oasis:names:tc:SAML:2.0:cm:holder-of-key\">"
		     "<saml:SubjectConfirmationData><ds:KeyInfo xmlns:ds=\"" NS_DS
		     "\"><ds:X509Data><ds:X509Certificate>%s</ds:X509Certificate></ds:X509Data></"
		     "ds:KeyInfo>"
		     "</saml:SubjectConfirmationData></saml:SubjectConfirmation></saml:Subject>"
		     "<saml:Conditions NotBefore=\"%s\" "
		     "NotOnOrAfter=\"%s\"><saml:AudienceRestriction><saml:Audience>%s</"
		     "saml:Audience></saml:AudienceRestriction></saml:Conditions>"
		     "<saml:AttributeStatement>"
		     "<saml:Attribute "
		     "Name=\"dk:gov:saml:attribute:CvrNumberIdentifier\"><saml:AttributeValue>%s</"
		     "saml:AttributeValue></saml:Attribute>"
		     "<saml:Attribute "
		     "Name=\"dk:gov:saml:attribute:AssuranceLevel\"><saml:AttributeValue>3</"
		     "saml:AttributeValue></saml:Attribute>"
		     "<saml:Attribute "
		     "Name=\"dk:gov:saml:attribute:SpecVer\"><saml:AttributeValue>DK-SAML-2.0</"
		     "saml:AttributeValue></saml:Attribute>"
		     "<saml:Attribute "
		     "Name=\"dk:gov:saml:attribute:KombitSpecVer\"><saml:AttributeValue>1.0</"
		     "saml:AttributeValue></saml:Attribute>"
		     "</saml:AttributeStatement>"
		     "<saml:AuthnStatement "
		     "AuthnInstant=\"%s\"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:"
		     "names:tc:SAML:2.0:ac:classes:X509</saml:AuthnContextClassRef></"
		     "saml:AuthnContext></saml:AuthnStatement>"
		     "</saml:Assertion>",
		     id, nb, cert_b64, nb, na, entity, cvr, nb) < 0)
		return NULL;
	doc = xmlReadMemory(text, (int)strlen(text), NULL, NULL, XML_PARSE_NONET);
	free(text);
	text = NULL;
	if (!doc)
		return NULL;
	root = xmlDocGetRootElement(doc);
	issuer = xmlSecGetNextElementNode(root->children);
	xmlAddID(NULL, doc, BAD_CAST id, xmlHasProp(root, BAD_CAST "ID"));
	sig = xmlSecTmplSignatureCreate(doc, xmlSecTransformExclC14NId, xmlSecTransformRsaSha256Id,
					NULL);
	xmlAddNextSibling(issuer, sig);
	{
		char uri[64];
		snprintf(uri, sizeof uri, "#%s", id);
		ref = xmlSecTmplSignatureAddReference(sig, xmlSecTransformSha256Id, NULL,
						      BAD_CAST uri, NULL);
	}
	xmlSecTmplReferenceAddTransform(ref, xmlSecTransformEnvelopedId);
	xmlSecTmplReferenceAddTransform(ref, xmlSecTransformExclC14NId);
	ki = xmlSecTmplSignatureEnsureKeyInfo(sig, NULL);
	xmlSecTmplKeyInfoAddX509Data(ki);
	ctx = xmlSecDSigCtxCreate(NULL);
	if (ctx &&
	    (ctx->signKey = xmlSecCryptoAppKeyLoadMemory(
		     (const xmlSecByte *)sts->key_pem, (xmlSecSize)strlen(sts->key_pem),
		     xmlSecKeyDataFormatPem, NULL, NULL, NULL)) &&
	    xmlSecCryptoAppKeyCertLoadMemory(ctx->signKey, (const xmlSecByte *)sts->cert_pem,
					     (xmlSecSize)strlen(sts->cert_pem),
					     xmlSecKeyDataFormatPem) == 0 &&
	    xmlSecDSigCtxSign(ctx, sig) == 0) {
		xmlDocDumpMemoryEnc(doc, &out, &len, "UTF-8");
	}
	xmlSecDSigCtxDestroy(ctx);
	xmlFreeDoc(doc);
	if (!out)
		return NULL;
	{
		/* Without the XML declaration: it goes inside other documents. */
		char *p = strstr((char *)out, "<saml:Assertion");
		text = p ? strdup(p) : NULL;
		if (text && text[strlen(text) - 1] == '\n')
			text[strlen(text) - 1] = '\0';
	}
	xmlFree(out);
	if (text) {
		issued_t *t;
		if (sts->n == sts->cap) {
			size_t cap = sts->cap ? sts->cap * 2 : 16;
			issued_t *tokens = realloc(sts->tokens, cap * sizeof *tokens);
			if (!tokens) {
				free(text);
				return NULL;
			}
			sts->tokens = tokens;
			sts->cap = cap;
		}
		t = &sts->tokens[sts->n++];
		snprintf(t->id, sizeof t->id, "%s", id);
		t->cert_b64 = strdup(cert_b64);
		t->entity = strdup(entity);
		t->expires_ms = exp;
		sts->issued++;
		*expires_out = exp;
	}
	return text;
}

static char *s_base64(const void *data, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out)
		EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

static bool s_cvr_ok(const char *cvr)
{
	if (!cvr || strlen(cvr) != 8)
		return false;
	for (int i = 0; i < 8; i++)
		if (!isdigit((unsigned char)cvr[i]))
			return false;
	return true;
}

static void s_rest_issue(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	json_t *j = json_loads(req->body, 0, NULL);
	const char *entity = json_string_value(json_object_get(
		json_object_get(json_object_get(j, "AppliesTo"), "EndpointReference"), "Address"));
	const char *cvr =
		json_string_value(json_object_get(json_object_get(j, "AnvenderKontekst"), "Cvr"));
	const char *use_key = json_string_value(json_object_get(j, "UseKey"));
	char *xml = NULL, *b64 = NULL, lifetime[32];
	int64_t exp = 0;

	if (!j || !json_is_object(j) ||
	    strcmp(json_string_value(json_object_get(j, "TokenType")) ?: "", TOKEN_TYPE) ||
	    strcmp(json_string_value(json_object_get(j, "RequestType")) ?: "", REQUEST_TYPE) ||
	    strcmp(json_string_value(json_object_get(j, "KeyType")) ?: "", KEY_TYPE) ||
	    !json_is_null(json_object_get(j, "OnBehalfOf"))) {
		s_refuse(sim, res, false, 400, "INVALID_REQUEST",
			 "TokenType, RequestType, KeyType "
			 "and OnBehalfOf must be exactly as the contract says");
		goto done;
	}
	if (!s_cvr_ok(cvr)) {
		s_refuse(sim, res, false, 400, "INVALID_CVR",
			 "AnvenderKontekst.Cvr must be 8 digits");
		goto done;
	}
	if (!use_key || strcmp(use_key, req->client_cert_b64)) {
		s_refuse(sim, res, false, 401, "USEKEY_MISMATCH",
			 "UseKey is not the TLS client "
			 "certificate (one line of base64 DER, no PEM headers)");
		goto done;
	}
	if (!entity || !s_entity_known(sim, entity)) {
		s_refuse(sim, res, false, 400, "UNKNOWN_ENTITY",
			 "no service with that entity ID "
			 "(AppliesTo), or no service agreement for it");
		goto done;
	}
	if (!(xml = s_mint(sim, entity, cvr, use_key, &exp))) {
		sim_reply(res, 500, "text/plain", "cannot sign\n", -1);
		goto done;
	}
	{
		time_t t = (time_t)(exp / 1000);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(lifetime, sizeof lifetime, "%m/%d/%Y %H:%M:%S", &tm);
	}
	if ((b64 = s_base64(xml, strlen(xml)))) {
		json_t *a = json_pack("{s:{s:s}, s:s}", "RequestedSecurityToken", "Assertion", b64,
				      "Lifetime", lifetime);
		char *body = a ? json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

		if (body)
			sim_reply_take(res, 200, "application/json", body, strlen(body));
		json_decref(a);
	}
	sim_log(sim, "issued a token for %s", entity);
done:
	free(xml);
	free(b64);
	json_decref(j);
}

/* A form field's value, percent-decoded ('+' is a space); malloc'd or NULL. */
static char *s_form_value(const char *body, const char *name)
{
	size_t n = strlen(name);
	char *out, *o;

	for (const char *p = body; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (strncmp(p, name, n) || p[n] != '=')
			continue;
		p += n + 1;
		if (!(out = o = malloc(strlen(p) + 1)))
			return NULL;
		for (; *p && *p != '&'; p++) {
			unsigned v;
			if (*p == '%' && sscanf(p + 1, "%2x", &v) == 1) {
				*o++ = (char)v;
				p += 2;
			} else {
				*o++ = *p == '+' ? ' ' : *p;
			}
		}
		*o = '\0';
		return out;
	}
	return NULL;
}

static void s_access_token(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	sts_t *sts = sim_state(sim);
	char *b64 = s_form_value(req->body, "saml-token"), *xml = NULL;
	issued_t *t = NULL;
	unsigned char b[16];
	char uuid[40];
	int64_t ttl = sim_setting_int(sim, "access_ttl", 3600);

	if (b64 && (xml = malloc(strlen(b64) + 1))) {
		int n = EVP_DecodeBlock((unsigned char *)xml, (unsigned char *)b64,
					(int)strlen(b64));
		xml[n > 0 ? n : 0] = '\0';
	}
	for (size_t i = 0; xml && i < sts->n; i++) {
		char needle[64];
		snprintf(needle, sizeof needle, "ID=\"%s\"", sts->tokens[i].id);
		if (strstr(xml, needle))
			t = &sts->tokens[i];
	}
	if (!t) {
		s_refuse(sim, res, false, 400, "INVALID_SAML_TOKEN",
			 "saml-token is not an assertion this STS issued (send the base64 string "
			 "exactly as received, form-encoded)");
	} else if (kanal_wall_ms() >= t->expires_ms) {
		s_refuse(sim, res, false, 401, "SAML_TOKEN_EXPIRED", "the SAML token has expired");
	} else if (strcmp(t->cert_b64, req->client_cert_b64)) {
		s_refuse(sim, res, false, 401, "HOLDER_OF_KEY_MISMATCH",
			 "the TLS client certificate is not the one the token is bound to");
	} else {
		RAND_bytes(b, sizeof b);
		snprintf(uuid, sizeof uuid,
			 "%02x%02x%02x%02x-%02x%02x-4%x%02x-%02x%02x-"
			 "%02x%02x%02x%02x%02x%02x",
			 b[0], b[1], b[2], b[3], b[4], b[5], b[6] & 15, b[7], (b[8] & 0x3f) | 0x80,
			 b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
		access_t *a = &sts->access[sts->n_access++ % STS_MAX_ACCESS];

		snprintf(a->token, sizeof a->token, "%s", uuid);
		a->assertion = (size_t)(t - sts->tokens);
		a->expires_ms = kanal_wall_ms() + ttl * 1000;
		sim_replyf(res, 200, "application/json",
			   "{\"access_token\":\"%s\",\"token_type\":\"Holder-of-key\","
			   "\"expires_in\":%lld}",
			   uuid, (long long)ttl);
		sts->exchanged++;
	}
	free(b64);
	free(xml);
}

/* The platform's own check of an access token, which the real Serviceplatformen makes inside
 * and a simulated service asks for here (RFC 7662-like): token=<access token> →
 * {"active":true,"entity":…,"holder":<the bound certificate, DER base64>,"expires_in":N}, or
 * {"active":false,"reason":…} for a token it never issued, one that expired or was revoked. */
static void s_introspect(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	sts_t *sts = sim_state(sim);
	char *token = s_form_value(req->body, "token");
	const access_t *a = NULL;

	for (size_t i = 0; token && i < sts->n_access && i < STS_MAX_ACCESS; i++)
		if (!strcmp(sts->access[i].token, token))
			a = &sts->access[i];
	/* The entity IDs are the known list's and the certificate is base64: no escaping. */
	if (!a)
		sim_reply(res, 200, "application/json",
			  "{\"active\":false,\"reason\":\"not an access token of this STS\"}", -1);
	else if (kanal_wall_ms() >= a->expires_ms)
		sim_reply(res, 200, "application/json",
			  "{\"active\":false,\"reason\":\"the access token has expired\"}", -1);
	else
		sim_replyf(
			res, 200, "application/json",
			"{\"active\":true,\"entity\":\"%s\",\"holder\":\"%s\",\"expires_in\":%lld}",
			sts->tokens[a->assertion].entity, sts->tokens[a->assertion].cert_b64,
			(long long)((a->expires_ms - kanal_wall_ms()) / 1000));
	free(token);
}

static xmlNodePtr s_find(xmlNodePtr n, const char *ns, const char *name)
{
	for (; n; n = n->next) {
		xmlNodePtr f;
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (!strcmp((const char *)n->name, name) && n->ns &&
		    !strcmp((const char *)n->ns->href, ns))
			return n;
		if ((f = s_find(n->children, ns, name)))
			return f;
	}
	return NULL;
}

/* Registers every wsu:Id as an XML ID, so that "#_body" resolves (they are not DTD IDs). */
static void s_register_ids(xmlDocPtr doc, xmlNodePtr n)
{
	for (; n; n = n->next) {
		xmlAttrPtr a;
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if ((a = xmlHasNsProp(n, BAD_CAST "Id", BAD_CAST NS_WSU))) {
			xmlChar *v = xmlNodeListGetString(doc, a->children, 1);
			if (v)
				xmlAddID(NULL, doc, v, a);
			xmlFree(v);
		}
		s_register_ids(doc, n->children);
	}
}

static char *s_text(xmlNodePtr n)
{
	xmlChar *v = n ? xmlNodeGetContent(n) : NULL;
	char *out = v ? strdup((const char *)v) : NULL;
	xmlFree(v);
	return out;
}

/* The signed parts the contract lists, each of which must be covered by a reference. */
static bool s_covers_all(xmlNodePtr sig)
{
	static const char *const want[] = { "#TS-1",   "#_body",   "#_to",   "#_replyto",
					    "#_msgid", "#_action", "#X509-1" };
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		bool found = false;
		for (xmlNodePtr r = s_find(sig, NS_DS, "Reference"); r; r = r->next) {
			xmlChar *uri = xmlGetProp(r, BAD_CAST "URI");
			found = found || (uri && !strcmp((char *)uri, want[i]));
			xmlFree(uri);
		}
		if (!found)
			return false;
	}
	return true;
}

static void s_soap_issue(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	xmlDocPtr doc = xmlReadMemory(req->body, (int)req->body_len, NULL, NULL, XML_PARSE_NONET);
	xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
	xmlNodePtr sig = root ? s_find(root, NS_DS, "Signature") : NULL;
	xmlNodePtr bst = root ? s_find(root, NS_WSSE, "BinarySecurityToken") : NULL;
	xmlNodePtr rst = root ? s_find(root, NS_WST, "RequestSecurityToken") : NULL;
	char *cert = s_text(bst), *entity = NULL, *cvr = NULL, *xml = NULL;
	xmlSecDSigCtxPtr ctx = NULL;
	unsigned char *der = NULL;
	int64_t exp = 0;
	int der_len;

	if (!sig || !cert || !rst) {
		s_refuse(sim, res, true, 400, "INVALID_REQUEST", "no signed RequestSecurityToken");
		goto done;
	}
	if (strcmp(cert, req->client_cert_b64)) {
		s_refuse(sim, res, true, 400, "CERTIFICATE_MISMATCH",
			 "the BinarySecurityToken is not the TLS client certificate");
		goto done;
	}
	s_register_ids(doc, root);
	der = malloc(strlen(cert));
	der_len = der ? EVP_DecodeBlock(der, (unsigned char *)cert, (int)strlen(cert)) : -1;
	/* EVP_DecodeBlock counts the padding as data. */
	for (size_t k = strlen(cert); der_len > 0 && k > 0 && cert[k - 1] == '='; k--)
		der_len--;
	ctx = xmlSecDSigCtxCreate(NULL);
	if (!ctx || der_len <= 0 ||
	    !(ctx->signKey = xmlSecCryptoAppKeyLoadMemory(
		      der, (xmlSecSize)der_len, xmlSecKeyDataFormatCertDer, NULL, NULL, NULL)) ||
	    xmlSecDSigCtxVerify(ctx, sig) != 0 || ctx->status != xmlSecDSigStatusSucceeded ||
	    !s_covers_all(sig)) {
		s_refuse(sim, res, true, 400, "INVALID_SIGNATURE",
			 "the WS-Security signature does not verify, or does not cover Timestamp, "
			 "Body, To, ReplyTo, MessageID, Action and the BinarySecurityToken");
		goto done;
	}
	{
		xmlNodePtr applies = s_find(rst, "http://www.w3.org/2005/08/addressing", "Address");
		xmlNodePtr value = s_find(
			rst, "http://docs.oasis-open.org/wsfed/authorization/200706", "Value");
		entity = s_text(applies);
		cvr = s_text(value);
	}
	if (!s_cvr_ok(cvr)) {
		s_refuse(sim, res, true, 400, "INVALID_CVR",
			 "the CvrNumberIdentifier claim must be 8 digits");
		goto done;
	}
	if (!entity || !s_entity_known(sim, entity)) {
		s_refuse(sim, res, true, 400, "UNKNOWN_ENTITY",
			 "no service with that entity ID "
			 "(AppliesTo), or no service agreement for it");
		goto done;
	}
	if (!(xml = s_mint(sim, entity, cvr, cert, &exp))) {
		sim_reply(res, 500, "text/plain", "cannot sign\n", -1);
		goto done;
	}
	{
		char created[KANAL_TIME_RFC3339_SIZE], expires[KANAL_TIME_RFC3339_SIZE];
		kanal_time_rfc3339(kanal_wall_ms(), created, sizeof created);
		kanal_time_rfc3339(exp, expires, sizeof expires);
		sim_replyf(
			res, 200, "application/soap+xml; charset=utf-8",
			"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>"
			"<wst:RequestSecurityTokenResponseCollection xmlns:wst=\"" NS_WST "\">"
			"<wst:RequestSecurityTokenResponse><wst:TokenType>" TOKEN_TYPE
			"</wst:TokenType>"
			"<wst:RequestedSecurityToken>%s</wst:RequestedSecurityToken>"
			"<wst:Lifetime><wsu:Created xmlns:wsu=\"" NS_WSU "\">%s</wsu:Created>"
			"<wsu:Expires xmlns:wsu=\"" NS_WSU "\">%s</wsu:Expires></wst:Lifetime>"
			"</wst:RequestSecurityTokenResponse></"
			"wst:RequestSecurityTokenResponseCollection>"
			"</s:Body></s:Envelope>",
			xml, created, expires);
	}
	sim_log(sim, "issued a token (SOAP) for %s", entity);
done:
	xmlSecDSigCtxDestroy(ctx);
	xmlFreeDoc(doc);
	free(der);
	free(cert);
	free(entity);
	free(cvr);
	free(xml);
}

static void s_handle(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	sts_t *sts = sim_state(sim);
	bool soap = !strcmp(req->path, "/runtime/services/kombittrust/14/certificatemixed");

	if (!strcmp(req->method, "GET") && !strcmp(req->path, "/sts/stats")) {
		sim_replyf(res, 200, "application/json",
			   "{\"issued\":%u,\"exchanged\":%u,\"refused\":%u}", sts->issued,
			   sts->exchanged, sts->refused);
		return;
	}
	if (strcmp(req->method, "POST"))
		return;
	if (!strcmp(req->path, "/sts/revoke")) {
		/* Test switch: every access token stops being good, as after a key rollover. */
		sts->n_access = 0;
		sim_reply(res, 200, "text/plain", "access tokens revoked\n", -1);
		return;
	}
	if (strcmp(req->path, "/runtime/api/rest/wstrust/v1/issue") && !soap &&
	    strcmp(req->path, "/service/AccessTokenService_1/token") &&
	    strcmp(req->path, "/service/AccessTokenService_1/introspect"))
		return;
	if (!s_client_ok(sim, req, res, soap))
		return;
	if (soap)
		s_soap_issue(sim, req, res);
	else if (!strcmp(req->path, "/service/AccessTokenService_1/token"))
		s_access_token(sim, req, res);
	else if (!strcmp(req->path, "/service/AccessTokenService_1/introspect"))
		s_introspect(sim, req, res);
	else
		s_rest_issue(sim, req, res);
}

static int s_setup(sim_t *sim)
{
	static sts_t sts;

	sts.key_pem = s_read(sim_setting(sim, "tls_key", NULL));
	sts.cert_pem = s_read(sim_setting(sim, "tls_cert", NULL));
	if (!sts.key_pem || !sts.cert_pem) {
		fprintf(stderr, "kanal-sim-sts: needs --set tls_cert=F --set tls_key=F --set "
				"tls_ca=F (mutual TLS; it signs tokens with that key too)\n");
		return -1;
	}
	xmlInitParser();
	if (xmlSecInit() < 0 || xmlSecCryptoAppInit(NULL) < 0 || xmlSecCryptoInit() < 0) {
		fprintf(stderr, "kanal-sim-sts: cannot initialise xmlsec\n");
		return -1;
	}
	sim_set_state(sim, &sts);
	return 0;
}

int main(int argc, char **argv)
{
	return sim_main(argc, argv,
			&(sim_def_t){ .name = "sts",
				      .handle = s_handle,
				      .setup = s_setup,
				      .garbage_type = "application/json",
				      .garbage_body = "{\"RequestedSecurityToken\": {\"Assert" });
}
