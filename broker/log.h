/*
 * broker/log.h — kanald's log: one line per happening on stderr,
 * "2026-11-24T10:00:00.123Z info  router: text", CPR numbers masked before writing.
 * Safe to call from any thread (one write(2) per line).
 */
#ifndef KANAL_LOG_H
#define KANAL_LOG_H

#include <kanal/plugin.h>

void log_set_level(kanal_log_level_t level);
kanal_log_level_t log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns 0 or KANAL_EINVAL. */
int log_parse_level(const char *text, kanal_log_level_t *out);
void log_msg(kanal_log_level_t level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(c, ...) log_msg(KANAL_LOG_ERROR, c, __VA_ARGS__)
#define log_warn(c, ...) log_msg(KANAL_LOG_WARN, c, __VA_ARGS__)
#define log_info(c, ...) log_msg(KANAL_LOG_INFO, c, __VA_ARGS__)
#define log_debug(c, ...) log_msg(KANAL_LOG_DEBUG, c, __VA_ARGS__)

#endif
