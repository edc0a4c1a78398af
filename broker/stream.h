/*
 * broker/stream.h — the event stream: an XPUB socket publishing one two-frame message per
 * happening, "<kind> <type-or-instance>" then a JSON object (docs/events.md). Nothing is
 * built when nobody subscribes. CPR numbers are masked in the payload before it leaves.
 * Subscriptions are applied by the broker itself (ZMQ_XPUB_MANUAL), so that CURVE clients
 * get only the topics their ACL allows (docs/security.md).
 */
#ifndef KANAL_STREAM_H
#define KANAL_STREAM_H

#include <jansson.h>
#include <stdbool.h>
#include <kanal/kanal.h>
#include "conf.h"
#include "zap.h"

typedef struct stream stream_t;

/* Binds the stream at conf->stream_endpoint ("": a stream that publishes nowhere). With
 * `zap` (CURVE on) the socket is a CURVE server and a subscription is applied only when
 * it stays within the subscribing client's `subscribe` prefixes (conf->clients); a refused
 * one is counted, logged and published as `acl.denied <client>`. conf must outlive the
 * stream. */
stream_t *stream_new(void *zctx, const conf_t *conf, const zap_t *zap, char *err, size_t err_size);
void stream_destroy(stream_t **s_p);
/* The XPUB socket, to poll for subscriptions (NULL when disabled), and what to do when it
 * is readable. */
void *stream_socket(stream_t *s);
void stream_on_readable(stream_t *s);
/* The bound address (with the real port), or "". */
const char *stream_endpoint(const stream_t *s);
/* True when at least one subscriber is connected: callers skip building payloads when not. */
bool stream_wanted(const stream_t *s);
/* How many subscriptions the stream refused (ACL), for `status`. */
uint64_t stream_acl_denied(const stream_t *s);

/* Also hands every line (topic "<kind> <tail>" split in its parts, and the payload, both
 * CPR-masked) to fn, e.g. to publish it on NATS in cluster mode: stream_wanted is then always
 * true. fn is called on the publishing thread; it borrows its arguments. NULL: none. */
typedef void (*stream_mirror_fn)(void *arg, const char *kind, const char *tail,
				 const char *payload);
void stream_set_mirror(stream_t *s, stream_mirror_fn fn, void *arg);

/* Publishes a happening of `kind` ("delivered") about event ev (may be NULL) with topic
 * "<kind> <tail>" where tail is the event's type unless `tail` is given. `extra` (may be
 * NULL) is merged into the payload; stolen. */
void stream_publish(stream_t *s, const char *kind, const char *tail, const kanal_msg_t *ev,
		    json_t *extra);

#endif
