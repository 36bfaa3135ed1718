package gateway_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"
	"github.com/xdg-go/scram"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
	"github.com/mqttauth/mqttauth/gateway"
	"github.com/mqttauth/mqttauth/internal/freeport"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
	"github.com/mqttauth/mqttauth/scramauth"
)

// upstreamSecret is the password the gateway sends the 3.1.1 brokers
// (Config.UpstreamPassword): RabbitMQ refuses a user name without one.
const upstreamSecret = "gateway-secret"

// rabbitmq is a RabbitMQ node with rabbitmq_mqtt (MQTT 3.1.1 only) whose
// users are checked by an HTTP auth backend the test runs: it accepts any
// user name with upstreamSecret, and records the user names it saw; it
// denies topics with "broker-denied" in them.
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
		if req.URL.Path == "/topic" && strings.Contains(req.PostForm.Get("routing_key"), "broker-denied") {
			_, _ = w.Write([]byte("deny"))
			return
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
	// A colon in an MQTT user name is RabbitMQ's vhost separator unless
	// told otherwise: K8S-SAT identities have colons.
	require.NoError(tb, os.WriteFile(filepath.Join(dir, "advanced.config"), []byte("[{rabbitmq_mqtt, [{ignore_colons_in_username, true}]}].\n"), 0o644))
	require.NoError(tb, os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[rabbitmq_mqtt,rabbitmq_auth_backend_http].\n"), 0o644))
	for _, d := range []string{"home", "mnesia", "log"} {
		require.NoError(tb, os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	env := append(os.Environ(),
		"HOME="+filepath.Join(dir, "home"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
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
	for retries := 0; time.Now().Before(deadline); {
		select {
		case <-exited:
			// The Erlang VM aborts at boot when the virtual machine's
			// monotonic clock steps back ("Monotonic time stepped
			// backwards!", seen on loaded shared CI machines): start it
			// again, twice at most; anything else fails the test.
			if retries < 2 && strings.Contains(out.String(), "Monotonic time stepped backwards") {
				retries++
				tb.Logf("rabbitmq-server aborted on a clock step; starting it again (%d)", retries)
				_, exited = start(bin)
				continue
			}
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

// TestRabbitMQ runs MQTT 5 clients through the gateway speaking MQTT
// 3.1.1 (Config.UpstreamProtocol) to RabbitMQ's rabbitmq_mqtt, which
// knows neither MQTT 5 nor AUTH packets: the conformance suite, the
// broker refusing a subscription, and SCRAM and K8S-SAT authentication with
// re-authentication. One node serves every subtest (it takes seconds to
// start); each has its own gateway.
func TestRabbitMQ(t *testing.T) {
	r := startRabbitMQ(t)

	t.Run("broker_refuses_subscription_disconnect_0x80", func(t *testing.T) {
		s := startGateway(t, passwordAuth(), r.Addr, nil)
		c, _ := v5Dial(t, s.Addr, pw("rmq-suback", "bob"))
		c.send(&packets.Subscribe{PacketID: 3, Properties: &packets.Properties{}, Subscriptions: []packets.SubOptions{
			{Topic: "ok/allowed", QoS: 1}, {Topic: "ok/broker-denied/x", QoS: 1}}})
		// RabbitMQ 3.10 answers a subscription its authorization refuses
		// by closing the connection (no SUBACK 0x80): the gateway tells
		// the MQTT 5 client so, and never makes a SUBACK up.
		p := c.read(10 * time.Second)
		dis, ok := p.Content.(*packets.Disconnect)
		require.True(t, ok, "want DISCONNECT, got %v", p)
		require.Equal(t, byte(0x80), dis.ReasonCode)
		require.Contains(t, dis.Properties.ReasonString, "broker closed")
	})

	t.Run("coordinated_takeover_0x8E", func(t *testing.T) {
		ga := coordinated(t, allowAll(), r.Addr)
		gb := coordinated(t, allowAll(), r.Addr)
		require.True(t, r.Saw(gateway.DefaultCoordinationUsername), "the control connection's user")
		// RabbitMQ's topic exchange matches "#" with "$" topics: the
		// gateway withholds the notices from such a subscriber.
		sub, _ := v5Dial(t, ga.Addr, pw("rmq-hash", "bob"))
		sub.send(&packets.Subscribe{PacketID: 1, Properties: &packets.Properties{}, Subscriptions: []packets.SubOptions{{Topic: "#", QoS: 1}}})
		require.Equal(t, []byte{1}, sub.read(10*time.Second).Content.(*packets.Suback).Reasons)

		requireTakenOver(t, ga.Addr, gb.Addr, "rmq-twin")
		sub.silent(500 * time.Millisecond)
	})

	v311Suite(t, r.Addr, r.Saw)
}

// v311Suite runs, through gateways speaking MQTT 3.1.1 to the broker at
// addr, the conformance suite for MQTT 5 clients and SCRAM and K8S-SAT
// with re-authentication; saw, when not nil, reports whether the broker
// authenticated a user name (the identity the gateway sent).
func v311Suite(t *testing.T, addr string, saw func(user string) bool) {
	sawUser := func(t *testing.T, user string) {
		if saw != nil {
			require.True(t, saw(user), "the broker never saw the identity %q", user)
		}
	}
	t.Run("conformance", func(t *testing.T) {
		conformance.Run(t, func(tb testing.TB, su conformance.Setup) conformance.Broker {
			s := startGateway(tb, su.Auth, addr, func(gc *gateway.Config) { gc.Limits, gc.TLS = su.Limits, su.TLS })
			return conformance.Broker{Addr: s.Addr, Manager: s.Manager, Shutdown: s.Gateway.Shutdown,
				Drain: s.Gateway.Drain, Stop: func() { _ = s.Gateway.Close() }}
		})
		sawUser(t, conformance.UserAlice)
	})

	t.Run("scram_multistep_and_reauth", func(t *testing.T) {
		cred, err := scramauth.NewCredential(scramauth.SHA256, "pencil", 4096)
		require.NoError(t, err)
		users, err := scramauth.NewUsers(&scramauth.File{Users: []scramauth.User{
			{Name: "scram-alice", Credentials: map[scramauth.Mechanism]scramauth.Credential{scramauth.SHA256: cred}}}})
		require.NoError(t, err)
		authn, err := scramauth.New(scramauth.Config{Store: users})
		require.NoError(t, err)
		s := startGateway(t, auth.Config{Authenticator: authn, Authorizer: auth.AllowAuthenticated}, addr, nil)

		h := &scramAuther{t: t, user: "scram-alice", password: "pencil"}
		c, msgs := scramDial(t, s.Addr, "rmq-scram", h)
		require.Equal(t, 1, h.challenges(), "CONNECT: one server-first-message answered, server-final verified")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err = c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "scram/t", QoS: 1}}})
		require.NoError(t, err)

		// Re-authentication: AUTH 0x19, AUTH 0x18, AUTH 0x18, AUTH 0x00,
		// none of which RabbitMQ sees.
		resp, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19,
			Properties: &paho.AuthProperties{AuthMethod: "SCRAM-SHA-256", AuthData: h.first()}})
		require.NoError(t, err)
		require.True(t, resp.Success, "re-authentication: %+v", resp)
		// paho.golang v0.23 drops the Authentication Data of AUTH 0x00
		// (AuthResponseFromPacketAuth): the server-final-message of a
		// re-authentication cannot be checked here; that the client
		// answered a second server-first-message can.
		require.Equal(t, 2, h.challenges())

		pr, err := c.Publish(ctx, &paho.Publish{Topic: "scram/t", QoS: 1, Payload: []byte("after re-auth")})
		require.NoError(t, err)
		require.Equal(t, byte(0), pr.ReasonCode)
		select {
		case m := <-msgs:
			require.Equal(t, "after re-auth", string(m.Payload))
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery through RabbitMQ")
		}
		sawUser(t, "scram-alice")

		// A wrong password fails the exchange at the proof.
		bad := &scramAuther{t: t, user: "scram-alice", password: "wrong"}
		conn, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
		require.NoError(t, err)
		bc := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), AuthHandler: bad})
		ca, err := bc.Connect(ctx, &paho.Connect{ClientID: "rmq-scram-bad", CleanStart: true, KeepAlive: 30,
			Properties: &paho.ConnectProperties{AuthMethod: "SCRAM-SHA-256", AuthData: bad.first()}})
		require.Error(t, err)
		require.NotNil(t, ca)
		require.Equal(t, byte(0x87), ca.ReasonCode)
		<-bc.Done()
	})

	t.Run("k8s_sat_and_reauth", func(t *testing.T) {
		api := sattest.NewServer(t, sattest.Options{})
		api.AddServiceAccount("factory", "robot", map[string]string{"aio-broker-auth/line": "3"})
		sat, err := satauth.New(context.Background(), api.Config("aio-mq"))
		require.NoError(t, err)
		t.Cleanup(sat.Close)
		s := startGateway(t, auth.Config{Authenticator: auth.Chain{sat}, Authorizer: auth.AllowAuthenticated}, addr, nil)
		token := func() []byte {
			return []byte(api.Token("factory", "robot", sattest.TokenOptions{Audiences: []string{"aio-mq"}}))
		}
		cp := &paho.Connect{ClientID: "rmq-sat", CleanStart: true,
			Properties: &paho.ConnectProperties{AuthMethod: "K8S-SAT", AuthData: token()}}
		c, ca, err := conformance.Dial(t, s.Addr, cp, nil)
		require.NoError(t, err)
		require.Equal(t, "K8S-SAT", ca.Properties.AuthMethod)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err = c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "sat/t", QoS: 1}}})
		require.NoError(t, err)
		resp, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19,
			Properties: &paho.AuthProperties{AuthMethod: "K8S-SAT", AuthData: token()}})
		require.NoError(t, err)
		require.True(t, resp.Success, "re-authentication: %+v", resp)
		_, err = c.Publish(ctx, &paho.Publish{Topic: "sat/t", QoS: 1, Payload: []byte("robot")})
		require.NoError(t, err)
		select {
		case m := <-c.Messages:
			require.Equal(t, "robot", string(m.Payload))
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery through RabbitMQ")
		}
		sawUser(t, "system:serviceaccount:factory:robot")

		// A token for another audience is refused before RabbitMQ is asked.
		bad := []byte(api.Token("factory", "robot", sattest.TokenOptions{Audiences: []string{"other"}}))
		_, ca, err = conformance.Dial(t, s.Addr, &paho.Connect{ClientID: "rmq-sat-bad", CleanStart: true,
			Properties: &paho.ConnectProperties{AuthMethod: "K8S-SAT", AuthData: bad}}, nil)
		require.Error(t, err)
		require.Equal(t, byte(0x87), ca.ReasonCode)
	})
}

// scramAuther is a SCRAM-SHA-256 client as a paho.Auther (xdg-go/scram's
// client conversation): first starts an exchange, Authenticate answers the
// server-first-message, final verifies the server-final-message of CONNACK.
type scramAuther struct {
	t              *testing.T
	user, password string

	mu    sync.Mutex
	conv  *scram.ClientConversation
	steps int
}

// first starts a conversation and returns the client-first-message.
func (a *scramAuther) first() []byte {
	c, err := scram.SHA256.NewClient(a.user, a.password, "")
	require.NoError(a.t, err)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conv = c.NewConversation()
	msg, err := a.conv.Step("")
	require.NoError(a.t, err)
	return []byte(msg)
}

// Authenticate answers the server-first-message (AUTH 0x18).
func (a *scramAuther) Authenticate(p *paho.Auth) *paho.Auth {
	a.mu.Lock()
	defer a.mu.Unlock()
	var data []byte
	if p.Properties != nil {
		data = p.Properties.AuthData
	}
	a.steps++
	msg, err := a.conv.Step(string(data))
	if err != nil {
		msg = ""
	}
	return &paho.Auth{ReasonCode: 0x18, Properties: &paho.AuthProperties{AuthMethod: "SCRAM-SHA-256", AuthData: []byte(msg)}}
}

// Authenticated is called on a successful CONNACK.
func (a *scramAuther) Authenticated() {}

// final verifies the server-final-message.
func (a *scramAuther) final(data []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err := a.conv.Step(string(data))
	require.NoError(a.t, err)
	require.True(a.t, a.conv.Valid(), "the server's signature")
}

// challenges returns how many server-first-messages were answered.
func (a *scramAuther) challenges() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.steps
}

// scramDial connects with SCRAM-SHA-256 and verifies the server.
func scramDial(t *testing.T, addr, id string, h *scramAuther) (*paho.Client, chan *paho.Publish) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	msgs := make(chan *paho.Publish, 16)
	c := paho.NewClient(paho.ClientConfig{
		Conn:        packets.NewThreadSafeConn(conn),
		AuthHandler: h,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			msgs <- pr.Packet
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{AuthMethod: "SCRAM-SHA-256", AuthData: h.first()}})
	require.NoError(t, err)
	h.final(ca.Properties.AuthData)
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		<-c.Done()
	})
	return c, msgs
}
