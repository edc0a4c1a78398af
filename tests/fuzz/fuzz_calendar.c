/*
 * tests/fuzz/fuzz_calendar.c — the calendar connector's reading of what a CalDAV server
 * holds (libical): the stored text is updated and cancelled as a delivery would. What must
 * hold: no crash; a text the connector writes back parses again as iCalendar with our UID.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "../../plugins/calendar/calendar.h"

FUZZ_TARGET(calendar)
{
	static bool ready;
	cal_event_t ev = { .uid = "kanal-hr-absence-A-1",
			   .summary = "Fravær",
			   .all_day = true,
			   .start = "20261124",
			   .end = "20261125",
			   .sequence = -1 };
	char *text = malloc(size + 1), *out = NULL;
	int64_t seq = 0;

	if (!text)
		return 0;
	if (!ready) {
		cal_ical_setup();
		ready = true;
	}
	memcpy(text, data, size);
	text[size] = '\0';
	if (cal_ical_update(text, &ev, &out, &seq) == CAL_CHANGED) {
		char *again = NULL;
		if (!out || cal_ical_update(out, &ev, &again, &seq) == CAL_UNREADABLE)
			abort(); /* what we would PUT must read back */
		free(again);
	}
	free(out);
	out = NULL;
	(void)cal_ical_cancel(text, ev.uid, 1, 2, &out, &seq);
	free(out);
	free(text);
	return 0;
}
