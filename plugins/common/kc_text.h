/*
 * plugins/common/kc_text.h — URL and path templates whose placeholders are filled with percent-encoded
 * values, and the growing text buffer they (and a connector's request bodies) are built in.
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a) and compiled with hidden visibility, so nothing here is
 * exported from a plugin. Functions are prefixed kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_KC_TEXT_H
#define KANAL_PLUGINS_KC_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include <kanal/kanal.h>

/* Expands a template's {name} placeholders with lookup(name, arg) (NULL: the error
 * "no value for placeholder"). When url_escape is set, each value is percent-encoded (RFC
 * 3986 unreserved characters kept). Returns 0 and a malloc'd string in *out (free with
 * free()), or KANAL_EPARSE (an unclosed or empty placeholder, or one without a value) or
 * KANAL_ENOMEM with err filled and *out NULL. Ownership: borrows tmpl and arg; *out is the
 * caller's; fills err. */
/* A growing text buffer, always NUL-terminated once written to: start it zeroed
 * (`kc_buf_t b = { 0 };`), append with kc_buf_put / kc_buf_puts, take b.p (malloc'd; free
 * with free()) when done. When memory runs out `failed` turns true and further appends do
 * nothing, so one check at the end does. */
typedef struct kc_buf {
	char *p;
	size_t len, cap;
	bool failed;
} kc_buf_t;

/* Appends n bytes of s (or strlen(s)). Ownership: borrows s; b keeps its own copy. */
void kc_buf_put(kc_buf_t *b, const char *s, size_t n);
void kc_buf_puts(kc_buf_t *b, const char *s);

typedef const char *(*kc_lookup_fn)(const char *name, void *arg);
int kc_template_expand(const char *tmpl, kc_lookup_fn lookup, void *arg, bool url_escape,
		       char **out, kanal_error_t *err);

#endif
