/*
 * tests/integration/test_cluster_dead.c — dead letters in cluster mode behave as in
 * single-node mode (docs/cluster.md#dead-letters): what kanald gives up for a reason of its
 * own — a route's retry budget spent, a transform that refuses the event — publishes one
 * kanal.delivery.dead notice that a route takes, while a destination's REJECT makes none
 * (the connector said it), and a transform's refusal goes to the route's fallback when it
 * has one; a replayed letter that dies again is in the DEAD stream again,
 * without a second notice (its sender heard at its first death). The DEAD stream keeps what
 * journal.dead_letters allows, and a node started with other limits updates them.
 *
 * Each test starts its own one-node NATS cluster and kanald on ephemeral loopback ports,
 * with generous bounded waits (a 2-core machine shared with other suites). Skipped, saying
 * so, when nats-server is not installed (scripts/deps.sh installs it).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <jansson.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kanald.h"
#include "kd_cluster.h"
#include "natsd.h"
#include "test.h"

#define WAIT CLU_WAIT

static const char *s_sinks = "  - name: a\n    plugin: sink\n"
			     "    options: { path: '@DIR@/a.jsonl', fail_type: x.poison, "
			     "retry_type: x.retry, retry_after: 10ms }\n"
			     "  - name: notices\n    plugin: sink\n"
			     "    options: { path: '@DIR@/notices.jsonl' }\n";

static const char *s_routes = "routes:\n"
			      "  - name: flaky\n    match: { type: x.retry }\n    to: a\n"
			      "    retry: { max_attempts: 2, backoff: 50ms, max_backoff: 100ms }\n"
			      "  - name: refused\n    match: { type: x.poison }\n    to: a\n"
			      "  - name: bad-transform\n    match: { type: x.transform }\n"
			      "    transform: 'error(\"no such field\")'\n    to: a\n"
			      "  - name: transform-fallback\n    match: { type: x.tfb }\n"
			      "    to: [{instance: a, transform: 'error(\"refused here\")'}]\n"
			      "    fallback: [a]\n"
			      "  - name: notices\n"
			      "    match: { type: kanal.delivery.dead, source: kanald }\n"
			      "    to: notices\n";

/* Waits up to timeout_ms until KANAL_DEAD has stored `want` letters in all (its last
 * sequence), whatever was deleted since. Returns the last sequence reached. */
static int64_t s_wait_dead_stored(const natsd_t *nc, int64_t want, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms, n;

	while ((n = clu_stream_last_seq(nc, "KANAL_DEAD")) < want && test_now_ms() < deadline)
		test_sleep_ms(200);
	return n;
}

/* The notices the sink wrote (a new reference: an array of events). */
static json_t *s_notices(kd_t *kd)
{
	char *text = test_read_file(kd_path(kd, "notices.jsonl"), NULL);
	json_t *out = json_array();

	for (char *line = text, *nl; line && *line; line = nl + 1) {
		json_t *o;
		if ((nl = strchr(line, '\n')))
			*nl = '\0';
		if ((o = json_loads(line, 0, NULL)))
			json_array_append_new(out, o);
		if (!nl)
			break;
	}
	free(text);
	return out;
}

/* The notice of event `id` among notices, or NULL (borrowed). */
static json_t *s_notice_of(json_t *notices, const char *id)
{
	json_t *ev;
	size_t i;

	json_array_foreach(notices, i, ev)
	{
		if (!strcmp(json_string_value(json_object_get(ev, "causationid")) ?: "", id))
			return ev;
	}
	return NULL;
}

/* A RETRY beyond the route's budget and a transform that refuses the event each make one
 * notice, routed to the notice sink, with the reason and attempts single-node mode gives;
 * a destination's REJECT makes none, and a transform's refusal on a route with a fallback
 * goes to the fallback (no letter, no notice). The spent letter replayed dies again: it is back in
 * the DEAD stream, and no second notice is routed. */
static void test_notice_exactly_when_single_node_makes_one(void)
{
	natsd_t *nc = NULL;
	kd_t *kd = NULL;
	char *conf = NULL, *reply = NULL;
	json_t *notices = NULL, *n;
	static const char *const types[] = { "x.retry", "x.poison", "x.transform", "x.tfb" };

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE((nc = natsd_start("cluster-dead1", 1)) != NULL);
	/* A duplicate window of 1 s: a second notice of the replay would not be a duplicate. */
	REQUIRE((conf = clu_config(nc, 1, "1s", s_sinks)) != NULL);
	REQUIRE((kd = kd_start("cluster-dead1-kd", conf, s_routes)) != NULL);
	for (size_t i = 0; i < 4; i++) {
		char id[16], *ev;
		snprintf(id, sizeof id, "d-%zu", i);
		ev = kd_event("/cluster-test", id, types[i], "{\"n\":1}");
		CU_ASSERT(kd_send_event(kd, ev, "accepted", WAIT, NULL));
		free(ev);
	}
	CU_ASSERT_EQUAL(s_wait_dead_stored(nc, 3, 30000), 3);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "notices.jsonl"), 2, 30000), 2);
	/* A transform's refusal with a fallback is no dead letter: the fallback takes it. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "a.jsonl"), 1, 30000), 1);
	{
		char *a = test_read_file(kd_path(kd, "a.jsonl"), NULL);
		CU_ASSERT_EQUAL(kd_count(a, "\"id\":\"d-3\""), 1);
		free(a);
	}
	/* No third notice (the REJECT's, or the fallback's) comes later, nor a fourth letter. */
	test_sleep_ms(1500);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "notices.jsonl")), 2);
	CU_ASSERT_EQUAL(clu_dead_count(nc), 3);
	notices = s_notices(kd);
	REQUIRE(json_array_size(notices) == 2);
	CU_ASSERT_PTR_NULL(s_notice_of(notices, "d-1"));
	n = s_notice_of(notices, "d-0");
	CU_ASSERT_PTR_NOT_NULL(n);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "source")) ?: "", "kanald");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "type")) ?: "",
			       "kanal.delivery.dead");
	n = json_object_get(n, "data");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "reason")) ?: "",
			       "retry budget spent");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "route")) ?: "", "flaky");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "destination")) ?: "", "a");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(n, "attempts")), 2);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(n, "event"), "id")) ?: "", "d-0");
	n = json_object_get(s_notice_of(notices, "d-2"), "data");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "reason")) ?: "", "rejected");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "route")) ?: "",
			       "bad-transform");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(n, "attempts")), 1);
	CU_ASSERT_PTR_NOT_NULL(
		strstr(json_string_value(json_object_get(n, "error")) ?: "", "no such field"));

	/* The spent letter replayed, the destination still answering RETRY: it dies again and
	 * is a dead letter again (a new one, not a duplicate of the first), unheard. */
	reply = kd_admin(kd, "{\"cmd\":\"dlq.replay\",\"match\":{\"route\":\"flaky\"}}", WAIT);
	CU_ASSERT(reply && strstr(reply, "\"replayed\":[") && !strstr(reply, "\"replayed\":[]"));
	CU_ASSERT_EQUAL(s_wait_dead_stored(nc, 4, 30000), 4);
	CU_ASSERT_EQUAL(clu_dead_count(nc), 3);
	free(reply);
	reply = kd_admin(kd, "{\"cmd\":\"dlq.list\",\"route\":\"flaky\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(strstr(reply ?: "", "\"event_id\":\"d-0\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(reply ?: "", "retry budget spent"));
	test_sleep_ms(1500);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "notices.jsonl")), 2);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, 20000), 0);
done:
	json_decref(notices);
	free(reply);
	free(conf);
	kd_destroy(&kd);
	natsd_destroy(&nc);
}

/* KANAL_DEAD's limits as JetStream holds them: MaxMsgs (-1: none) and MaxAge (ns). */
static bool s_dead_limits(const natsd_t *nc, int64_t *max_msgs, int64_t *max_age_ns)
{
	natsConnection *conn = NULL;
	jsCtx *js = NULL;
	jsStreamInfo *si = NULL;
	bool ok = false;

	if (natsConnection_ConnectTo(&conn, nc->nodes[0].url) == NATS_OK &&
	    natsConnection_JetStream(&js, conn, NULL) == NATS_OK &&
	    js_GetStreamInfo(&si, js, "KANAL_DEAD", NULL, NULL) == NATS_OK) {
		*max_msgs = si->Config->MaxMsgs;
		*max_age_ns = si->Config->MaxAge;
		ok = true;
	}
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	natsConnection_Destroy(conn);
	return ok;
}

/* A cluster config whose journal.dead_letters is `limits` (clu_config writes the journal
 * block; dead_letters goes in it, after dedupe_window). */
static char *s_limited_conf(const natsd_t *nc, const char *limits)
{
	char *window = NULL, *conf;

	if (asprintf(&window, "10m\n  dead_letters: %s", limits) < 0)
		return NULL;
	conf = clu_config(nc, 1, window, s_sinks);
	free(window);
	return conf;
}

/* Sends `count` events of type x.poison (REJECTed at a: dead letters), ids <prefix>N. */
static void s_send_poison(kd_t *kd, const char *prefix, int count)
{
	for (int i = 0; i < count; i++) {
		char id[32], *ev;
		snprintf(id, sizeof id, "%s%d", prefix, i);
		ev = kd_event("/cluster-test", id, "x.poison", "{}");
		CU_ASSERT(kd_send_event(kd, ev, "accepted", WAIT, NULL));
		free(ev);
	}
}

/* KANAL_DEAD has the limits max_msgs and max_age_s; `count` REJECTed events (ids
 * <prefix>N) bring the letters it ever stored to `stored`, of which it keeps `kept`. */
static void s_check_retention(const natsd_t *nc, kd_t *kd, int64_t max_msgs, int64_t max_age_s,
			      const char *prefix, int count, int64_t stored, int64_t kept)
{
	int64_t msgs = 0, age = 0;

	CU_ASSERT(s_dead_limits(nc, &msgs, &age));
	CU_ASSERT_EQUAL(msgs, max_msgs);
	CU_ASSERT_EQUAL(age, max_age_s * 1000000000LL);
	s_send_poison(kd, prefix, count);
	CU_ASSERT_EQUAL(s_wait_dead_stored(nc, stored, 30000), stored);
	CU_ASSERT_EQUAL(clu_dead_count(nc), kept);
}

/* journal.dead_letters applies to the DEAD stream: with max_events 2, four dead letters
 * leave the newest two. A node started with max_events 3 and another max_age updates the
 * stream's limits (the node started last sets them), says so in its log, and the stream
 * then keeps three. */
static void test_dead_letters_retention(void)
{
	natsd_t *nc = NULL;
	kd_t *kd = NULL;
	char *conf = NULL, *reply = NULL, *log = NULL;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE((nc = natsd_start("cluster-dead2", 1)) != NULL);
	REQUIRE((conf = s_limited_conf(nc, "{ max_events: 2, max_age: 2d }")) != NULL);
	REQUIRE((kd = kd_start("cluster-dead2-kd", conf, s_routes)) != NULL);
	s_check_retention(nc, kd, 2, 2LL * 86400, "p-", 4, 4, 2);
	reply = kd_admin(kd, "{\"cmd\":\"dlq.list\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(strstr(reply ?: "", "\"event_id\":\"p-3\""));
	CU_ASSERT_PTR_NULL(strstr(reply ?: "", "\"event_id\":\"p-0\""));

	/* The same node started again with other limits: the stream is updated, not refused. */
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, 20000), 0);
	free(conf);
	REQUIRE((conf = s_limited_conf(nc, "{ max_events: 3, max_age: 12h }")) != NULL);
	kd_write_config(kd, conf);
	REQUIRE(kd_restart(kd) == 0);
	log = kd_log(kd);
	CU_ASSERT_PTR_NOT_NULL(strstr(log ?: "", "updated stream KANAL_DEAD"));
	CU_ASSERT_PTR_NOT_NULL(strstr(log ?: "", "max_events 3"));
	s_check_retention(nc, kd, 3, 12LL * 3600, "q-", 2, 6, 3);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, 20000), 0);
done:
	free(log);
	free(reply);
	free(conf);
	kd_destroy(&kd);
	natsd_destroy(&nc);
}

TEST_MAIN("cluster_dead", TEST(test_notice_exactly_when_single_node_makes_one),
	  TEST(test_dead_letters_retention))
