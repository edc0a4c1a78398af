/*
 * broker/conf.h — kanald.yaml: plugin instances, folders, endpoints, limits, log level.
 *
 * Relative paths in the file are resolved against the file's own folder. Every error is
 * reported as "file:line:col: error: …"; loading collects all of them.
 */
#ifndef KANAL_CONF_H
#define KANAL_CONF_H

#include <stdbool.h>
#include <stdint.h>
#include "diag.h"
#include "../sdk/host.h"

typedef struct conf_instance {
	char *name;
	char *plugin;        /* as written: a bundled plugin's name or a path */
	char *plugin_path;   /* resolved .so path */
	kanal_optval_t *options; /* as given, validated later against the plugin's table */
	size_t n_options;
	char *isolation;     /* "thread" (default) or "process" */
	int64_t deadline_ms; /* process isolation: the longest a callback may take before the
			      * plugin host is killed and restarted (`deadline`, default 30 s) */
	int line, column;    /* of the instance's entry */
} conf_instance_t;

typedef struct conf {
	char *file;             /* path as given */
	char *dir;              /* its folder */
	conf_instance_t *instances;
	size_t n_instances;
	char **route_paths;     /* `routes:` a folder or file, or a list of them, resolved */
	size_t n_route_paths;
	char *plugin_dir;       /* where bundled plugins are found */
	char *state_dir;        /* per-instance state, the dead-letter file */
	char *run_dir;          /* the endpoints file kanald writes on start */
	char *gateway_endpoint; /* "" disables */
	char *stream_endpoint;
	char *admin_endpoint;
	char *admin_http;       /* "http://127.0.0.1:7703"; "" disables */
	char *admin_token_file; /* bearer token for the HTTP admin API, or NULL */
	char *admin_http_url;   /* set by kanald once bound (the endpoints file lists it) */
	int64_t max_event_bytes;
	int64_t queue_max_events;  /* per destination */
	int64_t queue_max_bytes;   /* per destination */
	int64_t shutdown_deadline_ms;
	int64_t enrich_timeout_ms; /* default for enrich steps without `timeout` */
	int64_t max_parked_events; /* journal: events waiting on disk for full destinations */
	kanal_log_level_t log_level;
	bool journal_durable;      /* journal.mode: durable (default) or memory */
	char *journal_path;        /* NULL: <state_dir>/journal.db */
	bool journal_sync_power;   /* journal.sync: power (synchronous=FULL) or process */
	int64_t journal_retention_ms;
	int64_t dedupe_window_ms;
	void *strings;          /* private storage */
} conf_t;

/* Loads and validates `path`. On success returns 0 and *out. On failure returns
 * KANAL_ECONFIG with every error in d. Ownership: *out is new. */
int conf_load(const char *path, conf_t **out, diag_t *d);
void conf_destroy(conf_t **conf_p);

/* Finds an instance by name or returns NULL. */
const conf_instance_t *conf_instance(const conf_t *conf, const char *name);

#endif
