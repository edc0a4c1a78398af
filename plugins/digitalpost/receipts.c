/*
 * plugins/digitalpost/receipts.c — the receipts of the letters the digitalpost connector
 * sent (contracts/README.md 3.7). KombiPostAfsend's HTTP 200 only means "accepted"; the
 * outcome arrives later as a PKO_PostStatus message that the Beskedfordeler (SF1461) POSTs
 * to a callback: a ModtagBeskedInput whose Beskeddata/Base64 holds the PKO_PostStatus.
 *
 * This file serves that callback (libmicrohttpd in external epoll mode, driven from the
 * instance's thread by plugins/common/kc_mhd, as plugins/http/ingress.c is, so emit
 * and flush may be called from the handler), validates each PKO_PostStatus against the
 * contract's schema (built in: pko_schema.c), matches it to the letter by MessageUUID — or
 * TransmissionId, or for a print-only letter AfsendelseIdentifikator — and emits the
 * letter's final post.letter.status: `sent` (digital or physical) or `failed` with the
 * service's FejlKode and FejlTekst. Intermediate statuses (Modtaget, the print provider's
 * steps) are acknowledged and wait for the final one. A letter with no final status within
 * status_timeout gets `unknown` and the metric letters_status_unknown.
 *
 * The letters waiting are a small JSON map in the instance's state folder
 * (letters-awaiting-status.json, 0600, written atomically), so a restart loses none. It holds
 * no CPR number: the subject it keeps is a pseudonym or the letter's own subject. The
 * answer is ModtagBeskedOutput with StatusKode 20 (taken; also for a status of a letter this
 * instance does not know, so the Beskedfordeler does not send it forever) or 40 with the
 * reason (not a PKO_PostStatus, does not validate, or kanald is busy: send it again).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlschemas.h>
#include <microhttpd.h>
#include <openssl/evp.h>

#include "../common/kc_files.h"
#include "../common/kc_mhd.h"
#include "receipts.h"

#define DP_PKO_NS "http://serviceplatformen.dk/xml/print/PKO_PostStatus/1/types"
#define DP_MAP_FILE "letters-awaiting-status.json"
#define DP_MAX_CALLBACK_BODY (1u << 20)
#define DP_MAX_SWEEP_MS 60000
#define DP_MAX_PUMP_MS 1000
#define DP_MIN_SWEEP_MS 250
#define DP_FLUSH_MS 5000

struct dp_receipts {
	kanal_ctx_t *ctx;
	char host[256], port[16], *path, *dir;
	int64_t timeout_ms;
	json_t *map; /* messageUUID → the letter (dp_sent_t's fields, at_ms) */
	xmlSchemaPtr schema;
	struct MHD_Daemon *daemon;
	kc_mhd_pump_t pump; /* libmicrohttpd on the instance's thread */
	int64_t sweep;      /* 0: none armed */
};

/* ---- the map ------------------------------------------------------------------------------ */

static int s_save(dp_receipts_t *r)
{
	char *text = json_dumps(r->map, JSON_COMPACT | JSON_SORT_KEYS);
	int rc;

	if (!text)
		return KANAL_ENOMEM;
	rc = kc_file_write_atomic(r->dir, DP_MAP_FILE, text, strlen(text), 0600);
	free(text);
	if (rc < 0)
		kanal_log(r->ctx, KANAL_LOG_ERROR, "cannot save %s/%s: %s", r->dir, DP_MAP_FILE,
			  strerror(errno));
	return rc;
}

int dp_receipts_track(dp_receipts_t *r, const dp_sent_t *s)
{
	json_t *e;

	if (json_object_get(r->map, s->message_uuid))
		return 0;
	e = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "letter", s->letter, "letter_source",
		      s->letter_source, "correlationid", s->correlationid, "kombi", s->kombi,
		      "transaction", s->transaction, "at_ms", (json_int_t)kanal_wall_ms());
	if (!e)
		return KANAL_ENOMEM;
	if (s->print_id)
		json_object_set_new(e, "print_id", json_string(s->print_id));
	if (s->subject)
		json_object_set_new(e, "subject", json_string(s->subject));
	if (s->traceparent)
		json_object_set_new(e, "traceparent", json_string(s->traceparent));
	if (s->sender)
		json_object_set_new(e, "sender", json_loads(s->sender, JSON_DECODE_ANY, NULL));
	if (s->area)
		json_object_set_new(e, "area", json_string(s->area));
	if (s->area && s->channel_rank)
		json_object_set_new(e, "channel_rank", json_string(s->channel_rank));
	json_object_set_new(r->map, s->message_uuid, e);
	return s_save(r);
}

/* The letter a status is about: by MessageUUID, TransmissionId or AfsendelseIdentifikator.
 * Sets *uuid to its key. */
static json_t *s_find(dp_receipts_t *r, const char *uuid, const char *tx, const char *print_id,
		      const char **key)
{
	json_t *e;
	const char *k;

	if (uuid && *uuid && (e = json_object_get(r->map, uuid))) {
		*key = json_object_iter_key(json_object_iter_at(r->map, uuid));
		return e;
	}
	json_object_foreach(r->map, k, e)
	{
		const char *t = json_string_value(json_object_get(e, "transaction"));
		const char *p = json_string_value(json_object_get(e, "print_id"));
		if ((tx && *tx && t && !strcasecmp(t, tx)) ||
		    (print_id && *print_id && p && !strcasecmp(p, print_id))) {
			*key = k;
			return e;
		}
	}
	return NULL;
}

/* Emits the final post.letter.status of letter e (key uuid). Returns kanal_emit's result. */
static int s_emit(dp_receipts_t *r, const char *uuid, json_t *e, const char *channel,
		  const char *status, const char *reason)
{
	char id[128];
	const char *subject = json_string_value(json_object_get(e, "subject"));
	const char *trace = json_string_value(json_object_get(e, "traceparent"));
	json_t *data = json_pack("{s:O, s:O, s:s, s:s, s:s, s:s, s:O, s:O, s:b}", "letter",
				 json_object_get(e, "letter"), "letter_source",
				 json_object_get(e, "letter_source"), "channel", channel, "status",
				 status, "reason", reason, "message_uuid", uuid, "transaction",
				 json_object_get(e, "transaction"), "kombi",
				 json_object_get(e, "kombi"), "final", 1);
	char *text;
	kanal_msg_t *st;
	int rc = KANAL_ENOMEM;

	if (data && json_object_get(e, "sender"))
		json_object_set(data, "sender", json_object_get(e, "sender"));
	/* The route's area and this channel's rank in it, as the delivery carried them. */
	if (data && json_object_get(e, "area"))
		json_object_set(data, "area", json_object_get(e, "area"));
	if (data && json_object_get(e, "channel_rank"))
		json_object_set(data, "channel_rank", json_object_get(e, "channel_rank"));
	text = data ? json_dumps(data, JSON_COMPACT) : NULL;

	json_decref(data);
	snprintf(id, sizeof id, "dp-%s-%s", uuid, status);
	st = kanal_msg_new("post.letter.status", kanal_instance_name(r->ctx), id);
	if (!st || !text)
		goto done;
	if ((subject && kanal_msg_set_attr(st, "subject", subject, NULL) != 0) ||
	    kanal_msg_set_attr(st, "causationid", json_string_value(json_object_get(e, "letter")),
			       NULL) != 0 ||
	    kanal_msg_set_attr(st, "correlationid",
			       json_string_value(json_object_get(e, "correlationid")), NULL) != 0 ||
	    (trace && kanal_msg_set_attr(st, "traceparent", trace, NULL) != 0) ||
	    kanal_msg_set_attr(st, "datacontenttype", "application/json", NULL) != 0) {
		rc = KANAL_EINVALID;
		goto done;
	}
	if ((rc = kanal_msg_set_data_json(st, text, strlen(text))) == 0)
		rc = kanal_emit(r->ctx, &st);
done:
	free(text);
	kanal_msg_destroy(&st);
	return rc == KANAL_EDUPLICATE ? 0 : rc;
}

/* ---- reading a PKO_PostStatus ------------------------------------------------------------- */

/* The first element named name below n (any namespace, any depth), or NULL. */
static xmlNodePtr s_find_el(xmlNodePtr n, const char *name)
{
	for (; n; n = n->next) {
		xmlNodePtr found;
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (!strcmp((const char *)n->name, name))
			return n;
		if ((found = s_find_el(n->children, name)))
			return found;
	}
	return NULL;
}

static void s_text(xmlNodePtr root, const char *name, char *buf, size_t size)
{
	xmlNodePtr n = s_find_el(root, name);
	xmlChar *t = n ? xmlNodeGetContent(n) : NULL;

	snprintf(buf, size, "%s", t ? (const char *)t : "");
	xmlFree(t);
}

static void s_schema_error(void *arg, const xmlError *err)
{
	char *why = arg;

	if (!*why && err && err->message)
		snprintf(why, 300, "PKO_PostStatus does not validate: line %d: %.200s", err->line,
			 err->message);
}

/* The PKO_PostStatus in a ModtagBeskedInput's Beskeddata/Base64, parsed and validated;
 * NULL with why (300 bytes) set. */
static xmlDocPtr s_status_doc(dp_receipts_t *r, const char *body, size_t len, char *why)
{
	xmlDocPtr env, doc = NULL;
	xmlNodePtr b64;
	xmlChar *raw = NULL;
	unsigned char *bin = NULL;
	char *clean = NULL;
	size_t n = 0;
	int out;
	xmlSchemaValidCtxtPtr vctx = NULL;

	env = xmlReadMemory(body, (int)len, "ModtagBeskedInput.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	b64 = env ? s_find_el(xmlDocGetRootElement(env), "Base64") : NULL;
	if (!b64 || !b64->ns || strcmp((const char *)b64->ns->href, "urn:besked:kuvert:1.0")) {
		snprintf(why, 300,
			 "not a ModtagBeskedInput with Beskeddata/Base64 "
			 "(urn:besked:kuvert:1.0)");
		goto done;
	}
	raw = xmlNodeGetContent(b64);
	clean = malloc(raw ? strlen((const char *)raw) + 1 : 1);
	if (!clean)
		goto done;
	for (const char *p = raw ? (const char *)raw : ""; *p; p++)
		if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t')
			clean[n++] = *p;
	clean[n] = '\0';
	bin = malloc(n / 4 * 3 + 4);
	out = bin && n % 4 == 0 ? EVP_DecodeBlock(bin, (unsigned char *)clean, (int)n) : -1;
	if (out < 0) {
		snprintf(why, 300, "Beskeddata/Base64 is not base64");
		goto done;
	}
	while (out > 0 && n > 0 && clean[--n] == '=')
		out--;
	doc = xmlReadMemory((const char *)bin, out, "PKO_PostStatus.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc) {
		snprintf(why, 300, "Beskeddata/Base64 holds no well-formed XML");
		goto done;
	}
	*why = '\0';
	if (!(vctx = xmlSchemaNewValidCtxt(r->schema))) {
		snprintf(why, 300, "out of memory");
	} else {
		xmlSchemaSetValidStructuredErrors(vctx, (xmlStructuredErrorFunc)s_schema_error,
						  why);
		if (xmlSchemaValidateDoc(vctx, doc) != 0 && !*why)
			snprintf(why, 300, "PKO_PostStatus does not validate");
	}
	if (*why) {
		xmlFreeDoc(doc);
		doc = NULL;
	}
done:
	xmlSchemaFreeValidCtxt(vctx);
	free(bin);
	free(clean);
	xmlFree(raw);
	xmlFreeDoc(env);
	return doc;
}

/* Takes one callback body: 20 (taken) or 40 with why. */
static int s_receive(dp_receipts_t *r, const char *body, size_t len, char *why)
{
	char uuid[80], tx[80], print_id[80], kanal[32], code[128], fejl[128], fejltekst[400];
	char reason[1024];
	const char *key = NULL, *channel, *status;
	xmlDocPtr doc = s_status_doc(r, body, len, why);
	xmlNodePtr root;
	json_t *e;
	int rc;

	if (!doc) {
		kanal_metric_add(r->ctx, "statuses_invalid", 1);
		return 40;
	}
	root = xmlDocGetRootElement(doc);
	s_text(root, "MessageUUID", uuid, sizeof uuid);
	s_text(root, "TransmissionId", tx, sizeof tx);
	s_text(root, "AfsendelseIdentifikator", print_id, sizeof print_id);
	s_text(root, "KanalKode", kanal, sizeof kanal);
	s_text(root, "TransaktionsStatusKode", code, sizeof code);
	s_text(root, "FejlKode", fejl, sizeof fejl);
	s_text(root, "FejlTekst", fejltekst, sizeof fejltekst);
	xmlFreeDoc(doc);
	kanal_metric_add(r->ctx, "statuses_received", 1);
	if (!(e = s_find(r, uuid, tx, print_id, &key))) {
		/* Another system's letter, or one whose final status came already. */
		kanal_metric_add(r->ctx, "statuses_unmatched", 1);
		kanal_log(r->ctx, KANAL_LOG_INFO,
			  "PKO_PostStatus '%s' for no letter waiting "
			  "(MessageUUID %s, TransmissionId %s): acknowledged",
			  code, uuid, tx);
		return 20;
	}
	channel = !strcmp(kanal, "Fysisk Post") ? "physical"
		  : !strcmp(kanal, "NemSMS")    ? "nemsms"
						: "digital";
	/* A failure is any status with FejlDetaljer, or Fejlet / Tilbagekaldt (contract 3.7). */
	if (*fejl || *fejltekst || !strcmp(code, "Fejlet") || !strcmp(code, "Tilbagekaldt")) {
		status = "failed";
		snprintf(reason, sizeof reason, "PKO_PostStatus %s (%s): %s: %s", code, kanal,
			 *fejl ? fejl : "(no FejlKode)", *fejltekst ? fejltekst : "(no FejlTekst)");
	} else if (!strcmp(code, "Afleveret Digital Post") ||
		   (!strcmp(kanal, "Fysisk Post") &&
		    (!strcmp(code, "Afleveret til print og kuvertering") ||
		     !strcmp(code, "Modtaget Post Danmark")))) {
		status = "sent";
		snprintf(reason, sizeof reason, "PKO_PostStatus %s (%s)", code, kanal);
	} else {
		kanal_log(r->ctx, KANAL_LOG_DEBUG, "letter %s: PKO_PostStatus '%s' (%s), not final",
			  json_string_value(json_object_get(e, "letter")), code, kanal);
		return 20;
	}
	if ((rc = s_emit(r, key, e, channel, status, reason)) == 0)
		rc = kanal_emit_flush(r->ctx, DP_FLUSH_MS);
	if (rc != 0) {
		snprintf(why, 300, "the status could not be kept (%s): send it again",
			 kanal_strerror(rc));
		return 40;
	}
	kanal_metric_add(r->ctx, !strcmp(status, "sent") ? "letters_delivered" : "letters_failed",
			 1);
	kanal_log(r->ctx, KANAL_LOG_INFO, "letter %s: %s %s (%s)",
		  json_string_value(json_object_get(e, "letter")), status, channel, code);
	json_object_del(r->map, key);
	s_save(r);
	return 20;
}

/* ---- the timeout --------------------------------------------------------------------------- */

static void s_sweep(kanal_ctx_t *ctx, void *arg)
{
	dp_receipts_t *r = arg;
	int64_t now = kanal_wall_ms();
	const char *k;
	json_t *e;
	void *tmp;
	bool changed = false;
	char reason[200];

	(void)ctx;
	snprintf(reason, sizeof reason,
		 "no PKO_PostStatus within status_timeout (%lld s): the "
		 "letter was accepted, its outcome is not known",
		 (long long)(r->timeout_ms / 1000));
	json_object_foreach_safe(r->map, tmp, k, e)
	{
		if (now - json_integer_value(json_object_get(e, "at_ms")) < r->timeout_ms)
			continue;
		if (s_emit(r, k, e, "digital", "unknown", reason) != 0)
			break; /* busy: the next sweep tries again */
		kanal_metric_add(r->ctx, "letters_status_unknown", 1);
		kanal_log(r->ctx, KANAL_LOG_WARN, "letter %s: no status within %lld s: unknown",
			  json_string_value(json_object_get(e, "letter")),
			  (long long)(r->timeout_ms / 1000));
		json_object_del(r->map, k);
		changed = true;
	}
	if (changed)
		s_save(r);
}

/* ---- the listener ------------------------------------------------------------------------ */

static enum MHD_Result s_answer(struct MHD_Connection *conn, unsigned status, int code,
				const char *why)
{
	char body[1024];
	xmlChar *esc = xmlEncodeSpecialChars(NULL, (const xmlChar *)(why ? why : ""));
	struct MHD_Response *res;
	enum MHD_Result ret;

	snprintf(body, sizeof body,
		 "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
		 "<ns2:ModtagBeskedOutput xmlns=\"urn:oio:sagdok:3.0.0\" "
		 "xmlns:ns2=\"urn:oio:sts:1.0.0\"><StandardRetur><StatusKode>%d</StatusKode>"
		 "<FejlbeskedTekst>%.800s</FejlbeskedTekst></StandardRetur>"
		 "</ns2:ModtagBeskedOutput>\n",
		 code, esc ? (const char *)esc : "");
	xmlFree(esc);
	res = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
	if (!res)
		return MHD_NO;
	MHD_add_response_header(res, "Content-Type", "application/xml; charset=utf-8");
	ret = MHD_queue_response(conn, status, res);
	MHD_destroy_response(res);
	return ret;
}

static enum MHD_Result s_handler(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *data,
				 size_t *size, void **con_cls)
{
	dp_receipts_t *r = cls;
	kc_mhd_body_t *up = NULL;
	char why[300] = "";
	int code, step;

	(void)version;
	if (!*con_cls) {
		if (strcmp(url, r->path))
			return s_answer(conn, MHD_HTTP_NOT_FOUND, 40, "no such callback path");
		if (strcmp(method, "POST"))
			return s_answer(conn, MHD_HTTP_METHOD_NOT_ALLOWED, 40, "use POST");
	}
	step = kc_mhd_body_take(con_cls, data, size, DP_MAX_CALLBACK_BODY, &up);
	if (step != KC_MHD_BODY_DONE)
		return step == KC_MHD_BODY_MORE ? MHD_YES : MHD_NO;
	if (up->too_big)
		return s_answer(conn, 413, 40, "body larger than 1 MiB");
	code = s_receive(r, up->data ? up->data : "", up->len, why);
	if (code != 20)
		kanal_log(r->ctx, KANAL_LOG_WARN, "callback refused a message: %s", why);
	return s_answer(conn, code == 20 ? MHD_HTTP_OK : MHD_HTTP_BAD_REQUEST, code,
			code == 20 ? NULL : why);
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

/* Splits callback_listen "HOST:PORT" into host and port (0 to 65535). Returns 0 or -1. */
static int s_split_listen(const char *listen, char *host, size_t host_size, char *port,
			  size_t port_size)
{
	const char *colon = listen ? strrchr(listen, ':') : NULL;

	if (!colon || colon == listen || (size_t)(colon - listen) >= host_size ||
	    strlen(colon + 1) == 0 || strlen(colon + 1) >= port_size ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) || atol(colon + 1) > 65535)
		return -1;
	snprintf(host, host_size, "%.*s", (int)(colon - listen), listen);
	snprintf(port, port_size, "%s", colon + 1);
	return 0;
}

int dp_receipts_check(kanal_ctx_t *ctx, const char *listen, const char *path)
{
	char host[256], port[16];

	if (s_split_listen(listen, host, sizeof host, port, sizeof port) != 0) {
		kanal_set_error(ctx,
				"digitalpost: callback_listen '%s' is not HOST:PORT with a port "
				"from 0 to 65535 (e.g. 127.0.0.1:8443)",
				listen ? listen : "");
		return KANAL_ECONFIG;
	}
	if (!path || path[0] != '/') {
		kanal_set_error(ctx, "digitalpost: callback_path '%s' must start with '/'",
				path ? path : "");
		return KANAL_ECONFIG;
	}
	return 0;
}

int dp_receipts_new(kanal_ctx_t *ctx, const char *listen, const char *path, int64_t timeout_ms,
		    dp_receipts_t **out)
{
	dp_receipts_t *r = calloc(1, sizeof *r);
	xmlSchemaParserCtxtPtr pctx;
	char file[4096];
	json_error_t jerr;

	*out = NULL;
	if (!r)
		return KANAL_ENOMEM;
	r->ctx = ctx;
	r->timeout_ms = timeout_ms;
	if (dp_receipts_check(ctx, listen, path) != 0) {
		dp_receipts_destroy(&r);
		return KANAL_ECONFIG;
	}
	s_split_listen(listen, r->host, sizeof r->host, r->port, sizeof r->port);
	r->path = strdup(path);
	r->dir = strdup(kanal_state_dir(ctx));
	pctx = xmlSchemaNewMemParserCtxt(dp_pko_poststatus_xsd, (int)strlen(dp_pko_poststatus_xsd));
	r->schema = pctx ? xmlSchemaParse(pctx) : NULL;
	xmlSchemaFreeParserCtxt(pctx);
	if (!r->path || !r->dir || !r->schema) {
		dp_receipts_destroy(&r);
		return KANAL_ENOMEM;
	}
	/* The letters still waiting from before a restart. */
	snprintf(file, sizeof file, "%s/%s", r->dir, DP_MAP_FILE);
	r->map = json_load_file(file, 0, &jerr);
	if (!r->map && access(file, F_OK) == 0) {
		kanal_set_error(ctx,
				"digitalpost: %s is not readable JSON (%s); move it away to "
				"start without the letters it lists",
				file, jerr.text);
		dp_receipts_destroy(&r);
		return KANAL_ECONFIG;
	}
	if (!r->map && !(r->map = json_object())) {
		dp_receipts_destroy(&r);
		return KANAL_ENOMEM;
	}
	*out = r;
	return 0;
}

int dp_receipts_start(dp_receipts_t *r, kanal_ctx_t *ctx)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	int64_t every = r->timeout_ms / 4;
	int gai;

	r->ctx = ctx;
	if ((gai = getaddrinfo(r->host, r->port, &hints, &ai)) != 0) {
		kanal_set_error(ctx, "digitalpost: callback_listen %s:%s: %s", r->host, r->port,
				gai_strerror(gai));
		return KANAL_ECONFIG;
	}
	r->daemon = MHD_start_daemon(
		MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
		0, NULL, NULL, s_handler, r, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
		MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_CONNECTION_LIMIT, 64u,
		MHD_OPTION_NOTIFY_COMPLETED, kc_mhd_body_free, r, MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!r->daemon ||
	    kc_mhd_pump_start(&r->pump, ctx, r->daemon, DP_MAX_PUMP_MS, NULL, NULL) != 0) {
		kanal_set_error(ctx, "digitalpost: cannot listen on callback_listen %s:%s: %s",
				r->host, r->port,
				errno ? strerror(errno) : "libmicrohttpd refused");
		dp_receipts_stop(r, ctx);
		return KANAL_EIO;
	}
	if (every > DP_MAX_SWEEP_MS)
		every = DP_MAX_SWEEP_MS;
	if (every < DP_MIN_SWEEP_MS)
		every = DP_MIN_SWEEP_MS;
	r->sweep = kanal_timer_add(ctx, every, every, s_sweep, r);
	if (r->sweep < 0)
		r->sweep = 0;
	kanal_log(ctx, KANAL_LOG_INFO,
		  "receipts: listening on http://%s:%s%s; %zu letter(s) "
		  "waiting for their status",
		  r->host, r->port, r->path, json_object_size(r->map));
	return 0;
}

void dp_receipts_stop(dp_receipts_t *r, kanal_ctx_t *ctx)
{
	if (!r)
		return;
	kc_mhd_pump_stop(&r->pump);
	if (r->sweep)
		kanal_timer_cancel(ctx, r->sweep);
	r->sweep = 0;
	if (r->daemon)
		MHD_stop_daemon(r->daemon);
	r->daemon = NULL;
}

void dp_receipts_destroy(dp_receipts_t **rp)
{
	dp_receipts_t *r = rp ? *rp : NULL;

	if (!r)
		return;
	if (r->daemon)
		MHD_stop_daemon(r->daemon);
	xmlSchemaFree(r->schema);
	json_decref(r->map);
	free(r->path);
	free(r->dir);
	free(r);
	*rp = NULL;
}
