/*
 * plugins/http/multipart.c — an event with its files in one request (multipart/form-data,
 * RFC 7578): the part named "event" is the structured CloudEvent, every other part is a
 * file that goes into kanald's blob store, and the event is sent on with references to them
 * instead of their bytes (claim check, docs/design/blobs.md).
 *
 * A file part named N adds {"href": <kanalblob URI>, "mediaType": <its Content-Type>,
 * "size": <bytes>} to the array data.N of the event, and its URI to the event's `kanalblob`
 * attribute, by which kanald keeps the blob until the last delivery is finished. File
 * names are not kept: they are the sender's text and often name a person.
 */
#include "http.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

/* One part of the body: its headers' values of interest and its content (pointers into the
 * body). */
typedef struct part {
	char name[64];
	char content_type[128];
	const char *data;
	size_t len;
} part_t;

/* Copies the value of `param` ("name", "boundary") from a header value such as
 * `form-data; name="photo"; filename="a.jpg"` into out. Returns true when found. */
static bool s_param(const char *value, const char *param, char *out, size_t size)
{
	size_t plen = strlen(param);

	for (const char *p = strchr(value, ';'); p; p = strchr(p + 1, ';')) {
		const char *q = p + 1;
		size_t n = 0;

		while (*q == ' ' || *q == '\t')
			q++;
		if (strncasecmp(q, param, plen) || q[plen] != '=')
			continue;
		q += plen + 1;
		if (*q == '"') {
			for (q++; *q && *q != '"' && n + 1 < size; q++)
				out[n++] = *q;
		} else {
			for (; *q && *q != ';' && *q != ' ' && n + 1 < size; q++)
				out[n++] = *q;
		}
		out[n] = '\0';
		return n > 0;
	}
	return false;
}

/* Reads the headers of the part starting at p (up to the empty line) into pt; returns the
 * start of its content, or NULL when the headers do not end before `end`. */
static const char *s_part_headers(const char *p, const char *end, part_t *pt)
{
	while (p < end) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		char line[512];
		size_t n;

		if (!eol)
			return NULL;
		if (eol == p)
			return p + 2;
		n = (size_t)(eol - p) < sizeof line - 1 ? (size_t)(eol - p) : sizeof line - 1;
		memcpy(line, p, n);
		line[n] = '\0';
		if (!strncasecmp(line, "Content-Disposition:", 20))
			s_param(line + 20, "name", pt->name, sizeof pt->name);
		else if (!strncasecmp(line, "Content-Type:", 13)) {
			const char *v = line + 13;
			while (*v == ' ' || *v == '\t')
				v++;
			size_t vl = strlen(v);
			if (vl >= sizeof pt->content_type)
				vl = sizeof pt->content_type - 1;
			memcpy(pt->content_type, v, vl);
			pt->content_type[vl] = '\0';
		}
		p = eol + 2;
	}
	return NULL;
}

/* Splits body into parts[0..*n) (at most max). Returns 0, or KANAL_EPARSE with err. */
static int s_split(const char *body, size_t len, const char *boundary, part_t *parts, size_t max,
		   size_t *n, kanal_error_t *err)
{
	char delim[128];
	size_t dlen;
	const char *end = body + len, *p;

	*n = 0;
	dlen = (size_t)snprintf(delim, sizeof delim, "--%s", boundary);
	if (dlen >= sizeof delim)
		goto bad;
	p = memmem(body, len, delim, dlen);
	if (!p)
		goto bad;
	for (;;) {
		const char *content, *next;
		part_t pt = { .content_type = "" };

		p += dlen;
		if (end - p >= 2 && !memcmp(p, "--", 2))
			return 0; /* the closing delimiter */
		if (end - p < 2 || memcmp(p, "\r\n", 2))
			goto bad;
		content = s_part_headers(p + 2, end, &pt);
		if (!content)
			goto bad;
		next = memmem(content, (size_t)(end - content), delim, dlen);
		/* The CRLF before a delimiter belongs to it, not to the content. */
		if (!next || next - content < 2 || memcmp(next - 2, "\r\n", 2))
			goto bad;
		if (*n == max) {
			kanal_error_set(err, NULL, 0, 0, NULL, "more than %zu parts", max);
			return KANAL_EPARSE;
		}
		pt.data = content;
		pt.len = (size_t)(next - 2 - content);
		parts[(*n)++] = pt;
		p = next;
	}
bad:
	kanal_error_set(err, NULL, 0, 0, NULL,
			"the multipart body is malformed (boundary '%s' not found where expected)",
			boundary);
	return KANAL_EPARSE;
}

/* Adds the reference to data[name] (an array, created when absent). */
static int s_add_ref(json_t *data, const char *name, const kanal_blob_ref_t *ref)
{
	json_t *arr = json_object_get(data, name);

	if (!arr) {
		arr = json_array();
		if (json_object_set_new(data, name, arr) < 0)
			return KANAL_ENOMEM;
	}
	if (!json_is_array(arr))
		return KANAL_EINVAL;
	return json_array_append_new(arr,
				     json_pack("{s:s, s:s, s:I}", "href", ref->uri, "mediaType",
					       ref->media_type, "size", (json_int_t)ref->size)) < 0
		       ? KANAL_ENOMEM
		       : 0;
}

int multipart_decode(kanal_ctx_t *ctx, const char *content_type, const char *body, size_t len,
		     size_t max_event_size, kanal_msg_t **out, kanal_error_t *err)
{
	part_t parts[MULTIPART_MAX_PARTS];
	char boundary[100], *attr = NULL, *data_text = NULL;
	const part_t *event = NULL;
	size_t n = 0, alen = 0;
	json_t *data = NULL;
	kanal_msg_t *msg = NULL;
	int rc;

	*out = NULL;
	if (!s_param(content_type, "boundary", boundary, sizeof boundary)) {
		kanal_error_set(err, NULL, 0, 0, NULL, "multipart/form-data without a boundary");
		return KANAL_EPARSE;
	}
	rc = s_split(body, len, boundary, parts, MULTIPART_MAX_PARTS, &n, err);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(parts[i].name, "event"))
			event = &parts[i];
	if (!event) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"no part named 'event' (the structured "
				"CloudEvent; the other parts are its files)");
		return KANAL_EINVALID;
	}
	rc = kanal_msg_parse(event->data, event->len, max_event_size, &msg, err);
	if (rc < 0)
		return rc;
	/* The references go into the data, which must be an object (or absent). */
	if (kanal_msg_data_kind(msg) != KANAL_DATA_NONE) {
		data_text = kanal_msg_data_json(msg, NULL);
		data = data_text ? json_loads(data_text, 0, NULL) : NULL;
		kanal_free(data_text);
		data_text = NULL;
	} else {
		data = json_object();
	}
	if (!json_is_object(data)) {
		kanal_error_set(err, NULL, 0, 0, "data",
				"an event with files needs JSON object "
				"data: the files' references are added to it");
		rc = KANAL_EINVALID;
		goto out;
	}
	attr = strdup(kanal_msg_attr(msg, KANAL_BLOB_ATTRIBUTE) ?: "");
	alen = attr ? strlen(attr) : 0;
	for (size_t i = 0; attr && i < n; i++) {
		kanal_blob_ref_t ref;
		char *more;

		if (&parts[i] == event)
			continue;
		if (!parts[i].name[0] || !strcmp(parts[i].name, "event")) {
			kanal_error_set(err, NULL, 0, 0, NULL,
					"part %zu has no name (or a second "
					"'event'): a file part's name is the data field it goes to",
					i);
			rc = KANAL_EINVALID;
			goto out;
		}
		rc = kanal_blob_put(ctx, parts[i].data, parts[i].len,
				    parts[i].content_type[0] ? parts[i].content_type : NULL, &ref,
				    err);
		if (rc < 0)
			goto out;
		rc = s_add_ref(data, parts[i].name, &ref);
		if (rc == KANAL_EINVAL)
			kanal_error_set(err, NULL, 0, 0, "data",
					"data.%s is not an array: it "
					"cannot take the references of the files named so",
					parts[i].name);
		if (rc < 0)
			goto out;
		if (!(more = realloc(attr, alen + 1 + strlen(ref.uri) + 1))) {
			rc = KANAL_ENOMEM;
			goto out;
		}
		attr = more;
		alen += (size_t)sprintf(attr + alen, "%s%s", alen ? " " : "", ref.uri);
	}
	if (!attr) {
		rc = KANAL_ENOMEM;
		goto out;
	}
	data_text = json_dumps(data, JSON_COMPACT);
	rc = data_text ? kanal_msg_set_data_json(msg, data_text, strlen(data_text)) : KANAL_ENOMEM;
	if (rc == 0 && alen)
		rc = kanal_msg_set_attr(msg, KANAL_BLOB_ATTRIBUTE, attr, err);
	if (rc == 0 && kanal_msg_size(msg) > max_event_size) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"the event with its files' references is "
				"larger than max_event_size (%zu bytes)",
				max_event_size);
		rc = KANAL_ETOOBIG;
	}
out:
	free(data_text);
	free(attr);
	json_decref(data);
	if (rc == 0)
		*out = msg;
	else
		kanal_msg_destroy(&msg);
	return rc;
}
