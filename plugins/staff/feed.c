/*
 * plugins/staff/feed.c — reads one answer of the HR absence feed (an hrAbsence document,
 * docs/plugins/staff.md) into a page of checked items. The XML is untrusted input from
 * another system, so it is parsed the safe way: libxml2 with XML_PARSE_NONET (never the
 * network) and without XML_PARSE_NOENT / XML_PARSE_DTDLOAD (no external entities, no
 * entity substitution), a document with a DOCTYPE is refused before it is parsed, the
 * size is bounded by the caller (the HTTP client stops reading at max_body), and the
 * parser's messages are captured rather than printed (they could quote a CPR number).
 *
 * The document as a whole is refused only when it is not a feed page at all; each absence
 * is checked on its own — dates strictly DD.MM.YYYY, the CPR number valid, the id fit for
 * an event id — so that one bad registration is reported and skipped while the rest of
 * the page goes on.
 */
#include "staff.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include <kanal/cpr.h>

/* The first error the parser reports. */
typedef struct xml_capture {
	bool have;
	int line;
	char text[256];
} xml_capture_t;

static void s_on_xml_error(void *arg, xmlErrorPtr e)
{
	xml_capture_t *cap = arg;
	size_t n;

	if (cap->have || !e || e->level < XML_ERR_ERROR)
		return;
	cap->have = true;
	cap->line = e->line;
	snprintf(cap->text, sizeof cap->text, "%s", e->message ? e->message : "unknown error");
	n = strlen(cap->text);
	while (n > 0 && (cap->text[n - 1] == '\n' || cap->text[n - 1] == ' '))
		cap->text[--n] = '\0';
	kanal_cpr_redact_inplace(cap->text);
}

static bool s_is(const xmlNode *node, const char *name)
{
	return node->type == XML_ELEMENT_NODE && !strcmp((const char *)node->name, name) &&
	       node->ns && !strcmp((const char *)node->ns->href, STAFF_NS);
}

/* Sets the item's error (first one wins), prefixed with the absence it is about. */
static void s_fail(staff_item_t *it, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_fail(staff_item_t *it, const char *fmt, ...)
{
	char text[256];
	va_list ap;

	if (it->error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (it->id[0] && it->version > 0)
		snprintf(it->error, sizeof it->error, "absence %s version %lld: %s", it->id,
			 it->version, text);
	else if (it->id[0])
		snprintf(it->error, sizeof it->error, "absence %s: %s", it->id, text);
	else
		snprintf(it->error, sizeof it->error, "absence #%zu of the page: %s", it->index,
			 text);
	kanal_cpr_redact_inplace(it->error);
}

/* A value quoted in an error: printable ASCII, at most 40 bytes, CPR numbers masked. */
static const char *s_quote(const char *value, char *buf, size_t size)
{
	size_t n = 0;

	for (const char *p = value; *p && n + 4 < size && n < 40; p++)
		buf[n++] = (*p >= 0x20 && *p < 0x7f && *p != '"') ? *p : '?';
	if (strlen(value) > n && n + 4 < size) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	kanal_cpr_redact_inplace(buf);
	return buf;
}

/* Copies text with blanks around it removed into out (size bytes). Returns 0, or -1 when
 * it does not fit or holds a control character. */
static int s_trimmed(const char *text, char *out, size_t size)
{
	const char *b = text, *e;
	size_t n;

	while (*b && isspace((unsigned char)*b))
		b++;
	e = b + strlen(b);
	while (e > b && isspace((unsigned char)e[-1]))
		e--;
	n = (size_t)(e - b);
	if (n >= size)
		return -1;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)b[i] < 0x20 || b[i] == 0x7f)
			return -1;
	memcpy(out, b, n);
	out[n] = '\0';
	return 0;
}

/* The text of the first child element `name` of the absence into out. Returns 1 when
 * present, 0 when absent, -1 (after s_fail) when malformed. */
static int s_child(staff_item_t *it, const xmlNode *absence, const char *name, char *out,
		   size_t size)
{
	for (const xmlNode *c = absence->children; c; c = c->next) {
		xmlChar *text;
		int rc;

		if (!s_is(c, name))
			continue;
		text = xmlNodeGetContent(c);
		rc = s_trimmed(text ? (const char *)text : "", out, size);
		xmlFree(text);
		if (rc != 0) {
			s_fail(it, "field '%s': longer than %zu bytes or holds a control character",
			       name, size - 1);
			return -1;
		}
		return 1;
	}
	out[0] = '\0';
	return 0;
}

/* An attribute of the absence into out, like s_child. */
static int s_attr(staff_item_t *it, const xmlNode *absence, const char *name, char *out,
		  size_t size)
{
	xmlChar *v = xmlGetNoNsProp(absence, (const xmlChar *)name);
	int rc;

	if (!v) {
		out[0] = '\0';
		return 0;
	}
	rc = s_trimmed((const char *)v, out, size);
	xmlFree(v);
	if (rc != 0) {
		s_fail(it, "attribute '%s': longer than %zu bytes or holds a control character",
		       name, size - 1);
		return -1;
	}
	return 1;
}

static bool s_id_ok(const char *id)
{
	size_t off, len;

	if (!*id)
		return false;
	for (const char *p = id; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._:-", *p))
			return false;
	/* An event id carries it: kanal refuses a CPR number in an attribute. */
	return !kanal_cpr_find(id, strlen(id), &off, &len);
}

/* A date field: required (upserts) or optional (cancels). */
static void s_date_field(staff_item_t *it, const xmlNode *absence, const char *name, bool required,
			 int32_t *day)
{
	char text[STAFF_FIELD_MAX + 1], q[64];
	int rc = s_child(it, absence, name, text, sizeof text);

	*day = STAFF_NO_DATE;
	if (rc < 0)
		return;
	if (rc == 0) {
		if (required)
			s_fail(it, "field '%s' missing", name);
		return;
	}
	if (staff_date_parse(text, day) != 0) {
		*day = STAFF_NO_DATE;
		s_fail(it, "field '%s': \"%s\" is not a date (want DD.MM.YYYY, a day that exists)",
		       name, s_quote(text, q, sizeof q));
	}
}

/* Reads and checks one <absence>. */
static void s_item(const xmlNode *absence, staff_item_t *it)
{
	char text[STAFF_FIELD_MAX + 1], q[64];
	bool upsert;
	int rc;

	/* id and version first: every later error names them. */
	rc = s_attr(it, absence, "id", text, sizeof text);
	if (rc == 0)
		s_fail(it, "attribute 'id' missing");
	else if (rc > 0 && (strlen(text) > STAFF_ID_MAX || !s_id_ok(text)))
		s_fail(it,
		       "attribute 'id': \"%s\" is not an id (1 to %d of A-Z a-z 0-9 . _ : -, "
		       "no CPR number)",
		       s_quote(text, q, sizeof q), STAFF_ID_MAX);
	else if (rc > 0)
		memcpy(it->id, text, strlen(text) + 1); /* fits: length checked above */
	if (it->error[0])
		return;
	rc = s_attr(it, absence, "version", text, sizeof text);
	if (rc == 0) {
		s_fail(it, "attribute 'version' missing");
		return;
	}
	if (rc > 0) {
		size_t n = strlen(text);
		bool digits = n > 0 && n <= 15 && strspn(text, "0123456789") == n;
		it->version = digits ? strtoll(text, NULL, 10) : 0;
		if (it->version < 1) {
			it->version = 0;
			s_fail(it, "attribute 'version': \"%s\" is not a whole number from 1",
			       s_quote(text, q, sizeof q));
		}
	}
	rc = s_attr(it, absence, "action", text, sizeof text);
	if (rc == 0)
		s_fail(it, "attribute 'action' missing (upsert or cancel)");
	else if (rc > 0 && strcmp(text, "upsert") && strcmp(text, "cancel"))
		s_fail(it, "attribute 'action': \"%s\" is neither upsert nor cancel",
		       s_quote(text, q, sizeof q));
	it->cancel = rc > 0 && !strcmp(text, "cancel");
	upsert = !it->cancel;
	if (s_attr(it, absence, "changed", it->changed, sizeof it->changed) < 0)
		it->changed[0] = '\0';

	/* A cancellation needs only id and version; what else it carries is checked too. */
	if (s_child(it, absence, "employment", it->employment, sizeof it->employment) == 0 &&
	    upsert)
		s_fail(it, "field 'employment' missing");
	if ((rc = s_child(it, absence, "cpr", text, sizeof text)) == 0 && upsert) {
		s_fail(it, "field 'cpr' missing");
	} else if (rc > 0) {
		kanal_cpr_t cpr;
		kanal_error_t err;
		kanal_error_clear(&err);
		if (kanal_cpr_parse(text, &cpr, &err) != 0)
			s_fail(it, "field 'cpr': not a valid CPR number (%s)", err.text);
		else
			memcpy(it->cpr, cpr.digits, sizeof it->cpr);
	}
	if (s_child(it, absence, "department", it->department, sizeof it->department) == 0 &&
	    upsert)
		s_fail(it, "field 'department' missing");
	if ((rc = s_child(it, absence, "code", it->code, sizeof it->code)) == 0 && upsert) {
		s_fail(it, "field 'code' missing");
	} else if (rc > 0) {
		for (char *p = it->code; *p; p++) {
			if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-') {
				s_fail(it, "field 'code': \"%s\" is not a code (A-Z 0-9 _ -)",
				       s_quote(it->code, q, sizeof q));
				break;
			}
			*p = (char)toupper((unsigned char)*p);
		}
		if (!it->code[0] && upsert)
			s_fail(it, "field 'code' is empty");
	}
	s_date_field(it, absence, "start", upsert, &it->from);
	s_date_field(it, absence, "end", upsert, &it->to);
	if (it->from != STAFF_NO_DATE && it->to != STAFF_NO_DATE && it->to < it->from) {
		char a[11], b[11];
		staff_date_iso(it->from, a);
		staff_date_iso(it->to, b);
		s_fail(it, "field 'end': %s is before the start %s", b, a);
	}
	if ((rc = s_child(it, absence, "hours", text, sizeof text)) > 0) {
		char *end;
		for (char *p = text; *p; p++)
			if (*p == ',') /* Danish decimal comma */
				*p = '.';
		it->hours = strtod(text, &end);
		if (end == text || *end || !(it->hours > 0 && it->hours <= 24)) {
			it->hours = 0;
			s_fail(it,
			       "field 'hours': \"%s\" is not a number of hours above 0 and at most "
			       "24",
			       s_quote(text, q, sizeof q));
		}
	}
}

/* Fills the page from the parsed document, or says why it is not a feed page. */
static int s_page(xmlDoc *doc, staff_page_t *page, char *why, size_t why_size)
{
	xmlNode *root = xmlDocGetRootElement(doc);
	xmlChar *v;
	size_t n = 0, cap = 0;

	if (!root || !s_is(root, "hrAbsence")) {
		snprintf(why, why_size, "the document element is not hrAbsence in namespace %s",
			 STAFF_NS);
		return -1;
	}
	v = xmlGetNoNsProp(root, (const xmlChar *)"next");
	if (!v || s_trimmed((const char *)v, page->next, sizeof page->next) != 0 ||
	    !page->next[0] || strpbrk(page->next, " \t")) {
		snprintf(why, why_size,
			 "attribute 'next' of hrAbsence is missing, empty, longer "
			 "than %d bytes or holds a blank",
			 STAFF_CURSOR_MAX);
		xmlFree(v);
		return -1;
	}
	xmlFree(v);
	v = xmlGetNoNsProp(root, (const xmlChar *)"more");
	page->more = v && !strcmp((const char *)v, "true");
	xmlFree(v);
	for (xmlNode *c = root->children; c; c = c->next)
		if (s_is(c, "absence"))
			cap++;
	if (cap && !(page->items = calloc(cap, sizeof *page->items))) {
		snprintf(why, why_size, "out of memory");
		return -1;
	}
	for (xmlNode *c = root->children; c; c = c->next) {
		if (!s_is(c, "absence"))
			continue;
		page->items[n].index = n + 1;
		page->items[n].from = page->items[n].to = STAFF_NO_DATE;
		s_item(c, &page->items[n]);
		n++;
	}
	page->n = n;
	return 0;
}

int staff_feed_parse(const char *body, size_t len, staff_page_t *page, char *why, size_t why_size)
{
	xml_capture_t cap = { 0 };
	xmlParserCtxtPtr ctxt;
	xmlDoc *doc;
	int rc;

	memset(page, 0, sizeof *page);
	if (len > (size_t)INT32_MAX) {
		snprintf(why, why_size, "answer too large");
		return -1;
	}
	/* No DTD at all: it is the door to entity expansion and external entities. */
	if (memmem(body, len, "<!DOCTYPE", 9) || memmem(body, len, "<!ENTITY", 8)) {
		snprintf(why, why_size,
			 "the document has a DOCTYPE or entity declaration, which "
			 "the feed does not allow");
		return -1;
	}
	xmlInitParser(); /* once per process; later calls return at once */
	if (!(ctxt = xmlNewParserCtxt())) {
		snprintf(why, why_size, "out of memory");
		return -1;
	}
	xmlSetStructuredErrorFunc(&cap, s_on_xml_error);
	doc = xmlCtxtReadMemory(ctxt, body, (int)len, "feed.xml", NULL,
				XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xmlSetStructuredErrorFunc(NULL, NULL);
	if (!doc || !ctxt->wellFormed) {
		if (cap.have)
			snprintf(why, why_size, "not well-formed XML: line %d: %s", cap.line,
				 cap.text);
		else
			snprintf(why, why_size, "not well-formed XML");
		xmlFreeDoc(doc);
		xmlFreeParserCtxt(ctxt);
		return -1;
	}
	xmlFreeParserCtxt(ctxt);
	if (doc->intSubset || doc->extSubset) {
		snprintf(why, why_size,
			 "the document has a DOCTYPE, which the feed does not allow");
		xmlFreeDoc(doc);
		return -1;
	}
	rc = s_page(doc, page, why, why_size);
	xmlFreeDoc(doc);
	if (rc != 0)
		staff_page_clear(page);
	return rc;
}

void staff_page_clear(staff_page_t *page)
{
	free(page->items);
	memset(page, 0, sizeof *page);
}
