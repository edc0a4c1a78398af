/*
 * tests/util/kd_cluster.c — what cluster-mode suites share (tests/util/kd_cluster.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <jansson.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_cluster.h"
#include "test.h"

/* A batch of events ev-<first> … of `type`. */
char *clu_batch(int first, int count, const char *type)
{
	size_t cap = (size_t)count * 160 + 8, used = 0;
	char *text = malloc(cap);

	if (!text)
		return NULL;
	text[used++] = '[';
	for (int i = 0; i < count; i++)
		used += (size_t)snprintf(text + used, cap - used,
					 "%s{\"specversion\":\"1.0\",\"id\":\"ev-%06d\","
					 "\"source\":\"/cluster-test\",\"type\":\"%s\","
					 "\"data\":{\"n\":%d}}",
					 i ? "," : "", first + i, type, first + i);
	snprintf(text + used, cap - used, "]");
	return text;
}

/* The statuses in a gateway reply: how many results are accepted, duplicate, or other.
 * Returns the number of results. */
size_t clu_tally(const char *reply, size_t *accepted, size_t *duplicate, size_t *other,
		 char *first_other, size_t size)
{
	json_t *root = reply ? json_loads(reply, 0, NULL) : NULL, *res;
	size_t i, n = 0;

	json_array_foreach(json_object_get(root, "results"), i, res)
	{
		const char *st = json_string_value(json_object_get(res, "status"));
		n++;
		if (st && !strcmp(st, "accepted"))
			(*accepted)++;
		else if (st && !strcmp(st, "duplicate"))
			(*duplicate)++;
		else {
			if (first_other && !*other)
				snprintf(first_other, size, "%s: %s", st ? st : "?",
					 json_string_value(json_object_get(res, "reason")) ?: "");
			(*other)++;
		}
	}
	json_decref(root);
	return n;
}

/* Counts, per event number, the lines of a sink's file naming ev-<n>. */
static void s_count(const char *path, unsigned *counts, int n)
{
	char *text = test_read_file(path, NULL), *line, *save = NULL;

	if (!text)
		return;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *p = strstr(line, "\"id\":\"ev-");
		int idx = p ? atoi(p + 9) : -1;
		if (idx >= 0 && idx < n)
			counts[idx]++;
	}
	free(text);
}

/* Events 0..n-1 that no node's sink `name` has written yet; *dups gets the deliveries
 * beyond the first. */
int clu_missing(kd_t **nodes, size_t n_nodes, const char *name, int n, size_t *dups)
{
	unsigned *counts = calloc((size_t)n, sizeof *counts);
	int missing = 0;

	*dups = 0;
	if (!counts)
		return n;
	for (size_t k = 0; k < n_nodes; k++)
		if (nodes[k])
			s_count(kd_path(nodes[k], name), counts, n);
	for (int i = 0; i < n; i++) {
		if (!counts[i])
			missing++;
		else
			*dups += counts[i] - 1;
	}
	free(counts);
	return missing;
}

/* The number of messages in the DEAD stream, -1 when JetStream does not say. */
int64_t clu_dead_count(const natsd_t *nc)
{
	natsConnection *conn = NULL;
	jsCtx *js = NULL;
	jsStreamInfo *si = NULL;
	int64_t n = -1;

	if (natsConnection_ConnectTo(&conn, nc->nodes[0].url) == NATS_OK &&
	    natsConnection_JetStream(&js, conn, NULL) == NATS_OK &&
	    js_GetStreamInfo(&si, js, "KANAL_DEAD", NULL, NULL) == NATS_OK)
		n = (int64_t)si->State.Msgs;
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	natsConnection_Destroy(conn);
	return n;
}

/* The messages of the DEAD stream (up to max), their Kanal-Reason headers joined with ','
 * into reasons. Returns the count read. */
int clu_dead_letters(const natsd_t *nc, char *reasons, size_t size, int max)
{
	natsConnection *conn = NULL;
	jsCtx *js = NULL;
	natsSubscription *sub = NULL;
	natsMsgList list = { 0 };
	jsErrCode jerr = 0;
	int n = 0;

	reasons[0] = '\0';
	if (natsConnection_ConnectTo(&conn, nc->nodes[0].url) != NATS_OK ||
	    natsConnection_JetStream(&js, conn, NULL) != NATS_OK ||
	    js_PullSubscribe(&sub, js, "kanal.dead.>", "test-reader", NULL, NULL, &jerr) != NATS_OK)
		goto out;
	if (natsSubscription_Fetch(&list, sub, max, 3000, &jerr) == NATS_OK) {
		for (int i = 0; i < list.Count; i++) {
			const char *reason = NULL;
			natsMsgHeader_Get(list.Msgs[i], "Kanal-Reason", &reason);
			snprintf(reasons + strlen(reasons), size - strlen(reasons), "%s%s",
				 n ? "," : "", reason ? reason : "?");
			n++;
		}
	}
	natsMsgList_Destroy(&list);
out:
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	natsConnection_Destroy(conn);
	return n;
}

/* Sends a batch to node *next (round robin over the running nodes) until every event in it
 * is accepted or a duplicate, resending to the next node after an error or no reply.
 * Returns false when that did not happen within about 40 s (a leader election after a
 * SIGKILL takes 4-8 s, answered "no responders" meanwhile); counts the first answers. */
bool clu_store(kd_t **nodes, const bool *up, size_t n_nodes, size_t *next, const char *batch,
	       size_t count, size_t *duplicates, size_t *resends)
{
	for (int attempt = 0; attempt < 40; attempt++) {
		size_t acc = 0, dup = 0, other = 0;
		char *reply = NULL, why[300] = "";
		kd_t *kd;

		while (!up[*next % n_nodes])
			(*next)++;
		kd = nodes[*next % n_nodes];
		(*next)++;
		kd_send_event(kd, batch, NULL, CLU_WAIT, &reply);
		clu_tally(reply, &acc, &dup, &other, why, sizeof why);
		free(reply);
		if (acc + dup == count && !other) {
			*duplicates += dup;
			return true;
		}
		(*resends)++;
		if (attempt >= 10)
			fprintf(stderr, "a batch not stored yet (attempt %d): %s\n", attempt + 1,
				why[0] ? why : "no reply");
		test_sleep_ms(1000);
	}
	return false;
}

/* ---- singletons (test_cluster_singleton.c) ----------------------------------------------- */

char *clu_journal(const natsd_t *nc, int replicas, const char *node, const char *more_nats)
{
	char *text = NULL;

	if (asprintf(&text,
		     "journal:\n"
		     "  mode: cluster\n"
		     "  nats:\n"
		     "    servers: %s\n"
		     "    replicas: %d\n"
		     "    ack_wait: 5s\n"
		     "    name: %s\n"
		     "%s",
		     nc->servers, replicas, node, more_nats ? more_nats : "") < 0)
		return NULL;
	return text;
}
