/*
 * sdk/msg_check.c — the CloudEvents 1.0 attribute rules, shared by the envelope parser and
 * kanal_msg_set_attr so that an event built in code obeys exactly what an event received
 * from outside must obey.
 *
 * Each check returns NULL for an acceptable value or a static reason that completes the
 * sentence "attribute 'time': …". Reasons never quote the value: values come from outside
 * and may carry personal data.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include <kanal/cpr.h>
#include <kanal/error.h>
#include <kanal/msg.h>

#include "json_scan.h"
#include "msg_int.h"

static const char *const s_core_names[MSG_NCORE] = {
	[MSG_ID] = "id",
	[MSG_SOURCE] = "source",
	[MSG_TYPE] = "type",
	[MSG_SUBJECT] = "subject",
	[MSG_TIME] = "time",
	[MSG_DATACONTENTTYPE] = "datacontenttype",
	[MSG_DATASCHEMA] = "dataschema",
};

const char *kanal__msg_core_name(int index)
{
	if (index == MSG_SPECVERSION)
		return "specversion";
	return index >= 0 && index < MSG_NCORE ? s_core_names[index] : "";
}

int kanal__msg_core_index(const char *name, size_t len)
{
	int i;

	/* Called for every attribute set or read: the names' lengths tell most apart before
	 * any comparison (no strlen of the table per call). */
	switch (len) {
	case 2:
		i = MSG_ID;
		break;
	case 4:
		i = name[0] == 't' && name[1] == 'y' ? MSG_TYPE : MSG_TIME;
		break;
	case 6:
		i = MSG_SOURCE;
		break;
	case 7:
		i = MSG_SUBJECT;
		break;
	case 10:
		i = MSG_DATASCHEMA;
		break;
	case 11:
		return memcmp(name, "specversion", 11) == 0 ? MSG_SPECVERSION : MSG_NCORE;
	case 15:
		i = MSG_DATACONTENTTYPE;
		break;
	default:
		return MSG_NCORE;
	}
	/* The first byte, before a call: most extension names have a core name's length. */
	return s_core_names[i][0] == name[0] && memcmp(s_core_names[i], name, len) == 0 ? i
											: MSG_NCORE;
}

/* ---- RFC 3339 timestamps ------------------------------------------------------------- */

/* The one RFC 3339 parser (sdk/time.c) decides, so that an event's time is valid exactly
 * when kanal_time_parse_rfc3339 can read it. */
const char *kanal__msg_check_time(const char *v, size_t len)
{
	return kanal__time_parse(v, len, NULL);
}

/* The last `time` value this thread found valid (a String and RFC 3339), byte for byte,
 * and whether it holds a CPR number (-1: not looked yet). A source stamps every event it
 * makes within a millisecond with the same text, and parsing it again for each was ~5 % of
 * a flooding emitter's instructions; equal bytes get the same verdict without the parse.
 * Thread-local, so without a lock; initial-exec, as the pool's cache (mpool.c). */
#define TIME_MEMO_MAX 47

typedef struct time_memo {
	unsigned char len; /* 0: empty */
	signed char cpr;
	char text[TIME_MEMO_MAX];
} time_memo_t;

static __thread time_memo_t s_time_memo __attribute__((tls_model("initial-exec")));

static bool s_time_memo_has(const char *v, size_t len)
{
	return len != 0 && len == s_time_memo.len && memcmp(v, s_time_memo.text, len) == 0;
}

static void s_time_memo_keep(const char *v, size_t len)
{
	if (len > TIME_MEMO_MAX)
		return;
	memcpy(s_time_memo.text, v, len);
	s_time_memo.len = (unsigned char)len;
	s_time_memo.cpr = -1;
}

bool kanal__msg_time_cpr(const char *v, size_t len)
{
	bool same = s_time_memo_has(v, len), found;

	if (same && s_time_memo.cpr >= 0)
		return s_time_memo.cpr;
	found = len >= 10 && kanal_cpr_find(v, len, NULL, NULL);
	if (same)
		s_time_memo.cpr = found;
	return found;
}

/* ---- RFC 2046 media types -------------------------------------------------------------- */

/* A token character of RFC 2045: visible ASCII except the tspecials. */
static bool s_token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7F && !strchr("()<>@,;:\\\"/[]?=", c);
}

static size_t s_token(const char *v, size_t len, size_t i)
{
	size_t start = i;

	while (i < len && s_token_char((unsigned char)v[i]))
		i++;
	return i - start;
}

/* Scans a quoted-string at v[i] (a '"'); returns its length or 0 when malformed. */
static size_t s_quoted(const char *v, size_t len, size_t i)
{
	size_t start = i++;

	while (i < len) {
		unsigned char c = (unsigned char)v[i];
		if (c == '"')
			return i + 1 - start;
		if (c == '\\') {
			if (i + 1 >= len || ((unsigned char)v[i + 1] < 0x20 && v[i + 1] != '\t') ||
			    v[i + 1] == 0x7F)
				return 0;
			i += 2;
			continue;
		}
		if ((c < 0x20 && c != '\t') || c == 0x7F)
			return 0;
		i++;
	}
	return 0;
}

/*
 * Checks a media type: type "/" subtype, then parameters, each `;` name=value where the
 * value is a token or a quoted string (RFC 2045 section 5.1; blanks around ';' and empty
 * parameters as RFC 9110 allows).
 */
const char *kanal__msg_check_media_type(const char *v, size_t len)
{
	static const char bad[] = "not an RFC 2046 media type (expected type/subtype"
				  " with optional ;name=value parameters)";
	size_t i = 0, n;

	if (len == 0)
		return "must not be empty";
	if (!(n = s_token(v, len, i)))
		return bad;
	i += n;
	if (i >= len || v[i] != '/')
		return bad;
	i++;
	if (!(n = s_token(v, len, i)))
		return bad;
	i += n;
	for (;;) {
		while (i < len && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (i == len)
			return v[len - 1] == ' ' || v[len - 1] == '\t' ? bad : NULL;
		if (v[i] != ';')
			return bad;
		i++;
		while (i < len && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (i == len || v[i] == ';')
			continue;
		if (!(n = s_token(v, len, i)))
			return bad;
		i += n;
		if (i >= len || v[i] != '=')
			return "not an RFC 2046 media type (a parameter needs name=value)";
		i++;
		if (i < len && v[i] == '"')
			n = s_quoted(v, len, i);
		else
			n = s_token(v, len, i);
		if (!n)
			return "not an RFC 2046 media type (bad parameter value)";
		i += n;
	}
}

/* ---- URIs ---------------------------------------------------------------------------- */

/* Finds the first blank or control character; URIs never contain one. */
static bool s_has_blank_or_control(const char *v, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c <= 0x20 || c == 0x7F)
			return true;
	}
	return false;
}

/* A URI-reference (RFC 3986 section 4.1): relative references such as "#fragment" or
 * "daycare-1" are fine; blanks and control characters are not. */
const char *kanal__msg_check_uri_ref(const char *v, size_t len)
{
	if (len == 0)
		return "must not be empty";
	if (s_has_blank_or_control(v, len))
		return "not a URI reference (blanks and control characters are not allowed)";
	return NULL;
}

/* ASCII letters only: <ctype.h> would follow the locale. */
static bool s_ascii_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* An absolute URI: scheme ":" …, scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ). */
const char *kanal__msg_check_uri(const char *v, size_t len)
{
	size_t i = 1;

	if (len == 0)
		return "must not be empty";
	if (!s_ascii_alpha(v[0]))
		return "not an absolute URI (it must start with a scheme such as https:)";
	while (i < len && (s_ascii_alpha(v[i]) || (v[i] >= '0' && v[i] <= '9') || v[i] == '+' ||
			   v[i] == '-' || v[i] == '.'))
		i++;
	if (i >= len || v[i] != ':')
		return "not an absolute URI (it must start with a scheme such as https:)";
	if (s_has_blank_or_control(v, len))
		return "not an absolute URI (blanks and control characters are not allowed)";
	return NULL;
}

/* ---- base64 ---------------------------------------------------------------------------- */

static bool s_b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/* Base64 of RFC 4648 section 4 (standard alphabet). Padding may be left out, but when it is
 * present it must complete the last quantum. */
const char *kanal__msg_check_base64(const char *v, size_t len)
{
	size_t i, body = len, pad = 0;

	while (body > 0 && v[body - 1] == '=' && pad < 3) {
		body--;
		pad++;
	}
	for (i = 0; i < body; i++) {
		if (!s_b64_char((unsigned char)v[i]))
			return "not valid base64 (RFC 4648 alphabet A-Z a-z 0-9 + /)";
	}
	if (body % 4 == 1 || pad > 2 || (pad && (len % 4 != 0 || body % 4 == 0)))
		return "not valid base64 (bad length or padding)";
	return NULL;
}

/* ---- the String type ------------------------------------------------------------------ */

/* The code point of the valid UTF-8 sequence of n bytes at p. */
static uint32_t s_code_point(const unsigned char *p, size_t n)
{
	uint32_t cp = n == 2 ? p[0] & 0x1F : n == 3 ? p[0] & 0x0F : p[0] & 0x07;

	for (size_t i = 1; i < n; i++)
		cp = (cp << 6) | (p[i] & 0x3F);
	return cp;
}

/* True when none of the eight bytes of w is outside printable ASCII (0x20-0x7E): no byte
 * from 0x80 up, none below 0x20 ((w - n·0x01…) & ~w & 0x80… is non-zero iff some byte is
 * below n) and no DEL (a zero byte in w ^ 0x7F…). */
static inline bool s_printable8(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
	uint64_t del = w ^ (ones * 0x7F);

	return !((w & high) | ((w - ones * 0x20) & ~w & high) | ((del - ones) & ~del & high));
}

/* The String check from p[i] on, the bytes before i being printable ASCII: one code point
 * at a time where the text is not plain, eight bytes at a time where it is. */
static const char *s_check_string_from(const unsigned char *p, size_t i, size_t len)
{
	while (i < len) {
		uint32_t cp;
		size_t n;
		uint64_t w;

		if (i + 8 <= len && (memcpy(&w, p + i, sizeof w), s_printable8(w))) {
			i += 8;
			continue;
		}
		if (p[i] < 0x80) {
			if (p[i] == 0)
				return "must not contain a NUL character";
			if (p[i] < 0x20 || p[i] == 0x7F)
				return "must not contain a control character (U+0000-U+001F,"
				       " U+007F-U+009F)";
			i++;
			continue;
		}
		n = kanal__utf8_seq(p + i, len - i);
		if (!n)
			return "not valid UTF-8";
		cp = s_code_point(p + i, n);
		if (cp >= 0x80 && cp <= 0x9F)
			return "must not contain a control character (U+0000-U+001F,"
			       " U+007F-U+009F)";
		if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE)
			return "must not contain a Unicode noncharacter";
		i += n;
	}
	return NULL;
}

/*
 * The CloudEvents type system's String: valid UTF-8 (so no surrogates) without the control
 * characters U+0000-U+001F and U+007F-U+009F and without Unicode noncharacters (U+FDD0-U+FDEF
 * and the last two code points of every plane). Every attribute that holds text is a String
 * first, so a newline in an id can never reach a log line, a header or a file name.
 *
 * Printable ASCII, the usual attribute value, is accepted here eight bytes at a time, the
 * last (or only) stretch as overlapping words: the whole text's last eight bytes, or for
 * four to seven bytes its first four and last four (under a flood this check was ~7 % of
 * an emitting thread, most of it on the bytes after the last whole word). Anything else is
 * decided by the walk, from the first word that is not plain
 * (tests/unit/test_msg.c compares the two on random texts).
 */
const char *kanal__msg_check_string(const char *v, size_t len)
{
	const unsigned char *p = (const unsigned char *)v;
	uint64_t w;
	uint32_t lo, hi;
	size_t i = 0;

	if (len >= 8) {
		for (; i + 8 <= len; i += 8) {
			memcpy(&w, p + i, sizeof w);
			if (!s_printable8(w))
				return s_check_string_from(p, i, len);
		}
		if (i < len && (memcpy(&w, p + len - 8, sizeof w), !s_printable8(w)))
			return s_check_string_from(p, i, len);
		return NULL;
	}
	if (len >= 4) {
		memcpy(&lo, p, sizeof lo);
		memcpy(&hi, p + len - 4, sizeof hi);
		return s_printable8(lo | (uint64_t)hi << 32) ? NULL
							     : s_check_string_from(p, 0, len);
	}
	for (; i < len; i++)
		if (p[i] < 0x20 || p[i] >= 0x7F)
			return s_check_string_from(p, 0, len);
	return NULL;
}

/* ---- names and core attributes ------------------------------------------------------- */

/* True when each of the eight bytes of w is a-z or 0-9. For a byte b below 0x80,
 * b + (0x80 - lo) has its high bit set iff b >= lo and b + (0x7F - hi) iff b > hi, and
 * neither sum carries into the next byte; a byte from 0x80 up fails on its own. */
static inline bool s_name8(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
	uint64_t letter = (w + ones * (0x80 - 'a')) & ~(w + ones * (0x7F - 'z'));
	uint64_t digit = (w + ones * (0x80 - '0')) & ~(w + ones * (0x7F - '9'));

	return !(w & high) && ((letter | digit) & high) == high;
}

/* True when name[0..len) (len at least 4) is all a-z and 0-9, a word at a time: the last
 * (or only) stretch as overlapping words, as in kanal__msg_check_string. */
static bool s_plain_name(const char *name, size_t len)
{
	uint64_t w;
	uint32_t lo, hi;
	size_t i;

	if (len < 8) {
		memcpy(&lo, name, sizeof lo);
		memcpy(&hi, name + len - 4, sizeof hi);
		return s_name8(lo | (uint64_t)hi << 32);
	}
	for (i = 0; i + 8 <= len; i += 8)
		if (memcpy(&w, name + i, sizeof w), !s_name8(w))
			return false;
	return i == len || (memcpy(&w, name + len - 8, sizeof w), s_name8(w));
}

const char *kanal__msg_check_ext_name(const char *name, size_t len)
{
	size_t i;

	if (len == 0)
		return "an attribute name must not be empty";
	for (i = len >= 4 && s_plain_name(name, len) ? len : 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
			return "not a valid extension name (lower-case letters a-z and digits"
			       " only)";
	}
	if (len == 4 && memcmp(name, "data", 4) == 0)
		return "reserved name (set data with kanal_msg_set_data_*)";
	return NULL;
}

const char *kanal__msg_check_core(int index, const char *v, size_t len)
{
	const char *why;

	if (index == MSG_SPECVERSION)
		return len == 3 && memcmp(v, "1.0", 3) == 0
			       ? NULL
			       : "must be \"1.0\" (the only CloudEvents version kanal reads)";
	if (len == 0)
		return "must not be empty";
	if (len > UINT32_MAX) /* the message keeps core lengths in 32 bits */
		return "too long";
	if (index == MSG_TIME && s_time_memo_has(v, len))
		return NULL;
	if ((why = kanal__msg_check_string(v, len)))
		return why;
	switch (index) {
	case MSG_SOURCE:
		return kanal__msg_check_uri_ref(v, len);
	case MSG_TIME:
		if (!(why = kanal__msg_check_time(v, len)))
			s_time_memo_keep(v, len);
		return why;
	case MSG_DATACONTENTTYPE:
		return kanal__msg_check_media_type(v, len);
	case MSG_DATASCHEMA:
		return kanal__msg_check_uri(v, len);
	default:
		return NULL;
	}
}

/* ---- source ownership ------------------------------------------------------------------ */

/* Glob match where '*' is any run of characters; iterative, with one backtrack point, so a
 * pattern from a config cannot make it exponential. */
bool kanal_source_matches(const char *pat, const char *text)
{
	const char *star = NULL, *resume = NULL;

	if (!pat || !text)
		return false;
	while (*text) {
		if (*pat == '*') {
			star = pat++;
			resume = text;
		} else if (*pat == *text) {
			pat++;
			text++;
		} else if (star) {
			pat = star + 1;
			text = ++resume;
		} else {
			return false;
		}
	}
	while (*pat == '*')
		pat++;
	return *pat == '\0';
}

/* ---- error texts ----------------------------------------------------------------------- */

void kanal__msg_safe_name(char *out, size_t size, const char *name, size_t len)
{
	char *copy;
	size_t i, o = 0;

	if (!size)
		return;
	out[0] = '\0';
	if (!name)
		return;
	/* Mask first, on the whole name, so that truncation cannot split a CPR number into a
	 * piece the masker no longer recognises. */
	copy = malloc(len + 1);
	if (!copy) {
		snprintf(out, size, "?");
		return;
	}
	for (i = 0; i < len; i++)
		copy[i] = name[i] ? name[i] : '?';
	copy[len] = '\0';
	kanal_cpr_redact_inplace(copy);
	for (i = 0; i < len && o + 1 < size; i++) {
		unsigned char c = (unsigned char)copy[i];
		out[o++] = c >= 0x20 && c < 0x7F ? (char)c : '?';
	}
	out[o] = '\0';
	free(copy);
}

void kanal__msg_error(kanal_error_t *err, const char *source, int line, int column,
		      const char *name, size_t name_len, const char *fmt, ...)
{
	char text[sizeof err->text];
	char safe[sizeof err->attribute];
	va_list ap;

	if (!err || err->text[0])
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (!name) {
		kanal_error_set(err, source, line, column, NULL, "%s", text);
		return;
	}
	kanal__msg_safe_name(safe, sizeof safe, name, name_len);
	kanal_error_set(err, source, line, column, safe, "attribute '%s': %s", safe, text);
}
