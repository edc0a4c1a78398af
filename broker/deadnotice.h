/*
 * broker/deadnotice.h — a dead letter's notice to its sender (deadnotice.c): kanald's own
 * `kanal.delivery.dead` event, which the routing files turn into the dead event's final
 * status (docs/message-types.md#kanaldeliverydead). Router thread only.
 */
#ifndef KANAL_DEADNOTICE_H
#define KANAL_DEADNOTICE_H

#include "router_int.h"

/* The type of kanald's notice of a dead letter. */
#define DEADNOTICE_TYPE "kanal.delivery.dead"

/* Called for each delivery kanald gives up (delivery_dead), before it is freed: when the
 * delivery died for a reason of kanald's own — not its destination's REJECT, not a route's
 * choice of `deadletter`, not an unmatched or replayed event, not a notice itself, and not
 * the spill of a stop — a notice is built and kept for the end of the turn.
 * Ownership: borrows r and dl. */
void deadnotice_note(router_t *r, const delivery_t *dl, const char *reason);

/* The notice deadnotice_note would keep for dl, for cluster mode to publish itself
 * (cluster_router.c), where a delivery has no flow but its route's name (replay_route, from
 * its message): `replayed` says that dl is a replayed dead letter, whose sender heard at its
 * first death. NULL when dl's death wants none, or out of memory.
 * Ownership: borrows r and dl; the message is new. */
kanal_msg_t *deadnotice_new(const router_t *r, const delivery_t *dl, const char *reason,
			    bool replayed);

/* Routes the notices kept this turn (the end of the turn calls it, before the journal's
 * commit, so that each is committed with its dead letter). A notice no route takes is
 * dropped, never sent to the default destination; a duplicate (the same dead letter
 * again, after a restart or a replay) is dropped too; one a full destination refuses waits
 * for the next turn. Ownership: borrows r. */
void deadnotice_flush(router_t *r);

/* Frees notices still kept (kanald stops). Ownership: borrows r. */
void deadnotice_free(router_t *r);

#endif
