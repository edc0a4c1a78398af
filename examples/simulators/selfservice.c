/*
 * examples/simulators/selfservice.c — kanal-sim-selfservice, the self-service platform of the
 * demo, seen from the side that hears back: kanal's `selfservice-platform` instance (the
 * http plugin's webhook, conf/kanald.yaml) posts each submission's
 * `selfservice.submission.status` here (docs/flows.md, "Self-service to the case system").
 * It keeps what the citizen's page would show per submission — the latest status and its
 * reason — and counts the final statuses one submission got: exactly one is the promise.
 * (The submissions themselves come from examples/demo/submissions.jsonl, sent by the demo.)
 *
 * API:
 *   POST /kanal/submission-status  body: a CloudEvent (structured JSON) of type
 *                                  selfservice.submission.status; 204, or 400 for
 *                                  anything else
 *   GET  /kanal/submission-status  {"statuses": N, "finals": N, "submissions":
 *                                  {"<id>": {"status", "reason", "finals"}}}
 *
 * No contract exists for this (each platform has its own); the shape is the webhook's
 * CloudEvent as kanal sends it. Faults come from sim.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sim.h"

typedef struct platform {
	json_t *submissions; /* submission id → {status, reason, finals} */
	json_int_t statuses, finals;
} platform_t;

static void s_status(sim_t *sim, platform_t *p, const sim_request_t *req, sim_response_t *res)
{
	json_t *ev = json_loadb(req->body, req->body_len, 0, NULL), *data, *sub;
	const char *type = json_string_value(json_object_get(ev, "type")), *id, *status;
	bool final;

	data = json_object_get(ev, "data");
	id = json_string_value(json_object_get(data, "submission"));
	status = json_string_value(json_object_get(data, "status"));
	if (!type || strcmp(type, "selfservice.submission.status") || !id || !status) {
		json_decref(ev);
		sim_reply(res, 400, "application/json",
			  "{\"error\": \"a CloudEvent of type selfservice.submission.status with "
			  "data.submission and data.status is expected\"}",
			  -1);
		return;
	}
	final = json_is_true(json_object_get(data, "final"));
	if (!(sub = json_object_get(p->submissions, id))) {
		sub = json_pack("{s:i}", "finals", 0);
		json_object_set_new(p->submissions, id, sub);
	}
	json_object_set(sub, "status", json_object_get(data, "status"));
	json_object_set(sub, "reason", json_object_get(data, "reason"));
	if (final)
		json_object_set_new(
			sub, "finals",
			json_integer(json_integer_value(json_object_get(sub, "finals")) + 1));
	p->statuses++;
	p->finals += final;
	sim_log(sim, "submission %s: %s%s", id, status, final ? " (final)" : "");
	json_decref(ev);
	sim_reply(res, 204, "application/json", "", 0);
}

static void s_handle(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	platform_t *p = sim_state(sim);
	json_t *out;
	char *text;

	if (strcmp(req->path, "/kanal/submission-status")) {
		sim_reply(res, 404, "application/json", "{\"error\": \"no such resource\"}", -1);
		return;
	}
	if (!strcmp(req->method, "POST")) {
		s_status(sim, p, req, res);
		return;
	}
	out = json_pack("{s:I, s:I, s:O}", "statuses", p->statuses, "finals", p->finals,
			"submissions", p->submissions);
	text = out ? json_dumps(out, JSON_COMPACT) : NULL;
	json_decref(out);
	sim_reply_take(res, text ? 200 : 500, "application/json", text, text ? strlen(text) : 0);
}

static int s_setup(sim_t *sim)
{
	static platform_t p;

	if (!(p.submissions = json_object()))
		return -1;
	sim_set_state(sim, &p);
	return 0;
}

int main(int argc, char **argv)
{
	return sim_main(argc, argv,
			&(sim_def_t){ .name = "selfservice",
				      .handle = s_handle,
				      .setup = s_setup,
				      .garbage_type = "application/json",
				      .garbage_body = "{\"statuses\": " });
}
