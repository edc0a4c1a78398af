/*
 * tests/unit/test_journal.c — the SQLite journal (broker/journal.c), called directly: the
 * duplicate window (an event is seen again within it, forgotten after it, and still seen
 * after kanald restarts, when the window is read back from the file), the schema check at
 * open (a journal of an older schema or a file that is no database is refused, and left as
 * it was), accepted events and their done marks and deliveries as a restart reads them
 * back, blobs kept while an open event or a dead letter names them and removed after the
 * commit that ends the last reference, and the journal's files being private (mode 0600: they hold the events' data).
 *
 * Each test works in its own temporary folder.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kanal/kanal.h>

#include "test.h"
#include "host.h"
#include "journal.h"

/* A window long enough that nothing in a test leaves it by age. */
#define WIDE_MS (10LL * 60 * 1000)

/* Opens (creating) dir/journal.db; its path goes to *path_out (malloc'd). */
static journal_t *s_open(const char *dir, char **path_out, char *err, size_t err_size)
{
	char path[600];

	snprintf(path, sizeof path, "%s/journal.db", dir);
	if (path_out)
		*path_out = strdup(path);
	return journal_open(path, false, err, err_size);
}

/* Accepts one event (source, id) and commits it. Returns its sequence number, 0 on failure. */
static uint64_t s_accept(journal_t *j, const char *source, const char *id, const char *type)
{
	kanal_msg_t *msg = kanal_msg_new(type, source, id);
	uint64_t seq = 0;

	if (!msg)
		return 0;
	if (journal_add_event(j, msg, false, &seq) < 0 || journal_commit(j) < 0)
		seq = 0;
	kanal_msg_destroy(&msg);
	return seq;
}

/* Accepts `older`, then `newer` some 40 ms later; *between is a time after the first was
 * accepted and before the second was. */
static bool s_accept_two(journal_t *j, const char *source, const char *older, const char *newer,
			 int64_t *between)
{
	if (!s_accept(j, source, older, "test.event"))
		return false;
	test_sleep_ms(20);
	*between = kanal__wall_ms();
	test_sleep_ms(20);
	return s_accept(j, source, newer, "test.event") > 0;
}

/* ---- the duplicate window ---------------------------------------------------------------- */

static void test_event_is_seen_again_within_the_window(void)
{
	char *dir = test_tmpdir("journal");
	char err[512] = "";
	journal_t *j = s_open(dir, NULL, err, sizeof err);

	REQUIRE(j != NULL);
	/* The first lookup loads the window (empty); the event then enters it. */
	CU_ASSERT_FALSE(journal_seen(j, "daycare", "e-1", kanal__wall_ms() - WIDE_MS));
	REQUIRE(s_accept(j, "daycare", "e-1", "daycare.child.sick") > 0);
	CU_ASSERT_TRUE(journal_seen(j, "daycare", "e-1", kanal__wall_ms() - WIDE_MS));
	/* Duplicates are (source, id): neither alone is enough. */
	CU_ASSERT_FALSE(journal_seen(j, "daycare", "e-2", kanal__wall_ms() - WIDE_MS));
	CU_ASSERT_FALSE(journal_seen(j, "staff", "e-1", kanal__wall_ms() - WIDE_MS));
done:
	journal_close(&j);
	test_rmdir_r(dir);
	free(dir);
}

static void test_event_is_forgotten_after_the_window(void)
{
	char *dir = test_tmpdir("journal");
	char err[512] = "";
	journal_t *j = s_open(dir, NULL, err, sizeof err);
	int64_t between;

	REQUIRE(j != NULL);
	REQUIRE(s_accept_two(j, "daycare", "old", "new", &between));
	CU_ASSERT_TRUE(journal_seen(j, "daycare", "old", between - WIDE_MS));
	/* A window that starts after "old" was accepted no longer holds it, and still holds
	 * what came later. */
	CU_ASSERT_FALSE(journal_seen(j, "daycare", "old", between));
	CU_ASSERT_TRUE(journal_seen(j, "daycare", "new", between));
done:
	journal_close(&j);
	test_rmdir_r(dir);
	free(dir);
}

static void test_window_is_read_back_after_a_restart(void)
{
	char *dir = test_tmpdir("journal");
	char err[512] = "";
	journal_t *j = s_open(dir, NULL, err, sizeof err);
	int64_t between;

	REQUIRE(j != NULL);
	REQUIRE(s_accept_two(j, "staff", "hr-absence-7-v1", "hr-absence-7-v2", &between));
	journal_close(&j);

	j = s_open(dir, NULL, err, sizeof err);
	REQUIRE(j != NULL);
	/* The window starts after v1: loading it at the first lookup reads v2 back, not v1. */
	CU_ASSERT_TRUE(journal_seen(j, "staff", "hr-absence-7-v2", between));
	CU_ASSERT_FALSE(journal_seen(j, "staff", "hr-absence-7-v1", between));
	CU_ASSERT_FALSE(journal_seen(j, "staff", "hr-absence-8-v1", between));
	journal_close(&j);

	/* Another restart with a wider window finds both. */
	j = s_open(dir, NULL, err, sizeof err);
	REQUIRE(j != NULL);
	CU_ASSERT_TRUE(journal_seen(j, "staff", "hr-absence-7-v1", between - WIDE_MS));
	CU_ASSERT_TRUE(journal_seen(j, "staff", "hr-absence-7-v2", between - WIDE_MS));
done:
	journal_close(&j);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- the schema check -------------------------------------------------------------------- */

/* Writes a journal as a kanald of schema version 1 left it: an events table and
 * user_version 1. */
static bool s_write_schema_1(const char *path)
{
	sqlite3 *db = NULL;
	bool ok = sqlite3_open(path, &db) == SQLITE_OK &&
		  sqlite3_exec(db,
			       "CREATE TABLE events (seq INTEGER PRIMARY KEY, source TEXT, "
			       "id TEXT, type TEXT, body BLOB, accepted_at INTEGER, "
			       "done_at INTEGER); PRAGMA user_version = 1;",
			       NULL, NULL, NULL) == SQLITE_OK;
	sqlite3_close(db);
	return ok;
}

static int64_t s_user_version(const char *path)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void test_older_schema_is_refused_with_what_to_do(void)
{
	char *dir = test_tmpdir("journal");
	char *path = NULL;
	char err[1024] = "";
	journal_t *j = NULL;

	REQUIRE(dir != NULL);
	{
		char p[600];
		snprintf(p, sizeof p, "%s/journal.db", dir);
		REQUIRE(s_write_schema_1(p));
	}
	j = s_open(dir, &path, err, sizeof err);
	CU_ASSERT_PTR_NULL(j);
	/* The message names the file, both versions and the way out. */
	CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "schema version 1"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "needs version 2"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "stop kanald, move"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "creates a new journal"));
	/* Refused means untouched: it may still hold undelivered events. */
	CU_ASSERT_EQUAL(s_user_version(path), 1);
done:
	journal_close(&j);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

static void test_garbage_file_is_refused_and_kept(void)
{
	static const char garbage[] = "these are not the bytes of an SQLite database\n";
	char *dir = test_tmpdir("journal");
	char *path = test_write_file(dir, "journal.db", garbage);
	char err[1024] = "";
	journal_t *j = NULL;
	char *after = NULL;

	REQUIRE(path != NULL);
	j = s_open(dir, NULL, err, sizeof err);
	CU_ASSERT_PTR_NULL(j);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a database"));
	after = test_read_file(path, NULL);
	CU_ASSERT_PTR_NOT_NULL(after);
	CU_ASSERT_STRING_EQUAL(after ? after : "", garbage);
done:
	journal_close(&j);
	free(after);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- events, done marks and deliveries -------------------------------------------------- */

#define MAX_SEEN 8

/* What journal_load_open handed over. */
typedef struct {
	size_t n;
	uint64_t seq[MAX_SEEN];
	char id[MAX_SEEN][32];
	char type[MAX_SEEN][64];
	size_t n_rows[MAX_SEEN];
	char row_destination[MAX_SEEN][32];
	journal_state_t row_state[MAX_SEEN];
	int row_attempts[MAX_SEEN];
	char row_error[MAX_SEEN][32];
} open_events_t;

static void s_on_open(void *arg, uint64_t seq, kanal_msg_t *msg, bool parked,
		      const journal_row_t *rows, size_t n_rows)
{
	open_events_t *o = arg;

	if (o->n < MAX_SEEN) {
		size_t i = o->n++;
		o->seq[i] = seq;
		snprintf(o->id[i], sizeof o->id[i], "%s", kanal_msg_id(msg));
		snprintf(o->type[i], sizeof o->type[i], "%s", kanal_msg_type(msg));
		o->n_rows[i] = n_rows;
		if (n_rows) {
			snprintf(o->row_destination[i], sizeof o->row_destination[i], "%s",
				 rows[0].destination);
			o->row_state[i] = rows[0].state;
			o->row_attempts[i] = rows[0].attempts;
			snprintf(o->row_error[i], sizeof o->row_error[i], "%s",
				 rows[0].last_error ? rows[0].last_error : "");
		}
	}
	kanal_msg_destroy(&msg);
}

static void test_events_done_and_open_count_round_trip(void)
{
	char *dir = test_tmpdir("journal");
	char err[512] = "";
	journal_t *j = s_open(dir, NULL, err, sizeof err);
	open_events_t o = { 0 };
	uint64_t a, b, c;

	REQUIRE(j != NULL);
	CU_ASSERT_EQUAL(journal_open_count(j), 0);
	a = s_accept(j, "daycare", "a", "daycare.child.sick");
	b = s_accept(j, "daycare", "b", "daycare.child.well");
	c = s_accept(j, "staff", "c", "staff.absence.registered");
	REQUIRE(a > 0 && b > a && c > b);
	CU_ASSERT_EQUAL(journal_open_count(j), 3);

	REQUIRE(journal_event_done(j, b) == 0);
	REQUIRE(journal_delivery(j, c, "sick-staff", "calendar", JOURNAL_RETRYING, 2,
				 kanal__wall_ms() + 60000, "HTTP 503") == 0);
	REQUIRE(journal_commit(j) == 0);
	CU_ASSERT_FALSE(journal_dirty(j));
	CU_ASSERT_EQUAL(journal_open_count(j), 2);
	journal_close(&j);

	/* What a restart finds: the two open events in order, with c's delivery state. */
	j = s_open(dir, NULL, err, sizeof err);
	REQUIRE(j != NULL);
	CU_ASSERT_EQUAL(journal_open_count(j), 2);
	CU_ASSERT_EQUAL(journal_load_open(j, s_on_open, &o), 2);
	REQUIRE(o.n == 2);
	CU_ASSERT_EQUAL(o.seq[0], a);
	CU_ASSERT_STRING_EQUAL(o.id[0], "a");
	CU_ASSERT_STRING_EQUAL(o.type[0], "daycare.child.sick");
	CU_ASSERT_EQUAL(o.n_rows[0], 0);
	CU_ASSERT_EQUAL(o.seq[1], c);
	CU_ASSERT_STRING_EQUAL(o.id[1], "c");
	CU_ASSERT_STRING_EQUAL(o.type[1], "staff.absence.registered");
	REQUIRE(o.n_rows[1] == 1);
	CU_ASSERT_STRING_EQUAL(o.row_destination[1], "calendar");
	CU_ASSERT_EQUAL(o.row_state[1], JOURNAL_RETRYING);
	CU_ASSERT_EQUAL(o.row_attempts[1], 2);
	CU_ASSERT_STRING_EQUAL(o.row_error[1], "HTTP 503");

	/* Done marks survive the restart too, and the last open events can be closed. */
	REQUIRE(journal_event_done(j, a) == 0);
	REQUIRE(journal_event_done(j, c) == 0);
	REQUIRE(journal_commit(j) == 0);
	CU_ASSERT_EQUAL(journal_open_count(j), 0);
	journal_close(&j);
	j = s_open(dir, NULL, err, sizeof err);
	REQUIRE(j != NULL);
	CU_ASSERT_EQUAL(journal_open_count(j), 0);
	memset(&o, 0, sizeof o);
	CU_ASSERT_EQUAL(journal_load_open(j, s_on_open, &o), 0);
done:
	journal_close(&j);
	test_rmdir_r(dir);
	free(dir);
}

/* Measure counts add up per label values and day, survive a reopen, and are summed over
 * exactly the days asked for. */
static void test_measure_counts_per_day_survive_a_restart(void)
{
	char *dir = test_tmpdir("journal");
	char err[512] = "";
	journal_t *j = s_open(dir, NULL, err, sizeof err);
	json_t *rows = NULL;
	const char *dig = "{\"channel\":\"digital\"}", *phys = "{\"channel\":\"physical\"}";

	REQUIRE(j != NULL);
	REQUIRE(journal_measure_add(j, "letters", dig, "2025-12-31", 5) == 0);
	REQUIRE(journal_measure_add(j, "letters", dig, "2026-01-01", 2) == 0);
	REQUIRE(journal_measure_add(j, "letters", dig, "2026-01-01", 1) == 0);
	REQUIRE(journal_measure_add(j, "letters", phys, "2026-12-31", 4) == 0);
	REQUIRE(journal_measure_add(j, "inquiries", dig, "2026-06-01", 9) == 0);
	REQUIRE(journal_commit(j) == 0);
	journal_close(&j);

	j = s_open(dir, NULL, err, sizeof err);
	REQUIRE(j != NULL);
	rows = journal_measure_sum(j, "letters", "2026-01-01", "2026-12-31");
	REQUIRE(json_array_size(rows) == 2);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(
			json_object_get(json_array_get(rows, 0), "labels"), "channel")),
		"digital");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(rows, 0), "count")), 3);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(rows, 1), "count")), 4);
	json_decref(rows);
	rows = journal_measure_sum(j, "letters", NULL, NULL);
	REQUIRE(json_array_size(rows) == 2);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(rows, 0), "count")), 8);
done:
	json_decref(rows);
	journal_close(&j);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- blob references ---------------------------------------------------------------------- */

/* An event naming blob uri in its kanalblob attribute, journalled (not committed). */
static uint64_t s_add_with_blob(journal_t *j, const char *id, const char *uri)
{
	kanal_msg_t *msg = kanal_msg_new("daycare.notice.posted", "daycare", id);
	uint64_t seq = 0;

	if (msg && kanal_msg_set_attr(msg, KANAL_BLOB_ATTRIBUTE, uri, NULL) == 0 &&
	    journal_add_event(j, msg, false, &seq) < 0)
		seq = 0;
	kanal_msg_destroy(&msg);
	return seq;
}

static bool s_blob_exists(kanal__blob_store_t *store, const char *uri)
{
	int fd = -1;

	if (kanal__blob_open(store, uri, &fd, NULL, NULL) != 0)
		return false;
	close(fd);
	return true;
}

/* A blob store in dir/blobs, given to j, holding `content` (its reference in *ref). */
static kanal__blob_store_t *s_store_with(journal_t *j, const char *dir, const char *content,
					 kanal_blob_ref_t *ref)
{
	char bdir[600];
	kanal__blob_store_t *store;

	snprintf(bdir, sizeof bdir, "%s/blobs", dir);
	store = kanal__blob_store_open_dir(bdir, 0, 0, NULL);
	if (store && kanal__blob_put(store, content, strlen(content), NULL, ref, NULL) != 0)
		kanal__blob_store_destroy(&store);
	if (store)
		journal_set_blob_store(j, store);
	return store;
}

static void test_blob_lives_until_the_last_event_naming_it_is_done(void)
{
	char *dir = test_tmpdir("journal");
	char err[512] = "";
	journal_t *j = s_open(dir, NULL, err, sizeof err);
	kanal__blob_store_t *store = NULL;
	kanal_blob_ref_t ref;
	uint64_t a, b;

	REQUIRE(j != NULL);
	REQUIRE((store = s_store_with(j, dir, "photo", &ref)) != NULL);
	/* Two events (the same photo on two notices) name the blob. */
	REQUIRE((a = s_add_with_blob(j, "n-1", ref.uri)) > 0);
	REQUIRE((b = s_add_with_blob(j, "n-2", ref.uri)) > 0);
	REQUIRE(journal_commit(j) == 0);
	CU_ASSERT_TRUE(journal_blob_named(j, ref.uri));
	CU_ASSERT_EQUAL(journal_blob_references(j), 2);

	/* A restart reads the same references back. */
	journal_close(&j);
	REQUIRE((j = s_open(dir, NULL, err, sizeof err)) != NULL);
	journal_set_blob_store(j, store);
	CU_ASSERT_EQUAL(journal_blob_references(j), 2);

	CU_ASSERT_EQUAL(journal_event_done(j, a), 0);
	CU_ASSERT_EQUAL(journal_commit(j), 0);
	CU_ASSERT_TRUE(s_blob_exists(store, ref.uri));
	CU_ASSERT_EQUAL(journal_blob_references(j), 1);
	CU_ASSERT_EQUAL(journal_event_done(j, b), 0);
	CU_ASSERT_EQUAL(journal_commit(j), 0);
	CU_ASSERT_FALSE(s_blob_exists(store, ref.uri));
	CU_ASSERT_FALSE(journal_blob_named(j, ref.uri));
	CU_ASSERT_EQUAL(journal_blob_references(j), 0);
done:
	journal_close(&j);
	kanal__blob_store_destroy(&store);
	test_rmdir_r(dir);
	free(dir);
}

static void test_dead_letter_keeps_its_blob_until_dropped(void)
{
	char *dir = test_tmpdir("journal");
	char err[512] = "";
	journal_t *j = s_open(dir, NULL, err, sizeof err);
	kanal__blob_store_t *store = NULL;
	kanal_msg_t *msg = NULL;
	kanal_blob_ref_t ref;
	json_t *letters = NULL, *shown = NULL;
	char *errors[] = { "HTTP 500" };
	int64_t id;
	uint64_t seq;

	REQUIRE(j != NULL);
	REQUIRE((store = s_store_with(j, dir, "%PDF-1.7", &ref)) != NULL);
	REQUIRE((msg = kanal_msg_new("letter.send", "case", "l-1")) != NULL);
	REQUIRE(kanal_msg_set_attr(msg, KANAL_BLOB_ATTRIBUTE, ref.uri, NULL) == 0);
	REQUIRE(journal_add_event(j, msg, false, &seq) == 0);
	REQUIRE(journal_commit(j) == 0);
	/* The only delivery dies: the event is done, the dead letter keeps the blob. */
	REQUIRE(journal_dead(j, seq, msg, "letters", "digitalpost", "gave up", 1, errors, 1) == 0);
	REQUIRE(journal_event_done(j, seq) == 0);
	REQUIRE(journal_commit(j) == 0);
	CU_ASSERT_TRUE(s_blob_exists(store, ref.uri));
	letters = journal_dlq_list(j, NULL, NULL, 0, 10);
	REQUIRE(json_array_size(letters) == 1);
	id = json_integer_value(json_object_get(json_array_get(letters, 0), "id"));
	shown = journal_dlq_show(j, id);
	REQUIRE(shown != NULL);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(shown, "blobs")), 1);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_array_get(json_object_get(shown, "blobs"), 0)), ref.uri);
	CU_ASSERT_EQUAL(journal_dlq_drop(j, id), 0);
	CU_ASSERT_TRUE(s_blob_exists(store, ref.uri)); /* not before the commit */
	CU_ASSERT_EQUAL(journal_commit(j), 0);
	CU_ASSERT_FALSE(s_blob_exists(store, ref.uri));
done:
	json_decref(letters);
	json_decref(shown);
	kanal_msg_destroy(&msg);
	journal_close(&j);
	kanal__blob_store_destroy(&store);
	test_rmdir_r(dir);
	free(dir);
}

static void test_replayed_letter_keeps_its_blob_until_delivered(void)
{
	char *dir = test_tmpdir("journal");
	char err[512] = "";
	journal_t *j = s_open(dir, NULL, err, sizeof err);
	kanal__blob_store_t *store = NULL;
	kanal_msg_t *msg = NULL, *taken = NULL;
	kanal_blob_ref_t ref;
	json_t *letters = NULL;
	char *errors[] = { "HTTP 500" }, *route = NULL, *dest = NULL;
	uint64_t seq, replay_seq = 0;
	int64_t id;

	REQUIRE(j != NULL);
	REQUIRE((store = s_store_with(j, dir, "photo", &ref)) != NULL);
	REQUIRE((msg = kanal_msg_new("daycare.notice.post", "app", "n-9")) != NULL);
	REQUIRE(kanal_msg_set_attr(msg, KANAL_BLOB_ATTRIBUTE, ref.uri, NULL) == 0);
	REQUIRE(journal_add_event(j, msg, false, &seq) == 0);
	REQUIRE(journal_dead(j, seq, msg, "notices", "daycare", "rejected", 1, errors, 1) == 0);
	REQUIRE(journal_event_done(j, seq) == 0);
	REQUIRE(journal_commit(j) == 0);
	letters = journal_dlq_list(j, NULL, NULL, 0, 10);
	REQUIRE(json_array_size(letters) == 1);
	id = json_integer_value(json_object_get(json_array_get(letters, 0), "id"));
	/* The replay is a new event naming the blob: taking the letter keeps it. */
	REQUIRE(journal_dlq_take(j, id, &taken, &replay_seq, &route, &dest) == 0);
	CU_ASSERT_EQUAL(journal_commit(j), 0);
	CU_ASSERT_TRUE(s_blob_exists(store, ref.uri));
	CU_ASSERT_EQUAL(journal_blob_references(j), 1);
	/* Delivered this time: it goes. */
	CU_ASSERT_EQUAL(journal_event_done(j, replay_seq), 0);
	CU_ASSERT_EQUAL(journal_commit(j), 0);
	CU_ASSERT_FALSE(s_blob_exists(store, ref.uri));
done:
	free(route);
	free(dest);
	json_decref(letters);
	kanal_msg_destroy(&msg);
	kanal_msg_destroy(&taken);
	journal_close(&j);
	kanal__blob_store_destroy(&store);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- the files ------------------------------------------------------------------------ */

static void test_journal_and_wal_are_private(void)
{
	char *dir = test_tmpdir("journal");
	char *path = NULL;
	char err[512] = "", wal[700];
	/* A umask that lets everyone read new files, as on many servers. */
	mode_t old_mask = umask(022);
	journal_t *j = s_open(dir, &path, err, sizeof err);
	struct stat st;

	REQUIRE(j != NULL);
	REQUIRE(s_accept(j, "daycare", "e-1", "daycare.child.sick") > 0);
	REQUIRE(stat(path, &st) == 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	snprintf(wal, sizeof wal, "%s-wal", path);
	REQUIRE(stat(wal, &st) == 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	/* The WAL index, shared with the checkpoint thread's connection. */
	snprintf(wal, sizeof wal, "%s-shm", path);
	REQUIRE(stat(wal, &st) == 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
done:
	umask(old_mask);
	journal_close(&j);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- checkpoints off the router ---------------------------------------------------------- */

/* Adds n events of about 600 bytes each in one transaction, as a router turn does. */
static bool s_turn(journal_t *j, int first, int n)
{
	static char data[700];
	bool ok = true;

	if (!data[0]) {
		memset(data, 'x', sizeof data - 1);
		memcpy(data, "{\"pad\":\"", 8);
		memcpy(data + 598, "\"}", 3);
	}
	for (int i = 0; i < n && ok; i++) {
		char id[32];
		kanal_msg_t *msg;
		uint64_t seq;

		snprintf(id, sizeof id, "e-%d", first + i);
		msg = kanal_msg_new("test.event", "bench", id);
		ok = msg && kanal_msg_set_data_json(msg, data, strlen(data)) == 0 &&
		     journal_add_event(j, msg, false, &seq) == 0;
		kanal_msg_destroy(&msg);
	}
	return ok && journal_commit(j) == 0;
}

/* Writes that never pause still let the WAL start over: the checkpoint thread copies the
 * bulk and the router's hook the last pages, so the WAL does not grow with the journal (it
 * used to be SQLite's automatic checkpoint on the router thread, the durable tail). What
 * was written is all there after a restart. */
static void test_wal_starts_over_while_writes_continue(void)
{
	char *dir = test_tmpdir("journal");
	char *path = NULL;
	char err[512] = "", wal[700];
	journal_t *j = s_open(dir, &path, err, sizeof err);
	journal_ckpt_stats_t ck;
	int n = 0, most = 0, deadline;
	bool restarted = false;
	struct stat st;

	REQUIRE(j != NULL);
	/* About 12 MiB in turns of 20 events: some 3,000 pages, the thread woken at 2048. */
	for (int turn = 0; turn < 1000; turn++, n += 20) {
		REQUIRE(s_turn(j, n, 20));
		journal_checkpoints(j, &ck);
		if (ck.wal_pages < most)
			restarted = true;
		most = ck.wal_pages > most ? ck.wal_pages : most;
	}
	/* On a loaded machine the thread may lag: keep writing (small turns) until the WAL
	 * has started over, for at most 20 s. */
	for (deadline = 0; !restarted && deadline < 2000; deadline++, n++) {
		REQUIRE(s_turn(j, n, 1));
		journal_checkpoints(j, &ck);
		restarted = ck.wal_pages < most;
		most = ck.wal_pages > most ? ck.wal_pages : most;
		test_sleep_ms(10);
	}
	CU_ASSERT_TRUE(restarted);
	journal_checkpoints(j, &ck);
	CU_ASSERT_TRUE(ck.by_thread > 0);
	CU_ASSERT_TRUE(ck.by_router + ck.forced > 0);
	CU_ASSERT_EQUAL(ck.errors, 0);
	/* The WAL's file is cut back when it starts over (journal_size_limit: 16 MiB). */
	snprintf(wal, sizeof wal, "%s-wal", path);
	CU_ASSERT_TRUE(stat(wal, &st) == 0 && st.st_size <= 16 * 1024 * 1024 + 65536);
	journal_close(&j);
	/* Reopened: every event is there, open. */
	j = journal_open(path, false, err, sizeof err);
	REQUIRE(j != NULL);
	CU_ASSERT_EQUAL(journal_open_count(j), n);
done:
	journal_close(&j);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

TEST_MAIN("journal", TEST(test_event_is_seen_again_within_the_window),
	  TEST(test_event_is_forgotten_after_the_window),
	  TEST(test_window_is_read_back_after_a_restart),
	  TEST(test_older_schema_is_refused_with_what_to_do),
	  TEST(test_garbage_file_is_refused_and_kept),
	  TEST(test_events_done_and_open_count_round_trip),
	  TEST(test_measure_counts_per_day_survive_a_restart),
	  TEST(test_blob_lives_until_the_last_event_naming_it_is_done),
	  TEST(test_dead_letter_keeps_its_blob_until_dropped),
	  TEST(test_replayed_letter_keeps_its_blob_until_delivered),
	  TEST(test_journal_and_wal_are_private), TEST(test_wal_starts_over_while_writes_continue))
