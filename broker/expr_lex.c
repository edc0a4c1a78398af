/*
 * broker/expr_lex.c — the lexer of `where` expressions (expr.c parses them): reads the next
 * token — a parenthesis, bracket or comma, a comparison operator, a string literal with its
 * escapes, a number, or a word (a name, a keyword or a dotted data path, whose keys may be
 * quoted) — into the parser's lookahead. A token that cannot be read becomes T_ERROR with
 * its message and column kept in the parser, reported only when the parser looks at that
 * token, so errors come out in source order. The grammar and the error wording are described
 * in expr.c.
 */
#include <stdarg.h>
#include <stdio.h>

#include "expr_int.h"

/* Records a lexical error on the current token. It is reported only when the parser looks
 * at that token, so errors come out in source order. */
__attribute__((format(printf, 3, 4))) static void s_lex_fail(parser_t *p, size_t at,
							     const char *fmt, ...)
{
	va_list ap;

	p->tok.type = T_ERROR;
	p->lex_error_at = at;
	va_start(ap, fmt);
	vsnprintf(p->lex_error, sizeof p->lex_error, fmt, ap);
	va_end(ap);
}

static bool s_is_word_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool s_is_word_char(char c)
{
	return s_is_word_start(c) || expr__is_digit(c);
}

static bool s_is_segment_char(char c)
{
	return s_is_word_char(c) || c == '-';
}

/* Lexes a string literal starting at the quote at i; returns its length with both quotes or
 * 0 after recording an error. */
static size_t s_lex_string(parser_t *p, size_t i)
{
	const char *t = p->text;
	size_t j = i + 1;

	for (;;) {
		unsigned char c = (unsigned char)t[j];

		if (c == '\0') {
			s_lex_fail(p, i, "unterminated string starting at column %zu", i + 1);
			return 0;
		}
		if (c == '"')
			return j + 1 - i;
		if (c == '\\') {
			char e = t[j + 1];

			if (e == '"' || e == '\\' || e == 'n' || e == 't') {
				j += 2;
				continue;
			}
			if (e == '\0') {
				s_lex_fail(p, i, "unterminated string starting at column %zu",
					   i + 1);
			} else if (e > ' ' && e < 0x7f) {
				s_lex_fail(p, j, "unknown escape '\\%c' in string at column %zu", e,
					   j + 1);
			} else {
				s_lex_fail(p, j, "unknown escape in string at column %zu", j + 1);
			}
			return 0;
		}
		if (c < 0x20) {
			s_lex_fail(p, j,
				   "control character in string at column %zu (write \\n or \\t)",
				   j + 1);
			return 0;
		}
		j++;
	}
}

/* Lexes a number at i (the syntax only; the value is read by the parser). */
static size_t s_lex_number(parser_t *p, size_t i)
{
	const char *t = p->text;
	size_t j = i;

	if (t[j] == '-')
		j++;
	if (!expr__is_digit(t[j])) {
		s_lex_fail(p, j, "expected a digit after '-' at column %zu", j + 1);
		return 0;
	}
	while (expr__is_digit(t[j]))
		j++;
	if (t[j] == '.') {
		j++;
		if (!expr__is_digit(t[j])) {
			s_lex_fail(p, j, "expected a digit after '.' at column %zu", j + 1);
			return 0;
		}
		while (expr__is_digit(t[j]))
			j++;
	}
	return j - i;
}

/* Lexes a word: a name, a keyword or a dotted data path, whose segments may be quoted as in
 * jq (data."no.dk/kommune") to hold any characters. */
static size_t s_lex_word(parser_t *p, size_t i)
{
	const char *t = p->text;
	size_t j = i;

	while (s_is_word_char(t[j]))
		j++;
	while (t[j] == '.') {
		j++;
		if (t[j] == '"') {
			size_t quoted = s_lex_string(p, j);

			if (!quoted)
				return 0;
			j += quoted;
			continue;
		}
		if (!s_is_segment_char(t[j])) {
			s_lex_fail(p, j, "expected a field name after '.' at column %zu", j + 1);
			return 0;
		}
		while (s_is_segment_char(t[j]))
			j++;
	}
	return j - i;
}

/* Reads the next token into p->tok. */
void expr_lex_next(parser_t *p)
{
	const char *t = p->text;
	size_t i = p->pos, len = 1;
	char c;

	while (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r')
		i++;
	c = t[i];
	p->tok.start = i;
	p->tok.type = T_ERROR;
	switch (c) {
	case '\0':
		p->tok.type = T_END;
		len = 0;
		break;
	case '(':
		p->tok.type = T_LPAREN;
		break;
	case ')':
		p->tok.type = T_RPAREN;
		break;
	case '[':
		p->tok.type = T_LBRACK;
		break;
	case ']':
		p->tok.type = T_RBRACK;
		break;
	case ',':
		p->tok.type = T_COMMA;
		break;
	case '=':
		if (t[i + 1] == '=') {
			p->tok.type = T_CMP;
			p->tok.op = CMP_EQ;
			len = 2;
		} else {
			s_lex_fail(p, i, "unexpected '=' at column %zu (did you mean '=='?)",
				   i + 1);
		}
		break;
	case '!':
		if (t[i + 1] == '=') {
			p->tok.type = T_CMP;
			p->tok.op = CMP_NE;
			len = 2;
		} else {
			s_lex_fail(p, i,
				   "unexpected '!' at column %zu (did you mean '!=' or 'not'?)",
				   i + 1);
		}
		break;
	case '<':
	case '>':
		p->tok.type = T_CMP;
		if (t[i + 1] == '=') {
			p->tok.op = c == '<' ? CMP_LE : CMP_GE;
			len = 2;
		} else {
			p->tok.op = c == '<' ? CMP_LT : CMP_GT;
		}
		break;
	case '&':
		s_lex_fail(p, i, "unexpected '&' at column %zu (did you mean 'and'?)", i + 1);
		break;
	case '|':
		s_lex_fail(p, i, "unexpected '|' at column %zu (did you mean 'or'?)", i + 1);
		break;
	case '"':
		p->tok.type = T_STRING;
		len = s_lex_string(p, i);
		break;
	default:
		if (c == '-' || expr__is_digit(c)) {
			p->tok.type = T_NUMBER;
			len = s_lex_number(p, i);
		} else if (s_is_word_start(c)) {
			p->tok.type = T_WORD;
			len = s_lex_word(p, i);
		} else if (c > ' ' && c < 0x7f) {
			s_lex_fail(p, i, "unexpected character '%c' at column %zu", c, i + 1);
		} else {
			s_lex_fail(p, i, "unexpected byte 0x%02X at column %zu", (unsigned char)c,
				   i + 1);
		}
		break;
	}
	if (p->tok.type == T_ERROR)
		len = 1;
	p->tok.len = len;
	p->pos = i + len;
}
