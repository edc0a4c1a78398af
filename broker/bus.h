/*
 * broker/bus.h — the in-process protocol between the router thread and the instance threads.
 *
 * Each instance thread has two DEALER sockets whose routing id is the instance name: one
 * connected to the router's delivery ROUTER (deliveries in, outcomes out) and one to the
 * emit ROUTER (emits and requests out, acks and replies in). Keeping them apart lets an
 * instance block in kanal_emit or kanal_request waiting for the router without having to
 * park deliveries that arrive meanwhile.
 *
 * Frames are the fixed structs below, copied whole. Messages cross by pointer — an
 * in-process hop never serialises an event. The hot frames carry batches: one ZeroMQ
 * message holds up to BUS_BATCH emits (E), deliveries (D) or outcomes (R), so that the
 * cost of a hop (a lock-free pipe write, an eventfd wake-up, a poll) is shared by the
 * events of a batch instead of paid by each (docs/design/bus-batching.md). Who owns a
 * message pointer is part of each frame's contract:
 *   D  router → instance   `count` deliveries; each msg borrowed by the instance until it
 *                          answers that delivery's id in an R (or O) frame
 *   R  instance → router   `count` outcomes; replies and error texts given to the router
 *   O  instance → router   one outcome with its error inline (isolation.c); reply given
 *   E  instance → router   `count` msgs given to the router, in emit order
 *   Q  instance → router   request msg given to the router
 *   P  router → instance   reply msg given to the requester (destroyed if stale)
 *   A  router → instance   acknowledges `count` earlier emits
 *   X  router → instance   stop emitting (shutdown phase 1); instance answers C on emit
 *   S  router → instance   stop the plugin (shutdown phase 2), by deadline_ms
 *   K  router → instance   the caller of delivery `id` (an enrich request) gave up: a
 *                          deferred request is cancelled (kanal_request_defer) and
 *                          answered RETRY at once; anything else ignores it
 *   N  instance → router   (on emit) a happening for the event stream, e.g. an isolated
 *                          instance's plugin host crashed or restarted (isolation.c)
 */
#ifndef KANAL_BUS_H
#define KANAL_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <kanal/kanal.h>

#define BUS_DELIVER_ENDPOINT "inproc://kanal-deliver"
#define BUS_EMIT_ENDPOINT "inproc://kanal-emit"
#define BUS_CTL_ENDPOINT "inproc://kanal-ctl"

/* Emits an instance may have sent and not yet had acknowledged. */
#ifndef BUS_EMIT_WINDOW /* -DBUS_EMIT_WINDOW=N to measure another */
#define BUS_EMIT_WINDOW 256
#endif
/* How long kanal_emit waits for the window to open before answering KANAL_EBUSY. */
#define BUS_EMIT_WAIT_MS 200
/* Deliveries the router keeps in flight to one instance. A full destination holds its
 * queue plus this many; tests/integration/test_kanald.c states its refusal bounds from it.
 * 128 lets the instance thread find a whole batch waiting when it wakes (32 made it sleep
 * and wake every 16 deliveries under a flood; docs/design/bus-batching.md). */
#ifndef BUS_DELIVER_WINDOW /* -DBUS_DELIVER_WINDOW=N to measure another */
#define BUS_DELIVER_WINDOW 128
#endif
/* Most items in one E or D frame. */
#ifndef BUS_BATCH /* -DBUS_BATCH=N to measure another */
#define BUS_BATCH 64
#endif
/* An instance reports outcomes in R frames of at most this many — half the window, so
 * that the router can send the next deliveries while the instance works on the rest. An
 * outcome is sent at once when its on_message took BUS_RESULT_SLOW_US or more (batching a
 * slow plugin's outcomes would only delay them), and whatever is held goes out when the
 * instance has no delivery left in hand. */
#define BUS_RESULT_BATCH (BUS_DELIVER_WINDOW / 2 < BUS_BATCH ? BUS_DELIVER_WINDOW / 2 : BUS_BATCH)
#define BUS_RESULT_SLOW_US 100

enum bus_cmd {
	BUS_DELIVER = 'D',
	BUS_OUTCOME = 'O',
	BUS_RESULTS = 'R',
	BUS_EMIT = 'E',
	BUS_ACK = 'A',
	BUS_REQUEST = 'Q',
	BUS_REPLY = 'P',
	BUS_CLOSE_EMITS = 'X',
	BUS_CLOSED = 'C',
	BUS_STOP = 'S',
	BUS_NOTICE = 'N',
	BUS_CANCEL = 'K',
};

/* One delivery of a D frame. */
typedef struct bus_deliver {
	uint64_t id;
	kanal_msg_t *msg;
	const char *route; /* owned by the routing table, which outlives its deliveries */
	int32_t attempt;
	uint8_t is_request;
} bus_deliver_t;

/* D: sent up to its last used item (bus_deliver_batch_len). */
typedef struct bus_deliver_batch {
	uint8_t cmd;
	uint32_t count;
	bus_deliver_t items[BUS_BATCH];
} bus_deliver_batch_t;

#define bus_deliver_batch_len(n)                                                                   \
	(offsetof(bus_deliver_batch_t, items) + (n) * sizeof(bus_deliver_t))

/* One outcome of an R frame. */
typedef struct bus_result {
	uint64_t id;
	int64_t retry_after_ms;
	kanal_msg_t *reply;
	char *error; /* malloc'd, given to the router; NULL: no text */
	int32_t outcome;
} bus_result_t;

/* R: sent up to its last used item (bus_results_len). */
typedef struct bus_results {
	uint8_t cmd;
	uint32_t count;
	bus_result_t items[BUS_BATCH];
} bus_results_t;

#define bus_results_len(n) (offsetof(bus_results_t, items) + (n) * sizeof(bus_result_t))

typedef struct bus_outcome {
	uint8_t cmd;
	int32_t outcome;
	uint64_t id;
	int64_t retry_after_ms;
	kanal_msg_t *reply;
	char error[512]; /* sent up to its NUL */
} bus_outcome_t;

/* E: sent up to its last used msg (bus_emit_len). */
typedef struct bus_emit {
	uint8_t cmd;
	uint32_t count;
	kanal_msg_t *msgs[BUS_BATCH];
} bus_emit_t;

#define bus_emit_len(n) (offsetof(bus_emit_t, msgs) + (n) * sizeof(kanal_msg_t *))

typedef struct bus_ack {
	uint8_t cmd;
	int32_t status;
	uint32_t count;
} bus_ack_t;

typedef struct bus_request {
	uint8_t cmd;
	uint64_t seq;
	int64_t timeout_ms;
	kanal_msg_t *msg;
	char service[128];
} bus_request_t;

typedef struct bus_reply {
	uint8_t cmd;
	int32_t status;
	uint64_t seq;
	kanal_msg_t *reply;
} bus_reply_t;

typedef struct bus_cancel {
	uint8_t cmd;
	uint64_t id;
} bus_cancel_t;

typedef struct bus_stop {
	uint8_t cmd;
	int64_t deadline_ms;
} bus_stop_t;

/* A happening the router publishes on the event stream as "<kind> <instance>" with the
 * JSON object `detail` merged into the payload. Plain text, so nothing needs freeing if
 * the router never reads it. It must fit the router's emit-socket buffer. */
typedef struct bus_notice {
	uint8_t cmd;
	char kind[23];    /* "plugin.crashed", "plugin.restarted" */
	char detail[136]; /* a JSON object, e.g. {"cause":"signal","signal":11} */
} bus_notice_t;

/* Every frame the router reads from its emit socket fits this. */
typedef union bus_emit_frame {
	uint8_t cmd;
	bus_emit_t emit;
	bus_request_t request;
	bus_notice_t notice;
} bus_emit_frame_t;

#endif
