/*
 * cli/cmd_admin.c — `kanalctl reload` and `kanalctl status`: kanald's admin socket.
 *
 * One JSON request, one JSON reply, over a REQ socket (docs/design/wire.md). A refused
 * reload lists the errors kanald found, each "file:line:col: error: …", followed by the
 * offending line when kanalctl can read the file too; the old routing table stays in force.
 * status prints whatever the reply holds in an indented, YAML-like form, so new fields need
 * no change here; --json prints the reply as it came.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "kanalctl.h"
#include "routes.h"

/* Sends {"cmd": cmd} to the admin socket; see ctl_admin_call. */
static int s_admin_call(const ctl_t *ctl, const char *cmd, json_t **reply, char **raw)
{
	json_t *request = json_pack("{s:s}", "cmd", cmd);
	int status;

	*reply = NULL;
	*raw = NULL;
	if (!request) {
		ctl_error("out of memory");
		return CTL_EXIT_ERROR;
	}
	status = ctl_admin_call(ctl, request, reply, raw);
	json_decref(request);
	return status;
}

static bool s_is_scalar(json_t *v)
{
	return !json_is_object(v) && !json_is_array(v);
}

static void s_print_scalar(FILE *out, json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		fputs(json_string_value(v), out);
		break;
	case JSON_INTEGER:
		fprintf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		fprintf(out, "%g", json_real_value(v));
		break;
	case JSON_TRUE:
		fputs("true", out);
		break;
	case JSON_FALSE:
		fputs("false", out);
		break;
	default:
		fputs("-", out);
		break;
	}
}

static void s_pretty_object(FILE *out, json_t *obj, int indent, bool list_item);

/* Prints "key: value" for one member at the current position (the indentation is
 * already written), descending into objects and lists. */
static void s_pretty_member(FILE *out, const char *key, json_t *v, int indent)
{
	size_t i;
	json_t *item;
	bool all_scalar = true;

	fprintf(out, "%s:", key);
	if (s_is_scalar(v)) {
		fputc(' ', out);
		s_print_scalar(out, v);
		fputc('\n', out);
		return;
	}
	if (json_is_object(v)) {
		if (json_object_size(v) == 0) {
			fputs(" {}\n", out);
			return;
		}
		fputc('\n', out);
		s_pretty_object(out, v, indent + 2, false);
		return;
	}
	if (json_array_size(v) == 0) {
		fputs(" []\n", out);
		return;
	}
	json_array_foreach(v, i, item)
	{
		if (!s_is_scalar(item))
			all_scalar = false;
	}
	if (all_scalar) {
		json_array_foreach(v, i, item)
		{
			fputs(i ? ", " : " ", out);
			s_print_scalar(out, item);
		}
		fputc('\n', out);
		return;
	}
	fputc('\n', out);
	json_array_foreach(v, i, item)
	{
		if (json_is_object(item) && json_object_size(item) > 0) {
			s_pretty_object(out, item, indent + 4, true);
		} else if (s_is_scalar(item)) {
			fprintf(out, "%*s- ", indent + 2, "");
			s_print_scalar(out, item);
			fputc('\n', out);
		} else {
			char *dump = json_dumps(item, JSON_COMPACT);
			fprintf(out, "%*s- %s\n", indent + 2, "", dump ? dump : "?");
			free(dump);
		}
	}
}

/* Prints an object's members at `indent`; a list item starts with "- " two columns to the
 * left, YAML style. */
static void s_pretty_object(FILE *out, json_t *obj, int indent, bool list_item)
{
	const char *key;
	json_t *v;
	bool first = true;

	json_object_foreach(obj, key, v)
	{
		if (list_item && first)
			fprintf(out, "%*s- ", indent - 2, "");
		else
			fprintf(out, "%*s", indent, "");
		first = false;
		s_pretty_member(out, key, v, indent);
	}
}

/* Prints the reply's members except `ok` (the exit status says it), masked. */
static void s_print_pretty(json_t *reply)
{
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	json_t *copy;

	if (!mem)
		return;
	copy = json_copy(reply);
	json_object_del(copy, "ok");
	s_pretty_object(mem, copy, 0, false);
	json_decref(copy);
	fclose(mem);
	if (text) {
		kanal_cpr_redact_inplace(text);
		fputs(text, stdout);
	}
	free(text);
}

/* Adds one "file:line:col: error: text" string from kanald to d, so that diag_print can
 * show the offending line; a string in another form is kept whole. */
static void s_add_error(diag_t *d, const char *text)
{
	const char *mark = strstr(text, ": error: ");
	const char *p, *q;
	char file[512];
	int line = 0, col = 0;

	if (mark && (size_t)(mark - text) < sizeof file) {
		size_t n;

		p = mark;
		/* Walk back over ":COL" and ":LINE"; the rest is the file name, which may hold
		 * colons itself. */
		while (p > text && p[-1] >= '0' && p[-1] <= '9')
			p--;
		if (p > text && p[-1] == ':' && p < mark) {
			col = atoi(p);
			p--;
			q = p;
			while (q > text && q[-1] >= '0' && q[-1] <= '9')
				q--;
			if (q > text && q[-1] == ':' && q < p) {
				line = atoi(q);
				p = q - 1;
			} else {
				line = col;
				col = 0;
			}
			n = (size_t)(p - text);
			memcpy(file, text, n);
			file[n] = '\0';
			diag_add(d, file, line, col, "%s", mark + strlen(": error: "));
			return;
		}
	}
	diag_add(d, NULL, 0, 0, "%s", text);
}

/* Prints the reply of a reload or a push (`what`): "what: ok" and the reply, or the errors
 * kanald (or another node) found, each with its offending line, and why. Returns the exit
 * status. Ownership: borrows reply and raw. */
static int s_report_table(const ctl_t *ctl, const char *what, json_t *reply, const char *raw)
{
	json_t *errors, *item;
	diag_t d = { 0 };
	const char *message;
	size_t i;
	int status = json_is_true(json_object_get(reply, "ok")) ? CTL_EXIT_OK : CTL_EXIT_NO;

	if (ctl->json) {
		ctl_printf(stdout, "%s\n", raw);
		return status;
	}
	if (status == CTL_EXIT_OK) {
		printf("%s: ok\n", what);
		s_print_pretty(reply);
		return status;
	}
	errors = json_object_get(reply, "errors");
	json_array_foreach(errors, i, item)
	{
		if (json_is_string(item))
			s_add_error(&d, json_string_value(item));
	}
	diag_print(&d, stderr);
	diag_free(&d);
	message = json_string_value(json_object_get(reply, "error"));
	ctl_error("%s refused%s%s; the old routing table stays in force", what, message ? ": " : "",
		  message ? message : "");
	return status;
}

/* In cluster mode a reload or push waits for every node's verdict (up to 8 s). */
#define CTL_TABLE_TIMEOUT_MS 15000

int cmd_reload(ctl_t *ctl, int argc, char **argv)
{
	json_t *reply;
	char *raw;
	int status;

	if (argc > 0) {
		ctl_error(
			"reload takes no arguments (kanalctl check ROUTES... checks files first)");
		return CTL_EXIT_ERROR;
	}
	if (!ctl->timeout_given)
		ctl->timeout_ms = CTL_TABLE_TIMEOUT_MS;
	status = s_admin_call(ctl, "reload", &reply, &raw);
	if (status != CTL_EXIT_OK)
		return status;
	status = s_report_table(ctl, "reload", reply, raw);
	json_decref(reply);
	free(raw);
	return status;
}

/* Reads a whole routing file into a JSON string, or NULL after saying why. */
static json_t *s_file_text(const char *path)
{
	char *text = NULL;
	size_t len = 0;
	json_t *s;

	if (ctl_read_input(path, 900 * 1024, &text, &len) < 0)
		return NULL;
	s = json_stringn(text, len);
	if (!s)
		ctl_error("%s is not UTF-8 text", path);
	free(text);
	return s;
}

/* `routes push [PATHS...]`: the files (or the config's routes:) checked as `check` checks
 * them, then sent to kanald (routes.push), which shares them with every node of the
 * cluster. */
static int s_routes_push(ctl_t *ctl, int argc, char **argv)
{
	conf_t *conf = ctl_conf_load(ctl);
	routes_t *rt = NULL;
	diag_t d = { 0 };
	json_t *files, *request, *reply = NULL;
	char *raw = NULL;
	int status = CTL_EXIT_ERROR;

	if (!conf)
		return CTL_EXIT_ERROR;
	if (ctl_load_routes(conf, argc ? argv : NULL, (size_t)argc, &rt, &d) < 0) {
		diag_print(&d, stderr);
		ctl_error("routes push: the files have errors; nothing was sent");
		status = CTL_EXIT_NO;
		goto done;
	}
	files = json_array();
	for (size_t i = 0; i < routes_file_count(rt); i++) {
		const char *path = routes_file(rt, i);
		json_t *text = s_file_text(path);
		if (!text) {
			json_decref(files);
			goto done;
		}
		json_array_append_new(files, json_pack("{s:s, s:o}", "name", path, "text", text));
	}
	request = json_pack("{s:s, s:o}", "cmd", "routes.push", "files", files);
	if (!ctl->timeout_given)
		ctl->timeout_ms = CTL_TABLE_TIMEOUT_MS;
	status = request ? ctl_admin_call(ctl, request, &reply, &raw) : CTL_EXIT_ERROR;
	json_decref(request);
	if (status == CTL_EXIT_OK)
		status = s_report_table(ctl, "routes push", reply, raw);
done:
	json_decref(reply);
	free(raw);
	routes_destroy(&rt);
	diag_free(&d);
	conf_destroy(&conf);
	return status;
}

int cmd_routes(ctl_t *ctl, int argc, char **argv)
{
	if (argc > 0 && !strcmp(argv[0], "push"))
		return s_routes_push(ctl, argc - 1, argv + 1);
	ctl_error("routes needs a subcommand: push [ROUTES...] (kanalctl help routes)");
	return CTL_EXIT_ERROR;
}

int cmd_status(ctl_t *ctl, int argc, char **argv)
{
	json_t *reply;
	const char *message;
	char *raw;
	int status;

	if (argc > 0) {
		ctl_error("status takes no arguments");
		return CTL_EXIT_ERROR;
	}
	if (ctl->cluster) {
		/* The cluster's nodes and the shared consumers' lag too (cluster mode). */
		json_t *request = json_pack("{s:s, s:b}", "cmd", "status", "cluster", 1);
		if (!request) {
			ctl_error("out of memory");
			return CTL_EXIT_ERROR;
		}
		status = ctl_admin_call(ctl, request, &reply, &raw);
		json_decref(request);
	} else {
		status = s_admin_call(ctl, "status", &reply, &raw);
	}
	if (status != CTL_EXIT_OK)
		return status;
	/* A reply without "ok" is read as an answer: the status itself is the point. */
	if (json_is_false(json_object_get(reply, "ok")))
		status = CTL_EXIT_NO;
	if (ctl->json) {
		ctl_printf(stdout, "%s\n", raw);
	} else {
		s_print_pretty(reply);
		message = json_string_value(json_object_get(reply, "error"));
		if (status != CTL_EXIT_OK)
			ctl_error("status failed%s%s", message ? ": " : "", message ? message : "");
	}
	json_decref(reply);
	free(raw);
	return status;
}
