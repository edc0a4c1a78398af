/*
 * tests/integration/test_cpr_tls.c — the cpr plugin against the simulated national services
 * as a municipality meets them: kanal-sim-cpr over mutual TLS (SF1520 v4) and with STS
 * tokens from kanal-sim-sts (SF1520 v5), with certificates made for the run
 * (tests/util/testca.h). Each failure mode a municipality can meet is a clear error: no
 * client certificate, an untrusted or expired one, a token not signed by the STS, a token
 * that has expired (renewed once, then refused with what to check).
 *
 * CPR numbers never reach this program's output: they live in named constants.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kanald.h"
#include "test.h"
#include "testca.h"
#include "upstream.h"

#define WAIT 10000 /* ms: the bound of every wait */

static const char *const IDA = "1404214382"; /* the synthetic population's Ida Hansen */

static const char *s_routes = "routes:\n"
			      "  - name: child-absence-to-guardians\n"
			      "    match: { type: child.absence.reported }\n"
			      "    enrich:\n"
			      "      - service: cpr\n"
			      "        into: data.person\n"
			      "        purpose: \"guardians' calendars\"\n"
			      "        timeout: 8s\n"
			      "    to: guardians\n"
			      "    retry: { max_attempts: 1 }\n";

typedef struct fixture {
	char *dir;
	upstream_t *sts, *cpr;
	kd_t *kd;
	void *failed; /* subscribed to enrich.failed */
} fixture_t;

/* A file of the run's test CA folder (a rotating static buffer). */
static const char *s_path(const fixture_t *f, const char *name)
{
	static char buf[8][1024];
	static int i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof buf[i], "%s/%s", f->dir, name);
	return buf[i];
}

/* Starts a simulator over mutual TLS with the test CA's server certificate, plus the
 * settings in extra ("--set", "name=value", …, NULL). */
static upstream_t *s_sim(const fixture_t *f, const char *name, const char *const *extra)
{
	char cert[1100], key[1100], ca[1100];
	const char *args[16] = { "--set", cert, "--set", key, "--set", ca };
	size_t n = 6;

	snprintf(cert, sizeof cert, "tls_cert=%s", s_path(f, "server.pem"));
	snprintf(key, sizeof key, "tls_key=%s", s_path(f, "server.key"));
	snprintf(ca, sizeof ca, "tls_ca=%s", s_path(f, "ca.pem"));
	for (size_t i = 0; extra && extra[i] && n < 15; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	return upstream_start(name, args);
}

/* Makes the CA, starts both simulators — kanal-sim-cpr trusting the tokens signed by the
 * certificate `sts_cert` of the CA folder (NULL: server.pem, kanal-sim-sts's), with the
 * extra setting `cpr_setting` ("name=value" or NULL) — and
 * kanald with a cpr instance whose options are `opts` (YAML lines indented by six; "@CA@"
 * is the folder of the test CA, "@CPR@" and "@STS@" the simulators' https URLs). With
 * expect_fail kanald is only launched: it may refuse to start. Returns 0 when started. */
static int s_start(fixture_t *f, const char *tag, const char *sts_cert_name,
		   const char *cpr_setting, const char *opts, bool expect_fail)
{
	char sts_cert[1100], *instances = NULL, *conf, *o, *p;
	const char *cpr_extra[] = { "--set", sts_cert, cpr_setting ? "--set" : NULL, cpr_setting,
				    NULL };
	char cpr_url[64], sts_url[64];

	memset(f, 0, sizeof *f);
	if (!(f->dir = test_tmpdir("cprtls")) || testca_make(f->dir) != 0)
		return -1;
	/* kanal-sim-sts signs tokens with its TLS key: the service trusts that certificate. */
	snprintf(sts_cert, sizeof sts_cert, "sts_cert=%s",
		 s_path(f, sts_cert_name ? sts_cert_name : "server.pem"));
	if (!(f->sts = s_sim(f, "sts", NULL)) || !(f->cpr = s_sim(f, "cpr", cpr_extra)))
		return -1;
	snprintf(cpr_url, sizeof cpr_url, "https://127.0.0.1:%d", f->cpr->port);
	snprintf(sts_url, sizeof sts_url, "https://127.0.0.1:%d", f->sts->port);
	/* Fill the placeholders. */
	o = strdup(opts);
	for (const char *const *pair = (const char *const[]){ "@CA@", f->dir, "@CPR@", cpr_url,
							      "@STS@", sts_url, NULL };
	     o && *pair; pair += 2)
		while ((p = strstr(o, pair[0]))) {
			char *next;
			*p = '\0';
			if (asprintf(&next, "%s%s%s", o, pair[1], p + strlen(pair[0])) < 0)
				next = NULL;
			free(o);
			o = next;
			if (!o)
				break;
		}
	if (!o || asprintf(&instances,
			   "  - name: cpr\n"
			   "    plugin: cpr\n"
			   "    options:\n"
			   "      ca_file: '%s/ca.pem'\n"
			   "      timeout: 3s\n"
			   "      audit_log: '@DIR@/audit.log'\n"
			   "%s"
			   "  - name: guardians\n    plugin: sink\n"
			   "    options: { path: '@DIR@/guardians.jsonl' }\n",
			   f->dir, o) < 0) {
		free(o);
		return -1;
	}
	free(o);
	conf = kd_config(instances, NULL);
	free(instances);
	if (expect_fail) {
		f->kd = kd_prepare(tag, conf, s_routes);
		free(conf);
		return kd_launch(f->kd);
	}
	f->kd = kd_start(tag, conf, s_routes);
	free(conf);
	if (!f->kd)
		return -1;
	f->failed = kd_subscribe(f->kd, "enrich.failed");
	return 0;
}

static void s_finish(fixture_t *f)
{
	if (f->kd) {
		char *log = kd_log(f->kd);
		CU_ASSERT_FALSE(log && (strstr(log, IDA) || kd_has_clear_cpr(log)));
		/* Tokens are never logged. */
		CU_ASSERT_FALSE(log && strstr(log, "saml:Assertion"));
		free(log);
		if (f->kd->pid > 0)
			CU_ASSERT_EQUAL(kd_stop(f->kd, SIGTERM, WAIT), 0);
	}
	kd_unsubscribe(&f->failed);
	kd_destroy(&f->kd);
	upstream_stop(&f->cpr);
	upstream_stop(&f->sts);
	if (f->dir)
		test_rmdir_r(f->dir);
	free(f->dir);
}

/* Sends a child's absence about Ida. */
static void s_send(fixture_t *f)
{
	char *json;

	if (asprintf(&json,
		     "{\"specversion\":\"1.0\",\"id\":\"abs-1\",\"source\":\"test\","
		     "\"type\":\"child.absence.reported\",\"data\":{\"child_cpr\":\"%s\","
		     "\"reason\":\"sick\"}}",
		     IDA) < 0)
		return;
	CU_ASSERT(kd_send_event(f->kd, json, "accepted", WAIT, NULL));
	free(json);
}

/* Sends the event and asserts that the enrich step delivered Ida's name. */
static void s_expect_lookup(fixture_t *f)
{
	char *text;

	s_send(f);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(f->kd, "guardians.jsonl"), 1, WAIT), 1);
	text = test_read_file(kd_path(f->kd, "guardians.jsonl"), NULL);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\"first\":\"Ida\""));
	free(text);
}

/* Sends the event and asserts that the step failed with every one of the needles in its
 * reason (up to three; NULL ends). */
static void s_expect_failure(fixture_t *f, const char *n1, const char *n2, const char *n3)
{
	char *p;

	s_send(f);
	p = kd_expect(f->failed, "enrich.failed", n1, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	if (p && n2)
		CU_ASSERT_PTR_NOT_NULL(strstr(p, n2));
	if (p && n3)
		CU_ASSERT_PTR_NOT_NULL(strstr(p, n3));
	if (!p || (n2 && !strstr(p, n2)) || (n3 && !strstr(p, n3)))
		fprintf(stderr, "enrich.failed: %s\n", p ? p : "(none)");
	free(p);
	CU_ASSERT_EQUAL(kd_lines(kd_path(f->kd, "guardians.jsonl")), 0);
}

#define V4_OPTS                                                                                    \
	"      endpoint: '@CPR@/cpr'\n"                                                            \
	"      service_agreement_uuid: 6f1c7c44-1b0a-4c52-9a8e-1d2f0c6b7a01\n"                     \
	"      user_system_uuid: 0c9b1a7e-3d5f-4e21-8b6a-2a7c9e4d5f02\n"                           \
	"      user_uuid: 9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c03\n"

#define V5_OPTS                                                                                    \
	"      endpoint: '@CPR@/cpr/5'\n"                                                          \
	"      version: 5\n"                                                                       \
	"      cvr: '12345678'\n"                                                                  \
	"      sts_url: '@STS@/runtime/api/rest/wstrust/v1/issue'\n"                               \
	"      certificate_p12: '@CA@/client.p12'\n"                                               \
	"      certificate_password_file: '@CA@/client.pass'\n"

static void test_v4_over_mutual_tls_with_the_function_certificate(void)
{
	fixture_t f;

	if (s_start(&f, "cprtls-v4", NULL, NULL,
		    V4_OPTS "      certificate_p12: '@CA@/client.p12'\n"
			    "      certificate_password_file: '@CA@/client.pass'\n",
		    false) == 0)
		s_expect_lookup(&f);
	else
		CU_FAIL("could not start");
	s_finish(&f);
}

static void test_v4_without_a_client_certificate_is_refused(void)
{
	fixture_t f;

	if (s_start(&f, "cprtls-nocert", NULL, NULL, V4_OPTS, false) == 0)
		s_expect_failure(&f, "CERTIFICATE_MISSING", "service answered reject",
				 "mutual TLS with the function certificate");
	else
		CU_FAIL("could not start");
	s_finish(&f);
}

static void test_v4_certificate_from_another_ca_is_refused(void)
{
	fixture_t f;

	if (s_start(&f, "cprtls-stranger", NULL, NULL,
		    V4_OPTS "      certificate: '@CA@/stranger.pem'\n"
			    "      certificate_key: '@CA@/stranger.key'\n",
		    false) == 0)
		s_expect_failure(&f, "CERTIFICATE_UNTRUSTED", "service answered reject",
				 "use the function certificate");
	else
		CU_FAIL("could not start");
	s_finish(&f);
}

static void test_v4_expired_certificate_refused_by_service_and_at_start(void)
{
	fixture_t f;
	char *log;

	/* Given as a plain TLS client certificate, kanal does not judge it: the service does. */
	if (s_start(&f, "cprtls-expired", NULL, NULL,
		    V4_OPTS "      client_cert: '@CA@/expired.pem'\n"
			    "      client_key: '@CA@/expired.key'\n",
		    false) == 0)
		s_expect_failure(&f, "CERTIFICATE_EXPIRED", "service answered reject",
				 "renew the function certificate");
	else
		CU_FAIL("could not start");
	s_finish(&f);
	/* Given as the function certificate, the instance does not start, and says why. */
	CU_ASSERT_NOT_EQUAL(s_start(&f, "cprtls-expired2", NULL, NULL,
				    V4_OPTS "      certificate: '@CA@/expired.pem'\n"
					    "      certificate_key: '@CA@/expired.key'\n",
				    true),
			    0);
	if (f.kd) {
		kd_wait_exit(f.kd, WAIT);
		CU_ASSERT_TRUE(f.kd->pid <= 0 && f.kd->exit_status != 0);
		log = kd_log(f.kd);
		CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "instance 'cpr': ") &&
				       strstr(log, "expired") && strstr(log, "renew it"));
		if (!(log && strstr(log, "renew it")))
			fprintf(stderr, "kanald log:\n%s\n", log ? log : "(none)");
		free(log);
	}
	s_finish(&f);
}

static void test_v5_with_a_token_from_the_sts(void)
{
	fixture_t f;

	if (s_start(&f, "cprtls-v5", NULL, NULL, V5_OPTS, false) == 0) {
		s_expect_lookup(&f);
	} else {
		CU_FAIL("could not start");
	}
	s_finish(&f);
}

static void test_v5_over_the_soap_sts(void)
{
	fixture_t f;

	if (s_start(&f, "cprtls-v5soap", NULL, NULL,
		    V5_OPTS "      sts_soap: true\n"
			    "      sts_soap_url: "
			    "'@STS@/runtime/services/kombittrust/14/certificatemixed'\n",
		    false) == 0)
		s_expect_lookup(&f);
	else
		CU_FAIL("could not start");
	s_finish(&f);
}

static void test_v5_token_not_signed_by_the_sts_is_refused(void)
{
	fixture_t f;

	/* The service trusts another STS (the stranger CA's certificate): our tokens are
	 * foreign to it. kanal asks for a new token once, then rejects saying what to check. */
	if (s_start(&f, "cprtls-foreign", "stranger.pem", NULL, V5_OPTS, false) == 0)
		s_expect_failure(&f, "SECURITY_TOKEN_INVALID", "refused a new STS token",
				 "not signed by the Security Token Service");
	else
		CU_FAIL("could not start");
	s_finish(&f);
}

static void test_v5_expired_token_is_renewed_then_refused(void)
{
	fixture_t f;
	char *log;

	/* The service's clock runs ten hours ahead: every token (8 h) looks expired to it. */
	if (s_start(&f, "cprtls-exptoken", NULL, "token_clock_offset=36000", V5_OPTS, false) == 0) {
		s_expect_failure(&f, "SECURITY_TOKEN_INVALID", "has expired",
				 "check that the service agreement covers entity id");
		log = kd_log(f.kd);
		CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "refused the STS token: asking for a "
							  "new one"));
		free(log);
	} else {
		CU_FAIL("could not start");
	}
	s_finish(&f);
}

static void test_v5_without_a_certificate_does_not_start(void)
{
	fixture_t f;
	char *log;

	CU_ASSERT_NOT_EQUAL(s_start(&f, "cprtls-v5nocert", NULL, NULL,
				    "      endpoint: '@CPR@/cpr/5'\n"
				    "      version: 5\n"
				    "      cvr: '12345678'\n"
				    "      sts_url: '@STS@/runtime/api/rest/wstrust/v1/issue'\n",
				    true),
			    0);
	if (f.kd) {
		kd_wait_exit(f.kd, WAIT);
		log = kd_log(f.kd);
		CU_ASSERT_PTR_NOT_NULL(log &&
				       strstr(log, "version 5 needs the function "
						   "certificate") &&
				       strstr(log, "set certificate_p12"));
		free(log);
	}
	s_finish(&f);
}

TEST_MAIN("cpr_tls", TEST(test_v4_over_mutual_tls_with_the_function_certificate),
	  TEST(test_v4_without_a_client_certificate_is_refused),
	  TEST(test_v4_certificate_from_another_ca_is_refused),
	  TEST(test_v4_expired_certificate_refused_by_service_and_at_start),
	  TEST(test_v5_with_a_token_from_the_sts), TEST(test_v5_over_the_soap_sts),
	  TEST(test_v5_token_not_signed_by_the_sts_is_refused),
	  TEST(test_v5_expired_token_is_renewed_then_refused),
	  TEST(test_v5_without_a_certificate_does_not_start))
