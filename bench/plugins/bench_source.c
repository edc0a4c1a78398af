/*
 * bench/plugins/bench_source.c — the benchmark's source plugin: it emits a fixed number of
 * events, as fast as the bus takes them or at a steady rate, each stamped with the
 * monotonic time (in nanoseconds) of the moment it was handed to kanal_emit.
 *
 * The stamp travels in the extension attribute `benchns` and the sequence number in
 * `benchseq`, so that bench_sink can measure end-to-end latency and check order without
 * parsing the data. The data is a JSON object {"kind": …, "n": seq, "pad": "xxx…"}: `kind`
 * is the field the `where` benchmark tests, `pad` makes the serialised event about `size`
 * bytes. Like the bundled `source`, a refused emit (KANAL_EBUSY) never skips a sequence
 * number: the same event is built again on the next tick.
 *
 * CLOCK_MONOTONIC is one clock for every process on a Linux machine, so the gateway load
 * client (a separate process) stamps its events the same way and the sink's arithmetic
 * holds for it too.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kanal/kanal.h>

static const kanal_option_t s_options[] = {
	{ .name = "type",
	  .type = KANAL_OPT_STRING,
	  .default_value = "bench.ev",
	  .required = false,
	  .help = "CloudEvents type of every event." },
	{ .name = "count",
	  .type = KANAL_OPT_INT,
	  .default_value = NULL,
	  .required = true,
	  .help = "Events to emit; the source then stops." },
	{ .name = "rate",
	  .type = KANAL_OPT_INT,
	  .default_value = "0",
	  .required = false,
	  .help = "Events per second; 0 emits as fast as the bus accepts them." },
	{ .name = "size",
	  .type = KANAL_OPT_SIZE,
	  .default_value = "512",
	  .required = false,
	  .help = "About this many bytes per serialised event." },
	{ .name = "kind",
	  .type = KANAL_OPT_STRING,
	  .default_value = "match",
	  .required = false,
	  .help = "The value of data.kind." },
	{ .name = "burst",
	  .type = KANAL_OPT_INT,
	  .default_value = "2000",
	  .required = false,
	  .help = "Most events emitted per 1 ms tick, so the thread stays responsive." },
	{ .name = "blob_size",
	  .type = KANAL_OPT_SIZE,
	  .default_value = "0",
	  .required = false,
	  .help = "Above 0: each event carries a blob of this many bytes, put into the blob store "
		  "with kanal_blob_put (distinct content per event) and named in its kanalblob "
		  "attribute." },
	{ .name = "done_file",
	  .type = KANAL_OPT_PATH,
	  .default_value = NULL,
	  .required = false,
	  .help = "Created once every event has been emitted and flushed (kanal_emit_flush)." },
	{ .name = NULL },
};

typedef struct bench_source {
	char *instance;   /* owned copy of the instance name */
	const char *type; /* borrowed from the config */
	const char *kind;
	const char *done_file; /* borrowed from the config; NULL: none */
	int64_t count;
	int64_t rate;
	int64_t burst;
	size_t size;
	char *pad; /* owned: the padding string, computed at init */
	size_t pad_len;
	char *text; /* owned: where each event's data text is put together */
	size_t blob_size;
	unsigned char *blob; /* owned: the blob's content, its first 8 bytes the sequence number */
	size_t text_cap;
	int64_t next_seq; /* the next sequence number to emit, from 1 */
	int64_t t0_ms;    /* rate mode: when emitting began */
	int64_t timer;
	bool done;
} bench_source_t;

static int64_t s_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Writes v (not negative) in decimal at buf, NUL-terminated; returns its length. The
 * numbers of an event (its id's, benchseq, benchns) are written so rather than with
 * snprintf: the same text, without printf's cost, which is not the bus's. */
static size_t s_u64_text(char *buf, int64_t v)
{
	char tmp[24];
	size_t n = 0, len;
	uint64_t u = v > 0 ? (uint64_t)v : 0;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	for (len = 0; len < n; len++)
		buf[len] = tmp[n - 1 - len];
	buf[len] = '\0';
	return len;
}

/* Builds event `seq` with the given padding; NULL when out of memory. The time stamp is set
 * later, right before the emit. The data text is put together with memcpy in a buffer
 * kept for the purpose, as a source copying a record it read would: what is measured is
 * the bus's handling of the event (kanal_msg_new, the attribute setters, the data's
 * validation in kanal_msg_set_data_json, kanal_emit), not printf. */
static kanal_msg_t *s_build(bench_source_t *s, int64_t seq, const char *pad)
{
	static const char head[] = "{\"kind\":\"";
	char id[160], seq_text[24];
	kanal_msg_t *msg;
	size_t pad_len = pad == s->pad ? s->pad_len : strlen(pad), kind_len = strlen(s->kind);
	size_t need, n, seq_len, inst_len = strlen(s->instance);

	seq_len = s_u64_text(seq_text, seq);
	if (inst_len + 1 + seq_len >= sizeof id)
		return NULL;
	/* "<instance>-<seq>" */
	memcpy(id, s->instance, inst_len);
	id[inst_len] = '-';
	memcpy(id + inst_len + 1, seq_text, seq_len + 1);
	msg = kanal_msg_new(s->type, s->instance, id);
	if (!msg)
		return NULL;
	if (kanal_msg_set_attr(msg, "benchseq", seq_text, NULL) < 0)
		goto fail;
	/* {"kind":"<kind>","n":<seq>,"pad":"<pad>"} */
	need = sizeof head + kind_len + 6 + seq_len + 8 + pad_len + 3;
	if (need > s->text_cap) {
		char *grown = realloc(s->text, need);
		if (!grown)
			goto fail;
		s->text = grown;
		s->text_cap = need;
	}
	n = 0;
	memcpy(s->text + n, head, sizeof head - 1), n += sizeof head - 1;
	memcpy(s->text + n, s->kind, kind_len), n += kind_len;
	memcpy(s->text + n, "\",\"n\":", 6), n += 6;
	memcpy(s->text + n, seq_text, seq_len), n += seq_len;
	memcpy(s->text + n, ",\"pad\":\"", 8), n += 8;
	memcpy(s->text + n, pad, pad_len), n += pad_len;
	memcpy(s->text + n, "\"}", 2), n += 2;
	if (kanal_msg_set_data_json(msg, s->text, n) < 0)
		goto fail;
	return msg;
fail:
	kanal_msg_destroy(&msg);
	return NULL;
}

/* Works out the padding that brings an event to about s->size bytes: builds one event
 * without padding (with a typical stamp) and pads the difference. Returns 0 or a code. */
static int s_size_pad(bench_source_t *s)
{
	kanal_msg_t *msg = s_build(s, s->count, "");
	size_t len = 0, want;
	char *json;

	if (!msg)
		return KANAL_ENOMEM;
	kanal_msg_set_attr(msg, "benchns", "1234567890123456", NULL);
	kanal_msg_set_attr(msg, "time", "2026-01-01T00:00:00.000Z", NULL);
	json = kanal_msg_to_json(msg, &len);
	kanal_msg_destroy(&msg);
	if (!json)
		return KANAL_ENOMEM;
	kanal_free(json);
	want = s->size > len ? s->size - len : 0;
	s->pad = malloc(want + 1);
	if (!s->pad)
		return KANAL_ENOMEM;
	memset(s->pad, 'x', want);
	s->pad[want] = '\0';
	s->pad_len = want;
	return 0;
}

static void s_destroy(void *state)
{
	bench_source_t *s = state;

	if (!s)
		return;
	free(s->instance);
	free(s->pad);
	free(s->text);
	free(s->blob);
	free(s);
}

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	bench_source_t *s = calloc(1, sizeof *s);
	int rc;

	if (!s)
		return KANAL_ENOMEM;
	s->instance = strdup(kanal_instance_name(ctx));
	s->type = kanal_config_string(cfg, "type");
	s->kind = kanal_config_string(cfg, "kind");
	s->done_file = kanal_config_string(cfg, "done_file");
	s->count = kanal_config_int(cfg, "count");
	s->rate = kanal_config_int(cfg, "rate");
	s->burst = kanal_config_int(cfg, "burst");
	s->size = (size_t)kanal_config_int(cfg, "size");
	s->blob_size = (size_t)kanal_config_int(cfg, "blob_size");
	s->next_seq = 1;
	if (s->blob_size > 0 && (s->blob = malloc(s->blob_size)) != NULL)
		memset(s->blob, 'b', s->blob_size);
	if (!s->instance || (s->blob_size > 0 && !s->blob)) {
		s_destroy(s);
		return KANAL_ENOMEM;
	}
	if (s->count <= 0 || s->rate < 0 || s->burst <= 0 || strchr(s->kind, '"') ||
	    strchr(s->kind, '\\')) {
		kanal_set_error(ctx, "bench_source: count and burst must be positive, rate not "
				     "negative, and kind plain text");
		s_destroy(s);
		return KANAL_EINVAL;
	}
	rc = s_size_pad(s);
	if (rc < 0) {
		s_destroy(s);
		return rc;
	}
	*state = s;
	return 0;
}

/* Puts event seq's blob (content of its own: the sequence number in its first bytes, so the
 * store never finds it there already) and names it in the event's kanalblob attribute, as a
 * connector carrying a photo does. Returns 0 or a code. */
static int s_attach_blob(kanal_ctx_t *ctx, bench_source_t *s, kanal_msg_t *msg, int64_t seq)
{
	kanal_blob_ref_t ref;
	kanal_error_t err = { 0 };
	int rc;

	memcpy(s->blob, &seq, s->blob_size < sizeof seq ? s->blob_size : sizeof seq);
	rc = kanal_blob_put(ctx, s->blob, s->blob_size, "application/octet-stream", &ref, &err);
	if (rc != 0) {
		kanal_log(ctx, KANAL_LOG_ERROR, "blob of event %" PRId64 ": %s", seq, err.text);
		return rc;
	}
	return kanal_msg_set_attr(msg, KANAL_BLOB_ATTRIBUTE, ref.uri, NULL);
}

/* Writes the current UTC time as RFC 3339 with milliseconds, as real sources do. */
static void s_now_rfc3339(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* How many events are due now: all that are left (up to the burst) when flooding, else
 * what keeps the total at `rate` per second since the first tick. */
static int64_t s_due(bench_source_t *s)
{
	int64_t left = s->count - (s->next_seq - 1);
	int64_t due = left;

	if (s->rate > 0) {
		int64_t elapsed = kanal_now_ms() - s->t0_ms;
		due = (s->rate * elapsed) / 1000 + 1 - (s->next_seq - 1);
	}
	if (due > left)
		due = left;
	if (due > s->burst)
		due = s->burst;
	return due;
}

/* Waits until the bus holds every emitted event (in durable mode: in the journal), then
 * creates done_file, so that the driver knows they are all pending. */
static void s_write_done(kanal_ctx_t *ctx, bench_source_t *s)
{
	int rc = kanal_emit_flush(ctx, 120000);
	FILE *f;

	if (rc != 0) {
		kanal_log(ctx, KANAL_LOG_ERROR, "flush: %s", kanal_strerror(rc));
		return;
	}
	f = fopen(s->done_file, "w");
	if (!f || fprintf(f, "%" PRId64 "\n", s->next_seq - 1) < 0 || fclose(f) != 0)
		kanal_log(ctx, KANAL_LOG_ERROR, "cannot write %s", s->done_file);
}

static void s_tick(kanal_ctx_t *ctx, void *arg)
{
	bench_source_t *s = arg;
	char time[40];
	int64_t due;
	int rc = 0;

	if (s->done)
		return;
	if (s->t0_ms == 0)
		s->t0_ms = kanal_now_ms();
	due = s_due(s);
	if (due <= 0)
		return;
	s_now_rfc3339(time, sizeof time);
	for (int64_t i = 0; i < due; i++) {
		kanal_msg_t *msg = s_build(s, s->next_seq, s->pad);
		char ns[24];

		if (!msg)
			break; /* out of memory: try again on the next tick */
		if (s->blob_size > 0 && (rc = s_attach_blob(ctx, s, msg, s->next_seq)) != 0) {
			kanal_msg_destroy(&msg);
			break;
		}
		kanal_msg_set_attr(msg, "time", time, NULL);
		s_u64_text(ns, s_mono_ns());
		kanal_msg_set_attr(msg, "benchns", ns, NULL);
		rc = kanal_emit(ctx, &msg);
		if (rc != 0)
			break;
		s->next_seq++;
	}
	if (rc == KANAL_ECLOSED || (rc != 0 && rc != KANAL_EBUSY)) {
		kanal_log(ctx, KANAL_LOG_ERROR, "stopping at seq %" PRId64 ": %s", s->next_seq,
			  kanal_strerror(rc));
		s->done = true;
	}
	if (s->next_seq > s->count)
		s->done = true;
	if (!s->done && s->rate == 0) {
		/* Flat out: straight back after the loop has had its turn (deliveries, acks, a
		 * stop), not at the next millisecond boundary. A 1 ms interval timer that overran
		 * waits for the next boundary, which left this source idle ~40 % of the time
		 * (issue 5, fifth round) and measured a source slower than the bus. */
		s->timer = kanal_timer_add(ctx, 0, 0, s_tick, s);
		if (s->timer < 0)
			s->done = true;
	}
	if (s->done) {
		kanal_timer_cancel(ctx, s->timer);
		kanal_log(ctx, KANAL_LOG_INFO, "emitted %" PRId64 " events", s->next_seq - 1);
		if (s->done_file)
			s_write_done(ctx, s);
	}
}

static int s_start(kanal_ctx_t *ctx, void *state)
{
	bench_source_t *s = state;

	/* At a rate: every millisecond, emitting what is due. Flat out: a one-shot timer that
	 * s_tick sets again after each burst. */
	s->timer = kanal_timer_add(ctx, 0, s->rate > 0 ? 1 : 0, s_tick, s);
	if (s->timer < 0) {
		kanal_set_error(ctx, "cannot add the emit timer: %s",
				kanal_strerror((int)s->timer));
		return (int)s->timer;
	}
	return 0;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "bench_source",
	.version = KANAL_VERSION,
	.description = "Emits a counted stream of time-stamped events for kanal's benchmarks.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.destroy = s_destroy,
};
