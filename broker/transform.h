/*
 * broker/transform.h — a route's `transform:`: a jq program, compiled once when the routing
 * file loads, that reshapes an event's data (and may set its type, subject and extension
 * attributes) for one delivery. The program runs sandboxed: no `input`/`inputs`, `$ENV` or
 * `env`, `debug`/`stderr` output, `input_filename` or module imports; each run has a time
 * limit and an output-size limit. A run that fails, produces nothing, `null` or a non-object
 * is an error the caller turns into a REJECT of the delivery. docs/design/transforms.md says
 * where it runs and why; docs/routes.md what integrators write.
 */
#ifndef KANAL_TRANSFORM_H
#define KANAL_TRANSFORM_H

#include <stddef.h>
#include <kanal/kanal.h>

/* A run that takes longer than this is stopped and fails; one whose output, as JSON text,
 * is larger than TRANSFORM_MAX_OUTPUT fails (the sandboxed runner's limits, kc_jq.h). */
#define TRANSFORM_TIME_LIMIT_MS 100
#define TRANSFORM_MAX_OUTPUT (1024 * 1024)

typedef struct transform transform_t;

/* Compiles `program`. Returns 0 and *out, or KANAL_ECONFIG with jq's message in err->text
 * and, when jq names one, the program's line (1-based) in err->line. Ownership: borrows
 * program (copied); *out is new, destroyed with transform_destroy. */
int transform_new(const char *program, transform_t **out, kanal_error_t *err);

/* Destroys *t_p and sets it to NULL. Accepts NULL. Ownership: takes *t_p. */
void transform_destroy(transform_t **t_p);

/* The program's text as written. Ownership: borrowed from t. */
const char *transform_text(const transform_t *t);

/* Runs t on msg: `.` is msg's data (null when it has none or it is binary) and `$event`
 * its context attributes as an object. The first output is the result: an object whose
 * keys are exactly `data` and `attributes` sets the data and the attributes named (type,
 * subject, extensions; null removes an optional one); any other object is the new data.
 * Returns 0 and a new message in *out, or KANAL_EREJECTED with the reason in err->text (a
 * jq error, no output, null, not an object, over a limit, an attribute that may not be set
 * or holds a CPR number), or KANAL_ENOMEM. Several threads may run the same transform; the
 * runs take turns. Ownership: borrows t and msg; *out is new (kanal_msg_destroy). */
int transform_apply(transform_t *t, const kanal_msg_t *msg, kanal_msg_t **out, kanal_error_t *err);

#endif
