#!/usr/bin/env bash
# Issue 19, item 6: the connection layer, before (BEFORE, a checkout of the
# commit before it) and after (this tree), side by side in one run, rounds
# interleaved. Two client tools: the Go benchmarks (paho.golang) and
# MQTT.js (benchmarks/mqttjs) against the example programs.
#
#   BEFORE=/tmp/before OUT=/tmp/bench-layer ROUNDS=6 benchmarks/2026-12-06/layer.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
AFTER=$PWD
BEFORE=${BEFORE:?checkout of the commit before the layer}
OUT=${OUT:-/tmp/bench-layer}
ROUNDS=${ROUNDS:-5}
mkdir -p "$OUT"
for side in before after; do
	src=$BEFORE; [ $side = after ] && src=$AFTER
	(cd "$src/adapters/mochi" && go test -c -o "$OUT/$side-mochi.test" .)
	(cd "$src" && go test -c -o "$OUT/$side-gateway.test" ./gateway)
	(cd "$src/examples" && go build -o "$OUT/$side-broker" ./broker && go build -o "$OUT/$side-gateway" ./gateway)
done
(cd benchmarks/mqttjs && npm ci --silent)

mosq_port=28883 broker_port=28884 gw_port=28885
cat > "$OUT/mosquitto.conf" <<CONF
listener $mosq_port 127.0.0.1
allow_anonymous true
max_queued_messages 100000
CONF
mosquitto -c "$OUT/mosquitto.conf" > "$OUT/mosquitto.log" 2>&1 &
mosq_pid=$!
trap 'kill $mosq_pid 2>/dev/null || true' EXIT
dev="$OUT/dev"
"$OUT/after-broker" -dev-dir "$dev" -check-config > /dev/null 2>&1 || true # writes the PKI

js() { # program port mode n
	node benchmarks/mqttjs/bench.mjs "$3" "mqtts://localhost:$2" "$dev/contoso_root_ca.crt" \
		"$dev/thermostat.crt" "$dev/thermostat.key" "$4" telemetry/temperature
}
waitport() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

uptime | tee "$OUT/uptime.txt"
for r in $(seq "$ROUNDS"); do
	for side in before after; do
		echo "== round $r $side" >&2
		(cd adapters/mochi && "$OUT/$side-mochi.test" -test.run '^$' -test.bench 'ConnectMTLS/broker=adapter$|PublishQoS0/authz=abac$' \
			-test.benchmem -test.benchtime 2s -test.count 1) >> "$OUT/$side-mochi.txt" 2>&1
		(cd gateway && "$OUT/$side-gateway.test" -test.run '^$' -test.bench 'ConnectMTLS/broker=gateway\+mosquitto$|Publish/qos=1/through=gateway$' \
			-test.benchmem -test.benchtime 2s -test.count 1) >> "$OUT/$side-gateway.txt" 2>&1
		"$OUT/$side-broker" -dev-dir "$dev" -addr "127.0.0.1:$broker_port" -admin-addr off > "$OUT/$side-broker.log" 2>&1 &
		pid=$!; waitport $broker_port
		echo "broker $(js broker $broker_port connect 200)" >> "$OUT/$side-mqttjs.txt"
		echo "broker $(js broker $broker_port publish 5000)" >> "$OUT/$side-mqttjs.txt"
		kill $pid; wait $pid 2>/dev/null || true
		"$OUT/$side-gateway" -dev-dir "$dev" -addr "127.0.0.1:$gw_port" -upstream "127.0.0.1:$mosq_port" -admin-addr off > "$OUT/$side-gwproc.log" 2>&1 &
		pid=$!; waitport $gw_port
		echo "gateway $(js gateway $gw_port connect 200)" >> "$OUT/$side-mqttjs.txt"
		echo "gateway $(js gateway $gw_port publish 5000)" >> "$OUT/$side-mqttjs.txt"
		kill $pid; wait $pid 2>/dev/null || true
	done
done
uptime | tee -a "$OUT/uptime.txt"
echo DONE
