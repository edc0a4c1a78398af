/*
 * broker/journal.h — the durable journal: accepted events, delivery outcomes and dead
 * letters in SQLite (WAL), written by the router thread in one transaction per loop turn
 * (group commit). docs/design/journal.md gives the schema and the reasoning.
 *
 * Only the router thread uses a journal; nothing here is thread-safe. (The journal's own
 * checkpoint thread, broker/checkpoint.c, has a connection of its own.)
 */
#ifndef KANAL_JOURNAL_H
#define KANAL_JOURNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <kanal/kanal.h>
#include "blob_store.h"
#include "checkpoint.h"

typedef struct journal journal_t;

/* Delivery states that get a row. */
typedef enum journal_state {
	JOURNAL_DELIVERED = 2,
	JOURNAL_RETRYING = 3,
	JOURNAL_DEAD = 4,
	JOURNAL_REJECTED = 5,
} journal_state_t;

/* Opens (creating) the journal at path. `sync_power` selects synchronous=FULL. Returns NULL
 * with the reason in err. */
journal_t *journal_open(const char *path, bool sync_power, char *err, size_t err_size);
/* journal_open with encryption at rest: `key_file` (NULL: none) holds the key, one line
 * (journal_read_key); the file must be private (no access for group or others). A wrong
 * key, an unencrypted journal given a key, an encrypted one given none, or a kanald built
 * without SQLCipher is refused with the reason in err. docs/design/journal-encryption.md. */
journal_t *journal_open_keyed(const char *path, bool sync_power, const char *key_file, char *err,
			      size_t err_size);
/* True when the SQLite kanald is linked with is SQLCipher (it can encrypt the journal). */
bool journal_can_encrypt(void);
/* Reads the key from key_file into key (size bytes, NUL-terminated, trailing blanks cut):
 * the file must be a regular file, private (mode 0600 or narrower) and hold one non-empty
 * line. Returns 0, or a negative code with the reason in err (the key is then wiped). The
 * caller wipes key after use. Used at start and by the config check alike. */
int journal_read_key(const char *key_file, char *key, size_t size, char *err, size_t err_size);
void journal_close(journal_t **j_p);
const char *journal_path(const journal_t *j);
/* The checkpoint counters (docs/design/journal.md, "Checkpoints off the router"). */
void journal_checkpoints(journal_t *j, journal_ckpt_stats_t *out);

/* Starts the turn's transaction if none is open. Every write below calls it. After a
 * failed transaction it first proves that the disk takes a write of realistic size (1 MiB
 * written, synced and removed beside the journal): until that works it returns KANAL_EIO,
 * so a begin and commit that succeed mean the journal is writable again. Returns 0 or
 * KANAL_EIO (also for every write after SQLite rolled the open transaction back). */
int journal_begin(journal_t *j);
/* Commits the turn's transaction if one is open, with the done marks held so far (those a
 * failed commit left behind included). Returns 0, or KANAL_EIO after rolling it back (the
 * turn's writes are lost: nothing of it may be acknowledged; its done marks of events
 * that were committed before are kept for the next commit). */
int journal_commit(journal_t *j);
/* True while a transaction is open (there is something to commit). */
bool journal_dirty(const journal_t *j);
/* Why the last transaction failed, in words, for logs and for the refusals senders read:
 * its first error (not what the rollback said after it), a full disk named so ("disk full:
 * database or disk is full (No space left on device)"). Ownership: borrowed, valid until
 * the next call on j. */
const char *journal_error(const journal_t *j);

/* True when (source, id) was accepted at or after since_ms (unix ms). */
bool journal_seen(journal_t *j, const char *source, const char *id, int64_t since_ms);

/* Stores an accepted event; its journal sequence number goes to *seq. A parked event is
 * accepted but not yet routed: it waits on disk until its destinations have room. */
int journal_add_event(journal_t *j, const kanal_msg_t *msg, bool parked, uint64_t *seq);
/* Marks a parked event as taken into memory, or an open one as parked again. */
int journal_unpark(journal_t *j, uint64_t seq);
int journal_park(journal_t *j, uint64_t seq);
/* Calls fn for up to `limit` parked events after after_seq, in journal order, with the
 * event (owned by fn); fn returns non-zero to stop. Returns the number read. */
typedef int (*journal_parked_fn)(void *arg, uint64_t seq, kanal_msg_t *msg);
int journal_load_parked(journal_t *j, uint64_t after_seq, int limit, journal_parked_fn fn,
			void *arg);
int64_t journal_parked_count(journal_t *j);
/* Marks an event done (every delivery reached an end). The mark is held in memory until
 * a commit writes it, and kept across failed commits: KANAL_EIO means the journal cannot
 * be written now, not that the mark is lost. */
int journal_event_done(journal_t *j, uint64_t seq);
/* Records a delivery's state (route "" for the default destination). */
int journal_delivery(journal_t *j, uint64_t seq, const char *route, const char *destination,
		     journal_state_t state, int attempts, int64_t next_at_ms, const char *error);

/* One recorded delivery of an open event, for restart. */
typedef struct journal_row {
	const char *route;
	const char *destination;
	journal_state_t state;
	int attempts;
	int64_t next_at_ms;
	const char *last_error;
} journal_row_t;

/* Calls fn for every open event in journal order with the event (owned by fn) and its
 * recorded deliveries (borrowed for the call). Returns the number of events, or a
 * negative code. An event whose body no longer parses is reported and marked done. */
typedef void (*journal_open_fn)(void *arg, uint64_t seq, kanal_msg_t *msg, bool parked,
				const journal_row_t *rows, size_t n_rows);
int journal_load_open(journal_t *j, journal_open_fn fn, void *arg);

/* Adds a dead letter. errors: the attempts' errors, oldest first. */
int journal_dead(journal_t *j, uint64_t seq, const kanal_msg_t *msg, const char *route,
		 const char *destination, const char *reason, int attempts, char *const *errors,
		 size_t n_errors);
/* Dead letters, newest first, filtered (NULL: any); since_ms 0: any. Returns a JSON array
 * of summaries. */
json_t *journal_dlq_list(journal_t *j, const char *route, const char *type, int64_t since_ms,
			 int limit);
/* One dead letter with its errors and event, or NULL when there is none. */
json_t *journal_dlq_show(journal_t *j, int64_t id);
/* Removes a dead letter, handing back what a replay needs. Returns 0 or KANAL_ENOTFOUND. */
int journal_dlq_take(journal_t *j, int64_t id, kanal_msg_t **msg, uint64_t *seq, char **route,
		     char **destination);
/* Ids of dead letters matching the filters, oldest first. */
json_t *journal_dlq_match(journal_t *j, const char *route, const char *type, int64_t since_ms);
int journal_dlq_drop(journal_t *j, int64_t id);
int64_t journal_dlq_count(journal_t *j);
/* Deletes the dead letters that died before before_ms (0: none by age), then the oldest
 * beyond the newest keep_max (0: no limit), in the turn's transaction. Returns how many
 * went, or KANAL_EIO. */
int64_t journal_dlq_purge(journal_t *j, int64_t before_ms, int64_t keep_max);

/* Deletes done events older than before_ms with their delivery rows; returns the count. */
int64_t journal_prune(journal_t *j, int64_t before_ms);
/* Counts of open events and of all event rows, for status. */
int64_t journal_open_count(journal_t *j);

/* Adds n to the count of measure for the label values `labels` (a JSON object's text, label
 * name to value, in the measure's label order) on `day` ("2026-03-01", kanald's local day),
 * in the turn's transaction: the count is as durable as the events it counts. Returns 0 or
 * KANAL_EIO. Ownership: borrows. */
int journal_measure_add(journal_t *j, const char *measure, const char *labels, const char *day,
			int64_t n);
/* The counts of measure per label values summed over the days from_day to to_day, both
 * included (NULL: no bound), ordered by label values: a JSON array of {"labels": {...},
 * "count": N}. Ownership: the array is new. */
json_t *journal_measure_sum(journal_t *j, const char *measure, const char *from_day,
			    const char *to_day);

/* ---- Blob references (docs/design/blobs.md): an accepted event's `kanalblob` URIs are
 * rows beside the event (journal_add_event, a replay too), a dead letter's beside the
 * letter (journal_dead); an event's rows go at the commit after it is done, a letter's when
 * it is dropped or taken. A blob that no row names any more is removed from the store after
 * that commit succeeds. */

/* The store to remove unnamed blobs from (borrowed; NULL: none). */
void journal_set_blob_store(journal_t *j, kanal__blob_store_t *store);
/* True when an open event or a dead letter names the blob uri (or the journal cannot say:
 * never remove on a guess). Ownership: borrows. */
bool journal_blob_named(journal_t *j, const char *uri);
/* The rows naming blobs: references held, for /metrics. */
int64_t journal_blob_references(journal_t *j);

#endif
