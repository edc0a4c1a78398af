/*
 * broker/audit.c — the operator audit log (audit.h). Every operator action that changes
 * state or shows personal data in clear — dlq replay, drop and show --clear, instance
 * pause, resume and restart, reload — is one JSON line in <state_dir>/audit.log: who, from
 * where, what, when, and the outcome. Like the CPR audit log it is created 0600, opened for
 * append only, and each line is on disk (fdatasync) before the answer leaves. The event
 * stream gets `audit.<action>` with the action, the channel and the outcome, never the
 * person. Runs on the router's thread (admin.c); audit_print is kanalctl's reader.
 */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>
#include <kanal/kanal.h>

#include "host.h"

#include "log.h"

static int s_fd = -1;

/* Opens <state_dir>/audit.log for append, created 0600 whatever the umask. */
static int s_open(const char *state_dir)
{
	char path[4096];
	struct stat st;

	if (s_fd >= 0)
		return 0;
	snprintf(path, sizeof path, "%s/audit.log", state_dir ? state_dir : ".");
	s_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (s_fd < 0) {
		log_error("audit", "cannot open the audit log %s: %s", path, strerror(errno));
		return KANAL_EIO;
	}
	/* An existing file others may read is tightened, as the journal's is. */
	if (fstat(s_fd, &st) == 0 && (st.st_mode & 077) && fchmod(s_fd, 0600) == 0)
		log_warn("audit", "%s could be read by others; made it 0600", path);
	return 0;
}

int audit_record(const char *state_dir, stream_t *stream, const audit_actor_t *actor,
		 const char *action, json_t *target, bool ok, const char *error)
{
	char ts[KANAL_TIME_RFC3339_SIZE], topic[64];
	json_t *line;
	char *text;
	int rc = 0;

	kanal_time_rfc3339(kanal_wall_ms(), ts, sizeof ts);
	line = json_pack("{s:s, s:s, s:s, s:s, s:s, s:O?, s:s}", "time", ts, "who", actor->who,
			 "via", actor->via, "from", actor->from, "action", action, "target", target,
			 "outcome", ok ? "ok" : "refused");
	if (line && !ok && error)
		json_object_set_new(line, "error", json_string(error));
	text = line ? json_dumps(line, JSON_COMPACT) : NULL;
	json_decref(line);
	if (!text)
		return KANAL_ENOMEM;
	/* A letter id or an error could hold a number by mistake: the log holds none. */
	kanal_cpr_redact_inplace(text);
	if ((rc = s_open(state_dir)) == 0) {
		size_t len = strlen(text);
		text[len] = '\n'; /* json_dumps's terminator becomes the line's end */
		if (write(s_fd, text, len + 1) != (ssize_t)(len + 1) || fdatasync(s_fd) != 0) {
			log_error("audit", "cannot write the audit log: %s", strerror(errno));
			rc = KANAL_EIO;
		}
	}
	free(text);
	snprintf(topic, sizeof topic, "audit.%s", action);
	stream_publish(stream, topic, "-", NULL,
		       json_pack("{s:s, s:s, s:O?, s:s}", "action", action, "via", actor->via,
				 "target", target, "outcome", ok ? "ok" : "refused"));
	return rc;
}

/* The user name of uid, or "uid N". */
static void s_user(unsigned long uid, char *out, size_t size)
{
	struct passwd pw, *res = NULL;
	char buf[1024];

	if (getpwuid_r((uid_t)uid, &pw, buf, sizeof buf, &res) == 0 && res)
		snprintf(out, size, "%s", res->pw_name);
	else
		snprintf(out, size, "uid %lu", uid);
}

static char s_key[65];
static pthread_once_t s_key_once = PTHREAD_ONCE_INIT;

static void s_make_key(void)
{
	unsigned char raw[32];

	/* Without random bytes no relayed actor is trusted: the key stays empty, which
	 * audit_actor_of never accepts. */
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		return;
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(s_key + 2 * i, 3, "%02x", raw[i]);
}

const char *audit_relay_key(void)
{
	pthread_once(&s_key_once, s_make_key);
	return s_key;
}

void audit_actor_of(const char *endpoint, void *msg, json_t *req, audit_actor_t *out)
{
	json_t *relayed = json_object_get(req, "actor");
	const char *key = json_string_value(json_object_get(relayed, "key"));
	const char *peer = msg ? zmq_msg_gets(msg, "Peer-Address") : NULL;

	memset(out, 0, sizeof *out);
	if (key && audit_relay_key()[0] && !strcmp(key, audit_relay_key())) {
		const char *who = json_string_value(json_object_get(relayed, "who"));
		const char *from = json_string_value(json_object_get(relayed, "from"));
		snprintf(out->who, sizeof out->who, "%s", who ? who : "unknown");
		snprintf(out->via, sizeof out->via, "http");
		snprintf(out->from, sizeof out->from, "%s", from ? from : "");
		return;
	}
	snprintf(out->who, sizeof out->who, "unknown");
	if (endpoint && !strncmp(endpoint, "ipc://", 6)) {
		/* libzmq ends an ipc peer's Peer-Address with its SO_PEERCRED, ":uid:gid:pid"
		 * ("localhost:1000:1000:4711"). */
		const char *creds = peer ? strchr(peer, ':') : NULL;
		unsigned long uid, gid, pid;
		snprintf(out->via, sizeof out->via, "ipc");
		if (creds && sscanf(creds, ":%lu:%lu:%lu", &uid, &gid, &pid) == 3) {
			s_user(uid, out->who, sizeof out->who);
			snprintf(out->from, sizeof out->from, "pid %lu", pid);
		}
		return;
	}
	{
		/* The transport is the endpoint's scheme ("tcp" from tcp://127.0.0.1:7702). */
		const char *colon = endpoint ? strstr(endpoint, "://") : NULL;
		int len = colon && colon - endpoint < (int)sizeof out->via ? (int)(colon - endpoint)
									   : 3;
		snprintf(out->via, sizeof out->via, "%.*s", len, colon ? endpoint : "tcp");
	}
	snprintf(out->from, sizeof out->from, "%s", peer ? peer : "");
}

int audit_print(const char *path, int64_t since_ms, bool json, FILE *out)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	int n = 0;

	if (!f)
		return errno == ENOENT ? KANAL_ENOTFOUND : KANAL_EIO;
	while (getline(&line, &cap, f) > 0) {
		json_t *e = json_loads(line, 0, NULL);
		const char *t = json_string_value(json_object_get(e, "time"));
		int64_t ms = 0;

		if (!e || !t || kanal_time_parse_rfc3339(t, &ms) != 0 || ms < since_ms) {
			json_decref(e);
			continue;
		}
		if (json) {
			char *text = json_dumps(e, JSON_COMPACT);
			fprintf(out, "%s\n", text ? text : "{}");
			free(text);
		} else {
			char *target = json_dumps(json_object_get(e, "target"),
						  JSON_COMPACT | JSON_ENCODE_ANY);
			const char *err = json_string_value(json_object_get(e, "error"));
			char text[1024], safe[4096];
			snprintf(text, sizeof text, "%s  %-8s %s by %s via %s%s%s  %s%s%s", t,
				 json_string_value(json_object_get(e, "outcome")),
				 json_string_value(json_object_get(e, "action")),
				 json_string_value(json_object_get(e, "who")),
				 json_string_value(json_object_get(e, "via")),
				 json_string_length(json_object_get(e, "from")) ? " from " : "",
				 json_string_value(json_object_get(e, "from")),
				 target && strcmp(target, "null") ? target : "", err ? "  " : "",
				 err ? err : "");
			/* The file is kanald's, but printed text stays printable and masked. */
			kanal__log_escape(safe, sizeof safe, text, strlen(text));
			kanal_cpr_redact_inplace(safe);
			fprintf(out, "%s\n", safe);
			free(target);
		}
		json_decref(e);
		n++;
	}
	free(line);
	fclose(f);
	return n;
}
