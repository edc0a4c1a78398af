/*
 * tests/integration/test_kanald.c — the real kanald with real plugins, end to end: events
 * in through the gateway or a source plugin, routes, enrich, fan-out, fallback, default,
 * dead letters, reload, refused starts, graceful shutdown, the event stream and the gateway's
 * statuses. Each test starts its own kanald on ephemeral ports in its own folder.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <zmq.h>

#include "bus.h" /* BUS_DELIVER_WINDOW: how many deliveries a destination has in flight */
#include "kanald.h"
#include "test.h"

#define WAIT 8000 /* ms: the bound of every wait */

static const char *s_sinks =
	"  - name: staffing\n    plugin: sink\n    options: { path: '@DIR@/staffing.jsonl' }\n"
	"  - name: calendar\n    plugin: sink\n    options: { path: '@DIR@/calendar.jsonl' }\n"
	"  - name: holiday\n    plugin: sink\n    options: { path: '@DIR@/holiday.jsonl' }\n"
	"  - name: other\n    plugin: sink\n    options: { path: '@DIR@/other.jsonl' }\n"
	"  - name: digital\n    plugin: sink\n"
	"    options: { path: '@DIR@/digital.jsonl', fail_type: post.letter.send }\n"
	"  - name: letter\n    plugin: sink\n    options: { path: '@DIR@/letter.jsonl' }\n";

static const char *s_routes =
	"routes:\n"
	"  - name: sick\n"
	"    match:\n"
	"      type: child.absence.*\n"
	"      where: data.reason == \"sick\" and data.days <= 5\n"
	"    to: [staffing, calendar]\n"
	"  - name: holiday\n"
	"    match: { type: child.absence.reported, where: 'data.reason == \"holiday\"' }\n"
	"    to: holiday\n"
	"  - name: letters\n"
	"    match: { type: post.letter.send }\n"
	"    to: digital\n"
	"    fallback: letter\n"
	"default: other\n";

/* Sends one event and asserts the gateway answers `status`. */
static void s_send_expect(kd_t *kd, const char *json, const char *status)
{
	char *reply = NULL;
	bool ok = kd_send_event(kd, json, status, WAIT, &reply);

	CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
	CU_ASSERT(ok);
	free(reply);
}

static kd_t *s_start_default(const char *tag)
{
	char *conf = kd_config(s_sinks, NULL);
	kd_t *kd = kd_start(tag, conf, s_routes);

	free(conf);
	return kd;
}

static bool s_file_has(const char *path, const char *needle)
{
	char *text = test_read_file(path, NULL);
	bool has = text && strstr(text, needle);

	free(text);
	return has;
}

/* Waits (bounded) until the dead-letter store holds at least one letter and returns the
 * admin dlq.list reply, or NULL. */
static char *s_wait_dead(kd_t *kd)
{
	for (int waited = 0; waited < WAIT; waited += 50) {
		char *reply = kd_admin(kd, "{\"cmd\":\"dlq.list\"}", WAIT);
		if (reply && strstr(reply, "\"event_id\""))
			return reply;
		free(reply);
		usleep(50 * 1000);
	}
	return NULL;
}

static void test_fan_out_where_and_default(void)
{
	kd_t *kd = s_start_default("fanout");
	char *e;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	e = kd_event("test", "sick-1", "child.absence.reported",
		     "{\"reason\":\"sick\",\"days\":2}");
	s_send_expect(kd, e, "accepted");
	free(e);
	e = kd_event("test", "sick-long", "child.absence.reported",
		     "{\"reason\":\"sick\",\"days\":9}");
	s_send_expect(kd, e, "accepted");
	free(e);
	e = kd_event("test", "hol-1", "child.absence.reported",
		     "{\"reason\":\"holiday\",\"days\":9}");
	s_send_expect(kd, e, "accepted");
	free(e);
	e = kd_event("test", "tick-1", "demo.tick", NULL);
	s_send_expect(kd, e, "accepted");
	free(e);

	/* Fan-out: the sick report reaches both destinations of its route. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "staffing.jsonl"), 1, WAIT), 1);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "calendar.jsonl"), 1, WAIT), 1);
	CU_ASSERT(s_file_has(kd_path(kd, "staffing.jsonl"), "\"sick-1\""));
	CU_ASSERT(s_file_has(kd_path(kd, "calendar.jsonl"), "\"sick-1\""));
	/* `where` filters: the long sickness and the holiday are not on the sick route. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "holiday.jsonl"), 1, WAIT), 1);
	CU_ASSERT(s_file_has(kd_path(kd, "holiday.jsonl"), "\"hol-1\""));
	/* Unmatched events go to the default destination: the long sickness and the tick. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "other.jsonl"), 2, WAIT), 2);
	CU_ASSERT(s_file_has(kd_path(kd, "other.jsonl"), "\"tick-1\""));
	CU_ASSERT(s_file_has(kd_path(kd, "other.jsonl"), "\"sick-long\""));
	CU_ASSERT(!s_file_has(kd_path(kd, "staffing.jsonl"), "sick-long"));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	/* Nothing was lost or duplicated on the way. */
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "staffing.jsonl")), 1);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "holiday.jsonl")), 1);
	kd_destroy(&kd);
}

static void test_gateway_statuses(void)
{
	kd_t *kd = s_start_default("gateway");
	char *reply;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	/* An invalid event is refused with the attribute at fault. */
	reply = kd_send(kd,
			"{\"specversion\":\"1.0\",\"id\":\"bad-time\",\"source\":\"t\","
			"\"type\":\"x.y\",\"time\":\"lunchtime\"}",
			WAIT);
	CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"invalid\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "time"));
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"bad-time\""));
	free(reply);
	/* Not JSON at all. */
	reply = kd_send(kd, "hello", WAIT);
	CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"invalid\""));
	free(reply);
	/* A valid batch: one status per event, in order. */
	reply = kd_send(
		kd,
		"[{\"specversion\":\"1.0\",\"id\":\"b1\",\"source\":\"t\",\"type\":\"a.b\"},"
		"{\"specversion\":\"1.0\",\"id\":\"b2\",\"source\":\"t\",\"type\":\"a.b\"}]",
		WAIT);
	CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
	{
		char *b1 = strstr(reply, "\"b1\""), *b2 = strstr(reply, "\"b2\"");
		CU_ASSERT(b1 && b2 && b1 < b2);
		CU_ASSERT_PTR_NULL(strstr(reply, "invalid"));
	}
	free(reply);
	/* A batch with one invalid element is refused whole: nothing from it is routed. */
	reply = kd_send(
		kd,
		"[{\"specversion\":\"1.0\",\"id\":\"c1\",\"source\":\"t\",\"type\":\"a.b\"},"
		"{\"specversion\":\"1.0\",\"source\":\"t\",\"type\":\"a.b\"}]",
		WAIT);
	CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
	CU_ASSERT_PTR_NULL(strstr(reply, "accepted"));
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "batch rejected"));
	free(reply);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "other.jsonl"), 2, WAIT), 2);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	CU_ASSERT(!s_file_has(kd_path(kd, "other.jsonl"), "\"c1\""));
	kd_destroy(&kd);
}

static void test_fallback_when_every_primary_rejects(void)
{
	kd_t *kd = s_start_default("fallback");
	void *sub;
	char *e, *p;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	sub = kd_subscribe(kd, "");
	e = kd_event("test", "letter-1", "post.letter.send", "{\"label\":\"Brev\"}");
	s_send_expect(kd, e, "accepted");
	free(e);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "letter.jsonl"), 1, WAIT), 1);
	CU_ASSERT(s_file_has(kd_path(kd, "letter.jsonl"), "\"letter-1\""));
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "digital.jsonl")), 0);
	p = kd_expect(sub, "rejected post.letter.send", "\"digital\"", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	p = kd_expect(sub, "fallback post.letter.send", "\"letters\"", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	p = kd_expect(sub, "delivered post.letter.send", "\"letter\"", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	kd_unsubscribe(&sub);
	/* The letter was carried: nothing is dead. */
	p = kd_admin(kd, "{\"cmd\":\"dlq.list\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "\"items\":[]"));
	free(p);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

static void test_reject_without_fallback_is_kept_as_dead_letter(void)
{
	const char *routes = "routes:\n"
			     "  - name: strict\n"
			     "    match: { type: post.letter.send }\n"
			     "    to: digital\n";
	char *conf = kd_config(s_sinks, NULL);
	kd_t *kd = kd_start("dead", conf, routes);
	char *e, *text;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	e = kd_event("test", "letter-2", "post.letter.send", "{\"label\":\"Brev\"}");
	s_send_expect(kd, e, "accepted");
	free(e);
	text = s_wait_dead(kd);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	/* The record holds the original event, route, destination and the plugin's error. */
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"event_id\":\"letter-2\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"route\":\"strict\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"destination\":\"digital\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"reason\":\"rejected\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "post.letter.send"));
	free(text);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

static void test_memory_mode_keeps_dead_letters_in_a_file(void)
{
	const char *routes = "routes:\n"
			     "  - name: strict\n"
			     "    match: { type: post.letter.send }\n"
			     "    to: digital\n";
	char *conf = kd_config(s_sinks, "journal: { mode: memory }\n");
	kd_t *kd = kd_start("dead-memory", conf, routes);
	char *e, *text;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	e = kd_event("test", "letter-3", "post.letter.send", "{\"label\":\"Brev\"}");
	s_send_expect(kd, e, "accepted");
	free(e);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "state/deadletter.jsonl"), 1, WAIT), 1);
	text = test_read_file(kd_path(kd, "state/deadletter.jsonl"), NULL);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\"letter-3\"") &&
			       strstr(text, "\"reason\":\"rejected\""));
	free(text);
	text = kd_admin(kd, "{\"cmd\":\"dlq.list\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "the journal is off"));
	free(text);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

static const char *s_enrich_routes =
	"routes:\n"
	"  - name: enriched\n"
	"    match: { type: child.absence.reported }\n"
	"    enrich:\n"
	"      - service: svc\n"
	"        into: data.guardian\n"
	"        timeout: %s\n"
	"        on_error: %s\n"
	"    to: calendar\n"
	"    retry: { max_attempts: 3, backoff: 100ms, max_backoff: 200ms }\n";

static kd_t *s_start_enrich(const char *tag, const char *svc_opts, const char *timeout,
			    const char *on_error)
{
	char *instances, *routes, *conf;
	kd_t *kd;

	if (asprintf(&instances,
		     "%s  - name: svc\n    plugin: '@TPLUGINS@/tp_service.so'\n    options: %s\n",
		     s_sinks, svc_opts) < 0)
		return NULL;
	if (asprintf(&routes, s_enrich_routes, timeout, on_error) < 0)
		return NULL;
	conf = kd_config(instances, NULL);
	kd = kd_start(tag, conf, routes);
	free(conf);
	free(routes);
	free(instances);
	return kd;
}

static const char *s_child_event =
	"{\"specversion\":\"1.0\",\"id\":\"child-1\",\"source\":\"daycare\","
	"\"type\":\"child.absence.reported\",\"subject\":\"person:abc\","
	"\"data\":{\"reason\":\"sick\"}}";

static void test_enrich_merges_the_reply(void)
{
	kd_t *kd = s_start_enrich("enrich-ok", "{}", "2s", "fail");
	char *text;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	s_send_expect(kd, s_child_event, "accepted");
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "calendar.jsonl"), 1, WAIT), 1);
	text = test_read_file(kd_path(kd, "calendar.jsonl"), NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	/* The service's reply data sits at data.guardian; the original data is kept. */
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"guardian\":{"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"guardian\":\"person:abc\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"looked_up\":true"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"reason\":\"sick\""));
	free(text);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

static void test_enrich_timeout_fails_the_flow(void)
{
	kd_t *kd = s_start_enrich("enrich-timeout", "{ delay: 1500ms }", "200ms", "fail");
	void *sub;
	char *text, *p;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	sub = kd_subscribe(kd, "enrich.");
	s_send_expect(kd, s_child_event, "accepted");
	/* A timeout is transient: asked again within the route's retry budget (3), then the
	 * step's on_error (fail) decides. */
	p = kd_expect(sub, "enrich.retrying", "no reply within 200 ms", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	p = kd_expect(sub, "enrich.failed", "no reply within 200 ms", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	kd_unsubscribe(&sub);
	text = s_wait_dead(kd);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "enrich from 'svc' failed: no reply within"));
	/* The letter counts every time the service was asked: three. */
	CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, "\"attempts\":3") : NULL);
	free(text);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "calendar.jsonl")), 0);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

static void test_enrich_retries_a_transient_failure(void)
{
	kd_t *kd = s_start_enrich("enrich-retry", "{ retry_first: 2 }", "2s", "fail");
	void *sub;
	char *text, *p;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	sub = kd_subscribe(kd, "enrich.");
	s_send_expect(kd, s_child_event, "accepted");
	/* The service asks twice to be asked again; the third answer is merged and the event
	 * delivered — nothing in the dead letters. */
	p = kd_expect(sub, "enrich.retrying", "\"attempt\":2", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "calendar.jsonl"), 1, WAIT), 1);
	text = test_read_file(kd_path(kd, "calendar.jsonl"), NULL);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\"looked_up\":true"));
	free(text);
	kd_unsubscribe(&sub);
	text = kd_admin(kd, "{\"cmd\":\"dlq.list\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\"items\":[]"));
	free(text);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

static void test_enrich_failure_can_be_skipped(void)
{
	kd_t *kd = s_start_enrich("enrich-skip", "{ reject: true }", "2s", "skip");
	char *text;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	s_send_expect(kd, s_child_event, "accepted");
	/* on_error: skip — the event goes on without the enrichment. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "calendar.jsonl"), 1, WAIT), 1);
	text = test_read_file(kd_path(kd, "calendar.jsonl"), NULL);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\"child-1\""));
	CU_ASSERT_PTR_NULL(text ? strstr(text, "guardian") : NULL);
	free(text);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

static void test_enrich_failure_rejected_by_service(void)
{
	kd_t *kd = s_start_enrich("enrich-reject", "{ reject: true }", "2s", "fail");
	char *text;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	s_send_expect(kd, s_child_event, "accepted");
	text = s_wait_dead(kd);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "service answered reject: no such person"));
	free(text);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

static void test_reload_valid_then_invalid_keeps_old_table(void)
{
	kd_t *kd = s_start_default("reload");
	void *sub;
	char *e, *p, *reply;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	sub = kd_subscribe(kd, "routes.");
	/* A valid new table, taken on SIGHUP: demo.tick now goes to the calendar. */
	kd_write_routes(kd, "routes:\n"
			    "  - name: ticks\n"
			    "    match: { type: demo.tick }\n"
			    "    to: calendar\n"
			    "default: other\n");
	kill(kd->pid, SIGHUP);
	p = kd_expect(sub, "routes.reloaded", NULL, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	e = kd_event("test", "tick-2", "demo.tick", NULL);
	s_send_expect(kd, e, "accepted");
	free(e);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "calendar.jsonl"), 1, WAIT), 1);

	/* A table with a typo: refused with its position; the running table stays. */
	kd_write_routes(kd, "routes:\n"
			    "  - name: ticks\n"
			    "    match: { type: demo.tick }\n"
			    "    to: calender\n");
	reply = kd_admin(kd, "{\"cmd\":\"reload\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"ok\":false"));
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "routes.yaml:4:"));
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "calender"));
	free(reply);
	p = kd_expect(sub, "routes.reload_failed", "calender", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	e = kd_event("test", "tick-3", "demo.tick", NULL);
	s_send_expect(kd, e, "accepted");
	free(e);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "calendar.jsonl"), 2, WAIT), 2);
	kd_unsubscribe(&sub);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

/* A reload that keeps a route's name but changes its destinations: the next event goes
 * where the new table says (the router looks a route's destinations up once per table,
 * by the route's name's counters, which outlive the reload). */
static void test_reload_same_route_new_destinations(void)
{
	kd_t *kd = s_start_default("reload-to");
	void *sub;
	char *e, *p;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	sub = kd_subscribe(kd, "routes.");
	e = kd_event("test", "sick-before", "child.absence.reported",
		     "{\"reason\":\"sick\",\"days\":2}");
	s_send_expect(kd, e, "accepted");
	free(e);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "staffing.jsonl"), 1, WAIT), 1);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "calendar.jsonl"), 1, WAIT), 1);
	kd_write_routes(kd, "routes:\n"
			    "  - name: sick\n"
			    "    match: { type: child.absence.* }\n"
			    "    to: [holiday, other]\n"
			    "default: calendar\n");
	kill(kd->pid, SIGHUP);
	p = kd_expect(sub, "routes.reloaded", NULL, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	e = kd_event("test", "sick-after", "child.absence.reported",
		     "{\"reason\":\"sick\",\"days\":2}");
	s_send_expect(kd, e, "accepted");
	free(e);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "holiday.jsonl"), 1, WAIT), 1);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "other.jsonl"), 1, WAIT), 1);
	CU_ASSERT(s_file_has(kd_path(kd, "holiday.jsonl"), "\"sick-after\""));
	CU_ASSERT(s_file_has(kd_path(kd, "other.jsonl"), "\"sick-after\""));
	kd_unsubscribe(&sub);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	/* The old destinations got only the event before the reload. */
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "staffing.jsonl")), 1);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "calendar.jsonl")), 1);
	CU_ASSERT(!s_file_has(kd_path(kd, "staffing.jsonl"), "sick-after"));
	kd_destroy(&kd);
}

/* log_format: json — every line of the log is one JSON object with time, level, component
 * and message; a refused reload is one record however many errors it has, and the CPR
 * masker still runs over it. */
static void test_json_log_one_record_per_happening(void)
{
	char *conf = kd_config(s_sinks, "log_format: json\n"), *reply, *log = NULL;
	kd_t *kd = kd_start("json-log", conf, s_routes);
	size_t records = 0, refusals = 0;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	/* Two errors: an unknown instance and one whose name reads like a CPR number. */
	kd_write_routes(kd, "routes:\n"
			    "  - name: a\n    to: calender\n"
			    "  - name: b\n    to: '0101701234'\n");
	reply = kd_admin(kd, "{\"cmd\":\"reload\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "\"ok\":false"));
	free(reply);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	log = kd_log(kd);
	REQUIRE(log);
	for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
		json_t *rec = json_loads(line, 0, NULL);
		const char *msg = json_string_value(json_object_get(rec, "message"));

		records++;
		CU_ASSERT_PTR_NOT_NULL(rec);
		CU_ASSERT_PTR_NOT_NULL(json_string_value(json_object_get(rec, "time")));
		CU_ASSERT_PTR_NOT_NULL(json_string_value(json_object_get(rec, "level")));
		CU_ASSERT_PTR_NOT_NULL(json_string_value(json_object_get(rec, "component")));
		CU_ASSERT_PTR_NOT_NULL(msg);
		if (msg && strstr(msg, "reload failed")) {
			refusals++;
			CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "level")),
					       "error");
			CU_ASSERT(strstr(msg, "calender") && strstr(msg, "010170"));
			CU_ASSERT_PTR_NULL(strstr(msg, "0101701234"));
		}
		json_decref(rec);
	}
	CU_ASSERT(records >= 2);
	CU_ASSERT_EQUAL(refusals, 1);
done:
	free(log);
	kd_destroy(&kd);
}

/* Starts kanald with `instances` and expects it to refuse: exit 1, `needle` in the log,
 * and no endpoints file (nothing started half-way). */
static void s_expect_refused(const char *tag, const char *instances, const char *needle)
{
	char *conf = kd_config(instances, NULL);
	kd_t *kd = kd_prepare(tag, conf, "routes:\n  - name: r\n    to: deadletter\n");
	char *log;

	free(conf);
	CU_ASSERT_EQUAL(kd_launch(kd), -1);
	CU_ASSERT_EQUAL(kd_wait_exit(kd, WAIT), 1);
	log = kd_log(kd);
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, needle));
	if (log && !strstr(log, needle))
		fprintf(stderr, "expected '%s' in:\n%s\n", needle, log);
	free(log);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "run/endpoints")), 0);
	kd_destroy(&kd);
}

static void test_refuses_plugin_with_wrong_abi(void)
{
	s_expect_refused("abi",
			 "  - name: ok\n    plugin: sink\n"
			 "  - name: old\n    plugin: '@TPLUGINS@/tp_abi_major.so'\n",
			 "ABI 2.0");
}

static void test_refuses_bad_options(void)
{
	s_expect_refused("options",
			 "  - name: out\n    plugin: sink\n    options: { pathh: /tmp/x }\n",
			 "kanald.yaml:");
	s_expect_refused("options2",
			 "  - name: out\n    plugin: sink\n    options: { fsync: perhaps }\n",
			 "fsync");
}

static void test_source_plugin_events_flow_and_stop_gracefully(void)
{
	char *conf = kd_config("  - name: gen\n    plugin: source\n"
			       "    options: { type: demo.count, rate: 2000, count: 500 }\n"
			       "  - name: slow\n    plugin: sink\n"
			       "    options: { path: '@DIR@/slow.jsonl', delay: 2ms }\n",
			       NULL);
	kd_t *kd = kd_start("source", conf, "routes:\n  - name: all\n    to: slow\n");
	size_t n;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	/* Stop while deliveries are still queued: they finish within the deadline. */
	kd_wait_lines(kd_path(kd, "slow.jsonl"), 50, WAIT);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	n = kd_lines(kd_path(kd, "slow.jsonl")) + kd_lines(kd_path(kd, "state/deadletter.jsonl"));
	/* Every event the source emitted before the stop is either delivered or kept. */
	CU_ASSERT(n >= 50);
	{
		char *log = kd_log(kd);
		CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "stopped"));
		free(log);
	}
	kd_destroy(&kd);
}

static void test_stream_contents_and_cpr_masking(void)
{
	kd_t *kd = s_start_default("stream");
	void *sub;
	char *p;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	sub = kd_subscribe(kd, "");
	/* A careless sender puts a CPR number in the subject: refused, and not echoed. */
	{
		char *reply =
			kd_send(kd,
				"{\"specversion\":\"1.0\",\"id\":\"s-0\",\"source\":\"t\","
				"\"type\":\"child.absence.reported\",\"subject\":\"1503851233\"}",
				WAIT);
		CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
		CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"invalid\""));
		CU_ASSERT_PTR_NOT_NULL(strstr(reply, "attribute 'subject' holds a CPR number"));
		CU_ASSERT(!kd_has_clear_cpr(reply));
		free(reply);
	}
	/* In data it is fine — and the stream never carries data. */
	s_send_expect(kd,
		      "{\"specversion\":\"1.0\",\"id\":\"s-1\",\"source\":\"t\","
		      "\"type\":\"child.absence.reported\",\"subject\":\"person:4f2a\","
		      "\"data\":{\"reason\":\"sick\",\"days\":1,\"child\":\"1503851233\"}}",
		      "accepted");
	p = kd_expect(sub, "accepted child.absence.reported", "\"s-1\"", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	CU_ASSERT(!kd_has_clear_cpr(p));
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "person:4f2a"));
	free(p);
	p = kd_expect(sub, "routed child.absence.reported", "\"sick\"", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	p = kd_expect(sub, "delivered child.absence.reported", "\"staffing\"", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	CU_ASSERT(p && strstr(p, "\"route\":\"sick\"") && !kd_has_clear_cpr(p));
	free(p);
	kd_unsubscribe(&sub);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	{
		char *log = kd_log(kd);
		CU_ASSERT(!kd_has_clear_cpr(log));
		free(log);
	}
	kd_destroy(&kd);
}

static void test_retry_budget_then_dead(void)
{
	char *conf = kd_config("  - name: flaky\n    plugin: sink\n"
			       "    options: { path: '@DIR@/flaky.jsonl', retry_type: x.retry, "
			       "retry_after: 10ms }\n",
			       NULL);
	kd_t *kd = kd_start("retry", conf,
			    "routes:\n  - name: r\n    match: { type: x.retry }\n    to: flaky\n"
			    "    retry: { max_attempts: 3, backoff: 20ms, max_backoff: 50ms }\n");
	void *sub;
	char *p, *text;
	int retries = 0;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	sub = kd_subscribe(kd, "");
	p = kd_event("test", "r-1", "x.retry", NULL);
	s_send_expect(kd, p, "accepted");
	free(p);
	while ((p = kd_expect(sub, "retrying x.retry", NULL, 3000))) {
		retries++;
		free(p);
		if (retries == 2)
			break;
	}
	CU_ASSERT_EQUAL(retries, 2);
	text = s_wait_dead(kd);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "retry budget spent"));
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\"attempts\":3"));
	free(text);
	kd_unsubscribe(&sub);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

static void test_gateway_busy_when_destination_full(void)
{
	char *conf;
	kd_t *kd;
	int busy = 0, accepted = 0;

	conf = strdup("log_level: info\nplugin_dir: @PLUGINS@\nstate_dir: @DIR@/state\n"
		      "run_dir: @DIR@/run\nroutes: @DIR@/routes\n"
		      "endpoints: { gateway: 'tcp://127.0.0.1:0', stream: 'tcp://127.0.0.1:0', "
		      "admin: 'tcp://127.0.0.1:0' }\n"
		      "limits: { queue_max_events: 2, shutdown_deadline: 10s }\n"
		      "journal: { mode: memory }\n"
		      "instances:\n  - name: slow\n    plugin: sink\n"
		      "    options: { path: '@DIR@/slow.jsonl', delay: 20ms }\n");
	kd = kd_start("busy", conf, "routes:\n  - name: all\n    to: slow\n");
	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	/* The destination holds its queue (2) and BUS_DELIVER_WINDOW in flight, and takes
	 * 20 ms an event (short enough that what was accepted is delivered within the
	 * shutdown deadline); send well beyond what it can hold and work off meanwhile. */
	const int n_send = 2 + BUS_DELIVER_WINDOW + 100;

	for (int i = 0; i < n_send; i++) {
		char id[32], *e, *reply;
		snprintf(id, sizeof id, "b-%d", i);
		e = kd_event("test", id, "x.y", NULL);
		reply = kd_send(kd, e, WAIT);
		free(e);
		CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
		if (strstr(reply, "\"busy\"") && strstr(reply, "retry_after_ms"))
			busy++;
		else if (strstr(reply, "\"accepted\""))
			accepted++;
		free(reply);
	}
	/* The queue holds 2 and BUS_DELIVER_WINDOW are in flight at most; the rest is refused,
	 * not buffered. */
	CU_ASSERT(busy > 0);
	CU_ASSERT(accepted > 0);
	CU_ASSERT_EQUAL(busy + accepted, n_send);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, 15000), 0);
	/* Every accepted event was delivered (or kept), none of the refused ones. */
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "slow.jsonl")) +
				kd_lines(kd_path(kd, "state/deadletter.jsonl")),
			(size_t)accepted);
	kd_destroy(&kd);
}

/* Review C1/C2: a slow plugin at shutdown neither crashes kanald nor holds it past the
 * deadline, and what it had not done is kept in the journal and done after a restart. */
/* Starts the stopped kanald again with the `slow` sink no longer slow, waits for n lines in
 * slow.jsonl and returns the file's text (malloc'd; NULL when kanald did not start). */
static char *s_restart_quick(kd_t *kd, size_t n)
{
	char *conf = kd_config("  - name: slow\n    plugin: sink\n"
			       "    options: { path: '@DIR@/slow.jsonl' }\n",
			       NULL);

	kd_write_config(kd, conf);
	free(conf);
	CU_ASSERT_EQUAL(kd_restart(kd), 0);
	if (kd->pid <= 0)
		return NULL;
	CU_ASSERT(kd_wait_lines(kd_path(kd, "slow.jsonl"), n, WAIT) >= n);
	return test_read_file(kd_path(kd, "slow.jsonl"), NULL);
}

static void test_shutdown_with_slow_plugin_is_bounded_and_keeps_work(void)
{
	char *conf = kd_config("  - name: slow\n    plugin: sink\n"
			       "    options: { path: '@DIR@/slow.jsonl', delay: 3s }\n",
			       NULL);
	const char *routes = "routes:\n  - name: all\n    to: slow\n";
	kd_t *kd;
	char *text;
	int st;

	/* kd_config sets a 3 s deadline; this test wants 1 s. */
	text = conf;
	conf = NULL;
	if (asprintf(&conf, "%s", text) >= 0) {
		char *p = strstr(conf, "shutdown_deadline: 3s");
		if (p)
			memcpy(p, "shutdown_deadline: 1s", 21);
	}
	free(text);
	kd = kd_start("slow-stop", conf, routes);
	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	text = kd_send(kd,
		       "[{\"specversion\":\"1.0\",\"id\":\"w1\",\"source\":\"t\",\"type\":\"a.b\"},"
		       "{\"specversion\":\"1.0\",\"id\":\"w2\",\"source\":\"t\",\"type\":\"a.b\"},"
		       "{\"specversion\":\"1.0\",\"id\":\"w3\",\"source\":\"t\",\"type\":\"a.b\"}]",
		       WAIT);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "accepted"));
	free(text);
	usleep(300 * 1000);
	st = kd_stop(kd, SIGTERM, 8000);
	/* Exits by itself within deadline + grace, not killed by a signal. */
	CU_ASSERT(st >= 0 && st < 128);
	/* The sink was mid-way through its first event; the rest stayed in the journal and
	 * is delivered after a restart, here with the destination no longer slow. */
	text = s_restart_quick(kd, 3);
	CU_ASSERT(text && strstr(text, "\"w1\"") && strstr(text, "\"w2\"") &&
		  strstr(text, "\"w3\""));
	free(text);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

/* A second SIGTERM cuts the graceful stop short: kanald does not wait for a 60 s deadline
 * and a queue of slow deliveries; what is undelivered stays in the journal — and the log
 * says so, not "dead-letter file". */
static void test_second_sigterm_forces_the_stop(void)
{
	char *conf = kd_config("  - name: slow\n    plugin: sink\n"
			       "    options: { path: '@DIR@/slow.jsonl', delay: 1s }\n",
			       NULL),
	     *p, *text, *log;
	kd_t *kd;
	int64_t t0;
	int st;

	p = strstr(conf, "shutdown_deadline: 3s");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	memcpy(p, "shutdown_deadline: 9m", 21);
	kd = kd_start("second-term", conf, "routes:\n  - name: all\n    to: slow\n");
	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	for (int i = 0; i < 8; i++) {
		char ev[128];
		snprintf(ev, sizeof ev,
			 "{\"specversion\":\"1.0\",\"id\":\"s%d\",\"source\":\"t\","
			 "\"type\":\"a.b\"}",
			 i);
		CU_ASSERT(kd_send_event(kd, ev, "accepted", WAIT, NULL));
	}
	kill(kd->pid, SIGTERM);
	usleep(500 * 1000);
	CU_ASSERT_EQUAL(kd_wait_exit(kd, 0), -1); /* the first one waits for the deliveries */
	t0 = test_now_ms();
	st = kd_stop(kd, SIGTERM, 6000);
	CU_ASSERT_EQUAL(st, 0);
	CU_ASSERT(test_now_ms() - t0 < 4000);
	log = kd_log(kd);
	CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "second SIGTERM: stopping now") : NULL);
	CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "stay in the journal") : NULL);
	CU_ASSERT_PTR_NULL(log ? strstr(log, "dead-letter file") : NULL);
	free(log);
	/* Nothing is lost: after a restart with a quick destination all eight arrive. */
	text = s_restart_quick(kd, 8);
	CU_ASSERT(text && strstr(text, "\"s0\"") && strstr(text, "\"s7\""));
	free(text);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

/* A second kanald on the same state_dir is refused at once, naming the first one's pid,
 * rather than waiting on the journal and saying "database is locked". */
static void test_second_kanald_on_the_same_state_dir_is_refused(void)
{
	kd_t *first = s_start_default("lock-1"), *second;
	char *conf, *text, *log, pid[32];
	char *state;
	int64_t t0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(first);
	state = strdup(kd_path(first, "state"));
	text = kd_config("  - name: sink\n    plugin: sink\n"
			 "    options: { path: '@DIR@/sink.jsonl' }\n",
			 NULL);
	CU_ASSERT_FATAL(asprintf(&conf, "%.*s%s%s", (int)(strstr(text, "@DIR@/state") - text), text,
				 state, strstr(text, "@DIR@/state") + strlen("@DIR@/state")) > 0);
	free(text);
	second = kd_prepare("lock-2", conf, "routes: []\n");
	free(conf);
	t0 = test_now_ms();
	CU_ASSERT_EQUAL(kd_launch(second), -1);
	CU_ASSERT(test_now_ms() - t0 < 5000);
	CU_ASSERT_EQUAL(second->exit_status, 1);
	log = kd_log(second);
	snprintf(pid, sizeof pid, "(pid %d,", (int)first->pid);
	CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "is in use by another kanald") : NULL);
	CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, pid) : NULL);
	free(log);
	kd_destroy(&second);
	/* The first runs on; once it has stopped, the folder is free again. */
	CU_ASSERT(kd_send_event(first,
				"{\"specversion\":\"1.0\",\"id\":\"l1\",\"source\":\"t\","
				"\"type\":\"a.b\"}",
				"accepted", WAIT, NULL));
	CU_ASSERT_EQUAL(kd_stop(first, SIGTERM, WAIT), 0);
	CU_ASSERT_EQUAL(kd_restart(first), 0);
	CU_ASSERT_EQUAL(kd_stop(first, SIGTERM, WAIT), 0);
	kd_destroy(&first);
	free(state);
}

/* limits.rate: a sender over its token bucket is answered busy with a retry hint, counted;
 * once the bucket refills it is accepted again. */
static void test_rate_limit_answers_busy_with_retry_after(void)
{
	char *conf = kd_config(s_sinks, NULL), *with_rate, *reply, *st;
	char *at = strstr(conf, "  shutdown_deadline: 3s\n");
	char batch[4096];
	size_t len = 0;
	kd_t *kd;

	CU_ASSERT_PTR_NOT_NULL_FATAL(at);
	CU_ASSERT_FATAL(asprintf(&with_rate, "%.*s  rate: { events_per_second: 5, burst: 5 }\n%s",
				 (int)(at - conf), conf, at) > 0);
	free(conf);
	kd = kd_start("rate", with_rate, s_routes);
	free(with_rate);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	for (int i = 0; i < 10; i++)
		len += (size_t)snprintf(
			batch + len, sizeof batch - len,
			"%c{\"specversion\":\"1.0\",\"id\":\"rl-%d\",\"source\":\"t\","
			"\"type\":\"demo.tick\"}",
			i ? ',' : '[', i);
	snprintf(batch + len, sizeof batch - len, "]");
	reply = kd_send(kd, batch, WAIT);
	CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
	CU_ASSERT_EQUAL(kd_count(reply, "\"accepted\""), 5);
	CU_ASSERT_EQUAL(kd_count(reply, "\"busy\""), 5);
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "\"retry_after_ms\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "limits.rate"));
	free(reply);
	st = kd_admin(kd, "{\"cmd\":\"status\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(st ? strstr(st, "\"rate_limited\":5") : NULL);
	free(st);
	/* A second later the bucket holds five again. */
	test_sleep_ms(1100);
	CU_ASSERT(kd_send_event(kd,
				"{\"specversion\":\"1.0\",\"id\":\"rl-10\",\"source\":\"t\","
				"\"type\":\"demo.tick\"}",
				"accepted", WAIT, NULL));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

/* Review C3: a gateway client that never reads its replies does not stall the broker. */
static void test_gateway_client_that_never_reads_does_not_stall(void)
{
	kd_t *kd = s_start_default("noread");
	void *zctx, *flood;
	char *reply;
	int hwm = 0, zero = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	zctx = zmq_ctx_new();
	flood = zmq_socket(zctx, ZMQ_DEALER);
	zmq_setsockopt(flood, ZMQ_RCVHWM, &hwm, sizeof hwm);
	zmq_setsockopt(flood, ZMQ_LINGER, &zero, sizeof zero);
	zmq_connect(flood, kd->gateway);
	for (int i = 0; i < 20000; i++) {
		char ev[160];
		int n = snprintf(ev, sizeof ev,
				 "{\"specversion\":\"1.0\",\"id\":\"f%d\",\"source\":\"flood\","
				 "\"type\":\"demo.flood\"}",
				 i);
		if (zmq_send(flood, ev, (size_t)n, ZMQ_DONTWAIT) < 0)
			break;
	}
	/* The broker keeps answering others meanwhile. */
	reply = kd_admin(kd, "{\"cmd\":\"status\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "\"ok\":true"));
	free(reply);
	zmq_close(flood);
	zmq_ctx_term(zctx);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, 15000), 0);
	kd_destroy(&kd);
}

/* Review H1: a full destination throttles only the events bound for it. */
static void test_full_destination_does_not_block_others(void)
{
	char *conf =
		strdup("log_level: info\nplugin_dir: @PLUGINS@\nstate_dir: @DIR@/state\n"
		       "run_dir: @DIR@/run\nroutes: @DIR@/routes\n"
		       "endpoints: { gateway: 'tcp://127.0.0.1:0', stream: 'tcp://127.0.0.1:0', "
		       "admin: 'tcp://127.0.0.1:0' }\n"
		       "limits: { queue_max_events: 1, shutdown_deadline: 1s }\n"
		       "journal: { mode: memory }\n"
		       "instances:\n"
		       "  - name: slow\n    plugin: sink\n"
		       "    options: { path: '@DIR@/slow.jsonl', delay: 300ms }\n"
		       "  - name: fast\n    plugin: sink\n"
		       "    options: { path: '@DIR@/fast.jsonl' }\n");
	kd_t *kd = kd_start("fair", conf,
			    "routes:\n  - name: s\n    match: { type: t.slow }\n    to: slow\n"
			    "  - name: f\n    match: { type: t.fast }\n    to: fast\n");
	int busy = 0;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	/* The slow destination holds its queue (1) and BUS_DELIVER_WINDOW in flight. */
	for (int i = 0; i < 1 + BUS_DELIVER_WINDOW + 40 && !busy; i++) {
		char id[32], *e, *reply;
		snprintf(id, sizeof id, "s%d", i);
		e = kd_event("test", id, "t.slow", NULL);
		reply = kd_send(kd, e, WAIT);
		busy = reply && strstr(reply, "\"busy\"");
		free(reply);
		free(e);
	}
	CU_ASSERT(busy);
	{
		char *e = kd_event("test", "f1", "t.fast", NULL);
		s_send_expect(kd, e, "accepted");
		free(e);
	}
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "fast.jsonl"), 1, WAIT), 1);
	kd_stop(kd, SIGTERM, 15000);
	kd_destroy(&kd);
}

/* Review H2, M2 and the envelope: deadletter as a destination settles its flow; a batch
 * with a CPR in one element is refused whole; a frame layout that is not ours is refused. */
static void test_deadletter_destination_batches_and_envelopes(void)
{
	char *conf = kd_config(s_sinks, NULL);
	kd_t *kd = kd_start("dlroute", conf,
			    "routes:\n  - name: keep\n    match: { type: post.letter.send }\n"
			    "    to: [deadletter, digital]\n    fallback: letter\n");
	char *reply;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	{
		char *e = kd_event("test", "k1", "post.letter.send", NULL);
		s_send_expect(kd, e, "accepted");
		free(e);
	}
	/* digital rejects, but deadletter took it: not every primary rejected, no fallback. */
	reply = s_wait_dead(kd);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "routed to deadletter"));
	free(reply);
	reply = kd_send(
		kd,
		"[{\"specversion\":\"1.0\",\"id\":\"ok1\",\"source\":\"t\",\"type\":\"a.b\"},"
		"{\"specversion\":\"1.0\",\"id\":\"cpr1\",\"source\":\"t\",\"type\":\"a.b\","
		"\"subject\":\"0101184129\"}]",
		WAIT);
	CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
	CU_ASSERT_PTR_NULL(strstr(reply, "accepted"));
	CU_ASSERT_PTR_NOT_NULL(strstr(reply, "holds a CPR number"));
	CU_ASSERT(!kd_has_clear_cpr(reply));
	free(reply);
	{
		void *zctx = zmq_ctx_new(), *s = zmq_socket(zctx, ZMQ_DEALER);
		int zero = 0;
		char buf[512];
		int n;
		zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
		zmq_setsockopt(s, ZMQ_RCVTIMEO, &(int){ WAIT }, sizeof(int));
		zmq_connect(s, kd->gateway);
		zmq_send(s, "aaa", 3, ZMQ_SNDMORE);
		zmq_send(s, "bbb", 3, 0);
		n = zmq_recv(s, buf, sizeof buf - 1, 0);
		CU_ASSERT(n > 0);
		if (n > 0) {
			buf[n] = '\0';
			CU_ASSERT_PTR_NOT_NULL(strstr(buf, "expected one frame"));
		}
		zmq_close(s);
		zmq_ctx_term(zctx);
	}
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

/* kanal_emit_flush: once it returns 0, every event emitted before it survives a SIGKILL. */
static void test_emit_flush_makes_events_survive_a_crash(void)
{
	const char *inst = "  - name: src\n    plugin: '@TPLUGINS@/tp_flush.so'\n"
			   "    options: { count: 200, marker: '@DIR@/marker' }\n"
			   "  - name: out\n    plugin: sink\n"
			   "    options: { path: '@DIR@/out.jsonl', delay: %s }\n";
	char *instances, *conf, *text;
	kd_t *kd;
	size_t n;

	if (asprintf(&instances, inst, "1s") < 0)
		return;
	conf = kd_config(instances, NULL);
	free(instances);
	kd = kd_start("flush", conf, "routes:\n  - name: all\n    to: out\n");
	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	for (int waited = 0; waited < WAIT && kd_lines(kd_path(kd, "marker")) == 0; waited += 5)
		usleep(5000);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "marker")), 1);
	kill(kd->pid, SIGKILL);
	kd_wait_exit(kd, WAIT);
	text = test_read_file(kd_path(kd, "marker"), NULL);
	CU_ASSERT_PTR_NOT_NULL(text && !strcmp(text, "0\n"));
	free(text);
	/* The slow sink had taken at most one before the kill. */
	CU_ASSERT(kd_lines(kd_path(kd, "out.jsonl")) <= 1);
	if (asprintf(&instances, inst, "0") < 0)
		return;
	conf = kd_config(instances, NULL);
	free(instances);
	kd_write_config(kd, conf);
	free(conf);
	CU_ASSERT_EQUAL_FATAL(kd_restart(kd), 0);
	n = kd_wait_lines(kd_path(kd, "out.jsonl"), 200, WAIT);
	CU_ASSERT(n >= 200);
	text = test_read_file(kd_path(kd, "out.jsonl"), NULL);
	for (int i = 0; text && i < 200; i++) {
		char id[32];
		snprintf(id, sizeof id, "\"fl-%d\"", i);
		if (!strstr(text, id)) {
			CU_FAIL("an event flushed before the crash was lost");
			break;
		}
	}
	free(text);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

/* With the journal, a full destination's events wait on disk (parked), not in RAM and not
 * refused; they arrive in order, and survive a crash while parked. */
static void test_full_destination_parks_events_on_disk(void)
{
	char *conf =
		strdup("log_level: info\nplugin_dir: @PLUGINS@\nstate_dir: @DIR@/state\n"
		       "run_dir: @DIR@/run\nroutes: @DIR@/routes\n"
		       "endpoints: { gateway: 'tcp://127.0.0.1:0', stream: 'tcp://127.0.0.1:0', "
		       "admin: 'tcp://127.0.0.1:0' }\n"
		       "limits: { queue_max_events: 4, shutdown_deadline: 1s }\n"
		       "instances:\n  - name: slow\n    plugin: sink\n"
		       "    options: { path: '@DIR@/slow.jsonl', delay: 20ms }\n");
	kd_t *kd = kd_start("park", conf, "routes:\n  - name: all\n    to: slow\n");
	char *reply, *text;
	int accepted = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	for (int i = 0; i < 150; i++) {
		char id[32], *e;
		snprintf(id, sizeof id, "p-%03d", i);
		e = kd_event("test", id, "x.y", NULL);
		reply = kd_send(kd, e, WAIT);
		accepted += reply && strstr(reply, "\"accepted\"");
		free(reply);
		free(e);
	}
	CU_ASSERT_EQUAL(accepted, 150);
	reply = kd_admin(kd, "{\"cmd\":\"status\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "\"parked_events\":") &&
			       !strstr(reply, "\"parked_events\":0,"));
	free(reply);
	/* A crash while events are parked loses none of them. */
	kill(kd->pid, SIGKILL);
	kd_wait_exit(kd, WAIT);
	CU_ASSERT_EQUAL_FATAL(kd_restart(kd), 0);
	CU_ASSERT(kd_wait_lines(kd_path(kd, "slow.jsonl"), 150, 20000) >= 150);
	text = test_read_file(kd_path(kd, "slow.jsonl"), NULL);
	/* Every event arrived, and the first arrival of each is in the order sent. */
	{
		const char *prev = text;
		for (int i = 0; text && i < 150; i++) {
			char id[32];
			const char *at;
			snprintf(id, sizeof id, "\"p-%03d\"", i);
			at = strstr(text, id);
			if (!at) {
				CU_FAIL("a parked event was lost");
				break;
			}
			if (at < prev) {
				CU_FAIL("parked events arrived out of order");
				break;
			}
			prev = at;
		}
	}
	free(text);
	free(conf);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

/* An oversized request gets its answer, not a dropped connection: up to 16 MiB a frame is
 * read and answered "invalid" with the limit; only beyond that does ZeroMQ drop the
 * connection (no answer is possible: docs/security.md), and kanald goes on serving. */
static void test_oversized_gateway_requests_are_answered(void)
{
	char *conf = kd_config("  - name: out\n    plugin: sink\n"
			       "    options: { path: '@DIR@/out.jsonl' }\n",
			       NULL);
	kd_t *kd = kd_start("oversized", conf, "routes:\n  - name: all\n    to: out\n");
	size_t big = 10 * 1024 * 1024, huge = 20 * 1024 * 1024;
	char *frame = malloc(huge + 1), *reply, *ev;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT_PTR_NOT_NULL_FATAL(frame);
	/* 10 MB of an event-looking batch (64 x the default 64 KiB max_event_size is 4 MiB). */
	memset(frame, ' ', big);
	{
		static const char head[] = "[{\"specversion\":\"1.0\",\"id\":\"big\",\"data\":\"";
		memcpy(frame, head, sizeof head - 1);
	}
	frame[big - 3] = '"';
	frame[big - 2] = '}';
	frame[big - 1] = ']';
	frame[big] = '\0';
	reply = kd_send(kd, frame, WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply);
	CU_ASSERT_PTR_NOT_NULL(reply ? strstr(reply, "\"invalid\"") : NULL);
	CU_ASSERT_PTR_NOT_NULL(reply ? strstr(reply, "larger than the limit") : NULL);
	free(reply);
	/* 20 MB: dropped with the connection by ZeroMQ, no answer. */
	memset(frame, ' ', huge);
	frame[huge] = '\0';
	reply = kd_send(kd, frame, 2000);
	CU_ASSERT_PTR_NULL(reply);
	free(reply);
	free(frame);
	/* kanald serves the next client as before. */
	ev = kd_event("t", "after", "x.y", NULL);
	CU_ASSERT(kd_send_event(kd, ev, "accepted", WAIT, NULL));
	free(ev);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 1, WAIT), 1);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

TEST_MAIN("kanald", TEST(test_oversized_gateway_requests_are_answered),
	  TEST(test_fan_out_where_and_default), TEST(test_gateway_statuses),
	  TEST(test_fallback_when_every_primary_rejects),
	  TEST(test_reject_without_fallback_is_kept_as_dead_letter),
	  TEST(test_memory_mode_keeps_dead_letters_in_a_file), TEST(test_enrich_merges_the_reply),
	  TEST(test_enrich_timeout_fails_the_flow), TEST(test_enrich_retries_a_transient_failure),
	  TEST(test_enrich_failure_can_be_skipped), TEST(test_enrich_failure_rejected_by_service),
	  TEST(test_reload_valid_then_invalid_keeps_old_table),
	  TEST(test_reload_same_route_new_destinations),
	  TEST(test_json_log_one_record_per_happening), TEST(test_refuses_plugin_with_wrong_abi),
	  TEST(test_refuses_bad_options), TEST(test_source_plugin_events_flow_and_stop_gracefully),
	  TEST(test_stream_contents_and_cpr_masking), TEST(test_retry_budget_then_dead),
	  TEST(test_gateway_busy_when_destination_full),
	  TEST(test_shutdown_with_slow_plugin_is_bounded_and_keeps_work),
	  TEST(test_second_sigterm_forces_the_stop),
	  TEST(test_second_kanald_on_the_same_state_dir_is_refused),
	  TEST(test_rate_limit_answers_busy_with_retry_after),
	  TEST(test_gateway_client_that_never_reads_does_not_stall),
	  TEST(test_full_destination_does_not_block_others),
	  TEST(test_deadletter_destination_batches_and_envelopes),
	  TEST(test_emit_flush_makes_events_survive_a_crash),
	  TEST(test_full_destination_parks_events_on_disk))
