package throttle_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/jwtauth"
	"github.com/mqttauth/mqttauth/jwtauth/jwttest"
	"github.com/mqttauth/mqttauth/throttle"
)

// BenchmarkRefused is the cost of a refused attempt under a flood: the
// address and the user name are over their limits; the backend is never
// called.
func BenchmarkRefused(b *testing.B) {
	th, be, _ := newThrottle(b, throttle.Config{})
	req := &auth.Request{ClientID: "flood", Username: "alice", HasUsername: true, Password: []byte("guess"), HasPassword: true,
		RemoteAddr: &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 40000}}
	ctx := context.Background()
	for range throttle.DefaultBurst {
		th.Authenticate(ctx, req)
	}
	calls := be.calls.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if r := th.Authenticate(ctx, req); r.Code != auth.ConnectionRateExceeded {
			b.Fatal(r.Code)
		}
	}
	b.StopTimer()
	require.Equal(b, calls, be.calls.Load(), "no backend call")
}

// BenchmarkRefusedParallel is BenchmarkRefused from every core at once.
func BenchmarkRefusedParallel(b *testing.B) {
	th, be, _ := newThrottle(b, throttle.Config{})
	ctx := context.Background()
	mk := func() *auth.Request {
		return &auth.Request{ClientID: "flood", Username: "alice", HasUsername: true, Password: []byte("guess"), HasPassword: true,
			RemoteAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 40000}}
	}
	for range throttle.DefaultBurst {
		th.Authenticate(ctx, mk())
	}
	calls := be.calls.Load()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := mk()
		for pb.Next() {
			if r := th.Authenticate(ctx, req); r.Code != auth.ConnectionRateExceeded {
				b.Error(r.Code)
				return
			}
		}
	})
	b.StopTimer()
	require.Equal(b, calls, be.calls.Load(), "no backend call")
}

// BenchmarkPassThrough is the cost the throttle adds to an attempt it lets
// through (a success): the wrapped authenticator is a no-op.
func BenchmarkPassThrough(b *testing.B) {
	th, _, _ := newThrottle(b, throttle.Config{})
	req := &auth.Request{ClientID: "ok", Username: "alice", HasUsername: true, Password: []byte("secret"), HasPassword: true,
		RemoteAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 40000}}
	ctx := context.Background()
	b.ReportAllocs()
	for range b.N {
		if r := th.Authenticate(ctx, req); r.Outcome != auth.Pass {
			b.Fatal(r.Outcome)
		}
	}
}

// BenchmarkFlood compares one attempt of a flood of tampered JWTs from one
// address with and without the throttle in front of jwtauth: with it, the
// attempt is refused before the RS256 signature check.
func BenchmarkFlood(b *testing.B) {
	iss := jwttest.NewIssuer(b)
	cfg := iss.Config("mqtt")
	cfg.Logger = quiet
	ja, err := jwtauth.New(cfg)
	require.NoError(b, err)
	tok := iss.Mint(b, jwttest.Claims{Audience: []string{"mqtt"}})
	bad := []byte(tok[:len(tok)-8] + "AAAAAAAA")
	for _, guard := range []string{"throttle", "none"} {
		b.Run("guard="+guard, func(b *testing.B) {
			var a auth.Authenticator = ja
			if guard == "throttle" {
				a, err = throttle.New(ja, throttle.Config{Logger: quiet})
				require.NoError(b, err)
			}
			req := &auth.Request{ClientID: "flood", AuthMethod: "JWT", AuthData: bad,
				RemoteAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 40000}}
			ctx := context.Background()
			for range throttle.DefaultBurst {
				a.Authenticate(ctx, req)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if r := a.Authenticate(ctx, req); r.Outcome != auth.Fail {
					b.Fatal(r.Outcome)
				}
			}
		})
	}
}
