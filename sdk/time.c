/*
 * sdk/time.c — the wall clock and RFC 3339: the one formatter and the one parser.
 *
 * Dates are converted with the proleptic Gregorian day count (days since 1970-01-01) in
 * plain integer arithmetic rather than timegm/gmtime_r, so neither depends on the process's
 * time zone, on the C library's range of time_t or on a normalising call that turns
 * 31 April into 1 May. The parser also serves the CloudEvents `time` check
 * (kanal__msg_check_time), which wants its reason in words; see kanal__time_parse.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <kanal/error.h>
#include <kanal/time.h>

#include "msg_int.h"

#define MS_PER_DAY 86400000LL

static bool s_digits(const char *p, size_t n, int *out)
{
	int v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return true;
}

static int s_days_in_month(int year, int month)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return month == 2 && leap ? 29 : days[month - 1];
}

/* Days from 1970-01-01 to the given Gregorian date (negative before it); Howard Hinnant's
 * days_from_civil. */
static int64_t s_days_from_civil(int y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* The Gregorian date of a day number from s_days_from_civil (its inverse). */
static void s_civil_from_days(int64_t z, int *y, int *m, int *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

int64_t kanal_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kanal_time_rfc3339(int64_t ms, char *buf, size_t size)
{
	int64_t day, rest;
	int y, mo, d;

	if (buf && size)
		buf[0] = '\0';
	if (!buf || size < KANAL_TIME_RFC3339_SIZE ||
	    ms < s_days_from_civil(0, 1, 1) * MS_PER_DAY ||
	    ms >= s_days_from_civil(10000, 1, 1) * MS_PER_DAY)
		return KANAL_EINVAL;
	/* Floor division: an instant before 1970 belongs to the day that starts before it. */
	day = ms / MS_PER_DAY - (ms % MS_PER_DAY < 0);
	rest = ms - day * MS_PER_DAY;
	s_civil_from_days(day, &y, &mo, &d);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", y, mo, d, (int)(rest / 3600000),
		 (int)(rest / 60000 % 60), (int)(rest / 1000 % 60), (int)(rest % 1000));
	return 0;
}

const char *kanal__time_parse(const char *v, size_t len, int64_t *out_ms)
{
	static const char bad[] = "not an RFC 3339 timestamp (expected YYYY-MM-DDTHH:MM:SS"
				  " with Z or an offset such as +01:00)";
	int year, month, day, hour, minute, second, oh = 0, om = 0, ms = 0, sign = 0;
	size_t i;

	if (len < 16 || !s_digits(v, 4, &year) || v[4] != '-' || !s_digits(v + 5, 2, &month) ||
	    v[7] != '-' || !s_digits(v + 8, 2, &day) || (v[10] != 'T' && v[10] != 't') ||
	    !s_digits(v + 11, 2, &hour) || v[13] != ':' || !s_digits(v + 14, 2, &minute))
		return bad;
	if (len < 19 || v[16] != ':' || !s_digits(v + 17, 2, &second))
		return "not an RFC 3339 timestamp (the seconds are missing)";
	if (month < 1 || month > 12)
		return "not an RFC 3339 timestamp (month out of range)";
	if (day < 1 || day > s_days_in_month(year, month))
		return "not an RFC 3339 timestamp (no such day in that month)";
	if (hour > 23)
		return "not an RFC 3339 timestamp (hour out of range)";
	if (minute > 59)
		return "not an RFC 3339 timestamp (minute out of range)";
	if (second > 60)
		return "not an RFC 3339 timestamp (second out of range)";
	i = 19;
	if (i < len && v[i] == '.') {
		size_t digits_start = ++i;
		for (; i < len && v[i] >= '0' && v[i] <= '9'; i++)
			if (i - digits_start < 3)
				ms = ms * 10 + (v[i] - '0');
		if (i == digits_start)
			return "not an RFC 3339 timestamp (a digit must follow '.')";
		for (size_t n = i - digits_start; n < 3; n++)
			ms *= 10;
	}
	if (i < len && (v[i] == 'Z' || v[i] == 'z')) {
		if (i + 1 != len)
			return bad;
	} else {
		if (i >= len || (v[i] != '+' && v[i] != '-'))
			return "not an RFC 3339 timestamp (expected Z or an offset such as +01:00)";
		if (len - i != 6 || !s_digits(v + i + 1, 2, &oh) || v[i + 3] != ':' ||
		    !s_digits(v + i + 4, 2, &om))
			return "not an RFC 3339 timestamp (the offset must be +HH:MM or -HH:MM)";
		if (oh > 23 || om > 59)
			return "not an RFC 3339 timestamp (offset out of range)";
		sign = v[i] == '+' ? 1 : -1;
	}
	if (out_ms) {
		/* A leap second reads as the second before it: the epoch count has no room
		 * for it. A local time ahead of UTC (+01:00) is that much later than UTC's. */
		int64_t secs = s_days_from_civil(year, month, day) * 86400 + hour * 3600 +
			       minute * 60 + (second == 60 ? 59 : second) -
			       sign * (oh * 3600 + om * 60);
		*out_ms = secs * 1000 + ms;
	}
	return NULL;
}

int kanal_time_parse_rfc3339(const char *text, int64_t *out_ms)
{
	int64_t ms;

	if (!text || kanal__time_parse(text, strlen(text), &ms))
		return KANAL_EPARSE;
	if (out_ms)
		*out_ms = ms;
	return 0;
}
