package gateway_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
// loopback, no authentication of its own, and stops it at cleanup. It
// returns the MQTT listener's address.
func startNATS(tb testing.TB) string {
	tb.Helper()
	return startNATSNodes(tb, 1)[0]
}

// startNATSNodes runs n nats-servers (a cluster with routes on loopback
// when n > 1, the MQTT streams replicated on every node) and returns their
// MQTT addresses once each accepts an MQTT 3.1.1 CONNECT.
func startNATSNodes(tb testing.TB, n int) []string {
	tb.Helper()
	bin := natsServer(tb)
	ports := make([][3]int, n) // client, mqtt, route
	for i := range ports {
		for j := range ports[i] {
			p, err := freeport.Loopback()
			require.NoError(tb, err)
			ports[i][j] = p
		}
	}
	addrs := make([]string, n)
	exits := make([]chan struct{}, n)
	for i := range n {
		dir := tb.TempDir()
		conf := fmt.Sprintf("server_name: n%d\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\n", i, ports[i][0], filepath.Join(dir, "js"))
		if n > 1 {
			routes := make([]string, n)
			for j := range n {
				routes[j] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[j][2])
			}
			conf += fmt.Sprintf("cluster { name: mqttauth, listen: 127.0.0.1:%d, routes: [%s] }\n", ports[i][2], strings.Join(routes, ", "))
			conf += fmt.Sprintf("mqtt { listen: 127.0.0.1:%d, stream_replicas: %d }\n", ports[i][1], n)
		} else {
			conf += fmt.Sprintf("mqtt { listen: 127.0.0.1:%d }\n", ports[i][1])
		}
		path := filepath.Join(dir, "nats.conf")
		require.NoError(tb, os.WriteFile(path, []byte(conf), 0o644))
		out := &syncBuffer{}
		cmd := exec.Command(bin, "-c", path)
		cmd.Stdout, cmd.Stderr = out, out
		require.NoError(tb, cmd.Start())
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		exits[i] = exited
		tb.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
			if tb.Failed() {
				tb.Logf("nats-server n%d output:\n%s", i, out.String())
			}
		})
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i][1]))
	}
	// Ready when an MQTT CONNECT gets CONNACK 0 on every node (a cluster
	// elects its JetStream leader first).
	deadline := time.Now().Add(60 * time.Second)
	for i, addr := range addrs {
		for !mqttReady(addr) {
			select {
			case <-exits[i]:
				tb.Fatalf("nats-server n%d exited", i)
			default:
			}
			if time.Now().After(deadline) {
				tb.Fatalf("nats-server at %s did not accept MQTT", addr)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return addrs
}

// mqttReady reports whether addr answers an MQTT 3.1.1 CONNECT with
// CONNACK 0.
func mqttReady(addr string) bool {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	id := "ready-probe"
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, byte(len(id))}, id...)
	if _, err := nc.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		return false
	}
	var ca [4]byte
	if _, err := io.ReadFull(nc, ca[:]); err != nil {
		return false
	}
	_, _ = nc.Write([]byte{0xE0, 0})
	return ca[0] == 0x20 && ca[3] == 0
}

// TestNATS runs MQTT 5 clients through the gateway speaking MQTT 3.1.1 to
// NATS's MQTT listener (the stock nats-server, JetStream on): the
// conformance suite, SCRAM and K8S-SAT with re-authentication.
func TestNATS(t *testing.T) {
	v311Suite(t, startNATS(t), nil)
}
