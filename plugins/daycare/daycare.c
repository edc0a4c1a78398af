/*
 * plugins/daycare/daycare.c — the `daycare` connector: kanal's link to a municipality's
 * daycare system (the parents' app and the institutions' portal). As a source it polls the
 * system's registrations — sick reports, holidays, pickup plans, check-ins, survey answers —
 * and emits them as child.* events (poll.c); as a destination it posts notices to an
 * institution's parents and keeps the institution's staffing view in step with absences
 * of children and staff (deliver.c). One instance may be either or both (option `role`).
 *
 * This file holds the options table, the descriptor and the lifecycle: init reads and
 * checks the options (the token, the pseudonym key) and makes the HTTP client; start reads
 * the persisted cursor and schedules the first poll; stop cancels it. Every callback runs
 * on the instance's own thread, so the parts share daycare_t without locks.
 */
#include "daycare.h"
#include "../common/kc_check.h"
#include "../common/kc_files.h"
#include "../common/kc_url.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const s_roles[] = { "source", "destination", "both", NULL };

static const kanal_option_t s_options[] = {
	{ .name = "base_url",
	  .type = KANAL_OPT_STRING,
	  .required = true,
	  KANAL_OPT_AT(daycare_t, base_url_option),
	  .help = "The daycare system's API root, e.g. https://daycare.example.dk (the connector "
		  "adds "
		  "/api/v1/...)." },
	{ .name = "role",
	  .type = KANAL_OPT_STRING,
	  .default_value = "both",
	  .allowed = s_roles,
	  KANAL_OPT_AT(daycare_t, role),
	  .help = "source (poll registrations), destination (accept notices and staffing updates) "
		  "or "
		  "both." },
	KC_HTTP_OPT_TOKEN(daycare_t, http_conf),
	{ .name = "user",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(daycare_t, http_conf.user),
	  .help = "User name for basic auth, instead of a token (with password_file)." },
	KC_HTTP_OPT_PASSWORD_FILE(daycare_t, http_conf),
	KC_HTTP_OPT_CA_FILE(daycare_t, http_conf),
	KC_HTTP_OPT_TIMEOUT(daycare_t, http_conf, "5s",
			    "The longest one HTTP call to the daycare system may take."),
	{ .name = "poll_interval",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "5s",
	  .min = "1ms",
	  KANAL_OPT_AT(daycare_t, poll_interval_ms),
	  .help = "Time between two polls of the registrations." },
	{ .name = "max_backoff",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "5m",
	  KANAL_OPT_AT(daycare_t, max_backoff_ms),
	  .help = "Longest wait between polls while the daycare system fails (the wait doubles "
		  "from "
		  "poll_interval)." },
	{ .name = "page_size",
	  .type = KANAL_OPT_INT,
	  .default_value = "100",
	  .min = "1",
	  .max = "500",
	  KANAL_OPT_AT(daycare_t, page_size),
	  .help = "Registrations asked for per request (1-500)." },
	{ .name = "pseudonym_key",
	  .type = KANAL_OPT_PATH,
	  .help = "Key file (mode 0600) for the child's pseudonym in the events' subject; without "
		  "it "
		  "events carry no subject." },
	{ .name = "staff_notice_title",
	  .type = KANAL_OPT_STRING,
	  .default_value = "Personale",
	  KANAL_OPT_AT(daycare_t, notice_title),
	  .help = "Title of the notice to parents when a staff member is absent." },
	{ .name = "staff_notice_text",
	  .type = KANAL_OPT_STRING,
	  .default_value = "En medarbejder er fraværende i dag. Vi har styr på dagen.",
	  KANAL_OPT_AT(daycare_t, notice_text),
	  .help = "Text of that notice: neutral, never the reason, a name or a CPR number." },
	{ .name = "notice_codes",
	  .type = KANAL_OPT_LIST,
	  .default_value = "[SYG]",
	  .help = "Absence codes of staff.absence.registered that also post the notice to parents "
		  "(every "
		  "code updates the staffing view)." },
	{ .name = "report_confirmations",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "true",
	  KANAL_OPT_AT(daycare_t, confirm_reports),
	  .help = "Emit child.report.confirmed for each parent's report this destination takes "
		  "(confirmed) or refuses for good (failed), for the parents' app." },
	KC_URL_OPT_ALLOW_PLAIN_HTTP(daycare_t, http_conf.allow_plain_http),
	{ .name = NULL },
};

static void s_destroy(void *state)
{
	daycare_t *d = state;

	if (!d)
		return;
	kc_http_destroy(&d->http);
	kc_http_conf_clear(&d->http_conf);
	kanal_pseudonym_key_destroy(&d->key);
	free(d->base_url);
	free(d->cursor);
	free(d);
}

/* Derives the role and the URL from the bound options and checks what the table cannot:
 * the URL (kc_url_check's rule), max_backoff against poll_interval, non-empty notice texts. Returns 0
 * or KANAL_ECONFIG after kanal_set_error. */
static int s_load_basics(kanal_ctx_t *ctx, daycare_t *d)
{
	const char *url = d->base_url_option;
	size_t n;

	/* role is one of s_roles: the table checked it. */
	d->source = strcmp(d->role, "destination") != 0;
	d->destination = strcmp(d->role, "source") != 0;
	if (kc_url_check_option(ctx, "base_url", url, d->http_conf.allow_plain_http) != 0)
		return KANAL_ECONFIG;
	if (!(d->base_url = strdup(url)))
		return KANAL_ENOMEM;
	n = strlen(d->base_url);
	while (n > 8 && d->base_url[n - 1] == '/')
		d->base_url[--n] = '\0';
	if (d->max_backoff_ms < d->poll_interval_ms) {
		kanal_set_error(ctx,
				"option 'max_backoff' (%" PRId64 " ms) must not be shorter than "
				"'poll_interval' (%" PRId64 " ms)",
				d->max_backoff_ms, d->poll_interval_ms);
		return KANAL_ECONFIG;
	}
	if (!*d->notice_title || !*d->notice_text) {
		kanal_set_error(ctx,
				"options 'staff_notice_title' and 'staff_notice_text' must not "
				"be empty");
		return KANAL_ECONFIG;
	}
	return 0;
}

/* Checks that exactly one kind of credentials is given and makes the HTTP client. */
static int s_load_http(kanal_ctx_t *ctx, daycare_t *d)
{
	kc_http_conf_t *c = &d->http_conf;
	kc_http_opts_t o;
	int given = !!c->token + !!c->token_file + !!c->user;

	if (given != 1) {
		kanal_set_error(ctx,
				"give exactly one of the options 'token', 'token_file' and "
				"'user' (with 'password_file'): the daycare API needs credentials");
		return KANAL_ECONFIG;
	}
	if (c->user && !c->password_file) {
		kanal_set_error(ctx, "option 'user' needs 'password_file'");
		return KANAL_ECONFIG;
	}
	if (kc_http_conf_open(ctx, c, &o) != 0)
		return KANAL_ECONFIG;
	d->http = kc_http_new(&o);
	kc_http_conf_clear(c);
	if (!d->http) {
		kanal_set_error(ctx, "cannot make the HTTP client: out of memory");
		return KANAL_ENOMEM;
	}
	return 0;
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	daycare_t *d = calloc(1, sizeof *d);
	const char *key = kanal_config_string(cfg, "pseudonym_key");
	kanal_error_t key_err;
	int rc;

	if (!d) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	kanal_config_bind(cfg, d);
	d->instance = kanal_instance_name(ctx);
	d->cfg = cfg;
	rc = s_load_basics(ctx, d);
	if (rc == 0)
		rc = s_load_http(ctx, d);
	kanal_error_clear(&key_err);
	if (rc == 0 && key && (rc = kanal_pseudonym_key_load(key, &d->key, &key_err)) != 0)
		kanal_set_error(ctx, "option 'pseudonym_key': %s", key_err.text);
	if (rc != 0) {
		s_destroy(d);
		return rc;
	}
	*state = d;
	return 0;
}

/* init validates, reads the secret files and the pseudonym key and allocates — nothing is
 * created, nothing connects — so check is init and destroy (kc_check.h). */
KC_CHECK_BY_INIT(s_init, s_destroy)

static int s_start(kanal_ctx_t *ctx, void *state)
{
	daycare_t *d = state;
	int rc;

	kanal_metric_add(ctx, "polls", 0);
	kanal_metric_add(ctx, "emitted", 0);
	kanal_metric_add(ctx, "skipped", 0);
	kanal_metric_add(ctx, "upstream_errors", 0);
	if (!d->source) {
		kanal_log(ctx, KANAL_LOG_INFO, "destination for %s", d->base_url);
		return 0;
	}
	d->stopped = false; /* started again: a singleton that took its lease back */
	rc = poll_load_cursor(ctx, d);
	if (rc == 0)
		rc = poll_schedule(ctx, d, 0);
	if (rc == 0)
		kanal_log(ctx, KANAL_LOG_INFO, "polling %s%s every %" PRId64 " ms from cursor %s%s",
			  d->base_url, DAYCARE_REGISTRATIONS, d->poll_interval_ms,
			  d->cursor ? d->cursor : "(the beginning)",
			  d->destination ? "; also a destination" : "");
	return rc;
}

static void s_stop(kanal_ctx_t *ctx, void *state, int64_t deadline_ms)
{
	daycare_t *d = state;

	(void)deadline_ms;
	d->stopped = true;
	if (d->timer > 0)
		kanal_timer_cancel(ctx, d->timer);
	d->timer = 0;
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	daycare_t *d = state;

	if (!d->destination) {
		kanal_set_error(ctx,
				"instance '%s' has role 'source' and accepts no events; give it "
				"role 'destination' or 'both', or route %s elsewhere",
				d->instance, kanal_msg_type(msg));
		return KANAL_OUTCOME_REJECT;
	}
	return deliver_message(ctx, d, msg);
}

char *daycare_url(const daycare_t *d, const char *path, const char *arg)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t cap = strlen(d->base_url) + strlen(path) + (arg ? strlen(arg) * 3 : 0) + 1;
	char *url = malloc(cap), *o;
	const char *mark = strstr(path, "%s");

	if (!url)
		return NULL;
	o = url + sprintf(url, "%s%.*s", d->base_url,
			  (int)(mark && arg ? mark - path : (long)strlen(path)), path);
	if (mark && arg) {
		for (const unsigned char *p = (const unsigned char *)arg; *p; p++) {
			if (isalnum(*p) || strchr("-._~", *p)) {
				*o++ = (char)*p;
			} else {
				*o++ = '%';
				*o++ = hex[*p >> 4];
				*o++ = hex[*p & 15];
			}
		}
		strcpy(o, mark + 2);
	}
	return url;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "daycare",
	.version = KANAL_VERSION,
	.description = "The daycare system: parents' registrations in as child.* events; notices "
		       "to parents and the staffing view out.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.stop = s_stop,
	.destroy = s_destroy,
	.check = s_check,
};
