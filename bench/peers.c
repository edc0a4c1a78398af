/*
 * bench/peers.c — the brokers a municipality would pick instead of kanal, on the same
 * workload: 512-byte messages, one publisher, one consumer, loopback, persistence on.
 *
 *  - Mosquitto (Debian `mosquitto`, via libmosquitto): QoS 1 both ways, `persistence true`,
 *    a persistent session for the subscriber (clean_session false);
 *  - NATS JetStream (Debian `nats-server`, via the nats.c client, libnats-dev): a stream with
 *    file storage, asynchronous publishes acknowledged by the server, a push consumer that
 *    acknowledges each message (AckExplicit); and, as the like-for-like ceiling of kanal's
 *    cluster mode, the same through two streams: a relay consumes the first and publishes
 *    each message again to the second (asynchronously, with the same window), where the
 *    consumer takes it (variant 2).
 *
 * Each run starts its own server on a free port on 127.0.0.1 with a fresh temporary storage
 * folder and stops it afterwards. The publisher and the consumer are threads of kbench, each
 * with its own connection. A message carries its sequence number and the CLOCK_MONOTONIC
 * time it was published in its first 16 bytes. variant 0 publishes as fast as the server
 * acknowledges (the publisher keeps a window of unacknowledged messages) and measures the
 * rate at the consumer, from message N/10 to the last; variant 1 publishes at the latency
 * rate (10,000/s in 1 ms bursts, like bench_source) and measures publish → consumer callback.
 * CPU per message is the server process's CPU over the consumer's window (the clients'
 * CPU is not counted).
 *
 * kbench is built with HAVE_MOSQUITTO / HAVE_NATS when the libraries are installed; without
 * them the rows say which Debian package is missing.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define PEER_WINDOW 256 /* unacknowledged publishes the publisher keeps in flight */
#define PEER_TIMEOUT_S 120

/* ---- what both peers share: the consumer's bookkeeping, pacing, server CPU --------------- */

#if defined(HAVE_MOSQUITTO) || defined(HAVE_NATS)

typedef struct peer_run {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	long n, warm;
	long acked;    /* publisher: acknowledgements from the server */
	long received; /* consumer */
	long out_of_order, last_seq;
	int64_t t_warm, t_last;
	double cpu_warm, cpu_last; /* server CPU seconds */
	int64_t *lat;
	size_t n_lat;
	pid_t server;
	bool ready; /* consumer subscribed */
	bool failed;
	char error[160];
} peer_run_t;

static int s_run_init(peer_run_t *pr, const bench_params_t *p, int variant)
{
	memset(pr, 0, sizeof *pr);
	pthread_mutex_init(&pr->mu, NULL);
	pthread_cond_init(&pr->cv, NULL);
	pr->n = variant != 1 ? p->n_peer : (long)(p->lat_rate * p->lat_seconds);
	pr->warm = pr->n / 10;
	pr->lat = malloc((size_t)pr->n * sizeof *pr->lat);
	pr->server = -1;
	return pr->lat ? 0 : -1;
}

static void s_run_free(peer_run_t *pr)
{
	free(pr->lat);
	pthread_mutex_destroy(&pr->mu);
	pthread_cond_destroy(&pr->cv);
}

/* The consumer saw one message. */
static void s_consumed(peer_run_t *pr, const void *payload, size_t len)
{
	int64_t now = bench_now_ns();
	int64_t seq = 0, stamp = 0;

	if (len >= 16) {
		memcpy(&seq, payload, 8);
		memcpy(&stamp, (const char *)payload + 8, 8);
	}
	pthread_mutex_lock(&pr->mu);
	pr->received++;
	if (seq != pr->last_seq + 1)
		pr->out_of_order++;
	pr->last_seq = seq;
	if (pr->received == pr->warm) {
		pr->t_warm = now;
		pr->cpu_warm = bench_proc_cpu_s(pr->server);
	} else if (pr->received > pr->warm && pr->received <= pr->n) {
		pr->lat[pr->n_lat++] = now - stamp;
	}
	if (pr->received == pr->n) {
		pr->t_last = now;
		pr->cpu_last = bench_proc_cpu_s(pr->server);
		pthread_cond_broadcast(&pr->cv);
	}
	pthread_mutex_unlock(&pr->mu);
}

/* Waits until the consumer has everything, or the deadline. Returns 0 or -1. */
static int s_wait_consumed(peer_run_t *pr)
{
	struct timespec dl;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += PEER_TIMEOUT_S;
	pthread_mutex_lock(&pr->mu);
	while (pr->received < pr->n && !pr->failed && rc == 0)
		rc = pthread_cond_timedwait(&pr->cv, &pr->mu, &dl);
	rc = pr->received >= pr->n ? 0 : -1;
	pthread_mutex_unlock(&pr->mu);
	return rc;
}

/* Fills the message for seq: seq and the publish time first, then padding. */
static void s_stamp(unsigned char *buf, int64_t seq)
{
	int64_t now = bench_now_ns();

	memcpy(buf, &seq, 8);
	memcpy(buf + 8, &now, 8);
}

/* Paced publishing: how many messages are due now to keep `rate` per second since t0,
 * released once per millisecond like bench_source does. Sleeps to the next millisecond
 * when none is due. */
static long s_due(int64_t t0, long rate, long sent)
{
	for (;;) {
		int64_t elapsed_ms = (bench_now_ns() - t0) / 1000000;
		long due = (long)(rate * elapsed_ms / 1000) + 1 - sent;
		if (due > 0)
			return due;
		bench_sleep_ms(1);
	}
}

/* Fills r from a finished run. */
static void s_result(peer_run_t *pr, int variant, bench_result_t *r)
{
	double window = (double)(pr->t_last - pr->t_warm) / 1e9;

	if (variant != 1) {
		r->rate = (double)(pr->n - pr->warm) / window;
		if (pr->cpu_warm >= 0 && pr->cpu_last >= 0)
			r->cpu_us =
				(pr->cpu_last - pr->cpu_warm) * 1e6 / (double)(pr->n - pr->warm);
	}
	r->p50_us = (double)bench_quantile(pr->lat, pr->n_lat, 0.50) / 1e3;
	r->p99_us = (double)bench_quantile(pr->lat, pr->n_lat, 0.99) / 1e3;
	r->p999_us = (double)bench_quantile(pr->lat, pr->n_lat, 0.999) / 1e3;
	r->rss_mib = bench_rss_mib(pr->server, true);
	if (pr->out_of_order)
		snprintf(r->note, sizeof r->note, "%ld messages out of order", pr->out_of_order);
}

/* The first line a command prints (its version), or "" — for the notes. */
static void s_version(const char *cmd, char *buf, size_t size)
{
	FILE *f = popen(cmd, "r");

	buf[0] = '\0';
	if (!f)
		return;
	if (fgets(buf, (int)size, f))
		buf[strcspn(buf, "\n")] = '\0';
	pclose(f);
}

#endif /* HAVE_MOSQUITTO || HAVE_NATS */

/* ---- Mosquitto ------------------------------------------------------------------------------ */

#ifdef HAVE_MOSQUITTO
#include <mosquitto.h>

#define MQ_TOPIC "bench/ev"

/* The subscriber connected: subscribe with QoS 1. */
static void s_mq_on_connect(struct mosquitto *m, void *obj, int rc)
{
	peer_run_t *pr = obj;

	if (rc != 0) {
		pthread_mutex_lock(&pr->mu);
		pr->failed = true;
		snprintf(pr->error, sizeof pr->error, "mosquitto refused the connection (%d)", rc);
		pthread_cond_broadcast(&pr->cv);
		pthread_mutex_unlock(&pr->mu);
		return;
	}
	if (mosquitto_subscribe(m, NULL, MQ_TOPIC, 1) != 0) {
		pthread_mutex_lock(&pr->mu);
		pr->failed = true;
		pthread_cond_broadcast(&pr->cv);
		pthread_mutex_unlock(&pr->mu);
	}
}

static void s_mq_on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *qos)
{
	peer_run_t *pr = obj;

	(void)m, (void)mid, (void)n, (void)qos;
	pthread_mutex_lock(&pr->mu);
	pr->ready = true;
	pthread_cond_broadcast(&pr->cv);
	pthread_mutex_unlock(&pr->mu);
}

static void s_mq_on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
	(void)m;
	s_consumed(obj, msg->payload, (size_t)msg->payloadlen);
}

/* The publisher's PUBACKs: they open its window. */
static void s_mq_on_publish(struct mosquitto *m, void *obj, int mid)
{
	peer_run_t *pr = obj;

	(void)m, (void)mid;
	pthread_mutex_lock(&pr->mu);
	pr->acked++;
	pthread_cond_broadcast(&pr->cv);
	pthread_mutex_unlock(&pr->mu);
}

/* Waits up to timeout_s for cond (evaluated under the lock). */
#define WAIT_FOR(pr, cond, timeout_s)                                                              \
	do {                                                                                       \
		struct timespec dl_;                                                               \
		clock_gettime(CLOCK_REALTIME, &dl_);                                               \
		dl_.tv_sec += (timeout_s);                                                         \
		pthread_mutex_lock(&(pr)->mu);                                                     \
		while (!(cond) && !(pr)->failed &&                                                 \
		       pthread_cond_timedwait(&(pr)->cv, &(pr)->mu, &dl_) == 0)                    \
			;                                                                          \
		pthread_mutex_unlock(&(pr)->mu);                                                   \
	} while (0)

static pid_t s_mq_server(const bench_params_t *p, const char *dir, int port)
{
	char conf[1200], log[1200], text[2048];
	char *argv[] = { "/usr/sbin/mosquitto", "-c", conf, NULL };

	snprintf(conf, sizeof conf, "%s/mosquitto.conf", dir);
	snprintf(log, sizeof log, "%s/mosquitto.log", dir);
	snprintf(text, sizeof text,
		 "listener %d 127.0.0.1\n"
		 "allow_anonymous true\n"
		 "persistence true\n"
		 "persistence_location %s/\n"
		 "max_inflight_messages %d\n"
		 "max_queued_messages 0\n"
		 "log_dest stderr\n"
		 "log_type error\n"
		 "log_type warning\n",
		 port, dir, PEER_WINDOW);
	(void)p;
	if (bench_write_file(conf, text) < 0)
		return -1;
	return bench_spawn(argv, log);
}

int peer_mosquitto(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r)
{
	peer_run_t pr;
	char *dir = NULL;
	struct mosquitto *pub = NULL, *sub = NULL;
	unsigned char *buf = NULL;
	int port, rc = -1;
	char version[128];

	if (access("/usr/sbin/mosquitto", X_OK) != 0)
		return bench_na(r, "mosquitto is not installed (Debian package mosquitto)");
	if (s_run_init(&pr, p, s->variant) < 0 || !(buf = calloc(1, (size_t)s->size)))
		return bench_na(r, "out of memory");
	memset(buf, 'x', (size_t)s->size);
	mosquitto_lib_init();
	dir = bench_mkdir(p, "mosquitto");
	port = bench_free_port();
	if (!dir || port < 0 || (pr.server = s_mq_server(p, dir, port)) < 0) {
		bench_na(r, "cannot start mosquitto");
		goto out;
	}
	if (!bench_wait_port(port, 10000)) {
		bench_na(r, "mosquitto did not listen on 127.0.0.1:%d; see %s/mosquitto.log", port,
			 dir);
		goto out;
	}
	sub = mosquitto_new("kbench-sub", false, &pr);
	pub = mosquitto_new("kbench-pub", true, &pr);
	if (!sub || !pub) {
		bench_na(r, "mosquitto_new failed");
		goto out;
	}
	mosquitto_connect_callback_set(sub, s_mq_on_connect);
	mosquitto_subscribe_callback_set(sub, s_mq_on_subscribe);
	mosquitto_message_callback_set(sub, s_mq_on_message);
	mosquitto_publish_callback_set(pub, s_mq_on_publish);
	mosquitto_int_option(pub, MOSQ_OPT_SEND_MAXIMUM, PEER_WINDOW);
	mosquitto_int_option(sub, MOSQ_OPT_RECEIVE_MAXIMUM, PEER_WINDOW);
	if (mosquitto_connect(sub, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS ||
	    mosquitto_loop_start(sub) != MOSQ_ERR_SUCCESS) {
		bench_na(r, "cannot connect the subscriber to mosquitto");
		goto out;
	}
	WAIT_FOR(&pr, pr.ready, 10);
	if (!pr.ready) {
		bench_na(r, "the subscriber did not get its subscription: %s", pr.error);
		goto out;
	}
	if (mosquitto_connect(pub, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS ||
	    mosquitto_loop_start(pub) != MOSQ_ERR_SUCCESS) {
		bench_na(r, "cannot connect the publisher to mosquitto");
		goto out;
	}
	{
		int64_t t0 = bench_now_ns();
		long sent = 0;

		while (sent < pr.n && !pr.failed) {
			long due = s->variant != 1 ? pr.n - sent : s_due(t0, p->lat_rate, sent);

			for (long i = 0; i < due && sent < pr.n; i++) {
				WAIT_FOR(&pr, sent - pr.acked < PEER_WINDOW, 30);
				s_stamp(buf, sent + 1);
				if (mosquitto_publish(pub, NULL, MQ_TOPIC, s->size, buf, 1,
						      false) != MOSQ_ERR_SUCCESS) {
					pr.failed = true;
					break;
				}
				sent++;
			}
		}
	}
	if (s_wait_consumed(&pr) < 0) {
		bench_na(r, "mosquitto: the consumer got %ld of %ld messages", pr.received, pr.n);
		goto out;
	}
	s_result(&pr, s->variant, r);
	s_version("/usr/sbin/mosquitto -h 2>&1 | head -1", version, sizeof version);
	if (!r->note[0])
		snprintf(r->note, sizeof r->note, "%s", version);
	rc = 0;
out:
	if (pub) {
		mosquitto_disconnect(pub);
		mosquitto_loop_stop(pub, true);
		mosquitto_destroy(pub);
	}
	if (sub) {
		mosquitto_disconnect(sub);
		mosquitto_loop_stop(sub, true);
		mosquitto_destroy(sub);
	}
	if (pr.server > 0)
		bench_stop(pr.server, SIGTERM, 5000);
	if (dir) {
		if (rc == 0 || !getenv("KANAL_BENCH_KEEP"))
			bench_rmdir(dir);
		free(dir);
	}
	free(buf);
	s_run_free(&pr);
	mosquitto_lib_cleanup();
	return rc;
}
#else
int peer_mosquitto(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r)
{
	(void)p, (void)s;
	return bench_na(r, "kbench was built without libmosquitto (Debian libmosquitto-dev)");
}
#endif

/* ---- NATS JetStream -------------------------------------------------------------------------- */

/* Starts nats-server with JetStream (file storage under dir/store) on 127.0.0.1:port, its
 * log in dir/nats.log; the peer row and kanal's cluster-mode rows use it. Returns the pid or
 * -1. */
pid_t peer_nats_start(const char *dir, int port)
{
	char portstr[16], store[1200], log[1200];
	char *argv[] = {
		"/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", portstr, "-js", "-sd", store, NULL
	};

	snprintf(portstr, sizeof portstr, "%d", port);
	snprintf(store, sizeof store, "%s/store", dir);
	snprintf(log, sizeof log, "%s/nats.log", dir);
	return bench_spawn(argv, log);
}

/* Starts an n-node nats-server cluster (JetStream, file storage under dir/n<i>-store) on
 * 127.0.0.1: node i listens on ports[i] and meets the others on cluster_ports[i]; its log is
 * dir/nats-n<i>.log. Fills pids[] (-1 where a start failed) and returns 0, or -1 when a node
 * did not start. JetStream elects its meta leader after the nodes meet: a client waits for
 * it (kanald retries for 20 s). */
int peer_nats_start_cluster(const char *dir, int n, const int *ports, const int *cluster_ports,
			    pid_t *pids)
{
	int rc = 0;

	for (int i = 0; i < n; i++) {
		char portstr[16], name[16], store[1200], log[1200], listen[64], routes[512] = "";
		char *argv[] = { "/usr/sbin/nats-server",
				 "-a",
				 "127.0.0.1",
				 "-p",
				 portstr,
				 "-n",
				 name,
				 "-js",
				 "-sd",
				 store,
				 "--cluster_name",
				 "kbench",
				 "--cluster",
				 listen,
				 "--routes",
				 routes,
				 NULL };
		size_t used = 0;

		for (int k = 0; k < n; k++)
			if (k != i)
				used += (size_t)snprintf(routes + used, sizeof routes - used,
							 "%snats-route://127.0.0.1:%d",
							 used ? "," : "", cluster_ports[k]);
		snprintf(portstr, sizeof portstr, "%d", ports[i]);
		snprintf(name, sizeof name, "n%d", i);
		snprintf(store, sizeof store, "%s/n%d-store", dir, i);
		snprintf(listen, sizeof listen, "nats://127.0.0.1:%d", cluster_ports[i]);
		snprintf(log, sizeof log, "%s/nats-n%d.log", dir, i);
		if ((pids[i] = bench_spawn(argv, log)) < 0)
			rc = -1;
	}
	return rc;
}

#ifdef HAVE_NATS
#include <nats/nats.h>

#define NATS_SUBJECT "bench.ev"
#define NATS_SUBJECT2 "bench.hop2"

/* variant 2's relay: what kanal's route stage does with raw JetStream — each message of the
 * first stream is published again (asynchronously, in a window) to the second, then
 * acknowledged. */
typedef struct nats_relay {
	jsCtx *js;
	peer_run_t *pr;
} nats_relay_t;

static void s_nats_on_relay(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	nats_relay_t *rl = closure;
	natsStatus st;

	(void)nc, (void)sub;
	st = js_PublishAsync(rl->js, NATS_SUBJECT2, natsMsg_GetData(msg),
			     natsMsg_GetDataLength(msg), NULL);
	if (st != NATS_OK) {
		pthread_mutex_lock(&rl->pr->mu);
		rl->pr->failed = true;
		pthread_cond_broadcast(&rl->pr->cv);
		pthread_mutex_unlock(&rl->pr->mu);
	}
	natsMsg_Ack(msg, NULL);
	natsMsg_Destroy(msg);
}

static void s_nats_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc, (void)sub;
	s_consumed(closure, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
	natsMsg_Ack(msg, NULL);
	natsMsg_Destroy(msg);
}

int peer_nats(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r)
{
	peer_run_t pr;
	char *dir = NULL, url[64], version[128];
	natsConnection *pub_nc = NULL, *sub_nc = NULL, *relay_nc = NULL;
	jsCtx *pub_js = NULL, *sub_js = NULL;
	natsSubscription *sub = NULL, *relay_sub = NULL;
	nats_relay_t relay = { NULL, &pr };
	bool two_hops = s->variant == 2;
	jsStreamInfo *si = NULL, *si2 = NULL;
	unsigned char *buf = NULL;
	int port, rc = -1;

	if (access("/usr/sbin/nats-server", X_OK) != 0)
		return bench_na(r, "nats-server is not installed (Debian package nats-server)");
	if (s_run_init(&pr, p, s->variant) < 0 || !(buf = calloc(1, (size_t)s->size)))
		return bench_na(r, "out of memory");
	memset(buf, 'x', (size_t)s->size);
	dir = bench_mkdir(p, "nats");
	port = bench_free_port();
	if (!dir || port < 0 || (pr.server = peer_nats_start(dir, port)) < 0) {
		bench_na(r, "cannot start nats-server");
		goto out;
	}
	if (!bench_wait_port(port, 10000)) {
		bench_na(r, "nats-server did not listen on 127.0.0.1:%d; see %s/nats.log", port,
			 dir);
		goto out;
	}
	snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
	{
		jsOptions jo;
		jsStreamConfig sc;
		jsSubOptions so;
		jsErrCode jerr = 0;
		const char *subjects[] = { NATS_SUBJECT }, *subjects2[] = { NATS_SUBJECT2 };
		natsStatus st;

		jsOptions_Init(&jo);
		jo.PublishAsync.MaxPending = PEER_WINDOW;
		jo.PublishAsync.StallWait = 10000;
		if (natsConnection_ConnectTo(&pub_nc, url) != NATS_OK ||
		    natsConnection_ConnectTo(&sub_nc, url) != NATS_OK ||
		    natsConnection_JetStream(&pub_js, pub_nc, &jo) != NATS_OK ||
		    natsConnection_JetStream(&sub_js, sub_nc, NULL) != NATS_OK) {
			bench_na(r, "cannot connect to nats-server: %s", nats_GetLastError(NULL));
			goto out;
		}
		jsStreamConfig_Init(&sc);
		sc.Name = "BENCH";
		sc.Subjects = subjects;
		sc.SubjectsLen = 1;
		sc.Storage = js_FileStorage;
		st = js_AddStream(&si, pub_js, &sc, NULL, &jerr);
		if (st != NATS_OK) {
			bench_na(r, "cannot add the JetStream stream: %s (%d)",
				 natsStatus_GetText(st), (int)jerr);
			goto out;
		}
		if (two_hops) {
			/* The relay: its own connection, a window like the publisher's. */
			sc.Name = "BENCH2";
			sc.Subjects = subjects2;
			if (natsConnection_ConnectTo(&relay_nc, url) != NATS_OK ||
			    natsConnection_JetStream(&relay.js, relay_nc, &jo) != NATS_OK ||
			    js_AddStream(&si2, relay.js, &sc, NULL, &jerr) != NATS_OK) {
				bench_na(r, "cannot set up the relay: %s (%d)",
					 nats_GetLastError(NULL), (int)jerr);
				goto out;
			}
			jsSubOptions_Init(&so);
			so.Stream = "BENCH";
			so.ManualAck = true;
			so.Config.Durable = "relay";
			so.Config.AckPolicy = js_AckExplicit;
			so.Config.MaxAckPending = PEER_WINDOW * 4;
			st = js_Subscribe(&relay_sub, relay.js, NATS_SUBJECT, s_nats_on_relay,
					  &relay, NULL, &so, &jerr);
			if (st != NATS_OK) {
				bench_na(r, "cannot subscribe the relay: %s (%d)",
					 natsStatus_GetText(st), (int)jerr);
				goto out;
			}
			natsSubscription_SetPendingLimits(relay_sub, -1, -1);
		}
		jsSubOptions_Init(&so);
		so.Stream = two_hops ? "BENCH2" : "BENCH";
		so.ManualAck = true;
		so.Config.Durable = "kbench";
		so.Config.AckPolicy = js_AckExplicit;
		so.Config.MaxAckPending = PEER_WINDOW * 4;
		st = js_Subscribe(&sub, sub_js, two_hops ? NATS_SUBJECT2 : NATS_SUBJECT,
				  s_nats_on_msg, &pr, NULL, &so, &jerr);
		if (st != NATS_OK) {
			bench_na(r, "cannot subscribe to the stream: %s (%d)",
				 natsStatus_GetText(st), (int)jerr);
			goto out;
		}
		natsSubscription_SetPendingLimits(sub, -1, -1);
	}
	{
		int64_t t0 = bench_now_ns();
		long sent = 0;

		while (sent < pr.n) {
			long due = s->variant != 1 ? pr.n - sent : s_due(t0, p->lat_rate, sent);
			for (long i = 0; i < due && sent < pr.n; i++) {
				natsStatus st;
				s_stamp(buf, sent + 1);
				st = js_PublishAsync(pub_js, NATS_SUBJECT, buf, s->size, NULL);
				if (st != NATS_OK) {
					bench_na(r, "JetStream publish failed: %s",
						 natsStatus_GetText(st));
					goto out;
				}
				sent++;
			}
		}
	}
	{
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = 30000;
		if (js_PublishAsyncComplete(pub_js, &po) != NATS_OK) {
			bench_na(r, "JetStream did not acknowledge every publish within 30 s");
			goto out;
		}
	}
	if (s_wait_consumed(&pr) < 0) {
		bench_na(r, "NATS: the consumer got %ld of %ld messages", pr.received, pr.n);
		goto out;
	}
	s_result(&pr, s->variant, r);
	s_version("/usr/sbin/nats-server --version 2>&1 | head -1", version, sizeof version);
	if (!r->note[0])
		snprintf(r->note, sizeof r->note, "%s", version);
	rc = 0;
out:
	if (sub) {
		natsSubscription_Unsubscribe(sub);
		natsSubscription_Destroy(sub);
	}
	if (relay_sub) {
		natsSubscription_Unsubscribe(relay_sub);
		natsSubscription_Destroy(relay_sub);
	}
	jsStreamInfo_Destroy(si);
	jsStreamInfo_Destroy(si2);
	jsCtx_Destroy(relay.js);
	natsConnection_Destroy(relay_nc);
	jsCtx_Destroy(pub_js);
	jsCtx_Destroy(sub_js);
	natsConnection_Destroy(pub_nc);
	natsConnection_Destroy(sub_nc);
	if (pr.server > 0)
		bench_stop(pr.server, SIGTERM, 5000);
	if (dir) {
		if (rc == 0 || !getenv("KANAL_BENCH_KEEP"))
			bench_rmdir(dir);
		free(dir);
	}
	free(buf);
	s_run_free(&pr);
	return rc;
}
#else
int peer_nats(const bench_params_t *p, const bench_spec_t *s, bench_result_t *r)
{
	(void)p, (void)s;
	return bench_na(r, "kbench was built without the nats.c client (Debian libnats-dev)");
}
#endif
