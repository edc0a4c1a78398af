/*
 * sdk/json_scan.h — a small, strict JSON scanner and writer, private to libkanal.
 *
 * The message parser (msg_parse.c) reads the CloudEvents envelope with this scanner instead
 * of building a jansson tree: it decodes the top-level members one by one and validates and
 * skips the `data` value without allocating, keeping only its byte span. The scanner is at
 * least as strict as jansson (UTF-8, escapes, surrogates, number range), so a data value it
 * accepts always loads later with json_loadb(JSON_DECODE_ANY | JSON_ALLOW_NUL).
 *
 * The writer half is a growable byte buffer with a JSON string escaper, used by
 * kanal_msg_to_json.
 */
#ifndef KANAL_JSON_SCAN_H
#define KANAL_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>

/* The deepest nesting of arrays and objects accepted inside one value. */
#define KANAL__JSON_MAX_DEPTH 64

/* The JSON type of a scanned value, decided by its first character. */
typedef enum kanal__json_kind {
	KANAL__JSON_STRING,
	KANAL__JSON_INTEGER, /* a number with neither fraction nor exponent */
	KANAL__JSON_REAL,    /* a number with a fraction or an exponent */
	KANAL__JSON_TRUE,
	KANAL__JSON_FALSE,
	KANAL__JSON_NULL,
	KANAL__JSON_OBJECT,
	KANAL__JSON_ARRAY,
} kanal__json_kind_t;

/* A cursor over text[0..len). On failure a function returns KANAL_EPARSE (or KANAL_ENOMEM)
 * and records where (err_pos) and what (err_what, a static string) went wrong. */
typedef struct kanal__json_scan {
	const char *text;
	size_t len;
	size_t pos;
	size_t err_pos;
	const char *err_what;
} kanal__json_scan_t;

/* Starts a scan of text[0..len). */
void kanal__json_init(kanal__json_scan_t *s, const char *text, size_t len);

/* Skips JSON whitespace (space, tab, line feed, carriage return). */
void kanal__json_ws(kanal__json_scan_t *s);

/* Returns the character at the cursor, or -1 at the end of the text. */
int kanal__json_peek(const kanal__json_scan_t *s);

/* Records a syntax error at `pos` (the first error wins) and returns KANAL_EPARSE. */
int kanal__json_fail(kanal__json_scan_t *s, size_t pos, const char *what);

/* Scans the string at the cursor (which must be '"'), checking escapes and UTF-8, and moves
 * past it. When out is not NULL it stores a new NUL-terminated decoded copy (the caller frees
 * it) and its length (which may count embedded NULs from \u0000) in *out_len.
 * Returns 0, KANAL_EPARSE or KANAL_ENOMEM. */
int kanal__json_string(kanal__json_scan_t *s, char **out, size_t *out_len);

/* Scans and validates any value at the cursor (nesting limited to KANAL__JSON_MAX_DEPTH)
 * and moves past it. Stores its kind in *kind and the depth of its deepest container
 * (0 for a scalar) in *depth; either may be NULL. Returns 0 or KANAL_EPARSE. */
int kanal__json_skip(kanal__json_scan_t *s, kanal__json_kind_t *kind, int *depth);

/* Checks that text[0..len) is exactly one JSON value, with optional whitespace around it.
 * Stores the value's span in *start and *end and its nesting depth in *depth (each may be
 * NULL). Returns 0 or KANAL_EPARSE, with the scanner state in *s for the error position. */
int kanal__json_validate(kanal__json_scan_t *s, const char *text, size_t len, size_t *start,
			 size_t *end, int *depth);

/* Finds the value at `path` — member names and array indexes separated by dots, as the
 * kanal_msg_data_* readers take them; "" or NULL is the whole value — in text[0..len),
 * which must hold one valid JSON value (kanal__json_validate). Where an object has a name
 * twice the last one counts, as when jansson loads the text. Stores the value's span in
 * *start and *end and its kind in *kind. Returns 0, KANAL_ENOTFOUND, or KANAL_EPARSE. No
 * allocation, no tree: for reading a field or two of a large data value. */
int kanal__json_find(const char *text, size_t len, const char *path, size_t *start, size_t *end,
		     kanal__json_kind_t *kind);

/* Returns the byte length (1-4) of the well-formed UTF-8 sequence at p (at most `avail`
 * bytes), or 0 when it is malformed, overlong, a surrogate or above U+10FFFF. */
size_t kanal__utf8_seq(const unsigned char *p, size_t avail);

/* Returns true when s[0..len) is well-formed UTF-8. */
bool kanal__utf8_valid(const char *s, size_t len);

/* Converts a byte offset in text to a 1-based line and column. */
void kanal__json_line_col(const char *text, size_t len, size_t pos, int *line, int *col);

/* A growable output buffer. A failed allocation makes it sticky-failed: further writes are
 * ignored and kanal__jbuf_finish returns NULL, so callers check once at the end. */
typedef struct kanal__jbuf {
	char *data;
	size_t len;
	size_t cap;
	bool failed;
} kanal__jbuf_t;

/* Starts an empty buffer with room for `hint` bytes (0 is fine). */
void kanal__jbuf_init(kanal__jbuf_t *b, size_t hint);
void kanal__jbuf_put(kanal__jbuf_t *b, const void *bytes, size_t n);
void kanal__jbuf_puts(kanal__jbuf_t *b, const char *str);
void kanal__jbuf_putc(kanal__jbuf_t *b, char c);

/* Appends str[0..len) as a quoted JSON string: quote, backslash and control characters are
 * escaped; other bytes (UTF-8) pass through unchanged. */
void kanal__jbuf_put_string(kanal__jbuf_t *b, const char *str, size_t len);

/* Returns the length of str[0..len) once written by kanal__jbuf_put_string, quotes included. */
size_t kanal__json_string_size(const char *str, size_t len);

/* Returns the NUL-terminated contents (ownership passes to the caller) and its length in
 * *len (may be NULL), or NULL when an allocation failed (the buffer is then freed). */
char *kanal__jbuf_finish(kanal__jbuf_t *b, size_t *len);

/* Frees the contents of an unfinished buffer. */
void kanal__jbuf_discard(kanal__jbuf_t *b);

#endif
