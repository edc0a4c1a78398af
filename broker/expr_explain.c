/*
 * broker/expr_explain.c — why a `where` expression is false, for `kanalctl explain` and the
 * routes' diagnostics (expr.c parses and evaluates; this file re-reads the values).
 *
 * Explaining: expr_explain gives, for a false expression, the comparison that decided it in
 * its source form and the value found ("data.days <= 5 is false: data.days is 7"). For an
 * `or` that is false, every alternative is named. The whole reason is passed through
 * kanal_cpr_redact_inplace, so CPR numbers in data or in the expression are masked.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

#include "expr_int.h"

/* ---- explaining --------------------------------------------------------------------------- */

/* A bounded text builder: appends until full and remembers that it was. */
typedef struct sbuf {
	char *buf;
	size_t size, len;
	bool full;
} sbuf_t;

__attribute__((format(printf, 2, 3))) static void s_append(sbuf_t *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (sb->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(sb->buf + sb->len, sb->size - sb->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sb->size - sb->len) {
		sb->full = true;
		sb->len = sb->size - 1;
	} else {
		sb->len += (size_t)n;
	}
}

/* Appends a string value in double quotes, escaped, shortened safely when long. */
static void s_append_quoted(sbuf_t *sb, const char *s)
{
	bool cut;
	size_t n = expr__safe_cut(s, strlen(s), EXPR_VALUE_MAX, &cut);

	s_append(sb, "\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			s_append(sb, "\\%c", c);
		else if (c == '\n')
			s_append(sb, "\\n");
		else if (c == '\t')
			s_append(sb, "\\t");
		else if (c < 0x20)
			s_append(sb, "\\u%04x", c);
		else
			s_append(sb, "%c", c);
	}
	s_append(sb, "%s\"", cut ? "…" : "");
}

static void s_append_double(sbuf_t *sb, double d)
{
	char tmp[40];

	snprintf(tmp, sizeof tmp, "%.15g", d);
	if (strtod(tmp, NULL) != d)
		snprintf(tmp, sizeof tmp, "%.17g", d);
	s_append(sb, "%s", tmp);
}

/* Appends "NAME is VALUE" for a field: the value as the comparison read it, or, when that
 * did not fit the comparison's type, as it really is. */
static void s_append_field(sbuf_t *sb, const expr_t *e, const operand_t *o, const ectx_t *cx,
			   hint_t hint)
{
	const kanal_msg_t *msg = cx->msg;
	char buf[EXPR_PATH_MAX];
	value_t v;

	s_append(sb, "%.*s is ", (int)(o->end - o->start), e->text + o->start);
	expr__fetch(o, cx, hint, &v);
	if (v.kind == V_OTHER && (o->kind == OP_DATA || o->kind == OP_ITEM)) {
		expr__value_drop(&v);
		expr__fetch(o, cx, H_ANY, &v);
	}
	switch (v.kind) {
	case V_ABSENT:
		if (o->kind == OP_DATA && !o->name[0] &&
		    kanal_msg_data_kind(msg) == KANAL_DATA_BINARY)
			s_append(sb, "binary data");
		else
			s_append(sb, "absent");
		break;
	case V_STR:
		s_append_quoted(sb, v.s);
		break;
	case V_INT:
		s_append(sb, "%" PRId64, v.i);
		break;
	case V_DBL:
		s_append_double(sb, v.d);
		break;
	case V_BOOL:
		s_append(sb, "%s", v.b ? "true" : "false");
		break;
	case V_OTHER: {
		const char *path = expr__data_path(o, cx, buf, sizeof buf);
		char *json = path ? expr__data_json(msg, path) : NULL;

		s_append(sb, "%s",
			 !json            ? "not readable"
			 : json[0] == '{' ? "an object"
			 : json[0] == '[' ? "an array"
					  : "null");
		kanal_free(json);
		break;
	}
	}
	expr__value_drop(&v);
}

/* Explains a leaf (comparison, `in`, `exists`), quoting the source span [start, end) — the
 * leaf's own, or that of the `not` around it. */
static void s_explain_leaf(sbuf_t *sb, const expr_t *e, const node_t *leaf, size_t start,
			   size_t end, bool value, const ectx_t *msg)
{
	s_append(sb, "%.*s is %s: ", (int)(end - start), e->text + start, value ? "true" : "false");
	switch (leaf->kind) {
	case N_CMP:
		if (leaf->rhs.kind == OP_LIT) {
			s_append_field(sb, e, &leaf->lhs, msg, expr__hint_for(leaf->rhs.lit.kind));
		} else {
			value_t a, b;

			expr__fetch_pair(leaf, msg, &a, &b);
			s_append_field(sb, e, &leaf->lhs, msg, expr__hint_for(b.kind));
			s_append(sb, ", ");
			s_append_field(sb, e, &leaf->rhs, msg, expr__hint_for(a.kind));
			expr__value_drop(&a);
			expr__value_drop(&b);
		}
		break;
	case N_IN:
		s_append_field(sb, e, &leaf->lhs, msg, expr__hint_for(leaf->list[0].kind));
		break;
	default:
		s_append_field(sb, e, &leaf->lhs, msg, H_ANY);
		break;
	}
}

static void s_explain(sbuf_t *sb, const expr_t *e, const node_t *n, bool value, const ectx_t *msg);

/* Explains an any(): how many elements the array had, and when false (it has elements) why
 * the condition failed on the first one. */
static void s_explain_any(sbuf_t *sb, const expr_t *e, const node_t *n, bool value,
			  const ectx_t *cx)
{
	char path[EXPR_PATH_MAX], elem[EXPR_PATH_MAX];
	size_t count = expr__any_count(n, cx, path, sizeof path);
	ectx_t inner = { cx->msg, elem };

	s_append(sb, "%.*s is %s: %.*s has %zu item%s", (int)(n->end - n->start),
		 e->text + n->start, value ? "true" : "false", (int)(n->lhs.end - n->lhs.start),
		 e->text + n->lhs.start, count, count == 1 ? "" : "s");
	if (value || count == 0 || !expr__join(elem, sizeof elem, path, "0"))
		return;
	s_append(sb, "; item 0: ");
	s_explain(sb, e, n->kids[0], false, &inner);
}

/* Explains why node n evaluated to `value`: the first child that decided an and/or, or
 * every child when all of them agree (a false `or`, a true `and`). */
static void s_explain(sbuf_t *sb, const expr_t *e, const node_t *n, bool value, const ectx_t *msg)
{
	bool decider = n->kind == N_AND ? false : true;

	switch (n->kind) {
	case N_AND:
	case N_OR:
		if (value == decider) {
			for (size_t i = 0; i < n->n_kids; i++) {
				if (expr__eval(n->kids[i], msg) == decider) {
					s_explain(sb, e, n->kids[i], decider, msg);
					return;
				}
			}
			return;
		}
		for (size_t i = 0; i < n->n_kids; i++) {
			if (i)
				s_append(sb, "; ");
			s_explain(sb, e, n->kids[i], value, msg);
		}
		return;
	case N_NOT:
		if (expr__is_leaf(n->kids[0]))
			s_explain_leaf(sb, e, n->kids[0], n->start, n->end, value, msg);
		else
			s_explain(sb, e, n->kids[0], !value, msg);
		return;
	case N_ANY:
		s_explain_any(sb, e, n, value, msg);
		return;
	default:
		s_explain_leaf(sb, e, n, n->start, n->end, value, msg);
		return;
	}
}

bool expr_explain(const expr_t *expr, const kanal_msg_t *msg, char *why, size_t size)
{
	char text[1024];
	sbuf_t sb = { text, sizeof text, 0, false };
	ectx_t cx = { msg, NULL };
	bool result, cut;
	size_t n;

	text[0] = '\0';
	result = expr_eval(expr, msg);
	if (result || !expr || !msg) {
		if (why && size)
			snprintf(why, size, "%s", result ? "" : "no expression or no message");
		return result;
	}
	s_explain(&sb, expr, expr->root, false, &cx);
	/* Mask before shortening, and shorten without leaving half a number behind. */
	n = expr__safe_cut(text, sb.len, sb.full ? sb.len - 1 : sb.len, &cut);
	text[n] = '\0';
	kanal_cpr_redact_inplace(text);
	if (why && size) {
		n = expr__safe_cut(text, strlen(text), size - 1, &cut);
		memcpy(why, text, n);
		why[n] = '\0';
	}
	return false;
}
