/*
 * broker/zap.c — the ZAP handler thread (see zap.h and docs/security.md).
 *
 * A REP socket bound at inproc://zeromq.zap.01 receives one request per handshake on a
 * CURVE socket of kanald's ZeroMQ context:
 *
 *     "1.0" | request id | domain | address | routing id | mechanism | client public key
 *
 * and answers "1.0" | request id | "200" or "400" | status text | user id | metadata
 * (RFC 27). The handler thread polls that socket and a PAIR on which zap_destroy says
 * "stop". The allow-list is read-only for the handler's life (the config outlives it), so
 * no lock is needed; the refusal count is an atomic the router reads for `status`.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"
#include "zap.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_MAX_FRAMES 8

struct zap {
	const conf_t *conf;
	void *rep;                   /* the handler's socket; used by the thread only */
	void *ctl_main, *ctl_thread; /* PAIR: zap_destroy → the thread */
	char ctl_endpoint[64];
	pthread_t thread;
	bool thread_started;
	uint64_t denied; /* atomic */
};

/* The frames of one request, copied out of their messages (NUL-terminated). */
typedef struct request {
	zmq_msg_t frames[ZAP_MAX_FRAMES];
	int n;
} request_t;

/* Reads one whole request from the handler's socket (frames beyond ZAP_MAX_FRAMES are
 * dropped). Returns the number of frames kept, or -1 when nothing could be read. */
static int s_recv_request(void *sock, request_t *rq)
{
	int more = 1;

	rq->n = 0;
	while (more) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, sock, 0) < 0) {
			zmq_msg_close(&m);
			return rq->n ? rq->n : -1;
		}
		more = zmq_msg_more(&m);
		if (rq->n < ZAP_MAX_FRAMES) {
			zmq_msg_init(&rq->frames[rq->n]);
			zmq_msg_move(&rq->frames[rq->n], &m);
			rq->n++;
		}
		zmq_msg_close(&m);
	}
	return rq->n;
}

static void s_request_close(request_t *rq)
{
	for (int i = 0; i < rq->n; i++)
		zmq_msg_close(&rq->frames[i]);
	rq->n = 0;
}

/* True when frame i of the request holds exactly `text`. */
static bool s_frame_is(const request_t *rq, int i, const char *text)
{
	size_t len = strlen(text);

	return i < rq->n && zmq_msg_size((zmq_msg_t *)&rq->frames[i]) == len &&
	       !memcmp(zmq_msg_data((zmq_msg_t *)&rq->frames[i]), text, len);
}

/* Copies frame i into buf as text (cut to size - 1). */
static void s_frame_text(const request_t *rq, int i, char *buf, size_t size)
{
	size_t len = 0;

	if (i < rq->n) {
		len = zmq_msg_size((zmq_msg_t *)&rq->frames[i]);
		if (len > size - 1)
			len = size - 1;
		memcpy(buf, zmq_msg_data((zmq_msg_t *)&rq->frames[i]), len);
	}
	buf[len] = '\0';
	for (size_t k = 0; k < len; k++)
		if ((unsigned char)buf[k] < 0x20 || (unsigned char)buf[k] >= 0x7F)
			buf[k] = '?'; /* it goes to the log: printable only */
}

/* Sends the reply to a request: status "200" with the client's name as user id, or
 * "400" with a reason and no user id. The request id is echoed (frame 1). */
static void s_reply(void *sock, request_t *rq, const char *status, const char *text,
		    const char *user)
{
	zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
	if (rq->n > 1)
		zmq_send(sock, zmq_msg_data(&rq->frames[1]), zmq_msg_size(&rq->frames[1]),
			 ZMQ_SNDMORE);
	else
		zmq_send(sock, "", 0, ZMQ_SNDMORE);
	zmq_send(sock, status, strlen(status), ZMQ_SNDMORE);
	zmq_send(sock, text, strlen(text), ZMQ_SNDMORE);
	zmq_send(sock, user, strlen(user), ZMQ_SNDMORE);
	zmq_send(sock, "", 0, 0);
}

/* Decides one request. The client's key is compared in its Z85 form with the configured
 * ones; public keys are not secrets, but they are still kept out of the log, since an
 * operator reading "refused key X" learns nothing a name would not say better. */
static void s_handle(zap_t *z, request_t *rq)
{
	const conf_t *conf = z->conf;
	char domain[64], address[80], z85[41];
	const char *socket_name;

	s_frame_text(rq, 2, domain, sizeof domain);
	s_frame_text(rq, 3, address, sizeof address);
	socket_name = !strcmp(domain, ZAP_DOMAIN_GATEWAY)  ? "gateway"
		      : !strcmp(domain, ZAP_DOMAIN_STREAM) ? "event stream"
							   : NULL;
	if (rq->n < 6 || !s_frame_is(rq, 0, "1.0")) {
		s_reply(z->rep, rq, "500", "malformed ZAP request", "");
		return;
	}
	if (!socket_name) {
		/* A CURVE socket kanald did not make (a plugin's): nobody has said who may
		 * connect to it, so nobody may. */
		__atomic_add_fetch(&z->denied, 1, __ATOMIC_RELAXED);
		log_warn_limited("zap",
				 "refused a connection from %s: ZAP domain '%s' is not "
				 "one of kanald's sockets",
				 address, domain);
		s_reply(z->rep, rq, "400", "unknown domain", "");
		return;
	}
	if (!s_frame_is(rq, 5, "CURVE") || rq->n < 7 || zmq_msg_size(&rq->frames[6]) != 32) {
		__atomic_add_fetch(&z->denied, 1, __ATOMIC_RELAXED);
		log_warn_limited("zap",
				 "refused a connection to the %s from %s: not a CURVE "
				 "handshake",
				 socket_name, address);
		s_reply(z->rep, rq, "400", "CURVE required", "");
		return;
	}
	if (!zmq_z85_encode(z85, zmq_msg_data(&rq->frames[6]), 32)) {
		s_reply(z->rep, rq, "500", "cannot encode the key", "");
		return;
	}
	for (size_t i = 0; i < conf->n_clients; i++) {
		const conf_client_t *c = &conf->clients[i];
		if (c->name && !strcmp(c->public_key, z85)) {
			log_debug("zap", "client '%s' connected to the %s from %s", c->name,
				  socket_name, address);
			s_reply(z->rep, rq, "200", "OK", c->name);
			return;
		}
	}
	__atomic_add_fetch(&z->denied, 1, __ATOMIC_RELAXED);
	log_warn_limited("zap",
			 "refused a connection to the %s from %s: its key is not on "
			 "the allow-list (security.curve.clients)",
			 socket_name, address);
	s_reply(z->rep, rq, "400", "key not allowed", "");
}

static void *s_main(void *arg)
{
	zap_t *z = arg;

	for (;;) {
		zmq_pollitem_t items[2] = { { z->rep, 0, ZMQ_POLLIN, 0 },
					    { z->ctl_thread, 0, ZMQ_POLLIN, 0 } };
		if (zmq_poll(items, 2, -1) < 0) {
			if (zmq_errno() == EINTR)
				continue;
			break; /* the context is ending */
		}
		if (items[1].revents & ZMQ_POLLIN)
			break;
		if (items[0].revents & ZMQ_POLLIN) {
			request_t rq;
			if (s_recv_request(z->rep, &rq) < 0)
				continue;
			s_handle(z, &rq);
			s_request_close(&rq);
		}
	}
	zmq_close(z->rep);
	z->rep = NULL;
	zmq_close(z->ctl_thread);
	z->ctl_thread = NULL;
	return NULL;
}

zap_t *zap_new(void *zctx, const conf_t *conf, char *err, size_t err_size)
{
	zap_t *z = calloc(1, sizeof *z);
	int zero = 0;

	if (!z) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	z->conf = conf;
	snprintf(z->ctl_endpoint, sizeof z->ctl_endpoint, "inproc://kanal-zap-ctl-%p", (void *)z);
	z->rep = zmq_socket(zctx, ZMQ_REP);
	z->ctl_thread = zmq_socket(zctx, ZMQ_PAIR);
	z->ctl_main = zmq_socket(zctx, ZMQ_PAIR);
	if (!z->rep || !z->ctl_thread || !z->ctl_main)
		goto fail;
	zmq_setsockopt(z->rep, ZMQ_LINGER, &zero, sizeof zero);
	zmq_setsockopt(z->ctl_main, ZMQ_LINGER, &zero, sizeof zero);
	zmq_setsockopt(z->ctl_thread, ZMQ_LINGER, &zero, sizeof zero);
	if (zmq_bind(z->rep, ZAP_ENDPOINT) < 0 || zmq_bind(z->ctl_thread, z->ctl_endpoint) < 0 ||
	    zmq_connect(z->ctl_main, z->ctl_endpoint) < 0)
		goto fail;
	/* The sockets move to the thread here; pthread_create is the memory barrier the
	 * ZeroMQ guide asks for when a socket changes threads. */
	if (pthread_create(&z->thread, NULL, s_main, z) != 0) {
		snprintf(err, err_size, "cannot start the ZAP handler thread");
		goto fail_quiet;
	}
	z->thread_started = true;
	log_info("zap",
		 "CURVE on for the gateway and the event stream: %zu client%s on the "
		 "allow-list",
		 conf->n_clients, conf->n_clients == 1 ? "" : "s");
	return z;
fail:
	snprintf(err, err_size, "cannot start the ZAP handler at %s: %s", ZAP_ENDPOINT,
		 zmq_strerror(zmq_errno()));
fail_quiet:
	zap_destroy(&z);
	return NULL;
}

void zap_destroy(zap_t **zap_p)
{
	zap_t *z = zap_p ? *zap_p : NULL;

	if (!z)
		return;
	if (z->thread_started) {
		zmq_send(z->ctl_main, "stop", 4, 0);
		pthread_join(z->thread, NULL);
	} else {
		if (z->rep)
			zmq_close(z->rep);
		if (z->ctl_thread)
			zmq_close(z->ctl_thread);
	}
	if (z->ctl_main)
		zmq_close(z->ctl_main);
	free(z);
	*zap_p = NULL;
}

int zap_secure_socket(const zap_t *zap, void *sock, const char *domain, char *err, size_t err_size)
{
	int one = 1;
	const char *secret = zap->conf->curve_secret_key;

	if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) < 0 ||
	    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, 40) < 0 ||
	    zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) < 0) {
		snprintf(err, err_size, "cannot make the %s a CURVE server: %s", domain,
			 zmq_strerror(zmq_errno()));
		return -1;
	}
	return 0;
}

uint64_t zap_denied(const zap_t *zap)
{
	return zap ? __atomic_load_n(&zap->denied, __ATOMIC_RELAXED) : 0;
}
