/*
 * sdk/harness.c — the plugin test harness: a host with no broker behind it.
 *
 * A harness loads a plugin through kanal__plugin_open and validates its options through
 * kanal__config_build, exactly as kanald does, then drives the lifecycle on the calling
 * thread with its own kanal_host_ops_t: an emit is recorded (or refused with the result the
 * test chose, to exercise backpressure), a request is answered by a function the test
 * registered, a reply is kept for the request being delivered, log lines are recorded as
 * "level: text" (already CPR-masked by ctx.c), metrics are kept in a small table. Timers
 * and fd watches run on the same kanal__loop as in kanald, for as long as the test asks.
 *
 * Like the bus, the harness counts attempts: delivering again an event (same source and id)
 * that was answered RETRY is its next attempt.
 *
 * A harness is used from one thread: the one that calls kanal_harness_start is the
 * instance's thread, and the plugin's host services refuse any other.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kanal/harness.h>
#include "blob_store.h"
#include "host.h"

/* How long destroy gives the plugin's stop. */
#define HARNESS_STOP_MS 5000

typedef struct harness_option {
	char *key;
	char *value; /* scalar; NULL for a list */
	char **items;
	size_t n_items;
	bool is_list;
} harness_option_t;

typedef struct harness_service {
	char *name;
	kanal_harness_service_fn fn;
	void *arg;
} harness_service_t;

typedef struct harness_metric {
	char *name;
	double value;
} harness_metric_t;

/* An event answered RETRY, and how many attempts it has had. */
typedef struct harness_retry {
	char *key; /* source + '\n' + id */
	int attempts;
} harness_retry_t;

/* A growable array of fixed-size elements. */
typedef struct harness_vec {
	void *items;
	size_t count;
	size_t cap;
} harness_vec_t;

struct kanal_harness {
	kanal_loaded_t *loaded;
	char *instance;
	harness_vec_t options; /* harness_option_t */
	char *state_dir;
	bool made_state_dir; /* a temporary folder of ours: removed by destroy */

	kanal_config_t *config;
	kanal_ctx_t *ctx;
	kanal__blob_store_t *blobs; /* <state_dir>/blobs: kanal_blob_* work as in kanald */
	void *state;
	bool start_tried; /* start called: options are frozen */
	bool inited;      /* init succeeded: destroy(state) is owed */
	bool started;     /* start succeeded: stop is owed */

	harness_vec_t emitted; /* kanal_msg_t * */
	size_t emitted_total;
	harness_vec_t logs;     /* char * */
	harness_vec_t metrics;  /* harness_metric_t */
	harness_vec_t services; /* harness_service_t */
	harness_vec_t retries;  /* harness_retry_t */
	int emit_result;

	kanal_msg_t *reply; /* the reply to the request being delivered */
	char last_error[sizeof((kanal_delivery_info_t *)0)->error];
	int64_t last_retry_after;
	uint64_t next_delivery_id;
};

/* ---- small helpers ------------------------------------------------------------------------ */

/* Makes room for one more element. Returns 0 or KANAL_ENOMEM. */
static int s_vec_reserve(harness_vec_t *v, size_t elem)
{
	size_t cap;
	void *items;

	if (v->count < v->cap)
		return 0;
	cap = v->cap ? v->cap * 2 : 8;
	items = realloc(v->items, cap * elem);
	if (!items)
		return KANAL_ENOMEM;
	v->items = items;
	v->cap = cap;
	return 0;
}

#define VEC_AT(v, type, i) (((type *)(v).items)[i])

static void s_option_free(harness_option_t *o)
{
	free(o->key);
	free(o->value);
	for (size_t i = 0; i < o->n_items; i++)
		free(o->items[i]);
	free(o->items);
	memset(o, 0, sizeof *o);
}

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* Removes a folder and everything in it, not following symbolic links. */
static void s_remove_tree(const char *path)
{
	nftw(path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static kanal_harness_t *s_host(kanal_ctx_t *ctx)
{
	return ctx->host;
}

/* ---- host ops --------------------------------------------------------------------------------- */

static int s_op_emit(kanal_ctx_t *ctx, kanal_msg_t *msg)
{
	kanal_harness_t *h = s_host(ctx);

	if (h->emit_result) {
		kanal_msg_destroy(&msg);
		return h->emit_result;
	}
	if (s_vec_reserve(&h->emitted, sizeof(kanal_msg_t *)) != 0) {
		kanal_msg_destroy(&msg);
		return KANAL_ENOMEM;
	}
	VEC_AT(h->emitted, kanal_msg_t *, h->emitted.count++) = msg;
	h->emitted_total++;
	return 0;
}

static harness_service_t *s_find_service(kanal_harness_t *h, const char *name)
{
	for (size_t i = 0; i < h->services.count; i++)
		if (!strcmp(VEC_AT(h->services, harness_service_t, i).name, name))
			return &VEC_AT(h->services, harness_service_t, i);
	return NULL;
}

static int s_op_request(kanal_ctx_t *ctx, const char *service, kanal_msg_t *req, int64_t timeout_ms,
			kanal_msg_t **reply_out)
{
	harness_service_t *svc = s_find_service(s_host(ctx), service);
	kanal_msg_t *reply = NULL;
	int rc;

	(void)timeout_ms; /* the test's function answers at once */
	if (!svc) {
		kanal_msg_destroy(&req);
		return KANAL_ENOSERVICE;
	}
	rc = svc->fn(req, &reply, svc->arg);
	kanal_msg_destroy(&req);
	/* A service that claims success must give a reply; one that fails gives none. */
	if (rc == 0 && !reply)
		rc = KANAL_EREJECTED;
	if (rc != 0) {
		kanal_msg_destroy(&reply);
		return rc < 0 ? rc : KANAL_EREJECTED;
	}
	*reply_out = reply;
	return 0;
}

static int s_op_reply(kanal_ctx_t *ctx, kanal_msg_t *reply)
{
	kanal_harness_t *h = s_host(ctx);

	kanal_msg_destroy(&h->reply); /* ctx.c allows one reply; this is only belt and braces */
	h->reply = reply;
	return 0;
}

static void s_op_log(kanal_ctx_t *ctx, kanal_log_level_t level, const char *line)
{
	kanal_harness_t *h = s_host(ctx);
	char *text;

	if (s_vec_reserve(&h->logs, sizeof(char *)) != 0)
		return;
	if (asprintf(&text, "%s: %s", kanal_log_level_name(level), line) < 0)
		return;
	VEC_AT(h->logs, char *, h->logs.count++) = text;
}

/* The metric called name, created at 0 when new; NULL when out of memory. */
static harness_metric_t *s_metric(kanal_harness_t *h, const char *name)
{
	harness_metric_t *m;

	for (size_t i = 0; i < h->metrics.count; i++)
		if (!strcmp(VEC_AT(h->metrics, harness_metric_t, i).name, name))
			return &VEC_AT(h->metrics, harness_metric_t, i);
	if (s_vec_reserve(&h->metrics, sizeof(harness_metric_t)) != 0)
		return NULL;
	m = &VEC_AT(h->metrics, harness_metric_t, h->metrics.count);
	m->name = strdup(name);
	if (!m->name)
		return NULL;
	m->value = 0;
	h->metrics.count++;
	return m;
}

static void s_op_metric_add(kanal_ctx_t *ctx, const char *name, int64_t delta)
{
	harness_metric_t *m = s_metric(s_host(ctx), name);

	if (m)
		m->value += (double)delta;
}

static void s_op_metric_set(kanal_ctx_t *ctx, const char *name, double value)
{
	harness_metric_t *m = s_metric(s_host(ctx), name);

	if (m)
		m->value = value;
}

static const kanal_host_ops_t s_ops = {
	.emit = s_op_emit,
	.request = s_op_request,
	.reply = s_op_reply,
	.log = s_op_log,
	.metric_add = s_op_metric_add,
	.metric_set = s_op_metric_set,
};

/* ---- create and configure ---------------------------------------------------------------------- */

kanal_harness_t *kanal_harness_new(const char *path, const char *instance, kanal_error_t *err)
{
	kanal_loaded_t *loaded = NULL;
	kanal_harness_t *h;

	if (kanal__plugin_open(path, &loaded, err) != 0)
		return NULL;
	h = calloc(1, sizeof *h);
	if (!h)
		goto nomem;
	h->loaded = loaded;
	h->instance = strdup(instance && *instance ? instance : loaded->desc->name);
	if (!h->instance) {
		free(h);
		goto nomem;
	}
	h->last_retry_after = -1;
	return h;
nomem:
	kanal_error_set(err, path, 0, 0, NULL, "out of memory creating the harness");
	kanal__plugin_close(&loaded);
	return NULL;
}

/* Records option `key`, replacing an earlier one of that name. Takes value (a string) or
 * items (n strings) — freed on failure too. Returns 0 or KANAL_ENOMEM. */
static int s_option_put(kanal_harness_t *h, const char *key, char *value, char **items, size_t n,
			bool is_list)
{
	harness_option_t *o = NULL, fresh = {
		.value = value, .items = items, .n_items = n, .is_list = is_list
	};

	for (size_t i = 0; i < h->options.count && !o; i++)
		if (!strcmp(VEC_AT(h->options, harness_option_t, i).key, key))
			o = &VEC_AT(h->options, harness_option_t, i);
	if (o) {
		fresh.key = o->key;
		o->key = NULL;
		s_option_free(o);
		*o = fresh;
		return 0;
	}
	fresh.key = strdup(key);
	if (!fresh.key || s_vec_reserve(&h->options, sizeof(harness_option_t)) != 0) {
		s_option_free(&fresh);
		return KANAL_ENOMEM;
	}
	VEC_AT(h->options, harness_option_t, h->options.count++) = fresh;
	return 0;
}

int kanal_harness_option(kanal_harness_t *h, const char *key, const char *value)
{
	char *copy;

	if (!h || !key || !value)
		return KANAL_EINVAL;
	if (h->start_tried)
		return KANAL_ESTATE;
	copy = strdup(value);
	if (!copy)
		return KANAL_ENOMEM;
	return s_option_put(h, key, copy, NULL, 0, false);
}

int kanal_harness_option_list(kanal_harness_t *h, const char *key, const char *const *items,
			      size_t n)
{
	char **copy;

	if (!h || !key || (n && !items))
		return KANAL_EINVAL;
	if (h->start_tried)
		return KANAL_ESTATE;
	copy = calloc(n ? n : 1, sizeof *copy);
	if (!copy)
		return KANAL_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		copy[i] = strdup(items[i] ? items[i] : "");
		if (!copy[i]) {
			while (i--)
				free(copy[i]);
			free(copy);
			return KANAL_ENOMEM;
		}
	}
	return s_option_put(h, key, NULL, copy, n, true);
}

int kanal_harness_state_dir(kanal_harness_t *h, const char *dir)
{
	char *copy;

	if (!h || !dir || !*dir)
		return KANAL_EINVAL;
	if (h->start_tried)
		return KANAL_ESTATE;
	copy = strdup(dir);
	if (!copy)
		return KANAL_ENOMEM;
	free(h->state_dir);
	h->state_dir = copy;
	return 0;
}

int kanal_harness_service(kanal_harness_t *h, const char *service, kanal_harness_service_fn fn,
			  void *arg)
{
	harness_service_t *svc;

	if (!h || !service || !*service || !fn)
		return KANAL_EINVAL;
	svc = s_find_service(h, service);
	if (!svc) {
		if (s_vec_reserve(&h->services, sizeof(harness_service_t)) != 0)
			return KANAL_ENOMEM;
		svc = &VEC_AT(h->services, harness_service_t, h->services.count);
		svc->name = strdup(service);
		if (!svc->name)
			return KANAL_ENOMEM;
		h->services.count++;
	}
	svc->fn = fn;
	svc->arg = arg;
	return 0;
}

void kanal_harness_set_emit_result(kanal_harness_t *h, int code)
{
	if (h)
		h->emit_result = code;
}

/* ---- lifecycle ----------------------------------------------------------------------------------- */

/* Builds the config from the recorded options, as kanald builds it from kanald.yaml. */
static int s_build_config(kanal_harness_t *h, kanal_error_t *err)
{
	size_t n = h->options.count;
	kanal_optval_t *vals = calloc(n ? n : 1, sizeof *vals);
	int rc;

	if (!vals)
		return KANAL_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const harness_option_t *o = &VEC_AT(h->options, harness_option_t, i);
		vals[i].key = o->key;
		vals[i].value = o->value;
		vals[i].items = (const char **)o->items;
		vals[i].n_items = o->n_items;
		vals[i].is_list = o->is_list;
	}
	rc = kanal__config_build(h->loaded->options, vals, n, NULL, h->instance, 0, 0, &h->config,
				 err);
	free(vals);
	return rc;
}

/* Makes the default state folder: a fresh temporary one, removed by destroy. */
static int s_make_state_dir(kanal_harness_t *h, kanal_error_t *err)
{
	const char *base = getenv("TMPDIR");
	char *path;

	if (h->state_dir)
		return 0;
	if (!base || !*base)
		base = "/tmp";
	if (asprintf(&path, "%s/kanal-harness-XXXXXX", base) < 0)
		return KANAL_ENOMEM;
	if (!mkdtemp(path)) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"instance '%s': cannot make a state folder "
				"under %s: %s",
				h->instance, base, strerror(errno));
		free(path);
		return KANAL_EIO;
	}
	h->state_dir = path;
	h->made_state_dir = true;
	return 0;
}

/* Reports a failed init or start with the plugin's own kanal_set_error text. Returns the
 * code to give the test: the plugin's, or KANAL_EPLUGIN when it returned nonsense. */
static int s_plugin_failed(kanal_harness_t *h, const char *what, int rc, kanal_error_t *err)
{
	if (rc >= 0)
		rc = KANAL_EPLUGIN;
	if (h->ctx->delivery.error[0])
		kanal_error_set(err, NULL, 0, 0, NULL, "instance '%s': %s failed: %s", h->instance,
				what, h->ctx->delivery.error);
	else
		kanal_error_set(err, NULL, 0, 0, NULL, "instance '%s': %s failed (%s: %s)",
				h->instance, what, kanal_errname(rc), kanal_strerror(rc));
	return rc;
}

int kanal_harness_start(kanal_harness_t *h, kanal_error_t *err)
{
	const kanal_plugin_t *d;
	int rc;

	if (!h)
		return KANAL_EINVAL;
	if (h->start_tried)
		return KANAL_ESTATE;
	h->start_tried = true;
	d = h->loaded->desc;
	rc = s_build_config(h, err);
	if (rc)
		return rc;
	/* As in kanald: the plugin's own check before anything is made for the instance.
	 * Its log lines are dropped: init, which runs the same code, logs them again. */
	rc = kanal__plugin_check(h->loaded, h->instance, h->config, NULL, NULL, err);
	if (rc) {
		char text[sizeof err->text];
		snprintf(text, sizeof text, "%s", err ? err->text : "");
		if (err)
			kanal_error_clear(err);
		kanal_error_set(err, NULL, 0, 0, NULL, "instance '%s': %s", h->instance, text);
		return rc;
	}
	rc = s_make_state_dir(h, err);
	if (rc)
		return rc;
	h->ctx = kanal__ctx_new(h->instance, &s_ops, h, h->state_dir);
	if (!h->ctx) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"instance '%s': cannot set up (state folder "
				"%s: %s)",
				h->instance, h->state_dir, strerror(errno));
		return KANAL_EIO;
	}
	h->ctx->log_level = KANAL_LOG_DEBUG; /* a test wants to see everything */
	kanal__ctx_bind(h->ctx);
	{
		char *blob_dir = NULL;
		if (asprintf(&blob_dir, "%s/blobs", h->state_dir) < 0)
			return KANAL_ENOMEM;
		h->blobs = kanal__blob_store_open_dir(blob_dir, KANAL__BLOB_MAX_DEFAULT,
						      KANAL__BLOB_STORE_DEFAULT, err);
		free(blob_dir);
		if (!h->blobs)
			return KANAL_EIO;
		kanal__ctx_set_blob_store(h->ctx, h->blobs);
	}

	rc = d->init(h->ctx, h->config, &h->state);
	if (rc != 0) {
		kanal__loop_clear(h->ctx->loop);
		h->state = NULL;
		return s_plugin_failed(h, "init", rc, err);
	}
	h->inited = true;
	h->ctx->delivery.error[0] = '\0';
	if (d->start) {
		rc = d->start(h->ctx, h->state);
		if (rc != 0) {
			/* As in kanald: a failed start is not stopped; what it began is removed
			 * and its state destroyed. */
			rc = s_plugin_failed(h, "start", rc, err);
			kanal__loop_clear(h->ctx->loop);
			if (d->destroy)
				d->destroy(h->state);
			h->state = NULL;
			h->inited = false;
			return rc;
		}
	}
	h->started = true;
	return 0;
}

void kanal_harness_destroy(kanal_harness_t **h_p)
{
	kanal_harness_t *h;
	const kanal_plugin_t *d;

	if (!h_p || !*h_p)
		return;
	h = *h_p;
	*h_p = NULL;
	d = h->loaded->desc;
	if (h->started && d->stop) {
		int64_t deadline = kanal_now_ms() + HARNESS_STOP_MS;
		d->stop(h->ctx, h->state, deadline);
		if (kanal_now_ms() > deadline)
			fprintf(stderr,
				"kanal-harness: instance '%s': stop ran past its deadline\n",
				h->instance);
	}
	if (h->ctx)
		kanal__loop_clear(h->ctx->loop);
	if (h->inited && d->destroy)
		d->destroy(h->state);
	kanal_msg_destroy(&h->reply);
	kanal__config_destroy(&h->config);
	kanal__ctx_destroy(&h->ctx);
	kanal__blob_store_destroy(&h->blobs);
	kanal__plugin_close(&h->loaded);
	if (h->made_state_dir)
		s_remove_tree(h->state_dir);
	free(h->state_dir);

	kanal_harness_clear(h);
	free(h->emitted.items);
	free(h->logs.items);
	for (size_t i = 0; i < h->options.count; i++)
		s_option_free(&VEC_AT(h->options, harness_option_t, i));
	free(h->options.items);
	for (size_t i = 0; i < h->metrics.count; i++)
		free(VEC_AT(h->metrics, harness_metric_t, i).name);
	free(h->metrics.items);
	for (size_t i = 0; i < h->services.count; i++)
		free(VEC_AT(h->services, harness_service_t, i).name);
	free(h->services.items);
	for (size_t i = 0; i < h->retries.count; i++)
		free(VEC_AT(h->retries, harness_retry_t, i).key);
	free(h->retries.items);
	free(h->instance);
	free(h);
}

/* ---- deliveries ------------------------------------------------------------------------------------ */

/* The attempt number of msg: one more than the RETRYs it has had. */
static harness_retry_t *s_retry_entry(kanal_harness_t *h, const kanal_msg_t *msg, char **key_out)
{
	const char *source = kanal_msg_source(msg), *id = kanal_msg_id(msg);
	char *key;

	*key_out = NULL;
	if (asprintf(&key, "%s\n%s", source ? source : "", id ? id : "") < 0)
		return NULL;
	for (size_t i = 0; i < h->retries.count; i++) {
		harness_retry_t *r = &VEC_AT(h->retries, harness_retry_t, i);
		if (!strcmp(r->key, key)) {
			free(key);
			return r;
		}
	}
	*key_out = key;
	return NULL;
}

/* Records the outcome for attempt counting: a RETRY adds an attempt, anything else ends the
 * event's attempts. Takes key (a new entry's key when not NULL). */
static void s_count_attempt(kanal_harness_t *h, harness_retry_t *r, char *key,
			    kanal_outcome_t outcome)
{
	if (outcome == KANAL_OUTCOME_RETRY) {
		if (r) {
			r->attempts++;
		} else if (key && s_vec_reserve(&h->retries, sizeof(harness_retry_t)) == 0) {
			r = &VEC_AT(h->retries, harness_retry_t, h->retries.count++);
			r->key = key;
			r->attempts = 1;
			key = NULL;
		}
	} else if (r) {
		size_t i = (size_t)(r - (harness_retry_t *)h->retries.items);
		free(r->key);
		VEC_AT(h->retries, harness_retry_t, i) =
			VEC_AT(h->retries, harness_retry_t, --h->retries.count);
	}
	free(key);
}

/* Runs one on_message as the bus would and records its details. */
static kanal_outcome_t s_deliver(kanal_harness_t *h, const kanal_msg_t *msg, const char *route,
				 bool is_request)
{
	const kanal_plugin_t *d;
	harness_retry_t *r;
	char *key = NULL;
	kanal_outcome_t outcome;

	h->last_error[0] = '\0';
	h->last_retry_after = -1;
	if (!h->started) {
		snprintf(h->last_error, sizeof h->last_error, "the harness is not started");
		return KANAL_OUTCOME_REJECT;
	}
	if (!msg) {
		snprintf(h->last_error, sizeof h->last_error, "no message to deliver");
		return KANAL_OUTCOME_REJECT;
	}
	d = h->loaded->desc;
	if (!d->on_message) {
		snprintf(h->last_error, sizeof h->last_error,
			 "plugin '%s' has no on_message: it "
			 "is a pure source and takes no deliveries",
			 d->name);
		return KANAL_OUTCOME_REJECT;
	}
	r = s_retry_entry(h, msg, &key);
	kanal__ctx_begin_delivery(h->ctx, ++h->next_delivery_id, route, r ? r->attempts + 1 : 1,
				  is_request);
	outcome = d->on_message(h->ctx, h->state, msg);
	kanal__ctx_end_delivery(h->ctx);
	snprintf(h->last_error, sizeof h->last_error, "%s", h->ctx->delivery.error);
	h->last_retry_after = h->ctx->delivery.retry_after_ms;
	if (outcome != KANAL_OUTCOME_OK && outcome != KANAL_OUTCOME_RETRY &&
	    outcome != KANAL_OUTCOME_REJECT) {
		snprintf(h->last_error, sizeof h->last_error,
			 "plugin returned an unknown outcome "
			 "(%d); taken as reject",
			 (int)outcome);
		outcome = KANAL_OUTCOME_REJECT;
	}
	s_count_attempt(h, r, key, outcome);
	return outcome;
}

kanal_outcome_t kanal_harness_deliver(kanal_harness_t *h, const kanal_msg_t *msg, const char *route)
{
	if (!h)
		return KANAL_OUTCOME_REJECT;
	return s_deliver(h, msg, route, false);
}

kanal_outcome_t kanal_harness_request(kanal_harness_t *h, const kanal_msg_t *msg,
				      kanal_msg_t **reply_out)
{
	kanal_outcome_t outcome;

	if (reply_out)
		*reply_out = NULL;
	if (!h)
		return KANAL_OUTCOME_REJECT;
	outcome = s_deliver(h, msg, NULL, true);
	if (outcome == KANAL_OUTCOME_OK && reply_out) {
		*reply_out = h->reply;
		h->reply = NULL;
	}
	kanal_msg_destroy(&h->reply); /* a reply with RETRY or REJECT is void */
	return outcome;
}

const char *kanal_harness_last_error(const kanal_harness_t *h)
{
	return h ? h->last_error : "";
}

int64_t kanal_harness_last_retry_after(const kanal_harness_t *h)
{
	return h ? h->last_retry_after : -1;
}

size_t kanal_harness_run(kanal_harness_t *h, int64_t ms, size_t until_emitted)
{
	int64_t deadline;

	if (!h)
		return 0;
	if (!h->started)
		return h->emitted_total;
	deadline = kanal_now_ms() + (ms > 0 ? ms : 0);
	/* At least one pass, so that ms == 0 runs whatever is due now. */
	do {
		int64_t left = deadline - kanal_now_ms();
		if (until_emitted && h->emitted_total >= until_emitted)
			break;
		if (kanal__loop_run_once(h->ctx->loop, NULL, left > 0 ? left : 0) < 0)
			break;
	} while (kanal_now_ms() < deadline);
	return h->emitted_total;
}

/* ---- records ----------------------------------------------------------------------------------------- */

size_t kanal_harness_emitted_count(const kanal_harness_t *h)
{
	return h ? h->emitted.count : 0;
}

const kanal_msg_t *kanal_harness_emitted(const kanal_harness_t *h, size_t i)
{
	return h && i < h->emitted.count ? VEC_AT(h->emitted, kanal_msg_t *, i) : NULL;
}

size_t kanal_harness_log_count(const kanal_harness_t *h)
{
	return h ? h->logs.count : 0;
}

const char *kanal_harness_log(const kanal_harness_t *h, size_t i)
{
	return h && i < h->logs.count ? VEC_AT(h->logs, char *, i) : NULL;
}

double kanal_harness_metric(const kanal_harness_t *h, const char *name)
{
	if (!h || !name)
		return 0;
	for (size_t i = 0; i < h->metrics.count; i++)
		if (!strcmp(VEC_AT(h->metrics, harness_metric_t, i).name, name))
			return VEC_AT(h->metrics, harness_metric_t, i).value;
	return 0;
}

void kanal_harness_clear(kanal_harness_t *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->emitted.count; i++)
		kanal_msg_destroy(&VEC_AT(h->emitted, kanal_msg_t *, i));
	h->emitted.count = 0;
	for (size_t i = 0; i < h->logs.count; i++)
		free(VEC_AT(h->logs, char *, i));
	h->logs.count = 0;
}
