#!/usr/bin/env bash
# Issue 23, item 5 (connects): gateway + mosquitto against mosquitto doing
# mTLS itself, full and resumed handshakes, side by side in one run with
# the rounds interleaved, measured with two client tools:
#
#   - the Go benchmarks (paho.golang's packets over crypto/tls):
#     BenchmarkConnectMTLS and BenchmarkConnectMTLSResumed, each with
#     broker=gateway+mosquitto and broker=mosquitto (Debian's mosquitto
#     2.0.11 started by the test); BenchmarkConnectMTLSParallel, the same
#     with 4 clients at once (CPU cost rather than latency); and
#     BenchmarkConnectMTLSKeyExchange (the gateway with crypto/tls's
#     default X25519MLKEM768 and restricted to X25519);
#   - BenchmarkPublish/qos=1 through=gateway and through=direct (one
#     publisher, one subscriber, 16 QoS 1 messages unacknowledged);
#   - MQTT.js on Node (benchmarks/mqttjs/bench.mjs, modes connect,
#     resume and publish: QoS 1, 16 in flight) against the example gateway in front of mosquitto and
#     against mosquitto doing mTLS itself with the same development PKI.
#
# Each round runs every measurement once, alternating which side goes
# first. Raw outputs go to OUT; benchstat and the per-round ratios are
# written to OUT/summary.txt at the end. With BEFORE (a checkout of the
# commit before this round, e.g. main at ba03db3), every round also runs
# BenchmarkConnectMTLS/broker=gateway+mosquitto of that tree and of this
# one back to back (go-before.txt, go-after.txt): what x509auth's chains
# remembered by content change on full handshakes; and MQTT.js publishes
# through that tree's example gateway too (side=before in mqttjs.txt).
#
#   git worktree add /tmp/before ba03db3
#   BEFORE=/tmp/before OUT=/tmp/bench-hop ROUNDS=8 benchmarks/2026-12-06/hop.sh
#
# Run it on a quiet machine: connects are CPU-bound on both sides of
# loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/bench-hop}
ROUNDS=${ROUNDS:-8}
N=${N:-300}                 # MQTT.js connects per measurement
NPUB=${NPUB:-5000}          # MQTT.js QoS 1 publishes per measurement
BENCHTIME=${BENCHTIME:-2s}  # per Go sub-benchmark
mkdir -p "$OUT"
chmod 755 "$OUT" # mosquitto reads its files after dropping root
go test -c -o "$OUT/gateway.test" ./gateway
if [ -n "${BEFORE:-}" ]; then
	(cd "$BEFORE" && go test -c -o "$OUT/before-gateway.test" ./gateway)
	(cd "$BEFORE/examples" && go build -o "$OUT/before-gateway" ./gateway)
fi
(cd examples && go build -o "$OUT/gateway" ./gateway)
(cd benchmarks/mqttjs && npm ci --silent)

dev="$OUT/dev"
"$OUT/gateway" -dev-dir "$dev" -check-config > /dev/null 2>&1 || true # writes the development PKI
chmod 755 "$dev"
chmod 644 "$dev"/*.crt "$dev"/*.key

plain_port=28883 mtls_port=28893 gw_port=28895 before_port=28897
cat > "$OUT/mosquitto.conf" <<CONF
per_listener_settings false
allow_anonymous true
persistence false
log_dest none
set_tcp_nodelay true
max_connections -1
# the example gateway's upstream
listener $plain_port 127.0.0.1
# mosquitto doing mTLS itself, as the Go benchmark's broker=mosquitto
listener $mtls_port 127.0.0.1
cafile $dev/fabrikam_root_ca.crt
certfile $dev/mqtts-endpoint.crt
keyfile $dev/mqtts-endpoint.key
require_certificate true
use_identity_as_username true
CONF
mosquitto -c "$OUT/mosquitto.conf" > "$OUT/mosquitto.log" 2>&1 &
mosq_pid=$!
gw_pid= before_pid=
cleanup() {
	[ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null || true
	[ -n "$before_pid" ] && kill "$before_pid" 2>/dev/null || true
	kill "$mosq_pid" 2>/dev/null || true
}
trap cleanup EXIT
waitport() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not open" >&2; return 1; }
waitport $plain_port
waitport $mtls_port
"$OUT/gateway" -dev-dir "$dev" -addr "127.0.0.1:$gw_port" -upstream "127.0.0.1:$plain_port" -admin-addr off > "$OUT/gateway.log" 2>&1 &
gw_pid=$!
waitport $gw_port
if [ -n "${BEFORE:-}" ]; then
	"$OUT/before-gateway" -dev-dir "$dev" -addr "127.0.0.1:$before_port" -upstream "127.0.0.1:$plain_port" -admin-addr off > "$OUT/before-gateway.log" 2>&1 &
	before_pid=$!
	waitport $before_port
fi

js() { # port mode
	local n=$N
	[ "$2" = publish ] && n=$NPUB
	node benchmarks/mqttjs/bench.mjs "$2" "mqtts://localhost:$1" "$dev/contoso_root_ca.crt" \
		"$dev/thermostat.crt" "$dev/thermostat.key" "$n" telemetry/temperature
}
gobench() { # pattern file
	(cd gateway && "$OUT/gateway.test" -test.run '^$' -test.bench "$1" \
		-test.benchmem -test.benchtime "$BENCHTIME" -test.count 1) >> "$OUT/$2" 2>&1
}

{ uptime; go version; (mosquitto -h 2>&1 || true) | head -1; node --version; } | tee "$OUT/env.txt"
for r in $(seq "$ROUNDS"); do
	echo "== round $r" >&2
	gobench '^BenchmarkConnectMTLS$' go-full.txt
	gobench '^BenchmarkConnectMTLSResumed$' go-resumed.txt
	gobench '^BenchmarkConnectMTLSParallel$' go-parallel.txt
	gobench '^BenchmarkConnectMTLSKeyExchange$' go-kex.txt
	gobench '^BenchmarkPublish$/qos=1/through=(gateway|direct)$' go-publish.txt
	if [ -n "${BEFORE:-}" ]; then
		for side in before after; do
			bin="$OUT/gateway.test"
			[ $side = before ] && bin="$OUT/before-gateway.test"
			(cd gateway && "$bin" -test.run '^$' -test.bench '^BenchmarkConnectMTLS$/broker=gateway' \
				-test.benchmem -test.benchtime "$BENCHTIME" -test.count 1) >> "$OUT/go-$side.txt" 2>&1
		done
	fi
	sides="gateway mosquitto"
	[ $((r % 2)) = 0 ] && sides="mosquitto gateway"
	for mode in connect resume publish; do
		s=$sides
		if [ -n "${BEFORE:-}" ] && [ $mode = publish ]; then
			s="before $sides"
			[ $((r % 2)) = 0 ] && s="$sides before"
		fi
		for side in $s; do
			port=$gw_port
			[ "$side" = mosquitto ] && port=$mtls_port
			[ "$side" = before ] && port=$before_port
			echo "round=$r side=$side $(js $port $mode)" >> "$OUT/mqttjs.txt"
		done
	done
done
uptime | tee -a "$OUT/env.txt"

benchstat() { go run golang.org/x/perf/cmd/benchstat@latest "$@"; }
{
	echo "# benchstat -col /broker go-full.txt go-resumed.txt"
	benchstat -col /broker "$OUT/go-full.txt" "$OUT/go-resumed.txt"
	echo
	echo "# benchstat -col /broker go-parallel.txt"
	benchstat -col /broker "$OUT/go-parallel.txt"
	echo
	echo "# benchstat -col /through go-publish.txt"
	benchstat -col /through "$OUT/go-publish.txt"
	echo
	echo "# gateway / direct, QoS 1 msgs/s, per round (Go)"
	awk '/msgs\/s/ { for (i = 1; i <= NF; i++) if ($(i+1) == "msgs/s") v = $i
		if ($1 ~ /through=gateway-/) g = v; else if ($1 ~ /through=direct-/) printf "publish %.3f\n", g / v }' "$OUT/go-publish.txt"
	echo
	echo "# benchstat -col /kex go-kex.txt"
	benchstat -col /kex "$OUT/go-kex.txt"
	echo
	if [ -n "${BEFORE:-}" ]; then
		echo "# benchstat go-before.txt go-after.txt"
		benchstat "$OUT/go-before.txt" "$OUT/go-after.txt"
		echo
	fi
	echo "# gateway+mosquitto / mosquitto, connects/s, per round (Go)"
	for f in go-full go-resumed go-parallel; do
		awk -v f=$f '/connects\/s/ {
			for (i = 1; i <= NF; i++) if ($(i+1) == "connects/s") v = $i
			name = $1; sub(/\/broker=.*/, "", name)
			if ($1 ~ /broker=gateway/) g = v; else if ($1 ~ /broker=mosquitto/) { printf "%s %s %.3f\n", f, name, g / v }
		}' "$OUT/$f.txt"
	done
	echo
	echo "# gateway / mosquitto, connects/s, per round (MQTT.js)"
	awk '{ split($1, r, "="); split($2, s, "="); rate = $6; sub("/s", "", rate)
		key = r[2] " " $3; if (s[2] == "gateway") g[key] = rate; else if (s[2] == "mosquitto") m[key] = rate }
		END { for (k in g) if (m[k] > 0) printf "%s %.3f\n", k, g[k] / m[k] }' "$OUT/mqttjs.txt" | sort -k2,2 -k1n
	if [ -n "${BEFORE:-}" ]; then
		echo
		echo "# MQTT.js publish: this tree's gateway / BEFORE's, per round"
		awk '$3 == "publish" { split($1, r, "="); split($2, s, "="); rate = $6; sub("/s", "", rate)
			v[r[2] " " s[2]] = rate; rounds[r[2]] = 1 }
			END { for (k in rounds) if (v[k " before"] > 0) printf "%s %.3f\n", k, v[k " gateway"] / v[k " before"] }' "$OUT/mqttjs.txt" | sort -n
	fi
} > "$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
echo DONE
