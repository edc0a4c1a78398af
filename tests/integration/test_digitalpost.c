/*
 * tests/integration/test_digitalpost.c — the digitalpost connector against the simulated
 * Digital Post service (kanal-sim-digitalpost): with the real kanald, a route
 * post.letter.send → digitalpost with the physical letter (a sink) as fallback and the
 * status events going to a letter log (another sink); and through the SDK harness for the
 * MeMo it writes (parsed back with libxml2) and the letter checks, case by case.
 *
 * Every kanald test also checks that no clear CPR number reached kanald's log, the event
 * stream, the status events or the simulator's log. The fallback sink is the one place a
 * CPR number belongs: it is the letter itself, handed to the physical channel.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include <kanal/harness.h>
#include <kanal/kanal.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "blob_store.h"
#include "http_client.h"
#include "kanald.h"
#include "test.h"
#include "testca.h"
#include "upstream.h"

#include "../../plugins/common/kc_cert.h"
#include "../../plugins/common/kc_http.h"
#include "../../plugins/common/kc_sts.h"

#define WAIT 15000 /* ms: the bound of every wait (retries with Retry-After: 1 take seconds) */
#define MEMO_NS "https://DigitalPost.dk/MeMo-1"

/* A string assertion that cannot crash on an unexpected answer (a missing field is NULL):
 * on a mismatch it names the line, and the values unless one holds a CPR number. */
#define ASSERT_STR(actual, want) s_str_is((actual), (want), #actual, __LINE__)

static void s_str_is(const char *actual, const char *want, const char *expr, int line)
{
	bool ok = actual && want && !strcmp(actual, want);
	size_t off, len;

	CU_assertImplementation(ok, (unsigned)line, expr, __FILE__, "", CU_FALSE);
	if (ok)
		return;
	if ((actual && kanal_cpr_find(actual, strlen(actual), &off, &len)) ||
	    (want && kanal_cpr_find(want, strlen(want), &off, &len)))
		fprintf(stderr, "line %d: %s differs (values hold a CPR number)\n", line, expr);
	else
		fprintf(stderr, "line %d: %s is '%.200s', want '%.200s'\n", line, expr,
			actual ? actual : "(missing)", want ? want : "(missing)");
}

/* Synthetic people (examples/simulators/population.c). */
#define CPR_MADS "1503851233"  /* enrolled */
#define CPR_SOFIE "2207884566" /* enrolled */
#define CPR_EMMA "0112894178"  /* enrolled */
#define CPR_HANNE "1807794260" /* enrolled */
#define CPR_BENT "0101654001"  /* exempt: no computer */
#define CPR_KAREN "3006409120" /* exempt */
#define CPR_LAURA "1512155010" /* 11 years old */

/* ---- letters ----------------------------------------------------------------------------- */

/* The example letter of tests/data/digitalpost/letter.json with a new id and recipient. */
static json_t *s_letter(const char *id, const char *cpr)
{
	json_error_t jerr;
	json_t *e = json_load_file("tests/data/digitalpost/letter.json", 0, &jerr);

	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	json_object_set_new(e, "id", json_string(id));
	json_object_set_new(json_object_get(e, "data"), "recipient_cpr", json_string(cpr));
	return e;
}

/* Serialises and releases e. */
static char *s_text(json_t *e)
{
	char *text = json_dumps(e, JSON_COMPACT);
	json_decref(e);
	return text;
}

static kanal_msg_t *s_msg(json_t *e)
{
	char *text = s_text(e);
	kanal_msg_t *m = NULL;

	CU_ASSERT_EQUAL_FATAL(kanal_msg_parse(text, strlen(text), 0, &m, NULL), 0);
	free(text);
	return m;
}

/* Sets data.<a>.<b> (b NULL: data.<a>; a may be a dotted path) to the string v. */
static void s_set(json_t *e, const char *a, const char *b, const char *v)
{
	json_t *data = json_object_get(e, "data");
	char path[128], *save = NULL, *name, *next;

	snprintf(path, sizeof path, "%s", a);
	name = strtok_r(path, ".", &save);
	for (; name && (next = strtok_r(NULL, ".", &save)); name = next) {
		if (!json_is_object(json_object_get(data, name)))
			json_object_set_new(data, name, json_object());
		data = json_object_get(data, name);
	}
	if (b) {
		if (!json_is_object(json_object_get(data, name)))
			json_object_set_new(data, name, json_object());
		json_object_set_new(json_object_get(data, name), b, json_string(v));
	} else
		json_object_set_new(data, name, json_string(v));
}

/* ---- the simulator's mailbox --------------------------------------------------------------- */

/* GET /digitalpost/v1/messages as JSON (new reference), or NULL. */
static json_t *s_mailbox(upstream_t *up, const char *token)
{
	char *body = NULL;
	long status;
	json_t *j;

	(void)token;
	status = upstream_http(up, "GET", "/digitalpost/v1/messages", NULL, NULL, &body);
	j = status == 200 && body ? json_loads(body, 0, NULL) : NULL;
	free(body);
	return j;
}

/* One counter of the mailbox ("received", "delivered", "refused", "duplicates"), -1 when
 * the simulator does not answer. */
static long s_count(upstream_t *up, const char *what)
{
	json_t *j = s_mailbox(up, NULL);
	long n = j ? (long)json_integer_value(json_object_get(j, what)) : -1;

	json_decref(j);
	return n;
}

/* Stops the simulator after asserting it refused exactly `invalid` requests as breaking
 * the contract (it validates each against the official schemas): 0, unless the test sent
 * an invalid one itself — so every test fails if the connector sends an invalid request.
 * Accepts NULL. */
static void s_sim_stop(upstream_t **up_p, long invalid)
{
	if (*up_p) {
		upstream_fault(*up_p, "none", 0); /* a test may leave the service failing */
		CU_ASSERT_EQUAL(s_count(*up_p, "invalid"), invalid);
	}
	upstream_stop(up_p);
}

/* ---- scanning for clear CPR numbers ------------------------------------------------------ */

static int s_cpr_leaks;

/* Counts (and names, without the number) clear CPR numbers in text. */
static void s_scan(const char *what, const char *text)
{
	size_t off, len;

	if (text && kanal_cpr_find(text, strlen(text), &off, &len)) {
		s_cpr_leaks++;
		fprintf(stderr, "clear CPR number in %s at offset %zu\n", what, off);
	}
}

static void s_scan_file(const char *what, const char *path)
{
	char *text = test_read_file(path, NULL);
	s_scan(what, text);
	free(text);
}

/* ---- a kanald with the letter route ---------------------------------------------------- */

typedef struct env {
	upstream_t *up;
	kd_t *kd;
	void *sub;
} env_t;

static const char *s_routes = "routes:\n"
			      "  - name: letter-to-citizen\n"
			      "    match: { type: post.letter.send }\n"
			      "    to: digitalpost\n"
			      "    fallback: letter\n"
			      "    retry: { max_attempts: 5, backoff: 1s, max_backoff: 2s }\n"
			      "  - name: letter-status\n"
			      "    match: { type: post.letter.status }\n"
			      "    to: letter-log\n"
			      "default: other\n";

/* Starts the simulator (sim_args: NULL-terminated, may be NULL) and kanald with a
 * digitalpost instance (extra_opts: more YAML flow-map entries, may be ""). */
static bool s_start(env_t *env, const char *tag, const char *const *sim_args,
		    const char *extra_opts)
{
	char *instances, *conf;
	int rc;

	memset(env, 0, sizeof *env);
	env->up = upstream_start("digitalpost", sim_args);
	if (!env->up)
		return false;
	if (asprintf(&instances,
		     "  - name: digitalpost\n    plugin: digitalpost\n"
		     "    options: { base_url: '%s', sender_cvr: '55133018', "
		     "sender_label: 'Aarhus Kommune', timeout: 1s, "
		     "pseudonym_key: pseudonym.key%s }\n"
		     "  - name: letter\n    plugin: sink\n    options: { path: "
		     "'@DIR@/letter.jsonl' }\n"
		     "  - name: letter-log\n    plugin: sink\n"
		     "    options: { path: '@DIR@/status.jsonl' }\n"
		     "  - name: other\n    plugin: sink\n    options: { path: '@DIR@/other.jsonl' "
		     "}\n",
		     env->up->url, extra_opts) < 0)
		return false;
	conf = kd_config(instances, NULL);
	free(instances);
	env->kd = kd_prepare(tag, conf, s_routes);
	free(conf);
	{
		char *key = test_write_file(env->kd->dir, "pseudonym.key",
					    "a-test-key-for-pseudonyms-0123456789\n");
		chmod(key, 0600);
		free(key);
	}
	rc = kd_launch(env->kd);
	if (rc != 0) {
		char *log = kd_log(env->kd);
		fprintf(stderr, "kanald did not start:\n%s\n", log ? log : "");
		free(log);
		return false;
	}
	env->sub = kd_subscribe(env->kd, "");
	return true;
}

/* Receives happenings until one whose topic starts with prefix and whose payload holds
 * needle (may be NULL) arrives; scans every payload for CPR numbers on the way. Returns the
 * payload (malloc'd) or NULL after WAIT. */
static char *s_expect(env_t *env, const char *prefix, const char *needle)
{
	for (int left = WAIT; left > 0;) {
		char topic[256], *payload = NULL;
		int64_t t0 = kanal_now_ms();
		if (kd_next(env->sub, topic, sizeof topic, &payload, left) != 0)
			return NULL;
		left -= (int)(kanal_now_ms() - t0);
		s_scan("the event stream (topic)", topic);
		s_scan("the event stream", payload);
		if (!strncmp(topic, prefix, strlen(prefix)) && (!needle || strstr(payload, needle)))
			return payload;
		free(payload);
	}
	return NULL;
}

/* Sends an event through the gateway and asserts it was accepted. */
static void s_send(env_t *env, char *json)
{
	CU_ASSERT(kd_send_event(env->kd, json, "accepted", WAIT, NULL));
	free(json);
}

/* Stops everything and checks the logs and the status events for clear CPR numbers. */
static void s_stop(env_t *env)
{
	kd_unsubscribe(&env->sub);
	if (env->kd) {
		CU_ASSERT_EQUAL(kd_stop(env->kd, SIGTERM, WAIT), 0);
		s_scan_file("kanald's log", env->kd->log_path);
		s_scan_file("the status events", kd_path(env->kd, "status.jsonl"));
		s_scan_file("the other sink", kd_path(env->kd, "other.jsonl"));
	}
	if (env->up)
		s_scan_file("the simulator's log", env->up->log_path);
	s_sim_stop(&env->up, 0);
	kd_destroy(&env->kd);
	CU_ASSERT_EQUAL(s_cpr_leaks, 0);
	s_cpr_leaks = 0;
}

static bool s_file_has(const char *path, const char *needle)
{
	char *text = test_read_file(path, NULL);
	bool has = text && strstr(text, needle);

	free(text);
	return has;
}

/* The first line of path as JSON, or NULL. */
static json_t *s_first_line(const char *path)
{
	char *text = test_read_file(path, NULL);
	json_t *j = text ? json_loads(text, JSON_DISABLE_EOF_CHECK, NULL) : NULL;

	free(text);
	return j;
}

/* ---- kanald tests ------------------------------------------------------------------------ */

static void test_enrolled_citizen_gets_the_letter_digitally(void)
{
	env_t env;
	json_t *box, *msg, *status, *data;
	char *p;

	CU_ASSERT_FATAL(s_start(&env, "dp-enrolled", NULL, ""));
	s_send(&env, s_text(s_letter("brev-1", CPR_MADS)));
	p = s_expect(&env, "delivered post.letter.send", "\"digitalpost\"");
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);

	/* The service has exactly one letter, for Mads, with the label and the action. */
	box = s_mailbox(env.up, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(box);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(box, "messages")), 1);
	msg = json_array_get(json_object_get(box, "messages"), 0);
	ASSERT_STR(json_string_value(json_object_get(msg, "label")), "Din plads i dagtilbud");
	ASSERT_STR(json_string_value(json_object_get(msg, "recipient")), "150385-XXXX");
	ASSERT_STR(json_string_value(json_object_get(msg, "channel")), "Digital Post");
	ASSERT_STR(json_string_value(json_object_get(msg, "sender")), "Aarhus Kommune");
	ASSERT_STR(json_string_value(json_object_get(msg, "action")), "AFTALE");

	/* The status reaches the letter log: digital, sent, the service's transaction. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(env.kd, "status.jsonl"), 1, WAIT), 1);
	status = s_first_line(kd_path(env.kd, "status.jsonl"));
	CU_ASSERT_PTR_NOT_NULL_FATAL(status);
	data = json_object_get(status, "data");
	ASSERT_STR(json_string_value(json_object_get(status, "type")), "post.letter.status");
	ASSERT_STR(json_string_value(json_object_get(data, "letter")), "brev-1");
	ASSERT_STR(json_string_value(json_object_get(data, "channel")), "digital");
	ASSERT_STR(json_string_value(json_object_get(data, "status")), "sent");
	/* Which KombiValgKode kanal chose, and why: PostForespoerg said yes. */
	ASSERT_STR(json_string_value(json_object_get(data, "kombi")), "Digital Post");
	ASSERT_STR(json_string_value(json_object_get(data, "reason")),
		   "Digital Post: PostForespoerg: the recipient can receive Digital Post");
	ASSERT_STR(json_string_value(json_object_get(data, "transaction")),
		   json_string_value(json_object_get(msg, "transaction")));
	ASSERT_STR(json_string_value(json_object_get(status, "causationid")), "brev-1");
	ASSERT_STR(json_string_value(json_object_get(status, "correlationid")), "brev-1");
	/* The recipient is a pseudonym in the subject, never a CPR number. */
	CU_ASSERT(!strncmp(json_string_value(json_object_get(status, "subject")), "person:", 7));
	CU_ASSERT_PTR_NULL(json_object_get(data, "recipient_cpr"));
	json_decref(status);
	json_decref(box);

	/* The digital channel carried it: no physical letter. */
	CU_ASSERT_EQUAL(kd_lines(kd_path(env.kd, "letter.jsonl")), 0);
	s_stop(&env);
}

static void test_exempt_citizen_gets_a_physical_letter(void)
{
	env_t env;
	json_t *status;
	char *p;

	CU_ASSERT_FATAL(s_start(&env, "dp-exempt", NULL, ""));
	s_send(&env, s_text(s_letter("brev-bent", CPR_BENT)));
	/* PostForespoerg says Bent (exempt) cannot receive Digital Post — never why, the
	 * reason can be health data: a REJECT that says not-enrolled … */
	p = s_expect(&env, "rejected post.letter.send", "\"digitalpost\"");
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "\"error\":\"not-enrolled: PostForespoerg"));
	CU_ASSERT_PTR_NULL(p ? strstr(p, "exempt") : NULL);
	free(p);
	/* … so the fallback, the physical letter, takes over. */
	p = s_expect(&env, "fallback post.letter.send", "\"letter-to-citizen\"");
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(env.kd, "letter.jsonl"), 1, WAIT), 1);
	CU_ASSERT(s_file_has(kd_path(env.kd, "letter.jsonl"), "\"brev-bent\""));
	/* No kombi_request was sent: the paper letter is the letter connector's. */
	CU_ASSERT_EQUAL(s_count(env.up, "received"), 0);
	CU_ASSERT_EQUAL(s_count(env.up, "delivered"), 0);
	/* The letter log learns why the digital channel did not carry it. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(env.kd, "status.jsonl"), 1, WAIT), 1);
	status = s_first_line(kd_path(env.kd, "status.jsonl"));
	CU_ASSERT_PTR_NOT_NULL_FATAL(status);
	ASSERT_STR(json_string_value(json_object_get(json_object_get(status, "data"), "status")),
		   "failed");
	CU_ASSERT(!strncmp(
		json_string_value(json_object_get(json_object_get(status, "data"), "reason")),
		"not-enrolled: ", 14));
	json_decref(status);

	/* Karen too (exempt), sent by another system: same outcome. */
	{
		json_t *e = s_letter("brev-karen", CPR_KAREN);
		json_object_set_new(e, "source", json_string("borgerservice"));
		s_send(&env, s_text(e));
	}
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(env.kd, "letter.jsonl"), 2, WAIT), 2);
	CU_ASSERT(s_file_has(kd_path(env.kd, "letter.jsonl"), "\"brev-karen\""));
	CU_ASSERT_EQUAL(s_count(env.up, "delivered"), 0);
	s_stop(&env);
}

static void test_lookup_says_not_enrolled_no_service_call(void)
{
	env_t env;
	json_t *e;
	char *p;

	CU_ASSERT_FATAL(s_start(&env, "dp-lookup", NULL, ""));
	/* Mads is enrolled at the service, but the route's CPR lookup says he is not: the
	 * connector trusts the lookup and never calls the service. */
	e = s_letter("brev-lookup", CPR_MADS);
	json_object_set_new(
		json_object_get(e, "data"), "recipient",
		json_pack("{s:b, s:i, s:s}", "digital_post", 0, "status", 1, "cpr", CPR_MADS));
	s_send(&env, s_text(e));
	p = s_expect(&env, "rejected post.letter.send", "not-enrolled");
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "the service was not called"));
	free(p);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(env.kd, "letter.jsonl"), 1, WAIT), 1);
	CU_ASSERT(s_file_has(kd_path(env.kd, "letter.jsonl"), "\"brev-lookup\""));

	/* A dead recipient (CPR status 90) likewise. */
	e = s_letter("brev-dead", CPR_SOFIE);
	json_object_set_new(json_object_get(e, "data"), "recipient",
			    json_pack("{s:b, s:i}", "digital_post", 1, "status", 90));
	s_send(&env, s_text(e));
	p = s_expect(&env, "rejected post.letter.send", "CPR status 90");
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(env.kd, "letter.jsonl"), 2, WAIT), 2);

	/* Nothing reached the service. */
	CU_ASSERT_EQUAL(s_count(env.up, "received"), 0);
	/* kanald's status counts the letters the connector kept from the service. */
	p = kd_admin(env.kd, "{\"cmd\":\"status\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "\"skipped\":2"));
	if (p && !strstr(p, "\"skipped\":2"))
		fprintf(stderr, "status: %s\n", p);
	free(p);
	s_stop(&env);
}

static void test_invalid_letters_are_rejected_naming_the_field(void)
{
	static const struct {
		const char *id, *a, *b, *value, *field;
	} cases[] = {
		{ "bad-filename", "document", "filename", "plads:2026.pdf", "document.filename" },
		{ "bad-start", "action", "start", "2026-12-01T09:00:00+01:00", "action.start" },
		{ "no-location", "action.reservation", "location", "",
		  "action.reservation.location" },
		{ "bad-cpr", "recipient_cpr", NULL, "3213851233", "recipient_cpr" },
		{ "bad-content", "document", "content", "not base64!", "document.content" },
		{ "no-label", "label", NULL, "  ", "label" },
	};
	env_t env;
	char *p, want[128];

	CU_ASSERT_FATAL(s_start(&env, "dp-invalid", NULL, ""));
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		json_t *e = s_letter(cases[i].id, CPR_MADS);
		s_set(e, cases[i].a, cases[i].b, cases[i].value);
		s_send(&env, s_text(e));
		snprintf(want, sizeof want, "\"error\":\"invalid letter: %s: ", cases[i].field);
		p = s_expect(&env, "rejected post.letter.send", want);
		CU_ASSERT_PTR_NOT_NULL(p);
		if (!p)
			fprintf(stderr, "no rejection naming %s\n", cases[i].field);
		free(p);
	}
	/* Each went to the physical letter; none reached the service. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(env.kd, "letter.jsonl"), 6, WAIT), 6);
	CU_ASSERT_EQUAL(s_count(env.up, "received"), 0);
	/* The letter log has a "failed" status for each, naming the field. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(env.kd, "status.jsonl"), 6, WAIT), 6);
	CU_ASSERT(s_file_has(kd_path(env.kd, "status.jsonl"), "invalid letter: action.start: "));
	s_stop(&env);
}

static void test_unavailable_service_is_retried_and_sends_one_letter(void)
{
	env_t env;
	char *p;

	CU_ASSERT_FATAL(s_start(&env, "dp-retry", NULL, ""));
	/* Two 503s (Retry-After: 1), then the service answers. */
	CU_ASSERT_EQUAL_FATAL(upstream_fault(env.up, "error", 2), 0);
	s_send(&env, s_text(s_letter("brev-503", CPR_EMMA)));
	p = s_expect(&env, "retrying post.letter.send", "503");
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	p = s_expect(&env, "delivered post.letter.send", "\"digitalpost\"");
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "\"attempt\":3"));
	free(p);
	CU_ASSERT_EQUAL(s_count(env.up, "delivered"), 1);
	CU_ASSERT_EQUAL(kd_lines(kd_path(env.kd, "letter.jsonl")), 0);

	/* The service is slow: it delivers the letter after the connector has given up waiting
	 * (timeout 1s). The retry carries the same messageUUID, so the service answers with
	 * the first transaction and the citizen gets one letter, not two. Emma's PostForespoerg
	 * answer is cached from her first letter, so the slow answer is KombiPostAfsend's. */
	{
		char *body = NULL;
		long st = upstream_http(env.up, "POST", "/_sim/fault",
					"{\"mode\": \"slow\", \"count\": 1, \"delay_ms\": 1200}",
					"application/json", &body);
		CU_ASSERT_EQUAL(st, 200);
		free(body);
	}
	s_send(&env, s_text(s_letter("brev-slow", CPR_EMMA)));
	p = s_expect(&env, "retrying post.letter.send", "brev-slow");
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	p = s_expect(&env, "delivered post.letter.send", "brev-slow");
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT_EQUAL(s_count(env.up, "delivered"), 2);
	CU_ASSERT_EQUAL(s_count(env.up, "duplicates"), 1);

	/* One "sent" status per letter, with the transaction of the one letter delivered. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(env.kd, "status.jsonl"), 2, WAIT), 2);
	{
		json_t *box = s_mailbox(env.up, NULL);
		const char *tx = json_string_value(json_object_get(
			json_array_get(json_object_get(box, "messages"), 1), "transaction"));
		CU_ASSERT_PTR_NOT_NULL_FATAL(tx);
		CU_ASSERT(s_file_has(kd_path(env.kd, "status.jsonl"), tx));
		json_decref(box);
	}
	s_stop(&env);
}

static void test_garbage_and_hang_are_retried_within_the_timeout(void)
{
	env_t env;
	char *p;
	int64_t t0;

	CU_ASSERT_FATAL(s_start(&env, "dp-garbage", NULL, ""));
	/* A first letter to Mads caches his PostForespoerg answer: the garbage that follows
	 * is the KombiPostAfsend answer's. */
	s_send(&env, s_text(s_letter("brev-first", CPR_MADS)));
	p = s_expect(&env, "delivered post.letter.send", "brev-first");
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT_EQUAL_FATAL(upstream_fault(env.up, "garbage", 1), 0);
	s_send(&env, s_text(s_letter("brev-garbage", CPR_MADS)));
	p = s_expect(&env, "retrying post.letter.send", "no readable response XML");
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	p = s_expect(&env, "delivered post.letter.send", "brev-garbage");
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);

	/* A hanging service: the connector's timeout (1s) bounds the wait, then RETRY. */
	CU_ASSERT_EQUAL_FATAL(upstream_fault(env.up, "hang", 1), 0);
	t0 = kanal_now_ms();
	s_send(&env, s_text(s_letter("brev-hang", CPR_SOFIE)));
	p = s_expect(&env, "retrying post.letter.send", "brev-hang");
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT(kanal_now_ms() - t0 < WAIT);
	p = s_expect(&env, "delivered post.letter.send", "brev-hang");
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT_EQUAL(s_count(env.up, "delivered"), 3);
	CU_ASSERT_EQUAL(kd_lines(kd_path(env.kd, "letter.jsonl")), 0);
	s_stop(&env);
}

static void test_wrong_token_is_retried_not_sent_on_paper(void)
{
	const char *args[] = { "--set", "token=right-token", NULL };
	env_t env;
	char *p;

	CU_ASSERT_FATAL(s_start(&env, "dp-token", args, ", token: wrong-token"));
	s_send(&env, s_text(s_letter("brev-token", CPR_MADS)));
	/* A 401 is the connector's setup, not the letter: retried, never the fallback. */
	p = s_expect(&env, "retrying post.letter.send", "401");
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	p = s_expect(&env, "dead post.letter.send", "brev-token");
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT_EQUAL(kd_lines(kd_path(env.kd, "letter.jsonl")), 0);
	s_stop(&env);
}

/* ---- receipts: PKO_PostStatus through the Beskedfordeler's callback ---------------------- */

/* The status event of letter with status st in status.jsonl (new reference), waiting. */
static json_t *s_status_of(env_t *env, const char *letter, const char *st)
{
	for (int64_t end = kanal_now_ms() + WAIT; kanal_now_ms() < end; test_sleep_ms(100)) {
		char *text = test_read_file(kd_path(env->kd, "status.jsonl"), NULL);
		char *line = text, *save = NULL;
		for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
		     line = strtok_r(NULL, "\n", &save)) {
			json_t *j = json_loads(line, 0, NULL), *d = json_object_get(j, "data");
			if (!strcmp(json_string_value(json_object_get(d, "letter")) ?: "",
				    letter) &&
			    !strcmp(json_string_value(json_object_get(d, "status")) ?: "", st)) {
				free(text);
				return j;
			}
			json_decref(j);
		}
		free(text);
	}
	fprintf(stderr, "no '%s' status for %s\n", st, letter);
	return NULL;
}

static void test_receipts_give_the_final_outcome(void)
{
	char cb[128], opts[256], sim_cb[200], *p;
	const char *args[] = { "--set", sim_cb, NULL };
	int port = test_free_port();
	env_t env;
	json_t *st, *d;
	http_answer_t a = { 0 };

	CU_ASSERT_FATAL(port > 0);
	snprintf(cb, sizeof cb, "127.0.0.1:%d", port);
	snprintf(sim_cb, sizeof sim_cb,
		 "callback=http://127.0.0.1:%d/beskedfordeler/PostStatusBeskedModtag", port);
	snprintf(opts, sizeof opts, ", callback_listen: '%s', status_timeout: 2s", cb);
	CU_ASSERT_FATAL(s_start(&env, "dp-receipts", args, opts));

	/* Mads is enrolled: accepted, then the pushed "Afleveret Digital Post" makes it sent. */
	s_send(&env, s_text(s_letter("brev-kvit", CPR_MADS)));
	st = s_status_of(&env, "brev-kvit", "accepted");
	CU_ASSERT_PTR_NOT_NULL(st);
	json_decref(st);
	st = s_status_of(&env, "brev-kvit", "sent");
	CU_ASSERT_PTR_NOT_NULL(st);
	d = json_object_get(st, "data");
	ASSERT_STR(json_string_value(json_object_get(d, "channel")), "digital");
	ASSERT_STR(json_string_value(json_object_get(d, "reason")),
		   "PKO_PostStatus Afleveret Digital Post (Digital Post)");
	CU_ASSERT(json_is_true(json_object_get(d, "final")));
	ASSERT_STR(json_string_value(json_object_get(st, "causationid")), "brev-kvit");
	CU_ASSERT(!strncmp(json_string_value(json_object_get(st, "subject")) ?: "", "person:", 7));
	json_decref(st);

	/* The platform fails the next letter: failed, with the service's FejlKode. */
	CU_ASSERT_EQUAL(upstream_http(env.up, "POST", "/digitalpost/v1/messages-status-fault",
				      "failed", "text/plain", &p),
			200);
	free(p);
	s_send(&env, s_text(s_letter("brev-fejl", CPR_SOFIE)));
	st = s_status_of(&env, "brev-fejl", "failed");
	CU_ASSERT_PTR_NOT_NULL(st);
	CU_ASSERT_PTR_NOT_NULL(strstr(
		json_string_value(json_object_get(json_object_get(st, "data"), "reason")) ?: "",
		"Fejlet (Digital Post): memo.invalid: "));
	json_decref(st);

	/* No status at all: after status_timeout (2s) the letter's status is unknown, and
	 * the metric says so. */
	CU_ASSERT_EQUAL(upstream_http(env.up, "POST", "/digitalpost/v1/messages-status-fault",
				      "silent", "text/plain", &p),
			200);
	free(p);
	s_send(&env, s_text(s_letter("brev-tavs", CPR_EMMA)));
	st = s_status_of(&env, "brev-tavs", "unknown");
	CU_ASSERT_PTR_NOT_NULL(st);
	json_decref(st);
	p = kd_admin(env.kd, "{\"cmd\":\"status\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "\"letters_status_unknown\":1"));
	free(p);
	/* Each letter has "accepted" and exactly one final status: brev-kvit and brev-fejl
	 * did not become unknown as well. */
	CU_ASSERT_EQUAL(kd_lines(kd_path(env.kd, "status.jsonl")), 6);

	/* What is not a PKO_PostStatus is refused with StatusKode 40, naming why. */
	{
		char url[200];
		http_request_t rq = { .url = url, .body = "<ModtagBeskedInput/>" };
		snprintf(url, sizeof url, "http://%s/beskedfordeler/PostStatusBeskedModtag", cb);
		CU_ASSERT_EQUAL(http_request(NULL, &rq, &a), 400);
		CU_ASSERT_PTR_NOT_NULL(strstr(a.body, "<StatusKode>40</StatusKode>"));
		CU_ASSERT_PTR_NOT_NULL(strstr(a.body, "Beskeddata/Base64"));
		http_answer_clear(&a);
	}
	s_stop(&env);
}

/* The Beskedfordeler pushes whenever it likes: the callback answers at once while the
 * connector waits for Digital Post, and a status that comes before the connector knows its
 * letter (the first answer timed out; the service accepted the letter and pushed its status
 * before the retry) still gives the letter its outcome. */
static void test_receipts_are_taken_while_a_letter_is_sent(void)
{
	char cb[128], opts[256], sim_cb[256], url[200], *p;
	char *besked = test_read_file(
		"contracts/examples/sf1601/ModtagBeskedInput.PKO_PostStatus.xml", NULL);
	const char *args[] = { "--set", sim_cb, NULL };
	int port = test_free_port();
	env_t env;
	json_t *st;
	http_answer_t a = { 0 };
	http_request_t rq = { .url = url, .body = besked };
	int64_t t0, took;

	CU_ASSERT_FATAL(port > 0 && besked);
	snprintf(cb, sizeof cb, "127.0.0.1:%d", port);
	snprintf(url, sizeof url, "http://%s/beskedfordeler/PostStatusBeskedModtag", cb);
	snprintf(sim_cb, sizeof sim_cb, "callback=%s", url);
	snprintf(opts, sizeof opts, ", callback_listen: '%s', status_timeout: 4s", cb);
	CU_ASSERT_FATAL(s_start(&env, "dp-receipts-busy", args, opts));

	/* The service takes 1.5 s over the next call; the connector gives up after 1 s. */
	CU_ASSERT_EQUAL(upstream_http(env.up, "POST", "/_sim/fault",
				      "{\"mode\": \"slow\", \"count\": 1, \"delay_ms\": 1500}",
				      "application/json", &p),
			200);
	free(p);
	s_send(&env, s_text(s_letter("brev-travl", CPR_MADS)));
	test_sleep_ms(300);
	/* Meanwhile a status of another system's letter: taken (20) at once, not after the
	 * connector's call. */
	t0 = kanal_now_ms();
	CU_ASSERT_EQUAL(http_request(NULL, &rq, &a), 200);
	took = kanal_now_ms() - t0;
	CU_ASSERT(took < 500);
	if (took >= 500)
		fprintf(stderr, "the callback answered after %lld ms\n", (long long)took);
	CU_ASSERT_PTR_NOT_NULL(a.body && strstr(a.body, "<StatusKode>20</StatusKode>"));
	http_answer_clear(&a);

	/* The letter is sent, by its receipt, whichever came first: the status or the retry
	 * that learnt the letter's TransmissionID. */
	st = s_status_of(&env, "brev-travl", "sent");
	CU_ASSERT_PTR_NOT_NULL(st);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(st, "data"), "reason")) ?: "",
		"PKO_PostStatus Afleveret Digital Post (Digital Post)");
	json_decref(st);
	CU_ASSERT_EQUAL(s_count(env.up, "delivered"), 1);

	/* The other system's status waits as long as a letter would (4 s), then is dropped. */
	for (int64_t end = kanal_now_ms() + WAIT; kanal_now_ms() < end; test_sleep_ms(250)) {
		p = kd_admin(env.kd, "{\"cmd\":\"status\"}", WAIT);
		bool dropped = p && strstr(p, "\"statuses_unmatched\":1");
		free(p);
		if (dropped)
			break;
	}
	p = kd_admin(env.kd, "{\"cmd\":\"status\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "\"statuses_unmatched\":1"));
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "\"letters_delivered\":1"));
	CU_ASSERT_PTR_NULL(p ? strstr(p, "letters_status_unknown") : NULL);
	free(p);
	free(besked);
	s_stop(&env);
}

/* ---- the SDK harness: the MeMo itself and the checks ----------------------------------- */

static kanal_harness_t *s_harness(upstream_t *up, const char *channel)
{
	kanal_error_t err;
	kanal_harness_t *h;

	kanal_error_clear(&err);
	h = kanal_harness_new(test_path("plugins/digitalpost.so"), "dp", &err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	kanal_harness_option(h, "base_url", up ? up->url : "http://127.0.0.1:9");
	kanal_harness_option(h, "sender_cvr", "55133018");
	kanal_harness_option(h, "sender_label", "Aarhus Kommune");
	kanal_harness_option(h, "timeout", "2s");
	if (channel)
		kanal_harness_option(h, "channel", channel);
	if (kanal_harness_start(h, &err) != 0) {
		fprintf(stderr, "harness start: %s\n", err.text);
		kanal_harness_destroy(&h);
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	return h;
}

/* The MeMo element at the path of names below parent (all in the MeMo namespace). */
static xmlNodePtr s_memo(xmlNodePtr parent, const char *path)
{
	char buf[256], *save = NULL;
	xmlNodePtr n = parent;

	snprintf(buf, sizeof buf, "%s", path);
	for (char *name = strtok_r(buf, "/", &save); name && n; name = strtok_r(NULL, "/", &save)) {
		xmlNodePtr c = n->children;
		while (c && !(c->type == XML_ELEMENT_NODE && c->ns &&
			      !strcmp((const char *)c->ns->href, MEMO_NS) &&
			      !strcmp((const char *)c->name, name)))
			c = c->next;
		n = c;
	}
	return n;
}

/* Asserts the element exists with exactly this text. */
static void s_memo_is(xmlNodePtr parent, const char *path, const char *want)
{
	xmlNodePtr n = s_memo(parent, path);
	xmlChar *text = n ? xmlNodeGetContent(n) : NULL;

	CU_ASSERT_PTR_NOT_NULL(n);
	if (!n)
		fprintf(stderr, "MeMo element %s missing\n", path);
	if (want && text) {
		ASSERT_STR((const char *)text, want);
		if (strcmp((const char *)text, want))
			fprintf(stderr, "MeMo %s: '%.60s', want '%.60s'\n", path, text, want);
	}
	xmlFree(text);
}

/* Asserts parent has a child element without a namespace, name, with exactly this text. */
static void s_memo_is_plain(xmlNodePtr parent, const char *name, const char *want)
{
	xmlNodePtr c = parent->children;
	xmlChar *text;

	while (c &&
	       !(c->type == XML_ELEMENT_NODE && !c->ns && !strcmp((const char *)c->name, name)))
		c = c->next;
	text = c ? xmlNodeGetContent(c) : NULL;
	ASSERT_STR((const char *)text, want);
	xmlFree(text);
}

static void test_memo_has_the_required_elements(void)
{
	upstream_t *up = upstream_start("digitalpost", NULL);
	kanal_harness_t *h;
	json_t *letter;
	kanal_msg_t *m;
	const kanal_msg_t *st;
	const char *tx = NULL, *uuid = NULL;
	char *body = NULL, path[128], *content;
	xmlDocPtr doc;
	xmlNodePtr root, msg;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	h = s_harness(up, NULL);
	letter = s_letter("memo-1", CPR_MADS);
	content = strdup(json_string_value(json_object_get(
		json_object_get(json_object_get(letter, "data"), "document"), "content")));
	m = s_msg(letter);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, "letter-to-citizen"), KANAL_OUTCOME_OK);
	CU_ASSERT_EQUAL_FATAL(kanal_harness_emitted_count(h), 1);
	st = kanal_harness_emitted(h, 0);
	ASSERT_STR(kanal_msg_type(st), "post.letter.status");
	kanal_msg_data_str(st, "transaction", &tx);
	kanal_msg_data_str(st, "message_uuid", &uuid);
	CU_ASSERT_PTR_NOT_NULL_FATAL(tx);
	CU_ASSERT_PTR_NOT_NULL_FATAL(uuid);

	/* What the service received, parsed back. */
	snprintf(path, sizeof path, "/digitalpost/v1/messages/%s", tx);
	CU_ASSERT_EQUAL_FATAL(upstream_http(up, "GET", path, NULL, NULL, &body), 200);
	doc = xmlReadMemory(body, (int)strlen(body), "memo.xml", NULL, XML_PARSE_NONET);
	CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
	root = xmlDocGetRootElement(doc);
	ASSERT_STR((const char *)root->name, "kombi_request");
	s_memo_is_plain(root, "KombiValgKode", "Digital Post");
	msg = root->children;
	while (msg &&
	       !(msg->type == XML_ELEMENT_NODE && !strcmp((const char *)msg->name, "Message")))
		msg = msg->next;
	CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
	CU_ASSERT_PTR_NOT_NULL_FATAL(msg->ns);
	ASSERT_STR((const char *)msg->ns->href, MEMO_NS);
	s_memo_is(msg, "MessageHeader/messageType", "DIGITALPOST");
	s_memo_is(msg, "MessageHeader/messageUUID", uuid);
	s_memo_is(msg, "MessageHeader/label", "Din plads i dagtilbud");
	s_memo_is(msg, "MessageHeader/Sender/senderID", "55133018");
	s_memo_is(msg, "MessageHeader/Sender/idType", "CVR");
	s_memo_is(msg, "MessageHeader/Sender/label", "Aarhus Kommune");
	s_memo_is(msg, "MessageHeader/Recipient/recipientID", CPR_MADS);
	s_memo_is(msg, "MessageHeader/Recipient/idType", "CPR");
	s_memo_is(msg, "MessageBody/createdDateTime", "2026-11-24T09:30:00.000Z");
	s_memo_is(msg, "MessageBody/MainDocument/File/encodingFormat", "application/pdf");
	s_memo_is(msg, "MessageBody/MainDocument/File/filename", "Din plads i dagtilbud.pdf");
	s_memo_is(msg, "MessageBody/MainDocument/File/language", "da");
	s_memo_is(msg, "MessageBody/MainDocument/File/content", content);
	s_memo_is(msg, "MessageBody/MainDocument/Action/actionCode", "AFTALE");
	s_memo_is(msg, "MessageBody/MainDocument/Action/label", "Se og bekræft pladsen");
	/* An AFTALE carries its appointment as a Reservation, not a link. */
	s_memo_is(msg, "MessageBody/MainDocument/Action/Reservation/location",
		  "Dagtilbud Skovbrynet, Skovvej 12, 8000 Aarhus C");
	s_memo_is(msg, "MessageBody/MainDocument/Action/Reservation/startDateTime",
		  "2026-12-01T08:00:00Z");
	s_memo_is(msg, "MessageBody/MainDocument/Action/Reservation/endDateTime",
		  "2026-12-01T09:00:00Z");
	CU_ASSERT_PTR_NULL(s_memo(msg, "MessageBody/MainDocument/Action/EntryPoint"));
	xmlFreeDoc(doc);
	free(body);
	/* The UUID is name-based (stable across redeliveries) but in the version-4 form, the
	 * only one MeMo's memoUuidType pattern accepts. */
	CU_ASSERT_EQUAL(uuid[14], '4');

	/* The same event again (a redelivery) is the same letter: same messageUUID, so the
	 * service answers with the same TransmissionID and keeps one letter (the connector
	 * keeps no duplicate flag of its own). Another id is another letter. */
	{
		char first_tx[128], first_uuid[40];
		const char *tx2 = NULL, *uuid2 = NULL;
		snprintf(first_tx, sizeof first_tx, "%s", tx);
		snprintf(first_uuid, sizeof first_uuid, "%s", uuid);
		kanal_harness_clear(h);
		CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, "letter-to-citizen"), KANAL_OUTCOME_OK);
		CU_ASSERT_EQUAL_FATAL(kanal_harness_emitted_count(h), 1);
		kanal_msg_data_str(kanal_harness_emitted(h, 0), "transaction", &tx2);
		kanal_msg_data_str(kanal_harness_emitted(h, 0), "message_uuid", &uuid2);
		ASSERT_STR(tx2, first_tx);
		ASSERT_STR(uuid2, first_uuid);
		CU_ASSERT_EQUAL(s_count(up, "delivered"), 1);
		CU_ASSERT_EQUAL(s_count(up, "duplicates"), 1);
		kanal_msg_destroy(&m);
		m = s_msg(s_letter("memo-2", CPR_MADS));
		kanal_harness_clear(h);
		CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, NULL), KANAL_OUTCOME_OK);
		CU_ASSERT_EQUAL_FATAL(kanal_harness_emitted_count(h), 1);
		kanal_msg_data_str(kanal_harness_emitted(h, 0), "message_uuid", &uuid2);
		CU_ASSERT(uuid2 && strcmp(uuid2, first_uuid));
		CU_ASSERT_EQUAL(s_count(up, "delivered"), 2);
	}
	/* Nothing the plugin logged holds a CPR number. */
	for (size_t i = 0; i < kanal_harness_log_count(h); i++)
		s_scan("the plugin's log", kanal_harness_log(h, i));
	CU_ASSERT_EQUAL(s_cpr_leaks, 0);
	s_cpr_leaks = 0;
	free(content);
	kanal_msg_destroy(&m);
	kanal_harness_destroy(&h);
	s_sim_stop(&up, 0);
}

static void test_nemsms_channel(void)
{
	upstream_t *up = upstream_start("digitalpost", NULL);
	kanal_harness_t *h;
	kanal_msg_t *m;
	const char *channel = NULL;
	json_t *box;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	h = s_harness(up, "NemSMS");
	m = s_msg(s_letter("sms-1", CPR_SOFIE));
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, NULL), KANAL_OUTCOME_OK);
	CU_ASSERT_EQUAL_FATAL(kanal_harness_emitted_count(h), 1);
	kanal_msg_data_str(kanal_harness_emitted(h, 0), "channel", &channel);
	ASSERT_STR(channel, "nemsms");
	box = s_mailbox(up, NULL);
	ASSERT_STR(json_string_value(json_object_get(
			   json_array_get(json_object_get(box, "messages"), 0), "channel")),
		   "NemSMS");
	json_decref(box);
	kanal_msg_destroy(&m);
	kanal_harness_destroy(&h);
	s_sim_stop(&up, 0);
}

/* Delivers the example letter with data.<a>.<b> set to value and returns the outcome. */
static kanal_outcome_t s_try(kanal_harness_t *h, const char *a, const char *b, const char *value)
{
	json_t *e = s_letter("check", CPR_MADS);
	kanal_msg_t *m;
	kanal_outcome_t o;

	s_set(e, a, b, value);
	m = s_msg(e);
	o = kanal_harness_deliver(h, m, NULL);
	kanal_msg_destroy(&m);
	return o;
}

/* Delivers the example letter with a SELVBETJENING action linking to url; the outcome. */
static kanal_outcome_t s_try_link(kanal_harness_t *h, const char *url)
{
	json_t *e = s_letter("link", CPR_MADS);
	kanal_msg_t *m;
	kanal_outcome_t o;

	json_object_set_new(json_object_get(e, "data"), "action",
			    json_pack("{s:s, s:s}", "code", "SELVBETJENING", "url", url));
	m = s_msg(e);
	o = kanal_harness_deliver(h, m, NULL);
	kanal_msg_destroy(&m);
	return o;
}

static void test_filename_and_other_checks(void)
{
	static const char *const bad_names[] = {
		"a<b.pdf",
		"a>b.pdf",
		"a:b.pdf",
		"a\"b.pdf",
		"a/b.pdf",
		"a\\b.pdf",
		"a|b.pdf",
		"a?b.pdf",
		"a*b.pdf",
		"a\nb.pdf",
		"a\rb.pdf",
		"a\tb.pdf",
		"a\x7f"
		"b.pdf",
		"a\xc2\xa0"
		"b.pdf", /* U+00A0 no-break space */
		"a\xc2\x85"
		"b.pdf", /* U+0085 next line */
		"a\xe2\x80\x83"
		"b.pdf", /* U+2003 em space */
		"a\xe2\x80\x8b"
		"b.pdf", /* U+200B zero width space */
		"a\xe2\x80\xa8"
		"b.pdf", /* U+2028 line separator */
		"a\xe2\x80\xaf"
		"b.pdf", /* U+202F narrow no-break space */
		"a\xe2\x81\x9f"
		"b.pdf", /* U+205F medium mathematical space */
		"a\xe3\x80\x80"
		"b.pdf", /* U+3000 ideographic space */
		"a\xef\xbb\xbf"
		"b.pdf", /* U+FEFF zero width no-break space */
		"",
		"..",
	};
	static const char *const good_names[] = { "Afgørelse om plads.pdf", "brev_2026-01.v2.pdf",
						  "Ærø – kort.pdf" };
	upstream_t *up = upstream_start("digitalpost", NULL);
	kanal_harness_t *h;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	h = s_harness(up, NULL);
	for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
		kanal_outcome_t o = s_try(h, "document", "filename", bad_names[i]);
		CU_ASSERT_EQUAL(o, KANAL_OUTCOME_REJECT);
		CU_ASSERT_PTR_NOT_NULL(
			strstr(kanal_harness_last_error(h), "invalid letter: document.filename: "));
		if (o != KANAL_OUTCOME_REJECT)
			fprintf(stderr, "bad file name #%zu was accepted\n", i);
	}
	for (size_t i = 0; i < sizeof good_names / sizeof *good_names; i++) {
		CU_ASSERT_EQUAL(s_try(h, "document", "filename", good_names[i]), KANAL_OUTCOME_OK);
		if (strcmp(kanal_harness_last_error(h) ? kanal_harness_last_error(h) : "", ""))
			fprintf(stderr, "good file name #%zu: %s\n", i,
				kanal_harness_last_error(h));
	}
	/* The other fields. */
	CU_ASSERT_EQUAL(s_try(h, "document", "content", "SGVq="), KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "document.content"));
	CU_ASSERT_EQUAL(s_try(h, "document", "language", "dansk"), KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "document.language"));
	CU_ASSERT_EQUAL(s_try(h, "action", "code", "KLIK"), KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "action.code"));
	CU_ASSERT_EQUAL(s_try(h, "action", "start", "2026-12-01 08:00"), KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "action.start"));
	/* A link action (not AFTALE) needs an absolute https URL. */
	CU_ASSERT_EQUAL(s_try_link(h, "https://selvbetjening.aarhus.dk/plads"), KANAL_OUTCOME_OK);
	CU_ASSERT_EQUAL(s_try_link(h, "https:///aftale"), KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "action.url"));
	CU_ASSERT_EQUAL(s_try_link(h, "/aftale?id=1"), KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "action.url"));
	CU_ASSERT_EQUAL(s_try_link(h, "http://pladsanvisning.aarhus.dk/aftale"),
			KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "action.url"));
	CU_ASSERT_EQUAL(s_try(h, "label", NULL, "Brev\nmed linjeskift"), KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "invalid letter: label: "));
	CU_ASSERT_EQUAL(s_try(h, "sender", "cvr", "11111111"), KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "sender.cvr"));
	/* A department may name itself as the sender under the instance's CVR number. */
	{
		json_t *e = s_letter("dept", CPR_EMMA);
		kanal_msg_t *m;
		json_object_set_new(json_object_get(e, "data"), "sender",
				    json_pack("{s:s}", "label", "Børn og Unge, Aarhus Kommune"));
		m = s_msg(e);
		CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, NULL), KANAL_OUTCOME_OK);
		kanal_msg_destroy(&m);
	}
	/* Laura is 11: no mailbox, and no call to find that out. */
	{
		long before = s_count(up, "received");
		kanal_msg_t *m = s_msg(s_letter("laura", CPR_LAURA));
		CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, NULL), KANAL_OUTCOME_REJECT);
		CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "not-enrolled: "));
		CU_ASSERT_EQUAL(s_count(up, "received"), before);
		kanal_msg_destroy(&m);
	}
	/* A CPR number is never repeated in an error. */
	CU_ASSERT_EQUAL(s_try(h, "recipient_cpr", NULL, "1503859999x"), KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "recipient_cpr"));
	s_scan("an error", kanal_harness_last_error(h));
	CU_ASSERT_EQUAL(s_cpr_leaks, 0);
	s_cpr_leaks = 0;
	kanal_harness_destroy(&h);
	s_sim_stop(&up, 0);
}

/* ---- SF1514 tokens and mutual TLS ----------------------------------------------------- */

/* The STS simulator and the Digital Post simulator over mutual TLS with a test CA made for
 * the run; the Digital Post simulator checks each access token at the STS. */
typedef struct sts_env {
	char *dir;
	upstream_t *sts, *dp;
	char dp_url[64], sts_url[160], token_url[160];
} sts_env_t;

static const char *s_in(const sts_env_t *e, const char *name)
{
	static char buf[8][1024];
	static int i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof buf[i], "%s/%s", e->dir, name);
	return buf[i];
}

static bool s_sts_start(sts_env_t *e)
{
	char sts[128];

	memset(e, 0, sizeof *e);
	if (!(e->dir = test_tmpdir("dp-sts")) || testca_make(e->dir) != 0)
		return false;
	if (!(e->sts = upstream_start_tls("sts", e->dir, NULL)))
		return false;
	snprintf(sts, sizeof sts, "sts=https://127.0.0.1:%d", e->sts->port);
	if (!(e->dp = upstream_start_tls("digitalpost", e->dir,
					 (const char *const[]){ "--set", sts, NULL })))
		return false;
	snprintf(e->dp_url, sizeof e->dp_url, "https://127.0.0.1:%d", e->dp->port);
	snprintf(e->sts_url, sizeof e->sts_url,
		 "https://127.0.0.1:%d/runtime/api/rest/wstrust/v1/issue", e->sts->port);
	snprintf(e->token_url, sizeof e->token_url,
		 "https://127.0.0.1:%d/service/AccessTokenService_1/token", e->sts->port);
	return true;
}

static void s_sts_stop(sts_env_t *e)
{
	if (e->dp)
		s_scan_file("the simulator's log", e->dp->log_path);
	s_sim_stop(&e->dp, 0);
	upstream_stop(&e->sts);
	if (e->dir)
		test_rmdir_r(e->dir);
	free(e->dir);
	CU_ASSERT_EQUAL(s_cpr_leaks, 0);
	s_cpr_leaks = 0;
}

/* A digitalpost instance with the function certificate `who` (client: the PKCS#12; else
 * <who>.pem/.key) and the STS; extra is one more option (key, value) or NULL. Returns the
 * harness, or NULL with err set when it does not start. */
static kanal_harness_t *s_sts_harness(const sts_env_t *e, const char *who, const char *key,
				      const char *value, kanal_error_t *err)
{
	kanal_harness_t *h;
	char pem[64], pkey[64];

	kanal_error_clear(err);
	h = kanal_harness_new(test_path("plugins/digitalpost.so"), "dp", err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	kanal_harness_option(h, "base_url", e->dp_url);
	kanal_harness_option(h, "sender_cvr", "55133018");
	kanal_harness_option(h, "sender_label", "Aarhus Kommune");
	kanal_harness_option(h, "timeout", "5s");
	kanal_harness_option(h, "ca_file", s_in(e, "ca.pem"));
	kanal_harness_option(h, "sts_url", e->sts_url);
	kanal_harness_option(h, "accesstoken_url", e->token_url);
	if (!strcmp(who, "client")) {
		kanal_harness_option(h, "certificate_p12", s_in(e, "client.p12"));
		kanal_harness_option(h, "certificate_password_file", s_in(e, "client.pass"));
	} else {
		snprintf(pem, sizeof pem, "%s.pem", who);
		snprintf(pkey, sizeof pkey, "%s.key", who);
		kanal_harness_option(h, "certificate", s_in(e, pem));
		kanal_harness_option(h, "certificate_key", s_in(e, pkey));
	}
	if (key)
		kanal_harness_option(h, key, value);
	if (kanal_harness_start(h, err) != 0)
		kanal_harness_destroy(&h);
	return h;
}

/* One https call to a simulator with the test's client certificate: the status. */
static long s_https(const sts_env_t *e, const char *method, const char *url)
{
	kc_cert_conf_t conf = { .pkcs12_file = s_in(e, "client.p12"),
				.password_file = s_in(e, "client.pass") };
	kc_http_opts_t o = { .timeout_ms = 5000, .ca_file = s_in(e, "ca.pem") };
	kanal_error_t err = { 0 };
	kc_response_t res = { .retry_after_ms = -1 };
	kc_cert_t *cert = NULL;
	kc_http_t *http;
	long status;

	if (kc_cert_load(&conf, &cert, &err) != 0)
		return -1;
	kc_cert_http_opts(cert, &o);
	http = kc_http_new(&o);
	kc_http_request(http, method, url, NULL, "", 0, &res);
	status = res.status;
	kc_response_clear(&res);
	kc_http_destroy(&http);
	kc_cert_destroy(&cert);
	return status;
}

/* Delivers letter id to CPR_MADS (enrolled): the outcome; *tx gets the TransmissionID of
 * its status event (or ""). */
static kanal_outcome_t s_sts_deliver(kanal_harness_t *h, const char *id, char tx[129])
{
	kanal_msg_t *m = s_msg(s_letter(id, CPR_MADS));
	kanal_outcome_t out;
	const char *t = NULL;

	kanal_harness_clear(h);
	out = kanal_harness_deliver(h, m, "letter-to-citizen");
	kanal_msg_destroy(&m);
	tx[0] = '\0';
	if (kanal_harness_emitted_count(h) == 1 &&
	    kanal_msg_data_str(kanal_harness_emitted(h, 0), "transaction", &t) == 0)
		snprintf(tx, 129, "%s", t);
	return out;
}

/* The letter goes with an SF1514 access token over mutual TLS, per entity ID, and a token
 * the platform stops accepting is renewed once, without a lost or repeated letter. */
static void test_sf1514_token_over_mutual_tls_and_renewal_after_401(void)
{
	sts_env_t e;
	kanal_harness_t *h = NULL;
	kanal_error_t err;
	char tx[129], url[160];

	CU_ASSERT_FATAL(s_sts_start(&e));
	h = s_sts_harness(&e, "client", NULL, NULL, &err);
	if (!h)
		fprintf(stderr, "digitalpost with the certificate: %s\n", err.text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_EQUAL(s_sts_deliver(h, "sts-1", tx), KANAL_OUTCOME_OK);
	CU_ASSERT_NOT_EQUAL(tx[0], '\0');
	if (!tx[0])
		fprintf(stderr, "letter sts-1: %s\n", kanal_harness_last_error(h));
	/* The platform stops accepting the tokens it issued: one 401, a new token, sent. */
	snprintf(url, sizeof url, "https://127.0.0.1:%d/sts/revoke", e.sts->port);
	CU_ASSERT_EQUAL(s_https(&e, "POST", url), 200);
	CU_ASSERT_EQUAL(s_sts_deliver(h, "sts-2", tx), KANAL_OUTCOME_OK);
	CU_ASSERT_NOT_EQUAL(tx[0], '\0');
	if (!tx[0])
		fprintf(stderr, "letter sts-2: %s\n", kanal_harness_last_error(h));
	kanal_harness_destroy(&h);
	s_sts_stop(&e);
}

/* What a municipality meets when the certificate or the token is wrong: never a letter on
 * paper for it — a RETRY (the letters wait for the fix) or a start refused saying why. */
static void test_sf1514_refusals_are_retried_or_refused_at_start(void)
{
	sts_env_t e;
	kanal_harness_t *h;
	kanal_error_t err;
	char tx[129];

	CU_ASSERT_FATAL(s_sts_start(&e));
	/* Expired: refused at start, saying so. */
	h = s_sts_harness(&e, "expired", NULL, NULL, &err);
	CU_ASSERT_PTR_NULL(h);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "expired"));
	kanal_harness_destroy(&h);
	/* Another CA's certificate: the STS refuses; RETRY saying what to check. */
	h = s_sts_harness(&e, "stranger", NULL, NULL, &err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_EQUAL(s_sts_deliver(h, "sts-stranger", tx), KANAL_OUTCOME_RETRY);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "CERTIFICATE_UNTRUSTED"));
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "service agreement"));
	kanal_harness_destroy(&h);
	/* A token for the wrong service (PostForespoerg's) is refused by KombiPostAfsend. */
	h = s_sts_harness(&e, "client", "entity_kombipostafsend", KC_STS_ENTITY_POSTFORESPOERG,
			  &err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_EQUAL(s_sts_deliver(h, "sts-wrong-entity", tx), KANAL_OUTCOME_RETRY);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "401"));
	kanal_harness_destroy(&h);
	/* A static token and the certificate together: a configuration error. */
	h = s_sts_harness(&e, "client", "token", "static-token", &err);
	CU_ASSERT_PTR_NULL(h);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "token"));
	kanal_harness_destroy(&h);
	/* No client certificate at all (a static token, as before SF1514): 401, RETRY. */
	kanal_error_clear(&err);
	h = kanal_harness_new(test_path("plugins/digitalpost.so"), "dp", &err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	kanal_harness_option(h, "base_url", e.dp_url);
	kanal_harness_option(h, "sender_cvr", "55133018");
	kanal_harness_option(h, "sender_label", "Aarhus Kommune");
	kanal_harness_option(h, "ca_file", s_in(&e, "ca.pem"));
	kanal_harness_option(h, "token", "not-from-the-sts");
	CU_ASSERT_EQUAL_FATAL(kanal_harness_start(h, &err), 0);
	CU_ASSERT_EQUAL(s_sts_deliver(h, "sts-no-cert", tx), KANAL_OUTCOME_RETRY);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "401"));
	kanal_harness_destroy(&h);
	s_sts_stop(&e);
}

/* The contract's call headers: a kombi_request without x-TransaktionsId/x-TransaktionsTid is
 * refused by the simulator (and nothing delivered), so the connector's letters passing it
 * shows they carry them. */
static void test_simulator_refuses_a_call_without_the_transaction_headers(void)
{
	upstream_t *up = upstream_start("digitalpost", NULL);
	char *xml = test_read_file("contracts/examples/sf1601/kombi_request.automatisk-valg.xml",
				   NULL),
	     *answer = NULL;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	CU_ASSERT_PTR_NOT_NULL_FATAL(xml);
	CU_ASSERT_EQUAL(upstream_http(up, "POST", "/service/KombiPostAfsend_1/kombi", xml,
				      "application/xml", &answer),
			400);
	CU_ASSERT_PTR_NOT_NULL(answer && strstr(answer, "x-TransaktionsId"));
	CU_ASSERT_EQUAL(s_count(up, "delivered"), 0);
	free(answer);
	free(xml);
	s_sim_stop(&up, 1); /* the refusal is counted as invalid */
}

static void test_bad_options_are_refused(void)
{
	static const struct {
		const char *key, *value, *named;
	} cases[] = {
		{ "sender_cvr", "5513301", "sender_cvr" },
		{ "channel", "Fysisk Post", "channel" },
		{ "base_url", "ftp://dp.example", "base_url" },
		/* CPR numbers in clear over the network: never. */
		{ "base_url", "http://digitalpost.example.dk", "base_url" },
		{ "base_url", "http://127.0.0.1.example.dk:80", "base_url" },
		{ "language", "DA", "language" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		kanal_error_t err;
		kanal_harness_t *h;

		kanal_error_clear(&err);
		h = kanal_harness_new(test_path("plugins/digitalpost.so"), "dp", &err);
		CU_ASSERT_PTR_NOT_NULL_FATAL(h);
		kanal_harness_option(h, "base_url", "http://127.0.0.1:9");
		kanal_harness_option(h, "sender_cvr", "55133018");
		kanal_harness_option(h, "sender_label", "Aarhus Kommune");
		kanal_harness_option(h, cases[i].key, cases[i].value);
		CU_ASSERT_NOT_EQUAL(kanal_harness_start(h, &err), 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(err.text, cases[i].named));
		if (!strstr(err.text, cases[i].named))
			fprintf(stderr, "option %s: error '%s'\n", cases[i].key, err.text);
		kanal_harness_destroy(&h);
	}
}

/* allow_plain_http is the one way to send letters over plain http to another machine; it
 * does not open other schemes. */
static void test_allow_plain_http_is_needed_for_a_remote_http_url(void)
{
	static const struct {
		const char *url, *allow;
		bool starts;
	} cases[] = {
		{ "http://digitalpost.example.dk", "false", false },
		{ "http://digitalpost.example.dk", "true", true },
		{ "ftp://digitalpost.example.dk", "true", false },
		{ "http://localhost.evil.example", "false", false },
	};

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		kanal_error_t err;
		kanal_harness_t *h;
		int rc;

		kanal_error_clear(&err);
		h = kanal_harness_new(test_path("plugins/digitalpost.so"), "dp", &err);
		CU_ASSERT_PTR_NOT_NULL_FATAL(h);
		kanal_harness_option(h, "base_url", cases[i].url);
		kanal_harness_option(h, "sender_cvr", "55133018");
		kanal_harness_option(h, "sender_label", "Aarhus Kommune");
		kanal_harness_option(h, "allow_plain_http", cases[i].allow);
		rc = kanal_harness_start(h, &err);
		CU_ASSERT_EQUAL(rc == 0, cases[i].starts);
		if (!cases[i].starts)
			CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "option 'base_url'"));
		if ((rc == 0) != cases[i].starts)
			fprintf(stderr, "%s (allow_plain_http %s): rc %d '%s'\n", cases[i].url,
				cases[i].allow, rc, err.text);
		kanal_harness_destroy(&h);
	}
}

/* ---- attachments from the blob store ------------------------------------------------------ */

/* A letter's attachment given by reference to a blob (as the http ingress's multipart upload
 * makes them) goes to the service as a MeMo AdditionalDocument holding the blob's bytes; an
 * attachment whose blob is gone is refused naming the field, and no letter is sent. */
static void test_attachment_from_a_blob_is_an_additional_document(void)
{
	static const char pdf[] = "%PDF-1.4 bilag til afgoerelsen";
	upstream_t *up = upstream_start("digitalpost", NULL);
	char *dir = test_tmpdir("dp-blobs"), blobs[600], path[128], *body = NULL, *text = NULL;
	kanal__blob_store_t *store = NULL;
	kanal_harness_t *h = NULL;
	kanal_blob_ref_t ref;
	kanal_error_t err;
	kanal_msg_t *m = NULL;
	json_t *letter = NULL, *data;
	const char *tx = NULL;
	xmlDocPtr doc = NULL;
	xmlNodePtr msg;

	REQUIRE(up != NULL && dir != NULL);
	kanal_error_clear(&err);
	h = kanal_harness_new(test_path("plugins/digitalpost.so"), "dp", &err);
	REQUIRE(h != NULL);
	kanal_harness_option(h, "base_url", up->url);
	kanal_harness_option(h, "sender_cvr", "55133018");
	kanal_harness_option(h, "sender_label", "Aarhus Kommune");
	kanal_harness_option(h, "timeout", "2s");
	kanal_harness_state_dir(h, dir);
	REQUIRE(kanal_harness_start(h, &err) == 0);
	/* The harness's blob store is <state_dir>/blobs, as kanald's is in its state_dir. */
	snprintf(blobs, sizeof blobs, "%s/blobs", dir);
	REQUIRE((store = kanal__blob_store_open_dir(blobs, 0, 0, NULL)) != NULL);
	REQUIRE(kanal__blob_put(store, pdf, strlen(pdf), "application/pdf", &ref, NULL) == 0);

	letter = s_letter("blob-1", CPR_MADS);
	data = json_object_get(letter, "data");
	json_object_set_new(data, "attachments",
			    json_pack("[{s:s, s:s, s:s}]", "filename", "Bilag 1.pdf", "href",
				      ref.uri, "mediaType", "application/pdf"));
	text = s_text(json_incref(letter));
	REQUIRE(kanal_msg_parse(text, strlen(text), 0, &m, NULL) == 0);
	REQUIRE(kanal_msg_set_attr(m, KANAL_BLOB_ATTRIBUTE, ref.uri, NULL) == 0);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, "letter-to-citizen"), KANAL_OUTCOME_OK);
	REQUIRE(kanal_harness_emitted_count(h) == 1);
	kanal_msg_data_str(kanal_harness_emitted(h, 0), "transaction", &tx);
	REQUIRE(tx != NULL);
	snprintf(path, sizeof path, "/digitalpost/v1/messages/%s", tx);
	REQUIRE(upstream_http(up, "GET", path, NULL, NULL, &body) == 200);
	doc = xmlReadMemory(body, (int)strlen(body), "memo.xml", NULL, XML_PARSE_NONET);
	REQUIRE(doc != NULL);
	msg = xmlDocGetRootElement(doc)->children;
	while (msg &&
	       !(msg->type == XML_ELEMENT_NODE && !strcmp((const char *)msg->name, "Message")))
		msg = msg->next;
	REQUIRE(msg != NULL);
	s_memo_is(msg, "MessageBody/AdditionalDocument/File/filename", "Bilag 1.pdf");
	s_memo_is(msg, "MessageBody/AdditionalDocument/File/encodingFormat", "application/pdf");
	/* base64 of the blob's bytes */
	s_memo_is(msg, "MessageBody/AdditionalDocument/File/content",
		  "JVBERi0xLjQgYmlsYWcgdGlsIGFmZ29lcmVsc2Vu");
	s_memo_is(msg, "MessageBody/MainDocument/File/filename", "Din plads i dagtilbud.pdf");

	/* The blob gone (dropped with a dead letter, say): refused, naming the attachment. */
	kanal_msg_destroy(&m);
	REQUIRE(kanal__blob_remove(store, ref.uri) == 0);
	json_object_set_new(letter, "id", json_string("blob-2"));
	free(text);
	text = s_text(json_incref(letter));
	REQUIRE(kanal_msg_parse(text, strlen(text), 0, &m, NULL) == 0);
	kanal_harness_clear(h);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, "letter-to-citizen"), KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "attachments.0.href"));
	CU_ASSERT_EQUAL(s_count(up, "delivered"), 1);
done:
	if (doc)
		xmlFreeDoc(doc);
	free(body);
	free(text);
	json_decref(letter);
	kanal_msg_destroy(&m);
	kanal_harness_destroy(&h);
	kanal__blob_store_destroy(&store);
	if (dir)
		test_rmdir_r(dir);
	free(dir);
	upstream_stop(&up);
}

TEST_MAIN("digitalpost", TEST(test_enrolled_citizen_gets_the_letter_digitally),
	  TEST(test_attachment_from_a_blob_is_an_additional_document),
	  TEST(test_exempt_citizen_gets_a_physical_letter),
	  TEST(test_lookup_says_not_enrolled_no_service_call),
	  TEST(test_invalid_letters_are_rejected_naming_the_field),
	  TEST(test_unavailable_service_is_retried_and_sends_one_letter),
	  TEST(test_garbage_and_hang_are_retried_within_the_timeout),
	  TEST(test_wrong_token_is_retried_not_sent_on_paper),
	  TEST(test_receipts_give_the_final_outcome),
	  TEST(test_receipts_are_taken_while_a_letter_is_sent),
	  TEST(test_sf1514_token_over_mutual_tls_and_renewal_after_401),
	  TEST(test_sf1514_refusals_are_retried_or_refused_at_start),
	  TEST(test_memo_has_the_required_elements), TEST(test_nemsms_channel),
	  TEST(test_filename_and_other_checks),
	  TEST(test_simulator_refuses_a_call_without_the_transaction_headers),
	  TEST(test_bad_options_are_refused),
	  TEST(test_allow_plain_http_is_needed_for_a_remote_http_url))
