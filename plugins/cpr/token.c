/*
 * plugins/cpr/token.c — the SF1520 v5 ("token" security model) step of a lookup
 * (contracts/README.md §1.3 and §2): the STS SAML assertion for the service's entity id,
 * from the shared token client kc_sts (plugins/common/kc_sts.h, which caches it per entity
 * id and renews it before it expires), put verbatim into the WS-Security header of a SOAP
 * 1.1 call signed with the municipality's certificate (kc_sts_soap_call). The unsigned
 * envelope comes from soap.c; only its PersonLookupRequest element is kept, since
 * kc_sts_soap_call builds the envelope, headers and signature around a payload.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>
#include <kanal/time.h>

#include "cpr_int.h"

/* The PersonLookupRequest element of the envelope soap.c built (its namespaces are
 * declared on it), as a malloc'd text; NULL when it is not there or memory ran out. */
static char *s_payload(const char *body)
{
	const char *start = strstr(body, "<pbde:PersonLookupRequest");
	const char *end = start ? strstr(start, "</pbde:PersonLookupRequest>") : NULL;

	if (!end)
		return NULL;
	end += strlen("</pbde:PersonLookupRequest>");
	return strndup(start, (size_t)(end - start));
}

int cpr_token_secure(kc_sts_t *sts, const kc_cert_t *cert, const char *entity_id,
		     const char *action, const char *to, char **body, size_t *len,
		     kanal_error_t *err)
{
	char *assertion = NULL, *payload = NULL, *call = NULL;
	int rc;

	if ((rc = kc_sts_assertion(sts, entity_id, &assertion, err)) != 0)
		return rc;
	if (!(payload = s_payload(*body))) {
		kanal_error_set(err, "cpr", 0, 0, "token",
				"the PersonLookup request has no PersonLookupRequest to sign");
		rc = KANAL_EINVAL;
		goto done;
	}
	rc = kc_sts_soap_call(cert, assertion, action, to, payload, kanal_wall_ms(), &call, err);
	if (rc == 0) {
		memset(*body, 0, *len);
		free(*body);
		*body = call;
		*len = strlen(call);
	}
done:
	/* The assertion is a credential and the payload holds a CPR number: wipe both. */
	memset(assertion, 0, strlen(assertion));
	free(assertion);
	if (payload) {
		memset(payload, 0, strlen(payload));
		free(payload);
	}
	return rc;
}

bool cpr_token_refused(long status, const cpr_soap_result_t *fault)
{
	if (status == 401)
		return true;
	return fault && fault->kind == CPR_SOAP_FAULT && !fault->server &&
	       (strcasestr(fault->code, "TOKEN") || strcasestr(fault->text, "token"));
}
