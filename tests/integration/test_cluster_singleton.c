/*
 * tests/integration/test_cluster_singleton.c — singleton pollers in cluster mode
 * (docs/cluster.md, "Singletons"; issue 17's test 3): three nats-server and three kanald
 * nodes, each configured with the same daycare poller against one simulated daycare system
 * (kanal-sim-daycare, which adds a registration every 150 ms). Only the node holding the
 * poller's lease polls; when it is SIGKILLed another node takes the lease within the lease
 * time (plus slack) and resumes from the cursor stored in the cluster: every registration is
 * delivered, none skipped, and the duplicates (at least once) are counted and printed. A
 * clean stop of the holder releases the lease, so the next node takes it at once rather than
 * after the TTL. `status --cluster` names the holder. With one nats-server and one node: a
 * cursor file left from single-node mode is where the poller starts in cluster mode, and
 * afterwards the cursor is the cluster's (a node restarted without its file goes on).
 *
 * Every wait is bounded and generous: a 2-core machine shared with other suites. Skipped,
 * saying so, without nats-server.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kd_cluster.h"
#include "kanald.h"
#include "natsd.h"
#include "test.h"
#include "upstream.h"

#define TOKEN "sim-daycare-token"
#define NODES 3
#define LEASE_MS 6000
#define SLACK_MS 15000
#define INITIAL 30 /* registrations there before the first poll */
#define LATER 120  /* added by the simulator, one every 150 ms */
#define HOLDS "took its lease"

/* A kanald node with the daycare poller (a singleton by default) and a sink for child.*,
 * against nc with `replicas`; `cursor` (may be NULL): a cursor file the poller left in the
 * node's folder in single-node mode. */
static kd_t *s_node(const natsd_t *nc, int replicas, const upstream_t *up, int i,
		    const char *cursor)
{
	char *inst = NULL, *journal, *conf, *key, tag[32], name[16];
	kd_t *kd;

	snprintf(tag, sizeof tag, "singleton-kd%d", i);
	snprintf(name, sizeof name, "node%d", i);
	journal = clu_journal(nc, replicas, name, "    lease: 6s\n");
	if (!journal || asprintf(&inst,
				 "  - name: daycare\n    plugin: daycare\n    options:\n"
				 "      base_url: %s\n      token: %s\n      poll_interval: 200ms\n"
				 "      timeout: 2s\n      max_backoff: 1s\n"
				 "      pseudonym_key: '@DIR@/pseudonym.key'\n"
				 "  - name: out\n    plugin: sink\n"
				 "    options: { path: '@DIR@/out.jsonl' }\n",
				 up->url, TOKEN) < 0) {
		free(journal);
		return NULL;
	}
	conf = kd_config(inst, journal);
	kd = kd_prepare(tag, conf,
			"routes:\n  - name: children\n    match: { type: child.> }\n"
			"    to: out\n");
	key = test_write_file(kd->dir, "pseudonym.key", "kanal-test-pseudonym-key-0123456789\n");
	chmod(key, 0600);
	free(key);
	if (cursor) {
		char *dir = NULL;
		if (asprintf(&dir, "%s/state", kd->dir) > 0) {
			(void)mkdir(dir, 0700);
			free(dir);
		}
		if (asprintf(&dir, "%s/state/daycare", kd->dir) > 0) {
			(void)mkdir(dir, 0700);
			free(test_write_file(dir, "cursor", cursor));
			free(dir);
		}
	}
	free(inst);
	free(journal);
	free(conf);
	if (kd_launch(kd) != 0) {
		char *log = kd_log(kd);
		fprintf(stderr, "kanald %d did not start:\n%s\n", i, log ? log : "");
		free(log);
		kd_destroy(&kd);
	}
	return kd;
}

/* Tallies the registrations the nodes' sinks wrote (event ids daycare-reg-<n>, n from
 * 1001): how many of the first `total` are missing, and the lines beyond one per event. */
static int s_missing(kd_t **nodes, int total, size_t *dups)
{
	int *seen = calloc((size_t)total, sizeof *seen), missing = 0;

	*dups = 0;
	for (size_t i = 0; i < NODES; i++) {
		char *text = nodes[i] ? test_read_file(kd_path(nodes[i], "out.jsonl"), NULL) : NULL;
		char *save = NULL;
		for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
		     line = strtok_r(NULL, "\n", &save)) {
			const char *id = strstr(line, "\"id\":\"daycare-reg-");
			int n = id ? atoi(id + 18) - 1001 : -1;
			if (n >= 0 && n < total && seen[n]++)
				(*dups)++;
		}
		free(text);
	}
	for (int n = 0; n < total; n++)
		missing += !seen[n];
	free(seen);
	return missing;
}

/* How often each node's log says it took the lease, into counts. */
static void s_lease_counts(kd_t **nodes, size_t counts[NODES])
{
	for (size_t i = 0; i < NODES; i++) {
		char *log = nodes[i] ? kd_log(nodes[i]) : NULL;
		counts[i] = kd_count(log, HOLDS);
		free(log);
	}
}

/* Waits until a node takes the lease (its log says so once more than in `before`); returns
 * its index, or -1 after timeout_ms. */
static int s_wait_holder(kd_t **nodes, const size_t before[NODES], int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	size_t now[NODES];

	while (test_now_ms() < deadline) {
		s_lease_counts(nodes, now);
		for (int i = 0; i < NODES; i++)
			if (now[i] > before[i])
				return i;
		test_sleep_ms(100);
	}
	return -1;
}

/* How many nodes' status shows the daycare instance "running" (the rest: "standby"), the
 * last such node into *running_node, and how many nodes' daycare polled at all (its metric
 * `polls`) into *polling. */
static int s_running(kd_t **nodes, int *running_node, int *polling)
{
	int running = 0;

	*running_node = -1;
	*polling = 0;
	for (size_t i = 0; i < NODES; i++) {
		char *reply = nodes[i] ? kd_admin(nodes[i], "{\"cmd\":\"status\"}", 15000) : NULL;
		json_t *st = reply ? json_loads(reply, 0, NULL) : NULL;
		json_t *insts = json_object_get(st, "instances"), *it;
		size_t k;
		json_array_foreach(insts, k, it)
		{
			const char *name = json_string_value(json_object_get(it, "name"));
			const char *state = json_string_value(json_object_get(it, "state"));
			if (name && !strcmp(name, "daycare") && state &&
			    !strcmp(state, "running")) {
				running++;
				*running_node = (int)i;
			}
			if (name && !strcmp(name, "daycare") &&
			    json_real_value(
				    json_object_get(json_object_get(it, "metrics"), "polls")) > 0)
				(*polling)++;
		}
		if (!insts)
			fprintf(stderr, "\nnode%zu status: %s\n", i, reply ? reply : "(no answer)");
		json_decref(st);
		free(reply);
	}
	return running;
}

static void test_one_poller_and_takeover(void)
{
	const char *args[] = { "--set",       "token=" TOKEN, "--set",     "initial=30", "--set",
			       "rate_ms=150", "--set",        "count=120", "--quiet",    NULL };
	natsd_t *nc = NULL;
	upstream_t *up = NULL;
	kd_t *nodes[NODES] = { 0 };
	const int total = INITIAL + LATER;
	int holder, next, running_node, polling, missing = -1;
	size_t dups = 0, counts[NODES] = { 0 };
	int64_t killed_at, took_ms, stopped_at, released_ms;
	char *reply = NULL, *log = NULL;

	if (!natsd_available()) {
		fprintf(stderr, "\n(skipped: nats-server is not installed; scripts/deps.sh) ");
		return;
	}
	REQUIRE((nc = natsd_start("singleton", 3)) != NULL);
	REQUIRE((up = upstream_start("daycare", args)) != NULL);
	for (int i = 0; i < NODES; i++)
		REQUIRE((nodes[i] = s_node(nc, 3, up, i, NULL)) != NULL);

	/* One node takes the lease and polls; the others stand by. */
	REQUIRE(s_wait_holder(nodes, counts, LEASE_MS + SLACK_MS) >= 0);
	/* The holder runs it (a holder whose start failed — NATS still electing the new
	 * bucket's leader — lets the lease go and another takes it: wait for a runner). */
	{
		int64_t deadline = test_now_ms() + LEASE_MS + SLACK_MS;
		while (s_running(nodes, &holder, &polling) != 1 && test_now_ms() < deadline)
			test_sleep_ms(200);
	}
	REQUIRE(holder >= 0);
	test_sleep_ms(LEASE_MS / 2); /* a renewal or two: still one, the same */
	CU_ASSERT_EQUAL(s_running(nodes, &running_node, &polling), 1);
	CU_ASSERT_EQUAL(running_node, holder);
	CU_ASSERT_EQUAL(polling, 1); /* the standby nodes never polled */
	reply = kd_admin(nodes[(holder + 1) % NODES], "{\"cmd\":\"status\",\"cluster\":true}",
			 10000);
	CU_ASSERT_PTR_NOT_NULL(reply);
	if (reply) {
		/* Any node names the holder of the daycare singleton. */
		json_t *st = json_loads(reply, 0, NULL), *it;
		json_t *list = json_object_get(json_object_get(st, "cluster"), "singletons");
		char want[16];
		size_t k, found = 0;
		snprintf(want, sizeof want, "node%d", holder);
		json_array_foreach(list, k, it)
		{
			const char *inst = json_string_value(json_object_get(it, "instance"));
			const char *node = json_string_value(json_object_get(it, "node"));
			found += inst && node && !strcmp(inst, "daycare") && !strcmp(node, want);
		}
		CU_ASSERT_EQUAL(found, 1);
		if (found != 1)
			fprintf(stderr, "\nstatus --cluster: %s\n", reply);
		json_decref(st);
	}
	free(reply);
	reply = NULL;

	/* Part of the registrations are through: kill the holder mid-stream. */
	{
		int64_t deadline = test_now_ms() + 60000;
		while (s_missing(nodes, total, &dups) > total - 50 && test_now_ms() < deadline)
			test_sleep_ms(100);
	}
	REQUIRE(kd_stop(nodes[holder], SIGKILL, 10000) >= 0);
	killed_at = test_now_ms();
	s_lease_counts(nodes, counts);
	next = s_wait_holder(nodes, counts, LEASE_MS + SLACK_MS);
	took_ms = test_now_ms() - killed_at;
	fprintf(stderr, "\nnode%d killed; node%d took the lease after %lld ms (lease %d ms) ",
		holder, next, (long long)took_ms, LEASE_MS);
	REQUIRE(next >= 0 && next != holder);
	CU_ASSERT(took_ms <= LEASE_MS + SLACK_MS);
	/* It resumed from the stored cursor, not from the beginning. */
	log = kd_log(nodes[next]);
	CU_ASSERT_PTR_NOT_NULL(strstr(log ? log : "", "from cursor "));
	CU_ASSERT_PTR_NULL(strstr(log ? log : "", "from cursor (the beginning)"));
	free(log);
	log = NULL;

	/* Every registration arrives, none skipped; duplicates within at least once. */
	{
		int64_t deadline = test_now_ms() + 120000;
		while ((missing = s_missing(nodes, total, &dups)) > 0 && test_now_ms() < deadline)
			test_sleep_ms(250);
	}
	fprintf(stderr, "%d registrations, %d missing, %zu duplicates ", total, missing, dups);
	CU_ASSERT_EQUAL(missing, 0);
	/* A duplicate needs a delivery that was done and not acknowledged, or a page polled
	 * twice whose events' dedupe was lost: a few at most, never a second copy of all. */
	CU_ASSERT(dups < (size_t)total / 2);

	/* A clean stop releases the lease: the last node takes it well before the TTL. */
	s_lease_counts(nodes, counts);
	stopped_at = test_now_ms();
	REQUIRE(kd_stop(nodes[next], SIGTERM, 20000) == 0);
	holder = s_wait_holder(nodes, counts, LEASE_MS + SLACK_MS);
	released_ms = test_now_ms() - stopped_at;
	fprintf(stderr, "; after a clean stop (SIGTERM) node%d took it in %lld ms ", holder,
		(long long)released_ms);
	CU_ASSERT(holder >= 0 && holder != next);
	/* From SIGTERM, shutdown included; the TTL alone would take LEASE_MS or more. */
	CU_ASSERT(released_ms < LEASE_MS);
	log = kd_log(nodes[next]);
	CU_ASSERT_PTR_NOT_NULL(strstr(log ? log : "", "released its lease"));
done:
	free(log);
	free(reply);
	for (int i = 0; i < NODES; i++) {
		if (nodes[i] && getenv("KANAL_TEST_LOGS")) {
			char *l = kd_log(nodes[i]);
			fprintf(stderr, "\n--- node%d\n%s", i, l ? l : "");
			free(l);
		}
		kd_destroy(&nodes[i]);
	}
	upstream_stop(&up);
	natsd_destroy(&nc);
}

/* Moving to cluster mode keeps the cursor a poller wrote in single-node mode (the bucket has
 * none yet, so the node's file is read), and from then on the cursor is in the cluster: a
 * node restarted without its file goes on from where it stopped. One nats-server. */
static void test_cursor_carries_over(void)
{
	const char *args[] = { "--set", "token=" TOKEN, "--set", "initial=10", "--quiet", NULL };
	natsd_t *nc = NULL;
	upstream_t *up = NULL;
	kd_t *nodes[NODES] = { 0 };
	size_t counts[NODES] = { 0 }, dups = 0;
	char *log = NULL, *cursor_file = NULL;
	int missing;

	if (!natsd_available()) {
		fprintf(stderr, "\n(skipped: nats-server is not installed; scripts/deps.sh) ");
		return;
	}
	REQUIRE((nc = natsd_start("singleton-carry", 1)) != NULL);
	REQUIRE((up = upstream_start("daycare", args)) != NULL);
	/* Single-node mode had read four registrations. */
	REQUIRE((nodes[0] = s_node(nc, 1, up, 0, "c_4\n")) != NULL);
	REQUIRE(s_wait_holder(nodes, counts, LEASE_MS + SLACK_MS) == 0);
	{
		int64_t deadline = test_now_ms() + 30000;
		while (s_missing(nodes, 10, &dups) > 4 && test_now_ms() < deadline)
			test_sleep_ms(100);
	}
	/* 1005-1010 came; 1001-1004 did not come again. */
	CU_ASSERT_EQUAL(s_missing(nodes, 10, &dups), 4);
	log = kd_log(nodes[0]);
	CU_ASSERT_PTR_NOT_NULL(strstr(log ? log : "", "from cursor c_4"));
	free(log);
	log = NULL;

	/* Killed, its file removed: the cursor comes from the cluster. */
	REQUIRE(kd_stop(nodes[0], SIGKILL, 10000) >= 0);
	cursor_file = strdup(kd_path(nodes[0], "state/daycare/cursor"));
	CU_ASSERT_EQUAL(unlink(cursor_file), 0);
	s_lease_counts(nodes, counts);
	REQUIRE(kd_restart(nodes[0]) == 0);
	REQUIRE(s_wait_holder(nodes, counts, LEASE_MS + SLACK_MS) == 0);
	log = kd_log(nodes[0]);
	CU_ASSERT_PTR_NOT_NULL(strstr(log ? log : "", "from cursor c_10"));
	missing = s_missing(nodes, 10, &dups);
	CU_ASSERT_EQUAL(missing, 4);
	/* A delivery the killed node had done but not acknowledged comes again (at least
	 * once); the poll itself re-emits nothing. */
	CU_ASSERT(dups <= 6);
	/* The file stays gone: the state is the cluster's now. */
	CU_ASSERT_EQUAL(access(cursor_file, F_OK), -1);
done:
	free(cursor_file);
	free(log);
	kd_destroy(&nodes[0]);
	upstream_stop(&up);
	natsd_destroy(&nc);
}

TEST_MAIN("cluster_singleton", TEST(test_one_poller_and_takeover), TEST(test_cursor_carries_over))
