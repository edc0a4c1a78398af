#!/bin/sh
# bench/run.sh — `make bench` (quick, under three minutes) and `make bench FULL=1`.
#
# Installs the peers' Debian packages when they are missing (mosquitto, nats-server and their
# C clients) if BENCH_INSTALL=1 (`./run bench` sets it; `make bench` alone installs
# nothing, and a missing peer's rows say n/a), builds the bench plugins and kbench against
# the build tree ($BUILD, made by `make build` before this runs), and runs kbench, which prints the table and writes
# bench/results/latest.json. Everything it starts (kanald, mosquitto, nats-server, the
# gateway client) listens on 127.0.0.1 only and is stopped before it exits.
#
# Environment: BUILD (default build), FULL=1, BENCH_REPS=N, BENCH_ONLY=id-substring (its
# results go to bench/results/partial.json),
# KANAL_BENCH_KEEP=1 (keep scratch folders), BENCH_INSTALL=1 (install the missing peers with
# apt-get), BENCH_NO_INSTALL=1 (never call apt-get, even then),
# BEFORE=<git ref> (also build that commit in $BUILD/before and run every kanal row against
# it in the same passes, then print after/before ratios: `make bench BEFORE=HEAD~3`),
# BEFORE_BUILD=<build tree> (the same, against a tree built already, e.g. this one built
# with another SQLite: `make BUILD=build/s340 SQLITE_PKG=sqlite3 build` then
# `make bench BEFORE_BUILD=build/s340`).
set -eu

BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
CC=${CC:-cc}
OUT=$BUILD/bench

# ---- peers: install what is missing --------------------------------------------------------
missing=""
[ -x /usr/sbin/mosquitto ] || missing="$missing mosquitto"
pkg-config --exists libmosquitto 2>/dev/null || missing="$missing libmosquitto-dev"
[ -x /usr/sbin/nats-server ] || missing="$missing nats-server"
pkg-config --exists libnats 2>/dev/null || missing="$missing libnats-dev"
if [ -n "$missing" ] && [ -n "${BENCH_INSTALL:-}" ] && [ -z "${BENCH_NO_INSTALL:-}" ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	echo "bench: installing the peers' packages:$missing" >&2
	# Install only the packages this Debian has; a missing one becomes an "n/a" row.
	have=""
	$SUDO apt-get update -qq >/dev/null 2>&1 || true
	for p in $missing; do
		if apt-cache show "$p" >/dev/null 2>&1; then
			have="$have $p"
		else
			echo "bench: Debian has no package '$p'; its row will say n/a" >&2
		fi
	done
	if [ -n "$have" ]; then
		# On a machine with systemd, Debian's mosquitto and nats-server packages may also
		# enable their system services; kbench never uses those: it starts its own servers
		# on free ports on 127.0.0.1 with scratch storage.
		# shellcheck disable=SC2086 # $have is a list of package names
		$SUDO env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $have >/dev/null \
			|| echo "bench: apt-get install$have failed; those rows will say n/a" >&2
	fi
fi

# ---- build ---------------------------------------------------------------------------------
mkdir -p "$OUT/plugins" bench/results
WARN="-std=gnu11 -Wall -Wextra -Werror -Wshadow -D_GNU_SOURCE -O2 -g"
# The bench plugins of a tree ($1: its sources, $2: its build tree).
bench_plugins() {
	mkdir -p "$2/bench/plugins"
	for p in bench_source bench_sink; do
		# shellcheck disable=SC2086 # $WARN is a list of flags
		$CC $WARN -shared -fPIC -fvisibility=hidden -I"$1/sdk/include" "$1/bench/plugins/$p.c" \
			-L"$2/lib" -lkanal -Wl,-rpath,"\$ORIGIN/../../lib" -o "$2/bench/plugins/$p.so"
	done
}
bench_plugins . "$BUILD"
BEFORE_ARGS=""
if [ -n "${BEFORE:-}" ]; then
	# The commit to compare with, built from its own sources (git archive: no checkout of
	# this tree is touched) with its own Makefile.
	src="$BUILD/before/src"
	rm -rf "$src" "$BUILD/before/build" && mkdir -p "$src"
	git archive "$BEFORE" | tar -x -C "$src"
	echo "bench: building $BEFORE ($(git rev-parse --short "$BEFORE")) in $BUILD/before" >&2
	make -C "$src" --no-print-directory -s BUILD="$(pwd)/$BUILD/before/build" build >/dev/null
	bench_plugins "$src" "$BUILD/before/build"
	BEFORE_ARGS="-B $BUILD/before/build"
elif [ -n "${BEFORE_BUILD:-}" ]; then
	[ -x "$BEFORE_BUILD/bin/kanald" ] || {
		echo "bench: BEFORE_BUILD=$BEFORE_BUILD has no bin/kanald (make BUILD=$BEFORE_BUILD build)" >&2
		exit 2
	}
	echo "bench: comparing with the build in $BEFORE_BUILD" >&2
	bench_plugins . "$BEFORE_BUILD"
	BEFORE_ARGS="-B $BEFORE_BUILD"
fi
DEFS=""
LIBS="$(pkg-config --libs libzmq sqlite3 jansson) -lpthread -lm"
if pkg-config --exists libmosquitto 2>/dev/null; then
	DEFS="$DEFS -DHAVE_MOSQUITTO"
	LIBS="$LIBS $(pkg-config --libs libmosquitto)"
fi
if pkg-config --exists libnats 2>/dev/null; then
	DEFS="$DEFS -DHAVE_NATS"
	LIBS="$LIBS $(pkg-config --libs libnats)"
fi
# shellcheck disable=SC2086
$CC $WARN $DEFS bench/kbench.c bench/base.c bench/kanal.c bench/peers.c bench/util.c \
	-o "$OUT/kbench" $LIBS

# ---- run -----------------------------------------------------------------------------------
FULL=${FULL:-}
export FULL
# A partial run (BENCH_ONLY) must not overwrite the last complete one.
RESULTS=bench/results/latest.json
[ -z "${BENCH_ONLY:-}" ] || RESULTS=bench/results/partial.json
# shellcheck disable=SC2086 # $BEFORE_ARGS is empty or two words
exec "$OUT/kbench" -b "$BUILD" $BEFORE_ARGS -o "$RESULTS"
