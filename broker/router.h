/*
 * broker/router.h — the router thread: accepts events (from instances and the gateway),
 * matches them against the routing table, runs enrich steps, queues one delivery per
 * destination, and acts on each outcome (retry with backoff, fallback, dead letters). It
 * owns every ZeroMQ socket of the broker except the instances' own, publishes the event
 * stream and answers the admin endpoint. It never runs plugin code.
 */
#ifndef KANAL_ROUTER_H
#define KANAL_ROUTER_H

#include "conf.h"
#include "instance.h"
#include "routes.h"

typedef struct router router_t;

/* Creates the router for `conf` and the loaded instances (borrowed; they must outlive it),
 * taking the compiled table *routes_p. Binds the inproc sockets and the gateway, stream and
 * admin endpoints, and writes <run_dir>/endpoints. Returns NULL with the reason in err. */
router_t *router_new(const conf_t *conf, instance_t **instances, size_t n_instances,
		     routes_t **routes_p, void *zctx, char *err, size_t err_size);

/* Starts the router's thread. */
int router_start(router_t *r);

/* From the main thread: asks the running router to reload its routing files. */
void router_reload(router_t *r);

/* From the main thread: asks for a graceful stop (sources stop, in-flight deliveries
 * finish until the shutdown deadline, plugins stop in reverse order) and waits for the
 * router's thread to end. Returns the number of deliveries that were still undelivered at
 * the deadline (kept: in the journal for the next start, or in memory mode in the
 * dead-letter file). */
int router_stop(router_t *r);

/* From any thread, during router_stop: ends the graceful stop's waiting at once, as if the
 * shutdown deadline had passed (a second SIGTERM). */
void router_force_stop(router_t *r);

/* Frees the router (after router_stop), closing its sockets and removing the endpoints
 * file. */
void router_destroy(router_t **r_p);

/* The admin socket's bound address ("" when disabled), for the HTTP admin endpoint. */
const char *router_admin_endpoint(const router_t *r);

/* In cluster mode the router's link to NATS (cluster.h), for the singletons' leases
 * (cluster_lease.c); NULL in the other modes. Ownership: borrowed, valid until
 * router_destroy. */
struct cluster *router_cluster_link(router_t *r);

#endif
