/*
 * tests/unit/test_config.c — plugin options (sdk/config.c): validation of an instance's
 * options against a table, with each error message checked exactly as the operator reads
 * it; defaults and getters; the duration, size and bool parsers; options-table checks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "test.h"
#include "host.h"

static const kanal_option_t s_table[] = {
	{ .name = "url", .type = KANAL_OPT_STRING, .required = true, .help = "Upstream URL." },
	{ .name = "interval",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "5s",
	  .help = "Poll interval." },
	{ .name = "retries", .type = KANAL_OPT_INT, .default_value = "3", .help = "Attempts." },
	{ .name = "ratio", .type = KANAL_OPT_DOUBLE, .default_value = "0.25", .help = "Share." },
	{ .name = "verbose", .type = KANAL_OPT_BOOL, .default_value = "false", .help = "Chatty." },
	{ .name = "max_body",
	  .type = KANAL_OPT_SIZE,
	  .default_value = "64KiB",
	  .help = "Largest body." },
	{ .name = "topics", .type = KANAL_OPT_LIST, .default_value = "[a, b]", .help = "Topics." },
	{ .name = "label", .type = KANAL_OPT_STRING, .help = "Optional, no default." },
	{ .name = NULL, .type = 0 },
};

#define FILE_ "conf/kanald.yaml"

/* A scalar given at line 10 + i, column 5. */
#define S(k, v)                                                                                    \
	{                                                                                          \
		.key = (k), .value = (v), .line = 10, .column = 5                                  \
	}

static const char *s_topics[] = { "x", "y" };

/* Builds with `given` and returns the formatted error ("" when the build succeeded). */
static const char *s_build_error(const kanal_optval_t *given, size_t n)
{
	static char line[1024];
	kanal_config_t *cfg = NULL;
	kanal_error_t err;
	int rc;

	kanal_error_clear(&err);
	rc = kanal__config_build(s_table, given, n, FILE_, "poller", 2, 3, &cfg, &err);
	if (rc == 0) {
		CU_ASSERT_PTR_NOT_NULL(cfg);
		kanal__config_destroy(&cfg);
		return "";
	}
	CU_ASSERT_EQUAL(rc, KANAL_ECONFIG);
	CU_ASSERT_PTR_NULL(cfg);
	kanal_error_format(&err, line, sizeof line);
	return line;
}

static void test_option_errors_are_exact(void)
{
	static const struct {
		kanal_optval_t given[3];
		size_t n;
		const char *expected;
	} cases[] = {
		{ { S("url", "http://x"), S("intervall", "5s") },
		  2,
		  FILE_ ":10:5: error: instance 'poller': unknown option 'intervall' "
			"(did you mean 'interval'?)" },
		{ { S("url", "http://x"), S("foo", "1") },
		  2,
		  FILE_ ":10:5: error: instance 'poller': unknown option 'foo' (options: url, "
			"interval, retries, ratio, verbose, max_body, topics, label)" },
		{ { S("url", "http://x"), S("interval", "soon") },
		  2,
		  FILE_ ":10:5: error: instance 'poller': option 'interval' expects a duration "
			"like 250ms, 2s or 5m, got 'soon'" },
		{ { S("url", "http://x"), S("retries", "three") },
		  2,
		  FILE_ ":10:5: error: instance 'poller': option 'retries' expects an integer, "
			"got 'three'" },
		{ { S("url", "http://x"), S("retries", "99999999999999999999") },
		  2,
		  FILE_ ":10:5: error: instance 'poller': option 'retries' expects an integer, "
			"got '99999999999999999999'" },
		{ { S("url", "http://x"), S("ratio", "nan") },
		  2,
		  FILE_ ":10:5: error: instance 'poller': option 'ratio' expects a number like "
			"0.5, got 'nan'" },
		{ { S("url", "http://x"), S("verbose", "maybe") },
		  2,
		  FILE_ ":10:5: error: instance 'poller': option 'verbose' expects true or false, "
			"got 'maybe'" },
		{ { S("url", "http://x"), S("max_body", "12XB") },
		  2,
		  FILE_ ":10:5: error: instance 'poller': option 'max_body' expects a size like "
			"512, 64KiB or 8MiB, got '12XB'" },
		{ { { .key = "url",
		      .items = s_topics,
		      .n_items = 2,
		      .is_list = true,
		      .line = 7,
		      .column = 3 } },
		  1,
		  FILE_
		  ":7:3: error: instance 'poller': option 'url' expects a string, got a list" },
		{ { S("url", "http://x"), S("topics", "x") },
		  2,
		  FILE_ ":10:5: error: instance 'poller': option 'topics' expects a list like "
			"[a, b], got a single value 'x'" },
		{ { S("interval", "1s") },
		  1,
		  FILE_ ":2:3: error: instance 'poller': missing required option 'url' (string)" },
		{ { { .key = "url", .value = "a", .line = 4, .column = 3 },
		    { .key = "url", .value = "b", .line = 5, .column = 3 } },
		  2,
		  FILE_ ":5:3: error: instance 'poller': option 'url' is given twice (first at "
			"line 4)" },
		/* First error wins: the unknown key comes before the bad value. */
		{ { S("url", "http://x"), S("bogus", "1"), S("interval", "soon") },
		  3,
		  FILE_ ":10:5: error: instance 'poller': unknown option 'bogus' (options: url, "
			"interval, retries, ratio, verbose, max_body, topics, label)" },
		/* A quoted value is masked (CPR) and cut short. */
		{ { S("url", "http://x"), S("retries", "ref-1503851233") },
		  2,
		  FILE_ ":10:5: error: instance 'poller': option 'retries' expects an integer, "
			"got 'ref-150385XXXX'" },
		{ { S("url", "http://x"),
		    S("retries",
		      "0123456789012345678901234567890123456789012345678901234567890123456789") },
		  2,
		  FILE_ ":10:5: error: instance 'poller': option 'retries' expects an integer, "
			"got '012345678901234567890123456789012345678901234567890123456789...'" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *got = s_build_error(cases[i].given, cases[i].n);
		if (strcmp(got, cases[i].expected) != 0) {
			char shown[1024];
			/* Never print a clear CPR number, even when masking is what failed. */
			snprintf(shown, sizeof shown, "%s", got);
			kanal_cpr_redact_inplace(shown);
			printf("\n  case %zu:\n    got      %s\n    expected %s\n", i, shown,
			       cases[i].expected);
		}
		CU_ASSERT_STRING_EQUAL(got, cases[i].expected);
	}
}

static void test_unknown_option_without_table(void)
{
	kanal_optval_t given[] = { S("foo", "1") };
	kanal_config_t *cfg = NULL;
	kanal_error_t err;
	char line[512];

	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kanal__config_build(NULL, given, 1, FILE_, "sink-1", 0, 0, &cfg, &err),
			KANAL_ECONFIG);
	kanal_error_format(&err, line, sizeof line);
	CU_ASSERT_STRING_EQUAL(line, FILE_ ":10:5: error: instance 'sink-1': unknown option "
					   "'foo' (the plugin takes no options)");
	/* No table and nothing given is a valid, empty config. */
	CU_ASSERT_EQUAL(kanal__config_build(NULL, NULL, 0, FILE_, "sink-1", 0, 0, &cfg, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(cfg);
	CU_ASSERT_PTR_NULL(kanal_config_string(cfg, "anything"));
	kanal__config_destroy(&cfg);
	CU_ASSERT_PTR_NULL(cfg);
}

static void test_defaults_and_getters(void)
{
	kanal_optval_t given[] = {
		S("url", "http://upstream"),
		S("retries", "-7"),
		S("max_body", "8MiB"),
		S("verbose", "yes"),
	};
	kanal_config_t *cfg = NULL;

	CU_ASSERT_EQUAL_FATAL(
		kanal__config_build(s_table, given, 4, FILE_, "poller", 1, 1, &cfg, NULL), 0);
	CU_ASSERT_STRING_EQUAL(kanal_config_string(cfg, "url"), "http://upstream");
	CU_ASSERT_EQUAL(kanal_config_duration_ms(cfg, "interval"), 5000); /* default */
	CU_ASSERT_EQUAL(kanal_config_int(cfg, "retries"), -7);
	CU_ASSERT_DOUBLE_EQUAL(kanal_config_double(cfg, "ratio"), 0.25, 1e-12);
	CU_ASSERT_TRUE(kanal_config_bool(cfg, "verbose"));
	CU_ASSERT_EQUAL(kanal_config_int(cfg, "max_body"), 8 * 1024 * 1024);
	CU_ASSERT_EQUAL(kanal_config_list_count(cfg, "topics"), 2);
	CU_ASSERT_STRING_EQUAL(kanal_config_list(cfg, "topics", 0), "a");
	CU_ASSERT_STRING_EQUAL(kanal_config_list(cfg, "topics", 1), "b");
	CU_ASSERT_PTR_NULL(kanal_config_list(cfg, "topics", 2));
	CU_ASSERT_TRUE(kanal_config_given(cfg, "url"));
	CU_ASSERT_FALSE(kanal_config_given(cfg, "interval"));
	/* Optional without default: the fallback. */
	CU_ASSERT_PTR_NULL(kanal_config_string(cfg, "label"));
	/* Undeclared names and mismatched types: fallbacks. */
	CU_ASSERT_PTR_NULL(kanal_config_string(cfg, "nope"));
	CU_ASSERT_EQUAL(kanal_config_int(cfg, "nope"), 0);
	CU_ASSERT_EQUAL(kanal_config_int(cfg, "interval"), 0);
	CU_ASSERT_PTR_NULL(kanal_config_string(cfg, "retries"));
	CU_ASSERT_FALSE(kanal_config_bool(cfg, "url"));
	CU_ASSERT_DOUBLE_EQUAL(kanal_config_double(cfg, "retries"), 0.0, 1e-12);
	CU_ASSERT_EQUAL(kanal_config_duration_ms(cfg, "retries"), 0);
	CU_ASSERT_EQUAL(kanal_config_list_count(cfg, "url"), 0);
	CU_ASSERT_FALSE(kanal_config_given(cfg, "nope"));
	CU_ASSERT_EQUAL(kanal_config_int(NULL, "retries"), 0);
	kanal__config_destroy(&cfg);
}

static void test_list_given_replaces_default(void)
{
	const char *items[] = { "child.*", "staff.>", "" };
	kanal_optval_t given[] = {
		S("url", "u"),
		{ .key = "topics", .items = items, .n_items = 3, .is_list = true },
	};
	kanal_config_t *cfg = NULL;

	CU_ASSERT_EQUAL_FATAL(kanal__config_build(s_table, given, 2, FILE_, "p", 1, 1, &cfg, NULL),
			      0);
	CU_ASSERT_EQUAL(kanal_config_list_count(cfg, "topics"), 3);
	CU_ASSERT_STRING_EQUAL(kanal_config_list(cfg, "topics", 1), "staff.>");
	CU_ASSERT_STRING_EQUAL(kanal_config_list(cfg, "topics", 2), "");
	CU_ASSERT_TRUE(kanal_config_given(cfg, "topics"));
	kanal__config_destroy(&cfg);
}

static void test_parse_duration(void)
{
	static const struct {
		const char *text;
		int64_t ms;
	} good[] = {
		{ "250ms", 250 },
		{ "2s", 2000 },
		{ "1.5s", 1500 },
		{ "5m", 300000 },
		{ "1h", 3600000 },
		{ "1d", 86400000 },
		{ "0", 0 },
		{ "42", 42 },
		{ "0.25s", 250 },
		{ "0.5m", 30000 },
		{ "100000d", 8640000000000LL },
	};
	static const char *bad[] = {
		"",
		"soon",
		"-1s",
		"1.5ms",
		"2 s",
		" 2s",
		"s",
		"1.",
		".",
		"5M",
		"1s2",
		"0.0001s",
		"999999999999999999d",
		"1e3",
		"+5s",
	};
	int64_t v;

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		v = -1;
		CU_ASSERT_EQUAL(kanal__parse_duration_ms(good[i].text, &v), 0);
		CU_ASSERT_EQUAL(v, good[i].ms);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (kanal__parse_duration_ms(bad[i], &v) != KANAL_EINVAL)
			printf("\n  accepted bad duration '%s'\n", bad[i]);
		CU_ASSERT_EQUAL(kanal__parse_duration_ms(bad[i], &v), KANAL_EINVAL);
	}
	CU_ASSERT_EQUAL(kanal__parse_duration_ms(NULL, &v), KANAL_EINVAL);
}

static void test_parse_size(void)
{
	static const struct {
		const char *text;
		int64_t bytes;
	} good[] = {
		{ "512", 512 },
		{ "64KiB", 65536 },
		{ "8MiB", 8388608 },
		{ "1GiB", 1073741824 },
		{ "64KB", 64000 },
		{ "2MB", 2000000 },
		{ "1.5KiB", 1536 },
		{ "10B", 10 },
		{ "64kib", 65536 },
		{ "0", 0 },
		{ "1TiB", 1099511627776LL },
	};
	static const char *bad[] = {
		"", "64XB", "-1", "1.3B", "KiB", "64 KiB", "1.", "99999999999TiB", "0x10",
	};
	int64_t v;

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		v = -1;
		CU_ASSERT_EQUAL(kanal__parse_size(good[i].text, &v), 0);
		CU_ASSERT_EQUAL(v, good[i].bytes);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (kanal__parse_size(bad[i], &v) != KANAL_EINVAL)
			printf("\n  accepted bad size '%s'\n", bad[i]);
		CU_ASSERT_EQUAL(kanal__parse_size(bad[i], &v), KANAL_EINVAL);
	}
}

static void test_parse_bool(void)
{
	bool b = false;

	CU_ASSERT_EQUAL(kanal__parse_bool("true", &b), 0);
	CU_ASSERT_TRUE(b);
	CU_ASSERT_EQUAL(kanal__parse_bool("off", &b), 0);
	CU_ASSERT_FALSE(b);
	CU_ASSERT_EQUAL(kanal__parse_bool("Yes", &b), 0);
	CU_ASSERT_TRUE(b);
	CU_ASSERT_EQUAL(kanal__parse_bool("no", &b), 0);
	CU_ASSERT_FALSE(b);
	CU_ASSERT_EQUAL(kanal__parse_bool("1", &b), KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal__parse_bool("", &b), KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal__parse_bool("truth", &b), KANAL_EINVAL);
}

static void test_options_table_checks(void)
{
	static const char *const colours[] = { "red", "green", NULL };
	static const kanal_option_t bad_name[] = {
		{ .name = "Poll-Interval", .type = KANAL_OPT_DURATION }, { .name = NULL }
	};
	static const kanal_option_t empty_name[] = { { .name = "", .type = KANAL_OPT_STRING },
						     { .name = NULL } };
	static const kanal_option_t bad_type[] = { { .name = "a", .type = 0 }, { .name = NULL } };
	static const kanal_option_t req_default[] = {
		{ .name = "a", .type = KANAL_OPT_INT, .default_value = "1", .required = true },
		{ .name = NULL }
	};
	static const kanal_option_t bad_default[] = {
		{ .name = "t", .type = KANAL_OPT_DURATION, .default_value = "soon" },
		{ .name = NULL }
	};
	static const kanal_option_t bad_list[] = {
		{ .name = "l", .type = KANAL_OPT_LIST, .default_value = "[a, b" }, { .name = NULL }
	};
	static const kanal_option_t twice[] = { { .name = "a", .type = KANAL_OPT_INT },
						{ .name = "a", .type = KANAL_OPT_BOOL },
						{ .name = NULL } };
	static const kanal_option_t range_on_string[] = {
		{ .name = "s", .type = KANAL_OPT_STRING, .min = "1" }, { .name = NULL }
	};
	static const kanal_option_t allowed_on_int[] = {
		{ .name = "n", .type = KANAL_OPT_INT, .allowed = colours }, { .name = NULL }
	};
	static const kanal_option_t bad_min[] = {
		{ .name = "t", .type = KANAL_OPT_DURATION, .min = "soon" }, { .name = NULL }
	};
	static const kanal_option_t min_above_max[] = {
		{ .name = "t", .type = KANAL_OPT_DURATION, .min = "2s", .max = "1s" },
		{ .name = NULL }
	};
	static const kanal_option_t default_out_of_range[] = {
		{ .name = "n", .type = KANAL_OPT_INT, .default_value = "0", .min = "1" },
		{ .name = NULL }
	};
	static const kanal_option_t default_not_allowed[] = { { .name = "c",
								.type = KANAL_OPT_STRING,
								.default_value = "blue",
								.allowed = colours },
							      { .name = NULL } };
	static const struct {
		const kanal_option_t *table;
		const char *why;
	} cases[] = {
		{ bad_name, "option #1 has an invalid name 'Poll-Interval' (use 1-64 of a-z, 0-9 "
			    "and _)" },
		{ empty_name, "option #1 has an invalid name '' (use 1-64 of a-z, 0-9 and _)" },
		{ bad_type, "option 'a' has an unknown type (0)" },
		{ req_default, "option 'a' is required and also has a default ('1'): a required "
			       "option cannot have one" },
		{ bad_default, "option 't' has an invalid default 'soon': expected a duration like "
			       "250ms, 2s or 5m" },
		{ bad_list, "option 'l' has an invalid default '[a, b': expected a list like "
			    "[a, b]" },
		{ twice, "option 'a' is declared twice" },
		{ range_on_string,
		  "option 's' has min or max, which an option of type string cannot have" },
		{ allowed_on_int, "option 'n' has allowed values, which an option of type int "
				  "cannot have" },
		{ bad_min, "option 't' has an invalid min 'soon': expected a duration like 250ms, "
			   "2s or 5m" },
		{ min_above_max, "option 't' has min '2s' above its max '1s'" },
		{ default_out_of_range, "option 'n' has a default '0' outside its own bounds" },
		{ default_not_allowed, "option 'c' has a default 'blue' outside its own bounds" },
	};
	char why[512];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CU_ASSERT_EQUAL(kanal__options_check(cases[i].table, why, sizeof why),
				KANAL_EINVAL);
		if (strcmp(why, cases[i].why) != 0)
			printf("\n  case %zu: got '%s'\n", i, why);
		CU_ASSERT_STRING_EQUAL(why, cases[i].why);
	}
	CU_ASSERT_EQUAL(kanal__options_check(s_table, why, sizeof why), 0);
	CU_ASSERT_EQUAL(kanal__options_check(NULL, why, sizeof why), 0);
}

static void test_type_names(void)
{
	CU_ASSERT_STRING_EQUAL(kanal_opt_type_name(KANAL_OPT_STRING), "string");
	CU_ASSERT_STRING_EQUAL(kanal_opt_type_name(KANAL_OPT_INT), "int");
	CU_ASSERT_STRING_EQUAL(kanal_opt_type_name(KANAL_OPT_DOUBLE), "double");
	CU_ASSERT_STRING_EQUAL(kanal_opt_type_name(KANAL_OPT_BOOL), "bool");
	CU_ASSERT_STRING_EQUAL(kanal_opt_type_name(KANAL_OPT_DURATION), "duration");
	CU_ASSERT_STRING_EQUAL(kanal_opt_type_name(KANAL_OPT_SIZE), "size");
	CU_ASSERT_STRING_EQUAL(kanal_opt_type_name(KANAL_OPT_LIST), "list");
	CU_ASSERT_STRING_EQUAL(kanal_opt_type_name((kanal_opt_type_t)99), "unknown");
}

static void test_clocks(void)
{
	char buf[40];
	int64_t wall = kanal__wall_ms();
	int64_t now = (int64_t)time(NULL) * 1000;
	int y, mo, d, h, mi, s, ms;
	char z = 0;

	CU_ASSERT_TRUE(wall >= now - 2000 && wall <= now + 2000);
	CU_ASSERT_EQUAL(kanal_time_rfc3339(kanal__wall_ms(), buf, sizeof buf), 0);
	CU_ASSERT_EQUAL(strlen(buf), 24); /* 2026-11-24T10:00:00.123Z */
	CU_ASSERT_EQUAL(
		sscanf(buf, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &s, &ms, &z), 8);
	CU_ASSERT_EQUAL(z, 'Z');
	CU_ASSERT_TRUE(y >= 2024 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31);
}

/* ---- ABI 1.1: bounds, every error at once, undeclared names, binding ---------------------- */

static const char *const s_formats[] = { "json", "line", NULL };

typedef struct bound_state {
	int64_t interval_ms;
	int64_t retries;
	double ratio;
	bool verbose;
	int64_t max_body;
	const char *format;
	kanal_strlist_t topics;
	const char *label;
	int untouched;
} bound_state_t;

static const kanal_option_t s_bounded[] = {
	{ .name = "interval",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "5s",
	  .min = "1s",
	  .max = "1h",
	  KANAL_OPT_AT(bound_state_t, interval_ms) },
	{ .name = "retries",
	  .type = KANAL_OPT_INT,
	  .default_value = "3",
	  .min = "0",
	  .max = "10",
	  KANAL_OPT_AT(bound_state_t, retries) },
	{ .name = "ratio",
	  .type = KANAL_OPT_DOUBLE,
	  .default_value = "0.25",
	  .min = "0",
	  .max = "1",
	  KANAL_OPT_AT(bound_state_t, ratio) },
	{ .name = "verbose",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "false",
	  KANAL_OPT_AT(bound_state_t, verbose) },
	{ .name = "max_body",
	  .type = KANAL_OPT_SIZE,
	  .default_value = "64KiB",
	  .max = "8MiB",
	  KANAL_OPT_AT(bound_state_t, max_body) },
	{ .name = "format",
	  .type = KANAL_OPT_STRING,
	  .default_value = "json",
	  .allowed = s_formats,
	  KANAL_OPT_AT(bound_state_t, format) },
	{ .name = "topics",
	  .type = KANAL_OPT_LIST,
	  .default_value = "[json]",
	  .allowed = s_formats,
	  KANAL_OPT_AT(bound_state_t, topics) },
	{ .name = "label", .type = KANAL_OPT_STRING, KANAL_OPT_AT(bound_state_t, label) },
	{ .name = NULL },
};

/* Collects every error of a build, formatted, one per line. */
typedef struct collected {
	char text[4096];
	size_t count;
} collected_t;

static void s_collect(void *arg, const kanal_error_t *err)
{
	collected_t *c = arg;
	size_t used = strlen(c->text);

	kanal_error_format(err, c->text + used, sizeof c->text - used);
	used = strlen(c->text);
	if (used + 1 < sizeof c->text)
		strcpy(c->text + used, "\n");
	c->count++;
}

static void test_bounds_are_enforced(void)
{
	static const char *bad_topics[] = { "json", "xml" };
	static const struct {
		kanal_optval_t given;
		const char *expected;
	} cases[] = {
		{ S("interval", "500ms"),
		  FILE_ ":10:5: error: instance 'poller': option 'interval' "
			"must be at least 1s, got '500ms'" },
		{ S("interval", "2h"), FILE_ ":10:5: error: instance 'poller': option 'interval' "
					     "must be at most 1h, got '2h'" },
		{ S("retries", "-1"),
		  FILE_ ":10:5: error: instance 'poller': option 'retries' must "
			"be at least 0, got '-1'" },
		{ S("ratio", "1.5"),
		  FILE_ ":10:5: error: instance 'poller': option 'ratio' must be "
			"at most 1, got '1.5'" },
		{ S("max_body", "9MiB"), FILE_ ":10:5: error: instance 'poller': option 'max_body' "
					       "must be at most 8MiB, got '9MiB'" },
		{ S("format", "xml"),
		  FILE_ ":10:5: error: instance 'poller': option 'format' must be "
			"one of json, line; got 'xml'" },
		{ { .key = "topics",
		    .items = bad_topics,
		    .n_items = 2,
		    .is_list = true,
		    .line = 10,
		    .column = 5 },
		  FILE_ ":10:5: error: instance 'poller': option 'topics' must be "
			"one of json, line; got 'xml'" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		collected_t c = { { 0 }, 0 };
		kanal_config_t *cfg = NULL;
		char expected[600];

		CU_ASSERT_EQUAL(kanal__config_build_all(s_bounded, &cases[i].given, 1, FILE_,
							"poller", 2, 3, &cfg, s_collect, &c),
				KANAL_ECONFIG);
		CU_ASSERT_PTR_NULL(cfg);
		snprintf(expected, sizeof expected, "%s\n", cases[i].expected);
		if (strcmp(c.text, expected) != 0)
			printf("\n  case %zu:\n    got      %s    expected %s", i, c.text,
			       expected);
		CU_ASSERT_STRING_EQUAL(c.text, expected);
	}
	/* The edges themselves are allowed. */
	{
		kanal_optval_t edges[] = { S("interval", "1s"), S("retries", "10"), S("ratio", "0"),
					   S("format", "line") };
		kanal_config_t *cfg = NULL;

		CU_ASSERT_EQUAL(
			kanal__config_build(s_bounded, edges, 4, FILE_, "poller", 2, 3, &cfg, NULL),
			0);
		kanal__config_destroy(&cfg);
	}
}

static void test_every_bad_option_is_reported(void)
{
	kanal_optval_t given[] = {
		{ .key = "intervall", .value = "5s", .line = 7, .column = 5 },
		{ .key = "retries", .value = "many", .line = 8, .column = 5 },
		{ .key = "ratio", .value = "0.5", .line = 9, .column = 5 },
		{ .key = "format", .value = "xml", .line = 11, .column = 5 },
	};
	collected_t c = { { 0 }, 0 };
	kanal_config_t *cfg = NULL;
	kanal_error_t first;

	CU_ASSERT_EQUAL(kanal__config_build_all(s_bounded, given, 4, FILE_, "poller", 2, 3, &cfg,
						s_collect, &c),
			KANAL_ECONFIG);
	CU_ASSERT_PTR_NULL(cfg);
	CU_ASSERT_EQUAL(c.count, 3);
	CU_ASSERT_STRING_EQUAL(
		c.text,
		FILE_ ":7:5: error: instance 'poller': unknown option 'intervall' (did you mean "
		      "'interval'?)\n" FILE_
		      ":8:5: error: instance 'poller': option 'retries' expects an integer, got "
		      "'many'\n" FILE_
		      ":11:5: error: instance 'poller': option 'format' must be one of json, line; "
		      "got 'xml'\n");
	/* kanal__config_build keeps the first of them. */
	kanal_error_clear(&first);
	CU_ASSERT_EQUAL(
		kanal__config_build(s_bounded, given, 4, FILE_, "poller", 2, 3, &cfg, &first),
		KANAL_ECONFIG);
	CU_ASSERT_EQUAL(first.line, 7);
}

/* Runs fn with standard error going to a file; returns what it wrote (free it). */
static char *s_stderr_of(void (*fn)(const kanal_config_t *), const kanal_config_t *cfg)
{
	char *dir = test_tmpdir("config-stderr"), *path = NULL, *text = NULL;
	int saved = dup(2), fd = -1;

	REQUIRE(asprintf(&path, "%s/err", dir) >= 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	REQUIRE(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	fn(cfg);
	fflush(stderr);
	dup2(saved, 2);
	text = test_read_file(path, NULL);
done:
	if (saved >= 0)
		close(saved);
	if (fd >= 0)
		close(fd);
	test_rmdir_r(dir);
	free(dir);
	free(path);
	return text;
}

static void s_ask_undeclared(const kanal_config_t *cfg)
{
	CU_ASSERT_PTR_NULL(kanal_config_string(cfg, "nope"));
	CU_ASSERT_EQUAL(kanal_config_has(cfg, "nope"), KANAL_EINVAL);
}

static void s_ask_declared(const kanal_config_t *cfg)
{
	CU_ASSERT_EQUAL(kanal_config_has(cfg, "format"), 0);
	CU_ASSERT_STRING_EQUAL(kanal_config_string(cfg, "format"), "json");
}

static void test_undeclared_option_is_an_error(void)
{
	kanal_config_t *cfg = NULL;
	char *text;

	REQUIRE(kanal__config_build(s_bounded, NULL, 0, FILE_, "poller", 2, 3, &cfg, NULL) == 0);
	text = s_stderr_of(s_ask_undeclared, cfg);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, " error poller: the plugin asked for option "
						    "'nope', which its options table does not "
						    "declare\n"));
	free(text);
	text = s_stderr_of(s_ask_declared, cfg);
	CU_ASSERT_STRING_EQUAL(text ? text : "?", "");
	free(text);
done:
	kanal__config_destroy(&cfg);
}

static void test_bind_fills_the_state(void)
{
	const char *topics[] = { "line", "json" };
	kanal_optval_t given[] = {
		S("interval", "2m"),
		S("verbose", "on"),
		S("format", "line"),
		{ .key = "topics", .items = topics, .n_items = 2, .is_list = true },
	};
	bound_state_t st = { .label = "kept", .untouched = 42 };
	kanal_config_t *cfg = NULL;

	REQUIRE(kanal__config_build(s_bounded, given, 4, FILE_, "poller", 2, 3, &cfg, NULL) == 0);
	CU_ASSERT_EQUAL(kanal_config_bind(cfg, &st), 0);
	CU_ASSERT_EQUAL(st.interval_ms, 120000);
	CU_ASSERT_EQUAL(st.retries, 3);
	CU_ASSERT_DOUBLE_EQUAL(st.ratio, 0.25, 1e-12);
	CU_ASSERT_TRUE(st.verbose);
	CU_ASSERT_EQUAL(st.max_body, 64 * 1024);
	CU_ASSERT_STRING_EQUAL(st.format, "line");
	CU_ASSERT_EQUAL(st.topics.count, 2);
	CU_ASSERT_STRING_EQUAL(st.topics.items[0], "line");
	CU_ASSERT_STRING_EQUAL(st.topics.items[1], "json");
	/* An option without a value leaves its field alone; so is what no option names. */
	CU_ASSERT_STRING_EQUAL(st.label, "kept");
	CU_ASSERT_EQUAL(st.untouched, 42);
	CU_ASSERT_EQUAL(kanal_config_bind(NULL, &st), KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal_config_bind(cfg, NULL), KANAL_EINVAL);
done:
	kanal__config_destroy(&cfg);
}

TEST_MAIN("config", TEST(test_option_errors_are_exact), TEST(test_unknown_option_without_table),
	  TEST(test_defaults_and_getters), TEST(test_list_given_replaces_default),
	  TEST(test_parse_duration), TEST(test_parse_size), TEST(test_parse_bool),
	  TEST(test_options_table_checks), TEST(test_type_names), TEST(test_clocks),
	  TEST(test_bounds_are_enforced), TEST(test_every_bad_option_is_reported),
	  TEST(test_undeclared_option_is_an_error), TEST(test_bind_fills_the_state))
