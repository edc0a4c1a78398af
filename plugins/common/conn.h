/*
 * plugins/common/conn.h — what the municipal connectors share: an HTTP client over libcurl
 * whose answers map onto the plugin outcomes the same way in every connector, and files
 * written atomically (a cursor in the state folder, a print job in a spool folder).
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a) and compiled with hidden visibility, so nothing here is
 * exported from a plugin. Functions are prefixed kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_CONN_H
#define KANAL_PLUGINS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <kanal/kanal.h>

/* ---- HTTP ------------------------------------------------------------------------------ */

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

/* ---- files ----------------------------------------------------------------------------- */

/* Writes dir/name atomically: a temporary file in dir, written, fsync'd, renamed over
 * name, and dir fsync'd, so a reader (or a restart after a crash) sees the old content or
 * the new, never a part. mode is the new file's permissions (e.g. 0600). Returns 0 or a
 * negative KANAL_E code (KANAL_EIO with errno kept). Ownership: borrows everything. */
int kc_file_write_atomic(const char *dir, const char *name, const void *buf, size_t len,
			 mode_t mode);

/* Reads dir/name (dir NULL: name is the whole path) whole. Returns 0 and a malloc'd NUL-terminated *out (free with free()),
 * KANAL_ENOTFOUND when there is no such file, or another negative code. */
int kc_file_read(const char *dir, const char *name, char **out, size_t *len);

/* The same two in the instance's state folder (kanal_state_dir): a poller's cursor. */
int kc_state_write(kanal_ctx_t *ctx, const char *name, const void *buf, size_t len);
int kc_state_read(kanal_ctx_t *ctx, const char *name, char **out, size_t *len);

/* Reads a secret (a token or password) from the file at path, for the option called
 * `option`: the file must be private (no access for group or others: mode 0600 or 0400),
 * and the secret is its first line (a trailing newline ignored; it must not be empty).
 * Returns 0 and a malloc'd *out (wipe and free it when done), or KANAL_ECONFIG with the
 * error set on ctx naming the option, the file and the cause — never the secret. */
int kc_secret_read(kanal_ctx_t *ctx, const char *option, const char *path, char **out);

/* ---- a log a peer cannot flood ------------------------------------------------------------ */

/* A line that whoever can reach the instance's port can cause at will (a refused request,
 * a malformed connection) goes through a limiter: at most one a second is written, the
 * others are counted and the count goes out with the next ("(N more like this held
 * back)"). Metrics still count every one. One limiter per kind of line, used on the
 * instance's thread. */
typedef struct kc_log_limit {
	int64_t next_ms;
	unsigned held;
} kc_log_limit_t;

void kc_log_limited(kanal_ctx_t *ctx, kc_log_limit_t *limit, kanal_log_level_t level,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- text ------------------------------------------------------------------------------ */

/* Expands a template's {name} placeholders with lookup(name, arg) (NULL: the error
 * "unknown placeholder"). When url_escape is set, each value is percent-encoded (RFC 3986
 * unreserved characters kept). Returns a malloc'd string, or NULL with why filled in. */
typedef const char *(*kc_lookup_fn)(const char *name, void *arg);
char *kc_template_expand(const char *tmpl, kc_lookup_fn lookup, void *arg, bool url_escape,
			 char *why, size_t why_size);

#endif
