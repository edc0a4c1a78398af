/*
 * examples/simulators/sim.c — the shared scaffolding of the simulated upstream systems
 * (see sim.h): command line, a libmicrohttpd server on 127.0.0.1 with a thread per
 * connection, switchable faults, the clock tick, and logging with CPR numbers masked.
 */
#include "sim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <libxml/xmlschemas.h>
#include <jansson.h>
#include <microhttpd.h>

#include <kanal/cpr.h>
#include <kanal/time.h>

#define SIM_MAX_BODY (16u << 20)
#define SIM_MAX_SETTINGS 32

typedef enum { F_NONE, F_SLOW, F_ERROR, F_GARBAGE, F_DROP, F_HANG } fault_mode_t;
static const char *const s_fault_names[] = { "none", "slow", "error", "garbage", "drop", "hang" };

struct sim {
	const sim_def_t *def;
	pthread_mutex_t lock; /* handlers and tick */
	pthread_mutex_t fault_lock;
	pthread_cond_t stop_cond;
	bool stopping;
	fault_mode_t fault;
	int64_t fault_count; /* requests left with the fault; 0: until switched off */
	int64_t fault_delay_ms;
	uint64_t requests, faulted;
	bool quiet;
	void *state;
	const char *names[SIM_MAX_SETTINGS], *values[SIM_MAX_SETTINGS];
	size_t n_settings;
	char *tls_cert, *tls_key, *tls_ca; /* PEM text, when serving https */
};

typedef struct {
	char *body;
	size_t len, cap;
	bool too_big;
} upload_t;

/* ---- settings, state, helpers ----------------------------------------------------------- */

const char *sim_setting(const sim_t *sim, const char *name, const char *fallback)
{
	for (size_t i = sim->n_settings; i-- > 0;)
		if (!strcmp(sim->names[i], name))
			return sim->values[i];
	return fallback;
}

int64_t sim_setting_int(const sim_t *sim, const char *name, int64_t fallback)
{
	const char *v = sim_setting(sim, name, NULL);
	return v ? strtoll(v, NULL, 10) : fallback;
}

void sim_set_state(sim_t *sim, void *state)
{
	sim->state = state;
}

void *sim_state(const sim_t *sim)
{
	return sim->state;
}

const char *sim_query(const sim_request_t *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *sim_header(const sim_request_t *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

void sim_reply_take(sim_response_t *res, int status, const char *content_type, char *body,
		    size_t len)
{
	free(res->body);
	res->status = status;
	res->content_type = content_type;
	res->body = body;
	res->len = len;
}

void sim_reply(sim_response_t *res, int status, const char *content_type, const char *body,
	       long len)
{
	size_t n = body ? (len < 0 ? strlen(body) : (size_t)len) : 0;
	char *copy = malloc(n + 1);

	if (!copy) {
		sim_reply_take(res, 500, NULL, NULL, 0);
		return;
	}
	if (n)
		memcpy(copy, body, n);
	copy[n] = '\0';
	sim_reply_take(res, status, content_type, copy, n);
}

void sim_replyf(sim_response_t *res, int status, const char *content_type, const char *fmt, ...)
{
	va_list ap;
	char *body = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&body, fmt, ap);
	va_end(ap);
	if (n < 0)
		sim_reply_take(res, 500, NULL, NULL, 0);
	else
		sim_reply_take(res, status, content_type, body, (size_t)n);
}

void sim_reply_header(sim_response_t *res, const char *name, const char *value)
{
	size_t used = strlen(res->headers);
	snprintf(res->headers + used, sizeof res->headers - used, "%s: %s\n", name, value);
}

void sim_log(const sim_t *sim, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	kanal_cpr_redact_inplace(line);
	fprintf(stderr, "sim-%s: %s\n", sim->def->name, line);
}

void *sim_schema(const sim_t *sim, const char *rel)
{
	const char *dir = sim_setting(sim, "schemas", NULL);
	char exe[4000], path[8200];
	xmlSchemaParserCtxtPtr pctx;
	xmlSchemaPtr schema;
	ssize_t n;

	if (!dir && access("contracts/schemas", R_OK) == 0)
		dir = "contracts/schemas";
	if (!dir && (n = readlink("/proc/self/exe", exe, sizeof exe - 1)) > 0) {
		exe[n] = '\0';
		if (strrchr(exe, '/'))
			*strrchr(exe, '/') = '\0';
		snprintf(path, sizeof path, "%s/../../contracts/schemas/%s", exe, rel);
	} else {
		snprintf(path, sizeof path, "%s/%s", dir ? dir : "contracts/schemas", rel);
	}
	pctx = xmlSchemaNewParserCtxt(path);
	schema = pctx ? xmlSchemaParse(pctx) : NULL;
	xmlSchemaFreeParserCtxt(pctx);
	if (!schema)
		fprintf(stderr, "kanal-sim: cannot compile the schema %s\n", path);
	return schema;
}

int sim_thread_start(sim_t *sim, void *(*fn)(void *sim), const char *what)
{
	sigset_t all, old;
	pthread_t thread;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&thread, NULL, fn, sim);
	if (rc == 0)
		pthread_detach(thread);
	else
		fprintf(stderr, "kanal-sim-%s: cannot start %s\n", sim->def->name, what);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc == 0 ? 0 : -1;
}

void sim_push_backoff(int64_t *wait_ms, bool taken, int64_t first_ms, int64_t max_ms)
{
	if (taken) {
		*wait_ms = first_ms;
		return;
	}
	usleep((useconds_t)*wait_ms * 1000);
	*wait_ms = *wait_ms * 2 > max_ms ? max_ms : *wait_ms * 2;
}

int64_t sim_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sim_today(char buf[11], int offset_days)
{
	time_t t = time(NULL) + (time_t)offset_days * 86400;
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, 11, "%Y-%m-%d", &tm);
}

void sim_rfc3339_now(char buf[40])
{
	kanal_time_rfc3339(kanal_wall_ms(), buf, 40);
}

/* ---- faults ------------------------------------------------------------------------------ */

/* Sleeps up to ms, or until the simulator stops; ms < 0 waits for the stop only. */
static void s_wait(sim_t *sim, int64_t ms)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	if (ms >= 0) {
		until.tv_sec += ms / 1000;
		until.tv_nsec += (ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_lock(&sim->fault_lock);
	while (!sim->stopping) {
		int rc = ms >= 0 ? pthread_cond_timedwait(&sim->stop_cond, &sim->fault_lock, &until)
				 : pthread_cond_wait(&sim->stop_cond, &sim->fault_lock);
		if (rc == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&sim->fault_lock);
}

/* Takes one request's share of the current fault. */
static fault_mode_t s_take_fault(sim_t *sim, int64_t *delay_ms)
{
	fault_mode_t f;

	pthread_mutex_lock(&sim->fault_lock);
	f = sim->fault;
	*delay_ms = sim->fault_delay_ms;
	if (f != F_NONE) {
		sim->faulted++;
		if (sim->fault_count > 0 && --sim->fault_count == 0)
			sim->fault = F_NONE;
	}
	pthread_mutex_unlock(&sim->fault_lock);
	return f;
}

static int s_fault_parse(const char *name, fault_mode_t *out)
{
	for (size_t i = 0; i < sizeof s_fault_names / sizeof *s_fault_names; i++)
		if (!strcmp(name, s_fault_names[i])) {
			*out = (fault_mode_t)i;
			return 0;
		}
	return -1;
}

/* /_sim/fault and /_sim/stats. */
static void s_control(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	if (!strcmp(req->path, "/_sim/stats")) {
		pthread_mutex_lock(&sim->fault_lock);
		sim_replyf(res, 200, "application/json", "{\"requests\": %llu, \"faulted\": %llu}",
			   (unsigned long long)sim->requests, (unsigned long long)sim->faulted);
		pthread_mutex_unlock(&sim->fault_lock);
		return;
	}
	if (strcmp(req->path, "/_sim/fault")) {
		sim_reply(res, 404, "text/plain", "no such control\n", -1);
		return;
	}
	if (!strcmp(req->method, "POST")) {
		json_error_t jerr;
		json_t *j = json_loadb(req->body, req->body_len, 0, &jerr);
		const char *mode = j ? json_string_value(json_object_get(j, "mode")) : NULL;
		fault_mode_t f;

		if (!mode || s_fault_parse(mode, &f) != 0) {
			sim_reply(
				res, 400, "text/plain",
				"want {\"mode\": none|slow|error|garbage|drop|hang, \"count\": N, "
				"\"delay_ms\": N}\n",
				-1);
			json_decref(j);
			return;
		}
		pthread_mutex_lock(&sim->fault_lock);
		sim->fault = f;
		sim->fault_count = json_integer_value(json_object_get(j, "count"));
		sim->fault_delay_ms = json_object_get(j, "delay_ms")
					      ? json_integer_value(json_object_get(j, "delay_ms"))
					      : 2000;
		pthread_mutex_unlock(&sim->fault_lock);
		sim_log(sim, "fault switched to %s", mode); /* mode belongs to j */
		json_decref(j);
	}
	pthread_mutex_lock(&sim->fault_lock);
	sim_replyf(res, 200, "application/json",
		   "{\"mode\": \"%s\", \"count\": %lld, \"delay_ms\": %lld}",
		   s_fault_names[sim->fault], (long long)sim->fault_count,
		   (long long)sim->fault_delay_ms);
	pthread_mutex_unlock(&sim->fault_lock);
}

/* ---- the HTTP server ---------------------------------------------------------------------- */

static enum MHD_Result s_queue(struct MHD_Connection *conn, sim_response_t *res)
{
	struct MHD_Response *r;
	enum MHD_Result rc;
	char *line, *save = NULL;

	r = MHD_create_response_from_buffer(res->len, res->body ? res->body : (char *)"",
					    MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	if (res->content_type)
		MHD_add_response_header(r, "Content-Type", res->content_type);
	for (line = strtok_r(res->headers, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		*colon = '\0';
		MHD_add_response_header(r, line, colon + 1 + (colon[1] == ' '));
	}
	rc = MHD_queue_response(conn, (unsigned)res->status, r);
	MHD_destroy_response(r);
	return rc;
}

/* Reads a whole file for the TLS settings; NULL after printing why. */
static char *s_slurp(const sim_t *sim, const char *setting)
{
	const char *path = sim_setting(sim, setting, NULL);
	FILE *f = path ? fopen(path, "r") : NULL;
	char *buf = NULL;
	size_t len = 0;

	if (f) {
		FILE *m = open_memstream(&buf, &len);
		char chunk[4096];
		size_t n;

		while (m && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
			fwrite(chunk, 1, n, m);
		if (m)
			fclose(m);
		fclose(f);
	}
	if (!buf)
		fprintf(stderr, "kanal-sim-%s: --set %s: cannot read '%s'\n", sim->def->name,
			setting, path ? path : "");
	return buf;
}

/* With --set tls_cert=F --set tls_key=F --set tls_ca=F the simulator serves https and asks
 * each client for a certificate issued by tls_ca (mutual TLS). */
static int s_tls_load(sim_t *sim)
{
	if (!sim_setting(sim, "tls_cert", NULL))
		return 0;
	sim->tls_cert = s_slurp(sim, "tls_cert");
	sim->tls_key = s_slurp(sim, "tls_key");
	sim->tls_ca = s_slurp(sim, "tls_ca");
	return sim->tls_cert && sim->tls_key && sim->tls_ca ? 0 : -1;
}

/* The client certificate of a TLS connection: its DER in base64 and whether it chains to
 * tls_ca and is within its validity period (GnuTLS checks both). */
static void s_client_cert(const sim_t *sim, struct MHD_Connection *conn, sim_request_t *req)
{
	const union MHD_ConnectionInfo *ci;
	gnutls_session_t tls;
	const gnutls_datum_t *peers;
	unsigned int n = 0, status = 0;
	gnutls_datum_t b64 = { 0 };

	if (!sim->tls_cert ||
	    !(ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION)))
		return;
	tls = (gnutls_session_t)ci->tls_session;
	if (!(peers = gnutls_certificate_get_peers(tls, &n)) || n == 0)
		return;
	req->client_cert = SIM_CERT_UNTRUSTED;
	if (gnutls_certificate_verify_peers2(tls, &status) == 0) {
		if (status == 0)
			req->client_cert = SIM_CERT_OK;
		else if (status & (GNUTLS_CERT_EXPIRED | GNUTLS_CERT_NOT_ACTIVATED))
			req->client_cert = SIM_CERT_EXPIRED;
	}
	if (gnutls_base64_encode2(&peers[0], &b64) == 0 && b64.data) {
		snprintf(req->client_cert_b64, sizeof req->client_cert_b64, "%.*s", (int)b64.size,
			 (const char *)b64.data);
		gnutls_free(b64.data);
	}
}

static enum MHD_Result s_on_request(void *cls, struct MHD_Connection *conn, const char *url,
				    const char *method, const char *version,
				    const char *upload_data, size_t *upload_size, void **con_cls)
{
	sim_t *sim = cls;
	upload_t *up = *con_cls;
	sim_response_t res = { .status = 404 };
	sim_request_t req = { 0 };
	char *user = NULL, *pass = NULL;
	const char *auth;
	enum MHD_Result rc;
	fault_mode_t fault = F_NONE;
	int64_t delay = 0;
	bool control = !strncmp(url, "/_sim/", 6);

	if (!up) {
		if (!(up = calloc(1, sizeof *up)))
			return MHD_NO;
		*con_cls = up;
		return MHD_YES;
	}
	if (*upload_size) {
		if (up->len + *upload_size > SIM_MAX_BODY) {
			up->too_big = true;
		} else {
			if (up->len + *upload_size + 1 > up->cap) {
				size_t cap = up->cap ? up->cap : 4096;
				char *b;
				while (cap < up->len + *upload_size + 1)
					cap *= 2;
				if (!(b = realloc(up->body, cap)))
					return MHD_NO;
				up->body = b;
				up->cap = cap;
			}
			memcpy(up->body + up->len, upload_data, *upload_size);
			up->len += *upload_size;
			up->body[up->len] = '\0';
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (up->too_big) {
		sim_reply(&res, 413, "text/plain", "request body too large\n", -1);
		goto answer;
	}
	req.method = method;
	req.path = url;
	req.body = up->body ? up->body : "";
	req.body_len = up->len;
	req.conn = conn;
	s_client_cert(sim, conn, &req);
	req.content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
	user = MHD_basic_auth_get_username_password(conn, &pass);
	req.user = user;
	req.password = pass;
	auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	if (auth && !strncasecmp(auth, "Bearer ", 7))
		req.bearer = auth + 7;

	pthread_mutex_lock(&sim->fault_lock);
	sim->requests++;
	pthread_mutex_unlock(&sim->fault_lock);
	if (control) {
		s_control(sim, &req, &res);
		goto answer;
	}
	fault = s_take_fault(sim, &delay);
	switch (fault) {
	case F_DROP:
		if (!sim->quiet)
			sim_log(sim, "%s %s -> connection dropped (fault)", method, url);
		MHD_free(user);
		MHD_free(pass);
		return MHD_NO;
	case F_HANG:
		if (!sim->quiet)
			sim_log(sim, "%s %s -> hanging (fault)", method, url);
		s_wait(sim, -1);
		MHD_free(user);
		MHD_free(pass);
		return MHD_NO;
	case F_ERROR:
		sim_reply(&res, 503, "text/plain", "service unavailable (simulated)\n", -1);
		sim_reply_header(&res, "Retry-After", "1");
		goto answer;
	case F_GARBAGE:
		sim_reply(&res, 200,
			  sim->def->garbage_type ? sim->def->garbage_type : "application/json",
			  sim->def->garbage_body ? sim->def->garbage_body
						 : "{\"items\": [{\"id\": 1,,",
			  -1);
		goto answer;
	case F_SLOW:
		s_wait(sim, delay);
		break;
	case F_NONE:
		break;
	}
	if (sim->def->delay_ms && (delay = sim->def->delay_ms(sim, &req)) > 0)
		s_wait(sim, delay);
	pthread_mutex_lock(&sim->lock);
	sim->def->handle(sim, &req, &res);
	pthread_mutex_unlock(&sim->lock);
answer:
	if (!sim->quiet)
		sim_log(sim, "%s %s -> %d%s", method, url, res.status,
			fault == F_NONE ? "" : " (fault)");
	rc = s_queue(conn, &res);
	free(res.body);
	MHD_free(user);
	MHD_free(pass);
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

static void s_usage(const char *name)
{
	fprintf(stderr,
		"usage: kanal-sim-%s [--port N] [--port-file PATH] [--fault MODE] "
		"[--set NAME=VALUE]... [--quiet]\n"
		"A simulated upstream system for kanal's demo and tests, on 127.0.0.1.\n"
		"Faults: POST /_sim/fault {\"mode\": \"none|slow|error|garbage|drop|hang\", "
		"\"count\": N}\n",
		name);
}

int sim_main(int argc, char **argv, const sim_def_t *def)
{
	sim_t sim = { .def = def, .fault_delay_ms = 2000 };
	struct sockaddr_in addr = { .sin_family = AF_INET };
	const union MHD_DaemonInfo *info;
	struct MHD_Daemon *d;
	const char *port_file = NULL;
	long port = 0;
	sigset_t sigs;
	int64_t next_tick;
	int sig = 0;

	pthread_mutex_init(&sim.lock, NULL);
	pthread_mutex_init(&sim.fault_lock, NULL);
	pthread_cond_init(&sim.stop_cond, NULL);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--quiet")) {
			sim.quiet = true;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			s_usage(def->name);
			return 0;
		}
		if (!v) {
			s_usage(def->name);
			return 2;
		}
		i++;
		if (!strcmp(a, "--port")) {
			char *end;
			port = strtol(v, &end, 10);
			if (*end || port < 0 || port > 65535) {
				fprintf(stderr, "kanal-sim-%s: --port: '%s' is not a port\n",
					def->name, v);
				return 2;
			}
		} else if (!strcmp(a, "--port-file")) {
			port_file = v;
		} else if (!strcmp(a, "--fault")) {
			if (s_fault_parse(v, &sim.fault) != 0) {
				fprintf(stderr, "kanal-sim-%s: --fault: '%s' is not a fault mode\n",
					def->name, v);
				return 2;
			}
		} else if (!strcmp(a, "--set")) {
			char *eq = strchr(v, '=');
			if (!eq || sim.n_settings == SIM_MAX_SETTINGS) {
				fprintf(stderr, "kanal-sim-%s: --set wants NAME=VALUE\n",
					def->name);
				return 2;
			}
			*eq = '\0';
			sim.names[sim.n_settings] = v;
			sim.values[sim.n_settings++] = eq + 1;
		} else {
			s_usage(def->name);
			return 2;
		}
	}
	if (def->setup && def->setup(&sim) != 0)
		return 1;
	if (s_tls_load(&sim) != 0)
		return 1;

	/* Signals are taken by sigtimedwait on this thread; the server's threads block them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	addr.sin_port = htons((uint16_t)port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (sim.tls_cert)
		d = MHD_start_daemon(
			MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
				MHD_USE_ERROR_LOG | MHD_USE_TLS,
			0, NULL, NULL, s_on_request, &sim, MHD_OPTION_SOCK_ADDR, &addr,
			MHD_OPTION_NOTIFY_COMPLETED, s_on_done, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
			(unsigned)60, MHD_OPTION_HTTPS_MEM_CERT, sim.tls_cert,
			MHD_OPTION_HTTPS_MEM_KEY, sim.tls_key, MHD_OPTION_HTTPS_MEM_TRUST,
			sim.tls_ca, MHD_OPTION_END);
	else
		d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
					     MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
				     0, NULL, NULL, s_on_request, &sim, MHD_OPTION_SOCK_ADDR, &addr,
				     MHD_OPTION_NOTIFY_COMPLETED, s_on_done, NULL,
				     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "kanal-sim-%s: cannot listen on 127.0.0.1:%ld: %s\n", def->name,
			port, strerror(errno));
		return 1;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	port = info ? info->port : port;
	if (port_file) {
		char tmp[4096];
		FILE *f;
		snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
		if (!(f = fopen(tmp, "w")) || fprintf(f, "%ld\n", port) < 0 || fclose(f) != 0 ||
		    rename(tmp, port_file) != 0) {
			fprintf(stderr, "kanal-sim-%s: cannot write %s: %s\n", def->name, port_file,
				strerror(errno));
			MHD_stop_daemon(d);
			return 1;
		}
	}
	sim_log(&sim, "listening on %s://127.0.0.1:%ld", sim.tls_cert ? "https" : "http", port);

	next_tick = sim_now_ms() + (def->tick ? def->tick_ms : 0);
	for (;;) {
		int64_t wait = def->tick ? next_tick - sim_now_ms() : 1000;
		struct timespec ts;
		if (wait < 0)
			wait = 0;
		ts.tv_sec = wait / 1000;
		ts.tv_nsec = (wait % 1000) * 1000000;
		sig = sigtimedwait(&sigs, NULL, &ts);
		if (sig == SIGINT || sig == SIGTERM)
			break;
		if (def->tick && sim_now_ms() >= next_tick) {
			pthread_mutex_lock(&sim.lock);
			def->tick(&sim);
			pthread_mutex_unlock(&sim.lock);
			next_tick += def->tick_ms;
		}
	}
	/* Wake hanging answers so the server's threads can be joined. */
	pthread_mutex_lock(&sim.fault_lock);
	sim.stopping = true;
	pthread_cond_broadcast(&sim.stop_cond);
	pthread_mutex_unlock(&sim.fault_lock);
	MHD_stop_daemon(d);
	sim_log(&sim, "stopped (%llu requests served)", (unsigned long long)sim.requests);
	free(sim.tls_cert);
	free(sim.tls_key);
	free(sim.tls_ca);
	return 0;
}
