/*
 * examples/simulators/sf2900.c — kanal-sim-sf2900, the simulated SF2900 Fordelingskomponenten
 * (DistributionService 3) of Serviceplatformen, as contracts/README.md §4 describes it: the
 * municipal component that hands documents and self-service forms to the case system (ESDH)
 * registered for their KLE subject. It validates the payload of every SOAP request against
 * the contract's schema (contracts/schemas/sf2900/DistributionServiceMsg.xsd, libxml2's
 * xmlSchemaValidateOneElement, as validate.sh validates the examples), and answers exactly
 * as contracts/examples/sf2900 do:
 *
 *   POST /service/SP/Distribution/3   SOAP 1.1, SOAPAction
 *       "http://serviceplatformen.dk/xml/wsdl/soap11/DistributionService/3/port/<Operation>"
 *     FordelingsmodtagerList  → the case systems registered for the KLE subject
 *     FordelingsobjektAfsend  → ForretningsKvittering MODTAGET and the DistributionContext
 *                               echoed with the component's DistributionTransktionsID (the
 *                               same AnvenderTransaktionsID again: the first answer again,
 *                               nothing filed twice)
 *     no case system for the KLE subject, or an unknown RoutingModtagerAktoer: HTTP 500,
 *         soap:Fault whose detail is a TransportKvittering FEJL (the example's fault)
 *     anything that breaks the contract (not XML, no SOAP envelope, a SOAPAction that does
 *         not name the payload's operation, a payload that does not validate, no
 *         AuthorityContext or another municipality's CVR, no client certificate over
 *         https): HTTP 500 soap:Client fault, counted as refused — tests assert 0
 *   GET /sf2900/v1/objects   what was filed (title, form type, KLE, the case, the number
 *                            and decoded size of the attachments in FormularXML), with the
 *                            counts received, filed, undeliverable and refused
 *
 * The case system's answer comes later, as the real component sends it: a
 * FordelingskvitteringModtag call (DistributionServiceAnvenderV2.wsdl, soapAction "") to
 * the sender's callback (--set callback=URL), ACCEPTERET "Oprettet som dokument på sag
 * SAG-…" — or AFVIST with --set outcome=AFVIST. As the real component, it pushes from a
 * thread of its own, in order, as soon as the object is filed (or --set callback_delay_ms=N
 * later) — possibly before the answer that accepted it arrives, and while the sender waits
 * for its next answer — never holding up the service's answers; a receipt the callback does
 * not answer with HTTP 200 is pushed again after 0.25 s, doubling up to 8 s, until it is.
 *
 * Settings: --set cvr=12345678 (the municipality, AuthorityContext/MunicipalityCVR and
 * AfsendendeMyndighed); --set callback=URL; --set outcome=ACCEPTERET|AFVIST; --set callback_delay_ms=N; --set
 * schemas=DIR (default: contracts/schemas of the source tree); tls_cert/tls_key/tls_ca
 * (sim.h: https with mutual TLS, the AuthorityContext security model).
 *
 * The case systems and their KLE subjects are invented (a municipality registers its own
 * in Fordelingskomponenten): 28.01.00 (daycare places, the demo's applications) and
 * 17.02.00 (school enrolment, the contract's example). Nothing logged or listed holds a
 * CPR number: the form's data is kept only as its title.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>
#include <openssl/rand.h>

#include <kanal/cpr.h>

#include "sim.h"

#define NS3 "http://serviceplatformen.dk/xml/wsdl/soap11/DistributionService/3/types"
#define NS2 "http://serviceplatformen.dk/xml/wsdl/soap11/DistributionService/2/types"
#define ACTION "http://serviceplatformen.dk/xml/wsdl/soap11/DistributionService/3/port/"
#define MAX_OBJECTS 256
#define PUSH_RETRY_MS 250      /* the first wait before a push again; doubles */
#define PUSH_RETRY_MAX_MS 8000 /* up to this */

/* A case system registered for a KLE subject. */
typedef struct {
	const char *kle, *facet, *uuid, *name;
} sf_system_t;

static const sf_system_t s_systems[] = {
	{ "28.01.00", "G01", "0d5a4f4e-8f0a-4c1e-9a37-2b7e1c3d4a51", "kanal-esdh-sim.dagtilbud" },
	{ "17.02.00", "G01", "cfddce7e-5a54-4523-acd7-ffd1b51aa1f5",
	  "kanal-esdh-sim.proeve.example" },
};

/* One object filed. */
typedef struct {
	char anvender[37], distribution[37], kle[16], system[37];
	char title[256], form_type[128], form_id[37], case_no[32];
	int64_t push_at; /* sim_now_ms() when the case system's receipt is due */
	size_t attachments, attachment_bytes; /* FormularXML's <bilag>: count, decoded bytes */
	bool pushed;
} sf_object_t;

typedef struct {
	xmlSchemaPtr schema;
	sf_object_t objects[MAX_OBJECTS];
	size_t n_objects;
	/* Shared with the pusher's thread under push_lock (taken, when both are, after the
	 * simulator's lock): the objects filed in full, those pushed, and each one's pushed. */
	pthread_mutex_t push_lock;
	pthread_cond_t push_cond;
	size_t n_ready, pushed_up_to;
	unsigned long push_failures;
	unsigned received, refused, undeliverable;
	const char *cvr; /* --set cvr */
} sf_state_t;

/* ---- answers ----------------------------------------------------------------------------- */

static void s_xml_reply(sim_response_t *res, int status, char *body)
{
	if (!body) {
		sim_reply(res, 500, "text/plain", "out of memory", -1);
		return;
	}
	sim_reply_take(res, status, "text/xml; charset=utf-8", body, strlen(body));
}

/* Text escaped for XML (malloc'd). */
static char *s_esc(const char *s)
{
	xmlChar *e = xmlEncodeSpecialChars(NULL, (const xmlChar *)(s ? s : ""));
	char *out = strdup(e ? (const char *)e : "");

	xmlFree(e);
	return out;
}

/* A SOAP fault; with `kode` (FEJL) its detail is the contract's TransportKvittering. */
static void s_fault(sim_response_t *res, const char *faultcode, const char *faultstring,
		    const char *begrundelse, const char *fejlkode, const char *fejltekst)
{
	char *fs = s_esc(faultstring), *b = s_esc(begrundelse), *ft = s_esc(fejltekst), *body;

	if (asprintf(&body,
		     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		     "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">"
		     "<soap:Body><soap:Fault><faultcode>%s</faultcode><faultstring>%s</faultstring>"
		     "<detail><ns4:TransportKvittering xmlns:ns4=\"" NS3 "\">"
		     "<ns4:TransportValideringsKode>FEJL</ns4:TransportValideringsKode>"
		     "<ns4:Begrundelse>%s</ns4:Begrundelse><ns4:FejlListe><ns4:Fejl>"
		     "<ns4:FejlKode>%s</ns4:FejlKode><ns4:FejlTekst>%s</ns4:FejlTekst>"
		     "</ns4:Fejl></ns4:FejlListe></ns4:TransportKvittering></detail>"
		     "</soap:Fault></soap:Body></soap:Envelope>\n",
		     faultcode, fs, b, fejlkode, ft) < 0)
		body = NULL;
	free(fs);
	free(b);
	free(ft);
	s_xml_reply(res, 500, body);
}

/* Refuses a request that breaks the contract, and counts it. */
static void s_refuse(sim_t *sim, sf_state_t *st, sim_response_t *res, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void s_refuse(sim_t *sim, sf_state_t *st, sim_response_t *res, const char *fmt, ...)
{
	char why[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	st->refused++;
	sim_log(sim, "refused: %s", why);
	s_fault(res, "soap:Client", "Validering fejlede", why, "KANAL-SIM-VALIDERING", why);
}

/* The first schema error, for the fault. */
static void s_schema_error(void *ctx, const xmlError *err)
{
	char *why = ctx;

	if (err && err->message && !why[0])
		snprintf(why, 400, "line %d: %.360s", err->line, err->message);
}

/* ---- operations -------------------------------------------------------------------------- */

static xmlNodePtr s_find(xmlNodePtr n, const char *local)
{
	if (!n)
		return NULL;
	if (n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, local))
		return n;
	for (xmlNodePtr c = n->children; c; c = c->next) {
		xmlNodePtr hit = s_find(c, local);
		if (hit)
			return hit;
	}
	return NULL;
}

/* The text of the first element `local` below n, in buf ("" when none). */
static const char *s_text(xmlNodePtr n, const char *local, char *buf, size_t size)
{
	xmlNodePtr e = s_find(n, local);
	xmlChar *t = e ? xmlNodeGetContent(e) : NULL;

	snprintf(buf, size, "%s", t ? (const char *)t : "");
	xmlFree(t);
	return buf;
}

static const sf_system_t *s_system(const char *kle, const char *aktoer)
{
	for (size_t i = 0; i < sizeof s_systems / sizeof *s_systems; i++)
		if ((*aktoer && !strcmp(aktoer, s_systems[i].uuid)) ||
		    (!*aktoer && !strcmp(kle, s_systems[i].kle)))
			return &s_systems[i];
	return NULL;
}

static void s_list(sf_state_t *st, xmlNodePtr payload, sim_response_t *res)
{
	char kle[32], *body;
	const sf_system_t *sys = s_system(s_text(payload, "RoutingKLEEmne", kle, sizeof kle), "");

	if (asprintf(&body,
		     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		     "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">"
		     "<soap:Body><ns4:FordelingsmodtagerListResponse xmlns:ns3=\"" NS2
		     "\" xmlns:ns4=\"" NS3 "\"><ns4:Systemer>%s%s%s%s%s%s%s%s%s%s%s</ns4:Systemer>"
		     "</ns4:FordelingsmodtagerListResponse></soap:Body></soap:Envelope>\n",
		     sys ? "<ns3:System><ns3:SystemMyndighed>" : "", sys ? st->cvr : "",
		     sys ? "</ns3:SystemMyndighed><ns3:SystemUUID>" : "", sys ? sys->uuid : "",
		     sys ? "</ns3:SystemUUID><ns3:SystemNavn>" : "", sys ? sys->name : "",
		     sys ? "</ns3:SystemNavn><ns3:RoutingKLEEmne>" : "", sys ? sys->kle : "",
		     sys ? "</ns3:RoutingKLEEmne><ns3:RoutingHandlingFacet>" : "",
		     sys ? sys->facet : "",
		     sys ? "</ns3:RoutingHandlingFacet></ns3:System>" : "") < 0)
		body = NULL;
	s_xml_reply(res, 200, body);
}

/* Counts the <bilag> elements below n (kanal's FormularXML: an attached document, base64)
 * and the bytes they decode to. */
static void s_count_attachments(xmlNodePtr n, sf_object_t *o)
{
	for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (!strcmp((const char *)c->name, "bilag")) {
			xmlChar *t = xmlNodeGetContent(c);
			size_t len = t ? strlen((const char *)t) : 0;
			o->attachments++;
			o->attachment_bytes += len / 4 * 3 - (len && t[len - 1] == '=') -
					       (len > 1 && t[len - 2] == '=');
			xmlFree(t);
		} else {
			s_count_attachments(c, o);
		}
	}
}

/* A fresh random UUID (version 4). */
static void s_uuid(char out[37])
{
	unsigned char r[16] = { 0 };

	RAND_bytes(r, sizeof r);
	r[6] = (unsigned char)((r[6] & 0x0F) | 0x40);
	r[8] = (unsigned char)((r[8] & 0x3F) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
		 r[13], r[14], r[15]);
}

/* The answer to FordelingsobjektAfsend for o: MODTAGET, the context echoed. */
static char *s_afsend_response(const sf_state_t *st, const sf_object_t *o)
{
	char *body;
	const char *cvr = st->cvr;

	if (asprintf(&body,
		     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		     "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">"
		     "<soap:Body><ns4:FordelingsobjektAfsendResponse xmlns:ns3=\"" NS2
		     "\" xmlns:ns4=\"" NS3 "\"><ns4:ForretningsKvittering>"
		     "<ns3:ForretningsValideringsKode>MODTAGET</ns3:ForretningsValideringsKode>"
		     "<ns3:Kvitteringstype>Forretning</ns3:Kvitteringstype>"
		     "</ns4:ForretningsKvittering><ns4:DistributionContext>"
		     "<ns3:AnvenderTransaktionsID>%s</ns3:AnvenderTransaktionsID>"
		     "<ns3:DistributionTransktionsID>%s</ns3:DistributionTransktionsID>"
		     "<ns3:AfsendendeMyndighed>%s</ns3:AfsendendeMyndighed>"
		     "<ns3:RoutingMyndighed>%s</ns3:RoutingMyndighed><ns3:RoutingValg>"
		     "<ns3:RoutingModtagerAktoer>%s</ns3:RoutingModtagerAktoer></ns3:RoutingValg>"
		     "</ns4:DistributionContext></ns4:FordelingsobjektAfsendResponse></soap:Body>"
		     "</soap:Envelope>\n",
		     o->anvender, o->distribution, cvr, cvr, o->system) < 0)
		return NULL;
	return body;
}

static void s_afsend(sim_t *sim, sf_state_t *st, xmlNodePtr payload, sim_response_t *res)
{
	char anvender[64], kle[32], aktoer[64], type[16];
	const sf_system_t *sys;
	sf_object_t *o;

	s_text(payload, "AnvenderTransaktionsID", anvender, sizeof anvender);
	s_text(payload, "ObjektType", type, sizeof type);
	s_text(payload, "RoutingModtagerAktoer", aktoer, sizeof aktoer);
	s_text(payload, "RoutingKLEEmne", kle, sizeof kle);
	for (size_t i = 0; i < st->n_objects; i++)
		if (!strcmp(st->objects[i].anvender, anvender)) {
			sim_log(sim, "AnvenderTransaktionsID %s again: the first answer", anvender);
			s_xml_reply(res, 200, s_afsend_response(st, &st->objects[i]));
			return;
		}
	if (!(sys = s_system(kle, aktoer))) {
		char text[200];
		st->undeliverable++;
		snprintf(text, sizeof text, "Ingen fordelingsmodtager fundet for %s (kanal-sim)",
			 *aktoer ? aktoer : kle);
		sim_log(sim, "no case system for %s", *aktoer ? aktoer : kle);
		s_fault(res, "soap:Client", "Validering fejlede", "Ingen modtager for KLE-emne",
			"KANAL-SIM-INGEN-MODTAGER", text);
		return;
	}
	if (st->n_objects == MAX_OBJECTS) {
		s_fault(res, "soap:Server", "Midlertidig fejl", "Fordelingskomponenten er optaget",
			"KANAL-SIM-OPTAGET", "try again");
		return;
	}
	o = &st->objects[st->n_objects++];
	memset(o, 0, sizeof *o);
	snprintf(o->anvender, sizeof o->anvender, "%.36s", anvender);
	s_uuid(o->distribution);
	snprintf(o->kle, sizeof o->kle, "%s", sys->kle);
	snprintf(o->system, sizeof o->system, "%s", sys->uuid);
	s_text(payload, "TitelTekst", o->title, sizeof o->title);
	s_text(payload, "FormularType", o->form_type, sizeof o->form_type);
	s_text(payload, "ID", o->form_id, sizeof o->form_id);
	kanal_cpr_redact_inplace(o->title);
	s_count_attachments(s_find(payload, "FormularXML"), o);
	snprintf(o->case_no, sizeof o->case_no, "SAG-2026-%04zu", st->n_objects);
	o->push_at = sim_now_ms() + sim_setting_int(sim, "callback_delay_ms", 0);
	st->received++;
	/* Ready for the pusher, which may push before this answer has gone. */
	pthread_mutex_lock(&st->push_lock);
	st->n_ready = st->n_objects;
	pthread_cond_signal(&st->push_cond);
	pthread_mutex_unlock(&st->push_lock);
	sim_log(sim, "%s '%s' (%s) filed for %s as %s", type, o->title, o->form_type, sys->name,
		o->case_no);
	s_xml_reply(res, 200, s_afsend_response(st, o));
}

/* POST /service/SP/Distribution/3 */
static void s_soap(sim_t *sim, sf_state_t *st, const sim_request_t *req, sim_response_t *res)
{
	char why[400] = "", op[128], want[256], cvr[32], sender[32];
	const char *action = sim_header(req, "SOAPAction");
	const char *want_cvr = st->cvr;
	xmlDocPtr doc = NULL;
	xmlNodePtr env, body = NULL, payload = NULL;
	xmlSchemaValidCtxtPtr v = NULL;
	size_t alen;

	if (sim_setting(sim, "tls_cert", NULL) && req->client_cert != SIM_CERT_OK) {
		s_refuse(sim, st, res,
			 "the AuthorityContext model needs the function certificate "
			 "(mutual TLS)");
		return;
	}
	doc = xmlReadMemory(req->body, (int)req->body_len, "request.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOBLANKS);
	env = doc ? xmlDocGetRootElement(doc) : NULL;
	if (env && !strcmp((const char *)env->name, "Envelope"))
		for (body = env->children; body && (body->type != XML_ELEMENT_NODE ||
						    strcmp((const char *)body->name, "Body"));
		     body = body->next)
			;
	for (payload = body ? body->children : NULL; payload && payload->type != XML_ELEMENT_NODE;
	     payload = payload->next)
		;
	if (!payload) {
		s_refuse(sim, st, res, "not a SOAP 1.1 envelope with a payload");
		goto done;
	}
	/* The SOAPAction names the operation whose request the payload is. */
	snprintf(op, sizeof op, "%s", (const char *)payload->name);
	alen = strlen(op);
	if (alen > 7 && !strcmp(op + alen - 7, "Request"))
		op[alen - 7] = '\0';
	snprintf(want, sizeof want, "%s%s", ACTION, op);
	alen = action ? strlen(action) : 0;
	if (alen >= 2 && action[0] == '"' && action[alen - 1] == '"') {
		action++;
		alen -= 2;
	}
	if (!action || alen != strlen(want) || strncmp(action, want, alen)) {
		s_refuse(sim, st, res, "SOAPAction '%.200s' does not name the operation %s",
			 action ? action : "(none)", op);
		goto done;
	}
	v = xmlSchemaNewValidCtxt(st->schema);
	xmlSchemaSetValidStructuredErrors(v, (xmlStructuredErrorFunc)s_schema_error, why);
	if (!v || xmlSchemaValidateOneElement(v, payload) != 0) {
		s_refuse(sim, st, res,
			 "the %s does not validate against DistributionServiceMsg.xsd: "
			 "%s",
			 (const char *)payload->name, why[0] ? why : "invalid");
		goto done;
	}
	s_text(payload, "MunicipalityCVR", cvr, sizeof cvr);
	s_text(payload, "AfsendendeMyndighed", sender, sizeof sender);
	if (strcmp(cvr, want_cvr) || (sender[0] && strcmp(sender, want_cvr))) {
		s_refuse(sim, st, res,
			 "AuthorityContext/MunicipalityCVR '%s' and AfsendendeMyndighed '%s': the "
			 "certificate is the municipality %s's",
			 cvr, sender, want_cvr);
		goto done;
	}
	if (!strcmp(op, "FordelingsobjektAfsend"))
		s_afsend(sim, st, payload, res);
	else if (!strcmp(op, "FordelingsmodtagerList"))
		s_list(st, payload, res);
	else
		s_refuse(sim, st, res, "the simulator does not serve %s", op);
done:
	xmlSchemaFreeValidCtxt(v);
	xmlFreeDoc(doc);
}

static void s_objects(sf_state_t *st, sim_response_t *res)
{
	json_t *list = json_array(), *o;
	char *text;

	pthread_mutex_lock(&st->push_lock);
	for (size_t i = 0; i < st->n_objects; i++)
		json_array_append_new(
			list, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:I}", "anvender",
					st->objects[i].anvender, "distribution",
					st->objects[i].distribution, "title", st->objects[i].title,
					"form_type", st->objects[i].form_type, "kle",
					st->objects[i].kle, "case", st->objects[i].case_no,
					"receipt_sent", st->objects[i].pushed, "attachments",
					(json_int_t)st->objects[i].attachments, "attachment_bytes",
					(json_int_t)st->objects[i].attachment_bytes));
	o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "received", (json_int_t)st->received,
		      "filed", (json_int_t)st->n_objects, "undeliverable",
		      (json_int_t)st->undeliverable, "refused", (json_int_t)st->refused,
		      "receipts_pushed", (json_int_t)st->pushed_up_to, "receipt_push_failures",
		      (json_int_t)st->push_failures, "objects", list);
	pthread_mutex_unlock(&st->push_lock);
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	sim_reply_take(res, 200, "application/json", text, text ? strlen(text) : 0);
}

static void s_handle(sim_t *sim, const sim_request_t *req, sim_response_t *res)
{
	sf_state_t *st = sim_state(sim);

	if (!strcmp(req->method, "POST") && !strcmp(req->path, "/service/SP/Distribution/3"))
		s_soap(sim, st, req, res);
	else if (!strcmp(req->method, "GET") && !strcmp(req->path, "/sf2900/v1/objects"))
		s_objects(st, res);
	else
		sim_reply(res, 404, "text/plain", "no such resource\n", -1);
}

/* ---- the case system's receipt, pushed to the sender ------------------------------------- */

static size_t s_discard(void *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* FordelingskvitteringModtagAnvenderRequest (the contract's example) for o. */
static char *s_receipt(sim_t *sim, const sf_object_t *o)
{
	const char *outcome = sim_setting(sim, "outcome", "ACCEPTERET");
	const char *cvr = ((sf_state_t *)sim_state(sim))->cvr;
	bool accepted = strcmp(outcome, "AFVIST") != 0;
	char *body;

	if (asprintf(&body,
		     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		     "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">"
		     "<soap:Body><v2:FordelingskvitteringModtagAnvenderRequest xmlns:v2=\"" NS2
		     "\"><v2:Forretningskvittering><v2:ForretningsValideringsKode>%s"
		     "</v2:ForretningsValideringsKode><v2:Kvitteringstype>Forretning"
		     "</v2:Kvitteringstype><v2:Begrundelse>%s%s</v2:Begrundelse>"
		     "</v2:Forretningskvittering><v2:DistributionContext>"
		     "<v2:AnvenderTransaktionsID>%s</v2:AnvenderTransaktionsID>"
		     "<v2:DistributionTransktionsID>%s</v2:DistributionTransktionsID>"
		     "<v2:AfsendendeMyndighed>%s</v2:AfsendendeMyndighed>"
		     "<v2:RoutingMyndighed>%s</v2:RoutingMyndighed><v2:RoutingValg>"
		     "<v2:RoutingModtagerAktoer>%s</v2:RoutingModtagerAktoer></v2:RoutingValg>"
		     "</v2:DistributionContext></v2:FordelingskvitteringModtagAnvenderRequest>"
		     "</soap:Body></soap:Envelope>\n",
		     accepted ? "ACCEPTERET" : "AFVIST",
		     accepted ? "Oprettet som dokument på sag " : "Afvist af sagssystemet: ",
		     accepted ? o->case_no : "formularen kan ikke journaliseres", o->anvender,
		     o->distribution, cvr, cvr, o->system) < 0)
		return NULL;
	return body;
}

/* POSTs o's receipt to the callback: true when it was taken (HTTP 200). */
static bool s_push(sim_t *sim, const char *url, const sf_object_t *o)
{
	char *body = s_receipt(sim, o);
	CURL *c = body ? curl_easy_init() : NULL;
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: text/xml; charset=utf-8");
	long status = 0;

	h = curl_slist_append(h, "SOAPAction: \"\"");
	if (c) {
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_discard);
		if (curl_easy_perform(c) == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(body);
	if (status == 200)
		sim_log(sim, "receipt for %s pushed (%s)", o->anvender, o->case_no);
	else
		sim_log(sim, "the sender's callback answered %ld; will push again", status);
	return status == 200;
}

/* The pusher's thread: pushes the receipts in order, each when it is due, outside the
 * simulator's lock (the sender may be waiting for an answer while its callback is pushed
 * to). One not taken is pushed again after PUSH_RETRY_MS, doubling up to PUSH_RETRY_MAX_MS,
 * until it is. */
static void *s_pusher(void *arg)
{
	sim_t *sim = arg;
	sf_state_t *st = sim_state(sim);
	const char *url = sim_setting(sim, "callback", NULL);
	int64_t wait_ms = PUSH_RETRY_MS;

	for (;;) {
		sf_object_t o;
		int64_t due;
		bool taken;

		pthread_mutex_lock(&st->push_lock);
		while (st->pushed_up_to >= st->n_ready)
			pthread_cond_wait(&st->push_cond, &st->push_lock);
		o = st->objects[st->pushed_up_to]; /* filed in full: no field changes now */
		pthread_mutex_unlock(&st->push_lock);
		if ((due = o.push_at - sim_now_ms()) > 0) /* the case system has not answered */
			usleep((useconds_t)due * 1000);
		taken = s_push(sim, url, &o);
		pthread_mutex_lock(&st->push_lock);
		if (taken)
			st->objects[st->pushed_up_to++].pushed = true;
		else
			st->push_failures++;
		pthread_mutex_unlock(&st->push_lock);
		sim_push_backoff(&wait_ms, taken, PUSH_RETRY_MS, PUSH_RETRY_MAX_MS);
	}
	return NULL;
}

/* ---- start ------------------------------------------------------------------------------- */

static int s_setup(sim_t *sim)
{
	static sf_state_t state;

	xmlInitParser();
	if (!(state.schema = sim_schema(sim, "sf2900/DistributionServiceMsg.xsd")))
		return -1;
	state.cvr = sim_setting(sim, "cvr", "12345678");
	pthread_mutex_init(&state.push_lock, NULL);
	pthread_cond_init(&state.push_cond, NULL);
	sim_set_state(sim, &state);
	/* Before any second thread: curl's global set-up is not thread-safe. */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (sim_setting(sim, "callback", NULL)) {
		sim_thread_start(sim, s_pusher, "the pusher");
	}
	return 0;
}

int main(int argc, char **argv)
{
	return sim_main(argc, argv,
			&(sim_def_t){ .name = "sf2900",
				      .handle = s_handle,
				      .setup = s_setup,
				      .garbage_type = "text/xml",
				      .garbage_body = "<soap:Envelope><soap:Bo" });
}
