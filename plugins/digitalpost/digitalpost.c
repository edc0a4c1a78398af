/*
 * plugins/digitalpost/digitalpost.c — the Digital Post connector: a destination for
 * `post.letter.send` that sends each letter to Serviceplatformen's SF1601 KombiPostAfsend as
 * a kombi_request (contracts/README.md §3): a MeMo 1.1 or 1.2 message (the `memo_version`
 * option), a print part (ForsendelseI) when the letter may go on paper, and the KombiValgKode
 * that says which.
 *
 * The channel strategy "digital first, then paper" is the route's or the letter's choice
 * (`strategy` option, `channel_strategy` field):
 *   kanal     kanal decides: it asks PostForespoerg whether the citizen can receive Digital
 *             Post (answers cached for `forespoerg_cache`), sends `Digital Post` when yes, and
 *             when no either REJECTs "not-enrolled: …" so the route's fallback (the letter
 *             connector's spool) prints it, or — `print: service` — sends `Fysisk Post`
 *             through the same service's print;
 *   platform  the platform decides: `Automatisk Valg` with both parts.
 * Before any call, the route's CPR lookup (data.recipient) may already say no (not enrolled,
 * not an active person, under 15), and an invalid letter is a REJECT naming the field.
 * HTTP 200 means only that the service accepted the letter; the post.letter.status emitted
 * then says `accepted` with the KombiValgKode used and why. Every call carries an SF1514
 * access token for its service's entity ID (kc_sts, over mutual TLS with the function
 * certificate; renewed once after a 401). No CPR number goes into a log line, an error or an
 * emitted event.
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
#include <libxml/tree.h>

#include <kanal/kanal.h>

#include "../common/kc_cert.h"
#include "../common/kc_status.h"
#include "../common/kc_http.h"
#include "../common/kc_sts.h"
#include "../common/kc_url.h"
#include "memo.h"
#include "receipts.h"

#define DP_DEFAULT_PATH "/service/KombiPostAfsend_1/kombi"
#define DP_DEFAULT_FORESPOERG_PATH "/service/PostForespoerg_1/digitalpost"
#define DP_FORESPOERG_CACHE 256
#define DP_DEFAULT_CALLBACK_PATH "/beskedfordeler/PostStatusBeskedModtag"
#define DP_EMIT_BUSY_RETRY_MS 1000

typedef struct dp {
	/* Bound options (s_options), borrowed from the config. */
	const char *base_url, *path, *key_path;
	const char *sender_cvr;
	const char *sender_label;
	const char *channel; /* "Digital Post" or "NemSMS" */
	const char *language;
	const char *memo_version; /* "1.1" or "1.2" */
	const char *strategy;     /* "kanal" or "platform" */
	const char *print;        /* "fallback" or "service" */
	const char *forespoerg_path;
	const char *print_type; /* ForsendelseTypeIdentifikator, or NULL */
	int64_t forespoerg_cache_ms;
	const char *callback_listen; /* HOST:PORT of the receipts' listener, or NULL: none */
	const char *callback_path;
	int64_t status_timeout_ms;
	dp_receipts_t *receipts;  /* NULL without callback_listen */
	kc_http_conf_t http_conf; /* token(_file), ca_file, client_cert/key, timeout */
	kc_cert_conf_t cert_conf; /* the function certificate (certificate_p12, …) */
	const char *cvr;          /* the CVR of the service agreement (default sender_cvr) */
	const char *sts_url, *accesstoken_url;
	const char *entity_kombi, *entity_forespoerg;
	int64_t token_renew_before_ms, clock_skew_ms;
	kc_cert_t *cert; /* NULL: no SF1514 tokens (a static token, or none) */
	kc_sts_t *sts;

	char *url;             /* base_url + path */
	char *forespoerg_url;  /* base_url + forespoerg_path */
	char *access_token;    /* see s_access_token; wiped on destroy */
	struct dp_forespoerg { /* recent PostForespoerg answers, by CPR number */
		char cpr[11];
		bool result;
		int64_t at_ms;
	} forespoerg[DP_FORESPOERG_CACHE];
	size_t forespoerg_next;
	kc_http_t *http;
	const char *message_type;   /* "DIGITALPOST" or "NEMSMS" */
	const char *status_channel; /* "digital" or "nemsms" */
	kanal_pseudonym_key_t *key; /* NULL: no pseudonyms */
	kanal_ctx_t *ctx;           /* for kanal_blob_get while a letter is read */
	/* The base64 of the letter's documents that came from the blob store (docs/design/
	 * blobs.md): [0] the main document, [1 + i] attachment i. Owned; wiped and freed before
	 * the next letter and at destroy. */
	char *blob_content[1 + DP_MAX_ATTACHMENTS];
} dp_t;

static const char *const s_channels[] = { "Digital Post", "NemSMS", NULL };
static const char *const s_memo_versions[] = { "1.1", "1.2", NULL };
static const char *const s_strategies[] = { "kanal", "platform", NULL };
static const char *const s_prints[] = { "fallback", "service", NULL };

static const kanal_option_t s_options[] = {
	{ .name = "base_url",
	  .type = KANAL_OPT_STRING,
	  .required = true,
	  KANAL_OPT_AT(dp_t, base_url),
	  .help = "The Digital Post service's base URL, e.g. https://digitalpost.example.dk (plain "
		  "http "
		  "only to 127.0.0.0/8, [::1] or localhost: the simulator)." },
	{ .name = "path",
	  .type = KANAL_OPT_STRING,
	  .default_value = DP_DEFAULT_PATH,
	  KANAL_OPT_AT(dp_t, path),
	  .help = "The KombiPostAfsend endpoint's path below base_url." },
	{ .name = "forespoerg_path",
	  .type = KANAL_OPT_STRING,
	  .default_value = DP_DEFAULT_FORESPOERG_PATH,
	  KANAL_OPT_AT(dp_t, forespoerg_path),
	  .help = "The PostForespoerg endpoint's path below base_url (?cprNumber= is added)." },
	{ .name = "memo_version",
	  .type = KANAL_OPT_STRING,
	  .default_value = "1.2",
	  .allowed = s_memo_versions,
	  KANAL_OPT_AT(dp_t, memo_version),
	  .help = "The MeMo version of the letters: 1.1 or 1.2." },
	{ .name = "strategy",
	  .type = KANAL_OPT_STRING,
	  .default_value = "kanal",
	  .allowed = s_strategies,
	  KANAL_OPT_AT(dp_t, strategy),
	  .help = "Who decides digital or paper: kanal (PostForespoerg, then Digital Post or "
		  "paper) or platform (Automatisk Valg). A letter's channel_strategy overrides." },
	{ .name = "print",
	  .type = KANAL_OPT_STRING,
	  .default_value = "fallback",
	  .allowed = s_prints,
	  KANAL_OPT_AT(dp_t, print),
	  .help = "With strategy kanal, the paper letter: fallback (REJECT, so the route's "
		  "fallback prints it) or service (Fysisk Post through SF1601's print)." },
	{ .name = "print_type",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(dp_t, print_type),
	  .help = "ForsendelseTypeIdentifikator agreed with the print provider (digits)." },
	{ .name = "forespoerg_cache",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "10m",
	  .min = "0s",
	  KANAL_OPT_AT(dp_t, forespoerg_cache_ms),
	  .help = "How long a PostForespoerg answer is reused (0s: ask every time)." },
	{ .name = "sender_cvr",
	  .type = KANAL_OPT_STRING,
	  .required = true,
	  KANAL_OPT_AT(dp_t, sender_cvr),
	  .help = "The sending authority's CVR number (8 digits): MessageHeader/Sender/senderID." },
	{ .name = "sender_label",
	  .type = KANAL_OPT_STRING,
	  .required = true,
	  KANAL_OPT_AT(dp_t, sender_label),
	  .help = "The sender's name as the citizen sees it, e.g. \"Aarhus Kommune\"." },
	{ .name = "channel",
	  .type = KANAL_OPT_STRING,
	  .default_value = "Digital Post",
	  .allowed = s_channels,
	  KANAL_OPT_AT(dp_t, channel),
	  .help = "The channel code of the send request: \"Digital Post\" or \"NemSMS\" (physical "
		  "letters go by the letter connector)." },
	{ .name = "language",
	  .type = KANAL_OPT_STRING,
	  .default_value = "da",
	  KANAL_OPT_AT(dp_t, language),
	  .help = "The document language (ISO 639-1) when a letter gives none." },
	{ .name = "callback_listen",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(dp_t, callback_listen),
	  .help = "HOST:PORT where the Beskedfordeler (SF1461) pushes PKO_PostStatus receipts "
		  "(plain http: terminate TLS in front). Absent: no receipts, the status says "
		  "sent when the service accepts." },
	{ .name = "callback_path",
	  .type = KANAL_OPT_STRING,
	  .default_value = DP_DEFAULT_CALLBACK_PATH,
	  KANAL_OPT_AT(dp_t, callback_path),
	  .help = "The callback's path, as registered with the Beskedfordeler." },
	{ .name = "status_timeout",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "72h",
	  .min = "1s",
	  KANAL_OPT_AT(dp_t, status_timeout_ms),
	  .help = "How long a letter waits for its PKO_PostStatus; then its status is unknown "
		  "(metric letters_status_unknown)." },
	KC_CERT_OPTS(dp_t, cert_conf),
	{ .name = "cvr",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(dp_t, cvr),
	  .help = "The CVR of the service agreement (the token's CVR claim); default sender_cvr." },
	{ .name = "sts_url",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(dp_t, sts_url),
	  .help = "SF1514 REST issue endpoint, e.g. https://n2adgangsstyring.eksterntest-"
		  "stoettesystemerne.dk/runtime/api/rest/wstrust/v1/issue (with a certificate)." },
	{ .name = "accesstoken_url",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(dp_t, accesstoken_url),
	  .help = "The access-token exchange, e.g. https://exttest.serviceplatformen.dk/service/"
		  "AccessTokenService_1/token (with a certificate)." },
	{ .name = "entity_kombipostafsend",
	  .type = KANAL_OPT_STRING,
	  .default_value = KC_STS_ENTITY_KOMBIPOSTAFSEND,
	  KANAL_OPT_AT(dp_t, entity_kombi),
	  .help = "KombiPostAfsend's entity ID (the token's AppliesTo)." },
	{ .name = "entity_postforespoerg",
	  .type = KANAL_OPT_STRING,
	  .default_value = KC_STS_ENTITY_POSTFORESPOERG,
	  KANAL_OPT_AT(dp_t, entity_forespoerg),
	  .help = "PostForespoerg's entity ID (the token's AppliesTo)." },
	{ .name = "token_renew_before",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "5m",
	  .min = "0s",
	  KANAL_OPT_AT(dp_t, token_renew_before_ms),
	  .help = "Renew a token this long before it expires." },
	{ .name = "clock_skew",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "2m",
	  .min = "0s",
	  KANAL_OPT_AT(dp_t, clock_skew_ms),
	  .help = "Allowance for clocks that disagree (certificate validity, token expiry)." },
	KC_HTTP_OPT_TOKEN(dp_t, http_conf),
	KC_HTTP_OPT_CA_FILE(dp_t, http_conf),
	KC_HTTP_OPT_CLIENT_CERT(dp_t, http_conf),
	KC_HTTP_OPT_TIMEOUT(dp_t, http_conf, "5s",
			    "Longest wait for the service's answer to one letter; then RETRY."),
	{ .name = "pseudonym_key",
	  .type = KANAL_OPT_PATH,
	  KANAL_OPT_AT(dp_t, key_path),
	  .help = "Key file (0600) for the recipient's pseudonym in the status event's subject." },
	KC_URL_OPT_ALLOW_PLAIN_HTTP(dp_t, http_conf.allow_plain_http),
	{ .name = NULL },
};

/* What became of one letter, for the status event and the outcome. */
typedef struct dp_result {
	kanal_outcome_t outcome;
	char error[512];       /* the REJECT or RETRY reason */
	char transaction[129]; /* the TransmissionID, on OK */
} dp_result_t;

/* ---- configuration ----------------------------------------------------------------------- */

/* Wipes and frees the documents the last letter read from the blob store. */
static void s_blob_content_clear(dp_t *dp)
{
	for (size_t i = 0; i < sizeof dp->blob_content / sizeof dp->blob_content[0]; i++) {
		if (!dp->blob_content[i])
			continue;
		explicit_bzero(dp->blob_content[i], strlen(dp->blob_content[i]));
		free(dp->blob_content[i]);
		dp->blob_content[i] = NULL;
	}
}

static void s_destroy(void *state)
{
	dp_t *dp = state;

	if (!dp)
		return;
	s_blob_content_clear(dp);
	kc_http_destroy(&dp->http);
	kc_sts_destroy(&dp->sts);
	kc_cert_destroy(&dp->cert);
	dp_receipts_destroy(&dp->receipts);
	kanal_pseudonym_key_destroy(&dp->key);
	kc_http_conf_clear(&dp->http_conf);
	if (dp->access_token) {
		explicit_bzero(dp->access_token, strlen(dp->access_token));
		free(dp->access_token);
	}
	explicit_bzero(dp->forespoerg, sizeof dp->forespoerg);
	free(dp->url);
	free(dp->forespoerg_url);
	free(dp);
}

/* The SF1514 side, when a function certificate is configured: checks the options that go
 * with it and loads it (reading files only). The static token and client_cert options are
 * for tests without an STS and cannot be mixed with it. Returns 0 or a KANAL_E* code with
 * the error set on ctx. */
static int s_cert_load(kanal_ctx_t *ctx, dp_t *dp, const kc_http_opts_t *o)
{
	kanal_error_t err;
	int rc;

	if (!dp->cert_conf.pkcs12_file && !dp->cert_conf.cert_file) {
		if (dp->sts_url || dp->accesstoken_url || dp->cert_conf.key_file) {
			kanal_set_error(ctx, "digitalpost: sts_url, accesstoken_url and "
					     "certificate_key need the function certificate "
					     "(certificate_p12, or certificate)");
			return KANAL_ECONFIG;
		}
		return 0;
	}
	if (dp->cert_conf.pkcs12_file && dp->cert_conf.cert_file) {
		kanal_set_error(ctx, "digitalpost: certificate_p12 and certificate are two ways to "
				     "give the same certificate: keep one");
		return KANAL_ECONFIG;
	}
	if (o->bearer_token || dp->http_conf.client_cert) {
		kanal_set_error(ctx,
				"digitalpost: token/token_file and client_cert are for tests "
				"without an STS; with the function certificate, tokens come from "
				"sts_url: remove them");
		return KANAL_ECONFIG;
	}
	if (!dp->sts_url || !dp->accesstoken_url) {
		kanal_set_error(
			ctx,
			"digitalpost: with the function certificate, set sts_url (the "
			"SF1514 REST issue endpoint) and accesstoken_url (AccessTokenService_1)");
		return KANAL_ECONFIG;
	}
	kanal_error_clear(&err);
	if ((rc = kc_cert_load(&dp->cert_conf, &dp->cert, &err)) != 0) {
		kanal_set_error(ctx, "digitalpost: %s", err.text);
		return rc;
	}
	return 0;
}

/* With the function certificate s_cert_load loaded, makes the token client for sts_url
 * and accesstoken_url and gives the certificate to the service's https client (mutual
 * TLS: the access token is only good together with the certificate it is bound to).
 * Returns 0 or a KANAL_E* code with the error set on ctx. */
static int s_tokens_open(kanal_ctx_t *ctx, dp_t *dp, kc_http_opts_t *o)
{
	kanal_error_t err;
	kc_sts_opts_t so;
	int rc;

	if (!dp->cert)
		return 0;
	kanal_error_clear(&err);
	so = (kc_sts_opts_t){ .issue_url = dp->sts_url,
			      .accesstoken_url = dp->accesstoken_url,
			      .cvr = dp->cvr ? dp->cvr : dp->sender_cvr,
			      .renew_before_ms = dp->token_renew_before_ms,
			      .clock_skew_ms = dp->clock_skew_ms,
			      .timeout_ms = dp->http_conf.timeout_ms,
			      .ca_file = dp->http_conf.ca_file,
			      .allow_plain_http = dp->http_conf.allow_plain_http };
	if ((rc = kc_sts_new(&so, dp->cert, &dp->sts, &err)) != 0) {
		kanal_set_error(ctx, "digitalpost: %s", err.text);
		return rc;
	}
	kc_cert_http_opts(dp->cert, o);
	return 0;
}

/* The rules init and check share (docs/sdk.md, "Checking a config"), for what the table
 * cannot say: base_url by kc_url_check's rule (letters carry CPR numbers and documents:
 * plain http only to this machine, the simulator, unless allow_plain_http), the paths, the
 * CVR number, the label, the language code, the secret files, the pseudonym key and the
 * certificate options together. Files are read, never created; what is read stays in dp
 * for init. Returns 0 or a KANAL_E* code with the error set on ctx. */
static int s_validate(kanal_ctx_t *ctx, dp_t *dp, kc_http_opts_t *o)
{
	char why[256];
	kanal_error_t key_err;
	size_t blen;
	int rc = KANAL_ECONFIG;

	if (kc_url_check_option(ctx, "base_url", dp->base_url, dp->http_conf.allow_plain_http) != 0)
		return rc;
	if (!dp->forespoerg_path || dp->forespoerg_path[0] != '/') {
		kanal_set_error(ctx, "digitalpost: forespoerg_path '%s' must start with '/'",
				dp->forespoerg_path ? dp->forespoerg_path : "");
		return rc;
	}
	if (!dp->path || dp->path[0] != '/') {
		kanal_set_error(ctx, "digitalpost: path '%s' must start with '/'",
				dp->path ? dp->path : "");
		return rc;
	}
	if (!dp_check_cvr(dp->sender_cvr)) {
		kanal_set_error(ctx, "digitalpost: sender_cvr '%s' is not a CVR number (8 digits)",
				dp->sender_cvr);
		return rc;
	}
	if (!dp_check_text(dp->sender_label, DP_MAX_LABEL, why, sizeof why)) {
		kanal_set_error(ctx, "digitalpost: sender_label: %s", why);
		return rc;
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
		return rc;
	}
	if ((rc = kc_http_conf_open(ctx, &dp->http_conf, o)) != 0)
		return rc;
	rc = KANAL_ECONFIG;
	kanal_error_clear(&key_err);
	if (dp->key_path && kanal_pseudonym_key_load(dp->key_path, &dp->key, &key_err) != 0) {
		kanal_set_error(ctx, "digitalpost: pseudonym_key: %s", key_err.text);
		return rc;
	}
	blen = strlen(dp->base_url);
	while (blen > 0 && dp->base_url[blen - 1] == '/')
		blen--;
	if (asprintf(&dp->url, "%.*s%s", (int)blen, dp->base_url, dp->path) < 0) {
		dp->url = NULL;
		rc = KANAL_ENOMEM;
		return rc;
	}
	if (asprintf(&dp->forespoerg_url, "%.*s%s", (int)blen, dp->base_url, dp->forespoerg_path) <
	    0) {
		dp->forespoerg_url = NULL;
		rc = KANAL_ENOMEM;
		return rc;
	}
	if (dp->print_type &&
	    (!*dp->print_type || strspn(dp->print_type, "0123456789") != strlen(dp->print_type))) {
		kanal_set_error(ctx, "digitalpost: print_type '%s' is not a number",
				dp->print_type);
		return rc;
	}
	if (dp->callback_listen &&
	    (rc = dp_receipts_check(ctx, dp->callback_listen, dp->callback_path)) != 0)
		return rc;
	return s_cert_load(ctx, dp, o);
}

static int s_check(kanal_ctx_t *ctx, const kanal_config_t *cfg)
{
	dp_t *dp = calloc(1, sizeof *dp);
	kc_http_opts_t o;
	int rc;

	if (!dp)
		return KANAL_ENOMEM;
	kanal_config_bind(cfg, dp);
	rc = s_validate(ctx, dp, &o);
	s_destroy(dp);
	return rc;
}

/* The table checked each option alone (the channel among them); init runs s_validate,
 * then makes the token and HTTP clients and the receipts endpoint. */
static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	kc_http_opts_t o;
	dp_t *dp = calloc(1, sizeof *dp);
	int rc = KANAL_ECONFIG;

	if (!dp)
		return KANAL_ENOMEM;
	dp->ctx = ctx;
	/* libxml2 2.9 wants its globals set up before threads use it; idempotent. */
	xmlInitParser();
	kanal_config_bind(cfg, dp);
	if ((rc = s_validate(ctx, dp, &o)) != 0 || (rc = s_tokens_open(ctx, dp, &o)) != 0)
		goto fail;
	rc = KANAL_ECONFIG;
	/* A static token goes as "Holder-of-key", not as the HTTP client's Bearer header. */
	if (o.bearer_token && !(dp->access_token = strdup(o.bearer_token))) {
		rc = KANAL_ENOMEM;
		goto fail;
	}
	o.bearer_token = NULL;
	o.max_body = 1u << 20;
	if (!(dp->http = kc_http_new(&o))) {
		rc = KANAL_ENOMEM;
		goto fail;
	}
	kc_http_conf_clear(&dp->http_conf);
	if (dp->callback_listen &&
	    (rc = dp_receipts_new(ctx, dp->callback_listen, dp->callback_path,
				  dp->status_timeout_ms, &dp->receipts)) != 0)
		goto fail;
	*state = dp;
	return 0;
fail:
	s_destroy(dp);
	return rc;
}

/* ---- the status event -------------------------------------------------------------------- */

/* The status events' subject: the recipient's pseudonym (cpr may be NULL), else the
 * letter's own subject (already checked by the bus to hold no CPR number), or NULL. */
static const char *s_subject(const dp_t *dp, const kanal_msg_t *msg, const char *cpr,
			     char pseudonym[KANAL_PSEUDONYM_SIZE])
{
	if (dp->key && cpr &&
	    kanal_cpr_pseudonym(dp->key, cpr, pseudonym, KANAL_PSEUDONYM_SIZE) == 0)
		return pseudonym;
	return kanal_msg_subject(msg);
}

/* Copies the letter's data.sender (the department, as the letter gave it) into the status
 * data, so that the status can be counted and returned per sender. Nothing when it has none. */
static void s_copy_sender(const kanal_msg_t *msg, json_t *data)
{
	char *text = kanal_msg_data_json(msg, "sender");
	json_t *sender = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;

	kanal_free(text);
	if (sender)
		json_object_set_new(data, "sender", sender);
}

/* Emits post.letter.status about letter msg: status "sent" (accepted by the service) or
 * "failed", the reason (CPR numbers masked), the KombiValgKode used and the TransmissionID
 * when sent. Returns kanal_emit's result. */
static int s_emit_status(kanal_ctx_t *ctx, const dp_t *dp, const kanal_msg_t *msg, const char *uuid,
			 const char *cpr, const char *status, const char *reason,
			 const char *transaction, const char *kombi)
{
	char id[96], pseudonym[KANAL_PSEUDONYM_SIZE];
	const char *corr = kanal_msg_attr(msg, "correlationid");
	const char *trace = kanal_msg_attr(msg, "traceparent");
	const char *subject = s_subject(dp, msg, cpr, pseudonym);
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
	/* Without receipts, "sent" is the letter's final status; "failed" is not (the route's
	 * fallback, the physical letter, takes the letter on and ends it). */
	if (data && !strcmp(status, "sent"))
		json_object_set_new(data, "final", json_true());
	if (data)
		s_copy_sender(msg, data);
	if (data)
		kc_status_channel_json(msg, data); /* the route's area and this channel's rank */
	if (data && transaction)
		json_object_set_new(data, "transaction", json_string(transaction));
	if (data && kombi)
		json_object_set_new(data, "kombi", json_string(kombi));
	text = data ? json_dumps(data, JSON_COMPACT) : NULL;
	json_decref(data);
	if (!st || !text)
		goto done;
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

/* True when text is an RFC 3339 time in UTC ("…Z"), as MeMo's memoDateTimeType wants. */
static bool s_utc(const char *text)
{
	int64_t ms;
	size_t n = strlen(text);

	return n > 0 && text[n - 1] == 'Z' && kanal_time_parse_rfc3339(text, &ms) == 0;
}

/* Reads and checks the document at data.<path> (filename, content, language, mimetype,
 * label) into d. Returns false with r set to REJECT naming the field. */
/* A document's content from the blob store: the blob `href` names (a kanalblob URI, as
 * the http ingress's multipart upload makes them) read and base64-encoded into *owned, its
 * media type (`mediaType`) the default mimetype. Returns true, or false with r set: REJECT
 * when the blob is gone or damaged (a retry cannot bring it back), RETRY without memory. */
static bool s_blob_document(dp_t *dp, const kanal_msg_t *msg, const char *path, const char *href,
			    dp_document_t *d, char **owned, dp_result_t *r)
{
	char field[80];
	kanal_error_t err;
	void *data = NULL;
	size_t size = 0;
	int rc;

	kanal_error_clear(&err);
	rc = kanal_blob_get(dp->ctx, href, &data, &size, &err);
	snprintf(field, sizeof field, "%s.href", path);
	if (rc != 0) {
		char why[200];
		snprintf(why, sizeof why, "%.180s", err.text);
		s_invalid(r, field, why);
		if (rc == KANAL_ENOMEM)
			r->outcome = KANAL_OUTCOME_RETRY;
		return false;
	}
	*owned = kc_base64(data, size);
	explicit_bzero(data, size);
	kanal_blob_free(&data);
	if (!*owned) {
		r->outcome = KANAL_OUTCOME_RETRY;
		snprintf(r->error, sizeof r->error, "out of memory reading %s", field);
		return false;
	}
	d->content = *owned;
	if (!d->mimetype) {
		snprintf(field, sizeof field, "%s.mediaType", path);
		if (!s_opt_str(msg, field, &d->mimetype, r))
			return false;
	}
	return true;
}

/* Reads one document at `path` (document, attachments.N): its content as base64 in
 * `content`, or by reference to a blob in `href`, whose base64 is kept in *owned. */
static bool s_read_document(dp_t *dp, const kanal_msg_t *msg, const char *path, dp_document_t *d,
			    char **owned, dp_result_t *r)
{
	char field[80], why[160];
	const char *href = NULL;

#define DP_FIELD(name) (snprintf(field, sizeof field, "%s.%s", path, name), field)
	if (!s_opt_str(msg, DP_FIELD("filename"), &d->filename, r) ||
	    !s_opt_str(msg, DP_FIELD("language"), &d->language, r) ||
	    !s_opt_str(msg, DP_FIELD("content"), &d->content, r) ||
	    !s_opt_str(msg, DP_FIELD("mimetype"), &d->mimetype, r) ||
	    !s_opt_str(msg, DP_FIELD("label"), &d->label, r))
		return false;
	if (!d->filename)
		return s_invalid(r, DP_FIELD("filename"), "missing");
	if (!dp_check_filename(d->filename, why, sizeof why))
		return s_invalid(r, DP_FIELD("filename"), why);
	if (!d->language)
		d->language = dp->language;
	if (strlen(d->language) != 2 || d->language[0] < 'a' || d->language[0] > 'z' ||
	    d->language[1] < 'a' || d->language[1] > 'z')
		return s_invalid(r, DP_FIELD("language"), "not an ISO 639-1 code like da or en");
	if (!d->content && !s_opt_str(msg, DP_FIELD("href"), &href, r))
		return false;
	if (!d->content && href && !s_blob_document(dp, msg, path, href, d, owned, r))
		return false;
	if (!d->content)
		return s_invalid(r, DP_FIELD("content"), "missing (or href, a blob)");
	if (!dp_check_base64(d->content, why, sizeof why))
		return s_invalid(r, DP_FIELD("content"), why);
	if (!d->mimetype)
		d->mimetype = dp_mimetype_for(d->filename);
	if (!dp_check_text(d->mimetype, 255, why, sizeof why) || !strchr(d->mimetype, '/') ||
	    strchr(d->mimetype, ' '))
		return s_invalid(r, DP_FIELD("mimetype"), "not a media type like application/pdf");
	if (d->label && !dp_check_text(d->label, DP_MAX_LABEL, why, sizeof why))
		return s_invalid(r, DP_FIELD("label"), why);
#undef DP_FIELD
	return true;
}

/* Reads and checks everything but the recipient into l (strings borrowed from msg). Returns
 * true, or false with r set to REJECT naming the field. */
static bool s_read_letter(dp_t *dp, const kanal_msg_t *msg, dp_letter_t *l, dp_result_t *r)
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
	if (!s_read_document(dp, msg, "document", &l->main, &dp->blob_content[0], r))
		return false;
	/* Attachments: AdditionalDocument, each checked like the main document. */
	for (size_t i = 0;; i++) {
		char path[48];
		snprintf(path, sizeof path, "attachments.%zu", i);
		if (!(json = kanal_msg_data_json(msg, path)))
			break;
		kanal_free(json);
		if (i == DP_MAX_ATTACHMENTS)
			return s_invalid(r, "attachments", "more than 10 (MeMo's limit here)");
		if (!s_read_document(dp, msg, path, &l->attachments[i], &dp->blob_content[1 + i],
				     r))
			return false;
		l->n_attachments = i + 1;
	}

	if ((json = kanal_msg_data_json(msg, "action"))) {
		dp_action_t *a = &l->actions[0];
		kanal_free(json);
		l->n_actions = 1;
		if (!s_opt_str(msg, "action.code", &a->code, r) ||
		    !s_opt_str(msg, "action.url", &a->url, r) ||
		    !s_opt_str(msg, "action.label", &a->label, r) ||
		    !s_opt_str(msg, "action.start", &a->start, r) ||
		    !s_opt_str(msg, "action.end", &a->end, r))
			return false;
		if (!a->code)
			return s_invalid(r, "action.code", "missing");
		if (!dp_check_action_code(a->code))
			return s_invalid(r, "action.code",
					 "not a MeMo action code (AFTALE, BETALING, SELVBETJENING, "
					 "INFORMATION, UNDERSKRIV, BEKRAEFT, FORBEREDELSE, "
					 "TILMELDING)");
		if (!a->label)
			a->label = !strcmp(a->code, "AFTALE") ? "Se aftalen" : "Læs mere";
		if (!dp_check_text(a->label, DP_MAX_LABEL, why, sizeof why))
			return s_invalid(r, "action.label", why);
		if ((a->start && !s_utc(a->start)) || (a->end && !s_utc(a->end)))
			return s_invalid(
				r, a->start && !s_utc(a->start) ? "action.start" : "action.end",
				"not a UTC date and time like 2026-06-20T07:00:00Z");
		if (!strcmp(a->code, "AFTALE")) {
			/* The appointment: a Reservation instead of a link. */
			if (!s_opt_str(msg, "action.reservation.description", &a->description, r) ||
			    !s_opt_str(msg, "action.reservation.abstract", &a->abstract, r) ||
			    !s_opt_str(msg, "action.reservation.location", &a->location, r) ||
			    !s_opt_str(msg, "action.reservation.organizer_mail", &a->organizer_mail,
				       r) ||
			    !s_opt_str(msg, "action.reservation.organizer_name", &a->organizer_name,
				       r))
				return false;
			if (!a->start || !a->end)
				return s_invalid(r, a->start ? "action.end" : "action.start",
						 "an AFTALE needs its start and end (UTC)");
			if (!a->description)
				a->description = l->label;
			if (!a->abstract)
				a->abstract = a->label;
			if (!a->location)
				return s_invalid(r, "action.reservation.location", "missing");
			if (!dp_check_text(a->location, DP_MAX_LABEL, why, sizeof why))
				return s_invalid(r, "action.reservation.location", why);
			a->url = NULL;
		} else {
			if (!a->url)
				return s_invalid(r, "action.url", "missing");
			if (!dp_check_https_url(a->url, why, sizeof why))
				return s_invalid(r, "action.url", why);
		}
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
			 "not-enrolled: the CPR lookup says the recipient is not enrolled in "
			 "Digital "
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
			 status == 90   ? ": dead"
			 : status == 80 ? ": emigrated"
					: "");
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

/* The text of the first element named name (any namespace, any depth) in the answer, in
 * buf; false when there is none. The sync answer's exact shape is not published (contract
 * 3.6): read it by local name, as the most detailed client does. */
static bool s_xml_text(xmlNodePtr n, const char *name, char *buf, size_t size)
{
	for (; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (!strcmp((const char *)n->name, name)) {
			xmlChar *t = xmlNodeGetContent(n);
			snprintf(buf, size, "%s", t ? (const char *)t : "");
			xmlFree(t);
			return true;
		}
		if (s_xml_text(n->children, name, buf, size))
			return true;
	}
	return false;
}

/* Maps KombiPostAfsend's answer to the letter's result: 2xx with Result true (or no Result)
 * and a usable TransmissionID → OK; Result false or a 4xx naming FejlKode → REJECT with the
 * service's words; setup errors, garbled answers, 408/425/429/5xx → RETRY. */
static void s_answer(kanal_ctx_t *ctx, const dp_t *dp, const kc_response_t *res, dp_result_t *r)
{
	xmlDocPtr doc = NULL;
	xmlNodePtr root = NULL;
	char what[256], result[16] = "", code[128] = "", text[300] = "", desc[300];
	const char *tx = r->transaction;

	snprintf(what, sizeof what, "POST %s", dp->url);
	if (res->status > 0 && res->body && res->len && res->len < INT32_MAX)
		doc = xmlReadMemory(res->body, (int)res->len, "answer.xml", NULL,
				    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (root) {
		s_xml_text(root, "Result", result, sizeof result);
		if (!s_xml_text(root, "FejlKode", code, sizeof code))
			s_xml_text(root, "FejlId", code, sizeof code);
		s_xml_text(root, "FejlTekst", text, sizeof text);
		if (!s_xml_text(root, "TransmissionID", r->transaction, sizeof r->transaction))
			s_xml_text(root, "TransmissionId", r->transaction, sizeof r->transaction);
	}
	if (res->status >= 200 && res->status < 300 && root && strcmp(result, "false")) {
		if (!*tx ||
		    strspn(tx,
			   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") !=
			    strlen(tx)) {
			r->outcome = KANAL_OUTCOME_RETRY;
			snprintf(r->error, sizeof r->error,
				 "%s: answered %ld without a usable TransmissionID (garbled "
				 "answer?); "
				 "retrying is safe, the messageUUID is the same: %s",
				 what, res->status,
				 kc_http_describe(res, "answer", desc, sizeof desc));
			kanal_metric_add(ctx, "upstream_errors", 1);
			goto done;
		}
		r->outcome = KANAL_OUTCOME_OK;
		goto done;
	}
	r->transaction[0] = '\0';
	if (res->status >= 200 && res->status < 300 && !root) {
		r->outcome = KANAL_OUTCOME_RETRY;
		snprintf(r->error, sizeof r->error,
			 "%s: answered %ld with no readable response XML (garbled answer?); "
			 "retrying "
			 "is safe, the messageUUID is the same: %s",
			 what, res->status, kc_http_describe(res, "answer", desc, sizeof desc));
		kanal_metric_add(ctx, "upstream_errors", 1);
		goto done;
	}
	/* Answers that say kanal's own setup is wrong — token, certificate, URL — are not the
	 * letter's fault: retried (and in the end kept as dead letters for a replay once fixed)
	 * rather than sent to every citizen on paper. */
	if (res->status == 401 || res->status == 403 || res->status == 404 || res->status == 405 ||
	    res->status == 415) {
		r->outcome = KANAL_OUTCOME_RETRY;
		snprintf(
			r->error, sizeof r->error,
			"%s; this is the connector's setup (token, certificate, base_url or path), "
			"not the letter: retrying",
			kc_http_describe(res, what, desc, sizeof desc));
		kanal_metric_add(ctx, "upstream_errors", 1);
		goto done;
	}
	r->outcome = (res->status >= 200 && res->status < 300) ? KANAL_OUTCOME_REJECT
							       : kc_http_outcome(ctx, res, what);
	if (r->outcome == KANAL_OUTCOME_RETRY) {
		kc_http_describe(res, what, r->error, sizeof r->error);
		kanal_metric_add(ctx, "upstream_errors", 1);
	} else if (*code) {
		/* The platform's reason may be long: it is cut to what the error holds. */
		snprintf(r->error, sizeof r->error, "%s: %ld %.40s: %.200s", what, res->status,
			 code, *text ? text : "(no reason given)");
	} else {
		kc_http_describe(res, what, r->error, sizeof r->error);
	}
done:
	xmlFreeDoc(doc);
}

/* ---- the token ------------------------------------------------------------------------------ */

/* The Authorization header line for the service entity_id into *header_out (malloc'd; the
 * caller wipes and frees it), or NULL when no token is configured: with the function
 * certificate, kc_sts's access token for that entity ID (issued over mutual TLS, exchanged at
 * AccessTokenService_1, cached and renewed); else the static token of token/token_file
 * (tests). Returns 0, or kc_sts's code with r set: the certificate (KANAL_ECONFIG) and a
 * refusal (KANAL_EREJECTED) are the connector's setup, not the letter's fault, so RETRY —
 * the letters wait, as dead letters in the end, for a replay once an operator fixed it. */
static int s_authorization(kanal_ctx_t *ctx, const dp_t *dp, const char *entity_id,
			   char **header_out, dp_result_t *r)
{
	kanal_error_t err;
	int rc;

	*header_out = NULL;
	if (!dp->sts) {
		if (dp->access_token &&
		    asprintf(header_out, "Authorization: Holder-of-key %s", dp->access_token) < 0) {
			*header_out = NULL;
			rc = KANAL_ENOMEM;
			goto fail;
		}
		return 0;
	}
	kanal_error_clear(&err);
	if ((rc = kc_sts_authorization(dp->sts, entity_id, header_out, &err)) == 0)
		return 0;
	snprintf(r->error, sizeof r->error, "no SF1514 token for %.100s: %.380s", entity_id,
		 err.text);
	kanal_metric_add(ctx, "token_errors", 1);
	r->outcome = KANAL_OUTCOME_RETRY;
	return rc;
fail:
	snprintf(r->error, sizeof r->error, "no token for %s: %s", entity_id, kanal_strerror(rc));
	r->outcome = KANAL_OUTCOME_RETRY;
	return rc;
}

/* Calls the service with the SF1601 headers: Holder-of-key token, a fresh x-TransaktionsId
 * (logged, so a call can be traced with Serviceplatformen's helpdesk) and x-TransaktionsTid
 * in UTC. A 401 with an SF1514 token means the token is no longer good: it is forgotten and
 * the call made once more with a new one. Returns false with r set (RETRY) when no token
 * could be had; res then holds nothing. */
static bool s_call(kanal_ctx_t *ctx, const dp_t *dp, const char *method, const char *url,
		   const char *entity_id, const char *accept, const char *body, size_t len,
		   kc_response_t *res, dp_result_t *r)
{
	char txid[80], txtime[64], stamp[KANAL_TIME_RFC3339_SIZE], uuid[37], ctype[64] = "",
									     acc[64], nonce[40];
	const char *headers[6];

	for (int attempt = 0; attempt < 2; attempt++) {
		char *auth = NULL;
		size_t n = 0;

		if (s_authorization(ctx, dp, entity_id, &auth, r) != 0)
			return false;
		snprintf(nonce, sizeof nonce, "%lld-%d", (long long)kanal_wall_ms(), rand());
		dp_uuid(entity_id, nonce, "transaction", uuid);
		snprintf(txid, sizeof txid, "x-TransaktionsId: %s", uuid);
		kanal_time_rfc3339(kanal_wall_ms(), stamp, sizeof stamp);
		/* YYYY-MM-DDThh:mm:ssZ: the milliseconds are left out. */
		snprintf(txtime, sizeof txtime, "x-TransaktionsTid: %.19sZ", stamp);
		snprintf(acc, sizeof acc, "Accept: %s", accept);
		headers[n++] = txid;
		headers[n++] = txtime;
		headers[n++] = acc;
		if (body) {
			snprintf(ctype, sizeof ctype,
				 "Content-Type: application/xml; charset=utf-8");
			headers[n++] = ctype;
		}
		if (auth)
			headers[n++] = auth;
		headers[n] = NULL;
		kanal_log(ctx, KANAL_LOG_DEBUG, "%s %s: x-TransaktionsId %s", method, url, uuid);
		kc_http_request(dp->http, method, url, headers, body, len, res);
		if (auth) {
			explicit_bzero(auth, strlen(auth));
			free(auth);
		}
		if (res->status != 401 || !dp->sts || attempt > 0)
			break;
		kanal_log(ctx, KANAL_LOG_INFO, "%s answered 401: renewing the token for %s", url,
			  entity_id);
		kc_sts_forget(dp->sts, entity_id);
		kc_response_clear(res);
		*res = (kc_response_t){ .retry_after_ms = -1 };
	}
	return true;
}

/* PostForespoerg: can this citizen receive Digital Post? 1 yes, 0 no, or -1 when the
 * service did not answer clearly (r set to RETRY). Answers are kept forespoerg_cache. */
static int s_forespoerg(kanal_ctx_t *ctx, dp_t *dp, const char cpr[11], dp_result_t *r)
{
	int64_t now = kanal_wall_ms();
	kc_response_t res = { .retry_after_ms = -1 };
	char url[1024], what[300];
	json_t *j = NULL;
	int answer = -1;

	for (size_t i = 0; i < DP_FORESPOERG_CACHE; i++)
		if (!strcmp(dp->forespoerg[i].cpr, cpr) &&
		    now - dp->forespoerg[i].at_ms < dp->forespoerg_cache_ms)
			return dp->forespoerg[i].result;
	snprintf(url, sizeof url, "%s?cprNumber=%s", dp->forespoerg_url, cpr);
	/* The number is in the URL the service needs; errors name the endpoint only. */
	snprintf(what, sizeof what, "GET %s", dp->forespoerg_url);
	kanal_metric_add(ctx, "forespoerg_requests", 1);
	if (!s_call(ctx, dp, "GET", url, dp->entity_forespoerg, "application/json", NULL, 0, &res,
		    r)) {
		explicit_bzero(url, sizeof url);
		return -1;
	}
	explicit_bzero(url, sizeof url);
	if (res.status == 200 && res.body)
		j = json_loadb(res.body, res.len, 0, NULL);
	if (j && json_is_boolean(json_object_get(j, "result"))) {
		struct dp_forespoerg *e =
			&dp->forespoerg[dp->forespoerg_next++ % DP_FORESPOERG_CACHE];
		answer = json_is_true(json_object_get(j, "result"));
		memcpy(e->cpr, cpr, sizeof e->cpr);
		e->result = answer;
		e->at_ms = now;
	} else {
		char desc[300];
		r->outcome = KANAL_OUTCOME_RETRY;
		snprintf(r->error, sizeof r->error,
			 "%s: no clear answer whether the recipient can receive Digital Post; "
			 "retrying: %s",
			 what, kc_http_describe(&res, "answer", desc, sizeof desc));
		kanal_metric_add(ctx, "upstream_errors", 1);
	}
	json_decref(j);
	kc_response_clear(&res);
	return answer;
}

/* Reads the postal address for the print part from the route's CPR lookup
 * (data.recipient: name.addressing or first/last, address.*). Returns false with r set to
 * REJECT when it is missing or withheld (a protected address is never printed from here). */
static bool s_read_address(const kanal_msg_t *msg, dp_letter_t *l, char *name, size_t size,
			   dp_result_t *r)
{
	dp_address_t *a = &l->address;
	const char *first = NULL, *last = NULL, *v;
	bool protected_address = false;

	kanal_msg_data_bool(msg, "recipient.protected_address", &protected_address);
	kanal_msg_data_str(msg, "recipient.name.first", &first);
	kanal_msg_data_str(msg, "recipient.name.last", &last);
	if (first && last)
		snprintf(name, size, "%s %s", first, last);
	else if (kanal_msg_data_str(msg, "recipient.name.addressing", &v) == 0)
		snprintf(name, size, "%s", v);
	else
		name[0] = '\0';
	a->name = name;
	kanal_msg_data_str(msg, "recipient.address.street", &a->street);
	kanal_msg_data_str(msg, "recipient.address.number", &a->building);
	kanal_msg_data_str(msg, "recipient.address.floor", &a->floor);
	kanal_msg_data_str(msg, "recipient.address.door", &a->suite);
	kanal_msg_data_str(msg, "recipient.address.postcode", &a->postcode);
	kanal_msg_data_str(msg, "recipient.address.city", &a->city);
	kanal_msg_data_str(msg, "recipient.address.co", &a->co);
	/* The register may zero-pad the house number (contract 2): the print wants none. */
	while (a->building && a->building[0] == '0' && a->building[1])
		a->building++;
	if (!*name || !a->street || !a->building || !a->postcode) {
		s_invalid(r, "recipient.address",
			  protected_address
				  ? "withheld (protected address): the platform's print "
				    "cannot be used; route it to a print that may hold it"
				  : "missing: the print part needs the full postal address "
				    "from the CPR lookup (enrich into data.recipient)");
		return false;
	}
	return true;
}

/* ---- delivery ---------------------------------------------------------------------------- */

/* Decides the KombiValgKode: NemSMS by the channel; else by the strategy — platform:
 * Automatisk Valg; kanal: PostForespoerg, then Digital Post, or paper (Fysisk Post through
 * the service, or a REJECT for the route's fallback). Sets l's parts and why; returns false
 * with r set when the letter does not go to the service. */
static bool s_choose(kanal_ctx_t *ctx, dp_t *dp, const kanal_msg_t *msg, dp_letter_t *l, char *name,
		     size_t name_size, char *why, size_t why_size, dp_result_t *r)
{
	const char *strategy = dp->strategy;
	int can;

	l->with_memo = true;
	if (!strcmp(dp->channel, "NemSMS")) {
		l->kombi = DP_KOMBI_NEMSMS;
		snprintf(why, why_size, "NemSMS by the instance's channel");
		return true;
	}
	if (!s_opt_str(msg, "channel_strategy", &strategy, r))
		return s_invalid(r, "channel_strategy", "not a string");
	if (!strategy)
		strategy = dp->strategy;
	if (strcmp(strategy, "kanal") && strcmp(strategy, "platform"))
		return s_invalid(r, "channel_strategy", "must be kanal or platform");
	if (!strcmp(strategy, "platform")) {
		if (!s_read_address(msg, l, name, name_size, r))
			return false;
		l->kombi = DP_KOMBI_AUTO;
		l->with_print = true;
		snprintf(why, why_size,
			 "the platform chooses (Automatisk Valg): Digital Post when "
			 "the recipient can receive it, else its print");
		return true;
	}
	if ((can = s_forespoerg(ctx, dp, l->recipient, r)) < 0)
		return false;
	if (can) {
		l->kombi = DP_KOMBI_DIGITAL;
		snprintf(why, why_size, "PostForespoerg: the recipient can receive Digital Post");
		return true;
	}
	if (!strcmp(dp->print, "service")) {
		if (!s_read_address(msg, l, name, name_size, r))
			return false;
		l->kombi = DP_KOMBI_PHYSICAL;
		l->with_memo = false;
		l->with_print = true;
		snprintf(why, why_size,
			 "PostForespoerg: the recipient cannot receive Digital Post; "
			 "printed by the service (Fysisk Post)");
		return true;
	}
	r->outcome = KANAL_OUTCOME_REJECT;
	snprintf(r->error, sizeof r->error,
		 "not-enrolled: PostForespoerg says the recipient cannot receive Digital Post; "
		 "the letter goes to the route's fallback");
	kanal_metric_add(ctx, "not_enrolled", 1);
	return false;
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	dp_t *dp = state;
	dp_result_t r = { .outcome = KANAL_OUTCOME_OK };
	dp_letter_t l = { 0 };
	kanal_cpr_t cpr;
	const char *cpr_text = NULL;
	char why[160], created[KANAL_TIME_RFC3339_SIZE], name[256], reason[256] = "";
	kanal_error_t cpr_err;
	kc_response_t res = { .retry_after_ms = -1 };
	char *body = NULL;
	size_t body_len = 0;
	bool cpr_ok = false;
	int64_t ms;
	int rc;

	s_blob_content_clear(dp); /* the previous letter's */
	if (strcmp(kanal_msg_type(msg), "post.letter.send")) {
		kanal_set_error(ctx, "digitalpost takes post.letter.send, not %s (check the route)",
				kanal_msg_type(msg));
		return KANAL_OUTCOME_REJECT;
	}
	if (dp_uuid(kanal_msg_source(msg), kanal_msg_id(msg), "", l.message_uuid) != 0 ||
	    dp_uuid(kanal_msg_source(msg), kanal_msg_id(msg), "print", l.print_id) != 0 ||
	    dp_uuid(kanal_msg_source(msg), kanal_msg_id(msg), "reservation",
		    l.actions[0].reservation_uuid) != 0) {
		kanal_set_error(ctx, "digitalpost: cannot compute the messageUUID (no SHA-1)");
		return KANAL_OUTCOME_RETRY;
	}

	/* The recipient's number, for the pseudonym in the status even when the letter fails. */
	kanal_error_clear(&cpr_err);
	if (kanal_msg_data_str(msg, "recipient_cpr", &cpr_text) == 0)
		cpr_ok = kanal_cpr_parse(cpr_text, &cpr, &cpr_err) == 0;
	snprintf(why, sizeof why, "%.150s", cpr_err.text);

	/* 1. What the route's CPR lookup already says: not enrolled means paper, no call. */
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
	l.message_type = !strcmp(dp->channel, "NemSMS") ? "NEMSMS" : "DIGITALPOST";
	l.memo_version = !strcmp(dp->memo_version, "1.1") ? 11 : 12;
	l.message_id = kanal_msg_id(msg);
	l.print_type = dp->print_type;
	if (l.message_type[0] == 'N')
		l.notification = l.label;
	/* MeMo wants UTC ("…Z"): the event's time, converted; else now. */
	if (!kanal_msg_time(msg) || kanal_time_parse_rfc3339(kanal_msg_time(msg), &ms) != 0)
		ms = kanal_wall_ms();
	kanal_time_rfc3339(ms, created, sizeof created);
	l.created = created;

	/* 3. The channel: who decides, and what they decided. */
	if (!s_choose(ctx, dp, msg, &l, name, sizeof name, reason, sizeof reason, &r)) {
		if (r.outcome == KANAL_OUTCOME_REJECT && strncmp(r.error, "not-enrolled", 12))
			kanal_metric_add(ctx, "invalid", 1);
		goto finish;
	}
	if (!(body = dp_kombi_build(&l, &body_len))) {
		kanal_set_error(ctx, "digitalpost: out of memory building the kombi_request");
		return KANAL_OUTCOME_RETRY;
	}

	/* 4. The service. */
	kanal_metric_add(ctx, "requests", 1);
	if (s_call(ctx, dp, "POST", dp->url, dp->entity_kombi, "application/xml", body, body_len,
		   &res, &r))
		s_answer(ctx, dp, &res, &r);
	explicit_bzero(body, body_len);
	free(body);
	kc_response_clear(&res);
	if (r.outcome == KANAL_OUTCOME_REJECT)
		kanal_metric_add(ctx, "refused", 1);

finish:
	if (r.outcome == KANAL_OUTCOME_OK) {
		char text[512], pseudonym[KANAL_PSEUDONYM_SIZE];
		const char *corr = kanal_msg_attr(msg, "correlationid");
		dp_sent_t sent = { .message_uuid = l.message_uuid,
				   .print_id = l.print_id,
				   .transaction = r.transaction,
				   .letter = kanal_msg_id(msg),
				   .letter_source = kanal_msg_source(msg),
				   .correlationid = corr ? corr : kanal_msg_id(msg),
				   .traceparent = kanal_msg_attr(msg, "traceparent"),
				   .subject = s_subject(dp, msg, cpr_text, pseudonym),
				   .kombi = l.kombi,
				   .sender = kanal_msg_data_json(msg, "sender"),
				   .area = kanal_msg_attr(msg, KC_STATUS_AREA_ATTR),
				   .channel_rank = kanal_msg_attr(msg, KC_STATUS_RANK_ATTR) };

		/* With receipts, acceptance is not the outcome: remember the letter for its
		 * PKO_PostStatus; the status says "accepted" now and the final one comes later. */
		rc = dp->receipts ? dp_receipts_track(dp->receipts, &sent) : 0;
		kanal_free(sent.sender);
		if (rc != 0) {
			kanal_set_error(
				ctx,
				"letter accepted (TransmissionID %s) but it cannot be "
				"remembered for its receipt (%s); retrying, the service will "
				"not send it twice",
				r.transaction, kanal_strerror(rc));
			return KANAL_OUTCOME_RETRY;
		}
		snprintf(text, sizeof text, "%s: %s", l.kombi, reason);
		rc = s_emit_status(ctx, dp, msg, l.message_uuid, cpr_text,
				   dp->receipts ? "accepted" : "sent", text, r.transaction,
				   l.kombi);
		kanal_metric_add(ctx, "sent", 1);
		kanal_log(ctx, KANAL_LOG_INFO, "letter %s accepted as '%s': TransmissionID %s",
			  kanal_msg_id(msg), l.kombi, r.transaction);
		/* The letter is with the service; only its status is missing. Another delivery
		 * is the same letter to the service, so a RETRY costs no second letter. */
		if (rc == KANAL_EBUSY || rc == KANAL_ECLOSED) {
			kanal_set_error(
				ctx,
				"letter accepted (TransmissionID %s) but its status event was "
				"not accepted (%s); retrying, the service will not send it "
				"twice",
				r.transaction, kanal_strerror(rc));
			kanal_set_retry_after(ctx, DP_EMIT_BUSY_RETRY_MS);
			return KANAL_OUTCOME_RETRY;
		}
		if (rc != 0 && rc != KANAL_EDUPLICATE)
			kanal_log(ctx, KANAL_LOG_ERROR, "letter %s: status event refused: %s",
				  kanal_msg_id(msg), kanal_strerror(rc));
		return KANAL_OUTCOME_OK;
	}
	kanal_set_error(ctx, "%s", r.error);
	if (r.outcome == KANAL_OUTCOME_REJECT) {
		rc = s_emit_status(ctx, dp, msg, l.message_uuid, cpr_ok ? cpr_text : NULL, "failed",
				   r.error, NULL, l.kombi);
		if (rc != 0 && rc != KANAL_EDUPLICATE)
			kanal_log(ctx, KANAL_LOG_WARN, "letter %s: 'failed' status not emitted: %s",
				  kanal_msg_id(msg), kanal_strerror(rc));
		kanal_log(ctx, KANAL_LOG_INFO, "letter %s not sent digitally: %s",
			  kanal_msg_id(msg), r.error);
	}
	return r.outcome;
}

/* Starts the receipts' listener, when there is one. */
static int s_start(kanal_ctx_t *ctx, void *state)
{
	dp_t *dp = state;

	return dp->receipts ? dp_receipts_start(dp->receipts, ctx) : 0;
}

static void s_stop(kanal_ctx_t *ctx, void *state, int64_t deadline_ms)
{
	dp_t *dp = state;

	(void)deadline_ms;
	dp_receipts_stop(dp->receipts, ctx);
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "digitalpost",
	.version = "2.0.0",
	.description = "Sends post.letter.send to SF1601 KombiPostAfsend (MeMo 1.1/1.2, print "
		       "part); digital first by PostForespoerg or the platform's Automatisk Valg.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.stop = s_stop,
	.destroy = s_destroy,
	.check = s_check,
};
