/*
 * tests/integration/test_delivery.c — kanal's delivery guarantee, proved against the real
 * kanald with its durable journal (docs/design/journal.md): every event the gateway
 * accepted reaches every destination at least once across SIGKILLs and restarts; a poison
 * event goes to the dead-letter store with its error history without holding up the
 * events behind it, and `kanalctl dlq replay` delivers it once the destination is fixed;
 * a (source, id) sent twice is routed once; and memory mode still carries events while
 * the dlq commands say the journal is off.
 *
 * Each test starts its own kanald on ephemeral ports in its own folder (tests/util/kanald.h)
 * and bounds every wait. The crash test prints the number of duplicate deliveries per
 * destination — at-least-once allows them, and the count shows how wide the window is.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include <kanal/time.h>

#include "kanald.h"
#include "test.h"

extern char **environ;

#define WAIT 20000 /* ms: the bound of every wait for kanald */

/* The status the gateway's reply gives the event `id` (or the first result when id is
 * NULL), copied into buf; "" when the reply is missing or does not say. */
static const char *s_status(const char *reply, const char *id, char *buf, size_t size)
{
	json_t *root = reply ? json_loads(reply, 0, NULL) : NULL;
	json_t *results = json_object_get(root, "results"), *r;
	size_t i;

	buf[0] = '\0';
	json_array_foreach(results, i, r)
	{
		const char *rid = json_string_value(json_object_get(r, "id"));
		const char *st = json_string_value(json_object_get(r, "status"));
		if (st && (!id || (rid && !strcmp(rid, id)))) {
			snprintf(buf, size, "%s", st);
			break;
		}
	}
	json_decref(root);
	return buf;
}

/* Sends one event and returns the gateway's status for it ("" on no reply). */
static const char *s_send_one(kd_t *kd, const char *source, const char *id, const char *type,
			      char *buf, size_t size)
{
	char *e = kd_event(source, id, type, "{\"n\":1}"), *reply = NULL;

	kd_send_event(kd, e, NULL, WAIT, &reply);
	s_status(reply, id, buf, size);
	free(reply);
	free(e);
	return buf;
}

/* Number of lines of the file holding `needle`. */
static size_t s_count_lines_with(const char *path, const char *needle)
{
	char *text = test_read_file(path, NULL), *line, *save = NULL;
	size_t n = 0;

	if (!text)
		return 0;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strstr(line, needle))
			n++;
	free(text);
	return n;
}

/* Number of lines of a sink's file that are the event (source, id). */
static size_t s_count_event(const char *path, const char *source, const char *id)
{
	char *text = test_read_file(path, NULL), *line, *save = NULL;
	size_t n = 0;

	if (!text)
		return 0;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *e = json_loads(line, 0, NULL);
		const char *s = json_string_value(json_object_get(e, "source"));
		const char *i = json_string_value(json_object_get(e, "id"));
		if (s && i && !strcmp(s, source) && !strcmp(i, id))
			n++;
		json_decref(e);
	}
	free(text);
	return n;
}

/* Waits until the file has at least n lines holding needle; returns the count reached. */
static size_t s_wait_lines_with(const char *path, const char *needle, size_t n, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	size_t have;

	while ((have = s_count_lines_with(path, needle)) < n && test_now_ms() < deadline)
		test_sleep_ms(50);
	return have;
}

/* True while kanald runs. When it has exited on its own (crashed), says so with the end of
 * its log — kanald masks CPR numbers in its log — and returns false, so that a test can
 * stop at once instead of running into every one of its timeouts. */
static bool s_alive(kd_t *kd)
{
	char *log, *tail;
	size_t len;

	if (kd->pid > 0 && kd_wait_exit(kd, 0) < 0)
		return true;
	log = kd_log(kd);
	len = log ? strlen(log) : 0;
	tail = log && len > 600 ? log + len - 600 : log;
	fprintf(stderr, "\nkanald exited unexpectedly (status %d); its log ends:\n%s\n",
		kd->exit_status, tail ? tail : "(no log)");
	free(log);
	CU_FAIL("kanald exited unexpectedly");
	return false;
}

/* Asks the admin socket and returns the reply parsed (NULL on no reply or not JSON). */
static json_t *s_admin_json(kd_t *kd, const char *request)
{
	char *reply = kd_admin(kd, request, WAIT);
	json_t *root = reply ? json_loads(reply, 0, NULL) : NULL;

	if (!root)
		fprintf(stderr, "admin %s: %s\n", request, reply ? "unreadable reply" : "no reply");
	free(reply);
	return root;
}

/* ---- Running the built kanalctl ---------------------------------------------------------- */

typedef struct ctl_run {
	int status; /* exit status, -1 when it did not end normally in time */
	char *out;
	char *err;
} ctl_run_t;

static void s_ctl_free(ctl_run_t *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof *r);
}

/* Runs `kanalctl -c <kd's config> ARGS...` (NULL-terminated), with no KANAL_* variables
 * inherited, and waits at most 20 s. Its output is captured, never printed (it may hold
 * personal data). */
static void s_ctl(ctl_run_t *r, kd_t *kd, ...)
{
	const char *args[32];
	char *out_path = strdup(kd_path(kd, ".ctl-out")),
	     *err_path = strdup(kd_path(kd, ".ctl-err"));
	char **env;
	posix_spawn_file_actions_t fa;
	int64_t deadline;
	va_list ap;
	pid_t pid;
	int n = 0, k = 0, st = 0;

	memset(r, 0, sizeof *r);
	r->status = -1;
	args[n++] = test_path("bin/kanalctl");
	args[n++] = "-c";
	args[n++] = kd->conf_path;
	va_start(ap, kd);
	while (n < 31 && (args[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	args[n] = NULL;
	for (int i = 0; environ[i]; i++)
		k++;
	env = calloc((size_t)k + 1, sizeof *env);
	k = 0;
	for (int i = 0; env && environ[i]; i++)
		if (strncmp(environ[i], "KANAL_", 6) != 0)
			env[k++] = environ[i];
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (env && posix_spawn(&pid, args[0], &fa, NULL, (char *const *)args, env) == 0) {
		deadline = test_now_ms() + 20000;
		while (waitpid(pid, &st, WNOHANG) == 0) {
			if (test_now_ms() > deadline) {
				kill(pid, SIGKILL);
				waitpid(pid, &st, 0);
				st = -1;
				break;
			}
			test_sleep_ms(5);
		}
		if (st != -1 && WIFEXITED(st))
			r->status = WEXITSTATUS(st);
	}
	posix_spawn_file_actions_destroy(&fa);
	r->out = test_read_file(out_path, NULL);
	r->err = test_read_file(err_path, NULL);
	if (!r->out)
		r->out = strdup("");
	if (!r->err)
		r->err = strdup("");
	free(env);
	free(out_path);
	free(err_path);
}

/* ---- crash test -------------------------------------------------------------------------- */

/*
 * The sender keeps CRASH_WINDOW batches in flight on one DEALER socket, so that the bus
 * accepts events faster than the destinations write them: when kanald is killed, accepted
 * events are waiting for delivery and requests are somewhere between arriving and being
 * answered. A batch is done when every event in it has been answered "accepted" or
 * "duplicate" (the bus owns both); anything else — busy, no reply within CRASH_REPLY_MS, a
 * kill — sends the whole batch again, and what was accepted before comes back a duplicate.
 */
#define CRASH_EVENTS 20000
#define CRASH_BATCH 50
#define CRASH_BATCHES (CRASH_EVENTS / CRASH_BATCH)
#define CRASH_KILLS 3
#define CRASH_WINDOW 16
#define CRASH_REPLY_MS 3000
#define CRASH_SEND_MS 40000 /* bound of the sending phase, restarts included */

typedef struct crash {
	kd_t *kd;
	void *sock;              /* DEALER connected to the current kanald's gateway */
	unsigned char *accepted; /* per event: answered accepted or duplicate */
	unsigned char *done;     /* per batch: every event accepted */
	int64_t *sent_at;        /* per batch: when its request went out; 0: not in flight */
	int n_done, in_flight, first_open, resends, invalid;
	int64_t quiet_until; /* after "busy": send nothing before this */
} crash_t;

/* The batch of events b as one JSON array: ids c-<n>, n = b*CRASH_BATCH … */
static char *s_crash_batch(int b)
{
	size_t cap = (size_t)CRASH_BATCH * 160 + 8, len = 0;
	char *text = malloc(cap);

	if (!text)
		return NULL;
	text[len++] = '[';
	for (int i = 0; i < CRASH_BATCH; i++) {
		int n = b * CRASH_BATCH + i;
		len += (size_t)snprintf(
			text + len, cap - len,
			"%s{\"specversion\":\"1.0\",\"id\":\"c-%05d\",\"source\":"
			"\"crash-test\",\"type\":\"crash.tick\",\"data\":{\"n\":%d}}",
			i ? "," : "", n, n);
	}
	snprintf(text + len, cap - len, "]");
	return text;
}

/* The number n of an id "c-<n>" followed by `end`, or -1. */
static int s_crash_index(const char *p, char end)
{
	char *stop;
	long n;

	if (strncmp(p, "c-", 2) != 0)
		return -1;
	n = strtol(p + 2, &stop, 10);
	return *stop == end && stop > p + 2 && n >= 0 && n < CRASH_EVENTS ? (int)n : -1;
}

/* (Re)connects to the gateway of the kanald now running; nothing is in flight after. */
static void s_crash_connect(crash_t *c)
{
	int zero = 0;

	if (c->sock)
		zmq_close(c->sock);
	c->sock = zmq_socket(c->kd->zctx, ZMQ_DEALER);
	zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
	zmq_connect(c->sock, c->kd->gateway);
	for (int b = 0; b < CRASH_BATCHES; b++)
		c->sent_at[b] = 0;
	c->in_flight = 0;
}

/* Reads one reply: marks its accepted events, takes its batch out of flight, and marks
 * the batch done when all of it is accepted. */
static void s_crash_reply(crash_t *c, const char *reply)
{
	json_t *root = json_loads(reply, 0, NULL), *r;
	int batch = -1, busy_ms = 0;
	size_t i;

	json_array_foreach(json_object_get(root, "results"), i, r)
	{
		const char *id = json_string_value(json_object_get(r, "id"));
		const char *st = json_string_value(json_object_get(r, "status"));
		int idx = id ? s_crash_index(id, '\0') : -1;

		if (idx < 0 || !st)
			continue;
		batch = idx / CRASH_BATCH;
		if (!strcmp(st, "accepted") || !strcmp(st, "duplicate"))
			c->accepted[idx] = 1;
		else if (!strcmp(st, "busy"))
			busy_ms = (int)json_integer_value(json_object_get(r, "retry_after_ms"));
		else if (!strcmp(st, "invalid"))
			c->invalid++;
	}
	json_decref(root);
	if (busy_ms > 0)
		c->quiet_until = test_now_ms() + (busy_ms < 500 ? busy_ms : 500);
	if (batch < 0)
		return;
	if (c->sent_at[batch]) {
		c->sent_at[batch] = 0;
		c->in_flight--;
	}
	if (!c->done[batch]) {
		bool all = true;
		for (int k = 0; k < CRASH_BATCH && all; k++)
			all = c->accepted[batch * CRASH_BATCH + k];
		if (all) {
			c->done[batch] = 1;
			c->n_done++;
		} else {
			c->resends++;
		}
	}
}

/* Receives every reply that arrives within wait_ms (0: those already there). */
static void s_crash_receive(crash_t *c, int wait_ms)
{
	zmq_pollitem_t item = { c->sock, 0, ZMQ_POLLIN, 0 };
	zmq_msg_t msg;

	while (zmq_poll(&item, 1, wait_ms) > 0) {
		zmq_msg_init(&msg);
		if (zmq_msg_recv(&msg, c->sock, ZMQ_DONTWAIT) >= 0) {
			char *text = strndup(zmq_msg_data(&msg), zmq_msg_size(&msg));
			if (text)
				s_crash_reply(c, text);
			free(text);
		}
		zmq_msg_close(&msg);
		wait_ms = 0;
	}
}

/* Puts batches in flight until the window is full: the lowest ones not done first;
 * those unanswered for too long are sent again. */
static void s_crash_send(crash_t *c)
{
	int64_t now = test_now_ms();

	while (c->first_open < CRASH_BATCHES && c->done[c->first_open])
		c->first_open++;
	for (int b = c->first_open; b < CRASH_BATCHES; b++) {
		if (c->sent_at[b] && now - c->sent_at[b] > CRASH_REPLY_MS) {
			c->sent_at[b] = 0;
			c->in_flight--;
			c->resends++;
		}
	}
	if (now < c->quiet_until)
		return;
	for (int b = c->first_open; b < CRASH_BATCHES && c->in_flight < CRASH_WINDOW; b++) {
		char *batch;

		if (c->done[b] || c->sent_at[b])
			continue;
		batch = s_crash_batch(b);
		if (batch && zmq_send(c->sock, batch, strlen(batch), ZMQ_DONTWAIT) >= 0) {
			c->sent_at[b] = now;
			c->in_flight++;
		}
		free(batch);
	}
}

/* Waits a random moment of at most 3 ms, kills kanald with SIGKILL while batches are in
 * flight, collects the replies that beat the kill, and starts kanald again on the same
 * folder. Returns the number of accepted events not yet written by both sinks at the
 * kill: the work the restart must resume. */
static size_t s_crash_kill(crash_t *c)
{
	size_t n_accepted = 0, a, b;

	usleep((useconds_t)(rand() % 3000));
	CU_ASSERT_EQUAL(kd_stop(c->kd, SIGKILL, 5000), 128 + SIGKILL);
	a = kd_lines(kd_path(c->kd, "a.jsonl"));
	b = kd_lines(kd_path(c->kd, "b.jsonl"));
	s_crash_receive(c, 0);
	for (int i = 0; i < CRASH_EVENTS; i++)
		n_accepted += c->accepted[i];
	CU_ASSERT_EQUAL_FATAL(kd_restart(c->kd), 0);
	s_crash_connect(c);
	a = a < b ? a : b;
	return n_accepted > a ? n_accepted - a : 0;
}

/* Counts, per event number, the lines of a sink's file naming it. Returns the number of
 * lines that name no crash event (there should be none). */
static size_t s_crash_count(const char *path, unsigned *counts)
{
	char *text = test_read_file(path, NULL), *line, *save = NULL;
	size_t strange = 0;

	memset(counts, 0, sizeof *counts * CRASH_EVENTS);
	if (!text)
		return 0;
	/* Only whole lines: kanald may be appending one (a late duplicate) as we read, and a
	 * read can see part of that write. */
	if ((line = strrchr(text, '\n')))
		line[1] = '\0';
	else
		text[0] = '\0';
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *p = strstr(line, "\"id\":\"");
		int idx = p ? s_crash_index(p + 6, '"') : -1;
		if (idx >= 0)
			counts[idx]++;
		else
			strange++;
	}
	free(text);
	return strange;
}

static void test_crash_loses_nothing_accepted(void)
{
	char *conf =
		kd_config("  - name: a\n    plugin: sink\n"
			  "    options: { path: '@DIR@/a.jsonl' }\n"
			  "  - name: b\n    plugin: sink\n"
			  "    options: { path: '@DIR@/b.jsonl' }\n",
			  "journal:\n  mode: durable\n  sync: process\n  dedupe_window: 10m\n");
	kd_t *kd = kd_start("crash", conf, "routes:\n  - name: both\n    to: [a, b]\n");
	crash_t c = { .kd = kd };
	unsigned *counts_a = calloc(CRASH_EVENTS, sizeof *counts_a);
	unsigned *counts_b = calloc(CRASH_EVENTS, sizeof *counts_b);
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	size_t backlog[CRASH_KILLS] = { 0 };
	size_t missing_a = 0, missing_b = 0, dup_a = 0, dup_b = 0, strange = 0;
	int kill_at[CRASH_KILLS], kills = 0, n_accepted = 0;
	int64_t deadline, started = test_now_ms();

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	c.accepted = calloc(CRASH_EVENTS, 1);
	c.done = calloc(CRASH_BATCHES, 1);
	c.sent_at = calloc(CRASH_BATCHES, sizeof *c.sent_at);
	CU_ASSERT_FATAL(c.accepted && c.done && c.sent_at && counts_a && counts_b);
	/* Three kill points, one in each third of the run, at a random number of batches. */
	srand(seed);
	for (int k = 0; k < CRASH_KILLS; k++)
		kill_at[k] = CRASH_BATCHES * k / CRASH_KILLS + 5 +
			     rand() % (CRASH_BATCHES / CRASH_KILLS - 10);

	s_crash_connect(&c);
	deadline = test_now_ms() + CRASH_SEND_MS;
	while (c.n_done < CRASH_BATCHES && test_now_ms() < deadline && c.invalid == 0 &&
	       s_alive(kd)) {
		if (kills < CRASH_KILLS && c.n_done >= kill_at[kills]) {
			backlog[kills] = s_crash_kill(&c);
			kills++;
		}
		s_crash_send(&c);
		s_crash_receive(&c, 20);
	}
	zmq_close(c.sock);
	for (int i = 0; i < CRASH_EVENTS; i++)
		n_accepted += c.accepted[i];
	CU_ASSERT_EQUAL(c.invalid, 0);
	CU_ASSERT_EQUAL(kills, CRASH_KILLS);
	CU_ASSERT_EQUAL(n_accepted, CRASH_EVENTS);

	/* After the last restart, both destinations get every accepted event. */
	deadline = test_now_ms() + WAIT;
	for (;;) {
		bool enough = kd_lines(kd_path(kd, "a.jsonl")) >= (size_t)n_accepted &&
			      kd_lines(kd_path(kd, "b.jsonl")) >= (size_t)n_accepted;
		if (enough || test_now_ms() >= deadline) {
			strange = s_crash_count(kd_path(kd, "a.jsonl"), counts_a) +
				  s_crash_count(kd_path(kd, "b.jsonl"), counts_b);
			missing_a = missing_b = dup_a = dup_b = 0;
			for (int i = 0; i < CRASH_EVENTS; i++) {
				missing_a += c.accepted[i] && counts_a[i] == 0;
				missing_b += c.accepted[i] && counts_b[i] == 0;
				dup_a += counts_a[i] > 1 ? counts_a[i] - 1 : 0;
				dup_b += counts_b[i] > 1 ? counts_b[i] - 1 : 0;
			}
			if ((missing_a == 0 && missing_b == 0) || test_now_ms() >= deadline)
				break;
		}
		test_sleep_ms(200);
	}
	CU_ASSERT_EQUAL(missing_a, 0);
	CU_ASSERT_EQUAL(missing_b, 0);
	CU_ASSERT_EQUAL(strange, 0);
	printf("\n    crash test: %d of %d events accepted; SIGKILLs after %d, %d, %d batches "
	       "(seed %u), with %zu, %zu, %zu accepted events not yet at both sinks; %d batches "
	       "sent again; missing a=%zu b=%zu; duplicates a=%zu b=%zu; %.1f s\n",
	       n_accepted, CRASH_EVENTS, kill_at[0], kill_at[1], kill_at[2], seed, backlog[0],
	       backlog[1], backlog[2], c.resends, missing_a, missing_b, dup_a, dup_b,
	       (double)(test_now_ms() - started) / 1000.0);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	free(c.accepted);
	free(c.done);
	free(c.sent_at);
	free(counts_a);
	free(counts_b);
	kd_destroy(&kd);
}

/* ---- poison event ------------------------------------------------------------------------- */

static const char *s_poison_sinks =
	"  - name: rejector\n    plugin: sink\n"
	"    options: { path: '@DIR@/rejector.jsonl', fail_type: x.poison }\n"
	"  - name: retrier\n    plugin: sink\n"
	"    options: { path: '@DIR@/retrier.jsonl', retry_type: x.poison, retry_after: 50ms }\n";

/* The same destinations, fixed: they take every event. */
static const char *s_fixed_sinks = "  - name: rejector\n    plugin: sink\n"
				   "    options: { path: '@DIR@/rejector.jsonl' }\n"
				   "  - name: retrier\n    plugin: sink\n"
				   "    options: { path: '@DIR@/retrier.jsonl' }\n";

static const char *s_poison_routes =
	"routes:\n"
	"  - name: poison-test\n"
	"    match: { type: 'x.>' }\n"
	"    to: [rejector, retrier]\n"
	"    retry: { max_attempts: 3, backoff: 50ms, max_backoff: 100ms }\n";

/* The dead letter in a dlq.list reply for `destination`, or NULL. Borrowed from list. */
static json_t *s_letter_for(json_t *list, const char *destination)
{
	json_t *item;
	size_t i;

	json_array_foreach(json_object_get(list, "items"), i, item)
	{
		const char *d = json_string_value(json_object_get(item, "destination"));
		if (d && !strcmp(d, destination))
			return item;
	}
	return NULL;
}

/* Waits until the dead-letter store holds a letter for each of the two destinations;
 * returns the last dlq.list reply. */
static json_t *s_wait_letters(kd_t *kd)
{
	int64_t deadline = test_now_ms() + WAIT;
	json_t *list = NULL;

	for (;;) {
		json_decref(list);
		list = s_admin_json(kd, "{\"cmd\":\"dlq.list\"}");
		if ((s_letter_for(list, "rejector") && s_letter_for(list, "retrier")) ||
		    test_now_ms() >= deadline)
			return list;
		test_sleep_ms(100);
	}
}

static void test_poison_is_kept_and_replayed(void)
{
	char *conf = kd_config(s_poison_sinks, NULL), *batch = NULL, *text, *p;
	kd_t *kd = kd_start("poison", conf, s_poison_routes);
	json_t *list, *show, *item, *errors, *v;
	json_int_t id_rejector = 0, id_retrier = 0;
	char topic[256], status[32], id_a[32], id_b[32];
	void *sub;
	int oks_before_dead = 0;
	bool dead_seen = false;
	int64_t deadline;
	size_t i, len = 0;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	sub = kd_subscribe(kd, "");
	/* The poison first, then twenty good events behind it in the same request. */
	batch = malloc(32768);
	CU_ASSERT_PTR_NOT_NULL_FATAL(batch);
	len += (size_t)sprintf(batch + len, "[{\"specversion\":\"1.0\",\"id\":\"p-1\","
					    "\"source\":\"poison-test\",\"type\":\"x.poison\"}");
	for (int k = 1; k <= 20; k++)
		len += (size_t)sprintf(batch + len,
				       ",{\"specversion\":\"1.0\",\"id\":\"ok-%d\","
				       "\"source\":\"poison-test\",\"type\":\"x.ok\"}",
				       k);
	sprintf(batch + len, "]");
	text = kd_send(kd, batch, WAIT);
	free(batch);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NULL(strstr(text, "\"invalid\""));
	CU_ASSERT_STRING_EQUAL(s_status(text, "p-1", status, sizeof status), "accepted");
	CU_ASSERT_STRING_EQUAL(s_status(text, "ok-20", status, sizeof status), "accepted");
	free(text);

	/* The good events are not held up behind the poison: the retrying destination has
	 * delivered every one of them before it gives the poison up. */
	deadline = test_now_ms() + WAIT;
	while (!dead_seen && test_now_ms() < deadline) {
		if (kd_next(sub, topic, sizeof topic, &p, (int)(deadline - test_now_ms())) < 0)
			break;
		if (p && !strncmp(topic, "delivered x.ok", 14) && strstr(p, "\"retrier\""))
			oks_before_dead++;
		if (p && !strncmp(topic, "dead x.poison", 13) && strstr(p, "\"retrier\""))
			dead_seen = true;
		free(p);
	}
	kd_unsubscribe(&sub);
	CU_ASSERT(dead_seen);
	CU_ASSERT_EQUAL(oks_before_dead, 20);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "retrier.jsonl"), 20, WAIT), 20);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "rejector.jsonl"), 20, WAIT), 20);
	CU_ASSERT_EQUAL(s_count_lines_with(kd_path(kd, "retrier.jsonl"), "\"p-1\""), 0);

	/* Both dead letters are in the store, each with its whole error history. */
	list = s_wait_letters(kd);
	CU_ASSERT_PTR_NOT_NULL_FATAL(list);
	CU_ASSERT(json_is_true(json_object_get(list, "ok")));
	item = s_letter_for(list, "rejector");
	CU_ASSERT_PTR_NOT_NULL_FATAL(item);
	id_rejector = json_integer_value(json_object_get(item, "id"));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "event_id")), "p-1");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "route")), "poison-test");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "type")), "x.poison");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "reason")), "rejected");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(item, "attempts")), 1);
	item = s_letter_for(list, "retrier");
	CU_ASSERT_PTR_NOT_NULL_FATAL(item);
	id_retrier = json_integer_value(json_object_get(item, "id"));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(item, "attempts")), 3);
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(item, "error")) ?: "",
				      "sink asks to retry"));
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 2);
	json_decref(list);

	CU_ASSERT_FATAL(asprintf(&text, "{\"cmd\":\"dlq.show\",\"id\":%" JSON_INTEGER_FORMAT "}",
				 id_retrier) > 0);
	show = s_admin_json(kd, text);
	free(text);
	item = json_object_get(show, "item");
	errors = json_object_get(item, "errors");
	CU_ASSERT_EQUAL(json_array_size(errors), 3);
	json_array_foreach(errors, i, v) CU_ASSERT_PTR_NOT_NULL(
		strstr(json_string_value(v) ?: "", "sink asks to retry events of type 'x.poison'"));
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(item, "event"), "id")) ?: "",
		"p-1");
	json_decref(show);

	/* The operator's view: kanalctl finds kanald through the config and lists both. */
	{
		ctl_run_t r;
		s_ctl(&r, kd, "dlq", "list", (const char *)NULL);
		CU_ASSERT_EQUAL(r.status, 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "x.poison"));
		CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "rejector"));
		CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "retrier"));
		s_ctl_free(&r);
		snprintf(id_b, sizeof id_b, "%" JSON_INTEGER_FORMAT, id_retrier);
		s_ctl(&r, kd, "dlq", "show", id_b, (const char *)NULL);
		CU_ASSERT_EQUAL(r.status, 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "  3. sink asks to retry"));
		s_ctl_free(&r);
	}

	/* Fix the destinations — a new config, a restart — and replay: the letters survive
	 * the restart in the journal, and each reaches its destination. */
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	conf = kd_config(s_fixed_sinks, NULL);
	kd_write_config(kd, conf);
	free(conf);
	CU_ASSERT_EQUAL_FATAL(kd_restart(kd), 0);
	{
		ctl_run_t r;
		snprintf(id_a, sizeof id_a, "%" JSON_INTEGER_FORMAT, id_rejector);
		snprintf(id_b, sizeof id_b, "%" JSON_INTEGER_FORMAT, id_retrier);
		s_ctl(&r, kd, "dlq", "replay", id_a, id_b, (const char *)NULL);
		CU_ASSERT_EQUAL(r.status, 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "replayed"));
		if (r.status != 0)
			fprintf(stderr, "kanalctl dlq replay: exit %d\n", r.status);
		s_ctl_free(&r);
	}
	CU_ASSERT_EQUAL(s_wait_lines_with(kd_path(kd, "rejector.jsonl"), "\"p-1\"", 1, WAIT), 1);
	CU_ASSERT_EQUAL(s_wait_lines_with(kd_path(kd, "retrier.jsonl"), "\"p-1\"", 1, WAIT), 1);
	/* The store is empty again, and a second replay finds nothing. */
	list = s_admin_json(kd, "{\"cmd\":\"dlq.list\"}");
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 0);
	json_decref(list);
	{
		ctl_run_t r;
		s_ctl(&r, kd, "dlq", "replay", id_a, (const char *)NULL);
		CU_ASSERT_EQUAL(r.status, 1);
		CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "missing"));
		s_ctl_free(&r);
	}
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	/* Delivered once each: a replay is one new delivery, not one per destination. */
	CU_ASSERT_EQUAL(s_count_lines_with(kd_path(kd, "rejector.jsonl"), "\"p-1\""), 1);
	CU_ASSERT_EQUAL(s_count_lines_with(kd_path(kd, "retrier.jsonl"), "\"p-1\""), 1);
	kd_destroy(&kd);
}

/* ---- dlq drop ------------------------------------------------------------------------------ */

static void test_dlq_drop_removes_a_letter(void)
{
	char *conf = kd_config(s_poison_sinks, NULL);
	kd_t *kd = kd_start("drop", conf,
			    "routes:\n  - name: strict\n    match: { type: x.poison }\n"
			    "    to: rejector\n");
	char status[32], id[32];
	json_t *list = NULL;
	int64_t deadline = test_now_ms() + WAIT;
	ctl_run_t r;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT_STRING_EQUAL(
		s_send_one(kd, "drop-test", "p-2", "x.poison", status, sizeof status), "accepted");
	while (test_now_ms() < deadline) {
		json_decref(list);
		list = s_admin_json(kd, "{\"cmd\":\"dlq.list\",\"type\":\"x.poison\"}");
		if (json_array_size(json_object_get(list, "items")) > 0)
			break;
		test_sleep_ms(100);
	}
	CU_ASSERT_EQUAL_FATAL(json_array_size(json_object_get(list, "items")), 1);
	snprintf(id, sizeof id, "%" JSON_INTEGER_FORMAT,
		 json_integer_value(
			 json_object_get(json_array_get(json_object_get(list, "items"), 0), "id")));
	json_decref(list);
	s_ctl(&r, kd, "dlq", "drop", id, (const char *)NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_STRING_EQUAL(r.out, "dropped 1 dead letter\n");
	s_ctl_free(&r);
	s_ctl(&r, kd, "dlq", "list", (const char *)NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_STRING_EQUAL(r.out, "no dead letters\n");
	s_ctl_free(&r);
	/* Dropped is gone: neither show nor replay finds it. */
	s_ctl(&r, kd, "dlq", "show", id, (const char *)NULL);
	CU_ASSERT_EQUAL(r.status, 1);
	s_ctl_free(&r);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

/* ---- transforms ---------------------------------------------------------------------------- */

static json_t *s_wait_list(kd_t *kd, const char *filter, size_t n);

/* A route's jq transform reshapes what its destination receives (data and type), and a
 * transform that fails sends the event, unchanged, to the dead letters with jq's message. */
static void test_transform_reshapes_and_failure_is_dead(void)
{
	char *conf = kd_config(s_fixed_sinks, NULL);
	kd_t *kd = kd_start(
		"transform", conf,
		"routes:\n"
		"  - name: shaped\n    match: { type: x.shaped }\n"
		"    transform: '{data: {count: (.n + 41)}, attributes: {type: \"x.reshaped\"}}'\n"
		"    to: rejector\n"
		"  - name: broken\n    match: { type: x.broken }\n"
		"    transform: 'error(\"no child in the payload\")'\n"
		"    to: retrier\n");
	char status[32];
	json_t *list, *item;
	char *text;
	int64_t deadline = test_now_ms() + WAIT;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT_STRING_EQUAL(s_send_one(kd, "tf-test", "t-1", "x.shaped", status, sizeof status),
			       "accepted");
	CU_ASSERT_STRING_EQUAL(s_send_one(kd, "tf-test", "t-2", "x.broken", status, sizeof status),
			       "accepted");
	while (test_now_ms() < deadline &&
	       s_count_lines_with(kd_path(kd, "rejector.jsonl"), "\"count\":42") < 1)
		test_sleep_ms(50);
	CU_ASSERT_EQUAL(s_count_lines_with(kd_path(kd, "rejector.jsonl"), "\"count\":42"), 1);
	CU_ASSERT_EQUAL(s_count_lines_with(kd_path(kd, "rejector.jsonl"), "x.reshaped"), 1);
	list = s_wait_list(kd, "\"route\":\"broken\"", 1);
	item = json_array_get(json_object_get(list, "items"), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(item);
	text = json_dumps(item, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(text ? text : "", "no child in the payload"));
	free(text);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "type")) ?: "", "x.broken");
	CU_ASSERT_EQUAL(s_count_lines_with(kd_path(kd, "retrier.jsonl"), "t-2"), 0);
	json_decref(list);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

/* ---- dlq filters, masking, replay of a letter that fails again ------------------------------ */

/* Waits until dlq.list (with `filter`, a JSON fragment such as `"route":"r"`, may be "")
 * holds n letters; returns the last reply. */
static json_t *s_wait_list(kd_t *kd, const char *filter, size_t n)
{
	int64_t deadline = test_now_ms() + WAIT;
	char *request;
	json_t *list = NULL;

	if (asprintf(&request, "{\"cmd\":\"dlq.list\"%s%s}", *filter ? "," : "", filter) < 0)
		return NULL;
	for (;;) {
		json_decref(list);
		list = s_admin_json(kd, request);
		if (json_array_size(json_object_get(list, "items")) >= n ||
		    test_now_ms() >= deadline)
			break;
		test_sleep_ms(100);
	}
	free(request);
	return list;
}

static void test_dlq_filters_masking_and_replay_again(void)
{
	char *conf = kd_config("  - name: refuser\n    plugin: sink\n"
			       "    options: { path: '@DIR@/refuser.jsonl', fail_type: x.bad }\n"
			       "  - name: other\n    plugin: sink\n"
			       "    options: { path: '@DIR@/other.jsonl', fail_type: y.bad }\n",
			       NULL);
	kd_t *kd = kd_start("dlqfilter", conf,
			    "routes:\n"
			    "  - name: rx\n    match: { type: x.bad }\n    to: refuser\n"
			    "  - name: ry\n    match: { type: y.bad }\n    to: other\n");
	char *reply, *request;
	json_t *list, *item, *show;
	json_int_t first_id, id;
	const char *dead_at;
	char dead_at_copy[64];
	char status[32];

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	/* A dead letter whose data holds a CPR number (data may; attributes may not). */
	reply = kd_send(kd,
			"{\"specversion\":\"1.0\",\"id\":\"f-1\",\"source\":\"filter-test\","
			"\"type\":\"x.bad\",\"data\":{\"cpr\":\"1503851233\"}}",
			WAIT);
	CU_ASSERT_STRING_EQUAL(s_status(reply, "f-1", status, sizeof status), "accepted");
	free(reply);
	list = s_wait_list(kd, "", 1);
	first_id = json_integer_value(
		json_object_get(json_array_get(json_object_get(list, "items"), 0), "id"));
	json_decref(list);
	CU_ASSERT_STRING_EQUAL(s_send_one(kd, "filter-test", "f-2", "y.bad", status, sizeof status),
			       "accepted");
	CU_ASSERT_STRING_EQUAL(s_send_one(kd, "filter-test", "f-3", "x.bad", status, sizeof status),
			       "accepted");
	list = s_wait_list(kd, "", 3);
	CU_ASSERT_EQUAL_FATAL(json_array_size(json_object_get(list, "items")), 3);
	/* Newest first; dead_at is RFC 3339. */
	item = json_array_get(json_object_get(list, "items"), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "event_id")) ?: "", "f-3");
	dead_at = json_string_value(json_object_get(item, "dead_at"));
	CU_ASSERT(dead_at && strlen(dead_at) >= 20 && dead_at[4] == '-' && dead_at[10] == 'T');
	snprintf(dead_at_copy, sizeof dead_at_copy, "%s", dead_at ? dead_at : "");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "source")) ?: "",
			       "filter-test");
	json_decref(list);

	/* Filters: route, type, limit, since. */
	list = s_wait_list(kd, "\"route\":\"ry\"", 1);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 1);
	json_decref(list);
	list = s_wait_list(kd, "\"type\":\"x.bad\"", 2);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 2);
	json_decref(list);
	list = s_wait_list(kd, "\"limit\":1", 1);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 1);
	json_decref(list);
	list = s_admin_json(kd, "{\"cmd\":\"dlq.list\",\"since\":\"2999-01-01T00:00:00Z\"}");
	CU_ASSERT(json_is_true(json_object_get(list, "ok")));
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 0);
	json_decref(list);
	list = s_admin_json(kd, "{\"cmd\":\"dlq.list\",\"since\":\"2000-01-01T00:00:00Z\"}");
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 3);
	json_decref(list);
	{
		/* The offset counts: an hour after the newest letter, written at -05:30, finds
		 * none (read as UTC it would be 4.5 hours before, and find all three). */
		int64_t newest_ms = 0;
		char text[KANAL_TIME_RFC3339_SIZE + 8];
		CU_ASSERT_EQUAL_FATAL(kanal_time_parse_rfc3339(dead_at_copy, &newest_ms), 0);
		CU_ASSERT_EQUAL_FATAL(
			kanal_time_rfc3339(newest_ms + 3600000 - 19800000, text, sizeof text), 0);
		strcpy(text + strlen(text) - 1, "-05:30");
		CU_ASSERT_FATAL(
			asprintf(&request, "{\"cmd\":\"dlq.list\",\"since\":\"%s\"}", text) > 0);
		list = s_admin_json(kd, request);
		free(request);
		CU_ASSERT(json_is_true(json_object_get(list, "ok")));
		CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 0);
		json_decref(list);
		/* Trailing junk is not a time. */
		list = s_admin_json(kd, "{\"cmd\":\"dlq.list\",\"since\":"
					"\"2000-01-01T00:00:00Zjunk\"}");
		CU_ASSERT(json_is_false(json_object_get(list, "ok")));
		CU_ASSERT_PTR_NOT_NULL(strstr(
			json_string_value(json_object_get(list, "error")) ?: "", "RFC 3339"));
		json_decref(list);
	}

	/* show masks the event's CPR number unless asked for the clear text. */
	CU_ASSERT_FATAL(asprintf(&request,
				 "{\"cmd\":\"dlq.show\",\"id\":%" JSON_INTEGER_FORMAT
				 ",\"clear\":false}",
				 first_id) > 0);
	reply = kd_admin(kd, request, WAIT);
	free(request);
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "\"ok\":true"));
	CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "150385"));
	CU_ASSERT(!kd_has_clear_cpr(reply));
	free(reply);
	CU_ASSERT_FATAL(asprintf(&request,
				 "{\"cmd\":\"dlq.show\",\"id\":%" JSON_INTEGER_FORMAT
				 ",\"clear\":true}",
				 first_id) > 0);
	reply = kd_admin(kd, request, WAIT);
	free(request);
	CU_ASSERT(kd_has_clear_cpr(reply));
	free(reply);
	/* No such letter: a clear no. */
	show = s_admin_json(kd, "{\"cmd\":\"dlq.show\",\"id\":999999}");
	CU_ASSERT(json_is_false(json_object_get(show, "ok")));
	CU_ASSERT_PTR_NOT_NULL(json_string_value(json_object_get(show, "error")));
	json_decref(show);

	/* Replayed while the destination still refuses: a new dead letter, with a new id. */
	show = s_admin_json(kd, "{\"cmd\":\"dlq.replay\",\"match\":{\"route\":\"ry\"}}");
	CU_ASSERT(json_is_true(json_object_get(show, "ok")));
	CU_ASSERT_EQUAL(json_array_size(json_object_get(show, "replayed")), 1);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(show, "missing")), 0);
	id = json_integer_value(json_array_get(json_object_get(show, "replayed"), 0));
	json_decref(show);
	list = s_wait_list(kd, "\"route\":\"ry\"", 1);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 1);
	item = json_array_get(json_object_get(list, "items"), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(item, "event_id")) ?: "", "f-2");
	CU_ASSERT_NOT_EQUAL(json_integer_value(json_object_get(item, "id")), id);
	json_decref(list);

	/* A hundred more: a list without a limit stops at kanald's default of 100. */
	{
		char *batch = malloc(100 * 128 + 8);
		size_t len = 0;

		CU_ASSERT_PTR_NOT_NULL_FATAL(batch);
		for (int k = 0; k < 100; k++)
			len += (size_t)sprintf(batch + len,
					       "%c{\"specversion\":\"1.0\",\"id\":\"g-%d\","
					       "\"source\":\"filter-test\",\"type\":\"x.bad\"}",
					       k ? ',' : '[', k);
		sprintf(batch + len, "]");
		reply = kd_send(kd, batch, WAIT);
		free(batch);
		CU_ASSERT_STRING_EQUAL(s_status(reply, "g-99", status, sizeof status), "accepted");
		free(reply);
	}
	list = s_wait_list(kd, "\"limit\":1000", 103);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 103);
	json_decref(list);
	list = s_admin_json(kd, "{\"cmd\":\"dlq.list\"}");
	CU_ASSERT_EQUAL(json_array_size(json_object_get(list, "items")), 100);
	json_decref(list);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

/* ---- duplicates -------------------------------------------------------------------------- */

static void test_duplicate_is_routed_once(void)
{
	char *conf = kd_config("  - name: out\n    plugin: sink\n"
			       "    options: { path: '@DIR@/out.jsonl' }\n",
			       "journal:\n  dedupe_window: 10m\n");
	kd_t *kd = kd_start("dup", conf, "routes:\n  - name: all\n    to: out\n");
	const char *out;
	char status[32];

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	out = strdup(kd_path(kd, "out.jsonl"));
	CU_ASSERT_STRING_EQUAL(s_send_one(kd, "vendor", "d-1", "x.y", status, sizeof status),
			       "accepted");
	CU_ASSERT_STRING_EQUAL(s_send_one(kd, "vendor", "d-1", "x.y", status, sizeof status),
			       "duplicate");
	/* The same id from another source is another event. */
	CU_ASSERT_STRING_EQUAL(s_send_one(kd, "other-vendor", "d-1", "x.y", status, sizeof status),
			       "accepted");
	/* A duplicate inside a batch is answered as such; the rest of the batch goes on. */
	{
		char *reply =
			kd_send(kd,
				"[{\"specversion\":\"1.0\",\"id\":\"d-1\",\"source\":\"vendor\","
				"\"type\":\"x.y\"},{\"specversion\":\"1.0\",\"id\":\"d-2\","
				"\"source\":\"vendor\",\"type\":\"x.y\"}]",
				WAIT);
		CU_ASSERT_STRING_EQUAL(s_status(reply, "d-1", status, sizeof status), "duplicate");
		CU_ASSERT_STRING_EQUAL(s_status(reply, "d-2", status, sizeof status), "accepted");
		free(reply);
	}
	/* A marker sent after everything above: once it has arrived, a duplicate that had
	 * been routed would have arrived too. */
	CU_ASSERT_STRING_EQUAL(s_send_one(kd, "vendor", "mark-1", "x.y", status, sizeof status),
			       "accepted");
	CU_ASSERT_EQUAL(s_wait_lines_with(out, "\"mark-1\"", 1, WAIT), 1);
	CU_ASSERT_EQUAL(s_count_event(out, "vendor", "d-1"), 1);
	CU_ASSERT_EQUAL(s_count_event(out, "other-vendor", "d-1"), 1);
	CU_ASSERT_EQUAL(s_count_event(out, "vendor", "d-2"), 1);

	/* The window survives a crash: the journal, not memory, remembers what was accepted.
	 * The router commits once per turn of its loop, so half a second after the last
	 * delivery every outcome is on disk and nothing may be delivered again. */
	test_sleep_ms(500);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGKILL, WAIT), 128 + SIGKILL);
	CU_ASSERT_EQUAL_FATAL(kd_restart(kd), 0);
	CU_ASSERT_STRING_EQUAL(s_send_one(kd, "vendor", "d-1", "x.y", status, sizeof status),
			       "duplicate");
	CU_ASSERT_STRING_EQUAL(s_send_one(kd, "vendor", "mark-2", "x.y", status, sizeof status),
			       "accepted");
	CU_ASSERT_EQUAL(s_wait_lines_with(out, "\"mark-2\"", 1, WAIT), 1);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	CU_ASSERT_EQUAL(s_count_event(out, "vendor", "d-1"), 1);
	CU_ASSERT_EQUAL(s_count_event(out, "vendor", "d-2"), 1);
	free((char *)out);
	kd_destroy(&kd);
}

/* Unmatched events go to the dead letters, each kept and counted, but a sender who sends
 * thousands does not write thousands of log lines: at most one a second, with the count of
 * those held back (issue 12). */
static void test_unmatched_flood_is_logged_sparingly(void)
{
	enum { BATCHES = 20, PER = 100 };
	char *conf = kd_config("  - name: out\n    plugin: sink\n"
			       "    options: { path: '@DIR@/out.jsonl' }\n",
			       NULL);
	kd_t *kd = kd_start("unmatched", conf,
			    "routes:\n  - name: only-x\n    match: { type: x.y }\n    to: out\n");
	char *log = NULL, *reply = NULL, *p;
	json_t *status = NULL;
	size_t lines = 0;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	for (int b = 0; b < BATCHES; b++) {
		char *batch = strdup("["), *ev;
		for (int i = 0; i < PER && batch; i++) {
			char id[32], *grown = NULL;
			snprintf(id, sizeof id, "u-%d-%d", b, i);
			ev = kd_event("flooder", id, "nobody.wants.this", NULL);
			if (ev && asprintf(&grown, "%s%s%s", batch, i ? "," : "", ev) < 0)
				grown = NULL;
			free(ev);
			free(batch);
			batch = grown;
		}
		CU_ASSERT_PTR_NOT_NULL_FATAL(batch);
		p = batch;
		CU_ASSERT_FATAL(asprintf(&batch, "%s]", p) > 0);
		free(p);
		CU_ASSERT(kd_send_event(kd, batch, "accepted", WAIT, NULL));
		free(batch);
	}
	/* Every one is a dead letter (the admin API counts them)... */
	for (int waited = 0; waited < WAIT; waited += 100) {
		json_decref(status);
		status = s_admin_json(kd, "{\"cmd\":\"status\"}");
		if (json_integer_value(json_object_get(json_object_get(status, "counters"),
						       "unmatched")) >= BATCHES * PER)
			break;
		test_sleep_ms(100);
	}
	CU_ASSERT_EQUAL(json_integer_value(
				json_object_get(json_object_get(status, "counters"), "unmatched")),
			BATCHES * PER);
	/* One more a second later: its line says how many were held back meanwhile. */
	test_sleep_ms(1100);
	reply = kd_event("flooder", "u-last", "nobody.wants.this", NULL);
	CU_ASSERT(kd_send_event(kd, reply, "accepted", WAIT, NULL));
	for (int waited = 0; waited < WAIT; waited += 100) {
		json_decref(status);
		status = s_admin_json(kd, "{\"cmd\":\"status\"}");
		if (json_integer_value(json_object_get(json_object_get(status, "counters"),
						       "unmatched")) > BATCHES * PER)
			break;
		test_sleep_ms(100);
	}
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	/* ... but the log has a line a second at most, the last ones saying how many were
	 * held back. */
	log = kd_log(kd);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log);
	for (p = log; (p = strstr(p, "matched no route")); p++)
		lines++;
	CU_ASSERT(lines >= 1);
	CU_ASSERT(lines <= 10);
	CU_ASSERT_PTR_NOT_NULL(strstr(log, "more like this held back"));
	if (lines > 10)
		fprintf(stderr, "    %zu log lines for %d unmatched events\n", lines,
			BATCHES * PER);
	free(log);
	free(reply);
	json_decref(status);
	kd_destroy(&kd);
}

/* ---- restart resumes ----------------------------------------------------------------------- */

static void test_restart_resumes_pending_deliveries(void)
{
	char *conf = kd_config("  - name: slow\n    plugin: sink\n"
			       "    options: { path: '@DIR@/slow.jsonl', delay: 200ms }\n",
			       NULL);
	kd_t *kd = kd_start("resume", conf, "routes:\n  - name: all\n    to: slow\n");
	char status[32], id[32];
	size_t before, missing = 0;
	int accepted = 0;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof id, "r-%02d", i);
		if (!strcmp(s_send_one(kd, "resume-test", id, "x.y", status, sizeof status),
			    "accepted"))
			accepted++;
	}
	CU_ASSERT_EQUAL(accepted, 20);
	/* Killed while most of them are still waiting for the slow destination. */
	CU_ASSERT_EQUAL(kd_stop(kd, SIGKILL, WAIT), 128 + SIGKILL);
	before = kd_lines(kd_path(kd, "slow.jsonl"));
	CU_ASSERT(before < 20);
	CU_ASSERT_EQUAL_FATAL(kd_restart(kd), 0);
	kd_wait_lines(kd_path(kd, "slow.jsonl"), 20, WAIT);
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof id, "\"r-%02d\"", i);
		if (s_wait_lines_with(kd_path(kd, "slow.jsonl"), id, 1, 1000) < 1)
			missing++;
	}
	CU_ASSERT_EQUAL(missing, 0);
	printf("\n    restart: %zu of 20 delivered before the SIGKILL, %zu lines after\n", before,
	       kd_lines(kd_path(kd, "slow.jsonl")));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
}

/* ---- memory mode ----------------------------------------------------------------------------- */

static void test_memory_mode_flows_and_dlq_says_off(void)
{
	static const char *const requests[] = {
		"{\"cmd\":\"dlq.list\"}",
		"{\"cmd\":\"dlq.show\",\"id\":1}",
		"{\"cmd\":\"dlq.replay\",\"ids\":[1]}",
		"{\"cmd\":\"dlq.drop\",\"ids\":[1]}",
	};
	char *conf = kd_config("  - name: a\n    plugin: sink\n"
			       "    options: { path: '@DIR@/a.jsonl' }\n"
			       "  - name: b\n    plugin: sink\n"
			       "    options: { path: '@DIR@/b.jsonl' }\n",
			       "journal:\n  mode: memory\n");
	kd_t *kd = kd_start("memory", conf, "routes:\n  - name: all\n    to: [a, b]\n");
	char status[32], *expected = NULL, *batch, *reply;
	size_t len = 0;
	bool alive = true;
	ctl_run_t r;

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT_STRING_EQUAL(s_send_one(kd, "mem", "m-1", "x.y", status, sizeof status),
			       "accepted");
	/* Duplicate suppression holds without the journal too (a window in memory). */
	CU_ASSERT_STRING_EQUAL(s_send_one(kd, "mem", "m-1", "x.y", status, sizeof status),
			       "duplicate");
	CU_ASSERT_STRING_EQUAL(s_send_one(kd, "mem2", "m-1", "x.y", status, sizeof status),
			       "accepted");
	/* A few batches: memory mode carries load too, fanned out to both destinations. */
	batch = malloc(100 * 128 + 8);
	CU_ASSERT_PTR_NOT_NULL_FATAL(batch);
	for (int round = 0; round < 4; round++) {
		len = 0;
		for (int k = 0; k < 100; k++)
			len += (size_t)sprintf(batch + len,
					       "%c{\"specversion\":\"1.0\",\"id\":\"m-%d-%d\","
					       "\"source\":\"mem\",\"type\":\"x.y\"}",
					       k ? ',' : '[', round, k);
		sprintf(batch + len, "]");
		reply = kd_send(kd, batch, WAIT);
		CU_ASSERT_PTR_NOT_NULL(reply);
		CU_ASSERT_PTR_NULL(reply ? strstr(reply, "\"invalid\"") : NULL);
		free(reply);
		if (!(alive = s_alive(kd)))
			break;
	}
	free(batch);
	if (!alive) {
		kd_destroy(&kd);
		return;
	}
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "a.jsonl"), 402, WAIT), 402);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "b.jsonl"), 402, WAIT), 402);
	CU_ASSERT_FATAL(asprintf(&expected,
				 "the journal is off (memory mode): dead letters are in %s",
				 kd_path(kd, "state/deadletter.jsonl")) > 0);
	for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
		json_t *answer = s_admin_json(kd, requests[i]);
		CU_ASSERT(json_is_false(json_object_get(answer, "ok")));
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(answer, "error")) ?: "",
				       expected);
		json_decref(answer);
	}
	s_ctl(&r, kd, "dlq", "list", (const char *)NULL);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "the journal is off (memory mode)"));
	s_ctl_free(&r);
	free(expected);
	/* It stops cleanly: nothing crashed under the load. */
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "a.jsonl")), 402);
	kd_destroy(&kd);
}

TEST_MAIN("delivery", TEST(test_duplicate_is_routed_once),
	  TEST(test_unmatched_flood_is_logged_sparingly),
	  TEST(test_transform_reshapes_and_failure_is_dead),
	  TEST(test_memory_mode_flows_and_dlq_says_off),
	  TEST(test_restart_resumes_pending_deliveries), TEST(test_dlq_drop_removes_a_letter),
	  TEST(test_dlq_filters_masking_and_replay_again), TEST(test_poison_is_kept_and_replayed),
	  TEST(test_crash_loses_nothing_accepted))
