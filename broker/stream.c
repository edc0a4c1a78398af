/*
 * broker/stream.c — the XPUB event stream.
 *
 * The socket runs with ZMQ_XPUB_MANUAL: every subscription message a subscriber sends
 * comes up to the broker, which applies it (ZMQ_SUBSCRIBE right after reading it binds it
 * to that subscriber's pipe) or, with CURVE on, refuses it when it goes beyond the
 * client's `subscribe` prefixes — the client is known from the message's ZAP user id.
 * A client that owns sources (`sources:`) sees only the lines about its own events: they
 * are published once more for it under "@<name> <topic>", and only such subscriptions are
 * applied for it (docs/design/tenancy.md).
 *
 * Subscriptions are also counted, so that payloads are built only while somebody
 * listens. libzmq reports a subscriber's disconnection as one unsubscription per topic it
 * had asked for, applied or not, and without saying whose: so both are counted per topic,
 * and such an anonymous unsubscription takes back a refused one first. The count can
 * then only be too high (a payload built for nobody), never too low (a subscriber missing
 * a happening).
 */
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "acl.h"
#include "host.h"
#include "log.h"
#include "stream.h"

/* Subscriptions to one topic prefix: applied, and refused (CURVE clients only). */
typedef struct topic_count {
	unsigned char *topic;
	size_t len;
	long applied, refused;
} topic_count_t;

struct stream {
	void *sock;
	char endpoint[256];
	const conf_t *conf;
	bool acl;           /* CURVE on: subscriptions are checked against the clients' */
	long subscriptions; /* applied, over all topics */
	topic_count_t *topics;
	size_t n_topics, cap_topics;
	uint64_t acl_denied;
	stream_mirror_fn mirror; /* cluster mode's copy of every line to NATS, or NULL */
	void *mirror_arg;
};

stream_t *stream_new(void *zctx, const conf_t *conf, const zap_t *zap, char *err, size_t err_size)
{
	stream_t *s = calloc(1, sizeof *s);
	const char *endpoint = conf ? conf->stream_endpoint : NULL;
	int one = 1, zero = 0;
	size_t len;

	if (!s) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	s->conf = conf;
	if (!endpoint || !*endpoint)
		return s;
	s->sock = zmq_socket(zctx, ZMQ_XPUB);
	if (!s->sock)
		goto fail;
	zmq_setsockopt(s->sock, ZMQ_XPUB_MANUAL, &one, sizeof one);
	zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof zero);
	if (zap) {
		if (zap_secure_socket(zap, s->sock, ZAP_DOMAIN_STREAM, err, err_size) < 0) {
			stream_destroy(&s);
			return NULL;
		}
		s->acl = true;
	}
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
	for (size_t i = 0; i < s->n_topics; i++)
		free(s->topics[i].topic);
	free(s->topics);
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

/* The counts of one topic, created on first use; NULL when out of memory. */
static topic_count_t *s_topic(stream_t *s, const unsigned char *topic, size_t len)
{
	topic_count_t *t;

	for (size_t i = 0; i < s->n_topics; i++)
		if (s->topics[i].len == len && !memcmp(s->topics[i].topic, topic, len))
			return &s->topics[i];
	if (s->n_topics == s->cap_topics) {
		size_t cap = s->cap_topics ? s->cap_topics * 2 : 8;
		topic_count_t *grown = realloc(s->topics, cap * sizeof *grown);
		if (!grown)
			return NULL;
		s->topics = grown;
		s->cap_topics = cap;
	}
	t = &s->topics[s->n_topics];
	memset(t, 0, sizeof *t);
	t->topic = malloc(len ? len : 1);
	if (!t->topic)
		return NULL;
	memcpy(t->topic, topic, len);
	t->len = len;
	s->n_topics++;
	return t;
}

/* True when `user` (the ZAP user id; NULL or "" without CURVE) may subscribe to topic. */
static bool s_allowed(const stream_t *s, const char *user, const unsigned char *topic, size_t len)
{
	const conf_client_t *c;

	if (!s->acl)
		return true;
	c = conf_client(s->conf, user);
	if (c && c->has_sources) {
		/* A client that owns sources sees only its own events' lines, published for
		 * it under "@<name> " (stream_publish): its subscriptions must start there. */
		size_t nlen = strlen(c->name);
		if (len < nlen + 2 || topic[0] != '@' || memcmp(topic + 1, c->name, nlen) ||
		    topic[nlen + 1] != ' ')
			return false;
		topic += nlen + 2;
		len -= nlen + 2;
	}
	return c && acl_topic_allowed(c->subscribe, c->n_subscribe, (const char *)topic, len);
}

/* Refuses a subscription: counted, logged and published (to those allowed to see it). */
static void s_refuse(stream_t *s, const char *user, const unsigned char *topic, size_t len)
{
	char text[128];
	size_t n = len < sizeof text - 1 ? len : sizeof text - 1;

	for (size_t i = 0; i < n; i++)
		text[i] = topic[i] >= 0x20 && topic[i] < 0x7F ? (char)topic[i] : '?';
	text[n] = '\0';
	s->acl_denied++;
	log_warn("stream",
		 "refused client '%s' a subscription to '%s': not within its "
		 "subscribe list",
		 user && *user ? user : "?", text);
	stream_publish(s, "acl.denied", user && *user ? user : "-", NULL,
		       acl_denied_extra(user, "stream", "subscribe", text));
}

/* One subscription message: [1|0][topic]. */
static void s_on_subscription(stream_t *s, zmq_msg_t *m)
{
	const unsigned char *data = zmq_msg_data(m);
	size_t size = zmq_msg_size(m);
	const char *user = s->acl ? zmq_msg_gets(m, "User-Id") : NULL;
	topic_count_t *t;

	if (size < 1 || (data[0] != 0 && data[0] != 1))
		return;
	t = s_topic(s, data + 1, size - 1);
	if (data[0] == 1) {
		if (!s_allowed(s, user, data + 1, size - 1)) {
			if (t)
				t->refused++;
			s_refuse(s, user, data + 1, size - 1);
			return;
		}
		zmq_setsockopt(s->sock, ZMQ_SUBSCRIBE, data + 1, size - 1);
		if (t)
			t->applied++;
		s->subscriptions++;
		return;
	}
	/* An unsubscription: from a client that says who it is, it undoes what its own
	 * subscription did; from a departed subscriber, see the top of the file. */
	if (user && *user && !s_allowed(s, user, data + 1, size - 1)) {
		if (t && t->refused > 0)
			t->refused--;
		return;
	}
	if (!(user && *user) && t && t->refused > 0) {
		t->refused--;
		return;
	}
	zmq_setsockopt(s->sock, ZMQ_UNSUBSCRIBE, data + 1, size - 1);
	if (t && t->applied > 0)
		t->applied--;
	if (s->subscriptions > 0)
		s->subscriptions--;
}

void stream_on_readable(stream_t *s)
{
	for (;;) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, s->sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&m);
			return;
		}
		s_on_subscription(s, &m);
		zmq_msg_close(&m);
	}
}

uint64_t stream_acl_denied(const stream_t *s)
{
	return s ? s->acl_denied : 0;
}

bool stream_wanted(const stream_t *s)
{
	return (s->sock && s->subscriptions > 0) || s->mirror;
}

void stream_set_mirror(stream_t *s, stream_mirror_fn fn, void *arg)
{
	s->mirror = fn;
	s->mirror_arg = arg;
}

/* The copies of one event line for the clients that own its source: topic "@<name> " +
 * the line's topic, so that a client with `sources` can see its own events and no one
 * else's (docs/design/tenancy.md). */
static void s_publish_owned(stream_t *s, const char *topic, const char *text, const char *source)
{
	char owned[320];

	for (size_t i = 0; i < s->conf->n_clients; i++) {
		const conf_client_t *c = &s->conf->clients[i];
		if (!c->name || !c->has_sources ||
		    !acl_source_allowed(c->sources, c->n_sources, source))
			continue;
		snprintf(owned, sizeof owned, "@%s %s", c->name, topic);
		zmq_send(s->sock, owned, strlen(owned), ZMQ_SNDMORE | ZMQ_DONTWAIT);
		zmq_send(s->sock, text, strlen(text), ZMQ_DONTWAIT);
	}
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
	kanal_time_rfc3339(kanal_wall_ms(), ts, sizeof ts);
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
	if (s->mirror)
		s->mirror(s->mirror_arg, kind, topic + strlen(kind) + 1, text);
	if (!s->sock || s->subscriptions <= 0) {
		kanal_free(text);
		return;
	}
	zmq_send(s->sock, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT);
	zmq_send(s->sock, text, strlen(text), ZMQ_DONTWAIT);
	if (ev && s->acl)
		s_publish_owned(s, topic, text, kanal_msg_source(ev));
	kanal_free(text);
}
