/*
 * tests/integration/test_instance_rate.c — rate limits on instances' emits (issue 13 item
 * 6): an instance with `limits: {rate: …}` gets KANAL_EBUSY from kanal_emit beyond its
 * token bucket, so a flooding source cannot take more than its share of the bus, while
 * another instance's events keep flowing at their own pace; the refusals are counted per
 * instance in status and /metrics (kanal_instance_rate_limited_total).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "http_client.h"
#include "kanald.h"
#include "test.h"

#define RUN_MS 2000 /* how long the two sources run */

static const char *s_instances = "  - name: flood\n"
				 "    plugin: source\n"
				 "    options: { type: flood.tick, rate: 5000 }\n"
				 "    limits: { rate: { events_per_second: 50, burst: 50 } }\n"
				 "  - name: calm\n"
				 "    plugin: source\n"
				 "    options: { type: calm.tick, rate: 100 }\n"
				 "  - name: sink\n"
				 "    plugin: sink\n"
				 "    options: { path: '@DIR@/out.jsonl' }\n";

static const char *s_routes = "routes:\n"
			      "  - name: all\n"
			      "    match: { type: '>' }\n"
			      "    to: sink\n";

/* The status entry of instance `name` (borrowed from st), or NULL. */
static json_t *s_instance(json_t *st, const char *name)
{
	size_t i;
	json_t *e;

	json_array_foreach(json_object_get(st, "instances"), i, e)
	{
		if (!strcmp(json_string_value(json_object_get(e, "name")), name))
			return e;
	}
	return NULL;
}

static double s_metric(json_t *inst, const char *name)
{
	return json_number_value(json_object_get(json_object_get(inst, "metrics"), name));
}

static void test_flooding_instance_is_held_to_its_rate(void)
{
	char *conf = kd_config(s_instances, NULL), *reply, url[300];
	http_client_t *http = http_client_new();
	http_answer_t ans = { 0 };
	json_t *st = NULL, *flood, *calm;
	int64_t t0, elapsed_ms;
	double flood_emitted, calm_emitted, allowed;
	kd_t *kd;

	kd = kd_start("instance-rate", conf, s_routes);
	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	t0 = test_now_ms();
	test_sleep_ms(RUN_MS);
	reply = kd_admin(kd, "{\"cmd\":\"status\"}", 5000);
	elapsed_ms = test_now_ms() - t0;
	st = reply ? json_loads(reply, 0, NULL) : NULL;
	free(reply);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	flood = s_instance(st, "flood");
	calm = s_instance(st, "calm");
	CU_ASSERT_PTR_NOT_NULL_FATAL(flood);
	CU_ASSERT_PTR_NOT_NULL_FATAL(calm);
	flood_emitted = s_metric(flood, "emitted");
	calm_emitted = s_metric(calm, "emitted");

	/* The flood got its burst and 50 a second, not the 5000 a second it tried (the bus
	 * would take thousands a second from it without the limit). Time from start to the
	 * first tick counts in its favour: allow one more second's worth. */
	allowed = 50 + 50.0 * (double)(elapsed_ms + 1000) / 1000.0;
	CU_ASSERT(flood_emitted >= 50);
	CU_ASSERT(flood_emitted <= allowed);
	CU_ASSERT(json_integer_value(json_object_get(flood, "rate_limited")) > 0);
	CU_ASSERT(s_metric(flood, "busy") > 0);
	/* Meanwhile the other instance kept its own pace (100 a second), refused nothing. */
	CU_ASSERT(calm_emitted >= 100.0 * RUN_MS / 1000.0 * 0.6);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(calm, "rate_limited")), 0);
	CU_ASSERT_EQUAL(s_metric(calm, "busy"), 0);
	if (flood_emitted > allowed || calm_emitted < 100.0 * RUN_MS / 1000.0 * 0.6)
		fprintf(stderr, "\n    flood emitted %.0f (allowed %.0f), calm %.0f in %lld ms\n",
			flood_emitted, allowed, calm_emitted, (long long)elapsed_ms);

	/* /metrics counts the refusals per instance. */
	snprintf(url, sizeof url, "%s/metrics", kd->admin_http);
	CU_ASSERT_EQUAL(http_request(http, &(http_request_t){ .url = url }, &ans), 200);
	CU_ASSERT_PTR_NOT_NULL(
		strstr(ans.body, "# TYPE kanal_instance_rate_limited_total counter"));
	CU_ASSERT_PTR_NULL(
		strstr(ans.body, "kanal_instance_rate_limited_total{instance=\"flood\"} 0\n"));
	CU_ASSERT_PTR_NOT_NULL(
		strstr(ans.body, "kanal_instance_rate_limited_total{instance=\"flood\"} "));
	CU_ASSERT_PTR_NOT_NULL(
		strstr(ans.body, "kanal_instance_rate_limited_total{instance=\"calm\"} 0\n"));
	http_answer_clear(&ans);
	http_client_destroy(&http);
	json_decref(st);
	kd_destroy(&kd);
}

/* A rate of 0 is a mistake the config names, not "no limit". */
static void test_instance_rate_must_be_positive(void)
{
	char *conf = kd_config("  - name: gen\n"
			       "    plugin: source\n"
			       "    options: { type: x.y }\n"
			       "    limits: { rate: { events_per_second: 0 } }\n"
			       "  - name: sink\n    plugin: sink\n",
			       NULL),
	     *log;
	kd_t *kd = kd_prepare("instance-rate-zero", conf, s_routes);

	free(conf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	CU_ASSERT_EQUAL(kd_launch(kd), -1);
	log = kd_log(kd);
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "'events_per_second': '0' is not a whole number "
						  "above 0"));
	free(log);
	kd_destroy(&kd);
}

TEST_MAIN("instance_rate", TEST(test_flooding_instance_is_held_to_its_rate),
	  TEST(test_instance_rate_must_be_positive))
