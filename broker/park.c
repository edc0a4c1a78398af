/*
 * broker/park.c — events kept on disk instead of in memory, on the router's thread. With
 * the journal, an accepted event whose destinations are full is *parked* (router_accept
 * writes it to the journal unrouted); park_page_in takes parked events back, oldest first,
 * while their destinations have room, keeping each destination's order. It also runs the
 * graceful stop: sources close, in-flight work gets until the shutdown deadline, what is
 * still undelivered is spilled (kept open in the journal, or written to the dead-letter
 * file in memory mode), and the plugins stop in reverse order.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "router_int.h"

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
		router_delivery_free(r, &dl);
		return;
	}
	if ((r->journal && dl->ev->jev) || dl->cluster_msg) {
		/* The journal keeps it: the event stays open and resumes on the next start (in
		 * cluster mode JetStream gives it to a node after AckWait). */
		dl->spilled = true;
		router_delivery_free(r, &dl);
		return;
	}
	if (f)
		f->refs++;
	delivery_dead(r, &dl, reason);
	if (f && --f->primaries_open <= 0) {
		delivery_t *held = f->held;
		f->held = NULL;
		while (held) {
			delivery_t *next = held->next;
			delivery_dead(r, &held, "rejected");
			held = next;
		}
	}
	router_flow_release(r, &f);
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
			if (!(r->journal && dl->ev->jev) && !dl->cluster_msg &&
			    dl->kind != DL_ENRICH && dl->kind != DL_REQUEST &&
			    deadletter_write(r->deadletter, dl->ev->msg, router_route_name(dl),
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
			router_flow_release(r, &f); /* stays open in the journal */
			continue;
		}
		delivery_enrich_failed(r, f, "kanald stopped", false);
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
					log_error("router",
						  "cannot keep held event %s in the journal: %s",
						  kanal_msg_id(h->msg), journal_error(r->journal));
				kanal_msg_destroy(&h->msg);
				r->acks[h->origin]++;
				free(h);
				continue;
			}
			ev = router_shared_new(&h->msg);
			if (ev) {
				delivery_t *dl = router_delivery_new(
					r, DL_DEFAULT, ev, NULL, router_dest(r, ROUTES_DEADLETTER));
				router_shared_release(&ev);
				if (dl)
					delivery_dead(r, &dl, "kanald stopped before routing");
			}
			r->acks[h->origin]++;
			free(h);
		}
	for (size_t i = 0; i < r->n_instances; i++)
		r->held[i].tail = NULL;
}

/* ---- paging parked events back in ------------------------------------------------------ */

typedef struct page {
	router_t *r;
	bool *blocked; /* per destination: full, or an earlier parked event is stuck on it */
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
			dest_t *d = router_dest(r, n ? stack[i]->to[k]
						     : routes_default(r->table->routes));
			if (d && (pg->blocked[d - r->dests] ||
				  router_dest_full(r, d, kanal_msg_size(msg))))
				blocked = true;
		}
	if (blocked) {
		/* Keep each destination's order: nothing later for these may pass it. */
		for (i = 0; i < (n ? n : 1); i++)
			for (k = 0; k < (n ? stack[i]->n_to : 1); k++) {
				dest_t *d = router_dest(r, n ? stack[i]->to[k]
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
	router_count_parked(r, stack, n, -1);
	ev = router_shared_new(&msg);
	if (!ev || !(ev->jev = calloc(1, sizeof *ev->jev))) {
		router_shared_release(&ev);
		return 1;
	}
	ev->jev->seq = seq;
	ev->jev->refs = 1;
	ev->jev->open = 1;
	if (n == 0) {
		dest_t *d = router_dest(r, routes_default(r->table->routes));
		delivery_t *dl = d ? router_delivery_new(r, DL_DEFAULT, ev, NULL, d) : NULL;
		if (dl)
			router_enqueue(r, dl);
	} else {
		router_start_flows(r, ev, stack, n, NULL, NULL, 0);
	}
	router_jev_close(r, ev->jev);
	router_shared_release(&ev);
	return ++pg->taken >= 512 || pg->scanned >= 4096;
}

/* Takes parked events back into memory, oldest first, while their destinations have room
 * to spare (below half their queue), so that memory holds a window and the disk the rest. */
void park_page_in(router_t *r)
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

static void s_drain_outcomes(router_t *r)
{
	char id[128];
	outcome_frame_t f;
	int n;

	while ((n = router_recv_routed(r->deliver_sock, id, sizeof id, &f, sizeof f)) >= 0) {
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

/* True once router_force_stop was called; the deadline becomes now, so that what follows
 * (the plugins' stop) does not wait either. */
static bool s_forced(router_t *r, int64_t *deadline)
{
	if (!__atomic_load_n(&r->force_stop, __ATOMIC_ACQUIRE))
		return false;
	*deadline = kanal_now_ms();
	return true;
}

void park_shutdown(router_t *r)
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
	while (r->closed_count < running && kanal_now_ms() < deadline && !s_forced(r, &deadline))
		router_poll_once(r, 20, false);
	/* 2. In-flight work finishes, until the deadline (or a second SIGTERM). */
	while (!s_idle(r) && kanal_now_ms() < deadline && !s_forced(r, &deadline))
		router_poll_once(r, 20, false);
	if (!s_idle(r))
		log_warn("router",
			 "shutdown deadline reached with work undelivered; it is kept in %s",
			 r->journal ? journal_path(r->journal) : deadletter_path(r->deadletter));
	/* Past the deadline, instance threads stop running the plugin on what is queued. */
	for (size_t i = 0; i < r->n_instances; i++)
		__atomic_store_n(&r->instances[i]->abandon, 1, __ATOMIC_RELEASE);
	s_spill(r);
	commit_end_turn(r);
	/* 3. Plugins stop, in reverse order of their start. */
	for (size_t i = r->n_instances; i-- > 0;) {
		bus_stop_t st = { BUS_STOP,
				  deadline > kanal_now_ms() ? deadline : kanal_now_ms() + 1000 };
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
		router_delivery_free(r, &dl);
	}
}
