/*
 * tests/integration/test_selfservice_measure.c — self-service submissions in the channel
 * strategy's figures: the real kanald with the shipped measure `selfservice-submissions`
 * (routes/municipal.yaml) counts each submitted form under the area "selfservice" and the
 * channel "self-service", per the department that handles it ("unknown" without one), and
 * a form that names its own area and channel is counted by them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kanald.h"
#include "test.h"

#define WAIT 10000

/* The shipped measure's text: from its "  - name:" line to the end of the measures. */
static char *s_shipped_measure(void)
{
	char *file = test_read_file("routes/municipal.yaml", NULL), *from, *to, *out = NULL;

	from = file ? strstr(file, "  - name: selfservice-submissions\n") : NULL;
	to = from ? strstr(from, "\n\n") : NULL;
	if (to)
		out = strndup(from, (size_t)(to - from) + 1);
	free(file);
	return out;
}

/* Sends a submitted form (no personal data: the measure reads none). */
static bool s_submit(kd_t *kd, const char *id, const char *data)
{
	char *text = kd_event("selvbetjening", id, "selfservice.form.submitted", data);
	bool ok = text && kd_send_event(kd, text, "accepted", WAIT, NULL);

	free(text);
	return ok;
}

static void test_submissions_count_in_the_selfservice_area(void)
{
	char *measure = s_shipped_measure(), *routes = NULL, *conf;
	kd_t *kd = NULL;

	REQUIRE(measure != NULL);
	REQUIRE(asprintf(&routes,
			 "routes:\n"
			 "  - name: to-case-system\n"
			 "    match: { type: selfservice.form.submitted }\n"
			 "    to: case-system\n"
			 "measures:\n%s",
			 measure) >= 0);
	conf = kd_config("  - name: case-system\n    plugin: sink\n"
			 "    options: { path: '@DIR@/filed.jsonl' }\n",
			 NULL);
	kd = kd_start("selfservice-measure", conf, routes);
	free(conf);
	REQUIRE(kd != NULL);
	CU_ASSERT(
		s_submit(kd, "form-1",
			 "{\"form\":{\"type\":\"dagtilbud:pladsansoegning:1\"},"
			 "\"sender\":{\"label\":\"Børn og Unge\",\"department\":\"boern-unge\"}}"));
	CU_ASSERT(
		s_submit(kd, "form-2",
			 "{\"form\":{\"type\":\"dagtilbud:pladsansoegning:1\"},"
			 "\"sender\":{\"label\":\"Børn og Unge\",\"department\":\"boern-unge\"}}"));
	CU_ASSERT(s_submit(kd, "form-3", "{\"form\":{\"type\":\"skole:indskrivning:1\"}}"));
	CU_ASSERT(s_submit(kd, "form-4",
			   "{\"form\":{\"type\":\"x\"},\"area\":\"daycare-places\","
			   "\"channel\":\"web\",\"sender\":{\"department\":\"boern-unge\"}}"));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "filed.jsonl"), 4, WAIT), 4);
	CU_ASSERT_EQUAL(kd_measure_total(kd, "area", "selfservice", "department", "boern-unge"), 2);
	CU_ASSERT_EQUAL(kd_measure_total(kd, "area", "selfservice", "department", "unknown"), 1);
	CU_ASSERT_EQUAL(kd_measure_total(kd, "channel", "self-service", "department", "boern-unge"),
			2);
	CU_ASSERT_EQUAL(kd_measure_total(kd, "channel", "self-service", "department", "unknown"),
			1);
	CU_ASSERT_EQUAL(kd_measure_total(kd, "area", "daycare-places", "channel", "web"), 1);
	CU_ASSERT_EQUAL(kd_measure_total(kd, "area", "selfservice", "channel", "web"), -1);
done:
	free(measure);
	free(routes);
	kd_destroy(&kd);
}

TEST_MAIN("selfservice_measure", TEST(test_submissions_count_in_the_selfservice_area))
