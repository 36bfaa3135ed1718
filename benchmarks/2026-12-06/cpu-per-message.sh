#!/usr/bin/env bash
# Issue 23, item 5 (MQTT.js): where the CPU of one message, or of one
# connect, goes. MQTT.js (MODE publish: N QoS 1 messages, 16 in flight;
# MODE connect: N full mTLS handshakes and CONNECTs, one after the other)
# runs through the example gateway in front of mosquitto, then straight
# to mosquitto doing mTLS itself; each line gives the rate, the CPU time
# (utime + stime from /proc/PID/stat, in clock ticks of 10 ms) the gateway
# and mosquitto spent on the run, and Node's own (node_cpu, user+system
# seconds from /usr/bin/time, start-up included). Then, for publish, one
# run with `strace -c -f` on the gateway counts its system calls (strace
# slows the run: the counts, not the rate, are the result).
#
# It uses the binaries, PKI and mosquitto.conf of a hop.sh run:
#
#   OUT=/tmp/bench-hop ROUNDS=8 benchmarks/2026-12-06/hop.sh
#   OUT=/tmp/bench-hop ROUNDS=3 N=40000 benchmarks/2026-12-06/cpu-per-message.sh
#   OUT=/tmp/bench-hop ROUNDS=3 N=300 MODE=connect benchmarks/2026-12-06/cpu-per-message.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/bench-hop}
ROUNDS=${ROUNDS:-3}
N=${N:-40000}
MODE=${MODE:-publish}
TAG=cpu
. benchmarks/2026-12-06/hop-lib.sh
start_mosquitto
js() { # port n [mode]
	/usr/bin/time -f "node_cpu=%U+%S" node benchmarks/mqttjs/bench.mjs "${3:-$MODE}" "mqtts://localhost:$1" \
		"$dev/contoso_root_ca.crt" "$dev/thermostat.crt" "$dev/thermostat.key" "$2" telemetry/temperature 2>&1 | tr '\n' ' '
}
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
gateway() {
	start_gateway
	js $gw_port 2000 publish > /dev/null # warm-up
}

{ uptime; node --version; (mosquitto -h 2>&1 || true) | head -1; echo "CLK_TCK $(getconf CLK_TCK)"; }
for r in $(seq "$ROUNDS"); do
	gateway
	g0=$(ticks "$gw_pid") m0=$(ticks "$mosq_pid")
	out=$(js $gw_port "$N")
	echo "round=$r side=gateway $out gateway_ticks=$(($(ticks "$gw_pid") - g0)) mosquitto_ticks=$(($(ticks "$mosq_pid") - m0))"
	stop_gateway
	m0=$(ticks "$mosq_pid")
	out=$(js $mtls_port "$N")
	echo "round=$r side=mosquitto $out mosquitto_ticks=$(($(ticks "$mosq_pid") - m0))"
done
[ "$MODE" = publish ] || { uptime; exit 0; }
gateway
strace -c -f -p "$gw_pid" -o "$OUT/strace-gateway.txt" &
strace_pid=$!
sleep 0.5
echo "under strace: $(js $gw_port "$N")"
kill -INT "$strace_pid"
wait "$strace_pid" || true
stop_gateway
echo "# strace -c -f of the gateway, $N messages"
grep -E 'calls|read|write|epoll|futex|nanosleep|total' "$OUT/strace-gateway.txt"
uptime
