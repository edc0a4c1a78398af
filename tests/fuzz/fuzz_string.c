/*
 * tests/fuzz/fuzz_string.c — the CloudEvents String rules (kanal__msg_check_string) and the
 * log line escaper (kanal__log_escape). Whatever the bytes, an attribute accepts them
 * exactly when the String check does, an accepted text holds no control character (C0,
 * DEL, C1) and survives a JSON round trip unchanged, and an escaped log text is printable,
 * bounded, and the same when escaped again.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

#include "host.h"
#include "msg_int.h"

/* An independent look for what a String must never hold: C0 controls, DEL and the C1
 * controls (U+0080-U+009F, UTF-8 C2 80 to C2 9F). */
static int s_has_control(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] < 0x20 || p[i] == 0x7F)
			return 1;
		if (p[i] == 0xC2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9F)
			return 1;
	}
	return 0;
}

static void s_check_attribute(const char *text, size_t len)
{
	const char *why = kanal__msg_check_string(text, len);
	kanal_msg_t *msg, *again = NULL;
	kanal_error_t err;
	char *json;

	if (!why && s_has_control((const unsigned char *)text, len))
		abort(); /* a control character passed as a String */
	if (memchr(text, '\0', len))
		return; /* the C API takes NUL-terminated text */
	msg = kanal_msg_new("fuzz.string", "fuzz", "f-1");
	if (!msg)
		return;
	/* Core and extension attributes follow the one rule; a core attribute (subject) must
	 * also not be empty, as CloudEvents says, where an extension may be. */
	if ((kanal_msg_set_attr(msg, "subject", text, NULL) == 0) != (why == NULL && len > 0) ||
	    (kanal_msg_set_attr(msg, "note", text, NULL) == 0) != (why == NULL))
		abort();
	if (!why && len > 0) {
		json = kanal_msg_to_json(msg, NULL);
		if (!json)
			abort();
		kanal_error_clear(&err);
		if (kanal_msg_parse(json, strlen(json), 0, &again, &err) != 0 ||
		    strcmp(kanal_msg_subject(again), text) ||
		    strcmp(kanal_msg_attr(again, "note"), text))
			abort(); /* an accepted String reads back the same */
		kanal_msg_destroy(&again);
		kanal_free(json);
	}
	kanal_msg_destroy(&msg);
}

static void s_check_escape(const char *text, size_t len)
{
	size_t size = 4 * len + 1, n;
	char *once = malloc(size), *twice = malloc(size);

	if (!once || !twice)
		goto done;
	n = kanal__log_escape(once, size, text, len);
	if (n != strlen(once) || n > 4 * len)
		abort();
	if (s_has_control((const unsigned char *)once, n))
		abort(); /* a log text must be printable */
	if (kanal__log_escape(twice, size, once, n) != n || memcmp(once, twice, n))
		abort(); /* escaping escaped text changes nothing */
done:
	free(once);
	free(twice);
}

FUZZ_TARGET(string)
{
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	s_check_attribute(text, size);
	s_check_escape(text, size);
	free(text);
	return 0;
}
