/*
 * tests/integration/test_kanalctl.c — the built kanalctl binary, run as an operator runs it.
 *
 * Each test writes a kanald.yaml and routing files into a fresh temporary folder, runs
 * build/bin/kanalctl in a child process (stdout and stderr captured, a bounded wait, no
 * KANAL_* variables inherited) and checks its exit status and output. The offline commands
 * (check, explain, validate, plugin info) run for real. The online ones (send, tail,
 * reload, status, dlq) meet a stand-in kanald endpoint run on a thread here — a ROUTER, REP or
 * PUB socket that answers as docs/design/wire.md says — or nothing at all; the real broker
 * is exercised by the broker's own integration tests.
 *
 * No test prints kanalctl's output, and checks for CPR numbers use kanal_cpr_find, so no
 * clear CPR number can appear in the test log.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <zmq.h>

#include <kanal/kanal.h>
#include <sqlite3.h>

#include "golden.h"
#include "journal.h"
#include "kanald.h"
#include "test.h"

extern char **environ;

#define RUN_LIMIT_MS 20000

/* ---- Running kanalctl ---------------------------------------------------------------- */

typedef struct run {
	int status; /* exit status; -1 when killed or not started */
	char *out;  /* captured stdout, NUL-terminated */
	char *err;  /* captured stderr */
	int64_t elapsed_ms;
} run_t;

static void s_run_free(run_t *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof *r);
}

/* The environment for the child: ours without KANAL_* (a developer's settings must not
 * change what a test sees), plus `extra` ("NAME=value" strings, NULL-terminated). */
static char **s_child_env(const char *const *extra)
{
	size_t n = 0, k = 0, i;
	char **env;

	while (environ[n])
		n++;
	for (i = 0; extra && extra[i]; i++)
		n++;
	env = calloc(n + 1, sizeof *env);
	if (!env)
		return NULL;
	for (i = 0; environ[i]; i++)
		if (strncmp(environ[i], "KANAL_", 6) != 0)
			env[k++] = environ[i];
	for (i = 0; extra && extra[i]; i++)
		env[k++] = (char *)extra[i];
	return env;
}

/* Runs `kanalctl ARGS...` (NULL-terminated) in `dir`'s scratch files with the extra
 * environment `env` and standard input `input` (NULL: /dev/null). Waits at most
 * RUN_LIMIT_MS. Fills r; returns 0, or -1 when the program could not be started. */
static int s_run(run_t *r, const char *dir, const char *const *env, const char *input, ...)
{
	const char *args[32];
	char *out_path = NULL, *err_path = NULL, *in_path = NULL, **child_env = NULL;
	posix_spawn_file_actions_t fa;
	va_list ap;
	int64_t start, deadline;
	pid_t pid;
	int n = 0, rc, wstatus = 0;

	memset(r, 0, sizeof *r);
	r->status = -1;
	args[n++] = test_path("bin/kanalctl");
	va_start(ap, input);
	while (n < 31 && (args[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	args[n] = NULL;

	if (asprintf(&out_path, "%s/.stdout", dir) < 0 ||
	    asprintf(&err_path, "%s/.stderr", dir) < 0)
		goto done;
	if (input) {
		free(test_write_file(dir, ".stdin", input));
		if (asprintf(&in_path, "%s/.stdin", dir) < 0)
			goto done;
	}
	child_env = s_child_env(env);
	if (!child_env)
		goto done;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, in_path ? in_path : "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	start = test_now_ms();
	rc = posix_spawn(&pid, args[0], &fa, NULL, (char *const *)args, child_env);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		goto done;
	deadline = start + RUN_LIMIT_MS;
	for (;;) {
		pid_t w = waitpid(pid, &wstatus, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			goto done;
		if (test_now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &wstatus, 0);
			wstatus = -1;
			break;
		}
		usleep(5000);
	}
	r->elapsed_ms = test_now_ms() - start;
	if (wstatus != -1 && WIFEXITED(wstatus))
		r->status = WEXITSTATUS(wstatus);
	r->out = test_read_file(out_path, NULL);
	r->err = test_read_file(err_path, NULL);
done:
	if (!r->out)
		r->out = strdup("");
	if (!r->err)
		r->err = strdup("");
	free(child_env);
	free(out_path);
	free(err_path);
	free(in_path);
	return r->status == -1 ? -1 : 0;
}

#define CTL(r, f, ...) s_run((r), (f)->dir, NULL, NULL, __VA_ARGS__, (const char *)NULL)

/* True when text holds a clear (valid, unmasked) CPR number. */
static int s_has_clear_cpr(const char *text)
{
	size_t off, len;

	return text && kanal_cpr_find(text, strlen(text), &off, &len);
}

static int s_contains(const char *text, const char *part)
{
	return text && strstr(text, part) != NULL;
}

/* ---- Fixtures -------------------------------------------------------------------------- */

/* The absolute path of a built artefact, or NULL when it is not there. */
static const char *s_built(const char *rel, char *buf, size_t size)
{
	char abs_build[PATH_MAX];

	if (!realpath(test_build_dir(), abs_build))
		return NULL;
	snprintf(buf, size, "%s/%s", abs_build, rel);
	return access(buf, F_OK) == 0 ? buf : NULL;
}

/* The plugin the fixture's instances use: the bundled sink, else the test echo plugin. */
static const char *s_plugin(void)
{
	static char buf[PATH_MAX + 64];
	const char *p = s_built("plugins/sink.so", buf, sizeof buf);

	return p ? p : s_built("tests/plugins/tp_echo.so", buf, sizeof buf);
}

typedef struct fixture {
	char *dir;
	char *conf; /* dir/kanald.yaml */
} fixture_t;

static const char s_routes_a[] = "routes:\n"
				 "  - name: sick-child-to-calendar\n"
				 "    match:\n"
				 "      type: child.absence.*\n"
				 "      where: data.reason == \"sick\"\n"
				 "    to: [calendar, staffing]\n"
				 "    fallback: [letter]\n"
				 "default: deadletter\n";

static const char s_routes_b[] = "routes:\n"
				 "  - name: staff-absence\n"
				 "    match:\n"
				 "      type: staff.absence.>\n"
				 "    to: [staffing]\n";

/* Writes dir/kanald.yaml with three instances of the test plugin (plus `extra_instance`
 * text, may be ""), the routes folder with two files, and the given endpoints block. */
static void s_fixture(fixture_t *f, const char *extra_instance, const char *endpoints)
{
	char abs_plugins[PATH_MAX + 16], *text = NULL, *p;
	const char *plugin = s_plugin();

	memset(f, 0, sizeof *f);
	f->dir = test_tmpdir("kanalctl");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f->dir);
	CU_ASSERT_PTR_NOT_NULL_FATAL(plugin);
	if (!s_built("plugins", abs_plugins, sizeof abs_plugins))
		snprintf(abs_plugins, sizeof abs_plugins, "%s", "plugins");
	CU_ASSERT_FATAL(asprintf(&text,
				 "plugin_dir: %s\n"
				 "run_dir: run\n"
				 "state_dir: state\n"
				 "routes: routes\n"
				 "%s"
				 "instances:\n"
				 "  - name: calendar\n"
				 "    plugin: %s\n"
				 "  - name: staffing\n"
				 "    plugin: %s\n"
				 "  - name: letter\n"
				 "    plugin: %s\n"
				 "%s",
				 abs_plugins, endpoints ? endpoints : "", plugin, plugin, plugin,
				 extra_instance ? extra_instance : "") >= 0);
	f->conf = test_write_file(f->dir, "kanald.yaml", text);
	free(text);
	CU_ASSERT_FATAL(asprintf(&p, "%s/routes", f->dir) >= 0);
	mkdir(p, 0700);
	free(p);
	CU_ASSERT_FATAL(asprintf(&p, "%s/run", f->dir) >= 0);
	mkdir(p, 0700);
	free(p);
	free(test_write_file(f->dir, "routes/a.yaml", s_routes_a));
	free(test_write_file(f->dir, "routes/b.yaml", s_routes_b));
}

static void s_fixture_free(fixture_t *f)
{
	test_rmdir_r(f->dir);
	free(f->dir);
	free(f->conf);
	memset(f, 0, sizeof *f);
}

/* Writes an event file into the fixture and returns its malloc'd path. */
static char *s_event(fixture_t *f, const char *name, const char *json)
{
	return test_write_file(f->dir, name, json);
}

static const char s_sick_event[] =
	"{\"specversion\":\"1.0\",\"id\":\"e-sick-1\",\"source\":\"daycare-1\","
	"\"type\":\"child.absence.reported\",\"data\":{\"reason\":\"sick\",\"days\":2}}";

static const char s_holiday_event[] =
	"{\"specversion\":\"1.0\",\"id\":\"e-hol-1\",\"source\":\"daycare-1\","
	"\"type\":\"child.vacation.registered\",\"data\":{\"from\":\"2026-07-01\"}}";

/* ---- Stand-in kanald endpoints --------------------------------------------------------- */

/* One socket bound on an ephemeral port, served on a thread: ROUTER and REP answer each
 * request with `reply`; PUB publishes `topic`/`payload` every 20 ms. */
typedef struct fake {
	void *zctx;
	void *sock;
	int type;
	char endpoint[256];
	const char *reply;
	const char *topic;
	const char *payload;
	char *request; /* the last request's last frame */
	int requests;
	volatile int stop;
	pthread_t thread;
} fake_t;

static void *s_fake_main(void *arg)
{
	fake_t *fk = arg;
	zmq_pollitem_t item = { .socket = fk->sock, .events = ZMQ_POLLIN };
	int64_t end = test_now_ms() + RUN_LIMIT_MS;
	zmq_msg_t frames[8];
	int n, more, i;

	while (!fk->stop && test_now_ms() < end) {
		if (fk->type == ZMQ_PUB) {
			zmq_send(fk->sock, fk->topic, strlen(fk->topic), ZMQ_SNDMORE);
			zmq_send(fk->sock, fk->payload, strlen(fk->payload), 0);
			usleep(20000);
			continue;
		}
		if (zmq_poll(&item, 1, 20) <= 0)
			continue;
		/* Read the whole message; a ROUTER's envelope is sent back in front of the reply. */
		n = 0;
		more = 1;
		while (more && n < 8) {
			zmq_msg_init(&frames[n]);
			zmq_msg_recv(&frames[n], fk->sock, 0);
			more = zmq_msg_more(&frames[n]);
			n++;
		}
		free(fk->request);
		fk->request = strndup(zmq_msg_data(&frames[n - 1]), zmq_msg_size(&frames[n - 1]));
		fk->requests++;
		for (i = 0; i < n - 1; i++)
			zmq_msg_send(&frames[i], fk->sock, ZMQ_SNDMORE);
		zmq_msg_close(&frames[n - 1]);
		zmq_send(fk->sock, fk->reply, strlen(fk->reply), 0);
	}
	return NULL;
}

static void s_fake_start(fake_t *fk, int type)
{
	size_t len = sizeof fk->endpoint;
	int linger = 0;

	fk->type = type;
	fk->zctx = zmq_ctx_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(fk->zctx);
	fk->sock = zmq_socket(fk->zctx, type);
	CU_ASSERT_PTR_NOT_NULL_FATAL(fk->sock);
	zmq_setsockopt(fk->sock, ZMQ_LINGER, &linger, sizeof linger);
	CU_ASSERT_EQUAL_FATAL(zmq_bind(fk->sock, "tcp://127.0.0.1:*"), 0);
	zmq_getsockopt(fk->sock, ZMQ_LAST_ENDPOINT, fk->endpoint, &len);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&fk->thread, NULL, s_fake_main, fk), 0);
}

/* Stops the thread and closes the socket; fk->request stays for the test to check (and
 * free). */
static void s_fake_stop(fake_t *fk)
{
	fk->stop = 1;
	pthread_join(fk->thread, NULL);
	zmq_close(fk->sock);
	zmq_ctx_term(fk->zctx);
}

/* An endpoint where nothing listens: bind an ephemeral port, note it, let it go. */
static void s_dead_endpoint(char *buf, size_t size)
{
	void *zctx = zmq_ctx_new(), *sock = zmq_socket(zctx, ZMQ_REP);
	int linger = 0;

	zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
	zmq_bind(sock, "tcp://127.0.0.1:*");
	zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, buf, &size);
	zmq_close(sock);
	zmq_ctx_term(zctx);
}

/* ---- help and usage ------------------------------------------------------------------- */

static void test_help_lists_every_command(void)
{
	static const char *const cmds[] = { "check",  "explain", "validate",    "send", "tail",
					    "reload", "status",  "plugin info", "test" };
	fixture_t f;
	run_t r;
	size_t i;

	s_fixture(&f, "", NULL);
	CTL(&r, &f, "--help");
	CU_ASSERT_EQUAL(r.status, 0);
	for (i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		CU_ASSERT(s_contains(r.out, cmds[i]));
	s_run_free(&r);

	CTL(&r, &f, "help", "tail");
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out, "--count"));
	s_run_free(&r);

	CTL(&r, &f, "frobnicate");
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "no command 'frobnicate'"));
	s_run_free(&r);

	/* A flag that means nothing to the command is refused, not silently ignored. */
	CTL(&r, &f, "check", "-c", f.conf, "--count", "3");
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "--count does not apply"));
	s_run_free(&r);
	s_fixture_free(&f);
}

/* ---- test (route unit tests) ------------------------------------------------------------- */

static const char s_test_routes[] =
	"routes:\n"
	"  - name: vendor-absence\n"
	"    match:\n"
	"      type: vendor.absence\n"
	"      where: data.fravaer startswith \"syg\"\n"
	"    transform: '{child: .barn.navn, reason: \"sick\"}'\n"
	"    to: [calendar, {instance: staffing, transform: '{name: .barn.navn}'}]\n"
	"default: deadletter\n";

/* Cases that hold; then the same cases with wrong expectations, which must fail with a
 * readable account: the destination sets side by side, a line diff of the data. */
static const char s_test_ok[] = "routes: vendor.yaml\n"
				"tests:\n"
				"  - name: a sick child goes to both, reshaped\n"
				"    event:\n"
				"      specversion: \"1.0\"\n"
				"      id: v-1\n"
				"      source: /vendor\n"
				"      type: vendor.absence\n"
				"      data: {barn: {navn: Ida}, fravaer: syg}\n"
				"    routes: vendor-absence\n"
				"    to: [staffing, calendar]\n"
				"    data:\n"
				"      calendar: {child: Ida, reason: sick}\n"
				"      staffing: {name: Ida}\n"
				"  - name: a holiday matches nothing\n"
				"    event_file: holiday.json\n"
				"    to: deadletter\n";

static const char s_test_bad[] =
	"routes: vendor.yaml\n"
	"tests:\n"
	"  - name: wrong expectations\n"
	"    event: {specversion: \"1.0\", id: v-2, source: /vendor, type: vendor.absence,\n"
	"            data: {barn: {navn: Bo}, fravaer: syg}}\n"
	"    to: [calendar]\n"
	"    data:\n"
	"      calendar: {child: Ida, reason: sick}\n";

static void test_test_runs_route_cases_and_diffs_failures(void)
{
	fixture_t f;
	run_t r;
	char *ok, *bad;

	s_fixture(&f, "", NULL);
	free(test_write_file(f.dir, "vendor.yaml", s_test_routes));
	free(test_write_file(f.dir, "holiday.json", s_holiday_event));
	ok = test_write_file(f.dir, "ok.yaml", s_test_ok);
	bad = test_write_file(f.dir, "bad.yaml", s_test_bad);

	CTL(&r, &f, "test", "-c", f.conf, ok);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out, "ok   "));
	CU_ASSERT(s_contains(r.out, "ok.yaml:3: a sick child goes to both, reshaped\n"));
	CU_ASSERT(s_contains(r.out, "ok.yaml:15: a holiday matches nothing\n"));
	CU_ASSERT(s_contains(r.out, "2 passed, 0 failed"));
	s_run_free(&r);

	CTL(&r, &f, "test", "-c", f.conf, ok, bad);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.out, "FAIL "));
	CU_ASSERT(s_contains(r.out, "bad.yaml:3: wrong expectations\n"));
	CU_ASSERT(s_contains(r.out, "to: expected calendar\n"));
	CU_ASSERT(s_contains(r.out, "actual   calendar, staffing\n"));
	CU_ASSERT(s_contains(r.out, "data for 'calendar' differs:"));
	CU_ASSERT(s_contains(r.out, "-   \"child\": \"Ida\","));
	CU_ASSERT(s_contains(r.out, "+   \"child\": \"Bo\","));
	CU_ASSERT(s_contains(r.out, "    \"reason\": \"sick\""));
	CU_ASSERT(s_contains(r.out, "2 passed, 1 failed"));
	s_run_free(&r);
	free(ok);
	free(bad);
	s_fixture_free(&f);
}

/* The shipped routing files pass their shipped tests (routes/tests/): every one of them. */
static void test_shipped_route_tests_pass(void)
{
	char root[PATH_MAX], conf[PATH_MAX + 32], tests[PATH_MAX + 32], payslips[PATH_MAX + 32];
	fixture_t f;
	run_t r;

	CU_ASSERT_PTR_NOT_NULL_FATAL(realpath(".", root));
	snprintf(conf, sizeof conf, "%s/conf/kanald.yaml", root);
	snprintf(tests, sizeof tests, "%s/routes/tests/municipal.yaml", root);
	snprintf(payslips, sizeof payslips, "%s/routes/tests/payslips.yaml", root);
	CU_ASSERT_FATAL(access(tests, F_OK) == 0);
	CU_ASSERT_FATAL(access(payslips, F_OK) == 0);
	s_fixture(&f, "", NULL);
	CTL(&r, &f, "test", "-c", conf, tests, payslips);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out, " passed, 0 failed"));
	CU_ASSERT(!s_contains(r.out, "FAIL"));
	/* Both files' cases ran, not just the first file's. */
	CU_ASSERT(s_contains(r.out, "/routes/tests/municipal.yaml:"));
	CU_ASSERT(s_contains(r.out, "/routes/tests/payslips.yaml:"));
	CU_ASSERT(!s_has_clear_cpr(r.out));
	s_run_free(&r);
	s_fixture_free(&f);
}

static void test_test_reports_bad_files(void)
{
	fixture_t f;
	run_t r;
	char *bad;

	s_fixture(&f, "", NULL);
	bad = test_write_file(f.dir, "t.yaml", "tests:\n  - name: x\n    evnt: {}\n");
	CTL(&r, &f, "test", "-c", f.conf, bad);
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "t.yaml:3:5: error: unknown key 'evnt' (did you mean "
				    "'event'?)"));
	s_run_free(&r);
	free(bad);

	/* A case without an expectation cannot pass. */
	bad = test_write_file(f.dir, "t2.yaml",
			      "tests:\n  - name: vague\n    event_file: "
			      "none.json\n");
	CTL(&r, &f, "test", "-c", f.conf, bad);
	CU_ASSERT_EQUAL(r.status, 1);
	s_run_free(&r);
	free(bad);
	s_fixture_free(&f);
}

/* ---- check ---------------------------------------------------------------------------- */

static void test_check_valid_config_prints_summary(void)
{
	fixture_t f;
	run_t r;
	char *expected = NULL;

	s_fixture(&f, "", NULL);
	CTL(&r, &f, "check", "-c", f.conf);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_FATAL(asprintf(&expected,
				 "%s: 3 instances; routes: 2 routes from 2 files, "
				 "default \u2192 deadletter: ok\n",
				 f.conf) >= 0);
	CU_ASSERT_STRING_EQUAL(r.out, expected);
	CU_ASSERT_STRING_EQUAL(r.err, "");
	free(expected);
	s_run_free(&r);
	s_fixture_free(&f);
}

/* A type in the message catalogue (routes/message-types.list) that no route takes is
 * warned about at its line — its events would wait in the default destination — and the
 * check still passes; a routed type is not mentioned. */
static void test_check_warns_about_catalogued_type_without_route(void)
{
	fixture_t f;
	run_t r;
	char *expected = NULL;

	s_fixture(&f, "", NULL);
	free(test_write_file(f.dir, "routes/message-types.list",
			     "# what the connectors emit\n"
			     "child.absence.reported\n"
			     "\n"
			     "child.checkin   # the day overview\n"));
	CTL(&r, &f, "check", "-c", f.conf);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_FATAL(asprintf(&expected,
				 "%s/routes/message-types.list:4:1: warning: type "
				 "'child.checkin' is in the catalogue but no route takes it: "
				 "such events go to the default 'deadletter'",
				 f.dir) >= 0);
	CU_ASSERT(s_contains(r.err, expected));
	CU_ASSERT(!s_contains(r.err, "'child.absence.reported'"));
	CU_ASSERT(s_contains(r.out, ": ok"));
	free(expected);
	s_run_free(&r);
	s_fixture_free(&f);
}

static void test_check_finds_config_through_env(void)
{
	fixture_t f;
	run_t r;
	char *env_conf = NULL;
	const char *env[2];

	s_fixture(&f, "", NULL);
	CU_ASSERT_FATAL(asprintf(&env_conf, "KANAL_CONF=%s", f.conf) >= 0);
	env[0] = env_conf;
	env[1] = NULL;
	s_run(&r, f.dir, env, NULL, "check", (const char *)NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out, ": ok"));
	s_run_free(&r);

	/* A missing file named by -c says so and which option named it. */
	CTL(&r, &f, "check", "-c", "/nonexistent/kanald.yaml");
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "/nonexistent/kanald.yaml (given by -c)"));
	s_run_free(&r);
	free(env_conf);
	s_fixture_free(&f);
}

static void test_check_unknown_instance_points_at_line(void)
{
	fixture_t f;
	run_t r;
	char *x_path, *expected = NULL;

	s_fixture(&f, "", NULL);
	x_path = test_write_file(f.dir, "routes/x.yaml",
				 "routes:\n"
				 "  - name: staff-to-calendar\n"
				 "    match:\n"
				 "      type: staff.absence.registered\n"
				 "    to: [calender]\n");
	CTL(&r, &f, "check", "-c", f.conf);
	CU_ASSERT_EQUAL(r.status, 1);
	/* Line 5, column 10: the misspelt name inside the flow list. */
	CU_ASSERT_FATAL(asprintf(&expected, "routes/x.yaml:5:10: error: unknown instance "
					    "'calender'") >= 0);
	CU_ASSERT(s_contains(r.err, expected));
	/* The offending line is quoted under the error, as compilers do. */
	CU_ASSERT(s_contains(r.err, "    to: [calender]"));
	CU_ASSERT(s_contains(r.err, "check failed: 1 error"));
	CU_ASSERT_STRING_EQUAL(r.out, "");
	s_run_free(&r);

	/* Routes given on the command line replace the config's: only x.yaml is read. */
	CTL(&r, &f, "check", "-c", f.conf, x_path);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.err, expected));
	s_run_free(&r);

	free(expected);
	free(x_path);
	s_fixture_free(&f);
}

static void test_check_validates_instance_options(void)
{
	fixture_t f;
	run_t r;

	/* An option the plugin does not declare, a value its table does not allow and one of
	 * the wrong type: each reported at its place in kanald.yaml, all in one go. */
	s_fixture(&f,
		  "  - name: extra\n"
		  "    plugin: calendar-nonexistent-plugin-name\n"
		  "  - name: noisy\n"
		  "    plugin: PLUGIN\n"
		  "    options:\n"
		  "      colour: blue\n"
		  "      format: xml\n"
		  "      retry_after: soon\n",
		  NULL);
	/* s_fixture cannot substitute inside extra text, so rewrite the file here. */
	{
		char *text = test_read_file(f.conf, NULL), *at, *fixed = NULL;
		CU_ASSERT_PTR_NOT_NULL_FATAL(text);
		at = strstr(text, "PLUGIN");
		CU_ASSERT_PTR_NOT_NULL_FATAL(at);
		*at = '\0';
		CU_ASSERT_FATAL(asprintf(&fixed, "%s%s%s", text, s_plugin(), at + 6) >= 0);
		free(test_write_file(f.dir, "kanald.yaml", fixed));
		free(fixed);
		free(text);
	}
	CTL(&r, &f, "check", "-c", f.conf);
	CU_ASSERT_EQUAL(r.status, 1);
	/* kanald.yaml line 12 is "  - name: extra"; line 17 holds the unknown option. */
	CU_ASSERT(s_contains(r.err, "kanald.yaml:12:"));
	CU_ASSERT(s_contains(r.err, "instance 'extra'"));
	CU_ASSERT(s_contains(r.err, "kanald.yaml:17:7: error:"));
	CU_ASSERT(s_contains(r.err, "colour"));
	if (strstr(s_plugin(), "plugins/sink.so")) {
		CU_ASSERT(s_contains(r.err, "kanald.yaml:18:7: error: instance 'noisy': option "
					    "'format' must be one of json, line; got 'xml'"));
		CU_ASSERT(s_contains(r.err,
				     "kanald.yaml:19:7: error: instance 'noisy': option "
				     "'retry_after' expects a duration like 250ms, 2s or 5m, got "
				     "'soon'"));
		CU_ASSERT(s_contains(r.err, "check failed: 4 errors"));
	}
	s_run_free(&r);
	s_fixture_free(&f);
}

/* A bundled connector's ranges and choices are in its options table: kanalctl check reports
 * each bad one at its line, before anything starts (issue 11). */
static void test_check_reports_a_connectors_ranges_at_their_lines(void)
{
	char buf[PATH_MAX + 64], *text = NULL;
	const char *staff = s_built("plugins/staff.so", buf, sizeof buf);
	fixture_t f;
	run_t r;

	CU_ASSERT_PTR_NOT_NULL_FATAL(staff);
	s_fixture(&f, "", NULL);
	CU_ASSERT_FATAL(asprintf(&text,
				 "instances:\n"
				 "  - name: hr\n"
				 "    plugin: %s\n"
				 "    options:\n"
				 "      base_url: http://127.0.0.1:9\n"
				 "      page_size: 0\n"
				 "      unknown_codes: drop\n"
				 "      timeout: 0s\n",
				 staff) >= 0);
	free(test_write_file(f.dir, "kanald.yaml", text));
	free(text);
	CTL(&r, &f, "check", "-c", f.conf);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.err, "kanald.yaml:6:7: error: instance 'hr': option 'page_size' "
				    "must be at least 1"));
	CU_ASSERT(s_contains(r.err, "kanald.yaml:7:7: error: instance 'hr': option "
				    "'unknown_codes' must be one of emit, skip; got 'drop'"));
	CU_ASSERT(s_contains(r.err, "kanald.yaml:8:7: error: instance 'hr': option 'timeout' "
				    "must be at least 1ms"));
	if (!s_contains(r.err, "page_size"))
		fprintf(stderr, "%s\n", r.err);
	s_run_free(&r);
	s_fixture_free(&f);
}

static void test_check_reports_config_errors(void)
{
	fixture_t f;
	run_t r;

	s_fixture(&f, "", NULL);
	free(test_write_file(f.dir, "kanald.yaml", "instances:\n  - name: a\n    plugn: sink\n"));
	CTL(&r, &f, "check", "-c", f.conf);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.err, "kanald.yaml:3:"));
	CU_ASSERT(s_contains(r.err, "check failed"));
	CU_ASSERT_STRING_EQUAL(r.out, "");
	s_run_free(&r);
	s_fixture_free(&f);
}

/* ---- explain -------------------------------------------------------------------------- */

static void test_explain_names_route_and_destinations(void)
{
	fixture_t f;
	run_t r;
	char *ev;

	s_fixture(&f, "", NULL);
	ev = s_event(&f, "sick.json", s_sick_event);
	CTL(&r, &f, "explain", "-c", f.conf, ev);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out, "e-sick-1"));
	CU_ASSERT(s_contains(r.out, "sick-child-to-calendar"));
	CU_ASSERT(s_contains(r.out, "calendar"));
	CU_ASSERT(s_contains(r.out, "staffing"));
	CU_ASSERT(s_contains(r.out, "letter"));
	s_run_free(&r);

	/* Standard input works the same. */
	s_run(&r, f.dir, NULL, s_sick_event, "explain", "-c", f.conf, "-", (const char *)NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out, "sick-child-to-calendar"));
	s_run_free(&r);
	free(ev);
	s_fixture_free(&f);
}

static void test_explain_unmatched_goes_to_default(void)
{
	fixture_t f;
	run_t r;
	char *ev, *batch = NULL;

	s_fixture(&f, "", NULL);
	ev = s_event(&f, "holiday.json", s_holiday_event);
	CTL(&r, &f, "explain", "-c", f.conf, ev);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.out, "deadletter"));
	s_run_free(&r);
	free(ev);

	/* A batch explains each element; one unmatched element makes the status 1. */
	CU_ASSERT_FATAL(asprintf(&batch, "[%s,%s]", s_sick_event, s_holiday_event) >= 0);
	ev = s_event(&f, "batch.json", batch);
	CTL(&r, &f, "explain", "-c", f.conf, ev);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.out, "batch.json[0]"));
	CU_ASSERT(s_contains(r.out, "batch.json[1]"));
	CU_ASSERT(s_contains(r.out, "e-sick-1"));
	CU_ASSERT(s_contains(r.out, "e-hol-1"));
	s_run_free(&r);
	free(batch);
	free(ev);

	/* An unreadable event is an error (2), not a routing answer. */
	ev = s_event(&f, "broken.json", "{\"specversion\":");
	CTL(&r, &f, "explain", "-c", f.conf, ev);
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "broken.json"));
	s_run_free(&r);
	free(ev);
	s_fixture_free(&f);
}

static void test_explain_never_prints_a_cpr_number(void)
{
	fixture_t f;
	run_t r;
	char *ev;

	s_fixture(&f, "", NULL);
	/* The failing `where` comparison quotes the value found: here a CPR number. */
	ev = s_event(&f, "cpr.json",
		     "{\"specversion\":\"1.0\",\"id\":\"e-cpr-1\",\"source\":\"daycare-1\","
		     "\"type\":\"child.absence.reported\",\"data\":{\"reason\":\"1503851233\"}}");
	CTL(&r, &f, "explain", "-c", f.conf, ev);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.out, "e-cpr-1"));
	CU_ASSERT_FALSE(s_has_clear_cpr(r.out));
	CU_ASSERT_FALSE(s_has_clear_cpr(r.err));
	s_run_free(&r);
	free(ev);
	s_fixture_free(&f);
}

/* ---- validate ------------------------------------------------------------------------- */

static void test_validate_good_and_bad_files(void)
{
	fixture_t f;
	run_t r;
	char *good, *bad, *expected = NULL;

	s_fixture(&f, "", NULL);
	good = s_event(&f, "good.json", s_sick_event);
	bad = s_event(&f, "bad.json",
		      "{\"specversion\":\"1.0\",\"id\":\"e2\",\"source\":\"x\","
		      "\"type\":\"child.absence.reported\",\"time\":\"yesterday\"}");
	CTL(&r, &f, "validate", good);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_FATAL(asprintf(&expected,
				 "%s: valid (id e-sick-1, type child.absence.reported)\n",
				 good) >= 0);
	CU_ASSERT_STRING_EQUAL(r.out, expected);
	free(expected);
	s_run_free(&r);

	CTL(&r, &f, "validate", good, bad);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT_FATAL(asprintf(&expected, "%s: invalid: ", bad) >= 0);
	CU_ASSERT(s_contains(r.out, expected));
	CU_ASSERT(s_contains(r.out, "time"));
	CU_ASSERT(s_contains(r.out, "valid (id e-sick-1"));
	free(expected);
	s_run_free(&r);

	/* A file that cannot be read is another kind of failure. */
	CTL(&r, &f, "validate", "/nonexistent/event.json");
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "/nonexistent/event.json"));
	s_run_free(&r);
	free(good);
	free(bad);
	s_fixture_free(&f);
}

static void test_validate_batch_and_stdin(void)
{
	fixture_t f;
	run_t r;
	char *text = NULL, *path;

	s_fixture(&f, "", NULL);
	CU_ASSERT_FATAL(asprintf(&text, "[%s,%s]", s_sick_event, s_holiday_event) >= 0);
	path = s_event(&f, "batch.json", text);
	CTL(&r, &f, "validate", path);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out, "batch.json[0]: valid (id e-sick-1"));
	CU_ASSERT(s_contains(r.out, "batch.json[1]: valid (id e-hol-1"));
	s_run_free(&r);
	free(path);
	free(text);

	s_run(&r, f.dir, NULL, "{\"specversion\":\"1.0\",\"source\":\"x\",\"type\":\"a.b\"}",
	      "validate", "-", (const char *)NULL);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.out, "<stdin>: invalid: "));
	CU_ASSERT(s_contains(r.out, "id"));
	s_run_free(&r);
	s_fixture_free(&f);
}

static void test_validate_never_prints_a_cpr_number(void)
{
	fixture_t f;
	run_t r;
	char *bad;

	s_fixture(&f, "", NULL);
	bad = s_event(&f, "cpr.json",
		      "{\"specversion\":\"1.0\",\"id\":\"e3\",\"source\":\"x\","
		      "\"type\":\"child.absence.reported\",\"time\":\"1503851233\"}");
	CTL(&r, &f, "validate", bad);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.out, "invalid"));
	CU_ASSERT_FALSE(s_has_clear_cpr(r.out));
	CU_ASSERT_FALSE(s_has_clear_cpr(r.err));
	s_run_free(&r);
	free(bad);
	s_fixture_free(&f);
}

/* ---- plugin info ---------------------------------------------------------------------- */

static void test_plugin_info_lists_options(void)
{
	const kanal_plugin_t *desc;
	const kanal_option_t *opt;
	fixture_t f;
	run_t r;
	void *handle;

	s_fixture(&f, "", NULL);
	CTL(&r, &f, "plugin", "info", s_plugin());
	CU_ASSERT_EQUAL(r.status, 0);
	/* Every option of the plugin's own table is documented, and its name is shown. */
	handle = dlopen(s_plugin(), RTLD_NOW | RTLD_LOCAL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(handle);
	desc = dlsym(handle, KANAL_PLUGIN_SYMBOL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(desc);
	CU_ASSERT(s_contains(r.out, desc->name));
	for (opt = desc->options; opt && opt->name; opt++)
		CU_ASSERT(s_contains(r.out, opt->name));
	dlclose(handle);
	s_run_free(&r);
	s_fixture_free(&f);
}

static void test_plugin_info_refuses_other_abi_major(void)
{
	char buf[PATH_MAX + 64];
	const char *so = s_built("tests/plugins/tp_abi_major.so", buf, sizeof buf);
	fixture_t f;
	run_t r;

	if (!so) {
		CU_FAIL("build/tests/plugins/tp_abi_major.so is missing: run make test");
		return;
	}
	s_fixture(&f, "", NULL);
	CTL(&r, &f, "plugin", "info", so);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.err, "tp_abi_major.so"));
	CU_ASSERT(s_contains(r.err, "ABI"));
	CU_ASSERT_STRING_EQUAL(r.out, "");
	s_run_free(&r);

	CTL(&r, &f, "plugin", "info", "/nonexistent/x.so");
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.err, "/nonexistent/x.so"));
	s_run_free(&r);
	s_fixture_free(&f);
}

/* ---- send ----------------------------------------------------------------------------- */

static void test_send_without_broker_times_out_clearly(void)
{
	fixture_t f;
	run_t r;
	char endpoint[256], *ev, *expected = NULL;

	s_fixture(&f, "", NULL);
	s_dead_endpoint(endpoint, sizeof endpoint);
	ev = s_event(&f, "sick.json", s_sick_event);
	CTL(&r, &f, "send", "--gateway", endpoint, "--timeout", "300", ev);
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT_FATAL(asprintf(&expected,
				 "no reply from the gateway at %s within 300 ms: "
				 "is kanald running? (kanalctl status)",
				 endpoint) >= 0);
	CU_ASSERT(s_contains(r.err, expected));
	/* It waited the timeout, and not much longer. */
	CU_ASSERT(r.elapsed_ms >= 300);
	CU_ASSERT(r.elapsed_ms < 3000);
	s_run_free(&r);
	free(expected);
	free(ev);
	s_fixture_free(&f);
}

static void test_send_prints_each_result(void)
{
	fake_t gw = { .reply = "{\"results\":["
			       "{\"id\":\"e1\",\"status\":\"accepted\"},"
			       "{\"id\":\"e2\",\"status\":\"invalid\","
			       "\"reason\":\"attribute 'time': not RFC 3339\"},"
			       "{\"id\":\"e3\",\"status\":\"busy\",\"retry_after_ms\":500},"
			       "{\"status\":\"invalid\",\"reason\":\"batch rejected\"}]}" };
	fixture_t f;
	run_t r;
	char *ev;

	s_fixture(&f, "", NULL);
	s_fake_start(&gw, ZMQ_ROUTER);
	ev = s_event(&f, "four.json", "[1,2,3,4]");
	CTL(&r, &f, "send", "--gateway", gw.endpoint, ev);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.out, "e1: accepted\n"));
	CU_ASSERT(s_contains(r.out, "e2: invalid: attribute 'time': not RFC 3339\n"));
	CU_ASSERT(s_contains(r.out, "e3: busy (retry after 500 ms)\n"));
	/* An event without a readable id is named by its place in the file. */
	CU_ASSERT(s_contains(r.out, "four.json[3]: invalid: batch rejected\n"));
	s_run_free(&r);
	s_fake_stop(&gw);
	/* The file was sent as it is, in one request. */
	CU_ASSERT_EQUAL(gw.requests, 1);
	CU_ASSERT_STRING_EQUAL(gw.request, "[1,2,3,4]");
	free(gw.request);
	free(ev);
	s_fixture_free(&f);
}

static void test_send_finds_gateway_in_endpoints_file(void)
{
	fake_t gw = { .reply = "{\"results\":[{\"id\":\"e-sick-1\",\"status\":\"accepted\"}]}" };
	fixture_t f;
	run_t r;
	char *line = NULL, *ev;

	/* The configured endpoint is an ephemeral port: only the endpoints file can tell. */
	s_fixture(&f, "", "endpoints:\n  gateway: tcp://127.0.0.1:0\n");
	ev = s_event(&f, "sick.json", s_sick_event);

	CTL(&r, &f, "send", "-c", f.conf, "--timeout", "300", ev);
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "is kanald running?"));
	s_run_free(&r);

	s_fake_start(&gw, ZMQ_ROUTER);
	CU_ASSERT_FATAL(
		asprintf(&line, "stream=tcp://127.0.0.1:1\ngateway=%s\npid=1\n", gw.endpoint) >= 0);
	free(test_write_file(f.dir, "run/endpoints", line));
	CTL(&r, &f, "send", "-c", f.conf, ev);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_STRING_EQUAL(r.out, "e-sick-1: accepted\n");
	s_run_free(&r);
	s_fake_stop(&gw);
	CU_ASSERT_EQUAL(gw.requests, 1);
	free(gw.request);
	free(line);

	/* A file left behind by a kanald that died: the note says so before the timeout. */
	{
		char dead[256];
		pid_t gone = fork();
		if (gone == 0)
			_exit(0);
		CU_ASSERT_FATAL(gone > 0);
		waitpid(gone, NULL, 0);
		s_dead_endpoint(dead, sizeof dead);
		CU_ASSERT_FATAL(asprintf(&line, "gateway=%s\npid=%ld\n", dead, (long)gone) >= 0);
		free(test_write_file(f.dir, "run/endpoints", line));
		CTL(&r, &f, "send", "-c", f.conf, "--timeout", "200", ev);
		CU_ASSERT_EQUAL(r.status, 2);
		CU_ASSERT(s_contains(r.err, "which is not running"));
		CU_ASSERT(s_contains(r.err, dead));
		s_run_free(&r);
		free(line);
	}
	free(ev);
	s_fixture_free(&f);
}

static void test_send_passes_the_file_unchanged(void)
{
	fake_t gw = { .reply = "{\"results\":[{\"id\":\"e-sick-1\",\"status\":\"duplicate\"}]}" };
	fixture_t f;
	run_t r;

	s_fixture(&f, "", NULL);
	s_fake_start(&gw, ZMQ_ROUTER);
	s_run(&r, f.dir, NULL, s_sick_event, "send", "--gateway", gw.endpoint, "-",
	      (const char *)NULL);
	/* A duplicate was accepted before: the bus owns it, so that is success. */
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out, "e-sick-1: duplicate"));
	s_run_free(&r);
	s_fake_stop(&gw);
	CU_ASSERT_STRING_EQUAL(gw.request, s_sick_event);
	free(gw.request);
	s_fixture_free(&f);
}

/* ---- reload and status ----------------------------------------------------------------- */

static void test_reload_failure_prints_errors(void)
{
	fake_t admin = { .reply = "{\"ok\":false,\"errors\":["
				  "\"routes/x.yaml:5:10: error: unknown instance 'calender'\"]}" };
	fixture_t f;
	run_t r;

	s_fixture(&f, "", NULL);
	s_fake_start(&admin, ZMQ_REP);
	CTL(&r, &f, "reload", "--admin", admin.endpoint);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.err, "routes/x.yaml:5:10: error: unknown instance 'calender'"));
	CU_ASSERT(s_contains(r.err, "old routing table stays in force"));
	s_run_free(&r);
	s_fake_stop(&admin);
	CU_ASSERT_EQUAL(admin.requests, 1);
	CU_ASSERT_STRING_EQUAL(admin.request, "{\"cmd\":\"reload\"}");
	free(admin.request);
	s_fixture_free(&f);
}

static void test_reload_and_status_succeed(void)
{
	fake_t admin = { .reply = "{\"ok\":true,\"journal\":{\"sync\":\"process\"},"
				  "\"instances\":[{\"name\":\"calendar\",\"state\":\"running\"}],"
				  "\"routes\":{\"count\":2,\"files\":[\"a.yaml\",\"b.yaml\"]},"
				  "\"note\":\"citizen 1503851233\"}" };
	fixture_t f;
	run_t r;
	char *env_admin = NULL;
	const char *env[2];

	s_fixture(&f, "", NULL);
	s_fake_start(&admin, ZMQ_REP);
	CU_ASSERT_FATAL(asprintf(&env_admin, "KANAL_ADMIN=%s", admin.endpoint) >= 0);
	env[0] = env_admin;
	env[1] = NULL;
	s_run(&r, f.dir, env, NULL, "reload", (const char *)NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out, "reload: ok"));
	s_run_free(&r);

	s_run(&r, f.dir, env, NULL, "status", (const char *)NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out, "journal:\n  sync: process\n"));
	CU_ASSERT(s_contains(r.out, "instances:\n  - name: calendar\n    state: running\n"));
	CU_ASSERT(s_contains(r.out, "  files: a.yaml, b.yaml\n"));
	CU_ASSERT(s_contains(r.out, "note: citizen 150385-XXXX") ||
		  s_contains(r.out, "note: citizen 150385XXXX"));
	CU_ASSERT_FALSE(s_has_clear_cpr(r.out));
	s_run_free(&r);
	s_fake_stop(&admin);
	CU_ASSERT_EQUAL(admin.requests, 2);
	CU_ASSERT_STRING_EQUAL(admin.request, "{\"cmd\":\"status\"}");
	free(admin.request);
	free(env_admin);
	s_fixture_free(&f);
}

static void test_status_without_broker_times_out(void)
{
	fixture_t f;
	run_t r;
	char endpoint[256];

	s_fixture(&f, "", NULL);
	s_dead_endpoint(endpoint, sizeof endpoint);
	CTL(&r, &f, "status", "--admin", endpoint, "--timeout", "200");
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "no reply from the admin endpoint at"));
	CU_ASSERT(r.elapsed_ms < 3000);
	s_run_free(&r);
	s_fixture_free(&f);
}

/* ---- tail ----------------------------------------------------------------------------- */

static void test_tail_prints_summary_lines_masked(void)
{
	fake_t pub = {
		.topic = "dead child.absence.reported",
		.payload = "{\"kind\":\"dead\",\"ts\":\"2026-11-24T10:00:00.123Z\","
			   "\"event\":{\"id\":\"e-sick-1\",\"type\":\"child.absence.reported\"},"
			   "\"route\":\"sick-child\",\"destination\":\"calendar\","
			   "\"delivery\":42,\"attempt\":3,"
			   "\"error\":\"no calendar for 1503851233\"}"
	};
	fixture_t f;
	run_t r;

	s_fixture(&f, "", NULL);
	s_fake_start(&pub, ZMQ_PUB);
	CTL(&r, &f, "tail", "--stream", pub.endpoint, "--count", "2", "--timeout", "5000", "dead");
	CU_ASSERT_EQUAL(r.status, 0);
	/* Two lines, each with the time, the topic and the summary; the CPR number masked. */
	CU_ASSERT(s_contains(r.out, ".123  dead child.absence.reported  id=e-sick-1 "
				    "route=sick-child destination=calendar attempt=3 "
				    "error=\"no calendar for 150385XXXX\"\n"));
	CU_ASSERT(strchr(r.out, '\n') && strchr(strchr(r.out, '\n') + 1, '\n'));
	CU_ASSERT_FALSE(s_has_clear_cpr(r.out));
	s_run_free(&r);

	CTL(&r, &f, "tail", "--stream", pub.endpoint, "--count", "1", "--json");
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out, "{\"kind\":\"dead\""));
	CU_ASSERT_FALSE(s_has_clear_cpr(r.out));
	s_run_free(&r);

	/* A prefix nothing is published under: silence until the timeout, status 1. */
	CTL(&r, &f, "tail", "--stream", pub.endpoint, "--timeout", "300", "delivered");
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT_STRING_EQUAL(r.out, "");
	CU_ASSERT(s_contains(r.err, "nothing on the event stream"));
	s_run_free(&r);
	s_fake_stop(&pub);
	s_fixture_free(&f);
}

/* ---- dlq ------------------------------------------------------------------------------ */

/* The last request a stand-in admin socket received, parsed; NULL when it is not JSON. */
static json_t *s_request_json(const fake_t *fk)
{
	return fk->request ? json_loads(fk->request, 0, NULL) : NULL;
}

static const char s_dlq_list_reply[] =
	"{\"ok\":true,\"items\":["
	"{\"id\":12,\"dead_at\":\"2026-11-24T10:00:00.123Z\",\"route\":\"letters\","
	"\"destination\":\"digital-post\",\"type\":\"post.letter.send\",\"event_id\":\"l-7\","
	"\"source\":\"case-system\",\"reason\":\"rejected\",\"attempts\":1,"
	"\"error\":\"no mailbox for 1503851233\"},"
	"{\"id\":9,\"dead_at\":\"2026-11-23T23:30:00Z\",\"route\":\"sick-child\","
	"\"destination\":\"calendar\",\"type\":\"child.absence.reported\",\"event_id\":\"s-1\","
	"\"source\":\"daycare-1\",\"reason\":\"retry budget spent\",\"attempts\":10,"
	"\"error\":\"calendar unreachable\\nsecond line\"}]}";

static void test_dlq_list_prints_a_masked_table(void)
{
	fake_t admin = { .reply = s_dlq_list_reply };
	const char *env[] = { "TZ=CET-1", NULL };
	fixture_t f;
	run_t r;
	json_t *req;

	s_fixture(&f, "", NULL);
	s_fake_start(&admin, ZMQ_REP);
	s_run(&r, f.dir, env, NULL, "dlq", "list", "--admin", admin.endpoint, "--route", "letters",
	      "--type", "post.letter.send", "--since", "2026-11-24T11:00:00+01:00", "--limit", "5",
	      (const char *)NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	/* A header, then one row per letter, newest first as kanald sent them; the time of
	 * death in local time (TZ=CET-1: UTC+1). */
	CU_ASSERT(s_contains(r.out, "ID  "));
	CU_ASSERT(s_contains(r.out, "DEAD AT"));
	CU_ASSERT(s_contains(r.out, "EVENT ID"));
	CU_ASSERT(s_contains(r.out, "\n12  2026-11-24 11:00:00  letters "));
	CU_ASSERT(s_contains(r.out, "\n9   2026-11-24 00:30:00  sick-child"));
	CU_ASSERT(s_contains(r.out, "digital-post"));
	CU_ASSERT(s_contains(r.out, "l-7"));
	CU_ASSERT(s_contains(r.out, "rejected: no mailbox for 150385XXXX\n"));
	/* A control character from a plugin's error text cannot break the row in two. */
	CU_ASSERT(s_contains(r.out, "retry budget spent: calendar unreachable?second line\n"));
	CU_ASSERT_FALSE(s_has_clear_cpr(r.out));
	CU_ASSERT_STRING_EQUAL(r.err, "");
	s_run_free(&r);
	s_fake_stop(&admin);

	/* The filters went to kanald, --since converted to RFC 3339 in UTC. */
	req = s_request_json(&admin);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT(golden_match(req, "kanalctl-dlq-list-request", NULL));
	json_decref(req);
	free(admin.request);
	s_fixture_free(&f);
}

static void test_dlq_list_since_relative_and_bad_times(void)
{
	fake_t admin = { .reply = "{\"ok\":true,\"items\":[]}" };
	fixture_t f;
	run_t r;
	json_t *req;
	const char *since;
	int64_t now = (int64_t)time(NULL) * 1000, t = 0;

	s_fixture(&f, "", NULL);
	s_fake_start(&admin, ZMQ_REP);
	CTL(&r, &f, "dlq", "list", "--admin", admin.endpoint, "--since", "2h");
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_STRING_EQUAL(r.out, "no dead letters match\n");
	s_run_free(&r);

	/* "2h" means two hours ago, sent as RFC 3339 UTC. */
	req = s_request_json(&admin);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	since = json_string_value(json_object_get(req, "since"));
	CU_ASSERT_PTR_NOT_NULL_FATAL(since);
	/* In whole seconds, in UTC, in the shape every kanal timestamp has. */
	CU_ASSERT(strlen(since) == 24 && !strcmp(since + 19, ".000Z"));
	CU_ASSERT_EQUAL(kanal_time_parse_rfc3339(since, &t), 0);
	CU_ASSERT(t >= now - 2 * 3600000 - 5000 && t <= now - 2 * 3600000 + 5000);
	CU_ASSERT_PTR_NULL(json_object_get(req, "route"));
	CU_ASSERT_PTR_NULL(json_object_get(req, "limit"));
	json_decref(req);

	/* A time kanalctl cannot read is refused before anything is sent. */
	CTL(&r, &f, "dlq", "list", "--admin", admin.endpoint, "--since", "yesterday");
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "--since wants an RFC 3339 time"));
	CU_ASSERT(s_contains(r.err, "'yesterday'"));
	s_run_free(&r);
	CTL(&r, &f, "dlq", "list", "--admin", admin.endpoint, "--since", "2026-02-30T10:00:00Z");
	CU_ASSERT_EQUAL(r.status, 2);
	s_run_free(&r);
	CTL(&r, &f, "dlq", "list", "--admin", admin.endpoint, "--since", "90");
	CU_ASSERT_EQUAL(r.status, 2);
	s_run_free(&r);
	CTL(&r, &f, "dlq", "list", "--admin", admin.endpoint, "--limit", "0");
	CU_ASSERT_EQUAL(r.status, 2);
	s_run_free(&r);
	s_fake_stop(&admin);
	CU_ASSERT_EQUAL(admin.requests, 1);
	free(admin.request);
	s_fixture_free(&f);
}

static const char s_dlq_show_reply[] =
	"{\"ok\":true,\"item\":{\"id\":9,\"dead_at\":\"2026-11-23T23:30:00Z\","
	"\"route\":\"sick-child\",\"destination\":\"calendar\",\"type\":\"child.absence.reported\","
	"\"event_id\":\"s-1\",\"source\":\"daycare-1\",\"reason\":\"retry budget spent\","
	"\"attempts\":3,\"error\":\"calendar unreachable\","
	"\"errors\":[\"timeout after 5 s\",\"HTTP 503 for child 1503851233\","
	"\"calendar unreachable\"],"
	"\"event\":{\"specversion\":\"1.0\",\"id\":\"s-1\",\"source\":\"daycare-1\","
	"\"type\":\"child.absence.reported\",\"data\":{\"child\":\"1503851233\","
	"\"reason\":\"sick\"}}}}";

/* A letter that keeps blobs (a letter's PDF attachment): show lists them after the errors. */
static void test_dlq_show_lists_the_letters_blobs(void)
{
	fake_t admin = {
		.reply = "{\"ok\":true,\"item\":{\"id\":4,\"dead_at\":\"2026-11-23T23:30:00Z\","
			 "\"destination\":\"digital-post\",\"type\":\"post.letter.send\","
			 "\"event_id\":\"l-4\",\"source\":\"case\",\"reason\":\"rejected\","
			 "\"attempts\":1,\"errors\":[\"no mailbox\"],\"blobs\":["
			 "\"kanalblob:sha256:"
			 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"],"
			 "\"event\":{\"specversion\":\"1.0\",\"id\":\"l-4\",\"source\":\"case\","
			 "\"type\":\"post.letter.send\"}}}"
	};
	fixture_t f;
	run_t r;

	s_fixture(&f, "", NULL);
	s_fake_start(&admin, ZMQ_REP);
	CTL(&r, &f, "dlq", "show", "--admin", admin.endpoint, "4");
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out,
			     "errors:\n  1. no mailbox\nblobs:\n  kanalblob:sha256:"
			     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"));
	s_run_free(&r);
	s_fake_stop(&admin);
	free(admin.request);
	s_fixture_free(&f);
}

static void test_dlq_show_masks_unless_clear(void)
{
	fake_t admin = { .reply = s_dlq_show_reply };
	fixture_t f;
	run_t r;
	json_t *req;

	s_fixture(&f, "", NULL);
	s_fake_start(&admin, ZMQ_REP);
	CTL(&r, &f, "dlq", "show", "--admin", admin.endpoint, "9");
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out, "id:           9\n"));
	CU_ASSERT(s_contains(r.out, "destination:  calendar\n"));
	CU_ASSERT(s_contains(r.out, "reason:       retry budget spent\n"));
	CU_ASSERT(s_contains(r.out, "attempts:     3\n"));
	/* Every attempt's error on a line of its own, oldest first. */
	CU_ASSERT(s_contains(r.out, "errors:\n"
				    "  1. timeout after 5 s\n"
				    "  2. HTTP 503 for child 150385XXXX\n"
				    "  3. calendar unreachable\n"));
	/* The event, pretty-printed, its data masked. */
	CU_ASSERT(s_contains(r.out, "\nevent:\n{\n  \"specversion\": \"1.0\",\n"));
	CU_ASSERT(s_contains(r.out, "\"child\": \"150385XXXX\""));
	CU_ASSERT_FALSE(s_has_clear_cpr(r.out));
	CU_ASSERT_FALSE(s_has_clear_cpr(r.err));
	CU_ASSERT_FALSE(s_contains(r.err, "personal data"));
	s_run_free(&r);
	req = s_request_json(&admin);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT(golden_match(req, "kanalctl-dlq-show-request", NULL));
	json_decref(req);

	/* --clear asks kanald for the clear text, prints it as it came, and warns first. */
	CTL(&r, &f, "dlq", "show", "--admin", admin.endpoint, "--clear", "9");
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_has_clear_cpr(r.out));
	CU_ASSERT(s_contains(r.err, "personal data"));
	CU_ASSERT_FALSE(s_has_clear_cpr(r.err));
	s_run_free(&r);
	req = s_request_json(&admin);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT(golden_match(req, "kanalctl-dlq-show-clear-request", NULL));
	json_decref(req);

	/* Bad ids are refused before asking. */
	CTL(&r, &f, "dlq", "show", "--admin", admin.endpoint, "nine");
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "'nine' is not a dead letter id"));
	s_run_free(&r);
	CTL(&r, &f, "dlq", "show", "--admin", admin.endpoint);
	CU_ASSERT_EQUAL(r.status, 2);
	s_run_free(&r);
	s_fake_stop(&admin);
	CU_ASSERT_EQUAL(admin.requests, 2);
	free(admin.request);
	s_fixture_free(&f);
}

static void test_dlq_replay_reports_replayed_and_missing(void)
{
	fake_t partial = { .reply = "{\"ok\":true,\"replayed\":[7],\"missing\":[8]}" };
	fake_t all = { .reply = "{\"ok\":true,\"replayed\":[3,4],\"missing\":[]}" };
	fixture_t f;
	run_t r;
	json_t *req;

	s_fixture(&f, "", NULL);
	s_fake_start(&partial, ZMQ_REP);
	CTL(&r, &f, "dlq", "replay", "--admin", partial.endpoint, "7", "8");
	/* Not everything asked for was replayed: that is a "no". */
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.out, "replayed 7\n"));
	CU_ASSERT(s_contains(r.out, "missing 8"));
	s_run_free(&r);
	s_fake_stop(&partial);
	req = s_request_json(&partial);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT(golden_match(req, "kanalctl-dlq-replay-ids-request", NULL));
	json_decref(req);
	free(partial.request);

	s_fake_start(&all, ZMQ_REP);
	CTL(&r, &f, "dlq", "replay", "--admin", all.endpoint, "--all-matching", "--route",
	    "sick-child", "--type", "child.absence.reported");
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_STRING_EQUAL(r.out, "replayed 3\nreplayed 4\n");
	s_run_free(&r);
	req = s_request_json(&all);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT(golden_match(req, "kanalctl-dlq-replay-match-request", NULL));
	json_decref(req);

	/* Filters without --all-matching, ids with it, or nothing at all: bad usage. */
	CTL(&r, &f, "dlq", "replay", "--admin", all.endpoint, "--route", "r", "7");
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "--all-matching"));
	s_run_free(&r);
	CTL(&r, &f, "dlq", "replay", "--admin", all.endpoint, "--all-matching", "7");
	CU_ASSERT_EQUAL(r.status, 2);
	s_run_free(&r);
	CTL(&r, &f, "dlq", "replay", "--admin", all.endpoint);
	CU_ASSERT_EQUAL(r.status, 2);
	s_run_free(&r);
	CTL(&r, &f, "dlq", "replay", "--admin", all.endpoint, "--limit", "3", "7");
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "dlq replay: option --limit does not apply"));
	s_run_free(&r);
	s_fake_stop(&all);
	CU_ASSERT_EQUAL(all.requests, 1);
	free(all.request);
	s_fixture_free(&f);
}

static void test_dlq_drop_counts(void)
{
	fake_t admin = { .reply = "{\"ok\":true,\"dropped\":1}" };
	fixture_t f;
	run_t r;
	json_t *req;

	s_fixture(&f, "", NULL);
	s_fake_start(&admin, ZMQ_REP);
	CTL(&r, &f, "dlq", "drop", "--admin", admin.endpoint, "7");
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_STRING_EQUAL(r.out, "dropped 1 dead letter\n");
	s_run_free(&r);
	CTL(&r, &f, "dlq", "drop", "--admin", admin.endpoint, "7", "8");
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.out, "dropped 1 of the 2"));
	s_run_free(&r);
	s_fake_stop(&admin);
	req = s_request_json(&admin);
	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT(golden_match(req, "kanalctl-dlq-drop-request", NULL));
	json_decref(req);
	free(admin.request);
	s_fixture_free(&f);
}

static void test_dlq_journal_off_and_no_broker(void)
{
	fake_t admin = { .reply = "{\"ok\":false,\"error\":\"the journal is off (memory mode): "
				  "dead letters are in /var/lib/kanal/deadletter.jsonl\"}" };
	fixture_t f;
	run_t r;
	char endpoint[256];

	s_fixture(&f, "", NULL);
	s_fake_start(&admin, ZMQ_REP);
	CTL(&r, &f, "dlq", "list", "--admin", admin.endpoint);
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.err, "dlq list: the journal is off (memory mode): dead letters are "
				    "in /var/lib/kanal/deadletter.jsonl"));
	CU_ASSERT_STRING_EQUAL(r.out, "");
	s_run_free(&r);
	/* --json prints kanald's answer as it came; the status still says no. */
	CTL(&r, &f, "dlq", "replay", "--admin", admin.endpoint, "--json", "3");
	CU_ASSERT_EQUAL(r.status, 1);
	CU_ASSERT(s_contains(r.out, "{\"ok\":false,\"error\":\"the journal is off"));
	s_run_free(&r);
	s_fake_stop(&admin);
	free(admin.request);

	s_dead_endpoint(endpoint, sizeof endpoint);
	CTL(&r, &f, "dlq", "list", "--admin", endpoint, "--timeout", "200");
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "no reply from the admin endpoint at"));
	CU_ASSERT(r.elapsed_ms < 3000);
	s_run_free(&r);

	CTL(&r, &f, "dlq", "explode");
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "no subcommand 'explode'"));
	s_run_free(&r);
	CTL(&r, &f, "dlq", "purge");
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT(s_contains(r.err, "--older-than"));
	s_run_free(&r);
	CTL(&r, &f, "help", "dlq");
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT(s_contains(r.out, "--all-matching"));
	s_run_free(&r);
	s_fixture_free(&f);
}

/* A real kanald whose journal holds every kind of dead letter the router writes — each
 * written here as the router writes it (journal_dead) — and rows no router writes but the
 * file can hold (errors that are not a JSON array, a body that is not JSON, text with
 * control characters). `dlq list` and `dlq show` of each must answer, masked. */
static void test_dlq_over_every_kind_of_letter(void)
{
	static const struct {
		const char *route, *destination, *reason;
		int attempts;
		const char *errors[3];
	} kinds[] = {
		{ "letters", "digital-post", "rejected", 1, { "no mailbox for 1503851233" } },
		{ "sick-child",
		  "calendar",
		  "retry budget spent",
		  3,
		  { "timeout after 5 s", "HTTP 503", "calendar unreachable" } },
		{ "sick-child",
		  "deadletter",
		  "enrich from 'cpr' failed: no such person",
		  0,
		  { "enrich from 'cpr' failed: no such person" } },
		/* An unmatched event: no route, no error at all (this crashed dlq list). */
		{ NULL, "deadletter", "unmatched", 0, { NULL } },
		{ "to-staff",
		  "staff",
		  "retry budget spent",
		  2,
		  { "plugin host crashed (signal 11)", "plugin host crashed (signal 11)" } },
	};
	const size_t n_kinds = sizeof kinds / sizeof kinds[0];
	/* The odd letters died in 1970: no retention, or kanald would purge them at start. */
	char *conf = kd_config("  - name: calendar\n    plugin: sink\n"
			       "    options: { path: '@DIR@/calendar.jsonl' }\n",
			       "journal:\n  dead_letters: { max_age: 0 }\n");
	kd_t *kd = kd_prepare("dlq-kinds", conf, "routes: []\n");
	char err[512], path[1024], id[16];
	journal_t *j = NULL;
	sqlite3 *db = NULL;
	run_t r = { 0 };
	size_t k;

	free(conf);
	REQUIRE(kd);
	snprintf(path, sizeof path, "%s", kd_path(kd, "state"));
	mkdir(path, 0750);
	snprintf(path, sizeof path, "%s", kd_path(kd, "state/journal.db"));
	j = journal_open(path, false, err, sizeof err);
	REQUIRE(j);
	for (k = 0; k < n_kinds; k++) {
		char json[256];
		kanal_msg_t *msg = NULL;
		size_t n_errors = 0;

		snprintf(json, sizeof json,
			 "{\"specversion\":\"1.0\",\"id\":\"kind-%zu\","
			 "\"source\":\"dlq-test\",\"type\":\"child.absence.reported\","
			 "\"data\":{\"cpr\":\"1503851233\"}}",
			 k);
		REQUIRE(kanal_msg_parse(json, strlen(json), 0, &msg, NULL) == 0);
		while (n_errors < 3 && kinds[k].errors[n_errors])
			n_errors++;
		CU_ASSERT_EQUAL(journal_dead(j, k + 1, msg, kinds[k].route, kinds[k].destination,
					     kinds[k].reason, kinds[k].attempts,
					     (char *const *)kinds[k].errors, n_errors),
				0);
		kanal_msg_destroy(&msg);
	}
	CU_ASSERT_EQUAL(journal_commit(j), 0);
	journal_close(&j);
	/* What no router writes but a damaged or hand-edited file can hold. */
	REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
	CU_ASSERT_EQUAL(
		sqlite3_exec(db,
			     "INSERT INTO dead_letters (seq, dead_at, route, destination, type, "
			     "event_id, "
			     "source, reason, attempts, errors, body) VALUES "
			     "(90, 0, NULL, 'x', 't', 'odd-1', 's', '', 0, 'not json', 'not json "
			     "either'),"
			     "(91, -1, 'r', 'x', 't', 'odd-2', 's', 'rejected', -5, '{\"a\":1}', "
			     "X'00FF00'),"
			     "(92, 1, 'r', 'x', 't', 'odd-3', 's', 'bad' || char(27) || '[2J', 1, "
			     "'[1, null, \"line' || char(10) || 'break\"]', "
			     "'{\"data\":\"1503851233\"}')",
			     NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	REQUIRE(kd_launch(kd) == 0);

	s_run(&r, kd->dir, NULL, NULL, "dlq", "list", "--admin", kd->admin, (const char *)NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	for (k = 0; k < n_kinds; k++) {
		snprintf(id, sizeof id, "kind-%zu", k);
		CU_ASSERT(s_contains(r.out, id));
		CU_ASSERT(s_contains(r.out, kinds[k].reason));
	}
	CU_ASSERT(s_contains(r.out, "rejected: no mailbox for 150385XXXX"));
	CU_ASSERT(s_contains(r.out, "odd-3"));
	CU_ASSERT(!s_contains(r.out, "\033"));
	CU_ASSERT(!s_has_clear_cpr(r.out));
	s_run_free(&r);

	for (k = 1; k <= n_kinds + 3; k++) {
		snprintf(id, sizeof id, "%zu", k);
		s_run(&r, kd->dir, NULL, NULL, "dlq", "show", "--admin", kd->admin, id,
		      (const char *)NULL);
		CU_ASSERT_EQUAL(r.status, 0);
		CU_ASSERT(s_contains(r.out, "reason:"));
		CU_ASSERT(s_contains(r.out, "errors:"));
		CU_ASSERT(!s_contains(r.out, "\033"));
		CU_ASSERT(!s_has_clear_cpr(r.out));
		if (k == 4) /* the unmatched one */
			CU_ASSERT(s_contains(r.out, "(none recorded)"));
		s_run_free(&r);
	}
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, 10000), 0);
done:
	journal_close(&j);
	s_run_free(&r);
	kd_destroy(&kd);
}

TEST_MAIN("kanalctl", TEST(test_help_lists_every_command),
	  TEST(test_check_valid_config_prints_summary), TEST(test_check_finds_config_through_env),
	  TEST(test_check_warns_about_catalogued_type_without_route),
	  TEST(test_check_unknown_instance_points_at_line),
	  TEST(test_check_validates_instance_options),
	  TEST(test_check_reports_a_connectors_ranges_at_their_lines),
	  TEST(test_check_reports_config_errors), TEST(test_explain_names_route_and_destinations),
	  TEST(test_explain_unmatched_goes_to_default),
	  TEST(test_explain_never_prints_a_cpr_number), TEST(test_validate_good_and_bad_files),
	  TEST(test_validate_batch_and_stdin), TEST(test_validate_never_prints_a_cpr_number),
	  TEST(test_plugin_info_lists_options), TEST(test_plugin_info_refuses_other_abi_major),
	  TEST(test_send_without_broker_times_out_clearly), TEST(test_send_prints_each_result),
	  TEST(test_send_finds_gateway_in_endpoints_file),
	  TEST(test_send_passes_the_file_unchanged), TEST(test_reload_failure_prints_errors),
	  TEST(test_reload_and_status_succeed), TEST(test_status_without_broker_times_out),
	  TEST(test_tail_prints_summary_lines_masked), TEST(test_dlq_list_prints_a_masked_table),
	  TEST(test_dlq_list_since_relative_and_bad_times), TEST(test_dlq_show_masks_unless_clear),
	  TEST(test_dlq_show_lists_the_letters_blobs),
	  TEST(test_dlq_replay_reports_replayed_and_missing), TEST(test_dlq_drop_counts),
	  TEST(test_dlq_journal_off_and_no_broker), TEST(test_dlq_over_every_kind_of_letter),
	  TEST(test_test_runs_route_cases_and_diffs_failures), TEST(test_test_reports_bad_files),
	  TEST(test_shipped_route_tests_pass))
