package customauth_test

import (
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

// events records the component events of an Authenticator.
type events struct {
	auth.NopObserver
	mu  sync.Mutex
	got []auth.ComponentEvent
}

func (e *events) Component(ev auth.ComponentEvent) {
	e.mu.Lock()
	ev.Latency = 0
	e.got = append(e.got, ev)
	e.mu.Unlock()
}

// count returns how many events of kind k were seen.
func (e *events) count(k auth.ComponentEventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.got {
		if ev.Kind == k {
			n++
		}
	}
	return n
}

func (e *events) kinds(t *testing.T) []auth.ComponentEventKind {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	var k []auth.ComponentEventKind
	for _, ev := range e.got {
		require.Equal(t, auth.ComponentCustom, ev.Component)
		k = append(k, ev.Kind)
	}
	return k
}

func TestObserverSeesCallsCacheAndBreaker(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, authserver.Config{Users: map[string]authserver.User{"alice": {Password: "secret"}}})
	h := srv.Handler()
	now := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	ev := &events{}
	a := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool(), Now: now.Now, Observer: ev,
		Cache:   customauth.CacheConfig{TTL: time.Minute},
		Breaker: customauth.BreakerConfig{Failures: 1, CoolDown: time.Second}})

	require.Equal(t, auth.Pass, authenticate(a, connectReq("alice", "secret")).Outcome)
	require.Equal(t, auth.Pass, authenticate(a, connectReq("alice", "secret")).Outcome)
	require.Equal(t, []auth.ComponentEventKind{auth.Call, auth.CallCached}, ev.kinds(t))

	h.SetMode(authserver.InternalError)
	authenticate(a, connectReq("alice", "other"))
	now.Add(time.Second)
	h.SetMode(authserver.Normal)
	authenticate(a, connectReq("alice", "other"))
	require.Equal(t, []auth.ComponentEventKind{auth.Call, auth.CallCached,
		auth.Call, auth.BreakerOpen, auth.BreakerHalfOpen, auth.Call, auth.BreakerClosed}, ev.kinds(t))
	ev.mu.Lock()
	require.True(t, ev.got[2].Failed, "a 500 is a failed call")
	require.False(t, ev.got[5].Failed)
	ev.mu.Unlock()
}

func TestObserverSeesCoalescedCalls(t *testing.T) {
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
	for range 5 {
		wg.Go(func() { authenticate(a, connectReq("alice", "secret")) })
	}
	require.Eventually(t, func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		return len(ev.got) == 4
	}, 5*time.Second, time.Millisecond, "four callers join the first one's call")
	close(release)
	wg.Wait()
	require.EqualValues(t, 1, calls.Load())
	k := ev.kinds(t)
	require.Len(t, k, 5)
	require.Equal(t, auth.Call, k[4])
	for _, x := range k[:4] {
		require.Equal(t, auth.CallCoalesced, x)
	}
}
