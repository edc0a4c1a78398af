/*
 * tests/util/radicale.h — run a real CalDAV server (Radicale, the Debian package `radicale`)
 * in a test: on 127.0.0.1 with an ephemeral port, in a temporary folder (config, htpasswd
 * file, rights file, collections, log), with the given users, bounded waits, and clean-up.
 * Used by the calendar connector's suite, the end-to-end test and the demo.
 *
 *   radicale_user_t users[] = { { "kanal", "hemmelig", false }, { "alice", "pw", true },
 *                               { NULL } };
 *   radicale_t *r = radicale_start(users);      // r->url "http://127.0.0.1:<port>"
 *   radicale_request(r, "kanal", "GET", "/alice/kanal/x.ics", NULL, NULL, &body, &etag);
 *   radicale_stop(&r);
 *
 * Rights: a user whose `own_only` is false (the kanal service user) may read and write
 * every collection; a user with `own_only` true only its own /<name>/… collections (and
 * read the root), so a test can provoke 403. Authentication is htpasswd with plain
 * passwords and no delay after a failed login. Radicale logs requests (level info) to
 * r->log_path, so a test can check which methods and paths it was sent. Radicale is
 * ended with the test process even when the test never calls radicale_stop.
 */
#ifndef KANAL_TEST_RADICALE_H
#define KANAL_TEST_RADICALE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct radicale_user {
	const char *name; /* NULL ends the list */
	const char *password;
	bool own_only; /* may touch only /<name>/… ; false: everything */
} radicale_user_t;

typedef struct radicale {
	pid_t pid; /* 0 while halted */
	int port;
	char url[64];   /* "http://127.0.0.1:<port>", no trailing slash */
	char *dir;      /* the temporary folder (removed by radicale_stop) */
	char *storage;  /* <dir>/collections: Radicale's filesystem storage */
	char *log_path; /* <dir>/radicale.log */
	char *config_path;
	size_t n_users;
	radicale_user_t *users; /* copies, for radicale_request's passwords */
	pid_t parent;           /* the test process; Radicale ends when it does */
} radicale_t;

/* Writes the config, users and rights files into a fresh temporary folder, starts Radicale
 * on a free port of 127.0.0.1 (trying another port when the one picked was taken in the
 * meantime) and waits up to 15 s until it answers HTTP. `users` ends with a {NULL} entry.
 * Returns NULL (and prints why, with Radicale's log) when it does not come up.
 * Ownership: borrows users (copied); returns a new server for radicale_stop. */
radicale_t *radicale_start(const radicale_user_t *users);

/* Stops Radicale (SIGTERM, up to 5 s, then SIGKILL), removes its folder (unless
 * KANAL_KEEP_TEST_DIRS is set) and frees r. Accepts NULL. Ownership: takes *r_p. */
void radicale_stop(radicale_t **r_p);

/* Stops the process but keeps folder, port and data, to simulate an outage. Returns 0, or
 * -1 when it was not running. */
int radicale_halt(radicale_t *r);
/* Starts it again after radicale_halt, on the same port and data; waits as radicale_start.
 * Returns 0 or -1. */
int radicale_resume(radicale_t *r);

/* One HTTP request to Radicale as `user` (NULL: no credentials; the password is the one
 * given at start). `path` is absolute ("/alice/kanal/x.ics"); `headers` a NULL-terminated
 * list of "Name: value" lines or NULL; `body` may be NULL. A body gets Content-Type
 * text/calendar unless the headers give one. Returns the HTTP status (0: no answer) and,
 * when not NULL, stores the answer's body and its ETag (quotes kept; NULL when absent),
 * both malloc'd. Waits at most 10 s. */
long radicale_request(radicale_t *r, const char *user, const char *method, const char *path,
		      const char *const *headers, const char *body, char **body_out,
		      char **etag_out);

/* Creates the calendar collection `path` ("/alice/kanal/") as `user`, creating missing
 * parent collections first. Returns 0, or -1 (and prints the statuses). */
int radicale_mkcalendar(radicale_t *r, const char *user, const char *path);

/* The names of the calendar objects (resources) in the collection `path`, read through
 * PROPFIND Depth 1 as `user`, each followed by '\n', in the server's order; *count gets
 * their number. Returns a malloc'd string ("" for an empty collection), or NULL when the
 * collection cannot be read (missing, forbidden). */
char *radicale_list(radicale_t *r, const char *user, const char *path, size_t *count);

#endif
