/*
 * tests/unit/test_kc_http.c — the connectors' HTTP client (plugins/common/kc_http.c) says
 * why no answer came with a kanal error code: KANAL_EIO when nothing listens, KANAL_ETIMEDOUT
 * when the upstream takes the connection and never answers — and the shared options
 * (kc_http_conf_open) refuse what does not go together.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"

#include "../../plugins/common/kc_http.h"

/* A socket on 127.0.0.1 that listens (when `listening`) but never accepts or answers.
 * Returns the fd and writes the URL to it into url. */
static int s_silent_server(bool listening, char *url, size_t size)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0 || (listening && listen(fd, 4) != 0))
		return -1;
	snprintf(url, size, "http://127.0.0.1:%u/x", (unsigned)ntohs(a.sin_port));
	return fd;
}

/* Sends one GET to a silent server and checks that no answer came, with a reason and the
 * code `want`. */
static void s_expect_no_answer(kc_http_t *http, bool listening, int want)
{
	kc_response_t res;
	char url[64];
	int fd = s_silent_server(listening, url, sizeof url);

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(kc_http_request(http, "GET", url, NULL, NULL, 0, &res), want);
	CU_ASSERT_EQUAL(res.status, 0);
	CU_ASSERT_NOT_EQUAL(res.error.text[0], '\0');
	kc_response_clear(&res);
	close(fd);
}

static void test_no_answer_has_a_kanal_code(void)
{
	kc_http_opts_t o = { .timeout_ms = 300, .connect_timeout_ms = 300 };
	kc_http_t *http = kc_http_new(&o);

	CU_ASSERT_PTR_NOT_NULL_FATAL(http);
	/* Bound but not listening: the connection is refused. */
	s_expect_no_answer(http, false, KANAL_EIO);
	/* Listening, never answering: the timeout ends it. */
	s_expect_no_answer(http, true, KANAL_ETIMEDOUT);
	kc_http_destroy(&http);
	CU_ASSERT_PTR_NULL(http);
}

static void test_conf_refuses_what_does_not_go_together(void)
{
	kc_http_conf_t both_tokens = { .timeout_ms = 1000, .token = "t", .token_file = "/x" };
	kc_http_conf_t password_alone = { .timeout_ms = 1000, .password = "p" };
	kc_http_conf_t basic = {
		.timeout_ms = 10000, .user = "u", .password = "p", .ca_file = "/ca.pem"
	};
	kc_http_opts_t o;

	CU_ASSERT_EQUAL(kc_http_conf_open(NULL, &both_tokens, &o), KANAL_ECONFIG);
	CU_ASSERT_EQUAL(kc_http_conf_open(NULL, &password_alone, &o), KANAL_ECONFIG);
	CU_ASSERT_EQUAL(kc_http_conf_open(NULL, &basic, &o), 0);
	CU_ASSERT_STRING_EQUAL(o.user, "u");
	CU_ASSERT_STRING_EQUAL(o.password, "p");
	CU_ASSERT_STRING_EQUAL(o.ca_file, "/ca.pem");
	CU_ASSERT_EQUAL(o.timeout_ms, 10000);
	CU_ASSERT_EQUAL(o.connect_timeout_ms, 3000); /* connecting: at most 3 s of it */
	CU_ASSERT_PTR_NULL(o.bearer_token);
	kc_http_conf_clear(&basic);
}

TEST_MAIN("kc_http", TEST(test_no_answer_has_a_kanal_code),
	  TEST(test_conf_refuses_what_does_not_go_together))
