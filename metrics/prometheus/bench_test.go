package prometheus_test

import (
	"context"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/metrics/prometheus"
	"github.com/mqttauth/mqttauth/metrics/prometheus/promtest"
)

// BenchmarkConnect is one connection's life in the core: a Session, its
// CONNECT through a two-method chain (not relevant, then pass), and Close.
func BenchmarkConnect(b *testing.B) {
	for _, o := range promtest.Sides(b) {
		b.Run("observer="+o.Name, func(b *testing.B) {
			m := promtest.NewManager(b, o.Observer)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				s := m.NewSession(authtest.NewConn())
				req := auth.Request{ClientID: "dev-1", Username: "alice", HasUsername: true,
					Password: []byte("secret"), HasPassword: true, ProtocolVersion: 5}
				if r := s.Connect(ctx, &req); r.Close {
					b.Fatal(r.Err)
				}
				s.Close()
			}
		})
	}
}

// BenchmarkSessionAuthorize is the per-message path: Session.Authorize of
// a publish by a connected client, from one goroutine (a connection's read
// loop) and from GOMAXPROCS goroutines at once (every core incrementing the
// same counter).
func BenchmarkSessionAuthorize(b *testing.B) {
	b.Run("serial", func(b *testing.B) { benchAuthorize(b, false) })
	b.Run("parallel", func(b *testing.B) { benchAuthorize(b, true) })
}

func benchAuthorize(b *testing.B, parallel bool) {
	for _, o := range promtest.Sides(b) {
		b.Run("observer="+o.Name, func(b *testing.B) {
			m := promtest.NewManager(b, o.Observer)
			ctx := context.Background()
			s := m.NewSession(authtest.NewConn())
			if r := s.Connect(ctx, &auth.Request{ClientID: "dev-1", Username: "alice", HasUsername: true,
				Password: []byte("secret"), HasPassword: true, ProtocolVersion: 5}); r.Close {
				b.Fatal(r.Err)
			}
			defer s.Close()
			a := auth.Action{Kind: auth.Publish, Topic: "sensors/1/temperature"}
			b.ReportAllocs()
			if !parallel {
				for b.Loop() {
					if !s.Authorize(ctx, a).Allowed {
						b.Fatal("denied")
					}
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if !s.Authorize(ctx, a).Allowed {
						b.Fatal("denied")
					}
				}
			})
		})
	}
}

// BenchmarkExporterConnectEvents is the exporter's own work for one
// connection through a two-method chain: two method outcomes with their
// latency, connected, closed. It is what the exporter adds to a connect.
func BenchmarkExporterConnectEvents(b *testing.B) {
	exp, err := prometheus.New(prometheus.Config{Registry: prom.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		exp.Authenticated(auth.AuthnEvent{Method: "TOKEN", Outcome: auth.NotRelevant, Latency: time.Since(start)})
		start = time.Now()
		exp.Authenticated(auth.AuthnEvent{Method: "password", Outcome: auth.Pass, Latency: time.Since(start)})
		exp.Session(auth.SessionEvent{Kind: auth.SessionConnected})
		exp.Session(auth.SessionEvent{Kind: auth.SessionClosed})
	}
}
