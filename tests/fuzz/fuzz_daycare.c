/*
 * tests/fuzz/fuzz_daycare.c — the daycare connector's reading of the upstream API: a page of
 * registrations (JSON) as the daycare system answers it, each registration mapped to its
 * event as the poller does. What must hold: whatever the page holds, a mapped event is a
 * valid CloudEvent with no CPR number in a context attribute.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <kanal/kanal.h>

#include "../../plugins/daycare/daycare.h"
#include "msg_int.h"

FUZZ_TARGET(daycare)
{
	daycare_t d = { .instance = "daycare" };
	json_t *page = json_loadb((const char *)data, size, 0, NULL), *reg;
	size_t i;

	json_array_foreach(json_object_get(page, "registrations"), i, reg)
	{
		char why[256], attr[64];
		kanal_msg_t *msg = poll_map_registration(&d, reg, why, sizeof why);
		if (msg) {
			char *json = kanal_msg_to_json(msg, NULL);
			kanal_msg_t *again = NULL;
			if (!json || kanal_msg_parse(json, strlen(json), 0, &again, NULL) != 0 ||
			    kanal__msg_context_cpr(msg, attr, sizeof attr))
				abort(); /* an invalid event, or a CPR number in an attribute */
			kanal_msg_destroy(&again);
			kanal_free(json);
			kanal_msg_destroy(&msg);
		} else if (kanal_cpr_find(why, strlen(why), &(size_t){ 0 }, &(size_t){ 0 })) {
			abort(); /* an error that quotes the child's number */
		}
	}
	json_decref(page);
	return 0;
}
