/*
 * tests/fuzz/fuzz_cpr.c — CPR detection and masking on arbitrary text. What must hold: after
 * kanal_cpr_redact, kanal_cpr_find finds no clear number; in-place redaction keeps the
 * length; parse never accepts what valid() refuses.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

FUZZ_TARGET(cpr)
{
	char *text = malloc(size + 1), *red;
	size_t off, len;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	red = kanal_cpr_redact(text, size);
	if (red) {
		if (kanal_cpr_find(red, strlen(red), &off, &len))
			abort(); /* a clear number survived redaction */
		kanal_free(red);
	}
	{
		size_t n = strlen(text);
		(void)kanal_cpr_redact_inplace(text);
		if (strlen(text) != n || kanal_cpr_find(text, n, &off, &len))
			abort();
	}
	if (size <= 11) {
		char mask[16];
		kanal_error_t err;
		memcpy(text, data, size);
		text[size] = '\0';
		kanal_error_clear(&err);
		if ((kanal_cpr_parse(text, NULL, &err) == 0) != kanal_cpr_valid(text))
			abort();
		(void)kanal_cpr_mask(text, mask, sizeof mask);
	}
	free(text);
	return 0;
}
