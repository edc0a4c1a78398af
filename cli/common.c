/*
 * cli/common.c — helpers every kanalctl command uses: masked printing, finding and loading
 * kanald.yaml, finding kanald's endpoints, reading event files, and one ZeroMQ
 * request/reply bounded by a deadline.
 *
 * Endpoints are looked up in a fixed order — flag, environment, the endpoints file kanald
 * writes into its run_dir on start, the configured endpoint — so that kanalctl finds a
 * kanald that bound an ephemeral port without the operator copying addresses around.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <zmq.h>

#include "kanalctl.h"

#ifndef KANALCTL_SYSCONF
#define KANALCTL_SYSCONF "/usr/local/etc/kanal/kanald.yaml"
#endif
#define CTL_LOCAL_CONF "conf/kanald.yaml"

void ctl_vprintf(FILE *out, const char *fmt, va_list ap)
{
	char *text = NULL;

	if (vasprintf(&text, fmt, ap) < 0) {
		fputs("kanalctl: out of memory\n", stderr);
		return;
	}
	kanal_cpr_redact_inplace(text);
	fputs(text, out);
	free(text);
}

void ctl_printf(FILE *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ctl_vprintf(out, fmt, ap);
	va_end(ap);
}

void ctl_error(const char *fmt, ...)
{
	va_list ap;

	fputs("kanalctl: ", stderr);
	va_start(ap, fmt);
	ctl_vprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int64_t ctl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *ctl_conf_path(const ctl_t *ctl)
{
	const char *env = getenv("KANAL_CONF");
	const char *path, *origin;

	if (ctl->conf_flag) {
		path = ctl->conf_flag;
		origin = "-c";
	} else if (env && *env) {
		path = env;
		origin = "$KANAL_CONF";
	} else if (access(CTL_LOCAL_CONF, F_OK) == 0) {
		return CTL_LOCAL_CONF;
	} else if (access(KANALCTL_SYSCONF, F_OK) == 0) {
		return KANALCTL_SYSCONF;
	} else {
		ctl_error("no kanald.yaml: give -c FILE or set KANAL_CONF (looked for ./%s and %s)",
			  CTL_LOCAL_CONF, KANALCTL_SYSCONF);
		return NULL;
	}
	if (access(path, R_OK) != 0) {
		ctl_error("%s (given by %s): %s", path, origin, strerror(errno));
		return NULL;
	}
	return path;
}

conf_t *ctl_conf_load(const ctl_t *ctl)
{
	const char *path = ctl_conf_path(ctl);
	diag_t d = { 0 };
	conf_t *conf = NULL;
	int rc;

	if (!path)
		return NULL;
	rc = conf_load(path, &conf, &d);
	if (rc < 0) {
		if (d.count)
			diag_print(&d, stderr);
		else
			ctl_error("%s: %s", path, kanal_strerror(rc));
		conf_destroy(&conf);
	}
	diag_free(&d);
	return conf;
}

const char **ctl_instance_names(const conf_t *conf)
{
	const char **names = calloc(conf->n_instances + 1, sizeof *names);
	size_t i;

	if (!names)
		return NULL;
	for (i = 0; i < conf->n_instances; i++)
		names[i] = conf->instances[i].name;
	return names;
}

/* Copies text into buf, refusing (with a message) what does not fit. */
static int s_copy(char *buf, size_t size, const char *text, const char *what)
{
	if (strlen(text) >= size) {
		ctl_error("%s endpoint too long: %.60s...", what, text);
		return -1;
	}
	memcpy(buf, text, strlen(text) + 1);
	return 0;
}

/* Looks up `name=` in the endpoints file kanald writes into its run_dir, and its `pid=`
 * (0 when absent) into *pid. Returns 1 and fills buf when found, 0 when the file or the
 * line is missing, -1 on a too-long value. */
static int s_endpoints_file(const char *run_dir, const char *name, char *buf, size_t size,
			    long *pid)
{
	char *path = NULL, line[1024];
	size_t name_len = strlen(name);
	FILE *f;
	int found = 0;

	*pid = 0;
	if (!run_dir || !*run_dir || asprintf(&path, "%s/endpoints", run_dir) < 0)
		return 0;
	f = fopen(path, "r");
	free(path);
	if (!f)
		return 0;
	while (found >= 0 && fgets(line, sizeof line, f)) {
		size_t n = strlen(line);
		while (n && isspace((unsigned char)line[n - 1]))
			line[--n] = '\0';
		if (!found && n > name_len && !strncmp(line, name, name_len) &&
		    line[name_len] == '=')
			found = s_copy(buf, size, line + name_len + 1, name) < 0 ? -1 : 1;
		else if (!strncmp(line, "pid=", 4))
			*pid = strtol(line + 4, NULL, 10);
	}
	fclose(f);
	return found;
}

/* True when an endpoint names port 0: kanald picks a port on start and writes it to the
 * endpoints file, so the configured text alone cannot be connected to. */
static bool s_ephemeral(const char *endpoint)
{
	size_t n = strlen(endpoint);

	return n > 2 && !strcmp(endpoint + n - 2, ":0");
}

int ctl_endpoint(const ctl_t *ctl, const char *name, char *buf, size_t size)
{
	const char *flag = !strcmp(name, "gateway")  ? ctl->gateway_flag
			   : !strcmp(name, "stream") ? ctl->stream_flag
						     : ctl->admin_flag;
	const char *configured;
	char env_name[32];
	const char *env;
	conf_t *conf;
	int rc = -1, found;
	long pid;
	size_t i;

	if (flag && *flag)
		return s_copy(buf, size, flag, name);
	snprintf(env_name, sizeof env_name, "KANAL_%s", name);
	for (i = 6; env_name[i]; i++)
		env_name[i] = (char)toupper((unsigned char)env_name[i]);
	env = getenv(env_name);
	if (env && *env)
		return s_copy(buf, size, env, name);

	conf = ctl_conf_load(ctl);
	if (!conf) {
		ctl_error("cannot tell where kanald's %s is: give --%s ENDPOINT or set %s", name,
			  name, env_name);
		return -1;
	}
	found = s_endpoints_file(conf->run_dir, name, buf, size, &pid);
	if (found) {
		/* A kanald that crashed leaves its file behind; say so before the timeout does. */
		if (found > 0 && pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH)
			ctl_error("note: %s/endpoints was written by kanald pid %ld, which is not "
				  "running (left behind by a crash?)",
				  conf->run_dir, pid);
		rc = found > 0 ? 0 : -1;
		goto done;
	}
	configured = !strcmp(name, "gateway")  ? conf->gateway_endpoint
		     : !strcmp(name, "stream") ? conf->stream_endpoint
					       : conf->admin_endpoint;
	if (!configured || !*configured) {
		ctl_error("the %s is switched off in %s (endpoints: %s: off)", name, conf->file,
			  name);
		goto done;
	}
	if (s_ephemeral(configured)) {
		ctl_error("%s configures the %s on an ephemeral port (%s) and %s/endpoints, where "
			  "kanald writes the port it got, does not exist: is kanald running?",
			  conf->file, name, configured,
			  conf->run_dir ? conf->run_dir : "<run_dir>");
		goto done;
	}
	rc = s_copy(buf, size, configured, name);
done:
	conf_destroy(&conf);
	return rc;
}

const char *ctl_input_name(const char *path)
{
	return !strcmp(path, "-") ? "<stdin>" : path;
}

int ctl_read_input(const char *path, size_t limit, char **out, size_t *len)
{
	bool is_stdin = !strcmp(path, "-");
	FILE *f = is_stdin ? stdin : fopen(path, "rb");
	size_t cap = 4096, n = 0;
	char *buf = NULL, *bigger;

	*out = NULL;
	*len = 0;
	if (!f) {
		ctl_error("%s: %s", path, strerror(errno));
		return -1;
	}
	buf = malloc(cap);
	if (!buf)
		goto nomem;
	for (;;) {
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (n > limit) {
			ctl_error("%s: larger than %zu bytes; refusing to read it",
				  ctl_input_name(path), limit);
			goto fail;
		}
		if (got == 0)
			break;
		if (cap - n - 1 == 0) {
			bigger = realloc(buf, cap * 2);
			if (!bigger)
				goto nomem;
			buf = bigger;
			cap *= 2;
		}
	}
	if (ferror(f)) {
		ctl_error("%s: %s", ctl_input_name(path), strerror(errno));
		goto fail;
	}
	if (!is_stdin)
		fclose(f);
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
nomem:
	ctl_error("%s: out of memory", ctl_input_name(path));
fail:
	free(buf);
	if (!is_stdin)
		fclose(f);
	return -1;
}

/* Waits for `sock` to become readable until the monotonic time `deadline`. Returns 1 when
 * readable, 0 on timeout, -1 when polling failed. Restarts after a signal. */
static int s_wait_readable(void *sock, int64_t deadline)
{
	zmq_pollitem_t item = { .socket = sock, .events = ZMQ_POLLIN };

	for (;;) {
		int64_t left = deadline - ctl_now_ms();
		int rc;

		if (left < 0)
			left = 0;
		rc = zmq_poll(&item, 1, (long)left);
		if (rc > 0)
			return 1;
		if (rc == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

int ctl_zmq_request(void *sock, const char *payload, size_t len, int64_t timeout_ms, char **out,
		    size_t *out_len)
{
	int64_t deadline = ctl_now_ms() + timeout_ms;
	int timeout = timeout_ms > INT32_MAX ? INT32_MAX : (int)timeout_ms;
	zmq_msg_t frame;
	char *reply = NULL;
	size_t reply_len = 0;
	int more, rc;

	*out = NULL;
	*out_len = 0;
	zmq_setsockopt(sock, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
	if (zmq_send(sock, payload, len, 0) < 0)
		return errno == EAGAIN ? KANAL_ETIMEDOUT : KANAL_EIO;
	rc = s_wait_readable(sock, deadline);
	if (rc <= 0)
		return rc == 0 ? KANAL_ETIMEDOUT : KANAL_EIO;

	/* Keep the last frame: a REQ socket strips the envelope, a DEALER may see an empty
	 * delimiter frame first, and either way the reply is the final frame. */
	do {
		zmq_msg_init(&frame);
		if (zmq_msg_recv(&frame, sock, 0) < 0) {
			zmq_msg_close(&frame);
			free(reply);
			return KANAL_EIO;
		}
		free(reply);
		reply_len = zmq_msg_size(&frame);
		reply = malloc(reply_len + 1);
		if (reply) {
			memcpy(reply, zmq_msg_data(&frame), reply_len);
			reply[reply_len] = '\0';
		}
		more = zmq_msg_more(&frame);
		zmq_msg_close(&frame);
		if (!reply) {
			/* Drain the rest of the message so the socket stays usable. */
			while (more) {
				zmq_msg_init(&frame);
				zmq_msg_recv(&frame, sock, 0);
				more = zmq_msg_more(&frame);
				zmq_msg_close(&frame);
			}
			return KANAL_ENOMEM;
		}
	} while (more);
	*out = reply;
	*out_len = reply_len;
	return 0;
}

void ctl_no_reply(const ctl_t *ctl, const char *what, const char *endpoint)
{
	ctl_error("no reply from the %s at %s within %" PRId64 " ms: is kanald running?%s", what,
		  endpoint, ctl->timeout_ms, !strcmp(what, "gateway") ? " (kanalctl status)" : "");
}

void *ctl_connect(void *zctx, int type, const char *endpoint, const char *what)
{
	void *sock = zmq_socket(zctx, type);
	int linger = 0;

	if (!sock) {
		ctl_error("cannot create a socket for the %s: %s", what, zmq_strerror(errno));
		return NULL;
	}
	zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
	if (zmq_connect(sock, endpoint) < 0) {
		ctl_error("cannot connect to the %s at %s: %s", what, endpoint,
			  zmq_strerror(errno));
		zmq_close(sock);
		return NULL;
	}
	return sock;
}

/* Sends `request` to kanald's admin socket and waits for its reply. Returns CTL_EXIT_OK
 * with the reply object in *reply and its text in *raw, or CTL_EXIT_ERROR after printing
 * why there is none (no endpoint, no reply within --timeout, a reply that is not a JSON
 * object) — the same messages as reload and status give. Ownership: borrows request;
 * *reply (json_decref) and *raw (free) are new. */
int ctl_admin_call(const ctl_t *ctl, json_t *request, json_t **reply, char **raw)
{
	char endpoint[512], *text = NULL;
	void *zctx = NULL, *sock = NULL;
	size_t len = 0;
	int rc, status = CTL_EXIT_ERROR;

	*reply = NULL;
	*raw = NULL;
	if (ctl_endpoint(ctl, "admin", endpoint, sizeof endpoint) < 0)
		return CTL_EXIT_ERROR;
	text = json_dumps(request, JSON_COMPACT);
	if (!text) {
		ctl_error("out of memory");
		return CTL_EXIT_ERROR;
	}
	zctx = zmq_ctx_new();
	if (!zctx) {
		ctl_error("cannot start ZeroMQ: %s", zmq_strerror(errno));
		goto done;
	}
	sock = ctl_connect(zctx, ZMQ_REQ, endpoint, "admin endpoint");
	if (!sock)
		goto done;
	rc = ctl_zmq_request(sock, text, strlen(text), ctl->timeout_ms, raw, &len);
	if (rc == KANAL_ETIMEDOUT) {
		ctl_no_reply(ctl, "admin endpoint", endpoint);
		goto done;
	}
	if (rc < 0) {
		ctl_error("asking the admin endpoint at %s failed: %s", endpoint,
			  rc == KANAL_EIO ? zmq_strerror(errno) : kanal_strerror(rc));
		goto done;
	}
	*reply = json_loadb(*raw, len, 0, NULL);
	if (!json_is_object(*reply)) {
		ctl_error("the admin endpoint at %s sent a reply kanalctl cannot read: %.200s",
			  endpoint, *raw);
		json_decref(*reply);
		*reply = NULL;
		free(*raw);
		*raw = NULL;
		goto done;
	}
	status = CTL_EXIT_OK;
done:
	if (sock)
		zmq_close(sock);
	if (zctx)
		zmq_ctx_term(zctx);
	free(text);
	return status;
}
