/*
 * plugins/letter/letter.h — the letter connector's private interface between its two
 * files: job.c turns a post.letter.send event (enriched with the recipient's CPR data)
 * into a print job — the recipient's Danish address block, the document, the postal
 * category — and says why the letter goes by post; letter.c is the plugin that spools the
 * job or posts it to a print service and reports the status. Nothing here is exported.
 */
#ifndef KANAL_PLUGINS_LETTER_H
#define KANAL_PLUGINS_LETTER_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <kanal/kanal.h>

/* The longest job id: a readable part from the event id, '-', 16 hex digits. */
#define LETTER_JOB_ID_MAX 96

/* The version tag of the job document ("format" member). */
#define LETTER_JOB_FORMAT "kanal.print-job/1"

/* What the plugin's options contribute to every job. Strings are borrowed. */
typedef struct letter_defaults {
	const char *postal_category; /* "Prioritaire" or "Economique" */
	const char *sender;          /* the sender's name for the return address, or NULL */
} letter_defaults_t;

/* How job.c reads a document given by reference (`href`, a kanalblob URI, instead of
 * `content`): letter.c reads it from the blob store (kanal_blob_get). Returns 0 with
 * *data_out (the caller frees it with kanal_blob_free) and *size_out, KANAL_ENOMEM, or
 * another negative code with why filled (the blob is gone or damaged: no retry brings it
 * back). why never holds personal data. */
typedef int (*letter_blob_read_fn)(void *arg, const char *uri, void **data_out, size_t *size_out,
				   char *why, size_t why_size);

/* The blob reader letter_job_build uses, and its argument. */
typedef struct letter_blobs {
	letter_blob_read_fn read;
	void *arg;
} letter_blobs_t;

/* One print job, made by letter_job_build. */
typedef struct letter_job {
	char id[LETTER_JOB_ID_MAX + 1]; /* also the spool file's name without ".json" */
	const char *letter;             /* the event id; borrowed from the event */
	char postal_category[16];
	char reason[256]; /* why the physical channel (post.letter.status) */
	char *json;       /* the job document, malloc'd */
	size_t len;
} letter_job_t;

/* Writes the job id of the event (source, id) into buf (at least LETTER_JOB_ID_MAX + 1
 * bytes): the id with every character outside [A-Za-z0-9._-] (and a leading '.') replaced
 * by '_', CPR-like digit runs masked, cut at 64 characters, then '-' and the first 16 hex
 * digits of SHA-256(source NUL id). The same event always gets the same id, and two
 * events that differ in source or id get different ones. Returns 0, KANAL_EINVAL (no id,
 * buf too small) or KANAL_ENOMEM. */
int letter_job_id(const char *source, const char *id, char *buf, size_t size);

/* Builds the job for msg: checks that the letter can go by post (a document, a recipient
 * with a name and a postal address, alive and in the country), formats the address block,
 * picks the postal category (data.postal_category, else the default) and the reason for
 * the physical channel (as of `today`, the local date, for the under-15 rule). The document
 * and each of data.attachments (printed after it) come as base64 `content` or as a blob
 * reference in `href`, read with `blobs` (NULL: a reference is refused). Returns 0 with *job
 * filled (free with letter_job_clear), or KANAL_EINVAL with why filled: the letter cannot
 * be printed and must be REJECTed. The text in why never holds the recipient's name,
 * address or CPR number. KANAL_ENOMEM when memory runs out.
 * Ownership: borrows msg, d and blobs; job->letter borrows from msg. */
int letter_job_build(const kanal_msg_t *msg, const letter_defaults_t *d,
		     const letter_blobs_t *blobs, time_t today, letter_job_t *job, char *why,
		     size_t why_size);

/* Frees what letter_job_build allocated; the job may be cleared twice. */
void letter_job_clear(letter_job_t *job);

/* Normalises a postal category ("prioritaire", "A", "economique", "B" …) into *out
 * ("Prioritaire" / "Economique"). Returns 0 or KANAL_EINVAL. */
int letter_postal_category(const char *text, const char **out);

#endif
