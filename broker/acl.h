/*
 * broker/acl.h — access-control lists: which event types a plugin instance or an external
 * CURVE client may emit, under which `source` values (`sources:`, the sources it owns:
 * docs/design/tenancy.md), and which stream topics a client may subscribe to.
 *
 * The lists come from kanald.yaml (conf.c: `instances[].acl.emit`,
 * `security.curve.clients[].emit` and `.subscribe`). Type patterns match as in the routing
 * files (routes_type_matches: `orders.>`, `invoice.*.sent`); subscribe entries are topic
 * prefixes as a SUB socket gives them. The places that enforce the lists are the instance
 * emit (instance.c), the gateway (gateway.c) and the event stream (stream.c); each refusal
 * is counted and published on the stream as `acl.denied <who>` with acl_denied_extra.
 */
#ifndef KANAL_ACL_H
#define KANAL_ACL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Checks the form of a type pattern: dot-separated tokens of a-z, 0-9, '_' and '-', or a
 * whole '*' (one token) or a last '>' (the rest). Returns true, or false with the reason
 * in why. */
bool acl_pattern_valid(const char *pattern, char *why, size_t why_size);

/* True when `type` matches one of the n patterns. A NULL type matches nothing. */
bool acl_type_allowed(char *const *patterns, size_t n, const char *type);

/* True when a subscription to `topic` (len bytes, not NUL-terminated) stays within one of
 * the n allowed prefixes: the topic starts with the prefix, so it can only narrow it.
 * A prefix "*" allows every subscription, the empty one ("everything") included. */
bool acl_topic_allowed(char *const *prefixes, size_t n, const char *topic, size_t len);

/* Checks the form of a source pattern (`sources:`): a non-empty URI-reference of printable
 * ASCII without spaces, where '*' matches any run of characters ('/' included), e.g.
 * "/vendors/acme/" followed by a star. Returns true, or false with the reason in why. */
bool acl_source_pattern_valid(const char *pattern, char *why, size_t why_size);

/* True when `source` matches one of the n source patterns (glob: '*' is any run of
 * characters, everything else literal). A NULL source matches nothing. */
bool acl_source_allowed(char *const *patterns, size_t n, const char *source);

/* True for the sources only kanald itself may use ("kanald": its kanal.delivery.dead
 * notices, which shipped routes turn into a sender's final `failed` status): no client or
 * instance owns them, whatever its `sources` say. */
bool acl_source_reserved(const char *source);

/* The payload of an `acl.denied` happening: who was refused (an instance or client name),
 * where (`via`: "instance", "gateway" or "stream"), what it tried ("emit" or "subscribe")
 * and the event type or topic. No event data, no key. Returns a new reference or NULL. */
json_t *acl_denied_extra(const char *who, const char *via, const char *what, const char *type);

#endif
