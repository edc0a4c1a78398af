/*
 * tests/integration/test_measures.c — the channel strategy's measures in the real kanald
 * (docs/routes.md#measures, docs/design/measures.md): labels taken from the event with
 * their defaults, counts kept in the journal so that a restart loses none, /metrics with
 * one label per measure label (checked by `promtool check metrics` when it is installed),
 * and `kanalctl report channels` run against the running kanald: its numbers per
 * department, the target verdicts and the CSV (a golden file). In memory mode the report
 * says why there is none.
 *
 * Everything listens on 127.0.0.1 on ephemeral ports; every wait is bounded; each test
 * stops its kanald and removes its folder even when an assertion fails.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "golden.h"
#include "http_client.h"
#include "kanald.h"
#include "test.h"

#define WAIT 10000

static const char *s_sinks =
	"  - name: letters\n    plugin: sink\n    options: { path: '@DIR@/letters.jsonl' }\n";

/* Letters sent, by department and channel, as routes/municipal.yaml declares them. */
static const char *s_routes =
	"routes:\n"
	"  - name: to-letters\n    match: { type: post.> }\n    to: letters\n"
	"measures:\n"
	"  - name: letters\n"
	"    title: Breve pr. afdeling\n"
	"    match: { type: post.letter.status, where: data.status == \"sent\" }\n"
	"    labels:\n"
	"      department: { from: data.sender.department, default: unknown }\n"
	"      channel: { from: data.channel, default: unknown }\n"
	"    target: { label: channel, digital: [digital, nemsms], share: 0.8 }\n";

static bool s_letter(kd_t *kd, const char *id, const char *status, const char *department,
		     const char *channel)
{
	char data[256], *text;
	bool ok;

	snprintf(data, sizeof data, "{\"status\":\"%s\"%s%s%s%s%s%s}", status,
		 department ? ",\"sender\":{\"department\":\"" : "", department ? department : "",
		 department ? "\"}" : "", channel ? ",\"channel\":\"" : "", channel ? channel : "",
		 channel ? "\"" : "");
	text = kd_event("measure-test", id, "post.letter.status", data);
	ok = text && kd_send_event(kd, text, "accepted", WAIT, NULL);
	free(text);
	return ok;
}

/* The letters of the first run: skole 3 digital + 1 physical; social 1 digital, 1 nemsms
 * and 1 with no channel (counted as "unknown", never as digital); one with no department;
 * one failed (not counted). */
static bool s_first_run(kd_t *kd)
{
	static const char *const l[][3] = {
		{ "sent", "skole", "digital" },   { "sent", "skole", "digital" },
		{ "sent", "skole", "physical" },  { "sent", "skole", "digital" },
		{ "sent", "social", "digital" },  { "sent", "social", "nemsms" },
		{ "sent", "social", NULL },       { "sent", NULL, "digital" },
		{ "failed", "skole", "digital" },
	};

	for (size_t k = 0; k < sizeof l / sizeof *l; k++) {
		char id[16];
		snprintf(id, sizeof id, "l-%zu", k);
		if (!s_letter(kd, id, l[k][0], l[k][1], l[k][2]))
			return false;
	}
	return kd_wait_lines(kd_path(kd, "letters.jsonl"), 9, WAIT) == 9;
}

/* The total the status reports for the letters measure's series (department, channel). */
static json_int_t s_status_total(kd_t *kd, const char *department, const char *channel)
{
	return kd_measure_total(kd, "department", department, "channel", channel);
}

/* Runs the built kanalctl with args (a shell-quoted string) against kd's admin socket;
 * returns its exit status and its stdout in *out (malloc'd). */
static int s_kanalctl(kd_t *kd, const char *args, char **out)
{
	char bin[PATH_MAX], *cmd = NULL, *path = NULL;
	int st = -1;

	*out = NULL;
	if (!realpath(test_build_dir(), bin))
		return -1;
	if (asprintf(&path, "%s/kanalctl.out", kd->dir) >= 0 &&
	    asprintf(&cmd, "env -u KANAL_CONF '%s/bin/kanalctl' --admin '%s' %s > '%s' 2>&1", bin,
		     kd->admin, args, path) >= 0) {
		st = system(cmd);
		st = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		*out = test_read_file(path, NULL);
	}
	free(cmd);
	free(path);
	return st;
}

/* Today in kanald's (and our) time zone: the day the counts of this test are kept under. */
static void s_today(char *buf, size_t size)
{
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(buf, size, "%Y-%m-%d", &tm);
}

/* Counts survive a restart; the report sums them per department against the target, as
 * text and as CSV; a period without counts reports zeros. */
static void test_counts_survive_a_restart_and_make_the_report(void)
{
	char *conf = kd_config(s_sinks, NULL), *out = NULL, args[256], today[16];
	kd_t *kd = kd_start("measures", conf, s_routes);
	json_t *lines = NULL;

	free(conf);
	REQUIRE(kd != NULL);
	REQUIRE(s_first_run(kd));
	CU_ASSERT_EQUAL(s_status_total(kd, "skole", "digital"), 3);
	CU_ASSERT_EQUAL(s_status_total(kd, "social", "unknown"), 1);
	CU_ASSERT_EQUAL(s_status_total(kd, "unknown", "digital"), 1);
	REQUIRE(kd_stop(kd, SIGTERM, WAIT) == 0);
	REQUIRE(kd_restart(kd) == 0);

	/* The restart lost nothing, and counting goes on from there. */
	CU_ASSERT_EQUAL(s_status_total(kd, "skole", "digital"), 3);
	CU_ASSERT_EQUAL(s_status_total(kd, "skole", "physical"), 1);
	CU_ASSERT_EQUAL(s_status_total(kd, "social", "nemsms"), 1);
	REQUIRE(s_letter(kd, "l-after", "sent", "skole", "digital"));
	CU_ASSERT_EQUAL(s_status_total(kd, "skole", "digital"), 4);

	/* skole: 5 letters, 4 digital = 80 % (met); social: 2 of 3 (below); all: 7 of 9. */
	s_today(today, sizeof today);
	snprintf(args, sizeof args, "report channels --from %s --to %s --by department", today,
		 today);
	CU_ASSERT_EQUAL(s_kanalctl(kd, args, &out), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "letters: Breve pr. afdeling — target 80% by "
						 "digital, nemsms"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "  skole                       5        4   "
						 "80.0%      80%  met\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "  social                      3        2   "
						 "66.7%      80%  below\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "  (all)                       9        7   "
						 "77.8%      80%  below\n"));
	free(out);
	out = NULL;

	/* The CSV, line by line: the golden file holds the lines as a JSON array. An area
	 * column the measure lacks stays empty. */
	snprintf(args, sizeof args, "report channels --from %s --to %s --by department,area --csv",
		 today, today);
	CU_ASSERT_EQUAL(s_kanalctl(kd, args, &out), 0);
	lines = json_array();
	for (char *save = NULL, *l = strtok_r(out ?: "", "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save))
		json_array_append_new(lines, json_string(l));
	CU_ASSERT_TRUE(golden_match(lines, "report_channels_csv", NULL));
	free(out);
	out = NULL;

	/* Another year: nothing counted, every group empty. */
	CU_ASSERT_EQUAL(
		s_kanalctl(kd, "report channels --from 2020-01-01 --to 2020-12-31 --csv", &out), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "letters,(all),0,0,,0.800,-\n"));
	free(out);
	out = NULL;
	CU_ASSERT_EQUAL(s_kanalctl(kd, "report channels --from 2026-13-01", &out), 2);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	json_decref(lines);
	free(out);
	kd_destroy(&kd);
}

/* /metrics has one sample per label combination with every label, restored after a
 * restart, in a text promtool accepts. */
static void test_metrics_carry_the_labels(void)
{
	char *conf = kd_config(s_sinks, NULL), url[512], *check = NULL;
	kd_t *kd = kd_start("mmetrics", conf, s_routes);
	http_answer_t a = { 0 };
	char *in = NULL, *cmd = NULL;
	int st;

	free(conf);
	REQUIRE(kd != NULL);
	REQUIRE(s_first_run(kd));
	REQUIRE(kd_stop(kd, SIGTERM, WAIT) == 0);
	REQUIRE(kd_restart(kd) == 0);
	snprintf(url, sizeof url, "%s/metrics", kd->admin_http);
	http_request(NULL, &(http_request_t){ .url = url }, &a);
	CU_ASSERT_EQUAL(a.status, 200);
	CU_ASSERT_PTR_NOT_NULL(
		strstr(a.body ?: "", "kanal_measure_total{measure=\"letters\",department=\"skole\","
				     "channel=\"digital\"} 3\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(a.body ?: "",
				      "kanal_measure_total{measure=\"letters\",department="
				      "\"social\",channel=\"unknown\"} 1\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(a.body ?: "",
				      "kanal_measure_total{measure=\"letters\",department="
				      "\"unknown\",channel=\"digital\"} 1\n"));
	in = test_write_file(kd->dir, "metrics.txt", a.body ?: "");
	if (in && asprintf(&cmd, "promtool check metrics < '%s' > '%s/promtool.out' 2>&1", in,
			   kd->dir) >= 0) {
		st = system(cmd);
		st = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		if (st == 127) {
			fprintf(stderr,
				"(promtool is not installed: the format check is skipped) ");
		} else {
			check = test_read_file(kd_path(kd, "promtool.out"), NULL);
			if (st != 0)
				fprintf(stderr, "\npromtool: %s\n", check ?: "");
			CU_ASSERT_EQUAL(st, 0);
		}
	}
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	http_answer_clear(&a);
	free(in);
	free(cmd);
	free(check);
	kd_destroy(&kd);
}

/* Without the journal there is no per-day history: the report says so, and kanalctl exits
 * with 1. */
static void test_memory_mode_has_no_report(void)
{
	char *conf = kd_config(s_sinks, "journal: { mode: memory }\n"), *out = NULL;
	kd_t *kd = kd_start("mmemory", conf, s_routes);

	free(conf);
	REQUIRE(kd != NULL);
	REQUIRE(s_letter(kd, "m-1", "sent", "skole", "digital"));
	CU_ASSERT_EQUAL(s_status_total(kd, "skole", "digital"), 1);
	CU_ASSERT_EQUAL(s_kanalctl(kd, "report channels", &out), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out ?: "", "memory mode"));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	free(out);
	kd_destroy(&kd);
}

TEST_MAIN("measures", TEST(test_counts_survive_a_restart_and_make_the_report),
	  TEST(test_metrics_carry_the_labels), TEST(test_memory_mode_has_no_report))
