/*
 * broker/isolation.h — `isolation: process`: an instance whose plugin runs in a
 * kanal-plugin-host process, with kanald's instance thread acting as its proxy
 * (docs/design/isolation.md).
 *
 * To the router an isolated instance looks like any other: the same two bus sockets, the
 * same frames. Its thread, instead of calling the plugin, relays deliveries to the plugin
 * host over ipc:// and performs the host's emits, requests, logs and metrics with kanald's
 * own services. When the plugin host crashes, or takes longer than the instance's
 * `deadline` over a callback, the proxy kills it, answers the delivery it was handling
 * RETRY, tells the event stream, and starts a new one with exponential backoff.
 */
#ifndef KANAL_ISOLATION_H
#define KANAL_ISOLATION_H

#include <sys/types.h>

#include "conf.h"
#include "diag.h"
#include "instance.h"

typedef struct isolation isolation_t;

/* Prepares process isolation for the instance `ci` of `conf`: finds kanal-plugin-host
 * ($KANAL_PLUGIN_HOST, else beside the running kanald), checks that the instance's socket
 * path fits a socket address, and records what the plugin host will be told (the options
 * exactly as given, already validated by the caller against the plugin's table). Each
 * problem is added to d as "file:line:col: error: instance 'x': …". Returns 0 and *out, or
 * a negative code. Ownership: borrows conf and ci; *out is new. */
int isolation_new(const conf_t *conf, const conf_instance_t *ci, isolation_t **out, diag_t *d);

/* Frees what isolation_new made. The proxy must have returned. Accepts NULL. */
void isolation_destroy(isolation_t **iso_p);

/* Runs the proxy on inst's thread, whose bus sockets are connected and whose ctx is bound
 * to it: starts the plugin host and reports the outcome of its init and start through
 * instance_report_start, then relays until the router's stop frame (or until the first
 * start failed). Returns when the plugin host has stopped and been reaped.
 * Ownership: borrows both. */
void isolation_run(isolation_t *iso, instance_t *inst);

/* An operator's restart: ends the plugin host so that the proxy starts a new one at once,
 * without backoff, without charging a delivery, and without counting it as a crash
 * (host_restarts, kanal_instance_restarts_total). Returns 0, or KANAL_ESTATE while the
 * host is already down. Callable from any thread. Ownership: borrows iso. */
int isolation_restart(isolation_t *iso);

/* The plugin host's pid, or 0 while it is down (restarting). Read from any thread. */
pid_t isolation_host_pid(isolation_t *iso);

#endif
