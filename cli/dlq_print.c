/*
 * cli/dlq_print.c — dead letters for people: the table `kanalctl dlq list` prints and the
 * record `kanalctl dlq show` prints, made from the items of kanald's dlq.list and dlq.show
 * replies (docs/design/wire.md). An item is whatever kanald sent: any field may be absent,
 * null, of another JSON type or very long, and the printing copes with each (absent or
 * unusable fields print as "-"). Text is masked for CPR numbers unless asked not to, and
 * control characters are replaced, so that a hostile error text cannot move the operator's
 * cursor or forge lines. tests/fuzz/fuzz_dlq.c feeds these functions arbitrary replies.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kanalctl.h"

/* Replaces the control characters in text by '?': text from a peer must not move the
 * cursor or start a line of its own. */
static void s_defang(char *text)
{
	for (char *p = text; p && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

/* ---- Times ---------------------------------------------------------------------------- */

/* Formats an RFC 3339 time from kanald in local time, "YYYY-MM-DD HH:MM:SS" (plus the
 * offset when `zone`); text that does not parse is copied as it is (cut to fit, control
 * characters replaced), no text as "-". */
static void s_format_local(const char *text, bool zone, char *buf, size_t size)
{
	int64_t ms;
	time_t t;
	struct tm tm;

	if (!text || kanal_time_parse_rfc3339(text, &ms) != 0) {
		snprintf(buf, size, "%s", text ? text : "-");
		s_defang(buf);
		return;
	}
	t = (time_t)(ms / 1000);
	localtime_r(&t, &tm);
	strftime(buf, size, zone ? "%Y-%m-%d %H:%M:%S %z" : "%Y-%m-%d %H:%M:%S", &tm);
}

/* ---- Printing -------------------------------------------------------------------------- */

/* A new copy of a JSON scalar as text: strings as they are with control characters
 * replaced by '?', numbers and booleans spelt out, anything else (null, an object, a field
 * that is absent: v NULL) as "-". Returns NULL only when out of memory. Ownership: borrows
 * v; the caller frees the result. */
static char *s_text(json_t *v)
{
	char *text = NULL;

	if (!v)
		return strdup("-");
	switch (json_typeof(v)) {
	case JSON_STRING:
		text = strdup(*json_string_value(v) ? json_string_value(v) : "-");
		break;
	case JSON_INTEGER:
		if (asprintf(&text, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0)
			text = NULL;
		break;
	case JSON_REAL:
		if (asprintf(&text, "%g", json_real_value(v)) < 0)
			text = NULL;
		break;
	case JSON_TRUE:
		text = strdup("true");
		break;
	case JSON_FALSE:
		text = strdup("false");
		break;
	default:
		text = strdup("-");
		break;
	}
	s_defang(text);
	return text;
}

/* The number of terminal columns text takes: its UTF-8 characters. */
static size_t s_width(const char *text)
{
	size_t n = 0;

	for (; *text; text++)
		if (((unsigned char)*text & 0xC0) != 0x80)
			n++;
	return n;
}

/* The columns of `dlq list`: the item field each shows (NULL: made up from several). */
enum {
	COL_ID,
	COL_DEAD_AT,
	COL_ROUTE,
	COL_DEST,
	COL_TYPE,
	COL_EVENT,
	COL_ATTEMPTS,
	COL_ERROR,
	N_COLS
};
static const char *const s_headers[N_COLS] = { "ID",   "DEAD AT",  "ROUTE",    "DESTINATION",
					       "TYPE", "EVENT ID", "ATTEMPTS", "ERROR" };
static const char *const s_fields[N_COLS] = { "id",   NULL,       "route",    "destination",
					      "type", "event_id", "attempts", NULL };

/* The ERROR column: "reason: last error", or whichever of the two there is. Ownership:
 * the caller frees the result (NULL when out of memory). */
static char *s_reason_and_error(json_t *item)
{
	char *reason = s_text(json_object_get(item, "reason"));
	char *error = s_text(json_object_get(item, "error"));
	char *text = NULL;

	if (reason && error) {
		if (!strcmp(error, "-"))
			text = strdup(reason);
		else if (!strcmp(reason, "-") || !strcmp(reason, error))
			text = strdup(error);
		else if (asprintf(&text, "%s: %s", reason, error) < 0)
			text = NULL;
	}
	free(reason);
	free(error);
	return text;
}

/* Fills one table row's cells (masked) from a list item. Returns 0 or -1 when out of
 * memory (cells filled so far are the caller's to free). */
static int s_row(json_t *item, char **cells)
{
	char when[64];

	for (int c = 0; c < N_COLS; c++) {
		if (c == COL_DEAD_AT) {
			s_format_local(json_string_value(json_object_get(item, "dead_at")), false,
				       when, sizeof when);
			cells[c] = strdup(when);
		} else if (c == COL_ERROR) {
			cells[c] = s_reason_and_error(item);
		} else {
			cells[c] = s_text(json_object_get(item, s_fields[c]));
		}
		if (!cells[c])
			return -1;
		kanal_cpr_redact_inplace(cells[c]);
	}
	return 0;
}

/* Prints one line of the table: every cell padded to its column's width, but the last. */
static void s_print_line(FILE *out, char *const *cells, const size_t *widths)
{
	char *line = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&line, &len);

	if (!mem) {
		ctl_error("out of memory");
		return;
	}
	for (int c = 0; c < N_COLS; c++) {
		fputs(cells[c], mem);
		if (c + 1 < N_COLS)
			fprintf(mem, "%*s", (int)(widths[c] - s_width(cells[c]) + 2), "");
	}
	fclose(mem);
	if (line)
		ctl_printf(out, "%s\n", line);
	free(line);
}

int ctl_dlq_print_list(FILE *out, json_t *items)
{
	size_t n = json_array_size(items), widths[N_COLS], i;
	char **cells = calloc(n * N_COLS + 1, sizeof *cells);
	int rc = 0;

	if (!cells) {
		ctl_error("out of memory");
		return -1;
	}
	for (int c = 0; c < N_COLS; c++)
		widths[c] = strlen(s_headers[c]);
	for (i = 0; i < n && rc == 0; i++) {
		rc = s_row(json_array_get(items, i), cells + i * N_COLS);
		for (int c = 0; c < N_COLS && rc == 0; c++)
			if (s_width(cells[i * N_COLS + c]) > widths[c])
				widths[c] = s_width(cells[i * N_COLS + c]);
	}
	if (rc == 0) {
		s_print_line(out, (char *const *)s_headers, widths);
		for (i = 0; i < n; i++)
			s_print_line(out, cells + i * N_COLS, widths);
	} else {
		ctl_error("out of memory");
	}
	for (i = 0; i < n * N_COLS; i++)
		free(cells[i]);
	free(cells);
	return rc;
}

/* Prints "label: value" for `dlq show`, the label padded so that values line up; masked
 * unless clear. */
static void s_show_field(FILE *out, const char *label, const char *value, bool clear)
{
	if (!*value)
		fprintf(out, "%s\n", label);
	else if (clear)
		fprintf(out, "%-13s %s\n", label, value);
	else
		ctl_printf(out, "%-13s %s\n", label, value);
}

void ctl_dlq_print_letter(FILE *out, json_t *item, bool clear)
{
	static const struct {
		const char *key, *label;
	} known[] = {
		{ "id", "id:" },
		{ "dead_at", "dead at:" },
		{ "route", "route:" },
		{ "destination", "destination:" },
		{ "type", "type:" },
		{ "event_id", "event id:" },
		{ "source", "source:" },
		{ "reason", "reason:" },
		{ "attempts", "attempts:" },
		{ "error", "last error:" },
	};
	const char *key;
	json_t *v, *errors = json_object_get(item, "errors"),
		   *event = json_object_get(item, "event");
	json_t *blobs = json_object_get(item, "blobs");
	char when[64], label[128], *text;
	size_t i, k;

	for (k = 0; k < sizeof known / sizeof known[0]; k++) {
		v = json_object_get(item, known[k].key);
		if (!v)
			continue;
		if (!strcmp(known[k].key, "dead_at")) {
			s_format_local(json_string_value(v), true, when, sizeof when);
			s_show_field(out, known[k].label, when, clear);
			continue;
		}
		text = s_text(v);
		s_show_field(out, known[k].label, text ? text : "?", clear);
		free(text);
	}
	/* Fields a newer kanald may add: shown rather than hidden. */
	json_object_foreach(item, key, v)
	{
		bool seen =
			!strcmp(key, "errors") || !strcmp(key, "event") || !strcmp(key, "blobs");
		for (k = 0; k < sizeof known / sizeof known[0] && !seen; k++)
			seen = !strcmp(key, known[k].key);
		if (seen || json_is_object(v) || json_is_array(v))
			continue;
		/* The name too is the peer's text. */
		snprintf(label, sizeof label, "%s:", key);
		s_defang(label);
		text = s_text(v);
		s_show_field(out, label, text ? text : "?", clear);
		free(text);
	}
	s_show_field(out, "errors:", json_array_size(errors) ? "" : "(none recorded)", clear);
	json_array_foreach(errors, i, v)
	{
		text = s_text(v);
		if (clear)
			fprintf(out, "  %zu. %s\n", i + 1, text ? text : "?");
		else
			ctl_printf(out, "  %zu. %s\n", i + 1, text ? text : "?");
		free(text);
	}
	/* The blobs the letter keeps in the store (docs/design/blobs.md): the photos and
	 * documents a replay would deliver, removed when the letter is dropped. */
	if (json_array_size(blobs))
		s_show_field(out, "blobs:", "", clear);
	json_array_foreach(blobs, i, v)
	{
		text = s_text(v);
		ctl_printf(out, "  %s\n", text ? text : "?");
		free(text);
	}
	if (event) {
		text = json_dumps(event, JSON_INDENT(2));
		s_show_field(out, "event:", "", clear);
		if (text && clear)
			fprintf(out, "%s\n", text);
		else if (text)
			ctl_printf(out, "%s\n", text);
		free(text);
	}
}
