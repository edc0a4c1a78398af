/*
 * tests/integration/test_cluster_payload.c — in cluster mode (docs/cluster.md) an event reaches
 * its destination as it was sent: every attribute, extension attributes and a data object with
 * escapes and non-ASCII text, whether the route passes it on as it is (the accepting node
 * then publishes the bytes it serialised the event to once, as a routing node publishes the
 * accepted event's bytes from KANAL_IN, docs/design/cluster.md) or transforms it (then the
 * transformed event, never the accepted bytes). Needs nats-server;
 * skipped without it.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kanald.h"
#include "kd_cluster.h"
#include "natsd.h"
#include "test.h"

static const char *s_sinks = "  - name: a\n    plugin: sink\n"
			     "    options: { path: '@DIR@/a.jsonl' }\n";

static const char *s_routes = "routes:\n"
			      "  - name: plain\n"
			      "    match: { type: p.plain }\n"
			      "    to: [a]\n"
			      "  - name: doubled\n"
			      "    match: { type: p.doubled }\n"
			      "    transform: '{n: .n, twice: (.n * 2)}'\n"
			      "    to: [a]\n";

/* The event with `id` and `type`: an extension attribute, a subject, and data with escapes,
 * a control character and Danish letters. Ownership: the caller frees the text. */
static char *s_event(const char *id, const char *type)
{
	char *text = NULL;

	if (asprintf(&text,
		     "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/payload-test\","
		     "\"type\":\"%s\",\"subject\":\"child/42\",\"time\":\"2026-12-07T12:00:00Z\","
		     "\"kanalx\":\"bl\\u00e5b\\u00e6r\",\"datacontenttype\":\"application/json\","
		     "\"data\":{\"n\":21,\"text\":\"\\u00e6\\u00f8\\u00e5 \\\"q\\\" \\\\ \\u0001 "
		     "\\n\",\"list\":[1,2.5,null,true]}}",
		     id, type) < 0)
		return NULL;
	return text;
}

/* The line of a.jsonl whose id is `id`, parsed, waiting up to 30 s; NULL when it never came. */
static json_t *s_delivered(kd_t *kd, const char *id)
{
	int64_t deadline = test_now_ms() + 30000;

	for (;;) {
		char *text = test_read_file(kd_path(kd, "a.jsonl"), NULL);
		char *line = text, *nl;
		json_t *found = NULL;

		while (line && *line && !found) {
			json_t *ev;
			if ((nl = strchr(line, '\n')))
				*nl = '\0';
			ev = json_loads(line, 0, NULL);
			if (json_is_object(ev) &&
			    !strcmp(json_string_value(json_object_get(ev, "id")) ?: "", id))
				found = ev;
			else
				json_decref(ev);
			line = nl ? nl + 1 : NULL;
		}
		free(text);
		if (found || test_now_ms() >= deadline)
			return found;
		test_sleep_ms(200);
	}
}

static void test_events_arrive_as_sent(void)
{
	natsd_t *nc = NULL;
	kd_t *kd = NULL;
	char *extra = NULL, *conf = NULL, *plain = NULL, *doubled = NULL;
	json_t *sent = NULL, *got = NULL, *got2 = NULL;
	const char *key;
	json_t *value;

	if (!natsd_available()) {
		fprintf(stderr, "skipped: nats-server is not installed (scripts/deps.sh)\n");
		return;
	}
	REQUIRE((nc = natsd_start("payload", 1)) != NULL);
	REQUIRE(asprintf(&extra,
			 "journal:\n  mode: cluster\n  nats:\n    servers: %s\n    replicas: 1\n",
			 nc->servers) > 0);
	REQUIRE((conf = kd_config(s_sinks, extra)) != NULL);
	REQUIRE((kd = kd_start("payload-kd", conf, s_routes)) != NULL);
	plain = s_event("plain-1", "p.plain");
	doubled = s_event("doubled-1", "p.doubled");
	REQUIRE(plain && doubled);
	CU_ASSERT(kd_send_event(kd, plain, "accepted", CLU_WAIT, NULL));
	CU_ASSERT(kd_send_event(kd, doubled, "accepted", CLU_WAIT, NULL));

	/* Passed on as it is: every attribute and the data as sent. */
	sent = json_loads(plain, 0, NULL);
	got = s_delivered(kd, "plain-1");
	CU_ASSERT_PTR_NOT_NULL(got);
	json_object_foreach(sent, key, value)
	{
		json_t *there = json_object_get(got, key);
		if (!strcmp(key, "time")) /* the same instant, however it is written */
			continue;
		CU_ASSERT(there && json_equal(value, there));
		if (!there || !json_equal(value, there))
			fprintf(stderr, "attribute '%s' differs\n", key);
	}
	CU_ASSERT_PTR_NOT_NULL(json_object_get(got, "time"));

	/* Transformed: the route's data, not the accepted event's. */
	got2 = s_delivered(kd, "doubled-1");
	CU_ASSERT_PTR_NOT_NULL(got2);
	{
		json_t *want = json_pack("{s:i, s:i}", "n", 21, "twice", 42);
		CU_ASSERT(json_equal(json_object_get(got2, "data"), want));
		json_decref(want);
	}
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(got2, "kanalx")) ?: "",
			       "bl\xc3\xa5"
			       "b\xc3\xa6r");
done:
	json_decref(sent);
	json_decref(got);
	json_decref(got2);
	free(plain);
	free(doubled);
	free(conf);
	free(extra);
	kd_destroy(&kd);
	natsd_destroy(&nc);
}

TEST_MAIN("cluster_payload", TEST(test_events_arrive_as_sent))
