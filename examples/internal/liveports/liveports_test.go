package liveports

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/scramauth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The listeners follow the Broker's ports: Sync opens those of the
// configuration, and after each Apply a new port is opened, a removed one
// stopped, and one whose address changed replaced.
func TestFollow(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	users := &scramauth.File{}
	data, err := users.Marshal()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "users.json"), data, 0o600))
	load := func(ports string) *aioconfig.Config {
		p := filepath.Join(dir, "broker.yaml")
		require.NoError(t, os.WriteFile(p, fmt.Appendf(nil, `
kind: BrokerListener
metadata: {name: l}
spec: {ports: [%s]}
---
kind: BrokerAuthentication
metadata: {name: a}
spec: {authenticationMethods: [{method: SCRAM, scramSettings: {usersFile: users.json}}]}
`, ports), 0o600))
		c, err := aioconfig.Load(p)
		require.NoError(t, err)
		return c
	}
	b, err := aioconfig.Build(context.Background(), load(`{port: 1, address: 127.0.0.1, authenticationRef: a}`), aioconfig.Options{Logger: quiet})
	require.NoError(t, err)
	defer b.Close()

	var mu sync.Mutex
	var events []string
	record := func(e string) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(events)
	}
	p := New(b, Funcs{
		Start: func(port *aioconfig.Port) error { record("start " + port.Address); return nil },
		Stop:  func(_ context.Context, name string) error { record("stop " + name); return nil },
	}, quiet)
	defer p.Close()
	require.NoError(t, p.Sync(context.Background()))
	require.Equal(t, []string{"start 127.0.0.1:1"}, seen())
	p.Follow()

	_, err = b.Apply(context.Background(), load(`{port: 1, address: 127.0.0.1, authenticationRef: a}, {port: 2, address: 127.0.0.1, authenticationRef: a}`))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(seen()) == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, "start 127.0.0.1:2", seen()[1])

	_, err = b.Apply(context.Background(), load(`{port: 2, address: 127.0.0.2, authenticationRef: a}`))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(seen()) == 5 }, 5*time.Second, 5*time.Millisecond)
	got := seen()[2:]
	slices.Sort(got[:2])
	require.Equal(t, []string{"stop l:1", "stop l:2", "start 127.0.0.2:2"}, got, "removed, then replaced (new address)")
	require.ElementsMatch(t, []string{"l:2"}, p.Serving())
}
