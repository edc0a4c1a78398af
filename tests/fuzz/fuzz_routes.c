/*
 * tests/fuzz/fuzz_routes.c — the routing-file loader (YAML, then the routes' own checks):
 * any text either loads or fails with errors that each carry a position; what loads must
 * match and explain a typical event without fault.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>

#include <kanal/kanal.h>

#include "diag.h"
#include "routes.h"

static const char *const s_instances[] = { "daycare", "cpr",         "family-calendar",
					   "letter",  "digitalpost", "unmatched" };

FUZZ_TARGET(routes)
{
	static kanal_msg_t *msg;
	static const char ev[] = "{\"specversion\":\"1.0\",\"id\":\"e\",\"source\":\"daycare\","
				 "\"type\":\"child.absence.reported\",\"data\":{\"days\":1}}";
	routes_t *rt = NULL;
	diag_t d = { 0 };

	if (!msg && kanal_msg_parse(ev, sizeof ev - 1, 0, &msg, NULL) != 0)
		abort();
	if (routes_load_text((const char *)data, size, "fuzz.yaml", s_instances, 6, &rt, &d) == 0) {
		const route_t *m[16];
		FILE *devnull = fopen("/dev/null", "w");
		(void)routes_match(rt, msg, m, 16);
		if (devnull) {
			(void)routes_explain(rt, msg, devnull);
			fclose(devnull);
		}
		routes_destroy(&rt);
	} else if (d.count == 0) {
		abort(); /* a refused file must say why */
	}
	diag_free(&d);
	return 0;
}
