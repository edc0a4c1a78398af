/*
 * broker/admin_http.c — kanald's HTTP admin endpoint, for ops tools, Prometheus and the
 * dashboard: /healthz, /readyz, /metrics (Prometheus text), JSON under /api/v1/ (status,
 * routes, instances, dead letters, reload) and the dashboard page at /.
 *
 * It holds no state of its own: each request becomes one request to the router's admin
 * socket (the same JSON commands kanalctl sends, docs/design/wire.md), made from the
 * HTTP server's thread over a ZeroMQ REQ socket, so the router stays the only owner of its
 * data and this file never touches it. libmicrohttpd runs its own polling thread; requests
 * are served one at a time, which is plenty for an admin API and keeps it from becoming a
 * way to load the router.
 *
 * Bound to 127.0.0.1 by default. With `admin_token_file` set, every request except
 * /healthz, /readyz and the dashboard page itself needs `Authorization: Bearer <token>`,
 * compared in constant time. The page holds no data: its script asks for the token and
 * sends it with each of its API requests, as a browser cannot add the header to a page
 * it navigates to.
 *
 * Answers: 200; 400 when kanald said no (a refused reload, with its errors); 401 without
 * the token; 404 for an unknown path or a dead letter that is not in the store; 405 with
 * `Allow` for a known path asked with the wrong method; 503 when the router does not
 * answer. CPR numbers never appear in the clear: the router masks its replies, and this
 * file masks its own error texts.
 */
#include "admin_http.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <zmq.h>

#include <kanal/cpr.h>

#include "audit.h"
#include "dashboard.h"
#include "log.h"

#define ADMIN_TIMEOUT_MS 5000
/* A reload in cluster mode waits for every node's verdict (cluster_routes.c, up to 8 s). */
#define ADMIN_RELOAD_TIMEOUT_MS 15000
#define MAX_BODY (1u << 20)

struct admin_http {
	struct MHD_Daemon *daemon;
	void *zctx;
	char admin_endpoint[256];
	char url[128];
	unsigned char token_hash[SHA256_DIGEST_LENGTH];
	bool has_token;
	char client[64]; /* the address of the request being served, for the audit log */
};

typedef struct {
	char *body;
	size_t len;
	bool too_big;
} upload_t;

typedef struct {
	int status;
	char *body;
	size_t len;
	const char *type;
	char allow[64];
} reply_t;

/* ---- replies -------------------------------------------------------------------------- */

static void s_reply(reply_t *out, int status, const char *type, char *body)
{
	free(out->body);
	out->status = status;
	out->type = type;
	out->body = body;
	out->len = body ? strlen(body) : 0;
}

static void s_reply_json(reply_t *out, int status, json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	s_reply(out, text ? status : 500, "application/json", text ? text : strdup("{}"));
}

static void s_reply_error(reply_t *out, int status, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	/* An error may quote the request's URL, which may hold anything. */
	kanal_cpr_redact_inplace(why);
	s_reply_json(out, status, json_pack("{s:b, s:s}", "ok", 0, "error", why));
}

/* ---- the router's admin socket -------------------------------------------------------- */

/* Sends one admin command and returns the reply (new reference), or NULL with why. */
static json_t *s_call(admin_http_t *a, json_t *req, char *why, size_t why_size)
{
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	int timeout = cmd && !strcmp(cmd, "reload") ? ADMIN_RELOAD_TIMEOUT_MS : ADMIN_TIMEOUT_MS;
	int linger = 0;
	char *text;
	json_t *reply = NULL;
	zmq_msg_t msg;
	void *s;

	/* Who asked, for the audit log: relayed with the process's key, so that the router
	 * believes it from this endpoint only (broker/audit.c). */
	json_object_set_new(req, "actor",
			    json_pack("{s:s, s:s, s:s}", "who",
				      a->has_token ? "admin token" : "no token (loopback)", "from",
				      a->client, "key", audit_relay_key()));
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!text) {
		snprintf(why, why_size, "out of memory");
		return NULL;
	}
	if (!a->admin_endpoint[0] || !(s = zmq_socket(a->zctx, ZMQ_REQ))) {
		snprintf(why, why_size, "kanald's admin socket is not available");
		free(text);
		return NULL;
	}
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
	zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
	zmq_msg_init(&msg);
	if (zmq_connect(s, a->admin_endpoint) != 0 || zmq_send(s, text, strlen(text), 0) < 0 ||
	    zmq_msg_recv(&msg, s, 0) < 0) {
		snprintf(why, why_size, "kanald's router did not answer within %d ms", timeout);
	} else {
		json_error_t jerr;
		reply = json_loadb(zmq_msg_data(&msg), zmq_msg_size(&msg), 0, &jerr);
		if (!reply)
			snprintf(why, why_size, "the router's answer is not JSON: %s", jerr.text);
	}
	zmq_msg_close(&msg);
	zmq_close(s);
	free(text);
	return reply;
}

/* Calls and answers with the router's reply as it is (200 when ok, else 400/500). */
static void s_pass(admin_http_t *a, json_t *req, reply_t *out)
{
	char why[256];
	json_t *r = s_call(a, req, why, sizeof why);

	if (!r) {
		s_reply_error(out, 503, "%s", why);
		return;
	}
	s_reply_json(out, json_is_true(json_object_get(r, "ok")) ? 200 : 400, r);
}

/* ---- /metrics ------------------------------------------------------------------------- */

typedef struct {
	char *p;
	size_t len, cap;
} text_t;

static void s_put(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_put(text_t *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = t->cap - t->len;
		va_start(ap, fmt);
		n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (t->p && (size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		{
			size_t cap = t->cap ? t->cap * 2 : 8192;
			char *p;
			while (cap < t->len + (size_t)n + 1)
				cap *= 2;
			if (!(p = realloc(t->p, cap)))
				return;
			t->p = p;
			t->cap = cap;
		}
	}
}

/* Writes a label value escaped as the text format wants (\\, \", \n). */
static void s_put_label(text_t *t, const char *v)
{
	for (; v && *v; v++) {
		if (*v == '\\' || *v == '"')
			s_put(t, "\\%c", *v);
		else if (*v == '\n')
			s_put(t, "\\n");
		else
			s_put(t, "%c", *v);
	}
}

static void s_help(text_t *t, const char *name, const char *type, const char *help)
{
	s_put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One family whose samples are a field of each element of an array, labelled by the
 * element's "name" (e.g. per destination). */
static void s_family(text_t *t, json_t *arr, const char *label, const char *field, const char *name,
		     const char *type, const char *help)
{
	size_t i;
	json_t *e;

	s_help(t, name, type, help);
	json_array_foreach(arr, i, e)
	{
		json_t *v = json_object_get(e, field);
		if (!json_is_number(v))
			continue;
		s_put(t, "%s{%s=\"", name, label);
		s_put_label(t, json_string_value(json_object_get(e, "name")));
		s_put(t, "\"} %.17g\n", json_number_value(v));
	}
}

/* The samples of histogram h (status's {"buckets": [[le, cumulative]…], "sum", "count"}),
 * labelled with route and destination when route is not NULL. */
static void s_histogram(text_t *t, const char *name, const char *route, const char *dest, json_t *h)
{
	static const char *const part[] = { "_bucket", "_sum", "_count" };
	json_t *b = json_object_get(h, "buckets"), *e;
	size_t n = json_array_size(b);

	/* One line per bucket, then +Inf, _sum and _count. */
	for (size_t i = 0; i < n + 3; i++) {
		const char *suffix = part[i <= n ? 0 : i - n];
		bool braces = route || i <= n;
		double v;

		s_put(t, "%s%s%s", name, suffix, braces ? "{" : "");
		if (route) {
			s_put(t, "route=\"");
			s_put_label(t, route);
			s_put(t, "\",destination=\"");
			s_put_label(t, dest);
			s_put(t, "\"%s", i <= n ? "," : "");
		}
		if (i < n) {
			e = json_array_get(b, i);
			s_put(t, "le=\"%g\"", json_number_value(json_array_get(e, 0)));
			v = json_number_value(json_array_get(e, 1));
		} else {
			if (i == n)
				s_put(t, "le=\"+Inf\"");
			v = json_number_value(json_object_get(h, i == n + 1 ? "sum" : "count"));
		}
		s_put(t, "%s %.17g\n", braces ? "}" : "", v);
	}
}

static void s_scalar(text_t *t, json_t *obj, const char *field, const char *name, const char *type,
		     const char *help)
{
	json_t *v = json_object_get(obj, field);
	if (!json_is_number(v) && !json_is_boolean(v))
		return;
	s_help(t, name, type, help);
	s_put(t, "%s %.17g\n", name,
	      json_is_boolean(v) ? (json_is_true(v) ? 1.0 : 0.0) : json_number_value(v));
}

/* The process_* family every Prometheus exporter has (the client libraries' names), read
 * from /proc/self at scrape time: this file runs in kanald's own process. */
static void s_process_metrics(text_t *t)
{
	static const struct {
		const char *name, *type, *help;
	} f[] = {
		{ "process_cpu_seconds_total", "counter", "User and system CPU time spent." },
		{ "process_resident_memory_bytes", "gauge", "Resident memory size." },
		{ "process_virtual_memory_bytes", "gauge", "Virtual memory size." },
		{ "process_open_fds", "gauge", "Open file descriptors." },
		{ "process_start_time_seconds", "gauge", "Start time since the Unix epoch." },
	};
	double v[5] = { 0 };
	unsigned long long utime, stime, start, vsize;
	long long rss;
	char buf[1024], *p = NULL;
	FILE *fp = fopen("/proc/self/stat", "r");
	size_t n = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
	double btime = 0, tck = (double)sysconf(_SC_CLK_TCK);
	DIR *fds;
	struct dirent *de;

	if (fp)
		fclose(fp);
	buf[n] = '\0';
	/* Fields after the command's closing parenthesis (proc(5)): 14 utime, 15 stime,
	 * 22 starttime, 23 vsize, 24 rss, counted from 3 (state). */
	if (n && (p = strrchr(buf, ')')) &&
	    sscanf(p + 2,
		   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
		   "%*d %*d %llu %llu %lld",
		   &utime, &stime, &start, &vsize, &rss) == 5) {
		v[0] = (double)(utime + stime) / tck;
		v[1] = (double)rss * (double)sysconf(_SC_PAGESIZE);
		v[2] = (double)vsize;
		if ((fp = fopen("/proc/stat", "r"))) {
			while (fgets(buf, sizeof buf, fp))
				if (sscanf(buf, "btime %lf", &btime) == 1)
					break;
			fclose(fp);
		}
		v[4] = btime + (double)start / tck;
	}
	if ((fds = opendir("/proc/self/fd"))) {
		while ((de = readdir(fds)))
			v[3] += de->d_name[0] != '.';
		v[3] -= 1; /* the one opendir holds */
		closedir(fds);
	}
	for (size_t i = 0; p && i < sizeof f / sizeof *f; i++) {
		s_help(t, f[i].name, f[i].type, f[i].help);
		s_put(t, "%s %.17g\n", f[i].name, v[i]);
	}
}

/* A plugin's own metrics as two families: what it adds to (kanal_metric_add) is a
 * counter, what it sets (kanal_metric_set, named in the instance's "gauges") a gauge. */
static void s_plugin_metrics(text_t *t, json_t *insts, bool gauges)
{
	const char *family = gauges ? "kanal_plugin_metric" : "kanal_plugin_metric_total";
	bool first = true;
	size_t i;
	json_t *e;

	json_array_foreach(insts, i, e)
	{
		json_t *g = json_object_get(e, "gauges"), *v;
		const char *key;

		json_object_foreach(json_object_get(e, "metrics"), key, v)
		{
			bool is_gauge = false;
			size_t k;
			json_t *x;

			json_array_foreach(g, k, x) is_gauge =
				is_gauge || !strcmp(json_string_value(x), key);
			if (!json_is_number(v) || is_gauge != gauges ||
			    (!gauges && !strcmp(key, "host_restarts")))
				continue;
			if (first)
				s_help(t, family, gauges ? "gauge" : "counter",
				       gauges ? "A plugin's own gauges (kanal_metric_set)."
					      : "A plugin's own counters (kanal_metric_add).");
			first = false;
			s_put(t, "%s{instance=\"", family);
			s_put_label(t, json_string_value(json_object_get(e, "name")));
			s_put(t, "\",metric=\"");
			s_put_label(t, key);
			s_put(t, "\"} %.17g\n", json_number_value(v));
		}
	}
}

/* kanal_instance_upstream_up: 1 or 0 for each instance that reported its upstream
 * (kanal_upstream_report); one that never did has no sample. */
static void s_upstream_metrics(text_t *t, json_t *insts)
{
	bool first = true;
	size_t i;
	json_t *e;

	json_array_foreach(insts, i, e)
	{
		json_t *up = json_object_get(e, "upstream");

		if (!json_is_boolean(up))
			continue;
		if (first)
			s_help(t, "kanal_instance_upstream_up", "gauge",
			       "1 when the instance's upstream system last answered, 0 when it "
			       "could not be reached.");
		first = false;
		s_put(t, "kanal_instance_upstream_up{instance=\"");
		s_put_label(t, json_string_value(json_object_get(e, "name")));
		s_put(t, "\"} %d\n", json_is_true(up) ? 1 : 0);
	}
}

/* Prometheus text format (version 0.0.4) from the router's status. */
static char *s_metrics(json_t *st)
{
	json_t *c = json_object_get(st, "counters"), *dests = json_object_get(st, "destinations"),
	       *routes = json_object_get(st, "route_counters"),
	       *insts = json_object_get(st, "instances"), *j = json_object_get(st, "journal");
	text_t t = { 0 };
	size_t i;
	json_t *e;

	s_put(&t, "%s", "");
	if ((e = json_object_get(st, "build"))) {
		s_help(&t, "kanal_build_info", "gauge",
		       "What kanald is: release, source revision, "
		       "plugin ABI; always 1.");
		s_put(&t, "kanal_build_info{version=\"");
		s_put_label(&t, json_string_value(json_object_get(e, "version")));
		s_put(&t, "\",revision=\"");
		s_put_label(&t, json_string_value(json_object_get(e, "revision")));
		s_put(&t, "\",abi=\"");
		s_put_label(&t, json_string_value(json_object_get(e, "abi")));
		s_put(&t, "\"} 1\n");
	}
	s_scalar(&t, c, "accepted", "kanal_events_accepted_total", "counter",
		 "Events accepted by kanald (gateway and plugin emits).");
	s_scalar(&t, c, "unmatched", "kanal_events_unmatched_total", "counter",
		 "Events no route matched, sent to the default destination.");
	s_scalar(&t, c, "invalid", "kanal_events_invalid_total", "counter",
		 "Events refused as invalid.");
	s_scalar(&t, c, "busy", "kanal_events_busy_total", "counter",
		 "Events refused for backpressure (the sender retries).");
	s_scalar(&t, c, "duplicates", "kanal_events_duplicate_total", "counter",
		 "Events refused as duplicates of (source, id).");
	s_scalar(&t, c, "acl_denied", "kanal_events_acl_denied_total", "counter",
		 "Events refused by an ACL.");
	s_scalar(&t, c, "reloads", "kanal_reloads_total", "counter",
		 "Routing reloads that took effect.");
	s_scalar(&t, c, "reload_failures", "kanal_reload_failures_total", "counter",
		 "Routing reloads refused (the old table stayed).");
	s_scalar(&t, json_object_get(st, "last_reload"), "ok",
		 "kanal_config_last_reload_successful", "gauge",
		 "1 when the last load of the routing files (at start or a reload) worked.");
	s_scalar(&t, json_object_get(st, "last_reload"), "time",
		 "kanal_config_last_reload_success_timestamp_seconds", "gauge",
		 "When the routing files were last loaded or refused (Unix time).");
	s_scalar(&t, c, "connections_denied", "kanal_connections_denied_total", "counter",
		 "ZeroMQ connections the CURVE allow-list refused.");
	s_process_metrics(&t);
	s_scalar(&t, c, "dead_letters_purged", "kanal_dead_letters_purged_total", "counter",
		 "Dead letters purged by their retention or by dlq purge.");
	s_scalar(&t, c, "rate_limited", "kanal_rate_limited_total", "counter",
		 "Gateway events answered busy for being over limits.rate.");
	if ((e = json_object_get(st, "trace"))) { /* trace.export is on */
		s_scalar(&t, e, "exported", "kanal_trace_spans_exported_total", "counter",
			 "Spans the trace collector took.");
		s_scalar(&t, e, "failed", "kanal_trace_spans_failed_total", "counter",
			 "Spans lost because the collector refused or did not answer.");
		s_scalar(&t, e, "dropped", "kanal_trace_spans_dropped_total", "counter",
			 "Spans dropped because the export queue was full.");
	}

	if (json_is_array(routes)) {
		static const char *const f[][3] = {
			{ "matched", "kanal_route_matched_total", "Events the route matched." },
			{ "delivered", "kanal_route_delivered_total",
			  "Deliveries of the route that succeeded." },
			{ "retried", "kanal_route_retried_total",
			  "Delivery attempts of the route to be retried." },
			{ "rejected", "kanal_route_rejected_total",
			  "Deliveries of the route a destination rejected." },
			{ "dead", "kanal_route_dead_total",
			  "Deliveries of the route sent to the dead letters." },
			{ "fallback", "kanal_route_fallback_total",
			  "Times the route's fallback was taken." },
			{ "transform_failed", "kanal_route_transform_failed_total",
			  "Deliveries of the route its transform refused (counted in rejected "
			  "too)." },
		};
		for (size_t k = 0; k < sizeof f / sizeof *f; k++)
			s_family(&t, routes, "route", f[k][0], f[k][1], "counter", f[k][2]);
	}
	if (json_is_array(dests)) {
		s_family(&t, dests, "destination", "delivered", "kanal_destination_delivered_total",
			 "counter", "Deliveries to the destination that succeeded.");
		s_family(&t, dests, "destination", "retried", "kanal_destination_retried_total",
			 "counter", "Delivery attempts to the destination to be retried.");
		s_family(&t, dests, "destination", "rejected", "kanal_destination_rejected_total",
			 "counter", "Deliveries the destination rejected.");
		s_family(&t, dests, "destination", "dead", "kanal_destination_dead_total",
			 "counter", "Deliveries to the destination that went to the dead letters.");
		s_family(&t, dests, "destination", "queued", "kanal_destination_queue_depth",
			 "gauge", "Events waiting in the destination's queue.");
		s_family(&t, dests, "destination", "queued_bytes", "kanal_destination_queue_bytes",
			 "gauge", "Bytes waiting in the destination's queue.");
		s_family(&t, dests, "destination", "in_flight", "kanal_destination_in_flight",
			 "gauge", "Deliveries the destination is working on.");
	}
	if (json_is_object(json_object_get(st, "blobs"))) {
		json_t *b = json_object_get(st, "blobs");
		s_scalar(&t, b, "count", "kanal_blobs", "gauge", "Blobs in the blob store.");
		s_scalar(&t, b, "bytes", "kanal_blob_bytes", "gauge", "Bytes in the blob store.");
		s_scalar(&t, b, "references", "kanal_blob_references", "gauge",
			 "References to blobs held by open events and dead letters.");
	}
	if (json_is_object(j)) {
		s_scalar(&t, j, "open_events", "kanal_journal_open_events", "gauge",
			 "Events in the journal not yet delivered everywhere.");
		s_scalar(&t, j, "parked_events", "kanal_journal_parked_events", "gauge",
			 "Events waiting on disk for a full destination.");
		s_scalar(&t, j, "dead_letters", "kanal_dead_letters", "gauge",
			 "Dead letters in the store.");
		s_scalar(&t, j, "size_bytes", "kanal_journal_size_bytes", "gauge",
			 "Size of the journal's files.");
		s_scalar(&t, j, "writable", "kanal_journal_writable", "gauge",
			 "1 when the journal accepts writes, 0 after a write failure.");
	}
	if (json_is_object(json_object_get(j, "checkpoints"))) {
		json_t *ck = json_object_get(j, "checkpoints");
		static const char *const by[] = { "thread", "router", "forced" };

		s_help(&t, "kanal_journal_checkpoints_total", "counter",
		       "WAL checkpoints: by the checkpoint thread, the last pages by the router, "
		       "forced on the router by the WAL's hard bound.");
		for (size_t k = 0; k < 3; k++)
			s_put(&t, "kanal_journal_checkpoints_total{by=\"%s\"} %.17g\n", by[k],
			      json_number_value(json_object_get(ck, by[k])));
		s_scalar(&t, ck, "failed", "kanal_journal_checkpoint_failures_total", "counter",
			 "Checkpoints the thread could not finish (the WAL keeps everything).");
		s_scalar(&t, ck, "wal_pages", "kanal_journal_wal_pages", "gauge",
			 "Pages in the journal's WAL at the last commit.");
	}
	if (json_is_array(json_object_get(json_object_get(st, "latency"), "buckets"))) {
		s_help(&t, "kanal_delivery_latency_seconds", "histogram",
		       "From acceptance to a destination's OK.");
		s_histogram(&t, "kanal_delivery_latency_seconds", NULL, NULL,
			    json_object_get(st, "latency"));
	}
	if (json_is_array(routes)) {
		/* Per route and destination: as many series as the routes have destinations. */
		s_help(&t, "kanal_route_delivery_latency_seconds", "histogram",
		       "From acceptance to the destination's OK, per route and destination.");
		json_array_foreach(routes, i, e)
		{
			const char *dest;
			json_t *h;

			json_object_foreach(json_object_get(e, "latency"), dest, h)
				s_histogram(&t, "kanal_route_delivery_latency_seconds",
					    json_string_value(json_object_get(e, "name")), dest, h);
		}
	}
	{
		/* The routing files' measures (docs/routes.md#measures), one sample per label
		 * value combination; label values come masked from the router. */
		json_t *ms = json_object_get(st, "measures"), *m;
		size_t k;

		if (json_array_size(ms))
			s_help(&t, "kanal_measure_total", "counter",
			       "Accepted events a measure of the routing files counted, per label "
			       "value.");
		json_array_foreach(ms, k, m)
		{
			json_t *sr;
			size_t q;

			json_array_foreach(json_object_get(m, "series"), q, sr)
			{
				const char *name;
				json_t *v;

				s_put(&t, "kanal_measure_total{measure=\"");
				s_put_label(&t, json_string_value(json_object_get(m, "name")));
				s_put(&t, "\"");
				json_object_foreach(json_object_get(sr, "labels"), name, v)
				{
					s_put(&t, ",%s=\"", name);
					s_put_label(&t, json_string_value(v));
					s_put(&t, "\"");
				}
				s_put(&t, "} %.17g\n",
				      json_number_value(json_object_get(sr, "total")));
			}
		}
	}
	if (json_is_array(insts)) {
		bool first = true;

		/* An isolated instance counts its plugin host's restarts as the plugin metric
		 * host_restarts (broker/isolation.c); a thread instance has none. */
		json_array_foreach(insts, i, e)
		{
			json_t *v = json_object_get(json_object_get(e, "metrics"), "host_restarts");
			if (!json_is_number(v))
				continue;
			if (first) {
				s_help(&t, "kanal_instance_restarts_total", "counter",
				       "Restarts of an isolated plugin host after a crash or "
				       "hang.");
				first = false;
			}
			s_put(&t, "kanal_instance_restarts_total{instance=\"");
			s_put_label(&t, json_string_value(json_object_get(e, "name")));
			s_put(&t, "\"} %.17g\n", json_number_value(v));
		}
		s_plugin_metrics(&t, insts, false);
		s_plugin_metrics(&t, insts, true);
		s_upstream_metrics(&t, insts);
		s_help(&t, "kanal_instance_rate_limited_total", "counter",
		       "Emits refused busy by the instance's limits.rate.");
		json_array_foreach(insts, i, e)
		{
			s_put(&t, "kanal_instance_rate_limited_total{instance=\"");
			s_put_label(&t, json_string_value(json_object_get(e, "name")));
			s_put(&t, "\"} %lld\n",
			      (long long)json_integer_value(json_object_get(e, "rate_limited")));
		}
	}
	return t.p;
}

/* ---- routing the requests ------------------------------------------------------------- */

static bool s_authorised(admin_http_t *a, struct MHD_Connection *conn)
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	unsigned char got[SHA256_DIGEST_LENGTH];

	if (!a->has_token)
		return true;
	if (!h || strncasecmp(h, "Bearer ", 7))
		return false;
	/* Comparing digests of equal length in constant time: the token's length and
	 * content do not show in the timing. */
	SHA256((const unsigned char *)h + 7, strlen(h + 7), got);
	return CRYPTO_memcmp(got, a->token_hash, sizeof got) == 0;
}

/* Answers 405 naming the methods the path takes. */
static void s_not_allowed(reply_t *out, const char *allow, const char *method, const char *url)
{
	snprintf(out->allow, sizeof out->allow, "%s", allow);
	s_reply_error(out, 405, "%s takes %s, not %s", url, allow, method);
}

/* Passes a dead-letter command and answers 404 when the letter asked for is not in the
 * store (show: "no such dead letter"; replay: listed as missing; drop: none dropped). */
static void s_pass_dlq(admin_http_t *a, json_t *req, long long id, reply_t *out)
{
	char why[256];
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	bool show = cmd && !strcmp(cmd, "dlq.show"), replay = cmd && !strcmp(cmd, "dlq.replay");
	json_t *r = s_call(a, req, why, sizeof why);
	bool ok, missing;

	if (!r) {
		s_reply_error(out, 503, "%s", why);
		return;
	}
	ok = json_is_true(json_object_get(r, "ok"));
	if (show)
		missing = !ok &&
			  strstr(json_string_value(json_object_get(r, "error")) ?: "", "no such");
	else if (replay)
		missing = ok && json_array_size(json_object_get(r, "missing")) > 0;
	else
		missing = ok && json_integer_value(json_object_get(r, "dropped")) == 0;
	if (missing) {
		json_decref(r);
		s_reply_error(out, 404,
			      "dead letter %lld is not in the store (replayed or dropped "
			      "already?)",
			      id);
		return;
	}
	s_reply_json(out, ok ? 200 : 400, r);
}

/* ---- the endpoints ------------------------------------------------------------------- */

/* One request as an endpoint sees it: the path's {id} or {name} part is filled in. */
typedef struct request {
	admin_http_t *a;
	struct MHD_Connection *conn;
	const char *cmd; /* the endpoint's admin command, for those that pass one */
	long long id;
	char name[256];
} request_t;

typedef void (*endpoint_fn)(const request_t *rq, reply_t *out);

/* /healthz: kanald's router answers. */
static void s_get_healthz(const request_t *rq, reply_t *out)
{
	char why[256];
	json_t *st = s_call(rq->a, json_pack("{s:s}", "cmd", "status"), why, sizeof why);

	if (!st)
		s_reply_error(out, 503, "%s", why);
	else
		s_reply(out, 200, "text/plain", strdup("ok\n"));
	json_decref(st);
}

/* The first instance of endpoints.readyz_requires whose upstream is not up (it reported
 * down, or nothing yet), or NULL. Borrowed from st. */
static const char *s_upstream_not_up(json_t *st)
{
	json_t *name, *inst;
	size_t i, k;

	json_array_foreach(json_object_get(st, "readyz_requires"), i, name)
	{
		bool up = false;

		json_array_foreach(json_object_get(st, "instances"), k,
				   inst) if (json_equal(json_object_get(inst, "name"), name)) up =
			json_is_true(json_object_get(inst, "upstream"));
		if (!up)
			return json_string_value(name);
	}
	return NULL;
}

/* /readyz: the plugins have started, the journal accepts writes and the instances named in
 * endpoints.readyz_requires have reported their upstream up. */
static void s_get_readyz(const request_t *rq, reply_t *out)
{
	char why[256];
	json_t *st = s_call(rq->a, json_pack("{s:s}", "cmd", "status"), why, sizeof why);
	json_t *j = json_object_get(st, "journal");
	bool writable = !json_is_false(json_object_get(j, "writable"));
	bool started = !json_is_false(json_object_get(st, "started"));
	const char *down = st ? s_upstream_not_up(st) : NULL;

	if (!st)
		s_reply_error(out, 503, "%s", why);
	else if (!started || !writable)
		s_reply_error(out, 503, "%s",
			      !started ? "plugins are still starting"
				       : "the journal does not accept writes");
	else if (down)
		s_reply_error(out, 503, "instance '%s': its upstream is not up", down);
	else
		s_reply(out, 200, "text/plain", strdup("ready\n"));
	json_decref(st);
}

/* The page is the same for everyone and holds no data (see the top of the file). */
static void s_get_dashboard(const request_t *rq, reply_t *out)
{
	s_reply(out, 200, "text/html; charset=utf-8", strdup(dashboard_html));
}

static void s_get_metrics(const request_t *rq, reply_t *out)
{
	char why[256];
	json_t *st = s_call(rq->a, json_pack("{s:s}", "cmd", "status"), why, sizeof why);
	char *text;

	if (!st) {
		s_reply_error(out, 503, "%s", why);
		return;
	}
	text = s_metrics(st);
	json_decref(st);
	s_reply(out, 200, "text/plain; version=0.0.4; charset=utf-8", text);
}

/* The read-only views and reload: the endpoint's admin command, passed as it is. */
static void s_pass_cmd(const request_t *rq, reply_t *out)
{
	s_pass(rq->a, json_pack("{s:s}", "cmd", rq->cmd), out);
}

/* /api/v1/instances/{name}/pause, resume, restart. */
static void s_post_instance(const request_t *rq, reply_t *out)
{
	s_pass(rq->a, json_pack("{s:s, s:s}", "cmd", rq->cmd, "name", rq->name), out);
}

/* /api/v1/deadletters?route=&type=&since=&limit= */
static void s_get_deadletters(const request_t *rq, reply_t *out)
{
	static const char *const keys[] = { "route", "type", "since" };
	json_t *req = json_pack("{s:s}", "cmd", "dlq.list");
	const char *lim;

	for (size_t k = 0; k < 3; k++) {
		const char *v =
			MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, keys[k]);
		if (v)
			json_object_set_new(req, keys[k], json_string(v));
	}
	lim = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, "limit");
	if (lim) {
		char *end;
		long n = strtol(lim, &end, 10);
		if (end == lim || *end || n < 1 || n > 100000) {
			json_decref(req);
			s_reply_error(out, 400, "'limit' must be a whole number from 1 to 100000");
			return;
		}
		json_object_set_new(req, "limit", json_integer(n));
	} else {
		json_object_set_new(req, "limit", json_integer(100));
	}
	s_pass(rq->a, req, out);
}

static void s_get_deadletter(const request_t *rq, reply_t *out)
{
	s_pass_dlq(rq->a, json_pack("{s:s, s:I}", "cmd", "dlq.show", "id", (json_int_t)rq->id),
		   rq->id, out);
}

/* dlq.drop and dlq.replay take a list of ids: this one. */
static void s_dlq_one(const request_t *rq, reply_t *out)
{
	s_pass_dlq(rq->a, json_pack("{s:s, s:[I]}", "cmd", rq->cmd, "ids", (json_int_t)rq->id),
		   rq->id, out);
}

/* ---- routing the requests ------------------------------------------------------------ */

/* What the endpoint answers to: a method ("GET" takes HEAD too) and a path, either exact
 * or with one {id} (a positive number) or {name} (non-empty, may hold '/') in it. Public
 * endpoints need no token. Entries for the same path are next to each other, in the order
 * their methods are listed in a 405's Allow header. */
typedef struct endpoint {
	const char *method;
	const char *path;
	bool public;
	endpoint_fn fn;
	const char *cmd;
} endpoint_t;

static const endpoint_t s_endpoints[] = {
	{ "GET", "/healthz", true, s_get_healthz, NULL },
	{ "GET", "/readyz", true, s_get_readyz, NULL },
	{ "GET", "/", true, s_get_dashboard, NULL },
	{ "GET", "/dashboard", true, s_get_dashboard, NULL },
	{ "GET", "/metrics", false, s_get_metrics, NULL },
	{ "GET", "/api/v1/status", false, s_pass_cmd, "status" },
	{ "GET", "/api/v1/routes", false, s_pass_cmd, "routes" },
	{ "GET", "/api/v1/instances", false, s_pass_cmd, "instances" },
	{ "POST", "/api/v1/reload", false, s_pass_cmd, "reload" },
	{ "POST", "/api/v1/instances/{name}/pause", false, s_post_instance, "instance.pause" },
	{ "POST", "/api/v1/instances/{name}/resume", false, s_post_instance, "instance.resume" },
	{ "POST", "/api/v1/instances/{name}/restart", false, s_post_instance, "instance.restart" },
	{ "GET", "/api/v1/deadletters", false, s_get_deadletters, NULL },
	{ "GET", "/api/v1/deadletters/{id}", false, s_get_deadletter, NULL },
	{ "DELETE", "/api/v1/deadletters/{id}", false, s_dlq_one, "dlq.drop" },
	{ "POST", "/api/v1/deadletters/{id}/replay", false, s_dlq_one, "dlq.replay" },
};

/* The id at the start of p, with *rest after it, or -1. */
static long long s_id(const char *p, const char **rest)
{
	char *end;
	long long id = strtoll(p, &end, 10);
	if (end == p || id <= 0)
		return -1;
	*rest = end;
	return id;
}

/* True when url is the endpoint's path; fills in rq's id or name. */
static bool s_path_matches(const char *pattern, const char *url, request_t *rq)
{
	const char *open = strchr(pattern, '{'), *close, *rest;
	size_t prefix, suffix, len = strlen(url);

	if (!open)
		return !strcmp(pattern, url);
	close = strchr(open, '}') + 1;
	prefix = (size_t)(open - pattern);
	suffix = strlen(close);
	if (strncmp(url, pattern, prefix))
		return false;
	if (!strncmp(open, "{id}", 4)) {
		rq->id = s_id(url + prefix, &rest);
		return rq->id > 0 && !strcmp(rest, close);
	}
	/* {name}: everything between the prefix and the suffix. */
	if (len <= prefix + suffix || strcmp(url + len - suffix, close))
		return false;
	snprintf(rq->name, sizeof rq->name, "%.*s", (int)(len - suffix - prefix), url + prefix);
	return true;
}

static bool s_method_matches(const char *want, const char *method)
{
	return !strcmp(want, method) || (!strcmp(want, "GET") && !strcmp(method, "HEAD"));
}

/* True when a state-changing request (anything but GET and HEAD) may come from a page on
 * another site, which an operator's browser would send with its cookies and network
 * position: refused with 403 (docs/security.md, "Cross-site requests"). A browser marks
 * such a request with Sec-Fetch-Site or an Origin that is not this endpoint's own; and a
 * cross-site form or simple fetch cannot add a custom header, so without a token the
 * request must carry X-Kanal-Request (the dashboard sends it; a bearer token is such a
 * header already). */
static bool s_cross_site(admin_http_t *a, struct MHD_Connection *conn, const char *method,
			 char *why, size_t why_size)
{
	const char *site, *origin, *host;
	char own[300];

	if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
		return false;
	site = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
	if (site && strcmp(site, "same-origin") && strcmp(site, "none")) {
		snprintf(why, why_size, "a %s from another site (Sec-Fetch-Site: %.40s) is refused",
			 method, site);
		return true;
	}
	origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
	host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
	snprintf(own, sizeof own, "http://%s", host ? host : "");
	if (origin && (!host || strcmp(origin, own))) {
		snprintf(why, why_size, "a %s from another origin is refused (Origin is not %.60s)",
			 method, own);
		return true;
	}
	if (!a->has_token &&
	    !MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Kanal-Request")) {
		snprintf(why, why_size,
			 "a %s needs the header 'X-Kanal-Request: 1' (or "
			 "'Authorization: Bearer <token>' with admin_token_file)",
			 method);
		return true;
	}
	return false;
}

/* The client's address as text ("127.0.0.1", "::1"), or "". */
static void s_client_address(struct MHD_Connection *conn, char *out, size_t size)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	out[0] = '\0';
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out,
			  (socklen_t)size);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
			  (socklen_t)size);
}

/* Finds the endpoint for the request and runs it. The public endpoints answer anyone;
 * anything else, unknown paths included, needs the token first. A known path asked with
 * another method gets 405 with the methods it takes; an unknown path 404. */
static void s_handle(admin_http_t *a, struct MHD_Connection *conn, const char *method,
		     const char *url, reply_t *out)
{
	request_t rq = { .a = a, .conn = conn };
	const endpoint_t *path_match = NULL;
	char allow[64] = "", why[320];

	s_client_address(conn, a->client, sizeof a->client);
	if (s_cross_site(a, conn, method, why, sizeof why)) {
		s_reply_error(out, 403, "%s", why);
		return;
	}

	for (size_t i = 0; i < sizeof s_endpoints / sizeof *s_endpoints; i++) {
		const endpoint_t *e = &s_endpoints[i];
		size_t len = strlen(allow);

		if (!s_path_matches(e->path, url, &rq))
			continue;
		if (!e->public && !s_authorised(a, conn)) {
			s_reply_error(out, 401,
				      "this endpoint needs 'Authorization: Bearer <token>'");
			return;
		}
		if (s_method_matches(e->method, method)) {
			rq.cmd = e->cmd;
			e->fn(&rq, out);
			return;
		}
		path_match = e;
		snprintf(allow + len, sizeof allow - len, "%s%s", len ? ", " : "",
			 !strcmp(e->method, "GET") ? "GET, HEAD" : e->method);
	}
	if (path_match) {
		s_not_allowed(out, allow, method, url);
		return;
	}
	if (!s_authorised(a, conn)) {
		s_reply_error(out, 401, "this endpoint needs 'Authorization: Bearer <token>'");
		return;
	}
	s_reply_error(out, 404, "no %s %s here (see docs/operations.md)", method, url);
}

/* ---- libmicrohttpd -------------------------------------------------------------------- */

static enum MHD_Result s_on_request(void *cls, struct MHD_Connection *conn, const char *url,
				    const char *method, const char *version,
				    const char *upload_data, size_t *upload_size, void **con_cls)
{
	admin_http_t *a = cls;
	upload_t *up = *con_cls;
	reply_t out = { .status = 500 };
	struct MHD_Response *r;
	enum MHD_Result rc;

	if (!up) {
		if (!(up = calloc(1, sizeof *up)))
			return MHD_NO;
		*con_cls = up;
		return MHD_YES;
	}
	if (*upload_size) {
		if (up->len + *upload_size > MAX_BODY) {
			up->too_big = true;
		} else {
			char *b = realloc(up->body, up->len + *upload_size + 1);
			if (!b)
				return MHD_NO;
			memcpy(b + up->len, upload_data, *upload_size);
			up->body = b;
			up->len += *upload_size;
			up->body[up->len] = '\0';
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (up->too_big)
		s_reply_error(&out, 413, "request body above %u bytes", MAX_BODY);
	else
		s_handle(a, conn, method, url, &out);
	r = MHD_create_response_from_buffer(out.len, out.body ? out.body : (char *)"",
					    MHD_RESPMEM_MUST_COPY);
	free(out.body);
	if (!r)
		return MHD_NO;
	if (out.type)
		MHD_add_response_header(r, "Content-Type", out.type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	/* Never framed (clickjacking); the dashboard's script and style are inline. */
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	MHD_add_response_header(r, "Content-Security-Policy",
				"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src "
				"'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; "
				"form-action 'none'");
	if (out.allow[0])
		MHD_add_response_header(r, "Allow", out.allow);
	if (out.status == 401)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"kanal\"");
	rc = MHD_queue_response(conn, (unsigned)out.status, r);
	MHD_destroy_response(r);
	return rc;
}

static void s_on_done(void *cls, struct MHD_Connection *conn, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	upload_t *up = *con_cls;
	if (up) {
		free(up->body);
		free(up);
		*con_cls = NULL;
	}
}

/* Reads the token file (must be private: mode 0600 or 0400) into a SHA-256 digest. */
static int s_load_token(admin_http_t *a, const char *path, char *err, size_t err_size)
{
	char buf[1024];
	struct stat st;
	size_t n;
	FILE *f = fopen(path, "r");

	if (!f || fstat(fileno(f), &st) != 0) {
		snprintf(err, err_size, "%s: cannot read the admin token file: %s", path,
			 strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, err_size,
			 "%s: the admin token file may be read by others (mode %04o); "
			 "make it 0600",
			 path, (unsigned)(st.st_mode & 07777));
		fclose(f);
		return -1;
	}
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	if (n < 16) {
		snprintf(err, err_size, "%s: the admin token must be at least 16 characters", path);
		OPENSSL_cleanse(buf, sizeof buf);
		return -1;
	}
	SHA256((unsigned char *)buf, n, a->token_hash);
	OPENSSL_cleanse(buf, sizeof buf);
	a->has_token = true;
	return 0;
}

int admin_http_parse_listen(const char *text, struct sockaddr_in *addr)
{
	char host[128];
	const char *p = text, *colon;
	char *end;
	long port;

	if (!strncmp(p, "http://", 7))
		p += 7;
	colon = strrchr(p, ':');
	if (!colon || (size_t)(colon - p) >= sizeof host)
		return -1;
	memcpy(host, p, (size_t)(colon - p));
	host[colon - p] = '\0';
	port = strtol(colon + 1, &end, 10);
	if ((*end && strcmp(end, "/")) || port < 0 || port > 65535)
		return -1;
	memset(addr, 0, sizeof *addr);
	addr->sin_family = AF_INET;
	addr->sin_port = htons((uint16_t)port);
	if (!strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	return inet_pton(AF_INET, host, &addr->sin_addr) == 1 ? 0 : -1;
}

admin_http_t *admin_http_new(const char *listen, const char *token_file, void *zctx, char *err,
			     size_t err_size)
{
	admin_http_t *a = calloc(1, sizeof *a);
	const union MHD_DaemonInfo *info;
	struct sockaddr_in addr;
	char host[64];

	if (!a) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	a->zctx = zctx;
	if (admin_http_parse_listen(listen, &addr) != 0) {
		snprintf(err, err_size, "admin_http: '%s' is not http://IPV4:PORT", listen);
		free(a);
		return NULL;
	}
	/* conf.c refuses this before anything starts; kept here so no caller can bind the
	 * admin API to the network without a token. */
	if ((!token_file || !*token_file) && (ntohl(addr.sin_addr.s_addr) >> 24) != 127) {
		snprintf(err, err_size,
			 "admin_http: %s would take admin requests from the network without a "
			 "token: set endpoints.admin_token_file",
			 listen);
		free(a);
		return NULL;
	}
	if (token_file && *token_file && s_load_token(a, token_file, err, err_size) != 0) {
		free(a);
		return NULL;
	}
	a->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY, 0,
				     NULL, NULL, s_on_request, a, MHD_OPTION_SOCK_ADDR, &addr,
				     MHD_OPTION_NOTIFY_COMPLETED, s_on_done, NULL,
				     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
				     MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
	if (!a->daemon) {
		snprintf(err, err_size, "admin_http: cannot listen on %s: %s", listen,
			 strerror(errno));
		free(a);
		return NULL;
	}
	info = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_BIND_PORT);
	inet_ntop(AF_INET, &addr.sin_addr, host, sizeof host);
	snprintf(a->url, sizeof a->url, "http://%s:%u", host,
		 info ? (unsigned)info->port : (unsigned)ntohs(addr.sin_port));
	return a;
}

void admin_http_set_admin_endpoint(admin_http_t *a, const char *endpoint)
{
	if (a && endpoint)
		snprintf(a->admin_endpoint, sizeof a->admin_endpoint, "%s", endpoint);
}

const char *admin_http_url(const admin_http_t *a)
{
	return a ? a->url : "";
}

void admin_http_destroy(admin_http_t **a_p)
{
	admin_http_t *a = a_p ? *a_p : NULL;

	if (!a)
		return;
	if (a->daemon)
		MHD_stop_daemon(a->daemon);
	OPENSSL_cleanse(a->token_hash, sizeof a->token_hash);
	free(a);
	*a_p = NULL;
}
