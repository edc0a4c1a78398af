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
 * in-process hop never serialises an event. Who owns a message pointer is part of each
 * frame's contract:
 *   D  router → instance   msg borrowed by the instance until it sends the O frame
 *   O  instance → router   reply (if any) given to the router
 *   E  instance → router   msg given to the router
 *   Q  instance → router   request msg given to the router
 *   P  router → instance   reply msg given to the requester (destroyed if stale)
 *   A  router → instance   acknowledges `count` earlier E frames
 *   X  router → instance   stop emitting (shutdown phase 1); instance answers C on emit
 *   S  router → instance   stop the plugin (shutdown phase 2), by deadline_ms
 *   N  instance → router   (on emit) a happening for the event stream, e.g. an isolated
 *                          instance's plugin host crashed or restarted (isolation.c)
 */
#ifndef KANAL_BUS_H
#define KANAL_BUS_H

#include <stdint.h>
#include <kanal/kanal.h>

#define BUS_DELIVER_ENDPOINT "inproc://kanal-deliver"
#define BUS_EMIT_ENDPOINT "inproc://kanal-emit"
#define BUS_CTL_ENDPOINT "inproc://kanal-ctl"

/* Emits an instance may have sent and not yet had acknowledged. */
#define BUS_EMIT_WINDOW 256
/* How long kanal_emit waits for the window to open before answering KANAL_EBUSY. */
#define BUS_EMIT_WAIT_MS 200
/* Deliveries the router keeps in flight to one instance. */
#define BUS_DELIVER_WINDOW 32

enum bus_cmd {
	BUS_DELIVER = 'D',
	BUS_OUTCOME = 'O',
	BUS_EMIT = 'E',
	BUS_ACK = 'A',
	BUS_REQUEST = 'Q',
	BUS_REPLY = 'P',
	BUS_CLOSE_EMITS = 'X',
	BUS_CLOSED = 'C',
	BUS_STOP = 'S',
	BUS_NOTICE = 'N',
};

typedef struct bus_deliver {
	uint8_t cmd;
	uint8_t is_request;
	int32_t attempt;
	uint64_t id;
	kanal_msg_t *msg;
	const char *route; /* owned by the routing table, which outlives its deliveries */
} bus_deliver_t;

typedef struct bus_outcome {
	uint8_t cmd;
	int32_t outcome;
	uint64_t id;
	int64_t retry_after_ms;
	kanal_msg_t *reply;
	char error[512]; /* sent up to its NUL */
} bus_outcome_t;

typedef struct bus_emit {
	uint8_t cmd;
	kanal_msg_t *msg;
} bus_emit_t;

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

typedef struct bus_stop {
	uint8_t cmd;
	int64_t deadline_ms;
} bus_stop_t;

/* A happening the router publishes on the event stream as "<kind> <instance>" with the
 * JSON object `detail` merged into the payload. Plain text, so nothing needs freeing if
 * the router never reads it. It must fit the router's emit-socket buffer. */
typedef struct bus_notice {
	uint8_t cmd;
	char kind[23];     /* "plugin.crashed", "plugin.restarted" */
	char detail[136];  /* a JSON object, e.g. {"cause":"signal","signal":11} */
} bus_notice_t;

_Static_assert(sizeof(bus_notice_t) <= sizeof(bus_request_t),
	       "a notice must fit the router's emit-socket buffer");

#endif
