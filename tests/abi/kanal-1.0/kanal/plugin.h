/*
 * kanal/plugin.h — the plugin ABI, version 1.
 *
 * A plugin is a shared object that exports exactly one symbol, `kanal_plugin` (use the
 * KANAL_PLUGIN_EXPORT macro), a kanal_plugin_t descriptor. The host — kanald, the isolated
 * plugin host, or the SDK's test harness — checks the descriptor's ABI version and size,
 * validates the instance's options against the descriptor's options table, then drives the
 * lifecycle:
 *
 *   init(ctx, config, &state)   validate and allocate; start no threads, touch no network
 *   start(ctx, state)           begin work: add timers and fd watches, open connections
 *   on_message(ctx, state, msg) one delivery; serialised per instance, on its own thread
 *   stop(ctx, state, deadline)  finish and release what start made, before `deadline`
 *   destroy(state)              free what init made
 *
 * Every callback of one instance runs on that instance's thread. Host services — emit,
 * request/reply, timers, fd watches, logging, metrics — are reached through the ctx and must
 * be called from that thread (from within a callback); they return KANAL_ETHREAD otherwise.
 * A plugin therefore needs no threads of its own to poll an upstream: a timer does it.
 *
 * Compatibility: the host accepts a plugin whose abi_major equals its own and whose
 * abi_minor is not newer than its own. Minor versions only append fields to the descriptor;
 * struct_size tells the host which fields the plugin knows.
 */
#ifndef KANAL_PLUGIN_H
#define KANAL_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <kanal/error.h>
#include <kanal/msg.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KANAL_ABI_MAJOR 1
#define KANAL_ABI_MINOR 0

/* The name of the one symbol a plugin exports. */
#define KANAL_PLUGIN_SYMBOL "kanal_plugin"

/* Exports a plugin descriptor: `KANAL_PLUGIN_EXPORT = { .abi_major = …, … };` */
#define KANAL_PLUGIN_EXPORT __attribute__((visibility("default"))) const kanal_plugin_t kanal_plugin

/* The result of on_message. OK is 0, always. */
typedef enum kanal_outcome {
	KANAL_OUTCOME_OK = 0,     /* delivered; the bus forgets it for this destination */
	KANAL_OUTCOME_RETRY = 1,  /* transient failure; the bus retries later (see set_retry_after) */
	KANAL_OUTCOME_REJECT = 2, /* permanent failure; the route's fallback, else dead letters */
} kanal_outcome_t;

/* Returns "ok", "retry" or "reject". */
const char *kanal_outcome_name(kanal_outcome_t outcome);

/* Option types. Durations are written "250ms", "2s", "5m", "1h" (a bare number is
 * milliseconds); sizes "512", "64KiB", "8MiB". */
typedef enum kanal_opt_type {
	KANAL_OPT_STRING = 1,
	KANAL_OPT_INT,      /* 64-bit signed */
	KANAL_OPT_DOUBLE,
	KANAL_OPT_BOOL,
	KANAL_OPT_DURATION, /* read with kanal_config_duration_ms */
	KANAL_OPT_SIZE,     /* read with kanal_config_int, in bytes */
	KANAL_OPT_LIST,     /* a list of strings; read with kanal_config_list */
	KANAL_OPT_PATH,     /* a file or folder; a relative one is resolved against the folder
			     * of the config file that gave it; read with kanal_config_string */
} kanal_opt_type_t;

/* Returns "string", "int", … for a type. */
const char *kanal_opt_type_name(kanal_opt_type_t type);

/* One entry of a plugin's options table; the table ends with an entry whose name is NULL. */
typedef struct kanal_option {
	const char *name;          /* lower-case, [a-z0-9_] */
	kanal_opt_type_t type;
	const char *default_value; /* text as it would be written in YAML; NULL: no default */
	bool required;             /* must be given (a default is then meaningless) */
	const char *help;          /* one sentence for `kanalctl plugin info` */
} kanal_option_t;

typedef struct kanal_ctx kanal_ctx_t;       /* the host's view of one plugin instance */
typedef struct kanal_config kanal_config_t; /* an instance's validated options */

/* The descriptor. Fields up to and including `destroy` are ABI 1.0. */
typedef struct kanal_plugin {
	uint32_t abi_major;   /* KANAL_ABI_MAJOR the plugin was built with */
	uint32_t abi_minor;   /* KANAL_ABI_MINOR the plugin was built with */
	uint32_t struct_size; /* sizeof(kanal_plugin_t) the plugin was built with */
	const char *name;     /* short name, e.g. "daycare" */
	const char *version;  /* the plugin's own version, e.g. "1.2.0" */
	const char *description;
	const kanal_option_t *options; /* may be NULL: no options */

	/* Validates the config and allocates state, stored in *state. Returns 0 or a negative
	 * code after kanal_set_error() says why; the instance is then not started. Required. */
	int (*init)(kanal_ctx_t *ctx, const kanal_config_t *config, void **state);
	/* Starts work. Returns 0 or a negative code (after kanal_set_error). May be NULL. */
	int (*start)(kanal_ctx_t *ctx, void *state);
	/* Handles one delivery; msg is borrowed until the call returns (kanal_msg_dup to keep
	 * it). May be NULL for a pure source; deliveries to it are then REJECTed. */
	kanal_outcome_t (*on_message)(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg);
	/* Stops work, joining anything the plugin started, before deadline_ms (a monotonic
	 * time from kanal_now_ms). Timers and fd watches are removed by the host afterwards.
	 * May be NULL. */
	void (*stop)(kanal_ctx_t *ctx, void *state, int64_t deadline_ms);
	/* Frees state. May be NULL. */
	void (*destroy)(void *state);
} kanal_plugin_t;

/* The smallest struct_size a host accepts (ABI 1.0's fields). */
#define KANAL_PLUGIN_V1_0_SIZE (offsetof(kanal_plugin_t, destroy) + sizeof(void (*)(void *)))

/* ---- Configuration: the instance's options, validated against the table and completed
 * with defaults before init. Getters for a declared option always succeed; they return the
 * stated fallback for an undeclared name or a mismatched type. Strings are borrowed from the
 * config and valid until destroy. */

const char *kanal_config_string(const kanal_config_t *cfg, const char *name); /* NULL */
int64_t kanal_config_int(const kanal_config_t *cfg, const char *name);          /* 0 */
double kanal_config_double(const kanal_config_t *cfg, const char *name);        /* 0.0 */
bool kanal_config_bool(const kanal_config_t *cfg, const char *name);            /* false */
int64_t kanal_config_duration_ms(const kanal_config_t *cfg, const char *name);  /* 0 */
/* Number of strings in a list option, and the i-th one (NULL when out of range). */
size_t kanal_config_list_count(const kanal_config_t *cfg, const char *name);
const char *kanal_config_list(const kanal_config_t *cfg, const char *name, size_t i);
/* True when the option was given in the file (not only defaulted). */
bool kanal_config_given(const kanal_config_t *cfg, const char *name);

/* ---- Host services. */

/* The instance's name, from kanald.yaml. Borrowed from ctx. */
const char *kanal_instance_name(const kanal_ctx_t *ctx);

/* A folder this instance may keep state in across restarts (cursors, caches); it exists.
 * Borrowed from ctx. */
const char *kanal_state_dir(const kanal_ctx_t *ctx);

/* Monotonic milliseconds, the clock of timers and deadlines. */
int64_t kanal_now_ms(void);

/* Hands an event to the bus. Sets `source` to the instance name when the event has none.
 * Returns 0 once the bus has accepted the event: it is then the bus's to deliver. Returns
 * KANAL_EBUSY when the bus applies backpressure (a destination's queue is full; try again
 * later — the event was not accepted), KANAL_EINVALID when the event fails validation (a
 * CPR number in a context attribute is refused too), KANAL_ETOOBIG when it is larger than
 * the broker's max_event_size, KANAL_EFORBIDDEN when the instance's ACL (acl.emit in
 * kanald.yaml) does not allow its type, KANAL_ECLOSED when the bus is shutting down, KANAL_ESTATE
 * when called before start, KANAL_ETHREAD off the instance's thread. An event the bus has
 * accepted is never refused afterwards (docs/design/emit-and-backpressure.md).
 * Ownership: takes *msg_p, always, and sets it to NULL. */
int kanal_emit(kanal_ctx_t *ctx, kanal_msg_t **msg_p);

/* Waits up to timeout_ms until every event this instance emitted so far is durable: in the
 * broker's journal (or, with the journal off, routed). kanal_emit pipelines — it returns
 * once the bus has taken the event, before the journal's group commit — so a source that
 * must never lose what it read from an upstream (a cursor it is about to advance, a file it
 * is about to delete) emits, flushes, and only then lets go upstream. Returns 0,
 * KANAL_ETIMEDOUT, KANAL_ECLOSED or KANAL_ETHREAD. */
int kanal_emit_flush(kanal_ctx_t *ctx, int64_t timeout_ms);

/* Sends `*request_p` to the service instance named `service` and waits up to timeout_ms for
 * its reply, blocking this instance (its other callbacks wait). On success stores the reply
 * in *reply_out and returns 0. Returns KANAL_ENOSERVICE (no such instance), KANAL_ETIMEDOUT,
 * KANAL_EREJECTED (the service answered REJECT or RETRY; *reply_out NULL), KANAL_ECLOSED.
 * Ownership: takes *request_p and sets it to NULL; *reply_out is a new message. */
int kanal_request(kanal_ctx_t *ctx, const char *service, kanal_msg_t **request_p,
		  int64_t timeout_ms, kanal_msg_t **reply_out);

/* From a service plugin's on_message: answers the request `request` (the msg being
 * handled) with `*reply_p`. The on_message should then return OK. A delivery that is not a
 * request (an ordinary routed event) ignores the reply and returns KANAL_ESTATE.
 * Ownership: borrows request; takes *reply_p and sets it to NULL. */
int kanal_reply(kanal_ctx_t *ctx, const kanal_msg_t *request, kanal_msg_t **reply_p);

/* True when the message being handled is a request that expects kanal_reply. */
bool kanal_is_request(const kanal_ctx_t *ctx);

/* From on_message: records why the outcome is RETRY or REJECT. The text goes to the
 * journal, the event stream and the dead-letter store, with CPR numbers masked. The last
 * call wins. */
void kanal_set_error(kanal_ctx_t *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* From on_message returning RETRY: asks that the next attempt wait at least delay_ms. */
void kanal_set_retry_after(kanal_ctx_t *ctx, int64_t delay_ms);

/* Facts about the delivery being handled (valid only inside on_message): the route that
 * produced it (NULL for a request or a direct send), its delivery id (unique per event and
 * destination in this broker) and the attempt number, counted from 1. */
const char *kanal_delivery_route(const kanal_ctx_t *ctx);
uint64_t kanal_delivery_id(const kanal_ctx_t *ctx);
int kanal_delivery_attempt(const kanal_ctx_t *ctx);

/* Timers. fn runs on the instance's thread `after_ms` from now and then, when interval_ms
 * > 0, every interval_ms. Returns a positive timer id, or a negative code. */
typedef void (*kanal_timer_fn)(kanal_ctx_t *ctx, void *arg);
int64_t kanal_timer_add(kanal_ctx_t *ctx, int64_t after_ms, int64_t interval_ms,
			kanal_timer_fn fn, void *arg);
/* Cancels a timer; returns 0 or KANAL_ENOTFOUND. Safe from within its own callback. */
int kanal_timer_cancel(kanal_ctx_t *ctx, int64_t timer_id);

/* File-descriptor watches: fn runs on the instance's thread when fd is readable
 * (KANAL_FD_READ) and/or writable (KANAL_FD_WRITE); `events` tells which. One watch per fd;
 * adding again replaces it. The plugin keeps owning fd. */
#define KANAL_FD_READ 1
#define KANAL_FD_WRITE 2
typedef void (*kanal_fd_fn)(kanal_ctx_t *ctx, int fd, int events, void *arg);
int kanal_fd_watch(kanal_ctx_t *ctx, int fd, int events, kanal_fd_fn fn, void *arg);
int kanal_fd_unwatch(kanal_ctx_t *ctx, int fd);

/* Logging, with CPR numbers masked before the line leaves the process. */
typedef enum kanal_log_level {
	KANAL_LOG_ERROR = 0,
	KANAL_LOG_WARN,
	KANAL_LOG_INFO,
	KANAL_LOG_DEBUG,
} kanal_log_level_t;
void kanal_log(kanal_ctx_t *ctx, kanal_log_level_t level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Returns "error", "warn", "info", "debug". */
const char *kanal_log_level_name(kanal_log_level_t level);

/* Per-instance metrics: a counter adds `delta`; a gauge is set. Names are [a-z0-9_]. */
void kanal_metric_add(kanal_ctx_t *ctx, const char *name, int64_t delta);
void kanal_metric_set(kanal_ctx_t *ctx, const char *name, double value);

#ifdef __cplusplus
}
#endif
#endif
