/*
 * sdk/msg.c — kanal_msg_t, the CloudEvents 1.0 event every part of kanal passes around:
 * creating, copying and destroying it, reading and setting its context attributes, and
 * writing it out in the JSON structured format.
 *
 * The envelope parser lives in msg_parse.c, the attribute rules in msg_check.c and the data
 * value in msg_data.c; msg_int.h holds the layout they share. Attributes are plain strings;
 * extensions are kept sorted by name in one array, each with its value's canonical text, so
 * reads never allocate and hand out pointers that stay valid until the message changes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <kanal/cpr.h>
#include <kanal/error.h>
#include <kanal/msg.h>

#include "blob_store.h"
#include "json_scan.h"
#include "mpool.h"
#include "msg_int.h"

/* The attributes that may not be removed. */
static bool s_required(int index)
{
	return index == MSG_ID || index == MSG_SOURCE || index == MSG_TYPE;
}

/* ---- storage ------------------------------------------------------------------------- */

kanal_msg_t *kanal__msg_alloc(size_t inline_cap)
{
	size_t usable = 0;
	kanal_msg_t *msg = kanal__mpool_alloc(sizeof *msg + inline_cap, &usable);

	if (!msg)
		return NULL;
	memset(msg, 0, sizeof *msg);
	msg->ext = msg->ext_inline;
	msg->ext_cap = MSG_INLINE_EXT;
	msg->inl_cap = usable - sizeof *msg;
	return msg;
}

/* Room for n bytes in a chained block: the newest one, or a new one while the chain is
 * under MSG_MORE_MAX. NULL: use malloc. Not inlined: its `usable` would give every
 * kanal__msg_str_dup a stack-protector check and the saving of more registers, for a
 * path most strings never take. */
static __attribute__((noinline)) char *s_more(kanal_msg_t *msg, size_t n)
{
	msg_more_t *m = msg->more;
	size_t usable = 0;
	char *at;

	if (!m || n > m->cap - m->used) {
		if (n > MSG_MORE_MAX || msg->more_bytes > MSG_MORE_MAX - n)
			return NULL;
		m = kanal__mpool_alloc(sizeof *m + n, &usable);
		if (!m)
			return NULL;
		m->used = 0;
		m->cap = usable - sizeof *m;
		m->next = msg->more;
		msg->more = m;
		msg->more_bytes += usable;
	}
	at = m->buf + m->used;
	m->used += n;
	return at;
}

/* memcpy(d, p, n), without a call for 4 to 16 bytes (most attribute values and names):
 * two overlapping loads and stores of a fixed size. */
static inline void s_copy(char *d, const char *p, size_t n)
{
	uint64_t a, b;
	uint32_t x, y;

	if (n >= 8 && n <= 16) {
		memcpy(&a, p, 8);
		memcpy(&b, p + n - 8, 8);
		memcpy(d, &a, 8);
		memcpy(d + n - 8, &b, 8);
	} else if (n >= 4 && n < 8) {
		memcpy(&x, p, 4);
		memcpy(&y, p + n - 4, 4);
		memcpy(d, &x, 4);
		memcpy(d + n - 4, &y, 4);
	} else {
		memcpy(d, p, n);
	}
}

char *kanal__msg_str_dup(kanal_msg_t *msg, const char *p, size_t n)
{
	char *copy;

	if (n < msg->inl_cap - msg->inl_used) {
		copy = msg->inl + msg->inl_used;
		msg->inl_used += n + 1;
	} else if (!(copy = s_more(msg, n + 1)) && !(copy = malloc(n + 1))) {
		return NULL;
	}
	s_copy(copy, p, n);
	copy[n] = '\0';
	return copy;
}

void kanal__msg_str_free_outside(kanal_msg_t *msg, char *p)
{
	for (const msg_more_t *m = msg->more; m; m = m->next)
		if (p >= m->buf && p < m->buf + m->cap)
			return;
	free(p);
}

/* ---- life cycle ---------------------------------------------------------------------- */

kanal_msg_t *kanal_msg_new(const char *type, const char *source, const char *id)
{
	char uuid[37];
	kanal_msg_t *msg;

	size_t type_len, source_len, id_len;

	if (!type || !source)
		return NULL;
	type_len = strlen(type);
	source_len = strlen(source);
	if (kanal__msg_check_core(MSG_TYPE, type, type_len) ||
	    kanal__msg_check_core(MSG_SOURCE, source, source_len))
		return NULL;
	if (!id) {
		if (kanal_uuid(uuid) != 0)
			return NULL;
		id = uuid;
	}
	id_len = strlen(id);
	if (id != uuid && kanal__msg_check_core(MSG_ID, id, id_len))
		return NULL; /* each is checked to fit core_len's 32 bits */
	msg = kanal__msg_alloc(MSG_INLINE);
	if (!msg)
		return NULL;
	msg->core[MSG_ID] = kanal__msg_str_dup(msg, id, id_len);
	msg->core[MSG_SOURCE] = kanal__msg_str_dup(msg, source, source_len);
	msg->core[MSG_TYPE] = kanal__msg_str_dup(msg, type, type_len);
	msg->core_len[MSG_ID] = (uint32_t)id_len;
	msg->core_len[MSG_SOURCE] = (uint32_t)source_len;
	msg->core_len[MSG_TYPE] = (uint32_t)type_len;
	if (!msg->core[MSG_ID] || !msg->core[MSG_SOURCE] || !msg->core[MSG_TYPE])
		kanal_msg_destroy(&msg);
	return msg;
}

void kanal_msg_destroy(kanal_msg_t **msg_p)
{
	kanal_msg_t *msg;
	size_t i;

	if (!msg_p || !*msg_p)
		return;
	msg = *msg_p;
	*msg_p = NULL;
	for (i = 0; i < MSG_NCORE; i++)
		kanal__msg_str_free(msg, msg->core[i]);
	for (i = 0; i < msg->n_ext; i++) {
		kanal__msg_str_free(msg, msg->ext[i].name);
		kanal__msg_str_free(msg, msg->ext[i].text);
	}
	if (msg->ext != msg->ext_inline)
		free(msg->ext);
	kanal__msg_data_release(msg);
	while (msg->more) {
		msg_more_t *next = msg->more->next;
		kanal__mpool_free(msg->more);
		msg->more = next;
	}
	kanal__mpool_free(msg);
}

kanal_msg_t *kanal_msg_dup(const kanal_msg_t *msg)
{
	kanal_msg_t *copy;
	size_t i, need = 0;

	if (!msg)
		return NULL;
	/* One allocation for the copy's strings, its data text included. */
	for (i = 0; i < MSG_NCORE; i++)
		if (msg->core[i])
			need += msg->core_len[i] + 1;
	for (i = 0; i < msg->n_ext; i++)
		need += msg->ext[i].name_len + msg->ext[i].text_len + 2;
	if (msg->data_text)
		need += msg->data_len + 1;
	copy = kanal__msg_alloc(need + 1);
	if (!copy)
		return NULL;
	for (i = 0; i < MSG_NCORE; i++) {
		if (msg->core[i] &&
		    !(copy->core[i] = kanal__msg_str_dup(copy, msg->core[i], msg->core_len[i])))
			goto fail;
		copy->core_len[i] = msg->core_len[i];
	}
	if (msg->n_ext > copy->ext_cap) {
		copy->ext = calloc(msg->n_ext, sizeof *copy->ext);
		if (!copy->ext) {
			copy->ext = copy->ext_inline;
			goto fail;
		}
		copy->ext_cap = msg->n_ext;
	}
	for (i = 0; i < msg->n_ext; i++) {
		const msg_ext_t *e = &msg->ext[i];
		msg_ext_t *c = &copy->ext[i];
		*c = *e;
		c->name = kanal__msg_str_dup(copy, e->name, e->name_len);
		c->text = kanal__msg_str_dup(copy, e->text, e->text_len);
		copy->n_ext = i + 1;
		if (!c->name || !c->text)
			goto fail;
	}
	if (kanal__msg_data_copy(copy, msg))
		goto fail;
	return copy;
fail:
	kanal_msg_destroy(&copy);
	return NULL;
}

static bool s_cpr_in(const char *text, size_t len)
{
	return text && len >= 10 && kanal_cpr_find(text, len, NULL, NULL);
}

/* A W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>", lower-case): random hex, in which
 * ten digits in a row read as a CPR number about once in 500 trace ids. It names no one. */
static bool s_is_traceparent(const char *name, size_t name_len, const char *v, size_t len)
{
	if (name_len != 11 || memcmp(name, "traceparent", 11) || len != 55)
		return false;
	for (size_t i = 0; i < len; i++) {
		bool dash = i == 2 || i == 35 || i == 52;
		char c = v[i];
		if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

/* The kanalblob attribute as the blob store writes it: SHA-256 digests, not persons. */
static bool s_is_blob_list(const char *name, size_t name_len, const char *v, size_t len)
{
	return name_len == sizeof KANAL_BLOB_ATTRIBUTE - 1 &&
	       !memcmp(name, KANAL_BLOB_ATTRIBUTE, name_len) && kanal__blob_attr_only_uris(v, len);
}

bool kanal_msg_context_cpr(const kanal_msg_t *msg, char *attr, size_t size)
{
	static const int core[] = { MSG_ID,   MSG_SOURCE,          MSG_SUBJECT,   MSG_TYPE,
				    MSG_TIME, MSG_DATACONTENTTYPE, MSG_DATASCHEMA };
	const char *hit = NULL;

	if (!msg)
		return false;
	for (size_t i = 0; i < sizeof core / sizeof core[0] && !hit; i++) {
		size_t len = msg->core_len[core[i]];
		const char *v;
		/* A number takes ten bytes at least: shorter values (and absent ones, of length
		 * 0) are passed by their length alone. */
		if (len < 10)
			continue;
		v = msg->core[core[i]];
		if (v && (core[i] == MSG_TIME ? kanal__msg_time_cpr(v, len) : s_cpr_in(v, len)))
			hit = kanal__msg_core_name(core[i]);
	}
	for (size_t i = 0; i < msg->n_ext && !hit; i++) {
		const msg_ext_t *e = &msg->ext[i];
		if ((s_cpr_in(e->text, e->text_len) &&
		     !s_is_traceparent(e->name, e->name_len, e->text, e->text_len) &&
		     !s_is_blob_list(e->name, e->name_len, e->text, e->text_len)) ||
		    s_cpr_in(e->name, e->name_len))
			hit = e->name;
	}
	if (hit && attr && size) {
		snprintf(attr, size, "%s", hit);
		/* An extension's name may be the number itself: never hand it on in clear. */
		kanal_cpr_redact_inplace(attr);
	}
	return hit != NULL;
}

bool kanal__msg_context_cpr(const kanal_msg_t *msg, char *attr, size_t size)
{
	return kanal_msg_context_cpr(msg, attr, size);
}

void kanal_free(void *p)
{
	free(p);
}

/* ---- extensions ---------------------------------------------------------------------- */

static int s_name_cmp(const char *a, size_t a_len, const char *b, size_t b_len)
{
	int c = memcmp(a, b, a_len < b_len ? a_len : b_len);

	if (c)
		return c;
	return a_len < b_len ? -1 : a_len > b_len;
}

/* Finds extension `name` by binary search. Returns true and its index, or false and the
 * index where it would be inserted. */
static bool s_ext_find(const kanal_msg_t *msg, const char *name, size_t len, size_t *at)
{
	size_t lo = 0, hi = msg->n_ext;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = s_name_cmp(msg->ext[mid].name, msg->ext[mid].name_len, name, len);
		if (c == 0) {
			*at = mid;
			return true;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	return false;
}

int kanal__msg_ext_put(kanal_msg_t *msg, const char *name, size_t name_len, char *text,
		       size_t text_len, msg_ext_kind_t kind)
{
	msg_ext_t *e;
	size_t at;

	if (s_ext_find(msg, name, name_len, &at)) {
		e = &msg->ext[at];
		kanal__msg_str_free(msg, e->text);
		e->text = text;
		e->text_len = text_len;
		e->kind = kind;
		return 0;
	}
	if (msg->n_ext == msg->ext_cap) {
		size_t cap = msg->ext_cap ? msg->ext_cap * 2 : 4;
		msg_ext_t *grown;
		if (msg->ext == msg->ext_inline) {
			grown = malloc(cap * sizeof *grown);
			if (grown)
				memcpy(grown, msg->ext, msg->n_ext * sizeof *grown);
		} else {
			grown = realloc(msg->ext, cap * sizeof *grown);
		}
		if (!grown)
			goto nomem;
		msg->ext = grown;
		msg->ext_cap = cap;
	}
	e = &msg->ext[at];
	memmove(e + 1, e, (msg->n_ext - at) * sizeof *e);
	e->name = kanal__msg_str_dup(msg, name, name_len);
	if (!e->name) {
		memmove(e, e + 1, (msg->n_ext - at) * sizeof *e);
		goto nomem;
	}
	e->name_len = name_len;
	e->text = text;
	e->text_len = text_len;
	e->kind = kind;
	msg->n_ext++;
	return 0;
nomem:
	kanal__msg_str_free(msg, text);
	return KANAL_ENOMEM;
}

/* Not inlined into kanal_msg_set_attr, whose every call would otherwise pay a
 * stack-protector check for this rare path's `at`. */
static __attribute__((noinline)) void s_ext_remove(kanal_msg_t *msg, const char *name, size_t len)
{
	size_t at;

	if (!s_ext_find(msg, name, len, &at))
		return;
	kanal__msg_str_free(msg, msg->ext[at].name);
	kanal__msg_str_free(msg, msg->ext[at].text);
	memmove(&msg->ext[at], &msg->ext[at + 1], (msg->n_ext - at - 1) * sizeof msg->ext[0]);
	msg->n_ext--;
}

/* ---- attributes ---------------------------------------------------------------------- */

const char *kanal_msg_specversion(const kanal_msg_t *msg)
{
	return msg ? "1.0" : NULL;
}

const char *kanal_msg_id(const kanal_msg_t *msg)
{
	return msg ? msg->core[MSG_ID] : NULL;
}

const char *kanal_msg_source(const kanal_msg_t *msg)
{
	return msg ? msg->core[MSG_SOURCE] : NULL;
}

const char *kanal_msg_type(const kanal_msg_t *msg)
{
	return msg ? msg->core[MSG_TYPE] : NULL;
}

const char *kanal_msg_subject(const kanal_msg_t *msg)
{
	return msg ? msg->core[MSG_SUBJECT] : NULL;
}

const char *kanal_msg_time(const kanal_msg_t *msg)
{
	return msg ? msg->core[MSG_TIME] : NULL;
}

const char *kanal_msg_datacontenttype(const kanal_msg_t *msg)
{
	return msg ? msg->core[MSG_DATACONTENTTYPE] : NULL;
}

const char *kanal_msg_dataschema(const kanal_msg_t *msg)
{
	return msg ? msg->core[MSG_DATASCHEMA] : NULL;
}

const char *kanal_msg_attr(const kanal_msg_t *msg, const char *name)
{
	size_t len, at;
	int index;

	if (!msg || !name)
		return NULL;
	len = strlen(name);
	index = kanal__msg_core_index(name, len);
	if (index == MSG_SPECVERSION)
		return "1.0";
	if (index < MSG_NCORE)
		return msg->core[index];
	return s_ext_find(msg, name, len, &at) ? msg->ext[at].text : NULL;
}

/* Checks that `name`, which is not a core attribute's, may name an extension; fills err
 * when not. */
static int s_check_ext_name(const char *name, size_t len, kanal_error_t *err)
{
	const char *why;

	if (len == 11 && memcmp(name, "data_base64", 11) == 0) {
		kanal__msg_error(err, NULL, 0, 0, name, len,
				 "reserved name (set data with kanal_msg_set_data_*)");
		return KANAL_EINVALID;
	}
	why = kanal__msg_check_ext_name(name, len);
	if (why) {
		kanal__msg_error(err, NULL, 0, 0, name, len, "%s", why);
		return KANAL_EINVALID;
	}
	return 0;
}

/* Checks that `name` may carry an extension value; fills err when not. */
static int s_check_ext_target(const char *name, size_t len, kanal_error_t *err)
{
	if (kanal__msg_core_index(name, len) != MSG_NCORE) {
		kanal__msg_error(err, NULL, 0, 0, name, len,
				 "a core attribute, not an extension (it takes a string)");
		return KANAL_EINVALID;
	}
	return s_check_ext_name(name, len, err);
}

/* Sets core attribute `index` (or the pseudo attribute specversion) to value. */
static int s_set_core(kanal_msg_t *msg, int index, const char *value, kanal_error_t *err)
{
	const char *name = kanal__msg_core_name(index);
	const char *why;
	size_t len;
	char *copy;

	if (!value) {
		if (index == MSG_SPECVERSION || s_required(index)) {
			kanal__msg_error(err, NULL, 0, 0, name, strlen(name),
					 "required; it cannot be removed");
			return KANAL_EINVALID;
		}
		kanal__msg_str_free(msg, msg->core[index]);
		msg->core[index] = NULL;
		msg->core_len[index] = 0;
		return 0;
	}
	len = strlen(value);
	why = kanal__msg_check_core(index, value, len); /* also: at most UINT32_MAX bytes */
	if (why) {
		kanal__msg_error(err, NULL, 0, 0, name, strlen(name), "%s", why);
		return KANAL_EINVALID;
	}
	if (index == MSG_SPECVERSION)
		return 0; /* always "1.0" */
	copy = kanal__msg_str_dup(msg, value, len);
	if (!copy)
		return KANAL_ENOMEM;
	kanal__msg_str_free(msg, msg->core[index]);
	msg->core[index] = copy;
	msg->core_len[index] = (uint32_t)len;
	return 0;
}

int kanal_msg_set_attr(kanal_msg_t *msg, const char *name, const char *value, kanal_error_t *err)
{
	size_t len, value_len;
	const char *why;
	int index, rc;
	char *copy;

	if (!msg || !name) {
		kanal__msg_error(err, NULL, 0, 0, NULL, 0,
				 "kanal_msg_set_attr: no message or name");
		return KANAL_EINVAL;
	}
	len = strlen(name);
	index = kanal__msg_core_index(name, len);
	if (index != MSG_NCORE)
		return s_set_core(msg, index, value, err);
	rc = s_check_ext_name(name, len, err);
	if (rc)
		return rc;
	if (!value) {
		s_ext_remove(msg, name, len);
		return 0;
	}
	value_len = strlen(value);
	if ((why = kanal__msg_check_string(value, value_len))) {
		kanal__msg_error(err, NULL, 0, 0, name, len, "%s", why);
		return KANAL_EINVALID;
	}
	copy = kanal__msg_str_dup(msg, value, value_len);
	if (!copy)
		return KANAL_ENOMEM;
	return kanal__msg_ext_put(msg, name, len, copy, value_len, MSG_EXT_STRING);
}

/* Stores an integer or boolean extension given by its canonical text. */
static int s_set_ext_text(kanal_msg_t *msg, const char *name, const char *text, msg_ext_kind_t kind,
			  kanal_error_t *err)
{
	size_t len;
	char *copy;
	int rc;

	if (!msg || !name) {
		kanal__msg_error(err, NULL, 0, 0, NULL, 0, "no message or name");
		return KANAL_EINVAL;
	}
	len = strlen(name);
	rc = s_check_ext_target(name, len, err);
	if (rc)
		return rc;
	copy = kanal__msg_str_dup(msg, text, strlen(text));
	if (!copy)
		return KANAL_ENOMEM;
	return kanal__msg_ext_put(msg, name, len, copy, strlen(copy), kind);
}

int kanal_msg_set_ext_int(kanal_msg_t *msg, const char *name, int32_t value, kanal_error_t *err)
{
	char text[16];

	snprintf(text, sizeof text, "%d", (int)value);
	return s_set_ext_text(msg, name, text, MSG_EXT_INT, err);
}

int kanal_msg_set_ext_bool(kanal_msg_t *msg, const char *name, bool value, kanal_error_t *err)
{
	return s_set_ext_text(msg, name, value ? "true" : "false", MSG_EXT_BOOL, err);
}

int kanal_msg_foreach_ext(const kanal_msg_t *msg,
			  int (*fn)(const char *name, const char *value, void *arg), void *arg)
{
	size_t i;

	if (!msg || !fn)
		return 0;
	for (i = 0; i < msg->n_ext; i++) {
		int rc = fn(msg->ext[i].name, msg->ext[i].text, arg);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- serialisation ------------------------------------------------------------------- */

/* `,"name":` */
static void s_put_key(kanal__jbuf_t *b, const char *name, size_t len)
{
	kanal__jbuf_putc(b, ',');
	kanal__jbuf_put_string(b, name, len);
	kanal__jbuf_putc(b, ':');
}

char *kanal_msg_to_json(const kanal_msg_t *msg, size_t *len)
{
	kanal__jbuf_t b;
	size_t i;

	if (!msg)
		return NULL;
	kanal__jbuf_init(&b, kanal_msg_size(msg) + 64);
	kanal__jbuf_puts(&b, "{\"specversion\":\"1.0\"");
	for (i = 0; i < MSG_NCORE; i++) {
		const char *name = kanal__msg_core_name((int)i);
		if (!msg->core[i])
			continue;
		s_put_key(&b, name, strlen(name));
		kanal__jbuf_put_string(&b, msg->core[i], msg->core_len[i]);
	}
	for (i = 0; i < msg->n_ext; i++) {
		const msg_ext_t *e = &msg->ext[i];
		s_put_key(&b, e->name, e->name_len);
		if (e->kind == MSG_EXT_STRING)
			kanal__jbuf_put_string(&b, e->text, e->text_len);
		else
			kanal__jbuf_put(&b, e->text, e->text_len);
	}
	if (kanal__msg_data_write(msg, &b)) {
		kanal__jbuf_discard(&b);
		return NULL;
	}
	kanal__jbuf_putc(&b, '}');
	return kanal__jbuf_finish(&b, len);
}

/* The size of `,"name":"value"` without escapes: the estimate kanal_msg_size adds up. */
static size_t s_member_size(size_t name_len, size_t value_len, bool quoted)
{
	return 1 + name_len + 2 + 1 + value_len + (quoted ? 2 : 0);
}

size_t kanal_msg_size(const kanal_msg_t *msg)
{
	/* The core names' lengths (msg_check.c has the names). */
	static const size_t name_len[MSG_NCORE] = {
		[MSG_ID] = 2,          [MSG_SOURCE] = 6, [MSG_TYPE] = 4,
		[MSG_SUBJECT] = 7,     [MSG_TIME] = 4,   [MSG_DATACONTENTTYPE] = 15,
		[MSG_DATASCHEMA] = 10,
	};
	size_t i, n;

	if (!msg)
		return 0;
	n = sizeof "{\"specversion\":\"1.0\"}" - 1;
	for (i = 0; i < MSG_NCORE; i++) {
		if (msg->core[i])
			n += s_member_size(name_len[i], msg->core_len[i], true);
	}
	for (i = 0; i < msg->n_ext; i++)
		n += s_member_size(msg->ext[i].name_len, msg->ext[i].text_len,
				   msg->ext[i].kind == MSG_EXT_STRING);
	return n + kanal__msg_data_size(msg);
}

/* ---- identifiers --------------------------------------------------------------------- */

int kanal_uuid(char buf[37])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char r[16];
	size_t i, o = 0, got = 0;

	buf[0] = '\0';
	/* getrandom(2) only: it blocks until the kernel's pool is seeded, and then never fails
	 * for 16 bytes but on a kernel without it. Ids from a guessable generator would collide
	 * across restarts and hosts, and a duplicate id loses an event to deduplication, so a
	 * failure is an error, said on stderr (kanald's log), never a weaker id. */
	while (got < sizeof r) {
		ssize_t k = getrandom(r + got, sizeof r - got, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			fprintf(stderr, "kanal: no UUID: getrandom failed: %s\n",
				k < 0 ? strerror(errno) : "no bytes");
			return KANAL_EIO;
		}
		got += (size_t)k;
	}
	r[6] = (unsigned char)((r[6] & 0x0F) | 0x40); /* version 4 */
	r[8] = (unsigned char)((r[8] & 0x3F) | 0x80); /* variant 10 (RFC 4122) */
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[o++] = '-';
		buf[o++] = hex[r[i] >> 4];
		buf[o++] = hex[r[i] & 0x0F];
	}
	buf[o] = '\0';
	return 0;
}
