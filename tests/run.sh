#!/bin/sh
# Runs the given test programs from $BUILD/tests, each in its own process with a time limit,
# shows their output, and ends with one line "N passed, N failed" counting CUnit tests
# (a program that crashes or times out counts as one failed test).
BUILD=${BUILD:-build}
LIMIT=${TEST_TIMEOUT:-600}
passed=0
failed=0
bad=""
# Everything the run writes (test output, kanald and simulator logs, stream lines) is kept
# here for the personal-data scan, which runs last (test_privacy_scan).
case "$BUILD" in /*) KANAL_TEST_OUTPUT_DIR=$BUILD/test-output ;;
*) KANAL_TEST_OUTPUT_DIR=$(pwd)/$BUILD/test-output ;; esac
export KANAL_TEST_OUTPUT_DIR
# Alone, the scan reads what the last run kept; with other suites it starts afresh.
[ "$*" != test_privacy_scan ] && rm -rf "$KANAL_TEST_OUTPUT_DIR"
mkdir -p "$KANAL_TEST_OUTPUT_DIR"
set -- $(for t in "$@"; do [ "$t" != test_privacy_scan ] && echo "$t"; done) \
	$(for t in "$@"; do [ "$t" = test_privacy_scan ] && echo "$t"; done)
for t in "$@"; do
	bin="$BUILD/tests/$t"
	if [ ! -x "$bin" ]; then
		echo "$t: no such test program ($bin)"
		failed=$((failed + 1)); bad="$bad $t"
		continue
	fi
	out=$(mktemp)
	timeout -k 10 "$LIMIT" "$bin" >"$out" 2>&1
	rc=$?
	cat "$out"
	cp "$out" "$KANAL_TEST_OUTPUT_DIR/$t.log"
	line=$(grep -E '^ +tests +[0-9]+' "$out" | tail -n 1)
	rm -f "$out"
	if [ -n "$line" ]; then
		# "tests  Total  Ran  Passed  Failed  Inactive"
		p=$(echo "$line" | awk '{print $4}')
		f=$(echo "$line" | awk '{print $5}')
		passed=$((passed + p)); failed=$((failed + f))
		[ "$f" -gt 0 ] && bad="$bad $t"
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
			echo "$t: exited with status $rc"
			failed=$((failed + 1)); bad="$bad $t"
		fi
	else
		[ "$rc" -eq 124 ] && echo "$t: timed out after ${LIMIT}s" || echo "$t: crashed (status $rc)"
		failed=$((failed + 1)); bad="$bad $t"
	fi
done
echo
[ -n "$bad" ] && echo "failing:$bad"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
