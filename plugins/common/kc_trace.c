/*
 * plugins/common/kc_trace.c — W3C Trace Context values and the span ids kanald and the
 * connectors agree on; see kc_trace.h.
 */
#include "kc_trace.h"

#include <stdio.h>
#include <string.h>

static int s_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* upper case is not allowed either */
}

/* Reads n bytes written as 2n lower-case hex digits. Returns false on any other char. */
static bool s_unhex(const char *p, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = s_hex(p[2 * i]), lo = s_hex(p[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static bool s_all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

int kc_traceparent_parse(const char *text, kc_trace_ctx_t *out)
{
	uint8_t version;
	size_t len;

	if (!text)
		return KANAL_EINVALID;
	len = strlen(text);
	if (len < KC_TRACEPARENT_LEN || !s_unhex(text, &version, 1) || version == 0xff)
		return KANAL_EINVALID;
	/* Version 00 has exactly four fields; a later version may add some after a '-'. */
	if (version == 0 ? len != KC_TRACEPARENT_LEN
			 : len > KC_TRACEPARENT_LEN && text[KC_TRACEPARENT_LEN] != '-')
		return KANAL_EINVALID;
	if (text[2] != '-' || text[35] != '-' || text[52] != '-')
		return KANAL_EINVALID;
	if (!s_unhex(text + 3, out->trace_id, 16) || !s_unhex(text + 36, out->parent_id, 8) ||
	    !s_unhex(text + 53, &out->flags, 1))
		return KANAL_EINVALID;
	if (s_all_zero(out->trace_id, 16) || s_all_zero(out->parent_id, 8))
		return KANAL_EINVALID;
	return 0;
}

static void s_put_hex(char *out, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
}

void kc_traceparent_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags,
			   char out[KC_TRACEPARENT_LEN + 1])
{
	memcpy(out, "00-", 3);
	s_put_hex(out + 3, trace_id, 16);
	out[35] = '-';
	s_put_hex(out + 36, span_id, 8);
	out[52] = '-';
	s_put_hex(out + 53, &flags, 1);
	out[KC_TRACEPARENT_LEN] = '\0';
}

static bool s_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
	       c == '*' || c == '/' || c == '@';
}

/* One list member, blanks around it already trimmed: key=value. */
static bool s_member_valid(const char *p, size_t n)
{
	const char *eq = memchr(p, '=', n);
	size_t klen, vlen;

	if (!eq)
		return false;
	klen = (size_t)(eq - p);
	vlen = n - klen - 1;
	if (klen == 0 || klen > 256 || vlen == 0 || vlen > 256)
		return false;
	if (!((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= '0' && p[0] <= '9')))
		return false;
	for (size_t i = 0; i < klen; i++)
		if (!s_key_char(p[i]))
			return false;
	for (size_t i = 0; i < vlen; i++)
		if (eq[1 + i] == ',' || eq[1 + i] == '=')
			return false;
	return eq[vlen] != ' '; /* the value's last character is not a blank */
}

bool kc_tracestate_valid(const char *text)
{
	size_t members = 0;
	const char *p;

	if (!text || strlen(text) > KC_TRACESTATE_MAX)
		return false;
	for (p = text; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			return false;
	for (p = text;;) {
		const char *end = strchr(p, ','), *a = p, *b;

		if (!end)
			end = p + strlen(p);
		b = end;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		if (a < b) {
			if (++members > 32 || !s_member_valid(a, (size_t)(b - a)))
				return false;
		}
		if (!*end)
			break;
		p = end + 1;
	}
	return true;
}

bool kc_trace_adopt(kanal_msg_t *msg, const char *traceparent, const char *tracestate)
{
	kc_trace_ctx_t tc;

	if (!msg || !traceparent || kanal_msg_attr(msg, "traceparent"))
		return false;
	if (kc_traceparent_parse(traceparent, &tc) != 0)
		return false;
	/* A later version's extra fields are not ours to pass on: it goes on as version 00,
	 * which every receiver reads. */
	{
		char tp[KC_TRACEPARENT_LEN + 1];
		kc_traceparent_format(tc.trace_id, tc.parent_id, tc.flags, tp);
		if (kanal_msg_set_attr(msg, "traceparent", tp, NULL) != 0)
			return false;
	}
	if (tracestate && *tracestate && kc_tracestate_valid(tracestate))
		kanal_msg_set_attr(msg, "tracestate", tracestate, NULL);
	return true;
}

/* FNV-1a over the bytes, then a SplitMix64 finaliser: cheap, and well spread for ids. */
static uint64_t s_fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

void kc_trace_span_id(const uint8_t trace_id[16], const char *const *parts, size_t n,
		      uint64_t number, uint8_t out[8])
{
	uint64_t h = s_fnv(0xcbf29ce484222325ULL, trace_id, 16);

	for (size_t i = 0; i < n; i++) {
		const char *s = parts[i] ? parts[i] : "";
		h = s_fnv(h, s, strlen(s) + 1); /* with its NUL: "ab","c" differs from "a","bc" */
	}
	h = s_fnv(h, &number, sizeof number);
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	if (!h)
		h = 1; /* an all-zero id is invalid */
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(h >> (56 - 8 * i));
}

void kc_trace_delivery_span(const uint8_t trace_id[16], uint64_t delivery_id, int attempt,
			    uint8_t out[8])
{
	char n[16];
	const char *parts[2] = { "delivery", n };

	snprintf(n, sizeof n, "%d", attempt);
	kc_trace_span_id(trace_id, parts, 2, delivery_id, out);
}

bool kc_trace_delivery_header(const kanal_ctx_t *ctx, const kanal_msg_t *msg,
			      char out[KC_TRACEPARENT_LEN + 1])
{
	kc_trace_ctx_t tc;
	uint8_t span[8];

	if (kc_traceparent_parse(kanal_msg_attr(msg, "traceparent"), &tc) != 0)
		return false;
	kc_trace_delivery_span(tc.trace_id, kanal_delivery_id(ctx), kanal_delivery_attempt(ctx),
			       span);
	kc_traceparent_format(tc.trace_id, span, tc.flags, out);
	return true;
}
