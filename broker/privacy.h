/*
 * broker/privacy.h — the bus's personal-data rules at its edges. CloudEvents lets
 * intermediaries log context attributes, so kanal refuses an event that carries a CPR
 * number in one (id, source, subject, any extension): the person belongs in `data`, and a
 * correlating `subject` uses a pseudonym (person:<keyed hash>).
 */
#ifndef KANAL_PRIVACY_H
#define KANAL_PRIVACY_H

#include <stdbool.h>
#include <stddef.h>
#include <kanal/kanal.h>

/* True when a context attribute of msg holds a CPR number; its name goes into attr. */
bool privacy_context_cpr(const kanal_msg_t *msg, char *attr, size_t size);

#endif
