/*
 * tests/plugins/tp_no_descriptor.c — a shared object that exports a function but no
 * `kanal_plugin` descriptor: the loader must say it is not a kanal plugin.
 */
__attribute__((visibility("default"))) int tp_not_a_plugin(void);

int tp_not_a_plugin(void)
{
	return 42;
}
