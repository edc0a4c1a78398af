/*
 * broker/router.c — the router thread's loop, accepting events, and dispatch.
 *
 * An accepted event is matched against the current routing table. Each matching route is a
 * *flow* (event, route): its enrich steps run first, as requests to service instances
 * (delivery.c), then one delivery per `to` destination is queued. A destination has a
 * bounded queue (count and bytes) and at most BUS_DELIVER_WINDOW deliveries in flight to
 * its instance thread; what comes back is delivery.c's. An event that matches no route
 * goes to the default destination.
 *
 * Admission control is where backpressure happens: an event whose destinations are full is
 * not accepted. The gateway (gateway.c) answers "busy" with a retry hint; an instance's
 * emit is held (its emit window stays closed, so kanal_emit blocks and then reports
 * KANAL_EBUSY) until room frees up; with the journal a stalled destination's events are
 * parked on disk (park.c).
 *
 * Events are shared between the deliveries of one flow by reference: the instance threads
 * read them concurrently and nobody changes them after routing. A flow with enrich steps
 * works on its own copy, since enriching writes into the data.
 *
 * Lifetimes: a routing table is reference-counted by the flows that matched it, so a reload
 * never pulls a route from under a delivery in flight.
 *
 * The other rooms of the router: gateway.c, delivery.c, commit.c, admin.c, park.c,
 * recover.c, stats.c; router_int.h is what they share (docs/design/broker-map.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deadnotice.h"
#include "log.h"
#include "notify.h"
#include "ratelimit.h"
#include "router_int.h"

/* The memory mode's duplicate window holds at most this many events (the oldest leave
 * first): 256 Ki, about 30 MiB at most. */
#define DEDUPE_MEMORY_MAX (256u * 1024)

/* ---- queues ---------------------------------------------------------------------------- */

void router_enqueue(router_t *r, delivery_t *dl)
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
void router_dispatch(router_t *r, dest_t *d)
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
		if (dl->ev->jev && dl->ev->jev->refused) {
			/* Its sender heard "not accepted": it goes nowhere (s_turn_settle). */
			router_delivery_free(r, &dl);
			continue;
		}
		if (!d->inst) {
			/* The built-in deadletter destination: the event is kept on disk, which
			 * settles this delivery of its flow like any other destination's OK. */
			delivery_dead_primary(r, &dl,
					      dl->kind == DL_DEFAULT ? "unmatched"
								     : "routed to deadletter",
					      false);
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
		if (r->trace)
			dl->sent_ns = trace_now_ns(); /* the start of the attempt's span */
		item->id = dl->id;
		item->msg = dl->ev->msg;
		item->route = router_route_name(dl);
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
delivery_t *router_take_inflight(dest_t *d, uint64_t id)
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

/* During recovery: the journal's row for (route, destination), or NULL. */
const journal_row_t *router_row(const journal_row_t *rows, size_t n, const char *route,
				const char *dest)
{
	for (size_t i = 0; i < n; i++)
		if (rows[i].attempts >= 0 && !strcmp(rows[i].route, router_route_key(route)) &&
		    !strcmp(rows[i].destination, dest))
			return &rows[i];
	return NULL;
}

/* Applies a recovered journal row to a new delivery: a RETRYING one waits for its next
 * attempt. Returns true when the delivery was scheduled (not to be enqueued). */
bool router_resume(router_t *r, delivery_t *dl, const journal_row_t *row)
{
	if (!row || row->state != JOURNAL_RETRYING)
		return false;
	dl->attempt = row->attempts + 1;
	if (row->last_error)
		delivery_error(dl, row->last_error);
	{
		int64_t wait = row->next_at_ms - kanal__wall_ms();
		dl->due_ms = kanal_now_ms() + (wait > 0 ? wait : 0);
	}
	delivery_schedule_retry(r, dl);
	return true;
}

/* Gives dl *out_p (taken) as its own event, sharing the journal record of the one it had.
 * Returns false with `oom` in dl's errors when memory runs out. */
static bool s_give(delivery_t *dl, kanal_msg_t **out_p, const char *oom)
{
	shared_t *ev = router_shared_new(out_p);

	if (!ev) {
		kanal_msg_destroy(out_p);
		delivery_error(dl, oom);
		return false;
	}
	ev->born_ms = dl->ev->born_ms;
	ev->jev = dl->ev->jev;
	if (ev->jev)
		ev->jev->refs++;
	router_shared_release(&dl->ev);
	dl->ev = ev;
	dl->bytes = ev->bytes;
	return true;
}

/* Runs the destination's transform, if any, and gives dl the transformed event (one event
 * of its own that shares the journal record). Returns false with the reason in dl's errors
 * when the transform refuses the event: the delivery is then a REJECT. */
static bool s_transform(router_t *r, flow_t *f, delivery_t *dl, dl_kind_t kind, size_t i)
{
	transform_t *t = routes_transform(f->route, kind == DL_FALLBACK, i);
	kanal_msg_t *out = NULL;
	kanal_error_t err;

	if (!t)
		return true;
	kanal_error_clear(&err);
	if (transform_apply(t, f->ev->msg, &out, &err) != 0) {
		if (f->route->stat)
			f->route->stat->transform_failed++;
		log_warn("router", "route '%s': event %s for '%s': %s", f->route->name,
			 kanal_msg_id(f->ev->msg), dl->dest->name,
			 err.text[0] ? err.text : "transform: out of memory");
		delivery_error(dl, err.text[0] ? err.text : "transform: out of memory");
		return false;
	}
	return s_give(dl, &out, "transform: out of memory");
}

/* A route with an `area` (channels: primary, secondary) tells each delivery which channel
 * of which area it is, in the extension attributes kanalarea and kanalchannelrank
 * (`primary` for `to`, `secondary` for `fallback`), set by kanald over whatever the event
 * carried: the connector that reports the outcome copies them into its status. Returns
 * false (a REJECT, the reason in dl's errors) only when memory runs out. */
static bool s_stamp_channel(flow_t *f, delivery_t *dl, dl_kind_t kind)
{
	kanal_msg_t *out;

	if (!f->route->area)
		return true;
	out = kanal_msg_dup(dl->ev->msg);
	if (out && (kanal_msg_set_attr(out, "kanalarea", f->route->area, NULL) < 0 ||
		    kanal_msg_set_attr(out, "kanalchannelrank",
				       kind == DL_FALLBACK ? "secondary" : "primary", NULL) < 0))
		kanal_msg_destroy(&out);
	if (!out) {
		delivery_error(dl, "channels: out of memory");
		return false;
	}
	return s_give(dl, &out, "channels: out of memory");
}

/* Queues one delivery of the flow's event to each destination in names[]. */
void router_fan_out(router_t *r, flow_t *f, char *const *names, size_t n, dl_kind_t kind,
		    delivery_t *history)
{
	delivery_t *ghosts = NULL, *refused = NULL;

	for (size_t i = 0; i < n; i++) {
		dest_t *d = names == f->route->to ? router_route_to(r, f->route, i)
						  : router_dest(r, names[i]);
		const journal_row_t *row =
			f->n_rows ? router_row(f->rows, f->n_rows, f->route->name, names[i]) : NULL;
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
		dl = router_delivery_new(r, kind, f->ev, f, d);
		if (!dl) {
			log_error("router", "out of memory queueing event %s for '%s'",
				  kanal_msg_id(f->ev->msg), d->name);
			continue;
		}
		for (delivery_t *h = history; h; h = h->next)
			for (size_t k = 0; k < h->n_errors; k++) {
				char line[700];
				snprintf(line, sizeof line, "%s: %s", h->dest->name, h->errors[k]);
				delivery_error(dl, line);
			}
		if (kind == DL_PRIMARY)
			f->primaries_open++, f->primaries_total++;
		if (row && row->state == JOURNAL_REJECTED && kind == DL_PRIMARY) {
			/* Rejected before the restart: it waits with the flow's decision. */
			dl->attempt = row->attempts;
			delivery_error(dl, row->last_error);
			dl->next = ghosts;
			ghosts = dl;
			continue;
		}
		if (!s_transform(r, f, dl, kind, i) || !s_stamp_channel(f, dl, kind)) {
			/* Rejected once every delivery is queued: a rejection now could decide
			 * the flow before its other primaries exist. */
			dl->next = refused;
			refused = dl;
			continue;
		}
		if (!router_resume(r, dl, row))
			router_enqueue(r, dl);
	}
	while (refused) {
		delivery_t *dl = refused;
		refused = dl->next;
		dl->next = NULL;
		delivery_reject(r, dl, dl->n_errors ? dl->errors[dl->n_errors - 1] : "transform");
	}
	while (ghosts) {
		delivery_t *dl = ghosts;
		ghosts = dl->next;
		f->primaries_rejected++;
		dl->next = f->held;
		f->held = dl;
		delivery_flow_primary_done(r, f);
	}
}

/* Starts the flow's deliveries once its enrich steps are done. */
void router_flow_deliver(router_t *r, flow_t *f)
{
	if (f->cluster_in) {
		cluster_router_flow_deliver(r, f); /* to the destinations' streams */
		return;
	}
	router_fan_out(r, f, f->route->to, f->route->n_to, DL_PRIMARY, NULL);
}

/* ---- accepting events -------------------------------------------------------------- */

/* Adds delta to the parked count of every destination the matched routes deliver to (the
 * default one when none matched). */
void router_count_parked(router_t *r, const route_t *const *m, size_t n, int delta)
{
	for (size_t i = 0; i < (n ? n : 1); i++) {
		size_t k_max = n ? m[i]->n_to : 1;
		for (size_t k = 0; k < k_max; k++) {
			dest_t *d =
				router_dest(r, n ? m[i]->to[k] : routes_default(r->table->routes));
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
			dest_t *d =
				router_dest(r, n ? m[i]->to[k] : routes_default(r->table->routes));
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
		dest_t *d = router_dest(r, routes_default(r->table->routes));
		if (d && router_dest_full(r, d, bytes)) {
			room = false;
			if (stalled && s_dest_stalled(d, now))
				*stalled = true;
		}
		return room;
	}
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < m[i]->n_to; k++) {
			dest_t *d = router_route_to(r, m[i], k);
			if (d && router_dest_full(r, d, bytes)) {
				room = false;
				if (!stalled)
					return false;
				if (s_dest_stalled(d, now))
					*stalled = true;
			}
		}
		if (m[i]->n_enrich) {
			dest_t *d = router_dest(r, m[i]->enrich[0].service);
			if (d && router_dest_full(r, d, 0)) {
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
void router_start_flows(router_t *r, shared_t *ev, const route_t *const *m, size_t n, json_t *names,
			const journal_row_t *rows, size_t n_rows)
{
	for (size_t i = 0; i < n; i++) {
		flow_t *f = router_spare_take(ROUTER_SPARE_FLOW, sizeof *f);

		if (m[i]->stat)
			m[i]->stat->matched++;

		if (names)
			json_array_append_new(names, json_string(m[i]->name));
		if (!f) {
			log_error("router", "out of memory routing event %s",
				  kanal_msg_id(ev->msg));
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
			f->ev = copy ? router_shared_new(&copy) : NULL;
			if (f->ev)
				f->ev->born_ms = ev->born_ms;
			if (f->ev && ev->jev) {
				f->ev->jev = ev->jev;
				ev->jev->refs++;
				router_jev_open(f->ev); /* the enrich stage */
			}
			if (!f->ev) {
				log_error("router", "out of memory copying event %s",
					  kanal_msg_id(ev->msg));
				router_table_release(&f->table);
				router_spare_give(ROUTER_SPARE_FLOW, f);
				continue;
			}
			delivery_enrich_next(r, f);
		} else {
			f->ev = ev;
			ev->refs++;
			f->rows = rows;
			f->n_rows = n_rows;
			router_flow_deliver(r, f);
			f->rows = NULL; /* borrowed for this call only */
			f->n_rows = 0;
			router_flow_release(r, &f);
		}
	}
}

/* Checks (source, id) against the dedupe window and appends the event to the journal
 * (`parked`: to be routed later). Returns 0 with its sequence number in *seq,
 * KANAL_EDUPLICATE (counted), or KANAL_EIO (the journal is broken). Ownership: borrows msg. */
static int s_journal_append(router_t *r, const kanal_msg_t *msg, bool parked, uint64_t *seq)
{
	if (r->journal_failed)
		return KANAL_EIO;
	if (journal_seen(r->journal, kanal_msg_source(msg), kanal_msg_id(msg),
			 kanal__wall_ms() - r->conf->dedupe_window_ms)) {
		r->duplicates++;
		return KANAL_EDUPLICATE;
	}
	if (journal_add_event(r->journal, msg, parked, seq) < 0) {
		router_journal_broken(r);
		return KANAL_EIO;
	}
	return 0;
}

/* Routes the accepted event ev (journal sequence `seq`, when journalled) to the matched
 * routes m[0..n), or to the default destination when none matched. Ownership: takes *ev_p. */
static void s_route_event(router_t *r, shared_t **ev_p, uint64_t seq, const route_t *const *m,
			  size_t n)
{
	shared_t *ev = *ev_p;
	json_t *names;

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
		dest_t *d = router_dest(r, routes_default(r->table->routes));
		delivery_t *dl = d ? router_delivery_new(r, DL_DEFAULT, ev, NULL, d) : NULL;

		r->unmatched++;
		ROUTER_PUBLISH(r, "unmatched", NULL, ev->msg,
			       json_pack("{s:s}", "destination", routes_default(r->table->routes)));
		if (dl)
			router_enqueue(r, dl);
	} else {
		names = stream_wanted(r->stream) ? json_array() : NULL;
		router_start_flows(r, ev, m, n, names, NULL, 0);
		if (names)
			stream_publish(r->stream, "routed", NULL, ev->msg,
				       json_pack("{s:o}", "routes", names));
	}
	router_jev_close(r, ev->jev);
	router_shared_release(ev_p);
}

/* The duplicate window's key of msg; false when it has no source or no id (such an event
 * is never taken for a duplicate). */
static bool s_dedupe_key(const kanal_msg_t *msg, dedupe_key_t *k)
{
	if (!msg->core[MSG_SOURCE] || !msg->core[MSG_ID])
		return false;
	dedupe_key(msg->core[MSG_SOURCE], msg->core_len[MSG_SOURCE], msg->core[MSG_ID],
		   msg->core_len[MSG_ID], k);
	return true;
}

/* True when msg is in the memory mode's duplicate window; otherwise it is now. The key
 * s_on_emit_sock worked out for this message is taken, once. */
static bool s_dedupe_seen(router_t *r, const kanal_msg_t *msg)
{
	dedupe_key_t k;

	if (msg == r->emit_key_msg) {
		k = r->emit_key;
		r->emit_key_msg = NULL;
	} else if (!s_dedupe_key(msg, &k)) {
		return false;
	}
	/* The memory window is gone at a restart anyway: the router's monotonic clock of the
	 * frame (r->now_ms) serves, with no clock read per event. */
	return dedupe_check_key(r->dedupe, &k, r->now_ms - r->conf->dedupe_window_ms, r->now_ms);
}

/* router_accept's decision for an event that matched m[0..n). */
static int s_admit(router_t *r, kanal_msg_t **msg_p, const route_t *const *m, size_t n,
		   size_t bytes, int origin)
{
	bool durable = r->journal && !r->journal_failed, can_hold = origin >= 0;
	uint64_t seq = 0;
	shared_t *ev;
	int rc;

	if (durable && can_hold && !s_behind_parked(r, m, n)) {
		bool stalled = false;
		if (!s_has_room_why(r, m, n, bytes, &stalled) && !stalled)
			return KANAL_EBUSY;
	}
	if (durable && (!s_has_room(r, m, n, bytes) || s_behind_parked(r, m, n))) {
		/* With the journal, pending work waits on disk, not in RAM: the event is
		 * accepted parked and routed when its destinations have room. */
		if (r->n_parked >= (size_t)r->conf->max_parked_events)
			return KANAL_EBUSY;
		rc = s_journal_append(r, *msg_p, true, &seq);
		if (rc < 0)
			return rc;
		r->accepted++;
		stats_measure(r, *msg_p);
		r->n_parked++;
		router_count_parked(r, m, n, +1);
		ROUTER_PUBLISH(r, "accepted", NULL, *msg_p, json_pack("{s:b}", "parked", 1));
		if (!can_hold || !commit_keep(r, NULL, msg_p, origin))
			kanal_msg_destroy(msg_p);
		return 0;
	}
	if (!s_has_room(r, m, n, bytes))
		return KANAL_EBUSY;
	if (r->journal && (rc = s_journal_append(r, *msg_p, false, &seq)) < 0)
		return rc;
	if (r->dedupe && s_dedupe_seen(r, *msg_p)) {
		r->duplicates++;
		return KANAL_EDUPLICATE;
	}
	stats_measure(r, *msg_p);
	ev = router_shared_new_at(msg_p, bytes, r->now_ms);
	if (!ev)
		return KANAL_ENOMEM;
	if (r->journal) {
		shared_t *kept = ev;
		/* s_route_event gives the event its journal record (jev), which a failed commit
		 * marks refused. */
		kept->refs++;
		s_route_event(r, &ev, seq, m, n);
		if (!commit_keep(r, kept, NULL, origin))
			log_error("router",
				  "out of memory: event %s cannot be held back should "
				  "the journal's commit fail",
				  kanal_msg_id(kept->msg));
		router_shared_release(&kept);
		return 0;
	}
	s_route_event(r, &ev, seq, m, n);
	return 0;
}

/* s_admit with tracing on: the event gets a trace when it has none (before it is
 * journalled, so that a restart resumes it in the same trace), and an accepted one its
 * accept and route spans (trace.c). */
static int s_admit_traced(router_t *r, kanal_msg_t **msg_p, const route_t *const *m, size_t n,
			  int origin)
{
	trace_accept_t a;
	int rc;

	trace_accept_begin(r->trace, *msg_p, &a);
	rc = s_admit(r, msg_p, m, n, kanal_msg_size(*msg_p), origin);
	if (rc == 0)
		trace_accepted(r->trace, &a, m, n);
	return rc;
}

/* Routes *msg_p, taking it on success (returns 0). Returns KANAL_EBUSY when a destination
 * is full, KANAL_EDUPLICATE or KANAL_EIO (*msg_p is left with the caller), or KANAL_ENOMEM
 * (taken and lost: logged). With the journal, an event whose destination is full is parked
 * on disk — unless an instance's emit (`origin` >= 0), which the router may hold back, and no
 * full destination is stalled: then it is KANAL_EBUSY, and the emit waits in memory for
 * the destination to catch up. */
int router_accept(router_t *r, kanal_msg_t **msg_p, int origin)
{
	const route_t *stack[64], **m = stack;
	size_t n;
	int rc;

	if (r->cluster)
		return cluster_router_accept(r, msg_p, origin);
	n = routes_match(r->table->routes, *msg_p, m, 64);
	if (n > 64) {
		m = malloc(n * sizeof *m);
		if (!m)
			return KANAL_ENOMEM;
		n = routes_match(r->table->routes, *msg_p, m, n);
	}
	rc = r->trace ? s_admit_traced(r, msg_p, m, n, origin)
		      : s_admit(r, msg_p, m, n, kanal_msg_size(*msg_p), origin);
	if (m != stack)
		free(m);
	return rc;
}

/* The journal cannot be written: say so once, refuse new events until a probe commit
 * works again (commit_end_turn). */
void router_journal_broken(router_t *r)
{
	if (r->journal_failed)
		return;
	r->journal_failed = true;
	r->next_prune_ms = kanal__wall_ms() + 60000;
	log_error("router",
		  "journal %s cannot be written (%s): refusing new events until it "
		  "can",
		  journal_path(r->journal), journal_error(r->journal));
	stream_publish(r->stream, "journal.failed", "-", NULL,
		       json_pack("{s:s}", "error", journal_error(r->journal)));
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
int router_recv_routed(void *sock, char *id, size_t id_size, void *buf, size_t size)
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
	outcome_frame_t f;
	int n;

	while ((n = router_recv_routed(r->deliver_sock, id, sizeof id, &f, sizeof f)) >= 0) {
		dest_t *d = n > 0 ? router_dest(r, id) : NULL;

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
				/* delivery_on_outcome reads the fields it needs, not the inline text. */
				o.cmd = BUS_OUTCOME;
				o.outcome = it->outcome;
				o.id = it->id;
				o.retry_after_ms = it->retry_after_ms;
				o.reply = it->reply;
				delivery_on_outcome(r, d, &o, it->error ? it->error : "");
				if (it->error) /* an OK has none: no free(NULL) per event */
					free(it->error);
			}
			commit_mid_turn(r, d);
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
		delivery_on_outcome(r, d, &f.one, f.one.error);
	}
}

/* A held emit, from the spent ones when there are (a flood holds and frees them by the
 * thousand); zeroed. NULL when out of memory. */
static held_emit_t *s_held_new(router_t *r)
{
	held_emit_t *h = r->free_held;

	if (!h)
		return calloc(1, sizeof *h);
	r->free_held = h->next;
	r->n_free_held--;
	memset(h, 0, sizeof *h);
	return h;
}

static void s_held_free(router_t *r, held_emit_t *h)
{
	if (r->n_free_held >= 4096) {
		free(h);
		return;
	}
	h->next = r->free_held;
	r->free_held = h;
	r->n_free_held++;
}

/* Tries held emits again, per source in arrival order, while they fit. */
static void s_retry_held(router_t *r)
{
	for (size_t i = 0; i < r->n_instances && r->n_held; i++) {
		struct held_queue *q = &r->held[i];

		while (q->head) {
			held_emit_t *h = q->head;
			int rc;

			/* The window's key was worked out at the emit: not again per try. */
			r->emit_key_msg = h->has_key ? h->msg : NULL;
			r->emit_key = h->key;
			rc = router_accept(r, &h->msg, (int)h->origin);
			r->emit_key_msg = NULL;
			if (rc == KANAL_EBUSY || rc == KANAL_EIO)
				break;
			if (rc != ROUTER_ACK_LATER)
				r->acks[h->origin]++;
			q->head = h->next;
			if (!q->head)
				q->tail = NULL;
			r->n_held--;
			kanal_msg_destroy(&h->msg);
			s_held_free(r, h);
		}
	}
}

/* Removes the extension attributes only kanald may set on a request to a service
 * (kanalroute, kanalpurpose, kanalprotected, kanalrequester). Accepts NULL. */
void router_strip_reserved(kanal_msg_t *msg)
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
	d = router_dest(r, service);
	if (!d || !d->inst || !strcmp(service, from)) {
		rep.status = d && d->inst ? KANAL_EINVAL : KANAL_ENOSERVICE;
		goto answer;
	}
	if (router_dest_full(r, d, 0)) {
		rep.status = KANAL_EBUSY;
		goto answer;
	}
	/* A plugin's own request names no route and cannot ask for protected data; the
	 * service learns which instance asks. The purpose it gives is kept for the audit. */
	{
		const char *purpose = kanal_msg_attr(msg, "kanalpurpose");
		char *keep = purpose ? strdup(purpose) : NULL;
		router_strip_reserved(msg);
		if (keep)
			kanal_msg_set_attr(msg, "kanalpurpose", keep, NULL);
		free(keep);
		kanal_msg_set_attr(msg, "kanalrequester", from, NULL);
	}
	ev = router_shared_new(&msg);
	if (!ev) {
		rep.status = KANAL_ENOMEM;
		goto answer;
	}
	dl = router_delivery_new(r, DL_REQUEST, ev, NULL, d);
	router_shared_release(&ev);
	if (!dl) {
		rep.status = KANAL_ENOMEM;
		goto answer;
	}
	dl->requester = strdup(from);
	if (!dl->requester) {
		router_delivery_free(r, &dl);
		rep.status = KANAL_ENOMEM;
		goto answer;
	}
	dl->req_seq = q->seq;
	router_enqueue(r, dl);
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
	int rc = q->head ? KANAL_EBUSY : router_accept(r, &msg, (int)origin);
	held_emit_t *h;

	if (rc != KANAL_EBUSY && rc != KANAL_EIO) {
		if (rc != ROUTER_ACK_LATER)
			r->acks[origin]++;
		if (msg) /* routed: taken (a refused one is still ours) */
			kanal_msg_destroy(&msg);
		return;
	}
	h = s_held_new(r);
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
	if (r->emit_key_msg == msg) {
		/* Not checked yet: the key goes with it to its next try (s_retry_held). */
		h->has_key = true;
		h->key = r->emit_key;
		r->emit_key_msg = NULL;
	}
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

	while ((n = router_recv_routed(r->emit_sock, id, sizeof id, &f, sizeof f)) >= 0) {
		size_t origin = s_instance_index(r, id);

		r->now_ms = kanal_now_ms();

		if (n <= 0 || origin == (size_t)-1)
			continue;
		if (f.cmd == BUS_EMIT && n >= (int)bus_emit_len(0)) {
			uint32_t count = f.emit.count;
			if (bus_emit_len(count) > (size_t)n)
				continue; /* not a frame of ours */
			/* Built on the emitter's core: fetch two ahead while routing this, and
			 * the duplicate window's line of the next (a miss each, overlapped). The
			 * window's key of each is worked out once, for both. */
			dedupe_key_t key = { 0, 0 }, next = { 0, 0 };
			bool has_key = false, has_next = false;

			for (uint32_t i = 0; i < 2 && i < count; i++)
				kanal__msg_prefetch(f.emit.msgs[i]);
			if (r->dedupe && count)
				has_key = s_dedupe_key(f.emit.msgs[0], &key);
			for (uint32_t i = 0; i < count; i++) {
				if (i + 2 < count)
					kanal__msg_prefetch(f.emit.msgs[i + 2]);
				has_next = r->dedupe && i + 1 < count &&
					   s_dedupe_key(f.emit.msgs[i + 1], &next);
				if (has_next)
					dedupe_prefetch(r->dedupe, &next);
				r->emit_key_msg = has_key ? f.emit.msgs[i] : NULL;
				r->emit_key = key;
				s_on_emit(r, origin, id, f.emit.msgs[i]);
				r->emit_key_msg = NULL;
				key = next;
				has_key = has_next;
			}
			commit_mid_turn(r, NULL);
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

/* Polls the broker's sockets once, up to wait_ms. */
void router_poll_once(router_t *r, int64_t wait_ms, bool with_gateway)
{
	zmq_pollitem_t items[7];
	int n = 0, i_deliver, i_emit, i_gw = -1, i_admin = -1, i_stream = -1, i_ctl = -1;
	int i_cluster = -1;
	int64_t next = delivery_next_timer(r);

	/* Held emits wait for a destination that is behind; should it stall instead, they are
	 * to be parked, which only a turn notices. In cluster mode they wait for JetStream to
	 * take them again, which no socket announces. */
	if (r->n_held && (r->journal || r->cluster) && (wait_ms < 0 || wait_ms > DEST_STALL_MS))
		wait_ms = DEST_STALL_MS;
	/* While the journal is broken, wake once a second to probe it; in cluster mode, to keep
	 * JetStream told what is still in progress. */
	if ((r->journal_failed || r->cluster) && (wait_ms < 0 || wait_ms > 1000))
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
	if (r->cluster) {
		i_cluster = n;
		items[n++] = (zmq_pollitem_t){ NULL, cluster_router_fd(r), ZMQ_POLLIN, 0 };
	}
	if (!r->stopping) {
		i_ctl = n;
		items[n++] = (zmq_pollitem_t){ r->ctl_router, 0, ZMQ_POLLIN, 0 };
	}
	if (zmq_poll(items, n, (long)notify_watchdog_wait(wait_ms)) < 0 && zmq_errno() != EINTR)
		return;
	notify_watchdog();
	r->now_ms = kanal_now_ms();
	if (items[i_deliver].revents & ZMQ_POLLIN)
		s_on_deliver_sock(r);
	if (items[i_emit].revents & ZMQ_POLLIN)
		s_on_emit_sock(r);
	if (i_cluster >= 0 && (items[i_cluster].revents & ZMQ_POLLIN))
		cluster_router_on_inbox(r);
	if (r->cluster)
		cluster_router_tick(r);
	if (i_stream >= 0 && (items[i_stream].revents & ZMQ_POLLIN))
		stream_on_readable(r->stream);
	if (i_gw >= 0 && (items[i_gw].revents & ZMQ_POLLIN))
		gateway_on_readable(r);
	if (i_admin >= 0 && (items[i_admin].revents & ZMQ_POLLIN))
		admin_on_readable(r);
	delivery_run_timers(r);
	if (r->n_held)
		s_retry_held(r);
	commit_end_turn(r);
	if (i_ctl >= 0 && (items[i_ctl].revents & ZMQ_POLLIN)) {
		char cmd[16];
		int len = zmq_recv(r->ctl_router, cmd, sizeof cmd - 1, ZMQ_DONTWAIT);
		if (len > 0) {
			cmd[len] = '\0';
			if (!strcmp(cmd, "reload")) {
				json_t *res = admin_reload(r);
				json_decref(res);
			} else if (!strcmp(cmd, "stop")) {
				r->stopping = true;
			}
		}
	}
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
	router_spare_use(true);
	recover_open(r);
	if (cluster_router_start(r) < 0)
		log_error("cluster", "cannot start the threads that fetch from JetStream");
	while (!r->stopping)
		router_poll_once(r, -1, true);
	park_shutdown(r);
	router_spare_use(false);
	zmq_send(r->ctl_router, "stopped", 7, 0);
	return NULL;
}

__thread router_spare_t router_spare[ROUTER_SPARE_KINDS] __attribute__((tls_model("initial-exec")));

void router_spare_use(bool on)
{
	kanal__mpool_stats_t st;

	kanal__mpool_stats(&st);
	for (int k = 0; k < ROUTER_SPARE_KINDS; k++) {
		router_spare_t *sp = &router_spare[k];
		sp->on = on && st.enabled;
		while (!sp->on && sp->head) {
			void *p = sp->head;
			sp->head = *(void **)p;
			sp->n--;
			kanal__mpool_free(p);
		}
	}
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
		/* Well above the batch limit, so that a request too big gets its answer with a
		 * reason (gateway.c); only a frame beyond this costs the peer its connection,
		 * without an answer: ZeroMQ drops it before kanald sees a byte (docs/security.md). */
		int64_t max = r->conf->max_event_bytes * GATEWAY_BATCH_EVENTS + 1024 * 1024;
		if (max < GATEWAY_MAX_FRAME)
			max = GATEWAY_MAX_FRAME;
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
	r->last_reload_ms = kanal_wall_ms();
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
	for (size_t i = 0; i < n_instances; i++) {
		r->dests[i].name = instances[i]->name;
		r->dests[i].inst = instances[i];
	}
	r->dests[n_instances].name = (char *)ROUTES_DEADLETTER;
	r->n_dests = n_instances + 1;
	stats_bind(r, r->table->routes); /* after the destinations: it looks them up */
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
		r->journal = journal_open_keyed(path, conf->journal_sync_power,
						conf->journal_key_file, err, err_size);
		if (!r->journal)
			goto fail;
		journal_set_blob_store(r->journal, conf->blobs);
		stats_load_measures(r);
	} else if (conf->journal_cluster) {
		/* JetStream is the journal and its duplicate window the dedupe. */
		if (cluster_router_new(r, err, err_size) < 0)
			goto fail;
	} else if (!(r->dedupe = dedupe_new(DEDUPE_MEMORY_MAX))) {
		snprintf(err, err_size, "out of memory");
		goto fail;
	}
	if (conf->rate_per_second > 0 &&
	    !(r->ratelimit = ratelimit_new(
		      (double)conf->rate_per_second,
		      (double)(conf->rate_burst > 0 ? conf->rate_burst : conf->rate_per_second)))) {
		snprintf(err, err_size, "out of memory");
		goto fail;
	}
	commit_sweep_blobs(r);
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
	if (trace_new(conf, &r->trace) < 0) {
		snprintf(err, err_size, "cannot start the span exporter (trace.export)");
		goto fail;
	}
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

void router_force_stop(router_t *r)
{
	if (r)
		__atomic_store_n(&r->force_stop, true, __ATOMIC_RELEASE);
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
	trace_destroy(&r->trace); /* after the router's thread, the spans' one producer */
	zap_destroy(&r->zap);     /* after the CURVE sockets it serves */
	deadletter_close(&r->deadletter);
	deadnotice_free(r);
	gateway_flush_replies(r, "kanald stopped");
	free(r->pending);
	journal_close(&r->journal);
	cluster_router_destroy(r);
	dedupe_destroy(&r->dedupe);
	ratelimit_destroy(&r->ratelimit);
	if (r->table)
		router_table_release(&r->table);
	while (r->free_dl) {
		delivery_t *dl = r->free_dl;
		r->free_dl = dl->next;
		free(dl);
	}
	while (r->free_held) {
		held_emit_t *h = r->free_held;
		r->free_held = h->next;
		free(h);
	}
	stats_free(r);
	free(r->dests);
	commit_forget(r);
	free(r->acks);
	free(r->held);
	free(r);
	*r_p = NULL;
}

const char *router_admin_endpoint(const router_t *r)
{
	return r ? r->admin_endpoint : "";
}
