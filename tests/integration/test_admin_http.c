/*
 * tests/integration/test_admin_http.c — kanald's HTTP admin endpoint (broker/admin_http.c)
 * in the real kanald, spoken to with tests/util/http_client.c: /healthz and /readyz (503
 * while the journal cannot be written); /metrics counting per destination and per route
 * what was really sent, in a text `promtool check metrics` accepts; the bearer token (401
 * without it, a token file others may read refuses the start); reload with the real result
 * and the errors' positions; dead letters listed, shown, replayed (and delivered) and
 * deleted; instances paused and resumed; 404 and 405; and no clear CPR number in any
 * answer.
 *
 * Everything listens on 127.0.0.1 on ephemeral ports; every wait is bounded; each test
 * stops its kanald and removes its folder even when an assertion fails (REQUIRE jumps to
 * the clean-up).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "kanald.h"
#include "test.h"

#define WAIT 10000 /* ms: the bound of every wait */
#define TOKEN "kanal-test-token-7f3a9c2e51d84b06"
/* A synthetic CPR number (DOMAIN.md): valid in form, nobody's. */
#define CPR "1503851233"

/* ---- the client ----------------------------------------------------------------------- */

/* One request to kanald's admin endpoint; `path` is appended to kd->admin_http. token may
 * be NULL. status 0 when nothing answered. */
static http_answer_t s_http(kd_t *kd, const char *method, const char *path, const char *token)
{
	http_answer_t a;
	char url[512];

	/* As the dashboard does: a state-changing request needs it without a token. */
	static const char *const headers[] = { "X-Kanal-Request: 1", NULL };

	snprintf(url, sizeof url, "%s%s", kd->admin_http, path);
	http_request(NULL,
		     &(http_request_t){ .method = method,
					.url = url,
					.bearer = token,
					.headers = headers,
					.timeout_ms = WAIT },
		     &a);
	return a;
}

/* GET path and parse the JSON body; NULL unless the status is `want`. */
static bool quiet; /* s_get_json does not report a wrong status (while polling) */

static json_t *s_get_json(kd_t *kd, const char *path, const char *token, long want)
{
	http_answer_t a = s_http(kd, "GET", path, token);
	json_t *j = a.status == want ? json_loads(a.body, 0, NULL) : NULL;

	if (a.status != want && !quiet)
		fprintf(stderr, "    GET %s: %ld (wanted %ld): %s\n", path, a.status, want, a.body);
	http_answer_clear(&a);
	return j;
}

/* ---- events, configs ------------------------------------------------------------------ */

/* Sends one event; true when the gateway accepted it. */
static bool s_send(kd_t *kd, const char *id, const char *type, const char *data)
{
	char *text = kd_event("admin-test", id, type, data);
	bool ok = text && kd_send_event(kd, text, "accepted", WAIT, NULL);

	free(text);
	return ok;
}

/* kd_config with `admin_token_file: token_path` under endpoints. */
static char *s_config_with_token(const char *instances, const char *token_path)
{
	char *base = kd_config(instances, NULL), *out = NULL;
	const char *key = "  admin_http: http://127.0.0.1:0\n";
	char *at = base ? strstr(base, key) : NULL;

	if (at && asprintf(&out, "%.*s  admin_token_file: %s\n%s", (int)(at - base + strlen(key)),
			   base, token_path, at + strlen(key)) < 0)
		out = NULL;
	free(base);
	return out;
}

/* The value of the sample whose name with labels is exactly `sample` ("x_total" or
 * "x_total{a=\"b\"}"); -1 when absent. */
static double s_metric(const char *text, const char *sample)
{
	size_t n = strlen(sample);

	for (const char *line = text; line && *line;
	     line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (!strncmp(line, sample, n) && line[n] == ' ')
			return strtod(line + n + 1, NULL);
	}
	return -1;
}

/* Runs `promtool check metrics` on text; returns its exit status (127: not installed),
 * with its output in *out (malloc'd). */
static int s_promtool(const char *dir, const char *text, char **out)
{
	char *in = test_write_file(dir, "metrics.txt", text), *cmd, *path;
	int st = -1;

	*out = NULL;
	if (asprintf(&path, "%s/promtool.out", dir) < 0)
		path = NULL;
	if (in && path &&
	    asprintf(&cmd, "promtool check metrics < '%s' > '%s' 2>&1", in, path) >= 0) {
		st = system(cmd);
		st = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		free(cmd);
		*out = test_read_file(path, NULL);
	}
	free(in);
	free(path);
	return st;
}

/* Waits until GET /api/v1/deadletters lists n letters; returns the last list (or NULL). */
static json_t *s_wait_letters(kd_t *kd, const char *token, size_t n)
{
	int64_t deadline = test_now_ms() + WAIT;
	json_t *list = NULL;

	for (;;) {
		json_decref(list);
		list = s_get_json(kd, "/api/v1/deadletters", token, 200);
		if (json_array_size(json_object_get(list, "items")) >= n ||
		    test_now_ms() >= deadline)
			return list;
		test_sleep_ms(100);
	}
}

/* The destination's field from /api/v1/status, or -1. */
static json_int_t s_dest_field(kd_t *kd, const char *dest, const char *field)
{
	json_t *st = s_get_json(kd, "/api/v1/status", NULL, 200), *d;
	json_int_t v = -1;
	size_t i;

	json_array_foreach(json_object_get(st, "destinations"), i,
			   d) if (!strcmp(json_string_value(json_object_get(d, "name")) ?: "",
					  dest)) v = json_integer_value(json_object_get(d, field));
	json_decref(st);
	return v;
}

static const char *s_sinks =
	"  - name: letters\n    plugin: sink\n    options: { path: '@DIR@/letters.jsonl' }\n"
	"  - name: calendar\n    plugin: sink\n    options: { path: '@DIR@/calendar.jsonl' }\n";
static const char *s_routes =
	"routes:\n"
	"  - name: to-letters\n    match: { type: post.letter.send }\n    to: letters\n"
	"  - name: to-calendar\n    match: { type: child.absence.reported }\n    to: calendar\n"
	"  - name: audit\n    match: { type: child.> }\n    to: letters\n";

/* ---- health and readiness -------------------------------------------------------------- */

static void test_health_and_readiness_follow_the_journal(void)
{
	char *conf = kd_config(s_sinks, NULL);
	kd_t *kd = kd_prepare("ahealth", conf, s_routes);
	char fault[1024];
	http_answer_t a = { 0 };
	int64_t deadline;

	free(conf);
	snprintf(fault, sizeof fault, "%s", kd_path(kd, "fault"));
	setenv("KANAL_FAULT_JOURNAL", fault, 1);
	REQUIRE(kd_launch(kd) == 0);
	unsetenv("KANAL_FAULT_JOURNAL");
	REQUIRE(!strncmp(kd->admin_http, "http://127.0.0.1:", 17));

	a = s_http(kd, "GET", "/healthz", NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	CU_ASSERT_STRING_EQUAL(a.body, "ok\n");
	http_answer_clear(&a);
	a = s_http(kd, "GET", "/readyz", NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	CU_ASSERT_STRING_EQUAL(a.body, "ready\n");
	http_answer_clear(&a);
	a = s_http(kd, "HEAD", "/readyz", NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	http_answer_clear(&a);

	/* The disk fails: the next write finds out, and readiness says so; kanald is alive. */
	free(test_write_file(kd->dir, "fault", "full\n"));
	{
		char *reply = kd_send(kd,
				      "{\"specversion\":\"1.0\",\"id\":\"h-1\",\"source\":\"t\","
				      "\"type\":\"x.y\"}",
				      WAIT);
		CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "journal cannot be written"));
		free(reply);
	}
	a = s_http(kd, "GET", "/readyz", NULL);
	CU_ASSERT_EQUAL(a.status, 503);
	CU_ASSERT_PTR_NOT_NULL(strstr(a.body, "journal"));
	http_answer_clear(&a);
	a = s_http(kd, "GET", "/healthz", NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	http_answer_clear(&a);
	{
		http_answer_t m = s_http(kd, "GET", "/metrics", NULL);
		CU_ASSERT_EQUAL(s_metric(m.body, "kanal_journal_writable"), 0);
		http_answer_clear(&m);
	}

	/* The disk recovers: kanald is ready again by itself. */
	unlink(fault);
	deadline = test_now_ms() + WAIT;
	do {
		http_answer_clear(&a);
		test_sleep_ms(100);
		a = s_http(kd, "GET", "/readyz", NULL);
	} while (a.status != 200 && test_now_ms() < deadline);
	CU_ASSERT_EQUAL(a.status, 200);
	http_answer_clear(&a);

	/* Health checks take GET (and HEAD) only. */
	a = s_http(kd, "POST", "/healthz", NULL);
	CU_ASSERT_EQUAL(a.status, 405);
	CU_ASSERT_STRING_EQUAL(a.allow, "GET, HEAD");
	http_answer_clear(&a);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	unsetenv("KANAL_FAULT_JOURNAL");
	http_answer_clear(&a);
	kd_destroy(&kd);
}

/* ---- /metrics ------------------------------------------------------------------------- */

/* Sends 3 letters, 2 absences (each also matching `audit`) and 1 unmatched event, and
 * waits for the 3 + 2 + 2 deliveries. */
static bool s_send_mix(kd_t *kd)
{
	bool ok = true;

	for (int k = 1; k <= 3; k++) {
		char id[16];
		snprintf(id, sizeof id, "l-%d", k);
		ok = s_send(kd, id, "post.letter.send", "{\"subject\":\"test\"}") && ok;
	}
	ok = s_send(kd, "a-1", "child.absence.reported", NULL) && ok;
	ok = s_send(kd, "a-2", "child.absence.reported", NULL) && ok;
	ok = s_send(kd, "u-1", "nobody.wants.this", NULL) && ok;
	ok = kd_wait_lines(kd_path(kd, "letters.jsonl"), 5, WAIT) == 5 && ok;
	ok = kd_wait_lines(kd_path(kd, "calendar.jsonl"), 2, WAIT) == 2 && ok;
	return ok;
}

static void test_metrics_count_per_destination_and_pass_promtool(void)
{
	char *conf = kd_config(s_sinks, NULL), *check = NULL;
	kd_t *kd = kd_start("ametrics", conf, s_routes);
	http_answer_t a = { 0 };
	int64_t deadline;
	int st;

	free(conf);
	REQUIRE(kd != NULL);
	REQUIRE(s_send_mix(kd));
	/* The counters are the router's, which counts a delivery once the sink answered. */
	deadline = test_now_ms() + WAIT;
	do {
		http_answer_clear(&a);
		a = s_http(kd, "GET", "/metrics", NULL);
		if (s_metric(a.body,
			     "kanal_destination_delivered_total{destination=\"letters\"}") == 5 &&
		    s_metric(a.body, "kanal_destination_dead_total{destination=\"deadletter\"}") ==
			    1)
			break;
		test_sleep_ms(100);
	} while (test_now_ms() < deadline);
	REQUIRE(a.status == 200);
	CU_ASSERT(!strncmp(a.content_type, "text/plain; version=0.0.4", 25));
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_events_accepted_total"), 6);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_events_unmatched_total"), 1);
	CU_ASSERT_EQUAL(
		s_metric(a.body, "kanal_destination_delivered_total{destination=\"letters\"}"), 5);
	CU_ASSERT_EQUAL(
		s_metric(a.body, "kanal_destination_delivered_total{destination=\"calendar\"}"), 2);
	/* The unmatched event went to the default destination, the dead-letter store. */
	CU_ASSERT_EQUAL(
		s_metric(a.body, "kanal_destination_dead_total{destination=\"deadletter\"}"), 1);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_dead_letters"), 1);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_destination_dead_total{destination=\"letters\"}"),
			0);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_destination_queue_depth{destination=\"calendar\"}"),
			0);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_journal_writable"), 1);
	/* A plugin's own counters: the sink counts what it received (kanal_metric_add), so
	 * Prometheus is told it is a counter and rate() works on it. */
	CU_ASSERT_EQUAL(
		s_metric(a.body,
			 "kanal_plugin_metric_total{instance=\"calendar\",metric=\"received\"}"),
		2);
	CU_ASSERT(strstr(a.body, "# TYPE kanal_plugin_metric_total counter\n") != NULL);
	/* What every exporter has: the process's CPU, memory, descriptors and start time. */
	CU_ASSERT(s_metric(a.body, "process_cpu_seconds_total") >= 0);
	CU_ASSERT(s_metric(a.body, "process_resident_memory_bytes") > 1024 * 1024);
	CU_ASSERT(s_metric(a.body, "process_virtual_memory_bytes") >=
		  s_metric(a.body, "process_resident_memory_bytes"));
	CU_ASSERT(s_metric(a.body, "process_open_fds") > 3);
	CU_ASSERT(fabs(s_metric(a.body, "process_start_time_seconds") - time(NULL)) < 120);
	/* The routing files loaded at start count as a successful load. */
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_config_last_reload_successful"), 1);
	CU_ASSERT(fabs(s_metric(a.body, "kanal_config_last_reload_success_timestamp_seconds") -
		       time(NULL)) < 120);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_connections_denied_total"), 0);
	/* The same numbers as the JSON status. */
	CU_ASSERT_EQUAL(s_dest_field(kd, "letters", "delivered"), 5);

	/* Prometheus's own checker accepts the text (format and naming). promtool comes from
	 * the Debian package prometheus, which scripts/deps.sh installs: missing is a failure. */
	st = s_promtool(kd->dir, a.body, &check);
	if (st == 127)
		fprintf(stderr, "    promtool is not installed (Debian package 'prometheus'; "
				"scripts/deps.sh installs it)\n");
	else if (st != 0)
		fprintf(stderr, "    promtool check metrics: exit %d:\n%s\n", st,
			check ? check : "");
	CU_ASSERT_EQUAL(st, 0);
	free(check);
	http_answer_clear(&a);

	/* Metrics are read-only. */
	a = s_http(kd, "POST", "/metrics", NULL);
	CU_ASSERT_EQUAL(a.status, 405);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	http_answer_clear(&a);
	kd_destroy(&kd);
}

/* Needs the router's route_counters and latency (status fields). */
static void test_metrics_count_per_route_and_latency(void)
{
	char *conf = kd_config(s_sinks, NULL), *check = NULL;
	kd_t *kd = kd_start("aroutes", conf, s_routes);
	http_answer_t a = { 0 };
	int64_t deadline;
	double prev = 0, count;
	const char *p;

	free(conf);
	REQUIRE(kd != NULL);
	REQUIRE(s_send_mix(kd));
	deadline = test_now_ms() + WAIT;
	do {
		http_answer_clear(&a);
		a = s_http(kd, "GET", "/metrics", NULL);
		if (s_metric(a.body, "kanal_route_delivered_total{route=\"audit\"}") == 2 &&
		    s_metric(a.body, "kanal_route_delivered_total{route=\"to-letters\"}") == 3)
			break;
		test_sleep_ms(100);
	} while (test_now_ms() < deadline);
	REQUIRE(a.status == 200);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_route_matched_total{route=\"to-letters\"}"), 3);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_route_matched_total{route=\"to-calendar\"}"), 2);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_route_matched_total{route=\"audit\"}"), 2);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_route_delivered_total{route=\"to-letters\"}"), 3);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_route_delivered_total{route=\"to-calendar\"}"), 2);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_route_delivered_total{route=\"audit\"}"), 2);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_route_dead_total{route=\"audit\"}"), 0);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_route_fallback_total{route=\"to-letters\"}"), 0);

	/* The latency histogram, "from acceptance to a destination's OK": one observation
	 * per successful delivery (3 + 2 + 2; the unmatched event's was no OK); cumulative
	 * buckets ending with +Inf = count. */
	count = s_metric(a.body, "kanal_delivery_latency_seconds_count");
	CU_ASSERT_EQUAL(count, 7);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_delivery_latency_seconds_bucket{le=\"+Inf\"}"),
			count);
	CU_ASSERT(s_metric(a.body, "kanal_delivery_latency_seconds_sum") >= 0);
	p = a.body;
	while ((p = strstr(p, "kanal_delivery_latency_seconds_bucket{"))) {
		double v = strtod(strchr(p, ' ') + 1, NULL);
		CU_ASSERT(v >= prev);
		prev = v;
		p++;
	}
	/* And per route and destination: one histogram for each pair that delivered, whose
	 * counts are that route's deliveries there, and none for a pair that never did. */
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_route_delivery_latency_seconds_count"
					 "{route=\"to-letters\",destination=\"letters\"}"),
			3);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_route_delivery_latency_seconds_count"
					 "{route=\"audit\",destination=\"letters\"}"),
			2);
	CU_ASSERT_EQUAL(s_metric(a.body,
				 "kanal_route_delivery_latency_seconds_bucket"
				 "{route=\"to-calendar\",destination=\"calendar\",le=\"+Inf\"}"),
			2);
	CU_ASSERT(s_metric(a.body, "kanal_route_delivery_latency_seconds_sum"
				   "{route=\"audit\",destination=\"letters\"}") >= 0);
	CU_ASSERT(!strstr(a.body, "route=\"to-letters\",destination=\"calendar\""));
	CU_ASSERT_EQUAL(s_promtool(kd->dir, a.body, &check), 0);
	free(check);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	http_answer_clear(&a);
	kd_destroy(&kd);
}

/* An isolated webhook whose upstream refuses connections: its plugin host tells kanald
 * (kanal_upstream_report over the wire, from kc_http), status and /metrics say down, and
 * /readyz, told to need it, is not ready — before any report too. A sink reports nothing. */
static void test_upstream_reachability_in_status_metrics_and_readyz(void)
{
	char *conf = kd_config("  - name: hook\n    plugin: http\n    isolation: process\n"
			       "    options: { url: 'http://127.0.0.1:1/hook', timeout: 500ms }\n"
			       "  - name: letters\n    plugin: sink\n"
			       "    options: { path: '@DIR@/letters.jsonl' }\n",
			       NULL);
	const char *ep = "  admin_http: http://127.0.0.1:0\n";
	char *at = strstr(conf, ep), *text = NULL;
	kd_t *kd = NULL;
	http_answer_t a = { 0 };
	int64_t deadline;

	REQUIRE(at && asprintf(&text, "%.*s%s  readyz_requires: [hook]\n%s", (int)(at - conf), conf,
			       ep, at + strlen(ep)) > 0);
	kd = kd_start("aupstream", text,
		      "routes:\n  - name: to-hook\n    match: { type: hook.call }\n    to: hook\n"
		      "    retry: { max_attempts: 3, backoff: 100ms }\n");
	REQUIRE(kd != NULL);
	a = s_http(kd, "GET", "/readyz", NULL);
	CU_ASSERT_EQUAL(a.status, 503);
	CU_ASSERT(a.body && strstr(a.body, "'hook'"));
	REQUIRE(s_send(kd, "h-1", "hook.call", NULL));
	deadline = test_now_ms() + WAIT;
	do {
		http_answer_clear(&a);
		a = s_http(kd, "GET", "/metrics", NULL);
		if (s_metric(a.body, "kanal_instance_upstream_up{instance=\"hook\"}") == 0)
			break;
		test_sleep_ms(100);
	} while (test_now_ms() < deadline);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_instance_upstream_up{instance=\"hook\"}"), 0);
	CU_ASSERT(!strstr(a.body, "kanal_instance_upstream_up{instance=\"letters\"}"));
	http_answer_clear(&a);
	a = s_http(kd, "GET", "/api/v1/status", NULL);
	CU_ASSERT(a.body &&
		  (strstr(a.body, "\"upstream\": false") || strstr(a.body, "\"upstream\":false")));
	http_answer_clear(&a);
	a = s_http(kd, "GET", "/readyz", NULL);
	CU_ASSERT_EQUAL(a.status, 503);
	CU_ASSERT(a.body && strstr(a.body, "instance 'hook': its upstream is not up"));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	http_answer_clear(&a);
	kd_destroy(&kd);
	free(text);
	free(conf);
}

/* ---- the token ------------------------------------------------------------------------ */

static void test_token_guards_everything_but_health(void)
{
	char *token_path = NULL, *conf = NULL;
	kd_t *kd = kd_prepare("atoken", "", s_routes);
	http_answer_t a = { 0 };
	char *log = NULL;

	token_path = test_write_file(kd->dir, "admin.token", TOKEN "\n");
	REQUIRE(token_path && chmod(token_path, 0600) == 0);
	conf = s_config_with_token(s_sinks, token_path);
	REQUIRE(conf != NULL);
	kd_write_config(kd, conf);
	REQUIRE(kd_launch(kd) == 0);

	static const char *const guarded[] = { "/metrics", "/api/v1/status",
					       "/api/v1/deadletters" };
	for (size_t k = 0; k < 3; k++) {
		a = s_http(kd, "GET", guarded[k], NULL);
		CU_ASSERT_EQUAL(a.status, 401);
		CU_ASSERT(!strncmp(a.www_authenticate, "Bearer", 6));
		CU_ASSERT_PTR_NULL(strstr(a.body, "kanal_events"));
		http_answer_clear(&a);
		a = s_http(kd, "GET", guarded[k], "kanal-test-token-wrong-wrong-wrong");
		CU_ASSERT_EQUAL(a.status, 401);
		http_answer_clear(&a);
		a = s_http(kd, "GET", guarded[k], TOKEN);
		CU_ASSERT_EQUAL(a.status, 200);
		http_answer_clear(&a);
	}
	/* Writing needs it too: an unauthenticated reload does nothing. */
	a = s_http(kd, "POST", "/api/v1/reload", NULL);
	CU_ASSERT_EQUAL(a.status, 401);
	http_answer_clear(&a);
	a = s_http(kd, "GET", "/api/v1/status", TOKEN);
	CU_ASSERT_PTR_NOT_NULL(strstr(a.body, "\"reloads\":0"));
	http_answer_clear(&a);
	/* The orchestrator's probes and the dashboard page (which holds no data) are open. */
	a = s_http(kd, "GET", "/healthz", NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	http_answer_clear(&a);
	a = s_http(kd, "GET", "/readyz", NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	http_answer_clear(&a);
	a = s_http(kd, "GET", "/", NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	CU_ASSERT(!strncmp(a.content_type, "text/html", 9));
	http_answer_clear(&a);
	/* The token is not in the log. */
	log = kd_log(kd);
	CU_ASSERT_PTR_NULL(log ? strstr(log, TOKEN) : NULL);
	free(log);
	log = NULL;
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);

	/* A token file others may read: kanald refuses to start and names the file. */
	REQUIRE(chmod(token_path, 0644) == 0);
	CU_ASSERT_NOT_EQUAL(kd_restart(kd), 0);
	CU_ASSERT_NOT_EQUAL(kd_wait_exit(kd, WAIT), 0);
	log = kd_log(kd);
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, token_path));
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "0644"));
	CU_ASSERT_PTR_NULL(log ? strstr(log, TOKEN) : NULL);
done:
	free(log);
	free(conf);
	free(token_path);
	http_answer_clear(&a);
	kd_destroy(&kd);
}

/* ---- reload --------------------------------------------------------------------------- */

static void test_reload_answers_the_real_result(void)
{
	char *conf = kd_config(s_sinks, NULL);
	kd_t *kd = kd_start("areload", conf, s_routes);
	http_answer_t a = { 0 };
	json_t *j = NULL, *errs;

	free(conf);
	REQUIRE(kd != NULL);
	a = s_http(kd, "POST", "/api/v1/reload", NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	j = json_loads(a.body, 0, NULL);
	CU_ASSERT(json_is_true(json_object_get(j, "ok")));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "routes")), 3);
	json_decref(j);
	j = NULL;
	http_answer_clear(&a);

	/* A broken file: 400, each error with its file, line and column; the old table stays. */
	kd_write_routes(kd, "routes:\n"
			    "  - name: to-letters\n"
			    "    to: leters\n"
			    "  - name: bad-where\n"
			    "    match: { where: data.x == }\n"
			    "    to: letters\n");
	a = s_http(kd, "POST", "/api/v1/reload", NULL);
	CU_ASSERT_EQUAL(a.status, 400);
	j = json_loads(a.body, 0, NULL);
	CU_ASSERT(json_is_false(json_object_get(j, "ok")));
	errs = json_object_get(j, "errors");
	CU_ASSERT_EQUAL(json_array_size(errs), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_array_get(errs, 0)) ?: "",
				      "routes.yaml:3:9: error: unknown instance 'leters'"));
	CU_ASSERT_PTR_NOT_NULL(
		strstr(json_string_value(json_array_get(errs, 1)) ?: "", "routes.yaml:5:"));
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_array_get(errs, 1)) ?: "", "where"));
	json_decref(j);
	j = NULL;
	http_answer_clear(&a);
	CU_ASSERT(s_send(kd, "r-1", "post.letter.send", NULL));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "letters.jsonl"), 1, WAIT), 1);
	j = s_get_json(kd, "/api/v1/status", NULL, 200);
	CU_ASSERT_EQUAL(json_integer_value(
				json_object_get(json_object_get(j, "counters"), "reload_failures")),
			1);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "routes")), 3);
	json_decref(j);
	j = NULL;
	/* /metrics says the last reload failed, for the alert KanalReloadFailed. */
	a = s_http(kd, "GET", "/metrics", NULL);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_config_last_reload_successful"), 0);
	CU_ASSERT_EQUAL(s_metric(a.body, "kanal_reload_failures_total"), 1);
	http_answer_clear(&a);

	/* Reloading is a POST. */
	a = s_http(kd, "GET", "/api/v1/reload", NULL);
	CU_ASSERT_EQUAL(a.status, 405);
	CU_ASSERT_STRING_EQUAL(a.allow, "POST");
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	json_decref(j);
	http_answer_clear(&a);
	kd_destroy(&kd);
}

/* ---- dead letters --------------------------------------------------------------------- */

static const char *s_strict_sinks =
	"  - name: letters\n    plugin: sink\n"
	"    options: { path: '@DIR@/letters.jsonl', fail_type: post.letter.send }\n"
	"  - name: calendar\n    plugin: sink\n"
	"    options: { path: '@DIR@/calendar.jsonl', fail_type: child.absence.reported }\n";
/* letters fixed; calendar still refuses. */
static const char *s_fixed_sinks =
	"  - name: letters\n    plugin: sink\n    options: { path: '@DIR@/letters.jsonl' }\n"
	"  - name: calendar\n    plugin: sink\n"
	"    options: { path: '@DIR@/calendar.jsonl', fail_type: child.absence.reported }\n";
static const char *s_dlq_routes =
	"routes:\n"
	"  - name: to-letters\n    match: { type: post.letter.send }\n    to: letters\n"
	"  - name: to-calendar\n    match: { type: child.absence.reported }\n    to: calendar\n";

/* The item of a dlq list for event id eid, or NULL (borrowed). */
static json_t *s_letter(json_t *list, const char *eid)
{
	json_t *item;
	size_t i;

	json_array_foreach(
		json_object_get(list, "items"), i,
		item) if (!strcmp(json_string_value(json_object_get(item, "event_id")) ?: "",
				  eid)) return item;
	return NULL;
}

static void test_dead_letters_listed_shown_replayed_and_deleted(void)
{
	char *conf = kd_config(s_strict_sinks, NULL), *path = NULL, *text = NULL;
	kd_t *kd = kd_start("adlq", conf, s_dlq_routes);
	http_answer_t a = { 0 };
	json_t *list = NULL, *item, *j = NULL;
	json_int_t letter_id = 0, absence_id = 0;

	free(conf);
	conf = NULL;
	REQUIRE(kd != NULL);
	REQUIRE(s_send(kd, "d-1", "post.letter.send",
		       "{\"cpr\":\"" CPR "\",\"subject\":\"Afgørelse\"}"));
	REQUIRE(s_send(kd, "d-2", "child.absence.reported", NULL));
	list = s_wait_letters(kd, NULL, 2);
	REQUIRE(json_array_size(json_object_get(list, "items")) == 2);
	item = s_letter(list, "d-1");
	REQUIRE(item != NULL);
	letter_id = json_integer_value(json_object_get(item, "id"));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "route")) ?: "",
			       "to-letters");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "destination")) ?: "",
			       "letters");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "reason")) ?: "",
			       "rejected");
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(item, "error")) ?: "",
				      "sink rejects events of type 'post.letter.send'"));
	absence_id = json_integer_value(json_object_get(s_letter(list, "d-2"), "id"));
	CU_ASSERT(absence_id > 0);
	json_decref(list);
	list = NULL;
	/* Filters pass through. */
	list = s_get_json(kd, "/api/v1/deadletters?route=to-calendar", NULL, 200);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 1);
	CU_ASSERT_PTR_NOT_NULL(s_letter(list, "d-2"));
	json_decref(list);
	list = s_get_json(kd, "/api/v1/deadletters?limit=1", NULL, 200);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 1);
	json_decref(list);
	list = NULL;
	/* A limit that is not a number is refused, not read as "everything". */
	for (size_t i = 0; i < 3; i++) {
		static const char *const bad[] = { "abc", "0", "5x" };
		char p[128];
		snprintf(p, sizeof p, "/api/v1/deadletters?limit=%s", bad[i]);
		a = s_http(kd, "GET", p, NULL);
		CU_ASSERT_EQUAL(a.status, 400);
		CU_ASSERT_PTR_NOT_NULL(a.body ? strstr(a.body, "'limit'") : NULL);
		http_answer_clear(&a);
	}

	/* show: the letter with its event — its CPR number masked. */
	REQUIRE(asprintf(&path, "/api/v1/deadletters/%" JSON_INTEGER_FORMAT, letter_id) > 0);
	a = s_http(kd, "GET", path, NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	CU_ASSERT(!kd_has_clear_cpr(a.body));
	CU_ASSERT_PTR_NOT_NULL(strstr(a.body, "150385XXXX"));
	j = json_loads(a.body, 0, NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
				       json_object_get(json_object_get(j, "item"), "event"), "id"))
				       ?: "",
			       "d-1");
	json_decref(j);
	j = NULL;
	http_answer_clear(&a);
	free(path);
	path = NULL;

	/* Fix the letters destination (a new config; an instance's options are read at
	 * start) and restart: the letters wait in the journal. */
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	conf = kd_config(s_fixed_sinks, NULL);
	kd_write_config(kd, conf);
	REQUIRE(kd_restart(kd) == 0);
	REQUIRE(asprintf(&path, "/api/v1/deadletters/%" JSON_INTEGER_FORMAT "/replay", letter_id) >
		0);
	a = s_http(kd, "POST", path, NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	j = json_loads(a.body, 0, NULL);
	CU_ASSERT_EQUAL(json_integer_value(json_array_get(json_object_get(j, "replayed"), 0)),
			letter_id);
	json_decref(j);
	j = NULL;
	http_answer_clear(&a);
	/* Delivered, with its data whole. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "letters.jsonl"), 1, WAIT), 1);
	text = test_read_file(kd_path(kd, "letters.jsonl"), NULL);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\"d-1\"") && strstr(text, CPR));
	free(text);
	text = NULL;
	/* Gone from the store: a second replay, a show, find nothing. */
	a = s_http(kd, "POST", path, NULL);
	CU_ASSERT_EQUAL(a.status, 404);
	http_answer_clear(&a);
	path[strlen(path) - strlen("/replay")] = '\0';
	a = s_http(kd, "GET", path, NULL);
	CU_ASSERT_EQUAL(a.status, 404);
	http_answer_clear(&a);
	list = s_get_json(kd, "/api/v1/deadletters", NULL, 200);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 1);
	json_decref(list);
	list = NULL;
	free(path);
	path = NULL;

	/* delete: the other letter goes for good. */
	REQUIRE(asprintf(&path, "/api/v1/deadletters/%" JSON_INTEGER_FORMAT, absence_id) > 0);
	a = s_http(kd, "DELETE", path, NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(a.body, "\"dropped\":1"));
	http_answer_clear(&a);
	a = s_http(kd, "DELETE", path, NULL);
	CU_ASSERT_EQUAL(a.status, 404);
	http_answer_clear(&a);
	a = s_http(kd, "GET", path, NULL);
	CU_ASSERT_EQUAL(a.status, 404);
	http_answer_clear(&a);
	a = s_http(kd, "PUT", path, NULL);
	CU_ASSERT_EQUAL(a.status, 405);
	CU_ASSERT_STRING_EQUAL(a.allow, "GET, HEAD, DELETE");
	http_answer_clear(&a);
	list = s_get_json(kd, "/api/v1/deadletters", NULL, 200);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 0);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "calendar.jsonl"), 1, 200), 0);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	json_decref(list);
	json_decref(j);
	free(text);
	free(path);
	free(conf);
	http_answer_clear(&a);
	kd_destroy(&kd);
}

/* ---- instances (needs the router's instances and instance.* commands) ------------------- */

/* The state of the instance in GET /api/v1/instances, or "" (static buffer). */
static const char *s_state(kd_t *kd, const char *name)
{
	static char state[32];
	json_t *j, *e;
	size_t i;

	quiet = true;
	j = s_get_json(kd, "/api/v1/instances", NULL, 200);
	quiet = false;
	state[0] = '\0';
	json_array_foreach(
		json_object_get(j, "instances"), i,
		e) if (!strcmp(json_string_value(json_object_get(e, "name")) ?: "", name))
		snprintf(state, sizeof state, "%s",
			 json_string_value(json_object_get(e, "state")) ?: "");
	json_decref(j);
	return state;
}

/* An instance's plugin metric from the status, or -1. */
static double s_plugin_metric(kd_t *kd, const char *inst, const char *metric)
{
	http_answer_t a = s_http(kd, "GET", "/api/v1/status", NULL);
	json_t *st = a.body ? json_loads(a.body, 0, NULL) : NULL, *e;
	double v = -1;
	size_t i;

	json_array_foreach(json_object_get(st, "instances"), i, e)
	{
		json_t *m = json_object_get(json_object_get(e, "metrics"), metric);
		if (!strcmp(json_string_value(json_object_get(e, "name")) ?: "", inst))
			v = json_is_number(m) ? json_number_value(m) : 0;
	}
	json_decref(st);
	http_answer_clear(&a);
	return v;
}

static void test_routes_and_instances_pause_and_resume(void)
{
	/* The extra instance runs in a plugin host (isolation: process): only such an
	 * instance can be restarted without restarting kanald. */
	char *conf = kd_config("  - name: letters\n    plugin: sink\n    options: { path: "
			       "'@DIR@/letters.jsonl' }\n"
			       "  - name: calendar\n    plugin: sink\n    options: { path: "
			       "'@DIR@/calendar.jsonl' }\n"
			       "  - name: isolated\n    plugin: sink\n    isolation: process\n"
			       "    options: { path: '@DIR@/isolated.jsonl' }\n",
			       NULL);
	kd_t *kd = kd_start("ainst", conf, s_routes);
	http_answer_t a = { 0 };
	json_t *j = NULL;
	int64_t deadline;

	free(conf);
	REQUIRE(kd != NULL);
	a = s_http(kd, "GET", "/api/v1/routes", NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(a.body, "\"ok\":true"));
	CU_ASSERT_PTR_NOT_NULL(strstr(a.body, "\"to-calendar\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(a.body, "\"audit\""));
	http_answer_clear(&a);
	CU_ASSERT_STRING_EQUAL(s_state(kd, "calendar"), "running");

	/* Paused: events for it wait; resumed: they arrive. */
	a = s_http(kd, "POST", "/api/v1/instances/calendar/pause", NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	http_answer_clear(&a);
	CU_ASSERT_STRING_EQUAL(s_state(kd, "calendar"), "paused");
	CU_ASSERT(s_send(kd, "p-1", "child.absence.reported", NULL));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "letters.jsonl"), 1, WAIT), 1); /* audit */
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "calendar.jsonl")), 0);
	a = s_http(kd, "POST", "/api/v1/instances/calendar/resume", NULL);
	CU_ASSERT_EQUAL(a.status, 200);
	http_answer_clear(&a);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "calendar.jsonl"), 1, WAIT), 1);
	CU_ASSERT_STRING_EQUAL(s_state(kd, "calendar"), "running");

	/* restart: an isolated instance's plugin host is replaced and back to running
	 * within the bound (a new pid), and it is not counted as a crash (host_restarts,
	 * kanal_instance_restarts_total); an instance on kanald's own thread cannot be, and
	 * the answer says why. */
	{
		double before = s_plugin_metric(kd, "isolated", "host_restarts");
		void *sub = kd_subscribe(kd, "plugin.restarted");
		char *note;

		a = s_http(kd, "POST", "/api/v1/instances/isolated/restart", NULL);
		CU_ASSERT_EQUAL(a.status, 200);
		http_answer_clear(&a);
		note = kd_expect(sub, "plugin.restarted", "\"operator\":true", WAIT);
		CU_ASSERT_PTR_NOT_NULL(note);
		free(note);
		kd_unsubscribe(&sub);
		deadline = test_now_ms() + WAIT;
		while (strcmp(s_state(kd, "isolated"), "running") && test_now_ms() < deadline)
			test_sleep_ms(100);
		CU_ASSERT_STRING_EQUAL(s_state(kd, "isolated"), "running");
		CU_ASSERT_EQUAL(s_plugin_metric(kd, "isolated", "host_restarts"), before);
	}
	a = s_http(kd, "POST", "/api/v1/instances/letters/restart", NULL);
	CU_ASSERT(a.status >= 400 && a.status < 500);
	CU_ASSERT_PTR_NOT_NULL(a.body ? strstr(a.body, "isolation: process") : NULL);
	http_answer_clear(&a);

	/* An instance that does not exist; a verb that does not; the wrong method. */
	a = s_http(kd, "POST", "/api/v1/instances/nosuch/pause", NULL);
	CU_ASSERT(a.status >= 400 && a.status < 500);
	http_answer_clear(&a);
	a = s_http(kd, "POST", "/api/v1/instances/calendar/explode", NULL);
	CU_ASSERT_EQUAL(a.status, 404);
	http_answer_clear(&a);
	a = s_http(kd, "GET", "/api/v1/instances/calendar/pause", NULL);
	CU_ASSERT_EQUAL(a.status, 405);
	CU_ASSERT_STRING_EQUAL(a.allow, "POST");
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	json_decref(j);
	http_answer_clear(&a);
	kd_destroy(&kd);
}

/* ---- 404, 405 ------------------------------------------------------------------------- */

static void test_unknown_paths_and_wrong_methods(void)
{
	char *conf = kd_config(s_sinks, NULL);
	kd_t *kd = kd_start("a404", conf, s_routes);
	static const struct {
		const char *method, *path;
		long status;
		const char *allow;
	} cases[] = {
		{ "GET", "/nope", 404, "" },
		{ "GET", "/api/v1", 404, "" },
		{ "GET", "/api/v1/status/", 404, "" },
		{ "GET", "/api/v2/status", 404, "" },
		{ "GET", "/api/v1/deadletters/abc", 404, "" },
		{ "GET", "/api/v1/deadletters/0", 404, "" },
		{ "GET", "/api/v1/deadletters/7/resend", 404, "" },
		{ "DELETE", "/api/v1/status", 405, "GET, HEAD" },
		{ "POST", "/api/v1/deadletters", 405, "GET, HEAD" },
		{ "GET", "/api/v1/deadletters/7/replay", 405, "POST" },
		{ "PUT", "/", 405, "GET, HEAD" },
	};
	http_answer_t a = { 0 };
	json_t *j;

	free(conf);
	REQUIRE(kd != NULL);
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		a = s_http(kd, cases[k].method, cases[k].path, NULL);
		if (a.status != cases[k].status)
			fprintf(stderr, "    %s %s: %ld, wanted %ld\n", cases[k].method,
				cases[k].path, a.status, cases[k].status);
		CU_ASSERT_EQUAL(a.status, cases[k].status);
		CU_ASSERT_STRING_EQUAL(a.allow, cases[k].allow);
		/* Every error is JSON saying what was wrong. */
		j = json_loads(a.body, 0, NULL);
		CU_ASSERT(json_is_false(json_object_get(j, "ok")));
		CU_ASSERT(strlen(json_string_value(json_object_get(j, "error")) ?: "") > 0);
		json_decref(j);
		http_answer_clear(&a);
	}
	/* A letter that does not exist, asked for in each way. */
	a = s_http(kd, "GET", "/api/v1/deadletters/999999", NULL);
	CU_ASSERT_EQUAL(a.status, 404);
	http_answer_clear(&a);
	a = s_http(kd, "POST", "/api/v1/deadletters/999999/replay", NULL);
	CU_ASSERT_EQUAL(a.status, 404);
	http_answer_clear(&a);
	a = s_http(kd, "DELETE", "/api/v1/deadletters/999999", NULL);
	CU_ASSERT_EQUAL(a.status, 404);
	http_answer_clear(&a);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	http_answer_clear(&a);
	kd_destroy(&kd);
}

/* ---- personal data -------------------------------------------------------------------- */

static void test_no_clear_cpr_in_any_answer(void)
{
	char *conf = kd_config(s_strict_sinks, NULL), *path = NULL;
	kd_t *kd = kd_start("acpr", conf, s_dlq_routes);
	json_t *list = NULL;
	http_answer_t a = { 0 };
	json_int_t id;

	free(conf);
	REQUIRE(kd != NULL);
	/* The number in the data of a dead letter, of a routed event, and in a URL. */
	REQUIRE(s_send(kd, "c-1", "post.letter.send",
		       "{\"cpr\":\"" CPR "\",\"note\":\"cpr " CPR "\"}"));
	REQUIRE(s_send(kd, "c-2", "nobody.wants.this", "{\"cpr\":\"" CPR "\"}"));
	list = s_wait_letters(kd, NULL, 1);
	REQUIRE(json_array_size(json_object_get(list, "items")) >= 1);
	id = json_integer_value(json_object_get(s_letter(list, "c-1"), "id"));
	REQUIRE(id > 0);
	REQUIRE(asprintf(&path, "/api/v1/deadletters/%" JSON_INTEGER_FORMAT, id) > 0);
	{
		const struct {
			const char *method, *path;
		} asks[] = {
			{ "GET", "/metrics" },
			{ "GET", "/api/v1/status" },
			{ "GET", "/api/v1/routes" },
			{ "GET", "/api/v1/instances" },
			{ "GET", "/api/v1/deadletters" },
			{ "GET", "/api/v1/deadletters?type=post.letter.send" },
			{ "GET", path },
			{ "GET", "/" },
			{ "POST", "/api/v1/reload" },
			{ "GET", "/api/v1/people/" CPR },
			{ "GET", "/api/v1/deadletters/" CPR },
			{ "POST", "/api/v1/instances/" CPR "/pause" },
			{ "GET", "/api/v1/deadletters?since=" CPR },
		};
		for (size_t k = 0; k < sizeof asks / sizeof *asks; k++) {
			a = s_http(kd, asks[k].method, asks[k].path, NULL);
			CU_ASSERT(a.status > 0);
			if (kd_has_clear_cpr(a.body))
				fprintf(stderr, "    clear CPR number in the answer to %s %s\n",
					asks[k].method, asks[k].path);
			CU_ASSERT(!kd_has_clear_cpr(a.body));
			http_answer_clear(&a);
		}
	}
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	free(path);
	json_decref(list);
	http_answer_clear(&a);
	kd_destroy(&kd);
}

TEST_MAIN("admin_http", TEST(test_health_and_readiness_follow_the_journal),
	  TEST(test_metrics_count_per_destination_and_pass_promtool),
	  TEST(test_metrics_count_per_route_and_latency),
	  TEST(test_upstream_reachability_in_status_metrics_and_readyz),
	  TEST(test_token_guards_everything_but_health), TEST(test_reload_answers_the_real_result),
	  TEST(test_dead_letters_listed_shown_replayed_and_deleted),
	  TEST(test_routes_and_instances_pause_and_resume),
	  TEST(test_unknown_paths_and_wrong_methods), TEST(test_no_clear_cpr_in_any_answer))
