/*
 * bench/kbench.c — kanal's benchmark driver: `make bench` runs it through bench/run.sh.
 *
 * It measures every row of the table below several times — the baselines (the limits of
 * kanal's own parts), kanal's runs, and the peers — in one run on one machine, so that each
 * kanal figure can be judged as a ratio of a baseline measured minutes apart, never as an
 * absolute number carried over from another day or machine. For each row it prints the
 * median of the repetitions and their spread, then the targets of issue 5 as met / not met
 * with the ratio, and writes everything, every repetition included, to a JSON file.
 *
 *   kbench [-b BUILD] [-B BEFORE] [-o results.json] [--full]   run the benchmarks
 *   kbench gwload ENDPOINT COUNT SIZE BATCH           the gateway client (a helper process)
 *
 * Environment: FULL=1 is --full; BENCH_REPS=N overrides the repetitions; BENCH_ONLY=text
 * runs only the rows whose id contains text (several texts: comma-separated, any of them);
 * KANAL_BENCH_KEEP=1 keeps the scratch folders.
 *
 * With -B BEFORE (another build tree, e.g. of the commit before a change), every kanal row
 * also runs against BEFORE's kanald in the same pass, right beside the run against BUILD
 * (which one goes first alternates from pass to pass), and a table of after/before ratios
 * follows: the median of the per-pass ratios and their range, so a change is judged against
 * the machine's own pass-to-pass spread.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MAX_REPS 15

/* ---- the rows ------------------------------------------------------------------------------- */

static const bench_spec_t s_specs[] = {
	/* baselines */
	{ "zmq_pushpull_512", "baseline", "raw ZeroMQ PUSH/PULL inproc, 512 B", BENCH_RATE,
	  base_zmq_pushpull, 512, 0, NULL, false },
	{ "zmq_pushpull_4k", "baseline", "raw ZeroMQ PUSH/PULL inproc, 4 KiB", BENCH_RATE,
	  base_zmq_pushpull, 4096, 0, NULL, false },
	{ "zmq_hop_512", "baseline", "raw broker hop (header-routed), 512 B", BENCH_RATE,
	  base_zmq_hop, 512, 0, NULL, false },
	{ "zmq_hop_4k", "baseline", "raw broker hop (header-routed), 4 KiB", BENCH_RATE,
	  base_zmq_hop, 4096, 0, NULL, false },
	{ "sqlite_wal_512", "baseline", "raw SQLite WAL, 1000 rows/tx, 512 B", BENCH_RATE,
	  base_sqlite_wal, 512, 0, NULL, false },
	{ "sqlite_wal_4k", "baseline", "raw SQLite WAL, 1000 rows/tx, 4 KiB", BENCH_RATE,
	  base_sqlite_wal, 4096, 0, NULL, false },
	{ "blob_files_256k", "baseline",
	  "raw file store: write, fsync, rename, read, remove, 256 KiB", BENCH_RATE,
	  base_blob_files, BENCH_BLOB_SIZE, 0, NULL, false },
	/* kanal, throughput */
	{ "mem_one_route_512", "kanal", "1. one route, memory mode, 512 B", BENCH_RATE,
	  kanal_throughput, 512, KANAL_RUN_ONE_ROUTE, "zmq_hop_512", false },
	{ "mem_one_route_4k", "kanal", "1. one route, memory mode, 4 KiB", BENCH_RATE,
	  kanal_throughput, 4096, KANAL_RUN_ONE_ROUTE, "zmq_hop_4k", false },
	{ "dur_one_route_512", "kanal", "2. one route, durable mode, 512 B", BENCH_RATE,
	  kanal_throughput, 512, KANAL_RUN_ONE_ROUTE, "sqlite_wal_512", true },
	{ "dur_one_route_4k", "kanal", "2. one route, durable mode, 4 KiB", BENCH_RATE,
	  kanal_throughput, 4096, KANAL_RUN_ONE_ROUTE, "sqlite_wal_4k", true },
	{ "dur_sqlcipher_512", "kanal", "2b. one route, durable mode with SQLCipher, 512 B",
	  BENCH_RATE, kanal_throughput, 512, KANAL_RUN_SQLCIPHER, "dur_one_route_512", true },
	{ "mem_where_512", "kanal", "3. where on a data field, 512 B", BENCH_RATE, kanal_throughput,
	  512, KANAL_RUN_WHERE, "mem_one_route_512", false },
	{ "mem_transform_512", "kanal", "3b. one route with a 5-field transform, 512 B", BENCH_RATE,
	  kanal_throughput, 512, KANAL_RUN_TRANSFORM, "mem_one_route_512", false },
	{ "mem_fanout3_512", "kanal", "4. fan-out to 3 destinations, 512 B", BENCH_RATE,
	  kanal_throughput, 512, KANAL_RUN_FANOUT3, "mem_one_route_512", false },
	{ "mem_routes_1", "kanal", "5. 1 route loaded, 512 B", BENCH_RATE, kanal_routes, 512, 1,
	  NULL, false },
	{ "mem_routes_100", "kanal", "5. 100 routes loaded, 512 B", BENCH_RATE, kanal_routes, 512,
	  100, "mem_routes_1", false },
	{ "mem_routes_10000", "kanal", "5. 10,000 routes loaded, 512 B", BENCH_RATE, kanal_routes,
	  512, 10000, "mem_routes_1", false },
	{ "mem_gateway_512", "kanal", "7. gateway, tcp, 1 event/request, memory, 512 B", BENCH_RATE,
	  kanal_throughput, 512, KANAL_RUN_GATEWAY, "mem_one_route_512", false },
	{ "mem_gateway_batch_512", "kanal", "7. gateway, tcp, 100 events/request, memory, 512 B",
	  BENCH_RATE, kanal_throughput, 512, KANAL_RUN_GATEWAY_BATCH, "mem_one_route_512", false },
	{ "dur_gateway_512", "kanal", "7. gateway, tcp, 1 event/request, durable, 512 B",
	  BENCH_RATE, kanal_throughput, 512, KANAL_RUN_GATEWAY, "dur_one_route_512", true },
	{ "dur_gateway_batch_512", "kanal", "7. gateway, tcp, 100 events/request, durable, 512 B",
	  BENCH_RATE, kanal_throughput, 512, KANAL_RUN_GATEWAY_BATCH, "dur_one_route_512", true },
	{ "clu_one_route_512", "kanal", "9. one route, cluster mode (1 node, NATS R1), 512 B",
	  BENCH_RATE, kanal_throughput, 512, KANAL_RUN_CLUSTER, "dur_one_route_512", false },
	{ "dur_blob_256k", "kanal", "10. one route, durable, a 256 KiB blob per event", BENCH_RATE,
	  kanal_throughput, 512, KANAL_RUN_BLOB, "blob_files_256k", true },
	/* kanal, latency and memory */
	{ "mem_latency_512", "kanal", "6. memory mode, 512 B", BENCH_LATENCY, kanal_latency, 512, 0,
	  NULL, false },
	{ "dur_latency_512", "kanal", "6. durable mode, 512 B", BENCH_LATENCY, kanal_latency, 512,
	  0, NULL, true },
	{ "clu3_r3_latency_512", "kanal", "9b. cluster mode, 3 nodes, NATS R3, 5,000 events/s",
	  BENCH_LATENCY, kanal_cluster3, 512, 0, NULL, false },
	{ "dur_pending_rss", "kanal", "8. kanald resident, 1,000,000 events pending (durable)",
	  BENCH_MEMORY, kanal_pending_rss, 512, 0, NULL, true },
	/* peers */
	{ "peer_mosquitto_rate", "peer", "Mosquitto, QoS 1, persistence on, 512 B", BENCH_RATE,
	  peer_mosquitto, 512, 0, NULL, false },
	{ "peer_nats_rate", "peer", "NATS JetStream, file storage, 512 B", BENCH_RATE, peer_nats,
	  512, 0, NULL, false },
	{ "peer_nats_rate_2hop", "peer",
	  "NATS JetStream, two hops (stream → relay → stream), 512 B", BENCH_RATE, peer_nats, 512,
	  2, NULL, false },
	{ "peer_mosquitto_latency", "peer", "Mosquitto, QoS 1, persistence on, 512 B",
	  BENCH_LATENCY, peer_mosquitto, 512, 1, NULL, false },
	{ "peer_nats_latency", "peer", "NATS JetStream, file storage, 512 B", BENCH_LATENCY,
	  peer_nats, 512, 1, NULL, false },
};

#define N_SPECS (sizeof s_specs / sizeof s_specs[0])

/* What a row came to over its repetitions. */
typedef struct row {
	const bench_spec_t *spec;
	bench_result_t reps[MAX_REPS];
	int n_reps, n_ok;
	bool ran;
	bench_result_t med, lo, hi; /* per-field median, minimum, maximum of the measured reps */
	char na[200];               /* non-empty: no figure */
} row_t;

static row_t s_rows[N_SPECS];
static row_t s_before[N_SPECS]; /* the same rows against the -B build tree */

static row_t *s_row(const char *id)
{
	for (size_t i = 0; i < N_SPECS; i++)
		if (!strcmp(s_rows[i].spec->id, id))
			return &s_rows[i];
	return NULL;
}

/* ---- statistics ------------------------------------------------------------------------ */

static int s_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median, minimum and maximum of one field over the measured reps (-1 when none has it). */
static void s_stat(row_t *row, size_t offset)
{
	double v[MAX_REPS];
	int n = 0;

	for (int i = 0; i < row->n_reps; i++) {
		double x = *(const double *)((const char *)&row->reps[i] + offset);
		if (!row->reps[i].na[0] && x >= 0)
			v[n++] = x;
	}
	if (n == 0) {
		*(double *)((char *)&row->med + offset) = -1;
		*(double *)((char *)&row->lo + offset) = -1;
		*(double *)((char *)&row->hi + offset) = -1;
		return;
	}
	qsort(v, (size_t)n, sizeof v[0], s_cmp_double);
	*(double *)((char *)&row->med + offset) = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	*(double *)((char *)&row->lo + offset) = v[0];
	*(double *)((char *)&row->hi + offset) = v[n - 1];
}

static void s_summarise(row_t *row)
{
	static const size_t fields[] = {
		offsetof(bench_result_t, rate),    offsetof(bench_result_t, cpu_us),
		offsetof(bench_result_t, busiest), offsetof(bench_result_t, p50_us),
		offsetof(bench_result_t, p99_us),  offsetof(bench_result_t, p999_us),
		offsetof(bench_result_t, rss_mib),
	};

	row->n_ok = 0;
	for (int i = 0; i < row->n_reps; i++)
		row->n_ok += !row->reps[i].na[0];
	if (row->n_ok == 0) {
		snprintf(row->na, sizeof row->na, "%s",
			 row->n_reps ? row->reps[0].na : "not run (BENCH_ONLY)");
		return;
	}
	for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
		s_stat(row, fields[f]);
}

/* ---- running ---------------------------------------------------------------------------- */

static const char *s_pad(const char *text, int width);

/* Runs repetition `rep` of a row, unless the row has had all it needs: an earlier
 * repetition said the figure cannot be had (no package, a crash — a second try would say the
 * same), or it is the pending-memory row, which fills a million events each time and is run
 * once in quick mode (its figure is a size, which varies little). */
static void s_run_rep(const bench_params_t *p, row_t *row, int rep)
{
	const bench_spec_t *spec = row->spec;
	bench_result_t *r;

	if (spec->kind == BENCH_MEMORY && !p->full && rep > 0)
		return;
	if (row->n_reps > 0 && row->reps[0].na[0])
		return;
	row->ran = true;
	r = &row->reps[row->n_reps++];
	bench_result_init(r);
	fprintf(stderr, "  [%d/%d] %s", rep + 1, p->reps, s_pad(spec->label, 58));
	if (spec->fn(p, spec, r) < 0 && !r->na[0])
		snprintf(r->na, sizeof r->na, "failed");
	if (r->na[0])
		fprintf(stderr, " n/a — %s\n", r->na);
	else if (spec->kind == BENCH_LATENCY)
		fprintf(stderr, " p99 %.0f us\n", r->p99_us);
	else if (spec->kind == BENCH_MEMORY)
		fprintf(stderr, " %.0f MiB\n", r->rss_mib);
	else
		fprintf(stderr, " %.0f events/s\n", r->rate);
}

/* a's rate over b's. With the repetitions interleaved, repetition i of a and of b ran in the
 * same pass over the rows, so the median of the per-pass ratios cancels most of the drift of
 * a shared machine; when the passes do not pair up (a repetition failed), the ratio of the
 * medians. */
/* The per-pass ratios of one field of a over b (both rows ran the same passes), sorted
 * into v; returns how many there are. */
static int s_pass_ratios(const row_t *a, const row_t *b, size_t offset, double *v)
{
	int n = 0;

	for (int i = 0; i < a->n_reps && i < b->n_reps; i++) {
		double x = *(const double *)((const char *)&a->reps[i] + offset);
		double y = *(const double *)((const char *)&b->reps[i] + offset);
		if (!a->reps[i].na[0] && !b->reps[i].na[0] && x > 0 && y > 0)
			v[n++] = x / y;
	}
	qsort(v, (size_t)n, sizeof v[0], s_cmp_double);
	return n;
}

static double s_ratio(const row_t *a, const row_t *b)
{
	double v[MAX_REPS];
	int n = s_pass_ratios(a, b, offsetof(bench_result_t, rate), v);

	if (n == 0 || n != a->n_reps)
		return b->med.rate > 0 ? a->med.rate / b->med.rate : -1;
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- printing --------------------------------------------------------------------------- */

/* text padded with spaces to `width` columns, counting UTF-8 characters (≥, —, µ) as one
 * column each, as a terminal shows them. Returns a static buffer, one of four in turn. */
static const char *s_pad(const char *text, int width)
{
	static char bufs[4][512];
	static int next;
	char *buf = bufs[next++ % 4];
	int cols = 0;
	size_t len = strlen(text);

	if (len > sizeof bufs[0] - (size_t)width - 1)
		len = sizeof bufs[0] - (size_t)width - 1;
	memcpy(buf, text, len);
	for (size_t i = 0; i < len; i++)
		cols += ((unsigned char)text[i] & 0xC0) != 0x80;
	while (cols < width) {
		buf[len++] = ' ';
		cols++;
	}
	buf[len] = '\0';
	return buf;
}

/* 1234567 → "1,234,567" */
static const char *s_thousands(double x, char *buf, size_t size)
{
	char digits[32];
	size_t n, out = 0;

	snprintf(digits, sizeof digits, "%.0f", x);
	n = strlen(digits);
	for (size_t i = 0; i < n && out + 2 < size; i++) {
		buf[out++] = digits[i];
		if (i + 1 < n && (n - i - 1) % 3 == 0 && digits[i] != '-')
			buf[out++] = ',';
	}
	buf[out] = '\0';
	return buf;
}

static const char *s_time(double us, char *buf, size_t size)
{
	if (us < 0)
		snprintf(buf, size, "-");
	else if (us < 1000)
		snprintf(buf, size, "%.0f µs", us);
	else
		snprintf(buf, size, "%.2f ms", us / 1000);
	return buf;
}

/* ±half the range, as a percentage of the median. */
static double s_spread(double med, double lo, double hi)
{
	return med > 0 ? (hi - lo) / 2 / med * 100 : 0;
}

/* The first repetition's note and the first failed repetition's reason, under a row. */
static void s_print_notes(const row_t *row)
{
	for (int i = 0; i < row->n_reps; i++)
		if (row->reps[i].note[0]) {
			printf("  %50s   note: %s\n", "", row->reps[i].note);
			break;
		}
	for (int i = 0; i < row->n_reps; i++)
		if (row->reps[i].na[0]) {
			printf("  %50s   failed repetition: %s\n", "", row->reps[i].na);
			break;
		}
}

static void s_print_rate_row(const row_t *row)
{
	char rate[32], vs[64] = "", ratio[16] = "", cpu[16] = "", busy[16] = "";
	const row_t *base = row->spec->vs ? s_row(row->spec->vs) : NULL;

	if (row->na[0]) {
		printf("  %s n/a — %s\n", s_pad(row->spec->label, 50), row->na);
		return;
	}
	if (row->med.cpu_us >= 0)
		snprintf(cpu, sizeof cpu, "%.2f", row->med.cpu_us);
	if (row->med.busiest >= 0)
		snprintf(busy, sizeof busy, "%.0f%%", row->med.busiest * 100);
	if (base) {
		snprintf(vs, sizeof vs, "%s", base->spec->id);
		if (!base->na[0] && base->med.rate > 0)
			snprintf(ratio, sizeof ratio, "%.2f", s_ratio(row, base));
		else
			snprintf(ratio, sizeof ratio, "n/a");
	}
	printf("  %s %11s ±%4.1f%% %7s %6s  %-18s %5s%s\n", s_pad(row->spec->label, 50),
	       s_thousands(row->med.rate, rate, sizeof rate),
	       s_spread(row->med.rate, row->lo.rate, row->hi.rate), cpu, busy, vs, ratio,
	       row->n_ok < row->n_reps ? "  (some repetitions failed)" : "");
	s_print_notes(row);
}

static void s_print_latency_row(const row_t *row)
{
	char a[24], b[24], c[24];

	if (row->na[0]) {
		printf("  %s n/a — %s\n", s_pad(row->spec->label, 50), row->na);
		return;
	}
	printf("  %s %s %s %s   (p99 spread ±%.0f%%)\n", s_pad(row->spec->label, 50),
	       s_pad(s_time(row->med.p50_us, a, sizeof a), 9),
	       s_pad(s_time(row->med.p99_us, b, sizeof b), 9),
	       s_pad(s_time(row->med.p999_us, c, sizeof c), 9),
	       s_spread(row->med.p99_us, row->lo.p99_us, row->hi.p99_us));
	/* Row 9b's note holds its per-node figures, and a lost event fails a repetition. */
	if (row->spec->fn == kanal_cluster3)
		s_print_notes(row);
}

static void s_print_memory_row(const row_t *row)
{
	if (row->na[0]) {
		printf("  %s n/a — %s\n", s_pad(row->spec->label, 50), row->na);
		return;
	}
	printf("  %s %8.1f MiB\n", s_pad(row->spec->label, 50), row->med.rss_mib);
	if (row->reps[0].note[0])
		printf("  %50s   note: %s\n", "", row->reps[0].note);
}

static void s_print_group(const char *title, const char *group, bench_kind_t kind)
{
	bool any = false;

	for (size_t i = 0; i < N_SPECS; i++) {
		const row_t *row = &s_rows[i];
		if (strcmp(row->spec->group, group) || row->spec->kind != kind || !row->ran)
			continue;
		if (!any) {
			printf("\n%s\n", title);
			any = true;
		}
		if (kind == BENCH_RATE)
			s_print_rate_row(row);
		else if (kind == BENCH_LATENCY)
			s_print_latency_row(row);
		else
			s_print_memory_row(row);
	}
}

/* The before/after table (-B): for each kanal row, its figure against the BEFORE tree and
 * against BUILD, and the median and range of the per-pass ratios after/before. Rates:
 * above 1 is faster; latencies and memory: below 1 is better. */
static void s_print_before_after(const char *before)
{
	printf("\nBefore/after — BEFORE=%s; ratio = after / before, median of the passes "
	       "[lowest, highest]\n",
	       before);
	printf("  %s %12s %12s %7s %s\n", s_pad("kanal row", 50), "before", "after", "ratio",
	       "range");
	for (size_t i = 0; i < N_SPECS; i++) {
		const row_t *a = &s_rows[i], *b = &s_before[i];
		size_t off;
		double v[MAX_REPS], x, y;
		char bx[32], ax[32];
		int n;

		if (!a->ran || !b->ran)
			continue;
		if (a->na[0] || b->na[0]) {
			printf("  %s n/a — %s\n", s_pad(a->spec->label, 50),
			       a->na[0] ? a->na : b->na);
			continue;
		}
		off = a->spec->kind == BENCH_RATE      ? offsetof(bench_result_t, rate)
		      : a->spec->kind == BENCH_LATENCY ? offsetof(bench_result_t, p99_us)
						       : offsetof(bench_result_t, rss_mib);
		x = *(const double *)((const char *)&b->med + off);
		y = *(const double *)((const char *)&a->med + off);
		if (a->spec->kind == BENCH_RATE) {
			s_thousands(x, bx, sizeof bx);
			s_thousands(y, ax, sizeof ax);
		} else if (a->spec->kind == BENCH_LATENCY) {
			s_time(x, bx, sizeof bx);
			s_time(y, ax, sizeof ax);
			strcat(bx, " p99");
			strcat(ax, " p99");
		} else {
			snprintf(bx, sizeof bx, "%.1f MiB", x);
			snprintf(ax, sizeof ax, "%.1f MiB", y);
		}
		n = s_pass_ratios(a, b, off, v);
		if (n == 0) {
			printf("  %s %12s %12s %7s\n", s_pad(a->spec->label, 50), bx, ax, "n/a");
			continue;
		}
		printf("  %s %12s %12s %7.2f [%.2f, %.2f]\n", s_pad(a->spec->label, 50), bx, ax,
		       n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v[0], v[n - 1]);
	}
}

/* ---- targets ---------------------------------------------------------------------------- */

typedef struct target {
	const char *text;
	char verdict[240];
	double ratio; /* measured / baseline, or measured / limit for "at most" targets */
	double need;
	int met; /* 1 met, 0 not met, -1 cannot be judged */
} target_t;

#define MAX_TARGETS 24
static target_t s_targets[MAX_TARGETS];
static int s_n_targets;

static const char *s_why_na(const row_t *a, const row_t *b)
{
	if (!a || !a->ran || (b && !b->ran))
		return "not run";
	if (a->na[0])
		return a->na;
	if (b && b->na[0])
		return b->na;
	return "no figure";
}

/* "a's rate is at least need × b's rate" */
static void s_target_ratio(const char *text, const char *a_id, const char *b_id, double need)
{
	target_t *t = &s_targets[s_n_targets++];
	const row_t *a = s_row(a_id), *b = s_row(b_id);
	double v[MAX_REPS];
	int n, met = 0;

	t->text = text;
	t->need = need;
	t->met = -1;
	if (!a || !b || !a->ran || !b->ran || a->na[0] || b->na[0] || b->med.rate <= 0) {
		snprintf(t->verdict, sizeof t->verdict, "n/a — %s", s_why_na(a, b));
		return;
	}
	t->ratio = s_ratio(a, b);
	t->met = t->ratio >= need;
	n = s_pass_ratios(a, b, offsetof(bench_result_t, rate), v);
	for (int i = 0; i < n; i++)
		met += v[i] >= need;
	if (n)
		snprintf(t->verdict, sizeof t->verdict,
			 "%s  ratio %.2f [%.2f, %.2f], %d/%d passes (needs ≥ %.2f)",
			 t->met ? "met    " : "NOT MET", t->ratio, v[0], v[n - 1], met, n, need);
	else
		snprintf(t->verdict, sizeof t->verdict, "%s  ratio %.2f (needs ≥ %.2f)",
			 t->met ? "met    " : "NOT MET", t->ratio, need);
}

/* Row a's field below row b's, pass by pass (latencies: kanal against a peer). */
static void s_target_below(const char *text, const char *a_id, const char *b_id, size_t offset)
{
	target_t *t = &s_targets[s_n_targets++];
	const row_t *a = s_row(a_id), *b = s_row(b_id);
	double x, y;
	int met = 0, n = 0;

	t->text = text;
	t->need = 1;
	t->met = -1;
	if (!a || !b || !a->ran || !b->ran || a->na[0] || b->na[0]) {
		snprintf(t->verdict, sizeof t->verdict, "n/a — %s", s_why_na(a, b));
		return;
	}
	x = *(const double *)((const char *)&a->med + offset);
	y = *(const double *)((const char *)&b->med + offset);
	if (a->n_reps == b->n_reps)
		for (int i = 0; i < a->n_reps; i++, n++)
			met += *(const double *)((const char *)&a->reps[i] + offset) <
			       *(const double *)((const char *)&b->reps[i] + offset);
	t->ratio = y > 0 ? x / y : -1;
	t->met = x < y;
	snprintf(t->verdict, sizeof t->verdict, "%s  %.2f of it (medians), %d/%d passes below",
		 t->met ? "met    " : "NOT MET", t->ratio, met, n);
}

/* Met when no repetition of row a_id lost an event (kanal_cluster3 fails a repetition whose
 * sinks together miss any event, with "lost" in its reason) and at least one completed. */
static void s_target_nothing_lost(const char *text, const char *a_id)
{
	target_t *t = &s_targets[s_n_targets++];
	const row_t *a = s_row(a_id);
	int lost = 0;

	t->text = text;
	t->need = 1;
	t->met = -1;
	if (!a || !a->ran) {
		snprintf(t->verdict, sizeof t->verdict, "n/a — not run");
		return;
	}
	for (int i = 0; i < a->n_reps; i++)
		lost += strstr(a->reps[i].na, "(lost)") != NULL;
	if (!lost && a->n_ok == 0) {
		snprintf(t->verdict, sizeof t->verdict, "n/a — %s", a->na);
		return;
	}
	t->met = lost == 0;
	t->ratio = a->n_reps > 0 ? (double)(a->n_reps - lost) / a->n_reps : -1;
	snprintf(t->verdict, sizeof t->verdict, "%s  %d/%d passes lost nothing%s",
		 t->met ? "met    " : "NOT MET", a->n_reps - lost, a->n_reps,
		 a->n_ok + lost < a->n_reps ? " (others failed for other reasons)" : "");
}

static void s_target_bound(const char *text, const char *a_id, size_t offset, double limit,
			   const char *unit, bool at_most)
{
	target_t *t = &s_targets[s_n_targets++];
	const row_t *a = s_row(a_id);
	char got[32], lim[32];
	double x;
	int passes = 0, passes_met = 0;

	t->text = text;
	t->need = 1;
	t->met = -1;
	if (!a || !a->ran || a->na[0]) {
		snprintf(t->verdict, sizeof t->verdict, "n/a — %s", s_why_na(a, NULL));
		return;
	}
	x = *(const double *)((const char *)&a->med + offset);
	t->ratio = x / limit;
	t->met = at_most ? x <= limit : x >= limit;
	for (int i = 0; i < a->n_reps; i++) {
		double r = *(const double *)((const char *)&a->reps[i] + offset);
		if (r >= 0) {
			passes++;
			passes_met += at_most ? r <= limit : r >= limit;
		}
	}
	if (!strcmp(unit, "us")) {
		s_time(x, got, sizeof got);
		s_time(limit, lim, sizeof lim);
	} else {
		snprintf(got, sizeof got, "%.0f %s", x, unit);
		snprintf(lim, sizeof lim, "%.0f %s", limit, unit);
	}
	snprintf(t->verdict, sizeof t->verdict, "%s  %s, %.2f of the %s %s, %d/%d passes",
		 t->met ? "met    " : "NOT MET", got, t->ratio, lim, at_most ? "limit" : "target",
		 passes_met, passes);
}

static void s_target_max(const char *text, const char *a_id, size_t offset, double limit,
			 const char *unit)
{
	s_target_bound(text, a_id, offset, limit, unit, true);
}

static void s_target_min(const char *text, const char *a_id, size_t offset, double limit,
			 const char *unit)
{
	s_target_bound(text, a_id, offset, limit, unit, false);
}

static void s_targets_judge(void)
{
	s_n_targets = 0;
	/* Issue 19 raised the 512-byte figures from 0.40 to 0.60 and the p99 limits from
	 * 1 ms / 10 ms to 0.5 ms / 5 ms; 4 KiB keeps issue 5's 0.40. */
	s_target_ratio("memory mode ≥ 60% of the raw broker hop (512 B)", "mem_one_route_512",
		       "zmq_hop_512", 0.60);
	s_target_ratio("memory mode ≥ 40% of the raw broker hop (4 KiB)", "mem_one_route_4k",
		       "zmq_hop_4k", 0.40);
	s_target_ratio("durable mode ≥ 60% of raw SQLite batched inserts (512 B)",
		       "dur_one_route_512", "sqlite_wal_512", 0.60);
	s_target_ratio("where on a data field ≥ 60% of memory mode", "mem_where_512",
		       "mem_one_route_512", 0.60);
	/* Issue 19, item 4: kanal's own work on a blob (two digests, the event, the bookkeeping)
	 * beside the I/O every durable file store does. */
	s_target_ratio("blobs ≥ 75% of the raw file store (256 KiB)", "dur_blob_256k",
		       "blob_files_256k", 0.75);
	s_target_min("one route with a 5-field transform ≥ 50,000 events/s (issue 16)",
		     "mem_transform_512", offsetof(bench_result_t, rate), 50000, "events/s");
	s_target_ratio("10,000 routes ≥ 80% of one route", "mem_routes_10000", "mem_routes_1",
		       0.80);
	s_target_max("p99 latency at 10,000 events/s ≤ 0.5 ms (memory)", "mem_latency_512",
		     offsetof(bench_result_t, p99_us), 500, "us");
	s_target_max("p99 latency at 10,000 events/s ≤ 5 ms (durable)", "dur_latency_512",
		     offsetof(bench_result_t, p99_us), 5000, "us");
	s_target_max("p99 latency at 5,000 events/s ≤ 20 ms (cluster, 3 nodes, R3; issue 17)",
		     "clu3_r3_latency_512", offsetof(bench_result_t, p99_us), 20000, "us");
	s_target_nothing_lost("no event lost (cluster, 3 nodes, R3; issue 17)",
			      "clu3_r3_latency_512");
	s_target_below("durable p99 below Mosquitto's (QoS 1, persistence)", "dur_latency_512",
		       "peer_mosquitto_latency", offsetof(bench_result_t, p99_us));
	s_target_max("resident ≤ 200 MiB with 1,000,000 pending (durable)", "dur_pending_rss",
		     offsetof(bench_result_t, rss_mib), 200, "MiB");
	s_target_ratio("durable kanal ahead of Mosquitto (events/s)", "dur_one_route_512",
		       "peer_mosquitto_rate", 1.0);
	s_target_ratio("durable kanal ahead of NATS JetStream (events/s)", "dur_one_route_512",
		       "peer_nats_rate", 1.0);
	s_target_ratio("cluster mode (1 node, R1) ≥ 50% of raw JetStream (issue 17)",
		       "clu_one_route_512", "peer_nats_rate", 0.50);
	/* Like for like: kanal stores and consumes each event twice (IN, then DLV), as the
	 * two-hop row does; the target above stays the issue's. */
	s_target_ratio("cluster mode (1 node, R1) ≥ 50% of raw JetStream, two hops",
		       "clu_one_route_512", "peer_nats_rate_2hop", 0.50);
}

static void s_print_targets(void)
{
	printf("\nTargets (issues 5, 16, 17 and 19; passes: how many of the run's passes met "
	       "it)\n");
	for (int i = 0; i < s_n_targets; i++)
		printf("  %s %s\n", s_pad(s_targets[i].text, 58), s_targets[i].verdict);
}

/* ---- JSON ------------------------------------------------------------------------------- */

static json_t *s_num(double x)
{
	return x >= 0 ? json_real(round(x * 1000) / 1000) : json_null();
}

static json_t *s_result_json(const bench_result_t *r)
{
	json_t *o = json_object();

	json_object_set_new(o, "rate", s_num(r->rate));
	json_object_set_new(o, "cpu_us_per_event", s_num(r->cpu_us));
	json_object_set_new(o, "busiest_thread", s_num(r->busiest));
	json_object_set_new(o, "p50_us", s_num(r->p50_us));
	json_object_set_new(o, "p99_us", s_num(r->p99_us));
	json_object_set_new(o, "p999_us", s_num(r->p999_us));
	json_object_set_new(o, "rss_mib", s_num(r->rss_mib));
	if (r->note[0])
		json_object_set_new(o, "note", json_string(r->note));
	return o;
}

static int s_write_json(const bench_params_t *p, const char *path, const char *when,
			const char *machine)
{
	json_t *root = json_object(), *rows = json_object(), *targets = json_array();
	int rc;

	json_object_set_new(root, "when", json_string(when));
	json_object_set_new(root, "machine", json_string(machine));
	json_object_set_new(root, "mode", json_string(p->full ? "full" : "quick"));
	json_object_set_new(root, "repetitions", json_integer(p->reps));
	json_object_set_new(root, "lat_rate", json_integer(p->lat_rate));
	for (size_t i = 0; i < N_SPECS; i++) {
		const row_t *row = &s_rows[i];
		json_t *o, *reps;

		if (!row->ran)
			continue;
		o = json_object();
		json_object_set_new(o, "label", json_string(row->spec->label));
		json_object_set_new(o, "group", json_string(row->spec->group));
		json_object_set_new(o, "size", json_integer(row->spec->size));
		if (row->spec->vs)
			json_object_set_new(o, "vs", json_string(row->spec->vs));
		if (row->na[0]) {
			json_object_set_new(o, "status", json_string("n/a"));
			json_object_set_new(o, "reason", json_string(row->na));
		} else {
			json_object_set_new(o, "status", json_string("ok"));
			json_object_set_new(o, "median", s_result_json(&row->med));
			json_object_set_new(o, "min", s_result_json(&row->lo));
			json_object_set_new(o, "max", s_result_json(&row->hi));
			reps = json_array();
			for (int k = 0; k < row->n_reps; k++)
				json_array_append_new(
					reps, row->reps[k].na[0]
						      ? json_pack("{s:s}", "na", row->reps[k].na)
						      : s_result_json(&row->reps[k]));
			json_object_set_new(o, "repetitions", reps);
		}
		json_object_set_new(rows, row->spec->id, o);
	}
	json_object_set_new(root, "rows", rows);
	for (int i = 0; i < s_n_targets; i++) {
		const target_t *t = &s_targets[i];
		json_array_append_new(targets,
				      json_pack("{s:s, s:o, s:o, s:s}", "target", t->text, "met",
						t->met < 0 ? json_null() : json_boolean(t->met),
						"ratio", t->met < 0 ? json_null() : s_num(t->ratio),
						"verdict", t->verdict));
	}
	json_object_set_new(root, "targets", targets);
	rc = json_dump_file(root, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(root);
	return rc;
}

/* ---- main ------------------------------------------------------------------------------- */

static char s_tmp_root[1024];

static void s_on_signal(int sig)
{
	bench_kill_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void s_at_exit(void)
{
	bench_kill_all();
	if (!s_tmp_root[0])
		return;
	if (getenv("KANAL_BENCH_KEEP") || bench_keep_scratch)
		fprintf(stderr,
			"kbench: kept %s (the failed runs' folders hold kanald's log); "
			"remove it when done\n",
			s_tmp_root);
	else
		bench_rmdir(s_tmp_root);
}

static void s_machine(char *buf, size_t size)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[256], model[128] = "unknown CPU";
	struct utsname u;

	while (f && fgets(line, sizeof line, f)) {
		char *colon = strchr(line, ':');
		if (!strncmp(line, "model name", 10) && colon) {
			snprintf(model, sizeof model, "%s", colon + 2);
			model[strcspn(model, "\n")] = '\0';
			break;
		}
	}
	if (f)
		fclose(f);
	uname(&u);
	snprintf(buf, size, "%ld CPUs (%s), Linux %s", sysconf(_SC_NPROCESSORS_ONLN), model,
		 u.release);
}

static void s_usage(void)
{
	fprintf(stderr, "usage: kbench [-b BUILD] [-B BEFORE] [-o RESULTS.json] [--full]\n"
			"       kbench gwload ENDPOINT COUNT SIZE BATCH\n");
}

/* Whether BENCH_ONLY selects the row `id`: no BENCH_ONLY selects all; otherwise any of its
 * comma-separated texts must occur in the id. */
static bool s_selected(const char *only, const char *id)
{
	const char *p = only;

	if (!only || !*only)
		return true;
	while (*p) {
		size_t len = strcspn(p, ",");
		char part[64];

		if (len && len < sizeof part) {
			memcpy(part, p, len);
			part[len] = '\0';
			if (strstr(id, part))
				return true;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return false;
}

int main(int argc, char **argv)
{
	bench_params_t p = { 0 };
	const char *out = "bench/results/latest.json", *build = "build", *before = NULL, *env;
	bench_params_t pb;
	char when[64], machine[256];
	time_t now = time(NULL);
	struct tm tm;

	if (argc > 1 && !strcmp(argv[1], "gwload"))
		return kanal_gwload_main(argc, argv);
	env = getenv("FULL");
	p.full = env && *env && strcmp(env, "0");
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-b") && i + 1 < argc)
			build = argv[++i];
		else if (!strcmp(argv[i], "-B") && i + 1 < argc)
			before = argv[++i];
		else if (!strcmp(argv[i], "-o") && i + 1 < argc)
			out = argv[++i];
		else if (!strcmp(argv[i], "--full"))
			p.full = true;
		else {
			s_usage();
			return 2;
		}
	}
	if (!realpath(build, p.build) || access(p.build, F_OK) != 0) {
		fprintf(stderr, "kbench: no build tree at '%s' (run make first)\n", build);
		return 1;
	}
	if (before && (!realpath(before, pb.build) || access(pb.build, F_OK) != 0)) {
		fprintf(stderr, "kbench: no build tree at '%s' (-B)\n", before);
		return 1;
	}
	if (!realpath("/proc/self/exe", p.self))
		snprintf(p.self, sizeof p.self, "%s", argv[0]);
	/* Five in both modes: on a 2-vCPU machine a kanal run varies +-15-30 % from pass to
	 * pass, and with three one unlucky pass could decide a ratio of two kanal rows. Quick
	 * mode stays under three minutes (about 2.5) on a 2-core machine; full mode counts
	 * five times the events and gives tighter spreads. */
	p.reps = 5;
	p.n_zmq = p.full ? 5000000 : 2000000;
	p.n_sqlite = p.full ? 1000000 : 200000;
	p.n_kanal = p.full ? 1500000 : 600000;
	p.n_gateway = p.full ? 200000 : 40000;
	p.n_peer = p.full ? 200000 : 30000;
	p.n_blob = p.full ? 6000 : 2000;
	p.lat_rate = 10000;
	p.lat_seconds = p.full ? 10 : 2;
	if ((env = getenv("BENCH_REPS")) && atoi(env) > 0)
		p.reps = atoi(env) > MAX_REPS ? MAX_REPS : atoi(env);
	p.only = getenv("BENCH_ONLY");

	snprintf(s_tmp_root, sizeof s_tmp_root, "/tmp/kanal-bench.XXXXXX");
	if (!mkdtemp(s_tmp_root)) {
		fprintf(stderr, "kbench: cannot make a scratch folder: %s\n", strerror(errno));
		return 1;
	}
	snprintf(p.tmp, sizeof p.tmp, "%s", s_tmp_root);
	atexit(s_at_exit);
	signal(SIGINT, s_on_signal);
	signal(SIGTERM, s_on_signal);
	signal(SIGPIPE, SIG_IGN);

	localtime_r(&now, &tm);
	strftime(when, sizeof when, "%Y-%m-%d %H:%M %Z", &tm);
	s_machine(machine, sizeof machine);
	fprintf(stderr, "kbench: %s mode, %d repetitions, %s\n", p.full ? "full" : "quick", p.reps,
		machine);
	/* Repetitions are interleaved — every row once, then every row again — so that a
	 * slow phase of the machine (another VM on the host, a checkpoint storm) lands on all
	 * rows alike instead of on the few that happened to run then, and each ratio compares
	 * figures measured minutes, not seconds, apart at worst. */
	if (before) {
		char keep[sizeof pb.build];
		memcpy(keep, pb.build, sizeof keep);
		pb = p;
		memcpy(pb.build, keep, sizeof keep);
	}
	for (size_t i = 0; i < N_SPECS; i++)
		s_rows[i].spec = s_before[i].spec = &s_specs[i];
	for (int rep = 0; rep < p.reps; rep++)
		for (size_t i = 0; i < N_SPECS; i++) {
			bool compare = before && !strcmp(s_specs[i].group, "kanal");
			if (!s_selected(p.only, s_specs[i].id))
				continue;
			/* Which tree goes first alternates, so neither always runs warm. */
			if (compare && rep % 2 == 0) {
				fprintf(stderr, "  before:");
				s_run_rep(&pb, &s_before[i], rep);
			}
			s_run_rep(&p, &s_rows[i], rep);
			if (compare && rep % 2 == 1) {
				fprintf(stderr, "  before:");
				s_run_rep(&pb, &s_before[i], rep);
			}
		}
	for (size_t i = 0; i < N_SPECS; i++) {
		if (s_rows[i].ran)
			s_summarise(&s_rows[i]);
		if (s_before[i].ran)
			s_summarise(&s_before[i]);
	}
	s_targets_judge();

	printf("\nkanal benchmarks — %s mode, median of %d repetitions (± half the range), %s, "
	       "%s\n",
	       p.full ? "full" : "quick", p.reps, machine, when);
	printf("\n  %-50s %11s %7s %7s %7s %-18s %5s\n", "throughput", "events/s", "spread",
	       "CPU/ev", "busiest", "judged against", "ratio");
	printf("  (CPU/ev: CPU µs per event of the system under test; busiest: its busiest "
	       "thread's\n"
	       "   share of a core; ratio: median over the passes of this row's rate over the\n"
	       "   judged-against row's rate in the same pass)\n");
	s_print_group("Baselines: the limits of kanal's parts", "baseline", BENCH_RATE);
	s_print_group("kanal (source plugin → kanald → sink plugin unless said)", "kanal",
		      BENCH_RATE);
	s_print_group("Peers (one publisher, one consumer, loopback, persistence on)", "peer",
		      BENCH_RATE);
	printf("\n  %-50s %9s %9s %9s\n", "latency at 10,000 events/s", "p50", "p99", "p99.9");
	s_print_group("kanal, end to end (emit → on_message)", "kanal", BENCH_LATENCY);
	s_print_group("Peers, end to end (publish → consumer callback)", "peer", BENCH_LATENCY);
	s_print_group("Memory", "kanal", BENCH_MEMORY);
	s_print_targets();
	if (before)
		s_print_before_after(before);
	if (s_write_json(&p, out, when, machine) != 0)
		fprintf(stderr, "kbench: cannot write %s\n", out);
	else
		printf("\nWritten to %s\n", out);
	return 0;
}
