/*
 * cli/cmd_audit.c — `kanalctl audit`: prints kanald's operator audit log
 * (<state_dir>/audit.log, broker/audit.c) — who did what, from where, when, and the
 * outcome — read from the file, so it works whether kanald runs or not.
 */
#include <stdio.h>
#include <stdlib.h>

#include "audit.h"
#include "kanalctl.h"

int cmd_audit(ctl_t *ctl, int argc, char **argv)
{
	char path[4096], since[64];
	int64_t since_ms = 0;
	conf_t *conf;
	int n;

	(void)argv;
	if (argc > 0) {
		ctl_error("audit takes no arguments, only --since and --json");
		return CTL_EXIT_ERROR;
	}
	if (ctl->since && (ctl_since("audit", ctl->since, since, sizeof since) < 0 ||
			   kanal_time_parse_rfc3339(since, &since_ms) != 0))
		return CTL_EXIT_ERROR;
	if (!(conf = ctl_conf_load(ctl)))
		return CTL_EXIT_ERROR;
	snprintf(path, sizeof path, "%s/audit.log", conf->state_dir);
	conf_destroy(&conf);
	n = audit_print(path, since_ms, ctl->json, stdout);
	if (n == KANAL_ENOTFOUND) {
		printf("audit: no operator action recorded yet (%s does not exist)\n", path);
		return CTL_EXIT_OK;
	}
	if (n < 0) {
		ctl_error("audit: cannot read %s: %s", path, kanal_strerror(n));
		return CTL_EXIT_ERROR;
	}
	return CTL_EXIT_OK;
}
