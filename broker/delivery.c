/*
 * broker/delivery.c — what happens after a delivery is sent: its outcome, on the router's
 * thread. OK is done (counted, its latency observed); RETRY is tried again after an
 * exponential backoff with jitter (or the plugin's hint) until the route's budget is spent;
 * REJECT is permanent — when every primary destination of a flow has rejected, the route's
 * fallback destinations get the event, else the rejections go to the dead letters. It also
 * runs a flow's enrich steps (requests to service instances, their replies, timeouts and
 * retries), answers a plugin's own kanal_request, and keeps the retry timers.
 * delivery_backoff and delivery_decide are pure and tested on their own
 * (tests/unit/test_delivery_rules.c).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deadnotice.h"
#include "log.h"
#include "router_int.h"

void delivery_error(delivery_t *dl, const char *text)
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

static json_t *s_dl_json(const delivery_t *dl)
{
	return json_pack("{s:s?, s:s, s:I, s:i}", "route", router_route_name(dl), "destination",
			 dl->dest->name, "delivery", (json_int_t)dl->id, "attempt", dl->attempt);
}

/* ---- dead letters -------------------------------------------------------------------- */

/* Gives a delivery up for good: writes it to the dead-letter file and says so. */
void delivery_dead(router_t *r, delivery_t **dl_p, const char *reason)
{
	delivery_t *dl = *dl_p;
	json_t *extra;

	dl->dest->dead++;
	if (dl->flow && dl->flow->route->stat)
		dl->flow->route->stat->dead++;
	if (r->journal && dl->ev->jev) {
		uint64_t seq = dl->ev->jev->seq;
		if (journal_dead(r->journal, seq, dl->ev->msg, router_route_name(dl),
				 dl->dest->name, reason, dl->attempt, dl->errors,
				 dl->n_errors) < 0 ||
		    journal_delivery(r->journal, seq, router_route_key(router_route_name(dl)),
				     dl->dest->name, JOURNAL_DEAD, dl->attempt, 0,
				     dl->n_errors ? dl->errors[dl->n_errors - 1] : reason) < 0)
			log_error("router",
				  "cannot keep event %s as a dead letter in the journal: %s",
				  kanal_msg_id(dl->ev->msg), journal_error(r->journal));
	} else if (deadletter_write(r->deadletter, dl->ev->msg, router_route_name(dl),
				    dl->dest->name, reason, dl->attempt, dl->errors,
				    dl->n_errors) < 0) {
		log_error("router", "cannot write event %s to the dead-letter file %s: %s",
			  kanal_msg_id(dl->ev->msg), deadletter_path(r->deadletter),
			  strerror(errno));
	}
	/* A sender can cause dead letters at will (unmatched or refused events), so the log
	 * gets at most one line a second of each kind, with the count held back; the counters,
	 * the stream and the store see every one. */
	if (dl->kind == DL_DEFAULT)
		log_warn_limited("router",
				 "event %s (%s) matched no route; it went to the dead "
				 "letters",
				 kanal_msg_id(dl->ev->msg), kanal_msg_type(dl->ev->msg));
	else
		log_warn_limited("router",
				 "event %s (%s) on route '%s' for '%s' went to the dead "
				 "letters: %s",
				 kanal_msg_id(dl->ev->msg), kanal_msg_type(dl->ev->msg),
				 router_route_name(dl) ? router_route_name(dl) : "-",
				 dl->dest->name,
				 dl->n_errors ? dl->errors[dl->n_errors - 1] : reason);
	extra = s_dl_json(dl);
	json_object_set_new(extra, "reason", json_string(reason));
	if (dl->n_errors)
		json_object_set_new(extra, "error", json_string(dl->errors[dl->n_errors - 1]));
	stream_publish(r->stream, "dead", NULL, dl->ev->msg, extra);
	deadnotice_note(r, dl, reason); /* its sender hears, unless it has already */
	router_delivery_free(r, dl_p);
}

/* A primary of flow f has reached its end (delivered, rejected, or given up). When the
 * last primary is in, decide: fallback if every one rejected, else the held rejections
 * are dead. */
void delivery_flow_primary_done(router_t *r, flow_t *f)
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
		log_info("router",
			 "route '%s': every destination rejected event %s; fallback taken",
			 f->route->name, kanal_msg_id(f->ev->msg));
		router_fan_out(r, f, f->route->fallback, f->route->n_fallback, DL_FALLBACK, held);
		while (held) {
			delivery_t *next = held->next;
			router_delivery_free(r, &held);
			held = next;
		}
		return;
	}
	while (held) {
		delivery_t *next = held->next;
		delivery_dead(r, &held, "rejected");
		held = next;
	}
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

/* A flow of an event whose turn's commit failed: its sender heard "not accepted", so the
 * flow ends here, neither delivered nor dead-lettered (router.c s_turn_settle). Returns
 * whether it ended. Ownership: takes the enrich stage's reference to f when it ends. */
static bool s_enrich_refused(router_t *r, flow_t *f)
{
	if (!f->ev->jev || !f->ev->jev->refused)
		return false;
	router_jev_close(r, f->ev->jev);
	router_flow_release(r, &f); /* the enrich stage's reference */
	return true;
}

/* An enrich step failed. A transient failure (the service asked to retry, did not answer in
 * time, or its queue was full) asks again after the route's backoff, within the route's
 * retry budget, as a delivery would be retried; the event stays open in the journal
 * meanwhile, so a restart resumes it (in cluster mode JetStream keeps it: its accepted
 * message is given back with the delay). A permanent failure, or a spent budget, goes by the
 * step's on_error. */
void delivery_enrich_failed(router_t *r, flow_t *f, const char *why, bool transient)
{
	const route_enrich_t *step = &f->route->enrich[f->enrich_step];
	json_t *extra;

	if (s_enrich_refused(r, f))
		return;
	if (f->cluster_in && r->stopping) {
		/* Another node (or this one, started again) enriches it. */
		cluster_router_flow_abandon(r, f);
		router_flow_release(r, &f); /* the enrich stage's reference */
		return;
	}
	if (transient && !r->stopping && f->enrich_failures + 1 < f->route->retry.max_attempts) {
		int64_t delay = delivery_backoff(&f->route->retry, ++f->enrich_failures, 0);
		stream_publish(r->stream, "enrich.retrying", NULL, f->ev->msg,
			       json_pack("{s:s, s:s, s:s, s:i, s:I}", "route", f->route->name,
					 "service", step->service, "reason", why, "attempt",
					 f->enrich_failures, "retry_in_ms", (json_int_t)delay));
		log_warn("router",
			 "route '%s': enrich from '%s' failed for event %s: %s; asking "
			 "again in %lld ms (attempt %d of %d)",
			 f->route->name, step->service, kanal_msg_id(f->ev->msg), why,
			 (long long)delay, f->enrich_failures + 1, f->route->retry.max_attempts);
		if (f->cluster_in) {
			/* JetStream keeps the event meanwhile and gives it to a node after the
			 * delay: nothing waits here, so the node routes others meanwhile. */
			cluster_router_flow_retry(r, f, delay);
			router_flow_release(r, &f); /* the enrich stage's reference */
			return;
		}
		f->enrich_waiting = true;
		f->enrich_deadline = kanal_now_ms() + delay;
		f->enrich_next = r->enriching;
		r->enriching = f;
		return;
	}
	extra = json_pack("{s:s, s:s, s:s}", "route", f->route->name, "service", step->service,
			  "reason", why);
	stream_publish(r->stream, "enrich.failed", NULL, f->ev->msg, extra);
	log_warn("router", "route '%s': enrich from '%s' failed for event %s: %s", f->route->name,
		 step->service, kanal_msg_id(f->ev->msg), why);
	if (step->on_error == ENRICH_SKIP && !r->spilling) {
		f->enrich_step++;
		delivery_enrich_next(r, f);
		return;
	}
	{
		dest_t *d = router_dest(r, ROUTES_DEADLETTER);
		delivery_t *dl = router_delivery_new(r, DL_PRIMARY, f->ev, f, d);
		char reason[600];

		if (!dl) {
			if (f->cluster_in) /* JetStream brings it back to be enriched again */
				cluster_router_flow_abandon(r, f);
			return;
		}
		snprintf(reason, sizeof reason, "enrich from '%s' failed: %s", step->service, why);
		/* The letter says how often the service was asked: every transient failure
		 * before this one, and this one. */
		dl->attempt = f->enrich_failures + 1;
		delivery_error(dl, reason);
		if (f->cluster_in)
			cluster_router_flow_dead(r, f, &dl, reason);
		else
			delivery_dead(r, &dl, reason);
	}
	router_jev_close(r, f->ev->jev);
	router_flow_release(r, &f); /* the enrich stage's reference */
}

/* Runs the flow's next enrich step, or delivers when there is none left. */
void delivery_enrich_next(router_t *r, flow_t *f)
{
	const route_enrich_t *step;
	dest_t *d;
	delivery_t *dl;

	if (s_enrich_refused(r, f))
		return;
	if (f->enrich_step >= f->route->n_enrich) {
		router_flow_deliver(r, f);
		router_jev_close(r, f->ev->jev);
		router_flow_release(r, &f); /* the enrich stage's reference */
		return;
	}
	step = &f->route->enrich[f->enrich_step];
	d = router_dest(r, step->service);
	if (!d || !d->inst) {
		delivery_enrich_failed(r, f, "no such service instance", false);
		return;
	}
	if (router_dest_full(r, d, 0)) {
		delivery_enrich_failed(r, f, "the service's queue is full", true);
		return;
	}
	/* The service reads its own copy: after a timeout the flow goes on and may write into
	 * its event while the service is still reading the request. */
	{
		kanal_msg_t *copy = kanal_msg_dup(f->ev->msg);
		shared_t *req;

		/* The service learns who asks and why (an audit log, address protection): only
		 * from kanald, so whatever the event carried under these names is dropped. */
		router_strip_reserved(copy);
		if (copy && (kanal_msg_set_attr(copy, "kanalroute", f->route->name, NULL) < 0 ||
			     (step->purpose &&
			      kanal_msg_set_attr(copy, "kanalpurpose", step->purpose, NULL) < 0) ||
			     (step->protected_address &&
			      kanal_msg_set_ext_bool(copy, "kanalprotected", true, NULL) < 0)))
			kanal_msg_destroy(&copy);
		req = copy ? router_shared_new(&copy) : NULL;
		dl = req ? router_delivery_new(r, DL_ENRICH, req, NULL, d) : NULL;
		router_shared_release(&req);
	}
	if (!dl) {
		delivery_enrich_failed(r, f, "out of memory", true);
		return;
	}
	f->enrich_dl = dl;
	f->enrich_deadline = kanal_now_ms() +
			     (step->timeout_ms > 0 ? step->timeout_ms : r->conf->enrich_timeout_ms);
	f->enrich_next = r->enriching;
	r->enriching = f;
	router_enqueue(r, dl);
}

/* The flow f gave up waiting for its enrich request: a request still queued is dropped,
 * one in flight is cancelled at the service (a K frame, bus.h), which abandons it and
 * answers RETRY at once rather than late (docs/design/service-concurrency.md). The
 * request is looked for by address in the service's lists before it is touched: one the
 * shutdown spilled is in neither. */
static void s_enrich_cancel(router_t *r, flow_t *f)
{
	dest_t *d = router_dest(r, f->route->enrich[f->enrich_step].service);
	delivery_t *dl = f->enrich_dl;

	if (!d || !dl)
		return;
	for (delivery_t **p = &d->head, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
		if (*p != dl)
			continue;
		*p = dl->next;
		if (d->tail == dl)
			d->tail = prev;
		d->queued--;
		d->queued_bytes -= dl->bytes;
		router_delivery_free(r, &dl);
		return;
	}
	for (delivery_t *in = d->inflight; in && d->inst; in = in->next) {
		if (in == dl) {
			bus_cancel_t k = { BUS_CANCEL, dl->id };
			zmq_send(r->deliver_sock, d->inst->name, strlen(d->inst->name),
				 ZMQ_SNDMORE);
			zmq_send(r->deliver_sock, &k, sizeof k, 0);
			return;
		}
	}
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
			 outcome == KANAL_OUTCOME_OK ? "without a reply"
						     : kanal_outcome_name(outcome),
			 error && *error ? ": " : "", error ? error : "");
		kanal_msg_destroy(reply_p);
		delivery_enrich_failed(r, f, why, outcome == KANAL_OUTCOME_RETRY);
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
		delivery_enrich_failed(r, f, "the reply's data cannot be merged into the event",
				       false);
		return;
	}
	f->ev->bytes = kanal_msg_size(f->ev->msg); /* the flow's own copy grew */
	f->enrich_step++;
	delivery_enrich_next(r, f);
}

/* ---- outcomes -------------------------------------------------------------------------- */

int64_t delivery_backoff(const route_retry_t *rt, int attempt, int64_t hint)
{
	double base = (double)rt->backoff_ms * pow(2.0, attempt - 1);
	double capped = base > (double)rt->max_backoff_ms ? (double)rt->max_backoff_ms : base;
	/* Full jitter on the upper half keeps retries of a burst apart. */
	double jittered = capped * (0.5 + 0.5 * ((double)rand() / RAND_MAX));
	int64_t ms = (int64_t)jittered;

	return hint > ms ? hint : ms;
}

void delivery_schedule_retry(router_t *r, delivery_t *dl)
{
	delivery_t **p = &r->retries;

	while (*p && (*p)->due_ms <= dl->due_ms)
		p = &(*p)->next;
	dl->next = *p;
	*p = dl;
}

static const route_retry_t s_default_retry = { 5, 1000, 300000 };

/* Records what happened to a delivery of a journalled event. */
static void s_journal_row(router_t *r, const delivery_t *dl, journal_state_t state,
			  int64_t next_at_ms, const char *error)
{
	if (!r->journal || r->journal_failed || !dl->ev->jev)
		return;
	if (journal_delivery(r->journal, dl->ev->jev->seq, router_route_key(router_route_name(dl)),
			     dl->dest->name, state, dl->attempt, next_at_ms, error) < 0)
		log_error("router", "cannot record delivery %llu in the journal: %s",
			  (unsigned long long)dl->id, journal_error(r->journal));
}

delivery_next_t delivery_decide(int outcome, int attempt, const route_retry_t *rt, bool stopping,
				bool has_fallback)
{
	if (outcome == KANAL_OUTCOME_OK)
		return DELIVERY_DONE;
	if (outcome == KANAL_OUTCOME_RETRY)
		return attempt < rt->max_attempts && !stopping ? DELIVERY_RETRY : DELIVERY_DEAD;
	return has_fallback ? DELIVERY_HOLD : DELIVERY_DEAD; /* REJECT: permanent */
}

void delivery_dead_primary(router_t *r, delivery_t **dl_p, const char *reason, bool rejected)
{
	flow_t *f = (*dl_p)->kind == DL_PRIMARY ? (*dl_p)->flow : NULL;

	if (!f) {
		delivery_dead(r, dl_p, reason);
		return;
	}
	f->refs++;
	if (rejected)
		f->primaries_rejected++;
	delivery_dead(r, dl_p, reason);
	delivery_flow_primary_done(r, f);
	router_flow_release(r, &f);
}

/* A plugin's kanal_request was answered: the reply (on OK) goes back to the instance that
 * asked. Takes *reply_p. */
static void s_on_request_reply(router_t *r, delivery_t *dl, int outcome, kanal_msg_t **reply_p)
{
	bus_reply_t rep = { BUS_REPLY, 0, dl->req_seq, NULL };

	if (outcome == KANAL_OUTCOME_OK && *reply_p) {
		rep.reply = *reply_p;
		*reply_p = NULL;
	} else {
		rep.status = KANAL_EREJECTED;
	}
	zmq_send(r->emit_sock, dl->requester, strlen(dl->requester), ZMQ_SNDMORE);
	zmq_send(r->emit_sock, &rep, sizeof rep, 0);
	kanal_msg_destroy(reply_p);
	router_delivery_free(r, &dl);
}

/* The attempt's span (trace.c), when tracing is on: under its route's span, in the trace
 * of the route's event (a transform's copy may have lost the traceparent). */
static void s_trace(router_t *r, const delivery_t *dl, const char *outcome)
{
	if (r->trace && dl->flow)
		trace_delivery(r->trace, dl->flow->ev->msg, dl->flow->route->name, dl->dest->name,
			       dl->id, dl->attempt, dl->sent_ns, outcome);
}

/* OK: delivered. */
static void s_on_ok(router_t *r, dest_t *d, delivery_t *dl)
{
	s_trace(r, dl, "ok");
	/* When this delivery is the event's last open part, the event is marked done in this
	 * same transaction, and a done event is never resumed: its "delivered" row would say
	 * nothing a restart reads (docs/design/journal.md). */
	if (!dl->counted || !dl->ev->jev || dl->ev->jev->open > 1)
		s_journal_row(r, dl, JOURNAL_DELIVERED, 0, NULL);
	d->delivered++;
	if (dl->flow && dl->flow->route->stat)
		dl->flow->route->stat->delivered++;
	stats_observe_latency(r, dl->ev, dl->flow ? dl->flow->route->stat : NULL, dl->dest->name,
			      r->now_ms);
	ROUTER_PUBLISH(r, "delivered", NULL, dl->ev->msg, s_dl_json(dl));
	if (dl->kind == DL_PRIMARY && dl->flow)
		delivery_flow_primary_done(r, dl->flow);
	router_delivery_free(r, &dl);
}

/* RETRY: tried again after the backoff (or the plugin's hint) while the route's budget
 * lasts and kanald is not stopping; else dead. */
static void s_on_retry(router_t *r, dest_t *d, delivery_t *dl, int64_t hint, const char *error)
{
	const route_retry_t *rt = dl->flow ? &dl->flow->route->retry : &s_default_retry;
	json_t *extra;
	int64_t delay;

	if (delivery_decide(KANAL_OUTCOME_RETRY, dl->attempt, rt, r->stopping, false) !=
	    DELIVERY_RETRY) {
		s_trace(r, dl, "dead");
		delivery_dead_primary(r, &dl,
				      r->stopping ? "kanald stopped before delivery"
						  : "retry budget spent",
				      false);
		return;
	}
	s_trace(r, dl, "retry");
	d->retried++;
	if (dl->flow && dl->flow->route->stat)
		dl->flow->route->stat->retried++;
	delay = delivery_backoff(rt, dl->attempt, hint);
	dl->due_ms = kanal_now_ms() + delay;
	s_journal_row(r, dl, JOURNAL_RETRYING, kanal__wall_ms() + delay, error);
	extra = s_dl_json(dl);
	json_object_set_new(extra, "error", json_string(error));
	json_object_set_new(extra, "retry_in_ms", json_integer(dl->due_ms - kanal_now_ms()));
	stream_publish(r->stream, "retrying", NULL, dl->ev->msg, extra);
	dl->attempt++;
	delivery_schedule_retry(r, dl);
}

/* REJECT: permanent. A primary of a route with fallback waits for its flow's decision;
 * anything else is dead. */
static void s_on_reject(router_t *r, dest_t *d, delivery_t *dl, const char *error)
{
	bool has_fallback = dl->kind == DL_PRIMARY && dl->flow && dl->flow->route->n_fallback > 0;
	json_t *extra = s_dl_json(dl);

	d->rejected++;
	if (dl->flow && dl->flow->route->stat)
		dl->flow->route->stat->rejected++;
	json_object_set_new(extra, "error", json_string(error));
	stream_publish(r->stream, "rejected", NULL, dl->ev->msg, extra);
	if (delivery_decide(KANAL_OUTCOME_REJECT, dl->attempt, NULL, r->stopping, has_fallback) ==
	    DELIVERY_HOLD) {
		flow_t *f = dl->flow;
		s_trace(r, dl, "reject");
		s_journal_row(r, dl, JOURNAL_REJECTED, 0, error);
		f->primaries_rejected++;
		dl->next = f->held;
		f->held = dl;
		delivery_flow_primary_done(r, f);
		return;
	}
	s_trace(r, dl, "dead");
	delivery_dead_primary(r, &dl, "rejected", true);
}

void delivery_reject(router_t *r, delivery_t *dl, const char *error)
{
	dl->by_kanald = true; /* no connector saw it: its dead letter gets a notice */
	s_on_reject(r, dl->dest, dl, error);
}

void delivery_on_outcome(router_t *r, dest_t *d, const bus_outcome_t *o, const char *error)
{
	delivery_t *dl = router_take_inflight(d, o->id);
	kanal_msg_t *reply = o->reply;

	d->progress_ms = r->now_ms; /* read once per frame of outcomes */
	if (!dl) {
		log_warn("router", "'%s' answered unknown delivery %llu", d->name,
			 (unsigned long long)o->id);
		kanal_msg_destroy(&reply);
		return;
	}
	if (dl->kind == DL_ENRICH) {
		s_enrich_outcome(r, dl, o->outcome, error, &reply);
		router_delivery_free(r, &dl);
		return;
	}
	if (dl->kind == DL_REQUEST) {
		s_on_request_reply(r, dl, o->outcome, &reply);
		return;
	}
	if (reply) /* only a service's answer has one */
		kanal_msg_destroy(&reply);
	if (dl->cluster_msg) {
		cluster_router_outcome(r, d, dl, o->outcome, o->retry_after_ms, error);
		return;
	}
	if (o->outcome == KANAL_OUTCOME_OK) {
		s_on_ok(r, d, dl);
		return;
	}
	delivery_error(dl, error);
	if (o->outcome == KANAL_OUTCOME_RETRY)
		s_on_retry(r, d, dl, o->retry_after_ms, error);
	else
		s_on_reject(r, d, dl, error);
}

/* ---- timers: retries and enrich timeouts ---------------------------------------------- */

void delivery_run_timers(router_t *r)
{
	int64_t now = kanal_now_ms();

	while (r->retries && r->retries->due_ms <= now) {
		delivery_t *dl = r->retries;
		r->retries = dl->next;
		router_enqueue(r, dl);
	}
	for (flow_t *f = r->enriching, *next; f; f = next) {
		next = f->enrich_next;
		if (f->enrich_deadline <= now && f->enrich_waiting) {
			/* The backoff is over: ask the service again. */
			s_enrich_unlink(r, f);
			f->enrich_waiting = false;
			delivery_enrich_next(r, f);
			next = r->enriching; /* the list changed under us */
			continue;
		}
		if (f->enrich_deadline <= now) {
			char why[64];
			s_enrich_unlink(r, f);
			s_enrich_cancel(r, f);
			f->enrich_dl = NULL; /* a late answer finds no owner and is dropped */
			snprintf(why, sizeof why, "no reply within %lld ms",
				 (long long)(f->route->enrich[f->enrich_step].timeout_ms > 0
						     ? f->route->enrich[f->enrich_step].timeout_ms
						     : r->conf->enrich_timeout_ms));
			delivery_enrich_failed(r, f, why, true);
			next = r->enriching; /* it may have been put back to wait */
		}
	}
}

int64_t delivery_next_timer(const router_t *r)
{
	int64_t next = -1;

	if (r->retries)
		next = r->retries->due_ms;
	for (const flow_t *f = r->enriching; f; f = f->enrich_next)
		if (next < 0 || f->enrich_deadline < next)
			next = f->enrich_deadline;
	return next;
}
