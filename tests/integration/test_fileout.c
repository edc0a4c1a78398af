/*
 * tests/integration/test_fileout.c — the fileout connector (plugins/fileout) as the real .so
 * in the real kanald, writing into a temporary folder: events sent through the gateway
 * appear as files named by the template, whole (no temporary file left), mode 0600; a
 * redelivery of the same event (a second instance writing the same name) writes no second
 * file and no second line; another event under a taken name gets a -2 suffix, never
 * overwriting; pretty-printed data is one JSON Lines line; hostile values (`..`, `/`, control characters, a leading dot) cannot name a
 * file outside the folder; jsonl and csv append to a daily file (a header once, RFC 4180
 * quoting, a route's transform output as content); a missing folder and a full disk (a
 * small tmpfs, root only) are RETRY with the error, delivered once writable again.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "kanald.h"
#include "test.h"

#define WAIT 10000

/* A kanald whose route `out` sends test.* events to fileout instances given as YAML. */
static kd_t *s_kanald(const char *tag, const char *instances, const char *to)
{
	char *conf = kd_config(instances, NULL), *routes = NULL;
	kd_t *kd = NULL;

	if (asprintf(&routes, "routes:\n  - name: out\n    match: { type: test.> }\n    to: %s\n",
		     to) >= 0)
		kd = kd_prepare(tag, conf, routes);
	free(conf);
	free(routes);
	if (kd) {
		mkdir(kd_path(kd, "out"), 0750);
		if (kd_launch(kd) != 0)
			kd_destroy(&kd);
	}
	return kd;
}

static bool s_send(kd_t *kd, const char *id, const char *type, const char *data)
{
	char *ev = kd_event("tester", id, type, data);
	bool ok = kd_send_event(kd, ev, "accepted", WAIT, NULL);

	free(ev);
	return ok;
}

/* The names in a folder, sorted, joined by spaces (hidden ones too); new. */
static char *s_listing(const char *dir)
{
	char *names[64], *out = calloc(1, 4096);
	struct dirent *e;
	size_t n = 0;
	DIR *d = opendir(dir);

	while (d && (e = readdir(d)) && n < 64)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			names[n++] = strdup(e->d_name);
	if (d)
		closedir(d);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (strcmp(names[j], names[i]) < 0) {
				char *t = names[i];
				names[i] = names[j];
				names[j] = t;
			}
	for (size_t i = 0; i < n; i++) {
		if (out && strlen(out) + strlen(names[i]) + 2 < 4096)
			strcat(strcat(out, *out ? " " : ""), names[i]);
		free(names[i]);
	}
	return out;
}

static void test_json_file_per_event_atomic_0600(void)
{
	kd_t *kd = s_kanald("fo-json",
			    "  - name: files\n    plugin: fileout\n"
			    "    options: { folder: '@DIR@/out' }\n",
			    "files");
	char *text = NULL, *list = NULL;
	json_t *e = NULL;
	struct stat st;

	REQUIRE(kd);
	REQUIRE(s_send(kd, "ev-1", "test.letter", "{\"n\":1}"));
	REQUIRE(kd_wait_file(kd_path(kd, "out/test.letter-ev-1.json"), WAIT));
	text = test_read_file(kd_path(kd, "out/test.letter-ev-1.json"), NULL);
	REQUIRE(text);
	e = json_loads(text, 0, NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "id")), "ev-1");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(e, "data"), "n")), 1);
	CU_ASSERT(text[strlen(text) - 1] == '\n');
	CU_ASSERT_EQUAL(stat(kd_path(kd, "out/test.letter-ev-1.json"), &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	/* Nothing else: the temporary file was renamed, not left. */
	list = s_listing(kd_path(kd, "out"));
	CU_ASSERT_STRING_EQUAL(list, "test.letter-ev-1.json");
done:
	free(list);
	json_decref(e);
	free(text);
	kd_destroy(&kd);
}

/* Two instances writing the same name are the same event delivered twice: one file. A
 * different event under the same name (a template without the id) is never written over. */
static void test_redelivery_writes_once_and_collisions_never_overwrite(void)
{
	kd_t *kd =
		s_kanald("fo-dup",
			 "  - name: a\n    plugin: fileout\n"
			 "    options: { folder: '@DIR@/out' }\n"
			 "  - name: b\n    plugin: fileout\n"
			 "    options: { folder: '@DIR@/out' }\n"
			 "  - name: by-type\n    plugin: fileout\n"
			 "    options: { folder: '@DIR@/out', name: 'latest-{type}.json' }\n"
			 "  - name: lines-a\n    plugin: fileout\n"
			 "    options: { folder: '@DIR@/out', format: jsonl, name: all.jsonl }\n"
			 "  - name: lines-b\n    plugin: fileout\n"
			 "    options: { folder: '@DIR@/out', format: jsonl, name: all.jsonl }\n",
			 "[a, b, by-type, lines-a, lines-b]");
	char *first = NULL, *list = NULL;

	REQUIRE(kd);
	REQUIRE(s_send(kd, "ev-1", "test.x", "{\"n\":1}"));
	REQUIRE(kd_wait_file(kd_path(kd, "out/latest-test.x.json"), WAIT));
	REQUIRE(s_send(kd, "ev-2", "test.x", "{\"n\":2}"));
	REQUIRE(kd_wait_file(kd_path(kd, "out/latest-test.x-2.json"), WAIT));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out/all.jsonl"), 2, WAIT), 2);
	test_sleep_ms(300);
	list = s_listing(kd_path(kd, "out"));
	CU_ASSERT_STRING_EQUAL(list, "all.jsonl latest-test.x-2.json latest-test.x.json "
				     "test.x-ev-1.json test.x-ev-2.json");
	/* Each event's line once, although two instances appended it. */
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out/all.jsonl")), 2);
	first = test_read_file(kd_path(kd, "out/latest-test.x.json"), NULL);
	CU_ASSERT(first && strstr(first, "\"ev-1\""));
done:
	free(first);
	free(list);
	kd_destroy(&kd);
}

static void test_hostile_values_stay_in_the_folder(void)
{
	kd_t *kd = s_kanald("fo-hostile",
			    "  - name: files\n    plugin: fileout\n"
			    "    options: { folder: '@DIR@/out', name: '{data.name}' }\n"
			    "  - name: by-id\n    plugin: fileout\n"
			    "    options: { folder: '@DIR@/out/ids', name: '{id}.json' }\n",
			    "[files, by-id]");
	char *list = NULL;

	REQUIRE(kd);
	mkdir(kd_path(kd, "out/ids"), 0750);
	REQUIRE(s_send(kd, "../../escaped", "test.x", "{\"name\":\"..\"}"));
	REQUIRE(s_send(kd, "h-2", "test.x", "{\"name\":\"../../etc/x\"}"));
	REQUIRE(s_send(kd, "h-3", "test.x", "{\"name\":\".hidden\"}"));
	REQUIRE(s_send(kd, "h-4", "test.x", "{\"name\":\"a\\u0001b\\nc\"}"));
	REQUIRE(kd_wait_file(kd_path(kd, "out/a_b_c"), WAIT));
	REQUIRE(kd_wait_file(kd_path(kd, "out/ids/h-4.json"), WAIT));
	test_sleep_ms(200);
	list = s_listing(kd_path(kd, "out"));
	CU_ASSERT_STRING_EQUAL(list, "_.. _.._.._etc_x _.hidden a_b_c ids");
	free(list);
	list = s_listing(kd_path(kd, "out/ids"));
	CU_ASSERT_STRING_EQUAL(list, "_.._.._escaped.json h-2.json h-3.json h-4.json");
	/* Nothing was written beside the folder. */
	CU_ASSERT(access(kd_path(kd, "escaped.json"), F_OK) != 0);
	CU_ASSERT(access(kd_path(kd, "etc"), F_OK) != 0);
done:
	free(list);
	kd_destroy(&kd);
}

/* content: data in JSON Lines: the data a sender pretty-printed is still one line. */
static void test_jsonl_data_is_one_line(void)
{
	kd_t *kd = s_kanald("fo-jsonl",
			    "  - name: lines\n    plugin: fileout\n"
			    "    options: { folder: '@DIR@/out', format: jsonl, content: data, "
			    "name: 'data-{source}.jsonl' }\n",
			    "lines");
	char *text = NULL;

	REQUIRE(kd);
	REQUIRE(kd_send_event(kd,
			      "{\"specversion\":\"1.0\",\"id\":\"p-1\",\"source\":\"s\","
			      "\"type\":\"test.p\",\"data\":{\n  \"a\": 1,\n  \"b\": \"x\\ny\"\n}}",
			      "accepted", WAIT, NULL));
	REQUIRE(kd_wait_file(kd_path(kd, "out/data-s.jsonl"), WAIT));
	test_sleep_ms(200);
	text = test_read_file(kd_path(kd, "out/data-s.jsonl"), NULL);
	CU_ASSERT_STRING_EQUAL(text, "{\"a\":1,\"b\":\"x\\ny\"}\n");
done:
	free(text);
	kd_destroy(&kd);
}

/* CSV rows of chosen fields, from a route's transform, appended to a daily file. */
static void test_csv_daily_file_with_transform(void)
{
	char *conf = kd_config("  - name: results\n    plugin: fileout\n"
			       "    options:\n      folder: '@DIR@/out'\n      format: csv\n"
			       "      delimiter: ';'\n"
			       "      name: 'results-{time:%Y%m%d}.csv'\n"
			       "      fields: [id, data.letter, data.status, data.amount]\n",
			       NULL);
	kd_t *kd = kd_prepare("fo-csv", conf,
			      "routes:\n  - name: out\n    match: { type: test.> }\n"
			      "    transform: '{letter: .l, status: .s, amount: .a}'\n"
			      "    to: results\n");
	char *text = NULL, *ev = NULL;

	free(conf);
	REQUIRE(kd);
	mkdir(kd_path(kd, "out"), 0750);
	REQUIRE(kd_launch(kd) == 0);
	ev = strdup("{\"specversion\":\"1.0\",\"id\":\"r-1\",\"source\":\"t\",\"type\":\"test.r\","
		    "\"time\":\"2026-11-30T10:00:00Z\",\"data\":{\"l\":\"loen-1\",\"s\":\"sent\","
		    "\"a\":31000.5}}");
	REQUIRE(kd_send_event(kd, ev, "accepted", WAIT, NULL));
	free(ev);
	ev = strdup("{\"specversion\":\"1.0\",\"id\":\"r-2\",\"source\":\"t\",\"type\":\"test.r\","
		    "\"time\":\"2026-11-30T11:00:00Z\",\"data\":{\"l\":\"loen;2\",\"s\":\"a "
		    "\\\"b\\\"\"}}");
	REQUIRE(kd_send_event(kd, ev, "accepted", WAIT, NULL));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out/results-20261130.csv"), 3, WAIT), 3);
	text = test_read_file(kd_path(kd, "out/results-20261130.csv"), NULL);
	CU_ASSERT_STRING_EQUAL(text, "id;data.letter;data.status;data.amount\r\n"
				     "r-1;loen-1;sent;31000.5\r\n"
				     "r-2;\"loen;2\";\"a \"\"b\"\"\";\r\n");
done:
	free(ev);
	free(text);
	kd_destroy(&kd);
}

/* A folder that is not there yet: RETRY with the error, written once it is made. */
static void test_missing_folder_is_retry(void)
{
	kd_t *kd = s_kanald("fo-missing",
			    "  - name: files\n    plugin: fileout\n"
			    "    options: { folder: '@DIR@/later' }\n",
			    "files");
	void *sub = NULL;
	char *note = NULL;

	REQUIRE(kd);
	sub = kd_subscribe(kd, "retrying");
	REQUIRE(s_send(kd, "m-1", "test.x", "{}"));
	note = kd_expect(sub, "retrying", "cannot write", WAIT);
	CU_ASSERT(note && strstr(note, "No such file or directory"));
	mkdir(kd_path(kd, "later"), 0750);
	CU_ASSERT(kd_wait_file(kd_path(kd, "later/test.x-m-1.json"), WAIT));
done:
	free(note);
	kd_unsubscribe(&sub);
	kd_destroy(&kd);
}

/* A full disk (a 64 KiB tmpfs): RETRY saying so, no half file; delivered once there is
 * room. Root only (mount). */
static void test_full_disk_is_retry(void)
{
	kd_t *kd = NULL;
	void *sub = NULL;
	char *note = NULL, *pad = NULL, *list = NULL;
	bool mounted = false;
	FILE *f;

	if (geteuid() != 0) {
		printf("(skipped: mounting a tmpfs needs root) ");
		return;
	}
	kd = s_kanald("fo-full",
		      "  - name: files\n    plugin: fileout\n"
		      "    options: { folder: '@DIR@/out' }\n",
		      "files");
	REQUIRE(kd);
	mounted = mount("tmpfs", kd_path(kd, "out"), "tmpfs", MS_NOSUID | MS_NODEV,
			"size=64k,mode=0750") == 0;
	REQUIRE(mounted);
	/* Fill it to the last block. */
	f = fopen(kd_path(kd, "out/pad"), "w");
	REQUIRE(f);
	pad = calloc(1, 4096);
	while (fwrite(pad, 1, 4096, f) == 4096 && fflush(f) == 0)
		;
	fclose(f);
	sub = kd_subscribe(kd, "retrying");
	REQUIRE(s_send(kd, "full-1", "test.x", "{\"n\":1}"));
	note = kd_expect(sub, "retrying", "cannot write", WAIT);
	CU_ASSERT(note && strstr(note, "No space left on device"));
	list = s_listing(kd_path(kd, "out"));
	CU_ASSERT_STRING_EQUAL(list, "pad");
	unlink(kd_path(kd, "out/pad"));
	CU_ASSERT(kd_wait_file(kd_path(kd, "out/test.x-full-1.json"), WAIT));
done:
	free(list);
	free(pad);
	free(note);
	kd_unsubscribe(&sub);
	if (kd)
		kd_stop(kd, SIGTERM, WAIT);
	if (mounted)
		umount2(kd_path(kd, "out"), MNT_DETACH);
	kd_destroy(&kd);
}

TEST_MAIN("fileout", TEST(test_json_file_per_event_atomic_0600),
	  TEST(test_redelivery_writes_once_and_collisions_never_overwrite),
	  TEST(test_hostile_values_stay_in_the_folder), TEST(test_jsonl_data_is_one_line),
	  TEST(test_csv_daily_file_with_transform), TEST(test_missing_folder_is_retry),
	  TEST(test_full_disk_is_retry))
