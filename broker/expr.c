/*
 * broker/expr.c — `where` expressions of routing tables: recursive-descent parser, type
 * checker and evaluator. The lexer is expr_lex.c, the explainer expr_explain.c; what they
 * share is expr_int.h.
 *
 * Grammar (keywords are lower case; blanks are spaces, tabs and line breaks):
 *
 *   or_expr  := and_expr ('or' and_expr)*
 *   and_expr := not_expr ('and' not_expr)*
 *   not_expr := 'not' not_expr | primary
 *   primary  := '(' or_expr ')' | 'exists' field | any | operand (cmpop operand | 'in' list)
 *             | field strop string
 *   any      := 'any' '(' field ',' or_expr ')'     (field: data.… or, nested, item.…)
 *   operand  := field | literal          cmpop := == != < <= > >=
 *   strop    := contains | startswith | endswith | matches
 *   list     := '[' literal (',' literal)* ']'     (one type; ints and decimals mix)
 *   literal  := "string" (escapes \" \\ \n \t) | number (-?digits(.digits)?) | true | false
 *   field    := core attribute (specversion id source type subject time datacontenttype
 *               dataschema) | extension ([a-z0-9]+, not a keyword) | data | data.a.b.0
 *             | item | item.a.b (only inside any(): the element at hand)
 *   key      := [A-Za-z0-9_-]+ | "string"     (a data path's segment, as in jq: data."a.b")
 *
 * A field alone is not a condition, not even a boolean one: write `data.urgent == true`.
 * Data path segments are letters, digits, '_' and '-', or any non-empty string in quotes
 * (data."no.dk/kommune", with the string escapes); a number indexes an array. The SDK's
 * dotted paths cannot name a key holding '.', so such a path is kept with '\.' (and '\\')
 * for the key's own characters, and read by walking the JSON of its plain prefix. The
 * keywords (and or not in exists true false) and `data` cannot name an extension. The string
 * operators and `any` are keywords only where one is due (after an operand; `any` before
 * '('), and `item` only inside any(), so extensions named so keep working.
 *
 * Parsing checks types where they are known: a core attribute is always a string, so
 * comparing it with a number or boolean is an error; so are ordering booleans, comparing two
 * literals, and lists of mixed types. Errors carry a 1-based column into the expression; the
 * syntax errors also say it in the text ("expected ')' at column 17, found end of
 * expression"), in the form "column N" that routes.c rewrites into file columns.
 *
 * Evaluation:
 *   - A comparison whose field is absent, or holds a value of another type than the other
 *     side, is false — `!=` too; `not` inverts the result. So `data.x != 1` is false when
 *     data.x is absent, and `not data.x == 1` is true.
 *   - Numbers compare as doubles, but exactly as 64-bit integers when both sides are
 *     integers. Strings compare bytewise. Booleans only compare with == and != (ordering
 *     two boolean fields is false).
 *   - Extension attributes reach us as text (msg.h gives integers and booleans in canonical
 *     form), so an extension compared with a number is read as a number when its text is one
 *     (else the comparison is false), with a boolean when its text is "true" or "false", and
 *     with a string bytewise: an integer extension 10 equals "10".
 *   - `in` is true when the field equals any element of the list.
 *   - The string operators are true only when the field holds a string: contains,
 *     startswith and endswith compare bytes; matches runs the regex compiled at parse time.
 *   - any(FIELD, COND) evaluates COND with `item` at FIELD.0, FIELD.1, … (at most
 *     EXPR_ANY_MAX elements); a FIELD that is absent or not an array has none, so false.
 *     Counting the elements reads the array's JSON text once per evaluation.
 *   - `exists` is true when the attribute is set or the data path holds a value; a JSON null
 *     counts as absent. `exists data` is true for any JSON data but null, and binary data.
 *     Data fields of binary data are absent.
 *   - and/or short-circuit left to right, so a message's data is not parsed when an earlier
 *     attribute comparison decides: write attribute conditions first.
 *   - Evaluation allocates nothing itself, with two exceptions: checking `exists` on an
 *     object, array or null data field (msg.h has no type query, so it looks at the value's
 *     JSON text), and a data path with a key holding '.' (read from its prefix's JSON).
 */
#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <kanal/kanal.h>

#include "expr_int.h"

/* ---- values and the tree ---------------------------------------------------------------- */

static const char *const s_cmpop_text[] = { "==", "!=",       "<",          "<=",       ">",
					    ">=", "contains", "startswith", "endswith", "matches" };

static const struct {
	const char *name;
	attr_getter_t get;
} s_core_attrs[] = {
	{ "specversion", kanal_msg_specversion },
	{ "id", kanal_msg_id },
	{ "source", kanal_msg_source },
	{ "type", kanal_msg_type },
	{ "subject", kanal_msg_subject },
	{ "time", kanal_msg_time },
	{ "datacontenttype", kanal_msg_datacontenttype },
	{ "dataschema", kanal_msg_dataschema },
};

static bool s_is_field(const operand_t *o)
{
	return o->kind != OP_LIT;
}

bool expr__is_leaf(const node_t *n)
{
	return n->kind == N_CMP || n->kind == N_IN || n->kind == N_EXISTS;
}

static void s_operand_free(operand_t *o)
{
	if (o->kind == OP_LIT && o->lit.kind == V_STR)
		free((char *)o->lit.s);
	free(o->name);
	memset(o, 0, sizeof *o);
}

static void s_node_destroy(node_t **node_p)
{
	node_t *n;

	if (!node_p || !*node_p)
		return;
	n = *node_p;
	for (size_t i = 0; i < n->n_kids; i++)
		s_node_destroy(&n->kids[i]);
	free(n->kids);
	s_operand_free(&n->lhs);
	s_operand_free(&n->rhs);
	for (size_t i = 0; i < n->n_list; i++)
		if (n->list[i].kind == V_STR)
			free((char *)n->list[i].s);
	free(n->list);
	if (n->re) {
		regfree(n->re);
		free(n->re);
	}
	free(n);
	*node_p = NULL;
}

void expr_destroy(expr_t **expr_p)
{
	expr_t *e;

	if (!expr_p || !*expr_p)
		return;
	e = *expr_p;
	s_node_destroy(&e->root);
	free(e->text);
	free(e);
	*expr_p = NULL;
}

bool expr_uses_data(const expr_t *expr)
{
	return expr && expr->uses_data;
}

/* ---- numbers ------------------------------------------------------------------------------ */

bool expr__is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Parses exactly s[0..len) as -?digits(.digits)? into *out (V_INT, or V_DBL when there is a
 * fraction). Returns 0, -1 when the text is not such a number, -2 when out of range. Used for
 * literals and for extension attribute text, so both read numbers alike. */
static int s_parse_number(const char *s, size_t len, value_t *out)
{
	char buf[400];
	size_t i = 0;
	bool fraction = false;
	char *end;

	if (i < len && s[i] == '-')
		i++;
	if (i == len || !expr__is_digit(s[i]))
		return -1;
	while (i < len && expr__is_digit(s[i]))
		i++;
	if (i < len && s[i] == '.') {
		fraction = true;
		i++;
		if (i == len || !expr__is_digit(s[i]))
			return -1;
		while (i < len && expr__is_digit(s[i]))
			i++;
	}
	if (i != len)
		return -1;
	if (len >= sizeof buf)
		return -2;
	/* A copy, so that strtoll/strtod stop exactly at the end of the number. (strtod follows
	 * LC_NUMERIC; kanal never changes the locale from "C".) */
	memcpy(buf, s, len);
	buf[len] = '\0';
	errno = 0;
	if (fraction) {
		out->kind = V_DBL;
		out->d = strtod(buf, &end);
	} else {
		out->kind = V_INT;
		out->i = strtoll(buf, &end, 10);
	}
	if (errno == ERANGE || *end)
		return -2;
	return 0;
}

/* ---- tokens and parse errors (the lexer itself is expr_lex.c) ------------------------- */

/* Records the first error: a message and the offset it is about. */
__attribute__((format(printf, 3, 4))) static void s_fail(parser_t *p, size_t at, const char *fmt,
							 ...)
{
	va_list ap;

	if (p->failed)
		return;
	p->failed = true;
	p->fail_at = at;
	va_start(ap, fmt);
	vsnprintf(p->fail_text, sizeof p->fail_text, fmt, ap);
	va_end(ap);
}

static void s_advance(parser_t *p)
{
	p->prev = p->tok;
	expr_lex_next(p);
}

static bool s_tok_is(const token_t *tok, const char *text, const char *word)
{
	return tok->type == T_WORD && strlen(word) == tok->len &&
	       memcmp(text + tok->start, word, tok->len) == 0;
}

static bool s_at_word(const parser_t *p, const char *word)
{
	return s_tok_is(&p->tok, p->text, word);
}

static bool s_at_keyword(const parser_t *p)
{
	static const char *const keywords[] = { "and", "or", "not", "in", "exists" };

	for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
		if (s_at_word(p, keywords[i]))
			return true;
	return false;
}

/* True when the current token can begin an operand (a field or a literal). */
static bool s_at_operand(const parser_t *p)
{
	return p->tok.type == T_STRING || p->tok.type == T_NUMBER ||
	       (p->tok.type == T_WORD && !s_at_keyword(p));
}

/* Shortens text[0..len) to at most max bytes for quoting, without leaving a partial UTF-8
 * sequence or a partial digit run (a cut CPR number would escape masking). Returns the new
 * length; *cut tells whether anything was dropped. */
size_t expr__safe_cut(const char *text, size_t len, size_t max, bool *cut)
{
	size_t n = len;

	*cut = false;
	if (len <= max)
		return len;
	*cut = true;
	n = max;
	while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
		n--;
	while (n > 0 && (expr__is_digit(text[n - 1]) || text[n - 1] == '-'))
		n--;
	return n;
}

/* Describes the current token for "found …": "end of expression", a string as written, or
 * any other token in single quotes. */
static const char *s_describe(const parser_t *p, char *buf, size_t size)
{
	const char *text = p->text + p->tok.start;
	bool cut;
	size_t n;

	if (p->tok.type == T_END)
		return "end of expression";
	n = expr__safe_cut(text, p->tok.len, EXPR_QUOTE_MAX, &cut);
	if (p->tok.type == T_STRING)
		snprintf(buf, size, "%.*s%s", (int)n, text, cut ? "…\"" : "");
	else
		snprintf(buf, size, "'%.*s%s'", (int)n, text, cut ? "…" : "");
	return buf;
}

/* Fails on the current token: "<expected> at column N, found <token>", or the token's own
 * lexical error when it could not be read. */
__attribute__((format(printf, 2, 3))) static void s_fail_tok(parser_t *p, const char *expected_fmt,
							     ...)
{
	char expected[160], found[EXPR_QUOTE_MAX * 2 + 16];
	va_list ap;

	if (p->tok.type == T_ERROR) {
		s_fail(p, p->lex_error_at, "%s", p->lex_error);
		return;
	}
	va_start(ap, expected_fmt);
	vsnprintf(expected, sizeof expected, expected_fmt, ap);
	va_end(ap);
	s_fail(p, p->tok.start, "%s at column %zu, found %s", expected, p->tok.start + 1,
	       s_describe(p, found, sizeof found));
}

/* ---- the parser ------------------------------------------------------------------------- */

static node_t *s_parse_or(parser_t *p);

static node_t *s_node_new(parser_t *p, nkind_t kind, size_t start)
{
	node_t *n = calloc(1, sizeof *n);

	if (!n) {
		s_fail(p, start, "out of memory");
		return NULL;
	}
	n->kind = kind;
	n->start = start;
	return n;
}

static bool s_push_kid(parser_t *p, node_t *n, node_t *kid)
{
	node_t **kids = realloc(n->kids, (n->n_kids + 1) * sizeof *kids);

	if (!kids) {
		s_fail(p, kid->start, "out of memory");
		return false;
	}
	kids[n->n_kids++] = kid;
	n->kids = kids;
	return true;
}

static size_t s_prev_end(const parser_t *p)
{
	return p->prev.start + p->prev.len;
}

/* Decodes the current string token into a new NUL-terminated string. */
static char *s_decode_string(parser_t *p)
{
	const char *s = p->text + p->tok.start + 1;
	size_t n = p->tok.len - 2;
	char *out = malloc(n + 1), *w = out;

	if (!out) {
		s_fail(p, p->tok.start, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\') {
			*w++ = s[i];
			continue;
		}
		i++;
		*w++ = s[i] == 'n' ? '\n' : s[i] == 't' ? '\t' : s[i];
	}
	*w = '\0';
	return out;
}

/* Reads the current literal token (string, number, true, false) into *v and consumes it.
 * Returns false after recording an error. */
static bool s_parse_literal(parser_t *p, value_t *v)
{
	memset(v, 0, sizeof *v);
	if (p->tok.type == T_STRING) {
		char *s = s_decode_string(p);

		if (!s)
			return false;
		v->kind = V_STR;
		v->s = s;
	} else if (p->tok.type == T_NUMBER) {
		if (s_parse_number(p->text + p->tok.start, p->tok.len, v) != 0) {
			s_fail(p, p->tok.start, "number at column %zu is out of range",
			       p->tok.start + 1);
			return false;
		}
	} else {
		v->kind = V_BOOL;
		v->b = s_at_word(p, "true");
	}
	s_advance(p);
	return true;
}

static bool s_at_literal(const parser_t *p)
{
	return p->tok.type == T_STRING || p->tok.type == T_NUMBER || s_at_word(p, "true") ||
	       s_at_word(p, "false");
}

/* The data path w[0..len) (after "data." or "item.", at offset `at`) as evaluation reads
 * it: plain segments as written, a quoted key decoded with its '.' and '\' escaped by '\'.
 * The lexer has checked the quotes and escapes. NULL after recording an error. */
static char *s_data_path_new(parser_t *p, const char *w, size_t len, size_t at)
{
	char *out = malloc(2 * len + 1), *o = out;
	size_t i = 0;

	if (!out) {
		s_fail(p, at, "out of memory");
		return NULL;
	}
	while (i < len) {
		size_t key = i;

		if (w[i] != '"') {
			*o++ = w[i++];
			continue;
		}
		for (i++; w[i] != '"'; i++) {
			char c = w[i];

			if (c == '\\') {
				i++;
				c = w[i] == 'n' ? '\n' : w[i] == 't' ? '\t' : w[i];
			}
			if (c == '.' || c == '\\')
				*o++ = '\\';
			*o++ = c;
		}
		i++;
		if (i - key == 2) {
			s_fail(p, at + key, "empty key \"\" at column %zu: a key has a name",
			       at + key + 1);
			free(out);
			return NULL;
		}
	}
	*o = '\0';
	return out;
}

/* Reads the current word token as a field into *o and consumes it. */
static bool s_parse_field(parser_t *p, operand_t *o)
{
	const char *w = p->text + p->tok.start;
	size_t len = p->tok.len, shown = len > EXPR_QUOTE_MAX ? EXPR_QUOTE_MAX : len;
	const char *dot = memchr(w, '.', len);

	memset(o, 0, sizeof *o);
	o->start = p->tok.start;
	o->end = p->tok.start + len;
	if ((len == 4 || (dot && dot - w == 4)) && memcmp(w, "data", 4) == 0) {
		o->kind = OP_DATA;
		o->name = s_data_path_new(p, w + 5, len == 4 ? 0 : len - 5, o->start + 5);
		if (!o->name)
			return false;
		p->uses_data = true;
		s_advance(p);
		return true;
	}
	if (p->any_depth > 0 && (len == 4 || (dot && dot - w == 4)) && memcmp(w, "item", 4) == 0) {
		o->kind = OP_ITEM;
		o->name = s_data_path_new(p, w + 5, len == 4 ? 0 : len - 5, o->start + 5);
		if (!o->name)
			return false;
		s_advance(p);
		return true;
	}
	if (dot) {
		s_fail(p, o->start,
		       "unknown field '%.*s' at column %zu: only data fields have "
		       "dotted paths",
		       (int)shown, w, o->start + 1);
		return false;
	}
	for (size_t i = 0; i < sizeof s_core_attrs / sizeof s_core_attrs[0]; i++) {
		if (strlen(s_core_attrs[i].name) == len &&
		    memcmp(s_core_attrs[i].name, w, len) == 0) {
			o->kind = OP_CORE;
			o->get = s_core_attrs[i].get;
			o->name = strndup(w, len);
			if (!o->name) {
				s_fail(p, o->start, "out of memory");
				return false;
			}
			s_advance(p);
			return true;
		}
	}
	for (size_t i = 0; i < len; i++) {
		if (!((w[i] >= 'a' && w[i] <= 'z') || expr__is_digit(w[i]))) {
			s_fail(p, o->start,
			       "unknown field '%.*s' at column %zu: attribute names are "
			       "lower-case letters and digits",
			       (int)shown, w, o->start + 1);
			return false;
		}
	}
	o->kind = OP_EXT;
	o->name = strndup(w, len);
	if (!o->name) {
		s_fail(p, o->start, "out of memory");
		return false;
	}
	s_advance(p);
	return true;
}

/* Reads the current token as an operand (the caller checked s_at_operand). */
static bool s_parse_operand(parser_t *p, operand_t *o)
{
	if (p->tok.type == T_WORD && !s_at_literal(p))
		return s_parse_field(p, o);
	memset(o, 0, sizeof *o);
	o->kind = OP_LIT;
	o->start = p->tok.start;
	o->end = p->tok.start + p->tok.len;
	return s_parse_literal(p, &o->lit);
}

static const char *s_kind_name(vkind_t kind)
{
	switch (kind) {
	case V_STR:
		return "string";
	case V_INT:
	case V_DBL:
		return "number";
	case V_BOOL:
		return "boolean";
	default:
		return "value";
	}
}

static bool s_same_kind(vkind_t a, vkind_t b)
{
	bool num_a = a == V_INT || a == V_DBL, num_b = b == V_INT || b == V_DBL;

	return a == b || (num_a && num_b);
}

/* Type-checks a string operator: a field on the left, a string literal on the right, and
 * for `matches` a regular expression that compiles (POSIX extended; it is compiled here, once,
 * when the routing file loads). `at` is the operator's offset. */
static bool s_check_string_op(parser_t *p, node_t *n, size_t at)
{
	const char *op = s_cmpop_text[n->op];
	char msg[128];
	int rc;

	if (!s_is_field(&n->lhs)) {
		s_fail(p, n->lhs.start,
		       "'%s' at column %zu needs a field on its left, found a "
		       "constant",
		       op, at + 1);
		return false;
	}
	if (s_is_field(&n->rhs) || n->rhs.lit.kind != V_STR) {
		s_fail(p, n->rhs.start, "expected a string after '%s' at column %zu", op,
		       n->rhs.start + 1);
		return false;
	}
	if (n->op != CMP_MATCHES)
		return true;
	n->re = calloc(1, sizeof *n->re);
	if (!n->re) {
		s_fail(p, at, "out of memory");
		return false;
	}
	rc = regcomp(n->re, n->rhs.lit.s, REG_EXTENDED | REG_NOSUB);
	if (rc != 0) {
		regerror(rc, n->re, msg, sizeof msg);
		free(n->re);
		n->re = NULL;
		s_fail(p, n->rhs.start, "invalid regular expression at column %zu: %s",
		       n->rhs.start + 1, msg);
		return false;
	}
	return true;
}

/* The string operator named by the current word, or -1. */
static int s_at_string_op(const parser_t *p)
{
	for (int op = CMP_CONTAINS; op <= CMP_MATCHES; op++)
		if (s_at_word(p, s_cmpop_text[op]))
			return op;
	return -1;
}

/* Type-checks a comparison (field op field, field op literal or literal op field) and puts
 * the field on the left. `at` is the operator's offset. */
static bool s_check_cmp(parser_t *p, node_t *n, size_t at)
{
	const char *op = s_cmpop_text[n->op];
	bool ordering = n->op != CMP_EQ && n->op != CMP_NE;
	operand_t *field, *lit;

	if (!s_is_field(&n->lhs) && !s_is_field(&n->rhs)) {
		s_fail(p, at, "'%s' compares two constants", op);
		return false;
	}
	if (n->op >= CMP_CONTAINS)
		return s_check_string_op(p, n, at);
	if (!s_is_field(&n->lhs)) {
		/* Literal on the left: mirror, so evaluation sees field op literal. */
		static const cmpop_t mirror[] = { CMP_EQ, CMP_NE, CMP_GT, CMP_GE, CMP_LT, CMP_LE };
		operand_t tmp = n->lhs;

		n->lhs = n->rhs;
		n->rhs = tmp;
		n->op = mirror[n->op];
	}
	field = &n->lhs;
	lit = s_is_field(&n->rhs) ? NULL : &n->rhs;
	if (!lit)
		return true;
	if (field->kind == OP_CORE && lit->lit.kind != V_STR) {
		s_fail(p, at, "'%s' compares the string attribute '%s' with a %s", op, field->name,
		       s_kind_name(lit->lit.kind));
		return false;
	}
	if (ordering && lit->lit.kind == V_BOOL) {
		s_fail(p, at, "'%s' cannot order booleans (use == or !=)", op);
		return false;
	}
	return true;
}

/* Parses the list after `in` (current token '[') into n->list. */
static bool s_parse_list(parser_t *p, node_t *n)
{
	size_t cap = 0;

	s_advance(p);
	for (;;) {
		value_t v;

		if (!s_at_literal(p)) {
			s_fail_tok(p, "expected a value in the list");
			return false;
		}
		if (n->n_list > 0 &&
		    !s_same_kind(n->list[0].kind, p->tok.type == T_STRING   ? V_STR
						  : p->tok.type == T_NUMBER ? V_INT
									    : V_BOOL)) {
			s_fail_tok(p, "expected a %s in the list (a list holds values of one type)",
				   s_kind_name(n->list[0].kind));
			return false;
		}
		if (n->n_list == cap) {
			size_t new_cap = cap ? cap * 2 : 4;
			value_t *list = realloc(n->list, new_cap * sizeof *list);

			if (!list) {
				s_fail(p, p->tok.start, "out of memory");
				return false;
			}
			n->list = list;
			cap = new_cap;
		}
		if (!s_parse_literal(p, &v))
			return false;
		n->list[n->n_list++] = v;
		if (p->tok.type == T_RBRACK) {
			s_advance(p);
			return true;
		}
		if (p->tok.type != T_COMMA) {
			s_fail_tok(p, "expected ',' or ']'");
			return false;
		}
		s_advance(p);
	}
}

/* Type-checks `field in [list]`. `at` is the offset of `in`. */
static bool s_check_in(parser_t *p, const node_t *n, size_t at)
{
	if (!s_is_field(&n->lhs)) {
		s_fail(p, at, "'in' compares two constants");
		return false;
	}
	if (n->lhs.kind == OP_CORE && n->list[0].kind != V_STR) {
		s_fail(p, at, "'in' compares the string attribute '%s' with a list of %ss",
		       n->lhs.name, s_kind_name(n->list[0].kind));
		return false;
	}
	return true;
}

/* exists FIELD */
static node_t *s_parse_exists(parser_t *p)
{
	node_t *n = s_node_new(p, N_EXISTS, p->tok.start);

	if (!n)
		return NULL;
	s_advance(p);
	if (!s_at_operand(p) || s_at_literal(p) || p->tok.type != T_WORD) {
		s_fail_tok(p, "expected a field after 'exists'");
		goto fail;
	}
	if (!s_parse_field(p, &n->lhs))
		goto fail;
	n->end = s_prev_end(p);
	return n;
fail:
	s_node_destroy(&n);
	return NULL;
}

/* ( or_expr ) */
static node_t *s_parse_group(parser_t *p)
{
	node_t *n;

	if (++p->depth > EXPR_MAX_DEPTH) {
		s_fail(p, p->tok.start,
		       "expression nested too deeply at column %zu (at most %d "
		       "levels)",
		       p->tok.start + 1, EXPR_MAX_DEPTH);
		return NULL;
	}
	s_advance(p);
	n = s_parse_or(p);
	if (!n)
		return NULL;
	if (p->tok.type != T_RPAREN) {
		s_fail_tok(p, "expected ')'");
		s_node_destroy(&n);
		return NULL;
	}
	s_advance(p);
	p->depth--;
	return n;
}

/* The text after "expected a condition": " after 'and'" when there is a previous token. */
static void s_fail_condition(parser_t *p)
{
	if (p->prev.len)
		s_fail_tok(p, "expected a condition after '%.*s'", (int)p->prev.len,
			   p->text + p->prev.start);
	else
		s_fail_tok(p, "expected a condition");
}

/* A comparison or `in` test, starting at an operand. */
static node_t *s_parse_test(parser_t *p)
{
	node_t *n = s_node_new(p, N_CMP, p->tok.start);
	size_t at;

	if (!n)
		return NULL;
	if (!s_parse_operand(p, &n->lhs))
		goto fail;
	at = p->tok.start;
	if (p->tok.type == T_CMP || s_at_string_op(p) >= 0) {
		n->op = p->tok.type == T_CMP ? p->tok.op : (cmpop_t)s_at_string_op(p);
		s_advance(p);
		if (p->tok.type == T_LBRACK) {
			s_fail(p, p->tok.start,
			       "unexpected '[' at column %zu: a list may only "
			       "follow 'in'",
			       p->tok.start + 1);
			goto fail;
		}
		if (!s_at_operand(p)) {
			s_fail_tok(p, "expected a value after '%s'", s_cmpop_text[n->op]);
			goto fail;
		}
		if (!s_parse_operand(p, &n->rhs) || !s_check_cmp(p, n, at))
			goto fail;
	} else if (s_at_word(p, "in")) {
		n->kind = N_IN;
		s_advance(p);
		if (p->tok.type != T_LBRACK) {
			s_fail_tok(p, "expected a list after 'in'");
			goto fail;
		}
		if (!s_parse_list(p, n) || !s_check_in(p, n, at))
			goto fail;
	} else {
		s_fail_tok(p, "expected a comparison after '%.*s'",
			   (int)(n->lhs.end - n->lhs.start > EXPR_QUOTE_MAX
					 ? EXPR_QUOTE_MAX
					 : n->lhs.end - n->lhs.start),
			   p->text + n->lhs.start);
		goto fail;
	}
	n->end = s_prev_end(p);
	return n;
fail:
	s_node_destroy(&n);
	return NULL;
}

/* True at the word `any` followed by '(' — so that an extension named any still reads as one. */
static bool s_at_any(const parser_t *p)
{
	size_t i = p->pos;

	if (!s_at_word(p, "any"))
		return false;
	while (p->text[i] == ' ' || p->text[i] == '\t' || p->text[i] == '\n' || p->text[i] == '\r')
		i++;
	return p->text[i] == '(';
}

/* any(FIELD, CONDITION): true when CONDITION holds for some element of the array at FIELD,
 * where `item` names the element (item.a.b a path below it). */
static node_t *s_parse_any(parser_t *p)
{
	node_t *n = s_node_new(p, N_ANY, p->tok.start), *cond = NULL;

	if (!n)
		return NULL;
	if (++p->depth > EXPR_MAX_DEPTH) {
		s_fail(p, p->tok.start,
		       "expression nested too deeply at column %zu (at most %d "
		       "levels)",
		       p->tok.start + 1, EXPR_MAX_DEPTH);
		goto fail;
	}
	s_advance(p); /* any */
	s_advance(p); /* ( */
	if (p->tok.type != T_WORD || s_at_literal(p) || s_at_keyword(p)) {
		s_fail_tok(p, "expected a data field after 'any('");
		goto fail;
	}
	if (!s_parse_field(p, &n->lhs))
		goto fail;
	if (n->lhs.kind != OP_DATA && n->lhs.kind != OP_ITEM) {
		s_fail(p, n->lhs.start,
		       "any() at column %zu looks through a data field (data.list), "
		       "not the attribute '%s'",
		       n->start + 1, n->lhs.name);
		goto fail;
	}
	if (p->tok.type != T_COMMA) {
		s_fail_tok(p, "expected ',' and a condition on item");
		goto fail;
	}
	s_advance(p);
	p->any_depth++;
	cond = s_parse_or(p);
	p->any_depth--;
	if (!cond || !s_push_kid(p, n, cond))
		goto fail;
	cond = NULL;
	if (p->tok.type != T_RPAREN) {
		s_fail_tok(p, "expected ')'");
		goto fail;
	}
	s_advance(p);
	p->depth--;
	n->end = s_prev_end(p);
	return n;
fail:
	s_node_destroy(&cond);
	s_node_destroy(&n);
	return NULL;
}

static node_t *s_parse_primary(parser_t *p)
{
	if (p->tok.type == T_LPAREN)
		return s_parse_group(p);
	if (s_at_any(p))
		return s_parse_any(p);
	if (s_at_word(p, "exists"))
		return s_parse_exists(p);
	if (p->tok.type == T_LBRACK) {
		s_fail(p, p->tok.start, "unexpected '[' at column %zu: a list may only follow 'in'",
		       p->tok.start + 1);
		return NULL;
	}
	if (!s_at_operand(p)) {
		s_fail_condition(p);
		return NULL;
	}
	return s_parse_test(p);
}

static node_t *s_parse_not(parser_t *p)
{
	node_t *n, *kid;

	if (!s_at_word(p, "not"))
		return s_parse_primary(p);
	if (++p->depth > EXPR_MAX_DEPTH) {
		s_fail(p, p->tok.start,
		       "expression nested too deeply at column %zu (at most %d "
		       "levels)",
		       p->tok.start + 1, EXPR_MAX_DEPTH);
		return NULL;
	}
	n = s_node_new(p, N_NOT, p->tok.start);
	if (!n)
		return NULL;
	s_advance(p);
	kid = s_parse_not(p);
	if (!kid || !s_push_kid(p, n, kid)) {
		s_node_destroy(&kid);
		s_node_destroy(&n);
		return NULL;
	}
	p->depth--;
	n->end = s_prev_end(p);
	return n;
}

/* A chain of `sub` joined by the keyword: one node with n children, or the single child. */
static node_t *s_parse_chain(parser_t *p, nkind_t kind, const char *keyword,
			     node_t *(*sub)(parser_t *))
{
	node_t *first = sub(p), *n, *kid;

	if (!first || !s_at_word(p, keyword))
		return first;
	n = s_node_new(p, kind, first->start);
	if (!n || !s_push_kid(p, n, first)) {
		s_node_destroy(&first);
		s_node_destroy(&n);
		return NULL;
	}
	while (s_at_word(p, keyword)) {
		s_advance(p);
		kid = sub(p);
		if (!kid || !s_push_kid(p, n, kid)) {
			s_node_destroy(&kid);
			s_node_destroy(&n);
			return NULL;
		}
	}
	n->end = s_prev_end(p);
	return n;
}

static node_t *s_parse_and(parser_t *p)
{
	return s_parse_chain(p, N_AND, "and", s_parse_not);
}

static node_t *s_parse_or(parser_t *p)
{
	return s_parse_chain(p, N_OR, "or", s_parse_and);
}

expr_t *expr_parse(const char *text, kanal_error_t *err)
{
	parser_t p;
	expr_t *e = NULL;
	node_t *root = NULL;

	memset(&p, 0, sizeof p);
	p.text = text ? text : "";
	expr_lex_next(&p);
	if (p.tok.type == T_END) {
		s_fail(&p, 0, "empty expression");
		goto fail;
	}
	root = s_parse_or(&p);
	if (!root)
		goto fail;
	if (p.tok.type == T_RPAREN)
		s_fail(&p, p.tok.start, "unexpected ')' at column %zu without a matching '('",
		       p.tok.start + 1);
	else if (p.tok.type != T_END)
		s_fail_tok(&p, "expected 'and', 'or' or end of expression");
	if (p.failed)
		goto fail;
	e = calloc(1, sizeof *e);
	if (!e || !(e->text = strdup(p.text))) {
		s_fail(&p, 0, "out of memory");
		goto fail;
	}
	e->root = root;
	e->uses_data = p.uses_data;
	return e;
fail:
	if (!p.failed)
		s_fail(&p, 0, "invalid expression");
	s_node_destroy(&root);
	if (e)
		free(e->text);
	free(e);
	kanal_error_set(err, NULL, 1, (int)p.fail_at + 1, NULL, "%s", p.fail_text);
	return NULL;
}

/* ---- data paths with quoted keys ------------------------------------------------------------ */

static bool s_path_quoted(const char *path)
{
	return strchr(path, '\\') != NULL;
}

/* The end of the path segment at seg: the next '.' that is not escaped, or the NUL. */
static const char *s_segment_end(const char *seg)
{
	while (*seg && *seg != '.')
		seg += seg[0] == '\\' && seg[1] ? 2 : 1;
	return seg;
}

/* Reads seg[0..n) as an array index the way the SDK's paths do (decimal, no leading 0). */
static bool s_array_index(const char *seg, size_t n, size_t *out)
{
	size_t v = 0;

	if (n == 0 || n > 18 || (n > 1 && seg[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!expr__is_digit(seg[i]))
			return false;
		v = v * 10 + (size_t)(seg[i] - '0');
	}
	*out = v;
	return true;
}

/* Finds the data value at a path with a quoted key: the JSON of the path's plain prefix
 * (the segments before the first escaped one) is parsed and the rest walked step by step.
 * Returns the value, borrowed from *root_out (which the caller json_decrefs), or NULL. */
static json_t *s_quoted_lookup(const kanal_msg_t *msg, const char *path, json_t **root_out)
{
	const char *seg = path, *end;
	char *prefix, *json = NULL, *key;
	json_t *node = NULL;

	for (;;) {
		end = s_segment_end(seg);
		if (memchr(seg, '\\', (size_t)(end - seg)) || !*end)
			break;
		seg = end + 1;
	}
	prefix = strndup(path, seg == path ? 0 : (size_t)(seg - path - 1));
	if (prefix)
		json = kanal_msg_data_json(msg, prefix);
	free(prefix);
	if (json)
		node = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	kanal_free(json);
	*root_out = node;
	key = malloc(strlen(seg) + 1);
	if (!key)
		return NULL;
	while (node && *seg) {
		size_t n = 0, index;

		end = s_segment_end(seg);
		for (const char *c = seg; c < end; c++)
			key[n++] = c[0] == '\\' && c + 1 < end ? *++c : *c;
		key[n] = '\0';
		if (json_is_object(node))
			node = json_object_getn(node, key, n);
		else if (json_is_array(node) && s_array_index(key, n, &index))
			node = json_array_get(node, index);
		else
			node = NULL;
		seg = *end ? end + 1 : end;
	}
	free(key);
	return node;
}

/* Reads the value at a path with a quoted key, of whatever type it has; a string keeps the
 * tree it lives in in v->hold. */
static void s_fetch_quoted(const char *path, const kanal_msg_t *msg, value_t *v)
{
	json_t *root, *node = s_quoted_lookup(msg, path, &root);

	if (!node) {
		v->kind = V_ABSENT;
	} else if (json_is_string(node)) {
		v->kind = V_STR;
		v->s = json_string_value(node);
		v->hold = root;
		return;
	} else if (json_is_integer(node)) {
		v->kind = V_INT;
		v->i = json_integer_value(node);
	} else if (json_is_real(node)) {
		v->kind = V_DBL;
		v->d = json_real_value(node);
	} else if (json_is_boolean(node)) {
		v->kind = V_BOOL;
		v->b = json_is_true(node);
	} else {
		v->kind = V_OTHER;
	}
	json_decref(root);
}

void expr__value_drop(value_t *v)
{
	json_decref(v->hold);
	v->hold = NULL;
}

char *expr__data_json(const kanal_msg_t *msg, const char *path)
{
	json_t *root, *node;
	char *json;

	if (!s_path_quoted(path))
		return kanal_msg_data_json(msg, path);
	node = s_quoted_lookup(msg, path, &root);
	json = node ? json_dumps(node, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	json_decref(root);
	return json;
}

/* ---- evaluation ---------------------------------------------------------------------------- */

/* Reads the data value at path as the hint asks: one typed lookup when the type is known,
 * trying each type in turn otherwise. */
static void s_fetch_data(const char *path, const kanal_msg_t *msg, hint_t hint, value_t *v)
{
	int rc;

	if (s_path_quoted(path)) {
		s_fetch_quoted(path, msg, v);
		return;
	}

	if (hint == H_STR || hint == H_ANY) {
		rc = kanal_msg_data_str(msg, path, &v->s);
		if (rc == 0) {
			v->kind = V_STR;
			return;
		}
		if (rc == KANAL_ENOTFOUND)
			return;
		if (hint == H_STR) {
			v->kind = V_OTHER;
			return;
		}
	}
	if (hint == H_NUM || hint == H_ANY) {
		rc = kanal_msg_data_int(msg, path, &v->i);
		if (rc == 0) {
			v->kind = V_INT;
			return;
		}
		if (rc == KANAL_ENOTFOUND)
			return;
		rc = kanal_msg_data_double(msg, path, &v->d);
		if (rc == 0) {
			v->kind = V_DBL;
			return;
		}
		if (hint == H_NUM) {
			v->kind = V_OTHER;
			return;
		}
	}
	rc = kanal_msg_data_bool(msg, path, &v->b);
	if (rc == 0)
		v->kind = V_BOOL;
	else if (rc != KANAL_ENOTFOUND)
		v->kind = V_OTHER;
}

/* Reads an extension's text as the hint asks (see the file comment). With no hint (only
 * when the other side is absent or not comparable, or to show the value), text that reads
 * as a number or boolean is taken as one. */
static void s_fetch_ext(const char *text, hint_t hint, value_t *v)
{
	v->kind = V_STR;
	v->s = text;
	if (hint == H_NUM || hint == H_ANY) {
		value_t num = { 0 };

		if (s_parse_number(text, strlen(text), &num) == 0) {
			*v = num;
			return;
		}
	}
	if ((hint == H_BOOL || hint == H_ANY) &&
	    (!strcmp(text, "true") || !strcmp(text, "false"))) {
		v->kind = V_BOOL;
		v->b = text[0] == 't';
	}
}

/* Joins a data path and a step below it into buf ("a.b" + "0" → "a.b.0"). Returns buf, or
 * NULL when it does not fit (the field then reads as absent). */
const char *expr__join(char *buf, size_t size, const char *base, const char *step)
{
	int n;

	if (!base[0] || !step[0])
		n = snprintf(buf, size, "%s%s", base, step);
	else
		n = snprintf(buf, size, "%s.%s", base, step);
	return n < 0 || (size_t)n >= size ? NULL : buf;
}

/* The data path an operand reads: a data field's own, or inside any() the element's path
 * joined with the item's (written into buf). NULL when it does not fit. */
const char *expr__data_path(const operand_t *o, const ectx_t *cx, char *buf, size_t size)
{
	if (o->kind == OP_ITEM)
		return cx->item ? expr__join(buf, size, cx->item, o->name) : NULL;
	return o->name;
}

/* The value of an operand in msg; v->kind V_ABSENT when the field is absent. */
void expr__fetch(const operand_t *o, const ectx_t *cx, hint_t hint, value_t *v)
{
	const kanal_msg_t *msg = cx->msg;
	char buf[EXPR_PATH_MAX];
	const char *text, *path;

	memset(v, 0, sizeof *v);
	switch (o->kind) {
	case OP_LIT:
		*v = o->lit;
		break;
	case OP_CORE:
		text = o->get(msg);
		if (text) {
			v->kind = V_STR;
			v->s = text;
		}
		break;
	case OP_EXT:
		text = kanal_msg_attr(msg, o->name);
		if (text)
			s_fetch_ext(text, hint, v);
		break;
	case OP_DATA:
	case OP_ITEM:
		path = expr__data_path(o, cx, buf, sizeof buf);
		if (path)
			s_fetch_data(path, msg, hint, v);
		break;
	}
}

hint_t expr__hint_for(vkind_t kind)
{
	switch (kind) {
	case V_STR:
		return H_STR;
	case V_INT:
	case V_DBL:
		return H_NUM;
	case V_BOOL:
		return H_BOOL;
	default:
		return H_ANY;
	}
}

static bool s_order(cmpop_t op, int c)
{
	switch (op) {
	case CMP_EQ:
		return c == 0;
	case CMP_NE:
		return c != 0;
	case CMP_LT:
		return c < 0;
	case CMP_LE:
		return c <= 0;
	case CMP_GT:
		return c > 0;
	case CMP_GE:
		return c >= 0;
	default: /* the string operators do not order */
		return false;
	}
	return false;
}

/* Compares two values; false when either is absent or their types differ. */
static bool s_compare(cmpop_t op, const value_t *a, const value_t *b)
{
	bool num_a = a->kind == V_INT || a->kind == V_DBL;
	bool num_b = b->kind == V_INT || b->kind == V_DBL;

	if (a->kind == V_INT && b->kind == V_INT)
		return s_order(op, (a->i > b->i) - (a->i < b->i));
	if (num_a && num_b) {
		double x = a->kind == V_INT ? (double)a->i : a->d;
		double y = b->kind == V_INT ? (double)b->i : b->d;

		return s_order(op, (x > y) - (x < y));
	}
	if (a->kind == V_STR && b->kind == V_STR && op >= CMP_CONTAINS) {
		size_t la = strlen(a->s), lb = strlen(b->s);

		if (op == CMP_CONTAINS)
			return strstr(a->s, b->s) != NULL;
		if (op == CMP_STARTS)
			return la >= lb && memcmp(a->s, b->s, lb) == 0;
		return la >= lb && memcmp(a->s + la - lb, b->s, lb) == 0;
	}
	if (a->kind == V_STR && b->kind == V_STR)
		return s_order(op, strcmp(a->s, b->s));
	if (a->kind == V_BOOL && b->kind == V_BOOL && (op == CMP_EQ || op == CMP_NE))
		return s_order(op, (int)a->b - (int)b->b);
	return false;
}

/* Fetches both sides of a comparison. A literal tells the field's wanted type; between two
 * fields, an extension is read in the type of the other side. */
void expr__fetch_pair(const node_t *n, const ectx_t *msg, value_t *a, value_t *b)
{
	if (n->rhs.kind == OP_LIT) {
		*b = n->rhs.lit;
		expr__fetch(&n->lhs, msg, expr__hint_for(b->kind), a);
	} else if (n->lhs.kind == OP_EXT && n->rhs.kind != OP_EXT) {
		expr__fetch(&n->rhs, msg, H_ANY, b);
		expr__fetch(&n->lhs, msg, expr__hint_for(b->kind), a);
	} else {
		expr__fetch(&n->lhs, msg, n->lhs.kind == OP_EXT ? H_STR : H_ANY, a);
		expr__fetch(&n->rhs, msg, n->rhs.kind == OP_EXT ? expr__hint_for(a->kind) : H_ANY,
			    b);
	}
}

static bool s_eval_cmp(const node_t *n, const ectx_t *msg)
{
	value_t a, b;

	bool result;

	expr__fetch_pair(n, msg, &a, &b);
	if (n->op == CMP_MATCHES)
		result = a.kind == V_STR && regexec(n->re, a.s, 0, NULL, 0) == 0;
	else
		result = s_compare(n->op, &a, &b);
	expr__value_drop(&a);
	expr__value_drop(&b);
	return result;
}

static bool s_eval_in(const node_t *n, const ectx_t *msg)
{
	value_t v;
	bool found = false;

	expr__fetch(&n->lhs, msg, expr__hint_for(n->list[0].kind), &v);
	for (size_t i = 0; i < n->n_list && v.kind != V_ABSENT && !found; i++)
		found = s_compare(CMP_EQ, &v, &n->list[i]);
	expr__value_drop(&v);
	return found;
}

/* Whether the data path holds a value other than null. */
static bool s_data_present(const char *path, const kanal_msg_t *msg)
{
	kanal_data_kind_t kind = kanal_msg_data_kind(msg);
	value_t v;
	char *json;
	bool present;

	if (kind == KANAL_DATA_BINARY)
		return path[0] == '\0';
	if (kind != KANAL_DATA_JSON)
		return false;
	memset(&v, 0, sizeof v);
	s_fetch_data(path, msg, H_ANY, &v);
	expr__value_drop(&v);
	if (v.kind != V_OTHER)
		return v.kind != V_ABSENT;
	/* An object, an array or null: only the text tells which. */
	json = expr__data_json(msg, path);
	present = json && strcmp(json, "null") != 0;
	kanal_free(json);
	return present;
}

static bool s_eval_exists(const node_t *n, const ectx_t *cx)
{
	char buf[EXPR_PATH_MAX];
	const char *path;

	switch (n->lhs.kind) {
	case OP_CORE:
		return n->lhs.get(cx->msg) != NULL;
	case OP_EXT:
		return kanal_msg_attr(cx->msg, n->lhs.name) != NULL;
	case OP_DATA:
	case OP_ITEM:
		path = expr__data_path(&n->lhs, cx, buf, sizeof buf);
		return path && s_data_present(path, cx->msg);
	default:
		return false;
	}
}

/* Counts the elements of the array at the any() node's field (0 when it is absent or not an
 * array; at most EXPR_ANY_MAX) and writes its path into buf. */
size_t expr__any_count(const node_t *n, const ectx_t *cx, char *buf, size_t size)
{
	char tmp[EXPR_PATH_MAX];
	const char *path = expr__data_path(&n->lhs, cx, tmp, sizeof tmp);
	char *json;
	size_t count = 0;

	if (!path || kanal_msg_data_kind(cx->msg) != KANAL_DATA_JSON ||
	    (size_t)snprintf(buf, size, "%s", path) >= size)
		return 0;
	/* Only an array has elements: an object whose keys are "0", "1"… does not. */
	json = expr__data_json(cx->msg, buf);
	if (json && json[0] == '[') {
		json_t *array = json_loads(json, JSON_DECODE_ANY, NULL);

		count = json_array_size(array);
		json_decref(array);
		if (count > EXPR_ANY_MAX)
			count = EXPR_ANY_MAX;
	}
	kanal_free(json);
	return count;
}

/* any(FIELD, COND): evaluates COND with `item` at each element in turn. */
static bool s_eval_any(const node_t *n, const ectx_t *cx)
{
	char path[EXPR_PATH_MAX], elem[EXPR_PATH_MAX];
	size_t count = expr__any_count(n, cx, path, sizeof path);

	for (size_t i = 0; i < count; i++) {
		char step[24];
		ectx_t inner = { cx->msg, elem };

		snprintf(step, sizeof step, "%zu", i);
		if (expr__join(elem, sizeof elem, path, step) && expr__eval(n->kids[0], &inner))
			return true;
	}
	return false;
}

bool expr__eval(const node_t *n, const ectx_t *msg)
{
	switch (n->kind) {
	case N_OR:
		for (size_t i = 0; i < n->n_kids; i++)
			if (expr__eval(n->kids[i], msg))
				return true;
		return false;
	case N_AND:
		for (size_t i = 0; i < n->n_kids; i++)
			if (!expr__eval(n->kids[i], msg))
				return false;
		return true;
	case N_NOT:
		return !expr__eval(n->kids[0], msg);
	case N_CMP:
		return s_eval_cmp(n, msg);
	case N_IN:
		return s_eval_in(n, msg);
	case N_EXISTS:
		return s_eval_exists(n, msg);
	case N_ANY:
		return s_eval_any(n, msg);
	}
	return false;
}

bool expr_eval(const expr_t *expr, const kanal_msg_t *msg)
{
	ectx_t cx = { msg, NULL };

	if (!expr || !msg)
		return false;
	return expr__eval(expr->root, &cx);
}
