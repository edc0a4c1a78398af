/*
 * tests/unit/test_delivery_rules.c — the pure rules of broker/delivery.c, called directly
 * (libkanalcore.a): the retry backoff (exponential, capped, with jitter on the upper half,
 * never below the plugin's hint) and the decision an outcome leads to (done, retry, dead
 * letter, or held for the route's fallback). The integration suite test_delivery runs
 * the same rules through a real kanald.
 */
#include <stdlib.h>

#include <kanal/kanal.h>

#include "router_int.h"
#include "test.h"

#define DRAWS 20000

/* A retry policy like the defaults (docs/routes.md), with a ceiling reached sooner. */
static const route_retry_t s_rt = { 8, 1000, 30000 };

/* The un-jittered delay of an attempt: backoff doubled per attempt, capped. */
static int64_t s_capped(const route_retry_t *rt, int attempt)
{
	int64_t ms = rt->backoff_ms;

	for (int i = 1; i < attempt && ms < rt->max_backoff_ms; i++)
		ms *= 2;
	return ms < rt->max_backoff_ms ? ms : rt->max_backoff_ms;
}

/* Every draw lies within [capped / 2, capped] — the documented spread (docs/routes.md:
 * "between half and all of the computed value") — and the draws do spread over it. */
static void test_backoff_stays_within_its_bounds(void)
{
	srand(42);
	for (int attempt = 1; attempt <= 12; attempt++) {
		int64_t cap = s_capped(&s_rt, attempt), lo = cap, hi = 0;
		int outside = 0;

		for (int k = 0; k < DRAWS; k++) {
			int64_t d = delivery_backoff(&s_rt, attempt, 0);
			if (d < cap / 2 || d > cap)
				outside++;
			lo = d < lo ? d : lo;
			hi = d > hi ? d : hi;
		}
		CU_ASSERT_EQUAL(outside, 0);
		/* The jitter covers its range: draws near both ends. */
		CU_ASSERT(lo <= cap / 2 + cap / 50);
		CU_ASSERT(hi >= cap - cap / 50);
	}
}

/* The mean delay doubles with each attempt until the ceiling, then stays there. */
static void test_backoff_grows_exponentially_up_to_the_cap(void)
{
	double prev = 0;

	srand(7);
	for (int attempt = 1; attempt <= 10; attempt++) {
		double sum = 0, mean;

		for (int k = 0; k < DRAWS; k++)
			sum += (double)delivery_backoff(&s_rt, attempt, 0);
		mean = sum / DRAWS;
		/* Uniform over [cap/2, cap]: the mean is 3/4 of the cap (within 2 %). */
		CU_ASSERT_DOUBLE_EQUAL(mean, 0.75 * (double)s_capped(&s_rt, attempt),
				       0.02 * (double)s_capped(&s_rt, attempt));
		if (attempt > 1 && s_capped(&s_rt, attempt) < s_rt.max_backoff_ms)
			CU_ASSERT_DOUBLE_EQUAL(mean / prev, 2.0, 0.08);
		if (attempt > 1 && s_capped(&s_rt, attempt - 1) == s_rt.max_backoff_ms)
			CU_ASSERT_DOUBLE_EQUAL(mean / prev, 1.0, 0.04);
		prev = mean;
	}
	/* Far past the ceiling (no overflow): still at most max_backoff. */
	for (int k = 0; k < 1000; k++)
		CU_ASSERT(delivery_backoff(&s_rt, 200, 0) <= s_rt.max_backoff_ms);
}

/* A plugin's retry_after hint wins when it asks for longer; a shorter one is ignored. */
static void test_backoff_honours_a_longer_hint(void)
{
	srand(1);
	for (int k = 0; k < 1000; k++) {
		CU_ASSERT_EQUAL(delivery_backoff(&s_rt, 1, 90000), 90000);
		CU_ASSERT(delivery_backoff(&s_rt, 1, 10) >= 500);
	}
}

/* OK is done; RETRY retries while the budget lasts and kanald is not stopping. */
static void test_decide_ok_and_retry_budget(void)
{
	int retries = 0, attempt = 1;

	CU_ASSERT_EQUAL(delivery_decide(KANAL_OUTCOME_OK, 1, &s_rt, false, false), DELIVERY_DONE);
	CU_ASSERT_EQUAL(delivery_decide(KANAL_OUTCOME_OK, 1, &s_rt, true, true), DELIVERY_DONE);
	/* A destination that always answers RETRY: max_attempts attempts in all, then dead. */
	while (delivery_decide(KANAL_OUTCOME_RETRY, attempt, &s_rt, false, false) ==
	       DELIVERY_RETRY) {
		retries++;
		attempt++;
		REQUIRE(retries < 100);
	}
	CU_ASSERT_EQUAL(attempt, s_rt.max_attempts);
	CU_ASSERT_EQUAL(retries, s_rt.max_attempts - 1);
	CU_ASSERT_EQUAL(delivery_decide(KANAL_OUTCOME_RETRY, attempt, &s_rt, false, true),
			DELIVERY_DEAD);
	/* Stopping: no retry is started, whatever the budget. */
	CU_ASSERT_EQUAL(delivery_decide(KANAL_OUTCOME_RETRY, 1, &s_rt, true, false), DELIVERY_DEAD);
	{
		const route_retry_t once = { 1, 1000, 1000 };
		CU_ASSERT_EQUAL(delivery_decide(KANAL_OUTCOME_RETRY, 1, &once, false, false),
				DELIVERY_DEAD);
	}
done:;
}

/* REJECT is permanent: held for the flow's fallback when the route has one, else dead —
 * never retried, whatever the budget left. */
static void test_decide_reject_fallback_or_dead(void)
{
	CU_ASSERT_EQUAL(delivery_decide(KANAL_OUTCOME_REJECT, 1, &s_rt, false, true),
			DELIVERY_HOLD);
	CU_ASSERT_EQUAL(delivery_decide(KANAL_OUTCOME_REJECT, 1, &s_rt, false, false),
			DELIVERY_DEAD);
	CU_ASSERT_EQUAL(delivery_decide(KANAL_OUTCOME_REJECT, 1, NULL, false, false),
			DELIVERY_DEAD);
	CU_ASSERT_EQUAL(delivery_decide(KANAL_OUTCOME_REJECT, 3, &s_rt, true, true), DELIVERY_HOLD);
}

TEST_MAIN("delivery_rules", TEST(test_backoff_stays_within_its_bounds),
	  TEST(test_backoff_grows_exponentially_up_to_the_cap),
	  TEST(test_backoff_honours_a_longer_hint), TEST(test_decide_ok_and_retry_budget),
	  TEST(test_decide_reject_fallback_or_dead))
