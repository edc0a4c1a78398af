/*
 * plugins/cpr/cpr.c — the cpr plugin: a service that answers CPR lookups. Enrich steps of
 * routes (`enrich: [{service: cpr, into: data.person, purpose: …}]`) and plugins calling
 * kanal_request send it an event; it finds the CPR number in the event, validates it
 * (syntax, date and century strictly; modulus 11 only warned about), asks the CPR lookup
 * service (SOAP 1.1, PersonLookup — see soap.c), and replies with a person.lookup.response
 * whose data is the person (docs/message-types.md).
 *
 * Three duties come with the personal data:
 *   - Address protection (adressebeskyttelse): the address and the addressing name of a
 *     protected person are left out of the reply unless the request asks for them
 *     (`kanalprotected: true`, set by an enrich step with `protected_address: true`) AND
 *     its route is one the operator allowed (option protected_address_routes). The reply
 *     says `protected_address: true` either way.
 *   - The audit log: one JSON line per lookup (cache hits and failures too) with the time,
 *     instance, route, purpose, correlation id, the masked number and the outcome — never
 *     a name or an address. Appended with O_APPEND and fsync'd line by line before the
 *     answer leaves; an instance whose audit log cannot be opened does not start, and a
 *     lookup whose line cannot be written is not answered (RETRY).
 *   - The cache keeps full answers in memory only (cache.c), for cache_ttl, and the
 *     protection rule is applied to every reply, cached or not.
 *
 * Lookups run on worker threads (pool.c, option `concurrency`) wherever the host can defer an
 * answer (kanal_request_defer): several at once, and one whose caller gave up is cancelled
 * and never answered (docs/design/service-concurrency.md). Elsewhere on_message answers.
 *
 * Outcomes: a number that is missing or invalid, and a fault of the service (unknown PNR,
 * bad invocation context) are REJECTed with the reason; no answer, HTTP 5xx, a timeout, or
 * an answer that is not a usable SOAP message are RETRY — an enrich step then fails or
 * skips as its route's on_error says.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libxml/parser.h>

#include <kanal/kanal.h>

#include "../common/kc_cert.h"
#include "../common/kc_files.h"
#include "../common/kc_http.h"
#include "../common/kc_sts.h"
#include "cpr_int.h"

/* Most children of one parent looked up to find those in the parent's custody. */
#define CPR_MAX_CHILDREN 20

typedef struct cpr {
	const char *instance;      /* borrowed from the ctx */
	const kanal_config_t *cfg; /* borrowed; lists are read from it */
	/* Bound options (s_options), borrowed from the config. */
	const char *endpoint, *soap_action, *entity_id;
	int64_t version;
	bool resolve_children;
	cpr_soap_opts_t soap;
	char action_buf[512];     /* the SOAPAction when soap_action is unset */
	kc_http_conf_t http_conf; /* timeout, ca_file, client_cert/key, allow_plain_http */
	kc_cert_conf_t cert_conf; /* certificate_p12, certificate, certificate_key, … */
	kc_sts_opts_t sts_opts;   /* cvr, sts_url, sts_soap_url, sts_soap, renewal, skew */
	kc_cert_t *cert;          /* the function certificate, NULL: none configured */
	kc_sts_t *sts;            /* v5: the token client */
	int64_t max_response, cache_ttl_ms, cache_max;
	const char *key_path; /* pseudonym_key */
	kc_http_t *http;
	cpr_cache_t *cache; /* NULL: off */
	const char *audit_path;
	int audit_fd;
	kanal_pseudonym_key_t *pseudonym_key;
	/* Concurrent lookups (pool.c): `concurrency` workers, each with its own HTTP client
	 * (a libcurl handle serves one thread); the cache and the audit log are shared under
	 * `mu`, the v5 token client under `sts_mu`. */
	int64_t concurrency;
	kc_http_t *clients[CPR_POOL_MAX];
	cpr_pool_t *pool;     /* NULL: lookups run in on_message, one at a time */
	struct job *inflight; /* jobs handed to the workers (instance thread only) */
	bool stopping;
	pthread_mutex_t mu, sts_mu;
} cpr_t;

static const kanal_option_t s_options[] = {
	{ .name = "endpoint",
	  .type = KANAL_OPT_STRING,
	  .required = true,
	  KANAL_OPT_AT(cpr_t, endpoint),
	  .help = "URL the PersonLookup SOAP requests are POSTed to: "
		  "https://exttest.serviceplatformen.dk/"
		  "service/CPR/PersonBaseDataExtended/4 (test), prod.serviceplatformen.dk "
		  "(production)." },
	{ .name = "version",
	  .type = KANAL_OPT_INT,
	  .default_value = "4",
	  .min = "4",
	  .max = "5",
	  KANAL_OPT_AT(cpr_t, version),
	  .help = "SF1520 version: 4 (mutual TLS + InvocationContext) or 5 (a SAML token from the "
		  "STS, "
		  "SF1514, in a signed WS-Security header)." },
	{ .name = "service_agreement_uuid",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(cpr_t, soap.agreement),
	  .help = "v4 InvocationContext ServiceAgreementUUID: the municipality's service "
		  "agreement." },
	{ .name = "user_system_uuid",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(cpr_t, soap.usersystem),
	  .help = "v4 InvocationContext UserSystemUUID: the IT system (anvendersystem) registered "
		  "as "
		  "the caller." },
	{ .name = "user_uuid",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(cpr_t, soap.user),
	  .help = "v4 InvocationContext UserUUID: the municipality (authority) the call is made "
		  "for." },
	{ .name = "service_uuid",
	  .type = KANAL_OPT_STRING,
	  .default_value = CPR_SERVICE_UUID_V4,
	  KANAL_OPT_AT(cpr_t, soap.service),
	  .help = "v4 InvocationContext ServiceUUID: SF1520's id (the default is the "
		  "contract's)." },
	{ .name = "municipality_cvr",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(cpr_t, soap.cvr),
	  .help = "v5: AuthorityContext MunicipalityCVR (8 digits) sent with each request; unset: "
		  "not sent (the CVR is in the token)." },
	{ .name = "entity_id",
	  .type = KANAL_OPT_STRING,
	  .default_value = CPR_ENTITY_V5,
	  KANAL_OPT_AT(cpr_t, entity_id),
	  .help = "v5: the service's entity id the STS token is asked for (AppliesTo)." },
	{ .name = "namespace",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(cpr_t, soap.ns),
	  .help = "XML namespace of PersonLookupRequest; unset: the contract's for the version." },
	{ .name = "context_namespace",
	  .type = KANAL_OPT_STRING,
	  .default_value = CPR_NS_INVCTX,
	  KANAL_OPT_AT(cpr_t, soap.ctx_ns),
	  .help = "XML namespace of InvocationContext and its UUID elements." },
	{ .name = "soap_action",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(cpr_t, soap_action),
	  .help = "SOAPAction header of every request; unset: <namespace>PersonLookup." },
	{ .name = "resolve_children",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "true",
	  KANAL_OPT_AT(cpr_t, resolve_children),
	  .help = "Look up each child of a parent (at most 20) to list, in relations.custody_of, "
		  "the children the parent has custody of (the register keeps custody on the "
		  "child)." },
	KC_HTTP_OPT_TIMEOUT(cpr_t, http_conf, "5s",
			    "Longest wait for one answer (connecting included); then RETRY."),
	{ .name = "max_response",
	  .type = KANAL_OPT_SIZE,
	  .default_value = "1MiB",
	  .min = "1",
	  KANAL_OPT_AT(cpr_t, max_response),
	  .help = "Largest answer read; a larger one is treated as no answer (RETRY)." },
	KC_HTTP_OPT_CA_FILE(cpr_t, http_conf),
	KC_HTTP_OPT_CLIENT_CERT(cpr_t, http_conf),
	KC_CERT_OPTS(cpr_t, cert_conf),
	{ .name = "cvr",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(cpr_t, sts_opts.cvr),
	  .help = "v5: the municipality's CVR (8 digits) the STS token is issued for." },
	{ .name = "sts_url",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(cpr_t, sts_opts.issue_url),
	  .help = "v5: the STS's REST issue endpoint: https://n2adgangsstyring.eksterntest-"
		  "stoettesystemerne.dk/runtime/api/rest/wstrust/v1/issue (test), without "
		  "'eksterntest-' in production." },
	{ .name = "sts_soap_url",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(cpr_t, sts_opts.soap_url),
	  .help = "v5: the STS's SOAP WS-Trust endpoint (…/runtime/services/kombittrust/14/"
		  "certificatemixed), used with sts_soap." },
	{ .name = "sts_soap",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "false",
	  KANAL_OPT_AT(cpr_t, sts_opts.use_soap),
	  .help = "v5: ask the SOAP STS (sts_soap_url) for tokens instead of the REST one." },
	{ .name = "token_renew_before",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "5m",
	  .min = "0",
	  KANAL_OPT_AT(cpr_t, sts_opts.renew_before_ms),
	  .help = "v5: renew a token this long before it expires." },
	{ .name = "clock_skew",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "2m",
	  .min = "0",
	  KANAL_OPT_AT(cpr_t, sts_opts.clock_skew_ms),
	  .help = "Allowance for clocks that disagree, on the certificate's validity and on token "
		  "expiry." },
	{ .name = "cpr_fields",
	  .type = KANAL_OPT_LIST,
	  .default_value = "[cpr, child_cpr, employee_cpr, recipient_cpr]",
	  .help = "Data fields holding the CPR number of an event that is not a "
		  "person.lookup.request; "
		  "the first present is used." },
	{ .name = "protected_address_routes",
	  .type = KANAL_OPT_LIST,
	  .default_value = "[]",
	  .help = "Routes that may receive a protected address (adressebeskyttelse) when they ask "
		  "for it "
		  "(enrich step with protected_address: true)." },
	{ .name = "cache_ttl",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "5m",
	  .min = "0",
	  KANAL_OPT_AT(cpr_t, cache_ttl_ms),
	  .help = "How long an answer is kept in memory and reused; 0 turns the cache off." },
	{ .name = "cache_max",
	  .type = KANAL_OPT_INT,
	  .default_value = "10000",
	  .min = "1",
	  .max = "1000000",
	  KANAL_OPT_AT(cpr_t, cache_max),
	  .help = "Most answers kept in the cache; the oldest goes first." },
	{ .name = "audit_log",
	  .type = KANAL_OPT_PATH,
	  .required = true,
	  KANAL_OPT_AT(cpr_t, audit_path),
	  .help = "File every lookup is appended to (one JSON line, fsync'd; created 0600). The "
		  "instance does not start when it cannot be opened." },
	{ .name = "pseudonym_key",
	  .type = KANAL_OPT_PATH,
	  KANAL_OPT_AT(cpr_t, key_path),
	  .help = "Key file (0600) for the replies' subject: person:<HMAC of the CPR number>." },
	KC_URL_OPT_ALLOW_PLAIN_HTTP(cpr_t, http_conf.allow_plain_http),
	{ .name = "concurrency",
	  .type = KANAL_OPT_INT,
	  .default_value = "4",
	  .min = "1",
	  .max = "64",
	  KANAL_OPT_AT(cpr_t, concurrency),
	  .help = "Lookups asked of the service at once (worker threads); a slow one holds up "
		  "only its own request. A request whose caller gave up is cancelled." },
	{ .name = NULL },
};

/* What one lookup is about: who asks, why, and for which number. */
typedef struct lookup {
	const char *route;       /* NULL: not known */
	const char *purpose;     /* NULL: not given */
	const char *correlation; /* correlationid, else the request's id */
	bool asks_protected;     /* kanalprotected: true */
	const char *field;       /* where the number was found ("child_cpr") */
	kanal_cpr_t cpr;         /* the parsed number (digits without hyphen) */
	char masked[16];         /* DDMMYY-XXXX */
} lookup_t;

/* A lookup run by a worker (pool.c) for a deferred request (kanal_request_defer). A worker
 * may not use the host's services, so what the lookup would say through them — the error,
 * the retry hint, metrics, log lines, the upstream's state — is kept here and said on the
 * instance's thread when the job is done (s_job_done). */
typedef struct job {
	cpr_task_t task; /* first: the pool's view */
	cpr_t *c;
	kanal_pending_t *pending;
	kanal_msg_t *req; /* a copy of the request: lk's strings point into it */
	char *route;
	lookup_t lk;
	kc_http_t *http; /* the worker's client while it runs */
	json_t *person;
	kanal_outcome_t out;
	char audit[80];
	char error[512];
	int64_t retry_after_ms;
	int upstream; /* -1: no call made; else the last call's answer said up (1) or down */
	struct {
		const char *name; /* a string literal */
		int64_t delta;
	} metrics[12];
	size_t n_metrics;
	struct {
		kanal_log_level_t level;
		char text[240];
	} logs[6];
	size_t n_logs;
	/* Requests for the same number that came while this job was running: they take its
	 * answer (a cache hit, as when they came one after the other) instead of asking the
	 * register again. Instance thread only. */
	struct job *followers, *next_follower;
	struct job *inflight_next;
} job_t;

/* The job the calling worker runs; NULL on the instance's thread. */
static __thread job_t *t_job;

/* kanal_set_error, or on a worker the job's error. */
static void s_err(kanal_ctx_t *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_err(kanal_ctx_t *ctx, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (t_job)
		snprintf(t_job->error, sizeof t_job->error, "%s", text);
	else
		kanal_set_error(ctx, "%s", text);
}

/* kanal_metric_add, or on a worker kept for the job's end. `name` is a literal. */
static void s_metric(kanal_ctx_t *ctx, const char *name, int64_t delta)
{
	if (!t_job) {
		kanal_metric_add(ctx, name, delta);
		return;
	}
	for (size_t i = 0; i < t_job->n_metrics; i++) {
		if (!strcmp(t_job->metrics[i].name, name)) {
			t_job->metrics[i].delta += delta;
			return;
		}
	}
	if (t_job->n_metrics < sizeof t_job->metrics / sizeof *t_job->metrics) {
		t_job->metrics[t_job->n_metrics].name = name;
		t_job->metrics[t_job->n_metrics++].delta = delta;
	}
}

/* kanal_log, or on a worker kept for the job's end (CPR-masked then, by kanal_log). */
static void s_log(kanal_ctx_t *ctx, kanal_log_level_t level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void s_log(kanal_ctx_t *ctx, kanal_log_level_t level, const char *fmt, ...)
{
	char text[240];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (!t_job) {
		kanal_log(ctx, level, "%s", text);
	} else if (level != KANAL_LOG_DEBUG &&
		   t_job->n_logs < sizeof t_job->logs / sizeof *t_job->logs) {
		t_job->logs[t_job->n_logs].level = level;
		snprintf(t_job->logs[t_job->n_logs++].text, sizeof t_job->logs[0].text, "%s", text);
	}
}

/* kc_http_outcome, with the error and the retry hint said as s_err does. */
static kanal_outcome_t s_http_outcome(kanal_ctx_t *ctx, const kc_response_t *res, const char *what)
{
	kanal_outcome_t out;

	if (!t_job)
		return kc_http_outcome(ctx, res, what);
	out = kc_http_outcome(NULL, res, what);
	if (out != KANAL_OUTCOME_OK) {
		char why[512];
		s_err(ctx, "%s", kc_http_describe(res, what, why, sizeof why));
		if (out == KANAL_OUTCOME_RETRY)
			t_job->retry_after_ms = res->retry_after_ms;
	}
	return out;
}

/* ---- the audit log ---------------------------------------------------------------------- */

/* Opens the audit log for append, created 0600. Returns the fd or -1 with why filled. */
static int s_audit_open(const char *path, char *why, size_t size)
{
	struct stat st;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0) {
		snprintf(why, size, "cannot open the audit log %s for append: %s", path,
			 strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, size, "the audit log %s is not a regular file", path);
		close(fd);
		return -1;
	}
	return fd;
}

/* Appends one audit line and fsyncs it: {"time", "instance", "route", "purpose",
 * "correlationid", "cpr" (masked), "outcome"}. Returns 0, or -1 with the error set on ctx. */
static int s_audit(kanal_ctx_t *ctx, cpr_t *c, const lookup_t *lk, const char *outcome)
{
	char now[40], *line;
	json_t *j;
	size_t len, off = 0;
	int rc = 0;

	kanal_time_rfc3339(kanal_wall_ms(), now, sizeof now);
	j = json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:s, s:s}", "time", now, "instance",
		      c->instance, "route", lk->route, "purpose", lk->purpose, "correlationid",
		      lk->correlation, "cpr", lk->masked, "outcome", outcome);
	line = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(j);
	if (!line) {
		s_err(ctx, "audit log %s: out of memory", c->audit_path);
		return -1;
	}
	/* A purpose or an id could hold a number by mistake: the audit log holds none. */
	kanal_cpr_redact_inplace(line);
	len = strlen(line);
	line[len++] = '\n'; /* json_dumps leaves room: the NUL is replaced, the length kept */
	pthread_mutex_lock(&c->mu); /* workers write lines too: one whole line at a time */
	while (off < len) {
		ssize_t n = write(c->audit_fd, line + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = -1;
			break;
		}
		off += (size_t)n;
	}
	if (rc == 0 && fdatasync(c->audit_fd) != 0)
		rc = -1;
	pthread_mutex_unlock(&c->mu);
	free(line);
	if (rc != 0) {
		s_err(ctx, "audit log %s: cannot write: %s; the lookup is not answered",
		      c->audit_path, strerror(errno));
		s_log(ctx, KANAL_LOG_ERROR, "audit log %s: cannot write: %s", c->audit_path,
		      strerror(errno));
		s_metric(ctx, "audit_errors", 1);
	}
	return rc;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static void s_free(cpr_t *c)
{
	if (!c)
		return;
	kc_http_destroy(&c->http);
	for (size_t i = 0; i < CPR_POOL_MAX; i++)
		kc_http_destroy(&c->clients[i]);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->sts_mu);
	kc_sts_destroy(&c->sts);
	kc_cert_destroy(&c->cert);
	cpr_cache_destroy(&c->cache);
	if (c->audit_fd >= 0)
		close(c->audit_fd);
	kanal_pseudonym_key_destroy(&c->pseudonym_key);
	kc_http_conf_clear(&c->http_conf);
	free(c);
}

/* True when text is a UUID as the InvocationContext schema wants it: lower-case hex. */
static bool s_uuid_ok(const char *text)
{
	if (!text || strlen(text) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char ch = text[i];
		if ((i == 8 || i == 13 || i == 18 || i == 23)
			    ? ch != '-'
			    : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
			return false;
	}
	return true;
}

/* The options that depend on the version: v4's four InvocationContext UUIDs (all
 * required, lower-case), v5's CVR (8 digits) and its token. Returns 0 or -1 with the
 * error set on ctx. */
static int s_check_version(kanal_ctx_t *ctx, cpr_t *c)
{
	const char *names[] = { "service_agreement_uuid", "user_system_uuid", "user_uuid",
				"service_uuid" };
	const char *values[] = { c->soap.agreement, c->soap.usersystem, c->soap.user,
				 c->soap.service };

	c->soap.version = (int)c->version;
	if (!c->soap.ns)
		c->soap.ns = c->version == 5 ? CPR_NS_V5 : CPR_NS_V4;
	if (!c->soap_action) {
		snprintf(c->action_buf, sizeof c->action_buf, "%sPersonLookup", c->soap.ns);
		c->soap_action = c->action_buf;
	}
	if (c->version == 5) {
		size_t n = c->soap.cvr ? strlen(c->soap.cvr) : 8;
		if (n != 8 || (c->soap.cvr && strspn(c->soap.cvr, "0123456789") != 8)) {
			kanal_set_error(ctx, "option 'municipality_cvr': 8 digits");
			return -1;
		}
		if (!c->cert_conf.pkcs12_file && !c->cert_conf.cert_file) {
			kanal_set_error(ctx,
					"version 5 needs the function certificate the STS token "
					"is bound to: set certificate_p12 (or certificate and "
					"certificate_key)");
			return -1;
		}
		if (!c->sts_opts.cvr) {
			kanal_set_error(ctx, "option 'cvr' is required with version 5: the "
					     "municipality's CVR the STS token is issued for");
			return -1;
		}
		if (c->sts_opts.use_soap ? !c->sts_opts.soap_url : !c->sts_opts.issue_url) {
			kanal_set_error(ctx,
					"option '%s' is required with version 5%s: the STS "
					"endpoint tokens are asked from",
					c->sts_opts.use_soap ? "sts_soap_url" : "sts_url",
					c->sts_opts.use_soap ? " and sts_soap" : "");
			return -1;
		}
		return 0;
	}
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		if (!values[i]) {
			kanal_set_error(ctx,
					"option '%s' is required with version 4 (the "
					"InvocationContext)",
					names[i]);
			return -1;
		}
		if (!s_uuid_ok(values[i])) {
			kanal_set_error(ctx,
					"option '%s': a lower-case UUID "
					"(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), as the "
					"InvocationContext schema requires",
					names[i]);
			return -1;
		}
	}
	return 0;
}

/* Loads the function certificate (certificate_p12, or certificate and certificate_key),
 * refuses one that expired or is not yet valid, and makes it the TLS client certificate of
 * every call (*http). Reads files only. Returns 0 or -1 with the error set on ctx. */
static int s_load_certificate(kanal_ctx_t *ctx, cpr_t *c, kc_http_opts_t *http)
{
	kanal_error_t err;

	if (!c->cert_conf.pkcs12_file && !c->cert_conf.cert_file)
		return 0;
	if (c->cert_conf.pkcs12_file && c->cert_conf.cert_file) {
		kanal_set_error(ctx, "options 'certificate_p12' and 'certificate': set one");
		return -1;
	}
	if (c->http_conf.client_cert) {
		kanal_set_error(ctx,
				"options 'client_cert' and '%s': set one (the function "
				"certificate options replace client_cert and client_key)",
				c->cert_conf.pkcs12_file ? "certificate_p12" : "certificate");
		return -1;
	}
	kanal_error_clear(&err);
	if (kc_cert_load(&c->cert_conf, &c->cert, &err) != 0 ||
	    kc_cert_check_time(c->cert, kanal_wall_ms(), c->sts_opts.clock_skew_ms, &err) != 0) {
		kanal_set_error(ctx, "%s", err.text);
		return -1;
	}
	kc_cert_http_opts(c->cert, http);
	return 0;
}

/* With version 5, opens the STS token client on the certificate s_load_certificate
 * loaded. Returns 0 or -1 with the error set on ctx. */
static int s_open_sts(kanal_ctx_t *ctx, cpr_t *c)
{
	kanal_error_t err;

	if (c->version != 5 || !c->cert)
		return 0;
	c->sts_opts.ca_file = c->http_conf.ca_file;
	c->sts_opts.allow_plain_http = c->http_conf.allow_plain_http;
	c->sts_opts.timeout_ms = c->http_conf.timeout_ms;
	kanal_error_clear(&err);
	if (kc_sts_new(&c->sts_opts, c->cert, &c->sts, &err) != 0) {
		kanal_set_error(ctx, "%s", err.text);
		return -1;
	}
	return 0;
}

/* The rules init and check share (docs/sdk.md, "Checking a config"): the version's
 * options, the endpoint (kc_url_check's rule: CPR numbers and answers travel to it), the
 * cpr_fields entries, the pseudonym key, an audit log that can be appended to, the secret
 * files and the function certificate — files are read, never created. What it loads (key,
 * certificate, secrets) stays in c for init. Returns 0 or -1 after kanal_set_error. */
static int s_validate(kanal_ctx_t *ctx, cpr_t *c, kc_http_opts_t *http)
{
	kanal_error_t key_err;

	if (s_check_version(ctx, c) != 0)
		return -1;
	if (kc_url_check_option(ctx, "endpoint", c->endpoint, c->http_conf.allow_plain_http) != 0)
		return -1;
	for (size_t i = 0; i < kanal_config_list_count(c->cfg, "cpr_fields"); i++) {
		const char *f = kanal_config_list(c->cfg, "cpr_fields", i);
		if (!f || !*f) {
			kanal_set_error(ctx, "option 'cpr_fields': entry %zu is empty", i + 1);
			return -1;
		}
	}
	kanal_error_clear(&key_err);
	if (c->key_path &&
	    kanal_pseudonym_key_load(c->key_path, &c->pseudonym_key, &key_err) != 0) {
		kanal_set_error(ctx, "option 'pseudonym_key': %s", key_err.text);
		return -1;
	}
	/* Refuse to start rather than look people up without an audit trail. */
	if (kc_file_appendable(c->audit_path) != 0) {
		kanal_set_error(
			ctx, "option 'audit_log': cannot open the audit log %s for append: %s",
			c->audit_path,
			errno == ELOOP || errno == EISDIR ? "not a regular file" : strerror(errno));
		return -1;
	}
	if (kc_http_conf_open(ctx, &c->http_conf, http) != 0)
		return -1;
	return s_load_certificate(ctx, c, http);
}

/* A new state with the options bound, or NULL. */
static cpr_t *s_new(kanal_ctx_t *ctx, const kanal_config_t *cfg)
{
	cpr_t *c = calloc(1, sizeof *c);

	if (!c)
		return NULL;
	c->audit_fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->sts_mu, NULL);
	c->instance = kanal_instance_name(ctx);
	c->cfg = cfg;
	kanal_config_bind(cfg, c);
	return c;
}

static int s_check(kanal_ctx_t *ctx, const kanal_config_t *cfg)
{
	cpr_t *c = s_new(ctx, cfg);
	kc_http_opts_t http;
	int rc;

	if (!c)
		return KANAL_ENOMEM;
	rc = s_validate(ctx, c, &http) == 0 ? 0 : KANAL_ECONFIG;
	s_free(c);
	return rc;
}

/* After s_validate, opens what the instance needs: the cache, the audit log, the STS
 * client and the HTTP client. */
static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	cpr_t *c = s_new(ctx, cfg);
	kc_http_opts_t http;
	char why[512] = "";

	if (!c)
		return KANAL_ENOMEM;
	if (s_validate(ctx, c, &http) != 0)
		goto fail;
	if (c->cache_ttl_ms > 0 &&
	    !(c->cache = cpr_cache_new((size_t)c->cache_max, c->cache_ttl_ms))) {
		kanal_set_error(ctx, "out of memory for the cache");
		goto fail;
	}
	if ((c->audit_fd = s_audit_open(c->audit_path, why, sizeof why)) < 0) {
		kanal_set_error(ctx, "option 'audit_log': %s", why);
		goto fail;
	}
	if (s_open_sts(ctx, c) != 0)
		goto fail;
	http.max_body = (size_t)c->max_response;
	if (!(c->http = kc_http_new(&http))) {
		kanal_set_error(ctx, "out of memory for the HTTP client");
		goto fail;
	}
	/* One client per worker; a worker may not report to the instance itself (s_job_done
	 * does it for the job). */
	http.ctx = NULL;
	for (int64_t i = 0; i < c->concurrency; i++) {
		if (!(c->clients[i] = kc_http_new(&http))) {
			kanal_set_error(ctx, "out of memory for the HTTP clients");
			goto fail;
		}
	}
	/* init runs on kanald's main thread: the one place to initialise libxml2 safely. */
	xmlInitParser();
	*state = c;
	return 0;
fail:
	s_free(c);
	return KANAL_ECONFIG;
}

static void s_destroy(void *state)
{
	s_free(state);
}

/* ---- one lookup ------------------------------------------------------------------------- */

/* True when `route` is listed in protected_address_routes. */
static bool s_route_allowed(const cpr_t *c, const char *route)
{
	size_t n = kanal_config_list_count(c->cfg, "protected_address_routes");

	for (size_t i = 0; route && i < n; i++)
		if (!strcmp(kanal_config_list(c->cfg, "protected_address_routes", i), route))
			return true;
	return false;
}

/* Finds the number the request is about: data.cpr of a person.lookup.request, else the
 * first present of cpr_fields. Stores the field's name and its text. Returns 0, or
 * KANAL_ENOTFOUND / KANAL_EINVAL with the error set on ctx. */
static int s_find_cpr(kanal_ctx_t *ctx, const cpr_t *c, const kanal_msg_t *msg, const char **field,
		      const char **text)
{
	bool lookup = !strcmp(kanal_msg_type(msg), "person.lookup.request");
	size_t n = lookup ? 1 : kanal_config_list_count(c->cfg, "cpr_fields");

	for (size_t i = 0; i < n; i++) {
		const char *f = lookup ? "cpr" : kanal_config_list(c->cfg, "cpr_fields", i);
		int rc = kanal_msg_data_str(msg, f, text);

		if (rc == KANAL_ENOTFOUND)
			continue;
		if (rc != 0) {
			kanal_set_error(ctx, "data.%s is not a string: no CPR number to look up",
					f);
			return KANAL_EINVAL;
		}
		*field = f;
		return 0;
	}
	if (lookup) {
		kanal_set_error(ctx, "person.lookup.request without data.cpr");
	} else {
		char list[256] = "";
		for (size_t i = 0; i < n; i++) {
			size_t used = strlen(list);
			snprintf(list + used, sizeof list - used, "%sdata.%s", i ? ", " : "",
				 kanal_config_list(c->cfg, "cpr_fields", i));
		}
		kanal_set_error(ctx, "no CPR number in the event (looked at %s)", list);
	}
	return KANAL_ENOTFOUND;
}

/* The answer as this request may see it: a protected person's address and addressing
 * name are removed unless the request asks for them and its route is allowed. Returns a
 * new reference (a copy when anything is removed). */
static json_t *s_filtered(const cpr_t *c, json_t *person, const lookup_t *lk, bool *withheld)
{
	json_t *copy, *name;

	*withheld = false;
	if (!json_is_true(json_object_get(person, "protected_address")) ||
	    (lk->asks_protected && s_route_allowed(c, lk->route)))
		return json_incref(person);
	if (!(copy = json_deep_copy(person)))
		return NULL;
	json_object_del(copy, "address");
	if ((name = json_object_get(copy, "name")))
		json_object_del(name, "addressing");
	*withheld = true;
	return copy;
}

/* Sets attribute name on reply when value is given and holds no CPR number. */
static void s_copy_attr(kanal_msg_t *reply, const char *name, const char *value)
{
	size_t off, len;

	if (value && !kanal_cpr_find(value, strlen(value), &off, &len))
		kanal_msg_set_attr(reply, name, value, NULL);
}

/* Builds the reply: the person as this request may see it, in *reply_out. Returns OK, or
 * RETRY with the error set on ctx. Runs on the instance's thread. */
static kanal_outcome_t s_build_reply(kanal_ctx_t *ctx, cpr_t *c, const kanal_msg_t *req,
				     json_t *person, const lookup_t *lk, kanal_msg_t **reply_out)
{
	bool withheld;
	json_t *data = s_filtered(c, person, lk, &withheld);
	char *text = data ? json_dumps(data, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	kanal_msg_t *reply = kanal_msg_new("person.lookup.response", c->instance, NULL);

	*reply_out = NULL;
	json_decref(data);
	if (!text || !reply || kanal_msg_set_data_json(reply, text, strlen(text)) != 0) {
		if (text)
			memset(text, 0, strlen(text));
		free(text);
		kanal_msg_destroy(&reply);
		kanal_set_error(ctx, "out of memory building the reply");
		return KANAL_OUTCOME_RETRY;
	}
	memset(text, 0, strlen(text));
	free(text);
	s_copy_attr(reply, "causationid", kanal_msg_id(req));
	s_copy_attr(reply, "correlationid", lk->correlation);
	s_copy_attr(reply, "traceparent", kanal_msg_attr(req, "traceparent"));
	if (c->pseudonym_key) {
		char subject[KANAL_PSEUDONYM_SIZE];
		if (kanal_cpr_pseudonym(c->pseudonym_key, lk->cpr.digits, subject,
					sizeof subject) == 0)
			kanal_msg_set_attr(reply, "subject", subject, NULL);
	}
	if (withheld) {
		kanal_metric_add(ctx, "protected_withheld", 1);
		kanal_log(ctx, KANAL_LOG_INFO,
			  "lookup %s: protected address withheld from route '%s' (%s)", lk->masked,
			  lk->route ? lk->route : "(none)",
			  lk->asks_protected ? "route not in protected_address_routes"
					     : "the request does not ask for it");
	}
	*reply_out = reply;
	return KANAL_OUTCOME_OK;
}

/* Replies with the person as this request may see it. Returns the outcome. */
static kanal_outcome_t s_reply(kanal_ctx_t *ctx, cpr_t *c, const kanal_msg_t *req, json_t *person,
			       const lookup_t *lk)
{
	kanal_msg_t *reply = NULL;
	kanal_outcome_t out = s_build_reply(ctx, c, req, person, lk, &reply);
	int rc;

	if (out != KANAL_OUTCOME_OK)
		return out;
	rc = kanal_reply(ctx, req, &reply);
	if (rc != 0) {
		kanal_set_error(ctx, "cannot reply: %s", kanal_strerror(rc));
		return KANAL_OUTCOME_RETRY;
	}
	return KANAL_OUTCOME_OK;
}

/* Asks the service about lk's number once. On an answer stores it in *person (new
 * reference) and returns OK; otherwise sets the error and the audit outcome and returns
 * RETRY or REJECT, and *token_refused says whether the service refused the v5 token
 * (`renewed`: a token just issued, so the refusal's error says what to check). */
static kanal_outcome_t s_call_once(kanal_ctx_t *ctx, cpr_t *c, const lookup_t *lk, json_t **person,
				   char *audit, size_t audit_size, bool renewed,
				   bool *token_refused)
{
	const char *headers[3];
	char action[512];
	kc_response_t res;
	cpr_soap_result_t ans;
	kanal_outcome_t out;
	size_t len = 0;
	int rc_http;
	char *body = cpr_soap_request(&c->soap, lk->cpr.digits, &len);

	*person = NULL;
	*token_refused = false;
	if (!body) {
		s_err(ctx, "out of memory building the PersonLookup request");
		snprintf(audit, audit_size, "unavailable");
		return KANAL_OUTCOME_RETRY;
	}
	if (c->soap.version == 5) {
		kanal_error_t terr;

		int rc;

		kanal_error_clear(&terr);
		pthread_mutex_lock(&c->sts_mu);
		rc = cpr_token_secure(c->sts, c->cert, c->entity_id, c->soap_action, c->endpoint,
				      &body, &len, &terr);
		pthread_mutex_unlock(&c->sts_mu);
		if (rc != 0) {
			/* The certificate or a refusal by the STS needs an operator; no answer
			 * from the STS is worth another try. */
			bool retry = rc == KANAL_EIO || rc == KANAL_ETIMEDOUT || rc == KANAL_ENOMEM;
			memset(body, 0, len);
			free(body);
			s_err(ctx, "cpr service PersonLookup: no STS token: %s", terr.text);
			snprintf(audit, audit_size, retry ? "unavailable" : "error");
			s_metric(ctx, "token_errors", 1);
			return retry ? KANAL_OUTCOME_RETRY : KANAL_OUTCOME_REJECT;
		}
	}
	snprintf(action, sizeof action, "SOAPAction: \"%s\"", c->soap_action);
	headers[0] = "Content-Type: text/xml; charset=utf-8";
	headers[1] = action;
	headers[2] = NULL;
	s_metric(ctx, "upstream_calls", 1);
	rc_http = kc_http_request(t_job ? t_job->http : c->http, "POST", c->endpoint, headers, body,
				  len, &res);
	memset(body, 0, len);
	free(body);
	if (t_job) /* said to the instance at the job's end, as kc_http says it here */
		t_job->upstream =
			(rc_http == 0 || rc_http == KANAL_ETOOBIG) && res.status < 500 ? 1 : 0;

	if (res.status == 0) {
		out = s_http_outcome(ctx, &res, "cpr service PersonLookup");
		s_metric(ctx, "upstream_errors", 1);
		/* KANAL_ECLOSED: the request's caller gave up and the transfer was abandoned. */
		snprintf(audit, audit_size, rc_http == KANAL_ECLOSED ? "cancelled" : "unavailable");
		kc_response_clear(&res);
		return out;
	}
	cpr_soap_parse(res.body, res.len, lk->cpr.digits, &ans);
	*token_refused = c->sts && cpr_token_refused(res.status, &ans);
	switch (ans.kind) {
	case CPR_SOAP_ANSWER:
		if (res.status >= 200 && res.status < 300) {
			*person = json_incref(ans.person);
			snprintf(audit, audit_size, "ok");
			out = KANAL_OUTCOME_OK;
			break;
		}
		/* An answer under an error status is not trusted: judge by the status. */
		out = s_http_outcome(ctx, &res, "cpr service PersonLookup");
		s_metric(ctx, "upstream_errors", 1);
		snprintf(audit, audit_size, out == KANAL_OUTCOME_RETRY ? "unavailable" : "error");
		break;
	case CPR_SOAP_FAULT:
		/* "PNR not found" (whatever the faultcode) and a client fault are the request's
		 * fault: REJECT. A server fault is the platform's trouble: RETRY. */
		if (ans.not_found) {
			s_err(ctx, "cpr service: PNR %s not found in the CPR register", lk->masked);
			snprintf(audit, audit_size, "not_found");
			s_metric(ctx, "faults", 1);
			out = KANAL_OUTCOME_REJECT;
		} else if (!ans.server && *token_refused && renewed) {
			s_err(ctx,
			      "cpr service refused a new STS token (fault %s: %s): "
			      "check that the service agreement covers entity id %s "
			      "for CVR %s, and that the certificate is the one "
			      "registered for the IT system",
			      ans.code, ans.text, c->entity_id, c->sts_opts.cvr);
			snprintf(audit, audit_size, "%s", *ans.code ? ans.code : "fault");
			s_metric(ctx, "faults", 1);
			out = KANAL_OUTCOME_REJECT;
		} else if (!ans.server) {
			if (*ans.code)
				s_err(ctx, "cpr service fault %s: %s", ans.code, ans.text);
			else
				s_err(ctx, "cpr service SOAP fault (client): %s", ans.text);
			snprintf(audit, audit_size, "%s", *ans.code ? ans.code : "fault");
			s_metric(ctx, "faults", 1);
			out = KANAL_OUTCOME_REJECT;
		} else {
			s_err(ctx, "cpr service SOAP fault (server)%s%s: %s", *ans.code ? " " : "",
			      ans.code, ans.text);
			snprintf(audit, audit_size, "unavailable");
			s_metric(ctx, "upstream_errors", 1);
			out = KANAL_OUTCOME_RETRY;
		}
		break;
	case CPR_SOAP_GARBAGE:
	default:
		if (res.status >= 200 && res.status < 300) {
			s_err(ctx, "cpr service PersonLookup: HTTP %ld but %s", res.status,
			      ans.why);
			out = KANAL_OUTCOME_RETRY;
		} else {
			out = s_http_outcome(ctx, &res, "cpr service PersonLookup");
		}
		s_metric(ctx, "upstream_errors", 1);
		snprintf(audit, audit_size, out == KANAL_OUTCOME_RETRY ? "unavailable" : "error");
		break;
	}
	cpr_soap_result_clear(&ans);
	if (res.body)
		memset(res.body, 0, res.len);
	kc_response_clear(&res);
	return out;
}

/* Asks the service about lk's number (s_call_once); when the service refuses the v5 token,
 * forgets it and asks once more with a new one, as kc_sts says to. */
static kanal_outcome_t s_call(kanal_ctx_t *ctx, cpr_t *c, const lookup_t *lk, json_t **person,
			      char *audit, size_t audit_size)
{
	bool refused;
	kanal_outcome_t out = s_call_once(ctx, c, lk, person, audit, audit_size, false, &refused);

	if (!refused)
		return out;
	s_log(ctx, KANAL_LOG_INFO,
	      "the cpr service refused the STS token: asking for a new "
	      "one and trying once more");
	s_metric(ctx, "token_renewals", 1);
	pthread_mutex_lock(&c->sts_mu);
	kc_sts_forget(c->sts, c->entity_id);
	pthread_mutex_unlock(&c->sts_mu);
	return s_call_once(ctx, c, lk, person, audit, audit_size, true, &refused);
}

/* Keeps a fresh answer in the cache (shared with the workers). */
static void s_cache_put(cpr_t *c, const char *digits, json_t *person)
{
	pthread_mutex_lock(&c->mu);
	cpr_cache_put(c->cache, digits, person, kanal_now_ms());
	pthread_mutex_unlock(&c->mu);
}

/* Looks one number up: from the cache, else from the service (and then cached). Writes
 * the audit line. Returns the outcome; *person is the answer on OK (new reference). */
static kanal_outcome_t s_lookup_one(kanal_ctx_t *ctx, cpr_t *c, const lookup_t *lk, json_t **person,
				    char *audit, size_t audit_size)
{
	kanal_outcome_t out;

	pthread_mutex_lock(&c->mu);
	*person = cpr_cache_get(c->cache, lk->cpr.digits, kanal_now_ms());
	pthread_mutex_unlock(&c->mu);
	if (*person) {
		s_metric(ctx, "cache_hits", 1);
		snprintf(audit, audit_size, "cached");
		out = KANAL_OUTCOME_OK;
	} else {
		out = s_call(ctx, c, lk, person, audit, audit_size);
	}
	s_log(ctx, KANAL_LOG_DEBUG, "lookup %s for route '%s': %s", lk->masked,
	      lk->route ? lk->route : "(none)", audit);
	/* No answer leaves without its audit line. */
	if (s_audit(ctx, c, lk, audit) != 0) {
		json_decref(*person);
		*person = NULL;
		return KANAL_OUTCOME_RETRY;
	}
	return out;
}

/* The register keeps custody on the child, and a parent's children (barn) are bare CPR
 * numbers that include children without custody: looks each child up (audited like any
 * lookup, through the cache) and sets relations.custody_of to those whose custody holders
 * include the person. A child that is not found is left out; a child lookup that must be
 * retried makes the whole lookup RETRY. */
static kanal_outcome_t s_custody_of(kanal_ctx_t *ctx, cpr_t *c, const lookup_t *parent,
				    json_t *person)
{
	json_t *rel = json_object_get(person, "relations");
	json_t *children = json_object_get(rel, "children"), *of = json_array(), *child;
	size_t i;

	if (!of)
		return KANAL_OUTCOME_RETRY;
	json_array_foreach(children, i, child)
	{
		lookup_t lk = *parent;
		json_t *answer = NULL;
		char audit[80];
		kanal_outcome_t out;

		if (i >= CPR_MAX_CHILDREN || !json_is_string(child) ||
		    kanal_cpr_parse(json_string_value(child), &lk.cpr, NULL) != 0)
			continue;
		kanal_cpr_mask(lk.cpr.digits, lk.masked, sizeof lk.masked);
		out = s_lookup_one(ctx, c, &lk, &answer, audit, sizeof audit);
		if (out == KANAL_OUTCOME_RETRY) {
			json_decref(of);
			return out;
		}
		if (out == KANAL_OUTCOME_OK) {
			s_cache_put(c, lk.cpr.digits, answer);
			if (cpr_holds_custody(answer, parent->cpr.digits))
				json_array_append(of, child);
		}
		json_decref(answer);
	}
	json_object_set_new(rel, "custody_of", of);
	return KANAL_OUTCOME_OK;
}

/* Who asks and why, read from the request msg (and the delivery's route, when the broker
 * set one): lk's strings are borrowed from msg and route. */
static void s_lookup_from(const kanal_msg_t *msg, const char *route, lookup_t *lk)
{
	const char *protected_attr;

	/* A route set by the broker is authoritative; an enrich step's request names its
	 * route in kanalroute. */
	lk->route = route;
	if (!lk->route)
		lk->route = kanal_msg_attr(msg, "kanalroute");
	lk->purpose = kanal_msg_attr(msg, "kanalpurpose");
	if (!lk->purpose && !strcmp(kanal_msg_type(msg), "person.lookup.request") &&
	    kanal_msg_data_str(msg, "purpose", &lk->purpose) != 0)
		lk->purpose = NULL;
	lk->correlation = kanal_msg_attr(msg, "correlationid");
	if (!lk->correlation)
		lk->correlation = kanal_msg_id(msg);
	protected_attr = kanal_msg_attr(msg, "kanalprotected");
	lk->asks_protected = protected_attr && !strcmp(protected_attr, "true");
}

/* The whole lookup of lk's number: the person (cache or service), a fresh answer's
 * children in the person's custody, and the answer kept in the cache. Returns the outcome;
 * *person is the answer on OK (new reference). Runs on a worker or in on_message. */
static kanal_outcome_t s_resolve(kanal_ctx_t *ctx, cpr_t *c, const lookup_t *lk, json_t **person,
				 char *audit, size_t audit_size)
{
	kanal_outcome_t out = s_lookup_one(ctx, c, lk, person, audit, audit_size);

	if (out == KANAL_OUTCOME_OK && !strcmp(audit, "ok")) {
		/* A fresh answer: find the children in the person's custody, then keep it. */
		if (c->resolve_children &&
		    json_array_size(
			    json_object_get(json_object_get(*person, "relations"), "children")) > 0)
			out = s_custody_of(ctx, c, lk, *person);
		if (out == KANAL_OUTCOME_OK)
			s_cache_put(c, lk->cpr.digits, *person);
	}
	if (out != KANAL_OUTCOME_OK) {
		json_decref(*person);
		*person = NULL;
	}
	return out;
}

/* ---- lookups on the workers (pool.c) ------------------------------------------------------ */

static void s_job_free(job_t *job)
{
	json_decref(job->person);
	kanal_msg_destroy(&job->req);
	free(job->route);
	free(job);
}

/* On a worker: the lookup, with what it says kept in the job. */
static void s_job_run(void *arg, cpr_task_t *task, size_t worker)
{
	cpr_t *c = arg;
	job_t *job = (job_t *)task;

	job->http = c->clients[worker];
	kc_http_set_cancel(job->http, &job->task.cancel);
	t_job = job;
	job->out = s_resolve(NULL, c, &job->lk, &job->person, job->audit, sizeof job->audit);
	t_job = NULL;
	kc_http_set_cancel(job->http, NULL);
	job->http = NULL;
}

/* Answers job's request as its lookup came out (the job is then spent) — unless the
 * caller gave up, and then only the handle is released. */
static void s_job_answer(kanal_ctx_t *ctx, cpr_t *c, job_t *job)
{
	kanal_msg_t *reply = NULL;

	if (kanal_pending_cancelled(job->pending) || job->task.skipped) {
		kanal_pending_fail(ctx, &job->pending, KANAL_OUTCOME_RETRY, -1,
				   "the cpr service stopped before the lookup was made");
	} else if (job->out == KANAL_OUTCOME_OK &&
		   s_build_reply(ctx, c, job->req, job->person, &job->lk, &reply) ==
			   KANAL_OUTCOME_OK) {
		kanal_pending_reply(ctx, &job->pending, &reply);
	} else {
		if (job->out == KANAL_OUTCOME_OK)
			snprintf(job->error, sizeof job->error, "out of memory building the reply");
		kanal_pending_fail(ctx, &job->pending,
				   job->out == KANAL_OUTCOME_REJECT ? KANAL_OUTCOME_REJECT
								    : KANAL_OUTCOME_RETRY,
				   job->retry_after_ms, "%s", job->error);
	}
}

/* Hands job to the workers, as the one looking its number up. */
static void s_job_submit(cpr_t *c, job_t *job)
{
	job->inflight_next = c->inflight;
	c->inflight = job;
	cpr_pool_submit(c->pool, &job->task);
}

/* A follower of `leader`: the leader's answer is its own, audited as a cache hit; without
 * one (the leader failed or was not made) it asks for itself. */
static void s_follower_done(kanal_ctx_t *ctx, cpr_t *c, const job_t *leader, job_t *f)
{
	if (!kanal_pending_cancelled(f->pending) && leader->out == KANAL_OUTCOME_OK &&
	    leader->person && !leader->task.skipped) {
		kanal_metric_add(ctx, "cache_hits", 1);
		if (s_audit(ctx, c, &f->lk, "cached") != 0) {
			f->out = KANAL_OUTCOME_RETRY;
			snprintf(f->error, sizeof f->error,
				 "audit log %s: cannot write; the lookup is not answered",
				 c->audit_path);
		} else {
			f->out = KANAL_OUTCOME_OK;
			f->person = json_incref(leader->person);
		}
	} else if (!kanal_pending_cancelled(f->pending) && !c->stopping) {
		s_job_submit(c, f);
		return;
	} else {
		f->task.skipped = true;
	}
	s_job_answer(ctx, c, f);
	s_job_free(f);
}

/* On the instance's thread: says what the job's lookup said, answers its request and
 * those of its followers. */
static void s_job_done(kanal_ctx_t *ctx, void *arg, cpr_task_t *task)
{
	cpr_t *c = arg;
	job_t *job = (job_t *)task, *f;

	for (job_t **at = &c->inflight; *at; at = &(*at)->inflight_next) {
		if (*at == job) {
			*at = job->inflight_next;
			break;
		}
	}
	for (size_t i = 0; i < job->n_metrics; i++)
		kanal_metric_add(ctx, job->metrics[i].name, job->metrics[i].delta);
	for (size_t i = 0; i < job->n_logs; i++)
		kanal_log(ctx, job->logs[i].level, "%s", job->logs[i].text);
	if (job->upstream >= 0)
		kanal_upstream_report(ctx, job->upstream == 1);
	s_job_answer(ctx, c, job);
	while ((f = job->followers)) {
		job->followers = f->next_follower;
		s_follower_done(ctx, c, job, f);
	}
	s_job_free(job);
}

/* The request's caller gave up: the lookup is abandoned (not made if still queued, its
 * transfer closed if running) and never answered. */
static void s_job_cancel(kanal_ctx_t *ctx, kanal_pending_t *pending, void *arg)
{
	job_t *job = arg;

	/* A lookup others wait for goes on for them; its own answer is dropped. */
	if (!job->followers)
		cpr_pool_cancel(&job->task);
	kanal_metric_add(ctx, "cancelled", 1);
	kanal_log(ctx, KANAL_LOG_INFO, "lookup %s for route '%s': cancelled, its caller gave up",
		  job->lk.masked, job->lk.route ? job->lk.route : "(none)");
}

/* Hands the lookup of lk (read from msg) to a worker when the host can defer the answer.
 * Returns true when it did (on_message then returns OK). */
static bool s_defer(kanal_ctx_t *ctx, cpr_t *c, const kanal_msg_t *msg, const lookup_t *lk)
{
	job_t *job;
	const char *route = kanal_delivery_route(ctx);

	if (!c->pool || !(job = calloc(1, sizeof *job)))
		return false;
	job->c = c;
	job->upstream = -1;
	job->retry_after_ms = -1;
	job->req = kanal_msg_dup(msg);
	job->route = route ? strdup(route) : NULL;
	if (!job->req || (route && !job->route)) {
		s_job_free(job);
		return false;
	}
	job->lk = *lk;
	s_lookup_from(job->req, job->route, &job->lk); /* the copy's strings, not msg's */
	if (!(job->pending = kanal_request_defer(ctx, s_job_cancel, job))) {
		s_job_free(job);
		return false;
	}
	/* With the cache on, a request for a number being looked up waits for that answer
	 * (cache_ttl 0: each request asks the register itself). */
	for (job_t *leader = c->cache ? c->inflight : NULL; leader;
	     leader = leader->inflight_next) {
		if (!strcmp(leader->lk.cpr.digits, job->lk.cpr.digits) &&
		    !__atomic_load_n(&leader->task.cancel, __ATOMIC_ACQUIRE)) {
			job->next_follower = leader->followers;
			leader->followers = job;
			return true;
		}
	}
	s_job_submit(c, job);
	return true;
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	cpr_t *c = state;
	lookup_t lk = { 0 };
	const char *text = NULL;
	json_t *person = NULL;
	char audit[80];
	kanal_error_t err;
	kanal_outcome_t out;

	if (!kanal_is_request(ctx)) {
		kanal_set_error(ctx, "cpr answers lookups (enrich steps, kanal_request); a routed "
				     "event has nobody to answer to");
		return KANAL_OUTCOME_REJECT;
	}
	s_lookup_from(msg, kanal_delivery_route(ctx), &lk);

	if (s_find_cpr(ctx, c, msg, &lk.field, &text) != 0) {
		kanal_metric_add(ctx, "rejected", 1);
		return KANAL_OUTCOME_REJECT;
	}
	kanal_error_clear(&err);
	if (kanal_cpr_parse(text, &lk.cpr, &err) != 0) {
		/* The number is not repeated, not even masked: it is not a number anybody has. */
		snprintf(lk.masked, sizeof lk.masked, "XXXXXX-XXXX");
		kanal_set_error(ctx, "invalid CPR number in data.%s: %s", lk.field, err.text);
		kanal_metric_add(ctx, "rejected", 1);
		if (s_audit(ctx, c, &lk, "invalid") != 0)
			return KANAL_OUTCOME_RETRY;
		/* s_audit succeeded: the error set above still stands. */
		return KANAL_OUTCOME_REJECT;
	}
	kanal_cpr_mask(lk.cpr.digits, lk.masked, sizeof lk.masked);
	if (!lk.cpr.mod11_ok)
		kanal_log(ctx, KANAL_LOG_WARN,
			  "CPR number %s in data.%s fails modulus 11; accepted (numbers issued "
			  "since 2007 may)",
			  lk.masked, lk.field);
	kanal_metric_add(ctx, "lookups", 1);

	/* Answered later by a worker when the host can wait for it; else here and now. */
	if (s_defer(ctx, c, msg, &lk))
		return KANAL_OUTCOME_OK;
	out = s_resolve(ctx, c, &lk, &person, audit, sizeof audit);
	if (out == KANAL_OUTCOME_OK)
		out = s_reply(ctx, c, msg, person, &lk);
	json_decref(person);
	return out;
}

/* Starts the workers. Lookups then run concurrently wherever the host can defer answers
 * (kanald); elsewhere (the SDK's harness, a plugin host) on_message still answers them. */
static int s_start(kanal_ctx_t *ctx, void *state)
{
	cpr_t *c = state;
	int rc = cpr_pool_start(ctx, (size_t)c->concurrency, s_job_run, s_job_done, c, &c->pool);

	if (rc != 0)
		kanal_set_error(ctx, "cannot start %lld lookup workers: %s",
				(long long)c->concurrency, kanal_strerror(rc));
	return rc;
}

/* Abandons the lookups under way (their transfers close within about a second, rather
 * than at the HTTP timeout) and answers every deferred request RETRY: kanald is stopping,
 * and the events stay open in its journal. */
static void s_stop(kanal_ctx_t *ctx, void *state, int64_t deadline_ms)
{
	cpr_t *c = state;

	c->stopping = true; /* followers of the last jobs are not handed out again */
	for (job_t *job = c->inflight; job; job = job->inflight_next)
		cpr_pool_cancel(&job->task);
	cpr_pool_stop(&c->pool);
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "cpr",
	.version = "1.0.0",
	.description = "CPR lookup service: answers person.lookup requests and enrich steps "
		       "from the CPR register (SOAP PersonLookup), with address protection, "
		       "an audit log and an in-memory cache",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.stop = s_stop,
	.destroy = s_destroy,
	.check = s_check,
};
