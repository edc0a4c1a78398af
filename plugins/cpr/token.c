/*
 * plugins/cpr/token.c — the SF1520 v5 ("token" security model) step of a lookup: the STS
 * SAML assertion for the service's entity id, put verbatim into a WS-Security header that
 * the caller signs (contracts/README.md §1.3). That work belongs to the shared token
 * client kc_sts (plugins/common/kc_sts.h), which is written separately and MERGED LATER.
 *
 * Until then this file is a stub, on purpose: cpr_token_available() says false, a cpr
 * instance configured with `version: 5` refuses to start with a message saying why, and
 * cpr_token_secure() never pretends to have secured a request. Replace the two bodies
 * below with calls into kc_sts when it is merged; nothing else in the plugin changes.
 */
#include <stdbool.h>
#include <stddef.h>

#include <kanal/kanal.h>

#include "cpr_int.h"

bool cpr_token_available(void)
{
	return false; /* token from kc_sts (merged later) */
}

int cpr_token_secure(const char *entity_id, char **body, size_t *len, kanal_error_t *err)
{
	(void)body;
	(void)len;
	kanal_error_set(err, "cpr", 0, 0, "version",
			"SF1520 v5 needs an STS token for %s from kc_sts, which this build does "
			"not have yet; use version 4 (mutual TLS + InvocationContext)",
			entity_id ? entity_id : "(no entity id)");
	return KANAL_ECONFIG;
}
