/*
 * plugins/cpr/cache.c — the cpr plugin's answer cache: the full answer of each lookup
 * (before any address filtering, which is done per request) kept in memory for a fixed
 * time, keyed on the ten digits, bounded in count. Never written to disk.
 *
 * Every entry lives exactly `ttl` from when it was stored, so the order of storing is also
 * the order of expiry: entries sit in one list, newest first, and both expiry and eviction
 * (when the cache is full) take from its old end. A hash table over the same entries finds
 * a number in constant time.
 */
#include <stdlib.h>
#include <string.h>

#include "cpr_int.h"

typedef struct entry {
	char pnr[11];
	json_t *person;
	int64_t expires_ms;
	struct entry *newer, *older; /* the age list */
	struct entry *next_in_bucket;
} entry_t;

struct cpr_cache {
	size_t max, count;
	int64_t ttl_ms;
	entry_t **buckets;
	size_t n_buckets; /* a power of two */
	entry_t *newest, *oldest;
};

/* FNV-1a over the digits. */
static size_t s_hash(const char *pnr)
{
	uint64_t h = 1469598103934665603ULL;

	for (const char *p = pnr; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 1099511628211ULL;
	}
	return (size_t)h;
}

cpr_cache_t *cpr_cache_new(size_t max, int64_t ttl_ms)
{
	cpr_cache_t *c = calloc(1, sizeof *c);
	size_t n = 16;

	if (!c)
		return NULL;
	while (n < max * 2 && n < ((size_t)1 << 22))
		n *= 2;
	c->buckets = calloc(n, sizeof *c->buckets);
	if (!c->buckets) {
		free(c);
		return NULL;
	}
	c->n_buckets = n;
	c->max = max ? max : 1;
	c->ttl_ms = ttl_ms;
	return c;
}

/* Unlinks e from the bucket and the age list and frees it. */
static void s_remove(cpr_cache_t *c, entry_t *e)
{
	entry_t **p = &c->buckets[s_hash(e->pnr) & (c->n_buckets - 1)];

	while (*p && *p != e)
		p = &(*p)->next_in_bucket;
	if (*p)
		*p = e->next_in_bucket;
	if (e->newer)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	json_decref(e->person);
	memset(e->pnr, 0, sizeof e->pnr);
	free(e);
	c->count--;
}

void cpr_cache_destroy(cpr_cache_t **cache_p)
{
	cpr_cache_t *c = cache_p ? *cache_p : NULL;

	if (!c)
		return;
	while (c->oldest)
		s_remove(c, c->oldest);
	free(c->buckets);
	free(c);
	*cache_p = NULL;
}

static entry_t *s_find(const cpr_cache_t *c, const char *pnr)
{
	for (entry_t *e = c->buckets[s_hash(pnr) & (c->n_buckets - 1)]; e; e = e->next_in_bucket)
		if (!strcmp(e->pnr, pnr))
			return e;
	return NULL;
}

/* Drops the entries that have expired at now_ms (they are all at the old end). */
static void s_expire(cpr_cache_t *c, int64_t now_ms)
{
	while (c->oldest && c->oldest->expires_ms <= now_ms)
		s_remove(c, c->oldest);
}

json_t *cpr_cache_get(cpr_cache_t *c, const char *pnr, int64_t now_ms)
{
	entry_t *e;

	if (!c || !pnr)
		return NULL;
	s_expire(c, now_ms);
	e = s_find(c, pnr);
	return e ? json_incref(e->person) : NULL;
}

void cpr_cache_put(cpr_cache_t *c, const char *pnr, json_t *person, int64_t now_ms)
{
	entry_t *e;
	size_t b;

	if (!c || !pnr || !person || strlen(pnr) >= sizeof e->pnr)
		return;
	s_expire(c, now_ms);
	if ((e = s_find(c, pnr)))
		s_remove(c, e);
	while (c->count >= c->max && c->oldest)
		s_remove(c, c->oldest);
	if (!(e = calloc(1, sizeof *e)))
		return; /* not caching is always correct */
	memcpy(e->pnr, pnr, strlen(pnr) + 1);
	e->person = json_incref(person);
	e->expires_ms = now_ms + c->ttl_ms;
	b = s_hash(pnr) & (c->n_buckets - 1);
	e->next_in_bucket = c->buckets[b];
	c->buckets[b] = e;
	e->older = c->newest;
	if (c->newest)
		c->newest->newer = e;
	else
		c->oldest = e;
	c->newest = e;
	c->count++;
}

size_t cpr_cache_count(const cpr_cache_t *c)
{
	return c ? c->count : 0;
}
