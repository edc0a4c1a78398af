/*
 * broker/recover.c — recovery at start, on the router's thread before its loop: every
 * event the journal holds open is routed again against the current table, the deliveries
 * the journal says ended (delivered, dead) are skipped, retries wait for their recorded
 * time, rejections wait with their flow's decision, and parked events are only counted
 * (park.c pages them in). A replayed dead letter (admin.c) takes the same path.
 */
#include <string.h>

#include "log.h"
#include "router_int.h"

/* ---- recovery ------------------------------------------------------------------------------ */

/* Resumes one open event from the journal: routed again against the current table, its
 * finished deliveries skipped, retries waiting for their recorded time. */
void recover_event(void *arg, uint64_t seq, kanal_msg_t *msg, bool parked,
		   const journal_row_t *rows, size_t n_rows)
{
	router_t *r = arg;
	const route_t *stack[64];
	shared_t *ev;
	size_t n;

	if (parked) {
		/* Still waiting on disk: count it where it is bound, page it in later. */
		n = routes_match(r->table->routes, msg, stack, 64);
		router_count_parked(r, stack, n < 64 ? n : 64, +1);
		r->n_parked++;
		kanal_msg_destroy(&msg);
		return;
	}
	ev = router_shared_new(&msg);
	if (!ev || !(ev->jev = calloc(1, sizeof *ev->jev))) {
		log_error("router", "out of memory resuming journal event #%llu",
			  (unsigned long long)seq);
		router_shared_release(&ev);
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
		router_start_flows(r, ev, &again, 1, NULL, NULL, 0);
	} else if (n_rows > 0 && rows[0].attempts < 0) {
		/* A replayed dead letter: for its one destination only. */
		dest_t *d = router_dest(r, rows[0].destination);
		const journal_row_t *row = router_row(
			rows, n_rows, *rows[0].route ? rows[0].route : NULL, rows[0].destination);
		if (!d)
			d = router_dest(r, ROUTES_DEADLETTER);
		if (!row || (row->state != JOURNAL_DELIVERED && row->state != JOURNAL_DEAD)) {
			delivery_t *dl = router_delivery_new(r, DL_DEFAULT, ev, NULL, d);
			if (dl) {
				if (*rows[0].route)
					dl->replay_route = strdup(rows[0].route);
				if (!router_resume(r, dl, row))
					router_enqueue(r, dl);
			}
		}
	} else if ((n = routes_match(r->table->routes, ev->msg, stack, 64)) == 0) {
		dest_t *d = router_dest(r, routes_default(r->table->routes));
		const journal_row_t *row = d ? router_row(rows, n_rows, NULL, d->name) : NULL;
		if (d &&
		    (!row || (row->state != JOURNAL_DELIVERED && row->state != JOURNAL_DEAD))) {
			delivery_t *dl = router_delivery_new(r, DL_DEFAULT, ev, NULL, d);
			if (dl && !router_resume(r, dl, row))
				router_enqueue(r, dl);
		}
	} else {
		router_start_flows(r, ev, stack, n < 64 ? n : 64, NULL, rows, n_rows);
	}
	router_jev_close(r, ev->jev);
	router_shared_release(&ev);
}

void recover_open(router_t *r)
{
	int n;

	if (!r->journal)
		return;
	n = journal_load_open(r->journal, recover_event, r);
	if (n > 0)
		log_info("router", "resumed %d open event%s from the journal %s", n,
			 n == 1 ? "" : "s", journal_path(r->journal));
	commit_end_turn(r);
}
