/*
 * tests/integration/test_opus_drop.c — the staff connector's second way in: an OPUS-style
 * nightly XML absence export (examples/opus/fravaer-sample.xml, an invented layout) read
 * by the generic filedrop connector with the shipped jq map (examples/opus/absence-map.jq)
 * in the real kanald. The events must be what the staff connector emits for the same
 * changes (docs/plugins/staff.md): the types, the ids hr-absence-<id>-v<version>[-cancel]
 * and the data fields, so that routes/municipal.yaml's staff routes (`staff.>`) take them;
 * the file moves to done/. A next night's file holding an unchanged absence again and a
 * newer version of another delivers only the newer version. The copy of the map in
 * docs/plugins/staff.md is the shipped file's program.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "kanald.h"
#include "test.h"

#define WAIT 10000

/* routes/municipal.yaml's staff-absence-to-institution match, to a sink. */
static const char *s_routes = "routes:\n  - name: staff-absence-to-institution\n"
			      "    match: { type: staff.> }\n    to: out\n";

/* A kanald with a filedrop instance `opus` on @DIR@/drop whose map is the shipped
 * examples/opus/absence-map.jq, pasted as a YAML block. */
static kd_t *s_kanald(const char *tag)
{
	char *map = test_read_file("examples/opus/absence-map.jq", NULL);
	char *block = NULL, *inst = NULL, *conf = NULL;
	size_t len = 0;
	FILE *f;
	kd_t *kd = NULL;

	if (!map)
		return NULL;
	f = open_memstream(&block, &len);
	for (char *line = map, *nl; f && *line; line = nl + 1) {
		nl = strchrnul(line, '\n');
		fprintf(f, "        %.*s\n", (int)(nl - line), line);
		if (!*nl)
			break;
	}
	if (f)
		fclose(f);
	if (block &&
	    asprintf(&inst,
		     "  - name: opus\n    plugin: filedrop\n    options:\n"
		     "      folder: '@DIR@/drop'\n      format: xml\n      pattern: '*.xml'\n"
		     "      record_path: //Fravaer\n      settle: 0s\n      scan_interval: 50ms\n"
		     "      map: |\n%s"
		     "  - name: out\n    plugin: sink\n    options: { path: '@DIR@/out.jsonl' }\n",
		     block) >= 0) {
		conf = kd_config(inst, NULL);
		kd = kd_prepare(tag, conf, s_routes);
	}
	if (kd) {
		mkdir(kd_path(kd, "drop"), 0750);
		if (kd_launch(kd) != 0)
			kd_destroy(&kd);
	}
	free(map);
	free(block);
	free(inst);
	free(conf);
	return kd;
}

static bool s_wait_exists(const char *path)
{
	for (int waited = 0; waited < WAIT; waited += 20) {
		if (access(path, F_OK) == 0)
			return true;
		test_sleep_ms(20);
	}
	return false;
}

/* The sink's n-th event (0-based), a new reference or NULL. */
static json_t *s_event(kd_t *kd, int n)
{
	char *text = test_read_file(kd_path(kd, "out.jsonl"), NULL), *save = NULL;
	json_t *e = NULL;
	int i = 0;

	for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line && !e;
	     line = strtok_r(NULL, "\n", &save), i++)
		if (i == n)
			e = json_loads(line, 0, NULL);
	free(text);
	return e;
}

static const char *s_attr(json_t *e, const char *name)
{
	const char *v = json_string_value(json_object_get(e, name));
	return v ? v : "(none)";
}

static json_t *s_data(json_t *e, const char *name)
{
	return json_object_get(json_object_get(e, "data"), name);
}

static const char *s_str(json_t *e, const char *name)
{
	const char *v = json_string_value(s_data(e, name));
	return v ? v : "(none)";
}

static void test_nightly_file_gives_the_staff_events(void)
{
	kd_t *kd = s_kanald("opus-night");
	char *sample = test_read_file("examples/opus/fravaer-sample.xml", NULL);
	json_t *e = NULL;
	char *log = NULL;

	REQUIRE(kd && sample);
	free(test_write_file(kd_path(kd, "drop"), "fravaer-20261207.xml", sample));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 4, WAIT), 4);
	CU_ASSERT(s_wait_exists(kd_path(kd, "drop/done/fravaer-20261207.xml")));
	CU_ASSERT(access(kd_path(kd, "drop/fravaer-20261207.xml"), F_OK) != 0);

	/* Sickness: the staff connector's id scheme, type and fields; the change's time. */
	e = s_event(kd, 0);
	REQUIRE(e);
	CU_ASSERT_STRING_EQUAL(s_attr(e, "id"), "hr-absence-A-5001-v2");
	CU_ASSERT_STRING_EQUAL(s_attr(e, "type"), "staff.absence.registered");
	CU_ASSERT_STRING_EQUAL(s_attr(e, "source"), "opus");
	CU_ASSERT_STRING_EQUAL(s_attr(e, "time"), "2026-12-06T16:12:40Z");
	CU_ASSERT(json_object_get(e, "subject") == NULL);
	CU_ASSERT_STRING_EQUAL(s_str(e, "absence"), "A-5001");
	CU_ASSERT_EQUAL(json_integer_value(s_data(e, "version")), 2);
	CU_ASSERT(json_is_integer(s_data(e, "version")));
	CU_ASSERT_STRING_EQUAL(s_str(e, "employment"), "E-1001");
	CU_ASSERT_STRING_EQUAL(s_str(e, "employee_cpr"), "1807794260");
	CU_ASSERT_STRING_EQUAL(s_str(e, "department"), "solsikken");
	CU_ASSERT_STRING_EQUAL(s_str(e, "code"), "SYG");
	CU_ASSERT_STRING_EQUAL(s_str(e, "from"), "2026-12-07");
	CU_ASSERT_STRING_EQUAL(s_str(e, "to"), "2026-12-08");
	CU_ASSERT(s_data(e, "hours") == NULL);
	json_decref(e);

	/* Part-day time off in lieu: hours from a decimal comma. */
	e = s_event(kd, 1);
	REQUIRE(e);
	CU_ASSERT_STRING_EQUAL(s_attr(e, "id"), "hr-absence-A-5002-v1");
	CU_ASSERT_STRING_EQUAL(s_str(e, "code"), "AFSP");
	CU_ASSERT_DOUBLE_EQUAL(json_number_value(s_data(e, "hours")), 3.7, 0.0001);
	json_decref(e);

	/* Three weeks in July: a holiday event, main holiday. */
	e = s_event(kd, 2);
	REQUIRE(e);
	CU_ASSERT_STRING_EQUAL(s_attr(e, "id"), "hr-absence-A-5003-v1");
	CU_ASSERT_STRING_EQUAL(s_attr(e, "type"), "staff.holiday.registered");
	CU_ASSERT_EQUAL(json_integer_value(s_data(e, "days")), 15);
	CU_ASSERT(json_is_true(s_data(e, "main_holiday")));
	json_decref(e);

	/* A bare cancellation: -cancel id, employment and department, no CPR, no dates. */
	e = s_event(kd, 3);
	REQUIRE(e);
	CU_ASSERT_STRING_EQUAL(s_attr(e, "id"), "hr-absence-A-4990-v3-cancel");
	CU_ASSERT_STRING_EQUAL(s_attr(e, "type"), "staff.absence.cancelled");
	CU_ASSERT_STRING_EQUAL(s_str(e, "employment"), "E-2002");
	CU_ASSERT_STRING_EQUAL(s_str(e, "department"), "maelkeboetten");
	CU_ASSERT(s_data(e, "employee_cpr") == NULL && s_data(e, "from") == NULL &&
		  s_data(e, "code") == NULL);
	json_decref(e);
	e = NULL;

	/* The next night: A-5002 unchanged again, A-5001 extended (version 3). Only the new
	 * version is delivered: the unchanged one has the same id, a duplicate to kanald. */
	free(test_write_file(
		kd_path(kd, "drop"), "fravaer-20261208.xml",
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<Fravaersliste kommune=\"751\" dannet=\"2026-12-08T02:00:00Z\">\n"
		"  <Fravaer id=\"A-5002\" version=\"1\" handling=\"opret\" medarbejder=\"E-2002\""
		" cpr=\"0404864117\" institution=\"maelkeboetten\" kode=\"AFSP\""
		" fra=\"2026-12-07\" til=\"2026-12-07\" timer=\"3,7\"/>\n"
		"  <Fravaer id=\"A-5001\" version=\"3\" handling=\"opret\" medarbejder=\"E-1001\""
		" cpr=\"1807794260\" institution=\"solsikken\" kode=\"syg\""
		" fra=\"2026-12-07\" til=\"2026-12-10\"/>\n"
		"</Fravaersliste>\n"));
	CU_ASSERT(s_wait_exists(kd_path(kd, "drop/done/fravaer-20261208.xml")));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 5, WAIT), 5);
	test_sleep_ms(300);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 5);
	e = s_event(kd, 4);
	REQUIRE(e);
	CU_ASSERT_STRING_EQUAL(s_attr(e, "id"), "hr-absence-A-5001-v3");
	CU_ASSERT_STRING_EQUAL(s_attr(e, "type"), "staff.absence.registered");
	CU_ASSERT_EQUAL(json_integer_value(s_data(e, "version")), 3);
	CU_ASSERT_STRING_EQUAL(s_str(e, "code"), "SYG");
	CU_ASSERT_STRING_EQUAL(s_str(e, "to"), "2026-12-10");

	/* kanald masks CPR numbers: none in its log. */
	log = kd_log(kd);
	CU_ASSERT(log && !kd_has_clear_cpr(log));
done:
	json_decref(e);
	free(log);
	free(sample);
	kd_destroy(&kd);
}

/* The instance block in docs/plugins/staff.md carries the shipped program line by line (the
 * `map` option takes text, so the doc has a copy: it must not drift from what is tested). */
static void test_doc_carries_the_shipped_map(void)
{
	char *map = test_read_file("examples/opus/absence-map.jq", NULL), *save = NULL;
	char *doc = test_read_file("docs/plugins/staff.md", NULL);
	int lines = 0;

	REQUIRE(map && doc);
	for (char *line = strtok_r(map, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *want;
		if (line[0] == '#')
			continue;
		REQUIRE(asprintf(&want, "\n        %s\n", line) >= 0);
		if (!strstr(doc, want))
			fprintf(stderr, "docs/plugins/staff.md lacks the map line: %s\n", line);
		CU_ASSERT(strstr(doc, want) != NULL);
		free(want);
		lines++;
	}
	CU_ASSERT(lines > 10);
done:
	free(map);
	free(doc);
}

TEST_MAIN("opus_drop", TEST(test_nightly_file_gives_the_staff_events),
	  TEST(test_doc_carries_the_shipped_map))
