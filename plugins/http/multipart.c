/*
 * plugins/http/multipart.c — an event with its files in one request (multipart/form-data,
 * RFC 7578): the part named "event" is the structured CloudEvent, every other part is a
 * file that goes into kanald's blob store, and the event is sent on with references to them
 * instead of their bytes (claim check, docs/design/blobs.md).
 *
 * The body is read as it arrives (multipart_feed from the ingress's upload callback): a
 * small state machine finds the delimiters across the pieces, keeps a part's headers (at
 * most 8 KiB) and the event part in memory, and streams each file part into the blob store
 * with a kanal_blob_writer_t — so a request of large photos never sits in memory whole, and
 * the blob limits refuse a file part-way (the part being written is dropped, nothing of it
 * stays). At most a piece and a delimiter's length are buffered between two calls.
 *
 * A file part named N adds {"href": <kanalblob URI>, "mediaType": <its Content-Type>,
 * "size": <bytes>} to the array data.N of the event, and its URI to the event's `kanalblob`
 * attribute, by which kanald keeps the blob until the last delivery is finished. File
 * names are not kept: they are the sender's text and often name a person.
 */
#include "http.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

/* The longest header block of one part. */
#define MULTIPART_HEADERS_MAX 8192

/* The headers of one part that matter. */
typedef struct part {
	char name[64];
	char content_type[128];
} part_t;

typedef enum mp_state {
	MP_PREAMBLE,    /* before the first delimiter: ignored */
	MP_AFTER_DELIM, /* "--" (the end) or CRLF (a part follows) */
	MP_HEADERS,     /* a part's headers, up to the empty line */
	MP_BODY,        /* a part's content, up to the next delimiter */
	MP_DONE,        /* after the closing delimiter: the epilogue is ignored */
} mp_state_t;

/* A file stored: the data field it goes to and its reference. */
typedef struct file_ref {
	char name[64];
	kanal_blob_ref_t ref;
} file_ref_t;

struct multipart {
	kanal_ctx_t *ctx;
	size_t max_event_size;
	char boundary[100];
	char delim[128]; /* "\r\n--<boundary>"; the first one may come without the CRLF */
	size_t dlen;
	mp_state_t state;
	int failed; /* the first failure's code; 0 while all is well */
	kanal_error_t fail_err;
	char *buf; /* bytes read and not yet consumed */
	size_t len, cap;
	size_t n_parts;
	part_t cur;
	bool cur_is_event;
	kanal_blob_writer_t *writer; /* the file part being written */
	char *event;                 /* the event part */
	size_t event_len;
	bool have_event;
	file_ref_t refs[MULTIPART_MAX_PARTS];
	size_t n_refs;
};

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

/* Records the first failure (err's text, or `fmt`) and drops the file being written. */
static int s_fail(multipart_t *mp, int rc, const kanal_error_t *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int s_fail(multipart_t *mp, int rc, const kanal_error_t *err, const char *fmt, ...)
{
	if (mp->failed)
		return mp->failed;
	mp->failed = rc;
	if (err && err->text[0]) {
		mp->fail_err = *err;
	} else {
		char text[400];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(text, sizeof text, fmt, ap);
		va_end(ap);
		kanal_error_set(&mp->fail_err, NULL, 0, 0, NULL, "%s", text);
	}
	kanal_blob_writer_destroy(&mp->writer);
	return rc;
}

static int s_malformed(multipart_t *mp)
{
	return s_fail(mp, KANAL_EPARSE, NULL,
		      "the multipart body is malformed (boundary '%s' not found where expected)",
		      mp->boundary);
}

int multipart_new(kanal_ctx_t *ctx, const char *content_type, size_t max_event_size,
		  multipart_t **out, kanal_error_t *err)
{
	multipart_t *mp;

	*out = NULL;
	if (!(mp = calloc(1, sizeof *mp)))
		return KANAL_ENOMEM;
	if (!s_param(content_type, "boundary", mp->boundary, sizeof mp->boundary)) {
		free(mp);
		kanal_error_set(err, NULL, 0, 0, NULL, "multipart/form-data without a boundary");
		return KANAL_EPARSE;
	}
	mp->ctx = ctx;
	mp->max_event_size = max_event_size;
	mp->dlen = (size_t)snprintf(mp->delim, sizeof mp->delim, "\r\n--%s", mp->boundary);
	kanal_error_clear(&mp->fail_err);
	*out = mp;
	return 0;
}

void multipart_destroy(multipart_t **mp_p)
{
	multipart_t *mp = mp_p ? *mp_p : NULL;

	if (!mp)
		return;
	kanal_blob_writer_destroy(&mp->writer);
	free(mp->buf);
	free(mp->event);
	free(mp);
	*mp_p = NULL;
}

/* Drops the first n bytes of the buffer. */
static void s_consume(multipart_t *mp, size_t n)
{
	memmove(mp->buf, mp->buf + n, mp->len - n);
	mp->len -= n;
}

/* A part's headers are read: starts its content (the event in memory, a file into a new
 * blob). */
static int s_part_begin(multipart_t *mp, const part_t *pt)
{
	kanal_error_t err;
	int rc;

	if (mp->n_parts == MULTIPART_MAX_PARTS)
		return s_fail(mp, KANAL_EPARSE, NULL, "more than %d parts", MULTIPART_MAX_PARTS);
	mp->cur = *pt;
	mp->cur_is_event = !strcmp(pt->name, "event") && !mp->have_event && !mp->event;
	if (mp->cur_is_event) {
		mp->n_parts++;
		return (mp->event = malloc(1)) ? 0
					       : s_fail(mp, KANAL_ENOMEM, NULL, "out of memory");
	}
	if (!pt->name[0] || !strcmp(pt->name, "event"))
		return s_fail(mp, KANAL_EINVALID, NULL,
			      "part %zu has no name (or a second 'event'): a file part's name is "
			      "the data field it goes to",
			      mp->n_parts);
	mp->n_parts++;
	kanal_error_clear(&err);
	rc = kanal_blob_writer_new(mp->ctx, pt->content_type[0] ? pt->content_type : NULL,
				   &mp->writer, &err);
	return rc ? s_fail(mp, rc, &err, "cannot store the file") : 0;
}

/* Takes n bytes of the current part's content. */
static int s_part_content(multipart_t *mp, const char *data, size_t n)
{
	kanal_error_t err;
	int rc;

	if (!n)
		return 0;
	if (mp->cur_is_event) {
		char *grown;
		if (mp->event_len + n > mp->max_event_size)
			return s_fail(mp, KANAL_ETOOBIG, NULL,
				      "the event part is larger than max_event_size (%zu bytes)",
				      mp->max_event_size);
		if (!(grown = realloc(mp->event, mp->event_len + n + 1)))
			return s_fail(mp, KANAL_ENOMEM, NULL, "out of memory");
		memcpy(grown + mp->event_len, data, n);
		mp->event = grown;
		mp->event_len += n;
		return 0;
	}
	kanal_error_clear(&err);
	rc = kanal_blob_writer_write(mp->writer, data, n, &err);
	return rc ? s_fail(mp, rc, &err, "cannot store the file") : 0;
}

/* The current part ended at a delimiter. */
static int s_part_end(multipart_t *mp)
{
	file_ref_t *f;
	kanal_error_t err;
	int rc;

	if (mp->cur_is_event) {
		mp->have_event = true;
		return 0;
	}
	f = &mp->refs[mp->n_refs];
	kanal_error_clear(&err);
	rc = kanal_blob_writer_finish(&mp->writer, &f->ref, &err);
	if (rc)
		return s_fail(mp, rc, &err, "cannot store the file");
	snprintf(f->name, sizeof f->name, "%s", mp->cur.name);
	mp->n_refs++;
	return 0;
}

/* Runs the state machine over the buffer as far as it goes. Returns 0 or the failure. */
static int s_run(multipart_t *mp)
{
	for (;;) {
		const char *p;
		size_t keep;

		if (mp->failed)
			return mp->failed;
		switch (mp->state) {
		case MP_PREAMBLE:
			/* The first delimiter may open the body, without a CRLF before it. */
			p = memmem(mp->buf, mp->len, mp->delim + 2, mp->dlen - 2);
			if (!p) {
				keep = mp->dlen - 3;
				if (mp->len > keep)
					s_consume(mp, mp->len - keep);
				return 0;
			}
			s_consume(mp, (size_t)(p - mp->buf) + mp->dlen - 2);
			mp->state = MP_AFTER_DELIM;
			break;
		case MP_AFTER_DELIM:
			if (mp->len < 2)
				return 0;
			if (!memcmp(mp->buf, "--", 2)) {
				mp->state = MP_DONE;
				break;
			}
			if (memcmp(mp->buf, "\r\n", 2))
				return s_malformed(mp);
			s_consume(mp, 2);
			mp->state = MP_HEADERS;
			break;
		case MP_HEADERS: {
			part_t pt = { .content_type = "" };
			const char *end = NULL, *content;

			if (mp->len >= 2 && !memcmp(mp->buf, "\r\n", 2))
				end = mp->buf + 2;
			else if ((p = memmem(mp->buf, mp->len, "\r\n\r\n", 4)))
				end = p + 4;
			if (!end) {
				if (mp->len > MULTIPART_HEADERS_MAX)
					return s_fail(mp, KANAL_EPARSE, NULL,
						      "a part's headers are longer than %d bytes",
						      MULTIPART_HEADERS_MAX);
				return 0;
			}
			content = s_part_headers(mp->buf, end, &pt);
			if (!content)
				return s_malformed(mp);
			s_consume(mp, (size_t)(content - mp->buf));
			if (s_part_begin(mp, &pt))
				return mp->failed;
			mp->state = MP_BODY;
			break;
		}
		case MP_BODY:
			p = memmem(mp->buf, mp->len, mp->delim, mp->dlen);
			if (!p) {
				/* All but what may be the start of a delimiter is content. */
				keep = mp->dlen - 1;
				if (mp->len > keep) {
					if (s_part_content(mp, mp->buf, mp->len - keep))
						return mp->failed;
					s_consume(mp, mp->len - keep);
				}
				return 0;
			}
			if (s_part_content(mp, mp->buf, (size_t)(p - mp->buf)) || s_part_end(mp))
				return mp->failed;
			s_consume(mp, (size_t)(p - mp->buf) + mp->dlen);
			mp->state = MP_AFTER_DELIM;
			break;
		case MP_DONE:
			mp->len = 0;
			return 0;
		}
	}
}

int multipart_feed(multipart_t *mp, const char *data, size_t len, kanal_error_t *err)
{
	if (!mp->failed && len) {
		if (mp->len + len > mp->cap) {
			size_t cap = mp->cap ? mp->cap : 4096;
			char *grown;
			while (cap < mp->len + len)
				cap *= 2;
			if (!(grown = realloc(mp->buf, cap)))
				return s_fail(mp, KANAL_ENOMEM, NULL, "out of memory");
			mp->buf = grown;
			mp->cap = cap;
		}
		memcpy(mp->buf + mp->len, data, len);
		mp->len += len;
		s_run(mp);
	}
	if (mp->failed && err)
		*err = mp->fail_err;
	return mp->failed;
}

int multipart_finish(multipart_t *mp, kanal_msg_t **out, kanal_error_t *err)
{
	char *attr = NULL, *data_text = NULL;
	size_t alen = 0;
	json_t *data = NULL;
	kanal_msg_t *msg = NULL;
	int rc;

	*out = NULL;
	if (!mp->failed && mp->state != MP_DONE)
		s_malformed(mp);
	if (!mp->failed && !mp->have_event)
		s_fail(mp, KANAL_EINVALID, NULL,
		       "no part named 'event' (the structured CloudEvent; the other parts are its "
		       "files)");
	if (mp->failed) {
		*err = mp->fail_err;
		return mp->failed;
	}
	rc = kanal_msg_parse(mp->event, mp->event_len, mp->max_event_size, &msg, err);
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
	for (size_t i = 0; attr && i < mp->n_refs; i++) {
		const file_ref_t *f = &mp->refs[i];
		char *more;

		rc = s_add_ref(data, f->name, &f->ref);
		if (rc == KANAL_EINVAL)
			kanal_error_set(err, NULL, 0, 0, "data",
					"data.%s is not an array: it "
					"cannot take the references of the files named so",
					f->name);
		if (rc < 0)
			goto out;
		if (!(more = realloc(attr, alen + 1 + strlen(f->ref.uri) + 1))) {
			rc = KANAL_ENOMEM;
			goto out;
		}
		attr = more;
		alen += (size_t)sprintf(attr + alen, "%s%s", alen ? " " : "", f->ref.uri);
	}
	if (!attr) {
		rc = KANAL_ENOMEM;
		goto out;
	}
	data_text = json_dumps(data, JSON_COMPACT);
	rc = data_text ? kanal_msg_set_data_json(msg, data_text, strlen(data_text)) : KANAL_ENOMEM;
	if (rc == 0 && alen)
		rc = kanal_msg_set_attr(msg, KANAL_BLOB_ATTRIBUTE, attr, err);
	if (rc == 0 && kanal_msg_size(msg) > mp->max_event_size) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"the event with its files' references is "
				"larger than max_event_size (%zu bytes)",
				mp->max_event_size);
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
