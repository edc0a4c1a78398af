/*
 * tests/integration/test_cpr_lookup.c — the cpr plugin end to end: the real kanald with a
 * cpr instance, routes whose enrich steps ask it, sinks that record what was delivered,
 * and the simulated CPR service (kanal-sim-cpr) on an ephemeral port. It checks the
 * mapping of the register's answer (names, relations, custody), address protection per
 * route, CPR validation (modulus 11 only a warning, a bad date rejected), the service's
 * faults, the cache, a service that is down, the audit log, a start refused without an
 * audit log, and a direct kanal_request from a plugin (tests/plugins/tp_cprclient.c) —
 * and that no clear CPR number reaches kanald's log, the event stream, the dead-letter
 * view or the audit log.
 *
 * CPR numbers never reach this program's output: they live in named constants, so a
 * failing CU_ASSERT prints the constant's name, never the number.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <kanal/kanal.h>

#include "kanald.h"
#include "test.h"
#include "upstream.h"

#define WAIT 8000 /* ms: the bound of every wait */

/* The synthetic population (examples/simulators/population.c). */
static const char *const IDA = "1404214382"; /* custody: Sofie (mother), Mads (father) */
static const char *const SOFIE = "2207884566";
static const char *const MADS = "1503851233";
static const char *const OLIVER = "0101184129";
static const char *const NOAH = "0903225017"; /* custody: Maja (mother) only */
static const char *const MAJA = "1111903128";
static const char *const LARS = "0506872215"; /* fails modulus 11 */
static const char *const ANNE = "0808931244"; /* protected address */
static const char *const SARA = "1208164105"; /* custody: Lise (3), Birgitte (5) */
static const char *const LISE = "1002913664";
static const char *const KASPER = "0404864117"; /* Sara's father; his custody ended */
static const char *const BIRGITTE = "1506754082";
static const char *const ALI = "2412990121";      /* emigrated (status 80) */
static const char *const ANDERS = "2412995123";   /* dead (status 90) */
static const char *const UNKNOWN = "0101901234";  /* a valid number nobody has */
static const char *const BAD_DATE = "3102851233"; /* 31 February */

/* The invocation context the simulator is told to accept. */
#define AGREEMENT "11111111-2222-4333-8444-555555555555"
#define USERSYSTEM "22222222-3333-4444-8555-666666666666"
#define USER "33333333-4444-4555-8666-777777777777"
#define SERVICE "44444444-5555-4666-8777-888888888888"

static const char *s_routes = "routes:\n"
			      "  - name: child-absence-to-guardians\n"
			      "    match: { type: child.absence.reported }\n"
			      "    enrich:\n"
			      "      - service: cpr\n"
			      "        into: data.person\n"
			      "        purpose: \"guardians' calendars\"\n"
			      "        protected_address: true\n" /* asks, but is not allowed */
			      "        timeout: 5s\n"
			      "    to: guardians\n"
			      "    retry: { max_attempts: 2, backoff: 100ms, max_backoff: 100ms }\n"
			      "  - name: letter-to-citizen\n"
			      "    match: { type: post.letter.send }\n"
			      "    enrich:\n"
			      "      - service: cpr\n"
			      "        into: data.person\n"
			      "        purpose: letter delivery\n"
			      "        protected_address: true\n" /* asks, and is allowed */
			      "        timeout: 5s\n"
			      "    to: letters\n"
			      "    retry: { max_attempts: 2, backoff: 100ms, max_backoff: 100ms }\n"
			      "  - name: letter-preview\n"
			      "    match: { type: post.letter.preview }\n"
			      "    enrich:\n"
			      "      - service: cpr\n"
			      "        into: data.person\n"
			      "        purpose: letter preview\n" /* allowed, but does not ask */
			      "        timeout: 5s\n"
			      "    to: preview\n"
			      "    retry: { max_attempts: 2, backoff: 100ms, max_backoff: 100ms }\n"
			      "  - name: staff-absence-to-staffing\n"
			      "    match: { type: staff.absence.registered }\n"
			      "    enrich:\n"
			      "      - service: cpr\n"
			      "        into: data.person\n"
			      "        purpose: staffing\n"
			      "        on_error: skip\n"
			      "        timeout: 5s\n"
			      "    to: staffing\n"
			      "    retry: { max_attempts: 2, backoff: 100ms, max_backoff: 100ms }\n"
			      "  - name: direct-lookup\n"
			      "    match: { type: test.cpr.ask }\n"
			      "    to: client\n"
			      "  - name: direct-answers\n"
			      "    match: { type: test.cpr.answer }\n"
			      "    to: answers\n";

typedef struct fixture {
	upstream_t *up;
	kd_t *kd;
	void *stream; /* subscribed to everything, read at the end */
	long invalid; /* the requests the simulator may refuse as invalid: 0 but in one test;
		       * -1: not asked at the end (the test stopped the simulator) */
} fixture_t;

/* Starts the simulator (accepting the context above) and kanald with a cpr instance
 * whose extra options are `cpr_opts` (YAML lines indented by six, or ""). With
 * `expect_fail`, kanald is only prepared and launched, and may refuse to start. With
 * `answer_file`, the simulator answers every valid request with that file's content. */
static int s_start(fixture_t *fx, const char *tag, const char *cpr_opts, bool expect_fail,
		   const char *answer_file)
{
	const char *args[] = { "--set", "agreement=" AGREEMENT,
			       "--set", "usersystem=" USERSYSTEM,
			       "--set", "user=" USER,
			       "--set", "service=" SERVICE,
			       NULL,    NULL,
			       NULL };
	char *instances, *conf, *answer_setting = NULL;

	memset(fx, 0, sizeof *fx);
	if (answer_file && asprintf(&answer_setting, "answer_file=%s", answer_file) > 0) {
		args[8] = "--set";
		args[9] = answer_setting;
	}
	fx->up = upstream_start("cpr", args);
	free(answer_setting);
	if (!fx->up)
		return -1;
	if (asprintf(&instances,
		     "  - name: cpr\n"
		     "    plugin: cpr\n"
		     "    options:\n"
		     "      endpoint: '%s/cpr'\n"
		     "      service_agreement_uuid: " AGREEMENT "\n"
		     "      user_system_uuid: " USERSYSTEM "\n"
		     "      user_uuid: " USER "\n"
		     "%s"
		     "      timeout: 1s\n"
		     "      protected_address_routes: [letter-to-citizen, letter-preview]\n"
		     "%s%s"
		     "  - name: client\n"
		     "    plugin: '@TPLUGINS@/tp_cprclient.so'\n"
		     "  - name: guardians\n    plugin: sink\n"
		     "    options: { path: '@DIR@/guardians.jsonl' }\n"
		     "  - name: letters\n    plugin: sink\n"
		     "    options: { path: '@DIR@/letters.jsonl' }\n"
		     "  - name: preview\n    plugin: sink\n"
		     "    options: { path: '@DIR@/preview.jsonl' }\n"
		     "  - name: staffing\n    plugin: sink\n"
		     "    options: { path: '@DIR@/staffing.jsonl' }\n"
		     "  - name: answers\n    plugin: sink\n"
		     "    options: { path: '@DIR@/answers.jsonl' }\n",
		     fx->up->url,
		     strstr(cpr_opts, "service_uuid:") ? "" : "      service_uuid: " SERVICE "\n",
		     strstr(cpr_opts, "audit_log:") ? "" : "      audit_log: '@DIR@/audit.log'\n",
		     cpr_opts) < 0)
		return -1;
	conf = kd_config(instances, NULL);
	free(instances);
	if (expect_fail) {
		fx->kd = kd_prepare(tag, conf, s_routes);
		free(conf);
		return kd_launch(fx->kd);
	}
	fx->kd = kd_start(tag, conf, s_routes);
	free(conf);
	if (!fx->kd)
		return -1;
	fx->stream = kd_subscribe(fx->kd, "");
	return 0;
}

/* True when text holds the clear digits of any of the numbers this suite uses, or
 * anything kanal_cpr_find takes for a CPR number. */
static bool s_has_cpr(const char *text)
{
	const char *const all[] = {
		IDA,     SOFIE,    MADS, OLIVER, NOAH,   MAJA,     LARS, ANNE,
		UNKNOWN, BAD_DATE, SARA, LISE,   KASPER, BIRGITTE, ALI,  ANDERS
	};

	if (!text)
		return false;
	if (kd_has_clear_cpr(text))
		return true;
	for (size_t i = 0; i < sizeof all / sizeof *all; i++)
		if (strstr(text, all[i]))
			return true;
	return false;
}

static long s_counted(fixture_t *fx, const char *name);

/* Asserts that kanald's log, every happening on the event stream so far, the dead-letter
 * view and the audit log hold no clear CPR number, and that the simulator refused no
 * request as breaking the contract (it validates each against the official schema) but
 * those the test expects; then stops everything. */
static void s_finish(fixture_t *fx)
{
	if (fx->up && fx->invalid >= 0) {
		upstream_fault(fx->up, "none", 0); /* a test may leave the service "down" */
		CU_ASSERT_EQUAL(s_counted(fx, "invalid"), fx->invalid);
	}
	if (fx->kd && fx->kd->pid > 0) {
		char topic[256], *payload = NULL, *text;
		bool clean = true;

		for (int n = 0; n < 100000 && fx->stream &&
				kd_next(fx->stream, topic, sizeof topic, &payload, 300) == 0;
		     n++) {
			if (s_has_cpr(topic) || s_has_cpr(payload))
				clean = false;
			free(payload);
			payload = NULL;
		}
		CU_ASSERT_TRUE(clean); /* the event stream */
		text = kd_admin(fx->kd, "{\"cmd\":\"dlq.list\"}", WAIT);
		CU_ASSERT_FALSE(s_has_cpr(text)); /* the dead-letter view */
		free(text);
		kd_unsubscribe(&fx->stream);
		CU_ASSERT_EQUAL(kd_stop(fx->kd, SIGTERM, WAIT), 0);
	}
	if (fx->kd) {
		char *log = kd_log(fx->kd);
		char *audit = test_read_file(kd_path(fx->kd, "audit.log"), NULL);
		CU_ASSERT_FALSE(s_has_cpr(log));   /* kanald's log, the plugin's lines in it */
		CU_ASSERT_FALSE(s_has_cpr(audit)); /* the audit log */
		free(log);
		free(audit);
	}
	kd_unsubscribe(&fx->stream);
	kd_destroy(&fx->kd);
	upstream_stop(&fx->up);
}

/* Checks s_start's result; on failure cleans up what it started. Returns true when started. */
static bool s_started(fixture_t *fx, int rc)
{
	CU_ASSERT_EQUAL(rc, 0);
	if (rc == 0)
		return true;
	s_finish(fx);
	return false;
}

/* Sends an event of `type` with data {<field>: <cpr>, …extra} and asserts it is accepted. */
static void s_send(fixture_t *fx, const char *id, const char *type, const char *field,
		   const char *cpr, const char *extra_attrs)
{
	char *json;

	if (asprintf(&json,
		     "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"test\",\"type\":\"%s\"%s,"
		     "\"data\":{\"%s\":\"%s\",\"reason\":\"sick\",\"purpose\":\"test lookup\"}}",
		     id, type, extra_attrs ? extra_attrs : "", field, cpr) < 0)
		return;
	CU_ASSERT(kd_send_event(fx->kd, json, "accepted", WAIT, NULL));
	free(json);
}

/* The n-th (from 0) JSON line of a sink's file, waiting for it; NULL when it does not come. */
static json_t *s_line(fixture_t *fx, const char *file, size_t n)
{
	const char *path = kd_path(fx->kd, file);
	char *text, *line, *save = NULL;
	json_t *j = NULL;
	size_t i = 0;

	if (kd_wait_lines(path, n + 1, WAIT) < n + 1)
		return NULL;
	text = test_read_file(path, NULL);
	for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save), i++)
		if (i == n) {
			j = json_loads(line, 0, NULL);
			break;
		}
	free(text);
	return j;
}

/* The value at a dotted path ("data.person.relations.custody.0.cpr"); borrowed. */
static json_t *s_at(json_t *j, const char *path)
{
	char buf[256], *tok, *save = NULL;

	snprintf(buf, sizeof buf, "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && j; tok = strtok_r(NULL, ".", &save)) {
		if (json_is_array(j))
			j = json_array_get(j, strtoul(tok, NULL, 10));
		else
			j = json_object_get(j, tok);
	}
	return j;
}

/* True when the string at path equals want. */
static bool s_str_is(json_t *j, const char *path, const char *want)
{
	const char *v = json_string_value(s_at(j, path));
	return v && want && !strcmp(v, want);
}

/* One of the simulator's counts (GET /lookups: lookups, answered, faults, invalid); -1
 * when it does not answer. */
static long s_counted(fixture_t *fx, const char *name)
{
	char *body = NULL;
	long n = -1;

	if (upstream_http(fx->up, "GET", "/lookups", NULL, NULL, &body) == 200 && body) {
		json_t *j = json_loads(body, 0, NULL);
		json_t *v = json_object_get(j, name);
		n = json_is_integer(v) ? (long)json_integer_value(v) : -1;
		json_decref(j);
	}
	free(body);
	return n;
}

/* The simulator's count of PersonLookup operations served (-1 when it does not answer). */
static long s_lookups(fixture_t *fx)
{
	return s_counted(fx, "lookups");
}

/* The audit log's lines as JSON objects, waiting until there are at least n. */
static json_t *s_audit(fixture_t *fx, size_t n)
{
	const char *path = kd_path(fx->kd, "audit.log");
	json_t *all = json_array();
	char *text, *line, *save = NULL;

	kd_wait_lines(path, n, WAIT);
	text = test_read_file(path, NULL);
	for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save))
		json_array_append_new(all, json_loads(line, 0, NULL));
	free(text);
	return all;
}

/* Waits until the dead-letter view lists a letter, and returns it (malloc'd) or NULL. */
static char *s_wait_dead(fixture_t *fx)
{
	for (int waited = 0; waited < WAIT; waited += 50) {
		char *reply = kd_admin(fx->kd, "{\"cmd\":\"dlq.list\"}", WAIT);
		if (reply && strstr(reply, "\"event_id\""))
			return reply;
		free(reply);
		usleep(50 * 1000);
	}
	return NULL;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_enrich_maps_the_person(void)
{
	fixture_t fx;
	json_t *ev, *custody;

	if (!s_started(&fx, s_start(&fx, "cpr-map", "", false, NULL)))
		return;
	s_send(&fx, "abs-ida", "child.absence.reported", "child_cpr", IDA, NULL);
	ev = s_line(&fx, "guardians.jsonl", 0);
	CU_ASSERT_PTR_NOT_NULL(ev);
	if (!ev)
		goto out;
	CU_ASSERT_TRUE(s_str_is(ev, "id", "abs-ida"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.reason", "sick")); /* the event's own data is kept */
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.cpr", IDA));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.name.first", "Ida"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.name.last", "Hansen"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.name.addressing", "Hansen,Ida"));
	CU_ASSERT_PTR_NULL(s_at(ev, "data.person.name.middle"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.birth_date", "2021-04-14"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.sex", "K"));
	CU_ASSERT_EQUAL(json_integer_value(s_at(ev, "data.person.status")), 1);
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.civil_status", "U"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.address.street", "Solsikkevej"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.address.number", "12"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.address.postcode", "8000"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.address.city", "Aarhus C"));
	CU_ASSERT_EQUAL(json_integer_value(s_at(ev, "data.person.address.municipality")), 751);
	CU_ASSERT_TRUE(json_is_false(s_at(ev, "data.person.protected_address")));
	CU_ASSERT_TRUE(json_is_false(s_at(ev, "data.person.protection.address")));
	CU_ASSERT_TRUE(json_is_false(s_at(ev, "data.person.digital_post")));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.relations.mother", SOFIE));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.relations.father", MADS));
	/* Ida: two custody holders, her mother and her father. */
	custody = s_at(ev, "data.person.relations.custody");
	CU_ASSERT_EQUAL(json_array_size(custody), 2);
	CU_ASSERT_TRUE(s_str_is(custody, "0.cpr", SOFIE));
	CU_ASSERT_TRUE(s_str_is(custody, "0.type", "mother"));
	CU_ASSERT_TRUE(s_str_is(custody, "1.cpr", MADS));
	CU_ASSERT_TRUE(s_str_is(custody, "1.type", "father"));
	json_decref(ev);

	/* Noah: one holder, his mother; his father is a relation without custody. */
	s_send(&fx, "abs-noah", "child.absence.reported", "child_cpr", NOAH, NULL);
	ev = s_line(&fx, "guardians.jsonl", 1);
	CU_ASSERT_PTR_NOT_NULL(ev);
	if (!ev)
		goto out;
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.name.first", "Noah"));
	custody = s_at(ev, "data.person.relations.custody");
	CU_ASSERT_EQUAL(json_array_size(custody), 1);
	CU_ASSERT_TRUE(s_str_is(custody, "0.cpr", MAJA));
	CU_ASSERT_TRUE(s_str_is(custody, "0.type", "mother"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.relations.father", LARS));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.address.floor", "2"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.address.door", "th"));
	json_decref(ev);

	/* Mads, through employee_cpr (cpr_fields): spouse and children come from the register. */
	s_send(&fx, "abs-mads", "staff.absence.registered", "employee_cpr", MADS, NULL);
	ev = s_line(&fx, "staffing.jsonl", 0);
	CU_ASSERT_PTR_NOT_NULL(ev);
	if (!ev)
		goto out;
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.relations.spouse", SOFIE));
	CU_ASSERT_EQUAL(json_array_size(s_at(ev, "data.person.relations.children")), 2);
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.relations.children.0", IDA));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.relations.children.1", OLIVER));
	CU_ASSERT_EQUAL(json_array_size(s_at(ev, "data.person.relations.custody")), 0);
	CU_ASSERT_TRUE(json_is_true(s_at(ev, "data.person.digital_post")));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.civil_status", "G"));
	json_decref(ev);
out:
	s_finish(&fx);
}

/* The contract's first fact: custody is on the child and points sideways — types 3/4 name
 * the mother/father (CPR from relationer/mor, far), 5/6 carry their own CPR, an ended one
 * has a Sletdato; a parent's children list includes children without custody. */
static void test_custody_is_read_on_the_child(void)
{
	fixture_t fx;
	json_t *ev, *custody;

	if (!s_started(&fx, s_start(&fx, "cpr-custody", "", false, NULL)))
		return;
	s_send(&fx, "c-sara", "staff.absence.registered", "employee_cpr", SARA, NULL);
	ev = s_line(&fx, "staffing.jsonl", 0);
	CU_ASSERT_PTR_NOT_NULL(ev);
	custody = s_at(ev, "data.person.relations.custody");
	CU_ASSERT_EQUAL(json_array_size(custody), 2); /* the father's ended custody is not */
	CU_ASSERT_TRUE(s_str_is(custody, "0.cpr", LISE));
	CU_ASSERT_TRUE(s_str_is(custody, "0.type", "mother"));
	CU_ASSERT_EQUAL(json_integer_value(s_at(custody, "0.code")), 3);
	CU_ASSERT_TRUE(s_str_is(custody, "1.cpr", BIRGITTE));
	CU_ASSERT_TRUE(s_str_is(custody, "1.type", "other"));
	CU_ASSERT_EQUAL(json_integer_value(s_at(custody, "1.code")), 5);
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.relations.father", KASPER));
	json_decref(ev);

	/* Kasper's children list names Sara, but he holds no custody of her. */
	s_send(&fx, "c-kasper", "staff.absence.registered", "employee_cpr", KASPER, NULL);
	ev = s_line(&fx, "staffing.jsonl", 1);
	CU_ASSERT_PTR_NOT_NULL(ev);
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.relations.children.0", SARA));
	CU_ASSERT_EQUAL(json_array_size(s_at(ev, "data.person.relations.custody_of")), 0);
	CU_ASSERT_PTR_NOT_NULL(s_at(ev, "data.person.relations.custody_of"));
	json_decref(ev);

	/* Lise does; Mads holds custody of both his children. */
	s_send(&fx, "c-lise", "staff.absence.registered", "employee_cpr", LISE, NULL);
	ev = s_line(&fx, "staffing.jsonl", 2);
	CU_ASSERT_EQUAL(json_array_size(s_at(ev, "data.person.relations.custody_of")), 1);
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.relations.custody_of.0", SARA));
	json_decref(ev);
	s_send(&fx, "c-mads", "staff.absence.registered", "employee_cpr", MADS, NULL);
	ev = s_line(&fx, "staffing.jsonl", 3);
	CU_ASSERT_EQUAL(json_array_size(s_at(ev, "data.person.relations.custody_of")), 2);
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.relations.custody_of.0", IDA));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.relations.custody_of.1", OLIVER));
	json_decref(ev);

	/* Status codes: 80 emigrated (with the emigration data), 90 dead. */
	s_send(&fx, "c-ali", "staff.absence.registered", "employee_cpr", ALI, NULL);
	ev = s_line(&fx, "staffing.jsonl", 4);
	CU_ASSERT_EQUAL(json_integer_value(s_at(ev, "data.person.status")), 80);
	CU_ASSERT_TRUE(json_is_true(s_at(ev, "data.person.alive")));
	CU_ASSERT_TRUE(json_is_false(s_at(ev, "data.person.resident")));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.abroad.country", "5110"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.abroad.date", "2024-06-01"));
	CU_ASSERT_PTR_NULL(s_at(ev, "data.person.address"));
	json_decref(ev);
	s_send(&fx, "c-anders", "staff.absence.registered", "employee_cpr", ANDERS, NULL);
	ev = s_line(&fx, "staffing.jsonl", 5);
	CU_ASSERT_EQUAL(json_integer_value(s_at(ev, "data.person.status")), 90);
	CU_ASSERT_TRUE(json_is_false(s_at(ev, "data.person.alive")));
	CU_ASSERT_TRUE(json_is_false(s_at(ev, "data.person.resident")));
	json_decref(ev);
	s_finish(&fx);
}

static void test_protected_address_per_route(void)
{
	fixture_t fx;
	json_t *ev, *audit;

	if (!s_started(&fx, s_start(&fx, "cpr-protected", "", false, NULL)))
		return;
	/* Allowed and asking: the address is given. The full answer is cached... */
	s_send(&fx, "letter-anne", "post.letter.send", "recipient_cpr", ANNE, NULL);
	ev = s_line(&fx, "letters.jsonl", 0);
	CU_ASSERT_PTR_NOT_NULL(ev);
	if (!ev)
		goto out;
	CU_ASSERT_TRUE(json_is_true(s_at(ev, "data.person.protected_address")));
	CU_ASSERT_TRUE(json_is_true(s_at(ev, "data.person.protection.address")));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.address.street", "Skjultvej"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.name.addressing", "Larsen,Anne"));
	json_decref(ev);

	/* ... but a route that asks without being allowed gets neither address nor
	 * addressing name, from the cache too. */
	s_send(&fx, "abs-anne", "child.absence.reported", "child_cpr", ANNE, NULL);
	ev = s_line(&fx, "guardians.jsonl", 0);
	CU_ASSERT_PTR_NOT_NULL(ev);
	if (!ev)
		goto out;
	CU_ASSERT_TRUE(json_is_true(s_at(ev, "data.person.protected_address")));
	CU_ASSERT_PTR_NULL(s_at(ev, "data.person.address"));
	CU_ASSERT_PTR_NULL(s_at(ev, "data.person.name.addressing"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.name.first", "Anne"));
	json_decref(ev);

	/* An allowed route that does not ask gets no address either. */
	s_send(&fx, "preview-anne", "post.letter.preview", "recipient_cpr", ANNE, NULL);
	ev = s_line(&fx, "preview.jsonl", 0);
	CU_ASSERT_PTR_NOT_NULL(ev);
	if (!ev)
		goto out;
	CU_ASSERT_TRUE(json_is_true(s_at(ev, "data.person.protected_address")));
	CU_ASSERT_PTR_NULL(s_at(ev, "data.person.address"));
	CU_ASSERT_PTR_NULL(s_at(ev, "data.person.name.addressing"));
	json_decref(ev);

	/* A sender cannot ask for the address itself: kanald sets the request's kanal*
	 * attributes, whatever the event carried under those names. */
	s_send(&fx, "forged-anne", "post.letter.preview", "recipient_cpr", ANNE,
	       ",\"kanalprotected\":true,\"kanalroute\":\"letter-to-citizen\"");
	ev = s_line(&fx, "preview.jsonl", 1);
	CU_ASSERT_PTR_NOT_NULL(ev);
	if (!ev)
		goto out;
	CU_ASSERT_TRUE(json_is_true(s_at(ev, "data.person.protected_address")));
	CU_ASSERT_PTR_NULL(s_at(ev, "data.person.address"));
	CU_ASSERT_PTR_NULL(s_at(ev, "data.person.name.addressing"));
	json_decref(ev);

	/* Two calls to the service — Anne, and her daughter Freja to see whether Anne holds
	 * custody of her (the register keeps custody on the child) — each audited; the other
	 * answers came from the cache. */
	CU_ASSERT_EQUAL(s_lookups(&fx), 2);
	audit = s_audit(&fx, 5);
	CU_ASSERT_EQUAL(json_array_size(audit), 5);
	CU_ASSERT_TRUE(s_str_is(audit, "0.outcome", "ok"));
	CU_ASSERT_TRUE(s_str_is(audit, "0.cpr", "080893-XXXX"));
	CU_ASSERT_TRUE(s_str_is(audit, "1.outcome", "ok"));
	CU_ASSERT_TRUE(s_str_is(audit, "1.cpr", "200323-XXXX")); /* Freja, her daughter */
	CU_ASSERT_TRUE(s_str_is(audit, "2.outcome", "cached"));
	CU_ASSERT_TRUE(s_str_is(audit, "3.outcome", "cached"));
	json_decref(audit);

	/* An unprotected person's address goes to every route. */
	s_send(&fx, "abs-ida", "child.absence.reported", "child_cpr", IDA, NULL);
	ev = s_line(&fx, "guardians.jsonl", 1);
	CU_ASSERT_PTR_NOT_NULL(ev);
	if (!ev)
		goto out;
	CU_ASSERT_TRUE(json_is_false(s_at(ev, "data.person.protected_address")));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.address.street", "Solsikkevej"));
	json_decref(ev);
out:
	s_finish(&fx);
}

static void test_mod11_failure_is_accepted_with_a_warning(void)
{
	fixture_t fx;
	json_t *ev;
	char *log;
	kanal_cpr_t parsed;

	/* The premise: Lars's number is valid but fails modulus 11. */
	CU_ASSERT_EQUAL_FATAL(kanal_cpr_parse(LARS, &parsed, NULL), 0);
	CU_ASSERT_FALSE_FATAL(parsed.mod11_ok);
	if (!s_started(&fx, s_start(&fx, "cpr-mod11", "", false, NULL)))
		return;
	s_send(&fx, "abs-lars", "staff.absence.registered", "employee_cpr", LARS, NULL);
	ev = s_line(&fx, "staffing.jsonl", 0);
	CU_ASSERT_PTR_NOT_NULL(ev);
	if (!ev)
		goto out;
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.name.first", "Lars"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.cpr", LARS));
	json_decref(ev);
	log = kd_log(fx.kd);
	CU_ASSERT_PTR_NOT_NULL(log &&
			       strstr(log, "050687-XXXX in data.employee_cpr fails modulus 11"));
	free(log);
out:
	s_finish(&fx);
}

static void test_invalid_number_is_rejected_without_a_call(void)
{
	fixture_t fx;
	char *dead;
	json_t *audit;

	if (!s_started(&fx, s_start(&fx, "cpr-invalid", "", false, NULL)))
		return;
	s_send(&fx, "abs-bad", "child.absence.reported", "child_cpr", BAD_DATE, NULL);
	/* on_error: fail — the event goes to the dead letters with the reason. */
	dead = s_wait_dead(&fx);
	CU_ASSERT_PTR_NOT_NULL(dead);
	if (!dead)
		goto out;
	CU_ASSERT_PTR_NOT_NULL(strstr(dead, "\"abs-bad\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(dead, "enrich from 'cpr' failed: service answered reject: "
					    "invalid CPR number in data.child_cpr: "));
	CU_ASSERT_PTR_NOT_NULL(strstr(dead, "does not exist"));
	CU_ASSERT_FALSE(s_has_cpr(dead));
	free(dead);
	CU_ASSERT_EQUAL(kd_lines(kd_path(fx.kd, "guardians.jsonl")), 0);
	CU_ASSERT_EQUAL(s_lookups(&fx), 0); /* the service never saw it */
	audit = s_audit(&fx, 1);
	CU_ASSERT_TRUE(s_str_is(audit, "0.outcome", "invalid"));
	CU_ASSERT_TRUE(s_str_is(audit, "0.cpr", "XXXXXX-XXXX"));
	json_decref(audit);
out:
	s_finish(&fx);
}

static void test_unknown_number_is_a_fault(void)
{
	fixture_t fx;
	char *dead;
	json_t *audit;

	if (!s_started(&fx, s_start(&fx, "cpr-unknown", "", false, NULL)))
		return;
	s_send(&fx, "abs-nobody", "child.absence.reported", "child_cpr", UNKNOWN, NULL);
	dead = s_wait_dead(&fx);
	CU_ASSERT_PTR_NOT_NULL(dead);
	if (!dead)
		goto out;
	/* The platform answers "PNR not found" as a soap:Server fault: still a REJECT, with a
	 * clear reason, never a retry. */
	CU_ASSERT_PTR_NOT_NULL(strstr(dead, "service answered reject: cpr service: PNR "
					    "010190-XXXX not found in the CPR register"));
	free(dead);
	CU_ASSERT_EQUAL(s_lookups(&fx), 1);
	audit = s_audit(&fx, 1);
	CU_ASSERT_TRUE(s_str_is(audit, "0.outcome", "not_found"));
	CU_ASSERT_TRUE(s_str_is(audit, "0.cpr", "010190-XXXX"));
	json_decref(audit);
out:
	s_finish(&fx);
}

static void test_wrong_invocation_context_is_a_fault(void)
{
	fixture_t fx;
	void *sub;
	char *p;

	/* A service_uuid the service has no agreement for. */
	if (!s_started(&fx, s_start(&fx, "cpr-context",
				    "      service_uuid: 99999999-0000-4000-8000-000000000000\n",
				    false, NULL)))
		return;
	sub = kd_subscribe(fx.kd, "enrich.failed");
	s_send(&fx, "abs-ida", "child.absence.reported", "child_cpr", IDA, NULL);
	p = kd_expect(sub, "enrich.failed", "INVOCATION_CONTEXT_INVALID", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "cpr service fault INVOCATION_CONTEXT_INVALID"));
	free(p);
	kd_unsubscribe(&sub);
	CU_ASSERT_EQUAL(kd_lines(kd_path(fx.kd, "guardians.jsonl")), 0);
	s_finish(&fx);
}

/* The simulator validates every request against the official schema: one the contract
 * does not allow (here PersonLookupRequest in another namespace) is refused with the
 * platform's REQUEST_INVALID fault and counted — what makes every other test of this suite
 * fail (s_finish) if the connector ever sends an invalid request. */
static void test_an_invalid_request_is_refused_and_counted(void)
{
	fixture_t fx;
	void *sub;
	char *p;

	if (!s_started(&fx, s_start(&fx, "cpr-invalid", "      namespace: urn:kanal:not-sf1520\n",
				    false, NULL)))
		return;
	fx.invalid = 1;
	sub = kd_subscribe(fx.kd, "enrich.failed");
	s_send(&fx, "abs-ida", "child.absence.reported", "child_cpr", IDA, NULL);
	p = kd_expect(sub, "enrich.failed", "REQUEST_INVALID", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "cpr service fault REQUEST_INVALID"));
	free(p);
	kd_unsubscribe(&sub);
	CU_ASSERT_EQUAL(kd_lines(kd_path(fx.kd, "guardians.jsonl")), 0);
	s_finish(&fx);
}

static void test_cache_within_and_after_ttl(void)
{
	fixture_t fx;
	json_t *ev, *audit;

	if (!s_started(&fx, s_start(&fx, "cpr-cache", "      cache_ttl: 1h\n", false, NULL)))
		return;
	s_send(&fx, "abs-1", "child.absence.reported", "child_cpr", IDA, NULL);
	ev = s_line(&fx, "guardians.jsonl", 0);
	CU_ASSERT_PTR_NOT_NULL(ev);
	json_decref(ev);
	s_send(&fx, "abs-2", "child.absence.reported", "child_cpr", IDA, NULL);
	ev = s_line(&fx, "guardians.jsonl", 1);
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.name.first", "Ida"));
	json_decref(ev);
	CU_ASSERT_EQUAL(s_lookups(&fx), 1); /* the second came from the cache */
	audit = s_audit(&fx, 2);
	CU_ASSERT_TRUE(s_str_is(audit, "0.outcome", "ok"));
	CU_ASSERT_TRUE(s_str_is(audit, "1.outcome", "cached"));
	json_decref(audit);
	s_finish(&fx);

	/* A short TTL: once it has passed, the service is asked again. */
	if (!s_started(&fx, s_start(&fx, "cpr-cache-ttl", "      cache_ttl: 200ms\n", false, NULL)))
		return;
	s_send(&fx, "abs-1", "child.absence.reported", "child_cpr", IDA, NULL);
	ev = s_line(&fx, "guardians.jsonl", 0);
	CU_ASSERT_PTR_NOT_NULL(ev);
	json_decref(ev);
	usleep(500 * 1000); /* longer than the TTL */
	s_send(&fx, "abs-2", "child.absence.reported", "child_cpr", IDA, NULL);
	ev = s_line(&fx, "guardians.jsonl", 1);
	CU_ASSERT_PTR_NOT_NULL(ev);
	json_decref(ev);
	CU_ASSERT_EQUAL(s_lookups(&fx), 2);
	audit = s_audit(&fx, 2);
	CU_ASSERT_TRUE(s_str_is(audit, "1.outcome", "ok"));
	json_decref(audit);
	s_finish(&fx);

	/* cache_ttl 0: no cache at all. */
	if (!s_started(&fx, s_start(&fx, "cpr-cache-off", "      cache_ttl: 0s\n", false, NULL)))
		return;
	s_send(&fx, "abs-1", "child.absence.reported", "child_cpr", IDA, NULL);
	s_send(&fx, "abs-2", "child.absence.reported", "child_cpr", IDA, NULL);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(fx.kd, "guardians.jsonl"), 2, WAIT), 2);
	CU_ASSERT_EQUAL(s_lookups(&fx), 2);
	s_finish(&fx);
}

/* Sends a staff absence for Mads while the service misbehaves as `mode` and checks that
 * the lookup's RETRY makes the skip-on-error route deliver the event without the person. */
static void s_down_case(fixture_t *fx, const char *mode, size_t nth, const char *reason)
{
	char id[64], *p;
	void *sub = kd_subscribe(fx->kd, "enrich.failed");
	json_t *ev;

	if (strcmp(mode, "stopped"))
		CU_ASSERT_EQUAL(upstream_fault(fx->up, mode, 0), 0);
	snprintf(id, sizeof id, "staff-%s", mode);
	s_send(fx, id, "staff.absence.registered", "employee_cpr", MADS, NULL);
	p = kd_expect(sub, "enrich.failed", id, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "service answered retry: "));
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, reason));
	if (p && !strstr(p, reason))
		fprintf(stderr, "enrich.failed (%s): %s\n", mode, p);
	free(p);
	kd_unsubscribe(&sub);
	ev = s_line(fx, "staffing.jsonl", nth);
	CU_ASSERT_PTR_NOT_NULL(ev);
	if (!ev)
		return;
	CU_ASSERT_TRUE(s_str_is(ev, "id", id));
	CU_ASSERT_PTR_NULL(s_at(ev, "data.person")); /* delivered without the lookup */
	json_decref(ev);
}

static void test_service_down_retries_and_skip_delivers(void)
{
	fixture_t fx;
	json_t *audit;
	upstream_t *up;

	if (!s_started(&fx, s_start(&fx, "cpr-down", "      cache_ttl: 0s\n", false, NULL)))
		return;
	s_down_case(&fx, "error", 0, "HTTP 503");
	s_down_case(&fx, "garbage", 1, "not well-formed XML");
	s_down_case(&fx, "hang", 2, "no answer");
	CU_ASSERT_EQUAL(upstream_fault(fx.up, "none", 0), 0);
	CU_ASSERT_EQUAL(s_counted(&fx, "invalid"), 0); /* asked now: it is killed below */
	fx.invalid = -1;
	/* The service is gone altogether. */
	up = fx.up;
	kill(up->pid, SIGKILL);
	s_down_case(&fx, "stopped", 3, "no answer");
	audit = s_audit(&fx, 4);
	for (size_t i = 0; i < 4; i++)
		CU_ASSERT_TRUE(s_str_is(json_array_get(audit, i), "outcome", "unavailable"));
	json_decref(audit);
	s_finish(&fx);
}

static void test_audit_log_lines(void)
{
	fixture_t fx;
	json_t *audit, *line;
	const char *keys[] = { "time",          "instance", "route",  "purpose",
			       "correlationid", "cpr",      "outcome" };
	const char *key;
	json_t *value;
	struct stat st;
	struct tm tm;
	size_t i = 0;
	char *text, *end;

	if (!s_started(&fx, s_start(&fx, "cpr-audit", "", false, NULL)))
		return;
	s_send(&fx, "abs-ida", "child.absence.reported", "child_cpr", IDA,
	       ",\"correlationid\":\"corr-77\"");
	s_send(&fx, "letter-1", "post.letter.send", "recipient_cpr", IDA, NULL);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(fx.kd, "letters.jsonl"), 1, WAIT), 1);
	audit = s_audit(&fx, 2);
	CU_ASSERT_EQUAL(json_array_size(audit), 2);
	if (json_array_size(audit) != 2) {
		json_decref(audit);
		goto out;
	}

	line = json_array_get(audit, 0);
	CU_ASSERT_EQUAL(json_object_size(line), 7);
	json_object_foreach(line, key, value)
	{
		/* the fields, in this order */
		CU_ASSERT_TRUE(i < 7 && !strcmp(key, keys[i]));
		i++;
	}
	memset(&tm, 0, sizeof tm);
	end = strptime(json_string_value(json_object_get(line, "time")) ?: "", "%Y-%m-%dT%H:%M:%S",
		       &tm);
	CU_ASSERT_PTR_NOT_NULL(end && end[0] == '.' && strlen(end) == 5 && end[4] == 'Z');
	CU_ASSERT_TRUE(s_str_is(line, "instance", "cpr"));
	CU_ASSERT_TRUE(s_str_is(line, "route", "child-absence-to-guardians"));
	CU_ASSERT_TRUE(s_str_is(line, "purpose", "guardians' calendars"));
	CU_ASSERT_TRUE(s_str_is(line, "correlationid", "corr-77"));
	CU_ASSERT_TRUE(s_str_is(line, "cpr", "140421-XXXX"));
	CU_ASSERT_TRUE(s_str_is(line, "outcome", "ok"));

	/* Without a correlationid the event's id stands in; a cache hit is a lookup too. */
	line = json_array_get(audit, 1);
	CU_ASSERT_TRUE(s_str_is(line, "route", "letter-to-citizen"));
	CU_ASSERT_TRUE(s_str_is(line, "purpose", "letter delivery"));
	CU_ASSERT_TRUE(s_str_is(line, "correlationid", "letter-1"));
	CU_ASSERT_TRUE(s_str_is(line, "cpr", "140421-XXXX"));
	CU_ASSERT_TRUE(s_str_is(line, "outcome", "cached"));
	json_decref(audit);

	/* Never a name or an address; the file is the owner's alone. */
	text = test_read_file(kd_path(fx.kd, "audit.log"), NULL);
	CU_ASSERT_PTR_NOT_NULL(text);
	CU_ASSERT_PTR_NULL(text ? strstr(text, "Hansen") : NULL);
	CU_ASSERT_PTR_NULL(text ? strstr(text, "Solsikkevej") : NULL);
	free(text);
	CU_ASSERT_EQUAL(stat(kd_path(fx.kd, "audit.log"), &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
out:
	s_finish(&fx);
}

static void test_refuses_to_start_without_audit_log(void)
{
	fixture_t fx;
	char *log;

	CU_ASSERT_NOT_EQUAL(s_start(&fx, "cpr-noaudit",
				    "      audit_log: '@DIR@/no/such/folder/audit.log'\n", true,
				    NULL),
			    0);
	CU_ASSERT_PTR_NOT_NULL(fx.kd);
	if (!fx.kd) {
		s_finish(&fx);
		return;
	}
	kd_wait_exit(fx.kd, WAIT);
	CU_ASSERT_TRUE(fx.kd->pid <= 0 && fx.kd->exit_status != 0);
	log = kd_log(fx.kd);
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "instance 'cpr': option 'audit_log': cannot open "
						  "the audit log"));
	if (!(log && strstr(log, "cannot open the audit log")))
		fprintf(stderr, "kanald log:\n%s\n", log ? log : "(none)");
	free(log);
	s_finish(&fx);
}

static void test_direct_request_from_a_plugin(void)
{
	fixture_t fx;
	json_t *ev, *audit;

	if (!s_started(&fx, s_start(&fx, "cpr-direct", "", false, NULL)))
		return;
	s_send(&fx, "ask-1", "test.cpr.ask", "cpr", NOAH, NULL);
	ev = s_line(&fx, "answers.jsonl", 0);
	CU_ASSERT_PTR_NOT_NULL(ev);
	if (!ev)
		goto out;
	CU_ASSERT_TRUE(s_str_is(ev, "data.type", "person.lookup.response"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.causationid", "ask-1-lookup"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.name.first", "Noah"));
	CU_ASSERT_EQUAL(json_array_size(s_at(ev, "data.person.relations.custody")), 1);
	json_decref(ev);
	/* The purpose of a person.lookup.request is its data.purpose. */
	audit = s_audit(&fx, 1);
	CU_ASSERT_TRUE(s_str_is(audit, "0.purpose", "test lookup"));
	CU_ASSERT_TRUE(s_str_is(audit, "0.correlationid", "ask-1-lookup"));
	CU_ASSERT_TRUE(s_str_is(audit, "0.cpr", "090322-XXXX"));
	json_decref(audit);
out:
	s_finish(&fx);
}

/* Puts tests/data/cpr/<name> where the simulator reads its answer. */
static void s_answer_with(const char *answer_path, const char *name)
{
	char src[256];
	char *text;

	snprintf(src, sizeof src, "tests/data/cpr/%s", name);
	text = test_read_file(src, NULL);
	CU_ASSERT_PTR_NOT_NULL(text);
	if (text) {
		FILE *f = fopen(answer_path, "w");
		if (f) {
			fputs(text, f);
			fclose(f);
		}
	}
	free(text);
}

/* Looks Ida up through the skip-on-error route with the answer `name`; returns the
 * enrich.failed happening (malloc'd) when the step failed, else NULL. */
static char *s_try_answer(fixture_t *fx, void *sub, const char *answer_path, const char *name)
{
	char id[64];

	s_answer_with(answer_path, name);
	snprintf(id, sizeof id, "staff-%s", name);
	s_send(fx, id, "staff.absence.registered", "employee_cpr", IDA, NULL);
	return kd_expect(sub, "enrich.failed", id, 3000);
}

static void test_odd_and_hostile_answers(void)
{
	fixture_t fx;
	char *dir = test_tmpdir("cpr-answers"), *answer, *p, *text;
	void *sub;
	json_t *ev;

	if (asprintf(&answer, "%s/answer.xml", dir) < 0)
		return;
	if (!s_started(&fx, s_start(&fx, "cpr-answers", "      cache_ttl: 0s\n", false, answer)))
		goto done;
	sub = kd_subscribe(fx.kd, "enrich.failed");

	/* Prefixes, blanks, a hyphen, a zone on the date: read by local names, normalised. */
	p = s_try_answer(&fx, sub, answer, "prefixed.xml");
	CU_ASSERT_PTR_NULL(p);
	free(p);
	ev = s_line(&fx, "staffing.jsonl", 0);
	CU_ASSERT_PTR_NOT_NULL(ev);
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.cpr", IDA));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.name.middle", "Bach"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.birth_date", "2021-04-14"));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.address.co", "c/o Bedste & Co"));
	CU_ASSERT_EQUAL(json_integer_value(s_at(ev, "data.person.address.municipality")), 751);
	CU_ASSERT_TRUE(json_is_true(s_at(ev, "data.person.protection.directory")));
	CU_ASSERT_TRUE(json_is_true(s_at(ev, "data.person.protection.marketing")));
	CU_ASSERT_TRUE(json_is_false(s_at(ev, "data.person.protection.address")));
	CU_ASSERT_TRUE(s_str_is(ev, "data.person.relations.custody.1.type", "other"));
	json_decref(ev);

	/* A DTD with an external entity: refused before anything is read. */
	p = s_try_answer(&fx, sub, answer, "dtd-entity.xml");
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "service answered retry: ") &&
			       strstr(p, "the answer declares a DTD (refused)"));
	free(p);
	/* An answer about somebody else is never passed on. */
	p = s_try_answer(&fx, sub, answer, "other-person.xml");
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "service answered retry: ") &&
			       strstr(p, "the answer is about another person"));
	free(p);
	/* A server fault without a code: worth another try. */
	p = s_try_answer(&fx, sub, answer, "fault-server.xml");
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "service answered retry: cpr service SOAP fault "
					      "(server): backend register not reachable"));
	free(p);
	/* A fault with a code: rejected, and the number it quotes is masked. */
	p = s_try_answer(&fx, sub, answer, "fault-code.xml");
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "service answered reject: cpr service fault "
					      "NOT_AUTHORIZED: no access to PNR 140421-XXXX for "
					      "this agreement"));
	free(p);
	kd_unsubscribe(&sub);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(fx.kd, "staffing.jsonl"), 5, WAIT), 5);
	text = test_read_file(kd_path(fx.kd, "staffing.jsonl"), NULL);
	CU_ASSERT_PTR_NULL(text ? strstr(text, "root:") : NULL); /* no /etc/passwd anywhere */
	CU_ASSERT_PTR_NULL(text ? strstr(text, "Mads") : NULL);
	free(text);
	s_finish(&fx);
done:
	test_rmdir_r(dir);
	free(dir);
	free(answer);
}

TEST_MAIN("cpr_lookup", TEST(test_enrich_maps_the_person), TEST(test_custody_is_read_on_the_child),
	  TEST(test_protected_address_per_route),
	  TEST(test_mod11_failure_is_accepted_with_a_warning),
	  TEST(test_invalid_number_is_rejected_without_a_call),
	  TEST(test_an_invalid_request_is_refused_and_counted),
	  TEST(test_unknown_number_is_a_fault), TEST(test_wrong_invocation_context_is_a_fault),
	  TEST(test_cache_within_and_after_ttl), TEST(test_service_down_retries_and_skip_delivers),
	  TEST(test_audit_log_lines), TEST(test_refuses_to_start_without_audit_log),
	  TEST(test_direct_request_from_a_plugin), TEST(test_odd_and_hostile_answers))
