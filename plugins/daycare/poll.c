/*
 * plugins/daycare/poll.c — the daycare connector's source: a one-shot kanal timer polls
 * GET /api/v1/registrations?after=<cursor>&limit=<n>, maps each registration to a child.*
 * event and emits it, then waits until the bus holds the page durably (kanal_emit_flush)
 * and only then persists the new cursor in the instance's state folder. So a crash or a
 * restart never skips a registration; if the process dies between the flush and the
 * cursor write, the next run reads the page again and kanald's duplicate suppression on
 * (source, id) drops the replays, because an event's id is derived from the registration
 * id alone ("daycare-reg-<id>").
 *
 * The upstream being down, slow, hanging or answering garbage is an upstream error: it is
 * logged (the URL path and the cause, CPR numbers masked, never the body of a 200), counted
 * in the metric upstream_errors, and the next poll waits twice as long as the last, up to
 * max_backoff; the cursor stays where it was. A single malformed registration (an unknown
 * kind, a bad date, a missing child) is skipped with a warning naming its id, and the ones
 * after it go on: one bad record must not stop a municipality's daycare feed, and the
 * daycare system stays the place where it can be looked up and corrected.
 */
#include "daycare.h"
#include "../common/kc_files.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#define POLL_MAX_PAGES 20 /* pages per poll before yielding the thread */
#define POLL_FLUSH_TIMEOUT_MS 10000
#define POLL_BUSY_WAIT_MS 500 /* the bus was busy: try the rest of the page soon */

/* ---- checks on the upstream's values -------------------------------------------------------- */

/* Days since 1970-01-01 of a valid "YYYY-MM-DD", or -1 when it is not a real date. The
 * date is read as the start of that day in UTC by the SDK's one RFC 3339 parser, so
 * 31 April and 29 February outside leap years are refused exactly as they are in times. */
static long s_day_number(const char *s)
{
	char full[24];
	int64_t ms;

	if (!s || strlen(s) != 10)
		return -1;
	snprintf(full, sizeof full, "%sT00:00:00Z", s);
	if (kanal_time_parse_rfc3339(full, &ms) != 0)
		return -1;
	return (long)(ms / 86400000);
}

/* True for "HH:MM". */
static bool s_clock_ok(const char *s)
{
	return s && strlen(s) == 5 && isdigit((unsigned char)s[0]) &&
	       isdigit((unsigned char)s[1]) && s[2] == ':' && isdigit((unsigned char)s[3]) &&
	       isdigit((unsigned char)s[4]) && atoi(s) < 24 && atoi(s + 3) < 60;
}

/* True for an RFC 3339 time "YYYY-MM-DDTHH:MM:SS[.fff](Z|±hh:mm)". */
static bool s_time_ok(const char *s)
{
	return kanal_time_parse_rfc3339(s, NULL) == 0;
}

/* True for an id that can be part of an event id and a URL unchanged. */
static bool s_id_ok(const char *s)
{
	if (!s || !*s || strlen(s) > 128)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("-_.:", *s))
			return false;
	return true;
}

static const char *s_str(const json_t *o, const char *name)
{
	return json_string_value(json_object_get(o, name));
}

/* ---- mapping ----------------------------------------------------------------------------------- */

/* Puts from, to and days of a period into data. Returns NULL or why it is malformed. */
static const char *s_period(json_t *data, const char *from, const char *to)
{
	long a = s_day_number(from), b = s_day_number(to);

	if (a < 0)
		return "'from' is not a date (YYYY-MM-DD)";
	if (b < 0)
		return "'to' is not a date (YYYY-MM-DD)";
	if (b < a)
		return "'to' is before 'from'";
	json_object_set_new(data, "from", json_string(from));
	json_object_set_new(data, "to", json_string(to));
	json_object_set_new(data, "days", json_integer(b - a + 1));
	return NULL;
}

/* The kind-specific part: the event type and the data fields. Returns NULL or why the
 * registration is malformed. */
static const char *s_map_kind(const json_t *reg, const char *kind, json_t *data, const char **type)
{
	if (!strcmp(kind, "sick") || !strcmp(kind, "holiday") || !strcmp(kind, "day-off")) {
		const char *why, *date = s_str(reg, "date");
		*type = "child.absence.reported";
		json_object_set_new(data, "reason", json_string(kind));
		/* A sick report is for one day; a holiday or day-off for a period. */
		if (!strcmp(kind, "sick") && date && !json_object_get(reg, "from"))
			why = s_period(data, date, date);
		else
			why = s_period(data, s_str(reg, "from"), s_str(reg, "to"));
		if (why)
			return why;
		if (s_str(reg, "comment"))
			json_object_set_new(data, "comment", json_string(s_str(reg, "comment")));
		return NULL;
	}
	if (!strcmp(kind, "withdrawn")) {
		const char *old = s_str(reg, "withdraws");
		char report[160];
		*type = "child.absence.withdrawn";
		if (!s_id_ok(old))
			return "'withdraws' does not name a registration";
		snprintf(report, sizeof report, "daycare-reg-%s", old);
		json_object_set_new(data, "report", json_string(report));
		if (json_object_get(reg, "from") || json_object_get(reg, "to")) {
			const char *why = s_period(data, s_str(reg, "from"), s_str(reg, "to"));
			if (why)
				return why;
			json_object_del(data, "days");
		}
		return NULL;
	}
	if (!strcmp(kind, "pickup")) {
		const char *date = s_str(reg, "date"), *time = s_str(reg, "time");
		const char *mode = s_str(reg, "mode"), *person = s_str(reg, "person_name");
		json_t *wd = json_object_get(reg, "weekdays"), *day;
		size_t i;
		*type = "child.pickup.planned";
		if (s_day_number(date) < 0)
			return "'date' is not a date (YYYY-MM-DD)";
		if (!s_clock_ok(time))
			return "'time' is not HH:MM";
		if (!mode || (strcmp(mode, "person") && strcmp(mode, "alone") &&
			      strcmp(mode, "with-friend")))
			return "'mode' is not person, alone or with-friend";
		if (!strcmp(mode, "person") && (!person || !*person))
			return "a pickup by a person names no person";
		json_object_set_new(data, "date", json_string(date));
		if (wd) {
			if (!json_is_array(wd) || !json_array_size(wd))
				return "'weekdays' is not a list of days";
			json_array_foreach(wd, i, day)
			{
				const char *name = json_string_value(day);
				if (!name || strlen(name) != 3 ||
				    !strstr("mon tue wed thu fri sat sun", name))
					return "'weekdays' holds something other than mon ... sun";
			}
			json_object_set(data, "weekdays", wd);
		}
		json_object_set_new(data, "time", json_string(time));
		json_object_set_new(data, "mode", json_string(mode));
		if (person && *person)
			json_object_set_new(data, "person", json_string(person));
		return NULL;
	}
	if (!strcmp(kind, "checkin") || !strcmp(kind, "checkout")) {
		const char *at = s_str(reg, "at");
		*type = !strcmp(kind, "checkin") ? "child.checkin" : "child.checkout";
		if (!s_time_ok(at))
			return "'at' is not an RFC 3339 time";
		json_object_set_new(data, "at", json_string(at));
		if (!strcmp(kind, "checkout") && s_str(reg, "status"))
			json_object_set_new(data, "status", json_string(s_str(reg, "status")));
		return NULL;
	}
	if (!strcmp(kind, "vacation-survey")) {
		json_t *answers = json_object_get(reg, "answers"), *a, *days;
		size_t i;
		*type = "child.vacation.registered";
		if (!s_id_ok(s_str(reg, "survey_id")))
			return "'survey_id' is missing";
		if (s_day_number(s_str(reg, "deadline")) < 0)
			return "'deadline' is not a date (YYYY-MM-DD)";
		if (!json_is_array(answers) || !json_array_size(answers))
			return "'answers' is not a list of days";
		days = json_array();
		json_array_foreach(answers, i, a)
		{
			const char *date = s_str(a, "date"), *ans = s_str(a, "answer");
			if (s_day_number(date) < 0 || !ans ||
			    (strcmp(ans, "away") && strcmp(ans, "attending"))) {
				json_decref(days);
				return "an answer is not {date: YYYY-MM-DD, answer: "
				       "away|attending}";
			}
			json_array_append_new(days,
					      json_pack("{s:s, s:s}", "date", date, "answer", ans));
		}
		json_object_set_new(data, "survey", json_string(s_str(reg, "survey_id")));
		json_object_set_new(data, "deadline", json_string(s_str(reg, "deadline")));
		json_object_set_new(data, "days", days);
		return NULL;
	}
	return "unknown kind";
}

kanal_msg_t *poll_map_registration(const daycare_t *d, const json_t *reg, char *why, size_t size)
{
	const char *id = s_str(reg, "id"), *kind = s_str(reg, "kind");
	const char *child = s_str(reg, "child_id"), *inst = s_str(reg, "institution_id");
	const char *cpr = s_str(reg, "child_cpr"), *by = s_str(reg, "reported_by");
	const char *created = s_str(reg, "created"), *type = NULL, *bad;
	char event_id[160], subject[KANAL_PSEUDONYM_SIZE];
	json_t *data;
	char *text;
	kanal_msg_t *msg;

	if (!kind) {
		snprintf(why, size, "no 'kind'");
		return NULL;
	}
	if (!s_id_ok(child) || !inst || !*inst) {
		snprintf(why, size, "no 'child_id' or 'institution_id'");
		return NULL;
	}
	data = json_pack("{s:s, s:s}", "institution", inst, "child", child);
	if (cpr && kanal_cpr_valid(cpr))
		json_object_set_new(data, "child_cpr", json_string(cpr));
	bad = s_map_kind(reg, kind, data, &type);
	if (bad) {
		if (!strcmp(bad, "unknown kind"))
			snprintf(why, size, "unknown kind '%.40s'", kind);
		else
			snprintf(why, size, "%s: %s", kind, bad);
		json_decref(data);
		return NULL;
	}
	if (by)
		json_object_set_new(data, "reported_by", json_string(by));
	json_object_set_new(data, "registration", json_string(id));
	snprintf(event_id, sizeof event_id, "daycare-reg-%s", id);
	text = json_dumps(data, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(data);
	msg = text ? kanal_msg_new(type, d->instance, event_id) : NULL;
	if (!msg || kanal_msg_set_data_json(msg, text, strlen(text)) != 0) {
		free(text);
		kanal_msg_destroy(&msg);
		snprintf(why, size, "out of memory");
		return NULL;
	}
	free(text);
	if (created && kanal_msg_set_attr(msg, "time", created, NULL) != 0) {
		snprintf(why, size, "'created' is not an RFC 3339 time");
		kanal_msg_destroy(&msg);
		return NULL;
	}
	if (d->key && cpr && kanal_cpr_pseudonym(d->key, cpr, subject, sizeof subject) == 0)
		kanal_msg_set_attr(msg, "subject", subject, NULL);
	return msg;
}

/* ---- polling ------------------------------------------------------------------------------------- */

static void s_poll(kanal_ctx_t *ctx, void *arg);

int poll_schedule(kanal_ctx_t *ctx, daycare_t *d, int64_t after_ms)
{
	int64_t t;

	if (d->stopped)
		return 0;
	t = kanal_timer_add(ctx, after_ms, 0, s_poll, d);
	if (t < 0) {
		kanal_set_error(ctx, "cannot add the poll timer: %s", kanal_strerror((int)t));
		kanal_log(ctx, KANAL_LOG_ERROR, "cannot add the poll timer: %s; polling stopped",
			  kanal_strerror((int)t));
		return (int)t;
	}
	d->timer = t;
	return 0;
}

int poll_load_cursor(kanal_ctx_t *ctx, daycare_t *d)
{
	char *text = NULL;
	kanal_error_t err;
	int rc;

	kanal_error_clear(&err);
	rc = kanal_state_get(ctx, DAYCARE_CURSOR_FILE, &text, &err);
	if (rc == KANAL_ENOTFOUND)
		return 0;
	if (rc != 0) {
		kanal_set_error(ctx, "cannot read the cursor: %s",
				err.text[0] ? err.text : kanal_strerror(rc));
		return rc;
	}
	text[strcspn(text, "\r\n")] = '\0';
	free(d->cursor);
	d->cursor = *text ? text : NULL;
	if (!*text)
		free(text);
	return 0;
}

/* Persists the cursor (after the events before it are durable). */
static void s_save_cursor(kanal_ctx_t *ctx, daycare_t *d, const char *cursor)
{
	char line[600];
	char *copy;
	kanal_error_t err;
	int rc;

	if (!cursor || (d->cursor && !strcmp(d->cursor, cursor)))
		return;
	snprintf(line, sizeof line, "%s\n", cursor);
	kanal_error_clear(&err);
	rc = kanal_state_put(ctx, DAYCARE_CURSOR_FILE, line, &err);
	if (rc != 0)
		/* Polling goes on from memory; after a restart the pages since the last cursor
		 * written are read again and kanald drops them as duplicates. */
		kanal_log(ctx, KANAL_LOG_ERROR, "cannot write the cursor: %s",
			  err.text[0] ? err.text : kanal_strerror(rc));
	if ((copy = strdup(cursor))) {
		free(d->cursor);
		d->cursor = copy;
	}
}

/* Notes one failed call (why names the call and the cause): logs it, counts it, and lengthens the wait before the next. */
static void s_upstream_error(kanal_ctx_t *ctx, daycare_t *d, const char *why)
{
	d->errors_in_row++;
	d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : d->poll_interval_ms;
	if (d->backoff_ms > d->max_backoff_ms)
		d->backoff_ms = d->max_backoff_ms;
	kanal_metric_add(ctx, "upstream_errors", 1);
	kanal_log(ctx, KANAL_LOG_ERROR,
		  "upstream error: %s (%" PRId64 " in a row; next poll "
		  "in %" PRId64 " ms; cursor %s kept)",
		  why, d->errors_in_row, d->backoff_ms, d->cursor ? d->cursor : "(the beginning)");
}

typedef enum { PAGE_DONE, PAGE_MORE, PAGE_FAILED, PAGE_BUSY, PAGE_CLOSED } page_result_t;

/* Emits the page's registrations in order. Stops at the first the bus does not take;
 * *last_cursor is then the cursor of the last one handled (emitted or skipped), when the
 * upstream gives per-item cursors. Returns PAGE_DONE, PAGE_BUSY or PAGE_CLOSED. */
static page_result_t s_emit_page(kanal_ctx_t *ctx, daycare_t *d, json_t *items,
				 const char **last_cursor, int64_t *handled)
{
	json_t *reg;
	size_t i;

	json_array_foreach(items, i, reg)
	{
		char why[256];
		const char *id = s_str(reg, "id");
		kanal_msg_t *msg;
		int rc;

		if (!json_is_object(reg) || !s_id_ok(id)) {
			kanal_log(ctx, KANAL_LOG_WARN,
				  "registration #%zu after cursor %s skipped: it "
				  "has no usable 'id'",
				  i + 1, d->cursor ? d->cursor : "(start)");
			kanal_metric_add(ctx, "skipped", 1);
		} else if (!(msg = poll_map_registration(d, reg, why, sizeof why))) {
			kanal_log(ctx, KANAL_LOG_WARN, "registration %s skipped: %s", id, why);
			kanal_metric_add(ctx, "skipped", 1);
		} else {
			rc = kanal_emit(ctx, &msg);
			if (rc == KANAL_ECLOSED)
				return PAGE_CLOSED;
			if (rc == KANAL_EBUSY || rc == KANAL_ENOMEM || rc == KANAL_ETIMEDOUT)
				return PAGE_BUSY;
			if (rc != 0) {
				/* The event itself is refused (e.g. too big): no retry would help. */
				kanal_log(ctx, KANAL_LOG_WARN,
					  "registration %s skipped: the bus refused "
					  "its event: %s",
					  id, kanal_strerror(rc));
				kanal_metric_add(ctx, "skipped", 1);
			} else {
				kanal_metric_add(ctx, "emitted", 1);
			}
		}
		if (s_str(reg, "cursor"))
			*last_cursor = s_str(reg, "cursor");
		(*handled)++;
	}
	return PAGE_DONE;
}

/* Fetches and handles one page. */
static page_result_t s_poll_page(kanal_ctx_t *ctx, daycare_t *d)
{
	char what[600], cause[900], query[64];
	kc_response_t res;
	json_error_t jerr;
	json_t *page = NULL, *items;
	const char *next, *last = NULL;
	char *url, *cursor_url = NULL;
	const char *headers[] = { "Accept: application/json", NULL };
	page_result_t r;
	int64_t handled = 0;
	bool more;

	snprintf(what, sizeof what, "GET %s%s%s", DAYCARE_REGISTRATIONS, d->cursor ? "?after=" : "",
		 d->cursor ? d->cursor : "");
	snprintf(query, sizeof query, "%s?limit=%" PRId64 "%s", DAYCARE_REGISTRATIONS, d->page_size,
		 d->cursor ? "&after=%s" : "");
	url = cursor_url = daycare_url(d, query, d->cursor);
	if (!url) {
		s_upstream_error(ctx, d, "out of memory");
		return PAGE_FAILED;
	}
	kanal_metric_add(ctx, "polls", 1);
	if (kc_http_request(d->http, "GET", url, headers, NULL, 0, &res) != 0 || res.status < 200 ||
	    res.status > 299) {
		kc_http_describe(&res, what, cause, sizeof cause);
		s_upstream_error(ctx, d, cause);
		kc_response_clear(&res);
		free(cursor_url);
		return PAGE_FAILED;
	}
	free(cursor_url);
	/* Never quote a 200's body: it holds children's data. Say where it broke. */
	page = json_loadb(res.body, res.len, 0, &jerr);
	if (!page) {
		snprintf(cause, sizeof cause,
			 "%s: answer is not JSON (%zu bytes; broken at line %d, "
			 "column %d)",
			 what, res.len, jerr.line, jerr.column);
		s_upstream_error(ctx, d, cause);
		kc_response_clear(&res);
		return PAGE_FAILED;
	}
	kc_response_clear(&res);
	items = json_object_get(page, "registrations");
	next = s_str(page, "next");
	if (!json_is_array(items) || (json_array_size(items) && !next)) {
		snprintf(cause, sizeof cause,
			 "%s: answer has no 'registrations' list and 'next' "
			 "cursor",
			 what);
		s_upstream_error(ctx, d, cause);
		json_decref(page);
		return PAGE_FAILED;
	}
	if (d->errors_in_row)
		kanal_log(ctx, KANAL_LOG_INFO, "upstream answers again after %" PRId64 " errors",
			  d->errors_in_row);
	d->errors_in_row = 0;
	d->backoff_ms = 0;
	r = s_emit_page(ctx, d, items, &last, &handled);
	if (handled > 0) {
		int rc = kanal_emit_flush(ctx, POLL_FLUSH_TIMEOUT_MS);
		if (rc != 0) {
			/* Not durable yet: keep the cursor, read the page again next time (kanald
			 * drops the replays it already holds). */
			kanal_log(ctx, KANAL_LOG_WARN,
				  "events of the page after cursor %s are not "
				  "durable yet (%s); cursor kept",
				  d->cursor ? d->cursor : "(start)", kanal_strerror(rc));
			json_decref(page);
			return rc == KANAL_ECLOSED ? PAGE_CLOSED : PAGE_BUSY;
		}
	}
	more = json_is_true(json_object_get(page, "has_more")) ||
	       (!json_object_get(page, "has_more") &&
		(int64_t)json_array_size(items) >= d->page_size);
	if (r == PAGE_DONE)
		s_save_cursor(ctx, d, next);
	else
		s_save_cursor(ctx, d, last);
	json_decref(page);
	if (r == PAGE_DONE && more && handled > 0)
		return PAGE_MORE;
	return r;
}

/* The poll timer: pages until the upstream has no more (at most POLL_MAX_PAGES per turn,
 * so deliveries to this instance are not held up), then schedules the next poll. */
static void s_poll(kanal_ctx_t *ctx, void *arg)
{
	daycare_t *d = arg;
	int64_t next = d->poll_interval_ms;
	page_result_t r = PAGE_MORE;

	d->timer = 0;
	if (d->stopped)
		return;
	for (int pages = 0; r == PAGE_MORE && pages < POLL_MAX_PAGES; pages++)
		r = s_poll_page(ctx, d);
	if (r == PAGE_MORE)
		next = 0;
	else if (r == PAGE_FAILED)
		next = d->backoff_ms;
	else if (r == PAGE_BUSY)
		next = d->poll_interval_ms < POLL_BUSY_WAIT_MS ? d->poll_interval_ms
							       : POLL_BUSY_WAIT_MS;
	else if (r == PAGE_CLOSED) {
		kanal_log(ctx, KANAL_LOG_INFO, "bus shutting down; polling stopped at cursor %s",
			  d->cursor ? d->cursor : "(the beginning)");
		d->stopped = true;
		return;
	}
	poll_schedule(ctx, d, next);
}
