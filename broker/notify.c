/*
 * broker/notify.c — kanald's sd_notify messages to systemd (notify.h). The watchdog
 * interval is read once from $WATCHDOG_USEC (sd_watchdog_enabled); the router's loop then
 * wakes at least twice an interval and pets the watchdog, so a wedged loop is restarted.
 */
#include <stdbool.h>
#include <stdio.h>

#include <kanal/plugin.h>
#include <kanal/time.h>

#include "notify.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

static void s_say(const char *what, const char *status)
{
	sd_notifyf(0, "%s%sSTATUS=%s", what ? what : "", what ? "\n" : "", status);
}

/* Half the watchdog interval in ms, or 0 when none is set; read once. */
static int64_t s_half_interval_ms(void)
{
	static int64_t half = -1;
	uint64_t usec = 0;

	if (__atomic_load_n(&half, __ATOMIC_RELAXED) < 0) {
		int64_t h = sd_watchdog_enabled(0, &usec) > 0 ? (int64_t)(usec / 2000) : 0;
		__atomic_store_n(&half, h > 0 ? h : (usec ? 1 : 0), __ATOMIC_RELAXED);
	}
	return __atomic_load_n(&half, __ATOMIC_RELAXED);
}

void notify_watchdog(void)
{
	static int64_t last_ms;
	int64_t half = s_half_interval_ms(), now;

	if (!half)
		return;
	now = kanal_now_ms();
	if (now - __atomic_load_n(&last_ms, __ATOMIC_RELAXED) < half)
		return;
	__atomic_store_n(&last_ms, now, __ATOMIC_RELAXED);
	sd_notify(0, "WATCHDOG=1");
}
#else
static void s_say(const char *what, const char *status)
{
}

static int64_t s_half_interval_ms(void)
{
	return 0;
}

void notify_watchdog(void)
{
}
#endif

void notify_ready(const char *status)
{
	s_say("READY=1", status);
}

void notify_stopping(const char *status)
{
	s_say("STOPPING=1", status);
}

void notify_status(const char *status)
{
	s_say(NULL, status);
}

int64_t notify_watchdog_wait(int64_t wait_ms)
{
	int64_t half = s_half_interval_ms();

	if (!half || (wait_ms >= 0 && wait_ms <= half))
		return wait_ms;
	return half;
}
