/*
 * plugins/sf2900/sf2900.c — the sf2900 connector: files a citizen's self-service submission
 * (selfservice.form.submitted) in the municipality's case system through SF2900
 * Fordelingskomponenten (DistributionService 3, contracts/README.md §4), so nobody retypes
 * it, and reports what became of it as selfservice.submission.status.
 *
 * Each submission is one FordelingsobjektAfsend of a FORMULAR: the form's title and type,
 * its KLE subject (Fordelingskomponenten routes by it to the case system registered for
 * it, or to the instance's receiving_system), the readable rendering as FormularIndhold and
 * the form's data, the applicant and the attached documents (from the blob store) as
 * FormularXML. The call is SOAP 1.1 over mutual TLS with the municipality's function
 * certificate and the AuthorityContext (MunicipalityCVR) in the body — the AuthorityContext
 * security model. The AnvenderTransaktionsID and the form's ID are name-based on the
 * event's source and id, so a redelivered submission is the same transaction.
 *
 * The synchronous answer is a business receipt: MODTAGET (taken for distribution) gives the
 * status `received`; a TransportKvittering fault (no case system for the subject, invalid)
 * is a REJECT and the final status `failed`. The case system's own answer comes later as a
 * FordelingskvitteringModtag call to the instance's listener (callback_listen): ACCEPTERET
 * gives the final `accepted`, AFVIST `rejected`, FEJLET `failed`. The submissions awaiting
 * it are a small JSON map in the instance's state folder (no CPR number in it), so a
 * restart loses none.
 *
 * Fordelingskomponenten calls whenever it likes, also while the instance's thread is blocked
 * in its next FordelingsobjektAfsend, so the listener runs on libmicrohttpd's own thread
 * (plugins/common/kc_inbox.h): it reads each receipt, keeps a final one in the inbox
 * (receipts-received.json, 0600, saved before the answer) and wakes the instance's thread,
 * which matches it to its submission and emits the status. A receipt that came before its
 * submission was recorded (it may overtake the answer that accepted it) waits for it up to
 * RECEIPT_WAIT_MS, then is dropped and counted (receipts_unmatched).
 *
 * docs/plugins/sf2900.md is the user's description.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <microhttpd.h>

#include <kanal/blob.h>
#include <kanal/kanal.h>

#include "../common/kc_cert.h"
#include "../common/kc_files.h"
#include "../common/kc_http.h"
#include "../common/kc_inbox.h"
#include "../common/kc_mhd.h"
#include "../common/kc_soap.h"
#include "../common/kc_text.h"
#include "../common/kc_url.h"

#define NS3 "http://serviceplatformen.dk/xml/wsdl/soap11/DistributionService/3/types"
#define NS2 "http://serviceplatformen.dk/xml/wsdl/soap11/DistributionService/2/types"
#define AUTHCTX "http://serviceplatformen.dk/xml/schemas/AuthorityContext/1/"
#define ACTION_AFSEND                                                                              \
	"SOAPAction: \"http://serviceplatformen.dk/xml/wsdl/soap11/DistributionService/3/port/"    \
	"FordelingsobjektAfsend\""
#define PENDING_FILE "submissions-awaiting-receipt.json"
#define MAX_CALLBACK_BODY (1024 * 1024)
#define RECEIPTS_FILE "receipts-received.json"
#define MAX_RECEIPTS 10000            /* receipts waiting before the callback refuses more */
#define RECEIPT_WAIT_MS (3600 * 1000) /* how long a receipt waits for its submission */
#define SWEEP_MS 5000                 /* how often waiting receipts are tried again */

typedef struct sf2900 {
	/* Bound options (s_options). */
	const char *endpoint, *cvr, *receiving_system;
	const char *callback_listen, *callback_path;
	kc_http_conf_t http_conf;
	kc_cert_conf_t cert_conf;

	kanal_ctx_t *ctx;
	kc_cert_t *cert;
	kc_http_t *http;
	json_t *pending; /* AnvenderTransaktionsID → {submission, source, correlationid, form} */
	struct MHD_Daemon *daemon; /* with its own thread: answers while a request is sent */
	kc_inbox_t *inbox;         /* receipts read by the listener; NULL without callback */
	int64_t sweep;             /* the timer that tries waiting receipts again; 0: none */
} sf2900_t;

static const kanal_option_t s_options[] = {
	{ .name = "endpoint",
	  .type = KANAL_OPT_STRING,
	  .required = true,
	  KANAL_OPT_AT(sf2900_t, endpoint),
	  .help = "DistributionService 3: https://exttest.serviceplatformen.dk/service/SP/"
		  "Distribution/3 (test) or https://prod.serviceplatformen.dk/… (production)." },
	{ .name = "cvr",
	  .type = KANAL_OPT_STRING,
	  .required = true,
	  KANAL_OPT_AT(sf2900_t, cvr),
	  .help = "The municipality's CVR number (8 digits): MunicipalityCVR, "
		  "AfsendendeMyndighed and RoutingMyndighed." },
	{ .name = "receiving_system",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(sf2900_t, receiving_system),
	  .help = "UUID of the receiving case system (RoutingModtagerAktoer); unset: "
		  "Fordelingskomponenten routes by the form's KLE subject." },
	{ .name = "callback_listen",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(sf2900_t, callback_listen),
	  .help = "HOST:PORT where Fordelingskomponenten calls FordelingskvitteringModtag with "
		  "the case system's receipt (plain http: terminate TLS in front). Unset: only "
		  "the status received." },
	{ .name = "callback_path",
	  .type = KANAL_OPT_STRING,
	  .default_value = "/sf2900/kvittering",
	  KANAL_OPT_AT(sf2900_t, callback_path),
	  .help = "The callback's path." },
	KC_HTTP_OPT_TIMEOUT(sf2900_t, http_conf, "10s", "Longest wait for one SOAP answer."),
	KC_HTTP_OPT_CA_FILE(sf2900_t, http_conf),
	KC_CERT_OPTS(sf2900_t, cert_conf),
	KC_URL_OPT_ALLOW_PLAIN_HTTP(sf2900_t, http_conf.allow_plain_http),
	{ 0 }
};

/* ---- the status -------------------------------------------------------------------------- */

/* Emits selfservice.submission.status about the submission (named by its id and source):
 * status received|accepted|rejected|failed, final for all but received. */
static int s_emit(kanal_ctx_t *ctx, const char *anvender, const char *submission,
		  const char *source, const char *correlationid, const char *form_type,
		  const char *status, const char *reason, const char *transaction)
{
	char id[128], *safe = reason ? kanal_cpr_redact(reason, strlen(reason)) : NULL, *text;
	json_t *data =
		json_pack("{s:s, s:s, s:s, s:b}", "submission", submission, "submission_source",
			  source, "status", status, "final", strcmp(status, "received") != 0);
	kanal_msg_t *st;
	int rc = KANAL_ENOMEM;

	snprintf(id, sizeof id, "sf2900-%s-%s", anvender, status);
	if (data && safe)
		json_object_set_new(data, "reason", json_string(safe));
	if (data && form_type)
		json_object_set_new(data, "form_type", json_string(form_type));
	if (data && transaction && *transaction)
		json_object_set_new(data, "transaction", json_string(transaction));
	if (data)
		json_object_set_new(data, "anvender_transaction", json_string(anvender));
	kanal_free(safe);
	text = data ? json_dumps(data, JSON_COMPACT) : NULL;
	json_decref(data);
	st = kanal_msg_new("selfservice.submission.status", kanal_instance_name(ctx), id);
	if (st && text &&
	    (kanal_msg_set_attr(st, "causationid", submission, NULL) != 0 ||
	     kanal_msg_set_attr(st, "correlationid", correlationid ? correlationid : submission,
				NULL) != 0 ||
	     kanal_msg_set_attr(st, "datacontenttype", "application/json", NULL) != 0 ||
	     kanal_msg_set_data_json(st, text, strlen(text)) != 0))
		rc = KANAL_EINVALID;
	else if (st && text)
		rc = kanal_emit(ctx, &st);
	free(text);
	kanal_msg_destroy(&st);
	return rc;
}

static void s_pending_save(sf2900_t *s)
{
	char *text = json_dumps(s->pending, JSON_COMPACT | JSON_SORT_KEYS);

	if (!text || kc_state_write(s->ctx, PENDING_FILE, text, strlen(text)) != 0)
		kanal_log(s->ctx, KANAL_LOG_WARN,
			  "the submissions awaiting the case system's receipt could not be saved "
			  "(%s): a restart forgets them",
			  PENDING_FILE);
	free(text);
}

/* ---- the request ------------------------------------------------------------------------- */

/* Appends s escaped for XML text and attributes. */
static void s_esc(kc_buf_t *b, const char *s)
{
	xmlChar *e = xmlEncodeSpecialChars(NULL, (const xmlChar *)(s ? s : ""));

	if (!e)
		b->failed = true;
	else
		kc_buf_puts(b, (const char *)e);
	xmlFree(e);
}

/* The base64 of a document object {content} or {href} (a blob): malloc'd, or NULL with
 * why filled. */
static char *s_document_b64(kanal_ctx_t *ctx, json_t *doc, const char *what, char *why,
			    size_t why_size)
{
	const char *content = json_string_value(json_object_get(doc, "content"));
	const char *href = json_string_value(json_object_get(doc, "href"));
	void *data = NULL;
	size_t size = 0;
	kanal_error_t err;
	char *b64;

	if (content)
		return strdup(content);
	if (!href) {
		snprintf(why, why_size, "data.%s has neither content nor href", what);
		return NULL;
	}
	kanal_error_clear(&err);
	if (kanal_blob_get(ctx, href, &data, &size, &err) != 0) {
		snprintf(why, why_size, "data.%s.href: %.300s", what, err.text);
		return NULL;
	}
	b64 = kc_base64(data, size);
	kanal_blob_free(&data);
	return b64;
}

/* Appends one <felt navn="key">value</felt> per form field (nested values as JSON text). */
static void s_fields(kc_buf_t *b, json_t *fields)
{
	const char *key;
	json_t *v;

	json_object_foreach(fields, key, v)
	{
		char num[64], *json = NULL;
		const char *text = json_string_value(v);
		if (json_is_integer(v))
			snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v)),
				text = num;
		else if (json_is_real(v))
			snprintf(num, sizeof num, "%g", json_real_value(v)), text = num;
		else if (json_is_boolean(v))
			text = json_is_true(v) ? "true" : "false";
		else if (!text && !json_is_null(v))
			text = json = json_dumps(v, JSON_COMPACT);
		kc_buf_puts(b, "<felt navn=\"");
		s_esc(b, key);
		kc_buf_puts(b, "\">");
		s_esc(b, text ? text : "");
		kc_buf_puts(b, "</felt>");
		free(json);
	}
}

/* A KLE subject nn.nn.nn. */
static bool s_kle(const char *k)
{
	return k && strlen(k) == 8 && k[2] == '.' && k[5] == '.' && strspn(k, "0123456789.") == 8;
}

/* Builds the FordelingsobjektAfsendRequest envelope for the submission msg. Returns a
 * malloc'd text, or NULL with why filled (a REJECT). */
static char *s_request(sf2900_t *s, kanal_ctx_t *ctx, const kanal_msg_t *msg, const char *anvender,
		       const char *form_id, char *why, size_t why_size)
{
	char *text = kanal_msg_data_json(msg, NULL), *rendering = NULL;
	json_t *data = text ? json_loads(text, 0, NULL) : NULL, *form, *doc, *att;
	const char *cpr, *type, *title, *kle, *facet, *mt, *format = "TXT";
	kc_buf_t b = { 0 };
	size_t i;

	kanal_free(text);
	form = json_object_get(data, "form");
	cpr = json_string_value(json_object_get(data, "cpr"));
	type = json_string_value(json_object_get(form, "type"));
	title = json_string_value(json_object_get(form, "title"));
	kle = json_string_value(json_object_get(form, "kle"));
	facet = json_string_value(json_object_get(form, "facet"));
	if (!json_is_object(form) || !type || !*type || !title || !*title) {
		snprintf(why, why_size, "data.form needs type and title");
		goto fail;
	}
	if (!s_kle(kle)) {
		snprintf(why, why_size, "data.form.kle: a KLE subject nn.nn.nn is required");
		goto fail;
	}
	if (facet && (strlen(facet) < 3 || strlen(facet) > 4)) {
		snprintf(why, why_size, "data.form.facet: a handling facet such as G01");
		goto fail;
	}
	if (!cpr || !kanal_cpr_valid(cpr)) {
		snprintf(why, why_size, "data.cpr: the applicant's CPR number is required");
		goto fail;
	}
	/* The readable rendering: the document, or the fields as text. */
	if ((doc = json_object_get(data, "document"))) {
		if (!(rendering = s_document_b64(ctx, doc, "document", why, why_size)))
			goto fail;
		mt = json_string_value(json_object_get(doc, "mediaType"));
		if (!mt)
			mt = json_string_value(json_object_get(doc, "mimetype"));
		format = mt && strstr(mt, "pdf")    ? "PDF"
			 : mt && strstr(mt, "html") ? "HTML"
						    : "TXT";
	} else {
		char *fields = json_dumps(json_object_get(form, "fields"), JSON_INDENT(2));
		rendering = kc_base64(fields ? fields : "{}", fields ? strlen(fields) : 2);
		free(fields);
	}
	kc_buf_puts(
		&b,
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">"
		"<soapenv:Header/><soapenv:Body><typ:FordelingsobjektAfsendRequest xmlns:typ=\"" NS3
		"\" xmlns:authctx=\"" AUTHCTX "\" xmlns:v2=\"" NS2 "\">"
		"<authctx:AuthorityContext><authctx:MunicipalityCVR>");
	s_esc(&b, s->cvr);
	kc_buf_puts(&b, "</authctx:MunicipalityCVR></authctx:AuthorityContext><typ:anmodning>"
			"<v2:DistributionContext><v2:AnvenderTransaktionsID>");
	kc_buf_puts(&b, anvender);
	kc_buf_puts(&b, "</v2:AnvenderTransaktionsID><v2:AfsendendeMyndighed>");
	s_esc(&b, s->cvr);
	kc_buf_puts(&b, "</v2:AfsendendeMyndighed><v2:RoutingMyndighed>");
	s_esc(&b, s->cvr);
	kc_buf_puts(&b, "</v2:RoutingMyndighed><v2:RoutingValg>");
	if (s->receiving_system) {
		kc_buf_puts(&b, "<v2:RoutingModtagerAktoer>");
		s_esc(&b, s->receiving_system);
		kc_buf_puts(&b, "</v2:RoutingModtagerAktoer>");
	} else {
		kc_buf_puts(&b, "<v2:RoutingKLEEmneHandling><v2:RoutingKLEEmne>");
		s_esc(&b, kle);
		kc_buf_puts(&b, "</v2:RoutingKLEEmne>");
		if (facet) {
			kc_buf_puts(&b, "<v2:RoutingHandlingFacet>");
			s_esc(&b, facet);
			kc_buf_puts(&b, "</v2:RoutingHandlingFacet>");
		}
		kc_buf_puts(&b, "</v2:RoutingKLEEmneHandling>");
	}
	kc_buf_puts(&b, "</v2:RoutingValg></v2:DistributionContext><v2:DistributionObject>"
			"<v2:ObjektType>FORMULAR</v2:ObjektType><v2:ObjektIndhold>"
			"<v2:DistributionFormular><v2:ID>");
	kc_buf_puts(&b, form_id);
	kc_buf_puts(&b, "</v2:ID><v2:KLEEmneForslag>");
	s_esc(&b, kle);
	kc_buf_puts(&b, "</v2:KLEEmneForslag>");
	if (facet) {
		kc_buf_puts(&b, "<v2:HandlingFacetForslag>");
		s_esc(&b, facet);
		kc_buf_puts(&b, "</v2:HandlingFacetForslag>");
	}
	kc_buf_puts(&b, "<v2:Meddelelse><v2:FormularType>");
	s_esc(&b, type);
	kc_buf_puts(&b, "</v2:FormularType><v2:Formular><v2:TitelTekst>");
	s_esc(&b, title);
	kc_buf_puts(&b, "</v2:TitelTekst><v2:FormatNavn>");
	kc_buf_puts(&b, format);
	kc_buf_puts(&b, "</v2:FormatNavn><v2:FormularIndhold>");
	kc_buf_puts(&b, rendering);
	kc_buf_puts(&b, "</v2:FormularIndhold><v2:FormularXML>"
			"<ansoegning xmlns=\"urn:kanal:selfservice:1\"><ansoeger><cpr>");
	s_esc(&b, cpr);
	kc_buf_puts(&b, "</cpr></ansoeger>");
	s_fields(&b, json_object_get(form, "fields"));
	json_array_foreach(json_object_get(data, "attachments"), i, att)
	{
		char what[48], *b64;
		snprintf(what, sizeof what, "attachments.%zu", i);
		if (!(b64 = s_document_b64(ctx, att, what, why, why_size)))
			goto fail;
		mt = json_string_value(json_object_get(att, "mediaType"));
		kc_buf_puts(&b, "<bilag filnavn=\"");
		s_esc(&b, json_string_value(json_object_get(att, "filename")));
		kc_buf_puts(&b, "\" mimetype=\"");
		s_esc(&b, mt ? mt : "application/octet-stream");
		kc_buf_puts(&b, "\">");
		kc_buf_puts(&b, b64);
		kc_buf_puts(&b, "</bilag>");
		free(b64);
	}
	kc_buf_puts(&b, "</ansoegning></v2:FormularXML></v2:Formular></v2:Meddelelse>"
			"</v2:DistributionFormular></v2:ObjektIndhold></v2:DistributionObject>"
			"</typ:anmodning></typ:FordelingsobjektAfsendRequest></soapenv:Body>"
			"</soapenv:Envelope>\n");
	free(rendering);
	json_decref(data);
	if (b.failed) {
		snprintf(why, why_size, "out of memory");
		free(b.p);
		return NULL;
	}
	return b.p;
fail:
	free(rendering);
	free(b.p);
	json_decref(data);
	return NULL;
}

/* ---- the answer -------------------------------------------------------------------------- */

typedef struct {
	kanal_outcome_t outcome;
	char code[32];        /* ForretningsValideringsKode, or FEJL of a fault */
	char transaction[64]; /* DistributionTransktionsID */
	char error[600];      /* why, for kanal_set_error and the status */
	int64_t retry_after_ms;
} answer_t;

/* Reads the service's answer into a. */
static void s_answer(const kc_response_t *res, answer_t *a)
{
	xmlDocPtr doc = NULL;
	xmlNodePtr payload;
	char text[400], code[64], kode[32];

	a->retry_after_ms = res->retry_after_ms;
	if (res->status && res->body)
		doc = xmlReadMemory(res->body, (int)res->len, "answer.xml", NULL,
				    XML_PARSE_NONET | XML_PARSE_NOBLANKS);
	payload = kc_soap_payload(doc);
	if (payload && !strcmp((const char *)payload->name, "Fault") &&
	    kc_xml_text(payload, "TransportValideringsKode", kode, sizeof kode)) {
		kc_xml_text(payload, "Begrundelse", text, sizeof text);
		kc_xml_text(payload, "FejlKode", code, sizeof code);
		snprintf(a->code, sizeof a->code, "%s", kode);
		snprintf(a->error, sizeof a->error, "SF2900 refused the submission: %s: %s%s%s",
			 kode, text, *code ? " — " : "", code);
		kc_xml_text(payload, "FejlTekst", text, sizeof text);
		if (*text) {
			size_t n = strlen(a->error);
			snprintf(a->error + n, sizeof a->error - n, ": %s", text);
		}
		/* A server fault is the platform's trouble; a client fault is the form's. */
		kc_xml_text(payload, "faultcode", code, sizeof code);
		a->outcome = strstr(code, "Server") ? KANAL_OUTCOME_RETRY : KANAL_OUTCOME_REJECT;
	} else if (res->status >= 200 && res->status < 300 && payload &&
		   !strcmp((const char *)payload->name, "FordelingsobjektAfsendResponse") &&
		   kc_xml_text(payload, "ForretningsValideringsKode", a->code, sizeof a->code)) {
		kc_xml_text(payload, "DistributionTransktionsID", a->transaction,
			    sizeof a->transaction);
		kc_xml_text(payload, "Begrundelse", text, sizeof text);
		if (!strcmp(a->code, "AFVIST") || !strcmp(a->code, "FEJLET")) {
			a->outcome = KANAL_OUTCOME_REJECT;
			snprintf(a->error, sizeof a->error, "SF2900 answered %s: %s", a->code,
				 *text ? text : "(no reason given)");
		} else {
			a->outcome = KANAL_OUTCOME_OK;
		}
	} else {
		char desc[400];
		/* No answer, an HTTP error without a TransportKvittering, or garbage: the
		 * platform or kanal's setup, not the form — try again. */
		kc_http_describe(res, "POST FordelingsobjektAfsend", desc, sizeof desc);
		snprintf(a->error, sizeof a->error, "%s%s", desc,
			 res->status >= 200 && res->status < 300
				 ? " (not a DistributionService answer)"
				 : "");
		a->outcome = KANAL_OUTCOME_RETRY;
	}
	xmlFreeDoc(doc);
}

/* ---- a submission ------------------------------------------------------------------------ */

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	sf2900_t *s = state;
	char anvender[37], form_id[37], why[400] = "", *body;
	const char *corr = kanal_msg_attr(msg, "correlationid"), *type = NULL;
	const char *headers[] = { "Content-Type: text/xml; charset=utf-8", ACTION_AFSEND, NULL };
	kc_response_t res = { .retry_after_ms = -1 };
	answer_t a = { .retry_after_ms = -1 };
	int rc;

	kanal_metric_add(ctx, "received", 1);
	if (strcmp(kanal_msg_type(msg), "selfservice.form.submitted")) {
		kanal_set_error(ctx,
				"sf2900 takes selfservice.form.submitted, not %s (check the "
				"route)",
				kanal_msg_type(msg));
		return KANAL_OUTCOME_REJECT;
	}
	if (kc_uuid_name("sf2900", kanal_msg_source(msg), kanal_msg_id(msg), "", anvender) ||
	    kc_uuid_name("sf2900", kanal_msg_source(msg), kanal_msg_id(msg), "form", form_id)) {
		kanal_set_error(ctx, "sf2900: no SHA-1 for the transaction id");
		return KANAL_OUTCOME_RETRY;
	}
	kanal_msg_data_str(msg, "form.type", &type);
	if (!(body = s_request(s, ctx, msg, anvender, form_id, why, sizeof why))) {
		kanal_metric_add(ctx, "rejected", 1);
		kanal_set_error(ctx, "invalid submission: %s", why);
		s_emit(ctx, anvender, kanal_msg_id(msg), kanal_msg_source(msg), corr, type,
		       "failed", why, NULL);
		return KANAL_OUTCOME_REJECT;
	}
	rc = kc_http_request(s->http, "POST", s->endpoint, headers, body, strlen(body), &res);
	free(body);
	(void)rc; /* no answer is res.status 0: s_answer makes it a RETRY */
	s_answer(&res, &a);
	kc_response_clear(&res);
	if (a.outcome == KANAL_OUTCOME_RETRY) {
		kanal_metric_add(ctx, "retried", 1);
		kanal_set_error(ctx, "%s", a.error);
		if (a.retry_after_ms >= 0)
			kanal_set_retry_after(ctx, a.retry_after_ms);
		return a.outcome;
	}
	if (a.outcome == KANAL_OUTCOME_REJECT) {
		kanal_metric_add(ctx, "rejected", 1);
		kanal_set_error(ctx, "%s", a.error);
		s_emit(ctx, anvender, kanal_msg_id(msg), kanal_msg_source(msg), corr, type,
		       "failed", a.error, a.transaction);
		return a.outcome;
	}
	/* Taken for distribution: wait for the case system's receipt. */
	if (s->daemon || s->callback_listen) {
		json_object_set_new(s->pending, anvender,
				    json_pack("{s:s, s:s, s:s?, s:s?}", "submission",
					      kanal_msg_id(msg), "source", kanal_msg_source(msg),
					      "correlationid", corr, "form_type", type));
		s_pending_save(s);
		/* Its receipt may have come already: match it once this delivery is done. */
		if (s->inbox && kc_inbox_size(s->inbox))
			kc_inbox_wake(s->inbox);
	}
	kanal_metric_add(ctx, "filed", 1);
	rc = s_emit(ctx, anvender, kanal_msg_id(msg), kanal_msg_source(msg), corr, type, "received",
		    a.code, a.transaction);
	if (rc != 0 && rc != KANAL_EDUPLICATE)
		kanal_log(ctx, KANAL_LOG_WARN, "submission %s: status not emitted: %s",
			  kanal_msg_id(msg), kanal_strerror(rc));
	kanal_log(ctx, KANAL_LOG_INFO, "submission %s filed: %s, DistributionTransktionsID %s",
		  kanal_msg_id(msg), a.code, a.transaction);
	return KANAL_OUTCOME_OK;
}

/* ---- the case system's receipt (FordelingskvitteringModtag) -------------------------------- */

/* Reads one receipt on libmicrohttpd's thread (no host service): the HTTP status to answer,
 * why filled when not 200; *out is a new inbox entry for a final receipt, NULL for one on
 * the way (MODTAGET, AFLEVERET: not the end). */
static unsigned s_read_receipt(const char *body, size_t len, char *why, size_t why_size,
			       json_t **out)
{
	xmlDocPtr doc = xmlReadMemory(body, (int)len, "receipt.xml", NULL,
				      XML_PARSE_NONET | XML_PARSE_NOBLANKS);
	xmlNodePtr payload = kc_soap_payload(doc);
	char anvender[64], code[32], reason[400], transaction[64], *safe = NULL;
	unsigned http = 200;

	*out = NULL;
	if (!payload ||
	    !kc_xml_text(payload, "AnvenderTransaktionsID", anvender, sizeof anvender) ||
	    !kc_xml_text(payload, "ForretningsValideringsKode", code, sizeof code)) {
		snprintf(why, why_size, "not a FordelingskvitteringModtag request");
		http = 400;
		goto done;
	}
	if (strcmp(code, "ACCEPTERET") && strcmp(code, "AFVIST") && strcmp(code, "FEJLET"))
		goto done;
	kc_xml_text(payload, "Begrundelse", reason, sizeof reason);
	kc_xml_text(payload, "DistributionTransktionsID", transaction, sizeof transaction);
	/* The inbox is a file: no CPR number in it. */
	safe = kanal_cpr_redact(reason, strlen(reason));
	*out = json_pack("{s:s, s:s, s:s, s:s, s:I}", "anvender", anvender, "code", code, "reason",
			 safe ? safe : "", "transaction", transaction, "at_ms",
			 (json_int_t)kanal_wall_ms());
	kanal_free(safe);
	if (!*out) {
		snprintf(why, why_size, "out of memory: send it again");
		http = 503;
	}
done:
	xmlFreeDoc(doc);
	return http;
}

/* Applies one receipt from the inbox (instance's thread): true when it is done with (its
 * status emitted, or it waited RECEIPT_WAIT_MS for a submission in vain), false when it
 * must wait (no submission recorded for it yet, or kanald is busy). */
static bool s_apply(sf2900_t *s, json_t *r, int64_t now, bool *pending_changed)
{
	const char *anvender = json_string_value(json_object_get(r, "anvender"));
	const char *code = json_string_value(json_object_get(r, "code"));
	const char *reason = json_string_value(json_object_get(r, "reason"));
	const char *status;
	json_t *p = anvender ? json_object_get(s->pending, anvender) : NULL;
	char full[440];
	int rc;

	if (!anvender || !code) /* not one the listener kept (the file was edited) */
		return true;
	status = !strcmp(code, "ACCEPTERET") ? "accepted"
		 : !strcmp(code, "AFVIST")   ? "rejected"
					     : "failed";
	if (!p) {
		if (now - json_integer_value(json_object_get(r, "at_ms")) < RECEIPT_WAIT_MS)
			return false; /* it may have overtaken the answer that accepted it */
		kanal_metric_add(s->ctx, "receipts_unmatched", 1);
		kanal_log(s->ctx, KANAL_LOG_INFO,
			  "receipt %s for AnvenderTransaktionsID %s, which this instance does not "
			  "await (already reported?): dropped",
			  code, anvender);
		return true;
	}
	snprintf(full, sizeof full, "%s%s%s", code, reason && *reason ? ": " : "",
		 reason ? reason : "");
	rc = s_emit(s->ctx, anvender, json_string_value(json_object_get(p, "submission")),
		    json_string_value(json_object_get(p, "source")),
		    json_string_value(json_object_get(p, "correlationid")),
		    json_string_value(json_object_get(p, "form_type")), status, full,
		    json_string_value(json_object_get(r, "transaction")));
	if (rc != 0 && rc != KANAL_EDUPLICATE)
		return false; /* busy: the next drain tries again */
	kanal_metric_add(s->ctx, status, 1);
	json_object_del(s->pending, anvender);
	*pending_changed = true;
	return true;
}

/* Applies the receipts the listener kept (instance's thread, woken by the inbox or the
 * sweep); those that must wait go back to the inbox. */
static void s_drain(void *arg)
{
	sf2900_t *s = arg;
	kc_inbox_counts_t counts;
	json_t *taken = kc_inbox_take(s->inbox, &counts), *keep = json_array(), *r;
	int64_t now = kanal_wall_ms();
	bool pending_changed = false;
	size_t i;

	if (counts.refused)
		kanal_log(s->ctx, KANAL_LOG_WARN, "callback refused %lu receipt(s), the latest: %s",
			  counts.refused, counts.why);
	if (!taken || !keep) { /* out of memory: try again at the next sweep */
		json_decref(keep);
		if (taken)
			kc_inbox_put_back(s->inbox, &taken, false);
		return;
	}
	json_array_foreach(taken, i, r)
	{
		if (!s_apply(s, r, now, &pending_changed))
			json_array_append(keep, r);
	}
	if (pending_changed)
		s_pending_save(s);
	kc_inbox_put_back(s->inbox, &keep, json_array_size(keep) != json_array_size(taken));
	json_decref(taken);
}

static void s_sweep(kanal_ctx_t *ctx, void *arg)
{
	(void)ctx;
	s_drain(arg);
}

static enum MHD_Result s_reply(struct MHD_Connection *conn, unsigned status, const char *why)
{
	char body[1024];
	struct MHD_Response *res;
	enum MHD_Result ret;

	if (status == 200)
		snprintf(body, sizeof body,
			 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope "
			 "xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>"
			 "<v2:FordelingskvitteringModtagAnvenderResponse xmlns:v2=\"" NS2 "\"/>"
			 "</soap:Body></soap:Envelope>\n");
	else
		snprintf(body, sizeof body,
			 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope "
			 "xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>"
			 "<soap:Fault><faultcode>soap:%s</faultcode><faultstring>%.600s"
			 "</faultstring></soap:Fault></soap:Body></soap:Envelope>\n",
			 status < 500 ? "Client" : "Server", why);
	res = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
	if (!res)
		return MHD_NO;
	MHD_add_response_header(res, "Content-Type", "text/xml; charset=utf-8");
	ret = MHD_queue_response(conn, status == 200 ? 200 : 500, res);
	MHD_destroy_response(res);
	return ret;
}

static enum MHD_Result s_handler(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *data,
				 size_t *size, void **con_cls)
{
	sf2900_t *s = cls;
	kc_mhd_body_t *body = NULL;
	json_t *receipt = NULL;
	char why[300] = "";
	unsigned status;
	int step;

	(void)version;
	if (!*con_cls && (strcmp(url, s->callback_path) || strcmp(method, "POST")))
		return s_reply(conn, 404, "POST the receipt to the callback path");
	step = kc_mhd_body_take(con_cls, data, size, MAX_CALLBACK_BODY, &body);
	if (step != KC_MHD_BODY_DONE)
		return step == KC_MHD_BODY_MORE ? MHD_YES : MHD_NO;
	if (body->too_big)
		return s_reply(conn, 413, "body larger than 1 MiB");
	/* On libmicrohttpd's thread: no host service here; the instance's thread is woken. */
	status = s_read_receipt(body->data ? body->data : "", body->len, why, sizeof why, &receipt);
	if (receipt && kc_inbox_keep(s->inbox, receipt, why, sizeof why) != 0)
		status = 503; /* Fordelingskomponenten calls again */
	json_decref(receipt);
	if (status != 200)
		kc_inbox_refused(s->inbox, status == 400, why);
	return s_reply(conn, status, why);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static void s_destroy(void *state)
{
	sf2900_t *s = state;

	if (!s)
		return;
	kc_http_destroy(&s->http);
	kc_cert_destroy(&s->cert);
	kc_http_conf_clear(&s->http_conf);
	json_decref(s->pending);
	kc_inbox_destroy(&s->inbox);
	free(s);
}

/* The rules init and check share (docs/sdk.md, "Checking a config"): the CVR number, the
 * receiving system's UUID, the endpoint (kc_url_check's rule), the HTTP options' files and
 * the function certificate — read, never created. What it loads stays in s for init.
 * Returns 0 or -1 after kanal_set_error. */
static int s_validate(kanal_ctx_t *ctx, sf2900_t *s, kc_http_opts_t *http)
{
	kanal_error_t err;

	if (strlen(s->cvr) != 8 || strspn(s->cvr, "0123456789") != 8) {
		kanal_set_error(ctx, "option 'cvr': '%s' is not a CVR number (8 digits)", s->cvr);
		return -1;
	}
	if (s->receiving_system && strlen(s->receiving_system) != 36) {
		kanal_set_error(ctx, "option 'receiving_system': not a UUID");
		return -1;
	}
	if (kc_url_check_option(ctx, "endpoint", s->endpoint, s->http_conf.allow_plain_http) != 0 ||
	    kc_http_conf_open(ctx, &s->http_conf, http) != 0)
		return -1;
	kanal_error_clear(&err);
	if (s->cert_conf.pkcs12_file || s->cert_conf.cert_file) {
		if (kc_cert_load(&s->cert_conf, &s->cert, &err) != 0 ||
		    kc_cert_check_time(s->cert, kanal_wall_ms(), 120000, &err) != 0) {
			kanal_set_error(ctx, "%s", err.text);
			return -1;
		}
		kc_cert_http_opts(s->cert, http);
	} else if (!strncasecmp(s->endpoint, "https:", 6)) {
		kanal_set_error(ctx,
				"the AuthorityContext model needs the function certificate: set "
				"certificate_p12 (or certificate and certificate_key)");
		return -1;
	}
	return 0;
}

/* A new state with the options bound, or NULL. */
static sf2900_t *s_new(kanal_ctx_t *ctx, const kanal_config_t *cfg)
{
	sf2900_t *s = calloc(1, sizeof *s);

	if (!s)
		return NULL;
	kanal_config_bind(cfg, s);
	s->ctx = ctx;
	return s;
}

static int s_check(kanal_ctx_t *ctx, const kanal_config_t *cfg)
{
	sf2900_t *s = s_new(ctx, cfg);
	kc_http_opts_t http = { 0 };
	int rc;

	if (!s) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	rc = s_validate(ctx, s, &http) == 0 ? 0 : KANAL_ECONFIG;
	s_destroy(s);
	return rc;
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	sf2900_t *s = s_new(ctx, cfg);
	kc_http_opts_t http = { 0 };
	char *text = NULL;
	size_t len;

	if (!s) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	if (s_validate(ctx, s, &http) != 0)
		goto fail;
	if (!(s->http = kc_http_new(&http))) {
		kanal_set_error(ctx, "out of memory for the HTTP client");
		goto fail;
	}
	if (kc_state_read(ctx, PENDING_FILE, &text, &len) == 0)
		s->pending = json_loadb(text, len, 0, NULL);
	free(text);
	if (!json_is_object(s->pending)) {
		json_decref(s->pending);
		s->pending = json_object();
	}
	/* The receipts taken but not yet applied before a restart. */
	if (s->callback_listen &&
	    kc_inbox_new(ctx, RECEIPTS_FILE, MAX_RECEIPTS, "sf2900", "receipts", &s->inbox) != 0)
		goto fail;
	/* init runs on kanald's main thread: the one place to initialise libxml2 safely. */
	xmlInitParser();
	*state = s;
	return 0;
fail:
	s_destroy(s);
	return KANAL_ECONFIG;
}

static int s_start(kanal_ctx_t *ctx, void *state)
{
	sf2900_t *s = state;
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char host[256];
	const char *colon;
	int gai;

	kanal_metric_add(ctx, "filed", 0);
	if (!s->callback_listen)
		return 0;
	colon = strrchr(s->callback_listen, ':');
	if (!colon || colon == s->callback_listen) {
		kanal_set_error(ctx, "option 'callback_listen': HOST:PORT, not '%s'",
				s->callback_listen);
		return KANAL_ECONFIG;
	}
	snprintf(host, sizeof host, "%.*s", (int)(colon - s->callback_listen), s->callback_listen);
	if ((gai = getaddrinfo(host, colon + 1, &hints, &ai)) != 0) {
		kanal_set_error(ctx, "option 'callback_listen' %s: %s", s->callback_listen,
				gai_strerror(gai));
		return KANAL_ECONFIG;
	}
	/* The wakeup first: the listener may take a receipt as soon as it runs. Its own
	 * thread, so that it answers while the instance's thread is sending. */
	errno = 0;
	if (kc_inbox_start(s->inbox, ctx, s_drain, s) == 0)
		s->daemon =
			kc_mhd_listen_thread(ai->ai_addr, ai->ai_family == AF_INET6, s_handler, s);
	freeaddrinfo(ai);
	if (!s->daemon) {
		kanal_set_error(ctx, "sf2900: cannot listen on callback_listen %s: %s",
				s->callback_listen,
				errno ? strerror(errno) : "libmicrohttpd refused");
		kc_inbox_stop(s->inbox, ctx);
		return KANAL_EIO;
	}
	s->sweep = kanal_timer_add(ctx, SWEEP_MS, SWEEP_MS, s_sweep, s);
	if (s->sweep < 0)
		s->sweep = 0;
	return 0;
}

static void s_stop(kanal_ctx_t *ctx, void *state, int64_t deadline_ms)
{
	sf2900_t *s = state;

	(void)deadline_ms;
	/* The listener's thread is joined before the wakeup it writes to goes. */
	if (s->daemon)
		MHD_stop_daemon(s->daemon);
	s->daemon = NULL;
	if (s->sweep)
		kanal_timer_cancel(ctx, s->sweep);
	s->sweep = 0;
	kc_inbox_stop(s->inbox, ctx);
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "sf2900",
	.version = "1.0.0",
	.description = "Files self-service submissions in the case system through SF2900 "
		       "Fordelingskomponenten (FORMULAR), and reports the case system's receipt.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.stop = s_stop,
	.destroy = s_destroy,
	.check = s_check,
};
