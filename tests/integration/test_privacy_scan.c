/*
 * tests/integration/test_privacy_scan.c — the personal-data check of a whole test run:
 * every test program's output, every kanald log, every simulator log and every event-stream
 * line the tests received (kept under $KANAL_TEST_OUTPUT_DIR by tests/run.sh and
 * tests/util) is scanned for a clear CPR number. One found fails the run, naming the file
 * and line — with the number masked. tests/run.sh runs this suite last.
 */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

#include "test.h"

static void test_no_clear_cpr_number_in_the_run(void)
{
	const char *dir = getenv("KANAL_TEST_OUTPUT_DIR");
	size_t files = 0, kinds_seen = 0, found = 0;
	bool saw_kanald = false, saw_stream = false, saw_output = false;
	struct dirent *e;
	DIR *d;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	d = opendir(dir);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	while ((e = readdir(d))) {
		char path[4096];
		size_t len = 0, off, n, line, at = 0;
		char *text;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (!(text = test_read_file(path, &len)))
			continue;
		files++;
		saw_kanald |= !strncmp(e->d_name, "kanald-", 7);
		saw_stream |= !strncmp(e->d_name, "stream-", 7);
		saw_output |= !strncmp(e->d_name, "test_", 5);
		while (at < len && kanal_cpr_find(text + at, len - at, &off, &n)) {
			char mask[16];
			char number[16];
			const char *hit = text + at + off;
			/* Digits glued to letters belong to a token (a hash, a UUID, a token
			 * in a simulator's log), which a random hex string makes look like a
			 * number now and then; a person's number stands on its own. */
			if ((hit > text && isalpha((unsigned char)hit[-1])) ||
			    (at + off + n < len && isalpha((unsigned char)hit[n]))) {
				at += off + n;
				continue;
			}
			line = 1;
			for (size_t i = 0; i < at + off; i++)
				line += text[i] == '\n';
			snprintf(number, sizeof number, "%.*s", (int)n, text + at + off);
			kanal_cpr_mask(number, mask, sizeof mask);
			fprintf(stderr, "%s:%zu: a clear CPR number (%s)\n", path, line, mask);
			found++;
			at += off + n;
		}
		free(text);
	}
	closedir(d);
	kinds_seen = saw_kanald + saw_stream + saw_output;
	fprintf(stderr,
		"privacy scan: %zu files (kanald logs, stream lines, simulator logs, "
		"test output) scanned, %zu clear CPR numbers\n",
		files, found);
	/* A scan that saw nothing proves nothing: run it after the other suites
	 * (make test does). */
	CU_ASSERT(files >= 10);
	CU_ASSERT_EQUAL(kinds_seen, 3);
	CU_ASSERT_EQUAL(found, 0);
}

TEST_MAIN("privacy_scan", TEST(test_no_clear_cpr_number_in_the_run))
