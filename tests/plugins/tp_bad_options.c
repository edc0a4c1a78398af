/*
 * tests/plugins/tp_bad_options.c — a plugin whose options table has a name that is not
 * [a-z0-9_]: the loader must refuse it before any of its code runs.
 */
#include <kanal/kanal.h>

static const kanal_option_t s_options[] = {
	{ .name = "url", .type = KANAL_OPT_STRING, .required = true, .help = "Upstream URL." },
	{ .name = "Poll-Interval",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "5s",
	  .help = "How often to poll." },
	{ .name = NULL, .type = 0 },
};

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	(void)ctx;
	(void)cfg;
	*state = NULL;
	return 0;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_bad_options",
	.version = "1.0.0",
	.options = s_options,
	.init = s_init,
};
