/*
 * sdk/plugin_wire.c — sending and receiving the messages of plugin_wire.h, the protocol
 * between kanald's proxy thread for an isolated instance and kanal-plugin-host.
 *
 * Both ends use these two functions, so the framing — [peer] [kind] [head JSON] [event] —
 * is written down once. A malformed message (wrong frame count, a head that is not a JSON
 * object) is read whole and dropped; the caller hears KANAL_EPARSE and goes on, because
 * neither end may be brought down by what the other sends.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "plugin_wire.h"

/* The most frames a message may have: peer, kind, head, event. */
#define WIRE_MAX_FRAMES 4

static int s_send_frame(void *sock, const void *data, size_t len, int flags)
{
	while (zmq_send(sock, data, len, flags) < 0) {
		if (errno != EINTR)
			return KANAL_EIO;
	}
	return 0;
}

/* Frees an event text once ZeroMQ has sent it (zero-copy). */
static void s_free_text(void *data, void *hint)
{
	(void)hint;
	kanal_free(data);
}

/* Sends text as the last frame without copying it. Takes text, sent or not. */
static int s_send_owned(void *sock, char *text, size_t len)
{
	zmq_msg_t m;

	if (zmq_msg_init_data(&m, text, len, s_free_text, NULL) != 0) {
		kanal_free(text);
		return KANAL_ENOMEM;
	}
	while (zmq_msg_send(&m, sock, 0) < 0) {
		if (errno != EINTR) {
			int saved = errno;
			zmq_msg_close(&m); /* frees text */
			errno = saved;
			return KANAL_EIO;
		}
	}
	return 0;
}

int kanal__wire_send(void *sock, const char *peer, char kind, json_t *head,
		     const kanal_msg_t *event)
{
	char *head_text = NULL, *event_text = NULL;
	size_t event_len = 0;
	int rc;

	if (!head)
		head = json_object();
	head_text = head ? json_dumps(head, JSON_COMPACT) : NULL;
	json_decref(head);
	if (event)
		event_text = kanal_msg_to_json(event, &event_len);
	if (!head_text || (event && !event_text)) {
		rc = KANAL_ENOMEM;
		goto out;
	}
	if (peer && (rc = s_send_frame(sock, peer, strlen(peer), ZMQ_SNDMORE)) < 0)
		goto out;
	if ((rc = s_send_frame(sock, &kind, 1, ZMQ_SNDMORE)) < 0)
		goto out;
	rc = s_send_frame(sock, head_text, strlen(head_text), event_text ? ZMQ_SNDMORE : 0);
	if (rc < 0 || !event_text)
		goto out;
	rc = s_send_owned(sock, event_text, event_len);
	event_text = NULL;
out:
	free(head_text);
	kanal_free(event_text);
	return rc;
}

void kanal__wire_clear(kanal_wire_t *w)
{
	if (!w)
		return;
	json_decref(w->head);
	free(w->event);
	memset(w, 0, sizeof *w);
}

/* Reads every frame of the next message into parts (up to WIRE_MAX_FRAMES; the rest are
 * read and dropped, and *too_many is set). Returns the number kept, 0 when nothing is
 * waiting, or a negative code. */
static int s_recv_frames(void *sock, zmq_msg_t *parts, bool *too_many)
{
	int n = 0, more = 1;

	*too_many = false;
	while (more) {
		zmq_msg_t spare, *m = n < WIRE_MAX_FRAMES ? &parts[n] : &spare;
		int rc;

		zmq_msg_init(m);
		/* Only the first frame can be missing: the rest of a message arrives with it. */
		do {
			rc = zmq_msg_recv(m, sock, n == 0 ? ZMQ_DONTWAIT : 0);
		} while (rc < 0 && errno == EINTR);
		if (rc < 0) {
			int err = errno;
			zmq_msg_close(m);
			for (int i = 0; i < n && i < WIRE_MAX_FRAMES; i++)
				zmq_msg_close(&parts[i]);
			if (n == 0 && err == EAGAIN)
				return 0;
			return err == ETERM ? KANAL_ECLOSED : KANAL_EIO;
		}
		more = zmq_msg_more(m);
		if (m == &spare) {
			zmq_msg_close(m);
			*too_many = true;
		} else {
			n++;
		}
	}
	return n;
}

/* Fills w from the frames of one message (peer frame first when routed). Returns 1 or
 * KANAL_EPARSE / KANAL_ENOMEM. */
static int s_decode(zmq_msg_t *parts, int n, bool routed, kanal_wire_t *w)
{
	int first = routed ? 1 : 0;
	size_t len;

	if (n - first < 2 || n - first > 3 || zmq_msg_size(&parts[first]) != 1)
		return KANAL_EPARSE;
	if (routed) {
		len = zmq_msg_size(&parts[0]);
		if (len >= sizeof w->peer)
			return KANAL_EPARSE;
		memcpy(w->peer, zmq_msg_data(&parts[0]), len);
		w->peer[len] = '\0';
	}
	w->kind = *(const char *)zmq_msg_data(&parts[first]);
	w->head = json_loadb(zmq_msg_data(&parts[first + 1]), zmq_msg_size(&parts[first + 1]),
			     JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(w->head))
		return KANAL_EPARSE;
	if (n - first == 3) {
		len = zmq_msg_size(&parts[first + 2]);
		w->event = malloc(len + 1);
		if (!w->event)
			return KANAL_ENOMEM;
		memcpy(w->event, zmq_msg_data(&parts[first + 2]), len);
		w->event[len] = '\0';
		w->event_len = len;
	}
	return 1;
}

int kanal__wire_recv(void *sock, bool routed, kanal_wire_t *out)
{
	zmq_msg_t parts[WIRE_MAX_FRAMES];
	bool too_many;
	int n, rc;

	memset(out, 0, sizeof *out);
	n = s_recv_frames(sock, parts, &too_many);
	if (n <= 0)
		return n;
	rc = too_many ? KANAL_EPARSE : s_decode(parts, n, routed, out);
	for (int i = 0; i < n; i++)
		zmq_msg_close(&parts[i]);
	if (rc < 0)
		kanal__wire_clear(out);
	return rc;
}

int kanal__wire_event(const kanal_wire_t *w, size_t max_bytes, kanal_msg_t **out,
		      kanal_error_t *err)
{
	*out = NULL;
	if (!w->event) {
		kanal_error_set(err, "<wire>", 0, 0, NULL, "the message carries no event");
		return KANAL_EINVAL;
	}
	return kanal_msg_parse(w->event, w->event_len, max_bytes, out, err);
}
