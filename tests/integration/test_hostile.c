/*
 * tests/integration/test_hostile.c — the real kanald under a storm of hostile clients: 50
 * client threads (25 HTTP, over tests/util/http_client.c, against the http plugin's
 * ingress, 25 ZeroMQ DEALER and REQ sockets against the gateway) each send a few hundred
 * requests in which valid events are interleaved with malformed JSON, invalid CloudEvents
 * (no id, a bad time), oversized events and bodies, CPR numbers in context attributes,
 * requests without or with a wrong bearer token, event types the client may not send,
 * batches mixing valid and invalid events, and for ZeroMQ binary junk, empty frames, too
 * many frames and raw TCP garbage. Each client checks each answer: a valid event is
 * accepted (after busy / 429, sent again after the hint; bounded), a bad request gets its
 * error with a reason. Afterwards every valid event has reached its sink exactly once with
 * its data byte for byte, nothing of a refused request was delivered, kanald's peak
 * resident memory stayed under a stated bound, its log and event stream hold no clear CPR
 * number, and it still answers a fresh event and /status and stops cleanly.
 *
 * A second test runs a storm against a CURVE gateway (docs/security.md): clients whose
 * keys are on the allow-list send valid events and events of types outside their `emit`
 * list ("forbidden"), while clients with an unknown key or none get no service at all
 * (their bounded wait runs out: that is the error they see).
 *
 * The client threads never call CUnit (it is not thread-safe): each records what went
 * wrong in its own struct, and the main thread asserts once they have all been joined.
 * Every wait is bounded, the storm has an overall deadline, and threads, sockets, kanald
 * and the folder are cleaned up on every path. KANAL_HOSTILE_ROUNDS overrides the number
 * of requests per client (e.g. a smaller number under valgrind).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include <curl/curl.h>
#include <kanal/cpr.h>

#include "http_client.h"
#include "kanald.h"
#include "test.h"

#define WAIT 10000        /* ms: the bound of every wait for an answer that should come */
#define QUIET 1500        /* ms: how long to wait for an answer that should not come */
#define STORM_MS 60000    /* ms: the storm's overall deadline; clients stop there */
#define DELIVERY_MS 30000 /* ms: the bound of the wait for every delivery */
#define N_HTTP 25
#define N_ZMQ 25
#define ROUNDS 300      /* requests per client (KANAL_HOSTILE_ROUNDS overrides) */
#define MAX_ATTEMPTS 40 /* sends of one valid request, busy answers included */

/* The limits of this kanald: the ingress refuses single events over 4 KiB and bodies over
 * 64 KiB with 413; kanald refuses events over 16 KiB at the gateway. */
#define HTTP_MAX_EVENT 4096
#define HTTP_MAX_BODY 65536
#define KD_MAX_EVENT 16384
/* Backpressure on the way: out-staff takes a few milliseconds per event, and once a small
 * number of events are parked behind it kanald answers the gateway's clients busy, so
 * resending after the hint is part of the storm. (The http plugin's emits are held
 * instead — up to 200 ms each, docs/design/emit-and-backpressure.md — so it answers 429
 * only when a hold runs out; the HTTP clients handle 429 and 503 all the same.) */
#define SINK_DELAY ", delay: 3ms"
#define PRESSURE "  queue_max_events: 20\n  max_parked_events: 50\n"

/* The bound this test states for kanald's peak resident memory (VmHWM) through the storm:
 * 256 MiB. Under AddressSanitizer resident memory is mostly shadow memory and quarantine,
 * so the bound speaks of the real build only (as in test_backpressure.c). */
#define RSS_BOUND_KIB (256 * 1024)
#ifdef __SANITIZE_ADDRESS__
#define RSS_CHECKED 0
#else
#define RSS_CHECKED 1
#endif

/* Synthetic CPR numbers (DOMAIN.md): only ever in events that must be refused. */
static const char *const s_cprs[] = { "150385-1233", "0101184129", "241299-5123" };

/* ---- the storm's shared state and its clients -------------------------------------------- */

/* One valid event a client sent: what the sink must show, exactly once. */
typedef struct valid {
	char id[48];
	const char *source;
	int sink;             /* 0: out-child (child.>), 1: out-staff (staff.>) */
	char *data;           /* the `data` member's JSON text as sent, or NULL */
	unsigned char *bytes; /* or the bytes sent as data_base64 */
	size_t n_bytes;
	bool accepted; /* the client was told accepted (or duplicate after a resend) */
	bool may_dup;  /* sent again after an answer that did not come */
	int seen;      /* lines in the sinks holding it */
} valid_t;

typedef enum client_kind {
	C_HTTP_LIMITED, /* bearer token of a client that may send child.> only */
	C_HTTP_FULL,    /* bearer token of a client that may send any type */
	C_DEALER,
	C_REQ,
	C_CURVE,    /* a DEALER with an allow-listed CURVE key */
	C_STRANGER, /* a DEALER with a CURVE key kanald does not know */
	C_PLAIN,    /* a plain DEALER against a CURVE gateway */
} client_kind_t;

typedef struct storm storm_t;

typedef struct client {
	storm_t *st;
	int idx;
	client_kind_t kind;
	char name[16];
	uint64_t rng;
	long seq;
	/* CURVE: the client's key pair and what it may emit (one type family). */
	const char *pub, *sec;
	const char *own_type, *other_type;
	int own_sink;
	valid_t **valid;
	size_t n_valid, cap_valid;
	/* What happened, for the report. */
	long requests, bad_requests, bad_answered_right, events_accepted, busy, timeouts;
	long forbidden, raw_junk, no_service, http_429, http_503;
	int rounds; /* requests to make (0: the storm's) */
	struct {
		const char *via, *label; /* static strings */
		long n, right;
	} kinds[32]; /* the bad requests sent, by kind */
	int n_kinds;
	long n_fail;
	char fail[3][480];
	http_client_t *http; /* its kept-alive connection */
	void *sock;
	pthread_t thread;
	bool started;
} client_t;

struct storm {
	kd_t *kd;
	char url[128];
	char auth_limited[128], auth_full[128], auth_wrong[128];
	int gw_port, http_port;
	int rounds;
	int64_t deadline;
	const char *server_pub; /* CURVE: kanald's public key, else NULL */
	pthread_barrier_t go;
	client_t *clients;
	size_t n_clients;
	/* The watchers: kanald's resident memory and its event stream. */
	int stop_watch;
	long rss_peak_kib;
	void *sub;
	long happenings, stream_cpr;
	char stream_cpr_first[400];
};

/* Records a failure of client c (CPR numbers masked: the text may quote an answer). */
static void s_fail(client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_fail(client_t *c, const char *fmt, ...)
{
	va_list ap;
	char text[440];

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	kanal_cpr_redact_inplace(text);
	if (c->n_fail < 3)
		snprintf(c->fail[c->n_fail], sizeof c->fail[0], "%s: %s", c->name, text);
	c->n_fail++;
}

static bool s_late(const client_t *c)
{
	return test_now_ms() > c->st->deadline;
}

/* xorshift64*: each client's own reproducible sequence. */
static uint32_t s_rand(client_t *c)
{
	c->rng ^= c->rng >> 12;
	c->rng ^= c->rng << 25;
	c->rng ^= c->rng >> 27;
	return (uint32_t)((c->rng * 2685821657736338717ULL) >> 32);
}

static uint32_t s_below(client_t *c, uint32_t n)
{
	return n ? s_rand(c) % n : 0;
}

/* ---- text building ------------------------------------------------------------------------ */

typedef struct buf {
	char *p;
	size_t len, cap;
} buf_t;

static void s_put(buf_t *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void s_puts(buf_t *b, const char *s)
{
	s_put(b, s, strlen(s));
}

static void s_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_printf(buf_t *b, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n >= 0)
		s_put(b, s, (size_t)n);
	free(s);
}

/* JSON whitespace between tokens, in the varieties clients send — but no newline: the bus
 * keeps `data` byte for byte, and the sink writes each event as one line, so a newline
 * inside data would split the sink's line (a sink matter, not this test's). */
static void s_ws(client_t *c, buf_t *b)
{
	static const char *const ws[] = { "", "", "", " ", "  ", "\t", " \t " };
	s_puts(b, ws[s_below(c, 7)]);
}

/* FNV-1a of the decoded text, as eight letters a–p (no digits: a checksum must never look
 * like a CPR number). */
static void s_sum(const char *text, size_t len, char out[9])
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)text[i]) * 16777619u;
	for (int i = 0; i < 8; i++)
		out[i] = (char)('a' + ((h >> (28 - 4 * i)) & 0xf));
	out[8] = '\0';
}

/* The pieces a data text is made of, decoded (UTF-8), and how each may be written in JSON:
 * raw or escaped, chosen per piece, so that kanald sees many spellings of the same text. */
static const struct piece {
	const char *decoded;
	const char *spellings[3];
} s_pieces[] = {
	{ "sick ", { "sick ", NULL } },
	{ "Søren", { "Søren", "S\\u00f8ren", "S\\u00F8ren" } },
	{ "æøå ÆØÅ", { "æøå ÆØÅ", "\\u00e6\\u00f8\\u00e5 \\u00c6\\u00d8\\u00c5", NULL } },
	{ "\"quoted\"", { "\\\"quoted\\\"", "\\u0022quoted\\u0022", NULL } },
	{ "back\\slash", { "back\\\\slash", "back\\u005cslash", NULL } },
	{ "tab\t", { "tab\\t", "tab\\u0009", NULL } },
	{ "new\nline", { "new\\nline", "new\\u000aline", NULL } },
	{ "€ 12,50", { "€ 12,50", "\\u20ac 12,50", NULL } },
	{ "😀", { "😀", "\\ud83d\\ude00", "\\uD83D\\uDE00" } },
	{ "/a/b/", { "/a/b/", "\\/a\\/b\\/", NULL } },
	{ "ctl\x01", { "ctl\\u0001", NULL } },
	{ "  ", { "  ", NULL } },
	{ "Institution Solsikken ", { "Institution Solsikken ", NULL } },
	{ "{not:json}", { "{not:json}", NULL } },
};
#define N_PIECES (sizeof s_pieces / sizeof *s_pieces)

/* A data object for a valid event: a sequence, the client, a text of random pieces and the
 * text's checksum, with random whitespace. Returns the JSON text (malloc'd); its length is
 * at most ~2.5 KiB, so the whole event stays under the ingress's max_event_size. */
static char *s_data(client_t *c, long seq)
{
	buf_t dec = { 0 }, raw = { 0 }, out = { 0 };
	size_t n = 1 + s_below(c, 40);
	char sum[9];

	s_puts(&dec, "");
	s_puts(&raw, "");
	for (size_t i = 0; i < n; i++) {
		const struct piece *p = &s_pieces[s_below(c, N_PIECES)];
		size_t k = 0;
		while (k + 1 < 3 && p->spellings[k + 1])
			k++;
		s_puts(&dec, p->decoded);
		s_puts(&raw, p->spellings[s_below(c, (uint32_t)k + 1)]);
	}
	s_sum(dec.p, dec.len, sum);
	s_puts(&out, "{");
	s_ws(c, &out);
	s_printf(&out, "\"seq\"");
	s_ws(c, &out);
	s_printf(&out, ":");
	s_ws(c, &out);
	s_printf(&out, "%ld", seq);
	s_ws(c, &out);
	s_printf(&out, ",");
	s_ws(c, &out);
	s_printf(&out, "\"client\":\"%s\",", c->name);
	s_ws(c, &out);
	s_printf(&out, "\"text\"");
	s_ws(c, &out);
	s_printf(&out, ":\"%s\"", raw.p);
	s_ws(c, &out);
	s_printf(&out, ",\"list\":[1, 2.50,true ,null,\"x\"]");
	s_printf(&out, ",\"sum\":\"%s\"", sum);
	s_ws(c, &out);
	s_puts(&out, "}");
	free(dec.p);
	free(raw.p);
	return out.p;
}

static const char s_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *s_base64(const unsigned char *in, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		*o++ = s_b64[(v >> 18) & 63];
		*o++ = s_b64[(v >> 12) & 63];
		*o++ = i + 1 < n ? s_b64[(v >> 6) & 63] : '=';
		*o++ = i + 2 < n ? s_b64[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static size_t s_unbase64(const char *in, unsigned char *out, size_t cap)
{
	uint32_t v = 0;
	int bits = 0;
	size_t n = 0;

	for (; *in && *in != '='; in++) {
		const char *p = strchr(s_b64, *in);
		if (!p || !*p)
			continue;
		v = (v << 6) | (uint32_t)(p - s_b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n < cap)
				out[n] = (unsigned char)(v >> bits);
			n++;
		}
	}
	return n;
}

/* A new valid event of `type` for client c: registers it (for the delivery check) and
 * returns its JSON text (malloc'd). `binary` gives it random bytes as data_base64. */
static char *s_valid_event(client_t *c, const char *type, bool binary, valid_t **out)
{
	valid_t *v = calloc(1, sizeof *v);
	buf_t b = { 0 };

	snprintf(v->id, sizeof v->id, "%s-%05ld", c->name, ++c->seq);
	v->source = c->kind == C_HTTP_LIMITED || c->kind == C_HTTP_FULL ? "urn:hostile:http"
									: "urn:hostile:zmq";
	v->sink = !strncmp(type, "staff.", 6);
	if (c->n_valid == c->cap_valid) {
		c->cap_valid = c->cap_valid ? c->cap_valid * 2 : 256;
		c->valid = realloc(c->valid, c->cap_valid * sizeof *c->valid);
	}
	c->valid[c->n_valid++] = v;
	s_puts(&b, "{");
	s_ws(c, &b);
	s_printf(&b, "\"specversion\":\"1.0\",\"id\":\"%s\",", v->id);
	s_ws(c, &b);
	s_printf(&b, "\"source\":\"%s\",\"type\":\"%s\",\"subject\":\"person:p%05ld\"", v->source,
		 type, c->seq);
	if (s_below(c, 3) == 0)
		s_printf(&b, ",\"time\":\"2026-11-24T10:%02u:%02u.%03uZ\"", s_below(c, 60),
			 s_below(c, 60), s_below(c, 1000));
	if (binary) {
		size_t n = 1 + s_below(c, 300);
		char *text;
		v->bytes = malloc(n);
		for (size_t i = 0; i < n; i++)
			v->bytes[i] = (unsigned char)s_rand(c);
		v->n_bytes = n;
		text = s_base64(v->bytes, n);
		s_printf(&b,
			 ",\"datacontenttype\":\"application/octet-stream\",\"data_base64\":\"%s\"",
			 text);
		free(text);
	} else {
		v->data = s_data(c, c->seq);
		s_puts(&b, ",");
		s_ws(c, &b);
		s_printf(&b, "\"data\":");
		s_ws(c, &b);
		s_puts(&b, v->data);
	}
	s_ws(c, &b);
	s_puts(&b, "}");
	if (out)
		*out = v;
	return b.p;
}

/* An event that must never be delivered (a bad one, or a valid-looking element of a batch
 * that is refused): its id starts with "bad-". `extra` is added as attributes. */
static char *s_bad_event(client_t *c, const char *type, const char *extra)
{
	long seq = ++c->seq;
	char *text;

	if (asprintf(&text,
		     "{\"specversion\":\"1.0\",\"id\":\"bad-%s-%05ld\",\"source\":\"urn:hostile:"
		     "bad\","
		     "\"type\":\"%s\"%s%s,\"data\":{\"n\":%ld}}",
		     c->name, seq, type, extra && *extra ? "," : "", extra ? extra : "", seq) < 0)
		return NULL;
	return text;
}

/* What a bad request should be answered. */
typedef struct expect {
	const char *label;
	int http;              /* HTTP status */
	const char *attribute; /* HTTP: the "attribute" field, or NULL */
	long event;            /* HTTP: the "event" index for a batch, or -1 */
	const char *zstatus;   /* ZeroMQ: the status of the faulty element */
	const char *reason;    /* ZeroMQ: a text its reason holds (HTTP: the error), or NULL */
	long faulty;           /* ZeroMQ batch: the faulty element's index, or -1 */
	size_t n;              /* ZeroMQ: results expected (a batch's size), 0: any */
	bool batch;            /* the body is a batch */
} expect_t;

/* A bad event or batch of one of the kinds every client sends; fills *e. `limit` is the
 * size above which a single event is refused (the ingress's or kanald's). */
static char *s_bad_body(client_t *c, int which, size_t limit, expect_t *e)
{
	const char *cpr = s_cprs[s_below(c, 3)];
	char extra[256];

	memset(e, 0, sizeof *e);
	e->event = e->faulty = -1;
	e->n = 1;
	e->http = 400;
	e->zstatus = "invalid";
	switch (which) {
	case 0: { /* malformed JSON: a valid event cut short, or plain junk (with a CPR) */
		char *ev = s_bad_event(c, c->own_type, NULL), *text = NULL;
		size_t len = strlen(ev);
		e->label = "malformed JSON";
		switch (s_below(c, 4)) {
		case 0:
			ev[1 + s_below(c, (uint32_t)len - 2)] = '\0';
			return ev;
		case 1:
			free(ev);
			return strdup("{\"specversion\":\"1.0\",,\"id\":}");
		case 2:
			free(ev);
			if (asprintf(&text,
				     "{\"specversion\":\"1.0\",\"id\":\"bad-x\",\"source\":\"s\", "
				     "%s \"type\":\"a.b\"}",
				     cpr) < 0)
				return NULL;
			return text;
		default:
			free(ev);
			return strdup("this is not JSON at all");
		}
	}
	case 1: /* a CloudEvent without an id */
		e->label = "missing id";
		e->attribute = "id";
		e->reason = "'id'";
		{
			char *text;
			if (asprintf(&text,
				     "{\"specversion\":\"1.0\",\"source\":\"urn:hostile:bad\","
				     "\"type\":\"%s\",\"data\":{\"seq\":%ld}}",
				     c->own_type, ++c->seq) < 0)
				return NULL;
			return text;
		}
	case 2: { /* a bad time, sometimes a CPR number in it */
		static const char *const times[] = { "2026-13-45T99:00:00Z", "yesterday",
						     "2026-11-24 10:00:00", NULL };
		const char *t = times[s_below(c, 4)];
		e->label = "bad time";
		e->attribute = "time";
		e->reason = "'time'";
		snprintf(extra, sizeof extra, "\"time\":\"%s\"", t ? t : cpr);
		return s_bad_event(c, c->own_type, extra);
	}
	case 3: { /* over the size limit */
		size_t pad = limit + 100 + s_below(c, 2000);
		char *p = malloc(pad + 1), *text;
		memset(p, 'x', pad);
		p[pad] = '\0';
		e->label = "oversized event";
		e->http = 413;
		e->reason = limit == HTTP_MAX_EVENT ? "max_event_size" : "more than the limit";
		text = s_bad_event(c, c->own_type, NULL);
		if (text) {
			/* …,"data":{"n":N}} → …,"data":{"n":N,"pad":"xxx…"}} */
			buf_t b = { 0 };
			s_put(&b, text, strlen(text) - 2);
			s_printf(&b, ",\"pad\":\"%s\"}}", p);
			free(text);
			text = b.p;
		}
		free(p);
		return text;
	}
	case 4: { /* a CPR number in a context attribute */
		static const char *const attrs[] = { "subject", "citizenref", "source" };
		int a = (int)s_below(c, 3);
		char *text;
		e->label = "CPR number in a context attribute";
		e->attribute = attrs[a];
		e->reason = a == 0   ? "'subject' holds a CPR"
			    : a == 1 ? "'citizenref' holds a CPR"
				     : "'source' holds a CPR";
		if (a == 2) {
			if (asprintf(&text,
				     "{\"specversion\":\"1.0\",\"id\":\"bad-%s-%05ld\","
				     "\"source\":\"urn:cpr:%s\",\"type\":\"%s\"}",
				     c->name, ++c->seq, cpr, c->own_type) < 0)
				return NULL;
			return text;
		}
		snprintf(extra, sizeof extra,
			 a == 0 ? "\"subject\":\"person %s\"" : "\"citizenref\":\"%s\"", cpr);
		return s_bad_event(c, c->own_type, extra);
	}
	default: { /* a batch of good-looking events with one invalid element */
		size_t n = 2 + s_below(c, 4), k = s_below(c, (uint32_t)n);
		int how = (int)s_below(c, 3);
		buf_t b = { 0 };
		e->label = "batch with an invalid element";
		e->faulty = (long)k;
		e->event = (long)k;
		e->n = n;
		e->batch = true;
		e->attribute = how == 0 ? "type" : how == 1 ? "specversion" : "subject";
		e->reason = how == 0 ? "'type'" : how == 1 ? "'specversion'" : "CPR";
		s_puts(&b, "[");
		for (size_t i = 0; i < n; i++) {
			char *ev;
			if (i != k)
				ev = s_bad_event(c, c->own_type, NULL);
			else if (how == 0) {
				if (asprintf(&ev,
					     "{\"specversion\":\"1.0\",\"id\":\"bad-%s-%05ld\","
					     "\"source\":\"urn:hostile:bad\"}",
					     c->name, ++c->seq) < 0)
					ev = NULL;
			} else if (how == 1) {
				if (asprintf(&ev,
					     "{\"specversion\":\"2.0\",\"id\":\"bad-%s-%05ld\","
					     "\"source\":\"urn:hostile:bad\",\"type\":\"%s\"}",
					     c->name, ++c->seq, c->own_type) < 0)
					ev = NULL;
			} else {
				snprintf(extra, sizeof extra, "\"subject\":\"%s\"", cpr);
				ev = s_bad_event(c, c->own_type, extra);
			}
			s_puts(&b, i ? "," : "");
			s_puts(&b, ev ? ev : "null");
			free(ev);
		}
		s_puts(&b, "]");
		return b.p;
	}
	}
}
#define N_BAD_KINDS 6

/* ---- the HTTP clients ---------------------------------------------------------------------- */

/* POSTs body on the client's own (kept-alive) connection with the header lines given
 * (NULL-terminated) and, unless auth is NULL, an Authorization line. Status 0: no answer. */
static http_answer_t s_post(client_t *c, const char *auth, const char *const *headers,
			    const char *body, size_t len)
{
	const char *lines[8];
	size_t n = 0;
	http_answer_t a;

	if (!c->http)
		c->http = http_client_new();
	for (size_t i = 0; headers && headers[i] && n < 6; i++)
		lines[n++] = headers[i];
	if (auth)
		lines[n++] = auth;
	lines[n] = NULL;
	http_request(c->http,
		     &(http_request_t){ .method = "POST",
					.url = c->st->url,
					.headers = lines,
					.body = body,
					.body_len = len,
					.timeout_ms = WAIT,
					.connect_timeout_ms = 3000 },
		     &a);
	c->requests++;
	return a;
}

static const char *const s_structured[] = { "Content-Type: application/cloudevents+json", NULL };
static const char *const s_batch[] = { "Content-Type: application/cloudevents-batch+json", NULL };

static const char *s_auth(client_t *c)
{
	return c->kind == C_HTTP_LIMITED ? c->st->auth_limited : c->st->auth_full;
}

/* Marks v accepted when its result says so. Returns true when the event is done with
 * (accepted, or refused for good: a failure), false when it is to be sent again. */
static bool s_settle(client_t *c, valid_t *v, const char *status, const char *how)
{
	if (status && !strcmp(status, "accepted")) {
		v->accepted = true;
		c->events_accepted++;
		return true;
	}
	if (status && !strcmp(status, "duplicate")) {
		if (!v->may_dup)
			s_fail(c, "%s: event %s answered duplicate the first time it was sent", how,
			       v->id);
		v->accepted = true;
		c->events_accepted++;
		return true;
	}
	if (status && (!strcmp(status, "busy") || !strcmp(status, "error")))
		return false;
	s_fail(c, "%s: valid event %s answered '%s'", how, v->id, status ? status : "(nothing)");
	return true;
}

/* Sends the valid events vs[0..n) over HTTP — one structured event, one in binary mode
 * (`binary_body` set: the data, with the attributes in `headers`), or a batch — until each
 * is accepted: after 429 or 503 the ones not yet accepted are sent again after Retry-After;
 * after no answer, all of them (a duplicate is then fine). Bounded by MAX_ATTEMPTS and the
 * storm's deadline. */
static void s_http_send_valid(client_t *c, valid_t **vs, char **texts, size_t n, bool batch,
			      const char *const *binary_headers)
{
	bool done[64] = { false };
	size_t left = n;

	for (int attempt = 0; left && attempt < MAX_ATTEMPTS && !s_late(c); attempt++) {
		buf_t b = { 0 };
		size_t order[64], m = 0;
		http_answer_t a;
		json_t *root, *results;

		for (size_t i = 0; i < n; i++)
			if (!done[i])
				order[m++] = i;
		if (batch) {
			s_puts(&b, "[");
			for (size_t i = 0; i < m; i++) {
				s_puts(&b, i ? "," : "");
				s_puts(&b, texts[order[i]]);
			}
			s_puts(&b, "]");
		} else {
			s_puts(&b, binary_headers ? vs[0]->data : texts[0]);
		}
		a = s_post(c, s_auth(c),
			   binary_headers ? binary_headers
			   : batch        ? s_batch
					  : s_structured,
			   b.p, b.len);
		free(b.p);
		if (a.status == 0) {
			c->timeouts++;
			for (size_t i = 0; i < m; i++)
				vs[order[i]]->may_dup = true;
			http_answer_clear(&a);
			continue;
		}
		if (a.status != 202 && a.status != 429 && a.status != 503) {
			s_fail(c, "HTTP: valid %s %s answered %ld: %.200s",
			       batch ? "batch" : "event", vs[order[0]]->id, a.status, a.body);
			http_answer_clear(&a);
			return;
		}
		c->http_429 += a.status == 429;
		c->http_503 += a.status == 503;
		if (a.status != 202 && !a.retry_after[0])
			s_fail(c, "HTTP %ld without Retry-After", a.status);
		root = json_loads(a.body, 0, NULL);
		results = json_object_get(root, "results");
		if (json_array_size(results) != m) {
			s_fail(c, "HTTP %ld: %zu results for %zu events: %.200s", a.status,
			       json_array_size(results), m, a.body);
			json_decref(root);
			http_answer_clear(&a);
			return;
		}
		for (size_t i = 0; i < m; i++) {
			json_t *r = json_array_get(results, i);
			const char *id = json_string_value(json_object_get(r, "id"));
			valid_t *v = vs[order[i]];
			if (!id || strcmp(id, v->id)) {
				s_fail(c, "HTTP: result #%zu is for '%s', not %s", i, id ? id : "",
				       v->id);
				done[order[i]] = true;
				left--;
				continue;
			}
			if (s_settle(c, v, json_string_value(json_object_get(r, "status")),
				     "HTTP")) {
				done[order[i]] = true;
				left--;
			}
		}
		json_decref(root);
		if (left) {
			int secs = atoi(a.retry_after);
			c->busy++;
			test_sleep_ms(secs > 0 && secs <= 5 ? secs * 1000 : 1000);
		}
		http_answer_clear(&a);
	}
	if (left)
		s_fail(c, "HTTP: %zu valid events (first %s) not accepted after %d attempts", left,
		       vs[0]->id, MAX_ATTEMPTS);
}

/* Counts a bad request of kind `label` sent `via` HTTP or the gateway, and whether its
 * answer was the right one. */
static void s_count_kind(client_t *c, const char *via, const char *label, bool right)
{
	int k;

	for (k = 0; k < c->n_kinds; k++)
		if (c->kinds[k].via == via && !strcmp(c->kinds[k].label, label))
			break;
	if (k == c->n_kinds) {
		if (k == 32)
			return;
		c->kinds[k].via = via;
		c->kinds[k].label = label;
		c->n_kinds++;
	}
	c->kinds[k].n++;
	c->kinds[k].right += right;
}

static const char s_via_http[] = "HTTP", s_via_gateway[] = "gateway";

/* Checks an HTTP answer to a bad request against e. */
static void s_http_check_bad(client_t *c, const http_answer_t *a, const expect_t *e)
{
	json_t *root = json_loads(a->body, 0, NULL);
	const char *error = json_string_value(json_object_get(root, "error"));
	const char *attr = json_string_value(json_object_get(root, "attribute"));
	json_t *ev = json_object_get(root, "event");
	size_t off, len;
	bool ok = true;

	c->bad_requests++;
	if (a->status != e->http) {
		s_fail(c, "HTTP %s: answered %ld, not %d: %.200s", e->label, a->status, e->http,
		       a->status ? a->body : a->error);
		ok = false;
	} else if (!error || !*error) {
		s_fail(c, "HTTP %s: %ld without an error text: %.200s", e->label, a->status,
		       a->body);
		ok = false;
	} else if (e->attribute && (!attr || strcmp(attr, e->attribute))) {
		s_fail(c, "HTTP %s: attribute '%s', not '%s': %.200s", e->label, attr ? attr : "",
		       e->attribute, a->body);
		ok = false;
	} else if (e->event >= 0 && (!json_is_integer(ev) || json_integer_value(ev) != e->event)) {
		s_fail(c, "HTTP %s: not event %ld: %.200s", e->label, e->event, a->body);
		ok = false;
	} else if (e->reason && e->http == 413 && !strstr(error, e->reason)) {
		s_fail(c, "HTTP %s: the error does not name %s: %.200s", e->label, e->reason,
		       error);
		ok = false;
	}
	/* Error texts mask CPR numbers (docs/plugins/http.md). */
	if (kanal_cpr_find(a->body, strlen(a->body), &off, &len)) {
		s_fail(c, "HTTP %s: the answer repeats a clear CPR number", e->label);
		ok = false;
	}
	if (ok)
		c->bad_answered_right++;
	s_count_kind(c, s_via_http, e->label, ok);
	json_decref(root);
}

/* Connects a plain TCP socket to 127.0.0.1:port, sends junk, reads what comes back for a
 * moment and closes. kanald must shrug it off. */
static void s_raw_junk(client_t *c, int port, const char *prefix)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { 0 };
	struct timeval tv = { 0, 300 * 1000 };
	unsigned char junk[2048];
	size_t n = 1 + s_below(c, sizeof junk);
	char in[512];

	if (fd < 0)
		return;
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
		for (size_t i = 0; i < n; i++)
			junk[i] = (unsigned char)s_rand(c);
		if (prefix && send(fd, prefix, strlen(prefix), MSG_NOSIGNAL) < 0)
			n = 0;
		if (n && send(fd, junk, n, MSG_NOSIGNAL) < 0)
			n = 0;
		(void)!recv(fd, in, sizeof in, 0);
		c->raw_junk++;
	}
	close(fd);
}

/* One HTTP client: ROUNDS requests of the kinds below, in a random order of its own. */
static void s_http_client(client_t *c)
{
	storm_t *st = c->st;

	for (int round = 0; round < (c->rounds ? c->rounds : st->rounds) && !s_late(c); round++) {
		uint32_t pick = s_below(c, 20);
		expect_t e;
		http_answer_t a;
		char *body = NULL;

		if (pick < 6) { /* one valid event, structured */
			valid_t *v;
			const char *type = c->kind == C_HTTP_LIMITED || s_below(c, 2)
						   ? "child.hostile.reported"
						   : "staff.hostile.registered";
			body = s_valid_event(c, type, false, &v);
			s_http_send_valid(c, &v, &body, 1, false, NULL);
		} else if (pick < 8) { /* a valid batch */
			valid_t *vs[8];
			char *texts[8];
			size_t n = 2 + s_below(c, 5);
			for (size_t i = 0; i < n; i++)
				texts[i] = s_valid_event(c,
							 c->kind == C_HTTP_LIMITED || i % 2
								 ? "child.hostile.reported"
								 : "staff.hostile.registered",
							 false, &vs[i]);
			s_http_send_valid(c, vs, texts, n, true, NULL);
			for (size_t i = 0; i < n; i++)
				free(texts[i]);
		} else if (pick == 8 && c->kind == C_HTTP_FULL) { /* binary mode, JSON data */
			valid_t *v;
			char h[5][128];
			const char *headers[7];
			body = s_valid_event(c, "staff.hostile.registered", false, &v);
			snprintf(h[0], sizeof h[0], "ce-id: %s", v->id);
			snprintf(h[1], sizeof h[1], "ce-source: %s", v->source);
			snprintf(h[2], sizeof h[2], "ce-type: staff.hostile.registered");
			snprintf(h[3], sizeof h[3], "ce-specversion: 1.0");
			snprintf(h[4], sizeof h[4], "Content-Type: application/json");
			for (int i = 0; i < 5; i++)
				headers[i] = h[i];
			headers[5] = NULL;
			s_http_send_valid(c, &v, &body, 1, false, headers);
		} else if (pick < 14) { /* the bad events every client may send */
			body = s_bad_body(c, (int)s_below(c, N_BAD_KINDS), HTTP_MAX_EVENT, &e);
			a = s_post(c, s_auth(c), e.batch ? s_batch : s_structured, body,
				   strlen(body));
			s_http_check_bad(c, &a, &e);
			http_answer_clear(&a);
		} else if (pick == 14) { /* a body over max_body */
			buf_t b = { 0 };
			char *ev = s_bad_event(c, "child.hostile.reported", NULL);
			s_puts(&b, "[");
			while (b.len <= HTTP_MAX_BODY + 10) {
				s_puts(&b, b.len > 1 ? "," : "");
				s_puts(&b, ev);
			}
			s_puts(&b, "]");
			free(ev);
			/* The ingress answers 413 from Content-Length, before reading the body, and
			 * closes the connection without draining it: a client still sending then
			 * gets "Broken pipe" instead of the answer (seen with slow clients, e.g.
			 * under valgrind). A client posting a large body asks first, with Expect:
			 * 100-continue, and so hears the 413 before sending it. */
			static const char *const h[] = {
				"Content-Type: application/cloudevents-batch+json",
				"Expect: 100-continue", NULL
			};
			e = (expect_t){ .label = "body over max_body",
					.http = 413,
					.reason = "max_body",
					.event = -1 };
			a = s_post(c, s_auth(c), h, b.p, b.len);
			s_http_check_bad(c, &a, &e);
			http_answer_clear(&a);
			free(b.p);
		} else if (pick == 15) { /* no token, or one that matches no client */
			bool none = s_below(c, 2);
			body = s_bad_event(c, "child.hostile.reported", NULL);
			e = (expect_t){ .label = none ? "no token" : "wrong token",
					.http = 401,
					.event = -1 };
			a = s_post(c, none ? NULL : st->auth_wrong, s_structured, body,
				   strlen(body));
			s_http_check_bad(c, &a, &e);
			if (a.status == 401 && !strstr(a.www_authenticate, "Bearer"))
				s_fail(c, "HTTP 401 without WWW-Authenticate: Bearer");
			http_answer_clear(&a);
		} else if (pick == 16 && c->kind == C_HTTP_LIMITED) { /* a type it may not send */
			bool batch = s_below(c, 2);
			e = (expect_t){ .label = "type not allowed",
					.http = 403,
					.attribute = "type",
					.event = -1 };
			if (batch) {
				char *ok1 = s_bad_event(c, "child.hostile.reported", NULL);
				char *no = s_bad_event(c, "staff.hostile.registered", NULL);
				if (asprintf(&body, "[%s,%s]", ok1, no) < 0)
					body = NULL;
				free(ok1);
				free(no);
				e.event = 1;
			} else {
				body = s_bad_event(c, "staff.hostile.registered", NULL);
			}
			a = s_post(c, s_auth(c), batch ? s_batch : s_structured, body,
				   strlen(body));
			s_http_check_bad(c, &a, &e);
			if (a.status == 403 && !strstr(a.body, "staff.hostile.registered"))
				s_fail(c, "HTTP 403 does not name the type: %.200s", a.body);
			http_answer_clear(&a);
		} else if (pick == 17) { /* another CloudEvents format */
			body = s_bad_event(c, "child.hostile.reported", NULL);
			e = (expect_t){ .label = "avro content type", .http = 415, .event = -1 };
			{
				const char *h[] = { "Content-Type: application/cloudevents+avro",
						    NULL };
				a = s_post(c, s_auth(c), h, body, strlen(body));
			}
			s_http_check_bad(c, &a, &e);
			http_answer_clear(&a);
		} else if (pick == 18 && s_below(c, 3) == 0) { /* not even HTTP */
			s_raw_junk(c, st->http_port,
				   s_below(c, 2) ? "BREW /events HTCPCP/1.0\r\n" : NULL);
		} else { /* one more valid event, the limited client's kind */
			valid_t *v;
			body = s_valid_event(c, "child.hostile.reported", false, &v);
			s_http_send_valid(c, &v, &body, 1, false, NULL);
		}
		free(body);
	}
}

/* ---- the ZeroMQ clients ---------------------------------------------------------------------- */

/* A fresh socket for the client (closing the old one): a DEALER or a REQ, with the client's
 * CURVE keys when it has them. */
static void s_zmq_socket(client_t *c)
{
	int zero = 0, wait = WAIT;

	if (c->sock)
		zmq_close(c->sock);
	c->sock = zmq_socket(c->st->kd->zctx, c->kind == C_REQ ? ZMQ_REQ : ZMQ_DEALER);
	zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
	zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &wait, sizeof wait);
	if (c->pub) {
		zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, c->st->server_pub, 40);
		zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, c->pub, 40);
		zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, c->sec, 40);
	}
	zmq_connect(c->sock, c->st->kd->gateway);
}

/* Sends frames[0..n) as one request and waits up to timeout_ms for the one-frame reply.
 * Returns the reply's parsed "results" array (new reference) into *results and the raw
 * text (malloc'd), or NULL after the timeout — the socket is then replaced, so that a late
 * reply cannot be taken for the next one. */
static char *s_zmq_request(client_t *c, const char *const *frames, const size_t *lens, size_t n,
			   int timeout_ms, json_t **results)
{
	zmq_pollitem_t item;
	zmq_msg_t m;
	char *text = NULL;
	json_t *root;

	*results = NULL;
	if (!c->sock)
		s_zmq_socket(c);
	/* A DEALER whose only peer refused it has nowhere to send: bound that wait too. */
	zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
	c->requests++;
	for (size_t i = 0; i < n; i++)
		if (zmq_send(c->sock, frames[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
			goto none;
	item = (zmq_pollitem_t){ c->sock, 0, ZMQ_POLLIN, 0 };
	if (zmq_poll(&item, 1, timeout_ms) <= 0)
		goto none;
	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, c->sock, 0) >= 0) {
		text = malloc(zmq_msg_size(&m) + 1);
		memcpy(text, zmq_msg_data(&m), zmq_msg_size(&m));
		text[zmq_msg_size(&m)] = '\0';
		if (zmq_msg_more(&m))
			s_fail(c, "a reply of more than one frame");
	}
	zmq_msg_close(&m);
	if (!text)
		goto none;
	root = json_loads(text, 0, NULL);
	*results = json_incref(json_object_get(root, "results"));
	json_decref(root);
	if (!json_is_array(*results))
		s_fail(c, "a reply without a results array: %.200s", text);
	return text;
none:
	s_zmq_socket(c);
	return NULL;
}

static char *s_zmq_request1(client_t *c, const char *body, size_t len, int timeout_ms,
			    json_t **results)
{
	const char *frames[1] = { body };
	size_t lens[1] = { len };

	return s_zmq_request(c, frames, lens, 1, timeout_ms, results);
}

/* As s_http_send_valid, over the gateway: one event or a batch; busy ones are sent again
 * after retry_after_ms, in order. */
static void s_zmq_send_valid(client_t *c, valid_t **vs, char **texts, size_t n, bool batch)
{
	bool done[64] = { false };
	size_t left = n;

	for (int attempt = 0; left && attempt < MAX_ATTEMPTS && !s_late(c); attempt++) {
		buf_t b = { 0 };
		size_t order[64], m = 0;
		json_t *results;
		char *reply;
		long retry_ms = 0;

		for (size_t i = 0; i < n; i++)
			if (!done[i])
				order[m++] = i;
		if (batch) {
			s_puts(&b, "[");
			for (size_t i = 0; i < m; i++) {
				s_puts(&b, i ? "," : "");
				s_puts(&b, texts[order[i]]);
			}
			s_puts(&b, "]");
		} else {
			s_puts(&b, texts[0]);
		}
		reply = s_zmq_request1(c, b.p, b.len, WAIT, &results);
		free(b.p);
		if (!reply) {
			c->timeouts++;
			for (size_t i = 0; i < m; i++)
				vs[order[i]]->may_dup = true;
			continue;
		}
		if (json_array_size(results) != m) {
			s_fail(c, "gateway: %zu results for %zu events: %.200s",
			       json_array_size(results), m, reply);
			json_decref(results);
			free(reply);
			return;
		}
		for (size_t i = 0; i < m; i++) {
			json_t *r = json_array_get(results, i);
			const char *id = json_string_value(json_object_get(r, "id"));
			const char *status = json_string_value(json_object_get(r, "status"));
			valid_t *v = vs[order[i]];
			if (!id || strcmp(id, v->id)) {
				s_fail(c, "gateway: result #%zu is for '%s', not %s", i,
				       id ? id : "", v->id);
			} else if (!s_settle(c, v, status, "gateway")) {
				json_int_t ms =
					json_integer_value(json_object_get(r, "retry_after_ms"));
				if (status && !strcmp(status, "error"))
					s_fail(c, "gateway: valid event %s answered error: %.200s",
					       v->id, reply);
				if (ms > retry_ms)
					retry_ms = (long)ms;
				continue;
			}
			done[order[i]] = true;
			left--;
		}
		json_decref(results);
		free(reply);
		if (left) {
			c->busy++;
			test_sleep_ms(retry_ms > 0 && retry_ms <= 5000 ? (int)retry_ms : 200);
		}
	}
	if (left)
		s_fail(c, "gateway: %zu valid events (first %s) not accepted after %d attempts",
		       left, vs[0]->id, MAX_ATTEMPTS);
}

/* Checks the gateway's answer to a bad request against e: one result per event, every one
 * refused, the faulty one with its reason, a batch's others with "batch rejected". */
static void s_zmq_check_bad(client_t *c, const char *reply, json_t *results, const expect_t *e)
{
	size_t i, off, len;
	json_t *r;
	bool ok = true;

	c->bad_requests++;
	if (!reply) {
		c->timeouts++;
		s_fail(c, "gateway %s: no answer within %d ms", e->label, WAIT);
		s_count_kind(c, s_via_gateway, e->label, false);
		return;
	}
	if (!json_array_size(results) || (e->n && json_array_size(results) != e->n)) {
		s_fail(c, "gateway %s: %zu results, not %zu: %.200s", e->label,
		       json_array_size(results), e->n ? e->n : 1, reply);
		s_count_kind(c, s_via_gateway, e->label, false);
		return;
	}
	json_array_foreach(results, i, r)
	{
		const char *status = json_string_value(json_object_get(r, "status"));
		const char *reason = json_string_value(json_object_get(r, "reason"));
		bool faulty = e->faulty < 0 || (long)i == e->faulty;
		if (!status || strcmp(status, e->zstatus)) {
			s_fail(c, "gateway %s: result #%zu is '%s', not '%s': %.200s", e->label, i,
			       status ? status : "", e->zstatus, reply);
			ok = false;
			break;
		}
		if (!reason || !*reason) {
			s_fail(c, "gateway %s: result #%zu has no reason: %.200s", e->label, i,
			       reply);
			ok = false;
			break;
		}
		if (faulty && e->reason && !strstr(reason, e->reason)) {
			s_fail(c, "gateway %s: the reason does not say %s: %.200s", e->label,
			       e->reason, reason);
			ok = false;
			break;
		}
		if (!faulty && strcmp(reason, "batch rejected")) {
			s_fail(c, "gateway %s: result #%zu is not 'batch rejected': %.200s",
			       e->label, i, reason);
			ok = false;
			break;
		}
	}
	/* Reasons never repeat a CPR number (the ids here hold none). */
	if (kanal_cpr_find(reply, strlen(reply), &off, &len)) {
		s_fail(c, "gateway %s: the answer repeats a clear CPR number", e->label);
		ok = false;
	}
	if (ok)
		c->bad_answered_right++;
	s_count_kind(c, s_via_gateway, e->label, ok);
}

/* Frames that are not one event: binary junk, an empty frame, or too many frames. */
static void s_zmq_junk(client_t *c)
{
	unsigned char junk[8][300];
	const char *frames[12];
	size_t lens[12], n;
	int how = (int)s_below(c, 3);
	expect_t e = { .zstatus = "invalid", .faulty = -1, .event = -1 };
	json_t *results;
	char *reply;

	for (size_t f = 0; f < 8; f++) {
		for (size_t i = 0; i < sizeof junk[f]; i++)
			junk[f][i] = (unsigned char)s_rand(c);
		junk[f][0] = (unsigned char)(0x80 | junk[f][0]); /* never '{' or '[' */
	}
	if (how == 0) {
		e.label = "binary junk";
		n = 1;
		frames[0] = (const char *)junk[0];
		lens[0] = 1 + s_below(c, sizeof junk[0]);
	} else if (how == 1) {
		e.label = "an empty frame";
		n = 1;
		frames[0] = "";
		lens[0] = 0;
	} else {
		e.label = "too many frames";
		e.reason = "one frame";
		n = 2 + s_below(c, 10);
		for (size_t f = 0; f < n; f++) {
			frames[f] = (const char *)junk[f % 8];
			lens[f] = 1 + s_below(c, sizeof junk[0]);
		}
	}
	reply = s_zmq_request(c, frames, lens, n, WAIT, &results);
	s_zmq_check_bad(c, reply, results, &e);
	json_decref(results);
	free(reply);
}

/* One ZeroMQ client against the plain gateway: ROUNDS requests of the kinds below. */
static void s_zmq_client(client_t *c)
{
	storm_t *st = c->st;

	for (int round = 0; round < (c->rounds ? c->rounds : st->rounds) && !s_late(c); round++) {
		uint32_t pick = s_below(c, 20);
		const char *type =
			s_below(c, 2) ? "child.hostile.reported" : "staff.hostile.registered";

		if (pick < 7) {
			valid_t *v;
			char *text = s_valid_event(c, type, s_below(c, 4) == 0, &v);
			s_zmq_send_valid(c, &v, &text, 1, false);
			free(text);
		} else if (pick < 9) {
			valid_t *vs[12];
			char *texts[12];
			size_t n = 2 + s_below(c, 10);
			for (size_t i = 0; i < n; i++)
				texts[i] = s_valid_event(c,
							 i % 3 ? "child.hostile.reported"
							       : "staff.hostile.registered",
							 s_below(c, 5) == 0, &vs[i]);
			s_zmq_send_valid(c, vs, texts, n, true);
			for (size_t i = 0; i < n; i++)
				free(texts[i]);
		} else if (pick < 16) {
			expect_t e;
			json_t *results;
			char *body = s_bad_body(c, (int)s_below(c, N_BAD_KINDS), KD_MAX_EVENT, &e);
			char *reply = s_zmq_request1(c, body, strlen(body), WAIT, &results);
			s_zmq_check_bad(c, reply, results, &e);
			json_decref(results);
			free(reply);
			free(body);
		} else if (pick < 19) {
			s_zmq_junk(c);
		} else if (s_below(c, 2) == 0) {
			s_raw_junk(c, st->gw_port, s_below(c, 2) ? "\xff\x01\x02\x7fZMTP" : NULL);
		}
	}
}

/* ---- CURVE clients --------------------------------------------------------------------------- */

/* An allow-listed client: valid events of its own types, events of types outside its emit
 * list (alone, and hidden in a batch), and some of the usual bad ones. */
static void s_curve_client(client_t *c)
{
	for (int round = 0; round < (c->rounds ? c->rounds : c->st->rounds) && !s_late(c);
	     round++) {
		uint32_t pick = s_below(c, 10);
		json_t *results = NULL;
		char *reply = NULL, *body = NULL;
		expect_t e;

		if (pick < 4) {
			valid_t *v;
			body = s_valid_event(c, c->own_type, s_below(c, 4) == 0, &v);
			s_zmq_send_valid(c, &v, &body, 1, false);
		} else if (pick < 5) {
			valid_t *vs[6];
			char *texts[6];
			size_t n = 2 + s_below(c, 4);
			for (size_t i = 0; i < n; i++)
				texts[i] = s_valid_event(c, c->own_type, false, &vs[i]);
			s_zmq_send_valid(c, vs, texts, n, true);
			for (size_t i = 0; i < n; i++)
				free(texts[i]);
		} else if (pick < 7) { /* a type outside its emit list */
			body = s_bad_event(c, c->other_type, NULL);
			e = (expect_t){ .label = "forbidden type",
					.zstatus = "forbidden",
					.reason = c->other_type,
					.faulty = -1,
					.event = -1,
					.n = 1 };
			reply = s_zmq_request1(c, body, strlen(body), WAIT, &results);
			s_zmq_check_bad(c, reply, results, &e);
			if (reply &&
			    !strstr(reply, c->name[0] == 'c' ? "vendor-child" : "vendor-staff"))
				s_fail(c, "forbidden: the reason does not name the client: %.200s",
				       reply);
			c->forbidden++;
		} else if (pick < 8) { /* the same, hidden in a batch */
			size_t n = 2 + s_below(c, 4), k = s_below(c, (uint32_t)n);
			buf_t b = { 0 };
			s_puts(&b, "[");
			for (size_t i = 0; i < n; i++) {
				char *ev =
					s_bad_event(c, i == k ? c->other_type : c->own_type, NULL);
				s_puts(&b, i ? "," : "");
				s_puts(&b, ev);
				free(ev);
			}
			s_puts(&b, "]");
			body = b.p;
			e = (expect_t){ .label = "batch with a forbidden type",
					.zstatus = "forbidden",
					.reason = c->other_type,
					.faulty = (long)k,
					.event = -1,
					.n = n };
			reply = s_zmq_request1(c, body, strlen(body), WAIT, &results);
			s_zmq_check_bad(c, reply, results, &e);
			c->forbidden++;
		} else {
			body = s_bad_body(c, (int)s_below(c, N_BAD_KINDS), KD_MAX_EVENT, &e);
			reply = s_zmq_request1(c, body, strlen(body), WAIT, &results);
			s_zmq_check_bad(c, reply, results, &e);
		}
		json_decref(results);
		free(reply);
		free(body);
	}
}

/* A client kanald must not serve (an unknown key, or no CURVE at all): each request, on a
 * fresh socket, must go unanswered. The events it sends must never be delivered. */
static void s_refused_client(client_t *c)
{
	for (int round = 0; round < (c->rounds ? c->rounds : c->st->rounds) && !s_late(c);
	     round++) {
		char *body = s_bad_event(c, c->own_type, NULL);
		json_t *results;
		char *reply;

		/* (s_zmq_request replaces the socket after each unanswered request.) */
		reply = s_zmq_request1(c, body, strlen(body), QUIET, &results);
		c->bad_requests++;
		if (reply)
			s_fail(c, "a client kanald does not know was answered: %.200s", reply);
		else
			c->no_service++, c->bad_answered_right++;
		s_count_kind(c, s_via_gateway,
			     c->kind == C_PLAIN ? "plain client (no answer)"
						: "unknown CURVE key (no answer)",
			     !reply);
		json_decref(results);
		free(reply);
		free(body);
	}
}

static void *s_client_main(void *arg)
{
	client_t *c = arg;

	pthread_barrier_wait(&c->st->go);
	switch (c->kind) {
	case C_HTTP_LIMITED:
	case C_HTTP_FULL:
		s_http_client(c);
		break;
	case C_DEALER:
	case C_REQ:
		s_zmq_client(c);
		break;
	case C_CURVE:
		s_curve_client(c);
		break;
	case C_STRANGER:
	case C_PLAIN:
		s_refused_client(c);
		break;
	}
	if (c->sock)
		zmq_close(c->sock);
	c->sock = NULL;
	http_client_destroy(&c->http);
	if (s_late(c))
		s_fail(c, "the storm's deadline (%d ms) passed before the client was done",
		       STORM_MS);
	return NULL;
}

/* ---- the watchers: memory and the event stream -------------------------------------------- */

static long s_status_kib(pid_t pid, const char *field)
{
	char path[64], line[256], key[32];
	FILE *f;
	long kib = -1;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	snprintf(key, sizeof key, "%s: %%ld kB", field);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, key, &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* Samples kanald's VmRSS and reads its event stream until told to stop; counts what the
 * stream carries and any clear CPR number in it. */
static void *s_watch_main(void *arg)
{
	storm_t *st = arg;
	int64_t next_sample = 0;

	while (!__atomic_load_n(&st->stop_watch, __ATOMIC_ACQUIRE)) {
		char topic[256], *payload = NULL;

		if (test_now_ms() >= next_sample) {
			long rss = s_status_kib(st->kd->pid, "VmRSS");
			if (rss > st->rss_peak_kib)
				st->rss_peak_kib = rss;
			next_sample = test_now_ms() + 50;
		}
		if (!st->sub) {
			test_sleep_ms(50);
			continue;
		}
		if (kd_next(st->sub, topic, sizeof topic, &payload, 50) < 0)
			continue;
		st->happenings++;
		if (kd_has_clear_cpr(topic) || kd_has_clear_cpr(payload)) {
			if (!st->stream_cpr++) {
				char *masked = kanal_cpr_redact(payload ? payload : topic,
								strlen(payload ? payload : topic));
				snprintf(st->stream_cpr_first, sizeof st->stream_cpr_first,
					 "%s %.300s", topic, masked ? masked : "");
				free(masked);
			}
		}
		free(payload);
	}
	return NULL;
}

/* ---- the delivery check ------------------------------------------------------------------- */

static int s_cmp_valid(const void *a, const void *b)
{
	return strcmp((*(valid_t *const *)a)->id, (*(valid_t *const *)b)->id);
}

typedef struct tally {
	size_t expected, lines, delivered, unexpected, broken, wrong_sink, wrong_data, missing,
		twice;
	char first[3][400];
	int n_first;
} tally_t;

static void s_note(tally_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_note(tally_t *t, const char *fmt, ...)
{
	va_list ap;

	if (t->n_first >= 3)
		return;
	va_start(ap, fmt);
	vsnprintf(t->first[t->n_first], sizeof t->first[0], fmt, ap);
	va_end(ap);
	kanal_cpr_redact_inplace(t->first[t->n_first]);
	t->n_first++;
}

/* Checks one sink line against the sent events (sorted by id in index[0..n)). */
static void s_check_line(tally_t *t, valid_t **index, size_t n, const char *line, int sink)
{
	json_t *ev = json_loads(line, 0, NULL);
	const char *id = json_string_value(json_object_get(ev, "id"));
	valid_t key, *kp = &key, **hit;

	t->lines++;
	if (!ev || !id) {
		t->broken++;
		s_note(t, "a sink line that is not an event: %.200s", line);
		json_decref(ev);
		return;
	}
	snprintf(key.id, sizeof key.id, "%s", id);
	hit = bsearch(&kp, index, n, sizeof *index, s_cmp_valid);
	if (!hit || !(*hit)->accepted) {
		t->unexpected++;
		s_note(t, "delivered but never accepted: %s (%s)", id,
		       hit ? "refused valid event" : "a bad or unknown event");
		json_decref(ev);
		return;
	}
	if ((*hit)->seen++)
		t->twice++;
	t->delivered++;
	if ((*hit)->sink != sink) {
		t->wrong_sink++;
		s_note(t, "%s reached the wrong sink", id);
	}
	if (strcmp(json_string_value(json_object_get(ev, "source")), (*hit)->source)) {
		t->wrong_data++;
		s_note(t, "%s: source changed", id);
	}
	if ((*hit)->data) {
		/* The data member's bytes, exactly as sent. */
		const char *at = strstr(line, "\"data\":");
		size_t len = strlen((*hit)->data);
		json_t *data = json_object_get(ev, "data");
		const char *text = json_string_value(json_object_get(data, "text"));
		const char *sum = json_string_value(json_object_get(data, "sum"));
		char want[9] = "";

		if (text)
			s_sum(text, strlen(text), want);
		if (!at || strncmp(at + 7, (*hit)->data, len) ||
		    (at[7 + len] != '}' && at[7 + len] != ',')) {
			t->wrong_data++;
			s_note(t,
			       "%s: the data is not byte for byte what was sent: sent %.150s got "
			       "%.150s",
			       id, (*hit)->data, at ? at + 7 : "(no data)");
		} else if (!sum || strcmp(sum, want)) {
			t->wrong_data++;
			s_note(t, "%s: the data's checksum does not match its text", id);
		}
	} else {
		const char *b64 = json_string_value(json_object_get(ev, "data_base64"));
		unsigned char got[512];
		size_t m = b64 ? s_unbase64(b64, got, sizeof got) : 0;
		if (m != (*hit)->n_bytes || memcmp(got, (*hit)->bytes, m)) {
			t->wrong_data++;
			s_note(t, "%s: data_base64 decodes to other bytes (%zu, sent %zu)", id, m,
			       (*hit)->n_bytes);
		}
	}
	json_decref(ev);
}

/* Waits until the sinks hold every accepted event (bounded), then checks every line. */
static void s_check_deliveries(storm_t *st, tally_t *t)
{
	static const char *const files[2] = { "out-child.jsonl", "out-staff.jsonl" };
	size_t n = 0, k = 0;
	valid_t **index;
	int64_t until = test_now_ms() + DELIVERY_MS;

	memset(t, 0, sizeof *t);
	for (size_t i = 0; i < st->n_clients; i++)
		n += st->clients[i].n_valid;
	index = calloc(n ? n : 1, sizeof *index);
	for (size_t i = 0; i < st->n_clients; i++)
		for (size_t j = 0; j < st->clients[i].n_valid; j++) {
			index[k++] = st->clients[i].valid[j];
			t->expected += st->clients[i].valid[j]->accepted;
		}
	qsort(index, n, sizeof *index, s_cmp_valid);
	while (test_now_ms() < until &&
	       kd_lines(kd_path(st->kd, files[0])) + kd_lines(kd_path(st->kd, files[1])) <
		       t->expected)
		test_sleep_ms(50);
	test_sleep_ms(300); /* anything delivered twice or wrongly would show up by now */
	for (int f = 0; f < 2; f++) {
		char *text = test_read_file(kd_path(st->kd, files[f]), NULL), *save = NULL;
		for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
		     line = strtok_r(NULL, "\n", &save))
			s_check_line(t, index, n, line, f);
		free(text);
	}
	for (size_t i = 0; i < n; i++)
		if (index[i]->accepted && !index[i]->seen) {
			t->missing++;
			s_note(t, "%s was accepted but never delivered", index[i]->id);
		}
	free(index);
}

/* ---- running a storm ----------------------------------------------------------------------- */

static int s_rounds(int dflt)
{
	const char *env = getenv("KANAL_HOSTILE_ROUNDS");
	int n = env ? atoi(env) : 0;

	return n > 0 ? n : dflt;
}

/* Starts the clients, waits for all of them (each stops by the storm's deadline) and the
 * watcher; prints the totals. Returns the number of client failures (0: all good). */
static long s_run_storm(storm_t *st)
{
	pthread_t watcher;
	long failures = 0, req = 0, bad = 0, bad_right = 0, accepted = 0, busy = 0, timeouts = 0,
	     junk = 0, forbidden = 0, no_service = 0, h429 = 0, h503 = 0;
	size_t started = 0;

	pthread_barrier_init(&st->go, NULL, (unsigned)st->n_clients + 1);
	pthread_create(&watcher, NULL, s_watch_main, st);
	for (size_t i = 0; i < st->n_clients; i++) {
		client_t *c = &st->clients[i];
		if (pthread_create(&c->thread, NULL, s_client_main, c) == 0)
			c->started = true, started++;
	}
	/* A client that could not start would hold the barrier: stand in for it. */
	st->deadline = test_now_ms() + STORM_MS;
	for (size_t i = started; i < st->n_clients; i++)
		failures++;
	if (started == st->n_clients)
		pthread_barrier_wait(&st->go);
	else
		fprintf(stderr, "could not start every client thread\n");
	for (size_t i = 0; i < st->n_clients; i++)
		if (st->clients[i].started)
			pthread_join(st->clients[i].thread, NULL);
	__atomic_store_n(&st->stop_watch, 1, __ATOMIC_RELEASE);
	pthread_join(watcher, NULL);
	pthread_barrier_destroy(&st->go);
	for (size_t i = 0; i < st->n_clients; i++) {
		client_t *c = &st->clients[i];
		req += c->requests;
		bad += c->bad_requests;
		bad_right += c->bad_answered_right;
		accepted += c->events_accepted;
		busy += c->busy;
		timeouts += c->timeouts;
		junk += c->raw_junk;
		forbidden += c->forbidden;
		no_service += c->no_service;
		h429 += c->http_429;
		h503 += c->http_503;
		failures += c->n_fail;
		for (long f = 0; f < c->n_fail && f < 3; f++)
			fprintf(stderr, "    %s\n", c->fail[f]);
	}
	printf("\n    storm: %zu clients, %ld requests: %ld valid events accepted (%ld busy "
	       "answers: HTTP %ld 429, %ld 503), %ld bad requests of which %ld answered as "
	       "expected, %ld forbidden, "
	       "%ld refused service, %ld raw junk connections, %ld timeouts, %ld failures\n",
	       st->n_clients, req, accepted, busy, h429, h503, bad, bad_right, forbidden,
	       no_service, junk, timeouts, failures);
	{
		/* The bad requests by kind: how many were sent, how many answered right. */
		client_t sum = { .n_kinds = 0 };
		for (size_t i = 0; i < st->n_clients; i++)
			for (int k = 0; k < st->clients[i].n_kinds; k++) {
				const client_t *c = &st->clients[i];
				int j;
				for (j = 0; j < sum.n_kinds; j++)
					if (sum.kinds[j].via == c->kinds[k].via &&
					    !strcmp(sum.kinds[j].label, c->kinds[k].label))
						break;
				if (j == sum.n_kinds && j < 32) {
					sum.kinds[j].via = c->kinds[k].via;
					sum.kinds[j].label = c->kinds[k].label;
					sum.n_kinds++;
				}
				if (j < 32) {
					sum.kinds[j].n += c->kinds[k].n;
					sum.kinds[j].right += c->kinds[k].right;
				}
			}
		for (int j = 0; j < sum.n_kinds; j++)
			printf("      %-8s %-34s %5ld sent, %5ld answered as expected\n",
			       sum.kinds[j].via, sum.kinds[j].label, sum.kinds[j].n,
			       sum.kinds[j].right);
	}
	return failures;
}

static void s_storm_free(storm_t *st)
{
	for (size_t i = 0; i < st->n_clients; i++) {
		client_t *c = &st->clients[i];
		for (size_t j = 0; j < c->n_valid; j++) {
			free(c->valid[j]->data);
			free(c->valid[j]->bytes);
			free(c->valid[j]);
		}
		free(c->valid);
	}
	free(st->clients);
	st->clients = NULL;
	st->n_clients = 0;
}

static void s_print_tally(const tally_t *t)
{
	printf("    delivery: %zu accepted, %zu sink lines, %zu delivered, %zu missing, %zu twice, "
	       "%zu unexpected, %zu with other data, %zu in the wrong sink, %zu broken lines\n",
	       t->expected, t->lines, t->delivered, t->missing, t->twice, t->unexpected,
	       t->wrong_data, t->wrong_sink, t->broken);
	for (int i = 0; i < t->n_first; i++)
		fprintf(stderr, "    %s\n", t->first[i]);
}

/* Reads the port of the ingress from its port file (bounded wait). */
static int s_wait_port(kd_t *kd, const char *name)
{
	int64_t until = test_now_ms() + WAIT;

	while (test_now_ms() < until) {
		char *text = test_read_file(kd_path(kd, name), NULL);
		int port = text ? atoi(text) : 0;
		free(text);
		if (port > 0)
			return port;
		test_sleep_ms(20);
	}
	return -1;
}

/* Waits until the file at path holds needle (bounded). */
static bool s_wait_text(const char *path, const char *needle)
{
	int64_t until = test_now_ms() + WAIT;

	for (;;) {
		char *text = test_read_file(path, NULL);
		bool has = text && strstr(text, needle);
		free(text);
		if (has || test_now_ms() >= until)
			return has;
		test_sleep_ms(50);
	}
}

static int s_port_of(const char *endpoint)
{
	const char *colon = strrchr(endpoint, ':');
	return colon ? atoi(colon + 1) : -1;
}

static const char s_routes[] = "routes:\n"
			       "  - name: children\n"
			       "    match: { type: child.> }\n"
			       "    to: out-child\n"
			       "  - name: staff\n"
			       "    match: { type: staff.> }\n"
			       "    to: out-staff\n";

/* The two sinks; out-staff takes `%s` more options (a delay, to make kanald push back). */
static const char s_sinks[] = "  - name: out-child\n    plugin: sink\n"
			      "    options: { path: '@DIR@/out-child.jsonl' }\n"
			      "  - name: out-staff\n    plugin: sink\n"
			      "    options: { path: '@DIR@/out-staff.jsonl'%s }\n";

/* After a storm: the log holds no clear CPR number, kanald answers /status and a fresh
 * event (delivered), its peak memory is under the bound, and it stops cleanly. */
static void s_after_storm(storm_t *st, const char *fresh_event, const char *fresh_id)
{
	kd_t *kd = st->kd;
	char *reply, *log;
	long hwm = s_status_kib(kd->pid, "VmHWM");
	size_t off, len;

	printf("    kanald memory: peak VmRSS sampled %ld KiB, VmHWM %ld KiB (bound %d KiB)\n",
	       st->rss_peak_kib, hwm, RSS_BOUND_KIB);
	if (RSS_CHECKED) {
		CU_ASSERT(hwm > 0 && hwm < RSS_BOUND_KIB);
		CU_ASSERT(st->rss_peak_kib > 0 && st->rss_peak_kib < RSS_BOUND_KIB);
	} else {
		printf("    (AddressSanitizer build: resident memory reported, not checked)\n");
	}
	reply = kd_admin(kd, "{\"cmd\":\"status\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "\"ok\":true"));
	if (reply) {
		const char *counters = strstr(reply, "\"counters\"");
		printf("    kanald status counters: %.400s\n", counters ? counters : "(none)");
	}
	free(reply);
	if (fresh_event) {
		void *sub = kd_subscribe(kd, "delivered");
		char *p;
		reply = kd_send(kd, fresh_event, WAIT);
		CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "\"accepted\""));
		free(reply);
		p = kd_expect(sub, "delivered", fresh_id, WAIT);
		CU_ASSERT_PTR_NOT_NULL(p);
		free(p);
		kd_unsubscribe(&sub);
	}
	log = kd_log(kd);
	CU_ASSERT_PTR_NOT_NULL(log);
	if (log && kanal_cpr_find(log, strlen(log), &off, &len)) {
		char *line_start = log + off, *masked;
		while (line_start > log && line_start[-1] != '\n')
			line_start--;
		masked = kanal_cpr_redact(line_start, strcspn(line_start, "\n"));
		fprintf(stderr, "    kanald's log holds a clear CPR number: %s\n", masked);
		free(masked);
		CU_FAIL("kanald's log holds a clear CPR number");
	}
	free(log);
	printf("    event stream: %ld happenings read, %ld with a clear CPR number\n",
	       st->happenings, st->stream_cpr);
	CU_ASSERT(st->happenings > 0);
	CU_ASSERT_EQUAL(st->stream_cpr, 0);
	if (st->stream_cpr)
		fprintf(stderr, "    first: %s\n", st->stream_cpr_first);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
}

/* ---- the tests ------------------------------------------------------------------------------ */

static void test_fifty_hostile_clients_valid_events_arrive_once_bad_ones_get_their_error(void)
{
	static const char tok_limited[] = "hostile-limited-7c1e2a9b4d6f8e03";
	static const char tok_full[] = "hostile-full-5b8d0f2a4c6e8a1b3d5f";
	char instances[2048], *conf = NULL, *tokens = NULL, *path = NULL;
	storm_t st = { 0 };
	tally_t t;
	long failures;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(instances, sizeof instances,
		 "  - name: in\n    plugin: http\n"
		 "    options: { listen: '127.0.0.1:0', port_file: '@DIR@/in.port',"
		 " tokens_file: '@DIR@/tokens', max_event_size: %d, max_body: %d,"
		 " busy_retry_after: 1s }\n",
		 HTTP_MAX_EVENT, HTTP_MAX_BODY);
	snprintf(instances + strlen(instances), sizeof instances - strlen(instances), s_sinks,
		 SINK_DELAY);
	{
		char extra[256];
		snprintf(extra, sizeof extra, "  max_event_size: %d\n%s", KD_MAX_EVENT, PRESSURE);
		conf = kd_config(instances, extra);
	}
	st.kd = kd_prepare("hostile", conf, s_routes);
	REQUIRE(st.kd != NULL);
	if (asprintf(&tokens, "# the storm's clients\nlimited %s child.>\nfull %s\n", tok_limited,
		     tok_full) < 0)
		tokens = NULL;
	path = test_write_file(st.kd->dir, "tokens", tokens);
	REQUIRE(path != NULL && chmod(path, 0600) == 0);
	if (kd_launch(st.kd) < 0) {
		char *log = kd_log(st.kd);
		fprintf(stderr, "kanald did not start:\n%s\n", log ? log : "(no log)");
		free(log);
		REQUIRE(!"kanald started");
	}
	st.http_port = s_wait_port(st.kd, "in.port");
	REQUIRE(st.http_port > 0);
	snprintf(st.url, sizeof st.url, "http://127.0.0.1:%d/events", st.http_port);
	snprintf(st.auth_limited, sizeof st.auth_limited, "Authorization: Bearer %s", tok_limited);
	snprintf(st.auth_full, sizeof st.auth_full, "Authorization: Bearer %s", tok_full);
	snprintf(st.auth_wrong, sizeof st.auth_wrong, "Authorization: Bearer %sX", tok_full);
	st.gw_port = s_port_of(st.kd->gateway);
	st.rounds = s_rounds(ROUNDS);
	st.sub = kd_subscribe(st.kd, "");

	st.n_clients = N_HTTP + N_ZMQ;
	st.clients = calloc(st.n_clients, sizeof *st.clients);
	for (size_t i = 0; i < st.n_clients; i++) {
		client_t *c = &st.clients[i];
		c->st = &st;
		c->idx = (int)i;
		c->rng = 0x9e3779b97f4a7c15ULL * (i + 1);
		if (i < N_HTTP) {
			c->kind = i % 2 ? C_HTTP_LIMITED : C_HTTP_FULL;
			snprintf(c->name, sizeof c->name, "h%02d", (int)i);
		} else {
			c->kind = i % 2 ? C_REQ : C_DEALER;
			snprintf(c->name, sizeof c->name, "z%02d", (int)(i - N_HTTP));
		}
		c->own_type = "child.hostile.reported";
	}
	failures = s_run_storm(&st);
	CU_ASSERT_EQUAL(failures, 0);
	kd_unsubscribe(&st.sub);

	s_check_deliveries(&st, &t);
	s_print_tally(&t);
	CU_ASSERT(t.expected > 0);
	CU_ASSERT_EQUAL(t.delivered, t.expected);
	CU_ASSERT_EQUAL(t.missing, 0);
	CU_ASSERT_EQUAL(t.twice, 0);
	CU_ASSERT_EQUAL(t.unexpected, 0);
	CU_ASSERT_EQUAL(t.wrong_data, 0);
	CU_ASSERT_EQUAL(t.wrong_sink, 0);
	CU_ASSERT_EQUAL(t.broken, 0);

	/* kanald still serves, over both ways in. */
	{
		static const char ev[] =
			"{\"specversion\":\"1.0\",\"id\":\"after-http\",\"source\":"
			"\"urn:hostile:probe\",\"type\":\"staff.hostile.registered\"}";
		client_t probe = { .st = &st, .kind = C_HTTP_FULL, .name = "probe" };
		http_answer_t a = s_post(&probe, st.auth_full, s_structured, ev, strlen(ev));
		CU_ASSERT_EQUAL(a.status, 202);
		CU_ASSERT(s_wait_text(kd_path(st.kd, "out-staff.jsonl"), "\"after-http\""));
		http_answer_clear(&a);
		http_client_destroy(&probe.http);
	}
	s_after_storm(&st,
		      "{\"specversion\":\"1.0\",\"id\":\"after-zmq\",\"source\":"
		      "\"urn:hostile:probe\",\"type\":\"child.hostile.reported\"}",
		      "after-zmq");
done:
	kd_unsubscribe(&st.sub);
	s_storm_free(&st);
	kd_destroy(&st.kd);
	free(conf);
	free(tokens);
	free(path);
	curl_global_cleanup();
}

/* Writes a CURVE key file as kanalctl keygen does: a comment line, then the key. */
static char *s_key_file(kd_t *kd, const char *name, const char *key)
{
	char *text = NULL, *path;

	if (asprintf(&text, "# %s (a test key)\n%s\n", name, key) < 0)
		return NULL;
	path = test_write_file(kd->dir, name, text);
	free(text);
	if (path && chmod(path, 0600) < 0) {
		free(path);
		return NULL;
	}
	return path;
}

/* The CURVE side of the storm (docs/security.md, broker/zap.c, broker/acl.c): kanald's
 * gateway admits only the allow-listed keys; an allowed client gets "forbidden" for types
 * outside its emit list; an unknown key, or a plain client, gets no service at all. */
static void test_curve_storm_serves_allowed_keys_refuses_strangers_and_forbidden_types(void)
{
	char server_pub[41], server_sec[41], child_pub[41], child_sec[41], staff_pub[41],
		staff_sec[41], strange_pub[41], strange_sec[41], mon_pub[41], mon_sec[41];
	char extra[2048], sinks[1024], *conf = NULL, *key_path = NULL;
	storm_t st = { 0 };
	tally_t t;
	long failures, forbidden = 0;

	if (!zmq_has("curve")) {
		CU_FAIL("this libzmq has no CURVE: the CURVE storm cannot run");
		return;
	}
	CU_ASSERT_EQUAL_FATAL(zmq_curve_keypair(server_pub, server_sec), 0);
	CU_ASSERT_EQUAL_FATAL(zmq_curve_keypair(child_pub, child_sec), 0);
	CU_ASSERT_EQUAL_FATAL(zmq_curve_keypair(staff_pub, staff_sec), 0);
	CU_ASSERT_EQUAL_FATAL(zmq_curve_keypair(strange_pub, strange_sec), 0);
	CU_ASSERT_EQUAL_FATAL(zmq_curve_keypair(mon_pub, mon_sec), 0);
	snprintf(extra, sizeof extra,
		 "  max_event_size: %d\n%s"
		 "security:\n"
		 "  curve:\n"
		 "    secret_key_file: '@DIR@/kanald.key'\n"
		 "    clients:\n"
		 "      - name: vendor-child\n"
		 "        public_key: \"%s\"\n"
		 "        emit: [child.>]\n"
		 "      - name: vendor-staff\n"
		 "        public_key: \"%s\"\n"
		 "        emit: [staff.>]\n"
		 "      - name: monitor\n"
		 "        public_key: \"%s\"\n"
		 "        subscribe: ['*']\n",
		 KD_MAX_EVENT, PRESSURE, child_pub, staff_pub, mon_pub);
	snprintf(sinks, sizeof sinks, s_sinks, SINK_DELAY);
	conf = kd_config(sinks, extra);
	st.kd = kd_prepare("hostile-curve", conf, s_routes);
	REQUIRE(st.kd != NULL);
	key_path = s_key_file(st.kd, "kanald.key", server_sec);
	REQUIRE(key_path != NULL);
	if (kd_launch(st.kd) < 0) {
		char *log = kd_log(st.kd);
		fprintf(stderr,
			"kanald did not start with security.curve (docs/security.md); "
			"CURVE on the gateway with an allow-list and emit ACLs (broker/zap.c, "
			"broker/acl.c) is missing or broken. Its log:\n%s\n",
			log ? log : "(no log)");
		free(log);
		CU_FAIL("kanald does not start with security.curve: CURVE on the gateway is "
			"missing");
		goto done;
	}
	st.server_pub = server_pub;
	st.gw_port = s_port_of(st.kd->gateway);
	st.rounds = s_rounds(ROUNDS) / 2;
	{
		/* The stream is a CURVE server too: the watcher reads it as `monitor`. */
		int zero = 0;
		st.sub = zmq_socket(st.kd->zctx, ZMQ_SUB);
		zmq_setsockopt(st.sub, ZMQ_LINGER, &zero, sizeof zero);
		zmq_setsockopt(st.sub, ZMQ_CURVE_SERVERKEY, server_pub, 40);
		zmq_setsockopt(st.sub, ZMQ_CURVE_PUBLICKEY, mon_pub, 40);
		zmq_setsockopt(st.sub, ZMQ_CURVE_SECRETKEY, mon_sec, 40);
		zmq_setsockopt(st.sub, ZMQ_SUBSCRIBE, "", 0);
		zmq_connect(st.sub, st.kd->stream);
		test_sleep_ms(500); /* the handshake and the subscription reach kanald */
	}

	/* 12 allowed clients (6 per key), 4 with a key kanald does not know, 2 plain. */
	st.n_clients = 18;
	st.clients = calloc(st.n_clients, sizeof *st.clients);
	for (size_t i = 0; i < st.n_clients; i++) {
		client_t *c = &st.clients[i];
		c->st = &st;
		c->idx = (int)i;
		c->rng = 0x2545f4914f6cdd1dULL * (i + 7);
		if (i < 12) {
			bool child = i % 2 == 0;
			c->kind = C_CURVE;
			snprintf(c->name, sizeof c->name, "%c%02d", child ? 'c' : 's', (int)i);
			c->pub = child ? child_pub : staff_pub;
			c->sec = child ? child_sec : staff_sec;
			c->own_type = child ? "child.hostile.reported" : "staff.hostile.registered";
			c->other_type =
				child ? "staff.hostile.registered" : "child.hostile.reported";
		} else if (i < 16) {
			c->kind = C_STRANGER;
			snprintf(c->name, sizeof c->name, "x%02d", (int)i);
			c->pub = strange_pub;
			c->sec = strange_sec;
			c->own_type = "child.hostile.reported";
			c->rounds = 5; /* each refused request waits QUIET ms for nothing */
		} else {
			c->kind = C_PLAIN;
			snprintf(c->name, sizeof c->name, "p%02d", (int)i);
			c->own_type = "child.hostile.reported";
			c->rounds = 5;
		}
	}
	failures = s_run_storm(&st);
	kd_unsubscribe(&st.sub);
	CU_ASSERT_EQUAL(failures, 0);
	for (size_t i = 0; i < st.n_clients; i++)
		forbidden += st.clients[i].forbidden;

	s_check_deliveries(&st, &t);
	s_print_tally(&t);
	CU_ASSERT(t.expected > 0);
	CU_ASSERT_EQUAL(t.delivered, t.expected);
	CU_ASSERT_EQUAL(t.missing, 0);
	CU_ASSERT_EQUAL(t.twice, 0);
	CU_ASSERT_EQUAL(t.unexpected, 0);
	CU_ASSERT_EQUAL(t.wrong_data, 0);
	CU_ASSERT_EQUAL(t.wrong_sink, 0);
	CU_ASSERT_EQUAL(t.broken, 0);
	{
		/* Every forbidden request was counted once; strangers were refused. */
		char *reply = kd_admin(st.kd, "{\"cmd\":\"status\"}", WAIT), *at;
		long acl = -1, denied = -1;
		if (reply && (at = strstr(reply, "\"acl_denied\":")))
			acl = strtol(at + 13, NULL, 10);
		if (reply && (at = strstr(reply, "\"connections_denied\":")))
			denied = strtol(at + 21, NULL, 10);
		printf("    curve: %ld forbidden requests sent, acl_denied %ld, connections_denied "
		       "%ld\n",
		       forbidden, acl, denied);
		CU_ASSERT_EQUAL(acl, forbidden);
		CU_ASSERT(denied >= 4);
		free(reply);
	}
	/* kanald still serves an allowed client after the storm. */
	{
		client_t probe = { .st = &st,
				   .kind = C_CURVE,
				   .name = "c-probe",
				   .pub = child_pub,
				   .sec = child_sec };
		json_t *results = NULL;
		const char *ev = "{\"specversion\":\"1.0\",\"id\":\"after-curve\",\"source\":"
				 "\"urn:hostile:probe\",\"type\":\"child.hostile.reported\"}";
		char *reply = s_zmq_request1(&probe, ev, strlen(ev), WAIT, &results);
		CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "\"accepted\""));
		CU_ASSERT(s_wait_text(kd_path(st.kd, "out-child.jsonl"), "\"after-curve\""));
		json_decref(results);
		free(reply);
		if (probe.sock)
			zmq_close(probe.sock);
	}
	s_after_storm(&st, NULL, NULL);
done:
	kd_unsubscribe(&st.sub);
	s_storm_free(&st);
	kd_destroy(&st.kd);
	free(conf);
	free(key_path);
}

TEST_MAIN("hostile",
	  TEST(test_fifty_hostile_clients_valid_events_arrive_once_bad_ones_get_their_error),
	  TEST(test_curve_storm_serves_allowed_keys_refuses_strangers_and_forbidden_types))
