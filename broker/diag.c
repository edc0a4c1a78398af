/*
 * broker/diag.c — the error list of the config and routing-file loaders.
 *
 * Loaders do not stop at the first mistake: an operator who fixes one typo and reloads
 * should see every other problem at once. So each loader appends to a diag_t, and the caller
 * prints the whole list the way compilers do — "file:line:col: error: text", then the
 * offending line of the file with a caret under the column — or joins just the first lines
 * for an admin reply or a test's expected-output file.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/cpr.h>
#include "diag.h"

/* Makes room for one more record. Returns false when memory runs out; the record is then
 * lost, which is why loaders count their errors themselves and never decide success from
 * the length of this list alone. */
static bool s_reserve(diag_t *d)
{
	kanal_error_t *items;
	size_t cap;

	if (d->count < d->cap)
		return true;
	cap = d->cap ? d->cap * 2 : 8;
	items = realloc(d->items, cap * sizeof *items);
	if (!items)
		return false;
	d->items = items;
	d->cap = cap;
	return true;
}

void diag_add(diag_t *d, const char *file, int line, int col, const char *fmt, ...)
{
	char text[sizeof((kanal_error_t *)0)->text];
	kanal_error_t *err;
	va_list ap;

	if (!d || !s_reserve(d))
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	err = &d->items[d->count++];
	kanal_error_clear(err);
	/* kanal_error_set masks CPR numbers: texts quote the files, and files may hold one. */
	kanal_error_set(err, file, line > 0 ? line : 0, col > 0 ? col : 0, NULL, "%s", text);
}

void diag_add_error(diag_t *d, const kanal_error_t *err)
{
	if (!d || !err || !s_reserve(d))
		return;
	d->items[d->count] = *err;
	/* A record filled by hand may not be masked yet; masking twice is harmless. */
	kanal_cpr_redact_inplace(d->items[d->count].text);
	d->count++;
}

void diag_add_error_fn(void *d, const kanal_error_t *err)
{
	diag_add_error(d, err);
}

/* Reads line `line` (1-based) of `path` into a new string without its line end, or returns
 * NULL when the file or the line cannot be read. */
static char *s_read_line(const char *path, int line)
{
	FILE *f;
	char *buf = NULL;
	size_t size = 0;
	ssize_t n = -1;
	int at;

	f = fopen(path, "r");
	if (!f)
		return NULL;
	for (at = 1; at <= line; at++) {
		n = getline(&buf, &size, f);
		if (n < 0)
			break;
	}
	fclose(f);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return buf;
}

/* Prints the source line under an error, gcc style, with a caret under `col` (counted in
 * characters, as libyaml counts them). Tabs before the column are repeated in the caret
 * line so that the caret lands under the right character in any terminal. */
static void s_print_source(const kanal_error_t *err, FILE *out)
{
	char *text;
	const unsigned char *p;
	int chars = 1;

	if (!err->source[0] || err->line <= 0)
		return;
	text = s_read_line(err->source, err->line);
	if (!text)
		return;
	kanal_cpr_redact_inplace(text);
	fprintf(out, "%5d | %s\n", err->line, text);
	if (err->column > 0) {
		fputs("      | ", out);
		for (p = (const unsigned char *)text; *p && chars < err->column; p++) {
			if ((*p & 0xC0) == 0x80)
				continue; /* a UTF-8 continuation byte: same character */
			fputc(*p == '\t' ? '\t' : ' ', out);
			chars++;
		}
		while (chars++ < err->column)
			fputc(' ', out);
		fputs("^\n", out);
	}
	free(text);
}

void diag_print(const diag_t *d, FILE *out)
{
	char line[1024];
	size_t i;

	if (!d || !out)
		return;
	for (i = 0; i < d->count; i++) {
		kanal_error_format(&d->items[i], line, sizeof line);
		fprintf(out, "%s\n", line);
		s_print_source(&d->items[i], out);
	}
}

char *diag_join(const diag_t *d)
{
	return diag_join_sep(d, "\n");
}

char *diag_join_sep(const diag_t *d, const char *sep)
{
	char line[1024];
	char *buf = NULL;
	size_t size = 0;
	FILE *mem;
	size_t i;

	mem = open_memstream(&buf, &size);
	if (!mem)
		return NULL;
	for (i = 0; d && i < d->count; i++) {
		kanal_error_format(&d->items[i], line, sizeof line);
		fprintf(mem, "%s%s", line, sep);
	}
	if (fclose(mem) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

void diag_free(diag_t *d)
{
	if (!d)
		return;
	free(d->items);
	d->items = NULL;
	d->count = 0;
	d->cap = 0;
}
