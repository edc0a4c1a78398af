/*
 * tests/util/test.h — the shape of every CUnit test program: one suite per file, each test
 * a function, `TEST_MAIN("name", TEST(a), TEST(b))` at the bottom. `test_x NAME` runs the
 * one test called NAME. Helpers for temporary folders and files live here too.
 */
#ifndef KANAL_TEST_H
#define KANAL_TEST_H

#include <CUnit/CUnit.h>
#include <CUnit/Basic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TEST(fn)                                                                                   \
	{                                                                                          \
#fn, fn                                                                            \
	}
#define TEST_MAIN(suite, ...)                                                                      \
	int main(int argc, char **argv)                                                            \
	{                                                                                          \
		CU_TestInfo tests_[] = { __VA_ARGS__, CU_TEST_INFO_NULL };                         \
		return test_run(suite, tests_, argc, argv);                                        \
	}

int test_run(const char *suite, CU_TestInfo *tests, int argc, char **argv);

/* An assertion that, when it fails, skips to the test's clean-up label `done`. The
 * condition is evaluated once: it may send an event. */
#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		bool require_ok_ = (cond);                                                         \
		CU_assertImplementation(require_ok_, __LINE__, #cond, __FILE__, "", CU_FALSE);     \
		if (!require_ok_)                                                                  \
			goto done;                                                                 \
	} while (0)

/* Sleeps ms milliseconds; the monotonic clock in milliseconds, for bounded waits. */
void test_sleep_ms(int ms);
int64_t test_now_ms(void);

/* A fresh temporary folder under $TMPDIR (removed by test_rmdir_r); returns a static-free
 * malloc'd path. */
char *test_tmpdir(const char *tag);

/* A TCP port free on 127.0.0.1 just now, below the kernel's ephemeral range and never
 * returned before by this process, or 0. */
int test_free_port(void);
void test_rmdir_r(const char *path);
/* The entries of folder path, hidden ones ('.…') not counted; -1 when it cannot be read. */
int test_dir_count(const char *path);
/* Writes text to dir/name (creating it); returns the malloc'd full path. */
char *test_write_file(const char *dir, const char *name, const char *text);
/* Reads a whole file into a malloc'd NUL-terminated buffer (NULL when missing). */
char *test_read_file(const char *path, size_t *len);
/* Runs a built program (test_path(prog): "bin/kanald", "bin/kanalctl") with args (argv,
 * NULL-terminated), its standard output and error appended to out_path, and waits for it.
 * Returns its exit status, or -1 when it did not exit normally. */
int test_run_program(const char *prog, char *const args[], const char *out_path);
/* The folder of the build (BUILD env var or "build"), and of the source tree (cwd). */
const char *test_build_dir(void);
/* Path of a built artefact: test_path("bin/kanald") → "build/bin/kanald" (static buffer
 * rotation of 8 — copy when keeping). */
const char *test_path(const char *rel);

/* Keeping what a test run wrote, for the personal-data scan (tests/integration/
 * test_privacy_scan.c): when KANAL_TEST_OUTPUT_DIR is set (tests/run.sh sets it), a copy of
 * the file at path is kept there under a name starting with tag, and text is appended to
 * <dir>/<tag>.log. Both do nothing when the variable is unset. */
void test_keep_file(const char *tag, const char *path);
void test_keep_text(const char *tag, const char *text, size_t len);

#endif
