/*
 * sdk/version.h — what a build of kanal is: the release (KANAL_VERSION), the source
 * revision it was built from (git describe at build time, or the REVISION make variable, or
 * "unknown" outside a git checkout) and the plugin ABI. The `--version` of kanald, kanalctl,
 * kanal-harness and kanal-plugin-host, kanald's startup line, /api/v1/status and
 * kanal_build_info in /metrics all say it. Private: linked into the programs, not libkanal.
 */
#ifndef KANAL_SDK_VERSION_H
#define KANAL_SDK_VERSION_H

#include <stdio.h>

#include <kanal/kanal.h>
#include <kanal/plugin.h>

#define KANAL_ABI_STR_(x) #x
#define KANAL_ABI_STR(x) KANAL_ABI_STR_(x)
/* The plugin ABI as text, "1.1". */
#define KANAL_ABI_TEXT KANAL_ABI_STR(KANAL_ABI_MAJOR) "." KANAL_ABI_STR(KANAL_ABI_MINOR)

/* The source revision, e.g. "v0.1.0-42-g3020010" or "3020010-dirty". */
extern const char kanal__revision[];

/* Prints "PROG VERSION (revision REV, plugin ABI MAJOR.MINOR)" and a newline to out. */
void kanal__version_print(FILE *out, const char *prog);

#endif
