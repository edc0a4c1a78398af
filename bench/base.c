/*
 * bench/base.c — the baselines: what kanal's own parts can do when nothing of kanal is in
 * the way. kanal's figures are judged as ratios of these, measured in the same run.
 *
 *  - raw ZeroMQ PUSH/PULL: one producer thread sends `size`-byte messages over inproc to
 *    one consumer thread — the cost of one inter-thread hop;
 *  - raw broker hop: producer → forwarder thread → consumer. The producer sends a small
 *    header frame (a route key) and the body; the forwarder reads the header, looks the
 *    key up in a table of several outputs and passes the body on to the chosen one without
 *    copying it. This is what kanald's router thread does, minus everything kanal adds;
 *  - raw SQLite: WAL mode, synchronous=NORMAL (kanal's default sync level, "process"),
 *    `size`-byte rows inserted 1000 per transaction with a prepared statement — the
 *    ceiling for the durable journal.
 *
 * Throughput is measured as kanal's is: at the consumer, from message number N/10 to the
 * last, so start-up is left out and only messages that arrived count. CPU per message is
 * the process's CPU clock over the same window.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "bench.h"

#define HOP_OUTPUTS 4
#define HOP_KEY 3 /* the route key every message carries */
#define RECV_TIMEOUT_MS 10000

typedef struct zrun {
	void *zctx;
	long n;
	int size;
	bool hop;
	int rc; /* a thread sets -1 on a failure */
	/* measured by the consumer */
	int64_t t_warm, t_last, cpu_warm, cpu_last;
	long received;
} zrun_t;

static void *s_producer(void *arg)
{
	zrun_t *z = arg;
	void *s = zmq_socket(z->zctx, ZMQ_PUSH);
	unsigned char *body = calloc(1, (size_t)z->size);
	uint64_t key = HOP_KEY;

	if (!s || !body || zmq_connect(s, z->hop ? "inproc://hop-in" : "inproc://pp") < 0) {
		z->rc = -1;
		goto out;
	}
	memset(body, 'x', (size_t)z->size);
	for (long i = 0; i < z->n; i++) {
		/* The message is built afresh each time (zmq_send copies it), as an event is. */
		memcpy(body, &i, sizeof i);
		if (z->hop && zmq_send(s, &key, sizeof key, ZMQ_SNDMORE) < 0) {
			z->rc = -1;
			break;
		}
		if (zmq_send(s, body, (size_t)z->size, 0) < 0) {
			z->rc = -1;
			break;
		}
	}
out:
	free(body);
	if (s)
		zmq_close(s);
	return NULL;
}

/* The forwarder: reads [key][body], picks the output for key, forwards the body. */
static void *s_forwarder(void *arg)
{
	zrun_t *z = arg;
	void *in = zmq_socket(z->zctx, ZMQ_PULL);
	void *out[HOP_OUTPUTS] = { 0 };
	int table[16];
	int timeout = RECV_TIMEOUT_MS;

	for (int k = 0; k < 16; k++)
		table[k] = k % HOP_OUTPUTS;
	zmq_setsockopt(in, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
	if (zmq_bind(in, "inproc://hop-in") < 0) {
		z->rc = -1;
		goto done;
	}
	for (int k = 0; k < HOP_OUTPUTS; k++) {
		char ep[64];
		out[k] = zmq_socket(z->zctx, ZMQ_PUSH);
		snprintf(ep, sizeof ep, "inproc://hop-out-%d", k);
		if (zmq_bind(out[k], ep) < 0) {
			z->rc = -1;
			goto done;
		}
	}
	for (long i = 0; i < z->n; i++) {
		zmq_msg_t head, body;
		uint64_t key = 0;

		zmq_msg_init(&head);
		zmq_msg_init(&body);
		if (zmq_msg_recv(&head, in, 0) < 0 || !zmq_msg_more(&head) ||
		    zmq_msg_recv(&body, in, 0) < 0) {
			zmq_msg_close(&head);
			zmq_msg_close(&body);
			z->rc = -1;
			break;
		}
		if (zmq_msg_size(&head) == sizeof key)
			memcpy(&key, zmq_msg_data(&head), sizeof key);
		zmq_msg_close(&head);
		if (zmq_msg_send(&body, out[table[key % 16]], 0) < 0) {
			zmq_msg_close(&body);
			z->rc = -1;
			break;
		}
	}
done:
	for (int k = 0; k < HOP_OUTPUTS; k++)
		if (out[k])
			zmq_close(out[k]);
	zmq_close(in);
	return NULL;
}

/* The consumer: counts messages and stamps the window. Runs on the calling thread. */
static void s_consume(zrun_t *z, void *in)
{
	long warm = z->n / 10;
	zmq_msg_t m;

	zmq_msg_init(&m);
	for (long i = 1; i <= z->n; i++) {
		if (zmq_msg_recv(&m, in, 0) < 0) {
			z->rc = -1;
			break;
		}
		z->received = i;
		if (i == warm) {
			z->t_warm = bench_now_ns();
			z->cpu_warm = bench_cpu_ns();
		}
	}
	z->t_last = bench_now_ns();
	z->cpu_last = bench_cpu_ns();
	zmq_msg_close(&m);
}

static int s_zmq_run(const bench_params_t *p, const bench_spec_t *spec, bench_result_t *r, bool hop)
{
	zrun_t z = { .n = p->n_zmq, .size = spec->size, .hop = hop };
	pthread_t prod, fwd;
	bool fwd_started = false;
	void *in;
	int timeout = RECV_TIMEOUT_MS;
	double window;

	if (spec->size >= 4096)
		z.n = p->n_zmq / 2;
	z.zctx = zmq_ctx_new();
	in = zmq_socket(z.zctx, ZMQ_PULL);
	zmq_setsockopt(in, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
	if (hop) {
		char ep[64];
		if (pthread_create(&fwd, NULL, s_forwarder, &z) != 0) {
			zmq_close(in);
			zmq_ctx_term(z.zctx);
			return bench_na(r, "cannot start the forwarder thread");
		}
		fwd_started = true;
		/* inproc connect before bind works since libzmq 4.0. */
		snprintf(ep, sizeof ep, "inproc://hop-out-%d", HOP_KEY % HOP_OUTPUTS);
		zmq_connect(in, ep);
	} else {
		zmq_bind(in, "inproc://pp");
	}
	if (pthread_create(&prod, NULL, s_producer, &z) != 0) {
		z.rc = -1;
	} else {
		s_consume(&z, in);
		pthread_join(prod, NULL);
	}
	if (fwd_started)
		pthread_join(fwd, NULL);
	zmq_close(in);
	zmq_ctx_term(z.zctx);
	if (z.rc < 0 || z.received != z.n)
		return bench_na(r, "raw ZeroMQ run failed after %ld of %ld messages", z.received,
				z.n);
	window = (double)(z.t_last - z.t_warm) / 1e9;
	r->rate = (double)(z.n - z.n / 10) / window;
	r->cpu_us = (double)(z.cpu_last - z.cpu_warm) / 1e3 / (double)(z.n - z.n / 10);
	return 0;
}

int base_zmq_pushpull(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r)
{
	return s_zmq_run(p, s, r, false);
}

int base_zmq_hop(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r)
{
	return s_zmq_run(p, s, r, true);
}

/* ---- SQLite ------------------------------------------------------------------------------ */

#define SQLITE_BATCH 1000

static int s_exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

int base_sqlite_wal(const bench_params_t *p, const bench_spec_t *spec, bench_result_t *r)
{
	char *dir = bench_mkdir(p, "sqlite");
	char path[1200];
	sqlite3 *db = NULL;
	sqlite3_stmt *ins = NULL;
	unsigned char *body = calloc(1, (size_t)spec->size);
	long n = spec->size >= 4096 ? p->n_sqlite / 2 : p->n_sqlite;
	long warm = (n / 10 / SQLITE_BATCH) * SQLITE_BATCH;
	int64_t t_warm = 0, cpu_warm = 0, t_end, cpu_end;
	int rc = -1;

	if (!dir || !body) {
		bench_na(r, "out of memory");
		goto out;
	}
	memset(body, 'x', (size_t)spec->size);
	snprintf(path, sizeof path, "%s/journal.db", dir);
	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    s_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;") < 0 ||
	    s_exec(db, "CREATE TABLE events (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)") < 0 ||
	    sqlite3_prepare_v2(db, "INSERT INTO events (seq, body) VALUES (?, ?)", -1, &ins,
			       NULL) != SQLITE_OK) {
		bench_na(r, "SQLite: %s", db ? sqlite3_errmsg(db) : "cannot open");
		goto out;
	}
	for (long i = 0; i < n; i++) {
		if (i == warm) {
			t_warm = bench_now_ns();
			cpu_warm = bench_cpu_ns();
		}
		if (i % SQLITE_BATCH == 0 && s_exec(db, "BEGIN") < 0)
			break;
		memcpy(body, &i, sizeof i);
		sqlite3_bind_int64(ins, 1, i + 1);
		sqlite3_bind_blob(ins, 2, body, spec->size, SQLITE_STATIC);
		if (sqlite3_step(ins) != SQLITE_DONE)
			break;
		sqlite3_reset(ins);
		if ((i + 1) % SQLITE_BATCH == 0 || i + 1 == n) {
			if (s_exec(db, "COMMIT") < 0)
				break;
			if (i + 1 == n)
				rc = 0;
		}
	}
	t_end = bench_now_ns();
	cpu_end = bench_cpu_ns();
	if (rc < 0) {
		bench_na(r, "SQLite insert failed: %s", sqlite3_errmsg(db));
		goto out;
	}
	r->rate = (double)(n - warm) / ((double)(t_end - t_warm) / 1e9);
	r->cpu_us = (double)(cpu_end - cpu_warm) / 1e3 / (double)(n - warm);
out:
	sqlite3_finalize(ins);
	sqlite3_close(db);
	free(body);
	if (dir) {
		bench_rmdir(dir);
		free(dir);
	}
	return rc;
}

/* The raw file store: what a durable store of files must do at the least for each blob — write
 * it to a new file, fsync it, rename it into place, read it back whole, and remove it —
 * one blob after the other on one thread, without a digest. kanal's blob row does the
 * same through kanal_blob_put (content-addressed: SHA-256, tmp file, fsync, rename), an
 * event naming it, the sink's kanal_blob_get (the digest checked again) and the broker's
 * removal once the delivery is done. */
int base_blob_files(const bench_params_t *p, const bench_spec_t *spec, bench_result_t *r)
{
	char *dir = bench_mkdir(p, "blobs");
	size_t size = (size_t)spec->size;
	unsigned char *body = malloc(size), *back = malloc(size);
	long n = p->n_blob, warm = n / 10;
	int64_t t_warm = 0, cpu_warm = 0, t_end, cpu_end;
	int rc = -1;

	if (!dir || !body || !back) {
		bench_na(r, "out of memory");
		goto out;
	}
	memset(body, 'b', size);
	for (long i = 0; i < n; i++) {
		char tmp[1300], final[1300];
		int fd;

		if (i == warm) {
			t_warm = bench_now_ns();
			cpu_warm = bench_cpu_ns();
		}
		memcpy(body, &i, sizeof i);
		snprintf(tmp, sizeof tmp, "%s/tmp.%ld", dir, i);
		snprintf(final, sizeof final, "%s/blob.%ld", dir, i);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 || write(fd, body, size) != (ssize_t)size || fsync(fd) != 0 ||
		    close(fd) != 0 || rename(tmp, final) != 0) {
			bench_na(r, "cannot write %s: %s", tmp, strerror(errno));
			goto out;
		}
		fd = open(final, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || read(fd, back, size) != (ssize_t)size || close(fd) != 0 ||
		    memcmp(back, body, size) != 0 || unlink(final) != 0) {
			bench_na(r, "cannot read back %s: %s", final, strerror(errno));
			goto out;
		}
	}
	t_end = bench_now_ns();
	cpu_end = bench_cpu_ns();
	r->rate = (double)(n - warm) / ((double)(t_end - t_warm) / 1e9);
	r->cpu_us = (double)(cpu_end - cpu_warm) / 1e3 / (double)(n - warm);
	rc = 0;
out:
	free(body);
	free(back);
	if (dir) {
		bench_rmdir(dir);
		free(dir);
	}
	return rc;
}
