/*
 * tests/integration/test_calendar.c — the calendar connector (plugins/calendar) against a
 * real CalDAV server (Radicale, tests/util/radicale.h) through the real kanald: create,
 * update, cancel in both modes, a concurrent change on the server (412), a UID conflict
 * (409), wrong credentials and rights (401, 403), an outage (RETRY, then delivered), the
 * mapping of a child's absence to the custody holders' calendars and of HR absences to the
 * employee's, an appointment letter's entry (the shipped route appointment-to-calendar,
 * with the simulated CPR register) created, moved and cancelled, and that no PUT ever goes
 * to a collection URL. The iCalendar text itself
 * (CRLF, folding, escaping) is checked byte for byte through the SDK harness against a
 * small capturing HTTP server, because Radicale re-serialises what it stores.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <microhttpd.h>
#include <kanal/harness.h>
#include <kanal/kanal.h>

#include "kanald.h"
#include "radicale.h"
#include "shipped.h"
#include "test.h"
#include "testca.h"
#include "upstream.h"

#define WAIT 10000 /* ms: the bound of every wait */

static const radicale_user_t s_users[] = {
	{ "kanal", "kanal-secret-pw", false },
	{ "alice", "alice-pw", true },
	{ NULL, NULL, false },
};

/* Synthetic people (examples/simulators/population.c): Ida (1404214382) has two custody
 * holders, Sofie 2207884566 and Mads 1503851233; Noah (0903225017) only his mother Maja
 * 1111903128 — his father Lars 0506872215 has no custody. */
#define SOFIE "2207884566"
#define MADS "1503851233"
#define MAJA "1111903128"
#define LARS "0506872215"

/* ---- fixtures ----------------------------------------------------------------------------- */

typedef struct fixture {
	radicale_t *r;
	kd_t *kd;
	void *sub;
	char *seen; /* "delivered" happenings read so far: ids may complete in any order */
} fixture_t;

static const char *s_routes =
	"routes:\n"
	"  - name: to-calendar\n"
	"    to: cal\n"
	"    retry: { max_attempts: 60, backoff: 100ms, max_backoff: 300ms }\n";

/* Starts Radicale and kanald with one calendar instance `cal` (extra options appended to
 * its options block) plus `more_instances`, and `routes` (NULL: everything to cal). */
static bool s_setup(fixture_t *f, const char *tag, const char *extra_options,
		    const char *more_instances, const char *routes)
{
	char *instances, *conf, *pw;

	memset(f, 0, sizeof *f);
	f->r = radicale_start(s_users);
	if (!f->r)
		return false;
	if (asprintf(&instances,
		     "  - name: cal\n    plugin: calendar\n    options:\n"
		     "      calendar_url: '%s/{owner}/kanal/'\n"
		     "      user: kanal\n"
		     "      password_file: '@DIR@/kanal.pw'\n"
		     "      timeout: 2s\n"
		     "%s%s",
		     f->r->url, extra_options ? extra_options : "",
		     more_instances ? more_instances : "") < 0)
		return false;
	conf = kd_config(instances, NULL);
	free(instances);
	f->kd = kd_prepare(tag, conf, routes ? routes : s_routes);
	free(conf);
	pw = test_write_file(f->kd->dir, "kanal.pw", "kanal-secret-pw\n");
	chmod(pw, 0600);
	free(pw);
	if (kd_launch(f->kd) != 0) {
		char *log = kd_log(f->kd);
		fprintf(stderr, "kanald did not start:\n%s\n", log ? log : "");
		free(log);
		kd_destroy(&f->kd);
		radicale_stop(&f->r);
		return false;
	}
	f->sub = kd_subscribe(f->kd, "");
	return true;
}

static void s_teardown(fixture_t *f)
{
	if (f->sub)
		kd_unsubscribe(&f->sub);
	if (f->kd) {
		if (f->kd->pid > 0)
			CU_ASSERT_EQUAL(kd_stop(f->kd, SIGTERM, WAIT), 0);
		{
			char *log = kd_log(f->kd);
			CU_ASSERT(!kd_has_clear_cpr(log));
			free(log);
		}
		kd_destroy(&f->kd);
	}
	radicale_stop(&f->r);
	free(f->seen);
	f->seen = NULL;
}

/* Sends one event through the gateway; asserts it is accepted. */
static void s_send(fixture_t *f, const char *id, const char *type, const char *data)
{
	char *json = kd_event("test", id, type, data);

	CU_ASSERT(json && kd_send_event(f->kd, json, "accepted", WAIT, NULL));
	free(json);
}

/* Waits until the event `id` was delivered to a calendar instance. Deliveries to several
 * instances finish in any order, so every "delivered" happening read is kept. */
static bool s_delivered(fixture_t *f, const char *id)
{
	char needle[128], topic[256];
	int64_t deadline = kanal_now_ms() + WAIT;

	snprintf(needle, sizeof needle, "\"%s\"", id);
	while (!(f->seen && strstr(f->seen, needle))) {
		char *payload = NULL, *grown;
		int64_t left = deadline - kanal_now_ms();
		if (left <= 0 || kd_next(f->sub, topic, sizeof topic, &payload, (int)left) != 0) {
			fprintf(stderr, "event %s was not delivered\n", id);
			return false;
		}
		if (!strncmp(topic, "delivered ", 10) && payload &&
		    asprintf(&grown, "%s%s\n", f->seen ? f->seen : "", payload) > 0) {
			free(f->seen);
			f->seen = grown;
		}
		free(payload);
	}
	return true;
}

/* Waits until the dead-letter store holds the event `id`; returns the dlq.list reply. */
static char *s_dead(fixture_t *f, const char *id)
{
	char needle[128];

	snprintf(needle, sizeof needle, "\"event_id\":\"%s\"", id);
	for (int waited = 0; waited < WAIT; waited += 50) {
		char *reply = kd_admin(f->kd, "{\"cmd\":\"dlq.list\"}", WAIT);
		if (reply && strstr(reply, needle))
			return reply;
		free(reply);
		usleep(50 * 1000);
	}
	fprintf(stderr, "event %s did not reach the dead letters\n", id);
	return NULL;
}

/* GETs a resource from Radicale as the service user, its folded lines joined again. */
static char *s_get(fixture_t *f, const char *path, char **etag)
{
	char *body = NULL;
	long st = radicale_request(f->r, "kanal", "GET", path, NULL, NULL, &body, etag);
	char *out, *o;

	if (st != 200) {
		free(body);
		return NULL;
	}
	/* Unfold (RFC 5545 3.1): a line break followed by a blank continues the line. */
	out = o = malloc(strlen(body) + 1);
	for (const char *p = body; *p; p++) {
		if (p[0] == '\r' && p[1] == '\n' && (p[2] == ' ' || p[2] == '\t')) {
			p += 2;
			continue;
		}
		if (p[0] == '\n' && (p[1] == ' ' || p[1] == '\t')) {
			p += 1;
			continue;
		}
		*o++ = *p;
	}
	*o = '\0';
	free(body);
	return out;
}

static bool s_has(const char *text, const char *needle)
{
	bool yes = text && strstr(text, needle);

	if (!yes)
		fprintf(stderr, "expected '%s' in:\n%s\n", needle, text ? text : "(nothing)");
	return yes;
}

static size_t s_count(fixture_t *f, const char *collection)
{
	size_t n = 0;
	char *list = radicale_list(f->r, "kanal", collection, &n);

	free(list);
	return n;
}

/* ---- create, update, cancel --------------------------------------------------------------- */

static void test_upsert_creates_all_day_and_timed_events(void)
{
	fixture_t f;
	char *ics, *list;
	size_t n;

	CU_ASSERT_FATAL(s_setup(&f, "cal-create", NULL, NULL, NULL));
	s_send(&f, "u-1", "calendar.event.upsert",
	       "{\"owner\":\"E-1\",\"uid\":\"kursus-1\",\"summary\":\"Kursus\","
	       "\"start\":\"2026-03-02\",\"end\":\"2026-03-04\",\"description\":\"Dag 1 og 2\"}");
	s_send(&f, "u-2", "calendar.event.upsert",
	       "{\"owner\":\"E-1\",\"uid\":\"moede-1\",\"summary\":\"Møde\","
	       "\"start\":\"2026-03-02T08:00:00+01:00\",\"end\":\"2026-03-02T09:30:00+01:00\"}");
	CU_ASSERT(s_delivered(&f, "u-1"));
	CU_ASSERT(s_delivered(&f, "u-2"));
	/* The calendar was made (MKCALENDAR) and holds the two events under UID names. */
	list = radicale_list(f.r, "kanal", "/E-1/kanal/", &n);
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT(s_has(list, "kursus-1.ics\n"));
	CU_ASSERT(s_has(list, "moede-1.ics\n"));
	free(list);
	ics = s_get(&f, "/E-1/kanal/kursus-1.ics", NULL);
	CU_ASSERT(s_has(ics, "UID:kursus-1"));
	CU_ASSERT(s_has(ics, "DTSTART;VALUE=DATE:20260302"));
	CU_ASSERT(s_has(ics, "DTEND;VALUE=DATE:20260304")); /* exclusive end, as sent */
	CU_ASSERT(s_has(ics, "SUMMARY:Kursus"));
	CU_ASSERT(s_has(ics, "DESCRIPTION:Dag 1 og 2"));
	CU_ASSERT(s_has(ics, "SEQUENCE:0"));
	CU_ASSERT(s_has(ics, "DTSTAMP:"));
	CU_ASSERT_PTR_NULL(ics ? strstr(ics, "METHOD") : "");
	free(ics);
	/* A timed event is stored in UTC. */
	ics = s_get(&f, "/E-1/kanal/moede-1.ics", NULL);
	CU_ASSERT(s_has(ics, "DTSTART:20260302T070000Z"));
	CU_ASSERT(s_has(ics, "DTEND:20260302T083000Z"));
	free(ics);
	s_teardown(&f);
}

static void test_upsert_again_updates_one_resource(void)
{
	fixture_t f;
	char *ics;

	CU_ASSERT_FATAL(s_setup(&f, "cal-update", NULL, NULL, NULL));
	s_send(&f, "v-1", "calendar.event.upsert",
	       "{\"owner\":\"E-2\",\"uid\":\"kursus-2\",\"summary\":\"Kursus\","
	       "\"start\":\"2026-03-02\",\"end\":\"2026-03-03\"}");
	CU_ASSERT(s_delivered(&f, "v-1"));
	s_send(&f, "v-2", "calendar.event.upsert",
	       "{\"owner\":\"E-2\",\"uid\":\"kursus-2\",\"summary\":\"Kursus (flyttet)\","
	       "\"start\":\"2026-03-09\",\"end\":\"2026-03-10\"}");
	CU_ASSERT(s_delivered(&f, "v-2"));
	ics = s_get(&f, "/E-2/kanal/kursus-2.ics", NULL);
	CU_ASSERT(s_has(ics, "SUMMARY:Kursus (flyttet)"));
	CU_ASSERT(s_has(ics, "DTSTART;VALUE=DATE:20260309"));
	CU_ASSERT(s_has(ics, "SEQUENCE:1"));
	free(ics);
	/* The same content once more (a replay under a new id) changes nothing. */
	s_send(&f, "v-3", "calendar.event.upsert",
	       "{\"owner\":\"E-2\",\"uid\":\"kursus-2\",\"summary\":\"Kursus (flyttet)\","
	       "\"start\":\"2026-03-09\",\"end\":\"2026-03-10\"}");
	CU_ASSERT(s_delivered(&f, "v-3"));
	ics = s_get(&f, "/E-2/kanal/kursus-2.ics", NULL);
	CU_ASSERT(s_has(ics, "SEQUENCE:1"));
	free(ics);
	CU_ASSERT_EQUAL(s_count(&f, "/E-2/kanal/"), 1);
	s_teardown(&f);
}

static void test_cancel_by_status_and_by_delete(void)
{
	const char *more = "  - name: cal-delete\n    plugin: calendar\n    options:\n"
			   "      calendar_url: '%s/{owner}/kanal/'\n"
			   "      user: kanal\n      password_file: '@DIR@/kanal.pw'\n"
			   "      cancel_mode: delete\n";
	const char *routes = "routes:\n"
			     "  - name: by-status\n"
			     "    match: { where: 'data.owner == \"S-1\"' }\n"
			     "    to: cal\n"
			     "  - name: by-delete\n"
			     "    match: { where: 'data.owner == \"D-1\"' }\n"
			     "    to: cal-delete\n";
	fixture_t f;
	char *inst, *ics;

	/* Two calendar instances, one per cancel mode; both need Radicale's URL. */
	memset(&f, 0, sizeof f);
	f.r = radicale_start(s_users);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f.r);
	{
		char *instances, *conf, *pw;
		CU_ASSERT_FATAL(asprintf(&inst, more, f.r->url) > 0);
		CU_ASSERT_FATAL(asprintf(&instances,
					 "  - name: cal\n    plugin: calendar\n    options:\n"
					 "      calendar_url: '%s/{owner}/kanal/'\n"
					 "      user: kanal\n"
					 "      password_file: '@DIR@/kanal.pw'\n%s",
					 f.r->url, inst) > 0);
		conf = kd_config(instances, NULL);
		f.kd = kd_prepare("cal-cancel", conf, routes);
		pw = test_write_file(f.kd->dir, "kanal.pw", "kanal-secret-pw\n");
		chmod(pw, 0600);
		free(pw);
		free(conf);
		free(instances);
		free(inst);
		CU_ASSERT_EQUAL_FATAL(kd_launch(f.kd), 0);
		f.sub = kd_subscribe(f.kd, "");
	}
	s_send(&f, "c-1", "calendar.event.upsert",
	       "{\"owner\":\"S-1\",\"uid\":\"tur-1\",\"summary\":\"Tur\","
	       "\"start\":\"2026-05-01\",\"end\":\"2026-05-02\"}");
	s_send(&f, "c-2", "calendar.event.upsert",
	       "{\"owner\":\"D-1\",\"uid\":\"tur-2\",\"summary\":\"Tur\","
	       "\"start\":\"2026-05-01\",\"end\":\"2026-05-02\"}");
	CU_ASSERT(s_delivered(&f, "c-1"));
	CU_ASSERT(s_delivered(&f, "c-2"));
	s_send(&f, "c-3", "calendar.event.cancel", "{\"owner\":\"S-1\",\"uid\":\"tur-1\"}");
	s_send(&f, "c-4", "calendar.event.cancel", "{\"owner\":\"D-1\",\"uid\":\"tur-2\"}");
	CU_ASSERT(s_delivered(&f, "c-3"));
	CU_ASSERT(s_delivered(&f, "c-4"));
	/* status: still there, cancelled, SEQUENCE + 1. */
	ics = s_get(&f, "/S-1/kanal/tur-1.ics", NULL);
	CU_ASSERT(s_has(ics, "STATUS:CANCELLED"));
	CU_ASSERT(s_has(ics, "SEQUENCE:1"));
	free(ics);
	/* delete: gone. */
	CU_ASSERT_EQUAL(radicale_request(f.r, "kanal", "GET", "/D-1/kanal/tur-2.ics", NULL, NULL,
					 NULL, NULL),
			404);
	CU_ASSERT_EQUAL(s_count(&f, "/D-1/kanal/"), 0);
	/* Cancelling again, or something never created, is fine (idempotent). */
	s_send(&f, "c-5", "calendar.event.cancel", "{\"owner\":\"S-1\",\"uid\":\"tur-1\"}");
	s_send(&f, "c-6", "calendar.event.cancel", "{\"owner\":\"D-1\",\"uid\":\"tur-2\"}");
	s_send(&f, "c-7", "calendar.event.cancel", "{\"owner\":\"D-1\",\"uid\":\"never\"}");
	CU_ASSERT(s_delivered(&f, "c-5"));
	CU_ASSERT(s_delivered(&f, "c-6"));
	CU_ASSERT(s_delivered(&f, "c-7"));
	ics = s_get(&f, "/S-1/kanal/tur-1.ics", NULL);
	CU_ASSERT(s_has(ics, "SEQUENCE:1"));
	free(ics);
	s_teardown(&f);
}

/* ---- conflicts ---------------------------------------------------------------------------- */

static void test_concurrent_change_is_reread_not_lost(void)
{
	fixture_t f;
	char *ics, *etag = NULL, *changed, *log;

	CU_ASSERT_FATAL(s_setup(&f, "cal-412", NULL, NULL, NULL));
	s_send(&f, "k-1", "calendar.event.upsert",
	       "{\"owner\":\"E-4\",\"uid\":\"vagt-1\",\"summary\":\"Vagt\","
	       "\"start\":\"2026-04-01\",\"end\":\"2026-04-02\"}");
	CU_ASSERT(s_delivered(&f, "k-1"));
	/* Someone changes the event on the server in between: a category and SEQUENCE 5. */
	ics = s_get(&f, "/E-4/kanal/vagt-1.ics", &etag);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ics);
	CU_ASSERT_PTR_NOT_NULL_FATAL(etag);
	free(ics);
	changed = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
		  "UID:vagt-1\r\nDTSTAMP:20260301T100000Z\r\nDTSTART;VALUE=DATE:20260401\r\n"
		  "DTEND;VALUE=DATE:20260402\r\nSUMMARY:Vagt\r\nCATEGORIES:Privat\r\n"
		  "SEQUENCE:5\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
	{
		char cond[256];
		const char *headers[] = { cond, NULL };
		snprintf(cond, sizeof cond, "If-Match: %s", etag);
		CU_ASSERT_EQUAL(radicale_request(f.r, "kanal", "PUT", "/E-4/kanal/vagt-1.ics",
						 headers, changed, NULL, NULL),
				201);
	}
	free(etag);
	/* kanal's next update meets 412, re-reads and merges: both changes survive. */
	s_send(&f, "k-2", "calendar.event.upsert",
	       "{\"owner\":\"E-4\",\"uid\":\"vagt-1\",\"summary\":\"Vagt (aflyst kl. 12)\","
	       "\"start\":\"2026-04-01\",\"end\":\"2026-04-02\"}");
	CU_ASSERT(s_delivered(&f, "k-2"));
	ics = s_get(&f, "/E-4/kanal/vagt-1.ics", NULL);
	CU_ASSERT(s_has(ics, "SUMMARY:Vagt (aflyst kl. 12)"));
	CU_ASSERT(s_has(ics, "CATEGORIES:Privat"));
	CU_ASSERT(s_has(ics, "SEQUENCE:6"));
	free(ics);
	CU_ASSERT_EQUAL(s_count(&f, "/E-4/kanal/"), 1);
	log = kd_log(f.kd);
	CU_ASSERT(s_has(log, "changed on the server since kanal wrote it (412)"));
	free(log);
	s_teardown(&f);
}

static void test_uid_conflict_is_rejected_with_the_reason(void)
{
	fixture_t f;
	char *dead, *ics;
	const char *other = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
			    "BEGIN:VEVENT\r\nUID:dup-1\r\nDTSTAMP:20260301T100000Z\r\n"
			    "DTSTART;VALUE=DATE:20260401\r\nSUMMARY:Andet program\r\n"
			    "END:VEVENT\r\nEND:VCALENDAR\r\n";

	CU_ASSERT_FATAL(s_setup(&f, "cal-409", NULL, NULL, NULL));
	/* The UID already lives in another resource name, made by another client. */
	CU_ASSERT_EQUAL_FATAL(radicale_mkcalendar(f.r, "kanal", "/E-9/kanal/"), 0);
	CU_ASSERT_EQUAL_FATAL(radicale_request(f.r, "kanal", "PUT", "/E-9/kanal/other-name.ics",
					       NULL, other, NULL, NULL),
			      201);
	s_send(&f, "d-1", "calendar.event.upsert",
	       "{\"owner\":\"E-9\",\"uid\":\"dup-1\",\"summary\":\"Kursus\","
	       "\"start\":\"2026-04-01\",\"end\":\"2026-04-02\"}");
	dead = s_dead(&f, "d-1");
	CU_ASSERT(s_has(dead, "no-uid-conflict"));
	CU_ASSERT(s_has(dead, "UID 'dup-1' already belongs to another resource"));
	CU_ASSERT(s_has(dead, "\"reason\":\"rejected\""));
	free(dead);
	/* The other client's event is untouched, and nothing was added. */
	ics = s_get(&f, "/E-9/kanal/other-name.ics", NULL);
	CU_ASSERT(s_has(ics, "SUMMARY:Andet program"));
	free(ics);
	CU_ASSERT_EQUAL(s_count(&f, "/E-9/kanal/"), 1);
	s_teardown(&f);
}

/* ---- credentials, rights, outage ----------------------------------------------------------- */

static void test_wrong_password_and_missing_rights_are_rejected(void)
{
	const char *routes = "routes:\n"
			     "  - name: bad-password\n"
			     "    match: { where: 'data.owner == \"P-1\"' }\n"
			     "    to: cal\n"
			     "  - name: no-rights\n"
			     "    match: { where: 'data.owner == \"bob\"' }\n"
			     "    to: as-alice\n";
	fixture_t f;
	char *more, *dead;
	radicale_t *r = radicale_start(s_users);

	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_FATAL(asprintf(&more,
				 "  - name: as-alice\n    plugin: calendar\n    options:\n"
				 "      calendar_url: '%s/{owner}/kanal/'\n"
				 "      user: alice\n      password: alice-pw\n",
				 r->url) > 0);
	memset(&f, 0, sizeof f);
	f.r = r;
	{
		char *instances, *conf;
		CU_ASSERT_FATAL(asprintf(&instances,
					 "  - name: cal\n    plugin: calendar\n    options:\n"
					 "      calendar_url: '%s/{owner}/kanal/'\n"
					 "      user: kanal\n      password: not-the-password\n%s",
					 r->url, more) > 0);
		conf = kd_config(instances, NULL);
		f.kd = kd_start("cal-auth", conf, routes);
		free(conf);
		free(instances);
	}
	free(more);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f.kd);
	f.sub = kd_subscribe(f.kd, "");
	s_send(&f, "a-1", "calendar.event.upsert",
	       "{\"owner\":\"P-1\",\"uid\":\"x-1\",\"summary\":\"Kursus\","
	       "\"start\":\"2026-04-01\",\"end\":\"2026-04-02\"}");
	dead = s_dead(&f, "a-1");
	CU_ASSERT(s_has(dead, "HTTP 401"));
	CU_ASSERT(s_has(dead, "user 'kanal'"));
	CU_ASSERT_PTR_NULL(dead ? strstr(dead, "not-the-password") : "");
	free(dead);
	/* alice may write only her own calendars: bob's is refused with 403. */
	s_send(&f, "a-2", "calendar.event.upsert",
	       "{\"owner\":\"bob\",\"uid\":\"x-2\",\"summary\":\"Kursus\","
	       "\"start\":\"2026-04-01\",\"end\":\"2026-04-02\"}");
	dead = s_dead(&f, "a-2");
	CU_ASSERT(s_has(dead, "HTTP 403"));
	CU_ASSERT(s_has(dead, "user 'alice'"));
	free(dead);
	s_teardown(&f);
}

static void test_outage_is_retried_then_delivered(void)
{
	fixture_t f;
	char *p, *ics;

	CU_ASSERT_FATAL(s_setup(&f, "cal-outage", NULL, NULL, NULL));
	CU_ASSERT_EQUAL_FATAL(radicale_halt(f.r), 0);
	s_send(&f, "o-1", "calendar.event.upsert",
	       "{\"owner\":\"E-7\",\"uid\":\"ude-1\",\"summary\":\"Kursus\","
	       "\"start\":\"2026-04-01\",\"end\":\"2026-04-02\"}");
	p = kd_expect(f.sub, "retrying calendar.event.upsert", "\"o-1\"", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT_EQUAL_FATAL(radicale_resume(f.r), 0);
	CU_ASSERT(s_delivered(&f, "o-1"));
	ics = s_get(&f, "/E-7/kanal/ude-1.ics", NULL);
	CU_ASSERT(s_has(ics, "SUMMARY:Kursus"));
	free(ics);
	s_teardown(&f);
}

/* ---- domain events -------------------------------------------------------------------------- */

static char *s_key_path;

/* The collection path of a citizen's calendar: /person%3A<hex>/kanal/. */
static void s_person_path(const char *cpr, char *out, size_t size)
{
	kanal_pseudonym_key_t *key = NULL;
	char pseudo[KANAL_PSEUDONYM_SIZE];

	CU_ASSERT_EQUAL_FATAL(kanal_pseudonym_key_load(s_key_path, &key, NULL), 0);
	kanal_cpr_pseudonym(key, cpr, pseudo, sizeof pseudo);
	kanal_pseudonym_key_destroy(&key);
	snprintf(out, size, "/person%%3A%s/kanal/", pseudo + strlen("person:"));
}

/* The data of a child.absence.reported enriched with the child's CPR record. */
static char *s_child_absence(const char *first, const char *holders_json, const char *from,
			     const char *to)
{
	char *data;

	if (asprintf(&data,
		     "{\"institution\":\"Solsikken\",\"child\":\"child-7\",\"reason\":\"sick\","
		     "\"from\":\"%s\",\"to\":\"%s\",\"days\":2,\"comment\":\"feber\","
		     "\"child_person\":{\"name\":{\"first\":\"%s\",\"last\":\"Hansen\"},"
		     "\"relations\":{\"mother\":\"" SOFIE "\",\"custody\":%s}}}",
		     from, to, first, holders_json) < 0)
		return NULL;
	return data;
}

static void test_child_absence_goes_to_each_custody_holder(void)
{
	fixture_t f;
	char opts[512], sofie[128], mads[128], maja[128], lars[128], *data, *ics, *list;
	char *dir = test_tmpdir("cal-key");
	size_t n;

	s_key_path = test_write_file(dir, "pseudonym.key", "a-test-key-of-32-bytes-0123456789\n");
	chmod(s_key_path, 0600);
	snprintf(opts, sizeof opts, "      pseudonym_key: '%s'\n", s_key_path);
	CU_ASSERT_FATAL(s_setup(&f, "cal-child", opts, NULL, NULL));
	s_person_path(SOFIE, sofie, sizeof sofie);
	s_person_path(MADS, mads, sizeof mads);
	s_person_path(MAJA, maja, sizeof maja);
	s_person_path(LARS, lars, sizeof lars);

	/* Ida: two custody holders. */
	data = s_child_absence("Ida",
			       "[{\"cpr\":\"" SOFIE "\",\"type\":\"mother\"},"
			       "{\"cpr\":\"" MADS "\",\"type\":\"father\"}]",
			       "2026-03-02", "2026-03-03");
	s_send(&f, "daycare-reg-1", "child.absence.reported", data);
	free(data);
	/* Noah: only his mother has custody; his father gets nothing. */
	data = s_child_absence("Noah", "[{\"cpr\":\"" MAJA "\",\"type\":\"mother\"}]", "2026-03-05",
			       "2026-03-05");
	s_send(&f, "daycare-reg-2", "child.absence.reported", data);
	free(data);
	CU_ASSERT(s_delivered(&f, "daycare-reg-1"));
	CU_ASSERT(s_delivered(&f, "daycare-reg-2"));

	CU_ASSERT_EQUAL(s_count(&f, sofie), 1);
	CU_ASSERT_EQUAL(s_count(&f, mads), 1);
	CU_ASSERT_EQUAL(s_count(&f, maja), 1);
	list = radicale_list(f.r, "kanal", lars, &n);
	CU_ASSERT_PTR_NULL(list); /* no calendar at all for the parent without custody */
	free(list);
	list = radicale_list(f.r, "kanal", sofie, &n);
	CU_ASSERT_PTR_NOT_NULL_FATAL(list);
	{
		char path[256];
		snprintf(path, sizeof path, "%s%.*s", sofie, (int)(strchr(list, '\n') - list),
			 list);
		ics = s_get(&f, path, NULL);
	}
	free(list);
	/* A neutral all-day event: the last day counts, so DTEND is the day after. */
	CU_ASSERT(s_has(ics, "SUMMARY:Ida: fravær"));
	CU_ASSERT(s_has(ics, "DTSTART;VALUE=DATE:20260302"));
	CU_ASSERT(s_has(ics, "DTEND;VALUE=DATE:20260304"));
	CU_ASSERT(s_has(ics, "Solsikken"));
	CU_ASSERT_PTR_NULL(ics ? strstr(ics, "syg") : "");   /* include_reason is off */
	CU_ASSERT_PTR_NULL(ics ? strstr(ics, "feber") : ""); /* the comment never goes */
	CU_ASSERT(!kd_has_clear_cpr(ics));
	free(ics);

	/* A holder's calendar fails (the server errs on Mads's collection): RETRY; on the
	 * retry the holder already written is updated in place, not duplicated. */
	{
		char props[1024], saved[64] = "";
		FILE *fp;
		snprintf(props, sizeof props, "%s/collection-root/person:%s.Radicale.props",
			 f.r->storage, strchr(mads, 'A') + 1);
		fp = fopen(props, "r+");
		CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
		CU_ASSERT(fgets(saved, sizeof saved, fp) != NULL);
		rewind(fp);
		fputs("garbage{", fp);
		fclose(fp);
		data = s_child_absence("Ida",
				       "[{\"cpr\":\"" SOFIE "\",\"type\":\"mother\"},"
				       "{\"cpr\":\"" MADS "\",\"type\":\"father\"}]",
				       "2026-03-10", "2026-03-10");
		s_send(&f, "daycare-reg-3", "child.absence.reported", data);
		free(data);
		{
			char *p = kd_expect(f.sub, "retrying child.absence.reported",
					    "\"daycare-reg-3\"", WAIT);
			CU_ASSERT_PTR_NOT_NULL(p);
			CU_ASSERT(p && strstr(p, "custody holder 2 of 2"));
			CU_ASSERT(!kd_has_clear_cpr(p));
			free(p);
			/* Let a few more attempts fail, then heal the calendar. */
			p = kd_expect(f.sub, "retrying child.absence.reported", "\"daycare-reg-3\"",
				      WAIT);
			free(p);
		}
		fp = fopen(props, "w");
		CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
		fputs(saved, fp);
		fclose(fp);
		CU_ASSERT(s_delivered(&f, "daycare-reg-3"));
	}
	CU_ASSERT_EQUAL(s_count(&f, sofie), 2);
	CU_ASSERT_EQUAL(s_count(&f, mads), 2);
	/* Sofie's event of the retried report was written once: still SEQUENCE 0. */
	list = radicale_list(f.r, "kanal", sofie, &n);
	for (char *line = list; line && *line;) {
		char *nl = strchr(line, '\n'), path[256];
		snprintf(path, sizeof path, "%s%.*s", sofie, (int)(nl - line), line);
		ics = s_get(&f, path, NULL);
		CU_ASSERT(s_has(ics, "SEQUENCE:0"));
		free(ics);
		line = nl + 1;
	}
	free(list);
	/* No CPR number reached the calendar server: not in a URL, not in its log. */
	{
		char *rlog = test_read_file(f.r->log_path, NULL);
		CU_ASSERT(rlog && !kd_has_clear_cpr(rlog));
		free(rlog);
	}
	s_teardown(&f);
	test_rmdir_r(dir);
	free(dir);
	free(s_key_path);
	s_key_path = NULL;
}

static void test_staff_absence_versions_holiday_and_cancel(void)
{
	fixture_t f;
	char *ics;

	CU_ASSERT_FATAL(s_setup(&f, "cal-staff", NULL, NULL, NULL));
	s_send(&f, "hr-absence-A1-v1", "staff.absence.registered",
	       "{\"absence\":\"A1\",\"version\":1,\"employment\":\"E-3\","
	       "\"employee_cpr\":\"" MADS "\",\"department\":\"Solsikken\",\"code\":\"SYG\","
	       "\"from\":\"2026-03-02\",\"to\":\"2026-03-02\"}");
	CU_ASSERT(s_delivered(&f, "hr-absence-A1-v1"));
	ics = s_get(&f, "/E-3/kanal/kanal-hr-absence-A1.ics", NULL);
	CU_ASSERT(s_has(ics, "SUMMARY:Fravær"));
	CU_ASSERT(s_has(ics, "DTEND;VALUE=DATE:20260303"));
	CU_ASSERT_PTR_NULL(ics ? strstr(ics, "SYG") : ""); /* include_reason is off */
	free(ics);
	/* Version 2 extends the absence: the same event, updated. */
	s_send(&f, "hr-absence-A1-v2", "staff.absence.registered",
	       "{\"absence\":\"A1\",\"version\":2,\"employment\":\"E-3\","
	       "\"employee_cpr\":\"" MADS "\",\"department\":\"Solsikken\",\"code\":\"SYG\","
	       "\"from\":\"2026-03-02\",\"to\":\"2026-03-04\"}");
	CU_ASSERT(s_delivered(&f, "hr-absence-A1-v2"));
	ics = s_get(&f, "/E-3/kanal/kanal-hr-absence-A1.ics", NULL);
	CU_ASSERT(s_has(ics, "DTEND;VALUE=DATE:20260305"));
	CU_ASSERT(s_has(ics, "SEQUENCE:1"));
	free(ics);
	s_send(&f, "hr-holiday-H1-v1", "staff.holiday.registered",
	       "{\"absence\":\"H1\",\"employment\":\"E-3\",\"department\":\"Solsikken\","
	       "\"from\":\"2026-07-06\",\"to\":\"2026-07-17\",\"days\":10}");
	CU_ASSERT(s_delivered(&f, "hr-holiday-H1-v1"));
	ics = s_get(&f, "/E-3/kanal/kanal-hr-absence-H1.ics", NULL);
	CU_ASSERT(s_has(ics, "SUMMARY:Ferie"));
	CU_ASSERT(s_has(ics, "DTEND;VALUE=DATE:20260718"));
	free(ics);
	s_send(&f, "hr-absence-A1-cancel", "staff.absence.cancelled",
	       "{\"absence\":\"A1\",\"employment\":\"E-3\",\"employee_cpr\":\"" MADS "\"}");
	CU_ASSERT(s_delivered(&f, "hr-absence-A1-cancel"));
	ics = s_get(&f, "/E-3/kanal/kanal-hr-absence-A1.ics", NULL);
	CU_ASSERT(s_has(ics, "STATUS:CANCELLED"));
	CU_ASSERT(s_has(ics, "SEQUENCE:2"));
	free(ics);
	CU_ASSERT_EQUAL(s_count(&f, "/E-3/kanal/"), 2);
	s_teardown(&f);
}

/* Sends event `id`: version v of HR absence A7 of E-7, ending on `to`; asserts it was
 * delivered. */
static void s_send_a7(fixture_t *f, const char *id, int v, const char *to)
{
	char data[512];

	snprintf(
		data, sizeof data,
		"{\"absence\":\"A7\",\"version\":%d,\"employment\":\"E-7\",\"employee_cpr\":\"" MADS
		"\",\"department\":\"Solsikken\",\"code\":\"SYG\",\"from\":\"2026-03-02\","
		"\"to\":\"%s\"}",
		v, to);
	s_send(f, id, "staff.absence.registered", data);
	CU_ASSERT(s_delivered(f, id));
}

static void test_late_older_version_never_overwrites(void)
{
	fixture_t f;
	char *ics;

	CU_ASSERT_FATAL(s_setup(&f, "cal-late", NULL, NULL, NULL));
	s_send_a7(&f, "hr-absence-A7-v1", 1, "2026-03-02");
	s_send_a7(&f, "hr-absence-A7-v3", 3, "2026-03-06");
	/* Version 2 arrives late: the entry keeps what version 3 said. */
	s_send_a7(&f, "hr-absence-A7-v2", 2, "2026-03-03");
	ics = s_get(&f, "/E-7/kanal/kanal-hr-absence-A7.ics", NULL);
	CU_ASSERT(s_has(ics, "DTEND;VALUE=DATE:20260307"));
	CU_ASSERT(s_has(ics, "X-KANAL-VERSION:3"));
	free(ics);

	/* After a restart kanald remembers nothing of what it wrote; a replayed version 2 is
	 * still older than what the calendar holds. */
	kd_unsubscribe(&f.sub);
	CU_ASSERT_EQUAL_FATAL(kd_stop(f.kd, SIGTERM, WAIT), 0);
	CU_ASSERT_EQUAL_FATAL(kd_restart(f.kd), 0);
	f.sub = kd_subscribe(f.kd, "");
	free(f.seen);
	f.seen = NULL;
	s_send_a7(&f, "hr-absence-A7-v2-replay", 2, "2026-03-03");
	ics = s_get(&f, "/E-7/kanal/kanal-hr-absence-A7.ics", NULL);
	CU_ASSERT(s_has(ics, "DTEND;VALUE=DATE:20260307"));
	free(ics);

	/* The cancellation (version 4) wins over a late version 3 after it, too. */
	s_send(&f, "hr-absence-A7-v4-cancel", "staff.absence.cancelled",
	       "{\"absence\":\"A7\",\"version\":4,\"employment\":\"E-7\"}");
	CU_ASSERT(s_delivered(&f, "hr-absence-A7-v4-cancel"));
	s_send_a7(&f, "hr-absence-A7-v3-late", 3, "2026-03-06");
	ics = s_get(&f, "/E-7/kanal/kanal-hr-absence-A7.ics", NULL);
	CU_ASSERT(s_has(ics, "STATUS:CANCELLED"));
	CU_ASSERT(s_has(ics, "X-KANAL-VERSION:4"));
	free(ics);
	CU_ASSERT_EQUAL(s_count(&f, "/E-7/kanal/"), 1);
	s_teardown(&f);
}

/* ---- never a PUT to a collection ------------------------------------------------------------ */

static void test_never_puts_to_a_collection(void)
{
	static const char *const bad_owners[] = { "..", ".", "/", "", "a/b", "%2F", NULL };
	static const char *const odd_uids[] = { "..", "/", "../kanal/", ".ics", NULL };
	fixture_t f;
	char id[32], data[512], *dead, *rlog;

	CU_ASSERT_FATAL(s_setup(&f, "cal-collection", NULL, NULL, NULL));
	s_send(&f, "n-1", "calendar.event.upsert",
	       "{\"owner\":\"E-5\",\"uid\":\"keep-1\",\"summary\":\"A\","
	       "\"start\":\"2026-04-01\",\"end\":\"2026-04-02\"}");
	s_send(&f, "n-2", "calendar.event.upsert",
	       "{\"owner\":\"E-5\",\"uid\":\"keep-2\",\"summary\":\"B\","
	       "\"start\":\"2026-04-01\",\"end\":\"2026-04-02\"}");
	CU_ASSERT(s_delivered(&f, "n-1"));
	CU_ASSERT(s_delivered(&f, "n-2"));
	/* Owners that would make a path of their own are refused, naming the field. */
	for (int i = 0; bad_owners[i]; i++) {
		snprintf(id, sizeof id, "bad-owner-%d", i);
		snprintf(data, sizeof data,
			 "{\"owner\":\"%s\",\"uid\":\"keep-1\",\"summary\":\"X\","
			 "\"start\":\"2026-04-01\",\"end\":\"2026-04-02\"}",
			 bad_owners[i]);
		s_send(&f, id, "calendar.event.upsert", data);
		dead = s_dead(&f, id);
		CU_ASSERT(s_has(dead, "data.owner"));
		free(dead);
	}
	/* An empty UID is refused; odd ones get a safe resource name inside the collection. */
	s_send(&f, "bad-uid", "calendar.event.upsert",
	       "{\"owner\":\"E-5\",\"uid\":\"\",\"summary\":\"X\","
	       "\"start\":\"2026-04-01\",\"end\":\"2026-04-02\"}");
	dead = s_dead(&f, "bad-uid");
	CU_ASSERT(s_has(dead, "data.uid is empty"));
	free(dead);
	for (int i = 0; odd_uids[i]; i++) {
		snprintf(id, sizeof id, "odd-uid-%d", i);
		snprintf(data, sizeof data,
			 "{\"owner\":\"E-5\",\"uid\":\"%s\",\"summary\":\"X\","
			 "\"start\":\"2026-04-01\",\"end\":\"2026-04-02\"}",
			 odd_uids[i]);
		s_send(&f, id, "calendar.event.upsert", data);
		CU_ASSERT(s_delivered(&f, id));
	}
	/* The collection still holds its events, plus one per odd UID. */
	CU_ASSERT_EQUAL(s_count(&f, "/E-5/kanal/"), 2 + 4);
	{
		char *ics = s_get(&f, "/E-5/kanal/keep-1.ics", NULL);
		CU_ASSERT(s_has(ics, "SUMMARY:A"));
		free(ics);
	}
	/* Radicale's own log: every PUT it was sent named one .ics resource. */
	rlog = test_read_file(f.r->log_path, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(rlog);
	{
		int puts = 0;
		for (const char *p = rlog; (p = strstr(p, "PUT request for '")); p++) {
			const char *path = p + strlen("PUT request for '"),
				   *end = strchr(path, '\'');
			CU_ASSERT_PTR_NOT_NULL_FATAL(end);
			CU_ASSERT(end - path > 4 && !strncmp(end - 4, ".ics", 4));
			CU_ASSERT(end[-1] != '/');
			puts++;
		}
		CU_ASSERT(puts >= 6);
	}
	free(rlog);
	s_teardown(&f);
}

/* ---- the iCalendar text, through the SDK harness --------------------------------------------- */

/* A capturing CalDAV stand-in: PROPFIND says "a calendar", PUT answers 201 with an ETag and
 * keeps the last body, its URL and its precondition header. */
typedef struct capture {
	struct MHD_Daemon *d;
	int port;
	int requests;
	char url[512];
	char cond[128];
	char *body;
	size_t len;
} capture_t;

typedef struct {
	char *p;
	size_t len;
} upload_t;

static enum MHD_Result s_capture_handler(void *cls, struct MHD_Connection *conn, const char *url,
					 const char *method, const char *version,
					 const char *upload, size_t *upload_size, void **con_cls)
{
	capture_t *cap = cls;
	upload_t *up = *con_cls;
	struct MHD_Response *res;
	enum MHD_Result ret;
	const char *v;
	int status = 201;
	const char *text = "";

	(void)version;
	if (!up) {
		*con_cls = calloc(1, sizeof(upload_t));
		return MHD_YES;
	}
	if (*upload_size) {
		up->p = realloc(up->p, up->len + *upload_size + 1);
		memcpy(up->p + up->len, upload, *upload_size);
		up->len += *upload_size;
		up->p[up->len] = '\0';
		*upload_size = 0;
		return MHD_YES;
	}
	cap->requests++;
	if (!strcmp(method, "PROPFIND")) {
		status = 207;
		text = "<?xml version=\"1.0\"?><d:multistatus xmlns:d=\"DAV:\" "
		       "xmlns:c=\"urn:ietf:params:xml:ns:caldav\"><d:response><d:href>/x/</d:href>"
		       "<d:propstat><d:prop><d:resourcetype><d:collection/><c:calendar/>"
		       "</d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status>"
		       "</d:propstat></d:response></d:multistatus>";
	} else if (!strcmp(method, "PUT")) {
		snprintf(cap->url, sizeof cap->url, "%s", url);
		v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Match");
		snprintf(cap->cond, sizeof cap->cond, "%s%s", v ? "If-None-Match: " : "",
			 v ? v : "");
		free(cap->body);
		cap->body = up->p ? up->p : strdup("");
		cap->len = up->len;
		up->p = NULL;
	} else {
		status = 404;
	}
	res = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(res, "ETag", "\"e1\"");
	ret = MHD_queue_response(conn, (unsigned)status, res);
	MHD_destroy_response(res);
	return ret;
}

static void s_capture_done(void *cls, struct MHD_Connection *conn, void **con_cls,
			   enum MHD_RequestTerminationCode code)
{
	upload_t *up = *con_cls;

	(void)cls;
	(void)conn;
	(void)code;
	if (up) {
		free(up->p);
		free(up);
		*con_cls = NULL;
	}
}

static void s_capture_start(capture_t *cap)
{
	memset(cap, 0, sizeof *cap);
	cap->d = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, s_capture_handler, cap,
		MHD_OPTION_NOTIFY_COMPLETED, s_capture_done, NULL, MHD_OPTION_SOCK_ADDR,
		(struct sockaddr *)&(struct sockaddr_in){
			.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) },
		MHD_OPTION_END);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cap->d);
	cap->port = MHD_get_daemon_info(cap->d, MHD_DAEMON_INFO_BIND_PORT)->port;
}

static void s_capture_stop(capture_t *cap)
{
	MHD_stop_daemon(cap->d);
	free(cap->body);
}

static kanal_harness_t *s_harness(capture_t *cap, const char *key_path, bool include_reason)
{
	kanal_error_t err = { 0 };
	kanal_harness_t *h = kanal_harness_new(test_path("plugins/calendar.so"), "cal", &err);
	char url[128];

	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/{owner}/kanal", cap->port);
	kanal_harness_option(h, "calendar_url", url);
	kanal_harness_option(h, "timeout", "2s");
	if (key_path)
		kanal_harness_option(h, "pseudonym_key", key_path);
	if (include_reason)
		kanal_harness_option(h, "include_reason", "true");
	CU_ASSERT_EQUAL_FATAL(kanal_harness_start(h, &err), 0);
	return h;
}

static kanal_msg_t *s_msg(const char *type, const char *data)
{
	kanal_msg_t *m = kanal_msg_new(type, "test", NULL);

	kanal_msg_set_data_json(m, data, strlen(data));
	return m;
}

/* The value of the first property `name` in text, unfolded (malloc'd), or NULL. */
static char *s_unfolded(const char *text, const char *name)
{
	const char *p = text;
	char *out, *o;
	size_t n = strlen(name);

	while (p && strncmp(p, name, n) != 0) {
		p = strstr(p, "\r\n");
		p = p ? p + 2 : NULL;
	}
	if (!p)
		return NULL;
	out = o = malloc(strlen(p) + 1);
	for (; *p; p++) {
		if (p[0] == '\r' && p[1] == '\n') {
			if (p[2] != ' ')
				break;
			p += 2;
			continue;
		}
		*o++ = *p;
	}
	*o = '\0';
	return out;
}

static void test_ical_text_crlf_folding_escaping(void)
{
	capture_t cap;
	kanal_harness_t *h;
	kanal_msg_t *m;
	char data[2048], desc[600] = "";
	char *v;

	s_capture_start(&cap);
	h = s_harness(&cap, NULL, false);
	/* A long description of two-byte letters, so a fold could split one. */
	for (int i = 0; i < 40; i++)
		strcat(desc, "æøå ÆØÅ ");
	snprintf(data, sizeof data,
		 "{\"owner\":\"E-1\",\"uid\":\"tekst-1\",\"summary\":\"Møde; rum 2, \\\\ og mere\","
		 "\"description\":\"Linje 1\\nLinje 2 %s\",\"start\":\"2026-03-02\","
		 "\"end\":\"2026-03-03\",\"sequence\":4}",
		 desc);
	m = s_msg("calendar.event.upsert", data);
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, NULL), KANAL_OUTCOME_OK);
	kanal_msg_destroy(&m);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cap.body);
	CU_ASSERT_STRING_EQUAL(cap.url, "/E-1/kanal/tekst-1.ics");
	CU_ASSERT_STRING_EQUAL(cap.cond, "If-None-Match: *");
	CU_ASSERT(!strncmp(cap.body, "BEGIN:VCALENDAR\r\n", 17));
	CU_ASSERT_PTR_NULL(strstr(cap.body, "METHOD"));
	/* Every line ends in CRLF, holds at most 75 octets, and a fold never splits a
	 * UTF-8 sequence (a continuation byte never starts a continued line). */
	for (const char *line = cap.body; *line;) {
		const char *end = strstr(line, "\r\n");
		CU_ASSERT_PTR_NOT_NULL_FATAL(end);
		CU_ASSERT(end - line <= 75);
		CU_ASSERT_PTR_NULL(memchr(line, '\n', (size_t)(end - line)));
		if (line[0] == ' ') {
			CU_ASSERT(((unsigned char)line[1] & 0xC0) != 0x80);
		}
		line = end + 2;
	}
	/* Escaping: backslash, semicolon, comma, newline. */
	v = s_unfolded(cap.body, "SUMMARY:");
	CU_ASSERT_STRING_EQUAL(v ? v : "", "SUMMARY:Møde\\; rum 2\\, \\\\ og mere");
	free(v);
	v = s_unfolded(cap.body, "DESCRIPTION:");
	CU_ASSERT(v && !strncmp(v, "DESCRIPTION:Linje 1\\nLinje 2 æøå ÆØÅ", 40));
	CU_ASSERT(v && strlen(v) > 500); /* it was long enough to be folded */
	free(v);
	CU_ASSERT_PTR_NOT_NULL(strstr(cap.body, "\r\nDTSTART;VALUE=DATE:20260302\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(cap.body, "\r\nDTEND;VALUE=DATE:20260303\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(cap.body, "\r\nSEQUENCE:4\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(cap.body, "\r\nUID:tekst-1\r\n"));
	kanal_harness_destroy(&h);
	s_capture_stop(&cap);
}

static void test_bad_data_is_rejected_naming_the_field_before_any_request(void)
{
	static const struct {
		const char *data, *want;
	} cases[] = {
		{ "{\"uid\":\"x\",\"summary\":\"s\",\"start\":\"2026-03-02\",\"end\":\"2026-03-"
		  "03\"}",
		  "data.owner is missing" },
		{ "{\"owner\":\"..\",\"uid\":\"x\",\"summary\":\"s\",\"start\":\"2026-03-02\","
		  "\"end\":\"2026-03-03\"}",
		  "data.owner" },
		{ "{\"owner\":\"a/b\",\"uid\":\"x\",\"summary\":\"s\",\"start\":\"2026-03-02\","
		  "\"end\":\"2026-03-03\"}",
		  "data.owner" },
		{ "{\"owner\":\"E\",\"uid\":\"x\",\"summary\":\"s\",\"start\":\"2026-02-30\","
		  "\"end\":\"2026-03-03\"}",
		  "data.start" },
		{ "{\"owner\":\"E\",\"uid\":\"x\",\"summary\":\"s\",\"start\":\"2026-03-03\","
		  "\"end\":\"2026-03-03\"}",
		  "data.end" },
		{ "{\"owner\":\"E\",\"uid\":\"x\",\"summary\":\"s\",\"start\":\"2026-03-03\","
		  "\"end\":\"2026-03-03T10:00:00Z\"}",
		  "data.end" },
		{ "{\"owner\":\"E\",\"uid\":\"x\",\"start\":\"2026-03-02\",\"end\":\"2026-03-03\"}",
		  "data.summary is missing" },
		{ "{\"owner\":\"E\",\"uid\":\"abs-" MADS "\",\"summary\":\"s\","
		  "\"start\":\"2026-03-02\",\"end\":\"2026-03-03\"}",
		  "data.uid holds a CPR number" },
		{ "{\"owner\":\"E\",\"uid\":\"x\",\"summary\":\"Syg " MADS "\","
		  "\"start\":\"2026-03-02\",\"end\":\"2026-03-03\"}",
		  "data.summary holds a CPR number" },
		{ "{\"owner\":\"" MADS "\",\"uid\":\"x\",\"summary\":\"s\","
		  "\"start\":\"2026-03-02\",\"end\":\"2026-03-03\"}",
		  "data.owner holds a CPR number" },
		{ "{\"owner\":\"E\",\"uid\":\"x\",\"summary\":\"s\",\"start\":\"2026-03-02\","
		  "\"end\":\"2026-03-03\",\"sequence\":-2}",
		  "data.sequence" },
	};
	capture_t cap;
	kanal_harness_t *h;

	s_capture_start(&cap);
	h = s_harness(&cap, NULL, false);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		kanal_msg_t *m = s_msg("calendar.event.upsert", cases[i].data);
		const char *err;
		CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, NULL), KANAL_OUTCOME_REJECT);
		err = kanal_harness_last_error(h);
		CU_ASSERT(s_has(err, cases[i].want));
		CU_ASSERT(!kd_has_clear_cpr(err));
		kanal_msg_destroy(&m);
	}
	/* Nothing reached the server. */
	CU_ASSERT_EQUAL(cap.requests, 0);
	for (size_t i = 0; i < kanal_harness_log_count(h); i++)
		CU_ASSERT(!kd_has_clear_cpr(kanal_harness_log(h, i)));
	kanal_harness_destroy(&h);
	s_capture_stop(&cap);
}

static void test_calendar_url_that_escapes_the_collection_is_refused(void)
{
	static const char *const templates[] = { "http://127.0.0.1:1/{owner}/../",
						 "http://127.0.0.1:1/", "ftp://x/{owner}/",
						 "http://127.0.0.1:1/{owner}/kanal/?x=1", NULL };
	for (int i = 0; templates[i]; i++) {
		kanal_error_t err = { 0 };
		kanal_harness_t *h =
			kanal_harness_new(test_path("plugins/calendar.so"), "cal", &err);
		CU_ASSERT_PTR_NOT_NULL_FATAL(h);
		kanal_harness_option(h, "calendar_url", templates[i]);
		CU_ASSERT_NOT_EQUAL(kanal_harness_start(h, &err), 0);
		CU_ASSERT(s_has(err.text, "calendar_url"));
		kanal_harness_destroy(&h);
	}
}

static void test_child_absence_summary_stays_neutral(void)
{
	capture_t cap;
	kanal_harness_t *h;
	kanal_msg_t *m;
	char *dir = test_tmpdir("cal-key"), *key, *data, *v;

	key = test_write_file(dir, "pseudonym.key", "a-test-key-of-32-bytes-0123456789\n");
	chmod(key, 0600);
	s_capture_start(&cap);
	data = s_child_absence("Ida", "[{\"cpr\":\"" SOFIE "\",\"type\":\"mother\"}]", "2026-03-02",
			       "2026-03-02");
	for (int reason = 0; reason < 2; reason++) {
		h = s_harness(&cap, key, reason == 1);
		m = s_msg("child.absence.reported", data);
		CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, NULL), KANAL_OUTCOME_OK);
		kanal_msg_destroy(&m);
		CU_ASSERT_PTR_NOT_NULL_FATAL(cap.body);
		/* The owner is a pseudonym; nothing personal in the URL or UID. */
		CU_ASSERT(!strncmp(cap.url, "/person%3A", 10) || !strncmp(cap.url, "/person:", 8));
		CU_ASSERT(!kd_has_clear_cpr(cap.url));
		CU_ASSERT(!kd_has_clear_cpr(cap.body));
		v = s_unfolded(cap.body, "SUMMARY:");
		CU_ASSERT_STRING_EQUAL(v ? v : "", "SUMMARY:Ida: fravær");
		free(v);
		v = s_unfolded(cap.body, "DESCRIPTION:");
		if (reason) {
			CU_ASSERT(s_has(v, "Årsag: syg"));
		} else {
			CU_ASSERT_PTR_NULL(v ? strstr(v, "syg") : "");
		}
		free(v);
		kanal_harness_destroy(&h);
	}
	/* Without the enrichment there is no one to write to: refused with the reason. */
	h = s_harness(&cap, key, false);
	m = s_msg("child.absence.reported", "{\"child\":\"child-7\",\"from\":\"2026-03-02\"}");
	CU_ASSERT_EQUAL(kanal_harness_deliver(h, m, NULL), KANAL_OUTCOME_REJECT);
	CU_ASSERT(s_has(kanal_harness_last_error(h), "data.child_person is missing"));
	kanal_msg_destroy(&m);
	kanal_harness_destroy(&h);
	free(data);
	s_capture_stop(&cap);
	test_rmdir_r(dir);
	free(dir);
	free(key);
}

/* ---- appointments from letters (routes/municipal.yaml appointment-to-calendar) ------------ */

/* A letter with a MeMo AFTALE, as a case system sends it (the document is a stand-in). */
static char *s_appointment_letter(const char *cpr, const char *appointment, const char *start,
				  const char *end, const char *status)
{
	char *data;

	if (asprintf(&data,
		     "{\"recipient_cpr\":\"%s\",\"label\":\"Tid hos sundhedsplejen\","
		     "\"document\":{\"filename\":\"brev.pdf\",\"content\":\"JVBERi0xLjQK\"},"
		     "\"sender\":{\"label\":\"Sundhedsplejen, Kanalby Kommune\","
		     "\"department\":\"dept-sp-17\"},"
		     "\"appointment\":{\"id\":\"%s\"%s%s%s},"
		     "\"action\":{\"code\":\"AFTALE\",\"start\":\"%s\",\"end\":\"%s\","
		     "\"reservation\":{\"location\":\"Kanalgade 1, 8000 Aarhus C\","
		     "\"abstract\":\"Sundhedsplejerske\"}}}",
		     cpr, appointment, status ? ",\"status\":\"" : "", status ? status : "",
		     status ? "\"" : "", start, end) < 0)
		return NULL;
	return data;
}

/* The one event in a collection (NULL when there is not exactly one). */
static char *s_only_event(fixture_t *f, const char *collection)
{
	size_t n = 0;
	char *list = radicale_list(f->r, "kanal", collection, &n), path[300], *ics = NULL;

	if (list && n == 1) {
		snprintf(path, sizeof path, "%s%.*s", collection, (int)strcspn(list, "\n"), list);
		ics = s_get(f, path, NULL);
	} else {
		fprintf(stderr, "%s holds %zu events, not 1\n", collection, n);
	}
	free(list);
	return ics;
}

static void test_appointment_letter_creates_updates_and_cancels_the_entry(void)
{
	fixture_t f;
	upstream_t *cpr = NULL;
	char opts[512], maja[128], lars[128], sts_cert[PATH_MAX + 16], *instances = NULL;
	char *routes = NULL,
	     *r1 = shipped_route_as("routes/municipal.yaml", "appointment-to-calendar",
				    "family-calendar", "cal");
	char *r2 = shipped_route_as("routes/municipal.yaml", "calendar-event-to-calendar",
				    "family-calendar", "cal"),
	     *data, *ics, *list;
	char *dir = test_tmpdir("cal-appt");
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(r1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r2);
	CU_ASSERT_EQUAL_FATAL(testca_make(dir), 0);
	s_key_path = test_write_file(dir, "pseudonym.key", "a-test-key-of-32-bytes-0123456789\n");
	chmod(s_key_path, 0600);
	snprintf(sts_cert, sizeof sts_cert, "sts_cert=%s/server.pem", dir);
	cpr = upstream_start_tls("cpr", dir, (const char *const[]){ "--set", sts_cert, NULL });
	CU_ASSERT_PTR_NOT_NULL_FATAL(cpr);
	/* The shipped routes, with the CPR lookup of the simulated register (SF1520 v4). */
	snprintf(opts, sizeof opts, "      pseudonym_key: '%s'\n", s_key_path);
	CU_ASSERT_FATAL(
		asprintf(&instances,
			 "  - name: cpr\n    plugin: cpr\n    options:\n"
			 "      endpoint: '%s/cpr'\n"
			 "      ca_file: '%s/ca.pem'\n"
			 "      certificate_p12: '%s/client.p12'\n"
			 "      certificate_password_file: '%s/client.pass'\n"
			 "      service_agreement_uuid: 6f1c7c44-1b0a-4c52-9a8e-1d2f0c6b7a01\n"
			 "      user_system_uuid: 0c9b1a7e-3d5f-4e21-8b6a-2a7c9e4d5f02\n"
			 "      user_uuid: 9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c03\n"
			 "      audit_log: '%s/audit.log'\n",
			 cpr->url, dir, dir, dir, dir) > 0 &&
		asprintf(&routes, "routes:\n%s\n%s\n", r1, r2) > 0);
	CU_ASSERT_FATAL(s_setup(&f, "cal-appointment", opts, instances, routes));
	s_person_path(MAJA, maja, sizeof maja);
	s_person_path(LARS, lars, sizeof lars);

	/* Maja is asked to come: the entry is in her calendar, named by the sender's name. */
	data = s_appointment_letter(MAJA, "SP-1", "2026-04-14T08:00:00Z", "2026-04-14T08:30:00Z",
				    NULL);
	s_send(&f, "brev-a1", "post.letter.send", data);
	free(data);
	CU_ASSERT(s_delivered(&f, "brev-a1"));
	ics = s_only_event(&f, maja);
	CU_ASSERT(s_has(ics, "SUMMARY:Sundhedsplejerske – Sundhedsplejen\\, Kanalby Kommune"));
	CU_ASSERT(s_has(ics, "DTSTART:20260414T080000Z"));
	CU_ASSERT(s_has(ics, "DTEND:20260414T083000Z"));
	CU_ASSERT(s_has(ics, "Sted: Kanalgade 1"));
	CU_ASSERT_PTR_NULL(ics ? strstr(ics, "dept-sp-17") : ""); /* never the internal id */
	CU_ASSERT(!kd_has_clear_cpr(ics));
	free(ics);

	/* The time moves: a new letter about the same appointment updates the one entry. */
	data = s_appointment_letter(MAJA, "SP-1", "2026-04-15T10:00:00Z", "2026-04-15T10:45:00Z",
				    NULL);
	s_send(&f, "brev-a2", "post.letter.send", data);
	free(data);
	CU_ASSERT(s_delivered(&f, "brev-a2"));
	ics = s_only_event(&f, maja);
	CU_ASSERT(s_has(ics, "DTSTART:20260415T100000Z"));
	CU_ASSERT(s_has(ics, "SEQUENCE:1"));
	CU_ASSERT_PTR_NULL(ics ? strstr(ics, "STATUS:CANCELLED") : "");
	free(ics);

	/* Cancelled: the entry is struck through. */
	data = s_appointment_letter(MAJA, "SP-1", "2026-04-15T10:00:00Z", "2026-04-15T10:45:00Z",
				    "cancelled");
	s_send(&f, "brev-a3", "post.letter.send", data);
	free(data);
	CU_ASSERT(s_delivered(&f, "brev-a3"));
	ics = s_only_event(&f, maja);
	CU_ASSERT(s_has(ics, "STATUS:CANCELLED"));
	free(ics);

	/* A letter to Noah (a child) goes to the calendar of his custody holder, Maja; his
	 * father Lars has no custody and gets nothing. */
	data = s_appointment_letter("0903225017", "SP-2", "2026-05-04T07:00:00Z",
				    "2026-05-04T07:30:00Z", NULL);
	s_send(&f, "brev-a4", "post.letter.send", data);
	free(data);
	CU_ASSERT(s_delivered(&f, "brev-a4"));
	CU_ASSERT_EQUAL(s_count(&f, maja), 2);
	list = radicale_list(f.r, "kanal", lars, &n);
	CU_ASSERT_PTR_NULL(list);
	free(list);

	/* Any other system's calendar.event.upsert takes the shipped route too. */
	s_send(&f, "booking-1", "calendar.event.upsert",
	       "{\"owner\":\"E-77\",\"uid\":\"booking-1\",\"summary\":\"Møde\","
	       "\"start\":\"2026-05-05T08:00:00Z\",\"end\":\"2026-05-05T09:00:00Z\"}");
	CU_ASSERT(s_delivered(&f, "booking-1"));
	CU_ASSERT_EQUAL(s_count(&f, "/E-77/kanal/"), 1);

	s_teardown(&f);
	upstream_stop(&cpr);
	test_rmdir_r(dir);
	free(dir);
	free(s_key_path);
	s_key_path = NULL;
	free(instances);
	free(routes);
	free(r1);
	free(r2);
}

TEST_MAIN("calendar", TEST(test_ical_text_crlf_folding_escaping),
	  TEST(test_bad_data_is_rejected_naming_the_field_before_any_request),
	  TEST(test_calendar_url_that_escapes_the_collection_is_refused),
	  TEST(test_child_absence_summary_stays_neutral),
	  TEST(test_upsert_creates_all_day_and_timed_events),
	  TEST(test_upsert_again_updates_one_resource), TEST(test_cancel_by_status_and_by_delete),
	  TEST(test_concurrent_change_is_reread_not_lost),
	  TEST(test_uid_conflict_is_rejected_with_the_reason),
	  TEST(test_wrong_password_and_missing_rights_are_rejected),
	  TEST(test_outage_is_retried_then_delivered),
	  TEST(test_child_absence_goes_to_each_custody_holder),
	  TEST(test_staff_absence_versions_holiday_and_cancel),
	  TEST(test_late_older_version_never_overwrites), TEST(test_never_puts_to_a_collection),
	  TEST(test_appointment_letter_creates_updates_and_cancels_the_entry))
