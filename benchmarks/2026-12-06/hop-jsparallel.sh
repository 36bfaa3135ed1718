#!/usr/bin/env bash
# Issue 23, item 5: connects with MQTT.js from P client processes at once
# (the shape of the issue's own measurement, "4 workers connecting over
# mTLS"), against the example gateway in front of mosquitto and against
# mosquitto doing mTLS itself; the sequential MQTT.js runs of hop.sh are
# bound by the one Node process. Each round runs both sides, alternating
# which goes first; a side's rate is the sum of its P processes' rates.
#
#   OUT=/tmp/bench-hop ROUNDS=8 P=4 benchmarks/2026-12-06/hop-jsparallel.sh
#
# It reuses hop.sh's OUT (the example gateway binary, the development PKI
# and mosquitto.conf): run hop.sh first.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/bench-hop}
ROUNDS=${ROUNDS:-8}
P=${P:-4}
N=${N:-100} # connects per process
TAG=par
. benchmarks/2026-12-06/hop-lib.sh
start_mosquitto
start_gateway

par() { # port mode: P processes at once; prints the sum of their rates
	local pids=() i
	for i in $(seq "$P"); do
		node benchmarks/mqttjs/bench.mjs "$2" "mqtts://localhost:$1" "$dev/contoso_root_ca.crt" \
			"$dev/thermostat.crt" "$dev/thermostat.key" "$N" > "$OUT/par.$i" &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i"; done
	cat "$OUT"/par.* | awk '{ r = $4; sub("/s", "", r); s += r } END { printf "%.1f/s", s }'
	rm -f "$OUT"/par.*
}

{ uptime; node --version; } | tee "$OUT/env-par.txt"
: > "$OUT/mqttjs-par.txt"
for r in $(seq "$ROUNDS"); do
	echo "== round $r" >&2
	sides="gateway mosquitto"
	[ $((r % 2)) = 0 ] && sides="mosquitto gateway"
	for mode in connect resume; do
		for side in $sides; do
			port=$gw_port
			[ "$side" = mosquitto ] && port=$mtls_port
			echo "round=$r side=$side mode=$mode P=$P $(par $port $mode)" >> "$OUT/mqttjs-par.txt"
		done
	done
done
uptime | tee -a "$OUT/env-par.txt"
echo "# gateway / mosquitto, summed connects/s of $P MQTT.js processes, per round"
awk '{ split($1, r, "="); split($2, s, "="); split($3, m, "="); rate = $5; sub("/s", "", rate)
	key = r[2] " " m[2]; if (s[2] == "gateway") g[key] = rate; else q[key] = rate }
	END { for (k in g) if (q[k] > 0) printf "%s %.3f\n", k, g[k] / q[k] }' "$OUT/mqttjs-par.txt" | sort -k2,2 -k1n | tee "$OUT/summary-par.txt"
