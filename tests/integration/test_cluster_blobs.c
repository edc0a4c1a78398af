/*
 * tests/integration/test_cluster_blobs.c — blobs in cluster mode (docs/design/blobs.md,
 * broker/cluster_blobs.c) against a real nats-server: the JetStream store in-process (a blob
 * put through one connection is read whole through another, in chunks of 128 KiB; streamed
 * in; the same content twice is one copy; removed; the store's limit; threads at once; a damaged
 * chunk refused; a stream that differs refused or, for its age limit, updated), three servers
 * with three replicas (read through another server, also with one down), then two kanald nodes
 * sharing one NATS server — a photo uploaded (multipart) to node A's http ingress reaches
 * the destination on node B intact, the same photo uploaded again to node B is stored once,
 * and a photo over max_blob_size is refused with 413 naming the limit and stores nothing.
 *
 * Each test starts its own NATS server and nodes on ephemeral loopback ports with bounded
 * waits; the suite is skipped, saying so, when nats-server is not installed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <jansson.h>
#include <nats/nats.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster_blobs.h"
#include "http_client.h"
#include "kd_cluster.h"
#include "test.h"

#define WAIT CLU_WAIT

/* n bytes that look like a JPEG and hold no CR, LF or '-' (a multipart boundary cannot
 * appear in them). Ownership: the caller frees them. */
static char *s_photo(size_t n, unsigned seed)
{
	char *p = malloc(n + 1);
	static const char start[] = "\xff\xd8\xff\xe0";

	if (!p)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (char)(0x2e + (seed >> 16) % 0x50); /* '.' to '}' */
	}
	memcpy(p, start, n < 4 ? n : 4);
	p[n] = '\0';
	return p;
}

/* The blob URI of content (what its digest makes it). */
static void s_uri_of(const void *data, size_t n, char *uri)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	EVP_Digest(data, n, md, &len, EVP_sha256(), NULL);
	strcpy(uri, KANAL_BLOB_URI_PREFIX);
	for (unsigned i = 0; i < len; i++)
		sprintf(uri + strlen(KANAL_BLOB_URI_PREFIX) + 2 * i, "%02x", md[i]);
}

/* ---- the store itself ------------------------------------------------------------------- */

/* A store on nc's server `server` as a node with `replicas` and `retention_ms` would open
 * it; NULL with why in err (when not NULL). */
static kanal__blob_store_t *s_open_on(natsd_t *nc, size_t server, int64_t max_store,
				      const char *tmp, int replicas, int64_t retention_ms,
				      kanal_error_t *err)
{
	char *servers[] = { nc->nodes[server].url };
	conf_nats_t conf = { .servers = servers,
			     .n_servers = 1,
			     .stream_prefix = "KANAL",
			     .replicas = replicas,
			     .blob_retention_ms = retention_ms };

	return cluster_blobs_open(&conf, 2 << 20, max_store, tmp, err);
}

static kanal__blob_store_t *s_open_store(natsd_t *nc, int64_t max_store, const char *tmp)
{
	kanal_error_t err;
	kanal__blob_store_t *store;

	kanal_error_clear(&err);
	if (!(store = s_open_on(nc, 0, max_store, tmp, 1, 3600000, &err)))
		fprintf(stderr, "cluster_blobs_open: %s\n", err.text);
	return store;
}

/* The KANAL_BLOBS stream's age limit in seconds, -1 when JetStream does not say. */
static int64_t s_max_age_s(natsd_t *nc)
{
	jsStreamInfo *si = clu_stream_info(nc, "KANAL_BLOBS");
	int64_t s = si ? si->Config->MaxAge / 1000000000LL : -1;

	jsStreamInfo_Destroy(si);
	return s;
}

/* The whole content of uri read through store; NULL when it cannot be read. */
static char *s_read(kanal__blob_store_t *store, const char *uri, size_t *size)
{
	void *data = NULL;
	kanal_error_t err;

	kanal_error_clear(&err);
	if (kanal__blob_get(store, uri, &data, size, &err) != 0) {
		fprintf(stderr, "kanal__blob_get %s: %s\n", uri, err.text);
		return NULL;
	}
	return data;
}

/* The sweep's question, for the test: every blob but `arg` is named by an event. */
static bool s_named_but(void *arg, const char *uri)
{
	return strcmp(uri, arg) != 0;
}

/* Plugin threads share one store: each puts its own blob and reads it back. */
typedef struct s_worker {
	kanal__blob_store_t *store;
	unsigned seed;
	int ok;
} s_worker_t;

static void *s_worker_main(void *arg)
{
	s_worker_t *w = arg;
	char *photo = s_photo(200 * 1024, w->seed), *got;
	kanal_blob_ref_t ref;
	size_t size = 0;

	if (photo && kanal__blob_put(w->store, photo, 200 * 1024, "image/jpeg", &ref, NULL) == 0)
		for (int i = 0; i < 3; i++) {
			got = s_read(w->store, ref.uri, &size);
			w->ok += got && size == 200 * 1024 && memcmp(got, photo, size) == 0;
			free(got);
		}
	free(photo);
	return NULL;
}

static void test_store_chunks_blobs_that_any_connection_reads(void)
{
	natsd_t *nc = NULL;
	char *tmp = test_tmpdir("cblob-store"), *big = s_photo(300 * 1024, 1),
	     *streamed = s_photo(260 * 1024 + 17, 2), *got = NULL, uri[KANAL_BLOB_URI_SIZE];
	kanal__blob_store_t *a = NULL, *b = NULL, *small = NULL;
	kanal_blob_writer_t *w = NULL;
	kanal_blob_ref_t ref, ref2, empty;
	kanal_error_t err;
	size_t size = 0;
	int64_t count = 0, bytes = 0;
	int fd = -1;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		goto done;
	}
	REQUIRE(tmp && big && streamed);
	REQUIRE((nc = natsd_start("cblob-store", 1)) != NULL);
	/* Two stores, two connections: as two nodes. */
	REQUIRE((a = s_open_store(nc, 0, tmp)) != NULL);
	REQUIRE((b = s_open_store(nc, 0, tmp)) != NULL);

	/* 300 KiB: three chunks and the meta message; read whole through the other store. */
	REQUIRE(kanal__blob_put(a, big, 300 * 1024, "image/jpeg", &ref, NULL) == 0);
	s_uri_of(big, 300 * 1024, uri);
	CU_ASSERT_STRING_EQUAL(ref.uri, uri);
	CU_ASSERT_EQUAL(clu_stream_msgs(nc, "KANAL_BLOBS"), 4);
	got = s_read(b, ref.uri, &size);
	CU_ASSERT_EQUAL(size, 300 * 1024);
	CU_ASSERT(got && memcmp(got, big, 300 * 1024) == 0);
	free(got);
	got = NULL;
	/* kanal_blob_open's descriptor: read-only, the blob's size, the content. */
	{
		uint64_t fsize = 0;
		char head[4];
		CU_ASSERT_EQUAL(kanal__blob_open(b, ref.uri, &fd, &fsize, NULL), 0);
		CU_ASSERT_EQUAL(fsize, 300 * 1024);
		CU_ASSERT_EQUAL(read(fd, head, 4), 4);
		CU_ASSERT(memcmp(head, big, 4) == 0);
		CU_ASSERT_EQUAL(write(fd, "x", 1), -1);
		close(fd);
		fd = -1;
	}

	/* Streamed in pieces that do not fall on chunk edges. */
	kanal_error_clear(&err);
	REQUIRE(kanal__blob_writer_new(b, "image/jpeg", &w, &err) == 0);
	for (size_t off = 0; off < 260 * 1024 + 17; off += 7001) {
		size_t n = 260 * 1024 + 17 - off < 7001 ? 260 * 1024 + 17 - off : 7001;
		REQUIRE(kanal_blob_writer_write(w, streamed + off, n, &err) == 0);
	}
	REQUIRE(kanal_blob_writer_finish(&w, &ref2, &err) == 0);
	CU_ASSERT_EQUAL(ref2.size, 260 * 1024 + 17);
	CU_ASSERT_EQUAL(clu_stream_msgs(nc, "KANAL_BLOBS"), 8);
	got = s_read(a, ref2.uri, &size);
	CU_ASSERT(got && size == 260 * 1024 + 17 && memcmp(got, streamed, size) == 0);
	free(got);
	got = NULL;

	/* The same content again, put whole or streamed, from either store: one copy. */
	REQUIRE(kanal__blob_put(b, big, 300 * 1024, "image/jpeg", &ref, NULL) == 0);
	REQUIRE(kanal__blob_put(a, streamed, 260 * 1024 + 17, "image/jpeg", &ref2, NULL) == 0);
	CU_ASSERT_EQUAL(clu_stream_msgs(nc, "KANAL_BLOBS"), 8);

	/* An empty blob is a meta message alone. */
	REQUIRE(kanal__blob_put(a, "", 0, "text/plain", &empty, NULL) == 0);
	got = s_read(b, empty.uri, &size);
	CU_ASSERT(got != NULL && size == 0);
	free(got);
	got = NULL;

	/* Removed through one store: gone for the other, its messages with it. */
	CU_ASSERT_EQUAL(kanal__blob_remove(a, ref.uri), 0);
	CU_ASSERT_EQUAL(kanal__blob_open(b, ref.uri, &fd, NULL, NULL), KANAL_ENOTFOUND);
	CU_ASSERT_EQUAL(kanal__blob_remove(b, ref.uri), KANAL_ENOTFOUND);
	CU_ASSERT_EQUAL(clu_stream_msgs(nc, "KANAL_BLOBS"), 5);
	/* Put again after its removal (within the duplicate window): stored again. */
	REQUIRE(kanal__blob_put(b, big, 300 * 1024, "image/jpeg", &ref, NULL) == 0);
	got = s_read(a, ref.uri, &size);
	CU_ASSERT(got && size == 300 * 1024 && memcmp(got, big, size) == 0);
	free(got);
	got = NULL;

	/* A chunk replaced behind the store's back (same size, other bytes): refused as
	 * damaged, never handed on. */
	{
		char subject[320];
		natsConnection *conn = NULL;
		jsCtx *js = NULL;

		snprintf(subject, sizeof subject, "kanal.blobs.%s.1",
			 ref2.uri + strlen(KANAL_BLOB_URI_PREFIX));
		REQUIRE(natsConnection_ConnectTo(&conn, nc->nodes[0].url) == NATS_OK);
		CU_ASSERT(natsConnection_JetStream(&js, conn, NULL) == NATS_OK &&
			  js_Publish(NULL, js, subject, big, 128 * 1024, NULL, NULL) == NATS_OK);
		jsCtx_Destroy(js);
		natsConnection_Destroy(conn);
		kanal_error_clear(&err);
		CU_ASSERT_EQUAL(kanal__blob_open(b, ref2.uri, &fd, NULL, &err), KANAL_EIO);
		CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "is damaged"));
	}

	/* A store whose limit (blob_store_size) the stream already passes refuses more. */
	REQUIRE((small = s_open_store(nc, 100 * 1024, tmp)) != NULL);
	kanal__blob_usage(small, &count, &bytes); /* as the stream counts them at the open */
	CU_ASSERT_EQUAL(count, 3);
	CU_ASSERT(bytes > 560 * 1024);
	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kanal__blob_put(small, streamed, 1000, "image/jpeg", &ref, &err),
			KANAL_ETOOBIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "blob store full"));
	/* Four threads at once through one store (as plugin instances' threads). */
	{
		pthread_t t[4];
		s_worker_t wk[4];
		for (int i = 0; i < 4; i++) {
			wk[i] = (s_worker_t){ .store = a, .seed = 100u + (unsigned)i };
			REQUIRE(pthread_create(&t[i], NULL, s_worker_main, &wk[i]) == 0);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(t[i], NULL);
			CU_ASSERT_EQUAL(wk[i].ok, 3);
		}
	}
	/* A node whose replicas differ is refused, saying what to do; one whose blob_retention
	 * differs updates the stream's age limit (the one setting that may change). */
	kanal_error_clear(&err);
	CU_ASSERT_PTR_NULL(s_open_on(nc, 0, 0, tmp, 3, 3600000, &err));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "stream KANAL_BLOBS exists with 1 replicas"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "Do not delete the stream"));
	CU_ASSERT_EQUAL(s_max_age_s(nc), 3600);
	kanal__blob_store_destroy(&small);
	REQUIRE((small = s_open_on(nc, 0, 0, tmp, 1, 7200000, NULL)) != NULL);
	CU_ASSERT_EQUAL(s_max_age_s(nc), 7200);
	got = s_read(small, ref2.uri, &size); /* still there after the update (and damaged) */
	CU_ASSERT_PTR_NULL(got);
	got = s_read(small, empty.uri, &size);
	CU_ASSERT_PTR_NOT_NULL(got);
	free(got);
	got = NULL;
	/* each: the sweep sees every blob (with its age) and removes only the unnamed one. */
	CU_ASSERT_EQUAL(kanal__blob_sweep(small, 0, s_named_but, empty.uri), 1);
	CU_ASSERT_EQUAL(kanal__blob_open(a, empty.uri, &fd, NULL, NULL), KANAL_ENOTFOUND);
	CU_ASSERT_EQUAL(kanal__blob_sweep(small, 3600000, NULL, NULL), 0); /* all younger */
	/* Nothing left behind in the folder of private copies. */
	CU_ASSERT_EQUAL(test_dir_count(tmp), 0);
done:
	if (fd >= 0)
		close(fd);
	kanal_blob_writer_destroy(&w);
	kanal__blob_store_destroy(&a);
	kanal__blob_store_destroy(&b);
	kanal__blob_store_destroy(&small);
	natsd_destroy(&nc);
	free(got);
	free(big);
	free(streamed);
	if (tmp)
		test_rmdir_r(tmp);
	free(tmp);
}

/* Three NATS servers, three replicas: a blob put through one server is read through
 * another, also while the third is down. */
static void test_replicated_blob_read_through_another_server(void)
{
	natsd_t *nc = NULL;
	char *tmp = test_tmpdir("cblob-r3"), *photo = s_photo(300 * 1024, 4), *got = NULL;
	kanal__blob_store_t *a = NULL, *b = NULL;
	kanal_blob_ref_t ref;
	kanal_error_t err;
	size_t size = 0;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		goto done;
	}
	REQUIRE(tmp && photo);
	REQUIRE((nc = natsd_start("cblob-r3", 3)) != NULL);
	kanal_error_clear(&err);
	a = s_open_on(nc, 0, 0, tmp, 3, 3600000, &err);
	b = s_open_on(nc, 1, 0, tmp, 3, 3600000, &err);
	if (!a || !b)
		fprintf(stderr, "cluster_blobs_open: %s\n", err.text);
	REQUIRE(a && b);
	REQUIRE(kanal__blob_put(a, photo, 300 * 1024, "image/jpeg", &ref, NULL) == 0);
	got = s_read(b, ref.uri, &size);
	CU_ASSERT(got && size == 300 * 1024 && memcmp(got, photo, size) == 0);
	free(got);
	got = NULL;
	/* One server down (a majority of the replicas stays): still read whole. */
	REQUIRE(natsd_kill(nc, 2, SIGKILL) == 0);
	{
		int64_t deadline = test_now_ms() + WAIT;
		while (!(got = s_read(b, ref.uri, &size)) && test_now_ms() < deadline)
			test_sleep_ms(500); /* a leader election: 4-8 s */
	}
	CU_ASSERT(got && size == 300 * 1024 && memcmp(got, photo, size) == 0);
done:
	free(got);
	kanal__blob_store_destroy(&a);
	kanal__blob_store_destroy(&b);
	natsd_destroy(&nc);
	free(photo);
	if (tmp)
		test_rmdir_r(tmp);
	free(tmp);
}

/* ---- two kanald nodes ---------------------------------------------------------------------- */

/* The http ingress `in` (its port in @DIR@/in.port) and the blob reader `reader`
 * (tests/plugins/tp_blobs.c: one line per blob read, "<id> <uri> <size> <first bytes>"). On
 * node A the reader answers RETRY to every photo, unread: JetStream hands it to node B. */
static const char *s_node_a = "  - name: in\n    plugin: http\n"
			      "    options: { listen: '127.0.0.1:0', port_file: '@DIR@/in.port' }\n"
			      "  - name: reader\n    plugin: '@TPLUGINS@/tp_blobs.so'\n"
			      "    options: { path: '@DIR@/reader.txt', "
			      "retry_type: daycare.notice.posted }\n";
static const char *s_node_b = "  - name: in\n    plugin: http\n"
			      "    options: { listen: '127.0.0.1:0', port_file: '@DIR@/in.port' }\n"
			      "  - name: reader\n    plugin: '@TPLUGINS@/tp_blobs.so'\n"
			      "    options: { path: '@DIR@/reader.txt' }\n";
static const char *s_routes =
	"routes:\n"
	"  - name: photos\n    match: { type: daycare.notice.posted }\n"
	"    to: reader\n"
	"    retry: { max_attempts: 10000, backoff: 50ms, max_backoff: 100ms }\n";
static const char *s_limits = "  max_blob_size: 1MiB\n";

/* The node's ingress URL, once its port file is there. */
static bool s_ingress(kd_t *kd, char *url, size_t size)
{
	char *text = NULL;
	int port;

	if (!kd_wait_file(kd_path(kd, "in.port"), WAIT))
		return false;
	text = test_read_file(kd_path(kd, "in.port"), NULL);
	port = text ? atoi(text) : 0;
	free(text);
	snprintf(url, size, "http://127.0.0.1:%d/events", port);
	return port > 0;
}

/* POSTs an event `id` with one photo (n bytes) as multipart/form-data; the answer's status. */
static long s_upload(const char *url, const char *id, const char *photo, size_t n, char **body_out)
{
	static const char *const ct[] = { "Content-Type: multipart/form-data; boundary=XyZb0undary",
					  NULL };
	char *body = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&body, &len);
	http_answer_t a;
	long status;

	if (!f)
		return 0;
	fprintf(f,
		"--XyZb0undary\r\nContent-Disposition: form-data; name=\"event\"\r\n"
		"Content-Type: application/cloudevents+json\r\n\r\n"
		"{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"daycare-app\","
		"\"type\":\"daycare.notice.posted\",\"data\":{\"text\":\"Trip to the forest\"}}\r\n"
		"--XyZb0undary\r\nContent-Disposition: form-data; name=\"photos\"; "
		"filename=\"forest.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n",
		id);
	fwrite(photo, 1, n, f);
	fprintf(f, "\r\n--XyZb0undary--\r\n");
	fclose(f);
	http_request(NULL,
		     &(http_request_t){ .method = "POST",
					.url = url,
					.headers = ct,
					.body = body,
					.body_len = len,
					.timeout_ms = WAIT },
		     &a);
	status = a.status;
	if (body_out)
		*body_out = a.body ? strdup(a.body) : NULL;
	http_answer_clear(&a);
	free(body);
	return status;
}

static void test_photo_uploaded_on_one_node_is_delivered_from_another(void)
{
	natsd_t *nc = NULL;
	kd_t *a = NULL, *b = NULL;
	char *conf_a = NULL, *conf_b = NULL, *text = NULL, *answer = NULL;
	char url_a[128], url_b[128], uri[KANAL_BLOB_URI_SIZE], want[KANAL_BLOB_URI_SIZE + 64];
	const size_t n = 300 * 1024, too_big = 1536 * 1024;
	char *photo = s_photo(too_big, 3);

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		goto done;
	}
	REQUIRE(photo != NULL);
	REQUIRE((nc = natsd_start("cblob-nodes", 1)) != NULL);
	conf_a = clu_conf(nc, 1, s_limits, s_node_a);
	conf_b = clu_conf(nc, 1, s_limits, s_node_b);
	REQUIRE((a = kd_start("cblob-a", conf_a, s_routes)) != NULL);
	REQUIRE((b = kd_start("cblob-b", conf_b, s_routes)) != NULL);
	REQUIRE(s_ingress(a, url_a, sizeof url_a) && s_ingress(b, url_b, sizeof url_b));
	s_uri_of(photo, n, uri);

	/* Uploaded to node A, read from JetStream by node B: the whole photo, its digest. */
	CU_ASSERT_EQUAL(s_upload(url_a, "notice-1", photo, n, NULL), 202);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(b, "reader.txt"), 1, 60000), 1);
	text = test_read_file(kd_path(b, "reader.txt"), NULL);
	snprintf(want, sizeof want, "notice-1 %s %zu \xff\xd8\xff\xe0", uri, n);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, want));
	free(text);
	text = NULL;
	CU_ASSERT_EQUAL(kd_lines(kd_path(a, "reader.txt")), 0);
	CU_ASSERT_EQUAL(clu_stream_msgs(nc, "KANAL_BLOBS"), 4); /* 3 chunks and the meta */

	/* The same photo uploaded to node B: delivered again, stored once. */
	CU_ASSERT_EQUAL(s_upload(url_b, "notice-2", photo, n, NULL), 202);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(b, "reader.txt"), 2, 60000), 2);
	text = test_read_file(kd_path(b, "reader.txt"), NULL);
	snprintf(want, sizeof want, "notice-2 %s %zu", uri, n);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, want));
	CU_ASSERT_EQUAL(clu_stream_msgs(nc, "KANAL_BLOBS"), 4);

	/* 1.5 MiB, over max_blob_size: 413 naming the limit, nothing stored or delivered. */
	CU_ASSERT_EQUAL(s_upload(url_a, "notice-3", photo, too_big, &answer), 413);
	CU_ASSERT_PTR_NOT_NULL(answer && strstr(answer, "max_blob_bytes"));
	test_sleep_ms(500);
	CU_ASSERT_EQUAL(clu_stream_msgs(nc, "KANAL_BLOBS"), 4);
	CU_ASSERT_EQUAL(kd_lines(kd_path(b, "reader.txt")), 2);
	/* Neither node's log holds the photo's file name (a person's name, often). */
	free(text);
	text = kd_log(a);
	CU_ASSERT_PTR_NULL(strstr(text ?: "", "forest.jpg"));
	CU_ASSERT_EQUAL(kd_stop(a, SIGTERM, WAIT), 0);
	CU_ASSERT_EQUAL(kd_stop(b, SIGTERM, WAIT), 0);
done:
	free(text);
	free(answer);
	free(photo);
	free(conf_a);
	free(conf_b);
	kd_destroy(&a);
	kd_destroy(&b);
	natsd_destroy(&nc);
}

TEST_MAIN("cluster_blobs", TEST(test_store_chunks_blobs_that_any_connection_reads),
	  TEST(test_replicated_blob_read_through_another_server),
	  TEST(test_photo_uploaded_on_one_node_is_delivered_from_another))
