/*
 * cli/kanalctl.h — what the parts of kanalctl share: the parsed command line, the exit
 * statuses, and the helpers every command uses (finding and loading kanald.yaml, finding
 * kanald's endpoints, reading an event file, printing text with CPR numbers masked, one
 * request/reply over ZeroMQ with a deadline).
 *
 * kanalctl.c parses the command line and dispatches; each cmd_*.c file implements one
 * command or a family of them; common.c holds the helpers declared at the bottom.
 */
#ifndef KANALCTL_H
#define KANALCTL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <kanal/kanal.h>
#include "conf.h"

/* Exit statuses shared by every command: the answer is yes, the answer is no (a check
 * failed, an event is invalid, a reload was refused), or no answer could be had (bad usage,
 * an unreadable file, nothing listening). Commands document where they differ. */
enum {
	CTL_EXIT_OK = 0,
	CTL_EXIT_NO = 1,
	CTL_EXIT_ERROR = 2,
};

/* The reply timeout used when --timeout is not given. */
#define CTL_DEFAULT_TIMEOUT_MS 5000

/* Options, each a bit, so that a command can say which ones it accepts. */
enum {
	CTL_OPT_CONFIG = 1 << 0,        /* -c FILE, --config FILE */
	CTL_OPT_GATEWAY = 1 << 1,       /* --gateway ENDPOINT */
	CTL_OPT_STREAM = 1 << 2,        /* --stream ENDPOINT */
	CTL_OPT_ADMIN = 1 << 3,         /* --admin ENDPOINT */
	CTL_OPT_TIMEOUT = 1 << 4,       /* --timeout MS */
	CTL_OPT_COUNT = 1 << 5,         /* --count N */
	CTL_OPT_JSON = 1 << 6,          /* --json */
	CTL_OPT_ROUTE = 1 << 7,         /* --route R (dlq) */
	CTL_OPT_TYPE = 1 << 8,          /* --type T (dlq) */
	CTL_OPT_SINCE = 1 << 9,         /* --since TIME (dlq) */
	CTL_OPT_LIMIT = 1 << 10,        /* --limit N (dlq list) */
	CTL_OPT_CLEAR = 1 << 11,        /* --clear (dlq show) */
	CTL_OPT_ALL_MATCHING = 1 << 12, /* --all-matching (dlq replay) */
	CTL_OPT_OUT = 1 << 13,          /* --out PREFIX (keygen) */
	CTL_OPT_CURVE = 1 << 14,        /* --curve-server-key KEY, --curve-key-file PREFIX */
	CTL_OPT_PERIOD = 1 << 15,       /* --from DAY, --to DAY (report) */
	CTL_OPT_BY = 1 << 16,           /* --by LABEL,... (report) */
	CTL_OPT_CSV = 1 << 17,          /* --csv (report) */
	CTL_OPT_OLDER_THAN = 1 << 18,   /* --older-than TIME (dlq purge) */
	CTL_OPT_CLUSTER = 1 << 19,      /* --cluster (status) */
};

/* The parsed command line. Strings are borrowed from argv. */
typedef struct ctl {
	const char *prog;         /* "kanalctl" */
	const char *conf_flag;    /* -c FILE, or NULL */
	const char *gateway_flag; /* --gateway, or NULL */
	const char *stream_flag;
	const char *admin_flag;
	int64_t timeout_ms; /* --timeout, else CTL_DEFAULT_TIMEOUT_MS */
	bool timeout_given;
	int64_t count;                /* --count, else 0: no limit */
	bool json;                    /* --json */
	const char *route;            /* --route, or NULL */
	const char *type;             /* --type, or NULL */
	const char *since;            /* --since, as typed, or NULL */
	int64_t limit;                /* --limit, else 0: kanald's default */
	bool clear;                   /* --clear */
	bool all_matching;            /* --all-matching */
	const char *older_than;       /* --older-than, as typed, or NULL */
	const char *out;              /* --out PREFIX (keygen), or NULL */
	const char *curve_server_key; /* --curve-server-key: Z85 or a .pub file, or NULL */
	const char *curve_key_file;   /* --curve-key-file: our PREFIX(.key), or NULL */
	const char *from, *to;        /* --from, --to: days (YYYY-MM-DD), or NULL */
	const char *by;               /* --by: label names separated by ',', or NULL */
	bool csv;                     /* --csv */
	bool cluster;                 /* --cluster */
	unsigned given;               /* CTL_OPT_* bits of the options on the command line */
} ctl_t;

/* ---- Commands. Each takes the positional arguments after the command's name and returns
 * the process exit status. */
int cmd_check(ctl_t *ctl, int argc, char **argv);
int cmd_explain(ctl_t *ctl, int argc, char **argv);
int cmd_test(ctl_t *ctl, int argc, char **argv);
int cmd_validate(ctl_t *ctl, int argc, char **argv);
int cmd_send(ctl_t *ctl, int argc, char **argv);
int cmd_tail(ctl_t *ctl, int argc, char **argv);
int cmd_reload(ctl_t *ctl, int argc, char **argv);
int cmd_routes(ctl_t *ctl, int argc, char **argv);
int cmd_status(ctl_t *ctl, int argc, char **argv);
int cmd_plugin(ctl_t *ctl, int argc, char **argv);
int cmd_dlq(ctl_t *ctl, int argc, char **argv);
int cmd_keygen(ctl_t *ctl, int argc, char **argv);
int cmd_report(ctl_t *ctl, int argc, char **argv);
int cmd_audit(ctl_t *ctl, int argc, char **argv);

/* ---- Helpers (kanalctl.c). */

/* Refuses the options on the command line that are not in `allowed` (CTL_OPT_* bits):
 * prints "WHAT: option X does not apply (kanalctl help TOPIC)" for the first one and
 * returns -1; returns 0 when all apply. For commands with subcommands (dlq) whose
 * subcommands take different options. */
int ctl_check_options(const ctl_t *ctl, unsigned allowed, const char *what, const char *topic);

/* ---- Helpers (common.c). */

/* Prints "kanalctl: " and the formatted text and a newline to stderr, with CPR numbers
 * masked. */
void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints the formatted text to out with every CPR number masked (DDMMYY-XXXX). Use it for
 * every line that carries text taken from an event, a file or a peer. */
void ctl_printf(FILE *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ctl_vprintf(FILE *out, const char *fmt, va_list ap);

/* Picks the kanald.yaml to use: -c FILE, else $KANAL_CONF, else ./conf/kanald.yaml when it
 * exists, else /usr/local/etc/kanal/kanald.yaml. Returns NULL (after printing why) when the
 * chosen file does not exist. Ownership: the string is static or borrowed from argv or the
 * environment. */
const char *ctl_conf_path(const ctl_t *ctl);

/* Loads the chosen kanald.yaml with conf_load, printing its errors (diag_print) to stderr.
 * Returns the config or NULL. Ownership: the caller destroys it with conf_destroy. */
conf_t *ctl_conf_load(const ctl_t *ctl);

/* The names of the config's instances, in file order, as an array for routes_load.
 * Returns NULL only when out of memory (an empty config gives a non-NULL empty array).
 * Ownership: the caller frees the array; the strings are borrowed from conf. */
const char **ctl_instance_names(const conf_t *conf);

/* Loads the routing table from `paths` (NULL: the config's route_paths) with the config's
 * instance names, as `check` does (cmd_check.c). Returns 0 and *out, or a negative code with
 * the errors in d. Ownership: borrows conf and paths; *out is new (routes_destroy). */
struct routes;
int ctl_load_routes(const conf_t *conf, char **paths, size_t n_paths, struct routes **out,
		    diag_t *d);

/* Finds the endpoint of kanald's `name` socket ("gateway", "stream" or "admin"): the
 * --NAME flag, else $KANAL_NAME, else the `name=` line of <run_dir>/endpoints, else the
 * config's configured endpoint. Writes it into buf and returns 0; prints why and returns -1
 * when it cannot be found or is disabled. */
int ctl_endpoint(const ctl_t *ctl, const char *name, char *buf, size_t size);

/* Reads a whole file, or standard input when path is "-", into a new NUL-terminated buffer
 * and its length. Refuses files above `limit` bytes. Returns 0, or -1 after printing why.
 * Ownership: *out is new; free it with free(). */
int ctl_read_input(const char *path, size_t limit, char **out, size_t *len);

/* The display name of an input path: "<stdin>" for "-". */
const char *ctl_input_name(const char *path);

/* Sends one frame on the ZeroMQ socket `sock` and waits up to timeout_ms for a reply
 * message; the reply is its last frame (so DEALER and REQ sockets read alike). Returns 0
 * with the reply in *out (NUL-terminated) and its length, KANAL_ETIMEDOUT when nothing came,
 * or KANAL_EIO when sending or receiving failed (errno tells). Ownership: borrows payload;
 * *out is new; free it with free(). */
int ctl_zmq_request(void *sock, const char *payload, size_t len, int64_t timeout_ms, char **out,
		    size_t *out_len);

/* Creates a ZeroMQ socket of `type` with linger 0 (closing never waits for unsent
 * messages) and connects it to endpoint. Returns the socket, or NULL after printing why;
 * `what` names the peer in that message. Ownership: close it with zmq_close. */
void *ctl_connect(void *zctx, int type, const char *endpoint, const char *what);

/* ctl_connect for the gateway and the stream (cmd_keygen.c): with --curve-server-key and
 * --curve-key-file (or $KANAL_CURVE_SERVER_KEY and $KANAL_CURVE_KEY_FILE) the socket is a
 * CURVE client with our key pair, else plain. Returns the socket, or NULL after printing
 * why. Ownership: close it with zmq_close. */
void *ctl_connect_secure(const ctl_t *ctl, void *zctx, int type, const char *endpoint,
			 const char *what);

/* After a request went unanswered on a socket from ctl_connect_secure: when the peer
 * refused our CURVE handshake, prints why (our key is not on its allow-list, or the
 * server key is wrong) and returns true; else returns false and prints nothing. */
bool ctl_curve_refused(const char *what, const char *endpoint);

/* Closes a socket from ctl_connect_secure (or ctl_connect) and the handshake monitor
 * ctl_connect_secure may have opened: the ZeroMQ context cannot end while it is open.
 * Accepts NULL. */
void ctl_close(void *sock);

/* Monotonic milliseconds. */
int64_t ctl_now_ms(void);
/* Turns --since TIME into RFC 3339 UTC: TIME is RFC 3339 (any offset) or a duration with
 * a unit ("90s", "30m", "2h", "1d", "1.5h") meaning that long before now. Returns 0, or -1
 * after printing, as `what` ("dlq list"), what is accepted (cmd_dlq.c). */
int ctl_since(const char *what, const char *text, char *buf, size_t size);

/* Prints the standard "nothing answered" error for a socket kind ("gateway", "admin
 * endpoint") at endpoint. */
void ctl_no_reply(const ctl_t *ctl, const char *what, const char *endpoint);

/* Sends `request` to kanald's admin socket and waits for its reply. Returns CTL_EXIT_OK
 * with the reply object in *reply and its text in *raw, or CTL_EXIT_ERROR after printing
 * why there is none (no endpoint, no reply within --timeout, a reply that is not a JSON
 * object). Ownership: borrows request; *reply (json_decref) and *raw (free) are new. */
struct json_t;
int ctl_admin_call(const ctl_t *ctl, struct json_t *request, struct json_t **reply, char **raw);

/* ---- Dead letters for people (dlq_print.c). The items are what kanald sent: any field may
 * be absent or of any type, and is then printed as "-". */

/* Prints the items of a dlq.list reply to out as a table with aligned columns (ID, DEAD AT,
 * ROUTE, DESTINATION, TYPE, EVENT ID, ATTEMPTS, ERROR), CPR numbers masked. Returns 0, or
 * -1 when out of memory (after saying so). Ownership: borrows items. */
int ctl_dlq_print_list(FILE *out, struct json_t *items);

/* Prints one dead letter of a dlq.show reply to out in full: the list fields, any further
 * fields kanald sends, the error history one per line and the event as indented JSON.
 * CPR numbers masked unless clear. Ownership: borrows item. */
void ctl_dlq_print_letter(FILE *out, struct json_t *item, bool clear);

#endif
