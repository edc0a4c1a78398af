/*
 * broker/expr.h — `where` expressions of routing tables: parse, type-check, evaluate.
 *
 *   data.reason == "sick" and data.days <= 5
 *   type in ["order.placed", "order.changed"] or not exists subject
 *
 * Operands: attribute names (type, source, id, subject, time, specversion, datacontenttype,
 * dataschema, any extension name), data fields (data.a.b, data.list.0, and a key with dots
 * quoted as in jq: data."no.dk/kommune"), and literals (strings in double quotes with \"
 * and \\ escapes, numbers, true, false, and lists
 * [lit, …] for `in`). Operators: == != < <= > >= in, `exists FIELD`, and / or / not,
 * parentheses; the string operators contains, startswith, endswith and matches (POSIX
 * extended regex, compiled by expr_parse), each with a string literal on the right; and
 * any(data.list, COND), where `item` in COND names each element in turn.
 * Precedence: not > comparison > and > or.
 *
 * Evaluation: a comparison whose field is absent, or whose value has another type than the
 * literal, is false (so is `!=`); `not` inverts that. Strings compare bytewise.
 * Evaluation reads data only when the expression has a data.* operand.
 */
#ifndef KANAL_EXPR_H
#define KANAL_EXPR_H

#include <stdbool.h>
#include <stddef.h>
#include <kanal/kanal.h>

typedef struct expr expr_t;

/* Parses and type-checks `text`. On error returns NULL and fills err with a 1-based column
 * into `text` (err->line 1) and a message such as "expected a value after '=='" or
 * "'<' compares the string attribute 'type' with a number". Ownership: returns new. */
expr_t *expr_parse(const char *text, kanal_error_t *err);

void expr_destroy(expr_t **expr_p);

/* Evaluates against msg. Ownership: borrows both. */
bool expr_eval(const expr_t *expr, const kanal_msg_t *msg);

/* Evaluates like expr_eval and, when false, writes into why a short reason naming the first
 * comparison that failed and the value found (CPR numbers masked), e.g.
 * "data.days <= 5 is false: data.days is 7". */
bool expr_explain(const expr_t *expr, const kanal_msg_t *msg, char *why, size_t size);

/* True when the expression reads a data.* field. */
bool expr_uses_data(const expr_t *expr);

#endif
