/*
 * broker/acl.c — the checks behind the access-control lists of acl.h. They are pure
 * functions over the lists kanald.yaml gave (conf.c keeps them), so the instance threads,
 * the router thread and the stream can all call them without locking.
 */
#include <stdio.h>
#include <string.h>

#include "acl.h"
#include "routes.h"

static bool s_token_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool acl_pattern_valid(const char *pattern, char *why, size_t why_size)
{
	const char *tok = pattern;

	if (!pattern || !*pattern) {
		snprintf(why, why_size,
			 "an empty type pattern matches nothing (write e.g. "
			 "orders.> or invoice.sent)");
		return false;
	}
	for (;;) {
		size_t len = strcspn(tok, ".");
		bool last = tok[len] == '\0';

		if (len == 0) {
			snprintf(why, why_size,
				 "type pattern '%s' has an empty token (two dots, "
				 "or a dot at an end)",
				 pattern);
			return false;
		}
		if (len == 1 && *tok == '>') {
			if (!last) {
				snprintf(why, why_size,
					 "type pattern '%s': '>' matches the rest of "
					 "the type, so it must be the last token",
					 pattern);
				return false;
			}
		} else if (!(len == 1 && *tok == '*')) {
			for (size_t i = 0; i < len; i++) {
				if (!s_token_char(tok[i])) {
					snprintf(why, why_size,
						 "type pattern '%s': '%c' is not "
						 "allowed in a token (use a-z, 0-9, '_', "
						 "'-', or a whole '*' or '>')",
						 pattern,
						 tok[i] > ' ' && tok[i] < 0x7F ? tok[i] : '?');
					return false;
				}
			}
		}
		if (last)
			return true;
		tok += len + 1;
	}
}

bool acl_type_allowed(char *const *patterns, size_t n, const char *type)
{
	if (!type)
		return false;
	for (size_t i = 0; i < n; i++)
		if (routes_type_matches(patterns[i], type))
			return true;
	return false;
}

bool acl_topic_allowed(char *const *prefixes, size_t n, const char *topic, size_t len)
{
	for (size_t i = 0; i < n; i++) {
		size_t plen = strlen(prefixes[i]);
		if (!strcmp(prefixes[i], "*"))
			return true;
		if (len >= plen && !memcmp(topic, prefixes[i], plen))
			return true;
	}
	return false;
}

bool acl_source_pattern_valid(const char *pattern, char *why, size_t why_size)
{
	if (!pattern || !*pattern) {
		snprintf(why, why_size,
			 "an empty source pattern matches nothing (write e.g. "
			 "/vendors/acme/*)");
		return false;
	}
	for (const char *c = pattern; *c; c++) {
		if (*c <= ' ' || *c >= 0x7F) {
			snprintf(why, why_size,
				 "source pattern '%.80s' holds a space, a control "
				 "character or non-ASCII text: a source is a "
				 "URI-reference such as /vendors/acme/*",
				 pattern);
			return false;
		}
	}
	return true;
}

bool acl_source_allowed(char *const *patterns, size_t n, const char *source)
{
	if (!source)
		return false;
	for (size_t i = 0; i < n; i++)
		if (kanal_source_matches(patterns[i], source))
			return true;
	return false;
}

json_t *acl_denied_extra(const char *who, const char *via, const char *what, const char *type)
{
	return json_pack("{s:s, s:s, s:s, s:s}", "who", who ? who : "", "via", via, "what", what,
			 "type", type ? type : "");
}

bool acl_source_reserved(const char *source)
{
	return source && !strcmp(source, "kanald");
}
