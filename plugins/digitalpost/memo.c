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
		return true; /* U+3000 */
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
			snprintf(why, why_size, "character '%c' is not allowed (none of <>:\"/\\|?*)",
				 *p);
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
				 pad ? "data after the padding" : "a character outside the alphabet",
				 i);
			return false;
		}
	}
	if (pad > 2 || n % 4) {
		snprintf(why, why_size, "not base64: its length is not a multiple of 4 with at "
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
			snprintf(why, why_size, "a blank, control or non-ASCII character at byte %zu "
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
	static const char *const codes[] = { "AFTALE",      "BETALING",   "SELVBETJENING",
					      "INFORMATION", "UNDERSKRIV", "BEKRAEFT",
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
		{ "docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document" },
		{ "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" },
		{ "odt", "application/vnd.oasis.opendocument.text" },
	};
	const char *dot = filename ? strrchr(filename, '.') : NULL;

	for (size_t i = 0; dot && i < sizeof map / sizeof *map; i++)
		if (!strcasecmp(dot + 1, map[i][0]))
			return map[i][1];
	return "application/octet-stream";
}

int dp_message_uuid(const char *source, const char *id, char out[37])
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok;

	/* Name = source, a NUL, id: neither may hold a NUL, so no two events share a name. */
	ok = md && EVP_DigestInit_ex(md, EVP_sha1(), NULL) &&
	     EVP_DigestUpdate(md, s_uuid_namespace, sizeof s_uuid_namespace) &&
	     EVP_DigestUpdate(md, source, strlen(source) + 1) &&
	     EVP_DigestUpdate(md, id, strlen(id)) && EVP_DigestFinal_ex(md, digest, &dlen) &&
	     dlen >= 16;
	EVP_MD_CTX_free(md);
	if (!ok)
		return -1;
	digest[6] = (unsigned char)((digest[6] & 0x0F) | 0x50); /* version 5 */
	digest[8] = (unsigned char)((digest[8] & 0x3F) | 0x80); /* RFC 4122 variant */
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
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

char *dp_memo_build(const dp_letter_t *l, size_t *len)
{
	xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
	xmlNodePtr root, msg, header, sender, recipient, body, main, file, action, entry;
	xmlNsPtr dp, memo;
	xmlChar *text = NULL;
	char *out = NULL;
	int n = 0;
	bool ok;

	if (!doc)
		return NULL;
	root = xmlNewNode(NULL, (const xmlChar *)"SendRequest");
	if (!root)
		goto done;
	xmlDocSetRootElement(doc, root);
	dp = xmlNewNs(root, (const xmlChar *)DP_NS_SEND, (const xmlChar *)"dp");
	memo = xmlNewNs(root, (const xmlChar *)DP_NS_MEMO, (const xmlChar *)"memo");
	if (!dp || !memo)
		goto done;
	xmlSetNs(root, dp);
	ok = s_add(root, dp, "channel", l->channel);
	msg = xmlNewChild(root, memo, (const xmlChar *)"Message", NULL);
	ok = ok && msg && xmlNewProp(msg, (const xmlChar *)"memoVersion", (const xmlChar *)"1.1");

	header = msg ? xmlNewChild(msg, memo, (const xmlChar *)"MessageHeader", NULL) : NULL;
	ok = ok && header && s_add(header, memo, "messageType", l->message_type) &&
	     s_add(header, memo, "messageUUID", l->message_uuid) &&
	     s_add(header, memo, "label", l->label);
	sender = header ? xmlNewChild(header, memo, (const xmlChar *)"Sender", NULL) : NULL;
	ok = ok && sender && s_add(sender, memo, "senderID", l->sender_cvr) &&
	     s_add(sender, memo, "idType", "CVR") && s_add(sender, memo, "label", l->sender_label);
	recipient = header ? xmlNewChild(header, memo, (const xmlChar *)"Recipient", NULL) : NULL;
	ok = ok && recipient && s_add(recipient, memo, "recipientID", l->recipient) &&
	     s_add(recipient, memo, "idType", "CPR");

	body = msg ? xmlNewChild(msg, memo, (const xmlChar *)"MessageBody", NULL) : NULL;
	ok = ok && body && s_add(body, memo, "createdDateTime", l->created);
	main = body ? xmlNewChild(body, memo, (const xmlChar *)"MainDocument", NULL) : NULL;
	file = main ? xmlNewChild(main, memo, (const xmlChar *)"File", NULL) : NULL;
	ok = ok && file && s_add(file, memo, "encodingFormat", l->mimetype) &&
	     s_add(file, memo, "filename", l->filename) &&
	     s_add(file, memo, "language", l->language) && s_add(file, memo, "content", l->content);
	if (ok && l->action_code) {
		action = xmlNewChild(main, memo, (const xmlChar *)"Action", NULL);
		ok = action && s_add(action, memo, "label", l->action_label) &&
		     s_add(action, memo, "actionCode", l->action_code);
		entry = action ? xmlNewChild(action, memo, (const xmlChar *)"EntryPoint", NULL) : NULL;
		ok = ok && entry && s_add(entry, memo, "url", l->action_url);
	}
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
