/*
 * tests/unit/test_config.c — plugin options (sdk/config.c): validation of an instance's
 * options against a table, with each error message checked exactly as the operator reads
 * it; defaults and getters; the duration, size and bool parsers; options-table checks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "host.h"

static const kanal_option_t s_table[] = {
	{ "url", KANAL_OPT_STRING, NULL, true, "Upstream URL." },
	{ "interval", KANAL_OPT_DURATION, "5s", false, "Poll interval." },
	{ "retries", KANAL_OPT_INT, "3", false, "Attempts." },
	{ "ratio", KANAL_OPT_DOUBLE, "0.25", false, "Share." },
	{ "verbose", KANAL_OPT_BOOL, "false", false, "Chatty." },
	{ "max_body", KANAL_OPT_SIZE, "64KiB", false, "Largest body." },
	{ "topics", KANAL_OPT_LIST, "[a, b]", false, "Topics." },
	{ "label", KANAL_OPT_STRING, NULL, false, "Optional, no default." },
	{ NULL, 0, NULL, false, NULL },
};

#define FILE_ "conf/kanald.yaml"

/* A scalar given at line 10 + i, column 5. */
#define S(k, v) { .key = (k), .value = (v), .line = 10, .column = 5 }

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
		{ { S("url", "http://x"), S("intervall", "5s") }, 2,
		  FILE_ ":10:5: error: instance 'poller': unknown option 'intervall' "
		  "(did you mean 'interval'?)" },
		{ { S("url", "http://x"), S("foo", "1") }, 2,
		  FILE_ ":10:5: error: instance 'poller': unknown option 'foo' (options: url, "
		  "interval, retries, ratio, verbose, max_body, topics, label)" },
		{ { S("url", "http://x"), S("interval", "soon") }, 2,
		  FILE_ ":10:5: error: instance 'poller': option 'interval' expects a duration "
		  "like 250ms, 2s or 5m, got 'soon'" },
		{ { S("url", "http://x"), S("retries", "three") }, 2,
		  FILE_ ":10:5: error: instance 'poller': option 'retries' expects an integer, "
		  "got 'three'" },
		{ { S("url", "http://x"), S("retries", "99999999999999999999") }, 2,
		  FILE_ ":10:5: error: instance 'poller': option 'retries' expects an integer, "
		  "got '99999999999999999999'" },
		{ { S("url", "http://x"), S("ratio", "nan") }, 2,
		  FILE_ ":10:5: error: instance 'poller': option 'ratio' expects a number like "
		  "0.5, got 'nan'" },
		{ { S("url", "http://x"), S("verbose", "maybe") }, 2,
		  FILE_ ":10:5: error: instance 'poller': option 'verbose' expects true or false, "
		  "got 'maybe'" },
		{ { S("url", "http://x"), S("max_body", "12XB") }, 2,
		  FILE_ ":10:5: error: instance 'poller': option 'max_body' expects a size like "
		  "512, 64KiB or 8MiB, got '12XB'" },
		{ { { .key = "url", .items = s_topics, .n_items = 2, .is_list = true, .line = 7,
		      .column = 3 } }, 1,
		  FILE_ ":7:3: error: instance 'poller': option 'url' expects a string, got a list" },
		{ { S("url", "http://x"), S("topics", "x") }, 2,
		  FILE_ ":10:5: error: instance 'poller': option 'topics' expects a list like "
		  "[a, b], got a single value 'x'" },
		{ { S("interval", "1s") }, 1,
		  FILE_ ":2:3: error: instance 'poller': missing required option 'url' (string)" },
		{ { { .key = "url", .value = "a", .line = 4, .column = 3 },
		    { .key = "url", .value = "b", .line = 5, .column = 3 } }, 2,
		  FILE_ ":5:3: error: instance 'poller': option 'url' is given twice (first at "
		  "line 4)" },
		/* First error wins: the unknown key comes before the bad value. */
		{ { S("url", "http://x"), S("bogus", "1"), S("interval", "soon") }, 3,
		  FILE_ ":10:5: error: instance 'poller': unknown option 'bogus' (options: url, "
		  "interval, retries, ratio, verbose, max_body, topics, label)" },
		/* A quoted value is masked (CPR) and cut short. */
		{ { S("url", "http://x"), S("retries", "ref-1503851233") }, 2,
		  FILE_ ":10:5: error: instance 'poller': option 'retries' expects an integer, "
		  "got 'ref-150385XXXX'" },
		{ { S("url", "http://x"),
		    S("retries", "0123456789012345678901234567890123456789012345678901234567890123456789") }, 2,
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

	CU_ASSERT_EQUAL_FATAL(kanal__config_build(s_table, given, 4, FILE_, "poller", 1, 1, &cfg,
						  NULL), 0);
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
	static const struct { const char *text; int64_t ms; } good[] = {
		{ "250ms", 250 }, { "2s", 2000 }, { "1.5s", 1500 }, { "5m", 300000 },
		{ "1h", 3600000 }, { "1d", 86400000 }, { "0", 0 }, { "42", 42 },
		{ "0.25s", 250 }, { "0.5m", 30000 }, { "100000d", 8640000000000LL },
	};
	static const char *bad[] = {
		"", "soon", "-1s", "1.5ms", "2 s", " 2s", "s", "1.", ".", "5M", "1s2",
		"0.0001s", "999999999999999999d", "1e3", "+5s",
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
	static const struct { const char *text; int64_t bytes; } good[] = {
		{ "512", 512 }, { "64KiB", 65536 }, { "8MiB", 8388608 }, { "1GiB", 1073741824 },
		{ "64KB", 64000 }, { "2MB", 2000000 }, { "1.5KiB", 1536 }, { "10B", 10 },
		{ "64kib", 65536 }, { "0", 0 }, { "1TiB", 1099511627776LL },
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
	static const kanal_option_t bad_name[] = { { "Poll-Interval", KANAL_OPT_DURATION, NULL,
						     false, NULL }, { NULL, 0, NULL, false, NULL } };
	static const kanal_option_t empty_name[] = { { "", KANAL_OPT_STRING, NULL, false, NULL },
						     { NULL, 0, NULL, false, NULL } };
	static const kanal_option_t bad_type[] = { { "a", 0, NULL, false, NULL },
						   { NULL, 0, NULL, false, NULL } };
	static const kanal_option_t req_default[] = { { "a", KANAL_OPT_INT, "1", true, NULL },
						      { NULL, 0, NULL, false, NULL } };
	static const kanal_option_t bad_default[] = { { "t", KANAL_OPT_DURATION, "soon", false,
							NULL }, { NULL, 0, NULL, false, NULL } };
	static const kanal_option_t bad_list[] = { { "l", KANAL_OPT_LIST, "[a, b", false, NULL },
						   { NULL, 0, NULL, false, NULL } };
	static const kanal_option_t twice[] = { { "a", KANAL_OPT_INT, NULL, false, NULL },
						{ "a", KANAL_OPT_BOOL, NULL, false, NULL },
						{ NULL, 0, NULL, false, NULL } };
	static const struct { const kanal_option_t *table; const char *why; } cases[] = {
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
	};
	char why[512];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CU_ASSERT_EQUAL(kanal__options_check(cases[i].table, why, sizeof why), KANAL_EINVAL);
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
	CU_ASSERT_EQUAL(sscanf(buf, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &s,
			       &ms, &z), 8);
	CU_ASSERT_EQUAL(z, 'Z');
	CU_ASSERT_TRUE(y >= 2024 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31);
}

TEST_MAIN("config",
	  TEST(test_option_errors_are_exact),
	  TEST(test_unknown_option_without_table),
	  TEST(test_defaults_and_getters),
	  TEST(test_list_given_replaces_default),
	  TEST(test_parse_duration),
	  TEST(test_parse_size),
	  TEST(test_parse_bool),
	  TEST(test_options_table_checks),
	  TEST(test_type_names),
	  TEST(test_clocks))
