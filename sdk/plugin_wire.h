/*
 * sdk/plugin_wire.h — the wire between kanald and kanal-plugin-host, the process an
 * instance with `isolation: process` runs in (docs/design/isolation.md). Private to kanal,
 * like host.h: plugins never see it.
 *
 * kanald's proxy thread for the instance binds a ROUTER socket at
 * ipc://<run_dir>/<instance>.ipc; the plugin host connects a DEALER whose routing id is the
 * token kanald handed it in the environment (KANAL_WIRE_TOKEN_ENV). The proxy talks to that
 * routing id only, so a host from an earlier incarnation, or a stranger, is never answered.
 *
 * Every message is two or three frames:
 *   [kind]   one byte, a KANAL_WIRE_* letter
 *   [head]   a JSON object with the message's fields (see the list below)
 *   [event]  for some kinds: one CloudEvent in the JSON structured format
 * Events are serialised only here, at the process boundary.
 */
#ifndef KANAL_PLUGIN_WIRE_H
#define KANAL_PLUGIN_WIRE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <kanal/kanal.h>

/* The environment variable that carries the host's routing id (a random token). */
#define KANAL_WIRE_TOKEN_ENV "KANAL_PLUGIN_HOST_ID"

enum kanal_wire_kind {
	/* plugin host → kanald */
	KANAL_WIRE_HELLO = 'H',    /* {pid}: connected, waiting for INIT */
	KANAL_WIRE_STARTED = 'R',  /* {status, error, progress}: init and start ran (status 0)
				   * or failed; progress: it writes the shared progress slot */
	KANAL_WIRE_OUTCOME = 'O',  /* {id, outcome, error, retry_after_ms} [+ reply event] */
	KANAL_WIRE_EMIT = 'E',     /* {} + event; answered by ANSWER {status} */
	KANAL_WIRE_FLUSH = 'F',    /* {timeout_ms}; answered by ANSWER {status} */
	KANAL_WIRE_REQUEST = 'Q',  /* {service, timeout_ms} + event; ANSWER {status} [+ reply] */
	KANAL_WIRE_LOG = 'L',      /* {level, line}: no answer */
	KANAL_WIRE_METRIC = 'M',   /* {name, add} or {name, set}: no answer */
	KANAL_WIRE_UPSTREAM = 'U', /* {up}: kanal_upstream_report's change; no answer */
	KANAL_WIRE_BYE = 'B',      /* {}: stopped and destroyed; the process exits next */
	/* kanald → plugin host */
	KANAL_WIRE_INIT = 'I',    /* {file, instance, line, column, options, log_level,
				   *  state_dir, max_event_bytes}: build the config, init, start */
	KANAL_WIRE_DELIVER = 'D', /* {id, attempt, route, is_request} + event */
	KANAL_WIRE_ANSWER = 'A',  /* {status} [+ reply event]: to EMIT, FLUSH or REQUEST */
	KANAL_WIRE_STOP = 'S',    /* {within_ms}: stop, destroy, say BYE, exit */
	/* both ways */
	KANAL_WIRE_PING = 'P', /* {}: the plugin host answers with a PING of its own, from
				   * its loop (not while it waits for an ANSWER) */
};

/* The progress page: a few bytes of shared memory (a memfd kanald creates and the plugin
 * host maps, passed as fd 3 with --progress-fd) that the plugin host writes synchronously,
 * so that kanald knows after a crash what no message may have said: which delivery was in
 * on_message, and which had finished (a ZeroMQ message not yet written when the process
 * died dies with it). Only the plugin host writes; kanald reads after it has reaped it. */
#define KANAL_WIRE_DONE_RING 32
typedef struct kanal_wire_progress {
	uint64_t running;                       /* delivery id in on_message, or 0 */
	uint64_t done_count;                    /* deliveries finished so far */
	uint64_t done_id[KANAL_WIRE_DONE_RING]; /* the last ones: entry count % RING */
	int32_t done_outcome[KANAL_WIRE_DONE_RING];
} kanal_wire_progress_t;

/* One received message. */
typedef struct kanal_wire {
	char peer[64]; /* the sender's routing id (ROUTER side only), else "" */
	char kind;
	json_t *head; /* a JSON object; owned */
	char *event;  /* the event frame, NUL-terminated, or NULL; owned (free) */
	size_t event_len;
} kanal_wire_t;

/* Sends one message on `sock`; `peer` (the routing id to send to) is given on a ROUTER
 * socket and NULL on the DEALER. `head` may be NULL (sent as {}); `event` may be NULL.
 * Returns 0, KANAL_ENOMEM, or KANAL_EIO (errno tells; EHOSTUNREACH: no such peer).
 * Ownership: steals head; borrows event (serialised here). */
int kanal__wire_send(void *sock, const char *peer, char kind, json_t *head,
		     const kanal_msg_t *event);

/* Receives one message without waiting (`routed`: sock is a ROUTER, the first frame is the
 * sender's routing id). Returns 1 and fills *out, 0 when nothing is waiting, KANAL_EPARSE
 * when a malformed message was read and dropped, KANAL_ECLOSED when the ZeroMQ context is
 * being terminated, KANAL_EIO on another socket error. *out is cleared first.
 * Ownership: *out's members are the caller's; release them with kanal__wire_clear. */
int kanal__wire_recv(void *sock, bool routed, kanal_wire_t *out);

/* Frees what a received message holds and zeroes it. Accepts a cleared one. */
void kanal__wire_clear(kanal_wire_t *w);

/* Parses the event frame of w (NULL when it has none, or it is not a valid CloudEvent;
 * `max_bytes` as for kanal_msg_parse). Returns 0 and a new message in *out, or the
 * kanal_msg_parse error (KANAL_EINVAL when there is no event frame) with err filled.
 * Ownership: borrows w; *out is new. */
int kanal__wire_event(const kanal_wire_t *w, size_t max_bytes, kanal_msg_t **out,
		      kanal_error_t *err);

#endif
