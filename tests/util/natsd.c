/*
 * tests/util/natsd.c — a NATS JetStream cluster on loopback for the tests (natsd.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http_client.h"
#include "natsd.h"
#include "test.h"

static const char *s_binary(void)
{
	const char *env = getenv("NATS_SERVER");

	return env && *env ? env : "/usr/sbin/nats-server";
}

bool natsd_available(void)
{
	return access(s_binary(), X_OK) == 0;
}

/* Writes node i's config: its ports, its store, routes to every other node. */
static void s_write_conf(natsd_t *c, size_t i)
{
	natsd_node_t *nd = &c->nodes[i];
	char cluster[NATSD_MAX * 48 + 128] = "", *text = NULL, name[16];
	size_t used = 0;

	if (c->n > 1) {
		used = (size_t)snprintf(
			cluster, sizeof cluster,
			"cluster { name: kanaltest, listen: 127.0.0.1:%d, routes: [",
			nd->cluster_port);
		for (size_t k = 0, first = 1; k < c->n; k++) {
			if (k == i)
				continue;
			used += (size_t)snprintf(cluster + used, sizeof cluster - used,
						 "%snats-route://127.0.0.1:%d", first ? "" : ", ",
						 c->nodes[k].cluster_port);
			first = 0;
		}
		snprintf(cluster + used, sizeof cluster - used, "] }\n");
	}
	snprintf(name, sizeof name, "n%zu", i + 1);
	if (asprintf(&text,
		     "server_name: %s\n"
		     "listen: 127.0.0.1:%d\n"
		     "http: 127.0.0.1:%d\n"
		     "jetstream { store_dir: \"%s/%s-store\" }\n"
		     "%s",
		     name, nd->port, nd->http_port, c->dir, name, cluster) < 0)
		abort();
	free(nd->conf_path);
	{
		char file[32];
		snprintf(file, sizeof file, "%s.conf", name);
		nd->conf_path = test_write_file(c->dir, file, text);
	}
	free(text);
}

static int s_spawn(natsd_t *c, size_t i)
{
	natsd_node_t *nd = &c->nodes[i];
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(nd->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(s_binary(), s_binary(), "-c", nd->conf_path, (char *)NULL);
		_exit(127);
	}
	nd->pid = pid;
	return 0;
}

static long s_get(int port, const char *path, char **body)
{
	char url[128];
	http_request_t req = { 0 };
	http_answer_t a;
	long st;

	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	req.url = url;
	req.timeout_ms = 2000;
	st = http_request(NULL, &req, &a);
	if (body) {
		*body = a.body;
		a.body = NULL;
	}
	http_answer_clear(&a);
	return st;
}

bool natsd_wait_ready(natsd_t *c, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;

	while (test_now_ms() < deadline) {
		bool healthy = true, leader = false;
		for (size_t i = 0; i < c->n; i++) {
			natsd_node_t *nd = &c->nodes[i];
			char *body = NULL;
			if (!nd->pid)
				continue;
			if (s_get(nd->http_port, "/healthz", NULL) != 200) {
				healthy = false;
				break;
			}
			/* One node: JetStream is on. A cluster: its meta group has a leader. */
			if (s_get(nd->http_port, "/jsz", &body) == 200 && body) {
				json_t *jsz = json_loads(body, 0, NULL);
				json_t *meta = json_object_get(jsz, "meta_cluster");
				const char *name =
					json_string_value(json_object_get(meta, "leader"));
				if (c->n == 1 ? json_object_get(jsz, "config") != NULL
					      : name && *name)
					leader = true;
				json_decref(jsz);
			}
			free(body);
		}
		if (healthy && leader)
			return true;
		test_sleep_ms(200);
	}
	return false;
}

static void s_print_logs(natsd_t *c)
{
	for (size_t i = 0; i < c->n; i++) {
		char *log = test_read_file(c->nodes[i].log_path, NULL);
		size_t len = log ? strlen(log) : 0;
		fprintf(stderr, "nats-server n%zu log (end):\n%s\n", i + 1,
			log ? (len > 1500 ? log + len - 1500 : log) : "(none)");
		free(log);
	}
}

natsd_t *natsd_start(const char *tag, size_t n)
{
	natsd_t *c = calloc(1, sizeof *c);
	size_t used = 0;

	if (!c || n == 0 || n > NATSD_MAX) {
		free(c);
		return NULL;
	}
	c->dir = test_tmpdir(tag);
	c->n = n;
	used += (size_t)snprintf(c->servers, sizeof c->servers, "[");
	for (size_t i = 0; i < n; i++) {
		natsd_node_t *nd = &c->nodes[i];
		nd->port = test_free_port();
		nd->cluster_port = test_free_port();
		nd->http_port = test_free_port();
		snprintf(nd->url, sizeof nd->url, "nats://127.0.0.1:%d", nd->port);
		if (asprintf(&nd->log_path, "%s/n%zu.log", c->dir, i + 1) < 0)
			abort();
		used += (size_t)snprintf(c->servers + used, sizeof c->servers - used, "%s%s",
					 i ? ", " : "", nd->url);
	}
	snprintf(c->servers + used, sizeof c->servers - used, "]");
	for (size_t i = 0; i < n; i++) {
		s_write_conf(c, i);
		if (s_spawn(c, i) < 0) {
			natsd_destroy(&c);
			return NULL;
		}
	}
	if (!natsd_wait_ready(c, 30000)) {
		fprintf(stderr, "the NATS cluster of %zu nodes was not ready within 30 s\n", n);
		s_print_logs(c);
		natsd_destroy(&c);
		return NULL;
	}
	return c;
}

int natsd_kill(natsd_t *c, size_t i, int sig)
{
	natsd_node_t *nd = &c->nodes[i];
	int64_t deadline = test_now_ms() + 10000;
	int status;

	if (!nd->pid)
		return 0;
	kill(nd->pid, sig);
	while (test_now_ms() < deadline) {
		if (waitpid(nd->pid, &status, WNOHANG) == nd->pid) {
			nd->pid = 0;
			return 0;
		}
		test_sleep_ms(20);
	}
	return -1;
}

int natsd_restart(natsd_t *c, size_t i)
{
	if (c->nodes[i].pid || s_spawn(c, i) < 0)
		return -1;
	if (!natsd_wait_ready(c, 30000)) {
		s_print_logs(c);
		return -1;
	}
	return 0;
}

char *natsd_jsz(natsd_t *c)
{
	for (size_t i = 0; i < c->n; i++) {
		char *body = NULL;
		if (c->nodes[i].pid &&
		    s_get(c->nodes[i].http_port, "/jsz?streams=true&consumers=true", &body) == 200)
			return body;
		free(body);
	}
	return NULL;
}

void natsd_destroy(natsd_t **c_p)
{
	natsd_t *c = *c_p;

	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		if (natsd_kill(c, i, SIGTERM) < 0)
			natsd_kill(c, i, SIGKILL);
		free(c->nodes[i].conf_path);
		free(c->nodes[i].log_path);
	}
	if (c->dir)
		test_rmdir_r(c->dir);
	free(c->dir);
	free(c);
	*c_p = NULL;
}
