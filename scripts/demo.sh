#!/bin/sh
# The demo: kanald with the bundled plugins and routes (conf/kanald.yaml, routes/demo.yaml),
# simulated upstream systems emitting events, and the event stream shown live with
# `kanalctl tail`. Ctrl-C stops everything cleanly and prints what went where.
# DEMO_SECONDS=N stops by itself after N seconds.
set -u
BUILD=${BUILD:-build}
CONF=conf/kanald.yaml
VAR=var/demo
KANALD="$BUILD/bin/kanald"
KANALCTL="$BUILD/bin/kanalctl"

rm -rf "$VAR"
mkdir -p "$VAR"
echo "kanal demo: kanald with $(grep -c '^  - name:' $CONF) plugin instances and routes/demo.yaml"
echo "  log:     $VAR/kanald.log"
echo "  sinks:   $VAR/*.jsonl"
echo "  stream:  kanalctl tail (below).  Ctrl-C stops the demo."
echo

"$KANALD" -c "$CONF" 2>"$VAR/kanald.log" &
kpid=$!
i=0
while [ ! -f "$VAR/run/endpoints" ]; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 $kpid 2>/dev/null; then
		echo "kanald did not start:" >&2
		cat "$VAR/kanald.log" >&2
		exit 1
	fi
	sleep 0.1
done

"$KANALCTL" -c "$CONF" tail &
tpid=$!

stop() {
	trap - INT TERM EXIT HUP PIPE
	echo
	echo "--- status before stopping ---"
	"$KANALCTL" -c "$CONF" status 2>/dev/null | sed -n '1,60p'
	kill $tpid 2>/dev/null
	kill -TERM $kpid 2>/dev/null
	wait $kpid 2>/dev/null
	wait $tpid 2>/dev/null
	echo
	echo "--- what each destination received ---"
	for f in "$VAR"/*.jsonl; do
		[ -f "$f" ] && printf '  %-22s %5d events\n' "$(basename "$f" .jsonl)" "$(wc -l <"$f")"
	done
	echo
	echo "kanald stopped cleanly; its log is $VAR/kanald.log"
	exit 0
}
trap stop INT TERM
# Whatever ends this script (a closed pipe, a hang-up), kanald must not outlive it.
trap 'kill $tpid 2>/dev/null; kill -TERM $kpid 2>/dev/null' EXIT HUP PIPE

if [ -n "${DEMO_SECONDS:-}" ]; then
	sleep "$DEMO_SECONDS"
	stop
fi
wait $kpid
echo "kanald exited unexpectedly; see $VAR/kanald.log" >&2
kill $tpid 2>/dev/null
exit 1
