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

/* The 128-bit fingerprint of (source, id) the window keys its entries by. */
typedef struct dedupe_key {
	uint64_t h1, h2;
} dedupe_key_t;

/* A window that holds at most max_entries events (the oldest leave first when it is full).
 * Returns NULL when out of memory. */
dedupe_t *dedupe_new(size_t max_entries);
void dedupe_destroy(dedupe_t **self_p);
/* Works out the fingerprint of (source, id), whose lengths the caller knows (a message
 * keeps them): the router computes it once per event, for dedupe_prefetch and
 * dedupe_check_key. Ownership: borrows source and id. */
void dedupe_key(const char *source, size_t source_len, const char *id, size_t id_len,
		dedupe_key_t *out);
/* True when the event of fingerprint *key was seen at or after since_ms; otherwise
 * remembers it as seen at now_ms and returns false. Ownership: borrows key. */
bool dedupe_check_key(dedupe_t *self, const dedupe_key_t *key, int64_t since_ms, int64_t now_ms);
/* dedupe_check_key of (source, id); false when either is NULL. Ownership: borrows source
 * and id. */
bool dedupe_check_add(dedupe_t *self, const char *source, const char *id, int64_t since_ms,
		      int64_t now_ms);
/* Asks the CPU to fetch the table's line for *key ahead of its dedupe_check_key: the
 * lookup is one cache miss in a table of megabytes, and a batch of emits can overlap it
 * with the event before. self may be NULL. Ownership: borrows key. */
void dedupe_prefetch(const dedupe_t *self, const dedupe_key_t *key);

#endif
