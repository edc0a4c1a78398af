/*
 * bench/plugins/bench_sink.c — the benchmark's sink plugin: it counts the events delivered
 * to it, measures the rate at which they arrive in the steady part of a run, the end-to-end
 * latency of each one, and the CPU the whole kanald process spent meanwhile, and writes a
 * JSON summary the benchmark driver reads.
 *
 * The measurement window runs from the arrival of event number `warmup` to the arrival of
 * event number `expect`: start-up (plugins starting, queues filling) is left out, and only
 * events that really reached a destination are counted. The summary is written (to a
 * temporary name, then renamed) the moment the last expected event arrives, so the driver
 * can stop kanald at once; if kanald stops first, the summary says `"complete": false`.
 *
 * With `seen: true` it also keeps which sequence numbers (`benchseq`, 1 … expect) arrived and
 * writes them beside the summary (<summary>.seen, one byte per number, the times each came):
 * the 3-node row runs a sink per node and adds the three up to find any event lost.
 *
 * Latency is the time between the `benchns` stamp (CLOCK_MONOTONIC nanoseconds, taken by the
 * source right before kanal_emit, or by the gateway client right before sending) and the
 * start of on_message. Every sample after the warm-up is kept and sorted at the end, so the
 * percentiles are exact, not bucketed.
 *
 * CPU: the process's CPU clock and each thread's ticks (/proc/self/task/<tid>/stat) are read
 * when the window opens and when it closes; the summary gives the CPU per event and the
 * share of the busiest thread, which tells whether one thread (the router) or the machine's
 * cores bound the rate.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kanal/kanal.h>

static const kanal_option_t s_options[] = {
	{ .name = "expect",
	  .type = KANAL_OPT_INT,
	  .default_value = NULL,
	  .required = true,
	  .help = "Events to receive; the summary is written when the last one arrives." },
	{ .name = "warmup",
	  .type = KANAL_OPT_INT,
	  .default_value = "0",
	  .required = false,
	  .help = "Events received before the measurement window opens (0: a tenth of expect)." },
	{ .name = "summary",
	  .type = KANAL_OPT_PATH,
	  .default_value = NULL,
	  .required = true,
	  .help = "File the JSON summary is written to." },
	{ .name = "stall",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "false",
	  .required = false,
	  .help = "Play a stopped destination: the first delivery waits until <summary>.release "
		  "exists "
		  "(at most 10 minutes), so every later event stays pending." },
	{ .name = "seen",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "false",
	  .required = false,
	  .help = "Write <summary>.seen: for each benchseq 1 … expect, how many times it came." },
	{ .name = "blobs",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "false",
	  .required = false,
	  .help = "Read each event's blob (its kanalblob attribute) with kanal_blob_get, which "
		  "checks its digest; the summary counts the events whose blob could not be "
		  "read." },
	{ .name = NULL },
};

#define MAX_THREADS 64

typedef struct thread_ticks {
	int tid;
	long long ticks;
} thread_ticks_t;

typedef struct bench_sink {
	const char *summary; /* borrowed from the config */
	int64_t expect;
	int64_t warmup;
	int64_t received;
	int64_t t_first, t_warm, t_last; /* monotonic ns */
	int64_t cpu_warm, cpu_last;      /* process CPU ns */
	int64_t *lat;                    /* samples after the warm-up, ns */
	int64_t n_lat, cap_lat;
	int64_t last_seq;
	int64_t out_of_order;
	int64_t unstamped;
	bool blobs;
	int64_t blob_bytes, blob_errors;
	thread_ticks_t warm_threads[MAX_THREADS];
	int n_warm_threads;
	double busiest_share, busiest2_share; /* of one core, over the window */
	bool written;
	bool stall;
	unsigned char *seen; /* [expect + 1], with the seen option */
} bench_sink_t;

static int64_t s_clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Reads utime + stime (clock ticks) of every thread of this process into out[]. Returns the
 * number of threads read. */
static int s_read_threads(thread_ticks_t *out, int max)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while (n < max && (e = readdir(d))) {
		char path[300], buf[1024];
		FILE *f;
		char *p;
		unsigned long long ut = 0, st = 0;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		p = fgets(buf, sizeof buf, f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		/* After "(comm)": state, then 10 fields, then utime and stime. */
		if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
				 &ut, &st) != 2)
			continue;
		out[n].tid = atoi(e->d_name);
		out[n].ticks = (long long)(ut + st);
		n++;
	}
	closedir(d);
	return n;
}

/* The two largest per-thread CPU shares between the warm snapshot and now. */
static void s_thread_shares(bench_sink_t *s, double window_s)
{
	thread_ticks_t now[MAX_THREADS];
	int n = s_read_threads(now, MAX_THREADS);
	double hz = (double)sysconf(_SC_CLK_TCK);

	s->busiest_share = s->busiest2_share = 0;
	if (window_s <= 0 || hz <= 0)
		return;
	for (int i = 0; i < n; i++) {
		long long before = 0;
		double share;

		for (int k = 0; k < s->n_warm_threads; k++)
			if (s->warm_threads[k].tid == now[i].tid)
				before = s->warm_threads[k].ticks;
		share = (double)(now[i].ticks - before) / hz / window_s;
		if (share > s->busiest_share) {
			s->busiest2_share = s->busiest_share;
			s->busiest_share = share;
		} else if (share > s->busiest2_share) {
			s->busiest2_share = share;
		}
	}
}

static int s_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of the sorted samples, nearest rank. */
static int64_t s_quantile(const int64_t *v, int64_t n, double q)
{
	int64_t rank;

	if (n <= 0)
		return -1;
	rank = (int64_t)(q * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

/* Writes the summary to <summary>.tmp and renames it into place. */
static void s_write_summary(kanal_ctx_t *ctx, bench_sink_t *s, bool complete)
{
	char tmp[4200];
	double window_s = s->t_last > s->t_warm ? (double)(s->t_last - s->t_warm) / 1e9 : 0;
	int64_t counted = s->received - s->warmup;
	FILE *f;

	if (s->written)
		return;
	s->written = true;
	qsort(s->lat, (size_t)s->n_lat, sizeof *s->lat, s_cmp_i64);
	snprintf(tmp, sizeof tmp, "%s.tmp", s->summary);
	f = fopen(tmp, "w");
	if (!f) {
		kanal_log(ctx, KANAL_LOG_ERROR, "cannot write %s: %s", tmp, strerror(errno));
		return;
	}
	fprintf(f,
		"{\"complete\": %s, \"expect\": %" PRId64 ", \"received\": %" PRId64
		", \"warmup\": %" PRId64 ",\n"
		" \"window_s\": %.6f, \"rate\": %.1f,\n"
		" \"cpu_us_per_event\": %.3f, \"busiest_thread\": %.3f, \"second_thread\": %.3f,\n"
		" \"out_of_order\": %" PRId64 ", \"unstamped\": %" PRId64 ",\n"
		" \"blob_bytes\": %" PRId64 ", \"blob_errors\": %" PRId64 ",\n"
		" \"lat_n\": %" PRId64 ", \"p50_ns\": %" PRId64 ", \"p99_ns\": %" PRId64
		", \"p999_ns\": %" PRId64 ", \"max_ns\": %" PRId64 "}\n",
		complete ? "true" : "false", s->expect, s->received, s->warmup, window_s,
		window_s > 0 && counted > 0 ? (double)counted / window_s : 0.0,
		counted > 0 ? (double)(s->cpu_last - s->cpu_warm) / 1e3 / (double)counted : 0.0,
		s->busiest_share, s->busiest2_share, s->out_of_order, s->unstamped, s->blob_bytes,
		s->blob_errors, s->n_lat, s_quantile(s->lat, s->n_lat, 0.50),
		s_quantile(s->lat, s->n_lat, 0.99), s_quantile(s->lat, s->n_lat, 0.999),
		s->n_lat ? s->lat[s->n_lat - 1] : -1);
	if (fclose(f) != 0 || rename(tmp, s->summary) != 0)
		kanal_log(ctx, KANAL_LOG_ERROR, "cannot write %s: %s", s->summary, strerror(errno));
	if (s->seen) {
		/* Before the summary's rename would be better, but the driver reads this only
		 * after kanald has stopped. */
		snprintf(tmp, sizeof tmp, "%s.seen", s->summary);
		f = fopen(tmp, "w");
		if (!f || fwrite(s->seen, 1, (size_t)s->expect + 1, f) != (size_t)s->expect + 1)
			kanal_log(ctx, KANAL_LOG_ERROR, "cannot write %s", tmp);
		if (f)
			fclose(f);
	}
}

static void s_destroy(void *state)
{
	bench_sink_t *s = state;

	if (!s)
		return;
	free(s->lat);
	free(s->seen);
	free(s);
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	bench_sink_t *s = calloc(1, sizeof *s);

	if (!s)
		return KANAL_ENOMEM;
	s->summary = kanal_config_string(cfg, "summary");
	s->expect = kanal_config_int(cfg, "expect");
	s->warmup = kanal_config_int(cfg, "warmup");
	s->stall = kanal_config_bool(cfg, "stall");
	s->blobs = kanal_config_bool(cfg, "blobs");
	if (s->warmup == 0)
		s->warmup = s->expect / 10;
	if (s->expect <= 0 || s->warmup < 1 || s->warmup >= s->expect) {
		kanal_set_error(ctx,
				"bench_sink: expect must be positive and warmup in [1, expect)");
		s_destroy(s);
		return KANAL_EINVAL;
	}
	s->cap_lat = s->expect - s->warmup;
	s->lat = malloc((size_t)s->cap_lat * sizeof *s->lat);
	if (kanal_config_bool(cfg, "seen"))
		s->seen = calloc((size_t)s->expect + 1, 1);
	if (!s->lat || (kanal_config_bool(cfg, "seen") && !s->seen)) {
		s_destroy(s);
		return KANAL_ENOMEM;
	}
	*state = s;
	return 0;
}

/* Blocks until <summary>.release exists, for at most 10 minutes. */
static void s_stall(const bench_sink_t *s)
{
	char path[4200];
	struct timespec tick = { 0, 20 * 1000000L };

	snprintf(path, sizeof path, "%s.release", s->summary);
	for (int i = 0; i < 10 * 60 * 50 && access(path, F_OK) != 0; i++)
		nanosleep(&tick, NULL);
}

/* Reads the event's blob whole, as a receiving connector does before it sends the content
 * on; kanal_blob_get checks the SHA-256 against the URI. */
static void s_read_blob(kanal_ctx_t *ctx, bench_sink_t *s, const kanal_msg_t *msg)
{
	const char *uri = kanal_msg_attr(msg, KANAL_BLOB_ATTRIBUTE);
	void *data = NULL;
	size_t size = 0;
	kanal_error_t err = { 0 };

	if (!uri || kanal_blob_get(ctx, uri, &data, &size, &err) != 0) {
		if (s->blob_errors++ == 0)
			kanal_log(ctx, KANAL_LOG_ERROR, "cannot read the blob of event %s: %s",
				  kanal_msg_id(msg), uri ? err.text : "no kanalblob attribute");
		return;
	}
	s->blob_bytes += (int64_t)size;
	kanal_blob_free(&data);
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	bench_sink_t *s = state;
	int64_t now = s_clock_ns(CLOCK_MONOTONIC);
	const char *ns = kanal_msg_attr(msg, "benchns");
	const char *seq_text = kanal_msg_attr(msg, "benchseq");

	if (s->stall) {
		s_stall(s);
		s->stall = false;
	}
	if (s->blobs)
		s_read_blob(ctx, s, msg);
	s->received++;
	if (s->received == 1)
		s->t_first = now;
	if (seq_text) {
		int64_t seq = strtoll(seq_text, NULL, 10);
		if (s->seen && seq >= 1 && seq <= s->expect && s->seen[seq] < 255)
			s->seen[seq]++;
		if (seq != s->last_seq + 1)
			s->out_of_order++;
		s->last_seq = seq;
	}
	if (s->received == s->warmup) {
		s->t_warm = now;
		s->cpu_warm = s_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
		s->n_warm_threads = s_read_threads(s->warm_threads, MAX_THREADS);
	} else if (s->received > s->warmup && s->received <= s->expect) {
		if (ns)
			s->lat[s->n_lat++] = now - strtoll(ns, NULL, 10);
		else
			s->unstamped++;
	}
	if (s->received == s->expect) {
		s->t_last = now;
		s->cpu_last = s_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
		s_thread_shares(s, (double)(s->t_last - s->t_warm) / 1e9);
		s_write_summary(ctx, s, true);
	}
	return KANAL_OUTCOME_OK;
}

static void s_stop(kanal_ctx_t *ctx, void *state, int64_t deadline_ms)
{
	bench_sink_t *s = state;

	(void)deadline_ms;
	if (!s->written) {
		s->t_last = s_clock_ns(CLOCK_MONOTONIC);
		s->cpu_last = s_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
		s_write_summary(ctx, s, false);
	}
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "bench_sink",
	.version = KANAL_VERSION,
	.description = "Counts delivered events, their rate and latency, for kanal's benchmarks.",
	.options = s_options,
	.init = s_init,
	.start = NULL,
	.on_message = s_on_message,
	.stop = s_stop,
	.destroy = s_destroy,
};
