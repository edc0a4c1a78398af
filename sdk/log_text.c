/*
 * sdk/log_text.c — what a log line may hold. Text in a log line comes from everywhere: event
 * ids, plugin messages, peer replies, file names. A line is read by people and by programs
 * that split on newlines, so whatever is not printable text (control characters, C1
 * controls, broken UTF-8, line and paragraph separators, bidirectional overrides) is
 * written as a visible escape instead: a newline in an event id cannot forge a log line of
 * its own. Used by kanald's log (broker/log.c) and by kanal_log for every plugin host.
 */
#include <stdio.h>
#include <string.h>

#include "host.h"
#include "json_scan.h"

/* True for the code points that are valid text but move or hide what follows: the line
 * and paragraph separators and the bidirectional embeddings, overrides and isolates. */
static bool s_invisible_control(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
	       (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

size_t kanal__log_escape(char *out, size_t size, const char *in, size_t len)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0, o = 0;

	if (!size)
		return 0;
	while (i < len) {
		char esc[12];
		const char *piece = esc;
		size_t n = 1, plen;

		if (p[i] >= 0x20 && p[i] < 0x7F) {
			esc[0] = (char)p[i];
			plen = 1;
		} else if (p[i] == '\n' || p[i] == '\r' || p[i] == '\t') {
			esc[0] = '\\';
			esc[1] = p[i] == '\n' ? 'n' : p[i] == '\r' ? 'r' : 't';
			plen = 2;
		} else if (p[i] < 0x80 || !(n = kanal__utf8_seq(p + i, len - i))) {
			n = 1;
			plen = (size_t)snprintf(esc, sizeof esc, "\\x%02x", p[i]);
		} else {
			uint32_t cp = n == 2 ? p[i] & 0x1F : n == 3 ? p[i] & 0x0F : p[i] & 0x07;

			for (size_t k = 1; k < n; k++)
				cp = (cp << 6) | (p[i + k] & 0x3F);
			if (s_invisible_control(cp)) {
				plen = (size_t)snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
			} else {
				piece = in + i;
				plen = n;
			}
		}
		/* Whole pieces only: a cut escape or UTF-8 sequence would be broken text. */
		if (o + plen >= size)
			break;
		memcpy(out + o, piece, plen);
		o += plen;
		i += n;
	}
	out[o] = '\0';
	return o;
}
