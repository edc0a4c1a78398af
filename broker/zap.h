/*
 * broker/zap.h — kanald's ZAP handler (ZeroMQ RFC 27): the thread that decides which CURVE
 * clients may connect to the gateway and the event stream.
 *
 * With `security.curve` in kanald.yaml, the gateway (ROUTER) and the stream (XPUB) are
 * CURVE servers holding the broker's secret key. libzmq asks the handler about every
 * handshake on inproc://zeromq.zap.01; the handler accepts a client whose public key is on
 * the allow-list (`security.curve.clients`) and sets the ZAP user id to the client's name,
 * which the broker then reads from each message (zmq_msg_gets(msg, "User-Id")) to apply
 * the client's ACL (acl.h). Every other key is refused, counted and logged — with the
 * peer's address and the socket, never a key.
 *
 * Order matters: the handler must be bound before the CURVE sockets bind (a handshake
 * finding no handler would be let through by libzmq's defaults), and stopped after they
 * have closed.
 */
#ifndef KANAL_ZAP_H
#define KANAL_ZAP_H

#include <stdint.h>
#include "conf.h"

typedef struct zap zap_t;

/* The ZAP domains of kanald's two CURVE sockets. */
#define ZAP_DOMAIN_GATEWAY "kanal.gateway"
#define ZAP_DOMAIN_STREAM "kanal.stream"

/* Binds the handler in zctx and starts its thread, for conf's clients (conf must outlive
 * it). Returns NULL with the reason in err. Ownership: new; zap_destroy it. */
zap_t *zap_new(void *zctx, const conf_t *conf, char *err, size_t err_size);

/* Stops the thread and closes the handler's socket. Call after the CURVE sockets have
 * closed. Accepts NULL; nulls *zap_p. */
void zap_destroy(zap_t **zap_p);

/* Makes sock a CURVE server with the broker's secret key, its handshakes judged by this
 * handler under `domain`. Call before binding. Returns 0, or -1 with the reason in err. */
int zap_secure_socket(const zap_t *zap, void *sock, const char *domain, char *err, size_t err_size);

/* How many handshakes the handler refused since it started (any thread may ask). */
uint64_t zap_denied(const zap_t *zap);

#endif
