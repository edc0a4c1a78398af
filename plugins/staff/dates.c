/*
 * plugins/staff/dates.c — the calendar arithmetic of the staff connector: strict
 * DD.MM.YYYY dates as HR systems write them, day numbers, the Danish public holidays
 * (Easter-based, computed per year) and the holiday law's counting of holiday days and of
 * the main holiday (ferieloven: at least 15 days between 1 May and 30 September).
 */
#include "staff.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil). */
int32_t staff_date_from_ymd(int y, int m, int d)
{
	int era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (int32_t)(era * 146097 + doe - 719468);
}

void staff_date_to_ymd(int32_t day, int *y, int *m, int *d)
{
	int32_t z = day + 719468;
	int era = (z >= 0 ? z : z - 146096) / 146097;
	int doe = (int)(z - era * 146097);
	int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int mp = (5 * doy + 2) / 153;

	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = yoe + era * 400 + (*m <= 2);
}

static int s_days_in_month(int y, int m)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : days[m - 1];
}

int staff_date_parse(const char *text, int32_t *day)
{
	int d, m, y;

	/* Exactly DD.MM.YYYY: sscanf alone would accept "1.2.2026" or trailing text. */
	if (!text || strlen(text) != 10 || text[2] != '.' || text[5] != '.')
		return -1;
	for (int i = 0; i < 10; i++)
		if (i != 2 && i != 5 && (text[i] < '0' || text[i] > '9'))
			return -1;
	d = (text[0] - '0') * 10 + (text[1] - '0');
	m = (text[3] - '0') * 10 + (text[4] - '0');
	y = (text[6] - '0') * 1000 + (text[7] - '0') * 100 + (text[8] - '0') * 10 + (text[9] - '0');
	if (y < 1900 || y > 2199 || m < 1 || m > 12 || d < 1 || d > s_days_in_month(y, m))
		return -1;
	*day = staff_date_from_ymd(y, m, d);
	return 0;
}

void staff_date_iso(int32_t day, char *buf)
{
	int y, m, d;

	staff_date_to_ymd(day, &y, &m, &d);
	/* The ranges are known (parsed years are 1900-2199); tell the compiler too. */
	y = y < 0 ? 0 : y % 10000;
	m = m < 1 || m > 12 ? 1 : m;
	d = d < 1 || d > 31 ? 1 : d;
	snprintf(buf, 11, "%04d-%02d-%02d", y, m, d);
}

int32_t staff_date_today(void)
{
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	return staff_date_from_ymd(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

/* Easter Sunday of year y (the anonymous Gregorian algorithm). */
static int32_t s_easter(int y)
{
	int a = y % 19, b = y / 100, c = y % 100, d = b / 4, e = b % 4;
	int f = (b + 8) / 25, g = (b - f + 1) / 3, h = (19 * a + b - d - g + 15) % 30;
	int i = c / 4, k = c % 4, l = (32 + 2 * e + 2 * i - h - k) % 7;
	int m = (a + 11 * h + 22 * l) / 451;
	int month = (h + l - 7 * m + 114) / 31, day = (h + l - 7 * m + 114) % 31 + 1;

	return staff_date_from_ymd(y, month, day);
}

bool staff_public_holiday(int32_t day)
{
	int y, m, d;
	int32_t easter;

	staff_date_to_ymd(day, &y, &m, &d);
	if ((m == 1 && d == 1) || (m == 12 && (d == 25 || d == 26)))
		return true;
	easter = s_easter(y);
	switch (day - easter) {
	case -3: /* skærtorsdag */
	case -2: /* langfredag */
	case 0:  /* påskedag */
	case 1:  /* 2. påskedag */
	case 39: /* Kristi himmelfartsdag */
	case 49: /* pinsedag */
	case 50: /* 2. pinsedag */
		return true;
	case 26: /* store bededag, abolished as a public holiday from 2024 */
		return y <= 2023;
	default:
		return false;
	}
}

int staff_working_days(int32_t from, int32_t to)
{
	int n = 0;

	for (int32_t day = from; day <= to; day++) {
		/* 1970-01-01 was a Thursday: (day + 4) % 7 is 0 on Sundays. */
		int wday = (int)(((day + 4) % 7 + 7) % 7);
		if (wday != 0 && wday != 6 && !staff_public_holiday(day))
			n++;
	}
	return n;
}

double staff_holiday_days(int32_t from, int32_t to, double hours)
{
	double days = staff_working_days(from, to);

	if (hours > 0)
		days = days * hours / 7.4;
	return round(days * 100.0) / 100.0;
}

bool staff_main_holiday(int32_t from, int32_t to, double hours)
{
	int y0, y1, m, d;

	staff_date_to_ymd(from, &y0, &m, &d);
	staff_date_to_ymd(to, &y1, &m, &d);
	for (int y = y0; y <= y1; y++) {
		int32_t a = staff_date_from_ymd(y, 5, 1), b = staff_date_from_ymd(y, 9, 30);
		if (a < from)
			a = from;
		if (b > to)
			b = to;
		/* A small tolerance: 15 days of 7.4 hours given as hours must not miss by
		 * rounding. */
		if (a <= b && staff_holiday_days(a, b, hours) >= 15.0 - 1e-9)
			return true;
	}
	return false;
}
