/*
 * broker/log.h — kanald's log: one line per happening on stderr,
 * "2026-11-24T10:00:00.123Z info  router: text", CPR numbers masked before writing.
 * Safe to call from any thread (one write(2) per line).
 */
#ifndef KANAL_LOG_H
#define KANAL_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <kanal/plugin.h>

void log_set_level(kanal_log_level_t level);
/* log_format: json makes each record one JSON object on a line — {"time", "level",
 * "component", "message"} — for log shippers; false (the default) is the text line. */
void log_set_json(bool json);
kanal_log_level_t log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns 0 or KANAL_EINVAL. */
int log_parse_level(const char *text, kanal_log_level_t *out);
void log_msg(kanal_log_level_t level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(c, ...) log_msg(KANAL_LOG_ERROR, c, __VA_ARGS__)
#define log_warn(c, ...) log_msg(KANAL_LOG_WARN, c, __VA_ARGS__)
#define log_info(c, ...) log_msg(KANAL_LOG_INFO, c, __VA_ARGS__)
#define log_debug(c, ...) log_msg(KANAL_LOG_DEBUG, c, __VA_ARGS__)

/* A line that a peer can cause at will — a refused connection, a reply its client does not
 * read — is written at most once a second per call site: the others are counted and the
 * count goes out with the next line written ("(N more like this held back)"). Counters
 * and the event stream still see every one; only the log is spared a flood. Safe from any
 * thread. */
typedef struct log_limit {
	int64_t next_ms;
	unsigned held;
} log_limit_t;

/* True when a line may be written now; *held is how many were held back before it. */
bool log_limit_pass(log_limit_t *l, unsigned *held);
/* " (N more like this held back)", or "" when n is 0 (a buffer of the calling thread). */
const char *log_limit_note(unsigned n);

#define log_warn_limited(c, fmt, ...)                                                              \
	do {                                                                                       \
		static log_limit_t lim_;                                                           \
		unsigned held_;                                                                    \
		if (log_limit_pass(&lim_, &held_))                                                 \
			log_msg(KANAL_LOG_WARN, c, fmt "%s", __VA_ARGS__, log_limit_note(held_));  \
	} while (0)

#endif
