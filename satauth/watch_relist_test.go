package satauth_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

// holdLists is a transport that holds the answer to the next list of a
// collection after the server made it, until release: the list's
// snapshot is taken, and what the test does meanwhile happens after it.
type holdLists struct {
	base     http.RoundTripper
	suffix   string // the collection's path ends with it ("/pods")
	mu       sync.Mutex
	armed    bool
	held     chan struct{} // closed when an answer is held
	released chan struct{}
}

func newHoldLists(base http.RoundTripper, suffix string) *holdLists {
	return &holdLists{base: base, suffix: suffix, armed: true, held: make(chan struct{}), released: make(chan struct{})}
}

func (h *holdLists) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := h.base.RoundTrip(req)
	if err != nil || req.URL.Query().Get("watch") != "" || !strings.HasSuffix(req.URL.Path, h.suffix) {
		return resp, err
	}
	h.mu.Lock()
	hold := h.armed
	h.armed = false
	h.mu.Unlock()
	if hold {
		close(h.held)
		select {
		case <-h.released:
		case <-req.Context().Done():
		}
	}
	return resp, err
}

// A session verified while the watch lists its namespace may be bound to
// an account or pod created after the list's snapshot, which the list
// cannot show: the relist must not take it for deleted. (Before the
// relist judged only the bindings recorded before the list was asked
// for, it disconnected such a session at once: the cause of the flaky
// TestWatchPods/.../deleted_during_an_outage, where the first list raced
// with the connect of the session bound to the other pod.)
func TestWatchRelistDuringConnect(t *testing.T) {
	modes(t, func(t *testing.T, mode satauth.Mode) {
		for _, res := range []string{"pods", "serviceaccounts"} {
			t.Run(res, func(t *testing.T) {
				t.Cleanup(satauth.SetWatchTimings(200*time.Millisecond, 200*time.Millisecond))
				srv := sattest.NewServer(t, sattest.Options{})
				hold := newHoldLists(srv.Client().Transport, "/"+res)
				a, logs := newAuth(t, srv, func(c *satauth.Config) {
					c.Mode = mode
					c.HTTPClient = &http.Client{Transport: hold}
				})
				m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: connectAuthz, Logger: newTextLogger(logs),
					Watches: []auth.Watch{a.Watch(0)}})
				require.NoError(t, err)
				t.Cleanup(func() { require.NoError(t, m.Close()) })
				connectWith := func(token string) *authtest.Conn {
					conn := authtest.NewConn()
					s := m.NewSession(conn)
					t.Cleanup(s.Close)
					resp := s.Connect(context.Background(), &auth.Request{ClientID: "c", AuthMethod: satauth.Method, AuthData: []byte(token), ProtocolVersion: 5, Listener: "mqtts"})
					require.Equal(t, auth.Success, resp.Packet.Code, "%v", resp.Err)
					return conn
				}
				opts := func(pod string) sattest.TokenOptions {
					return sattest.TokenOptions{Audiences: []string{"aio-mq"}, Lifetime: time.Hour, Pod: pod}
				}

				srv.AddServiceAccount("ns1", "dev", nil)
				srv.AddPod("ns1", "pod-1")
				conn1 := connectWith(srv.Token("ns1", "dev", opts("pod-1"))) // starts the watch of ns1
				select {
				case <-hold.held: // the list's snapshot is taken
				case <-time.After(10 * time.Second):
					t.Fatal("the watch did not list " + res)
				}
				// Created after the snapshot, and connected during the list.
				var tok2 string
				if res == "pods" {
					srv.AddPod("ns1", "pod-2")
					tok2 = srv.Token("ns1", "dev", opts("pod-2"))
				} else {
					srv.AddServiceAccount("ns1", "late", nil)
					tok2 = srv.Token("ns1", "late", opts(""))
				}
				conn2 := connectWith(tok2)
				close(hold.released)
				// Both watches run once their lists are reconciled.
				require.Eventually(t, func() bool { return srv.Calls(sattest.Watch) >= 2 }, 10*time.Second, 5*time.Millisecond)

				rep := m.Recheck(context.Background(), a.Watch(0).Check)
				requireOpen(t, conn1)
				requireOpen(t, conn2)
				require.Equal(t, auth.RecheckReport{Checked: 2}, rep, "nothing was deleted")
				require.Equal(t, auth.Pass, connect(a, tok2).Outcome, "the token is still accepted")

				// The watch still follows both.
				if res == "pods" {
					srv.DeletePod("ns1", "pod-2")
				} else {
					srv.DeleteServiceAccount("ns1", "late")
				}
				final, _ := waitClosed(t, conn2, time.Now(), 10*time.Second)
				require.Equal(t, auth.NotAuthorized, final.Code)
				requireOpen(t, conn1)
			})
		}
	})
}

// A re-check pass that a change started and that is still running when
// the sweep fires holds back the sweep's own pass: however many sweep
// ticks it lasts, the follower must not take that for a pass that found
// no live session, and forget the live sessions' bindings (it did after
// three ticks, so that a slow pass made it stop following every session:
// an account deleted afterwards disconnected nobody). The ticks are the
// test's: no timing decides anything.
func TestWatchSlowChangePassKeepsLiveSessions(t *testing.T) {
	t.Cleanup(satauth.SetWatchTimings(time.Hour, 200*time.Millisecond)) // no tick but the test's
	srv := sattest.NewServer(t, sattest.Options{})
	a, logs := newAuth(t, srv, nil)
	w := a.Watch(0)
	check := w.Check
	var (
		mu      sync.Mutex
		gate    chan struct{} // non-nil: checks wait for it to close
		entered = make(chan struct{}, 16)
	)
	w.Check = func(ctx context.Context, s *auth.Session) error {
		err := check(ctx, s)
		mu.Lock()
		g := gate
		mu.Unlock()
		if g != nil { // slow after the check, as a Session.Update or a DISCONNECT to a slow client is
			entered <- struct{}{}
			<-g
		}
		return err
	}
	m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: connectAuthz, Logger: newTextLogger(logs), Watches: []auth.Watch{w}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	r := &fakeRig{srv: srv, a: a, m: m, logs: logs}
	srv.AddServiceAccount("ns1", "dev", map[string]string{"aio-broker-auth/group": "a"})
	srv.AddServiceAccount("ns1", "other", nil)
	_, conn := r.session(t, "ns1", "dev")
	_, otherConn := r.session(t, "ns1", "other")
	require.Eventually(t, func() bool { return srv.Calls(sattest.Watch) >= 2 }, 10*time.Second, 5*time.Millisecond)

	// A change starts a pass, which the gate holds.
	g := make(chan struct{})
	mu.Lock()
	gate = g
	mu.Unlock()
	srv.SetAnnotations("ns1", "dev", map[string]string{"aio-broker-auth/group": "b"})
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the change started no re-check")
	}
	for range 10 { // ten sweep ticks, several "pending" expiries
		a.Sweep()
	}
	_, bound := a.Watched()
	mu.Lock()
	gate = nil
	mu.Unlock()
	close(g)
	// Two sessions; the change may have given one a new principal, bound
	// too until a sweep pass finds the old one gone.
	require.GreaterOrEqual(t, bound, 2, "live sessions stay bound while a pass runs")

	srv.DeleteServiceAccount("ns1", "dev")
	final, _ := waitClosed(t, conn, time.Now(), 10*time.Second)
	require.Equal(t, auth.NotAuthorized, final.Code)
	requireOpen(t, otherConn)
}

// A pod deleted, re-created under its name and deleted again before a
// re-check pass runs: the pass must still disconnect the session bound
// to the first pod. (The follower keeps one pending change per pod name;
// the second deletion replaced the first, which named the first pod's
// UID, and the session stayed.)
func TestWatchPodRecreatedAndDeletedBeforeTheCheck(t *testing.T) {
	t.Cleanup(satauth.SetWatchTimings(200*time.Millisecond, 200*time.Millisecond))
	srv := sattest.NewServer(t, sattest.Options{})
	a, logs := newAuth(t, srv, func(c *satauth.Config) { c.Mode = satauth.ModeLocal })
	w := a.Watch(0)
	check := w.Check
	var (
		mu      sync.Mutex
		gate    chan struct{} // non-nil: passes wait for it before checking
		entered = make(chan struct{}, 16)
	)
	w.Check = func(ctx context.Context, s *auth.Session) error {
		mu.Lock()
		g := gate
		mu.Unlock()
		if g != nil {
			entered <- struct{}{}
			<-g
		}
		return check(ctx, s)
	}
	m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: connectAuthz, Logger: newTextLogger(logs), Watches: []auth.Watch{w}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	r := &fakeRig{srv: srv, a: a, m: m, logs: logs}
	opts := func(pod string) sattest.TokenOptions {
		return sattest.TokenOptions{Audiences: []string{"aio-mq"}, Lifetime: time.Hour, Pod: pod}
	}
	srv.AddServiceAccount("ns1", "dev", nil)
	srv.AddPod("ns1", "pod-1")
	srv.AddPod("ns1", "pod-2")
	_, conn := r.sessionWith(t, "dev", srv.Token("ns1", "dev", opts("pod-1")))
	_, otherConn := r.sessionWith(t, "dev", srv.Token("ns1", "dev", opts("pod-2")))
	require.Eventually(t, func() bool { return srv.Calls(sattest.Watch) >= 2 }, 10*time.Second, 5*time.Millisecond)

	g := make(chan struct{})
	mu.Lock()
	gate = g
	mu.Unlock()
	srv.DeletePod("ns1", "pod-1")
	select {
	case <-entered: // the deletion's pass waits
	case <-time.After(10 * time.Second):
		t.Fatal("the deletion started no re-check")
	}
	srv.AddPod("ns1", "pod-1") // same name, another UID
	tok2 := srv.Token("ns1", "dev", opts("pod-1"))
	srv.DeletePod("ns1", "pod-1")
	// The follower has seen the second deletion once it refuses the
	// second pod's token (ModeLocal knows deleted pods from the watch).
	require.Eventually(t, func() bool { return connect(a, tok2).Outcome == auth.Fail }, time.Minute, 5*time.Millisecond)
	mu.Lock()
	gate = nil
	mu.Unlock()
	close(g)

	final, _ := waitClosed(t, conn, time.Now(), 30*time.Second)
	require.Equal(t, auth.NotAuthorized, final.Code)
	requireOpen(t, otherConn)
}

// holdStream is a transport whose watch streams of a collection can be
// held between events: the stream is read a byte at a time, so a read
// under way when hold is called returns at most one byte of what follows.
type holdStream struct {
	base    http.RoundTripper
	suffix  string
	mu      sync.Mutex
	state   int           // streamPass, streamHold or streamOneLine
	changed chan struct{} // closed and replaced at each change of state
}

const (
	streamPass = iota
	streamHold
	streamOneLine // deliver up to the next newline, then hold
)

func newHoldStream(base http.RoundTripper, suffix string) *holdStream {
	return &holdStream{base: base, suffix: suffix, changed: make(chan struct{})}
}

func (h *holdStream) set(state int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.state = state
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *holdStream) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := h.base.RoundTrip(req)
	if err == nil && req.URL.Query().Get("watch") != "" && strings.HasSuffix(req.URL.Path, h.suffix) {
		resp.Body = &heldBody{ReadCloser: resp.Body, h: h, ctx: req.Context()}
	}
	return resp, err
}

type heldBody struct {
	io.ReadCloser
	h   *holdStream
	ctx context.Context
}

func (b *heldBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		b.h.mu.Lock()
		state, changed := b.h.state, b.h.changed
		b.h.mu.Unlock()
		if state == streamHold {
			select {
			case <-changed:
				continue
			case <-b.ctx.Done():
				return 0, b.ctx.Err()
			}
		}
		n, err := b.ReadCloser.Read(p[:1])
		if n == 1 && p[0] == '\n' && state == streamOneLine {
			b.h.set(streamHold)
		}
		return n, err
	}
}

// A service account deleted and re-created, and a session of the new one
// verified before the watch delivers the deletion of the old one (a watch
// is always a little behind): the deletion disconnects the old account's
// sessions, not the new one's. (The follower took any deletion of the
// name for the end of every session of it.) Without attributes: with
// them, the account read at CONNECT would refuse the new UID until the
// watch has caught up.
func TestWatchDeletionOfAnotherUID(t *testing.T) {
	modes(t, func(t *testing.T, mode satauth.Mode) {
		t.Cleanup(satauth.SetWatchTimings(200*time.Millisecond, 200*time.Millisecond))
		srv := sattest.NewServer(t, sattest.Options{})
		hold := newHoldStream(srv.Client().Transport, "/serviceaccounts")
		a, logs := newAuth(t, srv, func(c *satauth.Config) {
			c.Mode = mode
			c.HTTPClient = &http.Client{Transport: hold}
			c.DisableAttributes = true
		})
		m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: connectAuthz, Logger: newTextLogger(logs),
			Watches: []auth.Watch{a.Watch(0)}})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, m.Close()) })
		r := &fakeRig{srv: srv, a: a, m: m, logs: logs}
		srv.AddServiceAccount("ns1", "dev", nil)
		_, conn1 := r.session(t, "ns1", "dev")
		require.Eventually(t, func() bool { return srv.Calls(sattest.Watch) >= 2 }, watchWait, 5*time.Millisecond)

		hold.set(streamHold)
		srv.DeleteServiceAccount("ns1", "dev")
		srv.AddServiceAccount("ns1", "dev", nil) // another UID
		_, conn2 := r.session(t, "ns1", "dev")
		hold.set(streamOneLine) // the deletion of the first account only
		final, _ := waitClosed(t, conn1, time.Now(), watchWait)
		require.Equal(t, auth.NotAuthorized, final.Code)
		// Whatever the pass that closed conn1 did to conn2, this one sees
		// the deletion as the last change of the name.
		m.Recheck(context.Background(), a.Watch(0).Check)
		requireOpen(t, conn2)

		hold.set(streamPass)
		srv.DeleteServiceAccount("ns1", "dev")
		final, _ = waitClosed(t, conn2, time.Now(), watchWait)
		require.Equal(t, auth.NotAuthorized, final.Code)
	})
}
