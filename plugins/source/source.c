/*
 * plugins/source/source.c — the reference source plugin: it emits events made from a
 * template, at a steady interval or rate, optionally up to a count. It drives demos
 * (`type: demo.tick`, one a second), tests (an exact number of events whose ids can be
 * checked for completeness) and benchmarks (tens of thousands of padded events a second).
 *
 * Each event is `type` from `source` (default: the instance name) with the id
 * "<instance>-<seq>", seq counted from 1, and the current time. `data` and `subject` are
 * templates in which {seq}, {time} and {uuid} are filled in per event. A kanal timer on the
 * instance's thread does all the work: in interval mode every tick emits one event; in rate
 * mode a short tick emits the burst that keeps the total on the requested rate.
 *
 * Backpressure never loses or skips a sequence number: kanal_emit consumes the message even
 * when it answers KANAL_EBUSY, so the plugin keeps what it rendered for that seq and builds
 * the same event again (same id, same data) on a later tick, backing off exponentially
 * while the bus stays busy. The source accepts no deliveries: a route sending to it gets a
 * REJECT that says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <kanal/kanal.h>

#include "../common/kc_check.h"

#define SOURCE_MAX_RATE 10000000 /* events per second */
#define SOURCE_MAX_BURST 10000   /* events per tick, so a tick never hogs the thread */
#define SOURCE_BACKOFF_FIRST_MS 10
#define SOURCE_BACKOFF_MAX_MS 1000
#define SOURCE_MAX_TEMPLATE (16 * 1024 * 1024)
#define SOURCE_MAX_SIZE (64 * 1024 * 1024)

/* A growable byte buffer, always NUL-terminated once anything was added. */
typedef struct strbuf {
	char *p;
	size_t len;
	size_t cap;
} strbuf_t;

/* One piece of a compiled template: literal text or a placeholder. */
typedef enum seg_kind { SEG_TEXT, SEG_SEQ, SEG_TIME, SEG_UUID } seg_kind_t;

typedef struct tpl_seg {
	seg_kind_t kind;
	size_t offset; /* SEG_TEXT: where the literal starts in the template text */
	size_t len;
	bool quote; /* a JSON template's {time}/{uuid} outside a string: add the quotes */
} tpl_seg_t;

typedef struct tpl {
	char *text;
	tpl_seg_t *segs;
	size_t n_segs;
	bool has_uuid;
} tpl_t;

/* The event of the next sequence number, rendered once and kept until the bus accepts it. */
typedef struct pending {
	bool ready;
	uint64_t seq;
	char time[40];
	char uuid[37];
	strbuf_t data;
	strbuf_t subject;
} pending_t;

typedef struct source {
	const char *instance; /* borrowed from the ctx */
	const char *type;     /* borrowed from the config */
	const char *source;   /* borrowed from the config or the ctx */
	int64_t interval_ms;
	int64_t rate;  /* 0: interval mode */
	int64_t count; /* 0: unlimited */
	int64_t start_delay_ms;
	int64_t tick_ms;
	tpl_t *data;             /* NULL: events carry no data */
	const char *data_option; /* where the data template came from: "data" or "data_file" */
	tpl_t *subject;          /* NULL: no subject */

	int64_t timer; /* 0 when none */
	bool done;
	uint64_t next_seq; /* the seq of the next event to emit, from 1 */
	pending_t pending;
	char tick_time[40]; /* the time of the current tick, shared by its burst */

	int64_t window_start; /* rate mode: when the current accounting window began, -1 */
	int64_t window_sent;  /* events emitted since window_start */
	int64_t backoff_ms;   /* 0 while the bus accepts; else the current back-off */
	int64_t resume_at;    /* no emit attempt before this monotonic time */

	/* Options without a field of their own above, bound from the config (borrowed). */
	const char *data_text;    /* data; NULL: not given */
	const char *data_file;    /* data_file; NULL: not given */
	const char *subject_text; /* subject; NULL: not given */
	int64_t size;             /* size; 0: not given */
} source_t;

static const kanal_option_t s_options[] = {
	{ .name = "type",
	  .type = KANAL_OPT_STRING,
	  .required = true,
	  KANAL_OPT_AT(source_t, type),
	  .help = "CloudEvents type of every event, e.g. demo.tick." },
	{ .name = "source",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(source_t, source),
	  .help = "CloudEvents source attribute of every event (default: the instance name)." },
	{ .name = "interval",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "1s",
	  KANAL_OPT_AT(source_t, interval_ms),
	  .help = "Time between two events, e.g. 250ms; ignored when rate is given." },
	{ .name = "rate",
	  .type = KANAL_OPT_INT,
	  .min = "1",
	  .max = "10000000",
	  KANAL_OPT_AT(source_t, rate),
	  .help = "Events per second; overrides interval and emits bursts on a 1 ms tick to "
		  "reach high rates." },
	{ .name = "count",
	  .type = KANAL_OPT_INT,
	  .default_value = "0",
	  .min = "0",
	  KANAL_OPT_AT(source_t, count),
	  .help = "Stop after emitting this many events; 0 means never stop." },
	{ .name = "data",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(source_t, data_text),
	  .help = "JSON template of the data; {seq}, {time} and {uuid} are filled in per event "
		  "(a bare {seq} becomes a number)." },
	{ .name = "data_file",
	  .type = KANAL_OPT_PATH,
	  KANAL_OPT_AT(source_t, data_file),
	  .help = "File holding the JSON template of the data, instead of data." },
	{ .name = "subject",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(source_t, subject_text),
	  .help = "Template of the subject attribute; {seq}, {time} and {uuid} are filled in." },
	{ .name = "size",
	  .type = KANAL_OPT_SIZE,
	  .min = "0",
	  .max = "64MiB",
	  KANAL_OPT_AT(source_t, size),
	  .help = "Pad the data with a \"pad\" string field until each serialised event is about "
		  "this many bytes (for benchmarks)." },
	{ .name = "start_delay",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "0",
	  .min = "0",
	  KANAL_OPT_AT(source_t, start_delay_ms),
	  .help = "Wait this long after start before the first event." },
	{ .name = NULL },
};

/* ---- small helpers */

/* Makes room for `extra` more bytes plus a NUL. Returns 0 or KANAL_ENOMEM. */
static int s_buf_reserve(strbuf_t *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	size_t cap;
	char *p;

	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		return KANAL_ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

/* Appends text[0..len) and keeps the buffer NUL-terminated. Returns 0 or KANAL_ENOMEM. */
static int s_buf_add(strbuf_t *b, const char *text, size_t len)
{
	if (s_buf_reserve(b, len) != 0)
		return KANAL_ENOMEM;
	memcpy(b->p + b->len, text, len);
	b->len += len;
	b->p[b->len] = '\0';
	return 0;
}

static void s_buf_free(strbuf_t *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* Reads the whole file at path into a new NUL-terminated string. Returns NULL with errno
 * set when it cannot (EFBIG when it is larger than a template may be). */
static char *s_read_file(const char *path)
{
	struct stat st;
	char *text = NULL;
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) != 0)
		goto fail;
	if (st.st_size > SOURCE_MAX_TEMPLATE) {
		errno = EFBIG;
		goto fail;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text)
		goto fail;
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, text + done, (size_t)st.st_size - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	text[done] = '\0';
	close(fd);
	return text;
fail : {
	int saved = errno;
	free(text);
	close(fd);
	errno = saved;
}
	return NULL;
}

/* ---- templates */

static void s_tpl_destroy(tpl_t **tpl_p)
{
	if (!tpl_p || !*tpl_p)
		return;
	free((*tpl_p)->text);
	free((*tpl_p)->segs);
	free(*tpl_p);
	*tpl_p = NULL;
}

static int s_tpl_push(tpl_t *t, seg_kind_t kind, size_t offset, size_t len, bool quote)
{
	tpl_seg_t *segs = realloc(t->segs, (t->n_segs + 1) * sizeof *segs);

	if (!segs)
		return KANAL_ENOMEM;
	t->segs = segs;
	t->segs[t->n_segs++] = (tpl_seg_t){ kind, offset, len, quote };
	if (kind == SEG_UUID)
		t->has_uuid = true;
	return 0;
}

/* Compiles `text` into literal pieces and the placeholders {seq}, {time} and {uuid}. With
 * `json` set the scanner follows JSON strings, so that a {time} or {uuid} standing as a
 * whole value outside a string is rendered quoted, while {seq} there becomes a bare number.
 * Returns a new template, or NULL when out of memory. */
static tpl_t *s_tpl_new(const char *text, bool json)
{
	static const struct {
		const char *token;
		seg_kind_t kind;
	} placeholders[] = { { "{seq}", SEG_SEQ }, { "{time}", SEG_TIME }, { "{uuid}", SEG_UUID } };
	tpl_t *t = calloc(1, sizeof *t);
	bool in_string = false, escaped = false;
	size_t i = 0, literal = 0, k;

	if (!t || !(t->text = strdup(text)))
		goto fail;
	while (t->text[i]) {
		char c = t->text[i];
		bool matched = false;

		if (c == '{' && !escaped) {
			for (k = 0; k < sizeof placeholders / sizeof placeholders[0]; k++) {
				size_t n = strlen(placeholders[k].token);
				if (strncmp(t->text + i, placeholders[k].token, n) != 0)
					continue;
				if (i > literal &&
				    s_tpl_push(t, SEG_TEXT, literal, i - literal, false))
					goto fail;
				if (s_tpl_push(t, placeholders[k].kind, 0, 0,
					       json && !in_string &&
						       placeholders[k].kind != SEG_SEQ))
					goto fail;
				i += n;
				literal = i;
				matched = true;
				break;
			}
		}
		if (matched)
			continue;
		if (json && in_string) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
		} else if (json && c == '"') {
			in_string = true;
		}
		i++;
	}
	if (i > literal && s_tpl_push(t, SEG_TEXT, literal, i - literal, false))
		goto fail;
	return t;
fail:
	s_tpl_destroy(&t);
	return NULL;
}

/* Renders the template for one event into out (replacing its content). Returns 0 or
 * KANAL_ENOMEM. */
static int s_tpl_render(const tpl_t *t, uint64_t seq, const char *time, const char *uuid,
			strbuf_t *out)
{
	char num[24];
	size_t i;
	int rc = 0;

	out->len = 0;
	rc = s_buf_reserve(out, 0);
	if (rc == 0)
		out->p[0] = '\0';
	for (i = 0; rc == 0 && i < t->n_segs; i++) {
		const tpl_seg_t *seg = &t->segs[i];
		const char *value = NULL;

		switch (seg->kind) {
		case SEG_TEXT:
			rc = s_buf_add(out, t->text + seg->offset, seg->len);
			continue;
		case SEG_SEQ:
			snprintf(num, sizeof num, "%" PRIu64, seq);
			value = num;
			break;
		case SEG_TIME:
			value = time;
			break;
		case SEG_UUID:
			value = uuid;
			break;
		}
		if (seg->quote)
			rc = s_buf_add(out, "\"", 1);
		if (rc == 0)
			rc = s_buf_add(out, value, strlen(value));
		if (rc == 0 && seg->quote)
			rc = s_buf_add(out, "\"", 1);
	}
	return rc;
}

/* ---- building one event */

/* Renders the event of s->next_seq into s->pending, unless it is already there (an event
 * the bus refused earlier is re-sent exactly as it was). Returns 0, KANAL_ENOMEM, or
 * KANAL_EIO when a {uuid} is wanted and none can be made. */
static int s_prepare(source_t *s)
{
	pending_t *p = &s->pending;
	int rc = 0;

	if (p->ready)
		return 0;
	p->seq = s->next_seq;
	snprintf(p->time, sizeof p->time, "%s", s->tick_time);
	p->uuid[0] = '\0';
	if ((s->data && s->data->has_uuid) || (s->subject && s->subject->has_uuid))
		rc = kanal_uuid(p->uuid);
	if (rc == 0 && s->data)
		rc = s_tpl_render(s->data, p->seq, p->time, p->uuid, &p->data);
	if (rc == 0 && s->subject)
		rc = s_tpl_render(s->subject, p->seq, p->time, p->uuid, &p->subject);
	p->ready = rc == 0;
	return rc;
}

/* Builds the message of the pending event in *out. Returns 0, KANAL_ENOMEM, KANAL_EINVALID
 * (the subject is not a valid attribute; err says why) or KANAL_EPARSE (the data is not
 * JSON). */
static int s_build(const source_t *s, kanal_msg_t **out, kanal_error_t *err)
{
	const pending_t *p = &s->pending;
	char id[64];
	char *full_id = NULL;
	kanal_msg_t *msg;
	int rc;

	*out = NULL;
	snprintf(id, sizeof id, "-%" PRIu64, p->seq);
	if (asprintf(&full_id, "%s%s", s->instance, id) < 0)
		return KANAL_ENOMEM;
	msg = kanal_msg_new(s->type, s->source, full_id);
	free(full_id);
	if (!msg)
		return KANAL_ENOMEM;
	rc = kanal_msg_set_attr(msg, "time", p->time, err);
	if (rc == 0 && s->subject)
		rc = kanal_msg_set_attr(msg, "subject", p->subject.p, err);
	if (rc == 0 && s->data)
		rc = kanal_msg_set_data_json(msg, p->data.p, p->data.len);
	if (rc != 0) {
		kanal_msg_destroy(&msg);
		return rc;
	}
	*out = msg;
	return 0;
}

/* Builds and serialises the event of seq 1 from the current templates and stores its
 * length in *len. Used at init, to check the templates and to measure padding. Reports a
 * failure with kanal_set_error and returns KANAL_ECONFIG. */
static int s_try_sample(kanal_ctx_t *ctx, source_t *s, size_t *len)
{
	kanal_error_t err;
	kanal_msg_t *msg = NULL;
	char *json;
	int rc;

	kanal_error_clear(&err);
	s->pending.ready = false;
	kanal_time_rfc3339(kanal_wall_ms(), s->tick_time, sizeof s->tick_time);
	rc = s_prepare(s);
	if (rc == 0)
		rc = s_build(s, &msg, &err);
	s->pending.ready = false;
	if (rc == KANAL_EPARSE) {
		kanal_set_error(ctx,
				"option '%s': not a valid JSON value once {seq}, {time} and "
				"{uuid} are filled in",
				s->data_option);
		return KANAL_ECONFIG;
	}
	if (rc == KANAL_EINVALID) {
		kanal_set_error(ctx, "option 'subject': %s", err.text);
		return KANAL_ECONFIG;
	}
	if (rc != 0) {
		kanal_set_error(ctx, "cannot build a sample event: %s", kanal_strerror(rc));
		return rc;
	}
	json = kanal_msg_to_json(msg, len);
	kanal_msg_destroy(&msg);
	if (!json) {
		kanal_set_error(ctx, "cannot serialise a sample event: out of memory");
		return KANAL_ENOMEM;
	}
	kanal_free(json);
	return 0;
}

/* Rewrites the data template (a JSON object) so that it starts with a "pad" field of
 * pad_len 'x' characters. Returns 0, or KANAL_ECONFIG (after kanal_set_error) when the data
 * is not an object, or KANAL_ENOMEM. */
static int s_pad_template(kanal_ctx_t *ctx, source_t *s, const char *object_text, size_t pad_len)
{
	const char *brace = object_text + strspn(object_text, " \t\r\n");
	const char *rest;
	strbuf_t b = { 0 };
	tpl_t *t;
	int rc;

	/* An object opens with '{' and then blank, '"' or '}' — a bare {seq} is no object. */
	if (brace[0] != '{' || !strchr(" \t\r\n\"}", brace[1]) || brace[1] == '\0') {
		kanal_set_error(ctx,
				"option 'size' pads the data with a \"pad\" field, so the data "
				"must be a JSON object");
		return KANAL_ECONFIG;
	}
	rest = brace + 1;
	rest += strspn(rest, " \t\r\n");
	rc = s_buf_add(&b, "{\"pad\":\"", 8);
	if (rc == 0 && s_buf_reserve(&b, pad_len) == 0) {
		memset(b.p + b.len, 'x', pad_len);
		b.len += pad_len;
		b.p[b.len] = '\0';
	} else {
		rc = KANAL_ENOMEM;
	}
	if (rc == 0)
		rc = s_buf_add(&b, *rest == '}' ? "\"" : "\",", *rest == '}' ? 1 : 2);
	if (rc == 0)
		rc = s_buf_add(&b, rest, strlen(rest));
	if (rc != 0 || !(t = s_tpl_new(b.p, true))) {
		s_buf_free(&b);
		kanal_set_error(ctx, "out of memory while padding the data template");
		return KANAL_ENOMEM;
	}
	s_buf_free(&b);
	s_tpl_destroy(&s->data);
	s->data = t;
	return 0;
}

/* Applies the `size` option: measures the serialised event without padding, then pads the
 * data so that the event comes to about `size` bytes (the width of {seq} still varies). */
static int s_apply_size(kanal_ctx_t *ctx, source_t *s, int64_t size)
{
	char *original;
	size_t len = 0;
	int rc;

	if (!s->data_option)
		s->data_option = "size";
	original = strdup(s->data ? s->data->text : "{}");
	if (!original) {
		kanal_set_error(ctx, "out of memory while padding the data template");
		return KANAL_ENOMEM;
	}
	rc = s_pad_template(ctx, s, original, 0);
	if (rc == 0)
		rc = s_try_sample(ctx, s, &len);
	if (rc == 0 && (int64_t)len < size)
		rc = s_pad_template(ctx, s, original, (size_t)size - len);
	free(original);
	return rc;
}

/* ---- lifecycle */

static void s_destroy(void *state)
{
	source_t *s = state;

	if (!s)
		return;
	s_tpl_destroy(&s->data);
	s_tpl_destroy(&s->subject);
	s_buf_free(&s->pending.data);
	s_buf_free(&s->pending.subject);
	free(s);
}

/* Reads the data template from `data` or `data_file` into s->data. */
static int s_load_data(kanal_ctx_t *ctx, source_t *s)
{
	const char *data = s->data_text;
	const char *path = s->data_file;
	char *text = NULL;

	if (data && path) {
		kanal_set_error(ctx, "options 'data' and 'data_file' exclude each other; give one");
		return KANAL_ECONFIG;
	}
	if (path) {
		text = s_read_file(path);
		if (!text) {
			kanal_set_error(ctx, "option 'data_file': cannot read '%s': %s", path,
					errno == EFBIG ? "larger than 16 MiB" : strerror(errno));
			return KANAL_ECONFIG;
		}
		data = text;
	}
	if (data) {
		s->data_option = path ? "data_file" : "data";
		s->data = s_tpl_new(data, true);
		free(text);
		if (!s->data) {
			kanal_set_error(ctx, "out of memory while reading the data template");
			return KANAL_ENOMEM;
		}
	}
	return 0;
}

/* Checks what the table cannot: interval matters only without rate. */
static int s_load_timing(kanal_ctx_t *ctx, source_t *s)
{
	if (!s->rate && s->interval_ms < 1) {
		kanal_set_error(ctx, "option 'interval': must be at least 1ms");
		return KANAL_ECONFIG;
	}
	if (s->rate)
		s->tick_ms = s->rate >= 1000 ? 1 : 1000 / s->rate;
	else
		s->tick_ms = s->interval_ms;
	return 0;
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	source_t *s = calloc(1, sizeof *s);
	size_t len;
	int rc;

	if (!s) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	/* The table has checked rate, count, size and start_delay against their bounds. */
	kanal_config_bind(cfg, s);
	s->instance = kanal_instance_name(ctx);
	if (!s->source)
		s->source = s->instance;
	s->next_seq = 1;
	s->window_start = -1;

	if (!s->type || !*s->type) {
		kanal_set_error(ctx, "option 'type': must not be empty");
		rc = KANAL_ECONFIG;
		goto fail;
	}
	if (!*s->source) {
		kanal_set_error(ctx, "option 'source': must not be empty");
		rc = KANAL_ECONFIG;
		goto fail;
	}
	rc = s_load_timing(ctx, s);
	if (rc == 0)
		rc = s_load_data(ctx, s);
	if (rc != 0)
		goto fail;
	if (s->subject_text && !(s->subject = s_tpl_new(s->subject_text, false))) {
		kanal_set_error(ctx, "out of memory");
		rc = KANAL_ENOMEM;
		goto fail;
	}
	/* Render one event now, so that a broken template is a config error at load time
	 * rather than a failure in the middle of a run. */
	rc = s_try_sample(ctx, s, &len);
	if (rc == 0 && s->size > 0)
		rc = s_apply_size(ctx, s, s->size);
	if (rc != 0)
		goto fail;
	*state = s;
	return 0;
fail:
	s_destroy(s);
	return rc;
}

/* Ends the run: cancels the timer so that no tick comes any more. */
static void s_finish(kanal_ctx_t *ctx, source_t *s)
{
	s->done = true;
	if (s->timer > 0)
		kanal_timer_cancel(ctx, s->timer);
	s->timer = 0;
}

/* Notes that the bus refused an event for now: wait before the next attempt, doubling the
 * wait while the refusals go on, and do not try to catch up on the rate afterwards. */
static void s_back_off(kanal_ctx_t *ctx, source_t *s, int64_t now, int rc)
{
	if (s->backoff_ms == 0)
		kanal_log(ctx, KANAL_LOG_DEBUG, "%s: backing off at seq %" PRIu64,
			  kanal_strerror(rc), s->pending.seq);
	s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : SOURCE_BACKOFF_FIRST_MS;
	if (s->backoff_ms > SOURCE_BACKOFF_MAX_MS)
		s->backoff_ms = SOURCE_BACKOFF_MAX_MS;
	s->resume_at = now + s->backoff_ms;
	s->window_start = -1;
	if (rc == KANAL_EBUSY)
		kanal_metric_add(ctx, "busy", 1);
}

/* How many events this tick should emit. */
static int64_t s_due(source_t *s, int64_t now)
{
	int64_t due = 1;

	if (s->rate) {
		if (s->window_start < 0) {
			s->window_start = now;
			s->window_sent = 0;
		}
		/* The +1 emits the first event of a window at once. */
		due = (now - s->window_start) * s->rate / 1000 + 1 - s->window_sent;
		if (due > SOURCE_MAX_BURST)
			due = SOURCE_MAX_BURST;
	}
	if (s->count && due > s->count - (int64_t)(s->next_seq - 1))
		due = s->count - (int64_t)(s->next_seq - 1);
	return due < 0 ? 0 : due;
}

/* Emits the pending event (rendering it first when needed). Returns kanal_emit's result,
 * or KANAL_ENOMEM / KANAL_EINVALID when the event could not be built. */
static int s_emit_one(kanal_ctx_t *ctx, source_t *s)
{
	kanal_msg_t *msg = NULL;
	int rc = s_prepare(s);

	if (rc == 0)
		rc = s_build(s, &msg, NULL);
	if (rc == KANAL_EPARSE)
		rc = KANAL_EINVALID;
	if (rc != 0)
		return rc;
	rc = kanal_emit(ctx, &msg);
	if (rc == 0) {
		s->pending.ready = false;
		s->next_seq++;
	}
	return rc;
}

/* The timer: emits what is due and reacts to what the bus answers. */
static void s_tick(kanal_ctx_t *ctx, void *arg)
{
	source_t *s = arg;
	int64_t now = kanal_now_ms();
	int64_t due, sent = 0;
	int rc = 0;

	if (s->done || now < s->resume_at)
		return;
	due = s_due(s, now);
	if (due > 0)
		kanal_time_rfc3339(kanal_wall_ms(), s->tick_time, sizeof s->tick_time);
	while (sent < due && (rc = s_emit_one(ctx, s)) == 0)
		sent++;
	if (sent > 0) {
		kanal_metric_add(ctx, "emitted", sent);
		s->window_sent += sent;
	}
	if (rc == 0) {
		s->backoff_ms = 0;
	} else if (rc == KANAL_EBUSY || rc == KANAL_ENOMEM) {
		s_back_off(ctx, s, now, rc);
	} else if (rc == KANAL_ECLOSED) {
		kanal_log(ctx, KANAL_LOG_INFO, "bus shutting down; stopped before seq %" PRIu64,
			  s->next_seq);
		s_finish(ctx, s);
		return;
	} else {
		kanal_log(ctx, KANAL_LOG_ERROR,
			  "event %s-%" PRIu64 " refused (%s); stopping so that "
			  "no sequence number is skipped",
			  s->instance, s->next_seq, kanal_strerror(rc));
		s_finish(ctx, s);
		return;
	}
	if (s->count && (int64_t)(s->next_seq - 1) >= s->count) {
		kanal_log(ctx, KANAL_LOG_INFO,
			  "count reached: emitted %" PRId64 " events of type %s", s->count,
			  s->type);
		s_finish(ctx, s);
	}
}

/* init makes nothing but memory (the templates, one sample event rendered) and reads only
 * data_file, so check is init and destroy: one copy of every rule. */
KC_CHECK_BY_INIT(s_init, s_destroy)

static int s_start(kanal_ctx_t *ctx, void *state)
{
	source_t *s = state;
	int64_t timer;
	char limit[48];

	kanal_metric_add(ctx, "emitted", 0);
	kanal_metric_add(ctx, "busy", 0);
	if (s->count)
		snprintf(limit, sizeof limit, "stopping after %" PRId64 " events", s->count);
	else
		snprintf(limit, sizeof limit, "with no count limit");
	if (s->rate)
		kanal_log(ctx, KANAL_LOG_INFO,
			  "emitting %s at %" PRId64 " events/s, %s; first in %" PRId64 " ms",
			  s->type, s->rate, limit, s->start_delay_ms);
	else
		kanal_log(ctx, KANAL_LOG_INFO,
			  "emitting %s every %" PRId64 " ms, %s; first in %" PRId64 " ms", s->type,
			  s->interval_ms, limit, s->start_delay_ms);
	timer = kanal_timer_add(ctx, s->start_delay_ms, s->tick_ms, s_tick, s);
	if (timer < 0) {
		kanal_set_error(ctx, "cannot add the emit timer: %s", kanal_strerror((int)timer));
		return (int)timer;
	}
	s->timer = timer;
	return 0;
}

static void s_stop(kanal_ctx_t *ctx, void *state, int64_t deadline_ms)
{
	source_t *s = state;

	(void)deadline_ms;
	if (!s->done)
		s_finish(ctx, s);
}

/* A source accepts no deliveries; say so to whoever routed one here. */
static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	const char *route = kanal_delivery_route(ctx);

	(void)state;
	(void)msg;
	if (route)
		kanal_set_error(ctx,
				"instance '%s' is a source (plugin 'source') and accepts no "
				"events; route '%s' should not send to it",
				kanal_instance_name(ctx), route);
	else
		kanal_set_error(ctx,
				"instance '%s' is a source (plugin 'source') and accepts no "
				"events",
				kanal_instance_name(ctx));
	return KANAL_OUTCOME_REJECT;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "source",
	.version = KANAL_VERSION,
	.description = "Emits events from a template at an interval or rate, for demos, tests "
		       "and benchmarks.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.stop = s_stop,
	.destroy = s_destroy,
	.check = s_check,
};
