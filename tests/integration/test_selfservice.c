/*
 * tests/integration/test_selfservice.c — self-service to the case system, with a receipt
 * (issue 15 §7), end to end: the real kanald with the shipped routes
 * selfservice-to-case-system, selfservice-receipt-to-citizen and
 * selfservice-status-to-platform (routes/municipal.yaml); the SF2900 simulator over mutual
 * TLS, which validates every request against the official schema and pushes the case
 * system's receipt to the sf2900 connector's callback; the CPR register and Digital Post
 * simulators; and a webhook receiver standing in for the self-service platform. A
 * submission is filed (nobody retypes it), the citizen's receipt promises the date the
 * route's handling time gives, and the platform hears "received" and then exactly one final
 * status — accepted; rejected when the case system says AFVIST; failed when no case system
 * takes the form's KLE subject or the form is invalid (nothing then reaches the service).
 * A receipt that arrives while kanald is down is not lost: the connector keeps the
 * submissions it awaits in its state folder. The callback answers at once while the
 * connector waits for a slow answer, and a receipt that overtakes the answer recording its
 * submission is applied once it is recorded.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <kanal/harness.h>
#include <kanal/kanal.h>

#include "kanald.h"
#include "http_client.h"
#include "shipped.h"
#include "test.h"
#include "testca.h"
#include "upstream.h"
#include "webhook_rx.h"

#define WAIT 15000 /* ms: the bound of every wait */
#define MAJA "1111903128"

typedef struct fixture {
	char *dir;
	upstream_t *cpr, *dp, *sf;
	webhook_rx_t *platform;
	kd_t *kd;
	void *sub;
	char callback[128]; /* the connector's callback URL */
} fixture_t;

static void s_teardown(fixture_t *f)
{
	if (f->sub)
		kd_unsubscribe(&f->sub);
	if (f->kd) {
		char *log = kd_log(f->kd);
		CU_ASSERT(!kd_has_clear_cpr(log));
		free(log);
		if (f->kd->pid > 0)
			CU_ASSERT_EQUAL(kd_stop(f->kd, SIGTERM, WAIT), 0);
		kd_destroy(&f->kd);
	}
	upstream_stop(&f->sf);
	upstream_stop(&f->dp);
	upstream_stop(&f->cpr);
	webhook_rx_destroy(&f->platform);
	if (f->dir)
		test_rmdir_r(f->dir);
	free(f->dir);
}

/* The shipped self-service routes, all three. */
static char *s_routes(void)
{
	char *a = shipped_route("routes/municipal.yaml", "selfservice-to-case-system");
	char *b = shipped_route("routes/municipal.yaml", "selfservice-receipt-to-citizen");
	char *c = shipped_route("routes/municipal.yaml", "selfservice-status-to-platform");
	char *out = NULL;

	if (a && b && c && asprintf(&out, "routes:\n%s\n%s\n%s\n", a, b, c) < 0)
		out = NULL;
	free(a);
	free(b);
	free(c);
	return out;
}

/* Starts the simulators and kanald; sim_extra (NULL or one "NAME=VALUE") is one more
 * setting of the SF2900 simulator. */
static bool s_setup(fixture_t *f, const char *tag, const char *sim_extra)
{
	char sts_cert[PATH_MAX + 16], callback[128], listen[64], *instances = NULL, *conf;
	char *routes = s_routes(), *key;

	memset(f, 0, sizeof *f);
	snprintf(listen, sizeof listen, "127.0.0.1:%d", test_free_port());
	snprintf(callback, sizeof callback, "callback=http://%s/sf2900/kvittering", listen);
	snprintf(f->callback, sizeof f->callback, "%s", callback + strlen("callback="));
	if (!routes || !(f->dir = test_tmpdir("selfservice")) || testca_make(f->dir) != 0)
		goto fail;
	snprintf(sts_cert, sizeof sts_cert, "sts_cert=%s/server.pem", f->dir);
	f->cpr =
		upstream_start_tls("cpr", f->dir, (const char *const[]){ "--set", sts_cert, NULL });
	f->sf = upstream_start_tls(
		"sf2900", f->dir,
		(const char *const[]){ "--set", callback, "--set", "cvr=29189706",
				       sim_extra ? "--set" : NULL, sim_extra, NULL });
	f->dp = upstream_start("digitalpost", NULL);
	f->platform = webhook_rx_new();
	if (!f->cpr || !f->sf || !f->dp || !f->platform)
		goto fail;
	if (asprintf(
		    &instances,
		    "  - name: cpr\n    plugin: cpr\n    options:\n"
		    "      endpoint: '%s/cpr'\n"
		    "      ca_file: '%s/ca.pem'\n"
		    "      certificate_p12: '%s/client.p12'\n"
		    "      certificate_password_file: '%s/client.pass'\n"
		    "      service_agreement_uuid: 6f1c7c44-1b0a-4c52-9a8e-1d2f0c6b7a01\n"
		    "      user_system_uuid: 0c9b1a7e-3d5f-4e21-8b6a-2a7c9e4d5f02\n"
		    "      user_uuid: 9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c03\n"
		    "      audit_log: '%s/audit.log'\n"
		    "  - name: sf2900\n    plugin: sf2900\n    options:\n"
		    "      endpoint: '%s/service/SP/Distribution/3'\n"
		    "      cvr: '29189706'\n"
		    "      ca_file: '%s/ca.pem'\n"
		    "      certificate_p12: '%s/client.p12'\n"
		    "      certificate_password_file: '%s/client.pass'\n"
		    "      callback_listen: '%s'\n"
		    "  - name: digitalpost\n    plugin: digitalpost\n"
		    "    options: { base_url: '%s', sender_cvr: '29189706', "
		    "sender_label: 'Kanalby Kommune', pseudonym_key: '@DIR@/pseudonym.key' }\n"
		    "  - name: letter\n    plugin: sink\n    options: { path: '@DIR@/paper.jsonl' "
		    "}\n"
		    "  - name: selfservice-platform\n    plugin: http\n    options: { url: '%s' }\n"
		    "  - name: platform-in\n    plugin: http\n"
		    "    options: { listen: '127.0.0.1:0', port_file: '@DIR@/in.port' }\n",
		    f->cpr->url, f->dir, f->dir, f->dir, f->dir, f->sf->url, f->dir, f->dir, f->dir,
		    listen, f->dp->url, webhook_rx_url(f->platform)) < 0)
		goto fail;
	conf = kd_config(instances, NULL);
	f->kd = kd_prepare(tag, conf, routes);
	free(conf);
	key = test_write_file(f->kd->dir, "pseudonym.key", "a-test-key-of-32-bytes-0123456789\n");
	chmod(key, 0600);
	free(key);
	if (kd_launch(f->kd) != 0) {
		char *log = kd_log(f->kd), *safe = log ? kanal_cpr_redact(log, strlen(log)) : NULL;
		fprintf(stderr, "kanald did not start:\n%s\n", safe ? safe : "");
		kanal_free(safe);
		free(log);
		goto fail;
	}
	f->sub = kd_subscribe(f->kd, "");
	free(instances);
	free(routes);
	return true;
fail:
	free(instances);
	free(routes);
	s_teardown(f);
	return false;
}

/* A submitted application for a daycare place, with one attached document (kle NULL: the
 * form names no KLE subject). */
static void s_submit(fixture_t *f, const char *id, const char *kle)
{
	char *json, kle_member[64] = "";

	if (kle)
		snprintf(kle_member, sizeof kle_member, "\"kle\":\"%s\",", kle);
	CU_ASSERT_FATAL(
		asprintf(&json,
			 "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"selvbetjening\","
			 "\"type\":\"selfservice.form.submitted\","
			 "\"time\":\"2026-03-06T09:15:00+01:00\",\"data\":{"
			 "\"cpr\":\"" MAJA "\","
			 "\"form\":{\"type\":\"dagtilbud:pladsansoegning:1\","
			 "\"title\":\"Ansøgning om plads i dagtilbud\",%s"
			 "\"facet\":\"G01\",\"fields\":{\"barn\":\"Noah\",\"oensket_start\":"
			 "\"2026-08-01\",\"institution\":\"Solsikken\",\"timer\":40}},"
			 "\"attachments\":[{\"filename\":\"Lægeerklæring.pdf\","
			 "\"mediaType\":\"application/pdf\",\"content\":\"JVBERi0xLjQK\"}],"
			 "\"sender\":{\"label\":\"Pladsanvisningen, Kanalby Kommune\","
			 "\"department\":\"boern-unge\"}}}",
			 id, kle_member) > 0);
	CU_ASSERT(kd_send_event(f->kd, json, "accepted", WAIT, NULL));
	free(json);
}

/* The simulator's /sf2900/v1/objects (new reference), or NULL. */
static json_t *s_filed(fixture_t *f)
{
	char *body = NULL;
	json_t *j = NULL;

	if (upstream_http(f->sf, "GET", "/sf2900/v1/objects", NULL, NULL, &body) == 200)
		j = json_loads(body, 0, NULL);
	free(body);
	return j;
}

/* Waits until the platform has received n statuses; returns them (new reference). */
static json_t *s_statuses(fixture_t *f, size_t n)
{
	json_t *all = NULL;

	for (int64_t end = test_now_ms() + WAIT; test_now_ms() < end; test_sleep_ms(50)) {
		json_decref(all);
		all = webhook_rx_bodies(f->platform);
		if (json_array_size(all) >= n)
			break;
	}
	return all;
}

/* The statuses of one submission, as "status/final" words in arrival order. */
static void s_sequence(json_t *all, const char *submission, char *out, size_t size)
{
	size_t i;
	json_t *ev;

	out[0] = '\0';
	json_array_foreach(all, i, ev)
	{
		json_t *d = json_object_get(ev, "data");
		size_t len = strlen(out);
		if (strcmp(json_string_value(json_object_get(d, "submission")) ?: "", submission))
			continue;
		snprintf(out + len, size - len, "%s%s%s", len ? " " : "",
			 json_string_value(json_object_get(d, "status")) ?: "?",
			 json_is_true(json_object_get(d, "final")) ? "/final" : "");
	}
}

static void test_submission_is_filed_receipted_and_reported_back(void)
{
	fixture_t f;
	json_t *filed, *mail, *all, *o;
	char seq[256], *xml = NULL, expect_b64[1024];
	const char *text = "Vi har modtaget din ansøgning: Ansøgning om plads i dagtilbud.\n\n"
			   "Den blev modtaget den 06.03.2026 og er sendt til behandling.\n"
			   "Du kan forvente svar senest den 08.04.2026.\n\n"
			   "Venlig hilsen\nPladsanvisningen, Kanalby Kommune\n";

	CU_ASSERT_FATAL(s_setup(&f, "selfservice", NULL));
	s_submit(&f, "ans-1", "28.01.00");

	/* The platform hears "received" (Fordelingskomponenten took it), then the case
	 * system's receipt: accepted, once, final. */
	all = s_statuses(&f, 2);
	s_sequence(all, "ans-1", seq, sizeof seq);
	CU_ASSERT_STRING_EQUAL(seq, "received accepted/final");
	{
		json_t *last = json_array_get(all, json_array_size(all) - 1);
		const char *reason =
			json_string_value(json_object_get(json_object_get(last, "data"), "reason"));
		CU_ASSERT(reason && strstr(reason, "ACCEPTERET") &&
			  strstr(reason, "SAG-2026-0001"));
		CU_ASSERT_STRING_EQUAL(
			json_string_value(json_object_get(last, "causationid")) ?: "", "ans-1");
		char *dump = json_dumps(all, 0);
		CU_ASSERT(!kd_has_clear_cpr(dump));
		free(dump);
	}
	json_decref(all);

	/* Filed in the case system through SF2900, the form as the citizen sent it; no request
	 * broke the contract. */
	filed = s_filed(&f);
	CU_ASSERT_PTR_NOT_NULL_FATAL(filed);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(filed, "refused")), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(filed, "filed")), 1);
	o = json_array_get(json_object_get(filed, "objects"), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "title")) ?: "",
			       "Ansøgning om plads i dagtilbud");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "kle")) ?: "", "28.01.00");
	CU_ASSERT(json_is_true(json_object_get(o, "receipt_sent")));
	/* The attached document went along, whole ("%PDF-1.4\n"). */
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(o, "attachments")), 1);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(o, "attachment_bytes")), 9);
	json_decref(filed);

	/* The receipt reached the citizen by Digital Post, with the promised date. */
	for (int64_t end = test_now_ms() + WAIT; test_now_ms() < end; test_sleep_ms(50)) {
		char *body = NULL;
		mail = upstream_http(f.dp, "GET", "/digitalpost/v1/messages", NULL, NULL, &body) ==
				       200
			       ? json_loads(body, 0, NULL)
			       : NULL;
		free(body);
		if (json_array_size(json_object_get(mail, "messages")) >= 1)
			break;
		json_decref(mail);
		mail = NULL;
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(mail);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(mail, "invalid")), 0);
	o = json_array_get(json_object_get(mail, "messages"), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "label")) ?: "",
			       "Kvittering: Ansøgning om plads i dagtilbud");
	{
		char path[200];
		snprintf(path, sizeof path, "/digitalpost/v1/messages/%s",
			 json_string_value(json_object_get(o, "transaction")) ?: "");
		CU_ASSERT_EQUAL(upstream_http(f.dp, "GET", path, NULL, NULL, &xml), 200);
	}
	EVP_EncodeBlock((unsigned char *)expect_b64, (const unsigned char *)text,
			(int)strlen(text));
	CU_ASSERT_PTR_NOT_NULL(xml ? strstr(xml, expect_b64) : NULL);
	free(xml);
	json_decref(mail);
	s_teardown(&f);
}

static void test_no_case_system_for_the_subject_fails_once_and_says_why(void)
{
	fixture_t f;
	json_t *all, *filed, *last;
	char seq[256], *p;

	CU_ASSERT_FATAL(s_setup(&f, "selfservice-nokle", NULL));
	s_submit(&f, "ans-2", "99.99.99");
	p = kd_expect(f.sub, "dead selfservice.form.submitted", "\"ans-2\"", WAIT);
	CU_ASSERT(p && strstr(p, "Ingen modtager for KLE-emne"));
	free(p);
	/* The platform hears one final "failed" with the component's reason. */
	all = s_statuses(&f, 1);
	s_sequence(all, "ans-2", seq, sizeof seq);
	CU_ASSERT_STRING_EQUAL(seq, "failed/final");
	last = json_array_get(all, 0);
	p = (char *)json_string_value(json_object_get(json_object_get(last, "data"), "reason"));
	CU_ASSERT(p && strstr(p, "FEJL") && strstr(p, "KANAL-SIM-INGEN-MODTAGER"));
	json_decref(all);
	/* Refused by the service's rules, not for breaking the contract. */
	filed = s_filed(&f);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(filed, "refused")), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(filed, "undeliverable")), 1);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(filed, "filed")), 0);
	json_decref(filed);
	s_teardown(&f);
}

static void test_case_system_rejection_reaches_the_platform(void)
{
	fixture_t f;
	json_t *all;
	char seq[256];

	CU_ASSERT_FATAL(s_setup(&f, "selfservice-afvist", "outcome=AFVIST"));
	s_submit(&f, "ans-3", "28.01.00");
	all = s_statuses(&f, 2);
	s_sequence(all, "ans-3", seq, sizeof seq);
	CU_ASSERT_STRING_EQUAL(seq, "received rejected/final");
	json_decref(all);
	s_teardown(&f);
}

/* The case system answers while kanald is down: the connector still knows the submission
 * after the restart (its state file), and the platform hears the outcome once. */
static void test_receipt_after_a_restart_is_not_lost(void)
{
	fixture_t f;
	json_t *all;
	char seq[256];

	CU_ASSERT_FATAL(s_setup(&f, "selfservice-restart", "callback_delay_ms=2500"));
	s_submit(&f, "ans-4", "28.01.00");
	all = s_statuses(&f, 1);
	s_sequence(all, "ans-4", seq, sizeof seq);
	CU_ASSERT_STRING_EQUAL(seq, "received");
	json_decref(all);
	kd_unsubscribe(&f.sub);
	CU_ASSERT_EQUAL(kd_stop(f.kd, SIGTERM, WAIT), 0);
	test_sleep_ms(3000); /* the receipt is due now, and cannot be pushed */
	CU_ASSERT_EQUAL_FATAL(kd_restart(f.kd), 0);
	f.sub = kd_subscribe(f.kd, "");
	all = s_statuses(&f, 2);
	s_sequence(all, "ans-4", seq, sizeof seq);
	CU_ASSERT_STRING_EQUAL(seq, "received accepted/final");
	json_decref(all);
	s_teardown(&f);
}

/* The connector's AnvenderTransaktionsID for a submission from source "selvbetjening": the
 * name-based UUID of plugins/common/kc_soap.c's kc_uuid_name, so the test can answer for a
 * submission before the connector has heard back about it. */
static void s_anvender(const char *id, char out[37])
{
	static const char space[] = "sf2900", source[] = "selvbetjening";
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	CU_ASSERT_FATAL(md && EVP_DigestInit_ex(md, EVP_sha1(), NULL) &&
			EVP_DigestUpdate(md, space, sizeof space) &&
			EVP_DigestUpdate(md, source, sizeof source) &&
			EVP_DigestUpdate(md, id, strlen(id) + 1) &&
			EVP_DigestFinal_ex(md, d, &dlen) && dlen >= 16);
	EVP_MD_CTX_free(md);
	d[6] = (unsigned char)((d[6] & 0x0F) | 0x40);
	d[8] = (unsigned char)((d[8] & 0x3F) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12],
		 d[13], d[14], d[15]);
}

/* POSTs the case system's ACCEPTERET for anvender to the connector's callback, as
 * Fordelingskomponenten does; returns the HTTP status and sets *ms to how long the answer
 * took. */
static long s_post_receipt(fixture_t *f, const char *anvender, int64_t *ms)
{
	const char *headers[] = { "Content-Type: text/xml; charset=utf-8", "SOAPAction: \"\"",
				  NULL };
	char *xml = NULL;
	http_client_t *c = http_client_new();
	http_answer_t a = { 0 };
	int64_t t0;
	long status;

	CU_ASSERT_FATAL(
		asprintf(&xml,
			 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope "
			 "xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>"
			 "<v2:FordelingskvitteringModtagAnvenderRequest xmlns:v2=\"http://"
			 "serviceplatformen.dk/xml/wsdl/soap11/DistributionService/2/types\">"
			 "<v2:Forretningskvittering><v2:ForretningsValideringsKode>ACCEPTERET"
			 "</v2:ForretningsValideringsKode><v2:Kvitteringstype>Forretning"
			 "</v2:Kvitteringstype><v2:Begrundelse>Oprettet som dokument på sag "
			 "SAG-TEST</v2:Begrundelse></v2:Forretningskvittering>"
			 "<v2:DistributionContext><v2:AnvenderTransaktionsID>%s"
			 "</v2:AnvenderTransaktionsID></v2:DistributionContext>"
			 "</v2:FordelingskvitteringModtagAnvenderRequest></soap:Body>"
			 "</soap:Envelope>\n",
			 anvender) > 0 &&
		c);
	t0 = test_now_ms();
	http_request(c,
		     &(http_request_t){ .method = "POST",
					.url = f->callback,
					.headers = headers,
					.body = xml,
					.timeout_ms = WAIT },
		     &a);
	*ms = test_now_ms() - t0;
	status = a.status;
	free(xml);
	http_client_destroy(&c);
	http_answer_clear(&a);
	return status;
}

/* Fordelingskomponenten calls back whenever it likes: while the connector waits for a slow
 * FordelingsobjektAfsend answer, the callback answers at once — for a submission it awaits,
 * and for the one whose answer has not come yet, which is applied once that answer is
 * recorded — and the platform hears every final status, once. */
static void test_callback_answers_while_the_connector_waits_for_the_service(void)
{
	fixture_t f;
	json_t *all;
	char seq[256], first[37], second[37], *body = NULL;
	int64_t ms;

	/* The simulator's own receipts are not due during the test: the test pushes them. */
	CU_ASSERT_FATAL(s_setup(&f, "selfservice-slow", "callback_delay_ms=600000"));
	s_submit(&f, "ans-7", "28.01.00");
	all = s_statuses(&f, 1);
	s_sequence(all, "ans-7", seq, sizeof seq);
	CU_ASSERT_STRING_EQUAL(seq, "received");
	json_decref(all);
	s_anvender("ans-7", first);
	s_anvender("ans-8", second);

	/* The next FordelingsobjektAfsend is answered after 4 s. */
	CU_ASSERT_EQUAL(upstream_http(f.sf, "POST", "/_sim/fault",
				      "{\"mode\":\"slow\",\"count\":1,\"delay_ms\":4000}",
				      "application/json", NULL),
			200);
	s_submit(&f, "ans-8", "28.01.00");
	for (int64_t end = test_now_ms() + WAIT; test_now_ms() < end; test_sleep_ms(20)) {
		json_t *st = NULL;
		bool waiting;
		free(body);
		body = NULL;
		upstream_http(f.sf, "GET", "/_sim/stats", NULL, NULL, &body);
		st = body ? json_loads(body, 0, NULL) : NULL;
		waiting = json_integer_value(json_object_get(st, "faulted")) >= 1;
		json_decref(st);
		if (waiting)
			break;
	}
	free(body);
	test_sleep_ms(200); /* the connector is in its request now */

	CU_ASSERT_EQUAL(s_post_receipt(&f, first, &ms), 200);
	CU_ASSERT(ms < 1500);
	if (ms >= 1500)
		fprintf(stderr, "the callback answered after %lld ms\n", (long long)ms);
	/* Before the answer that accepted ans-8 has reached the connector. */
	CU_ASSERT_EQUAL(s_post_receipt(&f, second, &ms), 200);
	CU_ASSERT(ms < 1500);

	all = s_statuses(&f, 4);
	s_sequence(all, "ans-7", seq, sizeof seq);
	CU_ASSERT_STRING_EQUAL(seq, "received accepted/final");
	s_sequence(all, "ans-8", seq, sizeof seq);
	CU_ASSERT_STRING_EQUAL(seq, "received accepted/final");
	json_decref(all);
	test_sleep_ms(500); /* nothing more comes */
	all = webhook_rx_bodies(f.platform);
	CU_ASSERT_EQUAL(json_array_size(all), 4);
	json_decref(all);
	s_teardown(&f);
}

static void test_invalid_submission_is_refused_naming_the_field(void)
{
	fixture_t f;
	json_t *all, *filed;
	char seq[256], *p;

	CU_ASSERT_FATAL(s_setup(&f, "selfservice-invalid", NULL));
	s_submit(&f, "ans-5", NULL);
	p = kd_expect(f.sub, "dead selfservice.form.submitted", "\"ans-5\"", WAIT);
	CU_ASSERT(p && strstr(p, "invalid submission: data.form.kle"));
	CU_ASSERT(!kd_has_clear_cpr(p));
	free(p);
	all = s_statuses(&f, 1);
	s_sequence(all, "ans-5", seq, sizeof seq);
	CU_ASSERT_STRING_EQUAL(seq, "failed/final");
	json_decref(all);
	/* Nothing went to the service. */
	filed = s_filed(&f);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(filed, "received")), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(filed, "refused")), 0);
	json_decref(filed);
	s_teardown(&f);
}

/* The platform posts the form with the citizen's documents as one multipart request to the
 * http ingress: the documents go into the blob store, and the connector sends them from
 * there inside the form. */
static void test_documents_uploaded_with_the_form_are_filed_with_it(void)
{
	static const char note[] = "%PDF-1.4 the doctor's note, 2 pages";
	const char *headers[] = { "Content-Type: multipart/form-data; boundary=b0undary", NULL };
	char url[128], *body = NULL, *port = NULL, seq[256];
	size_t len = 0;
	http_answer_t a = { 0 };
	json_t *filed, *o, *all;
	fixture_t f;
	FILE *fp;

	CU_ASSERT_FATAL(s_setup(&f, "selfservice-multipart", NULL));
	for (int waited = 0;
	     waited < WAIT && !(port = test_read_file(kd_path(f.kd, "in.port"), NULL));
	     waited += 20)
		test_sleep_ms(20);
	CU_ASSERT_PTR_NOT_NULL_FATAL(port);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/events", atoi(port));
	free(port);
	fp = open_memstream(&body, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
	fprintf(fp, "--b0undary\r\nContent-Disposition: form-data; name=\"event\"\r\n"
		    "Content-Type: application/cloudevents+json\r\n\r\n"
		    "{\"specversion\":\"1.0\",\"id\":\"ans-6\",\"source\":\"selvbetjening\","
		    "\"type\":\"selfservice.form.submitted\",\"data\":{\"cpr\":\"" MAJA "\","
		    "\"form\":{\"type\":\"dagtilbud:pladsansoegning:1\",\"title\":\"Ansøgning "
		    "om plads i dagtilbud\",\"kle\":\"28.01.00\"}}}\r\n");
	fprintf(fp,
		"--b0undary\r\nContent-Disposition: form-data; name=\"attachments\"; "
		"filename=\"note.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%s\r\n"
		"--b0undary--\r\n",
		note);
	fclose(fp);
	http_request(NULL,
		     &(http_request_t){ .method = "POST",
					.url = url,
					.headers = headers,
					.body = body,
					.body_len = len,
					.timeout_ms = WAIT },
		     &a);
	CU_ASSERT_EQUAL(a.status, 202);
	http_answer_clear(&a);
	free(body);
	all = s_statuses(&f, 2);
	s_sequence(all, "ans-6", seq, sizeof seq);
	CU_ASSERT_STRING_EQUAL(seq, "received accepted/final");
	json_decref(all);
	filed = s_filed(&f);
	o = json_array_get(json_object_get(filed, "objects"), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(o, "attachments")), 1);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(o, "attachment_bytes")),
			(json_int_t)strlen(note));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(filed, "refused")), 0);
	json_decref(filed);
	s_teardown(&f);
}

/* What the connector cannot work with is refused at start, naming the option. */
static void test_bad_options_are_refused(void)
{
	static const struct {
		const char *key, *value, *named;
	} cases[] = {
		{ "cvr", "1234567", "cvr" },
		{ "receiving_system", "case-system-1", "receiving_system" },
		{ "endpoint", "ftp://sf2900.example.dk", "endpoint" },
		/* CPR numbers in clear over the network: never. */
		{ "endpoint", "http://sf2900.example.dk/service/SP/Distribution/3", "endpoint" },
		/* The AuthorityContext model is the function certificate. */
		{ "endpoint", "https://exttest.serviceplatformen.dk/service/SP/Distribution/3",
		  "certificate_p12" },
		{ "callback_listen", "7719", "callback_listen" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		kanal_error_t err;
		kanal_harness_t *h;

		kanal_error_clear(&err);
		h = kanal_harness_new(test_path("plugins/sf2900.so"), "sf", &err);
		CU_ASSERT_PTR_NOT_NULL_FATAL(h);
		kanal_harness_option(h, "endpoint", "http://127.0.0.1:9/service/SP/Distribution/3");
		kanal_harness_option(h, "cvr", "29189706");
		kanal_harness_option(h, cases[i].key, cases[i].value);
		CU_ASSERT_NOT_EQUAL(kanal_harness_start(h, &err), 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(err.text, cases[i].named));
		if (!strstr(err.text, cases[i].named))
			fprintf(stderr, "option %s: error '%s'\n", cases[i].key, err.text);
		kanal_harness_destroy(&h);
	}
}

TEST_MAIN("selfservice", TEST(test_submission_is_filed_receipted_and_reported_back),
	  TEST(test_no_case_system_for_the_subject_fails_once_and_says_why),
	  TEST(test_case_system_rejection_reaches_the_platform),
	  TEST(test_receipt_after_a_restart_is_not_lost),
	  TEST(test_callback_answers_while_the_connector_waits_for_the_service),
	  TEST(test_invalid_submission_is_refused_naming_the_field),
	  TEST(test_documents_uploaded_with_the_form_are_filed_with_it),
	  TEST(test_bad_options_are_refused))
