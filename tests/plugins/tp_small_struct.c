/*
 * tests/plugins/tp_small_struct.c — a descriptor claiming fewer bytes than ABI 1.0's
 * fields: the host must not read past what the plugin says it has.
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
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = 24,
	.name = "tp_small_struct",
	.version = "1.0.0",
	.init = s_init,
};
