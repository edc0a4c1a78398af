/*
 * broker/explain.c — `kanalctl explain`: which routes of a table an event matches and why
 * the others do not (type pattern, source glob, where), with each matching route's plan
 * (enrich steps, destinations, each destination's transformed output, fallback, retry). Reads a compiled table through routes.h
 * only, the way the router does (see routes.h and docs/routes.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"

/* Prints text with CPR numbers masked: explain output goes to terminals and tickets. */
static void s_put(FILE *out, const char *text)
{
	char *masked;

	if (!text)
		text = "";
	masked = strdup(text);
	if (!masked) {
		fputs("(out of memory)", out);
		return;
	}
	kanal_cpr_redact_inplace(masked);
	fputs(masked, out);
	free(masked);
}

static void s_put_list(FILE *out, char *const *names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (i)
			fputs(", ", out);
		s_put(out, names[i]);
	}
}

/* Prints what a destination's transform makes of msg: the type and subject it delivers
 * (when the transform changed them) and the data, or why the delivery would be rejected. */
static void s_explain_transform(const route_t *r, bool fallback, size_t i, const kanal_msg_t *msg,
				FILE *out)
{
	transform_t *t = routes_transform(r, fallback, i);
	kanal_msg_t *res = NULL;
	kanal_error_t err;
	char *data;

	if (!t)
		return;
	fputs("            transform ", out);
	s_put(out, fallback ? r->fallback[i] : r->to[i]);
	fputs(": ", out);
	kanal_error_clear(&err);
	if (transform_apply(t, msg, &res, &err) != 0) {
		fputs("REJECT (", out);
		s_put(out, err.text[0] ? err.text : "out of memory");
		fputs(")\n", out);
		return;
	}
	if (strcmp(kanal_msg_type(res), kanal_msg_type(msg))) {
		fputs("type '", out);
		s_put(out, kanal_msg_type(res));
		fputs("', ", out);
	}
	if (kanal_msg_subject(res) &&
	    (!kanal_msg_subject(msg) || strcmp(kanal_msg_subject(res), kanal_msg_subject(msg)))) {
		fputs("subject '", out);
		s_put(out, kanal_msg_subject(res));
		fputs("', ", out);
	}
	data = kanal_msg_data_json(res, NULL);
	fputs("data ", out);
	s_put(out, data ? data : "null");
	fputc('\n', out);
	kanal_free(data);
	kanal_msg_destroy(&res);
}

static void s_explain_plan(const route_t *r, const kanal_msg_t *msg, FILE *out)
{
	char a[32], b[32];
	size_t i;

	if (r->area) {
		/* The area's channel strategy: the primary is `to`, the secondary `fallback`. */
		fputs("            area      ", out);
		s_put(out, r->area);
		fputs(": primary channel ", out);
		s_put_list(out, r->to, r->n_to);
		if (r->n_fallback) {
			fputs(", secondary ", out);
			s_put_list(out, r->fallback, r->n_fallback);
		}
		fputs(" (deliveries carry kanalarea and kanalchannelrank)\n", out);
	}
	fputs("            to        ", out);
	s_put_list(out, r->to, r->n_to);
	fputc('\n', out);
	for (i = 0; i < r->n_to; i++)
		s_explain_transform(r, false, i, msg, out);
	for (i = 0; i < r->n_fallback; i++)
		s_explain_transform(r, true, i, msg, out);
	for (i = 0; i < r->n_enrich; i++) {
		const route_enrich_t *e = &r->enrich[i];
		fputs("            enrich    ", out);
		s_put(out, e->service);
		fputs(" into ", out);
		s_put(out, e->into);
		fputs(" (", out);
		if (e->timeout_ms) {
			routes_format_ms(e->timeout_ms, a, sizeof a);
			fprintf(out, "timeout %s", a);
		} else {
			fputs("the configured enrich_timeout", out);
		}
		fprintf(out, "; on error: %s)\n",
			e->on_error == ENRICH_SKIP ? "skip the step" : "fail the route");
		if (e->purpose || e->protected_address) {
			fputs("                      ", out);
			if (e->purpose) {
				fputs("purpose ", out);
				s_put(out, e->purpose);
			}
			if (e->protected_address)
				fprintf(out, "%sasks for protected addresses",
					e->purpose ? "; " : "");
			fputc('\n', out);
		}
	}
	if (r->n_fallback) {
		fputs("            fallback  ", out);
		s_put_list(out, r->fallback, r->n_fallback);
		fputs(" (when every destination in 'to' rejects)\n", out);
	}
	routes_format_ms(r->retry.backoff_ms, a, sizeof a);
	routes_format_ms(r->retry.max_backoff_ms, b, sizeof b);
	fprintf(out, "            retry     up to %d attempts, backoff %s growing to at most %s\n",
		r->retry.max_attempts, a, b);
}

/* Explains one route; returns whether it matches. */
static bool s_explain_route(const route_t *r, const kanal_msg_t *msg, FILE *out)
{
	const char *type = kanal_msg_type(msg), *source = kanal_msg_source(msg);
	bool type_ok = !r->type_pattern || routes_type_matches(r->type_pattern, type);
	bool source_ok =
		type_ok && (!r->source_glob || routes_glob_matches(r->source_glob, source));
	char why[512] = "";
	bool where_ok = source_ok && (!r->where || expr_explain(r->where, msg, why, sizeof why));
	bool match = type_ok && source_ok && where_ok;

	fprintf(out, "%-10s", match ? "match" : "no match");
	s_put(out, r->name);
	fprintf(out, "  (%s:%d)\n", r->file, r->line);
	if (!r->type_pattern && !r->source_glob && !r->where)
		fputs("            (no 'match': every event)\n", out);
	if (r->type_pattern) {
		fputs("            type      ", out);
		s_put(out, r->type_pattern);
		fputs(type_ok ? " matches '" : " does not match '", out);
		s_put(out, type);
		fputs("'\n", out);
	}
	if (type_ok && r->source_glob) {
		fputs("            source    ", out);
		s_put(out, r->source_glob);
		fputs(source_ok ? " matches '" : " does not match '", out);
		s_put(out, source);
		fputs("'\n", out);
	}
	if (source_ok && r->where) {
		fputs("            where     ", out);
		s_put(out, r->where_text);
		if (where_ok) {
			fputs("  (true)\n", out);
		} else {
			fputs("  (false)\n                      ", out);
			s_put(out, why[0] ? why : "not satisfied");
			fputc('\n', out);
		}
	}
	if (match)
		s_explain_plan(r, msg, out);
	return match;
}

size_t routes_explain(const routes_t *rt, const kanal_msg_t *msg, FILE *out)
{
	size_t i, j, k, matched = 0;
	const route_t **hits = NULL;

	if (!rt || !msg || !out)
		return 0;
	fputs("event     type '", out);
	s_put(out, kanal_msg_type(msg));
	fputs("', source '", out);
	s_put(out, kanal_msg_source(msg));
	fputs("', id '", out);
	s_put(out, kanal_msg_id(msg));
	fprintf(out, "'\ntable     %zu route%s from %zu file%s, default destination '%s'\n\n",
		routes_count(rt), routes_count(rt) == 1 ? "" : "s", routes_file_count(rt),
		routes_file_count(rt) == 1 ? "" : "s", routes_default(rt));
	hits = calloc(routes_count(rt) ? routes_count(rt) : 1, sizeof *hits);
	for (i = 0; i < routes_count(rt); i++) {
		if (s_explain_route(routes_get(rt, i), msg, out)) {
			if (hits)
				hits[matched] = routes_get(rt, i);
			matched++;
		}
	}
	fputc('\n', out);
	if (!matched) {
		fprintf(out, "no route matches: the event goes to the default destination '%s'\n",
			routes_default(rt));
		free(hits);
		return 0;
	}
	fprintf(out, "%zu route%s match%s: the event goes to ", matched, matched == 1 ? "" : "s",
		matched == 1 ? "es" : "");
	/* Each destination once, in the order the routes name them. */
	for (i = 0, k = 0; hits && i < matched; i++) {
		for (j = 0; j < hits[i]->n_to; j++) {
			size_t pi, pj;
			bool seen = false;
			for (pi = 0; pi <= i && !seen; pi++)
				for (pj = 0; pj < (pi == i ? j : hits[pi]->n_to) && !seen; pj++)
					seen = !strcmp(hits[pi]->to[pj], hits[i]->to[j]);
			if (!seen) {
				fputs(k++ ? ", " : "", out);
				s_put(out, hits[i]->to[j]);
			}
		}
	}
	fputc('\n', out);
	free(hits);
	return matched;
}
