/*
 * broker/dedupe.h — duplicate suppression on (source, id) without the journal (`journal:
 * {mode: memory}`): a window in memory, lost on restart. With the durable journal the
 * journal's own window (journal_seen) decides.
 */
#ifndef KANAL_DEDUPE_H
#define KANAL_DEDUPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dedupe dedupe_t;

/* A window that holds at most max_entries events (the oldest leave first when it is full).
 * Returns NULL when out of memory. */
dedupe_t *dedupe_new(size_t max_entries);
void dedupe_destroy(dedupe_t **self_p);
/* True when (source, id) was seen at or after since_ms; otherwise remembers it as seen at
 * now_ms and returns false. Ownership: borrows source and id. */
bool dedupe_check_add(dedupe_t *self, const char *source, const char *id, int64_t since_ms,
		      int64_t now_ms);
/* Asks the CPU to fetch the table's line for (source, id) ahead of its dedupe_check_add:
 * the lookup is one cache miss in a table of megabytes, and a batch of emits can overlap
 * it with the event before. self may be NULL. Ownership: borrows source and id. */
void dedupe_prefetch(const dedupe_t *self, const char *source, const char *id);

#endif
