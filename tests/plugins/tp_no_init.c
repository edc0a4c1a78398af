/*
 * tests/plugins/tp_no_init.c — a descriptor without the required init callback.
 */
#include <kanal/kanal.h>

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_no_init",
	.version = "1.0.0",
};
