/*
 * plugins/calendar/calendar.c — the calendar connector: a destination that keeps people's
 * calendars on a CalDAV server (RFC 4791) in step with what happens on the bus.
 *
 * It accepts the generic calendar.event.upsert / calendar.event.cancel, and maps domain
 * events to calendar entries itself: a child's absence (child.absence.reported, enriched
 * with the child's CPR record) becomes an all-day event in each custody holder's calendar,
 * and an employee's absence or holiday from HR becomes an all-day event in the employee's
 * calendar (cancelled with staff.absence.cancelled). The calendar of a person is found from
 * the `calendar_url` template; a citizen is named there by a pseudonym, never a CPR number.
 * Summaries are neutral ("Ida: fravær"): sickness is health data and appears only in the
 * description, and only when `include_reason` is set.
 *
 * caldav.c holds the CalDAV conversation, vevent.c the iCalendar text; this file holds the
 * options, the validation of each event's data and the mapping.
 */
#include "calendar.h"
#include "../common/kc_check.h"
#include "../common/kc_files.h"
#include "../common/kc_text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <openssl/evp.h>

#define MAX_HOLDERS 8

typedef struct calendar {
	/* Bound options (s_options), borrowed from the config. */
	const char *url_template; /* calendar_url */
	const char *key_path;     /* pseudonym_key */
	const char *cancel_mode;  /* status or delete */
	int64_t conflict_retries;
	bool create_calendars;
	bool include_reason;
	kc_http_conf_t http_conf; /* timeout, ca_file, user, password(_file), allow_plain_http */

	cal_dav_t *dav;
	kanal_pseudonym_key_t *key; /* NULL: no pseudonym_key */
} calendar_t;

static const char *const s_cancel_modes[] = { "status", "delete", NULL };

static const kanal_option_t s_options[] = {
	{ .name = "calendar_url",
	  .type = KANAL_OPT_STRING,
	  .required = true,
	  KANAL_OPT_AT(calendar_t, url_template),
	  .help = "The calendar collection of a person: a URL template where {owner} is replaced "
		  "by "
		  "the owner (percent-encoded), e.g. http://127.0.0.1:5232/{owner}/kanal/." },
	KC_HTTP_OPT_BASIC_AUTH(calendar_t, http_conf),
	KC_HTTP_OPT_TIMEOUT(calendar_t, http_conf, "5s",
			    "Longest wait for one HTTP request to the CalDAV server."),
	KC_HTTP_OPT_CA_FILE(calendar_t, http_conf),
	{ .name = "create_calendars",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "true",
	  KANAL_OPT_AT(calendar_t, create_calendars),
	  .help = "Create a person's calendar collection (MKCALENDAR) when it does not exist." },
	{ .name = "cancel_mode",
	  .type = KANAL_OPT_STRING,
	  .default_value = "status",
	  .allowed = s_cancel_modes,
	  KANAL_OPT_AT(calendar_t, cancel_mode),
	  .help = "How a cancellation is written: status (STATUS:CANCELLED, SEQUENCE + 1) or "
		  "delete "
		  "(the resource is deleted)." },
	{ .name = "conflict_retries",
	  .type = KANAL_OPT_INT,
	  .default_value = "3",
	  .min = "0",
	  .max = "100",
	  KANAL_OPT_AT(calendar_t, conflict_retries),
	  .help = "How many times an event that changed on the server (412) is re-read and written "
		  "again within one delivery before answering RETRY." },
	{ .name = "pseudonym_key",
	  .type = KANAL_OPT_PATH,
	  KANAL_OPT_AT(calendar_t, key_path),
	  .help = "Key file for citizens' pseudonyms (mode 0600): the owner of a custody holder's "
		  "calendar is person:<HMAC of the CPR number>. Needed for child.absence.*." },
	{ .name = "include_reason",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "false",
	  KANAL_OPT_AT(calendar_t, include_reason),
	  .help = "Put the absence reason or code (which may be health data, e.g. sick) in the "
		  "event's DESCRIPTION; the SUMMARY never holds it." },
	KC_URL_OPT_ALLOW_PLAIN_HTTP(calendar_t, http_conf.allow_plain_http),
	{ .name = NULL },
};

/* libxml2 and libical keep global state that must be set up before several instance
 * threads use them at once: done when the plugin is loaded. */
__attribute__((constructor)) static void s_load(void)
{
	xmlInitParser();
	cal_ical_setup();
}

/* libical keeps its built-in time zones (UTC among them) in a global array made on first
 * use; give it back when the plugin is unloaded, or it is lost with the library. */
__attribute__((destructor)) static void s_unload(void)
{
	cal_ical_teardown();
}

/* ---- checks on event data --------------------------------------------------------------- */

/* Why a delivery is refused: the text goes to kanal_set_error. */
typedef struct {
	char text[512];
} why_t;

/* True when s holds a CPR number. */
static bool s_has_cpr(const char *s)
{
	size_t off, len;
	return s && kanal_cpr_find(s, strlen(s), &off, &len);
}

/* Reads the string data field `path` into *out: required or not, at most max bytes, no
 * control characters (a newline allowed when multiline), no CPR number. Returns 0 (*out
 * NULL when absent and optional) or KANAL_EINVAL with why naming "data.<path>". */
static int s_text(const kanal_msg_t *msg, const char *path, bool required, size_t max,
		  bool multiline, const char **out, why_t *why)
{
	int rc = kanal_msg_data_str(msg, path, out);

	if (rc == KANAL_ENOTFOUND && !required) {
		*out = NULL;
		return 0;
	}
	if (rc == KANAL_ENOTFOUND) {
		snprintf(why->text, sizeof why->text, "data.%s is missing", path);
		return KANAL_EINVAL;
	}
	if (rc != 0) {
		snprintf(why->text, sizeof why->text, "data.%s is not a string", path);
		return KANAL_EINVAL;
	}
	if (required && !**out) {
		snprintf(why->text, sizeof why->text, "data.%s is empty", path);
		return KANAL_EINVAL;
	}
	if (strlen(*out) > max) {
		snprintf(why->text, sizeof why->text, "data.%s is longer than %zu bytes", path,
			 max);
		return KANAL_EINVAL;
	}
	for (const unsigned char *p = (const unsigned char *)*out; *p; p++) {
		if ((*p < 0x20 && !(multiline && (*p == '\n' || *p == '\t'))) || *p == 0x7f) {
			snprintf(why->text, sizeof why->text, "data.%s holds a control character",
				 path);
			return KANAL_EINVAL;
		}
	}
	if (s_has_cpr(*out)) {
		snprintf(why->text, sizeof why->text,
			 "data.%s holds a CPR number, which must never reach a calendar", path);
		return KANAL_EINVAL;
	}
	return 0;
}

/* An owner names a calendar in a URL: 1-128 characters of [A-Za-z0-9._:@-], not "." or
 * "..". (Percent-encoding alone would not do: the server decodes %2F back into '/'.) */
static int s_owner_check(const char *owner, const char *field, why_t *why)
{
	size_t n = strlen(owner);

	if (n == 0 || n > 128 || !strcmp(owner, ".") || !strcmp(owner, "..")) {
		snprintf(why->text, sizeof why->text,
			 "%s: '%.40s' cannot name a calendar (empty, too long, '.' or '..')", field,
			 owner);
		return KANAL_EINVAL;
	}
	for (const char *p = owner; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '@' || c == '-')) {
			snprintf(why->text, sizeof why->text,
				 "%s: '%.40s' cannot name a calendar: only letters, digits and . _ "
				 ": "
				 "@ - are allowed",
				 field, owner);
			kanal_cpr_redact_inplace(why->text);
			return KANAL_EINVAL;
		}
	}
	return 0;
}

static const char *s_lookup_owner(const char *name, void *arg)
{
	return !strcmp(name, "owner") ? arg : NULL;
}

/* The collection URL of owner's calendar (malloc'd), or NULL with why filled. */
static char *s_collection(const calendar_t *c, const char *owner, why_t *why)
{
	char err[256], *url;
	kanal_error_t terr;
	size_t n;

	kanal_error_clear(&terr);
	if (kc_template_expand(c->url_template, s_lookup_owner, (void *)owner, true, &url, &terr) !=
	    0) {
		snprintf(why->text, sizeof why->text, "option calendar_url: %.400s", terr.text);
		return NULL;
	}
	n = strlen(url);
	if (n && url[n - 1] != '/') {
		char *slashed = realloc(url, n + 2);
		if (!slashed) {
			free(url);
			snprintf(why->text, sizeof why->text, "out of memory");
			return NULL;
		}
		url = slashed;
		url[n] = '/';
		url[n + 1] = '\0';
	}
	if (cal_collection_check(url, err, sizeof err) != 0) {
		snprintf(why->text, sizeof why->text, "calendar URL %s for owner '%.40s': %s", url,
			 owner, err);
		free(url);
		return NULL;
	}
	return url;
}

static kanal_outcome_t s_reject(kanal_ctx_t *ctx, const char *type, const why_t *why)
{
	kanal_metric_add(ctx, "rejected", 1);
	kanal_set_error(ctx, "%s: %s", type, why->text);
	return KANAL_OUTCOME_REJECT;
}

/* Hands a CalDAV step's failure to the bus. `prefix` says which calendar, or is "". */
static kanal_outcome_t s_report(kanal_ctx_t *ctx, kanal_outcome_t out, const cal_status_t *st,
				const char *prefix)
{
	if (out == KANAL_OUTCOME_OK)
		return out;
	kanal_set_error(ctx, "%s%s", prefix, st->text);
	if (out == KANAL_OUTCOME_RETRY && st->retry_after_ms >= 0)
		kanal_set_retry_after(ctx, st->retry_after_ms);
	return out;
}

/* Writes ev into owner's calendar. */
static kanal_outcome_t s_write(kanal_ctx_t *ctx, calendar_t *c, const char *owner,
			       const cal_event_t *ev, cal_status_t *st)
{
	why_t why;
	char *collection = s_collection(c, owner, &why);
	kanal_outcome_t out;

	if (!collection) {
		snprintf(st->text, sizeof st->text, "%s", why.text);
		st->retry_after_ms = -1;
		return KANAL_OUTCOME_REJECT;
	}
	out = cal_dav_upsert(ctx, c->dav, collection, ev, owner, st);
	free(collection);
	return out;
}

static kanal_outcome_t s_cancel(kanal_ctx_t *ctx, calendar_t *c, const char *owner, const char *uid,
				int64_t min_sequence, int64_t version, cal_status_t *st)
{
	why_t why;
	char *collection = s_collection(c, owner, &why);
	kanal_outcome_t out;

	if (!collection) {
		snprintf(st->text, sizeof st->text, "%s", why.text);
		st->retry_after_ms = -1;
		return KANAL_OUTCOME_REJECT;
	}
	out = cal_dav_cancel(ctx, c->dav, collection, uid, min_sequence, version, owner, st);
	free(collection);
	return out;
}

/* ---- calendars named by CPR number ---------------------------------------------------- */

/* "kanal-absence-" and 32 hex digits of SHA-256(source, event id, owner): stable for the
 * same report and holder, so a retried delivery updates instead of duplicating, and free
 * of anything personal. */
static void s_absence_uid(const char *source, const char *id, const char *owner, char *out,
			  size_t size)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	EVP_MD_CTX *h = EVP_MD_CTX_new();
	char hex[33];

	if (!h || !EVP_DigestInit_ex(h, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(h, source, strlen(source) + 1) ||
	    !EVP_DigestUpdate(h, id, strlen(id) + 1) ||
	    !EVP_DigestUpdate(h, owner, strlen(owner)) || !EVP_DigestFinal_ex(h, md, &md_len))
		memset(md, 0, sizeof md);
	EVP_MD_CTX_free(h);
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	snprintf(out, size, "kanal-absence-%s", hex);
}

/* Reads the CPR numbers at data.<list> into pseudonyms: a string (one person), or an array
 * of up to MAX_HOLDERS strings — or of objects holding the number at `sub` (the custody
 * holders' {cpr, type, code}) when sub is given. An absent list is none. Returns 0 or
 * KANAL_EINVAL with why naming the element (never the number). */
static int s_cpr_owners(const calendar_t *c, const kanal_msg_t *msg, const char *list,
			const char *sub, char owners[MAX_HOLDERS][KANAL_PSEUDONYM_SIZE], size_t *n,
			why_t *why)
{
	char path[96];
	const char *cpr;
	int rc;

	*n = 0;
	if (!sub && kanal_msg_data_str(msg, list, &cpr) == 0) {
		if (kanal_cpr_pseudonym(c->key, cpr, owners[0], KANAL_PSEUDONYM_SIZE) != 0) {
			snprintf(why->text, sizeof why->text, "data.%s is not a valid CPR number",
				 list);
			return KANAL_EINVAL;
		}
		*n = 1;
		return 0;
	}
	for (size_t i = 0;; i++) {
		snprintf(path, sizeof path, sub ? "%s.%zu.%s" : "%s.%zu", list, i, sub ? sub : "");
		rc = kanal_msg_data_str(msg, path, &cpr);
		if (rc == KANAL_ENOTFOUND) {
			snprintf(path, sizeof path, "%s.%zu", list, i);
			if (kanal_msg_data_str(msg, path, &cpr) == KANAL_ENOTFOUND) {
				char *json = kanal_msg_data_json(msg, path);
				bool present = json != NULL;
				kanal_free(json);
				if (!present)
					break;
			}
			snprintf(why->text, sizeof why->text, "data.%s[%zu] has no %s", list, i,
				 sub ? sub : "CPR number");
			return KANAL_EINVAL;
		}
		if (rc != 0 || *n == MAX_HOLDERS) {
			if (rc)
				snprintf(why->text, sizeof why->text,
					 "data.%s[%zu]%s%s is not a string", list, i,
					 sub ? "." : "", sub ? sub : "");
			else
				snprintf(why->text, sizeof why->text,
					 "data.%s has more than %zu %s", list, (size_t)MAX_HOLDERS,
					 sub ? "holders" : "people");
			return KANAL_EINVAL;
		}
		if (kanal_cpr_pseudonym(c->key, cpr, owners[*n], KANAL_PSEUDONYM_SIZE) != 0) {
			snprintf(why->text, sizeof why->text,
				 "data.%s[%zu]%s%s is not a valid CPR number", list, i,
				 sub ? "." : "", sub ? sub : "");
			return KANAL_EINVAL;
		}
		(*n)++;
	}
	return 0;
}

/* Writes ev into (or, with cancel, cancels its UID in) each of the n owners' calendars.
 * With report_id the UID is made per owner (s_absence_uid) and written into ev->uid's
 * buffer `uid`. Every owner is tried even when one fails: an owner already written is
 * simply found unchanged when the bus retries, because the UID is the same. `who` names
 * the owners in the error ("custody holder"). */
static kanal_outcome_t s_each_owner(kanal_ctx_t *ctx, calendar_t *c, const kanal_msg_t *msg,
				    char owners[MAX_HOLDERS][KANAL_PSEUDONYM_SIZE], size_t n,
				    cal_event_t *ev, bool cancel, const char *report_id, char *uid,
				    size_t uid_size, const char *who)
{
	cal_status_t st = { 0 }, failed = { 0 };
	kanal_outcome_t worst = KANAL_OUTCOME_OK;
	size_t failed_at = 0;

	for (size_t i = 0; i < n; i++) {
		kanal_outcome_t out;
		if (report_id)
			s_absence_uid(kanal_msg_source(msg), report_id, owners[i], uid, uid_size);
		if (cancel)
			out = s_cancel(ctx, c, owners[i], ev->uid, ev->sequence, 0, &st);
		else
			out = s_write(ctx, c, owners[i], ev, &st);
		if (out == KANAL_OUTCOME_OK)
			continue;
		kanal_log(ctx, KANAL_LOG_WARN, "%s %s: %s %zu of %zu: %s", kanal_msg_type(msg),
			  kanal_msg_id(msg), who, i + 1, n, st.text);
		if (worst == KANAL_OUTCOME_OK ||
		    (out == KANAL_OUTCOME_RETRY && worst != KANAL_OUTCOME_RETRY)) {
			worst = out;
			failed = st;
			failed_at = i;
		}
	}
	if (worst != KANAL_OUTCOME_OK) {
		char prefix[160];
		snprintf(prefix, sizeof prefix, "calendar of %s %zu of %zu (%.20s…): ", who,
			 failed_at + 1, n, owners[failed_at]);
		return s_report(ctx, worst, &failed, prefix);
	}
	return KANAL_OUTCOME_OK;
}

/* ---- calendar.event.upsert / .cancel ------------------------------------------------------ */

/* Reads data.sequence (optional, >= 0) into *seq (-1 when absent). */
static int s_sequence(const kanal_msg_t *msg, int64_t *seq, why_t *why)
{
	int rc = kanal_msg_data_int(msg, "sequence", seq);

	if (rc == KANAL_ENOTFOUND) {
		*seq = -1;
		return 0;
	}
	if (rc != 0 || *seq < 0 || *seq > 0x7fffffff) {
		snprintf(why->text, sizeof why->text, "data.sequence is not an integer >= 0");
		return KANAL_EINVAL;
	}
	return 0;
}

/* The calendars an upsert or cancel names: data.owner (one calendar, as it is), or
 * data.owner_cpr (a CPR number or a list of them: each person's calendar, named by the
 * pseudonym; the number itself is never written anywhere). Exactly one of the two. */
static int s_upsert_owners(const calendar_t *c, const kanal_msg_t *msg, const char **owner,
			   char owners[MAX_HOLDERS][KANAL_PSEUDONYM_SIZE], size_t *n, why_t *why)
{
	char *json = kanal_msg_data_json(msg, "owner_cpr");
	bool by_cpr = json != NULL;

	kanal_free(json);
	*n = 0;
	*owner = NULL;
	if (!by_cpr)
		return s_text(msg, "owner", true, 128, false, owner, why) ||
				       s_owner_check(*owner, "data.owner", why)
			       ? KANAL_EINVAL
			       : 0;
	if (kanal_msg_data_str(msg, "owner", owner) != KANAL_ENOTFOUND) {
		snprintf(why->text, sizeof why->text,
			 "data.owner and data.owner_cpr both given: name the calendar one way");
		return KANAL_EINVAL;
	}
	if (!c->key) {
		snprintf(why->text, sizeof why->text,
			 "data.owner_cpr needs the option pseudonym_key: a citizen's calendar is "
			 "named by a pseudonym");
		return KANAL_EINVAL;
	}
	if (s_cpr_owners(c, msg, "owner_cpr", NULL, owners, n, why) != 0)
		return KANAL_EINVAL;
	if (*n == 0) {
		snprintf(why->text, sizeof why->text, "data.owner_cpr names nobody");
		return KANAL_EINVAL;
	}
	return 0;
}

static kanal_outcome_t s_on_upsert(kanal_ctx_t *ctx, calendar_t *c, const kanal_msg_t *msg)
{
	const char *type = kanal_msg_type(msg), *owner, *start, *end;
	char owners[MAX_HOLDERS][KANAL_PSEUDONYM_SIZE];
	cal_event_t ev = { 0 };
	cal_status_t st = { 0 };
	size_t n;
	why_t why;

	if (s_upsert_owners(c, msg, &owner, owners, &n, &why) ||
	    s_text(msg, "uid", true, 255, false, &ev.uid, &why) ||
	    s_text(msg, "summary", true, 255, false, &ev.summary, &why) ||
	    s_text(msg, "description", false, 4000, true, &ev.description, &why) ||
	    s_text(msg, "start", true, 40, false, &start, &why) ||
	    s_text(msg, "end", true, 40, false, &end, &why) ||
	    cal_event_when(&ev, start, end, why.text, sizeof why.text) ||
	    s_sequence(msg, &ev.sequence, &why))
		return s_reject(ctx, type, &why);
	if (n)
		return s_each_owner(ctx, c, msg, owners, n, &ev, false, NULL, NULL, 0, "owner");
	return s_report(ctx, s_write(ctx, c, owner, &ev, &st), &st, "");
}

static kanal_outcome_t s_on_cancel(kanal_ctx_t *ctx, calendar_t *c, const kanal_msg_t *msg)
{
	const char *type = kanal_msg_type(msg), *owner;
	char owners[MAX_HOLDERS][KANAL_PSEUDONYM_SIZE];
	cal_event_t ev = { 0 };
	cal_status_t st = { 0 };
	size_t n;
	why_t why;

	if (s_upsert_owners(c, msg, &owner, owners, &n, &why) ||
	    s_text(msg, "uid", true, 255, false, &ev.uid, &why) ||
	    s_sequence(msg, &ev.sequence, &why))
		return s_reject(ctx, type, &why);
	if (n)
		return s_each_owner(ctx, c, msg, owners, n, &ev, true, NULL, NULL, 0, "owner");
	return s_report(ctx, s_cancel(ctx, c, owner, ev.uid, ev.sequence, 0, &st), &st, "");
}

/* ---- child.absence.reported / .withdrawn ----------------------------------------------- */

/* The Danish word for an absence reason, for the description. */
static const char *s_reason_text(const char *reason)
{
	if (!reason)
		return NULL;
	if (!strcmp(reason, "sick"))
		return "syg";
	if (!strcmp(reason, "holiday"))
		return "ferie";
	if (!strcmp(reason, "day-off"))
		return "fridag";
	return "andet";
}

/* Reads data.from and data.to (inclusive; absent: the same day) into ev's all-day period.
 */
static int s_period(const kanal_msg_t *msg, cal_event_t *ev, why_t *why)
{
	const char *from, *to;

	if (s_text(msg, "from", true, 10, false, &from, why) ||
	    s_text(msg, "to", false, 10, false, &to, why))
		return KANAL_EINVAL;
	if (cal_date_parse(from, ev->start) != 0) {
		snprintf(why->text, sizeof why->text, "data.from: '%s' is not a date (YYYY-MM-DD)",
			 from);
		return KANAL_EINVAL;
	}
	if (cal_date_parse(to ? to : from, ev->end) != 0) {
		snprintf(why->text, sizeof why->text, "data.to: '%s' is not a date (YYYY-MM-DD)",
			 to);
		return KANAL_EINVAL;
	}
	if (strcmp(ev->end, ev->start) < 0) {
		snprintf(why->text, sizeof why->text, "data.to '%s' is before data.from '%s'", to,
			 from);
		return KANAL_EINVAL;
	}
	ev->all_day = true;
	cal_date_add_days(ev->end, 1); /* the last day counts: DTEND is the day after */
	return 0;
}

static kanal_outcome_t s_on_child_absence(kanal_ctx_t *ctx, calendar_t *c, const kanal_msg_t *msg,
					  bool withdrawn)
{
	const char *type = kanal_msg_type(msg), *first = NULL, *institution = NULL;
	const char *reason = NULL, *report_id = kanal_msg_id(msg);
	char owners[MAX_HOLDERS][KANAL_PSEUDONYM_SIZE], uid[64], summary[160], description[400];
	char *json;
	cal_event_t ev = { .sequence = -1 };
	size_t n = 0;
	why_t why;

	if (!c->key) {
		snprintf(why.text, sizeof why.text,
			 "option pseudonym_key is not set: a custody holder's calendar is named "
			 "by a pseudonym");
		return s_reject(ctx, type, &why);
	}
	json = kanal_msg_data_json(msg, "child_person");
	if (!json || json[0] != '{') {
		kanal_free(json);
		snprintf(why.text, sizeof why.text,
			 "data.child_person is missing: route this event through an enrich step "
			 "with the CPR service (into: data.child_person)");
		return s_reject(ctx, type, &why);
	}
	kanal_free(json);
	if ((withdrawn && s_text(msg, "report", true, 255, false, &report_id, &why)) ||
	    s_text(msg, "child_person.name.first", false, 80, false, &first, &why) ||
	    s_text(msg, "institution", false, 120, false, &institution, &why) ||
	    (!withdrawn && s_text(msg, "reason", false, 40, false, &reason, &why)) ||
	    (!withdrawn && s_period(msg, &ev, &why)) ||
	    s_cpr_owners(c, msg, "child_person.relations.custody", "cpr", owners, &n, &why))
		return s_reject(ctx, type, &why);
	if (n == 0) {
		kanal_metric_add(ctx, "no_custody_holder", 1);
		kanal_log(ctx, KANAL_LOG_INFO,
			  "%s %s: the child has no custody holder; no calendar "
			  "to write",
			  type, kanal_msg_id(msg));
		return KANAL_OUTCOME_OK;
	}
	if (first && *first)
		snprintf(summary, sizeof summary, "%s: fravær", first);
	else
		snprintf(summary, sizeof summary, "Fravær");
	snprintf(description, sizeof description, "Fravær meldt%s%s.%s%s%s",
		 institution ? " til " : "", institution ? institution : "",
		 c->include_reason && reason ? " Årsag: " : "",
		 c->include_reason && reason ? s_reason_text(reason) : "",
		 c->include_reason && reason ? "." : "");
	ev.summary = summary;
	ev.description = description;
	ev.uid = uid;
	return s_each_owner(ctx, c, msg, owners, n, &ev, withdrawn, report_id, uid, sizeof uid,
			    "custody holder");
}

/* ---- staff.absence.* / staff.holiday.registered ------------------------------------------- */

/* The UID of an HR absence: stable across its versions and its cancellation. */
static int s_staff_uid(const kanal_msg_t *msg, char *out, size_t size, why_t *why)
{
	const char *absence;

	if (kanal_msg_data_str(msg, "absence", &absence) == KANAL_ENOTFOUND &&
	    kanal_msg_data_str(msg, "holiday", &absence) == 0) {
		/* A holiday registration may carry its id as data.holiday. */
		if (s_text(msg, "holiday", true, 200, false, &absence, why))
			return KANAL_EINVAL;
	} else if (s_text(msg, "absence", true, 200, false, &absence, why)) {
		return KANAL_EINVAL;
	}
	snprintf(out, size, "kanal-hr-absence-%s", absence);
	return 0;
}

/* The HR version of the absence (data.version), 0 when the event has none: versions of
 * one absence update one event, and an older one never overwrites a newer. */
static int64_t s_hr_version(const kanal_msg_t *msg)
{
	int64_t version;

	return kanal_msg_data_int(msg, "version", &version) == 0 && version > 0 ? version : 0;
}

static kanal_outcome_t s_on_staff(kanal_ctx_t *ctx, calendar_t *c, const kanal_msg_t *msg,
				  bool holiday)
{
	const char *type = kanal_msg_type(msg), *owner, *code = NULL;
	char uid[240], description[200];
	cal_event_t ev = { .sequence = -1 };
	cal_status_t st = { 0 };
	double hours = 0;
	bool is_holiday = holiday;
	why_t why;

	if (s_text(msg, "employment", true, 128, false, &owner, &why) ||
	    s_owner_check(owner, "data.employment", &why) ||
	    s_staff_uid(msg, uid, sizeof uid, &why) ||
	    (!holiday && s_text(msg, "code", false, 20, false, &code, &why)) ||
	    s_period(msg, &ev, &why))
		return s_reject(ctx, type, &why);
	if (code && (!strcmp(code, "FERIE") || !strcmp(code, "FERIEFRI")))
		is_holiday = true;
	if (kanal_msg_data_double(msg, "hours", &hours) != 0)
		hours = 0;
	snprintf(description, sizeof description, "%s registreret i HR.%s%s%s",
		 is_holiday ? "Ferie" : "Fravær", c->include_reason && code ? " Fraværskode: " : "",
		 c->include_reason && code ? code : "", c->include_reason && code ? "." : "");
	if (hours > 0 && hours < 24) {
		size_t len = strlen(description);
		snprintf(description + len, sizeof description - len, " %.4g timer pr. dag.",
			 hours);
	}
	ev.uid = uid;
	ev.version = s_hr_version(msg);
	ev.summary = is_holiday ? "Ferie" : "Fravær";
	ev.description = description;
	return s_report(ctx, s_write(ctx, c, owner, &ev, &st), &st, "");
}

static kanal_outcome_t s_on_staff_cancelled(kanal_ctx_t *ctx, calendar_t *c, const kanal_msg_t *msg)
{
	const char *type = kanal_msg_type(msg), *owner;
	char uid[240];
	cal_status_t st = { 0 };
	why_t why;

	if (s_text(msg, "employment", true, 128, false, &owner, &why) ||
	    s_owner_check(owner, "data.employment", &why) ||
	    s_staff_uid(msg, uid, sizeof uid, &why))
		return s_reject(ctx, type, &why);
	return s_report(ctx, s_cancel(ctx, c, owner, uid, -1, s_hr_version(msg), &st), &st, "");
}

/* ---- the plugin ---------------------------------------------------------------------------- */

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	calendar_t *c = state;
	const char *type = kanal_msg_type(msg);
	kanal_outcome_t out;

	kanal_metric_add(ctx, "received", 1);
	if (!strcmp(type, "calendar.event.upsert"))
		out = s_on_upsert(ctx, c, msg);
	else if (!strcmp(type, "calendar.event.cancel"))
		out = s_on_cancel(ctx, c, msg);
	else if (!strcmp(type, "child.absence.reported"))
		out = s_on_child_absence(ctx, c, msg, false);
	else if (!strcmp(type, "child.absence.withdrawn"))
		out = s_on_child_absence(ctx, c, msg, true);
	else if (!strcmp(type, "staff.absence.registered"))
		out = s_on_staff(ctx, c, msg, false);
	else if (!strcmp(type, "staff.holiday.registered"))
		out = s_on_staff(ctx, c, msg, true);
	else if (!strcmp(type, "staff.absence.cancelled"))
		out = s_on_staff_cancelled(ctx, c, msg);
	else {
		kanal_metric_add(ctx, "rejected", 1);
		kanal_set_error(ctx,
				"calendar: events of type '%s' are not handled (see "
				"docs/plugins/calendar.md)",
				type);
		return KANAL_OUTCOME_REJECT;
	}
	kanal_metric_add(ctx,
			 out == KANAL_OUTCOME_OK      ? "delivered"
			 : out == KANAL_OUTCOME_RETRY ? "retried"
						      : "failed",
			 1);
	return out;
}

static void s_destroy(void *state)
{
	calendar_t *c = state;

	if (!c)
		return;
	cal_dav_destroy(&c->dav);
	kanal_pseudonym_key_destroy(&c->key);
	kc_http_conf_clear(&c->http_conf);
	free(c);
}

/* The table checked each option alone; init checks the URL template (a sound collection URL
 * for a plain owner, by kc_url_check's rule) and the credentials that go together. */
static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	calendar_t *c = calloc(1, sizeof *c);
	cal_dav_opts_t o = { 0 };
	why_t why;
	char *probe;
	int rc = KANAL_ECONFIG;

	if (!c) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	kanal_config_bind(cfg, c);
	/* The template must give a sound collection URL for a plain owner. */
	if (!(probe = s_collection(c, "owner-1", &why))) {
		kanal_set_error(ctx, "option 'calendar_url': %s", why.text);
		goto fail;
	}
	rc = kc_url_check_option(ctx, "calendar_url", probe, c->http_conf.allow_plain_http);
	free(probe);
	if (rc != 0 || (rc = kc_http_conf_open(ctx, &c->http_conf, &o.http)) != 0)
		goto fail;
	rc = KANAL_ECONFIG;
	o.cancel_delete = !strcmp(c->cancel_mode, "delete"); /* else status: the table checked */
	o.conflict_retries = (int)c->conflict_retries;
	o.create_calendars = c->create_calendars;
	if (c->key_path) {
		kanal_error_t err;
		kanal_error_clear(&err);
		if (kanal_pseudonym_key_load(c->key_path, &c->key, &err) != 0) {
			kanal_set_error(ctx, "option 'pseudonym_key': %s", err.text);
			goto fail;
		}
	}
	if (!(c->dav = cal_dav_new(&o))) {
		kanal_set_error(ctx, "out of memory");
		rc = KANAL_ENOMEM;
		goto fail;
	}
	kc_http_conf_clear(&c->http_conf);
	*state = c;
	return 0;
fail:
	s_destroy(c);
	return rc;
}

/* init validates, reads the secret files and the pseudonym key and allocates — nothing is
 * created, nothing connects — so check is init and destroy (kc_check.h). */
KC_CHECK_BY_INIT(s_init, s_destroy)

static int s_start(kanal_ctx_t *ctx, void *state)
{
	static const char *const metrics[] = { "received", "delivered", "retried",
					       "failed",   "rejected",  "created",
					       "updated",  "unchanged", "cancelled",
					       "deleted",  "conflicts", "upstream_errors",
					       NULL };
	for (size_t i = 0; metrics[i]; i++)
		kanal_metric_add(ctx, metrics[i], 0);
	(void)state;
	return 0;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "calendar",
	.version = KANAL_VERSION,
	.description = "Keeps people's calendars on a CalDAV server in step: creates, updates "
		       "and cancels events (calendar.event.*), and turns children's absences "
		       "and staff absences into all-day events.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.stop = NULL,
	.destroy = s_destroy,
	.check = s_check,
};
