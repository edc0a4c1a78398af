/*
 * broker/cluster_blobs.h — the blob store of cluster mode (journal.mode: cluster): the same
 * interface as the file store (sdk/blob_store.h), kept in a JetStream stream that every node
 * reads and writes, so that a photo uploaded on one node is delivered from another.
 * docs/design/blobs.md gives the layout and the reasons. The store has its own connection to
 * NATS (large messages stay out of the events' way) and is safe to call from any thread:
 * plugin instances' threads and the router.
 */
#ifndef KANAL_CLUSTER_BLOBS_H
#define KANAL_CLUSTER_BLOBS_H

#include <stdint.h>

#include "blob_store.h"
#include "conf.h"

/* The largest chunk of a blob (one message of the stream); smaller when the servers' max
 * payload is (the chunk and its headers must fit). */
#define CLUSTER_BLOBS_CHUNK (128 * 1024)

/* Opens the store: connects to journal.nats's servers, makes sure the stream
 * <prefix>_BLOBS exists (created when absent; its age limit follows nats.blob_retention;
 * refused when its layout differs), and keeps the private copies that `open` hands out in
 * tmp_dir (created, mode 0700; each copy is unlinked at once). max_blob_bytes bounds one
 * blob, max_store_bytes all of them (0: no limit). NULL with err when NATS is out of reach
 * or the stream differs. Ownership: borrows everything; the store is the caller's
 * (kanal__blob_store_destroy). */
kanal__blob_store_t *cluster_blobs_open(const conf_nats_t *conf, int64_t max_blob_bytes,
					int64_t max_store_bytes, const char *tmp_dir,
					kanal_error_t *err);

#endif
