/*
 * sdk/mpool.h — per-thread caches of the blocks messages are made of.
 *
 * An event is built on a plugin's thread and dropped on the router's: with malloc, every
 * free on the router takes the source thread's arena lock while the source is allocating
 * from it, and both sleep on it (issue 5's profile: about a tenth of kanald's CPU in
 * memory mode). Here a block remembers the thread cache it came from. Freed on that
 * thread, it goes back on the cache's list for its size class; freed on another, it is
 * pushed onto the owner's lock-free return stack, which the owner takes back whole when a
 * list runs dry. No lock on either side, and the source reuses warm memory.
 *
 * Sizes above the largest class are plain malloc. Each list keeps at most about 512 KiB,
 * a return stack at most MPOOL_REMOTE_MAX blocks (beyond that a foreign block is simply
 * freed), so a thread that stops allocating holds little. A thread's cache outlives the
 * thread (blocks may still be on their way back) and is taken over by the next thread
 * that needs one.
 *
 * Builds with AddressSanitizer, and runs with KANAL_MPOOL=off in the environment (for
 * valgrind), use malloc and free directly, so that a use after free is still caught.
 * Only sdk/msg.c uses this; nothing outside the SDK sees these blocks.
 */
#ifndef KANAL_MPOOL_H
#define KANAL_MPOOL_H

#include <stddef.h>

/* A block of at least `size` bytes, 16-byte aligned; its usable size in *usable (may be
 * NULL). NULL when out of memory. */
void *kanal__mpool_alloc(size_t size, size_t *usable);

/* Gives back a block of kanal__mpool_alloc, from any thread. NULL is fine. */
void kanal__mpool_free(void *p);

/* Counts for tests: blocks this thread's cache served from its lists (not from malloc),
 * and foreign blocks pushed back to their owner. */
typedef struct kanal__mpool_stats {
	unsigned long long reused;
	unsigned long long returned;
	int enabled;
} kanal__mpool_stats_t;

void kanal__mpool_stats(kanal__mpool_stats_t *out);

#endif
