/*
 * plugins/common/kc_status.h — the status a connector reports about an event it delivered
 * (post.letter.status, child.report.confirmed …).
 *
 * Emitting it: kc_status_emit waits out a busy bus for a little while (bounded), since an
 * outcome the sender must hear of should not be lost to a moment of backpressure.
 *
 * Which channel of which inquiry area carried the event: kanald puts it on every delivery
 * of a route with `area:` (docs/routes.md#channels-per-inquiry-area) — the extension
 * attributes kanalarea (the area) and kanalchannelrank (`primary` for the route's `to`,
 * `secondary` for its `fallback`). kc_status_channel copies them into the status's data as
 * `area` and `channel_rank`, beside the connector's own `channel` and `reason`, so that the
 * status says which channel was used and why, and a measure can count by area and channel.
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a) and compiled with hidden visibility. Functions are prefixed
 * kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_KC_STATUS_H
#define KANAL_PLUGINS_KC_STATUS_H

#include <jansson.h>
#include <kanal/kanal.h>

/* The attributes kanald sets on a delivery of a route with `area:`. */
#define KC_STATUS_AREA_ATTR "kanalarea"
#define KC_STATUS_RANK_ATTR "kanalchannelrank"

/* A new status of `type` about the event `cause`: id "<cause's id><id_suffix>" (stable, so
 * a redelivered event's second status is a duplicate the bus drops), source the instance,
 * time now, causationid the cause's id, correlationid the cause's (else its id). Returns it,
 * or NULL when out of memory. Ownership: borrows all; the message is the caller's. */
kanal_msg_t *kc_status_new(kanal_ctx_t *ctx, const char *type, const kanal_msg_t *cause,
			   const char *id_suffix);

/* Emits *status_p, trying again every 50 ms for up to 2 s while the bus answers
 * KANAL_EBUSY. Returns 0 when the bus took it or already had it (KANAL_EDUPLICATE: a
 * redelivered event's status), else kanal_emit's last code. From the instance's thread.
 * Ownership: takes *status_p, always, and sets it to NULL. */
int kc_status_emit(kanal_ctx_t *ctx, kanal_msg_t **status_p);

/* Sets data.area and data.channel_rank of status from the delivery `delivered` carries;
 * does nothing when it carries none (a route without `area:`). Returns 0, or a negative
 * code from kanal_msg_data_set_str. Ownership: borrows delivered; changes status. */
int kc_status_channel(const kanal_msg_t *delivered, kanal_msg_t *status);

/* The same for a status whose data is being built as a JSON object: sets data.area and
 * data.channel_rank. Returns 0 or KANAL_ENOMEM. Ownership: borrows delivered; changes
 * data. */
int kc_status_channel_json(const kanal_msg_t *delivered, json_t *data);

#endif
