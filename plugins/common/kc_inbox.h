/*
 * plugins/common/kc_inbox.h — what a listener on a thread of its own hands to its instance's
 * thread: the connectors whose callback must answer while the instance's thread is blocked in
 * a synchronous request (digitalpost's PKO_PostStatus receipts, sf2900's case-system
 * receipts) run libmicrohttpd on its own thread (kc_mhd_listen_thread); its handler, which
 * may call no host service, keeps what it read in the inbox — a JSON array saved atomically
 * (0600) in the instance's state folder before the callback is answered, so an entry
 * answered as taken survives a crash — and the inbox wakes the instance's thread through an
 * eventfd it watches (docs/sdk.md's recipe for a library that forces a thread on a plugin).
 * The instance's thread takes the entries, applies what it can and puts back what must wait
 * (such as a receipt that overtook the answer recording its submission).
 *
 * Threads: kc_inbox_keep, kc_inbox_refused, kc_inbox_wake and kc_inbox_size may be called on
 * any thread; the others only on the instance's thread. Not part of the public SDK: linked
 * into each bundled plugin (build/lib/libkanalconn.a). Functions are prefixed kc_.
 */
#ifndef KANAL_PLUGINS_KC_INBOX_H
#define KANAL_PLUGINS_KC_INBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <jansson.h>
#include <kanal/kanal.h>
#include <microhttpd.h>

typedef struct kc_inbox kc_inbox_t;

/* Called on the instance's thread when the inbox was woken (arg as given to start). */
typedef void kc_inbox_drain_fn(void *arg);

/* What the listener refused since the last kc_inbox_take, for the instance's thread to
 * count and log. */
typedef struct kc_inbox_counts {
	unsigned long received; /* entries kept */
	unsigned long refused;  /* callbacks refused */
	unsigned long invalid;  /* of those, not valid input */
	char why[300];          /* the latest refusal's reason */
} kc_inbox_counts_t;

/* Makes the inbox kept in `file` of ctx's state folder, with the entries saved there before a
 * restart; `max` entries at most (kc_inbox_keep refuses more). `plugin` names the connector
 * and `what` what the entries are, in the error of a file that is not a JSON array. Returns 0
 * and *out, KANAL_ECONFIG (the error set on ctx) or KANAL_ENOMEM.
 * Ownership: borrows everything; the caller owns *out (kc_inbox_destroy). */
int kc_inbox_new(kanal_ctx_t *ctx, const char *file, size_t max, const char *plugin,
		 const char *what, kc_inbox_t **out);

/* Makes and watches the eventfd that wakes the instance's thread, which then calls
 * drain(arg); wakes it at once when entries were kept before a restart. Returns 0 or a
 * negative KANAL_E code (errno kept). Call before the listener starts.
 * Ownership: borrows everything; arg must stay valid until kc_inbox_stop. */
int kc_inbox_start(kc_inbox_t *in, kanal_ctx_t *ctx, kc_inbox_drain_fn *drain, void *arg);

/* Keeps a copy of entry and saves the inbox, then wakes the instance's thread (any thread; logs
 * nothing). Returns 0, or KANAL_EBUSY (max entries waiting), KANAL_ENOMEM or KANAL_EIO (the
 * file could not be written) with why (why_size bytes) saying so and to send it again.
 * Ownership: borrows entry (json_incref'd into the inbox). */
int kc_inbox_keep(kc_inbox_t *in, json_t *entry, char *why, size_t why_size);

/* Counts a refused callback (any thread) for the next kc_inbox_take, and wakes the instance's
 * thread to report it. Ownership: borrows why. */
void kc_inbox_refused(kc_inbox_t *in, bool invalid, const char *why);

/* Wakes the instance's thread (any thread): drain runs soon. Ownership: borrows in. */
void kc_inbox_wake(kc_inbox_t *in);

/* The number of entries waiting (any thread). Ownership: borrows in. */
size_t kc_inbox_size(kc_inbox_t *in);

/* Takes every entry waiting (instance's thread) and the counts since the last take (counts
 * may be NULL). Returns the entries as an array (the inbox is then empty until
 * kc_inbox_put_back), or NULL when out of memory (the inbox stays as it is).
 * Ownership: the caller owns the array returned; pass it, or what it keeps of it, back. */
json_t *kc_inbox_take(kc_inbox_t *in, kc_inbox_counts_t *counts);

/* Puts the entries that must wait (keep, an array; NULL: none) back before those that came
 * since kc_inbox_take, and saves the inbox when `changed` (some were applied), logging on the
 * instance's thread when it cannot. Ownership: takes *keep_p. */
void kc_inbox_put_back(kc_inbox_t *in, json_t **keep_p, bool changed);

/* Unwatches and closes the eventfd. Stop the listener first: it may wake the inbox until it
 * stops. Ownership: borrows everything. */
void kc_inbox_stop(kc_inbox_t *in, kanal_ctx_t *ctx);

/* Frees the inbox (NULL is fine) and nulls *in_p; closes the eventfd if still open.
 * Ownership: takes *in_p. */
void kc_inbox_destroy(kc_inbox_t **in_p);

/* Starts libmicrohttpd on a thread of its own listening on addr (IPv6 when ipv6), with
 * handler(cls, …) for each request and kc_mhd_body_free when one completes: 30 s connection
 * timeout, 64 connections. The handler runs on that thread and may call no host service.
 * Returns the daemon (MHD_stop_daemon joins its thread) or NULL with errno set when it could
 * not listen. Ownership: borrows addr; the caller owns the daemon. */
struct MHD_Daemon *kc_mhd_listen_thread(const struct sockaddr *addr, bool ipv6,
					MHD_AccessHandlerCallback handler, void *cls);

#endif
