/*
 * plugins/cpr/cpr_int.h — the parts of the cpr plugin that its files share: the SOAP
 * request and answer (soap.c) and the in-memory answer cache (cache.c). Private to the
 * plugin; nothing here is exported from the .so.
 */
#ifndef KANAL_PLUGIN_CPR_INT_H
#define KANAL_PLUGIN_CPR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* ---- SOAP (soap.c) ----------------------------------------------------------------------- */

/* What goes into every PersonLookupRequest. Strings are borrowed. */
typedef struct cpr_soap_opts {
	const char *ns;          /* namespace of PersonLookupRequest and PNR */
	const char *ctx_ns;      /* namespace of InvocationContext and its UUIDs */
	const char *agreement;   /* ServiceAgreementUUID */
	const char *usersystem;  /* UserSystemUUID */
	const char *user;        /* UserUUID */
	const char *service;     /* ServiceUUID */
} cpr_soap_opts_t;

/* Builds the SOAP 1.1 envelope asking for the ten digits `pnr`. Returns a malloc'd
 * NUL-terminated text (its length in *len), or NULL when out of memory. */
char *cpr_soap_request(const cpr_soap_opts_t *o, const char *pnr, size_t *len);

typedef enum cpr_soap_kind {
	CPR_SOAP_ANSWER,  /* a PersonLookupResponse: `person` holds it */
	CPR_SOAP_FAULT,   /* a SOAP Fault: code, text, and server says whose fault */
	CPR_SOAP_GARBAGE, /* not a usable answer: why says what is wrong */
} cpr_soap_kind_t;

typedef struct cpr_soap_result {
	cpr_soap_kind_t kind;
	json_t *person;      /* ANSWER: the person.lookup.response data (new reference) */
	char code[64];       /* FAULT: ServiceplatformFault ErrorCode, or "" when none */
	char text[256];      /* FAULT: ErrorText, else faultstring (CPR numbers masked) */
	bool server;         /* FAULT: faultcode says the server is at fault (passing) */
	char why[256];       /* GARBAGE: what is wrong (never quotes the answer) */
} cpr_soap_result_t;

/* Reads an answer body of len bytes: an answer, a fault, or garbage. The XML is parsed
 * without network access, entity expansion or DTD loading, and a document type
 * declaration is refused. An answer whose personnummer is not `pnr` is garbage. Returns
 * the kind (also stored in out->kind); release out with cpr_soap_result_clear. */
cpr_soap_kind_t cpr_soap_parse(const char *body, size_t len, const char *pnr,
			       cpr_soap_result_t *out);
void cpr_soap_result_clear(cpr_soap_result_t *res);

/* ---- cache (cache.c) --------------------------------------------------------------------- */

typedef struct cpr_cache cpr_cache_t;

/* A cache of at most max answers, each kept ttl_ms. Returns NULL when out of memory. */
cpr_cache_t *cpr_cache_new(size_t max, int64_t ttl_ms);
/* Frees every answer and the cache; accepts NULL and sets *cache_p to NULL. */
void cpr_cache_destroy(cpr_cache_t **cache_p);

/* The answer kept for the ten digits `pnr` and not expired at `now_ms` (monotonic), as a
 * new reference, or NULL. An expired answer found on the way is dropped. */
json_t *cpr_cache_get(cpr_cache_t *cache, const char *pnr, int64_t now_ms);

/* Keeps `person` (borrowed: the cache takes its own reference) for pnr until now_ms +
 * ttl, replacing an older answer; when full, the answer kept longest goes first. */
void cpr_cache_put(cpr_cache_t *cache, const char *pnr, json_t *person, int64_t now_ms);

/* Number of answers kept (expired ones not yet dropped included). */
size_t cpr_cache_count(const cpr_cache_t *cache);

#endif
