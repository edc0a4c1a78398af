/*
 * tests/plugins/tp_timer.c — a pure source driven by a repeating timer: every `interval` it
 * emits an event of type `type` with data {"n": N} (N counting successful emits from 1),
 * and after `count` events (0: no limit) it cancels its own timer from within the timer's
 * callback. A refused emit is counted in the metric "emit_failures" and retried on the next
 * tick; the metric "ticks" counts events emitted.
 */
#include <stdlib.h>

#include <kanal/kanal.h>

static const kanal_option_t s_options[] = {
	{ .name = "interval",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "20ms",
	  .help = "Time between events." },
	{ .name = "type",
	  .type = KANAL_OPT_STRING,
	  .default_value = "tp.timer.tick",
	  .help = "Type of the events emitted." },
	{ .name = "count",
	  .type = KANAL_OPT_INT,
	  .default_value = "0",
	  .help = "Stop after this many events (0: never)." },
	{ .name = NULL, .type = 0 },
};

typedef struct ticker {
	int64_t interval;
	const char *type; /* borrowed from the config */
	int64_t count;
	int64_t emitted;
	int64_t timer; /* 0: none */
} ticker_t;

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	ticker_t *t;

	if (kanal_config_duration_ms(cfg, "interval") <= 0) {
		kanal_set_error(ctx, "interval must be more than 0");
		return KANAL_ECONFIG;
	}
	t = calloc(1, sizeof *t);
	if (!t)
		return KANAL_ENOMEM;
	t->interval = kanal_config_duration_ms(cfg, "interval");
	t->type = kanal_config_string(cfg, "type");
	t->count = kanal_config_int(cfg, "count");
	*state = t;
	return 0;
}

static void s_tick(kanal_ctx_t *ctx, void *arg)
{
	ticker_t *t = arg;
	kanal_msg_t *msg = kanal_msg_new(t->type, kanal_instance_name(ctx), NULL);
	int rc;

	if (!msg || kanal_msg_data_set_int(msg, "n", t->emitted + 1) != 0) {
		kanal_msg_destroy(&msg);
		kanal_metric_add(ctx, "emit_failures", 1);
		return;
	}
	rc = kanal_emit(ctx, &msg);
	if (rc != 0) {
		kanal_metric_add(ctx, "emit_failures", 1);
		kanal_log(ctx, KANAL_LOG_WARN, "emit failed: %s", kanal_strerror(rc));
		return;
	}
	t->emitted++;
	kanal_metric_add(ctx, "ticks", 1);
	if (t->count && t->emitted >= t->count) {
		kanal_timer_cancel(ctx, t->timer);
		t->timer = 0;
		kanal_log(ctx, KANAL_LOG_INFO, "done after %lld events", (long long)t->emitted);
	}
}

static int s_start(kanal_ctx_t *ctx, void *state)
{
	ticker_t *t = state;

	t->timer = kanal_timer_add(ctx, t->interval, t->interval, s_tick, t);
	if (t->timer < 0) {
		kanal_set_error(ctx, "cannot add the timer: %s", kanal_strerror((int)t->timer));
		return (int)t->timer;
	}
	return 0;
}

static void s_stop(kanal_ctx_t *ctx, void *state, int64_t deadline_ms)
{
	ticker_t *t = state;

	(void)deadline_ms;
	if (t->timer > 0)
		kanal_timer_cancel(ctx, t->timer);
	t->timer = 0;
}

static void s_destroy(void *state)
{
	free(state);
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_timer",
	.version = "1.0.0",
	.description = "Test plugin: emits an event on a repeating timer.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.stop = s_stop,
	.destroy = s_destroy,
};
