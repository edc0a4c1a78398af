/*
 * tests/plugins/tp_abi_major.c — a plugin built for a future plugin ABI 2.0: the loader
 * must refuse it, naming both versions.
 */
#include <kanal/kanal.h>

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	(void)ctx;
	(void)cfg;
	*state = NULL;
	return 0;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = 2,
	.abi_minor = 0,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_abi_major",
	.version = "1.0.0",
	.init = s_init,
};
