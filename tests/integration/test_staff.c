/*
 * tests/integration/test_staff.c — the staff connector (plugins/staff) in the real kanald
 * against the simulated HR system (kanal-sim-hr): every absence code becomes the right
 * event with the right fields; versions and cancellations; no duplicates when kanald
 * restarts and the HR system has rebuilt its change log; nothing lost while the feed
 * answers errors, garbage, nothing at all or hangs; an absence with an impossible date is
 * reported and skipped while the next one arrives; unsafe XML is refused. Every test scans
 * kanald's log and the event stream for clear CPR numbers.
 *
 * kanald's own duplicate suppression is narrowed to 1 ms in these tests, so that a
 * duplicate the connector emitted would show up in the sink's file instead of being
 * quietly dropped by the bus.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include <kanal/kanal.h>

#include "kanald.h"
#include "test.h"
#include "upstream.h"

#define WAIT 10000 /* ms: the bound of every wait */

/* One test's world: the HR simulator, kanald with a staff instance and a sink, and the
 * event stream. */
typedef struct world {
	upstream_t *hr;
	kd_t *kd;
	void *sub;
	char *stream; /* every stream payload received so far */
	size_t stream_len;
} world_t;

/* Starts the simulator (whose feed password is s3cret) and kanald, whose staff instance
 * reads `password` from a file. Returns false (after CU_FAIL) when something does not come up; the world
 * must still be passed to s_end. */
static bool s_begin(world_t *w, const char *tag, const char *password)
{
	const char *sim_args[] = { "--set", "user=kanal", "--set", "password=s3cret", NULL };
	char *instances = NULL, *conf = NULL, *key_path;
	bool ok = false;
	FILE *f;

	memset(w, 0, sizeof *w);
	w->hr = upstream_start("hr", sim_args);
	if (!w->hr) {
		CU_FAIL("kanal-sim-hr did not start");
		return false;
	}
	if (asprintf(&instances,
		     "  - name: staff\n"
		     "    plugin: staff\n"
		     "    options:\n"
		     "      base_url: '%s'\n"
		     "      user: kanal\n"
		     "      password_file: hr.password\n"
		     "      pseudonym_key: pseudonym.key\n"
		     "      poll_interval: 100ms\n"
		     "      max_backoff: 400ms\n"
		     "      timeout: 1s\n"
		     "  - name: out\n"
		     "    plugin: sink\n"
		     "    options: { path: '@DIR@/out.jsonl' }\n",
		     w->hr->url) < 0)
		return false;
	conf = kd_config(instances, "journal:\n  dedupe_window: 1ms\n");
	w->kd = kd_prepare(tag, conf,
			   "routes:\n  - name: staff\n    match: { type: staff.> }\n    to: out\n"
			   "default: out\n");
	/* Secrets the way an operator keeps them: files only the owner may read. */
	key_path = strdup(kd_path(w->kd, "pseudonym.key"));
	if ((f = fopen(key_path, "w"))) {
		fputs("a test key of more than sixteen bytes\n", f);
		fclose(f);
	}
	chmod(key_path, 0600);
	free(key_path);
	free(test_write_file(w->kd->dir, "hr.password", password));
	chmod(kd_path(w->kd, "hr.password"), 0600);
	if (kd_launch(w->kd) != 0) {
		char *log = kd_log(w->kd);
		fprintf(stderr, "kanald did not start:\n%s\n", log ? log : "");
		free(log);
		CU_FAIL("kanald did not start");
		goto out;
	}
	w->sub = kd_subscribe(w->kd, "");
	ok = true;
out:
	free(instances);
	free(conf);
	return ok;
}

/* Keeps every stream payload that has arrived (bounded: waits at most `ms` for more). */
static void s_drain_stream(world_t *w, int ms)
{
	char topic[256], *payload;

	while (w->sub && kd_next(w->sub, topic, sizeof topic, &payload, ms) == 0) {
		size_t n = payload ? strlen(payload) : 0;
		char *grown = realloc(w->stream, w->stream_len + n + 2);
		if (grown) {
			w->stream = grown;
			memcpy(w->stream + w->stream_len, payload ? payload : "", n);
			w->stream_len += n;
			w->stream[w->stream_len++] = '\n';
			w->stream[w->stream_len] = '\0';
		}
		free(payload);
		ms = 100;
	}
}

/* True when text holds a clear CPR number outside a pseudonym (person:<64 hex> is an HMAC,
 * which can by chance contain ten digits that look like one). Prints what it found. */
static bool s_clear_cpr(const char *what, const char *text)
{
	char *copy, *p;
	size_t off, len;
	bool found;

	if (!text)
		return false;
	copy = strdup(text);
	for (p = copy; (p = strstr(p, "person:"));) {
		p += 7;
		for (int i = 0; i < 64 && *p; i++)
			*p++ = 'x';
	}
	found = kanal_cpr_find(copy, strlen(copy), &off, &len);
	if (found)
		fprintf(stderr, "clear CPR number in %s: ...%.40s...\n", what,
			copy + (off > 20 ? off - 20 : 0));
	free(copy);
	return found;
}

/* Stops everything, after checking that neither kanald's log nor the event stream ever
 * held a clear CPR number and that kanald stops cleanly. */
static void s_end(world_t *w)
{
	if (w->kd) {
		char *log = kd_log(w->kd);
		s_drain_stream(w, 200);
		CU_ASSERT(!s_clear_cpr("kanald's log", log));
		CU_ASSERT(!s_clear_cpr("the event stream", w->stream));
		free(log);
		/* A clean stop (under ASan this also reports leaks through the exit status). */
		if (w->kd->pid > 0)
			CU_ASSERT_EQUAL(kd_stop(w->kd, SIGTERM, WAIT), 0);
	}
	kd_unsubscribe(&w->sub);
	kd_destroy(&w->kd);
	upstream_stop(&w->hr);
	free(w->stream);
	memset(w, 0, sizeof *w);
}

/* Registers a change in the HR system; returns the HTTP status. */
static long s_register(world_t *w, const char *json)
{
	char *body = NULL;
	long st = upstream_http(w->hr, "POST", "/hr/v1/absences", json, "application/json", &body);

	if (st != 201)
		fprintf(stderr, "POST /hr/v1/absences %s -> %ld %s\n", json, st, body ? body : "");
	free(body);
	return st;
}

static const char *s_out(world_t *w)
{
	return kd_path(w->kd, "out.jsonl");
}

/* How many events in the sink's file have this id. */
static int s_count_id(world_t *w, const char *id)
{
	char *text = test_read_file(s_out(w), NULL), needle[256];
	int n = 0;

	snprintf(needle, sizeof needle, "\"id\":\"%s\"", id);
	for (char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	free(text);
	return n;
}

/* Waits (bounded) until the event with this id is in the sink's file. */
static bool s_wait_id(world_t *w, const char *id)
{
	for (int waited = 0; waited < WAIT; waited += 50) {
		if (s_count_id(w, id) > 0)
			return true;
		usleep(50 * 1000);
	}
	fprintf(stderr, "event %s did not arrive within %d ms\n", id, WAIT);
	return false;
}

/* The event with this id from the sink's file (a new reference), or NULL. */
static json_t *s_event(world_t *w, const char *id)
{
	char *text = test_read_file(s_out(w), NULL), *save = NULL;
	json_t *found = NULL;

	for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line && !found;
	     line = strtok_r(NULL, "\n", &save)) {
		json_t *e = json_loads(line, 0, NULL);
		if (e && !strcmp(json_string_value(json_object_get(e, "id")) ?: "", id))
			found = e;
		else
			json_decref(e);
	}
	free(text);
	return found;
}

/* Waits (bounded) until kanald's log holds needle. */
static bool s_wait_log(world_t *w, const char *needle)
{
	for (int waited = 0; waited < WAIT; waited += 50) {
		char *log = kd_log(w->kd);
		bool has = log && strstr(log, needle);
		free(log);
		if (has)
			return true;
		usleep(50 * 1000);
	}
	fprintf(stderr, "the log did not show \"%s\" within %d ms\n", needle, WAIT);
	return false;
}

static int s_log_count(world_t *w, const char *needle)
{
	char *log = kd_log(w->kd);
	int n = 0;

	for (char *p = log; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	free(log);
	return n;
}

static const char *s_str(json_t *e, const char *field)
{
	return json_string_value(json_object_get(json_object_get(e, "data"), field));
}

static json_t *s_data(json_t *e, const char *field)
{
	return json_object_get(json_object_get(e, "data"), field);
}

/* The pseudonym the connector should put in subject for this CPR number. */
static void s_pseudonym(world_t *w, const char *cpr, char *buf)
{
	kanal_pseudonym_key_t *key = NULL;

	buf[0] = '\0';
	if (kanal_pseudonym_key_load(kd_path(w->kd, "pseudonym.key"), &key, NULL) == 0)
		kanal_cpr_pseudonym(key, cpr, buf, KANAL_PSEUDONYM_SIZE);
	kanal_pseudonym_key_destroy(&key);
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_each_code_maps_to_its_type_and_fields(void)
{
	static const struct {
		const char *id, *json, *type, *code;
	} cases[] = {
		{ "C-SYG",
		  "\"employment\":\"E-1001\",\"code\":\"SYG\",\"start\":\"24.11.2026\","
		  "\"end\":\"25.11.2026\"",
		  "staff.absence.registered", "SYG" },
		{ "C-BARN1",
		  "\"employment\":\"E-2001\",\"code\":\"BARN1\",\"start\":\"24.11.2026\","
		  "\"end\":\"24.11.2026\"",
		  "staff.absence.registered", "BARN1" },
		{ "C-BARN2",
		  "\"employment\":\"E-2001\",\"code\":\"BARN2\",\"start\":\"25.11.2026\","
		  "\"end\":\"25.11.2026\"",
		  "staff.absence.registered", "BARN2" },
		{ "C-OMSORG",
		  "\"employment\":\"E-1002\",\"code\":\"OMSORG\",\"start\":\"26.11.2026\","
		  "\"end\":\"26.11.2026\"",
		  "staff.absence.registered", "OMSORG" },
		{ "C-BARSEL",
		  "\"employment\":\"E-2002\",\"code\":\"BARSEL\",\"start\":\"01.12.2026\","
		  "\"end\":\"31.05.2027\"",
		  "staff.absence.registered", "BARSEL" },
		{ "C-ORLOV",
		  "\"employment\":\"E-1000\",\"code\":\"ORLOV\",\"start\":\"07.12.2026\","
		  "\"end\":\"07.12.2026\"",
		  "staff.absence.registered", "ORLOV" },
		{ "C-AFSP",
		  "\"employment\":\"E-2002\",\"code\":\"AFSP\",\"start\":\"24.11.2026\","
		  "\"end\":\"24.11.2026\",\"hours\":\"3,5\"",
		  "staff.absence.registered", "AFSP" },
		/* Three weeks in July: 15 holiday days, all in the main holiday period. */
		{ "C-FERIE",
		  "\"employment\":\"E-1001\",\"code\":\"FERIE\",\"start\":\"06.07.2026\","
		  "\"end\":\"24.07.2026\"",
		  "staff.holiday.registered", "FERIE" },
		/* The sixth holiday week is not main holiday, however long. */
		{ "C-FERIEFRI",
		  "\"employment\":\"E-1000\",\"code\":\"FERIEFRI\","
		  "\"start\":\"06.07.2026\",\"end\":\"24.07.2026\"",
		  "staff.holiday.registered", "FERIEFRI" },
		/* An unknown code is emitted with the code kept (unknown_codes: emit). */
		{ "C-KURSUS",
		  "\"employment\":\"E-1002\",\"code\":\"kursus\",\"start\":\"24.11.2026\","
		  "\"end\":\"24.11.2026\"",
		  "staff.absence.registered", "KURSUS" },
	};
	world_t w;
	char json[512], id[64], want_subject[KANAL_PSEUDONYM_SIZE];
	json_t *e;

	if (!s_begin(&w, "staff-codes", "s3cret\n"))
		goto out;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		snprintf(json, sizeof json, "{\"id\":\"%s\",%s}", cases[i].id, cases[i].json);
		CU_ASSERT_EQUAL(s_register(&w, json), 201);
	}
	/* Easter 2026 (2 to 6 April) leaves 7 working days in two weeks; two weeks of July
	 * are not a main holiday; half a day given in hours is half a holiday day. */
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"H-EASTER\",\"employment\":\"E-1001\","
				       "\"code\":\"FERIE\",\"start\":\"30.03.2026\","
				       "\"end\":\"10.04.2026\"}"),
			201);
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"H-2WEEKS\",\"employment\":\"E-2001\","
				       "\"code\":\"FERIE\",\"start\":\"06.07.2026\","
				       "\"end\":\"17.07.2026\"}"),
			201);
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"H-HALF\",\"employment\":\"E-2001\","
				       "\"code\":\"FERIE\",\"start\":\"02.12.2026\","
				       "\"end\":\"02.12.2026\",\"hours\":3.7}"),
			201);

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		snprintf(id, sizeof id, "hr-absence-%s-v1", cases[i].id);
		if (!s_wait_id(&w, id)) {
			CU_FAIL("an absence did not arrive");
			continue;
		}
		e = s_event(&w, id);
		CU_ASSERT_PTR_NOT_NULL(e);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "type")),
				       cases[i].type);
		CU_ASSERT_STRING_EQUAL(s_str(e, "code"), cases[i].code);
		CU_ASSERT_STRING_EQUAL(s_str(e, "absence"), cases[i].id);
		CU_ASSERT_EQUAL(json_integer_value(s_data(e, "version")), 1);
		CU_ASSERT_EQUAL(s_count_id(&w, id), 1);
		json_decref(e);
	}
	e = s_event(&w, "hr-absence-C-SYG-v1");
	if (e) {
		/* Dates become YYYY-MM-DD; the employee is correlated by pseudonym only. */
		CU_ASSERT_STRING_EQUAL(s_str(e, "from"), "2026-11-24");
		CU_ASSERT_STRING_EQUAL(s_str(e, "to"), "2026-11-25");
		CU_ASSERT_STRING_EQUAL(s_str(e, "employment"), "E-1001");
		CU_ASSERT_STRING_EQUAL(s_str(e, "department"), "solsikken");
		CU_ASSERT_STRING_EQUAL(s_str(e, "employee_cpr"), "1807794260");
		CU_ASSERT_PTR_NULL(s_data(e, "hours"));
		s_pseudonym(&w, "1807794260", want_subject);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "subject")),
				       want_subject);
		CU_ASSERT_PTR_NOT_NULL(json_object_get(e, "time"));
		json_decref(e);
	}
	e = s_event(&w, "hr-absence-C-AFSP-v1");
	CU_ASSERT(e && json_real_value(s_data(e, "hours")) == 3.5);
	json_decref(e);
	e = s_event(&w, "hr-absence-C-FERIE-v1");
	CU_ASSERT(e && json_integer_value(s_data(e, "days")) == 15);
	CU_ASSERT(e && json_is_true(s_data(e, "main_holiday")));
	CU_ASSERT(e && !strcmp(s_str(e, "from") ?: "", "2026-07-06"));
	json_decref(e);
	e = s_event(&w, "hr-absence-C-FERIEFRI-v1");
	CU_ASSERT(e && json_integer_value(s_data(e, "days")) == 15);
	CU_ASSERT(e && json_is_false(s_data(e, "main_holiday")));
	json_decref(e);
	CU_ASSERT(s_wait_id(&w, "hr-absence-H-EASTER-v1"));
	e = s_event(&w, "hr-absence-H-EASTER-v1");
	CU_ASSERT(e && json_integer_value(s_data(e, "days")) == 7);
	CU_ASSERT(e && json_is_false(s_data(e, "main_holiday")));
	json_decref(e);
	CU_ASSERT(s_wait_id(&w, "hr-absence-H-2WEEKS-v1"));
	e = s_event(&w, "hr-absence-H-2WEEKS-v1");
	CU_ASSERT(e && json_integer_value(s_data(e, "days")) == 10);
	CU_ASSERT(e && json_is_false(s_data(e, "main_holiday")));
	json_decref(e);
	CU_ASSERT(s_wait_id(&w, "hr-absence-H-HALF-v1"));
	e = s_event(&w, "hr-absence-H-HALF-v1");
	CU_ASSERT(e && json_real_value(s_data(e, "days")) == 0.5);
	json_decref(e);
	/* The unknown code was passed on, and the operator told. */
	CU_ASSERT(s_wait_log(&w, "code 'KURSUS' is not one kanal knows"));
out:
	s_end(&w);
}

static void test_versions_and_cancellations(void)
{
	world_t w;
	json_t *e;

	if (!s_begin(&w, "staff-versions", "s3cret\n"))
		goto out;
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"V-1\",\"employment\":\"E-1001\",\"code\":\"SYG\","
				       "\"start\":\"24.11.2026\",\"end\":\"24.11.2026\"}"),
			201);
	CU_ASSERT(s_wait_id(&w, "hr-absence-V-1-v1"));
	/* Still sick: version 2 extends the period and is emitted as an update. */
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"V-1\",\"end\":\"26.11.2026\"}"), 201);
	CU_ASSERT(s_wait_id(&w, "hr-absence-V-1-v2"));
	e = s_event(&w, "hr-absence-V-1-v2");
	CU_ASSERT(e && !strcmp(s_str(e, "to") ?: "", "2026-11-26"));
	CU_ASSERT(e && json_integer_value(s_data(e, "version")) == 2);
	json_decref(e);
	/* The HR system sends version 1 again: older than what was emitted, so not emitted. */
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"V-1\",\"version\":1,\"end\":\"24.11.2026\"}"),
			201);
	/* The cancellation, version 3, comes after the replay in the feed. */
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"V-1\",\"action\":\"cancel\"}"), 201);
	CU_ASSERT(s_wait_id(&w, "hr-absence-V-1-v3-cancel"));
	e = s_event(&w, "hr-absence-V-1-v3-cancel");
	CU_ASSERT(e && !strcmp(json_string_value(json_object_get(e, "type")) ?: "",
			       "staff.absence.cancelled"));
	CU_ASSERT(e && !strcmp(s_str(e, "absence") ?: "", "V-1"));
	CU_ASSERT(e && json_integer_value(s_data(e, "version")) == 3);
	CU_ASSERT(e && !strcmp(s_str(e, "employment") ?: "", "E-1001"));
	json_decref(e);
	CU_ASSERT_EQUAL(s_count_id(&w, "hr-absence-V-1-v1"), 1);
	CU_ASSERT_EQUAL(s_count_id(&w, "hr-absence-V-1-v2"), 1);

	/* An HR system that cancels without raising the version: the cancel still counts,
	 * once; so does a holiday's cancellation. */
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"V-2\",\"employment\":\"E-2001\","
				       "\"code\":\"FERIE\",\"start\":\"03.08.2026\","
				       "\"end\":\"07.08.2026\"}"),
			201);
	CU_ASSERT(s_wait_id(&w, "hr-absence-V-2-v1"));
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"V-2\",\"version\":1,\"action\":\"cancel\"}"),
			201);
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"V-2\",\"version\":1,\"action\":\"cancel\"}"),
			201);
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"V-3\",\"employment\":\"E-2002\","
				       "\"code\":\"SYG\",\"start\":\"24.11.2026\","
				       "\"end\":\"24.11.2026\"}"),
			201);
	/* V-3 comes after both cancels in the feed: once it is here, they were read. */
	CU_ASSERT(s_wait_id(&w, "hr-absence-V-3-v1"));
	CU_ASSERT_EQUAL(s_count_id(&w, "hr-absence-V-2-v1-cancel"), 1);
	e = s_event(&w, "hr-absence-V-2-v1-cancel");
	CU_ASSERT(e && !strcmp(json_string_value(json_object_get(e, "type")) ?: "",
			       "staff.absence.cancelled"));
	CU_ASSERT(e && !strcmp(s_str(e, "code") ?: "", "FERIE"));
	json_decref(e);
	CU_ASSERT_EQUAL(kd_lines(s_out(&w)), 6);
out:
	s_end(&w);
}

static void test_restart_after_the_feed_was_rebuilt_emits_no_duplicates(void)
{
	world_t w;
	size_t before;

	if (!s_begin(&w, "staff-restart", "s3cret\n"))
		goto out;
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"R-1\",\"employment\":\"E-1001\",\"code\":\"SYG\","
				       "\"start\":\"24.11.2026\",\"end\":\"24.11.2026\"}"),
			201);
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"R-2\",\"employment\":\"E-2001\","
				       "\"code\":\"BARN1\",\"start\":\"24.11.2026\","
				       "\"end\":\"24.11.2026\"}"),
			201);
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"R-1\",\"end\":\"27.11.2026\"}"), 201);
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"R-2\",\"action\":\"cancel\"}"), 201);
	CU_ASSERT(s_wait_id(&w, "hr-absence-R-2-v2-cancel"));
	before = kd_lines(s_out(&w));
	CU_ASSERT_EQUAL(before, 4);
	CU_ASSERT_EQUAL(kd_stop(w.kd, SIGTERM, WAIT), 0);

	/* While kanald is down the HR system rebuilds its change log (every absence again,
	 * new cursors) and registers one more absence. */
	CU_ASSERT_EQUAL(upstream_http(w.hr, "POST", "/hr-sim/reset", "", NULL, NULL), 200);
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"R-3\",\"employment\":\"E-1002\","
				       "\"code\":\"OMSORG\",\"start\":\"25.11.2026\","
				       "\"end\":\"25.11.2026\"}"),
			201);
	kd_unsubscribe(&w.sub);
	if (kd_restart(w.kd) != 0) {
		CU_FAIL("kanald did not start again");
		goto out;
	}
	w.sub = kd_subscribe(w.kd, "");
	CU_ASSERT(s_wait_id(&w, "hr-absence-R-3-v1"));
	CU_ASSERT(s_wait_log(&w, "410 Gone"));
	/* R-1 v2 and the R-2 cancel came again in the rebuilt log; none was emitted again. */
	CU_ASSERT_EQUAL(kd_lines(s_out(&w)), before + 1);
	CU_ASSERT_EQUAL(s_count_id(&w, "hr-absence-R-1-v1"), 1);
	CU_ASSERT_EQUAL(s_count_id(&w, "hr-absence-R-1-v2"), 1);
	CU_ASSERT_EQUAL(s_count_id(&w, "hr-absence-R-2-v2-cancel"), 1);

	/* And a plain restart reads on from the stored cursor. */
	CU_ASSERT_EQUAL(kd_stop(w.kd, SIGTERM, WAIT), 0);
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"R-4\",\"employment\":\"E-2002\","
				       "\"code\":\"SYG\",\"start\":\"26.11.2026\","
				       "\"end\":\"26.11.2026\"}"),
			201);
	kd_unsubscribe(&w.sub);
	if (kd_restart(w.kd) != 0) {
		CU_FAIL("kanald did not start again");
		goto out;
	}
	w.sub = kd_subscribe(w.kd, "");
	CU_ASSERT(s_wait_id(&w, "hr-absence-R-4-v1"));
	CU_ASSERT_EQUAL(kd_lines(s_out(&w)), before + 2);
	CU_ASSERT_EQUAL(s_log_count(&w, "410 Gone"), 1);
out:
	s_end(&w);
}

static void test_feed_faults_lose_nothing(void)
{
	static const struct {
		const char *mode, *logged;
	} faults[] = {
		{ "error", "HTTP 503" },
		{ "garbage", "not well-formed XML" },
		{ "drop", "no answer" },
		{ "hang", "timed out" },
	};
	world_t w;
	char json[256], id[64];

	if (!s_begin(&w, "staff-faults", "s3cret\n"))
		goto out;
	for (size_t i = 0; i < sizeof faults / sizeof *faults; i++) {
		int seen = s_log_count(&w, faults[i].logged);

		/* Registered first (a fault applies to every call), then the feed fails until
		 * kanald has logged the failure at least once. */
		snprintf(json, sizeof json,
			 "{\"id\":\"F-%s\",\"employment\":\"E-1001\","
			 "\"code\":\"SYG\",\"start\":\"24.11.2026\",\"end\":\"24.11.2026\"}",
			 faults[i].mode);
		CU_ASSERT_EQUAL(s_register(&w, json), 201);
		CU_ASSERT_EQUAL(upstream_fault(w.hr, faults[i].mode, 0), 0);
		for (int waited = 0; waited < WAIT && s_log_count(&w, faults[i].logged) <= seen;
		     waited += 50)
			usleep(50 * 1000);
		CU_ASSERT(s_log_count(&w, faults[i].logged) > seen);
		CU_ASSERT_EQUAL(upstream_fault(w.hr, "none", 0), 0);
		snprintf(id, sizeof id, "hr-absence-F-%s-v1", faults[i].mode);
		CU_ASSERT(s_wait_id(&w, id));
		CU_ASSERT_EQUAL(s_count_id(&w, id), 1);
	}
	/* The errors name the call and its cause. */
	CU_ASSERT(s_wait_log(&w, "/hr/v1/absences?max=100"));
	CU_ASSERT(s_wait_log(&w, "the feed answers again after"));
	CU_ASSERT_EQUAL(kd_lines(s_out(&w)), 4);
out:
	s_end(&w);
}

static void test_invalid_absence_is_reported_and_skipped(void)
{
	world_t w;

	if (!s_begin(&w, "staff-invalid", "s3cret\n"))
		goto out;
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"BAD-1\",\"employment\":\"E-1001\","
				       "\"code\":\"SYG\",\"start\":\"31.02.2026\","
				       "\"end\":\"02.03.2026\"}"),
			201);
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"BAD-2\",\"employment\":\"E-1001\","
				       "\"code\":\"SYG\",\"start\":\"10.03.2026\","
				       "\"end\":\"01.03.2026\"}"),
			201);
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"BAD-3\",\"employment\":\"E-1001\","
				       "\"cpr\":\"18077942\",\"code\":\"SYG\","
				       "\"start\":\"10.03.2026\",\"end\":\"10.03.2026\"}"),
			201);
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"OK-1\",\"employment\":\"E-2001\","
				       "\"code\":\"SYG\",\"start\":\"24.11.2026\","
				       "\"end\":\"24.11.2026\"}"),
			201);
	CU_ASSERT(s_wait_id(&w, "hr-absence-OK-1-v1"));
	CU_ASSERT(s_wait_log(&w, "absence BAD-1 version 1: field 'start': \"31.02.2026\" is not "
				 "a date"));
	CU_ASSERT(s_wait_log(&w, "absence BAD-2 version 1: field 'end': 2026-03-01 is before"));
	CU_ASSERT(s_wait_log(&w, "absence BAD-3 version 1: field 'cpr': not a valid CPR number"));
	CU_ASSERT_EQUAL(s_count_id(&w, "hr-absence-BAD-1-v1"), 0);
	CU_ASSERT_EQUAL(s_count_id(&w, "hr-absence-BAD-2-v1"), 0);
	CU_ASSERT_EQUAL(kd_lines(s_out(&w)), 1);
	/* Corrected as version 2, the absence arrives. */
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"BAD-1\",\"start\":\"27.02.2026\"}"), 201);
	CU_ASSERT(s_wait_id(&w, "hr-absence-BAD-1-v2"));
out:
	s_end(&w);
}

static void test_unsafe_or_foreign_xml_is_refused(void)
{
	world_t w;

	if (!s_begin(&w, "staff-xml", "s3cret\n"))
		goto out;
	/* An external entity (XXE): refused whole, nothing read from the file system. */
	CU_ASSERT_EQUAL(
		upstream_http(w.hr, "POST", "/hr-sim/raw",
			      "<?xml version=\"1.0\"?>\n"
			      "<!DOCTYPE hrAbsence [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n"
			      "<hrAbsence xmlns=\"urn:kanal:sim:hr:absence:1\" next=\"g1.1\">"
			      "<absence id=\"X-1\" version=\"1\" action=\"upsert\">"
			      "<employment>&x;</employment><cpr>1807794260</cpr>"
			      "<department>solsikken</department><code>SYG</code>"
			      "<start>24.11.2026</start><end>24.11.2026</end></absence>"
			      "</hrAbsence>",
			      "application/xml", NULL),
		200);
	CU_ASSERT(s_wait_log(&w, "DOCTYPE"));
	/* Another vocabulary altogether. */
	CU_ASSERT_EQUAL(
		upstream_http(w.hr, "POST", "/hr-sim/raw",
			      "<?xml version=\"1.0\"?><feed xmlns=\"urn:other\" next=\"1\"/>",
			      "application/xml", NULL),
		200);
	CU_ASSERT(s_wait_log(&w, "the document element is not hrAbsence"));
	/* The feed itself goes on. */
	CU_ASSERT_EQUAL(s_register(&w, "{\"id\":\"X-2\",\"employment\":\"E-1001\","
				       "\"code\":\"SYG\",\"start\":\"24.11.2026\","
				       "\"end\":\"24.11.2026\"}"),
			201);
	CU_ASSERT(s_wait_id(&w, "hr-absence-X-2-v1"));
	CU_ASSERT_EQUAL(s_count_id(&w, "hr-absence-X-1-v1"), 0);
out:
	s_end(&w);
}

/* tests/data/staff/vendor-page.xml: the feed as another vendor might write it (a namespace
 * prefix, hyphenated CPR numbers, a decimal comma, blanks, an unknown element, a bare
 * cancellation) is read the same way. */
static void test_a_vendor_page_in_another_style(void)
{
	char *page = test_read_file("tests/data/staff/vendor-page.xml", NULL);
	world_t w;
	json_t *e;

	CU_ASSERT_PTR_NOT_NULL(page);
	if (!page)
		return;
	if (!s_begin(&w, "staff-vendor", "s3cret\n"))
		goto out;
	CU_ASSERT_EQUAL(upstream_http(w.hr, "POST", "/hr-sim/raw", page, "application/xml", NULL),
			200);
	CU_ASSERT(s_wait_id(&w, "hr-absence-VEND-2-v2-cancel"));
	e = s_event(&w, "hr-absence-VEND-1-v1");
	CU_ASSERT(e && !strcmp(s_str(e, "employment") ?: "", "E-1001"));
	CU_ASSERT(e && !strcmp(s_str(e, "employee_cpr") ?: "", "1807794260"));
	CU_ASSERT(e && !strcmp(s_str(e, "code") ?: "", "AFSP"));
	CU_ASSERT(e && json_real_value(s_data(e, "hours")) == 7.4);
	CU_ASSERT(e && json_object_get(e, "time"));
	json_decref(e);
	/* Four weeks from 27 April: 19 holiday days (Ascension Day is not one), 15 of them
	 * in May — main holiday. */
	e = s_event(&w, "hr-absence-VEND-2-v1");
	CU_ASSERT(e && json_integer_value(s_data(e, "days")) == 19);
	CU_ASSERT(e && json_is_true(s_data(e, "main_holiday")));
	json_decref(e);
	e = s_event(&w, "hr-absence-VEND-2-v2-cancel");
	CU_ASSERT(e && !strcmp(json_string_value(json_object_get(e, "type")) ?: "",
			       "staff.absence.cancelled"));
	CU_ASSERT(e && json_integer_value(s_data(e, "version")) == 2);
	CU_ASSERT(e && !s_data(e, "employee_cpr"));
	/* The bare cancellation still names the employment and department emitted before,
	 * which the calendar and the daycare system find the absence by. */
	CU_ASSERT(e && !strcmp(s_str(e, "employment") ?: "", "E-2001"));
	CU_ASSERT(e && !strcmp(s_str(e, "department") ?: "", "maelkeboetten"));
	json_decref(e);
	CU_ASSERT_EQUAL(kd_lines(s_out(&w)), 3);
out:
	s_end(&w);
	free(page);
}

/* Secrets other users could read are refused at start, naming the option and the fix. */
static void test_a_readable_password_file_is_refused(void)
{
	char *conf = kd_config("  - name: staff\n    plugin: staff\n    options:\n"
			       "      base_url: 'http://127.0.0.1:9'\n      user: kanal\n"
			       "      password_file: hr.password\n",
			       NULL);
	kd_t *kd = kd_prepare("staff-secret", conf, NULL);
	char *log;

	free(test_write_file(kd->dir, "hr.password", "s3cret\n"));
	chmod(kd_path(kd, "hr.password"), 0644);
	CU_ASSERT_NOT_EQUAL(kd_launch(kd), 0);
	log = kd_log(kd);
	CU_ASSERT(log && strstr(log, "option 'password_file'") && strstr(log, "chmod 600"));
	CU_ASSERT(log && !strstr(log, "s3cret"));
	free(log);
	kd_destroy(&kd);
	free(conf);
}

static void test_wrong_password_is_reported(void)
{
	world_t w;

	if (!s_begin(&w, "staff-auth", "not-the-password\n"))
		goto out;
	CU_ASSERT(s_wait_log(&w, "HTTP 401"));
	CU_ASSERT(s_wait_log(&w, "/hr/v1/absences?max=100"));
	/* The password is never written to the log. */
	CU_ASSERT_EQUAL(s_log_count(&w, "not-the-password"), 0);
out:
	s_end(&w);
}

TEST_MAIN("staff", TEST(test_each_code_maps_to_its_type_and_fields),
	  TEST(test_versions_and_cancellations),
	  TEST(test_restart_after_the_feed_was_rebuilt_emits_no_duplicates),
	  TEST(test_feed_faults_lose_nothing), TEST(test_invalid_absence_is_reported_and_skipped),
	  TEST(test_unsafe_or_foreign_xml_is_refused), TEST(test_a_vendor_page_in_another_style),
	  TEST(test_wrong_password_is_reported), TEST(test_a_readable_password_file_is_refused))
