package sat_test

// satauth's watch end to end: a mochi broker in process with the mqttauth
// hook, satauth against a REAL kube-apiserver (satauth/kubetest), and
// connected paho.golang and mosquitto_sub clients. Deleting a client's
// ServiceAccount or the pod its token is bound to disconnects it within
// seconds; changing an annotation re-authorizes its publishes.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/kubetest"
)

// groupTopics allows Connect to principals with a "group" attribute and
// Publish and Subscribe under "g/GROUP/".
var groupTopics = auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
	if p == nil {
		return auth.Deny
	}
	g, ok := p.Attribute("group")
	if !ok {
		return auth.Deny
	}
	if a.Kind == auth.Connect || strings.HasPrefix(a.Topic, "g/"+g+"/") {
		return auth.Allow("group=" + g)
	}
	return auth.Deny
})

// watchBroker is a mochi broker with satauth following kube-apiserver.
type watchBroker struct {
	env  *kubetest.Env
	a    *satauth.Authenticator
	m    *auth.Manager
	addr string
}

var (
	brokerSetupOnce sync.Once
	brokerSetupErr  error
)

func startWatchBroker(tb testing.TB) *watchBroker {
	tb.Helper()
	env := kubetest.Require(tb)
	brokerSetupOnce.Do(func() {
		if brokerSetupErr = env.CreateServiceAccount("watch-broker", nil); brokerSetupErr == nil {
			brokerSetupErr = env.BindBroker("watch-broker")
		}
	})
	require.NoError(tb, brokerSetupErr)
	log := slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := satauth.New(context.Background(), satauth.Config{
		Audiences: []string{"aio-mq"},
		APIServer: env.URL,
		CAFile:    env.CAFile,
		TokenFile: env.TokenFile(tb, "watch-broker", nil, 3600),
		Logger:    log,
	})
	require.NoError(tb, err)
	tb.Cleanup(a.Close)
	require.NoError(tb, a.CheckReady(context.Background()))
	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{a}, Authorizer: groupTopics, Logger: log})
	require.NoError(tb, err)
	stop, err := m.Watch(a.Watch(time.Minute))
	require.NoError(tb, err)
	tb.Cleanup(stop)

	srv := mqtt.New(&mqtt.Options{Logger: mochi.ServerLogger(slog.DiscardHandler)})
	_, err = mochi.Attach(srv, mochi.Config{Manager: m, Logger: log})
	require.NoError(tb, err)
	addr := proc.FreeAddr(tb)
	require.NoError(tb, srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})))
	require.NoError(tb, srv.Serve())
	tb.Cleanup(func() { _ = srv.Close() })
	return &watchBroker{env: env, a: a, m: m, addr: addr}
}

// tbWriter logs through the test, so the broker's records show on failure.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// satClient is a connected paho.golang client.
type satClient struct {
	*paho.Client
	disconnects chan *paho.Disconnect
}

// nopAuther satisfies paho: a success CONNACK carries the method.
type nopAuther struct{}

func (nopAuther) Authenticate(*paho.Auth) *paho.Auth { return nil }
func (nopAuther) Authenticated()                     {}

func (b *watchBroker) dial(tb testing.TB, id, token string) *satClient {
	tb.Helper()
	conn, err := net.Dial("tcp", b.addr)
	require.NoError(tb, err)
	c := &satClient{disconnects: make(chan *paho.Disconnect, 4)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn:               packets.NewThreadSafeConn(conn),
		AuthHandler:        nopAuther{},
		OnServerDisconnect: func(d *paho.Disconnect) { c.disconnects <- d },
		OnClientError:      func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: satauth.Method, AuthData: []byte(token)}})
	require.NoError(tb, err)
	require.Equal(tb, byte(0), ca.ReasonCode)
	tb.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		conn.Close()
	})
	return c
}

func (c *satClient) waitDisconnect(tb testing.TB, within time.Duration) *paho.Disconnect {
	tb.Helper()
	select {
	case d := <-c.disconnects:
		return d
	case <-time.After(within):
		tb.Fatalf("no DISCONNECT within %v", within)
		return nil
	}
}

func (c *satClient) publish(tb testing.TB, topic string) byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x")})
	if r == nil {
		require.NoError(tb, err)
	}
	return r.ReasonCode
}

func TestSATWatch(t *testing.T) {
	b := startWatchBroker(t)
	env := b.env

	t.Run("deleted_account_disconnects_paho", func(t *testing.T) {
		require.NoError(t, env.CreateServiceAccount("watch-paho", map[string]string{"aio-broker-auth/group": "a"}))
		c := b.dial(t, "watch-paho", env.Token(t, "watch-paho", []string{"aio-mq"}, 600))
		start := time.Now()
		require.NoError(t, env.DeleteServiceAccount("watch-paho"))
		d := c.waitDisconnect(t, 10*time.Second)
		t.Logf("DELETE serviceaccount -> DISCONNECT 0x%02x in %v", d.ReasonCode, time.Since(start))
		require.Equal(t, byte(0x87), d.ReasonCode)
	})

	t.Run("deleted_account_disconnects_mosquitto_sub", func(t *testing.T) {
		sub := proc.RequireTool(t, "mosquitto_sub", "mosquitto-clients")
		require.NoError(t, env.CreateServiceAccount("watch-mosq", map[string]string{"aio-broker-auth/group": "a"}))
		host, port, _ := net.SplitHostPort(b.addr)
		live := b.m.Len()
		p := proc.Start(t, sub, "-V", "mqttv5", "-h", host, "-p", port, "-d", "-i", "watch-mosq", "-t", "g/a/#",
			"-D", "connect", "authentication-method", satauth.Method,
			"-D", "connect", "authentication-data", env.Token(t, "watch-mosq", []string{"aio-mq"}, 600))
		// mosquitto_sub's output is buffered until it exits: watch the
		// broker's live sessions instead.
		require.Eventually(t, func() bool { return b.m.Len() == live+1 }, 10*time.Second, 10*time.Millisecond)
		start := time.Now()
		require.NoError(t, env.DeleteServiceAccount("watch-mosq"))
		exited, _ := p.Wait(10 * time.Second)
		t.Logf("DELETE serviceaccount -> mosquitto_sub ended in %v:\n%s", time.Since(start), p.Out.String())
		require.True(t, exited, "mosquitto_sub still connected")
		require.Contains(t, p.Out.String(), "received SUBACK")
		require.Contains(t, p.Out.String(), "Received DISCONNECT (135)") // 0x87 Not authorized
		require.NotContains(t, p.Out.String(), "eyJ")
	})

	t.Run("deleted_pod_disconnects_paho", func(t *testing.T) {
		require.NoError(t, env.CreateServiceAccount("watch-podsa", map[string]string{"aio-broker-auth/group": "a"}))
		uid, err := env.CreatePod("watch-pod", "watch-podsa")
		require.NoError(t, err)
		c := b.dial(t, "watch-pod", env.PodToken(t, "watch-podsa", "watch-pod", uid, []string{"aio-mq"}, 86400))
		start := time.Now()
		require.NoError(t, env.DeletePod("watch-pod"))
		d := c.waitDisconnect(t, 10*time.Second)
		t.Logf("DELETE pod -> DISCONNECT 0x%02x in %v", d.ReasonCode, time.Since(start))
		require.Equal(t, byte(0x87), d.ReasonCode)
	})

	t.Run("changed_annotation_reauthorizes_paho", func(t *testing.T) {
		require.NoError(t, env.CreateServiceAccount("watch-ann", map[string]string{"aio-broker-auth/group": "a"}))
		c := b.dial(t, "watch-ann", env.Token(t, "watch-ann", []string{"aio-mq"}, 600))
		require.Equal(t, byte(0), c.publish(t, "g/a/t"))
		require.Equal(t, byte(0x87), c.publish(t, "g/b/t"))
		g := "b"
		start := time.Now()
		require.NoError(t, env.AnnotateServiceAccount("watch-ann", map[string]*string{"aio-broker-auth/group": &g}))
		require.Eventually(t, func() bool { return c.publish(t, "g/b/t") == 0 }, 10*time.Second, 20*time.Millisecond)
		t.Logf("PATCH annotation -> publish authorized with the new attribute in %v", time.Since(start))
		require.Equal(t, byte(0x87), c.publish(t, "g/a/t"), "the old attribute no longer authorizes")

		start = time.Now()
		require.NoError(t, env.AnnotateServiceAccount("watch-ann", map[string]*string{"aio-broker-auth/group": nil}))
		d := c.waitDisconnect(t, 10*time.Second)
		t.Logf("PATCH annotation (Connect denied) -> DISCONNECT 0x%02x in %v", d.ReasonCode, time.Since(start))
		require.Equal(t, byte(0x87), d.ReasonCode)
	})
}

// BenchmarkSATWatchDelete measures the time from the DELETE of a connected
// client's ServiceAccount to the DISCONNECT that client receives, and
// reports the median over b.N runs.
//
//	go test -run '^$' -bench SATWatchDelete -benchtime 7x ./e2e/sat/
func BenchmarkSATWatchDelete(b *testing.B) {
	br := startWatchBroker(b)
	env := br.env
	var took []time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		name := fmt.Sprintf("bench-del-%d-%d", time.Now().UnixNano(), i)
		require.NoError(b, env.CreateServiceAccount(name, map[string]string{"aio-broker-auth/group": "a"}))
		c := br.dial(b, name, env.Token(b, name, []string{"aio-mq"}, 600))
		b.StartTimer()
		start := time.Now()
		require.NoError(b, env.DeleteServiceAccount(name))
		d := c.waitDisconnect(b, 10*time.Second)
		took = append(took, time.Since(start))
		require.Equal(b, byte(0x87), d.ReasonCode)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
}
