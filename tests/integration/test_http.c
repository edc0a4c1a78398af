/*
 * tests/integration/test_http.c — the `http` plugin in the real kanald: CloudEvents posted
 * over HTTP in the structured, binary and batched content modes reach a sink with their
 * data byte for byte; invalid, oversized, unauthenticated and forbidden requests get 400,
 * 413, 401 and 403 and leave nothing behind; backpressure gives 429 with Retry-After; a
 * tokens file others can read refuses the start; vendor JSON on map_paths becomes events
 * through its jq map (400, 422, 403, 415 when it cannot). And the webhook destination: 2xx
 * delivers, 503 then 200 is retried and delivered, 400 takes the route's fallback, a
 * receiver that hangs times out and is retried.
 *
 * The client is tests/util/http_client.c (libcurl); the webhook's receiver is a small
 * libmicrohttpd server in this process. Everything listens on 127.0.0.1 on ephemeral
 * ports; every wait is bounded; each test cleans up its kanald, receiver and folder even
 * when an assertion fails (REQUIRE jumps to the clean-up rather than out of the test).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <kanal/kanal.h>
#include <microhttpd.h>

#include "blob_store.h"
#include "http_client.h"
#include "kanald.h"
#include "test.h"

#define WAIT 10000 /* ms: the bound of every wait */

/* ---- the client: one POST --------------------------------------------------------------- */

/* POSTs body to url with the given header lines (NULL-terminated). Returns the answer;
 * status 0 when none came. */
static http_answer_t s_post(const char *url, const char *const *headers, const char *body,
			    size_t len)
{
	http_answer_t a;

	http_request(NULL,
		     &(http_request_t){ .method = "POST",
					.url = url,
					.headers = headers,
					.body = body,
					.body_len = len,
					.timeout_ms = WAIT },
		     &a);
	return a;
}

static http_answer_t s_post_text(const char *url, const char *const *headers, const char *body)
{
	return s_post(url, headers, body, strlen(body));
}

/* The status the answer gives event `id` ("" when it does not say). */
static const char *s_status_of(const http_answer_t *a, const char *id, char *buf, size_t size)
{
	json_t *root = json_loads(a->body ? a->body : "", 0, NULL), *r;
	size_t i;

	buf[0] = '\0';
	json_array_foreach(json_object_get(root, "results"), i, r)
	{
		const char *rid = json_string_value(json_object_get(r, "id"));
		if (rid && !strcmp(rid, id))
			snprintf(buf, size, "%s", json_string_value(json_object_get(r, "status")));
	}
	json_decref(root);
	return buf;
}

/* The string field `key` of the answer's top-level object ("" when absent). */
static const char *s_field(const http_answer_t *a, const char *key, char *buf, size_t size)
{
	json_t *root = json_loads(a->body ? a->body : "", 0, NULL);
	json_t *v = json_object_get(root, key);

	buf[0] = '\0';
	if (json_is_string(v))
		snprintf(buf, size, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, size, "%lld", (long long)json_integer_value(v));
	json_decref(root);
	return buf;
}

/* ---- kanald with an http ingress -------------------------------------------------------- */

/* Waits for the plugin's port file and builds the events URL. Returns 0 or -1. */
static int s_ingress_url(kd_t *kd, const char *port_file, char *url, size_t size)
{
	int64_t until = test_now_ms() + WAIT;

	while (test_now_ms() < until) {
		char *text = test_read_file(kd_path(kd, port_file), NULL);
		int port = text ? atoi(text) : 0;
		free(text);
		if (port > 0) {
			snprintf(url, size, "http://127.0.0.1:%d/events", port);
			return 0;
		}
		test_sleep_ms(20);
	}
	return -1;
}

/* Starts kanald with an ingress `in` (extra options, YAML flow entries, may be "") routing
 * every event to the sink `out` (@DIR@/out.jsonl). */
static kd_t *s_start_ingress(const char *tag, const char *in_options, const char *extra, char *url,
			     size_t size)
{
	char instances[2048], *conf;
	kd_t *kd;

	snprintf(instances, sizeof instances,
		 "  - name: in\n    plugin: http\n"
		 "    options: { listen: '127.0.0.1:0', port_file: '@DIR@/in.port'%s%s }\n"
		 "  - name: out\n    plugin: sink\n"
		 "    options: { path: '@DIR@/out.jsonl'%s }\n",
		 *in_options ? ", " : "", in_options, strstr(tag, "pressure") ? ", delay: 1s" : "");
	conf = kd_config(instances, extra);
	kd = kd_start(tag, conf, "routes:\n  - name: all\n    to: out\n");
	free(conf);
	if (kd && s_ingress_url(kd, "in.port", url, size) < 0) {
		char *log = kd_log(kd);
		fprintf(stderr, "no port file; kanald's log:\n%s\n", log ? log : "");
		free(log);
		kd_destroy(&kd);
	}
	return kd;
}

static const char *const s_structured[] = { "Content-Type: application/cloudevents+json", NULL };
static const char *const s_batch[] = { "Content-Type: application/cloudevents-batch+json", NULL };

/* The line of the sink's file holding event `id`, as JSON (NULL when absent). */
static json_t *s_delivered(kd_t *kd, const char *id, char **raw_line)
{
	char *text = test_read_file(kd_path(kd, "out.jsonl"), NULL), *save = NULL;
	json_t *found = NULL;

	if (raw_line)
		*raw_line = NULL;
	for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line && !found;
	     line = strtok_r(NULL, "\n", &save)) {
		json_t *ev = json_loads(line, 0, NULL);
		const char *eid = json_string_value(json_object_get(ev, "id"));
		if (eid && !strcmp(eid, id)) {
			found = ev;
			if (raw_line)
				*raw_line = strdup(line);
		} else {
			json_decref(ev);
		}
	}
	free(text);
	return found;
}

static size_t s_unbase64(const char *in, unsigned char *out)
{
	static const char tbl[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned v = 0;
	int bits = 0;
	size_t n = 0;

	for (; *in && *in != '='; in++) {
		const char *p = strchr(tbl, *in);
		if (!p)
			continue;
		v = (v << 6) | (unsigned)(p - tbl);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(v >> bits);
		}
	}
	return n;
}

/* ---- ingress tests ---------------------------------------------------------------------- */

static void test_structured_binary_and_batch_are_delivered_with_their_data(void)
{
	char url[128], st[32];
	kd_t *kd = s_start_ingress("http-modes", "", NULL, url, sizeof url);
	static const char data_json[] = "{ \"reason\" : \"sick\",  \"days\": 2, \"note\": \"ø\" }";
	static const unsigned char bytes[] = { 0x00, 0x01, 0xff, 0xfe, '\r', '\n', 'k', 0x80 };
	unsigned char decoded[64];
	char *event = NULL, *raw = NULL;
	http_answer_t a = { 0 };
	json_t *ev = NULL;

	REQUIRE(kd != NULL);
	/* Structured: the JSON event format as the body. */
	if (asprintf(&event,
		     "{\"specversion\":\"1.0\",\"id\":\"s-1\",\"source\":\"urn:vendor:daycare\","
		     "\"type\":\"child.absence.reported\",\"subject\":\"person:4f2a\","
		     "\"data\":%s}",
		     data_json) < 0)
		event = NULL;
	a = s_post_text(url, s_structured, event);
	CU_ASSERT_EQUAL(a.status, 202);
	CU_ASSERT_STRING_EQUAL(s_status_of(&a, "s-1", st, sizeof st), "accepted");
	http_answer_clear(&a);

	/* Binary: attributes in ce-* headers (percent-encoded), the body is the data. */
	{
		const char *h[] = { "Content-Type: application/octet-stream",
				    "ce-specversion: 1.0",
				    "ce-id: b-1",
				    "ce-source: /vendor/scanner",
				    "ce-type: post.letter.scanned",
				    "ce-subject: S%C3%B8ren%20test",
				    "ce-correlationid: \"corr-1\"",
				    NULL };
		a = s_post(url, h, (const char *)bytes, sizeof bytes);
		CU_ASSERT_EQUAL(a.status, 202);
		CU_ASSERT_STRING_EQUAL(s_status_of(&a, "b-1", st, sizeof st), "accepted");
		http_answer_clear(&a);
	}
	{
		const char *h[] = {
			"Content-Type: application/json", "ce-specversion: 1.0",    "ce-id: b-2",
			"ce-source: /vendor/x",           "ce-type: child.checkin", NULL
		};
		a = s_post_text(url, h, data_json);
		CU_ASSERT_EQUAL(a.status, 202);
		http_answer_clear(&a);
	}
	/* Batch: a JSON array of events. */
	a = s_post_text(
		url, s_batch,
		"[{\"specversion\":\"1.0\",\"id\":\"m-1\",\"source\":\"v\",\"type\":\"a.b\","
		"\"data\":[1, 2,3]},"
		"{\"specversion\":\"1.0\",\"id\":\"m-2\",\"source\":\"v\",\"type\":\"a.b\","
		"\"data_base64\":\"AAH/\"},"
		"{\"specversion\":\"1.0\",\"id\":\"m-3\",\"source\":\"v\",\"type\":\"a.b\"}]");
	CU_ASSERT_EQUAL(a.status, 202);
	CU_ASSERT_STRING_EQUAL(s_status_of(&a, "m-1", st, sizeof st), "accepted");
	CU_ASSERT_STRING_EQUAL(s_status_of(&a, "m-3", st, sizeof st), "accepted");
	http_answer_clear(&a);

	REQUIRE(kd_wait_lines(kd_path(kd, "out.jsonl"), 6, WAIT) == 6);
	/* Structured: data byte for byte, source as the client sent it. */
	ev = s_delivered(kd, "s-1", &raw);
	REQUIRE(ev != NULL && raw != NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ev, "source")),
			       "urn:vendor:daycare");
	{
		char *want = NULL;
		if (asprintf(&want, "\"data\":%s", data_json) > 0)
			CU_ASSERT_PTR_NOT_NULL(strstr(raw, want));
		free(want);
	}
	json_decref(ev);
	free(raw);
	raw = NULL;
	/* Binary bytes: the same bytes, the header values decoded. */
	ev = s_delivered(kd, "b-1", NULL);
	REQUIRE(ev != NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ev, "datacontenttype")),
			       "application/octet-stream");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ev, "subject")), "Søren test");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ev, "correlationid")), "corr-1");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ev, "source")), "/vendor/scanner");
	{
		const char *b64 = json_string_value(json_object_get(ev, "data_base64"));
		size_t n = b64 ? s_unbase64(b64, decoded) : 0;
		CU_ASSERT_EQUAL(n, sizeof bytes);
		CU_ASSERT(n == sizeof bytes && !memcmp(decoded, bytes, n));
	}
	json_decref(ev);
	/* Binary JSON: kept as JSON, byte for byte. */
	ev = s_delivered(kd, "b-2", &raw);
	REQUIRE(ev != NULL && raw != NULL);
	{
		char *want = NULL;
		if (asprintf(&want, "\"data\":%s", data_json) > 0)
			CU_ASSERT_PTR_NOT_NULL(strstr(raw, want));
		free(want);
	}
	json_decref(ev);
	free(raw);
	ev = s_delivered(kd, "m-1", &raw);
	CU_ASSERT_PTR_NOT_NULL(ev && raw && strstr(raw, "\"data\":[1, 2,3]"));
	json_decref(ev);
	ev = NULL;
	free(raw);
	raw = NULL;

	/* The same (source, id) again: a duplicate, not delivered twice. */
	a = s_post_text(url, s_structured, event);
	CU_ASSERT_EQUAL(a.status, 202);
	CU_ASSERT_STRING_EQUAL(s_status_of(&a, "s-1", st, sizeof st), "duplicate");
done:
	http_answer_clear(&a);
	json_decref(ev);
	free(raw);
	free(event);
	kd_destroy(&kd);
}

static void test_invalid_events_get_400_naming_the_attribute_and_are_not_delivered(void)
{
	char url[128], buf[512];
	kd_t *kd = s_start_ingress("http-invalid", "", NULL, url, sizeof url);
	http_answer_t a = { 0 };
	char *text = NULL;

	REQUIRE(kd != NULL);
	/* Structured without a type. */
	a = s_post_text(url, s_structured,
			"{\"specversion\":\"1.0\",\"id\":\"bad-1\",\"source\":\"v\"}");
	CU_ASSERT_EQUAL(a.status, 400);
	CU_ASSERT_STRING_EQUAL(s_field(&a, "attribute", buf, sizeof buf), "type");
	CU_ASSERT_PTR_NOT_NULL(strstr(s_field(&a, "error", buf, sizeof buf), "type"));
	http_answer_clear(&a);
	/* Binary without ce-source. */
	{
		const char *h[] = { "Content-Type: application/json", "ce-specversion: 1.0",
				    "ce-id: bad-2", "ce-type: a.b", NULL };
		a = s_post_text(url, h, "{}");
		CU_ASSERT_EQUAL(a.status, 400);
		CU_ASSERT_STRING_EQUAL(s_field(&a, "attribute", buf, sizeof buf), "source");
		CU_ASSERT_PTR_NOT_NULL(strstr(s_field(&a, "error", buf, sizeof buf), "ce-source"));
		http_answer_clear(&a);
	}
	/* A batch with one bad event: the whole batch is refused, naming the event. */
	a = s_post_text(
		url, s_batch,
		"[{\"specversion\":\"1.0\",\"id\":\"bad-3\",\"source\":\"v\",\"type\":\"a.b\"},"
		"{\"specversion\":\"2.0\",\"id\":\"bad-4\",\"source\":\"v\",\"type\":\"a.b\"}]");
	CU_ASSERT_EQUAL(a.status, 400);
	CU_ASSERT_STRING_EQUAL(s_field(&a, "attribute", buf, sizeof buf), "specversion");
	CU_ASSERT_STRING_EQUAL(s_field(&a, "event", buf, sizeof buf), "1");
	http_answer_clear(&a);
	/* A CPR number in a context attribute: refused, and the answer does not repeat it. */
	{
		const char *cpr = "150385-1234"; /* a synthetic number (DOMAIN.md) */
		char *ev = NULL;
		if (asprintf(&ev,
			     "{\"specversion\":\"1.0\",\"id\":\"bad-5\",\"source\":\"v\","
			     "\"type\":\"a.b\",\"subject\":\"%s\"}",
			     cpr) < 0)
			ev = NULL;
		a = s_post_text(url, s_structured, ev);
		free(ev);
		CU_ASSERT_EQUAL(a.status, 400);
		CU_ASSERT_STRING_EQUAL(s_field(&a, "attribute", buf, sizeof buf), "subject");
		CU_ASSERT_PTR_NULL(strstr(a.body, cpr));
		http_answer_clear(&a);
	}
	/* The ingress applies the SDK's rule (kanal_msg_context_cpr), which also reads
	 * extension names and datacontenttype: its own list used to miss a number that was an
	 * extension's name. The answer names the attribute with the number masked. */
	{
		const char *cpr = "1503851234"; /* a synthetic number (DOMAIN.md) */
		char *ev = NULL;
		if (asprintf(&ev,
			     "[{\"specversion\":\"1.0\",\"id\":\"bad-5b\",\"source\":\"v\","
			     "\"type\":\"a.b\"},{\"specversion\":\"1.0\",\"id\":\"bad-5c\","
			     "\"source\":\"v\",\"type\":\"a.b\",\"p%s\":\"yes\"}]",
			     cpr) < 0)
			ev = NULL;
		a = s_post_text(url, s_batch, ev);
		free(ev);
		CU_ASSERT_EQUAL(a.status, 400);
		CU_ASSERT_STRING_EQUAL(s_field(&a, "attribute", buf, sizeof buf), "p150385XXXX");
		CU_ASSERT_STRING_EQUAL(s_field(&a, "event", buf, sizeof buf), "1");
		CU_ASSERT_PTR_NULL(strstr(a.body, cpr));
		http_answer_clear(&a);
		if (asprintf(&ev,
			     "{\"specversion\":\"1.0\",\"id\":\"bad-5d\",\"source\":\"v\","
			     "\"type\":\"a.b\",\"datacontenttype\":\"text/plain; ref=%s\","
			     "\"data\":\"x\"}",
			     cpr) < 0)
			ev = NULL;
		a = s_post_text(url, s_structured, ev);
		free(ev);
		CU_ASSERT_EQUAL(a.status, 400);
		CU_ASSERT_STRING_EQUAL(s_field(&a, "attribute", buf, sizeof buf),
				       "datacontenttype");
		CU_ASSERT_PTR_NULL(strstr(a.body, cpr));
		http_answer_clear(&a);
	}
	/* Not JSON, although Content-Type says JSON. */
	{
		const char *h[] = { "Content-Type: application/json",
				    "ce-specversion: 1.0",
				    "ce-id: bad-6",
				    "ce-source: v",
				    "ce-type: a.b",
				    NULL };
		a = s_post_text(url, h, "{not json");
		CU_ASSERT_EQUAL(a.status, 400);
		CU_ASSERT_STRING_EQUAL(s_field(&a, "attribute", buf, sizeof buf), "data");
		http_answer_clear(&a);
	}
	/* Other paths and methods. */
	{
		char other[160];
		snprintf(other, sizeof other, "%.*s/other", (int)(strlen(url) - 7), url);
		a = s_post_text(other, s_structured, "{}");
		CU_ASSERT_EQUAL(a.status, 404);
		http_answer_clear(&a);
	}
	{
		long status =
			http_request(NULL, &(http_request_t){ .url = url, .timeout_ms = WAIT }, &a);
		CU_ASSERT_EQUAL(status, 405);
		http_answer_clear(&a);
	}
	/* Nothing of the above was delivered: only the valid marker sent last arrives. */
	a = s_post_text(
		url, s_structured,
		"{\"specversion\":\"1.0\",\"id\":\"marker\",\"source\":\"v\",\"type\":\"a.b\"}");
	CU_ASSERT_EQUAL(a.status, 202);
	REQUIRE(kd_wait_lines(kd_path(kd, "out.jsonl"), 1, WAIT) == 1);
	test_sleep_ms(200);
	text = test_read_file(kd_path(kd, "out.jsonl"), NULL);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 1);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\"marker\""));
	CU_ASSERT_PTR_NULL(text ? strstr(text, "bad-") : NULL);
done:
	free(text);
	http_answer_clear(&a);
	kd_destroy(&kd);
}

static void test_oversized_requests_get_413(void)
{
	char url[128], buf[256];
	kd_t *kd = s_start_ingress("http-big", "max_body: 8KiB, max_event_size: 1KiB", NULL, url,
				   sizeof url);
	char *event = NULL, *batch = NULL, pad[2048];
	http_answer_t a = { 0 };

	REQUIRE(kd != NULL);
	memset(pad, 'x', sizeof pad - 1);
	pad[sizeof pad - 1] = '\0';
	/* One event over max_event_size. */
	if (asprintf(&event,
		     "{\"specversion\":\"1.0\",\"id\":\"big-1\",\"source\":\"v\",\"type\":\"a.b\","
		     "\"data\":{\"pad\":\"%s\"}}",
		     pad) < 0)
		event = NULL;
	a = s_post_text(url, s_structured, event);
	CU_ASSERT_EQUAL(a.status, 413);
	CU_ASSERT_PTR_NOT_NULL(strstr(s_field(&a, "error", buf, sizeof buf), "max_event_size"));
	http_answer_clear(&a);
	/* A body over max_body. */
	if (asprintf(&batch, "[%s,%s,%s,%s,%s]", event, event, event, event, event) < 0)
		batch = NULL;
	a = s_post_text(url, s_batch, batch);
	CU_ASSERT_EQUAL(a.status, 413);
	CU_ASSERT_PTR_NOT_NULL(strstr(s_field(&a, "error", buf, sizeof buf), "max_body"));
	http_answer_clear(&a);
	/* A body far larger than the socket buffers, sent without waiting for 100-continue:
	 * the client still reads the 413 rather than a reset connection. */
	{
		size_t big = 2u << 20;
		char *body = malloc(big);
		REQUIRE(body != NULL);
		memset(body, 'x', big);
		a = s_post(url, s_batch, body, big);
		free(body);
		CU_ASSERT_EQUAL(a.status, 413);
		http_answer_clear(&a);
	}
	/* A small one still passes, and is the only one delivered. */
	a = s_post_text(
		url, s_structured,
		"{\"specversion\":\"1.0\",\"id\":\"small\",\"source\":\"v\",\"type\":\"a.b\"}");
	CU_ASSERT_EQUAL(a.status, 202);
	REQUIRE(kd_wait_lines(kd_path(kd, "out.jsonl"), 1, WAIT) == 1);
	test_sleep_ms(200);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 1);
done:
	http_answer_clear(&a);
	free(event);
	free(batch);
	kd_destroy(&kd);
}

/* Writes `tokens` (0600) as the tokens file in dir and starts kanald with the ingress using
 * it and the further options `more` (may be NULL); the ingress URL goes to url. Returns kanald, or NULL; *path_out gets the file's path. */
static kd_t *s_start_with_tokens(const char *tag, const char *dir, const char *tokens,
				 const char *more, char **path_out, char *url, size_t size)
{
	char opts[512];

	*path_out = test_write_file(dir, "tokens", tokens);
	if (!*path_out || chmod(*path_out, 0600) != 0)
		return NULL;
	snprintf(opts, sizeof opts, "tokens_file: '%s'%s%s", *path_out, more ? ", " : "",
		 more ? more : "");
	return s_start_ingress(tag, opts, NULL, url, size);
}

static void test_bearer_tokens_401_403_and_the_tokens_never_logged(void)
{
	static const char tok_a[] = "tok-a-3f9c2b7e51d04a6b8c1e";
	static const char tok_b[] = "tok-b-9d8e7f6a5b4c3d2e1f00";
	char *dir = test_tmpdir("http-tokens"), *path = NULL, *tokens = NULL;
	char url[128], buf[256], auth_a[128], auth_b[128], auth_bad[128];
	kd_t *kd = NULL;
	http_answer_t a = { 0 };
	char *log = NULL, *text = NULL;
	static const char ev_ok[] = "{\"specversion\":\"1.0\",\"id\":\"t-1\",\"source\":\"v\","
				    "\"type\":\"child.checkin\"}";

	REQUIRE(dir != NULL);
	if (asprintf(&tokens, "# clients of the ingress\n\nvendor-a %s child.*\nvendor-b %s\n",
		     tok_a, tok_b) < 0)
		tokens = NULL;
	kd = s_start_with_tokens("http-auth", dir, tokens, NULL, &path, url, sizeof url);
	REQUIRE(kd != NULL);
	snprintf(auth_a, sizeof auth_a, "Authorization: Bearer %s", tok_a);
	snprintf(auth_b, sizeof auth_b, "Authorization: Bearer %s", tok_b);
	snprintf(auth_bad, sizeof auth_bad, "Authorization: Bearer %sX", tok_a);

	/* No token. */
	a = s_post_text(
		url, s_structured,
		"{\"specversion\":\"1.0\",\"id\":\"n-1\",\"source\":\"v\",\"type\":\"a.b\"}");
	CU_ASSERT_EQUAL(a.status, 401);
	CU_ASSERT_PTR_NOT_NULL(strstr(a.www_authenticate, "Bearer"));
	http_answer_clear(&a);
	/* A wrong token. */
	{
		const char *h[] = { s_structured[0], auth_bad, NULL };
		a = s_post_text(url, h,
				"{\"specversion\":\"1.0\",\"id\":\"n-2\",\"source\":\"v\","
				"\"type\":\"a.b\"}");
		CU_ASSERT_EQUAL(a.status, 401);
		http_answer_clear(&a);
	}
	/* vendor-a may send child.* only. */
	{
		const char *h[] = { s_structured[0], auth_a, NULL };
		a = s_post_text(url, h,
				"{\"specversion\":\"1.0\",\"id\":\"n-3\",\"source\":\"v\","
				"\"type\":\"staff.absence.registered\"}");
		CU_ASSERT_EQUAL(a.status, 403);
		CU_ASSERT_PTR_NOT_NULL(
			strstr(s_field(&a, "error", buf, sizeof buf), "staff.absence.registered"));
		http_answer_clear(&a);
		a = s_post_text(url, h, ev_ok);
		CU_ASSERT_EQUAL(a.status, 202);
		http_answer_clear(&a);
	}
	/* vendor-b may send anything. */
	{
		const char *h[] = { s_structured[0], auth_b, NULL };
		a = s_post_text(url, h,
				"{\"specversion\":\"1.0\",\"id\":\"t-2\",\"source\":\"v\","
				"\"type\":\"staff.absence.registered\"}");
		CU_ASSERT_EQUAL(a.status, 202);
		http_answer_clear(&a);
	}
	/* Anyone who can reach the port can make it refuse: 300 wrong tokens in a row are
	 * each answered 401, and the log writes at most one such line a second, with the
	 * count of those held back on the next. */
	{
		const char *h[] = { s_structured[0], auth_bad, NULL };
		int not_401 = 0;
		int64_t t0 = kanal_now_ms(), took_ms;
		for (int i = 0; i < 300; i++) {
			a = s_post_text(url, h, ev_ok);
			not_401 += a.status != 401;
			http_answer_clear(&a);
		}
		took_ms = kanal_now_ms() - t0;
		test_sleep_ms(1100);
		a = s_post_text(url, h, ev_ok);
		not_401 += a.status != 401;
		http_answer_clear(&a);
		CU_ASSERT_EQUAL(not_401, 0);
		test_sleep_ms(200);
		log = kd_log(kd);
		printf("    300 wrong tokens in %lld ms: %zu 'refused a request' lines in the "
		       "log\n",
		       (long long)took_ms, kd_count(log, "refused a request"));
		/* No token and a wrong one above, the 300, the one after the pause. */
		CU_ASSERT(kd_count(log, "refused a request") <= (size_t)(took_ms / 1000) + 4);
		CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "more like this held back") : NULL);
		free(log);
		log = NULL;
	}
	REQUIRE(kd_wait_lines(kd_path(kd, "out.jsonl"), 2, WAIT) == 2);
	test_sleep_ms(200);
	text = test_read_file(kd_path(kd, "out.jsonl"), NULL);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 2);
	CU_ASSERT_PTR_NULL(text ? strstr(text, "\"n-") : NULL);
	log = kd_log(kd);
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "refused a request"));
	CU_ASSERT_PTR_NULL(log ? strstr(log, "tok-a-") : NULL);
	CU_ASSERT_PTR_NULL(log ? strstr(log, "tok-b-") : NULL);
done:
	free(log);
	free(text);
	http_answer_clear(&a);
	kd_destroy(&kd);
	free(tokens);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

/* A token client owns the sources on its sources= list: another client's source is refused
 * with 403 naming it, nothing of that request is emitted, and the owner's event with the
 * same id is then accepted and delivered (not suppressed as a duplicate). */
static void test_token_clients_own_their_sources(void)
{
	static const char tok_a[] = "tok-a-51d04a6b8c1e3f9c2b7e";
	static const char tok_b[] = "tok-b-5b4c3d2e1f009d8e7f6a";
	char *dir = test_tmpdir("http-sources"), *path = NULL, *tokens = NULL;
	char url[128], buf[256], auth_a[128], auth_b[128], *text = NULL;
	kd_t *kd = NULL;
	http_answer_t a = { 0 };
	static const char ev_a[] = "{\"specversion\":\"1.0\",\"id\":\"a-77\","
				   "\"source\":\"/vendors/a/invoices\",\"type\":\"invoice.sent\"}";

	REQUIRE(dir != NULL);
	if (asprintf(&tokens,
		     "vendor-a %s types=invoice.> sources=/vendors/a/*\n"
		     "vendor-b %s sources=/vendors/b/*,/shared/b\n",
		     tok_a, tok_b) < 0)
		tokens = NULL;
	kd = s_start_with_tokens("http-src", dir, tokens, NULL, &path, url, sizeof url);
	REQUIRE(kd != NULL);
	snprintf(auth_a, sizeof auth_a, "Authorization: Bearer %s", tok_a);
	snprintf(auth_b, sizeof auth_b, "Authorization: Bearer %s", tok_b);
	{
		const char *h[] = { s_structured[0], auth_b, NULL };
		/* vendor-b first, with vendor-a's source and id. */
		a = s_post_text(url, h, ev_a);
		CU_ASSERT_EQUAL(a.status, 403);
		CU_ASSERT_PTR_NOT_NULL(
			strstr(s_field(&a, "error", buf, sizeof buf), "'/vendors/a/invoices'"));
		http_answer_clear(&a);
		/* A batch with one foreign source is refused whole. */
		a = s_post_text(
			url,
			(const char *[]){ "Content-Type: application/cloudevents-batch+json",
					  auth_b, NULL },
			"[{\"specversion\":\"1.0\",\"id\":\"b-1\",\"source\":\"/shared/b\","
			"\"type\":\"x.y\"},{\"specversion\":\"1.0\",\"id\":\"b-2\","
			"\"source\":\"/vendors/a\",\"type\":\"x.y\"}]");
		CU_ASSERT_EQUAL(a.status, 403);
		http_answer_clear(&a);
		a = s_post_text(
			url, h,
			"{\"specversion\":\"1.0\",\"id\":\"b-3\",\"source\":\"/vendors/b/x\","
			"\"type\":\"x.y\"}");
		CU_ASSERT_EQUAL(a.status, 202);
		http_answer_clear(&a);
	}
	{
		const char *h[] = { s_structured[0], auth_a, NULL };
		a = s_post_text(url, h, ev_a);
		CU_ASSERT_EQUAL(a.status, 202);
		http_answer_clear(&a);
	}
	REQUIRE(kd_wait_lines(kd_path(kd, "out.jsonl"), 2, WAIT) == 2);
	test_sleep_ms(200);
	text = test_read_file(kd_path(kd, "out.jsonl"), NULL);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 2);
	CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, "\"a-77\"") : NULL);
	CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, "\"b-3\"") : NULL);
	CU_ASSERT_PTR_NULL(text ? strstr(text, "\"b-1\"") : NULL);
done:
	free(text);
	http_answer_clear(&a);
	kd_destroy(&kd);
	free(tokens);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

/* Vendor JSON on map_paths: the path's jq map makes the events (one, or an array of them),
 * all with the path's source, which the token client must own; JSON that is not JSON is a
 * 400, a jq error or an output that is not an event a 422 with jq's message, another media
 * type a 415 — and nothing of a refused request is delivered. */
static void test_map_paths_make_vendor_json_into_events(void)
{
	static const char tok_acme[] = "tok-acme-7e51d04a6b8c1e3f9c2b";
	static const char tok_other[] = "tok-other-2e1f009d8e7f6a5b4c3d";
	char *dir = test_tmpdir("http-map"), *path = NULL, *tokens = NULL, *raw = NULL;
	char *body = NULL, *opts = NULL, *map = realpath("examples/http-map/acme-absence.jq", NULL);
	char url[128], base[128], buf[512];
	char acme[160], raw_url[160], auth_acme[128], auth_other[128];
	kd_t *kd = NULL;
	http_answer_t a = { 0 };
	json_t *ev = NULL;

	REQUIRE(dir != NULL && map != NULL);
	raw = test_write_file(dir, "raw.jq", "# the body as the event\n.\n");
	body = test_read_file("examples/http-map/acme-absence.json", NULL);
	REQUIRE(raw != NULL && body != NULL);
	if (asprintf(&tokens, "acme %s sources=/vendors/acme\nother %s sources=/vendors/other\n",
		     tok_acme, tok_other) < 0)
		tokens = NULL;
	if (asprintf(&opts,
		     "map_paths: ['/vendor/acme /vendors/acme %s', '/vendor/raw /vendors/acme "
		     "raw.jq'], map_dir: '%s'",
		     map, dir) < 0)
		opts = NULL;
	REQUIRE(opts != NULL);
	kd = s_start_with_tokens("http-map", dir, tokens, opts, &path, url, sizeof url);
	REQUIRE(kd != NULL);
	snprintf(base, sizeof base, "%.*s", (int)(strlen(url) - strlen("/events")), url);
	snprintf(acme, sizeof acme, "%s/vendor/acme", base);
	snprintf(raw_url, sizeof raw_url, "%s/vendor/raw", base);
	snprintf(auth_acme, sizeof auth_acme, "Authorization: Bearer %s", tok_acme);
	snprintf(auth_other, sizeof auth_other, "Authorization: Bearer %s", tok_other);
	{
		const char *h[] = { "Content-Type: application/json", auth_acme, NULL };

		/* One notice: one event, with the path's source and the map's fields. */
		a = s_post_text(acme, h, body);
		CU_ASSERT_EQUAL(a.status, 202);
		CU_ASSERT_STRING_EQUAL(s_status_of(&a, "acme-4711", buf, sizeof buf), "accepted");
		http_answer_clear(&a);
		/* An array: one event each. */
		a = s_post_text(acme, h,
				"{\"notices\": [{\"ref\": 1, \"barn\": {\"id\": \"b-1\"}, "
				"\"fravaer\": \"ferie\", \"fra\": \"2026-07-06\", \"til\": "
				"\"2026-07-10\"}, {\"ref\": 2, \"barn\": {\"id\": \"b-2\"}, "
				"\"fravaer\": \"fri\", \"fra\": \"2026-07-06\", \"til\": "
				"\"2026-07-06\"}]}");
		CU_ASSERT_EQUAL(a.status, 202);
		CU_ASSERT_STRING_EQUAL(s_status_of(&a, "acme-1", buf, sizeof buf), "accepted");
		CU_ASSERT_STRING_EQUAL(s_status_of(&a, "acme-2", buf, sizeof buf), "accepted");
		http_answer_clear(&a);
		/* Not JSON: 400. */
		a = s_post_text(acme, h, "{\"ref\": 4712, \"barn\": ");
		CU_ASSERT_EQUAL(a.status, 400);
		CU_ASSERT_PTR_NOT_NULL(strstr(s_field(&a, "error", buf, sizeof buf), "not JSON"));
		http_answer_clear(&a);
		/* jq fails on it: 422 with jq's message. */
		a = s_post_text(acme, h, "{\"ref\": 4713}");
		CU_ASSERT_EQUAL(a.status, 422);
		CU_ASSERT_PTR_NOT_NULL(
			strstr(s_field(&a, "error", buf, sizeof buf), "map: Cannot index"));
		http_answer_clear(&a);
		/* The output is no event: a source of its own, not an object, no type. */
		a = s_post_text(raw_url, h,
				"{\"id\": \"r-1\", \"type\": \"x.y\", \"source\": \"/elsewhere\"}");
		CU_ASSERT_EQUAL(a.status, 422);
		CU_ASSERT_PTR_NOT_NULL(
			strstr(s_field(&a, "error", buf, sizeof buf), "unknown key 'source'"));
		http_answer_clear(&a);
		a = s_post_text(raw_url, h, "\"just text\"");
		CU_ASSERT_EQUAL(a.status, 422);
		CU_ASSERT_PTR_NOT_NULL(strstr(s_field(&a, "error", buf, sizeof buf), "string"));
		http_answer_clear(&a);
		a = s_post_text(raw_url, h,
				"[{\"id\": \"r-2\", \"type\": \"x.y\"}, {\"id\": \"r-3\"}]");
		CU_ASSERT_EQUAL(a.status, 422);
		CU_ASSERT_PTR_NOT_NULL(strstr(s_field(&a, "error", buf, sizeof buf),
					      "event #1: map: the output has no type"));
		http_answer_clear(&a);
		/* Another media type: 415. */
		a = s_post_text(acme,
				(const char *[]){ "Content-Type: text/plain", auth_acme, NULL },
				body);
		CU_ASSERT_EQUAL(a.status, 415);
		http_answer_clear(&a);
	}
	{
		/* Another client does not own the path's source: 403, whatever it posts. */
		const char *h[] = { "Content-Type: application/json", auth_other, NULL };

		a = s_post_text(acme, h,
				"{\"ref\": 99, \"barn\": {\"id\": \"b-9\"}, \"fravaer\": "
				"\"syg\", \"fra\": \"2026-03-02\", \"til\": \"2026-03-02\"}");
		CU_ASSERT_EQUAL(a.status, 403);
		CU_ASSERT_PTR_NOT_NULL(strstr(s_field(&a, "error", buf, sizeof buf),
					      "does not own source '/vendors/acme'"));
		http_answer_clear(&a);
	}
	REQUIRE(kd_wait_lines(kd_path(kd, "out.jsonl"), 3, WAIT) == 3);
	test_sleep_ms(200);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 3);
	ev = s_delivered(kd, "acme-4711", NULL);
	REQUIRE(ev != NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ev, "source")), "/vendors/acme");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ev, "type")),
			       "child.absence.reported");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ev, "subject")), "child:b-20931");
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(ev, "data"), "reason")), "sick");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(ev, "data"), "days")),
			2);
	json_decref(ev);
	ev = s_delivered(kd, "acme-1", NULL);
	CU_ASSERT_PTR_NOT_NULL(ev);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(ev, "data"), "days")),
			5);
	json_decref(ev);
	ev = s_delivered(kd, "acme-99", NULL);
	CU_ASSERT_PTR_NULL(ev);
done:
	json_decref(ev);
	free(opts);
	free(map);
	http_answer_clear(&a);
	kd_destroy(&kd);
	free(body);
	free(raw);
	free(tokens);
	free(path);
	if (dir)
		test_rmdir_r(dir);
	free(dir);
}

/* client_rate: each token client has its own bucket; over it a request is answered 429
 * with Retry-After and nothing of it is emitted, while another client posts on. */
static void test_client_rate_answers_429_per_client(void)
{
	static const char tok_a[] = "tok-a-rate-1e3f9c2b7e51d04a";
	static const char tok_b[] = "tok-b-rate-5b4c3d2e1f009d8e";
	char *dir = test_tmpdir("http-rate"), *path = NULL, *tokens = NULL;
	char url[128], auth_a[128], auth_b[128];
	kd_t *kd = NULL;
	http_answer_t a = { 0 };
	int accepted = 0, limited = 0;

	REQUIRE(dir != NULL);
	if (asprintf(&tokens, "vendor-a %s\nvendor-b %s\n", tok_a, tok_b) < 0)
		tokens = NULL;
	kd = s_start_with_tokens("http-rate", dir, tokens, "client_rate: 1, client_burst: 2", &path,
				 url, sizeof url);
	REQUIRE(kd != NULL);
	snprintf(auth_a, sizeof auth_a, "Authorization: Bearer %s", tok_a);
	snprintf(auth_b, sizeof auth_b, "Authorization: Bearer %s", tok_b);
	for (int i = 0; i < 4; i++) {
		const char *h[] = { s_structured[0], auth_a, NULL };
		char ev[160];
		snprintf(ev, sizeof ev,
			 "{\"specversion\":\"1.0\",\"id\":\"ra-%d\",\"source\":\"v\","
			 "\"type\":\"a.b\"}",
			 i);
		a = s_post_text(url, h, ev);
		accepted += a.status == 202;
		if (a.status == 429) {
			limited++;
			CU_ASSERT(atoi(a.retry_after) >= 1);
		}
		http_answer_clear(&a);
	}
	CU_ASSERT_EQUAL(accepted, 2);
	CU_ASSERT_EQUAL(limited, 2);
	{
		const char *h[] = { s_structured[0], auth_b, NULL };
		a = s_post_text(url, h,
				"{\"specversion\":\"1.0\",\"id\":\"rb-1\",\"source\":\"v\","
				"\"type\":\"a.b\"}");
		CU_ASSERT_EQUAL(a.status, 202);
		http_answer_clear(&a);
	}
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 3, WAIT), 3);
	test_sleep_ms(200);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 3);
done:
	http_answer_clear(&a);
	kd_destroy(&kd);
	free(tokens);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

static void test_tokens_file_others_can_read_refuses_the_start(void)
{
	char *dir = test_tmpdir("http-mode"), *path = NULL, *conf = NULL, *log = NULL;
	char instances[1024];
	kd_t *kd = NULL;

	REQUIRE(dir != NULL);
	path = test_write_file(dir, "tokens", "vendor-a tok-a-3f9c2b7e51d04a6b8c1e\n");
	REQUIRE(path != NULL && chmod(path, 0644) == 0);
	snprintf(instances, sizeof instances,
		 "  - name: in\n    plugin: http\n"
		 "    options: { listen: '127.0.0.1:0', tokens_file: '%s' }\n",
		 path);
	conf = kd_config(instances, NULL);
	kd = kd_prepare("http-mode", conf, "routes: []\n");
	REQUIRE(kd != NULL);
	CU_ASSERT_NOT_EQUAL(kd_launch(kd), 0);
	kd_wait_exit(kd, WAIT);
	CU_ASSERT_NOT_EQUAL(kd->exit_status, 0);
	log = kd_log(kd);
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, path));
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "0600"));
	CU_ASSERT_PTR_NULL(log ? strstr(log, "tok-a-") : NULL);
done:
	free(log);
	free(conf);
	kd_destroy(&kd);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

static void test_backpressure_answers_429_with_retry_after(void)
{
	enum { N = 1000 };
	char url[128];
	/* A sink taking one event a second behind a queue of one, and no journal to park in:
	 * kanald pushes back as soon as the emit window is full. */
	kd_t *kd = s_start_ingress("http-pressure", "busy_retry_after: 2s",
				   "  queue_max_events: 1\njournal:\n  mode: memory\n", url,
				   sizeof url);
	char *batch = malloc((size_t)N * 120 + 16);
	http_answer_t a = { 0 };
	json_t *root = NULL, *r;
	size_t len = 0, i, accepted = 0, busy = 0;
	bool ordered = true;

	REQUIRE(kd != NULL && batch != NULL);
	batch[len++] = '[';
	for (int k = 0; k < N; k++)
		len += (size_t)sprintf(
			batch + len,
			"%s{\"specversion\":\"1.0\",\"id\":\"p-%d\",\"source\":\"v\","
			"\"type\":\"a.b\",\"data\":{\"n\":%d}}",
			k ? "," : "", k, k);
	batch[len++] = ']';
	a = s_post(url, s_batch, batch, len);
	CU_ASSERT_EQUAL(a.status, 429);
	CU_ASSERT_STRING_EQUAL(a.retry_after, "2");
	root = json_loads(a.body, 0, NULL);
	json_array_foreach(json_object_get(root, "results"), i, r)
	{
		const char *st = json_string_value(json_object_get(r, "status"));
		if (st && !strcmp(st, "accepted")) {
			accepted++;
			ordered = ordered && busy == 0;
		} else if (st && !strcmp(st, "busy")) {
			busy++;
		}
	}
	printf("\n    backpressure: %zu accepted before kanald pushed back, %zu busy\n", accepted,
	       busy);
	/* Some were taken before the push-back, the rest are to be sent again, in order. */
	CU_ASSERT(accepted > 0);
	CU_ASSERT(busy > 0);
	CU_ASSERT_EQUAL(accepted + busy, N);
	CU_ASSERT(ordered);
done:
	json_decref(root);
	http_answer_clear(&a);
	free(batch);
	if (kd)
		kd_stop(kd, SIGKILL, WAIT);
	kd_destroy(&kd);
}

/* ---- the webhook receiver ---------------------------------------------------------------- */

#define HANG 0 /* a scripted "status" meaning: answer nothing for a while */
#define RX_MAX 64

typedef struct rx_request {
	char *headers; /* "name: value\n" lines, names lower case */
	char *body;
	size_t len;
} rx_request_t;

typedef struct receiver {
	struct MHD_Daemon *daemon;
	int port;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
	int script[8];
	size_t n_script, next;
	rx_request_t reqs[RX_MAX];
	size_t n;
} receiver_t;

typedef struct rx_upload {
	char *body;
	size_t len;
} rx_upload_t;

static enum MHD_Result s_rx_header(void *cls, enum MHD_ValueKind kind, const char *key,
				   const char *value)
{
	char **acc = cls, *line = NULL, *joined = NULL;

	(void)kind;
	if (asprintf(&line, "%s: %s\n", key, value ? value : "") < 0)
		return MHD_YES;
	for (char *p = line; *p && *p != ':'; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	if (asprintf(&joined, "%s%s", *acc ? *acc : "", line) >= 0) {
		free(*acc);
		*acc = joined;
	}
	free(line);
	return MHD_YES;
}

static enum MHD_Result s_rx_handler(void *cls, struct MHD_Connection *conn, const char *url,
				    const char *method, const char *version,
				    const char *upload_data, size_t *upload_size, void **con_cls)
{
	receiver_t *rx = cls;
	rx_upload_t *up = *con_cls;
	struct MHD_Response *res;
	const char *text = "ok";
	enum MHD_Result rc;
	int status;

	(void)url;
	(void)method;
	(void)version;
	if (!up) {
		*con_cls = calloc(1, sizeof(rx_upload_t));
		return *con_cls ? MHD_YES : MHD_NO;
	}
	if (*upload_size) {
		char *b = realloc(up->body, up->len + *upload_size + 1);
		if (!b)
			return MHD_NO;
		memcpy(b + up->len, upload_data, *upload_size);
		up->body = b;
		up->len += *upload_size;
		up->body[up->len] = '\0';
		*upload_size = 0;
		return MHD_YES;
	}
	pthread_mutex_lock(&rx->lock);
	status = rx->next < rx->n_script ? rx->script[rx->next++] : 200;
	if (rx->n < RX_MAX) {
		rx_request_t *r = &rx->reqs[rx->n++];
		MHD_get_connection_values(conn, MHD_HEADER_KIND, s_rx_header, &r->headers);
		r->body = up->body;
		r->len = up->len;
		up->body = NULL;
	}
	pthread_cond_broadcast(&rx->cond);
	if (status == HANG) {
		/* Longer than the webhook's timeout; ended early when the test stops. */
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 3;
		while (!rx->stopping && pthread_cond_timedwait(&rx->cond, &rx->lock, &until) == 0)
			;
		pthread_mutex_unlock(&rx->lock);
		return MHD_NO;
	}
	pthread_mutex_unlock(&rx->lock);
	if (status == 400)
		text = "{\"error\":\"field 'reason' is not one this system knows\"}";
	res = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	if (status == 503)
		MHD_add_response_header(res, "Retry-After", "1");
	rc = MHD_queue_response(conn, (unsigned)status, res);
	MHD_destroy_response(res);
	return rc;
}

static void s_rx_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			   enum MHD_RequestTerminationCode toe)
{
	rx_upload_t *up = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (up) {
		free(up->body);
		free(up);
		*con_cls = NULL;
	}
}

/* Starts a receiver on 127.0.0.1 that answers its requests with script[0..n) in turn, then
 * 200. */
static receiver_t *s_rx_start(const int *script, size_t n)
{
	receiver_t *rx = calloc(1, sizeof *rx);
	struct sockaddr_in sa;
	const union MHD_DaemonInfo *info;

	if (!rx)
		return NULL;
	pthread_mutex_init(&rx->lock, NULL);
	pthread_cond_init(&rx->cond, NULL);
	for (size_t i = 0; i < n && i < 8; i++)
		rx->script[rx->n_script++] = script[i];
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rx->daemon =
		MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
				 NULL, NULL, s_rx_handler, rx, MHD_OPTION_SOCK_ADDR, &sa,
				 MHD_OPTION_NOTIFY_COMPLETED, s_rx_completed, rx, MHD_OPTION_END);
	info = rx->daemon ? MHD_get_daemon_info(rx->daemon, MHD_DAEMON_INFO_BIND_PORT) : NULL;
	if (!info) {
		if (rx->daemon)
			MHD_stop_daemon(rx->daemon);
		free(rx);
		return NULL;
	}
	rx->port = info->port;
	return rx;
}

static void s_rx_stop(receiver_t **rx_p)
{
	receiver_t *rx = *rx_p;

	if (!rx)
		return;
	pthread_mutex_lock(&rx->lock);
	rx->stopping = true;
	pthread_cond_broadcast(&rx->cond);
	pthread_mutex_unlock(&rx->lock);
	MHD_stop_daemon(rx->daemon);
	for (size_t i = 0; i < rx->n; i++) {
		free(rx->reqs[i].headers);
		free(rx->reqs[i].body);
	}
	pthread_mutex_destroy(&rx->lock);
	pthread_cond_destroy(&rx->cond);
	free(rx);
	*rx_p = NULL;
}

/* Waits until the receiver has had at least n requests; returns the count. */
static size_t s_rx_wait(receiver_t *rx, size_t n)
{
	int64_t until = test_now_ms() + WAIT;
	size_t got;

	pthread_mutex_lock(&rx->lock);
	while (rx->n < n && test_now_ms() < until) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&rx->cond, &rx->lock, &ts);
	}
	got = rx->n;
	pthread_mutex_unlock(&rx->lock);
	return got;
}

/* Starts kanald with webhook instances posting to rx — `hook` (structured) for every type
 * but hook.binary, `hookb` (binary mode) for that — and the sink `fb` as the fallback. */
static kd_t *s_start_webhook(const char *tag, receiver_t *rx, void **sub)
{
	char instances[2048], *conf;
	kd_t *kd;

	snprintf(instances, sizeof instances,
		 "  - name: hook\n    plugin: http\n"
		 "    options: { url: 'http://127.0.0.1:%d/hook', timeout: 500ms }\n"
		 "  - name: hookb\n    plugin: http\n"
		 "    options: { url: 'http://127.0.0.1:%d/hook', mode: binary, timeout: 500ms }\n"
		 "  - name: fb\n    plugin: sink\n    options: { path: '@DIR@/fb.jsonl' }\n",
		 rx->port, rx->port);
	conf = kd_config(instances, NULL);
	kd = kd_start(tag, conf,
		      "routes:\n"
		      "  - name: binary\n    match: { type: hook.binary }\n    to: hookb\n"
		      "    retry: { max_attempts: 5, backoff: 50ms, max_backoff: 200ms }\n"
		      "  - name: webhook\n    match: { type: hook.structured }\n    to: hook\n"
		      "    fallback: fb\n"
		      "    retry: { max_attempts: 5, backoff: 50ms, max_backoff: 200ms }\n");
	free(conf);
	*sub = kd ? kd_subscribe(kd, "") : NULL;
	return kd;
}

static bool s_has_header(const rx_request_t *r, const char *line)
{
	return r->headers && strstr(r->headers, line);
}

static void test_webhook_2xx_delivers_in_structured_and_binary_mode(void)
{
	receiver_t *rx = s_rx_start(NULL, 0);
	void *sub = NULL;
	kd_t *kd = rx ? s_start_webhook("http-hook", rx, &sub) : NULL;
	char *reply = NULL, *p = NULL;

	REQUIRE(kd != NULL && sub != NULL);
	reply = kd_send(kd,
			"{\"specversion\":\"1.0\",\"id\":\"w-1\",\"source\":\"urn:k\","
			"\"type\":\"hook.structured\",\"data\":{\"a\": 1}}",
			WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "accepted"));
	free(reply);
	reply = kd_send(kd,
			"{\"specversion\":\"1.0\",\"id\":\"w-2\",\"source\":\"urn:k\","
			"\"type\":\"hook.binary\",\"subject\":\"Søren test\","
			"\"datacontenttype\":\"application/octet-stream\","
			"\"data_base64\":\"AAH/\"}",
			WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "accepted"));
	REQUIRE(s_rx_wait(rx, 2) >= 2);
	p = kd_expect(sub, "delivered hook.binary", "w-2", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	pthread_mutex_lock(&rx->lock);
	for (size_t i = 0; i < rx->n; i++) {
		const rx_request_t *r = &rx->reqs[i];
		if (r->body && strstr(r->body, "\"w-1\"")) {
			/* Structured: the JSON event as the body. */
			CU_ASSERT(s_has_header(r, "content-type: application/cloudevents+json"));
			CU_ASSERT_PTR_NOT_NULL(strstr(r->body, "\"data\":{\"a\": 1}"));
		} else {
			/* Binary: attributes in headers, the bytes as the body. */
			CU_ASSERT(s_has_header(r, "ce-id: w-2\n"));
			CU_ASSERT(s_has_header(r, "ce-specversion: 1.0\n"));
			CU_ASSERT(s_has_header(r, "ce-subject: S%C3%B8ren%20test\n"));
			CU_ASSERT(s_has_header(r, "content-type: application/octet-stream\n"));
			CU_ASSERT(r->len == 3 && !memcmp(r->body, "\x00\x01\xff", 3));
		}
	}
	pthread_mutex_unlock(&rx->lock);
done:
	free(p);
	free(reply);
	kd_unsubscribe(&sub);
	kd_destroy(&kd);
	s_rx_stop(&rx);
}

static void test_webhook_503_then_200_is_retried_and_delivered(void)
{
	static const int script[] = { 503, 200 };
	receiver_t *rx = s_rx_start(script, 2);
	void *sub = NULL;
	kd_t *kd = rx ? s_start_webhook("http-retry", rx, &sub) : NULL;
	char *reply = NULL, *retried = NULL, *delivered = NULL;

	REQUIRE(kd != NULL && sub != NULL);
	reply = kd_send(kd,
			"{\"specversion\":\"1.0\",\"id\":\"r-1\",\"source\":\"urn:k\","
			"\"type\":\"hook.structured\"}",
			WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "accepted"));
	retried = kd_expect(sub, "retrying hook.structured", "r-1", WAIT);
	CU_ASSERT_PTR_NOT_NULL(retried && strstr(retried, "503"));
	delivered = kd_expect(sub, "delivered hook.structured", "r-1", WAIT);
	CU_ASSERT_PTR_NOT_NULL(delivered);
	CU_ASSERT_EQUAL(s_rx_wait(rx, 2), 2);
	/* The 503's Retry-After (1 s) was honoured before the second attempt... and no
	 * fallback was taken. */
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "fb.jsonl")), 0);
done:
	free(reply);
	free(retried);
	free(delivered);
	kd_unsubscribe(&sub);
	kd_destroy(&kd);
	s_rx_stop(&rx);
}

static void test_webhook_400_is_rejected_to_the_fallback(void)
{
	static const int script[] = { 400 };
	receiver_t *rx = s_rx_start(script, 1);
	void *sub = NULL;
	kd_t *kd = rx ? s_start_webhook("http-reject", rx, &sub) : NULL;
	char *reply = NULL, *rejected = NULL, *text = NULL;

	REQUIRE(kd != NULL && sub != NULL);
	reply = kd_send(kd,
			"{\"specversion\":\"1.0\",\"id\":\"x-1\",\"source\":\"urn:k\","
			"\"type\":\"hook.structured\"}",
			WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "accepted"));
	rejected = kd_expect(sub, "rejected hook.structured", "x-1", WAIT);
	/* The error names the status and quotes the receiver's answer. */
	CU_ASSERT_PTR_NOT_NULL(rejected && strstr(rejected, "HTTP 400"));
	CU_ASSERT_PTR_NOT_NULL(rejected && strstr(rejected, "not one this system knows"));
	REQUIRE(kd_wait_lines(kd_path(kd, "fb.jsonl"), 1, WAIT) == 1);
	text = test_read_file(kd_path(kd, "fb.jsonl"), NULL);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\"x-1\""));
	/* Rejected, not retried: one request only. */
	test_sleep_ms(300);
	CU_ASSERT_EQUAL(s_rx_wait(rx, 1), 1);
done:
	free(text);
	free(reply);
	free(rejected);
	kd_unsubscribe(&sub);
	kd_destroy(&kd);
	s_rx_stop(&rx);
}

static void test_webhook_that_hangs_times_out_and_is_retried(void)
{
	static const int script[] = { HANG, 200 };
	receiver_t *rx = s_rx_start(script, 2);
	void *sub = NULL;
	kd_t *kd = rx ? s_start_webhook("http-hang", rx, &sub) : NULL;
	char *reply = NULL, *retried = NULL, *delivered = NULL;

	REQUIRE(kd != NULL && sub != NULL);
	reply = kd_send(kd,
			"{\"specversion\":\"1.0\",\"id\":\"h-1\",\"source\":\"urn:k\","
			"\"type\":\"hook.structured\"}",
			WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "accepted"));
	retried = kd_expect(sub, "retrying hook.structured", "h-1", WAIT);
	CU_ASSERT_PTR_NOT_NULL(retried && strstr(retried, "no answer"));
	CU_ASSERT_PTR_NOT_NULL(retried && strstr(retried, "timed out"));
	delivered = kd_expect(sub, "delivered hook.structured", "h-1", WAIT);
	CU_ASSERT_PTR_NOT_NULL(delivered);
	CU_ASSERT(s_rx_wait(rx, 2) >= 2);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "fb.jsonl")), 0);
done:
	free(reply);
	free(retried);
	free(delivered);
	kd_unsubscribe(&sub);
	kd_destroy(&kd);
	s_rx_stop(&rx);
}

/* ---- multipart: an event with its files (claim check) ------------------------------------ */

/* A multipart/form-data body: the event part, then n file parts, files[3i..3i+2] being the
 * i-th's name, content type and content (each file named after a person, as happens). */
static char *s_multipart(const char *event, const char *const *files, size_t n, size_t *len)
{
	char *body = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&body, &size);

	if (!f)
		return NULL;
	fprintf(f,
		"preamble is ignored\r\n--XyZb0undary\r\n"
		"Content-Disposition: form-data; name=\"event\"\r\n"
		"Content-Type: application/cloudevents+json\r\n\r\n%s\r\n",
		event);
	for (size_t i = 0; i < n; i++)
		fprintf(f,
			"--XyZb0undary\r\nContent-Disposition: form-data; name=\"%s\"; "
			"filename=\"Søren Hansen.jpg\"\r\nContent-Type: %s\r\n\r\n%s\r\n",
			files[3 * i], files[3 * i + 1], files[3 * i + 2]);
	fprintf(f, "--XyZb0undary--\r\n");
	fclose(f);
	*len = size;
	return body;
}

static const char *const s_multipart_ct[] = {
	"Content-Type: multipart/form-data; boundary=XyZb0undary", NULL
};

static void test_multipart_files_become_blobs_the_event_refers_to(void)
{
	char url[128], st[32], *body = NULL, *tmp = test_tmpdir("http-mp-ref"), refdir[600];
	kd_t *kd = s_start_ingress("http-multipart", "", NULL, url, sizeof url);
	static const char *const files[] = {
		"photos",   "image/jpeg",      "\xff\xd8\xff\xe0 first photo",
		"photos",   "image/png",       "\x89PNG second photo",
		"document", "application/pdf", "%PDF-1.7 menu plan",
	};
	kanal__blob_store_t *ref_store = NULL, *kanald_store = NULL;
	kanal_blob_ref_t want[3];
	http_answer_t a = { 0 };
	json_t *ev = NULL, *photos;
	size_t len = 0;
	int64_t deadline;
	int fd = -1;

	REQUIRE(kd != NULL && tmp != NULL);
	/* What the references must be: the same content put into a store of the test's own. */
	snprintf(refdir, sizeof refdir, "%s/blobs", tmp);
	REQUIRE((ref_store = kanal__blob_store_open_dir(refdir, 0, 0, NULL)) != NULL);
	for (int i = 0; i < 3; i++)
		REQUIRE(kanal__blob_put(ref_store, files[3 * i + 2], strlen(files[3 * i + 2]),
					files[3 * i + 1], &want[i], NULL) == 0);

	body = s_multipart("{\"specversion\":\"1.0\",\"id\":\"mp-1\",\"source\":\"daycare-app\","
			   "\"type\":\"daycare.notice.posted\",\"data\":{\"text\":\"Trip to the "
			   "forest\"}}",
			   files, 3, &len);
	REQUIRE(body != NULL);
	a = s_post(url, s_multipart_ct, body, len);
	CU_ASSERT_EQUAL(a.status, 202);
	CU_ASSERT_STRING_EQUAL(s_status_of(&a, "mp-1", st, sizeof st), "accepted");
	http_answer_clear(&a);

	/* The destination gets the event with references, not the bytes. */
	REQUIRE(kd_wait_lines(kd_path(kd, "out.jsonl"), 1, WAIT) == 1);
	ev = s_delivered(kd, "mp-1", NULL);
	REQUIRE(ev != NULL);
	photos = json_object_get(json_object_get(ev, "data"), "photos");
	CU_ASSERT_EQUAL(json_array_size(photos), 2);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_array_get(photos, 0), "href")), want[0].uri);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_array_get(photos, 1), "mediaType")),
		"image/png");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(photos, 0), "size")),
			(json_int_t)strlen(files[2]));
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(
			json_array_get(json_object_get(json_object_get(ev, "data"), "document"), 0),
			"href")),
		want[2].uri);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(ev, "data"), "text")),
		"Trip to the forest");
	{
		const char *attr = json_string_value(json_object_get(ev, "kanalblob"));
		CU_ASSERT_PTR_NOT_NULL(attr && strstr(attr, want[0].uri));
		CU_ASSERT_PTR_NOT_NULL(attr && strstr(attr, want[1].uri));
		CU_ASSERT_PTR_NOT_NULL(attr && strstr(attr, want[2].uri));
	}
	/* The file names (here a person's name) go nowhere. */
	{
		char *text = test_read_file(kd_path(kd, "out.jsonl"), NULL);
		CU_ASSERT_PTR_NULL(text ? strstr(text, "Hansen") : "no file");
		free(text);
	}
	/* Delivered everywhere: kanald removes the blobs. */
	REQUIRE((kanald_store = kanal__blob_store_open_dir(kd_path(kd, "state/blobs"), 0, 0,
							   NULL)) != NULL);
	deadline = test_now_ms() + WAIT;
	while (kanal__blob_open(kanald_store, want[0].uri, &fd, NULL, NULL) == 0 &&
	       test_now_ms() < deadline) {
		close(fd);
		fd = -1;
		test_sleep_ms(50);
	}
	CU_ASSERT_EQUAL(kanal__blob_open(kanald_store, want[0].uri, &fd, NULL, NULL),
			KANAL_ENOTFOUND);

	/* Malformed requests are refused and deliver nothing. */
	free(body);
	body = s_multipart("{\"specversion\":\"1.0\",\"id\":\"mp-2\",\"source\":\"app\","
			   "\"type\":\"x.y\",\"data\":[1,2]}",
			   files, 1, &len);
	a = s_post(url, s_multipart_ct, body, len);
	CU_ASSERT_EQUAL(a.status, 400);
	CU_ASSERT_PTR_NOT_NULL(a.body && strstr(a.body, "JSON object data"));
	http_answer_clear(&a);
	a = s_post_text(url, s_multipart_ct,
			"--XyZb0undary\r\nContent-Disposition: form-data; "
			"name=\"photos\"\r\n\r\nno event\r\n--XyZb0undary--\r\n");
	CU_ASSERT_EQUAL(a.status, 400);
	CU_ASSERT_PTR_NOT_NULL(a.body && strstr(a.body, "no part named 'event'"));
	http_answer_clear(&a);
	a = s_post_text(url, s_multipart_ct, "no boundary anywhere");
	CU_ASSERT_EQUAL(a.status, 400);
	http_answer_clear(&a);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 1);
done:
	http_answer_clear(&a);
	json_decref(ev);
	free(body);
	kanal__blob_store_destroy(&ref_store);
	kanal__blob_store_destroy(&kanald_store);
	if (tmp)
		test_rmdir_r(tmp);
	free(tmp);
	kd_destroy(&kd);
}

/* A multipart upload is streamed into the blob store as it arrives: a file far larger than
 * max_body (the in-memory limit of every other body) is taken whole, and one over kanald's
 * max_blob_size is refused part-way with 413, leaving no blob and no half-written file. */
static void test_multipart_upload_streams_past_max_body_and_the_blob_limit_holds(void)
{
	char url[128], st[32], *tmp = test_tmpdir("http-mp-big"), refdir[600];
	kd_t *kd = s_start_ingress("http-mp-big", "max_body: 64KiB", "  max_blob_size: 2MiB\n", url,
				   sizeof url);
	const size_t big = 1536 * 1024, too_big = 3 * 1024 * 1024;
	char *photo = malloc(too_big), *body = NULL;
	const char *files[3];
	kanal__blob_store_t *ref_store = NULL, *kanald_store = NULL;
	kanal_blob_ref_t want, refused;
	http_answer_t a = { 0 };
	json_t *ev = NULL, *ref;
	size_t len = 0;
	int fd = -1;
	char keep;

	REQUIRE(kd != NULL && tmp != NULL && photo != NULL);
	for (size_t i = 0; i < too_big; i++)
		photo[i] = (char)('A' + (i * 7 + i / 4096) % 26); /* no CRLF, no NUL */
	snprintf(refdir, sizeof refdir, "%s/blobs", tmp);
	REQUIRE((ref_store = kanal__blob_store_open_dir(refdir, 0, 0, NULL)) != NULL);
	keep = photo[big];
	photo[too_big - 1] = '\0';
	REQUIRE(kanal__blob_put(ref_store, photo, big, "image/jpeg", &want, NULL) == 0);
	REQUIRE(kanal__blob_put(ref_store, photo, too_big - 1, "image/jpeg", &refused, NULL) == 0);

	/* 1.5 MiB, 24 times max_body: accepted, the event refers to the whole photo. */
	photo[big] = '\0';
	files[0] = "photos";
	files[1] = "image/jpeg";
	files[2] = photo;
	body = s_multipart("{\"specversion\":\"1.0\",\"id\":\"mp-big\",\"source\":\"daycare-app\","
			   "\"type\":\"daycare.notice.posted\",\"data\":{\"text\":\"Bonfire\"}}",
			   files, 1, &len);
	REQUIRE(body != NULL && len > big);
	a = s_post(url, s_multipart_ct, body, len);
	CU_ASSERT_EQUAL(a.status, 202);
	CU_ASSERT_STRING_EQUAL(s_status_of(&a, "mp-big", st, sizeof st), "accepted");
	http_answer_clear(&a);
	REQUIRE(kd_wait_lines(kd_path(kd, "out.jsonl"), 1, WAIT) == 1);
	ev = s_delivered(kd, "mp-big", NULL);
	ref = json_array_get(json_object_get(json_object_get(ev, "data"), "photos"), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ref, "href")) ?: "", want.uri);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(ref, "size")), (json_int_t)big);

	/* 3 MiB, over max_blob_size: 413 part-way, nothing of it stored, nothing delivered. */
	free(body);
	photo[big] = keep;
	body = s_multipart("{\"specversion\":\"1.0\",\"id\":\"mp-too-big\",\"source\":\"app\","
			   "\"type\":\"daycare.notice.posted\",\"data\":{}}",
			   files, 1, &len);
	REQUIRE(body != NULL);
	a = s_post(url, s_multipart_ct, body, len);
	CU_ASSERT_EQUAL(a.status, 413);
	CU_ASSERT_PTR_NOT_NULL(a.body && strstr(a.body, "max_blob_bytes"));
	http_answer_clear(&a);
	REQUIRE((kanald_store = kanal__blob_store_open_dir(kd_path(kd, "state/blobs"), 0, 0,
							   NULL)) != NULL);
	CU_ASSERT_EQUAL(kanal__blob_open(kanald_store, refused.uri, &fd, NULL, NULL),
			KANAL_ENOTFOUND);
	CU_ASSERT_EQUAL(test_dir_count(kd_path(kd, "state/blobs/tmp")), 0);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 1);
done:
	if (fd >= 0)
		close(fd);
	http_answer_clear(&a);
	json_decref(ev);
	free(body);
	free(photo);
	kanal__blob_store_destroy(&ref_store);
	kanal__blob_store_destroy(&kanald_store);
	if (tmp)
		test_rmdir_r(tmp);
	free(tmp);
	kd_destroy(&kd);
}

TEST_MAIN("http", TEST(test_structured_binary_and_batch_are_delivered_with_their_data),
	  TEST(test_invalid_events_get_400_naming_the_attribute_and_are_not_delivered),
	  TEST(test_oversized_requests_get_413),
	  TEST(test_bearer_tokens_401_403_and_the_tokens_never_logged),
	  TEST(test_token_clients_own_their_sources),
	  TEST(test_map_paths_make_vendor_json_into_events),
	  TEST(test_client_rate_answers_429_per_client),
	  TEST(test_tokens_file_others_can_read_refuses_the_start),
	  TEST(test_backpressure_answers_429_with_retry_after),
	  TEST(test_webhook_2xx_delivers_in_structured_and_binary_mode),
	  TEST(test_webhook_503_then_200_is_retried_and_delivered),
	  TEST(test_webhook_400_is_rejected_to_the_fallback),
	  TEST(test_webhook_that_hangs_times_out_and_is_retried),
	  TEST(test_multipart_files_become_blobs_the_event_refers_to),
	  TEST(test_multipart_upload_streams_past_max_body_and_the_blob_limit_holds))
