package customauth_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/customauth"
	"github.com/mqttauth/mqttauth/customauth/authserver"
)

// measure runs one CONNECT decision per iteration and reports the 99th
// percentile of their durations as p99-ns.
func measure(b *testing.B, a *customauth.Authenticator, want auth.Outcome) {
	b.Helper()
	req := connectReq("alice", "secret")
	ctx := context.Background()
	lat := make([]time.Duration, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		r := a.Authenticate(ctx, req)
		lat = append(lat, time.Since(start))
		if r.Outcome != want {
			b.Fatalf("%v: %v", r.Outcome, r.Err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkConnect is one CONNECT decision against the reference server on
// loopback (HTTPS, kept-alive connections): up; dead (it accepts and never
// answers, like a hung process or a black-holed address) with the breaker
// open; the same dead server without the breaker, where every client waits
// for the 50 ms timeout; and a refusing server without the breaker.
func BenchmarkConnect(b *testing.B) {
	p := newPKI(b)
	users := map[string]authserver.User{"alice": {Password: "secret", Attributes: map[string]string{"group": "g"}}}
	newA := func(b *testing.B, srv *authserver.Server, breaker customauth.BreakerConfig) *customauth.Authenticator {
		a, err := customauth.New(customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool(), Timeout: 50 * time.Millisecond, Breaker: breaker, Logger: discard})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(a.CloseIdleConnections)
		return a
	}
	b.Run("server=up", func(b *testing.B) {
		srv := startServer(b, p, authserver.Config{Users: users})
		measure(b, newA(b, srv, customauth.BreakerConfig{}), auth.Pass)
	})
	b.Run("server=hung/breaker=open", func(b *testing.B) {
		srv := startServer(b, p, authserver.Config{Users: users})
		srv.Handler().SetMode(authserver.Hang)
		a := newA(b, srv, customauth.BreakerConfig{Failures: 5, CoolDown: time.Hour})
		for range 5 { // trip it: the storm meets an open breaker
			a.Authenticate(context.Background(), connectReq("alice", "secret"))
		}
		measure(b, a, auth.Unavailable)
	})
	b.Run("server=hung/breaker=off", func(b *testing.B) {
		srv := startServer(b, p, authserver.Config{Users: users})
		srv.Handler().SetMode(authserver.Hang)
		measure(b, newA(b, srv, customauth.BreakerConfig{Disabled: true}), auth.Unavailable)
	})
	b.Run("server=refusing/breaker=off", func(b *testing.B) {
		srv := startServer(b, p, authserver.Config{Users: users})
		srv.Down()
		measure(b, newA(b, srv, customauth.BreakerConfig{Disabled: true}), auth.Unavailable)
	})
}

// BenchmarkCached is a CONNECT served from the Pass cache.
func BenchmarkCached(b *testing.B) {
	p := newPKI(b)
	srv := startServer(b, p, authserver.Config{Users: map[string]authserver.User{"alice": {Password: "secret"}}})
	a, err := customauth.New(customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool(), Cache: customauth.CacheConfig{TTL: time.Hour}, Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(a.CloseIdleConnections)
	measure(b, a, auth.Pass)
	b.ReportMetric(float64(srv.Handler().Requests()), "requests")
}
