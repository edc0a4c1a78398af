/*
 * tests/plugins/tp_service.c — a service plugin for the broker's enrich tests. It answers
 * each request with data {"guardian": "<subject>", "looked_up": true} — or, by its options,
 * rejects every request, or sleeps before answering (to make an enrich step time out).
 */
#include <stdlib.h>
#include <time.h>
#include <kanal/kanal.h>

static const kanal_option_t s_options[] = {
	{ .name = "reject",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "false",
	  .help = "REJECT every request" },
	{ .name = "delay",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "0",
	  .help = "sleep this long before answering" },
	{ .name = "retry_first",
	  .type = KANAL_OPT_INT,
	  .default_value = "0",
	  .help = "answer RETRY to the first N requests" },
	{ .name = NULL, .type = 0 },
};

typedef struct service {
	bool reject;
	int64_t delay_ms;
	int64_t retry_first;
} service_t;

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	service_t *svc = calloc(1, sizeof *svc);

	if (!svc)
		return KANAL_ENOMEM;
	svc->reject = kanal_config_bool(cfg, "reject");
	svc->delay_ms = kanal_config_duration_ms(cfg, "delay");
	svc->retry_first = kanal_config_int(cfg, "retry_first");
	*state = svc;
	return 0;
}

static void s_destroy(void *state)
{
	free(state);
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	service_t *svc = state;
	kanal_msg_t *reply;

	if (svc->delay_ms > 0) {
		struct timespec ts = { svc->delay_ms / 1000, (svc->delay_ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (svc->reject) {
		kanal_set_error(ctx, "no such person");
		return KANAL_OUTCOME_REJECT;
	}
	if (svc->retry_first > 0) {
		svc->retry_first--;
		kanal_set_error(ctx, "register busy, ask again");
		return KANAL_OUTCOME_RETRY;
	}
	if (!kanal_is_request(ctx)) {
		kanal_set_error(ctx, "tp_service only answers requests");
		return KANAL_OUTCOME_REJECT;
	}
	reply = kanal_msg_new("test.lookup.response", kanal_instance_name(ctx), NULL);
	if (!reply)
		return KANAL_OUTCOME_RETRY;
	kanal_msg_data_set_str(reply, "guardian",
			       kanal_msg_subject(msg) ? kanal_msg_subject(msg) : "unknown");
	kanal_msg_data_set_bool(reply, "looked_up", true);
	kanal_reply(ctx, msg, &reply);
	return KANAL_OUTCOME_OK;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_service",
	.version = "1.0.0",
	.description = "test service: answers enrich requests",
	.options = s_options,
	.init = s_init,
	.on_message = s_on_message,
	.destroy = s_destroy,
};
