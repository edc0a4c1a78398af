/*
 * broker/dedupe.c — the memory mode's duplicate window (dedupe.h). Every event passes here
 * on the router's thread, so it allocates nothing per event: a ring of the events seen, in
 * arrival order (the oldest leave when they fall out of the window or the window is full),
 * and an open-addressing table of ring places keyed by a 128-bit fingerprint of (source,
 * id), worked out once per event by the router (dedupe_key: eight bytes a step, the
 * lengths being known). A slot holds the low 34 bits of the first hash beside the place:
 * a lookup reads the ring only for a likely match, and dropping the oldest entry finds the
 * home of every entry it moves from the slot alone — one cache line of the table per event, mostly, and no
 * random read of the ring (it cost the router ~10 % when the slot held other bits). Two
 * different events with the same 128 bits — the only way one could be taken for a
 * duplicate of another — is a chance of about n²/2¹²⁹ in a window of n events.
 */
#include "dedupe.h"

#include <stdlib.h>
#include <string.h>

typedef struct seen {
	uint64_t h1, h2; /* the fingerprint */
	int64_t at;      /* seen at (ms) */
} seen_t;

struct dedupe {
	seen_t *ring; /* cap places, a power of two; holds [head, head + n) */
	size_t cap, head, n;
	uint64_t *slots; /* 2 × cap: (h1 & KEY_MASK) << 30 | (ring place + 1), or 0 (empty) */
	size_t mask;
};

dedupe_t *dedupe_new(size_t max_entries)
{
	dedupe_t *d = calloc(1, sizeof *d);
	size_t cap = 1;

	while (cap < max_entries && cap < ((size_t)1 << 29))
		cap <<= 1;
	if (!d || !(d->ring = calloc(cap, sizeof *d->ring)) ||
	    !(d->slots = calloc(2 * cap, sizeof *d->slots))) {
		if (d)
			free(d->ring);
		free(d);
		return NULL;
	}
	d->cap = cap;
	d->mask = 2 * cap - 1;
	return d;
}

void dedupe_destroy(dedupe_t **self_p)
{
	dedupe_t *d = self_p ? *self_p : NULL;

	if (!d)
		return;
	free(d->ring);
	free(d->slots);
	free(d);
	*self_p = NULL;
}

/* Up to 8 bytes of p[0..n) as one word, never reading outside them: n in 4..8 is the first
 * and the last four bytes (overlapping), n in 1..3 the first, middle and last byte. Given
 * n, different bytes give a different word. */
static inline uint64_t s_tail(const unsigned char *p, size_t n)
{
	uint32_t lo, hi;

	if (n >= 4) {
		memcpy(&hi, p, 4);
		memcpy(&lo, p + n - 4, 4);
		return (uint64_t)hi << 32 | lo;
	}
	if (n == 0)
		return 0;
	return (uint64_t)p[0] << 16 | (uint64_t)p[n >> 1] << 8 | p[n - 1];
}

/* Feeds one word to both hashes. Each step is a bijection of the word for a given state
 * (xor, then multiplying by an odd number and a rotation or an xor-shift), so two keys
 * that differ in one word always differ after it, as with the byte-wise FNV-1a before. */
static inline void s_mix(uint64_t *a, uint64_t *b, uint64_t w)
{
	*a = (*a ^ w) * 0x9fb21c651e98df25ULL;
	*a ^= *a >> 29;
	*b = (*b ^ w) * 0xff51afd7ed558ccdULL;
	*b = *b << 31 | *b >> 33;
}

static inline void s_mix_text(uint64_t *a, uint64_t *b, const char *text, size_t n)
{
	const unsigned char *p = (const unsigned char *)text;
	uint64_t w;

	for (; n > 8; p += 8, n -= 8) {
		memcpy(&w, p, 8);
		s_mix(a, b, w);
	}
	s_mix(a, b, s_tail(p, n));
}

/* Two 64-bit hashes of (source, id), eight bytes at a time: both lengths first, then the
 * source's words, then the id's (the last word of each holds its rest, s_tail), each hash
 * with its own seeds and multipliers and finished with a mix. With the lengths in front,
 * different keys are different sequences of words: ("ab", "c") is not ("a", "bc"). */
void dedupe_key(const char *source, size_t source_len, const char *id, size_t id_len,
		dedupe_key_t *out)
{
	uint64_t a = 0xcbf29ce484222325ULL, b = 0x9e3779b97f4a7c15ULL;

	s_mix(&a, &b, (uint64_t)source_len << 32 ^ id_len);
	s_mix_text(&a, &b, source, source_len);
	s_mix_text(&a, &b, id, id_len);
	a ^= a >> 33;
	a *= 0xc4ceb9fe1a85ec53ULL;
	a ^= a >> 33;
	b ^= b >> 31;
	b *= 0x94d049bb133111ebULL;
	b ^= b >> 31;
	out->h1 = a;
	out->h2 = b;
}

/* A slot: the ring place + 1 in its low 30 bits (cap ≤ 2^29), the low 34 bits of h1 above
 * them — more than the table's index (mask < 2^31), so a slot knows its entry's home. */
#define SLOT_PLACE(v) ((size_t)((v) & ((1u << 30) - 1)))
#define KEY_MASK ((1ULL << 34) - 1)
#define SLOT_KEY(v) ((v) >> 30)

/* The table slot of ring place `place` (it is in the table). */
static size_t s_slot_of(const dedupe_t *d, size_t place)
{
	size_t i = d->ring[place].h1 & d->mask;

	while (SLOT_PLACE(d->slots[i]) != place + 1)
		i = (i + 1) & d->mask;
	return i;
}

/* Drops the oldest entry: its slot is emptied and the entries after it in the same probe
 * run are moved back, so that every lookup still finds its entry (no tombstones). */
static void s_pop(dedupe_t *d)
{
	size_t i = s_slot_of(d, d->head), j = i;

	for (;;) {
		size_t home;
		j = (j + 1) & d->mask;
		if (!d->slots[j])
			break;
		home = (size_t)SLOT_KEY(d->slots[j]) & d->mask;
		/* An entry whose home lies cyclically in (i, j] stays where it is. */
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		d->slots[i] = d->slots[j];
		i = j;
	}
	d->slots[i] = 0;
	d->head = (d->head + 1) & (d->cap - 1);
	d->n--;
}

bool dedupe_check_key(dedupe_t *d, const dedupe_key_t *k, int64_t since_ms, int64_t now_ms)
{
	uint64_t h1 = k->h1, h2 = k->h2, key = h1 & KEY_MASK;
	size_t i, place;

	if (!d)
		return false;
	while (d->n && d->ring[d->head].at < since_ms)
		s_pop(d);
	for (i = h1 & d->mask; d->slots[i]; i = (i + 1) & d->mask) {
		const seen_t *e;
		if (SLOT_KEY(d->slots[i]) != key)
			continue;
		e = &d->ring[SLOT_PLACE(d->slots[i]) - 1];
		if (e->h1 == h1 && e->h2 == h2)
			return true; /* in the window: everything older has left */
	}
	if (d->n == d->cap) {
		s_pop(d);
		/* The pop may have moved entries back into the run: look for a free slot anew. */
		for (i = h1 & d->mask; d->slots[i]; i = (i + 1) & d->mask)
			;
	}
	place = (d->head + d->n) & (d->cap - 1);
	d->ring[place] = (seen_t){ h1, h2, now_ms };
	d->slots[i] = key << 30 | (uint64_t)(place + 1);
	d->n++;
	return false;
}

bool dedupe_check_add(dedupe_t *d, const char *source, const char *id, int64_t since_ms,
		      int64_t now_ms)
{
	dedupe_key_t k;

	if (!d || !source || !id)
		return false;
	dedupe_key(source, strlen(source), id, strlen(id), &k);
	return dedupe_check_key(d, &k, since_ms, now_ms);
}

void dedupe_prefetch(const dedupe_t *d, const dedupe_key_t *k)
{
	if (!d)
		return;
	__builtin_prefetch(&d->slots[k->h1 & d->mask]);
	/* A full window drops its oldest with each event: their slots are misses too. */
	if (d->n) {
		__builtin_prefetch(&d->slots[d->ring[d->head].h1 & d->mask]);
		__builtin_prefetch(&d->slots[d->ring[(d->head + 1) & (d->cap - 1)].h1 & d->mask]);
	}
}
