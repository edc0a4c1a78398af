/*
 * tests/util/shipped.h — the shipped routing tables (the files in routes/) in a test: one route's
 * text cut out of a shipped file, so that a test runs kanald with exactly the route users
 * get, without every instance the whole file names.
 */
#ifndef KANAL_TEST_SHIPPED_H
#define KANAL_TEST_SHIPPED_H

/* The text of the route `name` in the shipped file `file` (relative to the source tree,
 * "routes/municipal.yaml"): from its "  - name: NAME" line to the next route, the next
 * comment at the routes' indentation, or the file's next top-level key. Returns a malloc'd
 * string, or NULL (and prints why) when there is no such route. Ownership: the caller
 * frees the result. */
char *shipped_route(const char *file, const char *name);

/* shipped_route with every "to: FROM" / "fallback: FROM" naming instance `from` renamed
 * `to` (a test's own instance). Ownership: as shipped_route. */
char *shipped_route_as(const char *file, const char *name, const char *from, const char *to);

#endif
