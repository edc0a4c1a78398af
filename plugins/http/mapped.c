/*
 * plugins/http/mapped.c — vendor JSON in: the ingress's `map_paths`, where a system that
 * cannot speak CloudEvents POSTs its own JSON and a jq program (the sandboxed runner of
 * plugins/common/kc_jq.h, the same as httppoll's and filedrop's `map:`) makes events of it.
 *
 * Each item of map_paths is "PATH SOURCE MAP": the URL path, the `source` every event from
 * it gets (fixed here, so a token client's sources= still decides who may post there), and
 * the file of the jq program (relative to map_dir). The program's output is one event
 * object or an array of them, with the keys kc_jq_map_event knows (id, type, subject,
 * time, data); `$client` is the token client's name (null without tokens_file). ingress.c
 * then checks and emits the events exactly as it does CloudEvents.
 */
#include "http.h"
#include "../common/kc_files.h"
#include "../common/kc_jq.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mapped_path {
	char *path;   /* the URL path, e.g. /vendor/acme */
	char *source; /* the source of every event made here */
	kc_jq_t *jq;  /* the vendor's program */
};

struct mapped {
	mapped_path_t *paths;
	size_t n;
	kc_jq_t *event; /* "." : turns one output object into an event (kc_jq_map_event) */
};

void mapped_destroy(mapped_t **m_p)
{
	mapped_t *m = m_p ? *m_p : NULL;

	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->paths[i].path);
		free(m->paths[i].source);
		kc_jq_destroy(&m->paths[i].jq);
	}
	free(m->paths);
	kc_jq_destroy(&m->event);
	free(m);
	*m_p = NULL;
}

/* Reads one "PATH SOURCE MAP" item into mp. Returns 0 or KANAL_ECONFIG / KANAL_ENOMEM
 * after kanal_set_error. */
static int s_path_new(kanal_ctx_t *ctx, const char *item, const char *map_dir,
		      const char *events_path, mapped_path_t *mp)
{
	char path[256], source[512], file[1024], extra[2], *program = NULL;
	kanal_error_t err;
	int rc;

	if (sscanf(item, "%255s %511s %1023s %1s", path, source, file, extra) != 3) {
		kanal_set_error(ctx,
				"map_paths item '%.200s' is not 'PATH SOURCE MAP' (e.g. "
				"'/vendor/acme /vendors/acme acme.jq')",
				item);
		return KANAL_ECONFIG;
	}
	if (path[0] != '/' || !strcmp(path, events_path)) {
		kanal_set_error(ctx, "map_paths item '%.200s': the path %s", item,
				path[0] != '/' ? "must start with '/'"
					       : "is the CloudEvents path (option path)");
		return KANAL_ECONFIG;
	}
	if (file[0] != '/' && !map_dir) {
		kanal_set_error(ctx,
				"map_paths item '%.200s': the map file is relative, so map_dir "
				"must say where it is",
				item);
		return KANAL_ECONFIG;
	}
	rc = kc_file_read(file[0] == '/' ? NULL : map_dir, file, &program, NULL);
	if (rc < 0) {
		kanal_set_error(ctx, "map_paths item '%.200s': cannot read the map %s%s%s: %s",
				item, file[0] == '/' ? "" : map_dir, file[0] == '/' ? "" : "/",
				file, kanal_strerror(rc));
		return rc == KANAL_ENOMEM ? rc : KANAL_ECONFIG;
	}
	kanal_error_clear(&err);
	rc = kc_jq_new(program, "client", "map", &mp->jq, &err);
	free(program);
	if (rc == KANAL_ENOMEM)
		return rc;
	if (rc < 0) {
		if (err.line > 0)
			kanal_set_error(ctx, "map_paths item '%.200s': %s, line %d: %s", item, file,
					err.line, err.text);
		else
			kanal_set_error(ctx, "map_paths item '%.200s': %s: %s", item, file,
					err.text);
		return KANAL_ECONFIG;
	}
	mp->path = strdup(path);
	mp->source = strdup(source);
	return mp->path && mp->source ? 0 : KANAL_ENOMEM;
}

int mapped_new(kanal_ctx_t *ctx, const kanal_strlist_t *items, const char *map_dir,
	       const char *events_path, mapped_t **out)
{
	mapped_t *m;
	kanal_error_t err;
	int rc;

	*out = NULL;
	if (!items->count)
		return 0;
	if (!(m = calloc(1, sizeof *m)) || !(m->paths = calloc(items->count, sizeof *m->paths))) {
		free(m);
		return KANAL_ENOMEM;
	}
	kanal_error_clear(&err);
	if ((rc = kc_jq_new(".", "client", "map", &m->event, &err)) < 0) {
		mapped_destroy(&m);
		return rc == KANAL_ENOMEM ? rc : KANAL_ECONFIG;
	}
	for (size_t i = 0; i < items->count; i++) {
		rc = s_path_new(ctx, items->items[i], map_dir, events_path, &m->paths[m->n++]);
		for (size_t k = 0; rc == 0 && k + 1 < m->n; k++) {
			if (!strcmp(m->paths[k].path, m->paths[i].path)) {
				kanal_set_error(ctx, "map_paths: the path %s is given twice",
						m->paths[i].path);
				rc = KANAL_ECONFIG;
			}
		}
		if (rc < 0) {
			mapped_destroy(&m);
			return rc;
		}
	}
	*out = m;
	return 0;
}

const mapped_path_t *mapped_find(const mapped_t *m, const char *url)
{
	for (size_t i = 0; m && i < m->n; i++)
		if (!strcmp(m->paths[i].path, url))
			return &m->paths[i];
	return NULL;
}

/* Makes the event one output object describes, in (*msgs)[*n]. */
static int s_event(const mapped_t *m, const mapped_path_t *mp, jv object, kanal_msg_t **msgs,
		   size_t *n, kanal_error_t *err)
{
	kc_jq_event_defaults_t def = { .type = NULL, .source = mp->source, .id = NULL };
	jv text = kc_jq_dump(m->event, object, err);
	int rc;

	if (!jv_is_valid(text)) {
		jv_free(text);
		return KANAL_EREJECTED;
	}
	rc = kc_jq_map_event(m->event, jv_string_value(text), jv_null(), &def, &msgs[*n], err);
	jv_free(text);
	if (rc == 0)
		(*n)++;
	return rc;
}

int mapped_decode(const mapped_t *m, const mapped_path_t *mp, const char *body, size_t len,
		  const char *client, kanal_msg_t ***out, size_t *n_out, bool *array,
		  kanal_error_t *err)
{
	jv input, result;
	kanal_msg_t **msgs = NULL;
	size_t n = 0, count = 1;
	int rc = 0;

	*out = NULL;
	*n_out = 0;
	*array = false;
	if (len > INT_MAX) {
		kanal_error_set(err, NULL, 0, 0, NULL, "the body is too large for the map");
		return KANAL_ETOOBIG;
	}
	input = jv_parse_sized(body, (int)len);
	if (!jv_is_valid(input)) {
		jv why = jv_invalid_get_msg(input);
		kanal_error_set(err, NULL, 0, 0, NULL, "the body is not JSON: %s",
				jv_get_kind(why) == JV_KIND_STRING ? jv_string_value(why) : "");
		jv_free(why);
		return KANAL_EPARSE;
	}
	result = kc_jq_run(mp->jq, input, client ? jv_string(client) : jv_null(), err);
	if (!jv_is_valid(result)) {
		jv_free(result);
		return KANAL_EREJECTED;
	}
	if (jv_get_kind(result) == JV_KIND_ARRAY) {
		*array = true;
		count = (size_t)jv_array_length(jv_copy(result));
	} else if (jv_get_kind(result) != JV_KIND_OBJECT) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"map: the output is %s, not an event object or an array of them",
				jv_kind_name(jv_get_kind(result)));
		jv_free(result);
		return KANAL_EREJECTED;
	}
	if (!(msgs = calloc(count ? count : 1, sizeof *msgs))) {
		jv_free(result);
		return KANAL_ENOMEM;
	}
	for (size_t i = 0; i < count && rc == 0; i++) {
		jv object = *array ? jv_array_get(jv_copy(result), (int)i) : jv_copy(result);

		rc = s_event(m, mp, object, msgs, &n, err);
		if (rc && *array) {
			char at[32];
			size_t k = (size_t)snprintf(at, sizeof at, "event #%zu: ", i);
			size_t kept = strnlen(err->text, sizeof err->text - 1 - k);

			memmove(err->text + k, err->text, kept);
			memcpy(err->text, at, k);
			err->text[k + kept] = '\0';
		}
	}
	jv_free(result);
	if (rc) {
		for (size_t i = 0; i < n; i++)
			kanal_msg_destroy(&msgs[i]);
		free(msgs);
		return rc;
	}
	*out = msgs;
	*n_out = n;
	return 0;
}
