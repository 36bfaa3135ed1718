// Package admin is the HTTP handler that the people who run a broker point
// their tools at: /metrics (a handler passed in, usually the Prometheus
// exporter's), /healthz (the process is up), /readyz (every named readiness
// check passes: the truststore holds a CA, the policy and the users file
// have loaded, the broker an example gateway relays to can be reached; a
// check's error is the reason shown) and, only when enabled,
// /debug/pprof.
//
// It is a library piece with only the standard library: the broker builds
// the handler and serves it, by default on loopback.
//
//	ts := admin.NewGate("truststore") // not ready until opened
//	h, err := admin.New(admin.Config{
//		Metrics: exp.Handler(),
//		Checks:  []admin.Check{ts.Check(), policyGate.Check()},
//	})
//	srv, err := admin.Listen(admin.DefaultAddr, h)
//	...
//	store, err := truststore.New(...) // the first load succeeded
//	ts.Open()
//
// /readyz answers 200 with "ok" when every check passes, else 503 with one
// line per failing check; ?verbose lists every check. A component whose
// first load succeeded keeps its last good version on a failed reload, so a
// failed reload does not make the broker unready: a source that has never
// loaded does.
package admin
