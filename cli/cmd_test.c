/*
 * cli/cmd_test.c — `kanalctl test`: unit tests for routing tables, without a broker.
 *
 * A test file (routes/tests/NAME.yaml) holds cases; each names an input event (inline, as a
 * YAML or JSON mapping, or `event_file:` beside the test file) and what the table must do
 * with it: which routes match (`routes:`), the exact set of destinations (`to:`; nothing
 * else may match), and optionally the data each destination receives after its transform
 * (`data:`). The table is the config's routing files, or those the test file names in its
 * own `routes:` (relative to the test file), loaded as `check` loads them. A failing case
 * prints what differs — for data, a line diff of expected and actual JSON — and the command
 * exits 1, so CI can run the shipped tests (docs/routes.md, "Testing routes"). Everything
 * printed passes through the CPR masker: tests may hold realistic events.
 */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kanalctl.h"
#include "routes.h"
#include "yamltree.h"

#define TEST_MAX_MATCHES 256
#define TEST_MAX_DIFF_LINES 400

/* Prints text with CPR numbers masked. */
static void s_put(FILE *out, const char *text)
{
	char *masked = strdup(text ? text : "");

	if (!masked)
		return;
	kanal_cpr_redact_inplace(masked);
	fputs(masked, out);
	free(masked);
}

/* Converts a YAML node to JSON: plain scalars null/true/false and numbers as such, every
 * other scalar a string. Ownership: returns a new reference, or NULL. */
static json_t *s_to_json(const ynode_t *n)
{
	json_t *j;

	if (n->kind == YNODE_SCALAR) {
		if (n->style == YNODE_PLAIN) {
			json_error_t e;

			if (!strcmp(n->text, "null") || !strcmp(n->text, "~") || !n->text[0])
				return json_null();
			if (!strcmp(n->text, "true") || !strcmp(n->text, "false"))
				return json_boolean(n->text[0] == 't');
			j = json_loads(n->text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
			if (j && json_is_number(j))
				return j;
			json_decref(j);
		}
		return json_stringn(n->text, n->len);
	}
	if (n->kind == YNODE_SEQUENCE) {
		j = json_array();
		for (size_t i = 0; j && i < n->n_items; i++)
			json_array_append_new(j, s_to_json(n->items[i]));
		return j;
	}
	j = json_object();
	for (size_t i = 0; j && i < n->n_pairs; i++)
		json_object_set_new(j, n->pairs[i].key->text, s_to_json(n->pairs[i].value));
	return j;
}

/* Reads a scalar or a list of scalars into a sorted JSON array of strings. */
static json_t *s_name_set(const ynode_t *n)
{
	json_t *set = json_array();
	size_t count = n->kind == YNODE_SEQUENCE ? n->n_items : 1;

	for (size_t i = 0; set && i < count; i++) {
		const ynode_t *item = n->kind == YNODE_SEQUENCE ? n->items[i] : n;

		if (item->kind == YNODE_SCALAR && item->text[0])
			json_array_append_new(set, json_string(item->text));
	}
	return set;
}

static int s_cmp_json_str(const void *a, const void *b)
{
	return strcmp(json_string_value(*(json_t *const *)a),
		      json_string_value(*(json_t *const *)b));
}

/* "a, b, c" of a set, sorted and without repeats. Ownership: returns new (free). */
static char *s_set_text(json_t *set)
{
	size_t n = json_array_size(set), len = 0;
	json_t **items = calloc(n + 1, sizeof *items);
	char *text;

	if (!items)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		items[i] = json_array_get(set, i);
		len += strlen(json_string_value(items[i])) + 2;
	}
	qsort(items, n, sizeof *items, s_cmp_json_str);
	text = calloc(1, len + sizeof "(none)");
	if (text) {
		if (n == 0)
			strcpy(text, "(none)");
		for (size_t i = 0; i < n; i++) {
			if (i &&
			    !strcmp(json_string_value(items[i]), json_string_value(items[i - 1])))
				continue;
			if (text[0])
				strcat(text, ", ");
			strcat(text, json_string_value(items[i]));
		}
	}
	free(items);
	return text;
}

/* Splits text into lines (in place). Returns the count, at most max. */
static size_t s_lines(char *text, char **lines, size_t max)
{
	size_t n = 0;

	for (char *p = text; p && *p && n < max; n++) {
		lines[n] = p;
		p = strchr(p, '\n');
		if (p)
			*p++ = '\0';
	}
	return n;
}

/* Prints a line diff of two JSON values, pretty-printed with sorted keys: "-" lines only in
 * the expected, "+" lines only in the actual, found by a longest common subsequence. */
static void s_print_diff(const json_t *want, const json_t *got)
{
	size_t flags = JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY;
	char *a = json_dumps(want, flags), *b = json_dumps(got, flags);
	char *la[TEST_MAX_DIFF_LINES], *lb[TEST_MAX_DIFF_LINES];
	size_t na, nb, i, j;
	unsigned short *lcs;

	if (!a || !b)
		goto done;
	na = s_lines(a, la, TEST_MAX_DIFF_LINES);
	nb = s_lines(b, lb, TEST_MAX_DIFF_LINES);
	lcs = calloc((na + 1) * (nb + 1), sizeof *lcs);
	if (!lcs)
		goto done;
#define L(x, y) lcs[(x) * (nb + 1) + (y)]
	for (i = na; i-- > 0;)
		for (j = nb; j-- > 0;)
			L(i, j) = !strcmp(la[i], lb[j])       ? L(i + 1, j + 1) + 1
				  : L(i + 1, j) > L(i, j + 1) ? L(i + 1, j)
							      : L(i, j + 1);
	fputs("      --- expected\n      +++ actual\n", stdout);
	for (i = 0, j = 0; i < na || j < nb;) {
		const char *mark, *line;

		if (i < na && j < nb && !strcmp(la[i], lb[j])) {
			mark = " ";
			line = la[i++];
			j++;
		} else if (j < nb && (i == na || L(i, j + 1) >= L(i + 1, j))) {
			mark = "+";
			line = lb[j++];
		} else {
			mark = "-";
			line = la[i++];
		}
		printf("      %s ", mark);
		s_put(stdout, line);
		fputc('\n', stdout);
	}
#undef L
	free(lcs);
done:
	free(a);
	free(b);
}

/* The data a delivery of the i-th destination of r receives: the transform's output, or
 * the event's data. Returns a new reference (JSON null when there is none), or NULL with
 * the rejection in err. */
static json_t *s_delivered_data(const route_t *r, size_t i, const kanal_msg_t *msg,
				kanal_error_t *err)
{
	transform_t *t = routes_transform(r, false, i);
	kanal_msg_t *res = NULL;
	char *text;
	json_t *j;

	if (t && transform_apply(t, msg, &res, err) != 0)
		return NULL;
	text = kanal_msg_data_json(res ? res : msg, NULL);
	j = text ? json_loads(text, JSON_DECODE_ANY, NULL) : json_null();
	kanal_free(text);
	kanal_msg_destroy(&res);
	return j;
}

/* Reads a case's event: `event:` inline, or `event_file:` relative to the test file's
 * folder. Returns the message or NULL after printing why. */
static kanal_msg_t *s_case_event(const ynode_t *c, const char *dir, const char *label)
{
	const ynode_t *inline_ev = yaml_tree_get(c, "event"),
		      *file = yaml_tree_get(c, "event_file");
	kanal_msg_t *msg = NULL;
	kanal_error_t err;
	char *text = NULL, path[PATH_MAX];
	size_t len = 0;
	int rc;

	kanal_error_clear(&err);
	if (inline_ev && inline_ev->kind == YNODE_MAPPING) {
		json_t *j = s_to_json(inline_ev);

		text = j ? json_dumps(j, JSON_COMPACT) : NULL;
		len = text ? strlen(text) : 0;
		json_decref(j);
	} else if (file && file->kind == YNODE_SCALAR) {
		if (file->text[0] == '/')
			snprintf(path, sizeof path, "%s", file->text);
		else
			snprintf(path, sizeof path, "%s/%s", dir, file->text);
		if (ctl_read_input(path, KANAL_MSG_DEFAULT_MAX_BYTES + 1, &text, &len) < 0)
			return NULL;
	} else {
		printf("FAIL %s\n      the case needs `event:` (a mapping) or `event_file:`\n",
		       label);
		return NULL;
	}
	rc = text ? kanal_msg_parse(text, len, 0, &msg, &err) : KANAL_ENOMEM;
	free(text);
	if (rc < 0) {
		printf("FAIL %s\n      not a valid event: ", label);
		s_put(stdout, err.text[0] ? err.text : kanal_strerror(rc));
		fputc('\n', stdout);
		return NULL;
	}
	return msg;
}

/* Prints the failure header once per case. */
static void s_fail_once(bool *failed, const char *label)
{
	if (!*failed) {
		fputs("FAIL ", stdout);
		s_put(stdout, label);
		fputc('\n', stdout);
	}
	*failed = true;
}

/* Compares a set the table produced with the expected one; prints both when they differ. */
static void s_check_set(const char *what, json_t *want, json_t *got, bool *failed,
			const char *label)
{
	char *w = s_set_text(want), *g = s_set_text(got);

	if (w && g && strcmp(w, g)) {
		s_fail_once(failed, label);
		printf("      %s: expected %s\n      %*s  actual   %s\n", what, w,
		       (int)strlen(what), "", g);
	}
	free(w);
	free(g);
}

/* Checks the expected data of each destination named under `data:`. */
static void s_check_data(const ynode_t *data, const route_t **matched, size_t n,
			 const kanal_msg_t *msg, bool *failed, const char *label)
{
	for (size_t k = 0; k < data->n_pairs; k++) {
		const char *dest = data->pairs[k].key->text;
		json_t *want = s_to_json(data->pairs[k].value), *got = NULL;
		bool found = false;
		kanal_error_t err;

		kanal_error_clear(&err);
		for (size_t m = 0; m < n && !found; m++) {
			for (size_t i = 0; i < matched[m]->n_to && !found; i++) {
				if (strcmp(matched[m]->to[i], dest))
					continue;
				found = true;
				got = s_delivered_data(matched[m], i, msg, &err);
			}
		}
		if (!found) {
			s_fail_once(failed, label);
			printf("      data for '%s': the event does not go there\n", dest);
		} else if (!got) {
			s_fail_once(failed, label);
			printf("      data for '%s': the transform rejects the delivery: ", dest);
			s_put(stdout, err.text);
			fputc('\n', stdout);
		} else if (!json_equal(want, got)) {
			s_fail_once(failed, label);
			printf("      data for '%s' differs:\n", dest);
			s_print_diff(want, got);
		}
		json_decref(want);
		json_decref(got);
	}
}

/* Runs one case. Returns true when it passed. */
static bool s_run_case(const routes_t *rt, const ynode_t *c, const char *dir, const char *label)
{
	const route_t *matched[TEST_MAX_MATCHES];
	const ynode_t *want_routes = yaml_tree_get(c, "routes"), *want_to = yaml_tree_get(c, "to");
	const ynode_t *data = yaml_tree_get(c, "data");
	json_t *got_routes = json_array(), *got_to = json_array();
	kanal_msg_t *msg = s_case_event(c, dir, label);
	bool failed = false;
	size_t n;

	if (!msg) {
		json_decref(got_routes);
		json_decref(got_to);
		return false;
	}
	n = routes_match(rt, msg, matched, TEST_MAX_MATCHES);
	if (n > TEST_MAX_MATCHES)
		n = TEST_MAX_MATCHES;
	for (size_t m = 0; m < n; m++) {
		json_array_append_new(got_routes, json_string(matched[m]->name));
		for (size_t i = 0; i < matched[m]->n_to; i++)
			json_array_append_new(got_to, json_string(matched[m]->to[i]));
	}
	if (n == 0)
		json_array_append_new(got_to, json_string(routes_default(rt)));
	if (want_routes) {
		json_t *want = s_name_set(want_routes);
		s_check_set("routes", want, got_routes, &failed, label);
		json_decref(want);
	}
	if (want_to) {
		json_t *want = s_name_set(want_to);
		s_check_set("to", want, got_to, &failed, label);
		json_decref(want);
	}
	if (data && data->kind == YNODE_MAPPING)
		s_check_data(data, matched, n, msg, &failed, label);
	if (!want_routes && !want_to && !data) {
		s_fail_once(&failed, label);
		fputs("      the case expects nothing: give `routes:`, `to:` or `data:`\n", stdout);
	}
	if (!failed) {
		fputs("ok   ", stdout);
		s_put(stdout, label);
		fputc('\n', stdout);
	}
	kanal_msg_destroy(&msg);
	json_decref(got_routes);
	json_decref(got_to);
	return !failed;
}

/* Loads the table a test file tests: its own `routes:` (relative to it), else the config's. */
static int s_load_table(const conf_t *conf, const ynode_t *root, const char *dir, routes_t **out,
			diag_t *d)
{
	const ynode_t *r = yaml_tree_get(root, "routes");
	const char **names = ctl_instance_names(conf);
	char *paths[32];
	size_t n = 0;
	int rc;

	if (!names)
		return KANAL_ENOMEM;
	if (r) {
		size_t count = r->kind == YNODE_SEQUENCE ? r->n_items : 1;

		for (size_t i = 0; i < count && n < 32; i++) {
			const ynode_t *p = r->kind == YNODE_SEQUENCE ? r->items[i] : r;

			if (p->kind != YNODE_SCALAR)
				continue;
			if (p->text[0] == '/' ? asprintf(&paths[n], "%s", p->text) < 0
					      : asprintf(&paths[n], "%s/%s", dir, p->text) < 0)
				break;
			n++;
		}
		rc = routes_load((const char *const *)paths, n, names, conf->n_instances, out, d);
		for (size_t i = 0; i < n; i++)
			free(paths[i]);
	} else {
		rc = routes_load((const char *const *)conf->route_paths, conf->n_route_paths, names,
				 conf->n_instances, out, d);
	}
	free(names);
	return rc;
}

/* Runs one test file. Adds to *passed and *failed; returns CTL_EXIT_ERROR when the file or
 * its table cannot be read. */
static int s_run_file(const conf_t *conf, const char *path, size_t *passed, size_t *failed)
{
	static const char *const known[] = { "routes", "tests" };
	static const char *const case_keys[] = { "name",   "event", "event_file",
						 "routes", "to",    "data" };
	yaml_tree_t *tree = NULL;
	routes_t *rt = NULL;
	diag_t d = { 0 };
	const ynode_t *tests;
	char *copy = strdup(path), *dir = copy ? dirname(copy) : ".";
	int status = CTL_EXIT_OK;

	if (yaml_tree_load(path, &tree, &d) < 0 || !tree->root ||
	    tree->root->kind != YNODE_MAPPING) {
		if (!d.count)
			diag_add(&d, path, 1, 1, "a test file is a mapping with `tests:`");
		status = CTL_EXIT_ERROR;
		goto done;
	}
	yaml_tree_check_keys(tree->root, known, 2, NULL, path, &d);
	tests = yaml_tree_get(tree->root, "tests");
	if (!tests || tests->kind != YNODE_SEQUENCE)
		diag_add(&d, path, tree->root->line, tree->root->column,
			 "`tests:` must be a list of cases");
	for (size_t i = 0; tests && tests->kind == YNODE_SEQUENCE && i < tests->n_items; i++) {
		const ynode_t *c = tests->items[i];

		if (c->kind != YNODE_MAPPING)
			diag_add(&d, path, c->line, c->column,
				 "a case is a mapping (name, event, to…)");
		else
			yaml_tree_check_keys(c, case_keys, 6, NULL, path, &d);
	}
	if (d.count || s_load_table(conf, tree->root, dir, &rt, &d) < 0) {
		status = CTL_EXIT_ERROR;
		goto done;
	}
	for (size_t i = 0; i < tests->n_items; i++) {
		const ynode_t *c = tests->items[i], *name = yaml_tree_get(c, "name");
		char label[400];

		snprintf(label, sizeof label, "%s:%d: %s", ctl_input_name(path), c->line,
			 name && name->kind == YNODE_SCALAR ? name->text : "(unnamed case)");
		if (s_run_case(rt, c, dir, label))
			(*passed)++;
		else
			(*failed)++;
	}
done:
	if (d.count)
		diag_print(&d, stderr);
	diag_free(&d);
	routes_destroy(&rt);
	yaml_tree_destroy(&tree);
	free(copy);
	return status;
}

int cmd_test(ctl_t *ctl, int argc, char **argv)
{
	size_t passed = 0, failed = 0;
	int status = CTL_EXIT_OK;
	conf_t *conf;

	if (argc < 1) {
		ctl_error("test: which tests? usage: kanalctl test routes/tests/*.yaml");
		return CTL_EXIT_ERROR;
	}
	conf = ctl_conf_load(ctl);
	if (!conf)
		return CTL_EXIT_ERROR;
	for (int i = 0; i < argc; i++)
		if (s_run_file(conf, argv[i], &passed, &failed) != CTL_EXIT_OK)
			status = CTL_EXIT_ERROR;
	printf("%zu passed, %zu failed\n", passed, failed);
	conf_destroy(&conf);
	if (status == CTL_EXIT_OK && failed)
		status = CTL_EXIT_NO;
	return status;
}
