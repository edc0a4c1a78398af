/*
 * broker/stream.c — the XPUB event stream. Subscriptions are counted from the socket's
 * verbose subscription messages so that payloads are only built while somebody listens.
 */
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "host.h"
#include "log.h"
#include "stream.h"

struct stream {
	void *sock;
	char endpoint[256];
	long subscriptions;
};

stream_t *stream_new(void *zctx, const char *endpoint, char *err, size_t err_size)
{
	stream_t *s = calloc(1, sizeof *s);
	int one = 1, zero = 0;
	size_t len;

	if (!s) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	if (!endpoint || !*endpoint)
		return s;
	s->sock = zmq_socket(zctx, ZMQ_XPUB);
	if (!s->sock)
		goto fail;
#ifdef ZMQ_XPUB_VERBOSER
	zmq_setsockopt(s->sock, ZMQ_XPUB_VERBOSER, &one, sizeof one);
#else
	zmq_setsockopt(s->sock, ZMQ_XPUB_VERBOSE, &one, sizeof one);
#endif
	zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof zero);
	if (zmq_bind(s->sock, endpoint) < 0)
		goto fail;
	len = sizeof s->endpoint;
	zmq_getsockopt(s->sock, ZMQ_LAST_ENDPOINT, s->endpoint, &len);
	return s;
fail:
	snprintf(err, err_size, "cannot bind the event stream at %s: %s", endpoint,
		 zmq_strerror(zmq_errno()));
	stream_destroy(&s);
	return NULL;
}

void stream_destroy(stream_t **s_p)
{
	stream_t *s = s_p ? *s_p : NULL;

	if (!s)
		return;
	if (s->sock)
		zmq_close(s->sock);
	free(s);
	*s_p = NULL;
}

void *stream_socket(stream_t *s)
{
	return s->sock;
}

const char *stream_endpoint(const stream_t *s)
{
	return s->endpoint;
}

void stream_on_readable(stream_t *s)
{
	unsigned char buf[256];
	int n;

	while ((n = zmq_recv(s->sock, buf, sizeof buf, ZMQ_DONTWAIT)) >= 0) {
		if (n >= 1 && buf[0] == 1)
			s->subscriptions++;
		else if (n >= 1 && buf[0] == 0 && s->subscriptions > 0)
			s->subscriptions--;
	}
}

bool stream_wanted(const stream_t *s)
{
	return s->sock && s->subscriptions > 0;
}

void stream_publish(stream_t *s, const char *kind, const char *tail, const kanal_msg_t *ev,
		    json_t *extra)
{
	char topic[256];
	char ts[40];
	json_t *o;
	char *raw, *text;

	if (!stream_wanted(s)) {
		json_decref(extra);
		return;
	}
	if (!tail)
		tail = ev ? kanal_msg_type(ev) : "";
	snprintf(topic, sizeof topic, "%s %s", kind, tail);
	kanal__rfc3339_now(ts, sizeof ts);
	o = json_pack("{s:s, s:s}", "kind", kind, "ts", ts);
	if (!o) {
		json_decref(extra);
		return;
	}
	if (ev) {
		json_t *e = json_pack("{s:s?, s:s?, s:s?}", "id", kanal_msg_id(ev), "type",
				      kanal_msg_type(ev), "source", kanal_msg_source(ev));
		if (e && kanal_msg_subject(ev))
			json_object_set_new(e, "subject", json_string(kanal_msg_subject(ev)));
		if (e)
			json_object_set_new(o, "event", e);
	}
	if (extra) {
		json_object_update(o, extra);
		json_decref(extra);
	}
	raw = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!raw)
		return;
	/* The payload quotes ids, subjects and error texts: any of them could hold a CPR. */
	kanal_cpr_redact_inplace(topic);
	text = kanal_cpr_redact(raw, strlen(raw));
	free(raw);
	if (!text)
		return;
	zmq_send(s->sock, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT);
	zmq_send(s->sock, text, strlen(text), ZMQ_DONTWAIT);
	kanal_free(text);
}
