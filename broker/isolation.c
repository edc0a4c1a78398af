/*
 * broker/isolation.c — the proxy of an instance with `isolation: process`
 * (docs/design/isolation.md).
 *
 * The instance's thread runs this proxy instead of the plugin. It starts kanal-plugin-host
 * (posix_spawn, its own process group, no inherited descriptors, a fresh routing token in
 * the environment), binds a ROUTER at ipc://<run_dir>/<instance>.ipc for it, and then loops
 * over three things at once: the router's bus socket (deliveries, close, stop), the plugin
 * host's socket (outcomes and the host services it asks for), and the plugin host process
 * itself (a pidfd that becomes readable when it dies; where pidfds are missing, waitpid
 * every ISO_REAP_POLL_MS).
 *
 * Deliveries go to the plugin host in order, up to ISO_PIPELINE at a time (the router keeps
 * up to BUS_DELIVER_WINDOW in flight to the instance; the rest wait here), which saves a
 * round trip per delivery. Which one killed the plugin is not left to messages — a plugin
 * host that segfaults takes the outcomes its ZeroMQ thread had not yet written with it —
 * but read from a page of shared memory (a memfd both map, kanal_wire_progress_t) where
 * the plugin host writes, synchronously, the id of the delivery whose on_message is
 * running and the outcome of each it finished. When it dies, the running delivery is
 * answered RETRY with the cause; one it had finished with OK is answered OK (its OUTCOME
 * message died unsent); every other unanswered one goes to the next plugin host, with no
 * attempt spent.
 *
 * The host services the plugin asks for are performed with the public kanal_* functions on
 * this instance's own ctx, bound to this thread — the very services a plugin on a thread
 * gets (instance.c) — so backpressure, the privacy checks and max_event_size are the same
 * whichever way a plugin runs. Time the proxy spends serving such a call (an emit waiting
 * for the window, a request waiting for its service) is not the plugin's, and moves the
 * delivery's deadline on.
 *
 * Failure: a plugin host that exits, is killed by a signal, does not answer a delivery
 * within `deadline`, does not answer a ping within `deadline` while idle (a hung timer
 * callback), or does not finish init and start in time, is killed with SIGKILL and reaped;
 * the event stream gets "plugin.crashed <instance>" and, once a new one has started,
 * "plugin.restarted <instance>". The delay before each new start doubles from 100 ms to
 * 10 s and goes back to 100 ms after a plugin host has run for 10 s.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bus.h"
#include "isolation.h"
#include "log.h"
#include "plugin_wire.h"

#define ISO_BACKOFF_MIN_MS 100
#define ISO_BACKOFF_MAX_MS 10000
/* A plugin host that has run this long is healthy again: the backoff starts over. */
#define ISO_HEALTHY_MS ISO_BACKOFF_MAX_MS
/* init and start get at least this long, even with a short deadline. */
#define ISO_START_MIN_MS 10000
/* After the stop deadline, how long the plugin host may take to exit before SIGKILL. */
#define ISO_STOP_GRACE_MS 1000
/* Deliveries sent to the plugin host and not yet answered, at most. */
#define ISO_PIPELINE 8
/* After a plugin host died: how long to wait for ZeroMQ to report its connection closed,
 * that is, for everything it sent before it died to be readable. */
#define ISO_LAST_WORDS_MS 1000
/* Without a pidfd, how often to look whether the plugin host is still alive. */
#define ISO_REAP_POLL_MS 50
/* Longest socket path (sockaddr_un's sun_path holds 108 bytes with the NUL). */
#define ISO_SUN_PATH_MAX 107

extern char **environ;

typedef enum iso_state {
	ISO_DOWN,     /* no plugin host; the next one starts at next_start */
	ISO_STARTING, /* spawned; waiting for HELLO, then STARTED */
	ISO_UP,       /* started; deliveries flow */
} iso_state_t;

/* A delivery waiting for the plugin host. msg is the router's, borrowed until answered. */
typedef struct pending {
	bus_deliver_t dl;
	struct pending *next;
} pending_t;

struct isolation {
	/* Fixed at load. */
	char *name;
	char *host_path; /* kanal-plugin-host */
	char *plugin_path;
	char *ipc_path; /* the socket file */
	char *endpoint; /* "ipc://" + ipc_path */
	json_t *init;   /* INIT's head, without log_level */
	int64_t deadline_ms;
	int64_t start_timeout_ms; /* for init and start: deadline_ms, at least ISO_START_MIN_MS */
	size_t parse_limit;       /* largest event accepted from the plugin host, serialised */

	/* The proxy's, on the instance's thread only. */
	instance_t *inst;
	void *sock;      /* ROUTER, bound at endpoint */
	void *mon;       /* PAIR receiving sock's connection events */
	int connections; /* open connections to sock (accepted, not yet disconnected) */
	int progress_fd; /* the memfd behind `progress`, or -1 */
	kanal_wire_progress_t *progress; /* shared with the plugin host (plugin_wire.h) */
	bool progress_ok;                /* the current plugin host said it writes `progress` */
	iso_state_t state;
	pid_t pid;      /* the plugin host, or 0 */
	int pidfd;      /* -1 when there is none (then waitpid polls) */
	char token[40]; /* the current plugin host's routing id */
	bool reported;  /* the first start was reported to instance_start */
	bool done;      /* leave the loop */
	bool stopping;  /* the router sent S */
	int64_t stop_deadline;
	int64_t start_deadline;
	int64_t next_start;
	int64_t backoff_ms;
	int64_t up_since;
	int64_t down_since;
	unsigned restarts;
	bool operator_restart;       /* set (atomically) by isolation_restart before its SIGKILL */
	bool restarting_by_operator; /* the host now starting replaces one an operator ended */

	pending_t *head, *tail; /* deliveries waiting for the plugin host */
	/* Sent and unanswered, oldest first; inflight[0] is the one being handled. */
	bus_deliver_t inflight[ISO_PIPELINE];
	size_t n_inflight;
	int64_t head_deadline; /* by when inflight[0] must be answered */
	int64_t last_heard;    /* anything from the plugin host */
	int64_t ping_sent;     /* 0: no ping outstanding */
};

/* ---- preparing (main thread) ------------------------------------------------------------- */

/* The plugin host binary: $KANAL_PLUGIN_HOST, else kanal-plugin-host in the folder of the
 * running executable (build/bin or PREFIX/bin). Returns a new string or NULL. */
static char *s_host_path(void)
{
	const char *env = getenv("KANAL_PLUGIN_HOST");
	char exe[PATH_MAX], *slash, *path;
	ssize_t n;

	if (env && *env)
		return strdup(env);
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	if (asprintf(&path, "%s/kanal-plugin-host", exe) < 0)
		return NULL;
	return path;
}

/* `path` made absolute against the current folder (both processes share it, but an
 * absolute path reads better in messages and is what the length check must measure).
 * Returns a new string or NULL. */
static char *s_absolute(const char *path)
{
	char cwd[PATH_MAX], *out;

	if (path[0] == '/')
		return strdup(path);
	if (!getcwd(cwd, sizeof cwd))
		return NULL;
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

/* INIT's head: what the plugin host needs to build the same config kanald just checked. */
static json_t *s_init_head(const conf_t *conf, const conf_instance_t *ci)
{
	json_t *opts = json_array(), *head;
	char *state_dir = NULL;

	if (!opts)
		return NULL;
	for (size_t i = 0; i < ci->n_options; i++) {
		const kanal_optval_t *v = &ci->options[i];
		json_t *o = json_pack("{s:s, s:i, s:i}", "key", v->key, "line", v->line, "column",
				      v->column);
		if (!o)
			goto fail;
		if (v->is_list) {
			json_t *items = json_array();
			for (size_t k = 0; items && k < v->n_items; k++)
				json_array_append_new(items, json_string(v->items[k]));
			json_object_set_new(o, "items", items);
		} else {
			json_object_set_new(o, "value", json_string(v->value ? v->value : ""));
		}
		json_array_append_new(opts, o);
	}
	if (asprintf(&state_dir, "%s/%s", conf->state_dir, ci->name) < 0)
		goto fail;
	head = json_pack("{s:s, s:s, s:i, s:i, s:o, s:s}", "file", conf->file, "instance", ci->name,
			 "line", ci->line, "column", ci->column, "options", opts, "state_dir",
			 state_dir);
	free(state_dir);
	/* The plugin host opens the same blob store (docs/design/blobs.md) — a folder, so
	 * not in cluster mode, whose store is a JetStream stream the host cannot reach: an
	 * isolated plugin has no blob store there (KANAL_ENOSERVICE). */
	if (head && conf->blobs && !conf->journal_cluster) {
		char *blob_dir = NULL;
		if (asprintf(&blob_dir, "%s/blobs", conf->state_dir) >= 0) {
			json_object_set_new(head, "blob_dir", json_string(blob_dir));
			json_object_set_new(head, "max_blob_bytes",
					    json_integer((json_int_t)conf->max_blob_bytes));
			json_object_set_new(head, "blob_store_bytes",
					    json_integer((json_int_t)conf->blob_store_bytes));
			free(blob_dir);
		}
	}
	return head;
fail:
	json_decref(opts);
	return NULL;
}

int isolation_new(const conf_t *conf, const conf_instance_t *ci, isolation_t **out, diag_t *d)
{
	isolation_t *iso = calloc(1, sizeof *iso);
	char *run_dir = NULL;
	int64_t limit;
	int rc = KANAL_ENOMEM;

	*out = NULL;
	if (!iso)
		return KANAL_ENOMEM;
	iso->pidfd = -1;
	iso->progress_fd = -1;
	iso->deadline_ms = ci->deadline_ms > 0 ? ci->deadline_ms : 30000;
	iso->start_timeout_ms =
		iso->deadline_ms > ISO_START_MIN_MS ? iso->deadline_ms : ISO_START_MIN_MS;
	limit = conf->max_event_bytes > KANAL_MSG_DEFAULT_MAX_BYTES ? conf->max_event_bytes
								    : KANAL_MSG_DEFAULT_MAX_BYTES;
	/* kanal_emit applies max_event_size itself, to the message; this only keeps a
	 * runaway plugin host from sending anything at all. */
	iso->parse_limit = (size_t)limit * 2;
	iso->name = strdup(ci->name);
	iso->plugin_path = strdup(ci->plugin_path);
	iso->host_path = s_host_path();
	run_dir = s_absolute(conf->run_dir);
	iso->init = s_init_head(conf, ci);
	if (!iso->name || !iso->plugin_path || !iso->host_path || !run_dir || !iso->init)
		goto fail;
	if (asprintf(&iso->ipc_path, "%s/%s.ipc", run_dir, ci->name) < 0) {
		iso->ipc_path = NULL;
		goto fail;
	}
	if (asprintf(&iso->endpoint, "ipc://%s", iso->ipc_path) < 0) {
		iso->endpoint = NULL;
		goto fail;
	}
	if (access(iso->host_path, X_OK) != 0) {
		const char *env = getenv("KANAL_PLUGIN_HOST");
		diag_add(d, conf->file, ci->line, ci->column,
			 "instance '%s': 'isolation: process' needs the plugin host, and %s is "
			 "not there (%s): %s",
			 ci->name, iso->host_path, strerror(errno),
			 env && *env ? "check $KANAL_PLUGIN_HOST"
				     : "install kanal-plugin-host beside kanald");
		rc = KANAL_ECONFIG;
		goto fail;
	}
	if (strlen(iso->ipc_path) > ISO_SUN_PATH_MAX) {
		diag_add(d, conf->file, ci->line, ci->column,
			 "instance '%s': its socket path %s is longer than the %d bytes a socket "
			 "address holds: choose a shorter run_dir",
			 ci->name, iso->ipc_path, ISO_SUN_PATH_MAX);
		rc = KANAL_ECONFIG;
		goto fail;
	}
	free(run_dir);
	*out = iso;
	return 0;
fail:
	if (rc == KANAL_ENOMEM)
		diag_add(d, conf->file, ci->line, ci->column,
			 "instance '%s': out of memory preparing its plugin host", ci->name);
	free(run_dir);
	isolation_destroy(&iso);
	return rc;
}

void isolation_destroy(isolation_t **iso_p)
{
	isolation_t *iso = iso_p ? *iso_p : NULL;

	if (!iso)
		return;
	while (iso->head) {
		pending_t *p = iso->head;
		iso->head = p->next;
		free(p);
	}
	json_decref(iso->init);
	free(iso->name);
	free(iso->host_path);
	free(iso->plugin_path);
	free(iso->ipc_path);
	free(iso->endpoint);
	free(iso);
	*iso_p = NULL;
}

/* ---- talking to the router --------------------------------------------------------------- */

static int s_bus_send(void *sock, const void *frame, size_t len)
{
	while (zmq_send(sock, frame, len, 0) < 0) {
		if (errno != EINTR)
			return KANAL_EIO;
	}
	return 0;
}

/* Answers the router for delivery dl. Ownership: takes reply (may be NULL). */
static void s_answer(isolation_t *iso, const bus_deliver_t *dl, int outcome, const char *error,
		     int64_t retry_after_ms, kanal_msg_t *reply)
{
	bus_outcome_t out;
	size_t len;

	memset(&out, 0, offsetof(bus_outcome_t, error) + 1);
	out.cmd = BUS_OUTCOME;
	out.id = dl->id;
	out.outcome = outcome;
	out.retry_after_ms = retry_after_ms;
	snprintf(out.error, sizeof out.error, "%s", error ? error : "");
	/* The plugin host masks its texts, but it is the process kanald does not trust. */
	kanal_cpr_redact_inplace(out.error);
	out.reply = dl->is_request && outcome == KANAL_OUTCOME_OK ? reply : NULL;
	if (out.reply != reply)
		kanal_msg_destroy(&reply);
	len = offsetof(bus_outcome_t, error) + strlen(out.error) + 1;
	if (s_bus_send(iso->inst->deliver_sock, &out, len) < 0)
		kanal_msg_destroy(&out.reply);
}

/* Asks the router to publish `kind` about this instance with `detail` merged in. */
static void s_notice(isolation_t *iso, const char *kind, json_t *detail)
{
	bus_notice_t nt;
	char *text = detail ? json_dumps(detail, JSON_COMPACT) : NULL;

	json_decref(detail);
	memset(&nt, 0, sizeof nt);
	nt.cmd = BUS_NOTICE;
	snprintf(nt.kind, sizeof nt.kind, "%s", kind);
	if (text && strlen(text) < sizeof nt.detail)
		memcpy(nt.detail, text, strlen(text) + 1);
	else
		snprintf(nt.detail, sizeof nt.detail, "{}");
	free(text);
	s_bus_send(iso->inst->emit_sock, &nt, sizeof nt);
}

/* The deliveries waiting for the plugin host, in arrival order. */
static void s_enqueue(isolation_t *iso, const bus_deliver_t *dl)
{
	pending_t *p = calloc(1, sizeof *p);

	if (!p) {
		s_answer(iso, dl, KANAL_OUTCOME_RETRY, "kanald is out of memory", -1, NULL);
		return;
	}
	p->dl = *dl;
	if (iso->tail)
		iso->tail->next = p;
	else
		iso->head = p;
	iso->tail = p;
}

/* Puts dl back at the front of the queue (it goes to the plugin host next). */
static void s_requeue_front(isolation_t *iso, const bus_deliver_t *dl)
{
	pending_t *p = calloc(1, sizeof *p);

	if (!p) {
		s_answer(iso, dl, KANAL_OUTCOME_RETRY, "kanald is out of memory", -1, NULL);
		return;
	}
	p->dl = *dl;
	p->next = iso->head;
	iso->head = p;
	if (!iso->tail)
		iso->tail = p;
}

/* Removes inflight[i], keeping the order of the others. */
static void s_inflight_remove(isolation_t *iso, size_t i)
{
	memmove(&iso->inflight[i], &iso->inflight[i + 1],
		(iso->n_inflight - i - 1) * sizeof iso->inflight[0]);
	iso->n_inflight--;
}

static bool s_dequeue(isolation_t *iso, bus_deliver_t *dl)
{
	pending_t *p = iso->head;

	if (!p)
		return false;
	iso->head = p->next;
	if (!iso->head)
		iso->tail = NULL;
	*dl = p->dl;
	free(p);
	return true;
}

/* ---- the plugin host process ------------------------------------------------------------- */

/* The environment for the plugin host: kanald's, with the routing token. Returns a new
 * array whose strings are borrowed from environ except the last one (free it and the
 * array), or NULL. */
static char **s_env_with_token(const char *token, char **token_var)
{
	size_t n = 0, k = 0, prefix = strlen(KANAL_WIRE_TOKEN_ENV "=");
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 2, sizeof *env);
	if (!env || asprintf(token_var, KANAL_WIRE_TOKEN_ENV "=%s", token) < 0) {
		free(env);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], KANAL_WIRE_TOKEN_ENV "=", prefix) != 0)
			env[k++] = environ[i];
	env[k] = *token_var;
	return env;
}

/* Starts a plugin host. Returns 0, or a negative code with the reason in why. */
static int s_spawn(isolation_t *iso, char *why, size_t why_size)
{
	char parent[24], uuid[37], *token_var = NULL, **env = NULL;
	char *argv[] = { iso->host_path,
			 "--endpoint",
			 iso->endpoint,
			 "--plugin",
			 iso->plugin_path,
			 "--instance",
			 iso->name,
			 "--parent",
			 parent,
			 iso->progress ? "--progress-fd" : NULL,
			 "3",
			 NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dflt;
	size_t k = 0;
	int err;

	/* A fresh routing id per plugin host: what an earlier one left in flight is ignored. */
	if (kanal_uuid(uuid) != 0) {
		snprintf(why, why_size,
			 "no random routing id for the plugin host (getrandom failed)");
		return KANAL_EIO;
	}
	for (const char *p = uuid; *p; p++)
		if (*p != '-')
			iso->token[k++] = *p;
	iso->token[k] = '\0';
	snprintf(parent, sizeof parent, "%d", (int)getpid());
	env = s_env_with_token(iso->token, &token_var);
	if (!env) {
		snprintf(why, why_size, "out of memory starting the plugin host");
		return KANAL_ENOMEM;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	/* Nothing of kanald's but stdin, stdout and stderr (its log) goes along — no journal,
	 * no sockets — and the progress page, as fd 3. kanald blocks its signals in every
	 * thread and ignores SIGPIPE; the plugin host starts with the defaults, in a process
	 * group of its own so that a Ctrl-C meant for kanald reaches kanald, which then stops
	 * the plugin host in order. */
	if (iso->progress) {
		memset(iso->progress, 0, sizeof *iso->progress);
		posix_spawn_file_actions_adddup2(&fa, iso->progress_fd, 3);
	}
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
	posix_spawn_file_actions_addclosefrom_np(&fa, iso->progress ? 4 : STDERR_FILENO + 1);
#endif
	sigemptyset(&none);
	sigemptyset(&dflt);
	sigaddset(&dflt, SIGPIPE);
	sigaddset(&dflt, SIGHUP);
	sigaddset(&dflt, SIGINT);
	sigaddset(&dflt, SIGTERM);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dflt);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
						POSIX_SPAWN_SETPGROUP);
	err = posix_spawn(&iso->pid, iso->host_path, &fa, &attr, argv, env);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	free(token_var);
	free(env);
	if (err != 0) {
		iso->pid = 0;
		snprintf(why, why_size, "cannot start the plugin host %s: %s", iso->host_path,
			 strerror(err));
		return KANAL_EIO;
	}
#ifdef SYS_pidfd_open
	iso->pidfd = (int)syscall(SYS_pidfd_open, iso->pid, 0);
#else
	iso->pidfd = -1;
#endif
	iso->state = ISO_STARTING;
	iso->progress_ok = false;
	iso->start_deadline = kanal_now_ms() + iso->start_timeout_ms;
	iso->ping_sent = 0;
	log_debug(iso->name, "plugin host starting (pid %d)", (int)iso->pid);
	return 0;
}

/* Describes how the plugin host ended, for errors ("plugin host crashed (signal 11)") and
 * the stream (cause, signal or status). */
static void s_describe_exit(int status, char *why, size_t why_size, json_t *detail)
{
	if (WIFSIGNALED(status)) {
		snprintf(why, why_size, "plugin host crashed (signal %d)", WTERMSIG(status));
		json_object_set_new(detail, "cause", json_string("signal"));
		json_object_set_new(detail, "signal", json_integer(WTERMSIG(status)));
	} else {
		snprintf(why, why_size, "plugin host exited (status %d)",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		json_object_set_new(detail, "cause", json_string("exit"));
		json_object_set_new(detail, "status",
				    json_integer(WIFEXITED(status) ? WEXITSTATUS(status) : -1));
	}
}

/* Kills the plugin host if it still runs and reaps it. Returns its wait status, or -1 when
 * there was none. */
static int s_kill(isolation_t *iso)
{
	int status = -1;

	if (iso->pid > 0) {
		kill(iso->pid, SIGKILL);
		while (waitpid(iso->pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	if (iso->pidfd >= 0)
		close(iso->pidfd);
	iso->pidfd = -1;
	iso->pid = 0;
	return status;
}

/* Counts connections opened and closed, from the monitor of the plugin host's socket. */
static void s_on_monitor(isolation_t *iso)
{
	for (;;) {
		zmq_msg_t m;
		uint16_t event = 0;
		int more;

		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, iso->mon, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&m);
			return;
		}
		/* Frame 1: event (16 bits) and value (32 bits); frame 2: the address. */
		if (zmq_msg_size(&m) >= sizeof event)
			memcpy(&event, zmq_msg_data(&m), sizeof event);
		more = zmq_msg_more(&m);
		zmq_msg_close(&m);
		while (more) {
			zmq_msg_init(&m);
			if (zmq_msg_recv(&m, iso->mon, 0) < 0)
				more = 0;
			else
				more = zmq_msg_more(&m);
			zmq_msg_close(&m);
		}
		if (event == ZMQ_EVENT_ACCEPTED)
			iso->connections++;
		else if (event == ZMQ_EVENT_DISCONNECTED && iso->connections > 0)
			iso->connections--;
	}
}

static void s_on_host_message(isolation_t *iso, const kanal_wire_t *w);

/* Reads what a plugin host that has just died (or been killed) sent before it died. Its
 * outcomes matter most: a pipelined delivery it finished must not be taken for the one
 * that killed it. ZeroMQ reports a connection closed only after everything read from it
 * is readable from the socket, so wait for that (bounded), then read. Its logs and metrics
 * are kept too; its calls are not served — it never got an answer, so nothing was
 * promised. Forgets the plugin host's routing id afterwards. */
static void s_last_words(isolation_t *iso)
{
	int64_t deadline = kanal_now_ms() + ISO_LAST_WORDS_MS;
	kanal_wire_t w;
	int rc;

	s_on_monitor(iso);
	while (iso->connections > 0 && kanal_now_ms() < deadline) {
		zmq_pollitem_t item = { iso->mon, 0, ZMQ_POLLIN, 0 };
		if (zmq_poll(&item, 1, (long)(deadline - kanal_now_ms())) < 0 && errno == ETERM)
			break;
		s_on_monitor(iso);
	}
	while (iso->token[0] && (rc = kanal__wire_recv(iso->sock, true, &w)) != 0) {
		if (rc == KANAL_EPARSE)
			continue;
		if (rc < 0)
			break;
		if (!strcmp(w.peer, iso->token) &&
		    (w.kind == KANAL_WIRE_OUTCOME || w.kind == KANAL_WIRE_LOG ||
		     w.kind == KANAL_WIRE_METRIC))
			s_on_host_message(iso, &w);
		kanal__wire_clear(&w);
	}
	iso->token[0] = '\0';
}

/* The delay before the next plugin host, doubling per failure, back to the minimum after a
 * plugin host that ran long enough to count as healthy. */
static int64_t s_next_backoff(isolation_t *iso, int64_t now)
{
	int64_t delay;

	if (!iso->backoff_ms || (iso->up_since && now - iso->up_since >= ISO_HEALTHY_MS))
		iso->backoff_ms = ISO_BACKOFF_MIN_MS;
	delay = iso->backoff_ms;
	iso->backoff_ms = delay * 2 > ISO_BACKOFF_MAX_MS ? ISO_BACKOFF_MAX_MS : delay * 2;
	return delay;
}

/* Which unanswered delivery the dead plugin host was running, as an index into inflight;
 * n_inflight when none was (it died in a timer, or between deliveries). Without the shared
 * slot, the oldest is taken: it is the first the plugin host would have started. */
static size_t s_victim(const isolation_t *iso)
{
	uint64_t running;
	size_t i;

	if (!iso->n_inflight)
		return 0;
	if (!iso->progress || !iso->progress_ok)
		return 0;
	running = __atomic_load_n(&iso->progress->running, __ATOMIC_SEQ_CST);
	for (i = 0; i < iso->n_inflight && iso->inflight[i].id != running; i++)
		;
	return i;
}

/* True when the dead plugin host's progress page says it finished delivery id with OK
 * (and its OUTCOME message was lost with it). */
static bool s_finished_ok(const isolation_t *iso, uint64_t id)
{
	const kanal_wire_progress_t *pg = iso->progress;
	uint64_t n, first;

	if (!pg || !iso->progress_ok)
		return false;
	n = __atomic_load_n(&pg->done_count, __ATOMIC_SEQ_CST);
	first = n > KANAL_WIRE_DONE_RING ? n - KANAL_WIRE_DONE_RING : 0;
	for (uint64_t k = first; k < n; k++)
		if (pg->done_id[k % KANAL_WIRE_DONE_RING] == id)
			return pg->done_outcome[k % KANAL_WIRE_DONE_RING] == KANAL_OUTCOME_OK;
	return false;
}

/* The plugin host failed (why says how; detail holds cause and its facts, stolen): it is
 * killed and reaped, the delivery in its hands is answered RETRY, and a new one is
 * scheduled — or, before the first start was reported, the start fails. */
static void s_failed(isolation_t *iso, const char *why, json_t *detail)
{
	int64_t now = kanal_now_ms(), delay;
	bool was_starting = iso->state == ISO_STARTING;
	pid_t pid = iso->pid;
	bus_deliver_t dl;
	size_t victim;

	s_kill(iso);
	s_last_words(iso);
	iso->state = ISO_DOWN;
	if (!iso->reported) {
		instance_report_start(iso->inst, KANAL_EPLUGIN, why);
		iso->reported = true;
		iso->done = true;
		json_decref(detail);
		return;
	}
	if (iso->stopping) {
		/* The router has given up on what it had not seen answered; the journal keeps
		 * each of them, so answering is only a courtesy. */
		for (size_t i = 0; i < iso->n_inflight; i++)
			s_answer(iso, &iso->inflight[i], KANAL_OUTCOME_RETRY, why, -1, NULL);
		iso->n_inflight = 0;
		iso->done = true;
		log_warn(iso->name, "%s while stopping", why);
		json_decref(detail);
		return;
	}
	if (__atomic_exchange_n(&iso->operator_restart, false, __ATOMIC_ACQ_REL)) {
		/* Not a crash: no backoff, no delivery charged, not counted as a restart. */
		iso->restarting_by_operator = true;
		delay = 0;
		victim = iso->n_inflight;
		log_info(iso->name,
			 "plugin host ended by an operator's restart; starting a new one");
	} else {
		delay = s_next_backoff(iso, now);
		victim = s_victim(iso);
	}
	if (victim < iso->n_inflight) {
		/* The router retries it by the route's policy, not before the new host is up. */
		s_answer(iso, &iso->inflight[victim], KANAL_OUTCOME_RETRY, why, delay, NULL);
		log_error(iso->name, "%s handling delivery %llu; restarting it in %lld ms", why,
			  (unsigned long long)iso->inflight[victim].id, (long long)delay);
		s_inflight_remove(iso, victim);
	} else if (!iso->restarting_by_operator) {
		log_error(iso->name, "%s; restarting it in %lld ms", why, (long long)delay);
	}
	/* What it finished with OK is done (a request, whose reply is lost, is not); the rest
	 * go to the next plugin host first, in their order, uncharged. */
	for (size_t i = 0; i < iso->n_inflight;) {
		if (!iso->inflight[i].is_request && s_finished_ok(iso, iso->inflight[i].id)) {
			s_answer(iso, &iso->inflight[i], KANAL_OUTCOME_OK, NULL, -1, NULL);
			s_inflight_remove(iso, i);
		} else {
			i++;
		}
	}
	while (iso->n_inflight)
		s_requeue_front(iso, &iso->inflight[--iso->n_inflight]);
	/* Deliveries wait here while a new plugin host comes up, however slowly; but when
	 * one cannot even start, the destination is down, and they retry by the route's
	 * policy like those of any destination that is down. */
	while (was_starting && s_dequeue(iso, &dl))
		s_answer(iso, &dl, KANAL_OUTCOME_RETRY, why, delay, NULL);
	iso->up_since = 0;
	iso->down_since = now;
	iso->next_start = now + delay;
	if (detail) {
		if (pid > 0 && !json_object_get(detail, "pid"))
			json_object_set_new(detail, "pid", json_integer(pid));
		json_object_set_new(detail, "restart_in_ms", json_integer(delay));
	}
	s_notice(iso, iso->restarting_by_operator ? "plugin.restarting" : "plugin.crashed", detail);
}

/* Looks whether the plugin host has ended on its own. */
static void s_reap(isolation_t *iso)
{
	char why[128];
	json_t *detail;
	int status;
	pid_t got;

	if (iso->pid <= 0)
		return;
	do {
		got = waitpid(iso->pid, &status, WNOHANG);
	} while (got < 0 && errno == EINTR);
	if (got != iso->pid)
		return;
	detail = json_pack("{s:i}", "pid", (int)iso->pid);
	iso->pid = 0; /* reaped: s_kill must not signal the number again */
	s_describe_exit(status, why, sizeof why, detail);
	if (iso->stopping && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		json_decref(detail);
		s_kill(iso);
		s_last_words(iso); /* what its stop logged */
		iso->done = true;
		return;
	}
	if (iso->state == ISO_STARTING && iso->reported)
		strncat(why, " while starting", sizeof why - strlen(why) - 1);
	s_failed(iso, why, detail);
}

/* A send found the plugin host's connection gone. Almost always it has just died and the
 * pidfd has not said so yet: wait a little for its exit, so that the failure is told with
 * its real cause (and the right delivery is charged), before calling it unreachable. */
static void s_unreachable(isolation_t *iso)
{
	int64_t deadline = kanal_now_ms() + ISO_LAST_WORDS_MS;

	while (iso->pid > 0 && kanal_now_ms() < deadline) {
		struct timespec ts = { 0, 5 * 1000000L };
		s_reap(iso);
		if (iso->pid > 0)
			nanosleep(&ts, NULL);
	}
	if (iso->pid > 0)
		s_failed(iso, "cannot reach the plugin host",
			 json_pack("{s:s}", "cause", "unreachable"));
}

/* Kills a plugin host that did not answer in time. */
static void s_hung(isolation_t *iso, const char *what)
{
	char why[160];

	snprintf(why, sizeof why, "plugin host hung: %s within %lld ms", what,
		 (long long)iso->deadline_ms);
	s_failed(iso, why,
		 json_pack("{s:s, s:I}", "cause", "hung", "deadline_ms",
			   (json_int_t)iso->deadline_ms));
}

/* ---- host services, on the plugin's behalf ------------------------------------------------ */

static void s_send_answer(isolation_t *iso, int status, const kanal_msg_t *event)
{
	kanal__wire_send(iso->sock, iso->token, KANAL_WIRE_ANSWER,
			 json_pack("{s:i}", "status", status), event);
}

static void s_serve_emit(isolation_t *iso, const kanal_wire_t *w)
{
	kanal_msg_t *msg = NULL;
	kanal_error_t err;
	int rc;

	kanal_error_clear(&err);
	rc = kanal__wire_event(w, iso->parse_limit, &msg, &err);
	if (rc == 0)
		rc = kanal_emit(iso->inst->ctx, &msg); /* takes msg */
	else
		log_warn(iso->name, "refused an emitted event: %s", err.text);
	s_send_answer(iso, rc, NULL);
}

static void s_serve_request(isolation_t *iso, const kanal_wire_t *w)
{
	const char *service = json_string_value(json_object_get(w->head, "service"));
	int64_t timeout = json_integer_value(json_object_get(w->head, "timeout_ms"));
	kanal_msg_t *req = NULL, *reply = NULL;
	kanal_error_t err;
	int rc;

	kanal_error_clear(&err);
	rc = kanal__wire_event(w, iso->parse_limit, &req, &err);
	if (rc == 0)
		rc = kanal_request(iso->inst->ctx, service ? service : "", &req, timeout, &reply);
	s_send_answer(iso, rc, rc == 0 ? reply : NULL);
	kanal_msg_destroy(&reply);
}

static void s_serve_log(isolation_t *iso, const kanal_wire_t *w)
{
	json_int_t level = json_integer_value(json_object_get(w->head, "level"));
	const char *line = json_string_value(json_object_get(w->head, "line"));

	if (level < KANAL_LOG_ERROR)
		level = KANAL_LOG_ERROR;
	if (level > KANAL_LOG_DEBUG)
		level = KANAL_LOG_DEBUG;
	if (line)
		log_msg((kanal_log_level_t)level, iso->name, "%s", line); /* masks CPR numbers */
}

static void s_serve_metric(isolation_t *iso, const kanal_wire_t *w)
{
	const char *name = json_string_value(json_object_get(w->head, "name"));
	json_t *add = json_object_get(w->head, "add"), *set = json_object_get(w->head, "set");

	if (json_is_integer(add))
		kanal_metric_add(iso->inst->ctx, name, (int64_t)json_integer_value(add));
	else if (json_is_number(set))
		kanal_metric_set(iso->inst->ctx, name, json_number_value(set));
}

/* ---- messages from the plugin host ---------------------------------------------------------- */

static void s_on_started(isolation_t *iso, const kanal_wire_t *w)
{
	json_int_t status = json_integer_value(json_object_get(w->head, "status"));
	const char *error = json_string_value(json_object_get(w->head, "error"));
	int64_t now = kanal_now_ms();
	char why[600];

	if (iso->state != ISO_STARTING)
		return;
	if (status != 0) {
		snprintf(why, sizeof why, "%s", error && *error ? error : "init or start failed");
		if (iso->reported)
			log_error(iso->name, "the new plugin host could not start: %s", why);
		s_failed(iso, why, json_pack("{s:s}", "cause", "start"));
		return;
	}
	iso->state = ISO_UP;
	iso->up_since = now;
	iso->progress_ok = json_is_true(json_object_get(w->head, "progress"));
	if (!iso->reported) {
		log_info(iso->name, "plugin host started (pid %d)", (int)iso->pid);
		instance_report_start(iso->inst, 1, NULL);
		iso->reported = true;
		return;
	}
	if (iso->restarting_by_operator) {
		/* An operator's restart is not a crash: kanal_instance_restarts_total and the
		 * "keeps crashing" alert count crashes only. */
		iso->restarting_by_operator = false;
		log_info(iso->name, "plugin host restarted by an operator (pid %d)", (int)iso->pid);
		s_notice(iso, "plugin.restarted",
			 json_pack("{s:i, s:b}", "pid", (int)iso->pid, "operator", 1));
		return;
	}
	iso->restarts++;
	kanal_metric_add(iso->inst->ctx, "host_restarts", 1);
	log_info(iso->name, "plugin host restarted (pid %d) after %lld ms down", (int)iso->pid,
		 (long long)(now - iso->down_since));
	s_notice(iso, "plugin.restarted",
		 json_pack("{s:i, s:I, s:I}", "pid", (int)iso->pid, "restarts",
			   (json_int_t)iso->restarts, "down_ms",
			   (json_int_t)(now - iso->down_since)));
}

static void s_on_outcome(isolation_t *iso, const kanal_wire_t *w)
{
	uint64_t id = (uint64_t)json_integer_value(json_object_get(w->head, "id"));
	json_int_t outcome = json_integer_value(json_object_get(w->head, "outcome"));
	json_t *hint = json_object_get(w->head, "retry_after_ms");
	const char *error = json_string_value(json_object_get(w->head, "error"));
	kanal_msg_t *reply = NULL;
	bus_deliver_t dl;
	size_t i;

	for (i = 0; i < iso->n_inflight && iso->inflight[i].id != id; i++)
		;
	if (i == iso->n_inflight) {
		log_warn(iso->name,
			 "the plugin host answered delivery %llu, which it was not "
			 "handling; ignored",
			 (unsigned long long)id);
		return;
	}
	if (i > 0)
		log_warn(iso->name, "the plugin host answered delivery %llu out of order",
			 (unsigned long long)id);
	dl = iso->inflight[i];
	s_inflight_remove(iso, i);
	/* The next one starts now, in the plugin host's order. */
	if (i == 0)
		iso->head_deadline = kanal_now_ms() + iso->deadline_ms;
	if (outcome != KANAL_OUTCOME_OK && outcome != KANAL_OUTCOME_RETRY &&
	    outcome != KANAL_OUTCOME_REJECT) {
		outcome = KANAL_OUTCOME_REJECT;
		error = "the plugin host answered an invalid outcome";
	}
	if (w->event && kanal__wire_event(w, iso->parse_limit, &reply, NULL) < 0 &&
	    outcome == KANAL_OUTCOME_OK && dl.is_request) {
		outcome = KANAL_OUTCOME_RETRY;
		error = "the plugin host's reply is not a valid CloudEvent";
	}
	s_answer(iso, &dl, (int)outcome, error,
		 json_is_integer(hint) ? (int64_t)json_integer_value(hint) : -1, reply);
}

/* Handles one message from the current plugin host. */
static void s_on_host_message(isolation_t *iso, const kanal_wire_t *w)
{
	int64_t t0 = kanal_now_ms();

	switch (w->kind) {
	case KANAL_WIRE_HELLO:
		if (iso->state == ISO_STARTING) {
			json_t *init = json_deep_copy(iso->init);
			if (init) {
				json_object_set_new(init, "log_level",
						    json_integer(log_get_level()));
				json_object_set_new(init, "max_event_bytes",
						    json_integer((json_int_t)iso->parse_limit));
			}
			kanal__wire_send(iso->sock, iso->token, KANAL_WIRE_INIT, init, NULL);
		}
		break;
	case KANAL_WIRE_STARTED:
		s_on_started(iso, w);
		break;
	case KANAL_WIRE_OUTCOME:
		s_on_outcome(iso, w);
		break;
	case KANAL_WIRE_EMIT:
		s_serve_emit(iso, w);
		break;
	case KANAL_WIRE_FLUSH:
		s_send_answer(iso,
			      kanal_emit_flush(iso->inst->ctx, json_integer_value(json_object_get(
								       w->head, "timeout_ms"))),
			      NULL);
		break;
	case KANAL_WIRE_REQUEST:
		s_serve_request(iso, w);
		break;
	case KANAL_WIRE_LOG:
		s_serve_log(iso, w);
		break;
	case KANAL_WIRE_METRIC:
		s_serve_metric(iso, w);
		break;
	case KANAL_WIRE_UPSTREAM:
		kanal_upstream_report(iso->inst->ctx, json_is_true(json_object_get(w->head, "up")));
		break;
	case KANAL_WIRE_PING:
		iso->ping_sent = 0;
		break;
	case KANAL_WIRE_BYE:
		break;
	default:
		log_warn(iso->name, "the plugin host sent an unknown '%c' message; ignored",
			 w->kind);
		break;
	}
	/* What the proxy spent on the plugin's behalf is not the plugin's time: the plugin
	 * host, waiting for the answer, could not answer a ping either. */
	if (iso->n_inflight)
		iso->head_deadline += kanal_now_ms() - t0;
	if (iso->ping_sent)
		iso->ping_sent += kanal_now_ms() - t0;
	iso->last_heard = kanal_now_ms();
}

static void s_on_host(isolation_t *iso)
{
	kanal_wire_t w;
	int rc;

	while ((rc = kanal__wire_recv(iso->sock, true, &w)) != 0) {
		if (rc == KANAL_EPARSE) {
			log_warn(iso->name, "dropped a malformed message from the plugin host");
			continue;
		}
		if (rc < 0) {
			iso->done = rc == KANAL_ECLOSED;
			return;
		}
		/* Only the plugin host started last is listened to. */
		if (iso->pid > 0 && !strcmp(w.peer, iso->token))
			s_on_host_message(iso, &w);
		kanal__wire_clear(&w);
		if (iso->done)
			return;
	}
}

/* ---- messages from the router ------------------------------------------------------------ */

/* Stops the plugin host by the router's deadline: STOP when it is up (it finishes the
 * delivery in hand first), SIGKILL when it is not — it has started nothing yet. The loop
 * then waits for it to exit, until the deadline and a grace period. */
static void s_begin_stop(isolation_t *iso, int64_t deadline_ms)
{
	int64_t now = kanal_now_ms();
	bus_deliver_t dl;

	iso->stopping = true;
	iso->stop_deadline = deadline_ms > now ? deadline_ms : now + 1000;
	/* The router has already given up on what waits here (the journal keeps it). */
	while (s_dequeue(iso, &dl))
		;
	if (iso->state == ISO_UP && iso->pid > 0) {
		kanal__wire_send(
			iso->sock, iso->token, KANAL_WIRE_STOP,
			json_pack("{s:I}", "within_ms", (json_int_t)(iso->stop_deadline - now)),
			NULL);
		return;
	}
	s_kill(iso);
	iso->done = true;
}

static void s_on_router(isolation_t *iso)
{
	union {
		uint8_t cmd;
		bus_deliver_batch_t d;
		bus_stop_t st;
	} f;
	unsigned char *buf = &f.cmd;
	int n;

	while (!iso->done) {
		do {
			n = zmq_recv(iso->inst->deliver_sock, &f, sizeof f, ZMQ_DONTWAIT);
		} while (n < 0 && errno == EINTR);
		if (n < 0) {
			if (errno == ETERM)
				iso->done = true;
			return;
		}
		if (n >= (int)bus_deliver_batch_len(0) && buf[0] == BUS_DELIVER) {
			/* A batch of deliveries (bus.h): each waits here in order. */
			uint32_t count = f.d.count;
			if (bus_deliver_batch_len(count) > (size_t)n)
				count = 0;
			for (uint32_t i = 0; i < count; i++)
				s_enqueue(iso, &f.d.items[i]);
		} else if (n >= 1 && buf[0] == BUS_CLOSE_EMITS) {
			uint8_t c = BUS_CLOSED;
			iso->inst->closing = true; /* the plugin's emits now get KANAL_ECLOSED */
			s_bus_send(iso->inst->emit_sock, &c, 1);
		} else if (n >= (int)sizeof(bus_stop_t) && buf[0] == BUS_STOP) {
			s_begin_stop(iso, f.st.deadline_ms);
		}
	}
}

/* ---- the loop ---------------------------------------------------------------------------- */

/* Sends the next waiting delivery to the plugin host when it is free; answers RETRY
 * everything once the router has given up on it (shutdown past its deadline). */
static void s_dispatch(isolation_t *iso)
{
	int64_t now = kanal_now_ms();
	bus_deliver_t dl;

	if (iso->stopping)
		return;
	if (__atomic_load_n(&iso->inst->abandon, __ATOMIC_ACQUIRE)) {
		while (s_dequeue(iso, &dl))
			s_answer(iso, &dl, KANAL_OUTCOME_RETRY,
				 "kanald stopped before the plugin got to it", -1, NULL);
		return;
	}
	while (iso->state == ISO_UP && iso->n_inflight < ISO_PIPELINE && s_dequeue(iso, &dl)) {
		if (!iso->n_inflight)
			iso->head_deadline = now + iso->deadline_ms;
		iso->inflight[iso->n_inflight++] = dl;
		if (kanal__wire_send(iso->sock, iso->token, KANAL_WIRE_DELIVER,
				     json_pack("{s:I, s:i, s:s?, s:b}", "id", (json_int_t)dl.id,
					       "attempt", (int)dl.attempt, "route", dl.route,
					       "is_request", (int)dl.is_request),
				     dl.msg) < 0) {
			/* Not sent: it goes back to the front, and is not charged. */
			iso->n_inflight--;
			s_requeue_front(iso, &dl);
			s_unreachable(iso);
			return;
		}
	}
}

/* Acts on whatever time has run out. */
static void s_timers(isolation_t *iso)
{
	int64_t now = kanal_now_ms();

	if (iso->stopping) {
		if (iso->pid > 0 && now >= iso->stop_deadline + ISO_STOP_GRACE_MS) {
			log_warn(iso->name, "plugin host did not stop by the deadline; killed");
			s_kill(iso);
		}
		if (iso->pid <= 0)
			iso->done = true;
		return;
	}
	switch (iso->state) {
	case ISO_DOWN: {
		char why[600];
		if (now < iso->next_start)
			return;
		if (s_spawn(iso, why, sizeof why) < 0) {
			if (!iso->reported) {
				instance_report_start(iso->inst, KANAL_EIO, why);
				iso->reported = iso->done = true;
				return;
			}
			iso->next_start = now + s_next_backoff(iso, now);
			log_error(iso->name, "%s", why);
		}
		return;
	}
	case ISO_STARTING:
		if (now >= iso->start_deadline) {
			char why[160];
			snprintf(why, sizeof why, "plugin host did not start within %lld ms",
				 (long long)iso->start_timeout_ms);
			s_failed(iso, why, json_pack("{s:s}", "cause", "start"));
		}
		return;
	case ISO_UP:
		if (iso->n_inflight && now >= iso->head_deadline) {
			s_hung(iso, "no answer");
			return;
		}
		if (iso->ping_sent && now - iso->ping_sent >= iso->deadline_ms) {
			s_hung(iso, "no answer to a ping");
			return;
		}
		/* An idle plugin host is pinged now and then: a timer callback that hangs is
		 * found too, not only a delivery that does. */
		if (!iso->n_inflight && !iso->ping_sent &&
		    now - iso->last_heard >= iso->deadline_ms / 2) {
			iso->ping_sent = now;
			kanal__wire_send(iso->sock, iso->token, KANAL_WIRE_PING, NULL, NULL);
		}
		return;
	}
}

/* The next time s_timers has something to do (monotonic ms), or -1. */
static int64_t s_next_wake(const isolation_t *iso)
{
	int64_t next = -1;

#define ISO_EARLIER(t)                                                                             \
	do {                                                                                       \
		if (next < 0 || (t) < next)                                                        \
			next = (t);                                                                \
	} while (0)
	if (iso->stopping) {
		if (iso->pid > 0)
			ISO_EARLIER(iso->stop_deadline + ISO_STOP_GRACE_MS);
		return next;
	}
	if (iso->state == ISO_DOWN)
		ISO_EARLIER(iso->next_start);
	if (iso->state == ISO_STARTING)
		ISO_EARLIER(iso->start_deadline);
	if (iso->state == ISO_UP) {
		if (iso->n_inflight)
			ISO_EARLIER(iso->head_deadline);
		else if (iso->ping_sent)
			ISO_EARLIER(iso->ping_sent + iso->deadline_ms);
		else
			ISO_EARLIER(iso->last_heard + iso->deadline_ms / 2);
	}
	if (iso->pid > 0 && iso->pidfd < 0)
		ISO_EARLIER(kanal_now_ms() + ISO_REAP_POLL_MS);
#undef ISO_EARLIER
	return next;
}

/* Binds the ROUTER the plugin hosts connect to. Returns 0 or a code with why filled. */
static int s_bind(isolation_t *iso, char *why, size_t why_size)
{
	int zero = 0, one = 1;
	int64_t max_size = (int64_t)iso->parse_limit + 65536;
	char *dir = strdup(iso->ipc_path), *slash, *mon_endpoint;

	if (dir && (slash = strrchr(dir, '/')) && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0750);
	}
	free(dir);
	iso->sock = zmq_socket(iso->inst->zctx, ZMQ_ROUTER);
	if (!iso->sock) {
		snprintf(why, why_size, "cannot create the plugin host's socket: %s",
			 zmq_strerror(errno));
		return KANAL_EIO;
	}
	zmq_setsockopt(iso->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
	zmq_setsockopt(iso->sock, ZMQ_SNDHWM, &zero, sizeof zero);
	zmq_setsockopt(iso->sock, ZMQ_RCVHWM, &zero, sizeof zero);
	zmq_setsockopt(iso->sock, ZMQ_LINGER, &zero, sizeof zero);
	zmq_setsockopt(iso->sock, ZMQ_MAXMSGSIZE, &max_size, sizeof max_size);
	/* A socket file left by a kanald that was killed would make the bind fail. */
	unlink(iso->ipc_path);
	if (zmq_bind(iso->sock, iso->endpoint) != 0) {
		snprintf(why, why_size, "cannot bind %s: %s", iso->endpoint, zmq_strerror(errno));
		return KANAL_EIO;
	}
	/* Only kanald's own user may connect. */
	chmod(iso->ipc_path, 0600);
	if (asprintf(&mon_endpoint, "inproc://kanal-isolation-%s", iso->name) < 0)
		mon_endpoint = NULL;
	iso->mon = mon_endpoint ? zmq_socket(iso->inst->zctx, ZMQ_PAIR) : NULL;
	if (!iso->mon ||
	    zmq_socket_monitor(iso->sock, mon_endpoint,
			       ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0 ||
	    zmq_setsockopt(iso->mon, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
	    zmq_connect(iso->mon, mon_endpoint) != 0) {
		snprintf(why, why_size, "cannot monitor %s: %s", iso->endpoint,
			 zmq_strerror(errno));
		free(mon_endpoint);
		return KANAL_EIO;
	}
	free(mon_endpoint);
	return 0;
}

/* Makes the shared slot where plugin hosts say which delivery they are running. Without
 * it (no memfd), a crash is blamed on the oldest unanswered delivery. */
static void s_progress_open(isolation_t *iso)
{
	int fd = (int)syscall(SYS_memfd_create, "kanal-progress", 1U /* MFD_CLOEXEC */);
	void *p;

	if (fd >= 0) {
		/* Far from 3, where the plugin host gets it: dup2 onto itself would keep
		 * close-on-exec set. */
		int high = fcntl(fd, F_DUPFD_CLOEXEC, 10);
		close(fd);
		fd = high;
	}
	if (fd < 0 || ftruncate(fd, sizeof *iso->progress) != 0 ||
	    (p = mmap(NULL, sizeof *iso->progress, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) ==
		    MAP_FAILED) {
		log_warn(iso->name,
			 "no shared progress slot (%s): a crash is blamed on the "
			 "oldest delivery in flight",
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	iso->progress_fd = fd;
	iso->progress = p;
}

void isolation_run(isolation_t *iso, instance_t *inst)
{
	char why[600];

	iso->inst = inst;
	iso->state = ISO_DOWN;
	iso->next_start = kanal_now_ms();
	s_progress_open(iso);
	if (s_bind(iso, why, sizeof why) < 0) {
		instance_report_start(inst, KANAL_EIO, why);
		goto out;
	}
	while (!iso->done) {
		zmq_pollitem_t items[4] = {
			{ inst->deliver_sock, 0, ZMQ_POLLIN, 0 },
			{ iso->sock, 0, ZMQ_POLLIN, 0 },
			{ iso->mon, 0, ZMQ_POLLIN, 0 },
			{ NULL, iso->pidfd, ZMQ_POLLIN, 0 },
		};
		int64_t wake = s_next_wake(iso), wait = -1;
		int n_items = iso->pidfd >= 0 ? 4 : 3;

		if (wake >= 0) {
			wait = wake - kanal_now_ms();
			if (wait < 0)
				wait = 0;
		}
		if (zmq_poll(items, n_items, (long)wait) < 0 && errno == ETERM)
			break;
		s_on_monitor(iso);
		s_on_host(iso);
		s_reap(iso);
		if (!iso->done)
			s_on_router(iso);
		if (!iso->done)
			s_timers(iso);
		if (!iso->done)
			s_dispatch(iso);
	}
out:
	s_kill(iso);
	if (iso->sock) {
		zmq_socket_monitor(iso->sock, NULL, 0);
		zmq_close(iso->sock);
		iso->sock = NULL;
		unlink(iso->ipc_path);
	}
	if (iso->mon) {
		zmq_close(iso->mon);
		iso->mon = NULL;
	}
	if (iso->progress)
		munmap(iso->progress, sizeof *iso->progress);
	iso->progress = NULL;
	if (iso->progress_fd >= 0)
		close(iso->progress_fd);
	iso->progress_fd = -1;
}

int isolation_restart(isolation_t *iso)
{
	pid_t pid = isolation_host_pid(iso);

	if (pid <= 0)
		return KANAL_ESTATE;
	__atomic_store_n(&iso->operator_restart, true, __ATOMIC_RELEASE);
	/* The proxy sees the host end and starts a new one at once; what it was handling
	 * goes to the new one uncharged. */
	return kill(pid, SIGKILL) == 0 ? 0 : KANAL_EIO;
}

pid_t isolation_host_pid(isolation_t *iso)
{
	return iso ? __atomic_load_n(&iso->pid, __ATOMIC_RELAXED) : 0;
}
