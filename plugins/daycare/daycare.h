/*
 * plugins/daycare/daycare.h — the private interfaces between the parts of the `daycare`
 * connector: the instance's state and options (daycare.c, which also holds the descriptor
 * and the lifecycle), the source that polls the daycare system's registrations and turns
 * them into child.* events (poll.c), and the destination that posts notices and staffing
 * entries to it (deliver.c).
 *
 * Nothing here is exported from the .so (it is built with hidden visibility).
 */
#ifndef KANAL_PLUGIN_DAYCARE_H
#define KANAL_PLUGIN_DAYCARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <kanal/kanal.h>

#include "../common/kc_http.h"

/* The upstream API's paths (relative to option base_url). */
#define DAYCARE_REGISTRATIONS "/api/v1/registrations"
#define DAYCARE_INSTITUTIONS "/api/v1/institutions"

/* The name of the cursor file in the instance's state folder. */
#define DAYCARE_CURSOR_FILE "cursor"

typedef struct daycare {
	const char *instance;        /* borrowed from the ctx */
	bool source;                 /* polls registrations */
	bool destination;            /* accepts deliveries */
	const char *role;            /* option role, borrowed from the config */
	const char *base_url_option; /* option base_url as given, borrowed */
	char *base_url;              /* without a trailing '/' */
	kc_http_t *http;
	kc_http_conf_t http_conf; /* token(_file), user, password_file, ca_file, timeout,
				    * allow_plain_http: bound options */
	int64_t poll_interval_ms;
	int64_t max_backoff_ms;
	int64_t page_size;
	kanal_pseudonym_key_t *key; /* NULL: events carry no subject */
	const char *notice_title;   /* borrowed from the config */
	const char *notice_text;
	const kanal_config_t *cfg; /* for the notice_codes list */
	bool confirm_reports;      /* option report_confirmations */
	char refusal[300];         /* why the delivery being handled was refused, for the
				    * parents: no personal data (deliver.c) */

	/* The source's run. */
	char *cursor;       /* the last cursor persisted; NULL: from the beginning */
	int64_t timer;      /* the pending poll timer, 0 when none */
	int64_t backoff_ms; /* 0 while the upstream answers */
	int64_t errors_in_row;
	bool stopped;
} daycare_t;

/* poll.c: schedules the first poll (after_ms from now). Returns 0 or a negative code. */
int poll_schedule(kanal_ctx_t *ctx, daycare_t *d, int64_t after_ms);

/* poll.c: reads the persisted cursor into d->cursor (none is fine). Returns 0 or a
 * negative code after kanal_set_error. */
int poll_load_cursor(kanal_ctx_t *ctx, daycare_t *d);
/* Maps one registration (an element of the API's "registrations" array) to its event.
 * Returns a new message, or NULL with why filled in when the registration is malformed (why
 * never holds the child's CPR number). Also the daycare fuzz target's entry
 * (tests/fuzz/fuzz_daycare.c). */
kanal_msg_t *poll_map_registration(const daycare_t *d, const json_t *reg, char *why, size_t size);

/* deliver.c: handles one delivery (see docs/plugins/daycare.md for the types). A parent's
 * report (confirm.c) ends with its confirmation emitted. */
kanal_outcome_t deliver_message(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg);

/* confirm.c: true for the types a parent reports through the parents' app. */
bool confirm_is_report(const char *type);

/* confirm.c: after the delivery of a parent's report `msg` ended in `outcome` (OK, or
 * REJECT: the report goes to the dead letters), emits its one final child.report.confirmed
 * (`confirmed`, or `failed` with d->refusal as the reason). Returns the outcome to answer:
 * `outcome`, or RETRY when the bus did not take the confirmation of a report the daycare
 * system took (the retry posts the report again under the same Idempotency-Key). */
kanal_outcome_t confirm_report(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg,
			       kanal_outcome_t outcome);

/* confirm.c: delivers a child.report.confirmed to the parents' app: POST
 * /api/v1/registrations/<registration>/confirmations. */
kanal_outcome_t confirm_deliver(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg);

/* deliver.c: POSTs body (stolen) to path, "%s" in it replaced by arg, with an
 * Idempotency-Key made of the event's source, id and purpose; returns the outcome. */
kanal_outcome_t deliver_post(kanal_ctx_t *ctx, daycare_t *d, const kanal_msg_t *msg,
			     const char *path, const char *arg, const char *purpose, json_t *body);

/* deliver.c / poll.c: "<base_url><path>" with each placeholder "%s" in path replaced by the
 * percent-encoded arg (at most one). Returns a malloc'd URL or NULL. */
char *daycare_url(const daycare_t *d, const char *path, const char *arg);

#endif
