/*
 * tests/integration/test_packaging.c — kanal installed the way a server runs it: `make
 * install` into a staging root (FHS paths, a config that an upgrade never overwrites, an
 * uninstall that keeps what is not its own), the shipped systemd unit (systemd-analyze
 * verify), kanald's sd_notify messages on a NOTIFY_SOCKET, --version, the man pages, and
 * the Debian packages (dpkg-buildpackage, dpkg-deb, lintian). Steps that need
 * a tool the machine lacks are skipped with a line saying which.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "http_client.h"
#include "kanald.h"
#include "test.h"

#include <kanal/kanal.h>

#define WAIT 8000 /* ms: the bound of every wait */

/* Runs a shell command built from fmt; returns its exit status (-1 when it did not run). */
static int s_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int s_sh(const char *fmt, ...)
{
	char *cmd = NULL;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vasprintf(&cmd, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return -1;
	rc = system(cmd);
	free(cmd);
	return rc < 0 || !WIFEXITED(rc) ? -1 : WEXITSTATUS(rc);
}

static bool s_have(const char *tool)
{
	if (s_sh("command -v %s >/dev/null 2>&1", tool) == 0)
		return true;
	printf("\n  skipped: %s is not installed on this machine\n", tool);
	return false;
}

static bool s_exists(const char *dir, const char *rel)
{
	char path[1024];
	struct stat st;

	snprintf(path, sizeof path, "%s%s", dir, rel);
	return lstat(path, &st) == 0;
}

/* make install PREFIX=prefix DESTDIR=root (root may be ""), quietly. */
static int s_make(const char *target, const char *prefix, const char *root)
{
	return s_sh("make --no-print-directory -s %s BUILD=%s PREFIX=%s DESTDIR=%s >/dev/null",
		    target, test_build_dir(), prefix, root);
}

/* A package's layout under PREFIX=/usr: binaries, the library in the multiarch folder
 * when dpkg says one, config in /etc, the unit, tmpfiles and sysusers; no simulators, no
 * test plugins; the config points at the installed folders. */
static void test_install_puts_files_where_debian_expects_them(void)
{
	char *root = test_tmpdir("install"), *conf = NULL, path[1024];
	char multi[128] = "";
	FILE *p = popen("dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null", "r");

	if (p) {
		if (fgets(multi, sizeof multi, p))
			multi[strcspn(multi, "\n")] = '\0';
		pclose(p);
	}
	REQUIRE(s_make("install", "/usr", root) == 0);
	CU_ASSERT(s_exists(root, "/usr/bin/kanald"));
	CU_ASSERT(s_exists(root, "/usr/bin/kanalctl"));
	CU_ASSERT(s_exists(root, "/usr/bin/kanal-plugin-host"));
	CU_ASSERT(s_exists(root, "/usr/bin/kanal-harness"));
	snprintf(path, sizeof path, "/usr/lib%s%s/libkanal.so.1", *multi ? "/" : "", multi);
	CU_ASSERT(s_exists(root, path));
	snprintf(path, sizeof path, "/usr/lib%s%s/kanal/plugins/http.so", *multi ? "/" : "", multi);
	CU_ASSERT(s_exists(root, path));
	CU_ASSERT(s_exists(root, "/etc/kanal/kanald.yaml"));
	CU_ASSERT(s_exists(root, "/etc/kanal/routes/municipal.yaml"));
	CU_ASSERT(s_exists(root, "/usr/include/kanal/plugin.h"));
	CU_ASSERT(s_exists(root, "/usr/lib/tmpfiles.d/kanal.conf"));
	CU_ASSERT(s_exists(root, "/usr/lib/sysusers.d/kanal.conf"));
	CU_ASSERT(s_exists(root, "/lib/systemd/system/kanald.service") ||
		  s_exists(root, "/usr/lib/systemd/system/kanald.service"));
	CU_ASSERT(!s_exists(root, "/usr/etc"));
	CU_ASSERT(!s_exists(root, "/usr/var"));
	CU_ASSERT_EQUAL(s_sh("ls %s/usr/bin | grep -q kanal-sim-", root), 1);
	CU_ASSERT_EQUAL(s_sh("find %s -name 'tp_*' | grep -q .", root), 1);
	snprintf(path, sizeof path, "%s/etc/kanal/kanald.yaml", root);
	conf = test_read_file(path, NULL);
	REQUIRE(conf);
	CU_ASSERT(strstr(conf, "\nstate_dir: /var/lib/kanal\n") != NULL);
	CU_ASSERT(strstr(conf, "\nrun_dir: /run/kanal\n") != NULL);
	CU_ASSERT(strstr(conf, "/usr/lib/") && strstr(conf, "/kanal/plugins\n"));
	/* kanal.pc: folders relative to ${prefix}, and no rpath forced on what links it. */
	snprintf(path, sizeof path, "/usr/lib%s%s/pkgconfig/kanal.pc", *multi ? "/" : "", multi);
	CU_ASSERT_EQUAL(s_sh("grep -q '^libdir=\\${prefix}/lib' %s%s", root, path), 0);
	CU_ASSERT_EQUAL(s_sh("grep -qx 'includedir=\\${prefix}/include' %s%s", root, path), 0);
	CU_ASSERT_EQUAL(s_sh("grep -q rpath %s%s", root, path), 1);
done:
	free(conf);
	test_rmdir_r(root);
	free(root);
}

/* An edited config survives a reinstall (the new one beside it as .dist) and an uninstall;
 * uninstall keeps the state folder and another package's plugin, and removes the rest. */
static void test_reinstall_and_uninstall_keep_what_is_not_theirs(void)
{
	char *pfx = test_tmpdir("reinstall"), *text = NULL, path[1024];

	REQUIRE(s_make("install", pfx, "") == 0);
	REQUIRE(s_sh("echo '# edited by the operator' >> %s/etc/kanal/kanald.yaml", pfx) == 0);
	REQUIRE(s_sh("echo other > %s/lib/kanal/plugins/thirdparty.so", pfx) == 0);
	REQUIRE(s_sh("echo journal > %s/var/lib/kanal/journal.db", pfx) == 0);
	REQUIRE(s_make("install", pfx, "") == 0);
	snprintf(path, sizeof path, "%s/etc/kanal/kanald.yaml", pfx);
	text = test_read_file(path, NULL);
	CU_ASSERT(text && strstr(text, "# edited by the operator"));
	free(text);
	text = NULL;
	CU_ASSERT(s_exists(pfx, "/etc/kanal/kanald.yaml.dist"));
	CU_ASSERT(!s_exists(pfx, "/etc/kanal/routes/municipal.yaml.dist"));

	REQUIRE(s_make("uninstall", pfx, "") == 0);
	CU_ASSERT(s_exists(pfx, "/etc/kanal/kanald.yaml"));
	CU_ASSERT(!s_exists(pfx, "/etc/kanal/kanald.yaml.dist"));
	CU_ASSERT(!s_exists(pfx, "/etc/kanal/routes/municipal.yaml"));
	CU_ASSERT(s_exists(pfx, "/lib/kanal/plugins/thirdparty.so"));
	CU_ASSERT(!s_exists(pfx, "/lib/kanal/plugins/http.so"));
	CU_ASSERT(s_exists(pfx, "/var/lib/kanal/journal.db"));
	CU_ASSERT(!s_exists(pfx, "/bin/kanald"));
	CU_ASSERT(!s_exists(pfx, "/lib/libkanal.so.1"));
	CU_ASSERT(!s_exists(pfx, "/include/kanal"));
done:
	test_rmdir_r(pfx);
	free(pfx);
}

/* The shipped unit, with the paths of an install, passes systemd-analyze verify and is the
 * hardened Type=notify service the docs describe. */
static void test_unit_file_verifies(void)
{
	char *pfx = test_tmpdir("unit"), *unit = NULL, path[1024];

	if (!s_have("systemd-analyze"))
		goto done;
	REQUIRE(s_make("install", pfx, "") == 0);
	snprintf(path, sizeof path, "%s/lib/systemd/system/kanald.service", pfx);
	CU_ASSERT_EQUAL(s_sh("systemd-analyze verify --man=no %s", path), 0);
	unit = test_read_file(path, NULL);
	REQUIRE(unit);
	CU_ASSERT(strstr(unit, "\nType=notify\n") != NULL);
	CU_ASSERT(strstr(unit, "\nProtectSystem=strict\n") != NULL);
	CU_ASSERT(strstr(unit, "\nCapabilityBoundingSet=\n") != NULL);
	CU_ASSERT(strstr(unit, "\nSystemCallFilter=@system-service\n") != NULL);
	CU_ASSERT(strstr(unit, "/bin/kanald --check -c ") != NULL);
	CU_ASSERT(strstr(unit, "/etc/kanal/kanald.yaml\n") != NULL);
done:
	free(unit);
	test_rmdir_r(pfx);
	free(pfx);
}

/* Reads datagrams from fd until one contains needle (or WAIT passes); true when found. The
 * texts seen are appended to seen (size bytes). */
static bool s_expect_notify(int fd, const char *needle, char *seen, size_t size)
{
	int64_t until = test_now_ms() + WAIT;

	while (test_now_ms() < until) {
		char buf[512];
		ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);

		if (n <= 0) {
			test_sleep_ms(20);
			continue;
		}
		buf[n] = '\0';
		strncat(seen, buf, size - strlen(seen) - 2);
		strcat(seen, "|");
		if (strstr(buf, needle))
			return true;
	}
	return false;
}

/* Under systemd (NOTIFY_SOCKET, WATCHDOG_USEC): READY=1 with a STATUS= line once running,
 * WATCHDOG=1 from the router while idle, STOPPING=1 on SIGTERM; with stderr the journal's
 * stream (JOURNAL_STREAM), each log line starts with its priority, "<6>" for info. */
static void test_kanald_notifies_systemd(void)
{
	char *dir = test_tmpdir("notify"), *conf = NULL, *log = NULL, sock[100], seen[4096] = "";
	char js[64];
	struct stat st;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	kd_t *kd = NULL;

	snprintf(sock, sizeof sock, "%s/notify", dir);
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
	conf = kd_config(
		"  - name: out\n    plugin: sink\n    options: { path: '@DIR@/out.jsonl' }\n",
		NULL);
	kd = kd_prepare("notify", conf,
			"routes:\n  - name: all\n    match: { type: '*' }\n"
			"    to: [out]\n");
	REQUIRE(kd);
	/* sd_watchdog_enabled wants WATCHDOG_PID to be kanald's: leave it unset. */
	/* The log file as the journal's stream: kanald's stderr is it (same device, inode). */
	REQUIRE(s_sh("touch %s", kd->log_path) == 0 && stat(kd->log_path, &st) == 0);
	snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	setenv("NOTIFY_SOCKET", sock, 1);
	setenv("WATCHDOG_USEC", "400000", 1);
	unsetenv("WATCHDOG_PID");
	REQUIRE(kd_launch(kd) == 0);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("JOURNAL_STREAM");
	CU_ASSERT(s_expect_notify(fd, "READY=1", seen, sizeof seen));
	CU_ASSERT(strstr(seen, "STATUS=running: 1 instances") != NULL);
	seen[0] = '\0';
	CU_ASSERT(s_expect_notify(fd, "WATCHDOG=1", seen, sizeof seen));
	seen[0] = '\0';
	CU_ASSERT(s_expect_notify(fd, "WATCHDOG=1", seen, sizeof seen)); /* again, while idle */
	kill(kd->pid, SIGTERM);
	seen[0] = '\0';
	CU_ASSERT(s_expect_notify(fd, "STOPPING=1", seen, sizeof seen));
	CU_ASSERT_EQUAL(kd_wait_exit(kd, WAIT), 0);
	log = kd_log(kd);
	CU_ASSERT(log && strstr(log, "<6>") && strstr(log, " info  kanald: running: "));
	CU_ASSERT(log && !strstr(log, "\n2")); /* every line has its priority */
done:
	free(log);
	unsetenv("JOURNAL_STREAM");
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	if (fd >= 0)
		close(fd);
	kd_destroy(&kd);
	free(conf);
	test_rmdir_r(dir);
	free(dir);
}

/* --version on each program: its name, the release, a revision and the ABI, exit 0. */
static void test_every_program_says_its_version(void)
{
	static const char *const progs[] = { "kanald", "kanalctl", "kanal-harness",
					     "kanal-plugin-host" };

	for (size_t i = 0; i < sizeof progs / sizeof *progs; i++) {
		char *cmd = NULL, out[256] = "", want[128];
		FILE *p;
		int rc = -1;

		snprintf(want, sizeof want, "bin/%s", progs[i]);
		if (asprintf(&cmd, "%s --version", test_path(want)) < 0)
			continue;
		p = popen(cmd, "r");
		if (p) {
			if (!fgets(out, sizeof out, p))
				out[0] = '\0';
			rc = pclose(p);
		}
		snprintf(want, sizeof want, "%s %s (revision ", progs[i], KANAL_VERSION);
		CU_ASSERT_EQUAL(rc, 0);
		CU_ASSERT(!strncmp(out, want, strlen(want)));
		CU_ASSERT(strstr(out, ", plugin ABI 1.") != NULL);
		free(cmd);
	}
}

/* The running kanald says its version and revision in /api/v1/status, in
 * kanal_build_info in /metrics and in its "running" log line. */
static void test_status_and_metrics_say_the_build(void)
{
	char *conf = kd_config(
		     "  - name: out\n    plugin: sink\n    options: { path: '@DIR@/o.jsonl' }\n",
		     NULL),
	     *url = NULL, *log = NULL, want[128];
	kd_t *kd = kd_start("build-info", conf,
			    "routes:\n  - name: all\n    match: { type: '*' }\n"
			    "    to: [out]\n");
	http_answer_t a = { 0 };

	REQUIRE(kd && *kd->admin_http);
	REQUIRE(asprintf(&url, "%s/metrics", kd->admin_http) > 0);
	REQUIRE(http_request(NULL, &(http_request_t){ .url = url }, &a) == 200);
	snprintf(want, sizeof want, "kanal_build_info{version=\"%s\",revision=\"", KANAL_VERSION);
	CU_ASSERT(strstr(a.body, want) != NULL);
	CU_ASSERT(strstr(a.body, "\",abi=\"1.") != NULL);
	CU_ASSERT(strstr(a.body, "# TYPE kanal_build_info gauge\n") != NULL);
	http_answer_clear(&a);
	free(url);
	REQUIRE(asprintf(&url, "%s/api/v1/status", kd->admin_http) > 0);
	REQUIRE(http_request(NULL, &(http_request_t){ .url = url }, &a) == 200);
	CU_ASSERT(strstr(a.body, "\"build\"") && strstr(a.body, "\"revision\""));
	CU_ASSERT(strstr(a.body, KANAL_VERSION) != NULL);
	log = kd_log(kd);
	snprintf(want, sizeof want, "kanal %s (revision ", KANAL_VERSION);
	CU_ASSERT(log && strstr(log, want));
done:
	http_answer_clear(&a);
	free(url);
	free(log);
	kd_destroy(&kd);
	free(conf);
}

/* Each man page renders with `man -l` and groff says nothing (no warnings). */
static void test_man_pages_render_without_warnings(void)
{
	static const char *const pages[] = { "kanald.8",      "kanalctl.1",     "kanal-harness.1",
					     "kanald.yaml.5", "kanal-routes.5", "kanal-plugin.7" };

	if (!s_have("man"))
		return;
	for (size_t i = 0; i < sizeof pages / sizeof *pages; i++) {
		char rel[64];
		const char *page;

		snprintf(rel, sizeof rel, "man/%s", pages[i]);
		page = test_path(rel);
		CU_ASSERT_EQUAL(access(page, R_OK), 0);
		/* Rendered text, and no line on stderr. */
		CU_ASSERT_EQUAL(s_sh("out=$(MANWIDTH=80 man --warnings -l %s 2>&1 >/dev/null) && "
				     "[ -z \"$out\" ] && MANWIDTH=80 man -l %s 2>/dev/null | "
				     "grep -q 'SEE ALSO'",
				     page, page),
				0);
	}
}

/* dpkg-buildpackage builds kanal, libkanal1 and libkanal-dev from a copy of the source
 * tree; each holds what it should, the config files are conffiles, and the maintainer
 * scripts make the kanal user. Takes a full build (a minute or two). */
static void test_debian_packages_build_with_the_right_files(void)
{
	char *dir = test_tmpdir("deb"), list[1024];

	if (!s_have("dpkg-buildpackage") || !s_have("dh"))
		goto done;
	REQUIRE(s_sh("mkdir -p %s/src && git ls-files -co --exclude-standard | tar -cf - -T - | "
		     "tar -xf - -C %s/src",
		     dir, dir) == 0);
	/* The package is built as Debian would, not with the flags of the make that runs this
	 * suite (`make asan` passes BUILD, SAN and OPTFLAGS down through MAKEFLAGS). */
	REQUIRE(s_sh("cd %s/src && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u BUILD -u SAN "
		     "-u OPTFLAGS dpkg-buildpackage -us -uc -b >%s/build.log 2>&1",
		     dir, dir) == 0);
	snprintf(list, sizeof list, "%s/kanal.list", dir);
	REQUIRE(s_sh("dpkg-deb -c %s/kanal_*.deb > %s", dir, list) == 0);
	CU_ASSERT_EQUAL(s_sh("grep -q ' ./usr/bin/kanald$' %s", list), 0);
	CU_ASSERT_EQUAL(s_sh("grep -q ' ./usr/bin/kanal-plugin-host$' %s", list), 0);
	CU_ASSERT_EQUAL(s_sh("grep -q '/kanal/plugins/http.so$' %s", list), 0);
	CU_ASSERT_EQUAL(s_sh("grep -q 'systemd/system/kanald.service$' %s", list), 0);
	CU_ASSERT_EQUAL(s_sh("grep -q ' ./usr/share/man/man8/kanald.8.gz$' %s", list), 0);
	CU_ASSERT_EQUAL(s_sh("grep -q 'kanal-sim-\\|tp_\\|libkanal.so' %s", list), 1);
	CU_ASSERT_EQUAL(s_sh("dpkg-deb -I %s/kanal_*.deb conffiles | grep -qx "
			     "/etc/kanal/kanald.yaml",
			     dir),
			0);
	CU_ASSERT_EQUAL(s_sh("dpkg-deb -I %s/kanal_*.deb conffiles | grep -qx "
			     "/etc/kanal/routes/municipal.yaml",
			     dir),
			0);
	CU_ASSERT_EQUAL(
		s_sh("dpkg-deb -I %s/kanal_*.deb postinst | grep -q 'adduser --system'", dir), 0);
	/* The real file and the soname link to it (docs/design/library.md). */
	CU_ASSERT_EQUAL(s_sh("dpkg-deb -c %s/libkanal1_*.deb 2>/dev/null | grep -q "
			     "'/libkanal.so.1.0.0$'",
			     dir),
			0);
	CU_ASSERT_EQUAL(s_sh("dpkg-deb -c %s/libkanal1_*.deb 2>/dev/null | grep -q "
			     "'/libkanal.so.1 -> libkanal.so.1.0.0$'",
			     dir),
			0);
	CU_ASSERT_EQUAL(s_sh("dpkg-deb -c %s/libkanal-dev_*.deb 2>/dev/null | grep -q "
			     "' ./usr/include/kanal/plugin.h$'",
			     dir),
			0);
	CU_ASSERT_EQUAL(s_sh("dpkg-deb -c %s/libkanal-dev_*.deb 2>/dev/null | grep -q "
			     "'pkgconfig/kanal.pc$'",
			     dir),
			0);
	CU_ASSERT_EQUAL(s_sh("dpkg-deb -c %s/libkanal-dev_*.deb 2>/dev/null | grep -q "
			     "'libkanal-dev/examples/hello.c'",
			     dir),
			0);
	/* libkanal1 carries the symbols file, so a plugin package depends on the version that
	 * has what it calls. */
	CU_ASSERT_EQUAL(s_sh("dpkg-deb -I %s/libkanal1_*.deb symbols | "
			     "grep -q '^ kanal_msg_new@KANAL_1.0 '",
			     dir),
			0);
	/* No rpath in a packaged binary. */
	CU_ASSERT_EQUAL(s_sh("mkdir %s/x && dpkg-deb -x %s/kanal_*.deb %s/x && "
			     "readelf -d %s/x/usr/bin/kanald | grep -qi rpath",
			     dir, dir, dir, dir),
			1);
	if (s_have("lintian"))
		CU_ASSERT_EQUAL(s_sh("lintian %s/*.changes >%s/lintian.log 2>&1; "
				     "! grep -q '^E: ' %s/lintian.log",
				     dir, dir, dir),
				0);
done:
	test_rmdir_r(dir);
	free(dir);
}

TEST_MAIN("packaging", TEST(test_every_program_says_its_version),
	  TEST(test_status_and_metrics_say_the_build),
	  TEST(test_install_puts_files_where_debian_expects_them),
	  TEST(test_reinstall_and_uninstall_keep_what_is_not_theirs), TEST(test_unit_file_verifies),
	  TEST(test_kanald_notifies_systemd), TEST(test_man_pages_render_without_warnings),
	  TEST(test_debian_packages_build_with_the_right_files))
