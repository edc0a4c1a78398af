/*
 * tests/unit/test_fuzz_regressions.c — every input saved under tests/data/fuzz/<target>/
 * (the seed corpus, and each crash `make fuzz` ever found, kept after its fix) is fed again
 * to its fuzz target. A target aborts on a broken invariant (a redacted text that still
 * holds a CPR number, a serialised event that does not parse back, a refusal without a
 * reason), and under `make asan` on any memory error, so a regression fails the suite.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "../fuzz/fuzz.h"

typedef int (*target_fn)(const uint8_t *, size_t);

/* Feeds every file in tests/data/fuzz/<name> to fn; returns how many. */
static size_t s_replay(const char *name, target_fn fn)
{
	char dir[512];
	struct dirent *e;
	size_t n = 0;
	DIR *d;

	snprintf(dir, sizeof dir, "tests/data/fuzz/%s", name);
	d = opendir(dir);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	while ((e = readdir(d))) {
		char path[1024];
		size_t len = 0;
		char *bytes;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		bytes = test_read_file(path, &len);
		if (!bytes)
			continue;
		CU_ASSERT_EQUAL(fn((const uint8_t *)bytes, len), 0);
		free(bytes);
		n++;
	}
	closedir(d);
	return n;
}

static void test_event_inputs(void)
{
	CU_ASSERT(s_replay("event", fuzz_event) >= 10);
}

static void test_where_inputs(void)
{
	CU_ASSERT(s_replay("where", fuzz_where) >= 5);
}

static void test_routes_inputs(void)
{
	CU_ASSERT(s_replay("routes", fuzz_routes) >= 5);
}

static void test_conf_inputs(void)
{
	CU_ASSERT(s_replay("conf", fuzz_conf) >= 3);
}

static void test_cpr_inputs(void)
{
	CU_ASSERT(s_replay("cpr", fuzz_cpr) >= 3);
}

static void test_daycare_inputs(void)
{
	CU_ASSERT(s_replay("daycare", fuzz_daycare) >= 2);
}

static void test_staff_inputs(void)
{
	CU_ASSERT(s_replay("staff", fuzz_staff) >= 2);
}

static void test_cpr_soap_inputs(void)
{
	CU_ASSERT(s_replay("cpr_soap", fuzz_cpr_soap) >= 3);
}

static void test_calendar_inputs(void)
{
	CU_ASSERT(s_replay("calendar", fuzz_calendar) >= 2);
}

static void test_http_inputs(void)
{
	CU_ASSERT(s_replay("http", fuzz_http) >= 2);
}

static void test_dlq_inputs(void)
{
	CU_ASSERT(s_replay("dlq", fuzz_dlq) >= 5);
}

static void test_string_inputs(void)
{
	CU_ASSERT(s_replay("string", fuzz_string) >= 8);
}

TEST_MAIN("fuzz_regressions", TEST(test_event_inputs), TEST(test_where_inputs),
	  TEST(test_routes_inputs), TEST(test_conf_inputs), TEST(test_cpr_inputs),
	  TEST(test_daycare_inputs), TEST(test_staff_inputs), TEST(test_cpr_soap_inputs),
	  TEST(test_calendar_inputs), TEST(test_http_inputs), TEST(test_dlq_inputs),
	  TEST(test_string_inputs))
