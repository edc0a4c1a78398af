/*
 * tests/unit/test_loop.c — the instance loop (sdk/loop.c): timers fire in due order, a
 * repeating timer keeps its grid and skips missed periods, callbacks may cancel and add
 * timers and watches (their own included) while the loop dispatches, fd callbacks get the
 * ready events, and run_once returns promptly when the host's ZeroMQ socket is readable.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "test.h"
#include "host.h"

/* What timer callbacks did, in order. */
typedef struct record {
	kanal_loop_t *loop;
	int order[64];
	size_t n;
	int64_t self_id; /* a timer the callback may cancel */
	int64_t other_id;
	int cancel_at; /* cancel self_id on this call number (0: never) */
	int cancel_rc;
	int fd_events[8];
	int fd_fds[8];
	size_t n_fd;
} record_t;

typedef struct tag {
	record_t *rec;
	int value;
} tag_t;

static void s_note(kanal_ctx_t *ctx, void *arg)
{
	tag_t *t = arg;

	(void)ctx;
	if (t->rec->n < 64)
		t->rec->order[t->rec->n++] = t->value;
}

/* Runs the loop until `n` callbacks were noted or `ms` passed. */
static void s_run_until(kanal_loop_t *loop, record_t *rec, size_t n, int64_t ms)
{
	int64_t end = kanal_now_ms() + ms;

	while (rec->n < n && kanal_now_ms() < end)
		CU_ASSERT(kanal__loop_run_once(loop, NULL, end - kanal_now_ms()) >= 0);
}

static void test_timers_fire_in_due_order(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop };
	tag_t a = { &rec, 30 }, b = { &rec, 10 }, c = { &rec, 20 }, d = { &rec, 11 };

	CU_ASSERT(kanal__loop_timer_add(loop, NULL, 30, 0, s_note, &a) > 0);
	CU_ASSERT(kanal__loop_timer_add(loop, NULL, 10, 0, s_note, &b) > 0);
	CU_ASSERT(kanal__loop_timer_add(loop, NULL, 20, 0, s_note, &c) > 0);
	/* Same due time as b: runs after it, in the order added. */
	CU_ASSERT(kanal__loop_timer_add(loop, NULL, 10, 0, s_note, &d) > 0);
	CU_ASSERT_EQUAL(kanal__loop_size(loop), 4);
	s_run_until(loop, &rec, 4, 2000);
	CU_ASSERT_EQUAL_FATAL(rec.n, 4);
	CU_ASSERT_EQUAL(rec.order[0], 10);
	CU_ASSERT_EQUAL(rec.order[1], 11);
	CU_ASSERT_EQUAL(rec.order[2], 20);
	CU_ASSERT_EQUAL(rec.order[3], 30);
	/* One-shots are gone once they ran. */
	CU_ASSERT_EQUAL(kanal__loop_size(loop), 0);
	kanal__loop_destroy(&loop);
	CU_ASSERT_PTR_NULL(loop);
}

static void test_many_timers_stay_ordered(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop };
	int64_t lo[40], hi[40];
	tag_t tags[40];

	/* Enough to grow the heap several times; due times interleaved. The clock moves while
	 * timers are added (more so under a sanitizer on a loaded machine), so each timer's due
	 * time is known to lie in [clock before add, clock after add] + delay; consecutive
	 * firings must be consistent with those windows. Tags record their index. */
	for (int i = 0; i < 40; i++) {
		int delay = (i * 17) % 40;
		tags[i] = (tag_t){ &rec, i };
		lo[i] = kanal_now_ms() + delay;
		CU_ASSERT(kanal__loop_timer_add(loop, NULL, delay, 0, s_note, &tags[i]) > 0);
		hi[i] = kanal_now_ms() + delay;
	}
	s_run_until(loop, &rec, 40, 2000);
	CU_ASSERT_EQUAL_FATAL(rec.n, 40);
	for (size_t i = 1; i < 40; i++)
		CU_ASSERT(lo[rec.order[i - 1]] <= hi[rec.order[i]]);
	kanal__loop_destroy(&loop);
}

static void test_run_once_waits_for_next_timer(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop };
	tag_t a = { &rec, 1 };
	int64_t start;

	CU_ASSERT(kanal__loop_timer_add(loop, NULL, 40, 0, s_note, &a) > 0);
	start = kanal_now_ms();
	/* -1 would wait forever; the timer caps the wait. */
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, -1), 0);
	CU_ASSERT_EQUAL(rec.n, 1);
	CU_ASSERT(kanal_now_ms() - start >= 40);
	CU_ASSERT(kanal_now_ms() - start < 1000);
	/* Nothing to wait for at all: returns at once instead of blocking forever. */
	start = kanal_now_ms();
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, -1), 0);
	CU_ASSERT(kanal_now_ms() - start < 100);
	kanal__loop_destroy(&loop);
}

static void test_repeating_timer_keeps_its_grid(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop };
	tag_t a = { &rec, 1 };
	int64_t end;

	CU_ASSERT(kanal__loop_timer_add(loop, NULL, 20, 20, s_note, &a) > 0);
	end = kanal_now_ms() + 210;
	while (kanal_now_ms() < end)
		kanal__loop_run_once(loop, NULL, end - kanal_now_ms());
	/* 20, 40, …, 200: ten calls; allow one either way for a busy machine. */
	CU_ASSERT(rec.n >= 9 && rec.n <= 11);
	CU_ASSERT_EQUAL(kanal__loop_size(loop), 1);
	kanal__loop_destroy(&loop);
}

static void test_repeating_timer_skips_missed_periods(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop };
	tag_t a = { &rec, 1 };
	int64_t start;

	CU_ASSERT(kanal__loop_timer_add(loop, NULL, 10, 10, s_note, &a) > 0);
	test_sleep_ms(65); /* six periods pass with nobody running the loop */
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, 0), 0);
	CU_ASSERT_EQUAL(rec.n, 1); /* one call, not a burst of six */
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, 0), 0);
	CU_ASSERT_EQUAL(rec.n, 1); /* the next one is in the future */
	start = kanal_now_ms();
	s_run_until(loop, &rec, 2, 1000);
	CU_ASSERT_EQUAL(rec.n, 2);
	CU_ASSERT(kanal_now_ms() - start <= 15); /* on the old grid: at most one period away */
	kanal__loop_destroy(&loop);
}

static void s_cancel_self(kanal_ctx_t *ctx, void *arg)
{
	record_t *rec = arg;

	(void)ctx;
	rec->order[rec->n++] = 1;
	if ((int)rec->n == rec->cancel_at)
		rec->cancel_rc = kanal__loop_timer_cancel(rec->loop, rec->self_id);
}

static void test_timer_cancels_itself(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop, .cancel_at = 3, .cancel_rc = 99 };

	rec.self_id = kanal__loop_timer_add(loop, NULL, 0, 5, s_cancel_self, &rec);
	CU_ASSERT(rec.self_id > 0);
	s_run_until(loop, &rec, 10, 150);
	CU_ASSERT_EQUAL(rec.n, 3);
	CU_ASSERT_EQUAL(rec.cancel_rc, 0);
	CU_ASSERT_EQUAL(kanal__loop_size(loop), 0);
	CU_ASSERT_EQUAL(kanal__loop_timer_cancel(loop, rec.self_id), KANAL_ENOTFOUND);
	kanal__loop_destroy(&loop);
}

static void s_cancel_other(kanal_ctx_t *ctx, void *arg)
{
	tag_t *t = arg;

	s_note(ctx, arg);
	t->rec->cancel_rc = kanal__loop_timer_cancel(t->rec->loop, t->rec->other_id);
}

static void test_callback_cancels_a_due_timer(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop, .cancel_rc = 99 };
	tag_t first = { &rec, 1 }, second = { &rec, 2 };

	/* Both due in the same pass; the first cancels the second before it runs. */
	CU_ASSERT(kanal__loop_timer_add(loop, NULL, 0, 0, s_cancel_other, &first) > 0);
	rec.other_id = kanal__loop_timer_add(loop, NULL, 0, 50, s_note, &second);
	test_sleep_ms(2);
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, 0), 0);
	CU_ASSERT_EQUAL(rec.n, 1);
	CU_ASSERT_EQUAL(rec.cancel_rc, 0);
	CU_ASSERT_EQUAL(kanal__loop_size(loop), 0);
	s_run_until(loop, &rec, 2, 80);
	CU_ASSERT_EQUAL(rec.n, 1); /* the repeating one never comes back */
	kanal__loop_destroy(&loop);
}

static tag_t s_chain[6];

/* Notes its value and adds a 0 ms timer for the next value, up to 5. */
static void s_add_zero(kanal_ctx_t *ctx, void *arg)
{
	tag_t *t = arg;
	int next = t->value + 1;

	s_note(ctx, arg);
	if (next > 5)
		return;
	s_chain[next] = (tag_t){ t->rec, next };
	CU_ASSERT(kanal__loop_timer_add(t->rec->loop, NULL, 0, 0, s_add_zero, &s_chain[next]) > 0);
}

static void test_timer_added_in_callback_runs_next_pass(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop };
	tag_t a = { &rec, 1 };

	CU_ASSERT(kanal__loop_timer_add(loop, NULL, 0, 0, s_add_zero, &a) > 0);
	/* A 0 ms timer that adds another must not starve the loop within one pass. */
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, 0), 0);
	CU_ASSERT_EQUAL(rec.n, 1);
	CU_ASSERT_EQUAL(kanal__loop_size(loop), 1);
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, 100), 0);
	CU_ASSERT_EQUAL(rec.n, 2);
	s_run_until(loop, &rec, 5, 500);
	CU_ASSERT_EQUAL(rec.n, 5);
	CU_ASSERT_EQUAL(rec.order[4], 5);
	kanal__loop_destroy(&loop);
}

static void test_cancel_and_bad_arguments(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop };
	tag_t a = { &rec, 1 };
	int64_t id;

	CU_ASSERT_EQUAL(kanal__loop_timer_add(loop, NULL, 10, 0, NULL, NULL), KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal__loop_timer_add(loop, NULL, -1, 0, s_note, &a), KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal__loop_timer_add(loop, NULL, 0, -5, s_note, &a), KANAL_EINVAL);
	id = kanal__loop_timer_add(loop, NULL, 10, 0, s_note, &a);
	CU_ASSERT(id > 0);
	CU_ASSERT_EQUAL(kanal__loop_timer_cancel(loop, id), 0);
	CU_ASSERT_EQUAL(kanal__loop_timer_cancel(loop, id), KANAL_ENOTFOUND);
	CU_ASSERT_EQUAL(kanal__loop_timer_cancel(loop, 12345), KANAL_ENOTFOUND);
	s_run_until(loop, &rec, 1, 40);
	CU_ASSERT_EQUAL(rec.n, 0);
	CU_ASSERT_EQUAL(kanal__loop_fd_watch(loop, NULL, -1, KANAL_FD_READ, NULL, NULL),
			KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal__loop_fd_unwatch(loop, 0), KANAL_ENOTFOUND);
	kanal__loop_destroy(&loop);
	kanal__loop_destroy(&loop); /* NULL is fine */
}

/* ---- fd watches ------------------------------------------------------------------------------- */

static void s_on_fd(kanal_ctx_t *ctx, int fd, int events, void *arg)
{
	record_t *rec = arg;
	char buf[16];

	(void)ctx;
	if (rec->n_fd < 8) {
		rec->fd_fds[rec->n_fd] = fd;
		rec->fd_events[rec->n_fd++] = events;
	}
	if (events & KANAL_FD_READ)
		(void)!read(fd, buf, sizeof buf);
}

static void test_fd_readiness_with_a_pipe(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop };
	int p[2];

	CU_ASSERT_EQUAL_FATAL(pipe(p), 0);
	CU_ASSERT_EQUAL(kanal__loop_fd_watch(loop, NULL, p[0], KANAL_FD_READ, s_on_fd, &rec), 0);
	CU_ASSERT_EQUAL(kanal__loop_size(loop), 1);
	/* Nothing written: the wait times out with no callback. */
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, 20), 0);
	CU_ASSERT_EQUAL(rec.n_fd, 0);
	CU_ASSERT_EQUAL(write(p[1], "x", 1), 1);
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, 1000), 0);
	CU_ASSERT_EQUAL_FATAL(rec.n_fd, 1);
	CU_ASSERT_EQUAL(rec.fd_fds[0], p[0]);
	CU_ASSERT_EQUAL(rec.fd_events[0], KANAL_FD_READ);
	/* A write watch on the other end is ready at once. */
	CU_ASSERT_EQUAL(kanal__loop_fd_watch(loop, NULL, p[1], KANAL_FD_WRITE, s_on_fd, &rec), 0);
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, 1000), 0);
	CU_ASSERT_EQUAL_FATAL(rec.n_fd, 2);
	CU_ASSERT_EQUAL(rec.fd_fds[1], p[1]);
	CU_ASSERT_EQUAL(rec.fd_events[1], KANAL_FD_WRITE);
	CU_ASSERT_EQUAL(kanal__loop_fd_unwatch(loop, p[1]), 0);
	/* Closing the writer is a hang-up: reported as READ so that read() sees EOF. */
	close(p[1]);
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, 1000), 0);
	CU_ASSERT_EQUAL_FATAL(rec.n_fd, 3);
	CU_ASSERT_EQUAL(rec.fd_events[2], KANAL_FD_READ);
	CU_ASSERT_EQUAL(kanal__loop_fd_unwatch(loop, p[0]), 0);
	CU_ASSERT_EQUAL(kanal__loop_size(loop), 0);
	close(p[0]);
	kanal__loop_destroy(&loop);
}

typedef struct unwatcher {
	kanal_loop_t *loop;
	int fds[2]; /* read ends of two pipes */
	int calls;
	int unwatch_rc[2];
} unwatcher_t;

/* Unwatches both fds (its own and the other one) on its first call. */
static void s_unwatch_both(kanal_ctx_t *ctx, int fd, int events, void *arg)
{
	unwatcher_t *u = arg;

	(void)ctx;
	(void)fd;
	(void)events;
	u->calls++;
	u->unwatch_rc[0] = kanal__loop_fd_unwatch(u->loop, u->fds[0]);
	u->unwatch_rc[1] = kanal__loop_fd_unwatch(u->loop, u->fds[1]);
}

static void test_fd_callback_unwatches_itself_and_another(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	unwatcher_t u = { .loop = loop };
	int a[2], b[2];

	CU_ASSERT_EQUAL_FATAL(pipe(a), 0);
	CU_ASSERT_EQUAL_FATAL(pipe(b), 0);
	u.fds[0] = a[0];
	u.fds[1] = b[0];
	CU_ASSERT_EQUAL(kanal__loop_fd_watch(loop, NULL, a[0], KANAL_FD_READ, s_unwatch_both, &u),
			0);
	CU_ASSERT_EQUAL(kanal__loop_fd_watch(loop, NULL, b[0], KANAL_FD_READ, s_unwatch_both, &u),
			0);
	CU_ASSERT_EQUAL(write(a[1], "x", 1), 1);
	CU_ASSERT_EQUAL(write(b[1], "x", 1), 1);
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, 1000), 0);
	/* Both were ready, but the first callback removed the second watch. */
	CU_ASSERT_EQUAL(u.calls, 1);
	CU_ASSERT_EQUAL(u.unwatch_rc[0], 0);
	CU_ASSERT_EQUAL(u.unwatch_rc[1], 0);
	CU_ASSERT_EQUAL(kanal__loop_size(loop), 0);
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, 10), 0);
	CU_ASSERT_EQUAL(u.calls, 1);
	for (int i = 0; i < 2; i++) {
		close(a[i]);
		close(b[i]);
	}
	kanal__loop_destroy(&loop);
}

static void s_other_fd(kanal_ctx_t *ctx, int fd, int events, void *arg)
{
	record_t *rec = arg;

	s_on_fd(ctx, fd, events, arg);
	rec->fd_events[rec->n_fd - 1] |= 0x100; /* mark: the replacement ran */
}

static void test_watching_again_replaces(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop };
	int p[2];

	CU_ASSERT_EQUAL_FATAL(pipe(p), 0);
	CU_ASSERT_EQUAL(kanal__loop_fd_watch(loop, NULL, p[0], KANAL_FD_READ, s_on_fd, &rec), 0);
	CU_ASSERT_EQUAL(kanal__loop_fd_watch(loop, NULL, p[0], KANAL_FD_READ, s_other_fd, &rec), 0);
	CU_ASSERT_EQUAL(kanal__loop_size(loop), 1);
	CU_ASSERT_EQUAL(write(p[1], "x", 1), 1);
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, 1000), 0);
	CU_ASSERT_EQUAL_FATAL(rec.n_fd, 1);
	CU_ASSERT_EQUAL(rec.fd_events[0], KANAL_FD_READ | 0x100);
	close(p[0]);
	close(p[1]);
	kanal__loop_destroy(&loop);
}

static void s_nested(kanal_ctx_t *ctx, void *arg)
{
	record_t *rec = arg;

	(void)ctx;
	rec->cancel_rc = kanal__loop_run_once(rec->loop, NULL, 0);
	rec->n++;
}

static void test_run_once_is_not_reentrant(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop };

	CU_ASSERT(kanal__loop_timer_add(loop, NULL, 0, 0, s_nested, &rec) > 0);
	s_run_until(loop, &rec, 1, 500);
	CU_ASSERT_EQUAL(rec.cancel_rc, KANAL_ESTATE);
	kanal__loop_destroy(&loop);
}

static void test_clear_removes_everything(void)
{
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop };
	tag_t a = { &rec, 1 };
	int p[2];

	CU_ASSERT_EQUAL_FATAL(pipe(p), 0);
	CU_ASSERT(kanal__loop_timer_add(loop, NULL, 0, 10, s_note, &a) > 0);
	CU_ASSERT(kanal__loop_timer_add(loop, NULL, 5, 0, s_note, &a) > 0);
	CU_ASSERT_EQUAL(kanal__loop_fd_watch(loop, NULL, p[1], KANAL_FD_WRITE, s_on_fd, &rec), 0);
	CU_ASSERT_EQUAL(kanal__loop_size(loop), 3);
	kanal__loop_clear(loop);
	CU_ASSERT_EQUAL(kanal__loop_size(loop), 0);
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, NULL, 20), 0);
	CU_ASSERT_EQUAL(rec.n, 0);
	CU_ASSERT_EQUAL(rec.n_fd, 0);
	close(p[0]);
	close(p[1]);
	kanal__loop_destroy(&loop);
}

/* ---- the host's ZeroMQ socket ------------------------------------------------------------------- */

static void test_zmq_socket_readable_returns_promptly(void)
{
	void *zctx = zmq_ctx_new();
	void *in = zmq_socket(zctx, ZMQ_PAIR), *out = zmq_socket(zctx, ZMQ_PAIR);
	kanal_loop_t *loop = kanal__loop_new();
	record_t rec = { .loop = loop };
	tag_t far = { &rec, 1 };
	int64_t start;
	char buf[8];
	int p[2];

	CU_ASSERT_EQUAL_FATAL(zmq_bind(in, "inproc://loop-test"), 0);
	CU_ASSERT_EQUAL_FATAL(zmq_connect(out, "inproc://loop-test"), 0);
	CU_ASSERT_EQUAL_FATAL(pipe(p), 0);
	/* A far timer and an idle fd watch: neither should hold the socket up. */
	CU_ASSERT(kanal__loop_timer_add(loop, NULL, 60000, 0, s_note, &far) > 0);
	CU_ASSERT_EQUAL(kanal__loop_fd_watch(loop, NULL, p[0], KANAL_FD_READ, s_on_fd, &rec), 0);

	start = kanal_now_ms();
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, in, 30), 0); /* nothing yet: times out */
	CU_ASSERT(kanal_now_ms() - start >= 25);

	CU_ASSERT_EQUAL(zmq_send(out, "hi", 2, 0), 2);
	start = kanal_now_ms();
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, in, 5000), 1);
	CU_ASSERT(kanal_now_ms() - start < 500);
	CU_ASSERT_EQUAL(zmq_recv(in, buf, sizeof buf, ZMQ_DONTWAIT), 2);
	CU_ASSERT_EQUAL(rec.n, 0);
	CU_ASSERT_EQUAL(rec.n_fd, 0);

	/* Socket and fd ready together: the fd callback runs and the socket is reported. */
	CU_ASSERT_EQUAL(zmq_send(out, "hi", 2, 0), 2);
	CU_ASSERT_EQUAL(write(p[1], "x", 1), 1);
	test_sleep_ms(5);
	CU_ASSERT_EQUAL(kanal__loop_run_once(loop, in, 1000), 1);
	CU_ASSERT_EQUAL(rec.n_fd, 1);

	kanal__loop_destroy(&loop);
	close(p[0]);
	close(p[1]);
	zmq_close(in);
	zmq_close(out);
	zmq_ctx_term(zctx);
}

TEST_MAIN("loop", TEST(test_timers_fire_in_due_order), TEST(test_many_timers_stay_ordered),
	  TEST(test_run_once_waits_for_next_timer), TEST(test_repeating_timer_keeps_its_grid),
	  TEST(test_repeating_timer_skips_missed_periods), TEST(test_timer_cancels_itself),
	  TEST(test_callback_cancels_a_due_timer),
	  TEST(test_timer_added_in_callback_runs_next_pass), TEST(test_cancel_and_bad_arguments),
	  TEST(test_fd_readiness_with_a_pipe), TEST(test_fd_callback_unwatches_itself_and_another),
	  TEST(test_watching_again_replaces), TEST(test_run_once_is_not_reentrant),
	  TEST(test_clear_removes_everything), TEST(test_zmq_socket_readable_returns_promptly))
