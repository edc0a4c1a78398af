/*
 * broker/yamltree.h — a small, read-only YAML node tree for kanald's own files (kanald.yaml
 * and the routing tables), built on libyaml's document API.
 *
 * Each node keeps its kind, its scalar text and style, and where it starts in the file (line
 * and column, 1-based), so the loaders can report "file:line:col: error: …" for any value.
 * The tree is checked when it is built: syntax errors, duplicate mapping keys, non-text keys
 * and aliases that refer to their own enclosing node are reported into a diag. Aliases that
 * are not cyclic are allowed: the aliased node is shared, not copied.
 *
 * The module also holds the two helpers every schema walker needs: checking a mapping's keys
 * against the known ones ("unknown key 'endpoint' (did you mean 'endpoints'?)"), and finding
 * the closest known word for such suggestions.
 *
 * Names use the `yaml_tree_` and `ynode` prefixes so that they can never clash with
 * libyaml's own `yaml_` symbols. For the same reason the files are not called yaml.h and
 * yaml.c: broker/ is on the include path, and a broker/yaml.h would hide libyaml's <yaml.h>.
 */
#ifndef KANAL_YAMLTREE_H
#define KANAL_YAMLTREE_H

#include <stdbool.h>
#include <stddef.h>
#include "diag.h"

typedef enum ynode_kind {
	YNODE_SCALAR = 0,
	YNODE_SEQUENCE,
	YNODE_MAPPING,
} ynode_kind_t;

/* How a scalar was written; the loaders need it to map a column inside the text to a column
 * in the file. */
typedef enum ynode_style {
	YNODE_PLAIN = 0,
	YNODE_SINGLE_QUOTED,
	YNODE_DOUBLE_QUOTED,
	YNODE_LITERAL, /* | */
	YNODE_FOLDED,  /* > */
	YNODE_FLOW,    /* a [list] or {mapping} written inline */
	YNODE_BLOCK,   /* a list or mapping written one item per line */
} ynode_style_t;

typedef struct ynode ynode_t;

typedef struct ypair {
	const ynode_t *key; /* always a scalar */
	const ynode_t *value;
} ypair_t;

struct ynode {
	ynode_kind_t kind;
	ynode_style_t style;
	int line, column;      /* 1-based, of the node's first character (or its anchor) */
	const char *text;      /* scalars: the value, NUL-terminated; "" otherwise */
	size_t len;            /* scalars: its length in bytes */
	const ynode_t **items; /* sequences */
	size_t n_items;
	const ypair_t *pairs; /* mappings, in file order */
	size_t n_pairs;
	int content_column; /* block scalars (| >): the file column where the content's
				  * lines start, found from its first non-blank line; else 0 */
};

typedef struct yaml_tree {
	const char *file;    /* the name used in errors */
	const ynode_t *root; /* NULL for an empty document */
	size_t errors;       /* problems already reported (duplicate keys, …); see below */
	void *priv;          /* libyaml's document and the node storage */
} yaml_tree_t;

/* Parses `len` bytes of YAML text (one document; a second one is an error). `file` names
 * the text in errors. Returns 0 and *out (whose root is NULL when the text holds no
 * document, e.g. only comments) when the tree can be walked. Problems that leave it
 * walkable — a duplicate key (the first one counts), a key that is not text (left out), a
 * value holding a NUL character — are reported into d and counted in (*out)->errors, so
 * that the caller can go on and report its own errors too, and then fail. Problems that do
 * not — a syntax error, an alias cycle, a second document — are reported into d and give
 * KANAL_ECONFIG (or KANAL_ENOMEM) without a tree. Ownership: borrows text and file (both
 * copied as needed); *out is new, free it with yaml_tree_destroy. */
int yaml_tree_parse(const char *text, size_t len, const char *file, yaml_tree_t **out, diag_t *d);

/* Reads the file at `path` and parses it as yaml_tree_parse does, naming it `path` in
 * errors. A file that cannot be read is reported as "path: error: cannot read: …" and gives
 * KANAL_EIO. Ownership: *out is new. */
int yaml_tree_load(const char *path, yaml_tree_t **out, diag_t *d);

/* Frees a tree and sets *tree_p to NULL; accepts NULL. Ownership: takes *tree_p. */
void yaml_tree_destroy(yaml_tree_t **tree_p);

/* Returns the value of `key` in mapping `map`, or NULL when map is NULL, not a mapping, or
 * has no such key. Ownership: the node is borrowed from the tree. */
const ynode_t *yaml_tree_get(const ynode_t *map, const char *key);

/* True for a plain scalar that YAML reads as null: empty, "~", "null", "Null", "NULL". */
bool yaml_tree_is_null(const ynode_t *node);

/* Names a node's kind for error texts: "a text value", "a list", "a mapping", "empty". */
const char *yaml_tree_describe(const ynode_t *node);

/* Reports into d every key of mapping `map` that is not in `known` (n_known names):
 * "unknown key 'endpoint' (did you mean 'endpoints'?)", or, with no close match,
 * "unknown key 'foo' (expected one of: a, b, c)". `where`, when not NULL, is added to the
 * text ("unknown key 'x' in 'retry'"). Returns how many keys were unknown. */
size_t yaml_tree_check_keys(const ynode_t *map, const char *const *known, size_t n_known,
			    const char *where, const char *file, diag_t *d);

/* Orders the errors d received since it held `from` errors by line, then column (keeping
 * the order of equal places), so that one file's errors read from top to bottom whatever
 * order the checks ran in. */
void yaml_tree_sort_errors(diag_t *d, size_t from);

/* Returns the candidate closest to `word` by edit distance (insertions, deletions,
 * substitutions and swaps of neighbours) when it is close enough to be a likely typo — at
 * most 2 edits, and at most a third of the longer word's length, rounded up — or NULL.
 * Of equally close candidates the first wins.
 * Ownership: the result is one of the borrowed candidates. */
const char *yaml_tree_closest(const char *word, const char *const *candidates, size_t n);

#endif
