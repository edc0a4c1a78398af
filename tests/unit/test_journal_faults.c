/*
 * tests/unit/test_journal_faults.c — the journal (broker/journal.c) when its disk fails:
 * a failed commit names its cause in words, keeps the done marks it could not write and
 * writes them with the next commit that works (but not the marks of events it rolled
 * back, whose numbers go to new events), and after a failure the journal is writable again
 * only when a write of realistic size succeeds. Failures are injected with
 * KANAL_FAULT_JOURNAL (every transaction fails while the named file exists) and by making
 * the probe's scratch file impossible to write; tests/integration/test_diskfull.c fills a
 * real filesystem.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kanal/kanal.h>

#include "journal.h"
#include "test.h"

typedef struct fixture {
	char *dir;
	char path[1024];  /* the journal */
	char fault[1024]; /* while this file exists, every transaction fails */
	journal_t *j;
} fixture_t;

static bool s_open(fixture_t *f, const char *tag)
{
	char err[512];

	if (tag) {
		f->dir = test_tmpdir(tag);
		snprintf(f->path, sizeof f->path, "%s/journal.db", f->dir);
		snprintf(f->fault, sizeof f->fault, "%s/fault", f->dir);
	}
	setenv("KANAL_FAULT_JOURNAL", f->fault, 1);
	f->j = journal_open(f->path, false, err, sizeof err);
	unsetenv("KANAL_FAULT_JOURNAL");
	if (!f->j)
		fprintf(stderr, "    %s\n", err);
	return f->j != NULL;
}

static void s_close(fixture_t *f)
{
	journal_close(&f->j);
	unlink(f->fault);
	if (f->dir)
		test_rmdir_r(f->dir);
	free(f->dir);
	f->dir = NULL;
}

/* Adds the event `id` to the open transaction; its number, or 0. */
static uint64_t s_add(journal_t *j, const char *id)
{
	char json[200];
	kanal_msg_t *msg = NULL;
	uint64_t seq = 0;

	snprintf(json, sizeof json,
		 "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"t\",\"type\":\"x.y\"}", id);
	if (kanal_msg_parse(json, strlen(json), 0, &msg, NULL) == 0 &&
	    journal_add_event(j, msg, false, &seq) < 0)
		seq = 0;
	kanal_msg_destroy(&msg);
	return seq;
}

/* The ids of the open events, in journal order, as "a,b,". */
static void s_on_open(void *arg, uint64_t seq, kanal_msg_t *msg, bool parked,
		      const journal_row_t *rows, size_t n_rows)
{
	char *ids = arg;

	strcat(ids, kanal_msg_id(msg));
	strcat(ids, ",");
	kanal_msg_destroy(&msg);
}

static void s_open_ids(journal_t *j, char *ids)
{
	ids[0] = '\0';
	journal_load_open(j, s_on_open, ids);
}

static void test_failed_commit_names_the_cause(void)
{
	fixture_t f = { 0 };

	REQUIRE(s_open(&f, "jf-cause"));
	REQUIRE(s_add(f.j, "a") > 0);
	free(test_write_file(f.dir, "fault", "full\n"));
	CU_ASSERT_EQUAL(journal_commit(f.j), KANAL_EIO);
	/* The cause, not what the rollback said after it. */
	CU_ASSERT_PTR_NOT_NULL(strstr(journal_error(f.j), "disk full"));
	CU_ASSERT_PTR_NULL(strstr(journal_error(f.j), "rollback"));
	/* Writes while the disk is still full fail with the same cause. */
	CU_ASSERT(s_add(f.j, "b") == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(journal_error(f.j), "disk full"));
	unlink(f.fault);
	CU_ASSERT(s_add(f.j, "c") > 0);
	CU_ASSERT_EQUAL(journal_commit(f.j), 0);
done:
	s_close(&f);
}

static void test_done_marks_of_a_failed_commit_are_written_later(void)
{
	fixture_t f = { 0 };
	uint64_t a, b, c, d;
	char ids[256];

	REQUIRE(s_open(&f, "jf-done"));
	a = s_add(f.j, "a");
	b = s_add(f.j, "b");
	REQUIRE(a > 0 && b > 0);
	REQUIRE(journal_commit(f.j) == 0);
	CU_ASSERT_EQUAL(journal_open_count(f.j), 2);

	/* A turn delivers a and takes c in, delivers c too, and cannot be committed. */
	CU_ASSERT_EQUAL(journal_event_done(f.j, a), 0);
	c = s_add(f.j, "c");
	REQUIRE(c > 0);
	CU_ASSERT_EQUAL(journal_event_done(f.j, c), 0);
	free(test_write_file(f.dir, "fault", "full\n"));
	CU_ASSERT_EQUAL(journal_commit(f.j), KANAL_EIO);
	/* a was delivered: it is not open any more, though its mark is not on disk yet. */
	CU_ASSERT_EQUAL(journal_open_count(f.j), 1);
	/* A delivery that ends while the disk is full keeps its mark too. */
	CU_ASSERT_EQUAL(journal_event_done(f.j, b), KANAL_EIO);

	/* Space is back: the next commit writes the marks; c was rolled back, and the new
	 * event that gets its number is open. */
	unlink(f.fault);
	d = s_add(f.j, "d");
	REQUIRE(d > 0);
	CU_ASSERT_EQUAL(d, c); /* SQLite hands the rolled-back number out again */
	CU_ASSERT_EQUAL(journal_commit(f.j), 0);
	journal_close(&f.j);
	REQUIRE(s_open(&f, NULL));
	s_open_ids(f.j, ids);
	CU_ASSERT_STRING_EQUAL(ids, "d,");
done:
	s_close(&f);
}

static void test_marks_survive_a_close_while_the_disk_is_full(void)
{
	fixture_t f = { 0 };
	uint64_t a;
	char ids[256];

	REQUIRE(s_open(&f, "jf-close"));
	a = s_add(f.j, "a");
	REQUIRE(a > 0 && journal_commit(f.j) == 0);
	CU_ASSERT_EQUAL(journal_event_done(f.j, a), 0);
	free(test_write_file(f.dir, "fault", "full\n"));
	CU_ASSERT_EQUAL(journal_commit(f.j), KANAL_EIO);
	/* The disk recovers before the journal closes: closing writes the mark. */
	unlink(f.fault);
	journal_close(&f.j);
	REQUIRE(s_open(&f, NULL));
	s_open_ids(f.j, ids);
	CU_ASSERT_STRING_EQUAL(ids, "");
done:
	s_close(&f);
}

static void test_writable_again_only_when_a_real_write_works(void)
{
	fixture_t f = { 0 };
	char probe[1100];

	REQUIRE(s_open(&f, "jf-probe"));
	REQUIRE(s_add(f.j, "a") > 0);
	free(test_write_file(f.dir, "fault", "full\n"));
	CU_ASSERT_EQUAL(journal_commit(f.j), KANAL_EIO);
	unlink(f.fault);
	/* The injected fault is gone, but a write beside the journal still fails (here: its
	 * scratch file's name is taken by a folder): an empty transaction would commit, yet
	 * the journal must not count as writable. */
	snprintf(probe, sizeof probe, "%s-probe", f.path);
	REQUIRE(mkdir(probe, 0700) == 0);
	CU_ASSERT_EQUAL(journal_begin(f.j), KANAL_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(journal_error(f.j), "beside the journal"));
	CU_ASSERT(!journal_dirty(f.j));
	rmdir(probe);
	CU_ASSERT_EQUAL(journal_begin(f.j), 0);
	CU_ASSERT_EQUAL(journal_commit(f.j), 0);
	/* The scratch file is gone again. */
	CU_ASSERT_NOT_EQUAL(access(probe, F_OK), 0);
	/* Healthy again. */
	CU_ASSERT(s_add(f.j, "b") > 0);
	CU_ASSERT_EQUAL(journal_commit(f.j), 0);
done:
	s_close(&f);
}

TEST_MAIN("journal_faults", TEST(test_failed_commit_names_the_cause),
	  TEST(test_done_marks_of_a_failed_commit_are_written_later),
	  TEST(test_marks_survive_a_close_while_the_disk_is_full),
	  TEST(test_writable_again_only_when_a_real_write_works))
