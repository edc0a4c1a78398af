/*
 * tests/unit/test_cpr.c — CPR numbers: parsing and validation (syntax, date, century,
 * modulus 11 as a flag only), detection in free text, and masking.
 *
 * The numbers here are the synthetic ones from DOMAIN.md, but a CPR number must never reach
 * test output: assertions compare through variables and tables (a failing CU_ASSERT prints
 * its expression, never a value), and string comparisons are made only on masked text.
 */
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kanal/kanal.h>

#include "test.h"

/* Numbers that parse, with what they tell. */
static const struct {
	const char *text;
	int year, month, day;
	bool male;
	bool mod11_ok;
} s_valid[] = {
	{ "1503851233", 1985, 3, 15, true, true },
	{ "150385-1233", 1985, 3, 15, true, true },
	{ "0101184129", 2018, 1, 1, true, true },
	{ "2412995123", 1899, 12, 24, true, true },
	{ "2412990121", 1999, 12, 24, true, true },
	{ "3006409120", 1940, 6, 30, false, true },
	{ "1512155010", 2015, 12, 15, false, true },
	{ "0101654001", 1965, 1, 1, true, true },
	/* Fails modulus 11 (issued since 2007): valid all the same, flagged. */
	{ "1503851234", 1985, 3, 15, false, false },
	/* 29 February: 2000 (digit 7 = 4, YY 00) and 1896 (digit 7 = 6, YY 96) are leap years. */
	{ "2902004000", 2000, 2, 29, false, false },
	{ "2902966000", 1896, 2, 29, false, false },
	/* Century edges of the table. */
	{ "0101369000", 2036, 1, 1, false, false },
	{ "0101379000", 1937, 1, 1, false, true },
	{ "0101575000", 2057, 1, 1, false, false },
	{ "0101585000", 1858, 1, 1, false, false },
	{ "0101003000", 1900, 1, 1, false, true },
};

/* Numbers that do not parse, and the reason given. */
static const struct {
	const char *text;
	const char *why;
} s_invalid[] = {
	{ "3201851233", "day 32 is not a valid day" },
	{ "0001851233", "day 0 is not a valid day" },
	{ "1513851233", "month 13 is not a valid month" },
	{ "1500851233", "month 0 is not a valid month" },
	{ "3002851233", "30 February 1985 does not exist" },
	{ "3104851233", "31 April 1985 does not exist" },
	/* 1900 (digit 7 = 0) and 1858 (digit 7 = 6, YY 58) are not leap years. */
	{ "2902000000", "29 February 1900 does not exist" },
	{ "2902586000", "29 February 1858 does not exist" },
	{ "000000-0000", "month 0 is not a valid month" },
	{ "150385123", "expected 10 digits (DDMMYY-SSSS, the hyphen optional), found 9" },
	{ "15038512331", "expected 10 digits (DDMMYY-SSSS, the hyphen optional), found 11" },
	{ "15038-51233",
	  "expected 10 digits (DDMMYY-SSSS, the hyphen optional), found a misplaced hyphen at "
	  "position 6" },
	{ "150385--1233",
	  "expected 10 digits (DDMMYY-SSSS, the hyphen optional), found a misplaced hyphen at "
	  "position 8" },
	{ " 1503851233", "expected 10 digits (DDMMYY-SSSS, the hyphen optional), found a non-digit "
			 "at position 1" },
	{ "150385123a",
	  "expected 10 digits (DDMMYY-SSSS, the hyphen optional), found a non-digit at position "
	  "10" },
	{ "", "empty CPR number" },
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static void test_parses_valid_numbers(void)
{
	for (size_t i = 0; i < N_ELEMS(s_valid); i++) {
		kanal_cpr_t cpr;
		kanal_error_t err;
		int rc;

		kanal_error_clear(&err);
		rc = kanal_cpr_parse(s_valid[i].text, &cpr, &err);

		CU_ASSERT_EQUAL(rc, 0);
		CU_ASSERT_EQUAL(cpr.year, s_valid[i].year);
		CU_ASSERT_EQUAL(cpr.month, s_valid[i].month);
		CU_ASSERT_EQUAL(cpr.day, s_valid[i].day);
		CU_ASSERT_EQUAL(cpr.male, s_valid[i].male);
		CU_ASSERT_EQUAL(cpr.mod11_ok, s_valid[i].mod11_ok);
		CU_ASSERT_EQUAL(strlen(cpr.digits), 10);
		CU_ASSERT(strncmp(cpr.digits, s_valid[i].text, 6) == 0);
		CU_ASSERT_EQUAL(err.text[0], '\0');
		CU_ASSERT(kanal_cpr_valid(s_valid[i].text));
	}
}

static void test_digits_drop_the_hyphen(void)
{
	kanal_cpr_t a, b;

	CU_ASSERT_EQUAL(kanal_cpr_parse(s_valid[0].text, &a, NULL), 0);
	CU_ASSERT_EQUAL(kanal_cpr_parse(s_valid[1].text, &b, NULL), 0);
	CU_ASSERT(strcmp(a.digits, b.digits) == 0);
	CU_ASSERT(strcmp(a.digits, s_valid[0].text) == 0);
	/* out may be NULL. */
	CU_ASSERT_EQUAL(kanal_cpr_parse(s_valid[0].text, NULL, NULL), 0);
}

static void test_rejects_invalid_numbers_with_a_reason(void)
{
	for (size_t i = 0; i < N_ELEMS(s_invalid); i++) {
		kanal_error_t err;
		int rc;

		kanal_error_clear(&err);
		rc = kanal_cpr_parse(s_invalid[i].text, NULL, &err);
		CU_ASSERT_EQUAL(rc, KANAL_EINVAL);
		/* The reasons never carry the number, so showing them on failure is safe. */
		CU_ASSERT_STRING_EQUAL(err.text, s_invalid[i].why);
		CU_ASSERT(!kanal_cpr_valid(s_invalid[i].text));
	}
	CU_ASSERT_EQUAL(kanal_cpr_parse(NULL, NULL, NULL), KANAL_EINVAL);
	CU_ASSERT(!kanal_cpr_valid(NULL));
}

static void test_masks_a_valid_number(void)
{
	char buf[12];

	CU_ASSERT_EQUAL(kanal_cpr_mask(s_valid[0].text, buf, sizeof buf), 0);
	CU_ASSERT_STRING_EQUAL(buf, "150385-XXXX");
	CU_ASSERT_EQUAL(kanal_cpr_mask(s_valid[1].text, buf, sizeof buf), 0);
	CU_ASSERT_STRING_EQUAL(buf, "150385-XXXX");
	CU_ASSERT_EQUAL(kanal_cpr_mask(s_valid[8].text, buf, sizeof buf), 0);
	CU_ASSERT_STRING_EQUAL(buf, "150385-XXXX");
}

static void test_masks_an_invalid_number_completely(void)
{
	char buf[12];
	char small[11] = "untouched";

	CU_ASSERT_EQUAL(kanal_cpr_mask(s_invalid[0].text, buf, sizeof buf), KANAL_EINVAL);
	CU_ASSERT_STRING_EQUAL(buf, "XXXXXX-XXXX");
	CU_ASSERT_EQUAL(kanal_cpr_mask(NULL, buf, sizeof buf), KANAL_EINVAL);
	CU_ASSERT_STRING_EQUAL(buf, "XXXXXX-XXXX");
	CU_ASSERT_EQUAL(kanal_cpr_mask(s_valid[0].text, small, sizeof small), KANAL_EINVAL);
	CU_ASSERT_STRING_EQUAL(small, "");
}

/* Finding: where a number is found (or not) in text. */
static const struct {
	const char *text;
	bool found;
	size_t offset, length;
} s_find[] = {
	{ "1503851233 reported sick", true, 0, 10 },
	{ "child 150385-1233 is sick", true, 6, 11 },
	{ "for child 1503851233", true, 10, 10 },
	{ "for child 150385-1233", true, 10, 11 },
	{ "1503851233", true, 0, 10 },
	{ "cpr=1503851233;", true, 4, 10 },
	{ "\"pnr\":\"150385-1233\"", true, 7, 11 },
	/* A later number after digit runs that are not numbers. */
	{ "order 123456789012 then 0101184129", true, 24, 10 },
	{ "run 123456-1234 then 3006409120", true, 21, 10 },
	/* Modulus 11 does not matter for detection either. */
	{ "x 1503851234 y", true, 2, 10 },
	/* Inside longer digit runs: an order number, an 11-digit run, a 4-digit tail run-on. */
	{ "order 150385123312 shipped", false, 0, 0 },
	{ "id 01503851233", false, 0, 0 },
	{ "id 15038512331", false, 0, 0 },
	{ "id 150385-12331", false, 0, 0 },
	{ "id 9150385-1233", false, 0, 0 },
	/* Phone numbers and other numbers. */
	{ "call 12345678", false, 0, 0 },
	{ "call +45 12 34 56 78", false, 0, 0 },
	{ "call 1234567890", false, 0, 0 },
	{ "000000-0000", false, 0, 0 },
	{ "0000000000", false, 0, 0 },
	/* Dates that do not exist, with the century taken from digit 7. */
	{ "3201851233", false, 0, 0 },
	{ "2902000000", false, 0, 0 },
	{ "2902004000", true, 0, 10 },
	/* Hyphens elsewhere, or doubled. */
	{ "1503-851233", false, 0, 0 },
	{ "150385--1233", false, 0, 0 },
	{ "150385-123", false, 0, 0 },
	{ "", false, 0, 0 },
};

static void test_finds_numbers_in_text(void)
{
	for (size_t i = 0; i < N_ELEMS(s_find); i++) {
		size_t offset = 999, length = 999;
		bool found =
			kanal_cpr_find(s_find[i].text, strlen(s_find[i].text), &offset, &length);

		CU_ASSERT_EQUAL(found, s_find[i].found);
		if (found && s_find[i].found) {
			CU_ASSERT_EQUAL(offset, s_find[i].offset);
			CU_ASSERT_EQUAL(length, s_find[i].length);
		}
	}
}

/* The plain walk kanal_cpr_find's skipping scanner must agree with: every maximal digit
 * run in turn, a number when it is ten digits, or six, a hyphen and four, forming a valid
 * CPR number. Returns the first one's offset and length. */
static bool s_plain_find(const char *t, size_t len, size_t *offset, size_t *length)
{
	size_t i = 0;

	while (i < len) {
		size_t start, run;
		char buf[12];

		if (t[i] < '0' || t[i] > '9') {
			i++;
			continue;
		}
		start = i;
		while (i < len && t[i] >= '0' && t[i] <= '9')
			i++;
		run = i - start;
		if (run == 10) {
			memcpy(buf, t + start, 10);
			buf[10] = '\0';
		} else if (run == 6 && len - start >= 11 && t[start + 6] == '-' &&
			   strspn(t + start + 7, "0123456789") >= 4 &&
			   (len - start == 11 || t[start + 11] < '0' || t[start + 11] > '9')) {
			memcpy(buf, t + start, 11);
			buf[11] = '\0';
		} else {
			continue;
		}
		if (kanal_cpr_valid(buf)) {
			*offset = start;
			*length = strlen(buf);
			return true;
		}
	}
	return false;
}

/* The scanner skips ahead over bytes that cannot start a number; on random texts made
 * mostly of digits, hyphens and a few letters, at every length and alignment, it finds
 * exactly what the plain walk finds. */
static void test_find_agrees_with_plain_walk(void)
{
	static const char alphabet[] = "0123456789012345678901234567890123-- ax";
	unsigned seed = 19;
	unsigned mismatches = 0, found_some = 0;

	for (int round = 0; round < 200000; round++) {
		char text[48];
		size_t len, off1 = 0, len1 = 0, off2 = 0, len2 = 0;
		bool a, b;

		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % sizeof text;
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			text[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
		}
		a = kanal_cpr_find(text, len, &off1, &len1);
		b = s_plain_find(text, len, &off2, &len2);
		if (a != b || (a && (off1 != off2 || len1 != len2)))
			mismatches++;
		found_some += a;
	}
	CU_ASSERT_EQUAL(mismatches, 0);
	/* The texts do hold numbers, so the comparison covered finding as well as not. */
	CU_ASSERT(found_some > 1000);
}

static void test_find_stays_within_len(void)
{
	static const char text[] = "1503851233999";
	size_t offset, length;

	/* The digits after len are not looked at: the first ten stand alone. */
	CU_ASSERT(kanal_cpr_find(text, 10, &offset, &length));
	CU_ASSERT(!kanal_cpr_find(text, 9, &offset, &length));
	CU_ASSERT(!kanal_cpr_find(text, sizeof text - 1, &offset, &length));
	CU_ASSERT(!kanal_cpr_find(NULL, 0, &offset, &length));
	CU_ASSERT(kanal_cpr_find(text, 10, NULL, NULL));
}

static void test_redact_masks_every_number(void)
{
	static const char text[] =
		"child 1503851233 and 150385-1233, mother 3006409120; order 150385123312";
	char *out = kanal_cpr_redact(text, strlen(text));

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_STRING_EQUAL(out, "child 150385-XXXX and 150385-XXXX, mother 300640-XXXX; "
				    "order 150385123312");
	kanal_free(out);
}

static void test_redact_edges(void)
{
	static const char only[] = "1503851233";
	static const char two[] = "1503851233 1503851233";
	static const char none[] = "nothing personal, call 12345678";
	char *out;

	out = kanal_cpr_redact(only, strlen(only));
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_STRING_EQUAL(out, "150385-XXXX");
	kanal_free(out);

	/* Growth by one byte per number, at the tightest packing. */
	out = kanal_cpr_redact(two, strlen(two));
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_STRING_EQUAL(out, "150385-XXXX 150385-XXXX");
	kanal_free(out);

	out = kanal_cpr_redact(none, strlen(none));
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_STRING_EQUAL(out, none);
	kanal_free(out);

	out = kanal_cpr_redact("", 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_STRING_EQUAL(out, "");
	kanal_free(out);

	/* Only text[0..len) is copied, and it is NUL-terminated. */
	out = kanal_cpr_redact(two, 10);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_STRING_EQUAL(out, "150385-XXXX");
	kanal_free(out);
}

static void test_redact_inplace_keeps_length(void)
{
	char buf[] = "child 1503851233 and 150385-1233, mother 3006409120; order 150385123312";
	size_t before = strlen(buf);

	CU_ASSERT_EQUAL(kanal_cpr_redact_inplace(buf), 3);
	CU_ASSERT_EQUAL(strlen(buf), before);
	CU_ASSERT_STRING_EQUAL(buf, "child 150385XXXX and 150385-XXXX, mother 300640XXXX; "
				    "order 150385123312");
	/* Masked text holds no number any more. */
	CU_ASSERT_EQUAL(kanal_cpr_redact_inplace(buf), 0);
	CU_ASSERT_EQUAL(kanal_cpr_redact_inplace(NULL), 0);
}

/* Redaction runs over every log line: a few megabytes must take milliseconds, and the count
 * must be exact (each line holds one number, some lines a non-number). */
static void test_redact_inplace_is_linear_on_large_text(void)
{
	static const char line_cpr[] = "2024-05-01T10:00:00Z info child 150385-1233 sick\n";
	static const char line_other[] = "2024-05-01T10:00:00Z info order 123456789012 ok\n";
	const size_t lines = 100000;
	size_t len1 = strlen(line_cpr), len2 = strlen(line_other);
	char *buf = malloc(lines * (len1 > len2 ? len1 : len2) + 1);
	char *w = buf;
	struct timespec t0, t1;
	double ms;
	size_t count;

	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	for (size_t i = 0; i < lines; i++) {
		if (i % 2 == 0) {
			memcpy(w, line_cpr, len1);
			w += len1;
		} else {
			memcpy(w, line_other, len2);
			w += len2;
		}
	}
	*w = '\0';
	clock_gettime(CLOCK_MONOTONIC, &t0);
	count = kanal_cpr_redact_inplace(buf);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	CU_ASSERT_EQUAL(count, lines / 2);
	CU_ASSERT(strstr(buf, "150385-XXXX sick\n") != NULL);
	CU_ASSERT(!kanal_cpr_find(buf, strlen(buf), NULL, NULL));
	/* About 5 MB: generous for sanitizer and valgrind builds, far too little for anything
	 * quadratic. */
	CU_ASSERT(ms < 2000.0);
	free(buf);
}

/* ---- pseudonyms ------------------------------------------------------------------------ */

static char *s_key_file(const char *dir, const char *text, mode_t mode)
{
	char *path = test_write_file(dir, "key", text);
	chmod(path, mode);
	return path;
}

static void test_pseudonym_is_the_hmac_of_the_digits(void)
{
	char *dir = test_tmpdir("pseudo");
	char *path = s_key_file(dir, "kanal-test-key-0123456789\n", 0600);
	kanal_pseudonym_key_t *key = NULL;
	char a[KANAL_PSEUDONYM_SIZE], b[KANAL_PSEUDONYM_SIZE];

	CU_ASSERT_EQUAL_FATAL(kanal_pseudonym_key_load(path, &key, NULL), 0);
	CU_ASSERT_EQUAL(kanal_cpr_pseudonym(key, "1503851233", a, sizeof a), 0);
	/* HMAC-SHA256("kanal-test-key-0123456789", "1503851233"), computed independently
	 * (Python's hmac module); the key file's trailing newline is not part of the key. */
	CU_ASSERT_STRING_EQUAL(
		a, "person:71a6bccef26c11b5b0d1452ddf1ec0b837dfe69825a954071f097df1c2088333");
	CU_ASSERT_EQUAL(kanal_cpr_pseudonym(key, "150385-1233", b, sizeof b), 0);
	CU_ASSERT_STRING_EQUAL(a, b);
	CU_ASSERT_EQUAL(kanal_cpr_pseudonym(key, "2207884566", b, sizeof b), 0);
	CU_ASSERT_STRING_NOT_EQUAL(a, b);
	CU_ASSERT_EQUAL(kanal_cpr_pseudonym(key, "3213851233", b, sizeof b), KANAL_EINVAL);
	CU_ASSERT_STRING_EQUAL(b, "");
	CU_ASSERT_EQUAL(kanal_cpr_pseudonym(key, "1503851233", b, 20), KANAL_EINVAL);
	kanal_pseudonym_key_destroy(&key);
	CU_ASSERT_PTR_NULL(key);
	test_rmdir_r(dir);
	free(path);
	free(dir);
}

static void test_pseudonym_key_must_be_private(void)
{
	char *dir = test_tmpdir("pseudo");
	char *path = s_key_file(dir, "kanal-test-key-0123456789", 0644);
	kanal_pseudonym_key_t *key = NULL;
	kanal_error_t err;

	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kanal_pseudonym_key_load(path, &key, &err), KANAL_ECONFIG);
	CU_ASSERT_PTR_NULL(key);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "0644"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, path));
	chmod(path, 0400);
	CU_ASSERT_EQUAL(kanal_pseudonym_key_load(path, &key, NULL), 0);
	kanal_pseudonym_key_destroy(&key);
	free(path);
	path = s_key_file(dir, "short", 0600);
	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kanal_pseudonym_key_load(path, &key, &err), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "16"));
	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kanal_pseudonym_key_load("/nonexistent/key", &key, &err), KANAL_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "/nonexistent/key"));
	test_rmdir_r(dir);
	free(path);
	free(dir);
}

/* What a plugin built against SDK 1.0 calls: the old symbols with the `why` buffer (and
 * kanal_json_is_batch returning int), which libkanal keeps beside the new ones. */
int old_cpr_parse(const char *text, kanal_cpr_t *out, char *why,
		  size_t why_size) __asm__("kanal_cpr_parse");
int old_pseudonym_key_load(const char *path, kanal_pseudonym_key_t **out, char *why,
			   size_t why_size) __asm__("kanal_pseudonym_key_load");
int old_json_is_batch(const char *json, size_t len) __asm__("kanal_json_is_batch");

static void test_sdk_1_0_symbols_still_work(void)
{
	char why[8] = "x", big[256];
	kanal_cpr_t cpr;
	kanal_pseudonym_key_t *key = NULL;
	char *dir = test_tmpdir("pseudo");
	char *path = s_key_file(dir, "kanal-test-key-0123456789", 0644);

	/* The reason is cut to the buffer, and cleared on success. */
	CU_ASSERT_EQUAL(old_cpr_parse(s_invalid[0].text, NULL, why, sizeof why), KANAL_EINVAL);
	CU_ASSERT_EQUAL(strlen(why), sizeof why - 1);
	CU_ASSERT_EQUAL(old_cpr_parse(s_valid[0].text, &cpr, why, sizeof why), 0);
	CU_ASSERT_STRING_EQUAL(why, "");
	CU_ASSERT_EQUAL(cpr.year, s_valid[0].year);
	CU_ASSERT_EQUAL(old_cpr_parse(s_invalid[0].text, NULL, NULL, 0), KANAL_EINVAL);
	CU_ASSERT_EQUAL(old_pseudonym_key_load(path, &key, big, sizeof big), KANAL_ECONFIG);
	CU_ASSERT_PTR_NULL(key);
	CU_ASSERT_PTR_NOT_NULL(strstr(big, "0644"));
	chmod(path, 0600);
	CU_ASSERT_EQUAL(old_pseudonym_key_load(path, &key, big, sizeof big), 0);
	CU_ASSERT_PTR_NOT_NULL(key);
	kanal_pseudonym_key_destroy(&key);
	CU_ASSERT_EQUAL(old_json_is_batch(" [", 2), 1);
	CU_ASSERT_EQUAL(old_json_is_batch("{", 1), 0);
	test_rmdir_r(dir);
	free(path);
	free(dir);
}

TEST_MAIN("cpr", TEST(test_parses_valid_numbers), TEST(test_digits_drop_the_hyphen),
	  TEST(test_rejects_invalid_numbers_with_a_reason), TEST(test_sdk_1_0_symbols_still_work),
	  TEST(test_masks_a_valid_number), TEST(test_masks_an_invalid_number_completely),
	  TEST(test_finds_numbers_in_text), TEST(test_find_stays_within_len),
	  TEST(test_find_agrees_with_plain_walk), TEST(test_redact_masks_every_number),
	  TEST(test_redact_edges), TEST(test_redact_inplace_keeps_length),
	  TEST(test_redact_inplace_is_linear_on_large_text),
	  TEST(test_pseudonym_is_the_hmac_of_the_digits), TEST(test_pseudonym_key_must_be_private))
