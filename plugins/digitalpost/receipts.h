/*
 * plugins/digitalpost/receipts.h — the digitalpost connector's receipts: PKO_PostStatus
 * messages pushed by the Beskedfordeler (SF1461) to the connector's own HTTP listener,
 * matched to the letters it sent (a small persistent map in the instance's state folder)
 * and turned into the letter's final post.letter.status; a letter with no status within
 * status_timeout gets the status `unknown`. Private to the plugin.
 */
#ifndef DP_RECEIPTS_H
#define DP_RECEIPTS_H

#include <stdbool.h>
#include <stdint.h>

#include <kanal/kanal.h>

/* The contract's PKO_PostStatus schema, built in (pko_schema.c). */
extern const char dp_pko_poststatus_xsd[];

typedef struct dp_receipts dp_receipts_t;

/* A letter the service accepted, waiting for its status. Strings borrowed. */
typedef struct dp_sent {
	const char *message_uuid, *print_id, *transaction;
	const char *letter, *letter_source, *correlationid, *traceparent;
	const char *subject; /* a pseudonym or the letter's subject, never a CPR number; or NULL */
	const char *kombi;
	char *sender; /* the letter's data.sender as JSON text, or NULL; borrowed */
	const char *area, *channel_rank; /* the delivery's kanalarea, kanalchannelrank, or NULL */
} dp_sent_t;

/* Checks callback_listen (HOST:PORT, a port from 0 to 65535) and callback_path (starting
 * with '/'), as dp_receipts_new does, without making anything: for the plugin's check.
 * Returns 0 or KANAL_ECONFIG after kanal_set_error. Ownership: borrows everything. */
int dp_receipts_check(kanal_ctx_t *ctx, const char *listen, const char *path);

/* Opens the receipts of instance ctx: listen "HOST:PORT" (plain http; TLS is terminated in
 * front), path the callback's path, timeout_ms the wait for a status; loads the map from
 * kanal_state_dir. Returns 0 or a negative KANAL_E code with the error set on ctx.
 * Ownership: *out is new, the caller's (dp_receipts_destroy); strings are copied. */
int dp_receipts_new(kanal_ctx_t *ctx, const char *listen, const char *path, int64_t timeout_ms,
		    dp_receipts_t **out);
/* Starts listening and the timeout sweep. Returns 0 or a negative KANAL_E code.
 * Ownership: borrows both. */
int dp_receipts_start(dp_receipts_t *r, kanal_ctx_t *ctx);
/* Stops listening. Ownership: borrows both. */
void dp_receipts_stop(dp_receipts_t *r, kanal_ctx_t *ctx);
/* Remembers a letter the service accepted (again: kept as it was). Returns 0 or a negative
 * KANAL_E code (the map could not be saved). Ownership: borrows both; s is copied. */
int dp_receipts_track(dp_receipts_t *r, const dp_sent_t *s);
/* Ownership: frees *r and sets it to NULL. */
void dp_receipts_destroy(dp_receipts_t **r);

#endif
