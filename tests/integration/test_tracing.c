/*
 * tests/integration/test_tracing.c — W3C Trace Context and OTLP spans end to end: the real
 * kanald with the http connector as ingress and as webhook, a webhook receiver and an
 * OTLP/HTTP "collector" (both tests/util/webhook_rx.c: libmicrohttpd on ephemeral ports of
 * 127.0.0.1). A request's traceparent reaches the webhook with the same trace id and a
 * parent id per delivery attempt; the collector receives the accept, route and delivery
 * spans with their links and outcomes, and no event data; an invalid traceparent is
 * ignored (kanald starts a trace of its own); a gateway event's own traceparent is kept,
 * and an unsampled trace recorded by nobody; a collector that is down costs counted spans,
 * never a delivery; with tracing off nothing is added.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "http_client.h"
#include "kanald.h"
#include "test.h"
#include "webhook_rx.h"

#define WAIT 10000 /* ms: the bound of every wait */

#define TRACE_IN "0af7651916cd43dd8448eb211c80319c"
#define PARENT_IN "b7ad6b7169203331"
#define TP_IN "00-" TRACE_IN "-" PARENT_IN "-01"

static const char *const s_routes =
	"routes:\n"
	"  - name: traced\n    match: { type: trace.test }\n    to: hook\n"
	"    retry: { max_attempts: 5, backoff: 50ms, max_backoff: 100ms }\n";

/* What a test runs against: the webhook's receiver `rx`, the collector `col` (NULL
 * unless spans go to one), kanald, and the ingress's events URL. */
typedef struct fixture {
	webhook_rx_t *rx, *col;
	kd_t *kd;
	char url[128];
} fixture_t;

typedef enum { TRACE_OFF, TRACE_TO_COLLECTOR, TRACE_TO_NOBODY } trace_mode_t;

/* Starts kanald with the ingress `in` and the webhook `hook` (to f->rx), tracing as `mode`
 * says: off, to a collector of the test's own, or to a port where nothing listens.
 * Returns false when something would not start. */
static bool s_setup(fixture_t *f, const char *tag, trace_mode_t mode)
{
	char instances[1024], collector[64], *conf, *extra = NULL;
	int64_t until = test_now_ms() + WAIT;

	memset(f, 0, sizeof *f);
	if (!(f->rx = webhook_rx_new()))
		return false;
	if (mode == TRACE_TO_COLLECTOR && !(f->col = webhook_rx_new()))
		return false;
	snprintf(collector, sizeof collector, "%s",
		 f->col ? webhook_rx_url(f->col) : "http://127.0.0.1:");
	if (mode == TRACE_TO_NOBODY)
		snprintf(collector + strlen(collector), sizeof collector - strlen(collector), "%d",
			 test_free_port());
	if (mode != TRACE_OFF &&
	    asprintf(&extra,
		     "trace:\n  export:\n    url: %s/v1/traces\n    batch: 8\n    interval: 100ms\n"
		     "    service_name: kanald-test\n",
		     collector) < 0)
		return false;
	snprintf(instances, sizeof instances,
		 "  - name: in\n    plugin: http\n"
		 "    options: { listen: '127.0.0.1:0', port_file: '@DIR@/in.port' }\n"
		 "  - name: hook\n    plugin: http\n"
		 "    options: { url: '%s/hook', timeout: 2s }\n",
		 webhook_rx_url(f->rx));
	conf = kd_config(instances, extra);
	f->kd = kd_start(tag, conf, s_routes);
	free(conf);
	free(extra);
	while (f->kd && test_now_ms() < until) {
		char *text = test_read_file(kd_path(f->kd, "in.port"), NULL);
		int port = text ? atoi(text) : 0;
		free(text);
		if (port > 0) {
			snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d/events", port);
			return true;
		}
		test_sleep_ms(20);
	}
	return false;
}

static void s_teardown(fixture_t *f)
{
	kd_destroy(&f->kd);
	webhook_rx_destroy(&f->col);
	webhook_rx_destroy(&f->rx);
}

/* POSTs one structured event with the trace headers given (NULL: none). Returns the
 * status. */
static long s_post(const char *url, const char *id, const char *traceparent, const char *tracestate)
{
	char body[512], tp[200], ts[200];
	const char *headers[4] = { "Content-Type: application/cloudevents+json", NULL };
	http_answer_t a;
	long status;
	int n = 1;

	snprintf(body, sizeof body,
		 "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"urn:test\","
		 "\"type\":\"trace.test\",\"data\":{\"note\":\"data-must-not-leave\"}}",
		 id);
	if (traceparent) {
		snprintf(tp, sizeof tp, "traceparent: %s", traceparent);
		headers[n++] = tp;
	}
	if (tracestate) {
		snprintf(ts, sizeof ts, "tracestate: %s", tracestate);
		headers[n++] = ts;
	}
	status = http_request(
		NULL,
		&(http_request_t){
			.url = url, .headers = headers, .body = body, .timeout_ms = WAIT },
		&a);
	if (status != 202)
		fprintf(stderr, "\nPOST %s: %ld %s\n", id, status, a.body);
	http_answer_clear(&a);
	return status;
}

static const char *s_header(json_t *req, const char *name)
{
	return json_string_value(json_object_get(json_object_get(req, "headers"), name));
}

/* Adds to `found` what of one received request a wait is looking for. */
typedef void (*match_fn)(json_t *req, const char *key, json_t *found);

/* Waits until at least n things match among what rx received; returns them (a new array,
 * possibly shorter when the wait ran out). */
static json_t *s_wait_for(webhook_rx_t *rx, match_fn match, const char *key, size_t n)
{
	int64_t until = test_now_ms() + WAIT;
	json_t *found = json_array();

	while (test_now_ms() < until) {
		json_t *all = webhook_rx_requests(rx), *r;
		size_t i;

		json_array_clear(found);
		json_array_foreach(all, i, r) match(r, key, found);
		json_decref(all);
		if (json_array_size(found) >= n)
			break;
		test_sleep_ms(20);
	}
	return found;
}

/* A webhook request that delivered event `id`. */
static void s_match_event(json_t *req, const char *id, json_t *found)
{
	const char *rid = json_string_value(json_object_get(json_object_get(req, "body"), "id"));

	if (rid && !strcmp(rid, id))
		json_array_append(found, req);
}

/* The spans of trace `trace_hex` in a collector's request, which must have gone to
 * /v1/traces as JSON. */
static void s_match_spans(json_t *req, const char *trace_hex, json_t *found)
{
	json_t *rss = json_object_get(json_object_get(req, "body"), "resourceSpans");
	json_t *rs, *ss, *sp;
	size_t a, b, c;

	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(req, "path")), "/v1/traces");
	CU_ASSERT_STRING_EQUAL(s_header(req, "content-type"), "application/json");
	json_array_foreach(rss, a, rs)
	{
		json_array_foreach(json_object_get(rs, "scopeSpans"), b, ss)
		{
			json_array_foreach(json_object_get(ss, "spans"), c, sp)
			{
				const char *t = json_string_value(json_object_get(sp, "traceId"));
				if (t && !strcmp(t, trace_hex))
					json_array_append(found, sp);
			}
		}
	}
}

static json_t *s_requests_for(webhook_rx_t *rx, const char *id, size_t n)
{
	return s_wait_for(rx, s_match_event, id, n);
}

static json_t *s_spans(webhook_rx_t *col, const char *trace_hex, size_t n)
{
	return s_wait_for(col, s_match_spans, trace_hex, n);
}

/* The span of `name` (and, for deliveries, of attempt `attempt`), or NULL. */
static const char *s_attr(json_t *span, const char *key);
static json_t *s_span(json_t *spans, const char *name, const char *attempt)
{
	size_t i;
	json_t *s;

	json_array_foreach(spans, i, s)
	{
		const char *nm = json_string_value(json_object_get(s, "name"));
		if (nm && !strcmp(nm, name) &&
		    (!attempt ||
		     !strcmp(s_attr(s, "kanal.attempt") ? s_attr(s, "kanal.attempt") : "",
			     attempt)))
			return s;
	}
	return NULL;
}

/* An attribute's value as text: stringValue, or intValue (a string in OTLP JSON). */
static const char *s_attr(json_t *span, const char *key)
{
	size_t i;
	json_t *a;

	json_array_foreach(json_object_get(span, "attributes"), i, a)
	{
		const char *k = json_string_value(json_object_get(a, "key"));
		json_t *v = json_object_get(a, "value");
		if (k && !strcmp(k, key))
			return json_string_value(json_object_get(v, "stringValue"))
				       ?: json_string_value(json_object_get(v, "intValue"));
	}
	return NULL;
}

static const char *s_str(json_t *obj, const char *key)
{
	const char *v = json_string_value(json_object_get(obj, key));
	return v ? v : "";
}

/* The parent id in a traceparent header value ("" when it is not one). */
static const char *s_parent_of(const char *tp, char out[17])
{
	out[0] = '\0';
	if (tp && strlen(tp) == 55)
		snprintf(out, 17, "%.16s", tp + 36);
	return out;
}

/* The value of a /metrics sample ("" when absent). */
static char *s_metric(kd_t *kd, const char *name, char *out, size_t size)
{
	char url[300];
	http_answer_t a;
	const char *p;

	out[0] = '\0';
	snprintf(url, sizeof url, "%s/metrics", kd->admin_http);
	http_request(NULL, &(http_request_t){ .method = "GET", .url = url, .timeout_ms = WAIT },
		     &a);
	for (p = a.body; p && (p = strstr(p, name)); p += strlen(name))
		if ((p == a.body || p[-1] == '\n') && p[strlen(name)] == ' ') {
			snprintf(out, size, "%s", p + strlen(name) + 1);
			out[strcspn(out, "\n")] = '\0';
			break;
		}
	http_answer_clear(&a);
	return out;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_a_traced_request_is_followed_to_its_webhook_and_the_collector(void)
{
	fixture_t f;
	char p1[17], p2[17], value[64];
	json_t *reqs = NULL, *spans = NULL, *cols = NULL;
	json_t *accept, *route, *d1, *d2;

	REQUIRE(s_setup(&f, "trace-follow", TRACE_TO_COLLECTOR));
	webhook_rx_answer(f.rx, 503, 1); /* the first attempt is retried */
	REQUIRE(s_post(f.url, "t-1", TP_IN, "rojo=00f067aa0ba902b7") == 202);

	/* The webhook: the request's trace id, a new parent id per attempt, the tracestate;
	 * the event itself keeps the traceparent it came with. */
	reqs = s_requests_for(f.rx, "t-1", 2);
	REQUIRE(json_array_size(reqs) == 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *r = json_array_get(reqs, i);
		const char *tp = s_header(r, "traceparent");
		CU_ASSERT_PTR_NOT_NULL(tp);
		CU_ASSERT(tp && !strncmp(tp, "00-" TRACE_IN "-", 36) && !strcmp(tp + 52, "-01"));
		CU_ASSERT_STRING_EQUAL(s_header(r, "tracestate") ?: "", "rojo=00f067aa0ba902b7");
		CU_ASSERT_STRING_EQUAL(s_str(json_object_get(r, "body"), "traceparent"), TP_IN);
	}
	s_parent_of(s_header(json_array_get(reqs, 0), "traceparent"), p1);
	s_parent_of(s_header(json_array_get(reqs, 1), "traceparent"), p2);
	CU_ASSERT(strlen(p1) == 16 && strlen(p2) == 16);
	CU_ASSERT_STRING_NOT_EQUAL(p1, p2);
	CU_ASSERT_STRING_NOT_EQUAL(p1, PARENT_IN);

	/* The collector: accept ← route ← two delivery attempts, in the request's trace. */
	spans = s_spans(f.col, TRACE_IN, 4);
	REQUIRE(json_array_size(spans) == 4);
	accept = s_span(spans, "kanal.accept", NULL);
	route = s_span(spans, "kanal.route", NULL);
	d1 = s_span(spans, "kanal.deliver", "1");
	d2 = s_span(spans, "kanal.deliver", "2");
	REQUIRE(accept && route && d1 && d2);
	CU_ASSERT_STRING_EQUAL(s_str(accept, "parentSpanId"), PARENT_IN);
	CU_ASSERT_STRING_EQUAL(s_attr(accept, "kanal.routes") ?: "", "1");
	CU_ASSERT_STRING_EQUAL(s_attr(accept, "cloudevents.event_id") ?: "", "t-1");
	CU_ASSERT_STRING_EQUAL(s_attr(accept, "cloudevents.event_type") ?: "", "trace.test");
	CU_ASSERT_STRING_EQUAL(s_str(route, "parentSpanId"), s_str(accept, "spanId"));
	CU_ASSERT_STRING_EQUAL(s_attr(route, "kanal.route") ?: "", "traced");
	CU_ASSERT_STRING_EQUAL(s_str(d1, "parentSpanId"), s_str(route, "spanId"));
	CU_ASSERT_STRING_EQUAL(s_str(d2, "parentSpanId"), s_str(route, "spanId"));
	/* The webhook's parent is the attempt's span. */
	CU_ASSERT_STRING_EQUAL(s_str(d1, "spanId"), p1);
	CU_ASSERT_STRING_EQUAL(s_str(d2, "spanId"), p2);
	CU_ASSERT_STRING_EQUAL(s_attr(d1, "kanal.outcome") ?: "", "retry");
	CU_ASSERT_STRING_EQUAL(s_attr(d2, "kanal.outcome") ?: "", "ok");
	CU_ASSERT_STRING_EQUAL(s_attr(d2, "kanal.destination") ?: "", "hook");
	CU_ASSERT_STRING_EQUAL(s_attr(d2, "kanal.route") ?: "", "traced");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(d1, "status"), "code")),
			2);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(d2, "status"), "code")),
			1);
	/* Times are nanoseconds since the epoch, as strings, and a span ends after it starts. */
	CU_ASSERT(strlen(s_str(d2, "startTimeUnixNano")) == 19);
	CU_ASSERT(strtoll(s_str(d2, "startTimeUnixNano"), NULL, 10) <=
		  strtoll(s_str(d2, "endTimeUnixNano"), NULL, 10));
	CU_ASSERT(strtoll(s_str(accept, "startTimeUnixNano"), NULL, 10) <=
		  strtoll(s_str(d1, "startTimeUnixNano"), NULL, 10));

	/* Spans carry no event data; the resource names the service. */
	cols = webhook_rx_requests(f.col);
	{
		char *text = json_dumps(cols, 0);
		CU_ASSERT_PTR_NULL(text ? strstr(text, "data-must-not-leave") : "no text");
		CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, "\"kanald-test\"") : NULL);
		free(text);
	}
	/* /metrics counts what the collector took. */
	{
		int64_t until = test_now_ms() + WAIT;
		while (atoll(s_metric(f.kd, "kanal_trace_spans_exported_total", value,
				      sizeof value)) < 4 &&
		       test_now_ms() < until)
			test_sleep_ms(50);
		CU_ASSERT(atoll(value) >= 4);
		CU_ASSERT_STRING_EQUAL(
			s_metric(f.kd, "kanal_trace_spans_dropped_total", value, sizeof value),
			"0");
	}
	/* A stop sends what is left and stops the exporter cleanly. */
	CU_ASSERT_EQUAL(kd_stop(f.kd, SIGTERM, WAIT), 0);
done:
	json_decref(cols);
	json_decref(spans);
	json_decref(reqs);
	s_teardown(&f);
}

/* An invalid traceparent is ignored: the event is accepted and kanald, tracing, starts a
 * trace of its own, whose accept span has no parent. */
static void test_an_invalid_traceparent_is_ignored(void)
{
	fixture_t f;
	char trace[33] = "";
	json_t *reqs = NULL, *spans = NULL, *accept;
	const char *tp, *header;

	REQUIRE(s_setup(&f, "trace-invalid", TRACE_TO_COLLECTOR));
	/* Upper-case hex is not a traceparent. */
	REQUIRE(s_post(f.url, "t-bad", "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
		       "rojo=1") == 202);
	reqs = s_requests_for(f.rx, "t-bad", 1);
	REQUIRE(json_array_size(reqs) == 1);
	tp = s_str(json_object_get(json_array_get(reqs, 0), "body"), "traceparent");
	header = s_header(json_array_get(reqs, 0), "traceparent");
	REQUIRE(strlen(tp) == 55);
	CU_ASSERT(strncasecmp(tp + 3, TRACE_IN, 32) != 0);
	CU_ASSERT_PTR_NULL(
		json_object_get(json_object_get(json_array_get(reqs, 0), "body"), "tracestate"));
	snprintf(trace, sizeof trace, "%.32s", tp + 3);
	CU_ASSERT(header && !strncmp(header + 3, trace, 32));
	spans = s_spans(f.col, trace, 3);
	accept = s_span(spans, "kanal.accept", NULL);
	REQUIRE(accept != NULL);
	CU_ASSERT_PTR_NULL(json_object_get(accept, "parentSpanId"));
	/* Its id is the parent id of the event's traceparent. */
	CU_ASSERT(!strncmp(tp + 36, s_str(accept, "spanId"), 16));
done:
	json_decref(spans);
	json_decref(reqs);
	s_teardown(&f);
}

/* Through the ZeroMQ gateway the trace is the event's own traceparent attribute. Only a
 * sampled trace (flags 01) is recorded; an unsampled one still reaches the webhook. An
 * invalid one is replaced by a trace of kanald's. */
static void test_a_gateway_event_keeps_its_trace_and_its_sampling(void)
{
	static const char unsampled[] = "00-" TRACE_IN "-" PARENT_IN "-00";
	static const char sampled[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	fixture_t f;
	json_t *reqs = NULL, *spans = NULL, *none = NULL;
	char ev[512];

	REQUIRE(s_setup(&f, "trace-gateway", TRACE_TO_COLLECTOR));
	snprintf(ev, sizeof ev,
		 "{\"specversion\":\"1.0\",\"id\":\"g-0\",\"source\":\"urn:gw\","
		 "\"type\":\"trace.test\",\"traceparent\":\"%s\"}",
		 unsampled);
	REQUIRE(kd_send_event(f.kd, ev, "accepted", WAIT, NULL));
	snprintf(ev, sizeof ev,
		 "{\"specversion\":\"1.0\",\"id\":\"g-1\",\"source\":\"urn:gw\","
		 "\"type\":\"trace.test\",\"traceparent\":\"%s\"}",
		 sampled);
	REQUIRE(kd_send_event(f.kd, ev, "accepted", WAIT, NULL));
	reqs = s_requests_for(f.rx, "g-0", 1);
	REQUIRE(json_array_size(reqs) == 1);
	CU_ASSERT(!strncmp(s_header(json_array_get(reqs, 0), "traceparent") ?: "",
			   "00-" TRACE_IN "-", 36));
	CU_ASSERT(!strcmp(s_header(json_array_get(reqs, 0), "traceparent") + 52, "-00"));
	/* The sampled event's spans come; by then the unsampled one's would have too. */
	spans = s_spans(f.col, "4bf92f3577b34da6a3ce929d0e0e4736", 3);
	CU_ASSERT_EQUAL(json_array_size(spans), 3);
	CU_ASSERT_STRING_EQUAL(s_str(s_span(spans, "kanal.accept", NULL), "parentSpanId"),
			       "00f067aa0ba902b7");
	none = s_spans(f.col, TRACE_IN, 0);
	CU_ASSERT_EQUAL(json_array_size(none), 0);
	/* An invalid traceparent attribute is replaced by a new trace, its tracestate dropped. */
	REQUIRE(kd_send_event(f.kd,
			      "{\"specversion\":\"1.0\",\"id\":\"g-2\",\"source\":\"urn:gw\","
			      "\"type\":\"trace.test\",\"traceparent\":\"00-garbage\","
			      "\"tracestate\":\"rojo=1\"}",
			      "accepted", WAIT, NULL));
	json_decref(reqs);
	reqs = s_requests_for(f.rx, "g-2", 1);
	REQUIRE(json_array_size(reqs) == 1);
	{
		json_t *body = json_object_get(json_array_get(reqs, 0), "body");
		const char *tp = s_str(body, "traceparent");
		CU_ASSERT(strlen(tp) == 55 && !strncmp(tp, "00-", 3) && !strcmp(tp + 52, "-01"));
		CU_ASSERT_PTR_NULL(json_object_get(body, "tracestate"));
		CU_ASSERT_PTR_NULL(s_header(json_array_get(reqs, 0), "tracestate"));
	}
done:
	json_decref(none);
	json_decref(spans);
	json_decref(reqs);
	s_teardown(&f);
}

/* A collector that does not answer costs the spans, counted, and nothing else. */
static void test_a_collector_that_is_down_does_not_stop_delivery(void)
{
	fixture_t f;
	char value[64] = "";
	json_t *reqs = NULL;
	int64_t until;

	REQUIRE(s_setup(&f, "trace-down", TRACE_TO_NOBODY));
	for (int i = 0; i < 3; i++) {
		char id[32];
		snprintf(id, sizeof id, "t-down-%d", i);
		CU_ASSERT_EQUAL(s_post(f.url, id, TP_IN, NULL), 202);
	}
	for (int i = 0; i < 3; i++) {
		char id[32];
		snprintf(id, sizeof id, "t-down-%d", i);
		json_decref(reqs);
		reqs = s_requests_for(f.rx, id, 1);
		CU_ASSERT_EQUAL(json_array_size(reqs), 1);
		CU_ASSERT(!strncmp(s_header(json_array_get(reqs, 0), "traceparent") ?: "",
				   "00-" TRACE_IN, 35));
	}
	until = test_now_ms() + WAIT;
	while (atoll(s_metric(f.kd, "kanal_trace_spans_failed_total", value, sizeof value)) < 9 &&
	       test_now_ms() < until)
		test_sleep_ms(50);
	CU_ASSERT(atoll(value) >= 9); /* accept, route and delivery span of each */
	CU_ASSERT_STRING_EQUAL(
		s_metric(f.kd, "kanal_trace_spans_exported_total", value, sizeof value), "0");
	/* Nor does it hold up a stop. */
	until = test_now_ms();
	CU_ASSERT_EQUAL(kd_stop(f.kd, SIGTERM, WAIT), 0);
	CU_ASSERT(test_now_ms() - until < 5000);
done:
	json_decref(reqs);
	s_teardown(&f);
}

/* Tracing off: an event without a trace gets none, and its webhook no header; one with a
 * trace still passes it on; /metrics has no trace counters. */
static void test_with_tracing_off_nothing_is_added(void)
{
	fixture_t f;
	char value[64];
	json_t *plain = NULL, *traced = NULL;

	REQUIRE(s_setup(&f, "trace-off", TRACE_OFF));
	REQUIRE(s_post(f.url, "t-plain", NULL, NULL) == 202);
	REQUIRE(s_post(f.url, "t-traced", TP_IN, NULL) == 202);
	plain = s_requests_for(f.rx, "t-plain", 1);
	traced = s_requests_for(f.rx, "t-traced", 1);
	REQUIRE(json_array_size(plain) == 1 && json_array_size(traced) == 1);
	CU_ASSERT_PTR_NULL(s_header(json_array_get(plain, 0), "traceparent"));
	CU_ASSERT_PTR_NULL(
		json_object_get(json_object_get(json_array_get(plain, 0), "body"), "traceparent"));
	CU_ASSERT(!strncmp(s_header(json_array_get(traced, 0), "traceparent") ?: "",
			   "00-" TRACE_IN "-", 36));
	CU_ASSERT_STRING_NOT_EQUAL(s_header(json_array_get(traced, 0), "traceparent") ?: "", TP_IN);
	CU_ASSERT_STRING_EQUAL(
		s_metric(f.kd, "kanal_trace_spans_exported_total", value, sizeof value), "");
done:
	json_decref(plain);
	json_decref(traced);
	s_teardown(&f);
}

TEST_MAIN("tracing", TEST(test_a_traced_request_is_followed_to_its_webhook_and_the_collector),
	  TEST(test_an_invalid_traceparent_is_ignored),
	  TEST(test_a_gateway_event_keeps_its_trace_and_its_sampling),
	  TEST(test_a_collector_that_is_down_does_not_stop_delivery),
	  TEST(test_with_tracing_off_nothing_is_added))
