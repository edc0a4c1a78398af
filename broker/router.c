/*
 * broker/router.c — the router thread.
 *
 * An accepted event is matched against the current routing table. Each matching route is a
 * *flow* (event, route): its enrich steps run first, as requests to service instances, then
 * one delivery per `to` destination is queued. A destination has a bounded queue (count and
 * bytes) and at most BUS_DELIVER_WINDOW deliveries in flight to its instance thread. When
 * an outcome comes back the router acts on it: OK is done; RETRY is tried again after an
 * exponential backoff with jitter (or the plugin's hint) until the route's budget is spent;
 * REJECT is permanent — when every primary destination of a flow has rejected, the route's
 * fallback destinations get the event, else it goes to the dead letters. An event that
 * matches no route goes to the default destination.
 *
 * Admission control is where backpressure happens: an event whose destinations are full is
 * not accepted. The gateway answers "busy" with a retry hint; an instance's emit is held
 * (its emit window stays closed, so kanal_emit blocks and then reports KANAL_EBUSY) until
 * room frees up.
 *
 * Events are shared between the deliveries of one flow by reference: the instance threads
 * read them concurrently and nobody changes them after routing. A flow with enrich steps
 * works on its own copy, since enriching writes into the data.
 *
 * Lifetimes: a routing table is reference-counted by the flows that matched it, so a reload
 * never pulls a route from under a delivery in flight.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bus.h"
#include "deadletter.h"
#include "isolation.h"
#include "journal.h"
#include "log.h"
#include "privacy.h"
#include "router.h"
#include "stream.h"
#include "acl.h"
#include "mpool.h"
#include "msg_int.h"
#include "zap.h"

#define MAX_ERRORS 10 /* attempt errors kept per delivery */

/* Publishes on the event stream, building the payload only when somebody subscribes: on
 * the hot paths the JSON would otherwise cost more than the routing. */
#define S_PUBLISH(r, kind, tail, ev, extra)                                      \
	do {                                                                     \
		if (stream_wanted((r)->stream))                                  \
			stream_publish((r)->stream, kind, tail, ev, extra);      \
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
} jev_t;

typedef struct shared {
	kanal_msg_t *msg;
	size_t bytes; /* kanal_msg_size(msg), worked out once */
	jev_t *jev; /* NULL when the journal is off */
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
	size_t enrich_step;        /* next enrich step to run */
	delivery_t *enrich_dl;     /* the enrich request in flight, if any */
	int64_t enrich_deadline;   /* the reply's deadline, or when a retry of the step is due */
	bool enrich_waiting;       /* waiting to ask again after a transient failure */
	int enrich_failures;       /* transient failures of the current step so far */
	struct flow *enrich_next;  /* in the router's list of flows waiting for enrich */
	int primaries_open;
	int primaries_rejected;
	int primaries_total;
	delivery_t *held;          /* rejected primaries kept until the flow is decided */
	const journal_row_t *rows; /* during recovery: what the journal says already happened */
	size_t n_rows;
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
	flow_t *flow;         /* NULL for DL_DEFAULT and DL_REQUEST */
	dest_t *dest;
	int attempt;
	int64_t due_ms;       /* retry time */
	size_t bytes;
	char **errors;        /* MAX_ERRORS slots, allocated with the first error */
	size_t n_errors;
	char *requester;      /* DL_REQUEST: the asking instance (with req_seq) */
	uint64_t req_seq;
	char *replay_route;   /* a replayed dead letter's route (the route may be gone) */
	bool counted;         /* holds one of its event's jev->open */
	bool spilled;         /* freed at shutdown without an end: the event stays open */
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
	size_t parked;        /* parked events (on disk) that are bound for this destination */
	int64_t progress_ms;  /* when it last answered, or was sent work while it had none */
	uint64_t delivered, rejected, retried, dead;
	bool paused;          /* an operator paused it: deliveries wait in its queue */
};

/* Counters per route name: they outlive reloads (a reloaded route with the same name
 * counts on). Each route_t of the current table points at its name's counters. */
typedef struct route_stat {
	char *name;
	uint64_t matched, delivered, retried, rejected, dead, fallback;
	struct route_stat *next; /* in its hash chain */
} route_stat_t;

/* The delivery latency histogram's bounds in ms (Prometheus "le" in seconds). */
static const double s_latency_le_ms[] = { 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500,
					  1000, 2500, 5000, 10000, 30000 };
#define N_LATENCY (sizeof s_latency_le_ms / sizeof *s_latency_le_ms)
#define CHANNEL_MINUTES 60

/* A gateway reply held until the turn's commit: the envelope frames and the results. */
typedef struct pending_reply {
	zmq_msg_t parts[8];
	int n;
	json_t *reply;
} pending_reply_t;

typedef struct held_emit {
	kanal_msg_t *msg;
	size_t origin; /* instance index */
	struct held_emit *next;
} held_emit_t;

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
	zap_t *zap;                  /* CURVE on: the ZAP handler (zap.c), else NULL */
	const char *gateway_client;  /* CURVE on: the client whose request is being read */
	uint64_t acl_denied;         /* gateway events refused by a client's emit list */
	deadletter_t *deadletter;
	char endpoints_path[1024];
	char gateway_endpoint[256], admin_endpoint[256];

	table_t *table;
	dest_t *dests; /* one per instance, then the built-in deadletter */
	size_t n_dests;
	uint32_t *acks; /* pending acks per instance */

	uint64_t next_id;
	delivery_t *free_dl; /* spent deliveries kept for reuse */
	size_t n_free_dl;
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
	} *held;
	size_t n_held;

	journal_t *journal;  /* NULL: memory mode */
	bool journal_failed; /* a commit failed: refuse new events until a commit works */
	size_t n_parked;     /* accepted events waiting on disk for room */
	int64_t next_prune_ms;
	struct pending_reply *pending; /* gateway replies waiting for the turn's commit */
	size_t n_pending, cap_pending;
	bool stopping;
	bool spilling;        /* s_spill runs: nothing new may start */
	delivery_t *zombies;  /* in flight at the deadline: freed once their thread is gone */
	int closed_count; /* instances that answered BUS_CLOSED during shutdown */
	int undelivered_at_stop;

	uint64_t accepted, unmatched, invalid, busy, reloads, reload_failures, replies_dropped;
	uint64_t duplicates;
	/* Per-route counters (a hash by name), the delivery latency histogram, and the
	 * channel strategy's measure: letters by channel and inquiries by how they came in,
	 * in total and per minute for the last hour. */
	route_stat_t **stat_slots;
	size_t stat_cap, n_stats;
	uint64_t latency[N_LATENCY], latency_count;
	double latency_sum_ms;
	uint64_t letters_digital, letters_physical, inquiries_digital, inquiries_other;
	struct {
		int64_t minute; /* unix minute, 0: unused */
		uint32_t digital, physical;
	} channel_ring[CHANNEL_MINUTES];
};

static void s_flow_release(router_t *r, flow_t **flow_p);
static void s_dispatch(router_t *r, dest_t *d);
static void s_schedule_retry(router_t *r, delivery_t *dl);
static void s_flow_primary_done(router_t *r, flow_t *f);
static void s_end_turn(router_t *r);
static void s_mid_turn(router_t *r, dest_t *only);
static void s_journal_broken(router_t *r);
static void s_recover_event(void *arg, uint64_t seq, kanal_msg_t *msg, bool parked,
			    const journal_row_t *rows, size_t n_rows);

/* ---- small helpers ------------------------------------------------------------------- */

static void s_table_release(table_t **t_p)
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
 * pop and a push there instead of malloc and free. */
static shared_t *s_shared_new_at(kanal_msg_t **msg_p, size_t bytes, int64_t born_ms)
{
	shared_t *s = kanal__mpool_alloc(sizeof *s, NULL);

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

static shared_t *s_shared_new(kanal_msg_t **msg_p)
{
	return s_shared_new_at(msg_p, kanal_msg_size(*msg_p), kanal_now_ms());
}

static void s_jev_release(jev_t **j_p)
{
	jev_t *j = *j_p;

	if (j && --j->refs == 0)
		free(j);
	*j_p = NULL;
}

static void s_shared_release(shared_t **s_p)
{
	shared_t *s = *s_p;

	if (s && --s->refs == 0) {
		kanal_msg_destroy(&s->msg);
		s_jev_release(&s->jev);
		kanal__mpool_free(s);
	}
	*s_p = NULL;
}

/* One more unit of the event is open (a delivery, or a flow still enriching). */
static void s_jev_open(shared_t *ev)
{
	if (ev->jev)
		ev->jev->open++;
}

/* A unit of the event reached its end; when none is left the event is done. */
static void s_jev_close(router_t *r, jev_t *j)
{
	if (!j || --j->open > 0)
		return;
	if (r->journal && !r->journal_failed)
		journal_event_done(r->journal, j->seq);
}

static const char *s_route_key(const char *route)
{
	return route ? route : "";
}

static dest_t *s_dest(router_t *r, const char *name)
{
	for (size_t i = 0; i < r->n_dests; i++)
		if (!strcmp(r->dests[i].name, name))
			return &r->dests[i];
	return NULL;
}

static bool s_dest_full(const router_t *r, const dest_t *d, size_t extra_bytes)
{
	if (!d->inst)
		return false; /* the dead-letter file takes everything */
	return d->queued >= (size_t)r->conf->queue_max_events ||
	       d->queued_bytes + extra_bytes > (size_t)r->conf->queue_max_bytes;
}

static const char *s_route_name(const delivery_t *dl)
{
	return dl->flow ? dl->flow->route->name : dl->replay_route;
}

static void s_delivery_error(delivery_t *dl, const char *text)
{
	if (!dl->errors && !(dl->errors = calloc(MAX_ERRORS, sizeof *dl->errors)))
		return;
	if (dl->n_errors == MAX_ERRORS) {
		free(dl->errors[0]);
		memmove(dl->errors, dl->errors + 1, (MAX_ERRORS - 1) * sizeof dl->errors[0]);
		dl->n_errors--;
	}
	dl->errors[dl->n_errors] = strdup(text && *text ? text : "(no error text)");
	if (dl->errors[dl->n_errors])
		dl->n_errors++;
}

static delivery_t *s_delivery_new(router_t *r, dl_kind_t kind, shared_t *ev, flow_t *flow,
				  dest_t *d)
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
		s_jev_open(ev);
	}
	return dl;
}

static void s_delivery_free(router_t *r, delivery_t **dl_p)
{
	delivery_t *dl = *dl_p;

	if (!dl)
		return;
	for (size_t i = 0; i < dl->n_errors; i++)
		free(dl->errors[i]);
	free(dl->errors);
	free(dl->requester);
	if (dl->counted && !dl->spilled)
		s_jev_close(r, dl->ev->jev);
	free(dl->replay_route);
	s_shared_release(&dl->ev);
	s_flow_release(r, &dl->flow);
	if (r->n_free_dl < 4096) {
		dl->next = r->free_dl;
		r->free_dl = dl;
		r->n_free_dl++;
	} else {
		free(dl);
	}
	*dl_p = NULL;
}

static json_t *s_dl_json(const delivery_t *dl)
{
	return json_pack("{s:s?, s:s, s:I, s:i}", "route", s_route_name(dl), "destination",
			 dl->dest->name, "delivery", (json_int_t)dl->id, "attempt", dl->attempt);
}

/* ---- dead letters -------------------------------------------------------------------- */

/* Gives a delivery up for good: writes it to the dead-letter file and says so. */
static void s_dead(router_t *r, delivery_t **dl_p, const char *reason)
{
	delivery_t *dl = *dl_p;
	json_t *extra;

	dl->dest->dead++;
	if (dl->flow && dl->flow->route->stat)
		dl->flow->route->stat->dead++;
	if (r->journal && dl->ev->jev) {
		uint64_t seq = dl->ev->jev->seq;
		if (journal_dead(r->journal, seq, dl->ev->msg, s_route_name(dl), dl->dest->name,
				 reason, dl->attempt, dl->errors, dl->n_errors) < 0 ||
		    journal_delivery(r->journal, seq, s_route_key(s_route_name(dl)),
				     dl->dest->name, JOURNAL_DEAD, dl->attempt, 0,
				     dl->n_errors ? dl->errors[dl->n_errors - 1] : reason) < 0)
			log_error("router", "cannot keep event %s as a dead letter in the journal: %s",
				  kanal_msg_id(dl->ev->msg), journal_error(r->journal));
	} else if (deadletter_write(r->deadletter, dl->ev->msg, s_route_name(dl), dl->dest->name,
				    reason, dl->attempt, dl->errors, dl->n_errors) < 0) {
		log_error("router", "cannot write event %s to the dead-letter file %s: %s",
			  kanal_msg_id(dl->ev->msg), deadletter_path(r->deadletter),
			  strerror(errno));
	}
	log_warn("router", "event %s (%s) for '%s' went to the dead letters: %s",
		 kanal_msg_id(dl->ev->msg), kanal_msg_type(dl->ev->msg), dl->dest->name, reason);
	extra = s_dl_json(dl);
	json_object_set_new(extra, "reason", json_string(reason));
	if (dl->n_errors)
		json_object_set_new(extra, "error", json_string(dl->errors[dl->n_errors - 1]));
	stream_publish(r->stream, "dead", NULL, dl->ev->msg, extra);
	s_delivery_free(r, dl_p);
}

/* ---- queues ---------------------------------------------------------------------------- */

static void s_enqueue(router_t *r, delivery_t *dl)
{
	dest_t *d = dl->dest;

	dl->next = NULL;
	if (d->tail)
		d->tail->next = dl;
	else
		d->head = dl;
	d->tail = dl;
	d->queued++;
	d->queued_bytes += dl->bytes;
	/* Handed to the instance at the end of the turn, after the journal's commit: a
	 * destination never sees an event the journal could still lose. */
}

/* Sends a D frame holding the batch's deliveries to d's instance. */
static void s_send_deliveries(router_t *r, dest_t *d, bus_deliver_batch_t *batch)
{
	const char *name = d->inst->name;

	if (!batch->count)
		return;
	batch->cmd = BUS_DELIVER;
	zmq_send(r->deliver_sock, name, strlen(name), ZMQ_SNDMORE);
	zmq_send(r->deliver_sock, batch, bus_deliver_batch_len(batch->count), 0);
	batch->count = 0;
}

/* Moves queued deliveries of d into flight while its window allows, BUS_BATCH to a frame. */
static void s_dispatch(router_t *r, dest_t *d)
{
	bus_deliver_batch_t batch;

	batch.count = 0;
	while (d->head && !d->paused && (!d->inst || d->n_inflight < BUS_DELIVER_WINDOW)) {
		delivery_t *dl = d->head;
		bus_deliver_t *item;

		d->head = dl->next;
		if (!d->head)
			d->tail = NULL;
		d->queued--;
		d->queued_bytes -= dl->bytes;
		if (!d->inst) {
			/* The built-in deadletter destination: the event is kept on disk, which
			 * settles this delivery of its flow like any other destination's OK. */
			flow_t *f = dl->kind == DL_PRIMARY ? dl->flow : NULL;
			if (f)
				f->refs++;
			s_dead(r, &dl, dl->kind == DL_DEFAULT ? "unmatched" : "routed to deadletter");
			if (f) {
				s_flow_primary_done(r, f);
				s_flow_release(r, &f);
			}
			continue;
		}
		dl->next = NULL;
		if (!d->n_inflight)
			d->progress_ms = r->now_ms;
		if (d->inflight_tail)
			d->inflight_tail->next = dl;
		else
			d->inflight = dl;
		d->inflight_tail = dl;
		d->n_inflight++;
		item = &batch.items[batch.count++];
		item->id = dl->id;
		item->msg = dl->ev->msg;
		item->route = s_route_name(dl);
		item->attempt = dl->attempt;
		item->is_request = dl->kind == DL_ENRICH || dl->kind == DL_REQUEST;
		if (batch.count == BUS_BATCH)
			s_send_deliveries(r, d, &batch);
	}
	if (batch.count)
		s_send_deliveries(r, d, &batch);
}

/* Takes delivery `id` out of d's in-flight list. Outcomes come back in the order the
 * deliveries went out, so the search almost always stops at the first. */
static delivery_t *s_take_inflight(dest_t *d, uint64_t id)
{
	delivery_t *prev = NULL;

	for (delivery_t *dl = d->inflight; dl; prev = dl, dl = dl->next) {
		if (dl->id != id)
			continue;
		if (prev)
			prev->next = dl->next;
		else
			d->inflight = dl->next;
		if (d->inflight_tail == dl)
			d->inflight_tail = prev;
		dl->next = NULL;
		d->n_inflight--;
		return dl;
	}
	return NULL;
}

/* ---- flows ----------------------------------------------------------------------------- */

static void s_flow_release(router_t *r, flow_t **flow_p)
{
	flow_t *f = *flow_p;

	*flow_p = NULL;
	if (!f || --f->refs > 0)
		return;
	s_shared_release(&f->ev);
	s_table_release(&f->table);
	kanal__mpool_free(f);
	(void)r;
}

/* During recovery: the journal's row for (route, destination), or NULL. */
static const journal_row_t *s_row(const journal_row_t *rows, size_t n, const char *route,
				  const char *dest)
{
	for (size_t i = 0; i < n; i++)
		if (rows[i].attempts >= 0 && !strcmp(rows[i].route, s_route_key(route)) &&
		    !strcmp(rows[i].destination, dest))
			return &rows[i];
	return NULL;
}

/* Applies a recovered journal row to a new delivery: a RETRYING one waits for its next
 * attempt. Returns true when the delivery was scheduled (not to be enqueued). */
static bool s_resume(router_t *r, delivery_t *dl, const journal_row_t *row)
{
	if (!row || row->state != JOURNAL_RETRYING)
		return false;
	dl->attempt = row->attempts + 1;
	if (row->last_error)
		s_delivery_error(dl, row->last_error);
	{
		int64_t wait = row->next_at_ms - kanal__wall_ms();
		dl->due_ms = kanal_now_ms() + (wait > 0 ? wait : 0);
	}
	s_schedule_retry(r, dl);
	return true;
}

/* Queues one delivery of the flow's event to each destination in names[]. */
static void s_fan_out(router_t *r, flow_t *f, char *const *names, size_t n, dl_kind_t kind,
		      delivery_t *history)
{
	delivery_t *ghosts = NULL;

	for (size_t i = 0; i < n; i++) {
		dest_t *d = s_dest(r, names[i]);
		const journal_row_t *row = s_row(f->rows, f->n_rows, f->route->name, names[i]);
		delivery_t *dl;

		/* Recovery: what already reached an end is not delivered again. */
		if (row && (row->state == JOURNAL_DELIVERED || row->state == JOURNAL_DEAD))
			continue;

		if (!d) {
			/* Validated at load; an instance cannot vanish while kanald runs. */
			log_error("router", "route '%s': destination '%s' does not exist",
				  f->route->name, names[i]);
			continue;
		}
		dl = s_delivery_new(r, kind, f->ev, f, d);
		if (!dl) {
			log_error("router", "out of memory queueing event %s for '%s'",
				  kanal_msg_id(f->ev->msg), d->name);
			continue;
		}
		for (delivery_t *h = history; h; h = h->next)
			for (size_t k = 0; k < h->n_errors; k++) {
				char line[700];
				snprintf(line, sizeof line, "%s: %s", h->dest->name, h->errors[k]);
				s_delivery_error(dl, line);
			}
		if (kind == DL_PRIMARY)
			f->primaries_open++, f->primaries_total++;
		if (row && row->state == JOURNAL_REJECTED && kind == DL_PRIMARY) {
			/* Rejected before the restart: it waits with the flow's decision. */
			dl->attempt = row->attempts;
			s_delivery_error(dl, row->last_error);
			dl->next = ghosts;
			ghosts = dl;
			continue;
		}
		if (!s_resume(r, dl, row))
			s_enqueue(r, dl);
	}
	while (ghosts) {
		delivery_t *dl = ghosts;
		ghosts = dl->next;
		f->primaries_rejected++;
		dl->next = f->held;
		f->held = dl;
		s_flow_primary_done(r, f);
	}
}

/* A primary of flow f has reached its end (delivered, rejected, or given up). When the
 * last primary is in, decide: fallback if every one rejected, else the held rejections
 * are dead. */
static void s_flow_primary_done(router_t *r, flow_t *f)
{
	delivery_t *held;

	if (--f->primaries_open > 0)
		return;
	held = f->held;
	f->held = NULL;
	if (f->primaries_rejected == f->primaries_total && f->route->n_fallback > 0) {
		json_t *extra = json_pack("{s:s}", "route", f->route->name);
		json_t *to = json_array();
		for (size_t i = 0; i < f->route->n_fallback; i++)
			json_array_append_new(to, json_string(f->route->fallback[i]));
		json_object_set_new(extra, "to", to);
		if (f->route->stat)
			f->route->stat->fallback++;
		stream_publish(r->stream, "fallback", NULL, f->ev->msg, extra);
		log_info("router", "route '%s': every destination rejected event %s; fallback taken",
			 f->route->name, kanal_msg_id(f->ev->msg));
		s_fan_out(r, f, f->route->fallback, f->route->n_fallback, DL_FALLBACK, held);
		while (held) {
			delivery_t *next = held->next;
			s_delivery_free(r, &held);
			held = next;
		}
		return;
	}
	while (held) {
		delivery_t *next = held->next;
		s_dead(r, &held, "rejected");
		held = next;
	}
}

static void s_enrich_next(router_t *r, flow_t *f);
static void s_strip_reserved(kanal_msg_t *msg);

/* Starts the flow's deliveries once its enrich steps are done. */
static void s_flow_deliver(router_t *r, flow_t *f)
{
	s_fan_out(r, f, f->route->to, f->route->n_to, DL_PRIMARY, NULL);
}

static void s_enrich_unlink(router_t *r, flow_t *f)
{
	for (flow_t **p = &r->enriching; *p; p = &(*p)->enrich_next) {
		if (*p == f) {
			*p = f->enrich_next;
			f->enrich_next = NULL;
			return;
		}
	}
}

/* An enrich step failed (service REJECT/RETRY, timeout, busy): skip it or send the flow's
 * event to the dead letters, as the step says. */
static int64_t s_backoff(const route_retry_t *rt, int attempt, int64_t hint);

/* An enrich step failed. A transient failure (the service asked to retry, did not answer in
 * time, or its queue was full) asks again after the route's backoff, within the route's
 * retry budget, as a delivery would be retried; the event stays open in the journal
 * meanwhile, so a restart resumes it. A permanent failure, or a spent budget, goes by the
 * step's on_error. */
static void s_enrich_failed(router_t *r, flow_t *f, const char *why, bool transient)
{
	const route_enrich_t *step = &f->route->enrich[f->enrich_step];
	json_t *extra;

	if (transient && !r->stopping && f->enrich_failures + 1 < f->route->retry.max_attempts) {
		int64_t delay = s_backoff(&f->route->retry, ++f->enrich_failures, 0);
		f->enrich_waiting = true;
		f->enrich_deadline = kanal_now_ms() + delay;
		f->enrich_next = r->enriching;
		r->enriching = f;
		stream_publish(r->stream, "enrich.retrying", NULL, f->ev->msg,
			       json_pack("{s:s, s:s, s:s, s:i, s:I}", "route", f->route->name,
					 "service", step->service, "reason", why, "attempt",
					 f->enrich_failures, "retry_in_ms", (json_int_t)delay));
		log_warn("router", "route '%s': enrich from '%s' failed for event %s: %s; asking "
				   "again in %lld ms (attempt %d of %d)",
			 f->route->name, step->service, kanal_msg_id(f->ev->msg), why,
			 (long long)delay, f->enrich_failures + 1, f->route->retry.max_attempts);
		return;
	}
	extra = json_pack("{s:s, s:s, s:s}", "route", f->route->name, "service", step->service,
			  "reason", why);
	stream_publish(r->stream, "enrich.failed", NULL, f->ev->msg, extra);
	log_warn("router", "route '%s': enrich from '%s' failed for event %s: %s",
		 f->route->name, step->service, kanal_msg_id(f->ev->msg), why);
	if (step->on_error == ENRICH_SKIP && !r->spilling) {
		f->enrich_step++;
		s_enrich_next(r, f);
		return;
	}
	{
		dest_t *d = s_dest(r, ROUTES_DEADLETTER);
		delivery_t *dl = s_delivery_new(r, DL_PRIMARY, f->ev, f, d);
		char reason[600];

		if (!dl)
			return;
		snprintf(reason, sizeof reason, "enrich from '%s' failed: %s", step->service, why);
		s_delivery_error(dl, reason);
		s_dead(r, &dl, reason);
	}
	s_jev_close(r, f->ev->jev);
	s_flow_release(r, &f); /* the enrich stage's reference */
}

/* Runs the flow's next enrich step, or delivers when there is none left. */
static void s_enrich_next(router_t *r, flow_t *f)
{
	const route_enrich_t *step;
	dest_t *d;
	delivery_t *dl;

	if (f->enrich_step >= f->route->n_enrich) {
		s_flow_deliver(r, f);
		s_jev_close(r, f->ev->jev);
		s_flow_release(r, &f); /* the enrich stage's reference */
		return;
	}
	step = &f->route->enrich[f->enrich_step];
	d = s_dest(r, step->service);
	if (!d || !d->inst) {
		s_enrich_failed(r, f, "no such service instance", false);
		return;
	}
	if (s_dest_full(r, d, 0)) {
		s_enrich_failed(r, f, "the service's queue is full", true);
		return;
	}
	/* The service reads its own copy: after a timeout the flow goes on and may write into
	 * its event while the service is still reading the request. */
	{
		kanal_msg_t *copy = kanal_msg_dup(f->ev->msg);
		shared_t *req;

		/* The service learns who asks and why (an audit log, address protection): only
		 * from kanald, so whatever the event carried under these names is dropped. */
		s_strip_reserved(copy);
		if (copy && (kanal_msg_set_attr(copy, "kanalroute", f->route->name, NULL) < 0 ||
			     (step->purpose && kanal_msg_set_attr(copy, "kanalpurpose",
								  step->purpose, NULL) < 0) ||
			     (step->protected_address &&
			      kanal_msg_set_ext_bool(copy, "kanalprotected", true, NULL) < 0)))
			kanal_msg_destroy(&copy);
		req = copy ? s_shared_new(&copy) : NULL;
		dl = req ? s_delivery_new(r, DL_ENRICH, req, NULL, d) : NULL;
		s_shared_release(&req);
	}
	if (!dl) {
		s_enrich_failed(r, f, "out of memory", true);
		return;
	}
	f->enrich_dl = dl;
	f->enrich_deadline = kanal_now_ms() + (step->timeout_ms > 0 ? step->timeout_ms
								 : r->conf->enrich_timeout_ms);
	f->enrich_next = r->enriching;
	r->enriching = f;
	s_enqueue(r, dl);
}

static flow_t *s_enrich_owner(router_t *r, const delivery_t *dl)
{
	for (flow_t *f = r->enriching; f; f = f->enrich_next)
		if (f->enrich_dl == dl)
			return f;
	return NULL;
}

/* The service answered an enrich request. */
static void s_enrich_outcome(router_t *r, delivery_t *dl, int outcome, const char *error,
			     kanal_msg_t **reply_p)
{
	flow_t *f = s_enrich_owner(r, dl);
	const route_enrich_t *step;
	char *json = NULL;
	int rc = 0;

	if (!f) {
		/* It timed out earlier; the late reply is dropped. */
		kanal_msg_destroy(reply_p);
		return;
	}
	s_enrich_unlink(r, f);
	f->enrich_dl = NULL;
	step = &f->route->enrich[f->enrich_step];
	if (outcome != KANAL_OUTCOME_OK || !*reply_p) {
		char why[600];
		snprintf(why, sizeof why, "service answered %s%s%s",
			 outcome == KANAL_OUTCOME_OK ? "without a reply" : kanal_outcome_name(outcome),
			 error && *error ? ": " : "", error ? error : "");
		kanal_msg_destroy(reply_p);
		s_enrich_failed(r, f, why, outcome == KANAL_OUTCOME_RETRY);
		return;
	}
	json = kanal_msg_data_json(*reply_p, NULL);
	if (!json) {
		rc = KANAL_EINVAL;
	} else if (!strcmp(step->into, "data")) {
		rc = kanal_msg_set_data_json(f->ev->msg, json, strlen(json));
	} else {
		rc = kanal_msg_data_set_json(f->ev->msg, step->into + 5, json, strlen(json));
	}
	kanal_free(json);
	kanal_msg_destroy(reply_p);
	if (rc < 0) {
		s_enrich_failed(r, f, "the reply's data cannot be merged into the event", false);
		return;
	}
	f->ev->bytes = kanal_msg_size(f->ev->msg); /* the flow's own copy grew */
	f->enrich_step++;
	s_enrich_next(r, f);
}

/* ---- accepting events -------------------------------------------------------------- */

/* Adds delta to the parked count of every destination the matched routes deliver to (the
 * default one when none matched). */
static void s_count_parked(router_t *r, const route_t *const *m, size_t n, int delta)
{
	for (size_t i = 0; i < (n ? n : 1); i++) {
		size_t k_max = n ? m[i]->n_to : 1;
		for (size_t k = 0; k < k_max; k++) {
			dest_t *d = s_dest(r, n ? m[i]->to[k] : routes_default(r->table->routes));
			if (!d)
				continue;
			if (delta < 0 && d->parked == 0)
				continue; /* the table changed since it was parked */
			d->parked = (size_t)((ssize_t)d->parked + delta);
		}
	}
}

/* True when a destination of the matched routes has parked events: a new event for it
 * must queue behind them to keep each destination's order. */
static bool s_behind_parked(router_t *r, const route_t *const *m, size_t n)
{
	if (!r->n_parked)
		return false;
	for (size_t i = 0; i < (n ? n : 1); i++) {
		size_t k_max = n ? m[i]->n_to : 1;
		for (size_t k = 0; k < k_max; k++) {
			dest_t *d = s_dest(r, n ? m[i]->to[k] : routes_default(r->table->routes));
			if (d && d->parked)
				return true;
		}
	}
	return false;
}

/* A destination with work in flight that has answered nothing for this long is stalled:
 * events for it are parked on disk (durable mode). One that answers is only behind: a
 * source's emits for it are held, and its window closes, which costs nothing on disk. */
#define DEST_STALL_MS 100

static bool s_dest_stalled(const dest_t *d, int64_t now)
{
	return !d->inst || (d->n_inflight > 0 && now - d->progress_ms >= DEST_STALL_MS);
}

/* Checks that every destination the event would reach has room. When one has not, and
 * `stalled` is given, sets it when a full destination is stalled. */
static bool s_has_room_why(router_t *r, const route_t *const *m, size_t n, size_t bytes,
			   bool *stalled)
{
	bool room = true;
	int64_t now = stalled ? kanal_now_ms() : 0;

	if (n == 0) {
		dest_t *d = s_dest(r, routes_default(r->table->routes));
		if (d && s_dest_full(r, d, bytes)) {
			room = false;
			if (stalled && s_dest_stalled(d, now))
				*stalled = true;
		}
		return room;
	}
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < m[i]->n_to; k++) {
			dest_t *d = s_dest(r, m[i]->to[k]);
			if (d && s_dest_full(r, d, bytes)) {
				room = false;
				if (!stalled)
					return false;
				if (s_dest_stalled(d, now))
					*stalled = true;
			}
		}
		if (m[i]->n_enrich) {
			dest_t *d = s_dest(r, m[i]->enrich[0].service);
			if (d && s_dest_full(r, d, 0)) {
				room = false;
				if (!stalled)
					return false;
				if (s_dest_stalled(d, now))
					*stalled = true;
			}
		}
	}
	return room;
}

static bool s_has_room(router_t *r, const route_t *const *m, size_t n, size_t bytes)
{
	return s_has_room_why(r, m, n, bytes, NULL);
}

/* Starts one flow per matching route: enrich first where the route says so (on the flow's
 * own copy of the event), else straight to its destinations. `rows` (recovery only) tell
 * what the journal says already happened to the event's deliveries. */
/* ---- counters for operations (status, /metrics, the dashboard) ----------------------- */

static size_t s_hash(const char *s)
{
	size_t h = 5381;
	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

/* The counters of the route called name, made on first use; NULL when out of memory. */
static route_stat_t *s_stat_for(router_t *r, const char *name)
{
	route_stat_t *st;
	size_t i;

	if (r->n_stats * 2 >= r->stat_cap) {
		size_t cap = r->stat_cap ? r->stat_cap * 2 : 64;
		route_stat_t **slots = calloc(cap, sizeof *slots);
		if (!slots)
			return NULL;
		for (size_t k = 0; k < r->stat_cap; k++) {
			for (route_stat_t *e = r->stat_slots[k], *next; e; e = next) {
				next = e->next;
				e->next = slots[s_hash(e->name) & (cap - 1)];
				slots[s_hash(e->name) & (cap - 1)] = e;
			}
		}
		free(r->stat_slots);
		r->stat_slots = slots;
		r->stat_cap = cap;
	}
	i = s_hash(name) & (r->stat_cap - 1);
	for (st = r->stat_slots[i]; st; st = st->next)
		if (!strcmp(st->name, name))
			return st;
	st = calloc(1, sizeof *st);
	if (!st || !(st->name = strdup(name))) {
		free(st);
		return NULL;
	}
	st->next = r->stat_slots[i];
	r->stat_slots[i] = st;
	r->n_stats++;
	return st;
}

/* Points every route of a table at its name's counters. */
static void s_bind_stats(router_t *r, routes_t *routes)
{
	for (size_t i = 0; routes && i < routes_count(routes); i++) {
		route_t *rt = (route_t *)routes_get(routes, i);
		rt->stat = s_stat_for(r, rt->name);
	}
}

static void s_free_stats(router_t *r)
{
	for (size_t k = 0; k < r->stat_cap; k++) {
		for (route_stat_t *e = r->stat_slots[k], *next; e; e = next) {
			next = e->next;
			free(e->name);
			free(e);
		}
	}
	free(r->stat_slots);
	r->stat_slots = NULL;
	r->stat_cap = r->n_stats = 0;
}

static void s_observe_latency(router_t *r, const shared_t *ev, int64_t now_ms)
{
	double ms = (double)(now_ms - ev->born_ms);
	size_t i = 0;

	while (i < N_LATENCY && ms > s_latency_le_ms[i])
		i++;
	if (i < N_LATENCY)
		r->latency[i]++;
	r->latency_count++;
	r->latency_sum_ms += ms;
}

/* The channel strategy's measure, from what passes: letters a channel reports sent
 * (post.letter.status, data.status "sent", by data.channel), and citizens' inquiries
 * (child.absence.*, child.vacation.*, child.pickup.*) by data.channel: app, web or none
 * (a registration in the daycare system's app) is digital; phone, paper … are not. */
static void s_count_channels(router_t *r, const kanal_msg_t *msg)
{
	const char *type = kanal_msg_type(msg), *channel = NULL, *status = NULL;

	if (!strcmp(type, "post.letter.status")) {
		bool digital;
		int64_t minute = kanal__wall_ms() / 60000;
		size_t slot = (size_t)(minute % CHANNEL_MINUTES);

		if (kanal_msg_data_str(msg, "status", &status) != 0 || strcmp(status, "sent") ||
		    kanal_msg_data_str(msg, "channel", &channel) != 0)
			return;
		digital = !strcmp(channel, "digital") || !strcmp(channel, "nemsms");
		if (!digital && strcmp(channel, "physical"))
			return;
		if (r->channel_ring[slot].minute != minute) {
			r->channel_ring[slot].minute = minute;
			r->channel_ring[slot].digital = r->channel_ring[slot].physical = 0;
		}
		if (digital) {
			r->letters_digital++;
			r->channel_ring[slot].digital++;
		} else {
			r->letters_physical++;
			r->channel_ring[slot].physical++;
		}
	} else if (!strncmp(type, "child.absence.", 14) || !strncmp(type, "child.vacation.", 15) ||
		   !strncmp(type, "child.pickup.", 13)) {
		if (kanal_msg_data_str(msg, "channel", &channel) != 0 || !strcmp(channel, "app") ||
		    !strcmp(channel, "web"))
			r->inquiries_digital++;
		else
			r->inquiries_other++;
	}
}

static void s_start_flows(router_t *r, shared_t *ev, const route_t *const *m, size_t n,
			  json_t *names, const journal_row_t *rows, size_t n_rows)
{
	for (size_t i = 0; i < n; i++) {
		flow_t *f = kanal__mpool_alloc(sizeof *f, NULL);

		if (m[i]->stat)
			m[i]->stat->matched++;

		if (names)
			json_array_append_new(names, json_string(m[i]->name));
		if (!f) {
			log_error("router", "out of memory routing event %s", kanal_msg_id(ev->msg));
			continue;
		}
		memset(f, 0, sizeof *f);
		f->table = r->table;
		r->table->refs++;
		f->route = m[i];
		f->refs = 1;
		if (m[i]->n_enrich) {
			/* Enriching writes into the event: this flow gets its own copy. */
			kanal_msg_t *copy = kanal_msg_dup(ev->msg);
			f->ev = copy ? s_shared_new(&copy) : NULL;
			if (f->ev)
				f->ev->born_ms = ev->born_ms;
			if (f->ev && ev->jev) {
				f->ev->jev = ev->jev;
				ev->jev->refs++;
				s_jev_open(f->ev); /* the enrich stage */
			}
			if (!f->ev) {
				log_error("router", "out of memory copying event %s",
					  kanal_msg_id(ev->msg));
				s_table_release(&f->table);
				kanal__mpool_free(f);
				continue;
			}
			s_enrich_next(r, f);
		} else {
			f->ev = ev;
			ev->refs++;
			f->rows = rows;
			f->n_rows = n_rows;
			s_flow_deliver(r, f);
			f->rows = NULL; /* borrowed for this call only */
			f->n_rows = 0;
			s_flow_release(r, &f);
		}
	}
}

/* Routes *msg_p, taking it on success (returns 0). Returns KANAL_EBUSY when a destination
 * is full (*msg_p is left with the caller) or KANAL_ENOMEM (taken and lost: logged). With
 * the journal, an event whose destination is full is parked on disk — unless `can_hold`
 * (an instance's emit, which the router may hold back) and no full destination is stalled:
 * then it is KANAL_EBUSY, and the emit waits in memory for the destination to catch up. */
static int s_accept(router_t *r, kanal_msg_t **msg_p, bool can_hold)
{
	const route_t *stack[64];
	const route_t **m = stack;
	size_t n, cap = 64;
	uint64_t seq = 0;
	shared_t *ev;
	json_t *names;
	size_t bytes = kanal_msg_size(*msg_p);

	n = routes_match(r->table->routes, *msg_p, m, cap);
	if (n > cap) {
		m = malloc(n * sizeof *m);
		if (!m)
			return KANAL_ENOMEM;
		cap = n;
		n = routes_match(r->table->routes, *msg_p, m, cap);
	}
	if (r->journal && !r->journal_failed && can_hold && !s_behind_parked(r, m, n)) {
		bool stalled = false;
		if (!s_has_room_why(r, m, n, bytes, &stalled) && !stalled) {
			if (m != stack)
				free(m);
			return KANAL_EBUSY;
		}
	}
	if (r->journal && !r->journal_failed &&
	    (!s_has_room(r, m, n, bytes) || s_behind_parked(r, m, n))) {
		/* With the journal, pending work waits on disk, not in RAM: the event is
		 * accepted parked and routed when its destinations have room. */
		int rc = 0;
		if (r->n_parked >= (size_t)r->conf->max_parked_events)
			rc = KANAL_EBUSY;
		else if (journal_seen(r->journal, kanal_msg_source(*msg_p), kanal_msg_id(*msg_p),
				      kanal__wall_ms() - r->conf->dedupe_window_ms))
			rc = KANAL_EDUPLICATE;
		else if (journal_add_event(r->journal, *msg_p, true, &seq) < 0) {
			rc = KANAL_EIO;
			s_journal_broken(r);
		}
		if (rc == KANAL_EDUPLICATE)
			r->duplicates++;
		if (rc == 0) {
			r->accepted++;
			s_count_channels(r, *msg_p);
			r->n_parked++;
			s_count_parked(r, m, n, +1);
			S_PUBLISH(r, "accepted", NULL, *msg_p, json_pack("{s:b}", "parked", 1));
			kanal_msg_destroy(msg_p);
		}
		if (m != stack)
			free(m);
		return rc;
	}
	if (!s_has_room(r, m, n, bytes)) {
		if (m != stack)
			free(m);
		return KANAL_EBUSY;
	}
	if (r->journal) {
		int rc = 0;
		if (r->journal_failed)
			rc = KANAL_EIO;
		else if (journal_seen(r->journal, kanal_msg_source(*msg_p), kanal_msg_id(*msg_p),
				      kanal__wall_ms() - r->conf->dedupe_window_ms))
			rc = KANAL_EDUPLICATE;
		else if (journal_add_event(r->journal, *msg_p, false, &seq) < 0) {
			rc = KANAL_EIO;
			s_journal_broken(r);
		}
		if (rc == KANAL_EDUPLICATE)
			r->duplicates++;
		if (rc < 0) {
			if (m != stack)
				free(m);
			return rc;
		}
	}
	s_count_channels(r, *msg_p);
	ev = s_shared_new_at(msg_p, bytes, r->now_ms);
	if (!ev) {
		if (m != stack)
			free(m);
		return KANAL_ENOMEM;
	}
	if (r->journal) {
		ev->jev = calloc(1, sizeof *ev->jev);
		if (ev->jev) {
			ev->jev->seq = seq;
			ev->jev->refs = 1;
			ev->jev->open = 1; /* held by this function until its flows exist */
		}
	}
	r->accepted++;
	stream_publish(r->stream, "accepted", NULL, ev->msg, NULL);
	if (n == 0) {
		dest_t *d = s_dest(r, routes_default(r->table->routes));
		delivery_t *dl = d ? s_delivery_new(r, DL_DEFAULT, ev, NULL, d) : NULL;

		r->unmatched++;
		S_PUBLISH(r, "unmatched", NULL, ev->msg,
			       json_pack("{s:s}", "destination",
					 routes_default(r->table->routes)));
		if (dl)
			s_enqueue(r, dl);
		s_jev_close(r, ev->jev);
		s_shared_release(&ev);
		return 0;
	}
	names = stream_wanted(r->stream) ? json_array() : NULL;
	s_start_flows(r, ev, m, n, names, NULL, 0);
	if (names)
		stream_publish(r->stream, "routed", NULL, ev->msg,
			       json_pack("{s:o}", "routes", names));
	s_jev_close(r, ev->jev);
	s_shared_release(&ev);
	if (m != stack)
		free(m);
	return 0;
}

/* ---- outcomes -------------------------------------------------------------------------- */

static int64_t s_backoff(const route_retry_t *rt, int attempt, int64_t hint)
{
	double base = (double)rt->backoff_ms * pow(2.0, attempt - 1);
	double capped = base > (double)rt->max_backoff_ms ? (double)rt->max_backoff_ms : base;
	/* Full jitter on the upper half keeps retries of a burst apart. */
	double jittered = capped * (0.5 + 0.5 * ((double)rand() / RAND_MAX));
	int64_t ms = (int64_t)jittered;

	return hint > ms ? hint : ms;
}

static void s_schedule_retry(router_t *r, delivery_t *dl)
{
	delivery_t **p = &r->retries;

	while (*p && (*p)->due_ms <= dl->due_ms)
		p = &(*p)->next;
	dl->next = *p;
	*p = dl;
}

static const route_retry_t s_default_retry = { 5, 1000, 300000 };

/* The journal cannot be written: say so once, refuse new events until a probe commit
 * works again (s_end_turn). */
static void s_journal_broken(router_t *r)
{
	if (r->journal_failed)
		return;
	r->journal_failed = true;
	r->next_prune_ms = kanal__wall_ms() + 60000;
	log_error("router", "journal %s cannot be written (%s): refusing new events until it "
			    "can", journal_path(r->journal), journal_error(r->journal));
	stream_publish(r->stream, "journal.failed", "-", NULL,
		       json_pack("{s:s}", "error", journal_error(r->journal)));
}

/* Records what happened to a delivery of a journalled event. */
static void s_journal_row(router_t *r, const delivery_t *dl, journal_state_t state,
			  int64_t next_at_ms, const char *error)
{
	if (!r->journal || r->journal_failed || !dl->ev->jev)
		return;
	if (journal_delivery(r->journal, dl->ev->jev->seq, s_route_key(s_route_name(dl)),
			     dl->dest->name, state, dl->attempt, next_at_ms, error) < 0)
		log_error("router", "cannot record delivery %llu in the journal: %s",
			  (unsigned long long)dl->id, journal_error(r->journal));
}

/* Acts on the outcome o of a delivery to d (its inline error is not read: `error` is the
 * text, "" when there is none). Takes o->reply. */
static void s_on_outcome_text(router_t *r, dest_t *d, const bus_outcome_t *o, const char *error)
{
	delivery_t *dl = s_take_inflight(d, o->id);
	kanal_msg_t *reply = o->reply;
	int64_t now_ms = r->now_ms; /* read once per frame of outcomes */

	d->progress_ms = now_ms;
	if (!dl) {
		log_warn("router", "'%s' answered unknown delivery %llu", d->name,
			 (unsigned long long)o->id);
		kanal_msg_destroy(&reply);
		return;
	}

	if (dl->kind == DL_ENRICH) {
		s_enrich_outcome(r, dl, o->outcome, error, &reply);
		s_delivery_free(r, &dl);
		return;
	}
	if (dl->kind == DL_REQUEST) {
		bus_reply_t rep = { BUS_REPLY, 0, dl->req_seq, NULL };
		if (o->outcome == KANAL_OUTCOME_OK && reply) {
			rep.reply = reply;
			reply = NULL;
		} else {
			rep.status = KANAL_EREJECTED;
		}
		zmq_send(r->emit_sock, dl->requester, strlen(dl->requester), ZMQ_SNDMORE);
		zmq_send(r->emit_sock, &rep, sizeof rep, 0);
		kanal_msg_destroy(&reply);
		s_delivery_free(r, &dl);
		return;
	}
	kanal_msg_destroy(&reply);

	if (o->outcome == KANAL_OUTCOME_OK) {
		/* When this delivery is the event's last open part, the event is marked done in
		 * this same transaction, and a done event is never resumed: its "delivered" row
		 * would say nothing a restart reads (docs/design/journal.md). */
		if (!dl->counted || !dl->ev->jev || dl->ev->jev->open > 1)
			s_journal_row(r, dl, JOURNAL_DELIVERED, 0, NULL);
		d->delivered++;
		if (dl->flow && dl->flow->route->stat)
			dl->flow->route->stat->delivered++;
		if (dl->kind != DL_ENRICH && dl->kind != DL_REQUEST)
			s_observe_latency(r, dl->ev, now_ms);
		S_PUBLISH(r, "delivered", NULL, dl->ev->msg, s_dl_json(dl));
		if (dl->kind == DL_PRIMARY && dl->flow)
			s_flow_primary_done(r, dl->flow);
		s_delivery_free(r, &dl);
		return;
	}

	s_delivery_error(dl, error);
	if (o->outcome == KANAL_OUTCOME_RETRY) {
		const route_retry_t *rt = dl->flow ? &dl->flow->route->retry : &s_default_retry;
		json_t *extra = s_dl_json(dl);

		json_object_set_new(extra, "error", json_string(error));
		if (dl->attempt < rt->max_attempts && !r->stopping) {
			d->retried++;
			if (dl->flow && dl->flow->route->stat)
				dl->flow->route->stat->retried++;
			int64_t delay = s_backoff(rt, dl->attempt, o->retry_after_ms);
			dl->due_ms = kanal_now_ms() + delay;
			s_journal_row(r, dl, JOURNAL_RETRYING, kanal__wall_ms() + delay, error);
			json_object_set_new(extra, "retry_in_ms",
					    json_integer(dl->due_ms - kanal_now_ms()));
			stream_publish(r->stream, "retrying", NULL, dl->ev->msg, extra);
			dl->attempt++;
			s_schedule_retry(r, dl);
			return;
		}
		json_decref(extra);
		if (dl->kind == DL_PRIMARY && dl->flow) {
			flow_t *f = dl->flow;
			f->refs++;
			s_dead(r, &dl, r->stopping ? "kanald stopped before delivery"
						   : "retry budget spent");
			s_flow_primary_done(r, f);
			s_flow_release(r, &f);
		} else {
			s_dead(r, &dl, r->stopping ? "kanald stopped before delivery"
						   : "retry budget spent");
		}
		return;
	}

	/* REJECT: permanent. */
	d->rejected++;
	if (dl->flow && dl->flow->route->stat)
		dl->flow->route->stat->rejected++;
	{
		json_t *extra = s_dl_json(dl);
		json_object_set_new(extra, "error", json_string(error));
		stream_publish(r->stream, "rejected", NULL, dl->ev->msg, extra);
	}
	if (dl->kind == DL_PRIMARY && dl->flow && dl->flow->route->n_fallback > 0) {
		flow_t *f = dl->flow;
		s_journal_row(r, dl, JOURNAL_REJECTED, 0, error);
		f->primaries_rejected++;
		dl->next = f->held;
		f->held = dl;
		s_flow_primary_done(r, f);
		return;
	}
	if (dl->kind == DL_PRIMARY && dl->flow) {
		flow_t *f = dl->flow;
		f->refs++;
		f->primaries_rejected++;
		s_dead(r, &dl, "rejected");
		s_flow_primary_done(r, f);
		s_flow_release(r, &f);
		return;
	}
	s_dead(r, &dl, "rejected");
}

/* ---- timers: retries and enrich timeouts ---------------------------------------------- */

static void s_run_timers(router_t *r)
{
	int64_t now = kanal_now_ms();

	while (r->retries && r->retries->due_ms <= now) {
		delivery_t *dl = r->retries;
		r->retries = dl->next;
		s_enqueue(r, dl);
	}
	for (flow_t *f = r->enriching, *next; f; f = next) {
		next = f->enrich_next;
		if (f->enrich_deadline <= now && f->enrich_waiting) {
			/* The backoff is over: ask the service again. */
			s_enrich_unlink(r, f);
			f->enrich_waiting = false;
			s_enrich_next(r, f);
			next = r->enriching; /* the list changed under us */
			continue;
		}
		if (f->enrich_deadline <= now) {
			char why[64];
			s_enrich_unlink(r, f);
			f->enrich_dl = NULL; /* its delivery finishes on its own; the reply is dropped */
			snprintf(why, sizeof why, "no reply within %lld ms",
				 (long long)(f->route->enrich[f->enrich_step].timeout_ms > 0
						     ? f->route->enrich[f->enrich_step].timeout_ms
						     : r->conf->enrich_timeout_ms));
			s_enrich_failed(r, f, why, true);
			next = r->enriching; /* it may have been put back to wait */
		}
	}
}

static int64_t s_next_timer(const router_t *r)
{
	int64_t next = -1;

	if (r->retries)
		next = r->retries->due_ms;
	for (const flow_t *f = r->enriching; f; f = f->enrich_next)
		if (next < 0 || f->enrich_deadline < next)
			next = f->enrich_deadline;
	return next;
}

/* ---- instance sockets ---------------------------------------------------------------- */

static size_t s_instance_index(router_t *r, const char *name)
{
	for (size_t i = 0; i < r->n_instances; i++)
		if (!strcmp(r->instances[i]->name, name))
			return i;
	return (size_t)-1;
}

/* Receives [identity][frame] from a ROUTER socket. Returns the frame length, or -1. */
static int s_recv_routed(void *sock, char *id, size_t id_size, void *buf, size_t size)
{
	int n = zmq_recv(sock, id, id_size - 1, ZMQ_DONTWAIT);
	int more = 0;
	size_t more_len = sizeof more;

	if (n < 0)
		return -1;
	id[n < (int)id_size - 1 ? n : (int)id_size - 1] = '\0';
	zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len);
	if (!more)
		return 0;
	return zmq_recv(sock, buf, size, 0);
}

/* Outcomes from the instances: R frames (a batch, error texts by pointer) from instance
 * threads, O frames (one, error inline) from isolation proxies. */
static void s_on_deliver_sock(router_t *r)
{
	char id[128];
	union {
		uint8_t cmd;
		bus_results_t res;
		bus_outcome_t one;
	} f;
	int n;

	while ((n = s_recv_routed(r->deliver_sock, id, sizeof id, &f, sizeof f)) >= 0) {
		dest_t *d = n > 0 ? s_dest(r, id) : NULL;

		r->now_ms = kanal_now_ms();

		if (n >= (int)bus_results_len(0) && f.cmd == BUS_RESULTS) {
			uint32_t count = f.res.count;
			if (bus_results_len(count) > (size_t)n)
				continue; /* not a frame of ours */
			for (uint32_t i = 0; i < count; i++) {
				bus_result_t *it = &f.res.items[i];
				bus_outcome_t o;
				if (!d) {
					kanal_msg_destroy(&it->reply);
					free(it->error);
					continue;
				}
				/* s_on_outcome reads the fields it needs, not the inline text. */
				o.cmd = BUS_OUTCOME;
				o.outcome = it->outcome;
				o.id = it->id;
				o.retry_after_ms = it->retry_after_ms;
				o.reply = it->reply;
				s_on_outcome_text(r, d, &o, it->error ? it->error : "");
				free(it->error);
			}
			s_mid_turn(r, d);
			continue;
		}
		if (n < (int)offsetof(bus_outcome_t, error) || f.cmd != BUS_OUTCOME)
			continue;
		if (n >= (int)sizeof f.one)
			n = sizeof f.one - 1;
		((char *)&f.one)[n] = '\0';
		f.one.error[sizeof f.one.error - 1] = '\0';
		if (!d) {
			kanal_msg_destroy(&f.one.reply);
			continue;
		}
		s_on_outcome_text(r, d, &f.one, f.one.error);
	}
}

/* Tries held emits again, per source in arrival order, while they fit. */
static void s_retry_held(router_t *r)
{
	for (size_t i = 0; i < r->n_instances && r->n_held; i++) {
		struct held_queue *q = &r->held[i];

		while (q->head) {
			held_emit_t *h = q->head;
			int rc = s_accept(r, &h->msg, true);

			if (rc == KANAL_EBUSY || rc == KANAL_EIO)
				break;
			r->acks[h->origin]++;
			q->head = h->next;
			if (!q->head)
				q->tail = NULL;
			r->n_held--;
			kanal_msg_destroy(&h->msg);
			free(h);
		}
	}
}

/* Removes the extension attributes only kanald may set on a request to a service
 * (kanalroute, kanalpurpose, kanalprotected, kanalrequester). Accepts NULL. */
static void s_strip_reserved(kanal_msg_t *msg)
{
	static const char *const names[] = { "kanalroute", "kanalpurpose", "kanalprotected",
					     "kanalrequester" };
	for (size_t i = 0; msg && i < sizeof names / sizeof *names; i++)
		if (kanal_msg_attr(msg, names[i]))
			kanal_msg_set_attr(msg, names[i], NULL, NULL);
}

static void s_on_request(router_t *r, const char *from, const bus_request_t *q)
{
	kanal_msg_t *msg = q->msg;
	bus_reply_t rep = { BUS_REPLY, 0, q->seq, NULL };
	char service[sizeof q->service];
	dest_t *d;
	delivery_t *dl;
	shared_t *ev;

	memcpy(service, q->service, sizeof service);
	service[sizeof service - 1] = '\0';
	d = s_dest(r, service);
	if (!d || !d->inst || !strcmp(service, from)) {
		rep.status = d && d->inst ? KANAL_EINVAL : KANAL_ENOSERVICE;
		goto answer;
	}
	if (s_dest_full(r, d, 0)) {
		rep.status = KANAL_EBUSY;
		goto answer;
	}
	/* A plugin's own request names no route and cannot ask for protected data; the
	 * service learns which instance asks. The purpose it gives is kept for the audit. */
	{
		const char *purpose = kanal_msg_attr(msg, "kanalpurpose");
		char *keep = purpose ? strdup(purpose) : NULL;
		s_strip_reserved(msg);
		if (keep)
			kanal_msg_set_attr(msg, "kanalpurpose", keep, NULL);
		free(keep);
		kanal_msg_set_attr(msg, "kanalrequester", from, NULL);
	}
	ev = s_shared_new(&msg);
	if (!ev) {
		rep.status = KANAL_ENOMEM;
		goto answer;
	}
	dl = s_delivery_new(r, DL_REQUEST, ev, NULL, d);
	s_shared_release(&ev);
	if (!dl) {
		rep.status = KANAL_ENOMEM;
		goto answer;
	}
	dl->requester = strdup(from);
	if (!dl->requester) {
		s_delivery_free(r, &dl);
		rep.status = KANAL_ENOMEM;
		goto answer;
	}
	dl->req_seq = q->seq;
	s_enqueue(r, dl);
	return;
answer:
	kanal_msg_destroy(&msg);
	zmq_send(r->emit_sock, from, strlen(from), ZMQ_SNDMORE);
	zmq_send(r->emit_sock, &rep, sizeof rep, 0);
}

/* Takes one emitted event from instance `origin`: routed now, or held behind the ones
 * already held for it (so order per source is kept) while a destination is full or the
 * journal unwritable. */
static void s_on_emit(router_t *r, size_t origin, const char *id, kanal_msg_t *msg)
{
	struct held_queue *q = &r->held[origin];
	int rc = q->head ? KANAL_EBUSY : s_accept(r, &msg, true);
	held_emit_t *h;

	if (rc != KANAL_EBUSY && rc != KANAL_EIO) {
		r->acks[origin]++;
		kanal_msg_destroy(&msg);
		return;
	}
	h = calloc(1, sizeof *h);
	if (!h) {
		log_error("router", "out of memory holding an emit from '%s'", id);
		kanal_msg_destroy(&msg);
		r->acks[origin]++;
		return;
	}
	if (!q->head)
		r->busy++;
	h->msg = msg;
	h->origin = origin;
	if (q->tail)
		q->tail->next = h;
	else
		q->head = h;
	q->tail = h;
	r->n_held++;
}

static void s_on_emit_sock(router_t *r)
{
	char id[128];
	bus_emit_frame_t f;
	int n;

	while ((n = s_recv_routed(r->emit_sock, id, sizeof id, &f, sizeof f)) >= 0) {
		size_t origin = s_instance_index(r, id);

		r->now_ms = kanal_now_ms();

		if (n <= 0 || origin == (size_t)-1)
			continue;
		if (f.cmd == BUS_EMIT && n >= (int)bus_emit_len(0)) {
			uint32_t count = f.emit.count;
			if (bus_emit_len(count) > (size_t)n)
				continue; /* not a frame of ours */
			for (uint32_t i = 0; i < count; i++) {
				/* Built on the emitter's core: fetch the next while routing this. */
				if (i + 1 < count)
					kanal__msg_prefetch(f.emit.msgs[i + 1]);
				s_on_emit(r, origin, id, f.emit.msgs[i]);
			}
			s_mid_turn(r, NULL);
		} else if (f.cmd == BUS_REQUEST && n >= (int)sizeof(bus_request_t)) {
			bus_request_t q;
			memcpy(&q, &f.request, sizeof q);
			s_on_request(r, id, &q);
		} else if (f.cmd == BUS_CLOSED) {
			r->closed_count++;
		} else if (f.cmd == BUS_NOTICE && n >= (int)sizeof(bus_notice_t)) {
			/* An isolated instance reports its plugin host (isolation.c). */
			bus_notice_t nt;
			json_t *extra;

			memcpy(&nt, &f.notice, sizeof nt);
			nt.kind[sizeof nt.kind - 1] = nt.detail[sizeof nt.detail - 1] = '\0';
			extra = json_loads(nt.detail, 0, NULL);
			if (json_is_object(extra))
				json_object_set_new(extra, "instance", json_string(id));
			stream_publish(r->stream, nt.kind, id, NULL, extra);
		}
	}
}

static void s_flush_acks(router_t *r)
{
	for (size_t i = 0; i < r->n_instances; i++) {
		if (r->acks[i]) {
			bus_ack_t ack = { BUS_ACK, 0, r->acks[i] };
			const char *name = r->instances[i]->name;
			zmq_send(r->emit_sock, name, strlen(name), ZMQ_SNDMORE);
			zmq_send(r->emit_sock, &ack, sizeof ack, 0);
			r->acks[i] = 0;
		}
	}
}

/* ---- gateway ----------------------------------------------------------------------------- */

static json_t *s_result(const char *id, const char *status, const char *reason)
{
	json_t *o = json_pack("{s:s}", "status", status);

	if (id)
		json_object_set_new(o, "id", json_string(id));
	if (reason)
		json_object_set_new(o, "reason", json_string(reason));
	return o;
}

/* With CURVE on, whether the client whose request is being read may hand in events of
 * `type` (its `emit` list, acl.c). Without CURVE every sender may. */
static bool s_gateway_allows(router_t *r, const char *type)
{
	const conf_client_t *c;

	if (!r->zap)
		return true;
	c = conf_client(r->conf, r->gateway_client);
	return c && acl_type_allowed(c->emit, c->n_emit, type);
}

/* Refuses an event of `type` from the current gateway client: counted, logged, published
 * as acl.denied, and answered "forbidden" with the reason in `reason`. */
static void s_gateway_forbid(router_t *r, const char *type, char *reason, size_t size)
{
	const char *who = r->gateway_client && *r->gateway_client ? r->gateway_client : "?";

	r->acl_denied++;
	snprintf(reason, size, "client '%s' may not emit events of type '%s' (its emit list in "
			       "security.curve.clients)", who, type ? type : "");
	log_warn("gateway", "refused an event of type '%s' from client '%s': not in its emit "
			    "list", type ? type : "", who);
	S_PUBLISH(r, "acl.denied", who, NULL, acl_denied_extra(who, "gateway", "emit", type));
}

/* The sum of every ACL refusal: gateway events, stream subscriptions, instance emits. */
static uint64_t s_acl_denied(const router_t *r)
{
	uint64_t n = r->acl_denied + stream_acl_denied(r->stream);

	for (size_t i = 0; i < r->n_instances; i++)
		n += __atomic_load_n(&r->instances[i]->acl_denied, __ATOMIC_RELAXED);
	return n;
}

static json_t *s_gateway_one(router_t *r, kanal_msg_t **msg_p)
{
	char id[256], attr[64];
	int rc;

	snprintf(id, sizeof id, "%s", kanal_msg_id(*msg_p));
	if (!s_gateway_allows(r, kanal_msg_type(*msg_p))) {
		char reason[400];
		s_gateway_forbid(r, kanal_msg_type(*msg_p), reason, sizeof reason);
		return s_result(id, "forbidden", reason);
	}
	if (privacy_context_cpr(*msg_p, attr, sizeof attr)) {
		char reason[320];
		r->invalid++;
		snprintf(reason, sizeof reason,
			 "attribute '%s' holds a CPR number; context attributes may be logged by "
			 "anyone on the way: put the person in data, or use a pseudonym in subject",
			 attr);
		return s_result(id, "invalid", reason);
	}
	if (r->stopping)
		return s_result(id, "error", "kanald is shutting down");
	rc = s_accept(r, msg_p, false);
	if (rc == KANAL_EDUPLICATE)
		return s_result(id, "duplicate", NULL);
	if (rc == KANAL_EIO) {
		char why[300];
		snprintf(why, sizeof why, "not accepted: the journal cannot be written (%s)",
			 r->journal ? journal_error(r->journal) : "?");
		return s_result(id, "error", why);
	}
	if (rc == KANAL_EBUSY) {
		json_t *o = s_result(id, "busy", NULL);
		json_object_set_new(o, "retry_after_ms", json_integer(200));
		r->busy++;
		return o;
	}
	if (rc < 0)
		return s_result(id, "error", kanal_strerror(rc));
	return s_result(id, "accepted", NULL);
}

/* Best effort: the id of an element we could not accept, for the client's bookkeeping. */
static const char *s_peek_id(json_t *elem)
{
	json_t *id = json_is_object(elem) ? json_object_get(elem, "id") : NULL;
	return json_is_string(id) ? json_string_value(id) : NULL;
}

static json_t *s_gateway_body(router_t *r, const char *body, size_t len)
{
	json_t *results = json_array();
	kanal_error_t err;
	char reason[800];

	kanal_error_clear(&err);
	if (kanal_json_is_batch(body, len)) {
		kanal_batch_t *batch = NULL;
		size_t max = (size_t)r->conf->max_event_bytes * 64;
		if (kanal_batch_parse(body, len, max, &batch, &err) < 0) {
			json_t *arr = json_loadb(body, len, 0, NULL);
			kanal_error_format(&err, reason, sizeof reason);
			r->invalid++;
			if (json_is_array(arr) && json_array_size(arr) > 0) {
				size_t i;
				json_t *elem;
				json_array_foreach(arr, i, elem) {
					char prefix[32];
					snprintf(prefix, sizeof prefix, "event #%zu: ", i);
					json_array_append_new(results,
						s_result(s_peek_id(elem), "invalid",
							 strncmp(err.text, prefix, strlen(prefix)) == 0
								 ? err.text + strlen(prefix)
								 : "batch rejected"));
				}
			} else {
				json_array_append_new(results, s_result(NULL, "invalid", err.text));
			}
			json_decref(arr);
			return results;
		}
		/* Each element obeys the single-event rules too; a batch is all or nothing. */
		for (size_t i = 0; i < batch->count; i++) {
			char attr[64];
			if (!s_gateway_allows(r, kanal_msg_type(batch->msgs[i]))) {
				char why[400];
				s_gateway_forbid(r, kanal_msg_type(batch->msgs[i]), why, sizeof why);
				for (size_t k = 0; k < batch->count; k++)
					json_array_append_new(results,
						s_result(kanal_msg_id(batch->msgs[k]), "forbidden",
							 k == i ? why : "batch rejected"));
				kanal_batch_destroy(&batch);
				return results;
			}
			bool big = kanal_msg_size(batch->msgs[i]) > (size_t)r->conf->max_event_bytes;
			if (big || privacy_context_cpr(batch->msgs[i], attr, sizeof attr)) {
				char why[200];
				if (big)
					snprintf(why, sizeof why, "event #%zu is larger than "
						 "max_event_size (%lld bytes)", i,
						 (long long)r->conf->max_event_bytes);
				else
					snprintf(why, sizeof why, "event #%zu: attribute '%s' holds a "
						 "CPR number", i, attr);
				r->invalid++;
				for (size_t k = 0; k < batch->count; k++)
					json_array_append_new(results,
						s_result(kanal_msg_id(batch->msgs[k]), "invalid",
							 k == i ? why : "batch rejected"));
				kanal_batch_destroy(&batch);
				return results;
			}
		}
		for (size_t i = 0; i < batch->count; i++)
			json_array_append_new(results, s_gateway_one(r, &batch->msgs[i]));
		kanal_batch_destroy(&batch);
		return results;
	}
	{
		kanal_msg_t *msg = NULL;
		int rc = kanal_msg_parse(body, len, (size_t)r->conf->max_event_bytes, &msg, &err);
		if (rc < 0) {
			json_t *obj = json_loadb(body, len, 0, NULL);
			r->invalid++;
			json_array_append_new(results, s_result(s_peek_id(obj), "invalid", err.text));
			json_decref(obj);
			return results;
		}
		json_array_append_new(results, s_gateway_one(r, &msg));
		kanal_msg_destroy(&msg);
	}
	return results;
}

static void s_send_reply(router_t *r, zmq_msg_t *parts, int n, json_t *reply,
			 const char *failure);

static void s_on_gateway(router_t *r)
{
	for (;;) {
		zmq_msg_t parts[8];
		int n = 0, more = 1;
		json_t *reply;
		char *text = NULL;

		/* [identity][empty (REQ only)]…[body]: echo every part before the body. */
		while (more && n < 8) {
			zmq_msg_init(&parts[n]);
			if (zmq_msg_recv(&parts[n], r->gateway_sock, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
				zmq_msg_close(&parts[n]);
				if (n == 0)
					return;
				more = 0;
				break;
			}
			more = zmq_msg_more(&parts[n]);
			n++;
		}
		while (more) { /* more than 8 parts: not our protocol; drain it */
			zmq_msg_t junk;
			zmq_msg_init(&junk);
			zmq_msg_recv(&junk, r->gateway_sock, 0);
			more = zmq_msg_more(&junk);
			zmq_msg_close(&junk);
		}
		if (n < 2) {
			for (int i = 0; i < n; i++)
				zmq_msg_close(&parts[i]);
			continue;
		}
		/* A DEALER sends [body], a REQ [empty][body]; anything else is not our protocol
		 * and gets an error in place of guessing which frame is the event. */
		if (n > 3 || (n == 3 && zmq_msg_size(&parts[1]) != 0)) {
			json_t *bad = json_pack("{s:[{s:s, s:s}]}", "results", "status", "invalid",
						"reason", "expected one frame holding an event or a "
						"batch (after the empty delimiter of a REQ socket)");
			int keep = zmq_msg_size(&parts[1]) == 0 ? 2 : 1;
			for (int i = keep; i < n; i++)
				zmq_msg_close(&parts[i]);
			s_send_reply(r, parts, keep, bad, NULL);
			continue;
		}
		/* With CURVE on, the ZAP handler named the client (zap.c); the name lives as
		 * long as the message, so it is forgotten before the message is closed. */
		r->gateway_client = r->zap ? zmq_msg_gets(&parts[n - 1], "User-Id") : NULL;
		reply = json_pack("{s:o}", "results",
				  s_gateway_body(r, zmq_msg_data(&parts[n - 1]),
						 zmq_msg_size(&parts[n - 1])));
		r->gateway_client = NULL;
		zmq_msg_close(&parts[n - 1]);
		if (r->n_pending == r->cap_pending) {
			size_t cap = r->cap_pending ? r->cap_pending * 2 : 16;
			pending_reply_t *p = realloc(r->pending, cap * sizeof *p);
			if (!p) {
				/* No room to hold the reply: answer now rather than never. */
				(void)text;
				s_send_reply(r, parts, n - 1, reply, NULL);
				continue;
			}
			r->pending = p;
			r->cap_pending = cap;
		}
		pending_reply_t *pr = &r->pending[r->n_pending++];
		for (int i = 0; i < n - 1; i++) {
			zmq_msg_init(&pr->parts[i]);
			zmq_msg_move(&pr->parts[i], &parts[i]);
			zmq_msg_close(&parts[i]);
		}
		pr->n = n - 1;
		pr->reply = reply;
		/* Bound the turn: a flood of requests still commits and answers regularly. */
		if (r->n_pending >= 256)
			return;
	}
}

/* Sends a held reply. When the turn's commit failed (`failure` set), what it called
 * accepted was not stored: it is answered as an error, so the sender sends it again. */
static void s_send_reply(router_t *r, zmq_msg_t *parts, int n, json_t *reply,
			 const char *failure)
{
	char *text;

	if (failure) {
		size_t i;
		json_t *res;
		json_array_foreach(json_object_get(reply, "results"), i, res) {
			const char *st = json_string_value(json_object_get(res, "status"));
			if (st && !strcmp(st, "accepted")) {
				json_object_set_new(res, "status", json_string("error"));
				json_object_set_new(res, "reason", json_string(failure));
			}
		}
	}
	text = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	if (text)
		kanal_cpr_redact_inplace(text);
	/* Never block the router on a client: one that does not read its replies (or has
	 * gone) loses them, and only it. */
	for (int i = 0; i < n; i++) {
		if (zmq_msg_send(&parts[i], r->gateway_sock, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
			for (; i < n; i++)
				zmq_msg_close(&parts[i]);
			r->replies_dropped++;
			log_warn_limited("router", "dropped a gateway reply: the client does not "
						   "read (%s)", zmq_strerror(zmq_errno()));
			free(text);
			return;
		}
		zmq_msg_close(&parts[i]);
	}
	if (zmq_send(r->gateway_sock, text ? text : "{}", text ? strlen(text) : 2,
		     ZMQ_DONTWAIT) < 0)
		r->replies_dropped++;
	free(text);
}

static void s_flush_replies(router_t *r, const char *failure)
{
	for (size_t i = 0; i < r->n_pending; i++) {
		pending_reply_t *pr = &r->pending[i];
		if (r->gateway_sock) {
			s_send_reply(r, pr->parts, pr->n, pr->reply, failure);
		} else {
			for (int k = 0; k < pr->n; k++)
				zmq_msg_close(&pr->parts[k]);
			json_decref(pr->reply);
		}
	}
	r->n_pending = 0;
}

/* ---- admin and reload ------------------------------------------------------------------ */

static const char **s_instance_names(router_t *r)
{
	const char **names = calloc(r->n_instances + 1, sizeof *names);

	for (size_t i = 0; names && i < r->n_instances; i++)
		names[i] = r->instances[i]->name;
	return names;
}

/* Loads the routing files again and swaps the table if they are valid. Returns a JSON
 * object for the admin reply. */
static json_t *s_reload(router_t *r)
{
	const char **names = s_instance_names(r);
	routes_t *routes = NULL;
	diag_t d = { 0 };
	json_t *reply;

	if (!names)
		return json_pack("{s:b, s:[s]}", "ok", 0, "errors", "out of memory");
	if (routes_load((const char *const *)r->conf->route_paths, r->conf->n_route_paths,
			names, r->n_instances, &routes, &d) < 0) {
		json_t *errs = json_array();
		char *joined = diag_join(&d);
		for (size_t i = 0; i < d.count; i++) {
			char line[1024];
			kanal_error_format(&d.items[i], line, sizeof line);
			json_array_append_new(errs, json_string(line));
		}
		r->reload_failures++;
		log_error("router", "reload failed; keeping the current routes:\n%s",
			  joined ? joined : "");
		stream_publish(r->stream, "routes.reload_failed", "-", NULL,
			       json_pack("{s:O}", "errors", errs));
		reply = json_pack("{s:b, s:o}", "ok", 0, "errors", errs);
		free(joined);
	} else {
		table_t *t = calloc(1, sizeof *t);
		if (!t) {
			routes_destroy(&routes);
			reply = json_pack("{s:b, s:[s]}", "ok", 0, "errors", "out of memory");
		} else {
			t->routes = routes;
			t->refs = 1;
			s_bind_stats(r, routes);
			s_table_release(&r->table);
			r->table = t;
			r->reloads++;
			log_info("router", "routes reloaded: %zu routes from %zu files",
				 routes_count(routes), routes_file_count(routes));
			stream_publish(r->stream, "routes.reloaded", "-", NULL,
				       json_pack("{s:I}", "routes", (json_int_t)routes_count(routes)));
			reply = json_pack("{s:b, s:I}", "ok", 1, "routes",
					  (json_int_t)routes_count(routes));
		}
	}
	diag_free(&d);
	free(names);
	return reply;
}

/* "running", "paused" (an operator paused its deliveries) or "restarting" (an isolated
 * plugin host that is down). */
static const char *s_instance_state(router_t *r, instance_t *inst)
{
	dest_t *d = s_dest(r, inst->name);
	if (d && d->paused)
		return "paused";
	if (inst->iso && isolation_host_pid(inst->iso) <= 0)
		return "restarting";
	return "running";
}

/* Adds what operations tools read besides the basics: per-route counters, the delivery
 * latency histogram and the channel strategy's measure (docs/operations.md). */
static void s_status_ops(router_t *r, json_t *st)
{
	json_t *routes = json_array(), *buckets = json_array(), *chan = json_array();
	json_t *lat = json_array();
	uint64_t cum = 0;
	int64_t now_min = kanal__wall_ms() / 60000;

	for (size_t i = 0; i < routes_count(r->table->routes); i++) {
		const route_t *rt = routes_get(r->table->routes, i);
		const route_stat_t *c = rt->stat;
		if (!c)
			continue;
		json_array_append_new(routes,
			json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "name", rt->name,
				  "matched", (json_int_t)c->matched, "delivered",
				  (json_int_t)c->delivered, "retried", (json_int_t)c->retried,
				  "rejected", (json_int_t)c->rejected, "dead", (json_int_t)c->dead,
				  "fallback", (json_int_t)c->fallback));
	}
	for (size_t i = 0; i < N_LATENCY; i++) {
		cum += r->latency[i];
		json_array_append_new(lat, json_pack("[f, I]", s_latency_le_ms[i] / 1000.0,
						     (json_int_t)cum));
	}
	/* The last hour, oldest first, minutes without letters included as zeros. */
	for (int64_t m = now_min - CHANNEL_MINUTES + 1; m <= now_min; m++) {
		size_t slot = (size_t)(m % CHANNEL_MINUTES);
		bool live = r->channel_ring[slot].minute == m;
		time_t t = (time_t)(m * 60);
		struct tm tm;
		char hhmm[8];
		localtime_r(&t, &tm);
		strftime(hhmm, sizeof hhmm, "%H:%M", &tm);
		json_array_append_new(chan, json_pack("{s:s, s:i, s:i}", "t", hhmm, "digital",
						     live ? (int)r->channel_ring[slot].digital : 0,
						     "physical",
						     live ? (int)r->channel_ring[slot].physical : 0));
	}
	json_decref(buckets);
	json_object_set_new(st, "started", json_true());
	json_object_set_new(st, "route_counters", routes);
	json_object_set_new(st, "latency",
			    json_pack("{s:o, s:f, s:I}", "buckets", lat, "sum",
				      r->latency_sum_ms / 1000.0, "count",
				      (json_int_t)r->latency_count));
	json_object_set_new(st, "channels",
			    json_pack("{s:{s:I, s:I}, s:{s:I, s:I}, s:o}", "letters", "digital",
				      (json_int_t)r->letters_digital, "physical",
				      (json_int_t)r->letters_physical, "inquiries", "digital",
				      (json_int_t)r->inquiries_digital, "other",
				      (json_int_t)r->inquiries_other, "buckets", chan));
}

/* The routing table as operators read it (GET /api/v1/routes). */
static json_t *s_routes_json(router_t *r)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < routes_count(r->table->routes); i++) {
		const route_t *rt = routes_get(r->table->routes, i);
		json_t *to = json_array(), *fb = json_array();
		for (size_t k = 0; k < rt->n_to; k++)
			json_array_append_new(to, json_string(rt->to[k]));
		for (size_t k = 0; k < rt->n_fallback; k++)
			json_array_append_new(fb, json_string(rt->fallback[k]));
		json_array_append_new(arr,
			json_pack("{s:s, s:s?, s:s?, s:s?, s:o, s:o, s:s, s:i, s:i}", "name", rt->name,
				  "type", rt->type_pattern, "source", rt->source_glob, "where",
				  rt->where_text, "to", to, "fallback", fb, "file", rt->file, "line",
				  rt->line, "enrich", (int)rt->n_enrich));
	}
	return json_pack("{s:b, s:o, s:s}", "ok", 1, "routes", arr, "default",
			 routes_default(r->table->routes));
}

/* instance.pause / instance.resume / instance.restart {name}. */
static json_t *s_instance_cmd(router_t *r, const char *cmd, json_t *req)
{
	const char *name = json_string_value(json_object_get(req, "name"));
	dest_t *d = name ? s_dest(r, name) : NULL;

	if (!d || !d->inst)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "no such instance");
	if (!strcmp(cmd, "instance.pause")) {
		d->paused = true;
		log_info("router", "instance '%s' paused by an operator: deliveries wait", name);
		stream_publish(r->stream, "instance.paused", "-", NULL,
			       json_pack("{s:s}", "instance", name));
	} else if (!strcmp(cmd, "instance.resume")) {
		d->paused = false;
		log_info("router", "instance '%s' resumed by an operator", name);
		stream_publish(r->stream, "instance.resumed", "-", NULL,
			       json_pack("{s:s}", "instance", name));
		s_dispatch(r, d);
	} else {
		pid_t pid = d->inst->iso ? isolation_host_pid(d->inst->iso) : 0;
		if (!d->inst->iso)
			return json_pack("{s:b, s:s}", "ok", 0, "error",
					 "restart needs 'isolation: process' (a plugin on kanald's own "
					 "thread cannot be restarted without restarting kanald)");
		if (pid <= 0)
			return json_pack("{s:b, s:s}", "ok", 0, "error",
					 "its plugin host is already restarting");
		/* The proxy sees the host end and starts a new one, as after a crash; the
		 * delivery it was running (if any) is retried. */
		log_info("router", "instance '%s': restarting its plugin host by request", name);
		kill(pid, SIGKILL);
	}
	return json_pack("{s:b, s:s, s:s}", "ok", 1, "instance", name, "state",
			 s_instance_state(r, d->inst));
}

static json_t *s_status(router_t *r)
{
	json_t *insts = json_array(), *dests = json_array();

	for (size_t i = 0; i < r->n_instances; i++) {
		instance_metric_t m[32];
		size_t n = instance_metrics(r->instances[i], m, 32);
		json_t *metrics = json_object();
		for (size_t k = 0; k < n; k++)
			json_object_set_new(metrics, m[k].name, json_real(m[k].value));
		json_array_append_new(insts,
			json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", r->instances[i]->name,
				  "state", s_instance_state(r, r->instances[i]),
				  "plugin", r->instances[i]->plugin->desc->name, "version",
				  r->instances[i]->plugin->desc->version
					  ? r->instances[i]->plugin->desc->version : "",
				  "metrics", metrics));
	}
	for (size_t i = 0; i < r->n_dests; i++) {
		const dest_t *d = &r->dests[i];
		json_array_append_new(dests,
			json_pack("{s:s, s:I, s:I, s:i, s:I, s:I, s:I, s:I}", "name", d->name,
				  "queued", (json_int_t)d->queued, "queued_bytes",
				  (json_int_t)d->queued_bytes, "in_flight", d->n_inflight,
				  "delivered", (json_int_t)d->delivered, "rejected",
				  (json_int_t)d->rejected, "retried", (json_int_t)d->retried, "dead",
				  (json_int_t)d->dead));
	}
	json_t *journal = r->journal
		? json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:I}", "mode", "durable", "path",
			    journal_path(r->journal), "sync",
			    r->conf->journal_sync_power ? "power" : "process", "writable",
			    !r->journal_failed, "open_events",
			    (json_int_t)journal_open_count(r->journal), "parked_events",
			    (json_int_t)r->n_parked, "dead_letters",
			    (json_int_t)journal_dlq_count(r->journal))
		: json_pack("{s:s, s:s}", "mode", "memory", "dead_letters",
			    deadletter_path(r->deadletter));
	{
		json_t *st = json_pack("{s:b, s:i, s:I, s:o, s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}}",
			 "ok", 1, "pid", (int)getpid(), "routes",
			 (json_int_t)routes_count(r->table->routes), "journal", journal,
			 "instances", insts, "destinations", dests, "counters", "accepted",
			 (json_int_t)r->accepted, "unmatched", (json_int_t)r->unmatched,
			 "invalid", (json_int_t)r->invalid, "busy", (json_int_t)r->busy,
			 "reloads", (json_int_t)r->reloads, "reload_failures",
			 (json_int_t)r->reload_failures, "duplicates", (json_int_t)r->duplicates);
		if (st) { /* security (docs/security.md): ACL refusals and refused handshakes */
			json_t *c = json_object_get(st, "counters");
			json_object_set_new(c, "acl_denied", json_integer((json_int_t)s_acl_denied(r)));
			json_object_set_new(c, "connections_denied",
					    json_integer((json_int_t)zap_denied(r->zap)));
		}
		if (st)
			s_status_ops(r, st);
		return st;
	}
}

/* Parses an RFC 3339 "since" into unix ms (0 when absent); -1 when malformed. */
static int64_t s_since(json_t *req)
{
	const char *text = json_string_value(json_object_get(req, "since"));
	struct tm tm;
	char *end;

	if (!text)
		return 0;
	memset(&tm, 0, sizeof tm);
	end = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end)
		return -1;
	return (int64_t)timegm(&tm) * 1000;
}

static json_t *s_dlq(router_t *r, const char *cmd, json_t *req, bool *clear)
{
	json_t *filter = json_object_get(req, "match");

	if (!r->journal)
		return json_pack("{s:b, s:s+}", "ok", 0, "error",
				 "the journal is off (memory mode): dead letters are in ",
				 deadletter_path(r->deadletter));
	if (!strcmp(cmd, "dlq.list")) {
		int64_t since = s_since(req);
		if (since < 0)
			return json_pack("{s:b, s:s}", "ok", 0, "error",
					 "'since' must be an RFC 3339 time");
		return json_pack("{s:b, s:o}", "ok", 1, "items",
				 journal_dlq_list(r->journal,
						  json_string_value(json_object_get(req, "route")),
						  json_string_value(json_object_get(req, "type")), since,
						  (int)json_integer_value(json_object_get(req, "limit"))));
	}
	if (!strcmp(cmd, "dlq.show")) {
		json_t *item = journal_dlq_show(r->journal,
						json_integer_value(json_object_get(req, "id")));
		*clear = json_is_true(json_object_get(req, "clear"));
		if (!item)
			return json_pack("{s:b, s:s}", "ok", 0, "error", "no such dead letter");
		return json_pack("{s:b, s:o}", "ok", 1, "item", item);
	}
	if (!strcmp(cmd, "dlq.replay") || !strcmp(cmd, "dlq.drop")) {
		bool replay = !strcmp(cmd, "dlq.replay");
		json_t *ids = json_object_get(req, "ids"), *done = json_array(),
		       *missing = json_array(), *id;
		size_t i;

		if (replay && json_is_object(filter)) {
			int64_t since = s_since(filter);
			ids = journal_dlq_match(r->journal,
						json_string_value(json_object_get(filter, "route")),
						json_string_value(json_object_get(filter, "type")),
						since > 0 ? since : 0);
		} else {
			json_incref(ids);
		}
		json_array_foreach(ids, i, id) {
			int64_t n = json_integer_value(id);
			int rc;
			if (replay) {
				kanal_msg_t *msg = NULL;
				char *route = NULL, *dest = NULL;
				uint64_t seq = 0;
				rc = journal_dlq_take(r->journal, n, &msg, &seq, &route, &dest);
				if (rc == 0) {
					/* Routed like a resumed event with a target row. */
					journal_row_t row = { route ? route : "", dest, 0, -1, 0, NULL };
					s_recover_event(r, seq, msg, false, &row, 1);
					stream_publish(r->stream, "replayed", "-", NULL,
						       json_pack("{s:I, s:s}", "letter", (json_int_t)n,
								 "destination", dest));
				}
				free(route);
				free(dest);
			} else {
				rc = journal_dlq_drop(r->journal, n);
			}
			json_array_append_new(rc == 0 ? done : missing, json_integer(n));
		}
		json_decref(ids);
		if (replay)
			return json_pack("{s:b, s:o, s:o}", "ok", 1, "replayed", done, "missing",
					 missing);
		json_decref(missing);
		{
			json_int_t dropped = (json_int_t)json_array_size(done);
			json_decref(done);
			return json_pack("{s:b, s:I}", "ok", 1, "dropped", dropped);
		}
	}
	return NULL;
}

static void s_on_admin(router_t *r)
{
	char buf[4096];
	int n;

	while ((n = zmq_recv(r->admin_sock, buf, sizeof buf - 1, ZMQ_DONTWAIT)) >= 0) {
		json_t *req, *reply;
		const char *cmd = NULL;
		char *text;

		buf[n < (int)sizeof buf - 1 ? n : (int)sizeof buf - 1] = '\0';
		req = json_loads(buf, 0, NULL);
		if (json_is_object(req) && json_is_string(json_object_get(req, "cmd")))
			cmd = json_string_value(json_object_get(req, "cmd"));
		bool clear = false;
		if (cmd && !strcmp(cmd, "reload"))
			reply = s_reload(r);
		else if (cmd && !strcmp(cmd, "status"))
			reply = s_status(r);
		else if (cmd && !strcmp(cmd, "routes"))
			reply = s_routes_json(r);
		else if (cmd && !strcmp(cmd, "instances")) {
			json_t *st = s_status(r);
			reply = json_pack("{s:b, s:O}", "ok", 1, "instances",
					  json_object_get(st, "instances"));
			json_decref(st);
		} else if (cmd && !strncmp(cmd, "instance.", 9) &&
			   (!strcmp(cmd + 9, "pause") || !strcmp(cmd + 9, "resume") ||
			    !strcmp(cmd + 9, "restart")))
			reply = s_instance_cmd(r, cmd, req);
		else if (cmd && !strncmp(cmd, "dlq.", 4) && (reply = s_dlq(r, cmd, req, &clear)))
			;
		else
			reply = json_pack("{s:b, s:s}", "ok", 0, "error",
					  "unknown command (expected reload, status, routes, instances, "
					  "instance.pause|resume|restart, dlq.list, dlq.show, "
					  "dlq.replay or dlq.drop)");
		json_decref(req);
		/* The dlq writes (replay, drop) take effect with this turn's commit. */
		s_end_turn(r);
		text = json_dumps(reply, JSON_COMPACT);
		json_decref(reply);
		/* Dead letters hold events: CPR numbers are masked unless asked for in clear. */
		if (text && !clear)
			kanal_cpr_redact_inplace(text);
		zmq_send(r->admin_sock, text ? text : "{}", text ? strlen(text) : 2, 0);
		free(text);
	}
}

/* ---- shutdown ---------------------------------------------------------------------------- */

static bool s_idle(const router_t *r)
{
	if (r->retries || r->enriching || r->n_held)
		return false;
	for (size_t i = 0; i < r->n_dests; i++)
		if (r->dests[i].head || r->dests[i].inflight)
			return false;
	return true;
}

static bool s_instance_running(instance_t *inst)
{
	int st;

	pthread_mutex_lock(&inst->mu);
	st = inst->start_state;
	pthread_mutex_unlock(&inst->mu);
	return st == 1;
}

/* Spills one undelivered delivery at shutdown: kept in the dead-letter file, and its flow
 * is settled so that rejections it was holding are kept too. */
static void s_spill_one(router_t *r, delivery_t *dl, const char *reason)
{
	flow_t *f = dl->kind == DL_PRIMARY ? dl->flow : NULL;

	r->undelivered_at_stop++;
	if (dl->kind == DL_ENRICH || dl->kind == DL_REQUEST) {
		s_delivery_free(r, &dl);
		return;
	}
	if (r->journal && dl->ev->jev) {
		/* The journal keeps it: the event stays open and resumes on the next start. */
		dl->spilled = true;
		s_delivery_free(r, &dl);
		return;
	}
	if (f)
		f->refs++;
	s_dead(r, &dl, reason);
	if (f && --f->primaries_open <= 0) {
		delivery_t *held = f->held;
		f->held = NULL;
		while (held) {
			delivery_t *next = held->next;
			s_dead(r, &held, "rejected");
			held = next;
		}
	}
	s_flow_release(r, &f);
}

/* Keeps what is still undelivered at the deadline in the dead-letter file. */
static void s_spill(router_t *r)
{
	r->spilling = true;
	while (r->retries) {
		delivery_t *dl = r->retries;
		r->retries = dl->next;
		s_spill_one(r, dl, "kanald stopped before delivery");
	}
	for (size_t i = 0; i < r->n_dests; i++) {
		dest_t *d = &r->dests[i];
		while (d->head) {
			delivery_t *dl = d->head;
			d->head = dl->next;
			d->queued--;
			d->queued_bytes -= dl->bytes;
			s_spill_one(r, dl, "kanald stopped before delivery");
		}
		d->tail = NULL;
		/* In flight at the deadline: the plugin may still finish it, so it is both kept
		 * here and possibly delivered — at least once. */
		d->inflight_tail = NULL;
		while (d->inflight) {
			delivery_t *dl = d->inflight;
			d->inflight = dl->next;
			d->n_inflight--;
			r->undelivered_at_stop++;
			/* The instance thread may still read this event: keep it alive until the
			 * thread has ended. Without a journal it is also kept as a dead letter. */
			if (!(r->journal && dl->ev->jev) && dl->kind != DL_ENRICH &&
			    dl->kind != DL_REQUEST &&
			    deadletter_write(r->deadletter, dl->ev->msg, s_route_name(dl),
					     dl->dest->name,
					     "kanald stopped while the delivery was in flight",
					     dl->attempt, dl->errors, dl->n_errors) < 0)
				log_error("router", "cannot keep event %s in the dead-letter file",
					  kanal_msg_id(dl->ev->msg));
			dl->spilled = true;
			dl->next = r->zombies;
			r->zombies = dl;
		}
	}
	while (r->enriching) {
		flow_t *f = r->enriching;
		r->enriching = f->enrich_next;
		f->enrich_dl = NULL;
		r->undelivered_at_stop++;
		if (r->journal && f->ev->jev) {
			s_flow_release(r, &f); /* stays open in the journal */
			continue;
		}
		s_enrich_failed(r, f, "kanald stopped", false);
	}
	for (size_t i = 0; i < r->n_instances; i++)
	while (r->held[i].head) {
		held_emit_t *h = r->held[i].head;
		shared_t *ev;
		r->held[i].head = h->next;
		r->n_held--;
		if (r->journal && !r->journal_failed) {
			/* Journalled unrouted: it is routed on the next start. */
			uint64_t seq;
			if (journal_add_event(r->journal, h->msg, true, &seq) < 0)
				log_error("router", "cannot keep held event %s in the journal: %s",
					  kanal_msg_id(h->msg), journal_error(r->journal));
			kanal_msg_destroy(&h->msg);
			r->acks[h->origin]++;
			free(h);
			continue;
		}
		ev = s_shared_new(&h->msg);
		if (ev) {
			delivery_t *dl = s_delivery_new(r, DL_DEFAULT, ev, NULL,
							s_dest(r, ROUTES_DEADLETTER));
			s_shared_release(&ev);
			if (dl)
				s_dead(r, &dl, "kanald stopped before routing");
		}
		r->acks[h->origin]++;
		free(h);
	}
	for (size_t i = 0; i < r->n_instances; i++)
		r->held[i].tail = NULL;
}

/* Polls the broker's sockets once, up to wait_ms. */
static void s_poll_once(router_t *r, int64_t wait_ms, bool with_gateway)
{
	zmq_pollitem_t items[6];
	int n = 0, i_deliver, i_emit, i_gw = -1, i_admin = -1, i_stream = -1, i_ctl = -1;
	int64_t next = s_next_timer(r);

	/* Held emits wait for a destination that is behind; should it stall instead, they are
	 * to be parked, which only a turn notices. */
	if (r->n_held && r->journal && (wait_ms < 0 || wait_ms > DEST_STALL_MS))
		wait_ms = DEST_STALL_MS;
	/* While the journal is broken, wake once a second to probe it. */
	if (r->journal_failed && (wait_ms < 0 || wait_ms > 1000))
		wait_ms = 1000;
	if (next >= 0) {
		int64_t until = next - kanal_now_ms();
		if (until < 0)
			until = 0;
		if (wait_ms < 0 || until < wait_ms)
			wait_ms = until;
	}
	i_deliver = n;
	items[n++] = (zmq_pollitem_t){ r->deliver_sock, 0, ZMQ_POLLIN, 0 };
	i_emit = n;
	items[n++] = (zmq_pollitem_t){ r->emit_sock, 0, ZMQ_POLLIN, 0 };
	if (with_gateway && r->gateway_sock) {
		i_gw = n;
		items[n++] = (zmq_pollitem_t){ r->gateway_sock, 0, ZMQ_POLLIN, 0 };
	}
	if (r->admin_sock) {
		i_admin = n;
		items[n++] = (zmq_pollitem_t){ r->admin_sock, 0, ZMQ_POLLIN, 0 };
	}
	if (stream_socket(r->stream)) {
		i_stream = n;
		items[n++] = (zmq_pollitem_t){ stream_socket(r->stream), 0, ZMQ_POLLIN, 0 };
	}
	if (!r->stopping) {
		i_ctl = n;
		items[n++] = (zmq_pollitem_t){ r->ctl_router, 0, ZMQ_POLLIN, 0 };
	}
	if (zmq_poll(items, n, (long)wait_ms) < 0 && zmq_errno() != EINTR)
		return;
	r->now_ms = kanal_now_ms();
	if (items[i_deliver].revents & ZMQ_POLLIN)
		s_on_deliver_sock(r);
	if (items[i_emit].revents & ZMQ_POLLIN)
		s_on_emit_sock(r);
	if (i_stream >= 0 && (items[i_stream].revents & ZMQ_POLLIN))
		stream_on_readable(r->stream);
	if (i_gw >= 0 && (items[i_gw].revents & ZMQ_POLLIN))
		s_on_gateway(r);
	if (i_admin >= 0 && (items[i_admin].revents & ZMQ_POLLIN))
		s_on_admin(r);
	s_run_timers(r);
	if (r->n_held)
		s_retry_held(r);
	s_end_turn(r);
	if (i_ctl >= 0 && (items[i_ctl].revents & ZMQ_POLLIN)) {
		char cmd[16];
		int len = zmq_recv(r->ctl_router, cmd, sizeof cmd - 1, ZMQ_DONTWAIT);
		if (len > 0) {
			cmd[len] = '\0';
			if (!strcmp(cmd, "reload")) {
				json_t *res = s_reload(r);
				json_decref(res);
			} else if (!strcmp(cmd, "stop")) {
				r->stopping = true;
			}
		}
	}
}

/* ---- paging parked events back in ------------------------------------------------------ */

typedef struct page {
	router_t *r;
	bool *blocked;     /* per destination: full, or an earlier parked event is stuck on it */
	uint64_t last_seq;
	int taken;
	int scanned;
} page_t;

static int s_page_one(void *arg, uint64_t seq, kanal_msg_t *msg)
{
	page_t *pg = arg;
	router_t *r = pg->r;
	const route_t *stack[64];
	size_t n = routes_match(r->table->routes, msg, stack, 64), i, k;
	bool blocked = false;
	shared_t *ev;

	pg->last_seq = seq;
	pg->scanned++;
	if (n > 64)
		n = 64;
	for (i = 0; i < (n ? n : 1) && !blocked; i++)
		for (k = 0; k < (n ? stack[i]->n_to : 1); k++) {
			dest_t *d = s_dest(r, n ? stack[i]->to[k] : routes_default(r->table->routes));
			if (d && (pg->blocked[d - r->dests] || s_dest_full(r, d, kanal_msg_size(msg))))
				blocked = true;
		}
	if (blocked) {
		/* Keep each destination's order: nothing later for these may pass it. */
		for (i = 0; i < (n ? n : 1); i++)
			for (k = 0; k < (n ? stack[i]->n_to : 1); k++) {
				dest_t *d = s_dest(r, n ? stack[i]->to[k]
							: routes_default(r->table->routes));
				if (d)
					pg->blocked[d - r->dests] = true;
			}
		kanal_msg_destroy(&msg);
		return pg->scanned >= 4096;
	}
	if (journal_unpark(r->journal, seq) < 0) {
		kanal_msg_destroy(&msg);
		return 1;
	}
	r->n_parked--;
	s_count_parked(r, stack, n, -1);
	ev = s_shared_new(&msg);
	if (!ev || !(ev->jev = calloc(1, sizeof *ev->jev))) {
		s_shared_release(&ev);
		return 1;
	}
	ev->jev->seq = seq;
	ev->jev->refs = 1;
	ev->jev->open = 1;
	if (n == 0) {
		dest_t *d = s_dest(r, routes_default(r->table->routes));
		delivery_t *dl = d ? s_delivery_new(r, DL_DEFAULT, ev, NULL, d) : NULL;
		if (dl)
			s_enqueue(r, dl);
	} else {
		s_start_flows(r, ev, stack, n, NULL, NULL, 0);
	}
	s_jev_close(r, ev->jev);
	s_shared_release(&ev);
	return ++pg->taken >= 512 || pg->scanned >= 4096;
}

/* Takes parked events back into memory, oldest first, while their destinations have room
 * to spare (below half their queue), so that memory holds a window and the disk the rest. */
static void s_page_in(router_t *r)
{
	page_t pg = { r, NULL, 0, 0, 0 };
	bool room = false;

	if (!r->n_parked || !r->journal || r->journal_failed || r->spilling)
		return;
	{
		bool claimed = false;
		for (size_t i = 0; i < r->n_dests; i++) {
			const dest_t *d = &r->dests[i];
			if (!d->parked)
				continue;
			claimed = true;
			if (!d->inst || d->queued < (size_t)r->conf->queue_max_events / 2 + 1)
				room = true;
		}
		/* Counts can drift across a reload; when no destination claims them, look. */
		if (!claimed)
			room = true;
	}
	if (!room)
		return;
	pg.blocked = calloc(r->n_dests, sizeof *pg.blocked);
	if (!pg.blocked)
		return;
	while (pg.taken < 512 && pg.scanned < 4096) {
		int read = journal_load_parked(r->journal, pg.last_seq, 256, s_page_one, &pg);
		if (read < 256)
			break;
	}
	free(pg.blocked);
	/* A first read that finds nothing means nothing is parked any more (the count is
	 * kept in memory; it only drifts across reloads). */
	if (pg.scanned == 0) {
		/* Everything is in memory again; forget any drift in the counts. */
		r->n_parked = 0;
		for (size_t i = 0; i < r->n_dests; i++)
			r->dests[i].parked = 0;
	}
}

/* Ends a turn of the loop: commit what the turn wrote (group commit), then let it take
 * effect — deliveries go to the instances, emits are acknowledged, the gateway answers. */
/* Without a journal nothing waits for a commit, so work need not wait for the end of the
 * turn: after each batch of outcomes the destination gets its next deliveries, and after
 * each batch of emits the destinations get theirs and the sources their acks. Under a
 * flood a turn reads several frames; a sink that had to wait for all of them to be read
 * sat idle, and with it the whole pipeline (issue 5). With the journal, deliveries and
 * acks follow the turn's commit (s_end_turn). `only`: just that destination. */
static void s_mid_turn(router_t *r, dest_t *only)
{
	if (r->journal)
		return;
	if (only) {
		if (only->head)
			s_dispatch(r, only);
		return;
	}
	for (size_t i = 0; i < r->n_dests; i++)
		if (r->dests[i].head)
			s_dispatch(r, &r->dests[i]);
	s_flush_acks(r);
}

static void s_end_turn(router_t *r)
{
	const char *failure = NULL;
	char why[300];

	if (r->journal) {
		int64_t now = kanal__wall_ms();
		if (now >= r->next_prune_ms && !r->journal_failed) {
			int64_t keep = r->conf->journal_retention_ms > r->conf->dedupe_window_ms
					       ? r->conf->journal_retention_ms
					       : r->conf->dedupe_window_ms;
			journal_prune(r->journal, now - keep);
			r->next_prune_ms = now + 60000;
		}
		if (r->journal_failed && now >= r->next_prune_ms - 59000) {
			/* Probe once a second whether the disk takes writes again. */
			if (journal_begin(r->journal) == 0 && journal_commit(r->journal) == 0) {
				r->journal_failed = false;
				log_info("router", "the journal %s is writable again; accepting events",
					 journal_path(r->journal));
				stream_publish(r->stream, "journal.recovered", "-", NULL, NULL);
			}
			r->next_prune_ms = now + 60000;
		}
		s_page_in(r);
		if (journal_dirty(r->journal) && journal_commit(r->journal) < 0) {
			snprintf(why, sizeof why, "not accepted: the journal cannot be written (%s)",
				 journal_error(r->journal));
			failure = why;
			s_journal_broken(r);
		}
	}
	for (size_t i = 0; i < r->n_dests; i++)
		if (r->dests[i].head)
			s_dispatch(r, &r->dests[i]);
	s_flush_acks(r);
	s_flush_replies(r, failure);
}

static void s_drain_outcomes(router_t *r)
{
	char id[128];
	union {
		uint8_t cmd;
		bus_results_t res;
		bus_outcome_t one;
	} f;
	int n;

	while ((n = s_recv_routed(r->deliver_sock, id, sizeof id, &f, sizeof f)) >= 0) {
		if (n >= (int)bus_results_len(0) && f.cmd == BUS_RESULTS &&
		    bus_results_len(f.res.count) <= (size_t)n) {
			for (uint32_t i = 0; i < f.res.count; i++) {
				kanal_msg_destroy(&f.res.items[i].reply);
				free(f.res.items[i].error);
			}
		} else if (n >= (int)offsetof(bus_outcome_t, error) && f.cmd == BUS_OUTCOME) {
			kanal_msg_destroy(&f.one.reply);
		}
	}
}

static void s_shutdown(router_t *r)
{
	int64_t deadline = kanal_now_ms() + r->conf->shutdown_deadline_ms;
	int running = 0;
	uint8_t close_cmd = BUS_CLOSE_EMITS;

	log_info("router", "stopping: sources first, then in-flight deliveries (deadline %lld ms)",
		 (long long)r->conf->shutdown_deadline_ms);
	/* 1. Sources stop: the gateway closes and every instance stops emitting. */
	if (r->gateway_sock) {
		zmq_close(r->gateway_sock);
		r->gateway_sock = NULL;
	}
	r->closed_count = 0;
	for (size_t i = 0; i < r->n_instances; i++) {
		if (!s_instance_running(r->instances[i]))
			continue;
		running++;
		zmq_send(r->deliver_sock, r->instances[i]->name, strlen(r->instances[i]->name),
			 ZMQ_SNDMORE);
		zmq_send(r->deliver_sock, &close_cmd, 1, 0);
	}
	while (r->closed_count < running && kanal_now_ms() < deadline)
		s_poll_once(r, 20, false);
	/* 2. In-flight work finishes, until the deadline. */
	while (!s_idle(r) && kanal_now_ms() < deadline)
		s_poll_once(r, 20, false);
	if (!s_idle(r))
		log_warn("router", "shutdown deadline reached with work undelivered; it is kept in %s",
			 r->journal ? journal_path(r->journal) : deadletter_path(r->deadletter));
	/* Past the deadline, instance threads stop running the plugin on what is queued. */
	for (size_t i = 0; i < r->n_instances; i++)
		__atomic_store_n(&r->instances[i]->abandon, 1, __ATOMIC_RELEASE);
	s_spill(r);
	s_end_turn(r);
	/* 3. Plugins stop, in reverse order of their start. */
	for (size_t i = r->n_instances; i-- > 0;) {
		bus_stop_t st = { BUS_STOP, deadline > kanal_now_ms() ? deadline
								      : kanal_now_ms() + 1000 };
		instance_t *inst = r->instances[i];
		if (!s_instance_running(inst))
			continue;
		zmq_send(r->deliver_sock, inst->name, strlen(inst->name), ZMQ_SNDMORE);
		zmq_send(r->deliver_sock, &st, sizeof st, 0);
		/* A plugin stuck in a callback must not hold kanald past its deadline. */
		if (instance_join(inst, st.deadline_ms + 2000) < 0) {
			stream_publish(r->stream, "plugin.stuck", inst->name, NULL,
				       json_pack("{s:s}", "instance", inst->name));
			continue;
		}
		stream_publish(r->stream, "plugin.stopped", inst->name, NULL,
			       json_pack("{s:s}", "instance", inst->name));
		log_info(inst->name, "stopped");
	}
	/* Outcomes that arrived after the deadline: their replies are the router's to free. */
	s_drain_outcomes(r);
	while (r->zombies) {
		delivery_t *dl = r->zombies;
		r->zombies = dl->next;
		if (dl->dest->inst && dl->dest->inst->stuck)
			continue; /* its thread may still read it; the process is exiting */
		s_delivery_free(r, &dl);
	}
}

/* ---- recovery ------------------------------------------------------------------------------ */

/* Resumes one open event from the journal: routed again against the current table, its
 * finished deliveries skipped, retries waiting for their recorded time. */
static void s_recover_event(void *arg, uint64_t seq, kanal_msg_t *msg, bool parked,
			    const journal_row_t *rows, size_t n_rows)
{
	router_t *r = arg;
	const route_t *stack[64];
	shared_t *ev;
	size_t n;

	if (parked) {
		/* Still waiting on disk: count it where it is bound, page it in later. */
		n = routes_match(r->table->routes, msg, stack, 64);
		s_count_parked(r, stack, n < 64 ? n : 64, +1);
		r->n_parked++;
		kanal_msg_destroy(&msg);
		return;
	}
	ev = s_shared_new(&msg);
	if (!ev || !(ev->jev = calloc(1, sizeof *ev->jev))) {
		log_error("router", "out of memory resuming journal event #%llu",
			  (unsigned long long)seq);
		s_shared_release(&ev);
		return;
	}
	ev->jev->seq = seq;
	ev->jev->refs = 1;
	ev->jev->open = 1;
	const route_t *again = NULL;

	if (n_rows > 0 && rows[0].attempts < 0 && !strcmp(rows[0].destination, ROUTES_DEADLETTER) &&
	    *rows[0].route) {
		/* A replayed dead letter of a route whose enrich step failed: the route runs
		 * again, enrich steps and every destination. */
		for (size_t i = 0; i < routes_count(r->table->routes) && !again; i++)
			if (!strcmp(routes_get(r->table->routes, i)->name, rows[0].route) &&
			    routes_get(r->table->routes, i)->n_enrich > 0)
				again = routes_get(r->table->routes, i);
	}
	if (again) {
		s_start_flows(r, ev, &again, 1, NULL, NULL, 0);
	} else if (n_rows > 0 && rows[0].attempts < 0) {
		/* A replayed dead letter: for its one destination only. */
		dest_t *d = s_dest(r, rows[0].destination);
		const journal_row_t *row = s_row(rows, n_rows, *rows[0].route ? rows[0].route : NULL,
						 rows[0].destination);
		if (!d)
			d = s_dest(r, ROUTES_DEADLETTER);
		if (!row || (row->state != JOURNAL_DELIVERED && row->state != JOURNAL_DEAD)) {
			delivery_t *dl = s_delivery_new(r, DL_DEFAULT, ev, NULL, d);
			if (dl) {
				if (*rows[0].route)
					dl->replay_route = strdup(rows[0].route);
				if (!s_resume(r, dl, row))
					s_enqueue(r, dl);
			}
		}
	} else if ((n = routes_match(r->table->routes, ev->msg, stack, 64)) == 0) {
		dest_t *d = s_dest(r, routes_default(r->table->routes));
		const journal_row_t *row = d ? s_row(rows, n_rows, NULL, d->name) : NULL;
		if (d && (!row || (row->state != JOURNAL_DELIVERED && row->state != JOURNAL_DEAD))) {
			delivery_t *dl = s_delivery_new(r, DL_DEFAULT, ev, NULL, d);
			if (dl && !s_resume(r, dl, row))
				s_enqueue(r, dl);
		}
	} else {
		s_start_flows(r, ev, stack, n < 64 ? n : 64, NULL, rows, n_rows);
	}
	s_jev_close(r, ev->jev);
	s_shared_release(&ev);
}

static void s_recover(router_t *r)
{
	int n;

	if (!r->journal)
		return;
	n = journal_load_open(r->journal, s_recover_event, r);
	if (n > 0)
		log_info("router", "resumed %d open event%s from the journal %s", n, n == 1 ? "" : "s",
			 journal_path(r->journal));
	s_end_turn(r);
}

static void *s_router_main(void *arg)
{
	router_t *r = arg;

	log_info("router", "routing %zu routes; default destination '%s'",
		 routes_count(r->table->routes), routes_default(r->table->routes));
	for (size_t i = 0; i < r->n_instances; i++)
		stream_publish(r->stream, "plugin.started", r->instances[i]->name, NULL,
			       json_pack("{s:s}", "instance", r->instances[i]->name));
	r->now_ms = kanal_now_ms();
	s_recover(r);
	while (!r->stopping)
		s_poll_once(r, -1, true);
	s_shutdown(r);
	zmq_send(r->ctl_router, "stopped", 7, 0);
	return NULL;
}

/* ---- construction ------------------------------------------------------------------------- */

static void *s_bind(router_t *r, int type, const char *endpoint, char *actual, size_t actual_size,
		    char *err, size_t err_size)
{
	void *s = zmq_socket(r->zctx, type);
	int zero = 0;
	size_t len = actual_size;

	if (!s)
		goto fail;
	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
	if (type == ZMQ_ROUTER) {
		int one = 1;
		zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
	}
	if (!strncmp(endpoint, "inproc:", 7)) {
		zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero);
		zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero);
	} else if (type == ZMQ_ROUTER) {
		/* Above the batch limit, so that the parser answers "too big" with a reason; only
		 * frames beyond it cost the peer its connection. */
		int64_t max = r->conf->max_event_bytes * 64 + 1024 * 1024;
		zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max);
	}
	/* The gateway is the one ROUTER bound outside the process: with CURVE on it is a
	 * CURVE server whose clients the ZAP handler admits (zap.c). */
	if (type == ZMQ_ROUTER && actual && r->zap &&
	    zap_secure_socket(r->zap, s, ZAP_DOMAIN_GATEWAY, err, err_size) < 0) {
		zmq_close(s);
		return NULL;
	}
	if (zmq_bind(s, endpoint) < 0)
		goto fail;
	if (actual) {
		actual[0] = '\0';
		zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, actual, &len);
	}
	return s;
fail:
	snprintf(err, err_size, "cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
	if (s)
		zmq_close(s);
	return NULL;
}

static int s_write_endpoints(router_t *r, char *err, size_t err_size)
{
	char tmp[1100];
	FILE *f;

	mkdir(r->conf->run_dir, 0750);
	snprintf(r->endpoints_path, sizeof r->endpoints_path, "%s/endpoints", r->conf->run_dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", r->endpoints_path);
	f = fopen(tmp, "w");
	if (!f) {
		snprintf(err, err_size, "cannot write %s: %s", tmp, strerror(errno));
		r->endpoints_path[0] = '\0';
		return KANAL_EIO;
	}
	fprintf(f, "gateway=%s\nstream=%s\nadmin=%s\n", r->gateway_endpoint,
		stream_endpoint(r->stream), r->admin_endpoint);
	if (r->conf->admin_http_url && *r->conf->admin_http_url)
		fprintf(f, "admin_http=%s\n", r->conf->admin_http_url);
	fprintf(f, "pid=%d\n", (int)getpid());
	fclose(f);
	if (rename(tmp, r->endpoints_path) < 0) {
		snprintf(err, err_size, "cannot write %s: %s", r->endpoints_path, strerror(errno));
		r->endpoints_path[0] = '\0';
		return KANAL_EIO;
	}
	return 0;
}

router_t *router_new(const conf_t *conf, instance_t **instances, size_t n_instances,
		     routes_t **routes_p, void *zctx, char *err, size_t err_size)
{
	router_t *r = calloc(1, sizeof *r);

	if (!r)
		goto oom;
	r->conf = conf;
	r->now_ms = kanal_now_ms();
	r->instances = instances;
	r->n_instances = n_instances;
	r->zctx = zctx;
	r->table = calloc(1, sizeof *r->table);
	r->dests = calloc(n_instances + 1, sizeof *r->dests);
	r->acks = calloc(n_instances + 1, sizeof *r->acks);
	r->held = calloc(n_instances + 1, sizeof *r->held);
	if (!r->table || !r->dests || !r->acks || !r->held)
		goto oom;
	r->table->routes = *routes_p;
	r->table->refs = 1;
	*routes_p = NULL;
	s_bind_stats(r, r->table->routes);
	for (size_t i = 0; i < n_instances; i++) {
		r->dests[i].name = instances[i]->name;
		r->dests[i].inst = instances[i];
	}
	r->dests[n_instances].name = (char *)ROUTES_DEADLETTER;
	r->n_dests = n_instances + 1;
	srand((unsigned)getpid() ^ (unsigned)kanal_now_ms());

	r->deadletter = deadletter_open(conf->state_dir, err, err_size);
	if (!r->deadletter)
		goto fail;
	if (conf->journal_durable) {
		char path[1100];
		if (conf->journal_path)
			snprintf(path, sizeof path, "%s", conf->journal_path);
		else
			snprintf(path, sizeof path, "%s/journal.db", conf->state_dir);
		r->journal = journal_open(path, conf->journal_sync_power, err, err_size);
		if (!r->journal)
			goto fail;
	}
	r->deliver_sock = s_bind(r, ZMQ_ROUTER, BUS_DELIVER_ENDPOINT, NULL, 0, err, err_size);
	r->emit_sock = s_bind(r, ZMQ_ROUTER, BUS_EMIT_ENDPOINT, NULL, 0, err, err_size);
	r->ctl_router = s_bind(r, ZMQ_PAIR, BUS_CTL_ENDPOINT, NULL, 0, err, err_size);
	if (!r->deliver_sock || !r->emit_sock || !r->ctl_router)
		goto fail;
	r->ctl_main = zmq_socket(zctx, ZMQ_PAIR);
	if (!r->ctl_main || zmq_connect(r->ctl_main, BUS_CTL_ENDPOINT) < 0)
		goto fail;
	/* The ZAP handler first: a CURVE handshake that finds none is let through. */
	if (conf->curve) {
		r->zap = zap_new(zctx, conf, err, err_size);
		if (!r->zap)
			goto fail;
	}
	if (conf->gateway_endpoint && *conf->gateway_endpoint) {
		r->gateway_sock = s_bind(r, ZMQ_ROUTER, conf->gateway_endpoint, r->gateway_endpoint,
					 sizeof r->gateway_endpoint, err, err_size);
		if (!r->gateway_sock)
			goto fail;
	}
	if (conf->admin_endpoint && *conf->admin_endpoint) {
		r->admin_sock = s_bind(r, ZMQ_REP, conf->admin_endpoint, r->admin_endpoint,
				       sizeof r->admin_endpoint, err, err_size);
		if (!r->admin_sock)
			goto fail;
	}
	r->stream = stream_new(zctx, conf, r->zap, err, err_size);
	if (!r->stream)
		goto fail;
	if (s_write_endpoints(r, err, err_size) < 0)
		goto fail;
	return r;
oom:
	snprintf(err, err_size, "out of memory");
fail:
	router_destroy(&r);
	return NULL;
}

int router_start(router_t *r)
{
	if (pthread_create(&r->thread, NULL, s_router_main, r) != 0)
		return KANAL_ETHREAD;
	r->thread_started = true;
	return 0;
}

void router_reload(router_t *r)
{
	zmq_send(r->ctl_main, "reload", 6, 0);
}

int router_stop(router_t *r)
{
	char buf[16];

	if (!r->thread_started)
		return 0;
	zmq_send(r->ctl_main, "stop", 4, 0);
	zmq_recv(r->ctl_main, buf, sizeof buf, 0);
	pthread_join(r->thread, NULL);
	r->thread_started = false;
	return r->undelivered_at_stop;
}

void router_destroy(router_t **r_p)
{
	router_t *r = r_p ? *r_p : NULL;

	if (!r)
		return;
	if (r->thread_started)
		router_stop(r);
	if (r->endpoints_path[0])
		unlink(r->endpoints_path);
	if (r->deliver_sock)
		zmq_close(r->deliver_sock);
	if (r->emit_sock)
		zmq_close(r->emit_sock);
	if (r->gateway_sock)
		zmq_close(r->gateway_sock);
	if (r->admin_sock)
		zmq_close(r->admin_sock);
	if (r->ctl_main)
		zmq_close(r->ctl_main);
	if (r->ctl_router)
		zmq_close(r->ctl_router);
	stream_destroy(&r->stream);
	zap_destroy(&r->zap); /* after the CURVE sockets it serves */
	deadletter_close(&r->deadletter);
	s_flush_replies(r, "kanald stopped");
	free(r->pending);
	journal_close(&r->journal);
	if (r->table)
		s_table_release(&r->table);
	while (r->free_dl) {
		delivery_t *dl = r->free_dl;
		r->free_dl = dl->next;
		free(dl);
	}
	s_free_stats(r);
	free(r->dests);
	free(r->acks);
	free(r->held);
	free(r);
	*r_p = NULL;
}

const char *router_admin_endpoint(const router_t *r)
{
	return r ? r->admin_endpoint : "";
}
