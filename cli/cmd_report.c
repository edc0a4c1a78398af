/*
 * cli/cmd_report.c — `kanalctl report channels`: the channel strategy's report, the figures
 * a department hands in once a year (docs/kanalctl.md#report-channels).
 *
 * The routing files declare measures with labels and a `target:` (docs/routes.md#measures);
 * kanald keeps their counts per label values and day in its journal. This command asks the
 * running kanald for the counts of a period (admin command `measures.report`: one JSON
 * request, one reply, like `status`), groups each measure's counts by the labels --by names,
 * and prints per group the events counted, how many went by a digital channel, the share
 * and whether it reaches the target — as a table, or as CSV rows for a spreadsheet.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kanalctl.h"

#define REPORT_MAX_BY 4
/* What a group's label column says when the figures are the measure's total. */
#define REPORT_ALL "(all)"

/* One group of a measure: its label values (for the --by labels the measure has). */
typedef struct group {
	const char *values[REPORT_MAX_BY];
	json_int_t total, digital;
} group_t;

/* The --by labels. */
typedef struct by {
	char *names[REPORT_MAX_BY];
	size_t n;
	char *copy;
} by_t;

static int s_parse_by(const char *text, by_t *by)
{
	char *save = NULL;

	memset(by, 0, sizeof *by);
	if (!(by->copy = strdup(text ? text : "department")))
		return -1;
	for (char *t = strtok_r(by->copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (by->n == REPORT_MAX_BY) {
			ctl_error("report: --by names at most %d labels", REPORT_MAX_BY);
			return -1;
		}
		by->names[by->n++] = t;
	}
	if (!by->n) {
		ctl_error("report: --by needs label names, e.g. --by department,area");
		return -1;
	}
	return 0;
}

static bool s_is_day(const char *text)
{
	struct tm tm = { 0 };
	const char *end = text ? strptime(text, "%Y-%m-%d", &tm) : NULL;

	return end && !*end && strlen(text) == 10;
}

static bool s_in_list(json_t *list, const char *value)
{
	size_t i;
	json_t *v;

	json_array_foreach(list, i, v) if (json_is_string(v) && value &&
					   !strcmp(json_string_value(v), value)) return true;
	return false;
}

/* Prints one field of a CSV row, quoted when it must be (RFC 4180). */
static void s_csv_field(const char *text, bool last)
{
	if (strpbrk(text, ",\"\r\n")) {
		putchar('"');
		for (const char *p = text; *p; p++) {
			if (*p == '"')
				putchar('"');
			ctl_printf(stdout, "%c", *p);
		}
		putchar('"');
	} else {
		ctl_printf(stdout, "%s", text);
	}
	putchar(last ? '\n' : ',');
}

static int s_group_cmp(const void *a, const void *b)
{
	const group_t *x = a, *y = b;

	for (size_t i = 0; i < REPORT_MAX_BY && x->values[i] && y->values[i]; i++) {
		int c = strcmp(x->values[i], y->values[i]);
		if (c)
			return c;
	}
	return 0;
}

/* Prints one line (or CSV row) of a measure's report. */
static void s_line(const ctl_t *ctl, const char *measure, const char *const *cols, const group_t *g,
		   size_t n_cols, double target)
{
	double share = g->total ? (double)g->digital / (double)g->total : 0;
	const char *verdict = !g->total ? "-" : share + 1e-9 >= target ? "met" : "below";
	char num[32];

	if (ctl->csv) {
		s_csv_field(measure, false);
		for (size_t i = 0; i < n_cols; i++)
			s_csv_field(cols[i], false);
		snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, g->total);
		s_csv_field(num, false);
		snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, g->digital);
		s_csv_field(num, false);
		snprintf(num, sizeof num, "%.3f", share);
		s_csv_field(g->total ? num : "", false);
		snprintf(num, sizeof num, "%.3f", target);
		s_csv_field(num, false);
		s_csv_field(verdict, true);
		return;
	}
	fputs("  ", stdout);
	for (size_t i = 0; i < n_cols; i++)
		ctl_printf(stdout, "%-20s ", cols[i]);
	snprintf(num, sizeof num, "%.1f%%", share * 100);
	printf("%8" JSON_INTEGER_FORMAT " %8" JSON_INTEGER_FORMAT " %7s %7.0f%%  %s\n", g->total,
	       g->digital, g->total ? num : "-", target * 100, verdict);
}

/* The report of one measure with a target: its counts grouped by the --by labels it has. */
static int s_measure(const ctl_t *ctl, json_t *m, const by_t *by)
{
	const char *name = json_string_value(json_object_get(m, "name"));
	const char *title = json_string_value(json_object_get(m, "title"));
	json_t *target = json_object_get(m, "target"), *counts = json_object_get(m, "counts");
	json_t *labels = json_object_get(m, "labels"), *row;
	const char *tlabel = json_string_value(json_object_get(target, "label"));
	json_t *digital = json_object_get(target, "digital");
	double share = json_number_value(json_object_get(target, "share"));
	const char *cols[REPORT_MAX_BY];
	size_t n_cols = 0, n_groups = 0, i;
	group_t *groups = calloc(json_array_size(counts) + 1, sizeof *groups), all = { 0 };

	if (!groups) {
		ctl_error("report: out of memory");
		return -1;
	}
	/* The text shows the --by labels the measure has; CSV keeps every --by column (a
	 * label the measure lacks is empty there) so that the rows of all measures line up. */
	for (i = 0; i < by->n; i++)
		if (ctl->csv || s_in_list(labels, by->names[i]))
			cols[n_cols++] = by->names[i];
	json_array_foreach(counts, i, row)
	{
		json_t *values = json_object_get(row, "labels");
		json_int_t n = json_integer_value(json_object_get(row, "count"));
		bool is_digital =
			s_in_list(digital, json_string_value(json_object_get(values, tlabel)));
		group_t key = { 0 }, *g;
		size_t k;

		for (k = 0; k < n_cols; k++) {
			key.values[k] = json_string_value(json_object_get(values, cols[k]));
			if (!key.values[k])
				key.values[k] = s_in_list(labels, cols[k]) ? "none" : "";
		}
		for (k = 0; k < n_groups && (n_cols == 0 || s_group_cmp(&groups[k], &key)); k++)
			;
		g = &groups[k];
		if (k == n_groups) {
			*g = key;
			n_groups++;
		}
		g->total += n;
		all.total += n;
		if (is_digital) {
			g->digital += n;
			all.digital += n;
		}
	}
	if (n_cols)
		qsort(groups, n_groups, sizeof *groups, s_group_cmp);
	if (!ctl->csv) {
		ctl_printf(stdout, "\n%s%s%s — target %.0f%% by ", name, title ? ": " : "",
			   title ? title : "", share * 100);
		json_array_foreach(digital, i, row)
			ctl_printf(stdout, "%s%s", i ? ", " : "", json_string_value(row));
		printf("\n  ");
		for (i = 0; i < n_cols; i++) {
			char head[32];
			snprintf(head, sizeof head, "%s", cols[i]);
			for (char *p = head; *p; p++)
				*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
			printf("%-20s ", head);
		}
		printf("%8s %8s %7s %8s\n", "TOTAL", "DIGITAL", "SHARE", "TARGET");
	}
	for (i = 0; n_cols && i < n_groups; i++)
		s_line(ctl, name, groups[i].values, &groups[i], n_cols, share);
	{
		const char *all_cols[REPORT_MAX_BY];
		for (i = 0; i < n_cols; i++)
			all_cols[i] = s_in_list(labels, cols[i]) ? REPORT_ALL : "";
		s_line(ctl, name, all_cols, &all, n_cols, share);
	}
	free(groups);
	return 0;
}

/* `report channels`. */
int cmd_report(ctl_t *ctl, int argc, char **argv)
{
	char year_from[16], year_to[16];
	json_t *request, *reply = NULL, *measures, *m;
	char *raw = NULL;
	by_t by = { 0 };
	size_t i, reported = 0;
	int status;

	if (argc != 1 || strcmp(argv[0], "channels")) {
		ctl_error("report: say which report: kanalctl report channels (kanalctl help "
			  "report)");
		return CTL_EXIT_ERROR;
	}
	if (!ctl->from || !ctl->to) {
		/* Default: this year so far, in our (and, as a rule, kanald's) time zone. */
		time_t now = time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		strftime(year_from, sizeof year_from, "%Y-01-01", &tm);
		strftime(year_to, sizeof year_to, "%Y-%m-%d", &tm);
	}
	if ((ctl->from && !s_is_day(ctl->from)) || (ctl->to && !s_is_day(ctl->to))) {
		ctl_error("report: --from and --to want a day, YYYY-MM-DD (2026-01-01)");
		return CTL_EXIT_ERROR;
	}
	if (s_parse_by(ctl->by, &by) < 0) {
		free(by.copy);
		return CTL_EXIT_ERROR;
	}
	request = json_pack("{s:s, s:s, s:s}", "cmd", "measures.report", "from",
			    ctl->from ? ctl->from : year_from, "to", ctl->to ? ctl->to : year_to);
	status = request ? ctl_admin_call(ctl, request, &reply, &raw) : CTL_EXIT_ERROR;
	json_decref(request);
	if (status != CTL_EXIT_OK)
		goto done;
	if (ctl->json) {
		ctl_printf(stdout, "%s\n", raw);
		status = json_is_true(json_object_get(reply, "ok")) ? CTL_EXIT_OK : CTL_EXIT_NO;
		goto done;
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		const char *why = json_string_value(json_object_get(reply, "error"));
		ctl_error("report: kanald says: %s", why ? why : "no (no reason given)");
		status = CTL_EXIT_NO;
		goto done;
	}
	measures = json_object_get(reply, "measures");
	if (ctl->csv) {
		printf("measure,");
		for (i = 0; i < by.n; i++)
			ctl_printf(stdout, "%s,", by.names[i]);
		printf("total,digital,share,target,verdict\n");
	} else {
		ctl_printf(stdout, "Channel report %s to %s\n",
			   json_string_value(json_object_get(reply, "from")),
			   json_string_value(json_object_get(reply, "to")));
	}
	json_array_foreach(measures, i, m)
	{
		if (!json_object_get(m, "target"))
			continue;
		if (s_measure(ctl, m, &by) < 0) {
			status = CTL_EXIT_ERROR;
			goto done;
		}
		reported++;
	}
	if (!reported) {
		ctl_error("report: no measure in kanald's routing files has a target "
			  "(docs/routes.md#measures)");
		status = CTL_EXIT_NO;
	}
done:
	json_decref(reply);
	free(raw);
	free(by.copy);
	return status;
}
