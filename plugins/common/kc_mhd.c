/*
 * plugins/common/kc_mhd.c — the one libmicrohttpd pump on an instance's thread (kc_mhd.h):
 * the epoll descriptor's readiness and a timer both lead to MHD_run, and after each run the
 * timer is armed for libmicrohttpd's next timeout (at most max_ms); and a request body taken
 * whole, for the handlers that answer only once it is complete.
 */
#include "kc_mhd.h"

#include <stdlib.h>
#include <string.h>

static void s_on_timer(kanal_ctx_t *ctx, void *arg)
{
	kc_mhd_pump_t *p = arg;

	(void)ctx;
	p->timer = 0;
	kc_mhd_pump(p);
}

static void s_on_ready(kanal_ctx_t *ctx, int fd, int events, void *arg)
{
	(void)ctx;
	(void)fd;
	(void)events;
	kc_mhd_pump(arg);
}

void kc_mhd_pump(void *arg)
{
	kc_mhd_pump_t *p = arg;
	MHD_UNSIGNED_LONG_LONG to = 0;
	int64_t ms = p->max_ms;

	if (!p->daemon)
		return;
	if (p->before) {
		int64_t want = p->before(p->arg);
		if (want >= 0 && want < ms)
			ms = want;
	}
	MHD_run(p->daemon);
	if (MHD_get_timeout(p->daemon, &to) == MHD_YES && to < (MHD_UNSIGNED_LONG_LONG)ms)
		ms = (int64_t)to;
	if (p->timer)
		kanal_timer_cancel(p->ctx, p->timer);
	p->timer = kanal_timer_add(p->ctx, ms, 0, s_on_timer, p);
	if (p->timer < 0)
		p->timer = 0;
}

int kc_mhd_pump_start(kc_mhd_pump_t *p, kanal_ctx_t *ctx, struct MHD_Daemon *daemon, int64_t max_ms,
		      int64_t (*before)(void *arg), void *arg)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD);

	*p = (kc_mhd_pump_t){ .ctx = ctx,
			      .daemon = daemon,
			      .epoll_fd = -1,
			      .max_ms = max_ms,
			      .before = before,
			      .arg = arg };
	if (!info || info->epoll_fd < 0 ||
	    kanal_fd_watch(ctx, info->epoll_fd, KANAL_FD_READ, s_on_ready, p) < 0) {
		p->daemon = NULL;
		return KANAL_EIO;
	}
	p->epoll_fd = info->epoll_fd;
	kc_mhd_pump(p);
	return 0;
}

void kc_mhd_pump_stop(kc_mhd_pump_t *p)
{
	if (!p || !p->ctx)
		return;
	if (p->timer)
		kanal_timer_cancel(p->ctx, p->timer);
	p->timer = 0;
	if (p->epoll_fd >= 0)
		kanal_fd_unwatch(p->ctx, p->epoll_fd);
	p->epoll_fd = -1;
	p->daemon = NULL;
}

int kc_mhd_body_take(void **con_cls, const char *data, size_t *size, size_t max,
		     kc_mhd_body_t **out)
{
	kc_mhd_body_t *b = *con_cls;

	if (!b) {
		if (!(b = calloc(1, sizeof *b)))
			return KC_MHD_BODY_ERROR;
		*con_cls = b;
		return KC_MHD_BODY_MORE;
	}
	if (*size) {
		if (b->len + *size > max) {
			b->too_big = true;
		} else if (!b->too_big) {
			char *grown = realloc(b->data, b->len + *size + 1);
			if (!grown)
				return KC_MHD_BODY_ERROR;
			memcpy(grown + b->len, data, *size);
			b->data = grown;
			b->len += *size;
			b->data[b->len] = '\0';
		}
		*size = 0;
		return KC_MHD_BODY_MORE;
	}
	*out = b;
	return KC_MHD_BODY_DONE;
}

void kc_mhd_body_free(void *cls, struct MHD_Connection *conn, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	kc_mhd_body_t *b = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (b) {
		free(b->data);
		free(b);
		*con_cls = NULL;
	}
}
