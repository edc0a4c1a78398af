/*
 * plugins/staff/staff.c — the staff connector: a source that polls an HR system's absence
 * feed (GET <base_url>/hr/v1/absences?since=<cursor>&max=<n>, basic auth, an hrAbsence XML
 * document — docs/plugins/staff.md) and emits one event per change of an absence:
 * staff.absence.registered for sickness, a child's sick days, care days, parental and
 * other leave and time off in lieu; staff.holiday.registered, with the holiday days used
 * and whether they are main holiday, for FERIE and FERIEFRI; staff.absence.cancelled for a
 * cancellation of either.
 *
 * Nothing is lost and nothing is emitted twice. A page of the feed is emitted, then
 * kanal_emit_flush waits until the bus has it in its journal, and only then are the new
 * cursor and the versions seen written to the state file (one atomic file). The record of
 * the highest version emitted per absence id (seen.c) makes the connector idempotent
 * whatever the cursor does: a replayed or older version is skipped even when the feed
 * starts again from the beginning (a 410 Gone for a cursor the HR system no longer knows),
 * while a new version of an absence is emitted as an update of the same absence. Event ids
 * are stable (hr-absence-<id>-v<version>) so the bus's duplicate suppression catches what
 * a crash between emit and state write would send again.
 *
 * An upstream that is down, slow, hanging or answering garbage gets a logged error naming
 * the call and the cause (CPR numbers masked) and an exponential back-off; the cursor does
 * not move until a page was read and emitted whole. One invalid absence (a date that does
 * not exist, a bad CPR number) is reported by id and field and skipped; the page goes on.
 */
#include "staff.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <libxml/parser.h>

#include <kanal/kanal.h>

#include "../common/kc_check.h"
#include "../common/kc_http.h"
#include "../common/kc_url.h"
#include "../common/kc_files.h"
#include "../common/kc_text.h"

#define STAFF_STATE_FILE "staff.state"
#define STAFF_MIN_FLUSH_MS 2000

static const char *const s_unknown_codes[] = { "emit", "skip", NULL };

/* The codes kanal knows (DOMAIN.md, "HR: staff absence and holiday"). */
static const char *const s_absence_codes[] = { "SYG",    "BARN1", "BARN2", "OMSORG",
					       "BARSEL", "ORLOV", "AFSP",  NULL };
static const char *const s_holiday_codes[] = { "FERIE", "FERIEFRI", NULL };

typedef struct staff staff_t;

struct staff {
	/* Bound options (s_options), borrowed from the config. */
	const char *base_url_option, *key_path, *unknown_codes;
	kc_http_conf_t http_conf; /* timeout, user, password, password_file, allow_plain_http */
	int64_t poll_ms, max_backoff_ms, page_size, retain_days, max_body;

	char *base_url; /* without a trailing '/' */
	kc_http_t *http;
	bool skip_unknown;
	kanal_pseudonym_key_t *key;
	staff_seen_t *seen;
	char cursor[STAFF_CURSOR_MAX + 1]; /* may be ahead of the state file while dirty */
	bool dirty;                        /* cursor or versions not yet in the state file */
	int64_t timer;
	int64_t backoff_ms; /* 0 while the feed answers */
	int failures;       /* polls failed in a row */
};

static const kanal_option_t s_options[] = {
	{ .name = "base_url",
	  .type = KANAL_OPT_STRING,
	  .required = true,
	  KANAL_OPT_AT(staff_t, base_url_option),
	  .help = "The HR system's address, e.g. https://hr.kommune.dk; the feed is "
		  "<base_url>/hr/v1/absences." },
	KC_HTTP_OPT_BASIC_AUTH(staff_t, http_conf),
	{ .name = "poll_interval",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "10s",
	  .min = "1ms",
	  KANAL_OPT_AT(staff_t, poll_ms),
	  .help = "Time between two polls when the feed has nothing more waiting." },
	{ .name = "page_size",
	  .type = KANAL_OPT_INT,
	  .default_value = "100",
	  .min = "1",
	  .max = "1000",
	  KANAL_OPT_AT(staff_t, page_size),
	  .help = "Changes asked for per poll (the feed's max parameter), 1 to 1000." },
	KC_HTTP_OPT_TIMEOUT(staff_t, http_conf, "5s", "Longest wait for one answer of the feed."),
	{ .name = "max_backoff",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "5m",
	  .min = "1ms",
	  KANAL_OPT_AT(staff_t, max_backoff_ms),
	  .help = "Longest wait between polls while the feed fails (the wait doubles from "
		  "poll_interval)." },
	{ .name = "max_body",
	  .type = KANAL_OPT_SIZE,
	  .default_value = "8MiB",
	  .min = "1",
	  KANAL_OPT_AT(staff_t, max_body),
	  .help = "Largest feed answer read; a larger one is an error." },
	{ .name = "pseudonym_key",
	  .type = KANAL_OPT_PATH,
	  KANAL_OPT_AT(staff_t, key_path),
	  .help = "Key file for pseudonyms: subject becomes person:<HMAC of the employee's CPR "
		  "number>." },
	{ .name = "unknown_codes",
	  .type = KANAL_OPT_STRING,
	  .default_value = "emit",
	  .allowed = s_unknown_codes,
	  KANAL_OPT_AT(staff_t, unknown_codes),
	  .help = "An absence code kanal does not know: emit (as staff.absence.registered, code "
		  "kept, "
		  "with a warning) or skip (warning only)." },
	{ .name = "retain_days",
	  .type = KANAL_OPT_INT,
	  .default_value = "400",
	  .min = "1",
	  KANAL_OPT_AT(staff_t, retain_days),
	  .help = "Days after an absence ends that its version stays in the state file." },
	KC_URL_OPT_ALLOW_PLAIN_HTTP(staff_t, http_conf.allow_plain_http),
	{ .name = NULL },
};

static bool s_in(const char *const *list, const char *code)
{
	for (size_t i = 0; list[i]; i++)
		if (!strcmp(list[i], code))
			return true;
	return false;
}

/* ---- options ------------------------------------------------------------------------------ */

/* Checks what the table cannot: the URL (kc_url_check's rule; no credentials, query or
 * blanks in it). Sets the error and returns KANAL_ECONFIG when wrong. */
static int s_check_options(kanal_ctx_t *ctx, staff_t *s)
{
	const char *url = s->base_url_option;
	const char *authority;
	size_t n;
	int rc;

	if ((rc = kc_url_check_option(ctx, "base_url", url, s->http_conf.allow_plain_http)) != 0)
		return rc;
	authority = strstr(url, "://");
	authority = authority ? authority + 3 : url;
	if (memchr(authority, '@', strcspn(authority, "/")) || strpbrk(url, "?# \t")) {
		kanal_set_error(ctx, "option 'base_url': give the address only, without "
				     "credentials (use user and password_file), query or blanks");
		return KANAL_ECONFIG;
	}
	if (!(s->base_url = strdup(url)))
		return KANAL_ENOMEM;
	n = strlen(s->base_url);
	while (n > 0 && s->base_url[n - 1] == '/')
		s->base_url[--n] = '\0';
	/* unknown_codes is emit or skip: the table checked it. */
	s->skip_unknown = !strcmp(s->unknown_codes, "skip");
	return 0;
}

static void s_destroy(void *state)
{
	staff_t *s = state;

	if (!s)
		return;
	kc_http_destroy(&s->http);
	kc_http_conf_clear(&s->http_conf);
	kanal_pseudonym_key_destroy(&s->key);
	staff_seen_destroy(&s->seen);
	free(s->base_url);
	free(s);
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	staff_t *s = calloc(1, sizeof *s);
	kc_http_opts_t opts;
	kanal_error_t key_err;
	int rc;

	if (!s) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	/* The feed is XML: libxml2's global state is set up here, before the instance's
	 * thread parses (safe to call again; the broker does not do it for plugins). */
	xmlInitParser();
	kanal_config_bind(cfg, s);
	if ((rc = s_check_options(ctx, s)) != 0 ||
	    (rc = kc_http_conf_open(ctx, &s->http_conf, &opts)) != 0)
		goto fail;
	kanal_error_clear(&key_err);
	if (s->key_path && (rc = kanal_pseudonym_key_load(s->key_path, &s->key, &key_err)) != 0) {
		kanal_set_error(ctx, "option 'pseudonym_key': %s", key_err.text);
		goto fail;
	}
	opts.max_body = (size_t)s->max_body;
	if (!(s->http = kc_http_new(&opts)) || !(s->seen = staff_seen_new())) {
		kanal_set_error(ctx, "out of memory");
		rc = KANAL_ENOMEM;
		goto fail;
	}
	kc_http_conf_clear(&s->http_conf);
	*state = s;
	return 0;
fail:
	s_destroy(s);
	return rc;
}

/* ---- state ---------------------------------------------------------------------------------- */

/* Waits until the bus has journaled what was emitted, then writes cursor and versions to
 * the state file. Returns 0, or a negative code after logging why (the state stays dirty
 * and the next poll tries again before reading on). */
static int s_commit(kanal_ctx_t *ctx, staff_t *s, int64_t flush_ms)
{
	char *text;
	size_t len;
	kanal_error_t err;
	int rc;

	if (!s->dirty)
		return 0;
	rc = kanal_emit_flush(ctx, flush_ms);
	if (rc != 0) {
		kanal_log(ctx, rc == KANAL_ECLOSED ? KANAL_LOG_INFO : KANAL_LOG_WARN,
			  "the bus has not confirmed the emitted absences as durable (%s); the "
			  "cursor is kept and written later",
			  kanal_strerror(rc));
		return rc;
	}
	text = staff_state_format(s->seen, s->cursor, staff_date_today() - (int32_t)s->retain_days,
				  &len);
	if (!text) {
		kanal_log(ctx, KANAL_LOG_ERROR, "cannot write the state file: out of memory");
		return KANAL_ENOMEM;
	}
	kanal_error_clear(&err);
	rc = kanal_state_put(ctx, STAFF_STATE_FILE, text, &err);
	free(text);
	if (rc != 0) {
		kanal_log(ctx, KANAL_LOG_ERROR, "cannot write the state %s: %s", STAFF_STATE_FILE,
			  err.text[0] ? err.text : kanal_strerror(rc));
		return rc;
	}
	s->dirty = false;
	return 0;
}

/* Reads the state file, when there is one. A damaged file stops the instance: reading the
 * feed without it could emit every absence again. */
static int s_load_state(kanal_ctx_t *ctx, staff_t *s)
{
	char *text = NULL, why[256];
	kanal_error_t err;
	int rc;

	kanal_error_clear(&err);
	rc = kanal_state_get(ctx, STAFF_STATE_FILE, &text, &err);
	if (rc == KANAL_ENOTFOUND)
		return 0;
	if (rc != 0) {
		kanal_set_error(ctx, "cannot read the state %s: %s", STAFF_STATE_FILE,
				err.text[0] ? err.text : kanal_strerror(rc));
		return rc;
	}
	rc = staff_state_parse(text, s->seen, s->cursor, why, sizeof why);
	free(text);
	if (rc != 0) {
		kanal_set_error(ctx,
				"state file %s/%s: %s (move it away to read the feed from the "
				"beginning; versions already emitted would then be emitted again)",
				kanal_state_dir(ctx), STAFF_STATE_FILE, why);
		return KANAL_ECONFIG;
	}
	return 0;
}

/* ---- events ---------------------------------------------------------------------------------- */

/* Builds the event of one valid item. Returns 0 with *out set, or a negative code with why
 * filled. */
static int s_build(kanal_ctx_t *ctx, const staff_t *s, const staff_item_t *it, bool holiday,
		   kanal_msg_t **out, char *why, size_t why_size)
{
	const char *type = it->cancel ? "staff.absence.cancelled"
			   : holiday  ? "staff.holiday.registered"
				      : "staff.absence.registered";
	char id[STAFF_ID_MAX + 64], date[11], pseudonym[KANAL_PSEUDONYM_SIZE];
	kanal_error_t err;
	kanal_msg_t *msg;
	json_t *data;
	char *text;
	int rc;

	*out = NULL;
	snprintf(id, sizeof id, "hr-absence-%s-v%lld%s", it->id, it->version,
		 it->cancel ? "-cancel" : "");
	if (!(msg = kanal_msg_new(type, kanal_instance_name(ctx), id)))
		goto oom;
	kanal_error_clear(&err);
	/* The change's own time; an HR system writing it badly costs the attribute only. */
	if (it->changed[0] && kanal_msg_set_attr(msg, "time", it->changed, &err) != 0)
		kanal_log(ctx, KANAL_LOG_DEBUG,
			  "absence %s: attribute 'changed' is not RFC 3339; "
			  "the event has no time",
			  it->id);
	if (s->key && it->cpr[0]) {
		if (kanal_cpr_pseudonym(s->key, it->cpr, pseudonym, sizeof pseudonym) != 0 ||
		    kanal_msg_set_attr(msg, "subject", pseudonym, NULL) != 0) {
			snprintf(why, why_size, "cannot make the employee's pseudonym");
			kanal_msg_destroy(&msg);
			return KANAL_EINVAL;
		}
	}
	if (!(data = json_object()))
		goto oom;
	json_object_set_new(data, "absence", json_string(it->id));
	json_object_set_new(data, "version", json_integer(it->version));
	if (it->employment[0])
		json_object_set_new(data, "employment", json_string(it->employment));
	if (it->cpr[0])
		json_object_set_new(data, "employee_cpr", json_string(it->cpr));
	if (it->department[0])
		json_object_set_new(data, "department", json_string(it->department));
	if (it->code[0])
		json_object_set_new(data, "code", json_string(it->code));
	if (it->from != STAFF_NO_DATE) {
		staff_date_iso(it->from, date);
		json_object_set_new(data, "from", json_string(date));
	}
	if (it->to != STAFF_NO_DATE) {
		staff_date_iso(it->to, date);
		json_object_set_new(data, "to", json_string(date));
	}
	if (it->hours > 0)
		json_object_set_new(data, "hours", json_real(round(it->hours * 100.0) / 100.0));
	if (holiday && !it->cancel) {
		double days = staff_holiday_days(it->from, it->to, it->hours);
		json_object_set_new(data, "days",
				    days == floor(days) ? json_integer((json_int_t)days)
							: json_real(days));
		json_object_set_new(data, "main_holiday",
				    json_boolean(!strcmp(it->code, "FERIE") &&
						 staff_main_holiday(it->from, it->to, it->hours)));
	}
	/* Fifteen significant digits: 7.4 hours stays 7.4, not 7.4000000000000004. */
	text = json_dumps(data, JSON_COMPACT | JSON_REAL_PRECISION(15));
	json_decref(data);
	if (!text)
		goto oom;
	rc = kanal_msg_set_data_json(msg, text, strlen(text));
	free(text);
	if (rc != 0) {
		snprintf(why, why_size, "cannot set the data: %s", kanal_strerror(rc));
		kanal_msg_destroy(&msg);
		return rc;
	}
	*out = msg;
	return 0;
oom:
	kanal_msg_destroy(&msg);
	snprintf(why, why_size, "out of memory");
	return KANAL_ENOMEM;
}

/* Emits the event of one item unless it is invalid or already emitted. Returns 0 when the
 * item is done with (emitted or skipped for good), KANAL_EBUSY / KANAL_ENOMEM when it
 * should be tried again later, KANAL_ECLOSED when the bus is shutting down. */
static int s_item(kanal_ctx_t *ctx, staff_t *s, const staff_item_t *item)
{
	staff_item_t filled, *it = &filled;
	bool holiday = false;
	kanal_msg_t *msg = NULL;
	char why[256];
	int rc;

	filled = *item;
	if (it->cancel && (!it->employment[0] || !it->department[0])) {
		/* A bare cancellation: the receivers find the calendar and the institution by
		 * employment and department, so take them from the version emitted before. */
		const char *employment, *department;
		staff_seen_context(s->seen, it->id, &employment, &department);
		if (!it->employment[0] && employment)
			snprintf(it->employment, sizeof it->employment, "%s", employment);
		if (!it->department[0] && department)
			snprintf(it->department, sizeof it->department, "%s", department);
	}
	if (it->error[0]) {
		kanal_log(ctx, KANAL_LOG_ERROR, "%s; skipped", it->error);
		kanal_metric_add(ctx, "invalid", 1);
		return 0;
	}
	if (!staff_seen_is_new(s->seen, it->id, it->version, it->cancel)) {
		kanal_log(ctx, KANAL_LOG_DEBUG,
			  "absence %s version %lld%s was emitted before; "
			  "skipped",
			  it->id, it->version, it->cancel ? " (cancel)" : "");
		kanal_metric_add(ctx, "replays", 1);
		return 0;
	}
	if (!it->cancel) {
		holiday = s_in(s_holiday_codes, it->code);
		if (!holiday && !s_in(s_absence_codes, it->code)) {
			kanal_log(
				ctx, KANAL_LOG_WARN,
				"absence %s version %lld: code '%s' is not one "
				"kanal knows; %s",
				it->id, it->version, it->code,
				s->skip_unknown
					? "skipped (unknown_codes: skip)"
					: "emitted as staff.absence.registered with the code kept");
			kanal_metric_add(ctx, "unknown_codes", 1);
			if (s->skip_unknown)
				return 0;
		}
	}
	rc = s_build(ctx, s, it, holiday, &msg, why, sizeof why);
	if (rc == KANAL_ENOMEM)
		return rc;
	if (rc != 0) {
		kanal_log(ctx, KANAL_LOG_ERROR, "absence %s version %lld: %s; skipped", it->id,
			  it->version, why);
		kanal_metric_add(ctx, "invalid", 1);
		return 0;
	}
	rc = kanal_emit(ctx, &msg);
	if (rc == KANAL_EBUSY || rc == KANAL_ENOMEM || rc == KANAL_ECLOSED)
		return rc;
	if (rc != 0) {
		/* Refused for good (too big, invalid): retrying cannot help. */
		kanal_log(ctx, KANAL_LOG_ERROR,
			  "absence %s version %lld: the bus refused the event "
			  "(%s); skipped",
			  it->id, it->version, kanal_strerror(rc));
		kanal_metric_add(ctx, "invalid", 1);
		return 0;
	}
	if (staff_seen_put(s->seen, it->id, it->version, it->cancel, it->to, it->employment,
			   it->department) != 0)
		return KANAL_ENOMEM;
	s->dirty = true;
	kanal_metric_add(ctx, "emitted", 1);
	return 0;
}

/* ---- polling ---------------------------------------------------------------------------------- */

static const char *s_lookup_cursor(const char *name, void *arg)
{
	return !strcmp(name, "c") ? arg : NULL;
}

/* The next wait after a failure: doubling from poll_interval up to max_backoff, and at
 * least what a Retry-After asked for (within max_backoff). */
static int64_t s_backoff(staff_t *s, int64_t retry_after_ms)
{
	s->failures++;
	s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : s->poll_ms;
	if (retry_after_ms > s->backoff_ms)
		s->backoff_ms = retry_after_ms;
	if (s->backoff_ms > s->max_backoff_ms)
		s->backoff_ms = s->max_backoff_ms;
	return s->backoff_ms;
}

/* Logs a failed poll ("poll failed: GET <url>: <cause>") and returns the wait before the
 * next. */
static int64_t s_poll_failed(kanal_ctx_t *ctx, staff_t *s, const char *what, const char *why,
			     int64_t retry_after_ms)
{
	int64_t wait = s_backoff(s, retry_after_ms);

	kanal_metric_add(ctx, "upstream_errors", 1);
	kanal_log(ctx, KANAL_LOG_ERROR,
		  "poll failed: %s%s%s; the cursor stays; next attempt in %" PRId64 " ms",
		  what ? what : "", what ? ": " : "", why, wait);
	return wait;
}

/* One poll: commit what is pending, read a page, emit it, commit. Returns the wait before
 * the next poll. */
static int64_t s_poll_once(kanal_ctx_t *ctx, staff_t *s)
{
	const char *headers[] = { "Accept: application/xml", NULL };
	char *since = NULL, *url = NULL, what[STAFF_CURSOR_MAX * 3 + 512], why[512];
	int64_t flush_ms = s->http_conf.timeout_ms > STAFF_MIN_FLUSH_MS ? s->http_conf.timeout_ms
									: STAFF_MIN_FLUSH_MS;
	kc_response_t res = { 0 };
	kanal_error_t terr = { 0 };
	staff_page_t page = { 0 };
	int64_t wait = s->poll_ms;
	size_t done = 0;
	int rc = 0;

	/* A commit that failed waited up to flush_ms already: poll_interval is wait enough,
	 * and it is no failure of the feed. */
	if (s->dirty && s_commit(ctx, s, flush_ms) != 0)
		return s->poll_ms;
	if (s->cursor[0] &&
	    kc_template_expand("{c}", s_lookup_cursor, s->cursor, true, &since, &terr) != 0)
		return s_backoff(s, -1);
	if (asprintf(&url, "%s/hr/v1/absences?max=%" PRId64 "%s%s", s->base_url, s->page_size,
		     since ? "&since=" : "", since ? since : "") < 0) {
		free(since);
		return s_backoff(s, -1);
	}
	free(since);
	snprintf(what, sizeof what, "GET %s", url);
	kanal_metric_add(ctx, "polls", 1);
	kc_http_request(s->http, "GET", url, headers, NULL, 0, &res);
	free(url);
	if (res.status == 410 && s->cursor[0]) {
		/* The HR system no longer knows the cursor (its change log was rebuilt). Read it
		 * again from the start: the versions seen keep what was emitted from coming
		 * twice. (A 410 to a request without a cursor is an ordinary failure.) */
		kanal_log(ctx, KANAL_LOG_WARN,
			  "%s: 410 Gone: the feed no longer knows cursor '%s'; "
			  "reading it again from the beginning (versions already emitted are "
			  "skipped)",
			  what, s->cursor);
		kanal_metric_add(ctx, "cursor_resets", 1);
		s->cursor[0] = '\0';
		s->dirty = true;
		kc_response_clear(&res);
		return s_commit(ctx, s, flush_ms) == 0 ? 0 : s->poll_ms;
	}
	if (res.status != 200) {
		kc_http_describe(&res, what, why, sizeof why);
		wait = s_poll_failed(ctx, s, NULL, why, res.retry_after_ms);
		kc_response_clear(&res);
		return wait;
	}
	rc = staff_feed_parse(res.body, res.len, &page, why, sizeof why);
	kc_response_clear(&res);
	if (rc != 0)
		return s_poll_failed(ctx, s, what, why, -1);
	if (s->failures)
		kanal_log(ctx, KANAL_LOG_INFO, "the feed answers again after %d failed poll%s",
			  s->failures, s->failures == 1 ? "" : "s");
	s->failures = 0;
	s->backoff_ms = 0;
	for (done = 0; done < page.n; done++)
		if ((rc = s_item(ctx, s, &page.items[done])) != 0)
			break;
	if (rc == KANAL_ECLOSED) {
		staff_page_clear(&page);
		return s->poll_ms;
	}
	if (rc != 0) {
		/* The bus is full: what was emitted stays emitted (the versions say so); the
		 * rest of the page comes again with the same cursor. */
		kanal_log(ctx, KANAL_LOG_DEBUG,
			  "bus busy (%s) after %zu of %zu absences; trying "
			  "again later",
			  kanal_strerror(rc), done, page.n);
		kanal_metric_add(ctx, "busy", 1);
		s_commit(ctx, s, flush_ms);
		staff_page_clear(&page);
		s->backoff_ms = 0;
		return s->poll_ms < 200 ? s->poll_ms : 200;
	}
	if (strcmp(s->cursor, page.next)) {
		snprintf(s->cursor, sizeof s->cursor, "%s", page.next);
		s->dirty = true;
	}
	kanal_metric_set(ctx, "absences_known", (double)staff_seen_count(s->seen));
	if (s_commit(ctx, s, flush_ms) != 0)
		wait = s->poll_ms;
	else if (page.more && page.n > 0) /* "more" with nothing in it must not spin */
		wait = 0;
	staff_page_clear(&page);
	return wait;
}

static void s_poll(kanal_ctx_t *ctx, void *arg)
{
	staff_t *s = arg;
	int64_t wait = s_poll_once(ctx, s);
	int64_t timer = kanal_timer_add(ctx, wait, 0, s_poll, s);

	s->timer = timer > 0 ? timer : 0;
	if (timer < 0)
		kanal_log(ctx, KANAL_LOG_ERROR, "cannot schedule the next poll: %s; polling stops",
			  kanal_strerror((int)timer));
}

/* init validates, reads the secret files and the pseudonym key and allocates — nothing is
 * created, nothing connects — so check is init and destroy (kc_check.h). */
KC_CHECK_BY_INIT(s_init, s_destroy)

static int s_start(kanal_ctx_t *ctx, void *state)
{
	staff_t *s = state;
	int64_t timer;
	int rc;

	/* Started again (a singleton whose node took its lease back, docs/cluster.md): the
	 * stored state, not what this node remembers from before, is where to go on from. */
	if (staff_seen_count(s->seen) > 0) {
		staff_seen_t *fresh = staff_seen_new();
		if (!fresh) {
			kanal_set_error(ctx, "out of memory");
			return KANAL_ENOMEM;
		}
		staff_seen_destroy(&s->seen);
		s->seen = fresh;
		s->cursor[0] = '\0';
	}
	rc = s_load_state(ctx, s);
	if (rc != 0)
		return rc;
	kanal_metric_add(ctx, "polls", 0);
	kanal_metric_add(ctx, "emitted", 0);
	kanal_metric_add(ctx, "upstream_errors", 0);
	kanal_metric_add(ctx, "invalid", 0);
	kanal_metric_add(ctx, "replays", 0);
	kanal_log(ctx, KANAL_LOG_INFO,
		  "polling %s/hr/v1/absences every %" PRId64 " ms from %s%s%s "
		  "(%zu absences already emitted)",
		  s->base_url, s->poll_ms, s->cursor[0] ? "cursor '" : "the beginning", s->cursor,
		  s->cursor[0] ? "'" : "", staff_seen_count(s->seen));
	timer = kanal_timer_add(ctx, 0, 0, s_poll, s);
	if (timer < 0) {
		kanal_set_error(ctx, "cannot add the poll timer: %s", kanal_strerror((int)timer));
		return (int)timer;
	}
	s->timer = timer;
	return 0;
}

static void s_stop(kanal_ctx_t *ctx, void *state, int64_t deadline_ms)
{
	staff_t *s = state;
	int64_t left = deadline_ms - kanal_now_ms();

	if (s->timer > 0)
		kanal_timer_cancel(ctx, s->timer);
	s->timer = 0;
	/* Keep what is already durable; what is not is read again after the restart. */
	if (s->dirty && left > 0)
		s_commit(ctx, s, left);
}

/* The connector is a source; say so to whoever routed an event here. */
static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	(void)state;
	(void)msg;
	kanal_set_error(ctx,
			"instance '%s' is the staff connector, a source: it accepts no "
			"events%s%s",
			kanal_instance_name(ctx), kanal_delivery_route(ctx) ? "; check route " : "",
			kanal_delivery_route(ctx) ? kanal_delivery_route(ctx) : "");
	return KANAL_OUTCOME_REJECT;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "staff",
	.version = KANAL_VERSION,
	.description = "Polls an HR system's XML absence feed and emits staff absence, holiday "
		       "and cancellation events, each change once.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.stop = s_stop,
	.destroy = s_destroy,
	.check = s_check,
};
