// Package e2e holds the end-to-end tests of the example programs: real
// processes (the broker, the custom authentication server, satclient), real
// sockets and real clients (Debian's mosquitto_pub and mosquitto_sub,
// paho.golang). It has no code of its own; see main_test.go for the
// harness.
package e2e
