/*
 * bench/kanal.c — kanal's own figures: the real kanald, started on a generated config in a
 * scratch folder with ephemeral endpoints on 127.0.0.1, fed by the bench_source plugin (or,
 * for the gateway runs, by a separate client process over TCP loopback) and drained by
 * bench_sink instances, which measure the delivered rate, the latency and the CPU (see
 * bench/plugins/bench_sink.c). kanald is stopped with SIGTERM after the sinks have written
 * their summaries, and killed if it does not stop in time.
 *
 * Memory mode and durable mode differ only in the `journal:` block each run adds to
 * kanald.yaml (s_memory_yaml / s_durable_yaml): the workloads and the measurement are the
 * same code, so the two modes are compared like for like. Cluster mode (docs/cluster.md)
 * too: its run starts a nats-server of its own (peer_nats_start, shared with the NATS peer
 * row) and names it in the journal block.
 */
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "bench.h"

#define MAX_SINKS 3
#define GW_WINDOW_EVENTS 256 /* events a gateway client keeps in flight */
#define PENDING_EVENTS 1000000

/* The gateway client's event: id, benchseq, benchns, data.n, data.pad. */
#define GW_EVENT                                                                                   \
	"{\"specversion\":\"1.0\",\"id\":\"gw-%ld\",\"source\":\"gwload\",\"type\":\"bench.ev\","  \
	"\"time\":\"2026-01-01T00:00:00.000Z\",\"benchseq\":\"%ld\",\"benchns\":\"%" PRId64 "\","  \
	"\"data\":{\"kind\":\"match\",\"n\":%ld,\"pad\":\"%s\"}}"

/* journal.mode memory: nothing on disk, the in-memory delivery of the first release. */
static const char s_memory_yaml[] = "journal:\n  mode: memory\n";
/* journal.mode durable with the default sync level (process: synchronous=NORMAL), the one
 * the raw SQLite baseline uses too. */
static const char s_durable_yaml[] = "journal:\n  mode: durable\n  sync: process\n";
/* The same, encrypted at rest with SQLCipher: a raw 256-bit key (no key derivation), in
 * journal.key beside kanald.yaml (written 0600 by s_run). */
static const char s_sqlcipher_yaml[] =
	"journal:\n  mode: durable\n  sync: process\n  key_file: journal.key\n";
static const char s_sqlcipher_key[] =
	"5e2a7c1d9f3b4e6a8c0d2f4b6a8e0c2d4f6b8a0c2e4d6f8a0b2c4e6d8f0a2c4e\n";

/* ---- one kanald run --------------------------------------------------------------------- */

typedef struct krun {
	char *dir;
	char conf[1200], log[1200];
	char summary[MAX_SINKS][1200];
	int n_sinks;
	pid_t pid;
	char gateway[256];
} krun_t;

/* Makes the run's scratch folder and names the files in it. Returns 0 or -1. */
static int s_open(const bench_params_t *p, krun_t *k, const char *tag)
{
	memset(k, 0, sizeof *k);
	k->pid = -1;
	k->dir = bench_mkdir(p, tag);
	if (!k->dir)
		return -1;
	snprintf(k->conf, sizeof k->conf, "%s/kanald.yaml", k->dir);
	snprintf(k->log, sizeof k->log, "%s/kanald.log", k->dir);
	for (int i = 0; i < MAX_SINKS; i++)
		snprintf(k->summary[i], sizeof k->summary[i], "%s/sink%d.json", k->dir, i);
	return 0;
}

/* Writes kanald.yaml (the instances list and extra top-level YAML) and
 * routes/routes.yaml. Returns 0 or -1. */
static int s_write_conf(const bench_params_t *p, const krun_t *k, const char *instances,
			const char *routes, const char *extra)
{
	char *text = NULL, path[1300];
	int rc;

	if (asprintf(&text,
		     "log_level: warn\n"
		     "plugin_dir: %s/plugins\n"
		     "state_dir: %s/state\n"
		     "run_dir: %s/run\n"
		     "routes: %s/routes\n"
		     "endpoints:\n"
		     "  gateway: tcp://127.0.0.1:0\n"
		     "  stream: tcp://127.0.0.1:0\n"
		     "  admin: tcp://127.0.0.1:0\n"
		     "%s"
		     "instances:\n%s",
		     p->build, k->dir, k->dir, k->dir, extra ? extra : "", instances) < 0)
		return -1;
	rc = bench_write_file(k->conf, text);
	free(text);
	snprintf(path, sizeof path, "%s/routes", k->dir);
	if (rc == 0 && mkdir(path, 0700) != 0)
		rc = -1;
	snprintf(path, sizeof path, "%s/routes/routes.yaml", k->dir);
	if (rc == 0)
		rc = bench_write_file(path, routes);
	return rc;
}

/* Starts kanald and waits for its endpoints file. Returns 0 or -1 (r->na says why). */
static int s_launch(const bench_params_t *p, krun_t *k, bench_result_t *r)
{
	char kanald[1100], endpoints[1300];
	char *argv[] = { kanald, "-c", k->conf, NULL };

	snprintf(kanald, sizeof kanald, "%s/bin/kanald", p->build);
	snprintf(endpoints, sizeof endpoints, "%s/run/endpoints", k->dir);
	k->pid = bench_spawn(argv, k->log);
	if (k->pid < 0)
		return bench_na(r, "cannot start %s", kanald);
	for (int waited = 0; waited < 20000; waited += 10) {
		char *text = bench_read_file(endpoints);
		if (text && strstr(text, "pid=")) {
			char *g = strstr(text, "gateway=");
			if (g)
				sscanf(g + 8, "%255[^\n]", k->gateway);
			free(text);
			return 0;
		}
		free(text);
		if (!bench_alive(k->pid)) {
			k->pid = -1;
			return bench_na(r, "kanald exited at start; its log: %s", k->log);
		}
		bench_sleep_ms(10);
	}
	return bench_na(r, "kanald did not write its endpoints within 20 s");
}

/* The last line kanald logged (for a failure's reason), in buf. */
static const char *s_log_tail(const krun_t *k, char *buf, size_t size)
{
	char *text = bench_read_file(k->log);
	char *end, *start;

	snprintf(buf, size, "(empty log)");
	if (!text)
		return buf;
	end = text + strlen(text);
	while (end > text && (end[-1] == '\n' || end[-1] == ' '))
		*--end = '\0';
	start = strrchr(text, '\n');
	if (end > text)
		snprintf(buf, size, "%s", start ? start + 1 : text);
	free(text);
	return buf;
}

/* Stops kanald if it still runs and removes the scratch folder (kept when KANAL_BENCH_KEEP
 * is set, or when the run failed and its log is worth reading). */
static void s_close(krun_t *k, bool failed)
{
	if (k->pid > 0)
		bench_stop(k->pid, SIGTERM, 10000);
	k->pid = -1;
	if (k->dir && failed)
		bench_keep_scratch = true; /* its kanald.log says why */
	else if (k->dir && !getenv("KANAL_BENCH_KEEP"))
		bench_rmdir(k->dir);
	free(k->dir);
	k->dir = NULL;
}

typedef struct summary {
	bool complete;
	long received, expect, out_of_order, blob_errors;
	double rate, cpu_us, busiest, p50_us, p99_us, p999_us;
} summary_t;

static int s_read_summary(const char *path, summary_t *s)
{
	json_t *j = json_load_file(path, 0, NULL);

	if (!j)
		return -1;
	s->complete = json_is_true(json_object_get(j, "complete"));
	s->received = (long)json_integer_value(json_object_get(j, "received"));
	s->expect = (long)json_integer_value(json_object_get(j, "expect"));
	s->out_of_order = (long)json_integer_value(json_object_get(j, "out_of_order"));
	s->blob_errors = (long)json_integer_value(json_object_get(j, "blob_errors"));
	s->rate = json_number_value(json_object_get(j, "rate"));
	s->cpu_us = json_number_value(json_object_get(j, "cpu_us_per_event"));
	s->busiest = json_number_value(json_object_get(j, "busiest_thread"));
	s->p50_us = json_number_value(json_object_get(j, "p50_ns")) / 1e3;
	s->p99_us = json_number_value(json_object_get(j, "p99_ns")) / 1e3;
	s->p999_us = json_number_value(json_object_get(j, "p999_ns")) / 1e3;
	json_decref(j);
	return 0;
}

/* Waits for every sink's summary (or for kanald to die, or the deadline), stops the helper
 * and kanald, and folds the summaries into r: the rate of the slowest sink, the largest
 * latencies. Returns 0 or -1 (r->na says why). */
static int s_collect(krun_t *k, pid_t helper, int timeout_ms, bench_result_t *r)
{
	summary_t s[MAX_SINKS];
	int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
	int done = 0, status;
	char tail[160];

	while (bench_now_ns() < deadline) {
		done = 0;
		for (int i = 0; i < k->n_sinks; i++)
			done += access(k->summary[i], F_OK) == 0;
		if (done == k->n_sinks || !bench_alive(k->pid))
			break;
		if (helper > 0 && !bench_alive(helper)) {
			/* The client is done or failed; give the sinks a moment, then judge. */
			helper = -1;
			deadline = bench_now_ns() + 5000000000LL;
		}
		bench_sleep_ms(10);
	}
	r->rss_mib = bench_rss_mib(k->pid, true);
	if (helper > 0)
		bench_stop(helper, SIGTERM, 3000);
	/* An incomplete sink writes its summary at stop. */
	status = bench_stop(k->pid, SIGTERM, 10000);
	k->pid = -1;
	for (int i = 0; i < k->n_sinks; i++) {
		if (s_read_summary(k->summary[i], &s[i]) < 0)
			return bench_na(r,
					"kanald ended with status %d before sink %d was done: %s",
					status, i, s_log_tail(k, tail, sizeof tail));
		/* A run that did not finish in time still has an honest rate when enough
		 * arrived after the warm-up: the sink measured it up to the stop. */
		if (!s[i].complete && s[i].received < 2 * (s[i].expect / 10))
			return bench_na(r, "timed out: sink %d received %ld of %ld events; see %s",
					i, s[i].received, s[i].expect, k->log);
		if (s[i].blob_errors > 0)
			return bench_na(r, "sink %d could not read %ld blobs; see %s", i,
					s[i].blob_errors, k->log);
		if (!s[i].complete)
			snprintf(r->note, sizeof r->note,
				 "time limit reached: measured on the %ld of %ld events delivered "
				 "by then",
				 s[i].received, s[i].expect);
	}
	r->rate = s[0].rate;
	r->cpu_us = s[0].cpu_us;
	r->busiest = s[0].busiest;
	r->p50_us = s[0].p50_us;
	r->p99_us = s[0].p99_us;
	r->p999_us = s[0].p999_us;
	for (int i = 1; i < k->n_sinks; i++) {
		if (s[i].rate < r->rate)
			r->rate = s[i].rate;
		if (s[i].p99_us > r->p99_us)
			r->p99_us = s[i].p99_us;
		if (s[i].p999_us > r->p999_us)
			r->p999_us = s[i].p999_us;
	}
	if (s[0].out_of_order && !r->note[0])
		snprintf(r->note, sizeof r->note, "%ld events arrived out of order",
			 s[0].out_of_order);
	return 0;
}

/* ---- workloads ---------------------------------------------------------------------------- */

typedef struct workload {
	const char *tag;
	const char *type; /* of the events */
	long count;       /* events */
	int size;
	long rate; /* 0: as fast as the bus takes them */
	int n_sinks;
	const char *routes;
	int gw_batch;   /* > 0: the gateway client sends the events, this many per request */
	bool durable;   /* journal on */
	bool encrypted; /* the journal encrypted with SQLCipher (durable too) */
	bool stall;     /* the pending-memory run: a stopped sink, no summary awaited */
	bool cluster;   /* journal.mode cluster on a nats-server of its own (R1) */
	long blob_size; /* > 0: every event carries a blob of this many bytes */
} workload_t;

/* The instances YAML: one bench_source (none for a gateway run) and the sinks. */
static char *s_instances(const bench_params_t *p, const krun_t *k, const workload_t *w)
{
	long warmup = w->count / 10 > 0 ? w->count / 10 : 1;
	char *text = NULL, *next;

	if (w->gw_batch > 0)
		text = strdup("");
	else if (asprintf(&text,
			  "  - name: src\n"
			  "    plugin: %s/bench/plugins/bench_source.so\n"
			  "    options: { type: %s, count: %ld, size: %d, rate: %ld, "
			  "blob_size: %ld, burst: %d, done_file: %s/source.done }\n",
			  p->build, w->type, w->count, w->size, w->rate, w->blob_size,
			  w->blob_size > 0 ? 16 : 2000, k->dir) < 0)
		text = NULL;
	for (int i = 0; text && i < w->n_sinks; i++) {
		if (asprintf(&next,
			     "%s  - name: dst%d\n"
			     "    plugin: %s/bench/plugins/bench_sink.so\n"
			     "    options: { expect: %ld, warmup: %ld, summary: %s, stall: %s, "
			     "blobs: %s }\n",
			     text, i, p->build, w->count, warmup, k->summary[i],
			     w->stall ? "true" : "false", w->blob_size > 0 ? "true" : "false") < 0)
			next = NULL;
		free(text);
		text = next;
	}
	return text;
}

/* The rest of kanald.yaml: the journal mode, and for the pending-memory run room for a
 * million parked events and a shutdown that does not wait for them. The destination queue
 * keeps its default size: what does not fit is parked in the journal, which is what the
 * figure is about. */
static const char *s_extra(const workload_t *w)
{
	if (w->stall)
		return "journal:\n  mode: durable\n  sync: process\n"
		       "limits:\n  max_parked_events: 2000000\n  shutdown_deadline: 0s\n";
	if (w->encrypted)
		return s_sqlcipher_yaml;
	return w->durable ? s_durable_yaml : s_memory_yaml;
}

/* Events per throughput run: fewer for 4 KiB events and in durable mode, which take
 * longer each, so that every run lasts about as long. */
static long s_events(const bench_params_t *p, int size, bool durable)
{
	long n = size >= 4096 ? p->n_kanal / 2 : p->n_kanal;

	return durable ? n / 3 : n;
}

/* Starts the separate gateway client process. */
static pid_t s_start_gwload(const bench_params_t *p, const krun_t *k, const workload_t *w)
{
	char count[32], size[32], batch[32], log[1300];
	char *argv[] = { (char *)p->self, "gwload", (char *)k->gateway, count, size, batch, NULL };

	snprintf(count, sizeof count, "%ld", w->count);
	snprintf(size, sizeof size, "%d", w->size);
	snprintf(batch, sizeof batch, "%d", w->gw_batch);
	snprintf(log, sizeof log, "%s/gwload.log", k->dir);
	return bench_spawn(argv, log);
}

/* The pending-memory run, once kanald is up: waits until the source has emitted and flushed
 * every event (all are then pending behind the stalled sink), and reads kanald's resident
 * size and the journal's size on disk. */
static int s_measure_pending(krun_t *k, const workload_t *w, bench_result_t *r)
{
	char done[1300], journal[1300];
	int64_t t0 = bench_now_ns();
	struct stat st;
	double secs;

	snprintf(done, sizeof done, "%s/source.done", k->dir);
	snprintf(journal, sizeof journal, "%s/state/journal.db", k->dir);
	while (access(done, F_OK) != 0) {
		if (!bench_alive(k->pid)) {
			k->pid = -1;
			return bench_na(r, "kanald died while filling; see %s", k->log);
		}
		if (bench_now_ns() - t0 > 600 * 1000000000LL)
			return bench_na(r, "the source did not get %ld events in within 10 minutes",
					w->count);
		bench_sleep_ms(50);
	}
	secs = (double)(bench_now_ns() - t0) / 1e9;
	r->rss_mib = bench_rss_mib(k->pid, false);
	snprintf(
		r->note, sizeof r->note,
		"%ld events pending after %.0f s (%.0f/s in); peak %.0f MiB; journal file %.0f MiB",
		w->count, secs, (double)w->count / secs, bench_rss_mib(k->pid, true),
		stat(journal, &st) == 0 ? (double)st.st_size / 1048576.0 : -1.0);
	/* Nothing to drain: kill rather than wait for the stalled sink's thread. */
	bench_stop(k->pid, SIGKILL, 10000);
	k->pid = -1;
	return 0;
}

/* Adds the gateway client's own account (how many events were answered "busy") to the
 * row's note. */
static void s_note_gwload(const krun_t *k, bench_result_t *r)
{
	char path[1300], *text, *line, *nl;
	size_t len = strlen(r->note);

	snprintf(path, sizeof path, "%s/gwload.log", k->dir);
	text = bench_read_file(path);
	line = text ? strstr(text, "gwload: ") : NULL;
	if (line) {
		if ((nl = strchr(line, '\n')))
			*nl = '\0';
		snprintf(r->note + len, sizeof r->note - len, "%s%s", len ? "; " : "", line + 8);
	}
	free(text);
}

/* Runs one workload through kanald and measures it. */
static int s_run(const bench_params_t *p, const workload_t *w, bench_result_t *r)
{
	krun_t k;
	char *instances = NULL;
	int timeout_ms = w->rate > 0 ? (int)(w->count * 1000 / w->rate) + 30000 : 120000;
	pid_t helper = -1, nats = -1;
	char cluster_yaml[256];
	int rc = -1;

	if (s_open(p, &k, w->tag) < 0)
		return bench_na(r, "cannot make a scratch folder under %s", p->tmp);
	k.n_sinks = w->n_sinks;
	if (w->cluster) {
		/* Cluster mode: a nats-server of the run's own; the journal block names it. */
		int port = bench_free_port();
		if (access("/usr/sbin/nats-server", X_OK) != 0) {
			bench_na(r, "nats-server is not installed (Debian package nats-server)");
			goto out;
		}
		if (port < 0 || (nats = peer_nats_start(k.dir, port)) < 0 ||
		    !bench_wait_port(port, 10000)) {
			bench_na(r, "cannot start nats-server; see %s/nats.log", k.dir);
			goto out;
		}
		snprintf(cluster_yaml, sizeof cluster_yaml,
			 "journal:\n  mode: cluster\n  nats:\n"
			 "    servers: [nats://127.0.0.1:%d]\n    replicas: 1\n",
			 port);
	}
	instances = s_instances(p, &k, w);
	if (!instances ||
	    s_write_conf(p, &k, instances, w->routes, w->cluster ? cluster_yaml : s_extra(w)) < 0) {
		bench_na(r, "cannot write the config in %s", k.dir);
		goto out;
	}
	if (w->encrypted) {
		char key[1300];
		FILE *f;

		snprintf(key, sizeof key, "%s/journal.key", k.dir);
		if (!(f = fopen(key, "w")) || fputs(s_sqlcipher_key, f) < 0 || fclose(f) != 0 ||
		    chmod(key, 0600) != 0) {
			bench_na(r, "cannot write the key file %s", key);
			goto out;
		}
	}
	if (s_launch(p, &k, r) < 0)
		goto out;
	if (w->stall) {
		rc = s_measure_pending(&k, w, r);
		goto out;
	}
	if (w->gw_batch > 0) {
		helper = s_start_gwload(p, &k, w);
		if (helper < 0) {
			bench_na(r, "cannot start the gateway client");
			goto out;
		}
	}
	rc = s_collect(&k, helper, timeout_ms, r);
	if (w->gw_batch > 0)
		s_note_gwload(&k, r);
out:
	free(instances);
	s_close(&k, rc < 0);
	if (nats > 0)
		bench_stop(nats, SIGTERM, 5000);
	return rc;
}

static const char s_one_route[] = "routes:\n"
				  "  - name: bench\n"
				  "    match: { type: bench.ev }\n"
				  "    to: dst0\n";

static const char s_where_route[] = "routes:\n"
				    "  - name: bench\n"
				    "    match:\n"
				    "      type: bench.ev\n"
				    "      where: data.kind == \"match\"\n"
				    "    to: dst0\n";

/* Five fields from the bench source's {"kind", "n", "pad"}: copies, arithmetic, a string
 * built and a length — what a vendor-to-catalogue mapping does. */
static const char s_transform_route[] =
	"routes:\n"
	"  - name: bench\n"
	"    match: { type: bench.ev }\n"
	"    transform: '{kind: .kind, n: .n, next: (.n + 1), label: (\"ev-\" + .kind), "
	"padded: (.pad | length)}'\n"
	"    to: dst0\n";

static const char s_fanout_route[] = "routes:\n"
				     "  - name: bench\n"
				     "    match: { type: bench.ev }\n"
				     "    to: [dst0, dst1, dst2]\n";

int kanal_throughput(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r)
{
	workload_t w = { .tag = s->id,
			 .type = "bench.ev",
			 .count = s_events(p, s->size, s->durable),
			 .size = s->size,
			 .n_sinks = 1,
			 .routes = s_one_route,
			 .durable = s->durable };

	switch (s->variant) {
	case KANAL_RUN_ONE_ROUTE:
		break;
	case KANAL_RUN_WHERE:
		w.routes = s_where_route;
		break;
	case KANAL_RUN_TRANSFORM:
		w.routes = s_transform_route;
		break;
	case KANAL_RUN_FANOUT3:
		w.n_sinks = 3;
		w.routes = s_fanout_route;
		break;
	case KANAL_RUN_GATEWAY:
		w.count = p->n_gateway;
		w.gw_batch = 1;
		break;
	case KANAL_RUN_GATEWAY_BATCH:
		w.count = p->n_gateway;
		w.gw_batch = 100;
		break;
	case KANAL_RUN_SQLCIPHER:
		w.encrypted = true;
		break;
	case KANAL_RUN_CLUSTER:
		w.cluster = true;
		w.count = s_events(p, s->size, true);
		break;
	case KANAL_RUN_BLOB:
		w.count = p->n_blob;
		w.blob_size = BENCH_BLOB_SIZE;
		break;
	default:
		return bench_na(r, "unknown kanal workload %d", s->variant);
	}
	return s_run(p, &w, r);
}

/* `variant` routes r0 … r<n-1>, each on its own type bench.r<i>.ev, all to dst0; the events
 * are of the last route's type, so they match exactly one route, the last one written. */
int kanal_routes(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r)
{
	int n = s->variant;
	size_t cap = (size_t)n * 96 + 64, len = 0;
	char *routes = malloc(cap), type[64];
	workload_t w = { .tag = s->id,
			 .count = s_events(p, s->size, s->durable),
			 .size = s->size,
			 .n_sinks = 1,
			 .type = type,
			 .durable = s->durable };
	int rc;

	if (!routes)
		return bench_na(r, "out of memory");
	len += (size_t)snprintf(routes + len, cap - len, "routes:\n");
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(routes + len, cap - len,
					"  - name: r%d\n    match: { type: bench.r%d.ev }\n"
					"    to: dst0\n",
					i, i);
	snprintf(type, sizeof type, "bench.r%d.ev", n - 1);
	w.routes = routes;
	rc = s_run(p, &w, r);
	free(routes);
	return rc;
}

int kanal_latency(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r)
{
	workload_t w = { .tag = s->id,
			 .type = "bench.ev",
			 .size = s->size,
			 .rate = p->lat_rate,
			 .n_sinks = 1,
			 .routes = s_one_route,
			 .durable = s->durable };
	int rc;

	w.count = (long)(p->lat_rate * p->lat_seconds);
	rc = s_run(p, &w, r);
	r->rate = -1; /* the offered rate; not a throughput figure */
	return rc;
}

/* Resident size of kanald with 1,000,000 events pending behind a stopped sink, durable: the
 * sink's queue holds queue_max_events of them, the rest are parked in the journal. */
int kanal_pending_rss(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r)
{
	workload_t w = { .tag = s->id,
			 .type = "bench.ev",
			 .count = PENDING_EVENTS,
			 .size = s->size,
			 .n_sinks = 1,
			 .routes = s_one_route,
			 .durable = true,
			 .stall = true };

	return s_run(p, &w, r);
}

/* ---- the gateway client ------------------------------------------------------------------- */

/* `kbench gwload ENDPOINT COUNT SIZE BATCH [RATE [FIRST]]`: sends COUNT events of about SIZE bytes to the
 * gateway at ENDPOINT, BATCH events per request (1: a single event, else a JSON array), and
 * keeps up to GW_WINDOW_EVENTS events in flight on one DEALER socket. Each event is stamped
 * (benchns) when its request is built. An event answered "busy" is sent again after the
 * retry_after_ms the gateway asks for, as a well-behaved client does; any other answer but
 * "accepted" ends the run with exit status 1. GWLOAD_TRACE=1 logs each busy answer. With
 * RATE > 0 it sends at that steady rate (released once per millisecond, like bench_source)
 * instead of as fast as the window allows; FIRST is the first sequence number (default 1), so
 * that several clients send distinct events. */

typedef struct gwload {
	void *zctx, *sock;
	long count, next, last, accepted, busy, requests;
	long rate; /* events/s, 0: flat out */
	int batch, window, in_flight;
	char *pad;
	char *req;
	size_t req_cap;
	long *resend, n_resend; /* seqs answered busy, to send again */
	long *sent;             /* the seqs of each request in flight, `batch` per slot, FIFO */
	long head, tail, slots;
	int64_t not_before, t_start;
} gwload_t;

/* True when the steady rate lets the next event go now (always when flat out). */
static bool s_gw_due(const gwload_t *g)
{
	long sent = g->next - (g->last - g->count + 1);
	int64_t elapsed_ms = (bench_now_ns() - g->t_start) / 1000000;

	return g->rate <= 0 || g->n_resend > 0 || sent < g->rate * (elapsed_ms + 1) / 1000;
}

/* Sends requests while the window has room and there is something to send. Returns 0 or
 * -1 when a send fails. */
static int s_gw_fill(gwload_t *g)
{
	while (g->in_flight < g->window && (g->n_resend > 0 || g->next <= g->last) &&
	       bench_now_ns() >= g->not_before && s_gw_due(g)) {
		long *seqs = &g->sent[(g->tail % g->slots) * g->batch];
		size_t len = 0;
		int n = 0;

		if (g->batch > 1)
			g->req[len++] = '[';
		while (n < g->batch && (g->n_resend > 0 || g->next <= g->last)) {
			long seq = g->n_resend > 0 ? g->resend[--g->n_resend] : g->next++;

			len += (size_t)snprintf(g->req + len, g->req_cap - len, "%s", n ? "," : "");
			len += (size_t)snprintf(g->req + len, g->req_cap - len, GW_EVENT, seq, seq,
						bench_now_ns(), seq, g->pad);
			seqs[n++] = seq;
		}
		if (g->batch > 1)
			g->req[len++] = ']';
		if (n < g->batch)
			seqs[n] = 0; /* a short last batch */
		if (zmq_send(g->sock, g->req, len, 0) < 0) {
			fprintf(stderr, "gwload: send failed: %s\n", zmq_strerror(zmq_errno()));
			return -1;
		}
		g->tail++;
		g->in_flight++;
		g->requests++;
	}
	return 0;
}

/* Reads the statuses of one reply — one per event, in the order they were sent — against
 * the oldest request in flight. Returns 0, or -1 when an event was refused for good. */
static int s_gw_account(gwload_t *g, const char *text)
{
	const long *seqs = &g->sent[(g->head % g->slots) * g->batch];
	const char *at = strstr(text, "\"status\":\"");

	for (int i = 0; at && i < g->batch && seqs[i]; at = strstr(at + 10, "\"status\":\""), i++) {
		const char *st = at + 10;

		if (!strncmp(st, "accepted\"", 9)) {
			g->accepted++;
		} else if (!strncmp(st, "busy\"", 5)) {
			const char *ra = strstr(st, "\"retry_after_ms\":");
			long ms = ra ? atol(ra + 17) : 10;

			g->resend[g->n_resend++] = seqs[i];
			g->busy++;
			g->not_before = bench_now_ns() + ms * 1000000;
			if (getenv("GWLOAD_TRACE"))
				fprintf(stderr, "busy at %.3f s, %ld accepted\n",
					(double)(bench_now_ns() - g->t_start) / 1e9, g->accepted);
		} else {
			fprintf(stderr, "gwload: event gw-%ld not accepted: %.300s\n", seqs[i],
				text);
			return -1;
		}
	}
	g->head++;
	g->in_flight--;
	return 0;
}

/* Waits up to 10 s for one reply and accounts for it. Returns 0 or -1. */
static int s_gw_read(gwload_t *g)
{
	zmq_pollitem_t item = { g->sock, 0, ZMQ_POLLIN, 0 };
	zmq_msg_t m;
	char *text;
	size_t len;
	int rc;

	if (zmq_poll(&item, 1, 10000) <= 0) {
		fprintf(stderr, "gwload: no reply within 10 s (%ld of %ld accepted)\n", g->accepted,
			g->count);
		return -1;
	}
	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, g->sock, 0) < 0) {
		zmq_msg_close(&m);
		return -1;
	}
	len = zmq_msg_size(&m);
	text = malloc(len + 1);
	if (text) {
		memcpy(text, zmq_msg_data(&m), len);
		text[len] = '\0';
	}
	zmq_msg_close(&m);
	rc = text ? s_gw_account(g, text) : -1;
	free(text);
	return rc;
}

static void s_gw_free(gwload_t *g)
{
	if (g->sock)
		zmq_close(g->sock);
	if (g->zctx)
		zmq_ctx_term(g->zctx);
	free(g->pad);
	free(g->req);
	free(g->resend);
	free(g->sent);
}

int kanal_gwload_main(int argc, char **argv)
{
	gwload_t g = { .next = 1 };
	int size, pad_len, exit_code = 1;

	if (argc < 6 || argc > 8) {
		fprintf(stderr, "usage: kbench gwload ENDPOINT COUNT SIZE BATCH [RATE [FIRST]]\n");
		return 2;
	}
	g.count = atol(argv[3]);
	size = atoi(argv[4]);
	g.batch = atoi(argv[5]);
	g.rate = argc > 6 ? atol(argv[6]) : 0;
	g.next = argc > 7 ? atol(argv[7]) : 1;
	g.last = g.next + g.count - 1;
	if (g.count <= 0 || size <= 0 || g.batch <= 0) {
		fprintf(stderr, "gwload: COUNT, SIZE and BATCH must be positive\n");
		return 2;
	}
	g.window = GW_WINDOW_EVENTS / g.batch > 1 ? GW_WINDOW_EVENTS / g.batch : 2;
	g.slots = (long)g.window + 1;
	g.t_start = bench_now_ns();
	/* Pad so that the largest event (the last seq, a typical stamp) is `size` bytes. */
	pad_len = size - snprintf(NULL, 0, GW_EVENT, g.last, g.last, g.t_start, g.last, "");
	if (pad_len < 1)
		pad_len = 1;
	g.pad = malloc((size_t)pad_len + 1);
	g.req_cap = (size_t)g.batch * ((size_t)size + 512) + 16;
	g.req = malloc(g.req_cap);
	g.resend = malloc((size_t)g.count * sizeof *g.resend);
	g.sent = malloc((size_t)g.slots * (size_t)g.batch * sizeof *g.sent);
	if (!g.pad || !g.req || !g.resend || !g.sent) {
		fprintf(stderr, "gwload: out of memory\n");
		goto out;
	}
	memset(g.pad, 'x', (size_t)pad_len);
	g.pad[pad_len] = '\0';
	g.zctx = zmq_ctx_new();
	g.sock = g.zctx ? zmq_socket(g.zctx, ZMQ_DEALER) : NULL;
	if (!g.sock || zmq_connect(g.sock, argv[2]) < 0) {
		fprintf(stderr, "gwload: cannot connect to %s: %s\n", argv[2],
			zmq_strerror(zmq_errno()));
		goto out;
	}
	while (g.accepted < g.count) {
		if (s_gw_fill(&g) < 0)
			goto out;
		if (g.in_flight == 0 || (g.rate > 0 && g.in_flight < g.window / 2)) {
			/* Waiting out a busy answer's retry_after_ms or the next millisecond's
			 * events; at a steady rate, replies are read when they have come. */
			if (g.in_flight > 0) {
				zmq_pollitem_t item = { g.sock, 0, ZMQ_POLLIN, 0 };
				if (zmq_poll(&item, 1, 1) > 0 && s_gw_read(&g) < 0)
					goto out;
			} else {
				bench_sleep_ms(1);
			}
			continue;
		}
		if (s_gw_read(&g) < 0)
			goto out;
	}
	exit_code = 0;
	printf("gwload: %ld events accepted in %ld requests; %ld answered busy and sent again\n",
	       g.accepted, g.requests, g.busy);
out:
	s_gw_free(&g);
	return exit_code;
}

/* ---- 3 nodes, R3 (issue 17) ------------------------------------------------------------------ */

#define CLU3_NODES 3
#define CLU3_RATE 5000 /* events/s offered, over all the nodes' gateways */

/* The first value under key anywhere in j (depth first), or NULL. */
static json_t *s_json_find(json_t *j, const char *key)
{
	json_t *v, *found;
	const char *k;
	size_t i;

	if (json_is_object(j)) {
		if ((v = json_object_get(j, key)))
			return v;
		json_object_foreach(j, k, v)
		{
			if ((found = s_json_find(v, key)))
				return found;
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v)
		{
			if ((found = s_json_find(v, key)))
				return found;
		}
	}
	return NULL;
}

/* `kanalctl status --json` (with --cluster when `cluster`) of the node whose config is conf,
 * or NULL. */
static json_t *s_node_status(const bench_params_t *p, const char *conf, bool cluster)
{
	char cmd[3300];
	json_t *j;
	FILE *f;

	snprintf(cmd, sizeof cmd,
		 "%s/bin/kanalctl -c '%s' --timeout 5000 status%s --json 2>/dev/null", p->build,
		 conf, cluster ? " --cluster" : "");
	if (!(f = popen(cmd, "r")))
		return NULL;
	j = json_loadf(f, 0, NULL);
	pclose(f);
	return j;
}

/* True when every shared consumer has nothing pending and nothing unacknowledged. */
static bool s_cluster_drained(const bench_params_t *p, const char *conf)
{
	json_t *j = s_node_status(p, conf, true), *c, *consumers = s_json_find(j, "consumers");
	bool drained = json_is_array(consumers) && json_array_size(consumers) > 0;
	size_t i;

	json_array_foreach(consumers, i, c)
	{
		if (json_integer_value(json_object_get(c, "pending")) != 0 ||
		    json_integer_value(json_object_get(c, "ack_pending")) != 0 ||
		    json_object_get(c, "error"))
			drained = false;
	}
	json_decref(j);
	return drained;
}

/* How many events node conf routed (its routes' `matched` counters), or -1. */
static long s_node_routed(const bench_params_t *p, const char *conf)
{
	json_t *j = s_node_status(p, conf, false), *rc, *routes = s_json_find(j, "route_counters");
	long routed = json_is_array(routes) ? 0 : -1;
	size_t i;

	json_array_foreach(routes, i, rc)
	{
		routed += (long)json_integer_value(json_object_get(rc, "matched"));
	}
	json_decref(j);
	return routed;
}

/* Three kanald nodes on a three-node nats-server cluster with R3 streams; each node's
 * gateway gets a third of CLU3_RATE events/s from its own client (distinct event ids), every
 * node runs the destination (the shared consumer spreads the deliveries) and routes what the
 * shared route consumer hands it. Measures the end-to-end latency (each node's sink; the worst
 * node's p50/p99/p99.9), the delivered rate, each node's CPU per event and its share of the
 * routing and delivering, and fails the row when any event is missing from all three sinks. */
int kanal_cluster3(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r)
{
	/* KBENCH_CLU3_RATE offers another rate (to see where the latency comes from). */
	long rate = getenv("KBENCH_CLU3_RATE") ? atol(getenv("KBENCH_CLU3_RATE")) : CLU3_RATE;
	long total = (long)((double)rate * p->lat_seconds); /* 2 s quick, 10 s full */
	krun_t k[CLU3_NODES];
	int ports[CLU3_NODES], cports[CLU3_NODES];
	pid_t nats[CLU3_NODES], gw[CLU3_NODES];
	double cpu0[CLU3_NODES], cpu1[CLU3_NODES], nats_cpu0 = 0, nats_cpu1 = 0;
	long routed[CLU3_NODES], got[CLU3_NODES] = { 0 };
	long unique = 0, copies = 0;
	summary_t sm[CLU3_NODES];
	char *dir = NULL, *instances = NULL;
	int64_t t0, t1;
	int rc = -1;

	memset(k, 0, sizeof k);
	for (int i = 0; i < CLU3_NODES; i++)
		k[i].pid = nats[i] = gw[i] = -1;
	if (access("/usr/sbin/nats-server", X_OK) != 0)
		return bench_na(r, "nats-server is not installed (Debian package nats-server)");
	if (!(dir = bench_mkdir(p, s->id)))
		return bench_na(r, "cannot make a scratch folder under %s", p->tmp);
	/* Six distinct ports: nothing holds a port bench_free_port names until its server starts,
	 * so two calls may name the same one. */
	for (int i = 0; i < 2 * CLU3_NODES; i++) {
		int *slot = i < CLU3_NODES ? &ports[i] : &cports[i - CLU3_NODES], tries = 0;
		bool taken;

		do {
			taken = false;
			*slot = bench_free_port();
			for (int j = 0; j < i; j++)
				taken |= *slot ==
					 (j < CLU3_NODES ? ports[j] : cports[j - CLU3_NODES]);
		} while (taken && ++tries < 50);
		if (*slot < 0 || taken) {
			bench_na(r, "no free port");
			goto out;
		}
	}
	if (peer_nats_start_cluster(dir, CLU3_NODES, ports, cports, nats) < 0) {
		bench_na(r, "cannot start nats-server; see %s", dir);
		goto out;
	}
	for (int i = 0; i < CLU3_NODES; i++)
		if (!bench_wait_port(ports[i], 10000)) {
			bench_na(r, "nats-server n%d did not listen; see %s/nats-n%d.log", i, dir,
				 i);
			goto out;
		}
	/* The nodes: the same routing file, the destination on every node. */
	for (int i = 0; i < CLU3_NODES; i++) {
		char tag[64], journal[512];
		if (s_open(p, &k[i], (snprintf(tag, sizeof tag, "%s-node%d", s->id, i), tag)) < 0) {
			bench_na(r, "cannot make a scratch folder under %s", p->tmp);
			goto out;
		}
		k[i].n_sinks = 1;
		snprintf(journal, sizeof journal,
			 "journal:\n  mode: cluster\n  nats:\n"
			 "    servers: [nats://127.0.0.1:%d, nats://127.0.0.1:%d, "
			 "nats://127.0.0.1:%d]\n"
			 "    replicas: 3\n    name: node%d\n",
			 ports[i], ports[(i + 1) % 3], ports[(i + 2) % 3], i);
		free(instances);
		if (asprintf(&instances,
			     "  - name: dst0\n"
			     "    plugin: %s/bench/plugins/bench_sink.so\n"
			     "    options: { expect: %ld, warmup: %ld, summary: %s, seen: true }\n",
			     p->build, total, total / 30, k[i].summary[0]) < 0)
			instances = NULL;
		if (!instances || s_write_conf(p, &k[i], instances, s_one_route, journal) < 0) {
			bench_na(r, "cannot write the config in %s", k[i].dir);
			goto out;
		}
		/* The first node creates the streams (waiting for JetStream's meta leader). */
		if (s_launch(p, &k[i], r) < 0)
			goto out;
	}
	/* The senders: one per node's gateway, a third of the rate each, distinct ids. */
	t0 = bench_now_ns();
	for (int i = 0; i < CLU3_NODES; i++) {
		char count[32], size[32], per_node[32], first[32], log[1300];
		long share = total / CLU3_NODES + (i == CLU3_NODES - 1 ? total % CLU3_NODES : 0);
		char *argv[] = { (char *)p->self, "gwload", k[i].gateway, count, size, "1",
				 per_node,        first,    NULL };

		cpu0[i] = bench_proc_cpu_s(k[i].pid);
		nats_cpu0 += bench_proc_cpu_s(nats[i]);
		snprintf(count, sizeof count, "%ld", share);
		snprintf(size, sizeof size, "%d", s->size);
		snprintf(per_node, sizeof per_node, "%ld", rate / CLU3_NODES);
		snprintf(first, sizeof first, "%ld", 1 + i * (total / CLU3_NODES));
		snprintf(log, sizeof log, "%s/gwload.log", k[i].dir);
		if ((gw[i] = bench_spawn(argv, log)) < 0) {
			bench_na(r, "cannot start the gateway client");
			goto out;
		}
	}
	for (int i = 0; i < CLU3_NODES; i++) {
		int64_t until = bench_now_ns() + (int64_t)(total / rate + 60) * 1000000000LL;
		char path[1300], *text;
		bool ok;

		while (bench_alive(gw[i]) && bench_now_ns() < until)
			bench_sleep_ms(20);
		if (bench_now_ns() >= until) {
			bench_na(r, "gateway client %d did not finish in time; see %s/gwload.log",
				 i, k[i].dir);
			goto out;
		}
		gw[i] = -1; /* reaped by bench_alive; its log says how it ended */
		snprintf(path, sizeof path, "%s/gwload.log", k[i].dir);
		text = bench_read_file(path);
		ok = text && strstr(text, "gwload: ") && strstr(text, " events accepted in ");
		free(text);
		if (!ok) {
			bench_na(r, "gateway client %d failed; see %s", i, path);
			goto out;
		}
	}
	/* Every shared consumer drained (at most 60 s): everything accepted was delivered. */
	for (int waited = 0; waited < 60000 && !s_cluster_drained(p, k[0].conf); waited += 100)
		bench_sleep_ms(100);
	t1 = bench_now_ns();
	for (int i = 0; i < CLU3_NODES; i++) {
		cpu1[i] = bench_proc_cpu_s(k[i].pid);
		nats_cpu1 += bench_proc_cpu_s(nats[i]);
		routed[i] = s_node_routed(p, k[i].conf);
	}
	for (int i = 0; i < CLU3_NODES; i++) {
		bench_stop(k[i].pid, SIGTERM, 10000);
		k[i].pid = -1;
	}
	/* Every sequence number must be in some node's sink. */
	{
		unsigned char *any = calloc((size_t)total + 1, 1);
		for (int i = 0; any && i < CLU3_NODES; i++) {
			char path[1300];
			FILE *f;
			unsigned char *seen = malloc((size_t)total + 1);

			snprintf(path, sizeof path, "%s.seen", k[i].summary[0]);
			if (s_read_summary(k[i].summary[0], &sm[i]) < 0 || !seen ||
			    !(f = fopen(path, "r"))) {
				free(seen);
				free(any);
				bench_na(r, "node %d's sink wrote no summary; see %s", i, k[i].log);
				goto out;
			}
			if (fread(seen, 1, (size_t)total + 1, f) != (size_t)total + 1)
				memset(seen, 0, (size_t)total + 1);
			fclose(f);
			for (long q = 1; q <= total; q++) {
				got[i] += seen[q];
				any[q] |= seen[q] != 0;
			}
			copies += got[i];
			free(seen);
		}
		for (long q = 1; any && q <= total; q++)
			unique += any[q];
		free(any);
	}
	if (unique < total) {
		bench_na(r, "%ld of %ld accepted events were never delivered (lost); logs in %s…",
			 total - unique, total, k[0].dir);
		goto out;
	}
	r->rate = (double)unique / ((double)(t1 - t0) / 1e9);
	r->cpu_us = 0;
	r->p50_us = r->p99_us = r->p999_us = 0;
	for (int i = 0; i < CLU3_NODES; i++) {
		r->cpu_us += (cpu1[i] - cpu0[i]) * 1e6 / (double)total;
		if (sm[i].p50_us > r->p50_us)
			r->p50_us = sm[i].p50_us;
		if (sm[i].p99_us > r->p99_us)
			r->p99_us = sm[i].p99_us;
		if (sm[i].p999_us > r->p999_us)
			r->p999_us = sm[i].p999_us;
	}
	snprintf(r->note, sizeof r->note,
		 "%ld events, none lost, %ld duplicates; per node: kanald CPU %.0f/%.0f/%.0f µs "
		 "per event, routed %.0f/%.0f/%.0f%%, delivered %.0f/%.0f/%.0f%%; the three "
		 "nats-server %.0f µs per event",
		 total, copies - unique, (cpu1[0] - cpu0[0]) * 1e6 / (double)total,
		 (cpu1[1] - cpu0[1]) * 1e6 / (double)total,
		 (cpu1[2] - cpu0[2]) * 1e6 / (double)total,
		 100.0 * (double)routed[0] / (double)total,
		 100.0 * (double)routed[1] / (double)total,
		 100.0 * (double)routed[2] / (double)total, 100.0 * (double)got[0] / (double)copies,
		 100.0 * (double)got[1] / (double)copies, 100.0 * (double)got[2] / (double)copies,
		 (nats_cpu1 - nats_cpu0) * 1e6 / (double)total);
	rc = 0;
out:
	for (int i = 0; i < CLU3_NODES; i++) {
		if (gw[i] > 0)
			bench_stop(gw[i], SIGTERM, 1000);
		if (k[i].dir)
			s_close(&k[i], rc < 0);
	}
	for (int i = 0; i < CLU3_NODES; i++)
		if (nats[i] > 0)
			bench_stop(nats[i], SIGTERM, 5000);
	if (dir) {
		if (rc == 0 && !getenv("KANAL_BENCH_KEEP"))
			bench_rmdir(dir);
		else
			bench_keep_scratch = true;
		free(dir);
	}
	free(instances);
	return rc;
}
