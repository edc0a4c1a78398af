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

#include "kc_url.h"

typedef struct kc_http kc_http_t;

typedef struct kc_http_opts {
	int64_t timeout_ms;         /* whole request; 0: 10 s */
	int64_t connect_timeout_ms; /* 0: 3 s */
	const char *user;           /* basic auth when not NULL */
	const char *password;
	const char *bearer_token;    /* Authorization: Bearer …, when not NULL */
	const char *ca_file;         /* extra CA bundle for https, or NULL */
	size_t max_body;             /* largest answer accepted; 0: 8 MiB */
	const char *client_cert;     /* TLS client certificate (PEM file), or NULL */
	const char *client_key;      /* its private key (PEM file), or NULL: in client_cert */
	const char *client_cert_pem; /* or the certificate and key in memory (PEM text, e.g. */
	const char *client_key_pem;  /* from kc_cert_http_opts): the key never touches disk */
	kanal_ctx_t *ctx;            /* when not NULL, each request reports the upstream up or
				      * down to it (kanal_upstream_report); kc_http_conf_open sets it */
} kc_http_opts_t;

/* The HTTP options the connectors share, bound by offset (kanal_config_bind) into a
 * kc_http_conf_t member of the plugin's state by the KC_HTTP_OPT_* table fragments below,
 * then turned into a client's settings by kc_http_conf_open. A plugin declares the fragments
 * it documents; what it does not declare stays NULL/0. */
typedef struct kc_http_conf {
	int64_t timeout_ms;      /* option timeout */
	const char *ca_file;     /* option ca_file */
	const char *client_cert; /* options client_cert and client_key */
	const char *client_key;
	const char *token; /* options token and token_file (bearer) */
	const char *token_file;
	const char *user; /* options user, password and password_file (basic auth) */
	const char *password;
	const char *password_file;
	bool allow_plain_http;         /* option allow_plain_http (kc_url.h) */
	const char *token_file_option; /* the token file's option name in errors; NULL:
					* "token_file" */
	char *token_secret;            /* read from token_file; wiped by kc_http_conf_clear */
	char *password_secret;         /* read from password_file; likewise */
} kc_http_conf_t;

/* Options-table fragments: each expands to one or more kanal_option_t entries bound into
 * the kc_http_conf_t `member` of `state_type`. The timeout's default and help differ from
 * connector to connector, so they are parameters. */
#define KC_HTTP_OPT_TIMEOUT(state_type, member, default_text, help_text)                           \
	{                                                                                          \
		.name = "timeout", .type = KANAL_OPT_DURATION, .default_value = default_text,      \
		.min = "1ms", KANAL_OPT_AT(state_type, member.timeout_ms), .help = help_text       \
	}
#define KC_HTTP_OPT_CA_FILE(state_type, member)                                                    \
	{                                                                                          \
		.name = "ca_file", .type = KANAL_OPT_PATH,                                         \
		KANAL_OPT_AT(state_type, member.ca_file),                                          \
		.help = "Extra CA bundle (PEM) to trust for the upstream's https certificate."     \
	}
#define KC_HTTP_OPT_CLIENT_CERT(state_type, member)                                                \
	{ .name = "client_cert",                                                                   \
	  .type = KANAL_OPT_PATH,                                                                  \
	  KANAL_OPT_AT(state_type, member.client_cert),                                            \
	  .help = "TLS client certificate (PEM) the upstream knows kanal by." },                   \
	{                                                                                          \
		.name = "client_key", .type = KANAL_OPT_PATH,                                      \
		KANAL_OPT_AT(state_type, member.client_key),                                       \
		.help = "Private key (PEM) of client_cert, when not in the same file; keep it "    \
			"0600."                                                                    \
	}
#define KC_HTTP_OPT_TOKEN(state_type, member)                                                      \
	{ .name = "token",                                                                         \
	  .type = KANAL_OPT_STRING,                                                                \
	  KANAL_OPT_AT(state_type, member.token),                                                  \
	  .help = "Bearer token for the upstream (prefer token_file)." },                          \
	{                                                                                          \
		.name = "token_file", .type = KANAL_OPT_PATH,                                      \
		KANAL_OPT_AT(state_type, member.token_file),                                       \
		.help = "File holding the bearer token (one line; mode 0600 or 0400)."             \
	}
#define KC_HTTP_OPT_USER(state_type, member)                                                       \
	{                                                                                          \
		.name = "user", .type = KANAL_OPT_STRING, KANAL_OPT_AT(state_type, member.user),   \
		.help = "User name for HTTP basic authentication."                                 \
	}
#define KC_HTTP_OPT_PASSWORD(state_type, member)                                                   \
	{                                                                                          \
		.name = "password", .type = KANAL_OPT_STRING,                                      \
		KANAL_OPT_AT(state_type, member.password),                                         \
		.help = "Password for basic authentication (prefer password_file)."                \
	}
#define KC_HTTP_OPT_PASSWORD_FILE(state_type, member)                                              \
	{                                                                                          \
		.name = "password_file", .type = KANAL_OPT_PATH,                                   \
		KANAL_OPT_AT(state_type, member.password_file),                                    \
		.help = "File holding the basic-auth password (one line; mode 0600 or 0400)."      \
	}
#define KC_HTTP_OPT_BASIC_AUTH(state_type, member)                                                 \
	KC_HTTP_OPT_USER(state_type, member), KC_HTTP_OPT_PASSWORD(state_type, member),            \
		KC_HTTP_OPT_PASSWORD_FILE(state_type, member)

/* Checks what the table cannot — token and token_file exclude each other, so do password
 * and password_file, and a password needs a user — reads token_file and password_file
 * (kc_secret_read: private files only), and fills *opts: the timeout (connecting at most
 * 3 s of it), the CA file, the client certificate, basic auth, the bearer token and ctx
 * (so that the client reports the upstream's state to the instance). The
 * strings in *opts are borrowed from conf and the config: make the client (kc_http_new,
 * which copies them) before kc_http_conf_clear. Returns 0, or KANAL_ECONFIG after
 * kanal_set_error naming the options. Ownership: borrows ctx; fills conf's secrets and
 * *opts. */
int kc_http_conf_open(kanal_ctx_t *ctx, kc_http_conf_t *conf, kc_http_opts_t *opts);

/* Wipes and frees the secrets kc_http_conf_open read (accepts NULL). */
void kc_http_conf_clear(kc_http_conf_t *conf);

/* One answer. `status` is 0 when no HTTP answer came (refused, timed out, dropped, too
 * large); `error.text` then says why. Headers kanal's connectors use are kept. */
typedef struct kc_response {
	long status;
	char *body; /* NUL-terminated; may hold NULs of a binary body before len */
	size_t len;
	char *etag;             /* ETag header, quotes kept, or NULL */
	char *location;         /* Location header, or NULL */
	char *content_type;     /* Content-Type header, or NULL */
	int64_t retry_after_ms; /* Retry-After (seconds or HTTP date), -1 when absent */
	kanal_error_t error;    /* the transport error (its text) when status is 0 */
} kc_response_t;

/* A client with the given settings (copied). Returns NULL when out of memory. The client
 * keeps its connection alive between requests. Ownership: borrows opts. */
kc_http_t *kc_http_new(const kc_http_opts_t *opts);
void kc_http_destroy(kc_http_t **http_p);

/* Sends one request and waits for the answer, at most the client's timeout. `headers` is a
 * NULL-terminated list of "Name: value" lines or NULL; `body` may be NULL. Returns 0 when
 * an HTTP answer came (whatever its status); when none did, res->error says why and the
 * result is KANAL_ETIMEDOUT (the timeout passed), KANAL_ETOOBIG (the answer was larger than
 * max_body), KANAL_ENOMEM, or KANAL_EIO (refused, dropped, TLS or any other transport
 * failure). res is cleared first; free it with kc_response_clear. Ownership: borrows
 * everything; fills res. */
int kc_http_request(kc_http_t *http, const char *method, const char *url,
		    const char *const *headers, const char *body, size_t body_len,
		    kc_response_t *res);
void kc_response_clear(kc_response_t *res);

/* Copies the value of the header `name` (case-insensitive) of the last answer http received
 * into buf — several headers of that name joined by ", ", as HTTP reads them. Call it before
 * the client's next request. Returns 0, KANAL_ENOTFOUND (no such header, or no answer yet)
 * or KANAL_ETOOBIG (it does not fit buf; buf then holds a cut value). Ownership: borrows
 * http and name; fills buf. */
int kc_http_header(kc_http_t *http, const char *name, char *buf, size_t size);

/* Lets another thread stop this client's transfers: while *cancel (read atomically) is
 * non-zero, a transfer in progress is aborted within about a second and its connection
 * closed; kc_http_request then answers KANAL_ECLOSED. NULL: no such check (the default).
 * Used by a service that abandons a request whose caller gave up (kanal_request_defer).
 * Ownership: borrows cancel, which must outlive the client's requests until reset. */
void kc_http_set_cancel(kc_http_t *h, const int *cancel);

/* The outcome a delivery gets from an HTTP answer, with the error set on ctx when it is not
 * OK: 2xx OK; no answer, 408, 425, 429 and 5xx RETRY (Retry-After passed on as the retry
 * hint); any other status REJECT. `what` names the call in the error ("POST notice").
 * The error quotes at most 200 bytes of the answer, with CPR numbers masked. */
kanal_outcome_t kc_http_outcome(kanal_ctx_t *ctx, const kc_response_t *res, const char *what);

/* Writes "what: <status> <excerpt>" (or the transport error) into buf, CPR numbers masked,
 * for logs and errors. Returns buf. */
const char *kc_http_describe(const kc_response_t *res, const char *what, char *buf, size_t size);

#endif
