/*
 * cli/cmd_dlq.c — `kanalctl dlq list|show|replay|drop`: kanald's dead-letter store.
 *
 * With the durable journal, kanald keeps every event it gave up on — a permanent rejection
 * with no fallback, or a spent retry budget — as a dead letter: the original event, the
 * route, the destination and every attempt's error. These commands reach the store over
 * the admin socket (docs/design/wire.md, "Dead letters over the admin socket"): one JSON
 * request, one JSON reply, found and bounded exactly as `reload` and `status` are.
 *
 * Dead letters hold personal data. kanald masks CPR numbers in its replies unless a request
 * says "clear": true, and kanalctl masks every line again on its way out; only `dlq show
 * --clear` prints the clear text, and it says so on stderr first. Text that came from a
 * plugin (error messages) has its control characters replaced, so that a hostile or
 * broken error text cannot move the operator's cursor or forge lines.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "host.h"
#include "kanalctl.h"

/* Options every dlq subcommand takes: where kanald is and how long to wait. */
#define DLQ_COMMON (CTL_OPT_CONFIG | CTL_OPT_ADMIN | CTL_OPT_TIMEOUT | CTL_OPT_JSON)
#define DLQ_FILTERS (CTL_OPT_ROUTE | CTL_OPT_TYPE | CTL_OPT_SINCE)

/* ---- Talking to the admin socket ---------------------------------------------------- */

/* Sends request (which it consumes) and checks the answer. Returns CTL_EXIT_OK with the
 * reply when kanald said "ok": true; CTL_EXIT_NO after printing kanald's error when it said
 * no (the journal is off, no such letter); CTL_EXIT_ERROR when nothing usable came back.
 * With --json the reply is printed as received — masked unless `clear` — whatever it says.
 * Ownership: takes *request_p; *reply and *raw are new (NULL unless CTL_EXIT_OK). */
static int s_ask(const ctl_t *ctl, const char *what, json_t **request_p, bool clear, json_t **reply,
		 char **raw)
{
	const char *message;
	int status;

	*reply = NULL;
	*raw = NULL;
	if (!*request_p) {
		ctl_error("dlq %s: out of memory", what);
		return CTL_EXIT_ERROR;
	}
	status = ctl_admin_call(ctl, *request_p, reply, raw);
	json_decref(*request_p);
	*request_p = NULL;
	if (status != CTL_EXIT_OK)
		return status;
	if (ctl->json) {
		if (clear)
			printf("%s\n", *raw);
		else
			ctl_printf(stdout, "%s\n", *raw);
	}
	if (json_is_true(json_object_get(*reply, "ok")))
		return CTL_EXIT_OK;
	message = json_string_value(json_object_get(*reply, "error"));
	if (!ctl->json)
		ctl_error("dlq %s: %s", what,
			  message ? message : "kanald refused without saying why");
	json_decref(*reply);
	*reply = NULL;
	free(*raw);
	*raw = NULL;
	return CTL_EXIT_NO;
}

/* ---- Times ---------------------------------------------------------------------------- */

int ctl_since(const char *what, const char *text, char *buf, size_t size)
{
	size_t n = strlen(text);
	int64_t ms, ago;

	if (kanal_time_parse_rfc3339(text, &ms) == 0 && kanal_time_rfc3339(ms, buf, size) == 0)
		return 0;
	/* A bare number would be milliseconds to the duration parser; nobody means that. */
	if (n > 1 && text[n - 1] >= 'a' && text[n - 1] <= 'z' &&
	    kanal__parse_duration_ms(text, &ago) == 0 && ago >= 0) {
		ms = kanal_wall_ms() - ago;
		if (kanal_time_rfc3339(ms - ms % 1000, buf, size) == 0)
			return 0;
	}
	ctl_error("%s: --since wants an RFC 3339 time (2026-11-24T10:00:00Z, or with an "
		  "offset such as +01:00) or a duration ago (30m, 2h, 1d), not '%s'",
		  what, text);
	return -1;
}

/* ---- Arguments -------------------------------------------------------------------------- */

/* Reads the dead-letter ids given as arguments into a new JSON array. Returns it, or NULL
 * after printing why (none given, one not a whole number > 0). Ownership: new reference. */
static json_t *s_ids(const char *what, int argc, char **argv)
{
	json_t *ids;

	if (argc == 0) {
		ctl_error("dlq %s needs the ids of dead letters (kanalctl dlq list shows them)",
			  what);
		return NULL;
	}
	ids = json_array();
	for (int i = 0; ids && i < argc; i++) {
		char *end;
		long long v;

		errno = 0;
		v = strtoll(argv[i], &end, 10);
		if (errno || end == argv[i] || *end || v <= 0) {
			ctl_error("dlq %s: '%s' is not a dead letter id (a whole number >= 1, as "
				  "kanalctl dlq list shows)",
				  what, argv[i]);
			json_decref(ids);
			return NULL;
		}
		if (json_array_append_new(ids, json_integer(v)) < 0) {
			json_decref(ids);
			ids = NULL;
		}
	}
	if (!ids)
		ctl_error("dlq %s: out of memory", what);
	return ids;
}

/* Adds --route, --type and --since (as RFC 3339 UTC) to obj. Returns 0, or -1 after
 * printing why. */
static int s_add_filters(const ctl_t *ctl, const char *what, json_t *obj)
{
	char since[64];

	if (ctl->route && json_object_set_new(obj, "route", json_string(ctl->route)) < 0)
		goto nomem;
	if (ctl->type && json_object_set_new(obj, "type", json_string(ctl->type)) < 0)
		goto nomem;
	if (ctl->since) {
		char cmd[32];
		snprintf(cmd, sizeof cmd, "dlq %s", what);
		if (ctl_since(cmd, ctl->since, since, sizeof since) < 0)
			return -1;
		if (json_object_set_new(obj, "since", json_string(since)) < 0)
			goto nomem;
	}
	return 0;
nomem:
	/* json_string refuses text that is not UTF-8, as well as failing for want of memory. */
	ctl_error("dlq %s: --route and --type must be UTF-8 text", what);
	return -1;
}

/* ---- Subcommands -------------------------------------------------------------------------- */

static int s_list(ctl_t *ctl, int argc, char **argv)
{
	json_t *request = json_pack("{s:s}", "cmd", "dlq.list"), *reply, *items;
	char *raw;
	int status;

	if (argc > 0) {
		ctl_error("dlq list takes no arguments, only --route, --type, --since and --limit "
			  "(not '%s')",
			  argv[0]);
		json_decref(request);
		return CTL_EXIT_ERROR;
	}
	if (request && (s_add_filters(ctl, "list", request) < 0 ||
			(ctl->limit > 0 &&
			 json_object_set_new(request, "limit", json_integer(ctl->limit)) < 0))) {
		json_decref(request);
		return CTL_EXIT_ERROR;
	}
	status = s_ask(ctl, "list", &request, false, &reply, &raw);
	if (status != CTL_EXIT_OK || ctl->json)
		goto done;
	items = json_object_get(reply, "items");
	if (!json_is_array(items)) {
		ctl_error("dlq list: kanald's reply has no list of items: %.200s", raw);
		status = CTL_EXIT_ERROR;
	} else if (json_array_size(items) == 0) {
		printf("no dead letters%s\n", ctl->given & (DLQ_FILTERS) ? " match" : "");
	} else if (ctl_dlq_print_list(stdout, items) < 0) {
		status = CTL_EXIT_ERROR;
	}
done:
	json_decref(reply);
	free(raw);
	return status;
}

static int s_show(ctl_t *ctl, int argc, char **argv)
{
	json_t *request, *reply, *ids, *item;
	char *raw;
	int status;

	if (argc != 1) {
		ctl_error("dlq show takes one dead letter id%s", argc ? ", not several" : "");
		return CTL_EXIT_ERROR;
	}
	ids = s_ids("show", argc, argv);
	if (!ids)
		return CTL_EXIT_ERROR;
	request = json_pack("{s:s, s:O, s:b}", "cmd", "dlq.show", "id", json_array_get(ids, 0),
			    "clear", ctl->clear);
	json_decref(ids);
	if (ctl->clear)
		ctl_error("warning: --clear: this output holds personal data (CPR numbers) in the "
			  "clear; keep it out of tickets, chats and logs");
	status = s_ask(ctl, "show", &request, ctl->clear, &reply, &raw);
	if (status != CTL_EXIT_OK || ctl->json)
		goto done;
	item = json_object_get(reply, "item");
	if (!json_is_object(item)) {
		ctl_error("dlq show: kanald's reply has no item: %.200s", raw);
		status = CTL_EXIT_ERROR;
		goto done;
	}
	ctl_dlq_print_letter(stdout, item, ctl->clear);
done:
	json_decref(reply);
	free(raw);
	return status;
}

/* True when the JSON array holds the integer id. */
static bool s_has_id(json_t *array, json_int_t id)
{
	size_t i;
	json_t *v;

	json_array_foreach(array, i, v)
	{
		if (json_integer_value(v) == id)
			return true;
	}
	return false;
}

static int s_replay(ctl_t *ctl, int argc, char **argv)
{
	json_t *request = NULL, *reply = NULL, *ids = NULL, *match, *replayed, *missing, *v;
	char *raw = NULL;
	size_t i;
	int status;

	if (ctl->all_matching) {
		if (argc > 0) {
			ctl_error("dlq replay: give ids or --all-matching with filters, not both");
			return CTL_EXIT_ERROR;
		}
		match = json_object();
		request = json_pack("{s:s, s:o}", "cmd", "dlq.replay", "match", match);
		if (request && s_add_filters(ctl, "replay", match) < 0) {
			json_decref(request);
			return CTL_EXIT_ERROR;
		}
	} else {
		if (ctl->given & DLQ_FILTERS) {
			ctl_error(
				"dlq replay: --route, --type and --since choose letters only with "
				"--all-matching");
			return CTL_EXIT_ERROR;
		}
		ids = s_ids("replay", argc, argv);
		if (!ids)
			return CTL_EXIT_ERROR;
		request = json_pack("{s:s, s:O}", "cmd", "dlq.replay", "ids", ids);
	}
	status = s_ask(ctl, "replay", &request, false, &reply, &raw);
	if (status != CTL_EXIT_OK)
		goto done;
	replayed = json_object_get(reply, "replayed");
	missing = json_object_get(reply, "missing");
	if (!json_is_array(replayed)) {
		ctl_error("dlq replay: kanald's reply does not say what was replayed: %.200s", raw);
		status = CTL_EXIT_ERROR;
		goto done;
	}
	if (!ctl->json) {
		json_array_foreach(replayed, i, v)
			printf("replayed %" JSON_INTEGER_FORMAT "\n", json_integer_value(v));
		json_array_foreach(missing, i, v)
			printf("missing %" JSON_INTEGER_FORMAT
			       ": not in the dead-letter store (replayed or dropped already?)\n",
			       json_integer_value(v));
	}
	if (json_array_size(missing) > 0)
		status = CTL_EXIT_NO;
	/* Everything asked for must have been replayed, whether or not kanald listed it as
	 * missing. */
	json_array_foreach(ids, i, v)
	{
		if (s_has_id(replayed, json_integer_value(v)) ||
		    s_has_id(missing, json_integer_value(v)))
			continue;
		if (!ctl->json)
			printf("missing %" JSON_INTEGER_FORMAT ": kanald did not replay it\n",
			       json_integer_value(v));
		status = CTL_EXIT_NO;
	}
	if (!ctl->json && ctl->all_matching && json_array_size(replayed) == 0 &&
	    json_array_size(missing) == 0)
		printf("no dead letters match: nothing replayed\n");
done:
	json_decref(ids);
	json_decref(reply);
	free(raw);
	return status;
}

static int s_drop(ctl_t *ctl, int argc, char **argv)
{
	json_t *request, *reply, *ids = s_ids("drop", argc, argv), *dropped;
	size_t asked;
	char *raw;
	int status;

	if (!ids)
		return CTL_EXIT_ERROR;
	asked = json_array_size(ids);
	request = json_pack("{s:s, s:o}", "cmd", "dlq.drop", "ids", ids);
	status = s_ask(ctl, "drop", &request, false, &reply, &raw);
	if (status != CTL_EXIT_OK)
		goto done;
	dropped = json_object_get(reply, "dropped");
	if (!json_is_integer(dropped)) {
		ctl_error("dlq drop: kanald's reply does not say how many were dropped: %.200s",
			  raw);
		status = CTL_EXIT_ERROR;
		goto done;
	}
	if ((size_t)json_integer_value(dropped) < asked) {
		if (!ctl->json)
			printf("dropped %" JSON_INTEGER_FORMAT
			       " of the %zu dead letters asked for; "
			       "the others were not in the store\n",
			       json_integer_value(dropped), asked);
		status = CTL_EXIT_NO;
	} else if (!ctl->json) {
		printf("dropped %" JSON_INTEGER_FORMAT " dead letter%s\n",
		       json_integer_value(dropped), json_integer_value(dropped) == 1 ? "" : "s");
	}
done:
	json_decref(reply);
	free(raw);
	return status;
}

static int s_purge(ctl_t *ctl, int argc, char **argv)
{
	json_t *request, *reply;
	char before[64], *raw;
	int status;

	(void)argv;
	if (argc > 0 || !ctl->older_than) {
		ctl_error("dlq purge takes no ids, only --older-than TIME (30d, or RFC 3339)");
		return CTL_EXIT_ERROR;
	}
	if (ctl_since("dlq purge", ctl->older_than, before, sizeof before) < 0)
		return CTL_EXIT_ERROR;
	request = json_pack("{s:s, s:s}", "cmd", "dlq.purge", "older_than", before);
	status = s_ask(ctl, "purge", &request, false, &reply, &raw);
	if (status == CTL_EXIT_OK && !ctl->json)
		printf("purged %" JSON_INTEGER_FORMAT " dead letter(s) that died before %s\n",
		       json_integer_value(json_object_get(reply, "purged")), before);
	json_decref(reply);
	free(raw);
	return status;
}

/* ---- Dispatch ------------------------------------------------------------------------------ */

static const struct {
	const char *name;
	int (*run)(ctl_t *ctl, int argc, char **argv);
	unsigned options; /* beyond DLQ_COMMON */
} s_subcommands[] = {
	{ "list", s_list, DLQ_FILTERS | CTL_OPT_LIMIT },
	{ "show", s_show, CTL_OPT_CLEAR },
	{ "replay", s_replay, CTL_OPT_ALL_MATCHING | DLQ_FILTERS },
	{ "drop", s_drop, 0 },
	{ "purge", s_purge, CTL_OPT_OLDER_THAN },
};

int cmd_dlq(ctl_t *ctl, int argc, char **argv)
{
	char what[32];

	if (argc == 0) {
		ctl_error("dlq needs one of list, show, replay, drop, purge (kanalctl help dlq)");
		return CTL_EXIT_ERROR;
	}
	for (size_t i = 0; i < sizeof s_subcommands / sizeof s_subcommands[0]; i++) {
		if (strcmp(argv[0], s_subcommands[i].name) != 0)
			continue;
		snprintf(what, sizeof what, "dlq %s", s_subcommands[i].name);
		if (ctl_check_options(ctl, DLQ_COMMON | s_subcommands[i].options, what, "dlq") < 0)
			return CTL_EXIT_ERROR;
		return s_subcommands[i].run(ctl, argc - 1, argv + 1);
	}
	ctl_error("dlq: no subcommand '%s' (list, show, replay, drop or purge)", argv[0]);
	return CTL_EXIT_ERROR;
}
