/*
 * tests/integration/test_tenancy.c — trust between tenants (docs/design/tenancy.md) with
 * the real kanald: two vendors on one CURVE gateway, each owning its `sources`, where one
 * cannot spoof, suppress or probe the other's events and sees none of the other's stream
 * lines; the admin HTTP API refusing a cross-site request; `kanald --check` and
 * `kanalctl check` saying "not ok" for a config kanald refuses to start with.
 *
 * Every kanald runs in its own folder on ephemeral 127.0.0.1 ports.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <kanal/kanal.h>

#include "http_client.h"
#include "kanald.h"
#include "test.h"

#define WAIT 8000  /* ms: the bound of every wait for something that should come */
#define QUIET 1500 /* ms: how long to wait for something that should not come */

/* The key pairs of one test: kanald's and the two vendors'. */
typedef struct keys {
	char *dir;
	char server_pub[41], server_sec[41];
	char a_pub[41], a_sec[41];
	char b_pub[41], b_sec[41];
} keys_t;

static keys_t *s_keys_new(void)
{
	keys_t *k = calloc(1, sizeof *k);
	char path[600];
	FILE *f;

	k->dir = test_tmpdir("tenancy-keys");
	CU_ASSERT_EQUAL(zmq_curve_keypair(k->server_pub, k->server_sec), 0);
	CU_ASSERT_EQUAL(zmq_curve_keypair(k->a_pub, k->a_sec), 0);
	CU_ASSERT_EQUAL(zmq_curve_keypair(k->b_pub, k->b_sec), 0);
	/* kanald's secret key file, as kanalctl keygen writes it: private to its owner. */
	snprintf(path, sizeof path, "%s/kanald.key", k->dir);
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "# kanald secret key\n%s\n", k->server_sec);
		fclose(f);
	}
	chmod(path, 0600);
	return k;
}

static void s_keys_destroy(keys_t **k_p)
{
	if (!*k_p)
		return;
	test_rmdir_r((*k_p)->dir);
	free((*k_p)->dir);
	free(*k_p);
	*k_p = NULL;
}

static const char *s_routes = "routes:\n"
			      "  - name: all\n"
			      "    match: { type: '>' }\n"
			      "    to: sink\n";

/* Starts kanald with CURVE on and two tenants: vendor-a owns /vendors/a/..., vendor-b
 * owns /vendors/b/...; both may emit invoice.> and see `delivered` lines. */
static kd_t *s_start_tenants(const char *tag, keys_t *k)
{
	char *extra, *conf;
	kd_t *kd;

	if (asprintf(&extra,
		     "security:\n"
		     "  curve:\n"
		     "    secret_key_file: %s/kanald.key\n"
		     "    clients:\n"
		     "      - name: vendor-a\n"
		     "        public_key: \"%s\"\n"
		     "        emit: [invoice.>]\n"
		     "        sources: [\"/vendors/a/*\"]\n"
		     "        subscribe: [delivered, acl.denied]\n"
		     "      - name: vendor-b\n"
		     "        public_key: \"%s\"\n"
		     "        emit: [invoice.>]\n"
		     "        sources: [\"/vendors/b/*\"]\n"
		     "        subscribe: [delivered]\n",
		     k->dir, k->a_pub, k->b_pub) < 0)
		return NULL;
	conf = kd_config("  - name: sink\n    plugin: sink\n"
			 "    options: { path: '@DIR@/sink.jsonl' }\n",
			 extra);
	kd = kd_start(tag, conf, s_routes);
	free(conf);
	free(extra);
	return kd;
}

/* A CURVE client socket of `type` with the given key pair, connected to endpoint. */
static void *s_curve_socket(kd_t *kd, keys_t *k, int type, const char *endpoint, const char *pub,
			    const char *sec)
{
	void *s = zmq_socket(kd->zctx, type);
	int zero = 0;

	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
	zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, k->server_pub, 40);
	zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
	zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40);
	zmq_connect(s, endpoint);
	return s;
}

/* Sends one event (source, id) on a DEALER and returns the reply (malloc'd) or NULL. */
static char *s_send(void *sock, const char *source, const char *id)
{
	zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
	int timeout_ms = WAIT;
	char *json = kd_event(source, id, "invoice.sent", "{\"n\":1}"), *text = NULL;
	zmq_msg_t m;

	zmq_setsockopt(sock, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
	if (!json || zmq_send(sock, json, strlen(json), 0) < 0 ||
	    zmq_poll(&item, 1, timeout_ms) <= 0) {
		free(json);
		return NULL;
	}
	free(json);
	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, sock, 0) >= 0 && (text = malloc(zmq_msg_size(&m) + 1))) {
		memcpy(text, zmq_msg_data(&m), zmq_msg_size(&m));
		text[zmq_msg_size(&m)] = '\0';
	}
	zmq_msg_close(&m);
	return text;
}

static bool s_reply_is(char *reply, const char *status)
{
	char needle[64];
	bool is;

	snprintf(needle, sizeof needle, "\"status\":\"%s\"", status);
	is = reply && strstr(reply, needle);
	free(reply);
	return is;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_tenant_cannot_spoof_suppress_or_probe(void)
{
	keys_t *k = s_keys_new();
	kd_t *kd = s_start_tenants("tenancy-spoof", k);
	void *a, *b;
	char *reply, *sink;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	a = s_curve_socket(kd, k, ZMQ_DEALER, kd->gateway, k->a_pub, k->a_sec);
	b = s_curve_socket(kd, k, ZMQ_DEALER, kd->gateway, k->b_pub, k->b_sec);

	/* B sends under A's source first: refused, naming the source, never stored. */
	reply = s_send(b, "/vendors/a/billing", "a-invoice-77");
	CU_ASSERT(reply && strstr(reply, "/vendors/a/billing"));
	CU_ASSERT(s_reply_is(reply, "forbidden"));
	/* So A's own event with that id is accepted, not silently taken for a duplicate. */
	CU_ASSERT(s_reply_is(s_send(a, "/vendors/a/billing", "a-invoice-77"), "accepted"));
	/* B cannot probe A's ids: the answer is the same for a used and an unused id. */
	CU_ASSERT(s_reply_is(s_send(b, "/vendors/a/billing", "a-invoice-77"), "forbidden"));
	CU_ASSERT(s_reply_is(s_send(b, "/vendors/a/billing", "never-used"), "forbidden"));
	/* Duplicate suppression still works for the owner. */
	CU_ASSERT(s_reply_is(s_send(a, "/vendors/a/billing", "a-invoice-77"), "duplicate"));
	/* B's own source works. */
	CU_ASSERT(s_reply_is(s_send(b, "/vendors/b/x", "b-1"), "accepted"));

	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "sink.jsonl"), 2, WAIT), 2);
	test_sleep_ms(300);
	sink = test_read_file(kd_path(kd, "sink.jsonl"), NULL);
	CU_ASSERT(sink && kd_count(sink, "a-invoice-77") == 1 && strstr(sink, "\"b-1\""));
	CU_ASSERT(sink && !strstr(sink, "never-used"));
	free(sink);
	zmq_close(a);
	zmq_close(b);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
	s_keys_destroy(&k);
}

static void test_tenant_sees_only_its_own_stream_lines(void)
{
	keys_t *k = s_keys_new();
	kd_t *kd = s_start_tenants("tenancy-stream", k);
	void *a, *b, *b_sub;
	char topic[256], *payload = NULL;
	int own = 0, foreign = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	b_sub = s_curve_socket(kd, k, ZMQ_SUB, kd->stream, k->b_pub, k->b_sec);
	/* The plain topic would show every vendor's lines: refused for an owner of sources. */
	zmq_setsockopt(b_sub, ZMQ_SUBSCRIBE, "delivered", 9);
	zmq_setsockopt(b_sub, ZMQ_SUBSCRIBE, "@vendor-b delivered", 19);
	test_sleep_ms(500); /* the handshake and the subscriptions reach kanald */
	a = s_curve_socket(kd, k, ZMQ_DEALER, kd->gateway, k->a_pub, k->a_sec);
	b = s_curve_socket(kd, k, ZMQ_DEALER, kd->gateway, k->b_pub, k->b_sec);
	CU_ASSERT(s_reply_is(s_send(a, "/vendors/a/hr", "a-secret-1"), "accepted"));
	CU_ASSERT(s_reply_is(s_send(b, "/vendors/b/x", "b-own-1"), "accepted"));

	while (kd_next(b_sub, topic, sizeof topic, &payload, own ? QUIET : WAIT) == 0) {
		if (payload && strstr(payload, "a-secret-1"))
			foreign++;
		else if (payload && strstr(payload, "b-own-1") &&
			 !strncmp(topic, "@vendor-b delivered ", 20))
			own++;
		free(payload);
		payload = NULL;
	}
	CU_ASSERT_EQUAL(own, 1);
	CU_ASSERT_EQUAL(foreign, 0);
	zmq_close(a);
	zmq_close(b);
	zmq_close(b_sub);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
	s_keys_destroy(&k);
}

/* A form POST to kanald's admin HTTP endpoint with the given extra headers; the status. */
static long s_admin_post(kd_t *kd, const char *path, const char *const *headers)
{
	return kd_admin_post(kd, path, headers, "pause=1", WAIT);
}

/* True when kanald's status reply shows a paused instance. */
static bool s_instance_paused(kd_t *kd)
{
	char *reply = kd_admin(kd, "{\"cmd\":\"status\"}", WAIT);
	bool paused = reply && strstr(reply, "\"paused\"");

	free(reply);
	return paused;
}

static void test_admin_refuses_cross_site_requests(void)
{
	/* The shipped config's shape: admin_http on loopback, no admin_token_file. */
	char *conf = kd_config("  - name: sink\n    plugin: sink\n"
			       "    options: { path: '@DIR@/sink.jsonl' }\n",
			       NULL);
	kd_t *kd = kd_start("tenancy-csrf", conf, s_routes);
	const char *const form[] = { "Content-Type: application/x-www-form-urlencoded",
				     "Origin: http://evil.example", NULL };
	const char *const fetch_site[] = { "Sec-Fetch-Site: cross-site", "X-Kanal-Request: 1",
					   NULL };
	const char *const plain[] = { "Content-Type: application/x-www-form-urlencoded", NULL };
	const char *const dashboard[] = { "X-Kanal-Request: 1", NULL };

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT_FATAL(kd->admin_http[0] != '\0');
	/* A form on another site, as a browser sends it. */
	CU_ASSERT_EQUAL(s_admin_post(kd, "/api/v1/instances/sink/pause", form), 403);
	CU_ASSERT_EQUAL(s_admin_post(kd, "/api/v1/instances/sink/pause", fetch_site), 403);
	/* Without Origin (an older browser) the missing custom header still refuses it. */
	CU_ASSERT_EQUAL(s_admin_post(kd, "/api/v1/instances/sink/pause", plain), 403);
	CU_ASSERT(!s_instance_paused(kd));
	/* What the dashboard sends works. */
	CU_ASSERT_EQUAL(s_admin_post(kd, "/api/v1/instances/sink/pause", dashboard), 200);
	CU_ASSERT(s_instance_paused(kd));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

/* Feeds one broken config to `kanalctl check`, `kanald --check` and a real start: all
 * three must refuse it, and the two checks must name `needle`. token_file, when set, is
 * the config's endpoints.admin_token_file. */
static void s_check_agrees_with_start(const char *tag, const char *instances,
				      const char *token_file, const char *needle)
{
	char *conf = kd_config(instances, NULL), *log_path, *log, *at;
	kd_t *kd;

	at = conf ? strstr(conf, "  admin_http: http://127.0.0.1:0\n") : NULL;
	if (at && token_file) {
		char *with;
		at += strlen("  admin_http: http://127.0.0.1:0\n");
		CU_ASSERT(asprintf(&with, "%.*s  admin_token_file: %s\n%s", (int)(at - conf), conf,
				   token_file, at) > 0);
		free(conf);
		conf = with;
	}
	kd = kd_prepare(tag, conf, s_routes);
	char *ctl[] = { "kanalctl", "-c", NULL, "check", NULL };
	char *kanald[] = { "kanald", "-c", NULL, "--check", NULL };

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	ctl[2] = kanald[2] = kd->conf_path;
	CU_ASSERT(asprintf(&log_path, "%s/check.log", kd->dir) > 0);
	CU_ASSERT_NOT_EQUAL(test_run_program("bin/kanalctl", ctl, log_path), 0);
	CU_ASSERT_NOT_EQUAL(test_run_program("bin/kanald", kanald, log_path), 0);
	log = test_read_file(log_path, NULL);
	CU_ASSERT(log && kd_count(log, needle) >= 2);
	if (log && kd_count(log, needle) < 2)
		fprintf(stderr, "    %s: %s\n", tag, log);
	free(log);
	free(log_path);
	/* And start refuses it too. */
	CU_ASSERT_EQUAL(kd_launch(kd), -1);
	kd_destroy(&kd);
}

static void test_check_says_not_ok_when_start_would_refuse(void)
{
	char *dir = test_tmpdir("tenancy-token"), *token;

	/* An admin token file others may read. */
	token = test_write_file(dir, "admin.token", "0123456789abcdef0123\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(token);
	chmod(token, 0644);
	s_check_agrees_with_start("tenancy-check-token", "  - name: sink\n    plugin: sink\n",
				  token, "mode 0644");
	free(token);
	test_rmdir_r(dir);
	free(dir);
	/* A plugin option out of its range. */
	s_check_agrees_with_start("tenancy-check-count",
				  "  - name: gen\n    plugin: source\n"
				  "    options: { type: x.y, count: -5 }\n"
				  "  - name: sink\n    plugin: sink\n",
				  NULL, "must be at least 0");
}

/* The permission bits of path, or -1. */
static int s_mode(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static void test_existing_public_journal_is_made_private(void)
{
	/* journal.path outside the 0700 state_dir, left 0644 by an older kanald. */
	char *dir = test_tmpdir("tenancy-journal"), *path, *extra, *conf, *wal;
	kd_t *kd;

	path = test_write_file(dir, "journal.db", "");
	CU_ASSERT_PTR_NOT_NULL_FATAL(path);
	chmod(path, 0644);
	CU_ASSERT(asprintf(&extra, "journal:\n  path: %s\n", path) > 0);
	CU_ASSERT(asprintf(&wal, "%s-wal", path) > 0);
	conf = kd_config("  - name: sink\n    plugin: sink\n"
			 "    options: { path: '@DIR@/sink.jsonl' }\n",
			 extra);
	kd = kd_start("tenancy-journal-kd", conf, s_routes);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT(kd_send_event(kd,
				"{\"specversion\":\"1.0\",\"id\":\"j-1\",\"source\":\"t\","
				"\"type\":\"x.y\"}",
				"accepted", WAIT, NULL));
	CU_ASSERT_EQUAL(s_mode(path), 0600);
	CU_ASSERT_EQUAL(s_mode(wal), 0600);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
	free(conf);
	free(extra);
	free(wal);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- files at rest under umask 022 ------------------------------------------------------ */

/* Files of a run that hold no event: what the test wrote, and kanald's endpoints file
 * (addresses, read by kanalctl as another user). */
static bool s_holds_no_event(const char *path)
{
	static const char *const names[] = { "/kanald.yaml", "/kanald.log", "/routes.yaml",
					     "/endpoints", "/endpoints.tmp" };

	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		size_t n = strlen(names[i]), len = strlen(path);
		if (len >= n && !strcmp(path + len - n, names[i]))
			return true;
	}
	return false;
}

static size_t s_open_files, s_files_seen;

static int s_check_file(const char *path, const struct stat *st, int kind, struct FTW *ftw)
{
	(void)ftw;
	if (kind != FTW_F || !S_ISREG(st->st_mode) || s_holds_no_event(path))
		return 0;
	s_files_seen++;
	if (st->st_mode & 077) {
		printf("\n    %s is mode %04o", path, (unsigned)(st->st_mode & 07777));
		s_open_files++;
	}
	return 0;
}

/* Runs kanald under umask 022 with a journal `mode`, a sink and a sink that rejects (so
 * dead letters are written), an operator action (so the audit log is written); then every
 * file in the run's folder is looked at. */
static void s_run_under_umask_022(const char *mode)
{
	char *extra, *conf;
	mode_t old = umask(022);
	kd_t *kd;

	CU_ASSERT(asprintf(&extra, "journal:\n  mode: %s\n", mode) > 0);
	conf = kd_config("  - name: sink\n    plugin: sink\n"
			 "    options: { path: '@DIR@/sink.jsonl' }\n"
			 "  - name: picky\n    plugin: sink\n"
			 "    options: { path: '@DIR@/picky.jsonl', fail_type: x.bad }\n",
			 extra);
	kd = kd_start("tenancy-umask", conf,
		      "routes:\n"
		      "  - name: good\n    match: { type: x.good }\n    to: sink\n"
		      "  - name: bad\n    match: { type: x.bad }\n    to: picky\n");
	free(conf);
	free(extra);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT(kd_send_event(kd,
				"{\"specversion\":\"1.0\",\"id\":\"u-1\",\"source\":\"t\","
				"\"type\":\"x.good\",\"data\":{\"n\":1}}",
				"accepted", WAIT, NULL));
	CU_ASSERT(kd_send_event(kd,
				"{\"specversion\":\"1.0\",\"id\":\"u-2\",\"source\":\"t\","
				"\"type\":\"x.bad\",\"data\":{\"n\":2}}",
				"accepted", WAIT, NULL));
	CU_ASSERT(kd_send_event(kd,
				"{\"specversion\":\"1.0\",\"id\":\"u-3\",\"source\":\"t\","
				"\"type\":\"x.nobody\"}",
				NULL, WAIT, NULL));
	free(kd_admin(kd, "{\"cmd\":\"instance.pause\",\"name\":\"sink\"}", WAIT));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "sink.jsonl"), 1, WAIT), 1);
	test_sleep_ms(300); /* the rejection's dead letter */
	s_open_files = s_files_seen = 0;
	nftw(kd->dir, s_check_file, 16, FTW_PHYS);
	CU_ASSERT(s_files_seen >= 4); /* journal or dead letters, sink files, audit log */
	CU_ASSERT_EQUAL(s_open_files, 0);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	/* And what a stop leaves behind. */
	s_open_files = 0;
	nftw(kd->dir, s_check_file, 16, FTW_PHYS);
	CU_ASSERT_EQUAL(s_open_files, 0);
	kd_destroy(&kd);
	umask(old);
}

static void test_every_file_private_under_umask_022(void)
{
	s_run_under_umask_022("durable");
	s_run_under_umask_022("memory");
}

TEST_MAIN("tenancy", TEST(test_tenant_cannot_spoof_suppress_or_probe),
	  TEST(test_tenant_sees_only_its_own_stream_lines),
	  TEST(test_admin_refuses_cross_site_requests),
	  TEST(test_check_says_not_ok_when_start_would_refuse),
	  TEST(test_existing_public_journal_is_made_private),
	  TEST(test_every_file_private_under_umask_022))
