package gateway_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/internal/freeport"
)

// natsVersion is the nats-server the tests build (its MQTT listener speaks
// MQTT 3.1.1 only).
const natsVersion = "v2.15.3"

// natsServer returns the stock nats-server binary: $MQTTAUTH_NATS_BIN, or
// the one cached in ${XDG_CACHE_HOME:-~/.cache}/mqttauth/nats/VERSION,
// built there from the module proxy on first use (go install with
// GOWORK=off, outside this repository's modules: broker modules stay out
// of the root module). Without the go command or the proxy the test is
// skipped, unless CI=true.
func natsServer(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("MQTTAUTH_NATS_BIN"); p != "" {
		return p
	}
	cache, err := os.UserCacheDir()
	require.NoError(tb, err)
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		cache = x
	}
	dir := filepath.Join(cache, "mqttauth", "nats", natsVersion)
	bin := filepath.Join(dir, "nats-server")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "install", "github.com/nats-io/nats-server/v2@"+natsVersion)
	cmd.Dir = tb.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("building nats-server %s: %v\n%s", natsVersion, err, out)
		}
		tb.Skipf("nats-server %s could not be built (%v): set MQTTAUTH_NATS_BIN", natsVersion, err)
	}
	return bin
}

// startNATS runs a single nats-server with JetStream (the MQTT listener
// keeps sessions and retained messages in it) and the MQTT listener on
// loopback, no authentication of its own, and stops it at cleanup.
func startNATS(tb testing.TB) string {
	tb.Helper()
	bin := natsServer(tb)
	dir := tb.TempDir()
	ports := make([]int, 2)
	for i := range ports {
		p, err := freeport.Loopback()
		require.NoError(tb, err)
		ports[i] = p
	}
	conf := fmt.Sprintf(`server_name: mqttauth-test
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
mqtt { listen: 127.0.0.1:%d }
`, ports[0], filepath.Join(dir, "js"), ports[1])
	path := filepath.Join(dir, "nats.conf")
	require.NoError(tb, os.WriteFile(path, []byte(conf), 0o644))
	out := &syncBuffer{}
	cmd := exec.Command(bin, "-c", path)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(tb, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if tb.Failed() {
			tb.Logf("nats-server output:\n%s", out.String())
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			tb.Fatalf("nats-server exited:\n%s", out.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			return addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("nats-server did not listen on %s:\n%s", addr, out.String())
	return ""
}

// TestNATS runs MQTT 5 clients through the gateway speaking MQTT 3.1.1 to
// NATS's MQTT listener (the stock nats-server, JetStream on): the
// conformance suite, SCRAM and K8S-SAT with re-authentication.
func TestNATS(t *testing.T) {
	v311Suite(t, startNATS(t), nil)
}
