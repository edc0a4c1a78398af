/*
 * plugins/common/kc_jq.c — the sandboxed jq runner (kc_jq.h): compiling a program behind a
 * sandbox prelude, running it with a time limit enforced by one watchdog thread per
 * process, bounding its output, and — for the configured connectors — turning an output
 * object into an event.
 *
 * The sandbox is a prelude put before the program on its first line (so jq's line numbers
 * stay the program's): it binds the run's variable, then shadows `$ENV`, `env`, `input`,
 * `inputs`, `debug`, `stderr`, `input_filename` and `halt` so that none reaches the process,
 * and the library path is empty so no module can be found (an `import` or `include` after
 * the prelude is refused with its own message). jq 1.6 has no way to interrupt a run but
 * `jq_halt`, whose flag its interpreter tests before every instruction: the watchdog sets it
 * on a run past KC_JQ_TIME_LIMIT_MS, under the same small lock the run takes to start and end.
 * The watchdog starts with the first run, so that compiling a program to check it starts no
 * thread, and the last program destroyed stops and joins it.
 */
#include "kc_jq.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_PRELUDE                                                                                  \
	"input as $%s | {} as $ENV | def env: {}; "                                                \
	"def input: error(\"input is not available in a %s\"); "                                   \
	"def inputs: error(\"inputs is not available in a %s\"); "                                 \
	"def debug: .; def stderr: .; def input_filename: null; "                                  \
	"def halt: error(\"halt is not available in a %s\"); "                                     \
	"def halt_error: error(\"halt_error is not available in a %s\"); "                         \
	"def halt_error(f): halt_error; %s"

struct kc_jq {
	char *text;
	char label[32];
	jq_state *jq;
	pthread_mutex_t run_lock;  /* one run at a time */
	pthread_mutex_t halt_lock; /* the run's start and end against the watchdog */
	int64_t started_ms;        /* the run in progress started at (0: none) */
	bool timed_out;
	jv var; /* what `input` gives the prelude, once per run */
	char compile_error[512];
	struct kc_jq *next; /* in the watchdog's list */
};

/* The watchdog: every program in the process, checked every few milliseconds. It runs only
 * while there are programs: this file is linked into plugins too, and a plugin's copy of the
 * thread must be gone (joined) before the plugin is unloaded, or it would run unmapped code.
 * Each thread runs for one generation: stopping one moves s_watchdog_gen on. */
static pthread_mutex_t s_watch_lock = PTHREAD_MUTEX_INITIALIZER;
static kc_jq_t *s_watched;
static bool s_watchdog_started;
static pthread_t s_watchdog_thread;
static uintptr_t s_watchdog_gen;

static int64_t s_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *s_watchdog(void *arg)
{
	uintptr_t gen = (uintptr_t)arg;

	for (;;) {
		int64_t now;

		usleep(10 * 1000);
		now = s_mono_ms();
		pthread_mutex_lock(&s_watch_lock);
		if (gen != s_watchdog_gen) {
			pthread_mutex_unlock(&s_watch_lock);
			break;
		}
		for (kc_jq_t *t = s_watched; t; t = t->next) {
			pthread_mutex_lock(&t->halt_lock);
			if (t->started_ms && !t->timed_out &&
			    now - t->started_ms > KC_JQ_TIME_LIMIT_MS) {
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

/* Starts the watchdog with the first run, not the first compile: compiling a program only
 * to check it (a plugin's check callback, kanal/plugin.h, must start no thread, and its
 * code may be unloaded right after) leaves no thread behind. */
static void s_watchdog_start(void)
{
	pthread_mutex_lock(&s_watch_lock);
	if (!s_watchdog_started)
		s_watchdog_started = pthread_create(&s_watchdog_thread, NULL, s_watchdog,
						    (void *)s_watchdog_gen) == 0;
	pthread_mutex_unlock(&s_watch_lock);
}

/* Keeps t in the watchdog's list. */
static void s_watch(kc_jq_t *t)
{
	pthread_mutex_lock(&s_watch_lock);
	t->next = s_watched;
	s_watched = t;
	pthread_mutex_unlock(&s_watch_lock);
}

/* Takes t out of the watchdog's list; the last program out stops the watchdog and waits for
 * it (a new program meanwhile starts a new one, of the next generation). */
static void s_unwatch(kc_jq_t *t)
{
	pthread_t th;
	bool join = false;

	pthread_mutex_lock(&s_watch_lock);
	for (kc_jq_t **p = &s_watched; *p; p = &(*p)->next)
		if (*p == t) {
			*p = t->next;
			break;
		}
	if (!s_watched && s_watchdog_started) {
		s_watchdog_gen++;
		s_watchdog_started = false;
		th = s_watchdog_thread;
		join = true;
	}
	pthread_mutex_unlock(&s_watch_lock);
	if (join)
		pthread_join(th, NULL);
}

/* jq reports compile errors here; the first one is kept. */
static void s_on_error(void *arg, jv msg)
{
	kc_jq_t *t = arg;

	if (!t->compile_error[0] && jv_get_kind(msg) == JV_KIND_STRING)
		snprintf(t->compile_error, sizeof t->compile_error, "%s", jv_string_value(msg));
	jv_free(msg);
}

/* The prelude's `input`: the run's variable, once. */
static jv s_input(jq_state *jq, void *arg)
{
	kc_jq_t *t = arg;
	jv var = t->var;

	(void)jq;
	t->var = jv_invalid();
	return var;
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
static void s_compile_error(const kc_jq_t *t, kanal_error_t *err)
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
	kanal_error_set(err, NULL, line, 0, NULL, "%s: %s", t->label,
			strncmp(text, "jq: error: ", 11) ? text : text + 11);
}

int kc_jq_new(const char *program, const char *var, const char *label, kc_jq_t **out,
	      kanal_error_t *err)
{
	kc_jq_t *t;
	char *full;
	size_t n;

	*out = NULL;
	if (s_imports(program)) {
		kanal_error_set(err, NULL, 1, 0, NULL, "%s: module imports are not allowed in a %s",
				label, label);
		return KANAL_ECONFIG;
	}
	if (!(t = calloc(1, sizeof *t)))
		return KANAL_ENOMEM;
	snprintf(t->label, sizeof t->label, "%s", label);
	n = strlen(S_PRELUDE) + strlen(var) + 5 * strlen(t->label) + strlen(program) + 1;
	t->text = strdup(program);
	t->jq = jq_init();
	full = malloc(n);
	if (!t->text || !t->jq || !full) {
		free(full);
		kc_jq_destroy(&t);
		return KANAL_ENOMEM;
	}
	pthread_mutex_init(&t->run_lock, NULL);
	pthread_mutex_init(&t->halt_lock, NULL);
	t->var = jv_invalid();
	snprintf(full, n, S_PRELUDE, var, t->label, t->label, t->label, t->label, program);
	jq_set_error_cb(t->jq, s_on_error, t);
	jq_set_attr(t->jq, jv_string("JQ_LIBRARY_PATH"), jv_array());
	if (!jq_compile(t->jq, full)) {
		free(full);
		s_compile_error(t, err);
		jq_teardown(&t->jq);
		kc_jq_destroy(&t);
		return KANAL_ECONFIG;
	}
	free(full);
	jq_set_input_cb(t->jq, s_input, t);
	s_watch(t);
	*out = t;
	return 0;
}

void kc_jq_destroy(kc_jq_t **jq_p)
{
	kc_jq_t *t = jq_p ? *jq_p : NULL;

	if (!t)
		return;
	if (t->jq) {
		s_unwatch(t);
		jq_teardown(&t->jq);
		pthread_mutex_destroy(&t->run_lock);
		pthread_mutex_destroy(&t->halt_lock);
	}
	jv_free(t->var);
	free(t->text);
	free(t);
	*jq_p = NULL;
}

const char *kc_jq_text(const kc_jq_t *jq)
{
	return jq->text;
}

jv kc_jq_run(kc_jq_t *t, jv input, jv var, kanal_error_t *err)
{
	jv result;
	bool timed_out;

	s_watchdog_start();
	pthread_mutex_lock(&t->run_lock);
	jv_free(t->var);
	t->var = var;
	pthread_mutex_lock(&t->halt_lock);
	t->timed_out = false;
	t->started_ms = s_mono_ms();
	pthread_mutex_unlock(&t->halt_lock);
	jq_start(t->jq, input, 0);
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
		kanal_error_set(err, NULL, 0, 0, NULL, "%s: stopped after %d ms", t->label,
				KC_JQ_TIME_LIMIT_MS);
		return jv_invalid();
	}
	if (!jv_is_valid(result)) {
		jv why = jv_invalid_get_msg(result);
		if (jv_get_kind(why) == JV_KIND_STRING) {
			kanal_error_set(err, NULL, 0, 0, NULL, "%s: %s", t->label,
					jv_string_value(why));
		} else if (jv_get_kind(why) == JV_KIND_INVALID ||
			   jv_get_kind(why) == JV_KIND_NULL) {
			kanal_error_set(err, NULL, 0, 0, NULL, "%s: the program gave no output",
					t->label);
		} else {
			jv text = jv_dump_string(jv_copy(why), 0);
			kanal_error_set(err, NULL, 0, 0, NULL, "%s: %s (not a string)", t->label,
					jv_string_value(text));
			jv_free(text);
		}
		jv_free(why);
		return jv_invalid();
	}
	return result;
}

jv kc_jq_dump(const kc_jq_t *jq, jv value, kanal_error_t *err)
{
	jv text = jv_dump_string(value, 0);

	if ((size_t)jv_string_length_bytes(jv_copy(text)) > KC_JQ_MAX_OUTPUT) {
		jv_free(text);
		kanal_error_set(err, NULL, 0, 0, NULL, "%s: the output is larger than %d bytes",
				jq->label, KC_JQ_MAX_OUTPUT);
		return jv_invalid();
	}
	return text;
}

int kc_jq_option(kanal_ctx_t *ctx, const char *option, const char *program, const char *var,
		 kc_jq_t **out)
{
	kanal_error_t err;
	int rc;

	kanal_error_clear(&err);
	rc = kc_jq_new(program, var, "map", out, &err);
	if (rc == KANAL_ENOMEM)
		kanal_set_error(ctx, "option '%s': out of memory", option);
	else if (rc != 0 && err.line > 0)
		kanal_set_error(ctx, "option '%s', line %d: %s", option, err.line, err.text);
	else if (rc != 0)
		kanal_set_error(ctx, "option '%s': %s", option, err.text);
	return rc;
}

/* A string attribute of the output (an id may also be an integer) into buf, or NULL when
 * absent or null; "" when of another kind. */
static const char *s_field(jv out, const char *key, char *buf, size_t size)
{
	jv v = jv_object_get(jv_copy(out), jv_string(key));
	const char *text = NULL;

	if (jv_get_kind(v) == JV_KIND_STRING) {
		snprintf(buf, size, "%s", jv_string_value(v));
		text = buf;
	} else if (jv_get_kind(v) == JV_KIND_NUMBER && !strcmp(key, "id") &&
		   jv_number_value(v) == (double)(int64_t)jv_number_value(v)) {
		snprintf(buf, size, "%lld", (long long)jv_number_value(v));
		text = buf;
	} else if (jv_is_valid(v) && jv_get_kind(v) != JV_KIND_NULL) {
		text = "";
	}
	jv_free(v);
	return text;
}

/* Makes the event the output object describes. */
static int s_event(const kc_jq_t *t, jv out, const kc_jq_event_defaults_t *def,
		   kanal_msg_t **msg_out, kanal_error_t *err)
{
	static const char *const keys[] = { "id", "type", "subject", "time", "data" };
	char id[256], type[256], subject[256], time[64], attr[64];
	const char *v_id, *v_type, *v_subject, *v_time;
	kanal_msg_t *msg;
	jv data;
	int rc = 0;

	if (jv_get_kind(out) != JV_KIND_OBJECT) {
		kanal_error_set(err, NULL, 0, 0, NULL, "%s: the output is %s, not an object",
				t->label, jv_kind_name(jv_get_kind(out)));
		return KANAL_EREJECTED;
	}
	/* jv_object_foreach evaluates its object many times and frees none of them: pass the
	 * borrowed `out`, never a jv_copy (each evaluation would leak a reference, and with
	 * it the whole output — a leak per record that LeakSanitizer found in test_payslips). */
	jv_object_foreach(out, key, value)
	{
		bool known = false;
		for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
			known = known || !strcmp(jv_string_value(key), keys[i]);
		if (!known && !rc) {
			kanal_error_set(err, NULL, 0, 0, NULL,
					"%s: unknown key '%.60s' in the "
					"output (id, type, subject, time, data)",
					t->label, jv_string_value(key));
			rc = KANAL_EREJECTED;
		}
		jv_free(key);
		jv_free(value);
	}
	if (rc)
		return rc;
	v_id = s_field(out, "id", id, sizeof id);
	v_type = s_field(out, "type", type, sizeof type);
	v_subject = s_field(out, "subject", subject, sizeof subject);
	v_time = s_field(out, "time", time, sizeof time);
	if (!v_id)
		v_id = def->id;
	if (!v_type)
		v_type = def->type;
	if (!v_id || !*v_id || !v_type || !*v_type) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"%s: the output has no %s (a non-empty "
				"string)",
				t->label, !v_id || !*v_id ? "id" : "type");
		return KANAL_EREJECTED;
	}
	if (!(msg = kanal_msg_new(v_type, def->source, v_id))) {
		kanal_error_set(err, NULL, 0, 0, NULL,
				"%s: '%.80s' / '%.80s' is not a valid event "
				"type and id",
				t->label, v_type, v_id);
		return KANAL_EREJECTED;
	}
	if (v_subject && kanal_msg_set_attr(msg, "subject", v_subject, NULL) != 0) {
		kanal_error_set(err, NULL, 0, 0, "subject", "%s: the subject is refused", t->label);
		rc = KANAL_EREJECTED;
	}
	if (!rc && v_time && kanal_msg_set_attr(msg, "time", v_time, NULL) != 0) {
		kanal_error_set(err, NULL, 0, 0, "time", "%s: the time is not an RFC 3339 time",
				t->label);
		rc = KANAL_EREJECTED;
	}
	if (!rc && kanal_msg_context_cpr(msg, attr, sizeof attr)) {
		kanal_error_set(err, NULL, 0, 0, attr,
				"%s: attribute '%s' holds a CPR number; a "
				"person belongs in data, or a pseudonym in subject",
				t->label, attr);
		rc = KANAL_EREJECTED;
	}
	data = jv_object_get(jv_copy(out), jv_string("data"));
	if (!rc && jv_is_valid(data) && jv_get_kind(data) != JV_KIND_NULL) {
		jv text = kc_jq_dump(t, jv_copy(data), err);
		if (!jv_is_valid(text))
			rc = KANAL_EREJECTED;
		else
			rc = kanal_msg_set_data_json(msg, jv_string_value(text),
						     (size_t)jv_string_length_bytes(jv_copy(text)));
		if (rc && rc != KANAL_EREJECTED && rc != KANAL_ENOMEM) {
			kanal_error_set(err, NULL, 0, 0, "data", "%s: the data is refused: %s",
					t->label, kanal_strerror(rc));
			rc = KANAL_EREJECTED;
		}
		jv_free(text);
	}
	jv_free(data);
	if (rc) {
		kanal_msg_destroy(&msg);
		return rc;
	}
	*msg_out = msg;
	return 0;
}

int kc_jq_map_event(kc_jq_t *jq, const char *record_json, jv var,
		    const kc_jq_event_defaults_t *defaults, kanal_msg_t **out, kanal_error_t *err)
{
	jv input = jv_parse(record_json), result;
	int rc;

	*out = NULL;
	if (!jv_is_valid(input)) {
		jv_free(input);
		jv_free(var);
		kanal_error_set(err, NULL, 0, 0, NULL, "%s: the record is not JSON", jq->label);
		return KANAL_EREJECTED;
	}
	result = kc_jq_run(jq, input, var, err);
	if (!jv_is_valid(result)) {
		jv_free(result);
		return KANAL_EREJECTED;
	}
	rc = s_event(jq, result, defaults, out, err);
	jv_free(result);
	return rc;
}
