/*
 * kanal/cpr.h — Danish CPR numbers: parse, validate, detect in text, mask.
 *
 * A CPR number is DDMMYY-SSSS (the hyphen optional). Validation is strict on syntax, date and
 * century (digit 7 with the two-digit year decides the century). Modulus 11 is NOT a
 * validity rule — numbers failing it have been issued since 1 October 2007 — so it is only
 * reported, as a warning flag.
 *
 * A CPR number is personal data: kanal masks it (DDMMYY-XXXX) wherever it could leave the
 * process in text — logs, the event stream, error messages, dead-letter views.
 */
#ifndef KANAL_CPR_H
#define KANAL_CPR_H

#include <stddef.h>
#include <stdbool.h>
#include <kanal/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Only what this header declares is exported from libkanal, which is built with
 * -fvisibility=hidden (docs/design/library.md). */
#pragma GCC visibility push(default)

/* What a parsed CPR number tells. */
typedef struct kanal_cpr {
	char digits[11]; /* the ten digits, NUL-terminated, no hyphen */
	int year;        /* full birth year, e.g. 1985 */
	int month;       /* 1-12 */
	int day;         /* 1-31 */
	bool male;       /* digit 10 odd */
	bool mod11_ok;   /* passes the old modulus 11 check (informational only) */
} kanal_cpr_t;

/* Parses and validates `text` (exactly "DDMMYYSSSS" or "DDMMYY-SSSS", no surrounding
 * blanks). Returns 0 and fills *out (may be NULL) when syntax, date and century are valid,
 * whatever modulus 11 says; otherwise KANAL_EINVAL, with the reason in err->text (err may be
 * NULL; first error wins) that never repeats the number in clear.
 * (SDK 1.0 took `char *why, size_t why_size` instead of err; that symbol still works for
 * plugins built against 1.0 — docs/design/plugin-abi.md.)
 * Ownership: borrows text; writes *out and *err. */
int kanal_cpr_parse(const char *text, kanal_cpr_t *out,
		    kanal_error_t *err) __asm__("kanal_cpr_parse_v1_1");

/* Returns true when `text` is a valid CPR number (as kanal_cpr_parse).
 * Ownership: borrows text. */
bool kanal_cpr_valid(const char *text);

/* Writes the masked form "DDMMYY-XXXX" of a valid number into buf (at least 12 bytes).
 * Returns 0, or KANAL_EINVAL (buf then holds "XXXXXX-XXXX").
 * Ownership: borrows text; writes into buf. */
int kanal_cpr_mask(const char *text, char *buf, size_t size);

/* Finds the first CPR number in text[0..len): ten digits, optionally with a hyphen after the
 * sixth, not preceded or followed by another digit, whose first six digits form a real date
 * and whose digit 7 gives a valid century. Stores its offset and length and returns true,
 * or returns false. Ownership: borrows text; writes *offset and *length. */
bool kanal_cpr_find(const char *text, size_t len, size_t *offset, size_t *length);

/* Returns a new NUL-terminated copy of text[0..len) with every CPR number found by
 * kanal_cpr_find masked to DDMMYY-XXXX (the hyphen is inserted when absent), or NULL when
 * out of memory. Ownership: borrows text; returns a new string the caller frees with
 * kanal_free. */
char *kanal_cpr_redact(const char *text, size_t len);

/* Masks every CPR number in the NUL-terminated string buf in place, keeping its length:
 * the last four digits become 'X' (a hyphen is not inserted). Returns the count masked.
 * Ownership: borrows buf (changed in place). */
size_t kanal_cpr_redact_inplace(char *buf);

/* ---- pseudonyms ----------------------------------------------------------------------- */

/* A key for pseudonyms, read from a file. */
typedef struct kanal_pseudonym_key kanal_pseudonym_key_t;

/* Reads the key file at path: its bytes (at least 16, trailing newline ignored) are the
 * HMAC key. Refuses — returns KANAL_ECONFIG with err filled, its text naming the file — a
 * file that group or others may read or write (its mode must be 0600 or 0400), a file too
 * short, or one that cannot be read (KANAL_EIO). err may be NULL. Returns 0 and a new key in
 * *out otherwise (*out is NULL on failure). (SDK 1.0 took `char *why, size_t why_size`; that
 * symbol still works for plugins built against 1.0.)
 * Ownership: borrows path; returns a new key in *out the caller destroys with
 * kanal_pseudonym_key_destroy. */
int kanal_pseudonym_key_load(const char *path, kanal_pseudonym_key_t **out,
			     kanal_error_t *err) __asm__("kanal_pseudonym_key_load_v1_1");
/* Wipes and frees the key; accepts NULL and sets *key_p to NULL. Ownership: takes *key_p. */
void kanal_pseudonym_key_destroy(kanal_pseudonym_key_t **key_p);

/* Writes the pseudonym of a valid CPR number (hyphen or not; the same person gives the same
 * pseudonym either way): "person:" followed by the 64 hex digits of HMAC-SHA256(key, the ten
 * digits). buf must hold at least KANAL_PSEUDONYM_SIZE bytes. Returns 0, or KANAL_EINVAL
 * when text is not a valid CPR number (buf is then ""). Ownership: borrows key and text;
 * writes into buf. */
#define KANAL_PSEUDONYM_SIZE 72
int kanal_cpr_pseudonym(const kanal_pseudonym_key_t *key, const char *text, char *buf, size_t size);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
