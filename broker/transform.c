/*
 * broker/transform.c — jq transforms for routes (transform.h): compiling a program inside a
 * sandbox prelude, running it with a time limit enforced by one watchdog thread per
 * process, and turning its output into the message one delivery carries.
 *
 * The sandbox is a prelude put before the program on its first line (so jq's line numbers
 * stay the program's): it binds `$event`, then shadows `$ENV`, `env`, `input`, `inputs`,
 * `debug`, `stderr`, `input_filename` and `halt` so that none reaches the process, and the
 * library path is empty so no module can be found (an `import` or `include` after the prelude
 * is refused with its own message). jq 1.6 has no way to interrupt a run but `jq_halt`,
 * whose flag its interpreter tests before every instruction: the watchdog sets it on a run
 * past TRANSFORM_TIME_LIMIT_MS, under the same small lock the run takes to start and end.
 */
#include "transform.h"

#include <jq.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_PRELUDE                                                                          \
	"input as $event | {} as $ENV | def env: {}; "                                     \
	"def input: error(\"input is not available in a transform\"); "                    \
	"def inputs: error(\"inputs is not available in a transform\"); "                  \
	"def debug: .; def stderr: .; def input_filename: null; "                          \
	"def halt: error(\"halt is not available in a transform\"); "                      \
	"def halt_error: error(\"halt_error is not available in a transform\"); "          \
	"def halt_error(f): halt_error; "

struct transform {
	char *text;
	jq_state *jq;
	pthread_mutex_t run_lock;  /* one run at a time */
	pthread_mutex_t halt_lock; /* the run's start and end against the watchdog */
	int64_t started_ms;        /* the run in progress started at (0: none) */
	bool timed_out;
	jv event;                  /* what `input` gives the prelude, once per run */
	char compile_error[512];
	struct transform *next;    /* in the watchdog's list */
};

/* The watchdog: every transform in the process, checked every few milliseconds. */
static pthread_mutex_t s_watch_lock = PTHREAD_MUTEX_INITIALIZER;
static transform_t *s_watched;
static bool s_watchdog_started;

static int64_t s_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *s_watchdog(void *arg)
{
	(void)arg;
	for (;;) {
		int64_t now;

		usleep(10 * 1000);
		now = s_mono_ms();
		pthread_mutex_lock(&s_watch_lock);
		for (transform_t *t = s_watched; t; t = t->next) {
			pthread_mutex_lock(&t->halt_lock);
			if (t->started_ms && !t->timed_out &&
			    now - t->started_ms > TRANSFORM_TIME_LIMIT_MS) {
				/* jv_invalid() allocates nothing: this only sets jq's flags. */
				jq_halt(t->jq, jv_invalid(), jv_invalid());
				t->timed_out = true;
			}
			pthread_mutex_unlock(&t->halt_lock);
		}
		pthread_mutex_unlock(&s_watch_lock);
	}
	return NULL;
}

/* Keeps t in the watchdog's list, starting the watchdog with the first transform. */
static void s_watch(transform_t *t)
{
	pthread_mutex_lock(&s_watch_lock);
	if (!s_watchdog_started) {
		pthread_t th;
		pthread_attr_t attr;

		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		s_watchdog_started = pthread_create(&th, &attr, s_watchdog, NULL) == 0;
		pthread_attr_destroy(&attr);
	}
	t->next = s_watched;
	s_watched = t;
	pthread_mutex_unlock(&s_watch_lock);
}

static void s_unwatch(transform_t *t)
{
	pthread_mutex_lock(&s_watch_lock);
	for (transform_t **p = &s_watched; *p; p = &(*p)->next)
		if (*p == t) {
			*p = t->next;
			break;
		}
	pthread_mutex_unlock(&s_watch_lock);
}

/* jq reports compile errors here; the first one is kept. */
static void s_on_error(void *arg, jv msg)
{
	transform_t *t = arg;

	if (!t->compile_error[0] && jv_get_kind(msg) == JV_KIND_STRING)
		snprintf(t->compile_error, sizeof t->compile_error, "%s", jv_string_value(msg));
	jv_free(msg);
}

/* The prelude's `input`: the event's attributes, once. */
static jv s_input(jq_state *jq, void *arg)
{
	transform_t *t = arg;
	jv event = t->event;

	(void)jq;
	t->event = jv_invalid();
	return event;
}

/* True when the program starts a module directive (`import`, `include`), which only
 * stands at a program's start and which the sandbox does not allow. */
static bool s_imports(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return (!strncmp(p, "import", 6) || !strncmp(p, "include", 7)) &&
	       (p[strcspn(p, " \t\n\"")] != '\0');
}

/* Fills err from jq's compile message: "syntax error, … at <top-level>, line 3:\n…". */
static void s_compile_error(const transform_t *t, kanal_error_t *err)
{
	char text[512];
	const char *at;
	int line = 0;

	snprintf(text, sizeof text, "%s", t->compile_error[0] ? t->compile_error : "invalid");
	text[strcspn(text, "\n")] = '\0';
	if ((at = strstr(text, ", line ")))
		line = atoi(at + 7);
	if ((at = strstr(text, " at <top-level>")))
		text[at - text] = '\0';
	if ((at = strstr(text, " (Unix shell quoting issues?)")))
		text[at - text] = '\0';
	else if (text[0] && text[strlen(text) - 1] == ':')
		text[strlen(text) - 1] = '\0';
	kanal_error_set(err, NULL, line, 0, NULL, "transform: %s",
			strncmp(text, "jq: error: ", 11) ? text : text + 11);
}

int transform_new(const char *program, transform_t **out, kanal_error_t *err)
{
	transform_t *t;
	char *full;
	size_t n;

	*out = NULL;
	if (s_imports(program)) {
		kanal_error_set(err, NULL, 1, 0, NULL,
				"transform: module imports are not allowed in a transform");
		return KANAL_ECONFIG;
	}
	if (!(t = calloc(1, sizeof *t)))
		return KANAL_ENOMEM;
	n = strlen(S_PRELUDE) + strlen(program) + 1;
	t->text = strdup(program);
	t->jq = jq_init();
	full = malloc(n);
	if (!t->text || !t->jq || !full) {
		free(full);
		transform_destroy(&t);
		return KANAL_ENOMEM;
	}
	pthread_mutex_init(&t->run_lock, NULL);
	pthread_mutex_init(&t->halt_lock, NULL);
	t->event = jv_invalid();
	snprintf(full, n, "%s%s", S_PRELUDE, program);
	jq_set_error_cb(t->jq, s_on_error, t);
	jq_set_attr(t->jq, jv_string("JQ_LIBRARY_PATH"), jv_array());
	if (!jq_compile(t->jq, full)) {
		free(full);
		s_compile_error(t, err);
		jq_teardown(&t->jq);
		transform_destroy(&t);
		return KANAL_ECONFIG;
	}
	free(full);
	jq_set_input_cb(t->jq, s_input, t);
	s_watch(t);
	*out = t;
	return 0;
}

void transform_destroy(transform_t **t_p)
{
	transform_t *t = t_p ? *t_p : NULL;

	if (!t)
		return;
	if (t->jq) {
		s_unwatch(t);
		jq_teardown(&t->jq);
		pthread_mutex_destroy(&t->run_lock);
		pthread_mutex_destroy(&t->halt_lock);
	}
	jv_free(t->event);
	free(t->text);
	free(t);
	*t_p = NULL;
}

const char *transform_text(const transform_t *t)
{
	return t->text;
}

static int s_attr_json(const char *name, const char *value, void *arg)
{
	jv *obj = arg;

	*obj = jv_object_set(*obj, jv_string(name), jv_string(value));
	return 0;
}

/* `$event`: the context attributes as strings. */
static jv s_event_object(const kanal_msg_t *msg)
{
	static const char *const names[] = { "specversion", "id",   "source",
					     "type",        "subject", "time",
					     "datacontenttype", "dataschema" };
	jv obj = jv_object();

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		const char *v = kanal_msg_attr(msg, names[i]);
		if (v)
			obj = jv_object_set(obj, jv_string(names[i]), jv_string(v));
	}
	kanal_msg_foreach_ext(msg, s_attr_json, &obj);
	return obj;
}

/* The message's data as a jq value (null when there is none or it is not JSON). */
static jv s_data(const kanal_msg_t *msg)
{
	char *json;
	jv data;

	if (kanal_msg_data_kind(msg) != KANAL_DATA_JSON || !(json = kanal_msg_data_json(msg, NULL)))
		return jv_null();
	data = jv_parse(json);
	kanal_free(json);
	if (!jv_is_valid(data)) {
		jv_free(data);
		return jv_null();
	}
	return data;
}

/* Runs the program once and returns its first output, or an invalid value with the reason
 * in err. */
static jv s_run(transform_t *t, const kanal_msg_t *msg, kanal_error_t *err)
{
	jv result;
	bool timed_out;

	pthread_mutex_lock(&t->run_lock);
	jv_free(t->event);
	t->event = s_event_object(msg);
	pthread_mutex_lock(&t->halt_lock);
	t->timed_out = false;
	t->started_ms = s_mono_ms();
	pthread_mutex_unlock(&t->halt_lock);
	jq_start(t->jq, s_data(msg), 0);
	result = jq_next(t->jq);
	pthread_mutex_lock(&t->halt_lock);
	t->started_ms = 0;
	timed_out = t->timed_out;
	pthread_mutex_unlock(&t->halt_lock);
	/* Free the run's stack now rather than at the next run (jq_start resets it). */
	jq_start(t->jq, jv_null(), 0);
	pthread_mutex_unlock(&t->run_lock);

	if (timed_out) {
		jv_free(result);
		kanal_error_set(err, NULL, 0, 0, NULL, "transform: stopped after %d ms",
				TRANSFORM_TIME_LIMIT_MS);
		return jv_invalid();
	}
	if (!jv_is_valid(result)) {
		jv why = jv_invalid_get_msg(result);
		if (jv_get_kind(why) == JV_KIND_STRING) {
			kanal_error_set(err, NULL, 0, 0, NULL, "transform: %s", jv_string_value(why));
		} else if (jv_get_kind(why) == JV_KIND_INVALID || jv_get_kind(why) == JV_KIND_NULL) {
			kanal_error_set(err, NULL, 0, 0, NULL, "transform: the program gave no output");
		} else {
			jv text = jv_dump_string(jv_copy(why), 0);
			kanal_error_set(err, NULL, 0, 0, NULL, "transform: %s (not a string)",
					jv_string_value(text));
			jv_free(text);
		}
		jv_free(why);
		return jv_invalid();
	}
	return result;
}

/* Sets one attribute the program named, or says why it may not. */
static int s_set_attr(kanal_msg_t *msg, const char *name, jv value, kanal_error_t *err)
{
	static const char *const fixed[] = { "specversion", "id", "source", "time",
					     "datacontenttype", "dataschema", "data",
					     "data_base64" };
	kanal_error_t why;
	int rc;

	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		if (!strcmp(name, fixed[i])) {
			kanal_error_set(err, NULL, 0, 0, name,
					"transform: attribute '%s' cannot be set by a transform",
					name);
			return KANAL_EREJECTED;
		}
	kanal_error_clear(&why);
	switch (jv_get_kind(value)) {
	case JV_KIND_STRING:
		rc = kanal_msg_set_attr(msg, name, jv_string_value(value), &why);
		break;
	case JV_KIND_NULL:
		rc = strcmp(name, "type") ? kanal_msg_set_attr(msg, name, NULL, &why)
					   : KANAL_EINVALID;
		if (rc)
			snprintf(why.text, sizeof why.text, "type cannot be removed");
		break;
	case JV_KIND_TRUE:
	case JV_KIND_FALSE:
		rc = kanal_msg_set_ext_bool(msg, name, jv_get_kind(value) == JV_KIND_TRUE, &why);
		break;
	case JV_KIND_NUMBER: {
		double d = jv_number_value(value);
		if (d == (double)(int32_t)d) {
			rc = kanal_msg_set_ext_int(msg, name, (int32_t)d, &why);
			break;
		}
	}
		/* fall through */
	default:
		rc = KANAL_EINVALID;
		snprintf(why.text, sizeof why.text, "must be a string, a 32-bit integer, a boolean or null");
		break;
	}
	if (rc == KANAL_ENOMEM)
		return rc;
	if (rc) {
		kanal_error_set(err, NULL, 0, 0, name, "transform: attribute '%s': %s", name,
				why.text);
		return KANAL_EREJECTED;
	}
	return 0;
}

/* Applies the output: data, and attributes when the output is the envelope. */
static int s_apply(kanal_msg_t *msg, jv result, kanal_error_t *err)
{
	jv data = jv_copy(result), attrs = jv_invalid(), text;
	int rc = 0;
	char attr[64];

	if (jv_get_kind(result) == JV_KIND_OBJECT && jv_object_length(jv_copy(result)) == 2 &&
	    jv_object_has(jv_copy(result), jv_string("data")) &&
	    jv_object_has(jv_copy(result), jv_string("attributes"))) {
		jv_free(data);
		data = jv_object_get(jv_copy(result), jv_string("data"));
		attrs = jv_object_get(jv_copy(result), jv_string("attributes"));
		if (jv_get_kind(attrs) != JV_KIND_OBJECT) {
			kanal_error_set(err, NULL, 0, 0, NULL,
					"transform: 'attributes' must be an object");
			rc = KANAL_EREJECTED;
		}
	}
	if (!rc && jv_get_kind(attrs) == JV_KIND_OBJECT) {
		jv_object_foreach(attrs, name, value) {
			if (!rc)
				rc = s_set_attr(msg, jv_string_value(name), value, err);
			jv_free(name);
			jv_free(value);
		}
	}
	if (!rc && kanal_msg_context_cpr(msg, attr, sizeof attr)) {
		kanal_error_set(err, NULL, 0, 0, attr,
				"transform: attribute '%s' holds a CPR number; a person belongs in "
				"data, or a pseudonym in subject", attr);
		rc = KANAL_EREJECTED;
	}
	if (!rc) {
		text = jv_dump_string(jv_copy(data), 0);
		if ((size_t)jv_string_length_bytes(jv_copy(text)) > TRANSFORM_MAX_OUTPUT) {
			kanal_error_set(err, NULL, 0, 0, NULL,
					"transform: the output is larger than %d bytes",
					TRANSFORM_MAX_OUTPUT);
			rc = KANAL_EREJECTED;
		} else {
			rc = kanal_msg_set_data_json(msg, jv_string_value(text),
						     (size_t)jv_string_length_bytes(jv_copy(text)));
			if (rc == 0) {
				const char *ct = kanal_msg_datacontenttype(msg);
				if (ct && !strstr(ct, "json"))
					rc = kanal_msg_set_attr(msg, "datacontenttype",
								"application/json", NULL);
			}
		}
		jv_free(text);
	}
	jv_free(attrs);
	jv_free(data);
	jv_free(result);
	return rc;
}

int transform_apply(transform_t *t, const kanal_msg_t *msg, kanal_msg_t **out,
		    kanal_error_t *err)
{
	jv result;
	kanal_msg_t *copy;
	int rc;

	*out = NULL;
	result = s_run(t, msg, err);
	if (!jv_is_valid(result)) {
		jv_free(result);
		return KANAL_EREJECTED;
	}
	if (jv_get_kind(result) != JV_KIND_OBJECT) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"transform: the output is %s, not an object",
				jv_kind_name(jv_get_kind(result)));
		jv_free(result);
		return KANAL_EREJECTED;
	}
	if (!(copy = kanal_msg_dup(msg))) {
		jv_free(result);
		return KANAL_ENOMEM;
	}
	rc = s_apply(copy, result, err);
	if (rc) {
		kanal_msg_destroy(&copy);
		return rc;
	}
	*out = copy;
	return 0;
}
