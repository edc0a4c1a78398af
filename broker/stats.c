/*
 * broker/stats.c — counters for operations (status, /metrics, the dashboard), on the
 * router's thread: per route name (they outlive reloads), the delivery latency histogram,
 * and the measures the routing files declare (accepted events counted per label value, in
 * total and per minute for the last hour). stats_status writes them into the status JSON.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "router_int.h"

/* The delivery latency histogram's bounds in ms (Prometheus "le" in seconds). */
static const double router_latency_le_ms[N_LATENCY] = { 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250,
							500, 1000, 2500, 5000, 10000, 30000 };

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
void stats_bind(router_t *r, routes_t *routes)
{
	for (size_t i = 0; routes && i < routes_count(routes); i++) {
		route_t *rt = (route_t *)routes_get(routes, i);
		rt->stat = s_stat_for(r, rt->name);
	}
}

void stats_free(router_t *r)
{
	for (size_t k = 0; k < r->stat_cap; k++) {
		for (route_stat_t *e = r->stat_slots[k], *next; e; e = next) {
			next = e->next;
			free(e->name);
			free(e);
		}
	}
	free(r->stat_slots);
	r->stat_slots = NULL;
	r->stat_cap = r->n_stats = 0;
}

void stats_observe_latency(router_t *r, const shared_t *ev, int64_t now_ms)
{
	double ms = (double)(now_ms - ev->born_ms);
	size_t i = 0;

	while (i < N_LATENCY && ms > router_latency_le_ms[i])
		i++;
	if (i < N_LATENCY)
		r->latency[i]++;
	r->latency_count++;
	r->latency_sum_ms += ms;
}

/* The channel strategy's measure, from what passes: letters a channel reports sent
 * (post.letter.status, data.status "sent", by data.channel), and citizens' inquiries
 * (child.absence.*, child.vacation.*, child.pickup.*) by data.channel: app, web or none
 * (a registration in the daycare system's app) is digital; phone, paper … are not. */
void stats_measure(router_t *r, const kanal_msg_t *msg)
{
	const char *type = kanal_msg_type(msg), *channel = NULL, *status = NULL;

	if (!strcmp(type, "post.letter.status")) {
		bool digital;
		int64_t minute = kanal__wall_ms() / 60000;
		size_t slot = (size_t)(minute % CHANNEL_MINUTES);

		if (kanal_msg_data_str(msg, "status", &status) != 0 || strcmp(status, "sent") ||
		    kanal_msg_data_str(msg, "channel", &channel) != 0)
			return;
		digital = !strcmp(channel, "digital") || !strcmp(channel, "nemsms");
		if (!digital && strcmp(channel, "physical"))
			return;
		if (r->channel_ring[slot].minute != minute) {
			r->channel_ring[slot].minute = minute;
			r->channel_ring[slot].digital = r->channel_ring[slot].physical = 0;
		}
		if (digital) {
			r->letters_digital++;
			r->channel_ring[slot].digital++;
		} else {
			r->letters_physical++;
			r->channel_ring[slot].physical++;
		}
	} else if (!strncmp(type, "child.absence.", 14) || !strncmp(type, "child.vacation.", 15) ||
		   !strncmp(type, "child.pickup.", 13)) {
		if (kanal_msg_data_str(msg, "channel", &channel) != 0 || !strcmp(channel, "app") ||
		    !strcmp(channel, "web"))
			r->inquiries_digital++;
		else
			r->inquiries_other++;
	}
}


/* Adds what operations tools read besides the basics: per-route counters, the delivery
 * latency histogram and the channel strategy's measure (docs/operations.md). */
void stats_status(router_t *r, json_t *st)
{
	json_t *routes = json_array(), *buckets = json_array(), *chan = json_array();
	json_t *lat = json_array();
	uint64_t cum = 0;
	int64_t now_min = kanal__wall_ms() / 60000;

	for (size_t i = 0; i < routes_count(r->table->routes); i++) {
		const route_t *rt = routes_get(r->table->routes, i);
		const route_stat_t *c = rt->stat;
		if (!c)
			continue;
		json_array_append_new(routes,
			json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "name", rt->name,
				  "matched", (json_int_t)c->matched, "delivered",
				  (json_int_t)c->delivered, "retried", (json_int_t)c->retried,
				  "rejected", (json_int_t)c->rejected, "dead", (json_int_t)c->dead,
				  "fallback", (json_int_t)c->fallback));
	}
	for (size_t i = 0; i < N_LATENCY; i++) {
		cum += r->latency[i];
		json_array_append_new(lat, json_pack("[f, I]", router_latency_le_ms[i] / 1000.0,
						     (json_int_t)cum));
	}
	/* The last hour, oldest first, minutes without letters included as zeros. */
	for (int64_t m = now_min - CHANNEL_MINUTES + 1; m <= now_min; m++) {
		size_t slot = (size_t)(m % CHANNEL_MINUTES);
		bool live = r->channel_ring[slot].minute == m;
		time_t t = (time_t)(m * 60);
		struct tm tm;
		char hhmm[8];
		localtime_r(&t, &tm);
		strftime(hhmm, sizeof hhmm, "%H:%M", &tm);
		json_array_append_new(chan, json_pack("{s:s, s:i, s:i}", "t", hhmm, "digital",
						     live ? (int)r->channel_ring[slot].digital : 0,
						     "physical",
						     live ? (int)r->channel_ring[slot].physical : 0));
	}
	json_decref(buckets);
	json_object_set_new(st, "started", json_true());
	json_object_set_new(st, "route_counters", routes);
	json_object_set_new(st, "latency",
			    json_pack("{s:o, s:f, s:I}", "buckets", lat, "sum",
				      r->latency_sum_ms / 1000.0, "count",
				      (json_int_t)r->latency_count));
	json_object_set_new(st, "channels",
			    json_pack("{s:{s:I, s:I}, s:{s:I, s:I}, s:o}", "letters", "digital",
				      (json_int_t)r->letters_digital, "physical",
				      (json_int_t)r->letters_physical, "inquiries", "digital",
				      (json_int_t)r->inquiries_digital, "other",
				      (json_int_t)r->inquiries_other, "buckets", chan));
}

