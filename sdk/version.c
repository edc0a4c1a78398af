/*
 * sdk/version.c — the build's version, revision and ABI (version.h). The revision comes
 * from $(BUILD)/gen/revision.h, which the Makefile rewrites only when it changes.
 */
#include <kanal/kanal.h>
#include <kanal/plugin.h>

#include "revision.h"
#include "version.h"

const char kanal__revision[] = KANAL_REVISION;

void kanal__version_print(FILE *out, const char *prog)
{
	fprintf(out, "%s %s (revision %s, plugin ABI %d.%d)\n", prog, KANAL_VERSION,
		kanal__revision, KANAL_ABI_MAJOR, KANAL_ABI_MINOR);
}
