/*
 * plugins/common/kc_check.c — the check callback of a connector whose init has no side
 * effects: init, then destroy (kc_check.h).
 */
#include "kc_check.h"

int kc_check_by_init(kanal_ctx_t *ctx, const kanal_config_t *cfg,
		     int (*init)(kanal_ctx_t *, const kanal_config_t *, void **),
		     void (*destroy)(void *))
{
	void *state = NULL;
	int rc = init(ctx, cfg, &state);

	if (rc == 0 && destroy)
		destroy(state);
	return rc;
}
