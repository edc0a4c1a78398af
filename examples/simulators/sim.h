/*
 * examples/simulators/sim.h — the scaffolding every simulated upstream system shares: an
 * HTTP server on 127.0.0.1 (libmicrohttpd, a thread per connection so that a hanging
 * answer holds up nobody else), the command line, switchable faults, and a clock tick for
 * simulators that produce data over time (parents registering, HR registering absence).
 *
 * A simulator is a program whose main is one call:
 *
 *     int main(int argc, char **argv)
 *     {
 *             return sim_main(argc, argv, &(sim_def_t){ .name = "daycare",
 *                             .handle = s_handle, .tick = s_tick, .tick_ms = 1000 });
 *     }
 *
 * Command line, common to all simulators:
 *   --port N          listen on 127.0.0.1:N (0, the default: an ephemeral port)
 *   --port-file PATH  write the chosen port there once listening (tests and the demo read it)
 *   --fault MODE      start with a fault switched on (see below)
 *   --set NAME=VALUE  a simulator-specific setting (sim_setting), may repeat
 *   --quiet           no line per request on stderr
 *   --set tls_cert=F --set tls_key=F --set tls_ca=F
 *                     serve https with that certificate and key (PEM), and ask each client
 *                     for a certificate issued by tls_ca (mutual TLS; see client_cert)
 *
 * Faults, switched at run time with `POST /_sim/fault` and a JSON body
 * `{"mode": "slow", "count": 3, "delay_ms": 2000}` (count 0 or absent: until switched off;
 * `{"mode": "none"}` switches off); `GET /_sim/fault` shows the current one:
 *   none     normal answers
 *   slow     answer normally after delay_ms (default 2000)
 *   error    503 Service Unavailable with Retry-After: 1
 *   garbage  200 with a malformed body of the right content type
 *   drop     close the connection without an answer
 *   hang     never answer (until the simulator stops)
 * Faults apply to every path except /_sim/. `GET /_sim/stats` gives request counts.
 */
#ifndef KANAL_SIM_H
#define KANAL_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sim sim_t;

typedef struct sim_request {
	const char *method; /* "GET" */
	const char *path;   /* "/api/v1/registrations", without the query */
	const char *body;   /* NUL-terminated; "" when none */
	size_t body_len;
	const char *content_type; /* or NULL */
	const char *user;         /* basic-auth user name, or NULL */
	const char *password;     /* basic-auth password, or NULL */
	const char *bearer;       /* bearer token, or NULL */
	void *conn;               /* for sim_query / sim_header */
	/* Over https (tls_cert): the client's certificate, checked against tls_ca. */
	enum { SIM_CERT_NONE, SIM_CERT_OK, SIM_CERT_EXPIRED, SIM_CERT_UNTRUSTED } client_cert;
	char client_cert_b64[8192]; /* its DER in base64 on one line, "" when none */
} sim_request_t;

/* What a handler fills in. sim_reply* set it; the default is 404 with an empty body. */
typedef struct sim_response {
	int status;
	char *body; /* malloc'd; freed by the scaffolding */
	size_t len;
	const char *content_type; /* static string */
	char headers[512];        /* extra "Name: value\n" lines */
} sim_response_t;

typedef struct sim_def {
	const char *name; /* "daycare": the program is kanal-sim-daycare */
	/* Serves one request; called with the simulator's lock held, so handlers and tick
	 * never run at the same time. */
	void (*handle)(sim_t *sim, const sim_request_t *req, sim_response_t *res);
	/* Called every tick_ms with the lock held (NULL: no tick). */
	void (*tick)(sim_t *sim);
	int64_t tick_ms;
	/* Called once after the command line is read and before serving; returns 0 or -1
	 * after printing why (NULL: nothing to do). */
	int (*setup)(sim_t *sim);
	/* How long to wait before serving req (ms; 0: none), outside the lock, so that one slow
	 * answer holds up no other (NULL: never). The `slow` fault waits for every request;
	 * this lets a simulator slow down particular ones (cpr's slow_pnr). */
	int64_t (*delay_ms)(sim_t *sim, const sim_request_t *req);
	/* What a "garbage" fault answers with: a content type and a malformed body. */
	const char *garbage_type;
	const char *garbage_body;
} sim_def_t;

/* Runs the simulator until SIGINT or SIGTERM. Returns the process's exit status. */
int sim_main(int argc, char **argv, const sim_def_t *def);

/* A --set NAME=VALUE setting, or fallback when not given. */
const char *sim_setting(const sim_t *sim, const char *name, const char *fallback);
int64_t sim_setting_int(const sim_t *sim, const char *name, int64_t fallback);

/* The simulator's own state, for its handlers (set once in setup). */
void sim_set_state(sim_t *sim, void *state);
void *sim_state(const sim_t *sim);

/* A query argument or a request header of the request being served, or NULL. */
const char *sim_query(const sim_request_t *req, const char *name);
const char *sim_header(const sim_request_t *req, const char *name);

/* Fill the response: a copy of body (len -1: strlen), or a printf-formatted body. */
void sim_reply(sim_response_t *res, int status, const char *content_type, const char *body,
	       long len);
void sim_replyf(sim_response_t *res, int status, const char *content_type, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Takes a malloc'd body. */
void sim_reply_take(sim_response_t *res, int status, const char *content_type, char *body,
		    size_t len);
/* Adds a response header line. */
void sim_reply_header(sim_response_t *res, const char *name, const char *value);

/* A line on stderr prefixed with the simulator's name (CPR numbers masked). */
void sim_log(const sim_t *sim, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Compiles the schema `rel` of the national services' contracts ("sf2900/…xsd"), found in
 * --set schemas=DIR, else contracts/schemas of the working directory, else of the source
 * tree whose build/bin holds the program. Returns the schema (a libxml2 xmlSchemaPtr, to
 * keep for the simulator's life), or NULL after printing which file would not compile. */
void *sim_schema(const sim_t *sim, const char *rel);

/* Runs fn(sim) on a detached thread of its own that takes no signal (they are for the
 * main thread's sigtimedwait): the callback pushers of the simulators that call a sender
 * back. Returns 0, or -1 after saying on stderr that `what` could not start. */
int sim_thread_start(sim_t *sim, void *(*fn)(void *sim), const char *what);

/* After a push: resets *wait_ms to first_ms when it was taken; when it was not, sleeps
 * *wait_ms and doubles it up to max_ms — how a real service retries a callback. */
void sim_push_backoff(int64_t *wait_ms, bool taken, int64_t first_ms, int64_t max_ms);

/* Milliseconds of a monotonic clock, and the wall clock as "YYYY-MM-DD" / RFC 3339. */
int64_t sim_now_ms(void);
void sim_today(char buf[11], int offset_days);
void sim_rfc3339_now(char buf[40]);

#endif
