/*
 * sdk/loop.c — the instance loop: a plugin instance's timers and file-descriptor watches,
 * polled together with one optional ZeroMQ socket of the host's.
 *
 * kanald's instance threads and the test harness both drive a plugin through this loop:
 * they call kanal__loop_run_once() over and over, and it waits (zmq_poll) until the host's
 * socket is readable, a watched fd is ready or the earliest timer is due, then runs the due
 * timers in due order and the ready fd callbacks. Timers live in a binary min-heap keyed by
 * (due time, creation order) on the monotonic clock; watches in a small array.
 *
 * Plugin callbacks may add and cancel timers and watches while the loop dispatches —
 * including cancelling the very timer that is running — so the loop never holds a pointer
 * across a callback that a callback could free: due timers are moved to a `firing` batch
 * before any of them runs, and a cancelled one is only marked; watches removed during a
 * dispatch are marked and compacted afterwards, and ready fds are found again by a
 * generation number after each callback. Storage for every live timer is reserved when the
 * timer is added, so putting a repeating timer back on the heap can never fail.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "host.h"

/* A repeating timer that misses its period (a slow callback, a blocked thread) skips the
 * missed periods rather than firing in a burst; see s_reschedule. */
typedef struct loop_timer {
	int64_t id;
	int64_t due;      /* monotonic ms */
	int64_t interval; /* 0: one-shot */
	uint64_t seq;     /* creation order: ties on `due` run first-added first */
	kanal_timer_fn fn;
	void *arg;
	kanal_ctx_t *ctx;
	size_t heap_index; /* position in loop->heap while there */
	bool cancelled;    /* only ever set while the timer is in the firing batch */
} loop_timer_t;

typedef struct loop_watch {
	int fd;
	int events; /* KANAL_FD_READ | KANAL_FD_WRITE */
	kanal_fd_fn fn;
	void *arg;
	kanal_ctx_t *ctx;
	uint64_t gen; /* unique per watch, to find it again after a callback */
	bool removed; /* unwatched during a dispatch; freed by s_compact_watches */
} loop_watch_t;

struct kanal_loop {
	loop_timer_t **heap; /* min-heap on (due, seq) */
	size_t n_heap;
	loop_timer_t **firing; /* due timers taken off the heap for the current dispatch */
	size_t n_firing;
	size_t timer_cap; /* capacity of heap and of firing: >= every live timer */
	int64_t next_timer_id;
	uint64_t next_seq;

	loop_watch_t **watches;
	size_t n_watches;
	size_t watch_cap;
	uint64_t next_watch_gen;

	zmq_pollitem_t *items; /* poll set: [zsock] + watches; capacity watch_cap + 1 */
	uint64_t *item_gen;    /* the watch generation behind each item */
	bool dispatching;
};

/* ---- timer heap ---------------------------------------------------------------------- */

static bool s_timer_before(const loop_timer_t *a, const loop_timer_t *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void s_heap_place(kanal_loop_t *loop, size_t i, loop_timer_t *t)
{
	loop->heap[i] = t;
	t->heap_index = i;
}

static void s_heap_up(kanal_loop_t *loop, size_t i)
{
	loop_timer_t *t = loop->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!s_timer_before(t, loop->heap[parent]))
			break;
		s_heap_place(loop, i, loop->heap[parent]);
		i = parent;
	}
	s_heap_place(loop, i, t);
}

static void s_heap_down(kanal_loop_t *loop, size_t i)
{
	loop_timer_t *t = loop->heap[i];

	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= loop->n_heap)
			break;
		if (child + 1 < loop->n_heap &&
		    s_timer_before(loop->heap[child + 1], loop->heap[child]))
			child++;
		if (!s_timer_before(loop->heap[child], t))
			break;
		s_heap_place(loop, i, loop->heap[child]);
		i = child;
	}
	s_heap_place(loop, i, t);
}

/* Pushes t; the caller has made sure there is room (timer_cap counts every live timer). */
static void s_heap_push(kanal_loop_t *loop, loop_timer_t *t)
{
	loop->heap[loop->n_heap] = t;
	t->heap_index = loop->n_heap;
	loop->n_heap++;
	s_heap_up(loop, t->heap_index);
}

/* Takes the timer at heap position i off the heap and returns it. */
static loop_timer_t *s_heap_remove(kanal_loop_t *loop, size_t i)
{
	loop_timer_t *t = loop->heap[i];
	loop_timer_t *last = loop->heap[--loop->n_heap];

	if (i < loop->n_heap) {
		s_heap_place(loop, i, last);
		if (i > 0 && s_timer_before(last, loop->heap[(i - 1) / 2]))
			s_heap_up(loop, i);
		else
			s_heap_down(loop, i);
	}
	return t;
}

/* Makes room for one more live timer in both the heap and the firing batch. */
static int s_reserve_timer(kanal_loop_t *loop)
{
	size_t live = loop->n_heap + loop->n_firing;
	size_t cap;
	loop_timer_t **heap, **firing;

	if (live < loop->timer_cap)
		return 0;
	cap = loop->timer_cap ? loop->timer_cap * 2 : 8;
	heap = realloc(loop->heap, cap * sizeof *heap);
	if (!heap)
		return KANAL_ENOMEM;
	loop->heap = heap;
	firing = realloc(loop->firing, cap * sizeof *firing);
	if (!firing)
		return KANAL_ENOMEM; /* heap grew harmlessly; timer_cap is the smaller size */
	loop->firing = firing;
	loop->timer_cap = cap;
	return 0;
}

/* ---- public: loop ------------------------------------------------------------------- */

kanal_loop_t *kanal__loop_new(void)
{
	kanal_loop_t *loop = calloc(1, sizeof *loop);

	if (!loop)
		return NULL;
	/* The poll set always has room for the host's socket. */
	loop->items = calloc(1, sizeof *loop->items);
	loop->item_gen = calloc(1, sizeof *loop->item_gen);
	if (!loop->items || !loop->item_gen) {
		free(loop->items);
		free(loop->item_gen);
		free(loop);
		return NULL;
	}
	loop->next_timer_id = 1;
	loop->next_watch_gen = 1;
	return loop;
}

void kanal__loop_destroy(kanal_loop_t **loop_p)
{
	kanal_loop_t *loop;

	if (!loop_p || !*loop_p)
		return;
	loop = *loop_p;
	*loop_p = NULL;
	kanal__loop_clear(loop);
	free(loop->heap);
	free(loop->firing);
	free(loop->watches);
	free(loop->items);
	free(loop->item_gen);
	free(loop);
}

size_t kanal__loop_size(const kanal_loop_t *loop)
{
	size_t n = 0;

	if (!loop)
		return 0;
	n += loop->n_heap;
	for (size_t i = 0; i < loop->n_firing; i++)
		n += !loop->firing[i]->cancelled;
	for (size_t i = 0; i < loop->n_watches; i++)
		n += !loop->watches[i]->removed;
	return n;
}

/* Removes every timer and watch. From within a callback, timers in the running batch and
 * watches are only marked, and go when the dispatch ends. */
void kanal__loop_clear(kanal_loop_t *loop)
{
	if (!loop)
		return;
	for (size_t i = 0; i < loop->n_heap; i++)
		free(loop->heap[i]);
	loop->n_heap = 0;
	for (size_t i = 0; i < loop->n_firing; i++)
		loop->firing[i]->cancelled = true;
	if (!loop->dispatching) {
		for (size_t i = 0; i < loop->n_firing; i++)
			free(loop->firing[i]);
		loop->n_firing = 0;
	}
	for (size_t i = 0; i < loop->n_watches; i++) {
		if (loop->dispatching)
			loop->watches[i]->removed = true;
		else
			free(loop->watches[i]);
	}
	if (!loop->dispatching)
		loop->n_watches = 0;
}

/* ---- public: timers ------------------------------------------------------------------ */

int64_t kanal__loop_timer_add(kanal_loop_t *loop, kanal_ctx_t *ctx, int64_t after_ms,
			      int64_t interval_ms, kanal_timer_fn fn, void *arg)
{
	loop_timer_t *t;
	int rc;

	if (!loop || !fn || after_ms < 0 || interval_ms < 0)
		return KANAL_EINVAL;
	/* Keep due times far from overflow: a timer decades away is a bug in the caller. */
	if (after_ms > INT64_MAX / 4 || interval_ms > INT64_MAX / 4)
		return KANAL_EINVAL;
	rc = s_reserve_timer(loop);
	if (rc)
		return rc;
	t = calloc(1, sizeof *t);
	if (!t)
		return KANAL_ENOMEM;
	t->id = loop->next_timer_id++;
	t->due = kanal_now_ms() + after_ms;
	t->interval = interval_ms;
	t->seq = loop->next_seq++;
	t->fn = fn;
	t->arg = arg;
	t->ctx = ctx;
	s_heap_push(loop, t);
	return t->id;
}

int kanal__loop_timer_cancel(kanal_loop_t *loop, int64_t id)
{
	if (!loop || id <= 0)
		return KANAL_ENOTFOUND;
	for (size_t i = 0; i < loop->n_heap; i++) {
		if (loop->heap[i]->id == id) {
			free(s_heap_remove(loop, i));
			return 0;
		}
	}
	/* A timer in the running batch (possibly the caller itself) is freed when the batch
	 * ends; marking it keeps it from running and from being rescheduled. */
	for (size_t i = 0; i < loop->n_firing; i++) {
		if (loop->firing[i]->id == id && !loop->firing[i]->cancelled) {
			loop->firing[i]->cancelled = true;
			return 0;
		}
	}
	return KANAL_ENOTFOUND;
}

/* Sets a repeating timer's next due time on its own grid (previous due + interval), so
 * that it does not drift; periods already missed by `now` are skipped, not made up. */
static void s_reschedule(loop_timer_t *t, int64_t now)
{
	int64_t next = t->due + t->interval;

	if (next <= now)
		next += ((now - next) / t->interval + 1) * t->interval;
	t->due = next;
}

/* Runs every timer due at `now`, in due order. */
static void s_run_timers(kanal_loop_t *loop, int64_t now)
{
	/* Take the whole due set off the heap first: a callback may add timers (they wait for
	 * the next call, which keeps a 0 ms timer that re-adds itself from starving the
	 * loop) or cancel ones in this batch (they are marked and skipped). */
	while (loop->n_heap && loop->heap[0]->due <= now)
		loop->firing[loop->n_firing++] = s_heap_remove(loop, 0);
	for (size_t i = 0; i < loop->n_firing; i++) {
		loop_timer_t *t = loop->firing[i];
		if (t->cancelled)
			continue;
		/* A one-shot is spent once it runs: cancelling it from its own callback finds
		 * nothing, and it is freed after the batch. */
		if (!t->interval)
			t->cancelled = true;
		t->fn(t->ctx, t->arg);
	}
	if (!loop->n_firing)
		return;
	now = kanal_now_ms();
	for (size_t i = 0; i < loop->n_firing; i++) {
		loop_timer_t *t = loop->firing[i];
		if (t->cancelled) {
			free(t);
			continue;
		}
		s_reschedule(t, now);
		s_heap_push(loop, t); /* room was reserved when t was added */
	}
	loop->n_firing = 0;
}

/* ---- public: fd watches ------------------------------------------------------------ */

static loop_watch_t *s_find_watch(kanal_loop_t *loop, int fd)
{
	for (size_t i = 0; i < loop->n_watches; i++)
		if (loop->watches[i]->fd == fd && !loop->watches[i]->removed)
			return loop->watches[i];
	return NULL;
}

/* Grows the watch array and the poll set together, so run_once never allocates. */
static int s_reserve_watch(kanal_loop_t *loop)
{
	size_t cap;
	loop_watch_t **watches;
	zmq_pollitem_t *items;
	uint64_t *gens;

	if (loop->n_watches < loop->watch_cap)
		return 0;
	cap = loop->watch_cap ? loop->watch_cap * 2 : 4;
	watches = realloc(loop->watches, cap * sizeof *watches);
	if (!watches)
		return KANAL_ENOMEM;
	loop->watches = watches;
	items = realloc(loop->items, (cap + 1) * sizeof *items);
	if (!items)
		return KANAL_ENOMEM;
	loop->items = items;
	gens = realloc(loop->item_gen, (cap + 1) * sizeof *gens);
	if (!gens)
		return KANAL_ENOMEM;
	loop->item_gen = gens;
	loop->watch_cap = cap;
	return 0;
}

int kanal__loop_fd_watch(kanal_loop_t *loop, kanal_ctx_t *ctx, int fd, int events, kanal_fd_fn fn,
			 void *arg)
{
	loop_watch_t *w;
	int rc;

	if (!loop || fd < 0 || !fn || !events || (events & ~(KANAL_FD_READ | KANAL_FD_WRITE)))
		return KANAL_EINVAL;
	w = s_find_watch(loop, fd);
	if (w) {
		/* One watch per fd: watching again replaces it in place. */
		w->events = events;
		w->fn = fn;
		w->arg = arg;
		w->ctx = ctx;
		return 0;
	}
	rc = s_reserve_watch(loop);
	if (rc)
		return rc;
	w = calloc(1, sizeof *w);
	if (!w)
		return KANAL_ENOMEM;
	w->fd = fd;
	w->events = events;
	w->fn = fn;
	w->arg = arg;
	w->ctx = ctx;
	w->gen = loop->next_watch_gen++;
	loop->watches[loop->n_watches++] = w;
	return 0;
}

int kanal__loop_fd_unwatch(kanal_loop_t *loop, int fd)
{
	if (!loop)
		return KANAL_ENOTFOUND;
	for (size_t i = 0; i < loop->n_watches; i++) {
		loop_watch_t *w = loop->watches[i];
		if (w->fd != fd || w->removed)
			continue;
		if (loop->dispatching) {
			w->removed = true;
		} else {
			free(w);
			memmove(&loop->watches[i], &loop->watches[i + 1],
				(loop->n_watches - i - 1) * sizeof *loop->watches);
			loop->n_watches--;
		}
		return 0;
	}
	return KANAL_ENOTFOUND;
}

/* Frees the watches unwatched during a dispatch, keeping the others in order. */
static void s_compact_watches(kanal_loop_t *loop)
{
	size_t kept = 0;

	for (size_t i = 0; i < loop->n_watches; i++) {
		if (loop->watches[i]->removed)
			free(loop->watches[i]);
		else
			loop->watches[kept++] = loop->watches[i];
	}
	loop->n_watches = kept;
}

static loop_watch_t *s_watch_by_gen(kanal_loop_t *loop, uint64_t gen)
{
	for (size_t i = 0; i < loop->n_watches; i++)
		if (loop->watches[i]->gen == gen)
			return loop->watches[i]->removed ? NULL : loop->watches[i];
	return NULL;
}

/* Calls the callback of each watch found ready by the poll, if it is still watched. An
 * error or hang-up is reported as the events the watch asked for, so that the plugin's
 * read or write sees the error. */
static void s_run_watches(kanal_loop_t *loop, size_t first, size_t n_items)
{
	for (size_t i = first; i < n_items; i++) {
		short rev = loop->items[i].revents;
		loop_watch_t *w;
		int ev = 0;

		if (!rev)
			continue;
		w = s_watch_by_gen(loop, loop->item_gen[i]);
		if (!w)
			continue;
		if (rev & ZMQ_POLLIN)
			ev |= KANAL_FD_READ;
		if (rev & ZMQ_POLLOUT)
			ev |= KANAL_FD_WRITE;
		if (rev & ZMQ_POLLERR)
			ev |= w->events;
		ev &= w->events;
		if (ev)
			w->fn(w->ctx, w->fd, ev, w->arg);
	}
}

/* ---- public: run ---------------------------------------------------------------------- */

static void s_sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int kanal__loop_run_once(kanal_loop_t *loop, void *zsock, int64_t max_wait_ms)
{
	zmq_pollitem_t *items;
	size_t n_items = 0, first_watch;
	int64_t wait = max_wait_ms < 0 ? -1 : max_wait_ms;
	int64_t now;
	int readable = 0;

	if (!loop)
		return KANAL_EINVAL;
	if (loop->dispatching)
		return KANAL_ESTATE;

	/* items has room for every watch plus the socket (see s_reserve_watch). */
	items = loop->items;
	if (zsock) {
		items[0] = (zmq_pollitem_t){ .socket = zsock, .events = ZMQ_POLLIN };
		loop->item_gen[0] = 0;
		n_items = 1;
	}
	first_watch = n_items;
	for (size_t i = 0; i < loop->n_watches; i++) {
		loop_watch_t *w = loop->watches[i];
		short ev = 0;
		if (w->events & KANAL_FD_READ)
			ev |= ZMQ_POLLIN;
		if (w->events & KANAL_FD_WRITE)
			ev |= ZMQ_POLLOUT;
		items[n_items] = (zmq_pollitem_t){ .socket = NULL, .fd = w->fd, .events = ev };
		loop->item_gen[n_items] = w->gen;
		n_items++;
	}

	now = kanal_now_ms();
	if (loop->n_heap) {
		int64_t until = loop->heap[0]->due - now;
		if (until < 0)
			until = 0;
		if (wait < 0 || until < wait)
			wait = until;
	}
	if (wait > INT32_MAX)
		wait = INT32_MAX;

	if (n_items) {
		int rc = zmq_poll(items, (int)n_items, (long)wait);
		if (rc < 0) {
			if (errno == ETERM)
				return KANAL_ECLOSED;
			if (errno != EINTR)
				return KANAL_EIO;
			/* Interrupted: report nothing ready, but still run due timers. */
			for (size_t i = 0; i < n_items; i++)
				items[i].revents = 0;
		}
		if (zsock && (items[0].revents & ZMQ_POLLIN))
			readable = 1;
	} else if (wait > 0) {
		s_sleep_ms(wait);
	}

	loop->dispatching = true;
	s_run_timers(loop, kanal_now_ms());
	if (n_items > first_watch)
		s_run_watches(loop, first_watch, n_items);
	loop->dispatching = false;
	s_compact_watches(loop);
	return readable;
}
