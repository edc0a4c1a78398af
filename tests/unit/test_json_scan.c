/*
 * tests/unit/test_json_scan.c — the strict JSON scanner (sdk/json_scan.c) against a plain
 * walk: its string scan takes sixteen bytes at a time (the whole text's last sixteen for
 * the final stretch) and validates plain strings inline, and must give exactly the verdict,
 * the end and the error (place and text) that a byte-by-byte walk gives, in every context a
 * string is scanned in and at every alignment.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/error.h>

#include "json_scan.h"
#include "test.h"

/* What a scan of one string found: rc 0 and where it ended, or the error. */
typedef struct verdict {
	int rc;
	size_t end;
	size_t err_pos;
	const char *err_what;
} verdict_t;

static int s_fail(verdict_t *v, size_t pos, const char *what)
{
	v->rc = KANAL_EPARSE;
	v->err_pos = pos;
	v->err_what = what;
	return v->rc;
}

static long s_hex4(const unsigned char *p)
{
	long v = 0;

	for (int i = 0; i < 4; i++) {
		int c = p[i], d = c >= '0' && c <= '9'   ? c - '0'
				  : c >= 'a' && c <= 'f' ? c - 'a' + 10
				  : c >= 'A' && c <= 'F' ? c - 'A' + 10
							 : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/* The plain walk: the JSON string opening at t[open], one byte (or escape, or UTF-8
 * sequence) at a time, with the scanner's error texts and places. */
static int s_plain_string(const unsigned char *t, size_t len, size_t open, verdict_t *v)
{
	size_t i = open + 1;

	memset(v, 0, sizeof *v);
	for (;;) {
		unsigned char c;
		long hi, lo;

		if (i >= len)
			return s_fail(v, open, "unterminated string");
		c = t[i];
		if (c == '"') {
			v->end = i + 1;
			return 0;
		}
		if (c < 0x20)
			return s_fail(v, i, "unescaped control character in a string");
		if (c >= 0x80) {
			size_t n = kanal__utf8_seq(t + i, len - i);
			if (!n)
				return s_fail(v, i, "invalid UTF-8 in a string");
			i += n;
			continue;
		}
		if (c != '\\') {
			i++;
			continue;
		}
		if (i + 1 >= len)
			return s_fail(v, i, "unterminated string");
		if (strchr("\"\\/bfnrt", t[i + 1]) && t[i + 1]) {
			i += 2;
			continue;
		}
		if (t[i + 1] != 'u')
			return s_fail(v, i, "invalid escape in a string");
		if (i + 6 > len || (hi = s_hex4(t + i + 2)) < 0)
			return s_fail(v, i, "invalid \\u escape in a string");
		if (hi >= 0xDC00 && hi <= 0xDFFF)
			return s_fail(v, i, "unpaired surrogate in a \\u escape");
		if (hi < 0xD800 || hi > 0xDBFF) {
			i += 6;
			continue;
		}
		if (i + 12 > len || t[i + 6] != '\\' || t[i + 7] != 'u' ||
		    (lo = s_hex4(t + i + 8)) < 0xDC00 || lo > 0xDFFF)
			return s_fail(v, i, "unpaired surrogate in a \\u escape");
		i += 12;
	}
}

/* Pieces the random strings are made of: mostly plain text, with every kind of byte the
 * scanner must stop at. The first S_VALID pieces may stand anywhere in a string. */
static const char *const s_pieces[] = {
	"a",
	"bcdefgh",
	"0123456789abcdefghij",
	" ",
	"\\n",
	"\\/",
	"\\u00e9",
	"\\uD83D\\uDE00",
	"\x7f",
	"\xc3\xb8",
	"\xe2\x82\xac",
	"\xf0\x9f\x98\x80",
	"}",
	":",
	/* S_VALID */
	"\"",
	"\\",
	"\\ud83d",
	"\\udc00",
	"\\x",
	"\\u12g4",
	"\x01",
	"\x1f",
	"\x80",
	"\xc0\xaf",
	"\xed\xa0\x80",
	"\xe2\x82",
	"\xff",
	"\t",
};

#define S_VALID 14

static unsigned s_next(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return *seed >> 16;
}

/* Appends random pieces to buf from n until about `want` bytes, only valid ones when
 * `valid`; returns the new length. */
static size_t s_random_body(char *buf, size_t n, size_t want, bool valid, unsigned *seed)
{
	const size_t npieces = valid ? S_VALID : sizeof s_pieces / sizeof *s_pieces;

	while (n < want) {
		/* Plain text two times in three, so that long plain runs (several steps of
		 * sixteen) and stops at every offset both occur. */
		const char *p = s_next(seed) % 3 ? s_pieces[s_next(seed) % 3]
						 : s_pieces[s_next(seed) % npieces];
		size_t k = strlen(p);
		memcpy(buf + n, p, k);
		n += k;
	}
	return n;
}

static void s_scan_string(const char *text, size_t len, size_t open, verdict_t *v,
			  int (*scan)(kanal__json_scan_t *))
{
	kanal__json_scan_t s;

	kanal__json_init(&s, text, len);
	s.pos = open;
	memset(v, 0, sizeof *v);
	v->rc = scan(&s);
	if (v->rc == 0)
		v->end = s.pos;
	v->err_pos = s.err_pos;
	v->err_what = s.err_what;
}

static int s_by_string(kanal__json_scan_t *s)
{
	return kanal__json_string(s, NULL, NULL);
}

static int s_by_string_decoded(kanal__json_scan_t *s)
{
	char *out = NULL;
	size_t n = 0;
	int rc = kanal__json_string(s, &out, &n);

	free(out);
	return rc;
}

/* kanal__json_skip of a string value: the inline path. */
static int s_by_skip(kanal__json_scan_t *s)
{
	kanal__json_kind_t kind;

	return kanal__json_skip(s, &kind, NULL);
}

static bool s_same(const verdict_t *a, const verdict_t *b)
{
	if (a->rc != b->rc)
		return false;
	if (a->rc == 0)
		return a->end == b->end;
	return a->err_pos == b->err_pos && a->err_what && b->err_what &&
	       strcmp(a->err_what, b->err_what) == 0;
}

/* A string value on its own (kanal__json_string, with and without decoding, and
 * kanal__json_skip), at every offset from the text's start and with texts both shorter
 * and longer than sixteen bytes: the same verdict, end and error as the plain walk. */
static void test_string_scan_agrees_with_plain_walk(void)
{
	unsigned seed = 19, mismatches = 0, good = 0, bad = 0;

	for (int round = 0; round < 100000; round++) {
		char text[256];
		size_t lead = s_next(&seed) % 20, want = s_next(&seed) % 90, len;
		verdict_t ref, got;

		memset(text, ' ', lead);
		text[lead] = '"';
		len = s_random_body(text, lead + 1, lead + 1 + want, round % 2, &seed);
		if (round % 2) { /* a valid string, closed, then anything */
			text[len++] = '"';
			len = s_random_body(text, len, len + s_next(&seed) % 20, false, &seed);
		}
		s_plain_string((const unsigned char *)text, len, lead, &ref);
		s_scan_string(text, len, lead, &got, s_by_string);
		mismatches += !s_same(&ref, &got);
		s_scan_string(text, len, lead, &got, s_by_string_decoded);
		mismatches += !s_same(&ref, &got);
		s_scan_string(text, len, lead, &got, s_by_skip);
		mismatches += !s_same(&ref, &got);
		if (ref.rc == 0)
			good++;
		else
			bad++;
	}
	CU_ASSERT_EQUAL(mismatches, 0);
	/* Both verdicts were compared many times. */
	CU_ASSERT(good > 10000);
	CU_ASSERT(bad > 10000);
}

/* The same random strings as member names and as member values inside an object, and as
 * an array element, through kanal__json_validate (what kanal_msg_set_data_json runs): a
 * string the walk refuses is refused with its error; a valid one, closed with what its
 * container needs, makes a valid text. */
static void test_strings_in_containers_agree_with_plain_walk(void)
{
	static const char *const shapes[][2] = {
		{ "{\"", "\":1}" },
		{ "{\"k\":\"", "\"}" },
		{ "[\"", "\"]" },
		{ "{\"a\":1,\"b\":[\"", "\"] }" },
	};
	unsigned seed = 7, mismatches = 0, accepted = 0;

	for (int round = 0; round < 100000; round++) {
		const char *const *shape = shapes[s_next(&seed) % 4];
		size_t open = strlen(shape[0]) - 1, want = s_next(&seed) % 70, len, end = 0;
		bool valid = round % 2;
		char text[256];
		kanal__json_scan_t s;
		verdict_t ref;
		int rc;

		memcpy(text, shape[0], open + 1);
		len = s_random_body(text, open + 1, open + 1 + want, valid, &seed);
		if (valid) {
			memcpy(text + len, shape[1], strlen(shape[1]));
			len += strlen(shape[1]);
		}
		s_plain_string((const unsigned char *)text, len, open, &ref);
		rc = kanal__json_validate(&s, text, len, NULL, &end, NULL);
		if (ref.rc != 0)
			mismatches += rc != KANAL_EPARSE || s.err_pos != ref.err_pos ||
				      strcmp(s.err_what, ref.err_what) != 0;
		else if (valid)
			mismatches += rc != 0 || end != len;
		else if (rc != 0)
			mismatches += s.err_pos < ref.end;
		accepted += rc == 0;
	}
	CU_ASSERT_EQUAL(mismatches, 0);
	CU_ASSERT(accepted >= 50000);
}

/* Plain strings of every length ending at every distance from the end of the text: the
 * final stretch is read as the text's last sixteen bytes, never beyond them. */
static void test_final_stretch_of_the_text(void)
{
	for (size_t body = 0; body < 100; body++) {
		for (size_t tail = 0; tail < 20; tail++) {
			size_t len = 1 + body + 1 + tail;
			char *text = malloc(len); /* exact size: valgrind and ASan see overreads */
			kanal__json_scan_t s;
			size_t end = 0;

			CU_ASSERT_PTR_NOT_NULL_FATAL(text);
			text[0] = '"';
			memset(text + 1, 'x', body);
			text[1 + body] = '"';
			memset(text + 2 + body, ' ', tail);
			CU_ASSERT_EQUAL(kanal__json_validate(&s, text, len, NULL, &end, NULL), 0);
			CU_ASSERT_EQUAL(end, body + 2);
			/* Without its closing quote the same string is unterminated. */
			CU_ASSERT_EQUAL(kanal__json_validate(&s, text, 1 + body, NULL, NULL, NULL),
					KANAL_EPARSE);
			CU_ASSERT_STRING_EQUAL(s.err_what, "unterminated string");
			/* A control byte in the last position before the quote is found. */
			if (body > 0) {
				text[body] = '\x01';
				CU_ASSERT_EQUAL(
					kanal__json_validate(&s, text, len, NULL, NULL, NULL),
					KANAL_EPARSE);
				CU_ASSERT_EQUAL(s.err_pos, body);
			}
			free(text);
		}
	}
}

TEST_MAIN("json_scan", TEST(test_string_scan_agrees_with_plain_walk),
	  TEST(test_strings_in_containers_agree_with_plain_walk),
	  TEST(test_final_stretch_of_the_text))
