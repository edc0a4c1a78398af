/*
 * tests/fuzz/fuzz_where.c — the `where` expression parser and evaluator: any text either
 * fails with an error that has a column inside the text, or compiles and evaluates (and
 * explains) against a typical event without fault.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

#include "expr.h"

static const char s_event[] =
	"{\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"daycare\","
	"\"type\":\"child.absence.reported\",\"subject\":\"person:ab\","
	"\"data\":{\"reason\":\"sick\",\"days\":2,\"ok\":true,\"x\":{\"y\":[1,2]},"
	"\"child_cpr\":\"1404214382\",\"f\":1.5e3,"
	"\"no.dk/kommune\":\"0101\",\"a.b\":{\"c\":[{\"x.y\":1}]}}}";

FUZZ_TARGET(where)
{
	static kanal_msg_t *msg;
	char *text = malloc(size + 1);
	kanal_error_t err;
	expr_t *e;

	if (!text)
		return 0;
	if (!msg && kanal_msg_parse(s_event, sizeof s_event - 1, 0, &msg, NULL) != 0)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	kanal_error_clear(&err);
	e = expr_parse(text, &err);
	if (e) {
		char why[256];
		(void)expr_eval(e, msg);
		(void)expr_explain(e, msg, why, sizeof why);
		(void)expr_uses_data(e);
		expr_destroy(&e);
	} else if (err.column < 0 || (size_t)err.column > strlen(text) + 1 || !err.text[0]) {
		abort(); /* an error must say what and point inside the text */
	}
	free(text);
	return 0;
}
