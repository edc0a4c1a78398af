/*
 * broker/cluster_router.c — cluster mode's side of the router, on the router's thread
 * (docs/design/cluster.md). Accept: an event from the gateway or an instance's emit that no
 * enrich step reads is routed on this node at once — one message per (route, destination)
 * to <prefix>_DLV with the ids the routing path would give them —, any other is published
 * to <prefix>_IN with Nats-Msg-Id from (source, id); its sender hears after the PubAcks
 * (gateway replies wait, emits are acknowledged late). Route once: an event the shared
 * `route` consumer hands to this node is matched against the routes and published once per
 * (route, destination) to <prefix>_DLV with Nats-Msg-Id (event, route, destination), then
 * acknowledged; a route with enrich steps runs them first on this node's enrich services
 * (delivery.c's steps and timeouts) while the event stays unacknowledged — a transient
 * failure gives it back with the route's backoff — and publishes the enriched event, or its
 * dead letter and notice. Deliver: a message of a local destination's consumer becomes a
 * delivery on the usual path (queues, windows, instance threads); its outcome acks it, naks
 * it with the route's backoff, publishes the route's fallback or a dead letter to
 * <prefix>_DEAD with, when kanald gave it up itself, its kanal.delivery.dead notice.
 * cluster.c is the NATS side: connection, streams, fetch threads, the inbox.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "cluster_lease.h"
#include <kanal/time.h>

#include "deadnotice.h"
#include "log.h"
#include "router_int.h"

#define WAITER_BUCKETS 4096

/* A gateway request whose reply waits for PubAcks: what to change in it when they come. */
struct cluster_reply {
	int refs;
	int outstanding;
	struct reply_change {
		char *id, *status, *reason;
	} * changes;
	size_t n_changes;
};

typedef enum waiter_kind { W_GATEWAY, W_EMIT, W_GROUP } waiter_kind_t;

/* The sender of an accepted event, to answer once JetStream stored it: a gateway request's
 * result (W_GATEWAY) or an instance's emit (W_EMIT). */
typedef struct sender {
	waiter_kind_t kind;
	cluster_reply_t *reply; /* W_GATEWAY */
	char *id;               /* W_GATEWAY: the event's id, to find its result */
	kanal_msg_t *msg;       /* W_EMIT: the event, held again should the publish fail */
	int origin;             /* W_EMIT */
} sender_t;

/* A set of publishes finished once each is answered: a fetched message's (an event being
 * routed, acknowledged once its deliveries are stored — each of its flows still enriching
 * holds it too —, or a delivery whose fallback or dead letter is being stored), or, with
 * msg NULL, an event routed as it was accepted, whose sender hears once its deliveries are
 * stored (docs/design/cluster.md, Routing at accept). */
typedef struct msg_group {
	natsMsg *msg;
	size_t consumer;
	int outstanding;
	bool failed;
	int64_t retry_ms;   /* > 0: an enrich flow asks again after this (NakWithDelay) */
	int64_t touched_ms; /* fetched, or last told JetStream it is in progress */
	/* Routed at accept (msg NULL): */
	sender_t sender;
	int published, duplicates; /* publishes sent, and answered Duplicate */
	int publish_rc;            /* the first publish that failed at once: why */
	char *error;               /* the first failure, in words */
	kanal_msg_t *event;        /* for the stream's `accepted` line */
	table_t *table;            /* holds `matched` valid until the answer */
	const route_t **matched;   /* counted once the event is stored (not for a duplicate) */
	size_t n_matched;
} msg_group_t;

/* One publish waiting for its PubAck, by token. */
typedef struct waiter {
	uint64_t token;
	sender_t sender;    /* its kind is the waiter's; W_GATEWAY, W_EMIT: the sender of an
			     * event published to the accept stream */
	msg_group_t *group; /* W_GROUP */
	struct waiter *next;
} waiter_t;

struct cluster_router {
	cluster_t *link;
	dest_t **dests; /* the local destinations, in the consumers' order */
	size_t n_dests;
	uint64_t next_token;
	int64_t next_tick_ms;
	int64_t next_heartbeat_ms;
	char started_at[64];
	waiter_t *buckets[WAITER_BUCKETS];
	cluster_reply_t *request; /* the gateway request being read */
	char error[600];          /* why the last event was not accepted */
};

static const route_retry_t s_default_retry = { 5, 1000, 300000 };

/* ---- waiters --------------------------------------------------------------------------- */

static waiter_t *s_waiter_new(struct cluster_router *cr, waiter_kind_t kind)
{
	waiter_t *w = calloc(1, sizeof *w);

	if (!w)
		return NULL;
	w->token = ++cr->next_token;
	w->sender.kind = kind;
	w->next = cr->buckets[w->token % WAITER_BUCKETS];
	cr->buckets[w->token % WAITER_BUCKETS] = w;
	return w;
}

static waiter_t *s_waiter_take(struct cluster_router *cr, uint64_t token)
{
	waiter_t **p = &cr->buckets[token % WAITER_BUCKETS];

	for (; *p; p = &(*p)->next) {
		if ((*p)->token == token) {
			waiter_t *w = *p;
			*p = w->next;
			return w;
		}
	}
	return NULL;
}

static void s_reply_release(cluster_reply_t **w_p)
{
	cluster_reply_t *w = *w_p;

	*w_p = NULL;
	if (!w || --w->refs > 0)
		return;
	for (size_t i = 0; i < w->n_changes; i++) {
		free(w->changes[i].id);
		free(w->changes[i].status);
		free(w->changes[i].reason);
	}
	free(w->changes);
	free(w);
}

static void s_reply_change(cluster_reply_t *w, const char *id, const char *status,
			   const char *reason)
{
	struct reply_change *grown = realloc(w->changes, (w->n_changes + 1) * sizeof *grown);

	if (!grown)
		return;
	w->changes = grown;
	grown[w->n_changes].id = strdup(id ? id : "");
	grown[w->n_changes].status = strdup(status);
	grown[w->n_changes].reason = reason ? strdup(reason) : NULL;
	w->n_changes++;
}

/* ---- groups ----------------------------------------------------------------------------- */

static msg_group_t *s_group_new(natsMsg **msg_p, size_t consumer)
{
	msg_group_t *g = calloc(1, sizeof *g);

	if (!g)
		return NULL; /* *msg_p stays with the caller */
	g->msg = *msg_p;
	*msg_p = NULL;
	g->consumer = consumer;
	g->outstanding = 1; /* held by whoever builds it until its publishes are out */
	return g;
}

static void s_accept_finish(router_t *r, msg_group_t *g);

/* Frees g and what it holds (its message unacknowledged: JetStream brings it back). */
static void s_group_free(msg_group_t *g)
{
	natsMsg_Destroy(g->msg);
	s_reply_release(&g->sender.reply);
	free(g->sender.id);
	kanal_msg_destroy(&g->sender.msg);
	kanal_msg_destroy(&g->event);
	router_table_release(&g->table);
	free(g->matched);
	free(g->error);
	free(g);
}

/* One of g's publishes was answered (or the builder let go): when none is left, the message
 * is acknowledged — or, when a publish failed, given back to be tried again in a second;
 * when an enrich flow is to ask again, given back with its delay. An event routed at accept
 * has its sender answered instead. */
static void s_group_release(router_t *r, msg_group_t *g)
{
	if (--g->outstanding > 0)
		return;
	if (!g->msg) {
		s_accept_finish(r, g);
		s_group_free(g);
		return;
	}
	if (g->failed)
		natsMsg_NakWithDelay(g->msg, 1000, NULL);
	else if (g->retry_ms > 0)
		natsMsg_NakWithDelay(g->msg, g->retry_ms, NULL);
	else
		natsMsg_Ack(g->msg, NULL);
	natsMsg_Destroy(g->msg);
	cluster_done(r->cluster->link, g->consumer);
	free(g);
}

/* Publishes for group g (one more outstanding until its PubAck). */
static void s_group_publish(router_t *r, msg_group_t *g, const char *subject,
			    const cluster_header_t *h, size_t n_h, const char *body, size_t len)
{
	struct cluster_router *cr = r->cluster;
	waiter_t *w = s_waiter_new(cr, W_GROUP);
	kanal_error_t err;
	int rc;

	if (!w) {
		g->failed = true;
		return;
	}
	w->group = g;
	g->outstanding++;
	kanal_error_clear(&err);
	if ((rc = cluster_publish(cr->link, subject, h, n_h, body, len, w->token, &err)) < 0) {
		s_waiter_take(cr, w->token);
		free(w);
		g->outstanding--;
		g->failed = true;
		if (!g->publish_rc) {
			g->publish_rc = rc;
			snprintf(cr->error, sizeof cr->error, "%s",
				 err.text[0] ? err.text : "busy");
		}
		log_warn_limited("cluster", "cannot publish to %s: %s", subject,
				 err.text[0] ? err.text : "the window is full");
		return;
	}
	g->published++;
}

/* ---- accepting ------------------------------------------------------------------------------ */

/* Where msg goes in the accept stream: its subject (by type) into subject, and its
 * Nats-Msg-Id from (source, id) — the source's length first, so that no two pairs give the
 * same text — returned new, or NULL when out of memory. */
static char *s_in_address(struct cluster_router *cr, const kanal_msg_t *msg, char *subject,
			  size_t size)
{
	const char *source = kanal_msg_source(msg), *id = kanal_msg_id(msg);
	size_t len = strlen(source) + strlen(id) + 32;
	char *msg_id = malloc(len);

	if (msg_id)
		snprintf(msg_id, len, "in:%zu:%s%s", strlen(source), source, id);
	cluster_subject_in(cr->link, kanal_msg_type(msg), subject, size);
	return msg_id;
}

static void s_publish_delivery(router_t *r, msg_group_t *g, const kanal_msg_t *msg, const char *raw,
			       size_t raw_len, const char *event, const route_t *rt, size_t i,
			       bool fallback);

/* Makes the sender of *msg_p (a gateway request's result when origin < 0, else instance
 * origin's emit) s, to be answered by s_sender_answer. A gateway's event, which s does not
 * keep, goes to *keep_out when not NULL. Ownership: takes *msg_p. */
static void s_sender_set(struct cluster_router *cr, sender_t *s, kanal_msg_t **msg_p, int origin,
			 kanal_msg_t **keep_out)
{
	if (origin < 0) {
		s->kind = W_GATEWAY;
		s->reply = cr->request;
		s->reply->refs++;
		s->reply->outstanding++;
		s->id = strdup(kanal_msg_id(*msg_p));
		if (keep_out) {
			*keep_out = *msg_p;
			*msg_p = NULL;
		}
		kanal_msg_destroy(msg_p);
	} else {
		s->kind = W_EMIT;
		s->origin = origin;
		s->msg = *msg_p;
		*msg_p = NULL;
	}
}

/* Answers sender s: the event was stored (status 0), had been stored before
 * (KANAL_EDUPLICATE), or was not stored (KANAL_EIO, `error` says why): a gateway result
 * says so, an emit is acknowledged — or held again, to be published again. Ownership:
 * empties s. */
static void s_sender_answer(router_t *r, sender_t *s, int status, const char *error)
{
	if (s->kind == W_GATEWAY) {
		if (status == KANAL_EDUPLICATE) {
			r->duplicates++;
			s_reply_change(s->reply, s->id, "duplicate", NULL);
		} else if (status < 0) {
			char why[300];
			snprintf(why, sizeof why, "not accepted: %s", error);
			s_reply_change(s->reply, s->id, "error", why);
		} else {
			r->accepted++;
		}
		s->reply->outstanding--;
		s_reply_release(&s->reply);
		free(s->id);
		s->id = NULL;
		return;
	}
	if (status < 0 && status != KANAL_EDUPLICATE) {
		/* An instance's emit that JetStream did not store: held again, first in its
		 * source's queue, and tried again with the held ones. */
		commit_hold_again(r, (size_t)s->origin, &s->msg);
		log_warn_limited("cluster", "an emit of '%s' was not stored, trying again: %s",
				 r->instances[s->origin]->name, error);
	} else {
		if (status == KANAL_EDUPLICATE)
			r->duplicates++;
		else
			r->accepted++;
		r->acks[s->origin]++;
	}
	kanal_msg_destroy(&s->msg);
}

/* True when msg is to be routed as it is accepted: no route it matches has enrich steps
 * (they run on the node that takes the event from the accept stream, with its redelivery
 * and backoff). The matched routes go to m (up to cap; *n their count). */
static bool s_route_at_accept(router_t *r, const kanal_msg_t *msg, const route_t **m, size_t cap,
			      size_t *n)
{
	*n = routes_match(r->table->routes, msg, m, cap);
	if (*n > cap)
		return false; /* more routes than this is not a routing table: the old path */
	for (size_t i = 0; i < *n; i++)
		if (m[i]->n_enrich)
			return false;
	return true;
}

/* Routes *msg_p as it is accepted (docs/design/cluster.md, Routing at accept): one message
 * per (matched route, destination) — the default destination when none matched — to the
 * delivery stream with the ids the routing path gives them, (event, route, destination)
 * where event is the accept stream's id of (source, id). The sender hears once all are
 * answered (s_accept_finish). Returns as cluster_router_accept; when nothing could be
 * published at once (the window is full), *msg_p stays with the caller. */
static int s_accept_routed(router_t *r, kanal_msg_t **msg_p, int origin, const route_t **m,
			   size_t n)
{
	struct cluster_router *cr = r->cluster;
	msg_group_t *g = calloc(1, sizeof *g);
	char subject[300], event[300], *msg_id = NULL, *body = NULL;
	size_t len = 0;
	int rc;

	if (g && n && !(g->matched = malloc(n * sizeof *g->matched)))
		goto nomem;
	msg_id = g ? s_in_address(cr, *msg_p, subject, sizeof subject) : NULL;
	body = msg_id ? kanal_msg_to_json(*msg_p, &len) : NULL;
	if (!body)
		goto nomem;
	/* As the routing node reads it from the message's header (s_on_event). */
	snprintf(event, sizeof event, "%s", msg_id);
	g->outstanding = 1; /* this function's, until every publish is out */
	if (n == 0)
		s_publish_delivery(r, g, *msg_p, body, len, event, NULL, 0, false);
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < m[i]->n_to; k++)
			s_publish_delivery(r, g, *msg_p, body, len, event, m[i], k, false);
	kanal_free(body);
	free(msg_id);
	if (g->failed && g->published == 0) {
		/* Nothing went out: the sender hears at once (busy, or why not). */
		rc = g->publish_rc ? g->publish_rc : KANAL_ENOMEM;
		s_group_free(g);
		return rc;
	}
	if (n)
		memcpy(g->matched, m, n * sizeof *m);
	g->n_matched = n;
	g->table = r->table;
	r->table->refs++;
	s_sender_set(cr, &g->sender, msg_p, origin, &g->event);
	s_group_release(r, g);
	return ROUTER_ACK_LATER;
nomem:
	kanal_free(body);
	free(msg_id);
	if (g)
		s_group_free(g);
	return KANAL_ENOMEM;
}

/* Every publish of an event routed at accept is answered: its sender hears `accepted` when
 * all were stored (some perhaps before, by an earlier try), `duplicate` when every one had
 * been (a resend), an error when one failed (the sender resends; the stored ones are then
 * duplicates). A stored event is counted, its routes' matches too, and put on the stream
 * as the routing node does. */
static void s_accept_finish(router_t *r, msg_group_t *g)
{
	int status = g->failed                                           ? KANAL_EIO
		     : g->published > 0 && g->duplicates == g->published ? KANAL_EDUPLICATE
									 : 0;
	const kanal_msg_t *event = g->event ? g->event : g->sender.msg;

	if (status == 0) {
		if (g->n_matched == 0)
			r->unmatched++;
		for (size_t i = 0; i < g->n_matched; i++)
			if (g->matched[i]->stat)
				g->matched[i]->stat->matched++;
		if (event)
			ROUTER_PUBLISH(r, "accepted", NULL, event,
				       json_pack("{s:s}", "node", "cluster"));
	}
	s_sender_answer(r, &g->sender, status,
			g->error ? g->error : "a delivery was not stored in the delivery stream");
}

int cluster_router_accept(router_t *r, kanal_msg_t **msg_p, int origin)
{
	struct cluster_router *cr = r->cluster;
	const route_t *stack[64];
	char subject[300], *msg_id, *body;
	size_t len, n;
	cluster_header_t h[1];
	kanal_error_t err;
	waiter_t *w;
	int rc;

	if (!cluster_connected(cr->link)) {
		snprintf(cr->error, sizeof cr->error, "the connection to NATS is down");
		return KANAL_EIO;
	}
	if (origin < 0 && !cr->request && !(cr->request = calloc(1, sizeof *cr->request)))
		return KANAL_ENOMEM;
	if (s_route_at_accept(r, *msg_p, stack, 64, &n))
		return s_accept_routed(r, msg_p, origin, stack, n);
	/* A route with enrich steps: through the accept stream, to a routing node. */
	body = kanal_msg_to_json(*msg_p, &len);
	msg_id = s_in_address(cr, *msg_p, subject, sizeof subject);
	w = s_waiter_new(cr, origin < 0 ? W_GATEWAY : W_EMIT);
	if (!body || !msg_id || !w) {
		kanal_free(body);
		free(msg_id);
		if (w)
			free(s_waiter_take(cr, w->token));
		return KANAL_ENOMEM;
	}
	h[0] = (cluster_header_t){ "Nats-Msg-Id", msg_id };
	kanal_error_clear(&err);
	rc = cluster_publish(cr->link, subject, h, 1, body, len, w->token, &err);
	kanal_free(body);
	free(msg_id);
	if (rc < 0) {
		free(s_waiter_take(cr, w->token));
		snprintf(cr->error, sizeof cr->error, "%s", err.text[0] ? err.text : "busy");
		return rc;
	}
	s_sender_set(cr, &w->sender, msg_p, origin, NULL);
	return ROUTER_ACK_LATER;
}

json_t *cluster_router_status(router_t *r)
{
	const conf_nats_t *n = &r->conf->nats;
	json_t *servers = json_array();

	for (size_t i = 0; i < n->n_servers; i++)
		json_array_append_new(servers, json_string(n->servers[i]));
	return json_pack("{s:s, s:b, s:s, s:I, s:o}", "mode", "cluster", "connected",
			 cluster_connected(r->cluster->link), "stream_prefix", n->stream_prefix,
			 "replicas", (json_int_t)n->replicas, "servers", servers);
}

const char *cluster_router_error(router_t *r)
{
	return r->cluster ? r->cluster->error : "?";
}

cluster_reply_t *cluster_router_request_end(router_t *r)
{
	cluster_reply_t *w = r->cluster ? r->cluster->request : NULL;

	if (!w)
		return NULL;
	r->cluster->request = NULL;
	w->refs++; /* the gateway's */
	if (w->outstanding == 0) {
		/* Every publish failed at once: nothing to wait for. */
		s_reply_release(&w);
		return NULL;
	}
	return w;
}

bool cluster_router_reply_ready(const cluster_reply_t *w)
{
	return !w || w->outstanding == 0;
}

void cluster_router_reply_finish(cluster_reply_t **w_p, json_t *reply)
{
	cluster_reply_t *w = *w_p;
	json_t *results = json_object_get(reply, "results"), *res;
	size_t i;

	for (size_t k = 0; w && k < w->n_changes; k++) {
		json_array_foreach(results, i, res)
		{
			const char *st = json_string_value(json_object_get(res, "status"));
			const char *rid = json_string_value(json_object_get(res, "id"));
			if (!st || strcmp(st, "accepted") || !rid || strcmp(rid, w->changes[k].id))
				continue;
			json_object_set_new(res, "status", json_string(w->changes[k].status));
			if (w->changes[k].reason)
				json_object_set_new(res, "reason",
						    json_string(w->changes[k].reason));
			break;
		}
	}
	s_reply_release(w_p);
}

/* A PubAck (or a failure) for an accepted event's publish. */
static void s_on_puback(router_t *r, const cluster_item_t *it)
{
	waiter_t *w = s_waiter_take(r->cluster, it->token);

	if (!w)
		return;
	if (w->sender.kind == W_GROUP) {
		if (it->status == KANAL_EIO) {
			w->group->failed = true;
			if (!w->group->error)
				w->group->error = strdup(it->error);
			log_warn_limited("cluster", "%s", it->error);
		} else if (it->status == KANAL_EDUPLICATE) {
			w->group->duplicates++;
		}
		s_group_release(r, w->group);
	} else {
		s_sender_answer(r, &w->sender, it->status, it->error);
	}
	free(w);
}

/* ---- routing: an event from the shared work queue ---------------------------------------- */

static const route_t *s_route_named(router_t *r, const char *name)
{
	size_t n = routes_count(r->table->routes);

	if (!name || !*name)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const route_t *rt = routes_get(r->table->routes, i);
		if (!strcmp(rt->name, name))
			return rt;
	}
	return NULL;
}

/* Header `name` of m, "" when absent (or m is NULL: an event routed at accept). */
static const char *s_header(natsMsg *m, const char *name)
{
	const char *v = NULL;

	return m && natsMsgHeader_Get(m, name, &v) == NATS_OK && v ? v : "";
}

/* Publishes event msg as a dead letter for dest (group g acknowledges its message after). */
static void s_publish_dead(router_t *r, msg_group_t *g, const kanal_msg_t *msg, const char *event,
			   const char *route, const char *dest, const char *reason, int attempts,
			   const delivery_t *dl)
{
	const char *replay = s_header(g->msg, "Kanal-Replay");
	char subject[300], *msg_id, attempts_text[16], *errors = NULL, *body;
	size_t len, id_len = strlen(event) + strlen(route) + strlen(dest) + strlen(replay) + 32;
	json_t *errs = json_array();
	cluster_header_t h[7];

	for (size_t i = 0; dl && errs && i < dl->n_errors; i++)
		json_array_append_new(errs, json_string(dl->errors[i]));
	errors = errs ? json_dumps(errs, JSON_COMPACT) : NULL;
	json_decref(errs);
	msg_id = malloc(id_len);
	body = kanal_msg_to_json(msg, &len);
	if (!msg_id || !body) {
		g->failed = true;
		goto out;
	}
	/* A replayed letter that dies again is a new letter: its id names the replay. */
	snprintf(msg_id, id_len, "%s|%s|%s|dead%s%s", event, route, dest, *replay ? "|replay:" : "",
		 replay);
	snprintf(attempts_text, sizeof attempts_text, "%d", attempts);
	h[0] = (cluster_header_t){ "Nats-Msg-Id", msg_id };
	h[1] = (cluster_header_t){ "Kanal-Event", event };
	h[2] = (cluster_header_t){ "Kanal-Route", route };
	h[3] = (cluster_header_t){ "Kanal-Destination", dest };
	h[4] = (cluster_header_t){ "Kanal-Reason", reason };
	h[5] = (cluster_header_t){ "Kanal-Attempts", attempts_text };
	h[6] = (cluster_header_t){ "Kanal-Errors", errors ? errors : "[]" };
	cluster_subject_dead(r->cluster->link, dest, subject, sizeof subject);
	s_group_publish(r, g, subject, h, 7, body, len);
out:
	free(errors);
	free(msg_id);
	kanal_free(body);
}

static void s_dead_in(router_t *r, msg_group_t *g, const char *event, delivery_t *dl,
		      const route_t *rt, const char *reason);

/* Route rt's transform for dest refused msg: kanald's own REJECT, which no connector saw. As
 * in single-node mode (delivery_reject), a primary's goes to the route's fallback; else it is
 * a dead letter (one attempt) with a notice. */
static void s_transform_refused(router_t *r, msg_group_t *g, const kanal_msg_t *msg,
				const char *event, const route_t *rt, const char *dest,
				bool fallback, const char *error)
{
	char *errors[1] = { (char *)error };
	shared_t ev = { .msg = (kanal_msg_t *)msg };
	dest_t unknown = { .name = (char *)dest }, *d = router_dest(r, dest);
	delivery_t dl = { .kind = fallback ? DL_FALLBACK : DL_PRIMARY,
			  .ev = &ev,
			  .dest = d ? d : &unknown,
			  .attempt = 1,
			  .errors = errors,
			  .n_errors = 1,
			  .replay_route = (char *)rt->name,
			  .by_kanald = true };

	log_warn_limited("router", "route '%s': event %s for '%s': %s", rt->name, kanal_msg_id(msg),
			 dest, error);
	dl.dest->rejected++;
	if (rt->stat)
		rt->stat->rejected++;
	stream_publish(r->stream, "rejected", NULL, msg,
		       json_pack("{s:s, s:s, s:i, s:s}", "route", rt->name, "destination", dest,
				 "attempt", 1, "error", error));
	if (!fallback && rt->n_fallback) {
		if (rt->stat)
			rt->stat->fallback++;
		for (size_t i = 0; i < rt->n_fallback; i++)
			s_publish_delivery(r, g, msg, NULL, 0, event, rt, i, true);
		return;
	}
	s_dead_in(r, g, event, &dl, rt, "rejected");
}

/* Publishes one delivery of msg (transformed for dest by the route, when it says so) to
 * dest's subject; the builtin deadletter destination gets a dead letter instead. raw, when
 * not NULL, is msg as JSON already (the accepted event's bytes from IN): an untransformed
 * delivery publishes it as it is rather than serialising msg again. */
static void s_publish_delivery(router_t *r, msg_group_t *g, const kanal_msg_t *msg, const char *raw,
			       size_t raw_len, const char *event, const route_t *rt, size_t i,
			       bool fallback)
{
	const char *dest = !rt        ? routes_default(r->table->routes)
			   : fallback ? rt->fallback[i]
				      : rt->to[i];
	const char *route = rt ? rt->name : "";
	transform_t *t = rt ? routes_transform(rt, fallback, i) : NULL;
	kanal_msg_t *out = NULL;
	char subject[300], *msg_id, *body;
	size_t len, id_len = strlen(event) + strlen(route) + strlen(dest) + 16;
	cluster_header_t h[4];
	size_t n_h = 3;

	if (t) {
		kanal_error_t err;
		kanal_error_clear(&err);
		if (transform_apply(t, msg, &out, &err) != 0) {
			if (rt->stat)
				rt->stat->transform_failed++;
			s_transform_refused(r, g, msg, event, rt, dest, fallback,
					    err.text[0] ? err.text : "transform: out of memory");
			return;
		}
		msg = out;
	}
	if (!strcmp(dest, ROUTES_DEADLETTER)) {
		s_publish_dead(r, g, msg, event, route, dest,
			       rt ? "routed to deadletter" : "unmatched", 0, NULL);
		kanal_msg_destroy(&out);
		return;
	}
	msg_id = malloc(id_len);
	if (raw && !out) {
		body = (char *)raw;
		len = raw_len;
	} else {
		body = kanal_msg_to_json(msg, &len);
	}
	if (!msg_id || !body) {
		g->failed = true;
	} else {
		snprintf(msg_id, id_len, "%s|%s|%s%s", event, route, fallback ? "fallback:" : "",
			 dest);
		h[0] = (cluster_header_t){ "Nats-Msg-Id", msg_id };
		h[1] = (cluster_header_t){ "Kanal-Event", event };
		h[2] = (cluster_header_t){ "Kanal-Route", route };
		if (fallback)
			h[n_h++] = (cluster_header_t){ "Kanal-Fallback", "1" };
		cluster_subject_dlv(r->cluster->link, dest, subject, sizeof subject);
		s_group_publish(r, g, subject, h, n_h, body, len);
	}
	free(msg_id);
	if (body != raw)
		kanal_free(body);
	kanal_msg_destroy(&out);
}

/* Starts route rt's enrich steps on its own copy of msg, on this node's enrich services
 * (delivery.c, as in single-node mode); the flow holds g until its enriched deliveries or
 * its dead letter are published (cluster_router_flow_deliver, _dead). Out of memory, g is
 * marked failed: JetStream brings the event back. */
static void s_enrich(router_t *r, msg_group_t *g, const kanal_msg_t *msg, const route_t *rt,
		     int delivered)
{
	flow_t *f = kanal__mpool_alloc(sizeof *f, NULL);
	kanal_msg_t *copy = f ? kanal_msg_dup(msg) : NULL;
	shared_t *ev = copy ? router_shared_new(&copy) : NULL;

	if (!ev) {
		log_error("cluster", "out of memory enriching event %s", kanal_msg_id(msg));
		kanal__mpool_free(f);
		g->failed = true;
		return;
	}
	memset(f, 0, sizeof *f);
	f->ev = ev;
	f->table = r->table;
	r->table->refs++;
	f->route = rt;
	f->refs = 1; /* the enrich stage's */
	/* Every earlier delivery of the message was an attempt (a transient failure given back
	 * with its backoff, or a node that died): the route's budget spans the cluster. */
	f->enrich_failures = delivered > 1 ? delivered - 1 : 0;
	f->cluster_in = g;
	g->outstanding++;
	delivery_enrich_next(r, f);
}

/* An accepted event for this node to route. */
static void s_on_event(router_t *r, cluster_item_t *it)
{
	const route_t *stack[64];
	kanal_msg_t *msg = NULL;
	jsMsgMetaData *meta = NULL;
	kanal_error_t err;
	msg_group_t *g;
	char event[300];
	int delivered = 1;
	const char *raw;
	size_t n, raw_len;

	kanal_error_clear(&err);
	snprintf(event, sizeof event, "%s", s_header(it->msg, "Nats-Msg-Id"));
	if (kanal_msg_parse(natsMsg_GetData(it->msg), (size_t)natsMsg_GetDataLength(it->msg),
			    (size_t)r->conf->max_event_bytes * 2, &msg, &err) < 0) {
		/* Not ours (something else published on our subject): nothing can route it. */
		log_error("cluster", "dropping a message on %s that is not an event: %s",
			  natsMsg_GetSubject(it->msg), err.text);
		natsMsg_Term(it->msg, NULL);
		cluster_done(r->cluster->link, it->consumer);
		return;
	}
	if (!(g = s_group_new(&it->msg, it->consumer))) {
		kanal_msg_destroy(&msg);
		cluster_done(r->cluster->link, it->consumer);
		return; /* not acknowledged: redelivered after AckWait */
	}
	g->touched_ms = r->now_ms;
	if (natsMsg_GetMetaData(&meta, g->msg) == NATS_OK) {
		delivered = meta->NumDelivered > 0 ? (int)meta->NumDelivered : 1;
		jsMsgMetaData_Destroy(meta);
	}
	if (*s_header(g->msg, "Kanal-Route")) {
		/* A replayed dead letter of a failed enrichment (s_replay): its route only. */
		stack[0] = s_route_named(r, s_header(g->msg, "Kanal-Route"));
		n = stack[0] ? 1 : 0;
	} else {
		n = routes_match(r->table->routes, msg, stack, 64);
	}
	if (n > 64)
		n = 64; /* more routes for one event than this is not a routing table */
	ROUTER_PUBLISH(r, "accepted", NULL, msg, json_pack("{s:s}", "node", "cluster"));
	/* The event as it was accepted, to publish as it is — unless a route's enrich steps may
	 * change msg before its deliveries go out. */
	raw = natsMsg_GetData(g->msg);
	raw_len = (size_t)natsMsg_GetDataLength(g->msg);
	for (size_t i = 0; i < n; i++)
		if (stack[i]->n_enrich)
			raw = NULL;
	if (n == 0) {
		r->unmatched++;
		s_publish_delivery(r, g, msg, raw, raw_len, event, NULL, 0, false);
	}
	for (size_t i = 0; i < n; i++) {
		if (stack[i]->stat)
			stack[i]->stat->matched++;
		if (stack[i]->n_enrich) {
			s_enrich(r, g, msg, stack[i], delivered);
			continue;
		}
		for (size_t k = 0; k < stack[i]->n_to; k++)
			s_publish_delivery(r, g, msg, raw, raw_len, event, stack[i], k, false);
	}
	kanal_msg_destroy(&msg);
	s_group_release(r, g);
}

/* ---- delivering: a message of a local destination's consumer -------------------------- */

static void s_on_delivery(router_t *r, cluster_item_t *it)
{
	struct cluster_router *cr = r->cluster;
	dest_t *d = it->consumer - 1 < cr->n_dests ? cr->dests[it->consumer - 1] : NULL;
	const char *route = s_header(it->msg, "Kanal-Route");
	bool fallback = *s_header(it->msg, "Kanal-Fallback") != '\0';
	jsMsgMetaData *meta = NULL;
	kanal_msg_t *msg = NULL;
	kanal_error_t err;
	delivery_t *dl;
	shared_t *ev;

	kanal_error_clear(&err);
	if (!d || kanal_msg_parse(natsMsg_GetData(it->msg), (size_t)natsMsg_GetDataLength(it->msg),
				  (size_t)r->conf->max_event_bytes * 2, &msg, &err) < 0) {
		log_error("cluster", "dropping a message on %s that is not an event: %s",
			  natsMsg_GetSubject(it->msg), err.text);
		natsMsg_Term(it->msg, NULL);
		cluster_done(cr->link, it->consumer);
		return;
	}
	if (!(ev = router_shared_new(&msg))) {
		cluster_done(cr->link, it->consumer); /* redelivered after AckWait */
		return;
	}
	dl = router_delivery_new(r, fallback ? DL_FALLBACK : DL_PRIMARY, ev, NULL, d);
	router_shared_release(&ev);
	if (!dl) {
		cluster_done(cr->link, it->consumer);
		return;
	}
	if (*route && !(dl->replay_route = strdup(route))) {
		router_delivery_free(r, &dl);
		return;
	}
	if (natsMsg_GetMetaData(&meta, it->msg) == NATS_OK) {
		dl->attempt = meta->NumDelivered > 0 ? (int)meta->NumDelivered : 1;
		jsMsgMetaData_Destroy(meta);
	}
	dl->cluster_msg = it->msg;
	dl->cluster_consumer = it->consumer;
	dl->cluster_touched_ms = r->now_ms;
	it->msg = NULL;
	router_enqueue(r, dl);
}

/* Takes dl's message for a group (the outcome's publishes), or NULL when out of memory (the
 * message is then left unacknowledged, for AckWait to bring back). */
static msg_group_t *s_take_group(router_t *r, delivery_t *dl)
{
	natsMsg *m = dl->cluster_msg;
	msg_group_t *g = s_group_new(&m, dl->cluster_consumer);

	if (g)
		dl->cluster_msg = NULL;
	(void)r;
	return g;
}

/* Publishes the kanal.delivery.dead notice of dl's death to the accept stream, for group g,
 * when deadnotice.c says it wants one and a route takes it (else it is dropped, as in
 * single-node mode). Its id comes from the dead letter: a second death of the same event
 * (a redelivery) is a duplicate JetStream drops. */
static void s_publish_notice(router_t *r, msg_group_t *g, const delivery_t *dl, const char *reason)
{
	/* A replayed letter's sender heard at its first death (s_replay marks the replay). */
	kanal_msg_t *notice = deadnotice_new(r, dl, reason, *s_header(g->msg, "Kanal-Replay"));
	const route_t *one;
	char subject[300], *msg_id = NULL, *body = NULL;
	cluster_header_t h[1];
	size_t len;

	if (!notice || routes_match(r->table->routes, notice, &one, 1) == 0)
		goto out;
	msg_id = s_in_address(r->cluster, notice, subject, sizeof subject);
	body = kanal_msg_to_json(notice, &len);
	if (!msg_id || !body) {
		g->failed = true;
		goto out;
	}
	h[0] = (cluster_header_t){ "Nats-Msg-Id", msg_id };
	s_group_publish(r, g, subject, h, 1, body, len);
out:
	kanal_free(body);
	free(msg_id);
	kanal_msg_destroy(&notice);
}

/* dl (to dl->dest, on route rt) is given up: counted, on the event stream, and — with group
 * g, which acknowledges its message after — a letter in the DEAD stream (ids from `event`)
 * with its notice. */
static void s_dead_in(router_t *r, msg_group_t *g, const char *event, delivery_t *dl,
		      const route_t *rt, const char *reason)
{
	dest_t *d = dl->dest;
	json_t *extra = json_pack("{s:s?, s:s, s:s, s:i}", "route", router_route_name(dl),
				  "destination", d->name, "reason", reason, "attempt", dl->attempt);

	d->dead++;
	if (rt && rt->stat)
		rt->stat->dead++;
	stream_publish(r->stream, "dead", NULL, dl->ev->msg, extra);
	if (!g)
		return;
	s_publish_dead(r, g, dl->ev->msg, event, router_route_key(router_route_name(dl)), d->name,
		       reason, dl->attempt, dl);
	s_publish_notice(r, g, dl, reason);
}

static void s_dead(router_t *r, delivery_t *dl, const route_t *rt, const char *reason)
{
	msg_group_t *g = s_take_group(r, dl);

	s_dead_in(r, g, g ? s_header(g->msg, "Kanal-Event") : "", dl, rt, reason);
	if (g)
		s_group_release(r, g);
}

/* ---- enrich flows' ends (delivery.c runs their steps) ------------------------------------- */

/* The accepted message flow f holds, which it lets go of (into the caller's hands); event
 * gets its Nats-Msg-Id, from which the ids of what the flow publishes derive. */
static msg_group_t *s_flow_take(flow_t *f, char *event, size_t size)
{
	msg_group_t *g = f->cluster_in;

	f->cluster_in = NULL;
	snprintf(event, size, "%s", g ? s_header(g->msg, "Nats-Msg-Id") : "");
	return g;
}

void cluster_router_flow_deliver(router_t *r, flow_t *f)
{
	char event[300];
	msg_group_t *g = s_flow_take(f, event, sizeof event);

	if (!g)
		return;
	for (size_t k = 0; k < f->route->n_to; k++)
		s_publish_delivery(r, g, f->ev->msg, NULL, 0, event, f->route, k, false);
	s_group_release(r, g);
}

void cluster_router_flow_dead(router_t *r, flow_t *f, delivery_t **dl_p, const char *reason)
{
	char event[300];
	msg_group_t *g = s_flow_take(f, event, sizeof event);

	s_dead_in(r, g, event, *dl_p, f->route, reason);
	if (g)
		s_group_release(r, g);
	router_delivery_free(r, dl_p);
}

void cluster_router_flow_retry(router_t *r, flow_t *f, int64_t delay_ms)
{
	char event[300];
	msg_group_t *g = s_flow_take(f, event, sizeof event);

	if (!g)
		return;
	if (delay_ms > g->retry_ms) /* several flows: the longest wait serves them all */
		g->retry_ms = delay_ms;
	s_group_release(r, g);
}

void cluster_router_flow_abandon(router_t *r, flow_t *f)
{
	char event[300];
	msg_group_t *g = s_flow_take(f, event, sizeof event);

	if (!g)
		return;
	g->failed = true; /* given back at once (with a second's delay), not after AckWait */
	s_group_release(r, g);
}

void cluster_router_outcome(router_t *r, dest_t *d, delivery_t *dl, int outcome, int64_t hint,
			    const char *error)
{
	const route_t *rt = s_route_named(r, router_route_name(dl));
	json_t *extra;

	if (outcome == KANAL_OUTCOME_OK) {
		d->delivered++;
		if (rt && rt->stat)
			rt->stat->delivered++;
		ROUTER_PUBLISH(r, "delivered", NULL, dl->ev->msg,
			       json_pack("{s:s?, s:s, s:i}", "route", router_route_name(dl),
					 "destination", d->name, "attempt", dl->attempt));
		natsMsg_Ack(dl->cluster_msg, NULL);
		router_delivery_free(r, &dl); /* destroys the message, frees its fetch slot */
		return;
	}
	delivery_error(dl, error);
	if (outcome == KANAL_OUTCOME_RETRY) {
		const route_retry_t *retry = rt ? &rt->retry : &s_default_retry;
		if (r->stopping) {
			/* Another node (or this one, started again) tries it now. */
			natsMsg_Nak(dl->cluster_msg, NULL);
			router_delivery_free(r, &dl);
			return;
		}
		if (delivery_decide(KANAL_OUTCOME_RETRY, dl->attempt, retry, false, false) ==
		    DELIVERY_RETRY) {
			int64_t delay = delivery_backoff(retry, dl->attempt, hint);
			d->retried++;
			if (rt && rt->stat)
				rt->stat->retried++;
			extra = json_pack("{s:s?, s:s, s:i, s:s, s:I}", "route",
					  router_route_name(dl), "destination", d->name, "attempt",
					  dl->attempt, "error", error, "retry_in_ms",
					  (json_int_t)delay);
			stream_publish(r->stream, "retrying", NULL, dl->ev->msg, extra);
			natsMsg_NakWithDelay(dl->cluster_msg, delay, NULL);
			router_delivery_free(r, &dl);
			return;
		}
		s_dead(r, dl, rt, "retry budget spent");
		router_delivery_free(r, &dl);
		return;
	}
	d->rejected++;
	if (rt && rt->stat)
		rt->stat->rejected++;
	extra = json_pack("{s:s?, s:s, s:i, s:s}", "route", router_route_name(dl), "destination",
			  d->name, "attempt", dl->attempt, "error", error);
	stream_publish(r->stream, "rejected", NULL, dl->ev->msg, extra);
	if (rt && rt->n_fallback && dl->kind == DL_PRIMARY) {
		/* The fallback's ids are (event, route, fallback:dest): when several primaries
		 * reject, JetStream keeps one copy per fallback destination. */
		msg_group_t *g = s_take_group(r, dl);
		if (g) {
			char event[300];
			snprintf(event, sizeof event, "%s", s_header(g->msg, "Kanal-Event"));
			if (rt->stat)
				rt->stat->fallback++;
			for (size_t i = 0; i < rt->n_fallback; i++)
				s_publish_delivery(r, g, dl->ev->msg, NULL, 0, event, rt, i, true);
			s_group_release(r, g);
		}
		router_delivery_free(r, &dl);
		return;
	}
	s_dead(r, dl, rt, "rejected");
	router_delivery_free(r, &dl);
}

static void s_touch(router_t *r, delivery_t *dl, int64_t before)
{
	for (; dl; dl = dl->next) {
		if (dl->cluster_msg && dl->cluster_touched_ms < before) {
			natsMsg_InProgress(dl->cluster_msg, NULL);
			dl->cluster_touched_ms = r->now_ms;
		}
	}
}

/* This node's entry in the nodes bucket: who it is and what it has done. */
static void s_heartbeat(router_t *r)
{
	struct cluster_router *cr = r->cluster;
	uint64_t delivered = 0, dead = 0, retried = 0;
	json_t *o, *instances = json_array();
	char now[64], *text;

	for (size_t i = 0; i < cr->n_dests; i++) {
		delivered += cr->dests[i]->delivered;
		dead += cr->dests[i]->dead;
		retried += cr->dests[i]->retried;
		json_array_append_new(instances, json_string(cr->dests[i]->name));
	}
	kanal_time_rfc3339(kanal_wall_ms(), now, sizeof now);
	o = json_pack("{s:s, s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:o}", "node",
		      cluster_node_name(cr->link), "pid", (int)getpid(), "started_at",
		      cr->started_at, "seen_at", now, "accepted", (json_int_t)r->accepted,
		      "duplicates", (json_int_t)r->duplicates, "delivered", (json_int_t)delivered,
		      "retried", (json_int_t)retried, "dead", (json_int_t)dead, "instances",
		      instances);
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (text)
		cluster_set_heartbeat(cr->link, text);
	free(text);
	json_decref(o);
}

json_t *cluster_router_cluster_status(router_t *r)
{
	struct cluster_router *cr = r->cluster;
	json_t *consumers = json_array();

	json_array_append_new(
		consumers,
		cluster_consumer_lag(cr->link, "IN", cluster_durable(cr->link, CLUSTER_ROUTE)));
	for (size_t i = 0; i < cr->n_dests; i++) {
		json_t *lag =
			cluster_consumer_lag(cr->link, "DLV", cluster_durable(cr->link, i + 1));
		json_object_set_new(lag, "destination", json_string(cr->dests[i]->name));
		json_array_append_new(consumers, lag);
	}
	return json_pack("{s:s, s:o, s:o, s:o}", "this_node", cluster_node_name(cr->link), "nodes",
			 cluster_nodes(cr->link), "consumers", consumers, "singletons",
			 cluster_lease_holders(cr->link));
}

void cluster_router_tick(router_t *r)
{
	struct cluster_router *cr = r->cluster;
	int64_t before;

	if (r->now_ms < cr->next_tick_ms)
		return;
	cr->next_tick_ms = r->now_ms + 1000;
	if (r->now_ms >= cr->next_heartbeat_ms) {
		s_heartbeat(r);
		cr->next_heartbeat_ms = r->now_ms + 5000;
	}
	before = r->now_ms - r->conf->nats.ack_wait_ms / 2;
	for (size_t i = 0; i < cr->n_dests; i++) {
		s_touch(r, cr->dests[i]->head, before);
		s_touch(r, cr->dests[i]->inflight, before);
	}
	/* Events waiting for an enrich reply are held too. */
	for (flow_t *f = r->enriching; f; f = f->enrich_next) {
		if (f->cluster_in && f->cluster_in->touched_ms < before) {
			natsMsg_InProgress(f->cluster_in->msg, NULL);
			f->cluster_in->touched_ms = r->now_ms;
		}
	}
}

void cluster_router_forget(router_t *r, delivery_t *dl)
{
	natsMsg *m = dl->cluster_msg;

	dl->cluster_msg = NULL;
	if (!m)
		return;
	natsMsg_Destroy(m);
	cluster_done(r->cluster->link, dl->cluster_consumer);
}

/* ---- dead letters: kanalctl dlq against <prefix>_DEAD --------------------------------------- */

/* The letter's summary (and with `full` its errors and event) as the journal's dlq commands
 * give it: its id is its sequence number in the stream. NULL when it is not an event of ours. */
static json_t *s_letter(natsMsg *m, bool full)
{
	json_t *event = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
	json_t *errors = json_loads(s_header(m, "Kanal-Errors"), 0, NULL), *o;
	char when[64];
	const char *route = s_header(m, "Kanal-Route");

	if (!json_is_object(event)) {
		json_decref(event);
		json_decref(errors);
		return NULL;
	}
	kanal_time_rfc3339(natsMsg_GetTime(m) / 1000000, when, sizeof when);
	o = json_pack("{s:I, s:s, s:s?, s:s, s:s, s:s, s:s, s:s, s:i}", "id",
		      (json_int_t)natsMsg_GetSequence(m), "dead_at", when, "route",
		      *route ? route : NULL, "destination", s_header(m, "Kanal-Destination"),
		      "type", json_string_value(json_object_get(event, "type")) ?: "", "event_id",
		      json_string_value(json_object_get(event, "id")) ?: "", "source",
		      json_string_value(json_object_get(event, "source")) ?: "", "reason",
		      s_header(m, "Kanal-Reason"), "attempts", atoi(s_header(m, "Kanal-Attempts")));
	if (o && json_is_array(errors) && json_array_size(errors) > 0)
		json_object_set(o, "error", json_array_get(errors, json_array_size(errors) - 1));
	if (o && full) {
		json_object_set_new(o, "errors",
				    json_is_array(errors) ? json_incref(errors) : json_array());
		json_object_set(o, "event", event);
	}
	json_decref(errors);
	json_decref(event);
	return o;
}

/* True when letter o passes the filters of dlq.list / replay --all-matching. */
static bool s_letter_matches(json_t *o, json_t *filter, int64_t since_ms)
{
	const char *route = json_string_value(json_object_get(filter, "route"));
	const char *type = json_string_value(json_object_get(filter, "type"));
	int64_t dead_at = 0;

	if (route && strcmp(route, json_string_value(json_object_get(o, "route")) ?: ""))
		return false;
	if (type && strcmp(type, json_string_value(json_object_get(o, "type")) ?: ""))
		return false;
	if (since_ms > 0 &&
	    (kanal_time_parse_rfc3339(json_string_value(json_object_get(o, "dead_at")), &dead_at) ||
	     dead_at < since_ms))
		return false;
	return true;
}

/* The letters matching filter, newest first when `newest_first`, up to limit (0: all):
 * their summaries, or (ids_only) their ids. NULL when NATS did not answer. */
static json_t *s_letters(router_t *r, json_t *filter, int64_t since_ms, int limit,
			 bool newest_first, bool ids_only)
{
	cluster_t *c = r->cluster->link;
	uint64_t first, last;
	json_t *out;

	if (cluster_dead_range(c, &first, &last) < 0)
		return NULL;
	out = json_array();
	for (uint64_t k = 0; first && k <= last - first; k++) {
		uint64_t seq = newest_first ? last - k : first + k;
		natsMsg *m = NULL;
		json_t *o;
		int rc = cluster_dead_get(c, seq, &m);

		if (rc == KANAL_ENOTFOUND)
			continue; /* dropped or replayed */
		if (rc < 0) {
			json_decref(out);
			return NULL;
		}
		o = s_letter(m, false);
		natsMsg_Destroy(m);
		if (!o || !s_letter_matches(o, filter, since_ms)) {
			json_decref(o);
			continue;
		}
		if (ids_only) {
			json_array_append(out, json_object_get(o, "id"));
			json_decref(o);
		} else {
			json_array_append_new(out, o);
		}
		if (limit > 0 && json_array_size(out) >= (size_t)limit)
			break;
	}
	return out;
}

/* Replays letter seq: its event goes again to its destination (a new message id, so that the
 * duplicate window does not drop it) — a failed enrichment's, to its route again — then the
 * letter is deleted. */
static int s_replay(router_t *r, uint64_t seq, json_t *done)
{
	cluster_t *c = r->cluster->link;
	natsMsg *m = NULL;
	char subject[300], msg_id[400], seq_text[24];
	const char *dest, *route, *event;
	const route_t *again;
	cluster_header_t h[4];
	kanal_error_t err;
	int rc = cluster_dead_get(c, seq, &m);

	if (rc < 0)
		return rc;
	dest = s_header(m, "Kanal-Destination");
	route = s_header(m, "Kanal-Route");
	event = s_header(m, "Kanal-Event");
	again = !strcmp(dest, ROUTES_DEADLETTER) ? s_route_named(r, route) : NULL;
	if (again && again->n_enrich) {
		/* A route whose enrich step failed runs again, its steps and every destination
		 * (as single-node mode's replay does): to P_IN, for that route only. */
		json_t *ev =
			json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
		cluster_subject_in(c, json_string_value(json_object_get(ev, "type")) ?: "", subject,
				   sizeof subject);
		json_decref(ev);
	} else if (router_dest(r, dest) && router_dest(r, dest)->inst) {
		cluster_subject_dlv(c, dest, subject, sizeof subject);
	} else {
		natsMsg_Destroy(m);
		return KANAL_ENOTFOUND; /* the instance is gone from the config */
	}
	snprintf(msg_id, sizeof msg_id, "%s|%s|%s|replay:%llu", event, route, dest,
		 (unsigned long long)seq);
	h[0] = (cluster_header_t){ "Nats-Msg-Id", msg_id };
	h[1] = (cluster_header_t){ "Kanal-Event", event };
	h[2] = (cluster_header_t){ "Kanal-Route", route };
	/* The replay is marked: should it die again, that is a new letter without a notice. */
	snprintf(seq_text, sizeof seq_text, "%llu", (unsigned long long)seq);
	h[3] = (cluster_header_t){ "Kanal-Replay", seq_text };
	kanal_error_clear(&err);
	rc = cluster_publish_sync(c, subject, h, 4, natsMsg_GetData(m),
				  (size_t)natsMsg_GetDataLength(m), &err);
	if (rc == 0) {
		cluster_dead_delete(c, seq);
		stream_publish(
			r->stream, "replayed", "-", NULL,
			json_pack("{s:I, s:s}", "letter", (json_int_t)seq, "destination", dest));
		json_array_append_new(done, json_integer((json_int_t)seq));
	} else {
		log_warn("cluster", "replaying dead letter %llu: %s", (unsigned long long)seq,
			 err.text);
	}
	natsMsg_Destroy(m);
	return rc;
}

/* dlq.purge: deletes every letter that died before `older_than` (RFC 3339). The stream
 * holds letters in the order they died, so the walk stops at the first younger one. */
static json_t *s_purge(router_t *r, const char *older_than)
{
	cluster_t *c = r->cluster->link;
	uint64_t first, last;
	int64_t before = -1, purged = 0;

	if (!older_than || kanal_time_parse_rfc3339(older_than, &before) != 0 || before < 0)
		return json_pack("{s:b, s:s}", "ok", 0, "error",
				 "'older_than' must be an RFC 3339 time");
	if (cluster_dead_range(c, &first, &last) < 0)
		return json_pack("{s:b, s:s}", "ok", 0, "error",
				 "NATS did not answer for the dead-letter stream");
	for (uint64_t seq = first; first && seq <= last; seq++) {
		natsMsg *m = NULL;
		int rc = cluster_dead_get(c, seq, &m);
		bool older = rc == 0 && natsMsg_GetTime(m) / 1000000 < before;

		natsMsg_Destroy(m);
		if (rc == KANAL_ENOTFOUND)
			continue; /* dropped or replayed */
		if (rc < 0 || !older)
			break;
		if (cluster_dead_delete(c, seq) == 0)
			purged++;
	}
	r->dlq_purged += (uint64_t)purged;
	return json_pack("{s:b, s:I}", "ok", 1, "purged", (json_int_t)purged);
}

json_t *cluster_router_dlq(router_t *r, const char *cmd, json_t *req, int64_t since_ms, bool *clear)
{
	cluster_t *c = r->cluster->link;
	json_t *filter = json_object_get(req, "match");

	if (!strcmp(cmd, "dlq.list")) {
		json_t *items = s_letters(
			r, req, since_ms,
			(int)json_integer_value(json_object_get(req, "limit")) ?: 100, true, false);
		return items ? json_pack("{s:b, s:o}", "ok", 1, "items", items)
			     : json_pack("{s:b, s:s}", "ok", 0, "error",
					 "NATS did not answer for the dead-letter stream");
	}
	if (!strcmp(cmd, "dlq.show")) {
		natsMsg *m = NULL;
		json_t *item = NULL;
		if (cluster_dead_get(c, (uint64_t)json_integer_value(json_object_get(req, "id")),
				     &m) == 0)
			item = s_letter(m, true);
		natsMsg_Destroy(m);
		*clear = json_is_true(json_object_get(req, "clear"));
		if (!item)
			return json_pack("{s:b, s:s}", "ok", 0, "error", "no such dead letter");
		return json_pack("{s:b, s:o}", "ok", 1, "item", item);
	}
	if (!strcmp(cmd, "dlq.replay") || !strcmp(cmd, "dlq.drop")) {
		bool replay = !strcmp(cmd, "dlq.replay");
		json_t *ids, *done = json_array(), *missing = json_array(), *id;
		size_t i;

		if (replay && json_is_object(filter))
			ids = s_letters(r, filter, 0, 0, false, true);
		else
			ids = json_incref(json_object_get(req, "ids"));
		json_array_foreach(ids, i, id)
		{
			uint64_t seq = (uint64_t)json_integer_value(id);
			int rc = replay ? s_replay(r, seq, done) : cluster_dead_delete(c, seq);
			if (!replay && rc == 0)
				json_array_append(done, id);
			if (rc < 0)
				json_array_append(missing, id);
		}
		json_decref(ids);
		return admin_dlq_reply(replay, done, missing);
	}
	if (!strcmp(cmd, "dlq.purge"))
		return s_purge(r, json_string_value(json_object_get(req, "older_than")));
	return NULL;
}

/* ---- the inbox, construction ------------------------------------------------------------ */

void cluster_router_on_inbox(router_t *r)
{
	cluster_item_t *list = cluster_take(r->cluster->link);

	r->now_ms = kanal_now_ms();
	while (list) {
		cluster_item_t *it = list;
		list = it->next;
		if (it->kind == CLUSTER_PUBACK)
			s_on_puback(r, it);
		else if (it->kind == CLUSTER_ROUTES)
			cluster_routes_on_item(r, it);
		else if (it->consumer == CLUSTER_ROUTE)
			s_on_event(r, it);
		else
			s_on_delivery(r, it);
		cluster_item_free(&it);
	}
}

cluster_t *cluster_router_link(router_t *r)
{
	return r->cluster ? r->cluster->link : NULL;
}

int cluster_router_fd(const router_t *r)
{
	return r->cluster ? cluster_fd(r->cluster->link) : -1;
}

int cluster_router_new(router_t *r, char *err, size_t err_size)
{
	struct cluster_router *cr = calloc(1, sizeof *cr);
	char **names = calloc(r->n_instances + 1, sizeof *names);
	cluster_dead_limits_t dead = { r->conf->dlq_max_age_ms, r->conf->dlq_max_events };
	kanal_error_t e;

	if (!cr || !names || !(cr->dests = calloc(r->n_instances + 1, sizeof *cr->dests))) {
		snprintf(err, err_size, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < r->n_instances; i++) {
		names[i] = r->instances[i]->name;
		cr->dests[i] = &r->dests[i];
	}
	cr->n_dests = r->n_instances;
	kanal_error_clear(&e);
	cr->link = cluster_new(&r->conf->nats, r->conf->dedupe_window_ms, &dead, names,
			       r->n_instances, &e);
	if (!cr->link) {
		snprintf(err, err_size, "%s", e.text);
		goto fail;
	}
	free(names);
	r->cluster = cr;
	log_info("cluster", "joined the NATS cluster: streams %s_IN, %s_DLV, %s_DEAD",
		 r->conf->nats.stream_prefix, r->conf->nats.stream_prefix,
		 r->conf->nats.stream_prefix);
	if (cluster_routes_new(r, err, err_size) < 0) {
		cluster_router_destroy(r);
		return KANAL_ECONFIG;
	}
	return 0;
fail:
	free(names);
	if (cr)
		free(cr->dests);
	free(cr);
	return KANAL_ECONFIG;
}

/* The event stream's mirror: each line on <prefix>.events.<kind>.<tail>. */
static void s_mirror(void *arg, const char *kind, const char *tail, const char *payload)
{
	cluster_t *c = arg;
	char subject[400];

	cluster_subject_events(c, kind, tail, subject, sizeof subject);
	cluster_publish_core(c, subject, payload);
}

int cluster_router_start(router_t *r)
{
	if (r->cluster) {
		kanal_time_rfc3339(kanal_wall_ms(), r->cluster->started_at,
				   sizeof r->cluster->started_at);
		s_heartbeat(r);
	}
	if (r->cluster && r->conf->nats.events)
		stream_set_mirror(r->stream, s_mirror, r->cluster->link);
	if (r->cluster && cluster_routes_start(r) < 0)
		log_error("cluster", "not watching the routes bucket: a table pushed from another "
				     "node does not reach this one until it restarts");
	return r->cluster ? cluster_start(r->cluster->link) : 0;
}

void cluster_router_destroy(router_t *r)
{
	struct cluster_router *cr = r->cluster;

	if (!cr)
		return;
	cluster_routes_destroy(r); /* its watcher uses the connection */
	cluster_destroy(&cr->link);
	for (size_t i = 0; i < WAITER_BUCKETS; i++) {
		while (cr->buckets[i]) {
			waiter_t *w = cr->buckets[i];
			cr->buckets[i] = w->next;
			free(w->sender.id);
			s_reply_release(&w->sender.reply);
			kanal_msg_destroy(&w->sender.msg);
			/* Unacknowledged, or unanswered: JetStream brings it back after AckWait,
			 * the sender resends. */
			if (w->group && --w->group->outstanding == 0)
				s_group_free(w->group);
			free(w);
		}
	}
	s_reply_release(&cr->request);
	free(cr->dests);
	free(cr);
	r->cluster = NULL;
}

struct cluster *router_cluster_link(router_t *r)
{
	return r->cluster ? r->cluster->link : NULL;
}
