/*
 * bench/bench.h — what the parts of kbench, kanal's benchmark driver, share: the result of
 * one measurement, the run parameters (quick or full), and the helpers for time, files,
 * child processes and temporary folders.
 *
 * kbench measures three kinds of figure — the raw limits of kanal's parts (base.c), kanal
 * itself (kanal.c) and the peers a municipality would pick instead (peers.c) — and kbench.c
 * repeats each one, takes the median and spread, prints the table and the targets, and
 * writes results/latest.json. Every measurement function has the same shape:
 *
 *   int fn(const bench_params_t *p, const bench_spec_t *spec, bench_result_t *r);
 *
 * It fills r and returns 0, or returns -1 after writing why into r->na (the row is then
 * printed as "n/a — <why>"). A figure that cannot be measured in this build (the durable
 * journal, a peer whose package is missing) says so in r->na rather than inventing a number.
 */
#ifndef KANAL_BENCH_H
#define KANAL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One measurement. A field that does not apply is negative. */
typedef struct bench_result {
	char na[200];   /* non-empty: not measured, and why */
	double rate;    /* events per second, delivered, in the steady window */
	double cpu_us;  /* CPU microseconds per event, whole process (or system under test) */
	double busiest; /* the busiest thread's share of one core during the window */
	double p50_us, p99_us, p999_us; /* end-to-end latency */
	double rss_mib;                 /* resident memory of the system under test */
	char note[200]; /* anything worth printing beside the figure (last repetition's) */
} bench_result_t;

typedef struct bench_params {
	bool full;          /* FULL=1: more events, more repetitions */
	int reps;           /* repetitions of each measurement */
	long n_zmq;         /* messages per raw ZeroMQ run */
	long n_sqlite;      /* rows per raw SQLite run */
	long n_kanal;       /* events per kanal throughput run (512 B; fewer for 4 KiB) */
	long n_gateway;     /* events per gateway run */
	long n_peer;        /* messages per peer throughput run */
	long n_blob;        /* blobs per blob run (kanal's and the raw file store's) */
	int lat_rate;       /* events/s of the latency runs */
	double lat_seconds; /* length of a latency run */
	char build[1024];   /* absolute path of the build tree (BUILD) */
	char tmp[1024];     /* this run's scratch folder */
	char self[1024];    /* absolute path of kbench itself, to start helper processes */
	const char *only;   /* run only rows whose id contains this (BENCH_ONLY), or NULL */
} bench_params_t;

typedef struct bench_spec bench_spec_t;
typedef int (*bench_fn)(const bench_params_t *p, const bench_spec_t *spec, bench_result_t *r);

typedef enum bench_kind {
	BENCH_RATE,    /* events/s */
	BENCH_LATENCY, /* p50 / p99 / p99.9 at a steady rate */
	BENCH_MEMORY,  /* resident size */
} bench_kind_t;

/* One row of the table. */
struct bench_spec {
	const char *id;    /* key in latest.json */
	const char *group; /* "baseline", "kanal", "peer" */
	const char *label; /* what the table prints */
	bench_kind_t kind;
	bench_fn fn;
	int size;       /* event bytes */
	int variant;    /* meaning depends on fn */
	const char *vs; /* id of the row this one's rate is judged against, or NULL */
	bool durable;   /* kanal rows: journal on */
};

/* ---- the measurements ---- */

/* base.c: the limits of kanal's parts. */
int base_zmq_pushpull(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r);
int base_zmq_hop(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r);
int base_sqlite_wal(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r);
int base_blob_files(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r);

/* The blob rows' content: a photo or a letter's PDF. */
#define BENCH_BLOB_SIZE (256 * 1024)

/* kanal.c: kanald with the bench plugins. variant selects the workload (KANAL_RUN_*),
 * spec->durable the journal mode. */
enum {
	KANAL_RUN_ONE_ROUTE,
	KANAL_RUN_WHERE,
	KANAL_RUN_FANOUT3,
	KANAL_RUN_TRANSFORM, /* one route whose transform: builds 5 fields from the data */
	KANAL_RUN_ROUTES,    /* size is the event size; the route count is in kanal_routes */
	KANAL_RUN_GATEWAY,   /* one event per request, pipelined */
	KANAL_RUN_GATEWAY_BATCH,
	KANAL_RUN_SQLCIPHER, /* one route, the durable journal encrypted (journal.key_file) */
	KANAL_RUN_CLUSTER,   /* one route, journal.mode cluster on one nats-server (R1) */
	KANAL_RUN_BLOB,      /* one route, each event with a BENCH_BLOB_SIZE blob (issue 15) */
};
int kanal_throughput(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r);
int kanal_routes(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r);
int kanal_latency(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r);
int kanal_pending_rss(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r);
/* 3 kanald nodes on a 3-node nats-server cluster (R3) at a steady 5,000 events/s. */
int kanal_cluster3(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r);
/* The separate gateway client process: `kbench gwload ENDPOINT COUNT SIZE BATCH`. */
int kanal_gwload_main(int argc, char **argv);

/* peers.c: Mosquitto and NATS JetStream. variant 0: throughput; 1: latency at lat_rate;
 * 2 (NATS only): throughput through two streams, a relay between (cluster mode's shape). */
int peer_mosquitto(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r);
int peer_nats(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r);
/* Starts nats-server with JetStream on 127.0.0.1:port, storing under dir (peers.c). */
pid_t peer_nats_start(const char *dir, int port);
/* Starts an n-node JetStream cluster on 127.0.0.1 (peers.c); pids[] gets each node's pid. */
int peer_nats_start_cluster(const char *dir, int n, const int *ports, const int *cluster_ports,
			    pid_t *pids);

/* ---- helpers (util.c) ---- */

/* Set when a run failed and left its scratch folder (with kanald's log) to be read. */
extern bool bench_keep_scratch;

int64_t bench_now_ns(void); /* CLOCK_MONOTONIC */
int64_t bench_cpu_ns(void); /* CLOCK_PROCESS_CPUTIME_ID */
void bench_sleep_ms(int ms);
/* Sorts v and returns the q-quantile (nearest rank), or -1 when n is 0. */
int64_t bench_quantile(int64_t *v, size_t n, double q);
/* Sets r->na from a format and returns -1, for `return bench_na(r, "…")`. */
int bench_na(bench_result_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clears r: every figure unknown (-1), no note, measured. */
void bench_result_init(bench_result_t *r);

/* Makes a fresh folder under p->tmp named after tag; returns it (malloc'd) or NULL. */
char *bench_mkdir(const bench_params_t *p, const char *tag);
/* Removes a folder and everything in it. */
void bench_rmdir(const char *dir);
/* Writes text to path; 0 or -1. */
int bench_write_file(const char *path, const char *text);
/* Reads a whole file (malloc'd, NUL-terminated) or NULL. */
char *bench_read_file(const char *path);

/* Starts argv[0] with argv, stdout and stderr appended to log_path, in its own process
 * group; remembers the pid so that bench_kill_all can clean up. Returns the pid or -1. */
pid_t bench_spawn(char *const argv[], const char *log_path);
/* Sends sig, waits up to timeout_ms, then SIGKILLs and reaps. Returns the exit status
 * (128+signal when killed) or -1. Forgets the pid. */
int bench_stop(pid_t pid, int sig, int timeout_ms);
/* True while pid has not exited (reaps it when it has). */
bool bench_alive(pid_t pid);
/* Kills every process bench_spawn started and has not been stopped (atexit, signals). */
void bench_kill_all(void);
/* Resident size (VmRSS) and its peak (VmHWM) of pid in MiB; -1 when unknown. */
double bench_rss_mib(pid_t pid, bool peak);
/* A TCP port on 127.0.0.1 that was free a moment ago, or -1. */
int bench_free_port(void);
/* CPU seconds (user + system) process pid has used, from /proc; -1 when unknown. */
double bench_proc_cpu_s(pid_t pid);
/* Waits up to timeout_ms until something accepts TCP connections on 127.0.0.1:port. */
bool bench_wait_port(int port, int timeout_ms);
/* Waits up to timeout_ms until path exists. */
bool bench_wait_file(const char *path, int timeout_ms);

#endif
