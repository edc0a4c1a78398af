/*
 * broker/deadnotice.c — a dead letter tells its sender. A connector that refuses an event
 * for good (a REJECT) says so itself: plugins/letter and plugins/daycare emit the event's
 * `failed` final status. But when kanald gives a delivery up for a reason of its own — the
 * route's retry budget spent, an enrich step or a transform that failed, kanald stopping
 * before it — no connector knows that the last attempt was the last, and the sender never
 * hears. So kanald publishes its own event, `kanal.delivery.dead`, into its routing: what
 * died where and why, and the original event's id, source and type (with the few fields of
 * the catalogue's types that their status needs, such as a letter's `sender` block), and
 * the shipped routes turn it into the type's final status with a jq transform, no C
 * (routes/municipal.yaml, docs/message-types.md#kanaldeliverydead). delivery.c's
 * delivery_dead notes a notice while the turn runs; commit.c's end of the turn routes the
 * turn's notices before the journal's commit, so that a dead letter and its notice are
 * committed together, and nothing is routed from inside an outcome, a fan-out or the
 * journal's recovery. The notice's id is derived from the dead letter (the original's
 * source and id, the route, the destination): the same dead letter again — a restart, a
 * replay — is a duplicate the bus drops.
 */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/cpr.h>
#include <kanal/time.h>

#include "deadnotice.h"
#include "log.h"

/* A notice kept until the end of the turn. */
typedef struct deadnotice {
	kanal_msg_t *msg;
	struct deadnotice *next;
} deadnotice_t;

/* The catalogue's types whose final status needs fields of the original's data, and those
 * fields: only these are copied into a notice (never a CPR number: they are the sender's
 * block and the daycare system's ids). Any other type's notice references the original by
 * its id only. */
static const struct {
	const char *type;
	const char *fields[4];
} s_status_fields[] = {
	{ "post.letter.send", { "sender" } },
	{ "child.absence.reported", { "registration", "institution", "child", "reported_by" } },
	{ "child.absence.withdrawn", { "registration", "institution", "child", "reported_by" } },
	{ "child.pickup.planned", { "registration", "institution", "child", "reported_by" } },
	{ "child.vacation.registered", { "registration", "institution", "child", "reported_by" } },
};

/* Whether kanald itself gave dl up, so that nobody downstream has said so. `routed`: dl
 * was made by its event's routing (not a replay of a dead letter). */
static bool s_wanted(const router_t *r, const delivery_t *dl, const char *reason, bool routed)
{
	/* A spilled delivery is kept for a replay, not given up; an unmatched or replayed
	 * event has no route of its own (a replay's sender heard at its first death). */
	if (r->spilling || !routed || (dl->kind != DL_PRIMARY && dl->kind != DL_FALLBACK))
		return false;
	/* A dead notice never makes another. */
	if (!strcmp(kanal_msg_type(dl->ev->msg), DEADNOTICE_TYPE))
		return false;
	/* The destination's own REJECT: the connector reported it (its `failed` status). */
	if (!strcmp(reason, "rejected") && !dl->by_kanald)
		return false;
	/* A route that sends its events to `deadletter` means to. */
	return strcmp(reason, "routed to deadletter") != 0;
}

/* The notice's id: "dead-" and 32 hex digits of the SHA-256 of the original's source and
 * id, the route and the destination, so the same dead letter always gets the same id.
 * Returns false when out of memory. */
static bool s_id(const delivery_t *dl, char out[38])
{
	const char *parts[4] = { kanal_msg_source(dl->ev->msg), kanal_msg_id(dl->ev->msg),
				 router_route_name(dl), dl->dest->name };
	unsigned char md[SHA256_DIGEST_LENGTH];
	char *key = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&key, &len);

	/* Each part ends with a NUL, so that no two different tuples read the same. */
	for (size_t i = 0; f && i < 4; i++)
		fwrite(parts[i] ? parts[i] : "", 1, strlen(parts[i] ? parts[i] : "") + 1, f);
	if (!f || fclose(f) != 0 || !key) {
		free(key);
		return false;
	}
	SHA256((const unsigned char *)key, len, md);
	free(key);
	memcpy(out, "dead-", 5);
	for (size_t i = 0; i < 16; i++)
		snprintf(out + 5 + 2 * i, 3, "%02x", md[i]);
	return true;
}

/* The original event as the notice names it: its attributes, and the data fields its
 * type's status needs. Ownership: a new reference. */
static json_t *s_original(const kanal_msg_t *ev)
{
	const char *type = kanal_msg_type(ev), *subject = kanal_msg_attr(ev, "subject");
	json_t *o = json_pack("{s:s, s:s, s:s}", "id", kanal_msg_id(ev), "source",
			      kanal_msg_source(ev), "type", type);
	json_t *data = NULL;

	if (o && subject)
		json_object_set_new(o, "subject", json_string(subject));
	for (size_t i = 0; o && i < sizeof s_status_fields / sizeof s_status_fields[0]; i++) {
		if (strcmp(s_status_fields[i].type, type))
			continue;
		for (size_t j = 0; j < 4 && s_status_fields[i].fields[j]; j++) {
			char *text = kanal_msg_data_json(ev, s_status_fields[i].fields[j]);
			json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
			kanal_free(text);
			if (!v)
				continue;
			if (!data)
				data = json_object();
			json_object_set_new(data, s_status_fields[i].fields[j], v);
		}
	}
	if (o && data)
		json_object_set_new(o, "data", data);
	else
		json_decref(data);
	return o;
}

/* Builds the notice of dl's death. Returns a new message or NULL (out of memory). */
static kanal_msg_t *s_notice(const delivery_t *dl, const char *reason)
{
	const kanal_msg_t *ev = dl->ev->msg;
	const char *subject = kanal_msg_attr(ev, "subject");
	const char *correlation = kanal_msg_attr(ev, "correlationid");
	char id[38], now[40], *error = NULL, *text = NULL;
	json_t *data;
	kanal_msg_t *msg;

	msg = s_id(dl, id) ? kanal_msg_new(DEADNOTICE_TYPE, "kanald", id) : NULL;
	if (!msg)
		return NULL;
	/* An attempt's error may quote what a service answered: no CPR number in it. */
	if (dl->n_errors && (error = strdup(dl->errors[dl->n_errors - 1])))
		kanal_cpr_redact_inplace(error);
	data = json_pack("{s:s, s:s, s:s, s:s?, s:i, s:o*}", "route", router_route_name(dl),
			 "destination", dl->dest->name, "reason", reason, "error", error,
			 "attempts", dl->attempt, "event", s_original(ev));
	free(error);
	text = data ? json_dumps(data, JSON_COMPACT) : NULL;
	json_decref(data);
	kanal_time_rfc3339(kanal_wall_ms(), now, sizeof now);
	if (!text || kanal_msg_set_data_json(msg, text, strlen(text)) < 0 ||
	    kanal_msg_set_attr(msg, "time", now, NULL) < 0 ||
	    kanal_msg_set_attr(msg, "causationid", kanal_msg_id(ev), NULL) < 0 ||
	    kanal_msg_set_attr(msg, "correlationid", correlation ? correlation : kanal_msg_id(ev),
			       NULL) < 0 ||
	    (subject && kanal_msg_set_attr(msg, "subject", subject, NULL) < 0))
		kanal_msg_destroy(&msg);
	free(text);
	return msg;
}

kanal_msg_t *deadnotice_new(const router_t *r, const delivery_t *dl, const char *reason,
			    bool replayed)
{
	/* A cluster delivery has no flow: its route comes with its message. */
	bool routed = dl->flow || (!replayed && router_route_name(dl));

	return s_wanted(r, dl, reason, routed) ? s_notice(dl, reason) : NULL;
}

void deadnotice_note(router_t *r, const delivery_t *dl, const char *reason)
{
	deadnotice_t *n;

	if (!s_wanted(r, dl, reason, dl->flow != NULL))
		return;
	n = calloc(1, sizeof *n);
	if (!n || !(n->msg = s_notice(dl, reason))) {
		free(n);
		log_error("router", "out of memory: the dead letter of event %s gets no %s",
			  kanal_msg_id(dl->ev->msg), DEADNOTICE_TYPE);
		return;
	}
	n->next = r->dead_notices;
	r->dead_notices = n;
}

void deadnotice_flush(router_t *r)
{
	deadnotice_t *list = NULL, *n, *busy = NULL, **busy_tail = &busy;

	/* Kept newest first: turned round, they are routed in the order they died. */
	while ((n = r->dead_notices)) {
		r->dead_notices = n->next;
		n->next = list;
		list = n;
	}
	while ((n = list)) {
		const route_t *one;
		int rc = KANAL_EBUSY; /* once one waits, those after it wait too: in order */

		list = n->next;
		if (!busy && routes_match(r->table->routes, n->msg, &one, 1) == 0)
			rc = 0; /* nobody wants it: dropped (the stream showed the dead letter) */
		else if (!busy)
			rc = router_accept(r, &n->msg, -1);
		if (rc == KANAL_EBUSY) {
			n->next = NULL;
			*busy_tail = n;
			busy_tail = &n->next;
			continue;
		}
		if (rc < 0 && rc != KANAL_EDUPLICATE)
			log_error("router", "cannot route %s %s: %s", DEADNOTICE_TYPE,
				  kanal_msg_id(n->msg), kanal_strerror(rc));
		kanal_msg_destroy(&n->msg);
		free(n);
	}
	/* What a full destination refused waits for the next turn (kept newest first). */
	while ((n = busy)) {
		busy = n->next;
		n->next = r->dead_notices;
		r->dead_notices = n;
	}
}

void deadnotice_free(router_t *r)
{
	deadnotice_t *n;

	while ((n = r->dead_notices)) {
		r->dead_notices = n->next;
		kanal_msg_destroy(&n->msg);
		free(n);
	}
}
