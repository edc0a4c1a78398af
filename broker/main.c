/*
 * broker/main.c — kanald: read the config, load and init every plugin instance, compile
 * the routing tables, bind the endpoints, start the router and the instances — all or
 * nothing — then wait for signals: SIGHUP reloads the routes, SIGTERM/SIGINT stop
 * gracefully.
 *
 * Signals are blocked in every thread and taken synchronously here with sigtimedwait, so no
 * work ever happens in a signal handler.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <kanal/kanal.h>

#include "cluster_lease.h"
#include "conf.h"
#include "instance.h"
#include "log.h"
#include "notify.h"

#include "admin_http.h"
#include "cluster_blobs.h"
#include "router.h"
#include "routes.h"
#include "version.h"

static void s_usage(FILE *out)
{
	fprintf(out,
		"usage: kanald [-c FILE] [--check] [--log-level LEVEL] [--version]\n"
		"\n"
		"  -c, --config FILE     kanald.yaml (default: $KANAL_CONF or conf/kanald.yaml)\n"
		"      --check           load and validate everything, start nothing, exit 0/1\n"
		"      --log-level LEVEL error | warn | info | debug (overrides the config)\n"
		"  -V, --version         the version, source revision and plugin ABI\n"
		"  -h, --help            this text\n"
		"\n"
		"Signals: SIGHUP reloads the routing files; SIGTERM or SIGINT stop gracefully;\n"
		"a second one stops at once (undelivered work stays in the journal).\n");
}

/* Everything kanald sets up, in the order the steps below set it up. */
typedef struct kanald {
	const char *conf_path;
	const char *level_arg; /* --log-level, or NULL: the config's */
	bool check_only;
	conf_t *conf;
	bool conf_broken; /* conf has errors: only checked further, never started */
	instance_t **instances;
	size_t n_loaded, n_started;
	routes_t *routes;
	router_t *router;
	cluster_lease_t *lease; /* cluster mode: the singletons' leases (cluster_lease.c) */
	admin_http_t *admin;
	void *zctx;
	diag_t d;
	sigset_t sigs;
	bool stopped; /* router_stop has returned (s_stop's watcher ends) */
	int lock_fd;  /* <state_dir>/kanald.pid, locked while running */
} kanald_t;

/* Reads the command line into k. Returns true to go on, or false with the process's exit
 * code in *exit_code (0 after --help, 2 after a usage error). */
static bool s_parse_args(kanald_t *k, int argc, char **argv, int *exit_code)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },    { "check", no_argument, NULL, 'k' },
		{ "log-level", required_argument, NULL, 'l' }, { "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },         { NULL, 0, NULL, 0 },
	};
	int c;

	k->conf_path = getenv("KANAL_CONF");
	while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			k->conf_path = optarg;
			break;
		case 'k':
			k->check_only = true;
			break;
		case 'l':
			k->level_arg = optarg;
			break;
		case 'h':
			s_usage(stdout);
			*exit_code = 0;
			return false;
		case 'V':
			kanal__version_print(stdout, "kanald");
			*exit_code = 0;
			return false;
		default:
			s_usage(stderr);
			*exit_code = 2;
			return false;
		}
	}
	if (!k->conf_path || !*k->conf_path)
		k->conf_path = "conf/kanald.yaml";
	return true;
}

/* Blocks the signals kanald waits for, before any thread exists, so that every thread
 * inherits the mask and only s_wait_for_stop takes them. */
static void s_block_signals(kanald_t *k)
{
	sigemptyset(&k->sigs);
	sigaddset(&k->sigs, SIGHUP);
	sigaddset(&k->sigs, SIGTERM);
	sigaddset(&k->sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &k->sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Loads kanald.yaml and sets the log level (--log-level wins over the config's). A config
 * with errors is kept in k->conf (k->conf_broken) so that the instances and routes are
 * checked too and every mistake is reported in one run; it is never started. */
static int s_load_config(kanald_t *k)
{
	kanal_log_level_t lvl;
	int rc = conf_load_all(k->conf_path, &k->conf, &k->d);

	if (rc < 0 && !k->conf) {
		if (k->d.count)
			diag_print(&k->d, stderr);
		else
			fprintf(stderr, "kanald: %s: %s\n", k->conf_path, kanal_strerror(rc));
		return rc;
	}
	k->conf_broken = rc < 0;
	log_set_json(k->conf->log_json);
	if (!k->level_arg) {
		log_set_level(k->conf->log_level);
		return 0;
	}
	if (log_parse_level(k->level_arg, &lvl) < 0) {
		fprintf(stderr, "kanald: unknown log level '%s'\n", k->level_arg);
		return KANAL_EINVAL;
	}
	log_set_level(lvl);
	return 0;
}

/* Loads and inits every plugin instance. An instance that fails adds to k->d and the
 * others still load, so that one run reports every error. With --check, or when the
 * config itself has errors, or when an instance does not pass the validation, the
 * instances are only validated (instance_check, as kanalctl check does): nothing is
 * created and no init runs. */
static int s_load_instances(kanald_t *k)
{
	char *blob_dir = NULL;
	kanal_error_t err;

	if (k->check_only || k->conf_broken) {
		instance_check_all(k->conf, false, &k->d);
		return 0;
	}
	/* Every instance validated before any init runs (quietly: init logs the warnings
	 * again), so that a start refused for one instance has made nothing for another (an
	 * audit log, a folder). */
	if (instance_check_all(k->conf, true, &k->d) > 0)
		return 0;

	/* The blob store first: a plugin may put a blob from init (docs/design/blobs.md). In
	 * cluster mode it is a JetStream stream that every node shares; <state_dir>/blobs/tmp
	 * then only holds the private copies it reads blobs into. */
	kanal_error_clear(&err);
	if (asprintf(&blob_dir, "%s/blobs%s", k->conf->state_dir,
		     k->conf->journal_cluster ? "/tmp" : "") < 0)
		return KANAL_ENOMEM;
	if (k->conf->journal_cluster)
		k->conf->blobs = cluster_blobs_open(&k->conf->nats, k->conf->max_blob_bytes,
						    k->conf->blob_store_bytes, blob_dir, &err);
	else
		k->conf->blobs = kanal__blob_store_open_dir(blob_dir, k->conf->max_blob_bytes,
							    k->conf->blob_store_bytes, &err);
	free(blob_dir);
	if (!k->conf->blobs)
		diag_add(&k->d, k->conf->file, 0, 0, "%s", err.text);
	k->instances = calloc(k->conf->n_instances + 1, sizeof *k->instances);
	if (!k->instances)
		return KANAL_ENOMEM;
	for (size_t i = 0; i < k->conf->n_instances; i++) {
		if (instance_load(k->conf, &k->conf->instances[i], i, &k->instances[k->n_loaded],
				  &k->d) == 0)
			k->n_loaded++;
	}
	return 0;
}

/* Compiles the routing files against the configured instance names (an entry the config
 * refused has none). Errors go to k->d with the others. */
static int s_load_routes(kanald_t *k)
{
	const char **names = calloc(k->conf->n_instances + 1, sizeof *names);
	size_t n = 0, before = k->d.count;
	int rc;

	if (!names)
		return KANAL_ENOMEM;
	for (size_t i = 0; i < k->conf->n_instances; i++)
		if (k->conf->instances[i].name)
			names[n++] = k->conf->instances[i].name;
	rc = routes_load((const char *const *)k->conf->route_paths, k->conf->n_route_paths, names,
			 n, &k->routes, &k->d);
	free(names);
	if (rc < 0 && k->d.count == before)
		diag_add(&k->d, NULL, 0, 0, "the routing files could not be loaded: %s",
			 kanal_strerror(rc));
	return rc == KANAL_ENOMEM ? rc : 0;
}

/* All or nothing: any error found while loading starts nothing. */
static int s_refuse_on_errors(kanald_t *k)
{
	if (!k->d.count)
		return 0;
	diag_print(&k->d, stderr);
	log_error("kanald", "not started: %zu error%s", k->d.count, k->d.count == 1 ? "" : "s");
	return KANAL_ECONFIG;
}

/* --check: says what would run. */
static void s_report_check(const kanald_t *k)
{
	printf("%s: ok: %zu instances, %zu routes\n", k->conf->file, k->conf->n_instances,
	       routes_count(k->routes));
}

/* Starts the admin HTTP endpoint (when configured), the router and the instances, then the
 * router's thread. An instance that does not start leaves k->n_started below k->n_loaded
 * (the caller then stops again); anything else that fails is returned. */
static int s_start(kanald_t *k)
{
	char err[1024];

	k->zctx = zmq_ctx_new();
	if (!k->zctx) {
		log_error("kanald", "cannot create the ZeroMQ context");
		return KANAL_ENOMEM;
	}
	if (k->conf->admin_http && *k->conf->admin_http) {
		k->admin = admin_http_new(k->conf->admin_http, k->conf->admin_token_file, k->zctx,
					  err, sizeof err);
		if (!k->admin) {
			log_error("kanald", "%s", err);
			return KANAL_EIO;
		}
		k->conf->admin_http_url = strdup(admin_http_url(k->admin));
	}
	k->router = router_new(k->conf, k->instances, k->n_loaded, &k->routes, k->zctx, err,
			       sizeof err);
	if (!k->router) {
		log_error("kanald", "%s", err);
		return KANAL_EIO;
	}
	admin_http_set_admin_endpoint(k->admin, router_admin_endpoint(k->router));
	if (router_cluster_link(k->router)) {
		kanal_error_t e;
		kanal_error_clear(&e);
		k->lease = cluster_lease_new(router_cluster_link(k->router), k->conf, k->instances,
					     k->n_loaded, &e);
		if (!k->lease) {
			log_error("kanald", "%s", e.text);
			return KANAL_EIO;
		}
	}
	for (size_t i = 0; i < k->n_loaded; i++) {
		const kanal_plugin_t *desc = k->instances[i]->plugin->desc;

		if (instance_start(k->instances[i], k->zctx, err, sizeof err) < 0) {
			log_error("kanald", "%s; stopping the instances already started", err);
			break;
		}
		log_info(k->instances[i]->name, "started (%s %s)%s", desc->name,
			 desc->version ? desc->version : "",
			 k->instances[i]->singleton
				 ? "; a singleton: its plugin starts on the node "
				   "that holds its lease"
				 : "");
		k->n_started++;
	}
	if (router_start(k->router) < 0) {
		log_error("kanald", "cannot start the router thread");
		return KANAL_EIO;
	}
	/* The singletons start once their instance threads run (cluster mode). */
	if (cluster_lease_start(k->lease) < 0) {
		log_error("kanald", "cannot start the lease thread");
		return KANAL_EIO;
	}
	return 0;
}

/* Takes <state_dir>/kanald.pid with an exclusive lock, held until the process ends, and
 * writes this pid into it: a second kanald on the same state_dir is refused at once with
 * the holder's pid, instead of waiting on the journal and saying "database is locked".
 * Returns 0 or -1 (logged). */
static int s_lock_state_dir(kanald_t *k)
{
	char path[4096], holder[32] = "";
	int fd;

	(void)mkdir(k->conf->state_dir, 0700);
	snprintf(path, sizeof path, "%s/kanald.pid", k->conf->state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_error("kanald", "cannot open the lock file %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
		holder[n > 0 ? n : 0] = '\0';
		holder[strcspn(holder, "\n")] = '\0';
		log_error("kanald",
			  "state_dir %s is in use by another kanald (pid %s, lock file %s): "
			  "stop it first, or give this one its own state_dir",
			  k->conf->state_dir, holder[0] ? holder : "unknown", path);
		close(fd);
		return -1;
	}
	snprintf(holder, sizeof holder, "%d\n", (int)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, holder, strlen(holder), 0) < 0)
		log_warn("kanald", "cannot write the lock file %s: %s", path, strerror(errno));
	k->lock_fd = fd; /* closed at exit, which releases the lock */
	return 0;
}

/* Runs until SIGTERM or SIGINT; SIGHUP reloads the routing files meanwhile. */
static void s_wait_for_stop(kanald_t *k)
{
	char status[128];

	log_info("kanald", "running: %zu instances, pid %d, kanal %s (revision %s)", k->n_started,
		 (int)getpid(), KANAL_VERSION, kanal__revision);
	snprintf(status, sizeof status, "running: %zu instances", k->n_started);
	notify_ready(status);
	for (;;) {
		int sig = sigwaitinfo(&k->sigs, NULL);
		if (sig < 0 && errno == EINTR)
			continue;
		if (sig == SIGHUP) {
			log_info("kanald", "SIGHUP: reloading the routing files");
			notify_status("reloading the routing files");
			router_reload(k->router);
			notify_ready(status);
			continue;
		}
		log_info("kanald", "%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
		notify_stopping("stopping: finishing in-flight deliveries");
		return;
	}
}

/* While the graceful stop runs: a second SIGTERM or SIGINT cuts it short (the operator
 * does not want to wait for the shutdown deadline). Runs on its own thread; the signals
 * stay blocked everywhere, so sigtimedwait receives them here. */
static void *s_watch_second_signal(void *arg)
{
	kanald_t *k = arg;
	struct timespec tick = { 0, 100 * 1000000L };

	while (!__atomic_load_n(&k->stopped, __ATOMIC_ACQUIRE)) {
		int sig = sigtimedwait(&k->sigs, NULL, &tick);
		if (sig == SIGTERM || sig == SIGINT) {
			log_warn("kanald",
				 "second %s: stopping now, without waiting for in-flight "
				 "deliveries",
				 sig == SIGINT ? "SIGINT" : "SIGTERM");
			router_force_stop(k->router);
		}
	}
	return NULL;
}

/* Stops the router gracefully: what is still undelivered at its deadline (or at a second
 * SIGTERM) is kept — in the journal, to be delivered after the next start, or in memory
 * mode in the dead-letter file. */
static void s_stop(kanald_t *k)
{
	pthread_t watcher;
	bool watching = pthread_create(&watcher, NULL, s_watch_second_signal, k) == 0;
	int undelivered = router_stop(k->router);

	/* The singletons have stopped: their leases go now, for another node to take at once. */
	cluster_lease_destroy(&k->lease);
	__atomic_store_n(&k->stopped, true, __ATOMIC_RELEASE);
	if (watching)
		pthread_join(watcher, NULL);
	if (undelivered > 0 && k->conf->journal_durable)
		log_warn("kanald",
			 "%d deliveries were undelivered at the deadline; they stay in "
			 "the journal and are delivered after the next start",
			 undelivered);
	else if (undelivered > 0)
		log_warn("kanald",
			 "%d deliveries were undelivered at the deadline and written "
			 "to the dead-letter file (memory mode)",
			 undelivered);
}

/* Frees everything and returns the exit status; does not return when a plugin is stuck. */
static int s_finish(kanald_t *k, int status)
{
	bool stuck = false;

	admin_http_destroy(&k->admin);    /* before the router: it may be asking it */
	cluster_lease_destroy(&k->lease); /* before the router: it owns the NATS connection */
	router_destroy(&k->router);
	for (size_t i = 0; i < k->n_loaded; i++) {
		if (k->instances[i]->stuck)
			stuck = true;
		instance_destroy(&k->instances[i]);
	}
	free(k->instances);
	routes_destroy(&k->routes);
	if (k->conf) {
		free(k->conf->admin_http_url);
		k->conf->admin_http_url = NULL;
		if (!stuck) /* a stuck plugin may still be reading a blob */
			kanal__blob_store_destroy(&k->conf->blobs);
	}
	if (stuck) {
		/* A plugin thread is stuck in a callback and still holds its sockets: waiting
		 * for the ZeroMQ context would wait for it. Everything kept is on disk. */
		log_error("kanald", "exiting with a plugin still stuck in a callback");
		conf_destroy(&k->conf);
		diag_free(&k->d);
		_exit(status ? status : 3);
	}
	if (k->zctx)
		zmq_ctx_term(k->zctx);
	if (status == 0 && !k->check_only)
		log_info("kanald", "stopped");
	conf_destroy(&k->conf);
	diag_free(&k->d);
	return status;
}

int main(int argc, char **argv)
{
	kanald_t k = { 0 };
	int status = 1;

	if (!s_parse_args(&k, argc, argv, &status))
		return status;
	s_block_signals(&k);
	if (s_load_config(&k) < 0 || s_load_instances(&k) < 0 || s_load_routes(&k) < 0 ||
	    s_refuse_on_errors(&k) < 0)
		return s_finish(&k, 1);
	if (k.check_only) {
		s_report_check(&k);
		return s_finish(&k, 0);
	}
	if (s_lock_state_dir(&k) < 0 || s_start(&k) < 0)
		return s_finish(&k, 1);
	if (k.n_started == k.n_loaded) {
		s_wait_for_stop(&k);
		status = 0;
	}
	s_stop(&k);
	return s_finish(&k, status);
}
