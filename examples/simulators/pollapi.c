/*
 * examples/simulators/pollapi.c — a generic paged REST API for the httppoll connector
 * (plugins/httppoll): a list of items, each with an increasing sequence number, served
 * oldest first by GET /api/items?since=<seq>&limit=<n> as
 *
 *     {"items": [{"id": "item-1", "seq": 1, "kind": "note", "text": "…"}, …],
 *      "next": "<seq of the last item>", "has_more": true|false}
 *
 * `next` is null when the page is empty (the client keeps its cursor). POST /api/items
 * appends one item (a JSON object; its id and seq are given when it has none) — the tests
 * add items while kanal polls. Settings: --set token=T (bearer token required, default
 * none), --set items=N (N items at start, default 0). The faults of sim.h apply.
 */
#include "sim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

typedef struct pollapi {
	json_t *items; /* array, oldest first */
	int64_t seq;   /* the last sequence number given */
} pollapi_t;

static void s_append(pollapi_t *p, json_t *item)
{
	char id[64];

	p->seq++;
	if (!json_object_get(item, "id")) {
		snprintf(id, sizeof id, "item-%" PRId64, p->seq);
		json_object_set_new(item, "id", json_string(id));
	}
	json_object_set_new(item, "seq", json_integer(p->seq));
	json_array_append_new(p->items, item);
}

static int s_setup(sim_t *sim)
{
	pollapi_t *p = calloc(1, sizeof *p);
	int64_t n = sim_setting_int(sim, "items", 0);

	if (!p)
		return -1;
	p->items = json_array();
	for (int64_t i = 0; i < n; i++)
		s_append(p, json_pack("{s:s, s:s}", "kind", "note", "text", "seeded"));
	sim_set_state(sim, p);
	return 0;
}

static void s_list(pollapi_t *p, const sim_request_t *req, sim_response_t *res)
{
	const char *since = sim_query(req, "since"), *limit = sim_query(req, "limit");
	int64_t after = since ? strtoll(since, NULL, 10) : 0, max = limit ? atoll(limit) : 50;
	json_t *page = json_array(), *item, *out;
	char *text;
	int64_t last = -1;
	size_t i;
	bool more = false;

	if (max < 1 || max > 1000)
		max = 50;
	json_array_foreach(p->items, i, item)
	{
		int64_t seq = json_integer_value(json_object_get(item, "seq"));
		if (seq <= after)
			continue;
		if ((int64_t)json_array_size(page) == max) {
			more = true;
			break;
		}
		json_array_append(page, item);
		last = seq;
	}
	out = json_pack("{s:o, s:b}", "items", page, "has_more", more);
	if (last >= 0) {
		char next[32];
		snprintf(next, sizeof next, "%" PRId64, last);
		json_object_set_new(out, "next", json_string(next));
	} else {
		json_object_set_new(out, "next", json_null());
	}
	text = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	sim_reply_take(res, text ? 200 : 500, "application/json", text, text ? strlen(text) : 0);
}

static void s_handle(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	pollapi_t *p = sim_state(sim);
	const char *token = sim_setting(sim, "token", NULL);

	if (strcmp(req->path, "/api/items") != 0) {
		sim_reply(res, 404, "application/json", "{\"error\":\"no such path\"}", -1);
		return;
	}
	if (token && (!req->bearer || strcmp(req->bearer, token) != 0)) {
		sim_reply(res, 401, "application/json", "{\"error\":\"bad token\"}", -1);
		return;
	}
	if (!strcmp(req->method, "GET")) {
		s_list(p, req, res);
	} else if (!strcmp(req->method, "POST")) {
		json_t *item = json_loadb(req->body, req->body_len, 0, NULL);
		if (!json_is_object(item)) {
			json_decref(item);
			sim_reply(res, 400, "application/json", "{\"error\":\"not an object\"}",
				  -1);
			return;
		}
		s_append(p, item);
		sim_replyf(res, 201, "application/json", "{\"seq\":%" PRId64 "}", p->seq);
	} else {
		sim_reply(res, 405, "application/json", "{\"error\":\"method\"}", -1);
	}
}

int main(int argc, char **argv)
{
	return sim_main(argc, argv,
			&(sim_def_t){ .name = "pollapi",
				      .handle = s_handle,
				      .setup = s_setup,
				      .garbage_type = "application/json",
				      .garbage_body = "{\"items\": [{\"id\": \"x\"," });
}
