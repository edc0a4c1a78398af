/*
 * tests/util/golden.h — comparing a whole JSON document with an expected-output file,
 * tests/data/golden/<name>.json, the way the routing errors are compared with their
 * *.expected files. Values that differ from run to run (times, ids, ports) are masked by
 * key before the comparison, in the document and in the file alike; a mismatch prints both
 * documents as a line diff (sorted keys, two-space indent) so that the difference reads at
 * a glance.
 *
 * KANAL_GOLDEN_UPDATE=1 in the environment writes the (masked) document to the file
 * instead of comparing: for creating a golden file, to be reviewed before committing.
 */
#ifndef KANAL_TEST_GOLDEN_H
#define KANAL_TEST_GOLDEN_H

#include <stdbool.h>

#include <jansson.h>

/* The value every masked member gets. */
#define GOLDEN_MASK "<volatile>"

/* True when doc, with the value of every member whose key is in volatile_keys (a
 * NULL-terminated list, or NULL; at any depth) replaced by GOLDEN_MASK, equals the
 * document in tests/data/golden/<name>.json masked the same way. False, with the file's
 * name and a diff on stderr, when they differ, the file is missing or is not JSON, or doc
 * is NULL. Ownership: borrows doc. */
bool golden_match(const json_t *doc, const char *name, const char *const *volatile_keys);

/* golden_match on a JSON text (false, printing the text, when it is not JSON).
 * Ownership: borrows text. */
bool golden_match_text(const char *text, const char *name, const char *const *volatile_keys);

#endif
