#!/bin/sh
# The demo: a municipality's morning through kanal. Starts the simulated upstream systems
# (examples/simulators: daycare, HR, CPR lookup, Digital Post and the STS that issues the
# national services' tokens), a real CalDAV server (Radicale) and kanald with
# conf/kanald.yaml and routes/municipal.yaml; a case system sends letters through the gateway (kanalctl send), a
# self-service platform citizens' applications (filed through the SF2900 simulator, a receipt
# by Digital Post, the status back to the platform), and the payroll system drops its monthly
# export (examples/payroll) for the payslips by Digital Post (routes/payslips.yaml). The
# event stream is shown live; Ctrl-C (or
# DEMO_SECONDS=N) stops everything cleanly and prints what happened: events per route,
# letters per channel (the channel strategy's own measure), calendar entries written,
# lookups made. Everything it writes is under var/demo/.
#
# The national services run as the real ones do: a test CA made for the run (var/demo/ca/,
# by kanal-testca, keys 0600) gives the simulators their server certificates and the
# municipality its function certificate; CPR lookup (SF1520 v4) and Digital Post (SF1601)
# serve https and refuse a caller without that client certificate, Digital Post also
# without an access token from the STS (SF1514), and both validate every request against
# the official schemas (contracts/schemas) — the summary counts what they refused.
set -u
BUILD=${BUILD:-build}
CONF=conf/kanald.yaml
VAR=var/demo
BIN="$BUILD/bin"
KANALCTL="$BIN/kanalctl"
PIDS=""

rm -rf "$VAR"
mkdir -p "$VAR/secrets" "$VAR/print-spool" "$VAR/radicale/collections" "$VAR/sims" \
	"$VAR/payroll/results"
chmod 700 "$VAR/secrets"

# Secrets, made fresh for each run and readable by this user only.
umask 077
secret() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }
secret >"$VAR/secrets/pseudonym.key"
secret >"$VAR/secrets/daycare.token"
secret >"$VAR/secrets/hr.password"
secret >"$VAR/secrets/calendar.password"
secret >"$VAR/secrets/http-token"
printf 'vendor-demo %s\n' "$(cat "$VAR/secrets/http-token")" >"$VAR/secrets/http-tokens"
umask 022

# The test CA: the simulators' server certificates, the municipality's function certificate
# (client.p12 and its password file) — made fresh, never committed.
CA="$VAR/ca"
if ! "$BIN/kanal-testca" "$CA"; then
	echo "demo: could not make the test CA in $CA" >&2
	exit 1
fi
TLS="--set tls_cert=$CA/server.pem --set tls_key=$CA/server.key --set tls_ca=$CA/ca.pem"

# Radicale: htpasswd auth; the service user "kanal" may write every calendar.
R="$VAR/radicale"
printf 'kanal:%s\n' "$(cat "$VAR/secrets/calendar.password")" >"$R/users"
chmod 600 "$R/users"
cat >"$R/rights" <<EOF
[service]
user: kanal
collection: .*
permissions: RrWw

[own]
user: .+
collection: {user}(/.*)?
permissions: RrWw
EOF
cat >"$R/config" <<EOF
[server]
hosts = 127.0.0.1:7715
[auth]
type = htpasswd
htpasswd_filename = $R/users
htpasswd_encryption = plain
delay = 0
[rights]
type = from_file
file = $R/rights
[storage]
filesystem_folder = $R/collections
[web]
type = none
[logging]
level = info
mask_passwords = True
EOF

cleanup() {
	for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
}

# start NAME PORT ARGS... : a simulator on 127.0.0.1:PORT, its log in var/demo/sims/.
start_sim() {
	name=$1 port=$2
	shift 2
	"$BIN/kanal-sim-$name" --port "$port" --port-file "$VAR/sims/$name.port" --quiet "$@" \
		2>"$VAR/sims/$name.log" &
	PIDS="$PIDS $!"
}

wait_for() { # FILE WHAT
	i=0
	while [ ! -s "$1" ]; do
		i=$((i + 1))
		if [ $i -gt 150 ]; then
			echo "demo: $2 did not start; see its log in $VAR" >&2
			cleanup
			exit 1
		fi
		sleep 0.1
	done
}

echo "kanal demo — a municipal morning"
echo "  upstream systems: daycare :7711, HR :7712, CPR :7713, Digital Post :7714, STS :7717,"
echo "                    the case system's receipts :7720, SF2900 Fordelingskomponenten :7718,"
echo "                    the self-service platform's statuses :7721"
echo "                    (simulated; the national ones over mutual TLS with $CA),"
echo "                    Radicale CalDAV :7715 (real)"
echo "  kanald:           $CONF with routes/municipal.yaml; dashboard http://127.0.0.1:7703/"
echo "  logs:             $VAR/kanald.log, $VAR/sims/, CPR audit $VAR/cpr-audit.log"
echo "  payslips:         the payroll export is dropped into $VAR/payroll; each payslip's"
echo "                    status lands in $VAR/payroll/results (routes/payslips.yaml)"
echo "  a vendor over HTTP (in another terminal, while the demo runs):"
echo "    curl -H \"Authorization: Bearer \$(cat $VAR/secrets/http-token)\" \\"
echo "         -H 'Content-Type: application/cloudevents+json' \\"
echo "         --data @examples/demo/vendor-event.json http://127.0.0.1:7704/events"
echo "  Ctrl-C stops the demo and prints what happened."
echo

start_sim daycare 7711 --set "token=$(cat "$VAR/secrets/daycare.token")" --set rate_ms=1200
start_sim hr 7712 --set user=kanal --set "password=$(cat "$VAR/secrets/hr.password")" \
	--set rate_ms=3000
# The STS signs tokens with its server key; CPR lookup trusts that certificate (sts_cert).
# $TLS is split on purpose: it is three --set pairs, and no path of var/demo has a space.
# shellcheck disable=SC2086
start_sim sts 7717 $TLS
# shellcheck disable=SC2086
start_sim cpr 7713 $TLS --set "sts_cert=$CA/server.pem"
# Digital Post checks each access token with the STS. It pushes each letter's
# PKO_PostStatus to the connector's callback_listen (127.0.0.1:7716, conf/kanald.yaml), as
# the Beskedfordeler does.
# shellcheck disable=SC2086
start_sim digitalpost 7714 $TLS --set sts=https://127.0.0.1:7717 \
	--set callback=http://127.0.0.1:7716/beskedfordeler/PostStatusBeskedModtag
# The case system that sends the letters gets each letter's final status back by webhook
# (the case-system instance, route letter-status-to-sender).
start_sim casesystem 7720
# Self-service submissions go to the case system through SF2900 Fordelingskomponenten, which
# pushes the case system's receipt to the sf2900 connector's callback_listen (127.0.0.1:7719);
# the self-service platform hears each submission's status by webhook.
# shellcheck disable=SC2086
start_sim sf2900 7718 $TLS --set callback=http://127.0.0.1:7719/sf2900/kvittering
start_sim selfservice 7721
radicale -C "$R/config" >"$VAR/sims/radicale.log" 2>&1 &
rpid=$!
PIDS="$PIDS $rpid"
for s in daycare hr sts cpr digitalpost casesystem sf2900 selfservice; do wait_for "$VAR/sims/$s.port" "kanal-sim-$s"; done
i=0
until grep -q "Listening on\|listening on" "$VAR/sims/radicale.log" 2>/dev/null; do
	i=$((i + 1))
	if [ $i -gt 150 ] || ! kill -0 $rpid 2>/dev/null; then
		echo "demo: Radicale did not start:" >&2
		cat "$VAR/sims/radicale.log" >&2
		cleanup
		exit 1
	fi
	sleep 0.1
done

# KANALD_WRAPPER runs kanald under a tool, e.g. KANALD_WRAPPER="valgrind --leak-check=full".
${KANALD_WRAPPER:-} "$BIN/kanald" -c "$CONF" 2>"$VAR/kanald.log" &
kpid=$!
wait_for "$VAR/run/endpoints" "kanald (see $VAR/kanald.log)"

"$KANALCTL" -c "$CONF" tail | tee "$VAR/stream.log" &
tpid=$!

# send_slowly FILE LOG FIRST PAUSE: after FIRST seconds, sends the events of FILE (one a line)
# through the gateway, PAUSE seconds apart, the gateway's answers into LOG.
send_slowly() {
	sleep "$3"
	while IFS= read -r line; do
		printf '%s\n' "$line" | "$KANALCTL" -c "$CONF" send - >>"$2" 2>&1
		sleep "$4"
	done <"$1"
}

# A case system sends letters to citizens through the gateway, one every few seconds.
send_slowly examples/demo/letters.jsonl "$VAR/letters-sent.log" 4 3 &
lpid=$!

# The self-service platform posts citizens' applications for a daycare place.
send_slowly examples/demo/submissions.jsonl "$VAR/submissions-sent.log" 6 5 &
spid=$!
# The payroll system drops November's export: the PDFs, the CSV, then the .done marker that
# says it is complete (ready: marker). Each payslip goes by Digital Post only.
(
	sleep 6
	cp examples/payroll/*.pdf examples/payroll/loen-2026-11.csv "$VAR/payroll/" &&
		: >"$VAR/payroll/loen-2026-11.csv.done"
) &
paypid=$!
# Solsikken's staff post a notice with two photos to the parents' app: the event and its
# photos in one multipart request to the vendors' http ingress, the photos into kanald's
# blob store, the daycare connector sends them on with the notice (route notice-to-parents-app).
(
	sleep 8
	curl -s --max-time 10 -H "Authorization: Bearer $(cat "$VAR/secrets/http-token")" \
		-F 'event=@examples/demo/notice.json;type=application/cloudevents+json' \
		-F 'photos=@examples/demo/skovtur-1.png;type=image/png' \
		-F 'photos=@examples/demo/skovtur-2.png;type=image/png' \
		http://127.0.0.1:7704/events >"$VAR/notice-sent.log" 2>&1
) &
notpid=$!

count() { grep -c "$1" "$2" 2>/dev/null || true; }

stop() {
	trap - INT TERM EXIT HUP PIPE
	kill $lpid $spid $paypid $notpid 2>/dev/null
	echo
	echo "--- status before stopping ---"
	"$KANALCTL" -c "$CONF" status 2>/dev/null | sed -n '1,12p'
	dead=$("$KANALCTL" -c "$CONF" --timeout 1000 dlq list 2>/dev/null | grep -c '^ *[0-9]' || true)
	# The channel strategy per department (the routing file's measures, kept in the journal):
	# what each department hands in yearly, for today.
	channels=$("$KANALCTL" -c "$CONF" --timeout 2000 report channels --by department 2>/dev/null)
	# What the national services' simulators refused as breaking the contract (the schema,
	# the headers): asked before they stop; anything but 0 is a bug in a connector.
	cpr_invalid=$(curl -s --max-time 2 --cacert "$CA/ca.pem" https://127.0.0.1:7713/lookups |
		sed -n 's/.*"invalid": *\([0-9]*\).*/\1/p')
	dp_invalid=$(curl -s --max-time 2 --cacert "$CA/ca.pem" \
		https://127.0.0.1:7714/digitalpost/v1/messages |
		sed -n 's/.*"invalid": *\([0-9]*\).*/\1/p')
	receipts=$(curl -s --max-time 2 http://127.0.0.1:7720/kanal/letter-status)
	notices=$(curl -s --max-time 2 -H "Authorization: Bearer $(cat "$VAR/secrets/daycare.token")" \
		http://127.0.0.1:7711/api/v1/institutions/solsikken/notices)
	filed=$(curl -s --max-time 2 --cacert "$CA/ca.pem" --cert "$CA/client.pem" --key "$CA/client.key" \
		https://127.0.0.1:7718/sf2900/v1/objects)
	platform=$(curl -s --max-time 2 http://127.0.0.1:7721/kanal/submission-status)
	kill $tpid 2>/dev/null
	kill -TERM $kpid 2>/dev/null
	wait $kpid 2>/dev/null
	wait $tpid 2>/dev/null
	cleanup
	echo
	echo "--- what happened ---"
	echo "events delivered per route:"
	grep '^[0-9:.]*  delivered ' "$VAR/stream.log" | sed -n 's/.* route=\([^ ]*\).*/\1/p' |
		sort | uniq -c | awk '{ printf "  %-30s %5d\n", $2, $1 }'
	digital=$(grep '"channel":"digital"' "$VAR/letter-status.jsonl" 2>/dev/null | grep -c '"status":"sent"')
	physical=$(grep '"channel":"physical"' "$VAR/letter-status.jsonl" 2>/dev/null | grep -c '"status":"sent"')
	total=$((digital + physical))
	echo "letters by channel (the channel strategy's measure):"
	echo "  digital (Digital Post)         $digital"
	echo "  physical (print spool)         $physical$([ $total -gt 0 ] && echo "   — $((100 * digital / total)) % digital")"
	echo "  print jobs in $VAR/print-spool: $(ls "$VAR/print-spool" | grep -c '\.json$')"
	echo "letters by final status (Digital Post's PKO_PostStatus receipts, the print spool's):"
	accepted=$(grep -c '"status":"accepted"' "$VAR/letter-status.jsonl" 2>/dev/null || true)
	for st in sent failed unknown; do
		for ch in digital physical; do
			n=$(grep '"final":true' "$VAR/letter-status.jsonl" 2>/dev/null |
				grep '"status":"'$st'"' | grep -c '"channel":"'$ch'"' || true)
			[ "$n" -gt 0 ] && printf '  %-30s %5d\n' "$st ($ch)" "$n"
		done
	done
	# Digital Post's final statuses have ids dp-<messageUUID>-…; each accepted letter gets one.
	dp_finals=$(grep '"final":true' "$VAR/letter-status.jsonl" 2>/dev/null |
		grep -c '"id":"dp-' || true)
	printf '  %-30s %5d\n' "Digital Post: still awaiting" $((${accepted:-0} - ${dp_finals:-0}))
	# The payroll system's results file: a line per status of each payslip.
	slips=$(cat "$VAR"/payroll/results/*.csv 2>/dev/null)
	echo "payslips (payroll export → Digital Post only): $(echo "$slips" | grep -c ';sent;true;') sent, $(echo "$slips" |
		grep -c ';failed;') refused (no mailbox; in the dead letters), results in $VAR/payroll/results"
	echo "final statuses back at the case system (webhook): $(echo "$receipts" |
		sed -n 's/^{"count":\([0-9]*\).*/\1/p')"
	echo "self-service submissions: sent $(grep -c ': accepted' "$VAR/submissions-sent.log" 2>/dev/null || true)," \
		"filed in the case system (SF2900) $(echo "$filed" | sed -n 's/.*"filed":\([0-9]*\).*/\1/p')," \
		"receipts to citizens $(grep '^[0-9:.]*  delivered ' "$VAR/stream.log" | grep -c 'route=selfservice-receipt-to-citizen')," \
		"final statuses at the platform $(echo "$platform" | sed -n 's/^{"statuses":[0-9]*,"finals":\([0-9]*\).*/\1/p')"
	echo "calendar entries written (Radicale): $(find "$R/collections" -name '*.ics' -not -path '*/.Radicale.cache/*' | wc -l)"
	echo "CPR lookups (audit log lines):       $(wc -l <"$VAR/cpr-audit.log" 2>/dev/null || echo 0)"
	sf_refused=$(echo "$filed" | sed -n 's/.*"refused":\([0-9]*\).*/\1/p')
	echo "requests refused as invalid (schemas): CPR ${cpr_invalid:-?}, Digital Post ${dp_invalid:-?}, SF2900 ${sf_refused:-?}"
	echo "photos delivered with notices (parents' app): $(echo "$notices" | grep -o '"media_type"' | wc -l)"
	echo "notices to parents (daycare):        $(grep '^[0-9:.]*  delivered staff.absence.registered' "$VAR/stream.log" | grep -c 'destination=daycare')"
	echo "dead letters (kanalctl dlq list):    $dead"
	unmatched=$(grep -c . "$VAR/unmatched.jsonl" 2>/dev/null || true)
	echo "unmatched (no route took them):      ${unmatched:-0}"
	echo "channel strategy per department (kanalctl report channels --by department):"
	echo "$channels" | sed 's/^/  /'
	echo
	echo "kanald and the simulators stopped cleanly; kanald's log is $VAR/kanald.log"
	exit 0
}
trap stop INT TERM
# Whatever ends this script (a closed pipe, a hang-up), nothing it started may outlive it.
trap 'kill $lpid $paypid $notpid $tpid 2>/dev/null; kill -TERM $kpid 2>/dev/null; cleanup' EXIT HUP PIPE

if [ -n "${DEMO_SECONDS:-}" ]; then
	sleep "$DEMO_SECONDS"
	stop
fi
wait $kpid
echo "kanald exited unexpectedly; see $VAR/kanald.log" >&2
kill $tpid $lpid $paypid $notpid 2>/dev/null
cleanup
exit 1
