/*
 * broker/notify.h — kanald's word to its service manager (systemd's sd_notify): READY=1
 * once the plugins run and the journal is open, STATUS= lines, STOPPING=1, and WATCHDOG=1
 * from the router's loop when the unit sets WatchdogSec. Built without libsystemd (no
 * HAVE_SYSTEMD) or run outside systemd (no $NOTIFY_SOCKET), every call does nothing.
 */
#ifndef KANAL_NOTIFY_H
#define KANAL_NOTIFY_H

#include <stdint.h>

/* Says "READY=1" with a STATUS= line. */
void notify_ready(const char *status);
/* Says "STOPPING=1" with a STATUS= line. */
void notify_stopping(const char *status);
/* Says a STATUS= line ("reloading the routing files"). */
void notify_status(const char *status);
/* How long the router's loop may wait in poll: wait_ms (-1: forever) capped at half the
 * watchdog interval when the service manager expects WATCHDOG=1. */
int64_t notify_watchdog_wait(int64_t wait_ms);
/* Says "WATCHDOG=1" when half the interval has passed since the last; any thread. */
void notify_watchdog(void);

#endif
