/*
 * tests/util/webhook_rx.c — see webhook_rx.h. One libmicrohttpd daemon with its own
 * polling thread; the bodies are kept as JSON values in an array behind a mutex.
 */
#include "webhook_rx.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

struct webhook_rx {
	struct MHD_Daemon *daemon;
	pthread_mutex_t lock;
	json_t *bodies;
	char url[48];
};

/* A request's body as it arrives, before it is answered. */
typedef struct rx_body {
	char *text;
	size_t len;
} rx_body_t;

static enum MHD_Result s_handle(void *cls, struct MHD_Connection *conn, const char *url,
				const char *method, const char *version, const char *upload,
				size_t *upload_size, void **con_cls)
{
	webhook_rx_t *rx = cls;
	rx_body_t *b = *con_cls;
	struct MHD_Response *res;
	enum MHD_Result rc;
	json_t *j;

	(void)url;
	(void)version;
	if (!b) {
		*con_cls = calloc(1, sizeof(rx_body_t));
		return *con_cls ? MHD_YES : MHD_NO;
	}
	if (*upload_size) {
		char *more = realloc(b->text, b->len + *upload_size + 1);
		if (!more)
			return MHD_NO;
		memcpy(more + b->len, upload, *upload_size);
		b->text = more;
		b->len += *upload_size;
		b->text[b->len] = '\0';
		*upload_size = 0;
		return MHD_YES;
	}
	if (!strcmp(method, "POST") && b->text &&
	    (j = json_loadb(b->text, b->len, 0, NULL)) != NULL) {
		pthread_mutex_lock(&rx->lock);
		json_array_append_new(rx->bodies, j);
		pthread_mutex_unlock(&rx->lock);
	}
	res = MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
	rc = MHD_queue_response(conn, MHD_HTTP_OK, res);
	MHD_destroy_response(res);
	return rc;
}

static void s_done(void *cls, struct MHD_Connection *conn, void **con_cls,
		   enum MHD_RequestTerminationCode toe)
{
	rx_body_t *b = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (b) {
		free(b->text);
		free(b);
		*con_cls = NULL;
	}
}

webhook_rx_t *webhook_rx_new(void)
{
	webhook_rx_t *rx = calloc(1, sizeof *rx);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	const union MHD_DaemonInfo *info;

	if (!rx)
		return NULL;
	pthread_mutex_init(&rx->lock, NULL);
	rx->bodies = json_array();
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rx->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, s_handle, rx,
				      MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED,
				      s_done, rx, MHD_OPTION_END);
	info = rx->daemon ? MHD_get_daemon_info(rx->daemon, MHD_DAEMON_INFO_BIND_PORT) : NULL;
	if (!info) {
		webhook_rx_destroy(&rx);
		return NULL;
	}
	snprintf(rx->url, sizeof rx->url, "http://127.0.0.1:%u", (unsigned)info->port);
	return rx;
}

const char *webhook_rx_url(const webhook_rx_t *rx)
{
	return rx->url;
}

json_t *webhook_rx_bodies(webhook_rx_t *rx)
{
	json_t *copy;

	pthread_mutex_lock(&rx->lock);
	copy = json_deep_copy(rx->bodies);
	pthread_mutex_unlock(&rx->lock);
	return copy;
}

void webhook_rx_destroy(webhook_rx_t **rx_p)
{
	webhook_rx_t *rx = rx_p ? *rx_p : NULL;

	if (!rx)
		return;
	if (rx->daemon)
		MHD_stop_daemon(rx->daemon);
	json_decref(rx->bodies);
	pthread_mutex_destroy(&rx->lock);
	free(rx);
	*rx_p = NULL;
}
