/*
 * sdk/json_scan.c — the strict JSON scanner and the JSON writer behind kanal_msg_t.
 *
 * Routing must not pay for parsing `data`, so the envelope parser walks the event text with
 * this scanner: strings are decoded only where a value is kept, and nested values are
 * validated and skipped in one pass, without recursion (a bit stack tracks up to
 * KANAL__JSON_MAX_DEPTH open containers). Whatever the scanner accepts, jansson must load
 * later without complaint, because the data tree is built lazily from the raw text; so it
 * applies jansson's rules too: strict UTF-8, paired surrogates, integers that fit in 64
 * bits, reals that do not overflow a double.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <kanal/error.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "json_scan.h"

void kanal__json_init(kanal__json_scan_t *s, const char *text, size_t len)
{
	s->text = text;
	s->len = len;
	s->pos = 0;
	s->err_pos = 0;
	s->err_what = NULL;
}

/* kanal__json_ws and kanal__json_peek, inline for the scanner's own loops: most tokens
 * have no whitespace before them, and a call per token was ~12 % of validating an event's
 * data. */
static inline void s_ws(kanal__json_scan_t *s)
{
	while (s->pos < s->len) {
		unsigned char c = (unsigned char)s->text[s->pos];
		if (c > ' ' || (c != ' ' && c != '\t' && c != '\n' && c != '\r'))
			break;
		s->pos++;
	}
}

static inline int s_peek(const kanal__json_scan_t *s)
{
	return s->pos < s->len ? (unsigned char)s->text[s->pos] : -1;
}

void kanal__json_ws(kanal__json_scan_t *s)
{
	s_ws(s);
}

int kanal__json_peek(const kanal__json_scan_t *s)
{
	return s_peek(s);
}

int kanal__json_fail(kanal__json_scan_t *s, size_t pos, const char *what)
{
	if (!s->err_what) {
		s->err_pos = pos;
		s->err_what = what;
	}
	return KANAL_EPARSE;
}

size_t kanal__utf8_seq(const unsigned char *p, size_t avail)
{
	uint32_t cp;
	size_t n, i;

	if (avail == 0)
		return 0;
	if (p[0] < 0x80)
		return 1;
	if (p[0] < 0xC2)
		return 0; /* a continuation byte, or an overlong two-byte lead */
	if (p[0] < 0xE0) {
		n = 2;
		cp = p[0] & 0x1F;
	} else if (p[0] < 0xF0) {
		n = 3;
		cp = p[0] & 0x0F;
	} else if (p[0] < 0xF5) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000))
		return 0; /* overlong */
	if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

bool kanal__utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		size_t n;
		uint64_t w;
		/* Plain ASCII, the usual attribute value, eight bytes at a time. */
		if (i + 8 <= len && (memcpy(&w, p + i, sizeof w), !(w & 0x8080808080808080ULL))) {
			i += 8;
			continue;
		}
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		n = kanal__utf8_seq(p + i, len - i);
		if (!n)
			return false;
		i += n;
	}
	return true;
}

void kanal__json_line_col(const char *text, size_t len, size_t pos, int *line, int *col)
{
	size_t i, line_start = 0;
	int l = 1;

	if (pos > len)
		pos = len;
	for (i = 0; i < pos; i++) {
		if (text[i] == '\n') {
			l++;
			line_start = i + 1;
		}
	}
	*line = l;
	*col = (int)(pos - line_start) + 1;
}

/* Reads four hex digits at p; returns the value or -1. */
static long s_hex4(const unsigned char *p)
{
	long v = 0;
	int i;

	for (i = 0; i < 4; i++) {
		unsigned char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/* Checks the escape sequence at text[i] (a backslash). Returns its length in bytes and the
 * code point it stands for in *cp, or 0 after recording the error. A high surrogate must be
 * followed by an escaped low one (jansson refuses lone surrogates, and so do we). */
static size_t s_escape(kanal__json_scan_t *s, size_t i, uint32_t *cp)
{
	const unsigned char *t = (const unsigned char *)s->text;
	long hi, lo;

	if (i + 1 >= s->len) {
		kanal__json_fail(s, i, "unterminated string");
		return 0;
	}
	switch (t[i + 1]) {
	case '"':
		*cp = '"';
		return 2;
	case '\\':
		*cp = '\\';
		return 2;
	case '/':
		*cp = '/';
		return 2;
	case 'b':
		*cp = '\b';
		return 2;
	case 'f':
		*cp = '\f';
		return 2;
	case 'n':
		*cp = '\n';
		return 2;
	case 'r':
		*cp = '\r';
		return 2;
	case 't':
		*cp = '\t';
		return 2;
	case 'u':
		break;
	default:
		kanal__json_fail(s, i, "invalid escape in a string");
		return 0;
	}
	if (i + 6 > s->len || (hi = s_hex4(t + i + 2)) < 0) {
		kanal__json_fail(s, i, "invalid \\u escape in a string");
		return 0;
	}
	if (hi >= 0xDC00 && hi <= 0xDFFF) {
		kanal__json_fail(s, i, "unpaired surrogate in a \\u escape");
		return 0;
	}
	if (hi < 0xD800 || hi > 0xDBFF) {
		*cp = (uint32_t)hi;
		return 6;
	}
	if (i + 12 > s->len || t[i + 6] != '\\' || t[i + 7] != 'u' ||
	    (lo = s_hex4(t + i + 8)) < 0xDC00 || lo > 0xDFFF) {
		kanal__json_fail(s, i, "unpaired surrogate in a \\u escape");
		return 0;
	}
	*cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
	return 12;
}

/* Writes code point cp as UTF-8 at out; returns the byte count. */
static size_t s_put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Decodes the already validated string body text[start..end) into a new buffer. Escapes
 * never grow (six bytes give at most three, twelve give four), so end - start + 1 bytes
 * are enough. */
static char *s_decode(kanal__json_scan_t *s, size_t start, size_t end, bool escaped,
		      size_t *out_len)
{
	char *buf = malloc(end - start + 1);
	size_t i = start, o = 0;

	if (!buf)
		return NULL;
	if (!escaped) {
		memcpy(buf, s->text + start, end - start);
		o = end - start;
	} else {
		while (i < end) {
			uint32_t cp;
			if (s->text[i] != '\\') {
				buf[o++] = s->text[i++];
				continue;
			}
			i += s_escape(s, i, &cp);
			o += s_put_utf8(buf + o, cp);
		}
	}
	buf[o] = '\0';
	*out_len = o;
	return buf;
}

#ifndef __SSE2__
/* Word-at-a-time test for the bytes a string body may hold without a closer look: true
 * when none of the 8 bytes of w is a quote, a backslash, a control character (< 0x20) or
 * a non-ASCII byte. (x - 0x01…) & ~x & 0x80… is non-zero iff some byte of x is zero,
 * and (w - n·0x01…) & ~w & 0x80… iff some byte is below n, for bytes under 0x80.) */
static inline bool s_plain8(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
	uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');

	return !((w & high) | ((q - ones) & ~q & high) | ((b - ones) & ~b & high) |
		 ((w - ones * 0x20) & ~w & high));
}
#endif

#ifdef __SSE2__
/* One bit per byte of the sixteen at p that is not plain (see s_plain8): a signed compare
 * below 0x20 catches control characters and, as negative numbers, every byte from 0x80
 * up. */
static inline __m128i s_odd16v(const unsigned char *p)
{
	const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
		      space = _mm_set1_epi8(0x20);
	__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);

	return _mm_or_si128(_mm_cmplt_epi8(v, space),
			    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)));
}

static inline unsigned s_odd16(const unsigned char *p)
{
	return (unsigned)_mm_movemask_epi8(s_odd16v(p));
}
#endif

/* The offset, from i, of the first byte of t[i..len) that is not plain (see s_plain8),
 * or len - i when there is none; without SSE2, of the last stretch shorter than the step.
 * Sixteen bytes at a time with SSE2 (every x86-64 has it), the last stretch too: the text's
 * final sixteen bytes, less those already seen. */
static inline size_t s_plain_run(const unsigned char *t, size_t i, size_t len)
{
#ifdef __SSE2__
	size_t start = i;
	unsigned mask;

	while (i + 16 <= len) {
		mask = s_odd16(t + i);
		if (mask)
			return i - start + (size_t)__builtin_ctz(mask);
		i += 16;
		/* Past sixteen plain bytes, likely a long string (an event's data often has
		 * one): thirty-two bytes a step, one test for both halves, until a step finds
		 * something, which the steps of sixteen then place. */
		while (i + 32 <= len &&
		       !_mm_movemask_epi8(_mm_or_si128(s_odd16v(t + i), s_odd16v(t + i + 16))))
			i += 32;
	}
	if (i == len || len < 16)
		return i - start;
	mask = s_odd16(t + len - 16) >> (i - (len - 16));
	return mask ? i - start + (size_t)__builtin_ctz(mask) : len - start;
#else
	size_t start = i;

	while (i + 8 <= len) {
		uint64_t w;
		memcpy(&w, t + i, sizeof w);
		if (!s_plain8(w))
			break;
		i += 8;
	}
	return i - start;
#endif
}

/* Scans the rest of the string that opens at text[open], from i (the bytes before i are
 * plain), as kanal__json_string describes. Never inlined: its escape's code point lives on
 * the stack, which would give every caller a stack-protector check. */
static __attribute__((noinline)) int s_string_from(kanal__json_scan_t *s, size_t open, size_t i,
						   char **out, size_t *out_len)
{
	const unsigned char *t = (const unsigned char *)s->text;
	bool escaped = false;
	size_t dummy_len;

	for (;;) {
		unsigned char c;
		size_t n;
		uint32_t cp;

		/* Plain ASCII, the bulk of most strings, many bytes at a time. */
		i += s_plain_run(t, i, s->len);
		if (i >= s->len)
			return kanal__json_fail(s, open, "unterminated string");
		c = t[i];
		if (c == '"')
			break;
		if (c == '\\') {
			n = s_escape(s, i, &cp);
			if (!n)
				return KANAL_EPARSE;
			escaped = true;
			i += n;
		} else if (c < 0x20) {
			return kanal__json_fail(s, i, "unescaped control character in a string");
		} else if (c < 0x80) {
			i++;
		} else {
			n = kanal__utf8_seq(t + i, s->len - i);
			if (!n)
				return kanal__json_fail(s, i, "invalid UTF-8 in a string");
			i += n;
		}
	}
	s->pos = i + 1;
	if (!out)
		return 0;
	*out = s_decode(s, open + 1, i, escaped, out_len ? out_len : &dummy_len);
	return *out ? 0 : KANAL_ENOMEM;
}

int kanal__json_string(kanal__json_scan_t *s, char **out, size_t *out_len)
{
	if (out)
		*out = NULL;
	if (s->pos >= s->len || s->text[s->pos] != '"')
		return kanal__json_fail(s, s->pos, "expected a string");
	return s_string_from(s, s->pos, s->pos + 1, out, out_len);
}

/* Validates and skips the string at the cursor, which is a '"'. A plain string, the usual
 * member name or value, is scanned here without a call; anything else goes on from the
 * first byte that is not plain. */
static inline int s_skip_string(kanal__json_scan_t *s)
{
	const unsigned char *t = (const unsigned char *)s->text;
	size_t i = s->pos + 1;

	i += s_plain_run(t, i, s->len);
	if (i < s->len && t[i] == '"') {
		s->pos = i + 1;
		return 0;
	}
	return s_string_from(s, s->pos, i, NULL, NULL);
}

/* Checks an integer of 19 digits or more against the 64-bit range, as jansson does. Not
 * inlined, for the same reason as s_string_from. */
static __attribute__((noinline)) bool s_integer_fits(const char *p, size_t n)
{
	char buf[32];
	long long v;

	if (n >= sizeof buf)
		return false;
	memcpy(buf, p, n);
	buf[n] = '\0';
	errno = 0;
	v = strtoll(buf, NULL, 10);
	(void)v;
	return errno != ERANGE;
}

/* Scans the number at the cursor and stores whether it is an integer. A real whose decimal
 * magnitude might reach DBL_MAX is handed to jansson itself, so both always agree. */
static int s_number(kanal__json_scan_t *s, kanal__json_kind_t *kind)
{
	const char *t = s->text;
	size_t start = s->pos, i = s->pos;
	long int_digits = 0, exponent = 0;
	bool is_int = true, exp_negative = false;

	if (i < s->len && t[i] == '-')
		i++;
	if (i < s->len && t[i] == '0') {
		i++;
	} else if (i < s->len && t[i] >= '1' && t[i] <= '9') {
		while (i < s->len && t[i] >= '0' && t[i] <= '9') {
			i++;
			int_digits++;
		}
	} else {
		return kanal__json_fail(s, i, "invalid number");
	}
	if (i < s->len && t[i] == '.') {
		is_int = false;
		i++;
		if (i >= s->len || t[i] < '0' || t[i] > '9')
			return kanal__json_fail(s, i, "invalid number: a digit must follow '.'");
		while (i < s->len && t[i] >= '0' && t[i] <= '9')
			i++;
	}
	if (i < s->len && (t[i] == 'e' || t[i] == 'E')) {
		is_int = false;
		i++;
		if (i < s->len && (t[i] == '+' || t[i] == '-'))
			exp_negative = t[i++] == '-';
		if (i >= s->len || t[i] < '0' || t[i] > '9')
			return kanal__json_fail(s, i,
						"invalid number: a digit must follow the exponent");
		while (i < s->len && t[i] >= '0' && t[i] <= '9') {
			if (exponent < 100000)
				exponent = exponent * 10 + (t[i] - '0');
			i++;
		}
	}
	if (is_int && int_digits >= 19 && !s_integer_fits(t + start, i - start))
		return kanal__json_fail(s, start, "integer out of the 64-bit range");
	if (!is_int && int_digits + (exp_negative ? -exponent : exponent) > 300) {
		json_t *probe = json_loadb(t + start, i - start, JSON_DECODE_ANY, NULL);
		if (!probe)
			return kanal__json_fail(s, start, "real number out of range");
		json_decref(probe);
	}
	s->pos = i;
	*kind = is_int ? KANAL__JSON_INTEGER : KANAL__JSON_REAL;
	return 0;
}

/* Scans the literal `word` at the cursor. */
static int s_literal(kanal__json_scan_t *s, const char *word, size_t n)
{
	if (s->len - s->pos < n || memcmp(s->text + s->pos, word, n) != 0)
		return kanal__json_fail(s, s->pos,
					"invalid literal (expected true, false or null)");
	s->pos += n;
	return 0;
}

/* Scans one scalar at the cursor, or reports that a container starts there (*kind set to
 * OBJECT or ARRAY, cursor unmoved). */
static int s_scalar(kanal__json_scan_t *s, kanal__json_kind_t *kind)
{
	switch (s_peek(s)) {
	case '"':
		*kind = KANAL__JSON_STRING;
		return s_skip_string(s);
	case 't':
		*kind = KANAL__JSON_TRUE;
		return s_literal(s, "true", 4);
	case 'f':
		*kind = KANAL__JSON_FALSE;
		return s_literal(s, "false", 5);
	case 'n':
		*kind = KANAL__JSON_NULL;
		return s_literal(s, "null", 4);
	case '{':
		*kind = KANAL__JSON_OBJECT;
		return 0;
	case '[':
		*kind = KANAL__JSON_ARRAY;
		return 0;
	case '-':
	case '0':
	case '1':
	case '2':
	case '3':
	case '4':
	case '5':
	case '6':
	case '7':
	case '8':
	case '9':
		return s_number(s, kind);
	case -1:
		return kanal__json_fail(s, s->pos, "unexpected end of text (expected a value)");
	default:
		return kanal__json_fail(s, s->pos, "expected a JSON value");
	}
}

/*
 * Validates and skips one value. Containers are tracked on a 64-bit stack (bit set: object)
 * instead of by recursion, so hostile nesting costs neither stack nor time: the scan stops
 * at the first level beyond KANAL__JSON_MAX_DEPTH.
 */
int kanal__json_skip(kanal__json_scan_t *s, kanal__json_kind_t *kind_out, int *depth_out)
{
	uint64_t stack = 0;
	int depth = 0, max_depth = 0;
	kanal__json_kind_t first = KANAL__JSON_NULL, kind = KANAL__JSON_NULL;
	bool is_first = true;
	int c;

value:
	s_ws(s);
	if (s_scalar(s, &kind))
		return KANAL_EPARSE;
	if (is_first) {
		first = kind;
		is_first = false;
	}
	if (kind == KANAL__JSON_OBJECT || kind == KANAL__JSON_ARRAY) {
		if (depth == KANAL__JSON_MAX_DEPTH)
			return kanal__json_fail(s, s->pos, "nesting deeper than 64 levels");
		stack = (stack << 1) | (kind == KANAL__JSON_OBJECT);
		depth++;
		if (depth > max_depth)
			max_depth = depth;
		s->pos++;
		s_ws(s);
		c = s_peek(s);
		if (kind == KANAL__JSON_OBJECT) {
			if (c == '}') {
				s->pos++;
				goto close;
			}
			goto member;
		}
		if (c == ']') {
			s->pos++;
			goto close;
		}
		goto value;
	}
	goto next;

member:
	s_ws(s);
	if (s_peek(s) != '"')
		return kanal__json_fail(s, s->pos, "expected a member name in double quotes");
	if (s_skip_string(s))
		return KANAL_EPARSE;
	s_ws(s);
	if (s_peek(s) != ':')
		return kanal__json_fail(s, s->pos, "expected ':' after a member name");
	s->pos++;
	goto value;

close:
	stack >>= 1;
	depth--;
next:
	if (depth == 0) {
		if (kind_out)
			*kind_out = first;
		if (depth_out)
			*depth_out = max_depth;
		return 0;
	}
	s_ws(s);
	c = s_peek(s);
	if (c < 0)
		return kanal__json_fail(s, s->pos,
					"unexpected end of text (a '{' or '[' is not closed)");
	if (stack & 1) {
		if (c == ',') {
			s->pos++;
			goto member;
		}
		if (c == '}') {
			s->pos++;
			goto close;
		}
		return kanal__json_fail(s, s->pos, "expected ',' or '}' in an object");
	}
	if (c == ',') {
		s->pos++;
		goto value;
	}
	if (c == ']') {
		s->pos++;
		goto close;
	}
	return kanal__json_fail(s, s->pos, "expected ',' or ']' in an array");
}

/* True when the member name at the cursor (a string, already validated) is seg[0..n); moves
 * past it. A name with escapes is decoded to compare; one without is compared in place. */
static bool s_name_is(kanal__json_scan_t *s, const char *seg, size_t n, int *rc)
{
	size_t open = s->pos;
	bool same;
	char *name;
	size_t name_len;

	*rc = kanal__json_string(s, NULL, NULL);
	if (*rc)
		return false;
	if (!memchr(s->text + open + 1, '\\', s->pos - open - 2))
		return s->pos - open - 2 == n && memcmp(s->text + open + 1, seg, n) == 0;
	s->pos = open;
	*rc = kanal__json_string(s, &name, &name_len);
	if (*rc)
		return false;
	same = name_len == n && memcmp(name, seg, n) == 0;
	free(name);
	return same;
}

int kanal__json_find(const char *text, size_t len, const char *path, size_t *start, size_t *end,
		     kanal__json_kind_t *kind)
{
	kanal__json_scan_t s;
	const char *p = path && *path ? path : NULL;
	int rc;

	kanal__json_init(&s, text, len);
	s_ws(&s);
	while (p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		int c = s_peek(&s);

		if (c == '{') {
			size_t found = SIZE_MAX;
			s.pos++;
			s_ws(&s);
			if (s_peek(&s) == '}')
				return KANAL_ENOTFOUND;
			for (;;) {
				bool match;
				s_ws(&s);
				match = s_name_is(&s, p, n, &rc);
				if (rc)
					return rc;
				s_ws(&s);
				if (s_peek(&s) != ':')
					return KANAL_EPARSE;
				s.pos++;
				s_ws(&s);
				if (match)
					found = s.pos; /* the last one counts: keep looking */
				if (kanal__json_skip(&s, NULL, NULL))
					return KANAL_EPARSE;
				s_ws(&s);
				c = s_peek(&s);
				s.pos++;
				if (c == '}')
					break;
				if (c != ',')
					return KANAL_EPARSE;
			}
			if (found == SIZE_MAX)
				return KANAL_ENOTFOUND;
			s.pos = found;
		} else if (c == '[') {
			size_t index = 0;
			if (n == 0 || n > 18 || (n > 1 && p[0] == '0'))
				return KANAL_ENOTFOUND; /* an index: digits, no leading zero */
			for (size_t i = 0; i < n; i++) {
				if (p[i] < '0' || p[i] > '9')
					return KANAL_ENOTFOUND;
				index = index * 10 + (size_t)(p[i] - '0');
			}
			s.pos++;
			s_ws(&s);
			if (s_peek(&s) == ']')
				return KANAL_ENOTFOUND;
			for (size_t i = 0; i < index; i++) {
				if (kanal__json_skip(&s, NULL, NULL))
					return KANAL_EPARSE;
				s_ws(&s);
				c = s_peek(&s);
				s.pos++;
				if (c == ']')
					return KANAL_ENOTFOUND;
				if (c != ',')
					return KANAL_EPARSE;
			}
			s_ws(&s);
		} else {
			return KANAL_ENOTFOUND; /* a scalar has no members */
		}
		p = dot ? dot + 1 : NULL;
	}
	*start = s.pos;
	if (kanal__json_skip(&s, kind, NULL))
		return KANAL_EPARSE;
	*end = s.pos;
	return 0;
}

int kanal__json_validate(kanal__json_scan_t *s, const char *text, size_t len, size_t *start,
			 size_t *end, int *depth)
{
	size_t value_start;

	kanal__json_init(s, text, len);
	s_ws(s);
	value_start = s->pos;
	if (kanal__json_skip(s, NULL, depth))
		return KANAL_EPARSE;
	if (start)
		*start = value_start;
	if (end)
		*end = s->pos;
	s_ws(s);
	if (s->pos != s->len)
		return kanal__json_fail(s, s->pos, "unexpected text after the JSON value");
	return 0;
}

/* ---- writer ---------------------------------------------------------------------------- */

void kanal__jbuf_init(kanal__jbuf_t *b, size_t hint)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->failed = false;
	if (hint) {
		b->data = malloc(hint);
		if (b->data)
			b->cap = hint;
	}
}

/* Makes room for n more bytes plus a terminating NUL. */
static bool s_reserve(kanal__jbuf_t *b, size_t n)
{
	size_t want, cap;
	char *grown;

	if (b->failed)
		return false;
	if (n > SIZE_MAX - b->len - 1)
		goto fail;
	want = b->len + n + 1;
	if (want <= b->cap)
		return true;
	cap = b->cap ? b->cap : 64;
	while (cap < want)
		cap = cap > SIZE_MAX / 2 ? want : cap * 2;
	grown = realloc(b->data, cap);
	if (!grown)
		goto fail;
	b->data = grown;
	b->cap = cap;
	return true;
fail:
	b->failed = true;
	return false;
}

void kanal__jbuf_put(kanal__jbuf_t *b, const void *bytes, size_t n)
{
	if (!n || !s_reserve(b, n))
		return;
	memcpy(b->data + b->len, bytes, n);
	b->len += n;
}

void kanal__jbuf_puts(kanal__jbuf_t *b, const char *str)
{
	kanal__jbuf_put(b, str, strlen(str));
}

void kanal__jbuf_putc(kanal__jbuf_t *b, char c)
{
	if (!s_reserve(b, 1))
		return;
	b->data[b->len++] = c;
}

/* Returns the escape for byte c ("\\n"…), or NULL when c needs \u00XX or no escape. */
static const char *s_short_escape(unsigned char c)
{
	switch (c) {
	case '"':
		return "\\\"";
	case '\\':
		return "\\\\";
	case '\b':
		return "\\b";
	case '\f':
		return "\\f";
	case '\n':
		return "\\n";
	case '\r':
		return "\\r";
	case '\t':
		return "\\t";
	default:
		return NULL;
	}
}

static inline bool s_needs_escape(unsigned char c)
{
	return c < 0x20 || c == '"' || c == '\\';
}

size_t kanal__json_string_size(const char *str, size_t len)
{
	size_t i, n = 2;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)str[i];
		if (!s_needs_escape(c))
			n += 1;
		else
			n += s_short_escape(c) ? 2 : 6;
	}
	return n;
}

void kanal__jbuf_put_string(kanal__jbuf_t *b, const char *str, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, run = 0;

	kanal__jbuf_putc(b, '"');
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)str[i];
		const char *esc;
		char u[6];

		if (!s_needs_escape(c))
			continue;
		kanal__jbuf_put(b, str + run, i - run);
		run = i + 1;
		esc = s_short_escape(c);
		if (esc) {
			kanal__jbuf_put(b, esc, 2);
			continue;
		}
		u[0] = '\\';
		u[1] = 'u';
		u[2] = '0';
		u[3] = '0';
		u[4] = hex[c >> 4];
		u[5] = hex[c & 0xF];
		kanal__jbuf_put(b, u, sizeof u);
	}
	kanal__jbuf_put(b, str + run, len - run);
	kanal__jbuf_putc(b, '"');
}

char *kanal__jbuf_finish(kanal__jbuf_t *b, size_t *len)
{
	char *out;

	if (!s_reserve(b, 0)) {
		kanal__jbuf_discard(b);
		return NULL;
	}
	b->data[b->len] = '\0';
	out = b->data;
	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return out;
}

void kanal__jbuf_discard(kanal__jbuf_t *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->failed = false;
}
