/*
 * sdk/state.c — a plugin's small durable state (a poller's cursor, a feed's seen-list): the
 * kanal_state_get/put services of kanal/plugin.h. By default each key is a file of the
 * instance's state folder, written atomically (a temporary file, fsync, rename, fsync of the
 * folder; mode 0600), so a crash leaves the old value or the new and the cursor files that
 * pollers wrote before this API (same names) are read as they are. A host may route them
 * elsewhere through its ops table: kanald does, in cluster mode, for a singleton instance
 * (its state then lives in the <prefix>_STATE key-value bucket, so the node that takes the
 * instance over resumes where the last one stopped; docs/design/cluster.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file_atomic.h"
#include "host.h"

bool kanal__state_key_ok(const char *key)
{
	size_t n = key ? strlen(key) : 0;

	if (n == 0 || n > KANAL_STATE_KEY_MAX || key[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = key[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* dir/key into path; false when it does not fit. */
static bool s_path(char *path, size_t size, const char *dir, const char *key)
{
	int n = snprintf(path, size, "%s/%s", dir, key);
	return n > 0 && (size_t)n < size;
}

int kanal__state_file_get(const kanal_ctx_t *ctx, const char *key, char **value_out,
			  kanal_error_t *err)
{
	char path[4096];
	struct stat st;
	char *buf;
	size_t n = 0;
	int fd;

	*value_out = NULL;
	if (!ctx->state_dir) {
		kanal_error_set(err, NULL, 0, 0, NULL, "instance '%s' has no state folder",
				ctx->name);
		return KANAL_ESTATE;
	}
	if (!s_path(path, sizeof path, ctx->state_dir, key))
		return KANAL_EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT)
		return KANAL_ENOTFOUND;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > KANAL_STATE_VALUE_MAX) {
		kanal_error_set(err, NULL, 0, 0, NULL, "cannot read %s: %s", path,
				fd >= 0 && st.st_size > KANAL_STATE_VALUE_MAX ? "too large"
				: fd >= 0 && !S_ISREG(st.st_mode)             ? "not a file"
									      : strerror(errno));
		if (fd >= 0)
			close(fd);
		return KANAL_EIO;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		close(fd);
		return KANAL_ENOMEM;
	}
	while (n < (size_t)st.st_size) {
		ssize_t got = read(fd, buf + n, (size_t)st.st_size - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			kanal_error_set(err, NULL, 0, 0, NULL, "cannot read %s: %s", path,
					strerror(errno));
			free(buf);
			close(fd);
			return KANAL_EIO;
		}
		if (got == 0)
			break; /* shortened meanwhile: what is there */
		n += (size_t)got;
	}
	close(fd);
	buf[n] = '\0';
	*value_out = buf;
	return 0;
}

int kanal__state_file_put(const kanal_ctx_t *ctx, const char *key, const char *value,
			  kanal_error_t *err)
{
	int rc;

	if (!ctx->state_dir) {
		kanal_error_set(err, NULL, 0, 0, NULL, "instance '%s' has no state folder",
				ctx->name);
		return KANAL_ESTATE;
	}
	rc = kanal__file_write_atomic(ctx->state_dir, key, value, strlen(value), 0600, true);
	if (rc != 0)
		kanal_error_set(err, NULL, 0, 0, NULL, "cannot write %s/%s: %s", ctx->state_dir,
				key, rc == KANAL_EIO ? strerror(errno) : kanal_strerror(rc));
	return rc;
}

/* The checks both services share: arguments, key, thread. */
static int s_check(kanal_ctx_t *ctx, const char *key, kanal_error_t *err)
{
	if (!ctx || !key)
		return KANAL_EINVAL;
	if (!kanal__state_key_ok(key)) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"state key '%.*s' is not 1-%d of A-Z a-z 0-9 . _ - (not starting "
				"with '.')",
				KANAL_STATE_KEY_MAX, key, KANAL_STATE_KEY_MAX);
		return KANAL_EINVAL;
	}
	if (ctx->bound && !pthread_equal(pthread_self(), ctx->thread))
		return KANAL_ETHREAD;
	return 0;
}

int kanal_state_get(kanal_ctx_t *ctx, const char *key, char **value_out, kanal_error_t *err)
{
	int rc;

	if (!value_out)
		return KANAL_EINVAL;
	*value_out = NULL;
	if ((rc = s_check(ctx, key, err)) != 0)
		return rc;
	if (ctx->ops && ctx->ops->state_get)
		return ctx->ops->state_get(ctx, key, value_out, err);
	return kanal__state_file_get(ctx, key, value_out, err);
}

int kanal_state_put(kanal_ctx_t *ctx, const char *key, const char *value, kanal_error_t *err)
{
	int rc;

	if (!value)
		return KANAL_EINVAL;
	if ((rc = s_check(ctx, key, err)) != 0)
		return rc;
	if (strlen(value) > KANAL_STATE_VALUE_MAX) {
		kanal_error_set(err, NULL, 0, 0, NULL, "state '%s': value larger than %d bytes",
				key, KANAL_STATE_VALUE_MAX);
		return KANAL_ETOOBIG;
	}
	if (ctx->ops && ctx->ops->state_put)
		return ctx->ops->state_put(ctx, key, value, err);
	return kanal__state_file_put(ctx, key, value, err);
}
