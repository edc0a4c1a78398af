/*
 * broker/trace.h — kanald's spans (`trace.export` in kanald.yaml): an accept span per
 * event, a route span per route it matched and a span per delivery attempt, cut on the
 * router's thread and sent as OTLP/HTTP JSON to a collector by a thread of their own,
 * through a bounded queue the router never waits on (a full queue drops and counts).
 * docs/design/tracing.md says where the spans are cut and why; docs/operations.md how to
 * run it.
 *
 * Every trace_* call but trace_new, trace_destroy and trace_counters runs on the router's
 * thread, the queue's one producer. The router calls them only when tracing is on
 * (r->trace not NULL): off, tracing costs a branch.
 */
#ifndef KANAL_TRACE_H
#define KANAL_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kanal/kanal.h>

#include "conf.h"
#include "routes.h"
#include "../plugins/common/kc_trace.h"

typedef struct trace trace_t;

/* What the accept span needs of an event, taken before the router takes the event. */
typedef struct trace_accept {
	kc_trace_ctx_t ctx;
	bool sampled;    /* spans are cut only for a sampled trace (its flags' bit 0) */
	bool has_parent; /* the event came with a traceparent: the accept span's parent */
	int64_t start_ns;
	char id[128], source[128], type[128];
} trace_accept_t;

/* Starts the exporter for conf's trace.export. Returns 0 with *out (NULL when tracing is
 * off), or KANAL_ENOMEM / KANAL_EIO (no thread) with the reason logged.
 * Ownership: borrows conf, which must outlive the tracer; *out is the caller's. */
int trace_new(const conf_t *conf, trace_t **out);

/* Sends what is queued (one last try, bounded by a short timeout), stops the exporter's
 * thread and frees the tracer. Accepts NULL. Ownership: takes *t_p and nulls it. */
void trace_destroy(trace_t **t_p);

/* The wall clock in ns since the epoch, as spans record times. */
int64_t trace_now_ns(void);

/* Before the router takes msg: gives it a fresh trace (traceparent "00-<new trace id>-<its
 * accept span>-01") when it has none, and fills *a for trace_accepted. Ownership: borrows
 * t; changes msg; writes *a. */
void trace_accept_begin(trace_t *t, kanal_msg_t *msg, trace_accept_t *a);

/* The event *a describes was accepted and matched routes m[0..n): queues its accept span
 * and a route span per route. Ownership: borrows all. */
void trace_accepted(trace_t *t, const trace_accept_t *a, const route_t *const *m, size_t n);

/* Delivery attempt `attempt` (delivery `delivery_id`) of msg (the route's event, which
 * names the trace) by `route` to `dest`, sent at start_ns (0: never sent), ended with
 * `outcome` ("ok", "retry", "reject" or "dead"): queues its span, a child of the route's
 * span. Ownership: borrows all. */
void trace_delivery(trace_t *t, const kanal_msg_t *msg, const char *route, const char *dest,
		    uint64_t delivery_id, int attempt, int64_t start_ns, const char *outcome);

/* The exporter's counters: spans the collector took, spans in requests it refused or
 * never answered, spans dropped for a full queue. Any thread. Ownership: borrows t. */
void trace_counters(trace_t *t, uint64_t *exported, uint64_t *failed, uint64_t *dropped);

#endif
