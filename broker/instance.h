/*
 * broker/instance.h — one plugin instance: its loaded .so, validated options, state and
 * thread. The thread owns the instance's two DEALER sockets and its loop; every plugin
 * callback runs on it, so the router thread never runs plugin code.
 */
#ifndef KANAL_INSTANCE_H
#define KANAL_INSTANCE_H

#include <pthread.h>
#include <stdbool.h>
#include "conf.h"
#include "host.h"

struct isolation;

/* Where a singleton's state lives in cluster mode (cluster_lease.c): kanal_state_get/put of
 * the instance go to these instead of its state folder's files. Called on the instance's
 * thread; they wait for NATS. Return as kanal_state_get/put. */
typedef struct instance_store {
	int (*get)(void *arg, const char *instance, const char *key, char **value_out,
		   kanal_error_t *err);
	int (*put)(void *arg, const char *instance, const char *key, const char *value,
		   kanal_error_t *err);
} instance_store_t;

typedef struct instance_metric {
	char name[64];
	double value;
	bool gauge; /* last changed by kanal_metric_set (a counter is added to) */
} instance_metric_t;

typedef struct instance {
	char *name;
	size_t index;
	kanal_loaded_t *plugin;
	kanal_config_t *config;
	kanal_ctx_t *ctx;
	void *state;
	bool inited;
	int64_t max_event_bytes;
	/* `acl: {emit: […]}` (borrowed from the config, which outlives the instance): the
	 * type patterns it may emit, checked in kanal_emit (acl.c). */
	bool has_acl;
	char *const *acl_emit;
	size_t n_acl_emit;
	bool has_acl_sources; /* `acl: {sources: […]}`: the sources it owns (tenancy.md) */
	char *const *acl_sources;
	size_t n_acl_sources;
	uint64_t acl_denied; /* emits the acl refused; atomic (the router reads it) */
	/* `limits.rate`: the token bucket on emits (NULL: none; used on the instance's thread
	 * only), and the emits it refused (atomic: the router reads it). */
	struct ratelimit *rate;
	uint64_t rate_limited;
	int upstream; /* kanal_upstream_report's last: 1 up, 0 down, -1 none; atomic */
	/* `isolation: process`: the plugin runs in a plugin host and this instance's thread is
	 * its proxy (isolation.c); NULL for a plugin on the thread itself. */
	struct isolation *iso;

	/* Thread and its sockets (touched only by the thread once it runs). */
	void *zctx;
	pthread_t thread;
	bool thread_started;
	void *deliver_sock;
	void *emit_sock;
	int emit_outstanding;
	bool closing;
	/* Set by the router when the shutdown deadline has passed: deliveries still queued to
	 * the thread are answered RETRY without running the plugin (the journal keeps them). */
	int abandon;
	/* The thread did not end within the deadline: its plugin is stuck in a callback, so
	 * the instance must be neither destroyed nor unloaded. */
	bool stuck;
	uint64_t req_seq;
	kanal_msg_t *pending_reply;

	/* Start handshake with the main thread. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int start_state; /* 0 starting, 1 running, <0 failed */
	char start_error[512];

	/* Cluster mode, `singleton`: the thread runs and deliveries are handled on every node,
	 * but the plugin's start waits until this node holds the instance's lease
	 * (cluster_lease.c asks through instance_set_active; the pipe wakes the thread). */
	bool singleton;
	int lease_pipe[2];
	int want_active;     /* atomic: what the lease says */
	int active;          /* atomic: the plugin is started (status reads it) */
	bool plugin_started; /* the thread's own view */
	int start_failed;    /* atomic: a start on the lease's word failed (the lease reads it) */
	const instance_store_t *store; /* NULL: the state folder's files */
	void *store_arg;

	/* Metrics, read by the admin status under mu. */
	instance_metric_t metrics[32];
	size_t n_metrics;
} instance_t;

/* Validates one instance the way every start does, without init: opens its plugin, checks
 * its options against the plugin's table and runs the plugin's check callback (kanal/
 * plugin.h), which reads files at most — nothing is created, nothing connects. Errors are
 * added to d as for instance_load; the callback's log lines (warnings) go to standard
 * error in the same form unless `quiet`. An entry the config itself refused (no name or
 * plugin) is skipped. Returns 0 or a negative code. kanalctl check and kanald --check use
 * it, and a start before any init, so that a refused start has made nothing. */
int instance_check(const conf_t *conf, const conf_instance_t *ci, bool quiet, diag_t *d);

/* instance_check for every instance of conf, each reported. Returns the errors added. */
size_t instance_check_all(const conf_t *conf, bool quiet, diag_t *d);

/* Opens the instance's plugin, validates its options against the plugin's table, runs the
 * plugin's check (the same validation as instance_check) and calls init — or, for `isolation: process`, prepares the plugin host that will call it (options
 * are refused here all the same). Every failure is added to d as
 * "file:line:col: error: instance 'x': …". */
int instance_load(const conf_t *conf, const conf_instance_t *ci, size_t index, instance_t **out,
		  diag_t *d);

/* Starts the instance's thread, which connects to the router (whose sockets must be bound)
 * and calls the plugin's start. Waits for the outcome: returns 0, or a negative code with
 * the reason in err. */
int instance_start(instance_t *inst, void *zctx, char *err, size_t err_size);

/* Waits for the thread to end (after the router sent S), until deadline_ms (monotonic; 0
 * waits for ever). Returns 0, or KANAL_ETIMEDOUT and marks the instance stuck. */
int instance_join(instance_t *inst, int64_t deadline_ms);

/* Calls the plugin's destroy (if init succeeded), unloads it and frees the instance. */
void instance_destroy(instance_t **inst_p);

/* Tells instance_start, waiting on the main thread, how the start went: state 1 running,
 * or a negative code with `why` (may be NULL). Called once, from the instance's thread. */
void instance_report_start(instance_t *inst, int state, const char *why);

/* What the instance last said of its upstream (kanal_upstream_report): 1 up, 0 down, -1
 * nothing yet. Safe from any thread. */
int instance_upstream(const instance_t *inst);

/* Emits refused by the instance's limits.rate so far. Safe from any thread. */
uint64_t instance_rate_limited(const instance_t *inst);

/* Makes the instance a singleton (cluster mode): from instance_start on, its plugin is
 * started only between instance_set_active(true) and (false), and its state goes to store
 * (borrowed; must outlive the instance's thread). Call before instance_start. Returns 0 or
 * KANAL_EIO (no pipe). */
int instance_make_singleton(instance_t *inst, const instance_store_t *store, void *store_arg);

/* Asks the instance's thread to start (active) or stop its plugin; returns at once (the
 * thread acts within its next loop turn). Safe from any thread; a singleton only. */
void instance_set_active(instance_t *inst, bool active);

/* True while the singleton's plugin is started on this node. Safe from any thread. */
bool instance_is_active(const instance_t *inst);

/* True once after a start asked by instance_set_active(true) failed (the flag is cleared):
 * the lease holder should let the lease go rather than hold a singleton that does not run.
 * Safe from any thread. */
bool instance_take_start_failure(instance_t *inst);

/* Copies the instance's metrics (for status); returns the count. */
size_t instance_metrics(instance_t *inst, instance_metric_t *out, size_t cap);

#endif
