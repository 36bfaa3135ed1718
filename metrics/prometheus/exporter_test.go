package prometheus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/metrics/prometheus"
)

func TestExporterCounts(t *testing.T) {
	reg := prom.NewRegistry()
	exp, err := prometheus.New(prometheus.Config{Registry: reg})
	require.NoError(t, err)
	exp.Authenticated(auth.AuthnEvent{Method: "X.509", Outcome: auth.Pass, Latency: time.Millisecond})
	exp.Authenticated(auth.AuthnEvent{Method: "X.509", Outcome: auth.Fail, Code: auth.NotAuthorized})
	exp.Authenticated(auth.AuthnEvent{Method: "Custom", Outcome: auth.Unavailable})
	exp.Authorized(auth.AuthzEvent{Kind: auth.Publish, Result: auth.AuthzDeny})
	exp.Authorized(auth.AuthzEvent{Kind: auth.Subscribe, Result: auth.AuthzError})
	exp.Session(auth.SessionEvent{Kind: auth.SessionConnected})
	exp.Session(auth.SessionEvent{Kind: auth.SessionConnected})
	exp.Session(auth.SessionEvent{Kind: auth.SessionDisconnected, Cause: auth.CauseExpiry, Code: auth.MaximumConnectTime})
	exp.Session(auth.SessionEvent{Kind: auth.SessionClosed})
	exp.Session(auth.SessionEvent{Kind: auth.SessionReauthFailed, Cause: auth.CauseReauth, Code: auth.NotAuthorized})
	exp.Component(auth.ComponentEvent{Component: auth.ComponentCustom, Kind: auth.BreakerOpen})
	exp.Component(auth.ComponentEvent{Component: auth.ComponentTokenReview, Kind: auth.Call, Failed: true, Latency: time.Second})
	exp.Component(auth.ComponentEvent{Component: auth.ComponentPolicy, Kind: auth.ReloadFailed})

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP mqttauth_authentication_total Authentication outcomes per method of the chain, per packet (CONNECT, AUTH continuation, re-authentication).
# TYPE mqttauth_authentication_total counter
mqttauth_authentication_total{method="Custom",result="continue"} 0
mqttauth_authentication_total{method="Custom",result="fail"} 0
mqttauth_authentication_total{method="Custom",result="not_relevant"} 0
mqttauth_authentication_total{method="Custom",result="pass"} 0
mqttauth_authentication_total{method="Custom",result="unavailable"} 1
mqttauth_authentication_total{method="X.509",result="continue"} 0
mqttauth_authentication_total{method="X.509",result="fail"} 1
mqttauth_authentication_total{method="X.509",result="not_relevant"} 0
mqttauth_authentication_total{method="X.509",result="pass"} 1
mqttauth_authentication_total{method="X.509",result="unavailable"} 0
# HELP mqttauth_sessions Live (authenticated, not closed) sessions.
# TYPE mqttauth_sessions gauge
mqttauth_sessions 1
# HELP mqttauth_disconnects_total Live sessions ended by the library, by cause and DISCONNECT reason code (0x00: closed without one).
# TYPE mqttauth_disconnects_total counter
mqttauth_disconnects_total{cause="expiry",reason_code="0xA0"} 1
mqttauth_disconnects_total{cause="reauth",reason_code="0x87"} 1
# HELP mqttauth_breaker_state Circuit breaker state per backend: 0 closed, 1 half-open, 2 open.
# TYPE mqttauth_breaker_state gauge
mqttauth_breaker_state{component="custom"} 2
# HELP mqttauth_reloads_total Loads of a watched source (truststore, policy, users) by result (ok, failed).
# TYPE mqttauth_reloads_total counter
mqttauth_reloads_total{component="policy",result="failed"} 1
# HELP mqttauth_backend_calls_total Calls to a backend (custom server, TokenReview, JWKS, the SAT watch's lists and streams) by result (ok, failed, coalesced, cached).
# TYPE mqttauth_backend_calls_total counter
mqttauth_backend_calls_total{component="tokenreview",result="failed"} 1
`), "mqttauth_backend_calls_total", "mqttauth_authentication_total", "mqttauth_sessions", "mqttauth_disconnects_total", "mqttauth_breaker_state", "mqttauth_reloads_total"))
}

func TestExporterAuthorizedAllocatesNothing(t *testing.T) {
	exp, err := prometheus.New(prometheus.Config{Registry: prom.NewRegistry()})
	require.NoError(t, err)
	ev := auth.AuthzEvent{Kind: auth.Publish, Result: auth.AuthzAllow}
	require.Zero(t, testing.AllocsPerRun(1000, func() { exp.Authorized(ev) }))
}

// TestExporterFuncs: a gauge and a counter read from functions at each
// scrape, with constant labels; a second registration of the same series
// is refused.
func TestExporterFuncs(t *testing.T) {
	reg := prom.NewRegistry()
	exp, err := prometheus.New(prometheus.Config{Registry: reg})
	require.NoError(t, err)
	pending, refused := 3.0, 7.0
	require.NoError(t, exp.GaugeFunc("pending", "Connections pending.", nil, func() float64 { return pending }))
	require.NoError(t, exp.CounterFunc("refused_total", "Connections refused.", map[string]string{"reason": "timeout"}, func() float64 { return refused }))
	require.Error(t, exp.GaugeFunc("pending", "Connections pending.", nil, func() float64 { return 0 }))
	pending, refused = 4, 9
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP mqttauth_pending Connections pending.
# TYPE mqttauth_pending gauge
mqttauth_pending 4
# HELP mqttauth_refused_total Connections refused.
# TYPE mqttauth_refused_total counter
mqttauth_refused_total{reason="timeout"} 9
`), "mqttauth_pending", "mqttauth_refused_total"))
}

// A method is labelled by its name; an unnamed one (an authenticator
// without auth.MethodNamer, or an event without a label) is "unnamed", never
// its Go type ("*jwtauth.Authenticator" before jwtauth named itself).
func TestMethodLabelsAreNamesNotTypes(t *testing.T) {
	reg := prom.NewRegistry()
	exp, err := prometheus.New(prometheus.Config{Registry: reg})
	require.NoError(t, err)
	fn := auth.AuthenticatorFunc(func(context.Context, *auth.Request) auth.Result { return auth.Result{} })
	a := auth.ObserveMethods(auth.Chain{fn, fn}, exp)
	a.Authenticate(context.Background(), &auth.Request{})
	auth.ObserveMethods(fn, exp).Authenticate(context.Background(), &auth.Request{})
	exp.Authenticated(auth.AuthnEvent{Outcome: auth.Fail})
	families, err := reg.Gather()
	require.NoError(t, err)
	labels := map[string]bool{}
	for _, f := range families {
		if f.GetName() != "mqttauth_authentication_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" {
					labels[l.GetValue()] = true
				}
			}
		}
	}
	require.Equal(t, map[string]bool{"unnamed-1": true, "unnamed-2": true, "unnamed": true}, labels)
}
