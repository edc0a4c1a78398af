/*
 * tests/util/kanald.c — starting, talking to and stopping a real kanald for integration
 * tests. Every wait is bounded; kd_destroy always leaves nothing running behind.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <zmq.h>

#include <kanal/kanal.h>

#include "http_client.h"
#include "kanald.h"
#include "test.h"

static char *s_abs(const char *rel)
{
	char buf[PATH_MAX];
	return realpath(rel, buf) ? strdup(buf) : strdup(rel);
}

/* Replaces every placeholder in text. */
static char *s_expand(const kd_t *kd, const char *text)
{
	char *plugins = s_abs(test_path("plugins"));
	char *tplugins = s_abs(test_path("tests/plugins"));
	const char *keys[] = { "@DIR@", "@PLUGINS@", "@TPLUGINS@" };
	const char *vals[] = { kd->dir, plugins, tplugins };
	size_t cap = strlen(text) * 2 + 4096, len = 0;
	char *out = malloc(cap);

	for (const char *p = text; *p;) {
		int hit = -1;
		for (int k = 0; k < 3; k++)
			if (!strncmp(p, keys[k], strlen(keys[k])))
				hit = k;
		if (hit >= 0) {
			size_t vl = strlen(vals[hit]);
			if (len + vl + 1 >= cap)
				out = realloc(out, cap = (cap + vl) * 2);
			memcpy(out + len, vals[hit], vl);
			len += vl;
			p += strlen(keys[hit]);
		} else {
			if (len + 2 >= cap)
				out = realloc(out, cap *= 2);
			out[len++] = *p++;
		}
	}
	out[len] = '\0';
	free(plugins);
	free(tplugins);
	return out;
}

char *kd_config(const char *instances, const char *extra)
{
	char *text;

	if (asprintf(&text,
		     "log_level: debug\n"
		     "plugin_dir: @PLUGINS@\n"
		     "state_dir: @DIR@/state\n"
		     "run_dir: @DIR@/run\n"
		     "routes: @DIR@/routes\n"
		     "endpoints:\n"
		     "  gateway: tcp://127.0.0.1:0\n"
		     "  stream: tcp://127.0.0.1:0\n"
		     "  admin: tcp://127.0.0.1:0\n"
		     "  admin_http: http://127.0.0.1:0\n"
		     "limits:\n"
		     "  shutdown_deadline: 3s\n"
		     "%s"
		     "instances:\n%s",
		     extra ? extra : "", instances) < 0)
		return NULL;
	return text;
}

kd_t *kd_prepare(const char *tag, const char *conf_text, const char *routes_text)
{
	kd_t *kd = calloc(1, sizeof *kd);
	char *text;

	kd->dir = test_tmpdir(tag);
	kd->pid = -1;
	kd->exit_status = -1;
	text = s_expand(kd, conf_text);
	kd->conf_path = test_write_file(kd->dir, "kanald.yaml", text);
	free(text);
	if (asprintf(&kd->log_path, "%s/kanald.log", kd->dir) < 0)
		kd->log_path = NULL;
	if (routes_text)
		kd_write_routes(kd, routes_text);
	kd->zctx = zmq_ctx_new();
	return kd;
}

void kd_write_routes(kd_t *kd, const char *routes_text)
{
	char *dir, *text, *path;

	if (asprintf(&dir, "%s/routes", kd->dir) < 0)
		return;
	mkdir(dir, 0755);
	text = s_expand(kd, routes_text);
	path = test_write_file(dir, "routes.yaml", text);
	free(path);
	free(text);
	free(dir);
}

static int s_status_of(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

int kd_wait_exit(kd_t *kd, int timeout_ms)
{
	for (int waited = 0; kd->pid > 0; waited += 10) {
		int st;
		pid_t p = waitpid(kd->pid, &st, WNOHANG);
		if (p == kd->pid) {
			kd->pid = -1;
			kd->exit_status = s_status_of(st);
			return kd->exit_status;
		}
		if (waited >= timeout_ms)
			return -1;
		test_sleep_ms(10);
	}
	return kd->exit_status;
}

/* Reads <dir>/run/endpoints once it exists. */
static int s_read_endpoints(kd_t *kd)
{
	char *text = test_read_file(kd_path(kd, "run/endpoints"), NULL);
	char *line, *save = NULL;

	if (!text || !strstr(text, "pid=")) {
		free(text);
		return -1;
	}
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = '\0';
		if (!strcmp(line, "gateway"))
			snprintf(kd->gateway, sizeof kd->gateway, "%s", eq + 1);
		else if (!strcmp(line, "stream"))
			snprintf(kd->stream, sizeof kd->stream, "%s", eq + 1);
		else if (!strcmp(line, "admin"))
			snprintf(kd->admin, sizeof kd->admin, "%s", eq + 1);
		else if (!strcmp(line, "admin_http"))
			snprintf(kd->admin_http, sizeof kd->admin_http, "%s", eq + 1);
	}
	free(text);
	return 0;
}

int kd_launch(kd_t *kd)
{
	char *kanald = s_abs(test_path("bin/kanald"));
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(kd->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, STDERR_FILENO);
			dup2(fd, STDOUT_FILENO);
			close(fd);
		}
		execl(kanald, "kanald", "-c", kd->conf_path, (char *)NULL);
		_exit(127);
	}
	free(kanald);
	if (pid < 0)
		return -1;
	kd->pid = pid;
	for (int waited = 0; waited < 10000; waited += 20) {
		if (s_read_endpoints(kd) == 0)
			return 0;
		if (kd_wait_exit(kd, 0) >= 0)
			return -1;
		test_sleep_ms(20);
	}
	return -1;
}

kd_t *kd_start(const char *tag, const char *conf_text, const char *routes_text)
{
	kd_t *kd = kd_prepare(tag, conf_text, routes_text);

	if (kd_launch(kd) < 0) {
		char *log = kd_log(kd);
		fprintf(stderr, "kanald did not start (status %d):\n%s\n", kd->exit_status,
			log ? log : "(no log)");
		free(log);
		kd_destroy(&kd);
		return NULL;
	}
	return kd;
}

int kd_restart(kd_t *kd)
{
	if (kd->pid > 0)
		return -1;
	unlink(kd_path(kd, "run/endpoints"));
	kd->gateway[0] = kd->stream[0] = kd->admin[0] = '\0';
	kd->exit_status = -1;
	return kd_launch(kd);
}

void kd_write_config(kd_t *kd, const char *conf_text)
{
	char *text = s_expand(kd, conf_text);

	free(kd->conf_path);
	kd->conf_path = test_write_file(kd->dir, "kanald.yaml", text);
	free(text);
}

int kd_stop(kd_t *kd, int sig, int timeout_ms)
{
	if (kd->pid > 0)
		kill(kd->pid, sig);
	return kd_wait_exit(kd, timeout_ms);
}

void kd_destroy(kd_t **kd_p)
{
	kd_t *kd = *kd_p;

	if (!kd)
		return;
	if (kd->pid > 0) {
		kill(kd->pid, SIGKILL);
		kd_wait_exit(kd, 5000);
	}
	if (kd->zctx)
		zmq_ctx_term(kd->zctx);
	test_keep_file("kanald", kd->log_path);
	if (!getenv("KANAL_KEEP_TEST_DIRS"))
		test_rmdir_r(kd->dir);
	free(kd->dir);
	free(kd->conf_path);
	free(kd->log_path);
	free(kd);
	*kd_p = NULL;
}

char *kd_log(const kd_t *kd)
{
	return test_read_file(kd->log_path, NULL);
}

const char *kd_path(const kd_t *kd, const char *rel)
{
	static char bufs[8][1024];
	static int next;
	char *buf = bufs[next++ % 8];

	snprintf(buf, sizeof bufs[0], "%s/%s", kd->dir, rel);
	return buf;
}

/* One request, one reply, on a fresh socket of `type` connected to `endpoint`. */
static char *s_roundtrip(kd_t *kd, int type, const char *endpoint, const char *text, int timeout_ms)
{
	void *s = zmq_socket(kd->zctx, type);
	int zero = 0;
	zmq_pollitem_t item;
	zmq_msg_t msg;
	char *reply = NULL;

	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
	if (zmq_connect(s, endpoint) < 0)
		goto out;
	if (zmq_send(s, text, strlen(text), 0) < 0)
		goto out;
	item = (zmq_pollitem_t){ s, 0, ZMQ_POLLIN, 0 };
	if (zmq_poll(&item, 1, timeout_ms) <= 0)
		goto out;
	zmq_msg_init(&msg);
	if (zmq_msg_recv(&msg, s, 0) >= 0) {
		reply = malloc(zmq_msg_size(&msg) + 1);
		memcpy(reply, zmq_msg_data(&msg), zmq_msg_size(&msg));
		reply[zmq_msg_size(&msg)] = '\0';
	}
	zmq_msg_close(&msg);
out:
	zmq_close(s);
	return reply;
}

char *kd_send(kd_t *kd, const char *json, int timeout_ms)
{
	return s_roundtrip(kd, ZMQ_DEALER, kd->gateway, json, timeout_ms);
}

bool kd_send_event(kd_t *kd, const char *json, const char *want, int timeout_ms, char **reply_out)
{
	char *reply = kd_send(kd, json, timeout_ms);
	json_t *root = reply ? json_loads(reply, 0, NULL) : NULL;
	json_t *results = json_object_get(root, "results"), *r;
	bool ok = reply != NULL;
	size_t i;

	if (want) {
		ok = ok && json_array_size(results) > 0;
		json_array_foreach(results, i, r)
		{
			const char *status = json_string_value(json_object_get(r, "status"));
			ok = ok && status && !strcmp(status, want);
		}
	}
	if (!ok)
		fprintf(stderr, "    gateway: %s (wanted %s)\n", reply ? reply : "(no reply)",
			want ? want : "a reply");
	json_decref(root);
	if (reply_out)
		*reply_out = reply;
	else
		free(reply);
	return ok;
}

char *kd_event(const char *source, const char *id, const char *type, const char *data)
{
	char *text;

	if (asprintf(&text,
		     "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"%s\","
		     "\"type\":\"%s\"%s%s}",
		     id, source, type, data ? ",\"data\":" : "", data ? data : "") < 0)
		return NULL;
	return text;
}

long long kd_measure_total(kd_t *kd, const char *l1, const char *v1, const char *l2, const char *v2)
{
	char *text = kd_admin(kd, "{\"cmd\":\"status\"}", 10000);
	json_t *st = text ? json_loads(text, 0, NULL) : NULL, *m, *series;
	long long total = -1;
	size_t i, k;

	free(text);
	json_array_foreach(json_object_get(st, "measures"), i, m)
	{
		json_array_foreach(json_object_get(m, "series"), k, series)
		{
			json_t *labels = json_object_get(series, "labels");
			if (!strcmp(json_string_value(json_object_get(labels, l1)) ?: "", v1) &&
			    !strcmp(json_string_value(json_object_get(labels, l2)) ?: "", v2))
				total = json_integer_value(json_object_get(series, "total"));
		}
	}
	json_decref(st);
	return total;
}

char *kd_admin(kd_t *kd, const char *json, int timeout_ms)
{
	return s_roundtrip(kd, ZMQ_REQ, kd->admin, json, timeout_ms);
}

long kd_admin_post(kd_t *kd, const char *path, const char *const *headers, const char *body,
		   int timeout_ms)
{
	http_answer_t a;
	char url[512];
	long status;

	snprintf(url, sizeof url, "%s%s", kd->admin_http, path);
	http_request(NULL,
		     &(http_request_t){ .method = "POST",
					.url = url,
					.headers = headers,
					.body = body,
					.timeout_ms = timeout_ms },
		     &a);
	status = a.status;
	http_answer_clear(&a);
	return status;
}

void *kd_subscribe(kd_t *kd, const char *prefix)
{
	void *s = zmq_socket(kd->zctx, ZMQ_SUB);
	int zero = 0;

	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
	zmq_setsockopt(s, ZMQ_SUBSCRIBE, prefix, strlen(prefix));
	zmq_connect(s, kd->stream);
	/* A subscription reaches the publisher asynchronously; give it time to arrive. */
	test_sleep_ms(300);
	return s;
}

int kd_next(void *sub, char *topic, size_t size, char **payload, int timeout_ms)
{
	zmq_pollitem_t item = { sub, 0, ZMQ_POLLIN, 0 };
	zmq_msg_t msg;
	bool got;
	int n;

	if (payload)
		*payload = NULL;
	if (zmq_poll(&item, 1, timeout_ms) <= 0)
		return -1;
	n = zmq_recv(sub, topic, size - 1, 0);
	if (n < 0)
		return -1;
	topic[n < (int)size - 1 ? n : (int)size - 1] = '\0';
	zmq_msg_init(&msg);
	got = zmq_msg_recv(&msg, sub, 0) >= 0;
	if (got) {
		/* Every stream line a test sees is kept for the personal-data scan. */
		test_keep_text("stream", topic, strlen(topic));
		test_keep_text("stream", zmq_msg_data(&msg), zmq_msg_size(&msg));
	}
	if (got && payload) {
		*payload = malloc(zmq_msg_size(&msg) + 1);
		memcpy(*payload, zmq_msg_data(&msg), zmq_msg_size(&msg));
		(*payload)[zmq_msg_size(&msg)] = '\0';
	}
	zmq_msg_close(&msg);
	return 0;
}

char *kd_expect(void *sub, const char *prefix, const char *needle, int timeout_ms)
{
	long long deadline = test_now_ms() + timeout_ms;

	for (;;) {
		char topic[256];
		char *payload;
		long long left = deadline - test_now_ms();

		if (left <= 0 || kd_next(sub, topic, sizeof topic, &payload, (int)left) < 0)
			return NULL;
		if (!strncmp(topic, prefix, strlen(prefix)) &&
		    (!needle || (payload && strstr(payload, needle))))
			return payload;
		free(payload);
	}
}

void kd_unsubscribe(void **sub_p)
{
	if (*sub_p)
		zmq_close(*sub_p);
	*sub_p = NULL;
}

size_t kd_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;
	int c;

	if (!f)
		return 0;
	while ((c = getc(f)) != EOF)
		if (c == '\n')
			n++;
	fclose(f);
	return n;
}

size_t kd_wait_lines(const char *path, size_t n, int timeout_ms)
{
	size_t have = 0;

	for (int waited = 0;; waited += 20) {
		have = kd_lines(path);
		if (have >= n || waited >= timeout_ms)
			return have;
		test_sleep_ms(20);
	}
}

bool kd_wait_file(const char *path, int timeout_ms)
{
	for (int waited = 0;; waited += 20) {
		if (access(path, F_OK) == 0)
			return true;
		if (waited >= timeout_ms)
			return false;
		test_sleep_ms(20);
	}
}

size_t kd_count(const char *text, const char *needle)
{
	size_t n = 0, len = strlen(needle);

	for (const char *at = text; at && len && (at = strstr(at, needle)); at += len)
		n++;
	return n;
}

bool kd_has_clear_cpr(const char *text)
{
	size_t off, len;
	return text && kanal_cpr_find(text, strlen(text), &off, &len);
}
