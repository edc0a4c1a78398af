/*
 * tests/fuzz/fuzz.h — one fuzz target per file: FUZZ_TARGET(name) { … } defines
 * fuzz_<name>(data, size). Built by `make fuzz` with clang's libFuzzer (the file is compiled
 * with -DFUZZ_LIBFUZZER, which adds LLVMFuzzerTestOneInput calling the target), and by
 * `make test` into the regression suite (tests/unit/test_fuzz_regressions.c), which feeds
 * every saved input under tests/data/fuzz/<name>/ to the same function.
 */
#ifndef KANAL_FUZZ_H
#define KANAL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#ifdef FUZZ_LIBFUZZER
#define FUZZ_TARGET(name)                                                                          \
	int fuzz_##name(const uint8_t *data, size_t size);                                         \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)                               \
	{                                                                                          \
		return fuzz_##name(data, size);                                                    \
	}                                                                                          \
	int fuzz_##name(const uint8_t *data, size_t size)
#else
#define FUZZ_TARGET(name) int fuzz_##name(const uint8_t *data, size_t size)
#endif

/* The targets, for the regression suite. */
int fuzz_event(const uint8_t *data, size_t size);
int fuzz_where(const uint8_t *data, size_t size);
int fuzz_routes(const uint8_t *data, size_t size);
int fuzz_conf(const uint8_t *data, size_t size);
int fuzz_cpr(const uint8_t *data, size_t size);
int fuzz_daycare(const uint8_t *data, size_t size);
int fuzz_staff(const uint8_t *data, size_t size);
int fuzz_cpr_soap(const uint8_t *data, size_t size);
int fuzz_calendar(const uint8_t *data, size_t size);
int fuzz_http(const uint8_t *data, size_t size);
int fuzz_dlq(const uint8_t *data, size_t size);
int fuzz_string(const uint8_t *data, size_t size);

#endif
