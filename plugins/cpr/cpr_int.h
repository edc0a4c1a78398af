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

#include <kanal/kanal.h>

#include "../common/kc_sts.h"

/* ---- SOAP (soap.c) ----------------------------------------------------------------------- */

/* SF1520 PersonBaseDataExtended: the namespaces of the contract (contracts/README.md §2). */
#define CPR_NS_V4 "http://serviceplatformen.dk/xml/wsdl/soap11/CPR/PersonBaseDataExtended/4/"
#define CPR_NS_V5 "http://serviceplatformen.dk/xml/wsdl/soap11/CPR/PersonBaseDataExtended/5/"
#define CPR_NS_INVCTX "http://serviceplatformen.dk/xml/schemas/InvocationContext/1/"
#define CPR_NS_AUTCTX "http://serviceplatformen.dk/xml/schemas/AuthorityContext/1/"
#define CPR_NS_PNR "http://serviceplatformen.dk/xml/schemas/cpr/PNR/1/"
#define CPR_SERVICE_UUID_V4 "e6be2436-bf35-4df2-83fe-925142825dc2"
#define CPR_ENTITY_V5 "http://cpr.serviceplatformen.dk/service/personbasedataextended/5"

/* What goes into every PersonLookupRequest. Strings are borrowed. */
typedef struct cpr_soap_opts {
	int version;            /* 4: InvocationContext (mutual TLS); 5: token model */
	const char *ns;         /* namespace of PersonLookupRequest (CPR_NS_V4 / _V5) */
	const char *ctx_ns;     /* namespace of InvocationContext and its UUIDs */
	const char *agreement;  /* v4: ServiceAgreementUUID */
	const char *usersystem; /* v4: UserSystemUUID */
	const char *user;       /* v4: UserUUID */
	const char *service;    /* v4: ServiceUUID */
	const char *cvr;        /* v5: AuthorityContext/MunicipalityCVR, NULL: not sent */
} cpr_soap_opts_t;

/* Builds the SOAP 1.1 envelope asking for the ten digits `pnr`: v4 with InvocationContext,
 * v5 with the optional AuthorityContext (its WS-Security header is added by the token
 * step, token.c). PNR is in the PNR namespace. Returns a malloc'd NUL-terminated text (its
 * length in *len), or NULL when out of memory. */
char *cpr_soap_request(const cpr_soap_opts_t *o, const char *pnr, size_t *len);

typedef enum cpr_soap_kind {
	CPR_SOAP_ANSWER,  /* a PersonLookupResponse: `person` holds it */
	CPR_SOAP_FAULT,   /* a SOAP Fault: code, text, and server says whose fault */
	CPR_SOAP_GARBAGE, /* not a usable answer: why says what is wrong */
} cpr_soap_kind_t;

typedef struct cpr_soap_result {
	cpr_soap_kind_t kind;
	json_t *person; /* ANSWER: the person.lookup.response data (new reference) */
	char code[64];  /* FAULT: ServiceplatformFault ErrorCode, or "" when none */
	char text[256]; /* FAULT: ErrorText, else faultstring (CPR numbers masked) */
	bool server;    /* FAULT: faultcode says the server is at fault (passing) */
	bool not_found; /* FAULT: the service says "PNR not found" */
	char why[256];  /* GARBAGE: what is wrong (never quotes the answer) */
} cpr_soap_result_t;

/* Reads an answer body of len bytes: an answer, a fault, or garbage. The XML is parsed
 * without network access, entity expansion or DTD loading, and a document type
 * declaration is refused. An answer whose personnummer is not `pnr` is garbage. Returns
 * the kind (also stored in out->kind); release out with cpr_soap_result_clear. */
cpr_soap_kind_t cpr_soap_parse(const char *body, size_t len, const char *pnr,
			       cpr_soap_result_t *out);
void cpr_soap_result_clear(cpr_soap_result_t *res);

/* The CPR numbers of the child's current custody holders, read from the child's answer
 * (`person`, as cpr_soap_parse maps it): relations.custody[].cpr. True when `cpr` is one. */
bool cpr_holds_custody(json_t *child, const char *cpr);

/* ---- the v5 token (token.c) ---------------------------------------------------------------- */

/* Wraps the unsigned v5 envelope *body (malloc'd, *len bytes, from cpr_soap_request) in a
 * signed SOAP call (kc_sts_soap_call) carrying the STS assertion for `entity_id`, addressed
 * to `to` with the WS-Addressing `action`, replacing *body (the old one wiped). Returns 0,
 * or the codes of kc_sts_assertion (KANAL_ECONFIG: the certificate; KANAL_EREJECTED: the
 * STS refused; KANAL_EIO / KANAL_ETIMEDOUT: try again) with err set.
 * Ownership: borrows sts, cert and the strings; *body is replaced (the caller's). */
int cpr_token_secure(kc_sts_t *sts, const kc_cert_t *cert, const char *entity_id,
		     const char *action, const char *to, char **body, size_t *len,
		     kanal_error_t *err);

/* True when the service's answer says the token is no longer good — HTTP 401, or a client
 * fault about the token — so that the caller forgets it (kc_sts_forget) and tries once more
 * with a new one. Ownership: borrows fault (NULL: not a fault). */
bool cpr_token_refused(long status, const cpr_soap_result_t *fault);

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

/* ---- the worker threads (pool.c) ----------------------------------------------------------- */

/* Most worker threads of one instance (option `concurrency`). */
#define CPR_POOL_MAX 64

/* A piece of work for a worker; embed it first in the task's own struct. */
typedef struct cpr_task {
	struct cpr_task *next;
	int cancel;   /* atomic: set by cpr_pool_cancel; the run may poll it */
	bool skipped; /* the task was not run (cancelled while queued, or the pool stopped) */
} cpr_task_t;

typedef struct cpr_pool cpr_pool_t;

/* Runs task on worker `worker` (0 … n-1): no host service may be called from it. */
typedef void (*cpr_run_fn)(void *arg, cpr_task_t *task, size_t worker);
/* Called on the instance's thread for each task that was run or skipped; takes it. */
typedef void (*cpr_done_fn)(kanal_ctx_t *ctx, void *arg, cpr_task_t *task);

/* Starts n worker threads (1 … CPR_POOL_MAX) and watches their finished tasks from the
 * instance's loop. Call from start. Returns 0 or a negative code. Ownership: borrows ctx
 * and arg (both must outlive the pool); *out is new. */
int cpr_pool_start(kanal_ctx_t *ctx, size_t n, cpr_run_fn run, cpr_done_fn done, void *arg,
		   cpr_pool_t **out);
/* Queues task for the next free worker. Ownership: the pool holds task until `done`. */
void cpr_pool_submit(cpr_pool_t *pool, cpr_task_t *task);
/* Marks task cancelled (from any thread): not run if still queued. */
void cpr_pool_cancel(cpr_task_t *task);
/* Skips every queued task, waits for the running ones, hands all to `done` (on the calling
 * thread, the instance's) and frees the pool. Accepts NULL; sets *pool_p to NULL. */
void cpr_pool_stop(cpr_pool_t **pool_p);

#endif
