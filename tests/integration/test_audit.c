/*
 * tests/integration/test_audit.c — the operator audit log (broker/audit.c) against the real
 * kanald: every operator action — pause, resume, restart, reload, dlq drop, replay and
 * show --clear — over the admin socket or the HTTP admin endpoint is one 0600 JSON line
 * naming who (the local user of an ipc admin socket, from SO_PEERCRED), the channel, from
 * where, what, when and the outcome; a client cannot claim to be someone else; the stream
 * gets `audit.*` without the person; `kanalctl audit` prints it; and an operator's restart
 * is not counted as a crash.
 */
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "http_client.h"
#include "kanald.h"
#include "test.h"

#define WAIT 8000

static const char *s_routes = "routes:\n"
			      "  - name: all\n"
			      "    match: { type: '>' }\n"
			      "    to: sink\n";

/* The audit lines so far, as a JSON array (new reference). */
static json_t *s_audit_lines(kd_t *kd)
{
	FILE *f = fopen(kd_path(kd, "state/audit.log"), "r");
	json_t *all = json_array();
	char line[4096];

	while (f && fgets(line, sizeof line, f))
		json_array_append_new(all, json_loads(line, 0, NULL));
	if (f)
		fclose(f);
	return all;
}

/* The last audit line whose action is `action`, or NULL (borrowed from lines). */
static json_t *s_last(json_t *lines, const char *action)
{
	json_t *found = NULL, *e;
	size_t i;

	json_array_foreach(lines, i,
			   e) if (!strcmp(json_string_value(json_object_get(e, "action")) ?: "",
					  action)) found = e;
	return found;
}

static const char *s_str(json_t *e, const char *key)
{
	return json_string_value(json_object_get(e, key)) ?: "";
}

/* A POST as the dashboard sends it; the status. */
static long s_post(kd_t *kd, const char *path)
{
	static const char *const headers[] = { "X-Kanal-Request: 1", NULL };

	return kd_admin_post(kd, path, headers, NULL, WAIT);
}

static void test_operator_actions_are_audited(void)
{
	char *conf = kd_config("  - name: sink\n    plugin: sink\n"
			       "    options: { path: '@DIR@/sink.jsonl' }\n"
			       "  - name: isolated\n    plugin: sink\n    isolation: process\n"
			       "    options: { path: '@DIR@/isolated.jsonl' }\n",
			       NULL);
	char *ipc = strstr(conf, "admin: tcp://127.0.0.1:0");
	struct passwd *pw = getpwuid(getuid());
	char me[64], from[32], *reply, *note, cmd[2048];
	mode_t old_mask = umask(022);
	json_t *lines, *e;
	struct stat st;
	kd_t *kd;
	void *sub;

	/* The admin socket on ipc, where the peer's user is known (SO_PEERCRED). */
	CU_ASSERT_PTR_NOT_NULL_FATAL(ipc);
	{
		char *with_ipc;
		*ipc = '\0';
		CU_ASSERT_FATAL(asprintf(&with_ipc, "%sadmin: ipc://@DIR@/admin.sock%s", conf,
					 ipc + strlen("admin: tcp://127.0.0.1:0")) > 0);
		free(conf);
		conf = with_ipc;
	}
	kd = kd_start("audit", conf, s_routes);
	free(conf);
	umask(old_mask);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	snprintf(me, sizeof me, "%s", pw ? pw->pw_name : "?");
	snprintf(from, sizeof from, "pid %d", (int)getpid());
	sub = kd_subscribe(kd, "audit.");

	/* Over the admin socket: who is this process's user, from this pid. A request that
	 * claims another actor is still audited as who sent it. */
	reply = kd_admin(kd,
			 "{\"cmd\":\"instance.pause\",\"name\":\"sink\","
			 "\"actor\":{\"who\":\"mallory\",\"from\":\"x\",\"key\":\"guess\"}}",
			 WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply ? strstr(reply, "\"ok\":true") : NULL);
	free(reply);
	note = kd_expect(sub, "audit.instance.pause", NULL, WAIT);
	CU_ASSERT_PTR_NOT_NULL(note);
	/* The stream line says what and how, never who. */
	CU_ASSERT_PTR_NULL(note ? strstr(note, me) : "missing");
	CU_ASSERT_PTR_NOT_NULL(note ? strstr(note, "\"outcome\":\"ok\"") : NULL);
	free(note);
	free(kd_admin(kd, "{\"cmd\":\"instance.resume\",\"name\":\"nosuch\"}", WAIT));
	free(kd_admin(kd, "{\"cmd\":\"reload\"}", WAIT));
	free(kd_admin(kd, "{\"cmd\":\"dlq.drop\",\"ids\":[4242]}", WAIT));
	free(kd_admin(kd, "{\"cmd\":\"dlq.show\",\"id\":4242,\"clear\":true}", WAIT));
	free(kd_admin(kd, "{\"cmd\":\"status\"}", WAIT)); /* a read: not audited */
	/* Over HTTP: the endpoint says who (no token here) and the client's address. */
	CU_ASSERT_EQUAL(s_post(kd, "/api/v1/instances/sink/resume"), 200);
	/* An operator's restart is audited and is not a crash. */
	CU_ASSERT_EQUAL(s_post(kd, "/api/v1/instances/isolated/restart"), 200);
	note = kd_expect(sub, "audit.instance.restart", NULL, WAIT);
	free(note);

	lines = s_audit_lines(kd);
	CU_ASSERT_EQUAL(json_array_size(lines), 7);
	e = s_last(lines, "instance.pause");
	CU_ASSERT_STRING_EQUAL(s_str(e, "who"), me);
	CU_ASSERT_STRING_EQUAL(s_str(e, "via"), "ipc");
	CU_ASSERT_STRING_EQUAL(s_str(e, "from"), from);
	CU_ASSERT_STRING_EQUAL(s_str(e, "outcome"), "ok");
	CU_ASSERT_STRING_EQUAL(s_str(json_object_get(e, "target"), "instance"), "sink");
	CU_ASSERT(strlen(s_str(e, "time")) > 20);
	e = s_last(lines, "instance.resume");
	CU_ASSERT_STRING_EQUAL(s_str(e, "via"), "http");
	CU_ASSERT_STRING_EQUAL(s_str(e, "who"), "no token (loopback)");
	CU_ASSERT_STRING_EQUAL(s_str(e, "from"), "127.0.0.1");
	CU_ASSERT_STRING_EQUAL(s_str(e, "outcome"), "ok");
	CU_ASSERT_STRING_EQUAL(s_str(e, "action"), "instance.resume");
	CU_ASSERT_STRING_EQUAL(s_str(json_array_get(lines, 1), "outcome"), "refused");
	CU_ASSERT_STRING_EQUAL(s_str(json_array_get(lines, 1), "error"), "no such instance");
	CU_ASSERT_STRING_EQUAL(s_str(s_last(lines, "reload"), "outcome"), "ok");
	CU_ASSERT_PTR_NOT_NULL(s_last(lines, "dlq.drop"));
	CU_ASSERT_PTR_NOT_NULL(s_last(lines, "dlq.show_clear"));
	CU_ASSERT_STRING_EQUAL(s_str(s_last(lines, "instance.restart"), "via"), "http");
	CU_ASSERT_PTR_NULL(s_last(lines, "status"));
	{
		char *all = json_dumps(lines, 0);
		CU_ASSERT_EQUAL(kd_count(all, "mallory"), 0);
		free(all);
	}
	json_decref(lines);

	/* Private whatever the umask. */
	CU_ASSERT_EQUAL(stat(kd_path(kd, "state/audit.log"), &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);

	/* kanalctl audit prints it, one line per action. */
	snprintf(cmd, sizeof cmd, "%s audit -c %s", test_path("bin/kanalctl"), kd->conf_path);
	{
		FILE *p = popen(cmd, "r");
		char out[8192] = "";
		size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
		out[n] = '\0';
		CU_ASSERT_EQUAL(p ? pclose(p) : -1, 0);
		CU_ASSERT_EQUAL(kd_count(out, "\n"), 7);
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "instance.pause by "));
		CU_ASSERT_PTR_NOT_NULL(strstr(out, " via ipc from pid "));
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "refused  instance.resume"));
	}
	kd_unsubscribe(&sub);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

/* A counter from kanald's status reply, or -1. */
static long long s_counter(kd_t *kd, const char *section, const char *name)
{
	char *reply = kd_admin(kd, "{\"cmd\":\"status\"}", WAIT);
	json_t *st = reply ? json_loads(reply, 0, NULL) : NULL;
	json_t *v = json_object_get(json_object_get(st, section), name);
	long long n = json_is_integer(v) ? json_integer_value(v) : -1;

	json_decref(st);
	free(reply);
	return n;
}

/* Dead letters beyond their retention (journal.dead_letters.max_events here) are purged,
 * counted and audited; `kanalctl dlq purge --older-than` purges the rest, audited too. */
static void test_dead_letter_retention_and_purge(void)
{
	char *conf = kd_config("  - name: picky\n    plugin: sink\n"
			       "    options: { path: '@DIR@/picky.jsonl', fail_type: x.bad }\n",
			       "journal:\n  dead_letters: { max_age: 30d, max_events: 2 }\n");
	kd_t *kd = kd_start("audit-retention", conf,
			    "routes:\n  - name: bad\n    match: { type: '>' }\n    to: picky\n");
	char cmd[2048], out[4096] = "";
	json_t *lines, *e;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	for (int i = 0; i < 4; i++) {
		char ev[256];
		snprintf(ev, sizeof ev,
			 "{\"specversion\":\"1.0\",\"id\":\"r-%d\",\"source\":\"t\","
			 "\"type\":\"x.bad\"}",
			 i);
		CU_ASSERT(kd_send_event(kd, ev, "accepted", WAIT, NULL));
	}
	for (int64_t until = test_now_ms() + WAIT;
	     s_counter(kd, "journal", "dead_letters") < 4 && test_now_ms() < until;)
		test_sleep_ms(50);
	CU_ASSERT_EQUAL(s_counter(kd, "journal", "dead_letters"), 4);
	/* Retention runs at start and once a minute: a restart applies it now. */
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	CU_ASSERT_EQUAL_FATAL(kd_restart(kd), 0);
	for (int64_t until = test_now_ms() + WAIT;
	     s_counter(kd, "journal", "dead_letters") > 2 && test_now_ms() < until;)
		test_sleep_ms(50);
	CU_ASSERT_EQUAL(s_counter(kd, "journal", "dead_letters"), 2);
	CU_ASSERT_EQUAL(s_counter(kd, "counters", "dead_letters_purged"), 2);
	/* The operator purges what is left (anything that died before a minute from now). */
	snprintf(cmd, sizeof cmd, "%s dlq purge --older-than 2100-01-01T00:00:00Z -c %s",
		 test_path("bin/kanalctl"), kd->conf_path);
	{
		FILE *p = popen(cmd, "r");
		size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
		out[n] = '\0';
		CU_ASSERT_EQUAL(p ? pclose(p) : -1, 0);
	}
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "purged 2 dead letter(s)"));
	CU_ASSERT_EQUAL(s_counter(kd, "journal", "dead_letters"), 0);
	CU_ASSERT_EQUAL(s_counter(kd, "counters", "dead_letters_purged"), 4);
	lines = s_audit_lines(kd);
	CU_ASSERT_EQUAL(json_array_size(lines), 2);
	e = json_array_get(lines, 0);
	CU_ASSERT_STRING_EQUAL(s_str(e, "who"), "kanald");
	CU_ASSERT_STRING_EQUAL(s_str(e, "via"), "retention");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(e, "target"), "purged")),
			2);
	e = json_array_get(lines, 1);
	CU_ASSERT_STRING_EQUAL(s_str(e, "action"), "dlq.purge");
	CU_ASSERT_STRING_EQUAL(s_str(e, "via"), "tcp");
	CU_ASSERT_STRING_EQUAL(s_str(e, "from"), "127.0.0.1");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(e, "target"), "purged")),
			2);
	json_decref(lines);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

TEST_MAIN("audit", TEST(test_operator_actions_are_audited),
	  TEST(test_dead_letter_retention_and_purge))
