/*
 * broker/yamltree.c — kanald's YAML node tree (see yamltree.h).
 *
 * libyaml's document API does the parsing; this file turns its node array into ynode_t
 * records that carry 1-based positions and point at each other directly, so the schema
 * walkers in conf.c and routes.c read like the files they check. libyaml resolves aliases to
 * shared node ids, which can make a cycle ("&a [*a]"); the tree is checked for that, and for
 * duplicate keys, before anyone walks it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include <kanal/error.h>
#include "yamltree.h"

/* Deeper nesting than this is surely a mistake, and walking it could exhaust the stack. */
#define YAML_TREE_MAX_DEPTH 64

typedef struct ytree_priv {
	yaml_document_t doc;
	bool have_doc;
	ynode_t *nodes; /* one per libyaml node, same order (id - 1) */
	size_t n_nodes;
	const ynode_t **items; /* every sequence's items, back to back */
	ypair_t *pairs;        /* every mapping's pairs, back to back */
	char *file;
} ytree_priv_t;

/* ---- building ----------------------------------------------------------------------- */

static int s_line(yaml_mark_t mark)
{
	return (int)mark.line + 1;
}

static int s_col(yaml_mark_t mark)
{
	return (int)mark.column + 1;
}

/* Finds the line and column (1-based, counted in characters) of byte `offset` in text.
 * libyaml's reader errors give only an offset. */
static void s_offset_position(const char *text, size_t len, size_t offset, int *line, int *col)
{
	size_t i;

	*line = 1;
	*col = 1;
	for (i = 0; i < offset && i < len; i++) {
		if (text[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)text[i] & 0xC0) != 0x80) {
			(*col)++;
		}
	}
}

/* Reports libyaml's parse error with its position. When libyaml gives up on a key that has
 * no ':' it points at the line after it; the key itself (its context mark) is where the
 * operator must look, so that case is reported there. */
static void s_report_syntax(const yaml_parser_t *parser, const char *text, size_t len,
			    const char *file, diag_t *d)
{
	const char *problem = parser->problem ? parser->problem : "cannot parse";
	int line, col;

	if (parser->error == YAML_READER_ERROR) {
		s_offset_position(text, len, parser->problem_offset, &line, &col);
		diag_add(d, file, line, col, "invalid YAML: %s", problem);
		return;
	}
	if (parser->context && !strcmp(parser->context, "while scanning a simple key")) {
		diag_add(d, file, s_line(parser->context_mark), s_col(parser->context_mark),
			 "invalid YAML: %s after this key", problem);
		return;
	}
	line = s_line(parser->problem_mark);
	col = s_col(parser->problem_mark);
	if (parser->problem_mark.index < len && text[parser->problem_mark.index] == '\t')
		diag_add(d, file, line, col, "invalid YAML: a tab; indent with spaces");
	else if (parser->context && parser->context_mark.line != parser->problem_mark.line)
		diag_add(d, file, line, col, "invalid YAML: %s (%s that started at line %d)",
			 problem, parser->context, s_line(parser->context_mark));
	else if (parser->context)
		diag_add(d, file, line, col, "invalid YAML: %s (%s)", problem, parser->context);
	else
		diag_add(d, file, line, col, "invalid YAML: %s", problem);
}

static ynode_style_t s_scalar_style(yaml_scalar_style_t style)
{
	switch (style) {
	case YAML_SINGLE_QUOTED_SCALAR_STYLE:
		return YNODE_SINGLE_QUOTED;
	case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
		return YNODE_DOUBLE_QUOTED;
	case YAML_LITERAL_SCALAR_STYLE:
		return YNODE_LITERAL;
	case YAML_FOLDED_SCALAR_STYLE:
		return YNODE_FOLDED;
	default:
		return YNODE_PLAIN;
	}
}

/* Finds the column where a block scalar's content starts: the indentation of its first
 * non-blank line, which comes after the line holding the '|' or '>' at `index`. Returns 0
 * when there is none. */
static int s_block_content_column(const char *text, size_t len, size_t index)
{
	size_t i = index;

	while (i < len && text[i] != '\n')
		i++;
	while (i < len) {
		size_t spaces = 0;
		i++; /* past the '\n' */
		while (i + spaces < len && text[i + spaces] == ' ')
			spaces++;
		if (i + spaces < len && text[i + spaces] != '\n' && text[i + spaces] != '\r')
			return (int)spaces + 1;
		i += spaces;
		while (i < len && text[i] != '\n')
			i++;
	}
	return 0;
}

/* Reports keys that occur twice in one mapping, at the later occurrence. YAML forbids
 * them and libyaml does not check; silently taking one of them would hide a mistake. */
static size_t s_check_duplicates(const ynode_t *map, const char *file, diag_t *d)
{
	size_t i, j, errors = 0;

	for (i = 1; i < map->n_pairs; i++) {
		const ynode_t *key = map->pairs[i].key;
		for (j = 0; j < i; j++) {
			const ynode_t *first = map->pairs[j].key;
			if (first->len == key->len && !memcmp(first->text, key->text, key->len)) {
				diag_add(d, file, key->line, key->column,
					 "duplicate key '%s' (first at line %d)", key->text,
					 first->line);
				errors++;
				break;
			}
		}
	}
	return errors;
}

/* The shared storage for every sequence's items and every mapping's pairs, sized once. */
static bool s_alloc_children(ytree_priv_t *p)
{
	yaml_node_t *yn;
	size_t n_items = 0, n_pairs = 0;

	for (yn = p->doc.nodes.start; yn < p->doc.nodes.top; yn++) {
		if (yn->type == YAML_SEQUENCE_NODE)
			n_items += (size_t)(yn->data.sequence.items.top -
					    yn->data.sequence.items.start);
		else if (yn->type == YAML_MAPPING_NODE)
			n_pairs +=
				(size_t)(yn->data.mapping.pairs.top - yn->data.mapping.pairs.start);
	}
	p->items = calloc(n_items ? n_items : 1, sizeof *p->items);
	p->pairs = calloc(n_pairs ? n_pairs : 1, sizeof *p->pairs);
	return p->items && p->pairs;
}

/* Fills a scalar node. Returns 1 when its text holds a NUL character (reported), else 0. */
static size_t s_build_scalar(ynode_t *node, const yaml_node_t *yn, const char *text, size_t len,
			     const char *file, diag_t *d)
{
	node->kind = YNODE_SCALAR;
	node->style = s_scalar_style(yn->data.scalar.style);
	node->text = (const char *)yn->data.scalar.value;
	node->len = yn->data.scalar.length;
	if (node->style == YNODE_LITERAL || node->style == YNODE_FOLDED)
		node->content_column = s_block_content_column(text, len, yn->start_mark.index);
	if (strlen(node->text) != node->len) {
		diag_add(d, file, node->line, node->column, "text holds a NUL character");
		return 1;
	}
	return 0;
}

/* Fills a sequence node, taking its items from p->items at *used. */
static void s_build_sequence(ytree_priv_t *p, ynode_t *node, const yaml_node_t *yn, size_t *used)
{
	const yaml_node_item_t *it;

	node->kind = YNODE_SEQUENCE;
	node->style =
		yn->data.sequence.style == YAML_FLOW_SEQUENCE_STYLE ? YNODE_FLOW : YNODE_BLOCK;
	node->items = &p->items[*used];
	for (it = yn->data.sequence.items.start; it < yn->data.sequence.items.top; it++)
		p->items[(*used)++] = &p->nodes[*it - 1];
	node->n_items = (size_t)(&p->items[*used] - node->items);
}

/* Fills a mapping node, taking its pairs from p->pairs at *used. A key that is not text is
 * reported and its pair left out. Returns the number of such keys. */
static size_t s_build_mapping(ytree_priv_t *p, ynode_t *node, const yaml_node_t *yn, size_t *used,
			      const char *file, diag_t *d)
{
	const yaml_node_pair_t *pr;
	size_t errors = 0;

	node->kind = YNODE_MAPPING;
	node->style = yn->data.mapping.style == YAML_FLOW_MAPPING_STYLE ? YNODE_FLOW : YNODE_BLOCK;
	node->pairs = &p->pairs[*used];
	for (pr = yn->data.mapping.pairs.start; pr < yn->data.mapping.pairs.top; pr++) {
		const yaml_node_t *key = &p->doc.nodes.start[pr->key - 1];
		if (key->type != YAML_SCALAR_NODE) {
			diag_add(d, file, s_line(key->start_mark), s_col(key->start_mark),
				 "a key must be a text value, not %s",
				 key->type == YAML_MAPPING_NODE ? "a mapping" : "a list");
			errors++;
			continue;
		}
		p->pairs[*used].key = &p->nodes[pr->key - 1];
		p->pairs[*used].value = &p->nodes[pr->value - 1];
		(*used)++;
	}
	node->n_pairs = (size_t)(&p->pairs[*used] - node->pairs);
	return errors;
}

/* Fills in the node records from libyaml's document. Returns the number of errors found
 * (keys that are not text, text holding a NUL character, duplicate keys), or (size_t)-1
 * when memory runs out. */
static size_t s_build_nodes(ytree_priv_t *p, const char *text, size_t len, const char *file,
			    diag_t *d)
{
	size_t i, items_used = 0, pairs_used = 0, errors = 0;

	if (!s_alloc_children(p))
		return (size_t)-1;
	for (i = 0; i < p->n_nodes; i++) {
		ynode_t *node = &p->nodes[i];
		const yaml_node_t *yn = &p->doc.nodes.start[i];
		node->line = s_line(yn->start_mark);
		node->column = s_col(yn->start_mark);
		node->text = "";
		if (yn->type == YAML_SCALAR_NODE)
			errors += s_build_scalar(node, yn, text, len, file, d);
		else if (yn->type == YAML_SEQUENCE_NODE)
			s_build_sequence(p, node, yn, &items_used);
		else
			errors += s_build_mapping(p, node, yn, &pairs_used, file, d);
	}
	for (i = 0; i < p->n_nodes; i++)
		if (p->nodes[i].kind == YNODE_MAPPING)
			errors += s_check_duplicates(&p->nodes[i], file, d);
	return errors;
}

enum { S_UNSEEN = 0, S_OPEN, S_DONE };

/* Depth-first walk that finds aliases pointing into their own ancestors (a cycle, which
 * would make every later walk endless) and nesting deeper than YAML_TREE_MAX_DEPTH. Nodes
 * shared through aliases are walked once. Returns the number of errors. */
static size_t s_check_shape(const ytree_priv_t *p, const ynode_t *node, const ynode_t *from,
			    unsigned char *state, int depth, const char *file, diag_t *d)
{
	size_t at = (size_t)(node - p->nodes), i, errors = 0;

	if (state[at] == S_DONE)
		return 0;
	if (state[at] == S_OPEN) {
		/* libyaml keeps no node for the alias itself: point at the key (or list) that
		 * holds it. */
		diag_add(d, file, from->line, from->column,
			 "an alias here refers to a node that contains it (a cycle), anchored at "
			 "line %d",
			 node->line);
		return 1;
	}
	if (depth > YAML_TREE_MAX_DEPTH) {
		diag_add(d, file, node->line, node->column, "nested more than %d levels deep",
			 YAML_TREE_MAX_DEPTH);
		state[at] = S_DONE;
		return 1;
	}
	state[at] = S_OPEN;
	for (i = 0; i < node->n_items && !errors; i++)
		errors += s_check_shape(p, node->items[i], node, state, depth + 1, file, d);
	for (i = 0; i < node->n_pairs && !errors; i++)
		errors += s_check_shape(p, node->pairs[i].value, node->pairs[i].key, state,
					depth + 1, file, d);
	state[at] = S_DONE;
	return errors;
}

static void s_priv_free(ytree_priv_t *p)
{
	if (!p)
		return;
	if (p->have_doc)
		yaml_document_delete(&p->doc);
	free(p->nodes);
	free(p->items);
	free(p->pairs);
	free(p->file);
	free(p);
}

/* Makes sure the text holds no second document; reports it (or a syntax error in it). */
static size_t s_check_single_document(yaml_parser_t *parser, const char *text, size_t len,
				      const char *file, diag_t *d)
{
	yaml_document_t next;
	yaml_node_t *root;
	size_t errors = 0;

	if (!yaml_parser_load(parser, &next)) {
		s_report_syntax(parser, text, len, file, d);
		return 1;
	}
	root = yaml_document_get_root_node(&next);
	if (root) {
		diag_add(d, file, s_line(next.start_mark), s_col(next.start_mark),
			 "a second YAML document ('---'); a kanal file holds one document");
		errors = 1;
	}
	yaml_document_delete(&next);
	return errors;
}

int yaml_tree_parse(const char *text, size_t len, const char *file, yaml_tree_t **out, diag_t *d)
{
	yaml_parser_t parser;
	ytree_priv_t *p = NULL;
	yaml_tree_t *tree = NULL;
	unsigned char *state = NULL;
	size_t errors = 0;
	int rc = KANAL_ENOMEM;

	*out = NULL;
	if (!file)
		file = "<text>";
	if (!yaml_parser_initialize(&parser))
		return KANAL_ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	p = calloc(1, sizeof *p);
	tree = calloc(1, sizeof *tree);
	if (!p || !tree || !(p->file = strdup(file)))
		goto fail;
	if (!yaml_parser_load(&parser, &p->doc)) {
		if (parser.error == YAML_MEMORY_ERROR)
			goto fail;
		s_report_syntax(&parser, text, len, file, d);
		rc = KANAL_ECONFIG;
		goto fail;
	}
	p->have_doc = true;
	p->n_nodes = (size_t)(p->doc.nodes.top - p->doc.nodes.start);
	if (p->n_nodes) {
		p->nodes = calloc(p->n_nodes, sizeof *p->nodes);
		state = calloc(p->n_nodes, 1);
		if (!p->nodes || !state)
			goto fail;
		/* libyaml stores the root first. */
		errors = s_build_nodes(p, text, len, file, d);
		if (errors == (size_t)-1)
			goto fail;
	}
	if (p->n_nodes && s_check_shape(p, &p->nodes[0], &p->nodes[0], state, 0, file, d)) {
		rc = KANAL_ECONFIG;
		goto fail;
	}
	if (s_check_single_document(&parser, text, len, file, d)) {
		rc = KANAL_ECONFIG;
		goto fail;
	}
	free(state);
	yaml_parser_delete(&parser);
	tree->errors = errors;
	tree->file = p->file;
	tree->root = p->n_nodes ? &p->nodes[0] : NULL;
	tree->priv = p;
	*out = tree;
	return 0;
fail:
	free(state);
	yaml_parser_delete(&parser);
	s_priv_free(p);
	free(tree);
	return rc;
}

int yaml_tree_load(const char *path, yaml_tree_t **out, diag_t *d)
{
	FILE *f;
	char *text = NULL;
	size_t len = 0, cap = 0;
	int rc;

	*out = NULL;
	f = fopen(path, "rb");
	if (!f) {
		diag_add(d, path, 0, 0, "cannot read: %s", strerror(errno));
		return KANAL_EIO;
	}
	for (;;) {
		size_t n;
		if (cap - len < 4096) {
			char *bigger = realloc(text, cap ? cap * 2 : 8192);
			if (!bigger) {
				free(text);
				fclose(f);
				return KANAL_ENOMEM;
			}
			text = bigger;
			cap = cap ? cap * 2 : 8192;
		}
		n = fread(text + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		diag_add(d, path, 0, 0, "cannot read: %s", strerror(errno ? errno : EIO));
		free(text);
		fclose(f);
		return KANAL_EIO;
	}
	fclose(f);
	rc = yaml_tree_parse(text, len, path, out, d);
	free(text);
	return rc;
}

void yaml_tree_destroy(yaml_tree_t **tree_p)
{
	if (!tree_p || !*tree_p)
		return;
	s_priv_free((*tree_p)->priv);
	free(*tree_p);
	*tree_p = NULL;
}

/* ---- reading ------------------------------------------------------------------------ */

const ynode_t *yaml_tree_get(const ynode_t *map, const char *key)
{
	size_t i;

	if (!map || map->kind != YNODE_MAPPING)
		return NULL;
	for (i = 0; i < map->n_pairs; i++)
		if (!strcmp(map->pairs[i].key->text, key))
			return map->pairs[i].value;
	return NULL;
}

bool yaml_tree_is_null(const ynode_t *node)
{
	if (!node)
		return true;
	if (node->kind != YNODE_SCALAR || node->style != YNODE_PLAIN)
		return false;
	return !strcmp(node->text, "") || !strcmp(node->text, "~") || !strcmp(node->text, "null") ||
	       !strcmp(node->text, "Null") || !strcmp(node->text, "NULL");
}

const char *yaml_tree_describe(const ynode_t *node)
{
	if (yaml_tree_is_null(node))
		return "empty";
	switch (node->kind) {
	case YNODE_SEQUENCE:
		return "a list";
	case YNODE_MAPPING:
		return "a mapping";
	default:
		return "a text value";
	}
}

/* Optimal string alignment distance between a and b: the edits a typist makes — insert,
 * delete, replace a character, or swap two neighbours. Words longer than 63 bytes are
 * never typos of each other here; they get a large distance. */
static size_t s_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	size_t row[3][64];
	size_t *prev2 = row[0], *prev = row[1], *cur = row[2];

	if (la >= 64 || lb >= 64)
		return (size_t)-1;
	for (j = 0; j <= lb; j++)
		prev[j] = j;
	for (i = 1; i <= la; i++) {
		size_t *tmp;
		cur[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t best = prev[j] + 1;
			if (cur[j - 1] + 1 < best)
				best = cur[j - 1] + 1;
			if (prev[j - 1] + cost < best)
				best = prev[j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    prev2[j - 2] + 1 < best)
				best = prev2[j - 2] + 1;
			cur[j] = best;
		}
		tmp = prev2;
		prev2 = prev;
		prev = cur;
		cur = tmp;
	}
	return prev[lb];
}

void yaml_tree_sort_errors(diag_t *d, size_t from)
{
	size_t i, j;

	if (!d)
		return;
	/* Insertion sort: stable, and one file's errors are few. */
	for (i = from + 1; i < d->count; i++) {
		kanal_error_t item = d->items[i];
		for (j = i; j > from; j--) {
			const kanal_error_t *prev = &d->items[j - 1];
			if (prev->line < item.line ||
			    (prev->line == item.line && prev->column <= item.column))
				break;
			d->items[j] = *prev;
		}
		d->items[j] = item;
	}
}

const char *yaml_tree_closest(const char *word, const char *const *candidates, size_t n)
{
	const char *best = NULL;
	size_t best_dist = (size_t)-1, i;

	if (!word || !*word)
		return NULL;
	for (i = 0; i < n; i++) {
		size_t dist, longer;
		if (!candidates[i])
			continue;
		dist = s_distance(word, candidates[i]);
		longer = strlen(word);
		if (strlen(candidates[i]) > longer)
			longer = strlen(candidates[i]);
		if (dist == 0 || dist > 2 || dist > (longer + 2) / 3)
			continue;
		if (dist < best_dist) {
			best = candidates[i];
			best_dist = dist;
		}
	}
	return best;
}

size_t yaml_tree_check_keys(const ynode_t *map, const char *const *known, size_t n_known,
			    const char *where, const char *file, diag_t *d)
{
	char in[96] = "";
	size_t i, k, unknown = 0;

	if (!map || map->kind != YNODE_MAPPING)
		return 0;
	if (where)
		snprintf(in, sizeof in, " in '%s'", where);
	for (i = 0; i < map->n_pairs; i++) {
		const ynode_t *key = map->pairs[i].key;
		const char *close;
		for (k = 0; k < n_known; k++)
			if (!strcmp(key->text, known[k]))
				break;
		if (k < n_known)
			continue;
		unknown++;
		close = yaml_tree_closest(key->text, known, n_known);
		if (close) {
			diag_add(d, file, key->line, key->column,
				 "unknown key '%s'%s (did you mean '%s'?)", key->text, in, close);
		} else {
			char list[256] = "";
			size_t used = 0;
			for (k = 0; k < n_known && used < sizeof list; k++)
				used += (size_t)snprintf(list + used, sizeof list - used, "%s%s",
							 k ? ", " : "", known[k]);
			diag_add(d, file, key->line, key->column,
				 "unknown key '%s'%s (expected one of: %s)", key->text, in, list);
		}
	}
	return unknown;
}
