package customauth_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/customauth"
	"github.com/mqttauth/mqttauth/customauth/authserver"
)

// fakeNow is a settable time source for the breaker and the cache.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) Add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func TestBreaker(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, authserver.Config{Users: map[string]authserver.User{"alice": {Password: "secret"}}})
	h := srv.Handler()
	h.SetMode(authserver.InternalError)
	now := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool(), Now: now.Now,
		Breaker: customauth.BreakerConfig{Failures: 3, CoolDown: 10 * time.Second}})

	for i := range 3 {
		r := authenticate(a, connectReq("alice", "secret"))
		require.Equal(t, auth.Unavailable, r.Outcome)
		require.ErrorIs(t, r.Err, customauth.ErrServer, "call %d reaches the server", i)
	}
	require.EqualValues(t, 3, h.Requests())

	// Open: no request, Unavailable at once.
	for range 100 {
		r := authenticate(a, connectReq("alice", "secret"))
		require.Equal(t, auth.Unavailable, r.Outcome)
		require.ErrorIs(t, r.Err, customauth.ErrCircuitOpen)
	}
	require.EqualValues(t, 3, h.Requests(), "an open breaker makes no request")

	// Half-open after the cool-down: one probe; it fails, the breaker opens again.
	now.Add(10 * time.Second)
	require.ErrorIs(t, authenticate(a, connectReq("alice", "secret")).Err, customauth.ErrServer)
	require.EqualValues(t, 4, h.Requests())
	require.ErrorIs(t, authenticate(a, connectReq("alice", "secret")).Err, customauth.ErrCircuitOpen)

	// The server recovers; the next probe closes the breaker.
	h.SetMode(authserver.Normal)
	now.Add(10 * time.Second)
	require.Equal(t, auth.Pass, authenticate(a, connectReq("alice", "secret")).Outcome)
	require.Equal(t, auth.Fail, authenticate(a, connectReq("alice", "wrong")).Outcome, "a 403 is an answer: the breaker stays closed")
	require.EqualValues(t, 6, h.Requests())
}

// While the half-open probe is in flight, other clients do not wait for it.
func TestBreakerSingleProbe(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, authserver.Config{})
	h := srv.Handler()
	now := &fakeNow{t: time.Unix(0, 0)}
	// The probe hangs for the whole 30 s timeout unless the server closes;
	// another client answered within 5 s did not wait for it, whatever the
	// load on the machine.
	a := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool(), Now: now.Now, Timeout: 30 * time.Second,
		Breaker: customauth.BreakerConfig{Failures: 1, CoolDown: time.Second}})
	h.SetMode(authserver.InternalError)
	authenticate(a, connectReq("a", "x"))
	now.Add(time.Second)
	h.SetMode(authserver.Hang)
	probe := make(chan auth.Result)
	go func() { probe <- authenticate(a, connectReq("probe", "x")) }()
	require.Eventually(t, func() bool { return h.Requests() == 2 }, 5*time.Second, time.Millisecond)
	start := time.Now()
	r := authenticate(a, connectReq("other", "x"))
	require.ErrorIs(t, r.Err, customauth.ErrCircuitOpen)
	require.Less(t, time.Since(start), 5*time.Second)
	srv.Close() // ends the hanging probe
	require.Equal(t, auth.Unavailable, (<-probe).Outcome)
}

func TestBreakerDisabled(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, authserver.Config{})
	srv.Handler().SetMode(authserver.InternalError)
	a := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool(), Breaker: customauth.BreakerConfig{Disabled: true, Failures: 1}})
	for range 10 {
		require.ErrorIs(t, authenticate(a, connectReq("a", "x")).Err, customauth.ErrServer)
	}
	require.EqualValues(t, 10, srv.Handler().Requests())
}

// Identical concurrent requests share one HTTP call.
func TestCoalescing(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	_, cfg := handlerServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-release
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"attributes":{"g":"1"}}`)
	})
	ev := &events{}
	cfg.Observer = ev
	a := newAuthn(t, cfg)
	var wg sync.WaitGroup
	results := make([]auth.Result, 20)
	for i := range results {
		wg.Go(func() { results[i] = authenticate(a, connectReq("alice", "secret")) })
	}
	require.Eventually(t, func() bool { return calls.Load() == 1 }, 5*time.Second, time.Millisecond)
	// The others join the flight (each says so as it joins) before the
	// call ends; a late one would make a second call.
	require.Eventually(t, func() bool { return ev.count(auth.CallCoalesced) == len(results)-1 }, time.Minute, time.Millisecond)
	close(release)
	wg.Wait()
	require.EqualValues(t, 1, calls.Load(), "one request for identical credentials")
	for _, r := range results {
		require.Equal(t, auth.Pass, r.Outcome)
	}
	require.NotSame(t, results[0].Principal, results[1].Principal, "each client gets its own principal")

	// Different credentials are not merged.
	require.Equal(t, auth.Pass, authenticate(a, connectReq("bob", "secret")).Outcome)
	require.EqualValues(t, 2, calls.Load())
}

// A caller that gives up does not cancel the shared call for the others.
func TestCoalescingCallerGivesUp(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	_, cfg := handlerServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-release
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"attributes":{}}`)
	})
	ev := &events{}
	cfg.Observer = ev
	a := newAuthn(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan auth.Result)
	go func() { first <- a.Authenticate(ctx, connectReq("alice", "secret")) }()
	require.Eventually(t, func() bool { return calls.Load() == 1 }, time.Minute, time.Millisecond, "the first caller's call is made")
	second := make(chan auth.Result)
	go func() { second <- authenticate(a, connectReq("alice", "secret")) }()
	require.Eventually(t, func() bool { return ev.count(auth.CallCoalesced) == 1 }, time.Minute, time.Millisecond, "the second caller joins it")
	cancel()
	require.Equal(t, auth.Unavailable, (<-first).Outcome)
	close(release)
	require.Equal(t, auth.Pass, (<-second).Outcome)
	require.EqualValues(t, 1, calls.Load())
}

func TestConcurrencyLimit(t *testing.T) {
	var inflight, peak atomic.Int32
	release := make(chan struct{})
	_, cfg := handlerServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		inflight.Add(-1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"attributes":{}}`)
	})
	cfg.MaxConcurrent = 2
	a := newAuthn(t, cfg)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() { authenticate(a, connectReq(fmt.Sprint("user", i), "x")) })
	}
	require.Eventually(t, func() bool { return inflight.Load() == 2 }, 5*time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	require.EqualValues(t, 2, inflight.Load(), "no more than MaxConcurrent in flight")
	close(release)
	wg.Wait()
	require.EqualValues(t, 2, peak.Load())
}

func TestCache(t *testing.T) {
	p := newPKI(t)
	now := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv := startServer(t, p, authserver.Config{Now: now.Now, Users: map[string]authserver.User{
		"alice": {Password: "secret", Attributes: map[string]string{"g": "1"}},
		"short": {Password: "secret", Lifetime: time.Minute},
	}})
	h := srv.Handler()
	a := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool(), Now: now.Now,
		Cache: customauth.CacheConfig{TTL: 5 * time.Minute, MaxEntries: 2}})

	require.Equal(t, auth.Pass, authenticate(a, connectReq("alice", "secret")).Outcome)
	r := authenticate(a, connectReq("alice", "secret"))
	require.Equal(t, auth.Pass, r.Outcome)
	v, _ := r.Principal.Attribute("g")
	require.Equal(t, "1", v)
	require.EqualValues(t, 1, h.Requests(), "the second connect is served from the cache")

	// Failures are never cached.
	authenticate(a, connectReq("alice", "wrong"))
	authenticate(a, connectReq("alice", "wrong"))
	require.EqualValues(t, 3, h.Requests())

	// The TTL ends an entry.
	now.Add(5 * time.Minute)
	authenticate(a, connectReq("alice", "secret"))
	require.EqualValues(t, 4, h.Requests())

	// A credential expiry before the TTL ends it sooner.
	authenticate(a, connectReq("short", "secret"))
	authenticate(a, connectReq("short", "secret"))
	require.EqualValues(t, 5, h.Requests())
	now.Add(time.Minute)
	authenticate(a, connectReq("short", "secret"))
	require.EqualValues(t, 6, h.Requests())

	// Bounded: a third entry pushes out the least recently used.
	h.SetUser("carol", authserver.User{Password: "secret"})
	authenticate(a, connectReq("alice", "secret")) // cached, now most recent
	authenticate(a, connectReq("carol", "secret")) // new: pushes out short
	authenticate(a, connectReq("short", "secret"))
	require.EqualValues(t, 8, h.Requests())

	// A changed password is a different key: the old Pass does not serve it.
	h.SetUser("alice", authserver.User{Password: "rotated"})
	require.Equal(t, auth.Fail, authenticate(a, connectReq("alice", "rotated2")).Outcome)
}

// A server that answers 200 with a body that is not the API's is as broken
// as one that does not answer: after Breaker.Failures such answers the
// breaker opens, and the next CONNECT gets Unavailable without a request,
// however slow the server is.
func TestBreakerTripsOnMalformedAnswers(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		status      int
		body        string
	}{
		{"200 garbage", "application/json", http.StatusOK, "<html>proxy error</html>"},
		{"200 without attributes", "application/json", http.StatusOK, `{"expiry":null}`},
		{"200 wrong content type", "text/html", http.StatusOK, `{"attributes":{}}`},
		{"403 garbage", "application/json", http.StatusForbidden, "not json"},
		{"422 garbage", "application/json", http.StatusUnprocessableEntity, "{"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int64
			var delay atomic.Int64
			_, cfg := handlerServer(t, func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				time.Sleep(time.Duration(delay.Load()))
				w.Header().Set("Content-Type", tt.contentType)
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			})
			now := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			cfg.Now = now.Now
			cfg.Breaker = customauth.BreakerConfig{Failures: 3, CoolDown: time.Minute}
			a := newAuthn(t, cfg)

			for i := range 3 {
				r := authenticate(a, connectReq("alice", fmt.Sprint("secret", i)))
				require.NotEqual(t, auth.Pass, r.Outcome)
				require.NotErrorIs(t, r.Err, customauth.ErrCircuitOpen, "answer %d comes from the server", i)
			}
			require.EqualValues(t, 3, hits.Load())

			// The server now also takes its time; an open breaker does not wait for it.
			delay.Store(int64(5 * time.Second))
			start := time.Now()
			r := authenticate(a, connectReq("alice", "next"))
			require.Less(t, time.Since(start), time.Second, "the next CONNECT does not wait on the server")
			require.Equal(t, auth.Unavailable, r.Outcome)
			require.ErrorIs(t, r.Err, customauth.ErrCircuitOpen)
			require.EqualValues(t, 3, hits.Load(), "an open breaker makes no request")
		})
	}
}
