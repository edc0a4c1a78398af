/*
 * broker/log.c — kanald's line log on stderr. Every line passes through the CPR masker:
 * a log is read by many people and kept for long, so it must never hold a clear CPR number.
 * And every line holds printable text only: what a message quotes is escaped.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "host.h"

static kanal_log_level_t s_level = KANAL_LOG_INFO;
static bool s_json;

/* True when stderr is the systemd journal's stream: $JOURNAL_STREAM ("DEV:INODE") names
 * stderr's own device and inode (a child that inherited the variable but was redirected
 * elsewhere does not match). Read once. */
static bool s_stderr_is_journal(void)
{
	static int is = -1;
	int v = __atomic_load_n(&is, __ATOMIC_RELAXED);

	if (v < 0) {
		const char *js = getenv("JOURNAL_STREAM");
		unsigned long long dev, ino;
		struct stat st;

		v = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
		    fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
		    (unsigned long long)st.st_ino == ino;
		__atomic_store_n(&is, v, __ATOMIC_RELAXED);
	}
	return v;
}

void log_set_level(kanal_log_level_t level)
{
	s_level = level;
}

void log_set_json(bool json)
{
	s_json = json;
}

kanal_log_level_t log_get_level(void)
{
	return s_level;
}

int log_parse_level(const char *text, kanal_log_level_t *out)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < 4; i++) {
		if (text && !strcmp(text, names[i])) {
			*out = (kanal_log_level_t)i;
			return 0;
		}
	}
	return KANAL_EINVAL;
}

/* Appends `text` to out[*n..size-1] as the inside of a JSON string: quotes, backslashes and
 * control characters escaped, bytes that are not UTF-8 replaced by U+FFFD, so that every
 * record parses whatever a peer put into it. Stops (truncates) at a character that does
 * not fit. */
static void s_json_string(char *out, size_t size, size_t *n, const char *text)
{
	const unsigned char *p = (const unsigned char *)text;

	while (*p) {
		char esc[8];
		const char *put = esc;
		size_t len = 1, adv = 1;

		if (*p == '"' || *p == '\\') {
			esc[0] = '\\', esc[1] = (char)*p, len = 2;
		} else if (*p < 0x20 || *p == 0x7f) {
			len = (size_t)snprintf(esc, sizeof esc, "\\u%04x", *p);
		} else if (*p < 0x80) {
			esc[0] = (char)*p;
		} else {
			/* A UTF-8 sequence: its lead byte says how long, every other byte is
			 * 10xxxxxx; overlong forms and surrogates count as broken too. */
			adv = *p >= 0xc2 && *p <= 0xdf   ? 2
			      : *p >= 0xe0 && *p <= 0xef ? 3
			      : *p >= 0xf0 && *p <= 0xf4 ? 4
							 : 0;
			for (size_t i = 1; i < adv; i++) {
				if ((p[i] & 0xc0) != 0x80) {
					adv = 0; /* also stops at the string's end */
					break;
				}
			}
			if ((adv == 3 &&
			     ((*p == 0xe0 && p[1] < 0xa0) || (*p == 0xed && p[1] >= 0xa0))) ||
			    (adv == 4 &&
			     ((*p == 0xf0 && p[1] < 0x90) || (*p == 0xf4 && p[1] >= 0x90))))
				adv = 0;
			if (adv)
				put = (const char *)p, len = adv;
			else
				put = "\xef\xbf\xbd", len = 3, adv = 1;
		}
		if (*n + len >= size)
			return;
		memcpy(out + *n, put, len);
		*n += len;
		p += adv;
	}
}

/* The record as one JSON object: {"time":…,"level":…,"component":…,"message":…}. */
static size_t s_json_record(char *out, size_t size, const char *prefix, const char *ts,
			    kanal_log_level_t level, const char *component, const char *message)
{
	size_t n =
		(size_t)snprintf(out, size, "%s{\"time\":\"%s\",\"level\":\"%s\",\"component\":\"",
				 prefix, ts, kanal_log_level_name(level));

	s_json_string(out, size - 3, &n, component);
	if (n + 14 < size - 3) {
		memcpy(out + n, "\",\"message\":\"", 13);
		n += 13;
		s_json_string(out, size - 3, &n, message);
	}
	memcpy(out + n, "\"}", 2);
	return n + 2;
}

void log_msg(kanal_log_level_t level, const char *component, const char *fmt, ...)
{
	char line[2048], text[2048], json[4096];
	char ts[40];
	const char *prefix;
	va_list ap;
	int n;

	if (level > s_level)
		return;
	kanal_time_rfc3339(kanal_wall_ms(), ts, sizeof ts);
	/* The journal takes a line's priority from a "<N>" prefix (sd-daemon.h): error 3,
	 * warn 4, info 6, debug 7. */
	prefix = !s_stderr_is_journal()     ? ""
		 : level == KANAL_LOG_ERROR ? "<3>"
		 : level == KANAL_LOG_WARN  ? "<4>"
		 : level == KANAL_LOG_INFO  ? "<6>"
					    : "<7>";
	n = s_json ? 0
		   : snprintf(line, sizeof line, "%s%s %-5s %s: ", prefix, ts,
			      kanal_log_level_name(level), component);
	if (n < 0 || (size_t)n >= sizeof line)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	/* Whatever the message quotes, the line holds printable text only (kanal__log_escape):
	 * a newline in an event id cannot forge a line. Masked after escaping. */
	kanal__log_escape(line + n, sizeof line - (size_t)n - 1, text, strlen(text));
	kanal_cpr_redact_inplace(line);
	if (s_json) {
		n = (int)s_json_record(json, sizeof json - 1, prefix, ts, level, component, line);
		json[n++] = '\n';
		if (write(STDERR_FILENO, json, (size_t)n) < 0) {
			/* Nowhere left to report it. */
		}
		return;
	}
	n = (int)strlen(line);
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* Nowhere left to report it. */
	}
}

bool log_limit_pass(log_limit_t *l, unsigned *held)
{
	int64_t now = kanal_now_ms(), next = __atomic_load_n(&l->next_ms, __ATOMIC_RELAXED);

	if (now < next || !__atomic_compare_exchange_n(&l->next_ms, &next, now + 1000, false,
						       __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		__atomic_add_fetch(&l->held, 1, __ATOMIC_RELAXED);
		return false;
	}
	*held = __atomic_exchange_n(&l->held, 0, __ATOMIC_RELAXED);
	return true;
}

const char *log_limit_note(unsigned n)
{
	static __thread char buf[64];

	if (!n)
		return "";
	snprintf(buf, sizeof buf, " (%u more like this held back)", n);
	return buf;
}
