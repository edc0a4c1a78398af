/*
 * tests/unit/test_transform.c — a route's jq `transform:` (broker/transform.c): the output
 * becoming the delivery's data, the envelope that also sets type, subject and extensions,
 * every way a run is refused (jq error, no output, null, not an object, an attribute that
 * may not be set, a CPR number in an attribute, the time and size limits) and the sandbox
 * (no environment, no input, no modules).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kanal/kanal.h>

#include "test.h"
#include "transform.h"

static kanal_msg_t *s_event(const char *data)
{
	kanal_msg_t *m = kanal_msg_new("vendor.absence", "vendor-x", "e-1");

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL_FATAL(kanal_msg_set_data_json(m, data, strlen(data)), 0);
	return m;
}

/* Runs `program` on an event with `data`; returns the result code, the result in *out and
 * the reason in err. */
static int s_run(const char *program, const char *data, kanal_msg_t **out, kanal_error_t *err)
{
	transform_t *t = NULL;
	kanal_msg_t *in = s_event(data);
	int rc;

	kanal_error_clear(err);
	CU_ASSERT_EQUAL_FATAL(transform_new(program, &t, err), 0);
	rc = transform_apply(t, in, out, err);
	transform_destroy(&t);
	CU_ASSERT_PTR_NULL(t);
	kanal_msg_destroy(&in);
	return rc;
}

static void s_data_is(const kanal_msg_t *m, const char *json)
{
	char *got = kanal_msg_data_json(m, NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(got);
	CU_ASSERT_STRING_EQUAL(got, json);
	kanal_free(got);
}

static void test_object_output_is_the_new_data(void)
{
	kanal_msg_t *out = NULL;
	kanal_error_t err;

	CU_ASSERT_EQUAL(s_run("{child: .barn.navn, reason: .fravaer, from: $event.source}",
			      "{\"barn\":{\"navn\":\"Ida\"},\"fravaer\":\"syg\"}", &out, &err),
			0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	s_data_is(out, "{\"child\":\"Ida\",\"reason\":\"syg\",\"from\":\"vendor-x\"}");
	CU_ASSERT_STRING_EQUAL(kanal_msg_type(out), "vendor.absence");
	CU_ASSERT_STRING_EQUAL(kanal_msg_id(out), "e-1");
	kanal_msg_destroy(&out);
}

static void test_envelope_sets_type_subject_and_extensions(void)
{
	kanal_msg_t *out = NULL;
	kanal_error_t err;

	CU_ASSERT_EQUAL(s_run("{data: {child: .barn.navn}, attributes: {type: "
			      "\"child.absence.reported\", subject: .barn.id, daycount: 2, "
			      "urgent: true}}",
			      "{\"barn\":{\"navn\":\"Ida\",\"id\":\"c-17\"}}", &out, &err),
			0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	s_data_is(out, "{\"child\":\"Ida\"}");
	CU_ASSERT_STRING_EQUAL(kanal_msg_type(out), "child.absence.reported");
	CU_ASSERT_STRING_EQUAL(kanal_msg_subject(out), "c-17");
	CU_ASSERT_STRING_EQUAL(kanal_msg_attr(out, "daycount"), "2");
	CU_ASSERT_STRING_EQUAL(kanal_msg_attr(out, "urgent"), "true");
	kanal_msg_destroy(&out);
}

/* Each of these is a REJECT whose reason names what went wrong. */
static void test_refusals_say_why(void)
{
	static const struct {
		const char *program, *reason;
	} cases[] = {
		{ "error(\"no child in the payload\")", "no child in the payload" },
		{ "empty", "gave no output" },
		{ "null", "the output is null, not an object" },
		{ "[.barn]", "the output is array, not an object" },
		{ ".barn.navn + 1", "cannot be added" },
		{ "{data: ., attributes: {id: \"x\"}}", "attribute 'id' cannot be set" },
		{ "{data: ., attributes: {source: \"x\"}}", "attribute 'source' cannot be set" },
		{ "{data: ., attributes: {type: null}}", "type cannot be removed" },
		{ "{data: ., attributes: {subject: 7.5}}", "attribute 'subject'" },
		{ "{data: ., attributes: {deep: {a: 1}}}", "must be a string" },
		{ "{data: ., attributes: []}", "'attributes' must be an object" },
		{ "{data: ., attributes: {subject: \"born \\(\"0101\")90-1234\"}}",
		  "holds a CPR number" },
		{ "{x: (\"abcdefgh\" * 200000)}", "larger than" },
		{ "input", "input is not available" },
		{ "[inputs]", "inputs is not available" },
		{ "halt", "halt is not available" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		kanal_msg_t *out = NULL;
		kanal_error_t err;
		int rc = s_run(cases[i].program, "{\"barn\":{\"navn\":\"Ida\"}}", &out, &err);

		if (rc != KANAL_EREJECTED || !strstr(err.text, cases[i].reason))
			fprintf(stderr, "\ncase %zu: rc %d, reason '%s'\n", i, rc, err.text);
		CU_ASSERT_EQUAL(rc, KANAL_EREJECTED);
		CU_ASSERT_PTR_NULL(out);
		CU_ASSERT_PTR_NOT_NULL(strstr(err.text, cases[i].reason));
		kanal_msg_destroy(&out);
	}
}

/* The environment stays out of reach: $ENV and env are empty, debug and stderr pass the
 * value through without writing anywhere. */
static void test_sandbox_hides_the_environment(void)
{
	kanal_msg_t *out = NULL;
	kanal_error_t err;

	setenv("KANAL_TEST_SECRET", "s3cret", 1);
	CU_ASSERT_EQUAL(s_run("{a: ($ENV | length), b: (env | length), c: (.x | debug | stderr)}",
			      "{\"x\":1}", &out, &err),
			0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	s_data_is(out, "{\"a\":0,\"b\":0,\"c\":1}");
	kanal_msg_destroy(&out);
}

/* A program that never ends is stopped after the time limit, and the transform works again
 * for the next event. */
static void test_endless_program_is_stopped(void)
{
	transform_t *t = NULL;
	kanal_msg_t *in = s_event("{\"n\":1}"), *out = NULL;
	kanal_error_t err;
	struct timespec a, b;
	double ms;

	kanal_error_clear(&err);
	CU_ASSERT_EQUAL_FATAL(transform_new("if .n == 1 then (reduce range(1e15) as $i (0; . + 1)) "
					    "else {n: .n} end",
					    &t, &err),
			      0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	CU_ASSERT_EQUAL(transform_apply(t, in, &out, &err), KANAL_EREJECTED);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
	CU_ASSERT(ms >= TRANSFORM_TIME_LIMIT_MS && ms < 10 * TRANSFORM_TIME_LIMIT_MS);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "stopped after"));
	kanal_msg_destroy(&in);
	in = s_event("{\"n\":2}");
	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(transform_apply(t, in, &out, &err), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	s_data_is(out, "{\"n\":2}");
	kanal_msg_destroy(&out);
	kanal_msg_destroy(&in);
	transform_destroy(&t);
}

static void test_compile_errors(void)
{
	transform_t *t = NULL;
	kanal_error_t err;

	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(transform_new("{a: 1,\n b: (.x | }", &t, &err), KANAL_ECONFIG);
	CU_ASSERT_PTR_NULL(t);
	CU_ASSERT_EQUAL(err.line, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "syntax error"));
	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(transform_new("include \"m\"; .", &t, &err), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "module imports are not allowed"));
	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(transform_new("{a: nosuchfunction}", &t, &err), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "nosuchfunction"));
	CU_ASSERT_PTR_NULL(t);
}

TEST_MAIN("transform", TEST(test_object_output_is_the_new_data),
	  TEST(test_envelope_sets_type_subject_and_extensions), TEST(test_refusals_say_why),
	  TEST(test_sandbox_hides_the_environment), TEST(test_endless_program_is_stopped),
	  TEST(test_compile_errors))
