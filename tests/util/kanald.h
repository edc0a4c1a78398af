/*
 * tests/util/kanald.h — run the real kanald in integration tests: a fresh temporary folder
 * holding the config and routing files, ephemeral ports on 127.0.0.1, bounded waits, and
 * clean-up (kill and remove) even when a test fails half-way.
 *
 * Config and routing texts may use placeholders, replaced before writing:
 *   @DIR@       the test's temporary folder
 *   @PLUGINS@   the absolute path of the built bundled plugins ($BUILD/plugins)
 *   @TPLUGINS@  the absolute path of the built test plugins ($BUILD/tests/plugins)
 */
#ifndef KANAL_TEST_KANALD_H
#define KANAL_TEST_KANALD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct kd {
	char *dir;
	char *conf_path;
	char *log_path;
	pid_t pid;
	int exit_status; /* after kd_stop / kd_wait_exit: exit code, or 128+signal */
	char gateway[256], stream[256], admin[256];
	char admin_http[256]; /* "http://127.0.0.1:PORT", or "" when off */
	void *zctx;
} kd_t;

/* A config with the usual test settings and ephemeral endpoints; `instances` is the YAML
 * of the `instances:` list (indented by two), `extra` more top-level YAML (may be NULL). */
char *kd_config(const char *instances, const char *extra);

/* Writes the files (routes_text to @DIR@/routes/routes.yaml when not NULL) without
 * starting anything. */
kd_t *kd_prepare(const char *tag, const char *conf_text, const char *routes_text);
/* Starts kanald on the prepared folder; waits up to 10 s for its endpoints file. Returns 0,
 * or -1 when it exited first (exit_status set) or timed out. */
int kd_launch(kd_t *kd);
/* prepare + launch; NULL when either fails (the log is printed to stderr). */
kd_t *kd_start(const char *tag, const char *conf_text, const char *routes_text);
/* Starts kanald again on the same folder after it exited or was killed (kd_stop,
 * kd_wait_exit): removes the endpoints file a killed kanald leaves behind — so that the new
 * process's ephemeral endpoints are the ones read — then kd_launch. Returns -1 at once when
 * kanald is still running, else what kd_launch returns. */
int kd_restart(kd_t *kd);
/* Rewrites kanald.yaml (placeholders expanded), e.g. between kd_stop and kd_restart. */
void kd_write_config(kd_t *kd, const char *conf_text);
/* Sends sig and waits up to timeout_ms for the exit. Returns the exit status or -1. */
int kd_stop(kd_t *kd, int sig, int timeout_ms);
/* Waits for kanald to exit by itself (e.g. a refused start). */
int kd_wait_exit(kd_t *kd, int timeout_ms);
/* Kills kanald if still running and removes the folder. */
void kd_destroy(kd_t **kd_p);
/* The log so far (malloc'd). */
char *kd_log(const kd_t *kd);
/* Path inside the test folder (static buffer rotation, copy to keep). */
const char *kd_path(const kd_t *kd, const char *rel);
/* Rewrites the routing file (for reload tests). */
void kd_write_routes(kd_t *kd, const char *routes_text);

/* Sends one gateway request (an event or batch JSON text); returns the reply (malloc'd)
 * or NULL after timeout_ms. */
char *kd_send(kd_t *kd, const char *json, int timeout_ms);
/* Sends json — one event or a batch (a JSON array of events) — through the gateway and
 * waits up to timeout_ms for the reply. When `want` is not NULL, every result in the reply
 * must have that status ("accepted", "duplicate", …); when one has not, or no reply came,
 * the reply is printed to stderr. Returns true when a reply came (and matched `want`). The
 * reply text goes to *reply_out when not NULL (NULL when none came).
 * Ownership: borrows kd and json; the caller owns *reply_out. */
bool kd_send_event(kd_t *kd, const char *json, const char *want, int timeout_ms, char **reply_out);
/* An event's JSON text: {"specversion":"1.0","id":id,"source":source,"type":type} followed
 * by ,"data":<data> when data (JSON text, e.g. "{\"n\":1}", put in as given) is not NULL.
 * The strings are put in as given too (no escaping). Ownership: the caller owns the
 * returned text (free). */
char *kd_event(const char *source, const char *id, const char *type, const char *data);
/* Sends an admin command ({"cmd": …}); returns the reply or NULL. */
char *kd_admin(kd_t *kd, const char *json, int timeout_ms);
/* The total kanald's status gives for the measures' series whose labels l1 and l2 have the
 * values v1 and v2 (any measure); -1 when there is no such series. */
long long kd_measure_total(kd_t *kd, const char *l1, const char *v1, const char *l2,
			   const char *v2);
/* POSTs body (may be NULL) with the extra headers (NULL-terminated, may be NULL) to `path`
 * on kanald's admin HTTP endpoint; returns the status (0 when no answer came).
 * Ownership: borrows all. */
long kd_admin_post(kd_t *kd, const char *path, const char *const *headers, const char *body,
		   int timeout_ms);

/* Subscribes to the event stream with `prefix` and waits until kanald has seen the
 * subscription. Returns a SUB socket. */
void *kd_subscribe(kd_t *kd, const char *prefix);
/* Receives the next happening within timeout_ms: topic into buf, payload malloc'd into
 * *payload (may be NULL to discard). Returns 0 or -1 on timeout. */
int kd_next(void *sub, char *topic, size_t size, char **payload, int timeout_ms);
/* Receives happenings until one whose topic starts with `prefix` (and whose payload holds
 * `needle`, when not NULL) arrives; returns its payload (malloc'd) or NULL on timeout. */
char *kd_expect(void *sub, const char *prefix, const char *needle, int timeout_ms);
void kd_unsubscribe(void **sub_p);

/* Number of lines in a file (0 when missing). */
size_t kd_lines(const char *path);
/* Waits until the file has at least n lines; returns the count reached. */
size_t kd_wait_lines(const char *path, size_t n, int timeout_ms);
/* Waits until `path` exists; returns false when it does not after timeout_ms. */
bool kd_wait_file(const char *path, int timeout_ms);
/* True when `text` holds something that looks like a clear CPR number. */
bool kd_has_clear_cpr(const char *text);
/* How many times `needle` occurs in `text` (0 for NULL text). */
size_t kd_count(const char *text, const char *needle);

#endif
