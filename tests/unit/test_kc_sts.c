/*
 * tests/unit/test_kc_sts.c — the Serviceplatformen token pieces in plugins/common: the
 * function certificate loads from private PEM or PKCS#12 files and says when it cannot be
 * used; the REST issue body is the contract's example with our values; the STR-Transform
 * digest matches a known answer; a signed WS-Trust request and service call have every
 * reference the contract lists and a signature the certificate verifies; and tokens are
 * cached per entity ID, renewed before they expire and after a 401, against a small STS
 * served here over HTTP on 127.0.0.1 with a clock the test moves.
 */
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libxml/c14n.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "test.h"
#include "testca.h"

#include "../../plugins/common/kc_cert.h"
#include "../../plugins/common/kc_sts.h"

#define CONTRACT "tests/data/contracts/examples/sts/"

static char *s_dir;

static int s_setup(void)
{
	s_dir = test_tmpdir("kc_sts");
	return s_dir && testca_make(s_dir) == 0 ? 0 : -1;
}

static const char *s_file(const char *name)
{
	static char buf[16][1024];
	static int i;

	if (!s_dir && s_setup() != 0)
		return "/nonexistent";
	i = (i + 1) % 16;
	snprintf(buf[i], sizeof buf[i], "%s/%s", s_dir, name);
	return buf[i];
}

static kc_cert_t *s_client(void)
{
	kc_cert_conf_t conf = { .cert_file = s_file("client.pem"),
				.key_file = s_file("client.key") };
	kc_cert_t *cert = NULL;
	kanal_error_t err = { 0 };

	if (!s_dir && s_setup() != 0)
		return NULL;
	kc_cert_load(&conf, &cert, &err);
	return cert;
}

static void test_certificate_loads_from_pem_and_pkcs12(void)
{
	kc_cert_t *pem = s_client(), *p12 = NULL;
	kc_cert_conf_t conf = { .pkcs12_file = s_file("client.p12"),
				.password_file = s_file("client.pass") };
	kanal_error_t err = { 0 };

	CU_ASSERT_PTR_NOT_NULL_FATAL(pem);
	CU_ASSERT_EQUAL(kc_cert_load(&conf, &p12, &err), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p12);
	/* The same certificate either way, as one line of base64 without PEM armour. */
	CU_ASSERT_STRING_EQUAL(kc_cert_der_base64(pem), kc_cert_der_base64(p12));
	CU_ASSERT_PTR_NULL(strchr(kc_cert_der_base64(pem), '\n'));
	CU_ASSERT_PTR_NULL(strstr(kc_cert_der_base64(pem), "BEGIN"));
	CU_ASSERT_EQUAL(strncmp(kc_cert_der_base64(pem), "MII", 3), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(kc_cert_subject(pem), "kanal test kommune"));
	kc_cert_destroy(&pem);
	kc_cert_destroy(&p12);
	CU_ASSERT_PTR_NULL(p12);
}

static void test_certificate_refusals_say_why(void)
{
	kc_cert_conf_t wrong = { .pkcs12_file = s_file("client.p12"),
				 .password_file = s_file("wrong.pass") };
	kc_cert_conf_t mismatch = { .cert_file = s_file("client.pem"),
				    .key_file = s_file("stranger.key") };
	kc_cert_conf_t open_key = { .cert_file = s_file("client.pem"),
				    .key_file = s_file("open.key") };
	kc_cert_conf_t neither = { 0 };
	kc_cert_t *cert = NULL;
	kanal_error_t err = { 0 };
	char *key;

	kc_cert_destroy(&cert); /* accepts NULL */
	REQUIRE(s_dir || s_setup() == 0);
	free(test_write_file(s_dir, "wrong.pass", "not-the-password\n"));
	chmod(s_file("wrong.pass"), 0600);
	CU_ASSERT_EQUAL(kc_cert_load(&wrong, &cert, &err), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "password"));
	CU_ASSERT_PTR_NULL(strstr(err.text, "not-the-password"));

	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kc_cert_load(&mismatch, &cert, &err), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "does not belong"));

	/* A key file others may read is refused, naming the option and the fix. */
	key = test_read_file(s_file("client.key"), NULL);
	REQUIRE(key);
	free(test_write_file(s_dir, "open.key", key));
	free(key);
	chmod(s_file("open.key"), 0644);
	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kc_cert_load(&open_key, &cert, &err), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "certificate_key"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "chmod 600"));

	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kc_cert_load(&neither, &cert, &err), KANAL_ECONFIG);
	CU_ASSERT_PTR_NULL(cert);
done:;
}

static void test_expired_and_future_certificates_say_what_to_do(void)
{
	kc_cert_conf_t expired = { .cert_file = s_file("expired.pem"),
				   .key_file = s_file("expired.key") };
	kc_cert_conf_t future = { .cert_file = s_file("future.pem"),
				  .key_file = s_file("future.key") };
	kc_sts_opts_t o = { .issue_url = "https://sts.example/issue", .cvr = "12345678" };
	kc_cert_t *cert = NULL;
	kc_sts_t *sts = NULL;
	kanal_error_t err = { 0 };

	REQUIRE(s_dir || s_setup() == 0);
	/* An expired certificate still loads; the client refuses it, saying what to do. */
	REQUIRE(kc_cert_load(&expired, &cert, &err) == 0);
	CU_ASSERT_EQUAL(kc_sts_new(&o, cert, &sts, &err), KANAL_ECONFIG);
	CU_ASSERT_PTR_NULL(sts);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "expired on"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "renew it"));
	kc_cert_destroy(&cert);

	kanal_error_clear(&err);
	REQUIRE(kc_cert_load(&future, &cert, &err) == 0);
	CU_ASSERT_EQUAL(kc_cert_check_time(cert, kanal_wall_ms(), 0, &err), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "not valid until"));
	/* The skew allowance lets a certificate through that starts within it. */
	CU_ASSERT_EQUAL(kc_cert_check_time(cert, kc_cert_not_before_ms(cert) - 1000, 60000, NULL),
			0);
done:
	kc_cert_destroy(&cert);
}

static void test_rest_issue_body_is_the_contracts(void)
{
	char *example = test_read_file(CONTRACT "rest-issue.request.json", NULL);
	json_t *want = example ? json_loads(example, 0, NULL) : NULL;
	char *body = kc_sts_rest_issue_body("12345678", "MIIBASE64", KC_STS_ENTITY_KOMBIPOSTAFSEND);
	json_t *got = body ? json_loads(body, 0, NULL) : NULL;

	REQUIRE(want && got);
	/* Our certificate where the example has its placeholder; every other field equal —
	 * OnBehalfOf an explicit null included. */
	json_object_set_new(want, "UseKey", json_string("MIIBASE64"));
	CU_ASSERT_TRUE(json_equal(want, got));
	CU_ASSERT_TRUE(json_is_null(json_object_get(got, "OnBehalfOf")));
done:
	json_decref(want);
	json_decref(got);
	free(example);
	free(body);
}

/* The known answer: this assertion, written with single quotes, attributes out of order,
 * an unused namespace, a self-closed element and a comment, canonicalises (exc-c14n
 * without comments) to
 *   <saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_kat1"
 *   IssueInstant="2025-06-02T08:15:00Z" Version="2.0"><saml:Issuer>…</saml:Issuer>
 *   <saml:Conditions NotBefore="…" NotOnOrAfter="…"></saml:Conditions><saml:Attribute …>
 * (on one line), whose SHA-256 `openssl dgst -sha256 -binary | base64` gives below. */
static const char s_kat_assertion[] =
	"<saml:Assertion xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" Version='2.0' ID=\"_kat1\" "
	"xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" "
	"IssueInstant=\"2025-06-02T08:15:00Z\">"
	"<saml:Issuer>http://saml.n2adgangsstyring.stoettesystemerne.dk/runtime</saml:Issuer>"
	"<saml:Conditions NotOnOrAfter=\"2025-06-02T16:15:00Z\" "
	"NotBefore=\"2025-06-02T08:15:00Z\"/>"
	"<!-- not signed --><saml:Attribute Name=\"dk:gov:saml:attribute:CvrNumberIdentifier\">"
	"<saml:AttributeValue>12345678</saml:AttributeValue></saml:Attribute></saml:Assertion>";
#define KAT_DIGEST "PKvOVFZgdEvtgT6wV4LZDsSK5FEGotAK++K2TCBZWBE="

static void test_str_transform_digest_known_answer(void)
{
	char digest[45];

	CU_ASSERT_EQUAL(kc_sts_str_digest(s_kat_assertion, strlen(s_kat_assertion), digest), 0);
	CU_ASSERT_STRING_EQUAL(digest, KAT_DIGEST);
	CU_ASSERT_EQUAL(kc_sts_str_digest("<a>", 3, digest), KANAL_EINVAL);
}

/* Checks the signature of a signed envelope the way a receiver would: every reference's
 * digest recomputed over its element, and SignatureValue verified with the certificate's
 * public key over the canonical SignedInfo. Returns the number of references, -1 when
 * any check fails. str_digest: what the STR reference must carry. */
static int s_verify(const char *xml, const char *cert_pem_path, const char *str_digest)
{
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), NULL, NULL, XML_PARSE_NONET);
	xmlXPathContextPtr xp = doc ? xmlXPathNewContext(doc) : NULL;
	xmlXPathObjectPtr refs = NULL, si = NULL, sv = NULL;
	FILE *f = fopen(cert_pem_path, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int n = -1;

	if (f)
		fclose(f);
	if (!xp || !x)
		goto done;
	xmlXPathRegisterNs(xp, BAD_CAST "ds", BAD_CAST "http://www.w3.org/2000/09/xmldsig#");
	xmlXPathRegisterNs(xp, BAD_CAST "wsu",
			   BAD_CAST "http://docs.oasis-open.org/wss/2004/01/"
				    "oasis-200401-wss-wssecurity-utility-1.0.xsd");
	refs = xmlXPathEvalExpression(BAD_CAST "//ds:SignedInfo/ds:Reference", xp);
	si = xmlXPathEvalExpression(BAD_CAST "//ds:SignedInfo", xp);
	sv = xmlXPathEvalExpression(BAD_CAST "string(//ds:SignatureValue)", xp);
	if (!refs || !refs->nodesetval || !si || !si->nodesetval || !si->nodesetval->nodeNr)
		goto done;
	for (int i = 0; i < refs->nodesetval->nodeNr; i++) {
		xmlNodePtr r = refs->nodesetval->nodeTab[i];
		xmlChar *uri = xmlGetProp(r, BAD_CAST "URI");
		char q[160], digest[45];
		xmlXPathObjectPtr target, dv;
		xmlChar *c14n = NULL;
		unsigned char h[32];
		int len;

		snprintf(q, sizeof q, "//*[@wsu:Id='%s']", uri ? (char *)uri + 1 : "");
		target = xmlXPathEvalExpression(BAD_CAST q, xp);
		xp->node = r;
		dv = xmlXPathEvalExpression(BAD_CAST "string(ds:DigestValue)", xp);
		xp->node = NULL;
		if (uri && !strcmp((char *)uri, "#STR-1")) {
			snprintf(digest, sizeof digest, "%s", str_digest ? str_digest : "");
		} else if (target && target->nodesetval && target->nodesetval->nodeNr == 1) {
			xmlNodeSetPtr set = xmlXPathNodeSetCreate(NULL);
			xmlXPathObjectPtr all;

			xp->node = target->nodesetval->nodeTab[0];
			all = xmlXPathEvalExpression(BAD_CAST
						     "descendant-or-self::node() | "
						     "descendant-or-self::node()/@* | "
						     "descendant-or-self::node()/namespace::*",
						     xp);
			xp->node = NULL;
			len = all ? xmlC14NDocDumpMemory(doc, all->nodesetval,
							 XML_C14N_EXCLUSIVE_1_0, NULL, 0, &c14n)
				  : -1;
			xmlXPathFreeObject(all);
			xmlXPathFreeNodeSet(set);
			EVP_Digest(c14n, (size_t)(len > 0 ? len : 0), h, NULL, EVP_sha256(), NULL);
			EVP_EncodeBlock((unsigned char *)digest, h, 32);
			xmlFree(c14n);
		} else {
			digest[0] = '\0';
		}
		if (!dv || strcmp((char *)dv->stringval, digest) || !digest[0]) {
			xmlXPathFreeObject(target);
			xmlXPathFreeObject(dv);
			xmlFree(uri);
			goto done;
		}
		xmlXPathFreeObject(target);
		xmlXPathFreeObject(dv);
		xmlFree(uri);
	}
	{
		xmlXPathObjectPtr all;
		xmlChar *c14n = NULL;
		unsigned char sig[1024];
		int len, sig_len;

		xp->node = si->nodesetval->nodeTab[0];
		all = xmlXPathEvalExpression(BAD_CAST "descendant-or-self::node() | "
						      "descendant-or-self::node()/@* | "
						      "descendant-or-self::node()/namespace::*",
					     xp);
		len = xmlC14NDocDumpMemory(doc, all->nodesetval, XML_C14N_EXCLUSIVE_1_0, NULL, 0,
					   &c14n);
		xmlXPathFreeObject(all);
		sig_len = EVP_DecodeBlock(sig, sv->stringval, (int)strlen((char *)sv->stringval));
		while (sig_len > 0 && sv->stringval[strlen((char *)sv->stringval) - 1] == '=' &&
		       sig_len % 256)
			sig_len--;
		if (len > 0 &&
		    EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, X509_get0_pubkey(x)) == 1 &&
		    EVP_DigestVerify(md, sig, (size_t)sig_len, c14n, (size_t)len) == 1)
			n = refs->nodesetval->nodeNr;
		xmlFree(c14n);
	}
done:
	EVP_MD_CTX_free(md);
	X509_free(x);
	xmlXPathFreeObject(refs);
	xmlXPathFreeObject(si);
	xmlXPathFreeObject(sv);
	xmlXPathFreeContext(xp);
	xmlFreeDoc(doc);
	return n;
}

static void test_soap_rst_is_signed_as_the_contract_says(void)
{
	kc_cert_t *cert = s_client();
	kanal_error_t err = { 0 };
	char *xml = NULL;

	REQUIRE(cert);
	REQUIRE(kc_sts_soap_rst(cert, "https://sts.example/kombittrust/14/certificatemixed",
				KC_STS_ENTITY_CPR_V5, "12345678", kanal_wall_ms(), &xml,
				&err) == 0);
	/* Seven references (Timestamp, Body, To, ReplyTo, MessageID, Action, the
	 * BinarySecurityToken), each digest right, the signature verifying with our cert. */
	CU_ASSERT_EQUAL(s_verify(xml, s_file("client.pem"), NULL), 7);
	CU_ASSERT_PTR_NOT_NULL(strstr(xml, "<auth:Value>12345678</auth:Value>"));
	CU_ASSERT_PTR_NOT_NULL(strstr(xml, KC_STS_ENTITY_CPR_V5));
	CU_ASSERT_PTR_NOT_NULL(strstr(xml, kc_cert_der_base64(cert)));
	/* A changed body no longer matches its digest. */
	{
		char *p = strstr(xml, "12345678</auth:Value>");
		REQUIRE(p);
		p[0] = '8';
		CU_ASSERT_EQUAL(s_verify(xml, s_file("client.pem"), NULL), -1);
	}
done:
	free(xml);
	kc_cert_destroy(&cert);
}

static void test_soap_call_carries_the_assertion_verbatim(void)
{
	kc_cert_t *cert = s_client();
	kanal_error_t err = { 0 };
	char *xml = NULL;

	REQUIRE(cert);
	REQUIRE(kc_sts_soap_call(cert, s_kat_assertion,
				 "http://serviceplatformen.dk/xml/wsdl/soap11/CPR/"
				 "PersonBaseDataExtended/5/PersonLookup",
				 KC_STS_ENTITY_CPR_V5,
				 "<p:PersonLookupRequest "
				 "xmlns:p=\"urn:example\"><p:x>1</p:x></p:PersonLookupRequest>",
				 kanal_wall_ms(), &xml, &err) == 0);
	/* Byte for byte — single quotes, comment and all — as the STS wrote it. */
	CU_ASSERT_PTR_NOT_NULL(strstr(xml, s_kat_assertion));
	/* Seven element references plus the STR-Transform one, whose digest is the known
	 * answer; the signature verifies. */
	CU_ASSERT_EQUAL(s_verify(xml, s_file("client.pem"), KAT_DIGEST), 8);
	CU_ASSERT_PTR_NOT_NULL(strstr(xml, "STR-Transform"));
	CU_ASSERT_PTR_NOT_NULL(strstr(xml, ">_kat1</wsse:KeyIdentifier>"));
done:
	free(xml);
	kc_cert_destroy(&cert);
}

/* ---- a small STS on 127.0.0.1 (plain HTTP: only the token logic is under test here) ---- */

static int64_t s_clock;
static int64_t s_fake_clock(void)
{
	return s_clock;
}

typedef struct {
	int issued, exchanged;
	char last_entity[200];
	bool refuse;
} fake_sts_t;

static enum MHD_Result s_fake(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *data,
			      size_t *size, void **state)
{
	static int dummy;
	fake_sts_t *f = cls;
	struct MHD_Response *r;
	enum MHD_Result ret;
	char body[2048], iso[KANAL_TIME_RFC3339_SIZE];
	int status = 200;

	if (!*state) { /* the body comes in later calls */
		*state = calloc(1, 16384);
		return MHD_YES;
	}
	if (*size) {
		strncat(*state, data, *size < 16000 ? *size : 16000);
		*size = 0;
		return MHD_YES;
	}
	(void)dummy;
	if (!strcmp(url, "/issue")) {
		json_t *j = json_loads(*state, 0, NULL);
		const char *entity = json_string_value(json_object_get(
			json_object_get(json_object_get(j, "AppliesTo"), "EndpointReference"),
			"Address"));
		char xml[600], *b64;

		snprintf(f->last_entity, sizeof f->last_entity, "%s", entity ? entity : "");
		kanal_time_rfc3339(s_clock + 8 * 3600 * 1000LL, iso, sizeof iso);
		snprintf(xml, sizeof xml,
			 "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" "
			 "ID=\"_t%d\"><saml:Conditions NotOnOrAfter=\"%s\"/></saml:Assertion>",
			 f->issued, iso);
		b64 = kc_base64(xml, strlen(xml));
		f->issued++;
		if (f->refuse) {
			status = 400;
			snprintf(body, sizeof body, "{\"error\":\"no service agreement\"}");
		} else {
			snprintf(body, sizeof body,
				 "{\"RequestedSecurityToken\":{\"Assertion\":\"%s\"},"
				 "\"Lifetime\":\"06/02/2025 16:15:00\"}",
				 b64);
		}
		free(b64);
		json_decref(j);
	} else {
		f->exchanged++;
		snprintf(body, sizeof body,
			 "{\"access_token\":\"tok-%d\",\"token_type\":"
			 "\"Holder-of-key\",\"expires_in\":3600}",
			 f->exchanged);
	}
	free(*state);
	*state = NULL;
	r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
	ret = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

static void test_tokens_are_cached_renewed_and_forgotten(void)
{
	fake_sts_t f = { 0 };
	struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
						s_fake, &f, MHD_OPTION_END);
	const union MHD_DaemonInfo *info =
		d ? MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
	char issue[80], token[80];
	kc_cert_t *cert = s_client();
	kc_sts_t *sts = NULL;
	kanal_error_t err = { 0 };
	char *h = NULL, *a = NULL;
	kc_sts_opts_t o = { .issue_url = issue,
			    .accesstoken_url = token,
			    .cvr = "12345678",
			    .clock_ms = s_fake_clock };

	REQUIRE(info && cert);
	snprintf(issue, sizeof issue, "http://127.0.0.1:%u/issue", info->port);
	snprintf(token, sizeof token, "http://127.0.0.1:%u/token", info->port);
	s_clock = kanal_wall_ms();
	REQUIRE(kc_sts_new(&o, cert, &sts, &err) == 0);

	REQUIRE(kc_sts_authorization(sts, KC_STS_ENTITY_KOMBIPOSTAFSEND, &h, &err) == 0);
	CU_ASSERT_STRING_EQUAL(h, "Authorization: Holder-of-key tok-1");
	CU_ASSERT_STRING_EQUAL(f.last_entity, KC_STS_ENTITY_KOMBIPOSTAFSEND);
	free(h);
	/* Half an hour later: both tokens still good, nothing asked. */
	s_clock += 30 * 60 * 1000;
	REQUIRE(kc_sts_authorization(sts, KC_STS_ENTITY_KOMBIPOSTAFSEND, &h, &err) == 0);
	CU_ASSERT_STRING_EQUAL(h, "Authorization: Holder-of-key tok-1");
	CU_ASSERT_EQUAL(f.issued, 1);
	CU_ASSERT_EQUAL(f.exchanged, 1);
	free(h);
	/* Another service: a token of its own. */
	REQUIRE(kc_sts_authorization(sts, KC_STS_ENTITY_POSTFORESPOERG, &h, &err) == 0);
	CU_ASSERT_STRING_EQUAL(f.last_entity, KC_STS_ENTITY_POSTFORESPOERG);
	CU_ASSERT_EQUAL(f.issued, 2);
	free(h);
	/* 53 minutes after the first: the access token (3600 s) is within renew_before (5 min)
	 * plus skew (2 min) of its end and is exchanged again; the SAML token (8 h) is kept. */
	s_clock += 23 * 60 * 1000;
	REQUIRE(kc_sts_authorization(sts, KC_STS_ENTITY_KOMBIPOSTAFSEND, &h, &err) == 0);
	CU_ASSERT_EQUAL(f.issued, 2);
	CU_ASSERT_EQUAL(f.exchanged, 3);
	free(h);
	/* After a 401 the caller forgets: both are fetched anew. */
	kc_sts_forget(sts, KC_STS_ENTITY_KOMBIPOSTAFSEND);
	REQUIRE(kc_sts_authorization(sts, KC_STS_ENTITY_KOMBIPOSTAFSEND, &h, &err) == 0);
	CU_ASSERT_EQUAL(f.issued, 3);
	CU_ASSERT_EQUAL(f.exchanged, 4);
	free(h);
	/* Eight hours on, the SAML token is renewed too. */
	s_clock += 8 * 3600 * 1000LL;
	REQUIRE(kc_sts_assertion(sts, KC_STS_ENTITY_KOMBIPOSTAFSEND, &a, &err) == 0);
	CU_ASSERT_EQUAL(f.issued, 4);
	CU_ASSERT_PTR_NOT_NULL(strstr(a, "ID=\"_t3\""));
	/* A refusal is REJECTED, says what to check, and quotes no token. */
	f.refuse = true;
	kc_sts_forget(sts, NULL);
	h = NULL;
	CU_ASSERT_EQUAL(kc_sts_authorization(sts, KC_STS_ENTITY_CPR_V5, &h, &err), KANAL_EREJECTED);
	CU_ASSERT_PTR_NULL(h);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "service agreement"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, KC_STS_ENTITY_CPR_V5));
	CU_ASSERT_PTR_NULL(strstr(err.text, "tok-"));
done:
	free(a);
	kc_sts_destroy(&sts);
	kc_cert_destroy(&cert);
	if (d)
		MHD_stop_daemon(d);
}

static void test_cleanup(void)
{
	if (s_dir) {
		test_rmdir_r(s_dir);
		free(s_dir);
		s_dir = NULL;
	}
}

TEST_MAIN("kc_sts", TEST(test_certificate_loads_from_pem_and_pkcs12),
	  TEST(test_certificate_refusals_say_why),
	  TEST(test_expired_and_future_certificates_say_what_to_do),
	  TEST(test_rest_issue_body_is_the_contracts), TEST(test_str_transform_digest_known_answer),
	  TEST(test_soap_rst_is_signed_as_the_contract_says),
	  TEST(test_soap_call_carries_the_assertion_verbatim),
	  TEST(test_tokens_are_cached_renewed_and_forgotten), TEST(test_cleanup))
