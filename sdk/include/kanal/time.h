/*
 * kanal/time.h — wall-clock time as RFC 3339 text, the one way kanal writes and reads it.
 *
 * Every timestamp kanal writes (log lines, the dead-letter store, the event stream,
 * connectors' `time` attributes and audit lines) comes from kanal_time_rfc3339, and every
 * RFC 3339 time kanal reads (kanalctl's --since, the broker's admin API, connectors reading
 * upstream systems, the CloudEvents `time` check) goes through kanal_time_parse_rfc3339, so
 * that all of them agree on what a valid time is and on what instant it names.
 */
#ifndef KANAL_TIME_H
#define KANAL_TIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Only what this header declares is exported from libkanal, which is built with
 * -fvisibility=hidden (docs/design/library.md). */
#pragma GCC visibility push(default)

/* Bytes kanal_time_rfc3339 needs, NUL included: "2026-12-07T15:13:13.123Z" and the NUL. */
#define KANAL_TIME_RFC3339_SIZE 25

/* The wall-clock time (CLOCK_REALTIME) in milliseconds since 1970-01-01T00:00:00Z. For
 * deadlines and intervals use the monotonic kanal_now_ms instead.
 * Ownership: none (plain values). */
int64_t kanal_wall_ms(void);

/* Formats `ms` (milliseconds since the epoch, as kanal_wall_ms returns) as RFC 3339 in UTC
 * with milliseconds, always in the same shape: "2026-12-07T15:13:13.123Z". Years 0000 to
 * 9999 only. Returns 0, or KANAL_EINVAL when the time is outside those years or `size` is
 * smaller than KANAL_TIME_RFC3339_SIZE (buf then holds "" when size > 0).
 * Ownership: none (writes into the caller's buf). */
int kanal_time_rfc3339(int64_t ms, char *buf, size_t size);

/* Parses an RFC 3339 date-time (section 5.6): "YYYY-MM-DDTHH:MM:SS", an optional fraction
 * (".1" to any number of digits; digits past milliseconds are dropped), then "Z" or an
 * offset "+HH:MM" / "-HH:MM" that is honoured ("10:00:00+01:00" is 09:00:00Z). 'T' and 'Z'
 * may be lower case. A leap second (:60) reads as the second before it. Refused: a date
 * alone ("2026-12-07": a day, not an instant — it names a different instant in every zone),
 * a time without a zone, days that do not exist (31 April, 29 February outside leap years),
 * and anything after the zone. On success stores milliseconds since the epoch in *out_ms
 * and returns 0; otherwise returns KANAL_EPARSE and leaves *out_ms alone.
 * Ownership: borrows text; writes *out_ms. */
int kanal_time_parse_rfc3339(const char *text, int64_t *out_ms);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
