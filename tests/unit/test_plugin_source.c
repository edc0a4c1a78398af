/*
 * tests/unit/test_plugin_source.c — the reference source plugin (plugins/source), loaded
 * from build/plugins/source.so through the SDK's test harness exactly as kanald loads it.
 *
 * What a user relies on: exactly `count` events, ids "<instance>-<seq>" with no gap, the
 * templates filled in, the rate or interval never exceeded, backpressure (KANAL_EBUSY)
 * answered by backing off and re-sending the same sequence number, and a clear error for a
 * bad option. Timing is asserted only in the direction that cannot flake: a source may be
 * slower than asked on a loaded machine, but never faster.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/harness.h>

#include "test.h"

/* A loaded, not yet started source instance, or NULL (after saying why). */
static kanal_harness_t *s_load(const char *instance)
{
	kanal_error_t err;
	kanal_harness_t *h;

	kanal_error_clear(&err);
	h = kanal_harness_new(test_path("plugins/source.so"), instance, &err);
	if (!h)
		fprintf(stderr, "cannot load the source plugin: %s\n", err.text);
	return h;
}

/* Starts h, which should succeed; returns the code and prints the error text when not. */
static int s_start(kanal_harness_t *h, kanal_error_t *err)
{
	int rc;

	kanal_error_clear(err);
	rc = kanal_harness_start(h, err);
	if (rc != 0)
		fprintf(stderr, "source did not start: %s\n", err->text);
	return rc;
}

/* True when a recorded log line contains `needle`. */
static bool s_logged(const kanal_harness_t *h, const char *needle)
{
	for (size_t i = 0; i < kanal_harness_log_count(h); i++)
		if (strstr(kanal_harness_log(h, i), needle))
			return true;
	return false;
}

/* True when the emitted events are exactly instance-1 … instance-n, in that order. */
static bool s_ids_complete(const kanal_harness_t *h, const char *instance, size_t n)
{
	char want[128];

	if (kanal_harness_emitted_count(h) != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		snprintf(want, sizeof want, "%s-%zu", instance, i + 1);
		if (strcmp(kanal_msg_id(kanal_harness_emitted(h, i)), want) != 0)
			return false;
	}
	return true;
}

/* True when text looks like "2026-11-24T10:00:00.123Z". */
static bool s_is_rfc3339(const char *text)
{
	int y, mo, d, hh, mi, ss, ms;
	char z = 0;

	return text && strlen(text) == 24 &&
	       sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &hh, &mi, &ss, &ms, &z) ==
		       8 &&
	       z == 'Z' && mo >= 1 && mo <= 12 && d >= 1 && d <= 31;
}

static void test_emits_exactly_count_events_with_sequential_ids(void)
{
	kanal_harness_t *h = s_load("src");
	kanal_error_t err;
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	kanal_harness_option(h, "type", "demo.tick");
	kanal_harness_option(h, "interval", "1ms");
	kanal_harness_option(h, "count", "25");
	CU_ASSERT_EQUAL_FATAL(s_start(h, &err), 0);

	n = kanal_harness_run(h, 5000, 25);
	CU_ASSERT_EQUAL(n, 25);
	/* Nothing more comes once the count is reached. */
	n = kanal_harness_run(h, 50, 0);
	CU_ASSERT_EQUAL(n, 25);
	CU_ASSERT_TRUE(s_ids_complete(h, "src", 25));
	CU_ASSERT_STRING_EQUAL(kanal_msg_type(kanal_harness_emitted(h, 0)), "demo.tick");
	CU_ASSERT_STRING_EQUAL(kanal_msg_source(kanal_harness_emitted(h, 0)), "src");
	CU_ASSERT_TRUE(s_is_rfc3339(kanal_msg_time(kanal_harness_emitted(h, 24))));
	CU_ASSERT_EQUAL(kanal_harness_metric(h, "emitted"), 25.0);
	CU_ASSERT_EQUAL(kanal_harness_metric(h, "busy"), 0.0);
	CU_ASSERT_TRUE(s_logged(h, "emitting demo.tick"));
	CU_ASSERT_TRUE(s_logged(h, "count reached"));
	kanal_harness_destroy(&h);
	CU_ASSERT_PTR_NULL(h);
}

static void test_fills_in_the_data_and_subject_templates(void)
{
	kanal_harness_t *h = s_load("tpl");
	kanal_error_t err;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	kanal_harness_option(h, "type", "demo.templated");
	kanal_harness_option(h, "source", "urn:kanal:demo");
	kanal_harness_option(h, "interval", "1ms");
	kanal_harness_option(h, "count", "3");
	kanal_harness_option(h, "subject", "item-{seq}");
	kanal_harness_option(h, "data",
			     "{\"n\": {seq}, \"label\": \"event {seq} of 3\", \"at\": \"{time}\", "
			     "\"u\": {uuid}, \"list\": [{seq}, \"{uuid}\"], \"brace\": \"{not}\"}");
	CU_ASSERT_EQUAL_FATAL(s_start(h, &err), 0);
	CU_ASSERT_EQUAL_FATAL(kanal_harness_run(h, 5000, 3), 3);

	for (size_t i = 0; i < 3; i++) {
		const kanal_msg_t *m = kanal_harness_emitted(h, i);
		char want[64];
		int64_t n = -1, first = -1;
		const char *label = NULL, *at = NULL, *u = NULL, *u2 = NULL, *brace = NULL;

		CU_ASSERT_EQUAL(kanal_msg_data_int(m, "n", &n), 0);
		CU_ASSERT_EQUAL(n, (int64_t)i + 1);
		CU_ASSERT_EQUAL(kanal_msg_data_int(m, "list.0", &first), 0);
		CU_ASSERT_EQUAL(first, (int64_t)i + 1);
		CU_ASSERT_EQUAL(kanal_msg_data_str(m, "label", &label), 0);
		snprintf(want, sizeof want, "event %zu of 3", i + 1);
		CU_ASSERT_STRING_EQUAL(label ? label : "", want);
		CU_ASSERT_EQUAL(kanal_msg_data_str(m, "at", &at), 0);
		CU_ASSERT_TRUE(s_is_rfc3339(at));
		CU_ASSERT_STRING_EQUAL(at ? at : "", kanal_msg_time(m));
		/* A bare {uuid} is quoted into a string; one uuid per event, used everywhere. */
		CU_ASSERT_EQUAL(kanal_msg_data_str(m, "u", &u), 0);
		CU_ASSERT_EQUAL(kanal_msg_data_str(m, "list.1", &u2), 0);
		CU_ASSERT_EQUAL(u ? strlen(u) : 0, 36);
		CU_ASSERT_STRING_EQUAL(u ? u : "", u2 ? u2 : "-");
		CU_ASSERT_EQUAL(kanal_msg_data_str(m, "brace", &brace), 0);
		CU_ASSERT_STRING_EQUAL(brace ? brace : "", "{not}");
		snprintf(want, sizeof want, "item-%zu", i + 1);
		CU_ASSERT_STRING_EQUAL(kanal_msg_subject(m) ? kanal_msg_subject(m) : "", want);
		CU_ASSERT_STRING_EQUAL(kanal_msg_source(m), "urn:kanal:demo");
	}
	{
		const char *u0 = NULL, *u1 = NULL;
		kanal_msg_data_str(kanal_harness_emitted(h, 0), "u", &u0);
		kanal_msg_data_str(kanal_harness_emitted(h, 1), "u", &u1);
		CU_ASSERT_TRUE(u0 && u1 && strcmp(u0, u1) != 0);
	}
	kanal_harness_destroy(&h);
}

static void test_reads_data_file_and_pads_to_size(void)
{
	char *dir = test_tmpdir("source");
	char *file =
		test_write_file(dir, "tpl.json", "{\n  \"kind\": \"bench\",\n  \"n\": {seq}\n}\n");
	kanal_harness_t *h = s_load("bench");
	kanal_error_t err;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	kanal_harness_option(h, "type", "demo.bench");
	kanal_harness_option(h, "interval", "1ms");
	kanal_harness_option(h, "count", "12");
	kanal_harness_option(h, "data_file", file);
	kanal_harness_option(h, "size", "2KiB");
	CU_ASSERT_EQUAL_FATAL(s_start(h, &err), 0);
	CU_ASSERT_EQUAL_FATAL(kanal_harness_run(h, 5000, 12), 12);

	for (size_t i = 0; i < 12; i++) {
		const kanal_msg_t *m = kanal_harness_emitted(h, i);
		size_t len = 0;
		char *json = kanal_msg_to_json(m, &len);
		const char *kind = NULL, *pad = NULL;
		int64_t n = 0;

		/* "About" 2048 bytes: only the width of the sequence number varies. */
		CU_ASSERT_TRUE(len >= 2048 - 8 && len <= 2048 + 8);
		CU_ASSERT_EQUAL(kanal_msg_data_str(m, "kind", &kind), 0);
		CU_ASSERT_STRING_EQUAL(kind ? kind : "", "bench");
		CU_ASSERT_EQUAL(kanal_msg_data_int(m, "n", &n), 0);
		CU_ASSERT_EQUAL(n, (int64_t)i + 1);
		CU_ASSERT_EQUAL(kanal_msg_data_str(m, "pad", &pad), 0);
		CU_ASSERT_TRUE(pad && strlen(pad) > 1500);
		kanal_free(json);
	}
	kanal_harness_destroy(&h);
	test_rmdir_r(dir);
	free(file);
	free(dir);
}

static void test_size_without_data_pads_an_empty_object(void)
{
	kanal_harness_t *h = s_load("pad");
	kanal_error_t err;
	size_t len = 0;
	char *json;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	kanal_harness_option(h, "type", "demo.bench");
	kanal_harness_option(h, "count", "1");
	kanal_harness_option(h, "size", "512");
	CU_ASSERT_EQUAL_FATAL(s_start(h, &err), 0);
	CU_ASSERT_EQUAL_FATAL(kanal_harness_run(h, 5000, 1), 1);
	json = kanal_msg_to_json(kanal_harness_emitted(h, 0), &len);
	CU_ASSERT_TRUE(len >= 512 - 4 && len <= 512 + 4);
	kanal_free(json);
	kanal_harness_destroy(&h);
}

static void test_rate_is_never_exceeded_and_bursts_reach_it(void)
{
	kanal_harness_t *h = s_load("fast");
	kanal_error_t err;
	int64_t before, elapsed;
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	kanal_harness_option(h, "type", "demo.fast");
	kanal_harness_option(h, "rate", "10000");
	kanal_harness_option(h, "interval", "1h"); /* rate overrides it */
	before = kanal_now_ms();
	CU_ASSERT_EQUAL_FATAL(s_start(h, &err), 0);
	n = kanal_harness_run(h, 20000, 1000);
	elapsed = kanal_now_ms() - before;
	/* The 1000 events come well within the time limit (bursts, not one per tick) ... */
	CU_ASSERT_TRUE(n >= 1000);
	/* ... and never faster than 10000 a second (+1: the first event of a window). */
	CU_ASSERT_TRUE((int64_t)n <= elapsed * 10000 / 1000 + 1);
	CU_ASSERT_TRUE(s_ids_complete(h, "fast", n));
	kanal_harness_destroy(&h);
}

static void test_interval_is_never_exceeded(void)
{
	kanal_harness_t *h = s_load("slow");
	kanal_error_t err;
	int64_t before, elapsed;
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	kanal_harness_option(h, "type", "demo.slow");
	kanal_harness_option(h, "interval", "40ms");
	before = kanal_now_ms();
	CU_ASSERT_EQUAL_FATAL(s_start(h, &err), 0);
	n = kanal_harness_run(h, 200, 0);
	elapsed = kanal_now_ms() - before;
	CU_ASSERT_TRUE(n >= 1);
	CU_ASSERT_TRUE((int64_t)n <= elapsed / 40 + 1);
	kanal_harness_destroy(&h);
}

static void test_start_delay_holds_the_first_event(void)
{
	kanal_harness_t *h = s_load("late");
	kanal_error_t err;
	int64_t before, elapsed;
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	kanal_harness_option(h, "type", "demo.late");
	kanal_harness_option(h, "count", "1");
	kanal_harness_option(h, "start_delay", "150ms");
	before = kanal_now_ms();
	CU_ASSERT_EQUAL_FATAL(s_start(h, &err), 0);
	n = kanal_harness_run(h, 5000, 1);
	elapsed = kanal_now_ms() - before;
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_TRUE(elapsed >= 150);
	kanal_harness_destroy(&h);
}

static void test_busy_bus_backs_off_and_skips_no_sequence_number(void)
{
	kanal_harness_t *h = s_load("bp");
	kanal_error_t err;
	double busy;
	size_t n, total;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	kanal_harness_option(h, "type", "demo.bp");
	kanal_harness_option(h, "rate", "2000");
	kanal_harness_option(h, "data", "{\"n\": {seq}}");
	CU_ASSERT_EQUAL_FATAL(s_start(h, &err), 0);
	/* At least 5: one tick's burst may carry it past. */
	CU_ASSERT_FATAL(kanal_harness_run(h, 5000, 5) >= 5);

	/* The bus pushes back for 300 ms: nothing is accepted, and the source slows down —
	 * without backing off it would try on each of the ~300 ticks. */
	kanal_harness_set_emit_result(h, KANAL_EBUSY);
	n = kanal_harness_emitted_count(h);
	kanal_harness_run(h, 300, 0);
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), n);
	busy = kanal_harness_metric(h, "busy");
	CU_ASSERT_TRUE(busy >= 1 && busy <= 20);

	/* Once the bus accepts again, the refused sequence number comes first: none is lost
	 * and none is repeated. */
	kanal_harness_set_emit_result(h, 0);
	CU_ASSERT_TRUE(kanal_harness_run(h, 10000, n + 40) >= n + 40);
	total = kanal_harness_emitted_count(h);
	CU_ASSERT_TRUE(s_ids_complete(h, "bp", total));
	for (size_t i = 0; i < total; i++) {
		int64_t seq = 0;
		kanal_msg_data_int(kanal_harness_emitted(h, i), "n", &seq);
		CU_ASSERT_EQUAL(seq, (int64_t)i + 1);
	}
	CU_ASSERT_EQUAL(kanal_harness_metric(h, "emitted"), (double)total);
	kanal_harness_destroy(&h);
}

static void test_a_shutting_down_bus_stops_the_source(void)
{
	kanal_harness_t *h = s_load("closing");
	kanal_error_t err;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	kanal_harness_option(h, "type", "demo.closing");
	kanal_harness_option(h, "interval", "1ms");
	CU_ASSERT_EQUAL_FATAL(s_start(h, &err), 0);
	kanal_harness_set_emit_result(h, KANAL_ECLOSED);
	kanal_harness_run(h, 30, 0);
	CU_ASSERT_TRUE(s_logged(h, "shutting down"));
	kanal_harness_set_emit_result(h, 0);
	CU_ASSERT_EQUAL(kanal_harness_run(h, 30, 0), 0);
	kanal_harness_destroy(&h);
}

static void test_rejects_deliveries_with_a_reason(void)
{
	kanal_harness_t *h = s_load("src");
	kanal_error_t err;
	kanal_msg_t *msg = kanal_msg_new("demo.misrouted", "elsewhere", "m-1");

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
	kanal_harness_option(h, "type", "demo.tick");
	kanal_harness_option(h, "interval", "1h");
	kanal_harness_option(h, "start_delay", "1h");
	CU_ASSERT_EQUAL_FATAL(s_start(h, &err), 0);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, msg, "to-the-source"), KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "accepts no events"));
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "to-the-source"));
	kanal_msg_destroy(&msg);
	kanal_harness_destroy(&h);
}

/* Starts a source with the given options and returns the start code; the error text goes
 * to `text` (at least 512 bytes). */
static int s_try_options(const char *const *kv, char *text)
{
	kanal_harness_t *h = s_load("bad");
	kanal_error_t err;
	int rc;

	if (!h)
		return 1;
	for (size_t i = 0; kv[i]; i += 2)
		kanal_harness_option(h, kv[i], kv[i + 1]);
	kanal_error_clear(&err);
	rc = kanal_harness_start(h, &err);
	snprintf(text, 512, "%s", err.text);
	kanal_harness_destroy(&h);
	return rc;
}

static void test_bad_options_are_refused_with_the_option_named(void)
{
	char text[512];
	const char *no_type[] = { "count", "3", NULL };
	const char *both[] = { "type", "t.x", "data", "{}", "data_file", "/nonexistent", NULL };
	const char *bad_json[] = { "type", "t.x", "data", "{\"n\": }", NULL };
	const char *bad_rate[] = { "type", "t.x", "rate", "0", NULL };
	const char *neg_count[] = { "type", "t.x", "count", "-1", NULL };
	const char *no_file[] = { "type", "t.x", "data_file", "/nonexistent/tpl.json", NULL };
	const char *pad_array[] = { "type", "t.x", "data", "[1, 2]", "size", "1KiB", NULL };
	const char *pad_number[] = { "type", "t.x", "data", "{seq}", "size", "1KiB", NULL };
	const char *unknown[] = { "type", "t.x", "colour", "blue", NULL };
	char *dir = test_tmpdir("source");
	char *broken = test_write_file(dir, "broken.json", "{\"n\": {seq},}");
	const char *bad_file[] = { "type", "t.x", "data_file", broken, NULL };

	CU_ASSERT_EQUAL(s_try_options(no_type, text), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "type"));
	CU_ASSERT_EQUAL(s_try_options(both, text), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "data_file"));
	CU_ASSERT_EQUAL(s_try_options(bad_json, text), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "'data'"));
	CU_ASSERT_EQUAL(s_try_options(bad_rate, text), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "rate"));
	CU_ASSERT_EQUAL(s_try_options(neg_count, text), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "count"));
	CU_ASSERT_EQUAL(s_try_options(no_file, text), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "/nonexistent/tpl.json"));
	CU_ASSERT_EQUAL(s_try_options(pad_array, text), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "size"));
	CU_ASSERT_EQUAL(s_try_options(pad_number, text), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "size"));
	CU_ASSERT_EQUAL(s_try_options(bad_file, text), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "'data_file'"));
	CU_ASSERT_EQUAL(s_try_options(unknown, text), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "colour"));
	test_rmdir_r(dir);
	free(broken);
	free(dir);
}

TEST_MAIN("plugin_source", TEST(test_emits_exactly_count_events_with_sequential_ids),
	  TEST(test_fills_in_the_data_and_subject_templates),
	  TEST(test_reads_data_file_and_pads_to_size),
	  TEST(test_size_without_data_pads_an_empty_object),
	  TEST(test_rate_is_never_exceeded_and_bursts_reach_it),
	  TEST(test_interval_is_never_exceeded), TEST(test_start_delay_holds_the_first_event),
	  TEST(test_busy_bus_backs_off_and_skips_no_sequence_number),
	  TEST(test_a_shutting_down_bus_stops_the_source),
	  TEST(test_rejects_deliveries_with_a_reason),
	  TEST(test_bad_options_are_refused_with_the_option_named))
