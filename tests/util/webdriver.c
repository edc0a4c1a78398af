/*
 * tests/util/webdriver.c — headless Chromium for tests, driven over chromedriver's W3C
 * WebDriver HTTP API (https://www.w3.org/TR/webdriver2/) with tests/util/http_client.c and
 * jansson. See webdriver.h.
 *
 * chromedriver is started with --port=0 and says which port it took on its standard output
 * (redirected to a file in the driver's temporary folder, which we read). It runs in a
 * process group of its own, and the browser it starts inherits the group, so killing the
 * group leaves nothing behind; an atexit handler does the same for drivers a test did not
 * quit (a fatal assertion, an exit()).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "http_client.h"
#include "test.h"
#include "webdriver.h"

#define ELEMENT_KEY "element-6066-11e4-a52e-4f735466cecf"
#define MAX_DRIVERS 8

struct wd {
	pid_t pid;         /* chromedriver, leader of its process group */
	char *dir;         /* temporary folder: the browser profile, chromedriver's output */
	char base[64];     /* "http://127.0.0.1:PORT" */
	char session[128]; /* the session id, "" before one exists */
	char err[1024];
	http_client_t *http; /* the connection to chromedriver */
};

/* Drivers not yet quit, for the atexit clean-up. */
static wd_t *s_live[MAX_DRIVERS];
static bool s_atexit_set;

/* Kills chromedriver's process group (the browser with it) and reaps chromedriver:
 * SIGTERM first, SIGKILL after a second, and SIGKILL to the group in any case so that no
 * browser process outlives it. */
static void s_kill_group(wd_t *wd)
{
	pid_t group = wd->pid;
	bool reaped = false;

	if (group <= 0)
		return;
	kill(-group, SIGTERM);
	for (int waited = 0; waited < 1000 && !reaped; waited += 20) {
		reaped = waitpid(group, NULL, WNOHANG) == group;
		if (!reaped)
			test_sleep_ms(20);
	}
	/* Whatever is left of the group — the browser's processes — goes now. */
	kill(-group, SIGKILL);
	if (!reaped)
		waitpid(group, NULL, 0);
	wd->pid = 0;
}

/* Browser processes that left the group (Chromium's crash handler starts a session of its
 * own) were re-parented to this process, a child subreaper (wd_start): kill and reap them,
 * leaving every other child alone. Bounded to two seconds. */
static void s_reap_strays(void)
{
	for (int round = 0; round < 20; round++) {
		DIR *d = opendir("/proc");
		struct dirent *e;
		int found = 0;

		if (!d)
			return;
		while ((e = readdir(d))) {
			char path[64], stat[512], *close_paren;
			pid_t pid = (pid_t)atoi(e->d_name);
			int ppid = 0;
			FILE *f;

			if (pid <= 0)
				continue;
			snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
			if (!(f = fopen(path, "r")))
				continue;
			if (!fgets(stat, sizeof stat, f))
				stat[0] = '\0';
			fclose(f);
			/* "pid (comm) state ppid …"; comm may hold spaces, so find the last ')'. */
			close_paren = strrchr(stat, ')');
			if (!close_paren || sscanf(close_paren + 1, " %*c %d", &ppid) != 1 ||
			    ppid != (int)getpid())
				continue;
			if (!strstr(stat, "(chrom") && !strstr(stat, "crashpad"))
				continue;
			found++;
			kill(pid, SIGKILL);
			waitpid(pid, NULL, WNOHANG);
		}
		closedir(d);
		if (!found)
			return;
		test_sleep_ms(100);
	}
}

static void s_at_exit(void)
{
	for (int i = 0; i < MAX_DRIVERS; i++) {
		if (s_live[i]) {
			s_kill_group(s_live[i]);
			s_reap_strays();
			if (s_live[i]->dir && !getenv("KANAL_KEEP_TEST_DIRS"))
				test_rmdir_r(s_live[i]->dir);
			s_live[i] = NULL;
		}
	}
}

static void s_track(wd_t *wd, bool on)
{
	for (int i = 0; i < MAX_DRIVERS; i++) {
		if (on && !s_live[i]) {
			s_live[i] = wd;
			break;
		}
		if (!on && s_live[i] == wd) {
			s_live[i] = NULL;
			break;
		}
	}
	if (on && !s_atexit_set) {
		atexit(s_at_exit);
		s_atexit_set = true;
	}
}

/* The program `name` as found by the environment variable `env`, else on PATH; NULL when
 * neither has it (malloc'd). */
static char *s_which(const char *env, const char *name)
{
	const char *set = getenv(env), *path = getenv("PATH");
	char *copy, *dir, *save = NULL, *found = NULL;

	if (set && *set)
		return access(set, X_OK) == 0 ? strdup(set) : NULL;
	copy = strdup(path && *path ? path : "/usr/bin:/bin");
	for (dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
		char *p;
		if (asprintf(&p, "%s/%s", dir, name) < 0)
			break;
		if (access(p, X_OK) == 0)
			found = p;
		else
			free(p);
	}
	free(copy);
	return found;
}

/* ---- HTTP ----------------------------------------------------------------------------- */

/* One WebDriver command: method on base + path with an optional JSON body (stolen).
 * Returns the answer's "value" (new reference; JSON null is a value), or NULL with
 * wd->err set from the WebDriver error or the transport's. */
static json_t *s_cmd(wd_t *wd, const char *method, const char *path, json_t *body, long timeout_s)
{
	static const char *const json_type[] = { "Content-Type: application/json", NULL };
	char url[1024], *text = NULL;
	http_answer_t a;
	json_t *answer, *value = NULL;

	snprintf(url, sizeof url, "%s%s", wd->base, path);
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
	}
	http_request(wd->http,
		     &(http_request_t){ .method = method,
					.url = url,
					.headers = text ? json_type : NULL,
					.body = text,
					.timeout_ms = (int)(timeout_s * 1000),
					.connect_timeout_ms = 5000 },
		     &a);
	free(text);
	if (a.status == 0) {
		snprintf(wd->err, sizeof wd->err, "%s %s: %s", method, path, a.error);
		http_answer_clear(&a);
		return NULL;
	}
	answer = json_loads(a.body, 0, NULL);
	if (!answer) {
		snprintf(wd->err, sizeof wd->err, "%s %s: HTTP %ld, not JSON: %.200s", method, path,
			 a.status, a.body);
	} else if (a.status != 200) {
		json_t *v = json_object_get(answer, "value");
		snprintf(wd->err, sizeof wd->err, "%s %s: %s: %.600s", method, path,
			 json_string_value(json_object_get(v, "error")) ?: "error",
			 json_string_value(json_object_get(v, "message")) ?: "");
	} else {
		value = json_incref(json_object_get(answer, "value"));
		if (!value)
			value = json_null();
		wd->err[0] = '\0';
	}
	json_decref(answer);
	http_answer_clear(&a);
	return value;
}

/* s_cmd on the session: path is appended to /session/<id>. */
static json_t *s_scmd(wd_t *wd, const char *method, const char *path, json_t *body)
{
	char full[1024];

	snprintf(full, sizeof full, "/session/%s%s", wd->session, path);
	return s_cmd(wd, method, full, body, 30);
}

const char *wd_error(const wd_t *wd)
{
	return wd ? wd->err : "no driver";
}

/* ---- life ----------------------------------------------------------------------------- */

/* Waits for chromedriver's "started successfully on port N." line; returns N or -1. */
static int s_wait_port(wd_t *wd, const char *out, int timeout_ms)
{
	long long deadline = test_now_ms() + timeout_ms;

	while (test_now_ms() < deadline) {
		char *text = test_read_file(out, NULL);
		const char *p;
		int port = -1;

		/* Not "Starting ChromeDriver … on port 0", which comes first. */
		if (text && (p = strstr(text, "started successfully on port ")))
			port = atoi(p + strlen("started successfully on port "));
		free(text);
		if (port > 0)
			return port;
		if (waitpid(wd->pid, NULL, WNOHANG) == wd->pid) {
			wd->pid = 0;
			return -1;
		}
		test_sleep_ms(50);
	}
	return -1;
}

wd_t *wd_start(char *why, size_t why_size)
{
	static bool curl_ready;
	char *driver = s_which("KANAL_CHROMEDRIVER", "chromedriver");
	char *browser = s_which("KANAL_CHROMIUM", "chromium");
	char out[1024], profile[1024];
	wd_t *wd = NULL;
	json_t *caps, *value;
	int port;

	if (!driver || !browser) {
		snprintf(why, why_size,
			 "%s not found (install the Debian packages chromium and "
			 "chromium-driver: scripts/deps.sh)",
			 !driver ? "chromedriver" : "chromium");
		goto fail;
	}
	if (!curl_ready) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		curl_ready = true;
	}
	/* Browser processes that leave chromedriver's group become our children, so that
	 * wd_quit can reap them (s_reap_strays) rather than leave them to init. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	wd = calloc(1, sizeof *wd);
	wd->dir = test_tmpdir("wd");
	wd->http = http_client_new();
	if (!wd->dir || !wd->http) {
		snprintf(why, why_size, "cannot create a temporary folder or an HTTP client");
		goto fail;
	}
	snprintf(out, sizeof out, "%s/chromedriver.out", wd->dir);
	snprintf(profile, sizeof profile, "%s/profile", wd->dir);
	wd->pid = fork();
	if (wd->pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644),
		    nul = open("/dev/null", O_RDONLY);
		setpgid(0, 0);
		/* chromedriver must not outlive a test program that is killed. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		if (nul >= 0)
			dup2(nul, STDIN_FILENO);
		execl(driver, "chromedriver", "--port=0", "--allowed-ips=127.0.0.1", (char *)NULL);
		_exit(127);
	}
	if (wd->pid < 0) {
		snprintf(why, why_size, "fork: %s", strerror(errno));
		wd->pid = 0;
		goto fail;
	}
	setpgid(wd->pid, wd->pid);
	s_track(wd, true);
	port = s_wait_port(wd, out, 10000);
	if (port <= 0) {
		char *text = test_read_file(out, NULL);
		snprintf(why, why_size, "chromedriver did not start within 10 s: %.300s",
			 text ? text : "(no output)");
		free(text);
		goto fail;
	}
	snprintf(wd->base, sizeof wd->base, "http://127.0.0.1:%d", port);
	caps = json_pack("{s:{s:{s:s, s:{s:s, s:[s, s, s, s, s+, s]}, s:{s:i, s:i}}}}",
			 "capabilities", "alwaysMatch", "browserName", "chrome",
			 "goog:chromeOptions", "binary", browser, "args", "--headless=new",
			 "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			 "--user-data-dir=", profile, "--window-size=1280,1024", "timeouts",
			 "pageLoad", 20000, "script", 10000);
	value = s_cmd(wd, "POST", "/session", caps, 60);
	if (!value || !json_string_value(json_object_get(value, "sessionId"))) {
		snprintf(why, why_size, "no browser session: %s", wd->err);
		json_decref(value);
		goto fail;
	}
	snprintf(wd->session, sizeof wd->session, "%s",
		 json_string_value(json_object_get(value, "sessionId")));
	json_decref(value);
	free(driver);
	free(browser);
	return wd;
fail:
	free(driver);
	free(browser);
	wd_quit(&wd);
	return NULL;
}

void wd_quit(wd_t **wd_p)
{
	wd_t *wd = wd_p ? *wd_p : NULL;

	if (!wd)
		return;
	if (wd->session[0] && wd->pid > 0) {
		char path[200];
		snprintf(path, sizeof path, "/session/%s", wd->session);
		json_decref(s_cmd(wd, "DELETE", path, NULL, 10));
	}
	s_kill_group(wd);
	s_reap_strays();
	s_track(wd, false);
	http_client_destroy(&wd->http);
	if (wd->dir && !getenv("KANAL_KEEP_TEST_DIRS"))
		test_rmdir_r(wd->dir);
	free(wd->dir);
	free(wd);
	*wd_p = NULL;
}

/* ---- commands ------------------------------------------------------------------------- */

int wd_navigate(wd_t *wd, const char *url)
{
	json_t *v = s_scmd(wd, "POST", "/url", json_pack("{s:s}", "url", url));

	json_decref(v);
	return v ? 0 : -1;
}

static char *s_element_id(json_t *v)
{
	const char *id = json_string_value(json_object_get(v, ELEMENT_KEY));
	return id ? strdup(id) : NULL;
}

char *wd_find(wd_t *wd, const char *css)
{
	json_t *v = s_scmd(wd, "POST", "/element",
			   json_pack("{s:s, s:s}", "using", "css selector", "value", css));
	char *id = s_element_id(v);

	json_decref(v);
	return id;
}

int wd_find_all(wd_t *wd, const char *from, const char *css, char ***ids)
{
	char path[512];
	json_t *v, *e;
	size_t i;
	int n = 0;

	*ids = NULL;
	if (from)
		snprintf(path, sizeof path, "/element/%s/elements", from);
	else
		snprintf(path, sizeof path, "/elements");
	v = s_scmd(wd, "POST", path,
		   json_pack("{s:s, s:s}", "using", "css selector", "value", css));
	if (!json_is_array(v)) {
		json_decref(v);
		return -1;
	}
	*ids = calloc(json_array_size(v) + 1, sizeof **ids);
	json_array_foreach(v, i, e)
	{
		char *id = s_element_id(e);
		if (id)
			(*ids)[n++] = id;
	}
	json_decref(v);
	return n;
}

void wd_free_ids(char **ids, int n)
{
	for (int i = 0; ids && i < n; i++)
		free(ids[i]);
	free(ids);
}

char *wd_text(wd_t *wd, const char *element)
{
	char path[512];
	json_t *v;
	char *text;

	snprintf(path, sizeof path, "/element/%s/text", element);
	v = s_scmd(wd, "GET", path, NULL);
	text = json_string_value(v) ? strdup(json_string_value(v)) : NULL;
	json_decref(v);
	return text;
}

int wd_click(wd_t *wd, const char *element)
{
	char path[512];
	json_t *v;

	snprintf(path, sizeof path, "/element/%s/click", element);
	v = s_scmd(wd, "POST", path, json_object());
	json_decref(v);
	return v ? 0 : -1;
}

int wd_type(wd_t *wd, const char *element, const char *text)
{
	char path[512];
	json_t *v;

	snprintf(path, sizeof path, "/element/%s/value", element);
	v = s_scmd(wd, "POST", path, json_pack("{s:s}", "text", text));
	json_decref(v);
	return v ? 0 : -1;
}

json_t *wd_script(wd_t *wd, const char *js)
{
	return s_scmd(wd, "POST", "/execute/sync", json_pack("{s:s, s:[]}", "script", js, "args"));
}

char *wd_text_of(wd_t *wd, const char *css)
{
	char *id = wd_find(wd, css), *text;

	if (!id)
		return NULL;
	text = wd_text(wd, id);
	free(id);
	return text;
}

char *wd_wait_text(wd_t *wd, const char *css, const char *needle, int timeout_ms)
{
	long long deadline = test_now_ms() + timeout_ms;

	for (;;) {
		/* The dashboard rebuilds its tables every two seconds: an element found may be
		 * gone ("stale") when its text is asked for, so each round finds it again. */
		char *text = wd_text_of(wd, css);
		if (text && (!needle || strstr(text, needle)))
			return text;
		free(text);
		if (test_now_ms() >= deadline)
			return NULL;
		test_sleep_ms(100);
	}
}

bool wd_wait_count(wd_t *wd, const char *css, int n, int timeout_ms)
{
	long long deadline = test_now_ms() + timeout_ms;

	for (;;) {
		char **ids;
		int have = wd_find_all(wd, NULL, css, &ids);
		wd_free_ids(ids, have);
		if (have == n)
			return true;
		if (test_now_ms() >= deadline)
			return false;
		test_sleep_ms(100);
	}
}

json_t *wd_table(wd_t *wd, const char *row_css)
{
	json_t *sel = json_string(row_css), *v = NULL;
	char *quoted = json_dumps(sel, JSON_ENCODE_ANY), *js;

	json_decref(sel);
	/* One script, so that the rows are read from one rendering of the table. */
	if (quoted && asprintf(&js,
			       "return Array.from(document.querySelectorAll(%s))"
			       ".map(tr => Array.from(tr.cells).map(td => td.textContent));",
			       quoted) >= 0) {
		v = wd_script(wd, js);
		free(js);
	}
	free(quoted);
	return v;
}
