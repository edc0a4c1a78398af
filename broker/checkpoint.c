/*
 * broker/checkpoint.c — the journal's checkpoints, off the router thread (issue 19).
 *
 * SQLite's automatic checkpoint ran on the router's connection every 1000 WAL pages: it
 * copied ~4 MiB into the database file and synced both files while the router waited,
 * which was the durable mode's p99. Here automatic checkpoints are off and the work is
 * split in two (docs/design/journal.md, "Checkpoints off the router"):
 *
 * - A checkpoint thread with its own connection runs PASSIVE checkpoints: woken by the
 *   router's WAL hook when the WAL holds CKPT_WAKE_PAGES or more, and once a second in
 *   any case. It copies the bulk and syncs it, concurrently with the router's writes.
 * - A passive checkpoint cannot end the WAL while the router keeps appending (the WAL
 *   starts over only when every frame is copied), so the router finishes the job: when
 *   what the thread has not copied is at most CKPT_CATCHUP_PAGES, the router's WAL hook
 *   copies that remainder itself — a few pages and two small syncs — and its next write
 *   starts the WAL from the beginning.
 * - A hard bound: should the WAL reach CKPT_HARD_PAGES anyway (a flood that never lets
 *   the thread come close), the router checkpoints all of it, waiting for the thread if it
 *   must, and says so in a warning (at most one every 10 s, with a count).
 *
 * The numbers the router reads from the thread (how far its last checkpoint got) are one
 * atomic word, so neither side takes a lock on the hot path.
 */
#include <pthread.h>
#include <stdio.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "log.h"

/* The router wakes the thread once the WAL holds this many pages (8 MiB at 4 KiB). The
 * router's share of a WAL cycle is at most CKPT_CATCHUP_PAGES of it: with 256 here the
 * router copied about half of every page under a flood (a fifth of its time, issue 19). */
#ifndef CKPT_WAKE_PAGES
#define CKPT_WAKE_PAGES 2048
#endif
/* The router copies the rest itself when the thread has left at most this many. */
#ifndef CKPT_CATCHUP_PAGES
#define CKPT_CATCHUP_PAGES 256
#endif
/* Beyond this many pages (64 MiB at 4 KiB) the router checkpoints everything itself. */
#ifndef CKPT_HARD_PAGES
#define CKPT_HARD_PAGES 16384
#endif

struct journal_ckpt {
	sqlite3 *router_db; /* borrowed: the router's connection, whose WAL hook this is */
	sqlite3 *db;        /* the thread's own connection */
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool woken, stop;
	/* The thread's last passive checkpoint in one word: the WAL cycle it ran in (a
	 * cycle is the WAL from one start to the next; the router counts them, modulo
	 * 2^16), the WAL's size when it ran and how many of those frames are copied (24 bits
	 * each; the hard bound keeps the WAL far below 2^24 frames). */
	_Atomic uint64_t progress;
	_Atomic uint32_t cycle;
	_Atomic uint64_t by_thread, by_router, forced;
	_Atomic int last_pages;  /* the WAL's size at the router's last commit */
	double sync_us_per_page; /* what syncing a page of the database file costs the thread */
	_Atomic int64_t errors;  /* failed checkpoints of the thread (a full disk, …) */
	char last_error[200];    /* the thread's, under lock */
};

static void s_wake(journal_ckpt_t *c)
{
	pthread_mutex_lock(&c->lock);
	if (!c->woken) {
		c->woken = true;
		pthread_cond_signal(&c->wake);
	}
	pthread_mutex_unlock(&c->lock);
}

/* The router's hook, after each commit: pages is the WAL's size in frames. */
static int s_wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	journal_ckpt_t *c = arg;
	uint64_t p = atomic_load_explicit(&c->progress, memory_order_acquire);
	int seen = (int)((p >> 24) & 0xffffff), copied = (int)(p & 0xffffff);
	int log_frames = 0, done = 0;

	(void)name;
	if (pages < c->last_pages) /* the WAL started over: a new cycle */
		atomic_fetch_add_explicit(&c->cycle, 1, memory_order_release);
	/* Progress made in an earlier cycle says nothing of this one: taking it for this
	 * cycle's had the router checkpoint a whole cycle itself (its pages had passed the
	 * old figure before the thread's first pass of the new cycle ended). */
	if (seen > pages ||
	    (uint16_t)(p >> 48) != (uint16_t)atomic_load_explicit(&c->cycle, memory_order_relaxed))
		copied = 0;
	c->last_pages = pages;
	if (pages >= CKPT_HARD_PAGES) {
		if (sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_FULL, &log_frames,
					      &done) == SQLITE_OK)
			atomic_fetch_add(&c->forced, 1);
		log_warn_limited("journal",
				 "the WAL reached %d pages before the checkpoint thread caught up: "
				 "the router checkpointed it (a pause in routing)",
				 pages);
		return SQLITE_OK;
	}
	if (pages < CKPT_WAKE_PAGES)
		return SQLITE_OK;
	if (copied > 0 && pages - copied <= CKPT_CATCHUP_PAGES) {
		/* The thread has copied all but a few pages: copy those here, and the next
		 * write starts the WAL over. Busy (the thread is at it again) is no harm. */
		if (sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
					      &done) == SQLITE_OK &&
		    done == log_frames)
			atomic_fetch_add(&c->by_router, 1);
		return SQLITE_OK;
	}
	s_wake(c);
	return SQLITE_OK;
}

static int64_t s_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Syncs the database file after the pass that leaves the router its catch-up. SQLite
 * syncs the file only when a checkpoint reaches the end of the WAL, which the thread's
 * passes never do while the router writes: without this, the router's catch-up at the end
 * of a cycle synced everything the thread had copied in the cycle (~8 MiB, 3–16 ms here,
 * the durable p99). With it the router's sync covers its own few pages. */
static int s_sync_db(journal_ckpt_t *c, int pages)
{
	sqlite3_file *f = NULL;
	int64_t t0 = s_now_us();
	int rc;

	if (sqlite3_file_control(c->db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK || !f ||
	    !f->pMethods)
		return SQLITE_OK; /* nothing to sync through: the router's sync does it all */
	rc = f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
	if (pages > 0) /* what a page cost to sync, smoothed */
		c->sync_us_per_page =
			0.75 * c->sync_us_per_page + 0.25 * (double)(s_now_us() - t0) / pages;
	return rc;
}

/* Whether to sync the database file before the router sees a pass that copied all but
 * `done`: only when the router, writing at the pace it wrote during the pass (from pages0
 * at t0), would still be within CKPT_CATCHUP_PAGES once the sync of the `unsynced` pages
 * copied is done (at what a page cost to sync before). At a steady pace that holds, and the router's catch-up then
 * syncs only its own pages. Under a flood it does not, and the progress is handed over at
 * once: a sync there delays what the router waits for while it writes on, the passes never
 * came within CKPT_CATCHUP_PAGES of it and the WAL grew to the hard bound (test_journal). */
static bool s_sync_pays(journal_ckpt_t *c, int pages0, int64_t t0, int done, int unsynced)
{
	int64_t dt = s_now_us() - t0;
	int pages = c->last_pages;
	double rate = dt > 0 && pages > pages0 ? (double)(pages - pages0) / (double)dt : 0;

	return (double)(pages - done) + rate * c->sync_us_per_page * unsynced <= CKPT_CATCHUP_PAGES;
}

static void *s_main(void *arg)
{
	journal_ckpt_t *c = arg;

	int synced = 0;            /* the frames copied and synced in the cycle synced_cycle */
	uint32_t synced_cycle = 0; /* (the router counts cycles from 0) */

	pthread_setname_np(pthread_self(), "kanal-ckpt");
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		struct timespec until;
		int log_frames = 0, done = 0, rc, pages0, unsynced;
		uint32_t cycle;
		int64_t t0;

		if (!c->woken) {
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += 1;
			pthread_cond_timedwait(&c->wake, &c->lock, &until);
		}
		if (c->stop)
			break;
		c->woken = false;
		pthread_mutex_unlock(&c->lock);
		/* Read before the pass: a restart during it makes the label old, never new. */
		cycle = atomic_load_explicit(&c->cycle, memory_order_acquire);
		t0 = s_now_us();
		pages0 = c->last_pages;
		rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
					       &done);
		/* The pages this pass and the unsynced passes before it in the cycle copied. */
		unsynced = done - (synced_cycle == cycle && synced <= done ? synced : 0);
		if (rc == SQLITE_OK && unsynced > 0 && s_sync_pays(c, pages0, t0, done, unsynced) &&
		    (rc = s_sync_db(c, unsynced)) == SQLITE_OK) {
			synced = done;
			synced_cycle = cycle;
		}
		pthread_mutex_lock(&c->lock);
		if (rc == SQLITE_OK) {
			if (log_frames > 0)
				atomic_fetch_add(&c->by_thread, 1);
			atomic_store_explicit(&c->progress,
					      ((uint64_t)(uint16_t)cycle << 48) |
						      ((uint64_t)(log_frames & 0xffffff) << 24) |
						      (uint64_t)(done & 0xffffff),
					      memory_order_release);
			/* Still far behind the router: go again at once. */
			if (log_frames - done > CKPT_CATCHUP_PAGES)
				c->woken = true;
		} else if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
			/* The WAL keeps everything: a failed checkpoint loses nothing, it only
			 * leaves the WAL longer (the router's hard bound takes over). */
			atomic_fetch_add(&c->errors, 1);
			snprintf(c->last_error, sizeof c->last_error, "%s", sqlite3_errmsg(c->db));
		}
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

journal_ckpt_t *journal_ckpt_start(sqlite3 *router_db, const char *path,
				   int (*setup)(sqlite3 *db, void *arg), void *setup_arg, char *err,
				   size_t err_size)
{
	journal_ckpt_t *c = calloc(1, sizeof *c);

	if (!c) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	c->router_db = router_db;
	c->sync_us_per_page = 10; /* until measured: a cautious guess (4–5 µs here) */
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->wake, NULL);
	if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
		    SQLITE_OK ||
	    (setup && setup(c->db, setup_arg) != 0)) {
		snprintf(err, err_size, "cannot open the journal's checkpoint connection (%s): %s",
			 path, c->db ? sqlite3_errmsg(c->db) : "out of memory");
		journal_ckpt_stop(&c);
		return NULL;
	}
	/* Checkpoints wait for the router's commits briefly, never for long. */
	sqlite3_busy_timeout(c->db, 100);
	if (pthread_create(&c->thread, NULL, s_main, c) != 0) {
		snprintf(err, err_size, "cannot start the journal's checkpoint thread");
		journal_ckpt_stop(&c);
		return NULL;
	}
	c->running = true;
	/* From here on the router's commits call s_wal_hook instead of checkpointing
	 * automatically (a WAL hook replaces wal_autocheckpoint). */
	sqlite3_wal_hook(router_db, s_wal_hook, c);
	return c;
}

void journal_ckpt_stop(journal_ckpt_t **c_p)
{
	journal_ckpt_t *c = c_p ? *c_p : NULL;

	if (!c)
		return;
	if (c->router_db && c->running)
		sqlite3_wal_hook(c->router_db, NULL, NULL);
	if (c->running) {
		pthread_mutex_lock(&c->lock);
		c->stop = true;
		pthread_cond_signal(&c->wake);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->thread, NULL);
	}
	sqlite3_close(c->db);
	pthread_cond_destroy(&c->wake);
	pthread_mutex_destroy(&c->lock);
	free(c);
	*c_p = NULL;
}

void journal_ckpt_stats(journal_ckpt_t *c, journal_ckpt_stats_t *out)
{
	memset(out, 0, sizeof *out);
	if (!c)
		return;
	out->by_thread = atomic_load(&c->by_thread);
	out->by_router = atomic_load(&c->by_router);
	out->forced = atomic_load(&c->forced);
	out->errors = (uint64_t)atomic_load(&c->errors);
	out->wal_pages = c->last_pages;
}
