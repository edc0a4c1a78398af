/*
 * tests/integration/test_sts.c — kc_sts against kanal-sim-sts over mutual TLS on
 * 127.0.0.1, with certificates made for the run (tests/util/testca.h): a REST token and
 * its access token for the function certificate, a SOAP token whose hand-made signature the
 * simulator verifies with xmlsec, and the refusals a municipality meets — an unknown
 * entity ID, an expired certificate, a certificate from another CA — each a clear error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "testca.h"
#include "upstream.h"

#include "../../plugins/common/kc_cert.h"
#include "../../plugins/common/kc_http.h"
#include "../../plugins/common/kc_sts.h"

typedef struct fixture {
	char *dir;
	upstream_t *sim;
	char base[64];
	char issue[160], soap[160], token[160], ca[1024];
	kc_cert_t *cert;
} fixture_t;

static char *s_path(const fixture_t *f, const char *name)
{
	static char buf[8][1024];
	static int i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof buf[i], "%s/%s", f->dir, name);
	return buf[i];
}

static int s_start(fixture_t *f)
{
	char cert[1100], key[1100], ca[1100];
	kc_cert_conf_t conf;
	kanal_error_t err = { 0 };

	memset(f, 0, sizeof *f);
	if (!(f->dir = test_tmpdir("sts")) || testca_make(f->dir) != 0)
		return -1;
	snprintf(cert, sizeof cert, "tls_cert=%s", s_path(f, "server.pem"));
	snprintf(key, sizeof key, "tls_key=%s", s_path(f, "server.key"));
	snprintf(ca, sizeof ca, "tls_ca=%s", s_path(f, "ca.pem"));
	{
		const char *args[] = { "--set", cert, "--set", key, "--set", ca, NULL };
		if (!(f->sim = upstream_start("sts", args)))
			return -1;
	}
	snprintf(f->base, sizeof f->base, "https://127.0.0.1:%d", f->sim->port);
	snprintf(f->issue, sizeof f->issue, "%s/runtime/api/rest/wstrust/v1/issue", f->base);
	snprintf(f->soap, sizeof f->soap, "%s/runtime/services/kombittrust/14/certificatemixed",
		 f->base);
	snprintf(f->token, sizeof f->token, "%s/service/AccessTokenService_1/token", f->base);
	snprintf(f->ca, sizeof f->ca, "%s", s_path(f, "ca.pem"));
	conf = (kc_cert_conf_t){ .pkcs12_file = s_path(f, "client.p12"),
				 .password_file = s_path(f, "client.pass") };
	return kc_cert_load(&conf, &f->cert, &err);
}

static void s_stop(fixture_t *f)
{
	kc_cert_destroy(&f->cert);
	upstream_stop(&f->sim);
	if (f->dir)
		test_rmdir_r(f->dir);
	free(f->dir);
}

static void test_rest_token_and_access_token_over_mutual_tls(void)
{
	fixture_t f;
	kc_sts_t *sts = NULL;
	kanal_error_t err = { 0 };
	char *h = NULL, *a = NULL;
	kc_sts_opts_t o;

	REQUIRE(s_start(&f) == 0);
	o = (kc_sts_opts_t){
		.issue_url = f.issue, .accesstoken_url = f.token, .cvr = "12345678", .ca_file = f.ca
	};
	REQUIRE(kc_sts_new(&o, f.cert, &sts, &err) == 0);
	CU_ASSERT_EQUAL(kc_sts_authorization(sts, KC_STS_ENTITY_KOMBIPOSTAFSEND, &h, &err), 0);
	if (err.text[0])
		fprintf(stderr, "kc_sts: %s\n", err.text);
	REQUIRE(h);
	CU_ASSERT_EQUAL(strncmp(h, "Authorization: Holder-of-key ", 29), 0);
	CU_ASSERT_EQUAL(strlen(h), 29 + 36); /* a UUID */
	/* The assertion is the simulator's, signed, for this service, bound to our cert. */
	REQUIRE(kc_sts_assertion(sts, KC_STS_ENTITY_KOMBIPOSTAFSEND, &a, &err) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(a, "<saml:Audience>" KC_STS_ENTITY_KOMBIPOSTAFSEND));
	CU_ASSERT_PTR_NOT_NULL(strstr(a, "SignatureValue"));
	CU_ASSERT_PTR_NOT_NULL(strstr(a, kc_cert_der_base64(f.cert)));
	/* Cached: a second call asks nothing. */
	free(h);
	h = NULL;
	REQUIRE(kc_sts_authorization(sts, KC_STS_ENTITY_KOMBIPOSTAFSEND, &h, &err) == 0);
	CU_ASSERT_EQUAL(kc_sts_issued(sts), 1);
	CU_ASSERT_EQUAL(kc_sts_exchanged(sts), 1);
done:
	free(h);
	free(a);
	kc_sts_destroy(&sts);
	s_stop(&f);
}

static void test_soap_token_signature_verified_by_the_simulator(void)
{
	fixture_t f;
	kc_sts_t *sts = NULL;
	kanal_error_t err = { 0 };
	char *a = NULL;
	kc_sts_opts_t o;

	REQUIRE(s_start(&f) == 0);
	o = (kc_sts_opts_t){
		.soap_url = f.soap, .use_soap = true, .cvr = "12345678", .ca_file = f.ca
	};
	REQUIRE(kc_sts_new(&o, f.cert, &sts, &err) == 0);
	CU_ASSERT_EQUAL(kc_sts_assertion(sts, KC_STS_ENTITY_CPR_V5, &a, &err), 0);
	if (err.text[0])
		fprintf(stderr, "kc_sts: %s\n", err.text);
	REQUIRE(a);
	CU_ASSERT_PTR_NOT_NULL(strstr(a, "<saml:Audience>" KC_STS_ENTITY_CPR_V5));
	CU_ASSERT_PTR_NOT_NULL(strstr(a, "<saml:AttributeValue>12345678<"));
done:
	free(a);
	kc_sts_destroy(&sts);
	s_stop(&f);
}

static void test_unknown_entity_is_refused_with_what_to_check(void)
{
	fixture_t f;
	kc_sts_t *sts = NULL;
	kanal_error_t err = { 0 };
	char *a = NULL;
	kc_sts_opts_t o;

	REQUIRE(s_start(&f) == 0);
	o = (kc_sts_opts_t){ .issue_url = f.issue, .cvr = "12345678", .ca_file = f.ca };
	REQUIRE(kc_sts_new(&o, f.cert, &sts, &err) == 0);
	CU_ASSERT_EQUAL(
		kc_sts_assertion(sts, "http://entityid.kombit.dk/service/nosuch/1", &a, &err),
		KANAL_EREJECTED);
	CU_ASSERT_PTR_NULL(a);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "UNKNOWN_ENTITY"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "service agreement"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "nosuch"));
done:
	kc_sts_destroy(&sts);
	s_stop(&f);
}

/* What the simulator answers a client certificate it must refuse (posted with kc_http
 * directly: kc_sts itself refuses to send an expired certificate). */
static long s_post_with(const fixture_t *f, const char *name, char **body)
{
	char pem[64], key[64];
	kc_http_opts_t ho = { .ca_file = f->ca };
	kc_http_t *http;
	kc_response_t res;
	long status;
	char *req;

	snprintf(pem, sizeof pem, "%s.pem", name);
	snprintf(key, sizeof key, "%s.key", name);
	ho.client_cert = s_path(f, pem);
	ho.client_key = s_path(f, key);
	http = kc_http_new(&ho);
	req = kc_sts_rest_issue_body("12345678", "MII", KC_STS_ENTITY_KOMBIPOSTAFSEND);
	kc_http_request(http, "POST", f->issue,
			(const char *const[]){ "Content-Type: application/json", NULL }, req,
			strlen(req), &res);
	status = res.status;
	*body = res.body ? strdup(res.body) : NULL;
	kc_response_clear(&res);
	kc_http_destroy(&http);
	free(req);
	return status;
}

static void test_expired_and_foreign_certificates_are_refused(void)
{
	fixture_t f;
	kc_cert_t *expired = NULL;
	kc_sts_t *sts = NULL;
	kanal_error_t err = { 0 };
	kc_cert_conf_t conf;
	char *body = NULL;
	kc_sts_opts_t o;

	REQUIRE(s_start(&f) == 0);
	CU_ASSERT_EQUAL(s_post_with(&f, "expired", &body), 401);
	CU_ASSERT_PTR_NOT_NULL(body && strstr(body, "CERTIFICATE_EXPIRED"));
	free(body);
	CU_ASSERT_EQUAL(s_post_with(&f, "stranger", &body), 401);
	CU_ASSERT_PTR_NOT_NULL(body && strstr(body, "CERTIFICATE_UNTRUSTED"));
	free(body);
	body = NULL;
	/* And the client does not even try with an expired certificate. */
	conf = (kc_cert_conf_t){ .cert_file = s_path(&f, "expired.pem"),
				 .key_file = s_path(&f, "expired.key") };
	REQUIRE(kc_cert_load(&conf, &expired, &err) == 0);
	o = (kc_sts_opts_t){ .issue_url = f.issue, .cvr = "12345678", .ca_file = f.ca };
	CU_ASSERT_EQUAL(kc_sts_new(&o, expired, &sts, &err), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "expired on"));
done:
	free(body);
	kc_cert_destroy(&expired);
	s_stop(&f);
}

TEST_MAIN("sts", TEST(test_rest_token_and_access_token_over_mutual_tls),
	  TEST(test_soap_token_signature_verified_by_the_simulator),
	  TEST(test_unknown_entity_is_refused_with_what_to_check),
	  TEST(test_expired_and_foreign_certificates_are_refused))
