/*
 * cli/cmd_send.c — `kanalctl send`: hand events to a running kanald through its gateway.
 *
 * Each file's content — one event or a batch — goes as one request frame on a DEALER
 * socket, and the gateway answers with one JSON frame holding a status per event
 * (docs/design/wire.md). Files are sent one at a time, each waiting for its reply, so a
 * reply always belongs to the file just sent; when a reply does not come within the
 * timeout kanalctl stops rather than send more into silence. kanalctl sends the bytes as
 * they are: the gateway, not the client, decides what is valid.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "kanalctl.h"

/* Files larger than this are not read at all; the gateway would refuse them anyway. */
#define CTL_SEND_MAX_BYTES (64u * 1024 * 1024)

/* Prints one result line, "ID: STATUS…". Returns its exit status. */
static int s_print_result(json_t *result, const char *label)
{
	const char *id = json_string_value(json_object_get(result, "id"));
	const char *status = json_string_value(json_object_get(result, "status"));
	const char *reason = json_string_value(json_object_get(result, "reason"));
	json_t *retry = json_object_get(result, "retry_after_ms");

	if (!id || !*id)
		id = label;
	if (!status) {
		ctl_printf(stdout, "%s: no status in the gateway's reply\n", id);
		return CTL_EXIT_NO;
	}
	if (!strcmp(status, "accepted")) {
		ctl_printf(stdout, "%s: accepted\n", id);
		return CTL_EXIT_OK;
	}
	if (!strcmp(status, "duplicate")) {
		/* The bus already owns it: a retried send after a lost reply ends here. */
		ctl_printf(stdout, "%s: duplicate (accepted before, not routed again)\n", id);
		return CTL_EXIT_OK;
	}
	if (!strcmp(status, "busy")) {
		if (json_is_integer(retry))
			ctl_printf(stdout, "%s: busy (retry after %" JSON_INTEGER_FORMAT " ms)\n",
				   id, json_integer_value(retry));
		else
			ctl_printf(stdout, "%s: busy (try again later)\n", id);
		return CTL_EXIT_NO;
	}
	if (reason)
		ctl_printf(stdout, "%s: %s: %s\n", id, status, reason);
	else
		ctl_printf(stdout, "%s: %s\n", id, status);
	return CTL_EXIT_NO;
}

/* Prints the results in the gateway's reply to one file. Returns the exit status. */
static int s_print_reply(const char *reply, size_t len, const char *name, const char *endpoint)
{
	json_t *root = json_loadb(reply, len, 0, NULL);
	json_t *results = json_object_get(root, "results");
	json_t *result;
	char label[300];
	size_t i;
	int status = CTL_EXIT_OK;

	if (!json_is_array(results)) {
		ctl_error("the gateway at %s sent a reply kanalctl cannot read: %.200s", endpoint,
			  reply);
		json_decref(root);
		return CTL_EXIT_ERROR;
	}
	if (json_array_size(results) == 0)
		ctl_printf(stdout, "%s: empty batch: nothing sent\n", name);
	json_array_foreach(results, i, result)
	{
		int one;
		if (json_array_size(results) == 1)
			snprintf(label, sizeof label, "%s", name);
		else
			snprintf(label, sizeof label, "%s[%zu]", name, i);
		one = s_print_result(result, label);
		if (one > status)
			status = one;
	}
	json_decref(root);
	return status;
}

int cmd_send(ctl_t *ctl, int argc, char **argv)
{
	char endpoint[512], *text = NULL, *reply = NULL;
	void *zctx = NULL, *sock = NULL;
	size_t len, reply_len;
	int i, rc, status = CTL_EXIT_OK;

	if (argc < 1) {
		ctl_error("send: which events? usage: kanalctl send EVENT.json... (- for stdin)");
		return CTL_EXIT_ERROR;
	}
	if (ctl_endpoint(ctl, "gateway", endpoint, sizeof endpoint) < 0)
		return CTL_EXIT_ERROR;
	zctx = zmq_ctx_new();
	if (!zctx) {
		ctl_error("cannot start ZeroMQ: %s", zmq_strerror(errno));
		return CTL_EXIT_ERROR;
	}
	sock = ctl_connect_secure(ctl, zctx, ZMQ_DEALER, endpoint, "gateway");
	if (!sock) {
		status = CTL_EXIT_ERROR;
		goto done;
	}
	for (i = 0; i < argc; i++) {
		const char *name = ctl_input_name(argv[i]);
		int file_status;

		if (ctl_read_input(argv[i], CTL_SEND_MAX_BYTES, &text, &len) < 0) {
			status = CTL_EXIT_ERROR;
			continue;
		}
		rc = ctl_zmq_request(sock, text, len, ctl->timeout_ms, &reply, &reply_len);
		free(text);
		text = NULL;
		if (rc == KANAL_ETIMEDOUT) {
			if (!ctl_curve_refused("gateway", endpoint))
				ctl_no_reply(ctl, "gateway", endpoint);
			status = CTL_EXIT_ERROR;
			break;
		}
		if (rc < 0) {
			ctl_error("%s: sending to the gateway at %s failed: %s", name, endpoint,
				  rc == KANAL_EIO ? zmq_strerror(errno) : kanal_strerror(rc));
			status = CTL_EXIT_ERROR;
			break;
		}
		file_status = s_print_reply(reply, reply_len, name, endpoint);
		free(reply);
		reply = NULL;
		if (file_status > status)
			status = file_status;
		fflush(stdout);
	}
done:
	ctl_close(sock);
	zmq_ctx_term(zctx);
	return status;
}
