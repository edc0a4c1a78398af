/*
 * broker/cluster.h — the link to NATS JetStream in cluster mode (journal.mode: cluster): the
 * connection, the three streams (<prefix>_IN, _DLV, _DEAD), the pull consumers and their
 * fetch threads, asynchronous publishing and the inbox that brings PubAcks and fetched
 * messages to the router's thread. It knows nothing of routes or deliveries: the router's
 * side is cluster_router.c. docs/design/cluster.md gives the layout and the reasons.
 *
 * Threads: cluster_new, cluster_publish, cluster_take, cluster_done and cluster_destroy are
 * called on one thread (the router's, or main before the router starts); the fetch threads
 * and libnats's own threads only fill the inbox.
 */
#ifndef KANAL_CLUSTER_H
#define KANAL_CLUSTER_H

#include <jansson.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <kanal/kanal.h>

#include "conf.h"

typedef struct cluster cluster_t;

/* The consumer a fetched message came from: CLUSTER_ROUTE (the shared work queue of accepted
 * events), else 1 + the index of the local destination in cluster_new's list. */
#define CLUSTER_ROUTE 0

/* What the inbox holds. */
typedef enum cluster_item_kind {
	CLUSTER_PUBACK,  /* a publish was answered (or failed, or timed out) */
	CLUSTER_FETCHED, /* a message from a pull consumer */
	CLUSTER_ROUTES,  /* a routing table from the routes bucket (cluster_routes.c) */
} cluster_item_kind_t;

typedef struct cluster_item {
	cluster_item_kind_t kind;
	uint64_t token; /* PUBACK: the token given to cluster_publish */
	int status;     /* PUBACK: 0, KANAL_EDUPLICATE (stored before), or KANAL_EIO */
	char error[200];
	natsMsg *msg;    /* FETCHED: owned by the item */
	size_t consumer; /* FETCHED: CLUSTER_ROUTE or 1 + destination index */
	void *payload;   /* ROUTES: what the watcher hands over, freed with payload_free */
	void (*payload_free)(void *payload);
	struct cluster_item *next;
} cluster_item_t;

/* A header of a published message. */
typedef struct cluster_header {
	const char *name, *value;
} cluster_header_t;

/* The dead letters' retention (journal.dead_letters), for <prefix>_DEAD: 0 is no limit. */
typedef struct cluster_dead_limits {
	int64_t max_age_ms;
	int64_t max_events;
} cluster_dead_limits_t;

/* Connects to the NATS cluster, makes sure the streams exist with this node's config (created
 * when absent, never deleted: a stream whose config differs is refused with what to do; the
 * DEAD stream's limits, `dead`, are set when they differ — the node started last sets them —
 * and logged), and binds the route consumer and one consumer per name in dests (the local
 * destination instances). Returns NULL with the reason in err: NATS unreachable, JetStream
 * without a leader for too long, a stream that differs. Ownership: borrows conf, dead and
 * dests. */
cluster_t *cluster_new(const conf_nats_t *conf, int64_t dedupe_window_ms,
		       const cluster_dead_limits_t *dead, char *const *dests, size_t n_dests,
		       kanal_error_t *err);
/* A second connection to journal.nats's servers, with the node's credentials and TLS, for a
 * part of kanald that must not share the node's (the blob store: its large messages would
 * queue in front of the events). `role` is added to the connection's name. NULL when the
 * servers are out of reach (err says what to do). Ownership: the connection is the
 * caller's (natsConnection_Destroy). */
natsConnection *cluster_connect(const conf_nats_t *conf, const char *role, kanal_error_t *err);
/* Fills sc as kanal's streams are: `name`, the one subject (pattern) subject[0], retention,
 * file storage, replicas and a duplicate window of duplicates_ms; no other limit.
 * Ownership: sc borrows name and subject (they must outlive its use). */
void cluster_stream_config(jsStreamConfig *sc, const char *name, const char **subject,
			   jsRetentionPolicy retention, int64_t replicas, int64_t duplicates_ms);
/* Makes sure stream sc->Name exists with sc's config: created when absent; an existing one is
 * compared (subjects, retention, storage, replicas, duplicate window, messages per subject:
 * refused when they differ; the retention limits MaxAge and MaxMsgs, and the duplicate window
 * of a stream with an age limit, updated in place and logged), never deleted and re-created
 * (a nats-server 2.9 bug can then lose acknowledged messages). Waits while JetStream has no leader, up to 20 s. Returns 0, KANAL_ECONFIG (it differs: err
 * says how and what to do) or KANAL_EIO. Ownership: borrows. */
int cluster_ensure_stream(jsCtx *js, jsStreamConfig *sc, kanal_error_t *err);
/* Starts the fetch threads: messages arrive in the inbox from now on. Returns 0 or
 * KANAL_ETHREAD. */
int cluster_start(cluster_t *c);
/* Stops the fetch threads, waits up to wait_ms for the publishes in flight to be answered,
 * and closes the connection. Accepts NULL. Ownership: takes *c_p. */
void cluster_destroy(cluster_t **c_p);

/* The descriptor to poll for "the inbox has something" (read end of a pipe). */
int cluster_fd(const cluster_t *c);
/* Takes everything the inbox holds, oldest first (a list through ->next), or NULL.
 * Ownership: the items are the caller's; free each with cluster_item_free. */
cluster_item_t *cluster_take(cluster_t *c);
/* Puts an item in the inbox (any thread): the router's thread finds it at its next
 * cluster_take. Ownership: takes it. */
void cluster_inbox_push(cluster_t *c, cluster_item_t *it);
/* The connection's JetStream context, for the key-value buckets of other files (the
 * routes bucket: cluster_routes.c). Ownership: borrowed from c; safe on any thread. */
jsCtx *cluster_jetstream(cluster_t *c);
/* Frees an item and the message (or payload) it holds. Accepts NULL. Ownership: takes
 * *item_p. */
void cluster_item_free(cluster_item_t **item_p);
/* A fetched message of `consumer` is finished (acknowledged, nak'd or terminated): its fetch
 * thread may take one more. */
void cluster_done(cluster_t *c, size_t consumer);

/* Publishes data on subject with the headers (Nats-Msg-Id among them for deduplication),
 * asynchronously: the answer comes to the inbox as a CLUSTER_PUBACK with `token`. Returns 0,
 * KANAL_EBUSY (the window of unanswered publishes is full), or KANAL_EIO (not connected, or
 * the publish failed at once; err says why). Ownership: borrows everything. */
int cluster_publish(cluster_t *c, const char *subject, const cluster_header_t *headers,
		    size_t n_headers, const void *data, size_t len, uint64_t token,
		    kanal_error_t *err);
/* ---- the dead letters (<prefix>_DEAD), for the admin commands. These wait for NATS's answer
 * (at most 5 s each): an operator's command, never the event path. */

/* The stream's first and last sequence numbers (both 0 when it is empty). Returns 0 or
 * KANAL_EIO. */
int cluster_dead_range(cluster_t *c, uint64_t *first, uint64_t *last);
/* The dead letter with sequence seq into *out, with its headers; KANAL_ENOTFOUND when there is
 * none (dropped, replayed), KANAL_EIO when NATS did not answer. Ownership: *out is new
 * (natsMsg_Destroy). */
int cluster_dead_get(cluster_t *c, uint64_t seq, natsMsg **out);
/* Deletes dead letter seq. Returns 0, KANAL_ENOTFOUND or KANAL_EIO. */
int cluster_dead_delete(cluster_t *c, uint64_t seq);
/* Publishes and waits for the PubAck (replay: the message must be stored before its dead
 * letter is deleted). Returns 0 or KANAL_EIO with the reason in err. Ownership: borrows. */
int cluster_publish_sync(cluster_t *c, const char *subject, const cluster_header_t *headers,
			 size_t n_headers, const void *data, size_t len, kanal_error_t *err);

/* Publishes text on subject with core NATS (no JetStream, no answer): for watchers, lost
 * when nobody listens or the connection is down. */
void cluster_publish_core(cluster_t *c, const char *subject, const char *text);

/* ---- the nodes: each writes its entry (JSON) in the <prefix>_NODES key-value bucket every
 * 5 s from a thread of its own; the bucket's 30 s TTL removes a stopped node's. */

/* The value the heartbeat thread writes from now on. Ownership: borrows text (copied). */
void cluster_set_heartbeat(cluster_t *c, const char *text);
/* This node's key in the bucket (journal.nats.name, else host-pid). */
const char *cluster_node_name(const cluster_t *c);
/* Every node's entry (a JSON array of objects). Waits for NATS: for the admin command.
 * Ownership: new. */
json_t *cluster_nodes(cluster_t *c);
/* A consumer's lag: {stream, consumer, pending, ack_pending, redelivered}. Waits for NATS.
 * Ownership: new. */
json_t *cluster_consumer_lag(cluster_t *c, const char *suffix, const char *durable);
/* The durable name of consumer (CLUSTER_ROUTE, or 1 + a destination's index). */
const char *cluster_durable(const cluster_t *c, size_t consumer);

/* Opens the key-value bucket <prefix>_<suffix> through js (NULL: the cluster's own context),
 * creating it when absent (history 1, `ttl_ms` per key — 0: none —, `replicas`, file
 * storage; never deleted), waiting up to 20 s for JetStream to have a leader. Used for _NODES
 * here, _LEASES/_STATE by cluster_lease.c and _ROUTES by cluster_routes.c. Returns 0 or KANAL_EIO with err saying why.
 * Waits for NATS: not on the router's thread once it runs. Ownership: borrows js; *out is
 * new (kvStore_Destroy). */
int cluster_kv_open(cluster_t *c, jsCtx *js, const char *suffix, int64_t ttl_ms, int replicas,
		    kvStore **out, kanal_error_t *err);
/* The connection to NATS (for a JetStream context with other timeouts). Ownership: borrowed,
 * valid until cluster_destroy. */
natsConnection *cluster_connection(cluster_t *c);
/* The streams' and buckets' prefix (journal.nats.stream_prefix). */
const char *cluster_prefix(const cluster_t *c);

/* True while the connection to NATS is up. */
bool cluster_connected(cluster_t *c);

/* The subject for events of `type` on the accept stream (`<prefix>.in.<type>`, the type's
 * characters that NATS subjects cannot hold replaced by '_'), for deliveries to instance
 * `dest` (`<prefix>.dlv.<dest>`) and for its dead letters (`<prefix>.dead.<dest>`), written
 * into buf. */
void cluster_subject_in(const cluster_t *c, const char *type, char *buf, size_t size);
void cluster_subject_dlv(const cluster_t *c, const char *dest, char *buf, size_t size);
void cluster_subject_dead(const cluster_t *c, const char *dest, char *buf, size_t size);
/* The subject of an event stream line: `<prefix>.events.<kind>.<tail>`. */
void cluster_subject_events(const cluster_t *c, const char *kind, const char *tail, char *buf,
			    size_t size);

#endif
