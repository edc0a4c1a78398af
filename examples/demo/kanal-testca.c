/*
 * examples/demo/kanal-testca.c — kanal-testca DIR: makes the throw-away test CA of
 * tests/util/testca.h in DIR (created 0700 when missing) for the demo (scripts/demo.sh),
 * which runs the simulated national services over mutual TLS with it. The same code the
 * tests use, so the demo and the tests trust the same kind of certificates; nothing it
 * writes is ever committed (var/ is ignored). Never installed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "testca.h"

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: kanal-testca DIR\n"
				"makes a test CA with server and client certificates in DIR "
				"(keys 0600); for tests and the demo only\n");
		return 2;
	}
	if (mkdir(argv[1], 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "kanal-testca: cannot make %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	return testca_make(argv[1]) == 0 ? 0 : 1;
}
