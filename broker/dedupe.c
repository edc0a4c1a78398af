/*
 * broker/dedupe.c — the memory mode's duplicate window (dedupe.h). Keys are source, U+001F,
 * id: a CloudEvents String holds no control character, so the key is unambiguous. A
 * jansson object is the hash table (key to the time seen); a ring of the keys in arrival
 * order lets the oldest leave when they fall out of the window or the window is full.
 */
#include "dedupe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

typedef struct seen {
	char *key;
	int64_t at;
} seen_t;

struct dedupe {
	json_t *index;   /* key -> time seen (integer) */
	seen_t *ring;
	size_t cap, head, n;
};

dedupe_t *dedupe_new(size_t max_entries)
{
	dedupe_t *d = calloc(1, sizeof *d);

	if (!d || !(d->index = json_object()) || !(d->ring = calloc(max_entries, sizeof *d->ring))) {
		if (d)
			json_decref(d->index);
		free(d);
		return NULL;
	}
	d->cap = max_entries;
	return d;
}

void dedupe_destroy(dedupe_t **self_p)
{
	dedupe_t *d = self_p ? *self_p : NULL;

	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->ring[(d->head + i) % d->cap].key);
	free(d->ring);
	json_decref(d->index);
	free(d);
	*self_p = NULL;
}

/* Drops the oldest entry (unless the same key was seen again later: then the index holds
 * the later time and stays). */
static void s_pop(dedupe_t *d)
{
	seen_t *e = &d->ring[d->head];
	json_t *at = json_object_get(d->index, e->key);

	if (at && json_integer_value(at) == e->at)
		json_object_del(d->index, e->key);
	free(e->key);
	e->key = NULL;
	d->head = (d->head + 1) % d->cap;
	d->n--;
}

bool dedupe_check_add(dedupe_t *d, const char *source, const char *id, int64_t since_ms,
		      int64_t now_ms)
{
	json_t *at;
	char *key;

	if (!d || !source || !id)
		return false;
	while (d->n && d->ring[d->head].at < since_ms)
		s_pop(d);
	if (asprintf(&key, "%s\x1f%s", source, id) < 0)
		return false;
	at = json_object_get(d->index, key);
	if (at && json_integer_value(at) >= since_ms) {
		free(key);
		return true;
	}
	if (d->n == d->cap)
		s_pop(d);
	json_object_set_new(d->index, key, json_integer(now_ms));
	d->ring[(d->head + d->n) % d->cap] = (seen_t){ key, now_ms };
	d->n++;
	return false;
}
