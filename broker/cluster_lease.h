/*
 * broker/cluster_lease.h — singleton instances in cluster mode: a lease per instance in the
 * <prefix>_LEASES key-value bucket decides which node starts it, and its state
 * (kanal_state_get/put: a poller's cursor) lives in <prefix>_STATE so that the next holder
 * resumes where the last one stopped. docs/design/cluster.md gives the reasons.
 *
 * Threads: new, start and destroy run on the main thread; the lease thread takes and renews
 * leases and asks the instances' threads to start or stop (instance_set_active); the state
 * store is called on the instances' threads.
 */
#ifndef KANAL_CLUSTER_LEASE_H
#define KANAL_CLUSTER_LEASE_H

#include <jansson.h>
#include <kanal/kanal.h>

#include "cluster.h"
#include "conf.h"
#include "instance.h"

typedef struct cluster_lease cluster_lease_t;

/* When an instance's config says `singleton`: opens (creating when absent) the _LEASES bucket
 * (TTL = nats.lease) and the _STATE bucket, and makes each such instance a singleton (instance_make_singleton: it is
 * started only while this node holds its lease, its state goes to _STATE). Call before the
 * instances start. Returns NULL with err saying why (NATS did not answer). Returns a lease
 * object even when no instance is a singleton (it then does nothing). Ownership: borrows
 * c, conf and the instances, which must outlive the object; the object is new. */
cluster_lease_t *cluster_lease_new(cluster_t *c, const conf_t *conf, instance_t **instances,
				   size_t n, kanal_error_t *err);

/* Starts the lease thread: it tries to take each singleton's lease at once and every
 * lease/3 after that, and renews the ones it holds. Returns 0 or KANAL_ETHREAD. */
int cluster_lease_start(cluster_lease_t *l);

/* A clean stop, after the instances stopped: ends the thread and deletes the leases this
 * node holds, so another node takes them over at once rather than after the TTL. Accepts
 * NULL. Ownership: takes *l_p. */
void cluster_lease_destroy(cluster_lease_t **l_p);

/* Who holds which singleton: [{instance, node}], from the _LEASES bucket (any node's view;
 * waits for NATS: the admin command). Ownership: new. */
json_t *cluster_lease_holders(cluster_t *c);

#endif
