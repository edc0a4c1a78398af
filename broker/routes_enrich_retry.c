/*
 * broker/routes_enrich_retry.c — a route's `enrich:` steps and its `retry:` policy in
 * routing files (docs/routes.md), checked and read into route_t for the builder of
 * routes.c; also routes_format_ms, which writes a duration as those files do.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"
#include "routes_int.h"
#include "../sdk/host.h"

static const char *const s_enrich_keys[] = { "service",  "into",    "timeout",
					     "on_error", "purpose", "protected_address" };
static const char *const s_retry_keys[] = { "max_attempts", "backoff", "max_backoff" };

/* `into` is where the reply goes in the event's data: "data" or "data.a.b", each step made
 * of the characters a `where` data path allows (letters, digits, '_', '-'). */
static bool s_into_valid(const char *into)
{
	const char *p;

	if (!strcmp(into, "data"))
		return true;
	if (strncmp(into, "data.", 5) != 0)
		return false;
	for (p = into + 5;; p++) {
		size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				       "0123456789_-");
		if (len == 0)
			return false;
		p += len;
		if (!*p)
			return true;
		if (*p != '.')
			return false;
	}
}

static void s_enrich_step(builder_t *b, route_enrich_t *e, const ynode_t *v, size_t at)
{
	const ynode_t *x;
	const char *text;

	if (v->kind != YNODE_MAPPING) {
		routes__err(b, v,
			    "enrich step #%zu must be a mapping with 'service' and 'into', not %s",
			    at + 1, yaml_tree_describe(v));
		return;
	}
	routes__check_keys(b, v, s_enrich_keys, N_OF(s_enrich_keys), "enrich");
	if (!(x = yaml_tree_get(v, "service"))) {
		routes__err(b, v, "enrich step #%zu has no 'service'", at + 1);
	} else if ((text = routes__text(b, x, "service"))) {
		if (!strcmp(text, ROUTES_DEADLETTER))
			routes__err(b, x,
				    "'deadletter' is the built-in dead-letter store, not a "
				    "service");
		else if (!routes__is_instance(b, text))
			routes__unknown_instance(b, x, text, "service", false);
		else
			e->service = routes__strdup(b, text);
	}
	if (!(x = yaml_tree_get(v, "into"))) {
		routes__err(b, v,
			    "enrich step #%zu has no 'into' (where the reply goes, e.g. "
			    "data.guardian)",
			    at + 1);
	} else if ((text = routes__text(b, x, "into"))) {
		if (!s_into_valid(text))
			routes__err(b, x,
				    "'into' must be 'data' or a data path such as "
				    "data.guardian (letters, digits, '_', '-'), not '%s'",
				    text);
		else
			e->into = routes__strdup(b, text);
	}
	if ((x = yaml_tree_get(v, "timeout")) && (text = routes__text(b, x, "timeout"))) {
		if (kanal__parse_duration_ms(text, &e->timeout_ms) != 0 || e->timeout_ms <= 0) {
			routes__err(b, x,
				    "'timeout': '%s' is not a duration above 0 (write e.g. 500ms "
				    "or 2s)",
				    text);
			e->timeout_ms = 0;
		}
	}
	if ((x = yaml_tree_get(v, "on_error")) && (text = routes__text(b, x, "on_error"))) {
		if (!strcmp(text, "fail"))
			e->on_error = ENRICH_FAIL;
		else if (!strcmp(text, "skip"))
			e->on_error = ENRICH_SKIP;
		else
			routes__err(b, x, "'on_error': '%s' is not fail or skip", text);
	}
	if ((x = yaml_tree_get(v, "purpose")) && (text = routes__text(b, x, "purpose")))
		e->purpose = routes__strdup(b, text);
	if ((x = yaml_tree_get(v, "protected_address")) &&
	    (text = routes__text(b, x, "protected_address"))) {
		if (kanal__parse_bool(text, &e->protected_address) != 0)
			routes__err(b, x, "'protected_address': '%s' is not true or false", text);
	}
}

void routes__enrich(builder_t *b, route_t *r, const ynode_t *v)
{
	size_t i;

	if (yaml_tree_is_null(v))
		return;
	if (v->kind != YNODE_SEQUENCE) {
		routes__err(b, v, "'enrich' must be a list of steps, not %s",
			    yaml_tree_describe(v));
		return;
	}
	if (!v->n_items)
		return;
	r->enrich = calloc(v->n_items, sizeof *r->enrich);
	if (!r->enrich) {
		b->oom = true;
		return;
	}
	r->n_enrich = v->n_items;
	for (i = 0; i < v->n_items; i++)
		s_enrich_step(b, &r->enrich[i], v->items[i], i);
}

/* Reads a duration of the retry policy (above 0) into *out; returns whether it did. */
static bool s_retry_duration(builder_t *b, const ynode_t *v, const char *key, int64_t *out)
{
	const char *text = routes__text(b, v, key);
	int64_t ms;

	if (!text)
		return false;
	if (kanal__parse_duration_ms(text, &ms) != 0 || ms <= 0) {
		routes__err(b, v, "'%s': '%s' is not a duration above 0 (write e.g. 1s, 30s or 5m)",
			    key, text);
		return false;
	}
	*out = ms;
	return true;
}

void routes_format_ms(int64_t ms, char *buf, size_t size)
{
	static const struct {
		int64_t ms;
		const char *unit;
	} units[] = { { 86400000, "d" }, { 3600000, "h" }, { 60000, "m" }, { 1000, "s" } };
	size_t i;

	for (i = 0; i < N_OF(units); i++) {
		if (ms >= units[i].ms && ms % units[i].ms == 0) {
			snprintf(buf, size, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
			return;
		}
	}
	snprintf(buf, size, "%lldms", (long long)ms);
}

void routes__retry(builder_t *b, route_t *r, const ynode_t *v)
{
	const ynode_t *x, *max_node;
	const char *text;
	bool have_max = false;

	if (yaml_tree_is_null(v) || !routes__is_mapping(b, v, "retry"))
		return;
	routes__check_keys(b, v, s_retry_keys, N_OF(s_retry_keys), "retry");
	if ((x = yaml_tree_get(v, "max_attempts")) && (text = routes__text(b, x, "max_attempts"))) {
		char *end;
		long n;
		errno = 0;
		n = strtol(text, &end, 10);
		if (errno || end == text || *end || n < 1 || n > INT_MAX)
			routes__err(b, x,
				    "'max_attempts': '%s' is not a whole number of at least 1",
				    text);
		else
			r->retry.max_attempts = (int)n;
	}
	if ((x = yaml_tree_get(v, "backoff")))
		s_retry_duration(b, x, "backoff", &r->retry.backoff_ms);
	if ((max_node = yaml_tree_get(v, "max_backoff")))
		have_max = s_retry_duration(b, max_node, "max_backoff", &r->retry.max_backoff_ms);
	if (have_max && r->retry.max_backoff_ms < r->retry.backoff_ms) {
		char max_text[32], backoff_text[32];
		routes_format_ms(r->retry.max_backoff_ms, max_text, sizeof max_text);
		routes_format_ms(r->retry.backoff_ms, backoff_text, sizeof backoff_text);
		routes__err(b, max_node, "'max_backoff' (%s) is shorter than 'backoff' (%s)",
			    max_text, backoff_text);
	} else if (!max_node && r->retry.max_backoff_ms < r->retry.backoff_ms) {
		/* A long backoff without a ceiling: the ceiling follows it up. */
		r->retry.max_backoff_ms = r->retry.backoff_ms;
	}
}
