/*
 * tests/plugins/tp_flush.c — a source that emits `count` events with ids "fl-<n>" when it
 * starts, calls kanal_emit_flush, and then writes the flush's result to the file `marker`
 * — the moment an upstream would advance its cursor. If the marker already exists (a
 * restart) it emits nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <kanal/kanal.h>

static const kanal_option_t s_options[] = {
	{ .name = "count",
	  .type = KANAL_OPT_INT,
	  .default_value = "100",
	  .help = "how many events to emit" },
	{ .name = "marker",
	  .type = KANAL_OPT_PATH,
	  .required = true,
	  .help = "file written after the flush" },
	{ .name = NULL, .type = 0 },
};

typedef struct flusher {
	int64_t count;
	const char *marker;
} flusher_t;

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	flusher_t *f = calloc(1, sizeof *f);

	if (!f)
		return KANAL_ENOMEM;
	f->count = kanal_config_int(cfg, "count");
	f->marker = kanal_config_string(cfg, "marker");
	*state = f;
	return 0;
}

static void s_run(kanal_ctx_t *ctx, void *arg)
{
	flusher_t *f = arg;
	int rc = 0;
	FILE *out;

	for (int64_t i = 0; i < f->count; i++) {
		char id[32];
		kanal_msg_t *m;
		snprintf(id, sizeof id, "fl-%lld", (long long)i);
		m = kanal_msg_new("test.flush", kanal_instance_name(ctx), id);
		while ((rc = kanal_emit(ctx, &m)) == KANAL_EBUSY)
			m = kanal_msg_new("test.flush", kanal_instance_name(ctx), id);
		if (rc < 0)
			break;
	}
	if (rc == 0)
		rc = kanal_emit_flush(ctx, 10000);
	out = fopen(f->marker, "w");
	if (out) {
		fprintf(out, "%d\n", rc);
		fclose(out);
	}
}

static int s_start(kanal_ctx_t *ctx, void *state)
{
	flusher_t *f = state;

	if (access(f->marker, F_OK) == 0)
		return 0;
	return kanal_timer_add(ctx, 0, 0, s_run, f) > 0 ? 0 : KANAL_EPLUGIN;
}

static void s_destroy(void *state)
{
	free(state);
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_flush",
	.version = "1.0.0",
	.description = "test source: emit, flush, then mark",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.destroy = s_destroy,
};
