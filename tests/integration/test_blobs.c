/*
 * tests/integration/test_blobs.c — photos and attachments by claim check, through the real
 * kanald: an event naming a blob in its `kanalblob` attribute is delivered to a plugin that
 * reads the blob (in kanald's process and in an isolated plugin host), and the blob is
 * removed once the last delivery is finished; a dead-lettered event keeps its blob until the
 * letter is dropped, and a restart keeps the references of open events and dead letters.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "http_client.h"
#include "kanald.h"
#include <kanal/kanal.h>
#include "blob_store.h"

#define WAIT 10000

/* The store kanald keeps in <state_dir>/blobs, opened by the test too, as an isolated
 * plugin host opens it. */
static kanal__blob_store_t *s_store(kd_t *kd)
{
	return kanal__blob_store_open_dir(kd_path(kd, "state/blobs"), 0, 0, NULL);
}

static bool s_exists(kanal__blob_store_t *store, const char *uri)
{
	int fd = -1;

	if (kanal__blob_open(store, uri, &fd, NULL, NULL) != 0)
		return false;
	close(fd);
	return true;
}

/* Waits until the blob is gone; true when it went within WAIT. */
static bool s_wait_gone(kanal__blob_store_t *store, const char *uri)
{
	int64_t deadline = test_now_ms() + WAIT;

	while (s_exists(store, uri) && test_now_ms() < deadline)
		test_sleep_ms(50);
	return !s_exists(store, uri);
}

/* Sends one event of `type` naming blob uri; true when kanald accepted it. */
static bool s_send(kd_t *kd, const char *id, const char *type, const char *uri)
{
	char json[512];

	snprintf(json, sizeof json,
		 "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"daycare-app\","
		 "\"type\":\"%s\",\"kanalblob\":\"%s\",\"data\":{\"photos\":[{\"href\":\"%s\","
		 "\"mediaType\":\"image/jpeg\"}]}}",
		 id, type, uri, uri);
	return kd_send_event(kd, json, "accepted", WAIT, NULL);
}

/* kanald's status "blobs" object's field, -1 when absent. */
static json_int_t s_status_blobs(kd_t *kd, const char *field)
{
	char *reply = kd_admin(kd, "{\"cmd\":\"status\"}", WAIT);
	json_t *root = reply ? json_loads(reply, 0, NULL) : NULL;
	json_t *v = json_object_get(json_object_get(root, "blobs"), field);
	json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;

	json_decref(root);
	free(reply);
	return n;
}

/* kanald's /metrics text (malloc'd; NULL when it did not answer 200). */
static char *s_metrics(kd_t *kd)
{
	char url[512];
	http_answer_t a;
	char *text;

	snprintf(url, sizeof url, "%s/metrics", kd->admin_http);
	http_request(NULL, &(http_request_t){ .method = "GET", .url = url, .timeout_ms = WAIT },
		     &a);
	text = a.status == 200 && a.body ? strdup(a.body) : NULL;
	http_answer_clear(&a);
	return text;
}

static const char *s_readers =
	"  - name: reader\n    plugin: '@TPLUGINS@/tp_blobs.so'\n"
	"    options: { path: '@DIR@/reader.txt', reject_type: y.reject, retry_type: y.retry }\n"
	"  - name: isolated\n    plugin: '@TPLUGINS@/tp_blobs.so'\n    isolation: process\n"
	"    options: { path: '@DIR@/isolated.txt' }\n";

static const char *s_routes =
	"routes:\n"
	"  - name: photos\n    match: { type: x.photo }\n    to: [reader, isolated]\n"
	"  - name: others\n    match: { type: 'y.*' }\n    to: reader\n"
	"    retry: { max_attempts: 1000, backoff: 100ms, max_backoff: 200ms }\n";

static void test_blob_is_read_then_removed_after_the_last_delivery(void)
{
	char *conf = kd_config(s_readers, NULL), *text = NULL;
	kd_t *kd = kd_start("blobs", conf, s_routes);
	kanal__blob_store_t *store = NULL;
	kanal_blob_ref_t ref;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	store = s_store(kd);
	REQUIRE(store != NULL);
	REQUIRE(kanal__blob_put(store, "photo of the day, 2 MB in real life", 35, "image/jpeg",
				&ref, NULL) == 0);
	/* Before the event: one blob, no reference to it. */
	text = s_metrics(kd);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\nkanal_blobs 1\n"));
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\nkanal_blob_bytes 35\n"));
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\nkanal_blob_references 0\n"));
	free(text);
	text = NULL;
	REQUIRE(s_send(kd, "n-1", "x.photo", ref.uri));
	/* Both destinations read the blob: kanald's own thread and the isolated plugin host. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "reader.txt"), 1, WAIT), 1);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "isolated.txt"), 1, WAIT), 1);
	text = test_read_file(kd_path(kd, "reader.txt"), NULL);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, ref.uri));
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, " 35 photo of the day"));
	free(text);
	text = test_read_file(kd_path(kd, "isolated.txt"), NULL);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, " 35 photo of the day"));
	free(text);
	text = NULL;
	/* After the last delivery the blob goes, and /metrics' numbers with it. */
	CU_ASSERT_TRUE(s_wait_gone(store, ref.uri));
	CU_ASSERT_EQUAL(s_status_blobs(kd, "references"), 0);
	CU_ASSERT_EQUAL(s_status_blobs(kd, "count"), 0);
	text = s_metrics(kd);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\nkanal_blobs 0\n"));
	free(text);
	text = NULL;
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	free(text);
	kanal__blob_store_destroy(&store);
	kd_destroy(&kd);
}

static void test_dead_letter_keeps_its_blob_and_restart_keeps_references(void)
{
	char *conf = kd_config(s_readers, NULL), *reply = NULL, req[128];
	kd_t *kd = kd_start("blobdlq", conf, s_routes);
	kanal__blob_store_t *store = NULL;
	kanal_blob_ref_t letter, pending;
	json_t *root = NULL, *item;
	json_int_t id = 0;
	int64_t deadline;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	store = s_store(kd);
	REQUIRE(store != NULL);
	REQUIRE(kanal__blob_put(store, "%PDF-1.7 the letter", 19, "application/pdf", &letter,
				NULL) == 0);
	REQUIRE(kanal__blob_put(store, "photo still on its way", 22, "image/jpeg", &pending,
				NULL) == 0);
	REQUIRE(s_send(kd, "l-1", "y.reject", letter.uri));
	REQUIRE(s_send(kd, "p-1", "y.retry", pending.uri));

	/* The rejected event becomes a dead letter that lists its blob. */
	deadline = test_now_ms() + WAIT;
	while (!id && test_now_ms() < deadline) {
		reply = kd_admin(kd, "{\"cmd\":\"dlq.list\"}", WAIT);
		root = reply ? json_loads(reply, 0, NULL) : NULL;
		item = json_array_get(json_object_get(root, "items"), 0);
		id = json_integer_value(json_object_get(item, "id"));
		json_decref(root);
		root = NULL;
		free(reply);
		reply = NULL;
		if (!id)
			test_sleep_ms(100);
	}
	REQUIRE(id > 0);
	snprintf(req, sizeof req, "{\"cmd\":\"dlq.show\",\"id\":%" JSON_INTEGER_FORMAT "}", id);
	reply = kd_admin(kd, req, WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, letter.uri));
	free(reply);
	reply = NULL;
	CU_ASSERT_TRUE(s_exists(store, letter.uri));
	CU_ASSERT_TRUE(s_exists(store, pending.uri));
	CU_ASSERT_EQUAL(s_status_blobs(kd, "references"), 2);

	/* A crash and a restart: the letter's blob and the open event's are both still
	 * counted, and the open event, its destination fixed, is delivered with its blob. */
	CU_ASSERT_EQUAL(kd_stop(kd, SIGKILL, WAIT), 128 + SIGKILL);
	free(conf);
	conf = kd_config("  - name: reader\n    plugin: '@TPLUGINS@/tp_blobs.so'\n"
			 "    options: { path: '@DIR@/reader.txt', reject_type: y.reject }\n"
			 "  - name: isolated\n    plugin: '@TPLUGINS@/tp_blobs.so'\n"
			 "    options: { path: '@DIR@/isolated.txt' }\n",
			 NULL);
	kd_write_config(kd, conf);
	REQUIRE(kd_restart(kd) == 0);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "reader.txt"), 1, WAIT), 1);
	CU_ASSERT_TRUE(s_wait_gone(store, pending.uri));
	CU_ASSERT_TRUE(s_exists(store, letter.uri));
	CU_ASSERT_EQUAL(s_status_blobs(kd, "references"), 1);

	/* Dropping the letter lets its blob go. */
	snprintf(req, sizeof req, "{\"cmd\":\"dlq.drop\",\"ids\":[%" JSON_INTEGER_FORMAT "]}", id);
	reply = kd_admin(kd, req, WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "\"dropped\":1"));
	if (reply && !strstr(reply, "\"dropped\":1"))
		fprintf(stderr, "dlq.drop: %s\n", reply);
	CU_ASSERT_TRUE(s_wait_gone(store, letter.uri));
	CU_ASSERT_EQUAL(s_status_blobs(kd, "references"), 0);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	free(reply);
	free(conf);
	kanal__blob_store_destroy(&store);
	kd_destroy(&kd);
}

TEST_MAIN("blobs", TEST(test_blob_is_read_then_removed_after_the_last_delivery),
	  TEST(test_dead_letter_keeps_its_blob_and_restart_keeps_references));
