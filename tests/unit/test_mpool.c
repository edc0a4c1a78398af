/*
 * tests/unit/test_mpool.c — the per-thread block pool messages are made of (sdk/mpool.c),
 * called directly: every size gets a block of the class the simple walk over the class
 * table picks (its usable size says which), every byte of it can be written, and a block
 * given back on its own thread is handed out again (the pool serves from its lists, not
 * from malloc).
 */
#include <stdint.h>
#include <string.h>

#include "mpool.h"
#include "test.h"

/* The usable size of a block of `size` bytes as the class table says: the first class of
 * 64, 128, … 8192 bytes that holds the 16-byte header too, else malloc's (exactly size). */
static size_t s_usable_by_walk(size_t size)
{
	static const size_t cls[] = { 64, 128, 256, 512, 1024, 2048, 4096, 8192 };

	for (size_t c = 0; c < sizeof cls / sizeof *cls; c++)
		if (size + 16 <= cls[c])
			return cls[c] - 16;
	return size;
}

static void test_every_size_gets_its_class(void)
{
	kanal__mpool_stats_t st;
	int wrong = 0;

	kanal__mpool_stats(&st);
	for (size_t size = 0; size <= 8192 + 64; size++) {
		size_t usable = 0;
		unsigned char *p = kanal__mpool_alloc(size, &usable);

		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		CU_ASSERT_EQUAL((uintptr_t)p % 16, 0);
		/* Off (sanitizer builds, KANAL_MPOOL=off), every block is plain malloc. */
		wrong += usable != (st.enabled ? s_usable_by_walk(size) : size);
		memset(p, 0xa5, usable); /* all of it is ours (valgrind/ASan would say otherwise) */
		kanal__mpool_free(p);
	}
	CU_ASSERT_EQUAL(wrong, 0);
	kanal__mpool_free(NULL); /* accepted */
}

static void test_block_given_back_is_reused(void)
{
	kanal__mpool_stats_t before, after;
	void *first[64], *again[64];
	int same = 0;

	kanal__mpool_stats(&before);
	if (!before.enabled)
		return; /* plain malloc: nothing of the pool's to see */
	for (int i = 0; i < 64; i++)
		CU_ASSERT_PTR_NOT_NULL_FATAL(first[i] = kanal__mpool_alloc(200, NULL));
	for (int i = 0; i < 64; i++)
		kanal__mpool_free(first[i]);
	for (int i = 0; i < 64; i++)
		CU_ASSERT_PTR_NOT_NULL_FATAL(again[i] = kanal__mpool_alloc(200, NULL));
	for (int i = 0; i < 64; i++)
		for (int k = 0; k < 64; k++)
			same += again[i] == first[k];
	kanal__mpool_stats(&after);
	CU_ASSERT_EQUAL(same, 64);
	CU_ASSERT(after.reused - before.reused >= 64);
	for (int i = 0; i < 64; i++)
		kanal__mpool_free(again[i]);
}

TEST_MAIN("mpool", TEST(test_every_size_gets_its_class), TEST(test_block_given_back_is_reused))
