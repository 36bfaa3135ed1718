#!/usr/bin/env bash
# Issue 23, item 5 (memory per idle client), from outside the process:
# the resident set (VmRSS) the example gateway and mosquitto gain with N
# idle mTLS clients (the tutorial's thermostat, one QoS 1 PUBLISH each,
# then idle), against mosquitto 2.0.11 doing mTLS itself (OpenSSL) with
# the same clients. The clients are the gateway test binary's helper
# process (TestIdleClientsProcess). RSS counts what Go's heap and stacks
# figures do not (span and allocator overhead, runtime metadata), so it
# compares the servers with one ruler; but a Go process's RSS also holds
# the garbage of the handshakes until the GC and the scavenger return it,
# so the gateway's figure is an upper bound, and BenchmarkIdleClient's
# (heap in use and stacks after GC) is the one to compare with the aim.
# Each measurement has fresh server processes: neither returns all of
# its memory to the system when the clients leave.
#
# It uses the binaries, PKI and mosquitto.conf of a hop.sh run:
#
#   OUT=/tmp/bench-hop ROUNDS=8 benchmarks/2026-12-06/hop.sh
#   OUT=/tmp/bench-hop ROUNDS=3 N=1000 benchmarks/2026-12-06/idle-rss.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/bench-hop}
ROUNDS=${ROUNDS:-3}
N=${N:-1000}
TAG=rss
. benchmarks/2026-12-06/hop-lib.sh
certs=$(mktemp -d)
cp "$dev/contoso_root_ca.crt" "$certs/ca.pem"
cp "$dev/thermostat.crt" "$certs/cert.pem"
cp "$dev/thermostat.key" "$certs/key.pem"
trap 'stop_servers; rm -rf "$certs"' EXIT
start() { # mosquitto, and with "gateway" the example gateway in front of it
	start_mosquitto
	[ "${1:-}" != gateway ] || start_gateway
	sleep 1
}
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; } # KiB

# idle PORT PREFIX: N idle clients to PORT until "ready", then measure
# with the callback, then close them.
idle() {
	local spec
	spec=$(printf '{"Addr":"127.0.0.1:%s","N":%d,"Prefix":"%s","CertDir":"%s","Publish":"telemetry/temperature"}' "$1" "$N" "$2" "$certs")
	coproc helper { cd gateway && MQTTAUTH_IDLE_CLIENTS="$spec" "$OUT/gateway.test" -test.run '^TestIdleClientsProcess$' -test.count=1; }
	local pid=$helper_PID in=${helper[1]} out=${helper[0]}
	local line
	read -r line <&"$out"
	[ "$line" = ready ] || { echo "helper: $line" >&2; return 1; }
	sleep "${SETTLE:-2}" # the servers settle (Go's GC and scavenger, mosquitto's loop)
	"$3"
	exec {in}>&-
	cat <&"$out" > /dev/null || true
	wait "$pid" || true
}

{ uptime; (mosquitto -h 2>&1 || true) | head -1; }
for r in $(seq "$ROUNDS"); do
	start gateway
	g0=$(rss $gw_pid) m0=$(rss $mosq_pid)
	measure_gw() { echo "round=$r side=gateway n=$N gateway_rss_kib=$(($(rss $gw_pid) - g0)) mosquitto_rss_kib=$(($(rss $mosq_pid) - m0))"; }
	idle $gw_port "rss-gw-$r" measure_gw
	stop_servers
	start
	m0=$(rss $mosq_pid)
	measure_mq() { echo "round=$r side=mosquitto n=$N mosquitto_rss_kib=$(($(rss $mosq_pid) - m0))"; }
	idle $mtls_port "rss-mq-$r" measure_mq
	stop_servers
done
uptime
