/*
 * plugins/digitalpost/memo.c — the letter checks, the name-based messageUUID and the MeMo
 * writer of the digitalpost connector (see memo.h). The XML is built with libxml2, which
 * escapes text and declares the namespaces, so nothing here formats XML by hand.
 */
#include "memo.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/tree.h>
#include <openssl/evp.h>

/* The namespace of kanal's Digital Post messageUUIDs (a fixed, random UUID). */
static const unsigned char s_uuid_namespace[16] = {
	0x5e, 0x4b, 0x2f, 0x36, 0x2d, 0x0a, 0x4c, 0x43,
	0x9a, 0x0e, 0x8f, 0x2a, 0x7d, 0x6c, 0x1b, 0x90,
};

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when it is malformed (overlong,
 * surrogate, beyond U+10FFFF, truncated). */
static size_t s_utf8_len(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		return (p[1] & 0xC0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xE0 && p[0] <= 0xEF) {
		if ((p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
			return 0;
		if ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0))
			return 0;
		return 3;
	}
	if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		if ((p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
			return 0;
		if ((p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

/* True when the valid UTF-8 sequence of n bytes at p is a control character: C0, DEL or
 * C1 (U+0080-U+009F, NEL among them). */
static bool s_is_control(const unsigned char *p, size_t n)
{
	return (n == 1 && (p[0] < 0x20 || p[0] == 0x7F)) || (n == 2 && p[0] == 0xC2 && p[1] < 0xA0);
}

/* True when the valid UTF-8 sequence of n bytes at p is a unicode space or line separator
 * other than the plain space. */
static bool s_is_unicode_space(const unsigned char *p, size_t n)
{
	if (n == 2)
		return p[0] == 0xC2 && p[1] == 0xA0;
	if (n != 3)
		return false;
	if (p[0] == 0xE1 && p[1] == 0x9A && p[2] == 0x80)
		return true; /* U+1680 */
	if (p[0] == 0xE2 && p[1] == 0x80)
		return (p[2] >= 0x80 && p[2] <= 0x8B) || p[2] == 0xA8 || p[2] == 0xA9 ||
		       p[2] == 0xAF; /* U+2000-U+200B, U+2028, U+2029, U+202F */
	if (p[0] == 0xE2 && p[1] == 0x81 && p[2] == 0x9F)
		return true; /* U+205F */
	if (p[0] == 0xE3 && p[1] == 0x80 && p[2] == 0x80)
		return true;                                 /* U+3000 */
	return p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF; /* U+FEFF */
}

bool dp_check_text(const char *text, size_t max, char *why, size_t why_size)
{
	const unsigned char *p = (const unsigned char *)text;
	bool blank = true;

	if (!text || !*text) {
		snprintf(why, why_size, "empty");
		return false;
	}
	if (strlen(text) > max) {
		snprintf(why, why_size, "longer than %zu bytes", max);
		return false;
	}
	while (*p) {
		size_t n = s_utf8_len(p);
		if (!n) {
			snprintf(why, why_size, "not valid UTF-8 at byte %zu",
				 (size_t)(p - (const unsigned char *)text));
			return false;
		}
		if (s_is_control(p, n)) {
			snprintf(why, why_size, "control character or line break at byte %zu",
				 (size_t)(p - (const unsigned char *)text));
			return false;
		}
		if (!(n == 1 && *p == ' ') && !s_is_unicode_space(p, n))
			blank = false;
		p += n;
	}
	if (blank) {
		snprintf(why, why_size, "blank");
		return false;
	}
	return true;
}

bool dp_check_filename(const char *name, char *why, size_t why_size)
{
	const unsigned char *p = (const unsigned char *)name;

	if (!name || !*name) {
		snprintf(why, why_size, "empty");
		return false;
	}
	if (strlen(name) > DP_MAX_FILENAME) {
		snprintf(why, why_size, "longer than %d bytes", DP_MAX_FILENAME);
		return false;
	}
	if (!strcmp(name, ".") || !strcmp(name, "..")) {
		snprintf(why, why_size, "'%s' is not a file name", name);
		return false;
	}
	while (*p) {
		size_t n = s_utf8_len(p), at = (size_t)(p - (const unsigned char *)name);
		if (!n) {
			snprintf(why, why_size, "not valid UTF-8 at byte %zu", at);
			return false;
		}
		if (s_is_control(p, n)) {
			snprintf(why, why_size, "control character or line break at byte %zu", at);
			return false;
		}
		if (n == 1 && strchr("<>:\"/\\|?*", *p)) {
			snprintf(why, why_size,
				 "character '%c' is not allowed (none of <>:\"/\\|?*)", *p);
			return false;
		}
		if (s_is_unicode_space(p, n)) {
			snprintf(why, why_size, "unicode space or line separator at byte %zu", at);
			return false;
		}
		p += n;
	}
	return true;
}

bool dp_check_base64(const char *text, char *why, size_t why_size)
{
	size_t n = text ? strlen(text) : 0, pad = 0;

	if (n == 0) {
		snprintf(why, why_size, "empty");
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)text[i];
		if (ch == '=') {
			pad++;
			continue;
		}
		if (pad || !(isalnum(ch) || ch == '+' || ch == '/')) {
			snprintf(why, why_size, "not base64: %s at byte %zu",
				 pad ? "data after the padding"
				     : "a character outside the alphabet",
				 i);
			return false;
		}
	}
	if (pad > 2 || n % 4) {
		snprintf(why, why_size,
			 "not base64: its length is not a multiple of 4 with at "
			 "most two '=' of padding");
		return false;
	}
	return true;
}

bool dp_check_https_url(const char *url, char *why, size_t why_size)
{
	if (!url || !*url) {
		snprintf(why, why_size, "empty");
		return false;
	}
	if (strlen(url) > DP_MAX_URL) {
		snprintf(why, why_size, "longer than %d bytes", DP_MAX_URL);
		return false;
	}
	if (strncasecmp(url, "https://", 8)) {
		snprintf(why, why_size, "not an absolute https URL (must start with https://)");
		return false;
	}
	if (!url[8] || url[8] == '/' || url[8] == ':' || url[8] == '?' || url[8] == '#') {
		snprintf(why, why_size, "no host after https://");
		return false;
	}
	for (const unsigned char *p = (const unsigned char *)url; *p; p++)
		if (*p <= 0x20 || *p >= 0x7F) {
			snprintf(why, why_size,
				 "a blank, control or non-ASCII character at byte %zu "
				 "(percent-encode it)",
				 (size_t)(p - (const unsigned char *)url));
			return false;
		}
	return true;
}

bool dp_check_cvr(const char *text)
{
	if (!text || strlen(text) != 8)
		return false;
	for (int i = 0; i < 8; i++)
		if (!isdigit((unsigned char)text[i]))
			return false;
	return true;
}

bool dp_check_action_code(const char *code)
{
	static const char *const codes[] = { "AFTALE",       "BETALING",   "SELVBETJENING",
					     "INFORMATION",  "UNDERSKRIV", "BEKRAEFT",
					     "FORBEREDELSE", "TILMELDING" };

	for (size_t i = 0; code && i < sizeof codes / sizeof *codes; i++)
		if (!strcmp(code, codes[i]))
			return true;
	return false;
}

const char *dp_mimetype_for(const char *filename)
{
	static const char *const map[][2] = {
		{ "pdf", "application/pdf" },
		{ "txt", "text/plain" },
		{ "html", "text/html" },
		{ "htm", "text/html" },
		{ "xml", "application/xml" },
		{ "png", "image/png" },
		{ "jpg", "image/jpeg" },
		{ "jpeg", "image/jpeg" },
		{ "tif", "image/tiff" },
		{ "tiff", "image/tiff" },
		{ "docx",
		  "application/vnd.openxmlformats-officedocument.wordprocessingml.document" },
		{ "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" },
		{ "odt", "application/vnd.oasis.opendocument.text" },
	};
	const char *dot = filename ? strrchr(filename, '.') : NULL;

	for (size_t i = 0; dot && i < sizeof map / sizeof *map; i++)
		if (!strcasecmp(dot + 1, map[i][0]))
			return map[i][1];
	return "application/octet-stream";
}

int dp_uuid(const char *source, const char *id, const char *role, char out[37])
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok;

	/* Name = source, a NUL, id, and for the other roles a NUL and the role: neither may
	 * hold a NUL, so no two events (or roles) share a name. The messageUUID keeps the name
	 * it had before the roles, so a letter queued then is still the same letter. */
	ok = md && EVP_DigestInit_ex(md, EVP_sha1(), NULL) &&
	     EVP_DigestUpdate(md, s_uuid_namespace, sizeof s_uuid_namespace) &&
	     EVP_DigestUpdate(md, source, strlen(source) + 1) &&
	     EVP_DigestUpdate(md, id, strlen(id)) && (!*role || EVP_DigestUpdate(md, "", 1)) &&
	     EVP_DigestUpdate(md, role, strlen(role)) && EVP_DigestFinal_ex(md, digest, &dlen) &&
	     dlen >= 16;
	EVP_MD_CTX_free(md);
	if (!ok)
		return -1;
	/* MeMo accepts only the version-4 form (memoUuidType's pattern): a hash is as good as
	 * random bits there, and being a hash it is the same on every delivery. */
	digest[6] = (unsigned char)((digest[6] & 0x0F) | 0x40);
	digest[8] = (unsigned char)((digest[8] & 0x3F) | 0x80); /* RFC 9562 variant */
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6],
		 digest[7], digest[8], digest[9], digest[10], digest[11], digest[12], digest[13],
		 digest[14], digest[15]);
	return 0;
}

/* Adds <ns:name>text</ns:name> to parent; false when out of memory. */
static bool s_add(xmlNodePtr parent, xmlNsPtr ns, const char *name, const char *text)
{
	return xmlNewTextChild(parent, ns, (const xmlChar *)name, (const xmlChar *)text) != NULL;
}

/* Adds the element only when text is given; false when out of memory. */
static bool s_add_opt(xmlNodePtr parent, xmlNsPtr ns, const char *name, const char *text)
{
	return !text || s_add(parent, ns, name, text);
}

/* Adds a child element and returns it, or NULL (also when parent is NULL). */
static xmlNodePtr s_node(xmlNodePtr parent, xmlNsPtr ns, const char *name)
{
	return parent ? xmlNewChild(parent, ns, (const xmlChar *)name, NULL) : NULL;
}

/* Writes one MeMo Action in the schema's order: label, actionCode, startDateTime?,
 * endDateTime?, then Reservation (AFTALE) or EntryPoint. */
static bool s_action(xmlNodePtr doc, xmlNsPtr m, const dp_action_t *a)
{
	xmlNodePtr act = s_node(doc, m, "Action"), res, entry;
	bool ok = act && s_add(act, m, "label", a->label) && s_add(act, m, "actionCode", a->code) &&
		  s_add_opt(act, m, "startDateTime", a->start) &&
		  s_add_opt(act, m, "endDateTime", a->end);

	if (!ok)
		return false;
	if (!strcmp(a->code, "AFTALE")) {
		res = s_node(act, m, "Reservation");
		return res && s_add(res, m, "description", a->description) &&
		       s_add(res, m, "reservationUUID", a->reservation_uuid) &&
		       s_add(res, m, "abstract", a->abstract) &&
		       s_add(res, m, "location", a->location) &&
		       s_add(res, m, "startDateTime", a->start) &&
		       s_add(res, m, "endDateTime", a->end) &&
		       s_add_opt(res, m, "organizerMail", a->organizer_mail) &&
		       s_add_opt(res, m, "organizerName", a->organizer_name);
	}
	entry = s_node(act, m, "EntryPoint");
	return entry && s_add(entry, m, "url", a->url);
}

/* Writes MainDocument or AdditionalDocument: label?, File, then (main only) the actions. */
static bool s_document(xmlNodePtr body, xmlNsPtr m, const char *name, const dp_document_t *d,
		       const dp_letter_t *l)
{
	xmlNodePtr doc = s_node(body, m, name), file;
	bool ok = doc && s_add_opt(doc, m, "label", d->label);

	file = ok ? s_node(doc, m, "File") : NULL;
	ok = file && s_add(file, m, "encodingFormat", d->mimetype) &&
	     s_add(file, m, "filename", d->filename) && s_add(file, m, "language", d->language) &&
	     s_add(file, m, "content", d->content);
	for (size_t i = 0; ok && l && i < l->n_actions; i++)
		ok = s_action(doc, m, &l->actions[i]);
	return ok;
}

/* Writes the memo:Message: header fields in the schema's order (1.1 with memoSchVersion and
 * both booleans; 1.2 without memoSchVersion), then the body. */
static bool s_message(xmlNodePtr root, const dp_letter_t *l)
{
	xmlNodePtr msg = s_node(root, NULL, "Message"), header, sender, recipient, body;
	xmlNsPtr m =
		msg ? xmlNewNs(msg, (const xmlChar *)DP_NS_MEMO, (const xmlChar *)"memo") : NULL;
	bool nemsms = !strcmp(l->message_type, "NEMSMS");
	bool ok;

	if (!m)
		return false;
	xmlSetNs(msg, m);
	ok = xmlNewProp(msg, (const xmlChar *)"memoVersion",
			(const xmlChar *)(l->memo_version == 11 ? "1.1" : "1.2")) != NULL;
	if (ok && l->memo_version == 11)
		ok = xmlNewProp(msg, (const xmlChar *)"memoSchVersion", (const xmlChar *)"1.1.0");
	header = ok ? s_node(msg, m, "MessageHeader") : NULL;
	ok = header && s_add(header, m, "messageType", l->message_type) &&
	     s_add(header, m, "messageUUID", l->message_uuid) &&
	     s_add_opt(header, m, "messageID", l->message_id) &&
	     s_add(header, m, "label", l->label) &&
	     s_add_opt(header, m, "notification", l->notification) &&
	     s_add(header, m, "mandatory", l->mandatory ? "true" : "false") &&
	     s_add(header, m, "legalNotification", l->legal_notification ? "true" : "false");
	sender = ok ? s_node(header, m, "Sender") : NULL;
	ok = sender && s_add(sender, m, "senderID", l->sender_cvr) &&
	     s_add(sender, m, "idType", "CVR") && s_add(sender, m, "label", l->sender_label);
	recipient = ok ? s_node(header, m, "Recipient") : NULL;
	ok = recipient && s_add(recipient, m, "recipientID", l->recipient) &&
	     s_add(recipient, m, "idType", "CPR");
	/* A NemSMS has its text in the notification and no body. */
	if (!ok || nemsms)
		return ok;
	body = s_node(msg, m, "MessageBody");
	ok = body && s_add(body, m, "createdDateTime", l->created) &&
	     s_document(body, m, "MainDocument", &l->main, l);
	for (size_t i = 0; ok && i < l->n_attachments; i++)
		ok = s_document(body, m, "AdditionalDocument", &l->attachments[i], NULL);
	return ok;
}

/* Writes the fjernprint:ForsendelseISamling holding one ForsendelseI: the main document's
 * PDF to the full postal address, with the dummy recipient CPR the contract requires. */
static bool s_print(xmlNodePtr root, const dp_letter_t *l)
{
	static const char *const prefixes[][2] = {
		{ "fjernprint", DP_NS_FJERNPRINT },
		{ "dkal", "urn:oio:dkal:1.0.0" },
		{ "adir", "urn:oio:adir:dagpenge:2009.07.01" },
		{ "itst", "http://rep.oio.dk/itst.dk/xml/schemas/2006/01/17/" },
		{ "dkcc", "http://rep.oio.dk/ebxml/xml/schemas/dkcc/2003/02/13/" },
		{ "dkcc2005", "http://rep.oio.dk/ebxml/xml/schemas/dkcc/2005/03/15/" },
		{ "sd", "urn:oio:sagdok:3.0.0" },
	};
	xmlNsPtr ns[7];
	xmlNodePtr coll = s_node(root, NULL, "ForsendelseISamling"), fi, rcv, who, adr, tp, dp, cc;
	const dp_address_t *a = &l->address;
	bool ok;

	if (!coll)
		return false;
	for (size_t i = 0; i < 7; i++)
		if (!(ns[i] = xmlNewNs(coll, (const xmlChar *)prefixes[i][1],
				       (const xmlChar *)prefixes[i][0])))
			return false;
	xmlSetNs(coll, ns[0]);
	fi = s_node(coll, ns[0], "ForsendelseI");
	ok = fi && s_add(fi, ns[0], "AfsendelseIdentifikator", l->print_id) &&
	     s_add_opt(fi, ns[0], "ForsendelseTypeIdentifikator", l->print_type);
	rcv = ok ? s_node(fi, ns[0], "ForsendelseModtager") : NULL;
	who = s_node(rcv, ns[1], "AfsendelseModtager");
	ok = who && s_add(who, ns[2], "CPRnummerIdentifikator", DP_PRINT_DUMMY_CPR);
	adr = ok ? s_node(rcv, ns[0], "ModtagerAdresse") : NULL;
	ok = adr && s_add(adr, ns[3], "PersonName", a->name) &&
	     s_add_opt(adr, ns[0], "CoNavn", a->co) && s_add(adr, ns[5], "StreetName", a->street) &&
	     s_add(adr, ns[4], "StreetBuildingIdentifier", a->building) &&
	     s_add_opt(adr, ns[4], "FloorIdentifier", a->floor) &&
	     s_add_opt(adr, ns[4], "SuiteIdentifier", a->suite) &&
	     s_add(adr, ns[5], "PostCodeIdentifier", a->postcode) &&
	     s_add_opt(adr, ns[5], "DistrictSubdivisionIdentifier", a->city);
	cc = ok ? xmlNewTextChild(adr, ns[4], (const xmlChar *)"CountryIdentificationCode",
				  (const xmlChar *)"DK")
		: NULL;
	ok = cc && xmlNewProp(cc, (const xmlChar *)"scheme", (const xmlChar *)"iso3166-alpha2") &&
	     s_add(fi, ns[1], "FilformatNavn", "PDF") &&
	     s_add(fi, ns[1], "MeddelelseIndholdData", l->main.content);
	tp = ok ? s_node(fi, ns[0], "TransaktionsParametreI") : NULL;
	ok = tp && s_add(tp, ns[0], "KvitteringsTypeKode", "Alle");
	dp = ok ? s_node(fi, ns[0], "DokumentParametre") : NULL;
	return dp && s_add(dp, ns[6], "TitelTekst", l->label);
}

char *dp_kombi_build(const dp_letter_t *l, size_t *len)
{
	xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
	xmlNodePtr root;
	xmlChar *text = NULL;
	char *out = NULL;
	int n = 0;
	bool ok;

	if (!doc)
		return NULL;
	if (!(root = xmlNewNode(NULL, (const xmlChar *)"kombi_request")))
		goto done;
	xmlDocSetRootElement(doc, root);
	ok = s_add(root, NULL, "KombiValgKode", l->kombi) &&
	     (!l->with_memo || s_message(root, l)) && (!l->with_print || s_print(root, l));
	if (!ok)
		goto done;
	xmlDocDumpMemoryEnc(doc, &text, &n, "UTF-8");
	if (text && n > 0 && (out = malloc((size_t)n + 1))) {
		memcpy(out, text, (size_t)n);
		out[n] = '\0';
		*len = (size_t)n;
	}
done:
	xmlFree(text);
	xmlFreeDoc(doc);
	return out;
}
