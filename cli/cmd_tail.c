/*
 * cli/cmd_tail.c — `kanalctl tail`: follow kanald's event stream.
 *
 * A SUB socket subscribes to the stream with the operator's topic prefixes. Each happening
 * arrives as two frames, topic and JSON payload (docs/design/wire.md), and becomes one
 * line — its time, topic, and a short summary of the payload's fields — or, with --json,
 * the payload itself, so that tail can feed jq. The broker masks CPR numbers before it
 * publishes; tail masks every line again, since a terminal or a log file is exactly where
 * personal data must not leak. stdout is flushed after each line because tail is often
 * piped.
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "kanalctl.h"

/* Fields shown first, in this order; the payload's other scalar fields follow. */
static const char *const s_leading[] = {
	"route", "destination", "attempt", "reason", "error", NULL
};
/* Fields never shown in the summary: the topic and the time already say them, or they
 * are internal numbers of no use on a terminal. */
static const char *const s_hidden[] = { "kind", "ts", "event", "delivery", NULL };

static volatile sig_atomic_t s_interrupted;

static void s_on_signal(int sig)
{
	(void)sig;
	s_interrupted = 1;
}

static bool s_in(const char *const *list, const char *key)
{
	for (; *list; list++)
		if (!strcmp(*list, key))
			return true;
	return false;
}

/* Formats the time of a happening as local HH:MM:SS.mmm into buf: from the payload's "ts"
 * (RFC 3339, UTC or with an offset) when it has one, else the time it was received. */
static void s_format_time(const char *ts, char *buf, size_t size)
{
	struct tm local;
	int64_t ms;
	time_t t;

	if (kanal_time_parse_rfc3339(ts, &ms) != 0)
		ms = kanal_wall_ms();
	/* Floor division, so that a time before 1970 keeps a positive millisecond. */
	t = (time_t)(ms / 1000 - (ms % 1000 < 0));
	localtime_r(&t, &local);
	snprintf(buf, size, "%02d:%02d:%02d.%03d", local.tm_hour, local.tm_min, local.tm_sec,
		 (int)(ms - (int64_t)t * 1000));
}

/* Appends " key=value" for a scalar JSON value (strings quoted when they hold blanks or
 * quotes) or a list of strings; skips objects and null. */
static void s_append_field(FILE *out, const char *key, json_t *value)
{
	const char *text;
	size_t i;
	json_t *item;

	switch (json_typeof(value)) {
	case JSON_STRING:
		text = json_string_value(value);
		if (*text && !strpbrk(text, " \t\"=")) {
			fprintf(out, " %s=%s", key, text);
			return;
		}
		fprintf(out, " %s=\"", key);
		for (; *text; text++) {
			if (*text == '"' || *text == '\\')
				fputc('\\', out);
			/* One happening, one line: control characters become blanks. */
			fputc((unsigned char)*text < 0x20 ? ' ' : *text, out);
		}
		fputc('"', out);
		return;
	case JSON_INTEGER:
		fprintf(out, " %s=%" JSON_INTEGER_FORMAT, key, json_integer_value(value));
		return;
	case JSON_REAL:
		fprintf(out, " %s=%g", key, json_real_value(value));
		return;
	case JSON_TRUE:
	case JSON_FALSE:
		fprintf(out, " %s=%s", key, json_is_true(value) ? "true" : "false");
		return;
	case JSON_ARRAY:
		fprintf(out, " %s=\"", key);
		json_array_foreach(value, i, item)
		{
			if (json_is_string(item))
				fprintf(out, "%s%s", i ? "; " : "", json_string_value(item));
		}
		fputc('"', out);
		return;
	default:
		return;
	}
}

/* Writes the summary of a payload — " id=… route=… destination=… attempt=… error=…" —
 * into a new string, or NULL when the payload is not a JSON object. */
static char *s_summary(json_t *root)
{
	const char *id = json_string_value(json_object_get(json_object_get(root, "event"), "id"));
	char *text = NULL;
	size_t len = 0, i;
	const char *key;
	json_t *value;
	FILE *out;

	if (!json_is_object(root))
		return NULL;
	out = open_memstream(&text, &len);
	if (!out)
		return NULL;
	if (id)
		s_append_field(out, "id", json_object_get(json_object_get(root, "event"), "id"));
	for (i = 0; s_leading[i]; i++) {
		value = json_object_get(root, s_leading[i]);
		if (value)
			s_append_field(out, s_leading[i], value);
	}
	json_object_foreach(root, key, value)
	{
		if (!s_in(s_leading, key) && !s_in(s_hidden, key))
			s_append_field(out, key, value);
	}
	fclose(out);
	return text;
}

/* Prints one happening. */
static void s_print(const ctl_t *ctl, const char *topic, char *payload, size_t len)
{
	json_t *root;
	char when[32], *summary;

	if (ctl->json) {
		/* Masking keeps the length, so valid JSON from the broker stays valid. */
		kanal_cpr_redact_inplace(payload);
		fwrite(payload, 1, strlen(payload), stdout);
		fputc('\n', stdout);
		fflush(stdout);
		return;
	}
	root = json_loadb(payload, len, 0, NULL);
	s_format_time(json_string_value(json_object_get(root, "ts")), when, sizeof when);
	summary = s_summary(root);
	if (summary && *summary)
		ctl_printf(stdout, "%s  %s %s\n", when, topic, summary);
	else if (summary)
		ctl_printf(stdout, "%s  %s\n", when, topic);
	else
		ctl_printf(stdout, "%s  %s  (not JSON) %.200s\n", when, topic, payload);
	fflush(stdout);
	free(summary);
	json_decref(root);
}

/* Receives one message's frames: the first is the topic, the second the payload; any
 * more are read and dropped. Returns 0 or -1 (errno set). Ownership: *topic and *payload
 * are new, NUL-terminated. */
static int s_receive(void *sock, char **topic, char **payload, size_t *payload_len)
{
	zmq_msg_t frame;
	int index = 0, more;

	*topic = NULL;
	*payload = NULL;
	*payload_len = 0;
	do {
		size_t n;
		char *copy;

		zmq_msg_init(&frame);
		if (zmq_msg_recv(&frame, sock, 0) < 0) {
			zmq_msg_close(&frame);
			goto fail;
		}
		more = zmq_msg_more(&frame);
		n = zmq_msg_size(&frame);
		if (index < 2) {
			copy = malloc(n + 1);
			if (!copy) {
				zmq_msg_close(&frame);
				errno = ENOMEM;
				goto fail;
			}
			memcpy(copy, zmq_msg_data(&frame), n);
			copy[n] = '\0';
			if (index == 0) {
				*topic = copy;
			} else {
				*payload = copy;
				*payload_len = n;
			}
		}
		zmq_msg_close(&frame);
		index++;
	} while (more);
	if (!*payload) {
		*payload = strdup("");
		if (!*payload)
			goto fail;
	}
	return 0;
fail:
	free(*topic);
	free(*payload);
	*topic = *payload = NULL;
	return -1;
}

int cmd_tail(ctl_t *ctl, int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = s_on_signal };
	zmq_pollitem_t item = { .events = ZMQ_POLLIN };
	char endpoint[512];
	void *zctx, *sock = NULL;
	int64_t received = 0;
	int i, status = CTL_EXIT_OK;

	if (ctl_endpoint(ctl, "stream", endpoint, sizeof endpoint) < 0)
		return CTL_EXIT_ERROR;
	zctx = zmq_ctx_new();
	if (!zctx) {
		ctl_error("cannot start ZeroMQ: %s", zmq_strerror(errno));
		return CTL_EXIT_ERROR;
	}
	sock = ctl_connect_secure(ctl, zctx, ZMQ_SUB, endpoint, "event stream");
	if (!sock) {
		status = CTL_EXIT_ERROR;
		goto done;
	}
	if (argc == 0)
		zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "", 0);
	for (i = 0; i < argc; i++)
		zmq_setsockopt(sock, ZMQ_SUBSCRIBE, argv[i], strlen(argv[i]));

	/* No SA_RESTART: Ctrl-C must interrupt the wait so that tail can close cleanly. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	item.socket = sock;
	while (!s_interrupted && !(ctl->count > 0 && received >= ctl->count)) {
		char *topic, *payload;
		size_t len;
		int rc = zmq_poll(&item, 1, ctl->timeout_given ? (long)ctl->timeout_ms : -1L);

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0) {
			ctl_error("reading the event stream at %s failed: %s", endpoint,
				  zmq_strerror(errno));
			status = CTL_EXIT_ERROR;
			goto done;
		}
		if (rc == 0) {
			/* Silence for the whole --timeout: a success only when tail was not waiting
			 * for a number of messages and saw something. */
			status = (ctl->count == 0 && received > 0) ? CTL_EXIT_OK : CTL_EXIT_NO;
			if (received == 0 && !ctl_curve_refused("event stream", endpoint))
				ctl_error("nothing on the event stream at %s within %lld ms",
					  endpoint, (long long)ctl->timeout_ms);
			else if (ctl->count > 0)
				ctl_error("%lld of %lld messages within the timeout",
					  (long long)received, (long long)ctl->count);
			goto done;
		}
		if (s_receive(sock, &topic, &payload, &len) < 0) {
			if (errno == EINTR)
				continue;
			ctl_error("reading the event stream at %s failed: %s", endpoint,
				  zmq_strerror(errno));
			status = CTL_EXIT_ERROR;
			goto done;
		}
		s_print(ctl, topic, payload, len);
		free(topic);
		free(payload);
		received++;
	}
done:
	ctl_close(sock);
	zmq_ctx_term(zctx);
	return status;
}
