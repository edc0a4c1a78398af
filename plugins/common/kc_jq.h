/*
 * plugins/common/kc_jq.h — the sandboxed jq runner that the broker's route transforms
 * (broker/transform.c) and the configured connectors' `map:` programs (httppoll, filedrop)
 * share: a program compiled once behind a prelude that shuts out the process (no
 * `input`/`inputs`, `$ENV`/`env`, `debug`/`stderr`, `input_filename`, `halt`, no module
 * imports), run with a time limit that one watchdog thread per process enforces, and an
 * output-size limit. docs/design/transforms.md says why it is built this way.
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a) and into kanald's core; compiled with hidden visibility.
 * Functions are prefixed kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_KC_JQ_H
#define KANAL_PLUGINS_KC_JQ_H

#include <stddef.h>

#include <jq.h>
#include <kanal/kanal.h>

/* A run that takes longer than this is stopped and fails. */
#define KC_JQ_TIME_LIMIT_MS 100
/* An output whose JSON text is larger than this fails. */
#define KC_JQ_MAX_OUTPUT (1024 * 1024)

typedef struct kc_jq kc_jq_t;

/* Compiles `program` inside the sandbox; `$<var>` is bound, in each run, to the value given
 * to kc_jq_run. `label` starts every message (e.g. "transform", "map"). Returns 0 and *out,
 * or KANAL_ECONFIG with jq's message in err->text and, when jq names one, the program's line
 * (1-based) in err->line, or KANAL_ENOMEM. Ownership: borrows program, var and label
 * (copied); *out is new, destroyed with kc_jq_destroy; fills err. */
int kc_jq_new(const char *program, const char *var, const char *label, kc_jq_t **out,
	      kanal_error_t *err);

/* Destroys *jq_p and sets it to NULL. Accepts NULL. Ownership: takes *jq_p. */
void kc_jq_destroy(kc_jq_t **jq_p);

/* The program's text as written. Ownership: borrowed from jq. */
const char *kc_jq_text(const kc_jq_t *jq);

/* Runs jq with `.` = input and `$<var>` = var and returns its first output, or an invalid
 * value with the reason in err (a jq error, no output, stopped at the time limit). Several
 * threads may run the same program; the runs take turns. Ownership: takes input and var;
 * the result is the caller's (jv_free); fills err. */
jv kc_jq_run(kc_jq_t *jq, jv input, jv var, kanal_error_t *err);

/* The JSON text of value, or an invalid value with the reason in err when it is larger than
 * KC_JQ_MAX_OUTPUT. Ownership: takes value; the result is the caller's (jv_free). */
jv kc_jq_dump(const kc_jq_t *jq, jv value, kanal_error_t *err);

/* Compiles a connector's option `option` (a `map:` program, labelled "map") for its s_init:
 * on a compile error, sets the instance's error to "option '<option>'[, line N]: <jq's
 * message>". Returns 0 and *out, or KANAL_ECONFIG / KANAL_ENOMEM. Ownership: borrows ctx,
 * option, program and var; *out is new (kc_jq_destroy). */
int kc_jq_option(kanal_ctx_t *ctx, const char *option, const char *program, const char *var,
		 kc_jq_t **out);

/* What kc_jq_map_event makes when the program leaves a field out. */
typedef struct kc_jq_event_defaults {
	const char *type;   /* the event's type, or NULL: the output must name one */
	const char *source; /* the event's source (the instance's name) */
	const char *id;     /* the event's id, or NULL: the output must name one */
} kc_jq_event_defaults_t;

/* A configured connector's `map:`: runs jq on one record (JSON text) and makes the event its
 * output object describes — keys `id`, `type`, `subject`, `time` (strings; an id may be a
 * number) and `data` (any JSON; absent or null: no data); other keys are refused. A missing
 * id or type is taken from defaults. Returns 0 and *out, or KANAL_EREJECTED with the reason
 * in err (a jq error, an output that is not such an object, an invalid attribute, one
 * holding a CPR number), or KANAL_ENOMEM. Ownership: borrows jq, record_json and defaults,
 * takes var;
 * *out is new (kanal_msg_destroy); fills err. */
int kc_jq_map_event(kc_jq_t *jq, const char *record_json, jv var,
		    const kc_jq_event_defaults_t *defaults, kanal_msg_t **out, kanal_error_t *err);

#endif
