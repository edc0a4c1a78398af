/*
 * tests/integration/test_http_slow.c — hostile clients against the http plugin's ingress in
 * the real kanald: slowloris clients trickling one header line a second, from one address
 * and from many, and a flood of connections that send nothing, all while a good client
 * posts events. The good client's latency stays under a stated bound, every attacker
 * connection is cut off within request_timeout, and kanald's descriptors and memory stay
 * bounded. And the answers to requests that cannot be served: a chunked body over max_body
 * gets its 413, a connection starting with NUL bytes its 400 at once, a trickled request
 * its 408, one connection too many from an address its 429 — each in JSON, each followed
 * by the connection's close.
 *
 * Attackers are raw sockets bound to other loopback addresses (127.0.0.2, 127.0.1.x, …;
 * all of 127/8 is the loopback on Linux), so that the per-address limit tells them from
 * the good client on 127.0.0.1, which is libcurl. Every wait is bounded.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kanald.h"
#include "test.h"

#define WAIT 10000              /* ms: the bound of every plain wait */
#define REQUEST_TIMEOUT_MS 3000 /* the ingress's request_timeout in these tests */
#define CUT_SLACK_MS 1500       /* how much later than request_timeout a cut may come */
#define GOOD_P99_MS 3000        /* the bound on the good client's p99 latency under attack */

/* ---- kanald with an ingress ----------------------------------------------------------- */

static kd_t *s_start(const char *tag, const char *options, int *port)
{
	char instances[1024], *conf;
	kd_t *kd;
	int64_t until;

	snprintf(instances, sizeof instances,
		 "  - name: in\n    plugin: http\n"
		 "    options: { listen: '127.0.0.1:0', port_file: '@DIR@/in.port', %s }\n"
		 "  - name: out\n    plugin: sink\n"
		 "    options: { path: '@DIR@/out.jsonl' }\n",
		 options);
	conf = kd_config(instances, NULL);
	kd = kd_start(tag, conf, "routes:\n  - name: all\n    to: out\n");
	free(conf);
	*port = 0;
	until = test_now_ms() + WAIT;
	while (kd && *port <= 0 && test_now_ms() < until) {
		char *text = test_read_file(kd_path(kd, "in.port"), NULL);
		*port = text ? atoi(text) : 0;
		free(text);
		if (*port <= 0)
			test_sleep_ms(20);
	}
	if (kd && *port <= 0)
		kd_destroy(&kd);
	return kd;
}

/* kanald's open descriptors and resident memory (KiB), from /proc. */
static int s_fds(pid_t pid)
{
	char path[64];
	DIR *d;
	int n = 0;

	snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
	if (!(d = opendir(path)))
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n - 2;
}

static long s_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if (!(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "VmRSS:", 6))
			kib = strtol(line + 6, NULL, 10);
	fclose(f);
	return kib;
}

/* ---- raw clients ------------------------------------------------------------------------ */

/* A connection to 127.0.0.1:port from the loopback address `from` (NULL: any); blocking
 * with a receive timeout of 100 ms, or non-blocking when nonblock. Returns the fd or -1. */
static int s_connect(const char *from, int port, bool nonblock)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };
	int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);

	if (fd < 0)
		return -1;
	if (from) {
		struct sockaddr_in src = { .sin_family = AF_INET };
		inet_pton(AF_INET, from, &src.sin_addr);
		if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
			close(fd);
			return -1;
		}
	}
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

static void s_send(int fd, const void *p, size_t len)
{
	(void)!send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Reads what fd says until it closes (EOF or reset) or timeout_ms pass. Returns the text
 * (malloc'd); *closed_after_ms is the time until the close, or -1 when it stayed open. */
static char *s_read_until_closed(int fd, int timeout_ms, int64_t *closed_after_ms)
{
	int64_t start = test_now_ms();
	size_t len = 0;
	char *text = calloc(1, 1);

	*closed_after_ms = -1;
	while (test_now_ms() - start < timeout_ms) {
		char buf[4096], *t;
		ssize_t n = recv(fd, buf, sizeof buf, 0);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			continue;
		if (n <= 0) {
			*closed_after_ms = test_now_ms() - start;
			break;
		}
		if (!(t = realloc(text, len + (size_t)n + 1)))
			break;
		text = t;
		memcpy(text + len, buf, (size_t)n);
		len += (size_t)n;
		text[len] = '\0';
	}
	return text;
}

/* True when an answer is `status` with a JSON body holding "error". */
static bool s_is_json_answer(const char *text, int status)
{
	char line[32];

	snprintf(line, sizeof line, "HTTP/1.1 %d ", status);
	return text && !strncmp(text, line, strlen(line)) &&
	       strstr(text, "Content-Type: application/json") &&
	       strstr(text, "\r\n\r\n{\"error\":");
}

/* ---- the attack ------------------------------------------------------------------------- */

#define SLOW_MAX 88 /* 64 from one address (as in issue 12), 24 from others */
#define FLOOD_HELD 200

typedef struct attack {
	int port;
	volatile bool stop;
	/* slowloris: SLOW_MAX connections, 64 from 127.0.0.2, the others from 127.0.1.x */
	int slow_fd[SLOW_MAX];
	int64_t slow_since[SLOW_MAX]; /* when it connected, or when it may connect again */
	long slow_cut;                /* connections kanald closed */
	int64_t longest_hold_ms;      /* the longest any stayed open before kanald closed it */
	long flood_connects;
} attack_t;

static const char *s_slow_from(int i, char *buf, size_t size)
{
	if (i < 64)
		snprintf(buf, size, "127.0.0.2");
	else
		snprintf(buf, size, "127.0.1.%d", i - 64 + 1);
	return buf;
}

/* Each slowloris connection sends a request line, then one header line a second, and
 * never the end of the head; when kanald closes it, it connects again 100 ms later. */
static void *s_slowloris(void *arg)
{
	attack_t *a = arg;
	int64_t next_line = 0;
	char from[32];

	for (int i = 0; i < SLOW_MAX; i++) {
		a->slow_fd[i] = -1;
		a->slow_since[i] = 0;
	}
	while (!a->stop) {
		int64_t now = test_now_ms();
		struct pollfd pfd[SLOW_MAX];

		for (int i = 0; i < SLOW_MAX; i++) {
			if (a->slow_fd[i] < 0 && now >= a->slow_since[i]) {
				s_slow_from(i, from, sizeof from);
				a->slow_fd[i] = s_connect(from, a->port, true);
				a->slow_since[i] = now;
				if (a->slow_fd[i] >= 0)
					s_send(a->slow_fd[i],
					       "POST /events HTTP/1.1\r\nHost: k\r\n", 32);
			}
			pfd[i].fd = a->slow_fd[i];
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
		}
		if (now >= next_line) {
			for (int i = 0; i < SLOW_MAX; i++)
				if (a->slow_fd[i] >= 0)
					s_send(a->slow_fd[i], "X-Slow: 1\r\n", 11);
			next_line = now + 1000;
		}
		poll(pfd, SLOW_MAX, 50);
		for (int i = 0; i < SLOW_MAX; i++) {
			char buf[2048];
			ssize_t n;

			if (a->slow_fd[i] < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			/* An answer (408, 429, 503) comes before the close: read through it. */
			while ((n = recv(a->slow_fd[i], buf, sizeof buf, MSG_DONTWAIT)) > 0)
				;
			if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				int64_t held = test_now_ms() - a->slow_since[i];
				if (held > a->longest_hold_ms)
					a->longest_hold_ms = held;
				a->slow_cut++;
				close(a->slow_fd[i]);
				a->slow_fd[i] = -1;
				a->slow_since[i] = test_now_ms() + 100;
			}
		}
	}
	for (int i = 0; i < SLOW_MAX; i++) {
		/* One still open now must be younger than the bound. */
		if (a->slow_fd[i] >= 0) {
			int64_t held = test_now_ms() - a->slow_since[i];
			if (held > a->longest_hold_ms)
				a->longest_hold_ms = held;
			close(a->slow_fd[i]);
		}
	}
	return NULL;
}

/* Opens connections from 127.0.2.1–250 as fast as every 2 ms, sends nothing, and holds the
 * last FLOOD_HELD of them. */
static void *s_flood(void *arg)
{
	attack_t *a = arg;
	int held[FLOOD_HELD];
	int next = 0;
	char from[32];

	for (int i = 0; i < FLOOD_HELD; i++)
		held[i] = -1;
	while (!a->stop) {
		if (held[next] >= 0)
			close(held[next]);
		snprintf(from, sizeof from, "127.0.2.%d", (int)(a->flood_connects % 250) + 1);
		held[next] = s_connect(from, a->port, true);
		next = (next + 1) % FLOOD_HELD;
		a->flood_connects++;
		test_sleep_ms(2);
	}
	for (int i = 0; i < FLOOD_HELD; i++)
		if (held[i] >= 0)
			close(held[i]);
	return NULL;
}

/* ---- the good client ---------------------------------------------------------------------- */

static size_t s_discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* POSTs event `id` on a new connection, again at once after a 503 or no answer (the rule
 * for clients), until it is answered 202 or WAIT passes. Returns the status last seen. */
static long s_post_good(int port, int id)
{
	char url[64], body[256];
	struct curl_slist *hdrs =
		curl_slist_append(NULL, "Content-Type: application/cloudevents+json");
	int64_t until = test_now_ms() + WAIT;
	long status = 0;

	hdrs = curl_slist_append(hdrs, "Expect:");
	snprintf(url, sizeof url, "http://127.0.0.1:%d/events", port);
	snprintf(body, sizeof body,
		 "{\"specversion\":\"1.0\",\"id\":\"good-%d\",\"source\":\"urn:test:good\","
		 "\"type\":\"test.good\",\"data\":{\"n\":%d}}",
		 id, id);
	while (status != 202 && test_now_ms() < until) {
		CURL *c = curl_easy_init();

		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)WAIT);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_discard);
		status = 0;
		if (curl_easy_perform(c) == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_cleanup(c);
		if (status != 202 && status != 503 && status != 0)
			break;
	}
	curl_slist_free_all(hdrs);
	return status;
}

static int s_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* ---- tests -------------------------------------------------------------------------------- */

#define GOOD_REQUESTS 60

static void test_slowloris_and_a_connection_flood_do_not_starve_a_good_client(void)
{
	int port = 0, fds0, fds_max = 0, accepted = 0;
	long rss0, rss_max = 0;
	int64_t lat[GOOD_REQUESTS];
	attack_t a = { 0 };
	pthread_t slow, flood;
	bool started = false, flood_started = false;
	kd_t *kd = s_start("http-slowloris", "request_timeout: 3s", &port);

	REQUIRE(kd != NULL);
	fds0 = s_fds(kd->pid);
	rss0 = s_rss_kib(kd->pid);
	REQUIRE(fds0 > 0 && rss0 > 0);
	a.port = port;
	REQUIRE(pthread_create(&slow, NULL, s_slowloris, &a) == 0);
	started = true;
	/* Let the attackers fill the ingress before the good client starts. First the
	 * slowloris alone: the per-address limit and request_timeout hold it off; half-way the
	 * flood joins, and the total limit evicts the oldest waiting connections. */
	test_sleep_ms(1500);
	for (int i = 0; i < GOOD_REQUESTS; i++) {
		if (i == GOOD_REQUESTS / 2 && !flood_started)
			flood_started = pthread_create(&flood, NULL, s_flood, &a) == 0;
		int64_t t0 = test_now_ms();
		long status = s_post_good(port, i);
		int fds = s_fds(kd->pid);
		long rss = s_rss_kib(kd->pid);

		lat[i] = test_now_ms() - t0;
		accepted += status == 202;
		if (fds > fds_max)
			fds_max = fds;
		if (rss > rss_max)
			rss_max = rss;
		test_sleep_ms(100);
	}
done:
	if (started) {
		a.stop = true;
		pthread_join(slow, NULL);
		if (flood_started)
			pthread_join(flood, NULL);
	}
	if (started) {
		qsort(lat, GOOD_REQUESTS, sizeof *lat, s_cmp_i64);
		fprintf(stderr,
			"good client: %d/%d accepted, p50 %lld ms, p99 %lld ms; slowloris: %ld "
			"cut off, longest held %lld ms; flood: %ld connects; kanald: fds %d -> %d, "
			"RSS %ld -> %ld KiB\n",
			accepted, GOOD_REQUESTS, (long long)lat[GOOD_REQUESTS / 2],
			(long long)lat[GOOD_REQUESTS * 99 / 100], a.slow_cut,
			(long long)a.longest_hold_ms, a.flood_connects, fds0, fds_max, rss0,
			rss_max);
		/* Every good event is answered 202, fast. */
		CU_ASSERT_EQUAL(accepted, GOOD_REQUESTS);
		CU_ASSERT(lat[GOOD_REQUESTS * 99 / 100] <= GOOD_P99_MS);
		CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), GOOD_REQUESTS, WAIT),
				GOOD_REQUESTS);
		/* Every attacker was cut off within request_timeout (and many were). */
		CU_ASSERT(a.slow_cut >= SLOW_MAX);
		CU_ASSERT(a.longest_hold_ms <= REQUEST_TIMEOUT_MS + CUT_SLACK_MS);
		CU_ASSERT(a.flood_connects > 500);
		/* kanald holds at most max_connections (64) client connections, plus those it
		 * is closing (never more than libmicrohttpd's backstop, 2 × 64 + 16), and
		 * its memory grows by little. */
		CU_ASSERT(fds_max <= fds0 + 2 * 64 + 16);
#ifndef __SANITIZE_ADDRESS__
		CU_ASSERT(rss_max <= rss0 + 16 * 1024);
#else
		/* AddressSanitizer keeps freed memory in quarantine (256 MiB by default): the
		 * bound speaks of the real build only. */
		printf("    (AddressSanitizer build: resident memory reported, not checked)\n");
#endif
		/* When the attack is over, everything is let go. */
		{
			int64_t until = test_now_ms() + WAIT;
			while (s_fds(kd->pid) > fds0 + 2 && test_now_ms() < until)
				test_sleep_ms(100);
			CU_ASSERT(s_fds(kd->pid) <= fds0 + 2);
		}
	}
	kd_destroy(&kd);
}

static void test_a_chunked_body_over_max_body_gets_413_and_the_close(void)
{
	int port = 0, fd = -1;
	char *answer = NULL, chunk[16384 + 16];
	int64_t closed_ms = -1;
	kd_t *kd = s_start("http-chunked", "max_body: 64KiB, max_event_size: 16KiB", &port);
	size_t sent = 0;
	static const char head[] = "POST /events HTTP/1.1\r\nHost: k\r\n"
				   "Content-Type: application/cloudevents-batch+json\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n";

	REQUIRE(kd != NULL);
	REQUIRE((fd = s_connect(NULL, port, false)) >= 0);
	REQUIRE(send(fd, head, sizeof head - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof head - 1));
	/* Up to 10 MiB in 16 KiB chunks, with no end in sight; kanald answers on the way. */
	memcpy(chunk, "4000\r\n", 6);
	memset(chunk + 6, '[', 16384);
	memcpy(chunk + 6 + 16384, "\r\n", 2);
	while (sent < (10u << 20)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 0) > 0)
			break; /* the answer is here */
		if (send(fd, chunk, 6 + 16384 + 2, MSG_NOSIGNAL) < 0)
			break;
		sent += 16384;
	}
	answer = s_read_until_closed(fd, 3000, &closed_ms);
	CU_ASSERT(s_is_json_answer(answer, 413));
	CU_ASSERT_PTR_NOT_NULL(strstr(answer, "max_body"));
	CU_ASSERT(closed_ms >= 0);
	/* It answered when the limit was passed, not at the end of 10 MiB: what was sent
	 * by then is what the loopback's socket buffers hold (about 1 MiB here), far from the
	 * 8 MiB after which the plugin used to close without an answer. */
	CU_ASSERT(sent < (6u << 20));
	test_sleep_ms(200);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 0);
	/* A good request still passes. */
	CU_ASSERT_EQUAL(s_post_good(port, 1), 202);
done:
	if (fd >= 0)
		close(fd);
	free(answer);
	kd_destroy(&kd);
}

static void test_a_request_starting_with_nul_bytes_gets_400_at_once(void)
{
	static const struct {
		const char *bytes;
		size_t len;
	} probes[] = {
		{ "\0\0\0\0\r\n", 6 },
		{ "\0\0\0\0POST /events HTTP/1.1\r\n", 27 },
		{ "\x16\x03\x01\x02\x00\x01", 6 }, /* a TLS handshake */
	};
	int port = 0;
	kd_t *kd = s_start("http-nul", "request_timeout: 20s", &port);

	REQUIRE(kd != NULL);
	for (size_t i = 0; i < sizeof probes / sizeof *probes; i++) {
		int fd = s_connect(NULL, port, false);
		int64_t closed_ms = -1;
		char *answer;

		REQUIRE(fd >= 0);
		s_send(fd, probes[i].bytes, probes[i].len);
		answer = s_read_until_closed(fd, 3000, &closed_ms);
		CU_ASSERT(s_is_json_answer(answer, 400));
		CU_ASSERT(closed_ms >= 0 && closed_ms < 1000);
		free(answer);
		close(fd);
	}
	CU_ASSERT_EQUAL(s_post_good(port, 1), 202);
done:
	kd_destroy(&kd);
}

static void test_a_trickled_request_gets_408_and_one_connection_too_many_429(void)
{
	int port = 0, fd = -1, held[4] = { -1, -1, -1, -1 };
	char *answer = NULL;
	int64_t closed_ms = -1, t0;
	kd_t *kd =
		s_start("http-408", "request_timeout: 3s, max_connections_per_address: 3", &port);

	REQUIRE(kd != NULL);
	/* One header line a second: each resets an idle timeout, none the request's. */
	REQUIRE((fd = s_connect("127.0.0.3", port, false)) >= 0);
	t0 = test_now_ms();
	s_send(fd, "POST /events HTTP/1.1\r\n", 23);
	while (closed_ms < 0 && test_now_ms() - t0 < REQUEST_TIMEOUT_MS + 3000) {
		char *part = s_read_until_closed(fd, 1000, &closed_ms);
		if (*part) {
			free(answer);
			answer = part;
			if (closed_ms < 0) {
				char *rest = s_read_until_closed(fd, 1000, &closed_ms);
				free(rest);
			}
		} else {
			free(part);
		}
		s_send(fd, "X-Slow: 1\r\n", 11);
	}
	CU_ASSERT(s_is_json_answer(answer, 408));
	CU_ASSERT_PTR_NOT_NULL(answer && strstr(answer, "request_timeout"));
	CU_ASSERT(closed_ms >= 0);
	CU_ASSERT(test_now_ms() - t0 >= REQUEST_TIMEOUT_MS - 100);
	CU_ASSERT(test_now_ms() - t0 <= REQUEST_TIMEOUT_MS + CUT_SLACK_MS + 1000);
	close(fd);
	fd = -1;
	free(answer);
	answer = NULL;
	/* Three from 127.0.0.4 are served; the fourth hears 429 and is closed. */
	for (int i = 0; i < 3; i++)
		REQUIRE((held[i] = s_connect("127.0.0.4", port, false)) >= 0);
	test_sleep_ms(200);
	REQUIRE((held[3] = s_connect("127.0.0.4", port, false)) >= 0);
	answer = s_read_until_closed(held[3], 2000, &closed_ms);
	CU_ASSERT(s_is_json_answer(answer, 429));
	CU_ASSERT_PTR_NOT_NULL(strstr(answer, "Retry-After: 1"));
	CU_ASSERT(closed_ms >= 0);
	/* Another address is not held back by them. */
	CU_ASSERT_EQUAL(s_post_good(port, 1), 202);
done:
	for (int i = 0; i < 4; i++)
		if (held[i] >= 0)
			close(held[i]);
	if (fd >= 0)
		close(fd);
	free(answer);
	kd_destroy(&kd);
}

TEST_MAIN("http_slow", TEST(test_slowloris_and_a_connection_flood_do_not_starve_a_good_client),
	  TEST(test_a_chunked_body_over_max_body_gets_413_and_the_close),
	  TEST(test_a_request_starting_with_nul_bytes_gets_400_at_once),
	  TEST(test_a_trickled_request_gets_408_and_one_connection_too_many_429))
