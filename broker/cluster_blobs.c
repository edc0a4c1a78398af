/*
 * broker/cluster_blobs.c — the blob store of cluster mode: blobs as chunk messages on the
 * JetStream stream <prefix>_BLOBS, behind the same ops table as the file store
 * (sdk/blob_store.h), so that plugins, the SDK and the rest of kanald do not know which one
 * they use. libnats 3.4 has no object store, hence a layout of our own
 * (docs/design/blobs.md): chunk n of blob <hex> on subject <p>.blobs.<hex>.<n>, then a meta
 * message on <p>.blobs.<hex>.meta (size, chunk count, chunk size) published last, so that a
 * reader who finds the meta message finds every chunk. The stream keeps one message per
 * subject — the same content put twice is one copy, and a renewed blob replaces itself — and
 * drops messages older than nats.blob_retention: in cluster mode that age, not a reference
 * count, removes blobs (there is no SQLite journal to count in). `open` copies a blob into a
 * private unlinked file and hands out its descriptor. The store has its own NATS connection
 * and is called from plugin threads and the router alike: every call is a bounded
 * request/reply on that connection, and the only shared state (the usage figures) is locked.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cluster.h"
#include "cluster_blobs.h"
#include "log.h"

#define S_SRC "blob store"
#define CB_API_WAIT_MS 5000     /* one JetStream API request */
#define CB_PUB_TIMEOUT_MS 10000 /* one chunk, across a leader election (4-8 s on 2.9) */
#define CB_DUPLICATES_MS 120000 /* the stream's duplicate window: a resent chunk */
#define CB_USAGE_EVERY_MS 10000 /* the stream's state is asked this often */
#define CB_HEADER_ROOM 4096     /* what a chunk leaves of the max payload for headers */

typedef struct cb_store {
	natsConnection *nc;
	jsCtx *js;
	char stream[64];  /* KANAL_BLOBS */
	char subject[48]; /* kanal.blobs */
	char *tmp_dir;
	size_t chunk;
	int64_t max_bytes; /* all blobs; 0: no limit */
	int64_t renew_ms;  /* a put of content older than this publishes it again */

	pthread_mutex_t lock; /* guards count and bytes */
	int64_t count, bytes; /* the stream's last answer, plus this node's puts since */
	pthread_t usage_thread;
	bool usage_started;
	bool stop; /* atomic */
} cb_store_t;

/* What a blob's meta message says. */
typedef struct cb_meta {
	uint64_t size, chunks, chunk;
	int64_t age_ms;
} cb_meta_t;

static int64_t s_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static const char *s_nats_error(natsStatus st)
{
	const char *last = nats_GetLastError(NULL);

	return last && *last ? last : natsStatus_GetText(st);
}

/* ---- private copies ------------------------------------------------------------------- */

/* A new file that only this process can reach: O_TMPFILE (never named), else a named one
 * unlinked at once. Mode 0600: a blob is a photo of a child or a letter. -1 on failure. */
static int s_tmpfile(const cb_store_t *cb)
{
	char *path = NULL;
	int fd = open(cb->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || asprintf(&path, "%s/blob.XXXXXX", cb->tmp_dir) < 0)
		return fd;
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	free(path);
	return fd;
}

/* The same file read-only (the interface hands out a read-only descriptor); fd itself when
 * /proc is not there. Consumes fd. */
static int s_readonly(int fd)
{
	char path[64];
	int ro;

	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	if (ro < 0)
		return fd;
	close(fd);
	return ro;
}

static int s_read_at(int fd, void *buf, size_t size, off_t off)
{
	char *p = buf;

	while (size > 0) {
		ssize_t n = pread(fd, p, size, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		size -= (size_t)n;
		off += n;
	}
	return 0;
}

/* The digest md computed, as 64 hex digits into hex (65 bytes). */
static int s_hex_final(EVP_MD_CTX *md, char *hex)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (!EVP_DigestFinal_ex(md, d, &n) || n != 32)
		return KANAL_EIO;
	kanal__blob_hex(d, hex);
	return 0;
}

/* ---- the stream ------------------------------------------------------------------------- */

/* The last message on subject into *out: 0, KANAL_ENOTFOUND (none; err untouched, for the
 * caller to say what is missing), or KANAL_EIO (NATS did not answer, said in err). */
static int s_get_last(cb_store_t *cb, const char *subject, natsMsg **out, kanal_error_t *err)
{
	jsErrCode jerr = 0;
	natsStatus st = js_GetLastMsg(out, cb->js, cb->stream, subject, NULL, &jerr);

	if (st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
		return KANAL_ENOTFOUND;
	if (st != NATS_OK) {
		kanal_error_set(err, S_SRC, 0, 0, NULL,
				"the blob store (JetStream stream %s) did not answer: %s",
				cb->stream, s_nats_error(st));
		return KANAL_EIO;
	}
	return 0;
}

/* The meta message of blob hex into m: 0, KANAL_ENOTFOUND, KANAL_EIO (NATS did not answer)
 * or KANAL_EPARSE (the message does not add up: not one of ours), with err. */
static int s_meta(cb_store_t *cb, const char *hex, cb_meta_t *m, kanal_error_t *err)
{
	char subject[160];
	const char *v[3] = { NULL, NULL, NULL };
	natsMsg *msg = NULL;
	int rc;

	snprintf(subject, sizeof subject, "%s.%s.meta", cb->subject, hex);
	if ((rc = s_get_last(cb, subject, &msg, err)) == KANAL_ENOTFOUND)
		kanal_error_set(err, S_SRC, 0, 0, NULL, "no blob %s%s", KANAL_BLOB_URI_PREFIX, hex);
	if (rc != 0)
		return rc;
	natsMsgHeader_Get(msg, "Kanal-Blob-Size", &v[0]);
	natsMsgHeader_Get(msg, "Kanal-Blob-Chunks", &v[1]);
	natsMsgHeader_Get(msg, "Kanal-Blob-Chunk-Size", &v[2]);
	m->size = v[0] ? strtoull(v[0], NULL, 10) : 0;
	m->chunks = v[1] ? strtoull(v[1], NULL, 10) : 0;
	m->chunk = v[2] ? strtoull(v[2], NULL, 10) : 0;
	m->age_ms = s_wall_ms() - natsMsg_GetTime(msg) / 1000000;
	natsMsg_Destroy(msg);
	/* Another writer's message on our subject must not make us read past a chunk. */
	if (!v[0] || !v[1] || !v[2] || m->chunk == 0 || m->chunk > (64u << 20) ||
	    m->chunks != (m->size + m->chunk - 1) / m->chunk) {
		kanal_error_set(err, S_SRC, 0, 0, NULL,
				"blob %s%s is damaged: its meta message in %s does not add up",
				KANAL_BLOB_URI_PREFIX, hex, cb->stream);
		return KANAL_EPARSE;
	}
	return 0;
}

/* Publishes one message and waits for its PubAck, resending it (same Nats-Msg-Id: stored
 * once) while JetStream has no leader, for up to CB_PUB_TIMEOUT_MS. Returns 0, KANAL_ETOOBIG
 * (the servers' storage is full) or KANAL_EIO, with err. */
static int s_publish(cb_store_t *cb, const char *subject, const char *msg_id,
		     const char *const *headers, const void *data, size_t len, kanal_error_t *err)
{
	int64_t deadline = s_wall_ms() + CB_PUB_TIMEOUT_MS;
	natsStatus st = NATS_OK;
	jsErrCode jerr = 0;

	for (;;) {
		natsMsg *m = NULL;
		jsPubAck *pa = NULL;
		jsPubOptions po;
		int64_t left = deadline - s_wall_ms();

		if (natsMsg_Create(&m, subject, NULL, data, (int)len) != NATS_OK) {
			kanal_error_set(err, S_SRC, 0, 0, NULL, "out of memory");
			return KANAL_ENOMEM;
		}
		for (size_t i = 0; headers && headers[i]; i += 2)
			natsMsgHeader_Set(m, headers[i], headers[i + 1]);
		jsPubOptions_Init(&po);
		po.MaxWait = left > 100 ? left : 100;
		po.MsgId = msg_id;
		jerr = 0;
		st = js_PublishMsg(&pa, cb->js, m, &po, &jerr);
		natsMsg_Destroy(m);
		jsPubAck_Destroy(pa);
		if (st == NATS_OK)
			return 0;
		if (jerr == JSStorageResourcesExceededErr || jerr == JSStreamStoreFailedErr) {
			kanal_error_set(err, S_SRC, 0, 0, NULL,
					"blob store full: JetStream refused %s (%s)", subject,
					s_nats_error(st));
			return KANAL_ETOOBIG;
		}
		if (s_wall_ms() + 250 >= deadline)
			break;
		s_sleep_ms(250); /* no responders while a leader is elected: try again */
	}
	kanal_error_set(err, S_SRC, 0, 0, NULL, "JetStream did not store %s within %d s: %s",
			subject, CB_PUB_TIMEOUT_MS / 1000, s_nats_error(st));
	return KANAL_EIO;
}

/* True when `size` more bytes would pass blob_store_size (by the last figures). */
static bool s_full(cb_store_t *cb, uint64_t size)
{
	bool full;

	pthread_mutex_lock(&cb->lock);
	full = cb->max_bytes > 0 && cb->bytes + (int64_t)size > cb->max_bytes;
	pthread_mutex_unlock(&cb->lock);
	return full;
}

/* Stores the `size` bytes named hex, taken from mem, or else read from fd: the chunks, then
 * the meta message. Content that is there already is left as it is, unless its copy is older
 * than renew_ms: then it is published again (replacing itself), so that it is kept a full
 * blob_retention after this put too. */
static int s_store(cb_store_t *cb, const char *hex, uint64_t size, const unsigned char *mem, int fd,
		   kanal_error_t *err)
{
	char subject[160], msg_id[200], v_size[24], v_chunks[24], v_chunk[24];
	const char *meta_headers[] = {
		"Kanal-Blob-Size", v_size, "Kanal-Blob-Chunks", v_chunks, "Kanal-Blob-Chunk-Size",
		v_chunk,           NULL
	};
	uint64_t chunks = (size + cb->chunk - 1) / cb->chunk, nonce = 0;
	unsigned char *buf = NULL;
	kanal_error_t why;
	cb_meta_t m;
	bool renew;
	int rc;

	kanal_error_clear(&why);
	rc = s_meta(cb, hex, &m, &why);
	if (rc == 0 && m.size == size && m.age_ms < cb->renew_ms)
		return 0; /* the same content is one blob */
	if (rc == KANAL_EIO) {
		/* NATS did not answer: it would not store the chunks either. */
		kanal_error_set(err, S_SRC, 0, 0, NULL, "%s", why.text);
		return rc;
	}
	renew = rc == 0 || rc == KANAL_EPARSE; /* a damaged meta message is replaced too */
	if (!renew && s_full(cb, size)) {
		kanal_error_set(err, S_SRC, 0, 0, NULL,
				"blob store full: %" PRIu64 " more bytes would pass "
				"blob_store_bytes (%lld)",
				size, (long long)cb->max_bytes);
		return KANAL_ETOOBIG;
	}
	/* Message ids deduplicate a chunk resent within this put only: a later put (after a
	 * removal, or to renew) must store its chunks again. */
	if (getrandom(&nonce, sizeof nonce, 0) != sizeof nonce)
		nonce = (uint64_t)s_wall_ms() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)&nonce;
	if (!mem && chunks && !(buf = malloc(cb->chunk))) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "out of memory");
		return KANAL_ENOMEM;
	}
	for (uint64_t n = 0; n < chunks; n++) {
		uint64_t off = n * cb->chunk;
		size_t len = (size_t)(size - off < cb->chunk ? size - off : cb->chunk);
		const void *data = mem ? mem + off : buf;

		if (!mem && s_read_at(fd, buf, len, (off_t)off) != 0) {
			kanal_error_set(err, S_SRC, 0, 0, NULL,
					"cannot read a blob being stored: %s", strerror(errno));
			rc = KANAL_EIO;
			goto out;
		}
		snprintf(subject, sizeof subject, "%s.%s.%" PRIu64, cb->subject, hex, n);
		snprintf(msg_id, sizeof msg_id, "%s.%" PRIu64 ".%016" PRIx64, hex, n, nonce);
		if ((rc = s_publish(cb, subject, msg_id, NULL, data, len, err)) != 0)
			goto out; /* what was stored ages out (blob_retention) or is replaced */
	}
	snprintf(v_size, sizeof v_size, "%" PRIu64, size);
	snprintf(v_chunks, sizeof v_chunks, "%" PRIu64, chunks);
	snprintf(v_chunk, sizeof v_chunk, "%zu", cb->chunk);
	snprintf(subject, sizeof subject, "%s.%s.meta", cb->subject, hex);
	snprintf(msg_id, sizeof msg_id, "%s.meta.%016" PRIx64, hex, nonce);
	if ((rc = s_publish(cb, subject, msg_id, meta_headers, "", 0, err)) != 0)
		goto out;
	if (!renew) {
		pthread_mutex_lock(&cb->lock);
		cb->count++;
		cb->bytes += (int64_t)size;
		pthread_mutex_unlock(&cb->lock);
	}
out:
	free(buf);
	return rc;
}

/* ---- the ops ------------------------------------------------------------------------------ */

static int s_put(void *impl, const void *data, size_t size, char *hex_out, kanal_error_t *err)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (!EVP_Digest(data ? data : "", size, d, &n, EVP_sha256(), NULL) || n != 32) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot compute SHA-256");
		return KANAL_EIO;
	}
	kanal__blob_hex(d, hex_out);
	return s_store(impl, hex_out, size, data ? data : (const void *)"", -1, err);
}

/* A blob streamed in: kept in a private file, hashed as it is written; its name (and so its
 * subjects) is known only at commit. */
typedef struct cb_writer {
	int fd;
	EVP_MD_CTX *md;
	uint64_t size;
} cb_writer_t;

static void s_abort(void *impl, void *w_)
{
	cb_writer_t *w = w_;

	(void)impl;
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	EVP_MD_CTX_free(w->md);
	free(w);
}

static int s_begin(void *impl, void **w_out, kanal_error_t *err)
{
	cb_store_t *cb = impl;
	cb_writer_t *w = calloc(1, sizeof *w);

	*w_out = NULL;
	if (!w)
		return KANAL_ENOMEM;
	w->fd = s_tmpfile(cb);
	w->md = EVP_MD_CTX_new();
	if (w->fd < 0 || !w->md || !EVP_DigestInit_ex(w->md, EVP_sha256(), NULL)) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot receive a blob in %s: %s",
				cb->tmp_dir, strerror(errno));
		s_abort(impl, w);
		return KANAL_EIO;
	}
	*w_out = w;
	return 0;
}

static int s_write(void *impl, void *w_, const void *data, size_t size, kanal_error_t *err)
{
	cb_store_t *cb = impl;
	cb_writer_t *w = w_;

	if (s_full(cb, w->size + size)) {
		kanal_error_set(err, S_SRC, 0, 0, NULL,
				"blob store full: %llu more bytes would pass blob_store_bytes "
				"(%lld)",
				(unsigned long long)(w->size + size), (long long)cb->max_bytes);
		return KANAL_ETOOBIG;
	}
	if (!EVP_DigestUpdate(w->md, data, size) || kanal__blob_write_all(w->fd, data, size) != 0) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot receive a blob: %s",
				strerror(errno));
		return KANAL_EIO;
	}
	w->size += size;
	return 0;
}

static int s_commit(void *impl, void *w_, char *hex_out, kanal_error_t *err)
{
	cb_writer_t *w = w_;
	int rc = s_hex_final(w->md, hex_out);

	if (rc != 0)
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot compute SHA-256");
	else
		rc = s_store(impl, hex_out, w->size, NULL, w->fd, err);
	s_abort(impl, w);
	return rc;
}

static int s_open(void *impl, const char *hex, int *fd_out, uint64_t *size_out, kanal_error_t *err)
{
	cb_store_t *cb = impl;
	EVP_MD_CTX *md = NULL;
	char subject[160], got[65];
	cb_meta_t m;
	int fd = -1, rc;

	if ((rc = s_meta(cb, hex, &m, err)) != 0)
		return rc == KANAL_EPARSE ? KANAL_EIO : rc;
	fd = s_tmpfile(cb);
	md = EVP_MD_CTX_new();
	if (fd < 0 || !md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot copy a blob into %s: %s",
				cb->tmp_dir, strerror(errno));
		rc = KANAL_EIO;
		goto fail;
	}
	for (uint64_t n = 0; n < m.chunks; n++) {
		uint64_t want = n + 1 < m.chunks ? m.chunk : m.size - n * m.chunk;
		natsMsg *msg = NULL;
		bool ok;

		snprintf(subject, sizeof subject, "%s.%s.%" PRIu64, cb->subject, hex, n);
		if ((rc = s_get_last(cb, subject, &msg, err)) == KANAL_ENOTFOUND)
			kanal_error_set(err, S_SRC, 0, 0, NULL,
					"blob %s%s is incomplete: chunk %" PRIu64
					" is gone (removed, or older than blob_retention)",
					KANAL_BLOB_URI_PREFIX, hex, n);
		if (rc != 0)
			goto fail;
		ok = (uint64_t)natsMsg_GetDataLength(msg) == want &&
		     EVP_DigestUpdate(md, natsMsg_GetData(msg), (size_t)want) &&
		     kanal__blob_write_all(fd, natsMsg_GetData(msg), (size_t)want) == 0;
		natsMsg_Destroy(msg);
		if (!ok) {
			kanal_error_set(err, S_SRC, 0, 0, NULL,
					"blob %s%s is damaged: chunk %" PRIu64
					" is not the size its meta message says",
					KANAL_BLOB_URI_PREFIX, hex, n);
			rc = KANAL_EIO;
			goto fail;
		}
	}
	/* Handed on only when it is the content its name says. */
	if (s_hex_final(md, got) != 0 || strcmp(got, hex) != 0) {
		kanal_error_set(err, S_SRC, 0, 0, NULL,
				"blob %s%s is damaged: its content does not match its digest",
				KANAL_BLOB_URI_PREFIX, hex);
		rc = KANAL_EIO;
		goto fail;
	}
	EVP_MD_CTX_free(md);
	fd = s_readonly(fd);
	lseek(fd, 0, SEEK_SET);
	*fd_out = fd;
	*size_out = m.size;
	return 0;
fail:
	EVP_MD_CTX_free(md);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Purges the messages of subject (wildcards allowed). */
static int s_purge(cb_store_t *cb, const char *subject)
{
	jsOptions o;
	jsErrCode jerr = 0;

	jsOptions_Init(&o);
	o.Stream.Purge.Subject = subject;
	return js_PurgeStream(cb->js, cb->stream, &o, &jerr) == NATS_OK ? 0 : KANAL_EIO;
}

static int s_remove(void *impl, const char *hex)
{
	cb_store_t *cb = impl;
	char subject[160];
	cb_meta_t m;
	int rc;

	if ((rc = s_meta(cb, hex, &m, NULL)) == KANAL_EPARSE)
		m.size = 0; /* not ours, yet under our subject: removed all the same */
	else if (rc != 0)
		return rc;
	/* The meta message first: from then on nobody starts reading the chunks. */
	snprintf(subject, sizeof subject, "%s.%s.meta", cb->subject, hex);
	if ((rc = s_purge(cb, subject)) != 0)
		return rc;
	snprintf(subject, sizeof subject, "%s.%s.*", cb->subject, hex);
	if ((rc = s_purge(cb, subject)) != 0)
		return rc;
	pthread_mutex_lock(&cb->lock);
	cb->count--;
	cb->bytes -= (int64_t)m.size;
	pthread_mutex_unlock(&cb->lock);
	return 0;
}

/* The stream's info with the list of meta subjects (one per blob), or NULL. */
static jsStreamInfo *s_info(cb_store_t *cb)
{
	char filter[80];
	jsStreamInfo *si = NULL;
	jsOptions o;

	jsOptions_Init(&o);
	snprintf(filter, sizeof filter, "%s.*.meta", cb->subject);
	o.Stream.Info.SubjectsFilter = filter;
	return js_GetStreamInfo(&si, cb->js, cb->stream, &o, NULL) == NATS_OK ? si : NULL;
}

static int s_each(void *impl, int (*fn)(void *arg, const char *hex, int64_t age_ms), void *arg)
{
	cb_store_t *cb = impl;
	jsStreamInfo *si = s_info(cb);
	const jsStreamStateSubjects *subjects = si ? si->State.Subjects : NULL;
	size_t plen = strlen(cb->subject) + 1;

	if (!si)
		return KANAL_EIO;
	for (int i = 0; subjects && i < subjects->Count; i++) {
		const char *s = subjects->List[i].Subject;
		char hex[65];
		cb_meta_t m;

		if (strlen(s) != plen + 64 + 5 || strncmp(s, cb->subject, plen - 1) != 0)
			continue;
		memcpy(hex, s + plen, 64);
		hex[64] = '\0';
		if (s_meta(cb, hex, &m, NULL) == 0 && fn(arg, hex, m.age_ms) != 0)
			break;
	}
	jsStreamInfo_Destroy(si);
	return 0;
}

/* Asks the stream how many blobs and bytes it holds (bytes as one replica stores them, with
 * the messages' headers). */
static void s_refresh_usage(cb_store_t *cb)
{
	jsStreamInfo *si = s_info(cb);

	if (!si)
		return; /* keep the last figures */
	pthread_mutex_lock(&cb->lock);
	cb->count = si->State.Subjects ? si->State.Subjects->Count : 0;
	cb->bytes = (int64_t)si->State.Bytes;
	pthread_mutex_unlock(&cb->lock);
	jsStreamInfo_Destroy(si);
}

/* Refreshes the figures every CB_USAGE_EVERY_MS, so that neither /metrics (on the router's
 * thread) nor a put waits for NATS to learn them. */
static void *s_usage_main(void *arg)
{
	cb_store_t *cb = arg;

	while (!__atomic_load_n(&cb->stop, __ATOMIC_ACQUIRE)) {
		for (int i = 0;
		     i < CB_USAGE_EVERY_MS / 100 && !__atomic_load_n(&cb->stop, __ATOMIC_ACQUIRE);
		     i++)
			s_sleep_ms(100);
		if (!__atomic_load_n(&cb->stop, __ATOMIC_ACQUIRE))
			s_refresh_usage(cb);
	}
	return NULL;
}

static void s_usage(void *impl, int64_t *count, int64_t *bytes)
{
	cb_store_t *cb = impl;

	pthread_mutex_lock(&cb->lock);
	*count = cb->count;
	*bytes = cb->bytes;
	pthread_mutex_unlock(&cb->lock);
}

static void s_destroy(void *impl)
{
	cb_store_t *cb = impl;

	__atomic_store_n(&cb->stop, true, __ATOMIC_RELEASE);
	if (cb->usage_started)
		pthread_join(cb->usage_thread, NULL);
	jsCtx_Destroy(cb->js);
	natsConnection_Destroy(cb->nc);
	pthread_mutex_destroy(&cb->lock);
	free(cb->tmp_dir);
	free(cb);
}

static const kanal__blob_store_ops_t s_ops = {
	.put = s_put,
	.begin = s_begin,
	.write = s_write,
	.commit = s_commit,
	.abort = s_abort,
	.open = s_open,
	.remove = s_remove,
	.each = s_each,
	.usage = s_usage,
	.destroy = s_destroy,
};

/* ---- opening ---------------------------------------------------------------------------- */

kanal__blob_store_t *cluster_blobs_open(const conf_nats_t *conf, int64_t max_blob_bytes,
					int64_t max_store_bytes, const char *tmp_dir,
					kanal_error_t *err)
{
	kanal__blob_store_t *store = calloc(1, sizeof *store);
	cb_store_t *cb = calloc(1, sizeof *cb);
	char subjects_all[80];
	const char *subjects[] = { subjects_all };
	jsStreamConfig sc;
	jsOptions jo;
	int64_t payload;

	if (!store || !cb || !(cb->tmp_dir = strdup(tmp_dir))) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "out of memory");
		goto fail_alloc;
	}
	pthread_mutex_init(&cb->lock, NULL);
	cb->max_bytes = max_store_bytes;
	cb->renew_ms = conf->blob_retention_ms / 10;
	snprintf(cb->stream, sizeof cb->stream, "%s_BLOBS", conf->stream_prefix);
	snprintf(cb->subject, sizeof cb->subject, "%s.blobs", conf->stream_prefix);
	for (char *p = cb->subject; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (kanal__blob_mkdirs(tmp_dir) != 0) {
		kanal_error_set(err, S_SRC, 0, 0, NULL, "cannot create %s: %s", tmp_dir,
				strerror(errno));
		goto fail;
	}
	if (!(cb->nc = cluster_connect(conf, "blobs", err)))
		goto fail;
	jsOptions_Init(&jo);
	jo.Wait = CB_API_WAIT_MS;
	if (natsConnection_JetStream(&cb->js, cb->nc, &jo) != NATS_OK) {
		kanal_error_set(err, "journal.nats", 0, 0, NULL, "cannot open a JetStream context");
		goto fail;
	}
	payload = natsConnection_GetMaxPayload(cb->nc);
	cb->chunk = CLUSTER_BLOBS_CHUNK;
	if (payload > CB_HEADER_ROOM && (uint64_t)(payload - CB_HEADER_ROOM) < cb->chunk)
		cb->chunk = (size_t)(payload - CB_HEADER_ROOM);

	snprintf(subjects_all, sizeof subjects_all, "%s.>", cb->subject);
	cluster_stream_config(&sc, cb->stream, subjects, js_LimitsPolicy, conf->replicas,
			      CB_DUPLICATES_MS);
	sc.MaxAge = conf->blob_retention_ms * 1000000LL;
	sc.MaxMsgsPerSubject = 1; /* one copy of each chunk: content put twice is stored once */
	if (cluster_ensure_stream(cb->js, &sc, err) != 0)
		goto fail;
	s_refresh_usage(cb);
	if (pthread_create(&cb->usage_thread, NULL, s_usage_main, cb) == 0)
		cb->usage_started = true;
	store->ops = &s_ops;
	store->impl = cb;
	store->max_blob_bytes = max_blob_bytes;
	return store;
fail:
	s_destroy(cb);
	free(store);
	return NULL;
fail_alloc:
	if (cb)
		free(cb->tmp_dir);
	free(cb);
	free(store);
	return NULL;
}
