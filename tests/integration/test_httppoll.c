/*
 * tests/integration/test_httppoll.c — the httppoll connector (plugins/httppoll) loaded as
 * the real .so in the real kanald, polling the simulated paged REST API
 * (kanal-sim-pollapi): every item becomes one event with the id, type, subject and data
 * the JSON pointers name, over several pages; the cursor survives a restart (nothing
 * twice, nothing skipped); the upstream answering 503, garbage or hanging loses nothing;
 * an item without an id is skipped without holding up the ones after it; a wrong token is
 * an upstream error, logged without the token; a jq `map:` shapes each item's event and
 * an item it fails on is skipped alone; a cursor from a header and pages linked by a Link
 * header are all read, none twice; a next link to another host is refused and reported.
 * Each test runs its own simulator and kanald on ephemeral ports of 127.0.0.1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kanald.h"
#include "test.h"
#include "upstream.h"

#define WAIT 10000 /* ms: the bound of every wait */
#define TOKEN "poll-token-3"

/* The simulator with `items` ("items=N") and up to two more settings (NULL: none). */
static upstream_t *s_sim_with(const char *items, const char *set1, const char *set2)
{
	const char *args[] = {
		"--set", "token=" TOKEN,        "--set", items, set1 ? "--set" : NULL,
		set1,    set2 ? "--set" : NULL, set2,    NULL
	};
	upstream_t *up = upstream_start("pollapi", args);

	if (up)
		snprintf(up->bearer, sizeof up->bearer, "%s", TOKEN);
	return up;
}

static upstream_t *s_sim(const char *items)
{
	return s_sim_with(items, NULL, NULL);
}

/* A kanald with an httppoll instance `api` polling up (page_size 4) with `token` and the
 * further options `extra` (YAML lines, may be ""), and a sink `out` for vendor.> events. */
static char *s_conf(upstream_t *up, const char *token, const char *extra)
{
	char *inst, *conf;

	if (asprintf(&inst,
		     "  - name: api\n    plugin: httppoll\n    options:\n"
		     "      url: %s/api/items\n      token: %s\n      poll_interval: 100ms\n"
		     "      timeout: 500ms\n      max_backoff: 800ms\n      page_size: 4\n"
		     "      type: vendor.item.changed\n      subject_pointer: /kind\n%s"
		     "  - name: out\n    plugin: sink\n    options: { path: '@DIR@/out.jsonl' }\n",
		     up->url, token, extra) < 0)
		return NULL;
	conf = kd_config(inst, NULL);
	free(inst);
	return conf;
}

static const char *s_routes = "routes:\n  - name: items\n    match: { type: vendor.> }\n"
			      "    to: out\n";

static kd_t *s_kanald_with(const char *tag, upstream_t *up, const char *token, const char *extra)
{
	char *conf = s_conf(up, token, extra);
	kd_t *kd = kd_start(tag, conf, s_routes);

	free(conf);
	return kd;
}

static kd_t *s_kanald(const char *tag, upstream_t *up, const char *token)
{
	return s_kanald_with(tag, up, token, "");
}

/* Asserts the sink holds exactly item-<first> … item-<last>, once each, in order. */
static void s_assert_exactly(kd_t *kd, int first, int last)
{
	char *text = test_read_file(kd_path(kd, "out.jsonl"), NULL);
	char *save = NULL;
	int n = first;

	for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save), n++) {
		json_t *e = json_loads(line, 0, NULL);
		char want[32];
		snprintf(want, sizeof want, "item-%d", n);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "id")), want);
		json_decref(e);
	}
	CU_ASSERT_EQUAL(n, last + 1);
	free(text);
}

static bool s_wait_log(kd_t *kd, const char *needle)
{
	for (int waited = 0; waited < WAIT; waited += 50) {
		char *log = kd_log(kd);
		bool has = log && strstr(log, needle);
		free(log);
		if (has)
			return true;
		test_sleep_ms(50);
	}
	return false;
}

static void s_add_items(upstream_t *up, int n)
{
	for (int i = 0; i < n; i++)
		CU_ASSERT_EQUAL(upstream_http(up, "POST", "/api/items",
					      "{\"kind\":\"note\",\"text\":\"added\"}",
					      "application/json", NULL),
				201);
}

static void test_items_become_events(void)
{
	upstream_t *up = s_sim("items=10");
	kd_t *kd = NULL;
	json_t *e = NULL;
	char *text = NULL;

	REQUIRE(up);
	kd = s_kanald("hp-events", up, TOKEN);
	REQUIRE(kd);
	/* 10 items in pages of 4: three pages, one turn. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 10, WAIT), 10);
	s_assert_exactly(kd, 1, 10);
	text = test_read_file(kd_path(kd, "out.jsonl"), NULL);
	REQUIRE(text);
	e = json_loadb(text, strcspn(text, "\n"), 0, NULL);
	REQUIRE(e);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "type")),
			       "vendor.item.changed");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "source")), "api");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "subject")), "note");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(e, "data"), "seq")), 1);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(e, "data"), "text")), "seeded");
	/* New items later are picked up by the next polls. */
	s_add_items(up, 3);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 13, WAIT), 13);
	test_sleep_ms(300);
	s_assert_exactly(kd, 1, 13);
done:
	json_decref(e);
	free(text);
	kd_destroy(&kd);
	upstream_stop(&up);
}

static void test_cursor_survives_restart(void)
{
	upstream_t *up = s_sim("items=6");
	kd_t *kd = NULL;
	char *cursor = NULL;

	REQUIRE(up);
	kd = s_kanald("hp-restart", up, TOKEN);
	REQUIRE(kd);
	REQUIRE(kd_wait_lines(kd_path(kd, "out.jsonl"), 6, WAIT) == 6);
	test_sleep_ms(300);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	/* The cursor on disk is the last item's sequence number. */
	cursor = test_read_file(kd_path(kd, "state/api/cursor"), NULL);
	CU_ASSERT(cursor && !strcmp(cursor, "6\n"));
	s_add_items(up, 5);
	REQUIRE(kd_restart(kd) == 0);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 11, WAIT), 11);
	test_sleep_ms(500);
	s_assert_exactly(kd, 1, 11);
done:
	free(cursor);
	kd_destroy(&kd);
	upstream_stop(&up);
}

/* The upstream fails in `mode` for a while: the failures are logged and counted, nothing
 * is skipped and nothing comes twice once it answers again. */
static void s_fault_loses_nothing(const char *tag, const char *mode, int count)
{
	upstream_t *up = s_sim("items=5");
	kd_t *kd = NULL;

	REQUIRE(up);
	/* The fault answers the first `count` requests, all of them kanald's polls. */
	REQUIRE(upstream_fault(up, mode, count) == 0);
	kd = s_kanald(tag, up, TOKEN);
	REQUIRE(kd);
	CU_ASSERT(s_wait_log(kd, "upstream error"));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 5, WAIT), 5);
	test_sleep_ms(400);
	s_assert_exactly(kd, 1, 5);
done:
	kd_destroy(&kd);
	upstream_stop(&up);
}

static void test_upstream_error_loses_nothing(void)
{
	s_fault_loses_nothing("hp-503", "error", 3);
}

static void test_upstream_garbage_loses_nothing(void)
{
	s_fault_loses_nothing("hp-garbage", "garbage", 3);
}

static void test_upstream_hang_loses_nothing(void)
{
	s_fault_loses_nothing("hp-hang", "hang", 2);
}

static void test_item_without_id_is_skipped(void)
{
	upstream_t *up = s_sim("items=2");
	kd_t *kd = NULL;
	char *text = NULL;

	REQUIRE(up);
	/* An id the connector cannot use (an object) between two good items. */
	CU_ASSERT_EQUAL(upstream_http(up, "POST", "/api/items", "{\"id\":{\"x\":1}}",
				      "application/json", NULL),
			201);
	s_add_items(up, 1);
	kd = s_kanald("hp-skip", up, TOKEN);
	REQUIRE(kd);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 3, WAIT), 3);
	CU_ASSERT(s_wait_log(kd, "item #3 after cursor"));
	test_sleep_ms(300);
	text = test_read_file(kd_path(kd, "out.jsonl"), NULL);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 3);
	CU_ASSERT(text && strstr(text, "\"item-4\"") && !strstr(text, "\"item-3\""));
done:
	free(text);
	kd_destroy(&kd);
	upstream_stop(&up);
}

static void test_wrong_token_is_an_upstream_error(void)
{
	upstream_t *up = s_sim("items=2");
	kd_t *kd = NULL;
	char *log = NULL;

	REQUIRE(up);
	kd = s_kanald("hp-token", up, "not-the-token");
	REQUIRE(kd);
	CU_ASSERT(s_wait_log(kd, "401"));
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "out.jsonl")), 0);
	log = kd_log(kd);
	CU_ASSERT(log && !strstr(log, "not-the-token"));
done:
	free(log);
	kd_destroy(&kd);
	upstream_stop(&up);
}

/* A `map:` program gives the type, subject and data; an item it fails on is skipped with
 * jq's message, the ones after it go on; a map that does not compile refuses the start. */
static void test_map_shapes_events(void)
{
	upstream_t *up = s_sim("items=3");
	char *inst = NULL, *conf = NULL, *text = NULL, *log = NULL;
	const char *bad = "  - name: api\n    plugin: httppoll\n    options:\n"
			  "      url: http://127.0.0.1:1/api/items\n      map: '{type: .kind'\n";
	kd_t *kd = NULL;
	json_t *e = NULL;

	REQUIRE(up);
	REQUIRE(asprintf(&inst,
			 "  - name: api\n    plugin: httppoll\n    options:\n"
			 "      url: %s/api/items\n      token: " TOKEN "\n"
			 "      poll_interval: 100ms\n      page_size: 4\n"
			 "      map: |\n"
			 "        if .seq == 2 then error(\"seq 2 is refused\") else\n"
			 "        {type: \"vendor.\\(.kind).seen\", subject: \"n-\\(.seq)\",\n"
			 "         data: {what: .text, cursor: $cursor}} end\n"
			 "  - name: out\n    plugin: sink\n    options: { path: '@DIR@/out.jsonl' "
			 "}\n",
			 up->url) >= 0);
	conf = kd_config(inst, NULL);
	kd = kd_start("hp-map", conf, s_routes);
	REQUIRE(kd);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 2, WAIT), 2);
	CU_ASSERT(s_wait_log(kd, "seq 2 is refused"));
	text = test_read_file(kd_path(kd, "out.jsonl"), NULL);
	REQUIRE(text);
	e = json_loadb(text, strcspn(text, "\n"), 0, NULL);
	REQUIRE(e);
	/* The id still comes from id_pointer; the rest from the program. */
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "id")), "item-1");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "type")), "vendor.note.seen");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "subject")), "n-1");
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(e, "data"), "what")), "seeded");
	CU_ASSERT(json_is_null(json_object_get(json_object_get(e, "data"), "cursor")));
	CU_ASSERT(strstr(text, "\"item-3\"") && !strstr(text, "\"item-2\""));
	kd_destroy(&kd);
	free(conf);
	conf = kd_config(bad, NULL);
	kd = kd_prepare("hp-badmap", conf, s_routes);
	REQUIRE(kd);
	CU_ASSERT_NOT_EQUAL(kd_launch(kd), 0);
	log = kd_log(kd);
	CU_ASSERT(log && strstr(log, "option 'map'"));
done:
	json_decref(e);
	free(log);
	free(text);
	free(inst);
	free(conf);
	kd_destroy(&kd);
	upstream_stop(&up);
}

/* A count from the simulator's /api/stats: "repeated" (items served more than once) or
 * "linked" (pages asked for by a next link); -1 when it does not say. */
static long s_stat(upstream_t *up, const char *name)
{
	char *body = NULL;
	json_t *stats;
	long n = -1;

	if (upstream_http(up, "GET", "/api/stats", NULL, NULL, &body) == 200 &&
	    (stats = json_loads(body, 0, NULL))) {
		n = (long)json_integer_value(json_object_get(stats, name));
		json_decref(stats);
	}
	free(body);
	return n;
}

/* The cursor only in a header (X-Next-Cursor) and the pages linked by `Link: <…>;
 * rel="next"` (whose URLs ask with after=, which only a client following them uses): every
 * page is read, none twice, and the header's cursor is persisted. */
static void test_header_cursor_and_link_paging(void)
{
	upstream_t *up = s_sim_with("items=10", "cursor_in=header", "paging=link");
	kd_t *kd = NULL;
	char *cursor = NULL;

	REQUIRE(up);
	kd = s_kanald_with("hp-link", up, TOKEN,
			   "      cursor_header: X-Next-Cursor\n      next_link_header: true\n");
	REQUIRE(kd);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 10, WAIT), 10);
	s_add_items(up, 5);
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 15, WAIT), 15);
	test_sleep_ms(300);
	s_assert_exactly(kd, 1, 15);
	CU_ASSERT_EQUAL(s_stat(up, "repeated"), 0);
	/* 10 items in pages of 4: pages 2 and 3 were reached by their links. */
	CU_ASSERT(s_stat(up, "linked") >= 2);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	cursor = test_read_file(kd_path(kd, "state/api/cursor"), NULL);
	CU_ASSERT(cursor && !strcmp(cursor, "15\n"));
done:
	free(cursor);
	kd_destroy(&kd);
	upstream_stop(&up);
}

/* A next link in the body (links.next) to another host is refused and reported, never
 * followed; the cursor loop still reads every item, once. */
static void test_next_link_to_another_host_is_refused(void)
{
	upstream_t *up = s_sim_with("items=10", "paging=body-link", "link_host=203.0.113.9:8080");
	kd_t *kd = NULL;

	REQUIRE(up);
	kd = s_kanald_with("hp-foreign", up, TOKEN, "      next_link_pointer: /links/next\n");
	REQUIRE(kd);
	CU_ASSERT(s_wait_log(kd, "next link refused: it points to another host "
				 "(http://203.0.113.9:8080)"));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "out.jsonl"), 10, WAIT), 10);
	test_sleep_ms(300);
	s_assert_exactly(kd, 1, 10);
	CU_ASSERT_EQUAL(s_stat(up, "repeated"), 0);
	CU_ASSERT_EQUAL(s_stat(up, "linked"), 0);
done:
	kd_destroy(&kd);
	upstream_stop(&up);
}

static void test_bad_options_refuse_start(void)
{
	const char *inst = "  - name: api\n    plugin: httppoll\n    options:\n"
			   "      url: http://192.0.2.1/api/items\n      type: vendor.x\n";
	const char *inst2 = "  - name: api\n    plugin: httppoll\n    options:\n"
			    "      url: http://127.0.0.1:1/api/items\n      type: vendor.x\n"
			    "      id_pointer: id\n";
	char *conf = kd_config(inst, NULL), *conf2 = kd_config(inst2, NULL), *log = NULL;
	kd_t *kd = kd_prepare("hp-badopt", conf, s_routes);

	REQUIRE(kd);
	/* Plain http to another machine is refused... */
	CU_ASSERT_NOT_EQUAL(kd_launch(kd), 0);
	log = kd_log(kd);
	CU_ASSERT(log && strstr(log, "url"));
	free(log);
	/* ... and so is a pointer that is not one. */
	kd_write_config(kd, conf2);
	CU_ASSERT_NOT_EQUAL(kd_restart(kd), 0);
	log = kd_log(kd);
	CU_ASSERT(log && strstr(log, "'id_pointer'"));
done:
	free(log);
	free(conf);
	free(conf2);
	kd_destroy(&kd);
}

TEST_MAIN("httppoll", TEST(test_items_become_events), TEST(test_cursor_survives_restart),
	  TEST(test_upstream_error_loses_nothing), TEST(test_upstream_garbage_loses_nothing),
	  TEST(test_upstream_hang_loses_nothing), TEST(test_item_without_id_is_skipped),
	  TEST(test_wrong_token_is_an_upstream_error), TEST(test_map_shapes_events),
	  TEST(test_header_cursor_and_link_paging), TEST(test_next_link_to_another_host_is_refused),
	  TEST(test_bad_options_refuse_start))
