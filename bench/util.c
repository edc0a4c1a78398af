/*
 * bench/util.c — kbench's helpers: clocks, quantiles, scratch folders, and the child
 * processes (kanald, mosquitto, nats-server, the gateway client) a run starts. Every child
 * is remembered until it is stopped, so that an interrupted or failing benchmark still
 * leaves nothing running behind (bench_kill_all runs at exit and on SIGINT/SIGTERM).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MAX_CHILDREN 16

static pid_t s_children[MAX_CHILDREN];

bool bench_keep_scratch;

int64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int s_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

int64_t bench_quantile(int64_t *v, size_t n, double q)
{
	size_t rank;

	if (n == 0)
		return -1;
	qsort(v, n, sizeof *v, s_cmp_i64);
	rank = (size_t)(q * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

int bench_na(bench_result_t *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->na, sizeof r->na, fmt, ap);
	va_end(ap);
	return -1;
}

void bench_result_init(bench_result_t *r)
{
	memset(r, 0, sizeof *r);
	r->rate = r->cpu_us = r->busiest = -1;
	r->p50_us = r->p99_us = r->p999_us = r->rss_mib = -1;
}

char *bench_mkdir(const bench_params_t *p, const char *tag)
{
	static unsigned counter;
	char *dir;

	if (asprintf(&dir, "%s/%s-%u", p->tmp, tag, ++counter) < 0)
		return NULL;
	bench_rmdir(dir);
	if (mkdir(dir, 0700) != 0) {
		free(dir);
		return NULL;
	}
	return dir;
}

void bench_rmdir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char *path;
		struct stat st;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (asprintf(&path, "%s/%s", dir, e->d_name) < 0)
			continue;
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			bench_rmdir(path);
		else
			unlink(path);
		free(path);
	}
	closedir(d);
	rmdir(dir);
}

int bench_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	int rc = 0;

	if (!f)
		return -1;
	if (fputs(text, f) == EOF)
		rc = -1;
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

char *bench_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f)
		return NULL;
	do {
		if (cap - len < 4096) {
			char *p = realloc(buf, cap = cap ? cap * 2 : 8192);
			if (!p) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = p;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	fclose(f);
	buf[len] = '\0';
	return buf;
}

static void s_remember(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (s_children[i] == 0) {
			s_children[i] = pid;
			return;
		}
}

static void s_forget(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (s_children[i] == pid)
			s_children[i] = 0;
}

pid_t bench_spawn(char *const argv[], const char *log_path)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		setpgid(0, 0);
		execv(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid);
	s_remember(pid);
	return pid;
}

static int s_status(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

int bench_stop(pid_t pid, int sig, int timeout_ms)
{
	int st;

	if (pid <= 0)
		return -1;
	kill(pid, sig);
	for (int waited = 0; waited <= timeout_ms; waited += 10) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid || (w < 0 && errno == ECHILD)) {
			s_forget(pid);
			return w == pid ? s_status(st) : -1;
		}
		bench_sleep_ms(10);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	s_forget(pid);
	return 128 + SIGKILL;
}

bool bench_alive(pid_t pid)
{
	int st;
	pid_t w = waitpid(pid, &st, WNOHANG);

	if (w == pid || (w < 0 && errno == ECHILD)) {
		s_forget(pid);
		return false;
	}
	return true;
}

void bench_kill_all(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (s_children[i] > 0) {
			kill(s_children[i], SIGKILL);
			waitpid(s_children[i], NULL, 0);
			s_children[i] = 0;
		}
	}
}

double bench_rss_mib(pid_t pid, bool peak)
{
	char path[64], line[256];
	const char *key = peak ? "VmHWM:" : "VmRSS:";
	FILE *f;
	double mib = -1;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f)) {
		long kib;
		if (!strncmp(line, key, strlen(key)) &&
		    sscanf(line + strlen(key), "%ld", &kib) == 1)
			mib = (double)kib / 1024.0;
	}
	fclose(f);
	return mib;
}

int bench_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (fd < 0)
		return -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

bool bench_wait_port(int port, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		bool ok;

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
		if (fd >= 0)
			close(fd);
		if (ok)
			return true;
		bench_sleep_ms(20);
	}
	return false;
}

bool bench_wait_file(const char *path, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 10) {
		if (access(path, F_OK) == 0)
			return true;
		bench_sleep_ms(10);
	}
	return false;
}

/* CPU seconds (user + system) the process has used, from /proc; -1 when unknown. */
double bench_proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long ut, st;
	FILE *f;
	char *p;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	p = fgets(buf, sizeof buf, f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}
