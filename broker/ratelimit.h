/*
 * broker/ratelimit.h — token buckets per sender (`limits.rate`): each gateway client (its
 * CURVE name; all plain clients share one bucket) may hand in `events_per_second` on
 * average and `burst` at once. An event over the limit is answered `busy` with the time
 * until the next token as its retry hint, and counted (docs/config.md, "limits"). An
 * instance with `limits.rate` has a bucket of its own, taken in its kanal_emit
 * (instance.c), which answers KANAL_EBUSY over it.
 */
#ifndef KANAL_RATELIMIT_H
#define KANAL_RATELIMIT_H

#include <stdint.h>

typedef struct ratelimit ratelimit_t;

/* Buckets refilled at per_second tokens a second, holding at most burst. Returns NULL
 * when out of memory. */
ratelimit_t *ratelimit_new(double per_second, double burst);
void ratelimit_destroy(ratelimit_t **self_p);
/* Takes one token from who's bucket (made full on first use). Returns 0 when there was
 * one, else the milliseconds until there is (at least 1). Ownership: borrows who. */
int64_t ratelimit_take(ratelimit_t *self, const char *who, int64_t now_ms);

#endif
