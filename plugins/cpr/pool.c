/*
 * plugins/cpr/pool.c — the cpr plugin's worker threads: lookups run on a few threads of
 * their own so that the service answers several requests at once (a slow one holds up
 * nobody), while every answer goes back to the instance's thread, the only one allowed to
 * use the host's services. Finished tasks are handed back through an eventfd the instance
 * loop watches (kanal_fd_watch). A task can be cancelled from the instance's thread at any
 * time: one still queued is not run, one running sees its flag (the HTTP client aborts the
 * transfer, kc_http_set_cancel). docs/design/service-concurrency.md.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cpr_int.h"

struct cpr_pool {
	kanal_ctx_t *ctx;
	cpr_run_fn run;
	cpr_done_fn done;
	void *arg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	cpr_task_t *queue, *queue_tail; /* waiting for a worker */
	cpr_task_t *finished;           /* run (or skipped), waiting for the instance thread */
	bool stopping;
	int efd;
	size_t n_threads;
	pthread_t threads[CPR_POOL_MAX];
};

typedef struct worker_arg {
	cpr_pool_t *pool;
	size_t index;
} worker_arg_t;

static void s_wake_instance(cpr_pool_t *p)
{
	uint64_t one = 1;
	ssize_t n;

	do {
		n = write(p->efd, &one, sizeof one);
	} while (n < 0 && errno == EINTR);
}

static void *s_worker(void *arg)
{
	cpr_pool_t *p = ((worker_arg_t *)arg)->pool;
	size_t index = ((worker_arg_t *)arg)->index;

	free(arg);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		cpr_task_t *t;

		while (!p->queue && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mu);
		if (!p->queue)
			break; /* stopping, and nothing left to run */
		t = p->queue;
		p->queue = t->next;
		if (!p->queue)
			p->queue_tail = NULL;
		pthread_mutex_unlock(&p->mu);
		/* A task cancelled while it waited is not run: its caller is gone. */
		if (!__atomic_load_n(&t->cancel, __ATOMIC_ACQUIRE) && !p->stopping)
			p->run(p->arg, t, index);
		else
			t->skipped = true;
		pthread_mutex_lock(&p->mu);
		t->next = p->finished;
		p->finished = t;
		s_wake_instance(p);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Hands every finished task to `done`, on the calling (instance) thread. */
static void s_collect(cpr_pool_t *p)
{
	cpr_task_t *list;

	pthread_mutex_lock(&p->mu);
	list = p->finished;
	p->finished = NULL;
	pthread_mutex_unlock(&p->mu);
	/* The list is newest first: answer in the order the work finished. */
	{
		cpr_task_t *rev = NULL;
		while (list) {
			cpr_task_t *next = list->next;
			list->next = rev;
			rev = list;
			list = next;
		}
		list = rev;
	}
	while (list) {
		cpr_task_t *next = list->next;
		list->next = NULL;
		p->done(p->ctx, p->arg, list);
		list = next;
	}
}

static void s_on_efd(kanal_ctx_t *ctx, int fd, int events, void *arg)
{
	cpr_pool_t *p = arg;
	uint64_t count;

	while (read(fd, &count, sizeof count) < 0 && errno == EINTR)
		;
	s_collect(p);
}

int cpr_pool_start(kanal_ctx_t *ctx, size_t n, cpr_run_fn run, cpr_done_fn done, void *arg,
		   cpr_pool_t **out)
{
	cpr_pool_t *p = calloc(1, sizeof *p);
	int rc;

	*out = NULL;
	if (!p)
		return KANAL_ENOMEM;
	if (n < 1 || n > CPR_POOL_MAX)
		n = n < 1 ? 1 : CPR_POOL_MAX;
	p->ctx = ctx;
	p->run = run;
	p->done = done;
	p->arg = arg;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0) {
		rc = KANAL_EIO;
		goto fail;
	}
	if ((rc = kanal_fd_watch(ctx, p->efd, KANAL_FD_READ, s_on_efd, p)) != 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		worker_arg_t *wa = malloc(sizeof *wa);
		if (!wa) {
			rc = KANAL_ENOMEM;
			goto fail;
		}
		wa->pool = p;
		wa->index = i;
		if (pthread_create(&p->threads[i], NULL, s_worker, wa) != 0) {
			free(wa);
			rc = KANAL_ETHREAD;
			goto fail;
		}
		p->n_threads++;
	}
	*out = p;
	return 0;
fail:
	cpr_pool_stop(&p);
	return rc;
}

void cpr_pool_submit(cpr_pool_t *p, cpr_task_t *t)
{
	t->next = NULL;
	t->skipped = false;
	pthread_mutex_lock(&p->mu);
	if (p->queue_tail)
		p->queue_tail->next = t;
	else
		p->queue = t;
	p->queue_tail = t;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void cpr_pool_cancel(cpr_task_t *t)
{
	__atomic_store_n(&t->cancel, 1, __ATOMIC_RELEASE);
}

void cpr_pool_stop(cpr_pool_t **pool_p)
{
	cpr_pool_t *p = *pool_p;

	if (!p)
		return;
	*pool_p = NULL;
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	/* What is still queued will not run: each worker marks it skipped on its way out. */
	for (cpr_task_t *t = p->queue; t; t = t->next)
		__atomic_store_n(&t->cancel, 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	/* No thread left: tasks queued beyond the workers' last pass are skipped here. */
	while (p->queue) {
		cpr_task_t *t = p->queue;
		p->queue = t->next;
		t->skipped = true;
		t->next = p->finished;
		p->finished = t;
	}
	s_collect(p);
	if (p->efd >= 0) {
		kanal_fd_unwatch(p->ctx, p->efd);
		close(p->efd);
	}
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
}
