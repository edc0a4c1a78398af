/*
 * broker/privacy.c — see privacy.h.
 */
#include <stdio.h>
#include <string.h>

#include "privacy.h"

static bool s_has_cpr(const char *text)
{
	size_t off, len;

	return text && kanal_cpr_find(text, strlen(text), &off, &len);
}

typedef struct ext_scan {
	char *attr;
	size_t size;
	bool found;
} ext_scan_t;

static int s_scan_ext(const char *name, const char *value, void *arg)
{
	ext_scan_t *scan = arg;

	if (!s_has_cpr(value) && !s_has_cpr(name))
		return 0;
	snprintf(scan->attr, scan->size, "%s", name);
	scan->found = true;
	return 1;
}

bool privacy_context_cpr(const kanal_msg_t *msg, char *attr, size_t size)
{
	static const char *const core[] = { "id", "source", "subject", "type", "dataschema" };
	ext_scan_t scan = { attr, size, false };

	for (size_t i = 0; i < sizeof core / sizeof core[0]; i++) {
		if (s_has_cpr(kanal_msg_attr(msg, core[i]))) {
			snprintf(attr, size, "%s", core[i]);
			return true;
		}
	}
	kanal_msg_foreach_ext(msg, s_scan_ext, &scan);
	return scan.found;
}
