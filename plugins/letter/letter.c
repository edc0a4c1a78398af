/*
 * plugins/letter/letter.c — the physical letter: the destination a post.letter.send
 * reaches when Digital Post cannot carry it (the route `letter-to-citizen` falls back
 * here). It turns the letter and the recipient's CPR data into a print job (job.c) and
 * hands the job to a print provider in one of two ways:
 *
 *   spool    one JSON file per letter in a folder a print pipeline picks up; each file is
 *            written to a temporary name starting with '.', fsync'd and renamed into place,
 *            so the pipeline only ever sees whole jobs;
 *   service  an HTTP POST of the same document to the provider's job endpoint, with an
 *            Idempotency-Key so that a retried POST never prints twice.
 *
 * The job's name comes from the event's source and id, so a redelivery (after a crash, a
 * retry) writes the same job again instead of a second letter. Once the job is handed
 * over, the plugin emits post.letter.status (channel "physical" and why). The job holds
 * the recipient's name and address — possibly a protected one, which is why the route
 * asks for it — so neither ever reaches a log line or an error text.
 */
#include "letter.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <kanal/kanal.h>

#include "../common/kc_status.h"
#include "../common/kc_http.h"
#include "../common/kc_files.h"
#include "../common/kc_url.h"

typedef enum letter_mode { LETTER_SPOOL, LETTER_SERVICE } letter_mode_t;

typedef struct letter {
	/* Bound options (s_options), borrowed from the config. */
	const char *mode_option;     /* spool or service */
	const char *category_option; /* postal_category as given */
	const char *key_path;        /* pseudonym_key */
	const char *spool_dir;
	const char *print_url;
	kc_http_conf_t http_conf; /* token(_file), ca_file, timeout, allow_plain_http */
	int64_t retry_after_ms;
	bool status;

	letter_mode_t mode;
	kc_http_opts_t http_opts; /* service mode: for the client made in start */
	letter_defaults_t defaults;
	kanal_pseudonym_key_t *key;
	kc_http_t *http; /* service mode, made in start */
} letter_t;

static const char *const s_modes[] = { "spool", "service", NULL };

static const kanal_option_t s_options[] = {
	{ .name = "mode",
	  .type = KANAL_OPT_STRING,
	  .default_value = "spool",
	  .allowed = s_modes,
	  KANAL_OPT_AT(letter_t, mode_option),
	  .help = "spool: write each print job as a file into spool_dir; service: POST it to "
		  "print_url." },
	{ .name = "spool_dir",
	  .type = KANAL_OPT_PATH,
	  KANAL_OPT_AT(letter_t, spool_dir),
	  .help = "Folder the print pipeline picks jobs up from (spool mode); it must exist and be "
		  "writable." },
	{ .name = "print_url",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(letter_t, print_url),
	  .help = "The print service's job endpoint, e.g. https://print.example/print/v1/jobs "
		  "(service mode)." },
	KC_HTTP_OPT_TOKEN(letter_t, http_conf),
	KC_HTTP_OPT_CA_FILE(letter_t, http_conf),
	KC_HTTP_OPT_TIMEOUT(letter_t, http_conf, "5s",
			    "How long one POST to the print service may take (service mode)."),
	{ .name = "postal_category",
	  .type = KANAL_OPT_STRING,
	  .default_value = "Economique",
	  KANAL_OPT_AT(letter_t, category_option),
	  .help = "Prioritaire or Economique; a letter's data.postal_category overrides it." },
	{ .name = "sender",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(letter_t, defaults.sender),
	  .help = "The sender's name for the job's return address when the letter carries no "
		  "data.sender (e.g. \"Aarhus Kommune\")." },
	{ .name = "status",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "true",
	  KANAL_OPT_AT(letter_t, status),
	  .help = "Emit post.letter.status once a job is handed over." },
	{ .name = "pseudonym_key",
	  .type = KANAL_OPT_PATH,
	  KANAL_OPT_AT(letter_t, key_path),
	  .help = "Key file (0600) for the status event's subject: person:<pseudonym> of the "
		  "recipient." },
	{ .name = "retry_after",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "30s",
	  .min = "0",
	  KANAL_OPT_AT(letter_t, retry_after_ms),
	  .help = "The retry hint when the spool cannot be written (disk full, folder gone)." },
	KC_URL_OPT_ALLOW_PLAIN_HTTP(letter_t, http_conf.allow_plain_http),
	{ .name = NULL },
};

static void s_destroy(void *state)
{
	letter_t *l = state;

	if (!l)
		return;
	kc_http_destroy(&l->http);
	kc_http_conf_clear(&l->http_conf);
	kanal_pseudonym_key_destroy(&l->key);
	free(l);
}

/* Checks that the spool folder exists, is a folder, and that this process can create a
 * file in it: with probe_it, a probe file, removed at once (a permission check alone would
 * be wrong for root, for ACLs and read-only mounts); without it — the check callback, which
 * must not write — access(2)'s answer. Returns 0 or KANAL_ECONFIG after setting the error,
 * which names the folder. */
static int s_check_spool(kanal_ctx_t *ctx, const char *dir, bool probe_it)
{
	char probe[4096];
	struct stat st;
	int fd;

	if (stat(dir, &st) != 0) {
		kanal_set_error(ctx, "option 'spool_dir': the spool folder '%s' %s", dir,
				errno == ENOENT ? "does not exist: create it for the print pipeline"
						: strerror(errno));
		return KANAL_ECONFIG;
	}
	if (!S_ISDIR(st.st_mode)) {
		kanal_set_error(ctx, "option 'spool_dir': '%s' is not a folder", dir);
		return KANAL_ECONFIG;
	}
	if (!probe_it && access(dir, W_OK | X_OK) != 0) {
		kanal_set_error(ctx,
				"option 'spool_dir': cannot write in the spool folder '%s': %s",
				dir, strerror(errno));
		return KANAL_ECONFIG;
	}
	if (!probe_it)
		return 0;
	if ((size_t)snprintf(probe, sizeof probe, "%s/.kanal-probe-XXXXXX", dir) >= sizeof probe) {
		kanal_set_error(ctx, "option 'spool_dir': the path '%s' is too long", dir);
		return KANAL_ECONFIG;
	}
	fd = mkstemp(probe);
	if (fd < 0) {
		kanal_set_error(ctx,
				"option 'spool_dir': cannot write in the spool folder '%s': %s",
				dir, strerror(errno));
		return KANAL_ECONFIG;
	}
	close(fd);
	unlink(probe);
	return 0;
}

/* The rules init and check share (docs/sdk.md, "Checking a config"), for what the table
 * cannot say: a postal category, what goes with the mode — a usable spool folder (probed
 * with a file when `probe`: init only), or print_url (kc_url_check's rule) and the token
 * options — and the pseudonym key. What it reads stays in l for init. Returns 0 or a
 * KANAL_E* code after kanal_set_error. */
static int s_validate(kanal_ctx_t *ctx, letter_t *l, bool probe)
{
	int rc = KANAL_ECONFIG;

	l->mode = strcmp(l->mode_option, "service") ? LETTER_SPOOL : LETTER_SERVICE;
	if (letter_postal_category(l->category_option, &l->defaults.postal_category) != 0) {
		kanal_set_error(ctx,
				"option 'postal_category': '%s' is not a postal category; give "
				"Prioritaire or Economique",
				l->category_option ? l->category_option : "");
		return rc;
	}
	if (l->mode == LETTER_SPOOL) {
		if (!l->spool_dir || !*l->spool_dir) {
			kanal_set_error(ctx,
					"option 'spool_dir' is required in spool mode: the folder "
					"the print pipeline picks jobs up from");
			return rc;
		}
		if ((rc = s_check_spool(ctx, l->spool_dir, probe)) != 0)
			return rc;
	} else {
		if (!l->print_url) {
			kanal_set_error(ctx, "option 'print_url' is required in service mode: the "
					     "https:// URL of the print service's job endpoint");
			return rc;
		}
		if ((rc = kc_url_check_option(ctx, "print_url", l->print_url,
					      l->http_conf.allow_plain_http)) != 0 ||
		    (rc = kc_http_conf_open(ctx, &l->http_conf, &l->http_opts)) != 0)
			return rc;
		l->http_opts.max_body = 64 * 1024;
	}
	if (l->key_path) {
		kanal_error_t err;
		kanal_error_clear(&err);
		if (kanal_pseudonym_key_load(l->key_path, &l->key, &err) != 0) {
			kanal_set_error(ctx, "option 'pseudonym_key': %s", err.text);
			return KANAL_ECONFIG;
		}
	}
	return 0;
}

static int s_check(kanal_ctx_t *ctx, const kanal_config_t *cfg)
{
	letter_t *l = calloc(1, sizeof *l);
	int rc;

	if (!l)
		return KANAL_ENOMEM;
	kanal_config_bind(cfg, l);
	rc = s_validate(ctx, l, false);
	s_destroy(l);
	return rc;
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	letter_t *l = calloc(1, sizeof *l);
	int rc;

	if (!l) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	kanal_config_bind(cfg, l);
	if ((rc = s_validate(ctx, l, true)) != 0) {
		s_destroy(l);
		return rc;
	}
	*state = l;
	return 0;
}

/* True when name is a temporary file kc_file_write_atomic left behind for a job,
 * ".<job>.json.tmp", or a probe file of s_check_spool. */
static bool s_is_stale_temp(const char *name)
{
	size_t n = strlen(name);

	return name[0] == '.' && ((n > 10 && !strcmp(name + n - 9, ".json.tmp")) ||
				  !strncmp(name, ".kanal-probe-", 13));
}

/* Removes the temporary files of jobs whose writing a crash interrupted. They were never
 * renamed into place, so no print pipeline has seen them; the letters they belonged to
 * are still pending in the journal and will be written again. */
static void s_clean_spool(kanal_ctx_t *ctx, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int removed = 0;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char path[4096];
		if (!s_is_stale_temp(e->d_name) ||
		    (size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path)
			continue;
		if (unlink(path) == 0)
			removed++;
	}
	closedir(d);
	if (removed > 0)
		kanal_log(ctx, KANAL_LOG_INFO,
			  "removed %d half-written job file%s from the spool "
			  "'%s' (left by a crash; their letters are written again)",
			  removed, removed == 1 ? "" : "s", dir);
}

static int s_start(kanal_ctx_t *ctx, void *state)
{
	letter_t *l = state;

	kanal_metric_add(ctx, "received", 0);
	kanal_metric_add(ctx, "jobs", 0);
	kanal_metric_add(ctx, "rejected", 0);
	kanal_metric_add(ctx, "retried", 0);
	if (l->mode == LETTER_SPOOL) {
		s_clean_spool(ctx, l->spool_dir);
		kanal_log(ctx, KANAL_LOG_INFO, "spooling print jobs to '%s' (%s by default)",
			  l->spool_dir, l->defaults.postal_category);
		return 0;
	}
	l->http = kc_http_new(&l->http_opts);
	if (!l->http) {
		kanal_set_error(ctx, "cannot make the HTTP client for the print service");
		return KANAL_ENOMEM;
	}
	kanal_log(ctx, KANAL_LOG_INFO, "posting print jobs to %s (%s by default)", l->print_url,
		  l->defaults.postal_category);
	return 0;
}

/* Writes the job into the spool. Returns OK, or RETRY with the error set: a full disk, a
 * vanished or read-only folder usually get better, and the letter must not be lost. */
static kanal_outcome_t s_spool(kanal_ctx_t *ctx, letter_t *l, const letter_job_t *job)
{
	char name[LETTER_JOB_ID_MAX + 8];
	int rc;

	snprintf(name, sizeof name, "%s.json", job->id);
	rc = kc_file_write_atomic(l->spool_dir, name, job->json, job->len, 0600);
	if (rc == 0)
		return KANAL_OUTCOME_OK;
	kanal_set_error(ctx, "cannot write print job %s into the spool '%s': %s", name,
			l->spool_dir, rc == KANAL_EIO ? strerror(errno) : kanal_strerror(rc));
	kanal_set_retry_after(ctx, l->retry_after_ms);
	return KANAL_OUTCOME_RETRY;
}

/* Replaces every occurrence of needle in text with "***" (text shrinks or keeps its
 * length). */
static void s_blank(char *text, const char *needle)
{
	size_t len = strlen(needle);
	char *p;

	if (len < 3)
		return;
	while ((p = strstr(text, needle))) {
		memcpy(p, "***", 3);
		memmove(p + 3, p + len, strlen(p + len) + 1);
	}
}

/* Takes the recipient's name and address out of an error text: a print service may quote
 * the line it did not like, and errors go to the journal, the event stream and the
 * dead-letter views, where a (perhaps protected) address must not be. Whole address
 * lines go first, then each word of them that could identify (three characters or more;
 * numbers only from four digits, so "HTTP 400" stays readable). */
static void s_scrub(char *text, const letter_job_t *job)
{
	json_t *doc = json_loads(job->json, 0, NULL), *line;
	json_t *lines = json_object_get(json_object_get(doc, "recipient"), "address_block");
	size_t i;

	json_array_foreach(lines, i, line) s_blank(text, json_string_value(line));
	json_array_foreach(lines, i, line)
	{
		char *copy = strdup(json_string_value(line)), *save = NULL, *word;
		for (word = copy ? strtok_r(copy, " ,.", &save) : NULL; word;
		     word = strtok_r(NULL, " ,.", &save)) {
			size_t len = strlen(word), digits = strspn(word, "0123456789");
			if (len >= 3 && (digits < len || len >= 4))
				s_blank(text, word);
		}
		free(copy);
	}
	json_decref(doc);
}

/* POSTs the job to the print service. 2xx OK; 4xx REJECT; no answer, 408, 429, 5xx RETRY
 * (kc_http_outcome). The Idempotency-Key is the job id, stable for the letter, so a
 * service that got the job before answering lost is not asked to print it twice. */
static kanal_outcome_t s_post(kanal_ctx_t *ctx, letter_t *l, const letter_job_t *job)
{
	char key[LETTER_JOB_ID_MAX + 32];
	const char *headers[] = { "Content-Type: application/json", "Accept: application/json", key,
				  NULL };
	kc_response_t res;
	kanal_outcome_t outcome;

	snprintf(key, sizeof key, "Idempotency-Key: %s", job->id);
	kc_http_request(l->http, "POST", l->print_url, headers, job->json, job->len, &res);
	outcome = kc_http_outcome(ctx, &res, "POST print job");
	if (outcome != KANAL_OUTCOME_OK) {
		char why[512];
		kanal_metric_add(ctx, "upstream_errors", 1);
		kc_http_describe(&res, "POST print job", why, sizeof why);
		s_scrub(why, job);
		kanal_set_error(ctx, "%s", why);
		if (outcome == KANAL_OUTCOME_RETRY && res.retry_after_ms < 0)
			kanal_set_retry_after(ctx, 1000);
	}
	kc_response_clear(&res);
	return outcome;
}

/* Makes the final post.letter.status for letter msg: `sent` once it was handed over as
 * `job`, or `failed` with `reason` when this connector refused it for good (job NULL) — the
 * physical letter is the end of the fallback chain, so a letter it refuses goes to the dead
 * letters and this is the status its sender gets. The status names the sending system
 * (letter_source) and the letter's own sender (department) so that a route can return it,
 * and — on a route with `area:` — the area and whether paper was its primary or secondary
 * channel (kc_status_channel).
 * Its id is derived from the letter's, so a redelivered letter's second status is dropped
 * by the bus as a duplicate. The subject is the recipient's pseudonym when a key is
 * configured; no attribute carries a CPR number. Returns a new message, or NULL when out of
 * memory. */
static kanal_msg_t *s_status_event(kanal_ctx_t *ctx, const letter_t *l, const kanal_msg_t *msg,
				   const letter_job_t *job, const char *reason)
{
	const char *cpr = NULL;
	char *sender, pseudonym[KANAL_PSEUDONYM_SIZE];
	kanal_msg_t *out = kc_status_new(ctx, "post.letter.status", msg,
					 job ? "-physical" : "-physical-failed");
	int rc;

	if (!out)
		return NULL;
	if (kanal_msg_data_set_str(out, "letter", kanal_msg_id(msg)) != 0 ||
	    kanal_msg_data_set_str(out, "letter_source", kanal_msg_source(msg)) != 0 ||
	    kanal_msg_data_set_str(out, "channel", "physical") != 0 ||
	    kanal_msg_data_set_str(out, "status", job ? "sent" : "failed") != 0 ||
	    kanal_msg_data_set_str(out, "reason", job ? job->reason : reason) != 0 ||
	    kanal_msg_data_set_bool(out, "final", true) != 0 || kc_status_channel(msg, out) != 0 ||
	    (job && (kanal_msg_data_set_str(out, "postal_category", job->postal_category) != 0 ||
		     kanal_msg_data_set_str(out, "job", job->id) != 0))) {
		kanal_msg_destroy(&out);
		return NULL;
	}
	if ((sender = kanal_msg_data_json(msg, "sender")) != NULL) {
		rc = kanal_msg_data_set_json(out, "sender", sender, strlen(sender));
		kanal_free(sender);
		if (rc != 0)
			kanal_msg_destroy(&out);
	}
	if (out && l->key && kanal_msg_data_str(msg, "recipient_cpr", &cpr) == 0 &&
	    kanal_cpr_pseudonym(l->key, cpr, pseudonym, sizeof pseudonym) == 0 &&
	    kanal_msg_set_attr(out, "subject", pseudonym, NULL) != 0)
		kanal_msg_destroy(&out);
	return out;
}

/* Emits the status (see s_status_event), waiting a little (bounded) while the bus is busy.
 * Returns 0 when the bus took it (or already had it), else the last kanal_emit code. */
static int s_emit_status(kanal_ctx_t *ctx, const letter_t *l, const kanal_msg_t *msg,
			 const letter_job_t *job, const char *reason)
{
	kanal_msg_t *status = s_status_event(ctx, l, msg, job, reason);

	return status ? kc_status_emit(ctx, &status) : KANAL_ENOMEM;
}

/* The letter is refused for good (the error is set on ctx, `why` says it without personal
 * data): its sender gets the final `failed` status. A status the bus does not take is
 * logged; the REJECT stands, and the dead letter keeps the letter. */
static kanal_outcome_t s_refuse(kanal_ctx_t *ctx, const letter_t *l, const kanal_msg_t *msg,
				const char *why)
{
	int rc = l->status ? s_emit_status(ctx, l, msg, NULL, why) : 0;

	kanal_metric_add(ctx, "rejected", 1);
	if (rc != 0)
		kanal_log(ctx, KANAL_LOG_ERROR,
			  "letter %s: refused, and its failed status could "
			  "not be emitted: %s",
			  kanal_msg_id(msg), kanal_strerror(rc));
	return KANAL_OUTCOME_REJECT;
}

/* The letter's blob reader (letter_blob_read_fn): a document uploaded with the letter, from
 * the broker's blob store. */
static int s_read_blob(void *arg, const char *uri, void **data_out, size_t *size_out, char *why,
		       size_t why_size)
{
	kanal_error_t err;
	int rc;

	kanal_error_clear(&err);
	rc = kanal_blob_get(arg, uri, data_out, size_out, &err);
	if (rc != 0)
		snprintf(why, why_size, "%s", err.text[0] ? err.text : kanal_strerror(rc));
	return rc;
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	letter_t *l = state;
	letter_job_t job;
	kanal_outcome_t outcome;
	char why[512];
	int rc;

	kanal_metric_add(ctx, "received", 1);
	if (strcmp(kanal_msg_type(msg), "post.letter.send") != 0) {
		kanal_metric_add(ctx, "rejected", 1);
		kanal_set_error(ctx, "the letter connector prints post.letter.send, not '%s'",
				kanal_msg_type(msg));
		return KANAL_OUTCOME_REJECT;
	}
	rc = letter_job_build(msg, &l->defaults,
			      &(letter_blobs_t){ .read = s_read_blob, .arg = ctx }, time(NULL),
			      &job, why, sizeof why);
	if (rc != 0) {
		kanal_set_error(ctx, "letter %s: %s", kanal_msg_id(msg), why);
		if (rc == KANAL_ENOMEM) {
			kanal_metric_add(ctx, "retried", 1);
			kanal_set_retry_after(ctx, 1000);
			return KANAL_OUTCOME_RETRY;
		}
		return s_refuse(ctx, l, msg, why);
	}
	outcome = l->mode == LETTER_SPOOL ? s_spool(ctx, l, &job) : s_post(ctx, l, &job);
	if (outcome == KANAL_OUTCOME_REJECT) {
		/* The provider refused the job: kanal_set_error holds its (scrubbed) answer. */
		letter_job_clear(&job);
		return s_refuse(ctx, l, msg, "the print provider refused the job");
	}
	if (outcome != KANAL_OUTCOME_OK) {
		kanal_metric_add(ctx, "retried", 1);
		letter_job_clear(&job);
		return outcome;
	}
	kanal_metric_add(ctx, "jobs", 1);
	kanal_log(ctx, KANAL_LOG_DEBUG, "letter %s: print job %s %s (%s; %s)", kanal_msg_id(msg),
		  job.id, l->mode == LETTER_SPOOL ? "spooled" : "accepted by the print service",
		  job.postal_category, job.reason);
	rc = l->status ? s_emit_status(ctx, l, msg, &job, NULL) : 0;
	if (rc == KANAL_EINVALID || rc == KANAL_ETOOBIG) {
		/* The bus will never take this status: retrying would only hand the job over
		 * again. The letter is on its way; say loudly that its status is missing. */
		kanal_log(ctx, KANAL_LOG_ERROR,
			  "letter %s: print job %s handed over, but the bus "
			  "refuses its status event: %s",
			  kanal_msg_id(msg), job.id, kanal_strerror(rc));
		rc = 0;
	}
	if (rc != 0) {
		/* The job is with the provider, but every letter must end with a status. A
		 * retry hands over the same job again (same file, same Idempotency-Key), so
		 * asking for one costs no second letter. */
		kanal_metric_add(ctx, "retried", 1);
		kanal_set_error(ctx,
				"letter %s: print job %s handed over, but its status event "
				"could not be emitted: %s",
				kanal_msg_id(msg), job.id, kanal_strerror(rc));
		kanal_set_retry_after(ctx, 1000);
		letter_job_clear(&job);
		return KANAL_OUTCOME_RETRY;
	}
	letter_job_clear(&job);
	return KANAL_OUTCOME_OK;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "letter",
	.version = KANAL_VERSION,
	.description = "The physical letter, Digital Post's fallback: writes a print job with the "
		       "recipient's address block to a spool folder or posts it to a print "
		       "service, then emits post.letter.status.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.stop = NULL,
	.destroy = s_destroy,
	.check = s_check,
};
