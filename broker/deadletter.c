/*
 * broker/deadletter.c — the dead-letter file. A record is built as one JSON line whose
 * `event` member is the event's own serialisation, then written in one append and synced,
 * so a crash leaves either the whole record or none of it.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deadletter.h"
#include "host.h"

struct deadletter {
	int fd;
	char *path;
	size_t count;
};

deadletter_t *deadletter_open(const char *state_dir, char *err, size_t err_size)
{
	deadletter_t *dl = calloc(1, sizeof *dl);

	if (!dl || asprintf(&dl->path, "%s/deadletter.jsonl", state_dir) < 0) {
		free(dl);
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	/* Dead letters hold whole events, personal data included: owner only, whatever the
	 * umask, and an older file others could read is tightened. */
	mkdir(state_dir, 0700);
	dl->fd = open(dl->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (dl->fd >= 0)
		(void)fchmod(dl->fd, 0600);
	if (dl->fd < 0) {
		snprintf(err, err_size, "cannot open the dead-letter file %s: %s", dl->path,
			 strerror(errno));
		free(dl->path);
		free(dl);
		return NULL;
	}
	return dl;
}

void deadletter_close(deadletter_t **dl_p)
{
	deadletter_t *dl = dl_p ? *dl_p : NULL;

	if (!dl)
		return;
	close(dl->fd);
	free(dl->path);
	free(dl);
	*dl_p = NULL;
}

int deadletter_write(deadletter_t *dl, const kanal_msg_t *ev, const char *route,
		     const char *destination, const char *reason, int attempts, char *const *errors,
		     size_t n_errors)
{
	char ts[40];
	json_t *o, *errs;
	char *head, *event_text, *line;
	size_t head_len, ev_len, len;
	ssize_t w;
	int rc = 0;

	kanal_time_rfc3339(kanal_wall_ms(), ts, sizeof ts);
	errs = json_array();
	for (size_t i = 0; i < n_errors; i++)
		json_array_append_new(errs, json_string(errors[i] ? errors[i] : ""));
	o = json_pack("{s:s, s:s?, s:s?, s:s, s:i, s:o}", "ts", ts, "route", route, "destination",
		      destination, "reason", reason ? reason : "", "attempts", attempts, "errors",
		      errs);
	if (!o)
		return KANAL_ENOMEM;
	head = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	event_text = kanal_msg_to_json(ev, &ev_len);
	if (!head || !event_text) {
		free(head);
		kanal_free(event_text);
		return KANAL_ENOMEM;
	}
	/* Splice the event in verbatim: {"ts":…,"errors":[…],"event":{…}}\n */
	head_len = strlen(head);
	len = head_len - 1 + strlen(",\"event\":") + ev_len + 2;
	line = malloc(len + 1);
	if (!line) {
		rc = KANAL_ENOMEM;
		goto out;
	}
	memcpy(line, head, head_len - 1);
	len = head_len - 1;
	memcpy(line + len, ",\"event\":", 9);
	len += 9;
	memcpy(line + len, event_text, ev_len);
	len += ev_len;
	line[len++] = '}';
	line[len++] = '\n';
	w = write(dl->fd, line, len);
	if (w != (ssize_t)len || fsync(dl->fd) < 0)
		rc = KANAL_EIO;
	else
		dl->count++;
	free(line);
out:
	free(head);
	kanal_free(event_text);
	return rc;
}

size_t deadletter_count(const deadletter_t *dl)
{
	return dl->count;
}

const char *deadletter_path(const deadletter_t *dl)
{
	return dl->path;
}
