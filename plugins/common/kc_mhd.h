/*
 * plugins/common/kc_mhd.h — driving a libmicrohttpd daemon from an instance's own thread, for
 * the plugins that listen there (http's ingress): the daemon runs in
 * external epoll mode (MHD_USE_EPOLL, no threads of its own), the instance watches its epoll
 * descriptor with kanal_fd_watch and keeps one kanal timer armed for what libmicrohttpd needs
 * next, so every request handler runs on the instance's thread and may call kanal_emit. A
 * listener that must answer while its instance is blocked (digitalpost's and sf2900's
 * receipts) runs libmicrohttpd on its own thread instead (kc_inbox.h: kc_mhd_listen_thread
 * and the inbox) and uses only kc_mhd_body_take.
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a). Functions are prefixed kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_KC_MHD_H
#define KANAL_PLUGINS_KC_MHD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kanal/kanal.h>
#include <microhttpd.h>

/* The pump's state, a member of the plugin's state (zeroed, then kc_mhd_pump_start). */
typedef struct kc_mhd_pump {
	kanal_ctx_t *ctx;
	struct MHD_Daemon *daemon;    /* borrowed: the plugin starts and stops it */
	int epoll_fd;                 /* watched; -1: none */
	int64_t timer;                /* 0: none armed */
	int64_t max_ms;               /* the longest the timer waits */
	int64_t (*before)(void *arg); /* run first each time: ms until its own next need */
	void *arg;
} kc_mhd_pump_t;

/* Watches daemon's epoll descriptor on ctx and pumps once. max_ms bounds the timer; before
 * (may be NULL) runs before each MHD_run and returns how soon it wants to run again (e.g. a
 * gate's sweep). Returns 0, or KANAL_EIO when the daemon has no epoll descriptor or it cannot
 * be watched (the pump is then stopped). Ownership: borrows ctx and daemon (both must outlive
 * the pump until kc_mhd_pump_stop) and arg. */
int kc_mhd_pump_start(kc_mhd_pump_t *p, kanal_ctx_t *ctx, struct MHD_Daemon *daemon, int64_t max_ms,
		      int64_t (*before)(void *arg), void *arg);

/* Lets libmicrohttpd do what is due, then re-arms the timer. Does nothing when stopped.
 * Takes a kc_mhd_pump_t * as void *, so it can be a callback. Ownership: borrows p. */
void kc_mhd_pump(void *p);

/* A request body being received, kept in the connection's *con_cls by kc_mhd_body_take. */
typedef struct kc_mhd_body {
	char *data; /* NUL-terminated once anything arrived; NULL: nothing yet */
	size_t len;
	bool too_big; /* more than max arrived: the rest was dropped */
} kc_mhd_body_t;

/* For an access handler that takes a whole body: on the first call (*con_cls NULL) makes
 * the body and returns KC_MHD_BODY_MORE; while data arrives appends it (up to max bytes,
 * then too_big) and returns KC_MHD_BODY_MORE; on the last call (*size 0) sets *out and
 * returns KC_MHD_BODY_DONE. KC_MHD_BODY_ERROR: out of memory. On MORE the handler returns
 * MHD_YES, on ERROR MHD_NO. Register kc_mhd_body_free as MHD_OPTION_NOTIFY_COMPLETED.
 * Ownership: *con_cls holds the body until kc_mhd_body_free; *out is borrowed from it. */
enum { KC_MHD_BODY_MORE, KC_MHD_BODY_DONE, KC_MHD_BODY_ERROR };
int kc_mhd_body_take(void **con_cls, const char *data, size_t *size, size_t max,
		     kc_mhd_body_t **out);

/* Frees the body of a connection (a MHD_RequestCompletedCallback). */
void kc_mhd_body_free(void *cls, struct MHD_Connection *conn, void **con_cls,
		      enum MHD_RequestTerminationCode toe);

/* Cancels the timer and stops watching; the daemon is the caller's to stop afterwards.
 * Accepts a pump that never started. Ownership: borrows p. */
void kc_mhd_pump_stop(kc_mhd_pump_t *p);

#endif
