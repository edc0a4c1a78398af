/*
 * plugins/common/kc_log.h — a log line a peer cannot flood: at most one a second per kind of line.
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a) and compiled with hidden visibility, so nothing here is
 * exported from a plugin. Functions are prefixed kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_KC_LOG_H
#define KANAL_PLUGINS_KC_LOG_H

#include <stdint.h>

#include <kanal/kanal.h>

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

#endif
