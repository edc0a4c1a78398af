/*
 * test_contrib — what contrib/ ships for monitoring: the Prometheus alert rules pass
 * `promtool check rules` and their unit tests (`promtool test rules`, one test per alert),
 * and the Grafana dashboard is JSON whose every query names metrics kanald exports (the
 * table in docs/operations.md). promtool comes from the Debian package prometheus
 * (scripts/deps.sh); where it is missing the promtool checks are skipped with a message.
 */
#include <ctype.h>
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "test.h"

#define RULES "contrib/prometheus/kanal-alerts.yml"
#define RULE_TESTS "contrib/prometheus/kanal-alerts.test.yml"
#define DASHBOARD "contrib/grafana/kanal-dashboard.json"

/* Runs cmd through the shell, its output kept in *out; returns the exit status. */
static int s_run(const char *cmd, char **out)
{
	char buf[4096];
	size_t n = 0;
	FILE *p = popen(cmd, "r");
	int st;

	*out = NULL;
	if (!p)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, p);
	buf[n] = '\0';
	st = pclose(p);
	*out = strdup(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool s_have_promtool(void)
{
	if (system("command -v promtool >/dev/null 2>&1") == 0)
		return true;
	fprintf(stderr, "    skipped: promtool is not installed (Debian package 'prometheus'; "
			"scripts/deps.sh installs it)\n");
	return false;
}

/* Every metric name (kanal_… or process_…) in text is one docs/operations.md documents
 * (a histogram's _bucket/_sum/_count are its family); *count is how many were seen. */
static bool s_names_documented(const char *text, const char *doc, size_t *count)
{
	regex_t re;
	regmatch_t m;
	bool ok = true;

	if (regcomp(&re, "(kanal|process)_[a-z_]+", REG_EXTENDED))
		return false;
	for (const char *p = text; !regexec(&re, p, 1, &m, 0); p += m.rm_eo) {
		char name[128], want[140];
		size_t len = (size_t)(m.rm_eo - m.rm_so);

		if (len >= sizeof name)
			continue;
		memcpy(name, p + m.rm_so, len);
		name[len] = '\0';
		if (len > 7 && !strcmp(name + len - 7, "_bucket"))
			name[len - 7] = '\0';
		snprintf(want, sizeof want, "| `%s` |", name);
		(*count)++;
		if (!strstr(doc, want)) {
			fprintf(stderr, "    %s is not a metric docs/operations.md lists\n", name);
			ok = false;
		}
	}
	regfree(&re);
	return ok;
}

static void test_alert_rules_check_and_pass_their_unit_tests(void)
{
	char *out = NULL;
	int st;

	if (!s_have_promtool())
		return;
	st = s_run("promtool check rules " RULES " 2>&1", &out);
	if (st)
		fprintf(stderr, "    promtool check rules: exit %d:\n%s\n", st, out ? out : "");
	CU_ASSERT_EQUAL(st, 0);
	free(out);
	st = s_run("promtool test rules " RULE_TESTS " 2>&1", &out);
	if (st)
		fprintf(stderr, "    promtool test rules: exit %d:\n%s\n", st, out ? out : "");
	CU_ASSERT_EQUAL(st, 0);
	free(out);
}

/* Each alert has at least one unit test, and the rules use only documented metrics. */
static void test_every_alert_is_tested_and_documented(void)
{
	char *rules = test_read_file(RULES, NULL), *tests = test_read_file(RULE_TESTS, NULL),
	     *doc = test_read_file("docs/operations.md", NULL);
	size_t alerts = 0, names = 0;

	REQUIRE(rules && tests && doc);
	for (char *p = strstr(rules, "- alert: "); p; p = strstr(p + 1, "- alert: ")) {
		char name[80], want[100];

		if (sscanf(p, "- alert: %79s", name) != 1)
			continue;
		alerts++;
		snprintf(want, sizeof want, "alertname: %s\n", name);
		if (!strstr(tests, want))
			fprintf(stderr, "    alert %s has no unit test in " RULE_TESTS "\n", name);
		CU_ASSERT_PTR_NOT_NULL(strstr(tests, want));
		/* docs/operations.md lists the shipped alerts by name. */
		CU_ASSERT_PTR_NOT_NULL(strstr(doc, name));
	}
	CU_ASSERT(alerts >= 9);
	CU_ASSERT(s_names_documented(rules, doc, &names));
	CU_ASSERT(names >= 9);
done:
	free(rules);
	free(tests);
	free(doc);
}

/* The dashboard is valid JSON, each panel's queries name exported metrics, and it covers
 * what docs/operations.md promises: rates per route and destination, latency, queue depth,
 * in flight, dead letters, the journal and the measures. */
static void test_dashboard_queries_exported_metrics(void)
{
	json_error_t jerr;
	json_t *dash = json_load_file(DASHBOARD, 0, &jerr), *panel, *target;
	char *doc = test_read_file("docs/operations.md", NULL), *all = NULL;
	size_t i, k, len = 0, names = 0;
	FILE *mem = open_memstream(&all, &len);
	static const char *const covers[] = {
		"kanal_route_matched_total",
		"kanal_destination_delivered_total",
		"kanal_delivery_latency_seconds_bucket",
		"kanal_destination_queue_depth",
		"kanal_destination_in_flight",
		"kanal_dead_letters",
		"kanal_journal_open_events",
		"kanal_measure_total",
	};

	if (!dash)
		fprintf(stderr, "    " DASHBOARD ":%d: %s\n", jerr.line, jerr.text);
	REQUIRE(dash && doc && mem);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(dash, "uid")), "kanal-overview");
	json_array_foreach(json_object_get(dash, "panels"), i, panel)
	{
		json_array_foreach(json_object_get(panel, "targets"), k, target) fprintf(
			mem, "%s\n", json_string_value(json_object_get(target, "expr")) ?: "");
	}
	fclose(mem);
	mem = NULL;
	for (size_t c = 0; c < sizeof covers / sizeof *covers; c++) {
		if (!strstr(all, covers[c]))
			fprintf(stderr, "    the dashboard does not show %s\n", covers[c]);
		CU_ASSERT_PTR_NOT_NULL(strstr(all, covers[c]));
	}
	CU_ASSERT(s_names_documented(all, doc, &names));
	CU_ASSERT(names >= 20);
done:
	if (mem)
		fclose(mem);
	free(all);
	free(doc);
	json_decref(dash);
}

TEST_MAIN("contrib", TEST(test_alert_rules_check_and_pass_their_unit_tests),
	  TEST(test_every_alert_is_tested_and_documented),
	  TEST(test_dashboard_queries_exported_metrics))
