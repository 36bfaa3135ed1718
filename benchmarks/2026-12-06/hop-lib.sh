# Sourced by the scripts that reuse a hop.sh run's OUT (the example
# gateway binary, the development PKI and mosquitto.conf): hop-jsparallel.sh,
# cpu-per-message.sh, idle-rss.sh. It sets dev and the ports, and defines
# waitport, start_mosquitto, start_gateway and stop_servers (also run at
# exit). TAG names the servers' log files ($OUT/mosquitto-$TAG.log,
# $OUT/gateway-$TAG.log).
dev="$OUT/dev"
plain_port=28883 mtls_port=28893 gw_port=28895
mosq_pid= gw_pid=

waitport() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not open" >&2; return 1; }

# start_mosquitto: mosquitto with hop.sh's configuration (the gateway's
# plain upstream listener and its own mTLS listener).
start_mosquitto() {
	mosquitto -c "$OUT/mosquitto.conf" > "$OUT/mosquitto-$TAG.log" 2>&1 &
	mosq_pid=$!
	waitport $plain_port
	waitport $mtls_port
}

# start_gateway: the example gateway in front of mosquitto's plain
# listener.
start_gateway() {
	"$OUT/gateway" -dev-dir "$dev" -addr "127.0.0.1:$gw_port" -upstream "127.0.0.1:$plain_port" \
		-admin-addr off > "$OUT/gateway-$TAG.log" 2>&1 &
	gw_pid=$!
	waitport $gw_port
}

stop_gateway() {
	[ -n "$gw_pid" ] || return 0
	kill "$gw_pid" 2>/dev/null || true
	wait "$gw_pid" 2>/dev/null || true
	gw_pid=
}

stop_servers() {
	stop_gateway
	[ -n "$mosq_pid" ] || return 0
	kill "$mosq_pid" 2>/dev/null || true
	wait "$mosq_pid" 2>/dev/null || true
	mosq_pid=
}
trap stop_servers EXIT
