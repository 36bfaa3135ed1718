package gateway_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/gateway"
	"github.com/mqttauth/mqttauth/internal/freeport"
)

// upstreamSecret is the password the gateway sends the 3.1.1 brokers
// (Config.UpstreamPassword): RabbitMQ refuses a user name without one.
const upstreamSecret = "gateway-secret"

// rabbitmq is a RabbitMQ node with rabbitmq_mqtt (MQTT 3.1.1 only) whose
// users are checked by an HTTP auth backend the test runs: it accepts any
// user name with upstreamSecret, and records the user names it saw.
type rabbitmq struct {
	Addr string

	mu    sync.Mutex
	users map[string]bool
}

// Saw reports whether the broker authenticated user.
func (r *rabbitmq) Saw(user string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.users[user]
}

// rabbitServer is the rabbitmq-server of Debian's package.
const rabbitServer = "/usr/lib/rabbitmq/lib/rabbitmq_server-3.10.8/sbin/rabbitmq-server"

// startRabbitMQ runs a RabbitMQ node from a scratch directory on loopback
// ports (its own epmd, MQTT listener, no AMQP listener) and stops it at
// cleanup. It takes 10 to 30 s.
func startRabbitMQ(tb testing.TB) *rabbitmq {
	tb.Helper()
	bin := tool(tb, rabbitServer, "rabbitmq-server")
	epmd := tool(tb, "/usr/bin/epmd", "erlang-base")
	r := &rabbitmq{users: make(map[string]bool)}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_ = req.ParseForm()
		if req.URL.Path == "/user" {
			if req.PostForm.Get("password") != upstreamSecret {
				_, _ = w.Write([]byte("deny"))
				return
			}
			r.mu.Lock()
			r.users[req.PostForm.Get("username")] = true
			r.mu.Unlock()
		}
		_, _ = w.Write([]byte("allow"))
	}))
	tb.Cleanup(backend.Close)

	dir := tb.TempDir()
	ports := make([]int, 3) // mqtt, epmd, distribution
	for i := range ports {
		p, err := freeport.Loopback()
		require.NoError(tb, err)
		ports[i] = p
	}
	conf := fmt.Sprintf(`listeners.tcp = none
mqtt.listeners.tcp.default = 127.0.0.1:%d
mqtt.allow_anonymous = false
auth_backends.1 = http
auth_http.http_method = post
auth_http.user_path = %[2]s/user
auth_http.vhost_path = %[2]s/vhost
auth_http.resource_path = %[2]s/resource
auth_http.topic_path = %[2]s/topic
loopback_users = none
log.console = true
log.console.level = warning
`, ports[0], backend.URL)
	require.NoError(tb, os.WriteFile(filepath.Join(dir, "rabbitmq.conf"), []byte(conf), 0o644))
	require.NoError(tb, os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[rabbitmq_mqtt,rabbitmq_auth_backend_http].\n"), 0o644))
	for _, d := range []string{"home", "mnesia", "log"} {
		require.NoError(tb, os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	env := append(os.Environ(),
		"HOME="+filepath.Join(dir, "home"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_NODENAME=mqttauth"+strconv.Itoa(ports[0])+"@localhost",
		"ERL_EPMD_PORT="+strconv.Itoa(ports[1]),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"RABBITMQ_DIST_PORT="+strconv.Itoa(ports[2]),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
	)
	out := &syncBuffer{}
	start := func(name string, args ...string) (*exec.Cmd, chan struct{}) {
		cmd := exec.Command(name, args...)
		cmd.Env, cmd.Dir = env, dir
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the node's helpers die with it
		require.NoError(tb, cmd.Start())
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		tb.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		})
		return cmd, done
	}
	// An epmd of our own in the foreground, so that none outlives the test.
	start(epmd, "-port", strconv.Itoa(ports[1]), "-address", "127.0.0.1")
	_, exited := start(bin)
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			tb.Fatalf("rabbitmq-server exited:\n%s", out.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", r.Addr, time.Second); err == nil {
			_ = c.Close()
			tb.Cleanup(func() {
				if tb.Failed() {
					tb.Logf("rabbitmq-server output:\n%s", out.String())
				}
			})
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("rabbitmq-server did not listen on %s:\n%s", r.Addr, out.String())
	return nil
}

// startGateway starts a gateway in front of upstream speaking MQTT 3.1.1
// to it (with upstreamSecret); cfg may change its Config before New.
func startGateway(tb testing.TB, ac auth.Config, upstream string, cfg func(*gateway.Config)) *stack {
	tb.Helper()
	if ac.Logger == nil {
		ac.Logger = testLogger(tb)
	}
	m, err := auth.NewManager(ac)
	require.NoError(tb, err)
	gc := gateway.Config{Manager: m, Upstream: upstream, Logger: testLogger(tb),
		UpstreamProtocol: gateway.UpstreamV311, UpstreamPassword: []byte(upstreamSecret)}
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
	})
	return &stack{Gateway: g, Manager: m, Addr: ln.Addr().String()}
}
