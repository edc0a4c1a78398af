/*
 * sdk/file_atomic.h — the one "write a file so that a crash never leaves half of it" of the
 * code base: a temporary file in the same folder, written, fsync'd, renamed into place, and
 * the folder fsync'd. libkanal uses it for kanal_state_put's files (state.c); the bundled
 * plugins' helpers (plugins/common/kc_files.c) for cursors, spool and print jobs. It is a
 * static inline function of this private header, compiled into each: a plugin cannot reach
 * libkanal's internals, and one object in both libkanal and the connectors' static library
 * would be defined twice in the programs and tests that link both.
 */
#ifndef KANAL_FILE_ATOMIC_H
#define KANAL_FILE_ATOMIC_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <kanal/error.h>

/* Writes dir/name atomically with permissions `mode`. `replace`: renames over an existing
 * file (one writer: the temporary file is dir/.name.tmp); otherwise the temporary name is
 * unique (several writers may make files in dir at once) and the rename never replaces (it
 * fails with errno EEXIST). Returns 0, KANAL_EINVAL (a name with '/', a path too long) or
 * KANAL_EIO with errno kept. Ownership: borrows everything. */
static inline int kanal__file_write_atomic(const char *dir, const char *name, const void *buf,
					   size_t len, mode_t mode, bool replace)
{
	char tmp[4096], path[4096];
	const char *p = buf;
	int fd, dfd, saved;

	if (!dir || !name || !*name || strchr(name, '/') ||
	    (size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path ||
	    (size_t)snprintf(tmp, sizeof tmp, replace ? "%s/.%s.tmp" : "%s/.%s.XXXXXX", dir,
			     name) >= sizeof tmp)
		return KANAL_EINVAL;
	fd = replace ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
		     : mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return KANAL_EIO;
	if (!replace && fchmod(fd, mode) != 0)
		goto fail;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if ((replace ? rename(tmp, path)
		     : renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE)) != 0)
		goto fail;
	/* The rename itself is durable only once the folder is. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 0;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = saved;
	return KANAL_EIO;
}

#endif
