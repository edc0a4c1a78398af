/*
 * sdk/msg_parse.c — the CloudEvents JSON envelope parser: kanal_msg_parse,
 * kanal_batch_parse and kanal_json_is_batch.
 *
 * Parsing runs in two steps. The scan step walks the top-level object with the strict
 * scanner of json_scan.c and records each member: its decoded name, its kind, its decoded
 * string when it is one, and its byte span. The `data` member is validated and skipped, never
 * decoded — routing needs only the attributes, and kanal_msg_to_json copies the span back out
 * unchanged. The build step then rejects duplicate names and checks the attributes in a
 * fixed order (specversion first, since it decides how the rest is read), so the error a
 * producer sees does not depend on the order of the members.
 *
 * Every error names the attribute at fault in err->attribute and in the text, gives the
 * line and column where it is known, and never quotes a value.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/error.h>
#include <kanal/msg.h>

#include "json_scan.h"
#include "msg_int.h"

#define EVENT_SOURCE "<event>"

/* One top-level member as scanned. */
typedef struct member {
	char *name; /* decoded, NUL-terminated */
	size_t name_len;
	kanal__json_kind_t kind;
	char *str; /* decoded string value (not for `data`), else NULL */
	size_t str_len;
	size_t start; /* the value's span in the text */
	size_t end;
} member_t;

/* The state of one event's parse. */
typedef struct parse {
	kanal__json_scan_t scan;
	kanal_error_t *err;
	member_t *members;
	size_t n;
	size_t cap;
} parse_t;

static void s_members_free(parse_t *p)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		free(p->members[i].name);
		free(p->members[i].str);
	}
	free(p->members);
	p->members = NULL;
	p->n = p->cap = 0;
}

/* Reports an error at byte offset pos of the text. */
static int s_error_at(parse_t *p, int code, size_t pos, const char *name, size_t name_len,
		      const char *what)
{
	int line, col;

	kanal__json_line_col(p->scan.text, p->scan.len, pos, &line, &col);
	kanal__msg_error(p->err, EVENT_SOURCE, line, col, name, name_len, "%s", what);
	return code;
}

/* Reports the scanner's recorded syntax error, inside member `name` when not NULL. */
static int s_syntax_error(parse_t *p, int rc, const char *name, size_t name_len)
{
	if (rc == KANAL_ENOMEM)
		return s_error_at(p, rc, p->scan.pos, NULL, 0, "out of memory");
	return s_error_at(p, KANAL_EPARSE, p->scan.err_pos, name, name_len,
			  p->scan.err_what ? p->scan.err_what : "malformed JSON");
}

static member_t *s_member_add(parse_t *p)
{
	member_t *m;

	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		member_t *grown = realloc(p->members, cap * sizeof *grown);
		if (!grown)
			return NULL;
		p->members = grown;
		p->cap = cap;
	}
	m = &p->members[p->n++];
	memset(m, 0, sizeof *m);
	return m;
}

/* Scans one member value into m. `data` is only validated and skipped, and so are
 * containers; other strings are decoded. */
static int s_scan_value(parse_t *p, member_t *m)
{
	bool is_data = m->name_len == 4 && memcmp(m->name, "data", 4) == 0;
	int rc;

	m->start = p->scan.pos;
	if (kanal__json_peek(&p->scan) == '"' && !is_data) {
		m->kind = KANAL__JSON_STRING;
		rc = kanal__json_string(&p->scan, &m->str, &m->str_len);
	} else {
		rc = kanal__json_skip(&p->scan, &m->kind, NULL);
	}
	m->end = p->scan.pos;
	return rc;
}

/* The scan step: reads the object at the cursor into p->members. */
static int s_scan_object(parse_t *p)
{
	kanal__json_scan_t *s = &p->scan;
	int rc, c;

	kanal__json_ws(s);
	if (kanal__json_peek(s) != '{')
		return s_error_at(p, KANAL_EPARSE, s->pos, NULL, 0,
				  "not a JSON object (an event is a JSON object)");
	s->pos++;
	kanal__json_ws(s);
	if (kanal__json_peek(s) == '}') {
		s->pos++;
		return 0;
	}
	for (;;) {
		member_t *m;

		kanal__json_ws(s);
		if (kanal__json_peek(s) != '"')
			return s_error_at(p, KANAL_EPARSE, s->pos, NULL, 0,
					  "expected a member name in double quotes");
		m = s_member_add(p);
		if (!m)
			return s_error_at(p, KANAL_ENOMEM, s->pos, NULL, 0, "out of memory");
		rc = kanal__json_string(s, &m->name, &m->name_len);
		if (rc)
			return s_syntax_error(p, rc, NULL, 0);
		kanal__json_ws(s);
		if (kanal__json_peek(s) != ':')
			return s_error_at(p, KANAL_EPARSE, s->pos, m->name, m->name_len,
					  "expected ':' after the member name");
		s->pos++;
		kanal__json_ws(s);
		rc = s_scan_value(p, m);
		if (rc)
			return s_syntax_error(p, rc, m->name, m->name_len);
		kanal__json_ws(s);
		c = kanal__json_peek(s);
		s->pos++;
		if (c == '}')
			return 0;
		if (c < 0)
			return s_error_at(p, KANAL_EPARSE, s->len, NULL, 0,
					  "unexpected end of text (the event is not closed)");
		if (c != ',')
			return s_error_at(p, KANAL_EPARSE, s->pos - 1, NULL, 0,
					  "expected ',' or '}' after a member");
	}
}

/* ---- the build step ------------------------------------------------------------------ */

static const char *s_kind_name(kanal__json_kind_t kind)
{
	switch (kind) {
	case KANAL__JSON_STRING:
		return "a string";
	case KANAL__JSON_INTEGER:
		return "an integer";
	case KANAL__JSON_REAL:
		return "a real number";
	case KANAL__JSON_TRUE:
	case KANAL__JSON_FALSE:
		return "a boolean";
	case KANAL__JSON_NULL:
		return "null";
	case KANAL__JSON_OBJECT:
		return "an object";
	case KANAL__JSON_ARRAY:
		return "an array";
	}
	return "a JSON value";
}

/* Reports an attribute error located at member m (or nowhere, for a missing one). */
static int s_attr_error(parse_t *p, const member_t *m, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int s_attr_error(parse_t *p, const member_t *m, const char *name, const char *fmt, ...)
{
	char text[256];
	int line = 0, col = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (m)
		kanal__json_line_col(p->scan.text, p->scan.len, m->start, &line, &col);
	kanal__msg_error(p->err, EVENT_SOURCE, line, col, name, strlen(name), "%s", text);
	return KANAL_EINVALID;
}

static int s_member_cmp(const void *a, const void *b)
{
	const member_t *x = *(const member_t *const *)a, *y = *(const member_t *const *)b;
	int c = memcmp(x->name, y->name, x->name_len < y->name_len ? x->name_len : y->name_len);

	if (c)
		return c;
	return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

/* Rejects a member name that occurs twice, naming it and pointing at its second
 * occurrence. Sorting keeps this O(n log n) however many members a hostile event has. */
static int s_check_duplicates(parse_t *p)
{
	member_t **sorted;
	const member_t *dup = NULL;
	size_t i, seen = 0;
	int rc = 0;

	if (p->n < 2)
		return 0;
	sorted = malloc(p->n * sizeof *sorted);
	if (!sorted)
		return s_error_at(p, KANAL_ENOMEM, 0, NULL, 0, "out of memory");
	for (i = 0; i < p->n; i++)
		sorted[i] = &p->members[i];
	qsort(sorted, p->n, sizeof *sorted, s_member_cmp);
	for (i = 1; i < p->n && !dup; i++) {
		if (s_member_cmp(&sorted[i - 1], &sorted[i]) == 0)
			dup = sorted[i];
	}
	free(sorted);
	if (!dup)
		return 0;
	for (i = 0; i < p->n; i++) {
		const member_t *m = &p->members[i];
		if (m->name_len == dup->name_len && memcmp(m->name, dup->name, m->name_len) == 0 &&
		    ++seen == 2) {
			int line, col;
			kanal__json_line_col(p->scan.text, p->scan.len, m->start, &line, &col);
			kanal__msg_error(p->err, EVENT_SOURCE, line, col, m->name, m->name_len,
					 "appears more than once in the event");
			rc = KANAL_EINVALID;
			break;
		}
	}
	return rc;
}

/* Checks a core string attribute (or specversion). A JSON null means absent. */
static int s_check_core(parse_t *p, int index, const member_t *m)
{
	const char *name = kanal__msg_core_name(index);
	bool required = index == MSG_SPECVERSION || index == MSG_ID || index == MSG_SOURCE ||
			index == MSG_TYPE;
	const char *why;

	if (!m || m->kind == KANAL__JSON_NULL) {
		if (!required)
			return 0;
		return s_attr_error(p, m, name, "%s",
				    m ? "required, but null" : "required, but missing");
	}
	if (m->kind != KANAL__JSON_STRING)
		return s_attr_error(p, m, name, "must be a string, not %s", s_kind_name(m->kind));
	why = kanal__msg_check_core(index, m->str, m->str_len);
	if (why)
		return s_attr_error(p, m, name, "%s", why);
	return 0;
}

/* Checks `data` and `data_base64`: never both, and data_base64 a base64 string. */
static int s_check_data(parse_t *p, const member_t *data, const member_t *b64)
{
	const char *why;

	if (data && data->kind == KANAL__JSON_NULL)
		data = NULL;
	if (!b64 || b64->kind == KANAL__JSON_NULL)
		return 0;
	if (data)
		return s_attr_error(p, b64, "data_base64",
				    "an event carries 'data' or 'data_base64', never both");
	if (b64->kind != KANAL__JSON_STRING)
		return s_attr_error(p, b64, "data_base64", "must be a string, not %s",
				    s_kind_name(b64->kind));
	why = kanal__msg_check_base64(b64->str, b64->str_len);
	if (why)
		return s_attr_error(p, b64, "data_base64", "%s", why);
	return 0;
}

/* Checks one extension member; on success stores its kind and canonical text in *kind and
 * *text (a new string; NULL for a JSON null, which means absent). */
static int s_check_ext(parse_t *p, member_t *m, msg_ext_kind_t *kind, char **text, size_t *text_len)
{
	const char *why = kanal__msg_check_ext_name(m->name, m->name_len);
	char num[32];
	long long v;
	size_t n;

	*text = NULL;
	if (why) {
		int line, col;
		kanal__json_line_col(p->scan.text, p->scan.len, m->start, &line, &col);
		kanal__msg_error(p->err, EVENT_SOURCE, line, col, m->name, m->name_len, "%s", why);
		return KANAL_EINVALID;
	}
	switch (m->kind) {
	case KANAL__JSON_NULL:
		return 0;
	case KANAL__JSON_STRING:
		if ((why = kanal__msg_check_string(m->str, m->str_len)))
			return s_attr_error(p, m, m->name, "%s", why);
		*kind = MSG_EXT_STRING;
		*text = m->str;
		*text_len = m->str_len;
		m->str = NULL;
		return 0;
	case KANAL__JSON_TRUE:
	case KANAL__JSON_FALSE:
		*kind = MSG_EXT_BOOL;
		*text = strdup(m->kind == KANAL__JSON_TRUE ? "true" : "false");
		break;
	case KANAL__JSON_INTEGER:
		/* The scanner has bounded it to 64 bits, so it fits the buffer. */
		n = m->end - m->start;
		if (n >= sizeof num)
			return s_attr_error(p, m, m->name, "integer out of the 32-bit range");
		memcpy(num, p->scan.text + m->start, n);
		num[n] = '\0';
		v = strtoll(num, NULL, 10);
		if (v < INT32_MIN || v > INT32_MAX)
			return s_attr_error(p, m, m->name, "integer out of the 32-bit range");
		snprintf(num, sizeof num, "%lld", v);
		*kind = MSG_EXT_INT;
		*text = strdup(num);
		break;
	default:
		return s_attr_error(p, m, m->name,
				    "an extension value must be a string, a boolean or an integer, "
				    "not %s",
				    s_kind_name(m->kind));
	}
	if (!*text)
		return s_error_at(p, KANAL_ENOMEM, m->start, NULL, 0, "out of memory");
	*text_len = strlen(*text);
	return 0;
}

/* The build step: validates the scanned members and makes the message. */
static int s_build(parse_t *p, kanal_msg_t **out)
{
	member_t *core[MSG_NCORE] = { 0 };
	member_t *spec = NULL, *data = NULL, *b64 = NULL;
	kanal_msg_t *msg = NULL;
	size_t i;
	int rc, index;

	rc = s_check_duplicates(p);
	if (rc)
		return rc;
	for (i = 0; i < p->n; i++) {
		member_t *m = &p->members[i];
		index = kanal__msg_core_index(m->name, m->name_len);
		if (index == MSG_SPECVERSION)
			spec = m;
		else if (index < MSG_NCORE)
			core[index] = m;
		else if (m->name_len == 4 && memcmp(m->name, "data", 4) == 0)
			data = m;
		else if (m->name_len == 11 && memcmp(m->name, "data_base64", 11) == 0)
			b64 = m;
	}
	rc = s_check_core(p, MSG_SPECVERSION, spec);
	for (index = 0; index < MSG_NCORE && !rc; index++)
		rc = s_check_core(p, index, core[index]);
	if (!rc)
		rc = s_check_data(p, data, b64);
	if (rc)
		return rc;

	/* The data text goes inside the message's own allocation. */
	msg = kanal__msg_alloc(data && data->kind != KANAL__JSON_NULL ? data->end - data->start + 1
								      : 0);
	if (!msg)
		return s_error_at(p, KANAL_ENOMEM, 0, NULL, 0, "out of memory");
	for (i = 0; i < p->n; i++) {
		member_t *m = &p->members[i];
		msg_ext_kind_t kind = MSG_EXT_STRING;
		size_t text_len = 0;
		char *text;

		if (m == spec || m == data || m == b64 ||
		    kanal__msg_core_index(m->name, m->name_len) < MSG_NCORE)
			continue;
		rc = s_check_ext(p, m, &kind, &text, &text_len);
		if (rc)
			goto fail;
		if (text && kanal__msg_ext_put(msg, m->name, m->name_len, text, text_len, kind)) {
			rc = s_error_at(p, KANAL_ENOMEM, m->start, NULL, 0, "out of memory");
			goto fail;
		}
	}
	for (index = 0; index < MSG_NCORE; index++) {
		if (core[index] && core[index]->kind == KANAL__JSON_STRING) {
			msg->core[index] = core[index]->str;
			msg->core_len[index] = (uint32_t)core[index]->str_len;
			core[index]->str = NULL;
		}
	}
	if (data && data->kind != KANAL__JSON_NULL) {
		size_t n = data->end - data->start;
		msg->data_text = kanal__msg_str_dup(msg, p->scan.text + data->start, n);
		if (!msg->data_text) {
			rc = s_error_at(p, KANAL_ENOMEM, data->start, NULL, 0, "out of memory");
			goto fail;
		}
		msg->data_len = n;
		msg->data_kind = KANAL_DATA_JSON;
	} else if (b64 && b64->kind == KANAL__JSON_STRING) {
		msg->data_text = b64->str;
		msg->data_len = b64->str_len;
		b64->str = NULL;
		msg->data_kind = KANAL_DATA_BINARY;
	}
	*out = msg;
	return 0;
fail:
	kanal_msg_destroy(&msg);
	return rc;
}

/* Scans and builds the event at the cursor (the cursor ends just past it). */
static int s_parse_one(parse_t *p, kanal_msg_t **out, bool whole_text)
{
	int rc = s_scan_object(p);

	if (!rc && whole_text) {
		kanal__json_ws(&p->scan);
		if (p->scan.pos != p->scan.len)
			rc = s_error_at(p, KANAL_EPARSE, p->scan.pos, NULL, 0,
					"unexpected text after the event object");
	}
	if (!rc)
		rc = s_build(p, out);
	s_members_free(p);
	return rc;
}

/* Skips a UTF-8 byte order mark, which some producers put before JSON text. */
static void s_skip_bom(kanal__json_scan_t *s)
{
	if (s->len >= 3 && memcmp(s->text, "\xEF\xBB\xBF", 3) == 0)
		s->pos = 3;
}

static int s_too_big(kanal_error_t *err, const char *what, size_t len, size_t limit)
{
	kanal_error_set(err, EVENT_SOURCE, 0, 0, NULL,
			"%s is %zu bytes, more than the limit of %zu bytes", what, len, limit);
	return KANAL_ETOOBIG;
}

int kanal_msg_parse(const char *json, size_t len, size_t max_bytes, kanal_msg_t **out,
		    kanal_error_t *err)
{
	size_t limit = max_bytes ? max_bytes : KANAL_MSG_DEFAULT_MAX_BYTES;
	parse_t p = { .err = err };

	if (out)
		*out = NULL;
	if (!out || (!json && len)) {
		kanal_error_set(err, NULL, 0, 0, NULL, "kanal_msg_parse: no text or no result");
		return KANAL_EINVAL;
	}
	if (len > limit)
		return s_too_big(err, "the event", len, limit);
	kanal__json_init(&p.scan, json ? json : "", len);
	s_skip_bom(&p.scan);
	return s_parse_one(&p, out, true);
}

/* Appends msg to the batch, taking it. */
static int s_batch_add(kanal_batch_t *batch, size_t *cap, kanal_msg_t *msg)
{
	if (batch->count == *cap) {
		size_t grown_cap = *cap ? *cap * 2 : 8;
		kanal_msg_t **grown = realloc(batch->msgs, grown_cap * sizeof *grown);
		if (!grown) {
			kanal_msg_destroy(&msg);
			return KANAL_ENOMEM;
		}
		batch->msgs = grown;
		*cap = grown_cap;
	}
	batch->msgs[batch->count++] = msg;
	return 0;
}

/* Copies an element's error into err with the prefix "event #N: ". */
static void s_batch_error(kanal_error_t *err, size_t index, const kanal_error_t *element)
{
	kanal_error_set(err, element->source, element->line, element->column,
			element->attribute[0] ? element->attribute : NULL, "event #%zu: %s", index,
			element->text);
}

int kanal_batch_parse(const char *json, size_t len, size_t max_bytes, kanal_batch_t **out,
		      kanal_error_t *err)
{
	size_t limit = max_bytes ? max_bytes : 64 * (size_t)KANAL_MSG_DEFAULT_MAX_BYTES;
	kanal_batch_t *batch = NULL;
	kanal_error_t element_err;
	parse_t p = { .err = err };
	size_t cap = 0;
	int rc = 0, c;

	if (out)
		*out = NULL;
	if (!out || (!json && len)) {
		kanal_error_set(err, NULL, 0, 0, NULL, "kanal_batch_parse: no text or no result");
		return KANAL_EINVAL;
	}
	if (len > limit)
		return s_too_big(err, "the batch", len, limit);
	kanal__json_init(&p.scan, json ? json : "", len);
	s_skip_bom(&p.scan);
	kanal__json_ws(&p.scan);
	if (kanal__json_peek(&p.scan) != '[')
		return s_error_at(&p, KANAL_EPARSE, p.scan.pos, NULL, 0,
				  "not a JSON array (a batch is an array of events)");
	p.scan.pos++;
	batch = calloc(1, sizeof *batch);
	if (!batch)
		return s_error_at(&p, KANAL_ENOMEM, 0, NULL, 0, "out of memory");
	kanal__json_ws(&p.scan);
	if (kanal__json_peek(&p.scan) == ']') {
		p.scan.pos++;
		goto end;
	}
	for (;;) {
		kanal_msg_t *msg = NULL;

		kanal_error_clear(&element_err);
		p.err = &element_err;
		rc = s_parse_one(&p, &msg, false);
		p.err = err;
		if (rc) {
			s_batch_error(err, batch->count, &element_err);
			goto fail;
		}
		rc = s_batch_add(batch, &cap, msg);
		if (rc) {
			s_error_at(&p, rc, p.scan.pos, NULL, 0, "out of memory");
			goto fail;
		}
		kanal__json_ws(&p.scan);
		c = kanal__json_peek(&p.scan);
		p.scan.pos++;
		if (c == ']')
			break;
		if (c != ',') {
			char what[96];
			snprintf(what, sizeof what, "expected ',' or ']' after event #%zu",
				 batch->count - 1);
			rc = s_error_at(&p, KANAL_EPARSE, p.scan.pos - 1, NULL, 0, what);
			goto fail;
		}
	}
end:
	kanal__json_ws(&p.scan);
	if (p.scan.pos != p.scan.len) {
		rc = s_error_at(&p, KANAL_EPARSE, p.scan.pos, NULL, 0,
				"unexpected text after the batch array");
		goto fail;
	}
	*out = batch;
	return 0;
fail:
	kanal_batch_destroy(&batch);
	return rc;
}

void kanal_batch_destroy(kanal_batch_t **batch_p)
{
	kanal_batch_t *batch;
	size_t i;

	if (!batch_p || !*batch_p)
		return;
	batch = *batch_p;
	*batch_p = NULL;
	for (i = 0; i < batch->count; i++)
		kanal_msg_destroy(&batch->msgs[i]);
	free(batch->msgs);
	free(batch);
}

bool kanal_json_is_batch(const char *json, size_t len)
{
	kanal__json_scan_t s;

	if (!json)
		return false;
	kanal__json_init(&s, json, len);
	s_skip_bom(&s);
	kanal__json_ws(&s);
	return kanal__json_peek(&s) == '[';
}

/* The SDK 1.0 signature (int: 1 or 0), kept under its old symbol for plugins built against
 * it: a caller of the int version reads all of eax, where a bool fills only al. */
int kanal__json_is_batch_v1_0(const char *json, size_t len) __asm__("kanal_json_is_batch")
	__attribute__((visibility("default")));
int kanal__json_is_batch_v1_0(const char *json, size_t len)
{
	return kanal_json_is_batch(json, len) ? 1 : 0;
}
