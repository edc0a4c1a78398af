/*
 * tests/integration/test_payslips.c — the payslip flow (issue 16 §4) end to end, with no C:
 * THE SHIPPED routes/payslips.yaml and the payroll instances of THE SHIPPED conf/kanald.yaml
 * (payroll-drop: filedrop; payslip-results: fileout) in the real kanald, against the
 * simulated national services as the demo runs them — CPR lookup and Digital Post over
 * mutual TLS with a test CA, Digital Post's access tokens from the STS. The sample export
 * of examples/payroll (a CSV in ISO-8859-1 and its PDFs, invented employees of the
 * simulators' population) is dropped with its .done marker: four employees with a mailbox
 * get their payslip by Digital Post with the PDF, the exempt one is refused (no paper), the
 * results file holds a status per payslip, the export and its PDFs end in done/, and no
 * clear CPR number reaches the results, kanald's log or the test output. The shipped route
 * tests (routes/tests/payslips.yaml) run here too, through `kanalctl test`.
 *
 * With receipts, as the demo runs them: the simulator pushes each payslip's PKO_PostStatus to
 * the connector's callback while the connector is sending the export's next payslip; each is
 * taken at the first push, and every payslip has "accepted" and then its final "sent" in the
 * results file within seconds (it took over 20 s when the two waited for each other).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include <kanal/kanal.h>

#include "kanald.h"
#include "test.h"
#include "testca.h"
#include "upstream.h"

#define WAIT 20000
#define EXPORT "loen-2026-11.csv"

static const char *const s_pdfs[] = { "loenseddel-1001-2026-11.pdf", "loenseddel-1002-2026-11.pdf",
				      "loenseddel-1003-2026-11.pdf", "loenseddel-1004-2026-11.pdf",
				      "loenseddel-1005-2026-11.pdf" };

/* True when text holds a clear CPR number (said without the number). */
static bool s_leaks(const char *what, const char *text)
{
	size_t off, len;

	if (text && kanal_cpr_find(text, strlen(text), &off, &len)) {
		fprintf(stderr, "clear CPR number in %s at offset %zu\n", what, off);
		return true;
	}
	return false;
}

/* Copies examples/payroll/<name> into dir. */
static bool s_copy(const char *dir, const char *name)
{
	char src[PATH_MAX], *path;
	size_t len = 0;
	char *data;
	FILE *f;
	bool ok;

	snprintf(src, sizeof src, "examples/payroll/%s", name);
	if (!(data = test_read_file(src, &len)))
		return false;
	if (asprintf(&path, "%s/%s", dir, name) < 0) {
		free(data);
		return false;
	}
	ok = (f = fopen(path, "w")) && fwrite(data, 1, len, f) == len;
	if (f)
		ok = fclose(f) == 0 && ok;
	free(path);
	free(data);
	return ok;
}

/* The payroll instances as conf/kanald.yaml ships them (from its "# Payslips" comment to
 * the end), their var/demo folders moved into the test's folder. New, or NULL. */
static char *s_shipped_payroll_instances(void)
{
	char *text = test_read_file("conf/kanald.yaml", NULL), *from, *out = NULL;
	size_t n = 0;

	if (!text || !(from = strstr(text, "  # Payslips (routes/payslips.yaml)"))) {
		free(text);
		return NULL;
	}
	out = calloc(1, strlen(from) * 2 + 1);
	for (const char *p = from; out && *p;) {
		if (!strncmp(p, "../var/demo/", 12)) {
			n += (size_t)sprintf(out + n, "@DIR@/");
			p += 12;
		} else {
			out[n++] = *p++;
		}
	}
	free(text);
	return out;
}

/* The results file's name in dir (the month's CSV), new, or NULL. */
static char *s_results_file(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char *name = NULL;

	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "loenseddel-status-", 18) && !name &&
		    asprintf(&name, "%s/%s", dir, e->d_name) < 0)
			name = NULL;
	if (d)
		closedir(d);
	return name;
}

static void test_payslips_by_digital_post(void)
{
	upstream_t *sts = NULL, *cpr = NULL, *dp = NULL;
	char *ca = test_tmpdir("payslips-ca"), *payroll = NULL, *conf = NULL, *inst = NULL;
	char *routes = test_read_file("routes/payslips.yaml", NULL), *results = NULL;
	char sts_arg[160], sts_cert[PATH_MAX + 16], *text = NULL, *log = NULL, *body = NULL;
	char callback[64], push_to[160];
	json_t *box = NULL;
	kd_t *kd = NULL;
	int64_t dropped_ms;

	REQUIRE(ca && routes && testca_make(ca) == 0);
	snprintf(sts_cert, sizeof sts_cert, "sts_cert=%s/server.pem", ca);
	REQUIRE((sts = upstream_start_tls("sts", ca, NULL)));
	snprintf(sts_arg, sizeof sts_arg, "sts=%s", sts->url);
	REQUIRE((cpr = upstream_start_tls("cpr", ca,
					  (const char *const[]){ "--set", sts_cert, NULL })));
	snprintf(callback, sizeof callback, "127.0.0.1:%d", test_free_port());
	snprintf(push_to, sizeof push_to,
		 "callback=http://%s/beskedfordeler/PostStatusBeskedModtag", callback);
	REQUIRE((dp = upstream_start_tls(
			 "digitalpost", ca,
			 (const char *const[]){ "--set", sts_arg, "--set", push_to, NULL })));
	REQUIRE((inst = s_shipped_payroll_instances()));
	REQUIRE(asprintf(&payroll,
			 "  - name: cpr\n    plugin: cpr\n    options:\n"
			 "      endpoint: %s/cpr\n      ca_file: %s/ca.pem\n"
			 "      certificate_p12: %s/client.p12\n"
			 "      certificate_password_file: %s/client.pass\n"
			 "      service_agreement_uuid: 6f1c7c44-1b0a-4c52-9a8e-1d2f0c6b7a01\n"
			 "      user_system_uuid: 0c9b1a7e-3d5f-4e21-8b6a-2a7c9e4d5f02\n"
			 "      user_uuid: 9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c03\n"
			 "      audit_log: '@DIR@/cpr-audit.log'\n"
			 "  - name: digitalpost\n    plugin: digitalpost\n    options:\n"
			 "      base_url: %s\n      sender_cvr: '55133018'\n"
			 "      sender_label: Kanalby Kommune\n      ca_file: %s/ca.pem\n"
			 "      certificate_p12: %s/client.p12\n"
			 "      certificate_password_file: %s/client.pass\n"
			 "      sts_url: %s/runtime/api/rest/wstrust/v1/issue\n"
			 "      accesstoken_url: %s/service/AccessTokenService_1/token\n"
			 "      pseudonym_key: '@DIR@/pseudonym.key'\n"
			 "      callback_listen: %s\n%s",
			 cpr->url, ca, ca, ca, dp->url, ca, ca, ca, sts->url, sts->url, callback,
			 inst) >= 0);
	conf = kd_config(payroll, NULL);
	REQUIRE((kd = kd_prepare("payslips", conf, routes)));
	free(test_write_file(kd->dir, "pseudonym.key", "a-test-key-for-pseudonyms-0123456789\n"));
	chmod(kd_path(kd, "pseudonym.key"), 0600);
	mkdir(kd_path(kd, "payroll"), 0700);
	mkdir(kd_path(kd, "payroll/results"), 0700);
	REQUIRE(kd_launch(kd) == 0);

	/* The payroll system's drop: the PDFs, the export, then the marker. */
	for (size_t i = 0; i < sizeof s_pdfs / sizeof *s_pdfs; i++)
		REQUIRE(s_copy(kd_path(kd, "payroll"), s_pdfs[i]));
	REQUIRE(s_copy(kd_path(kd, "payroll"), EXPORT));
	free(test_write_file(kd_path(kd, "payroll"), EXPORT ".done", ""));
	dropped_ms = kanal_now_ms();

	/* A line per status in the results file: four accepted and then sent by their receipt,
	 * the exempt one failed. */
	for (int waited = 0; waited < WAIT && !results; waited += 100) {
		results = s_results_file(kd_path(kd, "payroll/results"));
		if (!results)
			test_sleep_ms(100);
	}
	REQUIRE(results);
	kd_wait_lines(results, 10, WAIT);
	/* Well within one 5 s timeout: no push waited for the connector's next request. */
	CU_ASSERT(kanal_now_ms() - dropped_ms < 5000);
	if (kanal_now_ms() - dropped_ms >= 5000)
		fprintf(stderr, "the receipts took %lld ms\n",
			(long long)(kanal_now_ms() - dropped_ms));
	test_sleep_ms(500);
	text = test_read_file(results, NULL);
	REQUIRE(text);
	CU_ASSERT(!strncmp(
		text,
		"data.letter;data.status;data.final;data.channel;data.reason;data.transaction\r\n",
		78));
	CU_ASSERT_EQUAL(kd_lines(results), 10);
	for (int nr = 1001; nr <= 1004; nr++) {
		char want[128];
		snprintf(want, sizeof want, "loen-2026-11-%d;accepted;;digital;", nr);
		CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
		snprintf(want, sizeof want,
			 "loen-2026-11-%d;sent;true;digital;PKO_PostStatus Afleveret Digital Post",
			 nr);
		CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
	}
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "loen-2026-11-1005;failed;;digital;\"not-enrolled: "));
	CU_ASSERT(!s_leaks("the results file", text));

	/* Digital Post holds the four payslips, each with its PDF, and refused none as
	 * breaking the contract. */
	REQUIRE(upstream_http(dp, "GET", "/digitalpost/v1/messages", NULL, NULL, &body) == 200);
	box = json_loads(body, 0, NULL);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(box, "delivered")), 4);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(box, "invalid")), 0);
	/* Each receipt was taken the first time it was pushed. */
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(box, "statuses_pushed")), 4);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(box, "statuses_push_failures")), 0);
	for (size_t i = 0; i < json_array_size(json_object_get(box, "messages")); i++) {
		json_t *m = json_array_get(json_object_get(box, "messages"), i);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(m, "label")),
				       "L\xc3\xb8nseddel 2026-11");
		CU_ASSERT(!strncmp(json_string_value(json_object_get(m, "filename")), "loenseddel-",
				   11));
	}

	/* The export and its PDFs are in done/, the marker gone; nothing went to paper. */
	CU_ASSERT(kd_wait_file(kd_path(kd, "payroll/done/" EXPORT), WAIT));
	for (size_t i = 0; i < sizeof s_pdfs / sizeof *s_pdfs; i++) {
		char rel[128];
		snprintf(rel, sizeof rel, "payroll/done/%s", s_pdfs[i]);
		CU_ASSERT(access(kd_path(kd, rel), F_OK) == 0);
	}
	CU_ASSERT(access(kd_path(kd, "payroll/" EXPORT ".done"), F_OK) != 0);
	/* A clean stop: kanald unloads the plugins (a thread of one left behind would crash
	 * it). */
	CU_ASSERT(kd_stop(kd, SIGTERM, WAIT) == 0);
	log = kd_log(kd);
	CU_ASSERT(log && !s_leaks("kanald's log", log));
done:
	json_decref(box);
	free(body);
	free(log);
	free(text);
	free(results);
	free(conf);
	free(payroll);
	free(inst);
	free(routes);
	kd_destroy(&kd);
	upstream_stop(&dp);
	upstream_stop(&cpr);
	upstream_stop(&sts);
	if (ca)
		test_rmdir_r(ca);
	free(ca);
}

/* routes/tests/payslips.yaml passes with `kanalctl test` (make test runs it here). */
static void test_shipped_route_tests(void)
{
	char cmd[PATH_MAX * 2], out[8192] = "";
	size_t n = 0;
	FILE *p;
	int status;

	snprintf(cmd, sizeof cmd, "%s test -c conf/kanald.yaml routes/tests/payslips.yaml 2>&1",
		 test_path("bin/kanalctl"));
	p = popen(cmd, "r");
	REQUIRE(p);
	n = fread(out, 1, sizeof out - 1, p);
	out[n] = '\0';
	status = pclose(p);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* Every case of the file ran and passed: as many as it names. */
	{
		char *yaml = test_read_file("routes/tests/payslips.yaml", NULL), want[64];
		int cases = 0;
		for (char *q = yaml; q && (q = strstr(q, "\n  - name: ")); q++)
			cases++;
		free(yaml);
		CU_ASSERT(cases >= 6);
		snprintf(want, sizeof want, "%d passed, 0 failed", cases);
		CU_ASSERT_PTR_NOT_NULL(strstr(out, want));
	}
	CU_ASSERT(!s_leaks("kanalctl test's output", out));
done:;
}

TEST_MAIN("payslips", TEST(test_payslips_by_digital_post), TEST(test_shipped_route_tests))
