/*
 * tests/unit/test_pending.c — deferred answers of a service (kanal_request_defer,
 * kanal_pending_reply, kanal_pending_fail, and the host's kanal__ctx_cancel in sdk/ctx.c):
 * a deferred request is answered once, later, with what the plugin said; a request whose
 * caller gave up is answered RETRY at once, the plugin's on_cancel runs, and the plugin's
 * late answer is dropped; a host that cannot defer makes the plugin answer in on_message.
 * The host here is a fake ops table that records each answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "host.h"

typedef struct answer {
	uint64_t id;
	int outcome;
	bool has_reply;
	char error[128];
	int64_t retry_after_ms;
} answer_t;

static answer_t s_answers[8];
static size_t s_n_answers;

static void s_answer(kanal_ctx_t *ctx, uint64_t id, int outcome, kanal_msg_t *reply,
		     const char *error, int64_t retry_after_ms)
{
	answer_t *a = &s_answers[s_n_answers < 8 ? s_n_answers++ : 7];

	a->id = id;
	a->outcome = outcome;
	a->has_reply = reply != NULL;
	snprintf(a->error, sizeof a->error, "%s", error ? error : "");
	a->retry_after_ms = retry_after_ms;
	kanal_msg_destroy(&reply);
}

static int s_reply_op(kanal_ctx_t *ctx, kanal_msg_t *reply)
{
	kanal_msg_destroy(&reply);
	return 0;
}

static const kanal_host_ops_t s_ops = { .reply = s_reply_op, .answer = s_answer };
static const kanal_host_ops_t s_ops_no_defer = { .reply = s_reply_op };

static int s_cancels;

static void s_on_cancel(kanal_ctx_t *ctx, kanal_pending_t *pending, void *arg)
{
	s_cancels++;
	CU_ASSERT(kanal_pending_cancelled(pending));
	CU_ASSERT_PTR_EQUAL(arg, &s_cancels);
}

static kanal_msg_t *s_reply_msg(void)
{
	return kanal_msg_new("person.lookup.response", "test", NULL);
}

static void s_reset(void)
{
	memset(s_answers, 0, sizeof s_answers);
	s_n_answers = 0;
	s_cancels = 0;
}

/* Deferred in "on_message", answered afterwards: one OK answer with the reply, for the
 * right delivery; kanal_reply is refused for a deferred request. */
static void test_deferred_answered_later(void)
{
	kanal_ctx_t *ctx = kanal__ctx_new("svc", &s_ops, NULL, NULL);
	kanal_pending_t *p1, *p2;
	kanal_msg_t *reply = s_reply_msg();

	s_reset();
	kanal__ctx_bind(ctx);
	kanal__ctx_begin_delivery(ctx, 7, "r", 1, true);
	p1 = kanal_request_defer(ctx, NULL, NULL);
	CU_ASSERT_PTR_NOT_NULL(p1);
	CU_ASSERT_PTR_NULL(kanal_request_defer(ctx, NULL, NULL)); /* once per request */
	CU_ASSERT_EQUAL(kanal_reply(ctx, NULL, &reply), KANAL_ESTATE);
	kanal__ctx_end_delivery(ctx);
	CU_ASSERT(ctx->delivery.deferred); /* the host does not answer it now */
	kanal__ctx_begin_delivery(ctx, 8, "r", 1, true);
	p2 = kanal_request_defer(ctx, NULL, NULL);
	kanal__ctx_end_delivery(ctx);
	CU_ASSERT_EQUAL(s_n_answers, 0);

	/* Answered out of order: each for its own delivery. */
	CU_ASSERT_EQUAL(kanal_pending_fail(ctx, &p2, KANAL_OUTCOME_RETRY, 250, "upstream %d", 503),
			0);
	CU_ASSERT_PTR_NULL(p2);
	reply = s_reply_msg();
	CU_ASSERT_EQUAL(kanal_pending_reply(ctx, &p1, &reply), 0);
	CU_ASSERT_PTR_NULL(p1);
	CU_ASSERT_PTR_NULL(reply);
	CU_ASSERT_EQUAL(s_n_answers, 2);
	CU_ASSERT_EQUAL(s_answers[0].id, 8);
	CU_ASSERT_EQUAL(s_answers[0].outcome, KANAL_OUTCOME_RETRY);
	CU_ASSERT_STRING_EQUAL(s_answers[0].error, "upstream 503");
	CU_ASSERT_EQUAL(s_answers[0].retry_after_ms, 250);
	CU_ASSERT_EQUAL(s_answers[1].id, 7);
	CU_ASSERT_EQUAL(s_answers[1].outcome, KANAL_OUTCOME_OK);
	CU_ASSERT(s_answers[1].has_reply);
	CU_ASSERT_PTR_NULL(ctx->pending);
	kanal__ctx_destroy(&ctx);
}

/* The caller gave up: answered RETRY at once, on_cancel ran, the late reply is dropped
 * (KANAL_ETIMEDOUT) and nothing more is answered; a second cancel changes nothing. */
static void test_cancelled_not_answered_late(void)
{
	kanal_ctx_t *ctx = kanal__ctx_new("svc", &s_ops, NULL, NULL);
	kanal_pending_t *p;
	kanal_msg_t *reply;

	s_reset();
	kanal__ctx_bind(ctx);
	kanal__ctx_begin_delivery(ctx, 42, NULL, 1, true);
	p = kanal_request_defer(ctx, s_on_cancel, &s_cancels);
	kanal__ctx_end_delivery(ctx);
	CU_ASSERT(!kanal_pending_cancelled(p));
	CU_ASSERT(kanal__ctx_cancel(ctx, 42, "the caller gave up"));
	CU_ASSERT(!kanal__ctx_cancel(ctx, 42, "again"));
	CU_ASSERT(!kanal__ctx_cancel(ctx, 43, "not deferred"));
	CU_ASSERT_EQUAL(s_cancels, 1);
	CU_ASSERT(kanal_pending_cancelled(p));
	CU_ASSERT_EQUAL(s_n_answers, 1);
	CU_ASSERT_EQUAL(s_answers[0].id, 42);
	CU_ASSERT_EQUAL(s_answers[0].outcome, KANAL_OUTCOME_RETRY);
	CU_ASSERT_STRING_EQUAL(s_answers[0].error, "the caller gave up");
	reply = s_reply_msg();
	CU_ASSERT_EQUAL(kanal_pending_reply(ctx, &p, &reply), KANAL_ETIMEDOUT);
	CU_ASSERT_PTR_NULL(reply);
	CU_ASSERT_EQUAL(s_n_answers, 1);
	CU_ASSERT_PTR_NULL(ctx->pending);
	kanal__ctx_destroy(&ctx);
}

/* A host without deferral (the harness, a plugin host) and a delivery that is no request:
 * no handle, so the plugin answers in on_message. Handles left at stop are answered RETRY
 * once by the host, and freed with the ctx. */
static void test_no_defer_and_abandon(void)
{
	kanal_ctx_t *ctx = kanal__ctx_new("svc", &s_ops_no_defer, NULL, NULL);
	kanal_pending_t *p;

	s_reset();
	kanal__ctx_bind(ctx);
	kanal__ctx_begin_delivery(ctx, 1, NULL, 1, true);
	CU_ASSERT_PTR_NULL(kanal_request_defer(ctx, NULL, NULL));
	kanal__ctx_end_delivery(ctx);
	kanal__ctx_destroy(&ctx);

	ctx = kanal__ctx_new("svc", &s_ops, NULL, NULL);
	kanal__ctx_bind(ctx);
	kanal__ctx_begin_delivery(ctx, 2, "r", 1, false); /* a routed event */
	CU_ASSERT_PTR_NULL(kanal_request_defer(ctx, NULL, NULL));
	kanal__ctx_end_delivery(ctx);
	CU_ASSERT_PTR_NULL(kanal_request_defer(ctx, NULL, NULL)); /* outside on_message */
	kanal__ctx_begin_delivery(ctx, 3, NULL, 1, true);
	p = kanal_request_defer(ctx, NULL, NULL);
	kanal__ctx_end_delivery(ctx);
	CU_ASSERT_PTR_NOT_NULL(p);
	CU_ASSERT_EQUAL(kanal__ctx_pending_abandon(ctx, "stopped"), 1);
	CU_ASSERT_EQUAL(kanal__ctx_pending_abandon(ctx, "stopped"), 0);
	CU_ASSERT_EQUAL(s_n_answers, 1);
	CU_ASSERT_EQUAL(s_answers[0].id, 3);
	CU_ASSERT_EQUAL(s_answers[0].outcome, KANAL_OUTCOME_RETRY);
	kanal__ctx_destroy(&ctx); /* frees the abandoned handle (ASan would see a leak) */
}

TEST_MAIN("pending", TEST(test_deferred_answered_later), TEST(test_cancelled_not_answered_late),
	  TEST(test_no_defer_and_abandon))
