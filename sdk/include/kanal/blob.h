/*
 * kanal/blob.h — large content by claim check: photos and PDFs go into the blob store, the
 * event carries a reference to them.
 *
 * Events stay small (64 KiB by default). A plugin that has a photo or a document puts it
 * into the broker's content-addressed blob store with kanal_blob_put and puts the reference
 * it gets back into the event: the URI in the `kanalblob` extension attribute (URIs separated
 * by spaces), so that the broker counts the deliveries that need the blob, and the URI with
 * its media type and size in the event's data, where the receiving plugin finds it. The
 * receiving plugin reads the content with kanal_blob_get (into memory, digest checked) or
 * kanal_blob_open (a file descriptor, for content too large to hold). The broker deletes a
 * blob when the last delivery that needs it is finished; a dead letter keeps its blobs until
 * it is dropped. See docs/sdk.md and docs/design/blobs.md.
 *
 * The functions may be called from any thread (they do not need the instance's thread) and
 * work the same in an isolated plugin (isolation: process). ABI 1.1.
 */
#ifndef KANAL_BLOB_H
#define KANAL_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include <kanal/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Only what this header declares is exported from libkanal, which is built with
 * -fvisibility=hidden (docs/design/library.md). */
#pragma GCC visibility push(default)

typedef struct kanal_ctx kanal_ctx_t;

/* The name of the CloudEvents extension attribute that lists an event's blobs. */
#define KANAL_BLOB_ATTRIBUTE "kanalblob"
/* Every blob URI starts with this, followed by 64 lower-case hex digits of the SHA-256 of
 * the content: "kanalblob:sha256:9f86d0…". */
#define KANAL_BLOB_URI_PREFIX "kanalblob:sha256:"
/* Bytes a blob URI needs, NUL included. */
#define KANAL_BLOB_URI_SIZE (sizeof KANAL_BLOB_URI_PREFIX - 1 + 64 + 1)

/* A reference to a blob: what an event carries instead of the content. */
typedef struct kanal_blob_ref {
	char uri[KANAL_BLOB_URI_SIZE]; /* "kanalblob:sha256:<64 hex>": names the content */
	char media_type[128];          /* as given to kanal_blob_put, e.g. "image/jpeg" */
	uint64_t size;                 /* bytes */
} kanal_blob_ref_t;

/* Stores `size` bytes of `data` as a blob of `media_type` (a type/subtype such as
 * "image/jpeg"; NULL means "application/octet-stream") and fills *out with its reference.
 * The same content stored twice is one blob. The blob is kept until the broker has
 * delivered every event that names it in its `kanalblob` attribute; a blob that no accepted
 * event names is removed after a grace period (docs/design/blobs.md). Returns 0;
 * KANAL_EINVAL for a NULL ctx/out, data NULL with size > 0 or a malformed media type;
 * KANAL_ETOOBIG when the blob is larger than `max_blob_bytes` or the store would grow past
 * `blob_store_bytes` (kanald.yaml); KANAL_ENOSERVICE when the host has no blob store;
 * KANAL_EIO when it cannot be written. err (may be NULL) says why.
 * Ownership: borrows ctx, data and media_type; writes *out. */
int kanal_blob_put(kanal_ctx_t *ctx, const void *data, size_t size, const char *media_type,
		   kanal_blob_ref_t *out, kanal_error_t *err);

/* Reads the blob named by `uri` into a new buffer, checking it against its digest, and
 * stores it in *data_out and its length in *size_out (the buffer has one more byte, a NUL,
 * so text can be read as a string). Returns 0; KANAL_EINVAL for a URI that is not a
 * kanalblob URI; KANAL_ENOTFOUND when the store has no such blob; KANAL_ETOOBIG when it is
 * larger than max_blob_bytes (use kanal_blob_open); KANAL_EIO when it cannot be read or its
 * content does not match its digest. err (may be NULL) says why.
 * Ownership: borrows ctx and uri; *data_out is the caller's, to free with kanal_blob_free. */
int kanal_blob_get(kanal_ctx_t *ctx, const char *uri, void **data_out, size_t *size_out,
		   kanal_error_t *err);

/* Frees a buffer from kanal_blob_get and sets *data_p to NULL; accepts NULL and *data_p ==
 * NULL. Ownership: takes *data_p. */
void kanal_blob_free(void **data_p);

/* Opens the blob named by `uri` for reading and stores a read-only file descriptor in
 * *fd_out and the blob's size in *size_out (may be NULL). The content is not checked
 * against its digest here (it is streamed); a reader that needs that computes it. The blob
 * stays readable through the descriptor even if the broker deletes it meanwhile. Returns 0,
 * KANAL_EINVAL, KANAL_ENOTFOUND or KANAL_EIO as kanal_blob_get does.
 * Ownership: borrows ctx and uri; the descriptor is the caller's, to close(). */
int kanal_blob_open(kanal_ctx_t *ctx, const char *uri, int *fd_out, uint64_t *size_out,
		    kanal_error_t *err);

/* A blob written piece by piece, for content too large to hold in memory (an upload read
 * from a socket): kanal_blob_writer_new starts it, kanal_blob_writer_write appends (the
 * limits are enforced as it grows: KANAL_ETOOBIG once it passes max_blob_bytes or the store
 * would pass blob_store_bytes), kanal_blob_writer_finish stores it under its digest and
 * gives its reference, as kanal_blob_put would have; kanal_blob_writer_destroy drops what
 * was written. Nothing is visible in the store before finish, and a writer that fails or is
 * destroyed leaves nothing behind. One writer is used by one thread at a time. ABI 1.1. */
typedef struct kanal_blob_writer kanal_blob_writer_t;

/* Starts a blob of `media_type` (NULL: "application/octet-stream") and stores its writer in
 * *out. Returns 0, KANAL_EINVAL (a malformed media type, NULL out), KANAL_ENOSERVICE (no
 * blob store), KANAL_EIO or KANAL_ENOMEM; err (may be NULL) says why.
 * Ownership: borrows ctx and media_type; *out is the caller's, to finish or destroy. */
int kanal_blob_writer_new(kanal_ctx_t *ctx, const char *media_type, kanal_blob_writer_t **out,
			  kanal_error_t *err);

/* Appends size bytes. Returns 0; KANAL_ETOOBIG when the blob would pass max_blob_bytes or
 * the store blob_store_bytes; KANAL_EIO when it cannot be written. After a failure the
 * writer only accepts kanal_blob_writer_destroy. Ownership: borrows w and data. */
int kanal_blob_writer_write(kanal_blob_writer_t *w, const void *data, size_t size,
			    kanal_error_t *err);

/* Stores what was written (the same content twice is one blob) and fills *out with its
 * reference. Returns 0 or a negative code as kanal_blob_put; either way the writer is gone.
 * Ownership: takes *w_p and sets it to NULL; writes *out. */
int kanal_blob_writer_finish(kanal_blob_writer_t **w_p, kanal_blob_ref_t *out, kanal_error_t *err);

/* Drops an unfinished blob and everything written for it; accepts NULL and *w_p == NULL.
 * Ownership: takes *w_p and sets it to NULL. */
void kanal_blob_writer_destroy(kanal_blob_writer_t **w_p);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
