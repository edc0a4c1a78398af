/*
 * sdk/mpool.c — see mpool.h.
 *
 * A block is a 16-byte header (owner cache, size class) and its payload. On a list or a
 * return stack the payload's first word links it to the next block. The return stack is a
 * Treiber stack that only its owner empties, and only all at once (an exchange with
 * NULL), so there is no ABA problem: a pusher's compare-and-swap either sees the head it
 * read or retries.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpool.h"

#if defined(__SANITIZE_ADDRESS__)
#define MP_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MP_SANITIZED 1
#endif
#endif

#define MP_NCLS 8
#define MP_LIST_BYTES (512u * 1024u)
#define MPOOL_REMOTE_MAX 16384

/* Whole block sizes, header included: class c is 64 << c bytes. */
static const size_t s_cls_size[MP_NCLS] = { 64, 128, 256, 512, 1024, 2048, 4096, 8192 };
/* Blocks a class's list keeps at most (MP_LIST_BYTES of them). */
static const unsigned s_cls_max[MP_NCLS] = {
	MP_LIST_BYTES / 64,   MP_LIST_BYTES / 128,  MP_LIST_BYTES / 256,  MP_LIST_BYTES / 512,
	MP_LIST_BYTES / 1024, MP_LIST_BYTES / 2048, MP_LIST_BYTES / 4096, MP_LIST_BYTES / 8192,
};

typedef struct mp_cache mp_cache_t;

typedef struct mp_block {
	mp_cache_t *owner; /* NULL: a plain malloc (too big for a class, or no cache) */
	uint32_t cls;
	uint32_t pad;
} mp_block_t;

_Static_assert(sizeof(mp_block_t) == 16, "the header keeps the payload 16-byte aligned");

struct mp_cache {
	mp_block_t *list[MP_NCLS];
	unsigned n[MP_NCLS];
	mp_cache_t *next_all;    /* every cache ever made (they are never freed) */
	mp_cache_t *next_orphan; /* caches whose thread has ended, waiting for a new one */
	unsigned long long reused;
	unsigned long long returned;
	/* Written by other threads: on a cache line of its own. */
	_Alignas(64) mp_block_t *remote;
	unsigned long remote_n;
	char tail_pad[64 - sizeof(mp_block_t *) - sizeof(unsigned long)];
};

static __thread mp_cache_t *s_tls __attribute__((tls_model("initial-exec")));

static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static bool s_ready; /* s_init has run: s_on is set (read with acquire, once per call) */
static pthread_key_t s_key;
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static mp_cache_t *s_all;
static mp_cache_t *s_orphans;
static bool s_on;

static inline mp_block_t **s_next(mp_block_t *b)
{
	return (mp_block_t **)(void *)(b + 1);
}

/* The smallest class whose blocks hold `whole` bytes (the first power of two from 64 on
 * that is not smaller), or -1. */
static inline int s_class(size_t whole)
{
	int c;

	if (whole <= 64)
		return 0;
	c = 64 - __builtin_clzll((unsigned long long)whole - 1) - 6;
	return c < MP_NCLS ? c : -1;
}

/* Keeps b on its class's list, or frees it when the list holds its share already. */
static void s_local_put(mp_cache_t *c, mp_block_t *b)
{
	uint32_t cls = b->cls;

	if (c->n[cls] >= s_cls_max[cls]) {
		free(b);
		return;
	}
	*s_next(b) = c->list[cls];
	c->list[cls] = b;
	c->n[cls]++;
}

/* Takes back everything other threads have returned to c. */
static void s_drain(mp_cache_t *c)
{
	mp_block_t *b = __atomic_exchange_n(&c->remote, NULL, __ATOMIC_ACQUIRE);
	unsigned long count = 0;

	while (b) {
		mp_block_t *next = *s_next(b);
		s_local_put(c, b);
		b = next;
		count++;
	}
	if (count)
		__atomic_fetch_sub(&c->remote_n, count, __ATOMIC_RELAXED);
}

static void s_free_lists(mp_cache_t *c)
{
	for (int cls = 0; cls < MP_NCLS; cls++) {
		mp_block_t *b = c->list[cls];
		while (b) {
			mp_block_t *next = *s_next(b);
			free(b);
			b = next;
		}
		c->list[cls] = NULL;
		c->n[cls] = 0;
	}
}

/* The thread is ending: its blocks go back to malloc, its cache waits for a new thread
 * (blocks it handed out may still come back to it). */
static void s_thread_exit(void *arg)
{
	mp_cache_t *c = arg;

	if (!c)
		return;
	s_drain(c);
	s_free_lists(c);
	if (s_tls == c)
		s_tls = NULL;
	pthread_mutex_lock(&s_lock);
	c->next_orphan = s_orphans;
	s_orphans = c;
	pthread_mutex_unlock(&s_lock);
}

static void s_init(void)
{
#ifdef MP_SANITIZED
	s_on = false;
#else
	const char *mode = getenv("KANAL_MPOOL");

	s_on = !(mode && (!strcmp(mode, "off") || !strcmp(mode, "0")));
#endif
	if (s_on && pthread_key_create(&s_key, s_thread_exit) != 0)
		s_on = false;
	__atomic_store_n(&s_ready, true, __ATOMIC_RELEASE);
}

/* Whether the pool is on; pthread_once only until the first call has decided (it cost a
 * call per block). */
static inline bool s_enabled(void)
{
	if (!__atomic_load_n(&s_ready, __ATOMIC_ACQUIRE))
		pthread_once(&s_once, s_init);
	return s_on;
}

static mp_cache_t *s_cache(void)
{
	mp_cache_t *c;

	if (s_tls)
		return s_tls;
	pthread_mutex_lock(&s_lock);
	c = s_orphans;
	if (c)
		s_orphans = c->next_orphan;
	pthread_mutex_unlock(&s_lock);
	if (!c) {
		c = aligned_alloc(64, sizeof *c);
		if (!c)
			return NULL;
		memset(c, 0, sizeof *c);
		pthread_mutex_lock(&s_lock);
		c->next_all = s_all;
		s_all = c;
		pthread_mutex_unlock(&s_lock);
	}
	c->next_orphan = NULL;
	s_tls = c;
	pthread_setspecific(s_key, c);
	s_drain(c);
	return c;
}

void *kanal__mpool_alloc(size_t size, size_t *usable)
{
	mp_cache_t *c;
	mp_block_t *b;
	int cls;

	if (!s_enabled()) {
		if (usable)
			*usable = size;
		return malloc(size ? size : 1);
	}
	cls = size <= SIZE_MAX - sizeof *b ? s_class(size + sizeof *b) : -1;
	if (cls < 0) {
		if (size > SIZE_MAX - sizeof *b || !(b = malloc(sizeof *b + size)))
			return NULL;
		b->owner = NULL;
		b->cls = 0;
		if (usable)
			*usable = size;
		return b + 1;
	}
	c = s_cache();
	if (c && !c->list[cls])
		s_drain(c);
	if (c && (b = c->list[cls])) {
		c->list[cls] = *s_next(b);
		c->n[cls]--;
		c->reused++;
	} else {
		if (!(b = malloc(s_cls_size[cls])))
			return NULL;
		b->owner = c;
		b->cls = (uint32_t)cls;
	}
	if (usable)
		*usable = s_cls_size[cls] - sizeof *b;
	return b + 1;
}

void kanal__mpool_free(void *p)
{
	mp_block_t *b, *head;
	mp_cache_t *c;

	if (!p)
		return;
	if (!s_on) {
		free(p);
		return;
	}
	b = (mp_block_t *)p - 1;
	c = b->owner;
	if (!c) {
		free(b);
		return;
	}
	if (c == s_tls) {
		s_local_put(c, b);
		return;
	}
	/* Another thread's block: back to its owner, unless its stack holds plenty. */
	if (__atomic_load_n(&c->remote_n, __ATOMIC_RELAXED) >= MPOOL_REMOTE_MAX) {
		free(b);
		return;
	}
	__atomic_fetch_add(&c->remote_n, 1, __ATOMIC_RELAXED);
	head = __atomic_load_n(&c->remote, __ATOMIC_RELAXED);
	do {
		*s_next(b) = head;
	} while (!__atomic_compare_exchange_n(&c->remote, &head, b, true, __ATOMIC_RELEASE,
					      __ATOMIC_RELAXED));
	if (s_tls)
		s_tls->returned++;
}

void kanal__mpool_stats(kanal__mpool_stats_t *out)
{
	memset(out, 0, sizeof *out);
	out->enabled = s_enabled();
	if (s_tls) {
		out->reused = s_tls->reused;
		out->returned = s_tls->returned;
	}
}

/* At exit: what the exiting thread keeps, and what came back to ended threads, goes back
 * to malloc, so that a leak checker sees only what is really still in use. */
__attribute__((destructor)) static void s_fini(void)
{
	if (!s_on)
		return;
	if (s_tls) {
		s_drain(s_tls);
		s_free_lists(s_tls);
	}
	pthread_mutex_lock(&s_lock);
	for (mp_cache_t *c = s_orphans; c; c = c->next_orphan) {
		s_drain(c);
		s_free_lists(c);
	}
	pthread_mutex_unlock(&s_lock);
}
