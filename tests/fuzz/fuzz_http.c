/*
 * tests/fuzz/fuzz_http.c — the http plugin's binary-mode decoding: ce-* headers and a body
 * from an untrusted client. The input is split into header lines ("name: value") and, after
 * an empty line, the body. What must hold: no crash; an accepted event is a valid
 * CloudEvent that serialises and parses back.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

#include "../../plugins/http/http.h"

FUZZ_TARGET(http)
{
	char *text = malloc(size + 1), *line, *body = NULL;
	binding_header_t headers[32];
	size_t n = 0, body_len = 0;
	const char *ct = NULL;
	kanal_msg_t *msg = NULL;
	kanal_error_t err;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	for (line = text; line && n < 32;) {
		char *nl = strchr(line, '\n'), *colon;
		if (nl)
			*nl = '\0';
		if (!*line) {
			body = nl ? nl + 1 : NULL;
			break;
		}
		if ((colon = strchr(line, ':'))) {
			*colon = '\0';
			headers[n].name = line;
			headers[n].value = colon + 1 + (colon[1] == ' ');
			if (!strcasecmp(line, "content-type"))
				ct = headers[n].value;
			n++;
		}
		line = nl ? nl + 1 : NULL;
	}
	if (body)
		body_len = size - (size_t)(body - text);
	if (binding_binary_decode(headers, n, ct, body ? body : "", body_len, 65536, &msg, &err) ==
	    0) {
		char *json = kanal_msg_to_json(msg, NULL);
		kanal_msg_t *again = NULL;
		if (!json || kanal_msg_parse(json, strlen(json), 0, &again, NULL) != 0)
			abort();
		kanal_msg_destroy(&again);
		kanal_free(json);
		kanal_msg_destroy(&msg);
	}
	free(text);
	return 0;
}
