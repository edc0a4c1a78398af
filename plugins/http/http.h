/*
 * plugins/http/http.h — the private interfaces between the parts of the `http` plugin:
 * CloudEvents over HTTP in (ingress.c: a libmicrohttpd server driven from the instance's
 * thread) and out (egress.c: a webhook destination over plugins/common's HTTP client), the
 * gate that admits the ingress's connections and bounds slow and flooding clients
 * (gate.c), the bearer tokens that guard the ingress (tokens.c), and the CloudEvents HTTP
 * protocol binding's header codec both directions share (binding.c), and vendor JSON made
 * into events by jq on the ingress's map_paths (mapped.c). http.c holds the descriptor
 * and the options table and wires the parts to the plugin lifecycle.
 *
 * Nothing here is exported from the .so (it is built with hidden visibility).
 */
#ifndef KANAL_PLUGIN_HTTP_H
#define KANAL_PLUGIN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <kanal/kanal.h>

#include "../common/kc_http.h"

/* ---- binding.c: the CloudEvents HTTP protocol binding's codec --------------------------- */

/* The media types of the JSON event format and its batch format. */
#define BINDING_STRUCTURED "application/cloudevents+json"
#define BINDING_BATCH "application/cloudevents-batch+json"

/* Copies the media type of a Content-Type value — lower case, parameters and blanks
 * dropped — into buf ("" for NULL). Returns buf. */
const char *binding_media_type(const char *content_type, char *buf, size_t size);

/* True when a media type carries JSON: application/json, text/json or any "+json" suffix.
 * NULL (no datacontenttype) counts as JSON, as the JSON event format says. */
bool binding_media_is_json(const char *media);

/* Decodes one ce-* header value as the binding prescribes: a double-quoted value is
 * unquoted (backslash escapes processed), then one round of percent-decoding is done, and
 * the result must be valid UTF-8 without control characters. Returns a malloc'd string, or
 * NULL with why filled in (the reason never repeats the value). */
char *binding_header_decode(const char *value, char *why, size_t why_size);

/* Percent-encodes an attribute value for a ce-* header: space, '"', '%' and every byte
 * outside printable ASCII become %XY (upper-case hex). Returns a malloc'd string or NULL. */
char *binding_header_encode(const char *value);

/* One request header, as received. */
typedef struct binding_header {
	const char *name;
	const char *value;
} binding_header_t;

/* Builds an event from a binary-mode request: the ce-* headers among headers[0..n) are its
 * attributes, body[0..len) its data and content_type (the Content-Type header, or NULL)
 * its datacontenttype. JSON data is kept as JSON, any other as data_base64, so the bytes
 * pass unchanged. On failure returns KANAL_EINVALID with the attribute at fault named in
 * err (a 400) or KANAL_ETOOBIG when the event exceeds max_event_size (a 413), and *out
 * stays NULL. Ownership: borrows everything; *out is a new message. */
int binding_binary_decode(const binding_header_t *headers, size_t n, const char *content_type,
			  const char *body, size_t len, size_t max_event_size, kanal_msg_t **out,
			  kanal_error_t *err);

/* ---- multipart.c: an event with its files (multipart/form-data; docs/plugins/http.md) */

/* The most parts a multipart request may have (the event and its files). */
#define MULTIPART_MAX_PARTS 33

/* A multipart/form-data request read as it arrives: the part named "event" is the
 * structured CloudEvent (kept in memory, at most max_event_size); every other part is a
 * file streamed into the blob store as its bytes come (kanal_blob_writer_t), so memory
 * stays bounded whatever the files weigh. Its reference ({"href", "mediaType", "size"}) is
 * added to the array data.<part name> and its URI to the `kanalblob` attribute. */
typedef struct multipart multipart_t;

/* Starts reading a body of Content-Type content_type. Returns 0 with *out, KANAL_EPARSE
 * (no boundary: a 400) or KANAL_ENOMEM, with err. Ownership: borrows ctx (kept) and
 * content_type; *out is new (multipart_destroy). */
int multipart_new(kanal_ctx_t *ctx, const char *content_type, size_t max_event_size,
		  multipart_t **out, kanal_error_t *err);

/* Reads the next len bytes of the body. Returns 0, or the first failure — KANAL_EPARSE /
 * KANAL_EINVALID (a 400), KANAL_ETOOBIG (a 413: a file over max_blob_size, a full store,
 * the event part over max_event_size; the file being written is dropped) or another code
 * from the blob store — with err; after a failure further bytes are ignored and the same
 * code is returned. Ownership: borrows data. */
int multipart_feed(multipart_t *mp, const char *data, size_t len, kanal_error_t *err);

/* Ends the body and builds the event. Returns 0 with *out, or a code as multipart_feed (a
 * body cut short, no event part, data that is not an object: KANAL_EPARSE / EINVALID).
 * Blobs already stored for a refused request are left for kanald's sweep. Ownership: *out
 * is new. */
int multipart_finish(multipart_t *mp, kanal_msg_t **out, kanal_error_t *err);

/* Drops the reader and a file being written; accepts NULL. Ownership: takes *mp_p. */
void multipart_destroy(multipart_t **mp_p);

/* A request to send one event: a NULL-terminated list of malloc'd "Name: value" header
 * lines and a body (which may hold NULs: use len). Free with binding_out_clear. */
typedef struct binding_out {
	char **headers;
	size_t n_headers;
	char *body;
	size_t len;
	bool body_is_malloc; /* else it came from libkanal: freed with kanal_free */
} binding_out_t;

/* Renders msg for a POST in the structured (binary == false) or the binary content mode.
 * Returns 0 or KANAL_ENOMEM / KANAL_EINVAL (the data cannot be rendered; why says how).
 * Ownership: borrows msg; out is the caller's to clear. */
int binding_render(const kanal_msg_t *msg, bool binary, binding_out_t *out, char *why,
		   size_t why_size);
void binding_out_clear(binding_out_t *out);

/* ---- tokens.c: bearer tokens of the ingress's clients ---------------------------------- */

typedef struct tokens tokens_t;
typedef struct tokens_client tokens_client_t;

/* Reads a tokens file: lines "client-name token [type-pattern,…]", '#' starts a comment.
 * Refuses (KANAL_ECONFIG, why filled, naming the file and line) a file that group or others
 * may read or write (mode must be 0600 or 0400), a malformed line, a token shorter than 16
 * characters, a token given twice, or a file with no client; KANAL_EIO when it cannot be
 * read. Tokens are kept only as SHA-256 digests. Ownership: *out is the caller's. */
int tokens_load(const char *path, tokens_t **out, char *why, size_t why_size);
void tokens_destroy(tokens_t **tokens_p);
size_t tokens_count(const tokens_t *tokens);

/* Finds the client whose token is `presented` (len bytes), comparing digests in constant
 * time and looking at every entry whatever matched. Returns the client (borrowed from
 * tokens) or NULL. */
const tokens_client_t *tokens_check(const tokens_t *tokens, const char *presented, size_t len);
const char *tokens_client_name(const tokens_client_t *client);
/* True when the client may send events of `type`: it has no type patterns, or one matches
 * ('*' one dot-separated token, '>' the rest, as in routing files). */
bool tokens_client_allows(const tokens_client_t *client, const char *type);
/* True when the client owns `source`: it has no sources= list, or a pattern of it matches
 * (kanal_source_matches). NULL client: true (no authentication). */
bool tokens_client_owns(const tokens_client_t *client, const char *source);

/* client_rate: takes n tokens (a request's events) from the client's bucket, refilled at
 * per_second and holding at most burst. Returns 0 when they were there (taken), else the
 * milliseconds to wait (nothing taken). per_second <= 0: no limit. The buckets live in
 * tokens; one thread (the instance's) uses them. Ownership: borrows client. */
int64_t tokens_client_take(tokens_t *tokens, const tokens_client_t *client, size_t n,
			   double per_second, double burst, int64_t now_ms);

/* True when a routing-style type pattern matches type. */
bool tokens_type_matches(const char *pattern, const char *type);

/* ---- http.c: the options, bound by offset (kanal_config_bind) -------------------------- */

typedef struct http_options {
	/* ingress */
	const char *listen, *path, *port_file, *tokens_file;
	bool allow_unauthenticated;
	int64_t max_body, max_event_size;
	int64_t flush_timeout_ms, busy_retry_after_ms, dedupe_window_ms;
	int64_t max_connections, connection_timeout_ms;
	int64_t request_timeout_ms, max_connections_per_address;
	int64_t client_rate, client_burst; /* per token client; 0: no limit */
	kanal_strlist_t map_paths;         /* "PATH SOURCE MAP": vendor JSON in (mapped.c) */
	const char *map_dir;
	/* egress */
	const char *url, *mode;
	kanal_strlist_t headers;
	kc_http_conf_t http; /* timeout, ca_file, bearer_token_file, allow_plain_http */
} http_options_t;

/* ---- gate.c: which connections the ingress serves ---------------------------------------- */

struct MHD_Daemon;
struct MHD_Connection;
enum MHD_ConnectionNotificationCode;

typedef struct gate gate_t;

/* The limits that protect the ingress from slow and flooding clients. */
typedef struct gate_limits {
	unsigned max_connections;   /* open at once; one more evicts the oldest unanswered */
	unsigned max_per_address;   /* open at once from one client address */
	int64_t request_timeout_ms; /* to receive a whole request, head and body */
} gate_limits_t;

/* Makes a gate with these limits; nothing is opened. Returns 0 or KANAL_ENOMEM.
 * Ownership: *out is the caller's (gate_destroy). */
int gate_new(kanal_ctx_t *ctx, const gate_limits_t *limits, gate_t **out);
/* Binds and listens on sa, accepting from the instance's thread; *port_out is the bound
 * port. Returns 0 or KANAL_EIO with errno set. */
int gate_listen(gate_t *g, kanal_ctx_t *ctx, const struct sockaddr *sa, socklen_t len,
		int *port_out);
/* Hands accepted connections to daemon (started with MHD_USE_NO_LISTEN_SOCKET and
 * gate_on_mhd_connection as MHD_OPTION_NOTIFY_CONNECTION); pump(arg) runs it after. */
void gate_serve(gate_t *g, struct MHD_Daemon *daemon, void (*pump)(void *arg), void *arg);
/* libmicrohttpd's connection notifications; cls is the gate. */
void gate_on_mhd_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			    enum MHD_ConnectionNotificationCode toe);
/* The request handler tells the gate: the head is in, an answer is queued, the request is
 * over (the connection's next request gets a fresh request_timeout). */
void gate_request_began(struct MHD_Connection *conn);
void gate_request_answered(struct MHD_Connection *conn);
void gate_request_done(struct MHD_Connection *conn);
/* Answers the request on conn from outside libmicrohttpd — status with {"error": text} and
 * Connection: close — and shuts the connection's sending side: for a request that cannot
 * be answered through libmicrohttpd before its body ends (a chunked body over max_body). */
void gate_answer_and_close(struct MHD_Connection *conn, unsigned status, const char *text);
/* Cuts off connections whose request is over request_timeout. Returns the milliseconds
 * until it has something to do again. */
int64_t gate_sweep(gate_t *g);
/* Connections open and counted against the limits. */
size_t gate_connections(const gate_t *g);
/* Stops accepting and closes the connections not yet handed to libmicrohttpd. */
void gate_close(gate_t *g);
void gate_destroy(gate_t **g_p);

/* ---- mapped.c: vendor JSON in, made into events by a jq program ------------------------ */

typedef struct mapped mapped_t;
typedef struct mapped_path mapped_path_t;

/* Reads the map_paths items ("PATH SOURCE MAP", MAP a jq file, relative to map_dir) and
 * compiles each program. Returns 0 with *out (NULL when there are no items) or
 * KANAL_ECONFIG / KANAL_ENOMEM after kanal_set_error. events_path is the CloudEvents path,
 * which no item may take. Ownership: borrows all; *out is new (mapped_destroy). */
int mapped_new(kanal_ctx_t *ctx, const kanal_strlist_t *items, const char *map_dir,
	       const char *events_path, mapped_t **out);
void mapped_destroy(mapped_t **m_p);
/* The mapped path that url names, or NULL (also for m NULL). Ownership: borrowed from m. */
const mapped_path_t *mapped_find(const mapped_t *m, const char *url);
/* Runs the path's program on body[0..len) ($client: the token client's name or NULL) and
 * makes its output — an event object, or an array of them (*array true) — into events.
 * Returns 0 with *out (n_out of them, malloc'd array), KANAL_EPARSE (the body is not JSON:
 * a 400), KANAL_EREJECTED (a jq error, an output that is no event, an invalid attribute:
 * a 422; an array's element is named "event #i: …"), KANAL_ETOOBIG (a body over 2 GiB) or
 * KANAL_ENOMEM, with err.
 * Ownership: borrows all; *out and its events are the caller's. */
int mapped_decode(const mapped_t *m, const mapped_path_t *mp, const char *body, size_t len,
		  const char *client, kanal_msg_t ***out, size_t *n_out, bool *array,
		  kanal_error_t *err);

/* ---- ingress.c: CloudEvents in ---------------------------------------------------------- */

typedef struct ingress ingress_t;

/* Reads and checks the ingress options (listen, path, tokens_file, …) in init: no socket
 * is opened. Returns 0 with *out (NULL when `listen` is not given: no ingress) or
 * KANAL_ECONFIG after kanal_set_error. */
int ingress_new(kanal_ctx_t *ctx, const http_options_t *opt, ingress_t **out);
/* Binds and starts serving from the instance's thread (fd watch + timer). */
int ingress_start(ingress_t *ing, kanal_ctx_t *ctx);
/* Stops serving: closes the listening socket and every connection. */
void ingress_stop(ingress_t *ing, kanal_ctx_t *ctx);
void ingress_destroy(ingress_t **ing_p);

/* ---- egress.c: CloudEvents out (a webhook destination) ---------------------------------- */

typedef struct egress egress_t;

/* Checks the egress options (url by kc_url_check's rule, headers, bearer_token_file) and
 * makes the client. Returns 0 with *out (NULL when `url` is not given: no egress) or
 * KANAL_ECONFIG after kanal_set_error. Ownership: borrows cfg (to know what was given) and
 * opt (whose read token it wipes). */
int egress_new(kanal_ctx_t *ctx, const kanal_config_t *cfg, http_options_t *opt, egress_t **out);
/* POSTs one event and maps the answer to an outcome (kc_http_outcome). */
kanal_outcome_t egress_send(egress_t *eg, kanal_ctx_t *ctx, const kanal_msg_t *msg);
void egress_destroy(egress_t **eg_p);

#endif
