/*
 * tests/integration/test_enrich_concurrent.c — an enrich service answers several requests
 * at once, and a request whose caller gave up is cancelled at the service
 * (docs/design/service-concurrency.md). The real kanald with a cpr instance, routes whose
 * enrich steps ask it with a 1 s timeout, and the simulated CPR service told to answer one
 * particular number 3 s late (kanal-sim-cpr --set slow_pnr=…). Before issue 13 the cpr
 * instance looked people up one at a time, so the healthy lookup behind the slow one timed
 * out too and went to the dead letters.
 *
 * CPR numbers never reach this program's output: they live in named constants.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <kanal/kanal.h>

#include "kanald.h"
#include "test.h"
#include "upstream.h"

#define WAIT 8000 /* ms: the bound of every wait */

/* The synthetic population (examples/simulators/population.c). */
static const char *const SOFIE = "2207884566"; /* answered 3 s late */
static const char *const IDA = "1404214382";   /* answered at once */

#define AGREEMENT "11111111-2222-4333-8444-555555555555"
#define USERSYSTEM "22222222-3333-4444-8555-666666666666"
#define USER "33333333-4444-4555-8666-777777777777"
#define SERVICE "44444444-5555-4666-8777-888888888888"

static const char *s_routes = "routes:\n"
			      "  - name: lookup\n"
			      "    match: { type: test.person.lookup }\n"
			      "    enrich:\n"
			      "      - service: cpr\n"
			      "        into: data.person\n"
			      "        purpose: concurrency test\n"
			      "        timeout: 1s\n"
			      "    to: people\n"
			      "    retry: { max_attempts: 1 }\n";

typedef struct fixture {
	upstream_t *up;
	kd_t *kd;
	void *stream;
} fixture_t;

static int s_start(fixture_t *fx, const char *tag)
{
	char slow[32];
	const char *args[] = { "--set", "agreement=" AGREEMENT,
			       "--set", "usersystem=" USERSYSTEM,
			       "--set", "user=" USER,
			       "--set", "service=" SERVICE,
			       "--set", slow,
			       "--set", "slow_ms=3000",
			       NULL };
	char *instances, *conf;

	memset(fx, 0, sizeof *fx);
	snprintf(slow, sizeof slow, "slow_pnr=%s", SOFIE);
	if (!(fx->up = upstream_start("cpr", args)))
		return -1;
	if (asprintf(&instances,
		     "  - name: cpr\n"
		     "    plugin: cpr\n"
		     "    options:\n"
		     "      endpoint: '%s/cpr'\n"
		     "      service_agreement_uuid: " AGREEMENT "\n"
		     "      user_system_uuid: " USERSYSTEM "\n"
		     "      user_uuid: " USER "\n"
		     "      service_uuid: " SERVICE "\n"
		     "      timeout: 5s\n"
		     "      resolve_children: false\n"
		     "      cache_ttl: 0\n"
		     "      audit_log: '@DIR@/audit.log'\n"
		     "  - name: people\n    plugin: sink\n"
		     "    options: { path: '@DIR@/people.jsonl' }\n",
		     fx->up->url) < 0)
		return -1;
	conf = kd_config(instances, NULL);
	free(instances);
	fx->kd = kd_start(tag, conf, s_routes);
	free(conf);
	if (!fx->kd)
		return -1;
	fx->stream = kd_subscribe(fx->kd, "");
	return 0;
}

static void s_stop(fixture_t *fx)
{
	kd_unsubscribe(&fx->stream);
	kd_destroy(&fx->kd);
	upstream_stop(&fx->up);
}

static bool s_send(fixture_t *fx, const char *id, const char *cpr)
{
	char data[64];
	char *json;
	bool ok;

	snprintf(data, sizeof data, "{\"cpr\": \"%s\"}", cpr);
	json = kd_event("/test/enrich", id, "test.person.lookup", data);
	ok = kd_send_event(fx->kd, json, "accepted", WAIT, NULL);
	free(json);
	return ok;
}

/* True when a stream line of topic `prefix` holding `needle` comes within WAIT. */
static bool s_expect(fixture_t *fx, const char *prefix, const char *needle)
{
	char *payload = kd_expect(fx->stream, prefix, needle, WAIT);

	free(payload);
	return payload != NULL;
}

/* The cpr instance's counter `name` from kanald's status, or -1. */
static double s_metric(fixture_t *fx, const char *name)
{
	char *reply = kd_admin(fx->kd, "{\"cmd\":\"status\"}", WAIT);
	json_t *j = reply ? json_loads(reply, 0, NULL) : NULL;
	json_t *insts = json_object_get(j, "instances"), *inst;
	double v = -1;
	size_t i;

	json_array_foreach(insts, i, inst)
	{
		if (strcmp(json_string_value(json_object_get(inst, "name")) ?: "", "cpr"))
			continue;
		json_t *m = json_object_get(json_object_get(inst, "metrics"), name);
		if (m)
			v = json_number_value(m);
	}
	json_decref(j);
	free(reply);
	return v;
}

/* A slow lookup (3 s) and a healthy one asked right after it: the healthy one is answered
 * and delivered well within its 1 s enrich timeout; the slow one times out, goes to the
 * dead letters after its one attempt, and is cancelled at the service — counted there,
 * its transfer abandoned (the audit log says "cancelled") and never answered late. */
static void test_slow_lookup_holds_up_nobody(void)
{
	fixture_t fx;
	char *line = NULL, *log = NULL, *audit = NULL;
	int64_t t0;
	double cancelled = -1;

	REQUIRE(s_start(&fx, "enrich-concurrent") == 0);
	t0 = test_now_ms();
	REQUIRE(s_send(&fx, "slow-1", SOFIE));
	REQUIRE(s_send(&fx, "healthy-1", IDA));

	/* The healthy one: delivered, enriched, within its timeout. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(fx.kd, "people.jsonl"), 1, WAIT), 1);
	CU_ASSERT(test_now_ms() - t0 < 1000);
	line = test_read_file(kd_path(fx.kd, "people.jsonl"), NULL);
	CU_ASSERT(line && strstr(line, "\"healthy-1\"") && strstr(line, "\"person\""));
	CU_ASSERT(line && !strstr(line, "\"slow-1\""));

	/* The slow one: its step timed out, once, and it went to the dead letters. */
	CU_ASSERT(s_expect(&fx, "enrich.failed", "no reply within 1000 ms"));
	CU_ASSERT(s_expect(&fx, "dead", "slow-1"));

	/* Cancelled at the service: counted, and the transfer abandoned (the audit line is
	 * written when the HTTP client gave up the transfer). */
	for (int64_t until = test_now_ms() + WAIT; test_now_ms() < until; test_sleep_ms(100)) {
		free(audit);
		audit = test_read_file(kd_path(fx.kd, "audit.log"), NULL);
		if (audit && strstr(audit, "\"cancelled\""))
			break;
	}
	CU_ASSERT(audit && strstr(audit, "\"outcome\":\"cancelled\""));
	CU_ASSERT(audit && strstr(audit, "\"outcome\":\"ok\""));
	cancelled = s_metric(&fx, "cancelled");
	CU_ASSERT_EQUAL(cancelled, 1);
	CU_ASSERT_EQUAL(s_metric(&fx, "lookups"), 2);

	/* Past the slow answer's time: nothing was answered late, nothing else delivered. */
	test_sleep_ms((int)(3500 - (test_now_ms() - t0) > 0 ? 3500 - (test_now_ms() - t0) : 0));
	CU_ASSERT_EQUAL(kd_lines(kd_path(fx.kd, "people.jsonl")), 1);
	log = kd_log(fx.kd);
	CU_ASSERT(log && !strstr(log, "answered unknown delivery"));
	CU_ASSERT(log && !kd_has_clear_cpr(log));
	CU_ASSERT(audit && !strstr(audit, SOFIE) && !strstr(audit, IDA));
done:
	free(line);
	free(log);
	free(audit);
	s_stop(&fx);
}

/* Many healthy lookups at once with the slow one among them: every healthy one is
 * delivered, none waits for the slow one. */
static void test_many_at_once(void)
{
	fixture_t fx;
	char id[32];

	REQUIRE(s_start(&fx, "enrich-many") == 0);
	REQUIRE(s_send(&fx, "slow-2", SOFIE));
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof id, "healthy-%d", i);
		REQUIRE(s_send(&fx, id, IDA));
	}
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(fx.kd, "people.jsonl"), 20, WAIT), 20);
	CU_ASSERT(s_expect(&fx, "dead", "slow-2"));
	test_sleep_ms(500);
	CU_ASSERT_EQUAL(kd_lines(kd_path(fx.kd, "people.jsonl")), 20);
done:
	s_stop(&fx);
}

TEST_MAIN("enrich_concurrent", TEST(test_slow_lookup_holds_up_nobody), TEST(test_many_at_once))
