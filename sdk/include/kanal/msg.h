/*
 * kanal/msg.h — the normalised message: a CloudEvents 1.0 event.
 *
 * A kanal_msg_t holds the context attributes (specversion, id, source, type, subject, time,
 * datacontenttype, dataschema, extensions) and the data. It is created, read, copied and
 * destroyed only through these functions; its layout is private.
 *
 * Data is kept lazily: an event parsed from JSON keeps its `data` member as the raw JSON
 * text it arrived with, and the tree is built only when something asks for a data field
 * (a routing `where` on data.*, an enrich, a plugin calling kanal_msg_data_*). Serialising
 * an event whose data was never touched copies the raw text, so a hop costs no re-parse.
 *
 * Thread safety: a message may be read from several threads at once (the broker shares one
 * message between fan-out destinations); it may be changed only by its single owner.
 *
 * Data paths are dotted: "guardian.name", "children.0.cpr" (a number indexes an array).
 * The empty path "" or NULL means the whole data value.
 */
#ifndef KANAL_MSG_H
#define KANAL_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <kanal/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Only what this header declares is exported from libkanal, which is built with
 * -fvisibility=hidden (docs/design/library.md). */
#pragma GCC visibility push(default)

typedef struct kanal_msg kanal_msg_t;

/* The default largest serialised event accepted by kanal_msg_parse: 64 KiB. */
#define KANAL_MSG_DEFAULT_MAX_BYTES (64 * 1024)

/* Creates an event with specversion "1.0" and the given type and source. When `id` is NULL
 * a random UUID (version 4) is generated (kanal_uuid). Returns NULL when type or source is
 * empty, memory runs out or no UUID can be made.
 * Ownership: borrows its arguments (copied); returns a new message the caller destroys
 * with kanal_msg_destroy. */
kanal_msg_t *kanal_msg_new(const char *type, const char *source, const char *id);

/* Destroys the message in *msg_p and sets *msg_p to NULL. Accepts NULL and *msg_p == NULL.
 * Ownership: takes *msg_p. */
void kanal_msg_destroy(kanal_msg_t **msg_p);

/* Returns an independent deep copy of msg, or NULL when out of memory.
 * Ownership: borrows msg; returns a new message the caller destroys with
 * kanal_msg_destroy. */
kanal_msg_t *kanal_msg_dup(const kanal_msg_t *msg);

/* Parses one event in the JSON structured format (a JSON object) of `len` bytes and fully
 * validates its attributes. On success stores a new message in *out and returns 0. On
 * failure returns KANAL_EPARSE (not JSON, or not an object), KANAL_EINVALID (an attribute is
 * missing or wrong; err->attribute names it) or KANAL_ETOOBIG (len > max_bytes; 0 means
 * KANAL_MSG_DEFAULT_MAX_BYTES), fills err (may be NULL), and leaves *out NULL.
 * Ownership: borrows json; puts a new message in *out the caller destroys with
 * kanal_msg_destroy. */
int kanal_msg_parse(const char *json, size_t len, size_t max_bytes, kanal_msg_t **out,
		    kanal_error_t *err);

/* A parsed batch: `count` messages. Destroy with kanal_batch_destroy. */
typedef struct kanal_batch {
	size_t count;
	kanal_msg_t **msgs;
} kanal_batch_t;

/* Parses a batch (a JSON array of events, the CloudEvents JSON batch format). The batch is
 * all or nothing: if any element is not a valid event the whole batch is rejected; err->text
 * starts with "event #N: " (N counted from 0) and err->attribute names the attribute at
 * fault. `max_bytes` limits the whole text (0: 64 times KANAL_MSG_DEFAULT_MAX_BYTES). An
 * empty array is a valid, empty batch.
 * Ownership: borrows json; puts a new batch in *out the caller destroys with
 * kanal_batch_destroy (a message taken out of msgs[] and set to NULL there is the
 * caller's). */
int kanal_batch_parse(const char *json, size_t len, size_t max_bytes, kanal_batch_t **out,
		      kanal_error_t *err);

/* Destroys a batch and every message still in it. Ownership: takes *batch_p. */
void kanal_batch_destroy(kanal_batch_t **batch_p);

/* Returns true when the text's first non-blank character (after a UTF-8 byte-order mark) is
 * '[' — a batch — else false (also for NULL). Only len bytes are looked at. (SDK 1.0
 * returned int 1/0; that symbol still works for plugins built against 1.0.)
 * Ownership: borrows json. */
bool kanal_json_is_batch(const char *json, size_t len) __asm__("kanal_json_is_batch_v1_1");

/* Serialises msg in the JSON structured format (compact, no trailing newline). Stores the
 * length in *len when len is not NULL. Returns NULL when out of memory.
 * Ownership: borrows msg; returns a NUL-terminated string the caller frees with kanal_free. */
char *kanal_msg_to_json(const kanal_msg_t *msg, size_t *len);

/* Frees memory that a kanal function returned (strings from kanal_msg_to_json,
 * kanal_msg_data_json, …). Accepts NULL. Ownership: takes p. */
void kanal_free(void *p);

/* Context attributes. Each returns a string borrowed from msg, valid until msg is changed
 * or destroyed; optional attributes return NULL when absent.
 * Ownership: borrows msg; the string is borrowed from msg. */
const char *kanal_msg_specversion(const kanal_msg_t *msg);
const char *kanal_msg_id(const kanal_msg_t *msg);
const char *kanal_msg_source(const kanal_msg_t *msg);
const char *kanal_msg_type(const kanal_msg_t *msg);
const char *kanal_msg_subject(const kanal_msg_t *msg);
const char *kanal_msg_time(const kanal_msg_t *msg);
const char *kanal_msg_datacontenttype(const kanal_msg_t *msg);
const char *kanal_msg_dataschema(const kanal_msg_t *msg);

/* Returns any attribute by name — a core one or an extension — as a string, or NULL when
 * absent. Integer and boolean extensions are returned in their canonical text ("10",
 * "true"). Ownership: borrows msg and name; the string is borrowed from msg, valid until
 * msg is changed or destroyed. */
const char *kanal_msg_attr(const kanal_msg_t *msg, const char *name);

/* Sets a string attribute (core or extension) after validating it as the specification
 * requires for that attribute; `value` NULL removes an optional attribute. Returns 0,
 * KANAL_EINVALID (bad name or value; err says why; err may be NULL) or KANAL_ENOMEM.
 * Ownership: borrows name and value (copied). */
int kanal_msg_set_attr(kanal_msg_t *msg, const char *name, const char *value, kanal_error_t *err);

/* Sets an integer (32-bit) or boolean extension attribute. Same returns as set_attr.
 * Ownership: borrows name (copied). */
int kanal_msg_set_ext_int(kanal_msg_t *msg, const char *name, int32_t value, kanal_error_t *err);
int kanal_msg_set_ext_bool(kanal_msg_t *msg, const char *name, bool value, kanal_error_t *err);

/* Calls fn(name, value, arg) for every extension attribute in name order, values as in
 * kanal_msg_attr. Stops early and returns fn's value when fn returns non-zero; else 0.
 * Ownership: borrows msg; name and value are borrowed by fn for the call only; arg is
 * passed through. */
int kanal_msg_foreach_ext(const kanal_msg_t *msg,
			  int (*fn)(const char *name, const char *value, void *arg), void *arg);

/* Returns true when a context attribute of msg — id, source, type, subject, time,
 * datacontenttype, dataschema, or any extension's name or value — holds a CPR number (as
 * kanal_cpr_find finds it). Context attributes are logged and read by anyone on the way,
 * so kanald refuses an event emitted with one, and the http ingress answers 400: the person
 * belongs in data, or a pseudonym in subject. When attr is not NULL, the attribute's name
 * is copied into attr[size] with any CPR number in the name masked. NULL msg gives false.
 * A `traceparent` extension in the W3C form (lower-case hex ids) is not read: its random
 * hex holds ten digits in a row in about one trace id of 500, and names no one.
 * Ownership: borrows msg; writes attr. */
bool kanal_msg_context_cpr(const kanal_msg_t *msg, char *attr, size_t size);

/* Returns true when `source` matches the source pattern `pattern` — the rule by which a
 * sender owns the sources it may use (kanald.yaml's `sources:`, the http ingress's tokens
 * file): '*' matches any run of characters (slashes too), everything else is literal, and
 * the whole source must match (the pattern /vendors/acme/ followed by '*' owns
 * /vendors/acme/x/1, not /vendors/acmex). NULL pattern or source gives false.
 * Ownership: borrows both. */
bool kanal_source_matches(const char *pattern, const char *source);

/* Data. */

/* How the event carries its data. */
typedef enum kanal_data_kind {
	KANAL_DATA_NONE = 0, /* no data */
	KANAL_DATA_JSON,     /* `data`: a JSON value (object, array, string, number, …) */
	KANAL_DATA_BINARY,   /* `data_base64`: bytes */
} kanal_data_kind_t;

/* How msg carries its data (KANAL_DATA_NONE for a NULL msg). Ownership: borrows msg. */
kanal_data_kind_t kanal_msg_data_kind(const kanal_msg_t *msg);

/* Replaces the data with the JSON value in `json` (len bytes; any JSON value, checked for
 * well-formedness). Returns 0, KANAL_EPARSE or KANAL_ENOMEM.
 * Ownership: borrows json (copied). */
int kanal_msg_set_data_json(kanal_msg_t *msg, const char *json, size_t len);

/* Replaces the data with bytes[0..len), carried as data_base64. Returns 0, KANAL_EINVAL
 * (NULL msg, or NULL bytes with len > 0) or KANAL_ENOMEM. Ownership: borrows bytes
 * (copied). */
int kanal_msg_set_data_binary(kanal_msg_t *msg, const void *bytes, size_t len);

/* Removes the data. Accepts NULL. Ownership: borrows msg. */
void kanal_msg_clear_data(kanal_msg_t *msg);

/* Returns the JSON text of the data value at `path` (NULL or "" for the whole data), or NULL
 * when there is no such value. Ownership: borrows msg and path; returns a new string the
 * caller frees with kanal_free. */
char *kanal_msg_data_json(const kanal_msg_t *msg, const char *path);

/* Returns the bytes of a binary (data_base64) event in a new buffer and its length in *len,
 * or NULL when the data is not binary (or memory runs out). Ownership: borrows msg;
 * returns a new buffer the caller frees with kanal_free. */
void *kanal_msg_data_binary(const kanal_msg_t *msg, size_t *len);

/* Typed reads of a data field. Each returns 0 and stores the value, KANAL_ENOTFOUND when
 * the path does not exist (or the data is not JSON), or KANAL_EINVAL when the value there
 * has another JSON type. A string is borrowed from msg, valid until msg is changed or
 * destroyed. kanal_msg_data_double accepts integers too.
 * Ownership: borrows msg and path; *out is a plain value, or for kanal_msg_data_str a
 * string borrowed from msg. */
int kanal_msg_data_str(const kanal_msg_t *msg, const char *path, const char **out);
int kanal_msg_data_int(const kanal_msg_t *msg, const char *path, int64_t *out);
int kanal_msg_data_double(const kanal_msg_t *msg, const char *path, double *out);
int kanal_msg_data_bool(const kanal_msg_t *msg, const char *path, bool *out);

/* Typed writes of a data field. Intermediate objects are created as needed (data becomes an
 * object when it was absent). Returns 0, KANAL_EINVAL (a path step crosses a non-object, or
 * the data is binary), KANAL_EPARSE (set_json with malformed text) or KANAL_ENOMEM.
 * Ownership: borrows path and value (copied). */
int kanal_msg_data_set_str(kanal_msg_t *msg, const char *path, const char *value);
int kanal_msg_data_set_int(kanal_msg_t *msg, const char *path, int64_t value);
int kanal_msg_data_set_double(kanal_msg_t *msg, const char *path, double value);
int kanal_msg_data_set_bool(kanal_msg_t *msg, const char *path, bool value);
int kanal_msg_data_set_json(kanal_msg_t *msg, const char *path, const char *json, size_t len);

/* Removes the data field at `path`. Returns 0 or KANAL_ENOTFOUND. Ownership: borrows msg
 * and path. */
int kanal_msg_data_remove(kanal_msg_t *msg, const char *path);

/* Returns the serialised size estimate in bytes (attributes plus data text), used by the
 * broker for queue byte limits. Cheap: never serialises. Ownership: borrows msg. */
size_t kanal_msg_size(const kanal_msg_t *msg);

/* Writes a new random UUID v4 in canonical text into buf (at least 37 bytes), from
 * getrandom(2). Returns 0, or KANAL_EIO when the kernel gives no random bytes (said on
 * stderr; buf is then ""): never an id from a weaker generator. (Up to SDK 1.0 this
 * returned void; the symbol is unchanged, and a caller ignoring the result still links.)
 * Ownership: none (writes into the caller's buf). */
int kanal_uuid(char buf[37]);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
