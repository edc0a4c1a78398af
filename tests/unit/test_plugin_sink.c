/*
 * tests/unit/test_plugin_sink.c — the reference sink plugin (plugins/sink), loaded from
 * build/plugins/sink.so through the SDK's test harness exactly as kanald loads it.
 *
 * What a user relies on: every event delivered ends up as one JSON line that parses back to
 * the same event (nothing masked: it is the destination's data); the terminal `line` format
 * masks CPR numbers; fail_type and retry_type answer REJECT and RETRY with a reason and the
 * retry hint; sinks appending to one file never interleave lines; bad options are refused
 * naming the option.
 *
 * The CPR number used is a synthetic one from DOMAIN.md; it is compared only through
 * variables, so a failing assertion never prints it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <kanal/harness.h>

#include "test.h"

static const char *k_cpr = "1503851233"; /* synthetic, 1985, male */
static const char *k_cpr_hyphen = "150385-1233";
static const char *k_cpr_masked = "150385-XXXX";

/* A sink instance with the given options (NULL-terminated key, value pairs), started; or
 * NULL after printing why. */
static kanal_harness_t *s_sink(const char *instance, const char *const *kv)
{
	kanal_error_t err;
	kanal_harness_t *h;

	kanal_error_clear(&err);
	h = kanal_harness_new(test_path("plugins/sink.so"), instance, &err);
	if (!h) {
		fprintf(stderr, "cannot load the sink plugin: %s\n", err.text);
		return NULL;
	}
	for (size_t i = 0; kv && kv[i]; i += 2)
		kanal_harness_option(h, kv[i], kv[i + 1]);
	if (kanal_harness_start(h, &err) != 0) {
		fprintf(stderr, "sink did not start: %s\n", err.text);
		kanal_harness_destroy(&h);
	}
	return h;
}

/* An event with a subject, a time and JSON data, or NULL when building it failed. */
static kanal_msg_t *s_event(const char *type, const char *id, const char *subject, const char *data)
{
	kanal_msg_t *m = kanal_msg_new(type, "test-source", id);

	if (!m)
		return NULL;
	if ((subject && kanal_msg_set_attr(m, "subject", subject, NULL) != 0) ||
	    kanal_msg_set_attr(m, "time", "2026-11-24T10:00:00.123Z", NULL) != 0 ||
	    (data && kanal_msg_set_data_json(m, data, strlen(data)) != 0))
		kanal_msg_destroy(&m);
	return m;
}

/* Splits text into lines in place (the last newline ends the last line); returns the count
 * and stores at most max line starts. */
static size_t s_lines(char *text, char **lines, size_t max)
{
	size_t n = 0;
	char *p = text;

	while (p && *p) {
		char *nl = strchr(p, '\n');
		if (n < max)
			lines[n] = p;
		n++;
		if (!nl)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	return n;
}

/* True when two JSON texts (or both NULL) hold the same value, whatever their whitespace. */
static bool s_same_json(const char *a, const char *b)
{
	json_t *ja, *jb;
	bool same;

	if (!a || !b)
		return !a && !b;
	ja = json_loads(a, JSON_DECODE_ANY, NULL);
	jb = json_loads(b, JSON_DECODE_ANY, NULL);
	same = ja && jb && json_equal(ja, jb);
	json_decref(ja);
	json_decref(jb);
	return same;
}

/* True when a and b have the same attributes and data. */
static bool s_same_event(const kanal_msg_t *a, const kanal_msg_t *b)
{
	char *da = kanal_msg_data_json(a, NULL), *db = kanal_msg_data_json(b, NULL);
	const char *sa = kanal_msg_subject(a), *sb = kanal_msg_subject(b);
	bool same = strcmp(kanal_msg_id(a), kanal_msg_id(b)) == 0 &&
		    strcmp(kanal_msg_type(a), kanal_msg_type(b)) == 0 &&
		    strcmp(kanal_msg_source(a), kanal_msg_source(b)) == 0 &&
		    ((!sa && !sb) || (sa && sb && strcmp(sa, sb) == 0)) && s_same_json(da, db);

	kanal_free(da);
	kanal_free(db);
	return same;
}

static void test_json_lines_round_trip_every_event_unmasked(void)
{
	char *dir = test_tmpdir("sink");
	char path[1024], data[256], *text, *lines[16];
	const char *opts[] = { "path", path, NULL };
	kanal_harness_t *h;
	kanal_msg_t *sent[7] = { 0 };
	size_t n;

	snprintf(path, sizeof path, "%s/out.jsonl", dir);
	h = s_sink("sink-1", opts);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);

	snprintf(data, sizeof data, "{\"child\": {\"cpr\": \"%s\"}, \"reason\": \"sick\"}", k_cpr);
	sent[0] = s_event("child.absence.reported", "e-1", "person:4f2a", data);
	sent[1] = s_event("demo.tick", "e-2", NULL, "{\"n\": 2, \"text\": \"line\\nbreak\"}");
	sent[2] = s_event("demo.tick", "e-3", NULL, NULL);
	sent[3] = s_event("demo.tick", "e-4", NULL, "\"just a string\"");
	sent[4] = s_event("demo.tick", "e-5", NULL, "[1, 2, 3]");
	sent[5] = kanal_msg_new("demo.binary", "test-source", "e-6");
	CU_ASSERT_PTR_NOT_NULL_FATAL(sent[5]);
	kanal_msg_set_data_binary(sent[5], "\x00\x01\xff", 3);
	/* Pretty-printed data, as a vendor's file sent with kanalctl send holds it: still one
	 * line in the file. */
	sent[6] = s_event("demo.tick", "e-7", NULL, "{\n  \"n\": 7,\r\n  \"list\": [1,\n 2]\n}");
	kanal_msg_set_attr(sent[1], "correlationid", "c-42", NULL);
	for (size_t i = 0; i < 7; i++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(sent[i]);
		CU_ASSERT_EQUAL(kanal_harness_deliver(h, sent[i], "r"), KANAL_OUTCOME_OK);
	}
	CU_ASSERT_EQUAL(kanal_harness_metric(h, "received"), 7.0);
	CU_ASSERT_EQUAL(kanal_harness_metric(h, "rejected"), 0.0);
	kanal_harness_destroy(&h);

	text = test_read_file(path, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	/* The destination's data is recorded as it is: the CPR number is not masked. */
	CU_ASSERT_PTR_NOT_NULL(strstr(text, k_cpr));
	n = s_lines(text, lines, 16);
	CU_ASSERT_EQUAL_FATAL(n, 7);
	for (size_t i = 0; i < n; i++) {
		kanal_msg_t *back = NULL;
		kanal_error_t err;
		size_t blen = 0;
		void *bytes;

		kanal_error_clear(&err);
		CU_ASSERT_EQUAL(kanal_msg_parse(lines[i], strlen(lines[i]), 0, &back, &err), 0);
		if (!back)
			continue;
		CU_ASSERT_TRUE(s_same_event(sent[i], back));
		if (i == 1) {
			const char *c = kanal_msg_attr(back, "correlationid");
			CU_ASSERT_STRING_EQUAL(c ? c : "", "c-42");
		}
		if (i == 5) {
			bytes = kanal_msg_data_binary(back, &blen);
			CU_ASSERT_TRUE(bytes && blen == 3 && memcmp(bytes, "\x00\x01\xff", 3) == 0);
			kanal_free(bytes);
		}
		kanal_msg_destroy(&back);
	}
	for (size_t i = 0; i < 7; i++)
		kanal_msg_destroy(&sent[i]);
	free(text);
	test_rmdir_r(dir);
	free(dir);
}

static void test_appends_to_an_existing_file(void)
{
	char *dir = test_tmpdir("sink");
	char *path = test_write_file(dir, "out.jsonl", "{\"earlier\": true}\n");
	const char *opts[] = { "path", path, "format", "json", NULL };
	kanal_harness_t *h = s_sink("sink-1", opts);
	kanal_msg_t *m = s_event("demo.tick", "e-1", NULL, NULL);
	char *text, *lines[4];

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, NULL), KANAL_OUTCOME_OK);
	kanal_harness_destroy(&h);
	text = test_read_file(path, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_EQUAL(s_lines(text, lines, 4), 2);
	CU_ASSERT_STRING_EQUAL(lines[0], "{\"earlier\": true}");
	CU_ASSERT_PTR_NOT_NULL(strstr(lines[1], "\"e-1\""));
	kanal_msg_destroy(&m);
	free(text);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

static void test_line_format_is_compact_and_masks_cpr(void)
{
	char *dir = test_tmpdir("sink");
	char path[1024], subject[64], want[128], *text, *lines[4];
	const char *opts[] = { "path", path, "format", "line", NULL };
	kanal_harness_t *h;
	kanal_msg_t *a, *b;

	snprintf(path, sizeof path, "%s/out.txt", dir);
	h = s_sink("sink-1", opts);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	/* A subject must carry a pseudonym, never a CPR number — but if one slips through,
	 * the terminal must not show it. */
	snprintf(subject, sizeof subject, "note %s", k_cpr_hyphen);
	a = s_event("child.absence.reported", "e-1", subject, "{\"reason\": \"sick\"}");
	b = s_event("demo.tick", "e-2", NULL, "{\"n\": 2}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, a, NULL), KANAL_OUTCOME_OK);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, b, NULL), KANAL_OUTCOME_OK);
	kanal_harness_destroy(&h);

	text = test_read_file(path, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NULL(strstr(text, k_cpr_hyphen));
	CU_ASSERT_EQUAL_FATAL(s_lines(text, lines, 4), 2);
	snprintf(want, sizeof want, "2026-11-24T10:00:00.123Z child.absence.reported e-1 note %s",
		 k_cpr_masked);
	CU_ASSERT_STRING_EQUAL(lines[0], want);
	CU_ASSERT_STRING_EQUAL(lines[1], "2026-11-24T10:00:00.123Z demo.tick e-2 -");
	kanal_msg_destroy(&a);
	kanal_msg_destroy(&b);
	free(text);
	test_rmdir_r(dir);
	free(dir);
}

static void test_fail_type_is_rejected_with_the_reason(void)
{
	char *dir = test_tmpdir("sink");
	char path[1024], *text;
	const char *opts[] = { "path", path, "fail_type", "post.letter.send", NULL };
	kanal_harness_t *h;
	kanal_msg_t *bad, *good;

	snprintf(path, sizeof path, "%s/out.jsonl", dir);
	h = s_sink("digitalpost", opts);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	bad = s_event("post.letter.send", "l-1", NULL, "{}");
	good = s_event("post.letter.status", "s-1", NULL, "{}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(bad);
	CU_ASSERT_PTR_NOT_NULL_FATAL(good);

	CU_ASSERT_EQUAL(kanal_harness_deliver(h, bad, "letters"), KANAL_OUTCOME_REJECT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "post.letter.send"));
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "fail_type"));
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, good, "letters"), KANAL_OUTCOME_OK);
	CU_ASSERT_EQUAL(kanal_harness_metric(h, "received"), 2.0);
	CU_ASSERT_EQUAL(kanal_harness_metric(h, "rejected"), 1.0);
	kanal_harness_destroy(&h);

	text = test_read_file(path, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NULL(strstr(text, "\"l-1\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\"s-1\""));
	kanal_msg_destroy(&bad);
	kanal_msg_destroy(&good);
	free(text);
	test_rmdir_r(dir);
	free(dir);
}

static void test_retry_type_asks_for_a_retry_with_the_hint(void)
{
	char *dir = test_tmpdir("sink");
	char path[1024], *text;
	const char *opts[] = { "path",        path,     "retry_type", "calendar.event.upsert",
			       "retry_after", "2500ms", NULL };
	kanal_harness_t *h;
	kanal_msg_t *m;

	snprintf(path, sizeof path, "%s/out.jsonl", dir);
	h = s_sink("calendar", opts);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	m = s_event("calendar.event.upsert", "c-1", NULL, "{}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, NULL), KANAL_OUTCOME_RETRY);
	CU_ASSERT_EQUAL(kanal_harness_last_retry_after(h), 2500);
	CU_ASSERT_PTR_NOT_NULL(strstr(kanal_harness_last_error(h), "retry_type"));
	CU_ASSERT_EQUAL(kanal_harness_metric(h, "rejected"), 0.0);
	kanal_harness_destroy(&h);
	/* Nothing is recorded for an event the sink asked to get again. */
	text = test_read_file(path, NULL);
	CU_ASSERT_TRUE(text && !strstr(text, "\"c-1\""));
	kanal_msg_destroy(&m);
	free(text);
	test_rmdir_r(dir);
	free(dir);
}

static void test_delay_slows_every_event_and_fsync_still_records(void)
{
	char *dir = test_tmpdir("sink");
	char path[1024], *text, *lines[8];
	const char *opts[] = { "path", path, "delay", "30ms", "fsync", "true", NULL };
	kanal_harness_t *h;
	kanal_msg_t *m = s_event("demo.tick", "e-1", NULL, "{}");
	int64_t before;

	snprintf(path, sizeof path, "%s/out.jsonl", dir);
	h = s_sink("slow", opts);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	before = kanal_now_ms();
	for (int i = 0; i < 3; i++)
		CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, NULL), KANAL_OUTCOME_OK);
	CU_ASSERT_TRUE(kanal_now_ms() - before >= 90);
	kanal_harness_destroy(&h);
	text = test_read_file(path, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_EQUAL(s_lines(text, lines, 8), 3);
	kanal_msg_destroy(&m);
	free(text);
	test_rmdir_r(dir);
	free(dir);
}

/* One writer of the concurrency test: its own sink instance on its own thread. */
typedef struct writer {
	const char *path;
	const char *name;
	int events;
	int ok; /* deliveries answered OK */
} writer_t;

static void *s_writer(void *arg)
{
	writer_t *w = arg;
	const char *opts[] = { "path", w->path, NULL };
	kanal_harness_t *h = s_sink(w->name, opts);
	char *data = malloc(8192 + 32);
	char id[64];

	if (!h || !data)
		goto done;
	/* Lines of 8 KiB: longer than PIPE_BUF, so only one write(2) per line keeps them whole. */
	snprintf(data, 32, "{\"pad\": \"");
	memset(data + strlen(data), w->name[0], 8192);
	strcpy(data + 9 + 8192, "\"}");
	for (int i = 0; i < w->events; i++) {
		kanal_msg_t *m;
		snprintf(id, sizeof id, "%s-%d", w->name, i);
		m = s_event("demo.bulk", id, NULL, data);
		if (m && kanal_harness_deliver(h, m, NULL) == KANAL_OUTCOME_OK)
			w->ok++;
		kanal_msg_destroy(&m);
	}
done:
	free(data);
	kanal_harness_destroy(&h);
	return NULL;
}

static void test_concurrent_sinks_never_interleave_lines(void)
{
	char *dir = test_tmpdir("sink");
	char path[1024], *text, *p;
	writer_t w[2] = { { path, "alpha", 300, 0 }, { path, "beta", 300, 0 } };
	pthread_t t[2];
	size_t good = 0, total = 0;

	snprintf(path, sizeof path, "%s/shared.jsonl", dir);
	for (int i = 0; i < 2; i++)
		CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, s_writer, &w[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CU_ASSERT_EQUAL(w[0].ok, 300);
	CU_ASSERT_EQUAL(w[1].ok, 300);

	text = test_read_file(path, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	for (p = text; *p;) {
		char *nl = strchr(p, '\n');
		kanal_msg_t *m = NULL;
		if (!nl)
			break;
		total++;
		if (kanal_msg_parse(p, (size_t)(nl - p), 0, &m, NULL) == 0)
			good++;
		kanal_msg_destroy(&m);
		p = nl + 1;
	}
	CU_ASSERT_EQUAL(total, 600);
	CU_ASSERT_EQUAL(good, 600);
	CU_ASSERT_EQUAL(*p, '\0');
	free(text);
	test_rmdir_r(dir);
	free(dir);
}

/* Starts a sink with options kv and returns the start code, the error text in text. */
static int s_try_options(const char *const *kv, char *text, size_t size)
{
	kanal_error_t err;
	kanal_harness_t *h;
	int rc;

	kanal_error_clear(&err);
	h = kanal_harness_new(test_path("plugins/sink.so"), "bad", &err);
	if (!h)
		return 1;
	for (size_t i = 0; kv[i]; i += 2)
		kanal_harness_option(h, kv[i], kv[i + 1]);
	rc = kanal_harness_start(h, &err);
	snprintf(text, size, "%s", err.text);
	kanal_harness_destroy(&h);
	return rc;
}

static void test_bad_options_are_refused_with_the_option_named(void)
{
	char text[512];
	const char *format[] = { "format", "xml", NULL };
	const char *dir[] = { "path", "/nonexistent-kanal-dir/out.jsonl", NULL };
	const char *fsync[] = { "fsync", "sometimes", NULL };

	CU_ASSERT_EQUAL(s_try_options(format, text, sizeof text), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "format"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "xml"));
	CU_ASSERT_EQUAL(s_try_options(dir, text, sizeof text), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "/nonexistent-kanal-dir/out.jsonl"));
	CU_ASSERT_EQUAL(s_try_options(fsync, text, sizeof text), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "fsync"));
}

/* Delivers events i..j (ids r-i) to h; returns how many were OK. */
static int s_deliver_range(kanal_harness_t *h, int from, int to)
{
	int ok = 0;

	for (int i = from; i < to; i++) {
		char id[16];
		kanal_msg_t *m;
		snprintf(id, sizeof id, "r-%d", i);
		m = s_event("demo.tick", id, NULL, NULL);
		ok += m && kanal_harness_deliver(h, m, NULL) == KANAL_OUTCOME_OK;
		kanal_msg_destroy(&m);
	}
	return ok;
}

/* Retention: beyond max_events the oldest lines are purged (counted), and lines written
 * longer ago than max_age are purged at the next start; the file stays 0600. */
static void test_retention_purges_the_oldest(void)
{
	char *dir = test_tmpdir("sink-retention"), path[1024], *text, *lines[16];
	kanal_harness_t *h;
	struct stat st;
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	snprintf(path, sizeof path, "%s/unmatched.jsonl", dir);
	h = s_sink("unmatched", (const char *const[]){ "path", path, "max_events", "3", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_EQUAL(s_deliver_range(h, 0, 6), 6);
	/* At twice max_events the file is cut back to the newest three. */
	text = test_read_file(path, NULL);
	n = text ? s_lines(text, lines, 16) : 0;
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_PTR_NOT_NULL(n == 3 ? strstr(lines[0], "\"r-3\"") : NULL);
	CU_ASSERT_PTR_NOT_NULL(n == 3 ? strstr(lines[2], "\"r-5\"") : NULL);
	free(text);
	CU_ASSERT_EQUAL(kanal_harness_metric(h, "purged"), 3);
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	kanal_harness_destroy(&h);

	/* max_age: what was written more than a second ago is gone at the next start. */
	test_sleep_ms(1100);
	h = s_sink("unmatched", (const char *const[]){ "path", path, "max_age", "1s", NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	CU_ASSERT_EQUAL(kanal_harness_metric(h, "purged"), 3);
	CU_ASSERT_EQUAL(s_deliver_range(h, 6, 7), 1);
	text = test_read_file(path, NULL);
	n = text ? s_lines(text, lines, 16) : 0;
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_PTR_NOT_NULL(n == 1 ? strstr(lines[0], "\"r-6\"") : NULL);
	free(text);
	kanal_harness_destroy(&h);

	/* Standard output cannot be purged. */
	{
		kanal_error_t err;
		h = kanal_harness_new(test_path("plugins/sink.so"), "out", &err);
		CU_ASSERT_PTR_NOT_NULL_FATAL(h);
		kanal_harness_option(h, "max_events", "10");
		kanal_error_clear(&err);
		CU_ASSERT_NOT_EQUAL(kanal_harness_start(h, &err), 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "standard output"));
		kanal_harness_destroy(&h);
	}
	test_rmdir_r(dir);
	free(dir);
}

TEST_MAIN("plugin_sink", TEST(test_json_lines_round_trip_every_event_unmasked),
	  TEST(test_appends_to_an_existing_file), TEST(test_line_format_is_compact_and_masks_cpr),
	  TEST(test_fail_type_is_rejected_with_the_reason),
	  TEST(test_retry_type_asks_for_a_retry_with_the_hint),
	  TEST(test_delay_slows_every_event_and_fsync_still_records),
	  TEST(test_concurrent_sinks_never_interleave_lines),
	  TEST(test_bad_options_are_refused_with_the_option_named),
	  TEST(test_retention_purges_the_oldest))
