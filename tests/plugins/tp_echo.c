/*
 * tests/plugins/tp_echo.c — an echo plugin for the SDK's harness tests and the broker's
 * integration tests: one plugin whose every behaviour is chosen by its options.
 *
 * - A routed event is re-emitted as a new event (new id, source = the instance, causationid
 *   = the original id) with type `emit_type`, or the original type plus `emit_suffix`.
 * - A request is answered with the request's data plus `reply_field` (= the instance name)
 *   and `weight`, in an event of the request's type plus ".reply".
 * - Events of type `reject_type` are REJECTed, of type `retry_type` RETRYed with the hint
 *   `retry_after`; every event is RETRYed until its attempt number exceeds `fail_attempts`;
 *   events larger than `max_bytes` are REJECTed; types in `ignore_types` are acknowledged
 *   without echo. An emit the bus refuses makes the delivery RETRY with the emit's error.
 * - With `enrich_service` set, a routed event is first sent as a request to that service
 *   (kanal_request); the reply's data goes into the echo's data as "enriched". A failed
 *   request REJECTs (no such service) or RETRYs (anything else) with the request's error.
 * - `log_data` logs each event's data (to check CPR masking of logs).
 * - An event of type "tp.thread.probe" makes it call host services from a thread of its
 *   own and log what they returned (they must say KANAL_ETHREAD).
 *
 * Metrics: counter "deliveries", gauge "last_bytes".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

static const kanal_option_t s_options[] = {
	{ .name = "reply_field",
	  .type = KANAL_OPT_STRING,
	  .default_value = "echoed",
	  .help = "Data field added to each reply, holding the instance name." },
	{ .name = "emit",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "true",
	  .help = "Re-emit each routed event." },
	{ .name = "emit_suffix",
	  .type = KANAL_OPT_STRING,
	  .default_value = ".echoed",
	  .help = "Appended to the type of a re-emitted event." },
	{ .name = "emit_type",
	  .type = KANAL_OPT_STRING,
	  .help = "Type of re-emitted events (instead of adding emit_suffix)." },
	{ .name = "reject_type",
	  .type = KANAL_OPT_STRING,
	  .help = "Events of this type are rejected." },
	{ .name = "retry_type",
	  .type = KANAL_OPT_STRING,
	  .help = "Events of this type are answered RETRY." },
	{ .name = "retry_after",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "1500ms",
	  .help = "Retry hint given with RETRY." },
	{ .name = "fail_attempts",
	  .type = KANAL_OPT_INT,
	  .default_value = "0",
	  .help = "RETRY every event until its attempt number exceeds this." },
	{ .name = "max_bytes",
	  .type = KANAL_OPT_SIZE,
	  .default_value = "64KiB",
	  .help = "Larger events are rejected." },
	{ .name = "weight",
	  .type = KANAL_OPT_DOUBLE,
	  .default_value = "1.0",
	  .help = "Number added to replies as 'weight'." },
	{ .name = "log_data",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "false",
	  .help = "Log the data of every event." },
	{ .name = "ignore_types",
	  .type = KANAL_OPT_LIST,
	  .default_value = "[]",
	  .help = "Types acknowledged without an echo." },
	{ .name = "enrich_service",
	  .type = KANAL_OPT_STRING,
	  .help = "Service asked (kanal_request) before each echo; its reply data is added." },
	{ .name = NULL, .type = 0 },
};

typedef struct echo {
	const kanal_config_t *cfg; /* valid from init to destroy */
	bool emit;
	int64_t retry_after;
	int64_t fail_attempts;
	int64_t max_bytes;
	double weight;
	bool log_data;
} echo_t;

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	echo_t *e = calloc(1, sizeof *e);

	if (!e) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	e->cfg = cfg;
	e->emit = kanal_config_bool(cfg, "emit");
	e->retry_after = kanal_config_duration_ms(cfg, "retry_after");
	e->fail_attempts = kanal_config_int(cfg, "fail_attempts");
	e->max_bytes = kanal_config_int(cfg, "max_bytes");
	e->weight = kanal_config_double(cfg, "weight");
	e->log_data = kanal_config_bool(cfg, "log_data");
	*state = e;
	return 0;
}

static int s_start(kanal_ctx_t *ctx, void *state)
{
	echo_t *e = state;

	kanal_log(ctx, KANAL_LOG_INFO, "echo ready: reply_field=%s ignore_types=%zu state_dir=%s",
		  kanal_config_string(e->cfg, "reply_field"),
		  kanal_config_list_count(e->cfg, "ignore_types"), kanal_state_dir(ctx));
	return 0;
}

static void s_destroy(void *state)
{
	free(state);
}

static bool s_is(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

/* ---- thread probe --------------------------------------------------------------------- */

typedef struct probe {
	kanal_ctx_t *ctx;
	int emit_rc;
	int64_t timer_rc;
} probe_t;

static void s_noop_timer(kanal_ctx_t *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
}

static void *s_probe_thread(void *arg)
{
	probe_t *p = arg;
	kanal_msg_t *msg = kanal_msg_new("tp.thread.escaped", "tp-echo", NULL);

	p->emit_rc = kanal_emit(p->ctx, &msg); /* consumes msg whatever happens */
	p->timer_rc = kanal_timer_add(p->ctx, 0, 0, s_noop_timer, NULL);
	kanal_log(p->ctx, KANAL_LOG_ERROR, "this line must not be logged");
	kanal_metric_add(p->ctx, "escaped", 1);
	return NULL;
}

static kanal_outcome_t s_thread_probe(kanal_ctx_t *ctx)
{
	probe_t p = { .ctx = ctx };
	pthread_t t;

	if (pthread_create(&t, NULL, s_probe_thread, &p) != 0) {
		kanal_set_error(ctx, "cannot start a thread");
		return KANAL_OUTCOME_RETRY;
	}
	pthread_join(t, NULL);
	kanal_log(ctx, KANAL_LOG_INFO, "from another thread: emit=%s timer=%s",
		  kanal_errname(p.emit_rc), kanal_errname((int)p.timer_rc));
	return KANAL_OUTCOME_OK;
}

/* ---- replies and echoes ---------------------------------------------------------------- */

static kanal_outcome_t s_reply(kanal_ctx_t *ctx, echo_t *e, const kanal_msg_t *msg)
{
	char type[256];
	char *data = kanal_msg_data_json(msg, NULL);
	kanal_msg_t *reply;
	int rc;

	snprintf(type, sizeof type, "%s.reply", kanal_msg_type(msg));
	reply = kanal_msg_new(type, kanal_instance_name(ctx), NULL);
	if (!reply) {
		kanal_free(data);
		kanal_set_error(ctx, "out of memory");
		return KANAL_OUTCOME_RETRY;
	}
	if (data && data[0] == '{')
		kanal_msg_set_data_json(reply, data, strlen(data));
	kanal_free(data);
	if (kanal_msg_data_set_str(reply, kanal_config_string(e->cfg, "reply_field"),
				   kanal_instance_name(ctx)) != 0 ||
	    kanal_msg_data_set_double(reply, "weight", e->weight) != 0) {
		kanal_msg_destroy(&reply);
		kanal_set_error(ctx, "cannot build the reply");
		return KANAL_OUTCOME_REJECT;
	}
	rc = kanal_reply(ctx, msg, &reply);
	if (rc != 0) {
		kanal_set_error(ctx, "reply failed: %s", kanal_strerror(rc));
		return KANAL_OUTCOME_REJECT;
	}
	return KANAL_OUTCOME_OK;
}

/* Asks the enrich service about msg and puts its reply's data into out as "enriched". */
static kanal_outcome_t s_enrich(kanal_ctx_t *ctx, const char *service, const kanal_msg_t *msg,
				kanal_msg_t *out)
{
	kanal_msg_t *req = kanal_msg_dup(msg), *reply = NULL;
	char *data;
	int rc;

	rc = kanal_request(ctx, service, &req, 1000, &reply);
	if (rc != 0) {
		kanal_set_error(ctx, "request to '%s' failed: %s", service, kanal_strerror(rc));
		return rc == KANAL_ENOSERVICE ? KANAL_OUTCOME_REJECT : KANAL_OUTCOME_RETRY;
	}
	data = kanal_msg_data_json(reply, NULL);
	rc = kanal_msg_data_set_json(out, "enriched", data ? data : "null",
				     data ? strlen(data) : 4);
	kanal_free(data);
	kanal_msg_destroy(&reply);
	if (rc != 0) {
		kanal_set_error(ctx, "cannot add the reply of '%s': %s", service,
				kanal_strerror(rc));
		return KANAL_OUTCOME_REJECT;
	}
	return KANAL_OUTCOME_OK;
}

static kanal_outcome_t s_echo(kanal_ctx_t *ctx, echo_t *e, const kanal_msg_t *msg)
{
	const char *service = kanal_config_string(e->cfg, "enrich_service");
	const char *emit_type = kanal_config_string(e->cfg, "emit_type");
	const char *corr = kanal_msg_attr(msg, "correlationid");
	char type[256], id[37];
	kanal_msg_t *out = kanal_msg_dup(msg);
	int rc;

	if (emit_type)
		snprintf(type, sizeof type, "%s", emit_type);
	else
		snprintf(type, sizeof type, "%s%s", kanal_msg_type(msg),
			 kanal_config_string(e->cfg, "emit_suffix"));
	kanal_uuid(id);
	if (!out || kanal_msg_set_attr(out, "type", type, NULL) != 0 ||
	    kanal_msg_set_attr(out, "id", id, NULL) != 0 ||
	    kanal_msg_set_attr(out, "source", kanal_instance_name(ctx), NULL) != 0 ||
	    kanal_msg_set_attr(out, "causationid", kanal_msg_id(msg), NULL) != 0 ||
	    kanal_msg_set_attr(out, "correlationid", corr ? corr : kanal_msg_id(msg), NULL) != 0) {
		kanal_msg_destroy(&out);
		kanal_set_error(ctx, "cannot build the echo of type '%s'", type);
		return KANAL_OUTCOME_REJECT;
	}
	if (service) {
		kanal_outcome_t o = s_enrich(ctx, service, msg, out);
		if (o != KANAL_OUTCOME_OK) {
			kanal_msg_destroy(&out);
			return o;
		}
	}
	rc = kanal_emit(ctx, &out);
	if (rc != 0) {
		kanal_set_error(ctx, "emit failed: %s", kanal_strerror(rc));
		kanal_set_retry_after(ctx, e->retry_after);
		return KANAL_OUTCOME_RETRY;
	}
	return KANAL_OUTCOME_OK;
}

static bool s_ignored(echo_t *e, const char *type)
{
	size_t n = kanal_config_list_count(e->cfg, "ignore_types");

	for (size_t i = 0; i < n; i++)
		if (s_is(kanal_config_list(e->cfg, "ignore_types", i), type))
			return true;
	return false;
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	echo_t *e = state;
	const char *type = kanal_msg_type(msg);
	size_t size = kanal_msg_size(msg);

	kanal_metric_add(ctx, "deliveries", 1);
	kanal_metric_set(ctx, "last_bytes", (double)size);
	kanal_log(ctx, KANAL_LOG_DEBUG, "delivery %llu attempt %d route %s type %s",
		  (unsigned long long)kanal_delivery_id(ctx), kanal_delivery_attempt(ctx),
		  kanal_delivery_route(ctx) ? kanal_delivery_route(ctx) : "-", type);
	if (e->log_data) {
		char *data = kanal_msg_data_json(msg, NULL);
		kanal_log(ctx, KANAL_LOG_INFO, "data of %s: %s", type, data ? data : "none");
		kanal_free(data);
	}
	if (s_is(type, "tp.thread.probe"))
		return s_thread_probe(ctx);
	if (s_is(type, kanal_config_string(e->cfg, "reject_type"))) {
		kanal_set_error(ctx, "tp_echo rejects type '%s'", type);
		return KANAL_OUTCOME_REJECT;
	}
	if (s_is(type, kanal_config_string(e->cfg, "retry_type"))) {
		kanal_set_error(ctx, "tp_echo retries type '%s'", type);
		kanal_set_retry_after(ctx, e->retry_after);
		return KANAL_OUTCOME_RETRY;
	}
	if (kanal_delivery_attempt(ctx) <= e->fail_attempts) {
		kanal_set_error(ctx, "attempt %d of %lld planned failures",
				kanal_delivery_attempt(ctx), (long long)e->fail_attempts);
		kanal_set_retry_after(ctx, e->retry_after);
		return KANAL_OUTCOME_RETRY;
	}
	if ((int64_t)size > e->max_bytes) {
		kanal_set_error(ctx, "event of %zu bytes is larger than max_bytes %lld", size,
				(long long)e->max_bytes);
		return KANAL_OUTCOME_REJECT;
	}
	if (kanal_is_request(ctx))
		return s_reply(ctx, e, msg);
	if (!e->emit || s_ignored(e, type))
		return KANAL_OUTCOME_OK;
	return s_echo(ctx, e, msg);
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_echo",
	.version = "1.0.0",
	.description = "Test plugin: echoes events and answers requests, as its options say.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.destroy = s_destroy,
};
