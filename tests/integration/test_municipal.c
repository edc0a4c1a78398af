/*
 * tests/integration/test_municipal.c — the end-to-end test of the flows kanal ships for a
 * municipality: the real kanald with THE SHIPPED routes/municipal.yaml (read from the source
 * tree) and a kanald.yaml made from THE SHIPPED conf/kanald.yaml — the same instances and
 * options, with the ports of this test's simulators, ephemeral endpoints and the paths of a
 * temporary folder — so a change to either file is what is tested here. Every upstream
 * system is the real simulator (kanal-sim-daycare, -hr, -cpr, -digitalpost, -sts) and the
 * calendars are a real Radicale; the secrets and the pseudonym key are written by the test,
 * mode 0600. As in the demo, CPR lookup and Digital Post run as the national services do:
 * https with mutual TLS (a test CA made for the run, tests/util/testca.h), Digital Post
 * with access tokens from the STS, and both validate every request against the official
 * schemas.
 *
 * What a municipality would check after a morning:
 *   - children reported sick or away in the parents' app are in the institution's staffing
 *     view, and in the calendar of each custody holder (Ida: both parents; Noah: his mother,
 *     not his father), with a neutral summary;
 *   - a pedagogue's sickness from HR gives the institution's parents exactly one neutral
 *     notice and the employee a calendar entry; a holiday goes to the employee's calendar;
 *     a cancellation cancels the entry;
 *   - letters go digital to the enrolled (Mads, Anne) and on paper to the exempt (Bent,
 *     Karen) and the under-15s (Laura; Freja, whose protected address the letter route may
 *     use), each with its status and reason in the letter log, and one print job per paper
 *     letter with the right address block;
 *   - one CPR audit line per lookup, masked, with route and purpose;
 *   - the demo's whole morning (the daycare simulator's script, every HR code, a notice)
 *     reaches someone who acts on it: `unmatched` stays empty;
 *   - no dead letters, nothing in `unmatched`, and no clear CPR number in kanald's log,
 *     the event stream, the audit log, the simulators' logs or this test's output;
 *   - every parent's report ends with exactly one confirmation in the parents' app
 *     (`failed` with the reason for one the daycare system refuses);
 *   - the CPR service down while a child is reported: the route's retry brings the report
 *     through once the service is back, nothing lost;
 *   - after every test, neither national service refused a request as breaking the
 *     contract (their "invalid" counts are 0).
 *
 * The people are the synthetic population of examples/simulators/population.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <kanal/kanal.h>

#include "kanald.h"
#include "radicale.h"
#include "test.h"
#include "testca.h"
#include "upstream.h"
#include "webhook_rx.h"

#define WAIT 30000 /* ms: the bound of every expectation (generous: CI machines are shared) */

/* The people of the morning (examples/simulators/population.c). */
#define IDA "1404214382"    /* child-101, Solsikken; custody: Sofie and Mads */
#define MADS "1503851233"   /* enrolled in Digital Post */
#define OLIVER "0101184129" /* Mads's son: looked up for custody_of */
#define SOFIE "2207884566"
#define NOAH "0903225017" /* child-103, Solsikken; custody: his mother Maja only */
#define MAJA "1111903128"
#define LARS "0506872215"    /* Noah's father, without custody */
#define WILLIAM "1710244133" /* child-202, Mælkebøtten; custody: Emma and Jonas */
#define EMMA "0112894178"
#define JONAS "2902881235"
#define BENT "0101654001"  /* exempt from Digital Post */
#define KAREN "3006409120" /* exempt from Digital Post */
#define LAURA "1512155010" /* 11 years old */
#define ANNE "0808931244"  /* protected address, enrolled */
#define FREJA "2003236020" /* protected address, 3 years old */

static const char *const s_sims[] = { "daycare", "hr", "cpr", "digitalpost", "sts" };
enum { SIM_DAYCARE, SIM_HR, SIM_CPR, SIM_DP, SIM_STS, N_SIMS };

typedef struct fixture {
	upstream_t *sim[N_SIMS];
	radicale_t *r;
	kd_t *kd;
	void *sub;
	char *stream; /* every happening read: "<topic> <payload>\n" */
	size_t stream_len;
	char key_path[PATH_MAX];
	char daycare_token[64], hr_password[64], cal_password[64];
	char *ca_dir;              /* the test CA (testca_make) for the national services */
	char callback_listen[64];  /* the digitalpost receipts' listener, host:port */
	webhook_rx_t *case_system; /* the letters' sender: gets their final statuses */
} fixture_t;

/* The fixture alive now, torn down at exit if a test ends early. */
static fixture_t *s_live;

/* ---- output ----------------------------------------------------------------------------- */

/* Prints a diagnostic line to stderr with every CPR number masked: this test's own output
 * must hold no clear number either. */
static void s_say(const char *fmt, ...)
{
	char *text = NULL, *safe;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0)
		text = NULL;
	va_end(ap);
	if (!text)
		return;
	safe = kanal_cpr_redact(text, strlen(text));
	fprintf(stderr, "%s\n", safe ? safe : "(out of memory)");
	kanal_free(safe);
	free(text);
}

/* ---- the stream ----------------------------------------------------------------------------- */

/* Reads happenings for up to ms milliseconds (at least one poll), appending each to
 * f->stream. Doubles as the sleep of every polling loop, so the subscriber never falls
 * behind. */
static void s_pump(fixture_t *f, int ms)
{
	int64_t deadline = kanal_now_ms() + ms;

	for (;;) {
		char topic[256], *payload = NULL, *line = NULL;
		int64_t left = deadline - kanal_now_ms();
		int n;

		if (!f->sub ||
		    kd_next(f->sub, topic, sizeof topic, &payload, left > 0 ? (int)left : 0))
			return;
		n = asprintf(&line, "%s %s\n", topic, payload ? payload : "");
		free(payload);
		if (n > 0) {
			char *grown = realloc(f->stream, f->stream_len + (size_t)n + 1);
			if (grown) {
				memcpy(grown + f->stream_len, line, (size_t)n + 1);
				f->stream = grown;
				f->stream_len += (size_t)n;
			}
		}
		free(line);
		if (kanal_now_ms() >= deadline)
			return;
	}
}

/* Waits until a happening with topic prefix `prefix` whose line holds `needle` has been
 * read (now or before). */
static bool s_stream_has(fixture_t *f, const char *prefix, const char *needle)
{
	int64_t deadline = kanal_now_ms() + WAIT;

	do {
		for (const char *p = f->stream; p && (p = strstr(p, prefix));) {
			const char *eol = strchr(p, '\n');
			bool at_start = p == f->stream || p[-1] == '\n';
			if (at_start && (!needle || (eol && memmem(p, (size_t)(eol - p), needle,
								   strlen(needle)))))
				return true;
			p = eol ? eol : p + strlen(p);
		}
		s_pump(f, 50);
	} while (kanal_now_ms() < deadline);
	s_say("no '%s' happening holding '%s' on the stream within %d ms", prefix,
	      needle ? needle : "", WAIT);
	return false;
}

/* ---- the simulators -------------------------------------------------------------------------- */

/* GET on a simulator; the parsed answer (new reference) or NULL. */
static json_t *s_sim_get(upstream_t *up, const char *path)
{
	char *body = NULL;
	long st = upstream_http(up, "GET", path, NULL, NULL, &body);
	json_t *j = st == 200 && body ? json_loads(body, 0, NULL) : NULL;

	if (!j)
		s_say("GET %s on kanal-sim-%s: HTTP %ld", path, up->name, st);
	free(body);
	return j;
}

/* Asserts the simulator (when it runs) counted no request that broke the contract: the
 * "invalid" of its counts at path. */
static void s_assert_none_invalid(upstream_t *up, const char *path)
{
	json_t *j = up ? s_sim_get(up, path) : NULL;

	if (!up)
		return;
	CU_ASSERT_PTR_NOT_NULL(j);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "invalid")), 0);
	if (json_integer_value(json_object_get(j, "invalid")) != 0)
		s_say("kanal-sim-%s refused %lld requests as invalid; see its log", up->name,
		      (long long)json_integer_value(json_object_get(j, "invalid")));
	json_decref(j);
}

/* POSTs JSON to a simulator; returns the answer (new reference) or NULL when it is not
 * 201/200. */
static json_t *s_sim_post(upstream_t *up, const char *path, const char *json)
{
	char *body = NULL;
	long st = upstream_http(up, "POST", path, json, "application/json", &body);
	json_t *j = (st == 201 || st == 200) && body ? json_loads(body, 0, NULL) : NULL;

	if (!j)
		s_say("POST %s on kanal-sim-%s: HTTP %ld %s", path, up->name, st, body ? body : "");
	free(body);
	return j;
}

/* A parent reports through the daycare app; returns the registration id (malloc'd). */
static char *s_register(fixture_t *f, const char *json)
{
	json_t *j = s_sim_post(f->sim[SIM_DAYCARE], "/api/v1/registrations", json);
	char *id = j && json_string_value(json_object_get(j, "id"))
			   ? strdup(json_string_value(json_object_get(j, "id")))
			   : NULL;

	json_decref(j);
	return id;
}

/* An HR clerk registers an absence change; returns its absence id (malloc'd). */
static char *s_hr(fixture_t *f, const char *json)
{
	json_t *j = s_sim_post(f->sim[SIM_HR], "/hr/v1/absences", json);
	char *id = j && json_string_value(json_object_get(j, "id"))
			   ? strdup(json_string_value(json_object_get(j, "id")))
			   : NULL;

	json_decref(j);
	return id;
}

/* The daycare system's list `what` (notices, staffing) of an institution (new reference). */
static json_t *s_daycare_list(fixture_t *f, const char *inst, const char *what)
{
	char path[256];
	json_t *j, *list;

	snprintf(path, sizeof path, "/api/v1/institutions/%s/%s", inst, what);
	j = s_sim_get(f->sim[SIM_DAYCARE], path);
	list = json_incref(json_object_get(j, what));
	json_decref(j);
	return list;
}

/* The staffing entry with this external id, waiting until it has `status`; new reference
 * or NULL. */
static json_t *s_wait_staffing(fixture_t *f, const char *inst, const char *external_id,
			       const char *status)
{
	int64_t deadline = kanal_now_ms() + WAIT;

	do {
		json_t *list = s_daycare_list(f, inst, "staffing"), *e;
		size_t i;
		json_array_foreach(list, i, e)
		{
			if (!strcmp(json_string_value(json_object_get(e, "external_id")) ?: "",
				    external_id) &&
			    !strcmp(json_string_value(json_object_get(e, "status")) ?: "",
				    status)) {
				json_incref(e);
				json_decref(list);
				return e;
			}
		}
		json_decref(list);
		s_pump(f, 100);
	} while (kanal_now_ms() < deadline);
	s_say("no staffing entry %s with status %s in %s", external_id, status, inst);
	return NULL;
}

/* ---- calendars -------------------------------------------------------------------------------- */

/* The collection path of a citizen's calendar: /person%3A<hex>/kanal/. */
static void s_person_path(fixture_t *f, const char *cpr, char *out, size_t size)
{
	kanal_pseudonym_key_t *key = NULL;
	char pseudo[KANAL_PSEUDONYM_SIZE] = "person:?";
	kanal_error_t err;

	kanal_error_clear(&err);
	if (kanal_pseudonym_key_load(f->key_path, &key, &err) == 0)
		kanal_cpr_pseudonym(key, cpr, pseudo, sizeof pseudo);
	else
		s_say("the pseudonym key: %s", err.text);
	kanal_pseudonym_key_destroy(&key);
	snprintf(out, size, "/person%%3A%s/kanal/", pseudo + strlen("person:"));
}

/* The number of resources in a calendar collection; -1 when there is no such calendar. */
static long s_cal_count(fixture_t *f, const char *collection)
{
	size_t n = 0;
	char *list = radicale_list(f->r, "kanal", collection, &n);

	free(list);
	return list ? (long)n : -1;
}

/* Waits until the collection holds n resources. */
static bool s_wait_cal(fixture_t *f, const char *collection, long n)
{
	int64_t deadline = kanal_now_ms() + WAIT;
	long have;

	do {
		if ((have = s_cal_count(f, collection)) == n)
			return true;
		s_pump(f, 100);
	} while (kanal_now_ms() < deadline);
	s_say("calendar %s holds %ld events, not %ld", collection, have, n);
	return false;
}

/* The text of a resource (folded lines joined again) or NULL. */
static char *s_cal_get(fixture_t *f, const char *path)
{
	char *body = NULL, *out, *o;

	if (radicale_request(f->r, "kanal", "GET", path, NULL, NULL, &body, NULL) != 200) {
		free(body);
		return NULL;
	}
	out = o = malloc(strlen(body) + 1);
	for (const char *p = body; *p; p++) {
		if (p[0] == '\r' && p[1] == '\n' && (p[2] == ' ' || p[2] == '\t')) {
			p += 2;
			continue;
		}
		*o++ = *p;
	}
	*o = '\0';
	free(body);
	return out;
}

/* The only event of a collection (its text) or NULL. */
static char *s_cal_only(fixture_t *f, const char *collection)
{
	size_t n = 0;
	char *list = radicale_list(f->r, "kanal", collection, &n), path[512], *nl;

	if (!list || n != 1 || !(nl = strchr(list, '\n'))) {
		free(list);
		return NULL;
	}
	snprintf(path, sizeof path, "%s%.*s", collection, (int)(nl - list), list);
	free(list);
	return s_cal_get(f, path);
}

static bool s_has(const char *text, const char *needle)
{
	bool yes = text && strstr(text, needle);

	if (!yes)
		s_say("expected '%s' in:\n%s", needle, text ? text : "(nothing)");
	return yes;
}

/* Waits until the resource at path holds needle; returns its text or NULL. */
static char *s_wait_ics(fixture_t *f, const char *path, const char *needle)
{
	int64_t deadline = kanal_now_ms() + WAIT;
	char *ics = NULL;

	do {
		free(ics);
		ics = s_cal_get(f, path);
		if (ics && strstr(ics, needle))
			return ics;
		s_pump(f, 100);
	} while (kanal_now_ms() < deadline);
	s_has(ics, needle);
	free(ics);
	return NULL;
}

/* ---- kanald ----------------------------------------------------------------------------------- */

/* Replaces every `from` in *text by `to`; returns how many. */
static int s_replace(char **text, const char *from, const char *to)
{
	int n = 0;
	size_t fl = strlen(from), tl = strlen(to);

	for (char *p = strstr(*text, from); p; p = strstr(p, from)) {
		size_t off = (size_t)(p - *text), len = strlen(*text);
		char *grown = malloc(len - fl + tl + 1);
		memcpy(grown, *text, off);
		memcpy(grown + off, to, tl);
		memcpy(grown + off + tl, p + fl, len - off - fl + 1);
		free(*text);
		*text = grown;
		p = grown + off + tl;
		n++;
	}
	return n;
}

/* conf/kanald.yaml as this test runs it: the simulators' and Radicale's addresses for the
 * demo's fixed ports, ephemeral endpoints, the test folder (@DIR@) for var/demo, the built
 * plugins, the shipped routes by absolute path, and debug logging (more lines to check).
 * NULL when the shipped file no longer has what is replaced (says which). */
static char *s_conf(fixture_t *f)
{
	char *text = test_read_file("conf/kanald.yaml", NULL), routes[PATH_MAX], callback[96];
	char ca[PATH_MAX], payslips[PATH_MAX], sf2900_callback[96];
	const char *subst[][2] = {
		{ "../build/plugins", "@PLUGINS@" },
		{ "../routes/municipal.yaml", routes },
		{ "../routes/payslips.yaml", payslips },
		{ "../var/demo/ca/", ca },
		{ "../var/demo/", "@DIR@/" },
		{ "tcp://127.0.0.1:7700", "tcp://127.0.0.1:0" },
		{ "tcp://127.0.0.1:7701", "tcp://127.0.0.1:0" },
		{ "tcp://127.0.0.1:7702", "tcp://127.0.0.1:0" },
		{ "http://127.0.0.1:7703", "http://127.0.0.1:0" },
		{ "listen: 127.0.0.1:7704", "listen: 127.0.0.1:0" },
		{ "http://127.0.0.1:7711", f->sim[SIM_DAYCARE]->url },
		{ "http://127.0.0.1:7712", f->sim[SIM_HR]->url },
		{ "https://127.0.0.1:7713", f->sim[SIM_CPR]->url },
		{ "https://127.0.0.1:7714", f->sim[SIM_DP]->url },
		{ "https://127.0.0.1:7717", f->sim[SIM_STS]->url },
		{ "http://127.0.0.1:7715", f->r->url },
		{ "callback_listen: 127.0.0.1:7716", callback },
		/* sf2900's receipt listener: a running demo holds the shipped port. */
		{ "callback_listen: 127.0.0.1:7719", sf2900_callback },
		{ "http://127.0.0.1:7720", webhook_rx_url(f->case_system) },
		{ "log_level: info", "log_level: debug" },
	};

	snprintf(callback, sizeof callback, "callback_listen: %s", f->callback_listen);
	snprintf(sf2900_callback, sizeof sf2900_callback, "callback_listen: 127.0.0.1:%d",
		 test_free_port());
	snprintf(ca, sizeof ca, "%s/", f->ca_dir);
	if (!text || !realpath("routes/municipal.yaml", routes) ||
	    !realpath("routes/payslips.yaml", payslips)) {
		s_say("cannot read conf/kanald.yaml or routes/municipal.yaml (run from the source "
		      "tree)");
		free(text);
		return NULL;
	}
	for (size_t i = 0; i < sizeof subst / sizeof subst[0]; i++) {
		if (s_replace(&text, subst[i][0], subst[i][1]) == 0) {
			s_say("conf/kanald.yaml no longer holds '%s': update this test's s_conf",
			      subst[i][0]);
			free(text);
			return NULL;
		}
	}
	return text;
}

/* A secret of 32 hex digits. */
static void s_secret(char *out, size_t size)
{
	unsigned char raw[16] = { 0 };
	FILE *fp = fopen("/dev/urandom", "rb");

	if (!fp || fread(raw, 1, sizeof raw, fp) != sizeof raw)
		for (size_t i = 0; i < sizeof raw; i++)
			raw[i] = (unsigned char)(rand() ^ getpid());
	if (fp)
		fclose(fp);
	for (size_t i = 0; i < sizeof raw && 2 * i + 2 < size; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

static bool s_write_secret(kd_t *kd, const char *name, const char *value)
{
	char *path = test_write_file(kd_path(kd, "secrets"), name, value);
	bool ok = path && chmod(path, 0600) == 0;

	free(path);
	return ok;
}

static void s_teardown(fixture_t *f);
static void s_atexit(void);

/* Starts the simulators, Radicale and kanald as the demo does. False (and everything
 * stopped) when something does not come up. */
static bool s_setup(fixture_t *f, const char *tag)
{
	static bool at_exit;
	char args[4][160], *conf, key[65], sts_cert[PATH_MAX + 16], sts[80];

	memset(f, 0, sizeof *f);
	if (!at_exit)
		at_exit = atexit(s_atexit) == 0;
	s_live = f;
	s_secret(f->daycare_token, sizeof f->daycare_token);
	s_secret(f->hr_password, sizeof f->hr_password);
	s_secret(f->cal_password, sizeof f->cal_password);
	snprintf(args[0], sizeof args[0], "token=%s", f->daycare_token);
	snprintf(args[1], sizeof args[1], "password=%s", f->hr_password);
	/* The simulator pushes PKO_PostStatus receipts to the shipped callback_listen, moved to
	 * a free port. */
	snprintf(f->callback_listen, sizeof f->callback_listen, "127.0.0.1:%d", test_free_port());
	snprintf(args[3], sizeof args[3],
		 "callback=http://%s/beskedfordeler/PostStatusBeskedModtag", f->callback_listen);
	f->sim[SIM_DAYCARE] =
		upstream_start("daycare", (const char *const[]){ "--set", args[0], NULL });
	f->sim[SIM_HR] = upstream_start(
		"hr", (const char *const[]){ "--set", "user=kanal", "--set", args[1], NULL });
	/* The national services as the demo runs them: mutual TLS with the test CA; the STS
	 * signs tokens with its server key, which CPR lookup trusts; Digital Post checks each
	 * access token with the STS. */
	if (!(f->ca_dir = test_tmpdir("municipal-ca")) || testca_make(f->ca_dir) != 0) {
		s_say("could not make the test CA");
		goto fail;
	}
	snprintf(sts_cert, sizeof sts_cert, "sts_cert=%s/server.pem", f->ca_dir);
	f->sim[SIM_STS] = upstream_start_tls("sts", f->ca_dir, NULL);
	if (!f->sim[SIM_STS])
		goto fail;
	snprintf(sts, sizeof sts, "sts=%s", f->sim[SIM_STS]->url);
	f->sim[SIM_CPR] = upstream_start_tls("cpr", f->ca_dir,
					     (const char *const[]){ "--set", sts_cert, NULL });
	f->sim[SIM_DP] =
		upstream_start_tls("digitalpost", f->ca_dir,
				   (const char *const[]){ "--set", sts, "--set", args[3], NULL });
	f->r = radicale_start((const radicale_user_t[]){ { "kanal", f->cal_password, false },
							 { NULL, NULL, false } });
	f->case_system = webhook_rx_new();
	if (!f->case_system) {
		s_say("the case system's webhook receiver did not start");
		goto fail;
	}
	for (int i = 0; i < N_SIMS; i++)
		if (!f->sim[i]) {
			s_say("kanal-sim-%s did not start", s_sims[i]);
			goto fail;
		}
	if (!f->r)
		goto fail;
	snprintf(f->sim[SIM_DAYCARE]->bearer, sizeof f->sim[SIM_DAYCARE]->bearer, "%s",
		 f->daycare_token);
	if (!(conf = s_conf(f)))
		goto fail;
	f->kd = kd_prepare(tag, conf, NULL);
	free(conf);
	/* The secrets, as the demo makes them: readable by this user only. */
	mkdir(kd_path(f->kd, "secrets"), 0700);
	mkdir(kd_path(f->kd, "print-spool"), 0700);
	mkdir(kd_path(f->kd, "payroll"), 0700);
	s_secret(key, sizeof key);
	s_secret(key + 32, sizeof key - 32);
	if (!s_write_secret(f->kd, "pseudonym.key", key) ||
	    !s_write_secret(f->kd, "daycare.token", f->daycare_token) ||
	    !s_write_secret(f->kd, "hr.password", f->hr_password) ||
	    !s_write_secret(f->kd, "calendar.password", f->cal_password) ||
	    !s_write_secret(f->kd, "http-tokens", "vendor-test 0123456789abcdef0123456789abcdef"))
		goto fail;
	snprintf(f->key_path, sizeof f->key_path, "%s", kd_path(f->kd, "secrets/pseudonym.key"));
	if (kd_launch(f->kd) != 0) {
		char *log = kd_log(f->kd), *safe = log ? kanal_cpr_redact(log, strlen(log)) : NULL;
		fprintf(stderr, "kanald did not start (status %d):\n%s\n", f->kd->exit_status,
			safe ? safe : "(no log)");
		kanal_free(safe);
		free(log);
		goto fail;
	}
	/* Everything that happens from here on is read and kept. */
	f->sub = kd_subscribe(f->kd, "");
	return true;
fail:
	s_teardown(f);
	return false;
}

/* Asserts a text holds no clear CPR number; names what and where. Digits glued to letters
 * on either side are part of a token — a hash or an id in a server's log, which a random
 * hex string makes look like a number now and then ("…6c270604-1234c69f…") — not a
 * number someone could read as a person's. */
static void s_assert_no_cpr(const char *what, const char *text)
{
	size_t off = 0, len = 0, at = 0, n = text ? strlen(text) : 0;
	bool found = false;

	while (at < n && kanal_cpr_find(text + at, n - at, &off, &len)) {
		const char *hit = text + at + off;
		bool glued = (hit > text && isalpha((unsigned char)hit[-1])) ||
			     (hit + len < text + n && isalpha((unsigned char)hit[len]));
		if (!glued) {
			found = true;
			off = (size_t)(hit - text);
			break;
		}
		at = (size_t)(hit - text) + len;
	}

	CU_ASSERT_FALSE(found);
	if (found)
		s_say("%s holds a clear CPR number at offset %zu: '%.40s'", what, off,
		      text + (off > 20 ? off - 20 : 0));
}

/* Asserts a text does not hold `word` (a protected person's address, a diagnosis). */
static void s_assert_lacks(const char *what, const char *text, const char *word)
{
	bool found = text && strcasestr(text, word);

	CU_ASSERT_FALSE(found);
	if (found)
		s_say("%s holds '%s'", what, word);
}

/* Stops kanald (cleanly: exit 0), then checks every log of the run for clear CPR numbers
 * and the protected address, and stops and removes everything. Safe on a half-made
 * fixture. */
static void s_teardown(fixture_t *f)
{
	if (f->sub) {
		s_pump(f, 300);
		kd_unsubscribe(&f->sub);
	}
	if (f->kd) {
		char *log, *audit;
		if (f->kd->pid > 0)
			CU_ASSERT_EQUAL(kd_stop(f->kd, SIGTERM, WAIT), 0);
		log = kd_log(f->kd);
		audit = test_read_file(kd_path(f->kd, "cpr-audit.log"), NULL);
		s_assert_no_cpr("kanald's log", log);
		s_assert_lacks("kanald's log", log, "Skjultvej");
		s_assert_no_cpr("the CPR audit log", audit);
		s_assert_lacks("the CPR audit log", audit, "Skjultvej");
		test_keep_file("municipal-audit", kd_path(f->kd, "cpr-audit.log"));
		free(audit);
		free(log);
		kd_destroy(&f->kd);
	}
	s_assert_no_cpr("the event stream", f->stream);
	s_assert_lacks("the event stream", f->stream, "Skjultvej");
	/* The connectors sent nothing the national services refuse as breaking the contract
	 * (the schemas, the headers): the simulators validate every request. */
	s_assert_none_invalid(f->sim[SIM_CPR], "/lookups");
	s_assert_none_invalid(f->sim[SIM_DP], "/digitalpost/v1/messages");
	for (int i = 0; i < N_SIMS; i++) {
		if (f->sim[i]) {
			char what[64], *log;
			upstream_fault(f->sim[i], "none", 0);
			log = test_read_file(f->sim[i]->log_path, NULL);
			snprintf(what, sizeof what, "kanal-sim-%s's log", s_sims[i]);
			s_assert_no_cpr(what, log);
			free(log);
		}
		upstream_stop(&f->sim[i]);
	}
	if (f->r) {
		char *log = test_read_file(f->r->log_path, NULL);
		s_assert_no_cpr("Radicale's log", log);
		free(log);
		radicale_stop(&f->r);
	}
	webhook_rx_destroy(&f->case_system);
	if (f->ca_dir && !getenv("KANAL_KEEP_TEST_DIRS"))
		test_rmdir_r(f->ca_dir);
	free(f->ca_dir);
	f->ca_dir = NULL;
	free(f->stream);
	f->stream = NULL;
	f->stream_len = 0;
	s_live = NULL;
}

static void s_atexit(void)
{
	if (s_live)
		s_teardown(s_live);
}

/* The admin's dead-letter list is empty. */
static void s_assert_no_dead_letters(fixture_t *f)
{
	char *reply = kd_admin(f->kd, "{\"cmd\":\"dlq.list\"}", WAIT);
	json_t *root = reply ? json_loads(reply, 0, NULL) : NULL;
	json_t *items = json_object_get(root, "items");

	CU_ASSERT_TRUE(json_is_array(items));
	CU_ASSERT_EQUAL(json_array_size(items), 0);
	if (!json_is_array(items) || json_array_size(items))
		s_say("dead letters: %s", reply ? reply : "(no answer from the admin socket)");
	json_decref(root);
	free(reply);
}

/* The audit log's lines, parsed (new reference: an array). */
static json_t *s_audit(fixture_t *f)
{
	char *text = test_read_file(kd_path(f->kd, "cpr-audit.log"), NULL);
	json_t *lines = json_array();

	for (char *save = NULL, *l = text ? strtok_r(text, "\n", &save) : NULL; l;
	     l = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(l, 0, NULL);
		CU_ASSERT_PTR_NOT_NULL(j);
		if (j)
			json_array_append_new(lines, j);
	}
	free(text);
	return lines;
}

/* How many audit lines are about cpr (masked) from route with outcome. */
static size_t s_audit_count(json_t *lines, const char *cpr, const char *route, const char *outcome)
{
	char masked[16];
	size_t i, n = 0;
	json_t *l;

	kanal_cpr_mask(cpr, masked, sizeof masked);
	json_array_foreach(lines, i, l)
	{
		if (!strcmp(json_string_value(json_object_get(l, "cpr")) ?: "", masked) &&
		    !strcmp(json_string_value(json_object_get(l, "route")) ?: "", route) &&
		    (!outcome ||
		     !strcmp(json_string_value(json_object_get(l, "outcome")) ?: "", outcome)))
			n++;
	}
	return n;
}

/* ---- letters ---------------------------------------------------------------------------------- */

typedef struct letter_case {
	const char *id, *cpr;
	const char *channel;  /* the channel that carried it */
	const char *reason;   /* the carrying status's reason (a prefix) */
	const char *block[4]; /* the print job's address block (physical only) */
	bool protected_address;
} letter_case_t;

static const letter_case_t s_letters[] = {
	{ "brev-mads",
	  MADS,
	  "digital",
	  "Digital Post: PostForespoerg: the recipient can receive Digital Post",
	  { NULL },
	  false },
	{ "brev-anne",
	  ANNE,
	  "digital",
	  "Digital Post: PostForespoerg: the recipient can receive Digital Post",
	  { NULL },
	  false },
	{ "brev-bent",
	  BENT,
	  "physical",
	  "not-enrolled",
	  { "Bent Olsen", "Bakkevej 88", "8240 Risskov", NULL },
	  false },
	{ "brev-karen",
	  KAREN,
	  "physical",
	  "not-enrolled",
	  { "Karen Madsen", "Plejehjemsvej 1, 12", "8270 Højbjerg", NULL },
	  false },
	{ "brev-laura",
	  LAURA,
	  "physical",
	  "no Digital Post for under-15s",
	  { "Laura Nielsen", "Havnevej 31, st.", "8200 Aarhus N", NULL },
	  false },
	{ "brev-freja",
	  FREJA,
	  "physical",
	  "no Digital Post for under-15s",
	  { "Freja Larsen", "Skjultvej 7", "8210 Aarhus V", NULL },
	  true },
};
#define N_LETTERS (sizeof s_letters / sizeof s_letters[0])

/* A case system sends a letter through the gateway. */
static void s_send_letter(fixture_t *f, const letter_case_t *c)
{
	json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s, s:{s:s, s:s, s:s}}}",
			       "specversion", "1.0", "id", c->id, "source", "sagssystem", "type",
			       "post.letter.send", "correlationid", "sag-2026-17", "data",
			       "recipient_cpr", c->cpr, "label", "Din plads i dagtilbud",
			       "document", "filename", "plads.pdf", "language", "da", "content",
			       "JVBERi0xLjQKJcOkw7zDtsOfCg==");
	char *text = json_dumps(ev, JSON_COMPACT);

	CU_ASSERT(kd_send_event(f->kd, text, "accepted", WAIT, NULL));
	free(text);
	json_decref(ev);
}

/* The sink file's events (new reference: an array). */
static json_t *s_sink(fixture_t *f, const char *file)
{
	char *text = test_read_file(kd_path(f->kd, file), NULL);
	json_t *events = json_array();

	for (char *save = NULL, *l = text ? strtok_r(text, "\n", &save) : NULL; l;
	     l = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(l, 0, NULL);
		if (j)
			json_array_append_new(events, j);
	}
	free(text);
	return events;
}

/* Waits for the status of `letter` on `channel` with `status` in the letter log; new
 * reference or NULL. */
static json_t *s_wait_status(fixture_t *f, const char *letter, const char *channel,
			     const char *status)
{
	int64_t deadline = kanal_now_ms() + WAIT;

	do {
		json_t *events = s_sink(f, "letter-status.jsonl"), *ev;
		size_t i;
		json_array_foreach(events, i, ev)
		{
			json_t *d = json_object_get(ev, "data");
			if (!strcmp(json_string_value(json_object_get(d, "letter")) ?: "",
				    letter) &&
			    !strcmp(json_string_value(json_object_get(d, "channel")) ?: "",
				    channel) &&
			    !strcmp(json_string_value(json_object_get(d, "status")) ?: "",
				    status)) {
				json_incref(ev);
				json_decref(events);
				return ev;
			}
		}
		json_decref(events);
		s_pump(f, 100);
	} while (kanal_now_ms() < deadline);
	s_say("no %s/%s status for %s in the letter log", channel, status, letter);
	return NULL;
}

/* The spool's jobs (new reference: an array of job documents). */
static json_t *s_jobs(fixture_t *f)
{
	char dir[PATH_MAX];
	DIR *d;
	struct dirent *e;
	json_t *jobs = json_array();

	snprintf(dir, sizeof dir, "%s", kd_path(f->kd, "print-spool"));
	d = opendir(dir);
	while (d && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		char path[PATH_MAX + 256];
		json_t *j;
		if (e->d_name[0] == '.' || len < 6 || strcmp(e->d_name + len - 5, ".json"))
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if ((j = json_load_file(path, 0, NULL)))
			json_array_append_new(jobs, j);
	}
	if (d)
		closedir(d);
	return jobs;
}

static void s_check_letters(fixture_t *f)
{
	json_t *jobs, *dp;
	size_t physical = 0;

	for (size_t k = 0; k < N_LETTERS; k++) {
		const letter_case_t *c = &s_letters[k];
		/* A digital letter is "accepted" by the service first (the reason says why that
		 * channel), and "sent" when its PKO_PostStatus receipt arrives. */
		bool digital = !strcmp(c->channel, "digital");
		json_t *st = s_wait_status(f, c->id, c->channel, digital ? "accepted" : "sent"), *d;
		const char *reason;

		CU_ASSERT_PTR_NOT_NULL(st);
		if (!st)
			continue;
		d = json_object_get(st, "data");
		reason = json_string_value(json_object_get(d, "reason"));
		CU_ASSERT(reason && !strncmp(reason, c->reason, strlen(c->reason)));
		if (!reason || strncmp(reason, c->reason, strlen(c->reason)))
			s_say("%s: reason '%s', want '%s…'", c->id, reason ? reason : "(none)",
			      c->reason);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(st, "correlationid"))
					       ?: "",
				       "sag-2026-17");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(st, "causationid")) ?: "",
				       c->id);
		if (!strcmp(c->channel, "digital")) {
			CU_ASSERT_PTR_NOT_NULL(
				json_string_value(json_object_get(d, "transaction")));
			/* The KombiValgKode kanal chose after asking PostForespoerg. */
			CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "kombi")) ?: "",
					       "Digital Post");
			/* The final status, from the receipt the simulator pushed. */
			json_t *fin = s_wait_status(f, c->id, "digital", "sent");
			CU_ASSERT(fin && json_is_true(json_object_get(json_object_get(fin, "data"),
								      "final")));
			CU_ASSERT(fin && !strncmp(json_string_value(json_object_get(
							  json_object_get(fin, "data"), "reason"))
							  ?: "",
						  "PKO_PostStatus Afleveret Digital Post", 37));
			json_decref(fin);
		} else {
			json_t *failed;
			physical++;
			CU_ASSERT_PTR_NOT_NULL(json_string_value(json_object_get(d, "job")));
			/* Digital Post said why first: its "failed" status is in the log too. */
			failed = s_wait_status(f, c->id, "digital", "failed");
			CU_ASSERT(failed &&
				  !strncmp(json_string_value(json_object_get(
						   json_object_get(failed, "data"), "reason"))
						   ?: "",
					   "not-enrolled", 12));
			json_decref(failed);
		}
		/* No letter is carried twice. */
		{
			json_t *events = s_sink(f, "letter-status.jsonl"), *ev;
			size_t i, sent = 0;
			json_array_foreach(events, i, ev)
			{
				json_t *ed = json_object_get(ev, "data");
				sent += !strcmp(json_string_value(json_object_get(ed, "letter"))
							?: "",
						c->id) &&
					!strcmp(json_string_value(json_object_get(ed, "status"))
							?: "",
						"sent");
			}
			CU_ASSERT_EQUAL(sent, 1);
			json_decref(events);
		}
		json_decref(st);
	}

	/* One print job per paper letter, each with its address block; none for the
	 * digital ones. The protected address is on Freja's job — the letter route may ask
	 * for it — and the job says it is protected. */
	jobs = s_jobs(f);
	CU_ASSERT_EQUAL(json_array_size(jobs), physical);
	for (size_t k = 0; k < N_LETTERS; k++) {
		const letter_case_t *c = &s_letters[k];
		json_t *job = NULL, *j, *block, *want = json_array();
		size_t i, n = 0;
		json_array_foreach(
			jobs, i,
			j) if (!strcmp(json_string_value(json_object_get(j, "letter")) ?: "",
				       c->id))
		{
			job = j;
			n++;
		}
		if (!strcmp(c->channel, "digital")) {
			CU_ASSERT_EQUAL(n, 0);
			json_decref(want);
			continue;
		}
		CU_ASSERT_EQUAL(n, 1);
		for (int l = 0; c->block[l]; l++)
			json_array_append_new(want, json_string(c->block[l]));
		block = json_object_get(json_object_get(job, "recipient"), "address_block");
		CU_ASSERT_TRUE(json_equal(block, want));
		if (!json_equal(block, want)) {
			char *got = block ? json_dumps(block, JSON_COMPACT) : NULL;
			s_say("%s: address block %s", c->id, got ? got : "(none)");
			free(got);
		}
		CU_ASSERT_EQUAL(json_is_true(json_object_get(json_object_get(job, "recipient"),
							     "protected_address")),
				c->protected_address);
		{
			char *text = job ? json_dumps(job, JSON_COMPACT) : NULL;
			s_assert_no_cpr("a print job", text);
			free(text);
		}
		json_decref(want);
	}
	json_decref(jobs);

	/* Digital Post delivered the two digital letters, once each. */
	dp = s_sim_get(f->sim[SIM_DP], "/digitalpost/v1/messages");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(dp, "delivered")), 2);
	json_decref(dp);
}

/* ---- the tests -------------------------------------------------------------------------------- */

/* A municipal morning through the shipped routes and configuration. */
static void test_a_municipal_morning(void)
{
	fixture_t f;
	char ida_reg[40] = "", noah_reg[40] = "", *id, *ics, *syg = NULL, *ferie = NULL;
	char sofie[128], mads[128], maja[128], lars[128], path[256];
	json_t *e, *notices, *audit, *unmatched;

	if (!s_setup(&f, "municipal")) {
		CU_FAIL("the simulators, Radicale or kanald did not start");
		return;
	}
	s_person_path(&f, SOFIE, sofie, sizeof sofie);
	s_person_path(&f, MADS, mads, sizeof mads);
	s_person_path(&f, MAJA, maja, sizeof maja);
	s_person_path(&f, LARS, lars, sizeof lars);

	/* -- Parents report in the app: Ida sick, Noah on holiday; Oliver checks in. */
	id = s_register(&f, "{\"kind\":\"sick\",\"child_id\":\"child-101\",\"date\":\"2026-11-24\","
			    "\"comment\":\"Feber i nat\"}");
	CU_ASSERT_PTR_NOT_NULL(id);
	snprintf(ida_reg, sizeof ida_reg, "daycare-reg-%s", id ? id : "?");
	free(id);
	id = s_register(&f, "{\"kind\":\"holiday\",\"child_id\":\"child-103\","
			    "\"from\":\"2026-11-25\",\"to\":\"2026-11-27\"}");
	CU_ASSERT_PTR_NOT_NULL(id);
	snprintf(noah_reg, sizeof noah_reg, "daycare-reg-%s", id ? id : "?");
	free(id);
	id = s_register(&f, "{\"kind\":\"checkin\",\"child_id\":\"child-102\","
			    "\"at\":\"2026-11-24T07:12:00+01:00\"}");
	CU_ASSERT_PTR_NOT_NULL(id);
	free(id);

	/* -- HR: a pedagogue at Solsikken is sick today; another has a week's holiday. */
	syg = s_hr(&f, "{\"employment\":\"E-1001\",\"code\":\"SYG\",\"start\":\"24.11.2026\","
		       "\"end\":\"24.11.2026\"}");
	ferie = s_hr(&f, "{\"employment\":\"E-1002\",\"code\":\"FERIE\",\"start\":\"06.07.2026\","
			 "\"end\":\"10.07.2026\"}");
	CU_ASSERT_PTR_NOT_NULL(syg);
	CU_ASSERT_PTR_NOT_NULL(ferie);

	/* -- A case system sends letters. */
	for (size_t k = 0; k < N_LETTERS; k++)
		s_send_letter(&f, &s_letters[k]);

	/* The staffing view: both children expected away. */
	e = s_wait_staffing(&f, "solsikken", ida_reg, "absent");
	CU_ASSERT(e && !strcmp(json_string_value(json_object_get(e, "ref")) ?: "", "child-101"));
	CU_ASSERT(e && !strcmp(json_string_value(json_object_get(e, "from")) ?: "", "2026-11-24"));
	json_decref(e);
	e = s_wait_staffing(&f, "solsikken", noah_reg, "absent");
	CU_ASSERT(e && !strcmp(json_string_value(json_object_get(e, "ref")) ?: "", "child-103"));
	CU_ASSERT(e && !strcmp(json_string_value(json_object_get(e, "to")) ?: "", "2026-11-27"));
	json_decref(e);

	/* The custody holders' calendars: Ida in both parents', Noah in his mother's only. */
	CU_ASSERT(s_wait_cal(&f, sofie, 1));
	CU_ASSERT(s_wait_cal(&f, mads, 1));
	CU_ASSERT(s_wait_cal(&f, maja, 1));
	for (int k = 0; k < 2; k++) {
		ics = s_cal_only(&f, k ? mads : sofie);
		CU_ASSERT(s_has(ics, "SUMMARY:Ida: fravær"));
		CU_ASSERT(s_has(ics, "DTSTART;VALUE=DATE:20261124"));
		CU_ASSERT(s_has(ics, "DTEND;VALUE=DATE:20261125"));
		s_assert_lacks("a parent's calendar event", ics, "syg"); /* health data */
		s_assert_lacks("a parent's calendar event", ics, "Feber");
		s_assert_no_cpr("a parent's calendar event", ics);
		free(ics);
	}
	ics = s_cal_only(&f, maja);
	CU_ASSERT(s_has(ics, "SUMMARY:Noah: fravær"));
	CU_ASSERT(s_has(ics, "DTSTART;VALUE=DATE:20261125"));
	CU_ASSERT(s_has(ics, "DTEND;VALUE=DATE:20261128"));
	s_assert_lacks("a parent's calendar event", ics, "syg");
	free(ics);

	/* The pedagogue's sickness: one neutral notice to Solsikken's parents, the staffing
	 * view, and the employee's calendar; the holiday in the other's calendar. */
	snprintf(path, sizeof path, "/E-1001/kanal/kanal-hr-absence-%s.ics", syg ? syg : "?");
	ics = s_wait_ics(&f, path, "SUMMARY:Fravær");
	CU_ASSERT_PTR_NOT_NULL(ics);
	CU_ASSERT(s_has(ics, "DTSTART;VALUE=DATE:20261124"));
	s_assert_lacks("the employee's calendar event", ics, "SYG");
	free(ics);
	snprintf(path, sizeof path, "/E-1002/kanal/kanal-hr-absence-%s.ics", ferie ? ferie : "?");
	ics = s_wait_ics(&f, path, "SUMMARY:Ferie");
	CU_ASSERT_PTR_NOT_NULL(ics);
	CU_ASSERT(s_has(ics, "DTSTART;VALUE=DATE:20260706"));
	CU_ASSERT(s_has(ics, "DTEND;VALUE=DATE:20260711"));
	free(ics);
	{
		char ext[80];
		snprintf(ext, sizeof ext, "staff-absence-%s", syg ? syg : "?");
		e = s_wait_staffing(&f, "solsikken", ext, "absent");
		CU_ASSERT(e &&
			  !strcmp(json_string_value(json_object_get(e, "ref")) ?: "", "E-1001"));
		json_decref(e);
	}

	/* -- The sickness was registered by mistake: HR cancels it. */
	if (syg) {
		char body[128], *again;
		snprintf(body, sizeof body, "{\"id\":\"%s\",\"action\":\"cancel\"}", syg);
		again = s_hr(&f, body);
		CU_ASSERT_PTR_NOT_NULL(again);
		free(again);
	}
	snprintf(path, sizeof path, "/E-1001/kanal/kanal-hr-absence-%s.ics", syg ? syg : "?");
	ics = s_wait_ics(&f, path, "STATUS:CANCELLED");
	CU_ASSERT_PTR_NOT_NULL(ics);
	free(ics);
	CU_ASSERT_EQUAL(s_cal_count(&f, "/E-1001/kanal/"), 1);
	CU_ASSERT_EQUAL(s_cal_count(&f, "/E-1002/kanal/"), 1);

	/* The staffing view learns of the cancellation too: the pedagogue is expected back. */
	{
		char ext[80];
		snprintf(ext, sizeof ext, "staff-absence-%s", syg ? syg : "?");
		e = s_wait_staffing(&f, "solsikken", ext, "cancelled");
		CU_ASSERT_PTR_NOT_NULL(e);
		if (!e)
			s_say("a cancelled absence stays 'absent' in the staffing view: no route "
			      "takes "
			      "staff.absence.cancelled to the daycare system");
		json_decref(e);
	}

	/* -- Noah's parents withdraw the holiday: the staffing view and his mother's calendar
	 *    follow. */
	{
		char body[160], *wid;
		snprintf(body, sizeof body,
			 "{\"kind\":\"withdrawn\",\"child_id\":\"child-103\",\"withdraws\":\"%s\"}",
			 noah_reg + strlen("daycare-reg-"));
		wid = s_register(&f, body);
		CU_ASSERT_PTR_NOT_NULL(wid);
		free(wid);
	}
	e = s_wait_staffing(&f, "solsikken", noah_reg, "cancelled");
	CU_ASSERT_PTR_NOT_NULL(e);
	if (!e)
		s_say("a withdrawn absence stays 'absent' in the staffing view: no route takes "
		      "child.absence.withdrawn to the daycare system");
	json_decref(e);
	{
		size_t n = 0;
		char *list = radicale_list(f.r, "kanal", maja, &n), *nl;
		snprintf(path, sizeof path, "%s%.*s", maja,
			 list && (nl = strchr(list, '\n')) ? (int)(nl - list) : 0,
			 list ? list : "");
		free(list);
		ics = s_wait_ics(&f, path, "STATUS:CANCELLED");
		CU_ASSERT_PTR_NOT_NULL(ics);
		if (!ics)
			s_say("a withdrawn absence stays in the custody holder's calendar: no "
			      "route "
			      "takes child.absence.withdrawn to family-calendar");
		free(ics);
	}

	/* Letters per channel, print jobs, Digital Post. */
	s_check_letters(&f);

	/* Exactly one notice, neutral: no reason, no name, no number. Read after everything
	 * else, so a second one would have had time to arrive. */
	notices = s_daycare_list(&f, "solsikken", "notices");
	CU_ASSERT_EQUAL(json_array_size(notices), 1);
	if (json_array_size(notices) >= 1) {
		json_t *n = json_array_get(notices, 0);
		char *text = json_dumps(n, JSON_COMPACT);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "audience")) ?: "",
				       "parents");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(n, "date")) ?: "",
				       "2026-11-24");
		s_assert_lacks("the notice to parents", text, "syg");
		s_assert_lacks("the notice to parents", text, "Hanne");
		s_assert_no_cpr("the notice to parents", text);
		free(text);
	}
	json_decref(notices);
	notices = s_daycare_list(&f, "maelkeboetten", "notices");
	CU_ASSERT_EQUAL(json_array_size(notices), 0);
	json_decref(notices);

	/* No calendar for Noah's father, nor for any parent beyond the custody holders. */
	CU_ASSERT_EQUAL(s_cal_count(&f, lars), -1);
	CU_ASSERT_EQUAL(s_cal_count(&f, sofie), 1);
	CU_ASSERT_EQUAL(s_cal_count(&f, mads), 1);
	CU_ASSERT_EQUAL(s_cal_count(&f, maja), 1);

	/* The check-in reached the institution's day overview, not `unmatched`. */
	CU_ASSERT(s_stream_has(&f, "delivered child.checkin",
			       "child-checkin-checkout-to-day-overview"));
	unmatched = s_sink(&f, "unmatched.jsonl");
	CU_ASSERT_EQUAL(json_array_size(unmatched), 0);
	json_decref(unmatched);

	/* One audit line per lookup: both children for their guardians, every letter's
	 * recipient, and the children of the recipients who have some (Mads: Ida and Oliver;
	 * Anne: Freja), looked up to see whom they hold custody of; masked, with route and
	 * purpose. */
	audit = s_audit(&f);
	CU_ASSERT_EQUAL(json_array_size(audit), 3 + N_LETTERS + 3);
	CU_ASSERT_EQUAL(s_audit_count(audit, OLIVER, "letter-to-citizen", NULL), 1);
	/* (ok, or cached when Mads's letter looked her up first) */
	CU_ASSERT_EQUAL(s_audit_count(audit, IDA, "child-absence-to-guardians", NULL), 1);
	/* Noah twice: his holiday, then its withdrawal (the second answer from the cache). */
	CU_ASSERT_EQUAL(s_audit_count(audit, NOAH, "child-absence-to-guardians", NULL), 2);
	/* Each recipient answered by the service at least once. Freja's may be twice: her own
	 * letter's lookup and her mother's (looking up Anne's children) can run at once, before
	 * either answer is cached. */
	for (size_t k = 0; k < N_LETTERS; k++) {
		size_t ok = s_audit_count(audit, s_letters[k].cpr, "letter-to-citizen", "ok");
		CU_ASSERT(ok >= 1);
		if (ok < 1)
			s_say("%s: no lookup of its recipient answered ok (%zu in all)",
			      s_letters[k].id,
			      s_audit_count(audit, s_letters[k].cpr, "letter-to-citizen", NULL));
	}
	{
		size_t i;
		json_t *l;
		json_array_foreach(audit, i, l)
		{
			const char *route = json_string_value(json_object_get(l, "route"));
			const char *purpose = json_string_value(json_object_get(l, "purpose"));
			const char *cpr = json_string_value(json_object_get(l, "cpr"));
			CU_ASSERT(cpr && strlen(cpr) == 11 && !strcmp(cpr + 6, "-XXXX"));
			CU_ASSERT_PTR_NOT_NULL(route);
			CU_ASSERT_STRING_EQUAL(purpose ?: "",
					       !strcmp(route ?: "", "letter-to-citizen")
						       ? "letter delivery"
						       : "guardians' calendars");
		}
	}
	json_decref(audit);

	/* Nothing ended in the dead letters. */
	s_assert_no_dead_letters(&f);
	free(syg);
	free(ferie);
	s_teardown(&f);
}

/* The institution's list `what` (day, vacation-plan, staffing), waiting until it has n
 * entries (new reference; what it has after the wait otherwise). */
static json_t *s_wait_list(fixture_t *f, const char *inst, const char *what, size_t n)
{
	int64_t deadline = kanal_now_ms() + WAIT;
	json_t *list = NULL;

	do {
		json_decref(list);
		list = s_daycare_list(f, inst, what);
		if (json_array_size(list) >= n)
			return list;
		s_pump(f, 100);
	} while (kanal_now_ms() < deadline);
	s_say("%s of %s has %zu entries, not %zu", what, inst, json_array_size(list), n);
	return list;
}

/* The `field` of the entry of `list` whose `key` is `value` ("" when none). */
static const char *s_entry(json_t *list, const char *key, const char *value, const char *field)
{
	size_t i;
	json_t *e;

	json_array_foreach(
		list, i, e) if (!strcmp(json_string_value(json_object_get(e, key)) ?: "",
					value)) return json_string_value(json_object_get(e, field))
		?: "";
	return "";
}

/* The demo's morning — the daycare simulator's whole script (sick, check-ins, pickups, a
 * holiday and its withdrawal, a survey answer, a day off, check-outs), HR absences of every
 * kind and a notice from another system — and every event reaches someone who acts on
 * it: nothing in `unmatched`, nothing dead. */
static void test_the_morning_leaves_nothing_unmatched(void)
{
	fixture_t f;
	json_t *j, *list, *unmatched, *e;
	char *ids[4] = { NULL };
	static const char *const codes[] = { "BARN1", "OMSORG", "AFSP", "FERIE" };
	static const char *const kinds[] = { "child-sick", "care-day", "time-off", "holiday" };
	static const char *const emps[] = { "E-1000", "E-1001", "E-1002", "E-1001" };
	char *notice;
	size_t i;

	if (!s_setup(&f, "municipal-unmatched")) {
		CU_FAIL("the simulators, Radicale or kanald did not start");
		return;
	}
	j = s_sim_post(f.sim[SIM_DAYCARE], "/api/v1/registrations?script=11", "{}");
	CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "registrations")), 11);
	json_decref(j);
	for (i = 0; i < 4; i++) {
		char body[200];
		snprintf(body, sizeof body,
			 "{\"employment\":\"%s\",\"code\":\"%s\",\"start\":\"%d.11.2026\","
			 "\"end\":\"%d.11.2026\"}",
			 emps[i], codes[i], 23 + (int)i, 23 + (int)i);
		ids[i] = s_hr(&f, body);
		CU_ASSERT_PTR_NOT_NULL(ids[i]);
	}
	notice = kd_event("intra", "intra-notice-1", "daycare.notice.post",
			  "{\"institution\":\"maelkeboetten\",\"title\":\"Bedsteforældredag\","
			  "\"text\":\"Fredag er bedsteforældre velkomne fra kl. 14.\"}");
	CU_ASSERT(notice && kd_send_event(f.kd, notice, "accepted", WAIT, NULL));
	free(notice);

	/* The day overviews: Noah's and Olivia's check-ins and check-outs, and the pickups. */
	list = s_wait_list(&f, "solsikken", "day", 4);
	CU_ASSERT_STRING_EQUAL(s_entry(list, "kind", "pickup", "person"), "Mormor Inge");
	json_decref(list);
	list = s_wait_list(&f, "maelkeboetten", "day", 2);
	CU_ASSERT_STRING_EQUAL(s_entry(list, "kind", "checkin", "child"), "child-202");
	json_decref(list);
	/* The survey answer in the staffing plan. */
	list = s_wait_list(&f, "maelkeboetten", "vacation-plan", 1);
	CU_ASSERT_STRING_EQUAL(s_entry(list, "kind", "vacation", "survey"), "ferieplan");
	json_decref(list);
	/* Every HR code in the staffing view with its kind. */
	for (i = 0; i < 4; i++) {
		char ext[80];
		snprintf(ext, sizeof ext, "staff-absence-%s", ids[i] ? ids[i] : "?");
		e = s_wait_staffing(&f, "solsikken", ext, "absent");
		CU_ASSERT_STRING_EQUAL(
			e ? json_string_value(json_object_get(e, "absence_kind")) ?: "" : "",
			kinds[i]);
		json_decref(e);
		free(ids[i]);
	}
	/* The notice in the parents' app. */
	list = s_wait_list(&f, "maelkeboetten", "notices", 1);
	CU_ASSERT_STRING_EQUAL(s_entry(list, "source_event", "intra-notice-1", "title"),
			       "Bedsteforældredag");
	json_decref(list);
	/* The last check-out (the script's last registration) is in the day overview, so
	 * everything before it was polled and routed; give the last deliveries a moment. */
	s_pump(&f, 500);

	unmatched = s_sink(&f, "unmatched.jsonl");
	CU_ASSERT_EQUAL(json_array_size(unmatched), 0);
	json_array_foreach(unmatched, i, e)
		s_say("in unmatched: %s", json_string_value(json_object_get(e, "type")) ?: "?");
	json_decref(unmatched);
	s_assert_no_dead_letters(&f);
	s_teardown(&f);
}

/* The first line of the stream read so far (from `from` on) whose topic starts with one
 * of the prefixes and which holds needle; waits for it. Returns the index of the prefix
 * found, or -1. */
static int s_stream_first(fixture_t *f, size_t from, const char *const *prefixes,
			  const char *needle)
{
	int64_t deadline = kanal_now_ms() + WAIT;

	do {
		for (const char *p = f->stream ? f->stream + from : NULL; p && *p;) {
			const char *eol = strchr(p, '\n');
			size_t len = eol ? (size_t)(eol - p) : strlen(p);
			for (int k = 0; prefixes[k]; k++)
				if (!strncmp(p, prefixes[k], strlen(prefixes[k])) &&
				    memmem(p, len, needle, strlen(needle)))
					return k;
			p = eol ? eol + 1 : p + len;
		}
		s_pump(f, 50);
	} while (kanal_now_ms() < deadline);
	return -1;
}

/* The CPR service is down while a child is reported sick: the guardians' route retries
 * (the staffing view, which needs no lookup, is updated at once), and once the service is
 * back the custody holders' calendars get the event. Nothing is lost or dead. */
static void test_cpr_down_then_back(void)
{
	static const char *const outcomes[] = { "enrich.retrying child.absence.reported",
						"dead child.absence.reported", NULL };
	fixture_t f;
	char reg[40], emma[128], jonas[128], *id;
	json_t *e, *audit;
	int first;

	if (!s_setup(&f, "municipal-cpr-down")) {
		CU_FAIL("the simulators, Radicale or kanald did not start");
		return;
	}
	s_person_path(&f, EMMA, emma, sizeof emma);
	s_person_path(&f, JONAS, jonas, sizeof jonas);
	CU_ASSERT_EQUAL(upstream_fault(f.sim[SIM_CPR], "error", 0), 0);
	id = s_register(&f,
			"{\"kind\":\"sick\",\"child_id\":\"child-202\",\"date\":\"2026-11-24\"}");
	CU_ASSERT_PTR_NOT_NULL(id);
	snprintf(reg, sizeof reg, "daycare-reg-%s", id ? id : "?");
	free(id);

	/* The staffing view needs no lookup: it is updated at once. */
	e = s_wait_staffing(&f, "maelkeboetten", reg, "absent");
	CU_ASSERT_PTR_NOT_NULL(e);
	json_decref(e);

	/* The lookup fails (503); the route must say it will retry — not give the report up. */
	first = s_stream_first(&f, 0, outcomes, reg);
	CU_ASSERT_EQUAL(first, 0);
	if (first == 1)
		s_say("the report went to the dead letters at the first failed lookup: kanald does "
		      "not retry an enrich step whose service answered RETRY (the route's retry "
		      "policy covers only the delivery)");
	CU_ASSERT_EQUAL(s_cal_count(&f, emma), -1);

	/* The service is back. */
	CU_ASSERT_EQUAL(upstream_fault(f.sim[SIM_CPR], "none", 0), 0);
	if (first == 1) {
		/* Nothing is lost even so: the dead letter replays once the service answers. */
		char *reply = kd_admin(f.kd, "{\"cmd\":\"dlq.list\"}", WAIT), req[128];
		json_t *root = reply ? json_loads(reply, 0, NULL) : NULL;
		json_int_t dead_id = json_integer_value(
			json_object_get(json_array_get(json_object_get(root, "items"), 0), "id"));
		free(reply);
		json_decref(root);
		snprintf(req, sizeof req, "{\"cmd\":\"dlq.replay\",\"ids\":[%lld]}",
			 (long long)dead_id);
		reply = kd_admin(f.kd, req, WAIT);
		CU_ASSERT(reply && strstr(reply, "\"ok\":true"));
		free(reply);
	}
	/* The custody holders' calendars get the report. */
	if (!s_wait_cal(&f, emma, 1) && first == 1)
		s_say("and the replayed dead letter did not get there either: a dead letter made "
		      "by "
		      "a failed enrich step records the destination 'deadletter', so its replay is "
		      "dead again at once ('unmatched') and never runs the route's enrich and "
		      "'to'");
	CU_ASSERT_EQUAL(s_cal_count(&f, emma), 1);
	CU_ASSERT(s_wait_cal(&f, jonas, 1));
	{
		char *ics = s_cal_only(&f, emma);
		CU_ASSERT(s_has(ics, "SUMMARY:William: fravær"));
		free(ics);
	}

	/* The audit log has the failed lookup and the answered one. */
	audit = s_audit(&f);
	CU_ASSERT(s_audit_count(audit, WILLIAM, "child-absence-to-guardians", "unavailable") >= 1);
	CU_ASSERT_EQUAL(s_audit_count(audit, WILLIAM, "child-absence-to-guardians", "ok"), 1);
	json_decref(audit);
	s_assert_no_dead_letters(&f);
	s_teardown(&f);
}

/* ---- receipts back to the sender ---------------------------------------------------------- */

/* The final statuses the case system got for `letter` (new reference: an array). */
static json_t *s_finals_at_sender(fixture_t *f, const char *letter)
{
	json_t *bodies = webhook_rx_bodies(f->case_system), *out = json_array(), *ev;
	size_t i;

	json_array_foreach(bodies, i, ev)
	{
		json_t *d = json_object_get(ev, "data");
		if (!strcmp(json_string_value(json_object_get(ev, "type")) ?: "",
			    "post.letter.status") &&
		    !strcmp(json_string_value(json_object_get(d, "letter")) ?: "", letter))
			json_array_append(out, ev);
	}
	json_decref(bodies);
	return out;
}

/* Each path a letter can take — digital (the receipt), paper (not enrolled), and refused
 * by both channels (the dead letters) — ends in exactly one final status at the case system
 * that sent it, saying sent/failed, the channel, the reason and the department. */
static void test_every_letter_ends_with_one_final_status_at_the_sender(void)
{
	static const struct {
		const char *id, *cpr, *filename, *status, *channel, *reason;
	} cases[] = {
		{ "brev-final-digital", MADS, "plads.pdf", "sent", "digital", NULL },
		{ "brev-final-paper", BENT, "plads.pdf", "sent", "physical", "not-enrolled" },
		/* A file name neither channel takes: Digital Post refuses, the physical letter
		 * (the fallback) refuses too, and the letter ends in the dead letters. */
		{ "brev-final-refused", ANNE, "plads/..pdf", "failed", "physical", "filename" },
	};
	const size_t n = sizeof cases / sizeof cases[0];
	fixture_t f;
	size_t done = 0;

	if (!s_setup(&f, "municipal-receipts")) {
		CU_FAIL("the municipality did not start");
		return;
	}
	for (size_t k = 0; k < n; k++) {
		json_t *ev = json_pack(
			"{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}, "
			"s:{s:s, s:s, s:s}}}",
			"specversion", "1.0", "id", cases[k].id, "source", "sagssystem", "type",
			"post.letter.send", "correlationid", "sag-2026-99", "data", "recipient_cpr",
			cases[k].cpr, "label", "Din plads", "sender", "label", "Børn og Unge",
			"department", "boern-unge", "document", "filename", cases[k].filename,
			"language", "da", "content", "JVBERi0xLjQKJcOkw7zDtsOfCg==");
		char *text = json_dumps(ev, JSON_COMPACT);
		CU_ASSERT(kd_send_event(f.kd, text, "accepted", WAIT, NULL));
		free(text);
		json_decref(ev);
	}
	/* Wait until every letter has a final status at the sender, then a little longer: a
	 * second one would be a bug. */
	for (int64_t until = kanal_now_ms() + 3 * WAIT; done < n && kanal_now_ms() < until;) {
		done = 0;
		for (size_t k = 0; k < n; k++) {
			json_t *got = s_finals_at_sender(&f, cases[k].id);
			done += json_array_size(got) > 0;
			json_decref(got);
		}
		s_pump(&f, 200);
	}
	s_pump(&f, 1500);
	for (size_t k = 0; k < n; k++) {
		json_t *got = s_finals_at_sender(&f, cases[k].id);
		json_t *d = json_object_get(json_array_get(got, 0), "data");
		const char *reason = json_string_value(json_object_get(d, "reason"));

		CU_ASSERT_EQUAL(json_array_size(got), 1);
		if (json_array_size(got) != 1)
			s_say("%s: %zu final statuses at the sender", cases[k].id,
			      json_array_size(got));
		CU_ASSERT_TRUE(json_is_true(json_object_get(d, "final")));
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "status")) ?: "",
				       cases[k].status);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "channel")) ?: "",
				       cases[k].channel);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "letter_source")) ?: "",
				       "sagssystem");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
					       json_object_get(d, "sender"), "department"))
					       ?: "",
				       "boern-unge");
		CU_ASSERT_PTR_NOT_NULL(reason);
		if (cases[k].reason)
			CU_ASSERT_PTR_NOT_NULL(reason && strstr(reason, cases[k].reason));
		/* The route's area, and which of its channels carried the letter: Digital Post
		 * is the primary, paper the secondary. */
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "area")) ?: "",
				       "letters");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "channel_rank")) ?: "",
				       strcmp(cases[k].channel, "digital") ? "secondary"
									   : "primary");
		json_decref(got);
	}
	/* The refused letter is in the dead letters: the status is how its sender learns. */
	{
		char *reply = kd_admin(f.kd, "{\"cmd\":\"dlq.list\"}", WAIT);
		CU_ASSERT_PTR_NOT_NULL(reply && strstr(reply, "brev-final-refused"));
		free(reply);
	}
	s_teardown(&f);
}

/* The parents' app's confirmations of registration `reg` (new reference: an array). */
static json_t *s_confirmations(fixture_t *f, const char *reg)
{
	char path[128];
	json_t *j, *list;

	snprintf(path, sizeof path, "/api/v1/registrations/%s/confirmations", reg);
	j = s_sim_get(f->sim[SIM_DAYCARE], path);
	list = json_incref(json_object_get(j, "confirmations"));
	json_decref(j);
	return list ? list : json_array();
}

/* Every parent's report — sick, its withdrawal, a pickup, a survey answer — ends with
 * exactly one final confirmation in the parents' app once the daycare system took it; a
 * report it refuses (an institution it does not know) ends in the dead letters and its
 * parent gets one `failed` with the reason. A check-in (the institution's tablet, not a
 * parent) gets none. */
static void test_every_report_ends_with_one_confirmation_in_the_parents_app(void)
{
	struct {
		const char *query, *json, *status, *reason;
		char *id;
	} cases[] = {
		{ "", "{\"kind\":\"sick\",\"child_id\":\"child-101\",\"date\":\"2026-11-24\"}",
		  "confirmed", "staffing view", NULL },
		{ "", NULL, "confirmed", "withdrawal", NULL }, /* withdraws the first */
		{ "",
		  "{\"kind\":\"pickup\",\"child_id\":\"child-102\",\"date\":\"2026-11-24\","
		  "\"time\":\"15:30\",\"mode\":\"person\",\"person_name\":\"Mormor Inge\"}",
		  "confirmed", "day overview", NULL },
		{ "",
		  "{\"kind\":\"vacation-survey\",\"child_id\":\"child-201\",\"survey_id\":"
		  "\"ferieplan\",\"deadline\":\"2026-12-01\",\"answers\":[{\"date\":\"2026-12-28\","
		  "\"answer\":\"away\"}]}",
		  "confirmed", "staffing plan", NULL },
		{ "?unchecked=true",
		  "{\"kind\":\"sick\",\"child_id\":\"child-999\",\"institution_id\":\"lukket\","
		  "\"date\":\"2026-11-24\"}",
		  "failed", "404", NULL },
		{ "",
		  "{\"kind\":\"checkin\",\"child_id\":\"child-103\",\"at\":"
		  "\"2026-11-24T07:40:00+01:00\"}",
		  NULL, NULL, NULL },
	};
	const size_t n = sizeof cases / sizeof cases[0];
	fixture_t f;
	size_t done = 0, want = 0;
	char *reply;

	if (!s_setup(&f, "municipal-confirm")) {
		CU_FAIL("the municipality did not start");
		return;
	}
	for (size_t k = 0; k < n; k++) {
		char path[128], withdraw[160];
		const char *json = cases[k].json;
		json_t *j;

		if (!json) {
			snprintf(withdraw, sizeof withdraw,
				 "{\"kind\":\"withdrawn\",\"child_id\":\"child-101\",\"withdraws\":"
				 "\"%s\"}",
				 cases[0].id ? cases[0].id : "?");
			json = withdraw;
		}
		snprintf(path, sizeof path, "/api/v1/registrations%s", cases[k].query);
		j = s_sim_post(f.sim[SIM_DAYCARE], path, json);
		if (json_string_value(json_object_get(j, "id")))
			cases[k].id = strdup(json_string_value(json_object_get(j, "id")));
		CU_ASSERT_PTR_NOT_NULL(cases[k].id);
		json_decref(j);
		want += cases[k].status != NULL;
	}
	/* Wait until every report is confirmed, then a little longer: a second confirmation
	 * would be a bug. */
	for (int64_t until = kanal_now_ms() + 3 * WAIT; done < want && kanal_now_ms() < until;) {
		done = 0;
		for (size_t k = 0; k < n; k++) {
			json_t *got = cases[k].status && cases[k].id
					      ? s_confirmations(&f, cases[k].id)
					      : json_array();
			done += json_array_size(got) > 0;
			json_decref(got);
		}
		s_pump(&f, 200);
	}
	s_pump(&f, 1500);
	for (size_t k = 0; k < n; k++) {
		json_t *got = s_confirmations(&f, cases[k].id ? cases[k].id : "?");
		json_t *c = json_array_get(got, 0);
		const char *reason = json_string_value(json_object_get(c, "reason"));
		char report[64];

		snprintf(report, sizeof report, "daycare-reg-%s", cases[k].id ? cases[k].id : "?");
		CU_ASSERT_EQUAL(json_array_size(got), cases[k].status ? 1u : 0u);
		if (json_array_size(got) != (cases[k].status ? 1u : 0u))
			s_say("registration %s: %zu confirmations in the parents' app",
			      cases[k].id ? cases[k].id : "?", json_array_size(got));
		if (cases[k].status) {
			CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(c, "status"))
						       ?: "",
					       cases[k].status);
			CU_ASSERT_TRUE(json_is_true(json_object_get(c, "final")));
			CU_ASSERT_STRING_EQUAL(
				json_string_value(json_object_get(c, "report")) ?: "", report);
			CU_ASSERT_PTR_NOT_NULL(reason && strstr(reason, cases[k].reason));
			if (reason)
				s_assert_no_cpr("a confirmation's reason", reason);
		}
		json_decref(got);
	}
	/* The refused report waits in the dead letters; the confirmation told its parent. */
	reply = kd_admin(f.kd, "{\"cmd\":\"dlq.list\"}", WAIT);
	CU_ASSERT_PTR_NOT_NULL(reply && cases[4].id && strstr(reply, cases[4].id));
	free(reply);
	for (size_t k = 0; k < n; k++)
		free(cases[k].id);
	s_teardown(&f);
}

TEST_MAIN("municipal", TEST(test_a_municipal_morning), TEST(test_cpr_down_then_back),
	  TEST(test_the_morning_leaves_nothing_unmatched),
	  TEST(test_every_letter_ends_with_one_final_status_at_the_sender),
	  TEST(test_every_report_ends_with_one_confirmation_in_the_parents_app))
