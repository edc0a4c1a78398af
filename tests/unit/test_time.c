/*
 * tests/unit/test_time.c — RFC 3339 time (sdk/time.c): the formatter's one shape, the
 * parser's offsets, fractions and refusals, and that the two round-trip.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include <kanal/kanal.h>

/* 2026-12-07T15:13:13.123Z in ms since the epoch (date -d ... +%s gives 1796656393). */
#define T_2026_12_07 1796656393123LL

static int64_t s_parse(const char *text)
{
	int64_t ms = -42;

	if (kanal_time_parse_rfc3339(text, &ms) != 0)
		return -42;
	return ms;
}

static void test_format_is_utc_with_milliseconds(void)
{
	char buf[KANAL_TIME_RFC3339_SIZE];

	CU_ASSERT_EQUAL(kanal_time_rfc3339(T_2026_12_07, buf, sizeof buf), 0);
	CU_ASSERT_STRING_EQUAL(buf, "2026-12-07T15:13:13.123Z");
	/* Whole seconds keep their ".000": one shape for every timestamp kanal writes. */
	CU_ASSERT_EQUAL(kanal_time_rfc3339(0, buf, sizeof buf), 0);
	CU_ASSERT_STRING_EQUAL(buf, "1970-01-01T00:00:00.000Z");
	CU_ASSERT_EQUAL(kanal_time_rfc3339(951782400000LL + 86399999, buf, sizeof buf), 0);
	CU_ASSERT_STRING_EQUAL(buf, "2000-02-29T23:59:59.999Z");
	/* Before 1970 the millisecond still counts forward within its second. */
	CU_ASSERT_EQUAL(kanal_time_rfc3339(-1, buf, sizeof buf), 0);
	CU_ASSERT_STRING_EQUAL(buf, "1969-12-31T23:59:59.999Z");
}

static void test_format_refuses_small_buffers_and_far_years(void)
{
	char buf[KANAL_TIME_RFC3339_SIZE];

	CU_ASSERT_EQUAL(kanal_time_rfc3339(T_2026_12_07, buf, sizeof buf - 1), KANAL_EINVAL);
	CU_ASSERT_STRING_EQUAL(buf, "");
	CU_ASSERT_EQUAL(kanal_time_rfc3339(253402300800000LL, buf, sizeof buf), KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal_time_rfc3339(253402300799999LL, buf, sizeof buf), 0);
	CU_ASSERT_STRING_EQUAL(buf, "9999-12-31T23:59:59.999Z");
}

static void test_wall_clock_formats_as_now(void)
{
	char buf[KANAL_TIME_RFC3339_SIZE];
	int64_t wall = kanal_wall_ms(), now = (int64_t)time(NULL) * 1000, back;

	CU_ASSERT_TRUE(wall >= now - 2000 && wall <= now + 2000);
	CU_ASSERT_EQUAL(kanal_time_rfc3339(wall, buf, sizeof buf), 0);
	CU_ASSERT_EQUAL(strlen(buf), 24);
	CU_ASSERT_EQUAL(kanal_time_parse_rfc3339(buf, &back), 0);
	CU_ASSERT_EQUAL(back, wall);
}

static void test_parse_honours_the_offset(void)
{
	CU_ASSERT_EQUAL(s_parse("2026-12-07T15:13:13.123Z"), T_2026_12_07);
	CU_ASSERT_EQUAL(s_parse("2026-12-07t15:13:13.123z"), T_2026_12_07);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T16:13:13.123+01:00"), T_2026_12_07);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T09:43:13.123-05:30"), T_2026_12_07);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T15:13:13.123+00:00"), T_2026_12_07);
	/* An offset can move the instant into the previous day and year. */
	CU_ASSERT_EQUAL(s_parse("2027-01-01T00:30:00+01:00"), s_parse("2026-12-31T23:30:00Z"));
}

static void test_parse_fractions(void)
{
	int64_t whole = s_parse("2026-12-07T15:13:13Z");

	CU_ASSERT_EQUAL(whole, T_2026_12_07 - 123);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T15:13:13.1Z"), whole + 100);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T15:13:13.12Z"), whole + 120);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T15:13:13.123456789Z"), whole + 123);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T15:13:13.999999+01:00"), whole - 3600000 + 999);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T15:13:13.Z"), -42);
	/* A leap second reads as the second before it. */
	CU_ASSERT_EQUAL(s_parse("2016-12-31T23:59:60Z"), s_parse("2016-12-31T23:59:59Z"));
}

static void test_parse_refuses_trailing_junk_and_no_zone(void)
{
	int64_t ms = 7;

	CU_ASSERT_EQUAL(kanal_time_parse_rfc3339("2026-12-07T15:13:13Zjunk", &ms), KANAL_EPARSE);
	CU_ASSERT_EQUAL(ms, 7); /* untouched on failure */
	CU_ASSERT_EQUAL(s_parse("2026-12-07T15:13:13+01:00 "), -42);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T15:13:13+01:000"), -42);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T15:13:13"), -42);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T15:13Z"), -42);
	CU_ASSERT_EQUAL(s_parse("2026-12-07 15:13:13Z"), -42);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T15:13:13+0100"), -42);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T15:13:13+24:00"), -42);
	CU_ASSERT_EQUAL(s_parse(""), -42);
	CU_ASSERT_EQUAL(kanal_time_parse_rfc3339(NULL, &ms), KANAL_EPARSE);
	/* A date alone is a day, not an instant: refused (documented in kanal/time.h). */
	CU_ASSERT_EQUAL(s_parse("2026-12-07"), -42);
}

static void test_parse_refuses_days_that_do_not_exist(void)
{
	CU_ASSERT_EQUAL(s_parse("2026-04-31T10:00:00Z"), -42);
	CU_ASSERT_EQUAL(s_parse("2026-04-30T10:00:00Z") + 86400000,
			s_parse("2026-05-01T10:00:00Z"));
	CU_ASSERT_EQUAL(s_parse("2026-02-29T10:00:00Z"), -42);
	CU_ASSERT_EQUAL(s_parse("1900-02-29T10:00:00Z"), -42);
	CU_ASSERT_EQUAL(s_parse("2026-13-01T10:00:00Z"), -42);
	CU_ASSERT_EQUAL(s_parse("2026-00-01T10:00:00Z"), -42);
	CU_ASSERT_EQUAL(s_parse("2026-12-00T10:00:00Z"), -42);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T24:00:00Z"), -42);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T23:60:00Z"), -42);
	CU_ASSERT_EQUAL(s_parse("2026-12-07T23:59:61Z"), -42);
}

static void test_leap_days_round_trip(void)
{
	char buf[KANAL_TIME_RFC3339_SIZE];
	static const char *const days[] = { "2024-02-29T12:00:00.000Z", "2000-02-29T00:00:00.001Z",
					    "2028-02-29T23:59:59.999Z",
					    "1600-02-29T06:30:00.500Z" };

	for (size_t i = 0; i < sizeof days / sizeof days[0]; i++) {
		int64_t ms = s_parse(days[i]);
		CU_ASSERT_NOT_EQUAL(ms, -42);
		CU_ASSERT_EQUAL(kanal_time_rfc3339(ms, buf, sizeof buf), 0);
		CU_ASSERT_STRING_EQUAL(buf, days[i]);
	}
	CU_ASSERT_EQUAL(s_parse("2024-03-01T00:00:00Z") - s_parse("2024-02-28T00:00:00Z"),
			2 * 86400000LL);
}

TEST_MAIN("time", TEST(test_format_is_utc_with_milliseconds),
	  TEST(test_format_refuses_small_buffers_and_far_years),
	  TEST(test_wall_clock_formats_as_now), TEST(test_parse_honours_the_offset),
	  TEST(test_parse_fractions), TEST(test_parse_refuses_trailing_junk_and_no_zone),
	  TEST(test_parse_refuses_days_that_do_not_exist), TEST(test_leap_days_round_trip));
