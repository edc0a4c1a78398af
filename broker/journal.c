/*
 * broker/journal.c — the SQLite journal (docs/design/journal.md).
 *
 * Statements are prepared once. Writes join the turn's transaction, opened by the first
 * write and committed by the router at the end of its turn, so a burst of events costs one
 * commit. A failed commit rolls back and says so: the router then acknowledges none of the
 * turn's events. Duplicate suppression looks in memory first (a ring of recent events with
 * a hash table over it, read back from the file after a start); done marks are rows of a
 * narrow `done` table. The file's schema version is checked at open. The measures' counts
 * (docs/design/measures.md) are rows per measure, label values and day, added to in the
 * same transaction as the events they count.
 *
 * Faults: the first error of a failing turn is kept in words ("disk full: …") for the
 * refusal the senders read; done marks of a turn that could not be committed are kept and
 * written with the next commit that works; and after a failure the next transaction first
 * proves that the disk takes a write of realistic size (JOURNAL_PROBE_BYTES) — an empty
 * commit succeeds even on a full disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "blob_store.h"
#include "checkpoint.h"
#include "host.h"
#include "journal.h"
#include "log.h"

/* SQLCipher's SQLite (3.15 in Debian 12) has no sqlite3_prepare_v3; the hint that a
 * statement lives long is all v3 adds here. */
#if SQLITE_VERSION_NUMBER >= 3020000
#define s_prepare_persistent(db, sql, st)                                                          \
	sqlite3_prepare_v3((db), (sql), -1, SQLITE_PREPARE_PERSISTENT, (st), NULL)
#else
#define s_prepare_persistent(db, sql, st) sqlite3_prepare_v2((db), (sql), -1, (st), NULL)
#endif

enum {
	ST_SEEN,
	ST_SEEN_SEQ,
	ST_ADD_EVENT,
	ST_DONE1,
	ST_DONE4,
	ST_DONE16,
	ST_DONE64,
	ST_DELIVERY,
	ST_OPEN_EVENTS,
	ST_OPEN_ROWS,
	ST_DEAD,
	ST_DLQ_GET,
	ST_DLQ_DROP,
	ST_PRUNE_ROWS,
	ST_PRUNE_EVENTS,
	ST_PRUNE_DONE,
	ST_COUNT_OPEN,
	ST_DLQ_COUNT,
	ST_UNPARK,
	ST_PARK,
	ST_PARKED,
	ST_COUNT_PARKED,
	ST_RECENT,
	ST_MEASURE_ADD,
	ST_MEASURE_SUM,
	ST_EVENT_BLOB,
	ST_LETTER_BLOB,
	ST_EVENT_BLOBS_DONE,
	ST_EVENT_BLOBS_DONE_DEL,
	ST_LETTER_BLOBS_DROP,
	ST_BLOB_NAMED,
	ST_LETTER_BLOBS,
	ST__N
};

/* Events marked done in a turn are written together, DONE_BATCH to a statement. */
#define DONE_BATCH 64

/* After a failure, the journal counts as writable again only once this much can be
 * written (and synced) beside it: more than a turn of events at the gateway's limits
 * writes, so that a disk with a few KiB free is not called writable. */
#ifndef JOURNAL_PROBE_BYTES
#define JOURNAL_PROBE_BYTES (1024 * 1024)
#endif

/* The schema this file writes (PRAGMA user_version). 1: done_at in the event row and an
 * index on (source, id); 2: a narrow done table, the duplicate window in memory. */
#define SCHEMA_VERSION 2

/* The duplicate window in memory holds at most this many events (~32 bytes each); beyond
 * it the oldest go and the (source, id) index takes over (docs/design/journal.md). */
#ifndef DUP_MAX
#define DUP_MAX (1u << 21)
#endif
/* Loading the window after a start reads back this much further than asked, for clocks
 * that stepped back a little. */
#define DUP_LOAD_SLACK_MS 60000

static const char *const s_sql[ST__N] = {
	[ST_SEEN] = "SELECT 1 FROM events WHERE source = ?1 AND id = ?2 AND accepted_at >= ?3 "
		    "LIMIT 1",
	[ST_SEEN_SEQ] = "SELECT 1 FROM events WHERE seq = ?1 AND source = ?2 AND id = ?3",
	[ST_ADD_EVENT] = "INSERT INTO events (source, id, type, body, accepted_at, target, "
			 "target_route, parked) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	/* ST_DONE4/16/64 are built in s_prepare_done. */
	[ST_DONE1] = "INSERT OR IGNORE INTO done (seq, done_at) VALUES (?2, ?1)",
	[ST_DELIVERY] =
		"INSERT OR REPLACE INTO deliveries (seq, route, destination, state, attempts, "
		"next_at, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[ST_OPEN_EVENTS] = "SELECT seq, body, target, target_route, parked FROM events e "
			   "WHERE NOT EXISTS (SELECT 1 FROM done d WHERE d.seq = e.seq) "
			   "ORDER BY seq",
	[ST_OPEN_ROWS] = "SELECT route, destination, state, attempts, next_at, last_error "
			 "FROM deliveries WHERE seq = ?1",
	[ST_DEAD] = "INSERT INTO dead_letters (seq, dead_at, route, destination, type, event_id, "
		    "source, reason, attempts, errors, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
		    "?8, ?9, ?10, ?11)",
	[ST_DLQ_GET] = "SELECT id, seq, dead_at, route, destination, type, event_id, source, "
		       "reason, attempts, errors, body FROM dead_letters WHERE id = ?1",
	[ST_DLQ_DROP] = "DELETE FROM dead_letters WHERE id = ?1",
	[ST_PRUNE_ROWS] = "DELETE FROM deliveries WHERE seq IN (SELECT seq FROM done WHERE "
			  "done_at < ?1)",
	[ST_PRUNE_EVENTS] = "DELETE FROM events WHERE seq IN (SELECT seq FROM done WHERE "
			    "done_at < ?1)",
	[ST_PRUNE_DONE] = "DELETE FROM done WHERE done_at < ?1",
	[ST_COUNT_OPEN] = "SELECT count(*) FROM events e WHERE NOT EXISTS "
			  "(SELECT 1 FROM done d WHERE d.seq = e.seq)",
	[ST_DLQ_COUNT] = "SELECT count(*) FROM dead_letters",
	[ST_UNPARK] = "UPDATE events SET parked = 0 WHERE seq = ?1",
	[ST_PARK] = "UPDATE events SET parked = 1 WHERE seq = ?1",
	[ST_PARKED] = "SELECT seq, body FROM events e WHERE parked = 1 AND seq > ?1 AND NOT "
		      "EXISTS (SELECT 1 FROM done d WHERE d.seq = e.seq) ORDER BY seq LIMIT ?2",
	[ST_COUNT_PARKED] = "SELECT count(*) FROM events e WHERE parked = 1 AND NOT EXISTS "
			    "(SELECT 1 FROM done d WHERE d.seq = e.seq)",
	[ST_RECENT] = "SELECT seq, source, id, accepted_at FROM events ORDER BY seq DESC",
	[ST_MEASURE_ADD] = "INSERT OR REPLACE INTO measure_counts (measure, labels, day, count) "
			   "VALUES (?1, ?2, ?3, ?4 + coalesce((SELECT count FROM measure_counts "
			   "WHERE measure = ?1 AND labels = ?2 AND day = ?3), 0))",
	[ST_MEASURE_SUM] = "SELECT labels, sum(count) FROM measure_counts WHERE measure = ?1 "
			   "AND day BETWEEN ?2 AND ?3 GROUP BY labels ORDER BY labels",
	/* Blob references (docs/design/blobs.md): a row per blob an open event or a dead
	 * letter names; a blob no row names is removed after the commit. */
	[ST_EVENT_BLOB] = "INSERT OR IGNORE INTO event_blobs (seq, uri) VALUES (?1, ?2)",
	[ST_LETTER_BLOB] = "INSERT OR IGNORE INTO letter_blobs (letter, uri) VALUES (?1, ?2)",
	[ST_EVENT_BLOBS_DONE] = "SELECT uri FROM event_blobs WHERE EXISTS (SELECT 1 FROM done d "
				"WHERE d.seq = event_blobs.seq)",
	[ST_EVENT_BLOBS_DONE_DEL] = "DELETE FROM event_blobs WHERE EXISTS (SELECT 1 FROM done d "
				    "WHERE d.seq = event_blobs.seq)",
	[ST_LETTER_BLOBS_DROP] = "DELETE FROM letter_blobs WHERE letter = ?1",
	[ST_BLOB_NAMED] = "SELECT EXISTS (SELECT 1 FROM event_blobs WHERE uri = ?1) OR "
			  "EXISTS (SELECT 1 FROM letter_blobs WHERE uri = ?1)",
	[ST_LETTER_BLOBS] = "SELECT uri FROM letter_blobs WHERE letter = ?1 ORDER BY uri",
};

static const char s_schema[] =
	"CREATE TABLE IF NOT EXISTS events ("
	"  seq INTEGER PRIMARY KEY, source TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL,"
	"  body BLOB NOT NULL, accepted_at INTEGER NOT NULL,"
	"  target TEXT, target_route TEXT, parked INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX IF NOT EXISTS events_parked ON events(seq) WHERE parked = 1;"
	"CREATE TABLE IF NOT EXISTS done ("
	"  seq INTEGER PRIMARY KEY, done_at INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS deliveries ("
	"  seq INTEGER NOT NULL, route TEXT NOT NULL, destination TEXT NOT NULL,"
	"  state INTEGER NOT NULL, attempts INTEGER NOT NULL, next_at INTEGER, last_error TEXT,"
	"  PRIMARY KEY (seq, route, destination)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS dead_letters ("
	"  id INTEGER PRIMARY KEY, seq INTEGER, dead_at INTEGER NOT NULL, route TEXT,"
	"  destination TEXT NOT NULL, type TEXT NOT NULL, event_id TEXT NOT NULL,"
	"  source TEXT NOT NULL, reason TEXT NOT NULL, attempts INTEGER NOT NULL,"
	"  errors TEXT NOT NULL, body BLOB NOT NULL);"
	/* Added to version 2 files as they are opened: an older kanald ignores it. */
	"CREATE TABLE IF NOT EXISTS measure_counts ("
	"  measure TEXT NOT NULL, labels TEXT NOT NULL, day TEXT NOT NULL,"
	"  count INTEGER NOT NULL, PRIMARY KEY (measure, labels, day)) WITHOUT ROWID;"
	/* Likewise: the blobs open events and dead letters name (docs/design/blobs.md). */
	"CREATE TABLE IF NOT EXISTS event_blobs ("
	"  seq INTEGER NOT NULL, uri TEXT NOT NULL, PRIMARY KEY (seq, uri)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS event_blobs_uri ON event_blobs(uri);"
	"CREATE TABLE IF NOT EXISTS letter_blobs ("
	"  letter INTEGER NOT NULL, uri TEXT NOT NULL, PRIMARY KEY (letter, uri)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS letter_blobs_uri ON letter_blobs(uri);"
	"PRAGMA user_version = 2;"; /* SCHEMA_VERSION */

/* One event of the duplicate window: a fingerprint of (source, id), its journal number (to
 * confirm a match against the row) and when it was accepted. */
typedef struct dup_ent {
	uint64_t fp;
	uint64_t seq;
	int64_t at;
} dup_ent_t;

/* The duplicate window: the events accepted since `cover_from`, oldest first, in a ring,
 * with an open-addressing table (linear probing) keyed by fingerprint.
 * Not loaded until the first lookup after a start (it needs the window's length). */
typedef struct dupwin {
	dup_ent_t *ring;
	size_t cap;          /* ring places, a power of two */
	uint64_t head, tail; /* absolute positions: the ring holds [head, tail) */
	uint64_t *slots;     /* 2 × cap: high half of the fingerprint << 32 | ring place + 1 */
	bool loaded;
	bool index_mode; /* the (source, id) index exists: a miss older than cover_from asks it */
	int64_t cover_from; /* every event accepted at or after this is in the ring */
} dupwin_t;

struct journal {
	sqlite3 *db;
	sqlite3_stmt *st[ST__N];
	bool in_txn;
	bool txn_lost; /* SQLite rolled the open transaction back by itself (a full disk) */
	bool broken;   /* the last transaction failed: probe before the next one */
	uint64_t txn_first_seq; /* the first event added in the open transaction, 0: none */
	/* Done marks not yet committed, oldest first: [0, n_flushed) are written in the open
	 * transaction. They outlive a failed commit and go with the next one that works. */
	uint64_t *done;
	size_t n_done, n_flushed, cap_done;
	char last_error[300]; /* the first error of the last transaction (or attempt), or "" */
	dupwin_t dup;
	int64_t n_open; /* open events as this connection sees them; -1: not counted yet */
	bool faulted;   /* the last failure was injected */
	char *path;
	char *fault_path;           /* KANAL_FAULT_JOURNAL: while this file exists, writes fail */
	kanal__blob_store_t *blobs; /* borrowed: where unnamed blobs are removed; NULL: none */
	bool event_blobs; /* event_blobs may have rows: done events' rows go at the commit */
	/* Blobs whose last row the open transaction deleted: removed once it commits. */
	char **unnamed;
	size_t n_unnamed, cap_unnamed;
	journal_ckpt_t *ckpt; /* checkpoints off the router thread (broker/checkpoint.c) */
};

/* Keeps the cause of a failure in words, unless one is kept already: the first error of a
 * failing turn is the cause; later ones ("cannot rollback - no transaction is active") are
 * consequences. A full disk is called so, whichever way SQLite reports it. */
static void s_note_error(journal_t *j, const char *what, int sys_errno)
{
	int code = sqlite3_extended_errcode(j->db);

	if (j->last_error[0])
		return;
	if (!what)
		what = sqlite3_errmsg(j->db);
	if ((code & 0xff) == SQLITE_FULL || sys_errno == ENOSPC || sys_errno == EDQUOT)
		snprintf(j->last_error, sizeof j->last_error, "disk full: %s%s%s%s", what,
			 sys_errno ? " (" : "", sys_errno ? strerror(sys_errno) : "",
			 sys_errno ? ")" : "");
	else if (sys_errno)
		snprintf(j->last_error, sizeof j->last_error, "%s (%s)", what, strerror(sys_errno));
	else
		snprintf(j->last_error, sizeof j->last_error, "%s", what);
}

/* Fault injection for tests of disk failures: when the environment names a file and that
 * file exists, every transaction fails as a full disk would — at its start, or, when the
 * file's text begins with "commit", only at its commit (after the turn's events were added,
 * as when the disk fills up under the WAL). Off unless asked for. */
static bool s_fault(journal_t *j, bool at_commit)
{
	j->faulted = j->fault_path && access(j->fault_path, F_OK) == 0;
	if (j->faulted && !at_commit) {
		char text[8] = "";
		FILE *f = fopen(j->fault_path, "r");
		if (f) {
			if (!fgets(text, sizeof text, f))
				text[0] = '\0';
			fclose(f);
		}
		if (!strncmp(text, "commit", 6))
			j->faulted = false;
	}
	if (j->faulted && !j->last_error[0])
		snprintf(j->last_error, sizeof j->last_error,
			 "disk full: database or disk is full (injected by KANAL_FAULT_JOURNAL)");
	return j->faulted;
}

void journal_checkpoints(journal_t *j, journal_ckpt_stats_t *out)
{
	journal_ckpt_stats(j ? j->ckpt : NULL, out);
}

const char *journal_path(const journal_t *j)
{
	return j->path;
}

const char *journal_error(const journal_t *j)
{
	if (j->last_error[0])
		return j->last_error;
	return sqlite3_errmsg(j->db);
}

/* Reads one integer from a query (a pragma, a count); -1 when it returns nothing. */
static int64_t s_query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* Refuses a journal written with another schema: a file with an events table and a
 * user_version other than SCHEMA_VERSION. A new, empty file is fine. */
static int s_check_schema(journal_t *j, char *err, size_t err_size)
{
	int64_t version = s_query_int(j->db, "PRAGMA user_version");
	int64_t tables = s_query_int(j->db, "SELECT count(*) FROM sqlite_master WHERE "
					    "type = 'table' AND name = 'events'");

	if (tables <= 0 || version == SCHEMA_VERSION)
		return 0;
	snprintf(err, err_size,
		 "the journal %s has schema version %lld and this kanald needs version %d; "
		 "there is no conversion: stop kanald, move %s away (keep it while it may hold "
		 "undelivered events, read it with the sqlite3 tool) and start kanald again, "
		 "which creates a new journal",
		 j->path, (long long)version, SCHEMA_VERSION, j->path);
	return KANAL_EINVAL;
}

/* Prepares the batched done inserts: VALUES (?2, ?1), (?3, ?1) ... for n marks. */
static int s_prepare_done(journal_t *j, int which, int n)
{
	char sql[1200];
	size_t len = (size_t)snprintf(sql, sizeof sql,
				      "INSERT OR IGNORE INTO done (seq, done_at) VALUES ");

	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(sql + len, sizeof sql - len, "%s(?%d, ?1)", i ? ", " : "",
					i + 2);
	return s_prepare_persistent(j->db, sql, &j->st[which]) == SQLITE_OK ? 0 : KANAL_EIO;
}

/* Makes one existing file private (0600) when others may read it: an older kanald, or a
 * journal.path outside the 0700 state_dir under umask 022, may have left it 0644. */
static void s_tighten(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;

	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077)) {
		if (fchmod(fd, 0600) == 0)
			log_warn("journal", "%s could be read by others (mode %04o): made it 0600",
				 path, (unsigned)(st.st_mode & 07777));
		else
			log_warn("journal",
				 "%s can be read by others (mode %04o) and cannot be "
				 "made private: %s",
				 path, (unsigned)(st.st_mode & 07777), strerror(errno));
	}
	close(fd);
}

/* Creates a missing journal file with mode 0600 before SQLite opens it: it holds the
 * events' data, and SQLite gives the -wal file the database file's mode. An existing
 * journal, -wal or -shm that others may read is made private; a failure to create is
 * left for sqlite3_open to report. */
static void s_create_private(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	char side[4096];

	if (fd >= 0)
		close(fd);
	s_tighten(path);
	snprintf(side, sizeof side, "%s-wal", path);
	s_tighten(side);
	snprintf(side, sizeof side, "%s-shm", path);
	s_tighten(side);
}

/* ---- blob references --------------------------------------------------------------------- */

static int s_step_write(journal_t *j, sqlite3_stmt *st);
static void s_bind_text(sqlite3_stmt *st, int i, const char *text);

/* After a write statement failed, before its reset (which may replace the error with
 * another): keeps why, and notes when SQLite rolled the whole transaction back by itself
 * (a full disk) — what follows in the turn would then be written outside one, so it must
 * fail too. */
static void s_step_failed(journal_t *j)
{
	s_note_error(j, NULL, sqlite3_system_errno(j->db));
	if (j->in_txn && sqlite3_get_autocommit(j->db))
		j->txn_lost = true;
}

static void s_unnamed_clear(journal_t *j)
{
	for (size_t i = 0; i < j->n_unnamed; i++)
		free(j->unnamed[i]);
	j->n_unnamed = 0;
}

typedef struct s_blob_rows {
	journal_t *j;
	int which; /* ST_EVENT_BLOB or ST_LETTER_BLOB */
	int64_t key;
	int rc;
} s_blob_rows_t;

static void s_blob_row(void *arg, const char *uri)
{
	s_blob_rows_t *br = arg;
	sqlite3_stmt *st = br->j->st[br->which];

	if (br->rc < 0)
		return;
	sqlite3_bind_int64(st, 1, br->key);
	s_bind_text(st, 2, uri);
	br->rc = s_step_write(br->j, st);
}

/* Writes a row naming each blob of msg's kanalblob attribute under key (an event's seq or
 * a dead letter's id). Events without the attribute cost one lookup. */
static int s_blob_rows(journal_t *j, int which, int64_t key, const kanal_msg_t *msg)
{
	s_blob_rows_t br = { j, which, key, 0 };
	const char *attr = kanal_msg_attr(msg, KANAL_BLOB_ATTRIBUTE);

	if (!attr)
		return 0;
	if (kanal__blob_each_uri(attr, s_blob_row, &br) > 0 && which == ST_EVENT_BLOB)
		j->event_blobs = true;
	return br.rc;
}

static bool s_blob_named(journal_t *j, const char *uri)
{
	sqlite3_stmt *st = j->st[ST_BLOB_NAMED];
	bool named;

	s_bind_text(st, 1, uri);
	/* An error reads as "named": a blob is never removed on a guess. */
	named = sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int(st, 0) != 0;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return named;
}

/* Runs `sel` (SELECT uri …) and then `del` (the DELETE of the same rows, bound alike) — a
 * DELETE … RETURNING, which SQLCipher's older SQLite lacks — and keeps each selected blob
 * that no row names any more, to be removed after the commit. Returns 0 or KANAL_EIO. */
static int s_blob_rows_gone(journal_t *j, sqlite3_stmt *sel, sqlite3_stmt *del)
{
	sqlite3_stmt *st = sel;
	char **found = NULL;
	size_t n = 0, cap = 0;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *uri = (const char *)sqlite3_column_text(st, 0);
		if (n == cap) {
			char **more = realloc(found, (cap = cap ? 2 * cap : 8) * sizeof *more);
			if (!more)
				break;
			found = more;
		}
		if (uri && (found[n] = strdup(uri)))
			n++;
	}
	if (rc != SQLITE_DONE)
		s_step_failed(j);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc == SQLITE_DONE && (rc = sqlite3_step(del)) != SQLITE_DONE)
		s_step_failed(j);
	sqlite3_reset(del);
	sqlite3_clear_bindings(del);
	/* Checked after the statement finished: one blob named twice by the deleted rows,
	 * or named again by an event of this turn, is kept or removed once. */
	for (size_t i = 0; i < n; i++) {
		bool keep = s_blob_named(j, found[i]);
		for (size_t k = 0; !keep && k < j->n_unnamed; k++)
			keep = strcmp(j->unnamed[k], found[i]) == 0;
		if (!keep && j->n_unnamed == j->cap_unnamed) {
			size_t c = j->cap_unnamed ? 2 * j->cap_unnamed : 8;
			char **more = realloc(j->unnamed, c * sizeof *more);
			keep = !more; /* out of memory: the sweep removes it later */
			if (more) {
				j->unnamed = more;
				j->cap_unnamed = c;
			}
		}
		if (keep)
			free(found[i]);
		else
			j->unnamed[j->n_unnamed++] = found[i];
	}
	free(found);
	return rc == SQLITE_DONE ? 0 : KANAL_EIO;
}

/* At the commit: the rows of the events marked done in this transaction go. Costs nothing
 * while no open event names a blob or no event was done. */
static int s_done_blob_rows(journal_t *j)
{
	int rc;

	if (!j->event_blobs || j->n_flushed == 0)
		return 0;
	rc = s_blob_rows_gone(j, j->st[ST_EVENT_BLOBS_DONE], j->st[ST_EVENT_BLOBS_DONE_DEL]);
	if (rc == 0)
		j->event_blobs =
			s_query_int(j->db, "SELECT EXISTS (SELECT 1 FROM event_blobs)") != 0;
	return rc;
}

/* After a commit: the blobs no row names any more are removed from the store. */
static void s_remove_unnamed(journal_t *j)
{
	for (size_t i = 0; i < j->n_unnamed; i++)
		if (j->blobs)
			kanal__blob_remove(j->blobs, j->unnamed[i]);
	s_unnamed_clear(j);
}

void journal_set_blob_store(journal_t *j, kanal__blob_store_t *store)
{
	j->blobs = store;
}

bool journal_blob_named(journal_t *j, const char *uri)
{
	return s_blob_named(j, uri);
}

int64_t journal_blob_references(journal_t *j)
{
	return s_query_int(j->db, "SELECT (SELECT count(*) FROM event_blobs) + "
				  "(SELECT count(*) FROM letter_blobs)");
}

/* ---- encryption at rest (SQLCipher; docs/design/journal-encryption.md) ------------------- */

bool journal_can_encrypt(void)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	bool yes = false;

	/* Plain SQLite ignores an unknown pragma and returns no row; SQLCipher names itself. */
	if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "PRAGMA cipher_version", -1, &st, NULL) == SQLITE_OK)
		yes = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	sqlite3_close(db);
	return yes;
}

int journal_read_key(const char *key_file, char *key, size_t size, char *err, size_t err_size)
{
	struct stat st;
	ssize_t n;
	size_t len;
	int fd = open(key_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0) {
		snprintf(err, err_size, "cannot read the journal's key file %s: %s", key_file,
			 strerror(errno));
		return KANAL_EIO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, err_size, "the journal's key file %s is not a regular file",
			 key_file);
		close(fd);
		return KANAL_EINVAL;
	}
	if (st.st_mode & 077) {
		snprintf(err, err_size,
			 "the journal's key file %s may be read by others (mode %04o): make it "
			 "private with chmod 600 %s",
			 key_file, (unsigned)(st.st_mode & 07777), key_file);
		close(fd);
		return KANAL_EINVAL;
	}
	do {
		n = read(fd, key, size - 1);
	} while (n < 0 && errno == EINTR);
	close(fd);
	if (n < 0) {
		snprintf(err, err_size, "cannot read the journal's key file %s: %s", key_file,
			 strerror(errno));
		return KANAL_EIO;
	}
	len = (size_t)n;
	while (len && (key[len - 1] == '\n' || key[len - 1] == '\r' || key[len - 1] == ' ' ||
		       key[len - 1] == '\t'))
		len--;
	key[len] = '\0';
	if (len == 0 || (size_t)n == size - 1 || strchr(key, '\n') || strlen(key) != len) {
		memset(key, 0, size);
		snprintf(err, err_size,
			 "the journal's key file %s must hold one line: 64 hex digits (a 256-bit "
			 "key, e.g. from `openssl rand -hex 32`) or a passphrase",
			 key_file);
		return KANAL_EINVAL;
	}
	return 0;
}

/* Gives SQLCipher the key (it must be the connection's first statement): 64 hex digits
 * are the raw key, anything else a passphrase it derives one from. The texts are wiped. */
static int s_set_key(sqlite3 *db, const char *key_file, char *err, size_t err_size)
{
	char key[1024], sql[2200];
	size_t len, at = 0;
	int rc;

	if (!journal_can_encrypt()) {
		snprintf(err, err_size,
			 "journal.key_file is set but this kanald was built without SQLCipher "
			 "(Debian libsqlcipher-dev): it cannot encrypt the journal");
		return KANAL_ECONFIG;
	}
	if ((rc = journal_read_key(key_file, key, sizeof key, err, err_size)) != 0)
		return rc;
	len = strlen(key);
	if (len == 64 && strspn(key, "0123456789abcdefABCDEF") == 64) {
		at = (size_t)snprintf(sql, sizeof sql, "PRAGMA key = \"x'%s'\"", key);
	} else {
		/* A passphrase, quoted as an SQL string: each ' doubled. */
		at = (size_t)snprintf(sql, sizeof sql, "PRAGMA key = '");
		for (size_t i = 0; i < len; i++) {
			if (key[i] == '\'')
				sql[at++] = '\'';
			sql[at++] = key[i];
		}
		sql[at++] = '\'';
		sql[at] = '\0';
	}
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	memset(key, 0, sizeof key);
	memset(sql, 0, sizeof sql);
	/* SQLCipher 3 pages are 1 KiB unless told: 4 KiB, SQLite's own default, encrypts and
	 * authenticates a quarter as many pages for the same rows. Every open says the same,
	 * as a file is read only with the page size it was written with. */
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "PRAGMA cipher_page_size = 4096", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, err_size, "cannot set the journal's key: %s", sqlite3_errmsg(db));
		return KANAL_EIO;
	}
	return 0;
}

/* The first read of the file: with a wrong key (or a key for a journal written without
 * one, or none for an encrypted journal) SQLite says "file is not a database"; this says
 * which of them it may be. */
static int s_check_readable(journal_t *j, const char *key_file, char *err, size_t err_size)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(j->db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_step(st) == SQLITE_ROW ? SQLITE_OK : sqlite3_errcode(j->db);
	sqlite3_finalize(st);
	if (rc == SQLITE_OK)
		return 0;
	if (rc != SQLITE_NOTADB) {
		snprintf(err, err_size, "cannot read the journal %s: %s", j->path,
			 sqlite3_errmsg(j->db));
		return KANAL_EIO;
	}
	if (key_file)
		snprintf(err, err_size,
			 "cannot read the journal %s with the key in %s (%s): the key is wrong, or "
			 "the journal was written without one (an unencrypted journal is not "
			 "converted: move it away once it holds nothing undelivered)",
			 j->path, key_file, sqlite3_errmsg(j->db));
	else
		snprintf(err, err_size,
			 "cannot read the journal %s (%s): it is encrypted (give its key with "
			 "journal.key_file) or it is not a kanal journal",
			 j->path, sqlite3_errmsg(j->db));
	return KANAL_ECONFIG;
}

/* How the checkpoint thread's connection is set up: the key first (SQLCipher wants it as a
 * connection's first statement), then the same sync level (a checkpoint's syncs follow
 * it). */
typedef struct ckpt_setup {
	bool sync_power;
	const char *key_file; /* NULL: not encrypted */
} ckpt_setup_t;

static int s_setup_ckpt(sqlite3 *db, void *arg)
{
	const ckpt_setup_t *cs = arg;
	char err[300];

	if (cs->key_file && s_set_key(db, cs->key_file, err, sizeof err) < 0)
		return KANAL_EIO;
	return sqlite3_exec(db,
			    cs->sync_power ? "PRAGMA synchronous = FULL;"
					   : "PRAGMA synchronous = NORMAL;",
			    NULL, NULL, NULL) == SQLITE_OK
		       ? 0
		       : KANAL_EIO;
}

journal_t *journal_open(const char *path, bool sync_power, char *err, size_t err_size)
{
	return journal_open_keyed(path, sync_power, NULL, err, err_size);
}

journal_t *journal_open_keyed(const char *path, bool sync_power, const char *key_file, char *err,
			      size_t err_size)
{
	journal_t *j = calloc(1, sizeof *j);
	char *msg = NULL;
	char pragmas[300];
	ckpt_setup_t setup;

	if (j && getenv("KANAL_FAULT_JOURNAL"))
		j->fault_path = strdup(getenv("KANAL_FAULT_JOURNAL"));
	if (!j || !(j->path = strdup(path))) {
		free(j);
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	j->n_open = -1;
	s_create_private(path);
	if (sqlite3_open_v2(path, &j->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, err_size, "cannot open the journal %s: %s", path,
			 j->db ? sqlite3_errmsg(j->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(j->db, 5000);
	if (key_file && s_set_key(j->db, key_file, err, err_size) < 0)
		goto fail;
	if (s_check_readable(j, key_file, err, err_size) < 0 ||
	    s_check_schema(j, err, err_size) < 0)
		goto fail;
	/* A page cache of 16 MiB: the pages a turn appends to and the done table's last pages
	 * stay in memory between turns instead of being read back from the WAL. */
	/* No exclusive locking: the checkpoint thread has a connection of its own. The WAL
	 * file is cut back to 16 MiB when it starts over after a flood. */
	snprintf(pragmas, sizeof pragmas,
		 "PRAGMA journal_mode = WAL;"
		 " PRAGMA synchronous = %s; PRAGMA foreign_keys = OFF;"
		 " PRAGMA cache_size = -16384; PRAGMA journal_size_limit = 16777216;",
		 sync_power ? "FULL" : "NORMAL");
	if (sqlite3_exec(j->db, pragmas, NULL, NULL, &msg) != SQLITE_OK ||
	    sqlite3_exec(j->db, s_schema, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, err_size, "cannot set up the journal %s: %s", path,
			 msg ? msg : sqlite3_errmsg(j->db));
		sqlite3_free(msg);
		goto fail;
	}
	for (int i = 0; i < ST__N; i++) {
		int rc;

		if (i == ST_DONE4 || i == ST_DONE16 || i == ST_DONE64)
			rc = s_prepare_done(j, i, i == ST_DONE4 ? 4 : i == ST_DONE16 ? 16 : 64);
		else
			rc = s_prepare_persistent(j->db, s_sql[i], &j->st[i]) == SQLITE_OK
				     ? 0
				     : KANAL_EIO;
		if (rc < 0) {
			snprintf(err, err_size, "cannot prepare the journal's statements (%s): %s",
				 path, sqlite3_errmsg(j->db));
			goto fail;
		}
	}
	j->dup.index_mode = s_query_int(j->db, "SELECT count(*) FROM sqlite_master WHERE "
					       "type = 'index' AND name = 'events_source_id'") > 0;
	j->event_blobs = s_query_int(j->db, "SELECT EXISTS (SELECT 1 FROM event_blobs)") != 0;
	setup = (ckpt_setup_t){ sync_power, key_file };
	if (!(j->ckpt = journal_ckpt_start(j->db, path, s_setup_ckpt, &setup, err, err_size)))
		goto fail;
	return j;
fail:
	journal_close(&j);
	return NULL;
}

static void s_dup_reset(journal_t *j);

void journal_close(journal_t **j_p)
{
	journal_t *j = j_p ? *j_p : NULL;

	if (!j)
		return;
	/* Done marks a failed turn left behind get one more chance. */
	if (j->in_txn || (j->n_done && journal_begin(j) == 0))
		journal_commit(j);
	journal_ckpt_stop(&j->ckpt);
	for (int i = 0; i < ST__N; i++)
		sqlite3_finalize(j->st[i]);
	sqlite3_close(j->db);
	s_dup_reset(j);
	free(j->done);
	s_unnamed_clear(j);
	free(j->unnamed);
	free(j->path);
	free(j->fault_path);
	free(j);
	*j_p = NULL;
}

static int64_t s_count(journal_t *j, int which);
static int s_flush_done(journal_t *j);

static int64_t s_now_ms(void)
{
	return kanal__wall_ms();
}

/* Whether the disk takes a write of realistic size again: writes and syncs
 * JOURNAL_PROBE_BYTES to a scratch file beside the journal, then removes it. An empty
 * commit proves nothing (it succeeds with 0 bytes free), and a row written in a transaction
 * that is rolled back never leaves SQLite's page cache. Returns 0, or KANAL_EIO with the
 * cause kept. */
static int s_probe(journal_t *j)
{
	static const char zeros[65536];
	char path[4096];
	size_t left = JOURNAL_PROBE_BYTES;
	int fd, err = 0;

	snprintf(path, sizeof path, "%s-probe", j->path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		err = errno;
	while (fd >= 0 && left > 0 && !err) {
		ssize_t w = write(fd, zeros, left < sizeof zeros ? left : sizeof zeros);
		if (w < 0 && errno != EINTR)
			err = errno;
		else if (w > 0)
			left -= (size_t)w;
	}
	if (fd >= 0 && !err && fdatasync(fd) < 0)
		err = errno;
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	if (err) {
		char what[80];
		snprintf(what, sizeof what, "cannot write %d KiB beside the journal",
			 JOURNAL_PROBE_BYTES / 1024);
		s_note_error(j, what, err);
		return KANAL_EIO;
	}
	return 0;
}

int journal_begin(journal_t *j)
{
	if (j->in_txn)
		return j->txn_lost ? KANAL_EIO : 0;
	/* A new attempt: its own first error will be the cause. */
	j->last_error[0] = '\0';
	if (s_fault(j, false) || (j->broken && s_probe(j) < 0))
		return KANAL_EIO;
	if (sqlite3_exec(j->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		s_note_error(j, NULL, sqlite3_system_errno(j->db));
		j->broken = true;
		return KANAL_EIO;
	}
	j->in_txn = true;
	j->txn_lost = false;
	j->txn_first_seq = 0;
	return 0;
}

/* After a failed commit: the done marks of events that the rolled-back transaction added
 * go with them (their numbers will be given to new events); the others are kept for the
 * next commit. */
static void s_keep_done_marks(journal_t *j)
{
	size_t kept = 0;

	for (size_t i = 0; i < j->n_done; i++)
		if (!j->txn_first_seq || j->done[i] < j->txn_first_seq)
			j->done[kept++] = j->done[i];
	j->n_done = kept;
	j->n_flushed = 0;
}

int journal_commit(journal_t *j)
{
	int done_rc;

	if (!j->in_txn)
		return 0;
	done_rc = j->txn_lost ? KANAL_EIO : s_flush_done(j);
	if (done_rc == 0)
		done_rc = s_done_blob_rows(j);
	j->in_txn = false;
	if (done_rc < 0 || s_fault(j, true) ||
	    sqlite3_exec(j->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		s_note_error(j, NULL, sqlite3_system_errno(j->db));
		log_error("journal", "commit failed: %s", journal_error(j));
		if (!sqlite3_get_autocommit(j->db))
			sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
		/* What memory says about the turn is undone with it: the duplicate window is
		 * read back from the file at the next lookup, the open count recounted. */
		s_dup_reset(j);
		j->n_open = -1;
		s_keep_done_marks(j);
		/* The deleted rows are back: their blobs stay. */
		s_unnamed_clear(j);
		j->event_blobs = true;
		j->txn_lost = false;
		j->broken = true;
		return KANAL_EIO;
	}
	j->n_done = j->n_flushed = 0;
	s_remove_unnamed(j);
	j->broken = false;
	j->last_error[0] = '\0';
	return 0;
}

bool journal_dirty(const journal_t *j)
{
	return j->in_txn;
}

/* Runs a prepared write statement to completion and resets it. */
static int s_step_write(journal_t *j, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE)
		s_step_failed(j);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		log_error("journal", "write failed: %s", journal_error(j));
		return KANAL_EIO;
	}
	return 0;
}

static void s_bind_text(sqlite3_stmt *st, int i, const char *text)
{
	if (text)
		sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

/* ---- the duplicate window ------------------------------------------------------------ */

/* A 64-bit fingerprint of (source, id): FNV-1a over both with a separator, then a final mix
 * so that the low bits (the table's place) depend on every byte. */
static uint64_t s_fp(const char *source, const char *id)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const unsigned char *p = (const unsigned char *)(source ? source : ""); *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	h = (h ^ 0xff) * 0x100000001b3ULL;
	for (const unsigned char *p = (const unsigned char *)(id ? id : ""); *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	h ^= h >> 31;
	h *= 0x7fb5d329728ea185ULL;
	h ^= h >> 27;
	h *= 0x81dadef4bc2dd44dULL;
	h ^= h >> 33;
	return h;
}

/* The window's ring and table: zeroed pages from mmap, as transparent huge pages where
 * the system allows. The lookup is one random load in a table of up to 32 MiB (a cache
 * miss per event); with 4 KiB pages it was a TLB miss and a page walk as well. */
static void *s_dup_mem(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
#ifdef MADV_HUGEPAGE
	madvise(p, size, MADV_HUGEPAGE); /* a hint: without it, 4 KiB pages */
#endif
	return p;
}

static void s_dup_unmem(void *p, size_t size)
{
	if (p)
		munmap(p, size);
}

static void s_dup_reset(journal_t *j)
{
	s_dup_unmem(j->dup.ring, j->dup.cap * sizeof *j->dup.ring);
	s_dup_unmem(j->dup.slots, 2 * j->dup.cap * sizeof *j->dup.slots);
	j->dup.ring = NULL;
	j->dup.slots = NULL;
	j->dup.cap = 0;
	j->dup.head = j->dup.tail = 0;
	j->dup.loaded = false;
}

static void s_dup_slot_add(dupwin_t *d, uint32_t place)
{
	size_t mask = 2 * d->cap - 1, i = d->ring[place].fp & mask;

	while (d->slots[i])
		i = (i + 1) & mask;
	d->slots[i] = (d->ring[place].fp >> 32 << 32) | (place + 1);
}

/* Removes ring place `place` from the table: finds its slot, then shifts the entries after
 * it back so that no probe sequence is broken (deletion without tombstones). */
static void s_dup_slot_remove(dupwin_t *d, uint32_t place)
{
	size_t mask = 2 * d->cap - 1, i = d->ring[place].fp & mask, k;

	while (d->slots[i] && (uint32_t)d->slots[i] != place + 1)
		i = (i + 1) & mask;
	if (!d->slots[i])
		return;
	d->slots[i] = 0;
	for (k = (i + 1) & mask; d->slots[k]; k = (k + 1) & mask) {
		size_t home = d->ring[(uint32_t)d->slots[k] - 1].fp & mask;
		/* The entry at k may move to i when i lies cyclically in [home, k). */
		if (((k - home) & mask) >= ((k - i) & mask)) {
			d->slots[i] = d->slots[k];
			d->slots[k] = 0;
			i = k;
		}
	}
}

/* Doubles the ring (up to DUP_MAX), keeping the order, and rebuilds the table. */
static int s_dup_grow(dupwin_t *d)
{
	size_t cap = d->cap ? 2 * d->cap : 4096, n = (size_t)(d->tail - d->head);
	dup_ent_t *ring = s_dup_mem(cap * sizeof *ring);
	uint64_t *slots = s_dup_mem(2 * cap * sizeof *slots);

	if (!ring || !slots) {
		s_dup_unmem(ring, cap * sizeof *ring);
		s_dup_unmem(slots, 2 * cap * sizeof *slots);
		return KANAL_ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		ring[i] = d->ring[(d->head + i) & (d->cap - 1)];
	s_dup_unmem(d->ring, d->cap * sizeof *d->ring);
	s_dup_unmem(d->slots, 2 * d->cap * sizeof *d->slots);
	d->ring = ring;
	d->slots = slots;
	d->cap = cap;
	d->head = 0;
	d->tail = n;
	for (size_t i = 0; i < n; i++)
		s_dup_slot_add(d, (uint32_t)i);
	return 0;
}

/* The window no longer holds every event of the last dedupe_window: from now on a miss
 * older than cover_from asks the (source, id) index, created here once (it then stays,
 * and is kept up to date by SQLite). */
static void s_dup_need_index(journal_t *j)
{
	if (j->dup.index_mode)
		return;
	log_warn("journal",
		 "%s: more than %u events within the duplicate window; creating the "
		 "(source, id) index so that older duplicates are still found",
		 j->path, (unsigned)DUP_MAX);
	if (sqlite3_exec(j->db, "CREATE INDEX IF NOT EXISTS events_source_id ON events(source, id)",
			 NULL, NULL, NULL) != SQLITE_OK)
		log_error("journal", "cannot create the (source, id) index in %s: %s", j->path,
			  sqlite3_errmsg(j->db));
	else
		j->dup.index_mode = true;
}

static void s_dup_pop_head(dupwin_t *d)
{
	uint32_t place = (uint32_t)(d->head & (d->cap - 1));

	s_dup_slot_remove(d, place);
	d->head++;
}

/* Appends an accepted event to the window. */
static void s_dup_push(journal_t *j, uint64_t fp, uint64_t seq, int64_t at)
{
	dupwin_t *d = &j->dup;
	uint32_t place;

	if (d->tail - d->head == d->cap) {
		if (d->cap >= DUP_MAX || s_dup_grow(d) < 0) {
			if (!d->cap)
				return;
			/* Full: the oldest leaves, and the window covers less than asked. */
			int64_t gone = d->ring[d->head & (d->cap - 1)].at;
			if (gone + 1 > d->cover_from)
				d->cover_from = gone + 1;
			s_dup_pop_head(d);
			s_dup_need_index(j);
		}
	}
	place = (uint32_t)(d->tail & (d->cap - 1));
	d->ring[place] = (dup_ent_t){ fp, seq, at };
	d->tail++;
	s_dup_slot_add(d, place);
}

/* Reads the window back from the file after a start (or a rolled-back turn): the events
 * accepted since since_ms, newest first until one is older than since_ms minus a slack. */
static void s_dup_load(journal_t *j, int64_t since_ms)
{
	sqlite3_stmt *st = j->st[ST_RECENT];
	dup_ent_t *found = NULL;
	size_t n = 0, size = 0;
	bool cut = false;

	s_dup_reset(j);
	j->dup.loaded = true;
	j->dup.cover_from = since_ms - DUP_LOAD_SLACK_MS;
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t at = sqlite3_column_int64(st, 3);

		if (at < j->dup.cover_from)
			break;
		if (n == DUP_MAX) {
			cut = true;
			j->dup.cover_from = found[n - 1].at + 1;
			break;
		}
		if (n == size) {
			size_t bigger = size ? 2 * size : 1024;
			dup_ent_t *more = realloc(found, bigger * sizeof *more);
			if (!more)
				break;
			found = more;
			size = bigger;
		}
		found[n].seq = (uint64_t)sqlite3_column_int64(st, 0);
		found[n].fp = s_fp((const char *)sqlite3_column_text(st, 1),
				   (const char *)sqlite3_column_text(st, 2));
		found[n].at = at;
		n++;
	}
	sqlite3_reset(st);
	for (size_t i = n; i > 0; i--)
		s_dup_push(j, found[i - 1].fp, found[i - 1].seq, found[i - 1].at);
	free(found);
	if (cut)
		s_dup_need_index(j);
}

bool journal_seen(journal_t *j, const char *source, const char *id, int64_t since_ms)
{
	dupwin_t *d = &j->dup;
	uint64_t fp = s_fp(source, id);
	sqlite3_stmt *st;
	bool seen;

	if (!d->loaded)
		s_dup_load(j, since_ms);
	/* Events older than the window leave it. */
	while (d->tail > d->head && d->ring[d->head & (d->cap - 1)].at < since_ms) {
		if (d->ring[d->head & (d->cap - 1)].at + 1 > d->cover_from)
			d->cover_from = d->ring[d->head & (d->cap - 1)].at + 1;
		s_dup_pop_head(d);
	}
	if (d->cap) {
		size_t mask = 2 * d->cap - 1;

		for (size_t i = fp & mask; d->slots[i]; i = (i + 1) & mask) {
			const dup_ent_t *e;

			if (d->slots[i] >> 32 != fp >> 32)
				continue;
			e = &d->ring[(uint32_t)d->slots[i] - 1];
			if (e->fp != fp || e->at < since_ms)
				continue;
			/* Same fingerprint: the row says whether it is the same event. */
			st = j->st[ST_SEEN_SEQ];
			sqlite3_bind_int64(st, 1, (sqlite3_int64)e->seq);
			s_bind_text(st, 2, source);
			s_bind_text(st, 3, id);
			seen = sqlite3_step(st) == SQLITE_ROW;
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			if (seen)
				return true;
		}
	}
	if (since_ms >= d->cover_from || !d->index_mode)
		return false;
	/* Older than what memory holds: the index knows. */
	st = j->st[ST_SEEN];
	s_bind_text(st, 1, source);
	s_bind_text(st, 2, id);
	sqlite3_bind_int64(st, 3, since_ms);
	seen = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return seen;
}

static int s_add_event(journal_t *j, const kanal_msg_t *msg, const char *target,
		       const char *target_route, bool parked, uint64_t *seq)
{
	sqlite3_stmt *st = j->st[ST_ADD_EVENT];
	int64_t accepted_at = s_now_ms();
	size_t len;
	char *body;
	int rc;

	if (journal_begin(j) < 0)
		return KANAL_EIO;
	body = kanal_msg_to_json(msg, &len);
	if (!body)
		return KANAL_ENOMEM;
	s_bind_text(st, 1, kanal_msg_source(msg));
	s_bind_text(st, 2, kanal_msg_id(msg));
	s_bind_text(st, 3, kanal_msg_type(msg));
	sqlite3_bind_blob(st, 4, body, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, accepted_at);
	s_bind_text(st, 6, target);
	s_bind_text(st, 7, target_route);
	sqlite3_bind_int(st, 8, parked ? 1 : 0);
	rc = s_step_write(j, st);
	kanal_free(body);
	if (rc == 0) {
		*seq = (uint64_t)sqlite3_last_insert_rowid(j->db);
		rc = s_blob_rows(j, ST_EVENT_BLOB, (int64_t)*seq, msg);
	}
	if (rc == 0) {
		if (!j->txn_first_seq)
			j->txn_first_seq = *seq;
		if (j->n_open >= 0)
			j->n_open++;
		/* Before the first lookup the window is not loaded: the load reads this row. */
		if (j->dup.loaded)
			s_dup_push(j, s_fp(kanal_msg_source(msg), kanal_msg_id(msg)), *seq,
				   accepted_at);
	}
	return rc;
}

int journal_add_event(journal_t *j, const kanal_msg_t *msg, bool parked, uint64_t *seq)
{
	return s_add_event(j, msg, NULL, NULL, parked, seq);
}

static int s_set_parked(journal_t *j, int which, uint64_t seq)
{
	sqlite3_stmt *st = j->st[which];

	if (journal_begin(j) < 0)
		return KANAL_EIO;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
	return s_step_write(j, st);
}

int journal_unpark(journal_t *j, uint64_t seq)
{
	return s_set_parked(j, ST_UNPARK, seq);
}

int journal_park(journal_t *j, uint64_t seq)
{
	return s_set_parked(j, ST_PARK, seq);
}

int journal_load_parked(journal_t *j, uint64_t after_seq, int limit, journal_parked_fn fn,
			void *arg)
{
	sqlite3_stmt *st = j->st[ST_PARKED];
	int count = 0;

	sqlite3_bind_int64(st, 1, (sqlite3_int64)after_seq);
	sqlite3_bind_int(st, 2, limit);
	while (sqlite3_step(st) == SQLITE_ROW) {
		uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
		const char *body = sqlite3_column_blob(st, 1);
		size_t len = (size_t)sqlite3_column_bytes(st, 1);
		kanal_msg_t *msg = NULL;

		count++;
		if (kanal_msg_parse(body, len, len + 1, &msg, NULL) < 0) {
			log_error("journal", "parked event #%llu no longer parses; marking it done",
				  (unsigned long long)seq);
			journal_event_done(j, seq);
			s_flush_done(j); /* now: the next page must not find it parked again */
			continue;
		}
		if (fn(arg, seq, msg) != 0)
			break;
	}
	sqlite3_reset(st);
	return count;
}

int64_t journal_parked_count(journal_t *j)
{
	return s_count(j, ST_COUNT_PARKED);
}

/* Writes the done marks not yet written in the open transaction: a row each in the narrow
 * done table, in statements of 64, 16, 4 and 1 marks. They stay held until the commit
 * (journal_commit). Returns 0 or KANAL_EIO. */
static int s_flush_done(journal_t *j)
{
	static const struct {
		int which;
		size_t n;
	} sizes[] = { { ST_DONE64, 64 }, { ST_DONE16, 16 }, { ST_DONE4, 4 }, { ST_DONE1, 1 } };
	int64_t now = s_now_ms();
	int rc = 0;

	if (!j->in_txn)
		return j->n_done > j->n_flushed ? KANAL_EIO : 0;
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0] && rc == 0; k++) {
		sqlite3_stmt *st = j->st[sizes[k].which];

		while (rc == 0 && j->n_done - j->n_flushed >= sizes[k].n) {
			sqlite3_bind_int64(st, 1, now);
			for (size_t i = 0; i < sizes[k].n; i++)
				sqlite3_bind_int64(st, (int)i + 2,
						   (sqlite3_int64)j->done[j->n_flushed + i]);
			rc = s_step_write(j, st);
			if (rc == 0)
				j->n_flushed += sizes[k].n;
		}
	}
	return rc;
}

int journal_event_done(journal_t *j, uint64_t seq)
{
	if (j->n_done == j->cap_done) {
		size_t cap = j->cap_done ? 2 * j->cap_done : DONE_BATCH;
		uint64_t *more = realloc(j->done, cap * sizeof *more);
		if (!more)
			return KANAL_ENOMEM;
		j->done = more;
		j->cap_done = cap;
	}
	/* Held back until the turn's commit (or DONE_BATCH of them): one statement for many.
	 * Kept even when the journal cannot be written now: the next commit that works
	 * writes it. */
	j->done[j->n_done++] = seq;
	if (j->n_open > 0)
		j->n_open--;
	if (journal_begin(j) < 0)
		return KANAL_EIO;
	return j->n_done - j->n_flushed >= DONE_BATCH ? s_flush_done(j) : 0;
}

int journal_delivery(journal_t *j, uint64_t seq, const char *route, const char *destination,
		     journal_state_t state, int attempts, int64_t next_at_ms, const char *error)
{
	sqlite3_stmt *st = j->st[ST_DELIVERY];

	if (journal_begin(j) < 0)
		return KANAL_EIO;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
	s_bind_text(st, 2, route ? route : "");
	s_bind_text(st, 3, destination);
	sqlite3_bind_int(st, 4, (int)state);
	sqlite3_bind_int(st, 5, attempts);
	if (state == JOURNAL_RETRYING)
		sqlite3_bind_int64(st, 6, next_at_ms);
	else
		sqlite3_bind_null(st, 6);
	s_bind_text(st, 7, error && *error ? error : NULL);
	return s_step_write(j, st);
}

int journal_load_open(journal_t *j, journal_open_fn fn, void *arg)
{
	sqlite3_stmt *ev = j->st[ST_OPEN_EVENTS], *rs = j->st[ST_OPEN_ROWS];
	int count = 0;

	while (sqlite3_step(ev) == SQLITE_ROW) {
		uint64_t seq = (uint64_t)sqlite3_column_int64(ev, 0);
		const char *body = sqlite3_column_blob(ev, 1);
		int len = sqlite3_column_bytes(ev, 1);
		const char *target = (const char *)sqlite3_column_text(ev, 2);
		const char *target_route = (const char *)sqlite3_column_text(ev, 3);
		bool parked = sqlite3_column_int(ev, 4) != 0;
		journal_row_t rows[64];
		char *strings[64][3];
		size_t n = 0;
		kanal_msg_t *msg = NULL;
		kanal_error_t err;

		kanal_error_clear(&err);
		if (kanal_msg_parse(body, (size_t)len, (size_t)len + 1, &msg, &err) < 0) {
			log_error("journal", "event #%llu no longer parses (%s); marking it done",
				  (unsigned long long)seq, err.text);
			journal_event_done(j, seq);
			continue;
		}
		/* A replayed letter is a targeted event: it goes to one destination only, which
		 * the first row records. */
		if (target) {
			rows[n].route = target_route ? target_route : "";
			rows[n].destination = target;
			rows[n].state = 0; /* the target marker */
			rows[n].attempts = -1;
			rows[n].next_at_ms = 0;
			rows[n].last_error = NULL;
			strings[n][0] = strdup(rows[n].route);
			strings[n][1] = strdup(target);
			strings[n][2] = NULL;
			rows[n].route = strings[n][0];
			rows[n].destination = strings[n][1];
			n++;
		}
		sqlite3_bind_int64(rs, 1, (sqlite3_int64)seq);
		while (n < 64 && sqlite3_step(rs) == SQLITE_ROW) {
			const char *e = (const char *)sqlite3_column_text(rs, 5);
			strings[n][0] = strdup((const char *)sqlite3_column_text(rs, 0));
			strings[n][1] = strdup((const char *)sqlite3_column_text(rs, 1));
			strings[n][2] = e ? strdup(e) : NULL;
			rows[n].route = strings[n][0];
			rows[n].destination = strings[n][1];
			rows[n].state = (journal_state_t)sqlite3_column_int(rs, 2);
			rows[n].attempts = sqlite3_column_int(rs, 3);
			rows[n].next_at_ms = sqlite3_column_int64(rs, 4);
			rows[n].last_error = strings[n][2];
			n++;
		}
		sqlite3_reset(rs);
		fn(arg, seq, msg, parked, rows, n);
		for (size_t i = 0; i < n; i++)
			for (int k = 0; k < 3; k++)
				free(strings[i][k]);
		count++;
	}
	sqlite3_reset(ev);
	j->n_open = -1; /* counted at the first status, then kept */
	return count;
}

int journal_dead(journal_t *j, uint64_t seq, const kanal_msg_t *msg, const char *route,
		 const char *destination, const char *reason, int attempts, char *const *errors,
		 size_t n_errors)
{
	sqlite3_stmt *st = j->st[ST_DEAD];
	json_t *arr = json_array();
	char *errs, *body;
	size_t len;
	int rc;

	if (journal_begin(j) < 0) {
		json_decref(arr);
		return KANAL_EIO;
	}
	for (size_t i = 0; i < n_errors; i++)
		json_array_append_new(arr, json_string(errors[i] ? errors[i] : ""));
	errs = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	body = kanal_msg_to_json(msg, &len);
	if (!errs || !body) {
		free(errs);
		kanal_free(body);
		return KANAL_ENOMEM;
	}
	sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
	sqlite3_bind_int64(st, 2, s_now_ms());
	s_bind_text(st, 3, route);
	s_bind_text(st, 4, destination);
	s_bind_text(st, 5, kanal_msg_type(msg));
	s_bind_text(st, 6, kanal_msg_id(msg));
	s_bind_text(st, 7, kanal_msg_source(msg));
	s_bind_text(st, 8, reason ? reason : "");
	sqlite3_bind_int(st, 9, attempts);
	s_bind_text(st, 10, errs);
	sqlite3_bind_blob(st, 11, body, (int)len, SQLITE_STATIC);
	rc = s_step_write(j, st);
	if (rc == 0)
		rc = s_blob_rows(j, ST_LETTER_BLOB, sqlite3_last_insert_rowid(j->db), msg);
	free(errs);
	kanal_free(body);
	return rc;
}

/* A dead letter's summary from a row of: id seq dead_at route destination type event_id
 * source reason attempts errors [body]. */
static json_t *s_letter(sqlite3_stmt *st, bool full)
{
	char when[64];
	const char *errs = (const char *)sqlite3_column_text(st, 10);
	json_t *errors = errs ? json_loads(errs, 0, NULL) : NULL;
	json_t *o;

	kanal_time_rfc3339(sqlite3_column_int64(st, 2), when, sizeof when);
	o = json_pack("{s:I, s:s, s:s?, s:s, s:s, s:s, s:s, s:s, s:i}", "id",
		      (json_int_t)sqlite3_column_int64(st, 0), "dead_at", when, "route",
		      (const char *)sqlite3_column_text(st, 3), "destination",
		      (const char *)sqlite3_column_text(st, 4), "type",
		      (const char *)sqlite3_column_text(st, 5), "event_id",
		      (const char *)sqlite3_column_text(st, 6), "source",
		      (const char *)sqlite3_column_text(st, 7), "reason",
		      (const char *)sqlite3_column_text(st, 8), "attempts",
		      sqlite3_column_int(st, 9));
	if (!o) {
		json_decref(errors);
		return NULL;
	}
	if (json_is_array(errors) && json_array_size(errors) > 0)
		json_object_set(o, "error", json_array_get(errors, json_array_size(errors) - 1));
	if (full) {
		json_t *event = json_loadb(sqlite3_column_blob(st, 11),
					   (size_t)sqlite3_column_bytes(st, 11), 0, NULL);
		json_object_set_new(o, "errors",
				    json_is_array(errors) ? json_incref(errors) : json_array());
		json_object_set_new(o, "event", event ? event : json_null());
	}
	json_decref(errors);
	return o;
}

/* Builds and runs a filtered query over dead_letters. */
static sqlite3_stmt *s_filtered(journal_t *j, const char *cols, const char *route, const char *type,
				int64_t since_ms, const char *order, int limit)
{
	char sql[600];
	sqlite3_stmt *st = NULL;
	int i = 1;

	snprintf(sql, sizeof sql,
		 "SELECT %s FROM dead_letters WHERE (?1 IS NULL OR route = ?1) AND "
		 "(?2 IS NULL OR type = ?2) AND dead_at >= ?3 ORDER BY id %s LIMIT %d",
		 cols, order, limit > 0 ? limit : -1);
	if (sqlite3_prepare_v2(j->db, sql, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	s_bind_text(st, i++, route);
	s_bind_text(st, i++, type);
	sqlite3_bind_int64(st, i, since_ms);
	return st;
}

json_t *journal_dlq_list(journal_t *j, const char *route, const char *type, int64_t since_ms,
			 int limit)
{
	sqlite3_stmt *st = s_filtered(j,
				      "id, seq, dead_at, route, destination, type, event_id, "
				      "source, reason, attempts, errors",
				      route, type, since_ms, "DESC", limit > 0 ? limit : 100);
	json_t *items = json_array();

	if (!st)
		return items;
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_t *o = s_letter(st, false);
		if (o)
			json_array_append_new(items, o);
	}
	sqlite3_finalize(st);
	return items;
}

json_t *journal_dlq_match(journal_t *j, const char *route, const char *type, int64_t since_ms)
{
	sqlite3_stmt *st = s_filtered(j, "id", route, type, since_ms, "ASC", 0);
	json_t *ids = json_array();

	if (!st)
		return ids;
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(ids, json_integer(sqlite3_column_int64(st, 0)));
	sqlite3_finalize(st);
	return ids;
}

json_t *journal_dlq_show(journal_t *j, int64_t id)
{
	sqlite3_stmt *st = j->st[ST_DLQ_GET];
	json_t *o = NULL;

	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) == SQLITE_ROW)
		o = s_letter(st, true);
	sqlite3_reset(st);
	if (o) {
		/* The blobs it keeps (docs/design/blobs.md), for kanalctl dlq show. */
		json_t *blobs = json_array();
		st = j->st[ST_LETTER_BLOBS];
		sqlite3_bind_int64(st, 1, id);
		while (sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(
				blobs, json_string((const char *)sqlite3_column_text(st, 0)));
		sqlite3_reset(st);
		json_object_set_new(o, "blobs", blobs);
	}
	return o;
}

int journal_dlq_take(journal_t *j, int64_t id, kanal_msg_t **msg, uint64_t *seq, char **route,
		     char **destination)
{
	sqlite3_stmt *st = j->st[ST_DLQ_GET];
	int rc = KANAL_ENOTFOUND;

	*msg = NULL;
	*route = *destination = NULL;
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) == SQLITE_ROW) {
		const char *body = sqlite3_column_blob(st, 11);
		size_t len = (size_t)sqlite3_column_bytes(st, 11);
		const char *r = (const char *)sqlite3_column_text(st, 3);

		rc = kanal_msg_parse(body, len, len + 1, msg, NULL);
		if (rc == 0) {
			*route = r ? strdup(r) : NULL;
			*destination = strdup((const char *)sqlite3_column_text(st, 4));
			/* The replay is a new event row, targeted at the letter's destination. */
			rc = s_add_event(j, *msg, *destination, *route, false, seq);
		}
	}
	sqlite3_reset(st);
	if (rc == 0)
		rc = journal_dlq_drop(j, id);
	if (rc < 0) {
		kanal_msg_destroy(msg);
		free(*route);
		free(*destination);
		*route = *destination = NULL;
	}
	return rc;
}

int journal_dlq_drop(journal_t *j, int64_t id)
{
	sqlite3_stmt *st = j->st[ST_DLQ_DROP];
	int rc;

	if (journal_begin(j) < 0)
		return KANAL_EIO;
	sqlite3_bind_int64(st, 1, id);
	rc = s_step_write(j, st);
	if (rc == 0 && sqlite3_changes(j->db) == 0)
		return KANAL_ENOTFOUND;
	if (rc == 0) {
		sqlite3_bind_int64(j->st[ST_LETTER_BLOBS], 1, id);
		sqlite3_bind_int64(j->st[ST_LETTER_BLOBS_DROP], 1, id);
		rc = s_blob_rows_gone(j, j->st[ST_LETTER_BLOBS], j->st[ST_LETTER_BLOBS_DROP]);
	}
	return rc;
}

static int64_t s_count(journal_t *j, int which)
{
	sqlite3_stmt *st = j->st[which];
	int64_t n = -1;

	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return n;
}

int64_t journal_dlq_count(journal_t *j)
{
	return s_count(j, ST_DLQ_COUNT);
}

/* Runs one write statement with one integer bound; returns the rows it changed or
 * KANAL_EIO. Retention runs once a minute: the statements are not worth keeping
 * prepared. */
static int64_t s_exec_int(journal_t *j, const char *sql, int64_t value)
{
	sqlite3_stmt *st = NULL;
	int64_t n;

	if (sqlite3_prepare_v2(j->db, sql, -1, &st, NULL) != SQLITE_OK)
		return KANAL_EIO;
	sqlite3_bind_int64(st, 1, value);
	n = s_step_write(j, st) < 0 ? KANAL_EIO : sqlite3_changes(j->db);
	sqlite3_finalize(st);
	return n;
}

int64_t journal_dlq_purge(journal_t *j, int64_t before_ms, int64_t keep_max)
{
	int64_t by_age = 0, by_count = 0;

	if (journal_begin(j) < 0)
		return KANAL_EIO;
	if (before_ms > 0 &&
	    (by_age = s_exec_int(j, "DELETE FROM dead_letters WHERE dead_at < ?", before_ms)) < 0)
		return by_age;
	if (keep_max > 0 &&
	    (by_count = s_exec_int(j,
				   "DELETE FROM dead_letters WHERE id NOT IN (SELECT id FROM "
				   "dead_letters ORDER BY id DESC LIMIT ?)",
				   keep_max)) < 0)
		return by_count;
	return by_age + by_count;
}

int64_t journal_open_count(journal_t *j)
{
	/* Counted once (a scan), then kept up to date by add and done. */
	if (j->n_open < 0) {
		s_flush_done(j); /* inside the turn's transaction, which holds them */
		j->n_open = s_count(j, ST_COUNT_OPEN);
		/* Marks a failed commit left for the next one are done all the same (a mark
		 * that was written already, or is held twice, may make this a little low). */
		if (j->n_open >= 0) {
			size_t held = j->n_done - j->n_flushed;
			j->n_open = j->n_open > (int64_t)held ? j->n_open - (int64_t)held : 0;
		}
	}
	return j->n_open;
}

int64_t journal_prune(journal_t *j, int64_t before_ms)
{
	int64_t n;

	if (journal_begin(j) < 0)
		return KANAL_EIO;
	s_flush_done(j);
	sqlite3_bind_int64(j->st[ST_PRUNE_ROWS], 1, before_ms);
	if (s_step_write(j, j->st[ST_PRUNE_ROWS]) < 0)
		return KANAL_EIO;
	sqlite3_bind_int64(j->st[ST_PRUNE_EVENTS], 1, before_ms);
	if (s_step_write(j, j->st[ST_PRUNE_EVENTS]) < 0)
		return KANAL_EIO;
	n = sqlite3_changes(j->db);
	sqlite3_bind_int64(j->st[ST_PRUNE_DONE], 1, before_ms);
	if (s_step_write(j, j->st[ST_PRUNE_DONE]) < 0)
		return KANAL_EIO;
	return n;
}

/* ---- measures ------------------------------------------------------------------------ */

int journal_measure_add(journal_t *j, const char *measure, const char *labels, const char *day,
			int64_t n)
{
	sqlite3_stmt *st = j->st[ST_MEASURE_ADD];

	if (journal_begin(j) < 0)
		return KANAL_EIO;
	s_bind_text(st, 1, measure);
	s_bind_text(st, 2, labels);
	s_bind_text(st, 3, day);
	sqlite3_bind_int64(st, 4, n);
	return s_step_write(j, st);
}

json_t *journal_measure_sum(journal_t *j, const char *measure, const char *from_day,
			    const char *to_day)
{
	sqlite3_stmt *st = j->st[ST_MEASURE_SUM];
	json_t *rows = json_array();

	s_bind_text(st, 1, measure);
	s_bind_text(st, 2, from_day ? from_day : "0000-00-00");
	s_bind_text(st, 3, to_day ? to_day : "9999-99-99");
	while (rows && sqlite3_step(st) == SQLITE_ROW) {
		json_t *labels = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
		if (json_is_object(labels))
			json_array_append_new(rows,
					      json_pack("{s:o, s:I}", "labels", labels, "count",
							(json_int_t)sqlite3_column_int64(st, 1)));
		else
			json_decref(labels);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rows;
}
