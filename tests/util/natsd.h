/*
 * tests/util/natsd.h — a NATS JetStream cluster for cluster-mode tests (docs/cluster.md): N
 * nats-server processes on ephemeral loopback ports (client, cluster route, monitoring), each
 * with its own store folder under one temporary folder; ready once every node answers
 * /healthz and one of them reports a JetStream meta leader in /jsz (/healthz alone answers
 * before there is one). Nodes can be killed and restarted on the same ports and store; the
 * whole cluster is stopped and its folder removed by natsd_destroy, also after a failed test.
 */
#ifndef KANAL_TEST_NATSD_H
#define KANAL_TEST_NATSD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define NATSD_MAX 5

typedef struct natsd_node {
	pid_t pid; /* 0 while stopped */
	int port, cluster_port, http_port;
	char url[64]; /* nats://127.0.0.1:port */
	char *conf_path, *log_path;
} natsd_node_t;

typedef struct natsd {
	char *dir;
	size_t n;
	natsd_node_t nodes[NATSD_MAX];
	char servers[NATSD_MAX * 72]; /* "[nats://…, nats://…]": YAML for journal.nats.servers */
} natsd_t;

/* True when /usr/sbin/nats-server (or $NATS_SERVER) is there; a suite without it is skipped. */
bool natsd_available(void);
/* Starts n (1..NATSD_MAX) nodes and waits up to 30 s for the cluster to be ready. NULL (with
 * the logs printed) when it is not. Ownership: the caller owns the cluster (natsd_destroy). */
natsd_t *natsd_start(const char *tag, size_t n);
/* Sends sig to node i and waits up to 10 s for it to end. Returns 0 or -1. */
int natsd_kill(natsd_t *c, size_t i, int sig);
/* Starts node i again (same ports, same store) and waits up to 30 s until the cluster is
 * ready again. Returns 0 or -1. */
int natsd_restart(natsd_t *c, size_t i);
/* True when every running node answers /healthz and one reports a meta leader, within
 * timeout_ms. */
bool natsd_wait_ready(natsd_t *c, int timeout_ms);
/* The /jsz?streams=true&consumers=true answer of the first running node (malloc'd), or NULL. */
char *natsd_jsz(natsd_t *c);
/* Stops every node and removes the folder. Accepts NULL. Ownership: takes *c_p. */
void natsd_destroy(natsd_t **c_p);

#endif
