/*
 * tests/unit/test_log.c — kanald's log lines (broker/log.c) and what any log line may hold
 * (kanal__log_escape in sdk/log_text.c): whatever a message quotes, a line is printable
 * text with CPR numbers masked, so a newline in an event id cannot forge a line of its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "host.h"
#include "log.h"

/* Runs log_msg with stderr sent to a temporary file and returns what was written. */
static char *s_logged(const char *component, const char *text)
{
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);
	char *out;
	long n;

	if (!f || saved < 0)
		return NULL;
	dup2(fileno(f), STDERR_FILENO);
	log_msg(KANAL_LOG_WARN, component, "refused event '%s'", text);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = lseek(fileno(f), 0, SEEK_END);
	out = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
	if (out && n > 0 && pread(fileno(f), out, (size_t)n, 0) != n)
		out[0] = '\0';
	fclose(f);
	return out;
}

static void test_a_newline_cannot_forge_a_line(void)
{
	char *out =
		s_logged("gateway", "b-77\n2026-01-01T00:00:00.000Z error admin: forged\r\x1b[2J");

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	/* One line: the only newline is the one that ends it. */
	CU_ASSERT_PTR_NOT_NULL(strchr(out, '\n'));
	CU_ASSERT_PTR_EQUAL(strchr(out, '\n'), out + strlen(out) - 1);
	CU_ASSERT_PTR_NULL(strchr(out, '\r'));
	CU_ASSERT_PTR_NULL(strchr(out, '\x1b'));
	CU_ASSERT_PTR_NOT_NULL(strstr(out,
				      "warn  gateway: refused event 'b-77\\n2026-01-01T00:00:00"
				      ".000Z error admin: forged\\r\\x1b[2J'\n"));
	free(out);
}

static void test_text_is_kept_and_cpr_masked(void)
{
	char *out =
		s_logged("http", "b\xc3\xb8rn \xe2\x82\xac 0101184129\tx\xc2\x85\xe2\x80\xae\xff");

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	/* Danish letters stay; the tab, NEL, right-to-left override and a broken byte do not;
	 * the CPR number is masked. */
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "'b\xc3\xb8rn \xe2\x82\xac 010118XXXX\\tx\\u0085\\u202e"
					   "\\xff'\n"));
	CU_ASSERT_PTR_NULL(strstr(out, "0101184129"));
	free(out);
}

static void test_escape_is_bounded_and_idempotent(void)
{
	char once[64], twice[64], small[8];

	CU_ASSERT_EQUAL(kanal__log_escape(once, sizeof once, "a\nb\x01", 4), strlen("a\\nb\\x01"));
	CU_ASSERT_STRING_EQUAL(once, "a\\nb\\x01");
	/* A plugin host's line escaped again by kanald reads the same. */
	kanal__log_escape(twice, sizeof twice, once, strlen(once));
	CU_ASSERT_STRING_EQUAL(twice, once);
	/* Whole pieces only: no half escape, no half UTF-8 sequence at the end. */
	kanal__log_escape(small, sizeof small, "abcdef\n", 7);
	CU_ASSERT_STRING_EQUAL(small, "abcdef");
	kanal__log_escape(small, sizeof small, "abcde\xc3\xb8", 7);
	CU_ASSERT_STRING_EQUAL(small, "abcde\xc3\xb8");
	kanal__log_escape(small, sizeof small, "abcdef\xc3\xb8", 8);
	CU_ASSERT_STRING_EQUAL(small, "abcdef");
}

TEST_MAIN("log", TEST(test_a_newline_cannot_forge_a_line), TEST(test_text_is_kept_and_cpr_masked),
	  TEST(test_escape_is_bounded_and_idempotent))
