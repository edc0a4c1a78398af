/*
 * broker/routes_measures.c — the `measures:` of routing files (docs/routes.md): each
 * measure's name, title, match, labels and target, checked and read into route_measure_t
 * for the builder of routes.c, and freed with the table. Counting them is stats.c's.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"
#include "routes_int.h"

static const char *const s_measure_keys[] = { "name", "title", "match", "labels", "target" };
static const char *const s_label_keys[] = { "from", "default" };
static const char *const s_target_keys[] = { "label", "digital", "share" };

void routes__measure_free(route_measure_t *m)
{
	free(m->name);
	free(m->title);
	free(m->type_pattern);
	free(m->source_glob);
	free(m->where_text);
	expr_destroy(&m->where);
	for (size_t i = 0; i < m->n_labels; i++) {
		free(m->label_names[i]);
		free(m->label_fields[i]);
		free(m->label_defaults[i]);
	}
	free(m->target_label);
	for (size_t i = 0; i < m->n_target_values; i++)
		free(m->target_values[i]);
	free(m->target_values);
	/* m->file is borrowed from the table's file list. */
}

/* Label names: what Prometheus takes ([a-z_][a-z0-9_]*), and not "measure". */
static bool s_label_name_valid(const char *name)
{
	if (!*name || (*name >= '0' && *name <= '9') || !strcmp(name, "measure"))
		return false;
	for (const char *p = name; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= '0' && *p <= '9') && *p != '_')
			return false;
	return true;
}

/* A label value written in the file (a default, a target's value): text a label value can
 * be, up to 127 bytes (what a counted value keeps). */
static const char *s_label_value(builder_t *b, const ynode_t *v, const char *key)
{
	const char *text = routes__text(b, v, key);

	if (text && strlen(text) > 127) {
		routes__err(b, v, "'%s' is %zu bytes long; a label value has at most 127", key,
			    strlen(text));
		return NULL;
	}
	return text;
}

/* `labels: { channel: data.channel, … }`: each label is the text of a data field; the long
 * form `channel: { from: data.channel, default: unknown }` adds the value for an event
 * without it. */
static void s_measure_labels(builder_t *b, route_measure_t *m, const ynode_t *v)
{
	if (!routes__is_mapping(b, v, "labels"))
		return;
	if (v->n_pairs > ROUTES_MEASURE_MAX_LABELS) {
		routes__err(b, v, "a measure has at most %d labels, not %zu",
			    ROUTES_MEASURE_MAX_LABELS, v->n_pairs);
		return;
	}
	for (size_t i = 0; i < v->n_pairs; i++) {
		const ynode_t *k = v->pairs[i].key, *f = v->pairs[i].value, *x;
		const char *field = NULL, *dflt = NULL;

		if (!s_label_name_valid(k->text)) {
			routes__err(
				b, k,
				"label name '%s' is not valid: use lower-case letters, digits and "
				"'_', not starting with a digit (and not 'measure')",
				k->text);
			continue;
		}
		if (f->kind == YNODE_MAPPING) {
			routes__check_keys(b, f, s_label_keys, N_OF(s_label_keys), "label");
			if ((x = yaml_tree_get(f, "from")))
				field = routes__text(b, x, "from");
			else
				routes__err(
					b, f,
					"label '%s' has no 'from': name its data field (data.NAME)",
					k->text);
			if ((x = yaml_tree_get(f, "default")) &&
			    !(dflt = s_label_value(b, x, "default")))
				continue;
		} else {
			field = routes__text(b, f, k->text);
		}
		if (!field)
			continue;
		if (strncmp(field, "data.", 5) || !field[5]) {
			if (f->kind == YNODE_MAPPING)
				f = yaml_tree_get(f, "from");
			routes__err(b, f, "label '%s' must name a data field (data.NAME), not '%s'",
				    k->text, field);
			continue;
		}
		m->label_names[m->n_labels] = routes__strdup(b, k->text);
		m->label_fields[m->n_labels] = routes__strdup(b, field + 5);
		m->label_defaults[m->n_labels] = dflt ? routes__strdup(b, dflt) : NULL;
		m->n_labels++;
	}
}

/* `target: { label: channel, digital: [digital, nemsms], share: 0.8 }`: the share of the
 * counted events whose `label` is one of the `digital` values that the department aims at
 * (kanalctl report channels). */
static void s_measure_target(builder_t *b, route_measure_t *m, const ynode_t *v)
{
	const ynode_t *x;
	const char *text;
	char *end;

	if (!routes__is_mapping(b, v, "target"))
		return;
	routes__check_keys(b, v, s_target_keys, N_OF(s_target_keys), "target");
	if (!(x = yaml_tree_get(v, "label"))) {
		routes__err(b, v, "'target' has no 'label': name the label whose values it counts");
	} else if ((text = routes__text(b, x, "label"))) {
		size_t i = 0;
		while (i < m->n_labels && strcmp(m->label_names[i], text))
			i++;
		if (i == m->n_labels)
			routes__err(b, x, "target label '%s' is not one of the measure's labels",
				    text);
		else
			m->target_label = routes__strdup(b, text);
	}
	if (!(x = yaml_tree_get(v, "digital"))) {
		routes__err(b, v,
			    "'target' has no 'digital': list the label values that count as "
			    "digital");
	} else if (x->kind != YNODE_SEQUENCE || !x->n_items) {
		routes__err(b, x, "'digital' must be a list of label values, not %s",
			    yaml_tree_describe(x));
	} else if ((m->target_values = calloc(x->n_items, sizeof *m->target_values))) {
		for (size_t i = 0; i < x->n_items; i++)
			if ((text = s_label_value(b, x->items[i], "digital")))
				m->target_values[m->n_target_values++] = routes__strdup(b, text);
	} else {
		b->oom = true;
	}
	if (!(x = yaml_tree_get(v, "share"))) {
		routes__err(b, v,
			    "'target' has no 'share': the digital share aimed at, 0 to 1 (0.8)");
	} else if ((text = routes__text(b, x, "share"))) {
		m->target_share = strtod(text, &end);
		if (end == text || *end || !(m->target_share >= 0 && m->target_share <= 1))
			routes__err(b, x,
				    "'share' must be a number from 0 to 1 (0.8 for 80%%), not '%s'",
				    text);
	}
}

static route_measure_t *s_new_measure(builder_t *b)
{
	if (b->n_measures == b->cap_measures) {
		size_t cap = b->cap_measures ? b->cap_measures * 2 : 4;
		route_measure_t *ms = realloc(b->measures, cap * sizeof *ms);
		if (!ms) {
			b->oom = true;
			return NULL;
		}
		b->measures = ms;
		b->cap_measures = cap;
	}
	memset(&b->measures[b->n_measures], 0, sizeof *b->measures);
	b->measures[b->n_measures].file = (char *)b->file;
	return &b->measures[b->n_measures++];
}

void routes__measure(builder_t *b, const ynode_t *v, size_t nth)
{
	const ynode_t *x;
	const char *text;
	route_measure_t *m;

	if (v->kind != YNODE_MAPPING) {
		routes__err(b, v, "measure #%zu must be a mapping with a name and 'match', not %s",
			    nth + 1, yaml_tree_describe(v));
		return;
	}
	if (!(m = s_new_measure(b)))
		return;
	m->line = v->line;
	m->column = v->column;
	routes__check_keys(b, v, s_measure_keys, N_OF(s_measure_keys), "measure");
	if (!(x = yaml_tree_get(v, "name"))) {
		routes__err(b, v, "measure #%zu has no 'name'", nth + 1);
	} else if ((text = routes__text(b, x, "name"))) {
		if (!routes__route_name_valid(text))
			routes__err(
				b, x,
				"measure name '%s' is not valid: use lower-case letters, digits, "
				"'_', '.' and '-', starting with a letter or digit",
				text);
		for (size_t i = 0; i + 1 < b->n_measures; i++)
			if (b->measures[i].name && !strcmp(b->measures[i].name, text)) {
				routes__err(
					b, x,
					"duplicate measure name '%s' (first defined at %s:%d:%d)",
					text, b->measures[i].file, b->measures[i].line,
					b->measures[i].column);
				text = NULL;
				break;
			}
		if (text && routes__route_name_valid(text))
			m->name = routes__strdup(b, text);
	}
	if ((x = yaml_tree_get(v, "title")) && (text = routes__text(b, x, "title")))
		m->title = routes__strdup(b, text);
	if ((x = yaml_tree_get(v, "match")))
		routes__match_into(b, x, &m->type_pattern, &m->source_glob, &m->where_text,
				   &m->where);
	else
		routes__err(b, v,
			    "measure #%zu has no 'match': say which events it counts (type, "
			    "source, where)",
			    nth + 1);
	if ((x = yaml_tree_get(v, "labels")) && !yaml_tree_is_null(x))
		s_measure_labels(b, m, x);
	if ((x = yaml_tree_get(v, "target")))
		s_measure_target(b, m, x);
}
