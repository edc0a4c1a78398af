/*
 * sdk/host.h — the private contract between libkanal and the programs that host plugins
 * (kanald, kanal-plugin-host, the test harness, kanalctl). Not installed; plugins never see
 * it. Symbols here are exported from libkanal with the `kanal__` prefix: internal, no ABI
 * promise.
 *
 * A host gives each plugin instance a kanal_ctx_t whose `ops` table implements the
 * services of kanal/plugin.h; the public functions in ctx.c check the calling thread and
 * forward to it. Timers and fd watches are provided generically by kanal__loop, which the
 * host drives from the instance's thread.
 */
#ifndef KANAL_HOST_H
#define KANAL_HOST_H

#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <kanal/kanal.h>

typedef struct kanal_loop kanal_loop_t;

/* The services a host implements. Each is called on the instance's thread. */
typedef struct kanal_host_ops {
	/* Takes msg (the caller's pointer is cleared by ctx.c). */
	int (*emit)(kanal_ctx_t *ctx, kanal_msg_t *msg);
	/* Waits until every emit so far is acknowledged (journalled). */
	int (*flush)(kanal_ctx_t *ctx, int64_t timeout_ms);
	/* Takes req. */
	int (*request)(kanal_ctx_t *ctx, const char *service, kanal_msg_t *req, int64_t timeout_ms,
		       kanal_msg_t **reply_out);
	/* Takes reply; ctx->delivery describes the request being answered. */
	int (*reply)(kanal_ctx_t *ctx, kanal_msg_t *reply);
	/* `line` is formatted and already CPR-masked. */
	void (*log)(kanal_ctx_t *ctx, kanal_log_level_t level, const char *line);
	void (*metric_add)(kanal_ctx_t *ctx, const char *name, int64_t delta);
	void (*metric_set)(kanal_ctx_t *ctx, const char *name, double value);
	/* The upstream's state changed (kanal_upstream_report); NULL: not shown. */
	void (*upstream)(kanal_ctx_t *ctx, bool up);
	/* Answers the deferred request `id` (kanal_request_defer): outcome, the reply on OK
	 * (taken), the masked error text (borrowed; "" when none), the retry hint. NULL: the
	 * host cannot defer, and kanal_request_defer returns NULL. */
	void (*answer)(kanal_ctx_t *ctx, uint64_t id, int outcome, kanal_msg_t *reply,
		       const char *error, int64_t retry_after_ms);
	/* kanal_state_get / kanal_state_put (the key is checked already). NULL: the file of
	 * the state folder (kanal__state_file_get/put), which a host may also call itself. */
	int (*state_get)(kanal_ctx_t *ctx, const char *key, char **value_out, kanal_error_t *err);
	int (*state_put)(kanal_ctx_t *ctx, const char *key, const char *value, kanal_error_t *err);
} kanal_host_ops_t;

/* What the instance is handling right now, set by the host around on_message. */
typedef struct kanal_delivery_info {
	bool active;     /* inside on_message */
	bool is_request; /* a request expecting kanal_reply */
	bool replied;
	bool deferred;     /* kanal_request_defer took it: the host does not answer it now */
	const char *route; /* borrowed from the host */
	uint64_t id;
	int attempt;
	int64_t retry_after_ms; /* -1: no hint */
	char error[512];        /* set by kanal_set_error, masked */
} kanal_delivery_info_t;

struct kanal_ctx {
	const kanal_host_ops_t *ops;
	void *host; /* the host's per-instance object */
	char *name; /* instance name */
	char *state_dir;
	kanal_log_level_t log_level; /* lines above it are not formatted at all */
	pthread_t thread;            /* the instance's thread; set by kanal__ctx_bind */
	bool bound;
	kanal_loop_t *loop; /* timers and fd watches */
	kanal_delivery_info_t delivery;
	int upstream;                    /* last kanal_upstream_report: 1 up, 0 down, -1 none yet */
	struct kanal__blob_store *blobs; /* the host's blob store, borrowed; NULL: none */
	kanal_pending_t *pending;        /* deferred requests not yet answered */
};

/* Creates a ctx for instance `name` with the given ops, host object and state folder
 * (created with mode 0700, parents too, if missing; NULL: none). The ctx owns a new
 * kanal_loop_t in ctx->loop, destroyed with it. log_level starts at KANAL_LOG_INFO.
 * Returns NULL when out of memory or the state folder cannot be created (errno tells). */
kanal_ctx_t *kanal__ctx_new(const char *name, const kanal_host_ops_t *ops, void *host,
			    const char *state_dir);
void kanal__ctx_destroy(kanal_ctx_t **ctx_p);
/* Binds the ctx to the calling thread: host services are accepted only from it. */
void kanal__ctx_bind(kanal_ctx_t *ctx);
/* Resets ctx->delivery for a new on_message call (error cleared, retry hint -1). `route`
 * is borrowed until end_delivery. */
void kanal__ctx_begin_delivery(kanal_ctx_t *ctx, uint64_t id, const char *route, int attempt,
			       bool is_request);
/* Marks the delivery finished; ctx->delivery.error, .retry_after_ms and .replied keep their
 * values for the host to read until the next begin_delivery. */
void kanal__ctx_end_delivery(kanal_ctx_t *ctx);

/* The caller of deferred request `id` gave up: answers it RETRY through ops->answer with
 * `why`, marks its handle cancelled and calls the plugin's on_cancel. Returns whether `id`
 * was a deferred request still open (a request answered already is left alone). Call on
 * the instance's thread. */
bool kanal__ctx_cancel(kanal_ctx_t *ctx, uint64_t id, const char *why);
/* After the plugin's stop: answers RETRY with `why` every deferred request still open (a
 * plugin bug: the handles are ended in stop) and forgets them. Returns how many. */
size_t kanal__ctx_pending_abandon(kanal_ctx_t *ctx, const char *why);

/* ---- State (state.c): kanal_state_get/put's default, a file per key in ctx->state_dir,
 * written atomically with mode 0600. Return as kanal_state_get/put. */
bool kanal__state_key_ok(const char *key);
int kanal__state_file_get(const kanal_ctx_t *ctx, const char *key, char **value_out,
			  kanal_error_t *err);
int kanal__state_file_put(const kanal_ctx_t *ctx, const char *key, const char *value,
			  kanal_error_t *err);

/* Writes `len` bytes of `in` into out (NUL-terminated, at most size - 1 bytes) with
 * everything that is not printable text escaped: \n \r \t, \xHH for other control bytes
 * and broken UTF-8, \uHHHH for C1 controls, line separators and bidirectional controls.
 * Printable UTF-8 (æ, ø, å) is kept. Stops before a piece that does not fit; 4 * len + 1
 * bytes always suffice. Escaped text passes through unchanged (a backslash is not escaped),
 * so a line escaped by a plugin host and again by kanald reads the same. Returns the
 * length written. Ownership: borrows in; out is the caller's. */
size_t kanal__log_escape(char *out, size_t size, const char *in, size_t len);

/* ---- The instance loop: timers and fd watches, polled together with an optional ZeroMQ
 * socket of the host's. */
/* Returns a new, empty loop or NULL when out of memory. */
kanal_loop_t *kanal__loop_new(void);
/* Removes everything and frees the loop; never from within one of its callbacks. */
void kanal__loop_destroy(kanal_loop_t **loop_p);
int64_t kanal__loop_timer_add(kanal_loop_t *loop, kanal_ctx_t *ctx, int64_t after_ms,
			      int64_t interval_ms, kanal_timer_fn fn, void *arg);
int kanal__loop_timer_cancel(kanal_loop_t *loop, int64_t id);
int kanal__loop_fd_watch(kanal_loop_t *loop, kanal_ctx_t *ctx, int fd, int events, kanal_fd_fn fn,
			 void *arg);
int kanal__loop_fd_unwatch(kanal_loop_t *loop, int fd);
/* Removes every timer and watch (after the plugin's stop). */
void kanal__loop_clear(kanal_loop_t *loop);
/* Waits up to max_wait_ms (-1: until something happens; capped by the next timer) for the
 * ZeroMQ socket `zsock` (may be NULL) to be readable or a watched fd to be ready; then runs
 * due timers (in due order) and ready fd callbacks. Returns 1 when zsock is readable, 0
 * otherwise, or a negative code when polling failed (KANAL_ECLOSED: the socket's ZeroMQ
 * context was terminated; KANAL_ESTATE: called from within one of the loop's callbacks).
 * With nothing to wait for (no zsock, no timers, no watches) and max_wait_ms -1 it returns
 * 0 at once rather than block forever. Callbacks may add and cancel timers and watches,
 * their own included; a timer added by a callback runs on a later call at the earliest. */
int kanal__loop_run_once(kanal_loop_t *loop, void *zsock, int64_t max_wait_ms);
/* Number of live timers and watches (tests and shutdown checks). */
size_t kanal__loop_size(const kanal_loop_t *loop);

/* ---- Options: a given option as read from a config file, for kanal__config_build. */
typedef struct kanal_optval {
	const char *key;
	const char *value;  /* scalar text; NULL for a list */
	const char **items; /* list items when is_list */
	size_t n_items;
	bool is_list;
	int line, column; /* where the key is, for errors */
} kanal_optval_t;

/* Validates `given` against `table` (unknown key, wrong type, list for a scalar or scalar
 * for a list, an option given twice, missing required — the first of these as
 * "file:line:col: error: instance 'X': …" in err) and builds the config with defaults
 * filled in. `instance` names the instance in messages; inst_line/inst_column are where its
 * entry is (0 when unknown), used for a missing required option. Returns 0 or
 * KANAL_ECONFIG (KANAL_ENOMEM when out of memory); *out is NULL on failure.
 * Ownership: borrows everything; *out is new. */
int kanal__config_build(const kanal_option_t *table, const kanal_optval_t *given, size_t n,
			const char *file, const char *instance, int inst_line, int inst_column,
			kanal_config_t **out, kanal_error_t *err);

/* Receives one error of a config build; `err` is borrowed for the call. */
typedef void (*kanal_error_fn)(void *arg, const kanal_error_t *err);

/* kanal__config_build, reporting every bad option of the instance — unknown keys, wrong
 * types, values outside min/max or not allowed, missing required ones — each to
 * report(arg, err) in the order of the file, rather than only the first. Returns 0 or
 * KANAL_ECONFIG (KANAL_ENOMEM). Ownership: borrows everything; *out is new. */
int kanal__config_build_all(const kanal_option_t *table, const kanal_optval_t *given, size_t n,
			    const char *file, const char *instance, int inst_line, int inst_column,
			    kanal_config_t **out, kanal_error_fn report, void *arg);
void kanal__config_destroy(kanal_config_t **cfg_p);

/* Checks a plugin's options table: names [a-z0-9_], known types, no name twice, no
 * required option with a default, every default readable as its type, a NULL-name end
 * within 256 entries. Returns 0, or KANAL_EINVAL with the reason in why. NULL is a valid,
 * empty table. */
int kanal__options_check(const kanal_option_t *table, char *why, size_t why_size);

/* The size of one entry of desc's options table: KANAL_OPTION_V1_0_SIZE for a plugin built
 * for ABI 1.0, sizeof(kanal_option_t) for 1.1. */
size_t kanal__option_stride(const kanal_plugin_t *desc);
/* Copies desc's options table into today's layout, reading it at the plugin's stride; the
 * fields its minor does not know are zero. *out is NULL for a plugin without options, else
 * a new array ending with a NULL name (free with free()). Returns 0, KANAL_EINVAL (no end
 * entry within 256, reason in why) or KANAL_ENOMEM. Ownership: borrows desc; *out is new. */
int kanal__options_import(const kanal_plugin_t *desc, kanal_option_t **out, char *why,
			  size_t why_size);

/* "250ms", "2s", "1.5s", "5m", "1h", "1d"; a bare number is milliseconds. Returns 0 or
 * KANAL_EINVAL. */
int kanal__parse_duration_ms(const char *text, int64_t *out);
/* "512", "64KiB", "8MiB", "1GiB", "64KB" (=1000). Returns 0 or KANAL_EINVAL. */
int kanal__parse_size(const char *text, int64_t *out);
/* "true"/"false"/"yes"/"no"/"on"/"off". */
int kanal__parse_bool(const char *text, bool *out);

/* ---- Loading a plugin .so the same way everywhere. */
typedef struct kanal_loaded {
	void *handle;               /* dlopen handle */
	const kanal_plugin_t *desc; /* borrowed from the .so */
	kanal_option_t *options;    /* desc's options table in this host's layout (owned;
				       * NULL: none): use it, never desc->options */
	char *path;
} kanal_loaded_t;

/* dlopens `path` and checks the descriptor: present, ABI major equal, minor not newer,
 * struct_size large enough, name and init set, options table well-formed. On failure
 * fills err (source = path) naming both versions where they differ, closes the object and
 * returns KANAL_EABI (or KANAL_ENOTFOUND when the file cannot be opened). */
int kanal__plugin_open(const char *path, kanal_loaded_t **out, kanal_error_t *err);
void kanal__plugin_close(kanal_loaded_t **loaded_p);
/* Runs the plugin's check callback (ABI 1.1, kanal/plugin.h) on cfg, for instance
 * `instance`, on a ctx of its own that offers only logging: ops->log (ops and ops->log may
 * be NULL: lines are dropped) with `host` as ctx->host. A plugin without check passes.
 * Returns 0, or the callback's negative code (KANAL_EPLUGIN for a positive one) with err
 * holding what it gave kanal_set_error. Ownership: borrows everything; fills err. */
int kanal__plugin_check(const kanal_loaded_t *loaded, const char *instance,
			const kanal_config_t *cfg, const kanal_host_ops_t *ops, void *host,
			kanal_error_t *err);
/* True when the plugin has a check callback (its descriptor is new enough to hold one and
 * sets it). Ownership: borrows loaded. */
bool kanal__plugin_has_check(const kanal_loaded_t *loaded);
/* Prints name, version, ABI and the options table as documentation. */
void kanal__plugin_describe(const kanal_loaded_t *loaded, FILE *out);

/* The wall clock in ms since the epoch: kanal_wall_ms (kanal/time.h) under its older
 * internal name, which the broker uses. */
#define kanal__wall_ms kanal_wall_ms

#endif
