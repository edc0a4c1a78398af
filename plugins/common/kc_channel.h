/*
 * plugins/common/kc_channel.h — which channel of which inquiry area carried an event, for
 * the status a connector reports. kanald puts it on every delivery of a route with `area:`
 * (docs/routes.md#channels-per-inquiry-area): the extension attributes kanalarea (the area)
 * and kanalchannelrank (`primary` for the route's `to`, `secondary` for its `fallback`). A
 * connector that reports an outcome (post.letter.status …) copies them into the status's
 * data as `area` and `channel_rank`, beside its own `channel` and `reason`, so that the
 * status says which channel was used and why, and a measure can count by area and channel.
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a) and compiled with hidden visibility. Functions are prefixed
 * kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_KC_CHANNEL_H
#define KANAL_PLUGINS_KC_CHANNEL_H

#include <jansson.h>
#include <kanal/kanal.h>

/* The attributes kanald sets on a delivery of a route with `area:`. */
#define KC_CHANNEL_AREA_ATTR "kanalarea"
#define KC_CHANNEL_RANK_ATTR "kanalchannelrank"

/* Sets data.area and data.channel_rank of status from the delivery `delivered` carries;
 * does nothing when it carries none (a route without `area:`). Returns 0, or a negative
 * code from kanal_msg_data_set_str. Ownership: borrows delivered; changes status. */
int kc_channel_stamp(const kanal_msg_t *delivered, kanal_msg_t *status);

/* The same for a status whose data is being built as a JSON object: sets data.area and
 * data.channel_rank. Returns 0 or KANAL_ENOMEM. Ownership: borrows delivered; changes
 * data. */
int kc_channel_stamp_json(const kanal_msg_t *delivered, json_t *data);

#endif
