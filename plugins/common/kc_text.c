/*
 * plugins/common/kc_text.c — URL and path templates ("{base}/{owner}/calendar/"), expanded
 * with each value percent-encoded where it goes into a URL, so that a value can never add
 * a path segment or a query of its own; and the growing text buffer they are built in.
 */
#include "kc_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kc_buf_put(kc_buf_t *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 128;
		char *p;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (!(p = realloc(b->p, cap))) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void kc_buf_puts(kc_buf_t *b, const char *s)
{
	kc_buf_put(b, s, strlen(s));
}

static void s_put_escaped(kc_buf_t *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			kc_buf_put(b, s, 1);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			kc_buf_put(b, e, 3);
		}
	}
}

int kc_template_expand(const char *tmpl, kc_lookup_fn lookup, void *arg, bool url_escape,
		       char **out, kanal_error_t *err)
{
	kc_buf_t b = { 0 };
	const char *p = tmpl;

	*out = NULL;

	kc_buf_put(&b, "", 0);
	while (*p) {
		const char *open = strchr(p, '{'), *close;
		char name[64];
		const char *value;

		if (!open) {
			kc_buf_put(&b, p, strlen(p));
			break;
		}
		kc_buf_put(&b, p, (size_t)(open - p));
		close = strchr(open, '}');
		if (!close || (size_t)(close - open - 1) >= sizeof name || close == open + 1) {
			kanal_error_set(err, NULL, 0, 0, NULL,
					"unclosed or empty placeholder at \"%.20s\"", open);
			free(b.p);
			return KANAL_EPARSE;
		}
		memcpy(name, open + 1, (size_t)(close - open - 1));
		name[close - open - 1] = '\0';
		if (!(value = lookup(name, arg))) {
			kanal_error_set(err, NULL, 0, 0, NULL, "no value for placeholder {%s}",
					name);
			free(b.p);
			return KANAL_EPARSE;
		}
		if (url_escape)
			s_put_escaped(&b, value);
		else
			kc_buf_put(&b, value, strlen(value));
		p = close + 1;
	}
	if (b.failed) {
		kanal_error_set(err, NULL, 0, 0, NULL, "out of memory");
		free(b.p);
		return KANAL_ENOMEM;
	}
	*out = b.p;
	return 0;
}
