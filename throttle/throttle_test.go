package throttle_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/throttle"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// backend is a fake authenticator that counts its calls: "secret" is the
// only good password.
type backend struct{ calls atomic.Int64 }

func (b *backend) Authenticate(_ context.Context, req *auth.Request) auth.Result {
	b.calls.Add(1)
	if string(req.Password) == "secret" {
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: req.Username}))
	}
	return auth.FailResult(auth.BadUserNameOrPassword, nil)
}

func newThrottle(t testing.TB, cfg throttle.Config) (*throttle.Throttle, *backend, *authtest.Clock) {
	t.Helper()
	clock := authtest.NewClock(time.Unix(1_700_000_000, 0))
	cfg.Now = clock.Now
	cfg.Logger = quiet
	b := &backend{}
	th, err := throttle.New(b, cfg)
	require.NoError(t, err)
	return th, b, clock
}

func tcp(ip string) net.Addr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 50000))
}

func attempt(th auth.Authenticator, addr, user, pass string) auth.Result {
	return th.Authenticate(context.Background(), &auth.Request{ClientID: "cid-" + user, Username: user, HasUsername: true,
		Password: []byte(pass), HasPassword: true, RemoteAddr: tcp(addr), ProtocolVersion: 5})
}

// TestFloodRefused: past the burst, a flood from one address is refused
// with 0x9F and never reaches the backend; a client from another address
// passes; one failure is forgiven per Every; successes do not count.
func TestFloodRefused(t *testing.T) {
	th, b, clock := newThrottle(t, throttle.Config{DisableIdentity: true})
	for i := range throttle.DefaultBurst {
		r := attempt(th, "192.0.2.1", fmt.Sprint("user", i), "wrong")
		require.Equal(t, auth.BadUserNameOrPassword, r.Code, "attempt %d reaches the backend", i)
	}
	require.EqualValues(t, throttle.DefaultBurst, b.calls.Load())
	for i := range 10_000 {
		r := attempt(th, "192.0.2.1", fmt.Sprint("user", i), "secret")
		require.Equal(t, auth.Fail, r.Outcome)
		require.Equal(t, auth.ConnectionRateExceeded, r.Code)
		require.ErrorIs(t, r.Err, throttle.ErrThrottled)
	}
	require.EqualValues(t, throttle.DefaultBurst, b.calls.Load(), "no backend call for a refused attempt")
	code, ok := auth.ConnectionRateExceeded.ConnackV311()
	require.True(t, ok)
	require.Equal(t, byte(3), code, "an MQTT 3.1.1 client gets return code 3")

	t.Run("legit_client_from_another_address", func(t *testing.T) {
		r := attempt(th, "192.0.2.2", "alice", "secret")
		require.Equal(t, auth.Pass, r.Outcome)
	})
	t.Run("recovery_after_the_window", func(t *testing.T) {
		clock.Advance(throttle.DefaultEvery)
		require.Equal(t, auth.BadUserNameOrPassword, attempt(th, "192.0.2.1", "x", "wrong").Code, "one failure forgiven")
		require.Equal(t, auth.ConnectionRateExceeded, attempt(th, "192.0.2.1", "x", "wrong").Code)
		clock.Advance(throttle.DefaultEvery * throttle.DefaultBurst)
		require.Equal(t, auth.Pass, attempt(th, "192.0.2.1", "alice", "secret").Outcome, "all forgiven")
		require.Zero(t, th.Len(), "a forgiven counter is dropped")
	})
	t.Run("successes_do_not_count", func(t *testing.T) {
		for range 1000 {
			require.Equal(t, auth.Pass, attempt(th, "192.0.2.3", "alice", "secret").Outcome)
		}
		require.Zero(t, th.Len())
	})
}

// TestIdentity: an attacker rotating addresses against one user name is
// stopped by the identity counter; other users are not.
func TestIdentity(t *testing.T) {
	th, b, _ := newThrottle(t, throttle.Config{DisableAddress: true})
	for i := range 1000 {
		attempt(th, fmt.Sprintf("198.51.%d.%d", i/256, i%256), "alice", "guess")
	}
	require.EqualValues(t, throttle.DefaultBurst, b.calls.Load())
	r := attempt(th, "203.0.113.9", "alice", "secret")
	require.Equal(t, auth.ConnectionRateExceeded, r.Code, "the user name is over its limit")
	require.Contains(t, r.Err.Error(), "user name")
	require.Equal(t, auth.Pass, attempt(th, "203.0.113.9", "bob", "secret").Outcome)

	t.Run("client_identifier", func(t *testing.T) {
		th, _, _ := newThrottle(t, throttle.Config{DisableAddress: true})
		for i := range throttle.DefaultBurst {
			th.Authenticate(context.Background(), &auth.Request{ClientID: "sensor-7", Username: fmt.Sprint("u", i), HasUsername: true, HasPassword: true})
		}
		r := th.Authenticate(context.Background(), &auth.Request{ClientID: "sensor-7", Username: "new", HasUsername: true, Password: []byte("secret"), HasPassword: true})
		require.Equal(t, auth.ConnectionRateExceeded, r.Code)
		require.Contains(t, r.Err.Error(), "client identifier")
	})
	t.Run("verified_identity_at_reauth", func(t *testing.T) {
		th, _, _ := newThrottle(t, throttle.Config{DisableAddress: true})
		p := auth.NewPrincipal(auth.PrincipalInfo{Username: "carol"})
		for range throttle.DefaultBurst {
			r := th.Authenticate(context.Background(), &auth.Request{ClientID: "x", Reauth: true, Current: p, Password: []byte("wrong")})
			require.Equal(t, auth.BadUserNameOrPassword, r.Code, "re-authentication is never refused, only counted")
		}
		r := attempt(th, "192.0.2.1", "carol", "secret")
		require.Equal(t, auth.ConnectionRateExceeded, r.Code, "failed re-authentications counted against the verified identity")
	})
}

// TestIPv6Prefix: one host rotating addresses in its /64 is one counter.
func TestIPv6Prefix(t *testing.T) {
	th, b, _ := newThrottle(t, throttle.Config{DisableIdentity: true})
	for i := range 1000 {
		attempt(th, fmt.Sprintf("2001:db8:1:2:%x::%x", i, i), "u", "wrong")
	}
	require.EqualValues(t, throttle.DefaultBurst, b.calls.Load())
	require.Equal(t, 1, th.Len())
	require.Equal(t, auth.Pass, attempt(th, "2001:db8:1:3::1", "u", "secret").Outcome, "another /64")
	t.Run("ipv4_mapped", func(t *testing.T) {
		th, _, _ := newThrottle(t, throttle.Config{DisableIdentity: true})
		for range throttle.DefaultBurst {
			attempt(th, "::ffff:192.0.2.1", "u", "wrong")
		}
		require.Equal(t, auth.ConnectionRateExceeded, attempt(th, "192.0.2.1", "u", "secret").Code)
	})
	t.Run("v4_prefix", func(t *testing.T) {
		th, _, _ := newThrottle(t, throttle.Config{DisableIdentity: true, IPv4Prefix: 24})
		for i := range throttle.DefaultBurst {
			attempt(th, fmt.Sprint("192.0.2.", i), "u", "wrong")
		}
		require.Equal(t, auth.ConnectionRateExceeded, attempt(th, "192.0.2.200", "u", "secret").Code)
		require.Equal(t, auth.Pass, attempt(th, "192.0.3.1", "u", "secret").Outcome)
	})
}

// TestBoundedMemory: a million distinct addresses never hold more than
// MaxEntries counters, and the heap stays bounded.
func TestBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("a million attempts")
	}
	const maxEntries = 10_000
	th, b, _ := newThrottle(t, throttle.Config{MaxEntries: maxEntries, DisableIdentity: true})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	req := &auth.Request{ClientID: "c", HasPassword: true}
	addr := &net.TCPAddr{IP: make(net.IP, 4), Port: 1}
	for i := range 1_000_000 {
		addr.IP[0], addr.IP[1], addr.IP[2], addr.IP[3] = 10, byte(i>>16), byte(i>>8), byte(i)
		req.RemoteAddr = addr
		th.Authenticate(context.Background(), req)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.EqualValues(t, 1_000_000, b.calls.Load(), "each address failed once, under its burst")
	require.LessOrEqual(t, th.Len(), maxEntries)
	require.Greater(t, th.Len(), maxEntries/2, "the table is used")
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("counters %d, heap grown %d bytes", th.Len(), grown)
	require.Less(t, grown, int64(4<<20), "the heap holds the bounded table, not a million counters")
}

// TestBlockedSurviveEviction: counters over their limit are evicted last,
// so a flood of one-off addresses does not free a blocked one.
func TestBlockedSurviveEviction(t *testing.T) {
	th, b, _ := newThrottle(t, throttle.Config{MaxEntries: 640, DisableIdentity: true})
	for range throttle.DefaultBurst {
		attempt(th, "192.0.2.1", "u", "wrong")
	}
	for i := range 100_000 {
		attempt(th, fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), "u", "wrong")
	}
	calls := b.calls.Load()
	require.Equal(t, auth.ConnectionRateExceeded, attempt(th, "192.0.2.1", "u", "secret").Code)
	require.Equal(t, calls, b.calls.Load())
}

// TestPassThrough: the wrapped authenticator's results, multi-step state
// included, are returned as they are; Unavailable does not count.
func TestPassThrough(t *testing.T) {
	steps := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		switch {
		case req.AuthMethod != "TWO":
			return auth.Result{}
		case req.Step == 0:
			return auth.ContinueResult([]byte("challenge"), "s1")
		case req.State == "s1" && string(req.AuthData) == "answer":
			return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: "two"}))
		}
		return auth.FailResult(auth.NotAuthorized, nil)
	})
	down := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if req.AuthMethod != "DOWN" {
			return auth.Result{}
		}
		return auth.UnavailableResult(nil)
	})
	th, err := throttle.New(auth.Chain{steps, down}, throttle.Config{Logger: quiet})
	require.NoError(t, err)
	req := &auth.Request{ClientID: "c", AuthMethod: "TWO", RemoteAddr: tcp("192.0.2.1")}
	r := th.Authenticate(context.Background(), req)
	require.Equal(t, auth.Continue, r.Outcome)
	req.Step, req.State, req.AuthData = 1, r.State, []byte("answer")
	r = th.Authenticate(context.Background(), req)
	require.Equal(t, auth.Pass, r.Outcome)
	for range 100 {
		r = th.Authenticate(context.Background(), &auth.Request{ClientID: "c", AuthMethod: "DOWN", RemoteAddr: tcp("192.0.2.1")})
		require.Equal(t, auth.Unavailable, r.Outcome)
	}
	require.Zero(t, th.Len(), "Unavailable is not the client's failure")
}

func TestNewRefuses(t *testing.T) {
	b := &backend{}
	for _, tc := range []struct {
		name string
		next auth.Authenticator
		cfg  throttle.Config
	}{
		{"no_next", nil, throttle.Config{}},
		{"negative_every", b, throttle.Config{Address: throttle.Limit{Every: -1}}},
		{"prefix_too_long", b, throttle.Config{IPv6Prefix: 129}},
		{"code_not_for_connack", b, throttle.Config{Code: auth.MaximumConnectTime}},
		{"table_too_small", b, throttle.Config{MaxEntries: 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := throttle.New(tc.next, tc.cfg)
			require.ErrorContains(t, err, "throttle: ")
		})
	}
}

// TestRefusedAllocs: a refusal allocates nothing, so a flood costs no
// garbage.
func TestRefusedAllocs(t *testing.T) {
	th, _, _ := newThrottle(t, throttle.Config{})
	req := &auth.Request{ClientID: "flood", Username: "alice", HasUsername: true, HasPassword: true, RemoteAddr: tcp("192.0.2.1")}
	for range throttle.DefaultBurst {
		th.Authenticate(context.Background(), req)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if th.Authenticate(context.Background(), req).Code != auth.ConnectionRateExceeded {
			t.Fatal("not refused")
		}
	})
	require.Zero(t, allocs)
}

// jwtAttempt is a CONNECT of an MQTT 3.1.1 client with a token in the
// password under the marker user name "jwt" (README: -u jwt -P TOKEN).
func jwtAttempt(th auth.Authenticator, addr, clientID, token string) auth.Result {
	return th.Authenticate(context.Background(), &auth.Request{ClientID: clientID, Username: "jwt", HasUsername: true,
		Password: []byte(token), HasPassword: true, RemoteAddr: tcp(addr), ProtocolVersion: 4})
}

// TestMarkerUsernameIsNoIdentity: many clients share the marker user name
// "jwt" from many addresses. Bad tokens, from one address or spread over
// many, lock out that address (and client identifier) only: every other
// client under the marker still reaches the backend. Without the marker
// listed, the same failures lock every JWT client out (the bug).
func TestMarkerUsernameIsNoIdentity(t *testing.T) {
	scenario := func(t *testing.T, cfg throttle.Config) (refused int) {
		th, _, _ := newThrottle(t, cfg)
		// Eleven bad tokens from one address, then one bad token from
		// each of 40 addresses (a fleet with a stale token).
		for i := range throttle.DefaultBurst + 1 {
			jwtAttempt(th, "192.0.2.1", fmt.Sprint("bad-", i), "expired")
		}
		for i := range 40 {
			jwtAttempt(th, fmt.Sprintf("198.51.100.%d", i+1), fmt.Sprint("stale-", i), "expired")
		}
		// 200 good clients from 200 other addresses.
		for i := range 200 {
			r := jwtAttempt(th, fmt.Sprintf("203.0.113.%d", i%250+1), fmt.Sprint("good-", i), "secret")
			if r.Code == auth.ConnectionRateExceeded {
				refused++
			} else {
				require.Equal(t, auth.Pass, r.Outcome)
			}
		}
		return refused
	}
	t.Run("marker_listed", func(t *testing.T) {
		require.Zero(t, scenario(t, throttle.Config{MarkerUsernames: []string{"jwt"}}))
	})
	t.Run("control_marker_not_listed", func(t *testing.T) {
		require.Equal(t, 200, scenario(t, throttle.Config{}), "the marker is a shared identity: everyone is locked out")
	})
	t.Run("the_offending_address_is_still_refused", func(t *testing.T) {
		th, _, _ := newThrottle(t, throttle.Config{MarkerUsernames: []string{"jwt"}})
		for i := range throttle.DefaultBurst {
			jwtAttempt(th, "192.0.2.1", fmt.Sprint("bad-", i), "expired")
		}
		require.Equal(t, auth.ConnectionRateExceeded, jwtAttempt(th, "192.0.2.1", "bad-x", "secret").Code)
	})
	t.Run("marker_method", func(t *testing.T) {
		// K8S-SAT: the CONNECT user name is not verified; clients that
		// all send the same one share no counter.
		th, _, _ := newThrottle(t, throttle.Config{MarkerMethods: []string{"K8S-SAT"}})
		sat := func(addr, cid, pass string) auth.Result {
			return th.Authenticate(context.Background(), &auth.Request{ClientID: cid, Username: "device", HasUsername: true,
				AuthMethod: "K8S-SAT", Password: []byte(pass), HasPassword: true, RemoteAddr: tcp(addr), ProtocolVersion: 5})
		}
		for i := range 30 {
			sat(fmt.Sprintf("198.51.100.%d", i+1), fmt.Sprint("stale-", i), "expired")
		}
		require.Equal(t, auth.Pass, sat("203.0.113.9", "good", "secret").Outcome)
	})
}

// The Throttle is no method: observed, the methods behind it are labelled
// and it is not (no "*throttle.Throttle" in metrics).
func TestObserveMethodsLabelsTheMethodsBehind(t *testing.T) {
	b := &backend{}
	th, err := throttle.New(auth.Chain{auth.Named("password", b)}, throttle.Config{Logger: quiet})
	require.NoError(t, err)
	var labels []string
	o := observerFunc(func(e auth.AuthnEvent) { labels = append(labels, e.Method) })
	a := auth.ObserveMethods(th, o)
	attempt(a, "192.0.2.1", "alice", "secret")
	require.Equal(t, []string{"password"}, labels)
}

type observerFunc func(auth.AuthnEvent)

func (f observerFunc) Authenticated(e auth.AuthnEvent) { f(e) }
func (observerFunc) Authorized(auth.AuthzEvent)        {}
func (observerFunc) Session(auth.SessionEvent)         {}
func (observerFunc) Component(auth.ComponentEvent)     {}
