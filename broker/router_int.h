/*
 * broker/router_int.h — what the router's files share (router.c, gateway.c, delivery.c,
 * admin.c, park.c, recover.c, stats.c): the router's state, an event's records (shared_t,
 * jev_t), flows, deliveries and destinations, the hot helpers every file uses on the
 * router's thread (inline, as they were statics of one file), and each file's functions the
 * others call. Everything here runs on the router's thread only; nothing here is for
 * other modules (they use router.h). docs/design/broker-map.md draws the whole.
 */
#ifndef KANAL_ROUTER_INT_H
#define KANAL_ROUTER_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "bus.h"
#include "deadletter.h"
#include "dedupe.h"
#include "journal.h"
#include "mpool.h"
#include "msg_int.h"
#include "router.h"
#include "stream.h"
#include "trace.h"
#include "zap.h"

#define MAX_ERRORS 10 /* attempt errors kept per delivery */
/* A blob no event names is kept this long after its last put: its event may still be on
 * the way (docs/design/blobs.md). */
#define ROUTER_BLOB_GRACE_MS (60LL * 60 * 1000)

/* Publishes on the event stream, building the payload only when somebody subscribes: on
 * the hot paths the JSON would otherwise cost more than the routing. */
#define ROUTER_PUBLISH(r, kind, tail, ev, extra)                                                   \
	do {                                                                                       \
		if (stream_wanted((r)->stream))                                                    \
			stream_publish((r)->stream, kind, tail, ev, extra);                        \
	} while (0)

typedef struct table {
	routes_t *routes;
	int refs;
} table_t;

/* An event's journal record: its sequence number and how many of its deliveries (and
 * flows still enriching) have not reached an end. At zero the event is marked done. Shared
 * by the event and the copies that enrich steps make of it. */
typedef struct jev {
	uint64_t seq;
	int open;
	int refs;
	bool refused; /* the commit of the turn that added it failed: the sender heard "not
		       * accepted", so none of its deliveries goes out (commit_end_turn) */
} jev_t;

typedef struct shared {
	kanal_msg_t *msg;
	size_t bytes; /* kanal_msg_size(msg), worked out once */
	jev_t *jev;   /* NULL when the journal is off */
	int refs;
	int64_t born_ms; /* accepted at (monotonic), for the delivery latency */
} shared_t;

typedef struct dest dest_t;
typedef struct delivery delivery_t;

/* One (event, route) flow. */
typedef struct flow {
	table_t *table;
	const route_t *route;
	shared_t *ev;
	size_t enrich_step;       /* next enrich step to run */
	delivery_t *enrich_dl;    /* the enrich request in flight, if any */
	int64_t enrich_deadline;  /* the reply's deadline, or when a retry of the step is due */
	bool enrich_waiting;      /* waiting to ask again after a transient failure */
	int enrich_failures;      /* transient failures of the current step so far */
	struct flow *enrich_next; /* in the router's list of flows waiting for enrich */
	int primaries_open;
	int primaries_rejected;
	int primaries_total;
	delivery_t *held;          /* rejected primaries kept until the flow is decided */
	const journal_row_t *rows; /* during recovery: what the journal says already happened */
	size_t n_rows;
	/* Cluster mode: the accepted event's message (cluster_router.c), acknowledged once
	 * this flow's enriched deliveries or its dead letter are stored; NULL otherwise. */
	struct msg_group *cluster_in;
	int refs;
} flow_t;

typedef enum dl_kind {
	DL_PRIMARY,
	DL_FALLBACK,
	DL_DEFAULT,
	DL_ENRICH,  /* a request for a flow's enrich step */
	DL_REQUEST, /* a plugin's kanal_request, answered to `requester` */
} dl_kind_t;

struct delivery {
	uint64_t id;
	dl_kind_t kind;
	shared_t *ev;
	flow_t *flow; /* NULL for DL_DEFAULT and DL_REQUEST */
	dest_t *dest;
	int attempt;
	int64_t due_ms; /* retry time */
	size_t bytes;
	char **errors; /* MAX_ERRORS slots, allocated with the first error */
	size_t n_errors;
	char *requester; /* DL_REQUEST: the asking instance (with req_seq) */
	uint64_t req_seq;
	char *replay_route; /* a replayed dead letter's route (the route may be gone) */
	bool counted;       /* holds one of its event's jev->open */
	bool spilled;       /* freed at shutdown without an end: the event stays open */
	bool by_kanald;     /* rejected by kanald (its transform), not by its destination */
	int64_t sent_ns;    /* tracing on: when this attempt went out (its span's start) */
	void *cluster_msg;  /* cluster mode: its JetStream message (natsMsg), to ack or nak */
	size_t cluster_consumer;
	int64_t cluster_touched_ms; /* fetched, or last told JetStream it is in progress */
	delivery_t *next;
};

struct dest {
	char *name;
	instance_t *inst; /* NULL for the built-in deadletter */
	delivery_t *head, *tail;
	size_t queued;
	size_t queued_bytes;
	delivery_t *inflight, *inflight_tail; /* in the order they were sent */
	int n_inflight;
	size_t parked;       /* parked events (on disk) that are bound for this destination */
	int64_t progress_ms; /* when it last answered, or was sent work while it had none */
	uint64_t delivered, rejected, retried, dead;
	bool paused; /* an operator paused it: deliveries wait in its queue */
};

/* Counters per route name: they outlive reloads (a reloaded route with the same name
 * counts on). Each route_t of the current table points at its name's counters. */
/* The delivery latency histogram's buckets (their bounds are in stats.c). */
#define N_LATENCY 15

/* A route's delivery latency to one destination: a histogram per (route, destination) the
 * route has delivered to, so at most routes × their destinations over the configs seen. */
typedef struct route_latency {
	char *dest;
	uint64_t buckets[N_LATENCY], count; /* buckets[i]: at most le[i], not cumulative */
	double sum_ms;
	struct route_latency *next;
} route_latency_t;

typedef struct route_stat {
	char *name;
	uint64_t matched, delivered, retried, rejected, dead, fallback;
	uint64_t transform_failed; /* deliveries its transforms refused (also in rejected) */
	route_latency_t *latency;  /* per destination, in the order first delivered to */
	struct route_stat *next;   /* in its hash chain */
	/* The destinations of the route `to_for` (its `to`, in order; NULL where none is
	 * called so), looked up when its table was bound (stats_bind): the router's checks
	 * and fan-out of every event skip comparing names. A route of another table with
	 * this name (an older one still draining) looks its destinations up by name. */
	const struct route *to_for;
	dest_t **to_dest;
	size_t to_cap;
} route_stat_t;
/* A measure's per-minute counts cover the last hour (the dashboard's chart). */
#define MEASURE_MINUTES 60
/* Label-value combinations a measure keeps apart; more are counted as "other". */
#define MEASURE_MAX_SERIES 100

/* One label-value combination of a measure: its total and its last hour by minute. */
typedef struct measure_series {
	char *values[ROUTES_MEASURE_MAX_LABELS];
	char *labels; /* the values as the journal keys them: {"channel":"digital"} */
	uint64_t
		total; /* with the journal: since the measure was first counted, else since start */
	struct {
		int64_t minute; /* unix minute, 0: unused */
		uint32_t count;
	} ring[MEASURE_MINUTES];
	struct measure_series *next;
} measure_series_t;

/* A measure's counters, by its name and label names: they outlive reloads that keep them. */
typedef struct measure_stat {
	char *key; /* name, then each label name, separated by '\n' */
	measure_series_t *series;
	size_t n_series;
	struct measure_stat *next;
} measure_stat_t;

typedef struct cluster_reply cluster_reply_t;

/* A gateway reply held until the turn's commit (in cluster mode: until its events'
 * PubAcks, `wait`): the envelope frames and the results. */
typedef struct pending_reply {
	zmq_msg_t parts[8];
	int n;
	json_t *reply;
	cluster_reply_t *wait;
} pending_reply_t;

typedef struct held_emit {
	kanal_msg_t *msg;
	size_t origin; /* instance index */
	struct held_emit *next;
	bool has_key;     /* key is msg's duplicate-window key (memory mode), worked out once */
	dedupe_key_t key; /* at its emit */
} held_emit_t;

/* An event accepted in the current turn, kept until the turn's commit says whether it was
 * accepted after all: when the commit fails, a routed event's deliveries are dropped, and
 * an instance's emit goes back to be held until the journal takes writes again. */
typedef struct turn_event {
	shared_t *ev;     /* routed: a reference to the event; NULL when parked */
	kanal_msg_t *msg; /* a parked emit: the message itself; else NULL */
	int origin;       /* the emitting instance, or -1 (the gateway) */
} turn_event_t;

struct router {
	const conf_t *conf;
	instance_t **instances;
	size_t n_instances;
	void *zctx;
	pthread_t thread;
	bool thread_started;

	void *deliver_sock, *emit_sock, *gateway_sock, *admin_sock;
	void *ctl_main, *ctl_router; /* PAIR: main thread ↔ router thread */
	stream_t *stream;
	zap_t *zap;                 /* CURVE on: the ZAP handler (zap.c), else NULL */
	const char *gateway_client; /* CURVE on: the client whose request is being read */
	uint64_t acl_denied;        /* gateway events refused by a client's emit list */
	deadletter_t *deadletter;
	struct deadnotice *dead_notices; /* this turn's kanal.delivery.dead (deadnotice.c) */
	char endpoints_path[1024];
	char gateway_endpoint[256], admin_endpoint[256];

	table_t *table;
	dest_t *dests; /* one per instance, then the built-in deadletter */
	size_t n_dests;
	uint32_t *acks; /* pending acks per instance */

	uint64_t next_id;
	delivery_t *free_dl; /* spent deliveries kept for reuse */
	size_t n_free_dl;
	held_emit_t *free_held; /* spent held emits kept for reuse (malloc'd, as any) */
	size_t n_free_held;
	/* The clock read at the start of each batch the router takes (a poll's return, a
	 * frame of emits or outcomes): events accepted and outcomes read in one batch share
	 * it, instead of a clock read each (~40 ns on a VM, ~3 % of kanald under a flood). */
	int64_t now_ms;
	delivery_t *retries; /* sorted by due_ms */
	flow_t *enriching;   /* flows waiting for an enrich reply */
	/* Emits held back per source while their destinations are full: one source's full
	 * destination never holds up another's events. */
	struct held_queue {
		held_emit_t *head, *tail;
	} * held;
	size_t n_held;

	journal_t *journal;             /* NULL: memory mode */
	struct cluster_router *cluster; /* journal.mode cluster (cluster_router.c), else NULL */
	struct cluster_routes
		*cluster_routes; /* cluster mode: the routes bucket (cluster_routes.c) */
	bool journal_failed;     /* a commit failed: refuse new events until a commit works */
	turn_event_t *turn;      /* the events this turn added to the journal (turn_event_t) */
	size_t n_turn, turn_cap;
	size_t n_parked; /* accepted events waiting on disk for room */
	int64_t next_prune_ms;
	struct pending_reply *pending; /* gateway replies waiting for the turn's commit */
	size_t n_pending, cap_pending;
	bool stopping;
	bool spilling;       /* park.c spills: nothing new may start */
	delivery_t *zombies; /* in flight at the deadline: freed once their thread is gone */
	int closed_count;    /* instances that answered BUS_CLOSED during shutdown */
	int undelivered_at_stop;

	uint64_t accepted, unmatched, invalid, busy, reloads, reload_failures, replies_dropped;
	uint64_t dlq_purged;   /* dead letters purged by retention or `dlq purge` */
	struct dedupe *dedupe; /* memory mode's duplicate window (dedupe.c); NULL when durable */
	/* The window's key of the emit being routed, worked out once for its prefetch and its
	 * check (s_on_emit_sock); taken by the check of that very message, NULL otherwise. */
	const kanal_msg_t *emit_key_msg;
	dedupe_key_t emit_key;
	bool force_stop; /* set (atomically) by router_force_stop: the shutdown deadline is now */
	struct ratelimit *ratelimit; /* limits.rate's buckets (ratelimit.c); NULL: no limit */
	uint64_t rate_limited;       /* gateway events answered busy for limits.rate */
	uint64_t duplicates;
	/* The last load of the routing files (the one at start counts): worked or not, and
	 * when (wall clock, ms) — kanal_config_last_reload_* in /metrics. */
	bool last_reload_failed;
	int64_t last_reload_ms;
	/* Per-route counters (a hash by name), the delivery latency histogram, and the
	 * measures the routing files declare (stats.c). */
	route_stat_t **stat_slots;
	size_t stat_cap, n_stats;
	uint64_t latency[N_LATENCY], latency_count;
	double latency_sum_ms;
	measure_stat_t *measure_stats;
	bool has_measures;          /* the current table declares measures */
	int64_t measure_day_minute; /* the unix minute measure_day was computed for */
	char measure_day[16];       /* kanald's local day, the journal's key: "2026-03-01" */
	trace_t *trace;             /* trace.export's spans (trace.c); NULL: tracing off */
};

/* A frame on the delivery socket: a batch of outcomes (R, from an instance thread) or one
 * (O, from an isolation proxy), see bus.h. */
typedef union outcome_frame {
	uint8_t cmd;
	bus_results_t res;
	bus_outcome_t one;
} outcome_frame_t;

/* ---- hot helpers (inline: each runs once or more per event) ------------------------- */

static inline void router_table_release(table_t **t_p)
{
	table_t *t = *t_p;

	if (t && --t->refs == 0) {
		routes_destroy(&t->routes);
		free(t);
	}
	*t_p = NULL;
}

/* The router's per-event records (shared_t, flow_t) come from the SDK's per-thread block
 * pool (sdk/mpool.h): made and freed on the router's thread by the million, they are a
 * pop and a push there instead of malloc and free. Spent ones wait on a list of the
 * router's thread for the next event (the pool's general path, its class and owner, cost
 * ~40 instructions each way): at most ROUTER_SPARE_MAX of each kind, and only while the
 * router's thread runs with the pool on (off, as under a sanitizer, every block goes back
 * to malloc so that a use after free is still caught). */
#define ROUTER_SPARE_MAX 1024

enum { ROUTER_SPARE_SHARED, ROUTER_SPARE_FLOW, ROUTER_SPARE_KINDS };

typedef struct router_spare {
	void *head; /* the first word of a spare block links to the next */
	unsigned n;
	bool on; /* this is the router's thread, and the pool is on */
} router_spare_t;

extern __thread router_spare_t router_spare[ROUTER_SPARE_KINDS]
	__attribute__((tls_model("initial-exec")));

/* Starts (on) or ends (off: the spares go back to the pool) the calling thread's lists. */
void router_spare_use(bool on);

static inline void *router_spare_take(int kind, size_t size)
{
	router_spare_t *sp = &router_spare[kind];
	void *p = sp->head;

	if (!p)
		return kanal__mpool_alloc(size, NULL);
	sp->head = *(void **)p;
	sp->n--;
	return p;
}

static inline void router_spare_give(int kind, void *p)
{
	router_spare_t *sp = &router_spare[kind];

	if (!sp->on || sp->n >= ROUTER_SPARE_MAX) {
		kanal__mpool_free(p);
		return;
	}
	*(void **)p = sp->head;
	sp->head = p;
	sp->n++;
}

static inline shared_t *router_shared_new_at(kanal_msg_t **msg_p, size_t bytes, int64_t born_ms)
{
	shared_t *s = router_spare_take(ROUTER_SPARE_SHARED, sizeof *s);

	if (!s) {
		kanal_msg_destroy(msg_p);
		return NULL;
	}
	s->msg = *msg_p;
	s->bytes = bytes;
	*msg_p = NULL;
	s->jev = NULL;
	s->refs = 1;
	s->born_ms = born_ms;
	return s;
}

static inline shared_t *router_shared_new(kanal_msg_t **msg_p)
{
	return router_shared_new_at(msg_p, kanal_msg_size(*msg_p), kanal_now_ms());
}

static inline void router_jev_release(jev_t **j_p)
{
	jev_t *j = *j_p;

	if (j && --j->refs == 0)
		free(j);
	*j_p = NULL;
}

static inline void router_shared_release(shared_t **s_p)
{
	shared_t *s = *s_p;

	if (s && --s->refs == 0) {
		kanal_msg_destroy(&s->msg);
		router_jev_release(&s->jev);
		router_spare_give(ROUTER_SPARE_SHARED, s);
	}
	*s_p = NULL;
}

/* One more unit of the event is open (a delivery, or a flow still enriching). */
static inline void router_jev_open(shared_t *ev)
{
	if (ev->jev)
		ev->jev->open++;
}

/* A unit of the event reached its end; when none is left the event is done. */
static inline void router_jev_close(router_t *r, jev_t *j)
{
	if (!j || --j->open > 0)
		return;
	/* While the journal cannot be written the mark waits in the journal for the next
	 * commit that works; a refused event has no row to mark. */
	if (r->journal && !j->refused)
		journal_event_done(r->journal, j->seq);
}

static inline const char *router_route_key(const char *route)
{
	return route ? route : "";
}

static inline dest_t *router_dest(router_t *r, const char *name)
{
	for (size_t i = 0; i < r->n_dests; i++)
		if (!strcmp(r->dests[i].name, name))
			return &r->dests[i];
	return NULL;
}

/* The destination of route rt's to[k] (router_dest of the name, from the route's bound
 * lookups when they are this route's). */
static inline dest_t *router_route_to(router_t *r, const route_t *rt, size_t k)
{
	const route_stat_t *st = rt->stat;

	if (st && st->to_for == rt)
		return st->to_dest[k];
	return router_dest(r, rt->to[k]);
}

static inline bool router_dest_full(const router_t *r, const dest_t *d, size_t extra_bytes)
{
	if (!d->inst)
		return false; /* the dead-letter file takes everything */
	return d->queued >= (size_t)r->conf->queue_max_events ||
	       d->queued_bytes + extra_bytes > (size_t)r->conf->queue_max_bytes;
}

static inline const char *router_route_name(const delivery_t *dl)
{
	return dl->flow ? dl->flow->route->name : dl->replay_route;
}

static inline void router_flow_release(router_t *r, flow_t **flow_p)
{
	flow_t *f = *flow_p;

	*flow_p = NULL;
	if (!f || --f->refs > 0)
		return;
	router_shared_release(&f->ev);
	router_table_release(&f->table);
	router_spare_give(ROUTER_SPARE_FLOW, f);
	(void)r;
}

static inline delivery_t *router_delivery_new(router_t *r, dl_kind_t kind, shared_t *ev,
					      flow_t *flow, dest_t *d)
{
	delivery_t *dl = r->free_dl;

	/* Deliveries come and go by the million: spent ones are kept for reuse. */
	if (dl) {
		r->free_dl = dl->next;
		r->n_free_dl--;
		memset(dl, 0, sizeof *dl);
	} else if (!(dl = calloc(1, sizeof *dl))) {
		return NULL;
	}
	dl->id = ++r->next_id;
	dl->kind = kind;
	dl->ev = ev;
	ev->refs++;
	dl->flow = flow;
	if (flow)
		flow->refs++;
	dl->dest = d;
	dl->attempt = 1;
	dl->bytes = ev->bytes;
	if (kind == DL_PRIMARY || kind == DL_FALLBACK || kind == DL_DEFAULT) {
		dl->counted = true;
		router_jev_open(ev);
	}
	return dl;
}

void cluster_router_forget(router_t *r, delivery_t *dl);

static inline void router_delivery_free(router_t *r, delivery_t **dl_p)
{
	delivery_t *dl = *dl_p;

	if (!dl)
		return;
	if (dl->cluster_msg)
		cluster_router_forget(r, dl); /* not acknowledged: it comes back after AckWait */
	if (dl->errors) { /* most deliveries have none: no call to free(NULL) per event */
		for (size_t i = 0; i < dl->n_errors; i++)
			free(dl->errors[i]);
		free(dl->errors);
	}
	if (dl->requester)
		free(dl->requester);
	if (dl->counted && !dl->spilled)
		router_jev_close(r, dl->ev->jev);
	if (dl->replay_route)
		free(dl->replay_route);
	router_shared_release(&dl->ev);
	router_flow_release(r, &dl->flow);
	if (r->n_free_dl < 4096) {
		dl->next = r->free_dl;
		r->free_dl = dl;
		r->n_free_dl++;
	} else {
		free(dl);
	}
	*dl_p = NULL;
}

/* ---- router.c: the loop, accepting events, queues and dispatch ----------------------- */

/* router_accept in cluster mode: the event is taken, and its sender hears once JetStream
 * stored it (the gateway's reply waits; an emit is acknowledged then). */
#define ROUTER_ACK_LATER 1

/* Routes *msg_p, taking it on success (returns 0, or ROUTER_ACK_LATER in cluster mode).
 * Returns KANAL_EBUSY when a destination
 * is full (*msg_p is left with the caller), KANAL_EDUPLICATE or KANAL_EIO (left with the
 * caller), or KANAL_ENOMEM. `origin`: the instance whose emit this is (which may wait in
 * memory rather than be parked, and goes back to be held should the turn's commit fail),
 * or -1 for the gateway. Ownership: takes *msg_p on success. */
int router_accept(router_t *r, kanal_msg_t **msg_p, int origin);
/* Starts one flow per matching route m[0..n) of ev; `names` (may be NULL) collects their
 * names; `rows` (recovery only) say what already happened. Ownership: borrows all. */
void router_start_flows(router_t *r, shared_t *ev, const route_t *const *m, size_t n, json_t *names,
			const journal_row_t *rows, size_t n_rows);
/* Queues one delivery of f's event to each destination in names[] (errors of `history`
 * carried over). */
void router_fan_out(router_t *r, flow_t *f, char *const *names, size_t n, dl_kind_t kind,
		    delivery_t *history);
/* Starts the flow's deliveries once its enrich steps are done. */
void router_flow_deliver(router_t *r, flow_t *f);
/* During recovery: the journal's row for (route, destination), or NULL. */
const journal_row_t *router_row(const journal_row_t *rows, size_t n, const char *route,
				const char *dest);
/* Applies a recovered journal row: true when dl was scheduled as a retry. */
bool router_resume(router_t *r, delivery_t *dl, const journal_row_t *row);
/* Appends dl to its destination's queue; it is sent at the end of the turn. */
void router_enqueue(router_t *r, delivery_t *dl);
/* Moves queued deliveries of d into flight while its window allows. */
void router_dispatch(router_t *r, dest_t *d);
/* Takes delivery `id` out of d's in-flight list; NULL when unknown. */
delivery_t *router_take_inflight(dest_t *d, uint64_t id);
/* Adds delta to the parked count of every destination the matched routes deliver to. */
void router_count_parked(router_t *r, const route_t *const *m, size_t n, int delta);
/* Removes the extension attributes only kanald may set on a request. Accepts NULL. */
void router_strip_reserved(kanal_msg_t *msg);
/* Receives [identity][frame] from a ROUTER socket without waiting; the frame's length or -1. */
int router_recv_routed(void *sock, char *id, size_t id_size, void *buf, size_t size);
/* Polls the broker's sockets once (up to wait_ms, -1: until something happens). */
void router_poll_once(router_t *r, int64_t wait_ms, bool with_gateway);
/* The journal cannot be written: refuse new events until a probe commit works. */
void router_journal_broken(router_t *r);

/* ---- delivery.c: outcomes, retries, enrich steps, fallback, dead letters -------------- */

/* The delay before retry number `attempt` (1-based) under rt: rt->backoff_ms doubled per
 * attempt, capped at rt->max_backoff_ms, with full jitter on the upper half (so within
 * [capped / 2, capped]); never less than the plugin's `hint` (ms, 0: none). Draws from
 * rand(). */
int64_t delivery_backoff(const route_retry_t *rt, int attempt, int64_t hint);

/* What a delivery's outcome leads to (delivery_on_outcome acts on it). */
typedef enum delivery_next {
	DELIVERY_DONE,  /* OK: delivered */
	DELIVERY_RETRY, /* try again after delivery_backoff */
	DELIVERY_DEAD,  /* to the dead letters (budget spent, stopping, or rejected) */
	DELIVERY_HOLD,  /* rejected, held while the flow's other primaries decide (fallback) */
} delivery_next_t;

/* Decides what an outcome of attempt `attempt` under rt leads to: `has_fallback` when the
 * delivery is a primary of a route with fallback destinations; rt is read for
 * KANAL_OUTCOME_RETRY only. Pure: no side effects. */
delivery_next_t delivery_decide(int outcome, int attempt, const route_retry_t *rt, bool stopping,
				bool has_fallback);
/* Records an attempt's error on dl (the last MAX_ERRORS are kept). */
void delivery_error(delivery_t *dl, const char *text);
/* Gives *dl_p up for good: the dead letters, the event stream, the counters. Takes *dl_p. */
void delivery_dead(router_t *r, delivery_t **dl_p, const char *reason);
/* Sends *dl_p to the dead letters; a primary is also settled in its flow (counted as
 * rejected when `rejected`), which may decide the flow. Takes *dl_p. */
void delivery_dead_primary(router_t *r, delivery_t **dl_p, const char *reason, bool rejected);
/* Acts on the outcome o of a delivery to d (`error`: its text, "" when none). Takes o->reply. */
void delivery_on_outcome(router_t *r, dest_t *d, const bus_outcome_t *o, const char *error);
/* A delivery refused before it was sent (its transform failed): a REJECT with `error`, which
 * dl's errors already hold; fallback or dead letters as for a destination's REJECT.
 * Ownership: takes dl. */
void delivery_reject(router_t *r, delivery_t *dl, const char *error);
/* A primary of flow f reached its end; the last one decides fallback or dead letters. */
void delivery_flow_primary_done(router_t *r, flow_t *f);
/* Runs f's next enrich step, or delivers when none is left. */
void delivery_enrich_next(router_t *r, flow_t *f);
/* An enrich step of f failed: ask again later (transient) or act on its on_error. */
void delivery_enrich_failed(router_t *r, flow_t *f, const char *why, bool transient);
/* Puts dl in the retry list, ordered by due_ms. */
void delivery_schedule_retry(router_t *r, delivery_t *dl);
/* Queues the retries that are due and acts on enrich timeouts. */
void delivery_run_timers(router_t *r);
/* When the next timer is due (monotonic ms), or -1. */
int64_t delivery_next_timer(const router_t *r);

/* ---- gateway.c ----------------------------------------------------------------------- */

/* Reads the gateway's requests (up to 256 a turn) and holds their replies for the commit. */
void gateway_on_readable(router_t *r);
/* Sends the held replies; `failure` (the commit failed) turns "accepted" into an error. */
void gateway_flush_replies(router_t *r, const char *failure);
/* Every ACL refusal: gateway events, stream subscriptions, instance emits. */
uint64_t gateway_acl_denied(const router_t *r);

/* ---- admin.c ------------------------------------------------------------------------- */

/* Answers the admin socket's requests. */
void admin_on_readable(router_t *r);
/* Applies the dead letters' retention (journal.dead_letters: max_age, max_events): purges
 * what is beyond it, counts it (dead_letters_purged) and audits it. Called once a minute
 * from the end of a turn. */
void admin_dlq_retention(router_t *r, int64_t now_ms);
/* The reply of dlq.replay ({replayed: done, missing}) or dlq.drop ({dropped: count}).
 * Ownership: takes done and missing; the reply is new. */
json_t *admin_dlq_reply(bool replay, json_t *done, json_t *missing);
/* Loads the routing files again and swaps the table if valid (in cluster mode: pushes them
 * to every node, cluster_routes_reload); the admin reply (new). */
json_t *admin_reload(router_t *r);
/* d's errors as a JSON array of lines "file:line:col: error: …". Ownership: borrows d; the
 * array is new. */
json_t *admin_diag_lines(const diag_t *d);
/* A routing table that was refused: counts and logs it (with `why` before the errors, when
 * not NULL), tells the event stream, and returns the admin reply {ok: false, errors, error:
 * why}. Ownership: takes errors (an array of strings); the reply is new. */
json_t *admin_routes_refused(router_t *r, json_t *errors, const char *why);
/* Makes *routes_p the routing table (the old one lives on for the flows that matched it),
 * counts the reload and logs it, `origin` (may be NULL) after "routes reloaded: N routes
 * from M files". Returns 0 or KANAL_ENOMEM. Ownership: takes *routes_p. */
int admin_routes_swap(router_t *r, routes_t **routes_p, const char *origin);
/* "running", "paused" or "restarting". */
const char *admin_instance_state(router_t *r, instance_t *inst);

/* ---- park.c: parked events and the shutdown drain ----------------------------------- */

/* Takes parked events back into memory while their destinations have room. */
void park_page_in(router_t *r);
/* The graceful stop: sources, in-flight work until the deadline, spill, plugins. */
void park_shutdown(router_t *r);

/* ---- recover.c ------------------------------------------------------------------------ */

/* Resumes the journal's open events at start. */
void recover_open(router_t *r);
/* Resumes one open event (a journal_load_open callback; also a replayed dead letter).
 * Ownership: takes msg. */
void recover_event(void *arg, uint64_t seq, kanal_msg_t *msg, bool parked,
		   const journal_row_t *rows, size_t n_rows);

/* ---- stats.c: counters for operations ----------------------------------------------- */

/* Points every route and measure of a table at its counters; a measure's counters new to
 * this process start from what the journal holds (when it is open). */
void stats_bind(router_t *r, routes_t *routes);
/* After the journal is opened: the bound measures' totals from the journal. */
void stats_load_measures(router_t *r);
/* The admin command `measures.report`: each measure's counts per label values summed over
 * req's days "from" .. "to" (YYYY-MM-DD, both included), with its target. Ownership: the
 * reply is new. */
json_t *stats_measures_report(router_t *r, json_t *req);
void stats_free(router_t *r);
/* Counts a delivery's latency (accepted → OK) into the histogram, and into its route's
 * histogram for its destination when the delivery has a route (rs, dest not NULL). */
void stats_observe_latency(router_t *r, const shared_t *ev, route_stat_t *rs, const char *dest,
			   int64_t now_ms);
/* Adds the counters operations read (route counters, latency, measures) to status st. */
void stats_status(router_t *r, json_t *st);
/* Counts an accepted event into the current table's measures it matches. */
void stats_count_measures(router_t *r, const kanal_msg_t *msg);
/* On every accepted event: nothing to do (not even a call) when no measure is declared. */
static inline void stats_measure(router_t *r, const kanal_msg_t *msg)
{
	if (r->has_measures)
		stats_count_measures(r, msg);
}

/* ---- gateway.c -------------------------------------------------------------------------- */

/* A gateway request holds at most this many times max_event_size (a batch); larger ones are
 * answered "invalid" with the limit. Frames up to GATEWAY_MAX_FRAME (or the batch limit and
 * a MiB, if larger) are read to be answered; a larger frame is dropped by ZeroMQ with the
 * connection. */
#define GATEWAY_BATCH_EVENTS 64
#define GATEWAY_MAX_FRAME (16 * 1024 * 1024)

/* ---- commit.c: the end of a turn -------------------------------------------------------- */

/* Ends a turn: commits the journal, then sends deliveries, acks and gateway replies; when
 * the commit failed, the turn's events are refused (none of them is delivered). */
void commit_end_turn(router_t *r);
/* Without a journal, lets the work of a turn take effect now: deliveries to `only` (or to
 * every destination, and the emits' acks, when NULL). Does nothing with the journal. */
void commit_mid_turn(router_t *r, dest_t *only);
/* Keeps an event this turn added to the journal until the turn's commit says whether it was
 * accepted: `ev` (a reference is taken) when routed, else *msg_p (taken) for a parked emit.
 * Returns false when out of memory. */
bool commit_keep(router_t *r, shared_t *ev, kanal_msg_t **msg_p, int origin);
/* Puts an instance's emit back at the head of its held queue, to be tried again before what
 * it emitted since (a failed commit; in cluster mode, a publish JetStream did not store).
 * Returns false when out of memory (*msg_p is then left with the caller).
 * Ownership: takes *msg_p on success. */
bool commit_hold_again(router_t *r, size_t origin, kanal_msg_t **msg_p);
/* Forgets the events kept for a commit, as accepted (kanald stops). */
void commit_forget(router_t *r);
/* Removes the blobs older than ROUTER_BLOB_GRACE_MS that no open event or dead letter
 * names (a plugin put them, their event never came or was refused; without a journal, every
 * old blob): at start and with the journal's prune, once a minute (docs/design/blobs.md). */
void commit_sweep_blobs(router_t *r);

/* ---- cluster_router.c: cluster mode (journal.mode: cluster, docs/design/cluster.md) ---- */

/* Joins the NATS cluster (cluster.c): streams checked or created, consumers bound. Returns
 * 0, or KANAL_ECONFIG with the reason in err. */
int cluster_router_new(router_t *r, char *err, size_t err_size);
/* Flow f (f->cluster_in set) finished its enrich steps: its enriched event is published to
 * <prefix>_DLV once per destination of its route, and f lets go of its accepted message
 * (acknowledged once every publish of it is stored). Ownership: borrows f. */
void cluster_router_flow_deliver(router_t *r, flow_t *f);
/* Flow f's enrichment failed for good: *dl_p (a delivery of f's event to the built-in
 * deadletter, its errors set) becomes a letter in <prefix>_DEAD, with the
 * kanal.delivery.dead notice a route takes published to <prefix>_IN, and f lets go of its
 * accepted message. Ownership: takes *dl_p, borrows f. */
void cluster_router_flow_dead(router_t *r, flow_t *f, delivery_t **dl_p, const char *reason);
/* Flow f gives its enrichment up without an end (kanald stops): its accepted message is
 * given back to JetStream, for a node to enrich it again. Ownership: borrows f. */
void cluster_router_flow_abandon(router_t *r, flow_t *f);
/* Flow f's enrich step failed transiently within the route's budget: its accepted message
 * is given back to JetStream with delay_ms (NakWithDelay, once the message's other work is
 * published), for a node to run f's steps again then. Ownership: borrows f. */
void cluster_router_flow_retry(router_t *r, flow_t *f, int64_t delay_ms);
/* Starts fetching (the router's loop runs from now on). */
int cluster_router_start(router_t *r);
void cluster_router_destroy(router_t *r);
/* The node's link to NATS (cluster.c), or NULL when not in cluster mode. */
struct cluster;
struct cluster *cluster_router_link(router_t *r);
/* The descriptor the loop polls for the cluster's inbox, or -1 when not in cluster mode. */
int cluster_router_fd(const router_t *r);
/* Handles what the inbox holds: PubAcks, events to route, deliveries for local instances. */
void cluster_router_on_inbox(router_t *r);
/* router_accept in cluster mode: routes *msg_p to the delivery stream at once when no route
 * it matches has enrich steps, else publishes it to the accept stream. Returns
 * ROUTER_ACK_LATER (taken), KANAL_EBUSY (the publish window is full), KANAL_EIO (not
 * connected or refused: cluster_router_error says why) or KANAL_ENOMEM, leaving *msg_p with
 * the caller on failure. Ownership: takes *msg_p on success. */
int cluster_router_accept(router_t *r, kanal_msg_t **msg_p, int origin);
/* The dlq admin commands (list, show, replay, drop) against the <prefix>_DEAD stream: the
 * reply, in the journal's shapes (a letter's id is its stream sequence). Waits for NATS (an
 * operator's command). Ownership: the reply is new; borrows req. */
json_t *cluster_router_dlq(router_t *r, const char *cmd, json_t *req, int64_t since_ms,
			   bool *clear);
/* `status` with "cluster": true: {this_node, nodes (each node's entry in the nodes bucket),
 * consumers (the route consumer's and each local destination's lag)}. Waits for NATS.
 * Ownership: new. */
json_t *cluster_router_cluster_status(router_t *r);
/* The journal part of the status in cluster mode: mode, connected, streams, servers.
 * Ownership: new. */
json_t *cluster_router_status(router_t *r);
/* Why the last event was not accepted, in words. Ownership: borrowed. */
const char *cluster_router_error(router_t *r);
/* After a gateway request's events were handed to router_accept: what its reply waits for,
 * or NULL when nothing (it is sent with the turn). */
cluster_reply_t *cluster_router_request_end(router_t *r);
/* True when every PubAck the reply waits for has come (also for NULL). */
bool cluster_router_reply_ready(const cluster_reply_t *w);
/* Writes the PubAcks' verdicts ("duplicate", "error") into reply's results and lets go of
 * *w_p. Ownership: takes *w_p, borrows reply. */
void cluster_router_reply_finish(cluster_reply_t **w_p, json_t *reply);
/* A delivery's outcome in cluster mode (dl->cluster_msg set): ack, nak with the route's
 * backoff, fallback or dead letter. Ownership: takes dl. */
void cluster_router_outcome(router_t *r, dest_t *d, delivery_t *dl, int outcome, int64_t hint,
			    const char *error);
/* Once a second: deliveries held longer than half of ack_wait (queued behind a slow
 * destination, or in flight), and accepted events still enriching, are reported in
 * progress, so that JetStream does not give them to another node meanwhile. */
void cluster_router_tick(router_t *r);
/* A delivery freed without an outcome (shutdown): its message is let go unacknowledged. */
void cluster_router_forget(router_t *r, delivery_t *dl);

/* ---- cluster_routes.c: routing tables through the <prefix>_ROUTES bucket (cluster mode) -- */

struct cluster_item;

/* Opens (or creates) the routes bucket; when it holds a current table, compiles it and makes
 * it the router's table in place of the local files' (said in the log). Called by
 * cluster_router_new once connected. Returns 0, or KANAL_ECONFIG / KANAL_EIO with the
 * reason in err (the cluster's table does not compile on this node, NATS did not answer). */
int cluster_routes_new(router_t *r, char *err, size_t err_size);
/* Starts the thread that watches the bucket: it answers other nodes' candidates with this
 * node's verdict and hands new current tables to the router through the inbox. */
int cluster_routes_start(router_t *r);
/* Stops the watcher and closes the bucket; before cluster_destroy. Accepts a router without
 * one. */
void cluster_routes_destroy(router_t *r);
/* The admin command routes.push: {files: [{name, text}, …]} compiled here, then on every
 * live node; made current everywhere only when all accept. Waits for NATS and the other
 * nodes (bounded). Ownership: borrows req; the reply is new. */
json_t *cluster_routes_push(router_t *r, json_t *req);
/* `reload` in cluster mode: pushes this node's routing files as routes.push does. Ownership:
 * the reply is new. */
json_t *cluster_routes_reload(router_t *r);
/* A CLUSTER_ROUTES item of the inbox: a current table the watcher compiled. Ownership:
 * borrows it (its payload may be taken). */
void cluster_routes_on_item(router_t *r, struct cluster_item *it);
/* The generation of the cluster's table in force here (0: the local files). */
uint64_t cluster_routes_generation(const router_t *r);

#endif
