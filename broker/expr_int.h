/*
 * broker/expr_int.h — what the files of `where` expressions share: expr.c (parser, type
 * checker, evaluator), expr_lex.c (the lexer) and expr_explain.c (why an expression is
 * false). The values, the tree, the tokens and the parser's state, and the few functions
 * one file calls in another. Nothing here is for other modules: they use expr.h.
 */
#ifndef KANAL_EXPR_INT_H
#define KANAL_EXPR_INT_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kanal/kanal.h>

#include "expr.h"

/* Deepest nesting of parentheses and `not`, so hostile input cannot exhaust the stack. */
#define EXPR_MAX_DEPTH 64
/* How much of a token or a string value an error or explanation quotes. */
#define EXPR_QUOTE_MAX 40
#define EXPR_VALUE_MAX 64
/* Longest data path any() builds (the array's path, an index, the item's path). */
#define EXPR_PATH_MAX 512
/* Most elements any() looks at in one array. */
#define EXPR_ANY_MAX 10000

/* ---- values and the tree ---------------------------------------------------------------- */

typedef enum vkind {
	V_ABSENT = 0,
	V_STR,
	V_INT,
	V_DBL,
	V_BOOL,
	V_OTHER, /* present but not comparable: an object, an array, null */
} vkind_t;

typedef struct value {
	vkind_t kind;
	const char *s;
	int64_t i;
	double d;
	bool b;
	struct json_t *hold; /* a data field under a quoted key: the tree s lives in (owned) */
} value_t;

/* What a comparison wants a field read as, so that one typed lookup suffices. */
typedef enum hint {
	H_ANY = 0,
	H_STR,
	H_NUM,
	H_BOOL,
} hint_t;

typedef enum okind {
	OP_LIT = 0,
	OP_CORE,
	OP_EXT,
	OP_DATA,
	OP_ITEM, /* inside any(): the current element ("item") or a path below it */
} okind_t;

typedef const char *(*attr_getter_t)(const kanal_msg_t *msg);

typedef struct operand {
	okind_t kind;
	value_t lit;       /* OP_LIT; a string is owned (char *) */
	char *name;        /* OP_EXT: the name; OP_DATA: the path after "data." ("" for data);
			     * OP_ITEM: the path after "item." ("" for item). In a quoted
			     * key, '.' and '\' are kept with a '\' before them */
	attr_getter_t get; /* OP_CORE */
	size_t start, end; /* source span */
} operand_t;

typedef enum cmpop {
	CMP_EQ = 0,
	CMP_NE,
	CMP_LT,
	CMP_LE,
	CMP_GT,
	CMP_GE,
	CMP_CONTAINS, /* the string operators: a string field and a string literal */
	CMP_STARTS,
	CMP_ENDS,
	CMP_MATCHES,
} cmpop_t;

typedef enum nkind {
	N_OR = 0,
	N_AND,
	N_NOT,
	N_CMP,
	N_IN,
	N_EXISTS,
	N_ANY,
} nkind_t;

typedef struct node {
	nkind_t kind;
	size_t start, end;  /* source span */
	struct node **kids; /* N_OR, N_AND (n), N_NOT and N_ANY (1: the condition) */
	size_t n_kids;
	cmpop_t op;    /* N_CMP */
	operand_t lhs; /* N_CMP, N_IN, N_EXISTS, N_ANY: always a field after parsing */
	operand_t rhs; /* N_CMP */
	value_t *list; /* N_IN: literals of one kind (V_INT and V_DBL may mix) */
	size_t n_list;
	regex_t *re; /* N_CMP with CMP_MATCHES: compiled at parse time */
} node_t;

/* What evaluation looks at: the message and, inside any(), the data path of the element at
 * hand (NULL outside). */
typedef struct ectx {
	const kanal_msg_t *msg;
	const char *item;
} ectx_t;

struct expr {
	char *text;
	node_t *root;
	bool uses_data;
};

/* ---- tokens and the parser's state ----------------------------------------------------- */

typedef enum ttype {
	T_END = 0,
	T_ERROR,
	T_LPAREN,
	T_RPAREN,
	T_LBRACK,
	T_RBRACK,
	T_COMMA,
	T_CMP,
	T_STRING,
	T_NUMBER,
	T_WORD,
} ttype_t;

typedef struct token {
	ttype_t type;
	size_t start, len;
	cmpop_t op; /* T_CMP */
} token_t;

typedef struct parser {
	const char *text;
	size_t pos;          /* where the next token is lexed */
	token_t tok;         /* the current (lookahead) token */
	token_t prev;        /* the last consumed token; prev.len 0 at the start */
	char lex_error[192]; /* when tok.type is T_ERROR: what is wrong with it */
	size_t lex_error_at; /* and at which offset */
	int depth;
	int any_depth; /* inside how many any() conditions: there `item` is the element */
	bool failed;
	size_t fail_at;
	char fail_text[sizeof(((kanal_error_t *)0)->text)];
	bool uses_data;
} parser_t;

/* ---- across the files ------------------------------------------------------------------- */

/* expr.c: true for an ASCII digit. */
bool expr__is_digit(char c);
/* expr.c: the length to quote of text[0..len), at most max, cut neither inside a UTF-8
 * sequence nor inside a run of digits; *cut says whether anything was dropped. */
size_t expr__safe_cut(const char *text, size_t len, size_t max, bool *cut);
/* expr.c: evaluates node n (and its children) for the message in msg. */
bool expr__eval(const node_t *n, const ectx_t *msg);
/* expr.c: true for a comparison, an `in` or an `exists`. */
bool expr__is_leaf(const node_t *n);
/* expr.c: the value of an operand, read as the hint asks; V_ABSENT when absent. Strings
 * borrow from the message or the tree. */
void expr__fetch(const operand_t *o, const ectx_t *cx, hint_t hint, value_t *v);
/* expr.c: both sides of a comparison, each read as the other side's kind asks. */
void expr__fetch_pair(const node_t *n, const ectx_t *msg, value_t *a, value_t *b);
/* expr.c: how a field is to be read to compare with a value of this kind. */
hint_t expr__hint_for(vkind_t kind);
/* expr.c: "base.step" into buf; NULL when it does not fit. */
const char *expr__join(char *buf, size_t size, const char *base, const char *step);
/* expr.c: the data path an operand reads (written into buf inside any()); NULL when it
 * does not fit. */
const char *expr__data_path(const operand_t *o, const ectx_t *cx, char *buf, size_t size);
/* expr.c: the elements an any() has in the message; its array's path is written to buf. */
size_t expr__any_count(const node_t *n, const ectx_t *cx, char *buf, size_t size);
/* expr.c: releases what a fetched value holds (expr__fetch, expr__fetch_pair). */
void expr__value_drop(value_t *v);
/* expr.c: the JSON text of the data value at path (NULL when absent), like
 * kanal_msg_data_json but also for paths with quoted keys. Returns a string to kanal_free. */
char *expr__data_json(const kanal_msg_t *msg, const char *path);
/* expr_lex.c: reads the next token at p->pos into p->tok. */
void expr_lex_next(parser_t *p);

#endif
