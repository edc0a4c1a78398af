/*
 * tests/fuzz/fuzz_conf.c — kanald.yaml's loader: any text either loads or is refused with
 * at least one error. The loader reads a file, so each input is written to one first
 * (in $TMPDIR, removed after).
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <kanal/kanal.h>

#include "conf.h"
#include "diag.h"

FUZZ_TARGET(conf)
{
	static char path[256];
	conf_t *conf = NULL;
	diag_t d = { 0 };
	FILE *f;

	if (!path[0]) {
		const char *tmp = getenv("TMPDIR");
		snprintf(path, sizeof path, "%s/kanal-fuzz-conf-%d.yaml", tmp ? tmp : "/tmp",
			 (int)getpid());
	}
	if (!(f = fopen(path, "wb")))
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	if (conf_load(path, &conf, &d) == 0)
		conf_destroy(&conf);
	else if (d.count == 0)
		abort(); /* a refused file must say why */
	diag_free(&d);
	unlink(path);
	return 0;
}
