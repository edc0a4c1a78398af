/*
 * plugins/http/http.c — the `http` plugin: CloudEvents over HTTP, in and out, per the
 * CloudEvents HTTP protocol binding. One instance is an ingress (vendors POST events to
 * it: `listen`), a webhook destination (it POSTs the events routed to it: `url`), or both.
 *
 * This file holds the descriptor, the options table and the lifecycle; ingress.c serves,
 * egress.c posts, tokens.c guards the ingress with bearer tokens and binding.c maps events
 * to and from HTTP messages. docs/plugins/http.md is the user's page.
 */
#include "http.h"

#include <stdlib.h>

static const kanal_option_t s_options[] = {
	/* ingress */
	{ "listen", KANAL_OPT_STRING, NULL, false,
	  "Serve the ingress on HOST:PORT, [IPv6]:PORT or PORT (on 127.0.0.1), e.g. "
	  "127.0.0.1:8080; port 0 picks a free port. Without it the instance takes no events in." },
	{ "path", KANAL_OPT_STRING, "/events", false,
	  "The path events are POSTed to; any other path answers 404." },
	{ "port_file", KANAL_OPT_PATH, NULL, false,
	  "File the bound port is written to on start (useful with port 0); removed on stop." },
	{ "tokens_file", KANAL_OPT_PATH, NULL, false,
	  "Bearer tokens of the clients allowed to post: lines 'client-name token "
	  "[type-pattern,…]'; mode must be 0600 or 0400. Without it no token is asked for." },
	{ "allow_unauthenticated", KANAL_OPT_BOOL, "false", false,
	  "Allow listen on an address other than loopback without tokens_file (only behind a "
	  "proxy that authenticates)." },
	{ "max_body", KANAL_OPT_SIZE, "1MiB", false,
	  "Largest request body (a batch); larger ones are answered 413." },
	{ "max_event_size", KANAL_OPT_SIZE, "64KiB", false,
	  "Largest single event; larger ones are answered 413 (kanald's own limit applies too)." },
	{ "flush_timeout", KANAL_OPT_DURATION, "5s", false,
	  "How long an answer waits for kanald to confirm the events durable before it says "
	  "503 (the events stay accepted; sending again is safe)." },
	{ "busy_retry_after", KANAL_OPT_DURATION, "1s", false,
	  "The Retry-After given with 429 when kanald applies backpressure." },
	{ "dedupe_window", KANAL_OPT_DURATION, "10m", false,
	  "A (source, id) accepted within this window is answered \"duplicate\" and not emitted "
	  "again." },
	{ "max_connections", KANAL_OPT_INT, "64", false,
	  "Most client connections served at once." },
	{ "connection_timeout", KANAL_OPT_DURATION, "30s", false,
	  "An idle or stalled client connection is closed after this long." },
	/* egress */
	{ "url", KANAL_OPT_STRING, NULL, false,
	  "POST each event routed to the instance to this http(s) URL (a webhook). Without it "
	  "the instance accepts no deliveries." },
	{ "mode", KANAL_OPT_STRING, "structured", false,
	  "structured: the JSON event as the body; binary: attributes in ce-* headers, the data "
	  "as the body." },
	{ "bearer_token_file", KANAL_OPT_PATH, NULL, false,
	  "File holding the token sent as 'Authorization: Bearer …'; mode must be 0600 or 0400." },
	{ "timeout", KANAL_OPT_DURATION, "10s", false,
	  "The longest a POST may take; then the delivery is retried." },
	{ "headers", KANAL_OPT_LIST, NULL, false,
	  "Extra request headers, each 'Name: value'." },
	{ "ca_file", KANAL_OPT_PATH, NULL, false,
	  "Extra CA certificates (PEM) to trust for an https url." },
	/* ingress: the limits that protect it from slow and flooding clients */
	{ .name = "request_timeout", .type = KANAL_OPT_DURATION, .default_value = "30s",
	  .help = "The longest a client may take to send a whole request, head and body; then "
		  "it is answered 408 and the connection closed." },
	{ .name = "max_connections_per_address", .type = KANAL_OPT_INT, .default_value = "32",
	  .help = "Most connections open at once from one client address; more are answered "
		  "429 and closed (behind a proxy, set it to max_connections)." },
	{ .name = NULL },
};

typedef struct http_plugin {
	ingress_t *ingress; /* NULL: no listen */
	egress_t *egress;   /* NULL: no url */
} http_plugin_t;

static void s_destroy(void *state)
{
	http_plugin_t *p = state;

	if (!p)
		return;
	ingress_destroy(&p->ingress);
	egress_destroy(&p->egress);
	free(p);
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	http_plugin_t *p = calloc(1, sizeof *p);
	int rc;

	if (!p)
		return KANAL_ENOMEM;
	if ((rc = ingress_new(ctx, cfg, &p->ingress)) < 0 ||
	    (rc = egress_new(ctx, cfg, &p->egress)) < 0) {
		s_destroy(p);
		return rc;
	}
	if (!p->ingress && !p->egress) {
		kanal_set_error(ctx, "nothing to do: give listen (take events in over HTTP), url "
			       "(post events out to a webhook), or both");
		s_destroy(p);
		return KANAL_ECONFIG;
	}
	*state = p;
	return 0;
}

static int s_start(kanal_ctx_t *ctx, void *state)
{
	http_plugin_t *p = state;

	return p->ingress ? ingress_start(p->ingress, ctx) : 0;
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	http_plugin_t *p = state;

	if (!p->egress) {
		kanal_set_error(ctx, "instance '%s' has no url: it takes events in over HTTP and "
			       "cannot deliver them; route events to an http instance with url",
			       kanal_instance_name(ctx));
		return KANAL_OUTCOME_REJECT;
	}
	return egress_send(p->egress, ctx, msg);
}

static void s_stop(kanal_ctx_t *ctx, void *state, int64_t deadline_ms)
{
	http_plugin_t *p = state;

	(void)deadline_ms;
	ingress_stop(p->ingress, ctx);
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "http",
	.version = "1.0.0",
	.description = "CloudEvents over HTTP (the CloudEvents HTTP binding): an ingress vendors "
		       "POST events to, and a webhook destination.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.stop = s_stop,
	.destroy = s_destroy,
};
