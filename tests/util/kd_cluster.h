/*
 * tests/util/kd_cluster.h — what the cluster-mode suites share (docs/cluster.md): batches of
 * numbered events sent round robin to kanald nodes until JetStream stored them, the tally of
 * a gateway reply, which numbered events the nodes' sinks wrote (and how often), and the
 * DEAD stream as JetStream holds it. The NATS cluster itself is tests/util/natsd.h; kanald
 * nodes are tests/util/kanald.h.
 */
#ifndef KANAL_TEST_KD_CLUSTER_H
#define KANAL_TEST_KD_CLUSTER_H

#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kanald.h"
#include "natsd.h"

/* ms: the bound of a gateway reply (kanald's own publish timeout is 10 s). */
#define CLU_WAIT 20000

/* A JSON array of `count` events ev-<first> … (ids zero-padded to 6 digits, source
 * /cluster-test, data {"n": <number>}) of `type`. Ownership: the caller frees the text. */
char *clu_batch(int first, int count, const char *type);
/* Counts the statuses of a gateway reply: accepted, duplicate, anything else (the first of
 * which is written "status: reason" into first_other, when given). Returns the number of
 * results. Ownership: borrows reply. */
size_t clu_tally(const char *reply, size_t *accepted, size_t *duplicate, size_t *other,
		 char *first_other, size_t size);
/* Events 0..n-1 that no node's sink file `name` (kd_path) holds yet; *dups gets the lines
 * beyond the first per event. NULL entries of nodes are skipped. */
int clu_missing(kd_t **nodes, size_t n_nodes, const char *name, int n, size_t *dups);
/* Sends batch (`count` events) to node *next, round robin over the nodes marked up, until
 * every event is accepted or a duplicate, resending to the next node after an error or no
 * reply; false after about 40 s. Adds the duplicates of the answer that stored it and the
 * resends. */
bool clu_store(kd_t **nodes, const bool *up, size_t n_nodes, size_t *next, const char *batch,
	       size_t count, size_t *duplicates, size_t *resends);
/* The messages in KANAL_DEAD, -1 when JetStream does not say. */
int64_t clu_dead_count(const natsd_t *nc);
/* Reads up to max messages of KANAL_DEAD (a pull consumer "test-reader"), their Kanal-Reason
 * headers joined by ',' into reasons. Returns the count read. */
int clu_dead_letters(const natsd_t *nc, char *reasons, size_t size, int max);

/* A kanald config in cluster mode against nc: `instances` as kd_config takes them, the
 * streams with `replicas`, journal.dedupe_window `dedupe_window`, ack_wait 5 s.
 * Ownership: the caller frees the text. */
char *clu_config(const natsd_t *nc, int replicas, const char *dedupe_window, const char *instances);
/* The lines of sink file `name` (kd_path) over the nodes (NULL entries skipped). */
size_t clu_lines(kd_t **nodes, size_t n_nodes, const char *name);
/* Waits up to timeout_ms until clu_lines reaches want; returns the count reached. */
size_t clu_wait_lines(kd_t **nodes, size_t n_nodes, const char *name, size_t want, int timeout_ms);
/* Runs `kanalctl -c <kd's kanald.yaml> ARGS...` (args NULL-terminated) and returns its exit
 * status (-1: it did not exit); its output (stdout and stderr) goes to *out when not NULL.
 * Ownership: the caller frees *out. */
int clu_kanalctl(kd_t *kd, char **out, const char *const *args);
/* The last sequence number of stream `name` (e.g. "KANAL_IN"): how many messages it ever
 * stored, whatever its consumers acknowledged since. -1 when JetStream does not say. */
int64_t clu_stream_last_seq(const natsd_t *nc, const char *name);
/* Runs `kanalctl -c <kd's config> <args>` and returns what it wrote (stdout and stderr, up
 * to 64 KiB). Ownership: the caller frees the text (never NULL). */
char *clu_kanalctl_text(const kd_t *kd, const char *args);
/* Stream `name`'s info as the first server gives it, or NULL. Ownership: new
 * (jsStreamInfo_Destroy). */
jsStreamInfo *clu_stream_info(const natsd_t *nc, const char *name);
/* The messages stream `name` (e.g. "KANAL_BLOBS") holds, -1 when JetStream does not say. */
int64_t clu_stream_msgs(const natsd_t *nc, const char *name);
/* A kanald config in cluster mode against nc: `replicas`, ack_wait 5s, the instances (YAML
 * of the `instances:` list) and `limits` (lines under `limits:`, indented by two; may be
 * NULL). Ownership: the caller frees the text. */
char *clu_conf(const natsd_t *nc, int replicas, const char *limits, const char *instances);
/* The `journal:` YAML of a cluster-mode node named `node` against nc (ack_wait 5 s), with
 * more_nats (lines indented by four, or NULL) added to its `nats:`. Ownership: new text. */
char *clu_journal(const natsd_t *nc, int replicas, const char *node, const char *more_nats);

#endif
