package satauth_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

// BenchmarkWatchDelete measures, against the fake API server, the time
// from the DELETE of a connected session's ServiceAccount to the session's
// DISCONNECT: watch event, cache update, re-check, disconnect. It reports
// the median and the maximum over b.N runs; the real API server's number
// is BenchmarkSATWatchDelete in examples/e2e/sat.
func BenchmarkWatchDelete(b *testing.B) {
	srv := sattest.NewServer(b, sattest.Options{})
	a, _ := newAuth(b, srv, func(c *satauth.Config) { c.Logger = newDiscardLogger() })
	m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: auth.AllowAuthenticated, Logger: newDiscardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(a.RecheckOnChange(m))
	srv.AddServiceAccount("ns1", "keep", nil) // keeps the namespace watched
	keep := m.NewSession(authtest.NewConn())
	defer keep.Close()
	if r := keep.Connect(context.Background(), &auth.Request{AuthMethod: satauth.Method, ProtocolVersion: 5,
		AuthData: []byte(srv.Token("ns1", "keep", sattest.TokenOptions{}))}); r.Packet.Code != auth.Success {
		b.Fatal(r.Err)
	}
	for srv.Calls(sattest.Watch) < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	var took []time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		name := fmt.Sprintf("dev-%d", i)
		srv.AddServiceAccount("ns1", name, nil)
		conn := authtest.NewConn()
		s := m.NewSession(conn)
		if r := s.Connect(context.Background(), &auth.Request{AuthMethod: satauth.Method, ProtocolVersion: 5,
			AuthData: []byte(srv.Token("ns1", name, sattest.TokenOptions{}))}); r.Packet.Code != auth.Success {
			b.Fatal(r.Err)
		}
		b.StartTimer()
		start := time.Now()
		srv.DeleteServiceAccount("ns1", name)
		select {
		case <-conn.Done():
		case <-time.After(10 * time.Second):
			b.Fatal("no disconnect within 10 s")
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
}

// BenchmarkConnectWatched: the cost the watch adds to a connect with a
// cached token (recording the session's binding), side by side with the
// watch off.
func BenchmarkConnectWatched(b *testing.B) {
	for _, watch := range []bool{false, true} {
		b.Run(fmt.Sprintf("watch=%v", watch), func(b *testing.B) {
			srv := sattest.NewServer(b, sattest.Options{})
			srv.AddServiceAccount("default", "sensor", annotations)
			a, _ := newAuth(b, srv, func(c *satauth.Config) { c.Logger = newDiscardLogger() })
			if watch {
				m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: auth.AllowAuthenticated, Logger: newDiscardLogger()})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(a.RecheckOnChange(m))
			}
			req := &auth.Request{ClientID: "c", AuthMethod: satauth.Method, AuthData: []byte(srv.Token("default", "sensor", sattest.TokenOptions{}))}
			b.ReportAllocs()
			for b.Loop() {
				if r := a.Authenticate(context.Background(), req); r.Outcome != auth.Pass {
					b.Fatal(r.Err)
				}
			}
		})
	}
}
