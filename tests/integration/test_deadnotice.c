/*
 * tests/integration/test_deadnotice.c — a letter that ends in the dead letters still tells
 * its sender, exactly once. The real kanald with the letter connector (spool mode) and a
 * webhook receiver standing in for the case system, routed by the shipped routes
 * `letter-status-to-sender` and `letter-dead-to-sender` (routes/municipal.yaml): a letter
 * whose print spool cannot be written is retried until the route's budget (2 attempts) is
 * spent, goes to the dead letters, and kanald's kanal.delivery.dead becomes the letter's one
 * final `failed` post.letter.status at the sender — not a second one after a restart or a
 * replay of the dead letter. A letter the connector REJECTs gets its `failed` status from
 * the connector, and kanald adds none.
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

#include "kanald.h"
#include "shipped.h"
#include "test.h"
#include "webhook_rx.h"

#define WAIT 10000 /* ms: the bound of every wait */

/* The letter's route as letter-to-citizen without its enrich step (the letters carry
 * data.recipient already) and Digital Post, with a budget of two attempts; then the shipped
 * receipt routes. Ownership: the caller frees the result. */
static char *s_routes(void)
{
	char *status = shipped_route("routes/municipal.yaml", "letter-status-to-sender");
	char *dead = shipped_route("routes/municipal.yaml", "letter-dead-to-sender");
	char *out = NULL;

	if (status && dead &&
	    asprintf(&out,
		     "routes:\n"
		     "  - name: letter-to-citizen\n"
		     "    match: { type: post.letter.send }\n"
		     "    to: letter\n"
		     "    retry: { max_attempts: 2, backoff: 100ms, max_backoff: 200ms }\n"
		     "%s\n%s\n",
		     status, dead) < 0)
		out = NULL;
	free(status);
	free(dead);
	return out;
}

/* A test's kanald, the case system's webhook, and the print spool in a folder of the
 * test's own (so that it can go and come back while kanald runs). */
typedef struct fixture {
	webhook_rx_t *rx;
	kd_t *kd;
	char *dir, *spool;
	void *sub;
	json_t *finals;
	char *letter;
} fixture_t;

/* Starts kanald with the letter connector (spool mode) and the case system's webhook.
 * Returns false when something did not start. */
static bool s_start(fixture_t *f, const char *tag)
{
	char *instances = NULL, *conf, *routes = s_routes();

	memset(f, 0, sizeof *f);
	f->rx = webhook_rx_new();
	f->dir = test_tmpdir(tag);
	if (!routes || !f->rx || !f->dir || asprintf(&f->spool, "%s/spool", f->dir) < 0 ||
	    mkdir(f->spool, 0700) != 0 ||
	    asprintf(&instances,
		     "  - name: letter\n    plugin: letter\n"
		     "    options: { mode: spool, spool_dir: '%s', sender: 'Aarhus Kommune', "
		     "retry_after: 100ms }\n"
		     "  - name: case-system\n    plugin: http\n    options: { url: "
		     "'%s/letter-status' }\n",
		     f->spool, webhook_rx_url(f->rx)) < 0) {
		free(routes);
		return false;
	}
	conf = kd_config(instances, NULL);
	f->kd = kd_start(tag, conf, routes);
	free(conf);
	free(instances);
	free(routes);
	return f->kd != NULL;
}

static void s_teardown(fixture_t *f)
{
	json_decref(f->finals);
	if (f->sub)
		kd_unsubscribe(&f->sub);
	kd_destroy(&f->kd);
	webhook_rx_destroy(&f->rx);
	if (f->dir)
		test_rmdir_r(f->dir);
	free(f->dir);
	free(f->spool);
	free(f->letter);
}

/* A letter from the case system "sagssystem" with its department's sender block; the
 * recipient as the route's CPR lookup leaves it (not enrolled in Digital Post), or `status`
 * 90 (dead) for a letter the connector refuses. Ownership: the caller frees the result. */
static char *s_letter(const char *id, int status)
{
	json_t *ev = json_pack(
		"{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s, s:{s:s, s:s, s:s}, s:{s:s, s:s}, "
		"s:{s:s, s:i, s:b, s:{s:s, s:s}, s:{s:s, s:s, s:s, s:s}}}}",
		"specversion", "1.0", "id", id, "source", "sagssystem", "type", "post.letter.send",
		"correlationid", "sag-4711", "data", "recipient_cpr", "0101654001", "label",
		"Din plads i dagtilbud", "document", "filename", "plads.pdf", "mimetype",
		"application/pdf", "content", "JVBERi0xLjQKJcOkw7zDtsOfCg==", "sender", "label",
		"Børn og Unge", "department", "boern-unge", "recipient", "cpr", "0101654001",
		"status", status, "digital_post", 0, "name", "first", "Bent", "last", "Olsen",
		"address", "street", "Bakkevej", "number", "88", "postcode", "8240", "city",
		"Risskov");
	char *text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;

	json_decref(ev);
	return text;
}

/* The final statuses of letter `id` the case system has received (new reference, an
 * array), after waiting up to timeout_ms for at least `want` of them. */
static json_t *s_finals(webhook_rx_t *rx, const char *id, size_t want, int timeout_ms)
{
	json_t *finals = json_array();

	for (int waited = 0;; waited += 50) {
		json_t *all = webhook_rx_bodies(rx), *ev;
		size_t i;

		json_array_clear(finals);
		json_array_foreach(all, i, ev)
		{
			json_t *d = json_object_get(ev, "data");
			if (!strcmp(json_string_value(json_object_get(ev, "type")) ?: "",
				    "post.letter.status") &&
			    !strcmp(json_string_value(json_object_get(d, "letter")) ?: "", id) &&
			    json_is_true(json_object_get(d, "final")))
				json_array_append(finals, ev);
		}
		json_decref(all);
		if (json_array_size(finals) >= want || waited >= timeout_ms)
			return finals;
		usleep(50 * 1000);
	}
}

/* A letter whose spool cannot be written is retried twice, dead-lettered, and its sender
 * hears once: `failed`, final, with the reason and the department's sender block; neither
 * a restart nor a replay of the dead letter (which dies again) makes a second status. */
static void test_dead_letter_gets_one_final_failed_status(void)
{
	fixture_t f;
	json_t *d, *all;
	char *p, *text, *reply;

	REQUIRE(s_start(&f, "deadnotice-retry"));
	REQUIRE((f.letter = s_letter("brev-dead-1", 1)) != NULL);
	f.sub = kd_subscribe(f.kd, "dead post.letter.send");
	CU_ASSERT_EQUAL(rmdir(f.spool), 0);
	CU_ASSERT(kd_send_event(f.kd, f.letter, "accepted", WAIT, NULL));
	p = kd_expect(f.sub, "dead post.letter.send", "retry budget spent", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	f.finals = s_finals(f.rx, "brev-dead-1", 1, WAIT);
	REQUIRE(json_array_size(f.finals) == 1);
	d = json_object_get(json_array_get(f.finals, 0), "data");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "status")) ?: "", "failed");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "letter_source")) ?: "",
			       "sagssystem");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "channel")) ?: "", "physical");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(d, "attempts")), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(d, "reason")) ?: "",
				      "retry budget spent"));
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(d, "reason")) ?: "",
				      "cannot write print job"));
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(d, "sender"), "department"))
			?: "",
		"boern-unge");
	/* The status refers to the letter; it carries no CPR number, no name, no address. */
	all = webhook_rx_bodies(f.rx);
	text = json_dumps(all, JSON_COMPACT);
	CU_ASSERT(text && !kd_has_clear_cpr(text) && !strstr(text, "Olsen") &&
		  !strstr(text, "Bakkevej"));
	free(text);
	json_decref(all);

	/* The same dead letter replayed, the spool still missing: it dies again (a replay
	 * retries by kanald's default budget: 5 attempts, about 15 s), unheard. */
	reply = kd_admin(
		f.kd, "{\"cmd\":\"dlq.replay\",\"match\":{\"route\":\"letter-to-citizen\"}}", WAIT);
	CU_ASSERT(reply && strstr(reply, "\"replayed\":[") && !strstr(reply, "\"replayed\":[]"));
	free(reply);
	p = kd_expect(f.sub, "dead post.letter.send", "brev-dead-1", 30000);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	/* And kanald stopped and started again (the spool back, or the connector would refuse
	 * to start). */
	CU_ASSERT_EQUAL(kd_stop(f.kd, SIGTERM, WAIT), 0);
	CU_ASSERT_EQUAL(mkdir(f.spool, 0700), 0);
	CU_ASSERT_EQUAL(kd_restart(f.kd), 0);
	json_decref(f.finals);
	f.finals = s_finals(f.rx, "brev-dead-1", 2, 1500);
	CU_ASSERT_EQUAL(json_array_size(f.finals), 1);
	CU_ASSERT_EQUAL(kd_stop(f.kd, SIGTERM, WAIT), 0);
done:
	s_teardown(&f);
}

/* A letter the connector refuses for good (the recipient is dead) gets the connector's
 * final `failed`, and kanald publishes no notice of its own: one final status. */
static void test_rejected_letter_still_gets_exactly_one(void)
{
	fixture_t f;
	json_t *first;
	char *p;

	REQUIRE(s_start(&f, "deadnotice-reject"));
	REQUIRE((f.letter = s_letter("brev-dead-2", 90)) != NULL);
	f.sub = kd_subscribe(f.kd, "dead post.letter.send");
	CU_ASSERT(kd_send_event(f.kd, f.letter, "accepted", WAIT, NULL));
	p = kd_expect(f.sub, "dead post.letter.send", "brev-dead-2", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	f.finals = s_finals(f.rx, "brev-dead-2", 2, 3000);
	CU_ASSERT_EQUAL(json_array_size(f.finals), 1);
	first = json_array_get(f.finals, 0);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(first, "data"), "status")) ?: "",
		"failed");
	/* The connector said it, not kanald. */
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(first, "source")) ?: "", "letter");
	CU_ASSERT_EQUAL(kd_stop(f.kd, SIGTERM, WAIT), 0);
done:
	s_teardown(&f);
}

/* Which dead letters make a notice, in memory mode: a transform that fails and a spent
 * retry budget do; a destination's REJECT, a route to `deadletter` and an unmatched event
 * do not; and a notice that dies itself makes no other (one of its two destinations has a
 * transform that always fails). A notice sent by anyone but kanald is refused. */
static const char *s_which_routes =
	"routes:\n"
	"  - name: bad-transform\n    match: { type: demo.transform }\n"
	"    transform: 'error(\"no such field\")'\n    to: worker\n"
	"  - name: flaky\n    match: { type: demo.retry }\n    to: worker\n"
	"    retry: { max_attempts: 2, backoff: 50ms, max_backoff: 100ms }\n"
	"  - name: refused\n    match: { type: demo.reject }\n    to: worker\n"
	"  - name: on-purpose\n    match: { type: demo.keep }\n    to: deadletter\n"
	"  - name: notices\n    match: { type: kanal.delivery.dead, source: kanald }\n"
	"    to: [notices, {instance: broken, transform: 'error(\"broken\")'}]\n"
	"default: deadletter\n";

static void test_which_dead_letters_make_a_notice(void)
{
	static const char *const types[] = { "demo.transform", "demo.retry", "demo.reject",
					     "demo.keep", "demo.unmatched" };
	char *conf, *log = NULL, *p;
	kd_t *kd;
	void *sub = NULL;
	json_t *lines = json_array();

	conf = kd_config("  - name: worker\n    plugin: sink\n"
			 "    options: { path: '@DIR@/worker.jsonl', fail_type: demo.reject, "
			 "retry_type: demo.retry, retry_after: 50ms }\n"
			 "  - name: notices\n    plugin: sink\n"
			 "    options: { path: '@DIR@/notices.jsonl' }\n"
			 "  - name: broken\n    plugin: sink\n"
			 "    options: { path: '@DIR@/broken.jsonl' }\n",
			 "journal:\n  mode: memory\n");
	kd = kd_start("deadnotice-which", conf, s_which_routes);
	free(conf);
	REQUIRE(kd != NULL);
	sub = kd_subscribe(kd, "dead kanal.delivery.dead");
	for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
		char id[32], *ev;
		snprintf(id, sizeof id, "ev-%zu", i);
		ev = kd_event("tester", id, types[i], "{\"n\":1}");
		CU_ASSERT(kd_send_event(kd, ev, "accepted", WAIT, NULL));
		free(ev);
	}
	/* Two notices: the transform's and the spent budget's, each refused by `broken`. */
	CU_ASSERT_EQUAL(kd_wait_lines(kd_path(kd, "notices.jsonl"), 2, WAIT), 2);
	p = kd_expect(sub, "dead kanal.delivery.dead", NULL, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	p = kd_expect(sub, "dead kanal.delivery.dead", NULL, WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	/* No third: not for the REJECT, `deadletter` or the unmatched event, nor for the
	 * notices that died at `broken`. */
	usleep(500 * 1000);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "notices.jsonl")), 2);
	CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "broken.jsonl")), 0);
	log = test_read_file(kd_path(kd, "notices.jsonl"), NULL);
	for (char *line = log, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		json_t *o;
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if ((o = json_loads(line, 0, NULL)))
			json_array_append_new(lines, o);
		if (!nl)
			break;
	}
	REQUIRE(json_array_size(lines) == 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *ev = json_array_get(lines, i), *d = json_object_get(ev, "data");
		const char *type =
			json_string_value(json_object_get(json_object_get(d, "event"), "type"));
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ev, "source")) ?: "",
				       "kanald");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(ev, "causationid")) ?: "",
				       i ? "ev-1" : "ev-0");
		CU_ASSERT_STRING_EQUAL(type ?: "", i ? "demo.retry" : "demo.transform");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "reason")) ?: "",
				       i ? "retry budget spent" : "rejected");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "route")) ?: "",
				       i ? "flaky" : "bad-transform");
		CU_ASSERT_EQUAL(json_integer_value(json_object_get(d, "attempts")), i ? 2 : 1);
		/* The original's data is referenced by id, not copied. */
		CU_ASSERT_PTR_NULL(json_object_get(json_object_get(d, "event"), "data"));
	}
	/* Nobody else may send one: source kanald is kanald's own, so a forged notice (which
	 * shipped routes would turn into a sender's final `failed`) is refused. */
	{
		char *forged = kd_event("kanald", "dead-forged", "kanal.delivery.dead",
					"{\"route\":\"flaky\",\"reason\":\"retry budget spent\"}");
		CU_ASSERT(kd_send_event(kd, forged, "forbidden", WAIT, NULL));
		free(forged);
		usleep(300 * 1000);
		CU_ASSERT_EQUAL(kd_lines(kd_path(kd, "notices.jsonl")), 2);
	}
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
done:
	free(log);
	json_decref(lines);
	if (sub)
		kd_unsubscribe(&sub);
	kd_destroy(&kd);
}

TEST_MAIN("deadnotice", TEST(test_dead_letter_gets_one_final_failed_status),
	  TEST(test_rejected_letter_still_gets_exactly_one),
	  TEST(test_which_dead_letters_make_a_notice))
