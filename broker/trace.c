/*
 * broker/trace.c — kanald's spans and their exporter (`trace.export`): the router's thread
 * cuts spans into a single-producer, single-consumer ring of fixed slots (a full ring drops
 * the span and counts it: the router never waits), and a thread of this file's own sends
 * them in batches as OTLP/HTTP JSON (resourceSpans → scopeSpans → spans) to the collector
 * with libcurl. A collector that is slow or gone costs that thread its time and the spans
 * it could not send, counted; never the router's. See trace.h, docs/design/tracing.md.
 */
#include "trace.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <kanal/cpr.h>

#include "log.h"

/* OTLP's span kinds and status codes (opentelemetry/proto/trace/v1/trace.proto). */
enum { KIND_INTERNAL = 1, KIND_PRODUCER = 4, KIND_CONSUMER = 5 };
enum { STATUS_UNSET = 0, STATUS_OK = 1, STATUS_ERROR = 2 };

typedef enum span_kind { SPAN_ACCEPT, SPAN_ROUTE, SPAN_DELIVERY } span_kind_t;

/* One span in the ring: fixed size, so that queueing it is a copy, not an allocation. */
typedef struct span {
	span_kind_t kind;
	uint8_t trace_id[16], span_id[8], parent_id[8];
	bool has_parent;
	int64_t start_ns, end_ns;
	int32_t attempt, routes;
	const char *outcome; /* a string literal (trace_delivery's callers) */
	char id[128], source[128], type[128];
	char route[128], dest[64];
} span_t;

struct trace {
	const conf_t *conf;
	span_t *ring;
	size_t cap;
	_Atomic size_t head, tail; /* counters: the consumer owns head, the router tail */
	_Atomic uint64_t exported, failed, dropped;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock; /* for the exporter's sleep only; the router never takes it */
	pthread_cond_t wake;
	bool stop;
	CURL *curl;
	struct curl_slist *headers;
};

int64_t trace_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Copies an attribute value, CPR numbers masked: context attributes never hold one (the
 * gateway and the ingress refuse them), and a span must not be where one first leaks. */
static void s_copy(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
	kanal_cpr_redact_inplace(dst);
}

/* ---- the router's side: cutting spans ------------------------------------------------ */

/* Puts a span in the ring, or counts it dropped when the ring is full. */
static span_t *s_slot(trace_t *t)
{
	size_t tail = atomic_load_explicit(&t->tail, memory_order_relaxed);

	if (tail - atomic_load_explicit(&t->head, memory_order_acquire) >= t->cap) {
		atomic_fetch_add_explicit(&t->dropped, 1, memory_order_relaxed);
		return NULL;
	}
	return &t->ring[tail % t->cap];
}

static void s_publish(trace_t *t)
{
	atomic_store_explicit(&t->tail, atomic_load_explicit(&t->tail, memory_order_relaxed) + 1,
			      memory_order_release);
}

static void s_accept_span_id(const trace_accept_t *a, uint8_t out[8])
{
	const char *parts[] = { "accept", a->source, a->id };

	kc_trace_span_id(a->ctx.trace_id, parts, 3, 0, out);
}

static void s_route_span_id(const uint8_t trace_id[16], const char *source, const char *id,
			    const char *route, uint8_t out[8])
{
	const char *parts[] = { "route", source, id, route };

	kc_trace_span_id(trace_id, parts, 4, 0, out);
}

/* A new trace for an event that came without one. Its text never looks like a CPR number
 * (ten digits, a date among them, in the random hex): kanald's logs and stream would mask
 * it, and a transform's output check would take it for a person's number. */
static bool s_new_trace(trace_accept_t *a, kanal_msg_t *msg)
{
	char tp[KC_TRACEPARENT_LEN + 1];

	for (int tries = 0; tries < 16; tries++) {
		if (getrandom(a->ctx.trace_id, sizeof a->ctx.trace_id, 0) !=
		    (ssize_t)sizeof a->ctx.trace_id)
			return false;
		a->ctx.flags = 1; /* sampled: kanald records it */
		s_accept_span_id(a, a->ctx.parent_id);
		kc_traceparent_format(a->ctx.trace_id, a->ctx.parent_id, a->ctx.flags, tp);
		if (kanal_cpr_find(tp, KC_TRACEPARENT_LEN, NULL, NULL))
			continue;
		/* A tracestate belongs to the traceparent it came with: with an invalid one, the
		 * W3C says to drop both. */
		if (kanal_msg_attr(msg, "tracestate"))
			kanal_msg_set_attr(msg, "tracestate", NULL, NULL);
		return kanal_msg_set_attr(msg, "traceparent", tp, NULL) == 0;
	}
	return false;
}

void trace_accept_begin(trace_t *t, kanal_msg_t *msg, trace_accept_t *a)
{
	(void)t;
	a->start_ns = trace_now_ns();
	s_copy(a->id, sizeof a->id, kanal_msg_id(msg));
	s_copy(a->source, sizeof a->source, kanal_msg_source(msg));
	s_copy(a->type, sizeof a->type, kanal_msg_type(msg));
	a->has_parent = kc_traceparent_parse(kanal_msg_attr(msg, "traceparent"), &a->ctx) == 0;
	a->sampled = a->has_parent ? (a->ctx.flags & 1) != 0 : s_new_trace(a, msg);
}

static void s_event_attrs(span_t *s, const trace_accept_t *a)
{
	memcpy(s->trace_id, a->ctx.trace_id, 16);
	memcpy(s->id, a->id, sizeof s->id);
	memcpy(s->source, a->source, sizeof s->source);
	memcpy(s->type, a->type, sizeof s->type);
}

void trace_accepted(trace_t *t, const trace_accept_t *a, const route_t *const *m, size_t n)
{
	int64_t end = trace_now_ns();
	uint8_t accept_id[8];
	span_t *s;

	if (!a->sampled)
		return;
	s_accept_span_id(a, accept_id);
	if ((s = s_slot(t))) {
		memset(s, 0, offsetof(span_t, id));
		s->kind = SPAN_ACCEPT;
		s_event_attrs(s, a);
		memcpy(s->span_id, accept_id, 8);
		/* An event that came with a trace is a child of its sender's span. */
		s->has_parent = a->has_parent;
		memcpy(s->parent_id, a->ctx.parent_id, 8);
		s->start_ns = a->start_ns;
		s->end_ns = end;
		s->routes = (int32_t)n;
		s->route[0] = s->dest[0] = '\0';
		s_publish(t);
	}
	for (size_t i = 0; i < n; i++) {
		if (!(s = s_slot(t)))
			continue;
		memset(s, 0, offsetof(span_t, id));
		s->kind = SPAN_ROUTE;
		s_event_attrs(s, a);
		s_copy(s->route, sizeof s->route, m[i]->name);
		s->dest[0] = '\0';
		s_route_span_id(a->ctx.trace_id, a->source, a->id, s->route, s->span_id);
		s->has_parent = true;
		memcpy(s->parent_id, accept_id, 8);
		s->start_ns = a->start_ns;
		s->end_ns = end;
		s_publish(t);
	}
}

void trace_delivery(trace_t *t, const kanal_msg_t *msg, const char *route, const char *dest,
		    uint64_t delivery_id, int attempt, int64_t start_ns, const char *outcome)
{
	kc_trace_ctx_t ctx;
	span_t *s;

	if (kc_traceparent_parse(kanal_msg_attr(msg, "traceparent"), &ctx) != 0 ||
	    !(ctx.flags & 1) || !(s = s_slot(t)))
		return;
	memset(s, 0, offsetof(span_t, id));
	s->kind = SPAN_DELIVERY;
	memcpy(s->trace_id, ctx.trace_id, 16);
	s_copy(s->id, sizeof s->id, kanal_msg_id(msg));
	s_copy(s->source, sizeof s->source, kanal_msg_source(msg));
	s_copy(s->type, sizeof s->type, kanal_msg_type(msg));
	s_copy(s->route, sizeof s->route, route);
	s_copy(s->dest, sizeof s->dest, dest);
	kc_trace_delivery_span(ctx.trace_id, delivery_id, attempt, s->span_id);
	s_route_span_id(ctx.trace_id, s->source, s->id, s->route, s->parent_id);
	s->has_parent = true;
	s->end_ns = trace_now_ns();
	s->start_ns = start_ns > 0 && start_ns <= s->end_ns ? start_ns : s->end_ns;
	s->attempt = attempt;
	s->outcome = outcome;
	s_publish(t);
}

/* ---- the exporter's side: OTLP/HTTP JSON ------------------------------------------------ */

static json_t *s_hex(const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char buf[33];

	for (size_t i = 0; i < n; i++) {
		buf[2 * i] = digits[p[i] >> 4];
		buf[2 * i + 1] = digits[p[i] & 15];
	}
	buf[2 * n] = '\0';
	return json_string(buf);
}

/* int64 values are JSON strings in OTLP's JSON encoding (the protobuf JSON mapping). */
static json_t *s_int64(int64_t v)
{
	char buf[24];

	snprintf(buf, sizeof buf, "%lld", (long long)v);
	return json_string(buf);
}

static void s_attr_str(json_t *attrs, const char *key, const char *value)
{
	json_array_append_new(
		attrs, json_pack("{s:s,s:{s:s}}", "key", key, "value", "stringValue", value));
}

static void s_attr_int(json_t *attrs, const char *key, int64_t value)
{
	json_array_append_new(
		attrs, json_pack("{s:s,s:{s:o}}", "key", key, "value", "intValue", s_int64(value)));
}

static json_t *s_span_json(const span_t *s)
{
	static const char *const names[] = { "kanal.accept", "kanal.route", "kanal.deliver" };
	static const int kinds[] = { KIND_CONSUMER, KIND_INTERNAL, KIND_PRODUCER };
	json_t *attrs = json_array(), *j;
	int code = STATUS_UNSET;

	s_attr_str(attrs, "cloudevents.event_id", s->id);
	s_attr_str(attrs, "cloudevents.event_source", s->source);
	s_attr_str(attrs, "cloudevents.event_type", s->type);
	if (s->kind == SPAN_ACCEPT)
		s_attr_int(attrs, "kanal.routes", s->routes);
	if (s->kind != SPAN_ACCEPT)
		s_attr_str(attrs, "kanal.route", s->route);
	if (s->kind == SPAN_DELIVERY) {
		s_attr_str(attrs, "kanal.destination", s->dest);
		s_attr_int(attrs, "kanal.attempt", s->attempt);
		s_attr_str(attrs, "kanal.outcome", s->outcome ? s->outcome : "");
		code = s->outcome && !strcmp(s->outcome, "ok") ? STATUS_OK : STATUS_ERROR;
	}
	j = json_pack("{s:o,s:o,s:s,s:i,s:o,s:o,s:o}", "traceId", s_hex(s->trace_id, 16), "spanId",
		      s_hex(s->span_id, 8), "name", names[s->kind], "kind", kinds[s->kind],
		      "startTimeUnixNano", s_int64(s->start_ns), "endTimeUnixNano",
		      s_int64(s->end_ns), "attributes", attrs);
	if (s->has_parent)
		json_object_set_new(j, "parentSpanId", s_hex(s->parent_id, 8));
	if (code == STATUS_ERROR)
		json_object_set_new(j, "status",
				    json_pack("{s:i,s:s}", "code", code, "message",
					      s->outcome ? s->outcome : ""));
	else
		json_object_set_new(j, "status", json_pack("{s:i}", "code", code));
	return j;
}

/* The request body for spans ring[head .. head+n). */
static char *s_body(trace_t *t, size_t head, size_t n)
{
	json_t *spans = json_array(), *res_attrs = json_array(), *doc;
	char *text;

	for (size_t i = 0; i < n; i++)
		json_array_append_new(spans, s_span_json(&t->ring[(head + i) % t->cap]));
	s_attr_str(res_attrs, "service.name", t->conf->trace_service_name);
	s_attr_str(res_attrs, "service.version", KANAL_VERSION);
	doc = json_pack("{s:[{s:{s:o},s:[{s:{s:s,s:s},s:o}]}]}", "resourceSpans", "resource",
			"attributes", res_attrs, "scopeSpans", "scope", "name", "kanald", "version",
			KANAL_VERSION, "spans", spans);
	text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	return text;
}

static size_t s_discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* Sends ring[head .. head+n) in one request. Returns true when the collector took it. */
static bool s_send(trace_t *t, size_t head, size_t n, long timeout_ms)
{
	char *body = s_body(t, head, n);
	long status = 0;
	CURLcode rc;

	if (!body)
		return false;
	curl_easy_setopt(t->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(t->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(t->curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	rc = curl_easy_perform(t->curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
	free(body);
	if (rc == CURLE_OK && status >= 200 && status < 300)
		return true;
	if (rc != CURLE_OK)
		log_warn_limited("trace", "cannot send %zu spans to %s: %s", n, t->conf->trace_url,
				 curl_easy_strerror(rc));
	else
		log_warn_limited("trace", "the collector at %s refused %zu spans: HTTP %ld",
				 t->conf->trace_url, n, status);
	return false;
}

/* Sends what is queued, a batch a request. At the stop one failure ends it: the rest is
 * counted failed rather than holding up kanald's exit. */
static void s_flush(trace_t *t, bool all, bool stopping)
{
	for (;;) {
		size_t head = atomic_load_explicit(&t->head, memory_order_relaxed);
		size_t n = atomic_load_explicit(&t->tail, memory_order_acquire) - head;
		bool ok;

		if (n == 0 || (!all && n < (size_t)t->conf->trace_batch))
			return;
		if (n > (size_t)t->conf->trace_batch)
			n = (size_t)t->conf->trace_batch;
		ok = s_send(t, head, n, stopping ? 2000 : 5000);
		atomic_fetch_add_explicit(ok ? &t->exported : &t->failed, n, memory_order_relaxed);
		atomic_store_explicit(&t->head, head + n, memory_order_release);
		if (!ok && stopping)
			all = false;
	}
}

static void *s_exporter(void *arg)
{
	trace_t *t = arg;
	/* A full batch goes out within a tick; anything else within the interval. */
	int64_t tick_ms = t->conf->trace_interval_ms < 100 ? t->conf->trace_interval_ms : 100;
	int64_t next_ms = kanal_now_ms() + t->conf->trace_interval_ms;
	bool stop = false;

	while (!stop) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)(tick_ms / 1000);
		until.tv_nsec += (long)(tick_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L)
			until.tv_sec++, until.tv_nsec -= 1000000000L;
		pthread_mutex_lock(&t->lock);
		if (!t->stop)
			pthread_cond_timedwait(&t->wake, &t->lock, &until);
		stop = t->stop;
		pthread_mutex_unlock(&t->lock);
		if (stop)
			break;
		if (kanal_now_ms() >= next_ms) {
			s_flush(t, true, false);
			next_ms = kanal_now_ms() + t->conf->trace_interval_ms;
		} else {
			s_flush(t, false, false);
		}
	}
	s_flush(t, true, true);
	return NULL;
}

int trace_new(const conf_t *conf, trace_t **out)
{
	trace_t *t;
	int err;

	*out = NULL;
	if (!conf->trace_url)
		return 0;
	if (!(t = calloc(1, sizeof *t)))
		return KANAL_ENOMEM;
	t->conf = conf;
	t->cap = (size_t)conf->trace_queue;
	t->ring = calloc(t->cap, sizeof *t->ring);
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->wake, NULL);
	/* Before the instances start their threads: curl_global_init is not thread-safe. */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	t->curl = curl_easy_init();
	t->headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (!t->ring || !t->curl || !t->headers) {
		trace_destroy(&t);
		return KANAL_ENOMEM;
	}
	curl_easy_setopt(t->curl, CURLOPT_URL, conf->trace_url);
	curl_easy_setopt(t->curl, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(t->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(t->curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(t->curl, CURLOPT_WRITEFUNCTION, s_discard);
#if CURL_AT_LEAST_VERSION(7, 85, 0)
	curl_easy_setopt(t->curl, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
	if ((err = pthread_create(&t->thread, NULL, s_exporter, t)) != 0) {
		log_error("trace", "cannot start the span exporter: %s", strerror(err));
		trace_destroy(&t);
		return KANAL_EIO;
	}
	t->thread_started = true;
	log_info("trace", "sending spans to %s (batches of %lld, every %lld ms at most)",
		 conf->trace_url, (long long)conf->trace_batch, (long long)conf->trace_interval_ms);
	*out = t;
	return 0;
}

void trace_destroy(trace_t **t_p)
{
	trace_t *t = t_p ? *t_p : NULL;

	if (!t)
		return;
	if (t->thread_started) {
		pthread_mutex_lock(&t->lock);
		t->stop = true;
		pthread_cond_signal(&t->wake);
		pthread_mutex_unlock(&t->lock);
		pthread_join(t->thread, NULL);
	}
	if (t->curl)
		curl_easy_cleanup(t->curl);
	curl_slist_free_all(t->headers);
	pthread_cond_destroy(&t->wake);
	pthread_mutex_destroy(&t->lock);
	free(t->ring);
	free(t);
	*t_p = NULL;
}

void trace_counters(trace_t *t, uint64_t *exported, uint64_t *failed, uint64_t *dropped)
{
	*exported = atomic_load_explicit(&t->exported, memory_order_relaxed);
	*failed = atomic_load_explicit(&t->failed, memory_order_relaxed);
	*dropped = atomic_load_explicit(&t->dropped, memory_order_relaxed);
}
