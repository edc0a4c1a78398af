/*
 * broker/stats.c — counters for operations (status, /metrics, the dashboard), on the
 * router's thread: per route name (they outlive reloads), the delivery latency histogram,
 * and the measures the routing files declare (accepted events counted per label value, in
 * total and per minute for the last hour). stats_status writes them into the status JSON.
 * With the journal, each count is also added to the journal's per-day rows in the turn's
 * transaction, and a measure's totals start from those rows (docs/design/measures.md).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "router_int.h"

/* The delivery latency histogram's bounds in ms (Prometheus "le" in seconds). */
static const double router_latency_le_ms[N_LATENCY] = { 0.5,  1,    2.5,  5,     10,
							25,   50,   100,  250,   500,
							1000, 2500, 5000, 10000, 30000 };

/* ---- counters for operations (status, /metrics, the dashboard) ----------------------- */

static size_t s_hash(const char *s)
{
	size_t h = 5381;
	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

/* The counters of the route called name, made on first use; NULL when out of memory. */
static route_stat_t *s_stat_for(router_t *r, const char *name)
{
	route_stat_t *st;
	size_t i;

	if (r->n_stats * 2 >= r->stat_cap) {
		size_t cap = r->stat_cap ? r->stat_cap * 2 : 64;
		route_stat_t **slots = calloc(cap, sizeof *slots);
		if (!slots)
			return NULL;
		for (size_t k = 0; k < r->stat_cap; k++) {
			for (route_stat_t *e = r->stat_slots[k], *next; e; e = next) {
				next = e->next;
				e->next = slots[s_hash(e->name) & (cap - 1)];
				slots[s_hash(e->name) & (cap - 1)] = e;
			}
		}
		free(r->stat_slots);
		r->stat_slots = slots;
		r->stat_cap = cap;
	}
	i = s_hash(name) & (r->stat_cap - 1);
	for (st = r->stat_slots[i]; st; st = st->next)
		if (!strcmp(st->name, name))
			return st;
	st = calloc(1, sizeof *st);
	if (!st || !(st->name = strdup(name))) {
		free(st);
		return NULL;
	}
	st->next = r->stat_slots[i];
	r->stat_slots[i] = st;
	r->n_stats++;
	return st;
}

/* Points every route of a table at its name's counters. */
static measure_stat_t *s_measure_stat_for(router_t *r, const route_measure_t *m);
static void s_free_measures(router_t *r);

void stats_bind(router_t *r, routes_t *routes)
{
	for (size_t i = 0; routes && i < routes_count(routes); i++) {
		route_t *rt = (route_t *)routes_get(routes, i);
		route_stat_t *st = s_stat_for(r, rt->name);

		rt->stat = st;
		if (!st)
			continue;
		st->to_for = NULL;
		if (rt->n_to > st->to_cap) {
			dest_t **grown = realloc(st->to_dest, rt->n_to * sizeof *grown);
			if (!grown)
				continue; /* looked up by name, as before */
			st->to_dest = grown;
			st->to_cap = rt->n_to;
		}
		for (size_t k = 0; k < rt->n_to; k++)
			st->to_dest[k] = router_dest(r, rt->to[k]);
		st->to_for = rt;
	}
	for (size_t i = 0; i < routes_measure_count(routes); i++) {
		route_measure_t *m = (route_measure_t *)routes_measure_get(routes, i);
		m->stat = s_measure_stat_for(r, m);
	}
	r->has_measures = routes_measure_count(routes) > 0;
}

void stats_free(router_t *r)
{
	for (size_t k = 0; k < r->stat_cap; k++) {
		for (route_stat_t *e = r->stat_slots[k], *next; e; e = next) {
			next = e->next;
			while (e->latency) {
				route_latency_t *l = e->latency;
				e->latency = l->next;
				free(l->dest);
				free(l);
			}
			free(e->name);
			free(e->to_dest);
			free(e);
		}
	}
	free(r->stat_slots);
	r->stat_slots = NULL;
	r->stat_cap = r->n_stats = 0;
	s_free_measures(r);
}

/* The latency histogram of route rs for destination dest, made on first use (appended, so
 * the order is stable); NULL when out of memory, and that observation is not counted. */
static route_latency_t *s_route_latency_for(route_stat_t *rs, const char *dest)
{
	route_latency_t **p = &rs->latency;

	for (; *p; p = &(*p)->next)
		if (!strcmp((*p)->dest, dest))
			return *p;
	*p = calloc(1, sizeof **p);
	if (*p && !((*p)->dest = strdup(dest))) {
		free(*p);
		*p = NULL;
	}
	return *p;
}

void stats_observe_latency(router_t *r, const shared_t *ev, route_stat_t *rs, const char *dest,
			   int64_t now_ms)
{
	double ms = (double)(now_ms - ev->born_ms);
	route_latency_t *l = rs && dest ? s_route_latency_for(rs, dest) : NULL;
	size_t i = 0;

	while (i < N_LATENCY && ms > router_latency_le_ms[i])
		i++;
	if (i < N_LATENCY)
		r->latency[i]++;
	r->latency_count++;
	r->latency_sum_ms += ms;
	if (l) {
		if (i < N_LATENCY)
			l->buckets[i]++;
		l->count++;
		l->sum_ms += ms;
	}
}

/* A histogram as status shows it: {"buckets": [[le seconds, cumulative count]…], "sum":
 * seconds, "count": n}; buckets[i] counts those at most le[i] (not cumulative). */
static json_t *s_histogram_json(const uint64_t *buckets, double sum_ms, uint64_t count)
{
	json_t *lat = json_array();
	uint64_t cum = 0;

	for (size_t i = 0; i < N_LATENCY; i++) {
		cum += buckets[i];
		json_array_append_new(lat, json_pack("[f, I]", router_latency_le_ms[i] / 1000.0,
						     (json_int_t)cum));
	}
	return json_pack("{s:o, s:f, s:I}", "buckets", lat, "sum", sum_ms / 1000.0, "count",
			 (json_int_t)count);
}

/* ---- measures ------------------------------------------------------------------------ */

static measure_series_t *s_series_for(measure_stat_t *ms, const char *const *v, size_t n,
				      const route_measure_t *m);

static void s_series_free(measure_series_t *s)
{
	for (size_t i = 0; i < ROUTES_MEASURE_MAX_LABELS; i++)
		free(s->values[i]);
	free(s->labels);
	free(s);
}

/* Adds the journal's counts of measure m to its counters (those of every day). */
static void s_measure_load(router_t *r, measure_stat_t *ms, const route_measure_t *m)
{
	json_t *rows, *row;
	size_t k;

	if (!r->journal)
		return;
	rows = journal_measure_sum(r->journal, m->name, NULL, NULL);
	json_array_foreach(rows, k, row)
	{
		json_t *labels = json_object_get(row, "labels");
		const char *v[ROUTES_MEASURE_MAX_LABELS];
		measure_series_t *s;
		size_t i = 0;

		/* Rows written under other label names belong to another definition. */
		if (json_object_size(labels) != m->n_labels)
			continue;
		while (i < m->n_labels &&
		       (v[i] = json_string_value(json_object_get(labels, m->label_names[i]))))
			i++;
		if (i == m->n_labels && (s = s_series_for(ms, v, m->n_labels, m)))
			s->total += (uint64_t)json_integer_value(json_object_get(row, "count"));
	}
	json_decref(rows);
}

void stats_load_measures(router_t *r)
{
	for (size_t k = 0; k < routes_measure_count(r->table->routes); k++) {
		const route_measure_t *m = routes_measure_get(r->table->routes, k);
		if (m->stat && !m->stat->series)
			s_measure_load(r, m->stat, m);
	}
}

/* The counters of measure m (by name and label names), made on first use (from the
 * journal's counts); NULL when out of memory. */
static measure_stat_t *s_measure_stat_for(router_t *r, const route_measure_t *m)
{
	char key[1024];
	size_t used = (size_t)snprintf(key, sizeof key, "%s", m->name);
	measure_stat_t *ms;

	for (size_t i = 0; i < m->n_labels && used < sizeof key; i++)
		used += (size_t)snprintf(key + used, sizeof key - used, "\n%s", m->label_names[i]);
	for (ms = r->measure_stats; ms; ms = ms->next)
		if (!strcmp(ms->key, key))
			return ms;
	ms = calloc(1, sizeof *ms);
	if (!ms || !(ms->key = strdup(key))) {
		free(ms);
		return NULL;
	}
	ms->next = r->measure_stats;
	r->measure_stats = ms;
	s_measure_load(r, ms, m);
	return ms;
}

/* The series whose label values are v[0..n), or NULL. */
static measure_series_t *s_find_series(measure_stat_t *ms, const char *const *v, size_t n)
{
	for (measure_series_t *s = ms->series; s; s = s->next) {
		size_t i = 0;
		while (i < n && !strcmp(s->values[i], v[i]))
			i++;
		if (i == n)
			return s;
	}
	return NULL;
}

/* The series for the label values v[0..n) of measure m, made on first use; NULL when out
 * of memory. Label values are event data: they are kept with CPR numbers masked, and past
 * MEASURE_MAX_SERIES combinations a new one is counted as all "other". */
static measure_series_t *s_series_for(measure_stat_t *ms, const char *const *v, size_t n,
				      const route_measure_t *m)
{
	json_t *labels;
	static const char *const other[ROUTES_MEASURE_MAX_LABELS] = { "other", "other", "other",
								      "other" };
	char masked[ROUTES_MEASURE_MAX_LABELS][128];
	const char *mv[ROUTES_MEASURE_MAX_LABELS];
	measure_series_t *s = s_find_series(ms, v, n);

	if (s)
		return s;
	for (size_t i = 0; i < n; i++) {
		snprintf(masked[i], sizeof masked[i], "%s", v[i]);
		kanal_cpr_redact_inplace(masked[i]);
		mv[i] = masked[i];
	}
	if ((s = s_find_series(ms, mv, n)))
		return s;
	if (ms->n_series >= MEASURE_MAX_SERIES) {
		if ((s = s_find_series(ms, other, n)))
			return s;
		for (size_t i = 0; i < n; i++)
			mv[i] = other[i];
	}
	if (!(s = calloc(1, sizeof *s)))
		return NULL;
	labels = json_object();
	for (size_t i = 0; i < n; i++) {
		s->values[i] = strdup(mv[i]);
		json_object_set_new(labels, m->label_names[i], json_string(mv[i]));
	}
	/* Keys in the measure's label order (jansson keeps insertion order). */
	s->labels = json_dumps(labels, JSON_COMPACT);
	json_decref(labels);
	for (size_t i = 0; i < n; i++)
		if (!s->values[i] || !s->labels) {
			s_series_free(s);
			return NULL;
		}
	s->next = ms->series;
	ms->series = s;
	ms->n_series++;
	return s;
}

/* kanald's local calendar day of the unix minute, as the journal keys counts. */
static const char *s_day(router_t *r, int64_t minute)
{
	if (r->measure_day_minute != minute || !r->measure_day[0]) {
		time_t t = (time_t)(minute * 60);
		struct tm tm;
		localtime_r(&t, &tm);
		strftime(r->measure_day, sizeof r->measure_day, "%Y-%m-%d", &tm);
		r->measure_day_minute = minute;
	}
	return r->measure_day;
}

void stats_count_measures(router_t *r, const kanal_msg_t *msg)
{
	int64_t minute = -1;

	for (size_t k = 0; k < routes_measure_count(r->table->routes); k++) {
		const route_measure_t *m = routes_measure_get(r->table->routes, k);
		const char *v[ROUTES_MEASURE_MAX_LABELS];
		measure_series_t *s;
		size_t slot;

		if (!m->stat || !routes_measure_matches(m, msg))
			continue;
		for (size_t i = 0; i < m->n_labels; i++)
			v[i] = routes_measure_label(m, i, msg);
		if (!(s = s_series_for(m->stat, v, m->n_labels, m)))
			continue;
		if (minute < 0)
			minute = kanal__wall_ms() / 60000;
		/* In the turn's transaction, with the event: a failed commit refuses both. */
		if (r->journal)
			journal_measure_add(r->journal, m->name, s->labels, s_day(r, minute), 1);
		slot = (size_t)(minute % MEASURE_MINUTES);
		if (s->ring[slot].minute != minute) {
			s->ring[slot].minute = minute;
			s->ring[slot].count = 0;
		}
		s->ring[slot].count++;
		s->total++;
	}
}

/* A measure's target as the status and the report show it, or NULL when it has none. */
static json_t *s_target_json(const route_measure_t *m)
{
	json_t *digital;

	if (!m->target_label)
		return NULL;
	digital = json_array();
	for (size_t i = 0; i < m->n_target_values; i++)
		json_array_append_new(digital, json_string(m->target_values[i]));
	return json_pack("{s:s, s:o, s:f}", "label", m->target_label, "digital", digital, "share",
			 m->target_share);
}

/* The measures of the current table, for the status: each with its label names and one
 * entry per label-value combination (total, and per minute for the last hour, oldest
 * first, aligned with the measure's "minutes"). */
static json_t *s_measures_json(router_t *r)
{
	json_t *arr = json_array(), *minutes = json_array();
	int64_t now_min = kanal__wall_ms() / 60000;

	for (int64_t m = now_min - MEASURE_MINUTES + 1; m <= now_min; m++) {
		time_t t = (time_t)(m * 60);
		struct tm tm;
		char hhmm[8];
		localtime_r(&t, &tm);
		strftime(hhmm, sizeof hhmm, "%H:%M", &tm);
		json_array_append_new(minutes, json_string(hhmm));
	}
	for (size_t k = 0; k < routes_measure_count(r->table->routes); k++) {
		const route_measure_t *m = routes_measure_get(r->table->routes, k);
		json_t *labels = json_array(), *series = json_array();

		for (size_t i = 0; i < m->n_labels; i++)
			json_array_append_new(labels, json_string(m->label_names[i]));
		for (const measure_series_t *s = m->stat ? m->stat->series : NULL; s; s = s->next) {
			json_t *values = json_object(), *per_minute = json_array();
			for (size_t i = 0; i < m->n_labels; i++)
				json_object_set_new(values, m->label_names[i],
						    json_string(s->values[i]));
			for (int64_t mi = now_min - MEASURE_MINUTES + 1; mi <= now_min; mi++) {
				size_t slot = (size_t)(mi % MEASURE_MINUTES);
				json_array_append_new(per_minute,
						      json_integer(s->ring[slot].minute == mi
									   ? s->ring[slot].count
									   : 0));
			}
			/* Oldest series first: the order they were first seen in. */
			json_array_insert_new(series, 0,
					      json_pack("{s:o, s:I, s:o}", "labels", values,
							"total", (json_int_t)s->total, "per_minute",
							per_minute));
		}
		json_array_append_new(arr,
				      json_pack("{s:s, s:s?, s:s?, s:o, s:o, s:O, s:o*}", "name",
						m->name, "title", m->title, "type", m->type_pattern,
						"labels", labels, "series", series, "minutes",
						minutes, "target", s_target_json(m)));
	}
	json_decref(minutes);
	return arr;
}

/* True for a day as the journal keys them: "2026-01-31". */
static bool s_is_day(const char *text)
{
	static const char shape[] = "dddd-dd-dd";

	if (!text || strlen(text) != sizeof shape - 1)
		return false;
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? !(text[i] >= '0' && text[i] <= '9') : text[i] != shape[i])
			return false;
	return true;
}

json_t *stats_measures_report(router_t *r, json_t *req)
{
	const char *from = json_string_value(json_object_get(req, "from"));
	const char *to = json_string_value(json_object_get(req, "to"));
	json_t *measures;

	if (!r->journal)
		return json_pack(
			"{s:b, s:s}", "ok", 0, "error",
			"the journal is off (memory mode): measures are counted since kanald "
			"started and kept by day only in the journal, so there is no report "
			"(the status and /metrics show the counts since the start)");
	if ((from && !s_is_day(from)) || (to && !s_is_day(to)))
		return json_pack("{s:b, s:s}", "ok", 0, "error",
				 "'from' and 'to' must be days: YYYY-MM-DD");
	measures = json_array();
	for (size_t k = 0; k < routes_measure_count(r->table->routes); k++) {
		const route_measure_t *m = routes_measure_get(r->table->routes, k);
		json_t *labels = json_array(), *item;

		for (size_t i = 0; i < m->n_labels; i++)
			json_array_append_new(labels, json_string(m->label_names[i]));
		item = json_pack("{s:s, s:s?, s:o, s:o}", "name", m->name, "title", m->title,
				 "labels", labels, "counts",
				 journal_measure_sum(r->journal, m->name, from, to));
		if (m->target_label)
			json_object_set_new(item, "target", s_target_json(m));
		json_array_append_new(measures, item);
	}
	return json_pack("{s:b, s:s?, s:s?, s:o}", "ok", 1, "from", from, "to", to, "measures",
			 measures);
}

static void s_free_measures(router_t *r)
{
	while (r->measure_stats) {
		measure_stat_t *ms = r->measure_stats;
		r->measure_stats = ms->next;
		while (ms->series) {
			measure_series_t *s = ms->series;
			ms->series = s->next;
			s_series_free(s);
		}
		free(ms->key);
		free(ms);
	}
}

/* Adds what operations tools read besides the basics: per-route counters, the delivery
 * latency histogram and the measures (docs/operations.md). */
void stats_status(router_t *r, json_t *st)
{
	json_t *routes = json_array();

	for (size_t i = 0; i < routes_count(r->table->routes); i++) {
		const route_t *rt = routes_get(r->table->routes, i);
		const route_stat_t *c = rt->stat;
		json_t *by_dest = json_object();

		if (!c)
			continue;
		for (const route_latency_t *l = c->latency; l; l = l->next)
			json_object_set_new(by_dest, l->dest,
					    s_histogram_json(l->buckets, l->sum_ms, l->count));
		json_array_append_new(
			routes,
			json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "name", rt->name,
				  "matched", (json_int_t)c->matched, "delivered",
				  (json_int_t)c->delivered, "retried", (json_int_t)c->retried,
				  "rejected", (json_int_t)c->rejected, "dead", (json_int_t)c->dead,
				  "fallback", (json_int_t)c->fallback, "transform_failed",
				  (json_int_t)c->transform_failed, "latency", by_dest));
	}
	json_object_set_new(st, "started", json_true());
	json_object_set_new(st, "route_counters", routes);
	json_object_set_new(st, "latency",
			    s_histogram_json(r->latency, r->latency_sum_ms, r->latency_count));
	json_object_set_new(st, "measures", s_measures_json(r));
	if (r->conf->blobs) { /* the blob store (docs/design/blobs.md) */
		int64_t count, bytes;
		kanal__blob_usage(r->conf->blobs, &count, &bytes);
		json_object_set_new(
			st, "blobs",
			json_pack("{s:I, s:I, s:I}", "count", (json_int_t)count, "bytes",
				  (json_int_t)bytes, "references",
				  (json_int_t)(r->journal ? journal_blob_references(r->journal)
							  : 0)));
	}
}
