/*
 * plugins/http/gate.c — the ingress's gate: it owns the listening socket and decides which
 * connections libmicrohttpd gets to serve, so that hostile clients cannot starve good ones.
 *
 * libmicrohttpd only knows an idle timeout, which a client trickling one header line at a
 * time resets forever, and when its connection limit is reached it stops accepting, so a
 * few dozen such clients lock everyone else out. The gate therefore accepts connections
 * itself and keeps one record per connection, from accept until libmicrohttpd closes it:
 *
 * - at most max_connections_per_address from one client address (more are answered 429
 *   and closed) and max_connections in total; a connection over the total evicts the
 *   oldest one whose request has not been answered (it hears 503), so a good client's
 *   short request gets in while attackers hold connections open;
 * - every request must arrive whole — head and body — within request_timeout, counted
 *   from the accept or from the end of the previous request on the connection; a request
 *   still arriving then is answered 408 and the connection closed (a kept-alive connection
 *   with no request under way is closed without an answer, as HTTP allows);
 * - a connection whose first byte cannot begin an HTTP request (NUL bytes, a TLS
 *   handshake) is answered 400 and closed at once: libmicrohttpd would take NULs for empty
 *   lines and wait.
 *
 * A connection is handed to libmicrohttpd (MHD_add_connection) once its first byte has
 * arrived. The gate's own answers are written straight to the socket as complete HTTP/1.1
 * responses with a JSON body, while libmicrohttpd has written nothing on it; the socket is
 * then shut down, which libmicrohttpd sees as the client closing. The socket stays open
 * until libmicrohttpd closes it and tells the gate (MHD_CONNECTION_NOTIFY_CLOSED), so the
 * gate never touches a descriptor that was closed. Everything runs on the instance's
 * thread.
 */
#include "http.h"
#include "../common/kc_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#define GATE_ACCEPT_BATCH 256 /* connections accepted per wake-up, so one flood cannot hog */
#define GATE_SWEEP_MS 100     /* request deadlines are looked at no more often than this */

typedef struct gate_conn {
	struct gate_conn *prev, *next;
	gate_t *gate;
	int fd;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int64_t start_ms;  /* the accept, or the end of the previous request */
	unsigned requests; /* requests completed on it */
	bool in_mhd;       /* handed to libmicrohttpd */
	bool head_seen;    /* libmicrohttpd has the head of the current request */
	bool answered;     /* the current request has its answer queued or written */
	bool closing;      /* shut down by the gate; libmicrohttpd is closing it */
} gate_conn_t;

struct gate {
	kanal_ctx_t *ctx;
	struct MHD_Daemon *daemon;
	void (*pump)(void *arg);
	void *pump_arg;
	int listen_fd;
	unsigned max_connections;
	unsigned max_per_address;
	int64_t request_timeout_ms;
	gate_conn_t *head;
	size_t live;         /* records not closing: what the limits count */
	gate_conn_t *adding; /* the record MHD_add_connection is being called for */
	int64_t next_sweep_ms;
	kc_log_limit_t log_refused;
	kc_log_limit_t log_timeout;
};

/* ---- records --------------------------------------------------------------------------- */

static void s_unlink(gate_t *g, gate_conn_t *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		g->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (!c->closing)
		g->live--;
	free(c);
}

static void s_addr_text(const struct sockaddr_storage *sa, char *buf, size_t size)
{
	snprintf(buf, size, "?");
	if (sa->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf,
			  (socklen_t)size);
	else if (sa->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf,
			  (socklen_t)size);
}

static bool s_same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			       &((const struct sockaddr_in6 *)b)->sin6_addr,
			       sizeof(struct in6_addr));
	return false;
}

static gate_conn_t *s_record(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		conn ? MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT) : NULL;

	return ci ? ci->socket_context : NULL;
}

/* ---- answers written by the gate -------------------------------------------------------- */

static const char *s_reason(unsigned status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 429:
		return "Too Many Requests";
	default:
		return "Service Unavailable";
	}
}

/* Writes a whole response — status, {"error": text}, Connection: close — to fd without
 * blocking. A client that does not read loses it; it is closed all the same. */
static void s_write_answer(int fd, unsigned status, const char *text, bool retry_after)
{
	json_t *body = json_pack("{s:s}", "error", text);
	char *json = body ? json_dumps(body, JSON_COMPACT) : NULL;
	char head[256];
	int n;

	json_decref(body);
	if (!json)
		return;
	n = snprintf(head, sizeof head,
		     "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		     "%sConnection: close\r\n\r\n",
		     status, s_reason(status), strlen(json),
		     retry_after ? "Retry-After: 1\r\n" : "");
	if (n > 0 && (size_t)n < sizeof head &&
	    send(fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n)
		(void)!send(fd, json, strlen(json), MSG_NOSIGNAL | MSG_DONTWAIT);
	free(json);
}

/* Ends connection c with an answer (status 0: none). One not yet handed to libmicrohttpd is
 * closed and forgotten here; one it serves is shut down and marked closing, and
 * libmicrohttpd closes it (the record goes with MHD_CONNECTION_NOTIFY_CLOSED). */
static void s_cut(gate_t *g, gate_conn_t *c, unsigned status, const char *text)
{
	if (status)
		s_write_answer(c->fd, status, text, status == 503 || status == 429);
	if (!c->in_mhd) {
		kanal_fd_unwatch(g->ctx, c->fd);
		close(c->fd);
		s_unlink(g, c);
		return;
	}
	shutdown(c->fd, SHUT_RDWR);
	if (!c->closing) {
		c->closing = true;
		g->live--;
	}
}

/* ---- accepting -------------------------------------------------------------------------- */

/* True when byte b can start an HTTP/1.x request: a method's token character, or the empty
 * lines RFC 9112 lets a server skip before the request line. */
static bool s_can_start_request(unsigned char b)
{
	return (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || b == '\r' || b == '\n';
}

/* The first bytes of a connection have arrived (or it closed): hand it to libmicrohttpd,
 * or refuse what is not HTTP. */
static void s_on_first_bytes(kanal_ctx_t *ctx, int fd, int events, void *arg)
{
	gate_conn_t *c = arg;
	gate_t *g = c->gate;
	unsigned char b;
	ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	char peer[64];

	(void)events;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		s_cut(g, c, 0, NULL);
		return;
	}
	if (!s_can_start_request(b)) {
		s_addr_text(&c->addr, peer, sizeof peer);
		kc_log_limited(ctx, &g->log_refused, KANAL_LOG_WARN,
			       "refused a connection from %s: it starts with byte 0x%02x, which "
			       "no HTTP request starts with",
			       peer, b);
		kanal_metric_add(ctx, "http_connections_refused", 1);
		s_cut(g, c, 400,
		      "this is not an HTTP request: the first byte cannot begin a "
		      "request line (plain HTTP/1.1 is spoken here)");
		return;
	}
	kanal_fd_unwatch(ctx, fd);
	c->in_mhd = true;
	g->adding = c;
	/* libmicrohttpd closes fd whatever happens; on success it has called s_on_mhd_conn,
	 * which took the record. */
	if (MHD_add_connection(g->daemon, fd, (const struct sockaddr *)&c->addr, c->addrlen) !=
	    MHD_YES) {
		g->adding = NULL;
		for (gate_conn_t *k = g->head; k; k = k->next)
			if (k == c) {
				s_unlink(g, c);
				break;
			}
		return;
	}
	g->adding = NULL;
	g->pump(g->pump_arg);
}

/* The oldest connection whose request has no answer yet: the one to give up when the
 * ingress is full. A connection with its answer under way is never given up. */
static gate_conn_t *s_eviction_candidate(gate_t *g)
{
	gate_conn_t *oldest = NULL;

	for (gate_conn_t *c = g->head; c; c = c->next)
		if (!c->closing && !c->answered && (!oldest || c->start_ms < oldest->start_ms))
			oldest = c;
	return oldest;
}

/* Admits or refuses one accepted connection. */
static void s_admit(gate_t *g, int fd, const struct sockaddr_storage *addr, socklen_t addrlen)
{
	gate_conn_t *c;
	unsigned same = 0;
	char peer[64], text[256];

	for (gate_conn_t *k = g->head; k; k = k->next)
		if (!k->closing && s_same_address(&k->addr, addr))
			same++;
	if (same >= g->max_per_address) {
		s_addr_text(addr, peer, sizeof peer);
		kc_log_limited(g->ctx, &g->log_refused, KANAL_LOG_WARN,
			       "refused a connection from %s: it has %u open, the most "
			       "max_connections_per_address allows",
			       peer, same);
		kanal_metric_add(g->ctx, "http_connections_refused", 1);
		snprintf(text, sizeof text,
			 "too many connections from your address (at most "
			 "%u): send on the connections you have",
			 g->max_per_address);
		s_write_answer(fd, 429, text, true);
		close(fd);
		return;
	}
	if (g->live >= g->max_connections) {
		gate_conn_t *victim = s_eviction_candidate(g);

		kanal_metric_add(g->ctx, "http_connections_evicted", 1);
		if (!victim) {
			s_write_answer(fd, 503, "the ingress is full: try again shortly", true);
			close(fd);
			return;
		}
		s_addr_text(&victim->addr, peer, sizeof peer);
		kc_log_limited(g->ctx, &g->log_refused, KANAL_LOG_WARN,
			       "max_connections (%u) reached: closed the connection from %s that "
			       "waited longest for its request",
			       g->max_connections, peer);
		s_cut(g, victim, 503,
		      "the ingress is full and this connection had not sent its "
		      "request: try again shortly");
	}
	if (!(c = calloc(1, sizeof *c))) {
		close(fd);
		return;
	}
	c->gate = g;
	c->fd = fd;
	memcpy(&c->addr, addr, addrlen);
	c->addrlen = addrlen;
	c->start_ms = kanal_now_ms();
	if (kanal_fd_watch(g->ctx, fd, KANAL_FD_READ, s_on_first_bytes, c) < 0) {
		close(fd);
		free(c);
		return;
	}
	c->next = g->head;
	if (g->head)
		g->head->prev = c;
	g->head = c;
	g->live++;
}

static void s_on_listen(kanal_ctx_t *ctx, int fd, int events, void *arg)
{
	gate_t *g = arg;

	(void)ctx;
	(void)events;
	for (int i = 0; i < GATE_ACCEPT_BATCH; i++) {
		struct sockaddr_storage addr;
		socklen_t len = sizeof addr;
		int cfd = accept4(fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (cfd < 0)
			break; /* EAGAIN, or EMFILE and the like: the next wake-up tries again */
		s_admit(g, cfd, &addr, len);
	}
}

/* ---- the interface --------------------------------------------------------------------- */

int gate_new(kanal_ctx_t *ctx, const gate_limits_t *limits, gate_t **out)
{
	gate_t *g = calloc(1, sizeof *g);

	*out = NULL;
	if (!g)
		return KANAL_ENOMEM;
	g->ctx = ctx;
	g->listen_fd = -1;
	g->max_connections = limits->max_connections;
	g->max_per_address = limits->max_per_address;
	g->request_timeout_ms = limits->request_timeout_ms;
	*out = g;
	return 0;
}

int gate_listen(gate_t *g, kanal_ctx_t *ctx, const struct sockaddr *sa, socklen_t len,
		int *port_out)
{
	struct sockaddr_storage bound;
	socklen_t blen = sizeof bound;
	int one = 1, fd;

	g->ctx = ctx;
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return KANAL_EIO;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, sa, len) < 0 || listen(fd, SOMAXCONN) < 0 ||
	    getsockname(fd, (struct sockaddr *)&bound, &blen) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return KANAL_EIO;
	}
	if (kanal_fd_watch(ctx, fd, KANAL_FD_READ, s_on_listen, g) < 0) {
		close(fd);
		errno = 0;
		return KANAL_EIO;
	}
	g->listen_fd = fd;
	*port_out = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						      : ((struct sockaddr_in *)&bound)->sin_port);
	return 0;
}

void gate_serve(gate_t *g, struct MHD_Daemon *daemon, void (*pump)(void *arg), void *arg)
{
	g->daemon = daemon;
	g->pump = pump;
	g->pump_arg = arg;
}

void gate_on_mhd_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			    enum MHD_ConnectionNotificationCode toe)
{
	gate_t *g = cls;
	gate_conn_t *c;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		/* The record is the one being added; should libmicrohttpd ever start it later,
		 * its descriptor finds it (open descriptors are unique). */
		c = g->adding;
		for (gate_conn_t *k = g->head; !c && ci && k; k = k->next)
			if (k->in_mhd && k->fd == ci->connect_fd)
				c = k;
		*socket_context = c;
		g->adding = NULL;
		return;
	}
	if (toe == MHD_CONNECTION_NOTIFY_CLOSED && (c = *socket_context)) {
		s_unlink(g, c);
		*socket_context = NULL;
	}
}

void gate_request_began(struct MHD_Connection *conn)
{
	gate_conn_t *c = s_record(conn);

	if (c)
		c->head_seen = true;
}

void gate_request_answered(struct MHD_Connection *conn)
{
	gate_conn_t *c = s_record(conn);

	if (c)
		c->answered = true;
}

void gate_request_done(struct MHD_Connection *conn)
{
	gate_conn_t *c = s_record(conn);

	if (c) {
		c->start_ms = kanal_now_ms();
		c->requests++;
		c->head_seen = c->answered = false;
	}
}

void gate_answer_and_close(struct MHD_Connection *conn, unsigned status, const char *text)
{
	gate_conn_t *c = s_record(conn);

	if (!c || c->answered)
		return;
	s_write_answer(c->fd, status, text, false);
	c->answered = true;
	/* Only our side is shut: the client still sending reads the answer and stops, instead
	 * of meeting a reset; request_timeout bounds one that goes on. */
	shutdown(c->fd, SHUT_WR);
}

int64_t gate_sweep(gate_t *g)
{
	int64_t now = kanal_now_ms(), next = INT64_MAX;
	gate_conn_t *c, *following;
	char peer[64], text[200];

	if (now < g->next_sweep_ms)
		return g->next_sweep_ms - now;
	g->next_sweep_ms = now + GATE_SWEEP_MS;
	snprintf(text, sizeof text,
		 "the request did not arrive whole within request_timeout "
		 "(%lld ms): send it faster",
		 (long long)g->request_timeout_ms);
	for (c = g->head; c; c = following) {
		int64_t due = c->start_ms + g->request_timeout_ms;

		following = c->next;
		if (c->closing)
			continue;
		if (now < due) {
			if (due - now < next)
				next = due - now;
			continue;
		}
		s_addr_text(&c->addr, peer, sizeof peer);
		kc_log_limited(g->ctx, &g->log_timeout, KANAL_LOG_WARN,
			       "closed a connection from %s: its request did not arrive whole "
			       "within request_timeout",
			       peer);
		kanal_metric_add(g->ctx, "http_request_timeouts", 1);
		/* A kept-alive connection with no request under way is closed without an
		 * answer, as HTTP allows; one whose answer is under way gets no second. */
		s_cut(g, c, c->answered || (c->requests && !c->head_seen) ? 0 : 408, text);
	}
	return next < GATE_SWEEP_MS ? GATE_SWEEP_MS : next;
}

size_t gate_connections(const gate_t *g)
{
	return g ? g->live : 0;
}

void gate_close(gate_t *g)
{
	gate_conn_t *c, *following;

	if (!g)
		return;
	if (g->listen_fd >= 0) {
		kanal_fd_unwatch(g->ctx, g->listen_fd);
		close(g->listen_fd);
		g->listen_fd = -1;
	}
	for (c = g->head; c; c = following) {
		following = c->next;
		if (!c->in_mhd)
			s_cut(g, c, 0, NULL);
	}
}

void gate_destroy(gate_t **g_p)
{
	gate_t *g = g_p ? *g_p : NULL;

	if (!g)
		return;
	gate_close(g);
	/* Records of connections libmicrohttpd still held went with MHD_stop_daemon. */
	while (g->head)
		s_unlink(g, g->head);
	free(g);
	*g_p = NULL;
}
