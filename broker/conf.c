/*
 * broker/conf.c — reads and validates kanald.yaml (see conf.h and docs/config.md).
 *
 * The file is parsed into a YAML node tree (yamltree.c) and walked once, key by key. Every
 * problem is reported with its file, line and column and the walk goes on, so one run shows
 * the operator all the mistakes. Instance options are kept as written (kanal_optval_t): they
 * are checked later against the plugin's own options table, once the plugin is loaded.
 *
 * Every string and array of the result lives in one private store (conf->strings), so that
 * conf_destroy frees it all in one place and the many early returns of a validating walk
 * cannot leak.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "acl.h"
#include "conf.h"
#include "../plugins/common/kc_url.h"
#include "admin_http.h"
#include "journal.h"
#include "yamltree.h"

#define CONF_DEFAULT_GATEWAY "tcp://127.0.0.1:7700"
#define CONF_DEFAULT_STREAM "tcp://127.0.0.1:7701"
#define CONF_DEFAULT_ADMIN "tcp://127.0.0.1:7702"
#define CONF_MAX_NAME 63
#define CONF_DEFAULT_DEADLINE_MS 30000 /* an isolated instance's callback deadline */

/* The private store: every allocation the conf_t points into. */
typedef struct conf_store {
	void **ptrs;
	size_t n, cap;
} conf_store_t;

/* State of one load: where errors go and how many there were. */
typedef struct loader {
	conf_t *conf;
	conf_store_t *store;
	const char *file;
	diag_t *d;
	size_t errors;
	bool oom;
} loader_t;

static const char *const s_top_keys[] = { "log_level", "plugin_dir", "state_dir",  "run_dir",
					  "routes",    "endpoints",  "limits",     "instances",
					  "journal",   "security",   "log_format", "trace" };
static const char *const s_trace_keys[] = { "export" };
static const char *const s_trace_export_keys[] = { "url", "batch", "interval", "service_name",
						   "queue" };
static const char *const s_journal_keys[] = { "mode",      "path",          "sync",
					      "retention", "dedupe_window", "dead_letters",
					      "key_file",  "nats" };
static const char *const s_nats_keys[] = {
	"servers",  "creds_file", "nkey",   "nkey_file",      "tls",  "stream_prefix", "replicas",
	"ack_wait", "name",       "events", "blob_retention", "lease"
};
static const char *const s_nats_tls_keys[] = { "ca_file", "cert_file", "key_file" };
static const char *const s_dlq_keys[] = { "max_age", "max_events" };
static const char *const s_endpoint_keys[] = {
	"gateway", "stream", "admin", "admin_http", "admin_token_file", "readyz_requires"
};
static const char *const s_limit_keys[] = { "max_event_size",
					    "queue_max_events",
					    "queue_max_bytes",
					    "shutdown_deadline",
					    "enrich_timeout",
					    "max_parked_events",
					    "rate",
					    "max_blob_size",
					    "blob_store_size" };
static const char *const s_rate_keys[] = { "events_per_second", "burst" };
static const char *const s_instance_keys[] = { "name",    "plugin", "isolation", "deadline",
					       "options", "acl",    "limits",    "singleton" };
/* The bundled plugins that poll an upstream with a cursor: in cluster mode their instances
 * are singletons unless `singleton: false` (docs/cluster.md). */
static const char *const s_poller_plugins[] = { "daycare", "staff", "httppoll" };
static const char *const s_instance_limit_keys[] = { "rate" };
static const char *const s_acl_keys[] = { "emit", "sources" };
static const char *const s_security_keys[] = { "curve", "allow_plain" };
static const char *const s_curve_keys[] = { "secret_key_file", "clients" };
static const char *const s_client_keys[] = { "name", "public_key", "emit", "subscribe", "sources" };
static const char *const s_log_levels[] = { "error", "warn", "info", "debug" };

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- storage and errors ------------------------------------------------------------- */

/* Records `p` in the store so conf_destroy frees it. Returns p, or NULL (freeing p) when
 * memory runs out. */
static void *s_keep(loader_t *ld, void *p)
{
	conf_store_t *st = ld->store;

	if (!p) {
		ld->oom = true;
		return NULL;
	}
	if (st->n == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 32;
		void **ptrs = realloc(st->ptrs, cap * sizeof *ptrs);
		if (!ptrs) {
			free(p);
			ld->oom = true;
			return NULL;
		}
		st->ptrs = ptrs;
		st->cap = cap;
	}
	st->ptrs[st->n++] = p;
	return p;
}

static char *s_strdup(loader_t *ld, const char *s)
{
	return s_keep(ld, strdup(s ? s : ""));
}

static void *s_calloc(loader_t *ld, size_t n, size_t size)
{
	return s_keep(ld, calloc(n ? n : 1, size));
}

static void s_err(loader_t *ld, const ynode_t *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Reports an error at node `at` (NULL: the file as a whole). */
static void s_err(loader_t *ld, const ynode_t *at, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	diag_add(ld->d, ld->file, at ? at->line : 0, at ? at->column : 0, "%s", text);
	ld->errors++;
}

/* ---- paths -------------------------------------------------------------------------- */

static bool s_is_symlink(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

/* Joins `rel` to `dir` (unless rel is absolute) and tidies the result lexically: "./" parts
 * go, and "x/.." goes unless x is ".." or a symbolic link (where ".." would lead elsewhere).
 * "conf/../routes" becomes "routes", which is what an operator expects to read in messages.
 * Returns a new string or NULL. */
static char *s_join_path(const char *dir, const char *rel)
{
	char *joined, *out, *tok, *save = NULL;
	size_t len, used = 0;
	bool absolute;

	if (rel[0] == '/' || !strcmp(dir, "."))
		joined = strdup(rel);
	else if (asprintf(&joined, "%s/%s", dir, rel) < 0)
		joined = NULL;
	if (!joined)
		return NULL;
	len = strlen(joined);
	absolute = joined[0] == '/';
	out = malloc(len + 2);
	if (!out) {
		free(joined);
		return NULL;
	}
	out[0] = '\0';
	if (absolute)
		out[used++] = '/', out[used] = '\0';
	for (tok = strtok_r(joined, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (!strcmp(tok, "."))
			continue;
		if (!strcmp(tok, "..")) {
			char *last = strrchr(out, '/');
			const char *prev = last ? last + 1 : out;
			if (*prev && strcmp(prev, "..") && !s_is_symlink(out)) {
				if (last == out)
					out[1] = '\0', used = 1; /* "/x/.." is "/" */
				else if (last)
					*last = '\0', used = (size_t)(last - out);
				else
					out[0] = '\0', used = 0;
				continue;
			}
			if (absolute && used == 1)
				continue; /* "/.." is "/" */
		}
		if (used && out[used - 1] != '/')
			out[used++] = '/';
		memcpy(out + used, tok, strlen(tok) + 1);
		used += strlen(tok);
	}
	if (!used)
		strcpy(out, ".");
	free(joined);
	return out;
}

static char *s_path(loader_t *ld, const char *rel)
{
	return s_keep(ld, s_join_path(ld->conf->dir, rel));
}

/* ---- typed values ------------------------------------------------------------------- */

/* Returns the text of a scalar value, or reports "'key' must be …" and returns NULL. An
 * empty value is an error unless allow_empty. */
static const char *s_text(loader_t *ld, const ynode_t *v, const char *key, bool allow_empty)
{
	if (v->kind != YNODE_SCALAR) {
		s_err(ld, v, "'%s' must be a text value, not %s", key, yaml_tree_describe(v));
		return NULL;
	}
	if (!allow_empty && (yaml_tree_is_null(v) || !v->len)) {
		s_err(ld, v, "'%s' needs a value", key);
		return NULL;
	}
	return v->text;
}

static bool s_size(loader_t *ld, const ynode_t *v, const char *key, int64_t *out)
{
	const char *text = s_text(ld, v, key, false);
	int64_t n;

	if (!text)
		return false;
	if (kanal__parse_size(text, &n) != 0 || n <= 0) {
		s_err(ld, v, "'%s': '%s' is not a size (write e.g. 64KiB, 8MiB or 65536)", key,
		      text);
		return false;
	}
	*out = n;
	return true;
}

static bool s_duration(loader_t *ld, const ynode_t *v, const char *key, bool allow_zero,
		       int64_t *out)
{
	const char *text = s_text(ld, v, key, false);
	int64_t ms;

	if (!text)
		return false;
	if (kanal__parse_duration_ms(text, &ms) != 0 || ms < 0) {
		s_err(ld, v, "'%s': '%s' is not a duration (write e.g. 250ms, 5s, 2m or 1h)", key,
		      text);
		return false;
	}
	if (!allow_zero && ms == 0) {
		s_err(ld, v, "'%s' must be longer than 0", key);
		return false;
	}
	*out = ms;
	return true;
}

static bool s_count(loader_t *ld, const ynode_t *v, const char *key, int64_t *out)
{
	const char *text = s_text(ld, v, key, false);
	char *end;
	long long n;

	if (!text)
		return false;
	errno = 0;
	n = strtoll(text, &end, 10);
	if (errno || end == text || *end || n <= 0) {
		s_err(ld, v, "'%s': '%s' is not a whole number above 0", key, text);
		return false;
	}
	*out = n;
	return true;
}

/* ---- sections ----------------------------------------------------------------------- */

static bool s_is_mapping(loader_t *ld, const ynode_t *v, const char *key)
{
	if (yaml_tree_is_null(v))
		return false; /* an empty section means: all defaults */
	if (v->kind != YNODE_MAPPING) {
		s_err(ld, v, "'%s' must be a mapping, not %s", key, yaml_tree_describe(v));
		return false;
	}
	return true;
}

static void s_log_level(loader_t *ld, const ynode_t *v)
{
	const char *text = s_text(ld, v, "log_level", false);
	size_t i;

	if (!text)
		return;
	for (i = 0; i < N_OF(s_log_levels); i++) {
		if (!strcmp(text, s_log_levels[i])) {
			ld->conf->log_level = (kanal_log_level_t)i;
			return;
		}
	}
	s_err(ld, v, "'log_level': '%s' is not one of error, warn, info, debug", text);
}

/* log_format: text (the default: "TIME LEVEL COMPONENT: message") or json (one object a
 * line, for log shippers). */
static void s_log_format(loader_t *ld, const ynode_t *v)
{
	const char *text = s_text(ld, v, "log_format", false);

	if (!text)
		return;
	if (!strcmp(text, "text") || !strcmp(text, "json"))
		ld->conf->log_json = !strcmp(text, "json");
	else
		s_err(ld, v, "'log_format': '%s' is not one of text, json", text);
}

/* A folder setting: plugin_dir, state_dir, run_dir. */
static void s_folder(loader_t *ld, const ynode_t *v, const char *key, char **out)
{
	const char *text = s_text(ld, v, key, false);

	if (text)
		*out = s_path(ld, text);
}

/* `routes:` a folder or file, or a list of them. */
static void s_routes(loader_t *ld, const ynode_t *v)
{
	conf_t *conf = ld->conf;
	size_t i;

	if (v->kind == YNODE_SCALAR) {
		const char *text = s_text(ld, v, "routes", false);
		if (!text)
			return;
		conf->route_paths = s_calloc(ld, 1, sizeof *conf->route_paths);
		if (conf->route_paths && (conf->route_paths[0] = s_path(ld, text)))
			conf->n_route_paths = 1;
		return;
	}
	if (v->kind != YNODE_SEQUENCE) {
		s_err(ld, v, "'routes' must be a folder or file, or a list of them, not %s",
		      yaml_tree_describe(v));
		return;
	}
	if (!v->n_items) {
		s_err(ld, v, "'routes' is an empty list: name at least one folder or file");
		return;
	}
	conf->route_paths = s_calloc(ld, v->n_items, sizeof *conf->route_paths);
	if (!conf->route_paths)
		return;
	conf->n_route_paths = 0;
	for (i = 0; i < v->n_items; i++) {
		const char *text = s_text(ld, v->items[i], "routes", false);
		char *path = text ? s_path(ld, text) : NULL;
		if (path)
			conf->route_paths[conf->n_route_paths++] = path;
	}
}

/* Checks the form of a ZeroMQ endpoint kanald binds: tcp://HOST:PORT or ipc://PATH. */
static bool s_endpoint_valid(const char *text)
{
	const char *colon, *p;

	if (!strncmp(text, "ipc://", 6))
		return text[6] != '\0';
	if (strncmp(text, "tcp://", 6) != 0)
		return false;
	colon = strrchr(text + 6, ':');
	if (!colon || colon == text + 6 || !colon[1])
		return false;
	if (!strcmp(colon + 1, "*"))
		return true;
	for (p = colon + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return p - (colon + 1) <= 5 && atol(colon + 1) <= 65535;
}

static void s_endpoint(loader_t *ld, const ynode_t *v, const char *key, char **out)
{
	const char *text;

	if (v->kind == YNODE_SCALAR && yaml_tree_is_null(v)) {
		s_err(ld, v,
		      "'%s' needs a value: an endpoint such as tcp://127.0.0.1:7700, or "
		      "off to disable it",
		      key);
		return;
	}
	text = s_text(ld, v, key, true);
	if (!text)
		return;
	if (!*text || !strcmp(text, "off")) {
		*out = s_strdup(ld, "");
		return;
	}
	if (!s_endpoint_valid(text)) {
		s_err(ld, v,
		      "'%s': '%s' is not an endpoint (write tcp://HOST:PORT or "
		      "ipc://PATH, or off)",
		      key, text);
		return;
	}
	*out = s_strdup(ld, text);
}

static void s_endpoints(loader_t *ld, const ynode_t *v)
{
	conf_t *conf = ld->conf;
	const ynode_t *x;

	if (!s_is_mapping(ld, v, "endpoints"))
		return;
	if (yaml_tree_check_keys(v, s_endpoint_keys, N_OF(s_endpoint_keys), "endpoints", ld->file,
				 ld->d))
		ld->errors++;
	if ((x = yaml_tree_get(v, "gateway")))
		s_endpoint(ld, x, "gateway", &conf->gateway_endpoint);
	if ((x = yaml_tree_get(v, "stream")))
		s_endpoint(ld, x, "stream", &conf->stream_endpoint);
	if ((x = yaml_tree_get(v, "admin")))
		s_endpoint(ld, x, "admin", &conf->admin_endpoint);
	if ((x = yaml_tree_get(v, "admin_http"))) {
		const char *text = s_text(ld, x, "admin_http", true);
		if (text && (!*text || !strcmp(text, "off")))
			conf->admin_http = s_strdup(ld, "");
		else if (text && (strncmp(text, "http://", 7) ||
				  admin_http_parse_listen(text, &(struct sockaddr_in){ 0 }) != 0))
			s_err(ld, x,
			      "'admin_http': '%s' is not an HTTP address kanald can bind (write "
			      "http://IPV4:PORT with a port from 0 to 65535, e.g. "
			      "http://127.0.0.1:7703, or off)",
			      text);
		else if (text)
			conf->admin_http = s_strdup(ld, text);
	}
	if ((x = yaml_tree_get(v, "admin_token_file")))
		s_folder(ld, x, "admin_token_file", &conf->admin_token_file);
}

/* endpoints.readyz_requires: the instances whose upstream /readyz needs up, each one that
 * the config declares (read after the instances). A single name counts as a list of one. */
static void s_readyz_requires(loader_t *ld, const ynode_t *root)
{
	const ynode_t *v = yaml_tree_get(yaml_tree_get(root, "endpoints"), "readyz_requires");
	const ynode_t *const *items = &v;
	conf_t *conf = ld->conf;
	size_t n = 1;

	if (!v || yaml_tree_is_null(v))
		return;
	if (v->kind == YNODE_SEQUENCE) {
		items = (const ynode_t *const *)v->items;
		n = v->n_items;
	} else if (v->kind != YNODE_SCALAR) {
		s_err(ld, v, "'readyz_requires' must be a list of instance names, not %s",
		      yaml_tree_describe(v));
		return;
	}
	if (!(conf->readyz_requires = s_calloc(ld, n, sizeof *conf->readyz_requires)))
		return;
	for (size_t i = 0; i < n; i++) {
		const char *name = s_text(ld, items[i], "readyz_requires", false);

		if (name && !conf_instance(conf, name))
			s_err(ld, items[i], "'readyz_requires': unknown instance '%s'", name);
		else if (name)
			conf->readyz_requires[conf->n_readyz_requires++] = s_strdup(ld, name);
	}
}

/* `rate: {events_per_second, burst}`, a token bucket: of each gateway client under the
 * top-level limits, of an instance's emits under the instance's. */
static void s_rate(loader_t *ld, const ynode_t *v, int64_t *per_second, int64_t *burst)
{
	const ynode_t *y;

	if (!s_is_mapping(ld, v, "rate"))
		return;
	if (yaml_tree_check_keys(v, s_rate_keys, N_OF(s_rate_keys), "rate", ld->file, ld->d))
		ld->errors++;
	if ((y = yaml_tree_get(v, "events_per_second")))
		s_count(ld, y, "events_per_second", per_second);
	if ((y = yaml_tree_get(v, "burst")))
		s_count(ld, y, "burst", burst);
}

static void s_limits(loader_t *ld, const ynode_t *v)
{
	conf_t *conf = ld->conf;
	const ynode_t *x, *queue_bytes;

	if (!s_is_mapping(ld, v, "limits"))
		return;
	if (yaml_tree_check_keys(v, s_limit_keys, N_OF(s_limit_keys), "limits", ld->file, ld->d))
		ld->errors++;
	if ((x = yaml_tree_get(v, "max_event_size")))
		s_size(ld, x, "max_event_size", &conf->max_event_bytes);
	if ((x = yaml_tree_get(v, "queue_max_events")))
		s_count(ld, x, "queue_max_events", &conf->queue_max_events);
	if ((queue_bytes = yaml_tree_get(v, "queue_max_bytes")))
		s_size(ld, queue_bytes, "queue_max_bytes", &conf->queue_max_bytes);
	if ((x = yaml_tree_get(v, "shutdown_deadline")))
		s_duration(ld, x, "shutdown_deadline", true, &conf->shutdown_deadline_ms);
	if ((x = yaml_tree_get(v, "enrich_timeout")))
		s_duration(ld, x, "enrich_timeout", false, &conf->enrich_timeout_ms);
	if ((x = yaml_tree_get(v, "max_parked_events")))
		s_count(ld, x, "max_parked_events", &conf->max_parked_events);
	/* rate: {events_per_second, burst} — a token bucket per gateway client. */
	if ((x = yaml_tree_get(v, "rate")))
		s_rate(ld, x, &conf->rate_per_second, &conf->rate_burst);
	if ((x = yaml_tree_get(v, "max_blob_size")))
		s_size(ld, x, "max_blob_size", &conf->max_blob_bytes);
	if ((x = yaml_tree_get(v, "blob_store_size")))
		s_size(ld, x, "blob_store_size", &conf->blob_store_bytes);
	/* A queue that cannot hold one largest event would refuse that event forever. */
	if (conf->queue_max_bytes < conf->max_event_bytes)
		s_err(ld, queue_bytes ? queue_bytes : v,
		      "'queue_max_bytes' (%lld bytes) is smaller than 'max_event_size' (%lld "
		      "bytes): a destination queue must hold at least one event",
		      (long long)conf->queue_max_bytes, (long long)conf->max_event_bytes);
}

/* journal.key_file: the journal encrypted at rest with SQLCipher
 * (docs/design/journal-encryption.md). Checked here as journal_open_keyed checks it at
 * start — readable, private, one line, a kanald that can encrypt — so that check refuses
 * what start refuses. */
static void s_journal_key(loader_t *ld, const ynode_t *x)
{
	conf_t *conf = ld->conf;
	const char *text = s_text(ld, x, "key_file", false);
	char key[1024], why[600];

	if (!text || !(conf->journal_key_file = s_path(ld, text)))
		return;
	if (!conf->journal_durable)
		s_err(ld, x,
		      "'key_file' encrypts the durable journal, and journal 'mode' %s keeps none",
		      conf->journal_cluster ? "cluster" : "memory");
	else if (!journal_can_encrypt())
		s_err(ld, x,
		      "'key_file': this kanald was built without SQLCipher (Debian "
		      "libsqlcipher-dev), so it cannot encrypt the journal");
	else if (journal_read_key(conf->journal_key_file, key, sizeof key, why, sizeof why) != 0)
		s_err(ld, x, "'key_file': %s", why);
	memset(key, 0, sizeof key);
}

/* journal.nats.tls: {ca_file, cert_file, key_file}; a certificate goes with its key. */
static void s_nats_tls(loader_t *ld, const ynode_t *v)
{
	conf_nats_t *n = &ld->conf->nats;
	const ynode_t *x;
	const char *text;

	if (!s_is_mapping(ld, v, "tls"))
		return;
	if (yaml_tree_check_keys(v, s_nats_tls_keys, N_OF(s_nats_tls_keys), "tls", ld->file, ld->d))
		ld->errors++;
	if ((x = yaml_tree_get(v, "ca_file")) && (text = s_text(ld, x, "ca_file", false)))
		n->tls_ca_file = s_path(ld, text);
	if ((x = yaml_tree_get(v, "cert_file")) && (text = s_text(ld, x, "cert_file", false)))
		n->tls_cert_file = s_path(ld, text);
	if ((x = yaml_tree_get(v, "key_file")) && (text = s_text(ld, x, "key_file", false)))
		n->tls_key_file = s_path(ld, text);
	if (!n->tls_cert_file != !n->tls_key_file)
		s_err(ld, v,
		      "tls: 'cert_file' and 'key_file' go together (a client certificate "
		      "and its key)");
}

/* True when a stream prefix is a valid JetStream stream name start: A-Z, 0-9, '_'. */
static bool s_stream_prefix_valid(const char *p)
{
	if (!*p || strlen(p) > 32)
		return false;
	for (; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return true;
}

/* journal.nats (docs/cluster.md): required with mode cluster, refused without it. `mode`
 * is the mode's node (NULL when the mode is the default). */
static void s_journal_nats(loader_t *ld, const ynode_t *journal, const ynode_t *mode)
{
	conf_t *conf = ld->conf;
	conf_nats_t *n = &conf->nats;
	const ynode_t *v = yaml_tree_get(journal, "nats"), *x;
	const char *text;

	if (!conf->journal_cluster) {
		if (v)
			s_err(ld, v, "journal 'nats' is for mode: cluster (the mode is %s)",
			      conf->journal_durable ? "durable" : "memory");
		return;
	}
	if (!v || yaml_tree_is_null(v)) {
		s_err(ld, mode,
		      "journal mode 'cluster' needs 'nats' with its 'servers' "
		      "(docs/cluster.md)");
		return;
	}
	if (!s_is_mapping(ld, v, "nats"))
		return;
	if (yaml_tree_check_keys(v, s_nats_keys, N_OF(s_nats_keys), "nats", ld->file, ld->d))
		ld->errors++;
	if (!(x = yaml_tree_get(v, "servers"))) {
		s_err(ld, v,
		      "nats: 'servers' is required: a list such as "
		      "[nats://10.0.0.1:4222, nats://10.0.0.2:4222]");
	} else {
		const ynode_t *const *items = &x;
		size_t count = 1;

		if (x->kind == YNODE_SEQUENCE) {
			items = (const ynode_t *const *)x->items;
			count = x->n_items;
		}
		if (!count)
			s_err(ld, x, "nats: 'servers' needs at least one server");
		n->servers = s_calloc(ld, count ? count : 1, sizeof *n->servers);
		for (size_t i = 0; n->servers && i < count; i++) {
			if (!(text = s_text(ld, items[i], "servers", false)))
				continue;
			if (strncmp(text, "nats://", 7) && strncmp(text, "tls://", 6)) {
				s_err(ld, items[i],
				      "nats: server '%s' must start with nats:// or tls://", text);
				continue;
			}
			n->servers[n->n_servers++] = s_strdup(ld, text);
		}
	}
	if ((x = yaml_tree_get(v, "creds_file")) && (text = s_text(ld, x, "creds_file", false)))
		n->creds_file = s_path(ld, text);
	if ((x = yaml_tree_get(v, "nkey_file")) && (text = s_text(ld, x, "nkey_file", false)))
		n->nkey_file = s_path(ld, text);
	if ((x = yaml_tree_get(v, "nkey")) && (text = s_text(ld, x, "nkey", false)))
		n->nkey = s_strdup(ld, text);
	if (!n->nkey != !n->nkey_file)
		s_err(ld, v,
		      "nats: 'nkey' (the user's public NKey, U...) and 'nkey_file' (the file "
		      "holding its seed) go together");
	if (n->creds_file && n->nkey_file)
		s_err(ld, v, "nats: 'creds_file' and 'nkey_file' are two ways to log in; give one");
	if ((x = yaml_tree_get(v, "tls")))
		s_nats_tls(ld, x);
	if ((x = yaml_tree_get(v, "stream_prefix")) &&
	    (text = s_text(ld, x, "stream_prefix", false))) {
		if (s_stream_prefix_valid(text))
			n->stream_prefix = s_strdup(ld, text);
		else
			s_err(ld, x,
			      "nats: 'stream_prefix' '%s' must be 1 to 32 of A-Z, 0-9 and _ "
			      "(streams are named <prefix>_IN, <prefix>_DLV, <prefix>_DEAD)",
			      text);
	}
	if ((x = yaml_tree_get(v, "replicas")) && s_count(ld, x, "replicas", &n->replicas) &&
	    n->replicas != 1 && n->replicas != 3 && n->replicas != 5)
		s_err(ld, x,
		      "nats: 'replicas' is 1, 3 or 5 (copies of each stream; a majority must "
		      "hold an event before it is accepted), not %lld",
		      (long long)n->replicas);
	if ((x = yaml_tree_get(v, "ack_wait")))
		s_duration(ld, x, "ack_wait", false, &n->ack_wait_ms);
	if ((x = yaml_tree_get(v, "name")) && (text = s_text(ld, x, "name", false)))
		n->node_name = s_strdup(ld, text);
	if ((x = yaml_tree_get(v, "blob_retention")) &&
	    s_duration(ld, x, "blob_retention", false, &n->blob_retention_ms) &&
	    n->blob_retention_ms < 3600000)
		s_err(ld, x,
		      "nats: 'blob_retention' is at least 1h (a blob must outlive the "
		      "deliveries of the events that name it; docs/cluster.md)");
	if ((x = yaml_tree_get(v, "events")) && (text = s_text(ld, x, "events", false))) {
		if (!strcmp(text, "true") || !strcmp(text, "false"))
			n->events = !strcmp(text, "true");
		else
			s_err(ld, x, "nats: 'events' is true or false, not '%s'", text);
	}
	/* A singleton's holder renews every lease/3 and stops it when a renewal fails: below 3 s
	 * a NATS leader election (4-8 s) would move every singleton. */
	if ((x = yaml_tree_get(v, "lease")) && s_duration(ld, x, "lease", false, &n->lease_ms) &&
	    n->lease_ms < 3000)
		s_err(ld, x, "nats: 'lease' is at least 3s (the default is 10s)");
}

/* journal: {mode, path, sync, retention, dedupe_window, dead_letters, key_file, nats} */
static void s_journal(loader_t *ld, const ynode_t *v)
{
	conf_t *conf = ld->conf;
	const ynode_t *x;
	const char *text;

	if (!s_is_mapping(ld, v, "journal"))
		return;
	if (yaml_tree_check_keys(v, s_journal_keys, N_OF(s_journal_keys), "journal", ld->file,
				 ld->d))
		ld->errors++;
	if ((x = yaml_tree_get(v, "mode")) && (text = s_text(ld, x, "mode", false))) {
		if (!strcmp(text, "durable") || !strcmp(text, "memory") ||
		    !strcmp(text, "cluster")) {
			conf->journal_durable = !strcmp(text, "durable");
			conf->journal_cluster = !strcmp(text, "cluster");
		} else {
			s_err(ld, x, "journal 'mode' is durable, memory or cluster, not '%s'",
			      text);
		}
	}
	s_journal_nats(ld, v, x);
	if ((x = yaml_tree_get(v, "path")) && (text = s_text(ld, x, "path", false)))
		conf->journal_path = s_path(ld, text);
	if ((x = yaml_tree_get(v, "sync")) && (text = s_text(ld, x, "sync", false))) {
		if (!strcmp(text, "process") || !strcmp(text, "power"))
			conf->journal_sync_power = !strcmp(text, "power");
		else
			s_err(ld, x,
			      "journal 'sync' is process (survives a kanald crash) or power "
			      "(survives a power cut), not '%s'",
			      text);
	}
	if ((x = yaml_tree_get(v, "retention")))
		s_duration(ld, x, "retention", false, &conf->journal_retention_ms);
	if ((x = yaml_tree_get(v, "dedupe_window")))
		s_duration(ld, x, "dedupe_window", false, &conf->dedupe_window_ms);
	if ((x = yaml_tree_get(v, "key_file")))
		s_journal_key(ld, x);
	/* dead_letters: {max_age, max_events} — their retention; 0 is no limit. */
	if ((x = yaml_tree_get(v, "dead_letters")) && s_is_mapping(ld, x, "dead_letters")) {
		const ynode_t *y;
		if (yaml_tree_check_keys(x, s_dlq_keys, N_OF(s_dlq_keys), "dead_letters", ld->file,
					 ld->d))
			ld->errors++;
		if ((y = yaml_tree_get(x, "max_age")))
			s_duration(ld, y, "max_age", true, &conf->dlq_max_age_ms);
		if ((y = yaml_tree_get(x, "max_events"))) {
			const char *t = s_text(ld, y, "max_events", false);
			if (t && !strcmp(t, "0"))
				conf->dlq_max_events = 0;
			else
				s_count(ld, y, "max_events", &conf->dlq_max_events);
		}
	}
}

/* trace: {export: {url, batch, interval, service_name, queue}} — spans to an OTLP/HTTP
 * collector (broker/trace.c). Without `export` tracing stays off. */
static void s_trace(loader_t *ld, const ynode_t *v)
{
	conf_t *conf = ld->conf;
	const ynode_t *x, *y;
	const char *text;

	if (!s_is_mapping(ld, v, "trace"))
		return;
	if (yaml_tree_check_keys(v, s_trace_keys, N_OF(s_trace_keys), "trace", ld->file, ld->d))
		ld->errors++;
	if ((x = yaml_tree_get(v, "export")) && yaml_tree_is_null(x))
		s_err(ld, x, "trace 'export' needs a 'url' (e.g. http://127.0.0.1:4318/v1/traces)");
	if (!x || !s_is_mapping(ld, x, "export"))
		return;
	if (yaml_tree_check_keys(x, s_trace_export_keys, N_OF(s_trace_export_keys), "export",
				 ld->file, ld->d))
		ld->errors++;
	if (!(y = yaml_tree_get(x, "url"))) {
		s_err(ld, x, "trace 'export' needs a 'url' (e.g. http://127.0.0.1:4318/v1/traces)");
	} else if ((text = s_text(ld, y, "url", false))) {
		conf->trace_url = s_strdup(ld, text);
	}
	if ((y = yaml_tree_get(x, "batch")))
		s_count(ld, y, "batch", &conf->trace_batch);
	if ((y = yaml_tree_get(x, "interval")))
		s_duration(ld, y, "interval", false, &conf->trace_interval_ms);
	if ((y = yaml_tree_get(x, "queue")))
		s_count(ld, y, "queue", &conf->trace_queue);
	if ((y = yaml_tree_get(x, "service_name")) && (text = s_text(ld, y, "service_name", false)))
		conf->trace_service_name = s_strdup(ld, text);
	if (conf->trace_queue < conf->trace_batch)
		s_err(ld, yaml_tree_get(x, "queue") ? yaml_tree_get(x, "queue") : x,
		      "trace export 'queue' (%lld spans) is smaller than its 'batch' (%lld)",
		      (long long)conf->trace_queue, (long long)conf->trace_batch);
}

/* ---- instances ---------------------------------------------------------------------- */

/* True when `name` is a valid instance name: [a-z0-9][a-z0-9_-]*, at most CONF_MAX_NAME. */
static bool s_name_valid(const char *name)
{
	const char *p;

	if (!*name || strlen(name) > CONF_MAX_NAME)
		return false;
	if (!((*name >= 'a' && *name <= 'z') || (*name >= '0' && *name <= '9')))
		return false;
	for (p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
		      *p == '-'))
			return false;
	return true;
}

/* Resolves `plugin: X`: a value with a '/' or ending in ".so" is a path (relative to the
 * config's folder); anything else is the name of a plugin in plugin_dir. */
static void s_plugin(loader_t *ld, conf_instance_t *inst, const ynode_t *v)
{
	const char *text = s_text(ld, v, "plugin", false);
	size_t len;
	char *file;

	if (!text)
		return;
	inst->plugin = s_strdup(ld, text);
	len = strlen(text);
	if (strchr(text, '/') || (len > 3 && !strcmp(text + len - 3, ".so"))) {
		inst->plugin_path = s_path(ld, text);
		return;
	}
	if (!s_name_valid(text)) {
		s_err(ld, v,
		      "'plugin': '%s' is neither a plugin name (like daycare) nor a path "
		      "to a .so file",
		      text);
		return;
	}
	if (!ld->conf->plugin_dir)
		return; /* out of memory earlier; already noted */
	if (asprintf(&file, "%s/%s.so", ld->conf->plugin_dir, text) < 0)
		file = NULL;
	inst->plugin_path = s_keep(ld, file);
}

/* Copies an instance's `options:` mapping as kanal_optval_t records: a key with a text
 * value or a list of text values. */
static void s_options(loader_t *ld, conf_instance_t *inst, const ynode_t *v)
{
	size_t i, j;

	if (!s_is_mapping(ld, v, "options"))
		return;
	inst->options = s_calloc(ld, v->n_pairs, sizeof *inst->options);
	if (!inst->options)
		return;
	for (i = 0; i < v->n_pairs; i++) {
		const ynode_t *key = v->pairs[i].key, *val = v->pairs[i].value;
		kanal_optval_t *opt = &inst->options[inst->n_options];
		const char **items;

		opt->key = s_strdup(ld, key->text);
		opt->line = key->line;
		opt->column = key->column;
		if (val->kind == YNODE_MAPPING) {
			s_err(ld, val,
			      "option '%s': a mapping is not an option value (give a text "
			      "value or a list)",
			      key->text);
			continue;
		}
		if (val->kind == YNODE_SCALAR) {
			opt->value = s_strdup(ld, yaml_tree_is_null(val) ? "" : val->text);
			inst->n_options++;
			continue;
		}
		items = s_calloc(ld, val->n_items, sizeof *items);
		if (!items)
			continue;
		for (j = 0; j < val->n_items; j++) {
			if (val->items[j]->kind != YNODE_SCALAR) {
				s_err(ld, val->items[j],
				      "option '%s': list items must be text "
				      "values, not %s",
				      key->text, yaml_tree_describe(val->items[j]));
				continue;
			}
			items[opt->n_items++] = s_strdup(ld, val->items[j]->text);
		}
		opt->items = items;
		opt->is_list = true;
		inst->n_options++;
	}
}

/* A list of type patterns (`emit:`), each checked with acl_pattern_valid; a single text
 * value counts as a list of one. An empty list is allowed: it permits nothing. */
static void s_patterns(loader_t *ld, const ynode_t *v, const char *key, char ***out, size_t *n_out)
{
	const ynode_t *const *items = &v;
	size_t n = 1;
	char why[256];

	if (v->kind == YNODE_SEQUENCE) {
		items = (const ynode_t *const *)v->items;
		n = v->n_items;
	} else if (v->kind != YNODE_SCALAR || yaml_tree_is_null(v)) {
		s_err(ld, v,
		      "'%s' must be a list of type patterns such as [orders.>, "
		      "invoice.sent], not %s",
		      key, yaml_tree_describe(v));
		return;
	}
	*out = s_calloc(ld, n, sizeof **out);
	if (!*out)
		return;
	for (size_t i = 0; i < n; i++) {
		const char *text = s_text(ld, items[i], key, false);
		if (!text)
			continue;
		if (!acl_pattern_valid(text, why, sizeof why)) {
			s_err(ld, items[i], "'%s': %s", key, why);
			continue;
		}
		(*out)[(*n_out)++] = s_strdup(ld, text);
	}
}

/* A list of source patterns (`sources:`), each checked with acl_source_pattern_valid; a
 * single text value counts as a list of one. An empty list owns nothing. */
static void s_source_patterns(loader_t *ld, const ynode_t *v, char ***out, size_t *n_out)
{
	const ynode_t *const *items = &v;
	size_t n = 1;
	char why[256];

	if (v->kind == YNODE_SEQUENCE) {
		items = (const ynode_t *const *)v->items;
		n = v->n_items;
	} else if (v->kind != YNODE_SCALAR || yaml_tree_is_null(v)) {
		s_err(ld, v,
		      "'sources' must be a list of source patterns such as "
		      "[\"/vendors/acme/*\"], not %s",
		      yaml_tree_describe(v));
		return;
	}
	*out = s_calloc(ld, n ? n : 1, sizeof **out);
	if (!*out)
		return;
	for (size_t i = 0; i < n; i++) {
		const char *text = s_text(ld, items[i], "sources", false);
		if (!text)
			continue;
		if (!acl_source_pattern_valid(text, why, sizeof why)) {
			s_err(ld, items[i], "'sources': %s", why);
			continue;
		}
		(*out)[(*n_out)++] = s_strdup(ld, text);
	}
}

/* `acl: {emit: [patterns], sources: [patterns]}` of an instance. */
static void s_instance_acl(loader_t *ld, conf_instance_t *inst, const ynode_t *v)
{
	const ynode_t *emit;

	if (v->kind != YNODE_MAPPING) {
		s_err(ld, v, "'acl' must be a mapping such as {emit: [orders.>]}, not %s",
		      yaml_tree_describe(v));
		return;
	}
	if (yaml_tree_check_keys(v, s_acl_keys, N_OF(s_acl_keys), "acl", ld->file, ld->d))
		ld->errors++;
	inst->has_acl = true;
	emit = yaml_tree_get(v, "emit");
	if (!emit) {
		s_err(ld, v,
		      "'acl' needs 'emit': the event types the instance may emit (an "
		      "empty list permits none)");
		return;
	}
	s_patterns(ld, emit, "emit", &inst->acl_emit, &inst->n_acl_emit);
	if ((emit = yaml_tree_get(v, "sources"))) {
		inst->has_acl_sources = true;
		s_source_patterns(ld, emit, &inst->acl_sources, &inst->n_acl_sources);
	}
}

/* Checks an instance's name: valid, not the reserved "deadletter", not taken by an earlier
 * instance. Sets inst->name when all is well. */
static void s_instance_name(loader_t *ld, conf_instance_t *inst, const ynode_t *name)
{
	const conf_t *conf = ld->conf;
	const char *text = s_text(ld, name, "name", false);
	size_t i;

	if (!text)
		return;
	if (!s_name_valid(text)) {
		s_err(ld, name,
		      "instance name '%s' is not valid: use at most %d lower-case "
		      "letters, digits, '_' and '-', starting with a letter or digit",
		      text, CONF_MAX_NAME);
		return;
	}
	if (!strcmp(text, "deadletter")) {
		s_err(ld, name,
		      "instance name 'deadletter' is reserved for the built-in "
		      "dead-letter destination");
		return;
	}
	for (i = 0; i < conf->n_instances; i++) {
		const conf_instance_t *other = &conf->instances[i];
		if (other->name && !strcmp(other->name, text)) {
			s_err(ld, name, "duplicate instance name '%s' (first at line %d)", text,
			      other->line);
			return;
		}
	}
	inst->name = s_strdup(ld, text);
}

static bool s_bool(loader_t *ld, const ynode_t *v, const char *key, bool *out);

/* `singleton` (cluster mode: started on one node at a time, the holder of its lease; see
 * docs/cluster.md). Default: true for the bundled pollers, else false. Outside cluster mode
 * it is read and ignored. An isolated instance cannot be one: its plugin host keeps state in
 * the node's folder, where the next holder would not find it. */
static void s_instance_singleton(loader_t *ld, conf_instance_t *inst, const ynode_t *v)
{
	const ynode_t *x = yaml_tree_get(v, "singleton");
	const char *base = inst->plugin ? strrchr(inst->plugin, '/') : NULL;

	base = base ? base + 1 : inst->plugin;
	for (size_t i = 0; base && i < N_OF(s_poller_plugins); i++)
		if (!strcmp(base, s_poller_plugins[i]))
			inst->singleton = true;
	if (x)
		s_bool(ld, x, "singleton", &inst->singleton);
	if (inst->singleton && ld->conf->journal_cluster && inst->isolation &&
	    !strcmp(inst->isolation, "process"))
		s_err(ld, x ? x : v,
		      "instance '%s' is a singleton%s and cannot have 'isolation: process' in "
		      "cluster mode (its state would stay on one node); use isolation: thread, or "
		      "singleton: false to run it on every node",
		      inst->name ? inst->name : "?", x ? "" : " (the default for its plugin)");
}

static void s_instance(loader_t *ld, const ynode_t *v, size_t at)
{
	conf_t *conf = ld->conf;
	conf_instance_t *inst = &conf->instances[conf->n_instances];
	const ynode_t *name = yaml_tree_get(v, "name"), *x;
	const char *text;

	if (v->kind != YNODE_MAPPING) {
		s_err(ld, v, "instance #%zu must be a mapping with a name and a plugin, not %s",
		      at + 1, yaml_tree_describe(v));
		return;
	}
	if (yaml_tree_check_keys(v, s_instance_keys, N_OF(s_instance_keys), NULL, ld->file, ld->d))
		ld->errors++;
	inst->line = v->line;
	inst->column = v->column;
	inst->isolation = s_strdup(ld, "thread");
	inst->deadline_ms = CONF_DEFAULT_DEADLINE_MS;
	if (name)
		s_instance_name(ld, inst, name);
	else
		s_err(ld, v, "instance #%zu has no 'name'", at + 1);
	if (!(x = yaml_tree_get(v, "plugin"))) {
		if (inst->name)
			s_err(ld, v, "instance '%s' has no 'plugin'", inst->name);
		else
			s_err(ld, v, "instance #%zu has no 'plugin'", at + 1);
	} else {
		s_plugin(ld, inst, x);
	}
	if ((x = yaml_tree_get(v, "isolation"))) {
		text = s_text(ld, x, "isolation", false);
		if (text && strcmp(text, "thread") && strcmp(text, "process"))
			s_err(ld, x, "'isolation': '%s' is not thread or process", text);
		else if (text)
			inst->isolation = s_strdup(ld, text);
	}
	/* A thread cannot be stopped safely, so a deadline means something only for a
	 * process; accepting it on a thread would promise a protection that is not there. */
	if ((x = yaml_tree_get(v, "deadline"))) {
		if (s_duration(ld, x, "deadline", false, &inst->deadline_ms) && inst->isolation &&
		    strcmp(inst->isolation, "process") != 0)
			s_err(ld, x,
			      "'deadline' applies only to 'isolation: process' (an instance "
			      "on a thread cannot be stopped in the middle of a callback)");
	}
	if ((x = yaml_tree_get(v, "options")))
		s_options(ld, inst, x);
	if ((x = yaml_tree_get(v, "acl")))
		s_instance_acl(ld, inst, x);
	s_instance_singleton(ld, inst, v);
	/* limits: {rate: {events_per_second, burst}} — a token bucket on the emits. */
	if ((x = yaml_tree_get(v, "limits")) && s_is_mapping(ld, x, "limits")) {
		const ynode_t *rate;
		if (yaml_tree_check_keys(x, s_instance_limit_keys, N_OF(s_instance_limit_keys),
					 "limits", ld->file, ld->d))
			ld->errors++;
		if ((rate = yaml_tree_get(x, "rate")))
			s_rate(ld, rate, &inst->rate_per_second, &inst->rate_burst);
	}
	/* Entries with errors are kept too: later checks (duplicates) still see their names. */
	conf->n_instances++;
}

static void s_instances(loader_t *ld, const ynode_t *v)
{
	conf_t *conf = ld->conf;
	size_t i;

	if (yaml_tree_is_null(v))
		return;
	if (v->kind != YNODE_SEQUENCE) {
		s_err(ld, v, "'instances' must be a list, not %s", yaml_tree_describe(v));
		return;
	}
	conf->instances = s_calloc(ld, v->n_items, sizeof *conf->instances);
	if (!conf->instances)
		return;
	for (i = 0; i < v->n_items; i++)
		s_instance(ld, v->items[i], i);
}

/* ---- security ----------------------------------------------------------------------- */

int conf_read_curve_key(const char *path, bool secret, char key[41], char *why, size_t why_size)
{
	char buf[4096], *line, *save = NULL;
	uint8_t raw[32];
	struct stat st;
	ssize_t n;
	int fd, rc = -1;

	key[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, why_size, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, why_size, "%s is not a regular file", path);
		goto out;
	}
	/* A secret key that others can read is no longer a secret: refuse it rather than
	 * run with it, so the operator fixes the file. */
	if (secret && (st.st_mode & 077)) {
		snprintf(why, why_size,
			 "%s holds a secret key but others may read it (mode "
			 "%04o): make it private with chmod 600 %s",
			 path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	n = read(fd, buf, sizeof buf - 1);
	if (n < 0) {
		snprintf(why, why_size, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	buf[n] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t len = strlen(line);
		while (len &&
		       (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
			line[--len] = '\0';
		/* Z85 has '#' but no blank, so "# " can only start a comment. */
		if (!len || (line[0] == '#' && (len == 1 || line[1] == ' ')))
			continue;
		if (len == 40 && zmq_z85_decode(raw, line)) {
			memcpy(key, line, 41);
			rc = 0;
		}
		break;
	}
	if (rc < 0)
		snprintf(why, why_size,
			 "%s does not hold a CURVE %s key (one line of 40 Z85 "
			 "characters, as kanalctl keygen writes)",
			 path, secret ? "secret" : "public");
out:
	explicit_bzero(buf, sizeof buf);
	explicit_bzero(raw, sizeof raw);
	close(fd);
	return rc;
}

static bool s_bool(loader_t *ld, const ynode_t *v, const char *key, bool *out)
{
	const char *text = s_text(ld, v, key, false);

	if (!text)
		return false;
	if (!strcmp(text, "true") || !strcmp(text, "yes")) {
		*out = true;
		return true;
	}
	if (!strcmp(text, "false") || !strcmp(text, "no")) {
		*out = false;
		return true;
	}
	s_err(ld, v, "'%s' is true or false, not '%s'", key, text);
	return false;
}

/* A list of stream topic prefixes (`subscribe:`). */
static void s_prefixes(loader_t *ld, const ynode_t *v, char ***out, size_t *n_out)
{
	if (v->kind != YNODE_SEQUENCE) {
		s_err(ld, v,
		      "'subscribe' must be a list of topic prefixes such as [delivered, "
		      "dead] (or [\"*\"] for every topic), not %s",
		      yaml_tree_describe(v));
		return;
	}
	*out = s_calloc(ld, v->n_items, sizeof **out);
	if (!*out)
		return;
	for (size_t i = 0; i < v->n_items; i++) {
		const char *text = s_text(ld, v->items[i], "subscribe", true);
		if (text)
			(*out)[(*n_out)++] = s_strdup(ld, text);
	}
}

/* One entry of security.curve.clients. */
static void s_client(loader_t *ld, const ynode_t *v, size_t at)
{
	conf_t *conf = ld->conf;
	conf_client_t *c = &conf->clients[conf->n_clients];
	const ynode_t *x;
	const char *text;
	uint8_t raw[32];

	if (v->kind != YNODE_MAPPING) {
		s_err(ld, v, "client #%zu must be a mapping with a name and a public_key, not %s",
		      at + 1, yaml_tree_describe(v));
		return;
	}
	if (yaml_tree_check_keys(v, s_client_keys, N_OF(s_client_keys), NULL, ld->file, ld->d))
		ld->errors++;
	c->line = v->line;
	c->column = v->column;
	if (!(x = yaml_tree_get(v, "name"))) {
		s_err(ld, v, "client #%zu has no 'name'", at + 1);
	} else if ((text = s_text(ld, x, "name", false))) {
		if (!s_name_valid(text))
			s_err(ld, x,
			      "client name '%s' is not valid: use at most %d lower-case "
			      "letters, digits, '_' and '-', starting with a letter or digit",
			      text, CONF_MAX_NAME);
		else if (conf_client(conf, text))
			s_err(ld, x, "duplicate client name '%s' (first at line %d)", text,
			      conf_client(conf, text)->line);
		else
			c->name = s_strdup(ld, text);
	}
	if (!(x = yaml_tree_get(v, "public_key"))) {
		s_err(ld, v,
		      "client #%zu has no 'public_key' (the .pub file kanalctl keygen "
		      "wrote on the client's side)",
		      at + 1);
	} else if ((text = s_text(ld, x, "public_key", false))) {
		if (strlen(text) != 40 || !zmq_z85_decode(raw, text)) {
			s_err(ld, x,
			      "'public_key' is not a CURVE public key (40 Z85 characters, "
			      "the key line of a .pub file from kanalctl keygen, in double "
			      "quotes)");
		} else {
			for (size_t i = 0; i < conf->n_clients; i++)
				if (!strcmp(conf->clients[i].public_key, text))
					s_err(ld, x,
					      "client #%zu has the same public_key as the "
					      "client at line %d: one key, one client",
					      at + 1, conf->clients[i].line);
			memcpy(c->public_key, text, 41);
		}
	}
	if ((x = yaml_tree_get(v, "emit")))
		s_patterns(ld, x, "emit", &c->emit, &c->n_emit);
	if ((x = yaml_tree_get(v, "subscribe")))
		s_prefixes(ld, x, &c->subscribe, &c->n_subscribe);
	if ((x = yaml_tree_get(v, "sources"))) {
		c->has_sources = true;
		s_source_patterns(ld, x, &c->sources, &c->n_sources);
	}
	/* Entries with errors are kept too: later ones still see their names and keys. */
	conf->n_clients++;
}

/* security.curve: the broker's secret key and the clients allowed in. */
static void s_curve(loader_t *ld, const ynode_t *v)
{
	conf_t *conf = ld->conf;
	const ynode_t *x;
	const char *text;
	char why[600];

	if (v->kind != YNODE_MAPPING) {
		s_err(ld, v, "'curve' must be a mapping with secret_key_file and clients, not %s",
		      yaml_tree_describe(v));
		return;
	}
	if (yaml_tree_check_keys(v, s_curve_keys, N_OF(s_curve_keys), "curve", ld->file, ld->d))
		ld->errors++;
	conf->curve = true;
	if (!zmq_has("curve"))
		s_err(ld, v, "this libzmq was built without CURVE security: 'curve' cannot work");
	if (!(x = yaml_tree_get(v, "secret_key_file"))) {
		s_err(ld, v,
		      "'curve' needs 'secret_key_file': the broker's secret key (make one "
		      "with kanalctl keygen --out keys/kanald)");
	} else if ((text = s_text(ld, x, "secret_key_file", false))) {
		conf->curve_secret_key_file = s_path(ld, text);
		if (conf->curve_secret_key_file &&
		    conf_read_curve_key(conf->curve_secret_key_file, true, conf->curve_secret_key,
					why, sizeof why) < 0)
			s_err(ld, x, "'secret_key_file': %s", why);
		else if (conf->curve_secret_key_file &&
			 zmq_curve_public(conf->curve_public_key, conf->curve_secret_key) < 0)
			s_err(ld, x, "'secret_key_file': cannot derive the public key from %s",
			      conf->curve_secret_key_file);
	}
	x = yaml_tree_get(v, "clients");
	if (!x || yaml_tree_is_null(x))
		return; /* nobody may connect: a broker fed by its own plugins */
	if (x->kind != YNODE_SEQUENCE) {
		s_err(ld, x, "'clients' must be a list, not %s", yaml_tree_describe(x));
		return;
	}
	conf->clients = s_calloc(ld, x->n_items, sizeof *conf->clients);
	if (!conf->clients)
		return;
	for (size_t i = 0; i < x->n_items; i++)
		s_client(ld, x->items[i], i);
}

static void s_security(loader_t *ld, const ynode_t *v)
{
	const ynode_t *x;

	if (!s_is_mapping(ld, v, "security"))
		return;
	if (yaml_tree_check_keys(v, s_security_keys, N_OF(s_security_keys), "security", ld->file,
				 ld->d))
		ld->errors++;
	if ((x = yaml_tree_get(v, "allow_plain")))
		s_bool(ld, x, "allow_plain", &ld->conf->allow_plain);
	if ((x = yaml_tree_get(v, "curve")))
		s_curve(ld, x);
}

/* True when host (len bytes; IPv6 possibly in brackets) is a loopback address. */
static bool s_loopback_host(const char *host, size_t len)
{
	char buf[64];
	struct in_addr v4;
	struct in6_addr v6;

	if (len >= 2 && host[0] == '[' && host[len - 1] == ']')
		host++, len -= 2;
	if (len == 0 || len >= sizeof buf)
		return false;
	memcpy(buf, host, len);
	buf[len] = '\0';
	if (!strcmp(buf, "localhost"))
		return true;
	if (inet_pton(AF_INET, buf, &v4) == 1)
		return (ntohl(v4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, buf, &v6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&v6) ||
		       (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
	return false; /* '*', 0.0.0.0, an interface or host name: reachable, or may be */
}

/* True when a ZeroMQ endpoint kanald binds is off or reachable from this host only. */
static bool s_endpoint_local(const char *endpoint)
{
	const char *colon;

	if (!endpoint || !*endpoint || !strncmp(endpoint, "ipc://", 6) ||
	    !strncmp(endpoint, "inproc://", 9))
		return true;
	if (strncmp(endpoint, "tcp://", 6))
		return false;
	colon = strrchr(endpoint + 6, ':');
	return colon && s_loopback_host(endpoint + 6, (size_t)(colon - (endpoint + 6)));
}

/* The same for the admin HTTP address, http://HOST:PORT[/…]. */
static bool s_http_local(const char *url)
{
	const char *host, *end;

	if (!url || !*url)
		return true;
	host = url + 7;
	if (*host == '[')
		end = strchr(host, ']') ? strchr(host, ']') + 1 : host + strlen(host);
	else
		end = host + strcspn(host, ":/");
	return s_loopback_host(host, (size_t)(end - host));
}

/* The admin HTTP API's rules, which security.allow_plain does not lift: its token file
 * must be private (the rule admin_http.c applies when it reads the token at start, checked
 * here too so that kanalctl check and kanald --check refuse what start refuses), and
 * without a token it must be bound to loopback — anyone who reaches it could pause
 * instances and read or delete dead letters (docs/security.md). */
static void s_admin_http_safe(loader_t *ld, const ynode_t *eps)
{
	const conf_t *conf = ld->conf;
	const ynode_t *x;

	if ((x = yaml_tree_get(eps, "admin_token_file")) && conf->admin_token_file) {
		struct stat st;
		if (stat(conf->admin_token_file, &st) != 0)
			s_err(ld, x, "'admin_token_file': cannot read %s: %s",
			      conf->admin_token_file, strerror(errno));
		else if (st.st_mode & 077)
			s_err(ld, x,
			      "'admin_token_file': %s may be read by others (mode %04o): "
			      "make it private with chmod 600 %s",
			      conf->admin_token_file, (unsigned)(st.st_mode & 07777),
			      conf->admin_token_file);
	}
	if ((x = yaml_tree_get(eps, "admin_http")) && !conf->admin_token_file &&
	    !s_http_local(conf->admin_http))
		s_err(ld, x,
		      "'admin_http': %s would take admin requests from the network "
		      "without a token: set endpoints.admin_token_file (a private file "
		      "holding the token), or bind it to 127.0.0.1; security.allow_plain "
		      "does not lift this",
		      conf->admin_http);
}

/* Refuses endpoints that would take unauthenticated connections from the network: a
 * gateway or stream beyond loopback without CURVE, the admin socket beyond loopback (it
 * has no CURVE) — unless security.allow_plain says the operator wants exactly that — and
 * the admin HTTP API beyond loopback without a token, always. */
static void s_plain_endpoints(loader_t *ld, const ynode_t *root)
{
	const conf_t *conf = ld->conf;
	const ynode_t *eps = yaml_tree_get(root, "endpoints"), *x;
	static const char *const hint = "configure security.curve (docs/security.md), bind "
					"it to 127.0.0.1, or set security.allow_plain: true";

	if (!eps || eps->kind != YNODE_MAPPING)
		return; /* the defaults are all on 127.0.0.1 */
	s_admin_http_safe(ld, eps);
	if (conf->allow_plain)
		return;
	if ((x = yaml_tree_get(eps, "gateway")) && !conf->curve &&
	    !s_endpoint_local(conf->gateway_endpoint))
		s_err(ld, x,
		      "'gateway': %s would take events from the network without "
		      "authentication: %s",
		      conf->gateway_endpoint, hint);
	if ((x = yaml_tree_get(eps, "stream")) && !conf->curve &&
	    !s_endpoint_local(conf->stream_endpoint))
		s_err(ld, x,
		      "'stream': %s would show the event stream to the network without "
		      "authentication: %s",
		      conf->stream_endpoint, hint);
	if ((x = yaml_tree_get(eps, "admin")) && !s_endpoint_local(conf->admin_endpoint))
		s_err(ld, x,
		      "'admin': %s would take admin commands from the network without "
		      "authentication (the admin socket has no CURVE): bind it to "
		      "127.0.0.1 or ipc://PATH, or set security.allow_plain: true",
		      conf->admin_endpoint);
}

/* ---- what a start needs of the filesystem (conf_load_all) ---------------------------- */

/* Says whether kanald could make the folder `path` (with its missing parents): the nearest
 * folder of it that exists must be one this process may create entries in. Returns 0, or
 * -1 with errno set and the folder that stops it in `at`. */
static int s_folder_makeable(const char *path, char *at, size_t at_size)
{
	struct stat st;
	char *slash;

	snprintf(at, at_size, "%s", path);
	for (;;) {
		if (stat(at, &st) == 0) {
			if (!S_ISDIR(st.st_mode)) {
				errno = ENOTDIR;
				return -1;
			}
			return access(at, W_OK | X_OK) == 0 ? 0 : -1;
		}
		if (errno != ENOENT)
			return -1;
		slash = strrchr(at, '/');
		if (!slash)
			snprintf(at, at_size, "."); /* a relative path's first part: the cwd */
		else if (slash == at)
			at[1] = '\0';
		else
			*slash = '\0';
	}
}

/* The folder `key` names (given at node v, or defaulted: v is the file's root) can be made
 * or used by kanald. */
static void s_check_folder(loader_t *ld, const ynode_t *v, const char *key, const char *path)
{
	char at[4096];

	if (!path || s_folder_makeable(path, at, sizeof at) == 0)
		return;
	if (!strcmp(at, path))
		s_err(ld, v, "'%s': kanald cannot create or use %s: %s", key, path,
		      strerror(errno));
	else
		s_err(ld, v, "'%s': kanald cannot create %s: %s: %s", key, path, at,
		      strerror(errno));
}

/* What a start needs of the filesystem and conf_load does not look at (kanalctl's other
 * commands read the config as other users): the state and run folders can be made, and
 * the journal's folder exists (SQLite makes no folders) unless it is the state folder,
 * which kanald makes. */
static void s_check_paths(loader_t *ld, const ynode_t *root)
{
	const conf_t *conf = ld->conf;
	const ynode_t *jpath = yaml_tree_get(yaml_tree_get(root, "journal"), "path");
	const ynode_t *x;
	char *dir, *slash;

	if (!root || root->kind != YNODE_MAPPING)
		return;
	x = yaml_tree_get(root, "state_dir");
	s_check_folder(ld, x ? x : root, "state_dir", conf->state_dir);
	x = yaml_tree_get(root, "run_dir");
	s_check_folder(ld, x ? x : root, "run_dir", conf->run_dir);
	if (!jpath || !conf->journal_path || !conf->journal_durable || !conf->state_dir ||
	    !(dir = strdup(conf->journal_path)))
		return;
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	if (slash && *dir && strcmp(dir, conf->state_dir) != 0) {
		struct stat st;
		if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
			s_err(ld, jpath,
			      "'path': the journal's folder %s does not exist: create it, or "
			      "put the journal in state_dir",
			      dir);
		else if (access(dir, W_OK | X_OK) != 0)
			s_err(ld, jpath,
			      "'path': kanald cannot create files in the journal's folder "
			      "%s: %s",
			      dir, strerror(errno));
	}
	free(dir);
}

/* trace.export.url, by the connectors' rule (plugins/common/kc_url.c, the host as libcurl
 * reads it): https anywhere, plain http to this machine only — spans name routes,
 * destinations, event types and ids — unless security.allow_plain says otherwise. */
static void s_trace_url(loader_t *ld, const ynode_t *v)
{
	const conf_t *conf = ld->conf;
	bool plain_remote = false;
	kanal_error_t err;

	kanal_error_clear(&err);
	if (kc_url_check("url", conf->trace_url, true, &plain_remote, &err) != 0)
		s_err(ld, v, "trace export %s", err.text);
	else if (plain_remote && !conf->allow_plain)
		s_err(ld, v,
		      "trace export 'url': %s would send spans over plain HTTP beyond this host: "
		      "use https://, a collector on 127.0.0.1, or set security.allow_plain: true",
		      conf->trace_url);
}

/* ---- the whole file ----------------------------------------------------------------- */

/* Sets everything a file may leave out. Folders default to beside the file. */
static void s_defaults(loader_t *ld)
{
	conf_t *conf = ld->conf;

	conf->log_level = KANAL_LOG_INFO;
	conf->plugin_dir = s_path(ld, "plugins");
	conf->state_dir = s_path(ld, "state");
	conf->run_dir = s_path(ld, "run");
	conf->gateway_endpoint = s_strdup(ld, CONF_DEFAULT_GATEWAY);
	conf->stream_endpoint = s_strdup(ld, CONF_DEFAULT_STREAM);
	conf->admin_endpoint = s_strdup(ld, CONF_DEFAULT_ADMIN);
	/* Off unless configured: a default port would collide between kanalds on one host
	 * (the shipped kanald.yaml turns it on at http://127.0.0.1:7703). */
	conf->admin_http = s_strdup(ld, "");
	conf->max_event_bytes = KANAL_MSG_DEFAULT_MAX_BYTES;
	conf->max_blob_bytes = KANAL__BLOB_MAX_DEFAULT;
	conf->blob_store_bytes = KANAL__BLOB_STORE_DEFAULT;
	conf->queue_max_events = 10000;
	conf->queue_max_bytes = 64 * 1024 * 1024;
	conf->shutdown_deadline_ms = 5000;
	conf->enrich_timeout_ms = 2000;
	conf->journal_durable = true;
	conf->nats.stream_prefix = s_strdup(ld, "KANAL");
	conf->nats.replicas = 3;
	conf->nats.ack_wait_ms = 30000;
	conf->nats.blob_retention_ms = 7LL * 86400000; /* a week */
	conf->nats.lease_ms = 10000;
	conf->max_parked_events = 1000000;
	conf->journal_retention_ms = 7LL * 24 * 3600 * 1000;
	conf->dlq_max_age_ms = 90LL * 24 * 3600 * 1000;
	conf->dlq_max_events = 100000;
	conf->dedupe_window_ms = 10LL * 60 * 1000;
	conf->trace_service_name = s_strdup(ld, "kanald");
	conf->trace_batch = 512;
	conf->trace_interval_ms = 1000;
	conf->trace_queue = 4096;
	conf->route_paths = s_calloc(ld, 1, sizeof *conf->route_paths);
	if (conf->route_paths && (conf->route_paths[0] = s_path(ld, "routes")))
		conf->n_route_paths = 1;
}

static void s_walk(loader_t *ld, const ynode_t *root)
{
	conf_t *conf = ld->conf;
	const ynode_t *x;

	if (!root)
		return; /* an empty file: every default */
	if (root->kind != YNODE_MAPPING) {
		s_err(ld, root,
		      "kanald.yaml must be a mapping of settings (log_level:, "
		      "instances:, …), not %s",
		      yaml_tree_describe(root));
		return;
	}
	if (yaml_tree_check_keys(root, s_top_keys, N_OF(s_top_keys), NULL, ld->file, ld->d))
		ld->errors++;
	if ((x = yaml_tree_get(root, "log_level")))
		s_log_level(ld, x);
	if ((x = yaml_tree_get(root, "log_format")))
		s_log_format(ld, x);
	/* plugin_dir first: instances resolve their plugin names against it. */
	if ((x = yaml_tree_get(root, "plugin_dir")))
		s_folder(ld, x, "plugin_dir", &conf->plugin_dir);
	if ((x = yaml_tree_get(root, "state_dir")))
		s_folder(ld, x, "state_dir", &conf->state_dir);
	if ((x = yaml_tree_get(root, "run_dir")))
		s_folder(ld, x, "run_dir", &conf->run_dir);
	if ((x = yaml_tree_get(root, "routes")))
		s_routes(ld, x);
	if ((x = yaml_tree_get(root, "endpoints")))
		s_endpoints(ld, x);
	if ((x = yaml_tree_get(root, "limits")))
		s_limits(ld, x);
	if ((x = yaml_tree_get(root, "journal")))
		s_journal(ld, x);
	if ((x = yaml_tree_get(root, "trace")))
		s_trace(ld, x);
	if ((x = yaml_tree_get(root, "instances")))
		s_instances(ld, x);
	s_readyz_requires(ld, root);
	/* security before the endpoint check: curve and allow_plain decide what may bind. */
	if ((x = yaml_tree_get(root, "security")))
		s_security(ld, x);
	s_plain_endpoints(ld, root);
	if (conf->trace_url)
		s_trace_url(ld, yaml_tree_get(yaml_tree_get(yaml_tree_get(root, "trace"), "export"),
					      "url"));
}

/* The folder of `path` as written ("." when it has none). Returns a new string or NULL. */
static char *s_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* conf_load and conf_load_all: `partial` keeps a config that has errors and checks the
 * paths a start needs. */
static int s_load(const char *path, bool partial, conf_t **out, diag_t *d)
{
	conf_store_t *store = NULL;
	yaml_tree_t *tree = NULL;
	conf_t *conf = NULL;
	size_t first_error;
	loader_t ld;
	int rc;

	*out = NULL;
	memset(&ld, 0, sizeof ld);
	conf = calloc(1, sizeof *conf);
	store = calloc(1, sizeof *store);
	if (!conf || !store) {
		free(conf);
		free(store);
		return KANAL_ENOMEM;
	}
	conf->strings = store;
	ld.conf = conf;
	ld.store = store;
	ld.file = path;
	ld.d = d;
	conf->file = s_strdup(&ld, path);
	conf->dir = s_keep(&ld, s_dirname(path));
	if (ld.oom)
		goto fail_oom;
	first_error = d ? d->count : 0;
	rc = yaml_tree_load(path, &tree, d);
	if (rc == KANAL_ENOMEM)
		goto fail_oom;
	if (rc != 0) {
		conf_destroy(&conf);
		return KANAL_ECONFIG;
	}
	ld.errors = tree->errors;
	s_defaults(&ld);
	s_walk(&ld, tree->root);
	if (partial)
		s_check_paths(&ld, tree->root);
	yaml_tree_destroy(&tree);
	yaml_tree_sort_errors(d, first_error);
	if (ld.oom)
		goto fail_oom;
	if (ld.errors) {
		if (partial)
			*out = conf;
		else
			conf_destroy(&conf);
		return KANAL_ECONFIG;
	}
	*out = conf;
	return 0;
fail_oom:
	yaml_tree_destroy(&tree);
	conf_destroy(&conf);
	return KANAL_ENOMEM;
}

int conf_load(const char *path, conf_t **out, diag_t *d)
{
	return s_load(path, false, out, d);
}

int conf_load_all(const char *path, conf_t **out, diag_t *d)
{
	return s_load(path, true, out, d);
}

void conf_destroy(conf_t **conf_p)
{
	conf_store_t *store;
	size_t i;

	if (!conf_p || !*conf_p)
		return;
	explicit_bzero((*conf_p)->curve_secret_key, sizeof(*conf_p)->curve_secret_key);
	store = (*conf_p)->strings;
	if (store) {
		for (i = 0; i < store->n; i++)
			free(store->ptrs[i]);
		free(store->ptrs);
		free(store);
	}
	free(*conf_p);
	*conf_p = NULL;
}

const conf_client_t *conf_client(const conf_t *conf, const char *name)
{
	if (!conf || !name)
		return NULL;
	for (size_t i = 0; i < conf->n_clients; i++)
		if (conf->clients[i].name && !strcmp(conf->clients[i].name, name))
			return &conf->clients[i];
	return NULL;
}

const conf_instance_t *conf_instance(const conf_t *conf, const char *name)
{
	size_t i;

	if (!conf || !name)
		return NULL;
	for (i = 0; i < conf->n_instances; i++)
		if (conf->instances[i].name && !strcmp(conf->instances[i].name, name))
			return &conf->instances[i];
	return NULL;
}
