/*
 * tests/fuzz/fuzz_staff.c — the staff connector's parser of the HR system's XML absence
 * feed (libxml2 without network or entity expansion). What must hold: no crash, and no
 * error text that quotes a CPR number in the clear.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

#include "../../plugins/staff/staff.h"

FUZZ_TARGET(staff)
{
	staff_page_t page;
	char why[512];
	size_t off, len;

	memset(&page, 0, sizeof page);
	if (staff_feed_parse((const char *)data, size, &page, why, sizeof why) != 0) {
		if (kanal_cpr_find(why, strlen(why), &off, &len))
			abort();
	} else {
		for (size_t i = 0; i < page.n; i++)
			if (kanal_cpr_find(page.items[i].error, strlen(page.items[i].error), &off,
					   &len))
				abort();
		staff_page_clear(&page);
	}
	return 0;
}
