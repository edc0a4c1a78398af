/*
 * tests/util/webhook_rx.h — a system at the far end of a webhook, for tests: an HTTP
 * server on an ephemeral port of 127.0.0.1 that answers every POST 200 and keeps each body,
 * so that a test can ask what kanal sent back to "the system that sent it" (a case system,
 * a self-service platform) — or what kanald's span exporter sent its collector.
 */
#ifndef KANAL_TEST_WEBHOOK_RX_H
#define KANAL_TEST_WEBHOOK_RX_H

#include <jansson.h>

typedef struct webhook_rx webhook_rx_t;

/* Starts a receiver. Returns NULL when it cannot listen. Ownership: the caller's
 * (webhook_rx_destroy). */
webhook_rx_t *webhook_rx_new(void);
/* Its base URL, "http://127.0.0.1:<port>" (any path is accepted). Ownership: borrowed. */
const char *webhook_rx_url(const webhook_rx_t *rx);
/* The bodies received so far that parse as JSON, in order of arrival. Ownership: a new
 * reference (an array), the caller's. */
json_t *webhook_rx_bodies(webhook_rx_t *rx);
/* Every POST received so far, in order of arrival, as {"path": …, "headers": {name in lower
 * case: value}, "body": the JSON body or null} (e.g. to read a request's traceparent).
 * Ownership: a new reference (an array), the caller's. */
json_t *webhook_rx_requests(webhook_rx_t *rx);
/* Answers the next `count` POSTs with HTTP `status` (e.g. 503, for a retry) instead of
 * 200; they are still recorded. Ownership: borrows rx. */
void webhook_rx_answer(webhook_rx_t *rx, unsigned status, int count);
/* Stops it and frees it; accepts NULL. Ownership: takes *rx_p and nulls it. */
void webhook_rx_destroy(webhook_rx_t **rx_p);

#endif
