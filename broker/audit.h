/*
 * broker/audit.h — the operator audit log: one JSON line per operator action (dlq replay,
 * drop and show --clear; instance pause, resume and restart; reload), saying who, from
 * where, what, when and with what outcome. The file is <state_dir>/audit.log, created 0600
 * and only ever appended to; each action is also published on the event stream as
 * `audit.<action>` without the person (docs/security.md, "Audit of operator actions").
 */
#ifndef KANAL_AUDIT_H
#define KANAL_AUDIT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

#include "stream.h"

/* Who asked, as the admin socket or the HTTP admin endpoint saw it. */
typedef struct audit_actor {
	char who[96];  /* a local user's name, "admin token", "unknown" */
	char via[16];  /* "ipc", "tcp", "http" */
	char from[96]; /* "pid 4711", an address */
} audit_actor_t;

/* Appends {"time","who","via","from","action","target","outcome"[,"error"]} to
 * <state_dir>/audit.log (opened on first use, created 0600, fdatasync'd) and publishes
 * `audit.<action>` with the action, via, target and outcome. Returns 0, or a negative
 * KANAL_E* code when the line could not be written (logged). Ownership: borrows all;
 * takes nothing (target may be NULL). */
int audit_record(const char *state_dir, stream_t *stream, const audit_actor_t *actor,
		 const char *action, json_t *target, bool ok, const char *error);

/* The actor of an admin request that arrived on `endpoint` as the ZeroMQ message `msg`
 * (a zmq_msg_t *) with JSON `req`: the local user (SO_PEERCRED) over ipc, the address over
 * tcp; a request relayed by the HTTP admin endpoint carries its own "actor", trusted only
 * with this process's relay key. Ownership: borrows all; fills *out. */
void audit_actor_of(const char *endpoint, void *msg, json_t *req, audit_actor_t *out);

/* The secret that marks a request relayed by the HTTP admin endpoint (admin_http.c):
 * random, made once per process, never leaves it. Ownership: a static string. */
const char *audit_relay_key(void);

/* Reads an audit log and prints each line (or, with json, the line as written) since
 * `since_ms` (0: all). Returns the number printed or a negative KANAL_E* code. Used by
 * `kanalctl audit`. Ownership: borrows all. */
int audit_print(const char *path, int64_t since_ms, bool json, FILE *out);

#endif
