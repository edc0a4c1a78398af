/*
 * broker/deadletter.h — the built-in `deadletter` destination: an append-only file of JSON
 * lines, <state_dir>/deadletter.jsonl, each holding the original event, the route, the
 * destination, the reason and every attempt's error. It keeps what nothing else takes:
 * unmatched events when no `default` is set, deliveries that failed for good, and work
 * still undelivered when kanald stops. Each line is written with one write(2) and fsync'd.
 */
#ifndef KANAL_DEADLETTER_H
#define KANAL_DEADLETTER_H

#include <stddef.h>
#include <kanal/kanal.h>

typedef struct deadletter deadletter_t;

deadletter_t *deadletter_open(const char *state_dir, char *err, size_t err_size);
void deadletter_close(deadletter_t **dl_p);

/* Appends one record. `errors` lists the attempts' errors (n may be 0). Returns 0 or
 * KANAL_EIO (the caller logs it; the event stays counted as undelivered). */
int deadletter_write(deadletter_t *dl, const kanal_msg_t *ev, const char *route,
		     const char *destination, const char *reason, int attempts, char *const *errors,
		     size_t n_errors);

size_t deadletter_count(const deadletter_t *dl);
const char *deadletter_path(const deadletter_t *dl);

#endif
