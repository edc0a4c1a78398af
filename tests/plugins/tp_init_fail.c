/*
 * tests/plugins/tp_init_fail.c — a plugin whose init always fails with KANAL_EIO after
 * kanal_set_error. The text quotes a (synthetic) CPR number, which the host must mask.
 */
#include <kanal/kanal.h>

static const kanal_option_t s_options[] = {
	{ .name = "url",
	  .type = KANAL_OPT_STRING,
	  .default_value = "http://127.0.0.1:9",
	  .help = "Upstream URL." },
	{ .name = NULL, .type = 0 },
};

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	*state = NULL;
	kanal_set_error(ctx, "cannot reach %s to look up %s: connection refused",
			kanal_config_string(cfg, "url"), "1503851233");
	return KANAL_EIO;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_init_fail",
	.version = "1.0.0",
	.options = s_options,
	.init = s_init,
};
