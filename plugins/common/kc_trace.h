/*
 * plugins/common/kc_trace.h — W3C Trace Context for events: the `traceparent` and
 * `tracestate` values (https://www.w3.org/TR/trace-context/) parsed and written, the
 * CloudEvents Distributed Tracing extension's attributes adopted from HTTP headers, and the
 * span ids kanald's spans and the connectors' outgoing headers agree on without a word
 * between them.
 *
 * kanald (broker/trace.c) cuts a span per delivery attempt; a connector handling that
 * attempt sends the span's id as the parent id of its outgoing `traceparent` header. Both
 * work the id out from what each knows — the event's trace id, the delivery's id
 * (kanal_delivery_id) and its attempt — through kc_trace_delivery_span, so no frame between
 * the router and the instance threads carries it (docs/design/tracing.md).
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a) and into kanald's core, compiled with hidden visibility.
 * Functions are prefixed kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_KC_TRACE_H
#define KANAL_PLUGINS_KC_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kanal/kanal.h>

/* "00-" 32 hex "-" 16 hex "-" 2 hex: the length of a version-00 traceparent. */
#define KC_TRACEPARENT_LEN 55
/* The longest tracestate kept (the W3C limit a vendor must propagate). */
#define KC_TRACESTATE_MAX 512

/* A parsed traceparent. */
typedef struct kc_trace_ctx {
	uint8_t trace_id[16];
	uint8_t parent_id[8];
	uint8_t flags; /* bit 0: sampled */
} kc_trace_ctx_t;

/* Parses a traceparent value as the W3C Trace Context says a receiver must: version 00 is
 * exactly "00-<32 hex>-<16 hex>-<2 hex>" in lower case; a later version (not "ff") is read
 * by its first 55 characters, followed by nothing or '-'; the trace id and the parent id
 * must not be all zeros. Returns 0 with *out filled, or KANAL_EINVALID (an invalid value,
 * which the spec says to ignore). Ownership: borrows text. */
int kc_traceparent_parse(const char *text, kc_trace_ctx_t *out);

/* Writes "00-<trace id>-<span id>-<flags>" into out. Ownership: writes out only. */
void kc_traceparent_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags,
			   char out[KC_TRACEPARENT_LEN + 1]);

/* True when text may be passed on as a tracestate: at most KC_TRACESTATE_MAX characters,
 * printable ASCII, at most 32 comma-separated members, each "key=value" with a key of
 * lower-case letters, digits and _-*\/@. Ownership: borrows text. */
bool kc_tracestate_valid(const char *text);

/* Gives msg the trace context of an HTTP request's `traceparent` (and `tracestate`)
 * headers, as the CloudEvents Distributed Tracing extension's attributes, when msg has no
 * traceparent of its own and the header is valid; an invalid header, or a tracestate
 * without a valid traceparent, is ignored. Returns true when msg was given it.
 * Ownership: borrows all; changes msg. */
bool kc_trace_adopt(kanal_msg_t *msg, const char *traceparent, const char *tracestate);

/* The span id of a named span of an event: a hash of its trace id, the strings parts[0..n)
 * and `number`, never all zeros. kanald names its accept span and route spans by the
 * event's source, id and route (broker/trace.c). Ownership: borrows all; writes out. */
void kc_trace_span_id(const uint8_t trace_id[16], const char *const *parts, size_t n,
		      uint64_t number, uint8_t out[8]);

/* The span id of delivery attempt `attempt` of delivery `delivery_id` in trace trace_id:
 * what kanald calls the attempt's span, and the parent id a connector sends on.
 * Ownership: borrows trace_id; writes out. */
void kc_trace_delivery_span(const uint8_t trace_id[16], uint64_t delivery_id, int attempt,
			    uint8_t out[8]);

/* The `traceparent` a connector sends with the delivery being handled (call it inside
 * on_message): msg's trace id and flags with the delivery attempt's span as the parent.
 * Returns true with the value in out, or false when msg has no valid traceparent (send
 * none). Ownership: borrows ctx and msg; writes out. */
bool kc_trace_delivery_header(const kanal_ctx_t *ctx, const kanal_msg_t *msg,
			      char out[KC_TRACEPARENT_LEN + 1]);

#endif
