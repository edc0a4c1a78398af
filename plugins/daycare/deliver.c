/*
 * plugins/daycare/deliver.c — the daycare connector's destination: what kanal tells the
 * daycare system.
 *
 *   daycare.notice.post        POST /api/v1/institutions/<institution>/notices, with the
 *                              notice's photos (data.photos: blob references, read from the
 *                              blob store and sent as data_base64)
 *   staff.absence.registered,  POST …/<department>/staffing (the employee expected absent,
 *   staff.holiday.registered   with the absence's kind: sick, child-sick, holiday, …) and,
 *                              for a code in notice_codes (SYG), one neutral notice to the
 *                              parents per absence: staff_notice_title / staff_notice_text —
 *                              never the reason, the name or the CPR number; a later
 *                              version updates that notice (or withdraws it when its code
 *                              no longer posts one)
 *   staff.absence.cancelled    POST …/<department>/staffing with status cancelled, and the
 *                              absence's notice withdrawn
 *   child.absence.reported     POST …/<institution>/staffing (the child expected absent)
 *   child.absence.withdrawn    POST …/<institution>/staffing with status cancelled
 *   child.pickup.planned,      POST …/<institution>/day (the institution's day overview:
 *   child.checkin/.checkout    who collects whom and when, who arrived and left)
 *   child.vacation.registered  POST …/<institution>/vacation-plan (the survey's answers for
 *                              the staffing plan; a new answer replaces the child's last)
 *   child.report.confirmed     POST /api/v1/registrations/<registration>/confirmations (the
 *                              parents' app: the report's confirmation, confirm.c)
 *
 * A parent's report (the four types confirm_is_report names) ends with its confirmation
 * emitted once its outcome is known (confirm.c).
 *
 * Staffing entries and staff notices are upserts keyed by an external id derived from the
 * fact (the HR absence id, the absence report's event id), so doing one twice changes
 * nothing; they carry the HR version, and the daycare system ignores an older one than it
 * has, so a late or replayed older version never overwrites a newer one. A notice
 * carries an Idempotency-Key made of the event's source and id: when kanald delivers the
 * same event again (a retry after a lost answer, a redelivery after a crash) the daycare
 * system answers with the notice it already has and parents get one notice, not two.
 *
 * Outcomes come from kc_http_outcome: no answer, 408, 425, 429 and 5xx RETRY (Retry-After
 * honoured); any other 4xx (an unknown institution is 404) REJECT; an event that lacks a
 * field its type needs, or a type this destination does not handle, REJECT naming it.
 */
#include "daycare.h"
#include "../common/kc_cert.h" /* kc_base64 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#define NOTICES_PATH DAYCARE_INSTITUTIONS "/%s/notices"
#define STAFFING_PATH DAYCARE_INSTITUTIONS "/%s/staffing"
#define DAY_PATH DAYCARE_INSTITUTIONS "/%s/day"
#define VACATION_PATH DAYCARE_INSTITUTIONS "/%s/vacation-plan"

/* The Idempotency-Key header for one call made for msg: printable ASCII only. */
static void s_idempotency_header(const kanal_msg_t *msg, const char *purpose, char *buf,
				 size_t size)
{
	static const char name[] = "Idempotency-Key: ";

	snprintf(buf, size, "%skanal:%s:%s:%s", name, kanal_msg_source(msg), kanal_msg_id(msg),
		 purpose);
	for (char *p = buf + sizeof name - 1; *p; p++)
		if (*p < 0x21 || *p > 0x7e)
			*p = '_';
}

/* POSTs body (stolen) to path (with inst filled in) and returns the outcome. A refusal
 * is described in d->refusal too (the status and the answer's excerpt, CPR numbers masked):
 * what a parent's failed confirmation says. */
kanal_outcome_t deliver_post(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg,
			     const char *path, const char *inst, const char *purpose, json_t *body)
{
	char key[400], what[200];
	const char *headers[] = { "Content-Type: application/json", "Accept: application/json", key,
				  NULL };
	char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
	char *url = daycare_url(d, path, inst);
	kc_response_t res;
	kanal_outcome_t outcome;

	json_decref(body);
	if (!text || !url) {
		free(text);
		free(url);
		kanal_set_error(ctx, "daycare: out of memory");
		return KANAL_OUTCOME_RETRY;
	}
	s_idempotency_header(msg, purpose, key, sizeof key);
	snprintf(what, sizeof what, "POST %s", url + strlen(d->base_url));
	kc_http_request(d->http, "POST", url, headers, text, strlen(text), &res);
	outcome = kc_http_outcome(ctx, &res, what);
	if (outcome == KANAL_OUTCOME_REJECT)
		kc_http_describe(&res, "the daycare system refused it", d->refusal,
				 sizeof d->refusal);
	if (outcome != KANAL_OUTCOME_OK)
		kanal_log(ctx, KANAL_LOG_WARN, "%s for %s %s: %s", what, kanal_msg_type(msg),
			  kanal_msg_id(msg),
			  outcome == KANAL_OUTCOME_RETRY ? "will retry" : "rejected");
	kc_response_clear(&res);
	free(text);
	free(url);
	return outcome;
}

/* A string field of the event's data, or NULL after setting the REJECT error. */
static const char *s_need(kanal_ctx_t *ctx, const kanal_msg_t *msg, const char *field)
{
	const char *v = NULL;

	if (kanal_msg_data_str(msg, field, &v) != 0 || !v || !*v) {
		kanal_set_error(ctx, "daycare: %s %s has no data.%s (a non-empty string)",
				kanal_msg_type(msg), kanal_msg_id(msg), field);
		return NULL;
	}
	return v;
}

static const char *s_opt(const kanal_msg_t *msg, const char *field)
{
	const char *v = NULL;

	return kanal_msg_data_str(msg, field, &v) == 0 && v && *v ? v : NULL;
}

/* True for "YYYY-MM-DD" with plausible numbers (the daycare system checks the calendar). */
static bool s_date_like(const char *s)
{
	return s && strlen(s) == 10 && s[4] == '-' && s[7] == '-' && strspn(s, "0123456789-") == 10;
}

/* The notice's photos: each reference in data.photos ({"href": "kanalblob:…",
 * "mediaType": …}, as the http ingress's multipart upload makes them) read from the blob
 * store into {"media_type", "data_base64"} of the daycare API. Returns the array (empty
 * when the notice has none), or NULL after setting the error: a photo that cannot be read
 * is REJECTed (*outcome), since it will not come back by retrying. */
static json_t *s_photos(kanal_ctx_t *ctx, const kanal_msg_t *msg, kanal_outcome_t *outcome)
{
	char *refs_text = kanal_msg_data_json(msg, "photos");
	json_t *refs = refs_text ? json_loads(refs_text, 0, NULL) : json_array();
	json_t *photos = json_array(), *ref;
	size_t i;

	kanal_free(refs_text);
	*outcome = KANAL_OUTCOME_REJECT;
	if (!json_is_array(refs) || !photos) {
		kanal_set_error(ctx, "daycare: %s %s: data.photos is not a list of blob references",
				kanal_msg_type(msg), kanal_msg_id(msg));
		goto fail;
	}
	json_array_foreach(refs, i, ref)
	{
		const char *href = json_string_value(json_object_get(ref, "href"));
		const char *mt = json_string_value(json_object_get(ref, "mediaType"));
		kanal_error_t err;
		void *data = NULL;
		size_t size = 0;
		char *b64;
		int rc;

		kanal_error_clear(&err);
		rc = kanal_blob_get(ctx, href, &data, &size, &err);
		if (rc != 0) {
			kanal_set_error(ctx, "daycare: photo %zu of %s %s: %s", i + 1,
					kanal_msg_type(msg), kanal_msg_id(msg), err.text);
			if (rc == KANAL_ENOMEM)
				*outcome = KANAL_OUTCOME_RETRY;
			goto fail;
		}
		b64 = kc_base64(data, size);
		kanal_blob_free(&data);
		if (!b64) {
			kanal_set_error(ctx, "daycare: out of memory");
			*outcome = KANAL_OUTCOME_RETRY;
			goto fail;
		}
		json_array_append_new(photos, json_pack("{s:s, s:s}", "media_type",
							mt ? mt : "application/octet-stream",
							"data_base64", b64));
		free(b64);
	}
	json_decref(refs);
	return photos;
fail:
	json_decref(refs);
	json_decref(photos);
	return NULL;
}

static kanal_outcome_t s_notice(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg)
{
	const char *inst = s_need(ctx, msg, "institution");
	const char *title = inst ? s_need(ctx, msg, "title") : NULL;
	const char *text = title ? s_need(ctx, msg, "text") : NULL;
	const char *audience = s_opt(msg, "audience"), *date = s_opt(msg, "date");
	kanal_outcome_t outcome;
	json_t *body, *photos;

	if (!text)
		return KANAL_OUTCOME_REJECT;
	if (!(photos = s_photos(ctx, msg, &outcome)))
		return outcome;
	body = json_pack("{s:s, s:s, s:s, s:s}", "audience", audience ? audience : "parents",
			 "title", title, "text", text, "source_event", kanal_msg_id(msg));
	if (date)
		json_object_set_new(body, "date", json_string(date));
	if (json_array_size(photos))
		json_object_set(body, "photos", photos);
	json_decref(photos);
	return deliver_post(ctx, d, msg, NOTICES_PATH, inst, "notice", body);
}

/* True when code is one of the option notice_codes. */
static bool s_notice_code(const daycare_t *d, const char *code)
{
	size_t n = kanal_config_list_count(d->cfg, "notice_codes");

	for (size_t i = 0; code && i < n; i++)
		if (!strcmp(kanal_config_list(d->cfg, "notice_codes", i), code))
			return true;
	return false;
}

/* The staffing view's kind of a staff absence, from the HR code: what the institution
 * plans by (a sick colleague, a child's sick day, holiday), never the code itself. */
static const char *s_absence_kind(const char *type, const char *code)
{
	static const struct {
		const char *code, *kind;
	} map[] = {
		{ "SYG", "sick" },        { "BARN1", "child-sick" },      { "BARN2", "child-sick" },
		{ "OMSORG", "care-day" }, { "FERIE", "holiday" },         { "FERIEFRI", "holiday" },
		{ "AFSP", "time-off" },   { "BARSEL", "parental-leave" }, { "ORLOV", "leave" },
	};

	for (size_t i = 0; code && i < sizeof map / sizeof map[0]; i++)
		if (!strcmp(map[i].code, code))
			return map[i].kind;
	return !strcmp(type, "staff.holiday.registered") ? "holiday" : "other";
}

/* The body's "version" from data.version when the event has one (the daycare system
 * ignores a version older than the one it has: a late older version never wins). */
static json_t *s_versioned(const kanal_msg_t *msg, json_t *body)
{
	int64_t version;

	if (body && kanal_msg_data_int(msg, "version", &version) == 0 && version >= 0)
		json_object_set_new(body, "version", json_integer(version));
	return body;
}

/* Takes down the notice of absence `ext` (one that was never posted is no error). */
static kanal_outcome_t s_notice_withdraw(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg,
					 const char *dept, const char *ext)
{
	return deliver_post(
		ctx, d, msg, NOTICES_PATH, dept, "notice",
		s_versioned(msg, json_pack("{s:s, s:s, s:s}", "external_id", ext, "status",
					   "withdrawn", "source_event", kanal_msg_id(msg))));
}

/* staff.absence.registered and staff.holiday.registered: every version updates the one
 * staffing entry and the one notice of the absence (external id staff-absence-<absence>),
 * so parents never get a notice per version; a version whose code no longer posts a
 * notice takes it down. */
static kanal_outcome_t s_staff_absence(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg)
{
	const char *dept = s_need(ctx, msg, "department");
	const char *absence = dept ? s_need(ctx, msg, "absence") : NULL;
	const char *employment = absence ? s_need(ctx, msg, "employment") : NULL;
	const char *from = employment ? s_need(ctx, msg, "from") : NULL;
	const char *to = s_opt(msg, "to"), *code = s_opt(msg, "code");
	int64_t version = 0;
	char ext[200];
	kanal_outcome_t o;

	if (!from)
		return KANAL_OUTCOME_REJECT;
	if (!to)
		to = from;
	if (!s_date_like(from) || !s_date_like(to)) {
		kanal_set_error(ctx,
				"daycare: %s %s: data.from and data.to must be dates "
				"(YYYY-MM-DD)",
				kanal_msg_type(msg), kanal_msg_id(msg));
		return KANAL_OUTCOME_REJECT;
	}
	/* The staffing view learns who is away, when and the kind of absence it plans by —
	 * never the HR code itself. */
	snprintf(ext, sizeof ext, "staff-absence-%s", absence);
	o = deliver_post(
		ctx, d, msg, STAFFING_PATH, dept, "staffing",
		s_versioned(msg, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
					   "external_id", ext, "kind", "staff", "absence_kind",
					   s_absence_kind(kanal_msg_type(msg), code), "ref",
					   employment, "from", from, "to", to, "status", "absent",
					   "source_event", kanal_msg_id(msg))));
	if (o != KANAL_OUTCOME_OK)
		return o;
	if (!s_notice_code(d, code)) {
		/* A later version may have changed the code away from one that posts a notice. */
		if (kanal_msg_data_int(msg, "version", &version) == 0 && version > 1)
			return s_notice_withdraw(ctx, d, msg, dept, ext);
		return o;
	}
	return deliver_post(
		ctx, d, msg, NOTICES_PATH, dept, "notice",
		s_versioned(msg, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "external_id",
					   ext, "status", "active", "audience", "parents", "title",
					   d->notice_title, "text", d->notice_text, "date", from,
					   "source_event", kanal_msg_id(msg))));
}

/* staff.absence.cancelled: the staffing entry is cancelled and the notice withdrawn. */
static kanal_outcome_t s_staff_cancel(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg)
{
	const char *dept = s_need(ctx, msg, "department");
	const char *absence = dept ? s_need(ctx, msg, "absence") : NULL;
	char ext[200];
	kanal_outcome_t o;

	if (!absence)
		return KANAL_OUTCOME_REJECT;
	snprintf(ext, sizeof ext, "staff-absence-%s", absence);
	o = deliver_post(
		ctx, d, msg, STAFFING_PATH, dept, "staffing",
		s_versioned(msg, json_pack("{s:s, s:s, s:s}", "external_id", ext, "status",
					   "cancelled", "source_event", kanal_msg_id(msg))));
	if (o != KANAL_OUTCOME_OK)
		return o;
	return s_notice_withdraw(ctx, d, msg, dept, ext);
}

static kanal_outcome_t s_child_absence(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg)
{
	const char *inst = s_need(ctx, msg, "institution");
	const char *child = inst ? s_need(ctx, msg, "child") : NULL;
	const char *from = child ? s_need(ctx, msg, "from") : NULL;
	const char *to = s_opt(msg, "to");

	if (!from)
		return KANAL_OUTCOME_REJECT;
	if (!to)
		to = from;
	if (!s_date_like(from) || !s_date_like(to)) {
		kanal_set_error(ctx,
				"daycare: %s %s: data.from and data.to must be dates "
				"(YYYY-MM-DD)",
				kanal_msg_type(msg), kanal_msg_id(msg));
		return KANAL_OUTCOME_REJECT;
	}
	/* The report's event id is the key, so its withdrawal (data.report) finds the entry. */
	return deliver_post(ctx, d, msg, STAFFING_PATH, inst, "staffing",
			    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "external_id",
				      kanal_msg_id(msg), "kind", "child", "ref", child, "from",
				      from, "to", to, "status", "absent", "source_event",
				      kanal_msg_id(msg)));
}

static kanal_outcome_t s_child_withdrawn(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg)
{
	const char *inst = s_need(ctx, msg, "institution");
	const char *report = inst ? s_need(ctx, msg, "report") : NULL;

	if (!report)
		return KANAL_OUTCOME_REJECT;
	return deliver_post(ctx, d, msg, STAFFING_PATH, inst, "staffing",
			    json_pack("{s:s, s:s, s:s}", "external_id", report, "status",
				      "cancelled", "source_event", kanal_msg_id(msg)));
}

/* The event's data as JSON (a new reference), or NULL after setting the REJECT error. */
static json_t *s_data(kanal_ctx_t *ctx, const kanal_msg_t *msg)
{
	char *text = kanal_msg_data_json(msg, NULL);
	json_t *data = text ? json_loads(text, 0, NULL) : NULL;

	kanal_free(text);
	if (!json_is_object(data)) {
		json_decref(data);
		kanal_set_error(ctx, "daycare: %s %s has no JSON object as data",
				kanal_msg_type(msg), kanal_msg_id(msg));
		return NULL;
	}
	return data;
}

/* The parents' registrations the institution acts on during the day, and the holiday
 * survey's answers for the staffing plan: a record keyed by `external_id`, holding the
 * listed fields of the event's data (never the child's CPR number). */
static kanal_outcome_t s_record(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg,
				const char *path, const char *kind, const char *external_id,
				const char *const *fields)
{
	const char *inst = s_need(ctx, msg, "institution");
	const char *child = inst ? s_need(ctx, msg, "child") : NULL;
	json_t *data = child ? s_data(ctx, msg) : NULL, *body;

	if (!data)
		return KANAL_OUTCOME_REJECT;
	body = json_pack("{s:s, s:s, s:s, s:s}", "external_id",
			 external_id ? external_id : kanal_msg_id(msg), "kind", kind, "child",
			 child, "source_event", kanal_msg_id(msg));
	for (const char *const *f = fields; body && *f; f++)
		if (json_object_get(data, *f))
			json_object_set(body, *f, json_object_get(data, *f));
	json_decref(data);
	return deliver_post(ctx, d, msg, path, inst, kind, body);
}

static kanal_outcome_t s_day_event(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg,
				   const char *kind)
{
	static const char *const pickup[] = { "date", "weekdays", "time", "mode", "person", NULL };
	static const char *const check[] = { "at", "status", NULL };

	return s_record(ctx, d, msg, DAY_PATH, kind, NULL, strcmp(kind, "pickup") ? check : pickup);
}

/* A survey answer replaces the child's earlier answer to the same survey. */
static kanal_outcome_t s_vacation(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg)
{
	static const char *const fields[] = { "survey", "deadline", "days", NULL };
	const char *survey = s_need(ctx, msg, "survey");
	const char *child = survey ? s_need(ctx, msg, "child") : NULL;
	char ext[300];

	if (!child)
		return KANAL_OUTCOME_REJECT;
	snprintf(ext, sizeof ext, "vacation-%s-%s", survey, child);
	return s_record(ctx, d, msg, VACATION_PATH, "vacation", ext, fields);
}

/* Delivers msg by its type (the table at the top). */
static kanal_outcome_t s_deliver_type(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg)
{
	const char *type = kanal_msg_type(msg);

	if (!strcmp(type, "daycare.notice.post"))
		return s_notice(ctx, d, msg);
	if (!strcmp(type, "staff.absence.registered") || !strcmp(type, "staff.holiday.registered"))
		return s_staff_absence(ctx, d, msg);
	if (!strcmp(type, "staff.absence.cancelled"))
		return s_staff_cancel(ctx, d, msg);
	if (!strcmp(type, "child.absence.reported"))
		return s_child_absence(ctx, d, msg);
	if (!strcmp(type, "child.absence.withdrawn"))
		return s_child_withdrawn(ctx, d, msg);
	if (!strcmp(type, "child.pickup.planned"))
		return s_day_event(ctx, d, msg, "pickup");
	if (!strcmp(type, "child.checkin"))
		return s_day_event(ctx, d, msg, "checkin");
	if (!strcmp(type, "child.checkout"))
		return s_day_event(ctx, d, msg, "checkout");
	if (!strcmp(type, "child.vacation.registered"))
		return s_vacation(ctx, d, msg);
	if (!strcmp(type, "child.report.confirmed"))
		return confirm_deliver(ctx, d, msg);
	kanal_set_error(ctx,
			"daycare: cannot handle events of type '%s' (instance '%s' accepts "
			"daycare.notice.post, staff.absence.registered, staff.holiday.registered, "
			"staff.absence.cancelled, child.absence.reported, child.absence.withdrawn, "
			"child.pickup.planned, child.checkin, child.checkout, "
			"child.vacation.registered and child.report.confirmed)",
			type, d->instance);
	return KANAL_OUTCOME_REJECT;
}

kanal_outcome_t deliver_message(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg)
{
	kanal_outcome_t outcome;

	d->refusal[0] = '\0';
	outcome = s_deliver_type(ctx, d, msg);
	/* A refusal before any call (a field missing, a date malformed) is the report's own. */
	if (outcome == KANAL_OUTCOME_REJECT && !d->refusal[0])
		snprintf(d->refusal, sizeof d->refusal,
			 "the report lacks a field the daycare system needs, or has one malformed");
	return confirm_report(ctx, d, msg, outcome);
}
