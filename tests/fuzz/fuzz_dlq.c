/*
 * tests/fuzz/fuzz_dlq.c — the dead-letter records kanalctl reads: the input is kanald's
 * reply to dlq.list or dlq.show as it arrives on the admin socket, printed as `kanalctl dlq
 * list` (its "items") and `kanalctl dlq show` (its "item", masked and --clear) print it.
 * What must hold: no crash whatever a record holds (fields absent, null, of another type,
 * huge; items that are not objects); no control character but the line ends reaches the
 * terminal; the masked output holds no clear CPR number.
 */
#include "fuzz.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

#include "../../cli/kanalctl.h"

/* Aborts when the printed text holds a control character other than a line end, or, when
 * masked, a clear CPR number. */
static void s_check(const char *text, size_t len, bool masked)
{
	size_t off, n;

	for (size_t i = 0; i < len; i++)
		if ((unsigned char)text[i] < 0x20 && text[i] != '\n')
			abort(); /* a peer's text could move the cursor or forge a line */
	if (masked && kanal_cpr_find(text, len, &off, &n))
		abort(); /* a clear number reached the terminal */
}

FUZZ_TARGET(dlq)
{
	json_t *reply = json_loadb((const char *)data, size, 0, NULL), *items, *item;
	char *text = NULL;
	size_t len = 0;
	FILE *out;

	/* kanalctl refuses a reply that is not a JSON object before printing anything. */
	if (!json_is_object(reply)) {
		json_decref(reply);
		return 0;
	}
	items = json_object_get(reply, "items");
	item = json_object_get(reply, "item");
	if (json_is_array(items) && (out = open_memstream(&text, &len))) {
		ctl_dlq_print_list(out, items);
		fclose(out);
		s_check(text, len, true);
		free(text);
	}
	for (int clear = 0; clear < 2 && json_is_object(item); clear++) {
		if (!(out = open_memstream(&text, &len)))
			break;
		ctl_dlq_print_letter(out, item, clear);
		fclose(out);
		s_check(text, len, !clear);
		free(text);
	}
	json_decref(reply);
	return 0;
}
