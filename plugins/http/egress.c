/*
 * plugins/http/egress.c — CloudEvents out over HTTP: a webhook destination. Each delivery
 * is one POST of the event to `url`, in the structured content mode (the JSON event
 * format as the body) or, with `mode: binary`, the binary mode (attributes in ce-*
 * headers, the data as the body). The answer becomes the delivery's outcome through the
 * connectors' one mapping (plugins/common, kc_http_outcome): 2xx OK; no answer, a timeout,
 * 408, 425, 429 and 5xx RETRY, honouring Retry-After; any other status REJECT — the route's
 * fallback, else the dead letters — with the status and a short excerpt of the answer.
 *
 * A traced event (a `traceparent` attribute) is sent with W3C `traceparent` and
 * `tracestate` headers whose parent is the delivery attempt's span (kc_trace.h).
 *
 * The POST blocks the instance's thread for at most `timeout`; deliveries to one instance
 * are serialised anyway, and a slow webhook fills only its own queue.
 */
#include "http.h"
#include "../common/kc_http.h"
#include "../common/kc_trace.h"
#include "../common/kc_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct egress {
	const char *url; /* borrowed from the config */
	char what[300];  /* "POST scheme://host/path", the URL without its query */
	bool binary;
	kc_http_t *http;
	char **extra; /* NULL-terminated "Name: value" lines from `headers` */
	size_t n_extra;
};

/* The URL for error texts: its query string and any user:password@ may hold a secret, so
 * they are left out. */
static void s_describe_url(const char *url, char *buf, size_t size)
{
	const char *scheme_end = strstr(url, "://");
	const char *host = scheme_end ? scheme_end + 3 : url;
	size_t authority = strcspn(host, "/?#");
	const char *at = memchr(host, '@', authority);
	size_t n;

	if (at)
		host = at + 1;
	n = strcspn(host, "?#");
	snprintf(buf, size, "POST %.*s%.*s", scheme_end ? (int)(scheme_end + 3 - url) : 0, url,
		 (int)(n > 250 ? 250 : n), host);
}

int egress_new(kanal_ctx_t *ctx, const kanal_config_t *cfg, http_options_t *opt, egress_t **out)
{
	const char *url = opt->url;
	kc_http_opts_t o;
	egress_t *eg;
	int rc = KANAL_ECONFIG;

	*out = NULL;
	if (!url || !*url) {
		if (opt->http.token_file || kanal_config_given(cfg, "mode")) {
			kanal_set_error(ctx,
					"%s is given but url is not: the webhook options need "
					"url (e.g. url: https://vendor.example.dk/events)",
					opt->http.token_file ? "bearer_token_file" : "mode");
			return KANAL_ECONFIG;
		}
		return 0;
	}
	if ((rc = kc_url_check_option(ctx, "url", url, opt->http.allow_plain_http)) != 0)
		return rc;
	if (!(eg = calloc(1, sizeof *eg)))
		return KANAL_ENOMEM;
	eg->url = url;
	eg->binary = !strcmp(opt->mode, "binary"); /* else structured: the table checked */
	s_describe_url(url, eg->what, sizeof eg->what);
	eg->n_extra = opt->headers.count;
	if (!(eg->extra = calloc(eg->n_extra + 1, sizeof *eg->extra))) {
		rc = KANAL_ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < eg->n_extra; i++) {
		const char *h = opt->headers.items[i];
		const char *colon = strchr(h, ':');

		if (!colon || colon == h || strpbrk(h, "\r\n")) {
			kanal_set_error(ctx, "headers: '%s' is not 'Name: value'", h);
			rc = KANAL_ECONFIG;
			goto fail;
		}
		if (!(eg->extra[i] = strdup(h))) {
			rc = KANAL_ENOMEM;
			goto fail;
		}
	}
	if ((rc = kc_http_conf_open(ctx, &opt->http, &o)) != 0)
		goto fail;
	o.max_body = 64 * 1024; /* the answer is only quoted in errors */
	eg->http = kc_http_new(&o);
	kc_http_conf_clear(&opt->http);
	if (!eg->http) {
		rc = KANAL_ENOMEM;
		goto fail;
	}
	*out = eg;
	return 0;
fail:
	egress_destroy(&eg);
	return rc;
}

kanal_outcome_t egress_send(egress_t *eg, kanal_ctx_t *ctx, const kanal_msg_t *msg)
{
	binding_out_t req;
	kc_response_t res;
	const char **headers;
	kanal_outcome_t outcome;
	char why[160], traceparent[13 + KC_TRACEPARENT_LEN + 1];
	char tracestate[12 + KC_TRACESTATE_MAX + 1];
	size_t k = 0;

	if (binding_render(msg, eg->binary, &req, why, sizeof why) < 0) {
		kanal_set_error(ctx, "%s: cannot render event %s: %s", eg->what, kanal_msg_id(msg),
				why);
		return KANAL_OUTCOME_RETRY;
	}
	headers = calloc(req.n_headers + eg->n_extra + 3, sizeof *headers);
	if (!headers) {
		binding_out_clear(&req);
		kanal_set_error(ctx, "%s: out of memory", eg->what);
		return KANAL_OUTCOME_RETRY;
	}
	for (size_t i = 0; i < req.n_headers; i++)
		headers[k++] = req.headers[i];
	for (size_t i = 0; i < eg->n_extra; i++)
		headers[k++] = eg->extra[i];
	/* W3C Trace Context: the event's trace, with this delivery attempt's span (the one
	 * kanald reports) as the parent, so the receiver's spans hang under it. */
	memcpy(traceparent, "traceparent: ", 13);
	if (kc_trace_delivery_header(ctx, msg, traceparent + 13)) {
		const char *state = kanal_msg_attr(msg, "tracestate");
		headers[k++] = traceparent;
		if (state && kc_tracestate_valid(state)) {
			snprintf(tracestate, sizeof tracestate, "tracestate: %s", state);
			headers[k++] = tracestate;
		}
	}
	kc_http_request(eg->http, "POST", eg->url, headers, req.body ? req.body : "", req.len,
			&res);
	outcome = kc_http_outcome(ctx, &res, eg->what);
	if (outcome == KANAL_OUTCOME_OK)
		kanal_log(ctx, KANAL_LOG_DEBUG, "posted event %s: HTTP %ld", kanal_msg_id(msg),
			  res.status);
	kanal_metric_add(ctx,
			 outcome == KANAL_OUTCOME_OK      ? "http_posted"
			 : outcome == KANAL_OUTCOME_RETRY ? "http_post_retries"
							  : "http_post_rejections",
			 1);
	kc_response_clear(&res);
	free(headers);
	binding_out_clear(&req);
	return outcome;
}

void egress_destroy(egress_t **eg_p)
{
	egress_t *eg = eg_p ? *eg_p : NULL;

	if (!eg)
		return;
	kc_http_destroy(&eg->http);
	for (size_t i = 0; eg->extra && i < eg->n_extra; i++)
		free(eg->extra[i]);
	free(eg->extra);
	free(eg);
	*eg_p = NULL;
}
