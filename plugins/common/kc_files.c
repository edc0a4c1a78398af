/*
 * plugins/common/kc_files.c — files written so that a crash never leaves half of one: a
 * poller's cursor in the state folder, a print job in a spool folder. write + fsync +
 * rename + fsync of the folder is the POSIX recipe; readers see the old file or the new.
 */
#include "kc_files.h"
#include "../../sdk/file_atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int kc_file_write_atomic(const char *dir, const char *name, const void *buf, size_t len,
			 mode_t mode)
{
	return kanal__file_write_atomic(dir, name, buf, len, mode, true);
}

int kc_file_create_atomic(const char *dir, const char *name, const void *buf, size_t len,
			  mode_t mode)
{
	return kanal__file_write_atomic(dir, name, buf, len, mode, false);
}

int kc_file_read(const char *dir, const char *name, char **out, size_t *len)
{
	char path[4096];
	FILE *f;
	char *buf = NULL;
	size_t n = 0, cap = 0;

	*out = NULL;
	if (len)
		*len = 0;
	if ((size_t)(dir ? snprintf(path, sizeof path, "%s/%s", dir, name)
			 : snprintf(path, sizeof path, "%s", name)) >= sizeof path)
		return KANAL_EINVAL;
	f = fopen(path, "rb");
	if (!f)
		return errno == ENOENT ? KANAL_ENOTFOUND : KANAL_EIO;
	for (;;) {
		size_t got;
		if (n + 4097 > cap) {
			char *b = realloc(buf, cap = cap ? cap * 2 : 8192);
			if (!b) {
				free(buf);
				fclose(f);
				return KANAL_ENOMEM;
			}
			buf = b;
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		free(buf);
		fclose(f);
		return KANAL_EIO;
	}
	fclose(f);
	buf[n] = '\0';
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

int kc_state_write(kanal_ctx_t *ctx, const char *name, const void *buf, size_t len)
{
	char *text = strndup(buf, len);
	int rc;

	if (!text)
		return KANAL_ENOMEM;
	rc = kanal_state_put(ctx, name, text, NULL);
	free(text);
	return rc;
}

int kc_state_read(kanal_ctx_t *ctx, const char *name, char **out, size_t *len)
{
	int rc = kanal_state_get(ctx, name, out, NULL);

	if (len)
		*len = rc == 0 ? strlen(*out) : 0;
	return rc;
}

int kc_private_file_read(const char *option, const char *path, char **out, size_t *len,
			 kanal_error_t *err)
{
	struct stat st;
	int rc;

	*out = NULL;
	if (stat(path, &st) != 0) {
		kanal_error_set(err, NULL, 0, 0, option, "option '%s': cannot read '%s': %s",
				option, path, strerror(errno));
		return KANAL_ECONFIG;
	}
	if (st.st_mode & 077) {
		kanal_error_set(err, NULL, 0, 0, option,
				"option '%s': '%s' may be read by others (mode %04o); make it "
				"0600 or 0400 (chmod 600 %s)",
				option, path, (unsigned)(st.st_mode & 07777), path);
		return KANAL_ECONFIG;
	}
	if ((rc = kc_file_read(NULL, path, out, len)) != 0) {
		kanal_error_set(err, NULL, 0, 0, option, "option '%s': cannot read '%s': %s",
				option, path, kanal_strerror(rc));
		return KANAL_ECONFIG;
	}
	return 0;
}

int kc_secret_read(kanal_ctx_t *ctx, const char *option, const char *path, char **out)
{
	kanal_error_t err = { 0 };
	char *text = NULL;
	size_t len = 0;

	*out = NULL;
	if (kc_private_file_read(option, path, &text, &len, &err) != 0) {
		kanal_set_error(ctx, "%s", err.text);
		return KANAL_ECONFIG;
	}
	{
		size_t first = strcspn(text, "\r\n");
		memset(text + first, 0, len - first); /* what follows the secret goes too */
		len = first;
	}
	if (len == 0) {
		free(text);
		kanal_set_error(ctx, "option '%s': '%s' holds no secret on its first line", option,
				path);
		return KANAL_ECONFIG;
	}
	*out = text;
	return 0;
}

int kc_file_appendable(const char *path)
{
	struct stat st;
	char *copy;
	int rc;

	if (lstat(path, &st) == 0) {
		if (S_ISREG(st.st_mode))
			return access(path, W_OK) == 0 ? 0 : -1;
		errno = S_ISLNK(st.st_mode) ? ELOOP : EISDIR;
		return -1;
	}
	if (errno != ENOENT)
		return -1;
	if (!(copy = strdup(path)))
		return -1;
	rc = access(dirname(copy), W_OK | X_OK) == 0 ? 0 : -1;
	free(copy);
	return rc;
}
