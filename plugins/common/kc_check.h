/*
 * plugins/common/kc_check.h — the check callback (kanal/plugin.h, ABI 1.1) of a connector
 * whose init has no side effects: it validates, reads files (secrets, certificates, a
 * tokens file, a data template) and allocates, but creates no file, opens no connection
 * and starts no thread. Such a connector's check is its init followed by its destroy, so
 * that `kanalctl check` applies every rule of init and none is written twice. A connector
 * whose init does create something (a folder, an audit log) writes a check of its own that
 * shares a validation function with init instead.
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a) and compiled with hidden visibility, so nothing here is
 * exported from a plugin. Functions are prefixed kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_KC_CHECK_H
#define KANAL_PLUGINS_KC_CHECK_H

#include <kanal/kanal.h>

/* Runs init(ctx, cfg, &state) and, when it succeeded, destroy(state) (destroy may be
 * NULL). Returns init's result; its error is on ctx (kanal_set_error). Only for an init
 * without side effects (see above). Ownership: borrows everything. */
int kc_check_by_init(kanal_ctx_t *ctx, const kanal_config_t *cfg,
		     int (*init)(kanal_ctx_t *, const kanal_config_t *, void **),
		     void (*destroy)(void *));

/* Defines `static int s_check(ctx, cfg)` as kc_check_by_init over the plugin's s_init and
 * s_destroy, for the descriptor's `.check`. */
#define KC_CHECK_BY_INIT(init_fn, destroy_fn)                                                      \
	static int s_check(kanal_ctx_t *ctx, const kanal_config_t *cfg)                            \
	{                                                                                          \
		return kc_check_by_init(ctx, cfg, init_fn, destroy_fn);                            \
	}

#endif
