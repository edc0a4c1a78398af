/*
 * tests/util/webhook_rx.c — see webhook_rx.h. One libmicrohttpd daemon with its own
 * polling thread; the bodies (and each request's path and headers) are kept as JSON values
 * in arrays behind a mutex.
 */
#include "webhook_rx.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

struct webhook_rx {
	struct MHD_Daemon *daemon;
	pthread_mutex_t lock;
	json_t *bodies;
	json_t *requests; /* {"path", "headers", "body"} per POST */
	unsigned fail_status;
	int fail_count; /* POSTs still to answer with fail_status */
	char url[48];
};

/* A request's body as it arrives, before it is answered. */
typedef struct rx_body {
	char *text;
	size_t len;
	json_t *headers;
} rx_body_t;

static enum MHD_Result s_header(void *cls, enum MHD_ValueKind kind, const char *key,
				const char *value)
{
	char name[128];
	size_t i;

	(void)kind;
	for (i = 0; key[i] && i < sizeof name - 1; i++)
		name[i] = (char)tolower((unsigned char)key[i]);
	name[i] = '\0';
	json_object_set_new(cls, name, json_string(value ? value : ""));
	return MHD_YES;
}

static enum MHD_Result s_handle(void *cls, struct MHD_Connection *conn, const char *url,
				const char *method, const char *version, const char *upload,
				size_t *upload_size, void **con_cls)
{
	webhook_rx_t *rx = cls;
	rx_body_t *b = *con_cls;
	struct MHD_Response *res;
	enum MHD_Result rc;
	unsigned status = MHD_HTTP_OK;
	json_t *j;

	(void)version;
	if (!b) {
		if (!(b = calloc(1, sizeof(rx_body_t))))
			return MHD_NO;
		b->headers = json_object();
		MHD_get_connection_values(conn, MHD_HEADER_KIND, s_header, b->headers);
		*con_cls = b;
		return MHD_YES;
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
	if (!strcmp(method, "POST")) {
		j = b->text ? json_loadb(b->text, b->len, 0, NULL) : NULL;
		pthread_mutex_lock(&rx->lock);
		json_array_append_new(rx->requests, json_pack("{s:s,s:O,s:O?}", "path", url,
							      "headers", b->headers, "body", j));
		if (rx->fail_count > 0) {
			rx->fail_count--;
			status = rx->fail_status;
		}
		if (j)
			json_array_append_new(rx->bodies, j);
		pthread_mutex_unlock(&rx->lock);
	}
	res = MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
	rc = MHD_queue_response(conn, status, res);
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
		json_decref(b->headers);
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
	rx->requests = json_array();
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

/* A copy of one of rx's arrays, taken under its lock. */
static json_t *s_copy(webhook_rx_t *rx, json_t *arr)
{
	json_t *copy;

	pthread_mutex_lock(&rx->lock);
	copy = json_deep_copy(arr);
	pthread_mutex_unlock(&rx->lock);
	return copy;
}

json_t *webhook_rx_bodies(webhook_rx_t *rx)
{
	return s_copy(rx, rx->bodies);
}

json_t *webhook_rx_requests(webhook_rx_t *rx)
{
	return s_copy(rx, rx->requests);
}

void webhook_rx_answer(webhook_rx_t *rx, unsigned status, int count)
{
	pthread_mutex_lock(&rx->lock);
	rx->fail_status = status;
	rx->fail_count = count;
	pthread_mutex_unlock(&rx->lock);
}

void webhook_rx_destroy(webhook_rx_t **rx_p)
{
	webhook_rx_t *rx = rx_p ? *rx_p : NULL;

	if (!rx)
		return;
	if (rx->daemon)
		MHD_stop_daemon(rx->daemon);
	json_decref(rx->bodies);
	json_decref(rx->requests);
	pthread_mutex_destroy(&rx->lock);
	free(rx);
	*rx_p = NULL;
}
