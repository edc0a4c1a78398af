/*
 * tests/integration/test_diskfull.c — kanald with its journal on a full disk (issue 12). The
 * state_dir is a small tmpfs mounted under the test's folder (root only: as another user
 * the test prints why it is skipped and passes), filled to the last byte while a sender
 * keeps sending. What must hold, as docs/delivery.md ("When the disk is full") promises:
 *
 *   - every answer is `accepted` (and the event is then delivered once) or a refusal that
 *     says "disk full" (and the event is never delivered);
 *   - status and /readyz say not writable while the disk is full, however long it stays
 *     full (an empty commit succeeds on a full disk; the probe must not be fooled);
 *   - once space is freed kanald accepts again by itself, and no delivered event stays
 *     open;
 *   - a restart delivers nothing a second time.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kanald.h"
#include "test.h"

#define WAIT 10000 /* ms: the bound of every wait */
#define TMPFS_SIZE "8m"
#define MAX_FULL 400 /* events sent into the full disk at most */

static const char *s_instances = "  - name: sink\n    plugin: sink\n"
				 "    options: { path: '@DIR@/delivered.jsonl', delay: 100ms }\n";
static const char *s_routes =
	"routes:\n"
	"  - name: to-sink\n    match: { type: test.diskfull }\n    to: sink\n";

/* The answer kanald gave for one event. */
typedef enum { ANSWER_ACCEPTED, ANSWER_REFUSED, ANSWER_OTHER } answer_t;

/* Sends the event `id` with about 4 KiB of data; fills why with a refusal's reason. */
static answer_t s_send(kd_t *kd, const char *id, char *why, size_t why_size)
{
	static char pad[4097];
	char *text = NULL, *reply;
	answer_t a = ANSWER_OTHER;
	json_t *o, *result;

	if (!pad[0])
		memset(pad, 'x', sizeof pad - 1);
	why[0] = '\0';
	if (asprintf(&text,
		     "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"diskfull-test\","
		     "\"type\":\"test.diskfull\",\"data\":{\"pad\":\"%s\"}}",
		     id, pad) < 0)
		return ANSWER_OTHER;
	reply = kd_send(kd, text, WAIT);
	free(text);
	o = reply ? json_loads(reply, 0, NULL) : NULL;
	/* A single event's reply is the result itself, or a batch's list of one. */
	result = json_is_array(json_object_get(o, "results"))
			 ? json_array_get(json_object_get(o, "results"), 0)
			 : o;
	if (json_is_string(json_object_get(result, "status"))) {
		const char *status = json_string_value(json_object_get(result, "status"));
		const char *reason = json_string_value(json_object_get(result, "reason"));
		if (!reason)
			reason = json_string_value(json_object_get(result, "error"));
		snprintf(why, why_size, "%s", reason ? reason : "");
		if (!strcmp(status, "accepted"))
			a = ANSWER_ACCEPTED;
		else if (!strcmp(status, "error"))
			a = ANSWER_REFUSED;
	}
	if (a == ANSWER_OTHER)
		fprintf(stderr, "    %s: unexpected reply %s\n", id, reply ? reply : "(none)");
	json_decref(o);
	free(reply);
	return a;
}

/* The journal's part of `status`: writable (1/0, -1 when not known) and open events. */
static int s_status(kd_t *kd, int64_t *open_events)
{
	char *reply = kd_admin(kd, "{\"cmd\":\"status\"}", WAIT);
	json_t *o = reply ? json_loads(reply, 0, NULL) : NULL;
	json_t *j = json_object_get(o, "journal");
	int writable = json_is_boolean(json_object_get(j, "writable"))
			       ? json_is_true(json_object_get(j, "writable"))
			       : -1;

	if (open_events)
		*open_events = json_integer_value(json_object_get(j, "open_events"));
	json_decref(o);
	free(reply);
	return writable;
}

static size_t s_discard(char *p, size_t size, size_t n, void *arg)
{
	return size * n;
}

/* The HTTP status of GET /readyz, or 0 when nothing answered. */
static long s_readyz(kd_t *kd)
{
	char url[300];
	long code = 0;
	CURL *c = curl_easy_init();

	if (!c)
		return 0;
	snprintf(url, sizeof url, "%s/readyz", kd->admin_http);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)WAIT);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_discard);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	return code;
}

/* Writes zeros to path until the filesystem is full. Returns the bytes written. */
static size_t s_fill(const char *path)
{
	static const char block[65536];
	size_t total = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		return 0;
	for (;;) {
		ssize_t w = write(fd, block, sizeof block);
		if (w <= 0)
			break;
		total += (size_t)w;
	}
	/* The last bytes, in small writes, so that not even a page is left. */
	for (;;) {
		ssize_t w = write(fd, block, 512);
		if (w <= 0)
			break;
		total += (size_t)w;
	}
	close(fd);
	return total;
}

/* How many times the event `id` reached the destination. */
static size_t s_delivered(const char *delivered, const char *id)
{
	char needle[128];

	snprintf(needle, sizeof needle, "\"id\":\"%s\"", id);
	return kd_count(delivered, needle);
}

static void test_full_disk_refuses_cleanly_and_recovers(void)
{
	char *conf = kd_config(s_instances, NULL), *delivered = NULL, *before = NULL;
	kd_t *kd = NULL;
	char state[1024], filler[1100], id[32], why[400];
	answer_t answers[MAX_FULL + 40];
	bool mounted = false;
	int n_sent = 0, n_refused = 0, n_accepted_full = 0, writable = -1;
	int64_t open_events = -1, deadline;

	if (geteuid() != 0) {
		printf("\n    skipped: mounting a small tmpfs for the journal needs root "
		       "(the test runs as root in CI)\n    ");
		free(conf);
		return;
	}
	kd = kd_prepare("diskfull", conf, s_routes);
	free(conf);
	REQUIRE(kd);
	snprintf(state, sizeof state, "%s/state", kd->dir);
	snprintf(filler, sizeof filler, "%s/filler", state);
	REQUIRE(mkdir(state, 0750) == 0 || errno == EEXIST);
	if (mount("tmpfs", state, "tmpfs", MS_NOSUID | MS_NODEV, "size=" TMPFS_SIZE ",mode=0750") <
	    0) {
		printf("\n    skipped: cannot mount a tmpfs on %s: %s\n    ", state,
		       strerror(errno));
		goto done;
	}
	mounted = true;
	REQUIRE(kd_launch(kd) == 0);

	/* A healthy start: accepted and delivered. */
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof id, "df-%d", n_sent);
		answers[n_sent++] = s_send(kd, id, why, sizeof why);
		CU_ASSERT_EQUAL(answers[n_sent - 1], ANSWER_ACCEPTED);
	}
	REQUIRE(kd_wait_lines(kd_path(kd, "delivered.jsonl"), 5, WAIT) >= 5);

	/* The disk fills up while ten accepted events are still being delivered (the sink
	 * takes 100 ms for each): their deliveries end while the journal cannot be written,
	 * and their done marks must not be forgotten. */
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof id, "df-%d", n_sent);
		answers[n_sent++] = s_send(kd, id, why, sizeof why);
		CU_ASSERT_EQUAL(answers[n_sent - 1], ANSWER_ACCEPTED);
	}
	REQUIRE(s_fill(filler) > 0);
	/* The sender goes on until refusals come, and a while after. */
	for (int i = 0; i < MAX_FULL && n_refused < 20; i++) {
		snprintf(id, sizeof id, "df-%d", n_sent);
		answers[n_sent] = s_send(kd, id, why, sizeof why);
		if (answers[n_sent] == ANSWER_REFUSED) {
			n_refused++;
			/* The refusal names the real cause. */
			if (!strstr(why, "disk full")) {
				fprintf(stderr, "    refusal without the cause: %s\n", why);
				CU_FAIL("a refusal does not say \"disk full\"");
			}
		} else if (answers[n_sent] == ANSWER_ACCEPTED) {
			n_accepted_full++;
		}
		CU_ASSERT_NOT_EQUAL(answers[n_sent], ANSWER_OTHER);
		n_sent++;
	}
	CU_ASSERT(n_refused > 0);

	/* Not writable while full, however long it stays full: the probe runs once a second
	 * and must not be fooled by an empty commit. */
	for (int i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL(s_status(kd, NULL), 0);
		CU_ASSERT_EQUAL(s_readyz(kd), 503);
		test_sleep_ms(1000);
	}
	CU_ASSERT_EQUAL(s_status(kd, NULL), 0);
	CU_ASSERT_EQUAL(s_readyz(kd), 503);

	/* Space comes back: kanald accepts again by itself. */
	unlink(filler);
	deadline = test_now_ms() + WAIT;
	while ((writable = s_status(kd, NULL)) != 1 && test_now_ms() < deadline)
		test_sleep_ms(100);
	CU_ASSERT_EQUAL(writable, 1);
	CU_ASSERT_EQUAL(s_readyz(kd), 200);
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof id, "df-%d", n_sent);
		answers[n_sent++] = s_send(kd, id, why, sizeof why);
		CU_ASSERT_EQUAL(answers[n_sent - 1], ANSWER_ACCEPTED);
	}

	/* Everything accepted is delivered and done; nothing stays open. */
	{
		size_t want = 0;
		for (int i = 0; i < n_sent; i++)
			want += answers[i] == ANSWER_ACCEPTED;
		kd_wait_lines(kd_path(kd, "delivered.jsonl"), want, WAIT);
	}
	deadline = test_now_ms() + WAIT;
	while (s_status(kd, &open_events) >= 0 && open_events != 0 && test_now_ms() < deadline)
		test_sleep_ms(100);
	/* Deliveries that ended while the journal could not be written are marked done all
	 * the same: the journal keeps their marks for the next commit that works. */
	CU_ASSERT_EQUAL(open_events, 0);

	delivered = test_read_file(kd_path(kd, "delivered.jsonl"), NULL);
	REQUIRE(delivered);
	for (int i = 0; i < n_sent; i++) {
		snprintf(id, sizeof id, "df-%d", i);
		if (answers[i] == ANSWER_ACCEPTED) {
			CU_ASSERT_EQUAL(s_delivered(delivered, id), 1);
		} else {
			/* What kanald said it did not accept must never be delivered. */
			CU_ASSERT_EQUAL(s_delivered(delivered, id), 0);
		}
	}

	/* A restart delivers nothing a second time. */
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	before = delivered;
	delivered = NULL;
	REQUIRE(kd_restart(kd) == 0);
	test_sleep_ms(1500);
	CU_ASSERT_EQUAL(s_status(kd, &open_events), 1);
	CU_ASSERT_EQUAL(open_events, 0);
	delivered = test_read_file(kd_path(kd, "delivered.jsonl"), NULL);
	REQUIRE(delivered);
	CU_ASSERT_STRING_EQUAL(delivered, before);
	CU_ASSERT_EQUAL(kd_stop(kd, SIGTERM, WAIT), 0);
	fprintf(stderr, "    (%d sent, %d accepted and %d refused while full)\n", n_sent,
		n_accepted_full, n_refused);
done:
	if (kd && kd->pid > 0)
		kd_stop(kd, SIGKILL, WAIT);
	if (mounted && umount2(state, MNT_DETACH) < 0)
		fprintf(stderr, "    cannot unmount %s: %s\n", state, strerror(errno));
	free(delivered);
	free(before);
	kd_destroy(&kd);
}

TEST_MAIN("diskfull", TEST(test_full_disk_refuses_cleanly_and_recovers))
