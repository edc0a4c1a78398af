/*
 * broker/admin.c — the admin commands, on the router's thread: status, routes, instances
 * (and pause, resume, restart), the dead letters (list, show, replay, drop), the measures'
 * report (stats.c) and reload.
 * The admin socket (a ZeroMQ REP) is read here; `kanalctl` and the HTTP admin endpoint
 * (admin_http.c, on its own thread) both talk to it. Replies are JSON, with CPR numbers
 * masked unless a dead letter is asked for in clear. Every operator action is written to
 * the audit log (audit.c) with who asked: the local user of an ipc admin socket, the
 * address of a tcp one, or what the HTTP admin endpoint says it saw.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "isolation.h"
#include "log.h"
#include "router_int.h"
#include "version.h"

/* ---- admin and reload ------------------------------------------------------------------ */

static const char **s_instance_names(router_t *r)
{
	const char **names = calloc(r->n_instances + 1, sizeof *names);

	for (size_t i = 0; names && i < r->n_instances; i++)
		names[i] = r->instances[i]->name;
	return names;
}

json_t *admin_diag_lines(const diag_t *d)
{
	json_t *lines = json_array();

	for (size_t i = 0; i < d->count; i++) {
		char line[1024];
		kanal_error_format(&d->items[i], line, sizeof line);
		json_array_append_new(lines, json_string(line));
	}
	return lines;
}

json_t *admin_routes_refused(router_t *r, json_t *errors, const char *why)
{
	json_t *reply, *e;
	size_t i, len = 0;
	char *joined;

	json_array_foreach(errors, i, e) len += strlen(json_string_value(e) ?: "") + 2;
	/* One record, not a line per error: a log shipper keeps it whole. */
	joined = calloc(1, len + 1);
	json_array_foreach(errors, i, e)
	{
		if (!joined)
			break;
		if (i)
			strcat(joined, "; ");
		strcat(joined, json_string_value(e) ?: "");
	}
	r->reload_failures++;
	r->last_reload_failed = true;
	r->last_reload_ms = kanal_wall_ms();
	log_error("router", "reload failed; keeping the current routes: %s%s%s", why ? why : "",
		  why && joined && *joined ? ": " : "", joined ? joined : "");
	stream_publish(r->stream, "routes.reload_failed", "-", NULL,
		       json_pack("{s:O}", "errors", errors));
	reply = json_pack("{s:b, s:o}", "ok", 0, "errors", errors);
	if (why)
		json_object_set_new(reply, "error", json_string(why));
	free(joined);
	return reply;
}

int admin_routes_swap(router_t *r, routes_t **routes_p, const char *origin)
{
	routes_t *routes = *routes_p;
	table_t *t = calloc(1, sizeof *t);

	*routes_p = NULL;
	if (!t) {
		routes_destroy(&routes);
		return KANAL_ENOMEM;
	}
	t->routes = routes;
	t->refs = 1;
	stats_bind(r, routes);
	router_table_release(&r->table);
	r->table = t;
	r->reloads++;
	r->last_reload_failed = false;
	r->last_reload_ms = kanal_wall_ms();
	log_info("router", "routes reloaded: %zu routes from %zu files%s%s", routes_count(routes),
		 routes_file_count(routes), origin ? " " : "", origin ? origin : "");
	stream_publish(r->stream, "routes.reloaded", "-", NULL,
		       json_pack("{s:I}", "routes", (json_int_t)routes_count(routes)));
	return 0;
}

/* Loads the routing files again and swaps the table if they are valid; in cluster mode,
 * pushes them to every node (cluster_routes.c). Returns a JSON object for the admin
 * reply. */
json_t *admin_reload(router_t *r)
{
	const char **names;
	routes_t *routes = NULL;
	diag_t d = { 0 };
	json_t *reply;

	if (r->cluster)
		return cluster_routes_reload(r);
	names = s_instance_names(r);
	if (!names)
		return json_pack("{s:b, s:[s]}", "ok", 0, "errors", "out of memory");
	if (routes_load((const char *const *)r->conf->route_paths, r->conf->n_route_paths, names,
			r->n_instances, &routes, &d) < 0) {
		reply = admin_routes_refused(r, admin_diag_lines(&d), NULL);
	} else {
		size_t n = routes_count(routes);
		if (admin_routes_swap(r, &routes, NULL) < 0)
			reply = json_pack("{s:b, s:[s]}", "ok", 0, "errors", "out of memory");
		else
			reply = json_pack("{s:b, s:I}", "ok", 1, "routes", (json_int_t)n);
	}
	diag_free(&d);
	free(names);
	return reply;
}

/* "running", "paused" (an operator paused its deliveries) or "restarting" (an isolated
 * plugin host that is down). */
const char *admin_instance_state(router_t *r, instance_t *inst)
{
	dest_t *d = router_dest(r, inst->name);
	if (d && d->paused)
		return "paused";
	if (inst->iso && isolation_host_pid(inst->iso) <= 0)
		return "restarting";
	/* Cluster mode: a singleton runs on the node holding its lease (cluster_lease.c). */
	if (inst->singleton && !instance_is_active(inst))
		return "standby";
	return "running";
}

/* The routing table as operators read it (GET /api/v1/routes). */
static json_t *s_routes_json(router_t *r)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < routes_count(r->table->routes); i++) {
		const route_t *rt = routes_get(r->table->routes, i);
		json_t *to = json_array(), *fb = json_array();
		for (size_t k = 0; k < rt->n_to; k++)
			json_array_append_new(to, json_string(rt->to[k]));
		for (size_t k = 0; k < rt->n_fallback; k++)
			json_array_append_new(fb, json_string(rt->fallback[k]));
		json_array_append_new(arr,
				      json_pack("{s:s, s:s?, s:s?, s:s?, s:o, s:o, s:s, s:i, s:i}",
						"name", rt->name, "type", rt->type_pattern,
						"source", rt->source_glob, "where", rt->where_text,
						"to", to, "fallback", fb, "file", rt->file, "line",
						rt->line, "enrich", (int)rt->n_enrich));
	}
	return json_pack("{s:b, s:o, s:s}", "ok", 1, "routes", arr, "default",
			 routes_default(r->table->routes));
}

/* instance.pause / instance.resume / instance.restart {name}. */
static json_t *s_instance_cmd(router_t *r, const char *cmd, json_t *req)
{
	const char *name = json_string_value(json_object_get(req, "name"));
	dest_t *d = name ? router_dest(r, name) : NULL;

	if (!d || !d->inst)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "no such instance");
	if (!strcmp(cmd, "instance.pause")) {
		d->paused = true;
		log_info("router", "instance '%s' paused by an operator: deliveries wait", name);
		stream_publish(r->stream, "instance.paused", "-", NULL,
			       json_pack("{s:s}", "instance", name));
	} else if (!strcmp(cmd, "instance.resume")) {
		d->paused = false;
		log_info("router", "instance '%s' resumed by an operator", name);
		stream_publish(r->stream, "instance.resumed", "-", NULL,
			       json_pack("{s:s}", "instance", name));
		router_dispatch(r, d);
	} else {
		pid_t pid = d->inst->iso ? isolation_host_pid(d->inst->iso) : 0;
		if (!d->inst->iso)
			return json_pack(
				"{s:b, s:s}", "ok", 0, "error",
				"restart needs 'isolation: process' (a plugin on kanald's own "
				"thread cannot be restarted without restarting kanald)");
		if (pid <= 0)
			return json_pack("{s:b, s:s}", "ok", 0, "error",
					 "its plugin host is already restarting");
		/* Not counted as a crash (isolation_restart). */
		log_info("router", "instance '%s': restarting its plugin host by request", name);
		if (isolation_restart(d->inst->iso) != 0)
			return json_pack("{s:b, s:s}", "ok", 0, "error",
					 "its plugin host is already restarting");
	}
	return json_pack("{s:b, s:s, s:s}", "ok", 1, "instance", name, "state",
			 admin_instance_state(r, d->inst));
}

static json_t *s_status(router_t *r)
{
	json_t *insts = json_array(), *dests = json_array();

	for (size_t i = 0; i < r->n_instances; i++) {
		instance_metric_t m[32];
		size_t n = instance_metrics(r->instances[i], m, 32);
		json_t *metrics = json_object(), *gauges = json_array();
		int up = instance_upstream(r->instances[i]);

		for (size_t k = 0; k < n; k++) {
			json_object_set_new(metrics, m[k].name, json_real(m[k].value));
			if (m[k].gauge) /* set with kanal_metric_set, not counted */
				json_array_append_new(gauges, json_string(m[k].name));
		}
		json_array_append_new(
			insts, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:I}", "name",
					 r->instances[i]->name, "state",
					 admin_instance_state(r, r->instances[i]), "plugin",
					 r->instances[i]->plugin->desc->name, "version",
					 r->instances[i]->plugin->desc->version
						 ? r->instances[i]->plugin->desc->version
						 : "",
					 "metrics", metrics, "gauges", gauges, "upstream",
					 up < 0 ? json_null() : json_boolean(up), "rate_limited",
					 (json_int_t)instance_rate_limited(r->instances[i])));
	}
	for (size_t i = 0; i < r->n_dests; i++) {
		const dest_t *d = &r->dests[i];
		json_array_append_new(
			dests, json_pack("{s:s, s:I, s:I, s:i, s:I, s:I, s:I, s:I}", "name",
					 d->name, "queued", (json_int_t)d->queued, "queued_bytes",
					 (json_int_t)d->queued_bytes, "in_flight", d->n_inflight,
					 "delivered", (json_int_t)d->delivered, "rejected",
					 (json_int_t)d->rejected, "retried", (json_int_t)d->retried,
					 "dead", (json_int_t)d->dead));
	}
	json_t *journal =
		r->journal ? json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:I}", "mode", "durable",
				       "path", journal_path(r->journal), "sync",
				       r->conf->journal_sync_power ? "power" : "process",
				       "writable", !r->journal_failed, "open_events",
				       (json_int_t)journal_open_count(r->journal), "parked_events",
				       (json_int_t)r->n_parked, "dead_letters",
				       (json_int_t)journal_dlq_count(r->journal))
			   : json_pack("{s:s, s:s}", "mode", "memory", "dead_letters",
				       deadletter_path(r->deadletter));
	if (r->journal) {
		journal_ckpt_stats_t ck;
		journal_checkpoints(r->journal, &ck);
		json_object_set_new(journal, "checkpoints",
				    json_pack("{s:I, s:I, s:I, s:I, s:i}", "thread",
					      (json_int_t)ck.by_thread, "router",
					      (json_int_t)ck.by_router, "forced",
					      (json_int_t)ck.forced, "failed",
					      (json_int_t)ck.errors, "wal_pages", ck.wal_pages));
	}
	if (r->cluster) {
		json_decref(journal);
		journal = cluster_router_status(r);
		/* Which table: the cluster's (its generation), or 0 for the local files. */
		json_object_set_new(journal, "routes_generation",
				    json_integer((json_int_t)cluster_routes_generation(r)));
	}
	{
		json_t *st = json_pack(
			"{s:b, s:i, s:I, s:o, s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}}",
			"ok", 1, "pid", (int)getpid(), "routes",
			(json_int_t)routes_count(r->table->routes), "journal", journal, "instances",
			insts, "destinations", dests, "counters", "accepted",
			(json_int_t)r->accepted, "unmatched", (json_int_t)r->unmatched, "invalid",
			(json_int_t)r->invalid, "busy", (json_int_t)r->busy, "reloads",
			(json_int_t)r->reloads, "reload_failures", (json_int_t)r->reload_failures,
			"duplicates", (json_int_t)r->duplicates);
		json_object_set_new(json_object_get(st, "counters"), "dead_letters_purged",
				    json_integer((json_int_t)r->dlq_purged));
		json_object_set_new(json_object_get(st, "counters"), "rate_limited",
				    json_integer((json_int_t)r->rate_limited));
		if (st) { /* security (docs/security.md): ACL refusals and refused handshakes */
			json_t *c = json_object_get(st, "counters");
			json_object_set_new(c, "acl_denied",
					    json_integer((json_int_t)gateway_acl_denied(r)));
			json_object_set_new(c, "connections_denied",
					    json_integer((json_int_t)zap_denied(r->zap)));
			json_object_set_new(st, "last_reload",
					    json_pack("{s:b, s:f}", "ok", !r->last_reload_failed,
						      "time", r->last_reload_ms / 1000.0));
		}
		if (st)
			stats_status(r, st);
		if (st && r->trace) { /* trace.export's spans (trace.c) */
			uint64_t exported, failed, dropped;
			trace_counters(r->trace, &exported, &failed, &dropped);
			json_object_set_new(st, "trace",
					    json_pack("{s:I, s:I, s:I}", "exported",
						      (json_int_t)exported, "failed",
						      (json_int_t)failed, "dropped",
						      (json_int_t)dropped));
		}
		if (st) { /* the instances /readyz needs with their upstream up */
			json_t *req = json_array();
			for (size_t i = 0; i < r->conf->n_readyz_requires; i++)
				json_array_append_new(req,
						      json_string(r->conf->readyz_requires[i]));
			json_object_set_new(st, "readyz_requires", req);
		}
		if (st) /* what is running (sdk/version.h) */
			json_object_set_new(st, "build",
					    json_pack("{s:s, s:s, s:s}", "version", KANAL_VERSION,
						      "revision", kanal__revision, "abi",
						      KANAL_ABI_TEXT));
		return st;
	}
}

/* Parses an RFC 3339 "since" (any offset, nothing after it) into unix ms: 0 when absent,
 * -1 when malformed. */
static int64_t s_since(json_t *req)
{
	const char *text = json_string_value(json_object_get(req, "since"));
	int64_t ms;

	if (!text)
		return 0;
	if (kanal_time_parse_rfc3339(text, &ms) != 0 || ms < 0)
		return -1;
	return ms;
}

static json_t *s_dlq(router_t *r, const char *cmd, json_t *req, bool *clear)
{
	json_t *filter = json_object_get(req, "match");

	if (r->cluster) {
		int64_t since = s_since(req);
		if (since < 0)
			return json_pack("{s:b, s:s}", "ok", 0, "error",
					 "'since' must be an RFC 3339 time");
		return cluster_router_dlq(r, cmd, req, since, clear);
	}
	if (!r->journal)
		return json_pack("{s:b, s:s+}", "ok", 0, "error",
				 "the journal is off (memory mode): dead letters are in ",
				 deadletter_path(r->deadletter));
	if (!strcmp(cmd, "dlq.list")) {
		int64_t since = s_since(req);
		if (since < 0)
			return json_pack("{s:b, s:s}", "ok", 0, "error",
					 "'since' must be an RFC 3339 time");
		return json_pack(
			"{s:b, s:o}", "ok", 1, "items",
			journal_dlq_list(r->journal,
					 json_string_value(json_object_get(req, "route")),
					 json_string_value(json_object_get(req, "type")), since,
					 (int)json_integer_value(json_object_get(req, "limit"))));
	}
	if (!strcmp(cmd, "dlq.show")) {
		json_t *item = journal_dlq_show(r->journal,
						json_integer_value(json_object_get(req, "id")));
		*clear = json_is_true(json_object_get(req, "clear"));
		if (!item)
			return json_pack("{s:b, s:s}", "ok", 0, "error", "no such dead letter");
		return json_pack("{s:b, s:o}", "ok", 1, "item", item);
	}
	if (!strcmp(cmd, "dlq.purge")) {
		const char *text = json_string_value(json_object_get(req, "older_than"));
		int64_t before = -1, n;
		if (!text || kanal_time_parse_rfc3339(text, &before) != 0 || before < 0)
			return json_pack("{s:b, s:s}", "ok", 0, "error",
					 "'older_than' must be an RFC 3339 time");
		n = journal_dlq_purge(r->journal, before, 0);
		if (n < 0)
			return json_pack("{s:b, s:s}", "ok", 0, "error", kanal_strerror((int)n));
		r->dlq_purged += (uint64_t)n;
		return json_pack("{s:b, s:I}", "ok", 1, "purged", (json_int_t)n);
	}
	if (!strcmp(cmd, "dlq.replay") || !strcmp(cmd, "dlq.drop")) {
		bool replay = !strcmp(cmd, "dlq.replay");
		json_t *ids = json_object_get(req, "ids"), *done = json_array(),
		       *missing = json_array(), *id;
		size_t i;

		if (replay && json_is_object(filter)) {
			int64_t since = s_since(filter);
			ids = journal_dlq_match(r->journal,
						json_string_value(json_object_get(filter, "route")),
						json_string_value(json_object_get(filter, "type")),
						since > 0 ? since : 0);
		} else {
			json_incref(ids);
		}
		json_array_foreach(ids, i, id)
		{
			int64_t n = json_integer_value(id);
			int rc;
			if (replay) {
				kanal_msg_t *msg = NULL;
				char *route = NULL, *dest = NULL;
				uint64_t seq = 0;
				rc = journal_dlq_take(r->journal, n, &msg, &seq, &route, &dest);
				if (rc == 0) {
					/* Routed like a resumed event with a target row. */
					journal_row_t row = {
						route ? route : "", dest, 0, -1, 0, NULL
					};
					recover_event(r, seq, msg, false, &row, 1);
					stream_publish(r->stream, "replayed", "-", NULL,
						       json_pack("{s:I, s:s}", "letter",
								 (json_int_t)n, "destination",
								 dest));
				}
				free(route);
				free(dest);
			} else {
				rc = journal_dlq_drop(r->journal, n);
			}
			json_array_append_new(rc == 0 ? done : missing, json_integer(n));
		}
		json_decref(ids);
		return admin_dlq_reply(replay, done, missing);
	}
	return NULL;
}

json_t *admin_dlq_reply(bool replay, json_t *done, json_t *missing)
{
	json_int_t dropped = (json_int_t)json_array_size(done);

	if (replay)
		return json_pack("{s:b, s:o, s:o}", "ok", 1, "replayed", done, "missing", missing);
	json_decref(missing);
	json_decref(done);
	return json_pack("{s:b, s:I}", "ok", 1, "dropped", dropped);
}

/* Writes the audit line of an operator action (audit.h): what changes state or shows a
 * dead letter in clear. Reads, and commands that are not understood, are not audited. */
static void s_audit(router_t *r, const audit_actor_t *actor, const char *cmd, json_t *req,
		    json_t *reply, bool clear)
{
	bool ok = json_is_true(json_object_get(reply, "ok"));
	const char *error = json_string_value(json_object_get(reply, "error"));
	json_t *target = NULL;
	char why[64];

	if (!cmd)
		return;
	if (!strcmp(cmd, "reload") || !strcmp(cmd, "routes.push")) {
		if (ok && json_object_get(reply, "generation"))
			target = json_pack("{s:O}", "generation",
					   json_object_get(reply, "generation"));
		if (!ok) {
			snprintf(why, sizeof why, "%zu error(s) in the routing files",
				 json_array_size(json_object_get(reply, "errors")));
			error = why;
		}
	} else if (!strncmp(cmd, "instance.", 9) && strcmp(cmd, "instances")) {
		target = json_pack("{s:O?}", "instance", json_object_get(req, "name"));
	} else if (!strcmp(cmd, "dlq.replay") || !strcmp(cmd, "dlq.drop")) {
		target = json_pack("{s:O?, s:O?}", "ids", json_object_get(req, "ids"), "match",
				   json_object_get(req, "match"));
		if (ok && json_object_get(reply, "dropped"))
			json_object_set(target, "dropped", json_object_get(reply, "dropped"));
		if (ok && json_object_get(reply, "replayed"))
			json_object_set(target, "replayed", json_object_get(reply, "replayed"));
	} else if (!strcmp(cmd, "dlq.purge")) {
		target = json_pack("{s:O?, s:O?}", "older_than", json_object_get(req, "older_than"),
				   "purged", json_object_get(reply, "purged"));
	} else if (!strcmp(cmd, "dlq.show") && clear) {
		cmd = "dlq.show_clear";
		target = json_pack("{s:O?}", "id", json_object_get(req, "id"));
	} else {
		return;
	}
	audit_record(r->conf->state_dir, r->stream, actor, cmd, target, ok, error);
	json_decref(target);
}

void admin_dlq_retention(router_t *r, int64_t now_ms)
{
	static const audit_actor_t retention = { "kanald", "retention", "" };
	int64_t max_age = r->conf->dlq_max_age_ms, n;
	json_t *target;

	if (!r->journal || (!max_age && !r->conf->dlq_max_events))
		return;
	n = journal_dlq_purge(r->journal, max_age ? now_ms - max_age : 0, r->conf->dlq_max_events);
	if (n <= 0)
		return;
	r->dlq_purged += (uint64_t)n;
	log_info("router",
		 "purged %lld dead letter(s) beyond their retention (max_age %lld s, "
		 "max_events %lld)",
		 (long long)n, (long long)(max_age / 1000), (long long)r->conf->dlq_max_events);
	target = json_pack("{s:I, s:I, s:I}", "purged", (json_int_t)n, "max_age_s",
			   (json_int_t)(max_age / 1000), "max_events",
			   (json_int_t)r->conf->dlq_max_events);
	audit_record(r->conf->state_dir, r->stream, &retention, "dlq.purge", target, true, NULL);
	json_decref(target);
}

void admin_on_readable(router_t *r)
{
	zmq_msg_t in;

	zmq_msg_init(&in);
	while (zmq_msg_recv(&in, r->admin_sock, ZMQ_DONTWAIT) >= 0) {
		json_t *req, *reply;
		const char *cmd = NULL;
		audit_actor_t actor;
		char *text;

		req = json_loadb(zmq_msg_data(&in), zmq_msg_size(&in), 0, NULL);
		audit_actor_of(r->admin_endpoint, &in, req, &actor);
		if (json_is_object(req) && json_is_string(json_object_get(req, "cmd")))
			cmd = json_string_value(json_object_get(req, "cmd"));
		bool clear = false;
		if (cmd && !strcmp(cmd, "reload"))
			reply = admin_reload(r);
		else if (cmd && !strcmp(cmd, "routes.push"))
			reply = cluster_routes_push(r, req);
		else if (cmd && !strcmp(cmd, "status")) {
			reply = s_status(r);
			if (json_is_true(json_object_get(req, "cluster")))
				json_object_update_new(
					reply,
					r->cluster ? json_pack("{s:o}", "cluster",
							       cluster_router_cluster_status(r))
						   : json_pack("{s:b, s:s}", "ok", 0, "error",
							       "kanald is not in cluster mode"));
		} else if (cmd && !strcmp(cmd, "routes"))
			reply = s_routes_json(r);
		else if (cmd && !strcmp(cmd, "instances")) {
			json_t *st = s_status(r);
			reply = json_pack("{s:b, s:O}", "ok", 1, "instances",
					  json_object_get(st, "instances"));
			json_decref(st);
		} else if (cmd && !strncmp(cmd, "instance.", 9) &&
			   (!strcmp(cmd + 9, "pause") || !strcmp(cmd + 9, "resume") ||
			    !strcmp(cmd + 9, "restart")))
			reply = s_instance_cmd(r, cmd, req);
		else if (cmd && !strncmp(cmd, "dlq.", 4) && (reply = s_dlq(r, cmd, req, &clear)))
			;
		else if (cmd && !strcmp(cmd, "measures.report"))
			reply = stats_measures_report(r, req);
		else
			reply = json_pack(
				"{s:b, s:s}", "ok", 0, "error",
				"unknown command (expected reload, routes.push, status, routes, "
				"instances, "
				"instance.pause|resume|restart, dlq.list, dlq.show, "
				"dlq.replay, dlq.drop, dlq.purge or measures.report)");
		s_audit(r, &actor, cmd, req, reply, clear);
		json_decref(req);
		/* The dlq writes (replay, drop) take effect with this turn's commit. */
		commit_end_turn(r);
		text = json_dumps(reply, JSON_COMPACT);
		json_decref(reply);
		/* Dead letters hold events: CPR numbers are masked unless asked for in clear. */
		if (text && !clear)
			kanal_cpr_redact_inplace(text);
		zmq_send(r->admin_sock, text ? text : "{}", text ? strlen(text) : 2, 0);
		free(text);
	}
	zmq_msg_close(&in);
}
