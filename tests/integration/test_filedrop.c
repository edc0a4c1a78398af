/*
 * tests/integration/test_filedrop.c — the filedrop connector (plugins/filedrop) as the
 * real .so in the real kanald, on a temporary drop folder: JSON Lines and CSV (quoted
 * fields, ISO-8859-1) records become events and the file moves to done/; a file with a bad
 * record goes to error/ with a .reason naming the line and emits nothing; a file that has
 * not settled is not read; a symlink is refused; SIGKILL mid-file and a restart deliver
 * every record once (distinct ids), the file ending in done/. XML exports (ISO-8859-1
 * declared in the file) give one event per element record_path selects, shaped by a jq
 * `map:`; a DOCTYPE (entities) or broken XML, and a record the map fails on, refuse the
 * file with the line in its .reason.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "kanald.h"
#include "test.h"

#define WAIT 10000

static const char *s_routes = "routes:\n  - name: files\n    match: { type: hr.> }\n"
			      "    to: out\n";

/* A kanald with a filedrop instance on @DIR@/drop (made first) with `opts`. */
static kd_t *s_kanald(const char *tag, const char *opts)
{
	char *inst, *conf;
	kd_t *kd;

	if (asprintf(&inst,
		     "  - name: drop\n    plugin: filedrop\n    options:\n"
		     "      folder: '@DIR@/drop'\n      type: hr.record.exported\n"
		     "      scan_interval: 50ms\n%s"
		     "  - name: out\n    plugin: sink\n    options: { path: '@DIR@/out.jsonl' }\n",
		     opts) < 0)
		return NULL;
	conf = kd_config(inst, NULL);
	kd = kd_prepare(tag, conf, s_routes);
	free(inst);
	free(conf);
	if (kd) {
		mkdir(kd_path(kd, "drop"), 0750);
		if (kd_launch(kd) != 0)
			kd_destroy(&kd);
	}
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

static const char *s_field(json_t *e, const char *name)
{
	return json_string_value(json_object_get(json_object_get(e, "data"), name));
}

static void test_jsonl_file_becomes_events(void)
{
	kd_t *kd = s_kanald("fd-jsonl", "      settle: 0s\n");
	json_t *e = NULL;

	REQUIRE(kd);
	free(test_write_file(kd_path(kd, "drop"), "export-1.jsonl",
			     "{\"n\":\"1\"}\n\n{\"n\":\"2\"}\n{\"n\":\"3\"}\n"));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 3, WAIT), 3);
	CU_ASSERT(s_wait_exists(kd_path(kd, "drop/done/export-1.jsonl")));
	CU_ASSERT(access(kd_path(kd, "drop/export-1.jsonl"), F_OK) != 0);
	e = s_event(kd, 2);
	REQUIRE(e);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "type")), "hr.record.exported");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "source")), "drop");
	CU_ASSERT_STRING_EQUAL(s_field(e, "n"), "3");
	/* Line 4 of the file (a blank line 2 is skipped). */
	CU_ASSERT(strstr(json_string_value(json_object_get(e, "id")), "-4") != NULL);
done:
	json_decref(e);
	kd_destroy(&kd);
}

static void test_csv_latin1_with_quotes(void)
{
	kd_t *kd = s_kanald("fd-csv", "      settle: 0s\n      format: csv\n"
				      "      delimiter: ';'\n      encoding: iso-8859-1\n"
				      "      id_field: nr\n      pattern: '*.csv'\n");
	json_t *e = NULL;

	REQUIRE(kd);
	/* "Søren" in ISO-8859-1 (ø is 0xF8), a quoted field holding the delimiter and a quote. */
	free(test_write_file(kd_path(kd, "drop"), "ignored.txt", "nr;navn\n9;x\n"));
	free(test_write_file(kd_path(kd, "drop"), "payroll.csv",
			     "nr;navn;note\r\n"
			     "e-1;S\xf8ren;\"a;b \"\"c\"\"\"\r\n"
			     "e-2;Anna;\r\n"));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 2, WAIT), 2);
	e = s_event(kd, 0);
	REQUIRE(e);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "id")), "e-1");
	CU_ASSERT_STRING_EQUAL(s_field(e, "navn"), "S\xc3\xb8ren");
	CU_ASSERT_STRING_EQUAL(s_field(e, "note"), "a;b \"c\"");
	CU_ASSERT(s_wait_exists(kd_path(kd, "drop/done/payroll.csv")));
	/* A name the pattern does not match stays untouched. */
	CU_ASSERT(access(kd_path(kd, "drop/ignored.txt"), F_OK) == 0);
done:
	json_decref(e);
	kd_destroy(&kd);
}

static void test_bad_record_refuses_the_file(void)
{
	kd_t *kd = s_kanald("fd-bad", "      settle: 0s\n      format: csv\n");
	char *reason = NULL;

	REQUIRE(kd);
	free(test_write_file(kd_path(kd, "drop"), "a-bad.csv",
			     "id,name\n1,ok\n2,\"broken\n3,ok\n"));
	free(test_write_file(kd_path(kd, "drop"), "b-good.csv", "id,name\n1,fine\n"));
	REQUIRE(s_wait_exists(kd_path(kd, "drop/error/a-bad.csv")));
	reason = test_read_file(kd_path(kd, "drop/error/a-bad.csv.reason"), NULL);
	CU_ASSERT(reason && strstr(reason, "line 3") && strstr(reason, "quoted"));
	/* Nothing of the refused file went out; the good file after it did. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 1, WAIT), 1);
	test_sleep_ms(200);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 1);
	CU_ASSERT(s_wait_exists(kd_path(kd, "drop/done/b-good.csv")));
done:
	free(reason);
	kd_destroy(&kd);
}

static void test_xml_records_mapped_by_jq(void)
{
	kd_t *kd = s_kanald("fd-xml",
			    "      settle: 0s\n      format: xml\n"
			    "      pattern: '*.xml'\n      record_path: //loenseddel\n"
			    "      map: '{id: \"ls-\\(.nr)\", subject: \"medarbejder-\\(.nr)\", "
			    "data: {navn, beloeb: (.beloeb | tonumber), fil: $file.name, "
			    "linje: $file.line}}'\n");
	json_t *e = NULL;
	char *reason = NULL;

	REQUIRE(kd);
	free(test_write_file(
		kd_path(kd, "drop"), "a-loen.xml",
		"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n"
		"<eksport periode=\"2024-05\">\n"
		"  <loenseddel nr=\"7\"><navn>S\xf8ren</navn><beloeb>31000.5</beloeb>"
		"</loenseddel>\n"
		"  <andet/>\n"
		"  <loenseddel nr=\"8\">\n    <navn>Anna</navn><beloeb>29000</beloeb>\n"
		"  </loenseddel>\n</eksport>\n"));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 2, WAIT), 2);
	CU_ASSERT(s_wait_exists(kd_path(kd, "drop/done/a-loen.xml")));
	e = s_event(kd, 0);
	REQUIRE(e);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "id")), "ls-7");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "type")), "hr.record.exported");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "subject")), "medarbejder-7");
	CU_ASSERT_STRING_EQUAL(s_field(e, "navn"), "S\xc3\xb8ren");
	CU_ASSERT_DOUBLE_EQUAL(
		json_number_value(json_object_get(json_object_get(e, "data"), "beloeb")), 31000.5,
		0.001);
	CU_ASSERT_STRING_EQUAL(s_field(e, "fil"), "a-loen.xml");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(e, "data"), "linje")),
			3);
	json_decref(e);
	e = s_event(kd, 1);
	CU_ASSERT(e && !strcmp(json_string_value(json_object_get(e, "id")), "ls-8"));
	/* An entity declaration is refused before parsing: nothing is expanded. */
	free(test_write_file(kd_path(kd, "drop"), "b-entity.xml",
			     "<?xml version=\"1.0\"?>\n<!DOCTYPE e [<!ENTITY x SYSTEM "
			     "\"file:///etc/passwd\">]>\n<e><loenseddel nr=\"9\"><navn>&x;</navn>"
			     "</loenseddel></e>\n"));
	REQUIRE(s_wait_exists(kd_path(kd, "drop/error/b-entity.xml.reason")));
	reason = test_read_file(kd_path(kd, "drop/error/b-entity.xml.reason"), NULL);
	CU_ASSERT(reason && strstr(reason, "DOCTYPE"));
	free(reason);
	/* Broken XML names its line. */
	free(test_write_file(kd_path(kd, "drop"), "c-broken.xml",
			     "<e>\n<loenseddel nr=\"1\">\n<navn>x</nav>\n</e>\n"));
	REQUIRE(s_wait_exists(kd_path(kd, "drop/error/c-broken.xml.reason")));
	reason = test_read_file(kd_path(kd, "drop/error/c-broken.xml.reason"), NULL);
	CU_ASSERT(reason && strstr(reason, "line 3") && strstr(reason, "not well-formed"));
	free(reason);
	/* A record the map fails on (no number) refuses the whole file, naming the line. */
	free(test_write_file(kd_path(kd, "drop"), "d-map.xml",
			     "<e>\n<loenseddel nr=\"1\"><beloeb>1</beloeb></loenseddel>\n"
			     "<loenseddel nr=\"2\"><beloeb>mange</beloeb></loenseddel>\n</e>\n"));
	REQUIRE(s_wait_exists(kd_path(kd, "drop/error/d-map.xml.reason")));
	reason = test_read_file(kd_path(kd, "drop/error/d-map.xml.reason"), NULL);
	CU_ASSERT(reason && strstr(reason, "line 3") && strstr(reason, "map:"));
	test_sleep_ms(200);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 2);
done:
	free(reason);
	json_decref(e);
	kd_destroy(&kd);
}

static void test_unsettled_file_and_symlink(void)
{
	kd_t *kd = s_kanald("fd-settle", "      settle: 1500ms\n");
	char target[4096];

	REQUIRE(kd);
	free(test_write_file(kd->dir, "outside.jsonl", "{\"secret\":\"1\"}\n"));
	snprintf(target, sizeof target, "%s", kd_path(kd, "outside.jsonl"));
	CU_ASSERT_EQUAL(symlink(target, kd_path(kd, "drop/link.jsonl")), 0);
	free(test_write_file(kd_path(kd, "drop"), "fresh.jsonl", "{\"n\":\"1\"}\n"));
	/* Still being written (modified under 1.5 s ago): not read. */
	test_sleep_ms(600);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 0);
	CU_ASSERT(access(kd_path(kd, "drop/fresh.jsonl"), F_OK) == 0);
	/* Once it has settled it is. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 1, WAIT), 1);
	/* The symlink was refused, never followed. */
	CU_ASSERT(s_wait_exists(kd_path(kd, "drop/error/link.jsonl.reason")));
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 1);
done:
	kd_destroy(&kd);
}

static void test_sigkill_mid_file_loses_and_doubles_nothing(void)
{
	enum { N = 20000 };
	kd_t *kd = s_kanald("fd-kill", "      settle: 0s\n");
	char *text = NULL, *save = NULL, *big = malloc((size_t)N * 32);
	json_t *ids = json_object();
	size_t len = 0;

	REQUIRE(kd && big);
	for (int i = 0; i < N; i++)
		len += (size_t)sprintf(big + len, "{\"n\":%d}\n", i);
	free(test_write_file(kd->dir, "big.tmp", big));
	/* Renamed into place: the writer's half of the contract. */
	REQUIRE(rename(kd_path(kd, "big.tmp"), kd_path(kd, "drop/big.jsonl")) == 0);
	kd_wait_lines(kd_path(kd, "out.jsonl"), 1, WAIT);
	CU_ASSERT(kd_stop(kd, SIGKILL, WAIT) >= 0);
	REQUIRE(kd_restart(kd) == 0);
	CU_ASSERT(s_wait_exists(kd_path(kd, "drop/done/big.jsonl")));
	kd_wait_lines(kd_path(kd, "out.jsonl"), N, WAIT * 3);
	test_sleep_ms(500);
	text = test_read_file(kd_path(kd, "out.jsonl"), NULL);
	REQUIRE(text);
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *e = json_loads(line, 0, NULL);
		const char *id = json_string_value(json_object_get(e, "id"));
		if (id)
			json_object_set_new(ids, id, json_true());
		json_decref(e);
	}
	/* Every record once by id (a redelivery to the sink after the kill may repeat a line,
	 * never a record under a new id). */
	CU_ASSERT_EQUAL(json_object_size(ids), (size_t)N);
	CU_ASSERT(access(kd_path(kd, "drop/big.jsonl"), F_OK) != 0);
done:
	json_decref(ids);
	free(text);
	free(big);
	kd_destroy(&kd);
}

TEST_MAIN("filedrop", TEST(test_jsonl_file_becomes_events), TEST(test_csv_latin1_with_quotes),
	  TEST(test_bad_record_refuses_the_file), TEST(test_xml_records_mapped_by_jq),
	  TEST(test_unsettled_file_and_symlink),
	  TEST(test_sigkill_mid_file_loses_and_doubles_nothing))
