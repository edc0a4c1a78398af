/*
 * plugins/common/kc_http.h — the connectors' HTTP client over libcurl, whose answers map onto the plugin
 * outcomes the same way in every connector.
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a) and compiled with hidden visibility, so nothing here is
 * exported from a plugin. Functions are prefixed kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_KC_HTTP_H
#define KANAL_PLUGINS_KC_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kanal/kanal.h>

typedef struct kc_http kc_http_t;

typedef struct kc_http_opts {
	int64_t timeout_ms;         /* whole request; 0: 10 s */
	int64_t connect_timeout_ms; /* 0: 3 s */
	const char *user;           /* basic auth when not NULL */
	const char *password;
	const char *bearer_token;   /* Authorization: Bearer …, when not NULL */
	const char *ca_file;        /* extra CA bundle for https, or NULL */
	size_t max_body;            /* largest answer accepted; 0: 8 MiB */
	const char *client_cert;    /* TLS client certificate (PEM file), or NULL */
	const char *client_key;     /* its private key (PEM file), or NULL: in client_cert */
} kc_http_opts_t;

/* One answer. `status` is 0 when no HTTP answer came (refused, timed out, dropped, too
 * large); `error` then says why. Headers kanal's connectors use are kept. */
typedef struct kc_response {
	long status;
	char *body;             /* NUL-terminated; may hold NULs of a binary body before len */
	size_t len;
	char *etag;             /* ETag header, quotes kept, or NULL */
	char *location;         /* Location header, or NULL */
	char *content_type;     /* Content-Type header, or NULL */
	int64_t retry_after_ms; /* Retry-After (seconds or HTTP date), -1 when absent */
	char error[256];        /* transport error when status is 0 */
} kc_response_t;

/* A client with the given settings (copied). Returns NULL when out of memory. The client
 * keeps its connection alive between requests. Ownership: borrows opts. */
kc_http_t *kc_http_new(const kc_http_opts_t *opts);
void kc_http_destroy(kc_http_t **http_p);

/* Sends one request and waits for the answer, at most the client's timeout. `headers` is a
 * NULL-terminated list of "Name: value" lines or NULL; `body` may be NULL. Returns 0 when
 * an HTTP answer came (whatever its status), -1 when none did (res->error says why).
 * res is cleared first; free it with kc_response_clear. Ownership: borrows everything. */
int kc_http_request(kc_http_t *http, const char *method, const char *url,
		    const char *const *headers, const char *body, size_t body_len,
		    kc_response_t *res);
void kc_response_clear(kc_response_t *res);

/* The outcome a delivery gets from an HTTP answer, with the error set on ctx when it is not
 * OK: 2xx OK; no answer, 408, 425, 429 and 5xx RETRY (Retry-After passed on as the retry
 * hint); any other status REJECT. `what` names the call in the error ("POST notice").
 * The error quotes at most 200 bytes of the answer, with CPR numbers masked. */
kanal_outcome_t kc_http_outcome(kanal_ctx_t *ctx, const kc_response_t *res, const char *what);

/* Writes "what: <status> <excerpt>" (or the transport error) into buf, CPR numbers masked,
 * for logs and errors. Returns buf. */
const char *kc_http_describe(const kc_response_t *res, const char *what, char *buf, size_t size);

#endif
