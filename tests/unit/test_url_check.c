/*
 * tests/unit/test_url_check.c — the one rule for where a connector may send
 * (plugins/common/kc_url.c): https always, plain http only to this machine unless
 * allow_plain_http, no other scheme; hosts that only look like loopback are not.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "test.h"

#include "../../plugins/common/kc_url.h"

/* Runs kc_url_check and returns its result; err receives the text. */
static int s_check(const char *url, bool allow, bool *plain_remote, kanal_error_t *err)
{
	kanal_error_clear(err);
	return kc_url_check("base_url", url, allow, plain_remote, err);
}

static void test_https_is_always_allowed(void)
{
	kanal_error_t err;
	bool plain = true;

	CU_ASSERT_EQUAL(s_check("https://digitalpost.example.dk/api", false, &plain, &err), 0);
	CU_ASSERT_FALSE(plain);
	CU_ASSERT_EQUAL(s_check("HTTPS://EVIL.EXAMPLE/", false, &plain, &err), 0);
}

static void test_plain_http_to_loopback_is_allowed(void)
{
	static const char *const ok[] = {
		"http://127.0.0.1:5232/owner-1/kanal/",
		"http://localhost/",
		"HTTP://LOCALHOST/",
		"http://[::1]:8080/",
		"http://127.200.3.4/",
		/* userinfo: the host is 127.0.0.1, which is what curl connects to. */
		"http://evil.example@127.0.0.1/",
		/* curl reads 127.1 as 127.0.0.1 (inet_aton's short form) and connects there. */
		"http://127.1/",
		NULL,
	};
	kanal_error_t err;
	bool plain;

	for (size_t i = 0; ok[i]; i++) {
		plain = true;
		CU_ASSERT_EQUAL(s_check(ok[i], false, &plain, &err), 0);
		CU_ASSERT_FALSE(plain);
		if (plain)
			fprintf(stderr, "  %s counted as another machine\n", ok[i]);
	}
}

static void test_hosts_that_only_look_local_are_refused(void)
{
	static const struct {
		const char *url, *host;
	} bad[] = {
		{ "http://localhost.evil.example/", "localhost.evil.example" },
		{ "http://127.0.0.1.evil.example/", "127.0.0.1.evil.example" },
		{ "http://127.0.0.1@evil.example/", "evil.example" },
		{ "http://[::ffff:127.0.0.1]/", "[::ffff:127.0.0.1]" },
		{ "http://128.0.0.1/", "128.0.0.1" },
		{ NULL, NULL },
	};
	kanal_error_t err;
	char want[128];

	for (size_t i = 0; bad[i].url; i++) {
		CU_ASSERT_EQUAL(s_check(bad[i].url, false, NULL, &err), KANAL_ECONFIG);
		/* The error names the option and the host the URL really goes to. */
		snprintf(want, sizeof want, "option 'base_url': plain http to '%s' is refused",
			 bad[i].host);
		CU_ASSERT_PTR_NOT_NULL(strstr(err.text, want));
		CU_ASSERT_STRING_EQUAL(err.attribute, "base_url");
		if (!strstr(err.text, want))
			fprintf(stderr, "  %s: %s\n", bad[i].url, err.text);
	}
}

static void test_allow_plain_http_lets_it_through_with_a_warning(void)
{
	kanal_error_t err;
	bool plain = false;

	CU_ASSERT_EQUAL(s_check("http://print.intern.example/jobs", true, &plain, &err), 0);
	CU_ASSERT_TRUE(plain);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "plain http to 'print.intern.example'"));
	/* It does not open other schemes. */
	CU_ASSERT_EQUAL(s_check("ftp://127.0.0.1/x", true, &plain, &err), KANAL_ECONFIG);
}

static void test_other_schemes_and_garbage_are_refused(void)
{
	static const char *const bad[] = {
		"ftp://127.0.0.1/pub",
		"file:///etc/passwd",
		"gopher://localhost/",
		"http://a b.example/",
		"not a url at all",
		"",
		"http://",
		NULL,
	};
	kanal_error_t err;

	for (size_t i = 0; bad[i]; i++) {
		CU_ASSERT_EQUAL(s_check(bad[i], false, NULL, &err), KANAL_ECONFIG);
		CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "option 'base_url': "));
	}
	CU_ASSERT_EQUAL(s_check(NULL, false, NULL, &err), KANAL_ECONFIG);
}

/* The same test serves a listen address (the http plugin's ingress), where an IPv6 address
 * comes without brackets and a name is not resolved. */
static void test_loopback_hosts(void)
{
	CU_ASSERT_TRUE(kc_url_host_is_loopback("::1"));
	CU_ASSERT_TRUE(kc_url_host_is_loopback("[::1]"));
	CU_ASSERT_TRUE(kc_url_host_is_loopback("0:0:0:0:0:0:0:1"));
	CU_ASSERT_TRUE(kc_url_host_is_loopback("127.0.0.1"));
	CU_ASSERT_TRUE(kc_url_host_is_loopback("LocalHost"));
	CU_ASSERT_FALSE(kc_url_host_is_loopback("127.evil.example"));
	CU_ASSERT_FALSE(kc_url_host_is_loopback("0.0.0.0"));
	CU_ASSERT_FALSE(kc_url_host_is_loopback("::"));
	CU_ASSERT_FALSE(kc_url_host_is_loopback("[::1"));
	CU_ASSERT_FALSE(kc_url_host_is_loopback(""));
	CU_ASSERT_FALSE(kc_url_host_is_loopback(NULL));
}

TEST_MAIN("url_check", TEST(test_loopback_hosts), TEST(test_https_is_always_allowed),
	  TEST(test_plain_http_to_loopback_is_allowed),
	  TEST(test_hosts_that_only_look_local_are_refused),
	  TEST(test_allow_plain_http_lets_it_through_with_a_warning),
	  TEST(test_other_schemes_and_garbage_are_refused))
