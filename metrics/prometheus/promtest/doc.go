// Package promtest runs a real Prometheus server for end-to-end tests of
// code that exposes the exporter's /metrics, and reads results back
// through Prometheus's HTTP query API. It is meant for tests only.
//
// Start runs the prometheus program (Debian package prometheus) on a free
// loopback port, scraping one target every second, until the test ends;
// Binary finds the program, skipping the test when it is missing (and
// failing it when CI=true):
//
//	base := promtest.Start(t, promtest.Binary(t), adminAddr)
//	promtest.Eventually(t, base, `mqttauth_sessions`, 1, 15*time.Second)
//	n := promtest.Query(t, base, `mqttauth_connections_total{result="accepted",reason_code="0x00"}`)
package promtest
