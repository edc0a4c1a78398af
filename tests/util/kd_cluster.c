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
#include <unistd.h>

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

/* Stream `name`'s message count (`last`: its last sequence), -1 when JetStream does not
 * say. */
static int64_t s_stream_state(const natsd_t *nc, const char *name, bool last)
{
	jsStreamInfo *si = clu_stream_info(nc, name);
	int64_t n = si ? (int64_t)(last ? si->State.LastSeq : si->State.Msgs) : -1;

	jsStreamInfo_Destroy(si);
	return n;
}

/* The number of messages in the DEAD stream, -1 when JetStream does not say. */
int64_t clu_dead_count(const natsd_t *nc)
{
	return s_stream_state(nc, "KANAL_DEAD", false);
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

jsStreamInfo *clu_stream_info(const natsd_t *nc, const char *name)
{
	natsConnection *conn = NULL;
	jsCtx *js = NULL;
	jsStreamInfo *si = NULL;

	if (natsConnection_ConnectTo(&conn, nc->nodes[0].url) != NATS_OK ||
	    natsConnection_JetStream(&js, conn, NULL) != NATS_OK ||
	    js_GetStreamInfo(&si, js, name, NULL, NULL) != NATS_OK)
		si = NULL;
	jsCtx_Destroy(js);
	natsConnection_Destroy(conn);
	return si;
}

int64_t clu_stream_msgs(const natsd_t *nc, const char *name)
{
	return s_stream_state(nc, name, false);
}

/* The journal block of a cluster-mode config: dedupe_window and node (journal.nats.name)
 * when not NULL, then more_nats (lines under journal.nats, may be NULL). */
static char *s_journal_block(const natsd_t *nc, int replicas, const char *dedupe_window,
			     const char *node, const char *more_nats)
{
	char *text = NULL;

	if (asprintf(&text,
		     "journal:\n"
		     "  mode: cluster\n"
		     "%s%s%s"
		     "  nats:\n"
		     "    servers: %s\n"
		     "    replicas: %d\n"
		     "    ack_wait: 5s\n"
		     "%s%s%s%s",
		     dedupe_window ? "  dedupe_window: " : "", dedupe_window ? dedupe_window : "",
		     dedupe_window ? "\n" : "", nc->servers, replicas, node ? "    name: " : "",
		     node ? node : "", node ? "\n" : "", more_nats ? more_nats : "") < 0)
		return NULL;
	return text;
}

/* A kanald config in cluster mode: `before` (top-level lines, may be NULL), the journal
 * with dedupe_window (NULL: the default) and the instances. */
static char *s_cluster_conf(const natsd_t *nc, int replicas, const char *before,
			    const char *dedupe_window, const char *instances)
{
	char *journal = s_journal_block(nc, replicas, dedupe_window, NULL, NULL), *extra = NULL;
	char *conf = NULL;

	if (journal && asprintf(&extra, "%s%s", before ? before : "", journal) >= 0)
		conf = kd_config(instances, extra);
	free(journal);
	free(extra);
	return conf;
}

char *clu_config(const natsd_t *nc, int replicas, const char *dedupe_window, const char *instances)
{
	return s_cluster_conf(nc, replicas, NULL, dedupe_window, instances);
}

char *clu_conf(const natsd_t *nc, int replicas, const char *limits, const char *instances)
{
	return s_cluster_conf(nc, replicas, limits, NULL, instances);
}

size_t clu_lines(kd_t **nodes, size_t n_nodes, const char *name)
{
	size_t n = 0;

	for (size_t i = 0; i < n_nodes; i++)
		if (nodes[i])
			n += kd_lines(kd_path(nodes[i], name));
	return n;
}

size_t clu_wait_lines(kd_t **nodes, size_t n_nodes, const char *name, size_t want, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	size_t n;

	while ((n = clu_lines(nodes, n_nodes, name)) < want && test_now_ms() < deadline)
		test_sleep_ms(100);
	return n;
}

int clu_kanalctl(kd_t *kd, char **out, const char *const *args)
{
	char *argv[32], *path = strdup(kd_path(kd, "kanalctl.out"));
	size_t n = 0;
	int status;

	argv[n++] = (char *)"kanalctl";
	argv[n++] = (char *)"-c";
	argv[n++] = kd->conf_path;
	for (size_t i = 0; args[i] && n < 31; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	if (!path)
		return -1;
	unlink(path);
	status = test_run_program("bin/kanalctl", argv, path);
	if (out)
		*out = test_read_file(path, NULL);
	free(path);
	return status;
}

int64_t clu_stream_last_seq(const natsd_t *nc, const char *name)
{
	return s_stream_state(nc, name, true);
}

char *clu_kanalctl_text(const kd_t *kd, const char *args)
{
	size_t cap = 65536, got = 0;
	char *cmd = NULL, *out = calloc(1, cap);
	FILE *f = NULL;

	if (!out)
		abort(); /* a test without memory has nothing to report */
	if (asprintf(&cmd, "%s -c %s %s 2>&1", test_path("bin/kanalctl"), kd->conf_path, args) > 0)
		f = popen(cmd, "r");
	got = f ? fread(out, 1, cap - 1, f) : 0;
	out[got] = '\0';
	if (f)
		pclose(f);
	free(cmd);
	return out;
}

/* ---- singletons (test_cluster_singleton.c) ----------------------------------------------- */

char *clu_journal(const natsd_t *nc, int replicas, const char *node, const char *more_nats)
{
	return s_journal_block(nc, replicas, NULL, node, more_nats);
}
