/*
 * sdk/msg_data.c — the data of a kanal_msg_t: the lazily built JSON tree, dotted paths into
 * it, typed reads and writes, binary (data_base64) data, and data's share of serialisation.
 *
 * A parsed event keeps its data as the JSON text it arrived with. The first reader that
 * needs a field builds the jansson tree; since readers may share one const message across
 * threads, each builds its own tree and publishes it with a compare-and-swap, and a loser
 * drops its copy and uses the winner's. Nothing else in a message changes under readers.
 * The first write (by the message's single owner) drops the text, and from then on the tree
 * is the data and is serialised with jansson.
 *
 * Paths are dotted: "guardian.name", "children.0.cpr". A step that is a decimal number
 * indexes an array; on an object it is an ordinary key. Keys that contain '.' cannot be
 * reached by a path (use kanal_msg_data_json on the parent instead).
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <kanal/error.h>
#include <kanal/msg.h>

#include "json_scan.h"
#include "mpool.h"
#include "msg_int.h"

/* Helgrind cannot see that an acquire load pairs with a release CAS; these annotations
 * (no-ops outside valgrind, and absent when valgrind's headers are) tell it. */
#if defined(__has_include)
#if __has_include(<valgrind/helgrind.h>)
#include <valgrind/helgrind.h>
#endif
#endif
#ifndef ANNOTATE_HAPPENS_BEFORE
#define ANNOTATE_HAPPENS_BEFORE(obj) ((void)0)
#define ANNOTATE_HAPPENS_AFTER(obj) ((void)0)
#endif

#define LOAD_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)
#define DUMP_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17))

/* ---- the lazy tree ------------------------------------------------------------------- */

static pthread_mutex_t s_seed_lock = PTHREAD_MUTEX_INITIALIZER;
static bool s_seeded; /* under s_seed_lock */

/* jansson seeds its hash function when the first object is made; with readers racing to
 * build trees, that must happen once and be seen by all of them. A mutex (rather than
 * pthread_once) also makes the ordering visible to thread checkers; it is taken only on
 * the way to a json_loadb, which costs far more. */
static void s_jansson_ready(void)
{
	pthread_mutex_lock(&s_seed_lock);
	if (!s_seeded) {
		json_object_seed(0);
		s_seeded = true;
	}
	pthread_mutex_unlock(&s_seed_lock);
}

/*
 * Returns the data tree, building it from the text on first use; NULL with *rc set when
 * there is no JSON data (KANAL_ENOTFOUND) or it cannot be built (KANAL_ENOMEM). Safe with
 * concurrent readers: only the data_tree pointer is written, atomically.
 */
static json_t *s_tree(const kanal_msg_t *msg, int *rc)
{
	json_t **slot = (json_t **)&msg->data_tree;
	json_t *tree = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	json_t *expected = NULL;

	if (tree) {
		ANNOTATE_HAPPENS_AFTER(slot);
		return tree;
	}
	if (msg->data_kind != KANAL_DATA_JSON || !msg->data_text) {
		*rc = KANAL_ENOTFOUND;
		return NULL;
	}
	s_jansson_ready();
	/* The scanner accepted this text, so only a failed allocation stops jansson here. */
	tree = json_loadb(msg->data_text, msg->data_len, LOAD_FLAGS, NULL);
	if (!tree) {
		*rc = KANAL_ENOMEM;
		return NULL;
	}
	ANNOTATE_HAPPENS_BEFORE(slot);
	if (!__atomic_compare_exchange_n(slot, &expected, tree, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		/* Another reader published first: use its tree, drop ours. */
		ANNOTATE_HAPPENS_AFTER(slot);
		json_decref(tree);
		tree = expected;
	}
	return tree;
}

/* Forgets the string fields read from the data text (the data is changing). */
static void s_fields_free(kanal_msg_t *msg)
{
	msg_field_t *f = __atomic_exchange_n(&msg->fields, NULL, __ATOMIC_ACQ_REL);

	while (f) {
		msg_field_t *next = f->next;
		kanal__mpool_free(f); /* path and value live in the same block */
		f = next;
	}
}

void kanal__msg_data_release(kanal_msg_t *msg)
{
	/* Only the message's owner changes or drops its data, with no reader left (readers
	 * share a const message only until it is handed on), so loads tell whether there is a
	 * tree or a read field to drop: the usual emitted event, which has neither, costs no
	 * atomic exchange where it gets its data or where it is destroyed. */
	json_t *tree = __atomic_load_n(&msg->data_tree, __ATOMIC_ACQUIRE);

	if (tree) {
		__atomic_store_n(&msg->data_tree, NULL, __ATOMIC_RELAXED);
		json_decref(tree);
	}
	if (__atomic_load_n(&msg->fields, __ATOMIC_ACQUIRE))
		s_fields_free(msg);
	kanal__msg_str_free(msg, msg->data_text);
	msg->data_text = NULL;
	msg->data_len = 0;
	msg->data_kind = KANAL_DATA_NONE;
}

/* Makes `tree` (stolen) the whole data, replacing what was there. */
static void s_set_tree(kanal_msg_t *msg, json_t *tree)
{
	kanal__msg_data_release(msg);
	if (json_is_null(tree)) {
		/* As in the parser: a null data value is no data. */
		json_decref(tree);
		return;
	}
	msg->data_kind = KANAL_DATA_JSON;
	__atomic_store_n(&msg->data_tree, tree, __ATOMIC_RELEASE);
}

/* The tree has been changed in place: it is now the only form of the data. */
static void s_tree_changed(kanal_msg_t *msg)
{
	s_fields_free(msg);
	kanal__msg_str_free(msg, msg->data_text);
	msg->data_text = NULL;
	msg->data_len = 0;
}

/* ---- paths ------------------------------------------------------------------------- */

/* Reads a path step as an array index: decimal digits without a leading zero. */
static bool s_index(const char *seg, size_t n, size_t *out)
{
	size_t i, v = 0;

	if (n == 0 || n > 18 || (n > 1 && seg[0] == '0'))
		return false;
	for (i = 0; i < n; i++) {
		if (seg[i] < '0' || seg[i] > '9')
			return false;
		v = v * 10 + (size_t)(seg[i] - '0');
	}
	*out = v;
	return true;
}

/* Returns the child of node named by seg[0..n), or NULL. */
static json_t *s_child(json_t *node, const char *seg, size_t n)
{
	size_t index;

	if (json_is_object(node))
		return json_object_getn(node, seg, n);
	if (json_is_array(node) && s_index(seg, n, &index))
		return json_array_get(node, index);
	return NULL;
}

static bool s_path_empty(const char *path)
{
	return !path || !*path;
}

/* Follows path from root; NULL when a step is missing. */
static json_t *s_lookup(json_t *root, const char *path)
{
	json_t *node = root;
	const char *p = path;

	if (s_path_empty(path))
		return root;
	for (;;) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		node = s_child(node, p, n);
		if (!node || !dot)
			return node;
		p = dot + 1;
	}
}

/* Finds the value at path for a reader. */
static int s_find(const kanal_msg_t *msg, const char *path, json_t **out)
{
	int rc = 0;
	json_t *root;

	if (!msg)
		return KANAL_EINVAL;
	root = s_tree(msg, &rc);
	if (!root)
		return rc;
	*out = s_lookup(root, path);
	return *out ? 0 : KANAL_ENOTFOUND;
}

static size_t s_path_steps(const char *path)
{
	size_t n = 1;

	for (; *path; path++)
		n += *path == '.';
	return n;
}

/*
 * Puts `value` at the last step of path under root, creating missing objects on the way.
 * When `apply` is false nothing is changed: the call only says whether the write would
 * succeed, so a write that fails half way cannot leave a half-changed tree behind.
 * Returns 0, KANAL_EINVAL (a step crosses a scalar, or an array index past the end) or
 * KANAL_ENOMEM. Steals value only when apply is true (also on failure).
 */
static int s_put(json_t *root, const char *path, json_t *value, bool apply)
{
	json_t *node = root;
	const char *p = path;
	bool creating = false;
	size_t index;

	for (;;) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		json_t *child = creating ? NULL : s_child(node, p, n);

		if (!dot) {
			bool fits = creating || json_is_object(node) ||
				    (json_is_array(node) && s_index(p, n, &index) &&
				     index <= json_array_size(node));
			if (!apply)
				return fits ? 0 : KANAL_EINVAL;
			if (json_is_object(node))
				return json_object_setn_new(node, p, n, value) ? KANAL_ENOMEM : 0;
			if (s_index(p, n, &index) && index < json_array_size(node))
				return json_array_set_new(node, index, value) ? KANAL_ENOMEM : 0;
			return json_array_append_new(node, value) ? KANAL_ENOMEM : 0;
		}
		if (!child && !creating) {
			if (json_is_array(node) &&
			    !(s_index(p, n, &index) && index == json_array_size(node)))
				return KANAL_EINVAL;
			if (!json_is_object(node) && !json_is_array(node))
				return KANAL_EINVAL;
		} else if (child && !json_is_object(child) && !json_is_array(child)) {
			return KANAL_EINVAL;
		}
		if (!child && apply) {
			int failed;
			child = json_object();
			if (!child) {
				json_decref(value);
				return KANAL_ENOMEM;
			}
			failed = json_is_object(node) ? json_object_setn_new(node, p, n, child)
						      : json_array_append_new(node, child);
			if (failed) {
				json_decref(value);
				return KANAL_ENOMEM;
			}
		}
		if (!child)
			creating = true;
		else
			node = child;
		p = dot + 1;
	}
}

/*
 * Stores value (stolen, may be NULL after a failed allocation) at path. `depth` is the
 * nesting depth of the value, so the result stays within what the parser accepts.
 */
static int s_write(kanal_msg_t *msg, const char *path, json_t *value, int depth)
{
	json_t *root;
	bool created = false;
	int rc = 0;

	if (!msg) {
		json_decref(value);
		return KANAL_EINVAL;
	}
	if (!value)
		return KANAL_ENOMEM;
	if (msg->data_kind == KANAL_DATA_BINARY) {
		json_decref(value);
		return KANAL_EINVAL;
	}
	if (s_path_empty(path)) {
		if (depth > KANAL__JSON_MAX_DEPTH) {
			json_decref(value);
			return KANAL_EINVAL;
		}
		s_set_tree(msg, value);
		return 0;
	}
	if (!kanal__utf8_valid(path, strlen(path)) ||
	    s_path_steps(path) + (size_t)depth > KANAL__JSON_MAX_DEPTH) {
		json_decref(value);
		return KANAL_EINVAL;
	}
	if (msg->data_kind == KANAL_DATA_NONE) {
		root = json_object();
		created = true;
	} else {
		root = s_tree(msg, &rc);
	}
	if (!root) {
		json_decref(value);
		return KANAL_ENOMEM;
	}
	rc = s_put(root, path, value, false);
	if (rc) {
		json_decref(value);
		goto done;
	}
	rc = s_put(root, path, value, true);
done:
	if (created) {
		if (rc == 0)
			s_set_tree(msg, root);
		else
			json_decref(root);
	} else if (rc == 0) {
		s_tree_changed(msg);
	}
	return rc;
}

/* ---- public: whole data -------------------------------------------------------------- */

kanal_data_kind_t kanal_msg_data_kind(const kanal_msg_t *msg)
{
	return msg ? msg->data_kind : KANAL_DATA_NONE;
}

int kanal_msg_set_data_json(kanal_msg_t *msg, const char *json, size_t len)
{
	kanal__json_scan_t scan;
	size_t start, end;
	char *text;

	if (!msg)
		return KANAL_EINVAL;
	if (!json || kanal__json_validate(&scan, json, len, &start, &end, NULL))
		return KANAL_EPARSE;
	if (end - start == 4 && memcmp(json + start, "null", 4) == 0) {
		kanal__msg_data_release(msg);
		return 0;
	}
	text = kanal__msg_str_dup(msg, json + start, end - start);
	if (!text)
		return KANAL_ENOMEM;
	kanal__msg_data_release(msg);
	msg->data_text = text;
	msg->data_len = end - start;
	msg->data_kind = KANAL_DATA_JSON;
	return 0;
}

/* OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock do base64 (RFC 4648, standard alphabet). They
 * take an int length, so long data goes through them in chunks of whole groups: 3 bytes
 * make 4 characters, and a chunk of whole groups encodes the same alone as in the whole. */
#define B64_BYTES_CHUNK ((size_t)3 << 20)
#define B64_TEXT_CHUNK ((size_t)4 << 20)

int kanal_msg_set_data_binary(kanal_msg_t *msg, const void *bytes, size_t len)
{
	const unsigned char *in = bytes;
	size_t i, n, o = 0;
	char *text;

	if (!msg || (!bytes && len))
		return KANAL_EINVAL;
	if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
		return KANAL_ENOMEM;
	text = malloc((len + 2) / 3 * 4 + 1);
	if (!text)
		return KANAL_ENOMEM;
	for (i = 0; i < len; i += n) {
		n = len - i < B64_BYTES_CHUNK ? len - i : B64_BYTES_CHUNK;
		o += (size_t)EVP_EncodeBlock((unsigned char *)text + o, in + i, (int)n);
	}
	text[o] = '\0';
	kanal__msg_data_release(msg);
	msg->data_text = text;
	msg->data_len = o;
	msg->data_kind = KANAL_DATA_BINARY;
	return 0;
}

void kanal_msg_clear_data(kanal_msg_t *msg)
{
	if (msg)
		kanal__msg_data_release(msg);
}

char *kanal_msg_data_json(const kanal_msg_t *msg, const char *path)
{
	json_t *node = NULL;

	if (!msg || msg->data_kind != KANAL_DATA_JSON)
		return NULL;
	if (s_path_empty(path) && msg->data_text)
		return strndup(msg->data_text, msg->data_len);
	if (s_find(msg, path, &node))
		return NULL;
	return json_dumps(node, DUMP_FLAGS);
}

void *kanal_msg_data_binary(const kanal_msg_t *msg, size_t *len)
{
	const unsigned char *text;
	unsigned char *out, tail[4];
	size_t body, whole, rest, i, n, o = 0;
	int k;

	if (!msg || msg->data_kind != KANAL_DATA_BINARY)
		return NULL;
	/* The text passed kanal__msg_check_base64 (or was made by us): the alphabet, padding
	 * optional. EVP_DecodeBlock wants whole groups of 4 and counts padding as zero bytes,
	 * so the whole groups go first without the padding, and a last short group is padded
	 * here and only its real bytes (one fewer than its characters) are kept. */
	text = (const unsigned char *)msg->data_text;
	for (body = msg->data_len; body > 0 && text[body - 1] == '='; body--)
		;
	whole = body / 4 * 4;
	rest = body - whole;
	if (rest == 1)
		return NULL;
	out = malloc(whole / 4 * 3 + 3);
	if (!out)
		return NULL;
	for (i = 0; i < whole; i += n) {
		n = whole - i < B64_TEXT_CHUNK ? whole - i : B64_TEXT_CHUNK;
		if ((k = EVP_DecodeBlock(out + o, text + i, (int)n)) < 0)
			goto fail;
		o += (size_t)k;
	}
	if (rest) {
		memcpy(tail, text + whole, rest);
		memset(tail + rest, '=', sizeof tail - rest);
		if (EVP_DecodeBlock(out + o, tail, (int)sizeof tail) < 0)
			goto fail;
		o += rest - 1;
	}
	if (len)
		*len = o;
	return out;
fail:
	free(out);
	return NULL;
}

/* ---- public: typed reads ------------------------------------------------------------- */

/* Reading one field of data that is still text: the scanner finds it in place, so a
 * `where` on data.kind or a plugin reading one field does not build (and later free) a
 * tree of the whole data. Returns 0 with the value's span and kind, KANAL_ENOTFOUND, or
 * 1 when the tree is (or must be) the way: it exists already, or the text cannot be used. */
static int s_scan(const kanal_msg_t *msg, const char *path, size_t *start, size_t *end,
		  kanal__json_kind_t *kind)
{
	int rc;

	if (!msg || msg->data_kind != KANAL_DATA_JSON || !msg->data_text ||
	    __atomic_load_n(&msg->data_tree, __ATOMIC_ACQUIRE))
		return 1;
	rc = kanal__json_find(msg->data_text, msg->data_len, path, start, end, kind);
	if (rc == KANAL_ENOTFOUND)
		return rc;
	return rc ? 1 : 0;
}

/* The string at path read from the data text, decoded once and kept with the message.
 * Returns 0, KANAL_ENOTFOUND, KANAL_EINVAL (not a string), or 1 (use the tree). */

/* A field read from the data text: the record, its path and its decoded value in one block
 * of the reading thread's pool (a `where` on data reads one per event on the router). The
 * string at data_text[start..end) is a valid JSON string (the data was checked when set):
 * without a backslash its value is its body as it stands. NULL when out of memory. */
static msg_field_t *s_field_new(const kanal_msg_t *msg, const char *key, size_t start, size_t end)
{
	const char *body = msg->data_text + start + 1;
	size_t body_len = end - start - 2, key_len = strlen(key), len = 0;
	char *decoded = NULL;
	const char *value = body;
	msg_field_t *f;

	if (memchr(body, '\\', body_len)) {
		kanal__json_scan_t s;
		kanal__json_init(&s, msg->data_text + start, end - start);
		if (kanal__json_string(&s, &decoded, &len))
			return NULL;
		value = decoded;
		body_len = len;
	}
	f = kanal__mpool_alloc(sizeof *f + key_len + 1 + body_len + 1, NULL);
	if (f) {
		f->next = NULL;
		f->path = (char *)(f + 1);
		memcpy(f->path, key, key_len + 1);
		f->value = f->path + key_len + 1;
		memcpy(f->value, value, body_len);
		f->value[body_len] = '\0';
	}
	free(decoded);
	return f;
}

static int s_scan_str(const kanal_msg_t *msg, const char *path, const char **out)
{
	kanal_msg_t *m = (kanal_msg_t *)msg; /* only the atomic field list is written */
	const char *key = path ? path : "";
	kanal__json_kind_t kind;
	size_t start, end;
	msg_field_t *f, *head;
	int rc;

	if (!msg || msg->data_kind != KANAL_DATA_JSON || !msg->data_text)
		return 1;
	head = __atomic_load_n(&m->fields, __ATOMIC_ACQUIRE);
	for (f = head; f; f = f->next) {
		if (!strcmp(f->path, key)) {
			if (out)
				*out = f->value;
			return 0;
		}
	}
	rc = s_scan(msg, path, &start, &end, &kind);
	if (rc)
		return rc;
	if (kind != KANAL__JSON_STRING)
		return KANAL_EINVAL;
	f = s_field_new(msg, key, start, end);
	if (!f)
		return 1;
	/* Publish it, unless a racing reader published the same field first: then every
	 * reader gets that one copy (the pointer stays valid as long as the message). */
	for (;;) {
		msg_field_t *g;
		f->next = head;
		if (__atomic_compare_exchange_n(&m->fields, &head, f, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			break;
		for (g = head; g && strcmp(g->path, key); g = g->next)
			;
		if (g) {
			kanal__mpool_free(f);
			f = g;
			break;
		}
	}
	if (out)
		*out = f->value;
	return 0;
}

int kanal_msg_data_str(const kanal_msg_t *msg, const char *path, const char **out)
{
	json_t *node = NULL;
	int rc = s_scan_str(msg, path, out);

	if (rc <= 0)
		return rc;
	rc = s_find(msg, path, &node);

	if (rc)
		return rc;
	if (!json_is_string(node))
		return KANAL_EINVAL;
	if (out)
		*out = json_string_value(node);
	return 0;
}

int kanal_msg_data_int(const kanal_msg_t *msg, const char *path, int64_t *out)
{
	json_t *node = NULL;
	kanal__json_kind_t kind;
	size_t start, end;
	int rc = s_scan(msg, path, &start, &end, &kind);

	if (rc == KANAL_ENOTFOUND)
		return rc;
	if (rc == 0 && kind != KANAL__JSON_INTEGER)
		return KANAL_EINVAL;
	if (rc == 0 && end - start < 32) {
		/* The scanner checked that it fits in 64 bits, as jansson does. */
		char buf[32];
		memcpy(buf, msg->data_text + start, end - start);
		buf[end - start] = '\0';
		if (out)
			*out = strtoll(buf, NULL, 10);
		return 0;
	}
	rc = s_find(msg, path, &node);

	if (rc)
		return rc;
	if (!json_is_integer(node))
		return KANAL_EINVAL;
	if (out)
		*out = (int64_t)json_integer_value(node);
	return 0;
}

int kanal_msg_data_double(const kanal_msg_t *msg, const char *path, double *out)
{
	json_t *node = NULL;
	int rc = s_find(msg, path, &node);

	if (rc)
		return rc;
	if (!json_is_number(node))
		return KANAL_EINVAL;
	if (out)
		*out = json_number_value(node);
	return 0;
}

int kanal_msg_data_bool(const kanal_msg_t *msg, const char *path, bool *out)
{
	json_t *node = NULL;
	kanal__json_kind_t kind;
	size_t start, end;
	int rc = s_scan(msg, path, &start, &end, &kind);

	if (rc == KANAL_ENOTFOUND)
		return rc;
	if (rc == 0) {
		if (kind != KANAL__JSON_TRUE && kind != KANAL__JSON_FALSE)
			return KANAL_EINVAL;
		if (out)
			*out = kind == KANAL__JSON_TRUE;
		return 0;
	}
	rc = s_find(msg, path, &node);

	if (rc)
		return rc;
	if (!json_is_boolean(node))
		return KANAL_EINVAL;
	if (out)
		*out = json_is_true(node);
	return 0;
}

/* ---- public: typed writes ------------------------------------------------------------ */

int kanal_msg_data_set_str(kanal_msg_t *msg, const char *path, const char *value)
{
	if (!value || !kanal__utf8_valid(value, strlen(value)))
		return KANAL_EINVAL;
	return s_write(msg, path, json_string(value), 0);
}

int kanal_msg_data_set_int(kanal_msg_t *msg, const char *path, int64_t value)
{
	return s_write(msg, path, json_integer((json_int_t)value), 0);
}

int kanal_msg_data_set_double(kanal_msg_t *msg, const char *path, double value)
{
	if (!isfinite(value))
		return KANAL_EINVAL;
	return s_write(msg, path, json_real(value), 0);
}

int kanal_msg_data_set_bool(kanal_msg_t *msg, const char *path, bool value)
{
	return s_write(msg, path, json_boolean(value), 0);
}

int kanal_msg_data_set_json(kanal_msg_t *msg, const char *path, const char *json, size_t len)
{
	kanal__json_scan_t scan;
	size_t start, end;
	int depth;

	if (!msg)
		return KANAL_EINVAL;
	if (s_path_empty(path) && msg->data_kind != KANAL_DATA_BINARY)
		return kanal_msg_set_data_json(msg, json, len); /* keeps the text as given */
	if (!json || kanal__json_validate(&scan, json, len, &start, &end, &depth))
		return KANAL_EPARSE;
	return s_write(msg, path, json_loadb(json + start, end - start, LOAD_FLAGS, NULL), depth);
}

int kanal_msg_data_remove(kanal_msg_t *msg, const char *path)
{
	const char *last;
	json_t *root, *parent;
	char *parent_path;
	size_t index;
	int rc = 0;

	if (!msg || msg->data_kind != KANAL_DATA_JSON)
		return KANAL_ENOTFOUND;
	if (s_path_empty(path)) {
		kanal__msg_data_release(msg);
		return 0;
	}
	root = s_tree(msg, &rc);
	if (!root)
		return rc;
	last = strrchr(path, '.');
	if (last) {
		parent_path = strndup(path, (size_t)(last - path));
		if (!parent_path)
			return KANAL_ENOMEM;
		parent = s_lookup(root, parent_path);
		free(parent_path);
		last++;
	} else {
		parent = root;
		last = path;
	}
	if (!parent || !s_child(parent, last, strlen(last)))
		return KANAL_ENOTFOUND;
	if (json_is_object(parent))
		rc = json_object_deln(parent, last, strlen(last));
	else if (s_index(last, strlen(last), &index))
		rc = json_array_remove(parent, index);
	if (rc)
		return KANAL_ENOTFOUND;
	s_tree_changed(msg);
	return 0;
}

/* ---- serialisation support ----------------------------------------------------------- */

/* A cheap estimate of a tree's compact JSON size: a walk, no output. */
static size_t s_tree_size(json_t *node, int depth)
{
	const char *key;
	json_t *value;
	size_t n = 2, i;

	if (depth > KANAL__JSON_MAX_DEPTH + 1)
		return 0;
	switch (json_typeof(node)) {
	case JSON_OBJECT:
		json_object_foreach(node, key, value) n +=
			kanal__json_string_size(key, strlen(key)) + 2 +
			s_tree_size(value, depth + 1);
		return n;
	case JSON_ARRAY:
		for (i = 0; i < json_array_size(node); i++)
			n += 1 + s_tree_size(json_array_get(node, i), depth + 1);
		return n;
	case JSON_STRING:
		return kanal__json_string_size(json_string_value(node), json_string_length(node));
	case JSON_INTEGER:
		return 20;
	case JSON_REAL:
		return 24;
	case JSON_TRUE:
	case JSON_NULL:
		return 4;
	case JSON_FALSE:
		return 5;
	}
	return 0;
}

size_t kanal__msg_data_size(const kanal_msg_t *msg)
{
	json_t *tree;

	switch (msg->data_kind) {
	case KANAL_DATA_JSON:
		if (msg->data_text)
			return sizeof ",\"data\":" - 1 + msg->data_len;
		tree = __atomic_load_n(&msg->data_tree, __ATOMIC_ACQUIRE);
		return sizeof ",\"data\":" - 1 + (tree ? s_tree_size(tree, 0) : 0);
	case KANAL_DATA_BINARY:
		return sizeof ",\"data_base64\":\"\"" - 1 + msg->data_len;
	default:
		return 0;
	}
}

int kanal__msg_data_write(const kanal_msg_t *msg, kanal__jbuf_t *b)
{
	json_t *tree;
	char *text;

	switch (msg->data_kind) {
	case KANAL_DATA_JSON:
		kanal__jbuf_puts(b, ",\"data\":");
		if (msg->data_text) {
			/* Untouched data goes out exactly as it came in. */
			kanal__jbuf_put(b, msg->data_text, msg->data_len);
			return 0;
		}
		tree = __atomic_load_n(&msg->data_tree, __ATOMIC_ACQUIRE);
		text = tree ? json_dumps(tree, DUMP_FLAGS) : NULL;
		if (!text)
			return KANAL_ENOMEM;
		kanal__jbuf_puts(b, text);
		free(text);
		return 0;
	case KANAL_DATA_BINARY:
		kanal__jbuf_puts(b, ",\"data_base64\":");
		kanal__jbuf_put_string(b, msg->data_text, msg->data_len);
		return 0;
	default:
		return 0;
	}
}

int kanal__msg_data_copy(kanal_msg_t *dst, const kanal_msg_t *src)
{
	json_t *tree;

	if (src->data_kind == KANAL_DATA_NONE)
		return 0;
	if (src->data_text) {
		dst->data_text = kanal__msg_str_dup(dst, src->data_text, src->data_len);
		if (!dst->data_text)
			return KANAL_ENOMEM;
		dst->data_len = src->data_len;
	} else {
		tree = __atomic_load_n(&src->data_tree, __ATOMIC_ACQUIRE);
		dst->data_tree = tree ? json_deep_copy(tree) : NULL;
		if (!dst->data_tree)
			return KANAL_ENOMEM;
	}
	dst->data_kind = src->data_kind;
	return 0;
}
