/*
 * broker/admin_http.h — the HTTP admin endpoint (health, readiness, Prometheus metrics,
 * JSON admin API, dashboard). See admin_http.c and docs/operations.md.
 */
#ifndef KANAL_ADMIN_HTTP_H
#define KANAL_ADMIN_HTTP_H

#include <stddef.h>

typedef struct admin_http admin_http_t;
struct sockaddr_in;

/* Parses the admin_http address, "http://HOST:PORT" with HOST an IPv4 address or localhost
 * and PORT 0-65535, into addr. Returns 0, or -1 when it is not one. conf.c checks the
 * config with it, so that what kanalctl check accepts is what admin_http_new binds.
 * Ownership: borrows text; writes addr. */
int admin_http_parse_listen(const char *text, struct sockaddr_in *addr);

/* Binds `listen` ("http://127.0.0.1:7703"; port 0 picks one) and starts serving on its own
 * thread. token_file (NULL or "": no token) holds the bearer token the API requires; it
 * must not be readable by others, and without it `listen` must be a loopback address. Requests reach the router through its admin socket, set
 * with admin_http_set_admin_endpoint once it is bound (until then they get 503). Returns
 * NULL with err filled on failure. Ownership: borrows everything; zctx must outlive it. */
admin_http_t *admin_http_new(const char *listen, const char *token_file, void *zctx, char *err,
			     size_t err_size);
void admin_http_set_admin_endpoint(admin_http_t *a, const char *endpoint);
/* "http://127.0.0.1:PORT", the bound address. */
const char *admin_http_url(const admin_http_t *a);
/* Stops serving (waits for a request in progress) and frees. Accepts NULL. */
void admin_http_destroy(admin_http_t **a_p);

#endif
