/*
 * broker/routes_int.h — what the files of the routing-table loader share: routes.c (load,
 * compile, match), routes_measures.c (`measures:`) and routes_enrich_retry.c (`enrich:`,
 * `retry:`). The builder of one load and its error helpers. Nothing here is for other
 * modules: they use routes.h.
 */
#ifndef KANAL_ROUTES_INT_H
#define KANAL_ROUTES_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "routes.h"
#include "yamltree.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Used while loading and compiling only: route names → their index, and (trie node, token)
 * → child node. Keys are borrowed; they live as long as the routes. */
typedef struct hslot {
	const void *owner;
	const char *key;
	size_t len;
	void *value;
} hslot_t;

typedef struct hmap {
	hslot_t *slots;
	size_t cap, n;
} hmap_t;

/* State of one load over all its files. */
typedef struct builder {
	route_t *routes;
	size_t n_routes, cap_routes;
	route_measure_t *measures;
	size_t n_measures, cap_measures;
	char **files;
	size_t n_files, cap_files;
	const char *file; /* the file being read, borrowed from files */
	char *default_dest;
	const char *default_file;
	int default_line, default_col;
	const char *const *instances;
	size_t n_instances;
	hmap_t names; /* route name → index + 1 */
	diag_t *d;
	size_t errors;
	bool oom;
} builder_t;

/* routes.c: reports an error at node `at` (its file, line and column). */
void routes__err(builder_t *b, const ynode_t *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* routes.c: a copy of s owned by the builder's caller; NULL (and b->oom) when out of memory. */
char *routes__strdup(builder_t *b, const char *s);
/* routes.c: the text of scalar v, or NULL after reporting that `key` must be text. */
const char *routes__text(builder_t *b, const ynode_t *v, const char *key);
/* routes.c: true when v is a mapping; else reports that `key` must be one. */
bool routes__is_mapping(builder_t *b, const ynode_t *v, const char *key);
/* routes.c: reports every key of map not among the n known ones. */
bool routes__check_keys(builder_t *b, const ynode_t *map, const char *const *known, size_t n,
			const char *where);
/* routes.c: reads a `match:` mapping (type, source, where). */
void routes__match_into(builder_t *b, const ynode_t *v, char **type_pattern, char **source_glob,
			char **where_text, expr_t **where);
/* routes.c: true for a valid route (or measure) name. */
bool routes__route_name_valid(const char *name);
/* routes.c: true when name is one of the configured instances. */
bool routes__is_instance(const builder_t *b, const char *name);
/* routes.c: reports an unknown instance name at v. */
void routes__unknown_instance(builder_t *b, const ynode_t *v, const char *name, const char *key,
			      bool destination);
/* routes_measures.c: reads the nth item of `measures:` into a new measure of the builder. */
void routes__measure(builder_t *b, const ynode_t *v, size_t nth);
/* routes_measures.c: frees what a measure holds (not the measure itself). */
void routes__measure_free(route_measure_t *m);
/* routes_enrich_retry.c: reads a route's `enrich:` list into r. */
void routes__enrich(builder_t *b, route_t *r, const ynode_t *v);
/* routes_enrich_retry.c: reads a route's `retry:` mapping into r. */
void routes__retry(builder_t *b, route_t *r, const ynode_t *v);

#endif
