/*
 * tests/unit/test_expr.c — `where` expressions: evaluation over a few realistic events (all
 * operators, precedence, lists, exists, extension types, absent fields, type mismatches),
 * every parse error with its exact message and column, explanations, and which expressions
 * need the event's data.
 *
 * Table rows that fail are reported with the expression text, passed through the CPR
 * redactor, so no clear number can reach the output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

#include "expr.h"
#include "test.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Reports a table row: passes or fails with a message naming the row (CPR numbers masked). */
static void s_row(bool ok, int line, const char *fmt, const char *a, const char *b)
{
	char msg[768];

	snprintf(msg, sizeof msg, fmt, a, b);
	kanal_cpr_redact_inplace(msg);
	CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, (unsigned)line, msg, __FILE__, "",
				CU_FALSE);
}

/* ---- the events ----------------------------------------------------------------------------- */

enum { EV_SICK, EV_HOLIDAY, EV_NODATA, EV_BINARY, EV_COUNT };
static const char *const s_event_names[EV_COUNT] = { "sick", "holiday", "no-data", "binary" };

static const char s_sick_data[] =
	"{\"reason\":\"sick\",\"days\":3,\"rate\":2.5,\"temp\":-2,\"urgent\":true,"
	"\"child\":{\"cpr\":\"1503851233\",\"name\":\"Ida\"},\"list\":[1,2,3],\"nothing\":null,"
	"\"label\":\"10\",\"big\":9007199254740993,\"quote\":\"say \\\"hi\\\"\\n\","
	"\"long\":"
	"\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}";
static const char s_holiday_data[] = "{\"reason\":\"holiday\",\"days\":7,\"cpr\":\"0101184129\"}";

/* A child reported sick: subject, an int, a bool and a string extension, rich data. */
static kanal_msg_t *s_event_sick(void)
{
	kanal_msg_t *m = kanal_msg_new("child.absence.reported", "/daycare/solsikken", "e-1");

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL_FATAL(kanal_msg_set_attr(m, "subject", "person:abc", NULL), 0);
	CU_ASSERT_EQUAL_FATAL(kanal_msg_set_ext_int(m, "priority", 3, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(kanal_msg_set_ext_bool(m, "flagged", true, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(kanal_msg_set_attr(m, "region", "north", NULL), 0);
	CU_ASSERT_EQUAL_FATAL(kanal_msg_set_data_json(m, s_sick_data, strlen(s_sick_data)), 0);
	return m;
}

/* A holiday registration: no subject, no extensions. */
static kanal_msg_t *s_event_holiday(void)
{
	kanal_msg_t *m = kanal_msg_new("child.vacation.registered", "/daycare/solsikken", "e-2");

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL_FATAL(kanal_msg_set_data_json(m, s_holiday_data, strlen(s_holiday_data)),
			      0);
	return m;
}

static kanal_msg_t *s_event_nodata(void)
{
	kanal_msg_t *m = kanal_msg_new("staff.absence.registered", "/hr", "e-3");

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL_FATAL(kanal_msg_set_ext_int(m, "priority", -7, NULL), 0);
	return m;
}

static kanal_msg_t *s_event_binary(void)
{
	kanal_msg_t *m = kanal_msg_new("post.letter.send", "/post", "e-4");

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL_FATAL(kanal_msg_set_data_binary(m, "%PDF", 4), 0);
	return m;
}

static void s_events_new(kanal_msg_t *ev[EV_COUNT])
{
	ev[EV_SICK] = s_event_sick();
	ev[EV_HOLIDAY] = s_event_holiday();
	ev[EV_NODATA] = s_event_nodata();
	ev[EV_BINARY] = s_event_binary();
}

static void s_events_destroy(kanal_msg_t *ev[EV_COUNT])
{
	for (int i = 0; i < EV_COUNT; i++)
		kanal_msg_destroy(&ev[i]);
}

/* ---- evaluation ------------------------------------------------------------------------------ */

/* An expression and its value on each event: S(ick), H(oliday), N(o data), B(inary). */
typedef struct eval_row {
	const char *text;
	const char *want; /* one of 't'/'f' per event, in EV_* order */
} eval_row_t;

/* Parses a row's expression, reporting a failure as the row's. */
static expr_t *s_parse_row(const char *text, int line)
{
	kanal_error_t err;
	expr_t *e;

	kanal_error_clear(&err);
	e = expr_parse(text, &err);
	s_row(e != NULL, line, "parses: %s (%s)", text, err.text);
	return e;
}

/* Checks that e is `want` on the event m (named `name`), and that explain agrees. */
static void s_check_value(const expr_t *e, const kanal_msg_t *m, bool want, int line,
			  const char *text, const char *name)
{
	s_row(expr_eval(e, m) == want, line, "%s on the %s event", text, name);
	s_row(expr_explain(e, m, NULL, 0) == want, line, "explain: %s on the %s event", text, name);
}

static void s_run_eval_table(const eval_row_t *rows, size_t n, int line)
{
	kanal_msg_t *ev[EV_COUNT];

	s_events_new(ev);
	for (size_t i = 0; i < n; i++) {
		expr_t *e = s_parse_row(rows[i].text, line);

		if (!e)
			continue;
		for (int k = 0; k < EV_COUNT; k++)
			s_check_value(e, ev[k], rows[i].want[k] == 't', line, rows[i].text,
				      s_event_names[k]);
		expr_destroy(&e);
		CU_ASSERT_PTR_NULL(e);
	}
	s_events_destroy(ev);
}

static void test_attribute_comparisons(void)
{
	static const eval_row_t rows[] = {
		/*                                                        S H N B */
		{ "type == \"child.absence.reported\"", "tfff" },
		{ "type != \"child.absence.reported\"", "fttt" },
		{ "type < \"child.b\"", "tfff" },
		{ "type <= \"child.absence.reported\"", "tfff" },
		{ "type > \"child.absence.reported\"", "fttt" },
		{ "type >= \"child.vacation.registered\"", "fttt" },
		{ "source == \"/daycare/solsikken\"", "ttff" },
		{ "id == \"e-3\"", "fftf" },
		{ "specversion == \"1.0\"", "tttt" },
		/* Absent: false, for != too; `not` inverts that. */
		{ "subject == \"person:abc\"", "tfff" },
		{ "subject != \"person:abc\"", "ffff" },
		{ "subject != \"someone else\"", "tfff" },
		{ "not subject == \"person:abc\"", "fttt" },
		{ "time == \"2024-01-01T00:00:00Z\"", "ffff" },
		{ "source < \"/e\"", "ttff" },
		/* Field against field. */
		{ "type == type", "tttt" },
		{ "type == source", "ffff" },
		{ "subject == subject", "tfff" },
	};

	s_run_eval_table(rows, N_ELEMS(rows), __LINE__);
}

static void test_data_comparisons(void)
{
	static const eval_row_t rows[] = {
		/*                                                        S H N B */
		{ "data.reason == \"sick\"", "tfff" },
		{ "data.reason != \"sick\"", "ftff" },
		{ "data.days <= 5", "tfff" },
		{ "data.days < 3", "ffff" },
		{ "data.days == 3", "tfff" },
		{ "data.days == 3.0", "tfff" },
		{ "data.days > 2.5", "ttff" },
		{ "data.days >= 7", "ftff" },
		{ "data.days != 3", "ftff" },
		{ "data.rate == 2.5", "tfff" },
		{ "data.rate > 2", "tfff" },
		{ "data.rate < 2.5", "ffff" },
		{ "data.temp == -2", "tfff" },
		{ "data.temp < -1.5", "tfff" },
		/* Exactly as integers: 2^53 + 1 is not 2^53. */
		{ "data.big == 9007199254740993", "tfff" },
		{ "data.big == 9007199254740992", "ffff" },
		{ "data.big > 9007199254740992", "tfff" },
		/* Type mismatches are false, != included. */
		{ "data.days == \"3\"", "ffff" },
		{ "data.days != \"3\"", "ffff" },
		{ "data.label == 10", "ffff" },
		{ "data.label == \"10\"", "tfff" },
		{ "data.urgent == true", "tfff" },
		{ "data.urgent != false", "tfff" },
		{ "data.urgent == \"true\"", "ffff" },
		{ "data.child == \"Ida\"", "ffff" },
		{ "data.nothing == 0", "ffff" },
		{ "data.nothing != 0", "ffff" },
		/* Paths. */
		{ "data.child.name == \"Ida\"", "tfff" },
		/* Bytewise: upper case sorts before lower case, whatever the locale. */
		{ "data.child.name < \"a\"", "tfff" },
		{ "data.list.1 == 2", "tfff" },
		{ "data.list.5 == 2", "ffff" },
		{ "data.quote == \"say \\\"hi\\\"\\n\"", "tfff" },
		{ "data.missing != 4", "ffff" },
		{ "not data.missing == 4", "tttt" },
		/* The whole data, and fields of data. */
		{ "data == \"x\"", "ffff" },
		{ "data.reason == data.reason", "ttff" },
		{ "data.reason == data.days", "ffff" },
		{ "data.days == data.list.2", "tfff" },
		/* A literal on the left is mirrored. */
		{ "5 >= data.days", "tfff" },
		{ "2 < data.days", "ttff" },
		{ "\"sick\" == data.reason", "tfff" },
	};

	s_run_eval_table(rows, N_ELEMS(rows), __LINE__);
}

static void test_extension_comparisons(void)
{
	static const eval_row_t rows[] = {
		/*                                                        S H N B */
		{ "priority == 3", "tfff" },
		{ "priority > 2", "tfff" },
		{ "priority < 0", "fftf" },
		{ "priority == 3.0", "tfff" },
		{ "priority == \"3\"", "tfff" },
		{ "priority in [1, 3]", "tfff" },
		{ "priority != 3", "fftf" },
		{ "flagged == true", "tfff" },
		{ "flagged != false", "tfff" },
		{ "flagged == \"true\"", "tfff" },
		{ "flagged == 1", "ffff" },
		{ "region == \"north\"", "tfff" },
		{ "region == 1", "ffff" },
		{ "region != 1", "ffff" },
		{ "region == true", "ffff" },
		{ "nosuch == 1", "ffff" },
		/* Field against field: the extension is read in the other side's type. */
		{ "priority == data.days", "tfff" },
		{ "data.days == priority", "tfff" },
		{ "priority == region", "ffff" },
		{ "region == region", "tfff" },
	};

	s_run_eval_table(rows, N_ELEMS(rows), __LINE__);
}

static void test_in_and_exists(void)
{
	static const eval_row_t rows[] = {
		/*                                                        S H N B */
		{ "type in [\"child.absence.reported\", \"child.vacation.registered\"]", "ttff" },
		{ "type in [\"x\"]", "ffff" },
		{ "subject in [\"person:abc\"]", "tfff" },
		{ "data.days in [1, 2, 3]", "tfff" },
		{ "data.days in [1.5, 3]", "tfff" },
		{ "data.rate in [2, 2.5]", "tfff" },
		{ "data.days in [4, 5]", "ffff" },
		{ "data.reason in [\"sick\", \"holiday\"]", "ttff" },
		{ "data.urgent in [true]", "tfff" },
		{ "data.days in [\"3\"]", "ffff" },
		{ "not data.days in [3]", "fttt" },
		{ "exists subject", "tfff" },
		{ "not exists subject", "fttt" },
		{ "exists priority", "tftf" },
		{ "exists nosuch", "ffff" },
		{ "exists data", "ttft" },
		{ "exists data.child", "tfff" },
		{ "exists data.child.cpr", "tfff" },
		{ "exists data.list", "tfff" },
		{ "exists data.list.2", "tfff" },
		{ "exists data.list.3", "ffff" },
		{ "exists data.urgent", "tfff" },
		{ "exists data.days", "ttff" },
		/* A JSON null counts as absent. */
		{ "exists data.nothing", "ffff" },
		{ "not exists data.nothing", "tttt" },
	};

	s_run_eval_table(rows, N_ELEMS(rows), __LINE__);
}

static void test_precedence_and_grouping(void)
{
	static const eval_row_t rows[] = {
		/*                                                        S H N B */
		/* and binds tighter than or. */
		{ "type == \"x\" or type == \"child.absence.reported\" and data.days == 3",
		  "tfff" },
		{ "type == \"child.absence.reported\" or data.days == 7 and type == \"x\"",
		  "tfff" },
		{ "type == \"x\" or type == \"child.absence.reported\" and data.days == 4",
		  "ffff" },
		{ "(type == \"x\" or type == \"child.absence.reported\") and data.days == 4",
		  "ffff" },
		{ "(type == \"x\" or type == \"child.absence.reported\") and data.days == 3",
		  "tfff" },
		/* not binds tighter than and / or. */
		{ "not type == \"x\" and data.days == 3", "tfff" },
		{ "not type == \"child.absence.reported\" or data.days == 3", "tttt" },
		{ "not (type == \"child.absence.reported\" or data.days == 7)", "fftt" },
		{ "not (type == \"child.absence.reported\" and data.days == 4)", "tttt" },
		{ "not not exists subject", "tfff" },
		{ "not (not (exists subject))", "tfff" },
		/* Chains. */
		{ "data.reason == \"sick\" and data.days <= 5 and priority == 3 and flagged == "
		  "true",
		  "tfff" },
		{ "id == \"e-1\" or id == \"e-2\" or id == \"e-3\" or id == \"e-4\"", "tttt" },
		{ "((((type == \"post.letter.send\"))))", "ffft" },
		/* Blanks of every kind. */
		{ "\ttype\n==\r\n\"child.vacation.registered\" ", "ftff" },
		{ "data.days<=5and(priority>2)", "tfff" },
	};

	s_run_eval_table(rows, N_ELEMS(rows), __LINE__);
}

static void test_string_operators(void)
{
	static const eval_row_t rows[] = {
		/*                                                        S H N B */
		{ "data.reason contains \"ic\"", "tfff" },
		{ "data.reason startswith \"ho\"", "ftff" },
		{ "data.reason endswith \"day\"", "ftff" },
		{ "data.reason endswith \"holiday!\"", "ffff" },
		{ "data.reason startswith \"sick and more\"", "ffff" },
		{ "type startswith \"child.\"", "ttff" },
		{ "source endswith \"/solsikken\"", "ttff" },
		{ "type contains \"absence\"", "tftf" },
		{ "subject contains \"\"", "tfff" },
		{ "region startswith \"no\"", "tfff" },
		/* Only strings: a number, an object or absent data is false, `not` inverts. */
		{ "data.days contains \"3\"", "ffff" },
		{ "data.label contains \"1\"", "tfff" },
		{ "data.child contains \"Ida\"", "ffff" },
		{ "priority startswith \"3\"", "tfff" },
		{ "not data.reason contains \"ic\"", "fttt" },
		/* POSIX extended regular expressions, unanchored unless anchored. */
		{ "data.reason matches \"^(sick|ill)$\"", "tfff" },
		{ "data.reason matches \"o.i\"", "ftff" },
		{ "type matches \"^child\\\\.(absence|vacation)\\\\.\"", "ttff" },
		{ "type matches \"^child\\\\.a\"", "tfff" },
		{ "data.days matches \"3\"", "ffff" },
		{ "not data.reason matches \"^s\"", "fttt" },
		/* Keywords only where an operator is due: an extension may still be named so. */
		{ "contains == \"x\" or matches == \"y\" or any == \"z\"", "ffff" },
	};

	s_run_eval_table(rows, N_ELEMS(rows), __LINE__);
}

/* An expression and its value on one event with the given data. */
typedef struct data_row {
	const char *text;
	bool want;
} data_row_t;

/* Parses each row, evaluates and explains it on an event carrying `data`. */
static void s_run_data_rows(const char *data, const data_row_t *rows, size_t n, int line)
{
	kanal_msg_t *m = kanal_msg_new("t", "/s", "e-5");

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL_FATAL(kanal_msg_set_data_json(m, data, strlen(data)), 0);
	for (size_t i = 0; i < n; i++) {
		expr_t *e = s_parse_row(rows[i].text, line);

		if (!e)
			continue;
		s_check_value(e, m, rows[i].want, line, rows[i].text, "data");
		CU_ASSERT_TRUE(expr_uses_data(e));
		expr_destroy(&e);
	}
	kanal_msg_destroy(&m);
}

/* any() over arrays of scalars, of objects, nested, and over things that are not arrays. */
static void test_any(void)
{
	static const char data[] =
		"{\"list\":[1,2,3],\"tags\":[\"urgent\",\"paper\"],\"empty\":[],"
		"\"children\":[{\"name\":\"Ida\",\"age\":3,\"allergies\":[\"nuts\"]},"
		"{\"name\":\"Bo\",\"age\":7,\"allergies\":[]},null],"
		"\"obj\":{\"0\":5},\"text\":\"abc\"}";
	static const data_row_t rows[] = {
		{ "any(data.list, item > 2)", true },
		{ "any(data.list, item > 3)", false },
		{ "any(data.list, item == 1 and item == 2)", false },
		{ "not any(data.list, item == 5)", true },
		{ "any(data.tags, item == \"urgent\")", true },
		{ "any(data.tags, item startswith \"pa\")", true },
		{ "any(data.tags, item contains \"x\")", false },
		{ "any(data.empty, exists item)", false },
		{ "any(data.children, item.age < 5 and item.name == \"Ida\")", true },
		{ "any(data.children, item.age < 5 and item.name == \"Bo\")", false },
		{ "any(data.children, not exists item)", true },
		{ "any(data.children, any(item.allergies, item == \"nuts\"))", true },
		{ "any(data.children, item.age > 5 and any(item.allergies, exists item))", false },
		/* Not arrays: absent, an object with numeric keys, a string, binary. */
		{ "any(data.missing, exists item)", false },
		{ "any(data.obj, item == 5)", false },
		{ "any(data.text, exists item)", false },
		{ "any (data.list, item == 1) and type == \"t\"", true },
	};
	kanal_msg_t *m;

	s_run_data_rows(data, rows, N_ELEMS(rows), __LINE__);
	m = s_event_binary();
	{
		kanal_error_t err;
		expr_t *e = expr_parse("any(data, exists item)", &err);

		CU_ASSERT_PTR_NOT_NULL_FATAL(e);
		CU_ASSERT_FALSE(expr_eval(e, m));
		expr_destroy(&e);
	}
	kanal_msg_destroy(&m);
}

/* Keys that a dotted path cannot name, written quoted as in jq: data."no.dk/kommune". */
static void test_quoted_keys(void)
{
	static const char data[] =
		"{\"no.dk/kommune\":\"0101\",\"a.b\":{\"c\":[{\"x.y\":1},{\"x.y\":2}]},"
		"\"plain\":{\"k v\":\"v\"},\"say \\\"q\\\"\":true,\"back\\\\slash\":2.5,"
		"\"d.o.t\":{\"e\":null,\"obj\":{}},\"1.5\":\"one and a half\",\"æ.ø\":\"å\"}";
	static const data_row_t rows[] = {
		{ "data.\"no.dk/kommune\" == \"0101\"", true },
		{ "data.\"no.dk/kommune\" != \"0101\"", false },
		{ "data.\"no.dk/kommune\" in [\"0101\", \"0751\"]", true },
		{ "data.\"no.dk/kommune\" startswith \"01\"", true },
		{ "data.\"no.dk/kommune\" matches \"^[0-9]{4}$\"", true },
		/* The dotted form reads nested keys, so it does not find the dotted one. */
		{ "exists data.no.dk or exists data.no", false },
		{ "exists data.\"no\"", false },
		/* Quoted keys anywhere in the path, before plain steps and array indexes. */
		{ "data.\"a.b\".c.1.\"x.y\" == 2", true },
		{ "data.\"a.b\".c.0.\"x.y\" == 2", false },
		{ "data.\"a.b\".\"c\".5.\"x.y\" == 2", false },
		{ "any(data.\"a.b\".c, item.\"x.y\" > 1)", true },
		{ "any(data.\"a.b\".c, item.\"x.y\" > 2)", false },
		/* A quoted key without a dot is an ordinary key; escapes are decoded. */
		{ "data.plain.\"k v\" == \"v\"", true },
		{ "data.\"plain\".\"k v\" == \"v\"", true },
		{ "data.\"say \\\"q\\\"\" == true", true },
		{ "data.\"back\\\\slash\" > 2", true },
		{ "data.\"1.5\" contains \"half\"", true },
		{ "data.\"æ.ø\" == \"å\"", true },
		/* exists: null is absent, an empty object is there. */
		{ "exists data.\"d.o.t\"", true },
		{ "exists data.\"d.o.t\".e", false },
		{ "exists data.\"d.o.t\".obj", true },
		{ "exists data.\"d.o.t\".missing", false },
		/* Types as anywhere else. */
		{ "data.\"no.dk/kommune\" == 101", false },
		{ "data.\"back\\\\slash\" == \"2.5\"", false },
	};
	kanal_msg_t *m;

	s_run_data_rows(data, rows, N_ELEMS(rows), __LINE__);
	/* Binary data and no data have no keys at all. */
	m = s_event_binary();
	{
		expr_t *e = expr_parse("exists data.\"a.b\" or data.\"a.b\" == 1", NULL);

		CU_ASSERT_PTR_NOT_NULL_FATAL(e);
		CU_ASSERT_FALSE(expr_eval(e, m));
		expr_destroy(&e);
	}
	kanal_msg_destroy(&m);
}

static void test_eval_of_null_arguments(void)
{
	kanal_msg_t *m = s_event_holiday();
	expr_t *e = expr_parse("exists subject or not exists subject", NULL);
	char why[64];

	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT(expr_eval(e, m));
	CU_ASSERT(!expr_eval(NULL, m));
	CU_ASSERT(!expr_eval(e, NULL));
	CU_ASSERT(!expr_explain(NULL, m, why, sizeof why));
	CU_ASSERT(!expr_uses_data(NULL));
	expr_destroy(&e);
	expr_destroy(&e);
	expr_destroy(NULL);
	kanal_msg_destroy(&m);
}

/* ---- parse errors ------------------------------------------------------------------------------- */

typedef struct error_row {
	const char *text;
	int column;
	const char *message;
} error_row_t;

static const error_row_t s_errors[] = {
	{ "", 1, "empty expression" },
	{ "  \t ", 1, "empty expression" },
	/* A field alone is not a condition, not even a boolean one. */
	{ "type", 5, "expected a comparison after 'type' at column 5, found end of expression" },
	{ "data.urgent", 12,
	  "expected a comparison after 'data.urgent' at column 12, found end of expression" },
	{ "data.urgent and type == \"x\"", 13,
	  "expected a comparison after 'data.urgent' at column 13, found 'and'" },
	{ "true", 5, "expected a comparison after 'true' at column 5, found end of expression" },
	/* Types. */
	{ "type == 5", 6, "'==' compares the string attribute 'type' with a number" },
	{ "5 < type", 3, "'<' compares the string attribute 'type' with a number" },
	{ "source != true", 8, "'!=' compares the string attribute 'source' with a boolean" },
	{ "type in [1, 2]", 6, "'in' compares the string attribute 'type' with a list of numbers" },
	{ "subject in [true]", 9,
	  "'in' compares the string attribute 'subject' with a list of booleans" },
	{ "data.urgent < true", 13, "'<' cannot order booleans (use == or !=)" },
	{ "false >= priority", 7, "'>=' cannot order booleans (use == or !=)" },
	{ "1 == 1", 3, "'==' compares two constants" },
	{ "\"a\" != \"b\"", 5, "'!=' compares two constants" },
	{ "\"a\" in [\"a\"]", 5, "'in' compares two constants" },
	{ "data.x in [1, \"a\"]", 15,
	  "expected a number in the list (a list holds values of one type) at column 15, "
	  "found \"a\"" },
	{ "data.x in [\"a\", true]", 17,
	  "expected a string in the list (a list holds values of one type) at column 17, "
	  "found 'true'" },
	/* Lists, in, exists. */
	{ "type in \"a\"", 9, "expected a list after 'in' at column 9, found \"a\"" },
	{ "type in", 8, "expected a list after 'in' at column 8, found end of expression" },
	{ "type in []", 10, "expected a value in the list at column 10, found ']'" },
	{ "type in [\"a\",]", 14, "expected a value in the list at column 14, found ']'" },
	{ "type in [\"a\" \"b\"]", 14, "expected ',' or ']' at column 14, found \"b\"" },
	{ "type in [\"a\"", 13, "expected ',' or ']' at column 13, found end of expression" },
	{ "type in [\"a\", data.x]", 15,
	  "expected a value in the list at column 15, found 'data.x'" },
	{ "[1] == data.x", 1, "unexpected '[' at column 1: a list may only follow 'in'" },
	{ "data.x == [1]", 11, "unexpected '[' at column 11: a list may only follow 'in'" },
	{ "exists \"a\"", 8, "expected a field after 'exists' at column 8, found \"a\"" },
	{ "exists 5", 8, "expected a field after 'exists' at column 8, found '5'" },
	{ "exists true", 8, "expected a field after 'exists' at column 8, found 'true'" },
	{ "exists", 7, "expected a field after 'exists' at column 7, found end of expression" },
	/* Operators and operands. */
	{ "type ==", 8, "expected a value after '==' at column 8, found end of expression" },
	{ "type <= and", 9, "expected a value after '<=' at column 9, found 'and'" },
	{ "type == \"a\" and", 16,
	  "expected a condition after 'and' at column 16, found end of expression" },
	{ "type == \"a\" or or", 16, "expected a condition after 'or' at column 16, found 'or'" },
	{ "not", 4, "expected a condition after 'not' at column 4, found end of expression" },
	{ "and type == \"a\"", 1, "expected a condition at column 1, found 'and'" },
	{ "== \"a\"", 1, "expected a condition at column 1, found '=='" },
	{ "type = \"a\"", 6, "unexpected '=' at column 6 (did you mean '=='?)" },
	{ "! exists subject", 1, "unexpected '!' at column 1 (did you mean '!=' or 'not'?)" },
	{ "type == \"a\" && id == \"b\"", 13, "unexpected '&' at column 13 (did you mean 'and'?)" },
	{ "type == \"a\" || id == \"b\"", 13, "unexpected '|' at column 13 (did you mean 'or'?)" },
	{ "type # \"a\"", 6, "unexpected character '#' at column 6" },
	{ "type == \"a\" \xc3\xa6", 13, "unexpected byte 0xC3 at column 13" },
	/* Strings and numbers. */
	{ "type == \"abc", 9, "unterminated string starting at column 9" },
	{ "type == \"abc\\", 9, "unterminated string starting at column 9" },
	{ "type == \"a\\qb\"", 11, "unknown escape '\\q' in string at column 11" },
	{ "type == \"a\tb\"", 11, "control character in string at column 11 (write \\n or \\t)" },
	{ "data.x == 1.", 13, "expected a digit after '.' at column 13" },
	{ "data.x == -", 12, "expected a digit after '-' at column 12" },
	{ "data.x == - 1", 12, "expected a digit after '-' at column 12" },
	{ "data.x == 99999999999999999999", 11, "number at column 11 is out of range" },
	/* Fields. */
	{ "Type == \"a\"", 1,
	  "unknown field 'Type' at column 1: attribute names are lower-case letters and digits" },
	{ "my_ext == \"a\"", 1,
	  "unknown field 'my_ext' at column 1: attribute names are lower-case letters and "
	  "digits" },
	{ "type.x == \"a\"", 1,
	  "unknown field 'type.x' at column 1: only data fields have dotted paths" },
	{ "data. == 1", 6, "expected a field name after '.' at column 6" },
	{ "data..x == 1", 6, "expected a field name after '.' at column 6" },
	/* Parentheses and trailing input. */
	{ "(type == \"a\"", 13, "expected ')' at column 13, found end of expression" },
	{ "(type == \"a\" or (id == \"b\")", 28,
	  "expected ')' at column 28, found end of expression" },
	{ "(type == \"a\" id == \"b\")", 14, "expected ')' at column 14, found 'id'" },
	{ "type == \"a\")", 12, "unexpected ')' at column 12 without a matching '('" },
	{ "()", 2, "expected a condition after '(' at column 2, found ')'" },
	{ "type == \"a\" id == \"b\"", 13,
	  "expected 'and', 'or' or end of expression at column 13, found 'id'" },
	{ "type == \"a\" \"b\"", 13,
	  "expected 'and', 'or' or end of expression at column 13, found \"b\"" },
	{ "data.x < 1 == 2", 12,
	  "expected 'and', 'or' or end of expression at column 12, found '=='" },
	/* The first error in the text wins over a later one. */
	{ "type == 5 #", 6, "'==' compares the string attribute 'type' with a number" },
	{ "type == \"a\" or # or id == 1", 16, "unexpected character '#' at column 16" },
	/* Error texts never carry a CPR number in clear. */
	{ "type == \"a\" \"1503851233\"", 13,
	  "expected 'and', 'or' or end of expression at column 13, found \"150385XXXX\"" },
	/* String operators and any(). */
	{ "data.x contains 5", 17, "expected a string after 'contains' at column 17" },
	{ "data.x startswith data.y", 19, "expected a string after 'startswith' at column 19" },
	{ "type endswith", 14,
	  "expected a value after 'endswith' at column 14, found end of expression" },
	{ "\"abc\" contains data.x", 1,
	  "'contains' at column 7 needs a field on its left, found a constant" },
	{ "\"a\" contains \"b\"", 5, "'contains' compares two constants" },
	{ "data.x matches \"(a\"", 16,
	  "invalid regular expression at column 16: Unmatched ( or \\(" },
	{ "data.x contains", 16,
	  "expected a value after 'contains' at column 16, found end of expression" },
	{ "any(type, item == \"a\")", 5,
	  "any() at column 1 looks through a data field (data.list), not the attribute 'type'" },
	{ "any(\"a\", item == \"a\")", 5,
	  "expected a data field after 'any(' at column 5, found \"a\"" },
	{ "any(data.list item == 1)", 15,
	  "expected ',' and a condition on item at column 15, found 'item'" },
	{ "any(data.list, item == 1", 25, "expected ')' at column 25, found end of expression" },
	{ "any(data.list, )", 16, "expected a condition after ',' at column 16, found ')'" },
	{ "any(data.list, item.x ==)", 25, "expected a value after '==' at column 25, found ')'" },
	/* Quoted keys. */
	{ "data.\"\" == 1", 6, "empty key \"\" at column 6: a key has a name" },
	{ "data.a.\"\".b == 1", 8, "empty key \"\" at column 8: a key has a name" },
	{ "data.\"a.b == 1", 6, "unterminated string starting at column 6" },
	{ "data.\"a\\q\" == 1", 8, "unknown escape '\\q' in string at column 8" },
	{ "subject.\"a.b\" == \"x\"", 1,
	  "unknown field 'subject.\"a.b\"' at column 1: only data fields have dotted paths" },
	{ "data.\"a\"b == 1", 9,
	  "expected a comparison after 'data.\"a\"' at column 9, found 'b'" },
	/* Long tokens are shortened. */
	{ "type == \"a\" data.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 13,
	  "expected 'and', 'or' or end of expression at column 13, found "
	  "'data.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…'" },
};

static void test_parse_errors(void)
{
	for (size_t i = 0; i < N_ELEMS(s_errors); i++) {
		kanal_error_t err;
		expr_t *e;
		char col[32];

		kanal_error_clear(&err);
		e = expr_parse(s_errors[i].text, &err);
		s_row(e == NULL, __LINE__, "rejected: %s%s", s_errors[i].text, "");
		expr_destroy(&e);
		s_row(strcmp(err.text, s_errors[i].message) == 0, __LINE__,
		      "message: got '%s', want '%s'", err.text, s_errors[i].message);
		snprintf(col, sizeof col, "%d", err.column);
		s_row(err.column == s_errors[i].column, __LINE__, "column %s for: %s", col,
		      s_errors[i].message);
		CU_ASSERT_EQUAL(err.line, 1);
	}
}

static void test_nesting_is_bounded(void)
{
	char text[512];
	kanal_error_t err;
	expr_t *e;
	size_t n = 0;

	/* 64 levels are fine... */
	for (int i = 0; i < 64; i++)
		text[n++] = '(';
	n += (size_t)sprintf(text + n, "exists id");
	for (int i = 0; i < 64; i++)
		text[n++] = ')';
	text[n] = '\0';
	e = expr_parse(text, NULL);
	CU_ASSERT_PTR_NOT_NULL(e);
	expr_destroy(&e);

	/* ...65 are not. */
	n = 0;
	for (int i = 0; i < 65; i++)
		text[n++] = '(';
	snprintf(text + n, sizeof text - n, "exists id");
	kanal_error_clear(&err);
	CU_ASSERT_PTR_NULL(expr_parse(text, &err));
	CU_ASSERT_STRING_EQUAL(err.text,
			       "expression nested too deeply at column 65 (at most 64 levels)");
	CU_ASSERT_EQUAL(err.column, 65);

	n = 0;
	for (int i = 0; i < 100; i++)
		n += (size_t)sprintf(text + n, "not ");
	snprintf(text + n, sizeof text - n, "exists id");
	kanal_error_clear(&err);
	CU_ASSERT_PTR_NULL(expr_parse(text, &err));
	CU_ASSERT_EQUAL(err.column, 64 * 4 + 1);
}

static void test_parse_error_keeps_an_earlier_error(void)
{
	kanal_error_t err;

	kanal_error_clear(&err);
	kanal_error_set(&err, "routes/a.yaml", 3, 4, NULL, "earlier");
	CU_ASSERT_PTR_NULL(expr_parse("type ==", &err));
	CU_ASSERT_STRING_EQUAL(err.text, "earlier");
	CU_ASSERT_EQUAL(err.line, 3);
	/* A successful parse leaves err alone, and err may be NULL. */
	kanal_error_clear(&err);
	expr_t *e = expr_parse("exists id", &err);
	CU_ASSERT_PTR_NOT_NULL(e);
	CU_ASSERT_STRING_EQUAL(err.text, "");
	expr_destroy(&e);
	CU_ASSERT_PTR_NULL(expr_parse(NULL, NULL));
}

/* ---- explain ------------------------------------------------------------------------------------ */

typedef struct explain_row {
	const char *text;
	int event;
	const char *why;
} explain_row_t;

static const explain_row_t s_explains[] = {
	{ "data.days <= 5", EV_HOLIDAY, "data.days <= 5 is false: data.days is 7" },
	{ "data.reason == \"sick\"", EV_NODATA,
	  "data.reason == \"sick\" is false: data.reason is absent" },
	{ "data.reason == \"sick\"", EV_BINARY,
	  "data.reason == \"sick\" is false: data.reason is absent" },
	{ "type == \"child.absence.reported\" and data.days <= 5", EV_HOLIDAY,
	  "type == \"child.absence.reported\" is false: type is \"child.vacation.registered\"" },
	{ "data.reason == \"sick\" and data.days<3", EV_SICK,
	  "data.days<3 is false: data.days is 3" },
	/* A false `or` names every alternative. */
	{ "data.reason == \"sick\" or data.days < 2", EV_HOLIDAY,
	  "data.reason == \"sick\" is false: data.reason is \"holiday\"; data.days < 2 is false: "
	  "data.days is 7" },
	{ "(exists subject or priority > 1) and data.days == 7", EV_HOLIDAY,
	  "exists subject is false: subject is absent; priority > 1 is false: priority is absent" },
	/* `not` around a comparison quotes the whole; around a group, what made it true. */
	{ "not exists subject", EV_SICK, "not exists subject is false: subject is \"person:abc\"" },
	{ "not (data.reason == \"sick\" and data.days == 3)", EV_SICK,
	  "data.reason == \"sick\" is true: data.reason is \"sick\"; data.days == 3 is true: "
	  "data.days is 3" },
	{ "not (data.reason == \"x\" or data.days == 3)", EV_SICK,
	  "data.days == 3 is true: data.days is 3" },
	/* The value found, with its real type when it does not fit. */
	{ "data.days == \"3\"", EV_SICK, "data.days == \"3\" is false: data.days is 3" },
	{ "data.reason > 1", EV_SICK, "data.reason > 1 is false: data.reason is \"sick\"" },
	{ "data.rate > 3", EV_SICK, "data.rate > 3 is false: data.rate is 2.5" },
	{ "data.urgent == false", EV_SICK, "data.urgent == false is false: data.urgent is true" },
	{ "data.child == \"x\"", EV_SICK, "data.child == \"x\" is false: data.child is an object" },
	{ "data.list == 1", EV_SICK, "data.list == 1 is false: data.list is an array" },
	{ "data.nothing == 1", EV_SICK, "data.nothing == 1 is false: data.nothing is null" },
	{ "exists data.nothing", EV_SICK, "exists data.nothing is false: data.nothing is null" },
	{ "exists data.x", EV_BINARY, "exists data.x is false: data.x is absent" },
	{ "data == 1", EV_BINARY, "data == 1 is false: data is binary data" },
	{ "data.quote == \"x\"", EV_SICK,
	  "data.quote == \"x\" is false: data.quote is \"say \\\"hi\\\"\\n\"" },
	{ "data.long == \"x\"", EV_SICK,
	  "data.long == \"x\" is false: data.long is "
	  "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…\"" },
	{ "type in [\"a\", \"b\"]", EV_NODATA,
	  "type in [\"a\", \"b\"] is false: type is \"staff.absence.registered\"" },
	/* Extensions as compared. */
	{ "priority > 5", EV_SICK, "priority > 5 is false: priority is 3" },
	{ "region == 5", EV_SICK, "region == 5 is false: region is \"north\"" },
	{ "flagged == false", EV_SICK, "flagged == false is false: flagged is true" },
	/* Two fields. */
	{ "data.days == priority", EV_HOLIDAY,
	  "data.days == priority is false: data.days is 7, priority is absent" },
	{ "priority == data.days", EV_NODATA,
	  "priority == data.days is false: priority is -7, data.days is absent" },
	/* CPR numbers are masked, in data and in the expression. */
	{ "data.child.cpr == \"0101184129\"", EV_SICK,
	  "data.child.cpr == \"010118XXXX\" is false: data.child.cpr is \"150385XXXX\"" },
	{ "data.cpr != \"0101184129\"", EV_HOLIDAY,
	  "data.cpr != \"010118XXXX\" is false: data.cpr is \"010118XXXX\"" },
	/* String operators and any(). */
	{ "data.reason startswith \"ho\"", EV_SICK,
	  "data.reason startswith \"ho\" is false: data.reason is \"sick\"" },
	{ "data.days matches \"3\"", EV_SICK, "data.days matches \"3\" is false: data.days is 3" },
	{ "any(data.list, item > 5)", EV_SICK,
	  "any(data.list, item > 5) is false: data.list has 3 items; item 0: item > 5 is false: "
	  "item is 1" },
	{ "any(data.list, item > 5)", EV_HOLIDAY,
	  "any(data.list, item > 5) is false: data.list has 0 items" },
	/* Quoted keys are quoted as written. */
	{ "data.\"no.dk/kommune\" == \"0751\"", EV_HOLIDAY,
	  "data.\"no.dk/kommune\" == \"0751\" is false: data.\"no.dk/kommune\" is absent" },
};

static void test_explain_names_the_failing_comparison(void)
{
	kanal_msg_t *ev[EV_COUNT];

	s_events_new(ev);
	for (size_t i = 0; i < N_ELEMS(s_explains); i++) {
		const explain_row_t *row = &s_explains[i];
		kanal_error_t err;
		expr_t *e;
		char why[512];

		kanal_error_clear(&err);
		e = expr_parse(row->text, &err);
		s_row(e != NULL, __LINE__, "parses: %s (%s)", row->text, err.text);
		if (!e)
			continue;
		memset(why, '?', sizeof why);
		s_row(!expr_explain(e, ev[row->event], why, sizeof why), __LINE__, "false: %s%s",
		      row->text, "");
		s_row(strcmp(why, row->why) == 0, __LINE__, "why: got '%s', want '%s'", why,
		      row->why);
		expr_destroy(&e);
	}
	s_events_destroy(ev);
}

static void test_explain_when_true_and_small_buffers(void)
{
	kanal_msg_t *m = s_event_sick();
	expr_t *e = expr_parse("data.days <= 5", NULL);
	expr_t *f = expr_parse("data.child.cpr == \"x\"", NULL);
	char why[64], mid[56], small[40];

	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	strcpy(why, "stale");
	CU_ASSERT(expr_explain(e, m, why, sizeof why));
	CU_ASSERT_STRING_EQUAL(why, "");
	CU_ASSERT(expr_explain(e, m, NULL, 0));

	CU_ASSERT(!expr_explain(f, m, why, sizeof why));
	CU_ASSERT_STRING_EQUAL(why, "data.child.cpr == \"x\" is false: data.child.cpr is "
				    "\"150385XXXX\"");
	/* Cut short, the reason never ends in part of a number. */
	CU_ASSERT(!expr_explain(f, m, mid, sizeof mid));
	CU_ASSERT_STRING_EQUAL(mid, "data.child.cpr == \"x\" is false: data.child.cpr is \"");
	CU_ASSERT(!expr_explain(f, m, small, sizeof small));
	CU_ASSERT_STRING_EQUAL(small, "data.child.cpr == \"x\" is false: data.ch");
	memset(small, 'z', sizeof small);
	CU_ASSERT(!expr_explain(f, m, small, 1));
	CU_ASSERT_EQUAL(small[0], '\0');
	CU_ASSERT_EQUAL(small[1], 'z');
	expr_destroy(&e);
	expr_destroy(&f);
	kanal_msg_destroy(&m);
}

/* ---- data use ------------------------------------------------------------------------------------ */

static void test_attribute_expressions_do_not_need_data(void)
{
	static const struct {
		const char *text;
		bool uses_data;
	} rows[] = {
		{ "type == \"child.absence.reported\"", false },
		{ "type in [\"a\", \"b\"] or not exists subject", false },
		{ "priority > 2 and flagged == true and region != \"south\"", false },
		{ "exists dataschema and datacontenttype == \"application/json\"", false },
		{ "source == subject", false },
		{ "data.days <= 5", true },
		{ "type == \"x\" or not (exists subject and data.reason == \"sick\")", true },
		{ "exists data", true },
		{ "priority == data.days", true },
		{ "5 > data.days", true },
	};

	for (size_t i = 0; i < N_ELEMS(rows); i++) {
		expr_t *e = expr_parse(rows[i].text, NULL);

		s_row(e != NULL, __LINE__, "parses: %s%s", rows[i].text, "");
		if (!e)
			continue;
		s_row(expr_uses_data(e) == rows[i].uses_data, __LINE__, "uses data: %s%s",
		      rows[i].text, "");
		expr_destroy(&e);
	}
}

/* The attribute comparison decides, so the data is never read: here it is binary, and a
 * data comparison on it would be false, yet `or` is true and `and` false without it. */
static void test_short_circuit_skips_data(void)
{
	kanal_msg_t *m = s_event_binary();
	expr_t *or_e = expr_parse("type == \"post.letter.send\" or data.x == 1", NULL);
	expr_t *and_e = expr_parse("type == \"other\" and not data.x == 1", NULL);
	char why[256];

	CU_ASSERT_PTR_NOT_NULL_FATAL(or_e);
	CU_ASSERT_PTR_NOT_NULL_FATAL(and_e);
	CU_ASSERT(expr_eval(or_e, m));
	CU_ASSERT(!expr_eval(and_e, m));
	CU_ASSERT(!expr_explain(and_e, m, why, sizeof why));
	CU_ASSERT_STRING_EQUAL(why, "type == \"other\" is false: type is \"post.letter.send\"");
	expr_destroy(&or_e);
	expr_destroy(&and_e);
	kanal_msg_destroy(&m);
}

TEST_MAIN("expr", TEST(test_attribute_comparisons), TEST(test_data_comparisons),
	  TEST(test_extension_comparisons), TEST(test_in_and_exists),
	  TEST(test_precedence_and_grouping), TEST(test_string_operators), TEST(test_any),
	  TEST(test_quoted_keys), TEST(test_eval_of_null_arguments), TEST(test_parse_errors),
	  TEST(test_nesting_is_bounded), TEST(test_parse_error_keeps_an_earlier_error),
	  TEST(test_explain_names_the_failing_comparison),
	  TEST(test_explain_when_true_and_small_buffers),
	  TEST(test_attribute_expressions_do_not_need_data), TEST(test_short_circuit_skips_data))
