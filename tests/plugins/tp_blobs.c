/*
 * tests/plugins/tp_blobs.c — a destination that reads the blobs its events name, for the
 * blob store's integration tests (tests/integration/test_blobs.c).
 *
 * For each blob URI in an event's `kanalblob` attribute it calls kanal_blob_get and appends
 * a line "<event id> <uri> <size> <first bytes of the content>" to the file `path`; a blob
 * it cannot read (missing, damaged) REJECTs the delivery with kanal_blob_get's error.
 * Events of type `reject_type` are REJECTed without reading anything (to make dead
 * letters), of type `retry_type` RETRYed (to keep an event open across a restart).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

typedef struct blobs {
	const char *path;
	const char *reject_type;
	const char *retry_type;
} blobs_t;

#define OPT(member) KANAL_OPT_AT(blobs_t, member)

static const kanal_option_t s_options[] = {
	{ .name = "path",
	  .type = KANAL_OPT_PATH,
	  .required = true,
	  OPT(path),
	  .help = "File the read blobs are written to, a line each." },
	{ .name = "reject_type",
	  .type = KANAL_OPT_STRING,
	  OPT(reject_type),
	  .help = "Events of this type are rejected unread." },
	{ .name = "retry_type",
	  .type = KANAL_OPT_STRING,
	  OPT(retry_type),
	  .help = "Events of this type are answered RETRY." },
	{ .name = NULL, .type = 0 },
};

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	blobs_t *b = calloc(1, sizeof *b);

	if (!b)
		return KANAL_ENOMEM;
	kanal_config_bind(cfg, b);
	*state = b;
	return 0;
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	blobs_t *b = state;
	const char *type = kanal_msg_type(msg);
	const char *attr = kanal_msg_attr(msg, KANAL_BLOB_ATTRIBUTE);
	char uri[KANAL_BLOB_URI_SIZE];
	FILE *f;

	if (b->reject_type && !strcmp(type, b->reject_type)) {
		kanal_set_error(ctx, "rejected by the test's reject_type");
		return KANAL_OUTCOME_REJECT;
	}
	if (b->retry_type && !strcmp(type, b->retry_type)) {
		kanal_set_error(ctx, "retried by the test's retry_type");
		kanal_set_retry_after(ctx, 200);
		return KANAL_OUTCOME_RETRY;
	}
	f = fopen(b->path, "a");
	if (!f)
		return KANAL_OUTCOME_RETRY;
	for (const char *p = attr; p && *p;) {
		size_t len = strcspn(p, " ");
		void *data = NULL;
		size_t size = 0;
		kanal_error_t err;
		int rc;

		if (len == 0 || len >= sizeof uri) {
			p += len + (p[len] == ' ');
			continue;
		}
		memcpy(uri, p, len);
		uri[len] = '\0';
		p += len + (p[len] == ' ');
		kanal_error_clear(&err);
		rc = kanal_blob_get(ctx, uri, &data, &size, &err);
		if (rc != 0) {
			fclose(f);
			kanal_set_error(ctx, "%s", err.text);
			return KANAL_OUTCOME_REJECT;
		}
		fprintf(f, "%s %s %zu %.16s\n", kanal_msg_id(msg), uri, size, (char *)data);
		kanal_blob_free(&data);
	}
	fclose(f);
	return KANAL_OUTCOME_OK;
}

static void s_destroy(void *state)
{
	free(state);
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_blobs",
	.version = "1.0.0",
	.description = "Test plugin: reads the blobs its events name.",
	.options = s_options,
	.init = s_init,
	.on_message = s_on_message,
	.destroy = s_destroy,
};
