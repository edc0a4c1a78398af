/*
 * tests/integration/test_journal_encryption.c — the journal encrypted at rest with
 * SQLCipher (journal.key_file, docs/design/journal-encryption.md), with the real kanald:
 * with a key, journal.db and its -wal hold neither a clear CPR number nor the events'
 * text, and kanald started again with the same key delivers what was journalled; a wrong
 * key, and a key file others may read, are clear errors at start — and at check, which
 * refuses what start refuses. Without a key the same bytes are there in clear: the
 * inspection can see them.
 *
 * The CPR number lives in a named constant and is never printed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <kanal/kanal.h>

#include "kanald.h"
#include "test.h"

#define WAIT 8000

static const char *const CPR = "1404214382"; /* synthetic (examples/simulators) */
static const char *const MARKER = "kanal-journal-encryption-marker";
static const char *const KEY = "8c1f0e5a9b2d4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e\n";
static const char *const OTHER_KEY =
	"1111111111111111111111111111111111111111111111111111111111111111\n";

static const char *s_routes = "routes:\n"
			      "  - name: keep\n"
			      "    match: { type: test.journal.> }\n"
			      "    to: out\n";

/* kanald's config: a sink `out` and the durable journal, with key_file when `keyed`. */
static char *s_conf(bool keyed)
{
	return kd_config("  - name: out\n    plugin: sink\n"
			 "    options: { path: '@DIR@/out.jsonl' }\n",
			 keyed ? "journal:\n  mode: durable\n  key_file: '@DIR@/journal.key'\n"
			       : "journal:\n  mode: durable\n");
}

/* Writes the key file (mode `mode`) into kd's folder. */
static void s_write_key(kd_t *kd, const char *key, mode_t mode)
{
	char *dir = strdup(kd_path(kd, "."));
	char *path = test_write_file(dir, "journal.key", key);

	CU_ASSERT_PTR_NOT_NULL(path);
	if (path)
		chmod(path, mode);
	free(path);
	free(dir);
}

/* Starts kanald with the sink paused, sends n events holding the CPR number and the
 * marker, and kills kanald: they stay in the journal (and its -wal) undelivered. */
static kd_t *s_journal_events(const char *tag, bool keyed, int n)
{
	char *conf = s_conf(keyed), data[160], id[32], *json;
	kd_t *kd = kd_prepare(tag, conf, s_routes);

	free(conf);
	if (keyed)
		s_write_key(kd, KEY, 0600);
	if (kd_launch(kd) != 0) {
		kd_destroy(&kd);
		return NULL;
	}
	free(kd_admin(kd, "{\"cmd\":\"instance.pause\",\"name\":\"out\"}", WAIT));
	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof id, "enc-%d", i);
		snprintf(data, sizeof data, "{\"cpr\": \"%s\", \"note\": \"%s\"}", CPR, MARKER);
		json = kd_event("/test/journal", id, "test.journal.kept", data);
		CU_ASSERT(kd_send_event(kd, json, "accepted", WAIT, NULL));
		free(json);
	}
	/* SIGKILL: no checkpoint, so the events are in the -wal as well as (maybe) the db. */
	kd_stop(kd, SIGKILL, WAIT);
	return kd;
}

/* True when the file at path (may be missing) holds `needle` anywhere in its bytes. */
static bool s_file_holds(const char *path, const char *needle)
{
	size_t len = 0;
	char *bytes = test_read_file(path, &len);
	bool found = bytes && memmem(bytes, len, needle, strlen(needle)) != NULL;

	free(bytes);
	return found;
}

/* True when journal.db or its -wal holds needle. */
static bool s_journal_holds(kd_t *kd, const char *needle)
{
	return s_file_holds(kd_path(kd, "state/journal.db"), needle) ||
	       s_file_holds(kd_path(kd, "state/journal.db-wal"), needle);
}

static void test_unencrypted_journal_shows_the_text(void)
{
	kd_t *kd = s_journal_events("journal-plain", false, 3);

	REQUIRE(kd != NULL);
	/* The inspection sees clear text when there is clear text to see. */
	CU_ASSERT(s_journal_holds(kd, MARKER));
	CU_ASSERT(s_journal_holds(kd, CPR));
done:
	kd_destroy(&kd);
}

static void test_encrypted_journal_holds_no_clear_text(void)
{
	kd_t *kd = s_journal_events("journal-keyed", true, 3);
	struct stat st;
	char *log = NULL;

	REQUIRE(kd != NULL);
	CU_ASSERT_EQUAL(stat(kd_path(kd, "state/journal.db-wal"), &st), 0);
	CU_ASSERT(st.st_size > 0);
	CU_ASSERT(!s_journal_holds(kd, MARKER));
	CU_ASSERT(!s_journal_holds(kd, CPR));
	CU_ASSERT(!s_journal_holds(kd, "test.journal.kept"));
	CU_ASSERT(!s_journal_holds(kd, "SQLite format 3"));

	/* Started again with the same key: what was journalled is delivered. */
	REQUIRE(kd_restart(kd) == 0);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 3, WAIT), 3);
	CU_ASSERT(s_file_holds(kd_path(kd, "out.jsonl"), MARKER));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	CU_ASSERT(!s_journal_holds(kd, MARKER));
	log = kd_log(kd);
	CU_ASSERT(log && !kd_has_clear_cpr(log));
done:
	free(log);
	kd_destroy(&kd);
}

/* Runs `bin/kanald -c <conf> --check` and `bin/kanalctl -c <conf> check`; returns how many
 * of them said "not ok" (a non-zero exit) with `needle` in what they printed. */
static int s_checks_refuse(kd_t *kd, const char *needle)
{
	char *cmd = NULL, *out;
	int refused = 0;
	const char *const progs[] = { "bin/kanald -c %s --check", "bin/kanalctl -c %s check" };

	for (size_t i = 0; i < 2; i++) {
		char line[600];
		int status;

		snprintf(line, sizeof line, progs[i], kd_path(kd, "kanald.yaml"));
		if (asprintf(&cmd, "%s/%s > %s 2>&1", test_build_dir(), line,
			     kd_path(kd, "check.log")) < 0)
			return -1;
		status = system(cmd);
		free(cmd);
		out = test_read_file(kd_path(kd, "check.log"), NULL);
		if (status != 0 && out && strstr(out, needle))
			refused++;
		free(out);
	}
	return refused;
}

static void test_wrong_key_and_public_key_file_refused(void)
{
	kd_t *kd = s_journal_events("journal-wrongkey", true, 1);
	char *log = NULL;

	REQUIRE(kd != NULL);
	/* Another key: start says so, and the journal is left as it was. */
	s_write_key(kd, OTHER_KEY, 0600);
	CU_ASSERT_EQUAL(kd_restart(kd), -1);
	log = kd_log(kd);
	CU_ASSERT(log && strstr(log, "cannot read the journal") && strstr(log, "the key is wrong"));
	free(log);
	log = NULL;

	/* The right key in a file others may read: refused at check and at start. */
	s_write_key(kd, KEY, 0640);
	CU_ASSERT_EQUAL(s_checks_refuse(kd, "may be read by others (mode 0640)"), 2);
	CU_ASSERT_EQUAL(kd_restart(kd), -1);
	log = kd_log(kd);
	CU_ASSERT(log && strstr(log, "may be read by others (mode 0640)"));
	free(log);
	log = NULL;

	/* Made private again: it starts, and the event is delivered. */
	s_write_key(kd, KEY, 0600);
	CU_ASSERT_EQUAL(s_checks_refuse(kd, "may be read by others"), 0);
	REQUIRE(kd_restart(kd) == 0);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 1, WAIT), 1);
done:
	free(log);
	kd_destroy(&kd);
}

TEST_MAIN("journal_encryption", TEST(test_unencrypted_journal_shows_the_text),
	  TEST(test_encrypted_journal_holds_no_clear_text),
	  TEST(test_wrong_key_and_public_key_file_refused))
