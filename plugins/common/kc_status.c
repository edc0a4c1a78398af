/*
 * plugins/common/kc_status.c — emitting a connector's status and stamping it with the
 * delivery's channel (kc_status.h).
 */
#include "kc_status.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define EMIT_BUSY_TRIES 40 /* times 50 ms: how long a busy bus may hold up a status */

kanal_msg_t *kc_status_new(kanal_ctx_t *ctx, const char *type, const kanal_msg_t *cause,
			   const char *id_suffix)
{
	const char *correlation = kanal_msg_attr(cause, "correlationid");
	char *id = NULL, now[40];
	kanal_msg_t *out;

	if (asprintf(&id, "%s%s", kanal_msg_id(cause), id_suffix) < 0)
		return NULL;
	out = kanal_msg_new(type, kanal_instance_name(ctx), id);
	free(id);
	kanal_time_rfc3339(kanal_wall_ms(), now, sizeof now);
	if (out && (kanal_msg_set_attr(out, "time", now, NULL) != 0 ||
		    kanal_msg_set_attr(out, "causationid", kanal_msg_id(cause), NULL) != 0 ||
		    kanal_msg_set_attr(out, "correlationid",
				       correlation ? correlation : kanal_msg_id(cause), NULL) != 0))
		kanal_msg_destroy(&out);
	return out;
}

int kc_status_emit(kanal_ctx_t *ctx, kanal_msg_t **status_p)
{
	int rc = KANAL_EBUSY;

	for (int i = 0; i < EMIT_BUSY_TRIES && rc == KANAL_EBUSY && *status_p; i++) {
		/* kanal_emit takes the message even when it refuses it: offer a copy. */
		kanal_msg_t *copy = kanal_msg_dup(*status_p);
		if (!copy) {
			rc = KANAL_ENOMEM;
			break;
		}
		if (i > 0)
			usleep(50 * 1000);
		rc = kanal_emit(ctx, &copy);
	}
	kanal_msg_destroy(status_p);
	return rc == KANAL_EDUPLICATE ? 0 : rc;
}

int kc_status_channel(const kanal_msg_t *delivered, kanal_msg_t *status)
{
	const char *area = kanal_msg_attr(delivered, KC_STATUS_AREA_ATTR);
	const char *rank = kanal_msg_attr(delivered, KC_STATUS_RANK_ATTR);
	int rc;

	if (!area || !*area)
		return 0;
	rc = kanal_msg_data_set_str(status, "area", area);
	if (rc == 0 && rank && *rank)
		rc = kanal_msg_data_set_str(status, "channel_rank", rank);
	return rc;
}

int kc_status_channel_json(const kanal_msg_t *delivered, json_t *data)
{
	const char *area = kanal_msg_attr(delivered, KC_STATUS_AREA_ATTR);
	const char *rank = kanal_msg_attr(delivered, KC_STATUS_RANK_ATTR);

	if (!area || !*area)
		return 0;
	if (json_object_set_new(data, "area", json_string(area)) < 0 ||
	    (rank && *rank && json_object_set_new(data, "channel_rank", json_string(rank)) < 0))
		return KANAL_ENOMEM;
	return 0;
}
