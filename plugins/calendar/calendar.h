/*
 * plugins/calendar/calendar.h — the calendar connector's private interfaces, shared by its
 * three files: calendar.c (the plugin: options, the mapping of each event type to calendar
 * entries), caldav.c (the CalDAV conversation: resource URLs, conditional PUT/GET/DELETE,
 * creating collections) and vevent.c (the iCalendar text, built and changed with libical).
 * Functions are prefixed cal_; nothing here leaves the plugin (hidden visibility).
 */
#ifndef KANAL_PLUGIN_CALENDAR_H
#define KANAL_PLUGIN_CALENDAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kanal/kanal.h>

#include "../common/kc_http.h"

/* ---- what kanal wants a calendar entry to say (vevent.c) ------------------------------ */

typedef struct cal_event {
	const char *uid;         /* borrowed; never empty, never a CPR number */
	const char *summary;     /* borrowed */
	const char *description; /* borrowed; NULL: none */
	bool all_day;
	char start[20];   /* "20260302" (all-day) or "20260302T080000Z" (UTC) */
	char end[20];     /* exclusive, same form as start */
	int64_t sequence; /* the SEQUENCE asked for at least; -1: none */
	int64_t version;  /* the source's version of the fact (HR's absence version),
				  * kept as X-KANAL-VERSION: an older one never overwrites a
				  * newer; 0: none */
} cal_event_t;

/* Parses a calendar date "YYYY-MM-DD" (a real day). Returns 0 and writes "YYYYMMDD" into
 * out (at least 9 bytes), or KANAL_EINVAL. */
int cal_date_parse(const char *text, char *out);

/* Adds `days` to a "YYYYMMDD" date in place (for an inclusive end made exclusive). */
void cal_date_add_days(char *ymd, int days);

/* Fills ev->all_day, ev->start and ev->end from the event's `start` and `end`: both dates
 * (all-day; end exclusive, so after start) or both RFC 3339 times with a zone (converted to
 * UTC; end after start). Returns 0, or KANAL_EINVAL with `why` naming the field and cause. */
int cal_event_when(cal_event_t *ev, const char *start, const char *end, char *why, size_t why_size);

/* A VCALENDAR holding one VEVENT saying what ev says, SEQUENCE `sequence`, DTSTAMP now; no
 * METHOD (it is a stored resource, RFC 4791 4.1). Returns malloc'd text (CRLF lines, folded
 * at 75 octets, text escaped — libical's work), or NULL when out of memory. */
char *cal_ical_create(const cal_event_t *ev, int64_t sequence);

/* What an update did to a stored resource. */
typedef enum cal_apply {
	CAL_CHANGED = 0, /* *out holds the new text */
	CAL_UNCHANGED,   /* already says that: nothing to write */
	CAL_NOT_OURS,    /* the resource holds another UID (a name clash) */
	CAL_UNREADABLE,  /* not iCalendar, or no VEVENT */
	CAL_STALE,       /* the stored event has a newer X-KANAL-VERSION: left as it is */
} cal_apply_t;

/* Changes the stored text `existing` so that its VEVENT says what ev says: the fields kanal
 * manages (SUMMARY, DESCRIPTION, DTSTART, DTEND, STATUS, X-KANAL-VERSION) are replaced
 * (CAL_STALE instead when the stored X-KANAL-VERSION is newer than ev->version), SEQUENCE becomes
 * max(old + 1, ev->sequence) and DTSTAMP now; everything else (alarms, categories a person
 * added) is kept. A cancelled event becomes active again. *seq_out gets the new (or the
 * current, when unchanged) SEQUENCE. Ownership: *out is malloc'd. */
cal_apply_t cal_ical_update(const char *existing, const cal_event_t *ev, char **out,
			    int64_t *seq_out);

/* Marks the stored event UID `uid` cancelled: STATUS:CANCELLED, SEQUENCE max(old + 1,
 * min_sequence), DTSTAMP now, X-KANAL-VERSION `version` (when > 0). CAL_UNCHANGED when it
 * already is; CAL_STALE when its X-KANAL-VERSION is newer than `version` (> 0). */
cal_apply_t cal_ical_cancel(const char *existing, const char *uid, int64_t min_sequence,
			    int64_t version, char **out, int64_t *seq_out);

/* A fingerprint of what ev asks for (not its sequence), to recognise a repeated upsert. */
uint64_t cal_event_fingerprint(const cal_event_t *ev);

/* Sets libical's error handling for a library inside a long-running process (errors are
 * reported, never abort()). Idempotent. */
void cal_ical_setup(void);
/* Frees libical's built-in time zones (made on first use); for the plugin's unload. */
void cal_ical_teardown(void);

/* ---- the CalDAV conversation (caldav.c) ----------------------------------------------- */

typedef struct cal_dav cal_dav_t;

/* Why a CalDAV step did not succeed: the text for kanal_set_error (CPR numbers masked) and
 * the server's retry hint (-1: none). The outcome is what the function returns. */
typedef struct cal_status {
	kanal_outcome_t outcome;
	int64_t retry_after_ms;
	char text[768];
} cal_status_t;

typedef struct cal_dav_opts {
	kc_http_opts_t http;   /* timeouts, basic auth, CA file */
	bool create_calendars; /* MKCALENDAR a missing collection */
	int conflict_retries;  /* re-reads after 412 before answering RETRY */
	bool cancel_delete;    /* cancel by DELETE (true) or STATUS:CANCELLED (false) */
} cal_dav_opts_t;

/* A client; NULL when out of memory. Ownership: borrows opts (copied). */
cal_dav_t *cal_dav_new(const cal_dav_opts_t *opts);
void cal_dav_destroy(cal_dav_t **dav_p);

/* Checks a collection URL made from the calendar_url template: http(s), a host, a path of
 * clean segments (no empty, ".", ".." or encoded slash) ending in '/'. Returns 0, or
 * KANAL_EINVAL with why filled. */
int cal_collection_check(const char *collection, char *why, size_t why_size);

/* The resource URL of `uid` in `collection`: the collection followed by exactly one path
 * segment ending in ".ics" — the UID itself when it is made of [A-Za-z0-9_.@-] (and starts
 * with a letter or digit, at most 100 bytes), else "h-" and 40 hex digits of its SHA-256.
 * Never the collection itself. Returns a malloc'd URL, or NULL (why filled). */
char *cal_resource_url(const char *collection, const char *uid, char *why, size_t why_size);

/* True when `url` is `collection` plus one segment ending in ".ics" — checked before every
 * PUT and DELETE: a PUT to a collection URL would replace the whole calendar on some
 * servers (Radicale). */
bool cal_is_resource_of(const char *collection, const char *url);

/* Creates or updates ev in the calendar at `collection` (see docs/plugins/calendar.md for
 * the conversation); an ev->version older than the stored one changes nothing (OK). `who` names the calendar in errors (an owner id or pseudonym, never a
 * CPR number). Returns the outcome; when not OK, st says why. ctx is used for metrics and
 * logs only. */
kanal_outcome_t cal_dav_upsert(kanal_ctx_t *ctx, cal_dav_t *dav, const char *collection,
			       const cal_event_t *ev, const char *who, cal_status_t *st);

/* Cancels the event `uid` in the calendar at `collection` (status or delete, per options);
 * an event that is not there is already cancelled: OK. With version > 0 an event stored
 * with a newer X-KANAL-VERSION is left alone (OK). */
kanal_outcome_t cal_dav_cancel(kanal_ctx_t *ctx, cal_dav_t *dav, const char *collection,
			       const char *uid, int64_t min_sequence, int64_t version,
			       const char *who, cal_status_t *st);

#endif
