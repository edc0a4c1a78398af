/*
 * sdk/msg_int.h — the layout of kanal_msg_t, shared by the files that implement it and by
 * nothing else: msg.c (life cycle, attributes, serialisation), msg_parse.c (the envelope
 * parser), msg_check.c (attribute rules) and msg_data.c (the data value and its paths).
 */
#ifndef KANAL_MSG_INT_H
#define KANAL_MSG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <kanal/msg.h>

#include "json_scan.h"

/* The optional and required context attributes held as strings, in output order.
 * specversion is not stored: only "1.0" is ever accepted, so it is implied. */
enum {
	MSG_ID,
	MSG_SOURCE,
	MSG_TYPE,
	MSG_SUBJECT,
	MSG_TIME,
	MSG_DATACONTENTTYPE,
	MSG_DATASCHEMA,
	MSG_NCORE
};

/* Index of the pseudo attribute specversion in checks and error messages. */
#define MSG_SPECVERSION (-1)

/* How an extension value travels in JSON. */
typedef enum msg_ext_kind {
	MSG_EXT_STRING,
	MSG_EXT_INT,
	MSG_EXT_BOOL,
} msg_ext_kind_t;

/* One extension attribute. `text` is the string value, or the canonical text of an integer
 * or boolean ("10", "true"), so kanal_msg_attr can hand out a stable pointer. */
typedef struct msg_ext {
	char *name;
	char *text;
	size_t name_len;
	size_t text_len;
	msg_ext_kind_t kind;
} msg_ext_t;

/* A message keeps its strings — attribute values, extension names and values, the data
 * text — in its own allocation while they fit (inl[], MSG_INLINE bytes or more after a
 * kanal_msg_new), and its first extensions in ext_inline[]: an event built or parsed
 * takes one or two mallocs instead of a dozen, and so costs one or two frees on whichever
 * thread drops it. What does not fit is malloc'd; kanal__msg_str_free tells them apart.
 * Space given back inside inl[] is not reused (a value set again takes new space, and
 * malloc once inl[] is full). */
#define MSG_INLINE 128 /* at least; the pool's 512-byte block gives ~150 */
#define MSG_INLINE_EXT 4

/* Where strings go once inl[] is full: blocks chained to the message, from the same
 * per-thread pool (mpool.h), up to MSG_MORE_MAX bytes in all; beyond that, malloc. */
typedef struct msg_more {
	struct msg_more *next;
	size_t used, cap;
	char buf[];
} msg_more_t;

#define MSG_MORE_MAX (64u * 1024u)

typedef struct msg_field {
	struct msg_field *next;
	char *path;
	char *value;
} msg_field_t;

struct kanal_msg {
	char *core[MSG_NCORE];        /* NULL when absent */
	uint32_t core_len[MSG_NCORE]; /* strlen of each, kept with it (0 when absent) */
	msg_ext_t *ext;               /* sorted by name, no duplicates; ext_inline at first */
	size_t n_ext;
	size_t ext_cap;
	kanal_data_kind_t data_kind;
	/* JSON data: the value's JSON text as received or set, or NULL once the tree has been
	 * changed (the tree is then the data). Binary data: the base64 text (unquoted). */
	char *data_text;
	size_t data_len;
	/* The data tree, built on first access from data_text and published with an atomic
	 * compare-and-swap, because readers holding a const msg may race to build it. */
	json_t *data_tree;
	/* String fields read from data_text by path without building the tree (kanal_msg_data_str
	 * on a `where` or a plugin's read of one field), each decoded once and kept until the data
	 * changes; pushed with a compare-and-swap, as readers of a const msg may race. */
	struct msg_field *fields;
	msg_ext_t ext_inline[MSG_INLINE_EXT];
	msg_more_t *more; /* newest first */
	size_t more_bytes;
	size_t inl_used, inl_cap;
	char inl[];
};

/* A new, empty message (no attributes) with room for at least inline_cap bytes of strings
 * in its own allocation (a block of the per-thread pool, mpool.h; whatever the block has
 * beyond that is inline space too). NULL when out of memory. */
kanal_msg_t *kanal__msg_alloc(size_t inline_cap);

/* A copy of p[0..n) with a NUL, inside msg when it fits, else in a block chained to msg,
 * else malloc'd. NULL: no memory. */
char *kanal__msg_str_dup(kanal_msg_t *msg, const char *p, size_t n);

/* The part of kanal__msg_str_free for a string outside msg's own allocation. */
void kanal__msg_str_free_outside(kanal_msg_t *msg, char *p);

/* Frees a string of msg's (NULL is fine): a no-op for one inside msg or its chained
 * blocks; free() for any other (a malloc'd string the message was given). Inline for the
 * usual string, inside msg: kanal_msg_destroy, on the router, frees a dozen per event. */
static inline void kanal__msg_str_free(kanal_msg_t *msg, char *p)
{
	if (p && !(p >= msg->inl && p < msg->inl + msg->inl_cap))
		kanal__msg_str_free_outside(msg, p);
}

/* Names of the core attributes, indexed by MSG_ID…; "specversion" for MSG_SPECVERSION. */
const char *kanal__msg_core_name(int index);

/* Returns the index (MSG_ID…) of core attribute `name`, MSG_SPECVERSION for "specversion",
 * or MSG_NCORE when `name` is not a core string attribute. */
int kanal__msg_core_index(const char *name, size_t len);

/* Checks value[0..len) for core attribute `index` (or MSG_SPECVERSION). Returns NULL when
 * it is acceptable, else a static reason ("must not be empty"). UTF-8 is checked too. */
const char *kanal__msg_check_core(int index, const char *value, size_t len);

/* Whether the time value v[0..len) holds a CPR number (kanal_cpr_find): the same answer as
 * the scan, kept for the value this thread last found valid, which most events of a burst
 * share. */
bool kanal__msg_time_cpr(const char *v, size_t len);

/* Returns NULL when name[0..len) is a valid extension name (lower-case a-z and 0-9, not a
 * reserved member name), else a static reason. */
const char *kanal__msg_check_ext_name(const char *name, size_t len);

/* The individual checks, each returning NULL or a static reason. */
/* The CloudEvents String type: valid UTF-8 without control characters (U+0000-U+001F,
 * U+007F-U+009F) or noncharacters. Every text attribute, core or extension, passes it. */
const char *kanal__msg_check_string(const char *value, size_t len);
const char *kanal__msg_check_time(const char *value, size_t len);
/* Parses an RFC 3339 date-time of len bytes (see kanal_time_parse_rfc3339). Returns NULL
 * and stores the instant in *out_ms (when out_ms is not NULL), or a static reason that
 * completes "attribute 'time': …" (sdk/time.c). */
const char *kanal__time_parse(const char *v, size_t len, int64_t *out_ms);
const char *kanal__msg_check_media_type(const char *value, size_t len);
const char *kanal__msg_check_uri_ref(const char *value, size_t len);
const char *kanal__msg_check_uri(const char *value, size_t len);
const char *kanal__msg_check_base64(const char *value, size_t len);

/* Fills err (first error wins; may be NULL) with "attribute 'NAME': TEXT", or just TEXT when
 * name is NULL. The name is CPR-masked and made printable before it is quoted or stored in
 * err->attribute; the text is masked by kanal_error_set. */
void kanal__msg_error(kanal_error_t *err, const char *source, int line, int column,
		      const char *name, size_t name_len, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

/* Copies a printable, CPR-masked, truncated form of name[0..len) into out[size]. */
void kanal__msg_safe_name(char *out, size_t size, const char *name, size_t len);

/* Inserts or replaces extension `name` (takes ownership of text, even on failure).
 * Returns 0 or KANAL_ENOMEM. */
int kanal__msg_ext_put(kanal_msg_t *msg, const char *name, size_t name_len, char *text,
		       size_t text_len, msg_ext_kind_t kind);

/* Releases the data (text and tree) and sets the kind to NONE. */
void kanal__msg_data_release(kanal_msg_t *msg);

/* Returns a cheap estimate of the compact JSON size of the data member's value. */
size_t kanal__msg_data_size(const kanal_msg_t *msg);

/* Appends `"data":…` or `"data_base64":"…"` (with a leading comma) to b, when there is data.
 * Returns 0 or KANAL_ENOMEM. */
int kanal__msg_data_write(const kanal_msg_t *msg, kanal__jbuf_t *b);

/* Copies the data of src into dst (which has none). Returns 0 or KANAL_ENOMEM. */
int kanal__msg_data_copy(kanal_msg_t *dst, const kanal_msg_t *src);

/* Starts loading msg's header and inline strings into the cache (a hint; never faults):
 * for a loop over a batch of events another core wrote. */
static inline void kanal__msg_prefetch(const kanal_msg_t *msg)
{
	const char *p = (const char *)msg;

	if (!msg)
		return;
	for (size_t off = 0; off < sizeof *msg + 128; off += 64)
		__builtin_prefetch(p + off);
}

/* kanal_msg_context_cpr (kanal/msg.h) under its older internal name, which the broker
 * calls. */
bool kanal__msg_context_cpr(const kanal_msg_t *msg, char *attr, size_t size);

#endif
