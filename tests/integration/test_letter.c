/*
 * tests/integration/test_letter.c — the letter connector (plugins/letter) in the real
 * kanald: letters whose data already carries data.recipient (as the route's CPR enrich
 * leaves it) become print jobs in a spool folder — whole files, mode 0600, the Danish
 * address block and postal category right, one job per letter even when the letter is
 * delivered again or kanald is killed half-way through 200 letters — or are POSTed to the
 * simulated print provider (kanal-sim-print), which sees each job once, whose 503 is
 * retried and whose 400 is a dead letter. Letters that cannot go by post are refused with
 * their reason; each carried letter ends with a post.letter.status saying "physical" and
 * why; and no CPR number, name or address reaches the log or the event stream.
 *
 * The recipients and what their jobs must hold are in tests/data/letter/recipients.json.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <kanal/kanal.h>

#include "blob_store.h"
#include "kanald.h"
#include "test.h"
#include "upstream.h"

#define WAIT 8000 /* ms: the bound of every wait */

static const char *s_cases_path = "tests/data/letter/recipients.json";

/* Routes like routes/municipal.yaml's letter-to-citizen, without the enrich step (the
 * test's letters carry data.recipient already) and without Digital Post before it. */
static const char *s_routes =
	"routes:\n"
	"  - name: letter-to-citizen\n"
	"    match: { type: post.letter.send }\n"
	"    to: letter\n"
	"    retry: { max_attempts: 30, backoff: 100ms, max_backoff: 400ms }\n"
	"  - name: letter-status\n"
	"    match: { type: post.letter.status }\n"
	"    to: letter-log\n";

static const char *s_log_instance =
	"  - name: letter-log\n    plugin: sink\n    options: { path: '@DIR@/status.jsonl' }\n";

/* Names and address lines of the people the tests write to: none may reach a log line or
 * the event stream. */
static const char *const s_personal[] = { "Kanalgade", "Jensen",   "Maja",
					  "Skjultvej", "Larsen",   "Mælkebøttevej",
					  "Pedersen",  "Aarhus C", NULL };

/* ---- helpers -------------------------------------------------------------------------- */

static json_t *s_cases(void)
{
	json_error_t err;
	json_t *root = json_load_file(s_cases_path, 0, &err);

	if (!root)
		fprintf(stderr, "%s:%d: %s\n", s_cases_path, err.line, err.text);
	return root;
}

static json_t *s_case(json_t *root, const char *id)
{
	size_t i;
	json_t *c;

	json_array_foreach(
		json_object_get(root, "cases"), i,
		c) if (!strcmp(json_string_value(json_object_get(c, "id")), id)) return c;
	return NULL;
}

/* The post.letter.send event for a case, as the route hands it to the letter destination
 * after its CPR enrich. Returns a JSON object (new reference). */
static json_t *s_letter_json(const char *id, const json_t *c)
{
	const char *filename = json_string_value(json_object_get(c, "filename"));
	json_t *data = json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s}}", "recipient_cpr",
				 json_string_value(json_object_get(c, "recipient_cpr")), "label",
				 "Din plads i dagtilbud", "document", "filename",
				 filename ? filename : "plads.pdf", "language", "da", "mimetype",
				 "application/pdf", "content", "JVBERi0xLjQKJcOkw7zDtsOfCg==");

	if (json_object_get(c, "recipient"))
		json_object_set(data, "recipient", json_object_get(c, "recipient"));
	if (json_object_get(c, "postal_category"))
		json_object_set(data, "postal_category", json_object_get(c, "postal_category"));
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "specversion", "1.0", "id", id, "source",
			 "sagssystem", "type", "post.letter.send", "correlationid", "sag-4711",
			 "data", data);
}

static char *s_letter(const char *id, const json_t *c)
{
	json_t *ev = s_letter_json(id, c);
	char *text = json_dumps(ev, JSON_COMPACT);

	json_decref(ev);
	return text;
}

/* Sends one event and asserts the gateway accepted it. */
static void s_send(kd_t *kd, char *json_owned)
{
	CU_ASSERT(kd_send_event(kd, json_owned, "accepted", WAIT, NULL));
	free(json_owned);
}

/* Counts the spool's job files (*.json) and, in *hidden, its dot files (temporary files). */
static size_t s_count_jobs(const char *dir, size_t *hidden)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0, h = 0;

	while (d && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (e->d_name[0] == '.')
			h++;
		else if (len > 5 && !strcmp(e->d_name + len - 5, ".json"))
			n++;
	}
	if (d)
		closedir(d);
	if (hidden)
		*hidden = h;
	return n;
}

static size_t s_wait_jobs(const char *dir, size_t n, int timeout_ms)
{
	size_t have = 0;

	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		if ((have = s_count_jobs(dir, NULL)) >= n)
			break;
		usleep(20 * 1000);
	}
	return have;
}

/* The job of `letter` in the spool (parsed; new reference) and its file's path in path,
 * or NULL. */
static json_t *s_find_job(const char *dir, const char *letter, char *path, size_t size)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	json_t *found = NULL;

	while (d && !found && (e = readdir(d))) {
		char p[4096];
		json_t *job;
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		job = json_load_file(p, 0, NULL);
		if (job &&
		    !strcmp(json_string_value(json_object_get(job, "letter")) ?: "", letter)) {
			found = job;
			if (path)
				snprintf(path, size, "%s", p);
		} else {
			json_decref(job);
		}
	}
	if (d)
		closedir(d);
	return found;
}

/* The status event for `letter` from the letter-log sink's file (new reference) or NULL,
 * waiting for it. */
static json_t *s_wait_status(kd_t *kd, const char *letter)
{
	for (int waited = 0; waited < WAIT; waited += 50) {
		char *text = test_read_file(kd_path(kd, "status.jsonl"), NULL);
		for (char *line = text ? strtok(text, "\n") : NULL; line;
		     line = strtok(NULL, "\n")) {
			json_t *ev = json_loads(line, 0, NULL);
			const char *l = json_string_value(
				json_object_get(json_object_get(ev, "data"), "letter"));
			if (l && !strcmp(l, letter)) {
				free(text);
				return ev;
			}
			json_decref(ev);
		}
		free(text);
		usleep(50 * 1000);
	}
	return NULL;
}

/* Waits until the dead-letter store lists `event_id`; returns the dlq.list reply. */
static char *s_wait_dead(kd_t *kd, const char *event_id)
{
	char needle[160];

	snprintf(needle, sizeof needle, "\"event_id\":\"%s\"", event_id);
	for (int waited = 0; waited < WAIT; waited += 50) {
		char *reply = kd_admin(kd, "{\"cmd\":\"dlq.list\"}", WAIT);
		if (reply && strstr(reply, needle))
			return reply;
		free(reply);
		usleep(50 * 1000);
	}
	return NULL;
}

/* The dead letter of event_id's error text (malloc'd) or NULL. */
static char *s_dead_error(kd_t *kd, const char *event_id)
{
	char *reply = s_wait_dead(kd, event_id);
	json_t *root = reply ? json_loads(reply, 0, NULL) : NULL, *item;
	char *error = NULL;
	size_t i;

	json_array_foreach(json_object_get(root, "items"), i, item)
	{
		if (strcmp(json_string_value(json_object_get(item, "event_id")) ?: "", event_id))
			continue;
		error = json_dumps(item, JSON_COMPACT);
		break;
	}
	json_decref(root);
	free(reply);
	return error;
}

/* Asserts `text` holds no clear CPR number and none of the people's names or address
 * lines; says what it found. */
static void s_assert_no_personal_data(const char *what, const char *text)
{
	size_t off, len;

	if (!text)
		return;
	CU_ASSERT_FALSE(kanal_cpr_find(text, strlen(text), &off, &len));
	if (kanal_cpr_find(text, strlen(text), &off, &len))
		fprintf(stderr, "%s holds a clear CPR number at offset %zu\n", what, off);
	for (int i = 0; s_personal[i]; i++) {
		CU_ASSERT_PTR_NULL(strstr(text, s_personal[i]));
		if (strstr(text, s_personal[i]))
			fprintf(stderr, "%s holds personal data: '%s'\n", what, s_personal[i]);
	}
}

/* Reads everything on the stream until it has been quiet for 500 ms (at most WAIT) and
 * checks that none of it holds personal data. Returns how many happenings it read. */
static int s_drain_stream(void *sub)
{
	char topic[256];
	int n = 0;

	for (int i = 0; i < 10000; i++) {
		char *payload = NULL;
		if (kd_next(sub, topic, sizeof topic, &payload, 500) != 0)
			break;
		s_assert_no_personal_data("the event stream (topic)", topic);
		s_assert_no_personal_data("the event stream", payload);
		free(payload);
		n++;
	}
	return n;
}

/* A kanald with the letter connector in spool mode over @DIR@/spool (made unless
 * make_spool is false) and a key for pseudonyms; `extra` is more top-level YAML. */
static kd_t *s_start_spool(const char *tag, bool make_spool, const char *letter_opts,
			   const char *extra)
{
	char *instances, *conf, *key;
	kd_t *kd;

	if (asprintf(&instances,
		     "  - name: letter\n    plugin: letter\n"
		     "    options: { mode: spool, spool_dir: spool, pseudonym_key: pseudonym.key, "
		     "sender: 'Aarhus Kommune'%s%s }\n%s",
		     letter_opts ? ", " : "", letter_opts ? letter_opts : "", s_log_instance) < 0)
		return NULL;
	conf = kd_config(instances, extra);
	kd = kd_prepare(tag, conf, s_routes);
	free(conf);
	free(instances);
	key = test_write_file(kd->dir, "pseudonym.key", "kanal-test-pseudonym-key-0123456789\n");
	chmod(key, 0600);
	free(key);
	if (make_spool)
		mkdir(kd_path(kd, "spool"), 0700);
	if (kd_launch(kd) != 0) {
		char *log = kd_log(kd);
		fprintf(stderr, "kanald did not start:\n%s\n", log ? log : "");
		free(log);
		kd_destroy(&kd);
	}
	return kd;
}

/* ---- spool mode ----------------------------------------------------------------------- */

static void test_spool_job_file_and_status(void)
{
	json_t *cases = s_cases(), *job, *status, *block;
	kd_t *kd = s_start_spool("letter-spool", true, NULL, NULL);
	char spool[4096], path[4096], *p;
	size_t hidden = 99;
	struct stat st;
	void *sub;

	CU_ASSERT_PTR_NOT_NULL_FATAL(cases);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	snprintf(spool, sizeof spool, "%s", kd_path(kd, "spool"));
	sub = kd_subscribe(kd, "");
	s_send(kd, s_letter("brev-1", s_case(cases, "block-maja")));

	CU_ASSERT_EQUAL(s_wait_jobs(spool, 1, WAIT), 1);
	job = s_find_job(spool, "brev-1", path, sizeof path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(job);
	/* The job a print provider reads: the address block, the category, the document. */
	block = json_object_get(json_object_get(job, "recipient"), "address_block");
	CU_ASSERT_TRUE(json_equal(block, json_object_get(s_case(cases, "block-maja"), "block")));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(job, "format")),
			       "kanal.print-job/1");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(job, "postal_category")),
			       "Economique");
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(job, "document"), "content")),
		"JVBERi0xLjQKJcOkw7zDtsOfCg==");
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(job, "document"), "filename")),
		"plads.pdf");
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(job, "sender"), "name")),
		"Aarhus Kommune");
	CU_ASSERT_PTR_NOT_NULL(json_string_value(json_object_get(job, "created")));
	/* The print provider needs no CPR number; the job has none. */
	p = json_dumps(job, JSON_COMPACT);
	CU_ASSERT_FALSE(kd_has_clear_cpr(p));
	free(p);
	/* The file is named after the job, private to its owner, and nothing half-written
	 * lies beside it. */
	{
		char want[256];
		snprintf(want, sizeof want, "/%s.json",
			 json_string_value(json_object_get(job, "job")));
		CU_ASSERT_PTR_NOT_NULL(strstr(path, want));
	}
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	CU_ASSERT_EQUAL(s_count_jobs(spool, &hidden), 1);
	CU_ASSERT_EQUAL(hidden, 0);

	/* Every letter ends with a status: physical, and why. */
	status = s_wait_status(kd, "brev-1");
	CU_ASSERT_PTR_NOT_NULL_FATAL(status);
	{
		json_t *data = json_object_get(status, "data");
		const char *subject = json_string_value(json_object_get(status, "subject"));
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(status, "type")),
				       "post.letter.status");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(data, "channel")),
				       "physical");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(data, "status")), "sent");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(data, "reason")),
				       "fallback: the digital channel did not deliver");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(data, "postal_category")),
				       "Economique");
		CU_ASSERT_TRUE(
			json_equal(json_object_get(data, "job"), json_object_get(job, "job")));
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(status, "causationid")),
				       "brev-1");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(status, "correlationid")),
				       "sag-4711");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(status, "source")),
				       "letter");
		/* It is the letter's final status, naming the system that sent the letter, so
		 * that a route can return it there. A letter without data.sender has none. */
		CU_ASSERT_TRUE(json_is_true(json_object_get(data, "final")));
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(data, "letter_source"))
					       ?: "",
				       "sagssystem");
		CU_ASSERT_PTR_NULL(json_object_get(data, "sender"));
		/* The subject is the recipient's pseudonym, never the number. */
		CU_ASSERT_PTR_NOT_NULL(subject);
		CU_ASSERT(subject && !strncmp(subject, "person:", 7) && strlen(subject) == 7 + 64);
		p = json_dumps(status, JSON_COMPACT);
		CU_ASSERT_FALSE(kd_has_clear_cpr(p));
		free(p);
	}
	json_decref(status);
	json_decref(job);

	/* A letter naming its sender (the department) gets it back in the status. */
	{
		json_t *ev = s_letter_json("brev-2", s_case(cases, "block-maja"));
		json_t *sender = json_pack("{s:s, s:s}", "label", "Børn og Unge", "department",
					   "boern-unge");
		json_object_set(json_object_get(ev, "data"), "sender", sender);
		s_send(kd, json_dumps(ev, JSON_COMPACT));
		status = s_wait_status(kd, "brev-2");
		CU_ASSERT_PTR_NOT_NULL(status);
		CU_ASSERT_TRUE(json_equal(
			json_object_get(json_object_get(status, "data"), "sender"), sender));
		json_decref(status);
		json_decref(sender);
		json_decref(ev);
	}

	p = kd_expect(sub, "delivered post.letter.send", "\"brev-1\"", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	s_drain_stream(sub);
	kd_unsubscribe(&sub);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	p = kd_log(kd);
	s_assert_no_personal_data("kanald's log", p);
	free(p);
	kd_destroy(&kd);
	json_decref(cases);
}

/* Each recipient of recipients.json: the address block, category and reason it gets, or
 * the reason it is refused with (a dead letter: the route has no fallback after letter). */
static void test_address_blocks_reasons_and_refusals(void)
{
	json_t *cases = s_cases(), *c;
	kd_t *kd = s_start_spool("letter-table", true, NULL, NULL);
	char spool[4096];
	size_t i, printed = 0;
	void *sub;

	CU_ASSERT_PTR_NOT_NULL_FATAL(cases);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	snprintf(spool, sizeof spool, "%s", kd_path(kd, "spool"));
	sub = kd_subscribe(kd, "");
	json_array_foreach(json_object_get(cases, "cases"), i, c)
	{
		const char *id = json_string_value(json_object_get(c, "id"));
		s_send(kd, s_letter(id, c));
		if (!json_object_get(c, "reject"))
			printed++;
	}
	CU_ASSERT_EQUAL(s_wait_jobs(spool, printed, WAIT), printed);
	json_array_foreach(json_object_get(cases, "cases"), i, c)
	{
		const char *id = json_string_value(json_object_get(c, "id"));
		const char *reject = json_string_value(json_object_get(c, "reject"));
		json_t *job, *status;
		char *error;

		if (reject) {
			error = s_dead_error(kd, id);
			CU_ASSERT_PTR_NOT_NULL(error && strstr(error, reject));
			if (!error || !strstr(error, reject))
				fprintf(stderr, "%s: want '%s' in the dead letter: %s\n", id,
					reject, error ? error : "(none)");
			/* The reason names the cause, never the person. */
			s_assert_no_personal_data("a dead letter's error", error);
			free(error);
			/* The physical letter is the end of the fallback chain: a letter it
			 * refuses ends in the dead letters, and its sender gets one final
			 * "failed" status with the reason. */
			status = s_wait_status(kd, id);
			CU_ASSERT_PTR_NOT_NULL(status);
			if (status) {
				json_t *data = json_object_get(status, "data");
				const char *why =
					json_string_value(json_object_get(data, "reason"));
				char *text = json_dumps(status, JSON_COMPACT);
				CU_ASSERT_STRING_EQUAL(
					json_string_value(json_object_get(data, "status")),
					"failed");
				CU_ASSERT_STRING_EQUAL(
					json_string_value(json_object_get(data, "channel")),
					"physical");
				CU_ASSERT_TRUE(json_is_true(json_object_get(data, "final")));
				CU_ASSERT_STRING_EQUAL(
					json_string_value(json_object_get(data, "letter_source"))
						?: "",
					"sagssystem");
				CU_ASSERT_PTR_NOT_NULL(why && strstr(why, reject));
				CU_ASSERT_PTR_NULL(json_object_get(data, "job"));
				s_assert_no_personal_data("a failed status", text);
				free(text);
			}
			json_decref(status);
			job = s_find_job(spool, id, NULL, 0);
			CU_ASSERT_PTR_NULL(job);
			json_decref(job);
			continue;
		}
		job = s_find_job(spool, id, NULL, 0);
		CU_ASSERT_PTR_NOT_NULL(job);
		if (!job) {
			fprintf(stderr, "%s: no job in the spool\n", id);
			continue;
		}
		CU_ASSERT_TRUE(json_equal(
			json_object_get(json_object_get(job, "recipient"), "address_block"),
			json_object_get(c, "block")));
		if (!json_equal(json_object_get(json_object_get(job, "recipient"), "address_block"),
				json_object_get(c, "block"))) {
			char *got = json_dumps(
				json_object_get(json_object_get(job, "recipient"), "address_block"),
				0);
			fprintf(stderr, "%s: address block %s\n", id, got);
			free(got);
		}
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(job, "postal_category")),
				       json_string_value(json_object_get(c, "category")));
		status = s_wait_status(kd, id);
		CU_ASSERT_PTR_NOT_NULL(status);
		if (status) {
			json_t *data = json_object_get(status, "data");
			char *text = json_dumps(status, JSON_COMPACT);
			CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(data, "reason")),
					       json_string_value(json_object_get(c, "reason")));
			/* An exemption's ground may be health data: not in the status. */
			CU_ASSERT_PTR_NULL(strstr(text, "handicap"));
			free(text);
		}
		json_decref(status);
		json_decref(job);
	}
	/* The refused letters are on the stream as rejected, with the reason. */
	{
		char *p = kd_expect(sub, "dead post.letter.send", NULL, WAIT);
		CU_ASSERT_PTR_NOT_NULL(p);
		free(p);
	}
	s_drain_stream(sub);
	kd_unsubscribe(&sub);
	CU_ASSERT_EQUAL(s_count_jobs(spool, NULL), printed);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	{
		char *log = kd_log(kd);
		s_assert_no_personal_data("kanald's log", log);
		free(log);
	}
	kd_destroy(&kd);
	json_decref(cases);
}

/* A letter delivered a second time (here: sent again after the duplicate window, as a
 * replay or a crash would redeliver it) overwrites its job; it never makes a second one. */
static void test_redelivery_overwrites_the_same_job(void)
{
	json_t *cases = s_cases(), *c, *job;
	kd_t *kd = s_start_spool("letter-again", true, NULL, "journal: { dedupe_window: 1ms }\n");
	char spool[4096];

	CU_ASSERT_PTR_NOT_NULL_FATAL(cases);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	snprintf(spool, sizeof spool, "%s", kd_path(kd, "spool"));
	c = json_deep_copy(s_case(cases, "block-maja"));
	s_send(kd, s_letter("brev-again", c));
	CU_ASSERT_EQUAL(s_wait_jobs(spool, 1, WAIT), 1);
	json_decref(s_wait_status(kd, "brev-again"));
	/* The second delivery asks for Prioritaire: the one job now says so. */
	json_object_set_new(c, "postal_category", json_string("Prioritaire"));
	usleep(20 * 1000);
	s_send(kd, s_letter("brev-again", c));
	for (int waited = 0; waited < WAIT; waited += 50) {
		job = s_find_job(spool, "brev-again", NULL, 0);
		if (job && !strcmp(json_string_value(json_object_get(job, "postal_category")),
				   "Prioritaire"))
			break;
		json_decref(job);
		job = NULL;
		usleep(50 * 1000);
	}
	CU_ASSERT_PTR_NOT_NULL(job);
	json_decref(job);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	CU_ASSERT_EQUAL(s_count_jobs(spool, NULL), 1);
	kd_destroy(&kd);
	json_decref(c);
	json_decref(cases);
}

/* A spool that cannot be written at run time (here: the folder vanished) is a RETRY with
 * the reason; once the folder is back the letter is written. */
static void test_spool_write_failure_is_retried(void)
{
	json_t *cases = s_cases();
	kd_t *kd = s_start_spool("letter-enospc", true, "retry_after: 200ms", NULL);
	char spool[4096], *p;
	void *sub;

	CU_ASSERT_PTR_NOT_NULL_FATAL(cases);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	snprintf(spool, sizeof spool, "%s", kd_path(kd, "spool"));
	sub = kd_subscribe(kd, "retrying post.letter.send");
	CU_ASSERT_EQUAL(rmdir(spool), 0);
	s_send(kd, s_letter("brev-later", s_case(cases, "block-bent")));
	p = kd_expect(sub, "retrying post.letter.send", "cannot write print job", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	CU_ASSERT(p && strstr(p, spool) && strstr(p, "No such file or directory"));
	free(p);
	kd_unsubscribe(&sub);
	CU_ASSERT_EQUAL(mkdir(spool, 0700), 0);
	CU_ASSERT_EQUAL(s_wait_jobs(spool, 1, WAIT), 1);
	json_decref(s_wait_status(kd, "brev-later"));
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	kd_destroy(&kd);
	json_decref(cases);
}

/* A spool folder that does not exist: kanald refuses to start and says which folder. */
static void test_missing_spool_refuses_start(void)
{
	char *conf, *log, want[4096];
	kd_t *kd;

	conf = kd_config("  - name: letter\n    plugin: letter\n"
			 "    options: { mode: spool, spool_dir: no-such-spool }\n",
			 NULL);
	kd = kd_prepare("letter-nospool2", conf, s_routes);
	free(conf);
	CU_ASSERT_EQUAL(kd_launch(kd), -1);
	CU_ASSERT_EQUAL(kd_wait_exit(kd, WAIT), 1);
	log = kd_log(kd);
	snprintf(want, sizeof want, "%s/no-such-spool' does not exist", kd->dir);
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, want));
	if (log && !strstr(log, want))
		fprintf(stderr, "expected \"%s\" in:\n%s\n", want, log);
	free(log);
	kd_destroy(&kd);
	/* Service mode without a URL is refused too. */
	conf = kd_config("  - name: letter\n    plugin: letter\n    options: { mode: service }\n",
			 NULL);
	kd = kd_prepare("letter-nourl", conf, s_routes);
	free(conf);
	CU_ASSERT_EQUAL(kd_launch(kd), -1);
	CU_ASSERT_EQUAL(kd_wait_exit(kd, WAIT), 1);
	log = kd_log(kd);
	CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "print_url"));
	free(log);
	kd_destroy(&kd);
}

/* kanald killed (SIGKILL) while it writes 200 letters, then started again: every letter
 * has exactly one job file, each whole, and no temporary file is left. */
static void test_crash_leaves_one_whole_job_per_letter(void)
{
	enum { N = 200, BATCH = 20 };
	json_t *cases = s_cases(), *c;
	kd_t *kd = s_start_spool("letter-crash", true, NULL, NULL);
	char spool[4096];
	size_t hidden = 99, at_kill;
	bool seen[N] = { false };
	DIR *d;
	struct dirent *e;

	CU_ASSERT_PTR_NOT_NULL_FATAL(cases);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	snprintf(spool, sizeof spool, "%s", kd_path(kd, "spool"));
	c = s_case(cases, "block-jonas");
	for (int b = 0; b < N / BATCH; b++) {
		json_t *batch = json_array();
		char *text, *reply;
		for (int i = 0; i < BATCH; i++) {
			char id[32];
			snprintf(id, sizeof id, "crash-%03d", b * BATCH + i);
			json_array_append_new(batch, s_letter_json(id, c));
		}
		text = json_dumps(batch, JSON_COMPACT);
		json_decref(batch);
		reply = kd_send(kd, text, WAIT);
		CU_ASSERT_PTR_NOT_NULL(reply && !strstr(reply, "invalid") &&
				       !strstr(reply, "busy"));
		free(reply);
		free(text);
	}
	/* Kill it while jobs are being written (all 200 are in the journal by now). */
	s_wait_jobs(spool, 30, WAIT);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGKILL, WAIT), 128 + SIGKILL);
	at_kill = s_count_jobs(spool, NULL);
	fprintf(stderr, "crash test: %zu of %d jobs written when kanald was killed\n", at_kill, N);
	CU_ASSERT_EQUAL_FATAL(kd_restart(kd), 0);
	CU_ASSERT_EQUAL(s_wait_jobs(spool, N, 4 * WAIT), N);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	CU_ASSERT_EQUAL(s_count_jobs(spool, &hidden), N);
	CU_ASSERT_EQUAL(hidden, 0);
	/* Each file is a whole job, named after its job id; each letter once. */
	d = opendir(spool);
	while (d && (e = readdir(d))) {
		char path[4400], want[256];
		json_t *job;
		const char *letter;
		int n = -1;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", spool, e->d_name);
		job = json_load_file(path, 0, NULL);
		CU_ASSERT_PTR_NOT_NULL(job);
		letter = json_string_value(json_object_get(job, "letter"));
		snprintf(want, sizeof want, "%s.json",
			 json_string_value(json_object_get(job, "job")));
		CU_ASSERT_STRING_EQUAL(e->d_name, want);
		CU_ASSERT(letter && sscanf(letter, "crash-%d", &n) == 1 && n >= 0 && n < N);
		if (n >= 0 && n < N) {
			CU_ASSERT_FALSE(seen[n]);
			seen[n] = true;
		}
		CU_ASSERT_PTR_NOT_NULL(json_string_value(
			json_object_get(json_object_get(job, "document"), "content")));
		json_decref(job);
	}
	if (d)
		closedir(d);
	for (int i = 0; i < N; i++)
		CU_ASSERT_TRUE(seen[i]);
	kd_destroy(&kd);
	json_decref(cases);
}

/* ---- service mode --------------------------------------------------------------------- */

/* The number of jobs the print simulator holds for `letter` (-1 when it cannot be asked). */
static int s_sim_jobs(upstream_t *up, const char *letter)
{
	char *body = NULL;
	long status = upstream_http(up, "GET", "/print/v1/jobs", NULL, NULL, &body);
	json_t *root = status == 200 && body ? json_loads(body, 0, NULL) : NULL, *job;
	int n = root ? 0 : -1;
	size_t i;

	json_array_foreach(json_object_get(root, "jobs"), i,
			   job) if (!strcmp(json_string_value(json_object_get(job, "letter")) ?: "",
					    letter)) n++;
	/* What the simulator lists is masked: no address, no clear name. */
	s_assert_no_personal_data("the print simulator's job list", body);
	json_decref(root);
	free(body);
	return n;
}

static int s_wait_sim_jobs(upstream_t *up, const char *letter, int n)
{
	int have = -1;

	for (int waited = 0; waited < WAIT; waited += 50) {
		if ((have = s_sim_jobs(up, letter)) >= n)
			break;
		usleep(50 * 1000);
	}
	return have;
}

static void test_service_mode_against_print_simulator(void)
{
	const char *args[] = { "--set", "token=s3cret-print", "--set", "categories=Economique",
			       NULL };
	upstream_t *up = upstream_start("print", args);
	json_t *cases = s_cases(), *c, *status;
	char *instances, *conf, *token, *p;
	kd_t *kd;
	void *sub;

	CU_ASSERT_PTR_NOT_NULL_FATAL(up);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cases);
	if (asprintf(&instances,
		     "  - name: letter\n    plugin: letter\n"
		     "    options: { mode: service, print_url: '%s/print/v1/jobs', "
		     "token_file: print.token, timeout: 2s }\n%s",
		     up->url, s_log_instance) < 0)
		abort();
	conf = kd_config(instances, "journal: { dedupe_window: 1ms }\n");
	kd = kd_prepare("letter-service", conf, s_routes);
	free(conf);
	free(instances);
	token = test_write_file(kd->dir, "print.token", "s3cret-print\n");
	chmod(token, 0600);
	free(token);
	CU_ASSERT_EQUAL_FATAL(kd_launch(kd), 0);
	sub = kd_subscribe(kd, "");

	/* A letter reaches the provider once; the status says physical and why. */
	c = s_case(cases, "block-maja");
	s_send(kd, s_letter("svc-1", c));
	CU_ASSERT_EQUAL(s_wait_sim_jobs(up, "svc-1", 1), 1);
	status = s_wait_status(kd, "svc-1");
	CU_ASSERT_PTR_NOT_NULL(status);
	CU_ASSERT(status && !strcmp(json_string_value(json_object_get(
					    json_object_get(status, "data"), "channel")),
				    "physical"));
	json_decref(status);

	/* Delivered again (a replay): the same Idempotency-Key, so the provider keeps one. */
	usleep(20 * 1000);
	s_send(kd, s_letter("svc-1", c));
	p = kd_expect(sub, "delivered post.letter.send", "\"svc-1\"", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	p = kd_expect(sub, "delivered post.letter.send", "\"svc-1\"", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT_EQUAL(s_sim_jobs(up, "svc-1"), 1);

	/* The provider is down for two requests (503): retried, then printed once. */
	CU_ASSERT_EQUAL(upstream_fault(up, "error", 2), 0);
	s_send(kd, s_letter("svc-2", s_case(cases, "block-bent")));
	p = kd_expect(sub, "retrying post.letter.send", "503", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT_EQUAL(s_wait_sim_jobs(up, "svc-2", 1), 1);
	json_decref(s_wait_status(kd, "svc-2"));
	CU_ASSERT_EQUAL(s_sim_jobs(up, "svc-2"), 1);

	/* The provider refuses (400: a postal category it does not offer): a dead letter
	 * with the provider's reason, no retry. */
	s_send(kd, s_letter("svc-3", s_case(cases, "block-jonas")));
	p = s_dead_error(kd, "svc-3");
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "POST print job: HTTP 400") &&
			       strstr(p, "not offered"));
	if (!p || !strstr(p, "POST print job: HTTP 400") || !strstr(p, "not offered"))
		fprintf(stderr, "dead letter: %s\n", p ? p : "(none)");
	free(p);
	CU_ASSERT_EQUAL(s_sim_jobs(up, "svc-3"), 0);

	/* The provider quotes the address line it refuses (too long for the window): the
	 * dead letter keeps the reason but not the address. */
	c = json_deep_copy(s_case(cases, "block-maja"));
	json_object_set_new(json_object_get(json_object_get(c, "recipient"), "address"), "street",
			    json_string("Kanalgade ved den gamle havn og det nye bibliotek"));
	s_send(kd, s_letter("svc-4", c));
	json_decref(c);
	p = s_dead_error(kd, "svc-4");
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "HTTP 400") &&
			       strstr(p, "too long for the envelope"));
	s_assert_no_personal_data("the dead letter's error", p);
	CU_ASSERT_PTR_NULL(p ? strstr(p, "bibliotek") : NULL);
	free(p);

	s_drain_stream(sub);
	kd_unsubscribe(&sub);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	p = kd_log(kd);
	s_assert_no_personal_data("kanald's log", p);
	CU_ASSERT_PTR_NULL(p ? strstr(p, "s3cret") : NULL);
	free(p);
	p = test_read_file(up->log_path, NULL);
	s_assert_no_personal_data("the print simulator's log", p);
	free(p);
	kd_destroy(&kd);
	upstream_stop(&up);
	json_decref(cases);
}

/* A protected address travels to the print job (the route asked for it) but nowhere
 * else: not in the log, not on the stream. */
static void test_protected_address_only_in_the_job(void)
{
	json_t *cases = s_cases(), *c, *job;
	kd_t *kd = s_start_spool("letter-protected", true, NULL, NULL);
	char spool[4096], *p;
	void *sub;

	CU_ASSERT_PTR_NOT_NULL_FATAL(cases);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kd);
	snprintf(spool, sizeof spool, "%s", kd_path(kd, "spool"));
	sub = kd_subscribe(kd, "");
	c = json_pack("{s:s, s:{s:s, s:i, s:b, s:b, s:{s:s, s:s}, s:{s:s, s:s, s:s, s:s}}}",
		      "recipient_cpr", "0808931244", "recipient", "cpr", "0808931244", "status", 1,
		      "digital_post", 1, "protected_address", 1, "name", "first", "Anne", "last",
		      "Larsen", "address", "street", "Skjultvej", "number", "7", "postcode", "8210",
		      "city", "Aarhus V");
	s_send(kd, s_letter("brev-protected", c));
	CU_ASSERT_EQUAL(s_wait_jobs(spool, 1, WAIT), 1);
	job = s_find_job(spool, "brev-protected", NULL, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(job);
	CU_ASSERT_TRUE(json_is_true(
		json_object_get(json_object_get(job, "recipient"), "protected_address")));
	p = json_dumps(json_object_get(json_object_get(job, "recipient"), "address_block"), 0);
	CU_ASSERT_PTR_NOT_NULL(p && strstr(p, "Skjultvej 7") && strstr(p, "8210 Aarhus V"));
	free(p);
	json_decref(job);
	json_decref(s_wait_status(kd, "brev-protected"));
	s_drain_stream(sub);
	kd_unsubscribe(&sub);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	p = kd_log(kd);
	s_assert_no_personal_data("kanald's log", p);
	free(p);
	kd_destroy(&kd);
	json_decref(c);
	json_decref(cases);
}

/* A letter uploaded with its documents (a multipart upload puts them in the blob store and
 * the letter names them by `href`) is printed on paper with them: the document and the
 * attachment are read from kanald's blob store into the job, base64 as an inline document
 * would be. A reference to a blob that is not there refuses the letter, and its sender's
 * final status says which document. */
static void test_documents_from_the_blob_store_are_printed(void)
{
	static const char doc[] = "%PDF-1.4 the decision, printed from the blob store";
	static const char bilag[] = "%PDF-1.4 bilag 1: the plan";
	static const char gone[] =
		"kanalblob:sha256:b68565cf5699273f6a21847b3fe44726374cbd6c3bfdc829527f1db2a0504341";
	json_t *cases = s_cases(), *ev = NULL, *data, *job = NULL, *att, *status = NULL;
	kd_t *kd = s_start_spool("letter-blobs", true, NULL, NULL);
	kanal__blob_store_t *store = NULL;
	kanal_blob_ref_t ref_doc, ref_bilag;
	char spool[4096], attr[300];
	const char *reason;

	REQUIRE(cases != NULL && kd != NULL);
	snprintf(spool, sizeof spool, "%s", kd_path(kd, "spool"));
	REQUIRE((store = kanal__blob_store_open_dir(kd_path(kd, "state/blobs"), 0, 0, NULL)));
	REQUIRE(kanal__blob_put(store, doc, strlen(doc), "application/pdf", &ref_doc, NULL) == 0);
	REQUIRE(kanal__blob_put(store, bilag, strlen(bilag), "application/pdf", &ref_bilag, NULL) ==
		0);

	ev = s_letter_json("brev-blob", s_case(cases, "block-maja"));
	data = json_object_get(ev, "data");
	json_object_set_new(data, "document",
			    json_pack("{s:s, s:s, s:s}", "filename", "afgoerelse.pdf", "href",
				      ref_doc.uri, "mediaType", "application/pdf"));
	json_object_set_new(data, "attachments",
			    json_pack("[{s:s, s:s, s:s}]", "filename", "bilag.pdf", "href",
				      ref_bilag.uri, "mediaType", "application/pdf"));
	snprintf(attr, sizeof attr, "%s %s", ref_doc.uri, ref_bilag.uri);
	json_object_set_new(ev, "kanalblob", json_string(attr));
	s_send(kd, json_dumps(ev, JSON_COMPACT));
	REQUIRE(s_wait_jobs(spool, 1, WAIT) == 1);
	job = s_find_job(spool, "brev-blob", NULL, 0);
	REQUIRE(job != NULL);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(job, "document"), "content"))
			?: "",
		"JVBERi0xLjQgdGhlIGRlY2lzaW9uLCBwcmludGVkIGZyb20gdGhlIGJsb2Igc3RvcmU=");
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(job, "document"), "mimetype"))
			?: "",
		"application/pdf");
	att = json_array_get(json_object_get(job, "attachments"), 0);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(job, "attachments")), 1);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(att, "filename")) ?: "",
			       "bilag.pdf");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(att, "content")) ?: "",
			       "JVBERi0xLjQgYmlsYWcgMTogdGhlIHBsYW4=");
	status = s_wait_status(kd, "brev-blob");
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(status, "data"), "status")) ?: "",
		"sent");
	json_decref(status);

	/* A document whose blob is not in the store: refused, and the status says which. */
	json_object_set_new(ev, "id", json_string("brev-blob-gone"));
	json_object_del(ev, "kanalblob");
	json_object_del(data, "attachments");
	json_object_set_new(json_object_get(data, "document"), "href", json_string(gone));
	s_send(kd, json_dumps(ev, JSON_COMPACT));
	status = s_wait_status(kd, "brev-blob-gone");
	REQUIRE(status != NULL);
	reason = json_string_value(json_object_get(json_object_get(status, "data"), "reason"));
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_object_get(status, "data"), "status")) ?: "",
		"failed");
	CU_ASSERT_PTR_NOT_NULL(reason && strstr(reason, "data.document.href"));
	CU_ASSERT_EQUAL(s_count_jobs(spool, NULL), 1);
done:
	json_decref(status);
	json_decref(job);
	json_decref(ev);
	json_decref(cases);
	kanal__blob_store_destroy(&store);
	kd_destroy(&kd);
}

/* Per inquiry area, a route declares its primary and secondary channel. Where the primary
 * refuses a letter, the secondary (paper) carries it and its status says so: the area, the
 * channel, `channel_rank: secondary` and why; where paper is the area's primary, the status
 * says `primary`. A measure counts the statuses by area and rank. */
static void test_status_names_the_area_and_channel_rank(void)
{
	static const char *routes =
		"routes:\n"
		"  - name: place-letters\n"
		"    area: daycare-places\n"
		"    match: { type: post.letter.send, where: 'data.label == \"Plads\"' }\n"
		"    channels: { primary: refuser, secondary: letter }\n"
		"  - name: notice-letters\n"
		"    area: notices\n"
		"    match: { type: post.letter.send, where: 'data.label == \"Besked\"' }\n"
		"    channels: { primary: letter }\n"
		"  - name: letter-status\n"
		"    match: { type: post.letter.status }\n"
		"    to: letter-log\n"
		"measures:\n"
		"  - name: letters-by-area\n"
		"    match: { type: post.letter.status, where: 'data.status == \"sent\"' }\n"
		"    labels:\n"
		"      area: { from: data.area, default: unknown }\n"
		"      rank: { from: data.channel_rank, default: unknown }\n";
	json_t *cases = s_cases(), *ev, *st = NULL, *d;
	char *instances = NULL, *conf = NULL, *key, *p;
	void *sub = NULL;
	kd_t *kd = NULL;

	REQUIRE(cases != NULL);
	REQUIRE(asprintf(&instances,
			 "  - name: letter\n    plugin: letter\n"
			 "    options: { mode: spool, spool_dir: spool, pseudonym_key: "
			 "pseudonym.key }\n"
			 "  - name: refuser\n    plugin: sink\n"
			 "    options: { path: '@DIR@/refused.jsonl', fail_type: post.letter.send "
			 "}\n"
			 "%s",
			 s_log_instance) >= 0);
	conf = kd_config(instances, NULL);
	kd = kd_prepare("letter-channels", conf, routes);
	REQUIRE(kd != NULL);
	key = test_write_file(kd->dir, "pseudonym.key", "kanal-test-pseudonym-key-0123456789\n");
	chmod(key, 0600);
	free(key);
	mkdir(kd_path(kd, "spool"), 0700);
	REQUIRE(kd_launch(kd) == 0);
	sub = kd_subscribe(kd, "");

	ev = s_letter_json("brev-place", s_case(cases, "block-maja"));
	json_object_set_new(json_object_get(ev, "data"), "label", json_string("Plads"));
	s_send(kd, json_dumps(ev, JSON_COMPACT));
	json_object_set_new(ev, "id", json_string("brev-notice"));
	json_object_set_new(json_object_get(ev, "data"), "label", json_string("Besked"));
	s_send(kd, json_dumps(ev, JSON_COMPACT));
	json_decref(ev);

	st = s_wait_status(kd, "brev-place");
	REQUIRE(st != NULL);
	d = json_object_get(st, "data");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "area")) ?: "",
			       "daycare-places");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "channel_rank")) ?: "",
			       "secondary");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "channel")) ?: "", "physical");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "status")) ?: "", "sent");
	CU_ASSERT_PTR_NOT_NULL(json_string_value(json_object_get(d, "reason")));
	json_decref(st);
	st = s_wait_status(kd, "brev-notice");
	REQUIRE(st != NULL);
	d = json_object_get(st, "data");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "area")) ?: "", "notices");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "channel_rank")) ?: "",
			       "primary");
	/* The place letter went to its primary first, which refused it: the fallback. */
	p = kd_expect(sub, "fallback", "brev-place", WAIT);
	CU_ASSERT_PTR_NOT_NULL(p);
	free(p);
	CU_ASSERT_EQUAL(kd_measure_total(kd, "area", "daycare-places", "rank", "secondary"), 1);
	CU_ASSERT_EQUAL(kd_measure_total(kd, "area", "notices", "rank", "primary"), 1);
	CU_ASSERT_EQUAL(kd_measure_total(kd, "area", "daycare-places", "rank", "primary"), -1);
done:
	if (sub)
		kd_unsubscribe(&sub);
	json_decref(st);
	json_decref(cases);
	free(conf);
	free(instances);
	kd_destroy(&kd);
}

TEST_MAIN("letter", TEST(test_spool_job_file_and_status),
	  TEST(test_address_blocks_reasons_and_refusals),
	  TEST(test_redelivery_overwrites_the_same_job), TEST(test_spool_write_failure_is_retried),
	  TEST(test_missing_spool_refuses_start), TEST(test_crash_leaves_one_whole_job_per_letter),
	  TEST(test_service_mode_against_print_simulator),
	  TEST(test_protected_address_only_in_the_job),
	  TEST(test_documents_from_the_blob_store_are_printed),
	  TEST(test_status_names_the_area_and_channel_rank))
