/*
 * sdk/cpr.c — Danish CPR numbers: parse, validate, find in free text, mask.
 *
 * A CPR number is DDMMYY-SSSS (the hyphen optional). Digit 7 together with the two-digit
 * year YY gives the century (the CPR office's table, below); the full year then decides
 * whether the date exists (29 February 1900 does not, 29 February 2000 does). Modulus 11 is
 * reported but never rejects: numbers failing it have been issued since 1 October 2007.
 *
 * Detection runs over every log line and event-stream message, so kanal_cpr_find and the
 * redactors are one forward pass over the bytes, with no regular expression and (for
 * kanal_cpr_redact_inplace) no allocation: the scanner walks digit runs, and only a run of
 * exactly ten digits, or six digits, a hyphen and four digits, is looked at more closely.
 * A number's edges are digit boundaries, not word boundaries: "id1503851233" is masked too,
 * which errs on the side of the citizen.
 *
 * No message written here ever repeats the number it is about.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/cpr.h>
#include <kanal/error.h>

#define CPR_DIGITS 10
#define CPR_MASKED_LEN 11 /* "DDMMYY-XXXX" */

static const char *const s_month_names[12] = {
	"January", "February", "March",     "April",   "May",      "June",
	"July",    "August",   "September", "October", "November", "December",
};

static inline bool s_is_digit(char c)
{
	return (unsigned char)(c - '0') < 10;
}

static bool s_is_leap(int year)
{
	return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static int s_days_in_month(int month, int year)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	if (month == 2 && s_is_leap(year))
		return 29;
	return days[month - 1];
}

/* Returns the full birth year from digit 7 (0-9) and the two-digit year yy (0-99), by the
 * CPR office's table:
 *
 *   digit 7 | YY 00-36 | YY 37-57 | YY 58-99
 *   0-3     | 1900s    | 1900s    | 1900s
 *   4, 9    | 2000s    | 1900s    | 1900s
 *   5-8     | 2000s    | 2000s    | 1800s
 *
 * Every digit gives some century, so this cannot fail; the date check that follows it can. */
static int s_full_year(int digit7, int yy)
{
	if (digit7 <= 3)
		return 1900 + yy;
	if (digit7 == 4 || digit7 == 9)
		return (yy <= 36 ? 2000 : 1900) + yy;
	return (yy <= 57 ? 2000 : 1800) + yy;
}

/* Checks the date in the ten digits d[0..9] (values, not characters). Returns true when it
 * is a real calendar date, storing day, month and full year; otherwise fills err (when not
 * NULL) and returns false. */
static bool s_check_date(const int d[CPR_DIGITS], int *day_out, int *month_out, int *year_out,
			 kanal_error_t *err)
{
	int day = d[0] * 10 + d[1];
	int month = d[2] * 10 + d[3];
	int year = s_full_year(d[6], d[4] * 10 + d[5]);

	if (month < 1 || month > 12) {
		kanal_error_set(err, NULL, 0, 0, NULL, "month %d is not a valid month", month);
		return false;
	}
	if (day < 1 || day > 31) {
		kanal_error_set(err, NULL, 0, 0, NULL, "day %d is not a valid day", day);
		return false;
	}
	if (day > s_days_in_month(month, year)) {
		kanal_error_set(err, NULL, 0, 0, NULL, "%d %s %d does not exist", day,
				s_month_names[month - 1], year);
		return false;
	}
	*day_out = day;
	*month_out = month;
	*year_out = year;
	return true;
}

/* The old modulus 11 check: weights 4 3 2 7 6 5 4 3 2 1, sum divisible by 11. */
static bool s_mod11_ok(const int d[CPR_DIGITS])
{
	static const int weights[CPR_DIGITS] = { 4, 3, 2, 7, 6, 5, 4, 3, 2, 1 };
	int sum = 0;

	for (int i = 0; i < CPR_DIGITS; i++)
		sum += weights[i] * d[i];
	return sum % 11 == 0;
}

/* Reads the ten digits of a candidate at p (hyphenated or not) into d. The caller has already
 * checked the shape. */
static void s_read_digits(const char *p, bool hyphen, int d[CPR_DIGITS])
{
	for (int i = 0, j = 0; i < CPR_DIGITS; i++, j++) {
		if (i == 6 && hyphen)
			j++;
		d[i] = p[j] - '0';
	}
}

/* Checks the syntax of a whole string: exactly ten digits, or six digits, '-', four digits.
 * Returns true and sets *hyphen, or fills err (when not NULL) and returns false. The reason
 * names positions and counts, never the characters' values. */
static bool s_check_syntax(const char *text, bool *hyphen, kanal_error_t *err)
{
	size_t len = strlen(text);
	size_t digits = 0;
	bool has_hyphen = false;

	for (size_t i = 0; i < len; i++) {
		if (s_is_digit(text[i])) {
			digits++;
		} else if (text[i] == '-' && i == 6 && !has_hyphen) {
			has_hyphen = true;
		} else {
			kanal_error_set(err, NULL, 0, 0, NULL,
					"expected 10 digits (DDMMYY-SSSS, the hyphen optional), "
					"found %s at position %zu",
					text[i] == '-' ? "a misplaced hyphen" : "a non-digit",
					i + 1);
			return false;
		}
	}
	if (digits != CPR_DIGITS) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"expected 10 digits (DDMMYY-SSSS, the hyphen optional), found %zu",
				digits);
		return false;
	}
	*hyphen = has_hyphen;
	return true;
}

int kanal_cpr_parse(const char *text, kanal_cpr_t *out, kanal_error_t *err)
{
	int d[CPR_DIGITS];
	int day, month, year;
	bool hyphen;

	if (!text || !*text) {
		kanal_error_set(err, NULL, 0, 0, NULL, "empty CPR number");
		return KANAL_EINVAL;
	}
	if (!s_check_syntax(text, &hyphen, err))
		return KANAL_EINVAL;
	s_read_digits(text, hyphen, d);
	if (!s_check_date(d, &day, &month, &year, err))
		return KANAL_EINVAL;
	if (out) {
		for (int i = 0; i < CPR_DIGITS; i++)
			out->digits[i] = (char)('0' + d[i]);
		out->digits[CPR_DIGITS] = '\0';
		out->year = year;
		out->month = month;
		out->day = day;
		out->male = d[9] % 2 == 1;
		out->mod11_ok = s_mod11_ok(d);
	}
	return 0;
}

/* The SDK 1.0 signature, kept under its old symbol for plugins built against it (the
 * header binds kanal_cpr_parse to kanal_cpr_parse_v1_1; docs/design/plugin-abi.md). */
int kanal__cpr_parse_v1_0(const char *text, kanal_cpr_t *out, char *why,
			  size_t why_size) __asm__("kanal_cpr_parse")
	__attribute__((visibility("default")));
int kanal__cpr_parse_v1_0(const char *text, kanal_cpr_t *out, char *why, size_t why_size)
{
	kanal_error_t err;
	int rc;

	kanal_error_clear(&err);
	rc = kanal_cpr_parse(text, out, &err);
	if (why && why_size)
		snprintf(why, why_size, "%s", rc ? err.text : "");
	return rc;
}

bool kanal_cpr_valid(const char *text)
{
	return kanal_cpr_parse(text, NULL, NULL) == 0;
}

int kanal_cpr_mask(const char *text, char *buf, size_t size)
{
	kanal_cpr_t cpr;

	if (!buf || size < CPR_MASKED_LEN + 1) {
		if (buf && size)
			buf[0] = '\0';
		return KANAL_EINVAL;
	}
	if (kanal_cpr_parse(text, &cpr, NULL) != 0) {
		memcpy(buf, "XXXXXX-XXXX", CPR_MASKED_LEN + 1);
		return KANAL_EINVAL;
	}
	memcpy(buf, cpr.digits, 6);
	memcpy(buf + 6, "-XXXX", 6);
	return 0;
}

/* Decides whether the digit run p[0..run) (preceded by a non-digit or the start) begins a CPR
 * number in text ending at end. Returns the candidate's length (10 or 11) or 0. */
static size_t s_candidate(const char *p, size_t run, const char *end)
{
	int d[CPR_DIGITS];
	int day, month, year;
	bool hyphen;
	size_t length;

	if (run == CPR_DIGITS) {
		hyphen = false;
		length = CPR_DIGITS;
	} else if (run == 6 && end - p >= 11 && p[6] == '-' && s_is_digit(p[7]) &&
		   s_is_digit(p[8]) && s_is_digit(p[9]) && s_is_digit(p[10]) &&
		   (end - p == 11 || !s_is_digit(p[11]))) {
		hyphen = true;
		length = CPR_DIGITS + 1;
	} else {
		return 0;
	}
	s_read_digits(p, hyphen, d);
	return s_check_date(d, &day, &month, &year, NULL) ? length : 0;
}

/* The scanner behind every detector: the first CPR number in [p, end), or NULL.
 *
 * Every candidate begins with a run of at least six digits, so the scan looks at every
 * sixth byte: when p[5] is not a digit, no run long enough starts in p[0..5] and the scan
 * moves on six bytes. Otherwise the run through p[5] is taken whole (back to its start,
 * which is p at the earliest: the byte before p is a non-digit or already looked at) and
 * checked. Plain text and ids with few digits cost about a sixth of a byte-by-byte walk;
 * what is found is the same (tests/unit/test_cpr.c compares it with the plain walk). */
static const char *s_find(const char *p, const char *end, size_t *length)
{
	while (end - p >= CPR_DIGITS) {
		const char *run_start, *q;
		size_t found;

		if (!s_is_digit(p[5])) {
			p += 6;
			continue;
		}
		run_start = p + 5;
		while (run_start > p && s_is_digit(run_start[-1]))
			run_start--;
		q = p + 6;
		while (q < end && s_is_digit(*q))
			q++;
		found = s_candidate(run_start, (size_t)(q - run_start), end);
		if (found) {
			*length = found;
			return run_start;
		}
		/* The run is done with: the next one starts after the non-digit that ended it.
		 * A failed 6-digit head's 4-digit tail is a run of its own, never a candidate. */
		p = q;
	}
	return NULL;
}

bool kanal_cpr_find(const char *text, size_t len, size_t *offset, size_t *length)
{
	const char *hit;
	size_t n = 0;

	if (!text)
		return false;
	hit = s_find(text, text + len, &n);
	if (!hit)
		return false;
	if (offset)
		*offset = (size_t)(hit - text);
	if (length)
		*length = n;
	return true;
}

char *kanal_cpr_redact(const char *text, size_t len)
{
	const char *p, *end;
	char *out, *w;

	if (!text)
		len = 0;
	p = text;
	end = text ? text + len : NULL;
	/* Each number without a hyphen grows by one byte, and takes at least ten, so this
	 * bound holds without a counting pass. */
	out = malloc(len + len / CPR_DIGITS + 1);
	if (!out)
		return NULL;
	w = out;
	while (p < end) {
		size_t n;
		const char *hit = s_find(p, end, &n);

		if (!hit) {
			memcpy(w, p, (size_t)(end - p));
			w += end - p;
			break;
		}
		memcpy(w, p, (size_t)(hit - p));
		w += hit - p;
		memcpy(w, hit, 6);
		memcpy(w + 6, "-XXXX", 5);
		w += CPR_MASKED_LEN;
		p = hit + n;
	}
	*w = '\0';
	return out;
}

size_t kanal_cpr_redact_inplace(char *buf)
{
	char *p, *end;
	size_t count = 0;

	if (!buf)
		return 0;
	p = buf;
	end = buf + strlen(buf);
	while (p < end) {
		size_t n;
		char *hit = (char *)s_find(p, end, &n);

		if (!hit)
			break;
		memset(hit + n - 4, 'X', 4);
		p = hit + n;
		count++;
	}
	return count;
}
