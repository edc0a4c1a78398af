/*
 * broker/cluster_lease.c — singletons in cluster mode (docs/design/cluster.md, "Singletons").
 * A poller must run on one node at a time, and go on from its cursor on another node when
 * its node dies. Each singleton instance has a key in the <prefix>_LEASES key-value bucket
 * (the instance's name → the holder's node name; the bucket's TTL is the lease time). A
 * thread per node takes a free lease with create-if-absent, renews the ones it holds every
 * lease/3 with update-at-revision, and treats a refused or failed renewal as lost: it stops
 * the instance at once, well before the TTL lets another node take it. The holder's
 * kanal_state_get/put go to the <prefix>_STATE bucket (key `<instance>.<key>`), so the next
 * holder starts from the last cursor written.
 *
 * Revisions are only ever the ones this node's own create or update returned: nats-server
 * 2.9 can bring back a bucket whose keys all expired two sequences ahead on a restarted
 * node, so a revision read from the bucket is not trusted to mean "ours".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_lease.h"
#include "log.h"

#define LEASE_STATE_TIMEOUT_MS 5000 /* a state get/put waits this long for NATS at most */

typedef struct lease_entry {
	instance_t *inst;
	char key[160]; /* the instance's name in the key alphabet */
	bool held;
	uint64_t revision;  /* of our last create/update: valid only while held */
	int64_t renewed_ms; /* monotonic: when the last successful create/update was sent */
} lease_entry_t;

struct cluster_lease {
	cluster_t *c;
	jsCtx *js; /* with a wait of lease/4: a renewal that hangs is lost in time */
	kvStore *leases;
	kvStore *state;
	int64_t lease_ms;
	char node[128];
	lease_entry_t *entries;
	size_t n_entries;
	pthread_t thread;
	bool started;
	bool stop;          /* atomic */
	pthread_mutex_t mu; /* entries' held/revision between the thread and destroy */
};

/* What a key-value key may hold: A-Z a-z 0-9 - _ = . (no leading or trailing dot). */
static void s_key_clean(char *out, size_t size, const char *a, const char *b)
{
	snprintf(out, size, b ? "%s.%s" : "%s", a, b);
	for (char *p = out; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '=' || *p == '.'))
			*p = '_';
	if (out[0] == '.')
		out[0] = '_';
}

static void s_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static const char *s_nats_why(natsStatus st)
{
	const char *last = nats_GetLastError(NULL);
	return last && *last ? last : natsStatus_GetText(st);
}

/* ---- the state store (on the instances' threads) ------------------------------------------ */

/* Reads through the stream's leader ($JS.API.STREAM.MSG.GET), not kvStore_Get: a bucket
 * made by libnats 3.4 on nats-server 2.9 allows direct gets, which any replica answers — a
 * lagging one with an older cursor, or none yet, right when a new holder takes over. */
static int s_state_get(void *arg, const char *instance, const char *key, char **value_out,
		       kanal_error_t *err)
{
	cluster_lease_t *l = arg;
	char k[300], stream[80], subject[400];
	natsMsg *m = NULL;
	const char *op = NULL;
	jsErrCode jerr = 0;
	natsStatus st;

	jsOptions jo;

	s_key_clean(k, sizeof k, instance, key);
	snprintf(stream, sizeof stream, "KV_%s", kvStore_Bucket(l->state));
	snprintf(subject, sizeof subject, "$KV.%s.%s", kvStore_Bucket(l->state), k);
	jsOptions_Init(&jo);
	jo.Wait = LEASE_STATE_TIMEOUT_MS / 2;
	/* Twice: a stream leader just elected (a new bucket, a NATS node restarted) may let the
	 * first request go unanswered. */
	for (int attempt = 0; attempt < 2; attempt++) {
		jerr = 0;
		st = js_GetLastMsg(&m, l->js, stream, subject, &jo, &jerr);
		if (st != NATS_TIMEOUT && st != NATS_NO_RESPONDERS)
			break;
	}
	if (st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
		return KANAL_ENOTFOUND;
	if (st != NATS_OK) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"cannot read %s from the key-value bucket: %s", k, s_nats_why(st));
		return KANAL_EIO;
	}
	/* A deleted or purged key leaves a marker (KV-Operation: DEL or PURGE). */
	if (natsMsgHeader_Get(m, "KV-Operation", &op) == NATS_OK && op) {
		natsMsg_Destroy(m);
		return KANAL_ENOTFOUND;
	}
	*value_out = strndup(natsMsg_GetData(m) ? natsMsg_GetData(m) : "",
			     (size_t)natsMsg_GetDataLength(m));
	natsMsg_Destroy(m);
	return *value_out ? 0 : KANAL_ENOMEM;
}

static int s_state_put(void *arg, const char *instance, const char *key, const char *value,
		       kanal_error_t *err)
{
	cluster_lease_t *l = arg;
	char k[300];
	bool held = false;
	natsStatus st;

	/* A holder that just lost its lease (its plugin stops at the next turn of its loop)
	 * must not overwrite the cursor of the node that took over. */
	pthread_mutex_lock(&l->mu);
	for (size_t i = 0; i < l->n_entries; i++)
		if (!strcmp(l->entries[i].inst->name, instance))
			held = l->entries[i].held;
	pthread_mutex_unlock(&l->mu);
	if (!held) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"not stored: this node no longer holds the lease of '%s'",
				instance);
		return KANAL_ESTATE;
	}
	s_key_clean(k, sizeof k, instance, key);
	st = kvStore_PutString(NULL, l->state, k, value);
	if (st != NATS_OK) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"cannot store %s in the key-value bucket: %s", k, s_nats_why(st));
		return KANAL_EIO;
	}
	return 0;
}

static const instance_store_t s_store = { .get = s_state_get, .put = s_state_put };

/* ---- the lease thread ------------------------------------------------------------------- */

static void s_lose(cluster_lease_t *l, lease_entry_t *e, const char *why)
{
	pthread_mutex_lock(&l->mu);
	e->held = false;
	e->revision = 0;
	pthread_mutex_unlock(&l->mu);
	instance_set_active(e->inst, false);
	log_warn(e->inst->name, "lost its lease (%s): stopped on this node", why);
}

/* One pass over the singletons: renew what is held, try to take what is not. */
static void s_pass(cluster_lease_t *l)
{
	for (size_t i = 0; i < l->n_entries; i++) {
		lease_entry_t *e = &l->entries[i];
		int64_t sent = kanal_now_ms();
		uint64_t rev = 0;
		natsStatus st;

		if (__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE))
			return;
		if (e->held && instance_take_start_failure(e->inst)) {
			/* Its start failed (an upstream or NATS not ready): let the lease go, so
			 * that this node or another tries again on a later pass. */
			pthread_mutex_lock(&l->mu);
			e->held = false;
			e->revision = 0;
			pthread_mutex_unlock(&l->mu);
			kvStore_Delete(l->leases, e->key);
			log_warn(e->inst->name,
				 "released its lease: its start failed on this node");
			continue;
		}
		if (e->held) {
			/* Too long since the last renewal (a pass held up by slow answers): the
			 * others may take it soon; stop first, take it again later. */
			if (sent - e->renewed_ms > l->lease_ms * 2 / 3) {
				s_lose(l, e, "not renewed in time");
				continue;
			}
			st = kvStore_UpdateString(&rev, l->leases, e->key, l->node, e->revision);
			if (st != NATS_OK) {
				s_lose(l, e, s_nats_why(st));
				continue;
			}
			pthread_mutex_lock(&l->mu);
			e->revision = rev;
			e->renewed_ms = sent;
			pthread_mutex_unlock(&l->mu);
			continue;
		}
		st = kvStore_CreateString(&rev, l->leases, e->key, l->node);
		if (st != NATS_OK)
			continue; /* held by another node (or NATS did not answer): next pass */
		pthread_mutex_lock(&l->mu);
		e->held = true;
		e->revision = rev;
		e->renewed_ms = sent;
		pthread_mutex_unlock(&l->mu);
		log_info(e->inst->name, "took its lease (node %s): starting", l->node);
		instance_set_active(e->inst, true);
	}
}

static void *s_lease_main(void *arg)
{
	cluster_lease_t *l = arg;

	while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
		int64_t next = kanal_now_ms() + l->lease_ms / 3;

		s_pass(l);
		while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE) && kanal_now_ms() < next)
			s_sleep_ms(50);
	}
	return NULL;
}

/* ---- life cycle ------------------------------------------------------------------------- */

/* Waits up to 20 s until the bucket's stream has a leader that answers (a bucket just made
 * with several replicas has none for a moment, and a cursor read then times out). */
static int s_wait_leader(kvStore *kv, kanal_error_t *err)
{
	natsStatus st = NATS_OK;

	for (int waited = 0; waited < 20000; waited += 250) {
		kvStatus *ks = NULL;
		st = kvStore_Status(&ks, kv);
		kvStatus_Destroy(ks);
		if (st == NATS_OK)
			return 0;
		s_sleep_ms(250);
	}
	kanal_error_set(err, "journal.nats", 0, 0, NULL,
			"the key-value bucket %s has no leader after 20 s: %s", kvStore_Bucket(kv),
			s_nats_why(st));
	return KANAL_EIO;
}

cluster_lease_t *cluster_lease_new(cluster_t *c, const conf_t *conf, instance_t **instances,
				   size_t n, kanal_error_t *err)
{
	cluster_lease_t *l = calloc(1, sizeof *l);
	jsOptions jo;

	if (!l || !(l->entries = calloc(n + 1, sizeof *l->entries))) {
		free(l);
		kanal_error_set(err, NULL, 0, 0, NULL, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&l->mu, NULL);
	l->c = c;
	l->lease_ms = conf->nats.lease_ms;
	snprintf(l->node, sizeof l->node, "%s", cluster_node_name(c));
	for (size_t i = 0; i < n; i++) {
		instance_t *inst = instances[i];
		lease_entry_t *e = &l->entries[l->n_entries];

		if (inst->index >= conf->n_instances || !conf->instances[inst->index].singleton)
			continue;
		e->inst = inst;
		s_key_clean(e->key, sizeof e->key, inst->name, NULL);
		l->n_entries++;
	}
	/* Without singletons nothing more: no NATS round trips between the endpoints file and
	 * the router's start (a node whose NATS goes away then answers at once). */
	if (!l->n_entries)
		return l;
	jsOptions_Init(&jo);
	jo.Wait =
		l->lease_ms / 4 < LEASE_STATE_TIMEOUT_MS ? l->lease_ms / 4 : LEASE_STATE_TIMEOUT_MS;
	if (natsConnection_JetStream(&l->js, cluster_connection(c), &jo) != NATS_OK) {
		kanal_error_set(err, "journal.nats", 0, 0, NULL, "cannot use JetStream: %s",
				s_nats_why(NATS_ERR));
		goto fail;
	}
	if (cluster_kv_open(c, l->js, "LEASES", l->lease_ms, (int)conf->nats.replicas, &l->leases,
			    err) < 0 ||
	    cluster_kv_open(c, l->js, "STATE", 0, (int)conf->nats.replicas, &l->state, err) < 0 ||
	    s_wait_leader(l->leases, err) < 0 || s_wait_leader(l->state, err) < 0)
		goto fail;
	for (size_t i = 0; i < l->n_entries; i++) {
		if (instance_make_singleton(l->entries[i].inst, &s_store, l) < 0) {
			kanal_error_set(err, NULL, 0, 0, NULL,
					"instance '%s': cannot make its pipe",
					l->entries[i].inst->name);
			goto fail;
		}
	}
	if (l->n_entries)
		log_info("cluster", "%zu singleton instance%s, lease %lld ms (%s_LEASES)",
			 l->n_entries, l->n_entries == 1 ? "" : "s", (long long)l->lease_ms,
			 conf->nats.stream_prefix);
	return l;
fail:
	cluster_lease_destroy(&l);
	return NULL;
}

int cluster_lease_start(cluster_lease_t *l)
{
	if (!l || !l->n_entries)
		return 0;
	if (pthread_create(&l->thread, NULL, s_lease_main, l) != 0)
		return KANAL_ETHREAD;
	l->started = true;
	return 0;
}

void cluster_lease_destroy(cluster_lease_t **l_p)
{
	cluster_lease_t *l = l_p ? *l_p : NULL;

	if (!l)
		return;
	*l_p = NULL;
	__atomic_store_n(&l->stop, true, __ATOMIC_RELEASE);
	if (l->started)
		pthread_join(l->thread, NULL);
	for (size_t i = 0; i < l->n_entries; i++) {
		lease_entry_t *e = &l->entries[i];
		if (!e->held)
			continue;
		instance_set_active(e->inst, false);
		/* Another node takes it on its next pass, not after the TTL. */
		if (kvStore_Delete(l->leases, e->key) == NATS_OK)
			log_info(e->inst->name, "released its lease");
	}
	kvStore_Destroy(l->leases);
	kvStore_Destroy(l->state);
	jsCtx_Destroy(l->js);
	free(l->entries);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

json_t *cluster_lease_holders(cluster_t *c)
{
	json_t *out = json_array();
	jsCtx *js = NULL;
	kvStore *kv = NULL;
	kvKeysList keys = { 0 };
	char bucket[64];

	snprintf(bucket, sizeof bucket, "%s_LEASES", cluster_prefix(c));
	if (natsConnection_JetStream(&js, cluster_connection(c), NULL) != NATS_OK)
		return out;
	if (js_KeyValue(&kv, js, bucket) != NATS_OK) {
		jsCtx_Destroy(js);
		return out; /* no singleton has run yet */
	}
	if (kvStore_Keys(&keys, kv, NULL) == NATS_OK) {
		for (int i = 0; i < keys.Count; i++) {
			kvEntry *e = NULL;
			if (kvStore_Get(&e, kv, keys.Keys[i]) == NATS_OK)
				json_array_append_new(out, json_pack("{s:s, s:s%}", "instance",
								     keys.Keys[i], "node",
								     kvEntry_Value(e),
								     (size_t)kvEntry_ValueLen(e)));
			kvEntry_Destroy(e);
		}
	}
	kvKeysList_Destroy(&keys);
	kvStore_Destroy(kv);
	jsCtx_Destroy(js);
	return out;
}
