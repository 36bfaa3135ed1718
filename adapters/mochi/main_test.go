package mochi_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quiet is a logger for mochi and the sessions that keeps test output short.
var quiet = func() *slog.Logger {
	if os.Getenv("MOCHI_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}()

// startBroker starts mochi with the hook on a plain TCP listener on
// 127.0.0.1:0 (or ln when given) and returns the hook and the address.
// The server is closed, and the hook checked for leaks, by t.Cleanup.
func startBroker(tb testing.TB, cfg mochi.Config, extra ...mqtt.Hook) (*broker, *mochi.Hook, string) {
	tb.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: quiet, InlineClient: true})
	for _, h := range extra {
		require.NoError(tb, srv.AddHook(h, nil))
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	h, err := mochi.Attach(srv, cfg)
	require.NoError(tb, err)
	ln := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tcp", Address: "127.0.0.1:0"})
	require.NoError(tb, srv.AddListener(ln))
	require.NoError(tb, srv.Serve())
	b := &broker{Server: srv, tb: tb}
	tb.Cleanup(func() {
		b.Stop()
		require.Eventually(tb, func() bool { return h.Len() == 0 }, 5*time.Second, 10*time.Millisecond, "hook still holds clients")
	})
	_, _, err = net.SplitHostPort(ln.Address())
	require.NoError(tb, err)
	return b, h, ln.Address()
}

// broker is a mochi server that can be stopped more than once.
type broker struct {
	*mqtt.Server
	tb   testing.TB
	once sync.Once
}

// Stop closes the server once (closeServer).
func (b *broker) Stop() { b.once.Do(func() { _ = closeServer(b.tb, b.Server) }) }

// closeTimeout bounds closeServer.
const closeTimeout = 30 * time.Second

// closeServer closes srv and fails tb, with every goroutine's stack, when
// mochi's Close has not returned within closeTimeout: Close waits for
// every connection mochi has begun to establish (Listeners.ClientsWg),
// and one it neither closed nor listed as a client (still
// authenticating when Close swept, say) holds it until its peer leaves.
// A test whose peer is closed by a later cleanup would wait for ever;
// this makes it a failure that names the test and shows who waits.
func closeServer(tb testing.TB, srv *mqtt.Server) error {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(closeTimeout):
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		tb.Errorf("mochi's Close did not return within %v; the goroutines:\n%s", closeTimeout, buf)
		return errors.New("mochi: Close did not return")
	}
}

func newManager(tb testing.TB, cfg auth.Config) *auth.Manager {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	m, err := auth.NewManager(cfg)
	require.NoError(tb, err)
	return m
}
