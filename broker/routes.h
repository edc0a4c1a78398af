/*
 * broker/routes.h — routing tables: load the routes folder's YAML files, validate, compile, match, explain.
 *
 * A table is built from one or more YAML files read in name order. Loading validates
 * everything — unknown keys, duplicate route names, unknown instances, bad patterns, `where`
 * syntax and type errors — and reports each error with its file, line and column.
 * Type patterns are compiled into a token trie so the cost of matching an event grows with
 * the number of tokens in its type, not with the number of routes. A compiled table is
 * immutable and may be read from several threads.
 */
#ifndef KANAL_ROUTES_H
#define KANAL_ROUTES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <kanal/kanal.h>
#include "diag.h"
#include "expr.h"
#include "transform.h"

/* The built-in destination that keeps what nothing else takes: unmatched events when no
 * `default` is set, and dead deliveries. */
#define ROUTES_DEADLETTER "deadletter"

typedef enum enrich_on_error {
	ENRICH_FAIL = 0, /* default: the event goes to the dead letters for this route */
	ENRICH_SKIP,     /* the route goes on without the enrichment */
} enrich_on_error_t;

typedef struct route_enrich {
	char *service;      /* instance name */
	char *into;         /* "data.guardian" */
	int64_t timeout_ms; /* 0: the config's enrich_timeout */
	enrich_on_error_t on_error;
	char *purpose;          /* why the route asks (an audit log's purpose), or NULL */
	bool protected_address; /* the route asks for a protected address, if allowed */
} route_enrich_t;

typedef struct route_retry {
	int max_attempts;       /* default 5 */
	int64_t backoff_ms;     /* default 1000 */
	int64_t max_backoff_ms; /* default 300000 */
} route_retry_t;

typedef struct route {
	char *name;
	size_t index; /* declaration order across all files */
	char *file;
	int line, column;
	char *type_pattern; /* NULL: any type */
	char *source_glob;  /* NULL: any source */
	char *where_text;   /* NULL: no filter */
	expr_t *where;
	route_enrich_t *enrich;
	size_t n_enrich;
	char **to;
	size_t n_to;
	char **fallback;
	size_t n_fallback;
	char *area;    /* `area:` the inquiry area whose channels `to` (primary) and
			    * `fallback` (secondary) are, or NULL; deliveries carry it */
	bool channels; /* `to`/`fallback` were declared as `channels: {primary, secondary}` */
	route_retry_t retry;
	transform_t *transform;           /* the route's `transform:`, or NULL */
	transform_t **to_transform;       /* n_to: a destination's own transform, or NULL */
	transform_t **fallback_transform; /* n_fallback: the same for fallback destinations */
	struct route_stat *stat; /* the router's counters for this route's name (not owned) */
} route_t;

/* A measure: accepted events of a type (and source, and `where`) counted per the values of
 * their label fields (or their defaults) — the channel strategy's statistics as configuration, for the status,
 * /metrics and the dashboard. The router counts (stats.c); the table only describes. */
#define ROUTES_MEASURE_MAX_LABELS 4

typedef struct route_measure {
	char *name;
	char *title; /* the dashboard's heading, or NULL */
	char *file;
	int line, column;
	char *type_pattern; /* NULL: any type */
	char *source_glob;  /* NULL: any source */
	char *where_text;   /* NULL: no filter */
	expr_t *where;
	char *label_names[ROUTES_MEASURE_MAX_LABELS]; /* "channel" */
	char *label_fields
		[ROUTES_MEASURE_MAX_LABELS]; /* its data path without "data.": "channel" */
	char *label_defaults[ROUTES_MEASURE_MAX_LABELS]; /* when the field is absent: "unknown" */
	size_t n_labels;
	/* The channel strategy's target (`target:`), or target_label NULL: the share of counted
	 * events whose target_label is one of target_values should reach target_share. */
	char *target_label;
	char **target_values; /* "digital", "nemsms" */
	size_t n_target_values;
	double target_share;       /* 0..1 */
	struct measure_stat *stat; /* the router's counters for this measure (not owned) */
} route_measure_t;

typedef struct routes routes_t;

/* Loads the routing files in `paths` (each a file, or a folder whose *.yaml / *.yml files
 * are read in name order). `instances` lists the destination names that exist (the
 * built-in "deadletter" always does); `services` the instances that may be enrich
 * services (NULL: same as instances). Returns 0 and *out, or KANAL_ECONFIG with every error
 * in d. Ownership: borrows the arrays; *out is new. */
int routes_load(const char *const *paths, size_t n_paths, const char *const *instances,
		size_t n_instances, routes_t **out, diag_t *d);

/* Parses routing text directly (tests, fuzzing); `file` names it in errors. */
int routes_load_text(const char *text, size_t len, const char *file, const char *const *instances,
		     size_t n_instances, routes_t **out, diag_t *d);

/* One routing file held in memory: its name (as errors print it) and its text. */
typedef struct routes_text {
	const char *name;
	const char *text;
	size_t len;
} routes_text_t;

/* Loads routing files from their texts, in the order given, as routes_load loads files
 * (cluster mode's pushed tables: docs/design/cluster.md). Returns 0 and *out, or
 * KANAL_ECONFIG with every error in d, each naming its file's `name`. Ownership: borrows
 * files and instances; *out is new. */
int routes_load_texts(const routes_text_t *files, size_t n_files, const char *const *instances,
		      size_t n_instances, routes_t **out, diag_t *d);

void routes_destroy(routes_t **routes_p);

size_t routes_count(const routes_t *rt);
const route_t *routes_get(const routes_t *rt, size_t i);
/* The `default` destination, or ROUTES_DEADLETTER when none is set. */
const char *routes_default(const routes_t *rt);
/* The table's measures, in declaration order. Ownership: borrowed, as long as the table. */
size_t routes_measure_count(const routes_t *rt);
const route_measure_t *routes_measure_get(const routes_t *rt, size_t i);
/* True when msg is one the measure counts (its type, source and `where`); reads data only
 * when the type and source matched and the `where` needs it. Ownership: borrows. */
bool routes_measure_matches(const route_measure_t *m, const kanal_msg_t *msg);
/* The value of m's i-th label for msg: its data field's text, else the label's default,
 * else "none". Ownership: borrowed from msg or m. */
const char *routes_measure_label(const route_measure_t *m, size_t i, const kanal_msg_t *msg);

/* Files the table was read from, for messages ("3 routes from 2 files"). */
size_t routes_file_count(const routes_t *rt);
/* The i-th file the table was read from, as it was named to the loader (a folder's files
 * each by their path), or NULL past the end. Ownership: borrowed from rt. */
const char *routes_file(const routes_t *rt, size_t i);

/* Matches msg: stores up to `cap` matching routes in declaration order into out and returns
 * how many match in all (which may exceed cap). Reads data only for routes whose type and
 * source already matched and whose `where` needs it. Ownership: borrows; the route pointers
 * live as long as the table. */
size_t routes_match(const routes_t *rt, const kanal_msg_t *msg, const route_t **out, size_t cap);

/* Prints, for ops, which routes match msg and which do not and why (type pattern, source
 * glob, the failing `where` comparison), where the event would go (destinations, enrich
 * steps, fallback) — or that it would go to the default destination. Returns the number of
 * matching routes. */
size_t routes_explain(const routes_t *rt, const kanal_msg_t *msg, FILE *out);

/* The transform a delivery of r to its i-th destination runs: that destination's own (in
 * `fallback` when `fallback` is true, else in `to`), else the route's, else NULL.
 * Ownership: borrowed from r. */
transform_t *routes_transform(const route_t *r, bool fallback, size_t i);

/* Formats a duration the way it is written in the files: "2s", "10m", "1500ms".
 * Ownership: writes buf. */
void routes_format_ms(int64_t ms, char *buf, size_t size);

/* Pattern helpers, exposed for tests. A type pattern is dotted tokens where '*' matches
 * exactly one token and '>' (last only) one or more; a source glob uses '*' for any run of
 * characters and '?' for one. */
bool routes_type_matches(const char *pattern, const char *type);
bool routes_glob_matches(const char *glob, const char *text);

#endif
