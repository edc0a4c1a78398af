/*
 * tests/integration/test_cluster.c — cluster mode (journal.mode: cluster, docs/cluster.md)
 * against real nats-server processes (tests/util/natsd.h) and real kanald nodes: an event is
 * answered "accepted" only once JetStream stored it, a resend (to any node) is "duplicate",
 * an event no enrich step reads is routed by the node that accepts it (never through
 * KANAL_IN) while an enriched one goes through KANAL_IN, every accepted
 * event reaches every destination at least once — with one node, and with three nats-server
 * and three kanald nodes while one kanald (a batch in flight to it), and in a second test one
 * nats-server, is killed mid-stream, resends stored once (1500 events each;
 * KANAL_CLUSTER_EVENTS=20000 for the count);
 * RETRY beyond the route's budget and REJECT end in the DEAD stream with their reason, which
 * kanalctl dlq lists, shows and replays; a REJECT with a fallback takes it; plugin emits go
 * through JetStream; a delivery longer than ack_wait is not handed out twice; the event
 * stream's lines reach NATS subjects; `status --cluster` lists the nodes; a node whose NATS
 * connection is gone stops acknowledging; a route's enrich steps run on the routing node
 * against the CPR simulator, a failing one ends in the DEAD stream with its notice; a stream
 * that differs from the node's config, or NATS out of reach, is refused with what to do.
 *
 * Every test starts its own NATS cluster and kanald nodes on ephemeral loopback ports and
 * bounds every wait generously (a 2-core machine shared with other suites). The suite is
 * skipped, saying so, when nats-server is not installed (scripts/deps.sh installs it).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <jansson.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_cluster.h"
#include "conf.h"
#include "kanald.h"
#include "natsd.h"
#include "test.h"
#include "upstream.h"

#define WAIT CLU_WAIT
#define BATCH 50
/* Events of each three-node test: 1500 by default (the 20,000 take minutes on 2
 * shared cores); KANAL_CLUSTER_EVENTS=20000 runs the count. A multiple of BATCH. */
static int s_cluster_events(void)
{
	const char *env = getenv("KANAL_CLUSTER_EVENTS");
	int n = env ? atoi(env) : 0;

	return n >= 3 * BATCH ? n / BATCH * BATCH : 1500;
}

static const char *s_sinks = "  - name: a\n    plugin: sink\n"
			     "    options: { path: '@DIR@/a.jsonl', fail_type: x.poison }\n"
			     "  - name: b\n    plugin: sink\n"
			     "    options: { path: '@DIR@/b.jsonl', retry_type: x.retry, "
			     "retry_after: 10ms }\n"
			     "  - name: c\n    plugin: sink\n"
			     "    options: { path: '@DIR@/c.jsonl', fail_type: y.fb }\n";

static const char *s_routes = "routes:\n"
			      "  - name: both\n"
			      "    match: { type: 'x.>' }\n"
			      "    to: [a, b]\n"
			      "    retry: { max_attempts: 3, backoff: 50ms, max_backoff: 100ms }\n"
			      "  - name: fb\n"
			      "    match: { type: 'y.>' }\n"
			      "    to: [c]\n"
			      "    fallback: [b]\n";

/* Waits up to timeout_ms until both sinks, over the nodes, hold every event 0..n-1.
 * Returns the events still missing at one of them. */
static int s_wait_delivered(kd_t **nodes, size_t n_nodes, int n, int timeout_ms, size_t *dups_a,
			    size_t *dups_b)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	int ma, mb;

	for (;;) {
		ma = clu_missing(nodes, n_nodes, "a.jsonl", n, dups_a);
		mb = clu_missing(nodes, n_nodes, "b.jsonl", n, dups_b);
		if ((!ma && !mb) || test_now_ms() >= deadline)
			break;
		test_sleep_ms(200);
	}
	if (ma || mb)
		fprintf(stderr, "\nnot delivered after %d s: %d at a, %d at b\n", timeout_ms / 1000,
			ma, mb);
	return ma > mb ? ma : mb;
}

/* ---- the config ----------------------------------------------------------------------- */

/* journal.nats as written and its defaults (the errors are in tests/data/conf/bad/). */
static void test_config(void)
{
	char *dir = test_tmpdir("cluster-conf"), *path;
	conf_t *conf = NULL;
	diag_t d = { 0 };

	path = test_write_file(
		dir, "kanald.yaml",
		"routes: [routes]\n"
		"journal:\n"
		"  mode: cluster\n"
		"  nats:\n"
		"    servers: [nats://10.0.0.1:4222, tls://10.0.0.2:4222]\n"
		"    creds_file: secret/kanal.creds\n"
		"    tls: { ca_file: ca.pem, cert_file: me.pem, key_file: me.key }\n");
	CU_ASSERT_EQUAL_FATAL(conf_load(path, &conf, &d), 0);
	CU_ASSERT(conf->journal_cluster);
	CU_ASSERT(!conf->journal_durable);
	CU_ASSERT_EQUAL(conf->nats.n_servers, 2);
	CU_ASSERT_STRING_EQUAL(conf->nats.servers[1], "tls://10.0.0.2:4222");
	CU_ASSERT_STRING_EQUAL(conf->nats.stream_prefix, "KANAL");
	CU_ASSERT_EQUAL(conf->nats.replicas, 3);
	CU_ASSERT_EQUAL(conf->nats.ack_wait_ms, 30000);
	/* Files are relative to kanald.yaml's folder. */
	CU_ASSERT_PTR_NOT_NULL(strstr(conf->nats.creds_file, "/secret/kanal.creds"));
	CU_ASSERT_EQUAL(conf->nats.creds_file[0], '/');
	CU_ASSERT_PTR_NOT_NULL(strstr(conf->nats.tls_key_file, "/me.key"));
	conf_destroy(&conf);
	diag_free(&d);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- one node, one replica ------------------------------------------------------------ */

static void test_one_node_end_to_end(void)
{
	natsd_t *nc = NULL;
	kd_t *kd = NULL, *nodes[1];
	char *conf = NULL, *batch = NULL, *reply = NULL, reasons[200];
	bool up[1] = { true };
	size_t next = 0, dups = 0, resends = 0, da = 0, db = 0, acc = 0, dup = 0, other = 0;
	int events = 300;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE((nc = natsd_start("cluster1", 1)) != NULL);
	conf = clu_config(nc, 1, "10m", s_sinks);
	REQUIRE((kd = kd_start("cluster1-kd", conf, s_routes)) != NULL);
	nodes[0] = kd;
	for (int first = 0; first < events; first += BATCH) {
		free(batch);
		batch = clu_batch(first, BATCH, "x.ok");
		REQUIRE(clu_store(nodes, up, 1, &next, batch, BATCH, &dups, &resends));
	}
	CU_ASSERT_EQUAL(dups, 0);
	CU_ASSERT_EQUAL(s_wait_delivered(nodes, 1, events, 60000, &da, &db), 0);
	CU_ASSERT_EQUAL(da + db, 0); /* nothing died: nothing delivered twice */

	/* The first batch again, its deliveries long acknowledged (and gone from the work
	 * queue): JetStream's duplicate window still answers, nothing is delivered again. */
	free(batch);
	batch = clu_batch(0, BATCH, "x.ok");
	REQUIRE(kd_send_event(kd, batch, NULL, WAIT, &reply));
	clu_tally(reply, &acc, &dup, &other, NULL, 0);
	CU_ASSERT_EQUAL(dup, BATCH);
	CU_ASSERT_EQUAL(acc, 0);
	test_sleep_ms(1000);
	CU_ASSERT_EQUAL(s_wait_delivered(nodes, 1, events, 1000, &da, &db), 0);
	CU_ASSERT_EQUAL(da + db, 0);

	/* REJECT at a and RETRY at b beyond the route's 3 attempts: both in the DEAD stream. */
	free(batch);
	batch = strdup("[{\"specversion\":\"1.0\",\"id\":\"p1\",\"source\":\"/cluster-test\","
		       "\"type\":\"x.poison\"},{\"specversion\":\"1.0\",\"id\":\"r1\","
		       "\"source\":\"/cluster-test\",\"type\":\"x.retry\"}]");
	CU_ASSERT(kd_send_event(kd, batch, "accepted", WAIT, NULL));
	{
		int64_t deadline = test_now_ms() + 30000;
		while (clu_dead_count(nc) < 2 && test_now_ms() < deadline)
			test_sleep_ms(300);
		CU_ASSERT_EQUAL(clu_dead_count(nc), 2);
		CU_ASSERT_EQUAL(clu_dead_letters(nc, reasons, sizeof reasons, 10), 2);
		CU_ASSERT_PTR_NOT_NULL(strstr(reasons, "rejected"));
		CU_ASSERT_PTR_NOT_NULL(strstr(reasons, "retry budget spent"));
	}
	/* REJECT at c: the route's fallback b gets it, and it is no dead letter. */
	{
		char *e = kd_event("/cluster-test", "fb1", "y.fb", "{}");
		int64_t deadline = test_now_ms() + 30000;
		CU_ASSERT(kd_send_event(kd, e, "accepted", WAIT, NULL));
		free(e);
		for (;;) {
			char *text = test_read_file(kd_path(kd, "b.jsonl"), NULL);
			bool there = strstr(text ?: "", "\"fb1\"") != NULL;
			free(text);
			if (there || test_now_ms() >= deadline)
				break;
			test_sleep_ms(200);
		}
		e = test_read_file(kd_path(kd, "b.jsonl"), NULL);
		CU_ASSERT_EQUAL(kd_count(e, "\"id\":\"fb1\""), 1);
		free(e);
		e = test_read_file(kd_path(kd, "c.jsonl"), NULL);
		CU_ASSERT_EQUAL(kd_count(e, "\"fb1\""), 0);
		free(e);
		CU_ASSERT_EQUAL(clu_dead_count(nc), 2);
	}
	/* kanalctl dlq against the DEAD stream: list, show, then replay once the destinations
	 * take the events (kanald restarted with fixed sinks on the same streams). */
	{
		char cmd[1200], *out = clu_kanalctl_text(kd, "dlq list");
		json_t *list = NULL, *item, *shown = NULL;
		json_int_t rejected_id = -1;
		size_t i;

		CU_ASSERT_PTR_NOT_NULL(strstr(out, "retry budget spent"));
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "rejected"));
		free(out);
		free(reply);
		reply = kd_admin(kd, "{\"cmd\":\"dlq.list\"}", WAIT);
		list = reply ? json_loads(reply, 0, NULL) : NULL;
		CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 2);
		json_array_foreach(json_object_get(list, "items"), i, item)
		{
			if (!strcmp(json_string_value(json_object_get(item, "reason")) ?: "",
				    "rejected")) {
				rejected_id = json_integer_value(json_object_get(item, "id"));
				CU_ASSERT_STRING_EQUAL(
					json_string_value(json_object_get(item, "destination"))
						?: "",
					"a");
				CU_ASSERT_STRING_EQUAL(
					json_string_value(json_object_get(item, "event_id")) ?: "",
					"p1");
			}
		}
		json_decref(list);
		CU_ASSERT(rejected_id > 0);
		snprintf(cmd, sizeof cmd, "{\"cmd\":\"dlq.show\",\"id\":%lld}",
			 (long long)rejected_id);
		free(reply);
		reply = kd_admin(kd, cmd, WAIT);
		shown = reply ? json_loads(reply, 0, NULL) : NULL;
		item = json_object_get(shown, "item");
		CU_ASSERT(json_array_size(json_object_get(item, "errors")) >= 1);
		CU_ASSERT_STRING_EQUAL(
			json_string_value(json_object_get(json_object_get(item, "event"), "id"))
				?: "",
			"p1");
		json_decref(shown);
	}
	/* The status says cluster mode and connected; the dlq commands say where letters are. */
	free(reply);
	reply = kd_admin(kd, "{\"cmd\":\"status\"}", WAIT);
	{
		json_t *st = reply ? json_loads(reply, 0, NULL) : NULL;
		json_t *j = json_object_get(st, "journal");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "mode")) ?: "",
				       "cluster");
		CU_ASSERT(json_is_true(json_object_get(j, "connected")));
		json_decref(st);
	}
	/* Fixed destinations: a replay of every letter delivers both and empties the stream. */
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, 20000), 0);
	free(conf);
	conf = clu_config(nc, 1, "10m", s_sinks);
	{
		char *fixed = strstr(conf, ", fail_type: x.poison");
		if (fixed)
			memmove(fixed, fixed + strlen(", fail_type: x.poison"),
				strlen(fixed + strlen(", fail_type: x.poison")) + 1);
		fixed = strstr(conf, ", retry_type: x.retry");
		if (fixed)
			memmove(fixed, fixed + strlen(", retry_type: x.retry"),
				strlen(fixed + strlen(", retry_type: x.retry")) + 1);
	}
	kd_write_config(kd, conf);
	REQUIRE(kd_restart(kd) == 0);
	free(reply);
	reply = kd_admin(kd, "{\"cmd\":\"dlq.replay\",\"match\":{}}", WAIT);
	{
		json_t *rep = reply ? json_loads(reply, 0, NULL) : NULL;
		CU_ASSERT_EQUAL(json_array_size(json_object_get(rep, "replayed")), 2);
		CU_ASSERT_EQUAL(json_array_size(json_object_get(rep, "missing")), 0);
		json_decref(rep);
	}
	{
		int64_t deadline = test_now_ms() + 30000;
		size_t pa = 0, rb = 0;
		while (test_now_ms() < deadline) {
			char *ta = test_read_file(kd_path(kd, "a.jsonl"), NULL);
			char *tb = test_read_file(kd_path(kd, "b.jsonl"), NULL);
			pa = kd_count(ta, "\"id\":\"p1\"");
			rb = kd_count(tb, "\"id\":\"r1\"");
			free(ta);
			free(tb);
			if (pa && rb)
				break;
			test_sleep_ms(200);
		}
		CU_ASSERT_EQUAL(pa, 1);
		CU_ASSERT_EQUAL(rb, 1);
		CU_ASSERT_EQUAL(clu_dead_count(nc), 0);
	}
done:
	free(reply);
	free(batch);
	free(conf);
	kd_destroy(&kd);
	natsd_destroy(&nc);
}

/* ---- routing at accept ------------------------------------------------------------------ */

/* A node's counters: accepted, duplicates, and route `both`'s matches. */
static void s_counters(kd_t *kd, json_int_t *accepted, json_int_t *duplicates, json_int_t *matched)
{
	char *reply = kd_admin(kd, "{\"cmd\":\"status\"}", WAIT);
	json_t *st = reply ? json_loads(reply, 0, NULL) : NULL, *rc;
	json_t *c = json_object_get(st, "counters");
	size_t i;

	*accepted = json_integer_value(json_object_get(c, "accepted"));
	*duplicates = json_integer_value(json_object_get(c, "duplicates"));
	*matched = -1;
	json_array_foreach(json_object_get(st, "route_counters"), i,
			   rc) if (!strcmp(json_string_value(json_object_get(rc, "name")) ?: "",
					   "both")) *matched =
		json_integer_value(json_object_get(rc, "matched"));
	json_decref(st);
	free(reply);
}

/* An event no enrich step reads is routed by the node that accepts it, straight to the
 * delivery stream: the accept stream never sees it (docs/design/cluster.md, Routing at
 * accept). A resend of a stored batch to another node is answered "duplicate" (every one
 * of its deliveries is), each event is delivered once, and only the first node counts it
 * accepted and matched. */
static void test_routed_at_accept(void)
{
	natsd_t *nc = NULL;
	kd_t *nodes[2] = { NULL, NULL };
	char *conf = NULL, *batch = NULL, *reply = NULL;
	size_t acc = 0, dup = 0, other = 0, da = 0, db = 0;
	json_int_t accepted, duplicates, matched;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE((nc = natsd_start("cluster-at-accept", 1)) != NULL);
	conf = clu_config(nc, 1, "10m", s_sinks);
	REQUIRE((nodes[0] = kd_start("cluster-at-accept-kd1", conf, s_routes)) != NULL);
	REQUIRE((nodes[1] = kd_start("cluster-at-accept-kd2", conf, s_routes)) != NULL);
	batch = clu_batch(0, BATCH, "x.ok");
	REQUIRE(kd_send_event(nodes[0], batch, NULL, WAIT, &reply));
	clu_tally(reply, &acc, &dup, &other, NULL, 0);
	CU_ASSERT_EQUAL(acc, BATCH);
	/* Stored once per (event, route, destination), never in the accept stream. */
	CU_ASSERT_EQUAL(clu_stream_last_seq(nc, "KANAL_DLV"), 2 * BATCH);
	CU_ASSERT_EQUAL(clu_stream_last_seq(nc, "KANAL_IN"), 0);

	/* The sender heard nothing (say) and resends to the other node. */
	free(reply);
	reply = NULL;
	acc = dup = other = 0;
	REQUIRE(kd_send_event(nodes[1], batch, NULL, WAIT, &reply));
	clu_tally(reply, &acc, &dup, &other, NULL, 0);
	CU_ASSERT_EQUAL(dup, BATCH);
	CU_ASSERT_EQUAL(acc + other, 0);
	CU_ASSERT_EQUAL(clu_stream_last_seq(nc, "KANAL_DLV"), 2 * BATCH);
	CU_ASSERT_EQUAL(s_wait_delivered(nodes, 2, BATCH, 60000, &da, &db), 0);
	test_sleep_ms(1000);
	CU_ASSERT_EQUAL(s_wait_delivered(nodes, 2, BATCH, 1000, &da, &db), 0);
	CU_ASSERT_EQUAL(da + db, 0); /* once each */
	CU_ASSERT_EQUAL(clu_stream_last_seq(nc, "KANAL_IN"), 0);

	s_counters(nodes[0], &accepted, &duplicates, &matched);
	CU_ASSERT_EQUAL(accepted, BATCH);
	CU_ASSERT_EQUAL(duplicates, 0);
	CU_ASSERT_EQUAL(matched, BATCH);
	s_counters(nodes[1], &accepted, &duplicates, &matched);
	CU_ASSERT_EQUAL(accepted, 0);
	CU_ASSERT_EQUAL(duplicates, BATCH);
	CU_ASSERT_EQUAL(matched, 0);
done:
	free(reply);
	free(batch);
	free(conf);
	for (int k = 0; k < 2; k++)
		kd_destroy(&nodes[k]);
	natsd_destroy(&nc);
}

/* ---- a node without its NATS connection ------------------------------------------------- */

static void test_no_nats_no_acknowledgement(void)
{
	natsd_t *nc = NULL;
	kd_t *kd = NULL, *nodes[1];
	char *conf = NULL, *e = NULL, *reply = NULL, why[300] = "";
	size_t acc = 0, dup = 0, other = 0, da = 0, db = 0;
	bool stored = false;
	int64_t deadline;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE((nc = natsd_start("cluster-split", 1)) != NULL);
	conf = clu_config(nc, 1, "10m", s_sinks);
	REQUIRE((kd = kd_start("cluster-split-kd", conf, s_routes)) != NULL);
	nodes[0] = kd;
	REQUIRE(natsd_kill(nc, 0, SIGKILL) == 0);
	e = kd_event("/cluster-test", "ev-000000", "x.ok", "{\"n\":0}");
	REQUIRE(kd_send_event(kd, e, NULL, WAIT, &reply));
	clu_tally(reply, &acc, &dup, &other, why, sizeof why);
	CU_ASSERT_EQUAL(acc, 0);
	CU_ASSERT_EQUAL(other, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "error: not accepted"));
	free(reply);
	reply = NULL;
	/* NATS back: the node reconnects by itself and the resend is stored and delivered. */
	REQUIRE(natsd_restart(nc, 0) == 0);
	deadline = test_now_ms() + 30000;
	while (!stored && test_now_ms() < deadline) {
		acc = dup = other = 0;
		kd_send_event(kd, e, NULL, WAIT, &reply);
		clu_tally(reply, &acc, &dup, &other, NULL, 0);
		free(reply);
		reply = NULL;
		stored = acc == 1;
		if (!stored)
			test_sleep_ms(300);
	}
	CU_ASSERT(stored);
	CU_ASSERT_EQUAL(s_wait_delivered(nodes, 1, 1, 30000, &da, &db), 0);
done:
	free(reply);
	free(e);
	free(conf);
	kd_destroy(&kd);
	natsd_destroy(&nc);
}

/* ---- an instance's emits ------------------------------------------------------------------- */

/* A plugin's emit is published to the accept stream too, acknowledged once stored, and
 * routed like any event: tp_echo re-emits what it gets as <type>.echoed. */
static void test_emits_go_through_jetstream(void)
{
	natsd_t *nc = NULL;
	kd_t *kd = NULL;
	char *conf = NULL, *extra = NULL, *batch = NULL;
	int n = 100;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE((nc = natsd_start("cluster-emit", 1)) != NULL);
	REQUIRE(asprintf(&extra,
			 "journal:\n  mode: cluster\n  nats:\n    servers: %s\n"
			 "    replicas: 1\n    ack_wait: 5s\n",
			 nc->servers) > 0);
	conf = kd_config("  - name: echo\n    plugin: '@TPLUGINS@/tp_echo.so'\n"
			 "  - name: a\n    plugin: sink\n    options: { path: '@DIR@/a.jsonl' }\n"
			 "  - name: b\n    plugin: sink\n    options: { path: '@DIR@/b.jsonl' }\n",
			 extra);
	REQUIRE((kd = kd_start(
			 "cluster-emit-kd", conf,
			 "routes:\n"
			 "  - name: in\n    match: { type: y.in }\n    to: [echo]\n"
			 "  - name: out\n    match: { type: y.in.echoed }\n    to: [a, b]\n")) !=
		NULL);
	for (int first = 0; first < n; first += BATCH) {
		free(batch);
		batch = clu_batch(first, BATCH, "y.in");
		CU_ASSERT(kd_send_event(kd, batch, "accepted", WAIT, NULL));
	}
	/* The echoes carry new ids: count them by their data's n, which the sink writes. */
	{
		int64_t deadline = test_now_ms() + 60000;
		size_t got_a = 0, got_b = 0;
		while (test_now_ms() < deadline) {
			char *ta = test_read_file(kd_path(kd, "a.jsonl"), NULL);
			char *tb = test_read_file(kd_path(kd, "b.jsonl"), NULL);
			got_a = kd_count(ta, "y.in.echoed");
			got_b = kd_count(tb, "y.in.echoed");
			free(ta);
			free(tb);
			if (got_a >= (size_t)n && got_b >= (size_t)n)
				break;
			test_sleep_ms(200);
		}
		CU_ASSERT_EQUAL(got_a, (size_t)n);
		CU_ASSERT_EQUAL(got_b, (size_t)n);
	}
done:
	free(batch);
	free(extra);
	free(conf);
	kd_destroy(&kd);
	natsd_destroy(&nc);
}

/* ---- the event stream on NATS ---------------------------------------------------------------- */

/* With nats.events, each line of the event stream is also published on
 * kanal.events.<kind>.<type>: a monitor watches every node in one place. */
static void test_event_lines_on_nats(void)
{
	natsd_t *nc = NULL;
	kd_t *kd = NULL;
	char *conf = NULL, *extra = NULL, *e = NULL;
	natsConnection *conn = NULL;
	natsSubscription *sub = NULL;
	bool delivered = false, accepted = false;
	int64_t deadline;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE((nc = natsd_start("cluster-events", 1)) != NULL);
	REQUIRE(asprintf(&extra,
			 "journal:\n  mode: cluster\n  nats:\n    servers: %s\n"
			 "    replicas: 1\n    events: true\n",
			 nc->servers) > 0);
	conf = kd_config(s_sinks, extra);
	REQUIRE((kd = kd_start("cluster-events-kd", conf, s_routes)) != NULL);
	REQUIRE(natsConnection_ConnectTo(&conn, nc->nodes[0].url) == NATS_OK);
	REQUIRE(natsConnection_SubscribeSync(&sub, conn, "kanal.events.>") == NATS_OK);
	natsConnection_Flush(conn);
	e = kd_event("/cluster-test", "ev-000007", "x.ok", "{}");
	CU_ASSERT(kd_send_event(kd, e, "accepted", WAIT, NULL));
	deadline = test_now_ms() + 20000;
	while ((!delivered || !accepted) && test_now_ms() < deadline) {
		natsMsg *m = NULL;
		if (natsSubscription_NextMsg(&m, sub, 1000) != NATS_OK)
			continue;
		if (strstr(natsMsg_GetData(m), "ev-000007")) {
			if (!strcmp(natsMsg_GetSubject(m), "kanal.events.delivered.x.ok"))
				delivered = true;
			if (!strcmp(natsMsg_GetSubject(m), "kanal.events.accepted.x.ok"))
				accepted = true;
		}
		natsMsg_Destroy(m);
	}
	CU_ASSERT(accepted);
	CU_ASSERT(delivered);
done:
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(conn);
	free(e);
	free(extra);
	free(conf);
	kd_destroy(&kd);
	natsd_destroy(&nc);
}

/* ---- a delivery longer than ack_wait ------------------------------------------------------- */

/* A destination slower than ack_wait: kanald tells JetStream the delivery is in progress,
 * so it is not handed out again meanwhile — one delivery, not two. */
static void test_slow_delivery_in_progress(void)
{
	natsd_t *nc = NULL;
	kd_t *kd = NULL;
	char *conf = NULL, *extra = NULL, *e = NULL, *text = NULL;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE((nc = natsd_start("cluster-slow", 1)) != NULL);
	REQUIRE(asprintf(&extra,
			 "journal:\n  mode: cluster\n  nats:\n    servers: %s\n"
			 "    replicas: 1\n    ack_wait: 3s\n",
			 nc->servers) > 0);
	conf = kd_config("  - name: slow\n    plugin: sink\n"
			 "    options: { path: '@DIR@/slow.jsonl', delay: 7s }\n",
			 extra);
	REQUIRE((kd = kd_start("cluster-slow-kd", conf,
			       "routes:\n  - name: s\n    match: { type: z.slow }\n"
			       "    to: [slow]\n")) != NULL);
	e = kd_event("/cluster-test", "slow-1", "z.slow", "{}");
	CU_ASSERT(kd_send_event(kd, e, "accepted", WAIT, NULL));
	/* Delivered after 7 s; a redelivery (after 3 s without InProgress) would follow. */
	CU_ASSERT(kd_wait_lines(kd_path(kd, "slow.jsonl"), 1, 30000) >= 1);
	test_sleep_ms(9000);
	text = test_read_file(kd_path(kd, "slow.jsonl"), NULL);
	CU_ASSERT_EQUAL(kd_count(text, "\"slow-1\""), 1);
done:
	free(text);
	free(e);
	free(extra);
	free(conf);
	kd_destroy(&kd);
	natsd_destroy(&nc);
}

/* ---- enrich steps ---------------------------------------------------------------------------- */

/* The synthetic population (examples/simulators/population.c): never printed. */
static const char *const IDA = "1404214382";   /* answered at once */
static const char *const SOFIE = "2207884566"; /* answered 3 s late: the step times out */
static const char *const MADS = "1503851233";  /* asked while the service fails once */

#define CPR_AGREEMENT "11111111-2222-4333-8444-555555555555"
#define CPR_USERSYSTEM "22222222-3333-4444-8555-666666666666"
#define CPR_USER "33333333-4444-4555-8666-777777777777"
#define CPR_SERVICE "44444444-5555-4666-8777-888888888888"

/* Events <prefix>0 .. <prefix>(n-1) that the nodes' people sinks hold with the cpr reply
 * merged into data.person; *dups gets the lines beyond the first per event. */
static int s_enriched(kd_t **nodes, size_t n_nodes, const char *prefix, int n, size_t *dups)
{
	int got = 0;

	*dups = 0;
	for (int k = 0; k < n; k++) {
		char id[64];
		size_t seen = 0;
		snprintf(id, sizeof id, "\"id\":\"%s%d\"", prefix, k);
		for (size_t i = 0; i < n_nodes; i++) {
			char *text = test_read_file(kd_path(nodes[i], "people.jsonl"), NULL);
			for (char *line = text ? strtok(text, "\n") : NULL; line;
			     line = strtok(NULL, "\n"))
				if (strstr(line, id) && strstr(line, "\"person\":{"))
					seen++;
			free(text);
		}
		got += seen > 0;
		*dups += seen > 1 ? seen - 1 : 0;
	}
	return got;
}

/* s_enriched, waiting up to timeout_ms for all n. */
static int s_wait_enriched(kd_t **nodes, size_t n_nodes, const char *prefix, int n, int timeout_ms,
			   size_t *dups)
{
	int got = 0;

	for (int64_t until = test_now_ms() + timeout_ms; test_now_ms() < until; test_sleep_ms(300))
		if ((got = s_enriched(nodes, n_nodes, prefix, n, dups)) == n)
			break;
	return got;
}

/* Sends the lookup <prefix><k> of `cpr` to kd; true when accepted. */
static bool s_lookup(kd_t *kd, const char *prefix, int k, const char *cpr)
{
	char id[64], data[64], *e;
	bool ok;

	snprintf(id, sizeof id, "%s%d", prefix, k);
	snprintf(data, sizeof data, "{\"cpr\": \"%s\"}", cpr);
	e = kd_event("/cluster-test", id, "test.person.lookup", data);
	ok = kd_send_event(kd, e, "accepted", WAIT, NULL);
	free(e);
	return ok;
}

/* The enrich tests' NATS server (R1), CPR simulator (SOFIE answered slow_ms late) and the
 * kanald config of their nodes (a cpr instance, sinks people and notices). */
typedef struct enrich_fx {
	natsd_t *nc;
	upstream_t *up;
	char *conf;
} enrich_fx_t;

static int s_enrich_start(enrich_fx_t *fx, const char *tag, int slow_ms, const char *ack_wait)
{
	char slow[40], slow_time[40], *extra = NULL, *instances = NULL;
	const char *args[] = { "--set", "agreement=" CPR_AGREEMENT,
			       "--set", "usersystem=" CPR_USERSYSTEM,
			       "--set", "user=" CPR_USER,
			       "--set", "service=" CPR_SERVICE,
			       "--set", slow,
			       "--set", slow_time,
			       NULL };

	memset(fx, 0, sizeof *fx);
	snprintf(slow, sizeof slow, "slow_pnr=%s", SOFIE);
	snprintf(slow_time, sizeof slow_time, "slow_ms=%d", slow_ms);
	if (!(fx->up = upstream_start("cpr", args)) || !(fx->nc = natsd_start(tag, 1)))
		return -1;
	if (asprintf(&extra,
		     "journal:\n  mode: cluster\n  nats:\n    servers: %s\n"
		     "    replicas: 1\n    ack_wait: %s\n",
		     fx->nc->servers, ack_wait) < 0 ||
	    asprintf(&instances,
		     "  - name: cpr\n    plugin: cpr\n    options:\n"
		     "      endpoint: '%s/cpr'\n"
		     "      service_agreement_uuid: " CPR_AGREEMENT "\n"
		     "      user_system_uuid: " CPR_USERSYSTEM "\n"
		     "      user_uuid: " CPR_USER "\n"
		     "      service_uuid: " CPR_SERVICE "\n"
		     "      timeout: 5s\n      resolve_children: false\n"
		     "      audit_log: '@DIR@/audit.log'\n"
		     "  - name: people\n    plugin: sink\n"
		     "    options: { path: '@DIR@/people.jsonl' }\n"
		     "  - name: notices\n    plugin: sink\n"
		     "    options: { path: '@DIR@/notices.jsonl' }\n",
		     fx->up->url) < 0) {
		free(extra);
		return -1;
	}
	fx->conf = kd_config(instances, extra);
	free(instances);
	free(extra);
	return fx->conf ? 0 : -1;
}

static void s_enrich_stop(enrich_fx_t *fx)
{
	free(fx->conf);
	natsd_destroy(&fx->nc);
	upstream_stop(&fx->up);
}

/* The lookup route, its step's timeout `timeout`, and the route of the dead notices. */
static char *s_enrich_routes(const char *timeout)
{
	char *routes = NULL;

	if (asprintf(&routes,
		     "routes:\n"
		     "  - name: lookup\n    match: { type: test.person.lookup }\n"
		     "    enrich:\n      - service: cpr\n        into: data.person\n"
		     "        purpose: cluster test\n        timeout: %s\n"
		     "    to: people\n"
		     "    retry: { max_attempts: 2, backoff: 100ms }\n"
		     "  - name: notices\n    match: { type: kanal.delivery.dead }\n"
		     "    to: notices\n",
		     timeout) < 0)
		return NULL;
	return routes;
}

/* A route with an enrich step in cluster mode: the node that takes an event from the shared
 * work queue asks its own cpr instance (against the CPR simulator) and publishes the
 * enriched event; every event arrives enriched, whichever of the two nodes routed it. A
 * lookup the service fails once is asked again after the route's backoff. A lookup that
 * times out on every attempt of the route's budget is a dead letter in the DEAD
 * stream (kanalctl dlq list shows it, with its attempts) and a kanal.delivery.dead notice
 * that a route takes. */
static void test_enrich_in_cluster(void)
{
	enrich_fx_t fx = { 0 };
	kd_t *nodes[2] = { NULL, NULL };
	char *routes = NULL, *reply = NULL, *text = NULL;
	const int n = 20;
	size_t dups = 0;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE(s_enrich_start(&fx, "cluster-enrich", 3000, "5s") == 0);
	REQUIRE((routes = s_enrich_routes("1s")) != NULL);
	for (int k = 0; k < 2; k++) {
		char tag[32];
		snprintf(tag, sizeof tag, "cluster-enrich-kd%d", k + 1);
		REQUIRE((nodes[k] = kd_start(tag, fx.conf, routes)) != NULL);
	}
	for (int k = 0; k < n; k++)
		CU_ASSERT(s_lookup(nodes[k % 2], "p-", k, IDA));
	CU_ASSERT_EQUAL(s_wait_enriched(nodes, 2, "p-", n, 60000, &dups), n);
	CU_ASSERT_EQUAL(dups, 0); /* nothing died: each enriched and delivered once */
	/* An event an enrich step reads goes through the accept stream, to a routing node. */
	CU_ASSERT_EQUAL(clu_stream_last_seq(fx.nc, "KANAL_IN"), n);
	CU_ASSERT_EQUAL(clu_dead_count(fx.nc), 0);

	/* The service fails once (HTTP 503: RETRY): the event is given back to JetStream with
	 * the route's backoff, a node asks again, and it is delivered enriched, once. */
	CU_ASSERT_EQUAL(upstream_fault(fx.up, "error", 1), 0);
	CU_ASSERT(s_lookup(nodes[1], "r-", 0, MADS));
	CU_ASSERT_EQUAL(s_wait_enriched(nodes, 2, "r-", 1, 30000, &dups), 1);
	CU_ASSERT_EQUAL(dups, 0);
	{
		char *l0 = kd_log(nodes[0]), *l1 = kd_log(nodes[1]);
		CU_ASSERT(strstr(l0 ?: "", "event r-0: service answered retry") ||
			  strstr(l1 ?: "", "event r-0: service answered retry"));
		free(l0);
		free(l1);
	}
	CU_ASSERT_EQUAL(clu_dead_count(fx.nc), 0);

	/* The slow lookup: no reply within 1 s, twice (the route's budget), then dead. */
	CU_ASSERT(s_lookup(nodes[0], "slow-", 0, SOFIE));
	for (int64_t until = test_now_ms() + 30000; test_now_ms() < until; test_sleep_ms(300))
		if (clu_dead_count(fx.nc) >= 1)
			break;
	CU_ASSERT_EQUAL(clu_dead_count(fx.nc), 1);
	reply = kd_admin(nodes[1], "{\"cmd\":\"dlq.list\"}", WAIT);
	{
		json_t *list = reply ? json_loads(reply, 0, NULL) : NULL;
		json_t *item = json_array_get(json_object_get(list, "items"), 0);
		CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 1);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "event_id")) ?: "",
				       "slow-0");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "route")) ?: "",
				       "lookup");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "destination"))
					       ?: "",
				       "deadletter");
		CU_ASSERT_EQUAL(json_integer_value(json_object_get(item, "attempts")), 2);
		CU_ASSERT_PTR_NOT_NULL(
			strstr(json_string_value(json_object_get(item, "reason")) ?: "",
			       "enrich from 'cpr' failed"));
		json_decref(list);
	}
	/* kanalctl dlq list, as an operator reads it. */
	{
		char *out = clu_kanalctl_text(nodes[0], "dlq list");
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "slow-0"));
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "enrich from 'cpr' failed"));
		CU_ASSERT(!kd_has_clear_cpr(out));
		free(out);
	}
	/* Its sender hears: the notice, routed once, naming the original. */
	for (int64_t until = test_now_ms() + 20000; test_now_ms() < until; test_sleep_ms(300))
		if (kd_lines(kd_path(nodes[0], "notices.jsonl")) +
			    kd_lines(kd_path(nodes[1], "notices.jsonl")) >=
		    1)
			break;
	for (int k = 0; k < 2; k++) {
		char *t = test_read_file(kd_path(nodes[k], "notices.jsonl"), NULL);
		if (t && strstr(t, "kanal.delivery.dead") && strstr(t, "\"slow-0\"")) {
			free(text);
			text = t;
		} else {
			free(t);
		}
	}
	CU_ASSERT_PTR_NOT_NULL(text);
	CU_ASSERT_EQUAL(kd_lines(kd_path(nodes[0], "notices.jsonl")) +
				kd_lines(kd_path(nodes[1], "notices.jsonl")),
			1);
	CU_ASSERT_EQUAL(s_enriched(nodes, 2, "p-", n, &dups), n);
	/* With a step timeout the service meets, kanalctl dlq replay runs the route again: the
	 * event arrives enriched and the letter is gone. */
	free(routes);
	REQUIRE((routes = s_enrich_routes("10s")) != NULL);
	for (int k = 0; k < 2; k++) {
		kd_write_routes(nodes[k], routes);
		free(reply);
		reply = kd_admin(nodes[k], "{\"cmd\":\"reload\"}", WAIT);
		CU_ASSERT_PTR_NOT_NULL(strstr(reply ?: "", "\"ok\":true"));
	}
	{
		char *out = clu_kanalctl_text(nodes[1], "dlq replay --all-matching");
		free(out);
	}
	CU_ASSERT_EQUAL(s_wait_enriched(nodes, 2, "slow-", 1, 30000, &dups), 1);
	CU_ASSERT_EQUAL(dups, 0);
	CU_ASSERT_EQUAL(clu_dead_count(fx.nc), 0);
	for (int k = 0; k < 2; k++) {
		char *log = kd_log(nodes[k]);
		CU_ASSERT(log && !kd_has_clear_cpr(log));
		free(log);
	}
done:
	free(text);
	free(reply);
	free(routes);
	for (int k = 0; k < 2; k++)
		kd_destroy(&nodes[k]);
	s_enrich_stop(&fx);
}

/* The node enriching an event dies before the service answers: JetStream hands the event to
 * another node after ack_wait, which asks its own cpr instance again and delivers the
 * enriched event — once. */
static void test_enrich_node_dies(void)
{
	enrich_fx_t fx = { 0 };
	kd_t *first = NULL, *second = NULL, *nodes[2];
	char *routes = NULL, *seen = NULL;
	void *stream = NULL;
	size_t dups = 0;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	/* SOFIE's lookup takes 2.5 s, well within the step's 10 s. */
	REQUIRE(s_enrich_start(&fx, "cluster-enrich-dies", 2500, "3s") == 0);
	REQUIRE((routes = s_enrich_routes("10s")) != NULL);
	REQUIRE((first = kd_start("cluster-enrich-dies-kd1", fx.conf, routes)) != NULL);
	stream = kd_subscribe(first, "accepted");
	CU_ASSERT(s_lookup(first, "d-", 0, SOFIE));
	/* The first node took it from the work queue and asked its service: it dies. */
	seen = kd_expect(stream, "accepted", "\"d-0\"", WAIT);
	CU_ASSERT_PTR_NOT_NULL(seen);
	test_sleep_ms(500);
	kd_unsubscribe(&stream);
	CU_ASSERT_EQUAL(kd_stop(first, SIGKILL, 5000), 128 + SIGKILL);
	REQUIRE((second = kd_start("cluster-enrich-dies-kd2", fx.conf, routes)) != NULL);
	nodes[0] = first;
	nodes[1] = second;
	CU_ASSERT_EQUAL(s_wait_enriched(nodes, 2, "d-", 1, 30000, &dups), 1);
	CU_ASSERT_EQUAL(kd_lines(kd_path(first, "people.jsonl")), 0);
	test_sleep_ms(4000); /* past another ack_wait: nothing comes twice */
	CU_ASSERT_EQUAL(s_enriched(nodes, 2, "d-", 1, &dups), 1);
	CU_ASSERT_EQUAL(dups, 0);
	CU_ASSERT_EQUAL(clu_dead_count(fx.nc), 0);
done:
	kd_unsubscribe(&stream);
	free(seen);
	free(routes);
	kd_destroy(&second);
	kd_destroy(&first);
	s_enrich_stop(&fx);
}

/* ---- refusals at start ------------------------------------------------------------------ */

static void test_refuses_to_start(void)
{
	natsd_t *nc = NULL;
	kd_t *kd = NULL, *other = NULL, *lost = NULL;
	char *conf = NULL, *conf2 = NULL, *conf3 = NULL, *log = NULL, *extra = NULL;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE((nc = natsd_start("cluster-refuse", 1)) != NULL);
	conf = clu_config(nc, 1, "10m", s_sinks);
	REQUIRE((kd = kd_start("cluster-refuse-kd", conf, s_routes)) != NULL);
	/* A second node whose duplicate window differs from the streams': refused, with what
	 * to do, and the streams are left as they are. */
	conf2 = clu_config(nc, 1, "5m", s_sinks);
	other = kd_prepare("cluster-refuse-kd2", conf2, s_routes);
	CU_ASSERT_NOT_EQUAL(kd_launch(other), 0);
	kd_wait_exit(other, 30000);
	CU_ASSERT_NOT_EQUAL(other->exit_status, 0);
	log = kd_log(other);
	CU_ASSERT_PTR_NOT_NULL(strstr(log ?: "", "stream KANAL_IN exists with a duplicate window"));
	CU_ASSERT_PTR_NOT_NULL(strstr(log ?: "", "Do not delete the stream"));
	free(log);
	log = NULL;
	/* No NATS server where the config says: refused at once. */
	REQUIRE(asprintf(&extra,
			 "journal:\n  mode: cluster\n  nats:\n    servers: "
			 "[nats://127.0.0.1:%d]\n    replicas: 1\n",
			 test_free_port()) > 0);
	conf3 = kd_config(s_sinks, extra);
	lost = kd_prepare("cluster-refuse-kd3", conf3, s_routes);
	CU_ASSERT_NOT_EQUAL(kd_launch(lost), 0);
	kd_wait_exit(lost, 30000);
	CU_ASSERT_NOT_EQUAL(lost->exit_status, 0);
	log = kd_log(lost);
	CU_ASSERT_PTR_NOT_NULL(strstr(log ?: "", "cannot reach the NATS cluster"));
	free(log);
	log = NULL;
	/* A route with enrich steps is no refusal in cluster mode: a reload takes it. */
	kd_write_routes(kd, "routes:\n  - name: both\n    match: { type: 'x.>' }\n"
			    "    enrich:\n      - service: c\n        into: data.extra\n"
			    "    to: [a, b]\n");
	free(extra);
	extra = kd_admin(kd, "{\"cmd\":\"reload\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(strstr(extra ?: "", "\"ok\":true"));
done:
	free(log);
	free(extra);
	free(conf);
	free(conf2);
	free(conf3);
	kd_destroy(&lost);
	kd_destroy(&other);
	kd_destroy(&kd);
	natsd_destroy(&nc);
}

/* ---- three nats-server, three kanald, kills mid-stream ------------------------------------- */

/* Kills a kanald with SIGKILL a few milliseconds after it starts: while a batch is on its
 * way to it or being stored. */
typedef struct killer {
	kd_t *kd;
	int delay_ms;
	int status;
} killer_t;

static void *s_killer_main(void *arg)
{
	killer_t *k = arg;

	test_sleep_ms(k->delay_ms);
	k->status = kd_stop(k->kd, SIGKILL, 5000);
	return NULL;
}

/* What a three-node run kills mid-stream. */
typedef enum victim { KILL_KANALD, KILL_NATS } victim_t;

/* Three nats-server (R3) and three kanald; s_cluster_events() events sent round robin in
 * batches while `victim` is killed a third of the way in: kanald 2 with SIGKILL, a batch in
 * flight to it (restarted ten batches later), or nats-server 3 (restarted once everything
 * is sent). Nothing accepted is lost: every event reaches both destinations. Resends are
 * deduplicated: the accept stream stored each event once, however often it was sent. The
 * duplicates — answered "duplicate", and delivered twice — are counted and reported. */
static void s_three_nodes(victim_t victim)
{
	natsd_t *nc = NULL;
	kd_t *nodes[3] = { NULL, NULL, NULL };
	bool up[3] = { true, true, true };
	char *conf = NULL, *batch = NULL, *out = NULL;
	size_t next = 0, dups = 0, resends = 0, da = 0, db = 0;
	size_t per_node[3] = { 0, 0, 0 };
	int64_t started = test_now_ms();
	const int n_events = s_cluster_events();
	const int third = n_events / 3 / BATCH * BATCH;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE((nc = natsd_start(victim == KILL_KANALD ? "cluster3k" : "cluster3n", 3)) != NULL);
	conf = clu_config(nc, 3, "10m", s_sinks);
	for (int k = 0; k < 3; k++) {
		char tag[32];
		snprintf(tag, sizeof tag, "cluster3%c-kd%d", victim == KILL_KANALD ? 'k' : 'n',
			 k + 1);
		REQUIRE((nodes[k] = kd_start(tag, conf, s_routes)) != NULL);
	}
	for (int first = 0; first < n_events; first += BATCH) {
		if (victim == KILL_KANALD && first == third) {
			/* kanald 2 dies with work in hand and a batch in flight to it: the
			 * sender hears nothing and resends to another node. It comes back. */
			killer_t k = { nodes[1], 2 + (int)(test_now_ms() % 20), -1 };
			pthread_t t;
			free(batch);
			batch = clu_batch(first, BATCH, "x.ok");
			next = 1;
			REQUIRE(pthread_create(&t, NULL, s_killer_main, &k) == 0);
			kd_send_event(nodes[1], batch, NULL, 3000, NULL);
			pthread_join(t, NULL);
			CU_ASSERT_EQUAL(k.status, 128 + SIGKILL);
			up[1] = false;
			resends++;
		} else if (victim == KILL_KANALD && first == third + 10 * BATCH) {
			CU_ASSERT_EQUAL(kd_restart(nodes[1]), 0);
			up[1] = true;
		} else if (victim == KILL_NATS && first == third) {
			/* A nats-server dies: its streams elect new leaders (4-8 s). */
			CU_ASSERT_EQUAL(natsd_kill(nc, 2, SIGKILL), 0);
		}
		free(batch);
		batch = clu_batch(first, BATCH, "x.ok");
		REQUIRE(clu_store(nodes, up, 3, &next, batch, BATCH, &dups, &resends));
	}
	if (victim == KILL_NATS)
		CU_ASSERT_EQUAL(natsd_restart(nc, 2), 0);
	CU_ASSERT_EQUAL(s_wait_delivered(nodes, 3, n_events, 300000, &da, &db), 0);
	/* Each delivery stored once in the delivery stream, resends or not; routed at accept,
	 * the events never went through the accept stream. */
	CU_ASSERT_EQUAL(clu_stream_last_seq(nc, "KANAL_DLV"), 2 * n_events);
	CU_ASSERT_EQUAL(clu_stream_last_seq(nc, "KANAL_IN"), 0);
	for (int k = 0; k < 3; k++)
		per_node[k] = kd_lines(kd_path(nodes[k], "a.jsonl")) +
			      kd_lines(kd_path(nodes[k], "b.jsonl"));
	fprintf(stderr,
		"\n%d events through 3 kanald on 3 nats-server (R3) in %.1f s, one %s killed: "
		"%zu resends (%zu answered duplicate), duplicate deliveries %zu at a and %zu at "
		"b; deliveries per node %zu, %zu, %zu\n",
		n_events, (double)(test_now_ms() - started) / 1000,
		victim == KILL_KANALD ? "kanald" : "nats-server", resends, dups, da, db,
		per_node[0], per_node[1], per_node[2]);
	/* The work is shared: every node that stayed up delivered some. */
	CU_ASSERT(per_node[0] > 0 && per_node[2] > 0);
	/* kanalctl status --cluster on any node: every node's entry, and nothing left to route
	 * or deliver in the shared consumers. Entries are written every 5 s. */
	test_sleep_ms(6000);
	out = clu_kanalctl_text(nodes[2], "status --cluster --json");
	{
		json_t *st = json_loads(out, 0, NULL), *cl = json_object_get(st, "cluster"), *c;
		size_t i, consumers = 0;

		CU_ASSERT(json_array_size(json_object_get(cl, "nodes")) >= 3);
		json_array_foreach(json_object_get(cl, "consumers"), i, c)
		{
			consumers++;
			CU_ASSERT_EQUAL(json_integer_value(json_object_get(c, "pending")), 0);
		}
		CU_ASSERT_EQUAL(consumers, 4); /* route, dlv-a, dlv-b, dlv-c */
		json_decref(st);
	}
done:
	free(out);
	free(batch);
	free(conf);
	for (int k = 0; k < 3; k++)
		kd_destroy(&nodes[k]);
	natsd_destroy(&nc);
}

/* The test 2, first half: one kanald SIGKILLed mid-stream and restarted. */
static void test_three_nodes_kanald_killed(void)
{
	s_three_nodes(KILL_KANALD);
}

/* The test 2, second half: one nats-server SIGKILLed mid-stream and restarted. */
static void test_three_nodes_nats_killed(void)
{
	s_three_nodes(KILL_NATS);
}

TEST_MAIN("cluster", TEST(test_config), TEST(test_one_node_end_to_end), TEST(test_routed_at_accept),
	  TEST(test_no_nats_no_acknowledgement), TEST(test_emits_go_through_jetstream),
	  TEST(test_slow_delivery_in_progress), TEST(test_event_lines_on_nats),
	  TEST(test_enrich_in_cluster), TEST(test_enrich_node_dies), TEST(test_refuses_to_start),
	  TEST(test_three_nodes_kanald_killed), TEST(test_three_nodes_nats_killed))
