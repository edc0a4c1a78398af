/*
 * tests/integration/test_isolation.c — `isolation: process` against the real kanald and
 * the real kanal-plugin-host (docs/design/isolation.md): a plugin that segfaults or aborts
 * on one event, and one that hangs — in a delivery or in a timer — do not take kanald
 * down; kanald kills and restarts their plugin host, says so on the event stream, retries
 * the delivery that was in its hands until the route's budget sends it to the dead
 * letters, and delivers everything else, on that route and on the others. Options are
 * refused at start exactly as for an instance on a thread; events cross the process
 * boundary unchanged (1000 of them, compared with what a thread instance receives);
 * requests, replies, emits, logs and metrics cross it too; a hung plugin host does not
 * hold kanald's shutdown; and a plugin host does not outlive a killed kanald.
 *
 * Each test starts its own kanald on ephemeral ports in its own folder
 * (tests/util/kanald.h) and bounds every wait.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "kanald.h"
#include "test.h"

#define WAIT 20000 /* ms: the bound of every wait for kanald */

/* ---- helpers ------------------------------------------------------------------------------- */

/* Appends one event to a JSON batch being built in *buf (a growing "[…" text). */
static void s_batch_add(char **buf, const char *source, const char *id, const char *type)
{
	char *next;

	if (asprintf(&next,
		     "%s%s{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"%s\","
		     "\"type\":\"%s\",\"data\":{\"n\":1}}",
		     *buf ? *buf : "[", *buf ? "," : "", id, source, type) < 0)
		next = NULL;
	free(*buf);
	*buf = next;
}

/* Sends the batch (closing it) and checks that every event in it was accepted. */
static void s_batch_send(kd_t *kd, char **buf)
{
	char *text = NULL, *reply = NULL;
	bool ok;

	CU_ASSERT_FATAL(*buf != NULL && asprintf(&text, "%s]", *buf) > 0);
	free(*buf);
	*buf = NULL;
	ok = kd_send_event(kd, text, "accepted", WAIT, &reply);
	CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
	CU_ASSERT(ok);
	free(reply);
	free(text);
}

static void s_send_one(kd_t *kd, const char *source, const char *id, const char *type)
{
	char *batch = NULL;

	s_batch_add(&batch, source, id, type);
	s_batch_send(kd, &batch);
}

/* Number of lines of a file that are exactly `line`. */
static size_t s_count_line(const char *path, const char *line)
{
	char *text = test_read_file(path, NULL), *l, *save = NULL;
	size_t n = 0;

	if (!text)
		return 0;
	for (l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (!strcmp(l, line))
			n++;
	free(text);
	return n;
}

/* Waits until the file has a line that is exactly `line`. */
static bool s_wait_line(const char *path, const char *line, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;

	while (s_count_line(path, line) == 0) {
		if (test_now_ms() >= deadline)
			return false;
		test_sleep_ms(20);
	}
	return true;
}

/* True when the log holds `needle`. */
static bool s_log_has(const kd_t *kd, const char *needle)
{
	char *log = kd_log(kd);
	bool has = log && strstr(log, needle);

	free(log);
	return has;
}

/* Waits until the log holds `needle`. */
static bool s_wait_log(const kd_t *kd, const char *needle, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;

	while (!s_log_has(kd, needle)) {
		if (test_now_ms() >= deadline)
			return false;
		test_sleep_ms(20);
	}
	return true;
}

/* The pids of every plugin host instance `name` started, from kanald's log ("<name>:
 * plugin host started (pid N)" and "… restarted (pid N)"); returns the count. */
static size_t s_host_pids(const kd_t *kd, const char *name, pid_t *pids, size_t cap)
{
	char *log = kd_log(kd), *line, *save = NULL, started[128], restarted[128];
	size_t n = 0;

	snprintf(started, sizeof started, " %s: plugin host started (pid ", name);
	snprintf(restarted, sizeof restarted, " %s: plugin host restarted (pid ", name);
	for (line = log ? strtok_r(log, "\n", &save) : NULL; line && n < cap;
	     line = strtok_r(NULL, "\n", &save)) {
		char *p = strstr(line, started), *q = strstr(line, restarted);
		if (p)
			pids[n++] = (pid_t)atoi(p + strlen(started));
		else if (q)
			pids[n++] = (pid_t)atoi(q + strlen(restarted));
	}
	free(log);
	return n;
}

/* True while process pid exists and is not a zombie (/proc/PID/stat: "pid (comm) S …"). */
static bool s_alive(pid_t pid)
{
	char path[64], text[512], *paren;
	FILE *f;
	bool alive;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	alive = fgets(text, sizeof text, f) && (paren = strrchr(text, ')')) && paren[1] == ' ' &&
		paren[2] != 'Z' && paren[2] != 'X';
	fclose(f);
	return alive;
}

/* Waits until none of the pids is alive. */
static bool s_wait_gone(const pid_t *pids, size_t n, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;

	for (;;) {
		size_t alive = 0;
		for (size_t i = 0; i < n; i++)
			alive += s_alive(pids[i]);
		if (!alive)
			return true;
		if (test_now_ms() >= deadline)
			return false;
		test_sleep_ms(20);
	}
}

/* What every test checks at its end: kanald stops cleanly, leaves no plugin host behind,
 * and its log (which holds the plugin hosts' stderr too) has no sanitizer report. */
static void s_stop_clean(kd_t **kd_p, const char *const *names)
{
	kd_t *kd = *kd_p;
	pid_t pids[64];
	size_t n = 0;

	for (size_t i = 0; names[i]; i++)
		n += s_host_pids(kd, names[i], pids + n, 64 - n);
	CU_ASSERT(n > 0);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	CU_ASSERT(s_wait_gone(pids, n, 5000));
	CU_ASSERT(!s_log_has(kd, "Sanitizer"));
	CU_ASSERT(!s_log_has(kd, "runtime error"));
	CU_ASSERT(!s_log_has(kd, "did not stop by the deadline"));
	kd_destroy(kd_p);
}

/* Asks the admin socket and returns the reply parsed (NULL on no reply or not JSON). */
static json_t *s_admin_json(kd_t *kd, const char *request)
{
	char *reply = kd_admin(kd, request, WAIT);
	json_t *root = reply ? json_loads(reply, 0, NULL) : NULL;

	free(reply);
	return root;
}

/* Waits for the dead letter of event `event_id`; returns a new reference to it or NULL. */
static json_t *s_wait_letter(kd_t *kd, const char *event_id)
{
	int64_t deadline = test_now_ms() + WAIT;

	while (test_now_ms() < deadline) {
		json_t *list = s_admin_json(kd, "{\"cmd\":\"dlq.list\"}"), *item;
		size_t i;

		json_array_foreach(json_object_get(list, "items"), i, item)
		{
			const char *id = json_string_value(json_object_get(item, "event_id"));
			if (id && !strcmp(id, event_id)) {
				json_incref(item);
				json_decref(list);
				return item;
			}
		}
		json_decref(list);
		test_sleep_ms(50);
	}
	return NULL;
}

/* Checks a dead letter: destination, attempts, and every attempt's error. */
static void s_check_letter(kd_t *kd, const char *event_id, const char *destination,
			   const char *error)
{
	json_t *item = s_wait_letter(kd, event_id), *show, *errors, *v;
	char *req;
	size_t i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(item);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "destination")) ?: "",
			       destination);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(item, "attempts")), 3);
	CU_ASSERT_FATAL(asprintf(&req, "{\"cmd\":\"dlq.show\",\"id\":%" JSON_INTEGER_FORMAT "}",
				 json_integer_value(json_object_get(item, "id"))) > 0);
	json_decref(item);
	show = s_admin_json(kd, req);
	free(req);
	errors = json_object_get(json_object_get(show, "item"), "errors");
	CU_ASSERT_EQUAL(json_array_size(errors), 3);
	json_array_foreach(errors, i, v)
	{
		CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(v) ?: "", error));
		if (!strstr(json_string_value(v) ?: "", error))
			fprintf(stderr, "%s: attempt %zu: %s\n", event_id, i + 1,
				json_string_value(v) ?: "(none)");
	}
	json_decref(show);
}

/* ---- crash ------------------------------------------------------------------------------------- */

static const char *s_crash_instances = "  - name: crasher\n"
				       "    plugin: '@TPLUGINS@/tp_crash.so'\n"
				       "    isolation: process\n"
				       "    options: { path: '@DIR@/crasher.txt' }\n"
				       "  - name: aborter\n"
				       "    plugin: '@TPLUGINS@/tp_crash.so'\n"
				       "    isolation: process\n"
				       "    options: { path: '@DIR@/aborter.txt' }\n"
				       "  - name: sink\n"
				       "    plugin: sink\n"
				       "    options: { path: '@DIR@/sink.jsonl' }\n";

static const char *s_crash_routes =
	"routes:\n"
	"  - name: to-crasher\n"
	"    match: { source: crash-test }\n"
	"    to: [crasher]\n"
	"    retry: { max_attempts: 3, backoff: 50ms, max_backoff: 100ms }\n"
	"  - name: to-aborter\n"
	"    match: { source: abort-test }\n"
	"    to: [aborter]\n"
	"    retry: { max_attempts: 3, backoff: 50ms, max_backoff: 100ms }\n"
	"  - name: to-sink\n"
	"    match: { source: other }\n"
	"    to: [sink]\n";

static void test_crash_is_survived_and_retried(void)
{
	static const char *const names[] = { "crasher", "aborter", NULL };
	char *conf = kd_config(s_crash_instances, NULL), *batch = NULL, *p, id[32];
	kd_t *kd = kd_start("iso-crash", conf, s_crash_routes);
	void *sub_crashed, *sub_restarted, *sub_aborted, *sub_dead;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	/* One subscription per happening awaited: the two instances crash in parallel. */
	sub_crashed = kd_subscribe(kd, "plugin.crashed crasher");
	sub_restarted = kd_subscribe(kd, "plugin.restarted crasher");
	sub_aborted = kd_subscribe(kd, "plugin.crashed aborter");
	sub_dead = kd_subscribe(kd, "dead ");

	/* Ten good events, the poison, ten more; the same for the aborting instance; and
	 * twenty for a plain sink on a route of its own — all in one request. */
	for (int k = 1; k <= 21; k++) {
		snprintf(id, sizeof id, "ok-%d", k);
		s_batch_add(&batch, "crash-test", k == 11 ? "poison" : id,
			    k == 11 ? "crash.now" : "iso.ok");
		s_batch_add(&batch, "abort-test", k == 11 ? "poison-abort" : id,
			    k == 11 ? "crash.abort" : "iso.ok");
		snprintf(id, sizeof id, "other-%d", k);
		s_batch_add(&batch, "other", id, "iso.ok");
	}
	s_batch_send(kd, &batch);

	/* The event stream says what happened to the plugin hosts. */
	p = kd_expect(sub_crashed, "plugin.crashed crasher", "\"signal\":11", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "\"cause\":\"signal\""));
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "\"instance\":\"crasher\""));
	free(p);
	p = kd_expect(sub_restarted, "plugin.restarted crasher", NULL, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	p = kd_expect(sub_aborted, "plugin.crashed aborter", "\"signal\":6", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);

	/* Every good event arrived, once: only the poison was in the plugin host's hands. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "crasher.txt"), 20, WAIT), 20);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "aborter.txt"), 20, WAIT), 20);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "sink.jsonl"), 21, WAIT), 21);
	for (int k = 1; k <= 21; k++) {
		if (k == 11)
			continue;
		snprintf(id, sizeof id, "ok-%d", k);
		CU_ASSERT_EQUAL(s_count_line(kd_path(kd, "crasher.txt"), id), 1);
		CU_ASSERT_EQUAL(s_count_line(kd_path(kd, "aborter.txt"), id), 1);
	}
	CU_ASSERT_EQUAL(s_count_line(kd_path(kd, "crasher.txt"), "poison"), 0);

	/* The poisons spent the route's budget and are dead letters, each attempt's error
	 * naming the crash. */
	p = kd_expect(sub_dead, "dead crash.now", NULL, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	s_check_letter(kd, "poison", "crasher", "plugin host crashed (signal 11)");
	s_check_letter(kd, "poison-abort", "aborter", "plugin host crashed (signal 6)");
	kd_unsubscribe(&sub_dead);
	kd_unsubscribe(&sub_aborted);
	kd_unsubscribe(&sub_restarted);
	kd_unsubscribe(&sub_crashed);

	/* kanald is still there, and so is a working plugin host. */
	CU_ASSERT(kd_wait_exit(kd, 0) < 0);
	s_send_one(kd, "crash-test", "after", "iso.ok");
	CU_ASSERT(s_wait_line(kd_path(kd, "crasher.txt"), "after", WAIT));
	CU_ASSERT(s_log_has(kd, "crasher: plugin host crashed (signal 11) handling delivery"));
	s_stop_clean(&kd, names);
}

/* ---- hang ------------------------------------------------------------------------------------- */

static const char *s_hang_instances = "  - name: hanger\n"
				      "    plugin: '@TPLUGINS@/tp_hang.so'\n"
				      "    isolation: process\n"
				      "    deadline: 1s\n"
				      "    options: { path: '@DIR@/hanger.txt' }\n"
				      "  - name: sink\n"
				      "    plugin: sink\n"
				      "    options: { path: '@DIR@/sink.jsonl' }\n";

static const char *s_hang_routes =
	"routes:\n"
	"  - name: to-hanger\n"
	"    match: { source: hang-test }\n"
	"    to: [hanger]\n"
	"    retry: { max_attempts: 3, backoff: 50ms, max_backoff: 100ms }\n"
	"  - name: to-sink\n"
	"    match: { source: other }\n"
	"    to: [sink]\n";

static void test_hang_is_killed_and_retried(void)
{
	static const char *const names[] = { "hanger", NULL };
	char *conf = kd_config(s_hang_instances, NULL), *batch = NULL, *p, id[32];
	kd_t *kd = kd_start("iso-hang", conf, s_hang_routes);
	int64_t sent;
	void *sub;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	sub = kd_subscribe(kd, "plugin.");
	for (int k = 1; k <= 11; k++) {
		snprintf(id, sizeof id, "ok-%d", k);
		s_batch_add(&batch, "hang-test", k == 6 ? "poison" : id,
			    k == 6 ? "hang.now" : "iso.ok");
	}
	s_batch_send(kd, &batch);
	CU_ASSERT_FATAL(s_wait_log(kd, "hanger: hanging on poison", WAIT));

	/* While the plugin hangs, the other route flows: well inside the 1 s deadline. */
	sent = test_now_ms();
	for (int k = 1; k <= 10; k++) {
		snprintf(id, sizeof id, "other-%d", k);
		s_batch_add(&batch, "other", id, "iso.ok");
	}
	s_batch_send(kd, &batch);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "sink.jsonl"), 10, WAIT), 10);
	CU_ASSERT(test_now_ms() - sent < 900);

	p = kd_expect(sub, "plugin.crashed hanger", "\"cause\":\"hung\"", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "\"deadline_ms\":1000"));
	free(p);
	p = kd_expect(sub, "plugin.restarted hanger", NULL, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);

	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "hanger.txt"), 10, WAIT), 10);
	for (int k = 1; k <= 11; k++) {
		if (k == 6)
			continue;
		snprintf(id, sizeof id, "ok-%d", k);
		CU_ASSERT_EQUAL(s_count_line(kd_path(kd, "hanger.txt"), id), 1);
	}
	s_check_letter(kd, "poison", "hanger", "plugin host hung: no answer within 1000 ms");

	/* A hang no delivery waits for — in a timer callback — is found by the ping. */
	kd_unsubscribe(&sub);
	sub = kd_subscribe(kd, "plugin.");
	s_send_one(kd, "hang-test", "timer", "hang.timer");
	CU_ASSERT(s_wait_log(kd, "hanger: hanging in a timer", WAIT));
	p = kd_expect(sub, "plugin.crashed hanger", "\"cause\":\"hung\"", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT(s_wait_log(kd, "plugin host hung: no answer to a ping within 1000 ms", WAIT));
	p = kd_expect(sub, "plugin.restarted hanger", NULL, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	kd_unsubscribe(&sub);
	s_send_one(kd, "hang-test", "after", "iso.ok");
	CU_ASSERT(s_wait_line(kd_path(kd, "hanger.txt"), "after", WAIT));
	s_stop_clean(&kd, names);
}

/* A plugin host stuck in a callback does not hold kanald past its shutdown deadline: it is
 * killed, where a stuck thread could only be left behind. */
static void test_hung_host_does_not_hold_shutdown(void)
{
	static const char *const names[] = { "hanger", NULL };
	char *conf = kd_config("  - name: hanger\n"
			       "    plugin: '@TPLUGINS@/tp_hang.so'\n"
			       "    isolation: process\n"
			       "    options: { path: '@DIR@/hanger.txt' }\n",
			       NULL);
	kd_t *kd = kd_start("iso-stop", conf,
			    "routes:\n  - name: r\n    match: { type: '>' }\n    to: [hanger]\n");
	int64_t t0;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	s_send_one(kd, "hang-test", "stuck", "hang.now");
	CU_ASSERT_FATAL(s_wait_log(kd, "hanger: hanging on stuck", WAIT));
	/* shutdown_deadline is 3 s in kd_config; then the plugin host gets 1 s to stop and
	 * 1 s of grace before SIGKILL: about 5 s, bounded here with room for slow builds. */
	t0 = test_now_ms();
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	CU_ASSERT(test_now_ms() - t0 < 9000);
	CU_ASSERT(s_log_has(kd, "hanger: plugin host did not stop by the deadline; killed"));
	CU_ASSERT(!s_log_has(kd, "stuck in a callback"));
	{
		pid_t pids[8];
		size_t n = s_host_pids(kd, names[0], pids, 8);
		CU_ASSERT_EQUAL(n, 1);
		CU_ASSERT(s_wait_gone(pids, n, 5000));
	}
	CU_ASSERT(!s_log_has(kd, "Sanitizer"));
	kd_destroy(&kd);
}

/* A plugin host killed from outside, whose successors cannot even start: deliveries wait
 * while a new one comes up, are retried while none can, and all arrive, once each, when it
 * can again. */
static void test_start_failures_retry_the_waiting(void)
{
	static const char *const names[] = { "crasher", NULL };
	char *conf = kd_config("  - name: crasher\n"
			       "    plugin: '@TPLUGINS@/tp_crash.so'\n"
			       "    isolation: process\n"
			       "    options: { path: '@DIR@/crasher.txt',"
			       " crash_init_if: '@DIR@/marker' }\n",
			       NULL);
	kd_t *kd = kd_start("iso-start", conf,
			    "routes:\n  - name: r\n    match: { type: '>' }\n    to: [crasher]\n"
			    "    retry: { max_attempts: 50, backoff: 50ms, max_backoff: 200ms }\n");
	char *batch = NULL, *p, *marker, id[32];
	void *sub_crashed, *sub_retrying, *sub_restarted;
	pid_t pids[8];

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT_FATAL(s_wait_log(kd, "crasher: plugin host started", WAIT));
	CU_ASSERT_EQUAL_FATAL(s_host_pids(kd, "crasher", pids, 8), 1);
	sub_crashed = kd_subscribe(kd, "plugin.crashed crasher");
	sub_retrying = kd_subscribe(kd, "retrying iso.ok");
	sub_restarted = kd_subscribe(kd, "plugin.restarted crasher");
	marker = test_write_file(kd->dir, "marker", "");
	kill(pids[0], SIGKILL);
	p = kd_expect(sub_crashed, "plugin.crashed crasher", "\"signal\":9", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	for (int k = 1; k <= 5; k++) {
		snprintf(id, sizeof id, "ok-%d", k);
		s_batch_add(&batch, "start-test", id, "iso.ok");
	}
	s_batch_send(kd, &batch);
	p = kd_expect(sub_retrying, "retrying iso.ok",
		      "plugin host crashed (signal 11) while starting", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	unlink(marker);
	free(marker);
	p = kd_expect(sub_restarted, "plugin.restarted crasher", NULL, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "crasher.txt"), 5, WAIT), 5);
	for (int k = 1; k <= 5; k++) {
		snprintf(id, sizeof id, "ok-%d", k);
		CU_ASSERT_EQUAL(s_count_line(kd_path(kd, "crasher.txt"), id), 1);
	}
	kd_unsubscribe(&sub_restarted);
	kd_unsubscribe(&sub_retrying);
	kd_unsubscribe(&sub_crashed);
	s_stop_clean(&kd, names);
}

/* ---- refusals at start --------------------------------------------------------------------- */

/* Starts kanald with one instance (YAML) that must be refused; returns the line of the log
 * holding `needle` (from `needle` on), or NULL. kanald must exit with status 1. */
static char *s_refused(const char *tag, const char *instance, const char *needle)
{
	char *conf = kd_config(instance, NULL), *log, *at, *end, *line = NULL;
	kd_t *kd = kd_prepare(tag, conf, "routes: []\n");

	free(conf);
	kd_launch(kd);
	CU_ASSERT_EQUAL(kd_wait_exit(kd, WAIT), 1);
	log = kd_log(kd);
	at = log ? strstr(log, needle) : NULL;
	if (at) {
		end = strchr(at, '\n');
		line = strndup(at, end ? (size_t)(end - at) : strlen(at));
	} else {
		fprintf(stderr, "%s: no '%s' in the log:\n%s\n", tag, needle, log ? log : "");
	}
	CU_ASSERT(!kd_has_clear_cpr(log ? log : ""));
	free(log);
	kd_destroy(&kd);
	return line;
}

static void test_bad_options_refused_like_threads(void)
{
	char *iso, *thr;

	/* The same mistake gives the same error, whichever way the instance runs. */
	iso = s_refused("iso-opt-p",
			"  - name: snk\n    plugin: sink\n    isolation: process\n"
			"    options: { path: x.jsonl, colour: blue }\n",
			"error: instance 'snk'");
	thr = s_refused("iso-opt-t",
			"  - name: snk\n    plugin: sink\n    isolation: thread\n"
			"    options: { path: x.jsonl, colour: blue }\n",
			"error: instance 'snk'");
	CU_ASSERT_PTR_NOT_NULL(iso && strstr(iso, "unknown option 'colour'"));
	CU_ASSERT_PTR_NOT_NULL(iso && thr && !strcmp(iso, thr));
	free(iso);
	free(thr);

	/* `deadline` is read and checked. */
	iso = s_refused("iso-dl-bad",
			"  - name: snk\n    plugin: sink\n    isolation: process\n"
			"    deadline: soon\n",
			"error: 'deadline'");
	CU_ASSERT_PTR_NOT_NULL(iso && strstr(iso, "'soon' is not a duration"));
	free(iso);
	iso = s_refused("iso-dl-thr", "  - name: snk\n    plugin: sink\n    deadline: 5s\n",
			"error: 'deadline'");
	CU_ASSERT_PTR_NOT_NULL(iso && strstr(iso, "applies only to 'isolation: process'"));
	free(iso);

	/* init runs in the plugin host: its failure still refuses the start, with the
	 * plugin's reason (and the CPR number in it masked). */
	iso = s_refused("iso-init",
			"  - name: failing\n    plugin: '@TPLUGINS@/tp_init_fail.so'\n"
			"    isolation: process\n",
			"instance 'failing'");
	CU_ASSERT_PTR_NOT_NULL(iso && strstr(iso, "init failed: cannot reach"));
	free(iso);
}

/* ---- the serialisation round trip ----------------------------------------------------------- */

/* The i-th test event: every kind of attribute and data, in turn. */
static char *s_varied_event(int i)
{
	char *text;
	const char *extra;

	switch (i % 5) {
	case 0:
		extra = ",\"subject\":\"person:x\",\"time\":\"2026-11-24T10:00:00.123Z\","
			"\"datacontenttype\":\"application/json\","
			"\"data\":{\"navn\":\"Søren Ærø Åberg\",\"nested\":{\"list\":[1,2.5,true,"
			"null,\"tab\\there\"],\"empty\":{}},\"quote\":\"\\\"q\\\"\",\"u\":"
			"\"\\u00e6\"}";
		break;
	case 1:
		extra = ",\"data_base64\":\"AAECAwQFBgcICQ==\",\"datacontenttype\":"
			"\"application/octet-stream\"";
		break;
	case 2:
		extra = ",\"correlationid\":\"corr-1\",\"causationid\":\"cause-1\",\"priority\":7,"
			"\"urgent\":true,\"dataschema\":\"https://example.dk/schema/1\","
			"\"data\":[1,\"to\",{\"tre\":3}]";
		break;
	case 3:
		extra = ",\"data\":\"just a string with \\\\ and \\n\"";
		break;
	default:
		extra = "";
		break;
	}
	if (asprintf(&text,
		     "{\"specversion\":\"1.0\",\"id\":\"rt-%04d\",\"source\":\"rt\","
		     "\"type\":\"rt.event\"%s}",
		     i, extra) < 0)
		return NULL;
	return text;
}

/* The lines of a file, sorted. */
static char **s_sorted_lines(const char *path, size_t *n_out)
{
	char *text = test_read_file(path, NULL), *l, *save = NULL, **lines = NULL;
	size_t n = 0, cap = 0;

	for (l = text ? strtok_r(text, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save)) {
		if (n == cap)
			lines = realloc(lines, (cap = cap ? cap * 2 : 1024) * sizeof *lines);
		lines[n++] = strdup(l);
	}
	free(text);
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(lines[j - 1], lines[j]) > 0; j--) {
			char *t = lines[j];
			lines[j] = lines[j - 1];
			lines[j - 1] = t;
		}
	*n_out = n;
	return lines;
}

static void test_round_trip_of_1000_events(void)
{
	static const char *const names[] = { "iso", NULL };
	char *conf = kd_config("  - name: iso\n    plugin: sink\n    isolation: process\n"
			       "    options: { path: '@DIR@/iso.jsonl' }\n"
			       "  - name: thr\n    plugin: sink\n"
			       "    options: { path: '@DIR@/thr.jsonl' }\n",
			       NULL);
	kd_t *kd = kd_start("iso-rt", conf,
			    "routes:\n  - name: both\n    match: { type: rt.event }\n"
			    "    to: [iso, thr]\n");
	char **a, **b;
	size_t na, nb, same = 0;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	for (int batch = 0; batch < 10; batch++) {
		char *text = strdup("["), *reply;
		for (int k = 0; k < 100; k++) {
			char *e = s_varied_event(batch * 100 + k), *next;
			CU_ASSERT_FATAL(e && asprintf(&next, "%s%s%s", text, k ? "," : "", e) > 0);
			free(text);
			free(e);
			text = next;
		}
		CU_ASSERT_FATAL(asprintf(&reply, "%s]", text) > 0);
		free(text);
		text = reply;
		reply = kd_send(kd, text, WAIT);
		CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
		CU_ASSERT_PTR_NULL(strstr(reply, "\"invalid\""));
		if (strstr(reply, "\"invalid\""))
			fprintf(stderr, "%.600s\n", reply);
		CU_ASSERT_PTR_NULL(strstr(reply, "\"busy\""));
		free(reply);
		free(text);
	}
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "iso.jsonl"), 1000, WAIT), 1000);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "thr.jsonl"), 1000, WAIT), 1000);
	/* What the isolated sink wrote, after the trip out of kanald and back into a plugin,
	 * is byte for byte what the sink on a thread wrote from kanald's own message. */
	a = s_sorted_lines(kd_path(kd, "iso.jsonl"), &na);
	b = s_sorted_lines(kd_path(kd, "thr.jsonl"), &nb);
	CU_ASSERT_EQUAL(na, 1000);
	CU_ASSERT_EQUAL(nb, 1000);
	for (size_t i = 0; i < na && i < nb; i++)
		same += !strcmp(a[i], b[i]);
	CU_ASSERT_EQUAL(same, 1000);
	for (size_t i = 1; i < na; i++)
		CU_ASSERT(strcmp(a[i - 1], a[i]) != 0); /* each once */
	CU_ASSERT_PTR_NOT_NULL(na && strstr(a[0], "\"id\":\"rt-0000\""));
	CU_ASSERT_PTR_NOT_NULL(na && strstr(a[0], "Søren Ærø Åberg"));
	for (size_t i = 0; i < na; i++)
		free(a[i]);
	for (size_t i = 0; i < nb; i++)
		free(b[i]);
	free(a);
	free(b);
	s_stop_clean(&kd, names);
}

/* ---- host services across the boundary --------------------------------------------------------- */

static void test_services_cross_the_boundary(void)
{
	static const char *const names[] = { "svc", "echo", NULL };
	char *conf = kd_config("  - name: svc\n    plugin: '@TPLUGINS@/tp_service.so'\n"
			       "    isolation: process\n"
			       "  - name: echo\n    plugin: '@TPLUGINS@/tp_echo.so'\n"
			       "    isolation: process\n"
			       "    options: { enrich_service: svc, emit_type: x.echoed }\n"
			       "  - name: out\n    plugin: sink\n"
			       "    options: { path: '@DIR@/out.jsonl' }\n",
			       NULL);
	kd_t *kd = kd_start("iso-svc", conf,
			    "routes:\n"
			    "  - name: in\n    match: { type: x.in }\n"
			    "    enrich:\n      - service: svc\n        into: data.guardian\n"
			    "    to: [echo]\n"
			    "  - name: echoed\n    match: { type: x.echoed }\n    to: [out]\n");
	char *text, *batch = NULL, id[32];
	json_t *status, *inst;
	size_t i;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	for (int k = 1; k <= 20; k++) {
		snprintf(id, sizeof id, "in-%d", k);
		s_batch_add(&batch, "svc-test", id, "x.in");
	}
	s_batch_send(kd, &batch);
	/* Each echo was emitted from the isolated echo, after its own request to the isolated
	 * service, and carries the route's enrich (also answered by the isolated service). */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 20, WAIT), 20);
	text = test_read_file(kd_path(kd, "out.jsonl"), NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"enriched\":{"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"guardian\":{"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"looked_up\":true"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"causationid\":\"in-20\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"source\":\"echo\""));
	free(text);
	/* The plugin's log lines reach kanald's log under the instance's name, and its
	 * metrics are kanald's. */
	CU_ASSERT(s_log_has(kd, "echo: echo ready: reply_field=echoed"));
	status = s_admin_json(kd, "{\"cmd\":\"status\"}");
	json_array_foreach(json_object_get(status, "instances"), i, inst)
	{
		if (!strcmp(json_string_value(json_object_get(inst, "name")) ?: "", "echo"))
			CU_ASSERT_EQUAL(json_number_value(json_object_get(
						json_object_get(inst, "metrics"), "deliveries")),
					20.0);
	}
	json_decref(status);
	s_stop_clean(&kd, names);
}

/* ---- the plugin host dies with kanald -------------------------------------------------------- */

static void test_host_dies_with_kanald(void)
{
	char *conf = kd_config("  - name: iso\n    plugin: sink\n    isolation: process\n"
			       "    options: { path: '@DIR@/iso.jsonl' }\n",
			       NULL);
	kd_t *kd = kd_start("iso-kill", conf, "routes: []\n");
	pid_t pids[8];
	size_t n;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT_FATAL(s_wait_log(kd, "iso: plugin host started", WAIT));
	n = s_host_pids(kd, "iso", pids, 8);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT(s_alive(pids[0]));
	kd_stop(kd, SIGKILL, WAIT);
	CU_ASSERT(s_wait_gone(pids, n, 5000));
	kd_destroy(&kd);
}

TEST_MAIN("isolation", TEST(test_crash_is_survived_and_retried),
	  TEST(test_hang_is_killed_and_retried), TEST(test_hung_host_does_not_hold_shutdown),
	  TEST(test_start_failures_retry_the_waiting), TEST(test_bad_options_refused_like_threads),
	  TEST(test_round_trip_of_1000_events), TEST(test_services_cross_the_boundary),
	  TEST(test_host_dies_with_kanald))
