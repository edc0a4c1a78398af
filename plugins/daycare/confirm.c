/*
 * plugins/daycare/confirm.c — parents' reports get a confirmation. A report a parent makes
 * in the parents' app (a child sick or away, its withdrawal, a pickup plan, a holiday-survey
 * answer) reaches kanal as a child.* event polled from the daycare system; once this
 * connector's delivery of it ends — the daycare system took it (OK), or refused it for good
 * (REJECT: the report goes to the dead letters) — the connector emits the report's one
 * final child.report.confirmed, `confirmed` or `failed` with the reason. The shipped route
 * `report-confirmation-to-parents-app` brings it back to this connector, which posts it to
 * the parents' app (POST /api/v1/registrations/<registration>/confirmations).
 *
 * This is the letters' mechanism (plugins/letter emits the final `failed` of a letter it
 * refuses): the destination that knows the outcome says it, at the end of the chain. The
 * confirmation's id is derived from the report's, so a redelivered report's second
 * confirmation is a duplicate the bus drops; it carries no CPR number, only the daycare
 * system's ids and the report's pseudonymous subject.
 */
#include "daycare.h"
#include "../common/kc_status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIRMATIONS_PATH DAYCARE_REGISTRATIONS "/%s/confirmations"

/* The parents' report types and what the daycare system did with each, for the parents. */
static const struct {
	const char *type, *done;
} s_reports[] = {
	{ "child.absence.reported", "the institution's staffing view has the absence" },
	{ "child.absence.withdrawn", "the institution's staffing view has the withdrawal" },
	{ "child.pickup.planned", "the institution's day overview has the pickup" },
	{ "child.vacation.registered", "the institution's staffing plan has the answer" },
};

static const char *s_done_text(const char *type)
{
	for (size_t i = 0; i < sizeof s_reports / sizeof s_reports[0]; i++)
		if (!strcmp(s_reports[i].type, type))
			return s_reports[i].done;
	return NULL;
}

bool confirm_is_report(const char *type)
{
	return s_done_text(type) != NULL;
}

/* Copies data.<field> of msg into out when msg has it as a string; returns 0 or a code. */
static int s_copy_str(kanal_msg_t *out, const kanal_msg_t *msg, const char *field)
{
	const char *v = NULL;

	if (kanal_msg_data_str(msg, field, &v) != 0 || !v)
		return 0;
	return kanal_msg_data_set_str(out, field, v);
}

/* The confirmation of report msg: `confirmed` (ok) or `failed` with reason. Returns a new
 * message, or NULL when out of memory. */
static kanal_msg_t *s_confirmation(kanal_ctx_t *ctx, const kanal_msg_t *msg, bool ok,
				   const char *reason)
{
	const char *subject = kanal_msg_attr(msg, "subject");
	kanal_msg_t *out =
		kc_status_new(ctx, "child.report.confirmed", msg, ok ? "-confirmed" : "-failed");

	if (!out)
		return NULL;
	if ((subject && kanal_msg_set_attr(out, "subject", subject, NULL) != 0) ||
	    kanal_msg_data_set_str(out, "report", kanal_msg_id(msg)) != 0 ||
	    kanal_msg_data_set_str(out, "report_type", kanal_msg_type(msg)) != 0 ||
	    kanal_msg_data_set_str(out, "report_source", kanal_msg_source(msg)) != 0 ||
	    s_copy_str(out, msg, "registration") != 0 || s_copy_str(out, msg, "institution") != 0 ||
	    s_copy_str(out, msg, "child") != 0 || s_copy_str(out, msg, "reported_by") != 0 ||
	    kanal_msg_data_set_str(out, "status", ok ? "confirmed" : "failed") != 0 ||
	    kanal_msg_data_set_bool(out, "final", true) != 0 ||
	    kanal_msg_data_set_str(out, "reason", reason) != 0)
		kanal_msg_destroy(&out);
	return out;
}

/* Emits the confirmation, waiting a little (bounded) while the bus is busy. Returns 0 when
 * the bus took it (or already had it), else the last kanal_emit code. */
static int s_emit(kanal_ctx_t *ctx, const kanal_msg_t *msg, bool ok, const char *reason)
{
	kanal_msg_t *c = s_confirmation(ctx, msg, ok, reason);

	return c ? kc_status_emit(ctx, &c) : KANAL_ENOMEM;
}

kanal_outcome_t confirm_report(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg,
			       kanal_outcome_t outcome)
{
	const char *reg = NULL;
	bool ok = outcome == KANAL_OUTCOME_OK;
	int rc;

	/* Only a report that came from the parents' app (it names its registration) has
	 * someone to confirm to; a RETRY is not an outcome yet. */
	if (!d->confirm_reports || outcome == KANAL_OUTCOME_RETRY ||
	    !confirm_is_report(kanal_msg_type(msg)) ||
	    kanal_msg_data_str(msg, "registration", &reg) != 0 || !reg || !*reg)
		return outcome;
	rc = s_emit(
		ctx, msg, ok,
		ok ? s_done_text(kanal_msg_type(msg))
		   : (*d->refusal ? d->refusal : "the daycare system could not take the report"));
	if (rc == 0)
		return outcome;
	if (ok && rc != KANAL_EINVALID && rc != KANAL_ETOOBIG) {
		/* The daycare system has the report, but the parent must hear so: a retry posts
		 * it again under the same Idempotency-Key (no second entry) and confirms then. */
		kanal_set_error(
			ctx, "daycare: %s %s taken, but its confirmation could not be emitted: %s",
			kanal_msg_type(msg), kanal_msg_id(msg), kanal_strerror(rc));
		kanal_set_retry_after(ctx, 1000);
		return KANAL_OUTCOME_RETRY;
	}
	kanal_log(ctx, KANAL_LOG_ERROR, "%s %s: its %s confirmation could not be emitted: %s",
		  kanal_msg_type(msg), kanal_msg_id(msg), ok ? "confirmed" : "failed",
		  kanal_strerror(rc));
	return outcome;
}

kanal_outcome_t confirm_deliver(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg)
{
	static const char *const fields[] = { "report", "report_type", "status", "reason" };
	const char *reg = NULL, *v;
	json_t *body = json_object();
	bool final = false;

	if (kanal_msg_data_str(msg, "registration", &reg) != 0 || !reg || !*reg) {
		json_decref(body);
		kanal_set_error(ctx,
				"daycare: %s %s has no data.registration (the report's id in "
				"the daycare system)",
				kanal_msg_type(msg), kanal_msg_id(msg));
		return KANAL_OUTCOME_REJECT;
	}
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
		if (kanal_msg_data_str(msg, fields[i], &v) == 0 && v)
			json_object_set_new(body, fields[i], json_string(v));
	if (kanal_msg_data_bool(msg, "final", &final) == 0)
		json_object_set_new(body, "final", json_boolean(final));
	json_object_set_new(body, "source_event", json_string(kanal_msg_id(msg)));
	return deliver_post(ctx, d, msg, CONFIRMATIONS_PATH, reg, "confirmation", body);
}
