/*
 * tests/unit/test_plugin_http.c — the `http` plugin (plugins/http) loaded from
 * build/plugins/http.so through the SDK's test harness, with no broker: options a user
 * gets wrong are refused naming the option or file; kanald's backpressure (an emit
 * answering KANAL_EBUSY, which the harness can force) turns into 429 with Retry-After and
 * the events marked busy, and the same events are accepted once the bus takes them again;
 * a webhook nobody answers is a RETRY naming the URL. tests/integration/test_http.c runs
 * the plugin in the real kanald.
 *
 * The harness runs the plugin on this thread; a second thread is the HTTP client
 * (tests/util/http_client.c).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <kanal/harness.h>

#include "http_client.h"
#include "test.h"

/* Starts an http instance with options kv (NULL-terminated key, value pairs). Returns the
 * harness, or NULL with the start error copied into why. */
static kanal_harness_t *s_http(const char *const *kv, char *why, size_t size)
{
	kanal_error_t err;
	kanal_harness_t *h;

	kanal_error_clear(&err);
	why[0] = '\0';
	h = kanal_harness_new(test_path("plugins/http.so"), "web", &err);
	if (!h) {
		snprintf(why, size, "cannot load: %s", err.text);
		return NULL;
	}
	for (size_t i = 0; kv && kv[i]; i += 2)
		kanal_harness_option(h, kv[i], kv[i + 1]);
	if (kanal_harness_start(h, &err) != 0) {
		snprintf(why, size, "%s", err.text);
		kanal_harness_destroy(&h);
	}
	return h;
}

static void test_options_a_user_gets_wrong_are_refused_clearly(void)
{
	char why[1024], *dir = test_tmpdir("http-unit"), *path;
	kanal_harness_t *h;

	h = s_http(NULL, why, sizeof why);
	CU_ASSERT_PTR_NULL(h);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "give listen"));
	kanal_harness_destroy(&h);

	h = s_http((const char *[]){ "listen", "0.0.0.0:0", NULL }, why, sizeof why);
	CU_ASSERT_PTR_NULL(h);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "tokens_file"));
	kanal_harness_destroy(&h);

	h = s_http((const char *[]){ "listen", "127.0.0.1:http", NULL }, why, sizeof why);
	CU_ASSERT_PTR_NULL(h);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "option 'listen': '127.0.0.1:http'"));
	kanal_harness_destroy(&h);

	h = s_http((const char *[]){ "url", "http://127.0.0.1:1/x", "mode", "xml", NULL }, why,
		   sizeof why);
	CU_ASSERT_PTR_NULL(h);
	/* The table refuses it, naming the option and the values it takes. */
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "option 'mode' must be one of structured, binary"));
	kanal_harness_destroy(&h);

	/* A tokens file: readable by the group, then a token too short (on line 2). */
	path = test_write_file(dir, "tokens", "# c\nvendor tinytok\n");
	chmod(path, 0640);
	h = s_http((const char *[]){ "listen", "0", "tokens_file", path, NULL }, why, sizeof why);
	CU_ASSERT_PTR_NULL(h);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, path));
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "mode 0640"));
	kanal_harness_destroy(&h);
	chmod(path, 0600);
	h = s_http((const char *[]){ "listen", "0", "tokens_file", path, NULL }, why, sizeof why);
	CU_ASSERT_PTR_NULL(h);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "line 2"));
	CU_ASSERT_PTR_NULL(strstr(why, "tinytok")); /* the token is not repeated */
	kanal_harness_destroy(&h);

	free(path);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- a client on another thread ---------------------------------------------------------- */

typedef struct client {
	char url[128];
	const char *body;
	http_answer_t answer;
	atomic_bool done;
} client_t;

static void *s_client(void *arg)
{
	static const char *const batch[] = { "Content-Type: application/cloudevents-batch+json",
					     NULL };
	client_t *c = arg;

	http_request(
		NULL,
		&(http_request_t){
			.url = c->url, .headers = batch, .body = c->body, .timeout_ms = 10000 },
		&c->answer);
	atomic_store(&c->done, true);
	return NULL;
}

/* Posts body on a client thread while the plugin runs here; bounded to 10 s. */
static void s_post(kanal_harness_t *h, client_t *c, const char *url, const char *body)
{
	pthread_t t;

	http_answer_clear(&c->answer);
	memset(c, 0, sizeof *c);
	snprintf(c->url, sizeof c->url, "%s", url);
	c->body = body;
	if (pthread_create(&t, NULL, s_client, c) != 0)
		return;
	for (int i = 0; i < 200 && !atomic_load(&c->done); i++)
		kanal_harness_run(h, 50, 0);
	pthread_join(t, NULL);
}

static void test_backpressure_is_429_and_the_same_events_pass_later(void)
{
	char why[512], url[128], *dir = test_tmpdir("http-unit"), *port_file = NULL;
	static const char batch[] =
		"[{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"v\",\"type\":\"x.y\"},"
		"{\"specversion\":\"1.0\",\"id\":\"b\",\"source\":\"v\",\"type\":\"x.y\"}]";
	kanal_harness_t *h;
	client_t *c = calloc(1, sizeof *c);
	char *text = NULL;

	if (asprintf(&port_file, "%s/port", dir) < 0)
		port_file = NULL;
	h = s_http((const char *[]){ "listen", "127.0.0.1:0", "port_file", port_file,
				     "busy_retry_after", "3s", NULL },
		   why, sizeof why);
	CU_ASSERT_PTR_NOT_NULL(h);
	if (!h || !c)
		goto done;
	text = test_read_file(port_file, NULL);
	CU_ASSERT_PTR_NOT_NULL(text);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/events", text ? atoi(text) : 0);

	kanal_harness_set_emit_result(h, KANAL_EBUSY);
	s_post(h, c, url, batch);
	CU_ASSERT_EQUAL(c->answer.status, 429);
	CU_ASSERT_STRING_EQUAL(c->answer.retry_after, "3");
	CU_ASSERT_PTR_NOT_NULL(strstr(c->answer.body, "{\"id\":\"a\",\"status\":\"busy\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(c->answer.body, "{\"id\":\"b\",\"status\":\"busy\""));
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), 0);

	/* The bus takes events again: the same batch is accepted, not "duplicate". */
	kanal_harness_set_emit_result(h, 0);
	s_post(h, c, url, batch);
	CU_ASSERT_EQUAL(c->answer.status, 202);
	CU_ASSERT_PTR_NOT_NULL(strstr(c->answer.body, "{\"id\":\"a\",\"status\":\"accepted\"}"));
	CU_ASSERT_EQUAL(kanal_harness_emitted_count(h), 2);
done:
	kanal_harness_destroy(&h);
	/* stop removes the port file: nobody listens there any more. */
	CU_ASSERT_PTR_NULL(port_file ? test_read_file(port_file, NULL) : NULL);
	free(text);
	if (c)
		http_answer_clear(&c->answer);
	free(c);
	free(port_file);
	test_rmdir_r(dir);
	free(dir);
}

static void test_webhook_nobody_answers_is_retry_naming_the_url(void)
{
	char why[512];
	kanal_harness_t *h =
		s_http((const char *[]){ "url", "http://user:pw-secret@127.0.0.1:1/hook?key=secret",
					 "timeout", "1s", NULL },
		       why, sizeof why);
	kanal_msg_t *m = kanal_msg_new("x.y", "test", "w-1");
	const char *err;

	CU_ASSERT_PTR_NOT_NULL(h);
	if (h && m) {
		CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, "r"), KANAL_OUTCOME_RETRY);
		err = kanal_harness_last_error(h);
		CU_ASSERT_PTR_NOT_NULL(err &&
				       strstr(err, "POST http://127.0.0.1:1/hook: no answer"));
		CU_ASSERT_PTR_NULL(err ? strstr(err, "secret") : NULL);
	}
	kanal_msg_destroy(&m);
	kanal_harness_destroy(&h);
}

TEST_MAIN("plugin_http", TEST(test_options_a_user_gets_wrong_are_refused_clearly),
	  TEST(test_backpressure_is_429_and_the_same_events_pass_later),
	  TEST(test_webhook_nobody_answers_is_retry_naming_the_url))
