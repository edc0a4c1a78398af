/*
 * tests/unit/test_trace.c — W3C Trace Context as kanal reads and writes it
 * (plugins/common/kc_trace.c): which traceparent and tracestate values are taken and which
 * are ignored, the header an HTTP request's events adopt, the span ids kanald and the
 * connectors agree on; and the `trace:` block of kanald.yaml (broker/conf.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

#include "conf.h"
#include "diag.h"
#include "test.h"
#include "../plugins/common/kc_trace.h"

#define TP_VALID "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static void test_a_valid_traceparent_is_read_field_by_field(void)
{
	static const uint8_t trace[16] = { 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
					   0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36 };
	static const uint8_t parent[8] = { 0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7 };
	kc_trace_ctx_t tc;
	char back[KC_TRACEPARENT_LEN + 1];

	CU_ASSERT_EQUAL(kc_traceparent_parse(TP_VALID, &tc), 0);
	CU_ASSERT_EQUAL(memcmp(tc.trace_id, trace, 16), 0);
	CU_ASSERT_EQUAL(memcmp(tc.parent_id, parent, 8), 0);
	CU_ASSERT_EQUAL(tc.flags, 1);
	kc_traceparent_format(tc.trace_id, tc.parent_id, tc.flags, back);
	CU_ASSERT_STRING_EQUAL(back, TP_VALID);
	CU_ASSERT_EQUAL(kc_traceparent_parse(
				"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &tc),
			0);
	CU_ASSERT_EQUAL(tc.flags, 0); /* not sampled, still valid */
}

/* What the W3C Trace Context says a receiver must ignore. */
static void test_invalid_traceparents_are_refused(void)
{
	static const char *const bad[] = {
		"",
		"00",
		/* upper-case hex */
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
		/* all-zero trace id, all-zero parent id */
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		/* version ff is forbidden; version 00 has nothing after the flags */
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		/* a later version's extra fields follow a '-', nothing else */
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.extra",
		/* short fields, wrong separators, non-hex */
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
		"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
		"00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
		"0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
		" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		NULL,
	};
	kc_trace_ctx_t tc;

	for (size_t i = 0; bad[i]; i++) {
		int rc = kc_traceparent_parse(bad[i], &tc);
		CU_ASSERT_EQUAL(rc, KANAL_EINVALID);
		if (rc != KANAL_EINVALID)
			fprintf(stderr, "\ntaken: '%s'\n", bad[i]);
	}
	CU_ASSERT_EQUAL(kc_traceparent_parse(NULL, &tc), KANAL_EINVALID);
}

static void test_a_later_version_is_read_by_its_first_fields(void)
{
	kc_trace_ctx_t tc;

	CU_ASSERT_EQUAL(kc_traceparent_parse(
				"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-"
				"future-will-be-like",
				&tc),
			0);
	CU_ASSERT_EQUAL(tc.flags, 1);
	CU_ASSERT_EQUAL(kc_traceparent_parse(
				"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &tc),
			0);
}

static void test_tracestate_lists(void)
{
	char big[KC_TRACESTATE_MAX + 2];
	char many[600] = "";

	CU_ASSERT_TRUE(kc_tracestate_valid("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
	CU_ASSERT_TRUE(kc_tracestate_valid("fw529a3039@dt=abc , tenant@vendor=x y"));
	CU_ASSERT_TRUE(kc_tracestate_valid("a=1,,b=2")); /* empty members are allowed */
	CU_ASSERT_FALSE(kc_tracestate_valid("Rojo=1"));  /* keys are lower case */
	CU_ASSERT_FALSE(kc_tracestate_valid("rojo"));    /* no value */
	CU_ASSERT_FALSE(kc_tracestate_valid("rojo="));
	CU_ASSERT_FALSE(kc_tracestate_valid("rojo=a=b"));
	CU_ASSERT_FALSE(kc_tracestate_valid("rojo=1\r\nX-Injected: yes"));
	CU_ASSERT_FALSE(kc_tracestate_valid(NULL));
	memset(big, 'a', sizeof big - 1);
	big[0] = 'k', big[1] = '=';
	big[sizeof big - 1] = '\0';
	CU_ASSERT_FALSE(kc_tracestate_valid(big)); /* longer than 512 */
	for (int i = 0; i < 33; i++)
		snprintf(many + strlen(many), sizeof many - strlen(many), "%sk%d=v", i ? "," : "",
			 i);
	CU_ASSERT_FALSE(kc_tracestate_valid(many)); /* more than 32 members */
}

static kanal_msg_t *s_event(const char *extra)
{
	char text[512];
	kanal_msg_t *m = NULL;
	kanal_error_t err;

	snprintf(text, sizeof text,
		 "{\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"s\",\"type\":\"t.x\"%s}",
		 extra ? extra : "");
	CU_ASSERT_EQUAL(kanal_msg_parse(text, strlen(text), 0, &m, &err), 0);
	return m;
}

static void test_an_event_adopts_a_valid_header_only_when_it_has_no_trace(void)
{
	kanal_msg_t *m = s_event(NULL);

	/* An invalid header is ignored, and so is a tracestate without a traceparent. */
	CU_ASSERT_FALSE(kc_trace_adopt(m, "00-garbage", "rojo=1"));
	CU_ASSERT_PTR_NULL(kanal_msg_attr(m, "traceparent"));
	CU_ASSERT_PTR_NULL(kanal_msg_attr(m, "tracestate"));
	/* A valid one becomes the extension, with a valid tracestate. */
	CU_ASSERT_TRUE(kc_trace_adopt(m, TP_VALID, "rojo=00f067aa0ba902b7"));
	CU_ASSERT_STRING_EQUAL(kanal_msg_attr(m, "traceparent"), TP_VALID);
	CU_ASSERT_STRING_EQUAL(kanal_msg_attr(m, "tracestate"), "rojo=00f067aa0ba902b7");
	kanal_msg_destroy(&m);

	/* The event's own trace wins over the request's. */
	m = s_event(",\"traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\"");
	CU_ASSERT_FALSE(kc_trace_adopt(m, TP_VALID, NULL));
	CU_ASSERT_STRING_EQUAL(kanal_msg_attr(m, "traceparent"),
			       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
	kanal_msg_destroy(&m);

	/* A later version goes on as version 00; an invalid tracestate is dropped. */
	m = s_event(NULL);
	CU_ASSERT_TRUE(kc_trace_adopt(
		m, "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", "Bad State"));
	CU_ASSERT_STRING_EQUAL(kanal_msg_attr(m, "traceparent"), TP_VALID);
	CU_ASSERT_PTR_NULL(kanal_msg_attr(m, "tracestate"));
	kanal_msg_destroy(&m);
}

/* kanald and a connector must come to the same span id for one delivery attempt, and
 * different attempts and deliveries to different ones. */
static void test_delivery_span_ids_are_stable_and_distinct(void)
{
	kc_trace_ctx_t tc;
	uint8_t a[8], b[8], c[8], d[8], zero[8] = { 0 };

	CU_ASSERT_EQUAL(kc_traceparent_parse(TP_VALID, &tc), 0);
	kc_trace_delivery_span(tc.trace_id, 42, 1, a);
	kc_trace_delivery_span(tc.trace_id, 42, 1, b);
	kc_trace_delivery_span(tc.trace_id, 42, 2, c);
	kc_trace_delivery_span(tc.trace_id, 43, 1, d);
	CU_ASSERT_EQUAL(memcmp(a, b, 8), 0);
	CU_ASSERT_NOT_EQUAL(memcmp(a, c, 8), 0);
	CU_ASSERT_NOT_EQUAL(memcmp(a, d, 8), 0);
	CU_ASSERT_NOT_EQUAL(memcmp(a, zero, 8), 0);
	tc.trace_id[15] ^= 1; /* another trace */
	kc_trace_delivery_span(tc.trace_id, 42, 1, b);
	CU_ASSERT_NOT_EQUAL(memcmp(a, b, 8), 0);
	{
		const char *p1[] = { "ab", "c" }, *p2[] = { "a", "bc" };
		kc_trace_span_id(tc.trace_id, p1, 2, 0, a);
		kc_trace_span_id(tc.trace_id, p2, 2, 0, b);
		CU_ASSERT_NOT_EQUAL(memcmp(a, b, 8), 0);
	}
}

/* ---- kanald.yaml's trace block ------------------------------------------------------- */

static int s_load(const char *yaml, conf_t **out, char **errors)
{
	char *dir = test_tmpdir("trace-conf");
	char *path = test_write_file(dir, "kanald.yaml", yaml);
	diag_t d = { 0 };
	int rc;

	rc = conf_load(path, out, &d);
	*errors = diag_join(&d);
	diag_free(&d);
	free(path);
	test_rmdir_r(dir);
	free(dir);
	return rc;
}

static void test_trace_export_is_off_unless_configured(void)
{
	conf_t *conf = NULL;
	char *errors = NULL;

	CU_ASSERT_EQUAL(s_load("log_level: info\n", &conf, &errors), 0);
	CU_ASSERT_PTR_NULL(conf ? conf->trace_url : "set");
	conf_destroy(&conf);
	free(errors);

	CU_ASSERT_EQUAL(
		s_load("trace:\n  export:\n    url: http://127.0.0.1:4318/v1/traces\n"
		       "    batch: 64\n    interval: 250ms\n    service_name: kanald-test\n",
		       &conf, &errors),
		0);
	if (conf) {
		CU_ASSERT_STRING_EQUAL(conf->trace_url, "http://127.0.0.1:4318/v1/traces");
		CU_ASSERT_EQUAL(conf->trace_batch, 64);
		CU_ASSERT_EQUAL(conf->trace_interval_ms, 250);
		CU_ASSERT_EQUAL(conf->trace_queue, 4096);
		CU_ASSERT_STRING_EQUAL(conf->trace_service_name, "kanald-test");
	}
	conf_destroy(&conf);
	free(errors);
}

static void test_trace_export_mistakes_are_reported_with_their_line(void)
{
	static const struct {
		const char *yaml, *error;
	} cases[] = {
		{ "trace:\n  export:\n    batch: 5\n",
		  "kanald.yaml:3:5: error: trace 'export' needs a 'url'" },
		{ "trace:\n  export:\n    url: ftp://x/\n",
		  "kanald.yaml:3:10: error: trace export option 'url': " },
		/* the host libcurl connects to is evil.example, not 127.0.0.1 */
		{ "trace:\n  export:\n    url: http://127.0.0.1@evil.example/v1/traces\n",
		  "would send spans over plain HTTP beyond this host" },
		{ "trace:\n  export:\n    url: http://collector.example:4318/v1/traces\n",
		  "would send spans over plain HTTP beyond this host" },
		{ "trace:\n  export:\n    url: http://127.0.0.1:4318/\n    bach: 5\n", "bach" },
		{ "trace:\n  export:\n    url: http://127.0.0.1:4318/\n    batch: 100\n    queue: "
		  "10\n",
		  "kanald.yaml:5:12: error: trace export 'queue' (10 spans) is smaller than its "
		  "'batch' (100)" },
		{ "trace:\n  exporter: {}\n", "exporter" },
		{ "trace:\n  export:\n", "kanald.yaml:2:10: error: trace 'export' needs a 'url'" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		conf_t *conf = NULL;
		char *errors = NULL;

		CU_ASSERT_EQUAL(s_load(cases[i].yaml, &conf, &errors), KANAL_ECONFIG);
		CU_ASSERT_PTR_NOT_NULL(errors ? strstr(errors, cases[i].error) : NULL);
		if (!errors || !strstr(errors, cases[i].error))
			fprintf(stderr, "\ncase %zu: expected '%s' in:\n%s\n", i, cases[i].error,
				errors ? errors : "(none)");
		conf_destroy(&conf);
		free(errors);
	}
	{
		/* https may go anywhere; so may plain HTTP when the operator allows it. */
		conf_t *conf = NULL;
		char *errors = NULL;
		CU_ASSERT_EQUAL(
			s_load("trace:\n  export:\n    url: https://collector.example/v1/traces\n",
			       &conf, &errors),
			0);
		conf_destroy(&conf);
		free(errors);
		CU_ASSERT_EQUAL(
			s_load("security:\n  allow_plain: true\ntrace:\n  export:\n    url: "
			       "http://collector.example:4318/v1/traces\n",
			       &conf, &errors),
			0);
		conf_destroy(&conf);
		free(errors);
	}
}

TEST_MAIN("trace", TEST(test_a_valid_traceparent_is_read_field_by_field),
	  TEST(test_invalid_traceparents_are_refused),
	  TEST(test_a_later_version_is_read_by_its_first_fields), TEST(test_tracestate_lists),
	  TEST(test_an_event_adopts_a_valid_header_only_when_it_has_no_trace),
	  TEST(test_delivery_span_ids_are_stable_and_distinct),
	  TEST(test_trace_export_is_off_unless_configured),
	  TEST(test_trace_export_mistakes_are_reported_with_their_line))
