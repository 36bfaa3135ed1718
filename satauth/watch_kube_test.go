package satauth_test

// The watch (Authenticator.RecheckOnChange) and the readiness check against
// a real kube-apiserver: connected sessions follow their service account
// and pod.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/satauth"
)

// connectAuthz allows Connect unless the principal's attribute "connect"
// is "no", and everything else.
var connectAuthz = auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
	if p == nil {
		return auth.Deny
	}
	if v, _ := p.Attribute("connect"); a.Kind == auth.Connect && v == "no" {
		return auth.Deny
	}
	return auth.Allow("test")
})

// watchRig is an Authenticator following the API for a Manager.
type watchRig struct {
	a    *satauth.Authenticator
	m    *auth.Manager
	logs *logBuffer
}

func newWatchRig(t *testing.T, env kubeEnv, mode satauth.Mode) *watchRig {
	t.Helper()
	t.Cleanup(satauth.SetWatchTimings(time.Second, time.Second))
	a, logs := newKubeAuth(t, env.brokerConfig(t, "mqtt-broker", mode))
	m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: connectAuthz, Logger: newTextLogger(logs)})
	require.NoError(t, err)
	stop := a.RecheckOnChange(m)
	t.Cleanup(stop)
	return &watchRig{a: a, m: m, logs: logs}
}

// session connects a session with token and requires CONNACK 0x00.
func (r *watchRig) session(t *testing.T, token string) (*auth.Session, *authtest.Conn) {
	t.Helper()
	conn := authtest.NewConn()
	s := r.m.NewSession(conn)
	t.Cleanup(s.Close)
	resp := s.Connect(context.Background(), &auth.Request{ClientID: "watch-" + t.Name(), AuthMethod: satauth.Method,
		AuthData: []byte(token), ProtocolVersion: 5})
	require.Equal(t, auth.Success, resp.Packet.Code, "%v", resp.Err)
	return s, conn
}

// waitClosed waits for the session's connection to be closed and returns
// the final packet and how long after since it came.
func waitClosed(t *testing.T, conn *authtest.Conn, since time.Time, within time.Duration) (auth.Packet, time.Duration) {
	t.Helper()
	select {
	case <-conn.Done():
	case <-time.After(within):
		t.Fatalf("the session was not disconnected within %v", within)
	}
	took := time.Since(since)
	p, _ := conn.Final()
	return p, took
}

func TestWatchKube(t *testing.T) {
	env := requireKube(t)

	modes(t, func(t *testing.T, mode satauth.Mode) {
		r := newWatchRig(t, env, mode)
		suffix := strings.ToLower(mode.String())

		t.Run("deleted_account_disconnects", func(t *testing.T) {
			name := "watch-del-" + suffix
			require.NoError(t, env.createSA(name, map[string]string{"aio-broker-auth/group": "g"}))
			tok := env.token(t, name, []string{"aio-mq"}, 600)
			_, conn := r.session(t, tok)
			start := time.Now()
			require.NoError(t, env.DeleteServiceAccount(name))
			final, took := waitClosed(t, conn, start, 10*time.Second)
			t.Logf("DELETE serviceaccount -> DISCONNECT: %v", took)
			require.Equal(t, auth.DISCONNECT, final.Type)
			require.Equal(t, auth.NotAuthorized, final.Code)
			require.Contains(t, r.logs.String(), "service account not found")
			// The same token is refused at once, not after the caches' TTLs.
			res := connect(r.a, tok)
			require.Equal(t, auth.Fail, res.Outcome)
		})

		t.Run("recreated_account_disconnects", func(t *testing.T) {
			name := "watch-re-" + suffix
			require.NoError(t, env.createSA(name, nil))
			tok := env.token(t, name, []string{"aio-mq"}, 600)
			_, conn := r.session(t, tok)
			start := time.Now()
			require.NoError(t, env.DeleteServiceAccount(name))
			require.NoError(t, env.createSA(name, nil))
			final, _ := waitClosed(t, conn, start, 10*time.Second)
			require.Equal(t, auth.NotAuthorized, final.Code)
			require.Equal(t, auth.Fail, connect(r.a, tok).Outcome)
		})

		t.Run("deleted_pod_disconnects", func(t *testing.T) {
			pod := "watch-pod-" + suffix
			uid, err := env.CreatePod(pod, "sensor")
			require.NoError(t, err)
			tok := env.PodToken(t, "sensor", pod, uid, []string{"aio-mq"}, 3600)
			_, conn := r.session(t, tok)
			other, otherConn := r.session(t, env.token(t, "sensor", []string{"aio-mq"}, 600))
			start := time.Now()
			require.NoError(t, env.DeletePod(pod))
			final, took := waitClosed(t, conn, start, 10*time.Second)
			t.Logf("DELETE pod -> DISCONNECT: %v", took)
			require.Equal(t, auth.NotAuthorized, final.Code)
			require.Contains(t, r.logs.String(), "pod was deleted")
			require.Equal(t, auth.Fail, connect(r.a, tok).Outcome)
			// A session of the same account whose token names no pod stays.
			_, closed := otherConn.Final()
			require.False(t, closed)
			require.NotNil(t, other.Principal())
		})

		t.Run("annotation_change_reauthorizes", func(t *testing.T) {
			name := "watch-ann-" + suffix
			require.NoError(t, env.createSA(name, map[string]string{"aio-broker-auth/group": "a"}))
			t.Cleanup(func() { _ = env.DeleteServiceAccount(name) })
			s, conn := r.session(t, env.token(t, name, []string{"aio-mq"}, 600))
			require.Equal(t, map[string]string{"group": "a"}, attrs(s.Principal()))
			b := "b"
			start := time.Now()
			require.NoError(t, env.AnnotateServiceAccount(name, map[string]*string{"aio-broker-auth/group": &b}))
			require.Eventually(t, func() bool { return attrs(s.Principal())["group"] == "b" }, 10*time.Second, 20*time.Millisecond)
			t.Logf("PATCH annotation -> new attributes: %v", time.Since(start))
			// A new connection sees the new attributes at once.
			res := connect(r.a, env.token(t, name, []string{"aio-mq"}, 600))
			require.Equal(t, map[string]string{"group": "b"}, attrs(res.Principal))

			no := "no"
			start = time.Now()
			require.NoError(t, env.AnnotateServiceAccount(name, map[string]*string{"aio-broker-auth/connect": &no}))
			final, took := waitClosed(t, conn, start, 10*time.Second)
			t.Logf("PATCH annotation (Connect denied) -> DISCONNECT: %v", took)
			require.Equal(t, auth.NotAuthorized, final.Code)
		})
		require.NotContains(t, r.logs.String(), "eyJ")
	})

	t.Run("stops_watching_when_the_last_session_ends", func(t *testing.T) {
		r := newWatchRig(t, env, satauth.ModeTokenReview)
		s, _ := r.session(t, env.token(t, "sensor", []string{"aio-mq"}, 600))
		spaces, n := r.a.Watched()
		require.Equal(t, []string{"default"}, spaces)
		require.Equal(t, 1, n)
		s.Close()
		require.Eventually(t, func() bool {
			spaces, n := r.a.Watched()
			return len(spaces) == 0 && n == 0
		}, 10*time.Second, 50*time.Millisecond)
		require.Zero(t, r.a.CacheLen(), "cached tokens of an unwatched namespace are dropped")
		require.Zero(t, r.a.AccountCacheLen())
	})

	t.Run("survives_api_server_restart", func(t *testing.T) {
		r := newWatchRig(t, env, satauth.ModeTokenReview)
		name := "watch-restart"
		require.NoError(t, env.createSA(name, nil))
		_, conn := r.session(t, env.token(t, name, []string{"aio-mq"}, 600))
		require.NoError(t, env.RestartAPIServer(2*time.Second))
		start := time.Now()
		require.NoError(t, env.DeleteServiceAccount(name))
		final, took := waitClosed(t, conn, start, 15*time.Second)
		t.Logf("after a restart, DELETE serviceaccount -> DISCONNECT: %v", took)
		require.Equal(t, auth.NotAuthorized, final.Code)
	})
}

func TestCheckReadyKube(t *testing.T) {
	env := requireKube(t)
	for _, tc := range []struct {
		name    string
		broker  string
		mut     func(*satauth.Config)
		missing []string
		is      error
		log     string
	}{
		{name: "ready", broker: "mqtt-broker", log: "satauth: ready"},
		{name: "no_rbac", broker: "no-rbac",
			missing: []string{"create tokenreviews.authentication.k8s.io", "get serviceaccounts", "list serviceaccounts",
				"watch serviceaccounts", "list pods", "watch pods"},
			log: `{apiGroups: [\"authentication.k8s.io\"], resources: [\"tokenreviews\"], verbs: [\"create\"]}`},
		{name: "no_rbac_local_no_watch", broker: "no-rbac",
			mut:     func(c *satauth.Config) { c.Mode, c.DisableWatch = satauth.ModeLocal, true },
			missing: []string{"get serviceaccounts"}},
		{name: "garbage_token", broker: "mqtt-broker", is: satauth.ErrBrokerUnauthorized,
			mut: func(c *satauth.Config) {
				require.NoError(t, os.WriteFile(c.TokenFile, []byte("garbage"), 0o600))
			}, log: "TokenFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := env.brokerConfig(t, tc.broker, satauth.ModeTokenReview)
			if tc.mut != nil {
				tc.mut(&cfg)
			}
			a, logs := newKubeAuth(t, cfg)
			require.ErrorIs(t, a.Ready(), satauth.ErrNotReady, "not ready before the check")
			err := a.CheckReady(context.Background())
			require.Equal(t, err, a.Ready())
			if tc.log != "" {
				require.Contains(t, logs.String(), tc.log)
			}
			if tc.missing == nil && tc.is == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, satauth.ErrNotReady)
			require.Equal(t, 1, strings.Count(logs.String(), "level=ERROR"), "one log line says what is missing")
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
				return
			}
			var re *satauth.ReadinessError
			require.ErrorAs(t, err, &re)
			got := make([]string, len(re.Missing))
			for i, p := range re.Missing {
				got[i] = p.String()
			}
			require.Equal(t, tc.missing, got)
			require.Contains(t, err.Error(), fmt.Sprintf("%q", ""))
		})
	}
}
