/*
 * broker/routes.c — routing tables: load, validate, compile, match (see routes.h and
 * docs/routes.md; explaining a match to a person is explain.c's).
 *
 * Loading walks each file's YAML tree (yamltree.c) into route_t records, reporting every
 * mistake with its file, line and column; only a table without a single error is compiled.
 * Compiling puts every type pattern into a token trie: each node has its literal children in
 * a sorted array (binary search), one '*' child, the routes whose pattern ends there, and the
 * routes whose pattern ends in '>' there. Routes without a type pattern go in a separate
 * "any" list. Matching an event walks the trie along the tokens of its type — the work grows
 * with the tokens of the type and the routes that really are candidates, not with the size
 * of the table — then checks the candidates' source globs and `where` filters in declaration
 * order.
 *
 * A compiled table is never changed, so any number of threads may match against it. Matching
 * allocates nothing unless an event has more than ROUTES_LOCAL_CANDIDATES candidate routes.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "routes.h"
#include "routes_int.h"
#include "yamltree.h"
#include "../sdk/host.h"

/* Candidate routes an event may have before matching falls back to the heap. */
#define ROUTES_LOCAL_CANDIDATES 256

#define ROUTES_DEFAULT_ATTEMPTS 5
#define ROUTES_DEFAULT_BACKOFF_MS 1000
#define ROUTES_DEFAULT_MAX_BACKOFF_MS 300000

static const char *const s_top_keys[] = { "routes", "default", "measures" };
static const char *const s_route_keys[] = { "name",  "match",     "enrich", "to",      "fallback",
					    "retry", "transform", "area",   "channels" };
static const char *const s_channel_keys[] = { "primary", "secondary" };
static const char *const s_destination_keys[] = { "instance", "transform" };
static const char *const s_match_keys[] = { "type", "source", "where" };

/* ---- a small hash map: (owner, string) → pointer ------------------------------------- */

static uint64_t s_hash(const void *owner, const char *key, size_t len)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)owner;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

static hslot_t *s_hmap_slot(const hmap_t *h, const void *owner, const char *key, size_t len)
{
	size_t at = (size_t)s_hash(owner, key, len) & (h->cap - 1);

	for (;;) {
		hslot_t *s = &h->slots[at];
		if (!s->key || (s->owner == owner && s->len == len && !memcmp(s->key, key, len)))
			return s;
		at = (at + 1) & (h->cap - 1);
	}
}

static void *s_hmap_get(const hmap_t *h, const void *owner, const char *key, size_t len)
{
	return h->cap ? s_hmap_slot(h, owner, key, len)->value : NULL;
}

/* Stores value under (owner, key); returns false when memory runs out. */
static bool s_hmap_put(hmap_t *h, const void *owner, const char *key, size_t len, void *value)
{
	hslot_t *s;

	if ((h->n + 1) * 2 > h->cap) {
		hmap_t bigger = { NULL, h->cap ? h->cap * 2 : 64, 0 };
		size_t i;
		bigger.slots = calloc(bigger.cap, sizeof *bigger.slots);
		if (!bigger.slots)
			return false;
		for (i = 0; i < h->cap; i++) {
			if (h->slots[i].key) {
				*s_hmap_slot(&bigger, h->slots[i].owner, h->slots[i].key,
					     h->slots[i].len) = h->slots[i];
				bigger.n++;
			}
		}
		free(h->slots);
		*h = bigger;
	}
	s = s_hmap_slot(h, owner, key, len);
	if (!s->key)
		h->n++;
	s->owner = owner;
	s->key = key;
	s->len = len;
	s->value = value;
	return true;
}

static void s_hmap_free(hmap_t *h)
{
	free(h->slots);
	memset(h, 0, sizeof *h);
}

/* ---- the compiled table ------------------------------------------------------------ */

typedef struct trie_node trie_node_t;

typedef struct trie_edge {
	const char *token; /* borrowed from the route's type_pattern; not NUL-terminated */
	size_t len;
	trie_node_t *child;
} trie_edge_t;

/* A list of route indexes in declaration order. */
typedef struct index_list {
	uint32_t *at;
	size_t n, cap;
} index_list_t;

struct trie_node {
	trie_edge_t *edges; /* literal children, sorted by token once compiled */
	size_t n_edges, cap_edges;
	trie_node_t *star; /* the '*' child */
	index_list_t here; /* routes whose pattern ends at this node */
	index_list_t rest; /* routes whose pattern has '>' at this position */
};

struct routes {
	route_t *routes;
	size_t n_routes;
	route_measure_t *measures;
	size_t n_measures;
	char **files;
	size_t n_files;
	char *default_dest;
	trie_node_t *root;
	index_list_t any; /* routes without a type pattern */
};

static bool s_list_add(index_list_t *l, uint32_t index)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;
		uint32_t *at = realloc(l->at, cap * sizeof *at);
		if (!at)
			return false;
		l->at = at;
		l->cap = cap;
	}
	l->at[l->n++] = index;
	return true;
}

static void s_node_free(trie_node_t *node)
{
	size_t i;

	if (!node)
		return;
	for (i = 0; i < node->n_edges; i++)
		s_node_free(node->edges[i].child);
	s_node_free(node->star);
	free(node->edges);
	free(node->here.at);
	free(node->rest.at);
	free(node);
}

static void s_route_free(route_t *r)
{
	size_t i;

	free(r->name);
	free(r->type_pattern);
	free(r->source_glob);
	free(r->where_text);
	expr_destroy(&r->where);
	for (i = 0; i < r->n_enrich; i++) {
		free(r->enrich[i].service);
		free(r->enrich[i].into);
		free(r->enrich[i].purpose);
	}
	free(r->enrich);
	for (i = 0; i < r->n_to; i++) {
		free(r->to[i]);
		if (r->to_transform)
			transform_destroy(&r->to_transform[i]);
	}
	free(r->to);
	free(r->to_transform);
	for (i = 0; i < r->n_fallback; i++) {
		free(r->fallback[i]);
		if (r->fallback_transform)
			transform_destroy(&r->fallback_transform[i]);
	}
	free(r->fallback);
	free(r->fallback_transform);
	free(r->area);
	transform_destroy(&r->transform);
	/* r->file is borrowed from the table's file list. */
}

void routes_destroy(routes_t **routes_p)
{
	routes_t *rt;
	size_t i;

	if (!routes_p || !*routes_p)
		return;
	rt = *routes_p;
	for (i = 0; i < rt->n_routes; i++)
		s_route_free(&rt->routes[i]);
	free(rt->routes);
	for (i = 0; i < rt->n_measures; i++)
		routes__measure_free(&rt->measures[i]);
	free(rt->measures);
	for (i = 0; i < rt->n_files; i++)
		free(rt->files[i]);
	free(rt->files);
	free(rt->default_dest);
	s_node_free(rt->root);
	free(rt->any.at);
	free(rt);
	*routes_p = NULL;
}

/* ---- patterns ------------------------------------------------------------------------ */

bool routes_type_matches(const char *pattern, const char *type)
{
	const char *p = pattern, *t = type;

	if (!pattern || !type)
		return false;
	for (;;) {
		size_t plen = strcspn(p, "."), tlen;
		if (plen == 1 && *p == '>')
			return true; /* a token of the type remains: '>' takes it and the rest */
		tlen = strcspn(t, ".");
		if (!(plen == 1 && *p == '*') && (plen != tlen || memcmp(p, t, plen)))
			return false;
		if (!p[plen] || !t[tlen])
			return !p[plen] && !t[tlen];
		p += plen + 1;
		t += tlen + 1;
	}
}

bool routes_glob_matches(const char *glob, const char *text)
{
	const char *star = NULL, *resume = NULL;

	if (!glob || !text)
		return false;
	/* The classic single-backtrack wildcard walk: on a mismatch, let the last '*' swallow
	 * one more character and try again from there. */
	while (*text) {
		if (*glob == '*') {
			star = glob++;
			resume = text;
		} else if (*glob == '?' || *glob == *text) {
			glob++;
			text++;
		} else if (star) {
			glob = star + 1;
			text = ++resume;
		} else {
			return false;
		}
	}
	while (*glob == '*')
		glob++;
	return !*glob;
}

/* ---- loading ------------------------------------------------------------------------ */

void routes__err(builder_t *b, const ynode_t *at, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	diag_add(b->d, b->file, at ? at->line : 0, at ? at->column : 0, "%s", text);
	b->errors++;
}

char *routes__strdup(builder_t *b, const char *s)
{
	char *copy = strdup(s);

	if (!copy)
		b->oom = true;
	return copy;
}

/* Counts the characters (not the bytes) of text[from..to): columns count characters, as
 * libyaml and editors do. */
static int s_chars(const char *text, size_t from, size_t to)
{
	int n = 0;

	for (; from < to && text[from]; from++)
		if (((unsigned char)text[from] & 0xC0) != 0x80)
			n++;
	return n;
}

/* Finds the file line and column of byte `offset` of a scalar's text. A plain or quoted
 * scalar is taken to be on one line, starting at the node (past the opening quote); a
 * literal block (|) keeps its lines, so the offset's line and column are exact. A folded
 * block (>) joins its lines, so only its start is known. */
static void s_text_position(const ynode_t *v, size_t offset, int *line, int *col)
{
	size_t i, end, line_start = 0;

	if (offset > v->len)
		offset = v->len;
	*line = v->line;
	switch (v->style) {
	case YNODE_PLAIN:
		*col = v->column + s_chars(v->text, 0, offset);
		return;
	case YNODE_SINGLE_QUOTED:
	case YNODE_DOUBLE_QUOTED:
		*col = v->column + 1 + s_chars(v->text, 0, offset);
		return;
	case YNODE_LITERAL:
		/* "at the end" means the end of the last line, not the line after it. */
		end = v->len;
		while (end > 0 && v->text[end - 1] == '\n')
			end--;
		if (offset > end)
			offset = end;
		*line = v->line + 1;
		for (i = 0; i < offset; i++) {
			if (v->text[i] == '\n') {
				(*line)++;
				line_start = i + 1;
			}
		}
		*col = (v->content_column ? v->content_column : 1) +
		       s_chars(v->text, line_start, offset);
		return;
	case YNODE_FOLDED:
		*line = v->line + 1;
		*col = v->content_column ? v->content_column : 1;
		return;
	default:
		*col = v->column;
		return;
	}
}

static int s_text_column(const ynode_t *v, size_t offset)
{
	int line, col;

	s_text_position(v, offset, &line, &col);
	return col;
}

static void s_err_at(builder_t *b, const ynode_t *v, size_t offset, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Reports an error at byte `offset` inside scalar v. */
static void s_err_at(builder_t *b, const ynode_t *v, size_t offset, const char *fmt, ...)
{
	char text[512];
	int line, col;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	s_text_position(v, offset, &line, &col);
	diag_add(b->d, b->file, line, col, "%s", text);
	b->errors++;
}

/* Returns the scalar text of v, or reports why it is not usable and returns NULL. */
const char *routes__text(builder_t *b, const ynode_t *v, const char *key)
{
	if (v->kind != YNODE_SCALAR) {
		routes__err(b, v, "'%s' must be a text value, not %s", key, yaml_tree_describe(v));
		return NULL;
	}
	if (yaml_tree_is_null(v) || !v->len) {
		routes__err(b, v, "'%s' needs a value", key);
		return NULL;
	}
	return v->text;
}

bool routes__is_mapping(builder_t *b, const ynode_t *v, const char *key)
{
	if (v->kind == YNODE_MAPPING)
		return true;
	routes__err(b, v, "'%s' must be a mapping, not %s", key, yaml_tree_describe(v));
	return false;
}

bool routes__check_keys(builder_t *b, const ynode_t *map, const char *const *known, size_t n,
			const char *where)
{
	size_t unknown = yaml_tree_check_keys(map, known, n, where, b->file, b->d);

	b->errors += unknown;
	return unknown == 0;
}

static bool s_lower_or_digit(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Route names: [a-z0-9][a-z0-9_.-]*. */
bool routes__route_name_valid(const char *name)
{
	const char *p;

	if (!s_lower_or_digit(*name))
		return false;
	for (p = name + 1; *p; p++)
		if (!s_lower_or_digit(*p) && *p != '_' && *p != '.' && *p != '-')
			return false;
	return true;
}

/* Checks a type pattern token by token, pointing the error at the bad token. */
static bool s_type_pattern(builder_t *b, const ynode_t *v, const char *pattern)
{
	const char *tok = pattern;

	for (;;) {
		size_t len = strcspn(tok, "."), i;
		size_t offset = (size_t)(tok - pattern);
		bool last = tok[len] == '\0';
		if (len == 0) {
			s_err_at(b, v, offset,
				 "type pattern '%s' has an empty token (two dots, or "
				 "a dot at an end)",
				 pattern);
			return false;
		}
		if (len == 1 && *tok == '>') {
			if (!last) {
				s_err_at(b, v, offset,
					 "type pattern '%s': '>' matches the rest of "
					 "the type, so it must be the last token",
					 pattern);
				return false;
			}
		} else if (!(len == 1 && *tok == '*')) {
			for (i = 0; i < len; i++) {
				char c = tok[i];
				char what[32];
				if (s_lower_or_digit(c) || c == '_' || c == '-')
					continue;
				if (c > ' ' && c < 0x7F)
					snprintf(what, sizeof what, "'%c'", c);
				else
					snprintf(what, sizeof what, "a %s character",
						 c == ' ' ? "space" : "non-ASCII");
				s_err_at(b, v, offset + i,
					 "type pattern '%s': %s is not allowed in a token (use "
					 "a-z, 0-9, '_', '-', or a whole '*' or '>')",
					 pattern, what);
				return false;
			}
		}
		if (last)
			return true;
		tok += len + 1;
	}
}

/* expr.c's messages may name a column inside the expression ("expected ')' at column 17,
 * found …"). Next to "file:line:col" that number must be a column of the file too, so each
 * "column N" in `text` is rewritten in place the way the error's own column is. The result
 * is cut to `size`. */
static void s_file_columns(char *text, size_t size, const ynode_t *v)
{
	char out[sizeof((kanal_error_t *)0)->text];
	const char *p = text;
	size_t used = 0;

	while (*p && used + 1 < sizeof out) {
		if (!strncmp(p, "column ", 7) && p[7] >= '1' && p[7] <= '9') {
			char *end;
			long n = strtol(p + 7, &end, 10);
			/* A folded block (>) joins its lines: its columns cannot be told, so the
			 * number stays the expression's own, and says so. */
			if (n > 0 && n < 100000 && v->style == YNODE_FOLDED)
				used += (size_t)snprintf(out + used, sizeof out - used,
							 "column %ld of the expression", n);
			else if (n > 0 && n < 100000)
				used += (size_t)snprintf(out + used, sizeof out - used, "column %d",
							 s_text_column(v, (size_t)(n - 1)));
			if (n > 0 && n < 100000) {
				p = end;
				continue;
			}
		}
		out[used++] = *p++;
	}
	if (used >= sizeof out)
		used = sizeof out - 1;
	out[used] = '\0';
	snprintf(text, size, "%s", out);
}

/* Compiles `where` and reports its error at the right place in the file (see
 * s_text_position). */
static void s_where(builder_t *b, expr_t **where, char **where_text, const ynode_t *v)
{
	kanal_error_t err;
	const char *text = routes__text(b, v, "where");
	int line, col;

	if (!text)
		return;
	kanal_error_clear(&err);
	*where = expr_parse(text, &err);
	if (*where) {
		*where_text = routes__strdup(b, text);
		return;
	}
	s_text_position(v, err.column > 0 ? (size_t)(err.column - 1) : 0, &line, &col);
	s_file_columns(err.text, sizeof err.text, v);
	diag_add(b->d, b->file, line, col, "where: %s", err.text[0] ? err.text : "invalid");
	b->errors++;
}

/* Compiles a `transform:` (a jq program) and reports its error at the line jq names. */
static void s_transform(builder_t *b, transform_t **out, const ynode_t *v)
{
	kanal_error_t err;
	const char *text = routes__text(b, v, "transform");
	size_t offset = 0;
	int line, col;

	if (!text)
		return;
	kanal_error_clear(&err);
	if (transform_new(text, out, &err) == 0)
		return;
	if (err.line > 1 && v->style == YNODE_LITERAL)
		for (int n = 1; n < err.line && text[offset]; offset++)
			if (text[offset] == '\n')
				n++;
	s_text_position(v, offset, &line, &col);
	diag_add(b->d, b->file, line, col, "%s", err.text[0] ? err.text : "transform: invalid");
	b->errors++;
}

transform_t *routes_transform(const route_t *r, bool fallback, size_t i)
{
	transform_t *const *own = fallback ? r->fallback_transform : r->to_transform;

	if (own && i < (fallback ? r->n_fallback : r->n_to) && own[i])
		return own[i];
	return r->transform;
}

/* Reads a `match:` mapping (type, source, where) into the fields given: a route's or a
 * measure's. */
void routes__match_into(builder_t *b, const ynode_t *v, char **type_pattern, char **source_glob,
			char **where_text, expr_t **where)
{
	const ynode_t *x;
	const char *text;

	if (yaml_tree_is_null(v))
		return; /* `match:` with nothing: every event */
	if (!routes__is_mapping(b, v, "match"))
		return;
	routes__check_keys(b, v, s_match_keys, N_OF(s_match_keys), "match");
	if ((x = yaml_tree_get(v, "type")) && (text = routes__text(b, x, "type")) &&
	    s_type_pattern(b, x, text))
		*type_pattern = routes__strdup(b, text);
	if ((x = yaml_tree_get(v, "source")) && (text = routes__text(b, x, "source")))
		*source_glob = routes__strdup(b, text);
	if ((x = yaml_tree_get(v, "where")))
		s_where(b, where, where_text, x);
}

static void s_match(builder_t *b, route_t *r, const ynode_t *v)
{
	routes__match_into(b, v, &r->type_pattern, &r->source_glob, &r->where_text, &r->where);
}

bool routes__is_instance(const builder_t *b, const char *name)
{
	size_t i;

	for (i = 0; i < b->n_instances; i++)
		if (b->instances[i] && !strcmp(b->instances[i], name))
			return true;
	return false;
}

/* Reports an unknown instance, suggesting the closest known name (the built-in
 * dead-letter destination included when `destination`). */
void routes__unknown_instance(builder_t *b, const ynode_t *v, const char *name, const char *key,
			      bool destination)
{
	const char *close = yaml_tree_closest(name, b->instances, b->n_instances);
	const char *const dead[] = { ROUTES_DEADLETTER };

	if (!close && destination)
		close = yaml_tree_closest(name, dead, 1);
	if (close)
		routes__err(b, v, "unknown instance '%s' in '%s' (did you mean '%s'?)", name, key,
			    close);
	else
		routes__err(b, v, "unknown instance '%s' in '%s'", name, key);
}

/* Reads a destination list (`to`, `fallback`): one name or a list of names, each a known
 * instance or the built-in dead-letter destination, none twice. */
static void s_destinations(builder_t *b, const ynode_t *v, const char *key, char ***out,
			   size_t *n_out, transform_t ***transforms)
{
	const ynode_t *one[1];
	const ynode_t *const *items = one;
	size_t n = 1, i, j;
	char **names;

	if (v->kind == YNODE_MAPPING) {
		routes__err(b, v, "'%s' must be an instance name or a list of them, not a mapping",
			    key);
		return;
	}
	if (v->kind == YNODE_SEQUENCE) {
		items = v->items;
		n = v->n_items;
	} else {
		one[0] = v;
	}
	if (!n || yaml_tree_is_null(v)) {
		routes__err(b, v, "'%s' is empty: name at least one instance", key);
		return;
	}
	names = calloc(n, sizeof *names);
	if (!names) {
		b->oom = true;
		return;
	}
	*out = names;
	if (!(*transforms = calloc(n, sizeof **transforms))) {
		b->oom = true;
		return;
	}
	for (i = 0; i < n; i++) {
		const ynode_t *item = items[i], *x;
		transform_t *t = NULL;
		const char *name;

		if (item->kind == YNODE_MAPPING) {
			/* { instance: NAME, transform: PROGRAM }: one destination's own transform. */
			routes__check_keys(b, item, s_destination_keys, N_OF(s_destination_keys),
					   key);
			if ((x = yaml_tree_get(item, "transform")))
				s_transform(b, &t, x);
			if (!(x = yaml_tree_get(item, "instance"))) {
				routes__err(b, item,
					    "a destination in '%s' written as a mapping needs "
					    "'instance'",
					    key);
				transform_destroy(&t);
				continue;
			}
			item = x;
		}
		if (!(name = routes__text(b, item, key))) {
			transform_destroy(&t);
			continue;
		}
		if (strcmp(name, ROUTES_DEADLETTER) && !routes__is_instance(b, name)) {
			routes__unknown_instance(b, item, name, key, true);
			transform_destroy(&t);
			continue;
		}
		for (j = 0; j < *n_out; j++)
			if (!strcmp(names[j], name))
				break;
		if (j < *n_out) {
			routes__err(b, item, "'%s' is listed twice in '%s'", name, key);
			transform_destroy(&t);
			continue;
		}
		if ((names[*n_out] = routes__strdup(b, name))) {
			(*transforms)[*n_out] = t;
			t = NULL;
			(*n_out)++;
		}
		transform_destroy(&t);
	}
}

/* Adds the route's name to the table-wide set, reporting a duplicate with the place of the
 * first. */
static void s_name(builder_t *b, route_t *r, const ynode_t *v, size_t at)
{
	const char *text = routes__text(b, v, "name");
	void *first;

	if (!text)
		return;
	if (!routes__route_name_valid(text)) {
		routes__err(b, v,
			    "route name '%s' is not valid: use lower-case letters, digits, '_', "
			    "'.' and '-', starting with a letter or digit",
			    text);
		return;
	}
	first = s_hmap_get(&b->names, NULL, text, strlen(text));
	if (first) {
		const route_t *f = &b->routes[(uintptr_t)first - 1];
		routes__err(b, v, "duplicate route name '%s' (first defined at %s:%d:%d)", text,
			    f->file, f->line, f->column);
		return;
	}
	r->name = routes__strdup(b, text);
	if (r->name &&
	    !s_hmap_put(&b->names, NULL, r->name, strlen(r->name), (void *)(uintptr_t)(at + 1)))
		b->oom = true;
}

/* `area:` — the inquiry area the route's channels serve: a name like a route's. */
static void s_area(builder_t *b, route_t *r, const ynode_t *v)
{
	const char *text = routes__text(b, v, "area");

	if (!text)
		return;
	if (!routes__route_name_valid(text)) {
		routes__err(b, v,
			    "area '%s' is not valid: use lower-case letters, digits, '_', '.' and "
			    "'-', starting with a letter or digit",
			    text);
		return;
	}
	r->area = routes__strdup(b, text);
}

/* `channels: {primary: X, secondary: Y}` — the area's channel strategy, declared: the
 * primary channel is the route's `to` and the secondary its `fallback` (the same lists,
 * so either may name several instances or carry its own transform). It stands instead of
 * `to` and `fallback`, and needs `area`. */
static void s_channels(builder_t *b, route_t *r, const ynode_t *route_node, const ynode_t *v)
{
	const ynode_t *x;

	if (v->kind != YNODE_MAPPING) {
		routes__err(b, v,
			    "'channels' must be a mapping: { primary: INSTANCE, secondary: "
			    "INSTANCE }, not %s",
			    yaml_tree_describe(v));
		return;
	}
	r->channels = true;
	routes__check_keys(b, v, s_channel_keys, N_OF(s_channel_keys), "channels");
	if (yaml_tree_get(route_node, "to") || yaml_tree_get(route_node, "fallback"))
		routes__err(b, v,
			    "'channels' stands instead of 'to' and 'fallback' (its primary is the "
			    "route's 'to', its secondary the 'fallback'): give one or the other");
	else if ((x = yaml_tree_get(v, "primary")))
		s_destinations(b, x, "channels.primary", &r->to, &r->n_to, &r->to_transform);
	else
		routes__err(b, v, "'channels' has no 'primary': name the area's first channel");
	if (!yaml_tree_get(route_node, "fallback") && (x = yaml_tree_get(v, "secondary")))
		s_destinations(b, x, "channels.secondary", &r->fallback, &r->n_fallback,
			       &r->fallback_transform);
	if (!yaml_tree_get(route_node, "area"))
		routes__err(b, v,
			    "'channels' needs 'area': the inquiry area whose channels these are "
			    "(the statuses and measures name it)");
}

static route_t *s_new_route(builder_t *b)
{
	route_t *r;

	if (b->n_routes == b->cap_routes) {
		size_t cap = b->cap_routes ? b->cap_routes * 2 : 16;
		route_t *routes = realloc(b->routes, cap * sizeof *routes);
		if (!routes) {
			b->oom = true;
			return NULL;
		}
		b->routes = routes;
		b->cap_routes = cap;
	}
	r = &b->routes[b->n_routes];
	memset(r, 0, sizeof *r);
	r->index = b->n_routes;
	r->file = (char *)b->file;
	r->retry.max_attempts = ROUTES_DEFAULT_ATTEMPTS;
	r->retry.backoff_ms = ROUTES_DEFAULT_BACKOFF_MS;
	r->retry.max_backoff_ms = ROUTES_DEFAULT_MAX_BACKOFF_MS;
	b->n_routes++;
	return r;
}

static void s_route(builder_t *b, const ynode_t *v, size_t nth)
{
	const ynode_t *x;
	route_t *r;

	if (v->kind != YNODE_MAPPING) {
		routes__err(b, v, "route #%zu must be a mapping with a name and 'to', not %s",
			    nth + 1, yaml_tree_describe(v));
		return;
	}
	r = s_new_route(b);
	if (!r)
		return;
	r->line = v->line;
	r->column = v->column;
	routes__check_keys(b, v, s_route_keys, N_OF(s_route_keys), NULL);
	if ((x = yaml_tree_get(v, "name")))
		s_name(b, r, x, r->index);
	else
		routes__err(b, v, "route #%zu has no 'name'", nth + 1);
	if ((x = yaml_tree_get(v, "match")))
		s_match(b, r, x);
	if ((x = yaml_tree_get(v, "enrich")))
		routes__enrich(b, r, x);
	if ((x = yaml_tree_get(v, "area")))
		s_area(b, r, x);
	if ((x = yaml_tree_get(v, "channels")))
		s_channels(b, r, v, x);
	else if ((x = yaml_tree_get(v, "to")))
		s_destinations(b, x, "to", &r->to, &r->n_to, &r->to_transform);
	else if (r->name)
		routes__err(b, v, "route '%s' has no 'to': name the instances it delivers to",
			    r->name);
	else
		routes__err(b, v, "route #%zu has no 'to': name the instances it delivers to",
			    nth + 1);
	if ((x = yaml_tree_get(v, "fallback")) && !r->channels)
		s_destinations(b, x, "fallback", &r->fallback, &r->n_fallback,
			       &r->fallback_transform);
	if ((x = yaml_tree_get(v, "retry")))
		routes__retry(b, r, x);
	if ((x = yaml_tree_get(v, "transform")))
		s_transform(b, &r->transform, x);
}

static void s_default(builder_t *b, const ynode_t *v)
{
	const char *text = routes__text(b, v, "default");

	if (!text)
		return;
	if (b->default_dest) {
		routes__err(b, v,
			    "'default' is set twice: here, and to '%s' at %s:%d:%d (set it in one "
			    "file only)",
			    b->default_dest, b->default_file, b->default_line, b->default_col);
		return;
	}
	if (strcmp(text, ROUTES_DEADLETTER) && !routes__is_instance(b, text)) {
		routes__unknown_instance(b, v, text, "default", true);
		return;
	}
	b->default_dest = routes__strdup(b, text);
	b->default_file = b->file;
	b->default_line = v->line;
	b->default_col = v->column;
}

/* Walks one routing file's tree. */
static void s_file(builder_t *b, const ynode_t *root)
{
	const ynode_t *x;
	size_t i;

	if (!root)
		return; /* an empty file (or only comments) adds nothing */
	if (root->kind != YNODE_MAPPING) {
		routes__err(b, root,
			    "a routing file must be a mapping with 'routes:' (and optionally "
			    "'default:'), not %s",
			    yaml_tree_describe(root));
		return;
	}
	routes__check_keys(b, root, s_top_keys, N_OF(s_top_keys), NULL);
	if ((x = yaml_tree_get(root, "routes")) && !yaml_tree_is_null(x)) {
		if (x->kind != YNODE_SEQUENCE) {
			routes__err(b, x, "'routes' must be a list of routes, not %s",
				    yaml_tree_describe(x));
		} else {
			for (i = 0; i < x->n_items && !b->oom; i++)
				s_route(b, x->items[i], i);
		}
	}
	if ((x = yaml_tree_get(root, "measures")) && !yaml_tree_is_null(x)) {
		if (x->kind != YNODE_SEQUENCE) {
			routes__err(b, x, "'measures' must be a list of measures, not %s",
				    yaml_tree_describe(x));
		} else {
			for (i = 0; i < x->n_items && !b->oom; i++)
				routes__measure(b, x->items[i], i);
		}
	}
	if ((x = yaml_tree_get(root, "default")))
		s_default(b, x);
}

/* Registers a file name with the builder; routes point at it. */
static const char *s_add_file(builder_t *b, const char *path)
{
	char *copy;

	if (b->n_files == b->cap_files) {
		size_t cap = b->cap_files ? b->cap_files * 2 : 8;
		char **files = realloc(b->files, cap * sizeof *files);
		if (!files) {
			b->oom = true;
			return NULL;
		}
		b->files = files;
		b->cap_files = cap;
	}
	copy = routes__strdup(b, path);
	if (!copy)
		return NULL;
	b->files[b->n_files++] = copy;
	return copy;
}

/* Walks one file's tree (or notes why there is none); `first_error` is where its errors
 * start in the diag, so they can be put in file order. */
static void s_load_tree(builder_t *b, const char *path, int rc, yaml_tree_t *tree,
			size_t first_error)
{
	b->file = s_add_file(b, path);
	if (!b->file)
		return;
	if (rc == KANAL_ENOMEM) {
		b->oom = true;
	} else if (rc != 0) {
		b->errors++; /* yamltree.c reported it */
	} else {
		b->errors += tree->errors;
		s_file(b, tree->root);
	}
	yaml_tree_sort_errors(b->d, first_error);
}

static void s_load_file(builder_t *b, const char *path)
{
	yaml_tree_t *tree = NULL;
	size_t first_error = b->d ? b->d->count : 0;
	int rc = yaml_tree_load(path, &tree, b->d);

	s_load_tree(b, path, rc, tree, first_error);
	yaml_tree_destroy(&tree);
}

static int s_strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool s_is_routing_file(const char *name)
{
	size_t len = strlen(name);

	if (name[0] == '.')
		return false; /* hidden files: editor backups, locks */
	return (len > 5 && !strcmp(name + len - 5, ".yaml")) ||
	       (len > 4 && !strcmp(name + len - 4, ".yml"));
}

/* Reads a folder's *.yaml and *.yml files in name order. */
static void s_load_folder(builder_t *b, const char *dir)
{
	DIR *folder;
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0, i, dlen = strlen(dir);

	while (dlen > 1 && dir[dlen - 1] == '/')
		dlen--;
	folder = opendir(dir);
	if (!folder) {
		diag_add(b->d, dir, 0, 0, "cannot read folder: %s", strerror(errno));
		b->errors++;
		return;
	}
	while ((e = readdir(folder))) {
		struct stat st;
		char *path;
		if (!s_is_routing_file(e->d_name))
			continue;
		if (asprintf(&path, "%.*s/%s", (int)dlen, dir, e->d_name) < 0) {
			b->oom = true;
			break;
		}
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
			free(path);
			continue;
		}
		if (n == cap) {
			char **bigger = realloc(names, (cap ? cap * 2 : 16) * sizeof *names);
			if (!bigger) {
				free(path);
				b->oom = true;
				break;
			}
			names = bigger;
			cap = cap ? cap * 2 : 16;
		}
		names[n++] = path;
	}
	closedir(folder);
	if (!b->oom && n == 0) {
		diag_add(b->d, dir, 0, 0, "no routing files in %s (expected *.yaml or *.yml files)",
			 dir);
		b->errors++;
	}
	if (n)
		qsort(names, n, sizeof *names, s_strcmp_p);
	for (i = 0; i < n; i++) {
		if (!b->oom)
			s_load_file(b, names[i]);
		free(names[i]);
	}
	free(names);
}

static void s_load_path(builder_t *b, const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		diag_add(b->d, path, 0, 0, "cannot read: %s", strerror(errno));
		b->errors++;
		return;
	}
	if (S_ISDIR(st.st_mode))
		s_load_folder(b, path);
	else
		s_load_file(b, path);
}

static void s_builder_free(builder_t *b)
{
	size_t i;

	for (i = 0; i < b->n_routes; i++)
		s_route_free(&b->routes[i]);
	free(b->routes);
	for (i = 0; i < b->n_measures; i++)
		routes__measure_free(&b->measures[i]);
	free(b->measures);
	for (i = 0; i < b->n_files; i++)
		free(b->files[i]);
	free(b->files);
	free(b->default_dest);
	s_hmap_free(&b->names);
}

/* ---- compiling ----------------------------------------------------------------------- */

static int s_edge_cmp(const void *pa, const void *pb)
{
	const trie_edge_t *a = pa, *b = pb;
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->token, b->token, n);

	if (c)
		return c;
	return a->len < b->len ? -1 : a->len > b->len;
}

static trie_node_t *s_child(trie_node_t *node, hmap_t *children, const char *tok, size_t len)
{
	trie_node_t *child;

	if (len == 1 && *tok == '*') {
		if (!node->star)
			node->star = calloc(1, sizeof *node->star);
		return node->star;
	}
	child = s_hmap_get(children, node, tok, len);
	if (child)
		return child;
	if (node->n_edges == node->cap_edges) {
		size_t cap = node->cap_edges ? node->cap_edges * 2 : 4;
		trie_edge_t *edges = realloc(node->edges, cap * sizeof *edges);
		if (!edges)
			return NULL;
		node->edges = edges;
		node->cap_edges = cap;
	}
	child = calloc(1, sizeof *child);
	if (!child || !s_hmap_put(children, node, tok, len, child)) {
		free(child);
		return NULL;
	}
	node->edges[node->n_edges++] = (trie_edge_t){ tok, len, child };
	return child;
}

/* Sorts every node's literal children for binary search. */
static void s_sort_edges(trie_node_t *node)
{
	size_t i;

	if (!node)
		return;
	if (node->n_edges > 1)
		qsort(node->edges, node->n_edges, sizeof *node->edges, s_edge_cmp);
	for (i = 0; i < node->n_edges; i++)
		s_sort_edges(node->edges[i].child);
	s_sort_edges(node->star);
}

/* Adds route `index` (pattern `pattern`) to the trie. Returns false when memory runs out. */
static bool s_insert(routes_t *rt, hmap_t *children, const char *pattern, uint32_t index)
{
	trie_node_t *node = rt->root;
	const char *tok = pattern;

	for (;;) {
		size_t len = strcspn(tok, ".");
		if (len == 1 && *tok == '>')
			return s_list_add(&node->rest, index);
		node = s_child(node, children, tok, len);
		if (!node)
			return false;
		if (!tok[len])
			return s_list_add(&node->here, index);
		tok += len + 1;
	}
}

static int s_compile(routes_t *rt)
{
	hmap_t children = { 0 };
	size_t i;
	int rc = 0;

	rt->root = calloc(1, sizeof *rt->root);
	if (!rt->root)
		return KANAL_ENOMEM;
	for (i = 0; i < rt->n_routes && rc == 0; i++) {
		const route_t *r = &rt->routes[i];
		bool ok = r->type_pattern ? s_insert(rt, &children, r->type_pattern, (uint32_t)i)
					  : s_list_add(&rt->any, (uint32_t)i);
		if (!ok)
			rc = KANAL_ENOMEM;
	}
	s_hmap_free(&children);
	if (rc == 0)
		s_sort_edges(rt->root);
	return rc;
}

/* Moves the builder's validated routes into a new table and compiles it. */
static int s_finish(builder_t *b, routes_t **out)
{
	routes_t *rt;
	int rc;

	if (b->n_routes > UINT32_MAX)
		return KANAL_ENOMEM;
	rt = calloc(1, sizeof *rt);
	if (!rt)
		return KANAL_ENOMEM;
	rt->routes = b->routes;
	rt->n_routes = b->n_routes;
	rt->files = b->files;
	rt->n_files = b->n_files;
	rt->default_dest = b->default_dest;
	rt->measures = b->measures;
	rt->n_measures = b->n_measures;
	b->measures = NULL;
	b->n_measures = 0;
	b->routes = NULL;
	b->n_routes = 0;
	b->files = NULL;
	b->n_files = 0;
	b->default_dest = NULL;
	rc = s_compile(rt);
	if (rc != 0) {
		routes_destroy(&rt);
		return rc;
	}
	*out = rt;
	return 0;
}

static void s_builder_init(builder_t *b, const char *const *instances, size_t n_instances,
			   diag_t *d)
{
	memset(b, 0, sizeof *b);
	b->instances = instances;
	b->n_instances = instances ? n_instances : 0;
	b->d = d;
}

static int s_end(builder_t *b, routes_t **out)
{
	int rc;

	if (b->oom)
		rc = KANAL_ENOMEM;
	else if (b->errors)
		rc = KANAL_ECONFIG;
	else
		rc = s_finish(b, out);
	s_builder_free(b);
	return rc;
}

int routes_load(const char *const *paths, size_t n_paths, const char *const *instances,
		size_t n_instances, routes_t **out, diag_t *d)
{
	builder_t b;
	size_t i;

	*out = NULL;
	s_builder_init(&b, instances, n_instances, d);
	if (!n_paths) {
		diag_add(d, NULL, 0, 0, "no routing files or folders given");
		b.errors++;
	}
	for (i = 0; i < n_paths && !b.oom; i++)
		s_load_path(&b, paths[i]);
	return s_end(&b, out);
}

int routes_load_text(const char *text, size_t len, const char *file, const char *const *instances,
		     size_t n_instances, routes_t **out, diag_t *d)
{
	routes_text_t one = { file ? file : "<routes>", text, len };

	return routes_load_texts(&one, 1, instances, n_instances, out, d);
}

int routes_load_texts(const routes_text_t *files, size_t n_files, const char *const *instances,
		      size_t n_instances, routes_t **out, diag_t *d)
{
	builder_t b;

	*out = NULL;
	s_builder_init(&b, instances, n_instances, d);
	if (!n_files) {
		diag_add(d, NULL, 0, 0, "no routing files given");
		b.errors++;
	}
	for (size_t i = 0; i < n_files && !b.oom; i++) {
		yaml_tree_t *tree = NULL;
		size_t first_error = d ? d->count : 0;
		int rc = yaml_tree_parse(files[i].text, files[i].len, files[i].name, &tree, d);

		s_load_tree(&b, files[i].name, rc, tree, first_error);
		yaml_tree_destroy(&tree);
	}
	return s_end(&b, out);
}

/* ---- reading the table ---------------------------------------------------------------- */

size_t routes_count(const routes_t *rt)
{
	return rt ? rt->n_routes : 0;
}

const route_t *routes_get(const routes_t *rt, size_t i)
{
	return rt && i < rt->n_routes ? &rt->routes[i] : NULL;
}

size_t routes_measure_count(const routes_t *rt)
{
	return rt ? rt->n_measures : 0;
}

const route_measure_t *routes_measure_get(const routes_t *rt, size_t i)
{
	return rt && i < rt->n_measures ? &rt->measures[i] : NULL;
}

bool routes_measure_matches(const route_measure_t *m, const kanal_msg_t *msg)
{
	const char *type = kanal_msg_type(msg);

	if (m->type_pattern && !routes_type_matches(m->type_pattern, type ? type : ""))
		return false;
	if (m->source_glob && !routes_glob_matches(m->source_glob, kanal_msg_source(msg)))
		return false;
	return !m->where || expr_eval(m->where, msg);
}

const char *routes_measure_label(const route_measure_t *m, size_t i, const kanal_msg_t *msg)
{
	const char *v;

	if (kanal_msg_data_str(msg, m->label_fields[i], &v) == 0 && *v)
		return v;
	return m->label_defaults[i] ? m->label_defaults[i] : "none";
}

const char *routes_default(const routes_t *rt)
{
	return rt && rt->default_dest ? rt->default_dest : ROUTES_DEADLETTER;
}

size_t routes_file_count(const routes_t *rt)
{
	return rt ? rt->n_files : 0;
}

const char *routes_file(const routes_t *rt, size_t i)
{
	return rt && i < rt->n_files ? rt->files[i] : NULL;
}

/* ---- matching ------------------------------------------------------------------------ */

/* The candidate routes of one event: on the stack unless there are very many. */
typedef struct candidates {
	uint32_t *at;
	size_t n, cap;
	size_t lists; /* how many route lists contributed (one: already in order) */
	bool failed;  /* out of memory: the caller falls back to a full scan */
	uint32_t local[ROUTES_LOCAL_CANDIDATES];
} candidates_t;

static void s_take(candidates_t *c, const index_list_t *l)
{
	if (!l->n || c->failed)
		return;
	if (c->n + l->n > c->cap) {
		size_t cap = c->cap * 2 > c->n + l->n ? c->cap * 2 : c->n + l->n;
		uint32_t *at = c->at == c->local ? malloc(cap * sizeof *at)
						 : realloc(c->at, cap * sizeof *at);
		if (!at) {
			c->failed = true;
			return;
		}
		if (c->at == c->local)
			memcpy(at, c->local, c->n * sizeof *at);
		c->at = at;
		c->cap = cap;
	}
	memcpy(c->at + c->n, l->at, l->n * sizeof *l->at);
	c->n += l->n;
	c->lists++;
}

/* Walks the trie along the type's tokens from `tok` (NULL: every token consumed). */
static void s_walk(const trie_node_t *node, const char *tok, candidates_t *c)
{
	size_t len, lo, hi;
	const char *next;

	if (!tok) {
		s_take(c, &node->here);
		return;
	}
	s_take(c, &node->rest); /* '>' takes this token and all after it */
	len = strcspn(tok, ".");
	next = tok[len] ? tok + len + 1 : NULL;
	lo = 0;
	hi = node->n_edges;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const trie_edge_t *e = &node->edges[mid];
		size_t n = e->len < len ? e->len : len;
		int cmp = memcmp(e->token, tok, n);
		if (!cmp)
			cmp = e->len < len ? -1 : e->len > len;
		if (!cmp) {
			s_walk(e->child, next, c);
			break;
		}
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (node->star)
		s_walk(node->star, next, c);
}

static int s_u32_cmp(const void *pa, const void *pb)
{
	uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;

	return a < b ? -1 : a > b;
}

/* The checks after the type: source glob, then `where` (which may read data). */
static bool s_rest_matches(const route_t *r, const kanal_msg_t *msg)
{
	if (r->source_glob && !routes_glob_matches(r->source_glob, kanal_msg_source(msg)))
		return false;
	return !r->where || expr_eval(r->where, msg);
}

static size_t s_emit(const route_t *r, const route_t **out, size_t cap, size_t count)
{
	if (count < cap)
		out[count] = r;
	return count + 1;
}

size_t routes_match(const routes_t *rt, const kanal_msg_t *msg, const route_t **out, size_t cap)
{
	candidates_t c;
	const char *type;
	size_t i, count = 0;

	if (!rt || !msg || !rt->n_routes)
		return 0;
	type = kanal_msg_type(msg);
	if (!type)
		type = "";
	c.at = c.local;
	c.n = 0;
	c.cap = ROUTES_LOCAL_CANDIDATES;
	c.lists = 0;
	c.failed = false;
	s_walk(rt->root, type, &c);
	s_take(&c, &rt->any);
	if (c.failed) {
		/* No memory for a huge candidate set: check every route instead. Slower, but an
		 * event is never misrouted because memory was short. */
		for (i = 0; i < rt->n_routes; i++) {
			const route_t *r = &rt->routes[i];
			if ((!r->type_pattern || routes_type_matches(r->type_pattern, type)) &&
			    s_rest_matches(r, msg))
				count = s_emit(r, out, cap, count);
		}
		goto done;
	}
	if (c.lists > 1)
		qsort(c.at, c.n, sizeof *c.at, s_u32_cmp);
	for (i = 0; i < c.n; i++) {
		const route_t *r = &rt->routes[c.at[i]];
		if (s_rest_matches(r, msg))
			count = s_emit(r, out, cap, count);
	}
done:
	if (c.at != c.local)
		free(c.at);
	return count;
}
