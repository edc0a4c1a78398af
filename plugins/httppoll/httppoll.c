/*
 * plugins/httppoll/httppoll.c — the `httppoll` connector: polls a JSON REST endpoint on an
 * interval and emits one event per item, configured rather than coded (docs/plugins/
 * httppoll.md). Each poll GETs `url` with the cursor as a query argument, takes the items
 * from the answer by a JSON pointer, maps each item to an event by JSON pointers (id,
 * type, subject, time, data) or by a jq `map:` program (the sandboxed runner of
 * plugins/common/kc_jq.h, as routes' transforms run), emits them, waits until the bus holds them durably
 * (kanal_emit_flush) and only then persists the new cursor — read from the answer by
 * another JSON pointer, or from a response header — in the instance's state folder. Pages
 * follow one another at once while the answer says there are more, or, with next-link
 * paging, while it links to a next page (a `Link: <…>; rel="next"` header or a URL in the
 * body), which is followed only on the endpoint's own origin. A crash between the flush and
 * the cursor write makes the next run read the page again; kanald drops the replays as
 * duplicates because an event's id is the item's own id.
 *
 * An upstream error (no answer, a timeout, a non-2xx status, an answer that is not JSON or
 * has no item list) keeps the cursor where it was, is logged and counted
 * (upstream_errors), and the next poll waits twice as long as the last, up to max_backoff,
 * or as long as the upstream's Retry-After asks. An item without a usable id or type is
 * skipped with a warning naming its place and counted (skipped); the ones after it go on.
 * Every callback runs on the instance's own thread, so nothing here takes a lock.
 */
#include "../common/kc_files.h"
#include "../common/kc_http.h"
#include "../common/kc_jq.h"
#include "../common/kc_url.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <kanal/kanal.h>

#define HP_CURSOR_FILE "cursor"
#define HP_MAX_PAGES 20 /* pages per poll before yielding the thread */
#define HP_FLUSH_TIMEOUT_MS 10000
#define HP_BUSY_WAIT_MS 500 /* the bus was busy: try again soon */
#define HP_MAX_CURSOR 512
#define HP_MAX_URL 4096

typedef struct httppoll {
	/* bound options */
	const char *url;
	const char *cursor_param;
	const char *items_pointer;
	const char *cursor_pointer;
	const char *cursor_header;
	const char *more_pointer;
	const char *next_link_pointer;
	bool next_link_header;
	const char *id_pointer;
	const char *type;
	const char *type_pointer;
	const char *subject_pointer;
	const char *time_pointer;
	const char *data_pointer;
	const char *start_cursor;
	const char *map;
	int64_t poll_interval_ms;
	int64_t max_backoff_ms;
	int64_t page_size;
	kc_http_conf_t http_conf;
	/* running state */
	const char *instance;
	kc_http_t *http;
	kc_jq_t *map_jq;  /* the compiled `map`, or NULL */
	char *cursor;     /* the last persisted cursor, or NULL: the beginning */
	char *next_url;   /* next-link paging: the page to ask for next, or NULL: the first */
	char origin[300]; /* scheme://host[:port] of url, lower case, no default port */
	int64_t timer;
	int64_t backoff_ms;
	int64_t retry_after_ms; /* the upstream's Retry-After for the next wait, or -1 */
	int64_t errors_in_row;
	bool stopped;
} httppoll_t;

#define OPT_PTR(opt, member, def, text)                                                            \
	{                                                                                          \
		.name = opt, .type = KANAL_OPT_STRING, .default_value = def,                       \
		KANAL_OPT_AT(httppoll_t, member), .help = text                                     \
	}

static const kanal_option_t s_options[] = {
	{ .name = "url",
	  .type = KANAL_OPT_STRING,
	  .required = true,
	  KANAL_OPT_AT(httppoll_t, url),
	  .help = "The endpoint to poll, e.g. https://api.example.dk/v1/items (https, or http to "
		  "this machine unless allow_plain_http)." },
	OPT_PTR("cursor_param", cursor_param, "since",
		"Query argument that carries the cursor (omitted while there is none)."),
	{ .name = "start_cursor",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(httppoll_t, start_cursor),
	  .help = "Cursor of the first poll, when none is persisted yet (default: none)." },
	OPT_PTR("items_pointer", items_pointer, "/items",
		"JSON pointer to the answer's array of items (\"\": the answer is the array)."),
	OPT_PTR("cursor_pointer", cursor_pointer, "/next",
		"JSON pointer to the next cursor in the answer (a string or number; null or "
		"missing keeps the cursor)."),
	{ .name = "cursor_header",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(httppoll_t, cursor_header),
	  .help = "Response header holding the next cursor (e.g. X-Next-Cursor), instead of "
		  "cursor_pointer; a missing header keeps the cursor." },
	{ .name = "next_link_header",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "false",
	  KANAL_OPT_AT(httppoll_t, next_link_header),
	  .help = "Page by the answer's 'Link: <URL>; rel=\"next\"' header: the next page is "
		  "that URL (on url's own origin only), the last has none." },
	{ .name = "next_link_pointer",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(httppoll_t, next_link_pointer),
	  .help = "JSON pointer to the next page's URL in the answer (on url's own origin only; "
		  "null or missing: the last page), instead of more_pointer." },
	OPT_PTR("more_pointer", more_pointer, "/has_more",
		"JSON pointer to a boolean saying more pages follow; when missing, a full page "
		"(page_size items) means more."),
	OPT_PTR("id_pointer", id_pointer, "/id",
		"JSON pointer to the item's id (a string or number): the event's id."),
	{ .name = "type",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(httppoll_t, type),
	  .help = "The events' type, e.g. vendor.item.changed (or type_pointer)." },
	{ .name = "type_pointer",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(httppoll_t, type_pointer),
	  .help = "JSON pointer to the item's type (a string), instead of a fixed type." },
	{ .name = "subject_pointer",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(httppoll_t, subject_pointer),
	  .help = "JSON pointer to the event's subject (default: none)." },
	{ .name = "time_pointer",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(httppoll_t, time_pointer),
	  .help = "JSON pointer to the event's time, an RFC 3339 time (default: none)." },
	OPT_PTR("data_pointer", data_pointer, "",
		"JSON pointer to the event's data within the item (\"\": the whole item)."),
	{ .name = "map",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(httppoll_t, map),
	  .help = "A jq program run on each item (`.`; $cursor is the page's cursor) whose output "
		  "object gives the event's id, type, subject, time and data, instead of the "
		  "pointers (a missing id or type comes from id_pointer and type/type_pointer)." },
	{ .name = "poll_interval",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "30s",
	  .min = "1ms",
	  KANAL_OPT_AT(httppoll_t, poll_interval_ms),
	  .help = "Time between two polls." },
	{ .name = "max_backoff",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "5m",
	  .min = "1ms",
	  KANAL_OPT_AT(httppoll_t, max_backoff_ms),
	  .help = "Longest wait between polls while the upstream fails (the wait doubles from "
		  "poll_interval)." },
	{ .name = "page_size",
	  .type = KANAL_OPT_INT,
	  .default_value = "100",
	  .min = "1",
	  .max = "10000",
	  KANAL_OPT_AT(httppoll_t, page_size),
	  .help = "Items asked for per request, sent as the query argument limit." },
	KC_HTTP_OPT_TIMEOUT(httppoll_t, http_conf, "10s",
			    "The longest one HTTP call to the upstream may take."),
	KC_HTTP_OPT_CA_FILE(httppoll_t, http_conf),
	KC_HTTP_OPT_CLIENT_CERT(httppoll_t, http_conf),
	KC_HTTP_OPT_TOKEN(httppoll_t, http_conf),
	KC_HTTP_OPT_BASIC_AUTH(httppoll_t, http_conf),
	KC_URL_OPT_ALLOW_PLAIN_HTTP(httppoll_t, http_conf.allow_plain_http),
	{ .name = NULL },
};

/* ---- JSON pointers ------------------------------------------------------------------------ */

/* True when p is a JSON pointer (RFC 6901): "" or "/…" with only ~0 and ~1 escapes. */
static bool s_pointer_ok(const char *p)
{
	if (!*p)
		return true;
	if (*p != '/')
		return false;
	for (; *p; p++)
		if (*p == '~' && p[1] != '0' && p[1] != '1')
			return false;
	return true;
}

/* The value `pointer` names in v (borrowed), or NULL. Array indexes are decimal. */
static json_t *s_pointer_get(json_t *v, const char *pointer)
{
	char token[256];

	while (v && *pointer == '/') {
		size_t n = 0;
		pointer++;
		for (; *pointer && *pointer != '/'; pointer++) {
			char c = *pointer;
			if (c == '~') {
				c = pointer[1] == '1' ? '/' : '~';
				pointer++;
			}
			if (n + 1 >= sizeof token)
				return NULL;
			token[n++] = c;
		}
		token[n] = '\0';
		if (json_is_object(v)) {
			v = json_object_get(v, token);
		} else if (json_is_array(v) && n > 0 && strspn(token, "0123456789") == n) {
			v = json_array_get(v, strtoul(token, NULL, 10));
		} else {
			return NULL;
		}
	}
	return v;
}

/* A string or an integer at pointer as text in buf, or NULL. */
static const char *s_pointer_text(json_t *item, const char *pointer, char *buf, size_t size)
{
	json_t *v = pointer ? s_pointer_get(item, pointer) : NULL;

	if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < size)
		return json_string_value(v);
	if (json_is_integer(v)) {
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	}
	return NULL;
}

/* ---- mapping ----------------------------------------------------------------------------- */

/* The event the `map` program makes of one item, or NULL with why in buf. */
static kanal_msg_t *s_jq_item(httppoll_t *h, json_t *item, const char *id, const char *type,
			      char *why, size_t size)
{
	kc_jq_event_defaults_t def = { .type = type, .source = h->instance, .id = id };
	char *text = json_dumps(item, JSON_COMPACT | JSON_ENCODE_ANY);
	kanal_msg_t *msg = NULL;
	kanal_error_t err;

	kanal_error_clear(&err);
	if (!text) {
		snprintf(why, size, "out of memory");
		return NULL;
	}
	if (kc_jq_map_event(h->map_jq, text, h->cursor ? jv_string(h->cursor) : jv_null(), &def,
			    &msg, &err) != 0)
		snprintf(why, size, "%.290s", err.text);
	free(text);
	return msg;
}

/* The event for one item, or NULL with why in buf. */
static kanal_msg_t *s_map_item(httppoll_t *h, json_t *item, char *why, size_t size)
{
	char idbuf[32], typebuf[32], subjbuf[32];
	const char *id = s_pointer_text(item, h->id_pointer, idbuf, 200);
	const char *type =
		h->type_pointer ? s_pointer_text(item, h->type_pointer, typebuf, 200) : h->type;
	const char *subject = s_pointer_text(item, h->subject_pointer, subjbuf, 200);
	json_t *time = h->time_pointer ? s_pointer_get(item, h->time_pointer) : NULL;
	json_t *data = s_pointer_get(item, h->data_pointer);
	kanal_msg_t *msg;
	char *text;
	int rc;

	if (h->map_jq)
		return s_jq_item(h, item, id, type, why, size);
	if (!id) {
		snprintf(why, size, "no id at '%s' (a string or number of 1-199 characters)",
			 h->id_pointer);
		return NULL;
	}
	if (!type) {
		snprintf(why, size, "item %.80s has no type at '%s'", id, h->type_pointer);
		return NULL;
	}
	if (!(msg = kanal_msg_new(type, h->instance, id))) {
		snprintf(why, size, "item %.80s: '%.80s' is not a valid event type", id, type);
		return NULL;
	}
	if (data && !json_is_null(data)) {
		text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
		rc = text ? kanal_msg_set_data_json(msg, text, strlen(text)) : KANAL_ENOMEM;
		free(text);
		if (rc != 0) {
			snprintf(why, size, "item %.80s: its data is refused: %s", id,
				 kanal_strerror(rc));
			kanal_msg_destroy(&msg);
			return NULL;
		}
	}
	if (subject && kanal_msg_set_attr(msg, "subject", subject, NULL) != 0) {
		snprintf(why, size, "item %.80s: its subject is refused", id);
		kanal_msg_destroy(&msg);
		return NULL;
	}
	if (h->time_pointer && json_is_string(time) &&
	    kanal_msg_set_attr(msg, "time", json_string_value(time), NULL) != 0) {
		snprintf(why, size, "item %.80s: its time is not an RFC 3339 time", id);
		kanal_msg_destroy(&msg);
		return NULL;
	}
	return msg;
}

/* ---- next links ------------------------------------------------------------------------------ */

static bool s_link_paging(const httppoll_t *h)
{
	return h->next_link_header || h->next_link_pointer;
}

/* Writes the origin of an absolute http(s) URL — "scheme://host[:port]", lower case, a
 * default port left out — into buf. Returns false when url is not such a URL with a host
 * (or has user info). */
static bool s_origin(const char *url, char *buf, size_t size)
{
	bool https = !strncasecmp(url, "https://", 8);
	const char *rest = url + (https ? 8 : 7), *port = https ? ":443" : ":80";
	size_t auth, n;

	if (!https && strncasecmp(url, "http://", 7))
		return false;
	auth = strcspn(rest, "/?#");
	if (auth == 0 || memchr(rest, '@', auth) ||
	    (size_t)snprintf(buf, size, "%s://%.*s", https ? "https" : "http", (int)auth, rest) >=
		    size)
		return false;
	for (char *c = buf; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	n = strlen(buf);
	if (n > strlen(port) && !strcmp(buf + n - strlen(port), port))
		buf[n - strlen(port)] = '\0';
	return true;
}

/* The URL of the rel="next" entry of a Link header value ("<URL>; rel=\"next\", …"; a rel
 * may list several relations) into buf. Returns false when there is none (or it does not
 * fit). */
static bool s_link_next(const char *value, char *buf, size_t size)
{
	const char *p = value, *lt, *gt, *end;

	while ((lt = strchr(p, '<')) && (gt = strchr(lt, '>'))) {
		end = strchr(gt, '<');
		end = end ? end : gt + strlen(gt);
		for (const char *q = gt + 1; q + 4 <= end; q++) {
			bool quoted;
			if (strncasecmp(q, "rel=", 4) || (q[-1] != ';' && q[-1] != ' '))
				continue;
			q += 4;
			quoted = *q == '"';
			q += quoted;
			while (q < end && *q != '"' && *q != ';' && *q != ',' &&
			       (quoted || *q != ' ')) {
				size_t n = strcspn(q, quoted ? "\" ;," : " ;,\"");
				if (n == 4 && !strncasecmp(q, "next", 4)) {
					if ((size_t)(gt - lt - 1) >= size)
						return false;
					snprintf(buf, size, "%.*s", (int)(gt - lt - 1), lt + 1);
					return true;
				}
				q += n;
				while (q < end && *q == ' ' && quoted)
					q++;
			}
			break;
		}
		p = end;
	}
	return false;
}

/* The URL a next link names: an absolute URL on url's own origin, or an absolute path ("/…")
 * taken on it. Returns a new string, or NULL with why in buf (naming the link's origin,
 * never the whole link: it may carry a token). */
static char *s_next_url(const httppoll_t *h, const char *link, char *why, size_t size)
{
	char origin[300], *out = NULL;

	for (const char *c = link; *c; c++) {
		if ((unsigned char)*c <= ' ' || *c == 0x7f) {
			snprintf(why, size, "it holds a blank or a control character");
			return NULL;
		}
	}
	if (strlen(link) > HP_MAX_URL) {
		snprintf(why, size, "it is longer than %d bytes", HP_MAX_URL);
	} else if (link[0] == '/' && link[1] != '/') {
		if (asprintf(&out, "%s%s", h->origin, link) < 0)
			out = NULL;
		if (!out)
			snprintf(why, size, "out of memory");
	} else if (!s_origin(link, origin, sizeof origin)) {
		snprintf(why, size, "it is neither an http(s) URL nor a path");
	} else if (strcmp(origin, h->origin)) {
		snprintf(why, size, "it points to another host (%.120s), not %.120s", origin,
			 h->origin);
	} else if (!(out = strdup(link))) {
		snprintf(why, size, "out of memory");
	}
	return out;
}

/* ---- the cursor ---------------------------------------------------------------------------- */

static int s_load_cursor(kanal_ctx_t *ctx, httppoll_t *h)
{
	char *text = NULL;
	kanal_error_t err;
	int rc;

	kanal_error_clear(&err);
	rc = kanal_state_get(ctx, HP_CURSOR_FILE, &text, &err);
	if (rc == KANAL_ENOTFOUND) {
		if (h->start_cursor && *h->start_cursor && !(h->cursor = strdup(h->start_cursor)))
			return KANAL_ENOMEM;
		return 0;
	}
	if (rc != 0) {
		kanal_set_error(ctx, "cannot read the cursor: %s",
				err.text[0] ? err.text : kanal_strerror(rc));
		return rc;
	}
	text[strcspn(text, "\r\n")] = '\0';
	if (*text)
		h->cursor = text;
	else
		free(text);
	return 0;
}

/* Persists the cursor, once the events before it are durable. */
static void s_save_cursor(kanal_ctx_t *ctx, httppoll_t *h, const char *cursor)
{
	char line[HP_MAX_CURSOR + 2];
	char *copy;
	kanal_error_t err;
	int rc;

	if (!cursor || (h->cursor && !strcmp(h->cursor, cursor)))
		return;
	snprintf(line, sizeof line, "%s\n", cursor);
	kanal_error_clear(&err);
	rc = kanal_state_put(ctx, HP_CURSOR_FILE, line, &err);
	if (rc != 0)
		/* Polling goes on from memory; after a restart the pages since the last cursor
		 * written are read again and kanald drops them as duplicates. */
		kanal_log(ctx, KANAL_LOG_ERROR, "cannot write the cursor: %s",
			  err.text[0] ? err.text : kanal_strerror(rc));
	if ((copy = strdup(cursor))) {
		free(h->cursor);
		h->cursor = copy;
	}
}

/* ---- polling ------------------------------------------------------------------------------- */

typedef enum { PAGE_DONE, PAGE_MORE, PAGE_FAILED, PAGE_BUSY, PAGE_CLOSED } page_result_t;

/* Notes one failed call: logs it, counts it and lengthens the wait before the next. */
static void s_upstream_error(kanal_ctx_t *ctx, httppoll_t *h, const char *why)
{
	h->errors_in_row++;
	h->backoff_ms = h->backoff_ms ? h->backoff_ms * 2 : h->poll_interval_ms;
	if (h->backoff_ms > h->max_backoff_ms)
		h->backoff_ms = h->max_backoff_ms;
	kanal_metric_add(ctx, "upstream_errors", 1);
	kanal_log(ctx, KANAL_LOG_ERROR,
		  "upstream error: %s (%" PRId64 " in a row; next poll in "
		  "%" PRId64 " ms; cursor %s kept)",
		  why, h->errors_in_row,
		  h->retry_after_ms > h->backoff_ms ? h->retry_after_ms : h->backoff_ms,
		  h->cursor ? h->cursor : "(none)");
}

/* The URL of the next page: url, then cursor_param=<cursor> (percent-encoded) and
 * limit=<page_size>. NULL when out of memory. */
static char *s_page_url(const httppoll_t *h)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t cap = strlen(h->url) + strlen(h->cursor_param) +
		     (h->cursor ? strlen(h->cursor) * 3 : 0) + 48;
	char *url = malloc(cap), *o;

	if (!url)
		return NULL;
	o = url + sprintf(url, "%s%climit=%" PRId64, h->url, strchr(h->url, '?') ? '&' : '?',
			  h->page_size);
	if (h->cursor && *h->cursor_param) {
		o += sprintf(o, "&%s=", h->cursor_param);
		for (const unsigned char *p = (const unsigned char *)h->cursor; *p; p++) {
			if (isalnum(*p) || strchr("-._~", *p)) {
				*o++ = (char)*p;
			} else {
				*o++ = '%';
				*o++ = hex[*p >> 4];
				*o++ = hex[*p & 15];
			}
		}
		*o = '\0';
	}
	return url;
}

/* Emits the items in order; stops at the first the bus does not take (BUSY, CLOSED). */
static page_result_t s_emit_items(kanal_ctx_t *ctx, httppoll_t *h, json_t *items, int64_t *handled)
{
	json_t *item;
	size_t i;

	json_array_foreach(items, i, item)
	{
		char why[300];
		kanal_msg_t *msg = s_map_item(h, item, why, sizeof why);
		int rc;

		if (!msg) {
			kanal_log(ctx, KANAL_LOG_WARN, "item #%zu after cursor %s skipped: %s",
				  i + 1, h->cursor ? h->cursor : "(none)", why);
			kanal_metric_add(ctx, "skipped", 1);
			continue;
		}
		rc = kanal_emit(ctx, &msg);
		if (rc == KANAL_ECLOSED)
			return PAGE_CLOSED;
		if (rc == KANAL_EBUSY || rc == KANAL_ENOMEM || rc == KANAL_ETIMEDOUT)
			return PAGE_BUSY;
		if (rc != 0) {
			kanal_log(ctx, KANAL_LOG_WARN,
				  "item #%zu after cursor %s skipped: the bus "
				  "refused its event: %s",
				  i + 1, h->cursor ? h->cursor : "(none)", kanal_strerror(rc));
			kanal_metric_add(ctx, "skipped", 1);
			continue;
		}
		kanal_metric_add(ctx, "emitted", 1);
		(*handled)++;
	}
	return PAGE_DONE;
}

/* Next-link paging, after a page's events are durable: a page the bus took whole moves on
 * to its next link (PAGE_MORE) or, without one, ends the poll; a link off url's origin is
 * refused, logged and counted (next_links_refused) as an upstream error, so the next poll
 * starts again from the cursor. Releases page. */
static page_result_t s_follow(kanal_ctx_t *ctx, httppoll_t *h, json_t *page, page_result_t r,
			      const char *next_link, const char *what)
{
	char why[300], cause[1024];
	char *next_url;

	json_decref(page);
	if (r != PAGE_DONE)
		return r; /* this page again (h->next_url unchanged) */
	free(h->next_url);
	h->next_url = NULL;
	if (!next_link)
		return PAGE_DONE;
	if (!(next_url = s_next_url(h, next_link, why, sizeof why))) {
		kanal_metric_add(ctx, "next_links_refused", 1);
		snprintf(cause, sizeof cause, "%s: next link refused: %s", what, why);
		s_upstream_error(ctx, h, cause);
		return PAGE_FAILED;
	}
	h->next_url = next_url;
	return PAGE_MORE;
}

/* Fetches and handles one page. */
static page_result_t s_poll_page(kanal_ctx_t *ctx, httppoll_t *h)
{
	const char *headers[] = { "Accept: application/json", NULL };
	char what[HP_MAX_CURSOR + 64], cause[1024], curbuf[HP_MAX_CURSOR + 1];
	char hdrcur[HP_MAX_CURSOR + 1], link[HP_MAX_URL + 1], linkhdr[HP_MAX_URL * 2];
	kc_response_t res;
	json_error_t jerr;
	json_t *page, *items, *more_v, *link_v;
	const char *next, *header_cursor = NULL, *next_link = NULL;
	char *url = h->next_url ? strdup(h->next_url) : s_page_url(h);
	page_result_t r;
	int64_t handled = 0;
	bool more;
	int rc;

	if (!url) {
		s_upstream_error(ctx, h, "out of memory");
		return PAGE_FAILED;
	}
	snprintf(what, sizeof what, "GET %s(cursor %s)", h->next_url ? "next page " : "",
		 h->cursor ? h->cursor : "none");
	kanal_metric_add(ctx, "polls", 1);
	rc = kc_http_request(h->http, "GET", url, headers, NULL, 0, &res);
	free(url);
	h->retry_after_ms = rc == 0 ? res.retry_after_ms : -1;
	if (rc != 0 || res.status < 200 || res.status > 299) {
		kc_http_describe(&res, what, cause, sizeof cause);
		s_upstream_error(ctx, h, cause);
		kc_response_clear(&res);
		return PAGE_FAILED;
	}
	/* The headers, before the client's next request. */
	if (h->cursor_header &&
	    kc_http_header(h->http, h->cursor_header, hdrcur, sizeof hdrcur) == 0 && *hdrcur)
		header_cursor = hdrcur;
	if (h->next_link_header && kc_http_header(h->http, "Link", linkhdr, sizeof linkhdr) == 0 &&
	    s_link_next(linkhdr, link, sizeof link))
		next_link = link;
	/* Never quote a 200's body: it may hold personal data. Say where it broke. */
	page = json_loadb(res.body, res.len, JSON_DECODE_ANY, &jerr);
	if (!page) {
		snprintf(cause, sizeof cause,
			 "%s: answer is not JSON (%zu bytes; broken at line %d, "
			 "column %d)",
			 what, res.len, jerr.line, jerr.column);
		kc_response_clear(&res);
		s_upstream_error(ctx, h, cause);
		return PAGE_FAILED;
	}
	kc_response_clear(&res);
	items = s_pointer_get(page, h->items_pointer);
	if (!json_is_array(items)) {
		snprintf(cause, sizeof cause, "%s: answer has no array at '%s'", what,
			 h->items_pointer);
		json_decref(page);
		s_upstream_error(ctx, h, cause);
		return PAGE_FAILED;
	}
	next = h->cursor_header ? header_cursor
				: s_pointer_text(page, h->cursor_pointer, curbuf, sizeof curbuf);
	link_v = h->next_link_pointer ? s_pointer_get(page, h->next_link_pointer) : NULL;
	if (json_is_string(link_v) && json_string_length(link_v) < sizeof link) {
		snprintf(link, sizeof link, "%s", json_string_value(link_v));
		next_link = link;
	}
	/* With next links the cursor is optional: the links page, the cursor only resumes. */
	if (json_array_size(items) > 0 && !next && !s_link_paging(h)) {
		snprintf(cause, sizeof cause, "%s: answer has items but no cursor %s '%s'", what,
			 h->cursor_header ? "in the header" : "at",
			 h->cursor_header ? h->cursor_header : h->cursor_pointer);
		json_decref(page);
		s_upstream_error(ctx, h, cause);
		return PAGE_FAILED;
	}
	if (h->errors_in_row)
		kanal_log(ctx, KANAL_LOG_INFO, "upstream answers again after %" PRId64 " errors",
			  h->errors_in_row);
	h->errors_in_row = 0;
	h->backoff_ms = 0;
	r = s_emit_items(ctx, h, items, &handled);
	if (handled > 0 && (rc = kanal_emit_flush(ctx, HP_FLUSH_TIMEOUT_MS)) != 0) {
		/* Not durable yet: keep the cursor and read the page again next time (kanald
		 * drops the replays it already holds). */
		kanal_log(ctx, KANAL_LOG_WARN,
			  "events after cursor %s are not durable yet (%s); "
			  "cursor kept",
			  h->cursor ? h->cursor : "(none)", kanal_strerror(rc));
		json_decref(page);
		return rc == KANAL_ECLOSED ? PAGE_CLOSED : PAGE_BUSY;
	}
	/* A page the bus took only in part is read again whole: its ids make the replays
	 * duplicates. */
	if (r == PAGE_DONE)
		s_save_cursor(ctx, h, next);
	if (s_link_paging(h))
		return s_follow(ctx, h, page, r, next_link, what);
	more_v = s_pointer_get(page, h->more_pointer);
	more = json_is_boolean(more_v) ? json_is_true(more_v)
				       : (int64_t)json_array_size(items) >= h->page_size;
	more = more && json_array_size(items) > 0;
	json_decref(page);
	return r == PAGE_DONE && more ? PAGE_MORE : r;
}

static int s_schedule(kanal_ctx_t *ctx, httppoll_t *h, int64_t after_ms);

/* The poll timer: pages until the upstream has no more (at most HP_MAX_PAGES per turn, so
 * the instance's thread is not held), then schedules the next poll. */
static void s_poll(kanal_ctx_t *ctx, void *arg)
{
	httppoll_t *h = arg;
	int64_t next = h->poll_interval_ms;
	page_result_t r = PAGE_MORE;

	h->timer = 0;
	if (h->stopped)
		return;
	for (int pages = 0; r == PAGE_MORE && pages < HP_MAX_PAGES && !h->stopped; pages++)
		r = s_poll_page(ctx, h);
	if (r == PAGE_MORE)
		next = 0;
	else if (r == PAGE_FAILED)
		next = h->retry_after_ms > h->backoff_ms ? h->retry_after_ms : h->backoff_ms;
	else if (r == PAGE_BUSY)
		next = h->poll_interval_ms < HP_BUSY_WAIT_MS ? h->poll_interval_ms
							     : HP_BUSY_WAIT_MS;
	else if (r == PAGE_CLOSED) {
		kanal_log(ctx, KANAL_LOG_INFO, "bus shutting down; polling stopped at cursor %s",
			  h->cursor ? h->cursor : "(none)");
		h->stopped = true;
		return;
	}
	if (next > h->max_backoff_ms)
		next = h->max_backoff_ms;
	s_schedule(ctx, h, next);
}

static int s_schedule(kanal_ctx_t *ctx, httppoll_t *h, int64_t after_ms)
{
	int64_t t;

	if (h->stopped)
		return 0;
	t = kanal_timer_add(ctx, after_ms, 0, s_poll, h);
	if (t < 0) {
		kanal_set_error(ctx, "cannot add the poll timer: %s", kanal_strerror((int)t));
		kanal_log(ctx, KANAL_LOG_ERROR, "cannot add the poll timer: %s; polling stopped",
			  kanal_strerror((int)t));
		return (int)t;
	}
	h->timer = t;
	return 0;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static void s_destroy(void *state)
{
	httppoll_t *h = state;

	if (!h)
		return;
	kc_http_destroy(&h->http);
	kc_http_conf_clear(&h->http_conf);
	kc_jq_destroy(&h->map_jq);
	free(h->cursor);
	free(h->next_url);
	free(h);
}

/* The rules init and check share (docs/sdk.md, "Checking a config"), for what the table
 * cannot say: the URL, the pointers, type or type_pointer (or map), the backoff; compiles
 * map, which stays in h for init. Reads nothing but the options. */
static int s_validate(kanal_ctx_t *ctx, httppoll_t *h)
{
	const struct {
		const char *name, *value;
	} ptrs[] = {
		{ "items_pointer", h->items_pointer },
		{ "cursor_pointer", h->cursor_pointer },
		{ "more_pointer", h->more_pointer },
		{ "id_pointer", h->id_pointer },
		{ "type_pointer", h->type_pointer },
		{ "subject_pointer", h->subject_pointer },
		{ "time_pointer", h->time_pointer },
		{ "data_pointer", h->data_pointer },
		{ "next_link_pointer", h->next_link_pointer },
	};

	if (kc_url_check_option(ctx, "url", h->url, h->http_conf.allow_plain_http) != 0)
		return KANAL_ECONFIG;
	for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++)
		if (ptrs[i].value && !s_pointer_ok(ptrs[i].value)) {
			kanal_set_error(ctx,
					"option '%s': '%s' is not a JSON pointer (\"\" or "
					"\"/name/0/…\", with ~0 for ~ and ~1 for /)",
					ptrs[i].name, ptrs[i].value);
			return KANAL_ECONFIG;
		}
	if (!s_origin(h->url, h->origin, sizeof h->origin)) {
		kanal_set_error(ctx, "option 'url': '%.200s' has no host", h->url);
		return KANAL_ECONFIG;
	}
	if (h->next_link_header && h->next_link_pointer) {
		kanal_set_error(ctx, "give only one of the options 'next_link_header' (the Link "
				     "header) and 'next_link_pointer' (a URL in the answer)");
		return KANAL_ECONFIG;
	}
	if (h->cursor_header &&
	    (!*h->cursor_header || h->cursor_header[strcspn(h->cursor_header, " \t:\r\n")])) {
		kanal_set_error(ctx, "option 'cursor_header': '%.100s' is not a header name",
				h->cursor_header);
		return KANAL_ECONFIG;
	}
	if (h->type && h->type_pointer) {
		kanal_set_error(ctx, "give only one of the options 'type' (a fixed event type) "
				     "and 'type_pointer' (the type in each item)");
		return KANAL_ECONFIG;
	}
	if (!h->type && !h->type_pointer && !h->map) {
		kanal_set_error(
			ctx, "give one of the options 'type' (a fixed event type), "
			     "'type_pointer' (the type in each item) or 'map' (a jq program whose "
			     "output names the type)");
		return KANAL_ECONFIG;
	}
	if (h->map && kc_jq_option(ctx, "map", h->map, "cursor", &h->map_jq) != 0)
		return KANAL_ECONFIG;
	if (h->max_backoff_ms < h->poll_interval_ms) {
		kanal_set_error(ctx,
				"option 'max_backoff' (%" PRId64 " ms) must not be shorter than "
				"'poll_interval' (%" PRId64 " ms)",
				h->max_backoff_ms, h->poll_interval_ms);
		return KANAL_ECONFIG;
	}
	if (h->start_cursor && strlen(h->start_cursor) > HP_MAX_CURSOR) {
		kanal_set_error(ctx, "option 'start_cursor' is longer than %d bytes",
				HP_MAX_CURSOR);
		return KANAL_ECONFIG;
	}
	return 0;
}

/* s_validate, and the secret files kc_http_conf_open reads (token_file, password_file:
 * private files only), read and wiped again. */
static int s_check(kanal_ctx_t *ctx, const kanal_config_t *cfg)
{
	httppoll_t *h = calloc(1, sizeof *h);
	kc_http_opts_t o;
	int rc;

	if (!h)
		return KANAL_ENOMEM;
	kanal_config_bind(cfg, h);
	rc = s_validate(ctx, h);
	if (rc == 0 && kc_http_conf_open(ctx, &h->http_conf, &o) != 0)
		rc = KANAL_ECONFIG;
	kc_http_conf_clear(&h->http_conf);
	s_destroy(h);
	return rc;
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	httppoll_t *h = calloc(1, sizeof *h);
	kc_http_opts_t o;
	int rc;

	if (!h) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	kanal_config_bind(cfg, h);
	h->instance = kanal_instance_name(ctx);
	h->retry_after_ms = -1;
	rc = s_validate(ctx, h);
	if (rc == 0 && kc_http_conf_open(ctx, &h->http_conf, &o) != 0)
		rc = KANAL_ECONFIG;
	if (rc == 0 && !(h->http = kc_http_new(&o))) {
		kanal_set_error(ctx, "cannot make the HTTP client: out of memory");
		rc = KANAL_ENOMEM;
	}
	kc_http_conf_clear(&h->http_conf);
	if (rc != 0) {
		s_destroy(h);
		return rc;
	}
	*state = h;
	return 0;
}

static int s_start(kanal_ctx_t *ctx, void *state)
{
	httppoll_t *h = state;
	int rc;

	kanal_metric_add(ctx, "polls", 0);
	kanal_metric_add(ctx, "emitted", 0);
	kanal_metric_add(ctx, "skipped", 0);
	kanal_metric_add(ctx, "upstream_errors", 0);
	kanal_metric_add(ctx, "next_links_refused", 0);
	h->stopped = false; /* started again: a singleton that took its lease back */
	free(h->cursor);
	h->cursor = NULL;
	rc = s_load_cursor(ctx, h);
	if (rc == 0)
		rc = s_schedule(ctx, h, 0);
	if (rc == 0)
		kanal_log(ctx, KANAL_LOG_INFO, "polling every %" PRId64 " ms from cursor %s",
			  h->poll_interval_ms, h->cursor ? h->cursor : "(none)");
	return rc;
}

static void s_stop(kanal_ctx_t *ctx, void *state, int64_t deadline_ms)
{
	httppoll_t *h = state;

	(void)deadline_ms;
	h->stopped = true;
	if (h->timer > 0)
		kanal_timer_cancel(ctx, h->timer);
	h->timer = 0;
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	kanal_set_error(ctx,
			"instance '%s' is an httppoll source and accepts no events; route %s "
			"elsewhere",
			((httppoll_t *)state)->instance, kanal_msg_type(msg));
	return KANAL_OUTCOME_REJECT;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "httppoll",
	.version = KANAL_VERSION,
	.description = "Polls a JSON REST API on an interval (cursor, paging, auth) and emits one "
		       "event per item, mapped by JSON pointers or a jq program.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.stop = s_stop,
	.destroy = s_destroy,
	.check = s_check,
};
