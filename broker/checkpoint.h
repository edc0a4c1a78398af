/*
 * broker/checkpoint.h — the journal's checkpoints, off the router thread: a thread with its
 * own connection copies the WAL into the database file, the router's WAL hook finishes the
 * last few pages and bounds the WAL (broker/checkpoint.c, docs/design/journal.md).
 */
#ifndef KANAL_CHECKPOINT_H
#define KANAL_CHECKPOINT_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

typedef struct journal_ckpt journal_ckpt_t;

typedef struct journal_ckpt_stats {
	uint64_t by_thread; /* passive checkpoints of the thread that copied something */
	uint64_t by_router; /* the last few pages, copied by the router's hook */
	uint64_t forced;    /* the hard bound: everything copied by the router */
	uint64_t errors;    /* failed checkpoints of the thread (nothing lost: the WAL keeps it) */
	int wal_pages;      /* the WAL's size in pages at the last commit */
} journal_ckpt_stats_t;

/* Opens a second connection to the journal at path (setup, when given, configures it the
 * way the router's was — a key, pragmas — and returns 0), starts the thread, and installs
 * the WAL hook on router_db, which turns SQLite's automatic checkpoints off. Returns NULL
 * with the cause in err. Ownership: the caller owns the result (journal_ckpt_stop); router_db
 * stays the caller's and must outlive it. */
journal_ckpt_t *journal_ckpt_start(sqlite3 *router_db, const char *path,
				   int (*setup)(sqlite3 *db, void *arg), void *setup_arg, char *err,
				   size_t err_size);

/* Removes the hook, stops the thread, closes its connection; *c_p becomes NULL. Call it
 * before closing the router's connection (whose close then checkpoints what is left).
 * Ownership: takes *c_p. */
void journal_ckpt_stop(journal_ckpt_t **c_p);

/* Reads the counters; c may be NULL (all zero). Ownership: out is the caller's. */
void journal_ckpt_stats(journal_ckpt_t *c, journal_ckpt_stats_t *out);

#endif
