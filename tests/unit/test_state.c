/*
 * tests/unit/test_state.c — a plugin's durable state (sdk/state.c, kanal_state_get/put):
 * in single-node modes a value is the file <state folder>/<key>, so a put is read back
 * after a "restart" (a new ctx on the same folder), a cursor file written before the API
 * is read as it is, files are private (0600), bad keys are refused and a host's ops table
 * (kanald in cluster mode) takes the calls instead of the files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"
#include "host.h"

static const kanal_host_ops_t s_no_ops = { 0 };

static void test_put_then_get_survives_a_restart(void)
{
	char *dir = test_tmpdir("state");
	kanal_ctx_t *ctx = kanal__ctx_new("poller", &s_no_ops, NULL, dir);
	char *value = NULL, path[4096];
	kanal_error_t err;
	struct stat st;

	kanal_error_clear(&err);
	REQUIRE(ctx != NULL);
	CU_ASSERT_EQUAL(kanal_state_get(ctx, "cursor", &value, &err), KANAL_ENOTFOUND);
	CU_ASSERT_PTR_NULL(value);
	CU_ASSERT_EQUAL(kanal_state_put(ctx, "cursor", "r-0042\n", &err), 0);
	CU_ASSERT_EQUAL(kanal_state_put(ctx, "cursor", "r-0043\n", &err), 0); /* replaces */
	kanal__ctx_destroy(&ctx);

	ctx = kanal__ctx_new("poller", &s_no_ops, NULL, dir);
	REQUIRE(ctx != NULL);
	CU_ASSERT_EQUAL(kanal_state_get(ctx, "cursor", &value, &err), 0);
	CU_ASSERT_STRING_EQUAL(value ? value : "", "r-0043\n");
	snprintf(path, sizeof path, "%s/cursor", dir);
	REQUIRE(stat(path, &st) == 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	CU_ASSERT_EQUAL(test_dir_count(dir), 1); /* no temporary file left behind */
done:
	free(value);
	kanal__ctx_destroy(&ctx);
	test_rmdir_r(dir);
	free(dir);
}

static void test_a_cursor_file_from_before_is_read(void)
{
	char *dir = test_tmpdir("state");
	char *file = test_write_file(dir, "cursor", "2026-11-30T08:00:00Z#17\n");
	kanal_ctx_t *ctx = kanal__ctx_new("daycare", &s_no_ops, NULL, dir);
	char *value = NULL;

	REQUIRE(ctx != NULL);
	CU_ASSERT_EQUAL(kanal_state_get(ctx, "cursor", &value, NULL), 0);
	CU_ASSERT_STRING_EQUAL(value ? value : "", "2026-11-30T08:00:00Z#17\n");
done:
	free(value);
	free(file);
	kanal__ctx_destroy(&ctx);
	test_rmdir_r(dir);
	free(dir);
}

static void test_bad_keys_and_no_folder_are_refused(void)
{
	char *dir = test_tmpdir("state");
	kanal_ctx_t *ctx = kanal__ctx_new("poller", &s_no_ops, NULL, dir);
	kanal_ctx_t *bare = kanal__ctx_new("check", &s_no_ops, NULL, NULL);
	char *value = NULL, long_key[KANAL_STATE_KEY_MAX + 2];
	kanal_error_t err;

	REQUIRE(ctx && bare);
	memset(long_key, 'k', sizeof long_key - 1);
	long_key[sizeof long_key - 1] = '\0';
	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kanal_state_put(ctx, "../escape", "x", &err), KANAL_EINVAL);
	CU_ASSERT(strstr(err.text, "state key") != NULL);
	CU_ASSERT_EQUAL(kanal_state_put(ctx, ".hidden", "x", NULL), KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal_state_put(ctx, "a/b", "x", NULL), KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal_state_put(ctx, "", "x", NULL), KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal_state_get(ctx, long_key, &value, NULL), KANAL_EINVAL);
	CU_ASSERT_EQUAL(test_dir_count(dir), 0); /* nothing written */
	CU_ASSERT_EQUAL(kanal_state_put(bare, "cursor", "x", NULL), KANAL_ESTATE);
	CU_ASSERT_EQUAL(kanal_state_get(bare, "cursor", &value, NULL), KANAL_ESTATE);
done:
	kanal__ctx_destroy(&ctx);
	kanal__ctx_destroy(&bare);
	test_rmdir_r(dir);
	free(dir);
}

/* A host store that keeps one value, as kanald's cluster store would. */
static char s_stored[64];

static int s_host_get(kanal_ctx_t *ctx, const char *key, char **value_out, kanal_error_t *err)
{
	(void)ctx;
	(void)err;
	if (!s_stored[0] || strcmp(key, "cursor"))
		return KANAL_ENOTFOUND;
	*value_out = strdup(s_stored);
	return *value_out ? 0 : KANAL_ENOMEM;
}

static int s_host_put(kanal_ctx_t *ctx, const char *key, const char *value, kanal_error_t *err)
{
	(void)ctx;
	(void)key;
	(void)err;
	snprintf(s_stored, sizeof s_stored, "%s", value);
	return 0;
}

static void test_a_host_store_takes_the_calls(void)
{
	static const kanal_host_ops_t ops = { .state_get = s_host_get, .state_put = s_host_put };
	char *dir = test_tmpdir("state");
	kanal_ctx_t *ctx = kanal__ctx_new("poller", &ops, NULL, dir);
	char *value = NULL;

	REQUIRE(ctx != NULL);
	CU_ASSERT_EQUAL(kanal_state_put(ctx, "cursor", "c-9", NULL), 0);
	CU_ASSERT_STRING_EQUAL(s_stored, "c-9");
	CU_ASSERT_EQUAL(test_dir_count(dir), 0); /* not in the folder */
	CU_ASSERT_EQUAL(kanal_state_get(ctx, "cursor", &value, NULL), 0);
	CU_ASSERT_STRING_EQUAL(value ? value : "", "c-9");
done:
	free(value);
	kanal__ctx_destroy(&ctx);
	test_rmdir_r(dir);
	free(dir);
}

TEST_MAIN("state", TEST(test_put_then_get_survives_a_restart),
	  TEST(test_a_cursor_file_from_before_is_read),
	  TEST(test_bad_keys_and_no_folder_are_refused), TEST(test_a_host_store_takes_the_calls))
