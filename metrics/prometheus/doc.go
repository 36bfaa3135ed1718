// Package prometheus exports the events of mqttauth (an [auth.Observer]) as
// Prometheus metrics. It is its own module so that the core never depends
// on the Prometheus client.
//
//	exp, err := prometheus.New(prometheus.Config{})
//	...
//	m, err := auth.NewManager(auth.Config{..., Observer: exp})
//	store, err := truststore.New(truststore.Config{..., Observer: exp})
//	http.Handle("/metrics", exp.Handler()) // or admin.Config.Metrics
//
// # Metrics
//
// Label values are bounded: authentication method labels come from the
// configured authenticators (their MethodName), actions, results, causes
// and components are fixed sets, and reason codes are at most 256. No
// metric is labelled with a client id, a topic or a user name: those are in
// the audit log (auth.AuditConfig).
//
//	| Metric (namespace `mqttauth`) | Type | Labels | Azure IoT Operations | EMQX |
//	| --- | --- | --- | --- | --- |
//	| `mqttauth_authentication_total` | counter | `method`, `result` = `pass`, `fail`, `not_relevant`, `continue`, `unavailable` | `aio_broker_authentication_successes` (pass), `_deny` (fail), `_failures` (unavailable) | `emqx_authn_success` (pass), `_failed` (fail), `_nomatch` (not_relevant), per provider |
//	| `mqttauth_authentication_duration_seconds` | histogram | `method` | none | `emqx_authn_latency` |
//	| `mqttauth_authorization_total` | counter | `action` = `Connect`, `Publish`, `Subscribe`; `result` = `allow`, `deny`, `error` | `aio_broker_authorization_allow`, `_deny`, `_failures` (error) | `emqx_authz_allow`, `_deny` (a deny includes nomatch: nothing allowed) |
//	| `mqttauth_connections_total` | counter | `result` = `accepted`, `refused`; `reason_code` (`0x00`, `0x87`, ...) | none | `emqx_packets_connack_sent`, `_auth_error` |
//	| `mqttauth_reauthentications_total` | counter | `result` = `pass`, `fail` | none | none |
//	| `mqttauth_disconnects_total` | counter | `cause` = `expiry`, `revocation`, `policy`, `timeout`, `protocol`, `reauth`; `reason_code` | none | `emqx_packets_disconnect_sent` |
//	| `mqttauth_sessions` | gauge | none | none (the broker counts its sessions) | `emqx_live_connections_count` |
//	| `mqttauth_rechecks_total` | counter | none | none | none |
//	| `mqttauth_recheck_sessions_total` | counter | none | none | none |
//	| `mqttauth_recheck_disconnects_total` | counter | none | none | none |
//	| `mqttauth_reloads_total` | counter | `component` = `truststore`, `policy`, `users`; `result` = `ok`, `failed` | none | none |
//	| `mqttauth_backend_calls_total` | counter | `component` = `custom`, `tokenreview`, `jwks`; `result` = `ok`, `failed`, `coalesced`, `cached` | none | `emqx_authorization_cache_hit` (cached) |
//	| `mqttauth_backend_call_duration_seconds` | histogram | `component` | none | none |
//	| `mqttauth_breaker_state` | gauge | `component`; value 0 closed, 1 half-open, 2 open | none | none |
//
// jwks counts the key set fetches of satauth and jwtauth. A CONNECT that
// the brute-force defence (package throttle) refuses reaches no method: it
// is mqttauth_connections_total{result="refused",reason_code="0x9F"}.
// [Exporter.GaugeFunc] and [Exporter.CounterFunc] add metrics read from
// functions, for counts components keep themselves.
//
// An authentication by a chain reports one event per method asked: a
// CONNECT that the first method finds not relevant and the second passes
// counts not_relevant for the first and pass for the second.
// mqttauth_connections_total counts the chain's final answer.
//
// Authorization is counted from auth.Session.Authorize without allocating
// (the series are resolved when the Exporter is built); its latency is not
// measured, to keep the per-message path at two atomic adds.
package prometheus
