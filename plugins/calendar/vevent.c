/*
 * plugins/calendar/vevent.c — the iCalendar side of the calendar connector: dates and times
 * from events checked and turned into iCalendar values, and VEVENTs built, updated and
 * cancelled with libical, which does the RFC 5545 text rules (CRLF line ends, folding at 75
 * octets, escaping of backslash, semicolon, comma and newline) so that nothing here formats
 * iCalendar by hand. An update changes only the properties kanal manages and keeps the
 * rest, so an alarm a person added in the calendar app survives kanal's next update.
 */
#include "calendar.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <time.h>

#include <libical/ical.h>

#define PRODID "-//kanal//calendar connector " KANAL_VERSION "//EN"

void cal_ical_setup(void)
{
	/* A malformed resource on the server must be an error we report, not an abort(). */
	if (icalerror_get_errors_are_fatal())
		icalerror_set_errors_are_fatal(0);
}

/* snprintf into out of `size` bytes through a roomy buffer, cutting what does not fit (the
 * callers' values always fit; the compiler cannot see that). */
__attribute__((format(printf, 3, 4))) static void s_format(char *out, size_t size, const char *fmt,
							   ...)
{
	char tmp[128];
	size_t n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	n = strlen(tmp);
	if (n >= size)
		n = size - 1;
	memcpy(out, tmp, n);
	out[n] = '\0';
}

void cal_ical_teardown(void)
{
	icaltimezone_free_builtin_timezones();
}

/* Reads exactly n digits at p into *out. */
static bool s_digits(const char *p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)p[i]))
			return false;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return true;
}

int cal_date_parse(const char *text, char *out)
{
	char full[24];

	/* A real day from 1900 on, checked by the SDK's one RFC 3339 parser as the start of
	 * that day in UTC, so that dates and times agree on which days exist. */
	if (!text || strlen(text) != 10 || strncmp(text, "1900", 4) < 0)
		return KANAL_EINVAL;
	snprintf(full, sizeof full, "%sT00:00:00Z", text);
	if (kanal_time_parse_rfc3339(full, NULL) != 0)
		return KANAL_EINVAL;
	memcpy(out, text, 4);
	memcpy(out + 4, text + 5, 2);
	memcpy(out + 6, text + 8, 2);
	out[8] = '\0';
	return 0;
}

void cal_date_add_days(char *ymd, int days)
{
	struct tm tm = { 0 };
	int y, m, d;

	if (!s_digits(ymd, 4, &y) || !s_digits(ymd + 4, 2, &m) || !s_digits(ymd + 6, 2, &d))
		return;
	tm.tm_year = y - 1900;
	tm.tm_mon = m - 1;
	tm.tm_mday = d + days;
	tm.tm_hour = 12;
	timegm(&tm); /* normalises the day into the right month and year */
	s_format(ymd, 9, "%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

/* Parses an RFC 3339 time with a zone ("2026-03-02T08:00:00+01:00", "…Z", fractions
 * ignored) and writes the UTC instant as "YYYYMMDDTHHMMSSZ" into out (at least 17 bytes).
 * A floating time (no zone) is refused: it means nothing to a calendar in another zone. */
static bool s_rfc3339_utc(const char *text, char *out)
{
	struct tm tm;
	int64_t ms;
	time_t t;

	if (kanal_time_parse_rfc3339(text, &ms) != 0)
		return false;
	t = (time_t)(ms / 1000 - (ms % 1000 < 0));
	if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 1900 || tm.tm_year + 1900 > 9999)
		return false;
	s_format(out, 17, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	return true;
}

int cal_event_when(cal_event_t *ev, const char *start, const char *end, char *why, size_t why_size)
{
	bool start_date = start && strlen(start) == 10;

	if (!start || !*start) {
		snprintf(why, why_size, "data.start is missing");
		return KANAL_EINVAL;
	}
	if (!end || !*end) {
		snprintf(why, why_size, "data.end is missing");
		return KANAL_EINVAL;
	}
	ev->all_day = start_date;
	if (start_date) {
		if (cal_date_parse(start, ev->start) != 0) {
			snprintf(why, why_size, "data.start: '%.40s' is not a date (YYYY-MM-DD)",
				 start);
			return KANAL_EINVAL;
		}
		if (cal_date_parse(end, ev->end) != 0) {
			snprintf(why, why_size,
				 "data.end: '%.40s' is not a date (YYYY-MM-DD) like data.start",
				 end);
			return KANAL_EINVAL;
		}
	} else {
		if (!s_rfc3339_utc(start, ev->start)) {
			snprintf(why, why_size,
				 "data.start: '%.40s' is neither a date (YYYY-MM-DD) nor an RFC "
				 "3339 "
				 "time with a zone",
				 start);
			return KANAL_EINVAL;
		}
		if (!s_rfc3339_utc(end, ev->end)) {
			snprintf(why, why_size,
				 "data.end: '%.40s' is not an RFC 3339 time with a zone like "
				 "data.start",
				 end);
			return KANAL_EINVAL;
		}
	}
	/* Same form on both sides, so the text order is the time order. */
	if (strcmp(ev->end, ev->start) <= 0) {
		snprintf(why, why_size, "data.end: '%.40s' is not after data.start '%.40s'%s", end,
			 start, start_date ? " (the end date is exclusive)" : "");
		return KANAL_EINVAL;
	}
	return 0;
}

static icaltimetype s_time(const char *text)
{
	return icaltime_from_string(text);
}

static icaltimetype s_now(void)
{
	return icaltime_from_timet_with_zone(time(NULL), 0, icaltimezone_get_utc_timezone());
}

#define VERSION_PROPERTY "X-KANAL-VERSION"

/* The stored X-KANAL-VERSION of vevent (0: none). */
static int64_t s_version(icalcomponent *vevent)
{
	for (icalproperty *p = icalcomponent_get_first_property(vevent, ICAL_X_PROPERTY); p;
	     p = icalcomponent_get_next_property(vevent, ICAL_X_PROPERTY)) {
		const char *name = icalproperty_get_x_name(p), *value = icalproperty_get_x(p);
		if (name && value && !strcasecmp(name, VERSION_PROPERTY))
			return strtoll(value, NULL, 10);
	}
	return 0;
}

/* Replaces vevent's X-KANAL-VERSION by version (nothing when version is 0). */
static void s_set_version(icalcomponent *vevent, int64_t version)
{
	char text[24];
	icalproperty *p, *next;

	if (version <= 0)
		return;
	for (p = icalcomponent_get_first_property(vevent, ICAL_X_PROPERTY); p; p = next) {
		next = icalcomponent_get_next_property(vevent, ICAL_X_PROPERTY);
		if (icalproperty_get_x_name(p) &&
		    !strcasecmp(icalproperty_get_x_name(p), VERSION_PROPERTY)) {
			icalcomponent_remove_property(vevent, p);
			icalproperty_free(p);
		}
	}
	snprintf(text, sizeof text, "%lld", (long long)version);
	p = icalproperty_new_x(text);
	icalproperty_set_x_name(p, VERSION_PROPERTY);
	icalcomponent_add_property(vevent, p);
}

/* Adds kanal's managed properties to vevent. */
static void s_add_managed(icalcomponent *vevent, const cal_event_t *ev)
{
	icalcomponent_add_property(vevent, icalproperty_new_dtstart(s_time(ev->start)));
	icalcomponent_add_property(vevent, icalproperty_new_dtend(s_time(ev->end)));
	icalcomponent_add_property(vevent, icalproperty_new_summary(ev->summary));
	if (ev->description && *ev->description)
		icalcomponent_add_property(vevent, icalproperty_new_description(ev->description));
	s_set_version(vevent, ev->version);
}

/* Removes every property of `kind` from comp. */
static void s_remove_all(icalcomponent *comp, icalproperty_kind kind)
{
	icalproperty *p;

	while ((p = icalcomponent_get_first_property(comp, kind))) {
		icalcomponent_remove_property(comp, p);
		icalproperty_free(p);
	}
}

/* Sets the one property of its kind: removes the others, adds p. Takes p. */
static void s_set(icalcomponent *comp, icalproperty *p)
{
	s_remove_all(comp, icalproperty_isa(p));
	icalcomponent_add_property(comp, p);
}

/* Serialises comp into a malloc'd string. */
static char *s_text(icalcomponent *comp)
{
	return icalcomponent_as_ical_string_r(comp);
}

char *cal_ical_create(const cal_event_t *ev, int64_t sequence)
{
	icalcomponent *cal = icalcomponent_new_vcalendar();
	icalcomponent *vevent = icalcomponent_new_vevent();
	char *text;

	if (!cal || !vevent) {
		icalcomponent_free(cal);
		icalcomponent_free(vevent);
		return NULL;
	}
	icalcomponent_add_property(cal, icalproperty_new_version("2.0"));
	icalcomponent_add_property(cal, icalproperty_new_prodid(PRODID));
	icalcomponent_add_property(vevent, icalproperty_new_uid(ev->uid));
	icalcomponent_add_property(vevent, icalproperty_new_dtstamp(s_now()));
	s_add_managed(vevent, ev);
	icalcomponent_add_property(vevent, icalproperty_new_sequence((int)sequence));
	icalcomponent_add_component(cal, vevent);
	text = s_text(cal);
	icalcomponent_free(cal);
	return text;
}

/* Parses stored text and finds its VEVENT. Returns the top component (free it) and the
 * VEVENT in *vevent, or NULL. */
static icalcomponent *s_parse(const char *existing, icalcomponent **vevent)
{
	icalcomponent *top = existing ? icalparser_parse_string(existing) : NULL;

	*vevent = NULL;
	if (!top)
		return NULL;
	if (icalcomponent_isa(top) == ICAL_VEVENT_COMPONENT)
		*vevent = top;
	else
		*vevent = icalcomponent_get_first_component(top, ICAL_VEVENT_COMPONENT);
	if (!*vevent) {
		icalcomponent_free(top);
		return NULL;
	}
	return top;
}

/* True when every VEVENT of top (or top itself, a bare VEVENT) carries UID uid. */
static bool s_uid_is(icalcomponent *top, icalcomponent *first, const char *uid)
{
	const char *u;

	if (first == top) {
		u = icalcomponent_get_uid(top);
		return u && strcmp(u, uid) == 0;
	}
	for (icalcomponent *c = icalcomponent_get_first_component(top, ICAL_VEVENT_COMPONENT); c;
	     c = icalcomponent_get_next_component(top, ICAL_VEVENT_COMPONENT)) {
		u = icalcomponent_get_uid(c);
		if (!u || strcmp(u, uid) != 0)
			return false;
	}
	return true;
}

/* The text of a property of vevent ("" when absent). */
static const char *s_prop_text(icalcomponent *vevent, icalproperty_kind kind)
{
	icalproperty *p = icalcomponent_get_first_property(vevent, kind);
	const char *v = NULL;

	if (!p)
		return "";
	if (kind == ICAL_SUMMARY_PROPERTY)
		v = icalproperty_get_summary(p);
	else if (kind == ICAL_DESCRIPTION_PROPERTY)
		v = icalproperty_get_description(p);
	return v ? v : "";
}

/* The value of a DTSTART/DTEND property as kanal writes it ("" when absent). */
static void s_time_text(icalcomponent *vevent, icalproperty_kind kind, char *buf, size_t size)
{
	icalproperty *p = icalcomponent_get_first_property(vevent, kind);
	icaltimetype t;

	buf[0] = '\0';
	if (!p)
		return;
	t = kind == ICAL_DTSTART_PROPERTY ? icalproperty_get_dtstart(p) : icalproperty_get_dtend(p);
	/* A time with a TZID is not in kanal's form, whatever instant it is: rewrite it. */
	if (icalproperty_get_first_parameter(p, ICAL_TZID_PARAMETER))
		return;
	snprintf(buf, size, "%s", icaltime_as_ical_string(t));
}

static bool s_cancelled(icalcomponent *vevent)
{
	icalproperty *p = icalcomponent_get_first_property(vevent, ICAL_STATUS_PROPERTY);
	return p && icalproperty_get_status(p) == ICAL_STATUS_CANCELLED;
}

static int64_t s_sequence(icalcomponent *vevent)
{
	icalproperty *p = icalcomponent_get_first_property(vevent, ICAL_SEQUENCE_PROPERTY);
	return p ? icalproperty_get_sequence(p) : 0;
}

/* Drops METHOD from a stored calendar (RFC 4791 4.1) and sets SEQUENCE and DTSTAMP. */
static void s_stamp(icalcomponent *top, icalcomponent *vevent, int64_t sequence)
{
	if (top != vevent)
		s_remove_all(top, ICAL_METHOD_PROPERTY);
	s_set(vevent, icalproperty_new_sequence((int)sequence));
	s_set(vevent, icalproperty_new_dtstamp(s_now()));
}

static int64_t s_next_sequence(int64_t old, int64_t wanted)
{
	return wanted > old + 1 ? wanted : old + 1;
}

cal_apply_t cal_ical_update(const char *existing, const cal_event_t *ev, char **out,
			    int64_t *seq_out)
{
	icalcomponent *vevent, *top = s_parse(existing, &vevent);
	char start[40], end[40];
	bool same;
	int64_t seq;

	*out = NULL;
	if (!top)
		return CAL_UNREADABLE;
	if (!s_uid_is(top, vevent, ev->uid)) {
		icalcomponent_free(top);
		return CAL_NOT_OURS;
	}
	seq = s_sequence(vevent);
	if (ev->version > 0 && s_version(vevent) > ev->version) {
		*seq_out = seq;
		icalcomponent_free(top);
		return CAL_STALE;
	}
	s_time_text(vevent, ICAL_DTSTART_PROPERTY, start, sizeof start);
	s_time_text(vevent, ICAL_DTEND_PROPERTY, end, sizeof end);
	same = !s_cancelled(vevent) && !strcmp(start, ev->start) && !strcmp(end, ev->end) &&
	       !icalcomponent_get_first_property(vevent, ICAL_DURATION_PROPERTY) &&
	       !strcmp(s_prop_text(vevent, ICAL_SUMMARY_PROPERTY), ev->summary) &&
	       !strcmp(s_prop_text(vevent, ICAL_DESCRIPTION_PROPERTY),
		       ev->description ? ev->description : "") &&
	       (ev->sequence < 0 || ev->sequence <= seq) &&
	       (ev->version <= 0 || ev->version == s_version(vevent));
	if (same) {
		*seq_out = seq;
		icalcomponent_free(top);
		return CAL_UNCHANGED;
	}
	s_remove_all(vevent, ICAL_DTSTART_PROPERTY);
	s_remove_all(vevent, ICAL_DTEND_PROPERTY);
	s_remove_all(vevent, ICAL_DURATION_PROPERTY);
	s_remove_all(vevent, ICAL_SUMMARY_PROPERTY);
	s_remove_all(vevent, ICAL_DESCRIPTION_PROPERTY);
	s_remove_all(vevent, ICAL_STATUS_PROPERTY);
	s_add_managed(vevent, ev);
	*seq_out = s_next_sequence(seq, ev->sequence);
	s_stamp(top, vevent, *seq_out);
	*out = s_text(top);
	icalcomponent_free(top);
	return *out ? CAL_CHANGED : CAL_UNREADABLE;
}

cal_apply_t cal_ical_cancel(const char *existing, const char *uid, int64_t min_sequence,
			    int64_t version, char **out, int64_t *seq_out)
{
	icalcomponent *vevent, *top = s_parse(existing, &vevent);

	*out = NULL;
	if (!top)
		return CAL_UNREADABLE;
	if (!s_uid_is(top, vevent, uid)) {
		icalcomponent_free(top);
		return CAL_NOT_OURS;
	}
	if (version > 0 && s_version(vevent) > version) {
		*seq_out = s_sequence(vevent);
		icalcomponent_free(top);
		return CAL_STALE;
	}
	if (s_cancelled(vevent) && (version <= 0 || version <= s_version(vevent))) {
		*seq_out = s_sequence(vevent);
		icalcomponent_free(top);
		return CAL_UNCHANGED;
	}
	s_set(vevent, icalproperty_new_status(ICAL_STATUS_CANCELLED));
	s_set_version(vevent, version);
	*seq_out = s_next_sequence(s_sequence(vevent), min_sequence);
	s_stamp(top, vevent, *seq_out);
	*out = s_text(top);
	icalcomponent_free(top);
	return *out ? CAL_CHANGED : CAL_UNREADABLE;
}

static uint64_t s_fnv(uint64_t h, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)(s ? s : "\x01"); *p; p++) {
		h ^= *p;
		h *= 1099511628211ull;
	}
	h ^= 0xff; /* a separator no UTF-8 text holds */
	return h * 1099511628211ull;
}

uint64_t cal_event_fingerprint(const cal_event_t *ev)
{
	uint64_t h = 14695981039346656037ull;

	h = s_fnv(h, ev->uid);
	h = s_fnv(h, ev->summary);
	h = s_fnv(h, ev->description);
	h = s_fnv(h, ev->start);
	return s_fnv(h, ev->end);
}
