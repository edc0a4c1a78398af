/*
 * plugins/calendar/caldav.c — the CalDAV conversation (RFC 4791) of the calendar connector.
 *
 * Every event lives in its own resource, <collection>/<name>.ics, the name derived from the
 * UID. Creating is a PUT with If-None-Match: *; when the resource exists (412) it is read
 * (GET, for its ETag and text), changed, and written back with If-Match: "<etag>"; a 412
 * then means someone changed it in between, so it is read again, a bounded number of
 * times. The ETag and content of kanal's own last write to each resource are remembered
 * (in memory, a bounded table), so an update goes straight to a conditional PUT, and a
 * repeated delivery of the same content is not written again.
 *
 * Before the first write to a collection it is checked once to be a calendar collection
 * (PROPFIND resourcetype) and, when missing, created (MKCALENDAR, with MKCOL for missing
 * parents) if the options allow. Radicale lets a PUT to a collection's own URL replace the
 * whole collection, and a PUT into a plain (non-calendar) collection create a new
 * collection: so a resource URL is always built as collection + one ".ics" segment and
 * checked to be so before every PUT and DELETE.
 */
#include "calendar.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>

#define KNOWN_MAX 512   /* remembered resources (ETag of kanal's last write) */
#define CHECKED_MAX 256 /* collections known to be calendars */
#define CALDAV_NS "urn:ietf:params:xml:ns:caldav"

typedef struct known {
	char *url;
	char *etag;
	uint64_t fingerprint; /* of the content kanal wrote; 0: unknown (e.g. cancelled) */
	int64_t sequence;
	int64_t version; /* the X-KANAL-VERSION kanal wrote; 0: none */
} known_t;

struct cal_dav {
	kc_http_t *http;
	cal_dav_opts_t o;
	char *user; /* for error messages; never the password */
	known_t known[KNOWN_MAX];
	size_t known_next;
	char *checked[CHECKED_MAX];
	size_t checked_next;
};

cal_dav_t *cal_dav_new(const cal_dav_opts_t *opts)
{
	cal_dav_t *dav = calloc(1, sizeof *dav);

	if (!dav)
		return NULL;
	dav->o = *opts;
	dav->o.http.user = dav->o.http.password = NULL; /* the client keeps its own copies */
	dav->user = opts->http.user ? strdup(opts->http.user) : NULL;
	dav->http = kc_http_new(&opts->http);
	if (!dav->http || (opts->http.user && !dav->user)) {
		cal_dav_destroy(&dav);
		return NULL;
	}
	return dav;
}

void cal_dav_destroy(cal_dav_t **dav_p)
{
	cal_dav_t *dav = dav_p ? *dav_p : NULL;

	if (!dav)
		return;
	kc_http_destroy(&dav->http);
	for (size_t i = 0; i < KNOWN_MAX; i++) {
		free(dav->known[i].url);
		free(dav->known[i].etag);
	}
	for (size_t i = 0; i < CHECKED_MAX; i++)
		free(dav->checked[i]);
	free(dav->user);
	free(dav);
	*dav_p = NULL;
}

/* ---- URLs ---------------------------------------------------------------------------- */

static int s_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Checks one path segment [p, end): not empty, not "." or ".." (also percent-encoded), no
 * encoded slash or backslash, no malformed escape. */
static bool s_segment_ok(const char *p, const char *end, char *why, size_t why_size)
{
	char decoded[8];
	size_t n = 0;

	if (p == end) {
		snprintf(why, why_size, "an empty path segment ('//')");
		return false;
	}
	for (const char *q = p; q < end; q++) {
		char c = *q;
		if (c == '%') {
			int hi = end - q >= 3 ? s_hex(q[1]) : -1;
			int lo = hi >= 0 ? s_hex(q[2]) : -1;
			if (hi < 0 || lo < 0) {
				snprintf(why, why_size, "a malformed percent escape");
				return false;
			}
			c = (char)(hi * 16 + lo);
			q += 2;
		}
		if (c == '/' || c == '\\') {
			snprintf(why, why_size, "an encoded slash in a path segment");
			return false;
		}
		if (n < sizeof decoded)
			decoded[n] = c;
		n++;
	}
	if ((n == 1 && decoded[0] == '.') || (n == 2 && decoded[0] == '.' && decoded[1] == '.')) {
		snprintf(why, why_size, "a '.' or '..' path segment");
		return false;
	}
	return true;
}

int cal_collection_check(const char *url, char *why, size_t why_size)
{
	const char *p, *path;
	size_t len = url ? strlen(url) : 0;

	if (!len) {
		snprintf(why, why_size, "empty URL");
		return KANAL_EINVAL;
	}
	if (!strncmp(url, "http://", 7))
		p = url + 7;
	else if (!strncmp(url, "https://", 8))
		p = url + 8;
	else {
		snprintf(why, why_size, "not an http:// or https:// URL");
		return KANAL_EINVAL;
	}
	for (const char *q = url; *q; q++) {
		if ((unsigned char)*q <= 0x20 || *q == 0x7f || *q == '?' || *q == '#') {
			snprintf(why, why_size, "a blank, control character, query or fragment");
			return KANAL_EINVAL;
		}
	}
	path = strchr(p, '/');
	if (!path || path == p) {
		snprintf(why, why_size, "no host or no path");
		return KANAL_EINVAL;
	}
	if (url[len - 1] != '/') {
		snprintf(why, why_size, "a collection URL must end in '/'");
		return KANAL_EINVAL;
	}
	if (!path[1]) {
		snprintf(why, why_size, "the path is the server's root, not a calendar collection");
		return KANAL_EINVAL;
	}
	for (const char *seg = path + 1; *seg;) {
		const char *end = strchr(seg, '/');
		if (!s_segment_ok(seg, end, why, why_size))
			return KANAL_EINVAL;
		seg = end + 1;
	}
	return 0;
}

/* True when uid can be used as the resource name as it is. */
static bool s_plain_name(const char *uid)
{
	size_t n = strlen(uid);

	if (n == 0 || n > 100 ||
	    !((uid[0] >= 'a' && uid[0] <= 'z') || (uid[0] >= 'A' && uid[0] <= 'Z') ||
	      (uid[0] >= '0' && uid[0] <= '9')))
		return false;
	for (const char *p = uid; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.' || c == '@'))
			return false;
	}
	return true;
}

char *cal_resource_url(const char *collection, const char *uid, char *why, size_t why_size)
{
	char name[128], *url;

	if (cal_collection_check(collection, why, why_size) != 0)
		return NULL;
	if (!uid || !*uid) {
		snprintf(why, why_size, "empty UID");
		return NULL;
	}
	if (s_plain_name(uid)) {
		snprintf(name, sizeof name, "%s", uid);
	} else {
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int md_len = 0;
		if (!EVP_Digest(uid, strlen(uid), md, &md_len, EVP_sha256(), NULL)) {
			snprintf(why, why_size, "SHA-256 failed");
			return NULL;
		}
		strcpy(name, "h-");
		for (unsigned i = 0; i < 20; i++)
			snprintf(name + 2 + 2 * i, 3, "%02x", md[i]);
	}
	if (asprintf(&url, "%s%s.ics", collection, name) < 0) {
		snprintf(why, why_size, "out of memory");
		return NULL;
	}
	if (!cal_is_resource_of(collection, url)) {
		/* Cannot happen with the names above; checked all the same (see the file's
		 * opening comment). */
		snprintf(why, why_size,
			 "the resource URL would not be one segment of the collection");
		free(url);
		return NULL;
	}
	return url;
}

bool cal_is_resource_of(const char *collection, const char *url)
{
	size_t n = strlen(collection), rest;
	const char *name;

	if (!n || collection[n - 1] != '/' || strncmp(url, collection, n) != 0)
		return false;
	name = url + n;
	rest = strlen(name);
	if (rest <= 4 || strcmp(name + rest - 4, ".ics") != 0)
		return false;
	for (const char *p = name; *p; p++)
		if (*p == '/' || *p == '%' || *p == '?' || *p == '#' || (unsigned char)*p <= 0x20)
			return false;
	return strcmp(name, "..ics") != 0;
}

/* ---- what kanal remembers --------------------------------------------------------------- */

static known_t *s_known(cal_dav_t *dav, const char *url)
{
	for (size_t i = 0; i < KNOWN_MAX; i++)
		if (dav->known[i].url && !strcmp(dav->known[i].url, url))
			return &dav->known[i];
	return NULL;
}

static void s_forget(cal_dav_t *dav, const char *url)
{
	known_t *k = s_known(dav, url);

	if (!k)
		return;
	free(k->url);
	free(k->etag);
	memset(k, 0, sizeof *k);
}

/* Remembers kanal's write to url: its ETag (NULL: forget — without an ETag the next update
 * must read first), content fingerprint and sequence. */
static void s_remember(cal_dav_t *dav, const char *url, const char *etag, uint64_t fingerprint,
		       int64_t sequence, int64_t version)
{
	known_t *k = s_known(dav, url);

	if (!etag) {
		s_forget(dav, url);
		return;
	}
	if (!k) {
		k = &dav->known[dav->known_next];
		dav->known_next = (dav->known_next + 1) % KNOWN_MAX;
		free(k->url);
		free(k->etag);
		memset(k, 0, sizeof *k);
		if (!(k->url = strdup(url)))
			return;
	}
	free(k->etag);
	k->etag = strdup(etag);
	k->fingerprint = fingerprint;
	k->sequence = sequence;
	k->version = version;
	if (!k->etag)
		s_forget(dav, url);
}

static bool s_checked(cal_dav_t *dav, const char *collection)
{
	for (size_t i = 0; i < CHECKED_MAX; i++)
		if (dav->checked[i] && !strcmp(dav->checked[i], collection))
			return true;
	return false;
}

static void s_set_checked(cal_dav_t *dav, const char *collection)
{
	free(dav->checked[dav->checked_next]);
	dav->checked[dav->checked_next] = strdup(collection);
	dav->checked_next = (dav->checked_next + 1) % CHECKED_MAX;
}

static void s_unset_checked(cal_dav_t *dav, const char *collection)
{
	for (size_t i = 0; i < CHECKED_MAX; i++)
		if (dav->checked[i] && !strcmp(dav->checked[i], collection)) {
			free(dav->checked[i]);
			dav->checked[i] = NULL;
		}
}

/* ---- answers ------------------------------------------------------------------------------ */

/* Records why a step failed (REJECT unless the caller says otherwise afterwards). */
__attribute__((format(printf, 2, 3))) static void s_err(cal_status_t *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->text, sizeof st->text, fmt, ap);
	va_end(ap);
	kanal_cpr_redact_inplace(st->text);
	st->outcome = KANAL_OUTCOME_REJECT;
	st->retry_after_ms = -1;
}

/* The outcome of an answer that is not what the step expected: 401 and 403 name the user
 * (never the password), everything else as every connector maps it. */
static kanal_outcome_t s_fail(kanal_ctx_t *ctx, cal_dav_t *dav, const kc_response_t *res,
			      const char *method, const char *url, cal_status_t *st)
{
	char what[1024];

	snprintf(what, sizeof what, "%s %s", method, url);
	kanal_metric_add(ctx, "upstream_errors", 1);
	if (res->status == 401) {
		s_err(st,
		      "%s: HTTP 401: the CalDAV server refused the credentials of user "
		      "'%s' (options user, password/password_file)",
		      what, dav->user ? dav->user : "(none given)");
		return KANAL_OUTCOME_REJECT;
	}
	if (res->status == 403) {
		s_err(st,
		      "%s: HTTP 403: user '%s' may not write this calendar (the server's "
		      "rights must let the service user write every calendar)",
		      what, dav->user ? dav->user : "(none given)");
		return KANAL_OUTCOME_REJECT;
	}
	kc_http_describe(res, what, st->text, sizeof st->text);
	if (res->status == 0 || res->status == 408 || res->status == 425 || res->status == 429 ||
	    res->status >= 500) {
		st->retry_after_ms = res->retry_after_ms;
		return st->outcome = KANAL_OUTCOME_RETRY;
	}
	return st->outcome = KANAL_OUTCOME_REJECT;
}

static bool s_ok(const kc_response_t *res)
{
	return res->status >= 200 && res->status < 300;
}

/* True when a 409 answer is CalDAV's no-uid-conflict precondition (RFC 4791 5.3.2.1). */
static bool s_uid_conflict(const kc_response_t *res)
{
	return res->status == 409 && res->body && strstr(res->body, "no-uid-conflict");
}

/* True when the element is CALDAV:calendar inside a DAV:resourcetype, anywhere below n. */
static bool s_has_calendar_type(xmlNode *n, bool in_resourcetype)
{
	for (; n; n = n->next) {
		bool rt = in_resourcetype;
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (in_resourcetype && !xmlStrcmp(n->name, BAD_CAST "calendar") && n->ns &&
		    !xmlStrcmp(n->ns->href, BAD_CAST CALDAV_NS))
			return true;
		if (!xmlStrcmp(n->name, BAD_CAST "resourcetype"))
			rt = true;
		if (s_has_calendar_type(n->children, rt))
			return true;
	}
	return false;
}

static bool s_is_calendar(const kc_response_t *res)
{
	xmlDoc *doc = xmlReadMemory(res->body, (int)res->len, "propfind.xml", NULL,
				    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	bool yes = doc && s_has_calendar_type(xmlDocGetRootElement(doc), false);

	xmlFreeDoc(doc);
	return yes;
}

/* MKCALENDAR collection; when the server says a parent is missing (409), MKCOL each
 * ancestor below the server root first and try once more. Returns the outcome. */
static kanal_outcome_t s_make_calendar(kanal_ctx_t *ctx, cal_dav_t *dav, const char *collection,
				       const char *who, cal_status_t *st)
{
	const char *path = strchr(strstr(collection, "://") + 3, '/');
	kc_response_t res;
	kanal_outcome_t out;

	for (int round = 0; round < 2; round++) {
		kc_http_request(dav->http, "MKCALENDAR", collection, NULL, NULL, 0, &res);
		if (s_ok(&res) || res.status == 405 /* exists */) {
			kc_response_clear(&res);
			kanal_log(ctx, KANAL_LOG_INFO, "created the calendar of %.24s… at %s", who,
				  collection);
			kanal_metric_add(ctx, "calendars_created", 1);
			return KANAL_OUTCOME_OK;
		}
		if (res.status != 409 || round == 1)
			break;
		kc_response_clear(&res);
		/* Every prefix of the path that ends in '/', shorter than the collection. */
		for (const char *p = strchr(path + 1, '/'); p && p[1]; p = strchr(p + 1, '/')) {
			char *parent = strndup(collection, (size_t)(p - collection + 1));
			if (!parent)
				break;
			kc_http_request(dav->http, "MKCOL", parent, NULL, NULL, 0, &res);
			if (res.status == 0 || res.status == 401 || res.status == 403 ||
			    res.status >= 500) {
				out = s_fail(ctx, dav, &res, "MKCOL", parent, st);
				kc_response_clear(&res);
				free(parent);
				return out;
			}
			kc_response_clear(&res);
			free(parent);
		}
	}
	out = s_fail(ctx, dav, &res, "MKCALENDAR", collection, st);
	kc_response_clear(&res);
	return out;
}

/* Makes sure collection is a calendar collection, once per process: PROPFIND Depth 0;
 * missing → MKCALENDAR when create_calendars allows. Returns the outcome. */
static kanal_outcome_t s_ensure_calendar(kanal_ctx_t *ctx, cal_dav_t *dav, const char *collection,
					 const char *who, cal_status_t *st)
{
	static const char *const headers[] = { "Depth: 0",
					       "Content-Type: application/xml; charset=utf-8",
					       NULL };
	static const char body[] = "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
				   "<d:propfind xmlns:d=\"DAV:\"><d:prop><d:resourcetype/>"
				   "</d:prop></d:propfind>";
	kc_response_t res;
	kanal_outcome_t out = KANAL_OUTCOME_OK;

	if (s_checked(dav, collection))
		return KANAL_OUTCOME_OK;
	kc_http_request(dav->http, "PROPFIND", collection, headers, body, sizeof body - 1, &res);
	if (res.status == 207) {
		if (!s_is_calendar(&res)) {
			s_err(st,
			      "PROPFIND %s: not a calendar collection (a PUT into it could "
			      "create a collection, not an event); check option calendar_url",
			      collection);
			out = KANAL_OUTCOME_REJECT;
		}
	} else if (res.status == 404) {
		if (!dav->o.create_calendars) {
			s_err(st,
			      "PROPFIND %s: HTTP 404: the calendar of %.24s… does not exist "
			      "and option create_calendars is off",
			      collection, who);
			out = KANAL_OUTCOME_REJECT;
		} else {
			out = s_make_calendar(ctx, dav, collection, who, st);
		}
	} else {
		out = s_fail(ctx, dav, &res, "PROPFIND", collection, st);
	}
	kc_response_clear(&res);
	if (out == KANAL_OUTCOME_OK)
		s_set_checked(dav, collection);
	return out;
}

/* ---- upsert and cancel ------------------------------------------------------------------ */

/* Writes text to url: If-Match etag, or If-None-Match: * when etag is NULL. The resource
 * check is repeated here, right before the request, on purpose: a url that is not one
 * resource of the collection returns KANAL_EINVAL without a request. Otherwise returns what
 * kc_http_request returns. */
static int s_put(cal_dav_t *dav, const char *collection, const char *url, const char *etag,
		 const char *text, kc_response_t *res)
{
	char cond[512];
	const char *headers[] = { "Content-Type: text/calendar; charset=utf-8", cond, NULL };

	if (!cal_is_resource_of(collection, url)) {
		memset(res, 0, sizeof *res);
		res->retry_after_ms = -1;
		return KANAL_EINVAL;
	}
	if (etag)
		snprintf(cond, sizeof cond, "If-Match: %s", etag);
	else
		snprintf(cond, sizeof cond, "If-None-Match: *");
	return kc_http_request(dav->http, "PUT", url, headers, text, strlen(text), res);
}

static kanal_outcome_t s_refuse_url(cal_status_t *st, const char *url)
{
	s_err(st,
	      "refusing to write %s: not one .ics resource inside the calendar "
	      "collection",
	      url);
	return KANAL_OUTCOME_REJECT;
}

/* Reads url. Returns 0 with res filled (any status), or kc_http_request's negative code
 * when no answer came. */
static int s_get(cal_dav_t *dav, const char *url, kc_response_t *res)
{
	static const char *const headers[] = { "Accept: text/calendar", NULL };
	return kc_http_request(dav->http, "GET", url, headers, NULL, 0, res);
}

kanal_outcome_t cal_dav_upsert(kanal_ctx_t *ctx, cal_dav_t *dav, const char *collection,
			       const cal_event_t *ev, const char *who, cal_status_t *st)
{
	char why[256];
	char *url = cal_resource_url(collection, ev->uid, why, sizeof why);
	char *text = NULL, *etag = NULL;
	uint64_t fp = cal_event_fingerprint(ev);
	int64_t seq;
	known_t *k;
	kanal_outcome_t out;
	bool made_calendar = false;
	int conflicts = 0;
	kc_response_t res = { 0 };

	if (!url) {
		s_err(st, "calendar of %.24s…: %s", who, why);
		return KANAL_OUTCOME_REJECT;
	}
	k = s_known(dav, url);
	if (k && ev->version > 0 && k->version > ev->version) {
		/* kanal wrote a newer version of this fact: a late or replayed older one. */
		kanal_metric_add(ctx, "stale", 1);
		free(url);
		return KANAL_OUTCOME_OK;
	}
	if (k && k->fingerprint == fp && (ev->sequence < 0 || ev->sequence <= k->sequence)) {
		/* kanal wrote exactly this last time: a repeated delivery. */
		kanal_metric_add(ctx, "unchanged", 1);
		free(url);
		return KANAL_OUTCOME_OK;
	}
	if ((out = s_ensure_calendar(ctx, dav, collection, who, st)) != KANAL_OUTCOME_OK)
		goto done;
	if (k) {
		/* Rebuilt from what kanal knows; the If-Match makes sure nobody changed it since
		 * (a 412 otherwise, and then it is read and merged). */
		seq = ev->sequence > k->sequence + 1 ? ev->sequence : k->sequence + 1;
		etag = strdup(k->etag);
	} else {
		seq = ev->sequence >= 0 ? ev->sequence : 0;
	}
	text = cal_ical_create(ev, seq);
	if (!text || (k && !etag)) {
		s_err(st, "out of memory");
		out = KANAL_OUTCOME_RETRY;
		goto done;
	}
	for (;;) {
		int rc = s_put(dav, collection, url, etag, text, &res);
		if (rc == KANAL_EINVAL) {
			out = s_refuse_url(st, url);
			goto done;
		}
		if (s_ok(&res)) {
			kanal_metric_add(ctx, etag ? "updated" : "created", 1);
			kanal_log(ctx, KANAL_LOG_DEBUG, "%s %s (SEQUENCE %lld)",
				  etag ? "updated" : "created", url, (long long)seq);
			s_remember(dav, url, res.etag, fp, seq, ev->version);
			out = KANAL_OUTCOME_OK;
			goto done;
		}
		if (s_uid_conflict(&res)) {
			kanal_metric_add(ctx, "uid_conflicts", 1);
			s_err(st,
			      "PUT %s: HTTP 409 no-uid-conflict: UID '%s' already belongs to "
			      "another resource in the calendar of %.24s… (the server allows "
			      "one resource per UID); not written",
			      url, ev->uid, who);
			out = KANAL_OUTCOME_REJECT;
			goto done;
		}
		if ((res.status == 404 || res.status == 409) && !made_calendar) {
			/* The collection went away since it was checked. */
			kc_response_clear(&res);
			s_unset_checked(dav, collection);
			made_calendar = true;
			if ((out = s_ensure_calendar(ctx, dav, collection, who, st)) !=
			    KANAL_OUTCOME_OK)
				goto done;
			continue;
		}
		if (res.status != 412) {
			out = s_fail(ctx, dav, &res, "PUT", url, st);
			s_forget(dav, url);
			goto done;
		}
		/* 412: it exists (create) or changed since kanal's ETag (update). Read it. */
		kc_response_clear(&res);
		if (conflicts++ >= dav->o.conflict_retries) {
			kanal_metric_add(ctx, "conflicts_unresolved", 1);
			s_err(st,
			      "PUT %s: HTTP 412 %d times: the event keeps changing on the "
			      "server; will try again",
			      url, conflicts);
			out = KANAL_OUTCOME_RETRY;
			goto done;
		}
		if (etag) {
			kanal_metric_add(ctx, "conflicts", 1);
			kanal_log(ctx, KANAL_LOG_INFO,
				  "%s changed on the server since kanal wrote it (412); re-reading",
				  url);
		}
		s_forget(dav, url);
		free(etag);
		etag = NULL;
		free(text);
		text = NULL;
		s_get(dav, url, &res);
		if (res.status == 404) {
			/* Deleted in between: create it again. */
			kc_response_clear(&res);
			seq = ev->sequence >= 0 ? ev->sequence : 0;
			if (!(text = cal_ical_create(ev, seq))) {
				s_err(st, "out of memory");
				out = KANAL_OUTCOME_RETRY;
				goto done;
			}
			continue;
		}
		if (res.status != 200) {
			out = s_fail(ctx, dav, &res, "GET", url, st);
			goto done;
		}
		if (!res.etag) {
			s_err(st, "GET %s: the server sent no ETag; cannot update safely", url);
			out = KANAL_OUTCOME_REJECT;
			goto done;
		}
		switch (cal_ical_update(res.body, ev, &text, &seq)) {
		case CAL_UNCHANGED:
			kanal_metric_add(ctx, "unchanged", 1);
			s_remember(dav, url, res.etag, fp, seq, ev->version);
			out = KANAL_OUTCOME_OK;
			goto done;
		case CAL_STALE:
			/* Not remembered: what the server holds is not what ev says. */
			kanal_metric_add(ctx, "stale", 1);
			out = KANAL_OUTCOME_OK;
			goto done;
		case CAL_NOT_OURS:
			s_err(st,
			      "GET %s: the resource holds another UID than '%s' (a name "
			      "clash); not overwritten",
			      url, ev->uid);
			out = KANAL_OUTCOME_REJECT;
			goto done;
		case CAL_UNREADABLE:
			s_err(st,
			      "GET %s: the stored resource is not an iCalendar VEVENT "
			      "kanal can update",
			      url);
			out = KANAL_OUTCOME_REJECT;
			goto done;
		case CAL_CHANGED:
			break;
		}
		etag = strdup(res.etag);
		kc_response_clear(&res);
		if (!etag) {
			s_err(st, "out of memory");
			out = KANAL_OUTCOME_RETRY;
			goto done;
		}
	}
done:
	kc_response_clear(&res);
	free(text);
	free(etag);
	free(url);
	return out;
}

kanal_outcome_t cal_dav_cancel(kanal_ctx_t *ctx, cal_dav_t *dav, const char *collection,
			       const char *uid, int64_t min_sequence, int64_t version,
			       const char *who, cal_status_t *st)
{
	char why[256];
	char *url = cal_resource_url(collection, uid, why, sizeof why);
	char *text = NULL;
	kanal_outcome_t out = KANAL_OUTCOME_OK;
	kc_response_t res = { 0 };
	int64_t seq = 0;

	if (!url) {
		s_err(st, "calendar of %.24s…: %s", who, why);
		return KANAL_OUTCOME_REJECT;
	}
	for (int attempt = 0;; attempt++) {
		char cond[512];
		const char *headers[] = { cond, NULL };

		if (attempt > dav->o.conflict_retries) {
			kanal_metric_add(ctx, "conflicts_unresolved", 1);
			s_err(st,
			      "%s %s: HTTP 412 %d times: the event keeps changing on the "
			      "server; will try again",
			      dav->o.cancel_delete ? "DELETE" : "PUT", url, attempt);
			out = KANAL_OUTCOME_RETRY;
			break;
		}
		kc_response_clear(&res);
		free(text);
		text = NULL;
		s_get(dav, url, &res);
		if (res.status == 404) {
			/* Not there (or no calendar at all): nothing to cancel. */
			kanal_metric_add(ctx, "already_gone", 1);
			s_forget(dav, url);
			out = KANAL_OUTCOME_OK;
			break;
		}
		if (res.status != 200) {
			out = s_fail(ctx, dav, &res, "GET", url, st);
			break;
		}
		if (!res.etag) {
			s_err(st, "GET %s: the server sent no ETag; cannot cancel safely", url);
			out = KANAL_OUTCOME_REJECT;
			break;
		}
		snprintf(cond, sizeof cond, "If-Match: %s", res.etag);
		if (dav->o.cancel_delete) {
			char *etag = strdup(res.etag);
			if (!cal_is_resource_of(collection, url)) {
				free(etag);
				out = s_refuse_url(st, url);
				break;
			}
			kc_response_clear(&res);
			kc_http_request(dav->http, "DELETE", url, headers, NULL, 0, &res);
			free(etag);
			if (s_ok(&res) || res.status == 404) {
				kanal_metric_add(ctx, "deleted", 1);
				s_forget(dav, url);
				out = KANAL_OUTCOME_OK;
				break;
			}
			if (res.status == 412)
				continue;
			out = s_fail(ctx, dav, &res, "DELETE", url, st);
			break;
		}
		switch (cal_ical_cancel(res.body, uid, min_sequence, version, &text, &seq)) {
		case CAL_UNCHANGED:
			kanal_metric_add(ctx, "already_gone", 1);
			out = KANAL_OUTCOME_OK;
			goto done;
		case CAL_STALE:
			kanal_metric_add(ctx, "stale", 1);
			out = KANAL_OUTCOME_OK;
			goto done;
		case CAL_NOT_OURS:
			s_err(st,
			      "GET %s: the resource holds another UID than '%s' (a name "
			      "clash); not cancelled",
			      url, uid);
			out = KANAL_OUTCOME_REJECT;
			goto done;
		case CAL_UNREADABLE:
			s_err(st,
			      "GET %s: the stored resource is not an iCalendar VEVENT "
			      "kanal can cancel",
			      url);
			out = KANAL_OUTCOME_REJECT;
			goto done;
		case CAL_CHANGED:
			break;
		}
		{
			char *etag = strdup(res.etag);
			kc_response_clear(&res);
			if (!etag) {
				s_err(st, "out of memory");
				out = KANAL_OUTCOME_RETRY;
				break;
			}
			if (s_put(dav, collection, url, etag, text, &res) == KANAL_EINVAL) {
				free(etag);
				out = s_refuse_url(st, url);
				break;
			}
			free(etag);
		}
		if (s_ok(&res)) {
			kanal_metric_add(ctx, "cancelled", 1);
			/* Fingerprint 0: a later upsert of the same content must un-cancel. */
			s_remember(dav, url, res.etag, 0, seq, version);
			out = KANAL_OUTCOME_OK;
			break;
		}
		if (res.status == 412)
			continue;
		out = s_fail(ctx, dav, &res, "PUT", url, st);
		break;
	}
done:
	kc_response_clear(&res);
	free(text);
	free(url);
	return out;
}
