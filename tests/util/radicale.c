/*
 * tests/util/radicale.c — see radicale.h. Radicale is a Python program; it is started with
 * its own config file only (-C), so /etc/radicale/config and the user's config never leak
 * into a test. The port is picked by binding port 0 and releasing it; when Radicale then
 * finds it taken (another test grabbed it in between) it exits, and we try a new one.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "radicale.h"
#include "test.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"

#define START_WAIT_MS 15000
#define STOP_WAIT_MS 5000
#define PORT_TRIES 5

/* A port of 127.0.0.1 that was free a moment ago, or 0. */
static int s_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

	if (fd < 0)
		return 0;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* Writes a user name as a Python regular expression that matches only it, inside a
 * pattern that also goes through str.format (so braces are doubled). */
static void s_put_regex_name(FILE *f, const char *name)
{
	for (const char *p = name; *p; p++) {
		if (*p == '{' || *p == '}')
			fprintf(f, "%c%c", *p, *p);
		else if (!isalnum((unsigned char)*p))
			fprintf(f, "\\%c", *p);
		else
			fputc(*p, f);
	}
}

/* Writes config, users and rights into r->dir. Returns 0 or -1. */
static int s_write_files(radicale_t *r)
{
	char *path;
	FILE *f;

	if (asprintf(&path, "%s/users", r->dir) < 0 || !(f = fopen(path, "w")))
		return -1;
	for (size_t i = 0; i < r->n_users; i++)
		fprintf(f, "%s:%s\n", r->users[i].name, r->users[i].password);
	fclose(f);
	free(path);

	if (asprintf(&path, "%s/rights", r->dir) < 0 || !(f = fopen(path, "w")))
		return -1;
	for (size_t i = 0; i < r->n_users; i++) {
		if (r->users[i].own_only)
			continue;
		fprintf(f, "[service-%zu]\nuser: ", i);
		s_put_regex_name(f, r->users[i].name);
		fprintf(f, "\ncollection: .*\npermissions: RrWw\n\n");
	}
	fprintf(f, "[root]\nuser: .+\ncollection:\npermissions: R\n\n"
		   "[own]\nuser: .+\ncollection: {user}(/.*)?\npermissions: RrWw\n");
	fclose(f);
	free(path);
	return 0;
}

/* Writes the config file for r->port. Returns 0 or -1. */
static int s_write_config(radicale_t *r)
{
	FILE *f = fopen(r->config_path, "w");

	if (!f)
		return -1;
	fprintf(f,
		"[server]\nhosts = 127.0.0.1:%d\ntimeout = 10\n\n"
		"[auth]\ntype = htpasswd\nhtpasswd_filename = %s/users\n"
		"htpasswd_encryption = plain\ndelay = 0\n\n"
		"[rights]\ntype = from_file\nfile = %s/rights\n\n"
		"[storage]\nfilesystem_folder = %s\n\n"
		"[web]\ntype = none\n\n"
		"[logging]\nlevel = info\nmask_passwords = True\n",
		r->port, r->dir, r->dir, r->storage);
	return fclose(f) == 0 ? 0 : -1;
}

/* Starts the process on r->port with the log appended to r->log_path. */
static pid_t s_spawn(radicale_t *r)
{
	pid_t pid;

	r->parent = getpid();
	pid = fork();

	if (pid == 0) {
		int fd = open(r->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int null = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (null >= 0)
			dup2(null, 0);
		/* Its own process group, so a stop reaches any helper it might start; and it
		 * dies with the test, should the test end without radicale_stop (a crash, a
		 * fatal assertion, a timeout). */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != r->parent)
			_exit(1);
		execlp("radicale", "radicale", "-C", r->config_path, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* One request to an absolute URL; see radicale_request. */
static long s_http(const char *url, const char *user, const char *password, const char *method,
		   const char *const *headers, const char *body, int timeout_ms, char **body_out,
		   char **etag_out)
{
	const char *lines[16];
	char userpwd[512];
	size_t n = 0;
	bool has_ct = false;
	http_answer_t a;

	for (size_t i = 0; headers && headers[i] && n < 14; i++) {
		lines[n++] = headers[i];
		if (!strncasecmp(headers[i], "Content-Type:", 13))
			has_ct = true;
	}
	if (body && !has_ct)
		lines[n++] = "Content-Type: text/calendar; charset=utf-8";
	lines[n] = NULL;
	snprintf(userpwd, sizeof userpwd, "%s:%s", user ? user : "", password ? password : "");
	http_request(NULL,
		     &(http_request_t){ .method = method,
					.url = url,
					.headers = lines,
					.userpwd = user ? userpwd : NULL,
					.body = body,
					.timeout_ms = timeout_ms },
		     &a);
	if (body_out) {
		*body_out = a.body;
		a.body = NULL;
	}
	if (etag_out)
		*etag_out = a.etag[0] ? strdup(a.etag) : NULL;
	free(a.body);
	return a.status;
}

/* Waits until the process answers HTTP (any status) or exits. Returns 0 when it answers,
 * 1 when it exited because its port was taken, -1 otherwise (exited or timed out). */
static int s_wait_up(radicale_t *r)
{
	char url[96];

	snprintf(url, sizeof url, "%s/", r->url);
	for (int waited = 0; waited < START_WAIT_MS; waited += 100) {
		int status;
		if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
			char *log = test_read_file(r->log_path, NULL);
			int clash = log && strstr(log, "ddress already in use");
			r->pid = 0;
			if (!clash)
				fprintf(stderr, "radicale exited at start:\n%s\n", log ? log : "");
			free(log);
			return clash ? 1 : -1;
		}
		if (s_http(url, NULL, NULL, "OPTIONS", NULL, NULL, 500, NULL, NULL) > 0)
			return 0;
		test_sleep_ms(100);
	}
	fprintf(stderr, "radicale did not answer within %d ms\n", START_WAIT_MS);
	return -1;
}

/* Kills the process group: SIGTERM, a bounded wait, then SIGKILL. */
static void s_kill(radicale_t *r)
{
	int status;

	if (r->pid <= 0)
		return;
	kill(-r->pid, SIGTERM);
	kill(r->pid, SIGTERM);
	for (int waited = 0; waited < STOP_WAIT_MS; waited += 20) {
		if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
			r->pid = 0;
			return;
		}
		test_sleep_ms(20);
	}
	kill(-r->pid, SIGKILL);
	kill(r->pid, SIGKILL);
	waitpid(r->pid, &status, 0);
	r->pid = 0;
}

radicale_t *radicale_start(const radicale_user_t *users)
{
	radicale_t *r = calloc(1, sizeof *r);
	size_t n = 0;

	if (!r)
		return NULL;
	while (users && users[n].name)
		n++;
	r->users = calloc(n + 1, sizeof *r->users);
	r->n_users = n;
	for (size_t i = 0; i < n; i++) {
		r->users[i].name = strdup(users[i].name);
		r->users[i].password = strdup(users[i].password ? users[i].password : "");
		r->users[i].own_only = users[i].own_only;
	}
	r->dir = test_tmpdir("radicale");
	if (!r->dir || asprintf(&r->storage, "%s/collections", r->dir) < 0 ||
	    asprintf(&r->log_path, "%s/radicale.log", r->dir) < 0 ||
	    asprintf(&r->config_path, "%s/radicale.conf", r->dir) < 0 || s_write_files(r) != 0) {
		fprintf(stderr, "radicale_start: cannot prepare the test folder\n");
		radicale_stop(&r);
		return NULL;
	}
	for (int attempt = 0; attempt < PORT_TRIES; attempt++) {
		int up;
		r->port = s_free_port();
		snprintf(r->url, sizeof r->url, "http://127.0.0.1:%d", r->port);
		if (!r->port || s_write_config(r) != 0)
			break;
		r->pid = s_spawn(r);
		if (r->pid < 0)
			break;
		up = s_wait_up(r);
		if (up == 0)
			return r;
		s_kill(r);
		if (up < 0)
			break;
	}
	radicale_stop(&r);
	return NULL;
}

void radicale_stop(radicale_t **r_p)
{
	radicale_t *r = r_p ? *r_p : NULL;

	if (!r)
		return;
	s_kill(r);
	if (r->dir && !getenv("KANAL_KEEP_TEST_DIRS"))
		test_rmdir_r(r->dir);
	else if (r->dir)
		fprintf(stderr, "radicale: kept %s\n", r->dir);
	for (size_t i = 0; i < r->n_users; i++) {
		free((char *)r->users[i].name);
		free((char *)r->users[i].password);
	}
	free(r->users);
	free(r->dir);
	free(r->storage);
	free(r->log_path);
	free(r->config_path);
	free(r);
	*r_p = NULL;
}

int radicale_halt(radicale_t *r)
{
	if (!r || r->pid <= 0)
		return -1;
	s_kill(r);
	return 0;
}

int radicale_resume(radicale_t *r)
{
	if (!r || r->pid > 0)
		return -1;
	/* The port was ours a moment ago; Radicale binds with SO_REUSEADDR, so a connection
	 * left in TIME_WAIT does not stand in the way. A clash with another program is
	 * retried a few times rather than moving: the connector's config names this port. */
	for (int attempt = 0; attempt < PORT_TRIES; attempt++) {
		int up;
		r->pid = s_spawn(r);
		if (r->pid < 0)
			return -1;
		up = s_wait_up(r);
		if (up == 0)
			return 0;
		s_kill(r);
		if (up < 0)
			return -1;
		test_sleep_ms(200);
	}
	return -1;
}

long radicale_request(radicale_t *r, const char *user, const char *method, const char *path,
		      const char *const *headers, const char *body, char **body_out,
		      char **etag_out)
{
	const char *password = NULL;
	char url[2048];

	for (size_t i = 0; user && i < r->n_users; i++)
		if (!strcmp(r->users[i].name, user))
			password = r->users[i].password;
	snprintf(url, sizeof url, "%s%s", r->url, path);
	return s_http(url, user, password, method, headers, body, 10000, body_out, etag_out);
}

int radicale_mkcalendar(radicale_t *r, const char *user, const char *path)
{
	char parent[1024];
	long st;

	/* Parents first: every prefix ending in '/' below the root. */
	for (const char *p = strchr(path + 1, '/'); p && p[1]; p = strchr(p + 1, '/')) {
		snprintf(parent, sizeof parent, "%.*s", (int)(p - path + 1), path);
		st = radicale_request(r, user, "PROPFIND", parent,
				      (const char *const[]){ "Depth: 0", NULL }, NULL, NULL, NULL);
		if (st == 207)
			continue;
		st = radicale_request(r, user, "MKCOL", parent, NULL, NULL, NULL, NULL);
		if (st != 201) {
			fprintf(stderr, "radicale_mkcalendar: MKCOL %s: HTTP %ld\n", parent, st);
			return -1;
		}
	}
	st = radicale_request(r, user, "MKCALENDAR", path, NULL, NULL, NULL, NULL);
	if (st != 201) {
		fprintf(stderr, "radicale_mkcalendar: MKCALENDAR %s: HTTP %ld\n", path, st);
		return -1;
	}
	return 0;
}

char *radicale_list(radicale_t *r, const char *user, const char *path, size_t *count)
{
	static const char *const headers[] = { "Depth: 1",
					       "Content-Type: application/xml; charset=utf-8",
					       NULL };
	const char *query = "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
			    "<propfind xmlns=\"DAV:\"><prop><getetag/></prop></propfind>";
	char *body = NULL, *out;
	size_t n = 0, len = 0;
	long st = radicale_request(r, user, "PROPFIND", path, headers, query, &body, NULL);

	if (count)
		*count = 0;
	if (st != 207) {
		free(body);
		return NULL;
	}
	out = calloc(1, strlen(body) + 1);
	/* Each <…href>…</…href> whose text ends in ".ics" is an item; the collection itself
	 * ends in '/'. Names are the last path segment. */
	for (const char *p = body; out && (p = strstr(p, "href>"));) {
		const char *text = p + 5, *end = strchr(text, '<');
		p = text;
		if (!end || end == text || end[-1] == '/' || text[0] == '<')
			continue;
		if (end - text < 4 || strncmp(end - 4, ".ics", 4))
			continue;
		{
			const char *name = text;
			for (const char *q = text; q < end; q++)
				if (*q == '/')
					name = q + 1;
			memcpy(out + len, name, (size_t)(end - name));
			len += (size_t)(end - name);
			out[len++] = '\n';
			out[len] = '\0';
			n++;
		}
	}
	free(body);
	if (count)
		*count = n;
	return out;
}
