/*
 * examples/simulators/casesystem.c — kanal-sim-casesystem, the case system that sends the
 * demo's letters, seen from the side that receives their receipts: kanal's `case-system`
 * instance (the http plugin's webhook, conf/kanald.yaml) posts each letter's final
 * `post.letter.status` back here (docs/flows.md, "Receipts back to the sender"). It keeps
 * what a case worker would see per letter — its final status, channel and reason — and
 * counts how many statuses one letter got: exactly one is the promise.
 *
 * API:
 *   POST /kanal/letter-status  body: a CloudEvent (structured JSON) of type
 *                              post.letter.status; 204, or 400 {"error": …} for anything
 *                              else
 *   GET  /kanal/letter-status  {"count": N, "letters": {"<letter id>": {"status", "channel",
 *                              "reason", "statuses": K}}, "by_outcome": {"sent/digital": N…}}
 *
 * No contract exists for this (each case system has its own); the shape is the webhook's
 * CloudEvent as kanal sends it. Faults (slow, error, garbage, drop, hang) come from sim.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sim.h"

typedef struct casesystem {
	json_t *letters;    /* letter id → {status, channel, reason, statuses} */
	json_t *by_outcome; /* "status/channel" → count */
	json_int_t count;
} casesystem_t;

/* A string member of obj, or "-". */
static const char *s_str(json_t *obj, const char *name)
{
	const char *v = json_string_value(json_object_get(obj, name));

	return v && *v ? v : "-";
}

/* POST: one status, of the letter named by its `letter` field (the post.letter.send
 * event's id; docs/message-types.md), else by the event's subject. */
static void s_receive(sim_t *sim, casesystem_t *cs, const sim_request_t *req, sim_response_t *res)
{
	json_t *ev = json_loadb(req->body, req->body_len, 0, NULL);
	json_t *data = json_object_get(ev, "data"), *letter;
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *id;
	char outcome[128];

	if (!json_is_object(ev) || !type || strcmp(type, "post.letter.status") ||
	    !json_is_object(data)) {
		json_decref(ev);
		sim_reply(res, 400, "application/json",
			  "{\"error\": \"a CloudEvent of type post.letter.status is expected\"}",
			  -1);
		return;
	}
	id = json_string_value(json_object_get(data, "letter"));
	if (!id)
		id = s_str(ev, "subject");
	letter = json_object_get(cs->letters, id);
	if (!letter) {
		letter = json_object();
		json_object_set_new(cs->letters, id, letter);
	}
	json_object_set_new(letter, "status", json_string(s_str(data, "status")));
	json_object_set_new(letter, "channel", json_string(s_str(data, "channel")));
	json_object_set_new(letter, "reason", json_string(s_str(data, "reason")));
	json_object_set_new(
		letter, "statuses",
		json_integer(json_integer_value(json_object_get(letter, "statuses")) + 1));
	snprintf(outcome, sizeof outcome, "%s/%s", s_str(data, "status"), s_str(data, "channel"));
	json_object_set_new(
		cs->by_outcome, outcome,
		json_integer(json_integer_value(json_object_get(cs->by_outcome, outcome)) + 1));
	cs->count++;
	sim_log(sim, "letter status %s: %s", outcome, s_str(ev, "id"));
	json_decref(ev);
	sim_reply(res, 204, "application/json", "", 0);
}

static void s_handle(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	casesystem_t *cs = sim_state(sim);

	if (strcmp(req->path, "/kanal/letter-status") != 0) {
		sim_reply(res, 404, "application/json", "{\"error\": \"no such resource\"}", -1);
	} else if (!strcmp(req->method, "POST")) {
		s_receive(sim, cs, req, res);
	} else if (!strcmp(req->method, "GET")) {
		json_t *out = json_pack("{s:I, s:O, s:O}", "count", cs->count, "letters",
					cs->letters, "by_outcome", cs->by_outcome);
		char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
		json_decref(out);
		if (text)
			sim_reply_take(res, 200, "application/json", text, strlen(text));
		else
			sim_reply(res, 500, "application/json", "{\"error\": \"out of memory\"}",
				  -1);
	} else {
		sim_reply(res, 405, "application/json", "{\"error\": \"GET or POST\"}", -1);
	}
}

static int s_setup(sim_t *sim)
{
	static casesystem_t cs;

	cs.letters = json_object();
	cs.by_outcome = json_object();
	if (!cs.letters || !cs.by_outcome) {
		fprintf(stderr, "kanal-sim-casesystem: out of memory\n");
		return -1;
	}
	sim_set_state(sim, &cs);
	return 0;
}

int main(int argc, char **argv)
{
	return sim_main(argc, argv,
			&(sim_def_t){ .name = "casesystem",
				      .handle = s_handle,
				      .setup = s_setup,
				      .garbage_type = "application/json",
				      .garbage_body = "{\"count\": " });
}
