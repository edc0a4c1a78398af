/*
 * tests/util/upstream.h — run a simulated upstream system (examples/simulators, built as
 * $BUILD/bin/kanal-sim-<name>) in a test: on an ephemeral port of 127.0.0.1, with bounded
 * waits, switchable faults and clean-up; and HTTP calls (tests/util/http_client.h) to
 * inspect what it received. upstream_start_tls runs it as the national services run:
 * https with mutual TLS, certificates from a test CA (tests/util/testca.h), and the calls
 * present the CA's client certificate. The simulator's own log goes to
 * <dir>/sim-<name>.log.
 */
#ifndef KANAL_TEST_UPSTREAM_H
#define KANAL_TEST_UPSTREAM_H

#include <stddef.h>
#include <sys/types.h>

typedef struct upstream {
	char *name;
	char *dir; /* a temporary folder of its own */
	char *log_path;
	pid_t pid;
	int port;
	char url[64]; /* "http://127.0.0.1:<port>", or https:// with upstream_start_tls */
	char *ca_dir; /* upstream_start_tls: the test CA's folder (borrowed), else NULL */
	/* Credentials upstream_http sends when set (the simulator's --set token= / user=): */
	char bearer[128];  /* Authorization: Bearer <bearer> */
	char userpwd[128]; /* basic auth "user:password" */
} upstream_t;

/* Starts kanal-sim-<name> with the extra arguments (NULL-terminated list or NULL, e.g.
 * "--set", "rate=0") and waits up to 5 s for its port. Returns NULL (and prints why) when
 * it does not come up. */
upstream_t *upstream_start(const char *name, const char *const *args);
/* The same over https with mutual TLS: adds --set tls_cert/tls_key/tls_ca for the test CA
 * in ca_dir (testca_make: server.pem, server.key, ca.pem), and upstream_http then trusts
 * that CA and presents its client certificate (client.pem, client.key). Ownership: borrows
 * ca_dir, which must outlive the upstream. */
upstream_t *upstream_start_tls(const char *name, const char *ca_dir, const char *const *args);
/* Stops it (SIGTERM, then SIGKILL after 3 s) and removes its folder. Accepts NULL. */
void upstream_stop(upstream_t **up_p);

/* Switches the simulator's fault: mode none|slow|error|garbage|drop|hang, count requests
 * (0: until switched off). Returns 0 or -1. */
int upstream_fault(upstream_t *up, const char *mode, int count);

/* One HTTP request to url (absolute, or a path on the simulator when it starts with '/'
 * and up is given). Returns the status (0 when no answer) and sets *body (malloc'd, may be
 * NULL). Waits at most 10 s. */
long upstream_http(upstream_t *up, const char *method, const char *url, const char *body,
		   const char *content_type, char **body_out);

#endif
