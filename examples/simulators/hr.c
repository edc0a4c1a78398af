/*
 * examples/simulators/hr.c — kanal-sim-hr, a simulated municipal HR system that publishes
 * staff absence as an XML feed, the upstream of the `staff` connector (plugins/staff).
 *
 * No public absence feed exists in Danish municipal HR, so this simulator defines one in
 * the style HR systems use (XML, keyed on the employment identifier and the CPR number,
 * dates as DD.MM.YYYY); docs/plugins/staff.md specifies it so that a vendor can implement
 * it. The HR system keeps a change log: every registration, modification or cancellation
 * of an absence is one entry with a sequence number, and the absence's version goes up by
 * one with each change. The feed pages through the log:
 *
 *   GET  /hr/v1/absences?since=<cursor>&max=<n>   basic auth; the changes after cursor
 *   POST /hr/v1/absences                          add, modify or cancel one (JSON, below)
 *   POST /hr-sim/reset                            rebuild the log: new generation, every
 *                                                 absence once at its latest version, and
 *                                                 old cursors answered 410 Gone
 *   POST /hr-sim/raw                              the next feed GET answers this body once
 *
 * Settings: --set user=NAME --set password=SECRET (feed credentials; default kanal/kanal),
 * --set rate_ms=N (every N ms the tick registers the next change of a realistic day:
 * sickness, a child's first and second sick day, a care day, holiday in the main holiday
 * period, a sixth-week day, time off in lieu, leave, a modification to version 2 and a
 * cancellation; 0, the default, registers nothing by itself). The garbage fault answers
 * broken XML. Employees, their CPR numbers and departments come from population.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "population.h"
#include "sim.h"

#define HR_NS "urn:kanal:sim:hr:absence:1"
#define HR_MAX_PAGE 1000
#define HR_FIELD 64

/* One entry of the change log: the state of one absence after one change. */
typedef struct change {
	unsigned seq;
	char id[HR_FIELD];
	long version;
	bool cancel;
	char employment[HR_FIELD], cpr[HR_FIELD], department[HR_FIELD], code[HR_FIELD];
	char start[HR_FIELD], end[HR_FIELD]; /* as registered: DD.MM.YYYY (not checked) */
	char hours[HR_FIELD];                /* "" when a whole day */
	char changed[40];                    /* RFC 3339 */
} change_t;

typedef struct hr {
	change_t *log;
	size_t n, cap;
	unsigned generation; /* goes up with every rebuild; part of every cursor */
	unsigned next_id;    /* the number of the next absence id the simulator makes up */
	const char *user, *password;
	int64_t rate_ms, last_tick_ms;
	unsigned step;                               /* position in the day's script */
	char *raw_next;                              /* answer for the next feed GET, or NULL */
	char day_sick[HR_FIELD], day_care[HR_FIELD]; /* ids the script changes later */
} hr_t;

/* ---- small helpers ------------------------------------------------------------------------ */

static void s_copy(char *dst, const char *src)
{
	snprintf(dst, HR_FIELD, "%s", src ? src : "");
}

/* "DD.MM.YYYY" of today + offset_days. */
static void s_date(char *buf, int offset_days)
{
	time_t t = time(NULL) + (time_t)offset_days * 86400;
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, HR_FIELD, "%d.%m.%Y", &tm);
}

/* The date `days` after the first Monday of July of the next summer still ahead. */
static void s_summer(char *buf, int days)
{
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	if (tm.tm_mon >= 5) /* June or later: next year's summer */
		tm.tm_year++;
	tm.tm_mon = 6;
	tm.tm_mday = 1;
	tm.tm_hour = 12;
	tm.tm_min = tm.tm_sec = 0;
	tm.tm_isdst = -1;
	mktime(&tm);
	tm.tm_mday += (8 - tm.tm_wday) % 7 + days; /* to Monday, then on */
	mktime(&tm);
	strftime(buf, HR_FIELD, "%d.%m.%Y", &tm);
}

/* Appends s to a growing buffer with XML's five characters escaped. */
static void s_put_xml(FILE *out, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':
			fputs("&amp;", out);
			break;
		case '<':
			fputs("&lt;", out);
			break;
		case '>':
			fputs("&gt;", out);
			break;
		case '"':
			fputs("&quot;", out);
			break;
		case '\'':
			fputs("&apos;", out);
			break;
		default:
			fputc(*s, out);
		}
	}
}

/* The current state of absence id: its log entry of the highest version (the later one of
 * equal versions — a replayed old version does not change the state), or NULL. */
static const change_t *s_latest(const hr_t *hr, const char *id)
{
	const change_t *best = NULL;

	for (size_t i = 0; i < hr->n; i++)
		if (!strcmp(hr->log[i].id, id) && (!best || hr->log[i].version >= best->version))
			best = &hr->log[i];
	return best;
}

/* Appends c to the log with the next sequence number and the current time. Returns the
 * stored entry or NULL when out of memory. */
static change_t *s_append(hr_t *hr, const change_t *c)
{
	change_t *e;

	if (hr->n == hr->cap) {
		size_t cap = hr->cap ? hr->cap * 2 : 64;
		change_t *log = realloc(hr->log, cap * sizeof *log);
		if (!log)
			return NULL;
		hr->log = log;
		hr->cap = cap;
	}
	e = &hr->log[hr->n];
	*e = *c;
	e->seq = hr->n ? hr->log[hr->n - 1].seq + 1 : 1;
	sim_rfc3339_now(e->changed);
	hr->n++;
	return e;
}

/* Registers a change of absence `id` (NULL: a new absence with a made-up id). Fields left
 * NULL keep the absence's previous value; version <= 0 means previous + 1. Returns the
 * log entry or NULL with why filled. */
static const change_t *s_register(hr_t *hr, const char *id, long version, bool cancel,
				  const char *employment, const char *cpr, const char *department,
				  const char *code, const char *start, const char *end,
				  const char *hours, char *why, size_t why_size)
{
	const change_t *prev = id ? s_latest(hr, id) : NULL;
	const sim_employee_t *emp;
	change_t c;
	char made[HR_FIELD];

	memset(&c, 0, sizeof c);
	if (prev) {
		c = *prev;
	} else if (!id) {
		snprintf(made, sizeof made, "A-%u", hr->next_id++);
		id = made;
	}
	if (strlen(id) >= HR_FIELD) {
		snprintf(why, why_size, "id longer than %d characters", HR_FIELD - 1);
		return NULL;
	}
	s_copy(c.id, id);
	c.version = version > 0 ? version : (prev ? prev->version + 1 : 1);
	c.cancel = cancel;
	if (employment)
		s_copy(c.employment, employment);
	emp = sim_employee_find(c.employment);
	if (cpr)
		s_copy(c.cpr, cpr);
	else if (!prev && emp)
		s_copy(c.cpr, emp->cpr);
	if (department)
		s_copy(c.department, department);
	else if (!prev && emp)
		s_copy(c.department, emp->department);
	if (code)
		s_copy(c.code, code);
	if (start)
		s_copy(c.start, start);
	else if (!prev)
		s_date(c.start, 0);
	if (end)
		s_copy(c.end, end);
	else if (!prev)
		s_copy(c.end, c.start);
	if (hours)
		s_copy(c.hours, hours);
	if (!c.employment[0] || !c.cpr[0] || !c.department[0]) {
		snprintf(why, why_size,
			 "unknown employment '%s': give employment of the population "
			 "(E-1000 …) or cpr and department",
			 c.employment);
		return NULL;
	}
	if (!c.code[0]) {
		snprintf(why, why_size, "code missing (SYG, BARN1, FERIE, …)");
		return NULL;
	}
	return s_append(hr, &c);
}

/* ---- the feed ------------------------------------------------------------------------------ */

/* Checks basic auth against the settings; fills a 401 and returns false when it fails. */
static bool s_authorised(const hr_t *hr, const sim_request_t *req, sim_response_t *res)
{
	if (req->user && req->password && !strcmp(req->user, hr->user) &&
	    !strcmp(req->password, hr->password))
		return true;
	sim_reply(res, 401, "text/plain", "authentication required\n", -1);
	sim_reply_header(res, "WWW-Authenticate", "Basic realm=\"hr\"");
	return false;
}

/* GET /hr/v1/absences: the changes after `since`, at most `max`, as an hrAbsence document. */
static void s_feed(hr_t *hr, const sim_request_t *req, sim_response_t *res)
{
	const char *since = sim_query(req, "since"), *max_text = sim_query(req, "max");
	unsigned gen = 0, seq = 0, last;
	long max = max_text ? strtol(max_text, NULL, 10) : 100;
	size_t from, count = 0;
	char next[64], *body = NULL;
	size_t len = 0;
	FILE *out;
	int used = 0;

	if (!s_authorised(hr, req, res))
		return;
	if (hr->raw_next) {
		sim_reply_take(res, 200, "application/xml", hr->raw_next, strlen(hr->raw_next));
		hr->raw_next = NULL;
		return;
	}
	if (max < 1 || max > HR_MAX_PAGE) {
		sim_replyf(res, 400, "text/plain", "max must be 1 to %d\n", HR_MAX_PAGE);
		return;
	}
	last = hr->n ? hr->log[hr->n - 1].seq : 0;
	if (since && *since) {
		if (sscanf(since, "g%u.%u%n", &gen, &seq, &used) != 2 || since[used]) {
			sim_replyf(res, 400, "text/plain",
				   "since: '%s' is not a cursor of this feed\n", since);
			return;
		}
		if (gen != hr->generation || seq > last) {
			sim_replyf(res, 410, "text/plain",
				   "cursor %s is gone: the change log was rebuilt (generation %u); "
				   "read again from the beginning, without since\n",
				   since, hr->generation);
			return;
		}
	}
	for (from = 0; from < hr->n && hr->log[from].seq <= seq; from++)
		;
	if (!(out = open_memstream(&body, &len))) {
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
		return;
	}
	for (size_t i = from; i < hr->n && count < (size_t)max; i++, count++)
		seq = hr->log[i].seq;
	snprintf(next, sizeof next, "g%u.%u", hr->generation, seq);
	fprintf(out,
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<hrAbsence xmlns=\"%s\" cursor=\"",
		HR_NS);
	s_put_xml(out, since ? since : "");
	fprintf(out, "\" next=\"%s\" more=\"%s\">\n", next,
		from + count < hr->n ? "true" : "false");
	for (size_t i = from; i < from + count; i++) {
		const change_t *c = &hr->log[i];
		fputs("  <absence id=\"", out);
		s_put_xml(out, c->id);
		fprintf(out, "\" version=\"%ld\" action=\"%s\" changed=\"%s\">\n", c->version,
			c->cancel ? "cancel" : "upsert", c->changed);
#define HR_ELEMENT(name, value)                                                                    \
	do {                                                                                       \
		fputs("    <" name ">", out);                                                      \
		s_put_xml(out, value);                                                             \
		fputs("</" name ">\n", out);                                                       \
	} while (0)
		HR_ELEMENT("employment", c->employment);
		HR_ELEMENT("cpr", c->cpr);
		HR_ELEMENT("department", c->department);
		HR_ELEMENT("code", c->code);
		HR_ELEMENT("start", c->start);
		HR_ELEMENT("end", c->end);
		if (c->hours[0])
			HR_ELEMENT("hours", c->hours);
#undef HR_ELEMENT
		fputs("  </absence>\n", out);
	}
	fputs("</hrAbsence>\n", out);
	if (fclose(out) != 0) {
		free(body);
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
		return;
	}
	sim_reply_take(res, 200, "application/xml", body, len);
}

/* A JSON member as text: strings as they are, numbers printed; NULL when absent. */
static const char *s_member(json_t *j, const char *name, char *buf, size_t size)
{
	json_t *v = json_object_get(j, name);

	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v)) {
		snprintf(buf, size, "%lld", (long long)json_integer_value(v));
		return buf;
	}
	if (json_is_real(v)) {
		snprintf(buf, size, "%g", json_real_value(v));
		return buf;
	}
	return NULL;
}

/* POST /hr/v1/absences: registers one change given as JSON. */
static void s_post(sim_t *sim, hr_t *hr, const sim_request_t *req, sim_response_t *res)
{
	json_error_t jerr;
	json_t *j = json_loadb(req->body, req->body_len, 0, &jerr);
	const char *action, *id;
	char hours[32], why[256];
	const change_t *c;
	long version;

	if (!json_is_object(j)) {
		sim_replyf(res, 400, "text/plain", "want a JSON object: %s\n",
			   j ? "not an object" : jerr.text);
		json_decref(j);
		return;
	}
	action = json_string_value(json_object_get(j, "action"));
	id = json_string_value(json_object_get(j, "id"));
	version = (long)json_integer_value(json_object_get(j, "version"));
	if (action && strcmp(action, "upsert") && strcmp(action, "cancel")) {
		sim_reply(res, 400, "text/plain", "action must be upsert or cancel\n", -1);
		json_decref(j);
		return;
	}
	if (action && !strcmp(action, "cancel") && (!id || !s_latest(hr, id))) {
		sim_reply(res, 404, "text/plain", "cancel: no absence with that id\n", -1);
		json_decref(j);
		return;
	}
	c = s_register(hr, id, version, action && !strcmp(action, "cancel"),
		       json_string_value(json_object_get(j, "employment")),
		       json_string_value(json_object_get(j, "cpr")),
		       json_string_value(json_object_get(j, "department")),
		       json_string_value(json_object_get(j, "code")),
		       json_string_value(json_object_get(j, "start")),
		       json_string_value(json_object_get(j, "end")),
		       s_member(j, "hours", hours, sizeof hours), why, sizeof why);
	json_decref(j);
	if (!c) {
		sim_replyf(res, 400, "text/plain", "%s\n", why);
		return;
	}
	sim_log(sim, "absence %s version %ld: %s %s %s-%s", c->id, c->version,
		c->cancel ? "cancel" : "upsert", c->code, c->start, c->end);
	{
		char seq[32], *text;
		json_t *answer;

		snprintf(seq, sizeof seq, "g%u.%u", hr->generation, c->seq);
		answer = json_pack("{s:s, s:I, s:s}", "id", c->id, "version",
				   (json_int_t)c->version, "seq", seq);
		text = answer ? json_dumps(answer, 0) : NULL;
		json_decref(answer);
		if (text)
			sim_reply_take(res, 201, "application/json", text, strlen(text));
		else
			sim_reply(res, 500, "text/plain", "out of memory\n", -1);
	}
}

/* POST /hr-sim/reset: the HR system's change log is rebuilt, as after a restore or a
 * migration: a new generation holds every absence once, at its latest version, numbered
 * from 1; cursors of the old generation are answered 410 Gone. */
static void s_reset(sim_t *sim, hr_t *hr, sim_response_t *res)
{
	change_t *log = calloc(hr->n ? hr->n : 1, sizeof *log);
	size_t n = 0;

	if (!log) {
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
		return;
	}
	for (size_t i = 0; i < hr->n; i++) {
		const change_t *latest = s_latest(hr, hr->log[i].id);
		bool have = false;
		for (size_t k = 0; k < n && !have; k++)
			have = !strcmp(log[k].id, latest->id);
		if (!have) {
			log[n] = *latest;
			log[n].seq = (unsigned)n + 1;
			n++;
		}
	}
	free(hr->log);
	hr->log = log;
	hr->n = n;
	hr->cap = n ? n : 1;
	hr->generation++;
	sim_log(sim, "change log rebuilt: generation %u, %zu absences", hr->generation, n);
	sim_replyf(res, 200, "application/json", "{\"generation\": %u, \"absences\": %zu}\n",
		   hr->generation, n);
}

static void s_handle(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	hr_t *hr = sim_state(sim);
	bool get = !strcmp(req->method, "GET"), post = !strcmp(req->method, "POST");

	if (!strcmp(req->path, "/hr/v1/absences") && get) {
		s_feed(hr, req, res);
	} else if (!strcmp(req->path, "/hr/v1/absences") && post) {
		s_post(sim, hr, req, res);
	} else if (!strcmp(req->path, "/hr-sim/reset") && post) {
		s_reset(sim, hr, res);
	} else if (!strcmp(req->path, "/hr-sim/raw") && post) {
		free(hr->raw_next);
		hr->raw_next = strdup(req->body);
		sim_reply(res, hr->raw_next ? 200 : 500, "text/plain",
			  hr->raw_next ? "the next feed answer is set\n" : "out of memory\n", -1);
	} else if (!strcmp(req->path, "/hr/v1/absences") || !strcmp(req->path, "/hr-sim/reset") ||
		   !strcmp(req->path, "/hr-sim/raw")) {
		sim_reply(res, 405, "text/plain", "method not allowed\n", -1);
	} else {
		sim_reply(res, 404, "text/plain", "no such resource\n", -1);
	}
}

/* The tick: every rate_ms the next change of a realistic day in a municipal daycare. */
static void s_tick(sim_t *sim)
{
	hr_t *hr = sim_state(sim);
	const change_t *c = NULL;
	char a[HR_FIELD], b[HR_FIELD], why[256];
	int64_t now = sim_now_ms();

	if (hr->rate_ms <= 0 || now - hr->last_tick_ms < hr->rate_ms)
		return;
	hr->last_tick_ms = now;
	switch (hr->step++ % 11) {
	case 0: /* a pedagogue calls in sick this morning */
		s_date(a, 0);
		c = s_register(hr, NULL, 0, false, "E-1001", NULL, NULL, "SYG", a, a, NULL, why,
			       sizeof why);
		if (c)
			s_copy(hr->day_sick, c->id);
		break;
	case 1: /* a child's first sick day */
		s_date(a, 0);
		c = s_register(hr, NULL, 0, false, "E-2001", NULL, NULL, "BARN1", a, a, NULL, why,
			       sizeof why);
		break;
	case 2: /* a care day tomorrow */
		s_date(a, 1);
		c = s_register(hr, NULL, 0, false, "E-1002", NULL, NULL, "OMSORG", a, a, NULL, why,
			       sizeof why);
		if (c)
			s_copy(hr->day_care, c->id);
		break;
	case 3: /* three weeks in July: the main holiday */
		s_summer(a, 0);
		s_summer(b, 18);
		c = s_register(hr, NULL, 0, false, "E-2002", NULL, NULL, "FERIE", a, b, NULL, why,
			       sizeof why);
		break;
	case 4: /* the child is still sick: second day */
		s_date(a, 1);
		c = s_register(hr, NULL, 0, false, "E-2001", NULL, NULL, "BARN2", a, a, NULL, why,
			       sizeof why);
		break;
	case 5: /* a day of the sixth holiday week in a fortnight */
		s_date(a, 14);
		c = s_register(hr, NULL, 0, false, "E-1000", NULL, NULL, "FERIEFRI", a, a, NULL,
			       why, sizeof why);
		break;
	case 6: /* the sick pedagogue stays home two more days: version 2 */
		s_date(b, 2);
		if (hr->day_sick[0])
			c = s_register(hr, hr->day_sick, 0, false, NULL, NULL, NULL, NULL, NULL, b,
				       NULL, why, sizeof why);
		break;
	case 7: /* the care day is not needed after all */
		if (hr->day_care[0])
			c = s_register(hr, hr->day_care, 0, true, NULL, NULL, NULL, NULL, NULL,
				       NULL, NULL, why, sizeof why);
		break;
	case 8: /* leaving early: time off in lieu, part of the day */
		s_date(a, 0);
		c = s_register(hr, NULL, 0, false, "E-2002", NULL, NULL, "AFSP", a, a, "3.5", why,
			       sizeof why);
		break;
	case 9: /* a week of holiday in the autumn break */
		s_date(a, 21);
		s_date(b, 25);
		c = s_register(hr, NULL, 0, false, "E-1002", NULL, NULL, "FERIE", a, b, NULL, why,
			       sizeof why);
		break;
	default: /* a day of other leave next month */
		s_date(a, 30);
		c = s_register(hr, NULL, 0, false, "E-1000", NULL, NULL, "ORLOV", a, a, NULL, why,
			       sizeof why);
		break;
	}
	if (c)
		sim_log(sim, "tick: absence %s version %ld %s %s", c->id, c->version,
			c->cancel ? "cancelled" : "registered", c->code);
}

static int s_setup(sim_t *sim)
{
	static hr_t hr;

	hr.generation = 1;
	hr.next_id = 1000;
	hr.user = sim_setting(sim, "user", "kanal");
	hr.password = sim_setting(sim, "password", "kanal");
	hr.rate_ms = sim_setting_int(sim, "rate_ms", 0);
	if (hr.rate_ms < 0) {
		fprintf(stderr, "kanal-sim-hr: rate_ms must be 0 (off) or more\n");
		return -1;
	}
	hr.last_tick_ms = sim_now_ms();
	sim_set_state(sim, &hr);
	return 0;
}

int main(int argc, char **argv)
{
	return sim_main(argc, argv,
			&(sim_def_t){
				.name = "hr",
				.handle = s_handle,
				.tick = s_tick,
				.tick_ms = 50,
				.setup = s_setup,
				.garbage_type = "application/xml",
				.garbage_body =
					"<?xml version=\"1.0\"?>\n<hrAbsence xmlns=\"" HR_NS
					"\" next=\"g1.9\"><absence id=\"A-1\" version=\"1\" "
					"action=\"upsert\"><employment>E-1001</employ",
			});
}
