/*
 * kanal/plugin.h — the plugin ABI, version 1.
 *
 * A plugin is a shared object that exports exactly one symbol, `kanal_plugin` (use the
 * KANAL_PLUGIN_EXPORT macro), a kanal_plugin_t descriptor. The host — kanald, the isolated
 * plugin host, or the SDK's test harness — checks the descriptor's ABI version and size,
 * validates the instance's options against the descriptor's options table, then drives the
 * lifecycle:
 *
 *   check(ctx, config)          (optional) validate only: no side effects
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
 * abi_minor is not newer than its own. Minor versions only append fields to the descriptor
 * and to kanal_option_t; struct_size tells the host which descriptor fields the plugin
 * knows, and abi_minor how large each entry of its options table is (1.0: the five fields
 * up to `help`, KANAL_OPTION_V1_0_SIZE; 1.1: sizeof(kanal_option_t)). The host steps
 * through a plugin's table with the stride of the minor the plugin declared.
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

/* Only what this header declares is exported from libkanal, which is built with
 * -fvisibility=hidden (docs/design/library.md). */
#pragma GCC visibility push(default)

#define KANAL_ABI_MAJOR 1
#define KANAL_ABI_MINOR 1

/* The name of the one symbol a plugin exports. */
#define KANAL_PLUGIN_SYMBOL "kanal_plugin"

/* Exports a plugin descriptor: `KANAL_PLUGIN_EXPORT = { .abi_major = …, … };` */
#define KANAL_PLUGIN_EXPORT __attribute__((visibility("default"))) const kanal_plugin_t kanal_plugin

/* The result of on_message. OK is 0, always. */
typedef enum kanal_outcome {
	KANAL_OUTCOME_OK = 0, /* delivered; the bus forgets it for this destination */
	KANAL_OUTCOME_RETRY =
		1, /* transient failure; the bus retries later (see set_retry_after) */
	KANAL_OUTCOME_REJECT = 2, /* permanent failure; the route's fallback, else dead letters */
} kanal_outcome_t;

/* Returns "ok", "retry" or "reject". Ownership: none (plain values); the string is static. */
const char *kanal_outcome_name(kanal_outcome_t outcome);

/* Option types. Durations are written "250ms", "2s", "5m", "1h" (a bare number is
 * milliseconds); sizes "512", "64KiB", "8MiB". */
typedef enum kanal_opt_type {
	KANAL_OPT_STRING = 1,
	KANAL_OPT_INT, /* 64-bit signed */
	KANAL_OPT_DOUBLE,
	KANAL_OPT_BOOL,
	KANAL_OPT_DURATION, /* read with kanal_config_duration_ms */
	KANAL_OPT_SIZE,     /* read with kanal_config_int, in bytes */
	KANAL_OPT_LIST,     /* a list of strings; read with kanal_config_list */
	KANAL_OPT_PATH,     /* a file or folder; a relative one is resolved against the folder
			     * of the config file that gave it; read with kanal_config_string */
} kanal_opt_type_t;

/* Returns "string", "int", … for a type. Ownership: none (plain values); the string is
 * static. */
const char *kanal_opt_type_name(kanal_opt_type_t type);

/* One entry of a plugin's options table; the table ends with an entry whose name is NULL.
 * Write entries with designated initializers; a bound option (ABI 1.1) says where
 * kanal_config_bind stores its value:
 *
 *   { .name = "interval", .type = KANAL_OPT_DURATION, .default_value = "30s",
 *     .min = "1s", KANAL_OPT_AT(poller_t, interval_ms), .help = "How often to poll." },
 *
 * The fields after `help` are ABI 1.1; a 1.0 plugin's table has only the first five, and the
 * host reads it as if the others were zero (nothing bound, no bounds, anything allowed). */
typedef struct kanal_option {
	const char *name; /* lower-case, [a-z0-9_] */
	kanal_opt_type_t type;
	const char *default_value; /* text as it would be written in YAML; NULL: no default */
	bool required;             /* must be given (a default is then meaningless) */
	const char *help;          /* one sentence for `kanalctl plugin info` */
	/* ---- ABI 1.1 */
	bool bound;                 /* kanal_config_bind stores the value at `offset` */
	size_t offset;              /* offsetof(the plugin's state struct, the field); see
				    * kanal_config_bind for the field's C type per option type */
	const char *min;            /* INT, SIZE, DURATION, DOUBLE: the smallest value allowed, */
	const char *max;            /* and the largest, written as a value ("1s", "64KiB");
				    * NULL: no bound */
	const char *const *allowed; /* STRING (and each item of a LIST): the values allowed, a
				     * NULL-terminated array; NULL: any */
} kanal_option_t;

/* The size of a 1.0 options-table entry (the fields up to `help`). */
#define KANAL_OPTION_V1_0_SIZE (offsetof(kanal_option_t, help) + sizeof(const char *))

/* Binds an option to a member of the plugin's state struct, inside a designated initializer. */
#define KANAL_OPT_AT(state_type, member) .bound = true, .offset = offsetof(state_type, member)

/* A bound LIST option: `count` strings, borrowed from the config (valid until destroy). */
typedef struct kanal_strlist {
	const char *const *items;
	size_t count;
} kanal_strlist_t;

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
	/* Starts work. Returns 0 or a negative code (after kanal_set_error). May be NULL. In
	 * cluster mode a singleton may be started again after stop (its node took the lease
	 * back), and gets on_message without start on the nodes that do not hold it. */
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

	/* ---- ABI 1.1 */
	/* Validates the config without side effects, for what the options table cannot say:
	 * rules that span several options, files that must exist or be private, addresses and
	 * ports. It may read files; it creates, changes and connects to nothing, starts no
	 * thread and keeps nothing. `kanalctl check`, `kanald --check` and every start call it
	 * after the table's checks and before init, so that a rule here holds for the three
	 * alike: init should call the same code rather than repeat the rule. Returns 0, or a
	 * negative code after kanal_set_error() says why. On its ctx only kanal_set_error,
	 * kanal_log and kanal_instance_name work (kanal_state_dir is NULL; emit, request,
	 * timers and fd watches fail). Optional: NULL, or absent from a 1.0 descriptor, means
	 * the table's checks are all. */
	int (*check)(kanal_ctx_t *ctx, const kanal_config_t *config);
} kanal_plugin_t;

/* The smallest struct_size a host accepts (ABI 1.0's fields). */
#define KANAL_PLUGIN_V1_0_SIZE (offsetof(kanal_plugin_t, destroy) + sizeof(void (*)(void *)))

/* ---- Configuration: the instance's options, validated against the table (types, and for
 * ABI 1.1 min, max and allowed) and completed with defaults before init. Every bad option of
 * an instance is reported, each with file:line, before init runs; init only checks what one
 * option cannot say alone (two options that go together). Strings are borrowed from the
 * config and valid until destroy.
 *
 * Getters for a declared option of a matching type always succeed. Asking for a name the
 * table does not declare, or with the getter of another type, is a bug in the plugin: the
 * getter logs an error naming the instance and the option (standard error) and returns the
 * stated fallback.
 *
 * Ownership (every getter below): borrows cfg and name; a string is borrowed from cfg. */

const char *kanal_config_string(const kanal_config_t *cfg, const char *name);  /* NULL */
int64_t kanal_config_int(const kanal_config_t *cfg, const char *name);         /* 0 */
double kanal_config_double(const kanal_config_t *cfg, const char *name);       /* 0.0 */
bool kanal_config_bool(const kanal_config_t *cfg, const char *name);           /* false */
int64_t kanal_config_duration_ms(const kanal_config_t *cfg, const char *name); /* 0 */
/* Number of strings in a list option, and the i-th one (NULL when out of range).
 * Ownership: borrows cfg and name; the string is borrowed from cfg. */
size_t kanal_config_list_count(const kanal_config_t *cfg, const char *name);
const char *kanal_config_list(const kanal_config_t *cfg, const char *name, size_t i);
/* True when the option was given in the file (not only defaulted).
 * Ownership: borrows cfg and name. */
bool kanal_config_given(const kanal_config_t *cfg, const char *name);

/* Returns 0 when the table declares `name`, else KANAL_EINVAL (and logs it, as the getters
 * do). Ownership: borrows both. */
int kanal_config_has(const kanal_config_t *cfg, const char *name);

/* ABI 1.1: stores every bound option's value (given or default) into the struct at `state`,
 * at the option's offset: STRING and PATH as `const char *` (NULL when the option has no
 * value), INT and SIZE as int64_t, DURATION as int64_t milliseconds, DOUBLE as double,
 * BOOL as bool, LIST as kanal_strlist_t. An option without a value leaves its field as it
 * was. Strings and lists are borrowed from the config: valid until the plugin's destroy,
 * never to be freed by the plugin. Call it from init, after allocating the state. Returns 0,
 * or KANAL_EINVAL when cfg or state is NULL. Ownership: borrows cfg; writes into state. */
int kanal_config_bind(const kanal_config_t *cfg, void *state);

/* ---- Host services. */

/* The instance's name, from kanald.yaml. Ownership: borrows ctx; the string is borrowed
 * from ctx. */
const char *kanal_instance_name(const kanal_ctx_t *ctx);

/* A folder this instance may keep state in across restarts (cursors, caches); it exists.
 * Ownership: borrows ctx; the string is borrowed from ctx. */
const char *kanal_state_dir(const kanal_ctx_t *ctx);

/* The longest state key, and the largest state value, kanal_state_put takes. */
#define KANAL_STATE_KEY_MAX 100
#define KANAL_STATE_VALUE_MAX (1024 * 1024)

/* Reads the instance's durable state under `key` (since ABI 1.1): a poller's cursor, a
 * feed's seen-list. A key is 1-100 of A-Z a-z 0-9 . _ - and does not start with '.'. In
 * kanald's single-node modes (and the harness, and an isolated plugin's host) the value is
 * the file <kanal_state_dir>/<key>, so a cursor file written before this API is read as it
 * is; in cluster mode a singleton instance's state is in the cluster's key-value store
 * instead, so the node that takes the instance over reads what the last one wrote
 * (docs/cluster.md). On success *value_out is the value, NUL-terminated. Returns 0,
 * KANAL_ENOTFOUND (nothing stored yet), KANAL_EINVAL (a bad key), KANAL_ETHREAD (off the
 * instance's thread), KANAL_ESTATE (no state folder: e.g. in check), KANAL_EIO (with err
 * saying why; err may be NULL). In cluster mode it waits for the store (a few seconds at
 * most). Ownership: borrows ctx and key; *value_out is new, the caller frees it with
 * free(); fills err. */
int kanal_state_get(kanal_ctx_t *ctx, const char *key, char **value_out, kanal_error_t *err);

/* Stores `value` (text, at most KANAL_STATE_VALUE_MAX bytes) under `key` durably before it
 * returns: a file written atomically (fsync'd, mode 0600; a crash leaves the old value or
 * the new), or in cluster mode the key-value store's acknowledgement (a majority of its
 * replicas). Call it only once what the value records is durable (after kanal_emit_flush
 * for a cursor). Returns 0, KANAL_EINVAL, KANAL_ETOOBIG, KANAL_ETHREAD, KANAL_ESTATE or
 * KANAL_EIO (err says why; may be NULL). Ownership: borrows everything; fills err. */
int kanal_state_put(kanal_ctx_t *ctx, const char *key, const char *value, kanal_error_t *err);

/* Monotonic milliseconds, the clock of timers and deadlines (for timestamps, kanal_wall_ms
 * in kanal/time.h). Ownership: none (plain values). */
int64_t kanal_now_ms(void);

/* Hands an event to the bus. Sets `source` to the instance name when the event has none.
 * Returns 0 once the bus has accepted the event: it is then the bus's to deliver. Returns
 * KANAL_EBUSY when the bus applies backpressure (a destination's queue is full, or the
 * instance is over its limits.rate; try again later — the event was not accepted), KANAL_EINVALID when the event fails validation (a
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
 * KANAL_ETIMEDOUT, KANAL_ECLOSED or KANAL_ETHREAD. Ownership: borrows ctx. */
int kanal_emit_flush(kanal_ctx_t *ctx, int64_t timeout_ms);

/* Sends `*request_p` to the service instance named `service` and waits up to timeout_ms for
 * its reply, blocking this instance (its other callbacks wait). On success stores the reply
 * in *reply_out and returns 0. Returns KANAL_ENOSERVICE (no such instance), KANAL_ETIMEDOUT,
 * KANAL_EREJECTED (the service answered REJECT or RETRY; *reply_out NULL), KANAL_ECLOSED.
 * Ownership: takes *request_p, always, and sets it to NULL; borrows service; puts a new
 * message in *reply_out the caller destroys with kanal_msg_destroy. */
int kanal_request(kanal_ctx_t *ctx, const char *service, kanal_msg_t **request_p,
		  int64_t timeout_ms, kanal_msg_t **reply_out);

/* From a service plugin's on_message: answers the request `request` (the msg being
 * handled) with `*reply_p`. The on_message should then return OK. A delivery that is not a
 * request (an ordinary routed event) ignores the reply and returns KANAL_ESTATE.
 * Ownership: borrows request; takes *reply_p and sets it to NULL. */
int kanal_reply(kanal_ctx_t *ctx, const kanal_msg_t *request, kanal_msg_t **reply_p);

/* True when the message being handled is a request that expects kanal_reply.
 * Ownership: borrows ctx. */
bool kanal_is_request(const kanal_ctx_t *ctx);

/* From on_message: records why the outcome is RETRY or REJECT. The text goes to the
 * journal, the event stream and the dead-letter store, with CPR numbers masked. The last
 * call wins. Ownership: borrows ctx; copies the formatted text. */
void kanal_set_error(kanal_ctx_t *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* From on_message returning RETRY: asks that the next attempt wait at least delay_ms.
 * Ownership: borrows ctx. */
void kanal_set_retry_after(kanal_ctx_t *ctx, int64_t delay_ms);

/* Facts about the delivery being handled (valid only inside on_message): the route that
 * produced it (NULL for a request or a direct send), its delivery id (unique per event and
 * destination in this broker) and the attempt number, counted from 1.
 * Ownership: borrows ctx; the route is borrowed from ctx, valid until on_message returns. */
const char *kanal_delivery_route(const kanal_ctx_t *ctx);
uint64_t kanal_delivery_id(const kanal_ctx_t *ctx);
int kanal_delivery_attempt(const kanal_ctx_t *ctx);

/* Timers. fn runs on the instance's thread `after_ms` from now and then, when interval_ms
 * > 0, every interval_ms. Returns a positive timer id, or a negative code.
 * Ownership: borrows ctx; arg is handed to fn as it is and must stay valid until the timer
 * is cancelled, has run for the last time (a one-shot timer: its one run), or the
 * instance's stop has returned (the host removes remaining timers then) — the plugin's
 * state, freed in destroy, always qualifies. */
typedef void (*kanal_timer_fn)(kanal_ctx_t *ctx, void *arg);
int64_t kanal_timer_add(kanal_ctx_t *ctx, int64_t after_ms, int64_t interval_ms, kanal_timer_fn fn,
			void *arg);
/* Cancels a timer; returns 0 or KANAL_ENOTFOUND. Safe from within its own callback.
 * Ownership: borrows ctx; arg is no longer used once this returns. */
int kanal_timer_cancel(kanal_ctx_t *ctx, int64_t timer_id);

/* File-descriptor watches: fn runs on the instance's thread when fd is readable
 * (KANAL_FD_READ) and/or writable (KANAL_FD_WRITE); `events` tells which. One watch per fd;
 * adding again replaces it. Returns 0 or a negative code (KANAL_ETHREAD off the
 * instance's thread); kanal_fd_unwatch returns 0 or KANAL_ENOTFOUND.
 * Ownership: borrows ctx and fd (the plugin keeps owning fd, and closes it only after
 * kanal_fd_unwatch); arg is handed to fn as it is and must stay valid until the watch is
 * replaced, removed with kanal_fd_unwatch, or the instance's stop has returned. */
#define KANAL_FD_READ 1
#define KANAL_FD_WRITE 2
typedef void (*kanal_fd_fn)(kanal_ctx_t *ctx, int fd, int events, void *arg);
int kanal_fd_watch(kanal_ctx_t *ctx, int fd, int events, kanal_fd_fn fn, void *arg);
int kanal_fd_unwatch(kanal_ctx_t *ctx, int fd);

/* Logging, with CPR numbers masked before the line leaves the process.
 * Ownership (kanal_log): borrows ctx; copies the formatted text. */
typedef enum kanal_log_level {
	KANAL_LOG_ERROR = 0,
	KANAL_LOG_WARN,
	KANAL_LOG_INFO,
	KANAL_LOG_DEBUG,
} kanal_log_level_t;
void kanal_log(kanal_ctx_t *ctx, kanal_log_level_t level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Returns "error", "warn", "info", "debug". Ownership: none (plain values); the string is
 * static. */
const char *kanal_log_level_name(kanal_log_level_t level);

/* Per-instance metrics: a counter adds `delta`; a gauge is set. Names are [a-z0-9_].
 * Ownership: borrows ctx; copies name. */
void kanal_metric_add(kanal_ctx_t *ctx, const char *name, int64_t delta);
void kanal_metric_set(kanal_ctx_t *ctx, const char *name, double value);

/* Reports whether the system behind the instance (its upstream) answers: up after an
 * answer from it, down after it could not be reached or failed (refused, timed out, a
 * 5xx). kanald shows the last report in status and /metrics (kanal_instance_upstream_up)
 * and /readyz waits for the instances named in endpoints.readyz_requires to report up.
 * Only a change is passed on, so it may be called after every call to the upstream; the
 * connectors built on plugins/common/kc_http report through it by themselves. Call it from
 * the instance's thread (since ABI 1.1). Ownership: borrows ctx. */
void kanal_upstream_report(kanal_ctx_t *ctx, bool up);

/* ---- Answering a request later (ABI 1.1): a service that answers several requests at once.
 *
 * A service's on_message may take the request out of the one-at-a-time path: it calls
 * kanal_request_defer, starts the work (a worker thread, a transfer watched with
 * kanal_fd_watch) and returns at once; the host then hands it the next delivery while the
 * work goes on, and the request is answered whenever the plugin calls kanal_pending_reply or
 * kanal_pending_fail — from the instance's thread, like every host service. When the caller
 * gives up first (an enrich step's timeout), the host answers the caller itself and calls
 * the plugin's `on_cancel`: the plugin should abandon the work (close the transfer); its
 * later kanal_pending_reply or kanal_pending_fail only releases the handle, and nothing is
 * answered late. A host that cannot defer (the SDK's test harness, `isolation: process`)
 * returns NULL from kanal_request_defer and the plugin answers in on_message as before.
 * docs/design/service-concurrency.md says why it is built this way. */

typedef struct kanal_pending kanal_pending_t; /* one deferred request, owned by the plugin */

/* Called on the instance's thread when the caller of `pending` gave up. The handle stays
 * the plugin's: end it with kanal_pending_reply or kanal_pending_fail as usual (they then
 * only release it). Ownership: borrows ctx and pending. */
typedef void (*kanal_cancel_fn)(kanal_ctx_t *ctx, kanal_pending_t *pending, void *arg);

/* From on_message handling a request (kanal_is_request): defers its answer. Returns the
 * handle the answer is given with, or NULL when the host cannot defer (or the delivery is
 * not a request, or the call is not from on_message): answer in on_message then. After a
 * non-NULL return, on_message's outcome is ignored (return OK) and kanal_reply is refused.
 * `on_cancel` may be NULL; `arg` is handed to it as it is. Every handle must be ended
 * before the plugin's stop returns. Ownership: borrows ctx; the handle is the caller's
 * until kanal_pending_reply or kanal_pending_fail takes it; arg must stay valid as long. */
kanal_pending_t *kanal_request_defer(kanal_ctx_t *ctx, kanal_cancel_fn on_cancel, void *arg);

/* Answers the deferred request OK with *reply_p. Returns 0, KANAL_ETIMEDOUT when the
 * caller had given up (the reply is destroyed), KANAL_ETHREAD off the instance's thread,
 * KANAL_EINVAL for a NULL argument (those two take nothing). Ownership: takes *pending_p
 * and *reply_p, and sets both to NULL. */
int kanal_pending_reply(kanal_ctx_t *ctx, kanal_pending_t **pending_p, kanal_msg_t **reply_p);

/* Answers the deferred request RETRY or REJECT with the reason (formatted, CPR numbers
 * masked, as kanal_set_error) and, for RETRY, a wait hint (retry_after_ms; -1: none).
 * Returns as kanal_pending_reply (KANAL_EINVAL also for another outcome). Ownership:
 * takes *pending_p and sets it to NULL; copies the text. */
int kanal_pending_fail(kanal_ctx_t *ctx, kanal_pending_t **pending_p, kanal_outcome_t outcome,
		       int64_t retry_after_ms, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* True once the caller of `pending` gave up (on_cancel has run or is running). Safe from
 * any thread (a worker may poll it to stop early). Ownership: borrows pending. */
bool kanal_pending_cancelled(const kanal_pending_t *pending);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
