/*
 * plugins/http/ingress.c — CloudEvents in over HTTP: a libmicrohttpd server that accepts
 * `POST <path>` in the structured, binary and batched content modes of the CloudEvents
 * HTTP binding, emits the events to the bus and answers once they are durable.
 *
 * Threads: kanal_emit works only on the instance's thread and a plugin starts no threads,
 * so libmicrohttpd runs without any of its own. It is started in external epoll mode; the
 * instance watches its epoll descriptor (kanal_fd_watch) and keeps one kanal timer armed
 * with MHD_get_timeout, and both call MHD_run (plugins/common/kc_mhd) — so every request
 * handler runs on the instance's thread, where emit and flush may be called.
 * libmicrohttpd has no listening socket of its own: gate.c accepts, enforces the limits on
 * connections and the request_timeout, and hands it the connections it admits.
 *
 * A request is read whole (up to max_body) — a multipart one is streamed instead, its files
 * into the blob store as they arrive (multipart.c) — then parsed into events, each checked before
 * any is emitted — size, the client's allowed types, no CPR number in a context attribute
 * — so an invalid request leaves nothing behind. The events are then emitted in order and
 * flushed (kanal_emit_flush) before the 202 answer: "accepted" means in kanald's journal.
 * When kanald applies backpressure (KANAL_EBUSY) the rest of a batch is not emitted, the
 * answer is 429 with Retry-After and the body says which events were accepted before it.
 * A (source, id) this instance accepted within dedupe_window is answered "duplicate" and
 * not emitted again.
 *
 * On the map_paths a vendor posts its own JSON instead; mapped.c makes events of it with a
 * jq program, and from there they take the same way as CloudEvents.
 */
#include "http.h"
#include "../common/kc_files.h"
#include "../common/kc_log.h"
#include "../common/kc_mhd.h"
#include "../common/kc_trace.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#define INGRESS_DEDUPE_BUCKETS 4096
#define INGRESS_DEDUPE_MAX 100000
#define INGRESS_MAX_TIMER_MS 1000

/* ---- recently accepted (source, id) pairs ------------------------------------------------ */

typedef struct seen_entry {
	struct seen_entry *bucket_next;
	struct seen_entry *fifo_next;
	int64_t at;
	uint32_t hash;
	size_t klen;
	char key[]; /* source, NUL, id */
} seen_entry_t;

typedef struct seen {
	seen_entry_t *buckets[INGRESS_DEDUPE_BUCKETS];
	seen_entry_t *head, *tail; /* oldest first */
	size_t count;
} seen_t;

static uint32_t s_hash(const char *p, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)p[i]) * 16777619u;
	return h;
}

/* Forgets the oldest entry. */
static void s_seen_pop(seen_t *s)
{
	seen_entry_t *e = s->head, **pp;

	if (!e)
		return;
	s->head = e->fifo_next;
	if (!s->head)
		s->tail = NULL;
	for (pp = &s->buckets[e->hash % INGRESS_DEDUPE_BUCKETS]; *pp; pp = &(*pp)->bucket_next) {
		if (*pp == e) {
			*pp = e->bucket_next;
			break;
		}
	}
	free(e);
	s->count--;
}

static void s_seen_expire(seen_t *s, int64_t now, int64_t window_ms)
{
	while (s->head && (now - s->head->at > window_ms || s->count > INGRESS_DEDUPE_MAX))
		s_seen_pop(s);
}

/* Builds the key "source\0id" in buf (malloc'd into *heap when it does not fit). Returns
 * its length, or 0 when out of memory. */
static size_t s_seen_key(const char *src, const char *id, char *buf, size_t size, char **heap)
{
	size_t ls = strlen(src), li = strlen(id), n = ls + 1 + li;
	char *k = buf;

	*heap = NULL;
	if (n > size && !(k = *heap = malloc(n)))
		return 0;
	memcpy(k, src, ls + 1);
	memcpy(k + ls + 1, id, li);
	return n;
}

static bool s_seen_has(const seen_t *s, const char *src, const char *id)
{
	char buf[512], *heap;
	size_t n = s_seen_key(src, id, buf, sizeof buf, &heap);
	const char *k = heap ? heap : buf;
	uint32_t h = s_hash(k, n);
	bool found = false;

	for (seen_entry_t *e = s->buckets[h % INGRESS_DEDUPE_BUCKETS]; e && n; e = e->bucket_next)
		if (e->hash == h && e->klen == n && !memcmp(e->key, k, n)) {
			found = true;
			break;
		}
	free(heap);
	return found;
}

/* Remembers (src, id); out of memory it simply does not (a duplicate then goes to kanald,
 * whose journal suppresses it). */
static void s_seen_add(seen_t *s, const char *src, const char *id, int64_t now)
{
	char buf[512], *heap;
	size_t n = s_seen_key(src, id, buf, sizeof buf, &heap);
	seen_entry_t *e = n ? malloc(sizeof *e + n) : NULL;

	if (e) {
		memcpy(e->key, heap ? heap : buf, n);
		e->klen = n;
		e->hash = s_hash(e->key, n);
		e->at = now;
		e->fifo_next = NULL;
		e->bucket_next = s->buckets[e->hash % INGRESS_DEDUPE_BUCKETS];
		s->buckets[e->hash % INGRESS_DEDUPE_BUCKETS] = e;
		if (s->tail)
			s->tail->fifo_next = e;
		else
			s->head = e;
		s->tail = e;
		s->count++;
	}
	free(heap);
}

static void s_seen_clear(seen_t *s)
{
	while (s->head)
		s_seen_pop(s);
}

/* ---- the instance's ingress ---------------------------------------------------------------- */

struct ingress {
	kanal_ctx_t *ctx;
	char host[256]; /* from `listen`, brackets removed */
	char port[16];
	const char *path; /* borrowed from the config */
	char *port_file;
	tokens_t *tokens; /* NULL: no authentication */
	mapped_t *mapped; /* map_paths; NULL: none */
	size_t max_body;
	size_t max_event_size;
	int64_t flush_timeout_ms;
	int64_t busy_retry_after_ms;
	int64_t dedupe_window_ms;
	int64_t client_rate, client_burst; /* per token client, events a second; 0: none */
	unsigned conn_timeout_s;
	unsigned max_connections;
	gate_limits_t limits; /* request_timeout, connections in total and per address */

	struct MHD_Daemon *daemon;
	gate_t *gate;       /* owns the listening socket; admits connections */
	kc_mhd_pump_t pump; /* libmicrohttpd on the instance's thread */
	int bound_port;
	seen_t seen;
	kc_log_limit_t log_refused; /* requests refused for their token */
	kc_log_limit_t log_mhd;     /* libmicrohttpd's complaints about a connection */
};

/* One request being read. */
typedef struct req {
	char *body;
	size_t len, cap;
	bool too_big;
	bool answered;         /* a response was queued before the body was read */
	bool auth_pending;     /* the token is checked once the body is read */
	bool answered_by_gate; /* answered outside libmicrohttpd: close when the body ends */
	size_t seen;           /* body bytes received, kept or not */
	const tokens_client_t *client;
	const mapped_path_t *map; /* posted to one of map_paths: vendor JSON */
	multipart_t *mp; /* a multipart body, streamed as it comes (multipart.c); else NULL */
	int mp_rc;       /* its first failure, 0 */
} req_t;

/* A client that sends a refused body anyway (no `Expect: 100-continue`) has it read and
 * thrown away up to this many bytes (4 × max_body, at least 8 MiB), so that it reads our
 * 401 or 413 instead of a reset connection; beyond it the connection is closed. */
#define DISCARD_MAX(ing) ((ing)->max_body * 4 > (8u << 20) ? (ing)->max_body * 4 : (8u << 20))

/* ---- answers ------------------------------------------------------------------------------ */

/* Queues status with a JSON body (stolen) and the headers a status calls for. */
static enum MHD_Result s_respond(ingress_t *ing, struct MHD_Connection *conn, unsigned status,
				 json_t *body, int64_t retry_after_ms)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct MHD_Response *res;
	enum MHD_Result rc;

	json_decref(body);
	if (!text)
		text = strdup("{}");
	if (!text)
		return MHD_NO;
	res = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!res) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (retry_after_ms >= 0) {
		char secs[32];
		/* Retry-After counts whole seconds: round up, at least 1. */
		snprintf(secs, sizeof secs, "%lld",
			 (long long)(retry_after_ms <= 0 ? 1 : (retry_after_ms + 999) / 1000));
		MHD_add_response_header(res, MHD_HTTP_HEADER_RETRY_AFTER, secs);
	}
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(res, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"kanal\"");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(res, MHD_HTTP_HEADER_ALLOW, "POST");
	rc = MHD_queue_response(conn, status, res);
	MHD_destroy_response(res);
	gate_request_answered(conn);
	kanal_metric_add(ing->ctx,
			 status < 300 ? "http_requests_accepted" : "http_requests_refused", 1);
	return rc;
}

/* Answers with {"error": text, "attribute": attr, "event": index} (the last two when
 * given). The text is CPR-masked: a client may have put a number where it does not go. */
static enum MHD_Result s_fail(ingress_t *ing, struct MHD_Connection *conn, unsigned status,
			      const char *attr, long event, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static enum MHD_Result s_fail(ingress_t *ing, struct MHD_Connection *conn, unsigned status,
			      const char *attr, long event, const char *fmt, ...)
{
	char text[1024];
	json_t *body;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	kanal_cpr_redact_inplace(text);
	body = json_pack("{s:s}", "error", text);
	if (body && attr && *attr)
		json_object_set_new(body, "attribute", json_string(attr));
	if (body && event >= 0)
		json_object_set_new(body, "event", json_integer(event));
	kanal_log(ing->ctx, KANAL_LOG_DEBUG, "answered %u: %s", status, text);
	return s_respond(ing, conn, status, body, -1);
}

/* The client's address, for log lines. */
static void s_peer(struct MHD_Connection *conn, char *buf, size_t size)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	snprintf(buf, size, "?");
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf,
			  (socklen_t)size);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf,
			  (socklen_t)size);
}

/* Checks the Authorization header. Returns the client, or NULL after queueing a 401 (in
 * *answer). Never logs the token. */
/* The client whose token the Authorization value `auth` ("Bearer <token>") bears, or NULL. */
static const tokens_client_t *s_bearer_client(ingress_t *ing, const char *auth)
{
	const char *tok;
	size_t len;

	if (!auth || strncasecmp(auth, "Bearer ", 7))
		return NULL;
	for (tok = auth + 7; *tok == ' ';)
		tok++;
	len = strlen(tok);
	while (len > 0 && tok[len - 1] == ' ')
		len--;
	return len > 0 ? tokens_check(ing->tokens, tok, len) : NULL;
}

static const tokens_client_t *s_authenticate(ingress_t *ing, struct MHD_Connection *conn,
					     enum MHD_Result *answer)
{
	const char *auth =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	const tokens_client_t *client = NULL;
	char peer[64];

	s_peer(conn, peer, sizeof peer);
	if (auth && !strncasecmp(auth, "Bearer ", 7)) {
		if ((client = s_bearer_client(ing, auth)))
			return client;
		kc_log_limited(ing->ctx, &ing->log_refused, KANAL_LOG_WARN,
			       "refused a request from %s: the bearer token matches no client "
			       "in tokens_file",
			       peer);
		kanal_metric_add(ing->ctx, "http_auth_failures", 1);
		*answer = s_fail(ing, conn, MHD_HTTP_UNAUTHORIZED, NULL, -1,
				 "the bearer token is not valid");
		return NULL;
	}
	kc_log_limited(ing->ctx, &ing->log_refused, KANAL_LOG_WARN, "refused a request from %s: %s",
		       peer,
		       auth ? "the Authorization header is not 'Bearer <token>'"
			    : "no Authorization header");
	kanal_metric_add(ing->ctx, "http_auth_failures", 1);
	*answer = s_fail(ing, conn, MHD_HTTP_UNAUTHORIZED, NULL, -1,
			 "a bearer token is required: send 'Authorization: Bearer <token>'");
	return NULL;
}

/* ---- events in ----------------------------------------------------------------------------- */

typedef struct header_list {
	binding_header_t *items;
	size_t n, cap;
	bool oom;
} header_list_t;

static enum MHD_Result s_collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
					const char *value)
{
	header_list_t *l = cls;

	(void)kind;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		binding_header_t *items = realloc(l->items, cap * sizeof *items);
		if (!items) {
			l->oom = true;
			return MHD_NO;
		}
		l->items = items;
		l->cap = cap;
	}
	l->items[l->n].name = key;
	l->items[l->n].value = value ? value : "";
	l->n++;
	return MHD_YES;
}

/* Answers a request whose events are msgs[0..n) (taken: every one is emitted or
 * destroyed). `batch` says whether the client sent a batch (errors then name the event). */
static enum MHD_Result s_emit_all(ingress_t *ing, struct MHD_Connection *conn, req_t *rq,
				  kanal_msg_t **msgs, size_t n, bool batch)
{
	json_t *results = json_array();
	size_t duplicates = 0, emitted = 0, busy_at = n, invalid = 0;
	int hard_rc = 0, flush_rc = 0;
	int64_t now = kanal_now_ms();
	unsigned status;
	json_t *body;

	s_seen_expire(&ing->seen, now, ing->dedupe_window_ms);
	for (size_t i = 0; i < n; i++) {
		char id[256];
		json_t *r;
		int rc;

		snprintf(id, sizeof id, "%s", kanal_msg_id(msgs[i]));
		if (busy_at < n || hard_rc) {
			r = hard_rc ? json_pack("{s:s,s:s,s:s}", "id", id, "status", "error",
						"reason", kanal_strerror(hard_rc))
				    : json_pack("{s:s,s:s,s:I}", "id", id, "status", "busy",
						"retry_after_ms",
						(json_int_t)ing->busy_retry_after_ms);
			json_array_append_new(results, r);
			kanal_msg_destroy(&msgs[i]);
			continue;
		}
		if (s_seen_has(&ing->seen, kanal_msg_source(msgs[i]), kanal_msg_id(msgs[i]))) {
			duplicates++;
			json_array_append_new(
				results, json_pack("{s:s,s:s}", "id", id, "status", "duplicate"));
			kanal_msg_destroy(&msgs[i]);
			continue;
		}
		{
			/* Emit takes the message: keep its source for the seen list. */
			char *src = strdup(kanal_msg_source(msgs[i]));
			char *full_id = strdup(kanal_msg_id(msgs[i]));

			rc = kanal_emit(ing->ctx, &msgs[i]);
			if (rc == 0 && src && full_id)
				s_seen_add(&ing->seen, src, full_id, now);
			free(src);
			free(full_id);
		}
		if (rc == 0) {
			emitted++;
			json_array_append_new(
				results, json_pack("{s:s,s:s}", "id", id, "status", "accepted"));
		} else if (rc == KANAL_EBUSY) {
			busy_at = i;
			json_array_append_new(results,
					      json_pack("{s:s,s:s,s:I}", "id", id, "status", "busy",
							"retry_after_ms",
							(json_int_t)ing->busy_retry_after_ms));
		} else if (rc == KANAL_EINVALID || rc == KANAL_ETOOBIG) {
			invalid++;
			json_array_append_new(
				results,
				json_pack(
					"{s:s,s:s,s:s}", "id", id, "status", "invalid", "reason",
					rc == KANAL_ETOOBIG
						? "larger than kanald's max_event_size"
						: "refused by kanald as an invalid CloudEvent (see "
						  "kanald's log)"));
		} else {
			hard_rc = rc;
			json_array_append_new(results,
					      json_pack("{s:s,s:s,s:s}", "id", id, "status",
							"error", "reason", kanal_strerror(rc)));
		}
	}
	free(msgs);
	/* "accepted" means durable: wait for kanald's journal. When kanald is pushing back,
	 * held events will not commit soon, so only what is already acknowledged counts. */
	if (emitted || duplicates)
		flush_rc = kanal_emit_flush(ing->ctx, busy_at < n ? 0 : ing->flush_timeout_ms);
	if (flush_rc) {
		size_t i;
		json_t *r;
		json_array_foreach(results, i, r)
		{
			const char *st = json_string_value(json_object_get(r, "status"));
			if (st && (!strcmp(st, "accepted") || !strcmp(st, "duplicate")))
				json_object_set_new(r, "durable", json_false());
		}
	}
	kanal_metric_add(ing->ctx, "http_events_accepted", (int64_t)emitted);
	if (duplicates)
		kanal_metric_add(ing->ctx, "http_events_duplicate", (int64_t)duplicates);
	body = json_pack("{s:o}", "results", results);
	if (busy_at < n) {
		kanal_metric_add(ing->ctx, "http_busy", 1);
		kanal_log(ing->ctx, KANAL_LOG_INFO,
			  "kanald is busy: answered 429 after %zu of %zu events%s%s", busy_at, n,
			  rq->client ? " from client " : "",
			  rq->client ? tokens_client_name(rq->client) : "");
		return s_respond(ing, conn, 429, body, ing->busy_retry_after_ms);
	}
	if (hard_rc || flush_rc) {
		json_object_set_new(
			body, "error",
			json_string(hard_rc ? kanal_strerror(hard_rc)
				    : flush_rc == KANAL_ETIMEDOUT
					    ? "kanald has taken the events but did not "
					      "confirm them durable in time; sending them "
					      "again is safe (duplicates are suppressed)"
					    : kanal_strerror(flush_rc)));
		return s_respond(ing, conn, MHD_HTTP_SERVICE_UNAVAILABLE, body,
				 ing->busy_retry_after_ms);
	}
	status = MHD_HTTP_ACCEPTED;
	if (invalid && !batch)
		status = MHD_HTTP_BAD_REQUEST;
	else if (invalid && invalid == n)
		status = MHD_HTTP_BAD_REQUEST;
	kanal_log(ing->ctx, KANAL_LOG_DEBUG, "%s%s posted %zu event%s: %zu accepted, %zu duplicate",
		  rq->client ? "client " : "an anonymous client",
		  rq->client ? tokens_client_name(rq->client) : "", n, n == 1 ? "" : "s", emitted,
		  duplicates);
	return s_respond(ing, conn, status, body, -1);
}

/* Parses the body read for rq into events, checks them and answers. */
static enum MHD_Result s_process(ingress_t *ing, struct MHD_Connection *conn, req_t *rq)
{
	const char *ctype =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	kanal_msg_t **msgs = NULL;
	size_t n = 0;
	bool batch = false;
	char media[128];
	kanal_error_t err;
	int rc;

	kanal_error_clear(&err);
	binding_media_type(ctype, media, sizeof media);
	if (rq->map) {
		/* Vendor JSON: the path's jq program makes the events (mapped.c). */
		if (!binding_media_is_json(ctype ? media : NULL))
			return s_fail(ing, conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NULL, -1,
				      "'%s' is not JSON: post the body as application/json", media);
		rc = mapped_decode(ing->mapped, rq->map, rq->body ? rq->body : "", rq->len,
				   rq->client ? tokens_client_name(rq->client) : NULL, &msgs, &n,
				   &batch, &err);
		if (rc == KANAL_EPARSE)
			return s_fail(ing, conn, MHD_HTTP_BAD_REQUEST, NULL, -1, "%s", err.text);
		if (rc == KANAL_ETOOBIG)
			return s_fail(ing, conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL, -1, "%s",
				      err.text);
		if (rc == KANAL_EREJECTED)
			return s_fail(ing, conn, MHD_HTTP_UNPROCESSABLE_CONTENT,
				      err.attribute[0] ? err.attribute : NULL, -1, "%s", err.text);
		if (rc < 0)
			return MHD_NO;
	} else if (!strcmp(media, BINDING_BATCH)) {
		kanal_batch_t *b = NULL;

		batch = true;
		rc = kanal_batch_parse(rq->body ? rq->body : "", rq->len, ing->max_body, &b, &err);
		if (rc == KANAL_ETOOBIG)
			return s_fail(ing, conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL, -1,
				      "the batch is larger than max_body (%zu bytes)",
				      ing->max_body);
		if (rc < 0) {
			long ev = -1;
			if (!strncmp(err.text, "event #", 7))
				ev = strtol(err.text + 7, NULL, 10);
			return s_fail(ing, conn, MHD_HTTP_BAD_REQUEST, err.attribute, ev,
				      "invalid batch: %s", err.text);
		}
		msgs = b->msgs;
		n = b->count;
		b->msgs = NULL;
		b->count = 0;
		kanal_batch_destroy(&b);
	} else if (!strcmp(media, "multipart/form-data")) {
		/* An event with its files: the files go into the blob store (multipart.c). */
		kanal_msg_t *m = NULL;

		if (rq->mp) {
			rc = multipart_finish(rq->mp, &m, &err);
		} else {
			/* Not streamed: no boundary (say so), or a token that was refused. */
			multipart_t *mp = NULL;
			rc = multipart_new(ing->ctx, ctype, ing->max_event_size, &mp, &err);
			if (rc == 0)
				multipart_feed(mp, rq->body ? rq->body : "", rq->len, &err);
			if (rc == 0)
				rc = multipart_finish(mp, &m, &err);
			multipart_destroy(&mp);
		}
		if (rc == KANAL_ETOOBIG)
			return s_fail(ing, conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL, -1, "%s",
				      err.text);
		if (rc == KANAL_EPARSE || rc == KANAL_EINVALID)
			return s_fail(ing, conn, MHD_HTTP_BAD_REQUEST,
				      err.attribute[0] ? err.attribute : NULL, -1,
				      "invalid event: %s", err.text);
		if (rc < 0)
			return s_fail(ing, conn, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, -1,
				      "cannot store the files: %s", err.text);
		if (!(msgs = malloc(sizeof *msgs))) {
			kanal_msg_destroy(&m);
			return MHD_NO;
		}
		msgs[n++] = m;
	} else if (!strcmp(media, BINDING_STRUCTURED)) {
		kanal_msg_t *m = NULL;

		rc = kanal_msg_parse(rq->body ? rq->body : "", rq->len, ing->max_event_size, &m,
				     &err);
		if (rc == KANAL_ETOOBIG)
			return s_fail(ing, conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL, -1,
				      "the event is larger than max_event_size (%zu bytes)",
				      ing->max_event_size);
		if (rc < 0)
			return s_fail(ing, conn, MHD_HTTP_BAD_REQUEST, err.attribute, -1,
				      "invalid event: %s", err.text);
		if (!(msgs = malloc(sizeof *msgs))) {
			kanal_msg_destroy(&m);
			return MHD_NO;
		}
		msgs[n++] = m;
	} else if (!strncmp(media, "application/cloudevents", 23)) {
		return s_fail(ing, conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NULL, -1,
			      "event format '%s' is not supported: use %s or %s", media,
			      BINDING_STRUCTURED, BINDING_BATCH);
	} else {
		header_list_t hl = { 0 };
		kanal_msg_t *m = NULL;

		MHD_get_connection_values(conn, MHD_HEADER_KIND, s_collect_header, &hl);
		if (hl.oom) {
			free(hl.items);
			return MHD_NO;
		}
		if (rq->len > ing->max_event_size) {
			free(hl.items);
			return s_fail(ing, conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL, -1,
				      "the event's data is larger than max_event_size (%zu bytes)",
				      ing->max_event_size);
		}
		rc = binding_binary_decode(hl.items, hl.n, ctype, rq->body ? rq->body : "", rq->len,
					   ing->max_event_size, &m, &err);
		free(hl.items);
		if (rc == KANAL_ETOOBIG)
			return s_fail(ing, conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL, -1,
				      "the event is larger than max_event_size (%zu bytes)",
				      ing->max_event_size);
		if (rc < 0)
			return s_fail(ing, conn, MHD_HTTP_BAD_REQUEST, err.attribute, -1,
				      "invalid event: %s", err.text);
		if (!(msgs = malloc(sizeof *msgs))) {
			kanal_msg_destroy(&m);
			return MHD_NO;
		}
		msgs[n++] = m;
	}
	/* Check every event before emitting any: an invalid request leaves nothing behind. */
	for (size_t i = 0; i < n; i++) {
		char attr[64] = "";
		const char *type = kanal_msg_type(msgs[i]);
		char at[40] = "";
		enum MHD_Result answer;

		if (batch)
			snprintf(at, sizeof at, "event #%zu: ", i);
		if ((batch || rq->map) && kanal_msg_size(msgs[i]) > ing->max_event_size) {
			answer = s_fail(ing, conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL, (long)i,
					"%sthe event is larger than max_event_size (%zu bytes)", at,
					ing->max_event_size);
		} else if (!tokens_client_allows(rq->client, type)) {
			kanal_log(ing->ctx, KANAL_LOG_WARN,
				  "refused events from client %s: it may not send type %s",
				  tokens_client_name(rq->client), type);
			answer = s_fail(ing, conn, MHD_HTTP_FORBIDDEN, "type", batch ? (long)i : -1,
					"%sclient '%s' may not send events of type '%s'", at,
					tokens_client_name(rq->client), type);
		} else if (kanal_msg_context_cpr(msgs[i], attr, sizeof attr)) {
			answer = s_fail(
				ing, conn, MHD_HTTP_BAD_REQUEST, attr, batch ? (long)i : -1,
				"%sinvalid event: attribute '%s' holds a CPR number; context "
				"attributes may be logged by anyone on the way: put the person "
				"in data, or use a pseudonym in subject",
				at, attr);
		} else if (!tokens_client_owns(rq->client, kanal_msg_source(msgs[i]))) {
			/* Only the owner may use a source: duplicate suppression on (source, id)
			 * is sound only then (docs/design/tenancy.md). */
			kanal_metric_add(ing->ctx, "http_sources_denied", 1);
			kanal_log(ing->ctx, KANAL_LOG_WARN,
				  "refused events from client %s: it does not own source %s",
				  tokens_client_name(rq->client), kanal_msg_source(msgs[i]));
			answer = s_fail(
				ing, conn, MHD_HTTP_FORBIDDEN, "source", batch ? (long)i : -1,
				"%sclient '%s' does not own source '%s' (its sources= in "
				"tokens_file)",
				at, tokens_client_name(rq->client), kanal_msg_source(msgs[i]));
		} else {
			continue;
		}
		for (size_t k = 0; k < n; k++)
			kanal_msg_destroy(&msgs[k]);
		free(msgs);
		return answer;
	}
	/* W3C Trace Context headers give the events that carry no trace of their own the
	 * request's (kc_trace.h); an invalid one is ignored, as the spec says. After the checks:
	 * the ids are random hex, never a reason to refuse an event. */
	for (size_t i = 0; i < n; i++)
		kc_trace_adopt(msgs[i],
			       MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "traceparent"),
			       MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "tracestate"));
	if (rq->client && ing->client_rate > 0) {
		/* client_rate: a token per event, from the client's own bucket; one tenant
		 * posting too much slows only itself. */
		int64_t wait = tokens_client_take(
			ing->tokens, rq->client, n, (double)ing->client_rate,
			(double)(ing->client_burst > 0 ? ing->client_burst : ing->client_rate),
			kanal_now_ms());
		if (wait > 0) {
			for (size_t k = 0; k < n; k++)
				kanal_msg_destroy(&msgs[k]);
			free(msgs);
			kanal_metric_add(ing->ctx, "http_rate_limited", 1);
			return s_respond(ing, conn, 429,
					 json_pack("{s:s}", "error",
						   "over client_rate for this client: try again "
						   "after Retry-After"),
					 wait);
		}
	}
	return s_emit_all(ing, conn, rq, msgs, n, batch);
}

/* A multipart/form-data body is streamed as it comes — its files into the blob store, so
 * max_body does not bound it (the blob limits do) — once the request may send it: with
 * tokens_file, only under a valid token (else it is read as any body, and refused at its
 * end). */
static void s_multipart_begin(ingress_t *ing, struct MHD_Connection *conn, req_t *rq)
{
	const char *ctype =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	char media[128];

	binding_media_type(ctype, media, sizeof media);
	if (strcmp(media, "multipart/form-data") ||
	    (ing->tokens &&
	     !s_bearer_client(ing, MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							       MHD_HTTP_HEADER_AUTHORIZATION))))
		return;
	if (multipart_new(ing->ctx, ctype, ing->max_event_size, &rq->mp, NULL) != 0)
		rq->mp = NULL;
}

/* libmicrohttpd's access handler: called first with the headers, then with each piece of
 * the body, then once more with none left. Runs on the instance's thread (see MHD_run). */
static enum MHD_Result s_handler(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload_data,
				 size_t *upload_size, void **con_cls)
{
	ingress_t *ing = cls;
	req_t *rq = *con_cls;

	(void)version;
	if (!rq) {
		const char *clen;
		enum MHD_Result answer;

		if (!(rq = calloc(1, sizeof *rq)))
			return MHD_NO;
		*con_cls = rq;
		gate_request_began(conn);
		/* What can be answered from the headers is answered before the body is read —
		 * at once when the client waits for that (Expect: 100-continue) or the body is
		 * absurdly large; otherwise after reading and discarding the body, since a
		 * client still sending would see a reset instead of the answer. */
		const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
		bool waits = expect && strcasestr(expect, "100-continue");
		rq->answered = true;
		if (strcmp(url, ing->path) && !(rq->map = mapped_find(ing->mapped, url)))
			return s_fail(ing, conn, MHD_HTTP_NOT_FOUND, NULL, -1,
				      "nothing here: events are posted to %s", ing->path);
		if (strcmp(method, MHD_HTTP_METHOD_POST))
			return s_fail(ing, conn, MHD_HTTP_METHOD_NOT_ALLOWED, NULL, -1,
				      "%s is not allowed: post events to %s", method, ing->path);
		clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						   MHD_HTTP_HEADER_CONTENT_LENGTH);
		s_multipart_begin(ing, conn, rq);
		if (!rq->mp && clen && (waits || strtoull(clen, NULL, 10) > DISCARD_MAX(ing)) &&
		    strtoull(clen, NULL, 10) > ing->max_body)
			return s_fail(ing, conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL, -1,
				      "the body (%s bytes) is larger than max_body (%zu bytes)",
				      clen, ing->max_body);
		if (ing->tokens && waits && !(rq->client = s_authenticate(ing, conn, &answer)))
			return answer;
		rq->auth_pending = ing->tokens && !waits;
		rq->answered = false;
		return MHD_YES;
	}
	if (*upload_size) {
		size_t add = *upload_size;

		*upload_size = 0;
		rq->seen += add;
		if (rq->seen > DISCARD_MAX(ing) && !rq->answered && (!rq->mp || rq->mp_rc))
			return MHD_NO; /* not worth reading to the end: close */
		if (rq->answered || rq->too_big)
			return MHD_YES;
		if (rq->mp) {
			/* Streamed into the blob store; a failure is answered at the end. */
			if (!rq->mp_rc)
				rq->mp_rc = multipart_feed(rq->mp, upload_data, add, NULL);
			return MHD_YES;
		}
		if (rq->len + add > ing->max_body) {
			rq->too_big = true;
			free(rq->body);
			rq->body = NULL;
			rq->len = rq->cap = 0;
			/* A chunked body has no end in sight: libmicrohttpd 0.9 queues an answer
			 * only once the body is read, so the gate answers now and closes. */
			if (!MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							 MHD_HTTP_HEADER_CONTENT_LENGTH)) {
				char text[160];
				snprintf(text, sizeof text,
					 "the body is larger than max_body (%zu "
					 "bytes)",
					 ing->max_body);
				gate_answer_and_close(conn, MHD_HTTP_CONTENT_TOO_LARGE, text);
				kanal_metric_add(ing->ctx, "http_requests_refused", 1);
				rq->answered = rq->answered_by_gate = true;
			}
			return MHD_YES;
		}
		if (rq->len + add + 1 > rq->cap) {
			size_t cap = rq->cap ? rq->cap : 4096;
			char *b;
			while (cap < rq->len + add + 1)
				cap *= 2;
			if (!(b = realloc(rq->body, cap)))
				return MHD_NO;
			rq->body = b;
			rq->cap = cap;
		}
		memcpy(rq->body + rq->len, upload_data, add);
		rq->len += add;
		rq->body[rq->len] = '\0';
		return MHD_YES;
	}
	if (rq->answered_by_gate)
		return MHD_NO;
	if (rq->answered)
		return MHD_YES;
	rq->answered = true;
	if (rq->auth_pending) {
		enum MHD_Result answer;
		if (!(rq->client = s_authenticate(ing, conn, &answer)))
			return answer;
	}
	if (rq->too_big)
		return s_fail(ing, conn, MHD_HTTP_CONTENT_TOO_LARGE, NULL, -1,
			      "the body is larger than max_body (%zu bytes)", ing->max_body);
	return s_process(ing, conn, rq);
}

static void s_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			enum MHD_RequestTerminationCode toe)
{
	req_t *rq = *con_cls;

	(void)cls;
	(void)toe;
	gate_request_done(conn);
	if (rq) {
		multipart_destroy(&rq->mp);
		free(rq->body);
		free(rq);
		*con_cls = NULL;
	}
}

static void s_mhd_log(void *cls, const char *fmt, va_list ap)
{
	ingress_t *ing = cls;
	char line[512];
	size_t n;

	vsnprintf(line, sizeof line, fmt, ap);
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	kc_log_limited(ing->ctx, &ing->log_mhd, KANAL_LOG_WARN, "libmicrohttpd: %s", line);
}

/* ---- driving libmicrohttpd from the instance's thread ------------------------------------- */

/* The gate's sweep runs before each pump: it says how soon it wants to run again. */
static int64_t s_gate_sweep(void *gate)
{
	return gate_sweep(gate);
}

/* ---- options and lifecycle ----------------------------------------------------------------- */

/* Splits `listen` into host and port: "8080", "127.0.0.1:8080", "[::1]:8080". */
static int s_parse_listen(const char *listen, char *host, size_t hsize, char *port, size_t psize)
{
	const char *colon;
	char *end;
	long p;

	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (!close || close[1] != ':' || (size_t)(close - listen - 1) >= hsize)
			return -1;
		snprintf(host, hsize, "%.*s", (int)(close - listen - 1), listen + 1);
		colon = close + 1;
	} else if ((colon = strrchr(listen, ':'))) {
		if (colon == listen || (size_t)(colon - listen) >= hsize ||
		    strchr(listen, ':') != colon)
			return -1;
		snprintf(host, hsize, "%.*s", (int)(colon - listen), listen);
	} else {
		snprintf(host, hsize, "127.0.0.1");
		colon = listen - 1;
	}
	p = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end || p < 0 || p > 65535)
		return -1;
	snprintf(port, psize, "%ld", p);
	return 0;
}

int ingress_new(kanal_ctx_t *ctx, const http_options_t *opt, ingress_t **out)
{
	const char *listen = opt->listen;
	const char *tokens_file = opt->tokens_file;
	const char *port_file = opt->port_file;
	ingress_t *ing;
	char why[768];
	int rc;

	*out = NULL;
	if (!listen || !*listen) {
		if (tokens_file || port_file || opt->map_paths.count) {
			kanal_set_error(ctx,
					"%s is given but listen is not: the ingress options "
					"need listen (e.g. listen: 127.0.0.1:8080)",
					tokens_file ? "tokens_file"
					: port_file ? "port_file"
						    : "map_paths");
			return KANAL_ECONFIG;
		}
		return 0;
	}
	if (!(ing = calloc(1, sizeof *ing)))
		return KANAL_ENOMEM;
	ing->ctx = ctx;
	if (s_parse_listen(listen, ing->host, sizeof ing->host, ing->port, sizeof ing->port) < 0) {
		kanal_set_error(ctx,
				"option 'listen': '%s' is not HOST:PORT, [IPv6]:PORT or PORT "
				"with a port from 0 to 65535 (e.g. 127.0.0.1:8080; port 0 "
				"picks a free port)",
				listen);
		rc = KANAL_ECONFIG;
		goto fail;
	}
	ing->path = opt->path;
	if (!ing->path || ing->path[0] != '/') {
		kanal_set_error(ctx, "path '%s' must start with '/' (e.g. /events)",
				ing->path ? ing->path : "");
		rc = KANAL_ECONFIG;
		goto fail;
	}
	ing->max_body = (size_t)opt->max_body;
	ing->max_event_size = (size_t)opt->max_event_size;
	if (ing->max_body < ing->max_event_size) {
		kanal_set_error(ctx,
				"max_body (%zu bytes) must be at least max_event_size (%zu "
				"bytes)",
				ing->max_body, ing->max_event_size);
		rc = KANAL_ECONFIG;
		goto fail;
	}
	ing->flush_timeout_ms = opt->flush_timeout_ms;
	ing->busy_retry_after_ms = opt->busy_retry_after_ms;
	ing->dedupe_window_ms = opt->dedupe_window_ms;
	ing->client_rate = opt->client_rate;
	ing->client_burst = opt->client_burst;
	if ((rc = mapped_new(ctx, &opt->map_paths, opt->map_dir, ing->path, &ing->mapped)) < 0)
		goto fail;
	/* The table keeps connection_timeout at 1s or more and max_connections in 1-100000. */
	ing->conn_timeout_s = (unsigned)((opt->connection_timeout_ms + 999) / 1000);
	ing->max_connections = (unsigned)opt->max_connections;
	/* The limits that keep slow and flooding clients from starving good ones (gate.c);
	 * the table keeps request_timeout at 1s or more and the count in 1-100000. */
	ing->limits.request_timeout_ms = opt->request_timeout_ms;
	ing->limits.max_per_address = (unsigned)opt->max_connections_per_address;
	ing->limits.max_connections = ing->max_connections;
	if (port_file && !(ing->port_file = strdup(port_file))) {
		rc = KANAL_ENOMEM;
		goto fail;
	}
	if (tokens_file) {
		rc = tokens_load(tokens_file, &ing->tokens, why, sizeof why);
		if (rc < 0) {
			kanal_set_error(ctx, "%s", why);
			rc = rc == KANAL_ENOMEM ? rc : KANAL_ECONFIG;
			goto fail;
		}
	} else if (!kc_url_host_is_loopback(ing->host) && !opt->allow_unauthenticated) {
		kanal_set_error(ctx,
				"listen '%s' is reachable from other machines but no "
				"tokens_file is given: anyone could post events. Give tokens_file, "
				"or set allow_unauthenticated: true if a proxy in front "
				"authenticates",
				listen);
		rc = KANAL_ECONFIG;
		goto fail;
	}
	*out = ing;
	return 0;
fail:
	ingress_destroy(&ing);
	return rc;
}

int ingress_start(ingress_t *ing, kanal_ctx_t *ctx)
{
	struct addrinfo hints, *ai = NULL;
	unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET;
	char where[300];
	int gai, rc;

	ing->ctx = ctx;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(where, sizeof where, strchr(ing->host, ':') ? "[%s]:%s" : "%s:%s", ing->host,
		 ing->port);
	if ((gai = getaddrinfo(ing->host, ing->port, &hints, &ai)) != 0) {
		kanal_set_error(ctx, "listen %s: %s", where, gai_strerror(gai));
		return KANAL_ECONFIG;
	}
	/* The gate listens and accepts; libmicrohttpd serves what it admits. */
	if (!ing->gate && (rc = gate_new(ctx, &ing->limits, &ing->gate)) < 0) {
		freeaddrinfo(ai);
		return rc;
	}
	errno = 0;
	rc = gate_listen(ing->gate, ctx, ai->ai_addr, ai->ai_addrlen, &ing->bound_port);
	freeaddrinfo(ai);
	if (rc < 0) {
		kanal_set_error(ctx, "cannot listen on %s: %s", where,
				errno ? strerror(errno) : "cannot watch the socket");
		return rc;
	}
	/* libmicrohttpd's own connection limit is only a backstop: the gate keeps the count
	 * at max_connections, plus those it has cut off and libmicrohttpd is closing. */
	ing->daemon = MHD_start_daemon(
		flags, 0, NULL, NULL, s_handler, ing, MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, ing,
		MHD_OPTION_CONNECTION_LIMIT, ing->max_connections * 2 + 16,
		MHD_OPTION_CONNECTION_TIMEOUT, ing->conn_timeout_s, MHD_OPTION_NOTIFY_COMPLETED,
		s_completed, ing, MHD_OPTION_NOTIFY_CONNECTION, gate_on_mhd_connection, ing->gate,
		MHD_OPTION_END);
	if (!ing->daemon) {
		kanal_set_error(ctx, "cannot serve on %s: %s", where,
				errno ? strerror(errno) : "libmicrohttpd refused to start");
		gate_close(ing->gate);
		return KANAL_EIO;
	}
	gate_serve(ing->gate, ing->daemon, kc_mhd_pump, &ing->pump);
	if (ing->bound_port <= 0 ||
	    kc_mhd_pump_start(&ing->pump, ctx, ing->daemon, INGRESS_MAX_TIMER_MS, s_gate_sweep,
			      ing->gate) != 0) {
		kanal_set_error(ctx, "listen %s: libmicrohttpd gave no epoll descriptor", where);
		ingress_stop(ing, ctx);
		return KANAL_EIO;
	}
	snprintf(where, sizeof where, strchr(ing->host, ':') ? "[%s]:%d" : "%s:%d", ing->host,
		 ing->bound_port);
	if (ing->port_file) {
		char text[16], *dir = strdup(ing->port_file), *slash;
		const char *name = ing->port_file;

		if (!dir) {
			ingress_stop(ing, ctx);
			return KANAL_ENOMEM;
		}
		slash = strrchr(dir, '/');
		if (slash) {
			*slash = '\0';
			name = slash + 1;
		}
		snprintf(text, sizeof text, "%d\n", ing->bound_port);
		rc = kc_file_write_atomic(slash ? (*dir ? dir : "/") : ".", name, text,
					  strlen(text), 0644);
		free(dir);
		if (rc < 0) {
			kanal_set_error(ctx, "cannot write port_file %s: %s", ing->port_file,
					strerror(errno));
			ingress_stop(ing, ctx);
			return rc;
		}
	}
	kanal_log(ctx, KANAL_LOG_INFO, "listening on http://%s%s (%s)", where, ing->path,
		  ing->tokens ? "bearer tokens required" : "no authentication");
	return 0;
}

void ingress_stop(ingress_t *ing, kanal_ctx_t *ctx)
{
	if (!ing)
		return;
	kc_mhd_pump_stop(&ing->pump);
	gate_close(ing->gate);
	if (ing->daemon) {
		MHD_stop_daemon(ing->daemon);
		ing->daemon = NULL;
		/* A port file left behind would name a port nobody listens on any more. */
		if (ing->port_file)
			unlink(ing->port_file);
	}
}

void ingress_destroy(ingress_t **ing_p)
{
	ingress_t *ing = ing_p ? *ing_p : NULL;

	if (!ing)
		return;
	gate_close(ing->gate);
	if (ing->daemon)
		MHD_stop_daemon(ing->daemon);
	gate_destroy(&ing->gate);
	tokens_destroy(&ing->tokens);
	mapped_destroy(&ing->mapped);
	s_seen_clear(&ing->seen);
	free(ing->port_file);
	free(ing);
	*ing_p = NULL;
}
