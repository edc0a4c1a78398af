/*
 * tests/integration/test_daycare.c — the daycare connector with the real kanald and the
 * simulated daycare system (kanal-sim-daycare): parents' registrations become child.*
 * events with the agreed fields; the cursor survives a restart of kanald (nothing twice,
 * nothing skipped); the upstream failing in every way (503, garbage, hanging, dropping)
 * loses nothing and is logged without a clear CPR number; a malformed registration is
 * skipped without blocking the ones after it; a SYG absence posts one neutral notice even
 * when delivered twice; an unknown institution or type ends in the dead letters. Each test
 * runs its own simulator and kanald on ephemeral ports of 127.0.0.1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <kanal/cpr.h>

#include "blob_store.h"
#include "http_client.h"
#include "kanald.h"
#include "test.h"
#include "upstream.h"

#define WAIT 10000 /* ms: the bound of every wait */
#define TOKEN "test-token-7"

/* ---- helpers ------------------------------------------------------------------------------ */

/* One authorised call to the simulator's API; returns the status, the body in *out (may be
 * NULL). */
static long s_api(upstream_t *up, const char *method, const char *path, const char *body,
		  char **out)
{
	static const char *const json[] = { "Content-Type: application/json", NULL };
	http_answer_t a;
	char url[512];
	long status;

	snprintf(url, sizeof url, "%s%s", up->url, path);
	status = http_request(NULL,
			      &(http_request_t){ .method = method,
						 .url = url,
						 .headers = json,
						 .bearer = TOKEN,
						 .body = body,
						 .timeout_ms = 5000 },
			      &a);
	if (out) {
		*out = a.body;
		a.body = NULL;
	}
	http_answer_clear(&a);
	return status;
}

/* POSTs a registration; asserts the simulator took it. */
static void s_register(upstream_t *up, const char *query, const char *json)
{
	char path[128];
	char *out = NULL;
	long st;

	snprintf(path, sizeof path, "/api/v1/registrations%s", query ? query : "");
	st = s_api(up, "POST", path, json, &out);
	CU_ASSERT_EQUAL(st, 201);
	if (st != 201)
		fprintf(stderr, "POST registration: %ld %s\n", st, out ? out : "");
	free(out);
}

static upstream_t *s_sim(const char *a1, const char *a2, const char *a3, const char *a4)
{
	const char *args[] = { "--set", "token=" TOKEN, a1, a2, a3, a4, NULL };
	return upstream_start("daycare", args);
}

/* A kanald with the daycare instance (pointed at up, with options `extra`), a sink `out`
 * for child.* events, and `routes` (NULL: child.> to out). The pseudonym key is written
 * before the start. */
static kd_t *s_kanald(const char *tag, upstream_t *up, const char *extra_opts, const char *journal,
		      const char *routes)
{
	char *inst, *conf, *key;
	kd_t *kd;

	if (asprintf(&inst,
		     "  - name: daycare\n    plugin: daycare\n    options:\n"
		     "      base_url: %s\n      token: %s\n      poll_interval: 100ms\n"
		     "      timeout: 500ms\n      max_backoff: 800ms\n"
		     "      pseudonym_key: '@DIR@/pseudonym.key'\n%s"
		     "  - name: out\n    plugin: sink\n    options: { path: '@DIR@/out.jsonl' }\n",
		     up->url, TOKEN, extra_opts ? extra_opts : "") < 0)
		return NULL;
	conf = kd_config(inst, journal);
	kd = kd_prepare(tag, conf,
			routes ? routes
			       : "routes:\n  - name: children\n    match: { type: child.> }\n"
				 "    to: out\n");
	key = test_write_file(kd->dir, "pseudonym.key", "kanal-test-pseudonym-key-0123456789\n");
	chmod(key, 0600);
	free(key);
	free(inst);
	free(conf);
	if (kd_launch(kd) != 0) {
		char *log = kd_log(kd);
		fprintf(stderr, "kanald did not start:\n%s\n", log ? log : "");
		free(log);
		kd_destroy(&kd);
	}
	return kd;
}

/* The sink's lines as JSON events, in file order (a new array). */
static json_t *s_events(kd_t *kd)
{
	char *text = test_read_file(kd_path(kd, "out.jsonl"), NULL);
	json_t *all = json_array();
	char *save = NULL;

	for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		json_t *e = json_loads(line, 0, NULL);
		if (e)
			json_array_append_new(all, e);
	}
	free(text);
	return all;
}

static json_t *s_event_by_id(json_t *all, const char *id)
{
	size_t i;
	json_t *e;

	json_array_foreach(
		all, i, e) if (!strcmp(json_string_value(json_object_get(e, "id")), id)) return e;
	return NULL;
}

static const char *s_data(json_t *e, const char *field)
{
	return json_string_value(json_object_get(json_object_get(e, "data"), field));
}

/* Asserts the sink holds exactly the events daycare-reg-<first> … <last>, once each, in
 * registration order. */
static void s_assert_exactly(kd_t *kd, int first, int last)
{
	json_t *all = s_events(kd);
	size_t i;
	json_t *e;

	CU_ASSERT_EQUAL(json_array_size(all), (size_t)(last - first + 1));
	json_array_foreach(all, i, e)
	{
		char want[40];
		snprintf(want, sizeof want, "daycare-reg-%d", first + (int)i);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "id")), want);
	}
	json_decref(all);
}

static bool s_log_has(kd_t *kd, const char *needle)
{
	char *log = kd_log(kd);
	bool has = log && strstr(log, needle);

	free(log);
	return has;
}

static bool s_wait_log(kd_t *kd, const char *needle)
{
	char *log;

	for (int waited = 0; waited < WAIT; waited += 50) {
		if (s_log_has(kd, needle))
			return true;
		test_sleep_ms(50);
	}
	log = kd_log(kd);
	fprintf(stderr, "kanald's log has no '%s':\n%s\n", needle, log ? log : "");
	free(log);
	return false;
}

/* Waits until GET path answers a body holding every needle; returns it or NULL. */
static char *s_wait_api(upstream_t *up, const char *path, const char *n1, const char *n2)
{
	for (int waited = 0; waited < WAIT; waited += 50) {
		char *out = NULL;
		if (s_api(up, "GET", path, NULL, &out) == 200 && out && strstr(out, n1) &&
		    (!n2 || strstr(out, n2)))
			return out;
		free(out);
		test_sleep_ms(50);
	}
	return NULL;
}

static bool s_log_clean(kd_t *kd)
{
	char *log = kd_log(kd);
	bool clean = log && !kd_has_clear_cpr(log);

	if (!clean && log)
		fprintf(stderr, "kanald's log holds a clear CPR number\n");
	free(log);
	return clean;
}

static void s_today(char buf[11], int offset)
{
	time_t t = time(NULL) + (time_t)offset * 86400;
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, 11, "%Y-%m-%d", &tm);
}

/* ---- registrations in -------------------------------------------------------------------- */

static void test_registrations_become_events(void)
{
	upstream_t *up = s_sim("--set", "initial=11", NULL, NULL);
	/* The daycare destination confirms the absence reports it takes
	 * (child.report.confirmed): the sink gets the registrations only. */
	const char *routes = "routes:\n"
			     "  - name: children\n    match: { type: child.>, where: 'type != "
			     "\"child.report.confirmed\"' }\n    to: out\n"
			     "  - name: child-absence-to-staffing\n"
			     "    match: { type: child.absence.* }\n    to: daycare\n";
	kd_t *kd;
	void *sub;
	json_t *all, *e, *days;
	char today[11], *p, *text;
	size_t i;
	int happenings = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	kd = s_kanald("dc-events", up, NULL, NULL, routes);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	s_today(today, 0);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 11, WAIT), 11);
	all = s_events(kd);

	/* A sick report: one day, today, with the child's CPR in data only. */
	e = s_event_by_id(all, "daycare-reg-1001");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "type")),
			       "child.absence.reported");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "source")), "daycare");
	CU_ASSERT_STRING_EQUAL(s_data(e, "reason"), "sick");
	CU_ASSERT_STRING_EQUAL(s_data(e, "institution"), "solsikken");
	CU_ASSERT_STRING_EQUAL(s_data(e, "child"), "child-101");
	CU_ASSERT_STRING_EQUAL(s_data(e, "child_cpr"), "1404214382");
	CU_ASSERT_STRING_EQUAL(s_data(e, "from"), today);
	CU_ASSERT_STRING_EQUAL(s_data(e, "to"), today);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(e, "data"), "days")), 1);
	CU_ASSERT_STRING_EQUAL(s_data(e, "reported_by"), "guardian-2");
	CU_ASSERT_PTR_NOT_NULL(s_data(e, "comment"));
	CU_ASSERT_PTR_NOT_NULL(json_object_get(e, "time"));
	p = (char *)json_string_value(json_object_get(e, "subject"));
	CU_ASSERT(p && !strncmp(p, "person:", 7) && strlen(p) == 7 + 64);

	e = s_event_by_id(all, "daycare-reg-1002");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "type")), "child.checkin");
	CU_ASSERT(s_data(e, "at") && !strncmp(s_data(e, "at"), today, 10));

	/* A pickup by a named person, one day. */
	e = s_event_by_id(all, "daycare-reg-1004");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "type")),
			       "child.pickup.planned");
	CU_ASSERT_STRING_EQUAL(s_data(e, "mode"), "person");
	CU_ASSERT_STRING_EQUAL(s_data(e, "person"), "Mormor Inge");
	CU_ASSERT_STRING_EQUAL(s_data(e, "time"), "15:30");
	CU_ASSERT_PTR_NULL(json_object_get(json_object_get(e, "data"), "weekdays"));

	/* A holiday of five days. */
	e = s_event_by_id(all, "daycare-reg-1005");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(s_data(e, "reason"), "holiday");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(e, "data"), "days")), 5);

	/* A survey answer, day by day. */
	e = s_event_by_id(all, "daycare-reg-1006");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "type")),
			       "child.vacation.registered");
	CU_ASSERT_PTR_NOT_NULL(s_data(e, "deadline"));
	days = json_object_get(json_object_get(e, "data"), "days");
	CU_ASSERT_EQUAL(json_array_size(days), 5);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_array_get(days, 0), "answer")), "away");

	/* A weekly plan: going home with a friend on Mondays and Thursdays. */
	e = s_event_by_id(all, "daycare-reg-1007");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(s_data(e, "mode"), "with-friend");
	CU_ASSERT_EQUAL(json_array_size(json_object_get(json_object_get(e, "data"), "weekdays")),
			2);

	/* The holiday withdrawn names the report it withdraws. */
	e = s_event_by_id(all, "daycare-reg-1008");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "type")),
			       "child.absence.withdrawn");
	CU_ASSERT_STRING_EQUAL(s_data(e, "report"), "daycare-reg-1005");

	e = s_event_by_id(all, "daycare-reg-1010");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "type")), "child.checkout");
	CU_ASSERT_STRING_EQUAL(s_data(e, "status"), "collected");

	/* No CPR number in any context attribute; registration order kept. */
	json_array_foreach(all, i, e)
	{
		const char *attrs[] = { "id", "source", "subject", "type" };
		char want[40];
		for (size_t k = 0; k < 4; k++)
			CU_ASSERT(
				!kd_has_clear_cpr(json_string_value(json_object_get(e, attrs[k]))));
		snprintf(want, sizeof want, "daycare-reg-%zu", 1001 + i);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "id")), want);
	}
	json_decref(all);

	/* A registration a parent makes now arrives too, and the event stream around it shows
	 * no CPR number in clear. */
	sub = kd_subscribe(kd, "");
	s_register(up, NULL,
		   "{\"kind\": \"sick\", \"child_id\": \"child-202\", \"date\": \"2026-03-02\"}");
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 12, WAIT), 12);
	for (char topic[256]; kd_next(sub, topic, sizeof topic, &p, 500) == 0; free(p)) {
		happenings++;
		CU_ASSERT(!kd_has_clear_cpr(topic));
		CU_ASSERT(!kd_has_clear_cpr(p));
	}
	CU_ASSERT(happenings > 0);
	kd_unsubscribe(&sub);

	/* The absences reached the staffing view: the sick child, the withdrawn holiday. */
	text = s_wait_api(up, "/api/v1/institutions/solsikken/staffing", "\"child-101\"",
			  "daycare-reg-1001");
	CU_ASSERT_PTR_NOT_NULL(text);
	free(text);
	text = s_wait_api(up, "/api/v1/institutions/maelkeboetten/staffing", "\"cancelled\"",
			  "daycare-reg-1005");
	CU_ASSERT_PTR_NOT_NULL(text);
	free(text);

	CU_ASSERT(s_log_clean(kd));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
	upstream_stop(&up);
}

static void test_cursor_survives_restart(void)
{
	/* Without the journal kanald suppresses no duplicates: only the cursor can keep the
	 * first five from being emitted again after the restart. */
	upstream_t *up = s_sim("--set", "initial=5", NULL, NULL);
	kd_t *kd;
	char *cursor;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	kd = s_kanald("dc-restart", up, NULL, "journal: { mode: memory }\n", NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 5, WAIT), 5);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	cursor = test_read_file(kd_path(kd, "state/daycare/cursor"), NULL);
	CU_ASSERT_PTR_NOT_NULL(cursor);
	CU_ASSERT(cursor && !strcmp(cursor, "c_5\n"));
	free(cursor);

	/* Parents go on registering while kanald is down. */
	s_register(up, NULL,
		   "{\"kind\": \"sick\", \"child_id\": \"child-103\", \"date\": \"2026-03-02\"}");
	s_register(up, NULL,
		   "{\"kind\": \"holiday\", \"child_id\": \"child-101\", "
		   "\"from\": \"2026-07-06\", \"to\": \"2026-07-24\"}");
	s_register(up, NULL,
		   "{\"kind\": \"pickup\", \"child_id\": \"child-201\", \"date\": "
		   "\"2026-03-02\", \"time\": \"14:00\", \"mode\": \"alone\"}");
	CU_ASSERT_EQUAL_FATAL(kd_restart(kd), 0);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 8, WAIT), 8);
	test_sleep_ms(500); /* several more polls: nothing more may come */
	s_assert_exactly(kd, 1001, 1008);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
	upstream_stop(&up);
}

/* ---- the upstream failing ---------------------------------------------------------------- */

/* The simulator starts with `mode` on and adds six registrations meanwhile; nothing
 * arrives while the fault lasts, all six arrive once it ends, once each and in order, and
 * the log names the call and the cause without a clear CPR number. */
static void s_fault_case(const char *mode, const char *cause)
{
	const char *args[] = { "--set",   "token=" TOKEN, "--set", "rate_ms=30", "--set",
			       "count=6", "--fault",      mode,    NULL };
	upstream_t *up = upstream_start("daycare", args);
	kd_t *kd;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	kd = s_kanald("dc-fault", up, NULL, NULL, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT(s_wait_log(kd, "upstream error: GET /api/v1/registrations"));
	CU_ASSERT(s_wait_log(kd, cause));
	CU_ASSERT(s_wait_log(kd, "2 in a row")); /* it keeps trying, with backoff */
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 0);
	CU_ASSERT_EQUAL(upstream_fault(up, "none", 0), 0);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 6, WAIT), 6);
	test_sleep_ms(400);
	s_assert_exactly(kd, 1001, 1006);
	CU_ASSERT(s_log_has(kd, "upstream answers again"));
	CU_ASSERT(s_log_clean(kd));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
	upstream_stop(&up);
}

static void test_upstream_error_loses_nothing(void)
{
	s_fault_case("error", "HTTP 503");
}

static void test_upstream_garbage_loses_nothing(void)
{
	s_fault_case("garbage", "answer is not JSON");
}

static void test_upstream_hang_loses_nothing(void)
{
	s_fault_case("hang", "no answer: Operation timed out");
}

static void test_upstream_drop_loses_nothing(void)
{
	s_fault_case("drop", "no answer: ");
}

static void test_malformed_registration_is_skipped(void)
{
	upstream_t *up = s_sim(NULL, NULL, NULL, NULL);
	kd_t *kd;
	json_t *all;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	s_register(up, NULL,
		   "{\"kind\": \"sick\", \"child_id\": \"child-101\", \"date\": \"2026-03-02\"}");
	s_register(up, "?unchecked=true",
		   "{\"kind\": \"holiday\", \"child_id\": \"child-102\", "
		   "\"from\": \"2026-13-45\", \"to\": \"2026-07-24\"}");
	s_register(up, "?unchecked=true", "{\"kind\": \"teleport\", \"child_id\": \"child-103\"}");
	s_register(up, NULL,
		   "{\"kind\": \"checkin\", \"child_id\": \"child-202\", "
		   "\"at\": \"2026-03-02T07:30:00+01:00\"}");
	kd = s_kanald("dc-malformed", up, NULL, NULL, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 2, WAIT), 2);
	CU_ASSERT(s_wait_log(kd, "registration 1002 skipped: holiday: 'from' is not a date"));
	CU_ASSERT(s_wait_log(kd, "registration 1003 skipped: unknown kind 'teleport'"));
	/* The cursor went past them: a later registration arrives, the bad ones never. */
	s_register(up, NULL,
		   "{\"kind\": \"day-off\", \"child_id\": \"child-103\", "
		   "\"from\": \"2026-03-06\", \"to\": \"2026-03-06\"}");
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 3, WAIT), 3);
	test_sleep_ms(300);
	all = s_events(kd);
	CU_ASSERT_EQUAL(json_array_size(all), 3);
	CU_ASSERT_PTR_NOT_NULL(s_event_by_id(all, "daycare-reg-1001"));
	CU_ASSERT_PTR_NOT_NULL(s_event_by_id(all, "daycare-reg-1004"));
	CU_ASSERT_PTR_NOT_NULL(s_event_by_id(all, "daycare-reg-1005"));
	json_decref(all);
	CU_ASSERT(s_log_clean(kd));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
	upstream_stop(&up);
}

/* ---- notices and staffing out -------------------------------------------------------------- */

static const char *s_staff_routes =
	"routes:\n"
	"  - name: staff-sickness-to-parents\n"
	"    match: { type: staff.absence.registered, where: 'data.code == \"SYG\"' }\n"
	"    to: daycare\n"
	"    retry: { max_attempts: 6, backoff: 200ms, max_backoff: 1s }\n"
	"  - name: staff-cancel\n"
	"    match: { type: staff.absence.cancelled }\n"
	"    to: daycare\n"
	"  - name: notices\n"
	"    match: { type: daycare.> }\n"
	"    to: daycare\n"
	"  - name: strays\n"
	"    match: { type: demo.> }\n"
	"    to: daycare\n";

/* Sends one event from the HR system; asserts the gateway accepted it. */
static void s_send(kd_t *kd, const char *id, const char *type, const char *data)
{
	char *e = kd_event("hr", id, type, data);

	CU_ASSERT(e && kd_send_event(kd, e, "accepted", WAIT, NULL));
	free(e);
}

static void test_syg_absence_posts_one_neutral_notice(void)
{
	/* The simulator stores the first notice but loses its answer (503): kanald retries,
	 * the same notice is posted again with the same Idempotency-Key. */
	upstream_t *up = s_sim("--set", "lose_notice_answers=1", NULL, NULL);
	kd_t *kd;
	void *sub;
	char *p, *text, data[512], today[11];
	json_t *root;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	kd = s_kanald("dc-notice", up, "      role: destination\n", NULL, s_staff_routes);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	s_today(today, 0);
	sub = kd_subscribe(kd, "");
	snprintf(data, sizeof data,
		 "{\"absence\":\"A-77\",\"version\":1,\"employment\":\"E-1001\","
		 "\"employee_cpr\":\"1807794260\",\"department\":\"solsikken\",\"code\":\"SYG\","
		 "\"from\":\"%s\",\"to\":\"%s\"}",
		 today, today);
	s_send(kd, "hr-absence-A-77-v1", "staff.absence.registered", data);
	p = kd_expect(sub, "retrying staff.absence.registered", NULL, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	p = kd_expect(sub, "delivered staff.absence.registered", NULL, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);

	/* A second SYG absence meets a plain 503 first (nothing stored): one notice too. */
	CU_ASSERT_EQUAL(upstream_fault(up, "error", 1), 0);
	snprintf(data, sizeof data,
		 "{\"absence\":\"A-78\",\"version\":1,\"employment\":\"E-1002\","
		 "\"employee_cpr\":\"2305824311\",\"department\":\"solsikken\",\"code\":\"SYG\","
		 "\"from\":\"%s\",\"to\":\"%s\"}",
		 today, today);
	s_send(kd, "hr-absence-A-78-v1", "staff.absence.registered", data);
	p = kd_expect(sub, "delivered staff.absence.registered", "hr-absence-A-78-v1", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);

	CU_ASSERT_EQUAL(s_api(up, "GET", "/api/v1/institutions/solsikken/notices", NULL, &text),
			200);
	root = json_loads(text ? text : "{}", 0, NULL);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(root, "notices")), 2);
	json_decref(root);
	if (text) {
		/* Neutral: the default text, no code, no name, no CPR number. */
		CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"title\":\"Personale\""));
		CU_ASSERT_PTR_NOT_NULL(strstr(text, "Vi har styr p"));
		CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"source_event\":\"hr-absence-A-77-v1\""));
		CU_ASSERT_PTR_NULL(strcasestr(text, "syg"));
		CU_ASSERT_PTR_NULL(strstr(text, "Hanne"));
		CU_ASSERT(!kd_has_clear_cpr(text));
	}
	free(text);

	/* The staffing view knows the employee is away (by employment id, no code). */
	text = s_wait_api(up, "/api/v1/institutions/solsikken/staffing",
			  "\"external_id\":\"staff-absence-A-77\"", "\"ref\":\"E-1001\"");
	CU_ASSERT_PTR_NOT_NULL(text);
	CU_ASSERT(text && !strcasestr(text, "syg") && !kd_has_clear_cpr(text));
	free(text);
	/* A cancellation cancels that entry. */
	s_send(kd, "hr-absence-A-77-cancel", "staff.absence.cancelled",
	       "{\"absence\":\"A-77\",\"employment\":\"E-1001\",\"department\":\"solsikken\"}");
	text = s_wait_api(up, "/api/v1/institutions/solsikken/staffing", "\"cancelled\"",
			  "hr-absence-A-77-cancel");
	CU_ASSERT_PTR_NOT_NULL(text);
	free(text);
	kd_unsubscribe(&sub);
	CU_ASSERT(s_log_clean(kd));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
	upstream_stop(&up);
}

/* Sends HR event `id` of `type` with `data` and waits until kanald delivered it. */
static void s_send_delivered(kd_t *kd, void *sub, const char *id, const char *type,
			     const char *data)
{
	char *p;

	s_send(kd, id, type, data);
	p = kd_expect(sub, "delivered", id, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	if (!p)
		fprintf(stderr, "%s was not delivered\n", id);
	free(p);
}

/* The institution's list `what` (notices or staffing) as JSON (a new reference). */
static json_t *s_list(upstream_t *up, const char *inst, const char *what)
{
	char path[200], *text = NULL;
	json_t *root, *list;

	snprintf(path, sizeof path, "/api/v1/institutions/%s/%s", inst, what);
	CU_ASSERT_EQUAL(s_api(up, "GET", path, NULL, &text), 200);
	root = json_loads(text ? text : "{}", 0, NULL);
	free(text);
	list = json_incref(json_object_get(root, what));
	json_decref(root);
	return list ? list : json_array();
}

static json_t *s_by_ext(json_t *list, const char *ext)
{
	size_t i;
	json_t *e;

	json_array_foreach(
		list, i,
		e) if (json_string_value(json_object_get(e, "external_id")) &&
		       !strcmp(json_string_value(json_object_get(e, "external_id")), ext)) return e;
	return NULL;
}

static const char *s_field(json_t *e, const char *name)
{
	const char *v = json_string_value(json_object_get(e, name));
	return v ? v : "";
}

static void s_hr(char *buf, size_t size, const char *absence, int version, const char *emp,
		 const char *code, const char *from, const char *to, const char *extra)
{
	snprintf(buf, size,
		 "{\"absence\":\"%s\",\"version\":%d,\"employment\":\"%s\","
		 "\"employee_cpr\":\"1807794260\",\"department\":\"solsikken\",\"code\":\"%s\","
		 "\"from\":\"%s\",\"to\":\"%s\"%s}",
		 absence, version, emp, code, from, to, extra ? extra : "");
}

static void test_one_notice_per_absence(void)
{
	upstream_t *up = s_sim(NULL, NULL, NULL, NULL);
	kd_t *kd;
	void *sub;
	char data[600], d0[11], d1[11], d2[11];
	json_t *notices, *n;
	const char *id;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	kd = s_kanald("dc-versions", up, "      role: destination\n", NULL,
		      "routes:\n  - name: staff\n    match: { type: staff.> }\n    to: daycare\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	sub = kd_subscribe(kd, "");
	s_today(d0, 0);
	s_today(d1, 1);
	s_today(d2, 2);

	/* Version 1 posts the notice. */
	s_hr(data, sizeof data, "A-90", 1, "E-1001", "SYG", d0, d0, NULL);
	s_send_delivered(kd, sub, "hr-absence-A-90-v1", "staff.absence.registered", data);
	notices = s_list(up, "solsikken", "notices");
	CU_ASSERT_EQUAL(json_array_size(notices), 1);
	n = s_by_ext(notices, "staff-absence-A-90");
	CU_ASSERT_PTR_NOT_NULL_FATAL(n);
	id = strdup(s_field(n, "id"));
	json_decref(notices);

	/* Version 2 changes only the hours and the end (parents see neither): nothing new. */
	s_hr(data, sizeof data, "A-90", 2, "E-1001", "SYG", d0, d1, ",\"hours\":3.5");
	s_send_delivered(kd, sub, "hr-absence-A-90-v2", "staff.absence.registered", data);
	notices = s_list(up, "solsikken", "notices");
	CU_ASSERT_EQUAL(json_array_size(notices), 1);
	n = s_by_ext(notices, "staff-absence-A-90");
	CU_ASSERT(n && json_integer_value(json_object_get(n, "revision")) == 1);
	CU_ASSERT(n && !json_object_get(n, "updated"));
	json_decref(notices);

	/* Version 3 moves the first day: the same notice (same id) is updated. */
	s_hr(data, sizeof data, "A-90", 3, "E-1001", "SYG", d1, d2, NULL);
	s_send_delivered(kd, sub, "hr-absence-A-90-v3", "staff.absence.registered", data);
	notices = s_list(up, "solsikken", "notices");
	CU_ASSERT_EQUAL(json_array_size(notices), 1);
	n = s_by_ext(notices, "staff-absence-A-90");
	CU_ASSERT(n && !strcmp(s_field(n, "id"), id));
	CU_ASSERT(n && !strcmp(s_field(n, "date"), d1));
	CU_ASSERT(n && json_integer_value(json_object_get(n, "revision")) == 2);
	json_decref(notices);

	/* A late version 2 (another id: the bus does not drop it) changes nothing back. */
	s_hr(data, sizeof data, "A-90", 2, "E-1001", "SYG", d0, d1, ",\"late\":true");
	s_send_delivered(kd, sub, "hr-absence-A-90-v2-late", "staff.absence.registered", data);
	notices = s_list(up, "solsikken", "notices");
	n = s_by_ext(notices, "staff-absence-A-90");
	CU_ASSERT(n && !strcmp(s_field(n, "date"), d1));
	json_decref(notices);
	notices = s_list(up, "solsikken", "staffing");
	n = s_by_ext(notices, "staff-absence-A-90");
	CU_ASSERT(n && !strcmp(s_field(n, "from"), d1) && !strcmp(s_field(n, "to"), d2));
	CU_ASSERT(n && !strcmp(s_field(n, "absence_kind"), "sick"));
	json_decref(notices);

	/* The other codes reach the staffing view with their kind, and post no notice. */
	s_hr(data, sizeof data, "A-91", 1, "E-1002", "BARN1", d0, d0, NULL);
	s_send_delivered(kd, sub, "hr-absence-A-91-v1", "staff.absence.registered", data);
	s_hr(data, sizeof data, "A-92", 1, "E-1003", "BARN2", d0, d0, NULL);
	s_send_delivered(kd, sub, "hr-absence-A-92-v1", "staff.absence.registered", data);
	s_hr(data, sizeof data, "A-93", 1, "E-1004", "OMSORG", d0, d0, NULL);
	s_send_delivered(kd, sub, "hr-absence-A-93-v1", "staff.absence.registered", data);
	s_hr(data, sizeof data, "A-94", 1, "E-1005", "AFSP", d0, d0, ",\"hours\":2");
	s_send_delivered(kd, sub, "hr-absence-A-94-v1", "staff.absence.registered", data);
	s_hr(data, sizeof data, "A-95", 1, "E-1006", "FERIE", d1, d2, ",\"days\":2");
	s_send_delivered(kd, sub, "hr-absence-A-95-v1", "staff.holiday.registered", data);
	notices = s_list(up, "solsikken", "staffing");
	CU_ASSERT_STRING_EQUAL(s_field(s_by_ext(notices, "staff-absence-A-91"), "absence_kind"),
			       "child-sick");
	CU_ASSERT_STRING_EQUAL(s_field(s_by_ext(notices, "staff-absence-A-92"), "absence_kind"),
			       "child-sick");
	CU_ASSERT_STRING_EQUAL(s_field(s_by_ext(notices, "staff-absence-A-93"), "absence_kind"),
			       "care-day");
	CU_ASSERT_STRING_EQUAL(s_field(s_by_ext(notices, "staff-absence-A-94"), "absence_kind"),
			       "time-off");
	CU_ASSERT_STRING_EQUAL(s_field(s_by_ext(notices, "staff-absence-A-95"), "absence_kind"),
			       "holiday");
	CU_ASSERT_STRING_EQUAL(s_field(s_by_ext(notices, "staff-absence-A-95"), "ref"), "E-1006");
	json_decref(notices);
	notices = s_list(up, "solsikken", "notices");
	CU_ASSERT_EQUAL(json_array_size(notices), 1);
	json_decref(notices);

	/* The (bare) cancellation withdraws the one notice and cancels the staffing entry. */
	s_send_delivered(kd, sub, "hr-absence-A-90-v4-cancel", "staff.absence.cancelled",
			 "{\"absence\":\"A-90\",\"version\":4,\"employment\":\"E-1001\","
			 "\"department\":\"solsikken\"}");
	notices = s_list(up, "solsikken", "notices");
	CU_ASSERT_EQUAL(json_array_size(notices), 1);
	n = s_by_ext(notices, "staff-absence-A-90");
	CU_ASSERT(n && !strcmp(s_field(n, "status"), "withdrawn") && !strcmp(s_field(n, "id"), id));
	json_decref(notices);
	/* … and a late version 3 after it does not bring either back. */
	s_hr(data, sizeof data, "A-90", 3, "E-1001", "SYG", d1, d2, ",\"late\":true");
	s_send_delivered(kd, sub, "hr-absence-A-90-v3-late", "staff.absence.registered", data);
	notices = s_list(up, "solsikken", "notices");
	CU_ASSERT_STRING_EQUAL(s_field(s_by_ext(notices, "staff-absence-A-90"), "status"),
			       "withdrawn");
	json_decref(notices);
	notices = s_list(up, "solsikken", "staffing");
	CU_ASSERT_STRING_EQUAL(s_field(s_by_ext(notices, "staff-absence-A-90"), "status"),
			       "cancelled");
	json_decref(notices);

	free((char *)id);
	kd_unsubscribe(&sub);
	CU_ASSERT(s_log_clean(kd));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
	upstream_stop(&up);
}

static void test_rejects_end_in_dead_letters(void)
{
	upstream_t *up = s_sim(NULL, NULL, NULL, NULL);
	kd_t *kd;
	char *reply = NULL, *text = NULL;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	kd = s_kanald("dc-dead", up, "      role: destination\n", NULL, s_staff_routes);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	s_send(kd, "notice-nowhere", "daycare.notice.post",
	       "{\"institution\":\"nowhere\",\"title\":\"Lukket\",\"text\":\"Vi holder lukket.\"}");
	s_send(kd, "stray-1", "demo.stray", "{}");
	s_send(kd, "notice-ok", "daycare.notice.post",
	       "{\"institution\":\"maelkeboetten\",\"title\":\"Tur\",\"text\":\"Vi går i "
	       "skoven.\"}");
	for (int waited = 0; waited < WAIT; waited += 100) {
		free(reply);
		reply = kd_admin(kd, "{\"cmd\":\"dlq.list\"}", WAIT);
		if (reply && strstr(reply, "notice-nowhere") && strstr(reply, "stray-1"))
			break;
		test_sleep_ms(100);
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"event_id\":\"notice-nowhere\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"event_id\":\"stray-1\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"reason\":\"rejected\""));
	CU_ASSERT_PTR_NULL(strstr(reply, "notice-ok"));
	/* Each letter's error names the call and its answer, or the unknown type. */
	CU_ASSERT_PTR_NOT_NULL(
		strstr(reply, "POST /api/v1/institutions/nowhere/notices: HTTP 404"));
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "cannot handle events of type 'demo.stray'"));
	if (!strstr(reply, "HTTP 404") || !strstr(reply, "'demo.stray'"))
		fprintf(stderr, "dlq.list: %s\n", reply);
	free(reply);
	text = s_wait_api(up, "/api/v1/institutions/maelkeboetten/notices", "\"Tur\"", NULL);
	CU_ASSERT_PTR_NOT_NULL(text);
	free(text);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
	upstream_stop(&up);
}

/* ---- the simulator's own API ----------------------------------------------------------------- */

static void test_simulator_api(void)
{
	upstream_t *up = s_sim("--set", "initial=3", NULL, NULL);
	char *out = NULL;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	/* No token, no data. */
	CU_ASSERT_EQUAL(upstream_http(up, "GET", "/api/v1/registrations", NULL, NULL, &out), 401);
	CU_ASSERT(out && !kd_has_clear_cpr(out));
	free(out);
	/* Cursor paging. */
	CU_ASSERT_EQUAL(s_api(up, "GET", "/api/v1/registrations?limit=2", NULL, &out), 200);
	CU_ASSERT(out && strstr(out, "\"1002\"") && !strstr(out, "\"1003\"") &&
		  strstr(out, "\"next\":\"c_2\"") && strstr(out, "\"has_more\":true"));
	free(out);
	CU_ASSERT_EQUAL(s_api(up, "GET", "/api/v1/registrations?after=c_2", NULL, &out), 200);
	CU_ASSERT(out && strstr(out, "\"1003\"") && !strstr(out, "\"1002\"") &&
		  strstr(out, "\"has_more\":false"));
	free(out);
	/* Malformed bodies get 400 and a JSON reason; unknown institutions 404. */
	CU_ASSERT_EQUAL(
		s_api(up, "POST", "/api/v1/institutions/solsikken/notices", "{\"title\":", &out),
		400);
	CU_ASSERT(out && strstr(out, "\"error\""));
	free(out);
	CU_ASSERT_EQUAL(
		s_api(up, "POST", "/api/v1/registrations",
		      "{\"kind\":\"sick\",\"child_id\":\"child-101\",\"date\":\"2026-02-30\"}",
		      &out),
		400);
	free(out);
	CU_ASSERT_EQUAL(s_api(up, "GET", "/api/v1/institutions/nowhere/staffing", NULL, &out), 404);
	CU_ASSERT(out && strstr(out, "unknown institution"));
	free(out);
	upstream_stop(&up);
}

/* ---- a notice with its photos (claim check) ---------------------------------------------- */

/* The parents' app posts a notice with two photos to the http ingress (multipart): the
 * photos go into the blob store, the notice event carries references, and the daycare
 * connector posts the notice with the photos themselves — whole, as the simulator's SHA-256
 * of each proves — after which kanald removes the blobs. */
static void test_notice_is_posted_with_its_photos(void)
{
	upstream_t *up = s_sim(NULL, NULL, NULL, NULL);
	static const char photo1[] = "\xff\xd8\xff\xe0 forest trip, photo 1";
	static const char photo2[] = "\xff\xd8\xff\xe0 forest trip, photo 2, the bonfire";
	const char *headers[] = { "Content-Type: multipart/form-data; boundary=b0undary", NULL };
	char url[128], hex1[65], hex2[65], *body = NULL, *text = NULL, *port = NULL, *tmp = NULL;
	size_t len = 0;
	FILE *f;
	kd_t *kd;
	http_answer_t a = { 0 };
	json_t *notices = NULL, *n, *photos;
	kanal__blob_store_t *store = NULL;
	kanal_blob_ref_t ref;
	int fd = -1;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	kd = s_kanald("dc-photos", up,
		      "      role: destination\n"
		      "  - name: app\n    plugin: http\n"
		      "    options: { listen: '127.0.0.1:0', port_file: '@DIR@/app.port' }\n",
		      NULL, s_staff_routes);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	for (int waited = 0;
	     waited < WAIT && !(port = test_read_file(kd_path(kd, "app.port"), NULL)); waited += 20)
		test_sleep_ms(20);
	REQUIRE(port != NULL);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/events", atoi(port));
	f = open_memstream(&body, &len);
	REQUIRE(f != NULL);
	fprintf(f, "--b0undary\r\nContent-Disposition: form-data; name=\"event\"\r\n"
		   "Content-Type: application/cloudevents+json\r\n\r\n"
		   "{\"specversion\":\"1.0\",\"id\":\"app-notice-1\",\"source\":\"parents-app\","
		   "\"type\":\"daycare.notice.post\",\"data\":{\"institution\":\"solsikken\","
		   "\"title\":\"Skovtur\",\"text\":\"Billeder fra dagens skovtur\"}}\r\n");
	fprintf(f,
		"--b0undary\r\nContent-Disposition: form-data; name=\"photos\"; "
		"filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n%s\r\n",
		photo1);
	fprintf(f,
		"--b0undary\r\nContent-Disposition: form-data; name=\"photos\"; "
		"filename=\"b.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n%s\r\n",
		photo2);
	fprintf(f, "--b0undary--\r\n");
	fclose(f);
	http_request(NULL,
		     &(http_request_t){ .method = "POST",
					.url = url,
					.headers = headers,
					.body = body,
					.body_len = len,
					.timeout_ms = WAIT },
		     &a);
	CU_ASSERT_EQUAL(a.status, 202);

	/* The SHA-256 the simulator must report for each: what a blob store names them (a
	 * store of the test's own: a put into kanald's would bring back what it removed). */
	REQUIRE((tmp = test_tmpdir("dc-photos-ref")) != NULL);
	REQUIRE((store = kanal__blob_store_open_dir(tmp, 0, 0, NULL)));
	REQUIRE(kanal__blob_put(store, photo1, strlen(photo1), "image/jpeg", &ref, NULL) == 0);
	kanal__blob_uri_hex(ref.uri, hex1);
	REQUIRE(kanal__blob_put(store, photo2, strlen(photo2), "image/jpeg", &ref, NULL) == 0);
	kanal__blob_uri_hex(ref.uri, hex2);
	kanal__blob_store_destroy(&store);
	REQUIRE((store = kanal__blob_store_open_dir(kd_path(kd, "state/blobs"), 0, 0, NULL)));

	text = s_wait_api(up, "/api/v1/institutions/solsikken/notices", "Skovtur", hex2);
	REQUIRE(text != NULL);
	free(text);
	text = NULL;
	notices = s_list(up, "solsikken", "notices");
	REQUIRE(json_array_size(notices) == 1);
	n = json_array_get(notices, 0);
	photos = json_object_get(n, "photos");
	CU_ASSERT_EQUAL(json_array_size(photos), 2);
	CU_ASSERT_STRING_EQUAL(s_field(json_array_get(photos, 0), "sha256"), hex1);
	CU_ASSERT_STRING_EQUAL(s_field(json_array_get(photos, 1), "sha256"), hex2);
	CU_ASSERT_STRING_EQUAL(s_field(json_array_get(photos, 0), "media_type"), "image/jpeg");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(photos, 1), "size")),
			(json_int_t)strlen(photo2));

	/* Delivered: kanald removes the blobs. */
	for (int waited = 0; waited < WAIT; waited += 50) {
		if (kanal__blob_open(store, ref.uri, &fd, NULL, NULL) == KANAL_ENOTFOUND)
			break;
		close(fd);
		fd = -1;
		test_sleep_ms(50);
	}
	CU_ASSERT_EQUAL(kanal__blob_open(store, ref.uri, &fd, NULL, NULL), KANAL_ENOTFOUND);
	CU_ASSERT(s_log_clean(kd));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	if (fd >= 0)
		close(fd);
	http_answer_clear(&a);
	json_decref(notices);
	kanal__blob_store_destroy(&store);
	free(text);
	free(body);
	free(port);
	if (tmp)
		test_rmdir_r(tmp);
	free(tmp);
	kd_destroy(&kd);
	upstream_stop(&up);
}

TEST_MAIN("daycare", TEST(test_registrations_become_events), TEST(test_cursor_survives_restart),
	  TEST(test_upstream_error_loses_nothing), TEST(test_upstream_garbage_loses_nothing),
	  TEST(test_upstream_hang_loses_nothing), TEST(test_upstream_drop_loses_nothing),
	  TEST(test_malformed_registration_is_skipped),
	  TEST(test_syg_absence_posts_one_neutral_notice), TEST(test_one_notice_per_absence),
	  TEST(test_rejects_end_in_dead_letters), TEST(test_simulator_api),
	  TEST(test_notice_is_posted_with_its_photos))
