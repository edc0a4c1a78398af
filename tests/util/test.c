/*
 * tests/util/test.c — the runner behind TEST_MAIN and small file helpers for tests.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

int test_run(const char *suite, CU_TestInfo *tests, int argc, char **argv)
{
	CU_SuiteInfo suites[] = { { suite, NULL, NULL, NULL, NULL, tests }, CU_SUITE_INFO_NULL };
	int failed;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	if (CU_register_suites(suites) != CUE_SUCCESS) {
		fprintf(stderr, "%s: cannot register: %s\n", suite, CU_get_error_msg());
		return 2;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	if (argc > 1) {
		CU_pSuite s = CU_get_suite(suite);
		CU_pTest t = s ? CU_get_test(s, argv[1]) : NULL;
		if (!t) {
			fprintf(stderr, "%s: no test named '%s'\n", suite, argv[1]);
			CU_cleanup_registry();
			return 2;
		}
		CU_basic_run_test(s, t);
	} else {
		CU_basic_run_tests();
	}
	failed = (int)CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}

char *test_tmpdir(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char *path;

	if (!base || !*base)
		base = "/tmp";
	if (asprintf(&path, "%s/kanal-%s-XXXXXX", base, tag) < 0)
		return NULL;
	if (!mkdtemp(path)) {
		free(path);
		return NULL;
	}
	return path;
}

int test_dir_count(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

void test_rmdir_r(const char *path)
{
	DIR *d;
	struct dirent *e;

	if (!path)
		return;
	d = opendir(path);
	if (!d) {
		unlink(path);
		return;
	}
	while ((e = readdir(d))) {
		char *sub;
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (asprintf(&sub, "%s/%s", path, e->d_name) < 0)
			continue;
		if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
			test_rmdir_r(sub);
		else
			unlink(sub);
		free(sub);
	}
	closedir(d);
	rmdir(path);
}

char *test_write_file(const char *dir, const char *name, const char *text)
{
	char *path;
	FILE *f;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return NULL;
	f = fopen(path, "w");
	if (!f) {
		free(path);
		return NULL;
	}
	fputs(text, f);
	fclose(f);
	return path;
}

char *test_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf) {
		buf[n] = '\0';
		if (len)
			*len = (size_t)n;
	}
	return buf;
}

const char *test_build_dir(void)
{
	const char *b = getenv("BUILD");
	return b && *b ? b : "build";
}

const char *test_path(const char *rel)
{
	static char bufs[8][1024];
	static int next;
	char *buf = bufs[next++ % 8];

	snprintf(buf, sizeof bufs[0], "%s/%s", test_build_dir(), rel);
	return buf;
}

void test_keep_file(const char *tag, const char *path)
{
	static unsigned n;
	const char *dir = getenv("KANAL_TEST_OUTPUT_DIR");
	char name[128];
	size_t len = 0;
	char *text;

	if (!dir || !*dir || !(text = test_read_file(path, &len)))
		return;
	snprintf(name, sizeof name, "%s-%d-%u.log", tag, (int)getpid(), n++);
	free(test_write_file(dir, name, text));
	free(text);
}

void test_keep_text(const char *tag, const char *text, size_t len)
{
	const char *dir = getenv("KANAL_TEST_OUTPUT_DIR");
	char path[4096];
	FILE *f;

	if (!dir || !*dir)
		return;
	snprintf(path, sizeof path, "%s/%s-%d.log", dir, tag, (int)getpid());
	if ((f = fopen(path, "a"))) {
		fwrite(text, 1, len, f);
		fputc('\n', f);
		fclose(f);
	}
}

void test_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

int64_t test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A TCP port free on 127.0.0.1 just now (the kernel's pick), or 0. */
/* Ports handed out by this process, so that two calls never return the same one. */
static int s_ports_given[256];
static size_t s_n_ports_given;

/* True when nothing listens on 127.0.0.1:port now and it was not handed out before. */
static bool s_port_free(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons((uint16_t)port) };
	int fd;
	bool ok;

	for (size_t i = 0; i < s_n_ports_given && i < 256; i++)
		if (s_ports_given[i] == port)
			return false;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

int test_free_port(void)
{
	static unsigned seed;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	int fd, port = 0;

	/* Below Linux's ephemeral range (32768-60999 by default): a port from that range can
	 * be taken, between this call and the server's bind, as the local end of some other
	 * process's outgoing connection — seen when one nats-server of a test cluster dialled
	 * its peers while another was still to bind its route port. */
	if (!seed)
		seed = (unsigned)getpid() ^ (unsigned)time(NULL);
	for (int tries = 0; tries < 500 && !port; tries++) {
		int p = 20000 + (int)(rand_r(&seed) % 12000);
		if (s_port_free(p))
			port = p;
	}
	if (!port) { /* everything there taken: let the kernel choose, as before */
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
		    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
			port = ntohs(a.sin_port);
		if (fd >= 0)
			close(fd);
	}
	if (port)
		s_ports_given[s_n_ports_given++ % 256] = port;
	return port;
}

int test_run_program(const char *prog, char *const args[], const char *out_path)
{
	char path[4096];
	int status;
	pid_t pid;

	snprintf(path, sizeof path, "%s", test_path(prog));
	pid = fork();
	if (pid == 0) {
		FILE *f = freopen(out_path, "a", stdout);
		if (f)
			dup2(fileno(stdout), STDERR_FILENO);
		execv(path, args);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
