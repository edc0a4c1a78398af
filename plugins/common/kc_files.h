/*
 * plugins/common/kc_files.h — files written atomically (a cursor in the state folder, a print job in a
 * spool folder) and secrets read from private files.
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a) and compiled with hidden visibility, so nothing here is
 * exported from a plugin. Functions are prefixed kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_KC_FILES_H
#define KANAL_PLUGINS_KC_FILES_H

#include <stddef.h>
#include <sys/types.h>

#include <kanal/kanal.h>

/* Writes dir/name atomically: a temporary file in dir, written, fsync'd, renamed over
 * name, and dir fsync'd, so a reader (or a restart after a crash) sees the old content or
 * the new, never a part. mode is the new file's permissions (e.g. 0600). Returns 0 or a
 * negative KANAL_E code (KANAL_EIO with errno kept). Ownership: borrows everything. */
int kc_file_write_atomic(const char *dir, const char *name, const void *buf, size_t len,
			 mode_t mode);

/* Makes the new file dir/name the same atomic way, but never over an existing one: the
 * temporary file's name is unique (several writers may make files in dir at once) and the
 * rename is renameat2(RENAME_NOREPLACE). Returns 0 or a negative KANAL_E code (KANAL_EIO
 * with errno kept: EEXIST when the name is taken, ENOSPC on a full disk).
 * Ownership: borrows everything. */
int kc_file_create_atomic(const char *dir, const char *name, const void *buf, size_t len,
			  mode_t mode);

/* Reads dir/name (dir NULL: name is the whole path) whole. Returns 0 and a malloc'd NUL-terminated *out (free with free()),
 * KANAL_ENOTFOUND when there is no such file, or another negative code. */
int kc_file_read(const char *dir, const char *name, char **out, size_t *len);

/* The instance's state under key `name` (kanal_state_get/put of kanal/plugin.h: a file of
 * its state folder, or in cluster mode the cluster's store for a singleton), for a caller
 * that holds bytes and a length; the value is text (it ends at its first NUL). */
int kc_state_write(kanal_ctx_t *ctx, const char *name, const void *buf, size_t len);
int kc_state_read(kanal_ctx_t *ctx, const char *name, char **out, size_t *len);

/* Reads a secret (a token or password) from the file at path, for the option called
 * `option`: the file must be private (no access for group or others: mode 0600 or 0400),
 * and the secret is its first line (a trailing newline ignored; it must not be empty).
 * Returns 0 and a malloc'd *out (wipe and free it when done), or KANAL_ECONFIG with the
 * error set on ctx naming the option, the file and the cause — never the secret. */
int kc_secret_read(kanal_ctx_t *ctx, const char *option, const char *path, char **out);

/* Reads the whole private file at path (a certificate's key, a PKCS#12 bundle) for the
 * option called `option`, under the same rule as kc_secret_read: no access for group or
 * others. Returns 0 and a malloc'd NUL-terminated *out of *len bytes (wipe and free it),
 * or KANAL_ECONFIG with err naming the option, the file and the cause.
 * Ownership: borrows everything; fills *out and err. */
int kc_private_file_read(const char *option, const char *path, char **out, size_t *len,
			 kanal_error_t *err);

/* Says, without creating or changing anything, whether path could be opened for
 * appending: an existing file must be a regular file (not a symlink) this process may
 * write; a missing one needs a folder this process may create files in. For a plugin's
 * check callback (kanal/plugin.h), whose init then opens the file for real. Returns 0, or
 * -1 with errno set (EISDIR, or ELOOP for a symlink, when it exists but is not a regular
 * file). Ownership: borrows path. */
int kc_file_appendable(const char *path);

#endif
