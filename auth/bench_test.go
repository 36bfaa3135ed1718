package auth_test

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// The chain of the benchmarks: an SAT-like method (relevant only for its
// Authentication Method), an X.509-like method (relevant only with a client
// certificate), then a password method that passes.
var (
	benchSAT = auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if req.AuthMethod != "K8S-SAT" {
			return auth.Result{}
		}
		return auth.FailResult(auth.NotAuthorized, nil)
	})
	benchX509 = auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
			return auth.Result{}
		}
		return auth.FailResult(auth.NotAuthorized, nil)
	})
	benchPassword = auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if !req.HasUsername {
			return auth.Result{}
		}
		if subtle.ConstantTimeCompare(req.Password, []byte("secret")) != 1 {
			return auth.FailResult(auth.BadUserNameOrPassword, nil)
		}
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{
			Method:     "password",
			Username:   req.Username,
			Attributes: map[string]string{"building": "17", "floor": "2"},
			Expiry:     time.Now().Add(time.Hour),
		}))
	})
	benchChain = auth.Chain{benchSAT, benchX509, benchPassword}
)

func benchRequest() *auth.Request {
	return &auth.Request{ClientID: "sensor-0001", Username: "sensor-0001", HasUsername: true, Password: []byte("secret"), HasPassword: true, ProtocolVersion: 5}
}

// BenchmarkChain is the chain alone: two NotRelevant, one Pass.
func BenchmarkChain(b *testing.B) {
	req := benchRequest()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := benchChain.Authenticate(ctx, req); r.Outcome != auth.Pass {
			b.Fatal(r.Outcome)
		}
	}
}

// BenchmarkConnect is what a broker pays per CONNECT: a new Session, the
// chain, the Connect authorization, an expiry timer, registration; then the
// connection's end.
func BenchmarkConnect(b *testing.B) {
	m, err := auth.NewManager(auth.Config{Authenticator: benchChain, Authorizer: auth.AllowAuthenticated, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	req := benchRequest()
	ctx := context.Background()
	conn := auth.ConnFunc(func(auth.Packet) {})
	b.ReportAllocs()
	for b.Loop() {
		s := m.NewSession(conn)
		if r := s.Connect(ctx, req); r.Packet.Code != auth.Success {
			b.Fatal(r.Packet.Code)
		}
		s.Close()
	}
}

// BenchmarkAuthorizeHotPath is the per-message cost a Session adds in front
// of the Authorizer: an atomic load of the principal.
func BenchmarkAuthorizeHotPath(b *testing.B) {
	m, _ := auth.NewManager(auth.Config{Authenticator: benchChain, Authorizer: auth.AllowAuthenticated, Logger: slog.New(slog.DiscardHandler)})
	s := m.NewSession(auth.ConnFunc(func(auth.Packet) {}))
	s.Connect(context.Background(), benchRequest())
	defer s.Close()
	a := auth.Action{Kind: auth.Publish, Topic: "telemetry/temperature"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if !s.Authorize(ctx, a).Allowed {
			b.Fatal("denied")
		}
	}
}

// BenchmarkIdleSessions measures the heap an idle, authenticated session
// holds, with its principal (two attributes) and a live expiry timer, over
// 100,000 sessions. Run it with -benchtime=1x; it reports B/session.
func BenchmarkIdleSessions(b *testing.B) {
	const n = 100_000
	m, err := auth.NewManager(auth.Config{Authenticator: benchChain, Authorizer: auth.AllowAuthenticated, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	conn := auth.ConnFunc(func(auth.Packet) {})
	reqs := make([]*auth.Request, n)
	for i := range reqs {
		reqs[i] = benchRequest()
		reqs[i].ClientID = "sensor-" + strconv.Itoa(i) // built before measuring, as the broker owns it
		reqs[i].Username = reqs[i].ClientID
	}
	sessions := make([]*auth.Session, n)
	var perSession float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range sessions {
			sessions[i] = m.NewSession(conn)
			if r := sessions[i].Connect(ctx, reqs[i]); r.Packet.Code != auth.Success {
				b.Fatal(r.Packet.Code)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perSession = float64(after.HeapAlloc-before.HeapAlloc) / n
		if m.Len() != n {
			b.Fatalf("%d live sessions", m.Len())
		}
		for _, s := range sessions {
			s.Close()
		}
		clear(sessions) // the next round measures from an empty heap
	}
	runtime.KeepAlive(sessions)
	b.ReportMetric(perSession, "B/session")
}
