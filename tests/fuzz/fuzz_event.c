/*
 * tests/fuzz/fuzz_event.c — the CloudEvents parser and the gateway's frame decoding: a
 * frame is one event or a batch (kanal_json_is_batch decides, as the gateway does); every
 * event that parses must serialise, parse again to the same attributes, and pass the
 * privacy check without fault.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

#include "msg_int.h"

/* Whatever parses must survive a round trip with the same id, source and type. */
static void s_round_trip(const kanal_msg_t *msg)
{
	char attr[64];
	size_t len = 0;
	char *json = kanal_msg_to_json(msg, &len);
	kanal_msg_t *again = NULL;
	kanal_error_t err;

	(void)kanal__msg_context_cpr(msg, attr, sizeof attr);
	(void)kanal_msg_size(msg);
	if (!json)
		return;
	if (kanal_msg_parse(json, len, 0, &again, &err) != 0 ||
	    strcmp(kanal_msg_id(msg), kanal_msg_id(again)) ||
	    strcmp(kanal_msg_source(msg), kanal_msg_source(again)) ||
	    strcmp(kanal_msg_type(msg), kanal_msg_type(again)))
		abort(); /* a serialised event that does not parse back is a bug */
	kanal_msg_destroy(&again);
	kanal_free(json);
}

FUZZ_TARGET(event)
{
	const char *text = (const char *)data;
	kanal_error_t err;

	if (kanal_json_is_batch(text, size)) {
		kanal_batch_t *batch = NULL;
		if (kanal_batch_parse(text, size, 65536, &batch, &err) == 0) {
			for (size_t i = 0; i < batch->count; i++)
				s_round_trip(batch->msgs[i]);
			kanal_batch_destroy(&batch);
		}
	} else {
		kanal_msg_t *msg = NULL;
		if (kanal_msg_parse(text, size, 65536, &msg, &err) == 0) {
			char *d = kanal_msg_data_json(msg, NULL);
			kanal_free(d);
			s_round_trip(msg);
			kanal_msg_destroy(&msg);
		}
	}
	return 0;
}
