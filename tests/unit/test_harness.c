/*
 * tests/unit/test_harness.c — the plugin test harness (sdk/harness.c) end to end with the
 * real test plugins loaded through the real loader, and the host services of sdk/ctx.c that
 * every host shares: ownership of messages, thread checks, masking, log levels.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <kanal/harness.h>
#include "test.h"
#include "host.h"

static kanal_msg_t *s_event(const char *json)
{
	kanal_msg_t *msg = NULL;
	kanal_error_t err;

	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kanal_msg_parse(json, strlen(json), 0, &msg, &err), 0);
	return msg;
}

static kanal_harness_t *s_echo(const char *instance)
{
	kanal_error_t err;
	kanal_harness_t *h;

	kanal_error_clear(&err);
	h = kanal_harness_new(test_path("tests/plugins/tp_echo.so"), instance, &err);
	CU_ASSERT_PTR_NOT_NULL(h);
	return h;
}

static int s_start(kanal_harness_t *h)
{
	kanal_error_t err;
	int rc;

	kanal_error_clear(&err);
	rc = kanal_harness_start(h, &err);
	if (rc != 0)
		printf("\n  start failed: %s\n", err.text);
	return rc;
}

/* The index of the first log line containing `text`, or -1. */
static int s_log_index(const kanal_harness_t *h, const char *text)
{
	for (size_t i = 0; i < kanal_harness_log_count(h); i++)
		if (strstr(kanal_harness_log(h, i), text))
			return (int)i;
	return -1;
}

#define EV_SICK                                                                                    \
	"{\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"daycare-1\","                         \
	"\"type\":\"child.absence.reported\",\"data\":{\"reason\":\"sick\"}}"

/* ---- deliveries -------------------------------------------------------------------------- */

static void test_deliver_records_the_echo(void)
{
	kanal_harness_t *h = s_echo("echo-1");
	kanal_msg_t *msg = s_event(EV_SICK);
	const kanal_msg_t *out;
	const char *reason = NULL;

	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, "sick-child"), KANAL_OUTCOME_OK);
	CU_ASSERT_STRING_EQUAL(kanal_harness_last_error(h), "");
	CU_ASSERT_EQUAL(kanal_harness_last_retry_after(h), -1);
	CU_ASSERT_EQUAL_FATAL(kanal_harness_emitted_count(h), 1);
	out = kanal_harness_emitted(h, 0);
	CU_ASSERT_STRING_EQUAL(kanal_msg_type(out), "child.absence.reported.echoed");
	CU_ASSERT_STRING_EQUAL(kanal_msg_source(out), "echo-1");
	CU_ASSERT_STRING_NOT_EQUAL(kanal_msg_id(out), "e1");
	CU_ASSERT_STRING_EQUAL(kanal_msg_attr(out, "causationid"), "e1");
	CU_ASSERT_STRING_EQUAL(kanal_msg_attr(out, "correlationid"), "e1");
	CU_ASSERT_EQUAL(kanal_msg_data_str(out, "reason", &reason), 0);
	CU_ASSERT_STRING_EQUAL(reason, "sick");
	CU_ASSERT_PTR_NULL(kanal_harness_emitted(h, 1));
	/* The delivery facts reached the plugin. */
	CU_ASSERT(s_log_index(h, "debug: delivery 1 attempt 1 route sick-child type "
				 "child.absence.reported") >= 0);
	CU_ASSERT_DOUBLE_EQUAL(kanal_harness_metric(h, "deliveries"), 1, 1e-9);
	CU_ASSERT(kanal_harness_metric(h, "last_bytes") > 50);
	CU_ASSERT_DOUBLE_EQUAL(kanal_harness_metric(h, "never_set"), 0, 1e-9);
	/* The recorded copy outlives the delivered message. */
	kanal_msg_destroy(&msg);
	CU_ASSERT_STRING_EQUAL(kanal_msg_attr(kanal_harness_emitted(h, 0), "causationid"), "e1");
	kanal_harness_destroy(&h);
	CU_ASSERT_PTR_NULL(h);
	kanal_harness_destroy(&h);
}

static void test_options_shape_the_echo(void)
{
	const char *ignore[] = { "child.absence.reported" };
	kanal_harness_t *h = s_echo(NULL);
	kanal_msg_t *msg = s_event(EV_SICK);

	CU_ASSERT_EQUAL(kanal_harness_option_list(h, "ignore_types", ignore, 1), 0);
	CU_ASSERT_EQUAL(kanal_harness_option(h, "emit_type", "first.choice"), 0);
	CU_ASSERT_EQUAL(kanal_harness_option(h, "emit_type", "calendar.event.upsert"), 0);
	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	/* The instance is named after the plugin when no name is given. */
	CU_ASSERT(s_log_index(h, "info: echo ready: reply_field=echoed ignore_types=1") == 0);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_OK);
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), 0); /* ignored type */
	kanal_msg_set_attr(msg, "type", "staff.absence.registered", NULL);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_OK);
	CU_ASSERT_EQUAL_FATAL(kanal_harness_emitted_count(h), 1);
	CU_ASSERT_STRING_EQUAL(kanal_msg_type(kanal_harness_emitted(h, 0)),
			       "calendar.event.upsert");
	CU_ASSERT_STRING_EQUAL(kanal_msg_source(kanal_harness_emitted(h, 0)), "tp_echo");
	/* Options are frozen once started. */
	CU_ASSERT_EQUAL(kanal_harness_option(h, "emit", "false"), KANAL_ESTATE);
	CU_ASSERT_EQUAL(kanal_harness_state_dir(h, "/tmp"), KANAL_ESTATE);
	kanal_msg_destroy(&msg);
	kanal_harness_destroy(&h);
}

static void test_request_gets_a_reply(void)
{
	kanal_harness_t *h = s_echo("cpr");
	kanal_msg_t *req = s_event("{\"specversion\":\"1.0\",\"id\":\"r1\",\"source\":\"router\","
				   "\"type\":\"person.lookup.request\",\"data\":{\"who\":\"a\"}}");
	kanal_msg_t *reply = (kanal_msg_t *)1;
	const char *s = NULL;
	double w = 0;

	CU_ASSERT_EQUAL(kanal_harness_option(h, "reply_field", "seen_by"), 0);
	CU_ASSERT_EQUAL(kanal_harness_option(h, "weight", "2.5"), 0);
	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	CU_ASSERT_EQUAL(kanal_harness_request(h, req, &reply), KANAL_OUTCOME_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
	CU_ASSERT_STRING_EQUAL(kanal_msg_type(reply), "person.lookup.request.reply");
	CU_ASSERT_EQUAL(kanal_msg_data_str(reply, "who", &s), 0);
	CU_ASSERT_STRING_EQUAL(s, "a");
	CU_ASSERT_EQUAL(kanal_msg_data_str(reply, "seen_by", &s), 0);
	CU_ASSERT_STRING_EQUAL(s, "cpr");
	CU_ASSERT_EQUAL(kanal_msg_data_double(reply, "weight", &w), 0);
	CU_ASSERT_DOUBLE_EQUAL(w, 2.5, 1e-9);
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), 0); /* a request is not echoed */
	/* The route is NULL for a request. */
	CU_ASSERT(s_log_index(h, "route - type person.lookup.request") >= 0);
	kanal_msg_destroy(&reply);
	kanal_msg_destroy(&req);
	kanal_harness_destroy(&h);
}

static void test_reject_and_retry_outcomes(void)
{
	kanal_harness_t *h = s_echo("echo-1");
	kanal_msg_t *msg = s_event(EV_SICK);
	kanal_msg_t *reply = NULL;

	CU_ASSERT_EQUAL(kanal_harness_option(h, "reject_type", "bad.type"), 0);
	CU_ASSERT_EQUAL(kanal_harness_option(h, "retry_type", "slow.type"), 0);
	CU_ASSERT_EQUAL(kanal_harness_option(h, "retry_after", "2s"), 0);
	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);

	kanal_msg_set_attr(msg, "type", "bad.type", NULL);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_REJECT);
	CU_ASSERT_STRING_EQUAL(kanal_harness_last_error(h), "tp_echo rejects type 'bad.type'");
	CU_ASSERT_EQUAL(kanal_harness_last_retry_after(h), -1);

	kanal_msg_set_attr(msg, "type", "slow.type", NULL);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_RETRY);
	CU_ASSERT_STRING_EQUAL(kanal_harness_last_error(h), "tp_echo retries type 'slow.type'");
	CU_ASSERT_EQUAL(kanal_harness_last_retry_after(h), 2000);

	/* A request that is rejected gives no reply. */
	kanal_msg_set_attr(msg, "type", "bad.type", NULL);
	CU_ASSERT_EQUAL(kanal_harness_request(h, msg, &reply), KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NULL(reply);

	/* The next delivery starts clean. */
	kanal_msg_set_attr(msg, "type", "fine.type", NULL);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_OK);
	CU_ASSERT_STRING_EQUAL(kanal_harness_last_error(h), "");
	CU_ASSERT_EQUAL(kanal_harness_last_retry_after(h), -1);
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), 1);
	kanal_msg_destroy(&msg);
	kanal_harness_destroy(&h);
}

static void test_redelivery_after_retry_is_next_attempt(void)
{
	kanal_harness_t *h = s_echo("echo-1");
	kanal_msg_t *msg = s_event(EV_SICK);
	kanal_msg_t *other = s_event("{\"specversion\":\"1.0\",\"id\":\"e2\",\"source\":\"d\","
				     "\"type\":\"t.x\"}");

	CU_ASSERT_EQUAL(kanal_harness_option(h, "fail_attempts", "2"), 0);
	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_RETRY);
	CU_ASSERT_STRING_EQUAL(kanal_harness_last_error(h), "attempt 1 of 2 planned failures");
	CU_ASSERT_EQUAL(kanal_harness_last_retry_after(h), 1500);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_RETRY);
	CU_ASSERT_STRING_EQUAL(kanal_harness_last_error(h), "attempt 2 of 2 planned failures");
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, other, NULL), KANAL_OUTCOME_RETRY);
	CU_ASSERT_STRING_EQUAL(kanal_harness_last_error(h), "attempt 1 of 2 planned failures");
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_OK);
	CU_ASSERT(s_log_index(h, "attempt 3 route") >= 0);
	/* Once delivered, the same event starts again from attempt 1. */
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_RETRY);
	CU_ASSERT_STRING_EQUAL(kanal_harness_last_error(h), "attempt 1 of 2 planned failures");
	kanal_msg_destroy(&msg);
	kanal_msg_destroy(&other);
	kanal_harness_destroy(&h);
}

static void test_log_lines_recorded_with_cpr_masked(void)
{
	kanal_harness_t *h = s_echo("echo-1");
	kanal_msg_t *msg = s_event("{\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"d\","
				   "\"type\":\"t.x\",\"data\":{\"cpr\":\"1503851233\","
				   "\"note\":\"call 010118-4129\"}}");
	int i;

	CU_ASSERT_EQUAL(kanal_harness_option(h, "log_data", "true"), 0);
	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_OK);
	/* In order: the start line, the delivery's debug line, then its data line. */
	CU_ASSERT_EQUAL(s_log_index(h, "info: echo ready"), 0);
	CU_ASSERT_EQUAL(s_log_index(h, "debug: delivery 1 attempt 1"), 1);
	i = s_log_index(h, "info: data of t.x: ");
	CU_ASSERT_EQUAL(i, 2);
	CU_ASSERT(s_log_index(h, "\"cpr\":\"150385XXXX\"") == i);
	CU_ASSERT(s_log_index(h, "call 010118-XXXX") == i);
	CU_ASSERT_EQUAL(s_log_index(h, "1503851233"), -1);
	CU_ASSERT_EQUAL(s_log_index(h, "010118-4129"), -1);
	/* The event itself is not masked: the plugin emitted the data it was given. */
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), 1);
	kanal_harness_clear(h);
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), 0);
	CU_ASSERT_EQUAL(kanal_harness_log_count(h), 0);
	CU_ASSERT_PTR_NULL(kanal_harness_log(h, 0));
	kanal_msg_destroy(&msg);
	kanal_harness_destroy(&h);
}

/* What a plugin quotes in its log — here an option's value — cannot forge a line: every
 * host's kanal_log escapes anything outside printable text. */
static void test_log_lines_are_printable_text(void)
{
	kanal_harness_t *h = s_echo("echo-1");
	const char *line;

	CU_ASSERT_EQUAL(
		kanal_harness_option(h, "reply_field",
				     "f\n2026-01-01T00:00:00.000Z error router: forged\x1b[2J"),
		0);
	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	CU_ASSERT_EQUAL(kanal_harness_log_count(h), 1);
	line = kanal_harness_log(h, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(line);
	CU_ASSERT_PTR_NULL(strchr(line, '\n'));
	CU_ASSERT_PTR_NULL(strchr(line, '\x1b'));
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "reply_field=f\\n2026-01-01T00:00:00.000Z error router:"
					    " forged\\x1b[2J "));
	kanal_harness_destroy(&h);
}

/* ---- timers ---------------------------------------------------------------------------------- */

static kanal_harness_t *s_timer(const char *interval, const char *count)
{
	kanal_error_t err;
	kanal_harness_t *h;

	kanal_error_clear(&err);
	h = kanal_harness_new(test_path("tests/plugins/tp_timer.so"), "ticker", &err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_EQUAL(kanal_harness_option(h, "interval", interval), 0);
	if (count)
		CU_ASSERT_EQUAL(kanal_harness_option(h, "count", count), 0);
	return h;
}

static void test_timer_plugin_emits_over_time(void)
{
	kanal_harness_t *h = s_timer("10ms", NULL);
	int64_t start;
	size_t n;

	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), 0); /* nothing before the loop runs */
	start = kanal_now_ms();
	n = kanal_harness_run(h, 3000, 5);
	CU_ASSERT_EQUAL(n, 5);
	CU_ASSERT(kanal_now_ms() - start < 1000); /* stopped at 5, not after 3 s */
	CU_ASSERT(kanal_now_ms() - start >= 45);  /* and not faster than the interval */
	CU_ASSERT_EQUAL_FATAL(kanal_harness_emitted_count(h), 5);
	for (size_t i = 0; i < 5; i++) {
		int64_t v = 0;
		CU_ASSERT_EQUAL(kanal_msg_data_int(kanal_harness_emitted(h, i), "n", &v), 0);
		CU_ASSERT_EQUAL(v, (int64_t)i + 1);
		CU_ASSERT_STRING_EQUAL(kanal_msg_type(kanal_harness_emitted(h, i)),
				       "tp.timer.tick");
		CU_ASSERT_STRING_EQUAL(kanal_msg_source(kanal_harness_emitted(h, i)), "ticker");
	}
	CU_ASSERT_DOUBLE_EQUAL(kanal_harness_metric(h, "ticks"), 5, 1e-9);
	/* The total counts on across clear. */
	kanal_harness_clear(h);
	CU_ASSERT_EQUAL(kanal_harness_run(h, 3000, 7), 7);
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), 2);
	kanal_harness_destroy(&h);
}

static void test_timer_plugin_stops_after_count(void)
{
	kanal_harness_t *h = s_timer("5ms", "3");

	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	CU_ASSERT_EQUAL(kanal_harness_run(h, 120, 0), 3);
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), 3);
	CU_ASSERT(s_log_index(h, "info: done after 3 events") >= 0);
	kanal_harness_destroy(&h);
}

static void test_pure_source_rejects_deliveries(void)
{
	kanal_harness_t *h = s_timer("1s", NULL);
	kanal_msg_t *msg = s_event(EV_SICK);

	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_REJECT);
	CU_ASSERT_STRING_EQUAL(kanal_harness_last_error(h),
			       "plugin 'tp_timer' has no on_message: "
			       "it is a pure source and takes no deliveries");
	kanal_msg_destroy(&msg);
	kanal_harness_destroy(&h);
}

/* ---- backpressure and services ----------------------------------------------------------------- */

static void test_emit_backpressure(void)
{
	kanal_harness_t *h = s_echo("echo-1");
	kanal_harness_t *t = s_timer("5ms", NULL);
	kanal_msg_t *msg = s_event(EV_SICK);
	int64_t v = 0;

	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	kanal_harness_set_emit_result(h, KANAL_EBUSY);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_RETRY);
	CU_ASSERT_STRING_EQUAL(kanal_harness_last_error(h),
			       "emit failed: busy: destination queue full, try again later");
	CU_ASSERT_EQUAL(kanal_harness_last_retry_after(h), 1500);
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), 0);
	kanal_harness_set_emit_result(h, 0);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_OK);
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), 1);

	/* A source under backpressure counts its failures and loses no sequence number. */
	CU_ASSERT_EQUAL_FATAL(s_start(t), 0);
	kanal_harness_set_emit_result(t, KANAL_EBUSY);
	CU_ASSERT_EQUAL(kanal_harness_run(t, 40, 0), 0);
	CU_ASSERT(kanal_harness_metric(t, "emit_failures") >= 2);
	CU_ASSERT(s_log_index(t, "warn: emit failed: busy") >= 0);
	kanal_harness_set_emit_result(t, 0);
	CU_ASSERT_EQUAL(kanal_harness_run(t, 1000, 1), 1);
	CU_ASSERT_EQUAL(kanal_msg_data_int(kanal_harness_emitted(t, 0), "n", &v), 0);
	CU_ASSERT_EQUAL(v, 1);
	kanal_msg_destroy(&msg);
	kanal_harness_destroy(&h);
	kanal_harness_destroy(&t);
}

typedef struct lookup {
	int calls;
	int rc;
} lookup_t;

static int s_lookup(const kanal_msg_t *request, kanal_msg_t **reply_out, void *arg)
{
	lookup_t *l = arg;
	kanal_msg_t *reply;

	l->calls++;
	CU_ASSERT_STRING_EQUAL(kanal_msg_id(request), "e1");
	if (l->rc)
		return l->rc;
	reply = kanal_msg_new("person.lookup.reply", "cpr", NULL);
	kanal_msg_data_set_str(reply, "name", "Anna");
	*reply_out = reply;
	return 0;
}

static void test_services_answer_requests(void)
{
	kanal_harness_t *h = s_echo("echo-1");
	kanal_msg_t *msg = s_event(EV_SICK);
	lookup_t l = { 0 };
	const char *name = NULL;

	CU_ASSERT_EQUAL(kanal_harness_option(h, "enrich_service", "cpr"), 0);
	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	/* No service registered yet. */
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_REJECT);
	CU_ASSERT_STRING_EQUAL(kanal_harness_last_error(h),
			       "request to 'cpr' failed: no such service instance");
	CU_ASSERT_EQUAL(kanal_harness_service(h, "cpr", s_lookup, &l), 0);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_OK);
	CU_ASSERT_EQUAL(l.calls, 1);
	CU_ASSERT_EQUAL_FATAL(kanal_harness_emitted_count(h), 1);
	CU_ASSERT_EQUAL(kanal_msg_data_str(kanal_harness_emitted(h, 0), "enriched.name", &name), 0);
	CU_ASSERT_STRING_EQUAL(name, "Anna");
	/* The service's error code reaches the plugin. */
	l.rc = KANAL_ETIMEDOUT;
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_RETRY);
	CU_ASSERT_STRING_EQUAL(kanal_harness_last_error(h), "request to 'cpr' failed: timed out");
	CU_ASSERT_EQUAL(l.calls, 2);
	kanal_msg_destroy(&msg);
	kanal_harness_destroy(&h);
}

static void test_host_services_refuse_other_threads(void)
{
	kanal_harness_t *h = s_echo("echo-1");
	kanal_msg_t *msg = s_event("{\"specversion\":\"1.0\",\"id\":\"p1\",\"source\":\"t\","
				   "\"type\":\"tp.thread.probe\"}");

	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, NULL), KANAL_OUTCOME_OK);
	CU_ASSERT(s_log_index(h, "info: from another thread: emit=KANAL_ETHREAD "
				 "timer=KANAL_ETHREAD") >= 0);
	CU_ASSERT_EQUAL(s_log_index(h, "must not be logged"), -1);
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), 0);
	CU_ASSERT_DOUBLE_EQUAL(kanal_harness_metric(h, "escaped"), 0, 1e-9);
	kanal_msg_destroy(&msg);
	kanal_harness_destroy(&h);
}

/* ---- start failures, state folder ------------------------------------------------------------- */

static void test_config_errors_stop_start(void)
{
	static const struct {
		const char *key, *value, *expected;
	} cases[] = {
		{ "reply_feld", "x",
		  "error: instance 'echo-1': unknown option 'reply_feld' (did you "
		  "mean 'reply_field'?)" },
		{ "retry_after", "soon",
		  "error: instance 'echo-1': option 'retry_after' expects a "
		  "duration like 250ms, 2s or 5m, got 'soon'" },
		{ "ignore_types", "a",
		  "error: instance 'echo-1': option 'ignore_types' expects a "
		  "list like [a, b], got a single value 'a'" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		kanal_harness_t *h = s_echo("echo-1");
		kanal_error_t err;
		char line[600];

		CU_ASSERT_EQUAL(kanal_harness_option(h, cases[i].key, cases[i].value), 0);
		kanal_error_clear(&err);
		CU_ASSERT_EQUAL(kanal_harness_start(h, &err), KANAL_ECONFIG);
		kanal_error_format(&err, line, sizeof line);
		CU_ASSERT_STRING_EQUAL(line, cases[i].expected);
		/* Not started: no second try, deliveries refused. */
		CU_ASSERT_EQUAL(kanal_harness_start(h, &err), KANAL_ESTATE);
		CU_ASSERT_EQUAL(kanal_harness_deliver(h, NULL, NULL), KANAL_OUTCOME_REJECT);
		CU_ASSERT_EQUAL(kanal_harness_run(h, 5, 0), 0);
		kanal_harness_destroy(&h);
	}
}

static void test_init_failure_reports_plugin_text(void)
{
	kanal_error_t err;
	kanal_harness_t *h;

	kanal_error_clear(&err);
	h = kanal_harness_new(test_path("tests/plugins/tp_init_fail.so"), NULL, &err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_EQUAL(kanal_harness_start(h, &err), KANAL_EIO);
	CU_ASSERT_STRING_EQUAL(err.text,
			       "instance 'tp_init_fail': init failed: cannot reach "
			       "http://127.0.0.1:9 to look up 150385XXXX: connection refused");
	kanal_harness_destroy(&h);
}

static void test_refused_plugin_gives_no_harness(void)
{
	kanal_error_t err;

	kanal_error_clear(&err);
	CU_ASSERT_PTR_NULL(
		kanal_harness_new(test_path("tests/plugins/tp_abi_minor.so"), "x", &err));
	CU_ASSERT_STRING_EQUAL(err.text, "built for plugin ABI 1.99, newer than this host's 1.1: "
					 "upgrade kanal or rebuild the plugin");
	kanal_error_clear(&err);
	CU_ASSERT_PTR_NULL(kanal_harness_new("/nonexistent.so", "x", &err));
	CU_ASSERT_STRING_EQUAL(err.source, "/nonexistent.so");
}

static bool s_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_state_folder_made_and_removed(void)
{
	kanal_harness_t *h = s_echo("echo-1");
	char *dir = test_tmpdir("harness"), *given, *file;
	char path[1024] = "";
	const char *line, *p;

	/* By default a fresh temporary folder, removed by destroy. */
	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	line = kanal_harness_log(h, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(line);
	p = strstr(line, "state_dir=");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	snprintf(path, sizeof path, "%s", p + strlen("state_dir="));
	CU_ASSERT_TRUE(s_is_dir(path));
	file = test_write_file(path, "cursor", "42"); /* the plugin may keep files there */
	CU_ASSERT_PTR_NOT_NULL(file);
	free(file);
	kanal_harness_destroy(&h);
	CU_ASSERT_FALSE(s_is_dir(path));

	/* A given folder is made if missing, and kept. */
	CU_ASSERT_EQUAL_FATAL(asprintf(&given, "%s/a/b", dir) > 0, 1);
	h = s_echo("echo-1");
	CU_ASSERT_EQUAL(kanal_harness_state_dir(h, given), 0);
	CU_ASSERT_EQUAL_FATAL(s_start(h), 0);
	CU_ASSERT(s_log_index(h, given) == 0);
	CU_ASSERT_TRUE(s_is_dir(given));
	kanal_harness_destroy(&h);
	CU_ASSERT_TRUE(s_is_dir(given));
	free(given);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- host services (ctx.c) with a minimal host ------------------------------------------------ */

typedef struct mini_host {
	int emits, replies, logs, metrics;
	char last_log[256];
	kanal_log_level_t last_level;
} mini_host_t;

static int s_mini_emit(kanal_ctx_t *ctx, kanal_msg_t *msg)
{
	((mini_host_t *)ctx->host)->emits++;
	kanal_msg_destroy(&msg);
	return 0;
}

static int s_mini_reply(kanal_ctx_t *ctx, kanal_msg_t *msg)
{
	((mini_host_t *)ctx->host)->replies++;
	kanal_msg_destroy(&msg);
	return 0;
}

static void s_mini_log(kanal_ctx_t *ctx, kanal_log_level_t level, const char *line)
{
	mini_host_t *m = ctx->host;

	m->logs++;
	m->last_level = level;
	snprintf(m->last_log, sizeof m->last_log, "%s", line);
}

static void s_mini_metric(kanal_ctx_t *ctx, const char *name, int64_t delta)
{
	(void)name;
	(void)delta;
	((mini_host_t *)ctx->host)->metrics++;
}

static const kanal_host_ops_t s_mini_ops = {
	.emit = s_mini_emit,
	.reply = s_mini_reply,
	.log = s_mini_log,
	.metric_add = s_mini_metric,
};

typedef struct far_call {
	kanal_ctx_t *ctx;
	kanal_msg_t *msg;
	int rc;
	bool msg_cleared;
} far_call_t;

static void *s_emit_elsewhere(void *arg)
{
	far_call_t *f = arg;

	f->rc = kanal_emit(f->ctx, &f->msg);
	f->msg_cleared = f->msg == NULL;
	return NULL;
}

static void test_emit_consumes_message_always(void)
{
	mini_host_t m = { 0 };
	kanal_ctx_t *ctx = kanal__ctx_new("mini", &s_mini_ops, &m, NULL);
	kanal_msg_t *msg;
	far_call_t f;
	pthread_t t;

	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT_PTR_NULL(kanal_state_dir(ctx));
	CU_ASSERT_STRING_EQUAL(kanal_instance_name(ctx), "mini");
	msg = kanal_msg_new("a.b", "src", NULL);
	CU_ASSERT_EQUAL(kanal_emit(NULL, &msg), KANAL_EINVAL);
	CU_ASSERT_PTR_NULL(msg);
	CU_ASSERT_EQUAL(kanal_emit(ctx, &msg), KANAL_EINVAL); /* *msg_p NULL */
	CU_ASSERT_EQUAL(kanal_emit(ctx, NULL), KANAL_EINVAL);

	kanal__ctx_bind(ctx);
	f = (far_call_t){ .ctx = ctx, .msg = kanal_msg_new("a.b", "src", NULL) };
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, s_emit_elsewhere, &f), 0);
	pthread_join(t, NULL);
	CU_ASSERT_EQUAL(f.rc, KANAL_ETHREAD);
	CU_ASSERT_TRUE(f.msg_cleared);
	CU_ASSERT_EQUAL(m.emits, 0);

	msg = kanal_msg_new("a.b", "src", NULL);
	CU_ASSERT_EQUAL(kanal_emit(ctx, &msg), 0);
	CU_ASSERT_PTR_NULL(msg);
	CU_ASSERT_EQUAL(m.emits, 1);
	kanal__ctx_destroy(&ctx);
	CU_ASSERT_PTR_NULL(ctx);
}

static void test_reply_only_to_a_request(void)
{
	mini_host_t m = { 0 };
	kanal_ctx_t *ctx = kanal__ctx_new("mini", &s_mini_ops, &m, NULL);
	kanal_msg_t *reply = kanal_msg_new("a.reply", "mini", NULL);
	kanal_msg_t *req = kanal_msg_new("a.req", "x", NULL);

	kanal__ctx_bind(ctx);
	CU_ASSERT_FALSE(kanal_is_request(ctx));
	kanal__ctx_begin_delivery(ctx, 7, "r", 2, false);
	CU_ASSERT_STRING_EQUAL(kanal_delivery_route(ctx), "r");
	CU_ASSERT_EQUAL(kanal_delivery_id(ctx), 7);
	CU_ASSERT_EQUAL(kanal_delivery_attempt(ctx), 2);
	CU_ASSERT_EQUAL(kanal_reply(ctx, req, &reply), KANAL_ESTATE);
	CU_ASSERT_PTR_NULL(reply);
	kanal__ctx_end_delivery(ctx);
	CU_ASSERT_PTR_NULL(kanal_delivery_route(ctx));
	CU_ASSERT_EQUAL(kanal_delivery_id(ctx), 0);

	kanal__ctx_begin_delivery(ctx, 8, NULL, 1, true);
	CU_ASSERT_TRUE(kanal_is_request(ctx));
	reply = kanal_msg_new("a.reply", "mini", NULL);
	CU_ASSERT_EQUAL(kanal_reply(ctx, req, &reply), 0);
	CU_ASSERT_PTR_NULL(reply);
	reply = kanal_msg_new("a.reply", "mini", NULL);
	CU_ASSERT_EQUAL(kanal_reply(ctx, req, &reply), KANAL_ESTATE); /* one reply only */
	CU_ASSERT_PTR_NULL(reply);
	kanal__ctx_end_delivery(ctx);
	CU_ASSERT_EQUAL(m.replies, 1);
	CU_ASSERT_TRUE(ctx->delivery.replied);
	/* No request op: kanal_request consumes and says the bus is closed. */
	CU_ASSERT_EQUAL(kanal_request(ctx, "svc", &req, 100, &reply), KANAL_ECLOSED);
	CU_ASSERT_PTR_NULL(req);
	CU_ASSERT_PTR_NULL(reply);
	kanal__ctx_destroy(&ctx);
}

static void test_errors_and_logs_are_masked_and_filtered(void)
{
	mini_host_t m = { 0 };
	kanal_ctx_t *ctx = kanal__ctx_new("mini", &s_mini_ops, &m, NULL);

	kanal__ctx_bind(ctx);
	kanal__ctx_begin_delivery(ctx, 1, NULL, 1, false);
	kanal_set_error(ctx, "first");
	kanal_set_error(ctx, "person %s not found (%d)", "3006409120", 404);
	CU_ASSERT_STRING_EQUAL(ctx->delivery.error, "person 300640XXXX not found (404)");
	kanal_set_retry_after(ctx, 250);
	CU_ASSERT_EQUAL(ctx->delivery.retry_after_ms, 250);
	kanal__ctx_end_delivery(ctx);
	/* The host reads them after the call; a new delivery clears them. */
	CU_ASSERT_STRING_EQUAL(ctx->delivery.error, "person 300640XXXX not found (404)");
	kanal__ctx_begin_delivery(ctx, 2, NULL, 1, false);
	CU_ASSERT_STRING_EQUAL(ctx->delivery.error, "");
	CU_ASSERT_EQUAL(ctx->delivery.retry_after_ms, -1);
	kanal__ctx_end_delivery(ctx);

	ctx->log_level = KANAL_LOG_WARN;
	kanal_log(ctx, KANAL_LOG_DEBUG, "not wanted");
	kanal_log(ctx, KANAL_LOG_INFO, "not wanted");
	CU_ASSERT_EQUAL(m.logs, 0);
	kanal_log(ctx, KANAL_LOG_WARN, "guardian 2412990121 has no mailbox");
	CU_ASSERT_EQUAL(m.logs, 1);
	CU_ASSERT_EQUAL(m.last_level, KANAL_LOG_WARN);
	CU_ASSERT_STRING_EQUAL(m.last_log, "guardian 241299XXXX has no mailbox");

	/* A bad metric name is dropped with a warning, not passed on. */
	kanal_metric_add(ctx, "Bad-Name", 1);
	CU_ASSERT_EQUAL(m.metrics, 0);
	CU_ASSERT_EQUAL(m.logs, 2);
	kanal_metric_add(ctx, "good_name", 1);
	CU_ASSERT_EQUAL(m.metrics, 1);
	kanal__ctx_destroy(&ctx);
}

static void test_names(void)
{
	CU_ASSERT_STRING_EQUAL(kanal_outcome_name(KANAL_OUTCOME_OK), "ok");
	CU_ASSERT_STRING_EQUAL(kanal_outcome_name(KANAL_OUTCOME_RETRY), "retry");
	CU_ASSERT_STRING_EQUAL(kanal_outcome_name(KANAL_OUTCOME_REJECT), "reject");
	CU_ASSERT_STRING_EQUAL(kanal_log_level_name(KANAL_LOG_ERROR), "error");
	CU_ASSERT_STRING_EQUAL(kanal_log_level_name(KANAL_LOG_WARN), "warn");
	CU_ASSERT_STRING_EQUAL(kanal_log_level_name(KANAL_LOG_INFO), "info");
	CU_ASSERT_STRING_EQUAL(kanal_log_level_name(KANAL_LOG_DEBUG), "debug");
	CU_ASSERT(kanal_now_ms() > 0);
}

TEST_MAIN("harness", TEST(test_deliver_records_the_echo), TEST(test_options_shape_the_echo),
	  TEST(test_request_gets_a_reply), TEST(test_reject_and_retry_outcomes),
	  TEST(test_redelivery_after_retry_is_next_attempt),
	  TEST(test_log_lines_recorded_with_cpr_masked), TEST(test_log_lines_are_printable_text),
	  TEST(test_timer_plugin_emits_over_time), TEST(test_timer_plugin_stops_after_count),
	  TEST(test_pure_source_rejects_deliveries), TEST(test_emit_backpressure),
	  TEST(test_services_answer_requests), TEST(test_host_services_refuse_other_threads),
	  TEST(test_config_errors_stop_start), TEST(test_init_failure_reports_plugin_text),
	  TEST(test_refused_plugin_gives_no_harness), TEST(test_state_folder_made_and_removed),
	  TEST(test_emit_consumes_message_always), TEST(test_reply_only_to_a_request),
	  TEST(test_errors_and_logs_are_masked_and_filtered), TEST(test_names))
