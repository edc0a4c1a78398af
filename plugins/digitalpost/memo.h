/*
 * plugins/digitalpost/memo.h — a Digital Post letter as the digitalpost connector sees it:
 * the checks a letter must pass before it is worth sending (every one names the field at
 * fault), the name-based messageUUID that makes a redelivery the same letter, and the MeMo
 * XML (namespace https://DigitalPost.dk/MeMo-1) wrapped in the send request with its
 * channel code. Private to the plugin; prefixed dp_.
 */
#ifndef KANAL_PLUGIN_DIGITALPOST_MEMO_H
#define KANAL_PLUGIN_DIGITALPOST_MEMO_H

#include <stdbool.h>
#include <stddef.h>

#define DP_NS_MEMO "https://DigitalPost.dk/MeMo-1"
#define DP_NS_SEND "urn:kanal:digitalpost:1"
#define DP_MAX_LABEL 1024
#define DP_MAX_FILENAME 255
#define DP_MAX_URL 2048

/* One letter, ready to be written as MeMo. Every string is borrowed (from the event or
 * the instance's options) and must stay valid while the letter is used. */
typedef struct dp_letter {
	const char *message_type;  /* "DIGITALPOST" or "NEMSMS" */
	const char *channel;       /* the send request's channel code: "Digital Post", "NemSMS" */
	char message_uuid[37];
	const char *label;
	const char *sender_cvr;
	const char *sender_label;
	char recipient[11];        /* the CPR number's ten digits */
	const char *created;       /* xs:dateTime */
	const char *mimetype;
	const char *filename;
	const char *language;
	const char *content;       /* base64 */
	const char *action_code;   /* NULL: no action */
	const char *action_label;
	const char *action_url;
} dp_letter_t;

/* Checks one text field for the MeMo: valid UTF-8, no control character, not blank,
 * at most max bytes. Returns true, or false with why (at least 128 bytes) filled. */
bool dp_check_text(const char *text, size_t max, char *why, size_t why_size);

/* Checks a document file name: not empty, at most DP_MAX_FILENAME bytes, valid UTF-8, none
 * of <>:"/\|?*, no control character or line break, no unicode space (U+00A0, U+1680,
 * U+2000-U+200B, U+2028, U+2029, U+202F, U+205F, U+3000, U+FEFF), not "." or "..".
 * Returns true, or false with why filled. */
bool dp_check_filename(const char *name, char *why, size_t why_size);

/* Checks base64 content: non-empty, standard alphabet, padded, no blanks. */
bool dp_check_base64(const char *text, char *why, size_t why_size);

/* Checks an action URL: absolute https with a host, no blanks or controls. */
bool dp_check_https_url(const char *url, char *why, size_t why_size);

/* True when text is a CVR number: exactly 8 digits. */
bool dp_check_cvr(const char *text);

/* True when code is one of MeMo's action codes (AFTALE, BETALING, SELVBETJENING,
 * INFORMATION, UNDERSKRIV, BEKRAEFT, FORBEREDELSE, TILMELDING). */
bool dp_check_action_code(const char *code);

/* A media type for a file name's extension (application/pdf for .pdf …), or
 * application/octet-stream. Static string. */
const char *dp_mimetype_for(const char *filename);

/* Writes the name-based UUID (version 5, SHA-1, RFC 9562) of the letter event's source and
 * id into out: the same event gives the same messageUUID on every delivery, so the
 * service recognises a redelivery as the letter it already has. Returns 0 or -1 (no
 * digest available). */
int dp_message_uuid(const char *source, const char *id, char out[37]);

/* Writes the send request for letter: a dp:SendRequest (namespace DP_NS_SEND) holding the
 * channel code and the MeMo memo:Message. Returns a malloc'd UTF-8 document and its length
 * in *len, or NULL when out of memory. Ownership: borrows letter; free the result with
 * free(). */
char *dp_memo_build(const dp_letter_t *letter, size_t *len);

#endif
