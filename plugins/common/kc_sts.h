/*
 * plugins/common/kc_sts.h — tokens from Serviceplatformen's Security Token Service (SF1514,
 * "Adgangsstyring") for every connector that calls a national service, as
 * ../shared/contracts/README.md section 1 describes them:
 *
 *   - REST issue: the function certificate over mutual TLS, a JSON request naming the
 *     municipality's CVR, the certificate itself (UseKey) and the service's entity ID →
 *     a holder-of-key SAML assertion (base64) bound to that one service;
 *   - SOAP issue: the same as a WS-Trust RequestSecurityToken signed with the certificate
 *     (kc_sts_soap_rst), for connectors configured to use it;
 *   - the access-token exchange for REST services (SF1601): the assertion, form-encoded →
 *     an access token sent as "Authorization: Holder-of-key <token>";
 *   - the signed WS-Security header of a SOAP token service call (kc_sts_soap_call), with
 *     the one digest xmlsec cannot make (the STR-Transform reference) computed here.
 *
 * Tokens are cached per service entity ID, renewed before they expire (renew_before, plus
 * the clock skew allowance) and dropped on demand after the service answered 401
 * (kc_sts_forget). They are never logged, and never appear in an error's text.
 *
 * A connector typically: loads its certificate (kc_cert_load), checks it (kc_sts_new does),
 * makes its own mutual-TLS client with kc_cert_http_opts, and before each call asks
 * kc_sts_authorization (REST) or kc_sts_assertion + kc_sts_soap_call (SOAP).
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a). Functions are prefixed kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_KC_STS_H
#define KANAL_PLUGINS_KC_STS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kanal/kanal.h>

#include "kc_cert.h"

/* The contract's fixed strings. */
#define KC_STS_TOKEN_TYPE "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0"
#define KC_STS_REQUEST_TYPE "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue"
#define KC_STS_KEY_TYPE "http://docs.oasis-open.org/ws-sx/ws-trust/200512/PublicKey"

/* Known service entity IDs (AppliesTo), README section 1.1. */
#define KC_STS_ENTITY_KOMBIPOSTAFSEND "http://entityid.kombit.dk/service/kombipostafsend/1"
#define KC_STS_ENTITY_POSTFORESPOERG "http://entityid.kombit.dk/service/postforespoerg/1"
#define KC_STS_ENTITY_CPR_V5 "http://cpr.serviceplatformen.dk/service/personbasedataextended/5"

typedef struct kc_sts kc_sts_t;

typedef struct kc_sts_opts {
	const char *issue_url;       /* REST issue; required unless use_soap */
	const char *soap_url;        /* SOAP WS-Trust issue; required with use_soap */
	const char *accesstoken_url; /* AccessTokenService_1/token; NULL: no REST services */
	const char *cvr;             /* the municipality's CVR, 8 digits */
	bool use_soap;               /* issue SAML tokens through the SOAP STS */
	int64_t renew_before_ms;     /* renew this long before expiry; 0: 5 min */
	int64_t clock_skew_ms;       /* allowance for clocks that disagree; 0: 2 min */
	int64_t timeout_ms;          /* per STS call; 0: 10 s */
	const char *ca_file;         /* extra CA bundle for the STS's https, or NULL */
	bool allow_plain_http;       /* kc_url_check's exception, for tests only */
	int64_t (*clock_ms)(void);   /* the wall clock in ms; NULL: kanal_wall_ms (tests) */
} kc_sts_opts_t;

/* A token client for one certificate and one CVR. Checks the URLs (kc_url_check: https),
 * the CVR (8 digits) and the certificate's validity period (kc_cert_check_time with the
 * skew allowance). Returns 0 and *out, or KANAL_ECONFIG with err saying what to change, or
 * KANAL_ENOMEM. Ownership: borrows opts (copied) and cert — cert must outlive *out;
 * *out is the caller's (kc_sts_destroy); fills err. */
int kc_sts_new(const kc_sts_opts_t *opts, const kc_cert_t *cert, kc_sts_t **out,
	       kanal_error_t *err);

/* Frees the client, wiping the cached tokens. Accepts NULL; nulls *sts_p.
 * Ownership: takes *sts_p. */
void kc_sts_destroy(kc_sts_t **sts_p);

/* The SAML assertion for the service `entity_id`, from the cache or freshly issued:
 * its XML exactly as the STS signed it (to go verbatim into a WS-Security header). Returns
 * 0 and *xml_out (malloc'd, NUL-terminated), or:
 *   KANAL_ECONFIG    the certificate expired or is not yet valid (err says what to do);
 *   KANAL_EREJECTED  the STS refused (a fault, 4xx): err quotes its reason and names the
 *                    entity ID and CVR to check against the service agreement — retrying
 *                    will not help;
 *   KANAL_EIO / KANAL_ETIMEDOUT  no answer, or 5xx: try again later;
 *   KANAL_EPARSE     an answer that is not the contract's shape.
 * Ownership: borrows sts and entity_id; *xml_out is the caller's (wipe and free); fills err. */
int kc_sts_assertion(kc_sts_t *sts, const char *entity_id, char **xml_out, kanal_error_t *err);

/* The header line a REST service call carries, "Authorization: Holder-of-key <token>",
 * from the cache or after issuing a SAML token and exchanging it at accesstoken_url.
 * Returns 0 and *header_out (malloc'd), or the codes of kc_sts_assertion (an exchange the
 * service refuses is KANAL_EREJECTED). Ownership: borrows sts and entity_id; *header_out is
 * the caller's (wipe and free); fills err. */
int kc_sts_authorization(kc_sts_t *sts, const char *entity_id, char **header_out,
			 kanal_error_t *err);

/* Drops the cached tokens for entity_id (NULL: all), so that the next call gets new ones:
 * call it when a service answered 401, then retry once. Ownership: borrows everything. */
void kc_sts_forget(kc_sts_t *sts, const char *entity_id);

/* How many tokens the STS issued and access tokens were exchanged since kc_sts_new (for
 * tests and metrics). Ownership: none (plain values). */
unsigned kc_sts_issued(const kc_sts_t *sts);
unsigned kc_sts_exchanged(const kc_sts_t *sts);

/* ---- the messages, for the client above, the simulator and tests ---------------------- */

/* The REST issue request body (examples/sts/rest-issue.request.json): TokenType,
 * RequestType, KeyType, AnvenderKontekst.Cvr, UseKey (cert_b64: one line, no PEM armour),
 * AppliesTo.EndpointReference.Address and OnBehalfOf null. Returns malloc'd JSON or NULL
 * when out of memory. Ownership: borrows everything; the result is the caller's (free). */
char *kc_sts_rest_issue_body(const char *cvr, const char *cert_b64, const char *entity_id);

/* A WS-Trust 1.3 Issue request for the SOAP STS (examples/sts/soap-rst-request.skeleton.xml),
 * SOAP 1.2, signed with cert: one exc-c14n/SHA-256 reference each to the Timestamp
 * (now_ms, expiring 5 minutes later), Body, To, ReplyTo, MessageID, Action and the
 * BinarySecurityToken, SignedInfo signed RSA-SHA256. Returns 0 and *xml_out (malloc'd), or
 * KANAL_EINVAL / KANAL_ENOMEM with err set. Ownership: borrows everything; *xml_out is the
 * caller's (free); fills err. */
int kc_sts_soap_rst(const kc_cert_t *cert, const char *sts_url, const char *entity_id,
		    const char *cvr, int64_t now_ms, char **xml_out, kanal_error_t *err);

/* A SOAP 1.1 call to a token service (examples/sts/soap-service-request-with-saml.skeleton.xml):
 * sbf:Framework and WS-Addressing headers (action, a new MessageID, to, anonymous ReplyTo),
 * wsse:Security with a Timestamp, the assertion byte for byte, a SecurityTokenReference to
 * it and a signature by cert (holder-of-key) over Timestamp, Body, Action, MessageID, To,
 * ReplyTo, Framework and — through the STR-Transform — the assertion. body_xml is the
 * payload element (its own namespaces declared). Returns 0 and *xml_out, or KANAL_EINVAL
 * (the assertion or body is not XML) / KANAL_ENOMEM with err set. Ownership: borrows
 * everything; *xml_out is the caller's (free); fills err. */
int kc_sts_soap_call(const kc_cert_t *cert, const char *assertion_xml, const char *action,
		     const char *to, const char *body_xml, int64_t now_ms, char **xml_out,
		     kanal_error_t *err);

/* The digest of an STR-Transform reference to a SAML assertion: SHA-256 of the assertion's
 * exclusive canonical form (exc-c14n, no comments), in base64 — what xmlsec cannot compute
 * because it has no STR-Transform. Returns 0 and fills out (44 characters and a NUL), or
 * KANAL_EINVAL when assertion_xml is not one XML element. Ownership: borrows assertion_xml;
 * writes out. */
int kc_sts_str_digest(const char *assertion_xml, size_t len, char out[45]);

#endif
