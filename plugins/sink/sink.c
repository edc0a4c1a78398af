/*
 * plugins/sink/sink.c — the reference sink plugin: it records every event delivered to it,
 * one line per event, in a file or on standard output. Tests read the file back to check
 * that nothing was lost; the demo shows the `line` format on a terminal; fallback and retry
 * tests use its `fail_type` and `retry_type` options to make a destination refuse events;
 * `delay` turns it into a slow destination for backpressure tests.
 *
 * Each line goes out in one write(2) on a descriptor opened with O_APPEND, so several sink
 * instances (or processes) appending to the same file never interleave their lines. The
 * `json` format is the event exactly as the bus holds it — it is the destination's data,
 * nothing is masked; the compact `line` format is meant for a terminal and is passed
 * through kanal_cpr_redact.
 *
 * With a retention (`max_events`, `max_age`) the file keeps only what is within it: the
 * time each line was written is noted in <path>.times (0600), and what is beyond is purged
 * at start, once a minute and whenever the file holds twice max_events — by copying what
 * stays into a new file renamed over the old one. Such a file must be this instance's own.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <kanal/kanal.h>

#include "../common/kc_files.h"

typedef enum sink_format { SINK_JSON, SINK_LINE } sink_format_t;

typedef struct sink {
	const char *path; /* borrowed from the config */
	int fd;
	bool owns_fd; /* false for standard output */
	sink_format_t format;
	const char *format_name; /* the `format` option, borrowed */
	const char *fail_type;   /* borrowed from the config; NULL: none */
	const char *retry_type;
	int64_t retry_after_ms;
	int64_t delay_ms;
	bool fsync;
	bool broken_line;   /* a failed write left part of a line: start the next with \n */
	int64_t max_events; /* retention: keep at most this many lines; 0: no limit */
	int64_t max_age_ms; /* retention: drop lines written longer ago; 0: no limit */
	int times_fd;       /* <path>.times: when each line was written (retention only) */
	int64_t n_lines;    /* lines in the file since the last purge (retention only) */
	char *buf;          /* the line being written, reused */
	size_t cap;
} sink_t;

static const char *const s_formats[] = { "json", "line", NULL };

static const kanal_option_t s_options[] = {
	{ .name = "path",
	  .type = KANAL_OPT_PATH,
	  .default_value = "-",
	  KANAL_OPT_AT(sink_t, path),
	  .help = "File to append one line per event to; \"-\" is standard output." },
	{ .name = "format",
	  .type = KANAL_OPT_STRING,
	  .default_value = "json",
	  .allowed = s_formats,
	  KANAL_OPT_AT(sink_t, format_name),
	  .help = "json: the whole event as one JSON line; line: \"<time> <type> <id> "
		  "<subject>\", CPR numbers masked, for a terminal." },
	{ .name = "fail_type",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(sink_t, fail_type),
	  .help = "REJECT events of exactly this type (to test fallback routes)." },
	{ .name = "retry_type",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(sink_t, retry_type),
	  .help = "Answer RETRY to events of exactly this type (to test retries)." },
	{ .name = "retry_after",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "1s",
	  .min = "0",
	  KANAL_OPT_AT(sink_t, retry_after_ms),
	  .help = "The retry hint given with a RETRY (retry_type, or a failed write)." },
	{ .name = "delay",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "0",
	  .min = "0",
	  KANAL_OPT_AT(sink_t, delay_ms),
	  .help = "Sleep this long for every event, to simulate a slow destination." },
	{ .name = "fsync",
	  .type = KANAL_OPT_BOOL,
	  .default_value = "false",
	  KANAL_OPT_AT(sink_t, fsync),
	  .help = "fsync the file after every line, so an OK means the line is on disk." },
	{ .name = "max_events",
	  .type = KANAL_OPT_INT,
	  .default_value = "0",
	  .min = "0",
	  KANAL_OPT_AT(sink_t, max_events),
	  .help = "Retention: keep at most this many events in the file, the oldest purged "
		  "first (0: no limit). Needs a file of this instance's own." },
	{ .name = "max_age",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "0",
	  .min = "0",
	  KANAL_OPT_AT(sink_t, max_age_ms),
	  .help = "Retention: purge events written longer ago than this (0: no limit). "
		  "When each line was written is kept in <path>.times." },
	{ .name = NULL },
};

/* Makes s->buf hold at least `size` bytes. Returns 0 or KANAL_ENOMEM. */
static int s_reserve(sink_t *s, size_t size)
{
	size_t cap = s->cap ? s->cap : 1024;
	char *p;

	if (size <= s->cap)
		return 0;
	while (cap < size)
		cap *= 2;
	p = realloc(s->buf, cap);
	if (!p)
		return KANAL_ENOMEM;
	s->buf = p;
	s->cap = cap;
	return 0;
}

/* Sleeps for ms milliseconds, resuming after signals. */
static void s_sleep_ms(int64_t ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Puts the event's line into s->buf — a newline first when an earlier write broke off in
 * the middle of a line, then the text, then a newline — and stores its length in *len.
 * Returns 0 or KANAL_ENOMEM. */
static int s_compose(sink_t *s, const char *text, size_t text_len, size_t *len)
{
	size_t at = s->broken_line ? 1 : 0;

	if (s_reserve(s, at + text_len + 1) != 0)
		return KANAL_ENOMEM;
	if (at)
		s->buf[0] = '\n';
	memcpy(s->buf + at, text, text_len);
	s->buf[at + text_len] = '\n';
	*len = at + text_len + 1;
	return 0;
}

/* The `line` format: "<time> <type> <id> <subject>", control characters replaced, CPR
 * numbers masked. Returns a new string (free with kanal_free) or NULL when out of memory. */
static char *s_format_line(const kanal_msg_t *msg)
{
	const char *time = kanal_msg_time(msg);
	const char *subject = kanal_msg_subject(msg);
	char now[40];
	char *line = NULL, *masked;
	int n;

	if (!time) {
		kanal_time_rfc3339(kanal_wall_ms(), now, sizeof now);
		time = now;
	}
	n = asprintf(&line, "%s %s %s %s", time, kanal_msg_type(msg), kanal_msg_id(msg),
		     subject ? subject : "-");
	if (n < 0)
		return NULL;
	for (char *p = line; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	masked = kanal_cpr_redact(line, (size_t)n);
	free(line);
	return masked;
}

/* Writes s->buf[0..len) with one write(2) — the kernel appends it as a whole — looping only
 * when the kernel writes less (a full disk, a pipe). Returns 0 or -errno. */
static int s_write(sink_t *s, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(s->fd, s->buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int code = n < 0 ? errno : EIO;
			if (done > 0)
				s->broken_line = true;
			return -code;
		}
		done += (size_t)n;
	}
	s->broken_line = false;
	return 0;
}

/* Flushes the file to disk; descriptors that cannot be synced (a terminal, a pipe) count
 * as synced. Returns 0 or -errno. */
static int s_sync(sink_t *s)
{
	if (fsync(s->fd) == 0 || errno == EINVAL || errno == EROFS || errno == ENOTSUP)
		return 0;
	return -errno;
}

/* Records one event. Returns 0, KANAL_ENOMEM, or -errno of a failed write or fsync. */
static int s_record(sink_t *s, const kanal_msg_t *msg)
{
	size_t text_len = 0, len = 0;
	char *text;
	int rc;

	if (s->format == SINK_JSON) {
		text = kanal_msg_to_json(msg, &text_len);
		/* One event per line: the bus keeps data byte for byte, line breaks between its
		 * tokens included. A raw line break in valid JSON can only be such whitespace
		 * (inside a string it is escaped), so a space keeps the meaning. */
		for (size_t i = 0; text && i < text_len; i++)
			if (text[i] == '\n' || text[i] == '\r')
				text[i] = ' ';
	} else {
		text = s_format_line(msg);
		text_len = text ? strlen(text) : 0;
	}
	if (!text)
		return KANAL_ENOMEM;
	rc = s_compose(s, text, text_len, &len);
	kanal_free(text);
	if (rc == 0)
		rc = s_write(s, len);
	if (rc == 0 && s->fsync)
		rc = s_sync(s);
	return rc;
}

/* ---- retention ------------------------------------------------------------------------ */

static bool s_retains(const sink_t *s)
{
	return s->max_events > 0 || s->max_age_ms > 0;
}

/* Copies the lines of `path` from line `from` on into a new file that replaces it
 * (0600, renamed over it). Returns 0 or -errno. */
static int s_keep_from(const char *path, int64_t from)
{
	char *tmp = NULL, *line = NULL;
	size_t cap = 0;
	int64_t i = 0;
	FILE *in, *out = NULL;
	int fd, rc = 0;

	if (asprintf(&tmp, "%s.purge", path) < 0)
		return -ENOMEM;
	in = fopen(path, "r");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (!in || fd < 0 || !(out = fdopen(fd, "w"))) {
		rc = -errno;
		if (fd >= 0 && !out)
			close(fd);
		goto done;
	}
	while (getline(&line, &cap, in) > 0)
		if (i++ >= from && fputs(line, out) == EOF)
			rc = -EIO;
	if (fflush(out) != 0 || fsync(fileno(out)) != 0)
		rc = -errno;
	if (fclose(out) != 0 && !rc)
		rc = -EIO;
	out = NULL;
	if (!rc && rename(tmp, path) != 0)
		rc = -errno;
done:
	if (in)
		fclose(in);
	if (rc)
		unlink(tmp);
	free(line);
	free(tmp);
	return rc;
}

/* Reopens path for appending into *fd (0600). Returns 0 or -errno. */
static int s_reopen(const char *path, int *fd)
{
	int nfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

	if (nfd < 0)
		return -errno;
	if (*fd >= 0)
		close(*fd);
	*fd = nfd;
	return 0;
}

/*
 * Purges what is beyond the retention: the oldest lines past max_events, and lines written
 * longer ago than max_age (by <path>.times; lines it does not know — written before
 * retention was on, or by someone else — count as written now). Counted as `purged` and
 * logged. Returns 0 or -errno.
 */
static int s_purge(kanal_ctx_t *ctx, sink_t *s)
{
	char times_path[4096], *line = NULL;
	int64_t *times = NULL, n_times = 0, n_lines = 0, cap_times = 0, drop = 0;
	int64_t now = kanal_wall_ms();
	size_t cap = 0;
	FILE *f;
	int rc = 0;

	snprintf(times_path, sizeof times_path, "%s.times", s->path);
	if ((f = fopen(times_path, "r"))) {
		while (getline(&line, &cap, f) > 0) {
			if (n_times == cap_times) {
				int64_t *more =
					realloc(times, (size_t)(cap_times = cap_times * 2 + 256) *
							       sizeof *times);
				if (!more) {
					rc = -ENOMEM;
					break;
				}
				times = more;
			}
			times[n_times++] = strtoll(line, NULL, 10);
		}
		fclose(f);
	}
	if ((f = fopen(s->path, "r"))) {
		while (getline(&line, &cap, f) > 0)
			n_lines++;
		fclose(f);
	}
	free(line);
	if (rc)
		goto done;
	/* Line i of the file was written at times[i - (n_lines - n_times)], or "now" when it
	 * is older than what the times file knows. */
	if (s->max_events > 0 && n_lines > s->max_events)
		drop = n_lines - s->max_events;
	while (s->max_age_ms > 0 && drop < n_lines) {
		int64_t t = drop - (n_lines - n_times);
		if (t < 0 || times[t] >= now - s->max_age_ms)
			break;
		drop++;
	}
	if (drop > 0 || n_times != n_lines) {
		FILE *tf;
		if (drop > 0 && (rc = s_keep_from(s->path, drop)) != 0)
			goto done;
		/* The times file is written again whole: one line per kept line. */
		if (!(tf = fopen(times_path, "w"))) {
			rc = -errno;
			goto done;
		}
		for (int64_t i = drop; i < n_lines; i++) {
			int64_t t = i - (n_lines - n_times);
			fprintf(tf, "%lld\n", (long long)(t >= 0 ? times[t] : now));
		}
		if (fclose(tf) != 0)
			rc = -EIO;
		(void)chmod(times_path, 0600);
		if (!rc)
			rc = s_reopen(s->path, &s->fd);
		if (!rc)
			rc = s_reopen(times_path, &s->times_fd);
	}
	s->n_lines = n_lines - drop;
	if (drop > 0) {
		kanal_metric_add(ctx, "purged", drop);
		kanal_log(ctx, KANAL_LOG_INFO,
			  "purged %lld event(s) from %s beyond the retention "
			  "(max_events %lld, max_age %lld s)",
			  (long long)drop, s->path, (long long)s->max_events,
			  (long long)(s->max_age_ms / 1000));
	}
done:
	if (rc)
		kanal_log(ctx, KANAL_LOG_WARN, "cannot apply the retention to %s: %s", s->path,
			  strerror(-rc));
	free(times);
	return rc;
}

static void s_purge_timer(kanal_ctx_t *ctx, void *arg)
{
	s_purge(ctx, arg);
}

/* After a line was written: when it was, for max_age; and a purge once the file holds
 * twice max_events (so that a busy sink does not rewrite its file for every event). */
static void s_retention_note(kanal_ctx_t *ctx, sink_t *s)
{
	char stamp[32];
	int n = snprintf(stamp, sizeof stamp, "%lld\n", (long long)kanal_wall_ms());

	if (write(s->times_fd, stamp, (size_t)n) != n)
		kanal_log(ctx, KANAL_LOG_WARN, "cannot note the time of a line in %s.times: %s",
			  s->path, strerror(errno));
	if (s->max_events > 0 && ++s->n_lines >= 2 * s->max_events)
		s_purge(ctx, s);
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	sink_t *s = state;
	const char *type = kanal_msg_type(msg);
	int rc;

	kanal_metric_add(ctx, "received", 1);
	if (s->delay_ms > 0)
		s_sleep_ms(s->delay_ms);
	if (s->fail_type && strcmp(type, s->fail_type) == 0) {
		kanal_metric_add(ctx, "rejected", 1);
		kanal_set_error(ctx, "sink rejects events of type '%s' (option fail_type)", type);
		return KANAL_OUTCOME_REJECT;
	}
	if (s->retry_type && strcmp(type, s->retry_type) == 0) {
		kanal_metric_add(ctx, "retried", 1);
		kanal_set_error(ctx, "sink asks to retry events of type '%s' (option retry_type)",
				type);
		kanal_set_retry_after(ctx, s->retry_after_ms);
		return KANAL_OUTCOME_RETRY;
	}
	rc = s_record(s, msg);
	if (rc != 0) {
		/* A full disk or a vanished mount is usually transient; the bus keeps the event
		 * and tries again. */
		kanal_metric_add(ctx, "write_errors", 1);
		kanal_set_error(ctx, "cannot write to '%s': %s", s->path,
				rc == KANAL_ENOMEM ? "out of memory" : strerror(-rc));
		kanal_set_retry_after(ctx, s->retry_after_ms);
		return KANAL_OUTCOME_RETRY;
	}
	kanal_metric_add(ctx, "written", 1);
	if (s_retains(s))
		s_retention_note(ctx, s);
	return KANAL_OUTCOME_OK;
}

static void s_destroy(void *state)
{
	sink_t *s = state;

	if (!s)
		return;
	if (s->owns_fd && s->fd >= 0)
		close(s->fd);
	if (s->times_fd >= 0)
		close(s->times_fd);
	free(s->buf);
	free(s);
}

/* A new state with the options bound (standard output for path "-" or none), or NULL. */
static sink_t *s_new(const kanal_config_t *cfg)
{
	sink_t *s = calloc(1, sizeof *s);

	if (!s)
		return NULL;
	s->fd = -1;
	s->times_fd = -1;
	/* The table has checked each option (format one of its names, no negative duration). */
	kanal_config_bind(cfg, s);
	s->format = strcmp(s->format_name, "line") == 0 ? SINK_LINE : SINK_JSON;
	if (!s->path || !*s->path || strcmp(s->path, "-") == 0)
		s->path = "-";
	return s;
}

/* The rules init and check share (docs/sdk.md, "Checking a config"): retention needs a
 * file, and the file (and its .times beside it) can be appended to — looked at, not
 * created. Returns 0 or KANAL_ECONFIG after kanal_set_error. */
static int s_validate(kanal_ctx_t *ctx, const sink_t *s)
{
	bool to_file = strcmp(s->path, "-") != 0;

	if (s_retains(s) && !to_file) {
		kanal_set_error(ctx, "options 'max_events' and 'max_age' need a file "
				     "('path'), not standard output");
		return KANAL_ECONFIG;
	}
	if (to_file && kc_file_appendable(s->path) != 0) {
		kanal_set_error(ctx, "option 'path': cannot open '%s' for appending: %s", s->path,
				strerror(errno));
		return KANAL_ECONFIG;
	}
	return 0;
}

static int s_check(kanal_ctx_t *ctx, const kanal_config_t *cfg)
{
	sink_t *s = s_new(cfg);
	int rc;

	if (!s)
		return KANAL_ENOMEM;
	rc = s_validate(ctx, s);
	s_destroy(s);
	return rc;
}

/* After s_validate, opens the file (and the retention's .times file). */
static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	sink_t *s = s_new(cfg);
	int rc = KANAL_ECONFIG;

	if (!s) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	if ((rc = s_validate(ctx, s)) != 0)
		goto fail;
	rc = KANAL_ECONFIG;
	if (strcmp(s->path, "-") == 0) {
		s->fd = STDOUT_FILENO;
	} else {
		/* 0600: the file holds the events' data, personal data included. */
		s->fd = open(s->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (s->fd < 0) {
			kanal_set_error(ctx, "option 'path': cannot open '%s' for appending: %s",
					s->path, strerror(errno));
			goto fail;
		}
		s->owns_fd = true;
	}
	if (s_retains(s)) {
		char times_path[4096];
		snprintf(times_path, sizeof times_path, "%s.times", s->path);
		s->times_fd = open(times_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (s->times_fd < 0) {
			kanal_set_error(ctx, "cannot open '%s' for appending: %s", times_path,
					strerror(errno));
			goto fail;
		}
	}
	*state = s;
	return 0;
fail:
	s_destroy(s);
	return rc;
}

static int s_start(kanal_ctx_t *ctx, void *state)
{
	sink_t *s = state;

	kanal_metric_add(ctx, "received", 0);
	kanal_metric_add(ctx, "rejected", 0);
	if (s_retains(s)) {
		/* At start, then once a minute. */
		s_purge(ctx, s);
		if (kanal_timer_add(ctx, 60000, 60000, s_purge_timer, s) < 0)
			kanal_log(ctx, KANAL_LOG_WARN,
				  "no retention timer: the file is purged "
				  "only when it holds twice max_events");
	}
	return 0;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "sink",
	.version = KANAL_VERSION,
	.description = "Records every event it receives as a line in a file or on standard "
		       "output; can reject, retry or slow down on request, for tests and demos.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.stop = NULL,
	.destroy = s_destroy,
	.check = s_check,
};
