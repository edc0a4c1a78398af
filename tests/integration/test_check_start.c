/*
 * tests/integration/test_check_start.c — check means start (issue 13): every broken config
 * in tests/data/check/NAME.yaml is fed to `kanalctl check`, `kanald --check` and a real
 * kanald start. All three must refuse it and report the same errors, exactly the lines of
 * NAME.expected (the test's folder written @DIR@), each at its file:line:col — so that an
 * `ExecStartPre=kanald --check` or a `kanalctl check` before a reload never says ok for a
 * config kanald then refuses, and every mistake in a file is reported in one run. A good
 * config passes all three, so the comparison can fail both ways.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kanald.h"
#include "test.h"

#define WAIT 8000 /* ms: the bound of every wait for kanald to exit */

static const char *s_routes = "routes:\n"
			      "  - name: all\n"
			      "    match: { type: '>' }\n"
			      "    to: sink\n";

/* `kanalctl check` and `kanald --check` on kd's config, their output appended to
 * out_path. Each returns the program's exit status. */
static int s_kanalctl_check(const kd_t *kd, const char *out_path)
{
	char *args[] = { "kanalctl", "-c", kd->conf_path, "check", NULL };

	return test_run_program("bin/kanalctl", args, out_path);
}

static int s_kanald_check(const kd_t *kd, const char *out_path)
{
	char *args[] = { "kanald", "-c", kd->conf_path, "--check", NULL };

	return test_run_program("bin/kanald", args, out_path);
}

/* The error lines of a program's output ("FILE:LINE:COL: error: …"), in order, with the
 * test's folder written @DIR@: what the three must agree on. Returns a new string. */
static char *s_errors(const char *output, const char *dir)
{
	size_t dir_len = strlen(dir), cap = strlen(output ? output : "") + 1, n = 0;
	char *out = calloc(1, cap);
	const char *line = output;

	while (out && line && *line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char *copy = strndup(line, len), *at;

		if (copy && strstr(copy, ": error: ") && copy[0] != ' ') {
			for (const char *p = copy; *p;) {
				at = strstr(p, dir);
				if (!at) {
					n += (size_t)snprintf(out + n, cap - n, "%s", p);
					break;
				}
				n += (size_t)snprintf(out + n, cap - n, "%.*s@DIR@", (int)(at - p),
						      p);
				p = at + dir_len;
			}
			n += (size_t)snprintf(out + n, cap - n, "\n");
		}
		free(copy);
		line = end ? end + 1 : NULL;
	}
	return out;
}

/* Number of lines in text. */
static size_t s_lines(const char *text)
{
	size_t n = 0;

	for (; text && *text; text++)
		n += *text == '\n';
	return n;
}

/* Compares what `who` reported with the expected lines, printing both when they differ. */
static void s_agrees(const char *name, const char *who, const char *got, const char *expected)
{
	CU_ASSERT_STRING_EQUAL(got, expected);
	if (strcmp(got, expected))
		fprintf(stderr, "\n    %s: %s reported:\n%s    expected:\n%s", name, who, got,
			expected);
}

/* Prepares tests/data/check/<name>.yaml in a fresh folder holding an admin token file of
 * the given mode (the configs that name it). */
static kd_t *s_prepare(const char *name, mode_t token_mode)
{
	char path[512], tag[128], *conf, *token;
	kd_t *kd;

	snprintf(path, sizeof path, "tests/data/check/%s.yaml", name);
	snprintf(tag, sizeof tag, "check-%s", name);
	conf = test_read_file(path, NULL);
	if (!conf)
		return NULL;
	kd = kd_prepare(tag, conf, s_routes);
	free(conf);
	if (!kd)
		return NULL;
	token = test_write_file(kd->dir, "admin.token", "0123456789abcdef0123\n");
	if (token)
		chmod(token, token_mode);
	free(token);
	return kd;
}

/* Feeds tests/data/check/<name>.yaml to the three and compares each one's errors with
 * <name>.expected. Returns the number of expected errors. */
static size_t s_three_agree(const char *name)
{
	char path[512], *expected, *out_path = NULL, *text, *got;
	size_t n = 0;
	kd_t *kd = s_prepare(name, 0644);

	snprintf(path, sizeof path, "tests/data/check/%s.expected", name);
	expected = test_read_file(path, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(expected);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	n = s_lines(expected);

	/* kanalctl check: "not ok" is exit 1. */
	CU_ASSERT(asprintf(&out_path, "%s/kanalctl.out", kd->dir) > 0);
	CU_ASSERT_EQUAL(s_kanalctl_check(kd, out_path), 1);
	text = test_read_file(out_path, NULL);
	got = s_errors(text, kd->dir);
	s_agrees(name, "kanalctl check", got, expected);
	free(got);
	free(text);
	free(out_path);

	/* kanald --check. */
	CU_ASSERT(asprintf(&out_path, "%s/check.out", kd->dir) > 0);
	CU_ASSERT_EQUAL(s_kanald_check(kd, out_path), 1);
	text = test_read_file(out_path, NULL);
	got = s_errors(text, kd->dir);
	s_agrees(name, "kanald --check", got, expected);
	free(got);
	free(text);
	free(out_path);

	/* The real start refuses, with the same errors, and binds nothing. */
	CU_ASSERT_EQUAL(kd_launch(kd), -1);
	kd_wait_exit(kd, WAIT);
	CU_ASSERT_NOT_EQUAL(kd->exit_status, 0);
	text = kd_log(kd);
	got = s_errors(text, kd->dir);
	s_agrees(name, "kanald", got, expected);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "not started"));
	free(got);
	free(text);
	free(expected);
	kd_destroy(&kd);
	return n;
}

static void test_token_file_others_may_read(void)
{
	CU_ASSERT_EQUAL(s_three_agree("token-mode"), 1);
}

static void test_source_option_out_of_range(void)
{
	CU_ASSERT_EQUAL(s_three_agree("source-count"), 1);
}

/* The cpr plugin's check callback reads the certificate: no init needed to know. */
static void test_missing_certificate_file(void)
{
	CU_ASSERT_EQUAL(s_three_agree("missing-certificate"), 1);
}

/* The letter plugin's check finds that the spool folder is missing, without the probe
 * file its init writes. */
static void test_missing_spool_folder(void)
{
	CU_ASSERT_EQUAL(s_three_agree("missing-spool"), 1);
}

/* A state_dir kanald cannot make and a journal folder that does not exist: what the start
 * would trip over, found by the checks. */
static void test_folders_a_start_needs(void)
{
	CU_ASSERT_EQUAL(s_three_agree("folders"), 2);
}

/* A port kanald.yaml gives (admin_http) and one a plugin option gives (the http ingress's
 * listen, refused by its check): both reported, each at its line. */
static void test_ports_out_of_range(void)
{
	CU_ASSERT_EQUAL(s_three_agree("bad-port"), 2);
}

/* A loader error in kanald.yaml used to stop the checks before the instances' options:
 * now both mistakes come out of one run. */
static void test_two_mistakes_in_one_file(void)
{
	CU_ASSERT_EQUAL(s_three_agree("two-mistakes"), 2);
}

/* Admin HTTP safe by default: on a non-loopback address without admin_token_file it is
 * refused naming the setting, even with security.allow_plain. */
static void test_admin_http_beyond_loopback_needs_a_token(void)
{
	CU_ASSERT_EQUAL(s_three_agree("admin-open"), 1);
}

/* A start refused for one instance has made nothing for another: the cpr instance's
 * audit log, which its init creates, is not there — every instance is validated before
 * any init runs. */
static void test_refused_start_makes_nothing(void)
{
	char *conf = kd_config(
		     "  - name: cpr\n"
		     "    plugin: cpr\n"
		     "    options:\n"
		     "      endpoint: https://cpr.example.dk/cpr\n"
		     "      service_agreement_uuid: 6f1c7c44-1b0a-4c52-9a8e-1d2f0c6b7a01\n"
		     "      user_system_uuid: 0c9b1a7e-3d5f-4e21-8b6a-2a7c9e4d5f02\n"
		     "      user_uuid: 9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c03\n"
		     "      audit_log: '@DIR@/cpr-audit.log'\n"
		     "  - name: gen\n"
		     "    plugin: source\n"
		     "    options: { type: x.y, count: -5 }\n"
		     "  - name: sink\n    plugin: sink\n",
		     NULL),
	     *log;
	kd_t *kd = kd_prepare("check-nothing-made", conf, s_routes);

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT_EQUAL(kd_launch(kd), -1);
	kd_wait_exit(kd, WAIT);
	log = kd_log(kd);
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "option 'count' must be at least 0"));
	CU_ASSERT_NOT_EQUAL(access(kd_path(kd, "cpr-audit.log"), F_OK), 0);
	free(log);
	kd_destroy(&kd);
}

/* Checking an httppoll instance compiles its jq map — and unloads the plugin afterwards:
 * the compile must leave no thread running in the unloaded code (jq's watchdog starts with
 * the first run). Both checks say ok, and the start runs the map. */
static void test_checking_a_map_then_starting(void)
{
	char *conf = kd_config("  - name: api\n"
			       "    plugin: httppoll\n"
			       "    options:\n"
			       "      url: http://127.0.0.1:1/items\n"
			       "      map: '{type: \"vendor.\\(.kind)\"}'\n"
			       "  - name: sink\n    plugin: sink\n",
			       NULL),
	     *out_path = NULL;
	kd_t *kd = kd_prepare("check-map", conf, s_routes);

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT(asprintf(&out_path, "%s/checks.out", kd->dir) > 0);
	CU_ASSERT_EQUAL(s_kanalctl_check(kd, out_path), 0);
	CU_ASSERT_EQUAL(s_kanald_check(kd, out_path), 0);
	CU_ASSERT_EQUAL(kd_launch(kd), 0);
	free(out_path);
	kd_destroy(&kd);
}

/* A plugin check's warning (plain http allowed to another machine) is shown at its option
 * the way errors are, and does not fail the check. */
static void test_check_warnings_at_their_option(void)
{
	char *conf = kd_config("  - name: hook\n"
			       "    plugin: http\n"
			       "    options:\n"
			       "      url: http://hooks.example.dk/in\n"
			       "      allow_plain_http: true\n"
			       "  - name: sink\n    plugin: sink\n",
			       NULL),
	     *out_path = NULL, *text;
	kd_t *kd = kd_prepare("check-warning", conf, s_routes);

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT(asprintf(&out_path, "%s/check.out", kd->dir) > 0);
	CU_ASSERT_EQUAL(s_kanalctl_check(kd, out_path), 0);
	text = test_read_file(out_path, NULL);
	/* kd_config's instances start at line 14; url is the fourth line of the entry. */
	CU_ASSERT_PTR_NOT_NULL(text &&
			       strstr(text, "kanald.yaml:17:7: warning: instance 'hook': "
					    "option 'url': plain http to 'hooks.example.dk'"));
	if (text && !strstr(text, "kanald.yaml:17:7: warning"))
		fprintf(stderr, "\n%s", text);
	free(text);
	free(out_path);
	kd_destroy(&kd);
}

/* The same config with its token file private: the two checks say ok, and kanald starts
 * (and serves the admin API with the token). */
static void test_good_config_passes_all_three(void)
{
	char *out_path = NULL, *text;
	kd_t *kd = s_prepare("token-mode", 0600);

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT(asprintf(&out_path, "%s/checks.out", kd->dir) > 0);
	CU_ASSERT_EQUAL(s_kanalctl_check(kd, out_path), 0);
	CU_ASSERT_EQUAL(s_kanald_check(kd, out_path), 0);
	text = test_read_file(out_path, NULL);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, ": ok"));
	CU_ASSERT_PTR_NULL(text ? strstr(text, "error") : "no output");
	free(text);
	free(out_path);
	CU_ASSERT_EQUAL(kd_launch(kd), 0);
	CU_ASSERT_STRING_NOT_EQUAL(kd->admin_http, "");
	kd_destroy(&kd);
}

TEST_MAIN("check_start", TEST(test_token_file_others_may_read),
	  TEST(test_source_option_out_of_range), TEST(test_missing_certificate_file),
	  TEST(test_missing_spool_folder), TEST(test_folders_a_start_needs),
	  TEST(test_ports_out_of_range), TEST(test_two_mistakes_in_one_file),
	  TEST(test_admin_http_beyond_loopback_needs_a_token),
	  TEST(test_refused_start_makes_nothing), TEST(test_checking_a_map_then_starting),
	  TEST(test_check_warnings_at_their_option), TEST(test_good_config_passes_all_three))
