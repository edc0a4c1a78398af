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
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "conf.h"
#include "instance.h"
#include "log.h"

#include "admin_http.h"
#include "router.h"
#include "routes.h"

static void s_usage(FILE *out)
{
	fprintf(out,
		"usage: kanald [-c FILE] [--check] [--log-level LEVEL]\n"
		"\n"
		"  -c, --config FILE     kanald.yaml (default: $KANAL_CONF or conf/kanald.yaml)\n"
		"      --check           load and validate everything, start nothing, exit 0/1\n"
		"      --log-level LEVEL error | warn | info | debug (overrides the config)\n"
		"  -h, --help            this text\n"
		"\n"
		"Signals: SIGHUP reloads the routing files; SIGTERM or SIGINT stop gracefully.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf_path = getenv("KANAL_CONF");
	const char *level_arg = NULL;
	bool check_only = false;
	conf_t *conf = NULL;
	instance_t **instances = NULL;
	size_t n_loaded = 0, n_started = 0;
	routes_t *routes = NULL;
	router_t *router = NULL;
	admin_http_t *admin = NULL;
	void *zctx = NULL;
	diag_t d = { 0 };
	char err[1024];
	sigset_t sigs;
	bool stuck = false;
	int c, status = 1;

	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf_path = optarg;
			break;
		case 'k':
			check_only = true;
			break;
		case 'l':
			level_arg = optarg;
			break;
		case 'h':
			s_usage(stdout);
			return 0;
		default:
			s_usage(stderr);
			return 2;
		}
	}
	if (!conf_path || !*conf_path)
		conf_path = "conf/kanald.yaml";

	/* Block the signals before any thread exists, so that every thread inherits it. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (conf_load(conf_path, &conf, &d) < 0) {
		diag_print(&d, stderr);
		goto out;
	}
	if (level_arg) {
		kanal_log_level_t lvl;
		if (log_parse_level(level_arg, &lvl) < 0) {
			fprintf(stderr, "kanald: unknown log level '%s'\n", level_arg);
			goto out;
		}
		log_set_level(lvl);
	} else {
		log_set_level(conf->log_level);
	}

	/* Load and init every instance; any failure starts nothing. */
	instances = calloc(conf->n_instances + 1, sizeof *instances);
	if (!instances)
		goto out;
	for (size_t i = 0; i < conf->n_instances; i++) {
		if (instance_load(conf, &conf->instances[i], i, &instances[n_loaded], &d) == 0)
			n_loaded++;
	}
	{
		const char **names = calloc(conf->n_instances + 1, sizeof *names);
		for (size_t i = 0; names && i < conf->n_instances; i++)
			names[i] = conf->instances[i].name;
		if (!names || routes_load((const char *const *)conf->route_paths,
					  conf->n_route_paths, names, conf->n_instances, &routes,
					  &d) < 0) {
			free(names);
			diag_print(&d, stderr);
			goto out;
		}
		free(names);
	}
	if (d.count) {
		diag_print(&d, stderr);
		log_error("kanald", "not started: %zu error%s", d.count, d.count == 1 ? "" : "s");
		goto out;
	}
	if (check_only) {
		printf("%s: ok: %zu instances, %zu routes\n", conf->file, n_loaded,
		       routes_count(routes));
		status = 0;
		goto out;
	}

	zctx = zmq_ctx_new();
	if (!zctx) {
		log_error("kanald", "cannot create the ZeroMQ context");
		goto out;
	}
	if (conf->admin_http && *conf->admin_http) {
		admin = admin_http_new(conf->admin_http, conf->admin_token_file, zctx, err,
				       sizeof err);
		if (!admin) {
			log_error("kanald", "%s", err);
			goto out;
		}
		conf->admin_http_url = strdup(admin_http_url(admin));
	}
	router = router_new(conf, instances, n_loaded, &routes, zctx, err, sizeof err);
	if (!router) {
		log_error("kanald", "%s", err);
		goto out;
	}
	admin_http_set_admin_endpoint(admin, router_admin_endpoint(router));
	for (size_t i = 0; i < n_loaded; i++) {
		if (instance_start(instances[i], zctx, err, sizeof err) < 0) {
			log_error("kanald", "%s; stopping the instances already started", err);
			break;
		}
		log_info(instances[i]->name, "started (%s %s)", instances[i]->plugin->desc->name,
			 instances[i]->plugin->desc->version ? instances[i]->plugin->desc->version
							     : "");
		n_started++;
	}
	if (router_start(router) < 0) {
		log_error("kanald", "cannot start the router thread");
		goto out;
	}
	if (n_started < n_loaded)
		goto stop;
	log_info("kanald", "running: %zu instances, pid %d", n_started, (int)getpid());

	for (;;) {
		int sig = sigwaitinfo(&sigs, NULL);
		if (sig < 0 && errno == EINTR)
			continue;
		if (sig == SIGHUP) {
			log_info("kanald", "SIGHUP: reloading the routing files");
			router_reload(router);
			continue;
		}
		log_info("kanald", "%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
		break;
	}
	status = 0;
stop: {
	int undelivered = router_stop(router);
	if (undelivered > 0)
		log_warn("kanald", "%d deliveries were undelivered at the deadline and kept in "
				   "the dead-letter file", undelivered);
	if (n_started < n_loaded)
		status = 1;
}
out:
	admin_http_destroy(&admin); /* before the router: it may be asking it */
	router_destroy(&router);
	for (size_t i = 0; i < n_loaded; i++) {
		if (instances[i]->stuck)
			stuck = true;
		instance_destroy(&instances[i]);
	}
	free(instances);
	routes_destroy(&routes);
	if (conf) {
		free(conf->admin_http_url);
		conf->admin_http_url = NULL;
	}
	if (stuck) {
		/* A plugin thread is stuck in a callback and still holds its sockets: waiting
		 * for the ZeroMQ context would wait for it. Everything kept is on disk. */
		log_error("kanald", "exiting with a plugin still stuck in a callback");
		conf_destroy(&conf);
		diag_free(&d);
		_exit(status ? status : 3);
	}
	if (zctx)
		zmq_ctx_term(zctx);
	if (status == 0 && !check_only)
		log_info("kanald", "stopped");
	conf_destroy(&conf);
	diag_free(&d);
	return status;
}
