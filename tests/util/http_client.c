/*
 * tests/util/http_client.c — the tests' HTTP client over libcurl (see http_client.h): one
 * request at a time, collecting the body and the few response headers tests assert on.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "http_client.h"

struct http_client {
	CURL *curl;
};

http_client_t *http_client_new(void)
{
	http_client_t *client = calloc(1, sizeof *client);

	if (client && !(client->curl = curl_easy_init())) {
		free(client);
		client = NULL;
	}
	return client;
}

void http_client_destroy(http_client_t **client_p)
{
	http_client_t *client = *client_p;

	if (!client)
		return;
	curl_easy_cleanup(client->curl);
	free(client);
	*client_p = NULL;
}

static size_t s_on_body(char *p, size_t size, size_t n, void *arg)
{
	http_answer_t *a = arg;
	size_t len = size * n;
	char *b = realloc(a->body, a->len + len + 1);

	if (!b)
		return 0;
	memcpy(b + a->len, p, len);
	a->body = b;
	a->len += len;
	a->body[a->len] = '\0';
	return len;
}

/* Keeps the value of the headers an answer has fields for (the last one of a name wins). */
static size_t s_on_header(char *p, size_t size, size_t n, void *arg)
{
	http_answer_t *a = arg;
	size_t len = size * n;
	const struct {
		const char *name;
		char *buf;
		size_t size;
	} keep[] = {
		{ "Content-Type", a->content_type, sizeof a->content_type },
		{ "Allow", a->allow, sizeof a->allow },
		{ "Retry-After", a->retry_after, sizeof a->retry_after },
		{ "WWW-Authenticate", a->www_authenticate, sizeof a->www_authenticate },
		{ "ETag", a->etag, sizeof a->etag },
	};

	for (size_t k = 0; k < sizeof keep / sizeof *keep; k++) {
		size_t nl = strlen(keep[k].name), vl;
		const char *v;

		if (len <= nl + 1 || strncasecmp(p, keep[k].name, nl) || p[nl] != ':')
			continue;
		v = p + nl + 1;
		vl = len - nl - 1;
		while (vl && (*v == ' ' || *v == '\t'))
			v++, vl--;
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
			vl--;
		snprintf(keep[k].buf, keep[k].size, "%.*s", (int)vl, v);
	}
	return len;
}

long http_request(http_client_t *client, const http_request_t *req, http_answer_t *out)
{
	CURL *c = client ? client->curl : curl_easy_init();
	struct curl_slist *list = NULL;
	char auth[512], error[CURL_ERROR_SIZE] = "";
	const char *method = req->method ? req->method : req->body ? "POST" : "GET";
	bool has_expect = false;
	CURLcode rc;

	memset(out, 0, sizeof *out);
	if (!c) {
		snprintf(out->error, sizeof out->error, "no curl handle");
		out->body = calloc(1, 1);
		return 0;
	}
	if (client)
		curl_easy_reset(c);
	for (size_t i = 0; req->headers && req->headers[i]; i++) {
		list = curl_slist_append(list, req->headers[i]);
		if (!strncasecmp(req->headers[i], "Expect:", 7))
			has_expect = true;
	}
	if (req->bearer) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", req->bearer);
		list = curl_slist_append(list, auth);
	}
	if (!has_expect)
		list = curl_slist_append(list, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, req->url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	/* libcurl waits for a body that never comes after a HEAD unless told there is none. */
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	if (req->body || !strcmp(method, "POST")) {
		const char *body = req->body ? req->body : "";
		size_t len = req->body_len ? req->body_len : strlen(body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	if (req->userpwd) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERPWD, req->userpwd);
	}
	if (req->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, req->ca_file);
	if (req->client_cert) {
		curl_easy_setopt(c, CURLOPT_SSLCERT, req->client_cert);
		curl_easy_setopt(c, CURLOPT_SSLKEY, req->client_key);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(req->timeout_ms ? req->timeout_ms : 10000));
	if (req->connect_timeout_ms)
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s_on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	else
		snprintf(out->error, sizeof out->error, "%s",
			 error[0] ? error : curl_easy_strerror(rc));
	/* The error buffer is this function's; the handle may outlive it. */
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(list);
	if (!client)
		curl_easy_cleanup(c);
	if (!out->body)
		out->body = calloc(1, 1);
	return out->status;
}

void http_answer_clear(http_answer_t *a)
{
	free(a->body);
	memset(a, 0, sizeof *a);
}
