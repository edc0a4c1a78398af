/*
 * plugins/common/kc_url.c — where a connector may send (kc_url.h): the URL is parsed by
 * libcurl's URL API, the same parser that later connects, so "localhost.evil.example",
 * "127.0.0.1.evil.example" and "127.0.0.1@evil.example" are the remote hosts they are, and
 * "127.1" is the 127.0.0.1 curl will reach.
 */
#include "kc_url.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

bool kc_url_host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	char bare[INET6_ADDRSTRLEN + 1];
	size_t n;

	if (!host)
		return false;
	if (!strcasecmp(host, "localhost"))
		return true;
	/* curl has already turned 127.1 and 0x7f000001 into 127.0.0.1. */
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	/* IPv6: bracketed in a URL, bare in a listen address. */
	n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof bare) {
		memcpy(bare, host + 1, n - 2);
		bare[n - 2] = '\0';
		host = bare;
	}
	return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

int kc_url_check(const char *option, const char *url, bool allow_plain_http, bool *plain_remote,
		 kanal_error_t *err)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	CURLUcode uc;
	int rc = KANAL_ECONFIG;

	if (plain_remote)
		*plain_remote = false;
	if (!u) {
		kanal_error_set(err, NULL, 0, 0, option, "option '%s': out of memory", option);
		return KANAL_ENOMEM;
	}
	if (!url || (uc = curl_url_set(u, CURLUPART_URL, url, 0)) != CURLUE_OK) {
		kanal_error_set(err, NULL, 0, 0, option, "option '%s': '%s' is not a URL (%s)",
				option, url ? url : "", url ? curl_url_strerror(uc) : "none given");
		goto done;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "https") && strcmp(scheme, "http"))) {
		kanal_error_set(err, NULL, 0, 0, option,
				"option '%s': '%s' is not an https:// URL "
				"(nor http:// to this machine)",
				option, url);
		goto done;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
		kanal_error_set(err, NULL, 0, 0, option, "option '%s': '%s' names no host", option,
				url);
		goto done;
	}
	if (!strcmp(scheme, "http") && !kc_url_host_is_loopback(host)) {
		if (!allow_plain_http) {
			kanal_error_set(
				err, NULL, 0, 0, option,
				"option '%s': plain http to '%s' is refused: use https, or "
				"http only to this machine (localhost, 127.0.0.0/8, [::1]); "
				"allow_plain_http: true lets it through",
				option, host);
			goto done;
		}
		if (plain_remote)
			*plain_remote = true;
		kanal_error_set(err, NULL, 0, 0, option,
				"option '%s': plain http to '%s' (allow_plain_http: true): what is "
				"sent travels unencrypted",
				option, host);
	}
	rc = 0;
done:
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return rc;
}

int kc_url_check_option(kanal_ctx_t *ctx, const char *option, const char *url,
			bool allow_plain_http)
{
	kanal_error_t err;
	bool plain_remote;
	int rc;

	kanal_error_clear(&err);
	rc = kc_url_check(option, url, allow_plain_http, &plain_remote, &err);
	if (rc != 0) {
		kanal_set_error(ctx, "%s", err.text);
		return rc;
	}
	if (plain_remote)
		kanal_log(ctx, KANAL_LOG_WARN, "%s", err.text);
	return 0;
}
