/*
 * examples/simulators/print.c — kanal-sim-print, a simulated print and post provider: the
 * service the letter connector (plugins/letter, mode: service) hands physical letters to.
 * It accepts print jobs (the connector's job document, docs/plugins/letter.md) at
 * POST /print/v1/jobs, checks what a provider would check before it prints — an address
 * block it can put in an envelope window, a postal category it offers, a document — and
 * keeps each job once per Idempotency-Key, so a client that retries after a lost answer
 * gets the first answer again instead of a second letter.
 *
 * API:
 *   POST /print/v1/jobs   body: the job (application/json); header Idempotency-Key
 *                         (required); Authorization: Bearer <token> when --set token=…
 *                         201 {"id": "P-000001", "job": …, "status": "queued"}
 *                         200 the same, with "duplicate": true, for a key seen before
 *                         400 {"error": "<reason>"} for a job it cannot print
 *   GET  /print/v1/jobs   {"count": N, "jobs": [{id, job, letter, postal_category,
 *                         recipient (masked: "M*** H*****"), received, key}]}
 *                         — no address and no document, so tests may print it
 *
 * Settings (--set NAME=VALUE): token (require this bearer token), categories (the postal
 * categories offered, comma-separated; default "Prioritaire,Economique"), max_lines (of an
 * address block, default 6), max_line (characters per line, default 50).
 * Faults (slow, error → 503, garbage, drop, hang) come from sim.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sim.h"

typedef struct print_job {
	char *key;       /* the Idempotency-Key */
	char *answer;    /* the JSON body of the first answer */
	json_t *summary; /* what GET lists */
} print_job_t;

typedef struct printer {
	print_job_t *jobs;
	size_t n, cap;
	unsigned long next_id;
} printer_t;

/* The name line masked for a listing: each word's first character, then one '*' per
 * further character ("Maja Jensen" → "M*** J*****"). UTF-8 aware. Returns a new string. */
static char *s_mask_name(const char *name)
{
	size_t len = strlen(name);
	char *out = malloc(len + 1), *o = out;
	bool word_start = true;

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)name; *p;) {
		size_t n = 1;
		while ((p[n] & 0xc0) == 0x80)
			n++;
		if (*p == ' ') {
			*o++ = ' ';
			word_start = true;
		} else if (word_start) {
			memcpy(o, p, n);
			o += n;
			word_start = false;
		} else {
			*o++ = '*';
		}
		p += n;
	}
	*o = '\0';
	return out;
}

/* Number of characters (not bytes) in a UTF-8 string. */
static size_t s_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* True when the list `list` ("a,b,c") holds `item`. */
static bool s_in_list(const char *list, const char *item)
{
	size_t n = strlen(item);

	for (const char *p = list; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && !strncmp(p, item, n))
			return true;
		p += len + (end ? 1 : 0);
	}
	return false;
}

/* Checks the address block: 3 to max_lines non-empty lines of at most max_line
 * characters, the last "NNNN Town" (a Danish postcode and the town). Returns NULL when
 * fine, else the reason (static text, or `buf`). Like real providers, it quotes a line
 * that is too long — which is why the connector scrubs address lines out of the errors
 * it passes on. */
static const char *s_check_block(sim_t *sim, const json_t *block, char *buf, size_t size)
{
	size_t max_lines = (size_t)sim_setting_int(sim, "max_lines", 6);
	size_t max_line = (size_t)sim_setting_int(sim, "max_line", 50);
	size_t n = json_array_size(block), i;
	const json_t *line;
	const char *last;

	if (!json_is_array(block))
		return "recipient.address_block is missing: an array of address lines";
	if (n < 3)
		return "address block has too few lines: need the name, the street and the "
		       "postcode with the town";
	if (n > max_lines)
		return "address block has more lines than the envelope window holds";
	json_array_foreach(block, i, line)
	{
		const char *text = json_string_value(line);
		if (!text || !*text)
			return "address block has an empty or non-text line";
		if (s_chars(text) > max_line) {
			snprintf(buf, size,
				 "address block line %zu is too long for the envelope "
				 "window (%zu characters at most): '%s'",
				 i + 1, max_line, text);
			return buf;
		}
	}
	last = json_string_value(json_array_get(block, n - 1));
	for (int k = 0; k < 4; k++)
		if (!isdigit((unsigned char)last[k]))
			return "address block: the last line must be a four-digit postcode and the "
			       "town";
	if (last[4] != ' ' || !last[5])
		return "address block: the last line must be a four-digit postcode and the town";
	return NULL;
}

/* Answers 400 with {"error": reason}. */
static void s_bad(sim_response_t *res, const char *reason)
{
	json_t *j = json_pack("{s:s}", "error", reason);
	char *body = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	if (body)
		sim_reply_take(res, 400, "application/json", body, strlen(body));
	else
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
}

/* POST /print/v1/jobs. */
static void s_submit(sim_t *sim, printer_t *p, const sim_request_t *req, sim_response_t *res)
{
	const char *token = sim_setting(sim, "token", NULL);
	const char *categories = sim_setting(sim, "categories", "Prioritaire,Economique");
	const char *key = sim_header(req, "Idempotency-Key");
	const char *why = NULL, *category, *job_id, *letter, *content, *filename;
	json_t *job, *block, *doc, *answer, *summary;
	char received[40], id[32], reason[512], *masked, *text;
	print_job_t *slot;

	if (token && (!req->bearer || strcmp(req->bearer, token))) {
		sim_reply(res, 401, "application/json", "{\"error\": \"bearer token required\"}",
			  -1);
		return;
	}
	if (!req->content_type || strncmp(req->content_type, "application/json", 16)) {
		sim_reply(res, 415, "application/json",
			  "{\"error\": \"send the job as application/json\"}", -1);
		return;
	}
	if (!key || !*key) {
		s_bad(res, "the Idempotency-Key header is required");
		return;
	}
	for (size_t i = 0; i < p->n; i++) {
		if (!strcmp(p->jobs[i].key, key)) {
			sim_log(sim,
				"job with key %s seen before: answered again, not printed twice",
				key);
			sim_reply(res, 200, "application/json", p->jobs[i].answer, -1);
			return;
		}
	}
	job = json_loadb(req->body, req->body_len, 0, NULL);
	if (!json_is_object(job)) {
		json_decref(job);
		s_bad(res, "the body is not a JSON object");
		return;
	}
	block = json_object_get(json_object_get(job, "recipient"), "address_block");
	doc = json_object_get(job, "document");
	category = json_string_value(json_object_get(job, "postal_category"));
	job_id = json_string_value(json_object_get(job, "job"));
	letter = json_string_value(json_object_get(job, "letter"));
	content = json_string_value(json_object_get(doc, "content"));
	filename = json_string_value(json_object_get(doc, "filename"));
	if (!job_id || !letter)
		why = "job and letter are required";
	else if (!category)
		why = "postal_category is required";
	else if (!s_in_list(categories, category))
		why = "the postal category is not offered by this provider";
	else if ((why = s_check_block(sim, block, reason, sizeof reason)))
		;
	else if (!filename || !*filename || !content || !*content)
		why = "document.filename and document.content (base64) are required";
	if (why) {
		sim_log(sim, "job %s refused (400)", job_id ? job_id : "(no id)");
		json_decref(job);
		s_bad(res, why);
		return;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		print_job_t *grown = realloc(p->jobs, cap * sizeof *grown);
		if (!grown) {
			json_decref(job);
			sim_reply(res, 500, "text/plain", "out of memory\n", -1);
			return;
		}
		p->jobs = grown;
		p->cap = cap;
	}
	snprintf(id, sizeof id, "P-%06lu", ++p->next_id);
	sim_rfc3339_now(received);
	masked = s_mask_name(json_string_value(json_array_get(block, 0)));
	summary = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "job", job_id,
			    "letter", letter, "postal_category", category, "recipient",
			    masked ? masked : "", "received", received, "key", key);
	free(masked);
	answer = json_pack("{s:s, s:s, s:s, s:b}", "id", id, "job", job_id, "status", "queued",
			   "duplicate", 1);
	text = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
	json_decref(answer);
	slot = &p->jobs[p->n];
	slot->key = strdup(key);
	slot->answer = text;
	slot->summary = summary;
	if (!slot->key || !slot->answer || !slot->summary) {
		free(slot->key);
		free(slot->answer);
		json_decref(slot->summary);
		json_decref(job);
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
		return;
	}
	p->n++;
	sim_log(sim, "job %s for letter %s queued as %s (%s)", job_id, letter, id, category);
	/* The first answer says "duplicate": false; a repeat gets the stored one (true). */
	answer = json_pack("{s:s, s:s, s:s, s:b}", "id", id, "job", job_id, "status", "queued",
			   "duplicate", 0);
	text = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
	json_decref(answer);
	json_decref(job);
	if (text)
		sim_reply_take(res, 201, "application/json", text, strlen(text));
	else
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
}

/* GET /print/v1/jobs. */
static void s_list(printer_t *p, sim_response_t *res)
{
	json_t *jobs = json_array(), *out;
	char *text;

	for (size_t i = 0; i < p->n; i++)
		json_array_append(jobs, p->jobs[i].summary);
	out = json_pack("{s:I, s:o}", "count", (json_int_t)p->n, "jobs", jobs);
	text = out ? json_dumps(out, JSON_COMPACT) : NULL;
	json_decref(out);
	if (text)
		sim_reply_take(res, 200, "application/json", text, strlen(text));
	else
		sim_reply(res, 500, "text/plain", "out of memory\n", -1);
}

static void s_handle(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	printer_t *p = sim_state(sim);

	if (strcmp(req->path, "/print/v1/jobs") != 0) {
		sim_reply(res, 404, "application/json", "{\"error\": \"no such resource\"}", -1);
		return;
	}
	if (!strcmp(req->method, "POST"))
		s_submit(sim, p, req, res);
	else if (!strcmp(req->method, "GET"))
		s_list(p, res);
	else
		sim_reply(res, 405, "application/json", "{\"error\": \"GET or POST\"}", -1);
}

static int s_setup(sim_t *sim)
{
	static printer_t printer;

	sim_set_state(sim, &printer);
	return 0;
}

int main(int argc, char **argv)
{
	return sim_main(argc, argv,
			&(sim_def_t){ .name = "print",
				      .handle = s_handle,
				      .setup = s_setup,
				      .garbage_type = "application/json",
				      .garbage_body = "{\"id\": \"P-0000" });
}
