/*
 * plugins/common/kc_sts.c — the SF1514 token client: issues holder-of-key SAML assertions
 * (REST JSON or signed WS-Trust SOAP) over mutual TLS with the function certificate,
 * exchanges them for access tokens, keeps both per service entity ID until shortly before
 * they expire, and builds the signed WS-Security messages by hand — libxml2's exclusive
 * canonicalisation, SHA-256 and one RSA signature (kc_cert) — because the STR-Transform
 * reference of a token service call is one that xmlsec cannot compute.
 */
#include "kc_sts.h"
#include "kc_http.h"
#include "kc_url.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libxml/c14n.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <kanal/time.h>

#define NS_SOAP12 "http://www.w3.org/2003/05/soap-envelope"
#define NS_SOAP11 "http://schemas.xmlsoap.org/soap/envelope/"
#define NS_WSA "http://www.w3.org/2005/08/addressing"
#define NS_WSSE "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
#define NS_WSSE11 "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd"
#define NS_WSU "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
#define NS_DS "http://www.w3.org/2000/09/xmldsig#"
#define NS_WST "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
#define NS_SAML "urn:oasis:names:tc:SAML:2.0:assertion"
#define ALG_EXC_C14N "http://www.w3.org/2001/10/xml-exc-c14n#"
#define ALG_SHA256 "http://www.w3.org/2001/04/xmlenc#sha256"
#define ALG_RSA_SHA256 "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
#define ALG_STR                                                                                    \
	"http://docs.oasis-open.org/wss/2004/01/"                                                  \
	"oasis-200401-wss-soap-message-security-1.0#STR-Transform"
#define X509V3                                                                                     \
	"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
#define B64BIN                                                                                     \
	"http://docs.oasis-open.org/wss/2004/01/"                                                  \
	"oasis-200401-wss-soap-message-security-1.0#Base64Binary"
#define SAMLID "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLID"

typedef struct token_entry {
	char *entity_id;
	char *saml_b64; /* as the STS sent it (REST) or encoded here (SOAP) */
	char *saml_xml; /* the assertion, verbatim */
	int64_t saml_issued_ms, saml_expires_ms;
	char *authorization; /* "Authorization: Holder-of-key …" */
	int64_t access_issued_ms, access_expires_ms;
	struct token_entry *next;
} token_entry_t;

struct kc_sts {
	kc_sts_opts_t o;
	char *issue_url, *soap_url, *accesstoken_url, *cvr;
	const kc_cert_t *cert;
	kc_http_t *http;
	pthread_mutex_t lock;
	token_entry_t *tokens;
	unsigned issued, exchanged;
};

static char *s_dup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void s_wipe(char **p)
{
	if (*p) {
		OPENSSL_cleanse(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

static int64_t s_now(const kc_sts_t *sts)
{
	return sts->o.clock_ms ? sts->o.clock_ms() : kanal_wall_ms();
}

/* ---- the messages ---------------------------------------------------------------------- */

char *kc_sts_rest_issue_body(const char *cvr, const char *cert_b64, const char *entity_id)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:{s:s}, s:s, s:{s:{s:s}}, s:n}", "TokenType",
			      KC_STS_TOKEN_TYPE, "RequestType", KC_STS_REQUEST_TYPE, "KeyType",
			      KC_STS_KEY_TYPE, "AnvenderKontekst", "Cvr", cvr, "UseKey", cert_b64,
			      "AppliesTo", "EndpointReference", "Address", entity_id, "OnBehalfOf");
	char *text = j ? json_dumps(j, JSON_PRESERVE_ORDER | JSON_COMPACT) : NULL;

	json_decref(j);
	return text;
}

/* Whether node (or the element a namespace node or attribute belongs to) lies inside the
 * subtree rooted at `root`: the node set of "this element and all below it". */
static int s_in_subtree(void *root, xmlNodePtr node, xmlNodePtr parent)
{
	xmlNodePtr n = (node && node->type != XML_NAMESPACE_DECL) ? node : parent;

	for (; n; n = n->parent)
		if (n == (xmlNodePtr)root)
			return 1;
	return 0;
}

/* SHA-256 of the exclusive canonical form (no comments) of the subtree at node, in base64. */
static int s_digest_node(xmlDocPtr doc, xmlNodePtr node, char out[45])
{
	xmlOutputBufferPtr buf = xmlAllocOutputBuffer(NULL);
	unsigned char md[32];
	unsigned int md_len = 0;
	int rc = KANAL_ENOMEM;

	if (!buf)
		return KANAL_ENOMEM;
	if (xmlC14NExecute(doc, s_in_subtree, node, XML_C14N_EXCLUSIVE_1_0, NULL, 0, buf) >= 0 &&
	    EVP_Digest(xmlOutputBufferGetContent(buf), xmlOutputBufferGetSize(buf), md, &md_len,
		       EVP_sha256(), NULL) == 1) {
		EVP_EncodeBlock((unsigned char *)out, md, (int)md_len);
		rc = 0;
	}
	xmlOutputBufferClose(buf);
	return rc;
}

/* Parses an XML text quietly (no network, no entities). */
static xmlDocPtr s_parse(const char *text, size_t len)
{
	return xmlReadMemory(text, (int)len, NULL, "UTF-8",
			     XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

int kc_sts_str_digest(const char *assertion_xml, size_t len, char out[45])
{
	xmlDocPtr doc = s_parse(assertion_xml, len);
	int rc;

	if (!doc || !xmlDocGetRootElement(doc)) {
		xmlFreeDoc(doc);
		return KANAL_EINVAL;
	}
	rc = s_digest_node(doc, xmlDocGetRootElement(doc), out);
	xmlFreeDoc(doc);
	return rc;
}

/* The element below root whose wsu:Id (or plain Id) is id. */
static xmlNodePtr s_find_id(xmlNodePtr root, const char *id)
{
	for (xmlNodePtr n = root; n; n = n->next) {
		xmlChar *v;

		if (n->type != XML_ELEMENT_NODE)
			continue;
		v = xmlGetNsProp(n, BAD_CAST "Id", BAD_CAST NS_WSU);
		if (!v)
			v = xmlGetProp(n, BAD_CAST "Id");
		if (v && !strcmp((char *)v, id)) {
			xmlFree(v);
			return n;
		}
		xmlFree(v);
		if ((v = (xmlChar *)s_find_id(n->children, id)))
			return (xmlNodePtr)v;
	}
	return NULL;
}

static xmlNodePtr s_find(xmlNodePtr root, const char *ns, const char *name)
{
	for (xmlNodePtr n = root; n; n = n->next) {
		xmlNodePtr f;

		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (!strcmp((char *)n->name, name) && n->ns && !strcmp((char *)n->ns->href, ns))
			return n;
		if ((f = s_find(n->children, ns, name)))
			return f;
	}
	return NULL;
}

/* Appends <ds:Reference URI="#id"> with its transform and digest to SignedInfo. With
 * str_digest the reference is the STR-Transform one, whose digest the caller computed. */
static void s_add_reference(xmlNodePtr signed_info, xmlNsPtr ds, xmlNsPtr wsse, const char *id,
			    const char *digest, bool str)
{
	char uri[80];
	xmlNodePtr ref, tr, t;

	snprintf(uri, sizeof uri, "#%s", id);
	ref = xmlNewChild(signed_info, ds, BAD_CAST "Reference", NULL);
	xmlNewProp(ref, BAD_CAST "URI", BAD_CAST uri);
	tr = xmlNewChild(ref, ds, BAD_CAST "Transforms", NULL);
	t = xmlNewChild(tr, ds, BAD_CAST "Transform", NULL);
	xmlNewProp(t, BAD_CAST "Algorithm", BAD_CAST(str ? ALG_STR : ALG_EXC_C14N));
	if (str) {
		xmlNodePtr p = xmlNewChild(t, wsse, BAD_CAST "TransformationParameters", NULL);
		xmlNodePtr cm = xmlNewChild(p, ds, BAD_CAST "CanonicalizationMethod", NULL);
		xmlNewProp(cm, BAD_CAST "Algorithm", BAD_CAST ALG_EXC_C14N);
	}
	t = xmlNewChild(ref, ds, BAD_CAST "DigestMethod", NULL);
	xmlNewProp(t, BAD_CAST "Algorithm", BAD_CAST ALG_SHA256);
	xmlNewChild(ref, ds, BAD_CAST "DigestValue", BAD_CAST digest);
}

/* Signs the parsed envelope in place: a reference for each of ids (by wsu:Id), plus the
 * STR one when str_id is given, then SignatureValue over the canonical SignedInfo. Writes
 * the document (not re-indented) into *xml_out. */
static int s_sign_and_dump(xmlDocPtr doc, const kc_cert_t *cert, const char *const *ids,
			   const char *str_id, const char *str_digest, char **xml_out,
			   kanal_error_t *err)
{
	xmlNodePtr root = xmlDocGetRootElement(doc);
	xmlNodePtr si = s_find(root, NS_DS, "SignedInfo");
	xmlNodePtr sv = s_find(root, NS_DS, "SignatureValue");
	xmlNsPtr ds = si ? si->ns : NULL;
	xmlNsPtr wsse = root ? xmlSearchNsByHref(doc, root, BAD_CAST NS_WSSE) : NULL;
	xmlOutputBufferPtr buf = NULL;
	char digest[45], *sig = NULL;
	xmlChar *dump = NULL;
	int dump_len = 0, rc;

	if (!si || !sv || !wsse)
		return KANAL_EINVAL;
	for (size_t i = 0; ids[i]; i++) {
		xmlNodePtr n = s_find_id(root, ids[i]);

		if (!n || (rc = s_digest_node(doc, n, digest)) != 0) {
			kanal_error_set(err, NULL, 0, 0, NULL, "cannot sign: no element '%s'",
					ids[i]);
			return KANAL_EINVAL;
		}
		s_add_reference(si, ds, wsse, ids[i], digest, false);
	}
	if (str_id)
		s_add_reference(si, ds, wsse, str_id, str_digest, true);
	if (!(buf = xmlAllocOutputBuffer(NULL)))
		return KANAL_ENOMEM;
	if (xmlC14NExecute(doc, s_in_subtree, si, XML_C14N_EXCLUSIVE_1_0, NULL, 0, buf) < 0) {
		xmlOutputBufferClose(buf);
		return KANAL_ENOMEM;
	}
	rc = kc_cert_sign_sha256(cert, xmlOutputBufferGetContent(buf), xmlOutputBufferGetSize(buf),
				 &sig, err);
	xmlOutputBufferClose(buf);
	if (rc)
		return rc;
	xmlNodeSetContent(sv, BAD_CAST sig);
	free(sig);
	xmlDocDumpMemoryEnc(doc, &dump, &dump_len, "UTF-8");
	if (!dump)
		return KANAL_ENOMEM;
	*xml_out = strdup((char *)dump);
	xmlFree(dump);
	return *xml_out ? 0 : KANAL_ENOMEM;
}

static void s_uuid(char out[37])
{
	unsigned char b[16];

	RAND_bytes(b, sizeof b);
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

/* "2025-06-02T08:15:00Z": the Timestamp's form, whole seconds. */
static void s_stamp(int64_t ms, char out[KANAL_TIME_RFC3339_SIZE])
{
	kanal_time_rfc3339(ms - ms % 1000, out, KANAL_TIME_RFC3339_SIZE);
	strcpy(out + 19, "Z");
}

/* Escapes text for an XML element or attribute, malloc'd. */
static char *s_xml_escape(const char *s)
{
	xmlChar *e = xmlEncodeSpecialChars(NULL, BAD_CAST s);
	char *out = e ? strdup((char *)e) : NULL;

	xmlFree(e);
	return out;
}

int kc_sts_soap_rst(const kc_cert_t *cert, const char *sts_url, const char *entity_id,
		    const char *cvr, int64_t now_ms, char **xml_out, kanal_error_t *err)
{
	static const char *const ids[] = { "TS-1",   "_body",   "_to",    "_replyto",
					   "_msgid", "_action", "X509-1", NULL };
	char created[KANAL_TIME_RFC3339_SIZE], expires[KANAL_TIME_RFC3339_SIZE], uuid[37];
	char *url = s_xml_escape(sts_url), *entity = s_xml_escape(entity_id),
	     *cvr_x = s_xml_escape(cvr), *text = NULL;
	xmlDocPtr doc = NULL;
	int rc = KANAL_ENOMEM;

	*xml_out = NULL;
	s_stamp(now_ms, created);
	s_stamp(now_ms + 5 * 60 * 1000, expires);
	s_uuid(uuid);
	if (!url || !entity || !cvr_x ||
	    asprintf(&text,
		     "<soap:Envelope xmlns:soap=\"" NS_SOAP12 "\" xmlns:wsa=\"" NS_WSA "\" "
		     "xmlns:wsse=\"" NS_WSSE "\" xmlns:wsu=\"" NS_WSU "\" xmlns:ds=\"" NS_DS "\">"
		     "<soap:Header>"
		     "<wsa:Action "
		     "wsu:Id=\"_action\">http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/"
		     "Issue</wsa:Action>"
		     "<wsa:MessageID wsu:Id=\"_msgid\">urn:uuid:%s</wsa:MessageID>"
		     "<wsa:To wsu:Id=\"_to\">%s</wsa:To>"
		     "<wsa:ReplyTo "
		     "wsu:Id=\"_replyto\"><wsa:Address>http://www.w3.org/2005/08/addressing/"
		     "anonymous</wsa:Address></wsa:ReplyTo>"
		     "<wsse:Security soap:mustUnderstand=\"true\">"
		     "<wsu:Timestamp "
		     "wsu:Id=\"TS-1\"><wsu:Created>%s</wsu:Created><wsu:Expires>%s</wsu:Expires></"
		     "wsu:Timestamp>"
		     "<wsse:BinarySecurityToken wsu:Id=\"X509-1\" EncodingType=\"" B64BIN
		     "\" ValueType=\"" X509V3 "\">%s</wsse:BinarySecurityToken>"
		     "<ds:Signature Id=\"SIG-1\"><ds:SignedInfo>"
		     "<ds:CanonicalizationMethod Algorithm=\"" ALG_EXC_C14N "\"/>"
		     "<ds:SignatureMethod Algorithm=\"" ALG_RSA_SHA256 "\"/>"
		     "</ds:SignedInfo><ds:SignatureValue/>"
		     "<ds:KeyInfo><wsse:SecurityTokenReference><wsse:Reference URI=\"#X509-1\" "
		     "ValueType=\"" X509V3 "\"/></wsse:SecurityTokenReference></ds:KeyInfo>"
		     "</ds:Signature></wsse:Security></soap:Header>"
		     "<soap:Body wsu:Id=\"_body\">"
		     "<wst:RequestSecurityToken xmlns:wst=\"" NS_WST "\">"
		     "<wst:RequestType>" KC_STS_REQUEST_TYPE "</wst:RequestType>"
		     "<wsp:AppliesTo "
		     "xmlns:wsp=\"http://schemas.xmlsoap.org/ws/2004/09/"
		     "policy\"><wsa:EndpointReference><wsa:Address>%s</wsa:Address></"
		     "wsa:EndpointReference></wsp:AppliesTo>"
		     "<wst:Claims "
		     "Dialect=\"http://docs.oasis-open.org/wsfed/authorization/200706/authclaims\">"
		     "<auth:ClaimType "
		     "xmlns:auth=\"http://docs.oasis-open.org/wsfed/authorization/200706\" "
		     "Uri=\"dk:gov:saml:attribute:CvrNumberIdentifier\"><auth:Value>%s</"
		     "auth:Value></auth:ClaimType>"
		     "</wst:Claims>"
		     "<wst:TokenType>" KC_STS_TOKEN_TYPE "</wst:TokenType>"
		     "<wst:KeyType>" KC_STS_KEY_TYPE "</wst:KeyType>"
		     "<wst:UseKey><wsse:BinarySecurityToken EncodingType=\"" B64BIN
		     "\" ValueType=\"" X509V3 "\">%s</wsse:BinarySecurityToken></wst:UseKey>"
		     "</wst:RequestSecurityToken></soap:Body></soap:Envelope>",
		     uuid, url, created, expires, kc_cert_der_base64(cert), entity, cvr_x,
		     kc_cert_der_base64(cert)) < 0) {
		text = NULL;
		goto done;
	}
	if (!(doc = s_parse(text, strlen(text)))) {
		rc = KANAL_EINVAL;
		goto done;
	}
	rc = s_sign_and_dump(doc, cert, ids, NULL, NULL, xml_out, err);
done:
	xmlFreeDoc(doc);
	free(text);
	free(url);
	free(entity);
	free(cvr_x);
	return rc;
}

/* Where the assertion goes in a service call: a comment, which no reference covers, is
 * replaced after signing by the assertion's bytes, so that they are never re-serialised. */
#define ASSERTION_SLOT "<!--kc-sts-assertion-->"

/* The assertion's ID attribute, malloc'd. */
static char *s_assertion_id(const char *xml)
{
	xmlDocPtr doc = s_parse(xml, strlen(xml));
	xmlNodePtr r = doc ? xmlDocGetRootElement(doc) : NULL;
	xmlChar *id = r ? xmlGetProp(r, BAD_CAST "ID") : NULL;
	char *out = id ? s_xml_escape((char *)id) : NULL;

	xmlFree(id);
	xmlFreeDoc(doc);
	return out;
}

/* The assertion without an XML declaration in front, which may not stand inside a header. */
static const char *s_skip_decl(const char *xml)
{
	while (isspace((unsigned char)*xml))
		xml++;
	if (!strncmp(xml, "<?xml", 5)) {
		const char *e = strstr(xml, "?>");
		if (e)
			xml = e + 2;
		while (isspace((unsigned char)*xml))
			xml++;
	}
	return xml;
}

int kc_sts_soap_call(const kc_cert_t *cert, const char *assertion_xml, const char *action,
		     const char *to, const char *body_xml, int64_t now_ms, char **xml_out,
		     kanal_error_t *err)
{
	static const char *const ids[] = { "TS-1", "_body",    "_action", "_msgid",
					   "_to",  "_replyto", "_sbf",    NULL };
	char created[KANAL_TIME_RFC3339_SIZE], expires[KANAL_TIME_RFC3339_SIZE], uuid[37];
	char str_digest[45], *text = NULL, *signed_xml = NULL, *slot;
	const char *assertion = s_skip_decl(assertion_xml);
	char *id = s_assertion_id(assertion), *action_x = s_xml_escape(action),
	     *to_x = s_xml_escape(to);
	xmlDocPtr doc = NULL;
	int rc = KANAL_ENOMEM;

	*xml_out = NULL;
	if (!id || kc_sts_str_digest(assertion, strlen(assertion), str_digest) != 0) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"the SAML assertion is not one XML element with an ID");
		rc = KANAL_EINVAL;
		goto done;
	}
	s_stamp(now_ms, created);
	s_stamp(now_ms + 5 * 60 * 1000, expires);
	s_uuid(uuid);
	if (!action_x || !to_x ||
	    asprintf(
		    &text,
		    "<soap:Envelope xmlns:soap=\"" NS_SOAP11 "\" xmlns:wsa=\"" NS_WSA "\" "
		    "xmlns:wsse=\"" NS_WSSE "\" xmlns:wsse11=\"" NS_WSSE11 "\" "
		    "xmlns:wsu=\"" NS_WSU "\" xmlns:ds=\"" NS_DS "\">"
		    "<soap:Header>"
		    "<sbf:Framework xmlns:sbf=\"urn:liberty:sb:2006-08\" "
		    "xmlns:sbfprofile=\"urn:liberty:sb:profile\" "
		    "version=\"2.0\" sbfprofile:profile=\"urn:liberty:sb:profile:basic\" "
		    "wsu:Id=\"_sbf\"/>"
		    "<wsa:Action wsu:Id=\"_action\">%s</wsa:Action>"
		    "<wsa:MessageID wsu:Id=\"_msgid\">urn:uuid:%s</wsa:MessageID>"
		    "<wsa:To wsu:Id=\"_to\">%s</wsa:To>"
		    "<wsa:ReplyTo "
		    "wsu:Id=\"_replyto\"><wsa:Address>http://www.w3.org/2005/08/addressing/"
		    "anonymous</wsa:Address></wsa:ReplyTo>"
		    "<wsse:Security soap:mustUnderstand=\"1\">"
		    "<wsu:Timestamp "
		    "wsu:Id=\"TS-1\"><wsu:Created>%s</wsu:Created><wsu:Expires>%s</wsu:Expires></"
		    "wsu:Timestamp>" ASSERTION_SLOT "<wsse:SecurityTokenReference wsu:Id=\"STR-1\" "
		    "wsse11:TokenType=\"" KC_STS_TOKEN_TYPE "\">"
		    "<wsse:KeyIdentifier ValueType=\"" SAMLID
		    "\">%s</wsse:KeyIdentifier></wsse:SecurityTokenReference>"
		    "<ds:Signature Id=\"SIG-1\"><ds:SignedInfo>"
		    "<ds:CanonicalizationMethod Algorithm=\"" ALG_EXC_C14N "\"/>"
		    "<ds:SignatureMethod Algorithm=\"" ALG_RSA_SHA256 "\"/>"
		    "</ds:SignedInfo><ds:SignatureValue/>"
		    "<ds:KeyInfo><wsse:SecurityTokenReference wsse11:TokenType=\"" KC_STS_TOKEN_TYPE
		    "\">"
		    "<wsse:KeyIdentifier ValueType=\"" SAMLID
		    "\">%s</wsse:KeyIdentifier></wsse:SecurityTokenReference></ds:KeyInfo>"
		    "</ds:Signature></wsse:Security></soap:Header>"
		    "<soap:Body wsu:Id=\"_body\">%s</soap:Body></soap:Envelope>",
		    action_x, uuid, to_x, created, expires, id, id, body_xml) < 0) {
		text = NULL;
		goto done;
	}
	if (!(doc = s_parse(text, strlen(text)))) {
		kanal_error_set(err, NULL, 0, 0, NULL, "the SOAP body is not well-formed XML");
		rc = KANAL_EINVAL;
		goto done;
	}
	if ((rc = s_sign_and_dump(doc, cert, ids, "STR-1", str_digest, &signed_xml, err)))
		goto done;
	if (!(slot = strstr(signed_xml, ASSERTION_SLOT))) {
		rc = KANAL_EINVAL;
		goto done;
	}
	*slot = '\0';
	if (asprintf(xml_out, "%s%s%s", signed_xml, assertion, slot + strlen(ASSERTION_SLOT)) < 0) {
		*xml_out = NULL;
		rc = KANAL_ENOMEM;
	}
done:
	xmlFreeDoc(doc);
	free(text);
	free(signed_xml);
	free(id);
	free(action_x);
	free(to_x);
	return rc;
}

/* ---- the client ---------------------------------------------------------------------- */

static bool s_cvr_ok(const char *cvr)
{
	if (!cvr || strlen(cvr) != 8)
		return false;
	for (int i = 0; i < 8; i++)
		if (!isdigit((unsigned char)cvr[i]))
			return false;
	return true;
}

int kc_sts_new(const kc_sts_opts_t *opts, const kc_cert_t *cert, kc_sts_t **out, kanal_error_t *err)
{
	kc_http_opts_t http = { .timeout_ms = opts->timeout_ms, .ca_file = opts->ca_file };
	const char *issue = opts->use_soap ? opts->soap_url : opts->issue_url;
	kc_sts_t *sts;
	int rc;

	*out = NULL;
	if (!issue) {
		kanal_error_set(err, NULL, 0, 0, opts->use_soap ? "sts_soap_url" : "sts_url",
				"option '%s' is required: the STS's issue endpoint",
				opts->use_soap ? "sts_soap_url" : "sts_url");
		return KANAL_ECONFIG;
	}
	if ((rc = kc_url_check(opts->use_soap ? "sts_soap_url" : "sts_url", issue,
			       opts->allow_plain_http, NULL, err)) ||
	    (opts->accesstoken_url && (rc = kc_url_check("accesstoken_url", opts->accesstoken_url,
							 opts->allow_plain_http, NULL, err))))
		return rc;
	if (!s_cvr_ok(opts->cvr)) {
		kanal_error_set(err, NULL, 0, 0, "cvr",
				"option 'cvr' must be the municipality's CVR number, 8 digits");
		return KANAL_ECONFIG;
	}
	if (!(sts = calloc(1, sizeof *sts)))
		return KANAL_ENOMEM;
	sts->o = *opts;
	if (!sts->o.renew_before_ms)
		sts->o.renew_before_ms = 5 * 60 * 1000;
	if (!sts->o.clock_skew_ms)
		sts->o.clock_skew_ms = 2 * 60 * 1000;
	if ((rc = kc_cert_check_time(cert, s_now(sts), sts->o.clock_skew_ms, err))) {
		free(sts);
		return rc;
	}
	sts->cert = cert;
	sts->issue_url = s_dup(opts->issue_url);
	sts->soap_url = s_dup(opts->soap_url);
	sts->accesstoken_url = s_dup(opts->accesstoken_url);
	sts->cvr = s_dup(opts->cvr);
	sts->o.issue_url = sts->o.soap_url = sts->o.accesstoken_url = sts->o.cvr = NULL;
	sts->o.ca_file = NULL;
	pthread_mutex_init(&sts->lock, NULL);
	kc_cert_http_opts(cert, &http);
	sts->http = kc_http_new(&http);
	if (!sts->http || !sts->cvr || (opts->issue_url && !sts->issue_url) ||
	    (opts->soap_url && !sts->soap_url) ||
	    (opts->accesstoken_url && !sts->accesstoken_url)) {
		kc_sts_destroy(&sts);
		return KANAL_ENOMEM;
	}
	*out = sts;
	return 0;
}

static void s_entry_clear(token_entry_t *e, bool saml, bool access)
{
	if (saml) {
		s_wipe(&e->saml_b64);
		s_wipe(&e->saml_xml);
		e->saml_expires_ms = 0;
	}
	if (access) {
		s_wipe(&e->authorization);
		e->access_expires_ms = 0;
	}
}

void kc_sts_destroy(kc_sts_t **sts_p)
{
	kc_sts_t *sts = sts_p ? *sts_p : NULL;

	if (!sts)
		return;
	while (sts->tokens) {
		token_entry_t *e = sts->tokens;

		sts->tokens = e->next;
		s_entry_clear(e, true, true);
		free(e->entity_id);
		free(e);
	}
	kc_http_destroy(&sts->http);
	pthread_mutex_destroy(&sts->lock);
	free(sts->issue_url);
	free(sts->soap_url);
	free(sts->accesstoken_url);
	free(sts->cvr);
	free(sts);
	*sts_p = NULL;
}

static token_entry_t *s_entry(kc_sts_t *sts, const char *entity_id)
{
	token_entry_t *e;

	for (e = sts->tokens; e; e = e->next)
		if (!strcmp(e->entity_id, entity_id))
			return e;
	if (!(e = calloc(1, sizeof *e)) || !(e->entity_id = strdup(entity_id))) {
		free(e);
		return NULL;
	}
	e->next = sts->tokens;
	sts->tokens = e;
	return e;
}

/* Whether a token issued at `issued` and expiring at `expires` is still good enough to
 * use: renewed renew_before (plus the skew allowance) ahead of its end, but never more
 * than half its lifetime ahead, so that a short-lived token is not renewed on every call. */
static bool s_fresh(const kc_sts_t *sts, int64_t issued, int64_t expires)
{
	int64_t ahead = sts->o.renew_before_ms + sts->o.clock_skew_ms;

	if (expires <= 0)
		return false;
	if (ahead > (expires - issued) / 2)
		ahead = (expires - issued) / 2;
	return s_now(sts) < expires - ahead;
}

/* The STS's or the service's answer when it is not a token: what went wrong and what to
 * do, without the token or the request (neither is quoted). */
static int s_refused(kc_sts_t *sts, const kc_response_t *res, const char *what,
		     const char *entity_id, kanal_error_t *err)
{
	char desc[320];

	if (res->status == 0) {
		kanal_error_set(err, NULL, 0, 0, NULL, "%s: no answer (%s); trying again later",
				what, res->error.text);
		return KANAL_EIO;
	}
	kc_http_describe(res, what, desc, sizeof desc);
	if (res->status >= 500 && !strstr(res->body ? res->body : "", "Sender")) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"%s; the STS is unavailable, trying again "
				"later",
				desc);
		return KANAL_EIO;
	}
	kanal_error_set(err, NULL, 0, 0, NULL,
			"%s — the token was refused: check that the IT system of certificate '%s' "
			"has a service agreement for '%s' on behalf of CVR %s in KOMBIT's "
			"administration module",
			desc, kc_cert_subject(sts->cert), entity_id, sts->cvr);
	return KANAL_EREJECTED;
}

/* NotOnOrAfter of the assertion's Conditions, in ms; 0 when absent. */
static int64_t s_not_on_or_after(const char *xml)
{
	xmlDocPtr doc = s_parse(xml, strlen(xml));
	xmlNodePtr c = doc ? s_find(xmlDocGetRootElement(doc), NS_SAML, "Conditions") : NULL;
	xmlChar *v = c ? xmlGetProp(c, BAD_CAST "NotOnOrAfter") : NULL;
	int64_t ms = 0;

	if (v && kanal_time_parse_rfc3339((char *)v, &ms) != 0)
		ms = 0;
	xmlFree(v);
	xmlFreeDoc(doc);
	return ms;
}

/* The JSON Lifetime "MM/dd/yyyy HH:mm:ss", read as UTC (the contract leaves the zone
 * open; NotOnOrAfter in the assertion is preferred). 0 when unreadable. */
static int64_t s_lifetime(const char *text)
{
	int mo, d, y, h, mi, s;
	char iso[40];
	int64_t ms = 0;

	if (!text || sscanf(text, "%2d/%2d/%4d %2d:%2d:%2d", &mo, &d, &y, &h, &mi, &s) != 6)
		return 0;
	snprintf(iso, sizeof iso, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, mo, d, h, mi, s);
	return kanal_time_parse_rfc3339(iso, &ms) == 0 ? ms : 0;
}

/* Finishes an issue: e holds the new token's saml_xml and saml_b64 (NULL when memory ran
 * out). Sets its times — NotOnOrAfter, or `fallback_expiry` when the assertion has none —
 * and counts it; or clears e and says why. */
static int s_keep(kc_sts_t *sts, token_entry_t *e, int64_t fallback_expiry, const char *what,
		  kanal_error_t *err)
{
	int rc = e->saml_b64 && e->saml_xml ? 0 : KANAL_ENOMEM;

	e->saml_issued_ms = s_now(sts);
	e->saml_expires_ms = e->saml_xml ? s_not_on_or_after(e->saml_xml) : 0;
	if (!e->saml_expires_ms)
		e->saml_expires_ms = fallback_expiry;
	if (!rc && !e->saml_expires_ms) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"%s: the token says not when it expires "
				"(no Conditions/@NotOnOrAfter, no Lifetime)",
				what);
		rc = KANAL_EPARSE;
	}
	if (rc)
		s_entry_clear(e, true, true);
	else
		sts->issued++;
	return rc;
}

static int s_issue_rest(kc_sts_t *sts, token_entry_t *e, kanal_error_t *err)
{
	static const char *const headers[] = { "Content-Type: application/json",
					       "Accept: application/json", NULL };
	char *body = kc_sts_rest_issue_body(sts->cvr, kc_cert_der_base64(sts->cert), e->entity_id);
	kc_response_t res;
	json_t *j = NULL;
	const char *b64, *lifetime;
	unsigned char *xml = NULL;
	size_t xml_len = 0;
	int rc;

	if (!body)
		return KANAL_ENOMEM;
	rc = kc_http_request(sts->http, "POST", sts->issue_url, headers, body, strlen(body), &res);
	free(body);
	if (rc != 0 || res.status != 200) {
		rc = s_refused(sts, &res, "STS issue", e->entity_id, err);
		goto done;
	}
	j = json_loadb(res.body, res.len, 0, NULL);
	b64 = json_string_value(
		json_object_get(json_object_get(j, "RequestedSecurityToken"), "Assertion"));
	lifetime = json_string_value(json_object_get(j, "Lifetime"));
	if (!b64 || !(xml = kc_base64_decode(b64, &xml_len))) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"STS issue: the answer holds no "
				"RequestedSecurityToken.Assertion in base64");
		rc = KANAL_EPARSE;
		goto done;
	}
	s_entry_clear(e, true, true);
	e->saml_b64 = strdup(b64);
	e->saml_xml = (char *)xml;
	xml = NULL;
	rc = s_keep(sts, e, s_lifetime(lifetime), "STS issue", err);
done:
	if (xml)
		OPENSSL_cleanse(xml, xml_len);
	free(xml);
	json_decref(j);
	if (res.body)
		OPENSSL_cleanse(res.body, res.len);
	kc_response_clear(&res);
	return rc;
}

/* The text of the assertion element in a SOAP STS answer, byte for byte when it declares
 * the namespaces it uses itself; malloc'd, or NULL. */
static char *s_assertion_text(const char *body, xmlNodePtr a)
{
	char open[80], close[80];
	const char *p = a->ns && a->ns->prefix ? (const char *)a->ns->prefix : NULL;
	const char *start, *end;
	char *text;

	snprintf(open, sizeof open, "<%s%s%s", p ? p : "", p ? ":" : "", "Assertion");
	snprintf(close, sizeof close, "</%s%s%s>", p ? p : "", p ? ":" : "", "Assertion");
	if (!(start = strstr(body, open)) || !(end = strstr(start, close)))
		return NULL;
	end += strlen(close);
	if (!(text = strndup(start, (size_t)(end - start))))
		return NULL;
	{
		/* Verbatim only when it stands on its own; otherwise the canonical copy. */
		xmlDocPtr d = s_parse(text, strlen(text));
		xmlFreeDoc(d);
		if (d)
			return text;
	}
	free(text);
	{
		xmlDocPtr d = xmlNewDoc(BAD_CAST "1.0");
		xmlNodePtr copy = d ? xmlDocCopyNode(a, d, 1) : NULL;
		xmlBufferPtr buf = xmlBufferCreate();

		text = NULL;
		if (copy && buf) {
			xmlDocSetRootElement(d, copy);
			xmlReconciliateNs(d, copy);
			if (xmlNodeDump(buf, d, copy, 0, 0) > 0)
				text = strdup((const char *)xmlBufferContent(buf));
		}
		xmlBufferFree(buf);
		xmlFreeDoc(d);
	}
	return text;
}

static int s_issue_soap(kc_sts_t *sts, token_entry_t *e, kanal_error_t *err)
{
	static const char *const headers[] = {
		"Content-Type: application/soap+xml; charset=utf-8; "
		"action=\"http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue\"",
		NULL
	};
	char *body = NULL;
	kc_response_t res = { 0 };
	xmlDocPtr doc = NULL;
	xmlNodePtr a;
	int rc;

	if ((rc = kc_sts_soap_rst(sts->cert, sts->soap_url, e->entity_id, sts->cvr, s_now(sts),
				  &body, err)))
		return rc;
	rc = kc_http_request(sts->http, "POST", sts->soap_url, headers, body, strlen(body), &res);
	free(body);
	if (rc != 0 || res.status != 200) {
		rc = s_refused(sts, &res, "STS issue (SOAP)", e->entity_id, err);
		goto done;
	}
	doc = s_parse(res.body, res.len);
	a = doc ? s_find(xmlDocGetRootElement(doc), NS_SAML, "Assertion") : NULL;
	s_entry_clear(e, true, true);
	if (!a || !(e->saml_xml = s_assertion_text(res.body, a))) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"STS issue (SOAP): the answer holds no "
				"saml:Assertion");
		rc = KANAL_EPARSE;
		goto done;
	}
	e->saml_b64 = kc_base64(e->saml_xml, strlen(e->saml_xml));
	rc = s_keep(sts, e, 0, "STS issue (SOAP)", err);
done:
	xmlFreeDoc(doc);
	if (res.body)
		OPENSSL_cleanse(res.body, res.len);
	kc_response_clear(&res);
	return rc;
}

/* Makes sure e holds a fresh SAML token. Called with the lock held. */
static int s_saml(kc_sts_t *sts, token_entry_t *e, kanal_error_t *err)
{
	int rc;

	if (e->saml_xml && s_fresh(sts, e->saml_issued_ms, e->saml_expires_ms))
		return 0;
	if ((rc = kc_cert_check_time(sts->cert, s_now(sts), sts->o.clock_skew_ms, err)))
		return rc;
	return sts->o.use_soap ? s_issue_soap(sts, e, err) : s_issue_rest(sts, e, err);
}

int kc_sts_assertion(kc_sts_t *sts, const char *entity_id, char **xml_out, kanal_error_t *err)
{
	token_entry_t *e;
	int rc = KANAL_ENOMEM;

	*xml_out = NULL;
	pthread_mutex_lock(&sts->lock);
	if ((e = s_entry(sts, entity_id)) && (rc = s_saml(sts, e, err)) == 0 &&
	    !(*xml_out = strdup(e->saml_xml)))
		rc = KANAL_ENOMEM;
	pthread_mutex_unlock(&sts->lock);
	return rc;
}

/* application/x-www-form-urlencoded value: unreserved bytes as they are, the rest %XX. */
static char *s_form_escape(const char *s)
{
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
			*o++ = (char)c;
		else
			o += sprintf(o, "%%%02X", c);
	}
	*o = '\0';
	return out;
}

static int s_exchange(kc_sts_t *sts, token_entry_t *e, kanal_error_t *err)
{
	static const char *const headers[] = { "Content-Type: application/x-www-form-urlencoded",
					       "Accept: application/json", NULL };
	char *value = s_form_escape(e->saml_b64), *body = NULL;
	const char *token, *type;
	kc_response_t res = { 0 };
	json_t *j = NULL;
	json_int_t expires_in;
	int rc;

	if (!value || asprintf(&body, "saml-token=%s", value) < 0) {
		s_wipe(&value);
		return KANAL_ENOMEM;
	}
	s_wipe(&value);
	rc = kc_http_request(sts->http, "POST", sts->accesstoken_url, headers, body, strlen(body),
			     &res);
	s_wipe(&body);
	if (rc != 0 || res.status != 200) {
		rc = s_refused(sts, &res, "access-token exchange", e->entity_id, err);
		goto done;
	}
	j = json_loadb(res.body, res.len, 0, NULL);
	token = json_string_value(json_object_get(j, "access_token"));
	type = json_string_value(json_object_get(j, "token_type"));
	expires_in = json_integer_value(json_object_get(j, "expires_in"));
	if (!token || !*token || !type || expires_in <= 0) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"access-token exchange: the answer lacks "
				"access_token, token_type or expires_in");
		rc = KANAL_EPARSE;
		goto done;
	}
	s_entry_clear(e, false, true);
	if (asprintf(&e->authorization, "Authorization: %s %s", type, token) < 0) {
		e->authorization = NULL;
		rc = KANAL_ENOMEM;
		goto done;
	}
	e->access_issued_ms = s_now(sts);
	e->access_expires_ms = e->access_issued_ms + (int64_t)expires_in * 1000;
	sts->exchanged++;
done:
	json_decref(j);
	if (res.body)
		OPENSSL_cleanse(res.body, res.len);
	kc_response_clear(&res);
	return rc;
}

int kc_sts_authorization(kc_sts_t *sts, const char *entity_id, char **header_out,
			 kanal_error_t *err)
{
	token_entry_t *e;
	int rc = KANAL_ENOMEM;

	*header_out = NULL;
	if (!sts->accesstoken_url) {
		kanal_error_set(err, NULL, 0, 0, "accesstoken_url",
				"option 'accesstoken_url' is "
				"required for a REST service");
		return KANAL_ECONFIG;
	}
	pthread_mutex_lock(&sts->lock);
	if (!(e = s_entry(sts, entity_id)))
		goto done;
	if (e->authorization && s_fresh(sts, e->access_issued_ms, e->access_expires_ms) &&
	    s_fresh(sts, e->saml_issued_ms, e->saml_expires_ms)) {
		rc = 0;
	} else if ((rc = s_saml(sts, e, err)) == 0) {
		rc = s_exchange(sts, e, err);
	}
	if (rc == 0 && !(*header_out = strdup(e->authorization)))
		rc = KANAL_ENOMEM;
done:
	pthread_mutex_unlock(&sts->lock);
	return rc;
}

void kc_sts_forget(kc_sts_t *sts, const char *entity_id)
{
	pthread_mutex_lock(&sts->lock);
	for (token_entry_t *e = sts->tokens; e; e = e->next)
		if (!entity_id || !strcmp(e->entity_id, entity_id))
			s_entry_clear(e, true, true);
	pthread_mutex_unlock(&sts->lock);
}

unsigned kc_sts_issued(const kc_sts_t *sts)
{
	return sts->issued;
}

unsigned kc_sts_exchanged(const kc_sts_t *sts)
{
	return sts->exchanged;
}
