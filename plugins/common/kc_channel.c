/*
 * plugins/common/kc_channel.c — copies a delivery's area and channel rank into the status a
 * connector reports (kc_channel.h).
 */
#include "kc_channel.h"

int kc_channel_stamp(const kanal_msg_t *delivered, kanal_msg_t *status)
{
	const char *area = kanal_msg_attr(delivered, KC_CHANNEL_AREA_ATTR);
	const char *rank = kanal_msg_attr(delivered, KC_CHANNEL_RANK_ATTR);
	int rc;

	if (!area || !*area)
		return 0;
	rc = kanal_msg_data_set_str(status, "area", area);
	if (rc == 0 && rank && *rank)
		rc = kanal_msg_data_set_str(status, "channel_rank", rank);
	return rc;
}

int kc_channel_stamp_json(const kanal_msg_t *delivered, json_t *data)
{
	const char *area = kanal_msg_attr(delivered, KC_CHANNEL_AREA_ATTR);
	const char *rank = kanal_msg_attr(delivered, KC_CHANNEL_RANK_ATTR);

	if (!area || !*area)
		return 0;
	if (json_object_set_new(data, "area", json_string(area)) < 0 ||
	    (rank && *rank && json_object_set_new(data, "channel_rank", json_string(rank)) < 0))
		return KANAL_ENOMEM;
	return 0;
}
