/*
 * tests/plugins/tp_abi_minor.c — a plugin built for plugin ABI 1.99, newer than any host
 * of ABI 1.0: the loader must refuse it and say to upgrade.
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
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = 99,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_abi_minor",
	.version = "1.0.0",
	.init = s_init,
};
