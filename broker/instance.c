/*
 * broker/instance.c — plugin instances: load and init on the main thread, then run each on
 * its own thread that drives the plugin's loop and talks to the router over inproc
 * ZeroMQ (see bus.h). This file is also where the host services of kanal/plugin.h are
 * implemented for kanald: emit with its pipelined window, request/reply, log, metrics.
 *
 * An instance with `isolation: process` is loaded and its options checked here too, but
 * its plugin is not initialised in kanald: its thread runs the proxy of isolation.c, which
 * starts the plugin in a kanal-plugin-host process and uses these same host services on
 * the plugin's behalf.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "acl.h"
#include "bus.h"
#include "instance.h"
#include "isolation.h"
#include "log.h"
#include "msg_int.h"
#include "ratelimit.h"

/* The batches of the instance thread (one instance per thread, so thread-local): emits
 * not yet sent to the router, and outcomes not yet reported. Both go out in one frame when
 * full or when the thread is about to wait, and an outcome of a slow on_message at once;
 * see docs/design/bus-batching.md. */
static __thread bus_emit_t t_emits;
static __thread bus_results_t t_results;

static int64_t s_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int s_send(void *sock, const void *frame, size_t len)
{
	while (zmq_send(sock, frame, len, 0) < 0) {
		if (errno != EINTR)
			return KANAL_EIO;
	}
	return 0;
}

/* Receives one frame into buf (bytes beyond size are dropped). Returns its length, or -1
 * with errno EAGAIN when nothing is there and flags has ZMQ_DONTWAIT. */
static int s_recv(void *sock, void *buf, size_t size, int flags)
{
	int n;

	do {
		n = zmq_recv(sock, buf, size, flags);
	} while (n < 0 && errno == EINTR);
	return n;
}

/* Handles one frame that arrived on the emit socket while the instance waits for something
 * else: acks open the window, stale replies (their request timed out) are destroyed. */
static void s_on_emit_frame(instance_t *inst, const unsigned char *buf, int n)
{
	if (n <= 0)
		return;
	if (buf[0] == BUS_ACK && n >= (int)sizeof(bus_ack_t)) {
		bus_ack_t ack;
		memcpy(&ack, buf, sizeof ack);
		inst->emit_outstanding -= (int)ack.count;
		if (inst->emit_outstanding < 0)
			inst->emit_outstanding = 0;
		if (ack.status < 0)
			log_warn(inst->name, "the router refused an emitted event: %s",
				 kanal_strerror(ack.status));
	} else if (buf[0] == BUS_REPLY && n >= (int)sizeof(bus_reply_t)) {
		bus_reply_t rep;
		memcpy(&rep, buf, sizeof rep);
		kanal_msg_destroy(&rep.reply);
	}
}

/* Reads what is waiting on the emit socket without blocking. */
static void s_drain_emit(instance_t *inst)
{
	unsigned char buf[sizeof(bus_request_t)];
	int n;

	while ((n = s_recv(inst->emit_sock, buf, sizeof buf, ZMQ_DONTWAIT)) >= 0)
		s_on_emit_frame(inst, buf, n);
}

/* Sends the emits held in this thread's batch, in emit order. They were already counted
 * in emit_outstanding and the plugin was told they were taken; a send fails only when
 * kanald's ZeroMQ context is ending, and then they are lost with the process. */
static void s_send_emits(instance_t *inst)
{
	if (!t_emits.count)
		return;
	t_emits.cmd = BUS_EMIT;
	if (s_send(inst->emit_sock, &t_emits, bus_emit_len(t_emits.count)) < 0) {
		log_error(inst->name, "cannot hand %u emitted events to the router: %s",
			  (unsigned)t_emits.count, zmq_strerror(zmq_errno()));
		for (uint32_t i = 0; i < t_emits.count; i++)
			kanal_msg_destroy(&t_emits.msgs[i]);
	}
	t_emits.count = 0;
}

/* Sends the outcomes held in this thread's batch. */
static void s_send_results(instance_t *inst)
{
	if (!t_results.count)
		return;
	t_results.cmd = BUS_RESULTS;
	if (s_send(inst->deliver_sock, &t_results, bus_results_len(t_results.count)) < 0) {
		for (uint32_t i = 0; i < t_results.count; i++) {
			kanal_msg_destroy(&t_results.items[i].reply);
			free(t_results.items[i].error);
		}
	}
	t_results.count = 0;
}

/* Waits up to wait_ms for one frame on the emit socket; returns its length or -1. */
static int s_wait_emit(instance_t *inst, void *buf, size_t size, int64_t wait_ms)
{
	zmq_pollitem_t item = { inst->emit_sock, 0, ZMQ_POLLIN, 0 };
	int rc;

	if (wait_ms < 0)
		wait_ms = 0;
	rc = zmq_poll(&item, 1, (long)wait_ms);
	if (rc <= 0)
		return -1;
	return s_recv(inst->emit_sock, buf, size, ZMQ_DONTWAIT);
}

/* Refuses an emit the instance's acl does not allow: logged, counted, and reported to the
 * router as an `acl.denied` notice, which it publishes on the event stream. `what` is
 * "emit" (the type is not in acl.emit) or "source" (the source is not in acl.sources). */
static void s_acl_refused(instance_t *inst, const kanal_msg_t *msg, const char *what)
{
	bool source = !strcmp(what, "source");
	const char *type = source ? kanal_msg_source(msg) : kanal_msg_type(msg);
	bus_notice_t nt;
	json_t *extra;
	char *text;

	if (!type)
		type = "";
	__atomic_add_fetch(&inst->acl_denied, 1, __ATOMIC_RELAXED);
	log_warn(inst->name,
		 "refused an emitted event of %s '%s': not in the instance's "
		 "acl.%s list",
		 source ? "source" : "type", type, source ? "sources" : "emit");
	/* The notice has a fixed size: a type too long for it is cut, not dropped. */
	extra = acl_denied_extra(inst->name, "instance", what, type);
	text = extra ? json_dumps(extra, JSON_COMPACT) : NULL;
	if (text && strlen(text) >= sizeof nt.detail) {
		char cut[64];
		free(text);
		json_decref(extra);
		snprintf(cut, sizeof cut, "%.40s...", type);
		extra = acl_denied_extra(inst->name, "instance", what, cut);
		text = extra ? json_dumps(extra, JSON_COMPACT) : NULL;
	}
	json_decref(extra);
	memset(&nt, 0, sizeof nt);
	nt.cmd = BUS_NOTICE;
	snprintf(nt.kind, sizeof nt.kind, "acl.denied");
	snprintf(nt.detail, sizeof nt.detail, "%s",
		 text && strlen(text) < sizeof nt.detail ? text : "{}");
	free(text);
	s_send(inst->emit_sock, &nt, sizeof nt);
}

static int s_op_emit(kanal_ctx_t *ctx, kanal_msg_t *msg)
{
	instance_t *inst = ctx->host;
	int64_t deadline;
	int rc;

	if (!inst->emit_sock) {
		rc = KANAL_ESTATE; /* called from init: nothing runs yet */
		goto fail;
	}
	if (inst->closing) {
		rc = KANAL_ECLOSED;
		goto fail;
	}
	if (!kanal_msg_source(msg) || !*kanal_msg_source(msg)) {
		if (kanal_msg_set_attr(msg, "source", inst->name, NULL) < 0) {
			rc = KANAL_EINVALID;
			goto fail;
		}
	}
	{
		char attr[64];
		if (kanal__msg_context_cpr(msg, attr, sizeof attr)) {
			log_warn(inst->name,
				 "refused an emitted event of type %s: attribute '%s' "
				 "holds a CPR number (put the person in data)",
				 kanal_msg_type(msg), attr);
			rc = KANAL_EINVALID;
			goto fail;
		}
	}
	if (inst->has_acl &&
	    !acl_type_allowed(inst->acl_emit, inst->n_acl_emit, kanal_msg_type(msg))) {
		s_acl_refused(inst, msg, "emit");
		rc = KANAL_EFORBIDDEN;
		goto fail;
	}
	if (acl_source_reserved(kanal_msg_source(msg)) ||
	    (inst->has_acl_sources &&
	     !acl_source_allowed(inst->acl_sources, inst->n_acl_sources, kanal_msg_source(msg)))) {
		s_acl_refused(inst, msg, "source");
		rc = KANAL_EFORBIDDEN;
		goto fail;
	}
	/* limits.rate: over it the event is not accepted, as when a queue is full — the
	 * plugin keeps it and tries later (docs/design/tenancy.md, "Rate limits"). */
	if (inst->rate && ratelimit_take(inst->rate, inst->name, kanal_now_ms()) > 0) {
		__atomic_add_fetch(&inst->rate_limited, 1, __ATOMIC_RELAXED);
		rc = KANAL_EBUSY;
		goto fail;
	}
	if (inst->max_event_bytes > 0 && kanal_msg_size(msg) > (size_t)inst->max_event_bytes) {
		log_warn(inst->name, "emitted event %s is larger than max_event_size (%lld bytes)",
			 kanal_msg_id(msg), (long long)inst->max_event_bytes);
		rc = KANAL_ETOOBIG;
		goto fail;
	}
	/* Acknowledgements are read only when the window is full: reading them on every emit
	 * would cost a socket call per event. */
	if (inst->emit_outstanding >= BUS_EMIT_WINDOW) {
		s_send_emits(inst); /* the router acknowledges only what it has */
		s_drain_emit(inst);
	}
	/* The clock is read only when the window is full (a clock read per emit is ~1 % of
	 * kanald's CPU under a flood). */
	deadline =
		inst->emit_outstanding >= BUS_EMIT_WINDOW ? kanal_now_ms() + BUS_EMIT_WAIT_MS : 0;
	while (inst->emit_outstanding >= BUS_EMIT_WINDOW) {
		unsigned char buf[sizeof(bus_request_t)];
		int64_t left = deadline - kanal_now_ms();
		int n;

		if (left <= 0) {
			rc = KANAL_EBUSY;
			goto fail;
		}
		n = s_wait_emit(inst, buf, sizeof buf, left);
		if (n > 0)
			s_on_emit_frame(inst, buf, n);
	}
	t_emits.msgs[t_emits.count++] = msg;
	inst->emit_outstanding++;
	/* An isolated plugin's emits arrive one IPC message at a time: send each at once. */
	if (t_emits.count == BUS_BATCH || inst->iso)
		s_send_emits(inst);
	return 0;
fail:
	kanal_msg_destroy(&msg);
	return rc;
}

static int s_op_flush(kanal_ctx_t *ctx, int64_t timeout_ms)
{
	instance_t *inst = ctx->host;
	int64_t deadline = kanal_now_ms() + timeout_ms;

	if (!inst->emit_sock)
		return KANAL_ESTATE;
	s_send_emits(inst);
	s_drain_emit(inst);
	/* The router acknowledges an emit after the commit that journalled it. */
	while (inst->emit_outstanding > 0) {
		unsigned char buf[sizeof(bus_request_t)];
		int64_t left = deadline - kanal_now_ms();
		int n;

		if (left <= 0)
			return KANAL_ETIMEDOUT;
		n = s_wait_emit(inst, buf, sizeof buf, left);
		if (n > 0)
			s_on_emit_frame(inst, buf, n);
	}
	return 0;
}

static int s_op_request(kanal_ctx_t *ctx, const char *service, kanal_msg_t *req, int64_t timeout_ms,
			kanal_msg_t **reply_out)
{
	instance_t *inst = ctx->host;
	bus_request_t frame;
	int64_t deadline;
	int rc;

	*reply_out = NULL;
	if (!inst->emit_sock) {
		kanal_msg_destroy(&req);
		return KANAL_ESTATE;
	}
	if (inst->closing) {
		kanal_msg_destroy(&req);
		return KANAL_ECLOSED;
	}
	if (!service || strlen(service) >= sizeof frame.service) {
		kanal_msg_destroy(&req);
		return KANAL_ENOSERVICE;
	}
	s_send_emits(inst); /* what was emitted before the request goes first */
	memset(&frame, 0, sizeof frame);
	frame.cmd = BUS_REQUEST;
	frame.seq = ++inst->req_seq;
	frame.timeout_ms = timeout_ms;
	frame.msg = req;
	strcpy(frame.service, service);
	rc = s_send(inst->emit_sock, &frame, sizeof frame);
	if (rc < 0) {
		kanal_msg_destroy(&req);
		return rc;
	}
	deadline = kanal_now_ms() + timeout_ms;
	for (;;) {
		unsigned char buf[sizeof(bus_request_t)];
		int64_t left = deadline - kanal_now_ms();
		int n;

		if (left <= 0)
			return KANAL_ETIMEDOUT;
		n = s_wait_emit(inst, buf, sizeof buf, left);
		if (n <= 0)
			continue;
		if (buf[0] == BUS_REPLY && n >= (int)sizeof(bus_reply_t)) {
			bus_reply_t rep;
			memcpy(&rep, buf, sizeof rep);
			if (rep.seq == frame.seq) {
				*reply_out = rep.reply;
				return rep.status;
			}
		}
		s_on_emit_frame(inst, buf, n);
	}
}

static int s_op_reply(kanal_ctx_t *ctx, kanal_msg_t *reply)
{
	instance_t *inst = ctx->host;

	kanal_msg_destroy(&inst->pending_reply);
	inst->pending_reply = reply;
	return 0;
}

/* A deferred request is answered (kanal_pending_reply/_fail, or cancelled): its outcome
 * joins the thread's batch, which goes out before the thread waits again. */
static void s_op_answer(kanal_ctx_t *ctx, uint64_t id, int outcome, kanal_msg_t *reply,
			const char *error, int64_t retry_after_ms)
{
	instance_t *inst = ctx->host;
	bus_result_t *out;

	if (t_results.count >= BUS_BATCH)
		s_send_results(inst);
	out = &t_results.items[t_results.count++];
	out->id = id;
	out->outcome = outcome;
	out->retry_after_ms = retry_after_ms;
	out->error = error && *error ? strdup(error) : NULL;
	out->reply = outcome == KANAL_OUTCOME_OK ? reply : NULL;
	if (outcome != KANAL_OUTCOME_OK)
		kanal_msg_destroy(&reply);
	if (t_results.count >= BUS_RESULT_BATCH)
		s_send_results(inst);
}

static void s_op_log(kanal_ctx_t *ctx, kanal_log_level_t level, const char *line)
{
	log_msg(level, ctx->name, "%s", line);
}

static instance_metric_t *s_metric(instance_t *inst, const char *name)
{
	for (size_t i = 0; i < inst->n_metrics; i++)
		if (!strcmp(inst->metrics[i].name, name))
			return &inst->metrics[i];
	if (inst->n_metrics == sizeof inst->metrics / sizeof inst->metrics[0])
		return NULL;
	snprintf(inst->metrics[inst->n_metrics].name, sizeof inst->metrics[0].name, "%s", name);
	inst->metrics[inst->n_metrics].value = 0;
	return &inst->metrics[inst->n_metrics++];
}

static void s_op_metric_add(kanal_ctx_t *ctx, const char *name, int64_t delta)
{
	instance_t *inst = ctx->host;
	instance_metric_t *m;

	pthread_mutex_lock(&inst->mu);
	if ((m = s_metric(inst, name)))
		m->value += (double)delta, m->gauge = false;
	pthread_mutex_unlock(&inst->mu);
}

static void s_op_metric_set(kanal_ctx_t *ctx, const char *name, double value)
{
	instance_t *inst = ctx->host;
	instance_metric_t *m;

	pthread_mutex_lock(&inst->mu);
	if ((m = s_metric(inst, name)))
		m->value = value, m->gauge = true;
	pthread_mutex_unlock(&inst->mu);
}

size_t instance_metrics(instance_t *inst, instance_metric_t *out, size_t cap)
{
	size_t n;

	pthread_mutex_lock(&inst->mu);
	n = inst->n_metrics < cap ? inst->n_metrics : cap;
	memcpy(out, inst->metrics, n * sizeof *out);
	pthread_mutex_unlock(&inst->mu);
	return n;
}

/* kanal_state_get/put: a singleton's go to the cluster's store; a key it does not hold yet
 * is looked up in the node's folder too, so a cursor written in single-node mode survives
 * the move to cluster mode. Everything else is the state folder's files. */
static int s_op_state_get(kanal_ctx_t *ctx, const char *key, char **value_out, kanal_error_t *err)
{
	instance_t *inst = ctx->host;
	int rc;

	if (!inst->store)
		return kanal__state_file_get(ctx, key, value_out, err);
	rc = inst->store->get(inst->store_arg, inst->name, key, value_out, err);
	return rc == KANAL_ENOTFOUND ? kanal__state_file_get(ctx, key, value_out, err) : rc;
}

static int s_op_state_put(kanal_ctx_t *ctx, const char *key, const char *value, kanal_error_t *err)
{
	instance_t *inst = ctx->host;

	if (!inst->store)
		return kanal__state_file_put(ctx, key, value, err);
	return inst->store->put(inst->store_arg, inst->name, key, value, err);
}

static void s_op_upstream(kanal_ctx_t *ctx, bool up)
{
	instance_t *inst = ctx->host;

	__atomic_store_n(&inst->upstream, up ? 1 : 0, __ATOMIC_RELAXED);
}

uint64_t instance_rate_limited(const instance_t *inst)
{
	return __atomic_load_n(&inst->rate_limited, __ATOMIC_RELAXED);
}

int instance_upstream(const instance_t *inst)
{
	return __atomic_load_n(&inst->upstream, __ATOMIC_RELAXED);
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
	.answer = s_op_answer,
	.state_get = s_op_state_get,
	.state_put = s_op_state_put,
};

/* Where the check callback's error belongs: the line of the first option it names in
 * quotes ("option 'ca_file': …") that the file gives, else the instance's entry. */
static void s_error_place(const conf_instance_t *ci, const char *text, int *line, int *column)
{
	*line = ci->line;
	*column = ci->column;
	for (const char *q = strchr(text, '\''); q; q = strchr(q + 1, '\'')) {
		size_t len = strcspn(q + 1, "'");
		for (size_t i = 0; i < ci->n_options; i++) {
			const kanal_optval_t *o = &ci->options[i];
			if (o->key && strlen(o->key) == len && !strncmp(o->key, q + 1, len)) {
				*line = o->line;
				*column = o->column;
				return;
			}
		}
	}
}

/* What a check callback's log lines need to say where they come from. */
typedef struct check_place {
	const conf_t *conf;
	const conf_instance_t *ci;
} check_place_t;

/* A check callback's log line (a warning, say) printed the way the config's errors are,
 * at the place it is about: kanalctl check and kanald --check show it beside them. */
static void s_check_log(kanal_ctx_t *ctx, kanal_log_level_t level, const char *line)
{
	const check_place_t *at = ctx->host;
	int l, c;

	s_error_place(at->ci, line, &l, &c);
	fprintf(stderr, "%s:%d:%d: %s: instance '%s': %s\n", at->conf->file, l, c,
		level == KANAL_LOG_WARN ? "warning" : kanal_log_level_name(level), at->ci->name,
		line);
}

static const kanal_host_ops_t s_check_ops = { .log = s_check_log };

/* The one validation of an instance, the same for kanalctl check, kanald --check and a
 * start: opens its plugin, checks its options against the plugin's table (every bad one
 * reported) and runs the plugin's check callback. `ops` receives the callback's log lines
 * (NULL: dropped — a start's init logs them again). On success returns 0 with the plugin
 * and config in *loaded_out and *cfg_out; else a negative code with the errors in d. */
static int s_validate(const conf_t *conf, const conf_instance_t *ci, const kanal_host_ops_t *ops,
		      kanal_loaded_t **loaded_out, kanal_config_t **cfg_out, diag_t *d)
{
	check_place_t at = { conf, ci };
	kanal_error_t err;
	int rc, line, column;

	*loaded_out = NULL;
	*cfg_out = NULL;
	kanal_error_clear(&err);
	rc = kanal__plugin_open(ci->plugin_path, loaded_out, &err);
	if (rc < 0) {
		/* Reported at the instance's entry, where the operator fixes it. */
		diag_add(d, conf->file, ci->line, ci->column, "instance '%s': %s", ci->name,
			 err.text[0] ? err.text : kanal_strerror(rc));
		return rc;
	}
	/* Every bad option of the instance is reported, not only the first. */
	rc = kanal__config_build_all((*loaded_out)->options, ci->options, ci->n_options, conf->file,
				     ci->name, ci->line, ci->column, cfg_out, diag_add_error_fn, d);
	if (rc < 0)
		goto fail;
	rc = kanal__plugin_check(*loaded_out, ci->name, *cfg_out, ops, &at, &err);
	if (rc < 0) {
		s_error_place(ci, err.text, &line, &column);
		diag_add(d, conf->file, line, column, "instance '%s': %s", ci->name, err.text);
		goto fail;
	}
	return 0;
fail:
	kanal__config_destroy(cfg_out);
	kanal__plugin_close(loaded_out);
	return rc;
}

int instance_check(const conf_t *conf, const conf_instance_t *ci, bool quiet, diag_t *d)
{
	kanal_loaded_t *loaded;
	kanal_config_t *cfg;
	int rc;

	if (!ci->name || !ci->plugin_path)
		return KANAL_ECONFIG; /* the config's own error says what is missing */
	rc = s_validate(conf, ci, quiet ? NULL : &s_check_ops, &loaded, &cfg, d);
	kanal__config_destroy(&cfg);
	kanal__plugin_close(&loaded);
	return rc;
}

size_t instance_check_all(const conf_t *conf, bool quiet, diag_t *d)
{
	size_t before = d->count;

	for (size_t i = 0; i < conf->n_instances; i++)
		(void)instance_check(conf, &conf->instances[i], quiet, d);
	return d->count - before;
}

int instance_load(const conf_t *conf, const conf_instance_t *ci, size_t index, instance_t **out,
		  diag_t *d)
{
	instance_t *inst = calloc(1, sizeof *inst);
	char *state_dir = NULL;
	int rc;

	*out = NULL;
	if (!inst)
		return KANAL_ENOMEM;
	pthread_mutex_init(&inst->mu, NULL);
	pthread_cond_init(&inst->cv, NULL);
	inst->index = index;
	inst->upstream = -1;
	inst->lease_pipe[0] = inst->lease_pipe[1] = -1;
	inst->max_event_bytes = conf->max_event_bytes;
	inst->has_acl = ci->has_acl;
	inst->acl_emit = ci->acl_emit;
	inst->n_acl_emit = ci->n_acl_emit;
	inst->has_acl_sources = ci->has_acl_sources;
	inst->acl_sources = ci->acl_sources;
	inst->n_acl_sources = ci->n_acl_sources;
	inst->name = strdup(ci->name);
	if (!inst->name) {
		rc = KANAL_ENOMEM;
		goto fail;
	}
	rc = s_validate(conf, ci, NULL, &inst->plugin, &inst->config, d);
	if (rc < 0)
		goto fail;
	if (ci->rate_per_second > 0 &&
	    !(inst->rate = ratelimit_new(
		      (double)ci->rate_per_second,
		      (double)(ci->rate_burst > 0 ? ci->rate_burst : ci->rate_per_second)))) {
		rc = KANAL_ENOMEM;
		goto fail;
	}
	if (asprintf(&state_dir, "%s/%s", conf->state_dir, ci->name) < 0) {
		state_dir = NULL;
		rc = KANAL_ENOMEM;
		goto fail;
	}
	inst->ctx = kanal__ctx_new(ci->name, &s_ops, inst, state_dir);
	free(state_dir);
	if (!inst->ctx) {
		diag_add(d, conf->file, ci->line, ci->column,
			 "instance '%s': cannot create its state folder under %s", ci->name,
			 conf->state_dir);
		rc = KANAL_EIO;
		goto fail;
	}
	inst->ctx->log_level = log_get_level();
	kanal__ctx_set_blob_store(inst->ctx, conf->blobs);
	if (ci->isolation && !strcmp(ci->isolation, "process")) {
		/* The plugin host runs init; kanald only had to know the options are right. */
		rc = isolation_new(conf, ci, &inst->iso, d);
		if (rc < 0)
			goto fail;
		*out = inst;
		return 0;
	}
	rc = inst->plugin->desc->init(inst->ctx, inst->config, &inst->state);
	if (rc != 0) {
		diag_add(d, conf->file, ci->line, ci->column, "instance '%s': init failed: %s",
			 ci->name,
			 inst->ctx->delivery.error[0]
				 ? inst->ctx->delivery.error
				 : kanal_strerror(rc < 0 ? rc : KANAL_EPLUGIN));
		rc = rc < 0 ? rc : KANAL_EPLUGIN;
		goto fail;
	}
	inst->inited = true;
	*out = inst;
	return 0;
fail:
	instance_destroy(&inst);
	return rc;
}

/* Runs one delivery through the plugin and adds its outcome to the thread's batch, which
 * is sent when full, or at once when this on_message was slow (bus.h). *t_us is the time
 * the delivery starts (the end of the previous one in the same D frame) and is set to its
 * end: one clock read per delivery. */
static void s_deliver(instance_t *inst, const bus_deliver_t *dl, int64_t *t_us)
{
	const kanal_plugin_t *p = inst->plugin->desc;
	bus_result_t *out;
	int outcome;
	int64_t t0 = *t_us;

	kanal__ctx_begin_delivery(inst->ctx, dl->id, dl->route, dl->attempt, dl->is_request);
	if (__atomic_load_n(&inst->abandon, __ATOMIC_ACQUIRE)) {
		kanal_set_error(inst->ctx, "kanald stopped before the plugin got to it");
		outcome = KANAL_OUTCOME_RETRY;
	} else if (p->on_message) {
		outcome = (int)p->on_message(inst->ctx, inst->state, dl->msg);
		if (inst->ctx->delivery.deferred) {
			/* Answered later, through s_op_answer. */
			kanal_msg_destroy(&inst->pending_reply);
			kanal__ctx_end_delivery(inst->ctx);
			*t_us = s_now_us();
			return;
		}
	} else {
		kanal_set_error(inst->ctx, "plugin '%s' takes no deliveries (it has no on_message)",
				p->name);
		outcome = KANAL_OUTCOME_REJECT;
	}
	if (outcome != KANAL_OUTCOME_OK && outcome != KANAL_OUTCOME_RETRY &&
	    outcome != KANAL_OUTCOME_REJECT) {
		kanal_set_error(inst->ctx, "plugin returned an invalid outcome (%d)", outcome);
		outcome = KANAL_OUTCOME_REJECT;
	}
	out = &t_results.items[t_results.count];
	out->id = dl->id;
	out->outcome = outcome;
	out->retry_after_ms = inst->ctx->delivery.retry_after_ms;
	out->error = inst->ctx->delivery.error[0] ? strdup(inst->ctx->delivery.error) : NULL;
	out->reply = NULL;
	if (dl->is_request && outcome == KANAL_OUTCOME_OK) {
		out->reply = inst->pending_reply;
		inst->pending_reply = NULL;
	}
	kanal_msg_destroy(&inst->pending_reply);
	kanal__ctx_end_delivery(inst->ctx);
	*t_us = s_now_us();
	if (++t_results.count >= BUS_RESULT_BATCH || *t_us - t0 >= BUS_RESULT_SLOW_US)
		s_send_results(inst);
}

/* ---- singletons (cluster mode): start and stop on the lease's word ----------------------- */

/* The lease pipe is readable: empty it (the loop's turn then applies the change). */
static void s_on_lease_pipe(kanal_ctx_t *ctx, int fd, int events, void *arg)
{
	char buf[64];

	(void)ctx;
	(void)events;
	(void)arg;
	while (read(fd, buf, sizeof buf) > 0)
		;
}

static void s_watch_lease_pipe(instance_t *inst)
{
	if (kanal__loop_fd_watch(inst->ctx->loop, inst->ctx, inst->lease_pipe[0], KANAL_FD_READ,
				 s_on_lease_pipe, inst) < 0)
		log_error(inst->name, "cannot watch its lease pipe: it will not follow its lease");
}

/* Stops the plugin: after its emits went out, with its deferred requests answered RETRY
 * and its timers and watches removed. */
static void s_plugin_stop(instance_t *inst, int64_t deadline_ms)
{
	const kanal_plugin_t *p = inst->plugin->desc;

	s_send_emits(inst);
	s_send_results(inst);
	if (inst->plugin_started && p->stop)
		p->stop(inst->ctx, inst->state, deadline_ms);
	inst->plugin_started = false;
	__atomic_store_n(&inst->active, 0, __ATOMIC_RELEASE);
	if (kanal__ctx_pending_abandon(inst->ctx, "the service stopped before it answered"))
		log_warn(inst->name, "its plugin left deferred requests unanswered at stop");
	s_send_results(inst);
	kanal__loop_clear(inst->ctx->loop);
}

/* Between two turns of the loop (never inside a callback): starts or stops the singleton's
 * plugin when the lease changed. A lost lease stops it at once, before the lease's TTL
 * runs out on the other nodes (docs/design/cluster.md). */
static void s_apply_lease(instance_t *inst)
{
	const kanal_plugin_t *p = inst->plugin->desc;
	bool want = __atomic_load_n(&inst->want_active, __ATOMIC_ACQUIRE);
	int rc;

	if (want == inst->plugin_started)
		return;
	if (!want) {
		s_plugin_stop(inst, kanal_now_ms() + 1000);
		s_watch_lease_pipe(inst);
		log_info(inst->name, "stopped: this node no longer holds its lease");
		return;
	}
	kanal__ctx_begin_delivery(inst->ctx, 0, NULL, 0, false); /* a clean error slot */
	kanal__ctx_end_delivery(inst->ctx);
	rc = p->start ? p->start(inst->ctx, inst->state) : 0;
	if (rc != 0) {
		log_error(inst->name, "took its lease but its start failed: %s",
			  inst->ctx->delivery.error[0]
				  ? inst->ctx->delivery.error
				  : kanal_strerror(rc < 0 ? rc : KANAL_EPLUGIN));
		/* As a failed start at launch: no stop; what start made is removed. */
		s_plugin_stop(inst, kanal_now_ms() + 1000);
		s_watch_lease_pipe(inst);
		__atomic_store_n(&inst->want_active, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&inst->start_failed, 1, __ATOMIC_RELEASE);
		return;
	}
	inst->plugin_started = true;
	__atomic_store_n(&inst->active, 1, __ATOMIC_RELEASE);
	log_info(inst->name, "started: this node holds its lease");
}

int instance_make_singleton(instance_t *inst, const instance_store_t *store, void *store_arg)
{
	if (inst->lease_pipe[0] < 0 && pipe2(inst->lease_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		return KANAL_EIO;
	inst->singleton = true;
	inst->store = store;
	inst->store_arg = store_arg;
	return 0;
}

void instance_set_active(instance_t *inst, bool active)
{
	char b = 1;

	if (!inst->singleton)
		return;
	__atomic_store_n(&inst->want_active, active ? 1 : 0, __ATOMIC_RELEASE);
	if (write(inst->lease_pipe[1], &b, 1) < 0 && errno != EAGAIN)
		log_error(inst->name, "cannot wake its thread: %s", strerror(errno));
}

bool instance_is_active(const instance_t *inst)
{
	return __atomic_load_n(&inst->active, __ATOMIC_ACQUIRE) != 0;
}

bool instance_take_start_failure(instance_t *inst)
{
	return __atomic_exchange_n(&inst->start_failed, 0, __ATOMIC_ACQ_REL) != 0;
}

void instance_report_start(instance_t *inst, int state, const char *why)
{
	pthread_mutex_lock(&inst->mu);
	inst->start_state = state;
	if (why)
		snprintf(inst->start_error, sizeof inst->start_error, "%s", why);
	pthread_cond_broadcast(&inst->cv);
	pthread_mutex_unlock(&inst->mu);
}

static void *s_thread_main(void *arg)
{
	instance_t *inst = arg;
	const kanal_plugin_t *p = inst->plugin->desc;
	int64_t stop_deadline = 0;
	int zero = 0;
	int rc;

	kanal__ctx_bind(inst->ctx);
	inst->deliver_sock = zmq_socket(inst->zctx, ZMQ_DEALER);
	inst->emit_sock = zmq_socket(inst->zctx, ZMQ_DEALER);
	if (!inst->deliver_sock || !inst->emit_sock) {
		instance_report_start(inst, KANAL_EIO, "cannot create its sockets");
		goto out;
	}
	for (int i = 0; i < 2; i++) {
		void *s = i ? inst->emit_sock : inst->deliver_sock;
		zmq_setsockopt(s, ZMQ_ROUTING_ID, inst->name, strlen(inst->name));
		zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero);
		zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero);
		zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
	}
	if (zmq_connect(inst->deliver_sock, BUS_DELIVER_ENDPOINT) < 0 ||
	    zmq_connect(inst->emit_sock, BUS_EMIT_ENDPOINT) < 0) {
		instance_report_start(inst, KANAL_EIO, "cannot connect to the router");
		goto out;
	}
	if (inst->iso) {
		isolation_run(inst->iso, inst);
		goto out;
	}
	if (inst->singleton) {
		/* Started when the lease says so (s_apply_lease); deliveries meanwhile. */
		s_watch_lease_pipe(inst);
		instance_report_start(inst, 1, NULL);
		goto loop;
	}
	rc = p->start ? p->start(inst->ctx, inst->state) : 0;
	inst->plugin_started = true; /* its stop runs even after a failed start, as before */
	if (rc != 0) {
		instance_report_start(inst, rc < 0 ? rc : KANAL_EPLUGIN,
				      inst->ctx->delivery.error[0] ? inst->ctx->delivery.error
								   : "start failed");
		goto stop;
	}
	instance_report_start(inst, 1, NULL);
loop:

	for (;;) {
		union {
			uint8_t cmd;
			bus_deliver_batch_t d;
			bus_stop_t st;
			bus_cancel_t cancel;
		} f;
		int n;

		/* About to wait: what this thread holds goes to the router now. */
		s_send_emits(inst);
		s_send_results(inst);
		rc = kanal__loop_run_once(inst->ctx->loop, inst->deliver_sock, -1);
		if (rc < 0 && errno == ETERM)
			break;
		if (inst->singleton)
			s_apply_lease(inst);
		while ((n = s_recv(inst->deliver_sock, &f, sizeof f, ZMQ_DONTWAIT)) >= 0) {
			if (f.cmd == BUS_DELIVER && n >= (int)bus_deliver_batch_len(0)) {
				uint32_t count = f.d.count;
				if (bus_deliver_batch_len(count) > (size_t)n)
					count = 0; /* not a frame of ours */
				int64_t t_us = s_now_us();
				for (uint32_t i = 0; i < count; i++) {
					/* The next event was written on another core: start
					 * fetching it while the plugin works on this one. */
					if (i + 1 < count)
						kanal__msg_prefetch(f.d.items[i + 1].msg);
					s_deliver(inst, &f.d.items[i], &t_us);
				}
			} else if (f.cmd == BUS_CLOSE_EMITS) {
				uint8_t c = BUS_CLOSED;
				inst->closing = true;
				s_send_emits(inst); /* taken before the close: they go first */
				s_send(inst->emit_sock, &c, 1);
			} else if (f.cmd == BUS_STOP && n >= (int)sizeof(bus_stop_t)) {
				stop_deadline = f.st.deadline_ms;
				goto stop;
			} else if (f.cmd == BUS_CANCEL && n >= (int)sizeof(bus_cancel_t)) {
				kanal__ctx_cancel(inst->ctx, f.cancel.id,
						  "cancelled: the caller gave up waiting");
			}
		}
	}
stop:
	inst->closing = true;
	s_plugin_stop(inst, stop_deadline ? stop_deadline : kanal_now_ms() + 5000);
out:
	if (inst->deliver_sock)
		zmq_close(inst->deliver_sock);
	if (inst->emit_sock)
		zmq_close(inst->emit_sock);
	inst->deliver_sock = inst->emit_sock = NULL;
	kanal_msg_destroy(&inst->pending_reply);
	pthread_mutex_lock(&inst->mu);
	if (inst->start_state == 0) {
		inst->start_state = KANAL_EPLUGIN;
		pthread_cond_broadcast(&inst->cv);
	}
	pthread_mutex_unlock(&inst->mu);
	return NULL;
}

int instance_start(instance_t *inst, void *zctx, char *err, size_t err_size)
{
	int state;

	inst->zctx = zctx;
	inst->start_state = 0;
	if (pthread_create(&inst->thread, NULL, s_thread_main, inst) != 0) {
		snprintf(err, err_size, "instance '%s': cannot start its thread", inst->name);
		return KANAL_ETHREAD;
	}
	inst->thread_started = true;
	pthread_mutex_lock(&inst->mu);
	while (inst->start_state == 0)
		pthread_cond_wait(&inst->cv, &inst->mu);
	state = inst->start_state;
	pthread_mutex_unlock(&inst->mu);
	if (state < 0) {
		snprintf(err, err_size, "instance '%s': start failed: %s", inst->name,
			 inst->start_error[0] ? inst->start_error : kanal_strerror(state));
		instance_join(inst, 0);
		return state;
	}
	return 0;
}

int instance_join(instance_t *inst, int64_t deadline_ms)
{
	struct timespec ts;
	int64_t wall;

	if (!inst || !inst->thread_started)
		return 0;
	if (deadline_ms <= 0) {
		pthread_join(inst->thread, NULL);
		inst->thread_started = false;
		return 0;
	}
	/* pthread_timedjoin_np wants CLOCK_REALTIME; convert the monotonic deadline. */
	wall = kanal__wall_ms() + (deadline_ms - kanal_now_ms());
	ts.tv_sec = wall / 1000;
	ts.tv_nsec = (wall % 1000) * 1000000L;
	if (pthread_timedjoin_np(inst->thread, NULL, &ts) != 0) {
		inst->stuck = true;
		log_error(inst->name, "did not stop by the shutdown deadline: its plugin is stuck "
				      "in a callback; leaving it behind");
		return KANAL_ETIMEDOUT;
	}
	inst->thread_started = false;
	return 0;
}

void instance_destroy(instance_t **inst_p)
{
	instance_t *inst = inst_p ? *inst_p : NULL;

	if (!inst)
		return;
	if (inst->stuck) {
		/* Its thread may still be inside the plugin: unloading would pull the code from
		 * under it. The process is about to exit; leave it. */
		*inst_p = NULL;
		return;
	}
	instance_join(inst, 0);
	if (inst->inited && inst->plugin->desc->destroy)
		inst->plugin->desc->destroy(inst->state);
	isolation_destroy(&inst->iso);
	kanal__ctx_destroy(&inst->ctx);
	for (int i = 0; i < 2; i++)
		if (inst->lease_pipe[i] >= 0)
			close(inst->lease_pipe[i]);
	kanal__config_destroy(&inst->config);
	kanal__plugin_close(&inst->plugin);
	ratelimit_destroy(&inst->rate);
	pthread_mutex_destroy(&inst->mu);
	pthread_cond_destroy(&inst->cv);
	free(inst->name);
	free(inst);
	*inst_p = NULL;
}
