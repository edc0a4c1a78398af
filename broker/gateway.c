/*
 * broker/gateway.c — the ZeroMQ gateway, on the router's thread: reads each request's
 * frames ([identity][empty, REQ only][body]), parses the body as one CloudEvent or a batch
 * (all or nothing), checks each event against the client's emit and sources lists (CURVE
 * on) and the privacy rule (no CPR number in a context attribute), hands it to
 * router_accept, and
 * holds the reply until the turn's journal commit (commit_end_turn calls
 * gateway_flush_replies): "accepted" is only said of what is stored.
 */
#include <stdio.h>
#include <string.h>

#include "acl.h"
#include "log.h"
#include "ratelimit.h"
#include "router_int.h"

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
	snprintf(reason, size,
		 "client '%s' may not emit events of type '%s' (its emit list in "
		 "security.curve.clients)",
		 who, type ? type : "");
	log_warn("gateway",
		 "refused an event of type '%s' from client '%s': not in its emit "
		 "list",
		 type ? type : "", who);
	ROUTER_PUBLISH(r, "acl.denied", who, NULL, acl_denied_extra(who, "gateway", "emit", type));
}

/* With CURVE on, whether the current gateway client owns `source` (its `sources` list,
 * docs/design/tenancy.md); a client without `sources` owns every source, as before. Nobody
 * owns kanald's own source (acl_source_reserved). */
static bool s_gateway_owns(router_t *r, const char *source)
{
	const conf_client_t *c;

	if (acl_source_reserved(source))
		return false;
	if (!r->zap)
		return true;
	c = conf_client(r->conf, r->gateway_client);
	if (c && !c->has_sources)
		return true;
	return c && acl_source_allowed(c->sources, c->n_sources, source);
}

/* Refuses an event whose source the current gateway client does not own, before the
 * duplicate check: no answer about another owner's ids ever reaches it. */
static void s_gateway_forbid_source(router_t *r, const char *source, char *reason, size_t size)
{
	const char *who = r->gateway_client && *r->gateway_client ? r->gateway_client : "?";

	r->acl_denied++;
	if (acl_source_reserved(source))
		snprintf(reason, size,
			 "source '%s' is kanald's own (its kanal.delivery.dead notices): no "
			 "client may use it",
			 source);
	else
		snprintf(reason, size,
			 "client '%s' may not emit events with source '%.120s' (its "
			 "sources list in security.curve.clients)",
			 who, source ? source : "");
	log_warn("gateway",
		 "refused an event with source '%.120s' from client '%s': not in "
		 "its sources list",
		 source ? source : "", who);
	ROUTER_PUBLISH(r, "acl.denied", who, NULL,
		       acl_denied_extra(who, "gateway", "source", source));
}

/* The sum of every ACL refusal: gateway events, stream subscriptions, instance emits. */
uint64_t gateway_acl_denied(const router_t *r)
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
	if (!s_gateway_owns(r, kanal_msg_source(*msg_p))) {
		char reason[400];
		s_gateway_forbid_source(r, kanal_msg_source(*msg_p), reason, sizeof reason);
		return s_result(id, "forbidden", reason);
	}
	if (kanal__msg_context_cpr(*msg_p, attr, sizeof attr)) {
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
	if (r->ratelimit) {
		/* limits.rate: each CURVE client has its own bucket; plain clients share one. */
		int64_t wait = ratelimit_take(
			r->ratelimit, r->gateway_client ? r->gateway_client : "", kanal_now_ms());
		if (wait > 0) {
			json_t *o = s_result(id, "busy", "over limits.rate for this client");
			json_object_set_new(o, "retry_after_ms", json_integer(wait));
			r->rate_limited++;
			return o;
		}
	}
	rc = router_accept(r, msg_p, -1);
	if (rc == KANAL_EDUPLICATE)
		return s_result(id, "duplicate", NULL);
	if (rc == KANAL_EIO) {
		char why[300];
		if (r->cluster)
			snprintf(why, sizeof why, "not accepted: %s", cluster_router_error(r));
		else
			snprintf(why, sizeof why,
				 "not accepted: the journal cannot be written (%s)",
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
	/* ROUTER_ACK_LATER too: the reply waits for the PubAck, which may still change it. */
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
	if (len > (size_t)r->conf->max_event_bytes * GATEWAY_BATCH_EVENTS) {
		/* Not read further: naming each event of a request this size is not worth
		 * parsing it. */
		snprintf(reason, sizeof reason,
			 "request of %zu bytes is larger than the limit "
			 "(%lld bytes: %d x max_event_size); send smaller batches",
			 len, (long long)r->conf->max_event_bytes * GATEWAY_BATCH_EVENTS,
			 GATEWAY_BATCH_EVENTS);
		r->invalid++;
		json_array_append_new(results, s_result(NULL, "invalid", reason));
		return results;
	}
	if (kanal_json_is_batch(body, len)) {
		kanal_batch_t *batch = NULL;
		size_t max = (size_t)r->conf->max_event_bytes * GATEWAY_BATCH_EVENTS;
		if (kanal_batch_parse(body, len, max, &batch, &err) < 0) {
			json_t *arr = json_loadb(body, len, 0, NULL);
			kanal_error_format(&err, reason, sizeof reason);
			r->invalid++;
			if (json_is_array(arr) && json_array_size(arr) > 0) {
				size_t i;
				json_t *elem;
				json_array_foreach(arr, i, elem)
				{
					char prefix[32];
					snprintf(prefix, sizeof prefix, "event #%zu: ", i);
					json_array_append_new(
						results,
						s_result(s_peek_id(elem), "invalid",
							 strncmp(err.text, prefix,
								 strlen(prefix)) == 0
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
				s_gateway_forbid(r, kanal_msg_type(batch->msgs[i]), why,
						 sizeof why);
				for (size_t k = 0; k < batch->count; k++)
					json_array_append_new(
						results,
						s_result(kanal_msg_id(batch->msgs[k]), "forbidden",
							 k == i ? why : "batch rejected"));
				kanal_batch_destroy(&batch);
				return results;
			}
			bool big =
				kanal_msg_size(batch->msgs[i]) > (size_t)r->conf->max_event_bytes;
			if (big || kanal__msg_context_cpr(batch->msgs[i], attr, sizeof attr)) {
				char why[200];
				if (big)
					snprintf(why, sizeof why,
						 "event #%zu is larger than "
						 "max_event_size (%lld bytes)",
						 i, (long long)r->conf->max_event_bytes);
				else
					snprintf(why, sizeof why,
						 "event #%zu: attribute '%s' holds a "
						 "CPR number",
						 i, attr);
				r->invalid++;
				for (size_t k = 0; k < batch->count; k++)
					json_array_append_new(
						results,
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
			json_array_append_new(results,
					      s_result(s_peek_id(obj), "invalid", err.text));
			json_decref(obj);
			return results;
		}
		json_array_append_new(results, s_gateway_one(r, &msg));
		kanal_msg_destroy(&msg);
	}
	return results;
}

static void s_send_reply(router_t *r, zmq_msg_t *parts, int n, json_t *reply, const char *failure);

void gateway_on_readable(router_t *r)
{
	for (;;) {
		zmq_msg_t parts[8];
		int n = 0, more = 1;
		json_t *reply;
		char *text = NULL;

		/* [identity][empty (REQ only)]…[body]: echo every part before the body. */
		while (more && n < 8) {
			zmq_msg_init(&parts[n]);
			if (zmq_msg_recv(&parts[n], r->gateway_sock, n == 0 ? ZMQ_DONTWAIT : 0) <
			    0) {
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
			json_t *bad = json_pack(
				"{s:[{s:s, s:s}]}", "results", "status", "invalid", "reason",
				"expected one frame holding an event or a "
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
		pr->wait = cluster_router_request_end(r);
		/* Bound the turn: a flood of requests still commits and answers regularly. */
		if (r->n_pending >= 256)
			return;
	}
}

/* Sends a held reply. When the turn's commit failed (`failure` set), what it called
 * accepted was not stored: it is answered as an error, so the sender sends it again. */
static void s_send_reply(router_t *r, zmq_msg_t *parts, int n, json_t *reply, const char *failure)
{
	char *text;

	if (failure) {
		size_t i;
		json_t *res;
		json_array_foreach(json_object_get(reply, "results"), i, res)
		{
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
			log_warn_limited("router",
					 "dropped a gateway reply: the client does not "
					 "read (%s)",
					 zmq_strerror(zmq_errno()));
			free(text);
			return;
		}
		zmq_msg_close(&parts[i]);
	}
	if (zmq_send(r->gateway_sock, text ? text : "{}", text ? strlen(text) : 2, ZMQ_DONTWAIT) <
	    0)
		r->replies_dropped++;
	free(text);
}

void gateway_flush_replies(router_t *r, const char *failure)
{
	size_t kept = 0;

	for (size_t i = 0; i < r->n_pending; i++) {
		pending_reply_t *pr = &r->pending[i];
		if (!failure && !cluster_router_reply_ready(pr->wait)) {
			/* Cluster mode: its events' PubAcks are not all in; it waits, in order. */
			pending_reply_t *to = &r->pending[kept++];
			if (to != pr) {
				for (int k = 0; k < pr->n; k++) {
					zmq_msg_init(&to->parts[k]);
					zmq_msg_move(&to->parts[k], &pr->parts[k]);
					zmq_msg_close(&pr->parts[k]);
				}
				to->n = pr->n;
				to->reply = pr->reply;
				to->wait = pr->wait;
			}
			continue;
		}
		if (pr->wait)
			cluster_router_reply_finish(&pr->wait, pr->reply);
		if (r->gateway_sock) {
			s_send_reply(r, pr->parts, pr->n, pr->reply, failure);
		} else {
			for (int k = 0; k < pr->n; k++)
				zmq_msg_close(&pr->parts[k]);
			json_decref(pr->reply);
		}
	}
	r->n_pending = kept;
}
