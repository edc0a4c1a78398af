/*
 * plugins/common/kc_inbox.c — the inbox between a listener on libmicrohttpd's own thread and
 * its instance's thread: a JSON array under a lock, saved atomically in the state folder
 * before the listener answers, and an eventfd the instance's thread watches (kc_inbox.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kc_files.h"
#include "kc_inbox.h"
#include "kc_mhd.h"

struct kc_inbox {
	kanal_ctx_t *ctx;
	char *dir, *file;
	size_t max;
	int wake_fd;   /* eventfd: the listener → the instance's thread; -1: none */
	bool watching; /* wake_fd is watched */
	kc_inbox_drain_fn *drain;
	void *drain_arg;
	pthread_mutex_t lock;     /* guards what follows */
	json_t *entries;          /* kept, not yet taken */
	kc_inbox_counts_t counts; /* since the last take */
};

/* Saves the entries (lock held; any thread, so it logs nothing). Returns 0 or a negative
 * KANAL_E code with errno set. */
static int s_save(kc_inbox_t *in)
{
	char *text = json_dumps(in->entries, JSON_COMPACT | JSON_SORT_KEYS);
	int rc;

	if (!text)
		return KANAL_ENOMEM;
	rc = kc_file_write_atomic(in->dir, in->file, text, strlen(text), 0600);
	free(text);
	return rc;
}

int kc_inbox_new(kanal_ctx_t *ctx, const char *file, size_t max, const char *plugin,
		 const char *what, kc_inbox_t **out)
{
	kc_inbox_t *in = calloc(1, sizeof *in);
	char path[4096];
	json_error_t jerr;

	*out = NULL;
	if (!in)
		return KANAL_ENOMEM;
	pthread_mutex_init(&in->lock, NULL);
	in->wake_fd = -1;
	in->ctx = ctx;
	in->max = max;
	in->dir = strdup(kanal_state_dir(ctx));
	in->file = strdup(file);
	if (!in->dir || !in->file) {
		kc_inbox_destroy(&in);
		return KANAL_ENOMEM;
	}
	snprintf(path, sizeof path, "%s/%s", in->dir, file);
	in->entries = json_load_file(path, 0, &jerr);
	if (in->entries && !json_is_array(in->entries)) {
		json_decref(in->entries);
		in->entries = NULL;
		snprintf(jerr.text, sizeof jerr.text, "not a JSON array");
	}
	if (!in->entries && access(path, F_OK) == 0) {
		kanal_set_error(ctx,
				"%s: %s is not readable JSON (%s); move it away to start without "
				"the %s it lists",
				plugin, path, jerr.text, what);
		kc_inbox_destroy(&in);
		return KANAL_ECONFIG;
	}
	if (!in->entries && !(in->entries = json_array())) {
		kc_inbox_destroy(&in);
		return KANAL_ENOMEM;
	}
	*out = in;
	return 0;
}

static void s_on_wake(kanal_ctx_t *ctx, int fd, int events, void *arg)
{
	kc_inbox_t *in = arg;

	(void)ctx;
	(void)fd;
	(void)events;
	in->drain(in->drain_arg);
}

int kc_inbox_start(kc_inbox_t *in, kanal_ctx_t *ctx, kc_inbox_drain_fn *drain, void *arg)
{
	int rc;

	in->ctx = ctx;
	in->drain = drain;
	in->drain_arg = arg;
	errno = 0;
	if ((in->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		return KANAL_EIO;
	if ((rc = kanal_fd_watch(ctx, in->wake_fd, KANAL_FD_READ, s_on_wake, in)) != 0) {
		close(in->wake_fd);
		in->wake_fd = -1;
		return rc;
	}
	in->watching = true;
	/* Entries kept before a restart are applied at once. */
	if (kc_inbox_size(in))
		kc_inbox_wake(in);
	return 0;
}

void kc_inbox_wake(kc_inbox_t *in)
{
	uint64_t one = 1;

	if (in->wake_fd >= 0 && write(in->wake_fd, &one, sizeof one) < 0) {
		/* EAGAIN: the counter is full, so a wakeup is pending anyway. */
	}
}

size_t kc_inbox_size(kc_inbox_t *in)
{
	size_t n;

	pthread_mutex_lock(&in->lock);
	n = json_array_size(in->entries);
	pthread_mutex_unlock(&in->lock);
	return n;
}

int kc_inbox_keep(kc_inbox_t *in, json_t *entry, char *why, size_t why_size)
{
	int rc = 0;

	pthread_mutex_lock(&in->lock);
	if (json_array_size(in->entries) >= in->max) {
		snprintf(why, why_size, "%zu are waiting to be applied: send it again later",
			 in->max);
		rc = KANAL_EBUSY;
	} else if (json_array_append(in->entries, entry) != 0) {
		snprintf(why, why_size, "out of memory: send it again");
		rc = KANAL_ENOMEM;
	} else if ((rc = s_save(in)) < 0) {
		snprintf(why, why_size, "it could not be kept (%s): send it again",
			 strerror(errno));
		json_array_remove(in->entries, json_array_size(in->entries) - 1);
	} else {
		in->counts.received++;
	}
	pthread_mutex_unlock(&in->lock);
	kc_inbox_wake(in);
	return rc;
}

void kc_inbox_refused(kc_inbox_t *in, bool invalid, const char *why)
{
	pthread_mutex_lock(&in->lock);
	in->counts.refused++;
	in->counts.invalid += invalid;
	snprintf(in->counts.why, sizeof in->counts.why, "%s", why ? why : "");
	pthread_mutex_unlock(&in->lock);
	kc_inbox_wake(in);
}

json_t *kc_inbox_take(kc_inbox_t *in, kc_inbox_counts_t *counts)
{
	json_t *fresh = json_array(), *taken = NULL;
	uint64_t n;

	if (in->wake_fd >= 0 && read(in->wake_fd, &n, sizeof n) < 0 && errno != EAGAIN)
		kanal_log(in->ctx, KANAL_LOG_WARN, "inbox %s: eventfd: %s", in->file,
			  strerror(errno));
	pthread_mutex_lock(&in->lock);
	if (fresh) {
		taken = in->entries;
		in->entries = fresh;
	}
	if (counts)
		*counts = in->counts;
	memset(&in->counts, 0, sizeof in->counts);
	pthread_mutex_unlock(&in->lock);
	return taken;
}

void kc_inbox_put_back(kc_inbox_t *in, json_t **keep_p, bool changed)
{
	json_t *keep = *keep_p ? *keep_p : json_array();
	char why[300] = "";

	*keep_p = NULL;
	pthread_mutex_lock(&in->lock);
	if (keep) {
		json_array_extend(keep, in->entries);
		json_decref(in->entries);
		in->entries = keep;
	}
	/* Not saved when nothing changed: the file already lists these. */
	if (changed && s_save(in) < 0)
		snprintf(why, sizeof why, "%s", strerror(errno));
	pthread_mutex_unlock(&in->lock);
	if (why[0])
		kanal_log(in->ctx, KANAL_LOG_ERROR, "cannot save %s/%s: %s", in->dir, in->file,
			  why);
}

void kc_inbox_stop(kc_inbox_t *in, kanal_ctx_t *ctx)
{
	if (!in)
		return;
	if (in->watching)
		kanal_fd_unwatch(ctx, in->wake_fd);
	in->watching = false;
	if (in->wake_fd >= 0)
		close(in->wake_fd);
	in->wake_fd = -1;
}

void kc_inbox_destroy(kc_inbox_t **in_p)
{
	kc_inbox_t *in = in_p ? *in_p : NULL;

	if (!in)
		return;
	if (in->wake_fd >= 0)
		close(in->wake_fd);
	pthread_mutex_destroy(&in->lock);
	json_decref(in->entries);
	free(in->dir);
	free(in->file);
	free(in);
	*in_p = NULL;
}

struct MHD_Daemon *kc_mhd_listen_thread(const struct sockaddr *addr, bool ipv6,
					MHD_AccessHandlerCallback handler, void *cls)
{
	return MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG |
					(ipv6 ? MHD_USE_IPv6 : 0),
				0, NULL, NULL, handler, cls, MHD_OPTION_SOCK_ADDR, addr,
				MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_CONNECTION_LIMIT,
				64u, MHD_OPTION_NOTIFY_COMPLETED, kc_mhd_body_free, cls,
				MHD_OPTION_END);
}
