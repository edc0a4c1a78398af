/*
 * tests/unit/test_dedupe.c — the memory mode's duplicate window (broker/dedupe.c), called
 * directly: an event seen within the window is a duplicate, one seen before it or pushed
 * out by a full window is not, and a long run of events against a small window answers
 * exactly as a plain list of the last events would (the table's deletions keep every
 * remaining entry findable).
 */
#include <stdio.h>
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

TEST_MAIN("dedupe", TEST(test_seen_within_the_window_is_a_duplicate),
	  TEST(test_forgotten_after_the_window), TEST(test_long_run_matches_a_plain_list))
