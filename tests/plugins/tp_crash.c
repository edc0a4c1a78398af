/*
 * tests/plugins/tp_crash.c — a plugin that crashes on purpose, for the isolation tests: an
 * event of type `crash.now` makes it die of a segmentation fault, one of type
 * `crash.abort` makes it abort(); every other event has its id appended, one per line, to
 * the file given by the option `path`, and is answered OK. With `crash_init_if` set, init
 * segfaults while that file exists (a plugin host that cannot even start).
 *
 * The crash restores the default action of SIGSEGV first, so that a sanitizer's handler in
 * a test build cannot turn the death by signal into an ordinary exit.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kanal/kanal.h>

static const kanal_option_t s_options[] = {
	{ .name = "path",
	  .type = KANAL_OPT_PATH,
	  .required = true,
	  .help = "File to append the id of each event to." },
	{ .name = "crash_init_if",
	  .type = KANAL_OPT_PATH,
	  .help = "init segfaults while this file exists." },
	{ .name = NULL, .type = 0 },
};

typedef struct crash {
	int fd;
} crash_t;

static void s_segfault(void)
{
	signal(SIGSEGV, SIG_DFL);
	raise(SIGSEGV);
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	const char *path = kanal_config_string(cfg, "path");
	const char *marker = kanal_config_string(cfg, "crash_init_if");
	crash_t *c;

	if (marker && access(marker, F_OK) == 0)
		s_segfault();
	c = calloc(1, sizeof *c);
	if (!c) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	c->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (c->fd < 0) {
		kanal_set_error(ctx, "cannot open %s", path);
		free(c);
		return KANAL_EIO;
	}
	*state = c;
	return 0;
}

static void s_destroy(void *state)
{
	crash_t *c = state;

	close(c->fd);
	free(c);
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	crash_t *c = state;
	const char *type = kanal_msg_type(msg);
	char line[300];
	size_t len;

	if (!strcmp(type, "crash.now"))
		s_segfault();
	if (!strcmp(type, "crash.abort"))
		abort();
	len = (size_t)snprintf(line, sizeof line, "%s\n", kanal_msg_id(msg));
	if (len >= sizeof line || write(c->fd, line, len) != (ssize_t)len) {
		kanal_set_error(ctx, "cannot record event %s", kanal_msg_id(msg));
		return KANAL_OUTCOME_RETRY;
	}
	return KANAL_OUTCOME_OK;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_crash",
	.version = "1.0.0",
	.description = "Test plugin: segfaults on crash.now, aborts on crash.abort.",
	.options = s_options,
	.init = s_init,
	.on_message = s_on_message,
	.destroy = s_destroy,
};
