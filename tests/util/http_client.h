/*
 * tests/util/http_client.h — the one HTTP client of the tests (libcurl underneath): a
 * request (method, URL, header lines, bearer or basic credentials, body, time bound) gives
 * an answer (status, body, and the response headers tests look at: Content-Type, Allow,
 * Retry-After, WWW-Authenticate, ETag), or status 0 and the transport's reason when
 * nothing answered. A request runs on a fresh connection, or on a kept-alive one
 * (http_client_t) when a test wants to reuse it, e.g. one per client thread.
 *
 * The line "Expect:" is always sent, so that curl never waits for a "100 Continue" — unless
 * the caller's own header lines hold an Expect line, which is then sent as given.
 */
#ifndef KANAL_TEST_HTTP_CLIENT_H
#define KANAL_TEST_HTTP_CLIENT_H

#include <stddef.h>

typedef struct http_client http_client_t;

typedef struct http_request {
	const char *method;         /* NULL: POST when there is a body, else GET */
	const char *url;            /* absolute */
	const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
	const char *bearer;         /* adds "Authorization: Bearer <bearer>" when set */
	const char *userpwd;        /* basic authentication "user:password" when set */
	const char *body;           /* NULL: none (a POST without one sends an empty body) */
	size_t body_len;            /* bytes of body; strlen(body) when 0 */
	int timeout_ms;             /* the whole request's bound; 10000 when 0 */
	int connect_timeout_ms;     /* libcurl's default when 0 */
	/* https: the CA the server's certificate must chain to (NULL: the system's), and the
	 * client certificate and key (PEM) sent for mutual TLS (NULL: none). */
	const char *ca_file;
	const char *client_cert;
	const char *client_key;
} http_request_t;

typedef struct http_answer {
	long status; /* 0 when nothing answered */
	char *body;  /* NUL-terminated, never NULL after http_request */
	size_t len;
	char content_type[128]; /* the response headers' values, "" when absent */
	char allow[128];
	char retry_after[32];
	char www_authenticate[128];
	char etag[256];
	char error[256]; /* why nothing answered (status 0) */
} http_answer_t;

/* A kept-alive connection for several requests; NULL when libcurl cannot make one. Not for
 * two threads at once. Ownership: the caller owns the client (http_client_destroy). */
http_client_t *http_client_new(void);
/* Closes the connection and frees the client; accepts NULL and nulls *client_p.
 * Ownership: takes *client_p. */
void http_client_destroy(http_client_t **client_p);

/* Performs req — on client's connection, or on a fresh one when client is NULL — and fills
 * *out (cleared first). Returns out->status. Ownership: borrows client and req; the caller
 * owns out->body (http_answer_clear). */
long http_request(http_client_t *client, const http_request_t *req, http_answer_t *out);
/* Frees the answer's body and zeroes it. Ownership: borrows a, frees what it holds. */
void http_answer_clear(http_answer_t *a);

#endif
