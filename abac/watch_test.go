package abac_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
)

const waitFor = 5 * time.Second

type watchEvents struct {
	changed chan *abac.Policy
	failed  chan error
}

func newWatcher(t *testing.T, path string, onChange func(*abac.Policy)) (*abac.Watcher, watchEvents, *bytes.Buffer) {
	t.Helper()
	ev := watchEvents{changed: make(chan *abac.Policy, 10), failed: make(chan error, 10)}
	var logs bytes.Buffer
	w, err := abac.NewWatcher(abac.WatchConfig{
		Path:     path,
		Debounce: 20 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(&lockedWriter{w: &logs}, nil)),
		OnChange: func(p *abac.Policy) {
			if onChange != nil {
				onChange(p)
			}
			ev.changed <- p
		},
		OnError: func(err error) { ev.failed <- err },
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	return w, ev, &logs
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

const policyA = `rules: [{principals: {usernames: [alice, bob]}, brokerResources: [{method: Connect}, {method: Publish, topics: ["a/#"]}]}]`
const policyB = `rules: [{principals: {usernames: [alice]}, brokerResources: [{method: Connect}, {method: Publish, topics: ["b/#"]}]}]`

func TestWatcher(t *testing.T) {
	t.Run("reload_on_change_keeps_last_good_on_error", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "policy.yaml")
		writeFile(t, path, policyA)
		w, ev, logs := newWatcher(t, path, nil)
		alice := principal("c", "alice", nil)
		require.Equal(t, uint64(1), w.Generation())
		require.True(t, w.Authorize(ctx, alice, pub("a/x")).Allowed)

		writeFile(t, path, policyB)
		select {
		case p := <-ev.changed:
			require.Equal(t, uint64(2), p.Generation())
		case <-time.After(waitFor):
			t.Fatal("no reload")
		}
		require.Equal(t, uint64(2), w.Generation())
		require.False(t, w.Authorize(ctx, alice, pub("a/x")).Allowed)
		require.True(t, w.Authorize(ctx, alice, pub("b/x")).Allowed)
		require.NoError(t, w.Err())

		writeFile(t, path, "rules: [{principals: {usernames: [alice]}, brokerResources: [{method: Publish, topics: ['x/{principal.username}-1']}]}]")
		select {
		case err := <-ev.failed:
			require.ErrorIs(t, err, abac.ErrInvalidVariable)
		case <-time.After(waitFor):
			t.Fatal("no error reported")
		}
		require.ErrorIs(t, w.Err(), abac.ErrInvalidVariable)
		require.Equal(t, uint64(2), w.Generation())
		require.True(t, w.Authorize(ctx, alice, pub("b/x")).Allowed, "last good policy stays in force")
		require.Contains(t, logs.String(), "abac policy rejected")
		require.Contains(t, logs.String(), "rules[0].brokerResources[0].topics[0]")

		// The same content again is not a change; a fix clears Err.
		writeFile(t, path, policyB)
		require.Eventually(t, func() bool { return w.Err() == nil }, waitFor, 10*time.Millisecond)
		require.Equal(t, uint64(2), w.Generation())
		require.Empty(t, ev.changed)
	})

	t.Run("configmap_symlink_swap", func(t *testing.T) {
		// The layout kubelet gives a mounted ConfigMap: policy.yaml ->
		// ..data/policy.yaml, ..data -> ..<timestamp>; an update writes a
		// new timestamped directory and renames a new ..data over the old.
		dir := t.TempDir()
		mk := func(name, content string) {
			require.NoError(t, os.Mkdir(filepath.Join(dir, name), 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(dir, name, "policy.yaml"), []byte(content), 0o600))
		}
		mk("..2025_01_01", policyA)
		require.NoError(t, os.Symlink("..2025_01_01", filepath.Join(dir, "..data")))
		require.NoError(t, os.Symlink("..data/policy.yaml", filepath.Join(dir, "policy.yaml")))
		w, ev, _ := newWatcher(t, filepath.Join(dir, "policy.yaml"), nil)
		bob := principal("c", "bob", nil)
		require.True(t, w.Authorize(ctx, bob, connect).Allowed)

		mk("..2025_01_02", policyB)
		require.NoError(t, os.Symlink("..2025_01_02", filepath.Join(dir, "..data_tmp")))
		require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
		require.NoError(t, os.RemoveAll(filepath.Join(dir, "..2025_01_01")))
		select {
		case <-ev.changed:
		case <-time.After(waitFor):
			t.Fatal("symlink swap not seen")
		}
		require.False(t, w.Authorize(ctx, bob, connect).Allowed)
	})

	t.Run("config_errors", func(t *testing.T) {
		_, err := abac.NewWatcher(abac.WatchConfig{})
		require.Error(t, err)
		_, err = abac.NewWatcher(abac.WatchConfig{Path: filepath.Join(t.TempDir(), "missing.yaml")})
		require.Error(t, err)
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		writeFile(t, bad, "rules: []")
		_, err = abac.NewWatcher(abac.WatchConfig{Path: bad})
		require.ErrorIs(t, err, abac.ErrEmptyPolicy)
	})
}

// TestWatcherRecheck wires a policy change to auth.Manager.Recheck: only the
// sessions that lost Connect permission are disconnected.
func TestWatcherRecheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, policyA)

	principals := map[string]*auth.Principal{
		"alice-1": principal("alice-1", "alice", nil),
		"bob-1":   principal("bob-1", "bob", nil),
		"bob-2":   principal("bob-2", "bob", nil),
	}
	// The Manager subscribes to the watcher's change signal itself: no
	// OnChange, no Manager filled in later.
	w, _, _ := newWatcher(t, path, nil)
	m, err := auth.NewManager(auth.Config{
		Authenticator: auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
			return auth.PassResult(principals[req.ClientID])
		}),
		Authorizer: w,
		Clock:      authtest.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)),
		Logger:     slog.New(slog.DiscardHandler),
		Watches:    []auth.Watch{{Name: "abac policy", Source: w, Check: auth.CheckConnect(w)}},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	conns := map[string]*authtest.Conn{}
	for id := range principals {
		c := authtest.NewConn()
		conns[id] = c
		s := m.NewSession(c)
		resp := s.Connect(ctx, &auth.Request{ClientID: id, ProtocolVersion: 5})
		require.Equal(t, auth.Success, resp.Packet.Code, id)
		t.Cleanup(s.Close)
	}
	require.Equal(t, 3, m.Len())

	writeFile(t, path, policyB) // bob loses Connect
	require.Eventually(t, func() bool { return m.Len() == 1 }, waitFor, 10*time.Millisecond, "the policy change re-checked the sessions")
	for _, id := range []string{"bob-1", "bob-2"} {
		final, closed := conns[id].Final()
		require.True(t, closed, id)
		require.Equal(t, auth.DISCONNECT, final.Type)
		require.Equal(t, auth.NotAuthorized, final.Code)
	}
	_, closed := conns["alice-1"].Final()
	require.False(t, closed)
	require.Equal(t, 1, m.Len())
}
