/*
 * plugins/digitalpost/digitalpost.c — the Digital Post connector: a destination for
 * `post.letter.send` that turns each letter into a MeMo message and sends it to the
 * Digital Post service, the digital first channel of the municipal channel strategy.
 *
 * For each letter it decides, in this order:
 *   1. what the route's CPR lookup (data.recipient) says: not enrolled in Digital Post, or
 *      not an active person → REJECT "not-enrolled: …" at once, without calling the
 *      service, so the route's fallback (the physical letter) takes over;
 *   2. whether the letter is valid (recipient CPR, label, document file name, language,
 *      base64 content, media type, action code and https URL, sender) → an invalid letter
 *      is a REJECT naming the field, since sending it again could never succeed;
 *   3. the service's answer: 2xx → OK and a post.letter.status "sent" with the service's
 *      transaction id; a recipient without a mailbox (not-enrolled, exempt, under-15,
 *      deceased, emigrated, unknown-recipient) → REJECT "not-enrolled: <reason>"; any other
 *      refusal of the letter → REJECT; no answer, a garbled answer, 408/425/429/5xx, and
 *      answers that say kanal's own setup is wrong (401, 403, 404, 405, 415) → RETRY.
 *
 * Every REJECT also emits a post.letter.status "failed" with the reason, so the letter log
 * shows why the digital channel did not carry a letter. The messageUUID is a name-based
 * UUID of the event's source and id: a redelivery (after a timeout, a crash, a RETRY) is
 * the same letter to the service, which answers with the first transaction instead of
 * delivering a second letter. No CPR number goes into a log line, an error or an emitted
 * event; the status's subject is the recipient's pseudonym when `pseudonym_key` is given.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libxml/parser.h>

#include <kanal/kanal.h>

#include "../common/kc_http.h"
#include "../common/kc_url.h"
#include "memo.h"

#define DP_DEFAULT_PATH "/digitalpost/v1/messages"
#define DP_MAX_TOKEN 4096
#define DP_EMIT_BUSY_RETRY_MS 1000

typedef struct dp {
	/* Bound options (s_options), borrowed from the config. */
	const char *base_url, *path, *key_path;
	const char *sender_cvr;
	const char *sender_label;
	const char *channel;          /* "Digital Post" or "NemSMS" */
	const char *language;
	kc_http_conf_t http_conf;     /* token(_file), ca_file, client_cert/key, timeout */

	char *url;                    /* base_url + path */
	kc_http_t *http;
	const char *message_type;     /* "DIGITALPOST" or "NEMSMS" */
	const char *status_channel;   /* "digital" or "nemsms" */
	kanal_pseudonym_key_t *key;   /* NULL: no pseudonyms */
} dp_t;

static const char *const s_channels[] = { "Digital Post", "NemSMS", NULL };

static const kanal_option_t s_options[] = {
	{ .name = "base_url", .type = KANAL_OPT_STRING, .required = true,
	  KANAL_OPT_AT(dp_t, base_url),
	  .help = "The Digital Post service's base URL, e.g. https://digitalpost.example.dk (plain http "
		  "only to 127.0.0.0/8, [::1] or localhost: the simulator)." },
	{ .name = "path", .type = KANAL_OPT_STRING, .default_value = DP_DEFAULT_PATH,
	  KANAL_OPT_AT(dp_t, path),
	  .help = "The send endpoint's path below base_url." },
	{ .name = "sender_cvr", .type = KANAL_OPT_STRING, .required = true,
	  KANAL_OPT_AT(dp_t, sender_cvr),
	  .help = "The sending authority's CVR number (8 digits): MessageHeader/Sender/senderID." },
	{ .name = "sender_label", .type = KANAL_OPT_STRING, .required = true,
	  KANAL_OPT_AT(dp_t, sender_label),
	  .help = "The sender's name as the citizen sees it, e.g. \"Aarhus Kommune\"." },
	{ .name = "channel", .type = KANAL_OPT_STRING, .default_value = "Digital Post",
	  .allowed = s_channels, KANAL_OPT_AT(dp_t, channel),
	  .help = "The channel code of the send request: \"Digital Post\" or \"NemSMS\" (physical "
		  "letters go by the letter connector)." },
	{ .name = "language", .type = KANAL_OPT_STRING, .default_value = "da",
	  KANAL_OPT_AT(dp_t, language),
	  .help = "The document language (ISO 639-1) when a letter gives none." },
	KC_HTTP_OPT_TOKEN(dp_t, http_conf),
	KC_HTTP_OPT_CA_FILE(dp_t, http_conf),
	KC_HTTP_OPT_CLIENT_CERT(dp_t, http_conf),
	KC_HTTP_OPT_TIMEOUT(dp_t, http_conf, "5s",
			    "Longest wait for the service's answer to one letter; then RETRY."),
	{ .name = "pseudonym_key", .type = KANAL_OPT_PATH, KANAL_OPT_AT(dp_t, key_path),
	  .help = "Key file (0600) for the recipient's pseudonym in the status event's subject." },
	KC_URL_OPT_ALLOW_PLAIN_HTTP(dp_t, http_conf.allow_plain_http),
	{ .name = NULL },
};

/* What became of one letter, for the status event and the outcome. */
typedef struct dp_result {
	kanal_outcome_t outcome;
	char error[512];              /* the REJECT or RETRY reason */
	char transaction[129];        /* from the service, on OK */
	bool duplicate;
} dp_result_t;

/* ---- configuration ----------------------------------------------------------------------- */

static void s_destroy(void *state)
{
	dp_t *dp = state;

	if (!dp)
		return;
	kc_http_destroy(&dp->http);
	kanal_pseudonym_key_destroy(&dp->key);
	kc_http_conf_clear(&dp->http_conf);
	free(dp->url);
	free(dp);
}

/* The table checked each option alone (the channel among them); init checks what it cannot
 * say: base_url by kc_url_check's rule (letters carry CPR numbers and documents: plain http
 * only to this machine, the simulator, unless allow_plain_http), the path, the CVR number,
 * the label, the language code and the token options together. */
static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	char why[256];
	kanal_error_t key_err;
	kc_http_opts_t o;
	dp_t *dp = calloc(1, sizeof *dp);
	size_t blen;
	int rc = KANAL_ECONFIG;

	if (!dp)
		return KANAL_ENOMEM;
	/* libxml2 2.9 wants its globals set up before threads use it; idempotent. */
	xmlInitParser();
	kanal_config_bind(cfg, dp);
	if (kc_url_check_option(ctx, "base_url", dp->base_url, dp->http_conf.allow_plain_http) != 0)
		goto fail;
	if (!dp->path || dp->path[0] != '/') {
		kanal_set_error(ctx, "digitalpost: path '%s' must start with '/'",
				dp->path ? dp->path : "");
		goto fail;
	}
	if (!dp_check_cvr(dp->sender_cvr)) {
		kanal_set_error(ctx, "digitalpost: sender_cvr '%s' is not a CVR number (8 digits)",
				dp->sender_cvr);
		goto fail;
	}
	if (!dp_check_text(dp->sender_label, DP_MAX_LABEL, why, sizeof why)) {
		kanal_set_error(ctx, "digitalpost: sender_label: %s", why);
		goto fail;
	}
	if (!strcmp(dp->channel, "NemSMS")) {
		dp->message_type = "NEMSMS";
		dp->status_channel = "nemsms";
	} else {
		dp->message_type = "DIGITALPOST";
		dp->status_channel = "digital";
	}
	if (strlen(dp->language) != 2 || dp->language[0] < 'a' || dp->language[0] > 'z' ||
	    dp->language[1] < 'a' || dp->language[1] > 'z') {
		kanal_set_error(ctx, "digitalpost: language '%s' is not an ISO 639-1 code like da",
				dp->language);
		goto fail;
	}
	if ((rc = kc_http_conf_open(ctx, &dp->http_conf, &o)) != 0)
		goto fail;
	rc = KANAL_ECONFIG;
	kanal_error_clear(&key_err);
	if (dp->key_path && kanal_pseudonym_key_load(dp->key_path, &dp->key, &key_err) != 0) {
		kanal_set_error(ctx, "digitalpost: pseudonym_key: %s", key_err.text);
		goto fail;
	}
	blen = strlen(dp->base_url);
	while (blen > 0 && dp->base_url[blen - 1] == '/')
		blen--;
	if (asprintf(&dp->url, "%.*s%s", (int)blen, dp->base_url, dp->path) < 0) {
		dp->url = NULL;
		rc = KANAL_ENOMEM;
		goto fail;
	}
	o.max_body = 1u << 20;
	if (!(dp->http = kc_http_new(&o))) {
		rc = KANAL_ENOMEM;
		goto fail;
	}
	kc_http_conf_clear(&dp->http_conf);
	*state = dp;
	return 0;
fail:
	s_destroy(dp);
	return rc;
}

/* ---- the status event -------------------------------------------------------------------- */

/* Emits post.letter.status about letter msg: status "sent" or "failed", the reason (CPR
 * numbers masked), and the transaction when sent. Returns kanal_emit's result. */
static int s_emit_status(kanal_ctx_t *ctx, const dp_t *dp, const kanal_msg_t *msg,
			 const char *uuid, const char *cpr, const char *status, const char *reason,
			 const char *transaction)
{
	char id[96], pseudonym[KANAL_PSEUDONYM_SIZE];
	const char *corr = kanal_msg_attr(msg, "correlationid");
	const char *trace = kanal_msg_attr(msg, "traceparent");
	const char *subject = kanal_msg_subject(msg);
	char *safe_reason = kanal_cpr_redact(reason, strlen(reason));
	json_t *data;
	char *text;
	kanal_msg_t *st;
	int rc = KANAL_ENOMEM;

	snprintf(id, sizeof id, "dp-%s-%s", uuid, status);
	st = kanal_msg_new("post.letter.status", kanal_instance_name(ctx), id);
	data = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "letter", kanal_msg_id(msg),
			 "letter_source", kanal_msg_source(msg), "channel", dp->status_channel,
			 "status", status, "reason", safe_reason ? safe_reason : "(out of memory)",
			 "message_uuid", uuid);
	kanal_free(safe_reason);
	if (data && transaction)
		json_object_set_new(data, "transaction", json_string(transaction));
	text = data ? json_dumps(data, JSON_COMPACT) : NULL;
	json_decref(data);
	if (!st || !text)
		goto done;
	/* The subject: the recipient's pseudonym, else the letter's own (already checked by
	 * the bus to hold no CPR number). */
	if (dp->key && cpr && kanal_cpr_pseudonym(dp->key, cpr, pseudonym, sizeof pseudonym) == 0)
		subject = pseudonym;
	if ((subject && kanal_msg_set_attr(st, "subject", subject, NULL) != 0) ||
	    kanal_msg_set_attr(st, "causationid", kanal_msg_id(msg), NULL) != 0 ||
	    kanal_msg_set_attr(st, "correlationid", corr ? corr : kanal_msg_id(msg), NULL) != 0 ||
	    (trace && kanal_msg_set_attr(st, "traceparent", trace, NULL) != 0) ||
	    kanal_msg_set_attr(st, "datacontenttype", "application/json", NULL) != 0) {
		rc = KANAL_EINVALID;
		goto done;
	}
	if ((rc = kanal_msg_set_data_json(st, text, strlen(text))) != 0)
		goto done;
	rc = kanal_emit(ctx, &st);
done:
	free(text);
	kanal_msg_destroy(&st);
	return rc;
}

/* ---- checking the letter ----------------------------------------------------------------- */

/* Reads the optional string data.<path> into *out. Returns false with r->error set when it
 * is there but not a string. */
static bool s_opt_str(const kanal_msg_t *msg, const char *path, const char **out, dp_result_t *r)
{
	int rc = kanal_msg_data_str(msg, path, out);

	if (rc == KANAL_ENOTFOUND) {
		*out = NULL;
		return true;
	}
	if (rc != 0) {
		snprintf(r->error, sizeof r->error, "invalid letter: %s: not a string", path);
		return false;
	}
	return true;
}

/* Sets r to REJECT "invalid letter: <field>: <why>" and returns false. */
static bool s_invalid(dp_result_t *r, const char *field, const char *why)
{
	r->outcome = KANAL_OUTCOME_REJECT;
	snprintf(r->error, sizeof r->error, "invalid letter: %s: %s", field, why);
	return false;
}

/* Reads and checks everything but the recipient into l (strings borrowed from msg). Returns
 * true, or false with r set to REJECT naming the field. */
static bool s_read_letter(const dp_t *dp, const kanal_msg_t *msg, dp_letter_t *l, dp_result_t *r)
{
	const char *v, *cvr;
	char why[160];
	char *json;

	r->outcome = KANAL_OUTCOME_REJECT;
	if (!s_opt_str(msg, "label", &l->label, r))
		return false;
	if (!l->label)
		return s_invalid(r, "label", "missing");
	if (!dp_check_text(l->label, DP_MAX_LABEL, why, sizeof why))
		return s_invalid(r, "label", why);

	/* The sender: the instance's CVR; a letter may name its department (sender.label, or
	 * sender as a string), but never send on behalf of another CVR number. */
	l->sender_cvr = dp->sender_cvr;
	l->sender_label = dp->sender_label;
	if (kanal_msg_data_str(msg, "sender", &v) == 0) {
		l->sender_label = v;
	} else {
		if (!s_opt_str(msg, "sender.label", &v, r))
			return false;
		if (v)
			l->sender_label = v;
		if (!s_opt_str(msg, "sender.cvr", &cvr, r))
			return false;
		if (cvr && strcmp(cvr, dp->sender_cvr))
			return s_invalid(r, "sender.cvr",
					 "differs from this instance's sender_cvr; one digitalpost "
					 "instance sends for one authority");
	}
	if (!dp_check_text(l->sender_label, DP_MAX_LABEL, why, sizeof why))
		return s_invalid(r, "sender.label", why);

	if (!(json = kanal_msg_data_json(msg, "document")))
		return s_invalid(r, "document", "missing");
	kanal_free(json);
	if (!s_opt_str(msg, "document.filename", &l->filename, r) ||
	    !s_opt_str(msg, "document.language", &l->language, r) ||
	    !s_opt_str(msg, "document.content", &l->content, r) ||
	    !s_opt_str(msg, "document.mimetype", &l->mimetype, r))
		return false;
	if (!l->filename)
		return s_invalid(r, "document.filename", "missing");
	if (!dp_check_filename(l->filename, why, sizeof why))
		return s_invalid(r, "document.filename", why);
	if (!l->language)
		l->language = dp->language;
	if (strlen(l->language) != 2 || l->language[0] < 'a' || l->language[0] > 'z' ||
	    l->language[1] < 'a' || l->language[1] > 'z')
		return s_invalid(r, "document.language", "not an ISO 639-1 code like da or en");
	if (!l->content)
		return s_invalid(r, "document.content", "missing");
	if (!dp_check_base64(l->content, why, sizeof why))
		return s_invalid(r, "document.content", why);
	if (!l->mimetype)
		l->mimetype = dp_mimetype_for(l->filename);
	if (!dp_check_text(l->mimetype, 255, why, sizeof why) || !strchr(l->mimetype, '/') ||
	    strchr(l->mimetype, ' '))
		return s_invalid(r, "document.mimetype", "not a media type like application/pdf");

	if ((json = kanal_msg_data_json(msg, "action"))) {
		kanal_free(json);
		if (!s_opt_str(msg, "action.code", &l->action_code, r) ||
		    !s_opt_str(msg, "action.url", &l->action_url, r) ||
		    !s_opt_str(msg, "action.label", &l->action_label, r))
			return false;
		if (!l->action_code)
			return s_invalid(r, "action.code", "missing");
		if (!dp_check_action_code(l->action_code))
			return s_invalid(r, "action.code",
					 "not a MeMo action code (AFTALE, BETALING, SELVBETJENING, "
					 "INFORMATION, UNDERSKRIV, BEKRAEFT, FORBEREDELSE, "
					 "TILMELDING)");
		if (!l->action_url)
			return s_invalid(r, "action.url", "missing");
		if (!dp_check_https_url(l->action_url, why, sizeof why))
			return s_invalid(r, "action.url", why);
		if (!l->action_label)
			l->action_label = !strcmp(l->action_code, "AFTALE") ? "Se aftalen" : "Læs mere";
		if (!dp_check_text(l->action_label, DP_MAX_LABEL, why, sizeof why))
			return s_invalid(r, "action.label", why);
	}
	r->outcome = KANAL_OUTCOME_OK;
	return true;
}

/* The channel strategy before any call: what the route's CPR lookup put in data.recipient.
 * Returns false with r set to REJECT "not-enrolled: …" when the citizen has no mailbox. */
static bool s_recipient_enrolled(const kanal_msg_t *msg, dp_result_t *r)
{
	bool enrolled;
	int64_t status;

	if (kanal_msg_data_bool(msg, "recipient.digital_post", &enrolled) == 0 && !enrolled) {
		r->outcome = KANAL_OUTCOME_REJECT;
		snprintf(r->error, sizeof r->error,
			 "not-enrolled: the CPR lookup says the recipient is not enrolled in Digital "
			 "Post (data.recipient.digital_post is false); the service was not called");
		return false;
	}
	/* CPR status 1, 3, 5 and 7 are the active ones; 80 emigrated, 90 dead, the rest gone. */
	if (kanal_msg_data_int(msg, "recipient.status", &status) == 0 && status != 1 &&
	    status != 3 && status != 5 && status != 7) {
		r->outcome = KANAL_OUTCOME_REJECT;
		snprintf(r->error, sizeof r->error,
			 "not-enrolled: the recipient is not an active person (CPR status %lld%s); "
			 "the service was not called",
			 (long long)status,
			 status == 90 ? ": dead" : status == 80 ? ": emigrated" : "");
		return false;
	}
	return true;
}

/* Age in whole years today of someone born on the CPR number's date. */
static int s_age(const kanal_cpr_t *cpr)
{
	time_t t = time(NULL);
	struct tm tm;
	int age;

	localtime_r(&t, &tm);
	age = tm.tm_year + 1900 - cpr->year;
	if (tm.tm_mon + 1 < cpr->month || (tm.tm_mon + 1 == cpr->month && tm.tm_mday < cpr->day))
		age--;
	return age;
}

/* ---- the call ---------------------------------------------------------------------------- */

/* True for the codes by which the service says the recipient has no mailbox. */
static bool s_recipient_code(const char *code)
{
	static const char *const codes[] = { "not-enrolled", "exempt",    "under-15",
					     "deceased",     "emigrated", "unknown-recipient" };

	for (size_t i = 0; code && i < sizeof codes / sizeof *codes; i++)
		if (!strcmp(code, codes[i]))
			return true;
	return false;
}

/* Maps the service's answer to the letter's result. */
static void s_answer(kanal_ctx_t *ctx, const dp_t *dp, const kc_response_t *res, dp_result_t *r)
{
	json_t *j = NULL, *v;
	const char *code = NULL, *reason = NULL, *tx;
	char what[256];

	snprintf(what, sizeof what, "POST %s", dp->url);
	if (res->status > 0 && res->body && res->len)
		j = json_loadb(res->body, res->len, 0, NULL);
	if (res->status >= 200 && res->status < 300) {
		tx = j ? json_string_value(json_object_get(j, "transaction")) : NULL;
		if (!tx || !*tx || strlen(tx) >= sizeof r->transaction ||
		    strspn(tx, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") !=
			    strlen(tx)) {
			char desc[300];
			r->outcome = KANAL_OUTCOME_RETRY;
			snprintf(r->error, sizeof r->error,
				 "%s: answered %ld without a usable transaction id (garbled answer?); "
				 "retrying is safe, the messageUUID is the same: %s",
				 what, res->status, kc_http_describe(res, "answer", desc, sizeof desc));
			kanal_metric_add(ctx, "upstream_errors", 1);
			goto done;
		}
		r->outcome = KANAL_OUTCOME_OK;
		snprintf(r->transaction, sizeof r->transaction, "%s", tx);
		v = json_object_get(j, "duplicate");
		r->duplicate = json_is_true(v);
		goto done;
	}
	if (j) {
		code = json_string_value(json_object_get(j, "code"));
		reason = json_string_value(json_object_get(j, "reason"));
	}
	if (res->status >= 400 && res->status < 500 && s_recipient_code(code)) {
		r->outcome = KANAL_OUTCOME_REJECT;
		snprintf(r->error, sizeof r->error, "not-enrolled: %s (%s)",
			 reason ? reason : "the service refuses the recipient", code);
		goto done;
	}
	/* Answers that say kanal's own setup is wrong — token, certificate, URL — are not the
	 * letter's fault: retried (and in the end kept as dead letters for a replay once fixed)
	 * rather than sent to every citizen on paper. */
	if (res->status == 401 || res->status == 403 || res->status == 404 || res->status == 405 ||
	    res->status == 415) {
		char desc[300];
		r->outcome = KANAL_OUTCOME_RETRY;
		snprintf(r->error, sizeof r->error,
			 "%s; this is the connector's setup (token, certificate, base_url or path), "
			 "not the letter: retrying",
			 kc_http_describe(res, what, desc, sizeof desc));
		kanal_metric_add(ctx, "upstream_errors", 1);
		goto done;
	}
	r->outcome = kc_http_outcome(ctx, res, what);
	if (r->outcome == KANAL_OUTCOME_RETRY) {
		kc_http_describe(res, what, r->error, sizeof r->error);
		kanal_metric_add(ctx, "upstream_errors", 1);
	} else if (code) {
		snprintf(r->error, sizeof r->error, "%s: %ld %s: %s", what, res->status, code,
			 reason ? reason : "(no reason given)");
	} else {
		kc_http_describe(res, what, r->error, sizeof r->error);
	}
done:
	json_decref(j);
}

/* ---- delivery ---------------------------------------------------------------------------- */

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	dp_t *dp = state;
	dp_result_t r = { .outcome = KANAL_OUTCOME_OK };
	dp_letter_t l = { 0 };
	kanal_cpr_t cpr;
	const char *cpr_text = NULL;
	char why[160], created[40];
	kanal_error_t cpr_err;
	const char *headers[] = { "Content-Type: application/xml; charset=utf-8",
				  "Accept: application/json", NULL };
	kc_response_t res = { .retry_after_ms = -1 };
	char *body = NULL;
	size_t body_len = 0;
	bool cpr_ok = false;
	int rc;

	if (strcmp(kanal_msg_type(msg), "post.letter.send")) {
		kanal_set_error(ctx, "digitalpost takes post.letter.send, not %s (check the route)",
				kanal_msg_type(msg));
		return KANAL_OUTCOME_REJECT;
	}
	if (dp_message_uuid(kanal_msg_source(msg), kanal_msg_id(msg), l.message_uuid) != 0) {
		kanal_set_error(ctx, "digitalpost: cannot compute the messageUUID (no SHA-1)");
		return KANAL_OUTCOME_RETRY;
	}

	/* The recipient's number, for the pseudonym in the status even when the letter fails. */
	kanal_error_clear(&cpr_err);
	if (kanal_msg_data_str(msg, "recipient_cpr", &cpr_text) == 0)
		cpr_ok = kanal_cpr_parse(cpr_text, &cpr, &cpr_err) == 0;
	snprintf(why, sizeof why, "%.150s", cpr_err.text);

	/* 1. The channel strategy: not enrolled means paper, and no call. */
	if (!s_recipient_enrolled(msg, &r)) {
		kanal_metric_add(ctx, "not_enrolled", 1);
		kanal_metric_add(ctx, "skipped", 1);
		goto finish;
	}
	/* 2. The letter itself. */
	if (!s_opt_str(msg, "recipient_cpr", &cpr_text, &r)) {
		r.outcome = KANAL_OUTCOME_REJECT;
	} else if (!cpr_text) {
		s_invalid(&r, "recipient_cpr", "missing");
	} else if (!cpr_ok) {
		s_invalid(&r, "recipient_cpr", why);
	} else {
		memcpy(l.recipient, cpr.digits, sizeof l.recipient);
		if (s_age(&cpr) < 15) {
			r.outcome = KANAL_OUTCOME_REJECT;
			snprintf(r.error, sizeof r.error,
				 "not-enrolled: no Digital Post for under-15s; the service was not "
				 "called");
			kanal_metric_add(ctx, "not_enrolled", 1);
			kanal_metric_add(ctx, "skipped", 1);
			goto finish;
		}
		s_read_letter(dp, msg, &l, &r);
	}
	if (r.outcome != KANAL_OUTCOME_OK) {
		kanal_metric_add(ctx, "invalid", 1);
		goto finish;
	}
	l.message_type = dp->message_type;
	l.channel = dp->channel;
	if (kanal_msg_time(msg)) {
		snprintf(created, sizeof created, "%s", kanal_msg_time(msg));
	} else {
		kanal_time_rfc3339(kanal_wall_ms(), created, sizeof created);
	}
	l.created = created;
	if (!(body = dp_memo_build(&l, &body_len))) {
		kanal_set_error(ctx, "digitalpost: out of memory building the MeMo");
		return KANAL_OUTCOME_RETRY;
	}

	/* 3. The service. */
	kanal_metric_add(ctx, "requests", 1);
	kc_http_request(dp->http, "POST", dp->url, headers, body, body_len, &res);
	free(body);
	s_answer(ctx, dp, &res, &r);
	kc_response_clear(&res);
	if (r.outcome == KANAL_OUTCOME_REJECT && !strncmp(r.error, "not-enrolled", 12))
		kanal_metric_add(ctx, "not_enrolled", 1);
	else if (r.outcome == KANAL_OUTCOME_REJECT)
		kanal_metric_add(ctx, "refused", 1);

finish:
	if (r.outcome == KANAL_OUTCOME_OK) {
		const char *reason = !strcmp(dp->status_channel, "nemsms") ? "enrolled in NemSMS"
									   : "enrolled in Digital Post";
		rc = s_emit_status(ctx, dp, msg, l.message_uuid, cpr_text, "sent", reason,
				   r.transaction);
		kanal_metric_add(ctx, r.duplicate ? "duplicates" : "sent", 1);
		kanal_log(ctx, KANAL_LOG_INFO, "letter %s sent by %s: transaction %s%s",
			  kanal_msg_id(msg), dp->channel, r.transaction,
			  r.duplicate ? " (the service already had it)" : "");
		/* The letter is with the service; only its status is missing. Another delivery
		 * is the same letter to the service, so a RETRY costs no second letter. */
		if (rc == KANAL_EBUSY || rc == KANAL_ECLOSED) {
			kanal_set_error(ctx,
					"letter sent (transaction %s) but its status event was not "
					"accepted (%s); retrying, the service will not send it twice",
					r.transaction, kanal_strerror(rc));
			kanal_set_retry_after(ctx, DP_EMIT_BUSY_RETRY_MS);
			return KANAL_OUTCOME_RETRY;
		}
		/* A duplicate is the status of an earlier delivery of this letter: already there. */
		if (rc != 0 && rc != KANAL_EDUPLICATE)
			kanal_log(ctx, KANAL_LOG_ERROR, "letter %s: status event refused: %s",
				  kanal_msg_id(msg), kanal_strerror(rc));
		return KANAL_OUTCOME_OK;
	}
	kanal_set_error(ctx, "%s", r.error);
	if (r.outcome == KANAL_OUTCOME_REJECT) {
		rc = s_emit_status(ctx, dp, msg, l.message_uuid, cpr_ok ? cpr_text : NULL, "failed",
				   r.error, NULL);
		if (rc != 0 && rc != KANAL_EDUPLICATE)
			kanal_log(ctx, KANAL_LOG_WARN, "letter %s: 'failed' status not emitted: %s",
				  kanal_msg_id(msg), kanal_strerror(rc));
		kanal_log(ctx, KANAL_LOG_INFO, "letter %s not sent digitally: %s", kanal_msg_id(msg),
			  r.error);
	}
	return r.outcome;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "digitalpost",
	.version = "1.0.0",
	.description = "Sends post.letter.send as MeMo to Digital Post (or NemSMS); REJECTs "
		       "citizens without a mailbox so the route's fallback sends a physical letter.",
	.options = s_options,
	.init = s_init,
	.on_message = s_on_message,
	.destroy = s_destroy,
};
