/*
 * tests/unit/test_dedupe.c — the memory mode's duplicate window (broker/dedupe.c), called
 * directly: an event seen within the window is a duplicate, one seen before it or pushed
 * out by a full window is not, and a long run of events against a small window answers
 * exactly as a plain list of the last events would (the table's deletions keep every
 * remaining entry findable). The fingerprint (dedupe_key, eight bytes at a time) is
 * checked against the strings themselves: random keys of every length answer as a list
 * of the exact (source, id) pairs would, and a million real-looking ids give no two equal
 * halves of the fingerprint.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dedupe.h"
#include "test.h"

static void test_seen_within_the_window_is_a_duplicate(void)
{
	dedupe_t *d = dedupe_new(16);

	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	CU_ASSERT_FALSE(dedupe_check_add(d, "vendor", "a-1", 0, 1000));
	CU_ASSERT_TRUE(dedupe_check_add(d, "vendor", "a-1", 0, 1001));
	/* The same id from another source, or another id, is another event. */
	CU_ASSERT_FALSE(dedupe_check_add(d, "other", "a-1", 0, 1002));
	CU_ASSERT_FALSE(dedupe_check_add(d, "vendor", "a-2", 0, 1003));
	/* The joined key is not ambiguous: "ab"+"c" is not "a"+"bc". */
	CU_ASSERT_FALSE(dedupe_check_add(d, "ab", "c", 0, 1004));
	CU_ASSERT_FALSE(dedupe_check_add(d, "a", "bc", 0, 1005));
	dedupe_destroy(&d);
	CU_ASSERT_PTR_NULL(d);
	dedupe_destroy(&d); /* accepts NULL */
}

static void test_forgotten_after_the_window(void)
{
	dedupe_t *d = dedupe_new(16);

	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	CU_ASSERT_FALSE(dedupe_check_add(d, "v", "old", 0, 1000));
	CU_ASSERT_FALSE(dedupe_check_add(d, "v", "new", 0, 5000));
	/* The window now starts at 2000: "old" left it, "new" did not. */
	CU_ASSERT_FALSE(dedupe_check_add(d, "v", "old", 2000, 6000));
	CU_ASSERT_TRUE(dedupe_check_add(d, "v", "new", 2000, 6001));
	dedupe_destroy(&d);
}

/* Against a reference: the last `cap` distinct events, oldest first. */
static void test_long_run_matches_a_plain_list(void)
{
	enum { CAP = 64, RUN = 50000, KEYS = 200 };
	dedupe_t *d = dedupe_new(CAP);
	int last[CAP], n = 0, wrong = 0;
	unsigned seed = 12345;

	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	for (int step = 0; step < RUN; step++) {
		char id[16];
		int key, seen = 0;

		seed = seed * 1103515245u + 12345u;
		key = (int)((seed >> 8) % KEYS);
		snprintf(id, sizeof id, "e-%d", key);
		for (int i = 0; i < n; i++)
			seen |= last[i] == key;
		if (dedupe_check_add(d, "src", id, 0, step) != (bool)seen)
			wrong++;
		if (!seen) {
			if (n == CAP) {
				memmove(last, last + 1, (CAP - 1) * sizeof *last);
				n--;
			}
			last[n++] = key;
		}
	}
	CU_ASSERT_EQUAL(wrong, 0);
	dedupe_destroy(&d);
}

/* Against the exact strings: random (source, id) pairs of 0-40 bytes from a small alphabet,
 * half of them another one changed a little (a byte of its last eight flipped, where the
 * word-at-a-time hash takes its tails, or its last byte dropped). Through both ways in —
 * dedupe_check_add (strings) and dedupe_key with the lengths (the router's) — a long run
 * answers as a list of the last CAP distinct pairs compared with strcmp does, and among all
 * the pairs two fingerprints are equal exactly when the strings are. */
static void test_random_keys_match_the_strings(void)
{
	enum { CAP = 128, RUN = 200000, POOL = 400, LEN = 41, SOURCES = 20, KEYS = SOURCES * POOL };
	static char src[POOL][LEN], ids[POOL][LEN]; /* src[0..SOURCES) are used */
	static int canon_src[POOL], canon_id[POOL];
	static dedupe_key_t keys[KEYS];
	dedupe_t *by_text = dedupe_new(CAP), *by_key = dedupe_new(CAP);
	int last[CAP], n = 0, wrong = 0, dups = 0, near = 0;
	unsigned seed = 777;

	CU_ASSERT_PTR_NOT_NULL_FATAL(by_text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(by_key);
	for (int i = 0; i < POOL; i++) {
		for (int which = 0; which < 2; which++) {
			char(*t)[LEN] = which ? ids : src;
			int *canon = which ? canon_id : canon_src;
			size_t len;
			seed = seed * 1103515245u + 12345u;
			if (i > 0 && seed >> 31) {
				memcpy(t[i], t[(seed >> 8) % i], LEN);
				len = strlen(t[i]);
				seed = seed * 1103515245u + 12345u;
				if (len && seed >> 30 == 0)
					t[i][len - 1] = '\0';
				else if (len)
					t[i][len - 1 - (seed >> 8) % (len < 8 ? len : 8)] ^= 1;
			} else {
				len = (seed >> 8) % LEN;
				for (size_t k = 0; k < len; k++) {
					seed = seed * 1103515245u + 12345u;
					t[i][k] = "ab-/:1"[(seed >> 8) % 6];
				}
				t[i][len] = '\0';
			}
			canon[i] = i;
			for (int j = 0; j < i; j++)
				if (!strcmp(t[j], t[i])) {
					canon[i] = j;
					break;
				}
		}
	}
	for (int step = 0; step < RUN; step++) {
		int s, e, seen = 0;
		dedupe_key_t k;
		bool a, b;

		seed = seed * 1103515245u + 12345u;
		s = (int)((seed >> 8) % 4); /* few of the sources and ids: duplicates are common */
		seed = seed * 1103515245u + 12345u;
		e = (int)((seed >> 8) % 100);
		for (int i = 0; i < n; i++)
			seen |= !strcmp(src[last[i] / POOL], src[s]) &&
				!strcmp(ids[last[i] % POOL], ids[e]);
		a = dedupe_check_add(by_text, src[s], ids[e], 0, step);
		dedupe_key(src[s], strlen(src[s]), ids[e], strlen(ids[e]), &k);
		b = dedupe_check_key(by_key, &k, 0, step);
		wrong += a != (bool)seen || b != (bool)seen;
		dups += seen;
		if (!seen) {
			if (n == CAP) {
				memmove(last, last + 1, (CAP - 1) * sizeof *last);
				n--;
			}
			last[n++] = s * POOL + e;
		}
	}
	CU_ASSERT_EQUAL(wrong, 0);
	CU_ASSERT(dups > RUN / 10); /* the run did test duplicates */
	for (int x = 0; x < KEYS; x++)
		dedupe_key(src[x / POOL], strlen(src[x / POOL]), ids[x % POOL],
			   strlen(ids[x % POOL]), &keys[x]);
	for (int x = 0; x < KEYS; x++) {
		for (int y = x + 1; y < KEYS; y++) {
			bool same = canon_src[x / POOL] == canon_src[y / POOL] &&
				    canon_id[x % POOL] == canon_id[y % POOL];
			wrong += same != (keys[x].h1 == keys[y].h1 && keys[x].h2 == keys[y].h2);
			near += !same && x / POOL == y / POOL &&
				strlen(ids[x % POOL]) == strlen(ids[y % POOL]);
		}
	}
	CU_ASSERT_EQUAL(wrong, 0);
	CU_ASSERT(near > 1000); /* many pairs of ids of one length */
	dedupe_destroy(&by_text);
	dedupe_destroy(&by_key);
}

static int s_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Counts the values that equal the one before them once sorted. */
static size_t s_equal_pairs(uint64_t *v, size_t n)
{
	size_t same = 0;

	qsort(v, n, sizeof *v, s_cmp_u64);
	for (size_t i = 1; i < n; i++)
		same += v[i] == v[i - 1];
	return same;
}

/* A million ids as sources make them (a counter after the instance's name, or a UUID-like
 * text): no two share either 64-bit half of the fingerprint (by chance, one in 2^25), and
 * the 34 bits a table slot keeps collide about as often as random bits do (n²/2^35, ~29). */
static void test_fingerprints_do_not_collide(void)
{
	enum { N = 1000000 };
	uint64_t *h1 = malloc(N * sizeof *h1), *h2 = malloc(N * sizeof *h2);
	size_t same;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h2);
	for (size_t i = 0; i < N; i++) {
		char id[64];
		dedupe_key_t k;
		int len = i % 2 ? snprintf(id, sizeof id, "src-%zu", i / 2)
				: snprintf(id, sizeof id, "%08zx-0000-4000-8000-%012zx", i / 2 % 7,
					   i / 2);
		dedupe_key("src", 3, id, (size_t)len, &k);
		h1[i] = k.h1;
		h2[i] = k.h2;
	}
	CU_ASSERT_EQUAL(s_equal_pairs(h1, N), 0);
	CU_ASSERT_EQUAL(s_equal_pairs(h2, N), 0);
	for (size_t i = 0; i < N; i++)
		h1[i] &= (1ULL << 34) - 1;
	same = s_equal_pairs(h1, N);
	CU_ASSERT(same < 100);
	free(h1);
	free(h2);
}

TEST_MAIN("dedupe", TEST(test_seen_within_the_window_is_a_duplicate),
	  TEST(test_forgotten_after_the_window), TEST(test_long_run_matches_a_plain_list),
	  TEST(test_random_keys_match_the_strings), TEST(test_fingerprints_do_not_collide))
