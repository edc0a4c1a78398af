/*
 * sdk/blob.c — the blob store: kanal_blob_put/get/open for plugins, and the file store that
 * implements it in a folder of the broker's state_dir.
 *
 * The public functions (kanal/blob.h) check what every store shares — the URI syntax, the
 * media type, the limit on one blob, the digest on get — and call the ctx's store through
 * its ops table (blob_store.h). The file store keeps one file per blob, <dir>/sha256/<hex>,
 * mode 0600 in a 0700 folder: written to <dir>/tmp first, hashed while written, synced, then
 * renamed into place, so that a reader never sees half a blob and a crash leaves at most a
 * temporary file (removed at the next open). Reference counts are not kept here but in the
 * broker's journal (docs/design/blobs.md).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "blob_store.h"
#include "host.h"

#define S_SRC "blob store"

/* ---- what every store shares ------------------------------------------------------------ */

int kanal__blob_uri_hex(const char *uri, char *hex)
{
	size_t plen = strlen(KANAL_BLOB_URI_PREFIX);

	if (!uri || strncmp(uri, KANAL_BLOB_URI_PREFIX, plen) != 0 || strlen(uri) != plen + 64)
		return KANAL_EINVAL;
	for (size_t i = plen; i < plen + 64; i++)
		if (!((uri[i] >= '0' && uri[i] <= '9') || (uri[i] >= 'a' && uri[i] <= 'f')))
			return KANAL_EINVAL;
	if (hex)
		memcpy(hex, uri + plen, 65);
	return 0;
}

void kanal__blob_hex(const unsigned char *digest, char *hex)
{
	for (unsigned i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", digest[i]);
}

int kanal__blob_each_uri(const char *attr, void (*fn)(void *arg, const char *uri), void *arg)
{
	char word[KANAL_BLOB_URI_SIZE];
	int n = 0;

	for (const char *p = attr; p && *p;) {
		size_t len;

		p += strspn(p, " \t");
		len = strcspn(p, " \t");
		if (len > 0 && len < sizeof word) {
			memcpy(word, p, len);
			word[len] = '\0';
			if (kanal__blob_uri_hex(word, NULL) == 0) {
				fn(arg, word);
				n++;
			}
		}
		p += len;
	}
	return n;
}

bool kanal__blob_attr_only_uris(const char *text, size_t len)
{
	size_t plen = sizeof KANAL_BLOB_URI_PREFIX - 1, i = 0;

	if (len == 0)
		return false;
	while (i < len) {
		if (len - i < plen + 64 || memcmp(text + i, KANAL_BLOB_URI_PREFIX, plen) != 0)
			return false;
		for (size_t k = i + plen; k < i + plen + 64; k++)
			if (!((text[k] >= '0' && text[k] <= '9') ||
			      (text[k] >= 'a' && text[k] <= 'f')))
				return false;
		i += plen + 64;
		if (i < len && (text[i] != ' ' || ++i == len))
			return false; /* one space between URIs, none at the end */
	}
	return true;
}

/* A media type is "type/subtype" of token characters, parameters after ';' allowed, and
 * fits the reference. Anything else would not survive being written into an event. */
static bool s_media_type_ok(const char *mt)
{
	const char *slash = strchr(mt, '/');

	if (!slash || slash == mt || !slash[1] ||
	    strlen(mt) >= sizeof((kanal_blob_ref_t *)0)->media_type)
		return false;
	for (const char *p = mt; *p && *p != ';'; p++)
		if (*p <= ' ' || *p >= 127 || strchr("\"(),:<=>?@[\\]{}", *p))
			return false;
	for (const char *p = mt; *p; p++)
		if ((unsigned char)*p < ' ' || *p == 127)
			return false;
	return true;
}

/* What a new blob needs, put whole or streamed: a media type (NULL becomes
 * "application/octet-stream" in *media_type) and a store. Returns 0, KANAL_EINVAL or
 * KANAL_ENOSERVICE with err. */
static int s_check_new(const kanal__blob_store_t *store, const char **media_type,
		       kanal_error_t *err)
{
	if (!*media_type)
		*media_type = "application/octet-stream";
	if (!s_media_type_ok(*media_type)) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "'%s' is not a media type (type/subtype)",
				*media_type);
		return KANAL_EINVAL;
	}
	if (!store) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "this host has no blob store");
		return KANAL_ENOSERVICE;
	}
	return 0;
}

int kanal__blob_put(kanal__blob_store_t *store, const void *data, size_t size,
		    const char *media_type, kanal_blob_ref_t *out, kanal_error_t *err)
{
	char hex[65];
	int rc;

	if (!out || (!data && size > 0)) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "kanal_blob_put: no data or no reference");
		return KANAL_EINVAL;
	}
	memset(out, 0, sizeof *out);
	if ((rc = s_check_new(store, &media_type, err)) != 0)
		return rc;
	if (store->max_blob_bytes > 0 && (uint64_t)size > (uint64_t)store->max_blob_bytes) {
		kanal_error_set(err, S_SRC, 0, 0, NULL,
				"blob of %zu bytes is larger than max_blob_bytes (%lld)", size,
				(long long)store->max_blob_bytes);
		return KANAL_ETOOBIG;
	}
	rc = store->ops->put(store->impl, data, size, hex, err);
	if (rc != 0)
		return rc;
	snprintf(out->uri, sizeof out->uri, "%s%s", KANAL_BLOB_URI_PREFIX, hex);
	snprintf(out->media_type, sizeof out->media_type, "%s", media_type);
	out->size = size;
	return 0;
}

/* ---- streaming in ------------------------------------------------------------------------ */

struct kanal_blob_writer {
	kanal__blob_store_t *store;
	void *impl_w; /* the store's writer */
	char media_type[sizeof((kanal_blob_ref_t *)0)->media_type];
	uint64_t size;
	bool failed;
};

int kanal__blob_writer_new(kanal__blob_store_t *store, const char *media_type,
			   kanal_blob_writer_t **out, kanal_error_t *err)
{
	kanal_blob_writer_t *w;
	int rc;

	if (!out) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "kanal_blob_writer_new: no writer to fill");
		return KANAL_EINVAL;
	}
	*out = NULL;
	if ((rc = s_check_new(store, &media_type, err)) != 0)
		return rc;
	if (!(w = calloc(1, sizeof *w)))
		return KANAL_ENOMEM;
	w->store = store;
	snprintf(w->media_type, sizeof w->media_type, "%s", media_type);
	if ((rc = store->ops->begin(store->impl, &w->impl_w, err)) != 0) {
		free(w);
		return rc;
	}
	*out = w;
	return 0;
}

int kanal_blob_writer_write(kanal_blob_writer_t *w, const void *data, size_t size,
			    kanal_error_t *err)
{
	int64_t max;
	int rc;

	if (!w || w->failed || (!data && size > 0)) {
		kanal_error_set(err, S_SRC, 0, 0, NULL,
				w && w->failed ? "the blob writer failed before: destroy it"
					       : "kanal_blob_writer_write: no writer or no data");
		return KANAL_EINVAL;
	}
	max = w->store->max_blob_bytes;
	if (max > 0 && w->size + size > (uint64_t)max) {
		w->failed = true;
		kanal_error_set(err, S_SRC, 0, 0, NULL,
				"blob of more than %llu bytes is larger than max_blob_bytes (%lld)",
				(unsigned long long)(w->size + size), (long long)max);
		return KANAL_ETOOBIG;
	}
	rc = size ? w->store->ops->write(w->store->impl, w->impl_w, data, size, err) : 0;
	if (rc != 0)
		w->failed = true;
	else
		w->size += size;
	return rc;
}

int kanal_blob_writer_finish(kanal_blob_writer_t **w_p, kanal_blob_ref_t *out, kanal_error_t *err)
{
	kanal_blob_writer_t *w = w_p ? *w_p : NULL;
	char hex[65];
	int rc;

	if (!w || w->failed || !out) {
		kanal_error_set(
			err, S_SRC, 0, 0, NULL,
			"kanal_blob_writer_finish: no writer, a failed one, or no reference");
		kanal_blob_writer_destroy(w_p);
		return KANAL_EINVAL;
	}
	memset(out, 0, sizeof *out);
	rc = w->store->ops->commit(w->store->impl, w->impl_w, hex, err);
	if (rc == 0) {
		snprintf(out->uri, sizeof out->uri, "%s%s", KANAL_BLOB_URI_PREFIX, hex);
		snprintf(out->media_type, sizeof out->media_type, "%s", w->media_type);
		out->size = w->size;
	}
	free(w);
	*w_p = NULL;
	return rc;
}

void kanal_blob_writer_destroy(kanal_blob_writer_t **w_p)
{
	kanal_blob_writer_t *w = w_p ? *w_p : NULL;

	if (!w)
		return;
	w->store->ops->abort(w->store->impl, w->impl_w);
	free(w);
	*w_p = NULL;
}

int kanal__blob_open(kanal__blob_store_t *store, const char *uri, int *fd_out, uint64_t *size_out,
		     kanal_error_t *err)
{
	char hex[65];
	uint64_t size = 0;
	int rc;

	if (!fd_out || kanal__blob_uri_hex(uri, hex) != 0) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "'%s' is not a kanalblob URI",
				uri ? uri : "(null)");
		return KANAL_EINVAL;
	}
	*fd_out = -1;
	if (!store) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "this host has no blob store");
		return KANAL_ENOSERVICE;
	}
	rc = store->ops->open(store->impl, hex, fd_out, &size, err);
	if (rc == 0 && size_out)
		*size_out = size;
	return rc;
}

/* The SHA-256 of buf as 64 lower-case hex digits and a NUL in hex. */
static int s_hex_digest(const unsigned char *buf, size_t size, char *hex)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_Digest(buf, size, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return KANAL_EIO;
	kanal__blob_hex(md, hex);
	return 0;
}

int kanal__blob_get(kanal__blob_store_t *store, const char *uri, void **data_out, size_t *size_out,
		    kanal_error_t *err)
{
	char want[65], got[65];
	unsigned char *buf = NULL;
	uint64_t size = 0;
	size_t have = 0;
	int fd = -1, rc;

	if (!data_out || !size_out) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "kanal_blob_get: nowhere to put the blob");
		return KANAL_EINVAL;
	}
	*data_out = NULL;
	*size_out = 0;
	rc = kanal__blob_open(store, uri, &fd, &size, err);
	if (rc != 0)
		return rc;
	kanal__blob_uri_hex(uri, want);
	if (store->max_blob_bytes > 0 && size > (uint64_t)store->max_blob_bytes) {
		kanal_error_set(
			err, S_SRC, 0, 0, NULL,
			"blob %s is %llu bytes, more than max_blob_bytes: use kanal_blob_open", uri,
			(unsigned long long)size);
		rc = KANAL_ETOOBIG;
		goto fail;
	}
	buf = malloc(size + 1);
	if (!buf) {
		rc = KANAL_ENOMEM;
		goto fail;
	}
	while (have < size) {
		ssize_t n = read(fd, buf + have, size - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
	}
	buf[have] = '\0';
	/* A blob shorter than its file said, or with other content than its name says, is
	 * damaged: never hand it on as if it were the photo the event refers to. */
	if (have != size || s_hex_digest(buf, have, got) != 0 || strcmp(got, want) != 0) {
		kanal_error_set(err, S_SRC, 0, 0, NULL,
				"blob %s is damaged: its content does "
				"not match its digest",
				uri);
		rc = KANAL_EIO;
		goto fail;
	}
	close(fd);
	*data_out = buf;
	*size_out = have;
	return 0;
fail:
	free(buf);
	close(fd);
	return rc;
}

int kanal__blob_remove(kanal__blob_store_t *store, const char *uri)
{
	char hex[65];

	if (!store || kanal__blob_uri_hex(uri, hex) != 0)
		return KANAL_EINVAL;
	return store->ops->remove(store->impl, hex);
}

typedef struct s_sweep {
	kanal__blob_store_t *store;
	int64_t grace_ms;
	bool (*referenced)(void *arg, const char *uri);
	void *arg;
	int removed;
} s_sweep_t;

static int s_sweep_one(void *arg, const char *hex, int64_t age_ms)
{
	s_sweep_t *sw = arg;
	char uri[KANAL_BLOB_URI_SIZE];

	if (age_ms < sw->grace_ms)
		return 0;
	snprintf(uri, sizeof uri, "%s%s", KANAL_BLOB_URI_PREFIX, hex);
	if (sw->referenced && sw->referenced(sw->arg, uri))
		return 0;
	if (sw->store->ops->remove(sw->store->impl, hex) == 0)
		sw->removed++;
	return 0;
}

int kanal__blob_sweep(kanal__blob_store_t *store, int64_t grace_ms,
		      bool (*referenced)(void *arg, const char *uri), void *arg)
{
	s_sweep_t sw = { store, grace_ms, referenced, arg, 0 };

	if (!store)
		return 0;
	store->ops->each(store->impl, s_sweep_one, &sw);
	return sw.removed;
}

void kanal__blob_usage(kanal__blob_store_t *store, int64_t *count, int64_t *bytes)
{
	int64_t c = 0, b = 0;

	if (store)
		store->ops->usage(store->impl, &c, &b);
	if (count)
		*count = c;
	if (bytes)
		*bytes = b;
}

void kanal__blob_store_destroy(kanal__blob_store_t **store_p)
{
	if (!store_p || !*store_p)
		return;
	(*store_p)->ops->destroy((*store_p)->impl);
	free(*store_p);
	*store_p = NULL;
}

/* ---- the public API ---------------------------------------------------------------------- */

void kanal__ctx_set_blob_store(struct kanal_ctx *ctx, kanal__blob_store_t *store)
{
	if (ctx)
		ctx->blobs = store;
}

int kanal_blob_put(kanal_ctx_t *ctx, const void *data, size_t size, const char *media_type,
		   kanal_blob_ref_t *out, kanal_error_t *err)
{
	if (!ctx) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "kanal_blob_put: no ctx");
		return KANAL_EINVAL;
	}
	return kanal__blob_put(ctx->blobs, data, size, media_type, out, err);
}

int kanal_blob_get(kanal_ctx_t *ctx, const char *uri, void **data_out, size_t *size_out,
		   kanal_error_t *err)
{
	if (!ctx) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "kanal_blob_get: no ctx");
		return KANAL_EINVAL;
	}
	return kanal__blob_get(ctx->blobs, uri, data_out, size_out, err);
}

void kanal_blob_free(void **data_p)
{
	if (!data_p)
		return;
	free(*data_p);
	*data_p = NULL;
}

int kanal_blob_writer_new(kanal_ctx_t *ctx, const char *media_type, kanal_blob_writer_t **out,
			  kanal_error_t *err)
{
	if (!ctx) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "kanal_blob_writer_new: no ctx");
		return KANAL_EINVAL;
	}
	return kanal__blob_writer_new(ctx->blobs, media_type, out, err);
}

int kanal_blob_open(kanal_ctx_t *ctx, const char *uri, int *fd_out, uint64_t *size_out,
		    kanal_error_t *err)
{
	if (!ctx) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "kanal_blob_open: no ctx");
		return KANAL_EINVAL;
	}
	return kanal__blob_open(ctx->blobs, uri, fd_out, size_out, err);
}

/* ---- the file store ---------------------------------------------------------------------- */

typedef struct s_dir_store {
	char *dir;            /* <dir>/sha256 holds the blobs, <dir>/tmp the ones being written */
	int64_t max_bytes;    /* all blobs together; 0: no limit */
	pthread_mutex_t lock; /* guards count and bytes */
	int64_t count, bytes; /* this process's view: other processes may add to the folder */
} s_dir_store_t;

int kanal__blob_write_all(int fd, const void *data, size_t size)
{
	const char *p = data;

	while (size > 0) {
		ssize_t n = write(fd, p, size);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		size -= (size_t)n;
	}
	return 0;
}

/* A blob being written: <dir>/tmp/in.XXXXXX, hashed as it is written. */
typedef struct s_dir_writer {
	int fd;
	char *tmp;
	EVP_MD_CTX *md;
	bool digest_known; /* s_dir_put hashed the content already: no second digest */
	int64_t size;
} s_dir_writer_t;

static void s_dir_abort(void *impl, void *w_)
{
	s_dir_writer_t *w = w_;

	(void)impl;
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp)
		unlink(w->tmp);
	free(w->tmp);
	EVP_MD_CTX_free(w->md);
	free(w);
}

static int s_dir_begin(void *impl, void **w_out, kanal_error_t *err)
{
	s_dir_store_t *ds = impl;
	s_dir_writer_t *w = calloc(1, sizeof *w);

	*w_out = NULL;
	if (!w)
		return KANAL_ENOMEM;
	w->fd = -1;
	if (asprintf(&w->tmp, "%s/tmp/in.XXXXXX", ds->dir) < 0) {
		w->tmp = NULL;
		s_dir_abort(impl, w);
		return KANAL_ENOMEM;
	}
	if (!(w->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(w->md, EVP_sha256(), NULL)) {
		s_dir_abort(impl, w);
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot start SHA-256");
		return KANAL_EIO;
	}
	w->fd = mkostemp(w->tmp, O_CLOEXEC); /* mode 0600 */
	if (w->fd < 0) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot write a blob in %s/tmp: %s",
				ds->dir, strerror(errno));
		free(w->tmp);
		w->tmp = NULL; /* nothing was created */
		s_dir_abort(impl, w);
		return KANAL_EIO;
	}
	*w_out = w;
	return 0;
}

static int s_dir_write(void *impl, void *w_, const void *data, size_t size, kanal_error_t *err)
{
	s_dir_store_t *ds = impl;
	s_dir_writer_t *w = w_;
	bool full;

	pthread_mutex_lock(&ds->lock);
	full = ds->max_bytes > 0 && ds->bytes + w->size + (int64_t)size > ds->max_bytes;
	pthread_mutex_unlock(&ds->lock);
	if (full) {
		kanal_error_set(err, S_SRC, 0, 0, NULL,
				"blob store full: %lld more bytes would pass blob_store_bytes "
				"(%lld)",
				(long long)(w->size + (int64_t)size), (long long)ds->max_bytes);
		return KANAL_ETOOBIG;
	}
	if ((!w->digest_known && !EVP_DigestUpdate(w->md, data, size)) ||
	    kanal__blob_write_all(w->fd, data, size) != 0) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot write a blob: %s", strerror(errno));
		return KANAL_EIO;
	}
	w->size += (int64_t)size;
	return 0;
}

static int s_dir_commit(void *impl, void *w_, char *hex_out, kanal_error_t *err)
{
	s_dir_store_t *ds = impl;
	s_dir_writer_t *w = w_;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char *final = NULL;
	struct stat st;
	int rc = KANAL_EIO;

	if (!w->digest_known) {
		if (!EVP_DigestFinal_ex(w->md, md, &mdlen) || mdlen != 32) {
			kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot compute SHA-256");
			goto out;
		}
		kanal__blob_hex(md, hex_out);
	}
	if (asprintf(&final, "%s/sha256/%s", ds->dir, hex_out) < 0) {
		final = NULL;
		rc = KANAL_ENOMEM;
		goto out;
	}
	/* Already there: the same content is one blob. Its time is renewed so that the sweep
	 * of unreferenced blobs gives the new event its grace period too. */
	if (stat(final, &st) == 0 && st.st_size == w->size) {
		utimensat(AT_FDCWD, final, NULL, 0);
		rc = 0;
		goto out;
	}
	if (fsync(w->fd) != 0 || close(w->fd) != 0) {
		w->fd = -1;
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot write blob %s: %s", hex_out,
				strerror(errno));
		goto out;
	}
	w->fd = -1;
	if (rename(w->tmp, final) != 0) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot store blob %s: %s", hex_out,
				strerror(errno));
		goto out;
	}
	free(w->tmp);
	w->tmp = NULL; /* renamed: nothing to remove */
	pthread_mutex_lock(&ds->lock);
	ds->count++;
	ds->bytes += w->size;
	pthread_mutex_unlock(&ds->lock);
	rc = 0;
out:
	free(final);
	s_dir_abort(impl, w);
	return rc;
}

/* A whole blob at once: the same as streaming it in one piece, except that content the
 * store already has is not written again. */
static int s_dir_put(void *impl, const void *data, size_t size, char *hex_out, kanal_error_t *err)
{
	s_dir_store_t *ds = impl;
	char *final = NULL;
	struct stat st;
	void *w = NULL;
	int rc;

	if (s_hex_digest(data ? data : (const void *)"", size, hex_out) != 0) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot compute SHA-256");
		return KANAL_EIO;
	}
	if (asprintf(&final, "%s/sha256/%s", ds->dir, hex_out) < 0)
		return KANAL_ENOMEM;
	rc = stat(final, &st) == 0 && (uint64_t)st.st_size == (uint64_t)size;
	if (rc)
		utimensat(AT_FDCWD, final, NULL, 0);
	free(final);
	if (rc)
		return 0;
	if ((rc = s_dir_begin(impl, &w, err)) != 0)
		return rc;
	/* The digest above names the file: computing it again while writing (as a stream
	 * must) was a third of kanal's CPU per blob in the blob bench row. */
	((s_dir_writer_t *)w)->digest_known = true;
	if (size && (rc = s_dir_write(impl, w, data, size, err)) != 0) {
		s_dir_abort(impl, w);
		return rc;
	}
	return s_dir_commit(impl, w, hex_out, err);
}

static int s_dir_open(void *impl, const char *hex, int *fd_out, uint64_t *size_out,
		      kanal_error_t *err)
{
	s_dir_store_t *ds = impl;
	char *path = NULL;
	struct stat st;
	int fd;

	if (asprintf(&path, "%s/sha256/%s", ds->dir, hex) < 0)
		return KANAL_ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "no blob %s%s%s", KANAL_BLOB_URI_PREFIX,
				hex, errno == ENOENT ? "" : " (cannot open it)");
		return errno == ENOENT ? KANAL_ENOTFOUND : KANAL_EIO;
	}
	if (fstat(fd, &st) != 0) {
		close(fd);
		return KANAL_EIO;
	}
	*fd_out = fd;
	*size_out = (uint64_t)st.st_size;
	return 0;
}

static int s_dir_remove(void *impl, const char *hex)
{
	s_dir_store_t *ds = impl;
	char *path = NULL;
	struct stat st;
	int rc = 0;

	if (asprintf(&path, "%s/sha256/%s", ds->dir, hex) < 0)
		return KANAL_ENOMEM;
	if (stat(path, &st) != 0 || unlink(path) != 0)
		rc = errno == ENOENT ? KANAL_ENOTFOUND : KANAL_EIO;
	free(path);
	if (rc == 0) {
		pthread_mutex_lock(&ds->lock);
		ds->count--;
		ds->bytes -= (int64_t)st.st_size;
		pthread_mutex_unlock(&ds->lock);
	}
	return rc;
}

/* Calls fn for every file in <dir>/<sub> with its name and age. */
static int s_dir_scan(s_dir_store_t *ds, const char *sub,
		      int (*fn)(void *arg, const char *name, int64_t age_ms, int64_t size),
		      void *arg)
{
	char *path = NULL;
	struct dirent *de;
	DIR *d;
	time_t now = time(NULL);

	if (asprintf(&path, "%s/%s", ds->dir, sub) < 0)
		return KANAL_ENOMEM;
	d = opendir(path);
	if (!d) {
		free(path);
		return KANAL_EIO;
	}
	while ((de = readdir(d))) {
		struct stat st;
		if (de->d_name[0] == '.' ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (fn(arg, de->d_name, ((int64_t)now - st.st_mtime) * 1000, st.st_size) != 0)
			break;
	}
	closedir(d);
	free(path);
	return 0;
}

typedef struct s_each {
	int (*fn)(void *arg, const char *hex, int64_t age_ms);
	void *arg;
} s_each_t;

static int s_each_blob(void *arg, const char *name, int64_t age_ms, int64_t size)
{
	s_each_t *e = arg;
	char uri[KANAL_BLOB_URI_SIZE];

	snprintf(uri, sizeof uri, "%s%s", KANAL_BLOB_URI_PREFIX, name);
	if (kanal__blob_uri_hex(uri, NULL) != 0)
		return 0;
	return e->fn(e->arg, name, age_ms);
}

static int s_dir_each(void *impl, int (*fn)(void *arg, const char *hex, int64_t age_ms), void *arg)
{
	s_each_t e = { fn, arg };

	return s_dir_scan(impl, "sha256", s_each_blob, &e);
}

static int s_count_blob(void *arg, const char *name, int64_t age_ms, int64_t size)
{
	s_dir_store_t *ds = arg;

	ds->count++;
	ds->bytes += size;
	return 0;
}

/* A temporary file left by a crash is half a blob nobody can name: remove it. */
static int s_remove_tmp(void *arg, const char *name, int64_t age_ms, int64_t size)
{
	s_dir_store_t *ds = arg;
	char *path = NULL;

	if (age_ms < 60000) /* perhaps another process writing it right now */
		return 0;
	if (asprintf(&path, "%s/tmp/%s", ds->dir, name) >= 0) {
		unlink(path);
		free(path);
	}
	return 0;
}

/* Counted from the folder, not from this process's puts and removals: isolated plugin
 * hosts (and kanald) write it too. The count kept for the store's limit is set right at
 * the same time. */
static void s_dir_usage(void *impl, int64_t *count, int64_t *bytes)
{
	s_dir_store_t *ds = impl;
	s_dir_store_t counted = { .dir = ds->dir };

	s_dir_scan(&counted, "sha256", s_count_blob, &counted);
	pthread_mutex_lock(&ds->lock);
	ds->count = counted.count;
	ds->bytes = counted.bytes;
	pthread_mutex_unlock(&ds->lock);
	*count = counted.count;
	*bytes = counted.bytes;
}

static void s_dir_destroy(void *impl)
{
	s_dir_store_t *ds = impl;

	pthread_mutex_destroy(&ds->lock);
	free(ds->dir);
	free(ds);
}

static const kanal__blob_store_ops_t s_dir_ops = {
	.put = s_dir_put,
	.begin = s_dir_begin,
	.write = s_dir_write,
	.commit = s_dir_commit,
	.abort = s_dir_abort,
	.open = s_dir_open,
	.remove = s_dir_remove,
	.each = s_dir_each,
	.usage = s_dir_usage,
	.destroy = s_dir_destroy,
};

/* mkdir -m 0700 that accepts an existing folder. */
static int s_mkdir(const char *dir, const char *sub)
{
	char *path = NULL;
	int rc;

	if (asprintf(&path, "%s%s%s", dir, sub ? "/" : "", sub ? sub : "") < 0)
		return -1;
	rc = mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : -1;
	free(path);
	return rc;
}

/* mkdir -p -m 0700 of dir's parents (kanald's state_dir may not exist yet). */
static void s_mkdir_parents(const char *dir)
{
	char *path = strdup(dir);

	for (char *p = path ? path + 1 : NULL; p && *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(path, 0700);
		*p = '/';
	}
	free(path);
}

int kanal__blob_mkdirs(const char *dir)
{
	s_mkdir_parents(dir);
	return mkdir(dir, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

kanal__blob_store_t *kanal__blob_store_open_dir(const char *dir, int64_t max_blob_bytes,
						int64_t max_store_bytes, kanal_error_t *err)
{
	kanal__blob_store_t *store = NULL;
	s_dir_store_t *ds = NULL;

	if (dir)
		s_mkdir_parents(dir);
	if (!dir || s_mkdir(dir, NULL) != 0 || s_mkdir(dir, "sha256") != 0 ||
	    s_mkdir(dir, "tmp") != 0) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot create the blob store in %s: %s",
				dir ? dir : "(null)", strerror(errno));
		return NULL;
	}
	store = calloc(1, sizeof *store);
	ds = calloc(1, sizeof *ds);
	if (!store || !ds || !(ds->dir = strdup(dir)))
		goto fail;
	pthread_mutex_init(&ds->lock, NULL);
	ds->max_bytes = max_store_bytes;
	if (s_dir_scan(ds, "sha256", s_count_blob, ds) != 0 ||
	    s_dir_scan(ds, "tmp", s_remove_tmp, ds) != 0) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot read the blob store in %s", dir);
		s_dir_destroy(ds);
		free(store);
		return NULL;
	}
	store->ops = &s_dir_ops;
	store->impl = ds;
	store->max_blob_bytes = max_blob_bytes;
	return store;
fail:
	if (ds)
		free(ds->dir);
	free(ds);
	free(store);
	kanal_error_set(err, S_SRC, 0, 0, NULL, "out of memory");
	return NULL;
}
