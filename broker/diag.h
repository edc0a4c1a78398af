/*
 * broker/diag.h — diagnostics for the config and routing-file loaders: a list of errors,
 * each "file:line:col: error: text", printed the way compilers print them (followed by the
 * offending source line and a caret) so editors can jump to them.
 */
#ifndef KANAL_DIAG_H
#define KANAL_DIAG_H

#include <stdio.h>
#include <kanal/error.h>

typedef struct diag {
	kanal_error_t *items;
	size_t count;
	size_t cap;
} diag_t;

/* Appends an error. `file` may be NULL; line/col 0 when unknown. Clear CPR numbers in the
 * text are masked. */
void diag_add(diag_t *d, const char *file, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* Appends a copy of an error record. */
void diag_add_error(diag_t *d, const kanal_error_t *err);
/* The same as a kanal_error_fn (arg is the diag_t), for kanal__config_build_all. */
void diag_add_error_fn(void *d, const kanal_error_t *err);
/* Prints every error, each followed by its source line and a caret when the file and line
 * can be read. */
void diag_print(const diag_t *d, FILE *out);
/* Formats every error, one per line, without the source lines ("a\nb\n"); the caller frees. */
char *diag_join(const diag_t *d);
/* The same with `sep` after each error instead of a newline ("a; b; " with "; "). */
char *diag_join_sep(const diag_t *d, const char *sep);
void diag_free(diag_t *d);

#endif
