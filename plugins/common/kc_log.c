/*
 * plugins/common/kc_log.c — the rate-limited log line (kc_log.h): what a peer can cause at
 * will is written at most once a second, with a count of the lines held back.
 */
#include "kc_log.h"

#include <stdarg.h>
#include <stdio.h>

void kc_log_limited(kanal_ctx_t *ctx, kc_log_limit_t *limit, kanal_log_level_t level,
		    const char *fmt, ...)
{
	int64_t now = kanal_now_ms();
	char line[600];
	va_list ap;

	if (now < limit->next_ms) {
		limit->held++;
		return;
	}
	limit->next_ms = now + 1000;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (limit->held)
		kanal_log(ctx, level, "%s (%u more like this held back)", line, limit->held);
	else
		kanal_log(ctx, level, "%s", line);
	limit->held = 0;
}
