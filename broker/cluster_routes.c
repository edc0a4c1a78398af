/*
 * broker/cluster_routes.c — routing tables shared through the <prefix>_ROUTES key-value
 * bucket in cluster mode (docs/design/cluster.md, "Routing tables"). A push (`kanalctl routes
 * push`, or `reload` on any node) compiles the files here, puts them as the bucket's
 * `table.candidate`, and waits (bounded) for the verdict of every live node — each node's
 * watcher thread compiles the candidate and writes `verdict.<generation>.<node>` — and only
 * when every one accepts puts `table.current`, which every node's watcher compiles and hands
 * to its router through the cluster inbox for an atomic swap, as a reload does. A refusal
 * anywhere changes nothing anywhere. A node that starts with a current table in the bucket
 * uses it instead of its local files. The generation is the candidate's revision in the
 * bucket. Single-node modes never come here: their routing files stay on disk.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kanal/time.h>

#include "cluster.h"
#include "diag.h"
#include "log.h"
#include "router_int.h"

#define KEY_CANDIDATE "table.candidate"
#define KEY_CURRENT "table.current"
#define ROUTES_VERDICT_MS 8000        /* how long a push waits for the other nodes' verdicts */
#define ROUTES_LIVE_MS 15000          /* a node that wrote its entry longer ago is not waited for */
#define ROUTES_MAX_BYTES (900 * 1024) /* a KV value must fit a NATS message (1 MiB) */
/* A candidate older than this is a refused push's left-over: no node waits for its verdict
 * (a push waits ROUTES_VERDICT_MS; the rest is for clocks that differ between machines). */
#define ROUTES_STALE_MS 60000

struct cluster_routes {
	cluster_t *link;
	kvStore *kv;
	kvWatcher *watcher;
	pthread_t thread;
	bool started;
	const char **instances; /* the names are the instances' own */
	size_t n_instances;
	char node[128];
	uint64_t generation; /* router thread: the cluster table in force (0: local files) */
	uint64_t seen;       /* atomic: the newest generation this node has, or is loading */
};

/* What the watcher hands to the router: a current table compiled, or why it did not. */
typedef struct current_load {
	uint64_t generation;
	char pushed_by[128];
	routes_t *routes; /* NULL: it does not compile here (errors) */
	json_t *errors;
} current_load_t;

static void s_load_free(void *payload)
{
	current_load_t *l = payload;

	routes_destroy(&l->routes);
	json_decref(l->errors);
	free(l);
}

static void s_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Compiles a table's files (a JSON array of {name, text}) as this node would load them.
 * Any thread. Returns 0 and *out, or KANAL_ECONFIG with the errors in d. */
static int s_compile(struct cluster_routes *cr, json_t *files, routes_t **out, diag_t *d)
{
	size_t n = json_array_size(files), i;
	routes_text_t *texts = calloc(n ? n : 1, sizeof *texts);
	json_t *f;
	int rc;

	*out = NULL;
	if (!texts) {
		diag_add(d, NULL, 0, 0, "out of memory");
		return KANAL_ENOMEM;
	}
	json_array_foreach(files, i, f)
	{
		json_t *name = json_object_get(f, "name"), *text = json_object_get(f, "text");
		if (!json_is_string(name) || !json_is_string(text)) {
			diag_add(d, NULL, 0, 0, "file %zu of the table is not {\"name\", \"text\"}",
				 i + 1);
			free(texts);
			return KANAL_ECONFIG;
		}
		texts[i] = (routes_text_t){ json_string_value(name), json_string_value(text),
					    json_string_length(text) };
	}
	rc = routes_load_texts(texts, n, cr->instances, cr->n_instances, out, d);
	free(texts);
	return rc;
}

/* An entry's value as a JSON object, or NULL. */
static json_t *s_value(kvEntry *e)
{
	json_t *v = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);

	if (!json_is_object(v)) {
		json_decref(v);
		return NULL;
	}
	return v;
}

/* ---- the watcher thread ----------------------------------------------------------------- */

/* Another node's candidate: compile it and write this node's verdict. */
static void s_answer(struct cluster_routes *cr, kvEntry *e)
{
	uint64_t gen = kvEntry_Revision(e);
	json_t *v = s_value(e), *verdict;
	const char *by = json_string_value(json_object_get(v, "pushed_by"));
	routes_t *routes = NULL;
	diag_t d = { 0 };
	char key[200], *text;
	int64_t pushed_at = 0;

	if (!v || !by || !strcmp(by, cr->node) ||
	    gen <= __atomic_load_n(&cr->seen, __ATOMIC_ACQUIRE) ||
	    kanal_time_parse_rfc3339(json_string_value(json_object_get(v, "pushed_at")),
				     &pushed_at) != 0 ||
	    kanal_wall_ms() - pushed_at > ROUTES_STALE_MS) {
		/* Ours (the pusher judged it), older than what we have, or a refused push's
		 * left-over that nobody waits for any more (seen when the watch starts). */
		json_decref(v);
		return;
	}
	if (s_compile(cr, json_object_get(v, "files"), &routes, &d) == 0) {
		verdict = json_pack("{s:b}", "ok", 1);
	} else {
		verdict = json_pack("{s:b, s:o}", "ok", 0, "errors", admin_diag_lines(&d));
		log_warn("cluster",
			 "the routing table %s pushed (generation %llu) does not compile here: "
			 "refused",
			 by, (unsigned long long)gen);
	}
	routes_destroy(&routes);
	diag_free(&d);
	snprintf(key, sizeof key, "verdict.%llu.%s", (unsigned long long)gen, cr->node);
	text = json_dumps(verdict, JSON_COMPACT);
	if (!text || kvStore_PutString(NULL, cr->kv, key, text) != NATS_OK)
		log_warn("cluster", "could not write this node's verdict on generation %llu: %s",
			 (unsigned long long)gen, nats_GetLastError(NULL) ?: "out of memory");
	free(text);
	json_decref(verdict);
	json_decref(v);
}

/* A new current table: compile it here and hand it to the router. */
static void s_hand_current(struct cluster_routes *cr, kvEntry *e)
{
	json_t *v = s_value(e);
	uint64_t gen = (uint64_t)json_integer_value(json_object_get(v, "generation"));
	current_load_t *l;
	cluster_item_t *it;
	diag_t d = { 0 };

	if (!v || !gen || gen <= __atomic_load_n(&cr->seen, __ATOMIC_ACQUIRE)) {
		json_decref(v); /* this node pushed it, or has it already */
		return;
	}
	l = calloc(1, sizeof *l);
	it = calloc(1, sizeof *it);
	if (!l || !it) {
		free(l);
		free(it);
		json_decref(v);
		log_error("cluster", "out of memory loading the cluster's routing table");
		return;
	}
	l->generation = gen;
	snprintf(l->pushed_by, sizeof l->pushed_by, "%s",
		 json_string_value(json_object_get(v, "pushed_by")) ?: "?");
	if (s_compile(cr, json_object_get(v, "files"), &l->routes, &d) < 0)
		l->errors = admin_diag_lines(&d);
	diag_free(&d);
	json_decref(v);
	it->kind = CLUSTER_ROUTES;
	it->payload = l;
	it->payload_free = s_load_free;
	cluster_inbox_push(cr->link, it);
}

static void *s_watch_main(void *arg)
{
	struct cluster_routes *cr = arg;

	for (;;) {
		kvEntry *e = NULL;
		natsStatus st = kvWatcher_Next(&e, cr->watcher, 1000);

		if (st == NATS_ILLEGAL_STATE)
			break; /* kvWatcher_Stop: kanald is stopping */
		if (st != NATS_OK || !e)
			continue; /* nothing new, or the end of the initial values */
		if (kvEntry_Operation(e) == kvOp_Put) {
			if (!strcmp(kvEntry_Key(e), KEY_CANDIDATE))
				s_answer(cr, e);
			else if (!strcmp(kvEntry_Key(e), KEY_CURRENT))
				s_hand_current(cr, e);
		}
		kvEntry_Destroy(e);
	}
	return NULL;
}

/* ---- the router's side -------------------------------------------------------------- */

void cluster_routes_on_item(router_t *r, cluster_item_t *it)
{
	struct cluster_routes *cr = r->cluster_routes;
	current_load_t *l = it->payload;
	char origin[300];

	if (!cr || !l || l->generation <= cr->generation)
		return;
	if (!l->routes) {
		snprintf(origin, sizeof origin,
			 "the cluster's routing table (generation %llu, pushed by %s) does not "
			 "compile on this node",
			 (unsigned long long)l->generation, l->pushed_by);
		json_decref(admin_routes_refused(r, json_incref(l->errors), origin));
		return;
	}
	snprintf(origin, sizeof origin, "(the cluster's table, generation %llu, pushed by %s)",
		 (unsigned long long)l->generation, l->pushed_by);
	if (admin_routes_swap(r, &l->routes, origin) == 0) {
		cr->generation = l->generation;
		__atomic_store_n(&cr->seen, l->generation, __ATOMIC_RELEASE);
	}
}

uint64_t cluster_routes_generation(const router_t *r)
{
	return r->cluster_routes ? r->cluster_routes->generation : 0;
}

/* The nodes other than this one that wrote their entry in the nodes bucket within
 * ROUTES_LIVE_MS: the ones a push waits for. Ownership: new (an array of names). */
static json_t *s_live_nodes(struct cluster_routes *cr)
{
	json_t *nodes = cluster_nodes(cr->link), *out = json_array(), *n;
	int64_t now = kanal_wall_ms();
	size_t i;

	json_array_foreach(nodes, i, n)
	{
		const char *name = json_string_value(json_object_get(n, "node"));
		int64_t seen = 0;
		if (!name || !strcmp(name, cr->node) ||
		    kanal_time_parse_rfc3339(json_string_value(json_object_get(n, "seen_at")),
					     &seen) != 0 ||
		    now - seen > ROUTES_LIVE_MS)
			continue;
		json_array_append_new(out, json_string(name));
	}
	json_decref(nodes);
	return out;
}

/* Waits up to ROUTES_VERDICT_MS for each node's verdict on generation gen. Returns an object
 * node → verdict ({ok, errors}); a node that did not answer is absent. */
static json_t *s_verdicts(struct cluster_routes *cr, uint64_t gen, json_t *nodes)
{
	json_t *verdicts = json_object(), *n;
	int64_t deadline = kanal_now_ms() + ROUTES_VERDICT_MS;
	size_t i;

	for (;;) {
		json_array_foreach(nodes, i, n)
		{
			const char *name = json_string_value(n);
			char key[200];
			kvEntry *e = NULL;
			json_t *v;

			if (json_object_get(verdicts, name))
				continue;
			snprintf(key, sizeof key, "verdict.%llu.%s", (unsigned long long)gen, name);
			if (kvStore_Get(&e, cr->kv, key) == NATS_OK && (v = s_value(e)))
				json_object_set_new(verdicts, name, v);
			kvEntry_Destroy(e);
		}
		if (json_object_size(verdicts) == json_array_size(nodes) ||
		    kanal_now_ms() >= deadline)
			break;
		s_sleep_ms(50);
	}
	/* The verdicts have served: no key of them is left behind. */
	json_array_foreach(nodes, i, n)
	{
		char key[200];
		if (!json_object_get(verdicts, json_string_value(n)))
			continue;
		snprintf(key, sizeof key, "verdict.%llu.%s", (unsigned long long)gen,
			 json_string_value(n));
		kvStore_Purge(cr->kv, key, NULL);
	}
	return verdicts;
}

/* The reply of a push that some node refused or did not answer; nothing changed. */
static json_t *s_refused(router_t *r, json_t *nodes, json_t *verdicts)
{
	json_t *errors = json_array(), *refused_by = json_array(), *n, *reply;
	char why[600] = "";
	size_t i, used = 0;

	json_array_foreach(nodes, i, n)
	{
		const char *name = json_string_value(n);
		json_t *v = json_object_get(verdicts, name), *e;
		size_t k;

		if (v && json_is_true(json_object_get(v, "ok")))
			continue;
		if (v) {
			json_array_foreach(json_object_get(v, "errors"), k, e)
				json_array_append(errors, e);
			json_array_append_new(
				refused_by, json_pack("{s:s, s:O}", "node", name, "errors",
						      json_object_get(v, "errors") ?: json_null()));
		} else {
			json_array_append_new(refused_by,
					      json_pack("{s:s, s:s}", "node", name, "error",
							"no verdict within the wait"));
		}
		used += (size_t)snprintf(why + used, used < sizeof why ? sizeof why - used : 0,
					 "%s%s %s", used ? "; " : "", name,
					 v ? "refused the table"
					   : "gave no verdict (is it running and connected?)");
		if (used >= sizeof why)
			used = sizeof why - 1;
	}
	reply = admin_routes_refused(r, errors, why);
	json_object_set_new(reply, "refused_by", refused_by);
	return reply;
}

json_t *cluster_routes_push(router_t *r, json_t *req)
{
	struct cluster_routes *cr = r->cluster_routes;
	json_t *files = json_object_get(req, "files"), *nodes = NULL, *verdicts = NULL, *reply,
	       *value;
	routes_t *routes = NULL;
	diag_t d = { 0 };
	char now[64], *text = NULL, origin[200];
	uint64_t gen = 0;
	natsStatus st;
	size_t n_routes;

	if (!cr)
		return json_pack("{s:b, s:s}", "ok", 0, "error",
				 "routes.push needs cluster mode (journal.mode: cluster); reload "
				 "reads the routing files on disk");
	if (!json_is_array(files) || !json_array_size(files))
		return json_pack("{s:b, s:s}", "ok", 0, "error",
				 "routes.push wants files: [{name, text}, ...]");
	if (s_compile(cr, files, &routes, &d) < 0) {
		char why[200];
		snprintf(why, sizeof why, "the table does not compile on %s (the node asked)",
			 cr->node);
		reply = admin_routes_refused(r, admin_diag_lines(&d), why);
		diag_free(&d);
		return reply;
	}
	diag_free(&d);
	n_routes = routes_count(routes);
	kanal_time_rfc3339(kanal_wall_ms(), now, sizeof now);
	value = json_pack("{s:s, s:s, s:O}", "pushed_by", cr->node, "pushed_at", now, "files",
			  files);
	text = value ? json_dumps(value, JSON_COMPACT) : NULL;
	if (!text || strlen(text) > ROUTES_MAX_BYTES) {
		reply = json_pack(
			"{s:b, s:s}", "ok", 0, "error",
			text ? "the routing files are larger than the bucket takes (900 KiB)"
			     : "out of memory");
		goto done;
	}
	nodes = s_live_nodes(cr);
	st = kvStore_PutString(&gen, cr->kv, KEY_CANDIDATE, text);
	if (st != NATS_OK) {
		reply = json_pack("{s:b, s:s+}", "ok", 0, "error",
				  "NATS did not store the candidate table: ",
				  nats_GetLastError(NULL) ?: natsStatus_GetText(st));
		goto done;
	}
	verdicts = s_verdicts(cr, gen, nodes);
	for (size_t i = 0; i < json_array_size(nodes); i++) {
		json_t *v = json_object_get(verdicts, json_string_value(json_array_get(nodes, i)));
		if (!v || !json_is_true(json_object_get(v, "ok"))) {
			reply = s_refused(r, nodes, verdicts);
			goto done;
		}
	}
	/* Every node accepts: the table becomes current everywhere. This node's watcher
	 * skips it (seen), the others load it. */
	json_object_set_new(value, "generation", json_integer((json_int_t)gen));
	free(text);
	text = json_dumps(value, JSON_COMPACT);
	__atomic_store_n(&cr->seen, gen, __ATOMIC_RELEASE);
	st = text ? kvStore_PutString(NULL, cr->kv, KEY_CURRENT, text) : NATS_NO_MEMORY;
	if (st != NATS_OK) {
		__atomic_store_n(&cr->seen, cr->generation, __ATOMIC_RELEASE);
		reply = json_pack("{s:b, s:s+}", "ok", 0, "error",
				  "NATS did not store the table as current (nothing changed): ",
				  nats_GetLastError(NULL) ?: natsStatus_GetText(st));
		goto done;
	}
	snprintf(origin, sizeof origin, "(the cluster's table, generation %llu, pushed here)",
		 (unsigned long long)gen);
	if (admin_routes_swap(r, &routes, origin) < 0) {
		reply = json_pack("{s:b, s:s}", "ok", 0, "error",
				  "out of memory (the other nodes load the table)");
		goto done;
	}
	cr->generation = gen;
	json_array_insert_new(nodes, 0, json_string(cr->node));
	reply = json_pack("{s:b, s:I, s:I, s:O}", "ok", 1, "routes", (json_int_t)n_routes,
			  "generation", (json_int_t)gen, "nodes", nodes);
done:
	routes_destroy(&routes);
	json_decref(verdicts);
	json_decref(nodes);
	json_decref(value);
	free(text);
	return reply;
}

/* Reads a whole file into a JSON string, or NULL (errno). */
static json_t *s_file_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0;
	json_t *s = NULL;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0) {
		long size = ftell(f);
		if (size >= 0 && size <= ROUTES_MAX_BYTES && (buf = malloc((size_t)size + 1))) {
			rewind(f);
			len = fread(buf, 1, (size_t)size, f);
			s = json_stringn(buf, len);
		}
	}
	free(buf);
	fclose(f);
	return s;
}

json_t *cluster_routes_reload(router_t *r)
{
	struct cluster_routes *cr = r->cluster_routes;
	routes_t *routes = NULL;
	diag_t d = { 0 };
	json_t *files, *req, *reply;

	if (!cr)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "not in cluster mode");
	/* The files as this node reads them (a folder's *.yaml in name order), checked
	 * before anything goes to the cluster. */
	if (routes_load((const char *const *)r->conf->route_paths, r->conf->n_route_paths,
			cr->instances, cr->n_instances, &routes, &d) < 0) {
		reply = admin_routes_refused(r, admin_diag_lines(&d), NULL);
		diag_free(&d);
		return reply;
	}
	diag_free(&d);
	files = json_array();
	for (size_t i = 0; i < routes_file_count(routes); i++) {
		const char *path = routes_file(routes, i);
		json_t *text = s_file_text(path);
		if (!text) {
			routes_destroy(&routes);
			json_decref(files);
			return json_pack("{s:b, s:[s+]}", "ok", 0, "errors", path,
					 ": cannot read it again to push it");
		}
		json_array_append_new(files, json_pack("{s:s, s:o}", "name", path, "text", text));
	}
	routes_destroy(&routes);
	req = json_pack("{s:o}", "files", files);
	reply = cluster_routes_push(r, req);
	json_decref(req);
	return reply;
}

/* ---- construction ------------------------------------------------------------------------- */

/* The bucket's current table, when there is one, becomes the router's table. */
static int s_use_current(router_t *r, struct cluster_routes *cr, char *err, size_t err_size)
{
	kvEntry *e = NULL;
	natsStatus st = kvStore_Get(&e, cr->kv, KEY_CURRENT);
	json_t *v;
	routes_t *routes = NULL;
	diag_t d = { 0 };
	uint64_t gen;
	table_t *t;

	if (st == NATS_NOT_FOUND) {
		log_info("cluster", "the cluster has no routing table of its own yet: using the "
				    "local routing files (kanalctl routes push shares a table)");
		return 0;
	}
	if (st != NATS_OK) {
		snprintf(err, err_size, "cannot read the cluster's routing table: %s",
			 nats_GetLastError(NULL) ?: natsStatus_GetText(st));
		return KANAL_EIO;
	}
	v = s_value(e);
	kvEntry_Destroy(e);
	gen = (uint64_t)json_integer_value(json_object_get(v, "generation"));
	if (!v || s_compile(cr, json_object_get(v, "files"), &routes, &d) < 0) {
		char *text = diag_join_sep(&d, "; ");
		snprintf(err, err_size,
			 "the cluster's routing table (generation %llu, pushed by %s) does not "
			 "compile on this node: %s. Make this node's instances agree with the "
			 "other nodes', or push a table that compiles here (kanalctl routes push "
			 "on a running node)",
			 (unsigned long long)gen,
			 json_string_value(json_object_get(v, "pushed_by")) ?: "?",
			 text ? text : "not a table");
		free(text);
		diag_free(&d);
		json_decref(v);
		return KANAL_ECONFIG;
	}
	diag_free(&d);
	if (!(t = calloc(1, sizeof *t))) {
		routes_destroy(&routes);
		json_decref(v);
		snprintf(err, err_size, "out of memory");
		return KANAL_ENOMEM;
	}
	log_info("cluster",
		 "using the cluster's routing table (generation %llu, pushed by %s at %s: %zu "
		 "routes from %zu files), not the local routing files",
		 (unsigned long long)gen, json_string_value(json_object_get(v, "pushed_by")) ?: "?",
		 json_string_value(json_object_get(v, "pushed_at")) ?: "?", routes_count(routes),
		 routes_file_count(routes));
	t->routes = routes;
	t->refs = 1;
	stats_bind(r, routes);
	router_table_release(&r->table);
	r->table = t;
	cr->generation = gen;
	cr->seen = gen;
	json_decref(v);
	return 0;
}

int cluster_routes_new(router_t *r, char *err, size_t err_size)
{
	struct cluster_routes *cr = calloc(1, sizeof *cr);
	kanal_error_t e;
	int rc;

	if (!cr || !(cr->instances = calloc(r->n_instances + 1, sizeof *cr->instances))) {
		free(cr);
		snprintf(err, err_size, "out of memory");
		return KANAL_ENOMEM;
	}
	cr->link = cluster_router_link(r);
	cr->n_instances = r->n_instances;
	for (size_t i = 0; i < r->n_instances; i++)
		cr->instances[i] = r->instances[i]->name;
	snprintf(cr->node, sizeof cr->node, "%s", cluster_node_name(cr->link));
	r->cluster_routes = cr;
	kanal_error_clear(&e);
	if ((rc = cluster_kv_open(cr->link, NULL, "ROUTES", 0, (int)r->conf->nats.replicas, &cr->kv,
				  &e)) < 0)
		snprintf(err, err_size, "%s", e.text);
	if (rc < 0 || (rc = s_use_current(r, cr, err, err_size)) < 0) {
		cluster_routes_destroy(r);
		return rc;
	}
	return 0;
}

int cluster_routes_start(router_t *r)
{
	struct cluster_routes *cr = r->cluster_routes;

	if (!cr)
		return 0;
	if (kvStore_Watch(&cr->watcher, cr->kv, "table.*", NULL) != NATS_OK) {
		log_error("cluster", "cannot watch the routes bucket: %s",
			  nats_GetLastError(NULL) ?: "?");
		return KANAL_EIO;
	}
	if (pthread_create(&cr->thread, NULL, s_watch_main, cr))
		return KANAL_ETHREAD;
	cr->started = true;
	return 0;
}

void cluster_routes_destroy(router_t *r)
{
	struct cluster_routes *cr = r->cluster_routes;

	if (!cr)
		return;
	if (cr->watcher)
		kvWatcher_Stop(cr->watcher);
	if (cr->started)
		pthread_join(cr->thread, NULL);
	kvWatcher_Destroy(cr->watcher);
	kvStore_Destroy(cr->kv);
	free(cr->instances);
	free(cr);
	r->cluster_routes = NULL;
}
