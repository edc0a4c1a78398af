/*
 * broker/cluster.c — cluster mode's link to NATS JetStream (docs/design/cluster.md): one
 * connection per node, the streams <prefix>_IN, _DLV and _DEAD (created when absent, never
 * deleted, refused when their config differs from the node's; _DEAD's retention limits,
 * journal.dead_letters, are updated instead), the shared pull consumers
 * (`route` on IN, `dlv-<instance>` on DLV for each local destination) with a fetch thread
 * each, asynchronous publishes with a window, and the inbox: a locked list and a pipe that
 * the router's loop polls, through which PubAcks (delivered on libnats's threads) and fetched
 * messages reach the router's thread. The router's side is cluster_router.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "log.h"

#define CLUSTER_PUB_WINDOW 4096      /* publishes waiting for their PubAck */
#define CLUSTER_PUB_TIMEOUT_MS 10000 /* a leader election takes 4-8 s on 2.9 */
/* Fetched messages per consumer not yet finished. The route consumer's messages stay
 * outstanding for a PubAck round trip (their deliveries must be stored before the ack), so
 * this window, divided by that round trip, bounds the routing rate: 256 held row 9 to
 * ~15,000 events/s with the IN stream's backlog growing (bench/README.md, cluster mode). */
#define CLUSTER_FETCH_WINDOW 1024
#define CLUSTER_FETCH_BATCH 256 /* one pull request per this many messages at most */
#define CLUSTER_FETCH_EXPIRY_MS 1000
#define CLUSTER_READY_MS 20000    /* how long a start waits for JetStream to have a leader */
#define CLUSTER_HEARTBEAT_MS 5000 /* a node's entry in <prefix>_NODES is written this often */
#define CLUSTER_NODE_TTL_MS 30000 /* and vanishes this long after its node stopped writing */
/* Publishes in flight, by message pointer (libnats hands the message back to the PubAck
 * handler, not a token): open addressing, at least twice the window. */
#define CLUSTER_PENDING_SLOTS 16384

typedef struct pending_pub {
	natsMsg *msg; /* NULL: free slot */
	uint64_t token;
} pending_pub_t;

typedef struct fetcher {
	cluster_t *c;
	size_t consumer;
	char durable[160];
	natsSubscription *sub;
	pthread_t thread;
	bool started;
	int outstanding; /* fetched and not yet finished (atomic) */
	bool waiting;    /* under c->mu: the thread sleeps on room until cluster_done signals */
	pthread_cond_t room;
} fetcher_t;

struct cluster {
	natsConnection *nc;
	jsCtx *js;
	char prefix[40];       /* KANAL */
	char lower_prefix[40]; /* kanal */
	fetcher_t *fetchers;   /* [0]: route, then one per destination */
	size_t n_fetchers;
	bool stop; /* atomic */

	pthread_mutex_t mu; /* the inbox and the pending table */
	cluster_item_t *head, *tail;
	int pipe_fd[2];
	pending_pub_t *pending;
	size_t n_pending;

	/* The node's entry in the <prefix>_NODES key-value bucket, written by its own thread
	 * (a KV put waits for NATS's answer, which the router never does). */
	kvStore *nodes;
	char node_key[128];
	char *heartbeat; /* under mu: the next value to write, or NULL */
	pthread_t heartbeat_thread;
	bool heartbeat_started;

	/* <prefix>_DEAD's limits from journal.dead_letters, as JetStream counts them (MaxAge
	 * in nanoseconds, 0: none; MaxMsgs, -1: none). */
	int64_t dead_max_age_ns, dead_max_msgs;
};

/* ---- the inbox --------------------------------------------------------------------------- */

/* Appends the list first … last (linked through next) in one lock: a fetch thread hands over
 * a whole batch at once, so the router takes the lock and wakes once per batch, not per
 * message. */
static void s_inbox_push_list(cluster_t *c, cluster_item_t *first, cluster_item_t *last)
{
	bool was_empty;

	last->next = NULL;
	pthread_mutex_lock(&c->mu);
	was_empty = !c->head;
	if (c->tail)
		c->tail->next = first;
	else
		c->head = first;
	c->tail = last;
	pthread_mutex_unlock(&c->mu);
	/* One byte per empty → non-empty: the router drains everything it finds. */
	if (was_empty) {
		char b = 1;
		ssize_t n = write(c->pipe_fd[1], &b, 1);
		(void)n; /* a full pipe already says "something is there" */
	}
}

static void s_inbox_push(cluster_t *c, cluster_item_t *it)
{
	s_inbox_push_list(c, it, it);
}

cluster_item_t *cluster_take(cluster_t *c)
{
	cluster_item_t *list;
	char buf[64];

	while (read(c->pipe_fd[0], buf, sizeof buf) > 0)
		;
	pthread_mutex_lock(&c->mu);
	list = c->head;
	c->head = c->tail = NULL;
	pthread_mutex_unlock(&c->mu);
	return list;
}

void cluster_item_free(cluster_item_t **item_p)
{
	cluster_item_t *it = *item_p;

	if (!it)
		return;
	natsMsg_Destroy(it->msg);
	if (it->payload && it->payload_free)
		it->payload_free(it->payload);
	free(it);
	*item_p = NULL;
}

void cluster_inbox_push(cluster_t *c, cluster_item_t *it)
{
	s_inbox_push(c, it);
}

jsCtx *cluster_jetstream(cluster_t *c)
{
	return c->js;
}

int cluster_fd(const cluster_t *c)
{
	return c->pipe_fd[0];
}

/* ---- publishing ------------------------------------------------------------------------- */

static size_t s_slot(const natsMsg *m)
{
	uintptr_t h = (uintptr_t)m;

	h ^= h >> 17;
	h *= 0x9E3779B97F4A7C15ull;
	return (size_t)(h >> 20) % CLUSTER_PENDING_SLOTS;
}

/* Under c->mu. */
static void s_pending_put(cluster_t *c, natsMsg *m, uint64_t token)
{
	size_t i = s_slot(m);

	while (c->pending[i].msg)
		i = (i + 1) % CLUSTER_PENDING_SLOTS;
	c->pending[i].msg = m;
	c->pending[i].token = token;
	c->n_pending++;
}

/* Under c->mu. Takes m's entry out (keeping the probe chains whole); false when absent. */
static bool s_pending_take(cluster_t *c, const natsMsg *m, uint64_t *token)
{
	size_t i = s_slot(m);

	while (c->pending[i].msg && c->pending[i].msg != m)
		i = (i + 1) % CLUSTER_PENDING_SLOTS;
	if (!c->pending[i].msg)
		return false;
	*token = c->pending[i].token;
	c->pending[i].msg = NULL;
	c->n_pending--;
	/* Re-seat the rest of the chain. */
	for (size_t k = (i + 1) % CLUSTER_PENDING_SLOTS; c->pending[k].msg;
	     k = (k + 1) % CLUSTER_PENDING_SLOTS) {
		pending_pub_t e = c->pending[k];
		c->pending[k].msg = NULL;
		c->n_pending--;
		s_pending_put(c, e.msg, e.token);
	}
	return true;
}

/* libnats's thread: a publish was answered. The message is ours to destroy. */
static void s_on_puback(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	cluster_t *c = closure;
	cluster_item_t *it = calloc(1, sizeof *it);
	uint64_t token = 0;
	bool known;

	(void)js;
	pthread_mutex_lock(&c->mu);
	known = s_pending_take(c, msg, &token);
	pthread_mutex_unlock(&c->mu);
	natsMsg_Destroy(msg);
	if (!it || !known) {
		/* Out of memory: the token is never answered and its sender times out and
		 * resends, which deduplication absorbs. */
		free(it);
		return;
	}
	it->kind = CLUSTER_PUBACK;
	it->token = token;
	if (pa) {
		it->status = pa->Duplicate ? KANAL_EDUPLICATE : 0;
	} else {
		it->status = KANAL_EIO;
		snprintf(it->error, sizeof it->error, "JetStream did not store it: %s",
			 pae && pae->ErrText ? pae->ErrText
			 : pae               ? natsStatus_GetText(pae->Err)
					     : "no answer");
	}
	s_inbox_push(c, it);
}

/* A message of data on subject with the headers, or NULL (out of memory, said in err). */
static natsMsg *s_msg_new(const char *subject, const cluster_header_t *headers, size_t n_headers,
			  const void *data, size_t len, kanal_error_t *err)
{
	natsMsg *m = NULL;

	if (natsMsg_Create(&m, subject, NULL, data, (int)len) != NATS_OK) {
		kanal_error_set(err, "journal.nats", 0, 0, NULL, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n_headers; i++)
		natsMsgHeader_Set(m, headers[i].name, headers[i].value);
	return m;
}

bool cluster_connected(cluster_t *c)
{
	return natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED;
}

int cluster_publish(cluster_t *c, const char *subject, const cluster_header_t *headers,
		    size_t n_headers, const void *data, size_t len, uint64_t token,
		    kanal_error_t *err)
{
	natsMsg *m = NULL;
	jsPubOptions po;
	natsStatus st;

	if (!cluster_connected(c)) {
		kanal_error_set(err, "journal.nats", 0, 0, NULL, "the connection to NATS is down");
		return KANAL_EIO;
	}
	if (!(m = s_msg_new(subject, headers, n_headers, data, len, err)))
		return KANAL_ENOMEM;
	jsPubOptions_Init(&po);
	po.MaxWait = CLUSTER_PUB_TIMEOUT_MS;
	pthread_mutex_lock(&c->mu);
	if (c->n_pending >= CLUSTER_PUB_WINDOW) {
		pthread_mutex_unlock(&c->mu);
		natsMsg_Destroy(m);
		return KANAL_EBUSY;
	}
	s_pending_put(c, m, token);
	pthread_mutex_unlock(&c->mu);
	/* The entry is in before the publish: the PubAck may come back before this returns. */
	{
		natsMsg *keep = m;
		st = js_PublishMsgAsync(c->js, &m, &po);
		if (st != NATS_OK) {
			uint64_t t;
			pthread_mutex_lock(&c->mu);
			s_pending_take(c, keep, &t);
			pthread_mutex_unlock(&c->mu);
			natsMsg_Destroy(m);
			kanal_error_set(err, "journal.nats", 0, 0, NULL,
					"publish to JetStream failed: %s", natsStatus_GetText(st));
			return st == NATS_TIMEOUT ? KANAL_EBUSY : KANAL_EIO;
		}
	}
	return 0;
}

/* ---- the dead letters --------------------------------------------------------------------- */

int cluster_dead_range(cluster_t *c, uint64_t *first, uint64_t *last)
{
	char name[64];
	jsStreamInfo *si = NULL;

	snprintf(name, sizeof name, "%s_DEAD", c->prefix);
	*first = *last = 0;
	if (js_GetStreamInfo(&si, c->js, name, NULL, NULL) != NATS_OK)
		return KANAL_EIO;
	if (si->State.Msgs > 0) {
		*first = si->State.FirstSeq;
		*last = si->State.LastSeq;
	}
	jsStreamInfo_Destroy(si);
	return 0;
}

int cluster_dead_get(cluster_t *c, uint64_t seq, natsMsg **out)
{
	char name[64];
	jsErrCode jerr = 0;
	natsStatus st;

	snprintf(name, sizeof name, "%s_DEAD", c->prefix);
	*out = NULL;
	st = js_GetMsg(out, c->js, name, seq, NULL, &jerr);
	if (st == NATS_OK)
		return 0;
	return st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr ? KANAL_ENOTFOUND : KANAL_EIO;
}

int cluster_dead_delete(cluster_t *c, uint64_t seq)
{
	char name[64];
	jsErrCode jerr = 0;
	natsStatus st;

	snprintf(name, sizeof name, "%s_DEAD", c->prefix);
	st = js_DeleteMsg(c->js, name, seq, NULL, &jerr);
	if (st == NATS_OK)
		return 0;
	return st == NATS_NOT_FOUND || jerr == JSSequenceNotFoundErr ? KANAL_ENOTFOUND : KANAL_EIO;
}

int cluster_publish_sync(cluster_t *c, const char *subject, const cluster_header_t *headers,
			 size_t n_headers, const void *data, size_t len, kanal_error_t *err)
{
	natsMsg *m = s_msg_new(subject, headers, n_headers, data, len, err);
	jsPubAck *pa = NULL;
	jsErrCode jerr = 0;
	natsStatus st;

	if (!m)
		return KANAL_ENOMEM;
	st = js_PublishMsg(&pa, c->js, m, NULL, &jerr);
	natsMsg_Destroy(m);
	jsPubAck_Destroy(pa);
	if (st != NATS_OK) {
		kanal_error_set(err, "journal.nats", 0, 0, NULL, "JetStream did not store it: %s",
				nats_GetLastError(NULL) ? nats_GetLastError(NULL)
							: natsStatus_GetText(st));
		return KANAL_EIO;
	}
	return 0;
}

void cluster_publish_core(cluster_t *c, const char *subject, const char *text)
{
	natsConnection_PublishString(c->nc, subject, text);
}

/* ---- subjects ----------------------------------------------------------------------------- */

/* Appends text to buf, mapping what a subject token cannot hold (space, '*', '>', control
 * characters, empty tokens) to '_'. */
static void s_subject_tail(char *buf, size_t size, const char *text)
{
	size_t n = strlen(buf);
	char prev = '.';

	for (const char *p = text; *p && n + 2 < size; p++) {
		char ch = *p;
		if (ch == ' ' || ch == '*' || ch == '>' || (unsigned char)ch < 0x21 || ch == 0x7f)
			ch = '_';
		if (ch == '.' && prev == '.')
			buf[n++] = '_';
		buf[n++] = ch;
		prev = ch;
	}
	if (prev == '.' && n + 1 < size)
		buf[n++] = '_';
	buf[n] = '\0';
}

void cluster_subject_in(const cluster_t *c, const char *type, char *buf, size_t size)
{
	snprintf(buf, size, "%s.in.", c->lower_prefix);
	s_subject_tail(buf, size, type);
}

void cluster_subject_dlv(const cluster_t *c, const char *dest, char *buf, size_t size)
{
	snprintf(buf, size, "%s.dlv.", c->lower_prefix);
	s_subject_tail(buf, size, dest);
}

void cluster_subject_events(const cluster_t *c, const char *kind, const char *tail, char *buf,
			    size_t size)
{
	snprintf(buf, size, "%s.events.", c->lower_prefix);
	s_subject_tail(buf, size, kind);
	if (strlen(buf) + 1 < size)
		strcat(buf, ".");
	s_subject_tail(buf, size, *tail ? tail : "-");
}

void cluster_subject_dead(const cluster_t *c, const char *dest, char *buf, size_t size)
{
	snprintf(buf, size, "%s.dead.", c->lower_prefix);
	s_subject_tail(buf, size, dest);
}

/* ---- streams and consumers ----------------------------------------------------------------- */

static void s_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static const char *s_retention_name(jsRetentionPolicy p)
{
	return p == js_WorkQueuePolicy ? "workqueue" : p == js_LimitsPolicy ? "limits" : "interest";
}

void cluster_stream_config(jsStreamConfig *sc, const char *name, const char **subject,
			   jsRetentionPolicy retention, int64_t replicas, int64_t duplicates_ms)
{
	jsStreamConfig_Init(sc);
	sc->Name = name;
	sc->Subjects = subject;
	sc->SubjectsLen = 1;
	sc->Retention = retention;
	sc->Storage = js_FileStorage;
	sc->Replicas = replicas;
	sc->Duplicates = duplicates_ms * 1000000LL; /* nanoseconds */
}

/* A limit as the log and the docs write it: "90d", "100000", or "none". */
static void s_limit_text(int64_t v, bool age, char *buf, size_t size)
{
	if (age ? v <= 0 : v < 0)
		snprintf(buf, size, "none");
	else if (age && v % (86400LL * 1000000000LL) == 0)
		snprintf(buf, size, "%lldd", (long long)(v / (86400LL * 1000000000LL)));
	else if (age)
		snprintf(buf, size, "%llds", (long long)(v / 1000000000LL));
	else
		snprintf(buf, size, "%lld", (long long)v);
}

/* MaxMsgs as the server answers it: -1 for none (libnats sends 0 or -1). */
static int64_t s_max_msgs(int64_t v)
{
	return v > 0 ? v : -1;
}

/* Stream `have` exists with retention limits (MaxAge, MaxMsgs, and the duplicate window that
 * goes with an age limit) other than sc's: they are updated in place — JetStream applies new
 * limits to a stream safely, while deleting and re-creating one is what 2.9 must never see —
 * so the node started last sets them, and says so. Returns 0, or KANAL_EIO with the reason
 * in err. */
static int s_update_limits(jsCtx *js, const jsStreamConfig *have, const jsStreamConfig *sc,
			   kanal_error_t *err)
{
	jsStreamConfig want = *have;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	char was_age[32], was_msgs[32], age[32], msgs[32];
	natsStatus st;

	if (have->MaxAge == sc->MaxAge && s_max_msgs(have->MaxMsgs) == s_max_msgs(sc->MaxMsgs) &&
	    have->Duplicates == sc->Duplicates)
		return 0;
	want.MaxAge = sc->MaxAge;
	want.MaxMsgs = s_max_msgs(sc->MaxMsgs);
	want.Duplicates = sc->Duplicates;
	s_limit_text(have->MaxAge, true, was_age, sizeof was_age);
	s_limit_text(s_max_msgs(have->MaxMsgs), false, was_msgs, sizeof was_msgs);
	s_limit_text(want.MaxAge, true, age, sizeof age);
	s_limit_text(want.MaxMsgs, false, msgs, sizeof msgs);
	st = js_UpdateStream(&si, js, &want, NULL, &jerr);
	jsStreamInfo_Destroy(si);
	if (st != NATS_OK) {
		kanal_error_set(err, "journal", 0, 0, NULL,
				"cannot set the limits of stream %s to max_age %s, max_events %s: "
				"%s (JetStream error %d)",
				have->Name, age, msgs,
				nats_GetLastError(NULL) ? nats_GetLastError(NULL)
							: natsStatus_GetText(st),
				(int)jerr);
		return KANAL_EIO;
	}
	log_warn("cluster",
		 "updated stream %s: it keeps messages max_age %s, max_events %s (this node's "
		 "journal.dead_letters for dead letters, journal.nats.blob_retention for blobs; "
		 "it had %s, %s): every node should have the same",
		 have->Name, age, msgs, was_age, was_msgs);
	return 0;
}

int cluster_ensure_stream(jsCtx *js, jsStreamConfig *sc, kanal_error_t *err)
{
	const char *name = sc->Name, *subject = sc->Subjects[0];
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus st = NATS_OK;

	for (int waited = 0; waited < CLUSTER_READY_MS; waited += 500) {
		jerr = 0;
		st = js_GetStreamInfo(&si, js, name, NULL, &jerr);
		if (st == NATS_OK)
			break;
		if (jerr == JSStreamNotFoundErr || st == NATS_NOT_FOUND) {
			jerr = 0;
			st = js_AddStream(&si, js, sc, NULL, &jerr);
			if (st == NATS_OK) {
				log_info("cluster", "created stream %s (%s, %lld replicas)", name,
					 subject, (long long)sc->Replicas);
				jsStreamInfo_Destroy(si);
				return 0;
			}
			if (jerr == JSStreamNameExistErr)
				continue; /* another node was quicker: compare with its */
		}
		/* No meta leader yet, or a replica set still electing: wait a little. */
		s_sleep_ms(500);
	}
	if (st != NATS_OK) {
		kanal_error_set(err, "journal.nats", 0, 0, NULL,
				"JetStream did not answer for stream %s within %d s: %s "
				"(JetStream error %d); is JetStream enabled on the servers, "
				"with a meta leader?",
				name, CLUSTER_READY_MS / 1000, nats_GetLastError(NULL), (int)jerr);
		return KANAL_EIO;
	}
	{
		const jsStreamConfig *have = si->Config;
		bool subj_ok = have->SubjectsLen == 1 && !strcmp(have->Subjects[0], subject);
		char diff[300] = "";

		if (!subj_ok)
			snprintf(diff, sizeof diff, "subjects %s%s, not %s",
				 have->SubjectsLen ? have->Subjects[0] : "(none)",
				 have->SubjectsLen > 1 ? ", ..." : "", subject);
		else if (have->Retention != sc->Retention)
			snprintf(diff, sizeof diff, "retention %s, not %s",
				 s_retention_name(have->Retention),
				 s_retention_name(sc->Retention));
		else if (have->Storage != js_FileStorage)
			snprintf(diff, sizeof diff, "memory storage, not file storage");
		else if (have->Replicas != sc->Replicas)
			snprintf(diff, sizeof diff,
				 "%lld replicas, not %lld (journal.nats.replicas)",
				 (long long)have->Replicas, (long long)sc->Replicas);
		else if (have->Duplicates != sc->Duplicates && sc->MaxAge <= 0)
			/* With an age limit the window goes with it (updated below). */
			snprintf(diff, sizeof diff,
				 "a duplicate window of %lld s, not %lld s (journal.dedupe_window)",
				 (long long)(have->Duplicates / 1000000000LL),
				 (long long)(sc->Duplicates / 1000000000LL));
		else if ((have->MaxMsgsPerSubject > 0 ? have->MaxMsgsPerSubject : -1) !=
			 (sc->MaxMsgsPerSubject > 0 ? sc->MaxMsgsPerSubject : -1))
			/* 0 and -1 both say "no limit" (libnats sends 0, the server answers -1). */
			snprintf(diff, sizeof diff, "%lld messages per subject, not %lld",
				 (long long)have->MaxMsgsPerSubject,
				 (long long)sc->MaxMsgsPerSubject);
		if (!diff[0] && s_update_limits(js, have, sc, err) < 0) {
			jsStreamInfo_Destroy(si);
			return KANAL_EIO;
		}
		jsStreamInfo_Destroy(si);
		if (diff[0]) {
			kanal_error_set(
				err, "journal.nats", 0, 0, NULL,
				"stream %s exists with %s. Every node must have the same "
				"journal settings: make this node's kanald.yaml agree with "
				"the others, or choose a new journal.nats.stream_prefix. Do "
				"not delete the stream (it holds accepted events, and "
				"re-creating a stream under the same name can lose "
				"acknowledged messages on nats-server 2.9)",
				name, diff);
			return KANAL_ECONFIG;
		}
	}
	return 0;
}

/* Makes sure stream <prefix>_<suffix> exists as this node would create it
 * (cluster_ensure_stream). */
static int s_ensure_stream(cluster_t *c, const char *suffix, const char *subject,
			   jsRetentionPolicy retention, const conf_nats_t *conf,
			   int64_t dedupe_window_ms, kanal_error_t *err)
{
	char name[64];
	const char *subjects[] = { subject };
	jsStreamConfig sc;

	snprintf(name, sizeof name, "%s_%s", c->prefix, suffix);
	cluster_stream_config(&sc, name, subjects, retention, conf->replicas, dedupe_window_ms);
	if (!strcmp(suffix, "DEAD")) {
		/* The dead letters' retention, as single-node mode's journal applies it. */
		sc.MaxAge = c->dead_max_age_ns;
		sc.MaxMsgs = c->dead_max_msgs;
		/* JetStream refuses a duplicate window longer than the stream's MaxAge. */
		if (sc.MaxAge > 0 && sc.Duplicates > sc.MaxAge)
			sc.Duplicates = sc.MaxAge;
	}
	return cluster_ensure_stream(c->js, &sc, err);
}

int cluster_kv_open(cluster_t *c, jsCtx *js, const char *suffix, int64_t ttl_ms, int replicas,
		    kvStore **out, kanal_error_t *err)
{
	char bucket[64];
	natsStatus st = NATS_OK;

	if (!js)
		js = c->js;
	snprintf(bucket, sizeof bucket, "%s_%s", c->prefix, suffix);
	for (int waited = 0; waited < CLUSTER_READY_MS; waited += 500) {
		st = js_KeyValue(out, js, bucket);
		if (st == NATS_OK)
			return 0;
		if (st == NATS_NOT_FOUND) {
			kvConfig kc;
			kvConfig_Init(&kc);
			kc.Bucket = bucket;
			kc.History = 1;
			kc.TTL = ttl_ms * 1000000LL; /* libnats 3.4: nanoseconds; 0: none */
			kc.Replicas = replicas;
			kc.StorageType = js_FileStorage;
			st = js_CreateKeyValue(out, js, &kc);
			if (st == NATS_OK)
				return 0;
			/* Another node may have made it meanwhile. */
			if (js_KeyValue(out, js, bucket) == NATS_OK)
				return 0;
			break; /* the streams were just made: this is no leader election */
		}
		s_sleep_ms(500);
	}
	kanal_error_set(err, "journal.nats", 0, 0, NULL, "cannot open the key-value bucket %s: %s",
			bucket,
			nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(st));
	return KANAL_EIO;
}

/* Opens the <prefix>_NODES key-value bucket (created when absent, never deleted), where each
 * node writes its entry under its name, and picks this node's key. */
static int s_ensure_nodes(cluster_t *c, const conf_nats_t *conf, kanal_error_t *err)
{
	if (conf->node_name) {
		snprintf(c->node_key, sizeof c->node_key, "%s", conf->node_name);
	} else {
		char host[64] = "node";
		gethostname(host, sizeof host - 1);
		snprintf(c->node_key, sizeof c->node_key, "%s-%d", host, (int)getpid());
	}
	for (char *p = c->node_key; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			*p = '_'; /* what a key may hold */
	return cluster_kv_open(c, NULL, "NODES", CLUSTER_NODE_TTL_MS, (int)conf->replicas,
			       &c->nodes, err);
}

/* Binds fetcher f to the durable pull consumer `durable` on stream suffix, filtered to
 * subject (created by the first node that asks). */
static int s_bind_consumer(cluster_t *c, fetcher_t *f, const char *suffix, const char *durable,
			   const char *subject, const conf_nats_t *conf, kanal_error_t *err)
{
	char stream[64];
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus st = NATS_OK;

	snprintf(stream, sizeof stream, "%s_%s", c->prefix, suffix);
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.ManualAck = true;
	so.Config.Durable = durable;
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.AckWait = conf->ack_wait_ms * 1000000LL;
	so.Config.MaxDeliver = -1;
	so.Config.MaxAckPending = CLUSTER_FETCH_WINDOW * 16;
	for (int waited = 0; waited < CLUSTER_READY_MS; waited += 500) {
		jerr = 0;
		st = js_PullSubscribe(&f->sub, c->js, subject, durable, NULL, &so, &jerr);
		if (st == NATS_OK)
			return 0;
		s_sleep_ms(500);
	}
	kanal_error_set(err, "journal.nats", 0, 0, NULL,
			"cannot bind consumer %s on %s: %s (JetStream error %d)", durable, stream,
			nats_GetLastError(NULL), (int)jerr);
	return KANAL_EIO;
}

/* ---- fetch threads ------------------------------------------------------------------------- */

/* Waits (at most 100 ms, so that a stop is noticed) until cluster_done makes room. */
static void s_wait_room(fetcher_t *f)
{
	cluster_t *c = f->c;
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += 100 * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mu);
	f->waiting = true;
	while (__atomic_load_n(&f->outstanding, __ATOMIC_ACQUIRE) >= CLUSTER_FETCH_WINDOW &&
	       !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
		if (pthread_cond_timedwait(&f->room, &c->mu, &until))
			break;
	f->waiting = false;
	pthread_mutex_unlock(&c->mu);
}

static void *s_fetch_main(void *arg)
{
	fetcher_t *f = arg;
	cluster_t *c = f->c;

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		int room =
			CLUSTER_FETCH_WINDOW - __atomic_load_n(&f->outstanding, __ATOMIC_ACQUIRE);
		natsMsgList list = { 0 };
		cluster_item_t *first = NULL, *last = NULL;
		jsErrCode jerr = 0;
		natsStatus st;
		int n = 0;

		if (room <= 0) {
			s_wait_room(f); /* the router is behind: fetch nothing it cannot hold */
			continue;
		}
		if (room > CLUSTER_FETCH_BATCH)
			room = CLUSTER_FETCH_BATCH;
		st = natsSubscription_Fetch(&list, f->sub, room, CLUSTER_FETCH_EXPIRY_MS, &jerr);
		if (st != NATS_OK) {
			natsMsgList_Destroy(&list);
			if (st != NATS_TIMEOUT)
				s_sleep_ms(200); /* disconnected, or no leader: try again soon */
			continue;
		}
		for (int i = 0; i < list.Count; i++) {
			cluster_item_t *it = calloc(1, sizeof *it);
			if (!it)
				continue; /* not acknowledged: redelivered after AckWait */
			it->kind = CLUSTER_FETCHED;
			it->msg = list.Msgs[i];
			it->consumer = f->consumer;
			list.Msgs[i] = NULL;
			if (last)
				last->next = it;
			else
				first = it;
			last = it;
			n++;
		}
		natsMsgList_Destroy(&list);
		if (first) {
			__atomic_add_fetch(&f->outstanding, n, __ATOMIC_ACQ_REL);
			s_inbox_push_list(c, first, last);
		}
	}
	return NULL;
}

void cluster_done(cluster_t *c, size_t consumer)
{
	fetcher_t *f;

	if (consumer >= c->n_fetchers)
		return;
	f = &c->fetchers[consumer];
	/* Only the step that opens the window wakes the thread (which may be asleep on it). */
	if (__atomic_sub_fetch(&f->outstanding, 1, __ATOMIC_ACQ_REL) == CLUSTER_FETCH_WINDOW - 1) {
		pthread_mutex_lock(&c->mu);
		if (f->waiting)
			pthread_cond_signal(&f->room);
		pthread_mutex_unlock(&c->mu);
	}
}

/* Writes this node's entry every CLUSTER_HEARTBEAT_MS; the bucket's TTL removes it when the
 * node stops. */
static void *s_heartbeat_main(void *arg)
{
	cluster_t *c = arg;

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		char *text;

		pthread_mutex_lock(&c->mu);
		text = c->heartbeat ? strdup(c->heartbeat) : NULL;
		pthread_mutex_unlock(&c->mu);
		if (text)
			kvStore_PutString(NULL, c->nodes, c->node_key, text);
		free(text);
		for (int i = 0;
		     i < CLUSTER_HEARTBEAT_MS / 100 && !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE);
		     i++)
			s_sleep_ms(100);
	}
	return NULL;
}

void cluster_set_heartbeat(cluster_t *c, const char *text)
{
	char *copy = strdup(text);

	if (!copy)
		return;
	pthread_mutex_lock(&c->mu);
	free(c->heartbeat);
	c->heartbeat = copy;
	pthread_mutex_unlock(&c->mu);
}

natsConnection *cluster_connection(cluster_t *c)
{
	return c->nc;
}

const char *cluster_prefix(const cluster_t *c)
{
	return c->prefix;
}

const char *cluster_node_name(const cluster_t *c)
{
	return c->node_key;
}

json_t *cluster_nodes(cluster_t *c)
{
	kvKeysList keys = { 0 };
	json_t *out;

	if (kvStore_Keys(&keys, c->nodes, NULL) != NATS_OK) {
		kvKeysList_Destroy(&keys);
		/* An empty bucket answers "no keys found": no node has written yet. */
		return json_array();
	}
	out = json_array();
	for (int i = 0; i < keys.Count; i++) {
		kvEntry *e = NULL;
		if (kvStore_Get(&e, c->nodes, keys.Keys[i]) == NATS_OK) {
			json_t *v = json_loads(kvEntry_ValueString(e), 0, NULL);
			if (json_is_object(v))
				json_array_append_new(out, v);
			else
				json_decref(v);
		}
		kvEntry_Destroy(e);
	}
	kvKeysList_Destroy(&keys);
	return out;
}

json_t *cluster_consumer_lag(cluster_t *c, const char *suffix, const char *durable)
{
	char stream[64];
	jsConsumerInfo *ci = NULL;
	json_t *o;

	snprintf(stream, sizeof stream, "%s_%s", c->prefix, suffix);
	if (js_GetConsumerInfo(&ci, c->js, stream, durable, NULL, NULL) != NATS_OK)
		return json_pack("{s:s, s:s}", "consumer", durable, "error", "no answer");
	o = json_pack("{s:s, s:s, s:I, s:I, s:I}", "stream", stream, "consumer", durable, "pending",
		      (json_int_t)ci->NumPending, "ack_pending", (json_int_t)ci->NumAckPending,
		      "redelivered", (json_int_t)ci->NumRedelivered);
	jsConsumerInfo_Destroy(ci);
	return o;
}

const char *cluster_durable(const cluster_t *c, size_t consumer)
{
	return consumer < c->n_fetchers ? c->fetchers[consumer].durable : "";
}

int cluster_start(cluster_t *c)
{
	if (!pthread_create(&c->heartbeat_thread, NULL, s_heartbeat_main, c))
		c->heartbeat_started = true;
	for (size_t i = 0; i < c->n_fetchers; i++) {
		if (pthread_create(&c->fetchers[i].thread, NULL, s_fetch_main, &c->fetchers[i]))
			return KANAL_ETHREAD;
		c->fetchers[i].started = true;
	}
	return 0;
}

/* ---- the connection ------------------------------------------------------------------------ */

/* Set while a cluster_t is being destroyed: libnats may run the disconnected callback on its
 * own thread after natsConnection_Destroy returned, when the cluster_t is freed already, so
 * the callback reads this rather than its closure. */
static bool s_closing;

static void s_on_disconnected(natsConnection *nc, void *closure)
{
	(void)nc;
	(void)closure;
	if (__atomic_load_n(&s_closing, __ATOMIC_ACQUIRE))
		return; /* kanald is stopping: nothing to warn about */
	log_warn("cluster", "lost the connection to NATS: not accepting events until it is back");
}

static void s_on_reconnected(natsConnection *nc, void *closure)
{
	char url[256] = "";

	(void)closure;
	natsConnection_GetConnectedUrl(nc, url, sizeof url);
	log_info("cluster", "connected to NATS again (%s)", url);
}

/* Connection options from journal.nats. Returns NATS_OK or the failing status. */
static natsStatus s_options(natsOptions **out, const conf_nats_t *conf, cluster_t *c)
{
	natsOptions *o = NULL;
	natsStatus st = natsOptions_Create(&o);
	char name[128];

	if (conf->node_name)
		snprintf(name, sizeof name, "kanald %s", conf->node_name);
	else {
		char host[64] = "?";
		gethostname(host, sizeof host - 1);
		snprintf(name, sizeof name, "kanald %s/%d", host, (int)getpid());
	}
	if (st == NATS_OK)
		st = natsOptions_SetServers(o, (const char **)conf->servers, (int)conf->n_servers);
	if (st == NATS_OK)
		st = natsOptions_SetName(o, name);
	if (st == NATS_OK)
		st = natsOptions_SetTimeout(o, 5000);
	if (st == NATS_OK)
		st = natsOptions_SetMaxReconnect(o, -1); /* forever: the node waits, refusing */
	if (st == NATS_OK)
		st = natsOptions_SetReconnectWait(o, 500);
	if (st == NATS_OK)
		st = natsOptions_SetDisconnectedCB(o, s_on_disconnected, NULL);
	if (st == NATS_OK)
		st = natsOptions_SetReconnectedCB(o, s_on_reconnected, NULL);
	if (st == NATS_OK && conf->creds_file)
		st = natsOptions_SetUserCredentialsFromFiles(o, conf->creds_file, NULL);
	if (st == NATS_OK && conf->nkey_file)
		st = natsOptions_SetNKeyFromSeed(o, conf->nkey, conf->nkey_file);
	if (st == NATS_OK && (conf->tls_ca_file || conf->tls_cert_file))
		st = natsOptions_SetSecure(o, true);
	if (st == NATS_OK && conf->tls_ca_file)
		st = natsOptions_LoadCATrustedCertificates(o, conf->tls_ca_file);
	if (st == NATS_OK && conf->tls_cert_file)
		st = natsOptions_LoadCertificatesChain(o, conf->tls_cert_file, conf->tls_key_file);
	if (st != NATS_OK) {
		natsOptions_Destroy(o);
		return st;
	}
	*out = o;
	return NATS_OK;
}

/* Connects with opts (destroyed here), or says in err that the servers are out of reach. A
 * failed s_options is passed in as opts NULL. */
static int s_connect(natsConnection **nc_out, natsOptions *opts, const conf_nats_t *conf,
		     kanal_error_t *err)
{
	natsStatus st;

	if (!opts) {
		kanal_error_set(err, "journal.nats", 0, 0, NULL, "journal.nats: %s",
				nats_GetLastError(NULL) ? nats_GetLastError(NULL)
							: "out of memory");
		return KANAL_ECONFIG;
	}
	st = natsConnection_Connect(nc_out, opts);
	natsOptions_Destroy(opts);
	if (st != NATS_OK) {
		kanal_error_set(err, "journal.nats", 0, 0, NULL,
				"cannot reach the NATS cluster at %s%s: %s. In cluster mode "
				"kanald accepts nothing it cannot store there: start NATS (or "
				"fix journal.nats.servers) and start kanald again",
				conf->servers[0],
				conf->n_servers > 1 ? " (and the others listed)" : "",
				natsStatus_GetText(st));
		return KANAL_EIO;
	}
	return 0;
}

natsConnection *cluster_connect(const conf_nats_t *conf, const char *role, kanal_error_t *err)
{
	natsOptions *opts = NULL;
	natsConnection *nc = NULL;
	char name[160];

	if (s_options(&opts, conf, NULL) != NATS_OK)
		opts = NULL;
	/* The node's own callbacks warn about the node's connection; this one says nothing. */
	if (opts && (natsOptions_SetDisconnectedCB(opts, NULL, NULL) != NATS_OK ||
		     natsOptions_SetReconnectedCB(opts, NULL, NULL) != NATS_OK)) {
		natsOptions_Destroy(opts);
		opts = NULL;
	}
	if (opts) {
		snprintf(name, sizeof name, "kanald %s (%s)",
			 conf->node_name ? conf->node_name : "node", role);
		natsOptions_SetName(opts, name);
	}
	return s_connect(&nc, opts, conf, err) < 0 ? NULL : nc;
}

cluster_t *cluster_new(const conf_nats_t *conf, int64_t dedupe_window_ms,
		       const cluster_dead_limits_t *dead, char *const *dests, size_t n_dests,
		       kanal_error_t *err)
{
	cluster_t *c = calloc(1, sizeof *c);
	natsOptions *opts = NULL;
	jsOptions jo;
	char subject[300];

	if (!c) {
		kanal_error_set(err, "journal.nats", 0, 0, NULL, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&c->mu, NULL);
	__atomic_store_n(&s_closing, false, __ATOMIC_RELEASE);
	c->pipe_fd[0] = c->pipe_fd[1] = -1;
	c->pending = calloc(CLUSTER_PENDING_SLOTS, sizeof *c->pending);
	c->fetchers = calloc(n_dests + 1, sizeof *c->fetchers);
	if (!c->pending || !c->fetchers || pipe2(c->pipe_fd, O_NONBLOCK | O_CLOEXEC) < 0) {
		kanal_error_set(err, "journal.nats", 0, 0, NULL, "out of memory");
		goto fail;
	}
	c->dead_max_age_ns = dead && dead->max_age_ms > 0 ? dead->max_age_ms * 1000000LL : 0;
	c->dead_max_msgs = dead && dead->max_events > 0 ? dead->max_events : -1;
	snprintf(c->prefix, sizeof c->prefix, "%s", conf->stream_prefix);
	for (size_t i = 0; c->prefix[i]; i++)
		c->lower_prefix[i] =
			(char)(c->prefix[i] >= 'A' && c->prefix[i] <= 'Z' ? c->prefix[i] - 'A' + 'a'
									  : c->prefix[i]);
	if (s_options(&opts, conf, c) != NATS_OK)
		opts = NULL;
	if (s_connect(&c->nc, opts, conf, err) < 0)
		goto fail;
	jsOptions_Init(&jo);
	jo.Wait = 5000;
	jo.PublishAsync.MaxPending = CLUSTER_PUB_WINDOW;
	jo.PublishAsync.StallWait = 1; /* never hold the router: the sender hears busy */
	jo.PublishAsync.AckHandler = s_on_puback;
	jo.PublishAsync.AckHandlerClosure = c;
	if (natsConnection_JetStream(&c->js, c->nc, &jo) != NATS_OK) {
		kanal_error_set(err, "journal.nats", 0, 0, NULL, "cannot open a JetStream context");
		goto fail;
	}
	snprintf(subject, sizeof subject, "%s.in.>", c->lower_prefix);
	if (s_ensure_stream(c, "IN", subject, js_WorkQueuePolicy, conf, dedupe_window_ms, err) < 0)
		goto fail;
	snprintf(subject, sizeof subject, "%s.dlv.>", c->lower_prefix);
	if (s_ensure_stream(c, "DLV", subject, js_WorkQueuePolicy, conf, dedupe_window_ms, err) < 0)
		goto fail;
	snprintf(subject, sizeof subject, "%s.dead.>", c->lower_prefix);
	if (s_ensure_stream(c, "DEAD", subject, js_LimitsPolicy, conf, dedupe_window_ms, err) < 0)
		goto fail;
	if (s_ensure_nodes(c, conf, err) < 0)
		goto fail;
	c->n_fetchers = n_dests + 1;
	for (size_t i = 0; i < c->n_fetchers; i++) {
		char durable[160];
		fetcher_t *f = &c->fetchers[i];

		f->c = c;
		f->consumer = i;
		pthread_cond_init(&f->room, NULL);
		if (i == CLUSTER_ROUTE) {
			snprintf(subject, sizeof subject, "%s.in.>", c->lower_prefix);
			snprintf(durable, sizeof durable, "route");
		} else {
			cluster_subject_dlv(c, dests[i - 1], subject, sizeof subject);
			snprintf(durable, sizeof durable, "dlv-");
			s_subject_tail(durable, sizeof durable, dests[i - 1]);
			for (char *p = durable; *p; p++)
				if (*p == '.')
					*p = '_'; /* a durable name holds no '.' */
		}
		snprintf(f->durable, sizeof f->durable, "%s", durable);
		if (s_bind_consumer(c, f, i == CLUSTER_ROUTE ? "IN" : "DLV", durable, subject, conf,
				    err) < 0)
			goto fail;
	}
	return c;
fail:
	cluster_destroy(&c);
	return NULL;
}

void cluster_destroy(cluster_t **c_p)
{
	cluster_t *c = *c_p;

	if (!c)
		return;
	__atomic_store_n(&c->stop, true, __ATOMIC_RELEASE);
	__atomic_store_n(&s_closing, true, __ATOMIC_RELEASE);
	for (size_t i = 0; i < c->n_fetchers; i++)
		if (c->fetchers[i].started)
			pthread_join(c->fetchers[i].thread, NULL);
	if (c->heartbeat_started)
		pthread_join(c->heartbeat_thread, NULL);
	kvStore_Destroy(c->nodes);
	free(c->heartbeat);
	if (c->js) {
		/* What was published is answered (or times out) before the connection goes. */
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = 2000;
		js_PublishAsyncComplete(c->js, &po);
	}
	for (size_t i = 0; i < c->n_fetchers; i++) {
		natsSubscription_Destroy(c->fetchers[i].sub);
		/* A fetcher the start failed before is still zero: PTHREAD_COND_INITIALIZER. */
		pthread_cond_destroy(&c->fetchers[i].room);
	}
	jsCtx_Destroy(c->js);
	natsConnection_Destroy(c->nc);
	while (c->head) {
		cluster_item_t *it = c->head;
		c->head = it->next;
		cluster_item_free(&it);
	}
	if (c->pipe_fd[0] >= 0)
		close(c->pipe_fd[0]);
	if (c->pipe_fd[1] >= 0)
		close(c->pipe_fd[1]);
	free(c->pending);
	free(c->fetchers);
	pthread_mutex_destroy(&c->mu);
	free(c);
	*c_p = NULL;
}
