/*
 * tests/plugins/tp_abi10.c — a plugin built against the ABI 1.0 header
 * (tests/abi/kanal-1.0/kanal/plugin.h, first on its include path; see the Makefile), to
 * prove that a host speaking 1.1 still loads and runs it. Its options table has 1.0's
 * five-field entries, smaller than 1.1's: a host that stepped through it with 1.1's stride
 * would misread every entry after the first, so the table has several, of several types,
 * and the plugin reports what it read of each.
 *
 * Each delivery is acknowledged and logged as "abi10: greeting=… count=… ratio=… loud=…
 * tags=… last=…"; events of type `reject_type` are REJECTed.
 */
#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

#if KANAL_ABI_MINOR != 0
#error "tp_abi10 must be compiled against the ABI 1.0 header (-Itests/abi/kanal-1.0 first)"
#endif

static const kanal_option_t s_options[] = {
	{ "greeting", KANAL_OPT_STRING, "hello", false, "Word to log." },
	{ "count", KANAL_OPT_INT, "1", false, "A number to log." },
	{ "ratio", KANAL_OPT_DOUBLE, "0.5", false, "Another number to log." },
	{ "loud", KANAL_OPT_BOOL, "false", false, "A flag to log." },
	{ "tags", KANAL_OPT_LIST, "[]", false, "Strings to count." },
	{ "reject_type", KANAL_OPT_STRING, NULL, false, "Events of this type are rejected." },
	{ "last", KANAL_OPT_DURATION, "2s", false, "The table's last entry, logged in ms." },
	{ NULL, 0, NULL, false, NULL },
};

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	(void)ctx;
	*state = (void *)cfg;
	return 0;
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	const kanal_config_t *cfg = state;
	const char *reject = kanal_config_string(cfg, "reject_type");

	if (reject && !strcmp(reject, kanal_msg_type(msg))) {
		kanal_set_error(ctx, "abi10 rejects %s", reject);
		return KANAL_OUTCOME_REJECT;
	}
	kanal_log(ctx, KANAL_LOG_INFO,
		  "abi10: greeting=%s count=%lld ratio=%.2f loud=%s tags=%zu "
		  "last=%lld",
		  kanal_config_string(cfg, "greeting"), (long long)kanal_config_int(cfg, "count"),
		  kanal_config_double(cfg, "ratio"), kanal_config_bool(cfg, "loud") ? "yes" : "no",
		  kanal_config_list_count(cfg, "tags"),
		  (long long)kanal_config_duration_ms(cfg, "last"));
	return KANAL_OUTCOME_OK;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_abi10",
	.version = "1.0.0",
	.description = "Built against plugin ABI 1.0.",
	.options = s_options,
	.init = s_init,
	.on_message = s_on_message,
};
