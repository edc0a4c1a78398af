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
#include "../common/kc_check.h"

#include <stdlib.h>

typedef struct http_plugin {
	http_options_t opt; /* bound by offset from s_options */
	ingress_t *ingress; /* NULL: no listen */
	egress_t *egress;   /* NULL: no url */
} http_plugin_t;

static const char *const s_modes[] = { "structured", "binary", NULL };

#define OPT(member) KANAL_OPT_AT(http_plugin_t, opt.member)

static const kanal_option_t s_options[] = {
	/* ingress */
	{ .name = "listen",
	  .type = KANAL_OPT_STRING,
	  OPT(listen),
	  .help = "Serve the ingress on HOST:PORT, [IPv6]:PORT or PORT (on 127.0.0.1), e.g. "
		  "127.0.0.1:8080; port 0 picks a free port. Without it the instance takes no "
		  "events in." },
	{ .name = "path",
	  .type = KANAL_OPT_STRING,
	  .default_value = "/events",
	  OPT(path),
	  .help = "The path events are POSTed to; any other path answers 404." },
	{ .name = "port_file",
	  .type = KANAL_OPT_PATH,
	  OPT(port_file),
	  .help = "File the bound port is written to on start (useful with port 0); removed on "
		  "stop." },
	{ .name = "tokens_file",
	  .type = KANAL_OPT_PATH,
	  OPT(tokens_file),
	  .help = "Bearer tokens of the clients allowed to post: lines 'client-name token "
		  "[type-pattern,…]'; mode must be 0600 or 0400. Without it no token is asked "
		  "for." },
	{ .name = "allow_unauthenticated",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "false",
	  OPT(allow_unauthenticated),
	  .help = "Allow listen on an address other than loopback without tokens_file (only behind "
		  "a "
		  "proxy that authenticates)." },
	{ .name = "max_body",
	  .type = KANAL_OPT_SIZE,
	  .default_value = "1MiB",
	  .min = "1",
	  OPT(max_body),
	  .help = "Largest request body (a batch); larger ones are answered 413." },
	{ .name = "max_event_size",
	  .type = KANAL_OPT_SIZE,
	  .default_value = "64KiB",
	  .min = "1",
	  OPT(max_event_size),
	  .help = "Largest single event; larger ones are answered 413 (kanald's own limit applies "
		  "too)." },
	{ .name = "flush_timeout",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "5s",
	  OPT(flush_timeout_ms),
	  .help = "How long an answer waits for kanald to confirm the events durable before it "
		  "says "
		  "503 (the events stay accepted; sending again is safe)." },
	{ .name = "busy_retry_after",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "1s",
	  OPT(busy_retry_after_ms),
	  .help = "The Retry-After given with 429 when kanald applies backpressure." },
	{ .name = "dedupe_window",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "10m",
	  OPT(dedupe_window_ms),
	  .help = "A (source, id) accepted within this window is answered \"duplicate\" and not "
		  "emitted "
		  "again." },
	{ .name = "max_connections",
	  .type = KANAL_OPT_INT,
	  .default_value = "64",
	  .min = "1",
	  .max = "100000",
	  OPT(max_connections),
	  .help = "Most client connections open at once; one more closes the oldest connection "
		  "whose request has not been answered." },
	{ .name = "connection_timeout",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "30s",
	  .min = "1s",
	  OPT(connection_timeout_ms),
	  .help = "An idle or stalled client connection is closed after this long." },
	/* ingress: the limits that protect it from slow and flooding clients (gate.c) */
	{ .name = "request_timeout",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "30s",
	  .min = "1s",
	  OPT(request_timeout_ms),
	  .help = "The longest a client may take to send a whole request, head and body; then "
		  "it is answered 408 and the connection closed." },
	{ .name = "max_connections_per_address",
	  .type = KANAL_OPT_INT,
	  .default_value = "32",
	  .min = "1",
	  .max = "100000",
	  OPT(max_connections_per_address),
	  .help = "Most connections open at once from one client address; more are answered "
		  "429 and closed (behind a proxy, set it to max_connections)." },
	{ .name = "client_rate",
	  .type = KANAL_OPT_INT,
	  .default_value = "0",
	  .min = "0",
	  OPT(client_rate),
	  .help = "Events a second each tokens_file client may post on average (a token bucket; "
		  "0: no limit); over it the request is answered 429 with Retry-After." },
	{ .name = "client_burst",
	  .type = KANAL_OPT_INT,
	  .default_value = "0",
	  .min = "0",
	  OPT(client_burst),
	  .help = "Events a client may post at once before client_rate applies (0: one second's "
		  "worth)." },
	/* ingress: vendor JSON, made into events by jq (mapped.c) */
	{ .name = "map_paths",
	  .type = KANAL_OPT_LIST,
	  OPT(map_paths),
	  .help = "Paths that take a vendor's own JSON, each 'PATH SOURCE MAP': a POST to PATH is "
		  "run through the jq program in the file MAP, whose output (an object with id, "
		  "type, subject, time, data, or an array of them) becomes the events, all with "
		  "the source SOURCE." },
	{ .name = "map_dir",
	  .type = KANAL_OPT_PATH,
	  OPT(map_dir),
	  .help = "The folder a relative MAP of map_paths is read from." },
	/* egress */
	{ .name = "url",
	  .type = KANAL_OPT_STRING,
	  OPT(url),
	  .help = "POST each event routed to the instance to this http(s) URL (a webhook). Without "
		  "it "
		  "the instance accepts no deliveries." },
	{ .name = "mode",
	  .type = KANAL_OPT_STRING,
	  .default_value = "structured",
	  .allowed = s_modes,
	  OPT(mode),
	  .help = "structured: the JSON event as the body; binary: attributes in ce-* headers, the "
		  "data "
		  "as the body." },
	{ .name = "bearer_token_file",
	  .type = KANAL_OPT_PATH,
	  OPT(http.token_file),
	  .help = "File holding the token sent as 'Authorization: Bearer …'; mode must be 0600 or "
		  "0400." },
	KC_HTTP_OPT_TIMEOUT(http_plugin_t, opt.http, "10s",
			    "The longest a POST may take; then the delivery is retried."),
	{ .name = "headers",
	  .type = KANAL_OPT_LIST,
	  OPT(headers),
	  .help = "Extra request headers, each 'Name: value'." },
	KC_HTTP_OPT_CA_FILE(http_plugin_t, opt.http),
	KC_URL_OPT_ALLOW_PLAIN_HTTP(http_plugin_t, opt.http.allow_plain_http),
	{ .name = NULL },
};

#undef OPT

static void s_destroy(void *state)
{
	http_plugin_t *p = state;

	if (!p)
		return;
	ingress_destroy(&p->ingress);
	egress_destroy(&p->egress);
	kc_http_conf_clear(&p->opt.http);
	free(p);
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	http_plugin_t *p = calloc(1, sizeof *p);
	int rc;

	if (!p)
		return KANAL_ENOMEM;
	kanal_config_bind(cfg, p);
	p->opt.http.token_file_option = "bearer_token_file";
	if ((rc = ingress_new(ctx, &p->opt, &p->ingress)) < 0 ||
	    (rc = egress_new(ctx, cfg, &p->opt, &p->egress)) < 0) {
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

/* init makes nothing but memory — the ingress's settings and tokens, the webhook's client
 * — and reads only the tokens file and the secret files, so check is init and destroy:
 * one copy of every rule (listen, path, sizes, tokens, url, headers, secrets). */
KC_CHECK_BY_INIT(s_init, s_destroy)

static int s_start(kanal_ctx_t *ctx, void *state)
{
	http_plugin_t *p = state;

	return p->ingress ? ingress_start(p->ingress, ctx) : 0;
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	http_plugin_t *p = state;

	if (!p->egress) {
		kanal_set_error(ctx,
				"instance '%s' has no url: it takes events in over HTTP and "
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
	.check = s_check,
};
