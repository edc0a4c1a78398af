/*
 * kanal/error.h — the one list of error codes used by libkanal, kanald and plugins.
 *
 * Every int-returning kanal function returns 0 on success and a negative KANAL_E* code on
 * failure. The list is an X-macro so that the enum and kanal_strerror() cannot drift apart.
 */
#ifndef KANAL_ERROR_H
#define KANAL_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Only what this header declares is exported from libkanal, which is built with
 * -fvisibility=hidden (docs/design/library.md). */
#pragma GCC visibility push(default)

#define KANAL_ERRNO_MAP(X)                                                                         \
	X(EINVAL, 1, "invalid argument")                                                           \
	X(ENOMEM, 2, "out of memory")                                                              \
	X(EPARSE, 3, "malformed input")                                                            \
	X(EINVALID, 4, "invalid CloudEvent")                                                       \
	X(ETOOBIG, 5, "event larger than the configured limit")                                    \
	X(ENOTFOUND, 6, "not found")                                                               \
	X(EBUSY, 7, "busy: destination queue full, try again later")                               \
	X(ETIMEDOUT, 8, "timed out")                                                               \
	X(ECLOSED, 9, "shutting down")                                                             \
	X(EABI, 10, "plugin ABI mismatch")                                                         \
	X(ECONFIG, 11, "configuration error")                                                      \
	X(EIO, 12, "input/output error")                                                           \
	X(EREJECTED, 13, "rejected by the destination")                                            \
	X(ENOSERVICE, 14, "no such service instance")                                              \
	X(ETHREAD, 15, "called from outside the instance's thread")                                \
	X(EDUPLICATE, 16, "duplicate event")                                                       \
	X(ESTATE, 17, "not allowed in the current state")                                          \
	X(EPLUGIN, 18, "plugin failed")                                                            \
	X(EFORBIDDEN, 19, "not allowed by the access-control list")

typedef enum kanal_errno {
	KANAL_OK = 0, /* success: kanal_errname(0) is "KANAL_OK" */
#define KANAL_X_(name, num, text) KANAL_##name = -(num),
	KANAL_ERRNO_MAP(KANAL_X_)
#undef KANAL_X_
} kanal_errno_t;

/* The SDK 1.0 spelling of KANAL_OK, kept so that code using it still builds. */
#define KANAL_OK_ KANAL_OK

/* Returns a static, human-readable description of `code` (0 or a KANAL_E* value); an
 * unknown code gives "unknown error"; 0 gives "success". Ownership: none (plain values);
 * the string is static. */
const char *kanal_strerror(int code);

/* Returns the symbolic name of `code` ("KANAL_EBUSY"; "KANAL_OK" for 0), or
 * "KANAL_EUNKNOWN". Ownership: none (plain values); the string is static. */
const char *kanal_errname(int code);

/*
 * A caller-owned error record filled by parsers: where (source file or "<event>", line and
 * column, both 1-based, 0 when not applicable), which attribute or key is at fault, and a
 * text. The first error wins: a filled record is not overwritten (see kanal_error_set).
 */
typedef struct kanal_error {
	char source[256];
	int line;
	int column;
	char attribute[64];
	char text[512];
} kanal_error_t;

/* Clears `err` (accepts NULL). Ownership: borrows err. */
void kanal_error_clear(kanal_error_t *err);

/* Fills `err` unless it already holds an error (first error wins). `attribute` may be NULL.
 * Clear CPR numbers in the formatted text are masked. Accepts err == NULL.
 * Ownership: borrows err (filled in place); copies the strings. */
void kanal_error_set(kanal_error_t *err, const char *source, int line, int column,
		     const char *attribute, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* Formats `err` as "source:line:col: error: text" (line and col left out when 0) into
 * buf[size], cut to fit; "" for a NULL err. Ownership: borrows err; writes into buf. */
void kanal_error_format(const kanal_error_t *err, char *buf, size_t size);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
