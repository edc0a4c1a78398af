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
 * add items while kanal polls. GET /api/stats says how many pages were served and how many
 * items were served more than once, and how many pages were asked for by a next link
 * ({"pages": N, "repeated": M, "linked": L}): a client that reads each page once has M 0.
 *
 * Settings: --set token=T (bearer token required, default none), --set items=N (N items at
 * start, default 0), and how the client is to find its way:
 *   cursor_in=body|header   the cursor in the body's `next` (default) or only in the header
 *                           X-Next-Cursor (the body then has no `next`);
 *   paging=cursor|link|body-link   `has_more` in the body (default); or, instead, a next
 *                           link to the following page — `Link: <URL>; rel="next"` or the
 *                           body's `links.next` — whose URL asks with `after=` rather than
 *                           `since=`, so only a client that follows it gets there;
 *   link_host=HOST:PORT     the links name this host instead of the one asked (a next link
 *                           to a foreign host, which a client must refuse).
 * The faults of sim.h apply.
 */
#include "sim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

typedef struct pollapi {
	json_t *items;                   /* array, oldest first */
	int64_t seq;                     /* the last sequence number given */
	int64_t served_to;               /* the highest seq served so far */
	int64_t pages, repeated, linked; /* pages served; items served again; pages asked by
					  * a next link (after=) */
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

/* The one API of the process, static as in the other simulators, so that what it holds at
 * exit is still reachable (not a leak). */
static pollapi_t s_api;

static int s_setup(sim_t *sim)
{
	pollapi_t *p = &s_api;
	int64_t n = sim_setting_int(sim, "items", 0);

	p->items = json_array();
	if (!p->items)
		return -1;
	for (int64_t i = 0; i < n; i++)
		s_append(p, json_pack("{s:s, s:s}", "kind", "note", "text", "seeded"));
	sim_set_state(sim, p);
	return 0;
}

/* The next link of a page that ends at seq `last`: an absolute URL on the host asked (or
 * link_host), asking with after= rather than since=. */
static void s_next_link(const sim_t *sim, const sim_request_t *req, int64_t last, int64_t max,
			char *buf, size_t size)
{
	const char *host = sim_setting(sim, "link_host", sim_header(req, "Host"));

	snprintf(buf, size, "http://%s/api/items?after=%" PRId64 "&limit=%" PRId64,
		 host ? host : "127.0.0.1", last, max);
}

static void s_list(sim_t *sim, pollapi_t *p, const sim_request_t *req, sim_response_t *res)
{
	const char *since = sim_query(req, "since"), *after_q = sim_query(req, "after");
	const char *limit = sim_query(req, "limit");
	const char *paging = sim_setting(sim, "paging", "cursor");
	bool cursor_in_header = !strcmp(sim_setting(sim, "cursor_in", "body"), "header");
	int64_t after = after_q ? strtoll(after_q, NULL, 10) : since ? strtoll(since, NULL, 10) : 0;
	int64_t max = limit ? atoll(limit) : 50;
	json_t *page = json_array(), *item, *out;
	char *text, next[32], link[256];
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
		if (seq <= p->served_to)
			p->repeated++;
		else
			p->served_to = seq;
		last = seq;
	}
	p->pages++;
	p->linked += after_q != NULL;
	snprintf(next, sizeof next, "%" PRId64, last);
	out = json_pack("{s:o}", "items", page);
	if (!strcmp(paging, "cursor"))
		json_object_set_new(out, "has_more", json_boolean(more));
	if (cursor_in_header && last >= 0)
		sim_reply_header(res, "X-Next-Cursor", next);
	else if (!cursor_in_header)
		json_object_set_new(out, "next", last >= 0 ? json_string(next) : json_null());
	if (more)
		s_next_link(sim, req, last, max, link, sizeof link);
	if (!strcmp(paging, "body-link"))
		json_object_set_new(
			out, "links",
			json_pack("{s:o}", "next", more ? json_string(link) : json_null()));
	if (!strcmp(paging, "link") && more) {
		char value[300];
		/* Another relation first: the client must pick rel="next". */
		snprintf(value, sizeof value, "</api/items>; rel=\"first\", <%s>; rel=\"next\"",
			 link);
		sim_reply_header(res, "Link", value);
	}
	text = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	sim_reply_take(res, text ? 200 : 500, "application/json", text, text ? strlen(text) : 0);
}

static void s_handle(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	pollapi_t *p = sim_state(sim);
	const char *token = sim_setting(sim, "token", NULL);

	if (!strcmp(req->path, "/api/stats")) {
		sim_replyf(res, 200, "application/json",
			   "{\"pages\": %" PRId64 ", \"repeated\": %" PRId64
			   ", \"linked\": %" PRId64 "}",
			   p->pages, p->repeated, p->linked);
		return;
	}
	if (strcmp(req->path, "/api/items") != 0) {
		sim_reply(res, 404, "application/json", "{\"error\":\"no such path\"}", -1);
		return;
	}
	if (token && (!req->bearer || strcmp(req->bearer, token) != 0)) {
		sim_reply(res, 401, "application/json", "{\"error\":\"bad token\"}", -1);
		return;
	}
	if (!strcmp(req->method, "GET")) {
		s_list(sim, p, req, res);
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
