/*
 * cli/cmd_check.c — `kanalctl check` and `kanalctl explain`: the routing table, offline.
 *
 * check walks the one validation path kanald --check and a start walk: kanald.yaml, each
 * instance's plugin and options and the plugin's own check callback (the plugin is
 * dlopened but never initialised: no thread, no connection, nothing created), then the
 * routing files with the config's instance names — going on past errors in the config,
 * so that an operator learns every mistake before `kanalctl reload` in one run, reported
 * the way compilers report errors. It also warns about each type in a message catalogue (CATALOGUE_FILE
 * beside the routing files: the types the connectors emit, docs/message-types.md) that no
 * route takes, since such an event would wait in the default destination. explain loads the same table and tells, for a sample event, which routes
 * match, why the others do not, and where the event would go.
 */
#include <ctype.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kanalctl.h"
#include "instance.h"
#include "routes.h"

/* The message catalogue's name, in the folder of the routing files. */
#define CATALOGUE_FILE "message-types.list"

static const char *s_plural(size_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

int ctl_load_routes(const conf_t *conf, char **paths, size_t n_paths, routes_t **out, diag_t *d)
{
	const char **names = ctl_instance_names(conf);
	size_t n = 0;
	int rc;

	if (!names) {
		diag_add(d, NULL, 0, 0, "out of memory");
		return KANAL_ENOMEM;
	}
	/* An entry the config refused has no name (check goes on past config errors). */
	for (size_t i = 0; i < conf->n_instances; i++)
		if (names[i])
			names[n++] = names[i];
	if (!paths) {
		paths = conf->route_paths;
		n_paths = conf->n_route_paths;
	}
	rc = routes_load((const char *const *)paths, n_paths, names, n, out, d);
	free(names);
	return rc;
}

/* Warns about each CURVE client that may emit but owns no `sources`: every source is open
 * to it, so it could send under another tenant's (docs/design/tenancy.md). A warning, not
 * an error: such configs worked before `sources` existed. */
static void s_warn_open_sources(const conf_t *conf)
{
	for (size_t i = 0; i < conf->n_clients; i++) {
		const conf_client_t *c = &conf->clients[i];
		if (c->name && c->n_emit && !c->has_sources)
			fprintf(stderr,
				"%s:%d:%d: warning: client '%s' has no 'sources': every "
				"event source is open to it (write e.g. sources: "
				"[\"/vendors/%s/*\"])\n",
				conf->file, c->line, c->column, c->name, c->name);
	}
}

/* True when some route's type pattern takes `type` (its source and where aside). */
static bool s_type_routed(const routes_t *rt, const char *type)
{
	for (size_t i = 0; i < routes_count(rt); i++) {
		const route_t *r = routes_get(rt, i);
		if (!r->type_pattern || routes_type_matches(r->type_pattern, type))
			return true;
	}
	return false;
}

/* Reads the catalogue at `path` (one type a line; '#' starts a comment) and warns about
 * each type no route takes. Returns the number of warnings; a missing file is none. */
static size_t s_warn_catalogue(const routes_t *rt, const char *path)
{
	FILE *in = fopen(path, "r");
	char line[512];
	size_t warnings = 0;
	int n = 0;

	if (!in)
		return 0;
	while (fgets(line, sizeof line, in)) {
		char *type = line, *end;
		n++;
		if ((end = strchr(type, '#')))
			*end = '\0';
		while (isspace((unsigned char)*type))
			type++;
		end = type + strlen(type);
		while (end > type && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (!*type || s_type_routed(rt, type))
			continue;
		fprintf(stderr,
			"%s:%d:1: warning: type '%s' is in the catalogue but no route takes "
			"it: such events go to the default '%s'\n",
			path, n, type, routes_default(rt));
		warnings++;
	}
	fclose(in);
	return warnings;
}

/* Warns about each catalogued type without a route, for the catalogue in the folder of
 * each routing path (a folder, or a file's folder), each folder once. */
static void s_warn_unrouted(const routes_t *rt, const conf_t *conf, char **paths, size_t n_paths)
{
	char **seen;

	if (!paths) {
		paths = conf->route_paths;
		n_paths = conf->n_route_paths;
	}
	if (!(seen = calloc(n_paths + 1, sizeof *seen)))
		return;
	for (size_t i = 0; i < n_paths; i++) {
		char *copy = strdup(paths[i]), *dir, *cat = NULL;
		size_t len = copy ? strlen(copy) : 0;
		bool again = false;

		if (!copy)
			break;
		if (len > 5 && !strcmp(copy + len - 5, ".yaml"))
			dir = dirname(copy);
		else if (len > 4 && !strcmp(copy + len - 4, ".yml"))
			dir = dirname(copy);
		else
			dir = copy;
		for (size_t k = 0; k < i && !again; k++)
			again = seen[k] && !strcmp(seen[k], dir);
		if (!again && asprintf(&cat, "%s/%s", dir, CATALOGUE_FILE) >= 0) {
			s_warn_catalogue(rt, cat);
			seen[i] = strdup(dir);
		}
		free(cat);
		free(copy);
	}
	for (size_t i = 0; i < n_paths; i++)
		free(seen[i]);
	free(seen);
}

/* Prints each inquiry area's channels (routes with `area:`), one line per route: the
 * channel strategy as the table declares it. */
static void s_print_areas(const routes_t *rt)
{
	for (size_t i = 0; i < routes_count(rt); i++) {
		const route_t *r = routes_get(rt, i);
		if (!r->area)
			continue;
		ctl_printf(stdout, "  area %s: primary", r->area);
		for (size_t k = 0; k < r->n_to; k++)
			ctl_printf(stdout, "%s %s", k ? "," : "", r->to[k]);
		if (r->n_fallback)
			ctl_printf(stdout, ", secondary");
		for (size_t k = 0; k < r->n_fallback; k++)
			ctl_printf(stdout, "%s %s", k ? "," : "", r->fallback[k]);
		ctl_printf(stdout, " (route %s)\n", r->name);
	}
}

int cmd_check(ctl_t *ctl, int argc, char **argv)
{
	const char *path = ctl_conf_path(ctl);
	routes_t *rt = NULL;
	diag_t d = { 0 };
	conf_t *conf = NULL;
	size_t conf_errors;
	int rc, status = CTL_EXIT_OK;

	if (!path)
		return CTL_EXIT_ERROR;
	/* The one validation path of kanald (--check and start): the config, each instance
	 * (plugin, options table, the plugin's check), the routing files — every mistake,
	 * even past errors in the config itself. */
	rc = conf_load_all(path, &conf, &d);
	if (!conf) {
		if (d.count)
			diag_print(&d, stderr);
		ctl_error("check failed: %s: %s", path, kanal_strerror(rc));
		diag_free(&d);
		return CTL_EXIT_NO;
	}
	conf_errors = d.count + instance_check_all(conf, false, &d);
	rc = ctl_load_routes(conf, argc ? argv : NULL, (size_t)argc, &rt, &d);
	if (rc < 0 && d.count == conf_errors)
		diag_add(&d, NULL, 0, 0, "the routing files could not be loaded: %s",
			 kanal_strerror(rc));

	s_warn_open_sources(conf);
	if (d.count) {
		diag_print(&d, stderr);
		ctl_error("check failed: %zu %s (%zu in %s, %zu in the routing files)", d.count,
			  s_plural(d.count, "error", "errors"), conf_errors, conf->file,
			  d.count - conf_errors);
		status = CTL_EXIT_NO;
	} else {
		size_t n_routes = routes_count(rt), n_files = routes_file_count(rt);
		s_warn_unrouted(rt, conf, argc ? argv : NULL, (size_t)argc);
		ctl_printf(stdout,
			   "%s: %zu %s; routes: %zu %s from %zu %s, default \u2192 %s: ok\n",
			   conf->file, conf->n_instances,
			   s_plural(conf->n_instances, "instance", "instances"), n_routes,
			   s_plural(n_routes, "route", "routes"), n_files,
			   s_plural(n_files, "file", "files"), routes_default(rt));
		s_print_areas(rt);
	}
	routes_destroy(&rt);
	diag_free(&d);
	conf_destroy(&conf);
	return status;
}

/* Prints routes_explain's account of one event, masked once more on its way out (the
 * account quotes values from the event). Returns the number of matching routes. */
static size_t s_explain_one(const routes_t *rt, const kanal_msg_t *msg, const char *label)
{
	char *text = NULL;
	size_t text_len = 0, matched;
	FILE *mem;

	/* routes_explain describes the event itself; the label says which file it came from. */
	ctl_printf(stdout, "%s:\n", label);
	mem = open_memstream(&text, &text_len);
	if (!mem) {
		/* Without a buffer, trust routes_explain's own masking rather than print nothing. */
		return routes_explain(rt, msg, stdout);
	}
	matched = routes_explain(rt, msg, mem);
	fclose(mem);
	if (text) {
		kanal_cpr_redact_inplace(text);
		fputs(text, stdout);
	}
	free(text);
	return matched;
}

/* Explains every event in one file. Returns the exit status for this file. */
static int s_explain_file(const routes_t *rt, const conf_t *conf, const char *path)
{
	size_t max_single = conf->max_event_bytes > 0 ? (size_t)conf->max_event_bytes : 0;
	size_t max_batch = (max_single ? max_single : KANAL_MSG_DEFAULT_MAX_BYTES) * 64;
	const char *name = ctl_input_name(path);
	kanal_batch_t *batch = NULL;
	kanal_msg_t *msg = NULL;
	kanal_error_t err;
	char *text = NULL, label[300];
	size_t len, i;
	int rc, status = CTL_EXIT_OK;

	if (ctl_read_input(path, max_batch + 1, &text, &len) < 0)
		return CTL_EXIT_ERROR;
	kanal_error_clear(&err);
	if (kanal_json_is_batch(text, len))
		rc = kanal_batch_parse(text, len, max_batch, &batch, &err);
	else
		rc = kanal_msg_parse(text, len, max_single, &msg, &err);
	free(text);
	if (rc < 0) {
		ctl_printf(stderr, "%s: not a valid event: %s\n", name,
			   err.text[0] ? err.text : kanal_strerror(rc));
		return CTL_EXIT_ERROR;
	}
	if (msg) {
		if (s_explain_one(rt, msg, name) == 0)
			status = CTL_EXIT_NO;
		kanal_msg_destroy(&msg);
		return status;
	}
	if (batch->count == 0)
		ctl_printf(stdout, "%s: empty batch: nothing to explain\n", name);
	for (i = 0; i < batch->count; i++) {
		snprintf(label, sizeof label, "%s[%zu]", name, i);
		if (i > 0)
			fputc('\n', stdout);
		if (s_explain_one(rt, batch->msgs[i], label) == 0)
			status = CTL_EXIT_NO;
	}
	kanal_batch_destroy(&batch);
	return status;
}

int cmd_explain(ctl_t *ctl, int argc, char **argv)
{
	routes_t *rt = NULL;
	diag_t d = { 0 };
	conf_t *conf;
	int i, status = CTL_EXIT_OK;

	if (argc < 1) {
		ctl_error("explain: which event? usage: kanalctl explain EVENT.json...");
		return CTL_EXIT_ERROR;
	}
	conf = ctl_conf_load(ctl);
	if (!conf)
		return CTL_EXIT_ERROR;
	if (ctl_load_routes(conf, NULL, 0, &rt, &d) < 0) {
		diag_print(&d, stderr);
		ctl_error("explain: the routing files have errors (kanalctl check shows them all)");
		status = CTL_EXIT_ERROR;
		goto done;
	}
	for (i = 0; i < argc; i++) {
		int file_status;
		if (i > 0)
			fputc('\n', stdout);
		file_status = s_explain_file(rt, conf, argv[i]);
		if (file_status > status)
			status = file_status;
		fflush(stdout);
	}
done:
	routes_destroy(&rt);
	diag_free(&d);
	conf_destroy(&conf);
	return status;
}
