package satauth_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

// fakeRig is an Authenticator following the fake API server for a
// Manager.
type fakeRig struct {
	srv  *sattest.Server
	a    *satauth.Authenticator
	m    *auth.Manager
	logs *logBuffer
}

// watchWait bounds the waits for what the watch must do (a watch up, a
// session disconnected): liveness only, long enough for a loaded
// machine; the waits end as soon as it is done.
const watchWait = 30 * time.Second

func newFakeRig(t *testing.T, mode satauth.Mode) *fakeRig {
	return newFakeRigVia(t, mode, viaRecheckOnChange)
}

// How a rig's Manager hears of the follower's changes.
const (
	viaRecheckOnChange = "RecheckOnChange"
	viaManagerWatches  = "Manager_Watches" // auth.Config.Watches with Authenticator.Watch
)

func newFakeRigVia(t *testing.T, mode satauth.Mode, via string) *fakeRig {
	t.Helper()
	t.Cleanup(satauth.SetWatchTimings(200*time.Millisecond, 200*time.Millisecond))
	srv := sattest.NewServer(t, sattest.Options{})
	a, logs := newAuth(t, srv, func(c *satauth.Config) { c.Mode = mode })
	cfg := auth.Config{Authenticator: a, Authorizer: connectAuthz, Logger: newTextLogger(logs)}
	if via == viaManagerWatches {
		cfg.Watches = []auth.Watch{a.Watch(0)}
	}
	m, err := auth.NewManager(cfg)
	require.NoError(t, err)
	if via == viaManagerWatches {
		t.Cleanup(func() { require.NoError(t, m.Close()) })
	} else {
		t.Cleanup(a.RecheckOnChange(m))
	}
	return &fakeRig{srv: srv, a: a, m: m, logs: logs}
}

func (r *fakeRig) session(t *testing.T, ns, name string) (*auth.Session, *authtest.Conn) {
	t.Helper()
	return r.sessionWith(t, name, r.srv.Token(ns, name, sattest.TokenOptions{Audiences: []string{"aio-mq"}, Lifetime: time.Hour}))
}

// sessionWith connects a session with the token tok of the account name.
func (r *fakeRig) sessionWith(t *testing.T, name, tok string) (*auth.Session, *authtest.Conn) {
	t.Helper()
	conn := authtest.NewConn()
	s := r.m.NewSession(conn)
	t.Cleanup(s.Close)
	resp := s.Connect(context.Background(), &auth.Request{ClientID: name, AuthMethod: satauth.Method, AuthData: []byte(tok), ProtocolVersion: 5, Listener: "mqtts"}) // a named listener, as every adapter sets
	require.Equal(t, auth.Success, resp.Packet.Code, "%v", resp.Err)
	return s, conn
}

func requireOpen(t *testing.T, conn *authtest.Conn) {
	t.Helper()
	_, closed := conn.Final()
	require.False(t, closed, "the session must stay connected")
}

func TestWatch(t *testing.T) {
	modes(t, func(t *testing.T, mode satauth.Mode) {
		for _, tc := range []struct {
			name string
			// disturb runs between the connect and the change: an outage
			// the watch must survive.
			disturb func(r *fakeRig)
			change  func(r *fakeRig)
			// closed: the session is disconnected with 0x87; else its
			// attributes become want.
			closed bool
			want   map[string]string
		}{
			{name: "deleted_account_disconnects", closed: true,
				change: func(r *fakeRig) { r.srv.DeleteServiceAccount("ns1", "dev") }},
			{name: "recreated_account_disconnects", closed: true,
				change: func(r *fakeRig) { r.srv.AddServiceAccount("ns1", "dev", nil) }},
			{name: "changed_annotation_updates_the_principal", want: map[string]string{"group": "b"},
				change: func(r *fakeRig) { r.srv.SetAnnotations("ns1", "dev", map[string]string{"aio-broker-auth/group": "b"}) }},
			{name: "annotation_that_denies_connect_disconnects", closed: true,
				change: func(r *fakeRig) {
					r.srv.SetAnnotations("ns1", "dev", map[string]string{"aio-broker-auth/connect": "no"})
				}},
			{name: "unrelated_annotation_keeps_the_principal", want: map[string]string{"group": "a"},
				change: func(r *fakeRig) {
					r.srv.SetAnnotations("ns1", "dev", map[string]string{"aio-broker-auth/group": "a", "x/y": "z"})
				}},
			{name: "watch_resumes_after_the_stream_ends", closed: true,
				disturb: func(r *fakeRig) { r.srv.EndWatches() },
				change:  func(r *fakeRig) { r.srv.DeleteServiceAccount("ns1", "dev") }},
			{name: "410_gone_relists", closed: true,
				disturb: func(r *fakeRig) { r.srv.Compact() },
				change:  func(r *fakeRig) { r.srv.DeleteServiceAccount("ns1", "dev") }},
			{name: "deleted_during_an_outage_is_caught_by_the_relist", closed: true,
				change: func(r *fakeRig) {
					r.srv.Fail(http.StatusServiceUnavailable)
					r.srv.Compact()
					r.srv.DeleteServiceAccount("ns1", "dev") // no watch sees it
					time.Sleep(300 * time.Millisecond)
					r.srv.Fail(0)
				}},
		} {
			for _, via := range []string{viaRecheckOnChange, viaManagerWatches} {
				t.Run(tc.name+"/"+via, func(t *testing.T) {
					r := newFakeRigVia(t, mode, via)
					r.srv.AddServiceAccount("ns1", "dev", map[string]string{"aio-broker-auth/group": "a"})
					r.srv.AddServiceAccount("ns1", "other", map[string]string{"aio-broker-auth/group": "a"})
					s, conn := r.session(t, "ns1", "dev")
					_, otherConn := r.session(t, "ns1", "other")
					require.Equal(t, map[string]string{"group": "a"}, attrs(s.Principal()))
					// The watch is established once the list has been served.
					require.Eventually(t, func() bool { return r.srv.Calls(sattest.Watch) >= 2 }, watchWait, 10*time.Millisecond)
					if tc.disturb != nil {
						calls := r.srv.Calls(sattest.Watch)
						tc.disturb(r)
						require.Eventually(t, func() bool { return r.srv.Calls(sattest.Watch) > calls }, watchWait, 10*time.Millisecond)
					}
					first := s.Principal()
					start := time.Now()
					tc.change(r)
					if tc.closed {
						final, took := waitClosed(t, conn, start, watchWait)
						t.Logf("change -> DISCONNECT %v", took)
						require.Equal(t, auth.DISCONNECT, final.Type)
						require.Equal(t, auth.NotAuthorized, final.Code)
					} else {
						require.Eventually(t, func() bool { return fmt.Sprint(attrs(s.Principal())) == fmt.Sprint(tc.want) },
							watchWait, 10*time.Millisecond)
						if fmt.Sprint(tc.want) == fmt.Sprint(attrs(first)) {
							time.Sleep(100 * time.Millisecond)
							require.Same(t, first, s.Principal(), "same attributes: no new principal")
						}
						requireOpen(t, conn)
					}
					requireOpen(t, otherConn)
					require.NotContains(t, r.logs.String(), "eyJ")
				})
			}
		}
	})
}

// A Manager built with the satauth watch subscribes to it itself; its
// Close stops the follower: the namespaces' watches end and nothing is
// kept.
func TestWatchStopsOnManagerClose(t *testing.T) {
	r := newFakeRigVia(t, satauth.ModeTokenReview, viaManagerWatches)
	r.srv.AddServiceAccount("ns1", "dev", nil)
	_, conn := r.session(t, "ns1", "dev")
	require.Eventually(t, func() bool { return r.srv.Calls(sattest.Watch) >= 2 }, watchWait, 10*time.Millisecond)
	spaces, bound := r.a.Watched()
	require.Equal(t, []string{"ns1"}, spaces)
	require.Equal(t, 1, bound)
	require.Contains(t, stacks(), "satauth.(*follower)", "the follower runs before Close")

	require.NoError(t, r.m.Close())
	require.NotContains(t, stacks(), "satauth.(*follower)", "the follower's goroutines end with the Manager's Close")
	spaces, bound = r.a.Watched()
	require.Empty(t, spaces)
	require.Zero(t, bound)
	calls := r.srv.Calls(sattest.Watch)
	r.srv.DeleteServiceAccount("ns1", "dev")
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, calls, r.srv.Calls(sattest.Watch), "no watch after Close")
	requireOpen(t, conn) // nobody follows any more
}

// With Config.DisableWatch the Watch never signals and passes every
// session.
func TestWatchDisabled(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	a, _ := newAuth(t, srv, func(c *satauth.Config) { c.DisableWatch = true })
	require.False(t, a.Following())
	w := a.Watch(0)
	require.Equal(t, satauth.WatchName, w.Name)
	m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: connectAuthz, Watches: []auth.Watch{w}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	srv.AddServiceAccount("ns1", "dev", nil)
	conn := authtest.NewConn()
	s := m.NewSession(conn)
	t.Cleanup(s.Close)
	tok := srv.Token("ns1", "dev", sattest.TokenOptions{Audiences: []string{"aio-mq"}, Lifetime: time.Hour})
	resp := s.Connect(context.Background(), &auth.Request{ClientID: "dev", AuthMethod: satauth.Method, AuthData: []byte(tok), ProtocolVersion: 5, Listener: "mqtts"})
	require.Equal(t, auth.Success, resp.Packet.Code, "%v", resp.Err)
	srv.DeleteServiceAccount("ns1", "dev")
	time.Sleep(300 * time.Millisecond)
	require.Zero(t, srv.Calls(sattest.Watch))
	requireOpen(t, conn)
}

// A token verified before its account was deleted is refused at once on
// reconnect: the watch updates the caches.
func TestWatchInvalidatesCaches(t *testing.T) {
	r := newFakeRig(t, satauth.ModeTokenReview)
	r.srv.AddServiceAccount("ns1", "dev", map[string]string{"aio-broker-auth/group": "a"})
	tok := r.srv.Token("ns1", "dev", sattest.TokenOptions{Audiences: []string{"aio-mq"}, Lifetime: time.Hour})
	_, conn := r.session(t, "ns1", "dev")
	require.Equal(t, auth.Pass, connect(r.a, tok).Outcome)
	require.Eventually(t, func() bool { return r.srv.Calls(sattest.Watch) >= 2 }, watchWait, 10*time.Millisecond)

	r.srv.SetAnnotations("ns1", "dev", map[string]string{"aio-broker-auth/group": "c"})
	require.Eventually(t, func() bool {
		res := connect(r.a, tok)
		return res.Outcome == auth.Pass && attrs(res.Principal)["group"] == "c"
	}, watchWait, 10*time.Millisecond, "new connections get the new attributes before AttributeTTL")

	r.srv.DeleteServiceAccount("ns1", "dev")
	waitClosed(t, conn, time.Now(), watchWait)
	res := connect(r.a, tok)
	require.Equal(t, auth.Fail, res.Outcome, "refused at once, not after CacheTTL or AttributeTTL")
	require.ErrorIs(t, res.Err, satauth.ErrNotAuthenticated, "the token cache was dropped: the API reviewed it again")
}

// Watches run only for namespaces that live sessions come from, and
// thousands of sessions leave nothing behind.
func TestWatchBounded(t *testing.T) {
	r := newFakeRig(t, satauth.ModeLocal)
	const n = 2000
	var tokens [4]string // one per namespace: signing 2000 would take most of the test's time
	for i := range tokens {
		ns := fmt.Sprintf("ns%d", i)
		r.srv.AddServiceAccount(ns, "dev", nil)
		tokens[i] = r.srv.Token(ns, "dev", sattest.TokenOptions{Audiences: []string{"aio-mq"}, Lifetime: time.Hour})
	}
	sessions := make([]*auth.Session, 0, n)
	for i := range n {
		s, _ := r.sessionWith(t, "dev", tokens[i%4]) // a principal, and a binding, each
		sessions = append(sessions, s)
	}
	spaces, bound := r.a.Watched()
	require.Len(t, spaces, 4)
	require.Equal(t, n, bound)
	require.Contains(t, stacks(), "satauth.(*follower).follow", "the namespaces are watched")
	for _, s := range sessions[:n/2] {
		s.Close()
	}
	// The bounds are for liveness only: a few sweeps (200 ms each) and
	// re-check passes over a thousand sessions, however loaded the
	// machine.
	require.Eventually(t, func() bool { _, b := r.a.Watched(); return b == n/2 }, time.Minute, 20*time.Millisecond)
	for _, s := range sessions[n/2:] {
		s.Close()
	}
	require.Eventually(t, func() bool { sp, b := r.a.Watched(); return len(sp) == 0 && b == 0 }, time.Minute, 20*time.Millisecond)
	require.Zero(t, r.a.CacheLen())
	require.Zero(t, r.a.AccountCacheLen())
	// The namespaces' list+watch goroutines end, on both sides (the
	// follower's and the API server's streams); the HTTP connection, which
	// the client keeps for its next calls, is not theirs to close.
	require.Eventually(t, func() bool {
		st := stacks()
		return !strings.Contains(st, "satauth.(*follower).follow") && !strings.Contains(st, "kubeapi.(*Follow).Run") &&
			!strings.Contains(st, "sattest.(*Server).watch")
	}, time.Minute, 20*time.Millisecond, "the namespaces' watch goroutines end")
}

func TestCheckReady(t *testing.T) {
	for _, tc := range []struct {
		name    string
		forbid  []sattest.Endpoint
		mut     func(*satauth.Config)
		missing string
	}{
		{name: "ready"},
		{name: "no_tokenreview", forbid: []sattest.Endpoint{sattest.TokenReview},
			missing: `create tokenreviews.authentication.k8s.io; add to a ClusterRole bound to it: {apiGroups: ["authentication.k8s.io"], resources: ["tokenreviews"], verbs: ["create"]}`},
		{name: "no_serviceaccounts", forbid: []sattest.Endpoint{sattest.ServiceAccountGet},
			missing: `get serviceaccounts, list serviceaccounts, watch serviceaccounts; add to a ClusterRole bound to it: {apiGroups: [""], resources: ["serviceaccounts"], verbs: ["get", "list", "watch"]}`},
		{name: "watch_disabled_needs_no_list", forbid: []sattest.Endpoint{sattest.TokenReview},
			mut:     func(c *satauth.Config) { c.DisableWatch = true },
			missing: `create tokenreviews.authentication.k8s.io;`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := sattest.NewServer(t, sattest.Options{})
			for _, e := range tc.forbid {
				srv.Forbid(e, true)
			}
			a, logs := newAuth(t, srv, tc.mut)
			err := a.CheckReady(context.Background())
			require.Equal(t, err, a.Ready())
			if tc.missing == "" {
				require.NoError(t, err)
				require.Contains(t, logs.String(), "satauth: ready")
				return
			}
			require.ErrorIs(t, err, satauth.ErrNotReady)
			require.Contains(t, err.Error(), tc.missing)
			require.Equal(t, 1, strings.Count(logs.String(), "level=ERROR"), "one log line says what is missing")
		})
	}
}

// Deleting the pod a token is bound to disconnects that token's session,
// not the account's other sessions, and the token is refused on reconnect.
func TestWatchPods(t *testing.T) {
	modes(t, func(t *testing.T, mode satauth.Mode) {
		for _, tc := range []struct {
			name   string
			delete func(r *fakeRig)
		}{
			{name: "deleted_pod", delete: func(r *fakeRig) { r.srv.DeletePod("ns1", "pod-1") }},
			{name: "deleted_during_an_outage", delete: func(r *fakeRig) {
				r.srv.Fail(http.StatusServiceUnavailable)
				r.srv.Compact()
				r.srv.DeletePod("ns1", "pod-1")
				time.Sleep(300 * time.Millisecond)
				r.srv.Fail(0)
			}},
			{name: "replaced_during_an_outage", delete: func(r *fakeRig) {
				r.srv.Fail(http.StatusServiceUnavailable)
				r.srv.Compact()
				r.srv.DeletePod("ns1", "pod-1")
				r.srv.AddPod("ns1", "pod-1") // same name, another UID
				time.Sleep(300 * time.Millisecond)
				r.srv.Fail(0)
			}},
		} {
			for _, via := range []string{viaRecheckOnChange, viaManagerWatches} {
				t.Run(tc.name+"/"+via, func(t *testing.T) {
					r := newFakeRigVia(t, mode, via)
					r.srv.AddServiceAccount("ns1", "dev", map[string]string{"aio-broker-auth/group": "a"})
					r.srv.AddPod("ns1", "pod-1")
					r.srv.AddPod("ns1", "pod-2")
					tok := r.srv.Token("ns1", "dev", sattest.TokenOptions{Audiences: []string{"aio-mq"}, Lifetime: time.Hour, Pod: "pod-1"})
					conn := authtest.NewConn()
					s := r.m.NewSession(conn)
					t.Cleanup(s.Close)
					resp := s.Connect(context.Background(), &auth.Request{ClientID: "p1", AuthMethod: satauth.Method, AuthData: []byte(tok), ProtocolVersion: 5})
					require.Equal(t, auth.Success, resp.Packet.Code, "%v", resp.Err)
					tok2 := r.srv.Token("ns1", "dev", sattest.TokenOptions{Audiences: []string{"aio-mq"}, Lifetime: time.Hour, Pod: "pod-2"})
					conn2 := authtest.NewConn()
					s2 := r.m.NewSession(conn2)
					t.Cleanup(s2.Close)
					resp = s2.Connect(context.Background(), &auth.Request{ClientID: "p2", AuthMethod: satauth.Method, AuthData: []byte(tok2), ProtocolVersion: 5})
					require.Equal(t, auth.Success, resp.Packet.Code, "%v", resp.Err)
					_, otherConn := r.session(t, "ns1", "dev")
					require.Eventually(t, func() bool { return r.srv.Calls(sattest.Watch) >= 2 }, watchWait, 10*time.Millisecond)

					start := time.Now()
					tc.delete(r)
					final, took := waitClosed(t, conn, start, watchWait)
					t.Logf("pod deleted -> DISCONNECT %v", took)
					require.Equal(t, auth.NotAuthorized, final.Code)
					require.Contains(t, r.logs.String(), "the token's pod was deleted")
					requireOpen(t, conn2)
					requireOpen(t, otherConn)
					res := connect(r.a, tok)
					require.Equal(t, auth.Fail, res.Outcome, "the deleted pod's token is refused on reconnect")
					require.Equal(t, auth.Pass, connect(r.a, tok2).Outcome)
				})
			}
		}
	})
}

// stacks returns the stacks of every goroutine.
func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// A sweep waits for its re-check pass to walk every session: passes
// slower than the sweep interval do not make the follower forget live
// sessions, which stay followed.
func TestWatchSlowPassesKeepLiveSessions(t *testing.T) {
	t.Cleanup(satauth.SetWatchTimings(100*time.Millisecond, 200*time.Millisecond))
	srv := sattest.NewServer(t, sattest.Options{})
	a, logs := newAuth(t, srv, nil)
	w := a.Watch(0)
	check := w.Check
	w.Check = func(ctx context.Context, s *auth.Session) error {
		err := check(ctx, s)
		time.Sleep(350 * time.Millisecond) // a slow pass: several sweep intervals
		return err
	}
	m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: connectAuthz, Logger: newTextLogger(logs), Watches: []auth.Watch{w}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })
	r := &fakeRig{srv: srv, a: a, m: m, logs: logs}
	srv.AddServiceAccount("ns1", "dev", nil)
	srv.AddServiceAccount("ns1", "other", nil)
	_, conn := r.session(t, "ns1", "dev")
	_, otherConn := r.session(t, "ns1", "other")

	time.Sleep(2 * time.Second) // twenty sweep intervals, a few passes
	spaces, bound := a.Watched()
	require.Equal(t, []string{"ns1"}, spaces)
	require.Equal(t, 2, bound, "live sessions stay bound")

	srv.DeleteServiceAccount("ns1", "dev")
	final, took := waitClosed(t, conn, time.Now(), watchWait)
	t.Logf("deleted -> DISCONNECT %v", took)
	require.Equal(t, auth.NotAuthorized, final.Code)
	requireOpen(t, otherConn)
}
