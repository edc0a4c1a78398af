/*
 * cli/cmd_keygen.c — `kanalctl keygen`, and the client side of CURVE for `send` and `tail`.
 *
 * keygen writes a CURVE key pair made by zmq_curve_keypair: PREFIX.key holds the secret
 * key and is created with mode 0600 (kanald refuses a secret key file others may read),
 * PREFIX.pub the public key. Each is a comment line and one line of 40 Z85 characters, the
 * form conf_read_curve_key reads. Existing files are never overwritten: replacing a key
 * by accident locks out every client that knew the old one.
 *
 * ctl_connect_secure makes the gateway's and the stream's sockets CURVE clients when the
 * operator gave the broker's public key and our key pair. A socket monitor watches the
 * handshake, so that when nothing answers, kanalctl can say "kanald refused our key"
 * rather than only "no reply" (ZAP refusals are silent on the wire by design).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "kanalctl.h"

#define CTL_MONITOR_ENDPOINT "inproc://kanalctl-curve-monitor"

/* The monitor of the one CURVE socket a kanalctl command opens, and what it saw. */
static void *s_monitor;
static int s_auth_status; /* the ZAP status of a refused handshake, e.g. 400 */
static bool s_handshake_failed, s_handshake_ok, s_connected;

/* Writes `text` to a new file at path with `mode`, refusing to replace one. Returns 0, or
 * -1 after printing why. */
static int s_write_new(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	size_t len = strlen(text);

	if (fd < 0) {
		if (errno == EEXIST)
			ctl_error("keygen: %s exists; not overwriting a key (remove it first, or "
				  "choose another --out)",
				  path);
		else
			ctl_error("keygen: cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	/* The umask may have taken bits away, never added any; set the mode exactly. */
	if (fchmod(fd, mode) < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
		ctl_error("keygen: cannot write %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	if (close(fd) < 0) {
		ctl_error("keygen: cannot write %s: %s", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
}

int cmd_keygen(ctl_t *ctl, int argc, char **argv)
{
	const char *prefix = ctl->out ? ctl->out : "kanal";
	char public_key[41], secret_key[41], *key_path = NULL, *pub_path = NULL;
	char text[160];
	int status = CTL_EXIT_ERROR;

	(void)argv;
	if (argc > 0) {
		ctl_error("keygen takes no arguments (the files are named with --out PREFIX)");
		return CTL_EXIT_ERROR;
	}
	if (!*prefix) {
		ctl_error("keygen: --out needs a PREFIX, e.g. keys/kanald");
		return CTL_EXIT_ERROR;
	}
	if (zmq_curve_keypair(public_key, secret_key) < 0) {
		ctl_error("keygen: this libzmq cannot make CURVE keys: %s", zmq_strerror(errno));
		return CTL_EXIT_ERROR;
	}
	if (asprintf(&key_path, "%s.key", prefix) < 0 ||
	    asprintf(&pub_path, "%s.pub", prefix) < 0) {
		ctl_error("keygen: out of memory");
		goto out;
	}
	/* The public file first: should the secret one fail, nothing usable is half-made. */
	snprintf(text, sizeof text, "# kanal CURVE public key (kanalctl keygen): give it out\n%s\n",
		 public_key);
	if (s_write_new(pub_path, text, 0644) < 0)
		goto out;
	snprintf(text, sizeof text,
		 "# kanal CURVE secret key (kanalctl keygen): keep it private, "
		 "mode 0600\n%s\n",
		 secret_key);
	if (s_write_new(key_path, text, 0600) < 0) {
		unlink(pub_path);
		goto out;
	}
	printf("wrote %s (secret, mode 0600) and %s\npublic key: %s\n", key_path, pub_path,
	       public_key);
	status = CTL_EXIT_OK;
out:
	explicit_bzero(secret_key, sizeof secret_key);
	explicit_bzero(text, sizeof text);
	free(key_path);
	free(pub_path);
	return status;
}

/* Reads the broker's public key: a Z85 key as given, or the .pub file it names. */
static int s_server_key(const char *arg, char key[41])
{
	uint8_t raw[32];
	char why[600];

	if (strlen(arg) == 40 && zmq_z85_decode(raw, arg)) {
		memcpy(key, arg, 41);
		return 0;
	}
	if (conf_read_curve_key(arg, false, key, why, sizeof why) < 0) {
		ctl_error("--curve-server-key: neither a Z85 key (40 characters) nor a key file: "
			  "%s",
			  why);
		return -1;
	}
	return 0;
}

/* Reads our key pair: PREFIX.key (or the .key path itself), the public half derived. */
static int s_own_keys(const char *arg, char public_key[41], char secret_key[41])
{
	size_t len = strlen(arg);
	char *path = NULL, why[600];
	int rc;

	if (len > 4 && !strcmp(arg + len - 4, ".key"))
		path = strdup(arg);
	else if (asprintf(&path, "%s.key", arg) < 0)
		path = NULL;
	if (!path) {
		ctl_error("out of memory");
		return -1;
	}
	rc = conf_read_curve_key(path, true, secret_key, why, sizeof why);
	free(path);
	if (rc < 0) {
		ctl_error("--curve-key-file: %s", why);
		return -1;
	}
	if (zmq_curve_public(public_key, secret_key) < 0) {
		ctl_error("--curve-key-file: cannot derive the public key: %s",
			  zmq_strerror(errno));
		return -1;
	}
	return 0;
}

void *ctl_connect_secure(const ctl_t *ctl, void *zctx, int type, const char *endpoint,
			 const char *what)
{
	const char *server_arg =
		ctl->curve_server_key ? ctl->curve_server_key : getenv("KANAL_CURVE_SERVER_KEY");
	const char *keys_arg =
		ctl->curve_key_file ? ctl->curve_key_file : getenv("KANAL_CURVE_KEY_FILE");
	char server_key[41], public_key[41], secret_key[41];
	void *sock;
	int zero = 0;

	if (server_arg && !*server_arg)
		server_arg = NULL;
	if (keys_arg && !*keys_arg)
		keys_arg = NULL;
	if (!server_arg && !keys_arg)
		return ctl_connect(zctx, type, endpoint, what);
	if (!server_arg || !keys_arg) {
		ctl_error("CURVE needs both --curve-server-key (kanald's public key) and "
			  "--curve-key-file (our key pair from kanalctl keygen)");
		return NULL;
	}
	if (s_server_key(server_arg, server_key) < 0 ||
	    s_own_keys(keys_arg, public_key, secret_key) < 0) {
		explicit_bzero(secret_key, sizeof secret_key);
		return NULL;
	}
	sock = zmq_socket(zctx, type);
	if (!sock) {
		ctl_error("cannot create a socket for the %s: %s", what, zmq_strerror(errno));
		explicit_bzero(secret_key, sizeof secret_key);
		return NULL;
	}
	zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
	{
		/* A peer that refused our key leaves a DEALER nowhere to send: do not wait
		 * for ever. */
		int send_timeout = (int)ctl->timeout_ms;
		zmq_setsockopt(sock, ZMQ_SNDTIMEO, &send_timeout, sizeof send_timeout);
	}
	if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_key, 40) < 0 ||
	    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, public_key, 40) < 0 ||
	    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret_key, 40) < 0) {
		ctl_error("cannot set the CURVE keys for the %s: %s", what, zmq_strerror(errno));
		explicit_bzero(secret_key, sizeof secret_key);
		zmq_close(sock);
		return NULL;
	}
	explicit_bzero(secret_key, sizeof secret_key);
	/* The monitor is connected before the socket, so that no handshake event is lost. */
	if (!s_monitor && zmq_socket_monitor(sock, CTL_MONITOR_ENDPOINT,
					     ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
						     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
						     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
						     ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) == 0) {
		s_monitor = zmq_socket(zctx, ZMQ_PAIR);
		if (s_monitor) {
			zmq_setsockopt(s_monitor, ZMQ_LINGER, &zero, sizeof zero);
			if (zmq_connect(s_monitor, CTL_MONITOR_ENDPOINT) < 0) {
				zmq_close(s_monitor);
				s_monitor = NULL;
			}
		}
	}
	if (zmq_connect(sock, endpoint) < 0) {
		ctl_error("cannot connect to the %s at %s: %s", what, endpoint,
			  zmq_strerror(errno));
		ctl_close(sock);
		return NULL;
	}
	return sock;
}

/* Reads what the monitor has seen so far. */
static void s_drain_monitor(void)
{
	for (;;) {
		zmq_msg_t head, addr;
		uint16_t event;
		uint32_t value;

		zmq_msg_init(&head);
		if (zmq_msg_recv(&head, s_monitor, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&head);
			return;
		}
		if (zmq_msg_size(&head) >= 6) {
			memcpy(&event, zmq_msg_data(&head), 2);
			memcpy(&value, (char *)zmq_msg_data(&head) + 2, 4);
			if (event == ZMQ_EVENT_CONNECTED)
				s_connected = true;
			else if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
				s_handshake_ok = true;
			else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
				s_auth_status = (int)value;
			else
				s_handshake_failed = true;
		}
		if (zmq_msg_more(&head)) {
			zmq_msg_init(&addr);
			zmq_msg_recv(&addr, s_monitor, 0);
			zmq_msg_close(&addr);
		}
		zmq_msg_close(&head);
	}
}

bool ctl_curve_refused(const char *what, const char *endpoint)
{
	if (!s_monitor)
		return false;
	s_drain_monitor();
	if (s_auth_status) {
		ctl_error("the %s at %s refused our CURVE key (ZAP status %d): our public key is "
			  "not on kanald's allow-list (security.curve.clients)",
			  what, endpoint, s_auth_status);
		return true;
	}
	if (s_handshake_failed || (s_connected && !s_handshake_ok)) {
		ctl_error("no CURVE handshake with the %s at %s: is --curve-server-key kanald's "
			  "public key, and does kanald run with security.curve?",
			  what, endpoint);
		return true;
	}
	return false;
}

void ctl_close(void *sock)
{
	if (sock)
		zmq_close(sock);
	if (s_monitor) {
		zmq_close(s_monitor);
		s_monitor = NULL;
	}
}
