/*
 * broker/ratelimit.c — the token buckets of ratelimit.h, one per sender name, kept in a
 * jansson object (name to a two-element array: tokens, a real, and when they were counted,
 * an integer). A bucket holds fractional tokens and is refilled from the time elapsed since
 * it was last used, so an idle sender costs nothing.
 */
#include "ratelimit.h"

#include <math.h>
#include <stdlib.h>

#include <jansson.h>

struct ratelimit {
	double per_ms, burst;
	json_t *buckets; /* name -> [tokens, at_ms] */
};

ratelimit_t *ratelimit_new(double per_second, double burst)
{
	ratelimit_t *rl = calloc(1, sizeof *rl);

	if (!rl || !(rl->buckets = json_object())) {
		free(rl);
		return NULL;
	}
	rl->per_ms = per_second / 1000.0;
	rl->burst = burst >= 1 ? burst : 1;
	return rl;
}

void ratelimit_destroy(ratelimit_t **self_p)
{
	ratelimit_t *rl = self_p ? *self_p : NULL;

	if (!rl)
		return;
	json_decref(rl->buckets);
	free(rl);
	*self_p = NULL;
}

int64_t ratelimit_take(ratelimit_t *rl, const char *who, int64_t now_ms)
{
	json_t *b, *tokens_v, *at_v;
	double tokens;
	int64_t at;

	if (!rl)
		return 0;
	if (!(b = json_object_get(rl->buckets, who ? who : ""))) {
		b = json_pack("[f, I]", rl->burst, (json_int_t)now_ms);
		if (!b || json_object_set_new(rl->buckets, who ? who : "", b) != 0)
			return 0; /* out of memory: no limit rather than no service */
	}
	tokens_v = json_array_get(b, 0);
	at_v = json_array_get(b, 1);
	tokens = json_real_value(tokens_v);
	at = (int64_t)json_integer_value(at_v);
	if (now_ms > at) {
		tokens = fmin(rl->burst, tokens + (double)(now_ms - at) * rl->per_ms);
		json_integer_set(at_v, (json_int_t)now_ms);
	}
	if (tokens >= 1) {
		json_real_set(tokens_v, tokens - 1);
		return 0;
	}
	json_real_set(tokens_v, tokens);
	return (int64_t)ceil((1 - tokens) / rl->per_ms);
}
