/*
 * sdk/ctx.c — the host services a plugin reaches through its kanal_ctx_t.
 *
 * Every public kanal_* service of kanal/plugin.h lands here. This file does what is the
 * same in every host — checks that the caller is on the instance's thread, takes ownership
 * of messages exactly as the contract says, formats and CPR-masks error and log texts,
 * keeps the per-delivery facts (route, id, attempt, error, retry hint) — and forwards the
 * rest to the host's ops table (kanald, the isolated plugin host, the test harness) or to
 * the instance loop (timers and fd watches). It also creates and destroys ctx objects for
 * hosts (kanal__ctx_*).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "host.h"

/* A deferred request: which delivery it answers and what to call when its caller gives up.
 * It lives in ctx->pending from kanal_request_defer until the plugin ends it. */
struct kanal_pending {
	uint64_t id;
	kanal_cancel_fn on_cancel;
	void *arg;
	int cancelled; /* atomic: read by kanal_pending_cancelled from any thread */
	bool answered; /* the host answered it already (cancelled, or abandoned at stop) */
	struct kanal_pending *next;
};

/* ---- small helpers ----------------------------------------------------------------------- */

/* True when a host service may run now: the ctx is unbound (the host has not started the
 * instance's thread yet) or the caller is the thread it is bound to. */
static bool s_on_thread(const kanal_ctx_t *ctx)
{
	return !ctx->bound || pthread_equal(pthread_self(), ctx->thread);
}

/* Formats fmt/ap into a new string, escaped for a log line, with every CPR number masked. The whole text is formatted
 * before masking, so that truncating it afterwards cannot cut a number in two and hide it
 * from the masker. Returns NULL when out of memory. */
static char *s_format_masked(const char *fmt, va_list ap)
{
	char *text, *line;
	size_t len;

	if (vasprintf(&text, fmt, ap) < 0)
		return NULL;
	/* A log line holds printable text only, whatever a plugin quotes (kanal__log_escape);
	 * masked after escaping, so that no escape can complete a number next to it. */
	len = strlen(text);
	line = malloc(4 * len + 1);
	if (line) {
		kanal__log_escape(line, 4 * len + 1, text, len);
		kanal_cpr_redact_inplace(line);
	}
	free(text);
	return line;
}

/* Makes `path` and its missing parents, each with mode 0700: a state folder may hold
 * personal data. Returns 0 or -1 with errno set. */
static int s_mkdir_p(const char *path)
{
	char *copy = strdup(path);
	int rc = 0;

	if (!copy)
		return -1;
	for (char *p = copy + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0700) != 0 && errno != EEXIST)
			rc = -1;
		*p = '/';
		if (rc)
			break;
	}
	if (!rc && mkdir(copy, 0700) != 0 && errno != EEXIST)
		rc = -1;
	free(copy);
	return rc;
}

/* A metric name is 1-64 characters of [a-z0-9_]. */
static bool s_metric_name_ok(const char *name)
{
	size_t n = 0;

	if (!name || !*name)
		return false;
	for (const char *p = name; *p; p++, n++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return n <= 64;
}

/* Tells the host's log (if any) that the plugin misused a service: the plugin's author
 * finds out without the call failing loudly. */
static void s_warn(kanal_ctx_t *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_warn(kanal_ctx_t *ctx, const char *fmt, ...)
{
	va_list ap;
	char *line;

	if (!ctx->ops || !ctx->ops->log || ctx->log_level < KANAL_LOG_WARN)
		return;
	va_start(ap, fmt);
	line = s_format_masked(fmt, ap);
	va_end(ap);
	if (line)
		ctx->ops->log(ctx, KANAL_LOG_WARN, line);
	free(line);
}

/* ---- names and clocks ------------------------------------------------------------------ */

const char *kanal_outcome_name(kanal_outcome_t outcome)
{
	switch (outcome) {
	case KANAL_OUTCOME_OK:
		return "ok";
	case KANAL_OUTCOME_RETRY:
		return "retry";
	case KANAL_OUTCOME_REJECT:
		return "reject";
	}
	return "unknown";
}

const char *kanal_log_level_name(kanal_log_level_t level)
{
	switch (level) {
	case KANAL_LOG_ERROR:
		return "error";
	case KANAL_LOG_WARN:
		return "warn";
	case KANAL_LOG_INFO:
		return "info";
	case KANAL_LOG_DEBUG:
		return "debug";
	}
	return "unknown";
}

int64_t kanal_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *kanal_instance_name(const kanal_ctx_t *ctx)
{
	return ctx ? ctx->name : NULL;
}

const char *kanal_state_dir(const kanal_ctx_t *ctx)
{
	return ctx ? ctx->state_dir : NULL;
}

/* ---- for hosts --------------------------------------------------------------------------- */

kanal_ctx_t *kanal__ctx_new(const char *name, const kanal_host_ops_t *ops, void *host,
			    const char *state_dir)
{
	kanal_ctx_t *ctx = calloc(1, sizeof *ctx);

	if (!ctx)
		return NULL;
	ctx->ops = ops;
	ctx->host = host;
	ctx->log_level = KANAL_LOG_INFO;
	ctx->upstream = -1;
	ctx->delivery.retry_after_ms = -1;
	ctx->name = strdup(name ? name : "");
	ctx->loop = kanal__loop_new();
	if (!ctx->name || !ctx->loop)
		goto fail;
	if (state_dir) {
		ctx->state_dir = strdup(state_dir);
		if (!ctx->state_dir || s_mkdir_p(state_dir) != 0)
			goto fail;
	}
	return ctx;
fail:
	kanal__ctx_destroy(&ctx);
	return NULL;
}

void kanal__ctx_destroy(kanal_ctx_t **ctx_p)
{
	kanal_ctx_t *ctx;
	int saved_errno = errno;

	if (!ctx_p || !*ctx_p)
		return;
	ctx = *ctx_p;
	*ctx_p = NULL;
	kanal__loop_destroy(&ctx->loop);
	while (ctx->pending) {
		kanal_pending_t *next = ctx->pending->next;
		free(ctx->pending);
		ctx->pending = next;
	}
	free(ctx->name);
	free(ctx->state_dir);
	free(ctx);
	errno = saved_errno;
}

void kanal__ctx_bind(kanal_ctx_t *ctx)
{
	ctx->thread = pthread_self();
	ctx->bound = true;
}

void kanal__ctx_begin_delivery(kanal_ctx_t *ctx, uint64_t id, const char *route, int attempt,
			       bool is_request)
{
	memset(&ctx->delivery, 0, sizeof ctx->delivery);
	ctx->delivery.active = true;
	ctx->delivery.is_request = is_request;
	ctx->delivery.route = route;
	ctx->delivery.id = id;
	ctx->delivery.attempt = attempt;
	ctx->delivery.retry_after_ms = -1;
}

void kanal__ctx_end_delivery(kanal_ctx_t *ctx)
{
	ctx->delivery.active = false;
	ctx->delivery.route = NULL; /* borrowed from the host for the call only */
}

/* ---- messages ---------------------------------------------------------------------------- */

int kanal_emit_flush(kanal_ctx_t *ctx, int64_t timeout_ms)
{
	if (!ctx)
		return KANAL_EINVAL;
	if (!s_on_thread(ctx))
		return KANAL_ETHREAD;
	if (!ctx->ops || !ctx->ops->flush)
		return 0; /* a host without a pipeline has nothing in flight */
	return ctx->ops->flush(ctx, timeout_ms);
}

int kanal_emit(kanal_ctx_t *ctx, kanal_msg_t **msg_p)
{
	kanal_msg_t *msg;
	const char *source;

	if (!msg_p)
		return KANAL_EINVAL;
	msg = *msg_p;
	*msg_p = NULL;
	if (!ctx || !msg) {
		kanal_msg_destroy(&msg);
		return KANAL_EINVAL;
	}
	if (!s_on_thread(ctx)) {
		kanal_msg_destroy(&msg);
		return KANAL_ETHREAD;
	}
	if (!ctx->ops || !ctx->ops->emit) {
		kanal_msg_destroy(&msg);
		return KANAL_ECLOSED;
	}
	source = kanal_msg_source(msg);
	if ((!source || !*source) && kanal_msg_set_attr(msg, "source", ctx->name, NULL) != 0) {
		kanal_msg_destroy(&msg);
		return KANAL_EINVALID;
	}
	return ctx->ops->emit(ctx, msg);
}

int kanal_request(kanal_ctx_t *ctx, const char *service, kanal_msg_t **request_p,
		  int64_t timeout_ms, kanal_msg_t **reply_out)
{
	kanal_msg_t *req;

	if (reply_out)
		*reply_out = NULL;
	if (!request_p)
		return KANAL_EINVAL;
	req = *request_p;
	*request_p = NULL;
	if (!ctx || !req || !service || !*service || !reply_out) {
		kanal_msg_destroy(&req);
		return KANAL_EINVAL;
	}
	if (!s_on_thread(ctx)) {
		kanal_msg_destroy(&req);
		return KANAL_ETHREAD;
	}
	if (!ctx->ops || !ctx->ops->request) {
		kanal_msg_destroy(&req);
		return KANAL_ECLOSED;
	}
	return ctx->ops->request(ctx, service, req, timeout_ms, reply_out);
}

int kanal_reply(kanal_ctx_t *ctx, const kanal_msg_t *request, kanal_msg_t **reply_p)
{
	kanal_msg_t *reply;
	int rc;

	(void)request; /* the host knows which request it delivered; see ctx->delivery */
	if (!reply_p)
		return KANAL_EINVAL;
	reply = *reply_p;
	*reply_p = NULL;
	if (!ctx || !reply) {
		kanal_msg_destroy(&reply);
		return KANAL_EINVAL;
	}
	if (!s_on_thread(ctx)) {
		kanal_msg_destroy(&reply);
		return KANAL_ETHREAD;
	}
	/* Only a request being handled takes a reply, and only one. */
	if (!ctx->delivery.active || !ctx->delivery.is_request || ctx->delivery.replied ||
	    ctx->delivery.deferred || !ctx->ops || !ctx->ops->reply) {
		kanal_msg_destroy(&reply);
		return KANAL_ESTATE;
	}
	rc = ctx->ops->reply(ctx, reply);
	if (rc == 0)
		ctx->delivery.replied = true;
	return rc;
}

bool kanal_is_request(const kanal_ctx_t *ctx)
{
	return ctx && ctx->delivery.active && ctx->delivery.is_request;
}

/* ---- deferred requests (kanal_request_defer) ------------------------------------------------ */

kanal_pending_t *kanal_request_defer(kanal_ctx_t *ctx, kanal_cancel_fn on_cancel, void *arg)
{
	kanal_pending_t *p;

	if (!ctx || !s_on_thread(ctx) || !ctx->ops || !ctx->ops->answer || !ctx->delivery.active ||
	    !ctx->delivery.is_request || ctx->delivery.replied || ctx->delivery.deferred)
		return NULL;
	if (!(p = calloc(1, sizeof *p)))
		return NULL;
	p->id = ctx->delivery.id;
	p->on_cancel = on_cancel;
	p->arg = arg;
	p->next = ctx->pending;
	ctx->pending = p;
	ctx->delivery.deferred = true;
	return p;
}

bool kanal_pending_cancelled(const kanal_pending_t *pending)
{
	return pending && __atomic_load_n(&pending->cancelled, __ATOMIC_ACQUIRE);
}

/* Takes p out of ctx's list and frees it. */
static void s_pending_free(kanal_ctx_t *ctx, kanal_pending_t *p)
{
	for (kanal_pending_t **at = &ctx->pending; *at; at = &(*at)->next) {
		if (*at == p) {
			*at = p->next;
			break;
		}
	}
	free(p);
}

/* Ends *pending_p with an answer (unless the host answered it already). Takes *pending_p
 * and *reply_p (may be NULL). */
static int s_pending_end(kanal_ctx_t *ctx, kanal_pending_t **pending_p, int outcome,
			 kanal_msg_t **reply_p, const char *error, int64_t retry_after_ms)
{
	kanal_pending_t *p = *pending_p;
	int rc = 0;

	*pending_p = NULL;
	if (p->answered) {
		rc = KANAL_ETIMEDOUT; /* its caller gave up: nothing is answered late */
		if (reply_p)
			kanal_msg_destroy(reply_p);
	} else {
		ctx->ops->answer(ctx, p->id, outcome, reply_p ? *reply_p : NULL, error ? error : "",
				 retry_after_ms);
		if (reply_p)
			*reply_p = NULL;
	}
	s_pending_free(ctx, p);
	return rc;
}

int kanal_pending_reply(kanal_ctx_t *ctx, kanal_pending_t **pending_p, kanal_msg_t **reply_p)
{
	if (!ctx || !pending_p || !*pending_p || !reply_p || !*reply_p)
		return KANAL_EINVAL;
	if (!s_on_thread(ctx))
		return KANAL_ETHREAD;
	return s_pending_end(ctx, pending_p, KANAL_OUTCOME_OK, reply_p, NULL, -1);
}

int kanal_pending_fail(kanal_ctx_t *ctx, kanal_pending_t **pending_p, kanal_outcome_t outcome,
		       int64_t retry_after_ms, const char *fmt, ...)
{
	char *text = NULL;
	int rc;

	if (!ctx || !pending_p || !*pending_p ||
	    (outcome != KANAL_OUTCOME_RETRY && outcome != KANAL_OUTCOME_REJECT))
		return KANAL_EINVAL;
	if (!s_on_thread(ctx))
		return KANAL_ETHREAD;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		text = s_format_masked(fmt, ap);
		va_end(ap);
	}
	if (text && strlen(text) >= sizeof ctx->delivery.error)
		text[sizeof ctx->delivery.error - 1] = '\0'; /* as long as kanal_set_error's */
	rc = s_pending_end(ctx, pending_p, outcome, NULL, text,
			   outcome == KANAL_OUTCOME_RETRY && retry_after_ms >= 0 ? retry_after_ms
										 : -1);
	free(text);
	return rc;
}

bool kanal__ctx_cancel(kanal_ctx_t *ctx, uint64_t id, const char *why)
{
	kanal_pending_t *p;

	for (p = ctx->pending; p; p = p->next)
		if (p->id == id && !p->answered)
			break;
	if (!p)
		return false;
	p->answered = true;
	__atomic_store_n(&p->cancelled, 1, __ATOMIC_RELEASE);
	ctx->ops->answer(ctx, id, KANAL_OUTCOME_RETRY, NULL, why, -1);
	if (p->on_cancel)
		p->on_cancel(ctx, p, p->arg);
	return true;
}

size_t kanal__ctx_pending_abandon(kanal_ctx_t *ctx, const char *why)
{
	size_t n = 0;

	/* The handles stay in the list (the plugin may still end them): freed with the ctx. */
	for (kanal_pending_t *p = ctx->pending; p; p = p->next) {
		if (p->answered)
			continue;
		p->answered = true;
		__atomic_store_n(&p->cancelled, 1, __ATOMIC_RELEASE);
		ctx->ops->answer(ctx, p->id, KANAL_OUTCOME_RETRY, NULL, why, -1);
		n++;
	}
	return n;
}

/* ---- delivery facts ------------------------------------------------------------------------ */

void kanal_set_error(kanal_ctx_t *ctx, const char *fmt, ...)
{
	va_list ap;
	char *text;

	/* From another thread this would race with the host reading the error: ignore it. */
	if (!ctx || !fmt || !s_on_thread(ctx))
		return;
	va_start(ap, fmt);
	text = s_format_masked(fmt, ap);
	va_end(ap);
	snprintf(ctx->delivery.error, sizeof ctx->delivery.error, "%s",
		 text ? text : "(out of memory formatting the error)");
	free(text);
}

void kanal_set_retry_after(kanal_ctx_t *ctx, int64_t delay_ms)
{
	if (!ctx || !s_on_thread(ctx))
		return;
	ctx->delivery.retry_after_ms = delay_ms < 0 ? -1 : delay_ms;
}

const char *kanal_delivery_route(const kanal_ctx_t *ctx)
{
	return ctx && ctx->delivery.active ? ctx->delivery.route : NULL;
}

uint64_t kanal_delivery_id(const kanal_ctx_t *ctx)
{
	return ctx && ctx->delivery.active ? ctx->delivery.id : 0;
}

int kanal_delivery_attempt(const kanal_ctx_t *ctx)
{
	return ctx && ctx->delivery.active ? ctx->delivery.attempt : 0;
}

/* ---- timers and fd watches ------------------------------------------------------------------ */

int64_t kanal_timer_add(kanal_ctx_t *ctx, int64_t after_ms, int64_t interval_ms, kanal_timer_fn fn,
			void *arg)
{
	if (!ctx)
		return KANAL_EINVAL;
	if (!s_on_thread(ctx))
		return KANAL_ETHREAD;
	if (!ctx->loop)
		return KANAL_ESTATE;
	return kanal__loop_timer_add(ctx->loop, ctx, after_ms, interval_ms, fn, arg);
}

int kanal_timer_cancel(kanal_ctx_t *ctx, int64_t timer_id)
{
	if (!ctx)
		return KANAL_EINVAL;
	if (!s_on_thread(ctx))
		return KANAL_ETHREAD;
	return kanal__loop_timer_cancel(ctx->loop, timer_id);
}

int kanal_fd_watch(kanal_ctx_t *ctx, int fd, int events, kanal_fd_fn fn, void *arg)
{
	if (!ctx)
		return KANAL_EINVAL;
	if (!s_on_thread(ctx))
		return KANAL_ETHREAD;
	if (!ctx->loop)
		return KANAL_ESTATE;
	return kanal__loop_fd_watch(ctx->loop, ctx, fd, events, fn, arg);
}

int kanal_fd_unwatch(kanal_ctx_t *ctx, int fd)
{
	if (!ctx)
		return KANAL_EINVAL;
	if (!s_on_thread(ctx))
		return KANAL_ETHREAD;
	return kanal__loop_fd_unwatch(ctx->loop, fd);
}

/* ---- logging and metrics --------------------------------------------------------------------- */

void kanal_log(kanal_ctx_t *ctx, kanal_log_level_t level, const char *fmt, ...)
{
	va_list ap;
	char *line;

	if (!ctx || !fmt || !s_on_thread(ctx))
		return;
	/* Lines the host would drop are not even formatted. */
	if ((int)level < KANAL_LOG_ERROR || level > ctx->log_level)
		return;
	if (!ctx->ops || !ctx->ops->log)
		return;
	va_start(ap, fmt);
	line = s_format_masked(fmt, ap);
	va_end(ap);
	if (line)
		ctx->ops->log(ctx, level, line);
	free(line);
}

void kanal_metric_add(kanal_ctx_t *ctx, const char *name, int64_t delta)
{
	if (!ctx || !s_on_thread(ctx))
		return;
	if (!s_metric_name_ok(name)) {
		s_warn(ctx, "metric name '%s' is invalid (use 1-64 of a-z, 0-9 and _); ignored",
		       name ? name : "(null)");
		return;
	}
	if (ctx->ops && ctx->ops->metric_add)
		ctx->ops->metric_add(ctx, name, delta);
}

void kanal_metric_set(kanal_ctx_t *ctx, const char *name, double value)
{
	if (!ctx || !s_on_thread(ctx))
		return;
	if (!s_metric_name_ok(name)) {
		s_warn(ctx, "metric name '%s' is invalid (use 1-64 of a-z, 0-9 and _); ignored",
		       name ? name : "(null)");
		return;
	}
	if (ctx->ops && ctx->ops->metric_set)
		ctx->ops->metric_set(ctx, name, value);
}

void kanal_upstream_report(kanal_ctx_t *ctx, bool up)
{
	if (!ctx || !s_on_thread(ctx) || ctx->upstream == (int)up)
		return;
	ctx->upstream = up;
	if (ctx->ops && ctx->ops->upstream)
		ctx->ops->upstream(ctx, up);
}
