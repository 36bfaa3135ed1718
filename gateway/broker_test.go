package gateway_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/gateway"
	"github.com/mqttauth/mqttauth/internal/freeport"
)

// tool returns the path of a program the tests need, or skips the test
// when it is missing and CI is not "true" (with CI=true it fails).
func tool(tb testing.TB, path, debPackage string) string {
	tb.Helper()
	if _, err := os.Stat(path); err != nil {
		if p, err := exec.LookPath(filepath.Base(path)); err == nil {
			return p
		}
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is required in CI (apt-get install %s)", path, debPackage)
		}
		tb.Skipf("%s not installed (apt-get install %s)", path, debPackage)
	}
	return path
}

// syncBuffer is a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mosquitto is a running mosquitto broker.
type mosquitto struct {
	Addr string
	Out  *syncBuffer
}

// startMosquitto runs /usr/sbin/mosquitto on a loopback port with a
// generated configuration (listener, allow_anonymous true, persistence
// false, plus extra lines) and stops it at cleanup.
func startMosquitto(tb testing.TB, extra string) *mosquitto {
	tb.Helper()
	bin := tool(tb, "/usr/sbin/mosquitto", "mosquitto")
	dir := readableDir(tb)
	for attempt := 0; ; attempt++ {
		port, err := freeport.Loopback()
		require.NoError(tb, err)
		logging := "log_dest stderr\nlog_type all\n"
		if strings.Contains(extra, "log_dest none") {
			logging = ""
		}
		conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n%s%s", port, logging, extra)
		path := filepath.Join(dir, "mosquitto.conf")
		require.NoError(tb, os.WriteFile(path, []byte(conf), 0o644))
		out := &syncBuffer{}
		cmd := exec.Command(bin, "-c", path)
		cmd.Stdout, cmd.Stderr = out, out
		require.NoError(tb, cmd.Start())
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				if attempt < 3 {
					goto retry
				}
				tb.Fatalf("mosquitto exited:\n%s", out.String())
			default:
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				_ = c.Close()
				tb.Cleanup(func() {
					_ = cmd.Process.Kill()
					<-exited
					if tb.Failed() {
						tb.Logf("mosquitto output:\n%s", out.String())
					}
				})
				return &mosquitto{Addr: addr, Out: out}
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = cmd.Process.Kill()
		<-exited
		tb.Fatalf("mosquitto did not listen on %s:\n%s", addr, out.String())
	retry:
	}
}

// stack is a gateway in front of a mosquitto broker.
type stack struct {
	Broker  *mosquitto
	Gateway *gateway.Gateway
	Manager *auth.Manager
	Addr    string // the gateway's client address
}

// startStack starts mosquitto and a gateway in front of it; cfg may
// change the gateway's Config before New.
func startStack(tb testing.TB, ac auth.Config, brokerConf string, cfg func(*gateway.Config)) *stack {
	tb.Helper()
	b := startMosquitto(tb, brokerConf)
	if ac.Logger == nil {
		ac.Logger = testLogger(tb)
	}
	m, err := auth.NewManager(ac)
	require.NoError(tb, err)
	gc := gateway.Config{Manager: m, Upstream: b.Addr, Logger: testLogger(tb)}
	if cfg != nil {
		cfg(&gc)
	}
	g, err := gateway.New(gc)
	require.NoError(tb, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	served := make(chan error, 1)
	go func() { served <- g.Serve(ln) }()
	tb.Cleanup(func() {
		require.NoError(tb, g.Close())
		require.ErrorIs(tb, <-served, gateway.ErrClosed)
		require.Zero(tb, g.Len())
		require.Zero(tb, m.Len())
		require.Zero(tb, g.Stats().Clients, "the connection layer still holds clients")
		// A connection refused before its CONNECT (a TLS handshake that
		// failed, say) leaves the gateway's books when its handler returns
		// and the connection layer's a moment after: Close does not wait
		// for that last step.
		require.Eventually(tb, func() bool { return g.Stats().Pending == 0 }, 5*time.Second, 10*time.Millisecond,
			"the connection layer still holds pending connections")
	})
	return &stack{Broker: b, Gateway: g, Manager: m, Addr: ln.Addr().String()}
}

func testLogger(tb testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// readableDir is a temporary directory that mosquitto can read after it
// drops root privileges to its own user.
func readableDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	require.NoError(tb, os.Chmod(filepath.Dir(dir), 0o755))
	require.NoError(tb, os.Chmod(dir, 0o755))
	return dir
}
