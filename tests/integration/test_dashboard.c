/*
 * tests/integration/test_dashboard.c — kanald's dashboard (broker/dashboard.html, served
 * at / by the HTTP admin endpoint) in a real browser: headless Chromium driven over
 * WebDriver (tests/util/webdriver.h) against a running kanald.
 *
 * The destinations table shows the delivered counts kanald really has (compared with
 * /api/v1/status); a dead letter appears with its "send igen" button, and once the
 * destination is fixed a click delivers the event and the row goes; each measure the
 * routing table declares is a card (the channel strategy's: the share of letters sent
 * digitally); with a token the page asks for it.
 *
 * Every wait is bounded (the page refreshes every 2 s); each test quits its browser and
 * stops its kanald even when an assertion fails (REQUIRE jumps to the clean-up), and the
 * WebDriver helper kills chromedriver's whole process group.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "kanald.h"
#include "test.h"
#include "webdriver.h"

#define WAIT 10000 /* ms: the bound of every wait */
#define TOKEN "kanal-dashboard-token-4c1e8b7a92"
#define CPR "1503851233" /* synthetic (DOMAIN.md) */

/* Starts the browser; a missing browser is a failure (scripts/deps.sh installs it). */
static wd_t *s_browser(void)
{
	char why[1024];
	wd_t *wd = wd_start(why, sizeof why);

	if (!wd)
		fprintf(stderr, "    no browser: %s\n", why);
	return wd;
}

/* ---- kanald's side -------------------------------------------------------------------- */

/* GET kd->admin_http + path as JSON (NULL unless 200). */
static json_t *s_api(kd_t *kd, const char *path)
{
	http_answer_t a;
	char url[512];
	json_t *j = NULL;

	snprintf(url, sizeof url, "%s%s", kd->admin_http, path);
	if (http_request(NULL, &(http_request_t){ .url = url, .timeout_ms = WAIT }, &a) == 200)
		j = json_loads(a.body, 0, NULL);
	http_answer_clear(&a);
	return j;
}

/* Sends one event; true when the gateway accepted it. */
static bool s_send(kd_t *kd, const char *id, const char *type, const char *data)
{
	char *text = kd_event("dash-test", id, type, data);
	bool ok = text && kd_send_event(kd, text, "accepted", WAIT, NULL);

	free(text);
	return ok;
}

/* Waits until GET /api/v1/deadletters lists n letters. */
static bool s_wait_letters(kd_t *kd, size_t n)
{
	int64_t deadline = test_now_ms() + WAIT;

	for (;;) {
		json_t *list = s_api(kd, "/api/v1/deadletters");
		size_t have = json_array_size(json_object_get(list, "items"));
		json_decref(list);
		if (have == n)
			return true;
		if (test_now_ms() >= deadline)
			return false;
		test_sleep_ms(100);
	}
}

/* ---- the page's side ------------------------------------------------------------------ */

/* The row (array of cell texts, borrowed from table) whose first cell is name. */
static json_t *s_row(json_t *table, const char *name)
{
	json_t *row;
	size_t i;

	json_array_foreach(
		table, i,
		row) if (!strcmp(json_string_value(json_array_get(row, 0)) ?: "", name)) return row;
	return NULL;
}

static long s_cell(json_t *row, size_t k)
{
	const char *t = json_string_value(json_array_get(row, k));
	return t && *t ? strtol(t, NULL, 10) : -1;
}

/* Waits until the page's destinations table shows `delivered` for dest; returns the table
 * (new reference) as last read. */
static json_t *s_wait_delivered(wd_t *wd, const char *dest, long delivered)
{
	int64_t deadline = test_now_ms() + WAIT;
	json_t *table = NULL;

	for (;;) {
		json_decref(table);
		table = wd_table(wd, "#destinations tbody tr");
		if (s_cell(s_row(table, dest), 1) == delivered || test_now_ms() >= deadline)
			return table;
		test_sleep_ms(100);
	}
}

/* Clicks the first element matching css, finding it again when the page has redrawn it
 * in between ("stale element"). */
static bool s_click(wd_t *wd, const char *css)
{
	int64_t deadline = test_now_ms() + WAIT;

	for (;;) {
		char *id = wd_find(wd, css);
		int rc = id ? wd_click(wd, id) : -1;
		free(id);
		if (rc == 0)
			return true;
		if (test_now_ms() >= deadline) {
			fprintf(stderr, "    cannot click %s: %s\n", css, wd_error(wd));
			return false;
		}
		test_sleep_ms(100);
	}
}

/* The page's whole visible text (malloc'd). */
static char *s_page_text(wd_t *wd)
{
	json_t *v = wd_script(wd, "return document.body.innerText;");
	char *t = json_string_value(v) ? strdup(json_string_value(v)) : NULL;

	json_decref(v);
	return t;
}

/* ---- tests ---------------------------------------------------------------------------- */

static const char *s_sinks =
	"  - name: letters\n    plugin: sink\n    options: { path: '@DIR@/letters.jsonl' }\n"
	"  - name: calendar\n    plugin: sink\n    options: { path: '@DIR@/calendar.jsonl' }\n";
static const char *s_routes =
	"routes:\n"
	"  - name: to-letters\n    match: { type: post.> }\n    to: letters\n"
	"  - name: to-calendar\n    match: { type: child.absence.reported }\n    to: calendar\n"
	"  - name: audit\n    match: { type: child.> }\n    to: letters\n";

static void test_destinations_table_shows_kanalds_counts(void)
{
	char *conf = kd_config(s_sinks, NULL), *text = NULL;
	kd_t *kd = kd_start("dcounts", conf, s_routes);
	wd_t *wd = NULL;
	json_t *table = NULL, *st = NULL, *d;
	size_t i;

	free(conf);
	REQUIRE(kd != NULL);
	for (int k = 1; k <= 4; k++) {
		char id[16];
		snprintf(id, sizeof id, "l-%d", k);
		REQUIRE(s_send(kd, id, "post.letter.send", "{\"cpr\":\"" CPR "\"}"));
	}
	REQUIRE(s_send(kd, "a-1", "child.absence.reported", NULL));
	REQUIRE(s_send(kd, "u-1", "nobody.wants.this", NULL));
	REQUIRE(kd_wait_lines(kd_path(kd, "letters.jsonl"), 5, WAIT) == 5);
	REQUIRE(kd_wait_lines(kd_path(kd, "calendar.jsonl"), 1, WAIT) == 1);

	REQUIRE((wd = s_browser()) != NULL);
	REQUIRE(wd_navigate(wd, kd->admin_http) == 0);
	table = s_wait_delivered(wd, "letters", 5);
	/* Every destination kanald reports is on the page with kanald's numbers. */
	st = s_api(kd, "/api/v1/status");
	REQUIRE(json_array_size(json_object_get(st, "destinations")) >= 3);
	CU_ASSERT_EQUAL(json_array_size(table),
			json_array_size(json_object_get(st, "destinations")));
	json_array_foreach(json_object_get(st, "destinations"), i, d)
	{
		const char *name = json_string_value(json_object_get(d, "name"));
		json_t *row = s_row(table, name);
		CU_ASSERT_PTR_NOT_NULL(row);
		if (!row) {
			fprintf(stderr, "    destination %s is not on the page\n", name);
			continue;
		}
		CU_ASSERT_EQUAL(s_cell(row, 1),
				json_integer_value(json_object_get(d, "delivered")));
		CU_ASSERT_EQUAL(s_cell(row, 2), json_integer_value(json_object_get(d, "queued")));
		CU_ASSERT_EQUAL(s_cell(row, 4), json_integer_value(json_object_get(d, "rejected")));
		CU_ASSERT_EQUAL(s_cell(row, 5), json_integer_value(json_object_get(d, "dead")));
	}
	/* And the numbers are the ones sent. */
	CU_ASSERT_EQUAL(s_cell(s_row(table, "letters"), 1), 5);
	CU_ASSERT_EQUAL(s_cell(s_row(table, "calendar"), 1), 1);
	CU_ASSERT_EQUAL(s_cell(s_row(table, "deadletter"), 5), 1);
	text = wd_wait_text(wd, "#summary", "modtaget 6", WAIT);
	CU_ASSERT_PTR_NOT_NULL(text);
	free(text);
	/* No clear CPR number anywhere on the page; no error shown. */
	text = s_page_text(wd);
	CU_ASSERT_PTR_NOT_NULL(text);
	CU_ASSERT(!kd_has_clear_cpr(text));
	free(text);
	text = wd_text_of(wd, "#error");
	CU_ASSERT_STRING_EQUAL(text ?: "(none)", "");
	free(text);
	text = NULL;
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	free(text);
	json_decref(table);
	json_decref(st);
	wd_quit(&wd);
	kd_destroy(&kd);
}

static const char *s_strict_sinks =
	"  - name: letters\n    plugin: sink\n"
	"    options: { path: '@DIR@/letters.jsonl', fail_type: post.letter.send }\n";
static const char *s_fixed_sinks =
	"  - name: letters\n    plugin: sink\n    options: { path: '@DIR@/letters.jsonl' }\n";

static void test_dead_letter_sent_again_from_the_page(void)
{
	char *conf = kd_config(s_strict_sinks, NULL), *text = NULL;
	kd_t *kd = kd_start("ddlq", conf, "routes:\n  - name: to-letters\n    to: letters\n");
	wd_t *wd = NULL;
	json_t *rows = NULL;

	free(conf);
	conf = NULL;
	REQUIRE(kd != NULL);
	REQUIRE(s_send(kd, "dl-1", "post.letter.send", "{\"cpr\":\"" CPR "\"}"));
	REQUIRE(s_wait_letters(kd, 1));
	REQUIRE((wd = s_browser()) != NULL);
	REQUIRE(wd_navigate(wd, kd->admin_http) == 0);
	/* The letter is listed, with why and a button to send it again. */
	text = wd_wait_text(wd, "#deadletters tbody tr", "post.letter.send", WAIT);
	REQUIRE(text != NULL);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "to-letters → letters"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "rejected: sink rejects events of type"));
	CU_ASSERT(!kd_has_clear_cpr(text));
	free(text);
	text = wd_text_of(wd, "#deadletters tbody tr button.replay");
	CU_ASSERT_STRING_EQUAL(text ?: "", "send igen");
	free(text);
	text = NULL;

	/* Fix the destination: its options are read at start, so a new config and a
	 * restart; the letter waits in the journal. The page is served anew (a new port). */
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	conf = kd_config(s_fixed_sinks, NULL);
	kd_write_config(kd, conf);
	REQUIRE(kd_restart(kd) == 0);
	REQUIRE(wd_navigate(wd, kd->admin_http) == 0);
	text = wd_wait_text(wd, "#deadletters tbody tr button.replay", "send igen", WAIT);
	REQUIRE(text != NULL);
	free(text);
	text = NULL;
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "letters.jsonl")), 0);

	/* The click: delivered, and the row goes. */
	REQUIRE(s_click(wd, "#deadletters tbody tr button.replay"));
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "letters.jsonl"), 1, WAIT), 1);
	text = test_read_file(kd_path(kd, "letters.jsonl"), NULL);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\"dl-1\""));
	free(text);
	text = NULL;
	CU_ASSERT(wd_wait_count(wd, "#deadletters tbody tr", 0, WAIT));
	CU_ASSERT(s_wait_letters(kd, 0));
	rows = s_wait_delivered(wd, "letters", 1);
	CU_ASSERT_EQUAL(s_cell(s_row(rows, "letters"), 1), 1);
	text = wd_text_of(wd, "#error");
	CU_ASSERT_STRING_EQUAL(text ?: "(none)", "");
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	json_decref(rows);
	free(text);
	free(conf);
	wd_quit(&wd);
	kd_destroy(&kd);
}

/* The routing table of the channel test: s_routes and the two measures of the channel
 * strategy, as routes/municipal.yaml declares them. */
static const char *s_routes_measured =
	"routes:\n"
	"  - name: to-letters\n    match: { type: post.> }\n    to: letters\n"
	"  - name: to-calendar\n    match: { type: child.absence.reported }\n    to: calendar\n"
	"  - name: audit\n    match: { type: child.> }\n    to: letters\n"
	"measures:\n"
	"  - name: letters\n    title: \"Kanalstrategi: breve digitalt og fysisk\"\n"
	"    match: { type: post.letter.status, where: data.status == \"sent\" }\n"
	"    labels: { channel: data.channel }\n"
	"  - name: inquiries\n    match: { type: child.absence.* }\n"
	"    labels: { channel: data.channel }\n"
	"  - name: by-department\n"
	"    match: { type: post.letter.status, where: data.status == \"sent\" }\n"
	"    labels:\n"
	"      department: { from: data.sender.department, default: unknown }\n"
	"      channel: { from: data.channel, default: unknown }\n"
	"    target: { label: channel, digital: [digital], share: 0.7 }\n";

/* The text of cell `col` (1-based) of the row for `series` in the card of `measure`. */
static char *s_measure_cell(wd_t *wd, const char *measure, const char *series, int col)
{
	char sel[256];

	snprintf(sel, sizeof sel,
		 "section[data-measure='%s'] tr[data-series='%s'] td:nth-child(%d)", measure,
		 series, col);
	return wd_text_of(wd, sel);
}

/* Each declared measure is a card: counts and shares per label value, and a chart. */
static void test_measures_show_channel_shares(void)
{
	char *conf = kd_config(s_sinks, NULL), *text = NULL;
	kd_t *kd = kd_start("dchannel", conf, s_routes_measured);
	wd_t *wd = NULL;
	json_t *v = NULL;
	static const char *const letters[][3] = {
		{ "sent", "digital", "skole" },   { "sent", "digital", "skole" },
		{ "sent", "physical", "social" }, { "sent", "digital", "social" },
		{ "failed", "digital", "skole" }, /* not sent: not counted */
	};
	static const char *const inquiries[] = { "app", "web", "phone" };
	static const struct {
		const char *measure, *series;
		int col;
		const char *want;
	} cells[] = {
		{ "letters", "digital", 2, "3" },     { "letters", "physical", 2, "1" },
		{ "letters", "physical", 3, "25 %" }, { "inquiries", "phone", 3, "33 %" },
		{ "inquiries", "app", 2, "1" },
	};

	free(conf);
	REQUIRE(kd != NULL);
	for (size_t k = 0; k < sizeof letters / sizeof *letters; k++) {
		char id[16], data[192];
		snprintf(id, sizeof id, "s-%zu", k);
		snprintf(
			data, sizeof data,
			"{\"status\":\"%s\",\"channel\":\"%s\",\"sender\":{\"department\":\"%s\"}}",
			letters[k][0], letters[k][1], letters[k][2]);
		REQUIRE(s_send(kd, id, "post.letter.status", data));
	}
	for (size_t k = 0; k < sizeof inquiries / sizeof *inquiries; k++) {
		char id[16], data[128];
		snprintf(id, sizeof id, "q-%zu", k);
		snprintf(data, sizeof data, "{\"channel\":\"%s\",\"reason\":\"sick\"}",
			 inquiries[k]);
		REQUIRE(s_send(kd, id, "child.absence.reported", data));
	}
	REQUIRE(kd_wait_lines(kd_path(kd, "letters.jsonl"), 8, WAIT) == 8);

	REQUIRE((wd = s_browser()) != NULL);
	REQUIRE(wd_navigate(wd, kd->admin_http) == 0);
	/* 3 of the 4 letters sent went digitally, 1 physically (the failed one is not counted). */
	text = wd_wait_text(wd,
			    "section[data-measure='letters'] tr[data-series='digital'] "
			    "td:nth-child(3)",
			    "75 %", WAIT);
	CU_ASSERT_PTR_NOT_NULL(text);
	free(text);
	text = wd_text_of(wd, "section[data-measure='letters'] h2");
	CU_ASSERT_STRING_EQUAL(text ?: "", "Kanalstrategi: breve digitalt og fysisk");
	free(text);
	/* Count (column 2) and share (3) per label value; the inquiries came by app, web and
	 * phone, one each. */
	for (size_t k = 0; k < sizeof cells / sizeof *cells; k++) {
		text = s_measure_cell(wd, cells[k].measure, cells[k].series, cells[k].col);
		CU_ASSERT_STRING_EQUAL(text ?: "", cells[k].want);
		free(text);
	}
	/* A measure with a target and a department label has a table per department: count,
	 * digital share, and the target reached (skole 2 of 2) or not (social 1 of 2 < 70 %). */
	{
		static const struct {
			const char *department, *want[3];
		} depts[] = {
			{ "skole", { "2", "100 %", "nået" } },
			{ "social", { "2", "50 %", "under" } },
		};
		for (size_t k = 0; k < sizeof depts / sizeof *depts; k++) {
			for (int col = 2; col <= 4; col++) {
				char sel[256];
				snprintf(sel, sizeof sel,
					 "section[data-measure='by-department'] "
					 "tr[data-department='%s'] td:nth-child(%d)",
					 depts[k].department, col);
				text = wd_text_of(wd, sel);
				CU_ASSERT_STRING_EQUAL(text ?: "", depts[k].want[col - 2]);
				free(text);
			}
		}
		text = NULL;
	}
	/* The inquiries measure has no title: its name heads the card. */
	text = wd_text_of(wd, "section[data-measure='inquiries'] h2");
	CU_ASSERT_STRING_EQUAL(text ?: "", "inquiries");
	free(text);
	text = NULL;
	/* The chart over time has bars for the letters: one per series and minute. */
	v = wd_script(wd, "return document.querySelectorAll("
			  "\"section[data-measure='letters'] svg rect\").length;");
	CU_ASSERT(json_integer_value(v) >= 2);
	{
		/* The same counts in /metrics, one sample per label value. */
		char url[512];
		http_answer_t a = { 0 };
		snprintf(url, sizeof url, "%s/metrics", kd->admin_http);
		http_request(NULL, &(http_request_t){ .url = url }, &a);
		CU_ASSERT_EQUAL(a.status, 200);
		CU_ASSERT_PTR_NOT_NULL(strstr(a.body ?: "", "# TYPE kanal_measure_total counter"));
		CU_ASSERT_PTR_NOT_NULL(
			strstr(a.body ?: "",
			       "kanal_measure_total{measure=\"letters\",channel=\"digital\"} 3\n"));
		CU_ASSERT_PTR_NOT_NULL(strstr(
			a.body ?: "",
			"kanal_measure_total{measure=\"letters\",channel=\"physical\"} 1\n"));
		http_answer_clear(&a);
	}
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	json_decref(v);
	free(text);
	wd_quit(&wd);
	kd_destroy(&kd);
}

static void test_page_asks_for_the_token(void)
{
	kd_t *kd = kd_prepare("dtoken", "", s_routes);
	char *token_path = test_write_file(kd->dir, "admin.token", TOKEN "\n"), *conf = NULL;
	char *text = NULL, *field = NULL;
	const char *key = "  admin_http: http://127.0.0.1:0\n";
	wd_t *wd = NULL;
	json_t *table = NULL, *v = NULL;

	REQUIRE(token_path && chmod(token_path, 0600) == 0);
	{
		char *base = kd_config(s_sinks, NULL), *at = base ? strstr(base, key) : NULL;
		if (!at || asprintf(&conf, "%.*s  admin_token_file: %s\n%s",
				    (int)(at - base + strlen(key)), base, token_path,
				    at + strlen(key)) < 0)
			conf = NULL;
		free(base);
	}
	REQUIRE(conf != NULL);
	kd_write_config(kd, conf);
	REQUIRE(kd_launch(kd) == 0);
	REQUIRE(s_send(kd, "t-1", "post.letter.send", NULL));
	REQUIRE(kd_wait_lines(kd_path(kd, "letters.jsonl"), 1, WAIT) == 1);

	REQUIRE((wd = s_browser()) != NULL);
	REQUIRE(wd_navigate(wd, kd->admin_http) == 0);
	/* Without the token: no numbers, and a field asking for it. */
	text = wd_wait_text(wd, "#error", "adgangsnøglen", WAIT);
	CU_ASSERT_PTR_NOT_NULL(text);
	free(text);
	text = NULL;
	v = wd_script(wd, "return document.getElementById('login').hidden;");
	CU_ASSERT(json_is_false(v));
	json_decref(v);
	v = NULL;
	table = wd_table(wd, "#destinations tbody tr");
	CU_ASSERT_EQUAL(json_array_size(table), 0);
	json_decref(table);
	table = NULL;

	/* A wrong token is told apart; the right one shows kanald's numbers. */
	REQUIRE((field = wd_find(wd, "#token")) != NULL);
	CU_ASSERT_EQUAL(wd_type(wd, field, "not-the-token\n"), 0);
	text = wd_wait_text(wd, "#error", "passer ikke", WAIT);
	CU_ASSERT_PTR_NOT_NULL(text);
	free(text);
	text = NULL;
	free(field);
	REQUIRE((field = wd_find(wd, "#token")) != NULL);
	CU_ASSERT_EQUAL(wd_type(wd, field, TOKEN "\n"), 0);
	table = s_wait_delivered(wd, "letters", 1);
	CU_ASSERT_EQUAL(s_cell(s_row(table, "letters"), 1), 1);
	v = wd_script(wd, "return document.getElementById('login').hidden;");
	CU_ASSERT(json_is_true(v));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	json_decref(v);
	json_decref(table);
	free(field);
	free(text);
	free(conf);
	free(token_path);
	wd_quit(&wd);
	kd_destroy(&kd);
}

TEST_MAIN("dashboard", TEST(test_destinations_table_shows_kanalds_counts),
	  TEST(test_dead_letter_sent_again_from_the_page), TEST(test_measures_show_channel_shares),
	  TEST(test_page_asks_for_the_token))
