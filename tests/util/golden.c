/*
 * tests/util/golden.c — whole JSON documents against tests/data/golden/<name>.json (see
 * golden.h): mask the volatile members, compare with json_equal, and on a mismatch print
 * a line diff of the two pretty-printed documents (a longest-common-subsequence diff:
 * documents in tests are small).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"

#define GOLDEN_DIR "tests/data/golden"
#define DUMP_FLAGS (JSON_INDENT(2) | JSON_SORT_KEYS)

static bool s_is_volatile(const char *key, const char *const *keys)
{
	for (size_t i = 0; keys && keys[i]; i++)
		if (!strcmp(key, keys[i]))
			return true;
	return false;
}

/* Replaces, in place and at any depth, the value of every member named in keys. */
static void s_mask(json_t *j, const char *const *keys)
{
	const char *key;
	json_t *v;
	size_t i;

	if (json_is_object(j)) {
		json_object_foreach(j, key, v)
		{
			if (s_is_volatile(key, keys))
				json_object_set_new(j, key, json_string(GOLDEN_MASK));
			else
				s_mask(v, keys);
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v) s_mask(v, keys);
	}
}

/* Splits text into its lines (in place); returns the count, lines in *out (malloc'd). */
static size_t s_lines(char *text, char ***out)
{
	size_t n = 0, cap = 16;
	char **lines = malloc(cap * sizeof *lines), *save = NULL;

	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (n == cap)
			lines = realloc(lines, (cap *= 2) * sizeof *lines);
		lines[n++] = l;
	}
	*out = lines;
	return n;
}

/* Prints the lines of `want` and `got` as a diff: "-" only in the golden file, "+" only in
 * the document, " " in both. */
static void s_print_diff(const char *want_text, const char *got_text)
{
	char *a_text = strdup(want_text), *b_text = strdup(got_text), **a, **b;
	size_t na = s_lines(a_text, &a), nb = s_lines(b_text, &b);
	/* lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..]. */
	size_t *lcs = calloc((na + 1) * (nb + 1), sizeof *lcs);
	size_t i = 0, j = 0;

#define LCS(x, y) lcs[(x) * (nb + 1) + (y)]
	for (size_t x = na; x-- > 0;)
		for (size_t y = nb; y-- > 0;)
			LCS(x, y) = !strcmp(a[x], b[y])              ? LCS(x + 1, y + 1) + 1
				    : LCS(x + 1, y) >= LCS(x, y + 1) ? LCS(x + 1, y)
								     : LCS(x, y + 1);
	while (i < na || j < nb) {
		if (i < na && j < nb && !strcmp(a[i], b[j])) {
			fprintf(stderr, "     %s\n", a[i++]);
			j++;
		} else if (j < nb && (i == na || LCS(i, j + 1) > LCS(i + 1, j))) {
			fprintf(stderr, "    +%s\n", b[j++]);
		} else {
			fprintf(stderr, "    -%s\n", a[i++]);
		}
	}
#undef LCS
	free(lcs);
	free(a);
	free(b);
	free(a_text);
	free(b_text);
}

bool golden_match(const json_t *doc, const char *name, const char *const *volatile_keys)
{
	char path[1024];
	const char *update = getenv("KANAL_GOLDEN_UPDATE");
	json_t *got = doc ? json_deep_copy(doc) : NULL, *want = NULL;
	json_error_t err;
	bool same = false;

	snprintf(path, sizeof path, "%s/%s.json", GOLDEN_DIR, name);
	if (!got) {
		fprintf(stderr, "    %s: no document to compare\n", path);
		return false;
	}
	s_mask(got, volatile_keys);
	if (update && !strcmp(update, "1")) {
		same = json_dump_file(got, path, DUMP_FLAGS) == 0;
		/* A text file ends with a newline; jansson does not write one. */
		FILE *f = same ? fopen(path, "a") : NULL;
		if (f) {
			fputc('\n', f);
			fclose(f);
		}
		fprintf(stderr, "    %s: written (KANAL_GOLDEN_UPDATE=1)\n", path);
		json_decref(got);
		return same;
	}
	want = json_load_file(path, 0, &err);
	if (!want) {
		fprintf(stderr, "    %s:%d:%d: %s\n", path, err.line, err.column, err.text);
	} else {
		s_mask(want, volatile_keys);
		same = json_equal(want, got);
	}
	if (!same) {
		char *want_text = want ? json_dumps(want, DUMP_FLAGS) : strdup("");
		char *got_text = json_dumps(got, DUMP_FLAGS);
		fprintf(stderr, "    %s: the document differs (-golden +actual):\n", path);
		s_print_diff(want_text, got_text);
		free(want_text);
		free(got_text);
	}
	json_decref(want);
	json_decref(got);
	return same;
}

bool golden_match_text(const char *text, const char *name, const char *const *volatile_keys)
{
	json_t *doc = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
	bool same;

	if (!doc) {
		fprintf(stderr, "    %s: not JSON: %s\n", name, text ? text : "(nothing)");
		return false;
	}
	same = golden_match(doc, name, volatile_keys);
	json_decref(doc);
	return same;
}
