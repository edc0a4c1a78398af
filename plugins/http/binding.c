/*
 * plugins/http/binding.c — the CloudEvents HTTP protocol binding (version 1.0.2), both
 * ways: reading an event sent in the binary content mode (attributes in ce-* headers, the
 * body is the data, Content-Type its datacontenttype) and rendering an event for a POST in
 * the structured or the binary mode.
 *
 * A binary-mode event is turned into the JSON event format text and handed to
 * kanal_msg_parse, so that it is validated by exactly the rules a structured event meets,
 * and an error names the same attribute. The body goes into that text untouched — as the
 * JSON value `data` when the media type is JSON (after checking it is JSON), otherwise as
 * `data_base64` — so the data a destination gets is byte for byte what the client sent.
 */
#include "http.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/evp.h>

/* ---- media types --------------------------------------------------------------------- */

const char *binding_media_type(const char *content_type, char *buf, size_t size)
{
	size_t n = 0;
	const char *p = content_type ? content_type : "";

	while (*p == ' ' || *p == '\t')
		p++;
	while (*p && *p != ';' && *p != ' ' && *p != '\t' && n + 1 < size)
		buf[n++] = (char)tolower((unsigned char)*p++);
	if (size)
		buf[n] = '\0';
	return buf;
}

bool binding_media_is_json(const char *media)
{
	size_t n;

	if (!media || !*media)
		return true;
	if (!strcmp(media, "application/json") || !strcmp(media, "text/json"))
		return true;
	n = strlen(media);
	return n > 5 && !strcmp(media + n - 5, "+json");
}

/* ---- header values --------------------------------------------------------------------- */

static int s_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Checks that s[0..len) is well-formed UTF-8 (no overlong forms, no surrogates, nothing
 * above U+10FFFF) free of control characters (C0, DEL and C1). Returns NULL or the
 * problem. */
static const char *s_utf8_problem(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i];
		unsigned cp;
		size_t n;

		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return "it holds a control character";
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return "it is not valid UTF-8";
		}
		for (size_t k = 1; k <= n; k++) {
			if (i + k >= len || (s[i + k] & 0xc0) != 0x80)
				return "it is not valid UTF-8";
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return "it is not valid UTF-8 (an overlong form or a surrogate)";
		if (cp >= 0x80 && cp <= 0x9f)
			return "it holds a control character";
		i += n + 1;
	}
	return NULL;
}

char *binding_header_decode(const char *value, char *why, size_t why_size)
{
	size_t len = strlen(value), n = 0;
	char *unq = malloc(len + 1), *out = malloc(len + 1);
	const char *p = value, *end = value + len, *problem;

	if (!unq || !out) {
		snprintf(why, why_size, "out of memory");
		goto fail;
	}
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	/* A double-quoted value (RFC 7230 3.2.6), accepted for older senders. */
	if (p < end && *p == '"') {
		p++;
		for (;;) {
			if (p >= end) {
				snprintf(why, why_size, "its double quote is not closed");
				goto fail;
			}
			if (*p == '"')
				break;
			if (*p == '\\' && p + 1 < end)
				p++;
			unq[n++] = *p++;
		}
		if (p + 1 != end) {
			snprintf(why, why_size, "text follows its closing double quote");
			goto fail;
		}
	} else {
		memcpy(unq, p, (size_t)(end - p));
		n = (size_t)(end - p);
	}
	/* One round of percent-decoding. */
	len = 0;
	for (size_t i = 0; i < n; i++) {
		if (unq[i] == '%') {
			int hi = i + 2 < n ? s_hex((unsigned char)unq[i + 1]) : -1;
			int lo = i + 2 < n ? s_hex((unsigned char)unq[i + 2]) : -1;
			if (hi < 0 || lo < 0) {
				snprintf(why, why_size, "a '%%' is not followed by two hex digits");
				goto fail;
			}
			out[len++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			out[len++] = unq[i];
		}
	}
	out[len] = '\0';
	if ((problem = s_utf8_problem((const unsigned char *)out, len))) {
		snprintf(why, why_size, "%s", problem);
		goto fail;
	}
	free(unq);
	return out;
fail:
	free(unq);
	free(out);
	return NULL;
}

char *binding_header_encode(const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(value);
	char *out = malloc(len * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if (*p >= 0x21 && *p <= 0x7e && *p != '"' && *p != '%') {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

/* ---- binary mode in --------------------------------------------------------------------- */

/* A new NUL-terminated base64 text of in[0..len) (OpenSSL), or NULL when out of memory or
 * longer than one call can take (bodies are far smaller: max_body). */
static char *s_base64(const unsigned char *in, size_t len)
{
	char *out;

	if (len > (size_t)INT_MAX / 4 * 3)
		return NULL;
	out = malloc((len + 2) / 3 * 4 + 1);
	if (out)
		EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

/* Appends text[0..len) to the growing buffer *buf (capacity *cap, used *used). */
static int s_append(char **buf, size_t *used, size_t *cap, const char *text, size_t len)
{
	if (*used + len + 1 > *cap) {
		size_t c = *cap ? *cap : 256;
		char *b;
		while (c < *used + len + 1)
			c *= 2;
		if (!(b = realloc(*buf, c)))
			return KANAL_ENOMEM;
		*buf = b;
		*cap = c;
	}
	memcpy(*buf + *used, text, len);
	*used += len;
	(*buf)[*used] = '\0';
	return 0;
}

int binding_binary_decode(const binding_header_t *headers, size_t n, const char *content_type,
			  const char *body, size_t len, size_t max_event_size, kanal_msg_t **out,
			  kanal_error_t *err)
{
	static const char *const required[] = { "specversion", "id", "source", "type" };
	json_t *attrs = json_object();
	char *text = NULL, *attr_text = NULL, *encoded = NULL;
	size_t used = 0, cap = 0;
	char why[160];
	int rc = KANAL_EINVALID;

	*out = NULL;
	if (!attrs)
		return KANAL_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		char name[80];
		char *value;
		size_t k;

		if (strncasecmp(headers[i].name, "ce-", 3))
			continue;
		for (k = 0; headers[i].name[3 + k] && k + 1 < sizeof name; k++)
			name[k] = (char)tolower((unsigned char)headers[i].name[3 + k]);
		name[k] = '\0';
		if (!*name) {
			kanal_error_set(err, "<event>", 0, 0, NULL,
					"header 'ce-' names no attribute");
			goto done;
		}
		if (!strcmp(name, "datacontenttype")) {
			kanal_error_set(err, "<event>", 0, 0, "datacontenttype",
					"binary mode takes the datacontenttype from Content-Type; "
					"a ce-datacontenttype header must not be sent");
			goto done;
		}
		if (!strcmp(name, "data") || !strcmp(name, "data_base64")) {
			kanal_error_set(err, "<event>", 0, 0, name,
					"in binary mode the data is the body, not a header");
			goto done;
		}
		if (json_object_get(attrs, name)) {
			kanal_error_set(err, "<event>", 0, 0, name, "header ce-%s is given twice",
					name);
			goto done;
		}
		if (!(value = binding_header_decode(headers[i].value, why, sizeof why))) {
			kanal_error_set(err, "<event>", 0, 0, name, "header ce-%s: %s", name, why);
			goto done;
		}
		json_object_set_new(attrs, name, json_string(value));
		free(value);
	}
	for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
		if (!json_object_get(attrs, required[i])) {
			kanal_error_set(err, "<event>", 0, 0, required[i],
					"attribute '%s' is missing: a binary-mode event needs the "
					"header ce-%s (or send application/cloudevents+json)",
					required[i], required[i]);
			goto done;
		}
	}
	if (content_type && *content_type)
		json_object_set_new(attrs, "datacontenttype", json_string(content_type));
	if (!(attr_text = json_dumps(attrs, JSON_COMPACT))) {
		rc = KANAL_ENOMEM;
		goto done;
	}
	/* The attributes' object without its closing brace, then the data, then the brace. */
	rc = s_append(&text, &used, &cap, attr_text, strlen(attr_text) - 1);
	if (rc == 0 && len > 0) {
		char media[128];

		binding_media_type(content_type, media, sizeof media);
		if (binding_media_is_json(media)) {
			json_error_t jerr;
			json_t *probe = json_loadb(body, len, JSON_DECODE_ANY, &jerr);

			if (!probe) {
				kanal_error_set(err, "<event>", 0, 0, "data",
						"the body is not valid JSON although Content-Type "
						"says %s: line %d column %d: %s",
						*media ? media : "nothing (JSON assumed)",
						jerr.line, jerr.column, jerr.text);
				rc = KANAL_EINVALID;
				goto done;
			}
			json_decref(probe);
			rc = s_append(&text, &used, &cap, ",\"data\":", 8);
			if (rc == 0)
				rc = s_append(&text, &used, &cap, body, len);
		} else {
			if (!(encoded = s_base64((const unsigned char *)body, len))) {
				rc = KANAL_ENOMEM;
				goto done;
			}
			rc = s_append(&text, &used, &cap, ",\"data_base64\":\"", 16);
			if (rc == 0)
				rc = s_append(&text, &used, &cap, encoded, strlen(encoded));
			if (rc == 0)
				rc = s_append(&text, &used, &cap, "\"", 1);
		}
	}
	if (rc == 0)
		rc = s_append(&text, &used, &cap, "}", 1);
	if (rc < 0)
		goto done;
	rc = kanal_msg_parse(text, used, max_event_size, out, err);
done:
	json_decref(attrs);
	free(encoded);
	free(attr_text);
	free(text);
	return rc;
}

/* ---- rendering out -------------------------------------------------------------------- */

void binding_out_clear(binding_out_t *out)
{
	if (!out)
		return;
	for (size_t i = 0; i < out->n_headers; i++)
		free(out->headers[i]);
	free(out->headers);
	if (out->body_is_malloc)
		free(out->body);
	else
		kanal_free(out->body);
	memset(out, 0, sizeof *out);
}

/* Adds the header line "name: value" (value percent-encoded when `encode`). */
static int s_add_header(binding_out_t *out, const char *name, const char *value, bool encode)
{
	char *enc = encode ? binding_header_encode(value) : NULL;
	char **h;
	char *line = NULL;

	if (encode && !enc)
		return KANAL_ENOMEM;
	if (asprintf(&line, "%s: %s", name, encode ? enc : value) < 0)
		line = NULL;
	free(enc);
	if (!line)
		return KANAL_ENOMEM;
	/* Keep room for the NULL that ends the list. */
	if (!(h = realloc(out->headers, (out->n_headers + 2) * sizeof *h))) {
		free(line);
		return KANAL_ENOMEM;
	}
	out->headers = h;
	h[out->n_headers++] = line;
	h[out->n_headers] = NULL;
	return 0;
}

static int s_add_ext(const char *name, const char *value, void *arg)
{
	char header[96];

	snprintf(header, sizeof header, "ce-%s", name);
	return s_add_header(arg, header, value, true);
}

int binding_render(const kanal_msg_t *msg, bool binary, binding_out_t *out, char *why,
		   size_t why_size)
{
	static const char *const attrs[] = { "specversion", "id",   "source",    "type",
					     "subject",     "time", "dataschema" };
	const char *dct = kanal_msg_datacontenttype(msg);
	char media[128];
	int rc = 0;

	memset(out, 0, sizeof *out);
	if (!binary) {
		out->body = kanal_msg_to_json(msg, &out->len);
		if (!out->body)
			return KANAL_ENOMEM;
		return s_add_header(out, "Content-Type", BINDING_STRUCTURED "; charset=utf-8",
				    false);
	}
	for (size_t i = 0; rc == 0 && i < sizeof attrs / sizeof *attrs; i++) {
		const char *v = kanal_msg_attr(msg, attrs[i]);
		char header[32];

		snprintf(header, sizeof header, "ce-%s", attrs[i]);
		if (v)
			rc = s_add_header(out, header, v, true);
	}
	if (rc == 0)
		rc = kanal_msg_foreach_ext(msg, s_add_ext, out);
	if (rc < 0)
		goto fail;
	binding_media_type(dct, media, sizeof media);
	switch (kanal_msg_data_kind(msg)) {
	case KANAL_DATA_NONE:
		if (dct)
			rc = s_add_header(out, "Content-Type", dct, false);
		break;
	case KANAL_DATA_BINARY: {
		void *bytes = kanal_msg_data_binary(msg, &out->len);
		if (!bytes) {
			rc = KANAL_ENOMEM;
			break;
		}
		out->body = bytes;
		rc = s_add_header(out, "Content-Type", dct ? dct : "application/octet-stream",
				  false);
		break;
	}
	case KANAL_DATA_JSON: {
		const char *str;

		/* Data that is a JSON string under a media type that is not JSON is the text
		 * itself (the JSON event format's rule); any other JSON goes as JSON. */
		if (!binding_media_is_json(media) && kanal_msg_data_str(msg, NULL, &str) == 0) {
			out->len = strlen(str);
			if (!(out->body = malloc(out->len + 1))) {
				rc = KANAL_ENOMEM;
				break;
			}
			memcpy(out->body, str, out->len + 1);
			out->body_is_malloc = true;
		} else {
			out->body = kanal_msg_data_json(msg, NULL);
			if (!out->body) {
				rc = KANAL_ENOMEM;
				break;
			}
			out->len = strlen(out->body);
		}
		rc = s_add_header(out, "Content-Type", dct ? dct : "application/json", false);
		break;
	}
	}
	if (rc == 0)
		return 0;
fail:
	snprintf(why, why_size, "%s", kanal_strerror(rc));
	binding_out_clear(out);
	return rc;
}
