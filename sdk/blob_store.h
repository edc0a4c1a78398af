/*
 * sdk/blob_store.h — the blob store behind kanal/blob.h, for hosts (kanald, the isolated
 * plugin host, the test harness) and the broker; plugins never see it.
 *
 * A store is an interface (kanal__blob_store_ops_t) with one implementation today, files in
 * a folder (kanal__blob_store_open_dir), and room for a second — JetStream chunks in cluster
 * mode (docs/design/blobs.md). What is the same for every implementation lives here once: the
 * URI syntax, the size limits, the digest check on get. The store keeps no reference counts:
 * the broker's journal does (journal_blob_ref), and tells the store to remove a blob whose
 * count reaches zero.
 */
#ifndef KANAL_BLOB_STORE_H
#define KANAL_BLOB_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <kanal/blob.h>

/* What an implementation provides. `hex` is always the 64 lower-case hex digits of the
 * content's SHA-256; every function returns 0 or a negative KANAL_E code (err says why). */
typedef struct kanal__blob_store_ops {
	/* Stores size bytes, computing their digest into hex_out (65 bytes with the NUL). The
	 * same content twice is stored once. KANAL_ETOOBIG when the store is full. */
	int (*put)(void *impl, const void *data, size_t size, char *hex_out, kanal_error_t *err);
	/* A blob streamed in (kanal_blob_writer_t): begin makes a writer, write appends
	 * (KANAL_ETOOBIG when the store would grow past its limit), commit computes the
	 * digest into hex_out and stores the content under it (once, as put), abort drops
	 * it. commit and abort consume the writer; nothing is visible before commit. */
	int (*begin)(void *impl, void **w_out, kanal_error_t *err);
	int (*write)(void *impl, void *w, const void *data, size_t size, kanal_error_t *err);
	int (*commit)(void *impl, void *w, char *hex_out, kanal_error_t *err);
	void (*abort)(void *impl, void *w);
	/* A read-only descriptor on the content and its size; KANAL_ENOTFOUND if absent. */
	int (*open)(void *impl, const char *hex, int *fd_out, uint64_t *size_out,
		    kanal_error_t *err);
	/* Removes the content; KANAL_ENOTFOUND if absent. */
	int (*remove)(void *impl, const char *hex);
	/* Calls fn for every blob with its age in milliseconds; stops when fn returns non-0. */
	int (*each)(void *impl, int (*fn)(void *arg, const char *hex, int64_t age_ms), void *arg);
	/* Blobs and bytes held now (counted from the store, whoever wrote them). */
	void (*usage)(void *impl, int64_t *count, int64_t *bytes);
	void (*destroy)(void *impl);
} kanal__blob_store_ops_t;

typedef struct kanal__blob_store {
	const kanal__blob_store_ops_t *ops;
	void *impl;
	int64_t max_blob_bytes; /* one blob; 0: no limit */
} kanal__blob_store_t;

/* Default limits (kanald.yaml: max_blob_bytes, blob_store_bytes). */
#define KANAL__BLOB_MAX_DEFAULT (32LL << 20)
#define KANAL__BLOB_STORE_DEFAULT (4LL << 30)

/* Opens (creating it, mode 0700) the file store in `dir`: one file per blob, named by its
 * digest, mode 0600. max_blob_bytes bounds one blob, max_store_bytes all of them (0: no
 * limit). Returns NULL when the folder cannot be created or read (err says why).
 * Ownership: borrows dir; the store is the caller's, to destroy. */
kanal__blob_store_t *kanal__blob_store_open_dir(const char *dir, int64_t max_blob_bytes,
						int64_t max_store_bytes, kanal_error_t *err);
/* Destroys the store object (not its content); accepts NULL. Ownership: takes *store_p. */
void kanal__blob_store_destroy(kanal__blob_store_t **store_p);

/* The store operations behind kanal_blob_put/get/open (same results), for hosts that have
 * a store but no ctx. Ownership: as the public functions. */
int kanal__blob_put(kanal__blob_store_t *store, const void *data, size_t size,
		    const char *media_type, kanal_blob_ref_t *out, kanal_error_t *err);
int kanal__blob_get(kanal__blob_store_t *store, const char *uri, void **data_out, size_t *size_out,
		    kanal_error_t *err);
int kanal__blob_open(kanal__blob_store_t *store, const char *uri, int *fd_out, uint64_t *size_out,
		     kanal_error_t *err);
/* kanal_blob_writer_new for a host's store (the public function passes the ctx's). */
int kanal__blob_writer_new(kanal__blob_store_t *store, const char *media_type,
			   kanal_blob_writer_t **out, kanal_error_t *err);
/* Removes the blob named by uri: 0, KANAL_EINVAL (not a blob URI) or KANAL_ENOTFOUND. */
int kanal__blob_remove(kanal__blob_store_t *store, const char *uri);
/* Removes every blob older than grace_ms for which referenced(arg, uri) is false: the
 * blobs a plugin put but no accepted event names. Returns how many it removed. */
int kanal__blob_sweep(kanal__blob_store_t *store, int64_t grace_ms,
		      bool (*referenced)(void *arg, const char *uri), void *arg);
/* Blobs and bytes held now. */
void kanal__blob_usage(kanal__blob_store_t *store, int64_t *count, int64_t *bytes);

/* Checks that uri is "kanalblob:sha256:" and 64 lower-case hex digits; copies the digits
 * into hex (65 bytes) when it is not NULL. Returns 0 or KANAL_EINVAL. */
int kanal__blob_uri_hex(const char *uri, char *hex);

/* True when text[0..len) is nothing but blob URIs, one space between them: a `kanalblob`
 * value as kanal_blob_put's references make it. Its 64 hex digits name content, not a
 * person, so the CPR check of context attributes passes such a value (a digest's digits
 * can look like a CPR number: about one photo in 400 was refused). */
bool kanal__blob_attr_only_uris(const char *text, size_t len);

/* Calls fn(arg, uri) for every blob URI in a `kanalblob` attribute value (URIs separated
 * by spaces); a word that is not a blob URI is skipped. Returns how many URIs it passed. */
int kanal__blob_each_uri(const char *attr, void (*fn)(void *arg, const char *uri), void *arg);

/* What implementations share. kanal__blob_hex writes the 32 bytes of a SHA-256 digest as 64
 * lower-case hex digits and a NUL (65 bytes) into hex. kanal__blob_write_all writes all of
 * data to fd (retrying EINTR); 0 or -1 with errno. kanal__blob_mkdirs creates dir and its
 * missing parents, mode 0700; 0 (also when it exists) or -1 with errno. */
void kanal__blob_hex(const unsigned char *digest, char *hex);
int kanal__blob_write_all(int fd, const void *data, size_t size);
int kanal__blob_mkdirs(const char *dir);

/* Gives the ctx the host's store (borrowed: the host keeps it alive as long as the ctx). */
struct kanal_ctx;
void kanal__ctx_set_blob_store(struct kanal_ctx *ctx, kanal__blob_store_t *store);

#endif
