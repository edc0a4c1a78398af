/*
 * tests/plugins/tp_hang.c — a plugin that hangs on purpose, for the isolation tests: an
 * event of type `hang.now` makes on_message sleep for ever; one of type `hang.timer` is
 * answered OK but leaves behind a timer whose callback sleeps for ever (a hang no delivery
 * is waiting for). Every other event has its id appended, one per line, to the file given
 * by the option `path`, and is answered OK. Before hanging it logs "hanging on <id>", so a
 * test can tell the moment.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kanal/kanal.h>

static const kanal_option_t s_options[] = {
	{ .name = "path",
	  .type = KANAL_OPT_PATH,
	  .required = true,
	  .help = "File to append the id of each event to." },
	{ .name = NULL, .type = 0 },
};

typedef struct hang {
	int fd;
} hang_t;

static void s_sleep_for_ever(void)
{
	for (;;) {
		struct timespec ts = { 3600, 0 };
		nanosleep(&ts, NULL);
	}
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	hang_t *h = calloc(1, sizeof *h);
	const char *path = kanal_config_string(cfg, "path");

	if (!h) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	h->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (h->fd < 0) {
		kanal_set_error(ctx, "cannot open %s", path);
		free(h);
		return KANAL_EIO;
	}
	*state = h;
	return 0;
}

static void s_destroy(void *state)
{
	hang_t *h = state;

	close(h->fd);
	free(h);
}

static void s_hang_timer(kanal_ctx_t *ctx, void *arg)
{
	(void)arg;
	kanal_log(ctx, KANAL_LOG_INFO, "hanging in a timer");
	s_sleep_for_ever();
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	hang_t *h = state;
	const char *type = kanal_msg_type(msg);
	char line[300];
	size_t len;

	if (!strcmp(type, "hang.now")) {
		kanal_log(ctx, KANAL_LOG_INFO, "hanging on %s", kanal_msg_id(msg));
		s_sleep_for_ever();
	}
	if (!strcmp(type, "hang.timer")) {
		if (kanal_timer_add(ctx, 0, 0, s_hang_timer, NULL) < 0) {
			kanal_set_error(ctx, "cannot add the timer");
			return KANAL_OUTCOME_RETRY;
		}
		return KANAL_OUTCOME_OK;
	}
	len = (size_t)snprintf(line, sizeof line, "%s\n", kanal_msg_id(msg));
	if (len >= sizeof line || write(h->fd, line, len) != (ssize_t)len) {
		kanal_set_error(ctx, "cannot record event %s", kanal_msg_id(msg));
		return KANAL_OUTCOME_RETRY;
	}
	return KANAL_OUTCOME_OK;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_hang",
	.version = "1.0.0",
	.description = "Test plugin: hangs on hang.now, or in a timer after hang.timer.",
	.options = s_options,
	.init = s_init,
	.on_message = s_on_message,
	.destroy = s_destroy,
};
