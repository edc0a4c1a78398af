/*
 * tests/util/upstream.c — see upstream.h.
 */
#include "upstream.h"
#include "test.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "http_client.h"

upstream_t *upstream_start(const char *name, const char *const *args)
{
	upstream_t *up = calloc(1, sizeof *up);
	char bin[4096], port_file[4096], tag[64];
	const char *argv[64];
	size_t n = 0;

	snprintf(tag, sizeof tag, "sim-%s", name);
	up->name = strdup(name);
	up->dir = test_tmpdir(tag);
	snprintf(bin, sizeof bin, "%s/bin/kanal-sim-%s", test_build_dir(), name);
	snprintf(port_file, sizeof port_file, "%s/port", up->dir);
	if (asprintf(&up->log_path, "%s/sim-%s.log", up->dir, name) < 0)
		abort();
	argv[n++] = bin;
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--port-file";
	argv[n++] = port_file;
	for (size_t i = 0; args && args[i] && n < 62; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	up->pid = fork();
	if (up->pid == 0) {
		int fd = open(up->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	for (int waited = 0; waited < 5000; waited += 20) {
		char *text = test_read_file(port_file, NULL);
		int status;
		if (text) {
			up->port = atoi(text);
			free(text);
			snprintf(up->url, sizeof up->url, "http://127.0.0.1:%d", up->port);
			return up;
		}
		if (waitpid(up->pid, &status, WNOHANG) == up->pid) {
			char *log = test_read_file(up->log_path, NULL);
			fprintf(stderr, "kanal-sim-%s exited at start:\n%s\n", name,
				log ? log : "");
			free(log);
			up->pid = 0;
			upstream_stop(&up);
			return NULL;
		}
		test_sleep_ms(20);
	}
	fprintf(stderr, "kanal-sim-%s did not come up within 5 s\n", name);
	upstream_stop(&up);
	return NULL;
}

void upstream_stop(upstream_t **up_p)
{
	upstream_t *up = up_p ? *up_p : NULL;

	if (!up)
		return;
	if (up->pid > 0) {
		int status;
		kill(up->pid, SIGTERM);
		for (int waited = 0; waited < 3000; waited += 10) {
			if (waitpid(up->pid, &status, WNOHANG) == up->pid) {
				up->pid = 0;
				break;
			}
			test_sleep_ms(10);
		}
		if (up->pid > 0) {
			kill(up->pid, SIGKILL);
			waitpid(up->pid, &status, 0);
		}
	}
	if (up->log_path)
		test_keep_file(up->name ? up->name : "sim", up->log_path);
	if (up->dir && !getenv("KANAL_KEEP_TEST_DIRS"))
		test_rmdir_r(up->dir);
	free(up->dir);
	free(up->log_path);
	free(up->name);
	free(up);
	*up_p = NULL;
}

upstream_t *upstream_start_tls(const char *name, const char *ca_dir, const char *const *args)
{
	char cert[1100], key[1100], ca[1100];
	const char *all[64] = { "--set", cert, "--set", key, "--set", ca };
	size_t n = 6;
	upstream_t *up;

	snprintf(cert, sizeof cert, "tls_cert=%s/server.pem", ca_dir);
	snprintf(key, sizeof key, "tls_key=%s/server.key", ca_dir);
	snprintf(ca, sizeof ca, "tls_ca=%s/ca.pem", ca_dir);
	for (size_t i = 0; args && args[i] && n < 63; i++)
		all[n++] = args[i];
	all[n] = NULL;
	if (!(up = upstream_start(name, all)))
		return NULL;
	up->ca_dir = (char *)ca_dir;
	snprintf(up->url, sizeof up->url, "https://127.0.0.1:%d", up->port);
	return up;
}

long upstream_http(upstream_t *up, const char *method, const char *url, const char *body,
		   const char *content_type, char **body_out)
{
	char full[4096], ct[256], ca[1100], cert[1100], key[1100];
	const char *headers[] = { content_type ? ct : NULL, NULL };
	bool tls = up && up->ca_dir;
	http_answer_t a;

	if (up && url[0] == '/')
		snprintf(full, sizeof full, "%s%s", up->url, url);
	else
		snprintf(full, sizeof full, "%s", url);
	snprintf(ct, sizeof ct, "Content-Type: %s", content_type ? content_type : "");
	if (tls) {
		snprintf(ca, sizeof ca, "%s/ca.pem", up->ca_dir);
		snprintf(cert, sizeof cert, "%s/client.pem", up->ca_dir);
		snprintf(key, sizeof key, "%s/client.key", up->ca_dir);
	}
	http_request(NULL,
		     &(http_request_t){ .method = method,
					.url = full,
					.headers = headers,
					.bearer = up && up->bearer[0] ? up->bearer : NULL,
					.userpwd = up && up->userpwd[0] ? up->userpwd : NULL,
					.body = body,
					.timeout_ms = 10000,
					.ca_file = tls ? ca : NULL,
					.client_cert = tls ? cert : NULL,
					.client_key = tls ? key : NULL },
		     &a);
	if (body_out) {
		*body_out = a.body;
		a.body = NULL;
	}
	free(a.body);
	return a.status;
}

int upstream_fault(upstream_t *up, const char *mode, int count)
{
	char body[128];
	long st;

	snprintf(body, sizeof body, "{\"mode\": \"%s\", \"count\": %d}", mode, count);
	st = upstream_http(up, "POST", "/_sim/fault", body, "application/json", NULL);
	return st == 200 ? 0 : -1;
}
