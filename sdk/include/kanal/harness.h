/*
 * kanal/harness.h — test a plugin with no broker running.
 *
 * The harness loads a plugin .so exactly as kanald does (same descriptor and ABI checks,
 * same option validation), runs its lifecycle on the calling thread, feeds it events, and
 * records everything it does: the events it emits, the outcome and error of each delivery,
 * its log lines and metrics. Requests it makes to services (kanal_request) are answered by
 * functions the test registers.
 *
 *   kanal_harness_t *h = kanal_harness_new("build/plugins/sink.so", "sink-1", &err);
 *   kanal_harness_option(h, "path", "/tmp/out.jsonl");
 *   kanal_harness_start(h, &err);
 *   kanal_outcome_t o = kanal_harness_deliver(h, msg, NULL);
 *   kanal_harness_run(h, 200);   // let timers and fd watches run for 200 ms
 *   kanal_harness_destroy(&h);   // stops and unloads
 *
 * The command-line program kanal-harness wraps this API (see docs/sdk.md).
 */
#ifndef KANAL_HARNESS_H
#define KANAL_HARNESS_H

#include <kanal/kanal.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Only what this header declares is exported from libkanal, which is built with
 * -fvisibility=hidden (docs/design/library.md). */
#pragma GCC visibility push(default)

typedef struct kanal_harness kanal_harness_t;

/* Loads the plugin at `path` for an instance named `instance`. Returns NULL and fills err
 * when the file cannot be loaded or its descriptor is refused (as kanald would).
 * Ownership: borrows its arguments; returns a new harness the caller destroys with
 * kanal_harness_destroy. */
kanal_harness_t *kanal_harness_new(const char *path, const char *instance, kanal_error_t *err);

/* Gives an option, as it would be written in kanald.yaml (text; typed by the options table).
 * Call before start. Returns 0 or KANAL_ESTATE after start.
 * Ownership: borrows h; copies key and value. */
int kanal_harness_option(kanal_harness_t *h, const char *key, const char *value);
/* Gives a list option: items[0..n). Same returns as kanal_harness_option.
 * Ownership: borrows h; copies key and the items. */
int kanal_harness_option_list(kanal_harness_t *h, const char *key, const char *const *items,
			      size_t n);

/* Sets the folder the plugin may keep state in (default: a fresh temporary folder, removed
 * by destroy); its sub-folder blobs/ is the blob store kanal_blob_* use. Call before start. Returns 0, KANAL_ESTATE after start or KANAL_ENOMEM.
 * Ownership: borrows h; copies dir (the folder itself stays the caller's). */
int kanal_harness_state_dir(kanal_harness_t *h, const char *dir);

/* Validates the options against the plugin's table, then calls init and start. The calling
 * thread becomes the instance's thread: use the harness from it only. Returns 0,
 * KANAL_ECONFIG (err says which option and why) or the plugin's error code (err holds its
 * kanal_set_error text). Ownership: borrows h; fills the caller's err. */
int kanal_harness_start(kanal_harness_t *h, kanal_error_t *err);

/* Delivers msg as a routed event (route name `route`, may be NULL) and returns the
 * outcome. kanal_harness_last_error / _last_retry_after tell the details.
 * Ownership: borrows msg. */
kanal_outcome_t kanal_harness_deliver(kanal_harness_t *h, const kanal_msg_t *msg,
				      const char *route);

/* Delivers msg as a request (as an enrich step or kanal_request would). Returns the outcome;
 * on OK with a reply, stores it in *reply_out (else NULL).
 * Ownership: borrows msg; puts a new reply in *reply_out the caller destroys with
 * kanal_msg_destroy. */
kanal_outcome_t kanal_harness_request(kanal_harness_t *h, const kanal_msg_t *msg,
				      kanal_msg_t **reply_out);

/* The error text and retry hint (-1: none) of the last delivery.
 * Ownership: borrows h; the text is borrowed from h, valid until the next delivery. */
const char *kanal_harness_last_error(const kanal_harness_t *h);
int64_t kanal_harness_last_retry_after(const kanal_harness_t *h);

/* Runs the plugin's timers and fd watches on this thread for `ms` milliseconds of real
 * time, or until `until_emitted` events have been emitted in all (0: no such stop). Returns
 * the number of events emitted in all so far. Ownership: borrows h. */
size_t kanal_harness_run(kanal_harness_t *h, int64_t ms, size_t until_emitted);

/* Makes the plugin's next emits fail with `code` (e.g. KANAL_EBUSY) — to test how it copes
 * with backpressure — until set back to 0. Failed emits are not recorded.
 * Ownership: none (plain values) beyond borrowing h. */
void kanal_harness_set_emit_result(kanal_harness_t *h, int code);

/* Answers the plugin's kanal_request calls to `service`: fn gets the request (borrowed) and
 * returns 0 with a new reply in *reply_out, or a negative code (returned to the plugin).
 * Returns 0 or KANAL_ENOMEM. Ownership: borrows h; copies service; arg must stay valid
 * until kanal_harness_destroy; the harness takes each reply fn puts in *reply_out. */
typedef int (*kanal_harness_service_fn)(const kanal_msg_t *request, kanal_msg_t **reply_out,
					void *arg);
int kanal_harness_service(kanal_harness_t *h, const char *service, kanal_harness_service_fn fn,
			  void *arg);

/* What the plugin emitted, in order.
 * Ownership: borrows h; the messages are borrowed from h, valid until destroy or clear. */
size_t kanal_harness_emitted_count(const kanal_harness_t *h);
const kanal_msg_t *kanal_harness_emitted(const kanal_harness_t *h, size_t i);
/* Its log lines ("info: text", CPR-masked as kanald would log them), in order.
 * Ownership: borrows h; the lines are borrowed from h, valid until destroy or clear. */
size_t kanal_harness_log_count(const kanal_harness_t *h);
const char *kanal_harness_log(const kanal_harness_t *h, size_t i);
/* Current value of a metric (counters and gauges), 0 when never set.
 * Ownership: borrows h and name. */
double kanal_harness_metric(const kanal_harness_t *h, const char *name);
/* Forgets recorded emits and log lines (what kanal_harness_emitted and _log returned is
 * freed). Ownership: borrows h. */
void kanal_harness_clear(kanal_harness_t *h);

/* Stops the plugin (its stop gets a deadline 5 s from now) if started, destroys it,
 * unloads it, and removes the temporary state folder if the harness made it.
 * Ownership: takes *h_p. */
void kanal_harness_destroy(kanal_harness_t **h_p);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
