/*
 * hello.c — a small but complete kanal plugin, built out of tree against the installed SDK
 * (see the Makefile beside it and docs/sdk.md). Copy it to start a connector of your own.
 *
 * For every event delivered to it, it emits a greeting:
 *
 *   in:  {"type": "…", "subject": "person:4f2a…", "data": {"name": "Ada"}, …}
 *   out: {"type": "hello.greeting", "subject": "person:4f2a…", "data": {"greeting": "Hej Ada"},
 *         "causationid": "<the id of the event it answers>", …}
 *
 * The name is taken from data.name, else from the subject. An event with neither is
 * REJECTed (a permanent failure: the route's fallback gets it). When the bus pushes back
 * the delivery answers RETRY, so the bus delivers it again later and nothing is lost.
 *
 * It shows the parts every plugin has: the options table, a check that shares its rules
 * with init, init/destroy owning the state, on_message with its three outcomes,
 * kanal_emit's ownership rule, logging without personal data, and a metric.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

/* What init allocates and destroy frees. The strings are borrowed from the config, which
 * lives until destroy. */
typedef struct hello {
	const char *greeting;
	const char *type;
	int64_t retry_after_ms;
} hello_t;

/* Each option is bound to its field of hello_t: kanal_config_bind fills them in init, and
 * the host has checked the bounds (min, max) before init runs. */
static const kanal_option_t s_options[] = {
	{ .name = "greeting",
	  .type = KANAL_OPT_STRING,
	  .default_value = "Hej",
	  KANAL_OPT_AT(hello_t, greeting),
	  .help = "The word put before the name." },
	{ .name = "type",
	  .type = KANAL_OPT_STRING,
	  .default_value = "hello.greeting",
	  KANAL_OPT_AT(hello_t, type),
	  .help = "The type of the events it emits." },
	{ .name = "retry_after",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "500ms",
	  .min = "1ms",
	  .max = "1h",
	  KANAL_OPT_AT(hello_t, retry_after_ms),
	  .help = "How long the bus should wait before delivering again when it was busy." },
	{ .name = NULL },
};

/* What the table cannot say, for check and init alike. Returns 0 or KANAL_ECONFIG after
 * kanal_set_error naming the option. */
static int s_validate(kanal_ctx_t *ctx, const hello_t *self)
{
	if (!*self->type) {
		kanal_set_error(ctx, "option 'type': must not be empty");
		return KANAL_ECONFIG;
	}
	return 0;
}

/* `kanalctl check` and `kanald --check` call this (ABI 1.1): validate, make nothing. */
static int s_check(kanal_ctx_t *ctx, const kanal_config_t *cfg)
{
	hello_t self = { 0 };

	kanal_config_bind(cfg, &self);
	return s_validate(ctx, &self);
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	hello_t *self = calloc(1, sizeof *self);

	if (!self) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	kanal_config_bind(cfg, self);
	if (s_validate(ctx, self) != 0) {
		free(self);
		return KANAL_ECONFIG;
	}
	*state = self;
	return 0;
}

static void s_destroy(void *state)
{
	free(state);
}

/* Builds the greeting for `msg` addressed to `name`. The id is derived from the incoming
 * one, so a redelivered event yields the same greeting id and the bus's duplicate
 * suppression drops the second copy. Returns a new message, or NULL when out of memory. */
static kanal_msg_t *s_greeting(kanal_ctx_t *ctx, const hello_t *self, const kanal_msg_t *msg,
			       const char *name)
{
	const char *correlation = kanal_msg_attr(msg, "correlationid");
	char *id = NULL, *text = NULL;
	kanal_msg_t *out = NULL;

	if (asprintf(&id, "%s-hello", kanal_msg_id(msg)) < 0 ||
	    asprintf(&text, "%s %s", self->greeting, name) < 0)
		goto done;
	out = kanal_msg_new(self->type, kanal_instance_name(ctx), id);
	if (!out)
		goto done;
	/* data_set_str escapes the text for JSON: never paste names into JSON by hand. */
	if (kanal_msg_data_set_str(out, "greeting", text) != 0 ||
	    kanal_msg_set_attr(out, "subject", kanal_msg_subject(msg), NULL) != 0 ||
	    kanal_msg_set_attr(out, "causationid", kanal_msg_id(msg), NULL) != 0 ||
	    kanal_msg_set_attr(out, "correlationid", correlation ? correlation : kanal_msg_id(msg),
			       NULL) != 0)
		kanal_msg_destroy(&out);
done:
	free(id);
	free(text);
	return out;
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	const hello_t *self = state;
	const char *name = NULL;
	kanal_msg_t *greeting;
	int rc;

	/* msg is borrowed: read it freely, keep nothing from it after returning. */
	if (kanal_msg_data_str(msg, "name", &name) != 0)
		name = kanal_msg_subject(msg);
	if (!name || !*name) {
		kanal_set_error(ctx,
				"event %s has neither data.name nor a subject: nobody to greet",
				kanal_msg_id(msg));
		return KANAL_OUTCOME_REJECT;
	}
	greeting = s_greeting(ctx, self, msg, name);
	if (!greeting) {
		kanal_set_error(ctx, "out of memory while greeting");
		kanal_set_retry_after(ctx, self->retry_after_ms);
		return KANAL_OUTCOME_RETRY;
	}
	/* kanal_emit takes the message whatever it answers and sets `greeting` to NULL. */
	rc = kanal_emit(ctx, &greeting);
	if (rc == KANAL_EBUSY || rc == KANAL_ECLOSED) {
		kanal_set_error(ctx, "could not emit the greeting: %s", kanal_strerror(rc));
		kanal_set_retry_after(ctx, self->retry_after_ms);
		return KANAL_OUTCOME_RETRY;
	}
	if (rc != 0) {
		kanal_set_error(ctx, "the greeting was refused: %s", kanal_strerror(rc));
		return KANAL_OUTCOME_REJECT;
	}
	/* Log the event id, not the name: a name is personal data. */
	kanal_log(ctx, KANAL_LOG_INFO, "greeted the subject of event %s", kanal_msg_id(msg));
	kanal_metric_add(ctx, "greeted", 1);
	return KANAL_OUTCOME_OK;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "hello",
	.version = "1.0.0",
	.description = "Answers every event with a hello.greeting event.",
	.options = s_options,
	.init = s_init,
	.on_message = s_on_message,
	.destroy = s_destroy,
	.check = s_check,
};
