/*
 * plugins/digitalpost/receipts.c — the receipts of the letters the digitalpost connector
 * sent (contracts/README.md 3.7). KombiPostAfsend's HTTP 200 only means "accepted"; the
 * outcome arrives later as a PKO_PostStatus message that the Beskedfordeler (SF1461) POSTs
 * to a callback: a ModtagBeskedInput whose Beskeddata/Base64 holds the PKO_PostStatus.
 *
 * The Beskedfordeler pushes whenever it likes, also while the instance's thread is blocked in
 * its own next KombiPostAfsend request, so the callback is served on libmicrohttpd's own
 * thread, never the instance's: it validates each PKO_PostStatus against the contract's
 * schema (built in: pko_schema.c), keeps what it needs of it in the inbox (a JSON array in
 * the instance's state folder, statuses-received.json, 0600, written atomically before the
 * answer), and wakes the instance's thread through an eventfd it watches (docs/sdk.md's
 * recipe for a library that forces a thread on a plugin; the inbox and the listener's thread
 * are plugins/common/kc_inbox.h, which sf2900 shares). The instance's thread then
 * matches each status to the letter by MessageUUID — or TransmissionId, or for a print-only
 * letter AfsendelseIdentifikator — and emits the letter's final post.letter.status: `sent`
 * (digital or physical) or `failed` with the service's FejlKode and FejlTekst. Intermediate
 * statuses (Modtaget, the print provider's steps) are dropped and the letter waits for the
 * final one. A status for no letter waiting stays in the inbox as long as a letter would wait
 * for its status (status_timeout): it may have overtaken the answer that accepted its letter.
 * A letter with no final status within status_timeout gets `unknown` and the metric
 * letters_status_unknown.
 *
 * The letters waiting are a small JSON map in the instance's state folder
 * (letters-awaiting-status.json, 0600, written atomically), so a restart loses none. Neither
 * file holds a CPR number: the subject the map keeps is a pseudonym or the letter's own
 * subject. The answer is ModtagBeskedOutput with StatusKode 20 (kept in the inbox) or 40 with
 * the reason (not a PKO_PostStatus, does not validate, or the inbox is full or cannot be
 * saved: send it again).
 *
 * Threads: only the instance's thread touches the map, calls host services (emit, log,
 * metrics) and arms timers; the inbox, the counts of refused messages and the wakeup are
 * shared with libmicrohttpd's thread (kc_inbox).
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
#include "../common/kc_inbox.h"
#include "../common/kc_mhd.h"
#include "receipts.h"

#define DP_PKO_NS "http://serviceplatformen.dk/xml/print/PKO_PostStatus/1/types"
#define DP_MAP_FILE "letters-awaiting-status.json"
#define DP_INBOX_FILE "statuses-received.json"
#define DP_MAX_CALLBACK_BODY (1u << 20)
#define DP_MAX_INBOX 10000 /* statuses kept before the callback answers 40 */
#define DP_MAX_SWEEP_MS 60000
#define DP_MIN_SWEEP_MS 250
#define DP_FLUSH_MS 5000

struct dp_receipts {
	kanal_ctx_t *ctx;
	char host[256], port[16], *path, *dir;
	int64_t timeout_ms;
	json_t *map; /* messageUUID → the letter (dp_sent_t's fields, at_ms); instance's thread */
	xmlSchemaPtr schema;       /* read only once parsed: used on libmicrohttpd's thread */
	struct MHD_Daemon *daemon; /* with its own thread */
	int64_t sweep;             /* 0: none armed */
	kc_inbox_t *inbox;         /* statuses taken, not yet matched: {MessageUUID, …, at_ms} */
};

/* ---- the map ------------------------------------------------------------------------------ */

static int s_save(dp_receipts_t *r)
{
	char *text = json_dumps(r->map, JSON_COMPACT | JSON_SORT_KEYS);
	int rc = text ? kc_file_write_atomic(r->dir, DP_MAP_FILE, text, strlen(text), 0600)
		      : KANAL_ENOMEM;

	free(text);
	if (rc < 0)
		kanal_log(r->ctx, KANAL_LOG_ERROR, "cannot save %s/%s: %s", r->dir, DP_MAP_FILE,
			  strerror(errno));
	return rc;
}

int dp_receipts_track(dp_receipts_t *r, const dp_sent_t *s)
{
	json_t *e;
	int rc;

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
	rc = s_save(r);
	/* Its status may have come already: match it once this delivery is done. */
	if (kc_inbox_size(r->inbox))
		kc_inbox_wake(r->inbox);
	return rc;
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

/* Reads one callback body on libmicrohttpd's thread: the PKO_PostStatus's fields as a new
 * inbox entry, or NULL with why (300 bytes) set. Calls no host service. */
static json_t *s_read_status(dp_receipts_t *r, const char *body, size_t len, char *why)
{
	static const char *const fields[] = {
		"MessageUUID", "TransmissionId",         "AfsendelseIdentifikator",
		"KanalKode",   "TransaktionsStatusKode", "FejlKode",
		"FejlTekst"
	};
	xmlDocPtr doc = s_status_doc(r, body, len, why);
	json_t *e = doc ? json_pack("{s:I}", "at_ms", (json_int_t)kanal_wall_ms()) : NULL;

	for (size_t i = 0; e && i < sizeof fields / sizeof *fields; i++) {
		char text[400];
		s_text(xmlDocGetRootElement(doc), fields[i], text, sizeof text);
		json_object_set_new(e, fields[i], json_string(text));
	}
	if (doc && !e)
		snprintf(why, 300, "out of memory");
	xmlFreeDoc(doc);
	return e;
}

static const char *s_field(json_t *status, const char *name)
{
	const char *v = json_string_value(json_object_get(status, name));
	return v ? v : "";
}

/* What the instance's thread does with one status from the inbox. */
enum { DP_DONE, DP_KEEP, DP_EMITTED };

/* Applies one status (instance's thread): DP_EMITTED when the letter's final status was
 * emitted (the caller flushes, then forgets the letter *key), DP_DONE when there is nothing
 * more to do with it, DP_KEEP when it must stay in the inbox (no letter waiting for it yet,
 * or kanald is busy). */
static int s_apply(dp_receipts_t *r, json_t *status, int64_t now, const char **key)
{
	const char *uuid = s_field(status, "MessageUUID"), *tx = s_field(status, "TransmissionId");
	const char *kanal = s_field(status, "KanalKode"),
		   *code = s_field(status, "TransaktionsStatusKode");
	const char *fejl = s_field(status, "FejlKode"), *fejltekst = s_field(status, "FejlTekst");
	const char *channel, *result;
	char reason[1024];
	json_t *e = s_find(r, uuid, tx, s_field(status, "AfsendelseIdentifikator"), key);

	if (!e) {
		/* It may have overtaken the answer that accepted its letter: it waits as long as
		 * a letter waits for its status. Else another system's letter, or one whose
		 * final status came already. */
		if (now - json_integer_value(json_object_get(status, "at_ms")) < r->timeout_ms)
			return DP_KEEP;
		kanal_metric_add(r->ctx, "statuses_unmatched", 1);
		kanal_log(r->ctx, KANAL_LOG_INFO,
			  "PKO_PostStatus '%s' for no letter waiting "
			  "(MessageUUID %s, TransmissionId %s): dropped",
			  code, uuid, tx);
		return DP_DONE;
	}
	channel = !strcmp(kanal, "Fysisk Post") ? "physical"
		  : !strcmp(kanal, "NemSMS")    ? "nemsms"
						: "digital";
	/* A failure is any status with FejlDetaljer, or Fejlet / Tilbagekaldt (contract 3.7). */
	if (*fejl || *fejltekst || !strcmp(code, "Fejlet") || !strcmp(code, "Tilbagekaldt")) {
		result = "failed";
		snprintf(reason, sizeof reason, "PKO_PostStatus %s (%s): %s: %s", code, kanal,
			 *fejl ? fejl : "(no FejlKode)", *fejltekst ? fejltekst : "(no FejlTekst)");
	} else if (!strcmp(code, "Afleveret Digital Post") ||
		   (!strcmp(kanal, "Fysisk Post") &&
		    (!strcmp(code, "Afleveret til print og kuvertering") ||
		     !strcmp(code, "Modtaget Post Danmark")))) {
		result = "sent";
		snprintf(reason, sizeof reason, "PKO_PostStatus %s (%s)", code, kanal);
	} else {
		kanal_log(r->ctx, KANAL_LOG_DEBUG, "letter %s: PKO_PostStatus '%s' (%s), not final",
			  json_string_value(json_object_get(e, "letter")), code, kanal);
		return DP_DONE;
	}
	if (s_emit(r, *key, e, channel, result, reason) != 0)
		return DP_KEEP; /* busy: the next drain tries again */
	kanal_metric_add(r->ctx, !strcmp(result, "sent") ? "letters_delivered" : "letters_failed",
			 1);
	kanal_log(r->ctx, KANAL_LOG_INFO, "letter %s: %s %s (%s)",
		  json_string_value(json_object_get(e, "letter")), result, channel, code);
	return DP_EMITTED;
}

/* Takes what the listener received (instance's thread): reports refused callbacks and
 * applies each status in the inbox; the letters whose final status was emitted are forgotten
 * once kanald has kept it (flushed), else they and their statuses wait for the next drain.
 * What must wait goes back to the front of the inbox, which is saved. */
static void s_drain(void *arg)
{
	dp_receipts_t *r = arg;
	json_t *taken, *keep = json_array(), *done = json_array(), *gone = json_object();
	json_t *status, *e;
	kc_inbox_counts_t counts;
	const char *k;
	int64_t now = kanal_wall_ms();
	size_t i;

	taken = kc_inbox_take(r->inbox, &counts);
	if (taken && (!keep || !done || !gone)) { /* out of memory: the inbox stays as it is */
		kc_inbox_put_back(r->inbox, &taken, false);
		taken = NULL;
	}
	if (counts.received)
		kanal_metric_add(r->ctx, "statuses_received", (int64_t)counts.received);
	if (counts.invalid)
		kanal_metric_add(r->ctx, "statuses_invalid", (int64_t)counts.invalid);
	if (counts.refused) {
		kanal_log(r->ctx, KANAL_LOG_WARN, "callback refused %lu message(s), the latest: %s",
			  counts.refused, counts.why);
	}
	json_array_foreach(taken, i, status)
	{
		const char *key = NULL;
		char uuid[128];
		switch (s_apply(r, status, now, &key)) {
		case DP_EMITTED:
			/* Forgotten now, so that a second copy of the status finds no letter. */
			snprintf(uuid, sizeof uuid, "%s", key);
			json_object_set(gone, uuid, json_object_get(r->map, uuid));
			json_object_del(r->map, uuid);
			json_array_append(done, status);
			break;
		case DP_KEEP:
			json_array_append(keep, status);
			break;
		}
	}
	if (json_object_size(gone) && kanal_emit_flush(r->ctx, DP_FLUSH_MS) != 0) {
		/* Not kept by kanald: the letters wait again, their statuses are applied again
		 * (emitting the same event id again is harmless). */
		json_object_foreach(gone, k, e)
		{
			json_object_set(r->map, k, e);
		}
		json_array_extend(keep, done);
		json_object_clear(gone);
	}
	/* The map first: after a crash between the two saves a status is applied again and
	 * finds no letter, rather than a letter waiting for a status already used. */
	if (json_object_size(gone))
		s_save(r);
	if (taken)
		kc_inbox_put_back(r->inbox, &keep, json_array_size(keep) != json_array_size(taken));
	json_decref(taken);
	json_decref(keep);
	json_decref(done);
	json_decref(gone);
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
	/* A status that came meanwhile wins over `unknown`. */
	s_drain(r);
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
	json_t *status;
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
	/* On libmicrohttpd's thread: no host service here; the instance's thread is woken. */
	status = s_read_status(r, up->data ? up->data : "", up->len, why);
	code = status && kc_inbox_keep(r->inbox, status, why, sizeof why) == 0 ? 20 : 40;
	json_decref(status);
	if (code != 20)
		kc_inbox_refused(r->inbox, !status, why);
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

/* Loads name from the state folder into *out, or a new empty one (json_object or json_array,
 * by empty) when there is no such file. Returns 0, or KANAL_ECONFIG (the error set on ctx;
 * what names what the file lists) or KANAL_ENOMEM. */
static int s_load(dp_receipts_t *r, kanal_ctx_t *ctx, const char *name, const char *what,
		  json_t *(*empty)(void), json_t **out)
{
	char file[4096];
	json_error_t jerr;

	snprintf(file, sizeof file, "%s/%s", r->dir, name);
	*out = json_load_file(file, 0, &jerr);
	if (*out && json_typeof(*out) != json_typeof(empty())) {
		json_decref(*out);
		*out = NULL;
		snprintf(jerr.text, sizeof jerr.text, "not a JSON %s",
			 empty == json_array ? "array" : "object");
	}
	if (!*out && access(file, F_OK) == 0) {
		kanal_set_error(ctx,
				"digitalpost: %s is not readable JSON (%s); move it away to "
				"start without the %s it lists",
				file, jerr.text, what);
		return KANAL_ECONFIG;
	}
	if (!*out && !(*out = empty()))
		return KANAL_ENOMEM;
	return 0;
}

int dp_receipts_new(kanal_ctx_t *ctx, const char *listen, const char *path, int64_t timeout_ms,
		    dp_receipts_t **out)
{
	dp_receipts_t *r = calloc(1, sizeof *r);
	xmlSchemaParserCtxtPtr pctx;
	int rc;

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
	/* The letters still waiting, and the statuses not yet matched, from before a restart. */
	if ((rc = s_load(r, ctx, DP_MAP_FILE, "letters", json_object, &r->map)) != 0 ||
	    (rc = kc_inbox_new(ctx, DP_INBOX_FILE, DP_MAX_INBOX, "digitalpost", "statuses",
			       &r->inbox)) != 0) {
		dp_receipts_destroy(&r);
		return rc;
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
	/* The wakeup first: the listener may take a status as soon as it runs (statuses kept
	 * before a restart are matched at once). Its own thread, so that it answers while the
	 * instance's thread is sending. */
	errno = 0;
	if (kc_inbox_start(r->inbox, ctx, s_drain, r) == 0)
		r->daemon =
			kc_mhd_listen_thread(ai->ai_addr, ai->ai_family == AF_INET6, s_handler, r);
	freeaddrinfo(ai);
	if (!r->daemon) {
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
		  "waiting for their status, %zu status(es) for their letter",
		  r->host, r->port, r->path, json_object_size(r->map), kc_inbox_size(r->inbox));
	return 0;
}

void dp_receipts_stop(dp_receipts_t *r, kanal_ctx_t *ctx)
{
	if (!r)
		return;
	/* The listener's thread is joined before the wakeup it writes to goes. */
	if (r->daemon)
		MHD_stop_daemon(r->daemon);
	r->daemon = NULL;
	if (r->sweep)
		kanal_timer_cancel(ctx, r->sweep);
	r->sweep = 0;
	kc_inbox_stop(r->inbox, ctx);
}

void dp_receipts_destroy(dp_receipts_t **rp)
{
	dp_receipts_t *r = rp ? *rp : NULL;

	if (!r)
		return;
	if (r->daemon)
		MHD_stop_daemon(r->daemon);
	kc_inbox_destroy(&r->inbox);
	xmlSchemaFree(r->schema);
	json_decref(r->map);
	free(r->path);
	free(r->dir);
	free(r);
	*rp = NULL;
}
