/*
 * tests/integration/test_cluster_routes.c — routing tables shared through the routes bucket
 * in cluster mode (docs/cluster.md, "Changing routes"), and the dead-letter commands that
 * change the DEAD stream. One nats-server and kanald nodes on loopback: `kanalctl routes
 * push` on node A makes node B route by the new table; a table that does not compile — on
 * the node asked (with file:line:col), or only on another node (an instance it lacks) — is
 * refused and both nodes keep routing by the old one; a node started later uses the
 * cluster's table, not its local files; `kanalctl reload` on one node reloads all. `dlq
 * list`, `show`, `drop` and `purge` read and delete letters of the DEAD stream from any node.
 *
 * Skipped, saying so, when nats-server is not installed (scripts/deps.sh installs it).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/time.h>

#include "kanald.h"
#include "kd_cluster.h"
#include "natsd.h"
#include "test.h"

#define WAIT CLU_WAIT

static const char *s_sinks_abc = "  - name: a\n    plugin: sink\n"
				 "    options: { path: '@DIR@/a.jsonl', fail_type: x.poison }\n"
				 "  - name: b\n    plugin: sink\n"
				 "    options: { path: '@DIR@/b.jsonl' }\n"
				 "  - name: c\n    plugin: sink\n"
				 "    options: { path: '@DIR@/c.jsonl' }\n";
/* Node B runs no instance c: a table that sends to c does not compile there. */
static const char *s_sinks_ab = "  - name: a\n    plugin: sink\n"
				"    options: { path: '@DIR@/a.jsonl', fail_type: x.poison }\n"
				"  - name: b\n    plugin: sink\n"
				"    options: { path: '@DIR@/b.jsonl' }\n";

static const char *s_to_a = "routes:\n"
			    "  - name: to-a\n"
			    "    match: { type: 'x.>' }\n"
			    "    to: [a]\n";
static const char *s_to_b = "routes:\n"
			    "  - name: to-b\n"
			    "    match: { type: 'x.>' }\n"
			    "    to: [b]\n";
static const char *s_to_c = "routes:\n"
			    "  - name: to-c\n"
			    "    match: { type: 'x.>' }\n"
			    "    to: [c]\n";
static const char *s_to_both = "routes:\n"
			       "  - name: to-both\n"
			       "    match: { type: 'x.>' }\n"
			       "    to: [a, b]\n";

/* True when the node's routing table (the `routes` admin command) has a route `name`. */
static bool s_has_route(kd_t *kd, const char *name)
{
	char *reply = kd_admin(kd, "{\"cmd\":\"routes\"}", WAIT), needle[128];
	bool has;

	snprintf(needle, sizeof needle, "\"name\":\"%s\"", name);
	has = reply && strstr(reply, needle);
	free(reply);
	return has;
}

/* Waits up to timeout_ms until the node routes by a table with route `name`. */
static bool s_wait_route(kd_t *kd, const char *name, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;

	while (!s_has_route(kd, name)) {
		if (test_now_ms() >= deadline)
			return false;
		test_sleep_ms(200);
	}
	return true;
}

/* Sends `count` events of type x.ok (ids from `first`) to kd's gateway, all accepted. */
static bool s_send(kd_t *kd, int first, int count)
{
	char *batch = clu_batch(first, count, "x.ok");
	bool ok = batch && kd_send_event(kd, batch, "accepted", WAIT, NULL);

	free(batch);
	return ok;
}

/* Writes text as file `name` in kd's folder for kanalctl to push; the path (static, copy). */
static const char *s_push_file(kd_t *kd, const char *name, const char *text)
{
	char *path = test_write_file(kd_path(kd, "."), name, text);
	static char keep[1024];

	snprintf(keep, sizeof keep, "%s", path ? path : "");
	free(path);
	return keep;
}

static void test_push_reaches_every_node(void)
{
	natsd_t *nc = NULL;
	kd_t *nodes[3] = { NULL, NULL, NULL }, *a, *b;
	char *conf_abc = NULL, *conf_ab = NULL, *out = NULL, *reply = NULL, *log = NULL;
	char path[1024];

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE((nc = natsd_start("croutes", 1)) != NULL);
	conf_abc = clu_config(nc, 1, "10m", s_sinks_abc);
	conf_ab = clu_config(nc, 1, "10m", s_sinks_ab);
	REQUIRE((a = nodes[0] = kd_start("croutes-a", conf_abc, s_to_a)) != NULL);
	REQUIRE((b = nodes[1] = kd_start("croutes-b", conf_ab, s_to_a)) != NULL);
	/* Both nodes' entries in the nodes bucket: the push waits for B's verdict. */
	test_sleep_ms(1500);

	/* The local files' table (generation 0): x.* goes to a. */
	reply = kd_admin(a, "{\"cmd\":\"status\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "\"routes_generation\":0"));
	free(reply);
	reply = NULL;
	REQUIRE(s_send(b, 0, 10));
	CU_ASSERT_EQUAL(clu_wait_lines(nodes, 2, "a.jsonl", 10, 30000), 10);

	/* Pushed on A: B routes by it too, and events sent to B reach b. */
	snprintf(path, sizeof path, "%s", s_push_file(a, "to-b.yaml", s_to_b));
	{
		const char *args[] = { "routes", "push", path, NULL };
		CU_ASSERT_EQUAL(clu_kanalctl(a, &out, args), 0);
		CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "routes push: ok"));
		CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "generation"));
	}
	CU_ASSERT(s_has_route(a, "to-b")); /* the pusher swapped before answering */
	/* The operator's push is in A's audit log, with the generation that took effect. */
	log = test_read_file(kd_path(a, "state/audit.log"), NULL);
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "\"action\":\"routes.push\""));
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "\"generation\":"));
	free(log);
	log = NULL;
	CU_ASSERT(s_wait_route(b, "to-b", 15000));
	CU_ASSERT(!s_has_route(b, "to-a"));
	reply = kd_admin(b, "{\"cmd\":\"status\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "\"routes_generation\":"));
	CU_ASSERT_PTR_NULL(reply ? strstr(reply, "\"routes_generation\":0") : "no reply");
	free(reply);
	reply = NULL;
	REQUIRE(s_send(b, 100, 10));
	CU_ASSERT_EQUAL(clu_wait_lines(nodes, 2, "b.jsonl", 10, 30000), 10);
	test_sleep_ms(500);
	CU_ASSERT_EQUAL(clu_lines(nodes, 2, "a.jsonl"), 10);
	log = kd_log(b);
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "the cluster's table, generation"));
	free(log);
	log = NULL;

	/* A table that does not compile on the node asked: refused with file:line:col, and
	 * nothing changes anywhere. */
	reply = kd_admin(a,
			 "{\"cmd\":\"routes.push\",\"files\":[{\"name\":\"routes/bad.yaml\","
			 "\"text\":\"routes:\\n  - name: bad\\n    match: { type: 'x.>' }\\n"
			 "    to: [nowhere]\\n\"}]}",
			 WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "\"ok\":false"));
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "routes/bad.yaml:4:"));
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "nowhere"));
	free(reply);
	reply = NULL;

	/* A table that compiles on A but not on B (B runs no instance c): B refuses, the push
	 * fails with B's error, and both nodes keep routing by the old table. */
	free(out);
	out = NULL;
	snprintf(path, sizeof path, "%s", s_push_file(a, "to-c.yaml", s_to_c));
	{
		const char *args[] = { "routes", "push", path, NULL };
		CU_ASSERT_EQUAL(clu_kanalctl(a, &out, args), 1);
		CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "to-c.yaml:4:"));
		CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "refused the table"));
		CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "stays in force"));
	}
	CU_ASSERT(s_has_route(a, "to-b"));
	CU_ASSERT(s_has_route(b, "to-b"));
	CU_ASSERT(!s_has_route(a, "to-c"));
	REQUIRE(s_send(a, 200, 5));
	REQUIRE(s_send(b, 300, 5));
	CU_ASSERT_EQUAL(clu_wait_lines(nodes, 2, "b.jsonl", 20, 30000), 20);
	CU_ASSERT_EQUAL(clu_lines(nodes, 2, "c.jsonl"), 0);

	/* A node started later (local files: to-a) uses the cluster's table. */
	REQUIRE((nodes[2] = kd_start("croutes-c", conf_abc, s_to_a)) != NULL);
	CU_ASSERT(s_has_route(nodes[2], "to-b"));
	CU_ASSERT(!s_has_route(nodes[2], "to-a"));
	log = kd_log(nodes[2]);
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "using the cluster's routing table"));
	free(log);
	log = NULL;
	test_sleep_ms(1500); /* its entry in the nodes bucket */

	/* `kanalctl reload` on B pushes B's own files to every node. */
	kd_write_routes(b, s_to_both);
	free(out);
	out = NULL;
	{
		const char *args[] = { "reload", NULL };
		CU_ASSERT_EQUAL(clu_kanalctl(b, &out, args), 0);
	}
	CU_ASSERT(s_has_route(b, "to-both"));
	CU_ASSERT(s_wait_route(a, "to-both", 15000));
	CU_ASSERT(s_wait_route(nodes[2], "to-both", 15000));

	/* Each node stops cleanly, its watcher thread with it. */
	for (int k = 0; k < 3; k++)
		CU_ASSERT_EQUAL(kd_stop(nodes[k], SIGTERM, 20000), 0);
done:
	free(out);
	free(reply);
	free(log);
	free(conf_abc);
	free(conf_ab);
	for (int k = 0; k < 3; k++)
		kd_destroy(&nodes[k]);
	natsd_destroy(&nc);
}

/* Waits up to 30 s for the DEAD stream to hold n letters. */
static bool s_wait_dead(const natsd_t *nc, int64_t n)
{
	int64_t deadline = test_now_ms() + 30000;

	while (clu_dead_count(nc) != n && test_now_ms() < deadline)
		test_sleep_ms(200);
	return clu_dead_count(nc) == n;
}

/* The ids of `dlq list --json`, oldest first, into ids; returns how many. */
static size_t s_letter_ids(kd_t *kd, long long *ids, size_t max)
{
	const char *args[] = { "dlq", "list", "--json", NULL };
	char *out = NULL;
	json_t *root, *item;
	size_t i, n = 0;

	clu_kanalctl(kd, &out, args);
	root = out ? json_loads(out, 0, NULL) : NULL;
	json_array_foreach(json_object_get(root, "items"), i, item)
	{
		if (n < max)
			ids[n++] = json_integer_value(json_object_get(item, "id"));
	}
	/* Newest first: turn it round. */
	for (size_t k = 0; k < n / 2; k++) {
		long long t = ids[k];
		ids[k] = ids[n - 1 - k];
		ids[n - 1 - k] = t;
	}
	json_decref(root);
	free(out);
	return n;
}

/* `dlq purge --older-than before`: how many letters kanald says it purged, -1 when the
 * command failed. */
static long long s_purge(kd_t *kd, const char *before)
{
	const char *args[] = { "dlq", "purge", "--older-than", before, "--json", NULL };
	char *out = NULL;
	json_t *reply;
	long long n = -1;

	if (clu_kanalctl(kd, &out, args) == 0 && out && (reply = json_loads(out, 0, NULL))) {
		if (json_is_integer(json_object_get(reply, "purged")))
			n = json_integer_value(json_object_get(reply, "purged"));
		json_decref(reply);
	}
	free(out);
	return n;
}

/* The dead letters of the DEAD stream from any node: letters made on A are listed, shown
 * and dropped on B, purged on A. */
static void test_dlq_drop_and_purge(void)
{
	natsd_t *nc = NULL;
	kd_t *a = NULL, *b = NULL;
	char *conf = NULL, *out = NULL, *e = NULL, id[32], before[64];
	long long ids[8];

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE((nc = natsd_start("cdlq", 1)) != NULL);
	conf = clu_config(nc, 1, "10m", s_sinks_ab);
	REQUIRE((a = kd_start("cdlq-a", conf, s_to_a)) != NULL);
	REQUIRE((b = kd_start("cdlq-b", conf, s_to_a)) != NULL);
	/* Three letters: a rejects x.poison and the route has no fallback. */
	for (int i = 0; i < 3; i++) {
		snprintf(id, sizeof id, "p%d", i);
		free(e);
		e = kd_event("/cluster-test", id, "x.poison", "{}");
		REQUIRE(kd_send_event(a, e, "accepted", WAIT, NULL));
		if (i == 1) {
			REQUIRE(s_wait_dead(nc, 2));
			/* A moment between the first two letters and the third. */
			test_sleep_ms(1200);
			kanal_time_rfc3339(kanal_wall_ms(), before, sizeof before);
			test_sleep_ms(1200);
		}
	}
	REQUIRE(s_wait_dead(nc, 3));
	REQUIRE(s_letter_ids(b, ids, 8) == 3);
	snprintf(id, sizeof id, "%lld", ids[0]);
	{
		const char *args[] = { "dlq", "show", id, NULL };
		CU_ASSERT_EQUAL(clu_kanalctl(b, &out, args), 0);
		CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "x.poison"));
		CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "p0"));
	}

	/* drop on B: the oldest letter leaves the stream. */
	free(out);
	out = NULL;
	{
		const char *args[] = { "dlq", "drop", id, NULL };
		CU_ASSERT_EQUAL(clu_kanalctl(b, &out, args), 0);
	}
	CU_ASSERT(s_wait_dead(nc, 2));
	CU_ASSERT_EQUAL(s_letter_ids(a, ids, 8), 2);

	/* purge on A: what died before `before` goes (the second letter), the third stays. */
	CU_ASSERT_EQUAL(s_purge(a, before), 1);
	CU_ASSERT(s_wait_dead(nc, 1));
	CU_ASSERT_EQUAL(s_letter_ids(b, ids, 8), 1);
	/* Nothing older is left: a second purge deletes nothing. */
	CU_ASSERT_EQUAL(s_purge(b, before), 0);
	CU_ASSERT_EQUAL(clu_dead_count(nc), 1);
	CU_ASSERT_EQUAL(kd_stop(a, SIGTERM, 20000), 0);
	CU_ASSERT_EQUAL(kd_stop(b, SIGTERM, 20000), 0);
done:
	free(out);
	free(e);
	free(conf);
	kd_destroy(&a);
	kd_destroy(&b);
	natsd_destroy(&nc);
}

TEST_MAIN("cluster_routes", TEST(test_push_reaches_every_node), TEST(test_dlq_drop_and_purge))
