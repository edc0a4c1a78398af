/*
 * plugins/fileout/fileout.c — the `fileout` connector (issue 16's file-out): writes the
 * events routed to it (or, with a route's `transform:`, what the transform made of them) as
 * files in a folder, for the many legacy systems that read a folder rather than an API
 * (docs/plugins/fileout.md).
 *
 * A file's name comes from a template (`{type}-{id}.json`, `{time:%Y%m%d}`, `{data.letter}`)
 * whose values are sanitised — no `/`, no control characters, never `.`, `..` or a hidden
 * name — so an event cannot name a file outside the folder. `format: json` writes one file
 * per event, atomically: a hidden temporary file in the same folder (0600), fsync, then a
 * rename that never replaces (renameat2 RENAME_NOREPLACE) and an fsync of the folder. A
 * name already taken by the same bytes is a redelivery and is left as it is; one taken by
 * other bytes gets a `-2`, `-3`, … suffix, so nothing is ever overwritten. `jsonl` and `csv`
 * append one line per event to the file the template names (a daily file by default): a new
 * file is made the same atomic way (with the CSV header), then lines are appended in one
 * write each and synced; a write that fails half-way is cut back, and a line equal to one of
 * the file's last ones (a redelivery) is not appended again. A full disk or an unwritable
 * folder is RETRY with the error; every callback runs on the instance's thread.
 */
#include "../common/kc_files.h"
#include "../common/kc_text.h"

#include <kanal/kanal.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define FO_MAX_NAME 200           /* longest file name made (bytes) */
#define FO_MAX_SUFFIX 100         /* -2 … -100: names tried when one is taken */
#define FO_TAIL (64 * 1024)       /* the end of an append file checked for a redelivery */
#define FO_RETRY_AFTER_MS 5000    /* a full disk is not over in a second */
#define FO_MAX_CONTENT (64 << 20) /* a larger event cannot reach a plugin anyway */

typedef struct fileout {
	const char *folder;
	const char *name;
	const char *format;
	const char *content;
	const char *delimiter;
	kanal_strlist_t fields;
	const char *instance;
	bool csv, jsonl, whole_event;
} fileout_t;

static const char *const s_formats[] = { "json", "jsonl", "csv", NULL };
static const char *const s_contents[] = { "event", "data", NULL };

static const kanal_option_t s_options[] = {
	{ .name = "folder",
	  .type = KANAL_OPT_PATH,
	  .required = true,
	  KANAL_OPT_AT(fileout_t, folder),
	  .help = "The folder the files are written into." },
	{ .name = "format",
	  .type = KANAL_OPT_STRING,
	  .default_value = "json",
	  .allowed = s_formats,
	  KANAL_OPT_AT(fileout_t, format),
	  .help = "json (a file per event), jsonl (a line per event appended) or csv (a row per "
		  "event appended, columns from `fields`)." },
	{ .name = "name",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(fileout_t, name),
	  .help = "The file name template: {id} {type} {source} {subject} {time} {time:FORMAT} "
		  "{data.PATH}; default {type}-{id}.json, or a daily events-{time:%Y-%m-%d}.jsonl "
		  "(.csv)." },
	{ .name = "content",
	  .type = KANAL_OPT_STRING,
	  .default_value = "event",
	  .allowed = s_contents,
	  KANAL_OPT_AT(fileout_t, content),
	  .help = "For json and jsonl: the whole event (CloudEvents JSON) or only its data (what "
		  "a route's transform made)." },
	{ .name = "fields",
	  .type = KANAL_OPT_LIST,
	  KANAL_OPT_AT(fileout_t, fields),
	  .help = "For csv: the columns, each id, type, source, subject, time or data.PATH; the "
		  "header row names them." },
	{ .name = "delimiter",
	  .type = KANAL_OPT_STRING,
	  .default_value = ",",
	  KANAL_OPT_AT(fileout_t, delimiter),
	  .help = "For csv: the field delimiter, one character (e.g. ';')." },
	{ .name = NULL },
};

/* ---- names ------------------------------------------------------------------------------- */

/* What a template lookup needs: the event, and room for the value it returns. */
typedef struct lookup {
	const kanal_msg_t *msg;
	char value[256];
} lookup_t;

/* Copies a value into l->value with every `/`, `\` and control character made `_`. */
static const char *s_clean(lookup_t *l, const char *v)
{
	size_t i = 0;

	for (; v[i] && i < sizeof l->value - 1; i++) {
		unsigned char c = (unsigned char)v[i];
		l->value[i] = (c < 0x20 || c == 0x7f || c == '/' || c == '\\') ? '_' : (char)c;
	}
	l->value[i] = '\0';
	return l->value;
}

/* The event's time (its `time` attribute, else now) as local broken-down time. */
static void s_event_tm(const kanal_msg_t *msg, struct tm *tm)
{
	int64_t ms = 0;
	time_t t;

	if (!kanal_msg_time(msg) || kanal_time_parse_rfc3339(kanal_msg_time(msg), &ms) != 0)
		ms = kanal_wall_ms();
	t = (time_t)(ms / 1000);
	localtime_r(&t, tm);
}

/* A placeholder's value, sanitised; NULL when the event has none. */
static const char *s_lookup(const char *name, void *arg)
{
	lookup_t *l = arg;
	const char *v = NULL;

	if (!strcmp(name, "id"))
		v = kanal_msg_id(l->msg);
	else if (!strcmp(name, "type"))
		v = kanal_msg_type(l->msg);
	else if (!strcmp(name, "source"))
		v = kanal_msg_source(l->msg);
	else if (!strcmp(name, "subject"))
		v = kanal_msg_subject(l->msg);
	else if (!strcmp(name, "time"))
		v = kanal_msg_time(l->msg);
	else if (!strncmp(name, "data.", 5) && kanal_msg_data_str(l->msg, name + 5, &v) != 0)
		v = NULL;
	if (!strncmp(name, "time:", 5)) {
		char text[128];
		struct tm tm;
		s_event_tm(l->msg, &tm);
		if (!strftime(text, sizeof text, name + 5, &tm))
			return NULL;
		return s_clean(l, text);
	}
	return v ? s_clean(l, v) : NULL;
}

/* Checks a template at init: known placeholders only, no `/`. A stand-in event answers. */
static const char *s_check_lookup(const char *name, void *arg)
{
	(void)arg;
	if (!strcmp(name, "id") || !strcmp(name, "type") || !strcmp(name, "source") ||
	    !strcmp(name, "subject") || !strcmp(name, "time") ||
	    (!strncmp(name, "data.", 5) && name[5]) || (!strncmp(name, "time:", 5) && name[5]))
		return "x";
	return NULL;
}

/* The file name for msg in *out (new). Returns 0, or KANAL_EINVALID with why: a value the
 * template needs is missing, or the name is too long. */
static int s_file_name(const fileout_t *fo, const kanal_msg_t *msg, char **out, char *why,
		       size_t size)
{
	lookup_t l = { .msg = msg };
	kanal_error_t err;
	char *name;

	kanal_error_clear(&err);
	*out = NULL;
	if (kc_template_expand(fo->name, s_lookup, &l, false, &name, &err) != 0) {
		snprintf(why, size, "option 'name': %.200s", err.text);
		return KANAL_EINVALID;
	}
	if (strlen(name) > FO_MAX_NAME) {
		snprintf(why, size, "the file name would be longer than %d bytes", FO_MAX_NAME);
		free(name);
		return KANAL_EINVALID;
	}
	/* Never ".", ".." or a hidden name (the temporary files are hidden). */
	if (name[0] == '.' || !name[0]) {
		char *safe = NULL;
		if (asprintf(&safe, "_%s", name) < 0) {
			free(name);
			return KANAL_ENOMEM;
		}
		free(name);
		name = safe;
	}
	*out = name;
	return 0;
}

/* ---- writing ------------------------------------------------------------------------------ */

static int s_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes buf as folder/name, atomically and never over an existing file. Returns 0, or -1
 * with errno (EEXIST: the name is taken). */
static int s_create(const fileout_t *fo, const char *name, const char *buf, size_t len)
{
	return kc_file_create_atomic(fo->folder, name, buf, len, 0600) == 0 ? 0 : -1;
}

/* True when folder/name holds exactly buf (a redelivery of the same event). */
static bool s_same_file(const fileout_t *fo, const char *name, const char *buf, size_t len)
{
	char path[4096], *have;
	struct stat st;
	bool same = false;
	int fd;

	snprintf(path, sizeof path, "%s/%s", fo->folder, name);
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return false;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == len &&
	    (have = malloc(len + 1))) {
		same = read(fd, have, len) == (ssize_t)len && !memcmp(have, buf, len);
		free(have);
	}
	close(fd);
	return same;
}

/* The name with a -k suffix before its extension: "a.json" → "a-2.json". */
static void s_suffixed(const char *name, int k, char *out, size_t size)
{
	const char *dot = strrchr(name, '.');
	int stem = dot && dot != name ? (int)(dot - name) : (int)strlen(name);

	snprintf(out, size, "%.*s-%d%s", stem, name, k, name + stem);
}

/* format: json — one new file per event. Returns 0 (written, or already there: *dup set),
 * or -1 with errno. */
static int s_write_file(const fileout_t *fo, const char *name, const char *buf, size_t len,
			bool *dup, char *written, size_t size)
{
	for (int k = 1; k <= FO_MAX_SUFFIX; k++) {
		char candidate[FO_MAX_NAME + 16];

		if (k == 1)
			snprintf(candidate, sizeof candidate, "%s", name);
		else
			s_suffixed(name, k, candidate, sizeof candidate);
		snprintf(written, size, "%s", candidate);
		if (s_create(fo, candidate, buf, len) == 0)
			return 0;
		if (errno != EEXIST)
			return -1;
		if (s_same_file(fo, candidate, buf, len)) {
			*dup = true;
			return 0;
		}
	}
	errno = EEXIST;
	return -1;
}

/* True when `line` (with its newline) is one of the last lines of the open file, whose
 * size is `size`. */
static bool s_in_tail(int fd, off_t size, const char *line, size_t len)
{
	size_t want = size < FO_TAIL ? (size_t)size : FO_TAIL;
	char *tail = malloc(want + 1);
	bool found = false;

	if (tail && pread(fd, tail, want, size - (off_t)want) == (ssize_t)want) {
		for (char *p = memmem(tail, want, line, len); p && !found;
		     p = memmem(p + 1, want - (size_t)(p + 1 - tail), line, len))
			found = p == tail ? (off_t)want == size : p[-1] == '\n';
	}
	free(tail);
	return found;
}

/* format: jsonl, csv — appends one line (a new file gets `header` first). Returns 0 (*dup
 * set when the line was already there), or -1 with errno. */
static int s_append(const fileout_t *fo, const char *name, const char *header, const char *line,
		    size_t len, bool *dup)
{
	char path[4096];
	struct stat st;
	int fd, saved;

	snprintf(path, sizeof path, "%s/%s", fo->folder, name);
	fd = open(path, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		/* A new file: made whole, header and first line, the atomic way. */
		size_t hlen = header ? strlen(header) : 0;
		char *first = malloc(hlen + len + 1);
		int rc;
		if (!first)
			return -1;
		memcpy(first, header ? header : "", hlen);
		memcpy(first + hlen, line, len);
		rc = s_create(fo, name, first, hlen + len);
		free(first);
		if (rc == 0 || errno != EEXIST)
			return rc;
		fd = open(path, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0 || fstat(fd, &st) != 0)
		goto fail;
	if (!S_ISREG(st.st_mode)) {
		errno = EISDIR;
		goto fail;
	}
	/* Another writer of the same file (a second instance, a tool honouring flock) waits:
	 * the check for the line and its append are one step. The size is read again under
	 * the lock. */
	if (flock(fd, LOCK_EX) != 0 || fstat(fd, &st) != 0)
		goto fail;
	if ((*dup = s_in_tail(fd, st.st_size, line, len))) {
		close(fd);
		return 0;
	}
	if (s_write_all(fd, line, len) != 0 || fsync(fd) != 0) {
		/* Half a line helps no reader: cut the file back to where it was (if that fails
		 * too, the error already says why the last line is broken). */
		saved = errno;
		if (ftruncate(fd, st.st_size) != 0)
			errno = saved;
		errno = saved;
		goto fail;
	}
	close(fd);
	return 0;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	errno = saved;
	return -1;
}

/* ---- content ------------------------------------------------------------------------------ */

/* Appends a CSV field to *buf (quoted when it holds the delimiter, a quote or a line break;
 * a quote doubled). Returns false when out of memory. */
static bool s_csv_field(char **buf, size_t *len, size_t *cap, const char *v, char delim, bool first)
{
	size_t need = strlen(v) * 2 + 6; /* delimiter, quotes, doubled quotes, CRLF, NUL */
	bool quote = strchr(v, delim) || strpbrk(v, "\"\r\n");
	char *o;

	if (*len + need + 1 > *cap) {
		size_t grown_cap = (*len + need + 1) * 2;
		char *grown = realloc(*buf, grown_cap);
		if (!grown)
			return false;
		*buf = grown;
		*cap = grown_cap;
	}
	o = *buf + *len;
	if (!first)
		*o++ = delim;
	if (quote)
		*o++ = '"';
	for (; *v; v++) {
		if (*v == '"')
			*o++ = '"';
		*o++ = *v;
	}
	if (quote)
		*o++ = '"';
	*o = '\0';
	*len = (size_t)(o - *buf);
	return true;
}

/* One CSV column's value for msg: an attribute, a data string as it is, other data as JSON
 * text, or "" when the event has none. *owned is what to free afterwards. */
static const char *s_csv_value(const kanal_msg_t *msg, const char *field, char **owned)
{
	const char *v = NULL;

	*owned = NULL;
	if (strncmp(field, "data.", 5) != 0)
		return (v = kanal_msg_attr(msg, field)) ? v : "";
	if (kanal_msg_data_str(msg, field + 5, &v) == 0)
		return v;
	*owned = kanal_msg_data_json(msg, field + 5);
	return *owned && strcmp(*owned, "null") ? *owned : "";
}

/* The CSV row (or, msg NULL, the header row) with its CRLF, new; NULL when out of memory. */
static char *s_csv_row(const fileout_t *fo, const kanal_msg_t *msg)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;

	for (size_t i = 0; i < fo->fields.count; i++) {
		char *owned = NULL;
		const char *v =
			msg ? s_csv_value(msg, fo->fields.items[i], &owned) : fo->fields.items[i];
		bool ok = s_csv_field(&buf, &len, &cap, v, *fo->delimiter, i == 0);
		kanal_free(owned);
		if (!ok) {
			free(buf);
			return NULL;
		}
	}
	/* Room for the CRLF: s_csv_field always leaves 3 bytes more than it wrote. */
	if (!buf && !(buf = calloc(1, 4)))
		return NULL;
	buf[len++] = '\r';
	buf[len++] = '\n';
	buf[len] = '\0';
	return buf;
}

/* What one event writes (a file's bytes, or a line), new, with its length; NULL with why. */
static char *s_content(const fileout_t *fo, const kanal_msg_t *msg, size_t *len, char *why,
		       size_t size)
{
	char *json, *out = NULL;

	if (fo->csv) {
		if (!(out = s_csv_row(fo, msg)))
			snprintf(why, size, "out of memory");
		*len = out ? strlen(out) : 0;
		return out;
	}
	json = fo->whole_event ? kanal_msg_to_json(msg, NULL) : kanal_msg_data_json(msg, NULL);
	if (!json) {
		snprintf(why, size, "%s",
			 fo->whole_event ? "out of memory" : "the event has no JSON data to write");
		return NULL;
	}
	if (fo->jsonl && strpbrk(json, "\r\n")) {
		/* The data as it came may span lines (pretty-printed by its sender); a line of
		 * JSON Lines may not. Inside strings a line break is always escaped. */
		json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
		char *flat = v ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY)
			       : NULL;
		json_decref(v);
		if (flat && asprintf(&out, "%s\n", flat) < 0)
			out = NULL;
		free(flat);
	} else if (asprintf(&out, "%s\n", json) < 0) {
		out = NULL;
	}
	kanal_free(json);
	if (!out)
		snprintf(why, size, "out of memory");
	*len = out ? strlen(out) : 0;
	return out;
}

/* ---- the connector ------------------------------------------------------------------------ */

typedef struct fileout_state {
	fileout_t opt;
	char *header; /* csv: the header row */
	char *default_name;
} fileout_state_t;

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	fileout_state_t *st = state;
	const fileout_t *fo = &st->opt;
	char why[300], written[FO_MAX_NAME + 16], *name = NULL, *content = NULL;
	kanal_outcome_t outcome = KANAL_OUTCOME_OK;
	bool dup = false;
	size_t len = 0;
	int rc;

	if ((rc = s_file_name(fo, msg, &name, why, sizeof why)) != 0 ||
	    !(content = s_content(fo, msg, &len, why, sizeof why))) {
		kanal_set_error(ctx, "%s", rc == KANAL_ENOMEM ? "out of memory" : why);
		outcome = rc == KANAL_ENOMEM ? KANAL_OUTCOME_RETRY : KANAL_OUTCOME_REJECT;
		goto done;
	}
	snprintf(written, sizeof written, "%s", name);
	rc = fo->csv || fo->jsonl
		     ? s_append(fo, name, st->header, content, len, &dup)
		     : s_write_file(fo, name, content, len, &dup, written, sizeof written);
	if (rc != 0 && errno == EEXIST) {
		kanal_set_error(ctx, "'%s' and its %d suffixed names are all taken in '%s'", name,
				FO_MAX_SUFFIX, fo->folder);
		outcome = KANAL_OUTCOME_REJECT;
	} else if (rc != 0) {
		/* A full disk, a folder that is gone or read-only: passing, we hope; the route's
		 * retry budget says how long. */
		kanal_set_error(ctx, "cannot write '%s' in '%s': %s (retrying)", written,
				fo->folder, strerror(errno));
		kanal_set_retry_after(ctx, FO_RETRY_AFTER_MS);
		kanal_metric_add(ctx, "write_errors", 1);
		outcome = KANAL_OUTCOME_RETRY;
	} else {
		kanal_metric_add(ctx, dup ? "duplicates" : "written", 1);
	}
done:
	free(name);
	free(content);
	return outcome;
}

static void s_destroy(void *state)
{
	fileout_state_t *st = state;

	if (!st)
		return;
	free(st->header);
	free(st->default_name);
	free(st);
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	fileout_state_t *st = calloc(1, sizeof *st);
	fileout_t *fo = st ? &st->opt : NULL;
	kanal_error_t err;
	char *probe = NULL;
	int rc = 0;

	kanal_error_clear(&err);
	if (!st) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	kanal_config_bind(cfg, fo);
	fo->instance = kanal_instance_name(ctx);
	fo->csv = !strcmp(fo->format, "csv");
	fo->jsonl = !strcmp(fo->format, "jsonl");
	fo->whole_event = !strcmp(fo->content, "event");
	if (!fo->name &&
	    !(fo->name = st->default_name = strdup(fo->csv     ? "events-{time:%Y-%m-%d}.csv"
						   : fo->jsonl ? "events-{time:%Y-%m-%d}.jsonl"
							       : "{type}-{id}.json"))) {
		kanal_set_error(ctx, "out of memory");
		rc = KANAL_ENOMEM;
	} else if (strchr(fo->name, '/')) {
		kanal_set_error(ctx, "option 'name': a file name, without '/' (the folder is "
				     "option 'folder')");
		rc = KANAL_ECONFIG;
	} else if (kc_template_expand(fo->name, s_check_lookup, NULL, false, &probe, &err) != 0) {
		kanal_set_error(ctx,
				"option 'name': %s (placeholders: id, type, source, subject, time, "
				"time:FORMAT, data.PATH)",
				err.text);
		rc = KANAL_ECONFIG;
	} else if (fo->csv && fo->fields.count == 0) {
		kanal_set_error(ctx, "format csv needs option 'fields' (the columns)");
		rc = KANAL_ECONFIG;
	} else if (!fo->csv && fo->fields.count > 0) {
		kanal_set_error(ctx, "option 'fields' is for format csv");
		rc = KANAL_ECONFIG;
	} else if (strlen(fo->delimiter) != 1 || strchr("\"\r\n", *fo->delimiter)) {
		kanal_set_error(ctx, "option 'delimiter' must be one character other than '\"'");
		rc = KANAL_ECONFIG;
	} else if (fo->csv && !(st->header = s_csv_row(fo, NULL))) {
		kanal_set_error(ctx, "out of memory");
		rc = KANAL_ENOMEM;
	}
	free(probe);
	if (rc != 0) {
		s_destroy(st);
		return rc;
	}
	*state = st;
	return 0;
}

static int s_start(kanal_ctx_t *ctx, void *state)
{
	const fileout_t *fo = &((fileout_state_t *)state)->opt;
	struct stat st;

	kanal_metric_add(ctx, "written", 0);
	kanal_metric_add(ctx, "duplicates", 0);
	kanal_metric_add(ctx, "write_errors", 0);
	/* Not fatal: a share mounted later, a folder made by the reading system. Until then
	 * every delivery is RETRY with the same error. */
	if (stat(fo->folder, &st) != 0 || !S_ISDIR(st.st_mode) || access(fo->folder, W_OK) != 0)
		kanal_log(ctx, KANAL_LOG_WARN, "folder '%s' is not a folder this process can write",
			  fo->folder);
	kanal_log(ctx, KANAL_LOG_INFO, "writing %s files '%s' into '%s'", fo->format, fo->name,
		  fo->folder);
	return 0;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "fileout",
	.version = KANAL_VERSION,
	.description = "Writes events (or a route's transformed output) as files in a folder: one "
		       "JSON file per event, atomically, or lines appended to a JSON Lines or CSV "
		       "file.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.destroy = s_destroy,
};
