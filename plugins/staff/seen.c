/*
 * plugins/staff/seen.c — what the staff connector has already emitted: the highest version
 * seen per absence id (and whether that version was cancelled), in an open-addressing hash
 * table, and the text of the state file that carries it and the feed cursor across
 * restarts. This record, not the feed's cursor, is what makes the connector idempotent: a
 * replayed or older version is recognised even when the feed starts again from the
 * beginning.
 *
 * The state file is line-based text, written whole and atomically by the plugin:
 *
 *   kanal-staff-state 1
 *   cursor g1.57                      ("cursor -" when there is none yet)
 *   A-1000<TAB>2<TAB>u<TAB>2026-11-26<TAB>E-1001<TAB>solsikken
 *
 * one line per absence: id, highest version, u(psert) or c(ancel), last day ("-" when
 * unknown), employment and department (empty when unknown) — the last two so that a
 * cancellation that carries only the absence's id still reaches the right calendar and
 * institution. Fields are separated by tabs, which no field may hold.
 */
#include "staff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/error.h>

typedef struct slot {
	char *id; /* NULL: empty */
	long long version;
	bool cancelled;
	int32_t end;                   /* STAFF_NO_DATE when unknown */
	char *employment, *department; /* NULL when unknown */
} slot_t;

struct staff_seen {
	slot_t *slots;
	size_t cap; /* a power of two */
	size_t n;
};

/* FNV-1a. */
static uint64_t s_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static slot_t *s_find(const staff_seen_t *seen, const char *id)
{
	size_t i = (size_t)s_hash(id) & (seen->cap - 1);

	while (seen->slots[i].id && strcmp(seen->slots[i].id, id))
		i = (i + 1) & (seen->cap - 1);
	return &seen->slots[i];
}

staff_seen_t *staff_seen_new(void)
{
	staff_seen_t *seen = calloc(1, sizeof *seen);

	if (!seen)
		return NULL;
	seen->cap = 256;
	seen->slots = calloc(seen->cap, sizeof *seen->slots);
	if (!seen->slots) {
		free(seen);
		return NULL;
	}
	return seen;
}

void staff_seen_destroy(staff_seen_t **seen_p)
{
	staff_seen_t *seen = seen_p ? *seen_p : NULL;

	if (!seen)
		return;
	for (size_t i = 0; i < seen->cap; i++) {
		free(seen->slots[i].id);
		free(seen->slots[i].employment);
		free(seen->slots[i].department);
	}
	free(seen->slots);
	free(seen);
	*seen_p = NULL;
}

size_t staff_seen_count(const staff_seen_t *seen)
{
	return seen->n;
}

bool staff_seen_is_new(const staff_seen_t *seen, const char *id, long long version, bool cancel)
{
	const slot_t *s = s_find(seen, id);

	if (!s->id || version > s->version)
		return true;
	return version == s->version && cancel && !s->cancelled;
}

/* Doubles the table. Returns 0 or KANAL_ENOMEM. */
static int s_grow(staff_seen_t *seen)
{
	staff_seen_t bigger = { .cap = seen->cap * 2 };

	bigger.slots = calloc(bigger.cap, sizeof *bigger.slots);
	if (!bigger.slots)
		return KANAL_ENOMEM;
	for (size_t i = 0; i < seen->cap; i++)
		if (seen->slots[i].id)
			*s_find(&bigger, seen->slots[i].id) = seen->slots[i];
	free(seen->slots);
	seen->slots = bigger.slots;
	seen->cap = bigger.cap;
	return 0;
}

/* Replaces *field with a copy of value unless value is NULL or empty. */
static int s_keep(char **field, const char *value)
{
	char *copy;

	if (!value || !*value || (*field && !strcmp(*field, value)))
		return 0;
	if (!(copy = strdup(value)))
		return KANAL_ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

int staff_seen_put(staff_seen_t *seen, const char *id, long long version, bool cancel, int32_t end,
		   const char *employment, const char *department)
{
	slot_t *s;

	if ((seen->n + 1) * 2 > seen->cap && s_grow(seen) != 0)
		return KANAL_ENOMEM;
	s = s_find(seen, id);
	if (!s->id) {
		if (!(s->id = strdup(id)))
			return KANAL_ENOMEM;
		s->end = STAFF_NO_DATE;
		seen->n++;
	}
	s->version = version;
	s->cancelled = cancel;
	if (end != STAFF_NO_DATE)
		s->end = end;
	if (s_keep(&s->employment, employment) != 0 || s_keep(&s->department, department) != 0)
		return KANAL_ENOMEM;
	return 0;
}

void staff_seen_context(const staff_seen_t *seen, const char *id, const char **employment,
			const char **department)
{
	const slot_t *s = s_find(seen, id);

	*employment = s->id ? s->employment : NULL;
	*department = s->id ? s->department : NULL;
}

char *staff_state_format(const staff_seen_t *seen, const char *cursor, int32_t keep_from,
			 size_t *len)
{
	char *text = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&text, &size);

	if (!out)
		return NULL;
	fprintf(out, "kanal-staff-state 1\ncursor %s\n", cursor && *cursor ? cursor : "-");
	for (size_t i = 0; i < seen->cap; i++) {
		const slot_t *s = &seen->slots[i];
		char end[11] = "-";
		if (!s->id || (s->end != STAFF_NO_DATE && s->end < keep_from))
			continue;
		if (s->end != STAFF_NO_DATE)
			staff_date_iso(s->end, end);
		fprintf(out, "%s\t%lld\t%c\t%s\t%s\t%s\n", s->id, s->version,
			s->cancelled ? 'c' : 'u', end, s->employment ? s->employment : "",
			s->department ? s->department : "");
	}
	if (fclose(out) != 0) {
		free(text);
		return NULL;
	}
	if (len)
		*len = size;
	return text;
}

/* Parses "YYYY-MM-DD" or "-" into *day. Returns 0 or -1. */
static int s_iso_date(const char *text, int32_t *day)
{
	int y, m, d, used = 0;

	if (!strcmp(text, "-")) {
		*day = STAFF_NO_DATE;
		return 0;
	}
	if (sscanf(text, "%4d-%2d-%2d%n", &y, &m, &d, &used) != 3 || text[used] || m < 1 ||
	    m > 12 || d < 1 || d > 31)
		return -1;
	*day = staff_date_from_ymd(y, m, d);
	return 0;
}

int staff_state_parse(const char *text, staff_seen_t *seen, char *cursor, char *why,
		      size_t why_size)
{
	const char *p = text;
	int line = 0;

	cursor[0] = '\0';
	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t n = eol ? (size_t)(eol - p) : strlen(p);
		char buf[1024];
		long long version;
		int32_t day;

		line++;
		if (n >= sizeof buf) {
			snprintf(why, why_size, "line %d: longer than %zu bytes", line,
				 sizeof buf - 1);
			return -1;
		}
		memcpy(buf, p, n);
		buf[n] = '\0';
		p += n + (eol ? 1 : 0);
		if (line == 1) {
			if (strcmp(buf, "kanal-staff-state 1")) {
				snprintf(why, why_size,
					 "line 1: not a staff state file (version 1)");
				return -1;
			}
		} else if (line == 2) {
			if (strncmp(buf, "cursor ", 7) || n - 7 > STAFF_CURSOR_MAX || n == 7) {
				snprintf(why, why_size, "line 2: want \"cursor <cursor>\"");
				return -1;
			}
			if (strcmp(buf + 7, "-"))
				memcpy(cursor, buf + 7, n - 7 + 1); /* fits: checked above */
		} else if (n > 0) {
			char *f[6], *rest = buf, *end_num;
			size_t k = 0;

			while (k < 6 && rest)
				f[k++] = strsep(&rest, "\t");
			version = k == 6 ? strtoll(f[1], &end_num, 10) : 0;
			if (k != 6 || rest || !*f[0] || strlen(f[0]) > STAFF_ID_MAX ||
			    version < 1 || *end_num || (strcmp(f[2], "u") && strcmp(f[2], "c")) ||
			    s_iso_date(f[3], &day) != 0) {
				snprintf(why, why_size,
					 "line %d: want <id> <version> u|c <YYYY-MM-DD> "
					 "<employment> <department>, separated by tabs",
					 line);
				return -1;
			}
			if (staff_seen_put(seen, f[0], version, f[2][0] == 'c', day, f[4], f[5]) !=
			    0) {
				snprintf(why, why_size, "out of memory");
				return -1;
			}
		}
	}
	if (line < 2) {
		snprintf(why, why_size, "truncated: no cursor line");
		return -1;
	}
	return 0;
}
