/*
 * broker/commit.c — the end of a router turn: the journal's group commit and what follows
 * it. Everything a turn wrote to the journal is committed together; only then does it take
 * effect — deliveries go to the instances, emits are acknowledged, the gateway answers —
 * because only then has kanal accepted it. When the commit fails, the turn's events were
 * refused: their senders hear so, and none of them is delivered (issue 12). Without a
 * journal nothing waits for a commit, and work takes effect in the middle of a turn.
 * Runs on the router's thread (docs/design/broker-map.md).
 */
#include <stdio.h>
#include <stdlib.h>

#include "deadnotice.h"
#include "log.h"
#include "router_int.h"

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

/* See router_int.h. When out of memory the caller keeps what it had. */
bool commit_keep(router_t *r, shared_t *ev, kanal_msg_t **msg_p, int origin)
{
	turn_event_t *t;

	if (r->n_turn == r->turn_cap) {
		size_t cap = r->turn_cap ? r->turn_cap * 2 : 256;
		turn_event_t *grown = realloc(r->turn, cap * sizeof *grown);
		if (!grown)
			return false;
		r->turn = grown;
		r->turn_cap = cap;
	}
	t = &r->turn[r->n_turn++];
	t->ev = ev;
	t->msg = NULL;
	t->origin = origin;
	if (ev)
		ev->refs++;
	else {
		t->msg = *msg_p;
		*msg_p = NULL;
	}
	return true;
}

/* See router_int.h. */
bool commit_hold_again(router_t *r, size_t origin, kanal_msg_t **msg_p)
{
	held_emit_t *h = calloc(1, sizeof *h);
	struct held_queue *q = &r->held[origin];

	if (!h)
		return false;
	h->msg = *msg_p;
	*msg_p = NULL;
	h->origin = origin;
	h->next = q->head;
	q->head = h;
	if (!q->tail)
		q->tail = h;
	r->n_held++;
	return true;
}

/* The turn's commit is settled: worked (`refused` false), or failed, and then its events
 * were refused — every sender heard so: the gateway's clients "not accepted" (gateway.c),
 * an instance's emits were not acknowledged and go back to be held, in order, ahead of
 * what the instance emitted since, until the journal takes writes again. None of a refused
 * event's deliveries goes out (router_dispatch drops them). */
static void s_turn_settle(router_t *r, bool refused)
{
	size_t n = r->n_turn;

	r->n_turn = 0;
	/* Backwards, so that putting each emit at the head of its queue keeps their order. */
	for (size_t i = n; i-- > 0;) {
		turn_event_t *t = &r->turn[i];
		kanal_msg_t *msg = t->msg;

		if (refused && t->ev && t->ev->jev)
			t->ev->jev->refused = true;
		if (refused) {
			r->accepted--;
			if (t->origin >= 0 && !msg && t->ev)
				msg = kanal_msg_dup(t->ev->msg);
			if (t->origin >= 0 && msg) {
				if (commit_hold_again(r, (size_t)t->origin, &msg)) {
					if (r->acks[t->origin])
						r->acks[t->origin]--;
				} else {
					log_error("router", "out of memory holding back event %s",
						  kanal_msg_id(msg));
				}
			}
		}
		kanal_msg_destroy(&msg);
		router_shared_release(&t->ev);
	}
	if (r->turn_cap > 4096) {
		free(r->turn);
		r->turn = NULL;
		r->turn_cap = 0;
	}
}

/* Without a journal nothing waits for a commit, so work need not wait for the end of the
 * turn: after each batch of outcomes the destination gets its next deliveries, and after
 * each batch of emits the destinations get theirs and the sources their acks. Under a
 * flood a turn reads several frames; a sink that had to wait for all of them to be read
 * sat idle, and with it the whole pipeline (issue 5). With the journal, deliveries and
 * acks follow the turn's commit (commit_end_turn). `only`: just that destination. */
void commit_mid_turn(router_t *r, dest_t *only)
{
	if (r->journal)
		return;
	if (only) {
		if (only->head)
			router_dispatch(r, only);
		return;
	}
	for (size_t i = 0; i < r->n_dests; i++)
		if (r->dests[i].head)
			router_dispatch(r, &r->dests[i]);
	s_flush_acks(r);
}

/* The blob sweep's question: does an open event or a dead letter name uri? */
static bool s_blob_named(void *journal, const char *uri)
{
	return journal && journal_blob_named(journal, uri);
}

void commit_sweep_blobs(router_t *r)
{
	int swept;

	/* In cluster mode no journal counts references: the JetStream store's age limit
	 * (nats.blob_retention) removes blobs instead, and a sweep here would remove what
	 * other nodes' open events still name (docs/design/blobs.md). */
	if (!r->conf->blobs || r->conf->journal_cluster)
		return;
	swept = kanal__blob_sweep(r->conf->blobs, ROUTER_BLOB_GRACE_MS, s_blob_named, r->journal);
	if (swept > 0)
		log_info("router", "removed %d blob%s that no event names", swept,
			 swept == 1 ? "" : "s");
}

/* Ends a turn of the loop: commit what the turn wrote (group commit), then let it take
 * effect — deliveries go to the instances, emits are acknowledged, the gateway answers. */
void commit_end_turn(router_t *r)
{
	const char *failure = NULL;
	char why[300];

	deadnotice_flush(r); /* the turn's dead letters tell their senders, in this commit */
	if (r->journal) {
		int64_t now = kanal__wall_ms();
		if (now >= r->next_prune_ms && !r->journal_failed) {
			int64_t keep = r->conf->journal_retention_ms > r->conf->dedupe_window_ms
					       ? r->conf->journal_retention_ms
					       : r->conf->dedupe_window_ms;
			journal_prune(r->journal, now - keep);
			admin_dlq_retention(r, now);
			commit_sweep_blobs(r);
			r->next_prune_ms = now + 60000;
		}
		if (r->journal_failed && now >= r->next_prune_ms - 59000) {
			/* Probe once a second whether the disk takes writes again. */
			if (journal_begin(r->journal) == 0 && journal_commit(r->journal) == 0) {
				r->journal_failed = false;
				log_info("router",
					 "the journal %s is writable again; accepting events",
					 journal_path(r->journal));
				stream_publish(r->stream, "journal.recovered", "-", NULL, NULL);
			}
			r->next_prune_ms = now + 60000;
		}
		park_page_in(r);
		if (journal_dirty(r->journal) && journal_commit(r->journal) < 0) {
			snprintf(why, sizeof why,
				 "not accepted: the journal cannot be written (%s)",
				 journal_error(r->journal));
			failure = why;
			router_journal_broken(r);
		}
		s_turn_settle(r, failure != NULL);
	}
	for (size_t i = 0; i < r->n_dests; i++)
		if (r->dests[i].head)
			router_dispatch(r, &r->dests[i]);
	s_flush_acks(r);
	gateway_flush_replies(r, failure);
}

void commit_forget(router_t *r)
{
	s_turn_settle(r, false);
	free(r->turn);
	r->turn = NULL;
	r->turn_cap = 0;
}
