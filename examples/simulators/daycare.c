/*
 * examples/simulators/daycare.c — kanal-sim-daycare, a simulated daycare system (the kind
 * of parent app and institution portal Danish municipalities buy) for kanal's daycare
 * connector, its tests and the demo. It speaks a small versioned JSON API in the style of
 * such vendors:
 *
 *   GET  /api/v1/registrations?after=<cursor>&limit=<n>   parents' registrations, in order
 *   POST /api/v1/registrations                            a parent app adds one
 *   GET|POST /api/v1/registrations/<id>/confirmations     the parents' app: what the parent
 *                                                         is told about the registration
 *                                                         ({"status": "confirmed"|"failed",
 *                                                         "final", "reason", "report"}); every
 *                                                         POST is kept, so a second one shows
 *   GET  /api/v1/institutions                             the institutions
 *   GET|POST /api/v1/institutions/<id>/notices            notices to the institution's parents,
 *                                                         with their photos ("photos": [{
 *                                                         "media_type", "data_base64"}];
 *                                                         kept as media type, size, sha256)
 *   GET|POST /api/v1/institutions/<id>/staffing           who is expected absent (staffing view)
 *   GET|POST /api/v1/institutions/<id>/day                the day overview: pickups, check-ins
 *                                                         and check-outs
 *   GET|POST /api/v1/institutions/<id>/vacation-plan      holiday-survey answers (staffing plan)
 *
 * Every /api/ call needs `Authorization: Bearer <token>` (`--set token=…`, default
 * "sim-daycare-token"), or basic auth when `--set user=… --set password=…` are given. A POST
 * with an `Idempotency-Key` header is done once: a repeat with the same key and body gets
 * the first answer again (with `Idempotent-Replayed: true`).
 *
 * The API is invented: the daycare systems municipalities buy publish no contract kanal
 * could follow, so this one stands in for "a vendor's JSON API" (docs/plugins/daycare.md).
 * A notice or staffing entry posted with an `external_id` is the sender's one record of one
 * fact: posted again it is updated in place (a notice keeps its id; its `revision` rises
 * only when what parents see changed, and `"changed": false` says nothing did); a notice
 * posted with `"status": "withdrawn"` is taken down. A `version` older than the one the
 * record was last written with is ignored (a late older version never wins).
 *
 * Settings (--set NAME=VALUE):
 *   token=T          the bearer token required
 *   user=U, password=P  basic auth accepted too
 *   rate_ms=N        the tick adds one registration of the "morning" script every N ms
 *                    (0, the default: none)
 *   count=N          the tick stops after N registrations (0: never)
 *   initial=N        N registrations of the script exist at start
 *   lose_notice_answers=N  the first N notices are stored but answered 503, as if the
 *                    answer were lost on the way (to test idempotent redelivery)
 *
 * A POST to /api/v1/registrations?unchecked=true stores the registration without checking
 * it (the simulator's way to serve a malformed one); ?script=N adds the next N
 * registrations of the morning script at once (the demo's morning, for a test). Data comes from the shared synthetic
 * population (population.h), so a child reported sick here has parents the simulated CPR
 * service knows. The "garbage" fault answers a truncated JSON page.
 */
#include "population.h"
#include "sim.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#define DEFAULT_TOKEN "sim-daycare-token"
#define FIRST_ID 1001
#define PAGE_DEFAULT 50
#define PAGE_MAX 500

typedef struct daycare {
	json_t *regs; /* array of registration objects, in registration order */
	uint64_t next_id;
	size_t script_pos; /* the next entry of the morning script */
	int64_t rate_ms;
	int64_t count;    /* tick limit; 0: none */
	int64_t produced; /* registrations the tick made */
	int64_t next_at;  /* monotonic ms of the tick's next registration */
	int64_t lose_notice_answers;
	json_t *notices;       /* institution id -> array */
	json_t *staffing;      /* institution id -> array */
	json_t *day;           /* institution id -> array: the day overview */
	json_t *vacation;      /* institution id -> array: the holiday survey's answers */
	json_t *idempotency;   /* "<path> <key>" -> {status, body, request} */
	json_t *confirmations; /* registration id -> array: what the parents' app showed */
	uint64_t next_notice;
	const char *token, *user, *password;
} daycare_t;

/* ---- small helpers ------------------------------------------------------------------------ */

static void s_json_reply(sim_response_t *res, int status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);

	json_decref(body);
	if (!text) {
		sim_reply(res, 500, "application/json", "{\"error\": \"out of memory\"}", -1);
		return;
	}
	sim_reply_take(res, status, "application/json", text, strlen(text));
}

static void s_error(sim_response_t *res, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void s_error(sim_response_t *res, int status, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	s_json_reply(res, status, json_pack("{s:s}", "error", why));
}

/* The request's body as a JSON object, or NULL after answering 400 with the reason. */
static json_t *s_body(const sim_request_t *req, sim_response_t *res)
{
	json_error_t err;
	json_t *body = json_loadb(req->body, req->body_len, 0, &err);

	if (!body) {
		s_error(res, 400, "the body is not JSON: %s (line %d, column %d)", err.text,
			err.line, err.column);
		return NULL;
	}
	if (!json_is_object(body)) {
		json_decref(body);
		s_error(res, 400, "the body must be a JSON object");
		return NULL;
	}
	return body;
}

/* True for a real calendar date written YYYY-MM-DD. */
static bool s_date_ok(const char *s)
{
	struct tm tm = { 0 };
	int y, m, d;
	char tail;

	if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-' ||
	    sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3)
		return false;
	if (m < 1 || m > 12 || d < 1 || d > 31)
		return false;
	tm.tm_year = y - 1900;
	tm.tm_mon = m - 1;
	tm.tm_mday = d;
	tm.tm_hour = 12;
	tm.tm_isdst = -1;
	if (mktime(&tm) == (time_t)-1)
		return false;
	return tm.tm_mday == d && tm.tm_mon == m - 1;
}

/* True for "HH:MM". */
static bool s_clock_ok(const char *s)
{
	return s && strlen(s) == 5 && isdigit((unsigned char)s[0]) &&
	       isdigit((unsigned char)s[1]) && s[2] == ':' && isdigit((unsigned char)s[3]) &&
	       isdigit((unsigned char)s[4]) && atoi(s) < 24 && atoi(s + 3) < 60;
}

/* "YYYY-MM-DDTHH:MM:00+hh:mm" for today (local time) at hh_mm. */
static void s_local_time(char buf[40], const char *hh_mm)
{
	time_t now = time(NULL);
	struct tm tm;
	long off;
	char day[11];

	localtime_r(&now, &tm);
	strftime(day, sizeof day, "%Y-%m-%d", &tm);
	off = tm.tm_gmtoff / 60;
	snprintf(buf, 40, "%sT%s:00%c%02ld:%02ld", day, hh_mm, off < 0 ? '-' : '+', labs(off) / 60,
		 labs(off) % 60);
}

static const char *s_str(const json_t *o, const char *name)
{
	return json_string_value(json_object_get(o, name));
}

/* The daycare system's id of the guardian who reports for a child: its first custody
 * holder's place in the population ("guardian-2"); never a CPR number. */
static void s_guardian_of(const sim_child_t *c, char buf[32])
{
	const sim_person_t *p = sim_person_find(c->cpr);
	const sim_person_t *g = p && p->custody[0] ? sim_person_find(p->custody[0]) : NULL;

	snprintf(buf, 32, "guardian-%zu", g ? (size_t)(g - sim_people) + 1 : (size_t)0);
}

static const sim_institution_t *s_institution_find(const char *id)
{
	const sim_institution_t *i = sim_institution_find(id);

	for (size_t k = 0; !i && id && k < sim_n_institutions; k++)
		if (!strcasecmp(sim_institutions[k].name, id))
			i = &sim_institutions[k];
	return i;
}

/* ---- registrations ------------------------------------------------------------------------- */

/* Gives reg its id, cursor and creation time, fills what the system knows about the child,
 * and appends it. Steals reg; returns it (borrowed). */
static json_t *s_store(daycare_t *d, json_t *reg)
{
	const sim_child_t *c = sim_child_find(s_str(reg, "child_id"));
	char id[32], cursor[40], now[40], guardian[32];
	json_t *given = reg;

	/* The system's own fields first, then what was given. */
	reg = json_pack("{s:s, s:s}", "id", "", "cursor", "");
	json_object_update(reg, given);
	json_decref(given);
	snprintf(id, sizeof id, "%" PRIu64, d->next_id);
	snprintf(cursor, sizeof cursor, "c_%" PRIu64, d->next_id - FIRST_ID + 1);
	d->next_id++;
	sim_rfc3339_now(now);
	json_object_set_new(reg, "id", json_string(id));
	json_object_set_new(reg, "cursor", json_string(cursor));
	if (!json_object_get(reg, "created"))
		json_object_set_new(reg, "created", json_string(now));
	if (c) {
		json_object_set_new(reg, "child_cpr", json_string(c->cpr));
		json_object_set_new(reg, "institution_id", json_string(c->institution));
		if (!json_object_get(reg, "reported_by")) {
			s_guardian_of(c, guardian);
			json_object_set_new(reg, "reported_by", json_string(guardian));
		}
	}
	json_array_append_new(d->regs, reg);
	return reg;
}

/* The latest absence of the child that is not withdrawn yet, or NULL. */
static json_t *s_open_absence(daycare_t *d, const char *child)
{
	for (size_t i = json_array_size(d->regs); i-- > 0;) {
		json_t *r = json_array_get(d->regs, i);
		const char *kind = s_str(r, "kind");
		if (!child || !s_str(r, "child_id") || strcmp(s_str(r, "child_id"), child) || !kind)
			continue;
		if (!strcmp(kind, "withdrawn"))
			return NULL;
		if (!strcmp(kind, "sick") || !strcmp(kind, "holiday") || !strcmp(kind, "day-off"))
			return r;
	}
	return NULL;
}

static json_t *s_find_reg(daycare_t *d, const char *id)
{
	for (size_t i = 0; id && i < json_array_size(d->regs); i++)
		if (!strcmp(s_str(json_array_get(d->regs, i), "id"), id))
			return json_array_get(d->regs, i);
	return NULL;
}

/* Checks a registration a parent app sends; returns NULL or why it is refused. Fills in
 * what a withdrawal takes from the registration it withdraws. */
static const char *s_check(daycare_t *d, json_t *reg, char *why, size_t size)
{
	const char *kind = s_str(reg, "kind"), *child = s_str(reg, "child_id");

	if (!kind)
		return "field 'kind' is missing";
	if (!child)
		return "field 'child_id' is missing";
	if (!sim_child_find(child)) {
		snprintf(why, size, "unknown child '%s'", child);
		return why;
	}
	if (!strcmp(kind, "sick")) {
		if (!s_date_ok(s_str(reg, "date")))
			return "a sick report needs 'date' (YYYY-MM-DD)";
	} else if (!strcmp(kind, "holiday") || !strcmp(kind, "day-off")) {
		const char *from = s_str(reg, "from"), *to = s_str(reg, "to");
		if (!s_date_ok(from) || !s_date_ok(to) || strcmp(from, to) > 0)
			return "a holiday or day-off needs 'from' <= 'to' (YYYY-MM-DD)";
	} else if (!strcmp(kind, "pickup")) {
		const char *mode = s_str(reg, "mode");
		json_t *wd = json_object_get(reg, "weekdays");
		if (!s_date_ok(s_str(reg, "date")) || !s_clock_ok(s_str(reg, "time")))
			return "a pickup needs 'date' (YYYY-MM-DD) and 'time' (HH:MM)";
		if (!mode || (strcmp(mode, "person") && strcmp(mode, "alone") &&
			      strcmp(mode, "with-friend")))
			return "a pickup's 'mode' is person, alone or with-friend";
		if (!strcmp(mode, "person") && !s_str(reg, "person_name"))
			return "a pickup by a person needs 'person_name'";
		if (wd && !json_is_array(wd))
			return "'weekdays' is a list like [\"mon\", \"wed\"]";
	} else if (!strcmp(kind, "checkin") || !strcmp(kind, "checkout")) {
		const char *at = s_str(reg, "at");
		if (!at || strlen(at) < 19 || at[10] != 'T')
			return "a checkin or checkout needs 'at' (RFC 3339 time)";
	} else if (!strcmp(kind, "withdrawn")) {
		json_t *old = s_find_reg(d, s_str(reg, "withdraws"));
		const char *ok = old ? s_str(old, "kind") : NULL;
		if (!ok || (strcmp(ok, "sick") && strcmp(ok, "holiday") && strcmp(ok, "day-off")))
			return "'withdraws' must name an earlier sick, holiday or day-off "
			       "registration";
		json_object_set_new(
			reg, "from",
			json_string(s_str(old, "from") ? s_str(old, "from") : s_str(old, "date")));
		json_object_set_new(
			reg, "to",
			json_string(s_str(old, "to") ? s_str(old, "to") : s_str(old, "date")));
	} else if (!strcmp(kind, "vacation-survey")) {
		json_t *answers = json_object_get(reg, "answers");
		size_t i;
		json_t *a;
		if (!s_str(reg, "survey_id") || !s_date_ok(s_str(reg, "deadline")) ||
		    !json_is_array(answers))
			return "a survey answer needs 'survey_id', 'deadline' and 'answers'";
		json_array_foreach(answers, i, a)
		{
			const char *ans = s_str(a, "answer");
			if (!s_date_ok(s_str(a, "date")) || !ans ||
			    (strcmp(ans, "away") && strcmp(ans, "attending")))
				return "each answer is {\"date\": YYYY-MM-DD, \"answer\": "
				       "away|attending}";
		}
	} else {
		snprintf(why, size, "unknown kind '%s'", kind);
		return why;
	}
	return NULL;
}

/* The next registration of the morning script: children arriving, a sick report, a
 * pickup plan, a holiday, a survey answer, a withdrawal, departures. Deterministic. */
static json_t *s_script_next(daycare_t *d)
{
	char today[11], d1[11], d7[11], d11[11], d3[11], at[40];
	size_t step = d->script_pos++ % 11;
	json_t *r = NULL;

	sim_today(today, 0);
	sim_today(d1, 1);
	sim_today(d3, 3);
	sim_today(d7, 7);
	sim_today(d11, 11);
	switch (step) {
	case 0:
		r = json_pack("{s:s, s:s, s:s, s:s}", "kind", "sick", "child_id", "child-101",
			      "date", today, "comment", "Feber i nat");
		break;
	case 1:
		s_local_time(at, "07:42");
		r = json_pack("{s:s, s:s, s:s}", "kind", "checkin", "child_id", "child-103", "at",
			      at);
		break;
	case 2:
		s_local_time(at, "07:55");
		r = json_pack("{s:s, s:s, s:s}", "kind", "checkin", "child_id", "child-202", "at",
			      at);
		break;
	case 3:
		r = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kind", "pickup", "child_id",
			      "child-102", "date", today, "time", "15:30", "mode", "person",
			      "person_name", "Mormor Inge");
		break;
	case 4:
		r = json_pack("{s:s, s:s, s:s, s:s}", "kind", "holiday", "child_id", "child-201",
			      "from", d7, "to", d11);
		break;
	case 5: {
		json_t *answers = json_array();
		for (int k = 0; k < 5; k++) {
			char day[11];
			sim_today(day, 28 + k);
			json_array_append_new(answers,
					      json_pack("{s:s, s:s}", "date", day, "answer",
							k < 3 ? "away" : "attending"));
		}
		r = json_pack("{s:s, s:s, s:s, s:s, s:o}", "kind", "vacation-survey", "child_id",
			      "child-202", "survey_id", "ferieplan", "deadline", d3, "answers",
			      answers);
		break;
	}
	case 6:
		r = json_pack("{s:s, s:s, s:s, s:[s,s], s:s, s:s}", "kind", "pickup", "child_id",
			      "child-103", "date", today, "weekdays", "mon", "thu", "time", "14:30",
			      "mode", "with-friend");
		break;
	case 7: {
		json_t *old = s_open_absence(d, "child-201");
		if (!old)
			return s_script_next(d);
		r = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kind", "withdrawn", "child_id",
			      "child-201", "withdraws", s_str(old, "id"), "from",
			      s_str(old, "from"), "to", s_str(old, "to"));
		break;
	}
	case 8:
		r = json_pack("{s:s, s:s, s:s, s:s}", "kind", "day-off", "child_id", "child-102",
			      "from", d1, "to", d1);
		break;
	case 9:
		s_local_time(at, "15:05");
		r = json_pack("{s:s, s:s, s:s, s:s}", "kind", "checkout", "child_id", "child-103",
			      "at", at, "status", "collected");
		break;
	default:
		s_local_time(at, "16:10");
		r = json_pack("{s:s, s:s, s:s, s:s}", "kind", "checkout", "child_id", "child-202",
			      "at", at, "status", "collected");
		break;
	}
	return s_store(d, r);
}

/* GET /api/v1/registrations: the page after the cursor. */
static void s_list_registrations(daycare_t *d, const sim_request_t *req, sim_response_t *res)
{
	const char *after = sim_query(req, "after"), *limit_text = sim_query(req, "limit");
	uint64_t start = 0;
	long limit = PAGE_DEFAULT;
	json_t *page = json_array();
	size_t n = json_array_size(d->regs), i;
	char next[40];
	char *end;

	if (after && *after) {
		if (strncmp(after, "c_", 2) || !isdigit((unsigned char)after[2])) {
			json_decref(page);
			s_error(res, 400, "invalid cursor in 'after'");
			return;
		}
		start = strtoull(after + 2, &end, 10);
		if (*end) {
			json_decref(page);
			s_error(res, 400, "invalid cursor in 'after'");
			return;
		}
	}
	if (limit_text) {
		limit = strtol(limit_text, &end, 10);
		if (*end || limit < 1 || limit > PAGE_MAX) {
			json_decref(page);
			s_error(res, 400, "'limit' must be 1 to %d", PAGE_MAX);
			return;
		}
	}
	for (i = (size_t)(start < n ? start : n); i < n && json_array_size(page) < (size_t)limit;
	     i++)
		json_array_append(page, json_array_get(d->regs, i));
	snprintf(next, sizeof next, "c_%zu", i > start ? i : (size_t)start);
	s_json_reply(res, 200,
		     json_pack("{s:o, s:s, s:b}", "registrations", page, "next", next, "has_more",
			       i < n));
}

static void s_post_registration(daycare_t *d, const sim_request_t *req, sim_response_t *res)
{
	const char *unchecked = sim_query(req, "unchecked"), *script = sim_query(req, "script");
	json_t *reg, *made;
	const char *bad;
	char why[256];

	if (script) {
		/* The next N registrations of the morning script at once (a test's morning). */
		long n = strtol(script, NULL, 10);
		if (n < 1 || n > 1000) {
			s_error(res, 400, "'script' is 1-1000");
			return;
		}
		made = json_array();
		while (n-- > 0)
			json_array_append(made, s_script_next(d));
		s_json_reply(res, 201, json_pack("{s:o}", "registrations", made));
		return;
	}
	if (!(reg = s_body(req, res)))
		return;
	json_object_del(reg, "id");
	json_object_del(reg, "cursor");
	json_object_del(reg, "child_cpr");
	if (!(unchecked && !strcmp(unchecked, "true")) &&
	    (bad = s_check(d, reg, why, sizeof why))) {
		json_decref(reg);
		s_error(res, 400, "%s", bad);
		return;
	}
	reg = s_store(d, reg);
	s_json_reply(res, 201, json_incref(reg));
}

/* ---- institutions: notices and staffing ----------------------------------------------------- */

static json_t *s_list_of(json_t *map, const char *inst)
{
	json_t *a = json_object_get(map, inst);

	if (!a) {
		a = json_array();
		json_object_set_new(map, inst, a);
	}
	return a;
}

/* /api/v1/registrations/<id>/confirmations: the parents' app's side of a registration. A
 * confirmation is kept as it came (with its time), one entry per POST. */
static void s_confirmations(daycare_t *d, const sim_request_t *req, sim_response_t *res,
			    const char *rest)
{
	const char *slash = strchr(rest, '/'), *status;
	char id[64];
	json_t *body, *list;
	char now[40];

	if (!slash || strcmp(slash, "/confirmations") || (size_t)(slash - rest) >= sizeof id) {
		s_error(res, 404, "no such resource");
		return;
	}
	snprintf(id, sizeof id, "%.*s", (int)(slash - rest), rest);
	if (!s_find_reg(d, id)) {
		s_error(res, 404, "unknown registration '%s'", id);
		return;
	}
	list = s_list_of(d->confirmations, id);
	if (!strcmp(req->method, "GET")) {
		s_json_reply(res, 200, json_pack("{s:O}", "confirmations", list));
		return;
	}
	if (strcmp(req->method, "POST")) {
		s_error(res, 405, "use GET or POST");
		return;
	}
	if (!(body = s_body(req, res)))
		return;
	status = s_str(body, "status");
	if (!status || (strcmp(status, "confirmed") && strcmp(status, "failed"))) {
		json_decref(body);
		s_error(res, 400, "'status' is confirmed or failed");
		return;
	}
	if (!strcmp(status, "failed") && !s_str(body, "reason")) {
		json_decref(body);
		s_error(res, 400, "a failed confirmation needs 'reason'");
		return;
	}
	sim_rfc3339_now(now);
	json_object_set_new(body, "received", json_string(now));
	json_array_append(list, body);
	s_json_reply(res, 201, body);
}

/* The entry of `list` whose external_id is ext, or NULL. */
static json_t *s_by_external_id(json_t *list, const char *ext)
{
	size_t i;
	json_t *it;

	json_array_foreach(list, i, it) if (s_str(it, "external_id") &&
					    !strcmp(s_str(it, "external_id"), ext)) return it;
	return NULL;
}

/* True when body carries a "version" older than the one entry was last written with: a
 * late older version of the same fact, which the daycare system ignores. */
static bool s_stale(const json_t *entry, const json_t *body)
{
	json_t *have = json_object_get(entry, "version"), *got = json_object_get(body, "version");

	return json_is_integer(have) && json_is_integer(got) &&
	       json_integer_value(got) < json_integer_value(have);
}

/* A notice with an external_id is the sender's one notice for one fact: posted again it
 * is updated in place (same id, revision + 1) when what parents see changed, left alone
 * when not, and `"status": "withdrawn"` takes it down. */
static void s_update_notice(json_t *n, json_t *body, sim_response_t *res)
{
	bool withdraw = s_str(body, "status") && !strcmp(s_str(body, "status"), "withdrawn");
	bool changed = false;
	char now[40];

	if (s_stale(n, body)) {
		json_object_set_new(n, "changed", json_false());
		s_json_reply(res, 200, json_incref(n));
		return;
	}
	if (withdraw) {
		changed = strcmp(s_str(n, "status"), "withdrawn") != 0;
		json_object_set_new(n, "status", json_string("withdrawn"));
	} else {
		for (const char *const *k =
			     (const char *const[]){ "audience", "title", "text", "date", NULL };
		     *k; k++)
			if (s_str(body, *k) && strcmp(s_str(body, *k), s_str(n, *k))) {
				json_object_set_new(n, *k, json_string(s_str(body, *k)));
				changed = true;
			}
		if (strcmp(s_str(n, "status"), "active")) {
			json_object_set_new(n, "status", json_string("active"));
			changed = true;
		}
	}
	if (json_object_get(body, "version"))
		json_object_set(n, "version", json_object_get(body, "version"));
	if (changed) {
		sim_rfc3339_now(now);
		json_object_set_new(
			n, "revision",
			json_integer(json_integer_value(json_object_get(n, "revision")) + 1));
		json_object_set_new(n, "updated", json_string(now));
		if (s_str(body, "source_event"))
			json_object_set_new(n, "source_event",
					    json_string(s_str(body, "source_event")));
	}
	json_object_set_new(n, "changed", json_boolean(changed));
	s_json_reply(res, 200, json_incref(n));
}

/* A notice's photos as posted ([{"media_type": "image/…", "data_base64": …}], at most
 * MAX_PHOTOS) into what the notice keeps and shows: each photo's media type, size and
 * SHA-256 (the parents' app would show the image; the simulator only proves it came whole).
 * Returns the new array (empty without photos) or NULL after answering 400. */
#define MAX_PHOTOS 20
static json_t *s_photos(const json_t *posted, sim_response_t *res)
{
	json_t *kept = json_array(), *p;
	size_t i;

	if (posted && (!json_is_array(posted) || json_array_size(posted) > MAX_PHOTOS)) {
		json_decref(kept);
		s_error(res, 400, "'photos' is a list of at most 20 {media_type, data_base64}");
		return NULL;
	}
	json_array_foreach(posted, i, p)
	{
		const char *mt = json_string_value(json_object_get(p, "media_type"));
		const char *b64 = json_string_value(json_object_get(p, "data_base64"));
		size_t blen = b64 ? strlen(b64) : 0;
		unsigned char *bytes = blen ? malloc(blen / 4 * 3 + 3) : NULL;
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;
		char hex[2 * EVP_MAX_MD_SIZE + 1];
		int n = bytes && blen % 4 == 0
				? EVP_DecodeBlock(bytes, (const unsigned char *)b64, (int)blen)
				: -1;

		if (n >= 0) /* EVP_DecodeBlock counts the padding's bytes too */
			n -= (blen >= 1 && b64[blen - 1] == '=') +
			     (blen >= 2 && b64[blen - 2] == '=');
		if (!mt || strncmp(mt, "image/", 6) || n <= 0 ||
		    !EVP_Digest(bytes, (size_t)n, md, &mdlen, EVP_sha256(), NULL)) {
			free(bytes);
			json_decref(kept);
			s_error(res, 400,
				"photo %zu: 'media_type' image/… and non-empty base64 "
				"'data_base64' are required",
				i + 1);
			return NULL;
		}
		for (unsigned k = 0; k < mdlen; k++)
			sprintf(hex + 2 * k, "%02x", md[k]);
		free(bytes);
		json_array_append_new(kept, json_pack("{s:s, s:i, s:s}", "media_type", mt, "size",
						      n, "sha256", hex));
	}
	return kept;
}

static void s_post_notice(daycare_t *d, const sim_institution_t *inst, const sim_request_t *req,
			  sim_response_t *res)
{
	json_t *body = s_body(req, res);
	const char *title = s_str(body, "title"), *text = s_str(body, "text");
	const char *audience = s_str(body, "audience"), *date = s_str(body, "date");
	const char *source = s_str(body, "source_event"), *ext = s_str(body, "external_id");
	const char *status = s_str(body, "status");
	char id[32], today[11], now[40];
	json_t *n, *photos, *list = s_list_of(d->notices, inst->id);

	if (!body)
		return;
	if (status && strcmp(status, "active") && strcmp(status, "withdrawn")) {
		json_decref(body);
		s_error(res, 400, "'status' is active or withdrawn");
		return;
	}
	if (status && !strcmp(status, "withdrawn") && (!ext || !*ext)) {
		json_decref(body);
		s_error(res, 400, "withdrawing a notice needs its 'external_id'");
		return;
	}
	if (ext && (n = s_by_external_id(list, ext))) {
		s_update_notice(n, body, res);
		json_decref(body);
		return;
	}
	if (status && !strcmp(status, "withdrawn")) {
		/* Nothing to take down: already as the sender wants it. (ext lives in body: the
		 * answer is made before body goes.) */
		json_t *answer = json_pack("{s:s, s:s, s:b}", "external_id", ext, "status",
					   "withdrawn", "changed", 0);
		json_decref(body);
		s_json_reply(res, 200, answer);
		return;
	}
	if (!title || !*title || strlen(title) > 200 || !text || !*text || strlen(text) > 4000) {
		json_decref(body);
		s_error(res, 400, "'title' (1-200 characters) and 'text' (1-4000) are required");
		return;
	}
	if (audience && strcmp(audience, "parents") && strcmp(audience, "staff") &&
	    strcmp(audience, "all")) {
		json_decref(body);
		s_error(res, 400, "'audience' is parents, staff or all");
		return;
	}
	if (date && !s_date_ok(date)) {
		json_decref(body);
		s_error(res, 400, "'date' must be YYYY-MM-DD");
		return;
	}
	if (!(photos = s_photos(json_object_get(body, "photos"), res))) {
		json_decref(body);
		return;
	}
	sim_today(today, 0);
	sim_rfc3339_now(now);
	snprintf(id, sizeof id, "n-%" PRIu64, ++d->next_notice);
	n = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i}", "id", id, "institution",
		      inst->id, "audience", audience ? audience : "parents", "title", title, "text",
		      text, "date", date ? date : today, "created", now, "status", "active",
		      "revision", 1);
	if (source)
		json_object_set_new(n, "source_event", json_string(source));
	if (ext)
		json_object_set_new(n, "external_id", json_string(ext));
	if (json_is_integer(json_object_get(body, "version")))
		json_object_set(n, "version", json_object_get(body, "version"));
	json_object_set_new(n, "photos", photos);
	json_decref(body);
	json_array_append(list, n);
	s_json_reply(res, 201, n);
}

/* The kinds of staff absence the staffing view shows (absence_kind). */
static bool s_staff_kind_ok(const char *kind)
{
	static const char *const kinds[] = { "sick",    "child-sick", "care-day",
					     "holiday", "time-off",   "parental-leave",
					     "leave",   "other",      NULL };

	for (const char *const *k = kinds; *k; k++)
		if (!strcmp(*k, kind))
			return true;
	return false;
}

static void s_post_staffing(daycare_t *d, const sim_institution_t *inst, const sim_request_t *req,
			    sim_response_t *res)
{
	json_t *body = s_body(req, res);
	const char *ext = s_str(body, "external_id"), *kind = s_str(body, "kind");
	const char *status = s_str(body, "status"), *from = s_str(body, "from"),
		   *to = s_str(body, "to"), *absence_kind = s_str(body, "absence_kind");
	json_t *list = s_list_of(d->staffing, inst->id), *e;
	bool cancel = status && !strcmp(status, "cancelled");
	char now[40];

	if (!body)
		return;
	if (!ext || !*ext) {
		json_decref(body);
		s_error(res, 400, "'external_id' is required");
		return;
	}
	if (status && strcmp(status, "absent") && !cancel) {
		json_decref(body);
		s_error(res, 400, "'status' is absent or cancelled");
		return;
	}
	if (!cancel &&
	    (!kind || (strcmp(kind, "child") && strcmp(kind, "staff")) || !s_str(body, "ref") ||
	     !s_date_ok(from) || !s_date_ok(to) || strcmp(from, to) > 0)) {
		json_decref(body);
		s_error(res, 400,
			"an absence needs 'kind' (child or staff), 'ref', and 'from' <= "
			"'to' (YYYY-MM-DD)");
		return;
	}
	if (absence_kind && !s_staff_kind_ok(absence_kind)) {
		json_decref(body);
		s_error(res, 400,
			"'absence_kind' is one of sick, child-sick, care-day, holiday, "
			"time-off, parental-leave, leave, other");
		return;
	}
	e = s_by_external_id(list, ext);
	if (e && s_stale(e, body)) {
		json_decref(body);
		s_json_reply(res, 200, json_incref(e));
		return;
	}
	sim_rfc3339_now(now);
	if (!e) {
		e = json_pack("{s:s, s:s}", "external_id", ext, "institution", inst->id);
		json_array_append_new(list, e);
		res->status = 201;
	} else {
		res->status = 200;
	}
	for (const char *const *k = (const char *const[]){ "kind", "absence_kind", "ref", "from",
							   "to", "source_event", NULL };
	     *k; k++)
		if (s_str(body, *k))
			json_object_set_new(e, *k, json_string(s_str(body, *k)));
	if (json_is_integer(json_object_get(body, "version")))
		json_object_set(e, "version", json_object_get(body, "version"));
	json_object_set_new(e, "status", json_string(cancel ? "cancelled" : "absent"));
	json_object_set_new(e, "updated", json_string(now));
	json_decref(body);
	s_json_reply(res, res->status, json_incref(e));
}

/* POST …/day and …/vacation-plan: a record keyed by external_id (posted again, it is
 * replaced). `kinds` are the record kinds the list takes. */
static void s_post_record(json_t *list, const char *const *kinds, const sim_request_t *req,
			  sim_response_t *res)
{
	json_t *body = s_body(req, res), *e;
	const char *ext = s_str(body, "external_id"), *kind = s_str(body, "kind");
	bool kind_ok = false;
	char now[40];

	if (!body)
		return;
	for (const char *const *k = kinds; kind && *k; k++)
		kind_ok |= !strcmp(*k, kind);
	if (!ext || !*ext || !kind_ok || !s_str(body, "child")) {
		json_decref(body);
		s_error(res, 400,
			"a record needs 'external_id', 'child' and a 'kind' this list "
			"takes (day: pickup, checkin, checkout; vacation-plan: vacation)");
		return;
	}
	if (!strcmp(kind, "vacation") &&
	    (!s_str(body, "survey") || !json_is_array(json_object_get(body, "days")))) {
		json_decref(body);
		s_error(res, 400, "a vacation answer needs 'survey' and 'days'");
		return;
	}
	sim_rfc3339_now(now);
	json_object_set_new(body, "updated", json_string(now));
	if ((e = s_by_external_id(list, ext))) {
		json_object_clear(e);
		json_object_update(e, body);
		res->status = 200;
	} else {
		json_array_append(list, body);
		res->status = 201;
	}
	s_json_reply(res, res->status, body);
}

/* /api/v1/institutions/<id>/<what>. */
static void s_institution(daycare_t *d, const sim_request_t *req, sim_response_t *res,
			  const char *rest)
{
	const char *slash = strchr(rest, '/');
	char id[128];
	const sim_institution_t *inst;
	bool get = !strcmp(req->method, "GET"), post = !strcmp(req->method, "POST");

	if (!slash || (size_t)(slash - rest) >= sizeof id) {
		s_error(res, 404, "no such resource");
		return;
	}
	snprintf(id, sizeof id, "%.*s", (int)(slash - rest), rest);
	if (!(inst = s_institution_find(id))) {
		s_error(res, 404, "unknown institution '%s'", id);
		return;
	}
	if (!strcmp(slash, "/notices")) {
		if (get)
			s_json_reply(
				res, 200,
				json_pack("{s:O}", "notices", s_list_of(d->notices, inst->id)));
		else if (post)
			s_post_notice(d, inst, req, res);
		else
			s_error(res, 405, "use GET or POST");
	} else if (!strcmp(slash, "/staffing")) {
		if (get)
			s_json_reply(
				res, 200,
				json_pack("{s:O}", "staffing", s_list_of(d->staffing, inst->id)));
		else if (post)
			s_post_staffing(d, inst, req, res);
		else
			s_error(res, 405, "use GET or POST");
	} else if (!strcmp(slash, "/day") || !strcmp(slash, "/vacation-plan")) {
		bool day = !strcmp(slash, "/day");
		json_t *list = s_list_of(day ? d->day : d->vacation, inst->id);
		static const char *const day_kinds[] = { "pickup", "checkin", "checkout", NULL };
		static const char *const plan_kinds[] = { "vacation", NULL };
		if (get)
			s_json_reply(res, 200,
				     json_pack("{s:O}", day ? "day" : "vacation-plan", list));
		else if (post)
			s_post_record(list, day ? day_kinds : plan_kinds, req, res);
		else
			s_error(res, 405, "use GET or POST");
	} else {
		s_error(res, 404, "no such resource");
	}
}

/* ---- the request handler ---------------------------------------------------------------------- */

static bool s_authorised(const daycare_t *d, const sim_request_t *req)
{
	if (req->bearer && !strcmp(req->bearer, d->token))
		return true;
	return d->user && d->password && req->user && req->password &&
	       !strcmp(req->user, d->user) && !strcmp(req->password, d->password);
}

static void s_route(sim_t *sim, daycare_t *d, const sim_request_t *req, sim_response_t *res)
{
	const char *p = req->path;

	if (!strcmp(p, "/api/v1/registrations")) {
		if (!strcmp(req->method, "GET"))
			s_list_registrations(d, req, res);
		else if (!strcmp(req->method, "POST"))
			s_post_registration(d, req, res);
		else
			s_error(res, 405, "use GET or POST");
	} else if (!strncmp(p, "/api/v1/registrations/", 22)) {
		s_confirmations(d, req, res, p + 22);
	} else if (!strcmp(p, "/api/v1/institutions")) {
		json_t *a = json_array();
		for (size_t i = 0; i < sim_n_institutions; i++)
			json_array_append_new(a,
					      json_pack("{s:s, s:s}", "id", sim_institutions[i].id,
							"name", sim_institutions[i].name));
		s_json_reply(res, 200, json_pack("{s:o}", "institutions", a));
	} else if (!strncmp(p, "/api/v1/institutions/", 21)) {
		s_institution(d, req, res, p + 21);
	} else {
		s_error(res, 404, "no such resource");
	}
	(void)sim;
}

/* Serves one request: authentication, then idempotent replay of a POST seen before, then
 * the API itself, remembering a POST's answer under its Idempotency-Key. */
static void s_handle(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	daycare_t *d = sim_state(sim);
	const char *key = sim_header(req, "Idempotency-Key");
	bool post = !strcmp(req->method, "POST");
	char *slot = NULL;
	json_t *seen;

	if (strncmp(req->path, "/api/", 5)) {
		s_error(res, 404, "no such resource");
		return;
	}
	if (!s_authorised(d, req)) {
		s_error(res, 401, "authentication required (bearer token or basic auth)");
		sim_reply_header(res, "WWW-Authenticate", "Bearer realm=\"daycare\"");
		return;
	}
	if (post && key && *key) {
		if (asprintf(&slot, "%s %s", req->path, key) < 0)
			slot = NULL;
		seen = slot ? json_object_get(d->idempotency, slot) : NULL;
		if (seen) {
			if (strcmp(s_str(seen, "request"), req->body)) {
				s_error(res, 422,
					"Idempotency-Key '%s' was used with another request", key);
			} else {
				sim_reply(res,
					  (int)json_integer_value(json_object_get(seen, "status")),
					  "application/json", s_str(seen, "body"), -1);
				sim_reply_header(res, "Idempotent-Replayed", "true");
			}
			free(slot);
			return;
		}
	}
	s_route(sim, d, req, res);
	if (slot && res->status < 500)
		json_object_set_new(d->idempotency, slot,
				    json_pack("{s:i, s:s, s:s}", "status", res->status, "body",
					      res->body ? res->body : "", "request", req->body));
	/* A stored notice whose answer is "lost": the client sees a 503 and must retry. */
	if (post && res->status == 201 && d->lose_notice_answers > 0 &&
	    strstr(req->path, "/notices")) {
		d->lose_notice_answers--;
		sim_log(sim, "notice stored, answering 503 as if the answer were lost");
		sim_reply(res, 503, "application/json", "{\"error\": \"gateway timeout\"}", -1);
		sim_reply_header(res, "Retry-After", "1");
	}
	free(slot);
}

/* Adds the morning's registrations that are due. */
static void s_tick(sim_t *sim)
{
	daycare_t *d = sim_state(sim);
	int64_t now = sim_now_ms();
	int burst = 0;

	if (d->rate_ms <= 0)
		return;
	while (now >= d->next_at && (!d->count || d->produced < d->count) && burst++ < 100) {
		json_t *r = s_script_next(d);
		d->produced++;
		d->next_at += d->rate_ms;
		sim_log(sim, "registration %s: %s for %s", s_str(r, "id"), s_str(r, "kind"),
			s_str(r, "child_id"));
	}
}

static int s_setup(sim_t *sim)
{
	static daycare_t d;
	int64_t initial = sim_setting_int(sim, "initial", 0);

	d.regs = json_array();
	d.notices = json_object();
	d.staffing = json_object();
	d.day = json_object();
	d.vacation = json_object();
	d.idempotency = json_object();
	d.confirmations = json_object();
	d.next_id = FIRST_ID;
	d.rate_ms = sim_setting_int(sim, "rate_ms", 0);
	d.count = sim_setting_int(sim, "count", 0);
	d.lose_notice_answers = sim_setting_int(sim, "lose_notice_answers", 0);
	d.token = sim_setting(sim, "token", DEFAULT_TOKEN);
	d.user = sim_setting(sim, "user", NULL);
	d.password = sim_setting(sim, "password", NULL);
	d.next_at = sim_now_ms() + d.rate_ms;
	if (d.rate_ms < 0 || initial < 0 || d.count < 0) {
		fprintf(stderr,
			"kanal-sim-daycare: rate_ms, initial and count must not be negative\n");
		return -1;
	}
	for (int64_t i = 0; i < initial; i++)
		s_script_next(&d);
	sim_set_state(sim, &d);
	return 0;
}

int main(int argc, char **argv)
{
	return sim_main(argc, argv,
			&(sim_def_t){ .name = "daycare",
				      .handle = s_handle,
				      .tick = s_tick,
				      .tick_ms = 20,
				      .setup = s_setup,
				      .garbage_type = "application/json",
				      .garbage_body =
					      "{\"registrations\": [{\"id\": \"1001\", \"kind\": "
					      "\"sick\", \"child_cpr\": \"1404214382\", "
					      "\"child_id\": \"chi" });
}
