/*
 * broker/conf.h — kanald.yaml: plugin instances, folders, endpoints, limits, log level,
 * tracing.
 *
 * Relative paths in the file are resolved against the file's own folder. Every error is
 * reported as "file:line:col: error: …"; loading collects all of them.
 */
#ifndef KANAL_CONF_H
#define KANAL_CONF_H

#include <stdbool.h>
#include <stdint.h>
#include "diag.h"
#include "../sdk/blob_store.h"
#include "../sdk/host.h"

typedef struct conf_instance {
	char *name;
	char *plugin;            /* as written: a bundled plugin's name or a path */
	char *plugin_path;       /* resolved .so path */
	kanal_optval_t *options; /* as given, validated later against the plugin's table */
	size_t n_options;
	char *isolation;     /* "thread" (default) or "process" */
	int64_t deadline_ms; /* process isolation: the longest a callback may take before the
			      * plugin host is killed and restarted (`deadline`, default 30 s) */
	int line, column;    /* of the instance's entry */
	/* `acl: {emit: [type patterns]}`: what the instance may emit (acl.c); without an
	 * `acl` it may emit anything. */
	bool has_acl;
	char **acl_emit;
	size_t n_acl_emit;
	/* `acl: {sources: [patterns]}`: the `source` values the instance owns (acl.c,
	 * docs/design/tenancy.md); without it every source is open to the instance. */
	char **acl_sources;
	size_t n_acl_sources;
	bool has_acl_sources;
	/* `limits: {rate: {events_per_second, burst}}`: a token bucket on the instance's
	 * emits (kanal_emit answers KANAL_EBUSY over it); 0: no limit. */
	int64_t rate_per_second;
	int64_t rate_burst; /* default: one second's worth */
	/* `singleton` (cluster mode only): started on the node that holds its lease
	 * (cluster_lease.c); default true for the bundled pollers (daycare, staff, httppoll). */
	bool singleton;
} conf_instance_t;

/* An external client allowed to connect to the CURVE gateway and stream
 * (`security.curve.clients`): its name (the ZAP user id), its public key, the event types
 * it may hand in and the stream topic prefixes it may subscribe to. */
typedef struct conf_client {
	char *name;
	char public_key[41]; /* Z85 */
	char **emit;         /* type patterns, as in routes (routes_type_matches) */
	size_t n_emit;
	char **subscribe; /* topic prefixes; "*" is every topic */
	size_t n_subscribe;
	/* `sources`: the source patterns the client owns: it may emit only under them, and
	 * the event stream shows it only lines about events from them. Without `sources`
	 * (has_sources false) every source is open to it, as before (kanalctl check warns). */
	char **sources;
	size_t n_sources;
	bool has_sources;
	int line, column;
} conf_client_t;

/* journal.nats: the NATS JetStream cluster of `journal.mode: cluster` (docs/cluster.md). */
typedef struct conf_nats {
	char **servers; /* nats://host:port (tls:// with tls) */
	size_t n_servers;
	char *creds_file;    /* a .creds file (JWT and NKey seed), or NULL */
	char *nkey;          /* the user's public NKey (U...), with nkey_file */
	char *nkey_file;     /* a file holding that NKey's seed, or NULL */
	char *tls_ca_file;   /* tls: the CAs that signed the servers' certificates */
	char *tls_cert_file; /* tls: this node's client certificate and key */
	char *tls_key_file;
	char *stream_prefix; /* KANAL: streams KANAL_IN, KANAL_DLV, KANAL_DEAD */
	int64_t replicas;    /* copies of each stream (1, 3 or 5) */
	int64_t ack_wait_ms; /* work a dead node held comes back after this */
	char *node_name;     /* this node's name in NATS (default: host name and pid) */
	bool events;         /* the event stream's lines also on <prefix>.events.<kind>.<tail> */
	int64_t blob_retention_ms; /* a blob is kept this long after its last put (cluster) */
	int64_t lease_ms;          /* a singleton's lease (TTL of <prefix>_LEASES), default 10 s */
} conf_nats_t;

typedef struct conf {
	char *file; /* path as given */
	char *dir;  /* its folder */
	conf_instance_t *instances;
	size_t n_instances;
	char **route_paths; /* `routes:` a folder or file, or a list of them, resolved */
	size_t n_route_paths;
	char *plugin_dir;       /* where bundled plugins are found */
	char *state_dir;        /* per-instance state, the dead-letter file */
	char *run_dir;          /* the endpoints file kanald writes on start */
	char *gateway_endpoint; /* "" disables */
	char *stream_endpoint;
	char *admin_endpoint;
	char *admin_http;       /* "http://127.0.0.1:7703"; "" disables */
	char *admin_token_file; /* bearer token for the HTTP admin API, or NULL */
	char *admin_http_url;   /* set by kanald once bound (the endpoints file lists it) */
	char **readyz_requires; /* instances /readyz waits to report their upstream up */
	size_t n_readyz_requires;
	int64_t max_event_bytes;
	int64_t queue_max_events; /* per destination */
	int64_t queue_max_bytes;  /* per destination */
	int64_t shutdown_deadline_ms;
	int64_t enrich_timeout_ms; /* default for enrich steps without `timeout` */
	int64_t max_parked_events; /* journal: events waiting on disk for full destinations */
	int64_t max_blob_bytes;    /* limits.max_blob_size: one blob (docs/design/blobs.md) */
	int64_t blob_store_bytes;  /* limits.blob_store_size: all blobs together */
	/* The blob store in <state_dir>/blobs, opened by kanald before the instances load,
	 * closed after they stop; NULL in programs that only read the config. */
	kanal__blob_store_t *blobs;
	kanal_log_level_t log_level;
	bool log_json;        /* log_format: json (one JSON object per line) or text */
	bool journal_durable; /* journal.mode: durable (default) or memory */
	bool journal_cluster; /* journal.mode: cluster — JetStream is the journal (nats) */
	conf_nats_t nats;
	char *journal_path;      /* NULL: <state_dir>/journal.db */
	char *journal_key_file;  /* journal.key_file: SQLCipher's key; NULL: not encrypted */
	bool journal_sync_power; /* journal.sync: power (synchronous=FULL) or process */
	int64_t journal_retention_ms;
	int64_t dedupe_window_ms;
	int64_t rate_per_second; /* limits.rate.events_per_second per gateway client; 0: off */
	int64_t rate_burst;      /* limits.rate.burst (default: one second's worth) */
	int64_t dlq_max_age_ms;  /* dead letters older are purged; 0: no limit */
	int64_t dlq_max_events;  /* at most this many dead letters kept; 0: no limit */
	/* security (docs/security.md): with `curve` the gateway and the stream speak CURVE
	 * and only the listed clients' keys get in (zap.c); `allow_plain` lets an endpoint
	 * without CURVE bind beyond loopback. */
	bool curve;
	char *curve_secret_key_file;
	char curve_secret_key[41]; /* Z85; wiped by conf_destroy */
	char curve_public_key[41]; /* Z85, derived from the secret key */
	conf_client_t *clients;
	size_t n_clients;
	bool allow_plain;
	/* trace.export (broker/trace.c, docs/operations.md): spans as OTLP/HTTP JSON to a
	 * collector. trace_url NULL: tracing off (no ids given, no spans cut). */
	char *trace_url;
	char *trace_service_name;  /* resource attribute service.name (default "kanald") */
	int64_t trace_batch;       /* spans per request (default 512) */
	int64_t trace_interval_ms; /* the longest a span waits to be sent (default 1 s) */
	int64_t trace_queue;       /* spans waiting at most; more are dropped (default 4096) */
	void *strings;             /* private storage */
} conf_t;

/* Loads and validates `path`. On success returns 0 and *out. On failure returns
 * KANAL_ECONFIG with every error in d. Ownership: *out is new. */
int conf_load(const char *path, conf_t **out, diag_t *d);
/* conf_load for the one validation path (kanalctl check, kanald --check, a start). It
 * also checks what a start needs of the filesystem — state_dir and run_dir can be made,
 * journal.path's folder exists — which conf_load leaves alone (kanalctl's other commands
 * read the config as users who could not write there). On KANAL_ECONFIG it still puts in
 * *out what could be read (when the file is YAML at all: otherwise *out is NULL), so that
 * the instances' plugins and options and the routing files get checked too and every
 * mistake of the file is reported at once. A config that has errors is for reporting only,
 * never to be run. Ownership: *out is new. */
int conf_load_all(const char *path, conf_t **out, diag_t *d);
void conf_destroy(conf_t **conf_p);

/* Finds an external (CURVE) client by name or returns NULL. */
const conf_client_t *conf_client(const conf_t *conf, const char *name);

/* Reads a CURVE key file written by `kanalctl keygen` (comment lines starting "# ", then
 * one 40-character Z85 key) into key[41]. When `secret`, the file must be readable by its
 * owner only. Returns 0, or -1 with the reason in why. */
int conf_read_curve_key(const char *path, bool secret, char key[41], char *why, size_t why_size);

/* Finds an instance by name or returns NULL. */
const conf_instance_t *conf_instance(const conf_t *conf, const char *name);

#endif
