/*
 * plugins/staff/staff.h — the parts of the staff connector (plugins/staff) that share
 * types: the absence feed read into a page of checked items (feed.c), dates and the Danish
 * holiday calendar (dates.c), and the record of the highest version seen per absence with
 * the state file that keeps it across restarts (seen.c). staff.c is the plugin: polling,
 * mapping items to events, emitting and persisting. docs/plugins/staff.md is the user's
 * view of all of it.
 */
#ifndef KANAL_PLUGINS_STAFF_H
#define KANAL_PLUGINS_STAFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STAFF_NS "urn:kanal:sim:hr:absence:1"
#define STAFF_ID_MAX 64      /* an absence id, in bytes */
#define STAFF_FIELD_MAX 128  /* employment, department, code */
#define STAFF_CURSOR_MAX 256 /* the feed's opaque cursor */
#define STAFF_NO_DATE INT32_MIN

/* ---- dates (dates.c): a date is a day number, 0 = 1970-01-01 ---------------------------- */

/* Parses exactly "DD.MM.YYYY" (two, two and four digits) into a day number, checking that
 * the day exists (31.02.2026 does not) and that the year is 1900-2199. Returns 0 or -1. */
int staff_date_parse(const char *text, int32_t *day);
/* Writes the day as "YYYY-MM-DD" into buf (at least 11 bytes). */
void staff_date_iso(int32_t day, char *buf);
/* The day number of year-month-day (no checks), and back. */
int32_t staff_date_from_ymd(int y, int m, int d);
void staff_date_to_ymd(int32_t day, int *y, int *m, int *d);
/* Today in local time. */
int32_t staff_date_today(void);
/* True for a Danish public holiday (helligdag): New Year's Day, Maundy Thursday, Good
 * Friday, Easter Sunday and Monday, Great Prayer Day (until 2023), Ascension Day, Whit
 * Sunday and Monday, Christmas Day and Boxing Day. */
bool staff_public_holiday(int32_t day);
/* Working days (Monday to Friday, not a public holiday) from `from` to `to`, inclusive. */
int staff_working_days(int32_t from, int32_t to);
/* Holiday days a registration uses: its working days, times hours / 7.4 when hours (per
 * day) is given (> 0), rounded to two decimals. */
double staff_holiday_days(int32_t from, int32_t to, double hours);
/* True when a FERIE registration is (part of) the main holiday: the holiday days it uses
 * between 1 May and 30 September of one year are at least 15. */
bool staff_main_holiday(int32_t from, int32_t to, double hours);

/* ---- the feed (feed.c) ------------------------------------------------------------------ */

/* One <absence> of a page, checked. When `error` is not empty the item is invalid and
 * says why (naming the absence and the field, never quoting a CPR number); the other
 * fields may then be partly filled. */
typedef struct staff_item {
	size_t index; /* position in the page, from 1 */
	char id[STAFF_ID_MAX + 1];
	long long version;
	bool cancel;
	char employment[STAFF_FIELD_MAX + 1];
	char cpr[11]; /* ten digits, or "" (a cancel may leave it out) */
	char department[STAFF_FIELD_MAX + 1];
	char code[STAFF_FIELD_MAX + 1]; /* upper case */
	int32_t from, to;               /* STAFF_NO_DATE when absent (cancel only) */
	double hours;                   /* 0: whole days */
	char changed[64];               /* the change's RFC 3339 time, or "" */
	char error[384];
} staff_item_t;

/* A parsed answer of the feed. */
typedef struct staff_page {
	char next[STAFF_CURSOR_MAX + 1]; /* the cursor after this page */
	bool more;                       /* the feed has more changes waiting */
	staff_item_t *items;
	size_t n;
} staff_page_t;

/* Parses an hrAbsence document of len bytes into *page (cleared first). A document that is
 * not well-formed XML, has a DOCTYPE, has another root element or namespace, or lacks the
 * next cursor is refused whole: returns -1 with why filled (the parser's message and line;
 * CPR numbers masked). Absences that are wrong one by one are returned with their error
 * set, so the caller can report and skip each. Never touches the network and never
 * expands external entities. Returns 0. Ownership: borrows body; free page with
 * staff_page_clear. */
int staff_feed_parse(const char *body, size_t len, staff_page_t *page, char *why, size_t why_size);
void staff_page_clear(staff_page_t *page);

/* ---- versions seen and the state file (seen.c) ------------------------------------------ */

typedef struct staff_seen staff_seen_t;

/* An empty record. Returns NULL when out of memory. */
staff_seen_t *staff_seen_new(void);
void staff_seen_destroy(staff_seen_t **seen_p);
/* Number of absences recorded. */
size_t staff_seen_count(const staff_seen_t *seen);
/* True when the change (version, cancel) of absence id is news: the absence is unknown,
 * the version is higher than the highest seen, or it is a cancellation of the version seen
 * that was not cancelled yet. */
bool staff_seen_is_new(const staff_seen_t *seen, const char *id, long long version, bool cancel);
/* Records that the change was emitted; `end` (a day, or STAFF_NO_DATE to keep the known
 * one) is when the absence ends, for pruning; employment and department (NULL or "" keep
 * the known ones) are remembered for a later bare cancellation. Returns 0 or
 * KANAL_ENOMEM. */
int staff_seen_put(staff_seen_t *seen, const char *id, long long version, bool cancel, int32_t end,
		   const char *employment, const char *department);
/* The employment and department last emitted for absence id (borrowed; NULL when
 * unknown). */
void staff_seen_context(const staff_seen_t *seen, const char *id, const char **employment,
			const char **department);

/* The state file's text: a header line, the cursor, and one line per absence whose end is
 * not before keep_from (a day; absences without a known end are always kept). Returns a
 * malloc'd string and its length, or NULL when out of memory. */
char *staff_state_format(const staff_seen_t *seen, const char *cursor, int32_t keep_from,
			 size_t *len);
/* Reads a state file's text into seen (which should be empty) and cursor (at least
 * STAFF_CURSOR_MAX + 1 bytes). Returns 0, or -1 with why filled (naming the line). */
int staff_state_parse(const char *text, staff_seen_t *seen, char *cursor, char *why,
		      size_t why_size);

#endif
