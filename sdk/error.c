/*
 * sdk/error.c — error codes and the caller-owned error record.
 *
 * The code list lives in kanal/error.h as an X-macro; this file generates kanal_strerror()
 * and kanal_errname() from it so that a new code cannot lack its text.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <kanal/error.h>
#include <kanal/cpr.h>

const char *kanal_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
#define KANAL_X_(name, num, text)                                                                  \
	case -(num):                                                                               \
		return text;
		KANAL_ERRNO_MAP(KANAL_X_)
#undef KANAL_X_
	}
	return "unknown error";
}

const char *kanal_errname(int code)
{
	switch (code) {
	case 0:
		return "KANAL_OK";
#define KANAL_X_(name, num, text)                                                                  \
	case -(num):                                                                               \
		return "KANAL_" #name;
		KANAL_ERRNO_MAP(KANAL_X_)
#undef KANAL_X_
	}
	return "KANAL_EUNKNOWN";
}

void kanal_error_clear(kanal_error_t *err)
{
	if (err)
		memset(err, 0, sizeof *err);
}

void kanal_error_set(kanal_error_t *err, const char *source, int line, int column,
		     const char *attribute, const char *fmt, ...)
{
	va_list ap;

	if (!err || err->text[0])
		return;
	snprintf(err->source, sizeof err->source, "%s", source ? source : "");
	err->line = line;
	err->column = column;
	snprintf(err->attribute, sizeof err->attribute, "%s", attribute ? attribute : "");
	va_start(ap, fmt);
	vsnprintf(err->text, sizeof err->text, fmt, ap);
	va_end(ap);
	/* Error texts quote input, and input may hold a CPR number: never let one out. */
	kanal_cpr_redact_inplace(err->text);
	kanal_cpr_redact_inplace(err->attribute);
	if (!err->text[0])
		snprintf(err->text, sizeof err->text, "error");
}

void kanal_error_format(const kanal_error_t *err, char *buf, size_t size)
{
	if (!size)
		return;
	if (!err) {
		buf[0] = '\0';
		return;
	}
	if (err->source[0] && err->line > 0 && err->column > 0)
		snprintf(buf, size, "%s:%d:%d: error: %s", err->source, err->line, err->column,
			 err->text);
	else if (err->source[0] && err->line > 0)
		snprintf(buf, size, "%s:%d: error: %s", err->source, err->line, err->text);
	else if (err->source[0])
		snprintf(buf, size, "%s: error: %s", err->source, err->text);
	else
		snprintf(buf, size, "error: %s", err->text);
}
