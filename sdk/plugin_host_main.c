/*
 * sdk/plugin_host_main.c — kanal-plugin-host: runs one plugin instance in a process of its
 * own, for an instance that kanald.yaml marks `isolation: process` (docs/design/isolation.md).
 *
 * kanald starts it (never a person) with the plugin's path, the instance name, the endpoint
 * of the instance's proxy thread and kanald's pid, and its routing id in the environment.
 * It connects, says HELLO, receives INIT (the instance's options exactly as kanald.yaml gave
 * them, which kanald has already validated), loads the plugin the same way kanald would,
 * runs init and start, and then drives the plugin's loop: deliveries in, outcomes out, and
 * every host service — emit, flush, request, log, metrics — forwarded to the proxy, which
 * performs it with kanald's real services. Timers and fd watches run here, in the plugin's
 * own loop. Whatever happens to this process, kanald notices (it holds a pidfd, a deadline
 * on every delivery and a ping), kills it if need be and starts another.
 *
 * The process dies with kanald: PR_SET_PDEATHSIG asks the kernel to kill it when the
 * thread that started it (the proxy) goes away, and the loop checks the parent pid too.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <zmq.h>

#include "blob_store.h"
#include "host.h"
#include "plugin_wire.h"
#include "version.h"

/* How long to wait for INIT after HELLO, and how often an idle loop checks its parent. */
#define INIT_WAIT_MS 30000
#define PARENT_CHECK_MS 1000

/* A message from kanald waiting its turn. The proxy bounds how many there can be: a few
 * deliveries (its pipeline), a ping, a stop. */
typedef struct inbox_item {
	kanal_wire_t w;
	struct inbox_item *next;
} inbox_item_t;

typedef struct phost {
	const char *instance;
	pid_t parent;
	void *zctx;
	void *sock;
	kanal_loaded_t *plugin;
	kanal_config_t *config;
	kanal_ctx_t *ctx;
	kanal__blob_store_t *blobs; /* kanald's blob store folder, opened here too */
	void *state;
	bool inited;
	bool running;                     /* start is being called or has succeeded */
	bool stopping;                    /* STOP handled: leave the loop */
	size_t max_event_bytes;           /* larger events would not reach kanald (INIT) */
	kanal_wire_progress_t *progress;  /* shared with kanald (plugin_wire.h), or NULL */
	kanal_msg_t *pending_reply;       /* kanal_reply during the current request */
	inbox_item_t *inbox, *inbox_tail; /* received, not yet handled, in order */
	size_t stops_waiting;             /* STOPs in the inbox */
} phost_t;

/* Reports a problem of the host itself on stderr, which is kanald's log. */
static void s_say(const phost_t *ph, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_say(const phost_t *ph, const char *fmt, ...)
{
	char text[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	kanal_cpr_redact_inplace(text);
	fprintf(stderr, "kanal-plugin-host[%d] %s: %s\n", (int)getpid(),
		ph->instance ? ph->instance : "?", text);
}

/* kanald is gone when our parent changed (we were re-parented): nothing to report to. */
static void s_check_parent(const phost_t *ph)
{
	if (getppid() != ph->parent)
		_exit(1);
}

/* ---- talking to the proxy ------------------------------------------------------------------ */

/* Keeps a message for the main loop, after those already kept; takes *w. */
static void s_inbox_push(phost_t *ph, kanal_wire_t *w)
{
	inbox_item_t *it = calloc(1, sizeof *it);

	if (!it) {
		/* Unanswered, it will look like a hang, and kanald will start a new host. */
		s_say(ph, "out of memory: dropping a '%c' message from kanald", w->kind);
		kanal__wire_clear(w);
		return;
	}
	it->w = *w;
	memset(w, 0, sizeof *w);
	if (it->w.kind == KANAL_WIRE_STOP)
		ph->stops_waiting++;
	if (ph->inbox_tail)
		ph->inbox_tail->next = it;
	else
		ph->inbox = it;
	ph->inbox_tail = it;
}

/* Takes the oldest kept message into *w; false when there is none. */
static bool s_inbox_pop(phost_t *ph, kanal_wire_t *w)
{
	inbox_item_t *it = ph->inbox;

	if (!it)
		return false;
	ph->inbox = it->next;
	if (!ph->inbox)
		ph->inbox_tail = NULL;
	*w = it->w;
	free(it);
	if (w->kind == KANAL_WIRE_STOP)
		ph->stops_waiting--;
	return true;
}

/* Moves everything waiting on the socket into the inbox. Returns 0, or KANAL_ECLOSED /
 * KANAL_EIO when the socket failed. */
static int s_inbox_fill(phost_t *ph)
{
	kanal_wire_t w;
	int rc;

	while ((rc = kanal__wire_recv(ph->sock, false, &w)) != 0) {
		if (rc == KANAL_EPARSE)
			continue;
		if (rc < 0)
			return rc;
		s_inbox_push(ph, &w);
	}
	return 0;
}

/* Waits for the ANSWER to a call just sent, keeping anything else for the main loop —
 * pings too: a call kanald never answers must look like the hang it is. Returns 0 with the
 * answer in *ans, or KANAL_ECLOSED when the socket fails (the process is then about to be
 * replaced anyway). */
static int s_wait_answer(phost_t *ph, kanal_wire_t *ans)
{
	for (;;) {
		zmq_pollitem_t item = { ph->sock, 0, ZMQ_POLLIN, 0 };
		kanal_wire_t w;
		int rc = kanal__wire_recv(ph->sock, false, &w);

		if (rc == 0) {
			if (zmq_poll(&item, 1, PARENT_CHECK_MS) < 0 && errno != EINTR)
				return KANAL_ECLOSED;
			s_check_parent(ph);
			continue;
		}
		if (rc == KANAL_EPARSE)
			continue;
		if (rc < 0)
			return KANAL_ECLOSED;
		if (w.kind == KANAL_WIRE_ANSWER) {
			*ans = w;
			return 0;
		}
		s_inbox_push(ph, &w);
	}
}

/* The status an ANSWER carries: 0 or a negative code (anything else is an I/O error). */
static int s_answer_status(const kanal_wire_t *ans)
{
	json_int_t st = json_integer_value(json_object_get(ans->head, "status"));

	return st <= 0 && st >= -1000 ? (int)st : KANAL_EIO;
}

/* Sends a call and returns the status of its answer; the answer itself goes to *ans when
 * ans is not NULL (the caller clears it). Ownership: steals head; borrows event. */
static int s_call(phost_t *ph, char kind, json_t *head, const kanal_msg_t *event, kanal_wire_t *ans)
{
	kanal_wire_t got;
	int rc = kanal__wire_send(ph->sock, NULL, kind, head, event);

	if (rc < 0)
		return rc;
	rc = s_wait_answer(ph, &got);
	if (rc < 0)
		return rc;
	rc = s_answer_status(&got);
	if (ans)
		*ans = got;
	else
		kanal__wire_clear(&got);
	return rc;
}

/* ---- host services, forwarded ------------------------------------------------------------ */

/* True when msg is too large to send to kanald (its socket would drop it). */
static bool s_too_big(const phost_t *ph, const kanal_msg_t *msg)
{
	return ph->max_event_bytes && kanal_msg_size(msg) > ph->max_event_bytes;
}

static int s_op_emit(kanal_ctx_t *ctx, kanal_msg_t *msg)
{
	phost_t *ph = ctx->host;
	int rc;

	if (!ph->running) {
		kanal_msg_destroy(&msg); /* from init: nothing runs yet, as in kanald */
		return KANAL_ESTATE;
	}
	if (s_too_big(ph, msg)) {
		kanal_msg_destroy(&msg);
		return KANAL_ETOOBIG;
	}
	rc = s_call(ph, KANAL_WIRE_EMIT, NULL, msg, NULL);
	kanal_msg_destroy(&msg);
	return rc;
}

static int s_op_flush(kanal_ctx_t *ctx, int64_t timeout_ms)
{
	phost_t *ph = ctx->host;

	if (!ph->running)
		return KANAL_ESTATE;
	return s_call(ph, KANAL_WIRE_FLUSH,
		      json_pack("{s:I}", "timeout_ms", (json_int_t)timeout_ms), NULL, NULL);
}

static int s_op_request(kanal_ctx_t *ctx, const char *service, kanal_msg_t *req, int64_t timeout_ms,
			kanal_msg_t **reply_out)
{
	phost_t *ph = ctx->host;
	kanal_wire_t ans = { 0 };
	int rc;

	*reply_out = NULL;
	if (!ph->running) {
		kanal_msg_destroy(&req);
		return KANAL_ESTATE;
	}
	if (s_too_big(ph, req)) {
		kanal_msg_destroy(&req);
		return KANAL_ETOOBIG;
	}
	rc = s_call(
		ph, KANAL_WIRE_REQUEST,
		json_pack("{s:s, s:I}", "service", service, "timeout_ms", (json_int_t)timeout_ms),
		req, &ans);
	kanal_msg_destroy(&req);
	if (rc == 0 && ans.event && kanal__wire_event(&ans, ans.event_len, reply_out, NULL) < 0)
		rc = KANAL_EIO;
	kanal__wire_clear(&ans);
	return rc;
}

static int s_op_reply(kanal_ctx_t *ctx, kanal_msg_t *reply)
{
	phost_t *ph = ctx->host;

	kanal_msg_destroy(&ph->pending_reply);
	ph->pending_reply = reply;
	return 0;
}

static void s_op_log(kanal_ctx_t *ctx, kanal_log_level_t level, const char *line)
{
	phost_t *ph = ctx->host;

	kanal__wire_send(ph->sock, NULL, KANAL_WIRE_LOG,
			 json_pack("{s:i, s:s}", "level", (int)level, "line", line), NULL);
}

static void s_op_metric_add(kanal_ctx_t *ctx, const char *name, int64_t delta)
{
	phost_t *ph = ctx->host;

	kanal__wire_send(ph->sock, NULL, KANAL_WIRE_METRIC,
			 json_pack("{s:s, s:I}", "name", name, "add", (json_int_t)delta), NULL);
}

static void s_op_metric_set(kanal_ctx_t *ctx, const char *name, double value)
{
	phost_t *ph = ctx->host;

	kanal__wire_send(ph->sock, NULL, KANAL_WIRE_METRIC,
			 json_pack("{s:s, s:f}", "name", name, "set", value), NULL);
}

static void s_op_upstream(kanal_ctx_t *ctx, bool up)
{
	phost_t *ph = ctx->host;

	kanal__wire_send(ph->sock, NULL, KANAL_WIRE_UPSTREAM, json_pack("{s:b}", "up", up), NULL);
}

static const kanal_host_ops_t s_ops = {
	.emit = s_op_emit,
	.flush = s_op_flush,
	.request = s_op_request,
	.reply = s_op_reply,
	.log = s_op_log,
	.metric_add = s_op_metric_add,
	.metric_set = s_op_metric_set,
	.upstream = s_op_upstream,
};

/* ---- start-up ------------------------------------------------------------------------------ */

/* Turns INIT's "options" array back into the records kanald read from kanald.yaml.
 * Returns a new array (strings borrowed from `options`) or NULL when out of memory. */
static kanal_optval_t *s_optvals(json_t *options, size_t *n_out)
{
	size_t n = json_array_size(options), i;
	kanal_optval_t *v = calloc(n ? n : 1, sizeof *v);
	json_t *o;

	*n_out = 0;
	if (!v)
		return NULL;
	json_array_foreach(options, i, o)
	{
		json_t *items = json_object_get(o, "items");
		v[i].key = json_string_value(json_object_get(o, "key"));
		v[i].line = (int)json_integer_value(json_object_get(o, "line"));
		v[i].column = (int)json_integer_value(json_object_get(o, "column"));
		if (json_is_array(items)) {
			size_t k, m = json_array_size(items);
			json_t *it;
			v[i].items = calloc(m ? m : 1, sizeof *v[i].items);
			if (!v[i].items)
				goto fail;
			json_array_foreach(items, k, it) v[i].items[k] =
				json_string_value(it) ? json_string_value(it) : "";
			v[i].n_items = m;
			v[i].is_list = true;
		} else {
			v[i].value = json_string_value(json_object_get(o, "value"));
		}
		if (!v[i].key)
			v[i].key = "";
		if (!v[i].is_list && !v[i].value)
			v[i].value = "";
	}
	*n_out = n;
	return v;
fail:
	for (i = 0; i < n; i++)
		free((void *)v[i].items);
	free(v);
	return NULL;
}

static void s_optvals_free(kanal_optval_t *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free((void *)v[i].items);
	free(v);
}

/* Waits for INIT. Returns 0 with it in *init, or -1 after INIT_WAIT_MS or a socket error. */
static int s_wait_init(phost_t *ph, kanal_wire_t *init)
{
	int64_t deadline = kanal_now_ms() + INIT_WAIT_MS;

	while (kanal_now_ms() < deadline) {
		zmq_pollitem_t item = { ph->sock, 0, ZMQ_POLLIN, 0 };
		int rc = kanal__wire_recv(ph->sock, false, init);

		if (rc == 1 && init->kind == KANAL_WIRE_INIT)
			return 0;
		if (rc == 1) {
			kanal__wire_clear(init);
			continue;
		}
		if (rc < 0 && rc != KANAL_EPARSE)
			return -1;
		if (zmq_poll(&item, 1, PARENT_CHECK_MS) < 0 && errno != EINTR)
			return -1;
		s_check_parent(ph);
	}
	return -1;
}

/* Loads the plugin, builds its config and runs init and start, as INIT says. Returns 0, or
 * a negative code with the reason in why (masked). */
static int s_start_plugin(phost_t *ph, const json_t *head, char *why, size_t why_size,
			  const char *plugin_path)
{
	const char *file = json_string_value(json_object_get(head, "file"));
	const char *state_dir = json_string_value(json_object_get(head, "state_dir"));
	int line = (int)json_integer_value(json_object_get(head, "line"));
	int column = (int)json_integer_value(json_object_get(head, "column"));
	kanal_optval_t *given;
	kanal_error_t err;
	size_t n_given;
	int rc;

	kanal_error_clear(&err);
	rc = kanal__plugin_open(plugin_path, &ph->plugin, &err);
	if (rc < 0) {
		snprintf(why, why_size, "%s", err.text);
		return rc;
	}
	given = s_optvals(json_object_get(head, "options"), &n_given);
	if (!given) {
		snprintf(why, why_size, "out of memory reading the options");
		return KANAL_ENOMEM;
	}
	kanal_error_clear(&err);
	rc = kanal__config_build(ph->plugin->options, given, n_given, file, ph->instance, line,
				 column, &ph->config, &err);
	s_optvals_free(given, n_given);
	if (rc < 0) {
		kanal_error_format(&err, why, why_size);
		return rc;
	}
	ph->ctx = kanal__ctx_new(ph->instance, &s_ops, ph, state_dir);
	if (!ph->ctx) {
		snprintf(why, why_size, "cannot create its state folder %s: %s",
			 state_dir ? state_dir : "(none)", strerror(errno));
		return KANAL_EIO;
	}
	kanal__ctx_bind(ph->ctx);
	if (json_is_string(json_object_get(head, "blob_dir"))) {
		kanal_error_clear(&err);
		ph->blobs = kanal__blob_store_open_dir(
			json_string_value(json_object_get(head, "blob_dir")),
			json_integer_value(json_object_get(head, "max_blob_bytes")),
			json_integer_value(json_object_get(head, "blob_store_bytes")), &err);
		if (!ph->blobs) {
			snprintf(why, why_size, "%s", err.text);
			return KANAL_EIO;
		}
		kanal__ctx_set_blob_store(ph->ctx, ph->blobs);
	}
	ph->ctx->log_level =
		(kanal_log_level_t)json_integer_value(json_object_get(head, "log_level"));
	ph->max_event_bytes = (size_t)json_integer_value(json_object_get(head, "max_event_bytes"));
	rc = ph->plugin->desc->init(ph->ctx, ph->config, &ph->state);
	if (rc != 0) {
		snprintf(why, why_size, "init failed: %s",
			 ph->ctx->delivery.error[0] ? ph->ctx->delivery.error
						    : kanal_strerror(rc < 0 ? rc : KANAL_EPLUGIN));
		return rc < 0 ? rc : KANAL_EPLUGIN;
	}
	ph->inited = true;
	ph->running = true;
	rc = ph->plugin->desc->start ? ph->plugin->desc->start(ph->ctx, ph->state) : 0;
	if (rc != 0) {
		/* As kanald does for a thread: stop undoes a half-done start, then destroy. */
		snprintf(why, why_size, "start failed: %s",
			 ph->ctx->delivery.error[0] ? ph->ctx->delivery.error : "start failed");
		if (ph->plugin->desc->stop)
			ph->plugin->desc->stop(ph->ctx, ph->state, kanal_now_ms() + 5000);
		ph->running = false;
		kanal__loop_clear(ph->ctx->loop);
		return rc < 0 ? rc : KANAL_EPLUGIN;
	}
	return 0;
}

/* ---- the loop ------------------------------------------------------------------------------ */

/* Records in the progress page that delivery id is finished with `outcome`, then that no
 * delivery is running — before the OUTCOME message, which may never leave. */
static void s_progress_done(phost_t *ph, uint64_t id, int outcome)
{
	kanal_wire_progress_t *pg = ph->progress;
	uint64_t n;

	if (!pg)
		return;
	n = __atomic_load_n(&pg->done_count, __ATOMIC_RELAXED);
	__atomic_store_n(&pg->done_id[n % KANAL_WIRE_DONE_RING], id, __ATOMIC_RELAXED);
	__atomic_store_n(&pg->done_outcome[n % KANAL_WIRE_DONE_RING], outcome, __ATOMIC_RELAXED);
	__atomic_store_n(&pg->done_count, n + 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&pg->running, 0, __ATOMIC_SEQ_CST);
}

/* Runs one delivery through the plugin and sends its OUTCOME. */
static void s_deliver(phost_t *ph, const kanal_wire_t *w)
{
	const kanal_plugin_t *p = ph->plugin->desc;
	const json_t *h = w->head;
	bool is_request = json_is_true(json_object_get(h, "is_request"));
	uint64_t id = (uint64_t)json_integer_value(json_object_get(h, "id"));
	kanal_msg_t *msg = NULL, *reply = NULL;
	kanal_error_t err;
	int outcome;

	kanal__ctx_begin_delivery(ph->ctx, id, json_string_value(json_object_get(h, "route")),
				  (int)json_integer_value(json_object_get(h, "attempt")),
				  is_request);
	kanal_error_clear(&err);
	if (ph->stops_waiting) {
		/* kanald is stopping and has given up on what is not done: the journal keeps
		 * it, as for a plugin on a thread. */
		kanal_set_error(ph->ctx, "kanald stopped before the plugin got to it");
		outcome = KANAL_OUTCOME_RETRY;
	} else if (kanal__wire_event(w, w->event_len, &msg, &err) < 0) {
		kanal_set_error(ph->ctx, "the plugin host cannot read the event: %s", err.text);
		outcome = KANAL_OUTCOME_REJECT;
	} else if (p->on_message) {
		/* Written before the plugin runs, synchronously: if it dies in there, kanald
		 * knows which event it was, whatever was still unsent. */
		if (ph->progress)
			__atomic_store_n(&ph->progress->running, id, __ATOMIC_SEQ_CST);
		outcome = (int)p->on_message(ph->ctx, ph->state, msg);
	} else {
		kanal_set_error(ph->ctx, "plugin '%s' takes no deliveries (it has no on_message)",
				p->name);
		outcome = KANAL_OUTCOME_REJECT;
	}
	if (outcome != KANAL_OUTCOME_OK && outcome != KANAL_OUTCOME_RETRY &&
	    outcome != KANAL_OUTCOME_REJECT) {
		kanal_set_error(ph->ctx, "plugin returned an invalid outcome (%d)", outcome);
		outcome = KANAL_OUTCOME_REJECT;
	}
	if (is_request && outcome == KANAL_OUTCOME_OK) {
		reply = ph->pending_reply;
		ph->pending_reply = NULL;
		if (reply && s_too_big(ph, reply)) {
			kanal_msg_destroy(&reply);
			kanal_set_error(ph->ctx, "the reply is larger than %zu bytes",
					ph->max_event_bytes);
			outcome = KANAL_OUTCOME_REJECT;
		}
	}
	kanal_msg_destroy(&ph->pending_reply);
	kanal__ctx_end_delivery(ph->ctx);
	s_progress_done(ph, id, outcome);
	kanal__wire_send(ph->sock, NULL, KANAL_WIRE_OUTCOME,
			 json_pack("{s:I, s:i, s:s, s:I}", "id", (json_int_t)id, "outcome", outcome,
				   "error", ph->ctx->delivery.error, "retry_after_ms",
				   (json_int_t)ph->ctx->delivery.retry_after_ms),
			 reply);
	kanal_msg_destroy(&reply);
	kanal_msg_destroy(&msg);
}

/* Stops the plugin by the deadline STOP gives, destroys it and says BYE. */
static void s_stop(phost_t *ph, const kanal_wire_t *w)
{
	int64_t within = json_integer_value(json_object_get(w->head, "within_ms"));
	const kanal_plugin_t *p = ph->plugin->desc;

	if (within <= 0)
		within = 1000;
	if (p->stop)
		p->stop(ph->ctx, ph->state, kanal_now_ms() + within);
	ph->running = false;
	kanal__loop_clear(ph->ctx->loop);
	if (p->destroy)
		p->destroy(ph->state);
	ph->inited = false;
	kanal__wire_send(ph->sock, NULL, KANAL_WIRE_BYE, NULL, NULL);
	ph->stopping = true;
}

static void s_handle(phost_t *ph, const kanal_wire_t *w)
{
	switch (w->kind) {
	case KANAL_WIRE_DELIVER:
		s_deliver(ph, w);
		break;
	case KANAL_WIRE_STOP:
		s_stop(ph, w);
		break;
	case KANAL_WIRE_PING:
		kanal__wire_send(ph->sock, NULL, KANAL_WIRE_PING, NULL, NULL);
		break;
	default:
		s_say(ph, "ignoring an unexpected '%c' message from kanald", w->kind);
		break;
	}
}

/* Drives the plugin until STOP, or until kanald goes away: timers and fd watches through
 * the loop, then everything kanald sent, in order — read ahead first, so that a delivery
 * queued before a STOP knows kanald is stopping. */
static void s_run(phost_t *ph)
{
	while (!ph->stopping) {
		kanal_wire_t w;
		int rc;

		/* Without waiting when something is already in the inbox (kept while a call
		 * waited for its answer). */
		rc = kanal__loop_run_once(ph->ctx->loop, ph->sock, ph->inbox ? 0 : PARENT_CHECK_MS);
		if (rc == KANAL_ECLOSED || rc == KANAL_EIO)
			return;
		s_check_parent(ph);
		for (;;) {
			if (s_inbox_fill(ph) < 0)
				return;
			if (ph->stopping || !s_inbox_pop(ph, &w))
				break;
			s_handle(ph, &w);
			kanal__wire_clear(&w);
		}
	}
}

/* ---- main ---------------------------------------------------------------------------------- */

static void s_usage(FILE *out)
{
	fprintf(out,
		"usage: kanal-plugin-host --endpoint ipc://PATH --plugin PLUGIN.so --instance "
		"NAME\n"
		"                         --parent PID [--progress-fd FD]\n"
		"\n"
		"Runs one plugin instance for kanald (isolation: process). kanald starts it, with\n"
		"its routing id in $" KANAL_WIRE_TOKEN_ENV
		"; it is not meant to be run by hand.\n");
}

static void s_cleanup(phost_t *ph)
{
	kanal_wire_t w;

	while (s_inbox_pop(ph, &w))
		kanal__wire_clear(&w);
	kanal_msg_destroy(&ph->pending_reply);
	if (ph->inited && ph->plugin->desc->destroy)
		ph->plugin->desc->destroy(ph->state);
	kanal__ctx_destroy(&ph->ctx);
	kanal__blob_store_destroy(&ph->blobs);
	kanal__config_destroy(&ph->config);
	kanal__plugin_close(&ph->plugin);
	if (ph->sock)
		zmq_close(ph->sock);
	if (ph->zctx)
		zmq_ctx_term(ph->zctx);
	if (ph->progress)
		munmap(ph->progress, sizeof *ph->progress);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "endpoint", required_argument, NULL, 'e' },
		{ "plugin", required_argument, NULL, 'p' },
		{ "instance", required_argument, NULL, 'i' },
		{ "parent", required_argument, NULL, 'P' },
		{ "progress-fd", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *endpoint = NULL, *plugin_path = NULL, *token_env;
	char token[64], why[600];
	phost_t ph = { 0 };
	kanal_wire_t init = { 0 };
	int c, rc, linger = 2000, zero = 0, progress_fd = -1;

	while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (c) {
		case 'e':
			endpoint = optarg;
			break;
		case 'p':
			plugin_path = optarg;
			break;
		case 'i':
			ph.instance = optarg;
			break;
		case 'P':
			ph.parent = (pid_t)atoi(optarg);
			break;
		case 'f':
			progress_fd = atoi(optarg);
			break;
		case 'h':
			s_usage(stdout);
			return 0;
		case 'V':
			kanal__version_print(stdout, "kanal-plugin-host");
			return 0;
		default:
			s_usage(stderr);
			return 2;
		}
	}
	token_env = getenv(KANAL_WIRE_TOKEN_ENV);
	if (!endpoint || !plugin_path || !ph.instance || ph.parent <= 0 || !token_env ||
	    !*token_env || strlen(token_env) >= sizeof token) {
		s_usage(stderr);
		return 2;
	}
	/* The plugin need not see the token. */
	snprintf(token, sizeof token, "%s", token_env);
	unsetenv(KANAL_WIRE_TOKEN_ENV);

	/* Die with kanald; if it died before this line, the parent is already someone else. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	s_check_parent(&ph);
	signal(SIGPIPE, SIG_IGN); /* as in kanald: a plugin's broken socket is an error code */
	if (progress_fd >= 0) {
		void *p = mmap(NULL, sizeof *ph.progress, PROT_READ | PROT_WRITE, MAP_SHARED,
			       progress_fd, 0);
		if (p != MAP_FAILED)
			ph.progress = p;
		close(progress_fd); /* the mapping stays; the plugin need not see the fd */
	}

	ph.zctx = zmq_ctx_new();
	ph.sock = ph.zctx ? zmq_socket(ph.zctx, ZMQ_DEALER) : NULL;
	if (!ph.sock) {
		s_say(&ph, "cannot create its ZeroMQ socket: %s", zmq_strerror(errno));
		rc = 1;
		goto out;
	}
	zmq_setsockopt(ph.sock, ZMQ_ROUTING_ID, token, strlen(token));
	zmq_setsockopt(ph.sock, ZMQ_SNDHWM, &zero, sizeof zero);
	zmq_setsockopt(ph.sock, ZMQ_RCVHWM, &zero, sizeof zero);
	/* The last OUTCOME or BYE must leave before the process does. */
	zmq_setsockopt(ph.sock, ZMQ_LINGER, &linger, sizeof linger);
	if (zmq_connect(ph.sock, endpoint) != 0) {
		s_say(&ph, "cannot connect to %s: %s", endpoint, zmq_strerror(errno));
		rc = 1;
		goto out;
	}
	kanal__wire_send(ph.sock, NULL, KANAL_WIRE_HELLO, json_pack("{s:i}", "pid", (int)getpid()),
			 NULL);
	if (s_wait_init(&ph, &init) < 0) {
		s_say(&ph, "kanald sent no INIT within %d ms; exiting", INIT_WAIT_MS);
		rc = 1;
		goto out;
	}
	why[0] = '\0';
	rc = s_start_plugin(&ph, init.head, why, sizeof why, plugin_path);
	kanal__wire_clear(&init);
	if (rc < 0) {
		kanal_cpr_redact_inplace(why);
		kanal__wire_send(ph.sock, NULL, KANAL_WIRE_STARTED,
				 json_pack("{s:i, s:s}", "status", rc, "error", why), NULL);
		rc = 1;
		goto out;
	}
	kanal__wire_send(ph.sock, NULL, KANAL_WIRE_STARTED,
			 json_pack("{s:i, s:s, s:b}", "status", 0, "error", "", "progress",
				   ph.progress != NULL),
			 NULL);
	s_run(&ph);
	rc = 0;
out:
	s_cleanup(&ph);
	return rc;
}
