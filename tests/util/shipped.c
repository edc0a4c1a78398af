/*
 * tests/util/shipped.c — one route cut out of a shipped routing file (shipped.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "shipped.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

char *shipped_route(const char *file, const char *name)
{
	static const char *const stops[] = { "\n  - name:", "\n  #", "\nmeasures:", "\ndefault:" };
	char *text = test_read_file(file, NULL), head[160], *start, *end, *out;

	snprintf(head, sizeof head, "  - name: %s\n", name);
	if (!text || !(start = strstr(text, head))) {
		fprintf(stderr, "%s has no route %s\n", file, name);
		free(text);
		return NULL;
	}
	end = start + strlen(start);
	for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++) {
		char *s = strstr(start + 1, stops[i]);
		if (s && s < end)
			end = s;
	}
	*end = '\0';
	out = strdup(start);
	free(text);
	return out;
}

char *shipped_route_as(const char *file, const char *name, const char *from, const char *to)
{
	char *text = shipped_route(file, name), *out = NULL, *at;
	const char *keys[] = { "to: ", "fallback: " };

	for (size_t k = 0; text && k < sizeof keys / sizeof keys[0]; k++) {
		char needle[160], *next;
		snprintf(needle, sizeof needle, "%s%s\n", keys[k], from);
		if (!(at = strstr(text, needle)))
			continue;
		*at = '\0';
		if (asprintf(&next, "%s%s%s\n%s", text, keys[k], to, at + strlen(needle)) < 0)
			next = NULL;
		free(text);
		text = next;
	}
	out = text;
	return out;
}
