/*
 * plugins/common/kc_url.h — the one rule for the URLs a connector sends to: https always;
 * plain http only to this machine (localhost, 127.0.0.0/8, [::1]) unless the instance sets
 * allow_plain_http; any other scheme never. The host is the one libcurl will connect to,
 * found by libcurl's own URL parser, never by comparing prefixes (docs/security.md, "Where
 * connectors may send").
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a) and compiled with hidden visibility, so nothing here is
 * exported from a plugin. Functions are prefixed kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_KC_URL_H
#define KANAL_PLUGINS_KC_URL_H

#include <stdbool.h>

#include <kanal/kanal.h>

/* The option that lets one instance send plain http to another machine, as an options-table
 * entry bound to a bool member of the plugin's state. */
#define KC_URL_OPT_ALLOW_PLAIN_HTTP(state_type, member)                                            \
	{                                                                                          \
		.name = "allow_plain_http", .type = KANAL_OPT_BOOL, .default_value = "false",      \
		KANAL_OPT_AT(state_type, member),                                                  \
		.help = "Allow a plain http:// URL to a host other than this machine (a warning "  \
			"at "                                                                      \
			"start); without it only https, or http to localhost, 127.0.0.0/8 or "     \
			"[::1]."                                                                   \
	}

/* Checks `url`, given as option `option`, against the rule above. Returns 0 when it may be
 * used; *plain_remote (may be NULL) is then set when it is plain http to another machine
 * that allow_plain_http lets through, and err holds the warning's text (naming the option and
 * the host) for the caller to log. Returns KANAL_ECONFIG with err
 * filled (attribute: the option; text naming the option and the URL's host) when it is
 * refused: not a URL, a scheme other than http or https, or plain http to another machine
 * without allow_plain_http. Ownership: borrows everything; fills err. */
int kc_url_check(const char *option, const char *url, bool allow_plain_http, bool *plain_remote,
		 kanal_error_t *err);

/* True when `host` — as libcurl gives it ("[::1]" with brackets, IPv4 normalised) or as a
 * listen address gives it ("::1") — is localhost, an IPv4 address in 127.0.0.0/8 or the
 * IPv6 loopback address. Ownership: borrows host. */
bool kc_url_host_is_loopback(const char *host);

/* kc_url_check for an instance's option: the error goes to kanal_set_error, the warning for
 * an allowed plain http URL to another machine to the instance's log. Returns 0 or
 * KANAL_ECONFIG. Ownership: borrows everything. */
int kc_url_check_option(kanal_ctx_t *ctx, const char *option, const char *url,
			bool allow_plain_http);

#endif
