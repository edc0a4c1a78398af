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
#define DP_NS_FJERNPRINT "urn:oio:fjernprint:1.0.0"
#define DP_MAX_LABEL 256        /* memoTextType */
#define DP_MAX_NOTIFICATION 150 /* memoNotificationType */
#define DP_MAX_FILENAME 255
#define DP_MAX_URL 256 /* memoUriType */
#define DP_MAX_ATTACHMENTS 10
#define DP_MAX_ACTIONS 4
/* The recipient CPR the print part (ForsendelseI) must carry: the platform takes the
 * recipient from the postal address, never from a number (contract 3.4). */
#define DP_PRINT_DUMMY_CPR "0000000000"

/* The four KombiValgKode strings of SF1601, exactly (case and spaces matter). */
#define DP_KOMBI_DIGITAL "Digital Post"
#define DP_KOMBI_AUTO "Automatisk Valg"
#define DP_KOMBI_PHYSICAL "Fysisk Post"
#define DP_KOMBI_NEMSMS "NemSMS"

/* One document of a letter (MainDocument or AdditionalDocument), strings borrowed. */
typedef struct dp_document {
	const char *label; /* NULL: none */
	const char *mimetype;
	const char *filename;
	const char *language;
	const char *content; /* base64 */
} dp_document_t;

/* One MeMo Action. AFTALE carries a Reservation (the appointment) and no EntryPoint; every
 * other code an EntryPoint url. */
typedef struct dp_action {
	const char *code;
	const char *label;
	const char *url;         /* NULL for AFTALE */
	const char *start, *end; /* optional, UTC "…Z" */
	/* AFTALE only: */
	char reservation_uuid[37];
	const char *description, *abstract, *location;
	const char *organizer_mail, *organizer_name; /* optional */
} dp_action_t;

/* The postal address of the print part, from the CPR lookup (data.recipient). */
typedef struct dp_address {
	const char *name; /* itst:PersonName */
	const char *co;
	const char *street;
	const char *building; /* house number without leading zeros, e.g. "12B" */
	const char *floor;    /* optional: 1-99, st, kl … */
	const char *suite;    /* optional: th, tv, mf … */
	const char *postcode; /* 4 digits */
	const char *city;
} dp_address_t;

/* One letter, ready to be written as a kombi_request. Every string is borrowed (from the
 * event or the instance's options) and must stay valid while the letter is used. */
typedef struct dp_letter {
	const char *kombi;        /* one of DP_KOMBI_* */
	int memo_version;         /* 11 (MeMo 1.1) or 12 (MeMo 1.2) */
	bool with_memo;           /* the memo:Message part */
	bool with_print;          /* the ForsendelseISamling part */
	const char *message_type; /* "DIGITALPOST" or "NEMSMS" */
	char message_uuid[37];    /* version-4 form (memoUuidType) */
	const char *message_id;   /* optional: the letter event's id */
	const char *label;
	const char *notification; /* optional (NemSMS: the text) */
	bool mandatory;
	bool legal_notification;
	const char *sender_cvr;
	const char *sender_label;
	char recipient[11];  /* the CPR number's ten digits */
	const char *created; /* UTC, "…Z" */
	dp_document_t main;
	dp_document_t attachments[DP_MAX_ATTACHMENTS];
	size_t n_attachments;
	dp_action_t actions[DP_MAX_ACTIONS];
	size_t n_actions;
	/* The print part (with_print): the main document's PDF to the address. */
	char print_id[37]; /* AfsendelseIdentifikator */
	dp_address_t address;
	const char *print_type; /* optional ForsendelseTypeIdentifikator (digits) */
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

/* Writes a name-based UUID of the letter event's source and id (and a role: "" for the
 * messageUUID, "reservation" or "print" for the others) into out. It is a SHA-1 hash in the
 * version-4 form MeMo's memoUuidType demands (4 in the version nibble, 8-b in the variant):
 * the same event gives the same UUIDs on every delivery, so the service recognises a
 * redelivery as the letter it already has. Returns 0 or -1 (no digest available). */
int dp_uuid(const char *source, const char *id, const char *role, char out[37]);

/* Writes the SF1601 KombiPostAfsend body for letter: a no-namespace kombi_request with the
 * KombiValgKode, the memo:Message (MeMo 1.1 or 1.2, explicit memo: prefix, strict element
 * order) when with_memo, and the fjernprint:ForsendelseISamling when with_print. Returns a
 * malloc'd UTF-8 document and its length in *len, or NULL when out of memory.
 * Ownership: borrows letter; free the result with free(). */
char *dp_kombi_build(const dp_letter_t *letter, size_t *len);

#endif
