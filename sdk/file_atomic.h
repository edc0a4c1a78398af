/*
 * sdk/file_atomic.h — the one "write a file so that a crash never leaves half of it" of the
 * code base: a temporary file in the same folder, written, fsync'd, renamed into place, and
 * the folder fsync'd. libkanal uses it for kanal_state_put's files (state.c); the bundled
 * plugins' helpers (plugins/common/kc_files.c) for cursors, spool and print jobs — the
 * object is linked into both (hidden: never exported from libkanal or a plugin), since a
 * plugin cannot reach libkanal's internals.
 */
#ifndef KANAL_FILE_ATOMIC_H
#define KANAL_FILE_ATOMIC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Writes dir/name atomically with permissions `mode`. `replace`: renames over an existing
 * file (one writer: the temporary file is dir/.name.tmp); otherwise the temporary name is
 * unique (several writers may make files in dir at once) and the rename never replaces (it
 * fails with errno EEXIST). Returns 0, KANAL_EINVAL (a name with '/', a path too long) or
 * KANAL_EIO with errno kept. Ownership: borrows everything. */
int kanal__file_write_atomic(const char *dir, const char *name, const void *buf, size_t len,
			     mode_t mode, bool replace);

#endif
