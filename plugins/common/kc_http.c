/*
 * plugins/common/kc_http.c — the connectors' HTTP client: one libcurl easy handle per client
 * (so connections are kept alive between polls), answers collected into a kc_response_t,
 * and the one mapping from an HTTP answer to a delivery outcome that every connector uses,
 * so that a 503 means RETRY and a 400 means REJECT the same way everywhere.
 */
#include "kc_http.h"
#include "kc_files.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

struct kc_http {
	CURL *curl;
	kc_http_opts_t o;
	char *user, *password, *ca_file;
	char *client_cert, *client_key;
	char *client_cert_pem, *client_key_pem; /* in-memory PEM; the key wiped on destroy */
	char *auth_header;                      /* "Authorization: Bearer …" */
	const int *cancel; /* kc_http_set_cancel: a transfer stops once *cancel is set */
};

static char *s_dup(const char *s)
{
	return s ? strdup(s) : NULL;
}

kc_http_t *kc_http_new(const kc_http_opts_t *opts)
{
	static const kc_http_opts_t none;
	kc_http_t *h;

	/* curl_global_init is not thread-safe before 7.84 and instances start on their own
	 * threads; libcurl initialises itself on first use, which kanal accepts here because
	 * Debian's libcurl is built thread-safe (CURL_VERSION_THREADSAFE). */
	h = calloc(1, sizeof *h);
	if (!h)
		return NULL;
	h->o = opts ? *opts : none;
	h->user = s_dup(h->o.user);
	h->password = s_dup(h->o.password);
	h->ca_file = s_dup(h->o.ca_file);
	h->client_cert = s_dup(h->o.client_cert);
	h->client_key = s_dup(h->o.client_key);
	h->client_cert_pem = s_dup(h->o.client_cert_pem);
	h->client_key_pem = s_dup(h->o.client_key_pem);
	if (h->o.bearer_token) {
		size_t n = strlen(h->o.bearer_token) + 32;
		h->auth_header = malloc(n);
		if (h->auth_header)
			snprintf(h->auth_header, n, "Authorization: Bearer %s", h->o.bearer_token);
	}
	h->o.user = h->o.password = h->o.ca_file = h->o.bearer_token = NULL;
	h->o.client_cert = h->o.client_key = NULL;
	h->o.client_cert_pem = h->o.client_key_pem = NULL;
	if (!h->o.timeout_ms)
		h->o.timeout_ms = 10000;
	if (!h->o.connect_timeout_ms)
		h->o.connect_timeout_ms = 3000;
	if (!h->o.max_body)
		h->o.max_body = 8u << 20;
	h->curl = curl_easy_init();
	if (!h->curl || (opts && opts->bearer_token && !h->auth_header) ||
	    (opts && opts->client_cert_pem && !h->client_cert_pem) ||
	    (opts && opts->client_key_pem && !h->client_key_pem)) {
		kc_http_destroy(&h);
		return NULL;
	}
	return h;
}

void kc_http_destroy(kc_http_t **http_p)
{
	kc_http_t *h = http_p ? *http_p : NULL;

	if (!h)
		return;
	if (h->curl)
		curl_easy_cleanup(h->curl);
	free(h->user);
	if (h->password)
		memset(h->password, 0, strlen(h->password));
	free(h->password);
	free(h->ca_file);
	free(h->client_cert);
	free(h->client_key);
	free(h->client_cert_pem);
	if (h->client_key_pem)
		memset(h->client_key_pem, 0, strlen(h->client_key_pem));
	free(h->client_key_pem);
	if (h->auth_header)
		memset(h->auth_header, 0, strlen(h->auth_header));
	free(h->auth_header);
	free(h);
	*http_p = NULL;
}

void kc_response_clear(kc_response_t *res)
{
	if (!res)
		return;
	free(res->body);
	free(res->etag);
	free(res->location);
	free(res->content_type);
	memset(res, 0, sizeof *res);
	res->retry_after_ms = -1;
}

typedef struct {
	kc_response_t *res;
	size_t cap, max;
	bool too_big;
} sink_t;

static size_t s_on_body(char *p, size_t size, size_t n, void *arg)
{
	sink_t *s = arg;
	size_t len = size * n;

	if (s->res->len + len > s->max) {
		s->too_big = true;
		return 0; /* makes curl stop with CURLE_WRITE_ERROR */
	}
	if (s->res->len + len + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		char *b;
		while (cap < s->res->len + len + 1)
			cap *= 2;
		b = realloc(s->res->body, cap);
		if (!b)
			return 0;
		s->res->body = b;
		s->cap = cap;
	}
	memcpy(s->res->body + s->res->len, p, len);
	s->res->len += len;
	s->res->body[s->res->len] = '\0';
	return len;
}

/* Retry-After: delay-seconds or an HTTP date. */
static int64_t s_retry_after(const char *v)
{
	struct tm tm;
	char *end;
	long secs;

	while (*v == ' ')
		v++;
	secs = strtol(v, &end, 10);
	if (end != v && (*end == '\0' || isspace((unsigned char)*end)))
		return secs < 0 ? 0 : (int64_t)secs * 1000;
	memset(&tm, 0, sizeof tm);
	if (strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
		time_t at = timegm(&tm), now = time(NULL);
		return at > now ? (int64_t)(at - now) * 1000 : 0;
	}
	return -1;
}

static char *s_header_value(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name);
	const char *v, *end = line + len;

	if (len <= n || strncasecmp(line, name, n) || line[n] != ':')
		return NULL;
	v = line + n + 1;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	return strndup(v, (size_t)(end - v));
}

static size_t s_on_header(char *p, size_t size, size_t n, void *arg)
{
	kc_response_t *res = arg;
	size_t len = size * n;
	char *v;

	/* A new status line (a redirect or 100 Continue) starts the headers again. */
	if (len > 5 && !strncmp(p, "HTTP/", 5)) {
		free(res->etag);
		free(res->location);
		free(res->content_type);
		res->etag = res->location = res->content_type = NULL;
		res->retry_after_ms = -1;
	} else if ((v = s_header_value(p, len, "ETag"))) {
		free(res->etag);
		res->etag = v;
	} else if ((v = s_header_value(p, len, "Location"))) {
		free(res->location);
		res->location = v;
	} else if ((v = s_header_value(p, len, "Content-Type"))) {
		free(res->content_type);
		res->content_type = v;
	} else if ((v = s_header_value(p, len, "Retry-After"))) {
		res->retry_after_ms = s_retry_after(v);
		free(v);
	}
	return len;
}

/* libcurl's progress callback: a non-zero return aborts the transfer (its connection is
 * closed), once the request's caller has given up (kc_http_set_cancel). */
static int s_on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
			 curl_off_t ulnow)
{
	const int *cancel = arg;

	return __atomic_load_n(cancel, __ATOMIC_ACQUIRE) ? 1 : 0;
}

void kc_http_set_cancel(kc_http_t *h, const int *cancel)
{
	h->cancel = cancel;
}

static int s_request(kc_http_t *h, const char *method, const char *url, const char *const *headers,
		     const char *body, size_t body_len, kc_response_t *res)
{
	struct curl_slist *list = NULL, *l;
	sink_t sink = { .res = res, .max = h->o.max_body };
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLcode rc;
	CURL *c = h->curl;

	memset(res, 0, sizeof *res);
	res->retry_after_ms = -1;
	curl_easy_reset(c);
	for (size_t i = 0; headers && headers[i]; i++) {
		if (!(l = curl_slist_append(list, headers[i])))
			goto oom;
		list = l;
	}
	if (h->auth_header) {
		if (!(l = curl_slist_append(list, h->auth_header)))
			goto oom;
		list = l;
	}
	/* No "Expect: 100-continue" round trip for larger bodies. */
	if (!(l = curl_slist_append(list, "Expect:")))
		goto oom;
	list = l;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)h->o.timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)h->o.connect_timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* we run on plugin threads */
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s_on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, res);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	if (h->user) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERNAME, h->user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, h->password ? h->password : "");
	}
	if (h->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
	if (h->client_cert)
		curl_easy_setopt(c, CURLOPT_SSLCERT, h->client_cert);
	if (h->client_key)
		curl_easy_setopt(c, CURLOPT_SSLKEY, h->client_key);
	if (h->client_cert_pem) {
		/* libcurl copies neither: the blobs point into h, which outlives the request. */
		struct curl_blob cert = { h->client_cert_pem, strlen(h->client_cert_pem),
					  CURL_BLOB_NOCOPY };
		curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cert);
		curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
	}
	if (h->client_key_pem) {
		struct curl_blob key = { h->client_key_pem, strlen(h->client_key_pem),
					 CURL_BLOB_NOCOPY };
		curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &key);
		curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
	}
	if (h->cancel) {
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, s_on_progress);
		curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)h->cancel);
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	}
	rc = curl_easy_perform(c);
	curl_slist_free_all(list);
	if (rc != CURLE_OK) {
		int code = sink.too_big                      ? KANAL_ETOOBIG
			   : rc == CURLE_ABORTED_BY_CALLBACK ? KANAL_ECLOSED
			   : rc == CURLE_OPERATION_TIMEDOUT  ? KANAL_ETIMEDOUT
			   : rc == CURLE_OUT_OF_MEMORY       ? KANAL_ENOMEM
							     : KANAL_EIO;

		if (sink.too_big)
			kanal_error_set(&res->error, NULL, 0, 0, NULL,
					"answer larger than %zu bytes, not read", h->o.max_body);
		else
			kanal_error_set(&res->error, NULL, 0, 0, NULL, "%s",
					*errbuf ? errbuf : curl_easy_strerror(rc));
		free(res->body);
		res->body = NULL;
		res->len = 0;
		res->status = 0;
		return code;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res->status);
	if (!res->body && !(res->body = calloc(1, 1))) {
		kanal_error_set(&res->error, NULL, 0, 0, NULL, "out of memory");
		res->status = 0;
		return KANAL_ENOMEM;
	}
	return 0;
oom:
	curl_slist_free_all(list);
	kanal_error_set(&res->error, NULL, 0, 0, NULL, "out of memory");
	return KANAL_ENOMEM;
}

int kc_http_header(kc_http_t *http, const char *name, char *buf, size_t size)
{
	struct curl_header *hd;
	size_t used = 0, n;
	int rc = KANAL_ENOTFOUND;

	if (size)
		buf[0] = '\0';
	/* -1: the last request of the transfer (after redirects and 100 Continue). */
	for (size_t i = 0;
	     curl_easy_header(http->curl, name, i, CURLH_HEADER, -1, &hd) == CURLHE_OK; i++) {
		const char *sep = rc == 0 ? ", " : "";

		rc = 0;
		n = (size_t)snprintf(buf + used, size - used, "%s%s", sep, hd->value);
		if (n >= size - used)
			return KANAL_ETOOBIG;
		used += n;
		if (hd->amount <= i + 1)
			break;
	}
	return rc;
}

const char *kc_http_describe(const kc_response_t *res, const char *what, char *buf, size_t size)
{
	char excerpt[201];
	size_t n = 0;

	if (!res->status) {
		snprintf(buf, size, "%s: no answer: %s", what, res->error.text);
	} else {
		/* A one-line excerpt: control characters become spaces. */
		for (size_t i = 0; res->body && i < res->len && n < sizeof excerpt - 1; i++) {
			unsigned char ch = (unsigned char)res->body[i];
			excerpt[n++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
		}
		excerpt[n] = '\0';
		kanal_cpr_redact_inplace(excerpt);
		snprintf(buf, size, "%s: HTTP %ld%s%s%s", what, res->status, n ? " \"" : "",
			 excerpt, n ? (res->len > n ? "…\"" : "\"") : "");
	}
	kanal_cpr_redact_inplace(buf); /* the transport error may quote a URL */
	return buf;
}

/* The request, and what it says of the upstream to the instance when the client has one
 * (kc_http_conf_open): up after an answer below 500 (a too large one too), down after none
 * or a 5xx (docs/sdk.md, kanal_upstream_report). */
int kc_http_request(kc_http_t *h, const char *method, const char *url, const char *const *headers,
		    const char *body, size_t body_len, kc_response_t *res)
{
	int rc = s_request(h, method, url, headers, body, body_len, res);

	if (h->o.ctx && rc != KANAL_ENOMEM)
		kanal_upstream_report(h->o.ctx,
				      (rc == 0 || rc == KANAL_ETOOBIG) && res->status < 500);
	return rc;
}

kanal_outcome_t kc_http_outcome(kanal_ctx_t *ctx, const kc_response_t *res, const char *what)
{
	char why[512];
	long s = res->status;

	if (s >= 200 && s < 300)
		return KANAL_OUTCOME_OK;
	kc_http_describe(res, what, why, sizeof why);
	kanal_set_error(ctx, "%s", why);
	if (s == 0 || s == 408 || s == 425 || s == 429 || s >= 500) {
		if (res->retry_after_ms >= 0)
			kanal_set_retry_after(ctx, res->retry_after_ms);
		return KANAL_OUTCOME_RETRY;
	}
	return KANAL_OUTCOME_REJECT;
}

int kc_http_conf_open(kanal_ctx_t *ctx, kc_http_conf_t *conf, kc_http_opts_t *opts)
{
	const char *token_option = conf->token_file_option ? conf->token_file_option : "token_file";

	memset(opts, 0, sizeof *opts);
	opts->ctx = ctx;
	if (conf->token && conf->token_file) {
		kanal_set_error(ctx, "options 'token' and '%s' exclude each other; give one",
				token_option);
		return KANAL_ECONFIG;
	}
	if (conf->password && conf->password_file) {
		kanal_set_error(ctx, "options 'password' and 'password_file' exclude each other; "
				     "give one");
		return KANAL_ECONFIG;
	}
	if ((conf->password || conf->password_file) && !conf->user) {
		kanal_set_error(ctx, "option 'user' is needed with a password");
		return KANAL_ECONFIG;
	}
	if (conf->token_file && !conf->token_secret &&
	    kc_secret_read(ctx, token_option, conf->token_file, &conf->token_secret) != 0)
		return KANAL_ECONFIG;
	if (conf->password_file && !conf->password_secret &&
	    kc_secret_read(ctx, "password_file", conf->password_file, &conf->password_secret) != 0)
		return KANAL_ECONFIG;
	opts->timeout_ms = conf->timeout_ms;
	opts->connect_timeout_ms =
		conf->timeout_ms > 0 && conf->timeout_ms < 3000 ? conf->timeout_ms : 3000;
	opts->ca_file = conf->ca_file;
	opts->client_cert = conf->client_cert;
	opts->client_key = conf->client_key;
	opts->bearer_token = conf->token ? conf->token : conf->token_secret;
	if (conf->user) {
		opts->user = conf->user;
		opts->password = conf->password          ? conf->password
				 : conf->password_secret ? conf->password_secret
							 : "";
	}
	return 0;
}

static void s_wipe(char **secret_p)
{
	if (*secret_p) {
		memset(*secret_p, 0, strlen(*secret_p));
		free(*secret_p);
		*secret_p = NULL;
	}
}

void kc_http_conf_clear(kc_http_conf_t *conf)
{
	if (!conf)
		return;
	s_wipe(&conf->token_secret);
	s_wipe(&conf->password_secret);
}
