/*
 * tests/plugins/tp_check.c — a plugin with a check callback (ABI 1.1): `low` must not
 * exceed `high`, and `file`, when given, must exist. init runs the same validation and then
 * counts itself in `init_marker` (a file it creates), so a test can see whether init ran.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <kanal/kanal.h>

typedef struct tp_check {
	int64_t low, high;
	const char *file;
	const char *init_marker;
} tp_check_t;

static const kanal_option_t s_options[] = {
	{ .name = "low",
	  .type = KANAL_OPT_INT,
	  .default_value = "0",
	  KANAL_OPT_AT(tp_check_t, low) },
	{ .name = "high",
	  .type = KANAL_OPT_INT,
	  .default_value = "10",
	  KANAL_OPT_AT(tp_check_t, high) },
	{ .name = "file", .type = KANAL_OPT_PATH, KANAL_OPT_AT(tp_check_t, file) },
	{ .name = "init_marker", .type = KANAL_OPT_PATH, KANAL_OPT_AT(tp_check_t, init_marker) },
	{ .name = NULL },
};

/* The rules of both check and init. Returns 0 or KANAL_ECONFIG after kanal_set_error. */
static int s_validate(kanal_ctx_t *ctx, const tp_check_t *t)
{
	kanal_msg_t *msg = kanal_msg_new("tp.check", "tp", "1");

	/* A check ctx offers no emit: what a check tries beyond validating fails. */
	if (msg && kanal_emit(ctx, &msg) == 0)
		kanal_log(ctx, KANAL_LOG_WARN, "emit worked from a check");
	if (t->low > t->high) {
		kanal_set_error(ctx,
				"options 'low' (%lld) and 'high' (%lld): low must not exceed high",
				(long long)t->low, (long long)t->high);
		return KANAL_ECONFIG;
	}
	if (t->file && access(t->file, R_OK) != 0) {
		kanal_set_error(ctx, "option 'file': %s does not exist", t->file);
		return KANAL_ECONFIG;
	}
	kanal_log(ctx, KANAL_LOG_WARN, "option 'high': %lld is generous", (long long)t->high);
	return 0;
}

static int s_check(kanal_ctx_t *ctx, const kanal_config_t *cfg)
{
	tp_check_t t = { 0 };

	kanal_config_bind(cfg, &t);
	return s_validate(ctx, &t);
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	tp_check_t *t = calloc(1, sizeof *t);
	FILE *f;

	if (!t)
		return KANAL_ENOMEM;
	kanal_config_bind(cfg, t);
	if (s_validate(ctx, t) != 0) {
		free(t);
		return KANAL_ECONFIG;
	}
	if (t->init_marker && (f = fopen(t->init_marker, "a"))) {
		fputs("init\n", f);
		fclose(f);
	}
	*state = t;
	return 0;
}

static void s_destroy(void *state)
{
	free(state);
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_check",
	.version = "1.0.0",
	.options = s_options,
	.init = s_init,
	.destroy = s_destroy,
	.check = s_check,
};
