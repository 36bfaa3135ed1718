package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
	"github.com/mqttauth/mqttauth/gateway"
)

// The test users: name → password. A principal's user name is "device-"
// plus the name, which is what the broker must see.
var passwords = map[string]string{"alice": "alice-pw", "bob": "bob-pw"}

// passwordAuth authenticates the users above; its principals may use
// topics under "ok/" only.
func passwordAuth() auth.Config {
	authn := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if !req.HasUsername || req.AuthMethod != "" {
			return auth.Result{}
		}
		if pw, ok := passwords[req.Username]; !ok || pw != string(req.Password) {
			return auth.FailResult(auth.BadUserNameOrPassword, errors.New("test: bad password"))
		}
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Method: "password", Username: "device-" + req.Username}))
	})
	authz := auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
		if a.Kind == auth.Connect || strings.HasPrefix(a.Topic, "ok/") {
			return auth.Allow("test")
		}
		return auth.Deny
	})
	return auth.Config{Authenticator: auth.Chain{authn}, Authorizer: authz}
}

// aclConf makes mosquitto allow the principals' identities, not the
// clients' user names, on ok/# and secret/#: what reaches a subscriber
// proves the broker saw the identity; what does not reach it under
// secret/ proves the gateway denied it.
func aclConf(tb testing.TB) string {
	tb.Helper()
	acl := filepath.Join(readableDir(tb), "acl")
	var b strings.Builder
	for name := range passwords {
		fmt.Fprintf(&b, "user device-%s\ntopic readwrite ok/#\ntopic readwrite secret/#\n\n", name)
	}
	require.NoError(tb, os.WriteFile(acl, []byte(b.String()), 0o644))
	return "acl_file " + acl + "\n"
}

func runTool(tb testing.TB, d time.Duration, bin string, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out)
}

// startTool starts a long-running client and returns a function that waits
// for its exit and returns its output.
func startTool(tb testing.TB, bin string, args ...string) func() string {
	tb.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(tb, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	tb.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	return func() string {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		return out.String()
	}
}

// waitLog waits until the broker's log contains s.
func waitLog(tb testing.TB, b *mosquitto, s string) {
	tb.Helper()
	require.Eventually(tb, func() bool { return strings.Contains(b.Out.String(), s) }, 10*time.Second, 20*time.Millisecond,
		"broker log lacks %q", s)
}

// Debian's mosquitto clients through the gateway to mosquitto, in MQTT 5
// and 3.1.1: the broker sees the identity as user name; denied publishes
// and subscriptions never reach it.
func TestMosquittoClients(t *testing.T) {
	pub := tool(t, "/usr/bin/mosquitto_pub", "mosquitto-clients")
	sub := tool(t, "/usr/bin/mosquitto_sub", "mosquitto-clients")
	s := startStack(t, passwordAuth(), aclConf(t), nil)
	host, port, _ := net.SplitHostPort(s.Addr)
	for _, v := range []string{"mqttv5", "mqttv311"} {
		t.Run(v, func(t *testing.T) {
			base := func(user, pw, id string) []string {
				return []string{"-h", host, "-p", port, "-V", v, "-d", "-i", id, "-u", user, "-P", pw}
			}
			out := runTool(t, 20*time.Second, pub, append(base("alice", "wrong", "bad-"+v), "-t", "ok/x", "-m", "1")...)
			if v == "mqttv5" {
				require.Contains(t, out, "received CONNACK (134)", out) // 0x86
			} else {
				require.Contains(t, out, "received CONNACK (4)", out) // 3.1.1: bad user name or password
			}

			// bob subscribes to ok/v and secret/v: the second is denied
			// by the gateway (the broker would allow it).
			wait := startTool(t, sub, append(base("bob", "bob-pw", "sub-"+v), "-t", "secret/"+v, "-t", "ok/"+v, "-v", "-C", "1", "-W", "15")...)
			waitLog(t, s.Broker, "sub-"+v+" 0 ok/"+v)
			out = runTool(t, 20*time.Second, pub, append(base("alice", "alice-pw", "pub1-"+v), "-q", "1", "-t", "secret/"+v, "-m", "hidden")...)
			require.Contains(t, out, "received CONNACK (0)", out)
			if v == "mqttv5" {
				require.Contains(t, out, "received PUBACK (Mid: 1, RC:135)", out)
			} else {
				require.Contains(t, out, "received PUBACK (Mid: 1, RC:0)", out) // 3.1.1 has no failure code
			}
			require.NotContains(t, s.Broker.Out.String(), "'secret/", "a denied publish reached the broker")
			out = runTool(t, 20*time.Second, pub, append(base("alice", "alice-pw", "pub2-"+v), "-q", "1", "-t", "ok/"+v, "-m", "visible")...)
			require.Contains(t, out, "received PUBACK (Mid: 1", out)
			got := wait()
			if v == "mqttv5" {
				require.Contains(t, got, "Subscribed (mid: 1): 135, 0", got)
			} else {
				require.Contains(t, got, "Subscribed (mid: 1): 128, 0", got)
			}
			require.Contains(t, got, "ok/"+v+" visible")
			require.NotContains(t, got, "hidden")
			// The broker saw the identities, not the claimed user names.
			require.Contains(t, s.Broker.Out.String(), "u'device-alice'")
			require.NotContains(t, s.Broker.Out.String(), "u'alice'")
		})
	}
}

// pahoDial connects a paho client through the gateway with a user name and
// password.
func pahoDial(t *testing.T, addr string, cp *paho.Connect) (*conformance.Client, *paho.Connack) {
	t.Helper()
	c, ca, err := conformance.Dial(t, addr, cp, nil)
	require.NoError(t, err)
	return c, ca
}

func pwConnect(id, user string) *paho.Connect {
	return &paho.Connect{ClientID: id, CleanStart: true, Username: user, UsernameFlag: true,
		Password: []byte(passwords[user]), PasswordFlag: true, KeepAlive: 30}
}

// QoS 1 and 2 flows, allowed and denied, through the gateway.
func TestQoSFlows(t *testing.T) {
	s := startStack(t, passwordAuth(), "", nil)
	subc, _ := pahoDial(t, s.Addr, pwConnect("sub", "bob"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, _ := subc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "ok/q/#", QoS: 2}, {Topic: "secret/#", QoS: 2}, {Topic: "ok/other", QoS: 1}}})
	require.NotNil(t, sa)
	require.Equal(t, []byte{2, 0x87, 1}, sa.Reasons, "broker codes merged with the gateway's 0x87 in order")

	pubc, _ := pahoDial(t, s.Addr, pwConnect("pub", "alice"))
	for _, tc := range []struct {
		topic string
		qos   byte
		want  byte
	}{
		{"ok/q/1", 1, 0x00}, {"ok/q/2", 2, 0x00}, {"secret/1", 1, 0x87}, {"secret/2", 2, 0x87},
	} {
		pr, err := pubc.Publish(ctx, &paho.Publish{Topic: tc.topic, QoS: tc.qos, Payload: []byte(tc.topic)})
		if tc.want == 0 {
			require.NoError(t, err, tc.topic)
		}
		require.NotNil(t, pr, tc.topic)
		require.Equal(t, tc.want, pr.ReasonCode, tc.topic)
	}
	for _, want := range []string{"ok/q/1", "ok/q/2"} {
		select {
		case m := <-subc.Messages:
			require.Equal(t, want, m.Topic)
			require.Equal(t, want, string(m.Payload))
		case <-time.After(5 * time.Second):
			t.Fatalf("no delivery of %s", want)
		}
	}
	select {
	case m := <-subc.Messages:
		t.Fatalf("unexpected delivery of %s", m.Topic)
	case <-time.After(200 * time.Millisecond):
	}
}

// A persistent session (clean start off, session expiry) survives a
// reconnect through the gateway: CONNACK session present, and the QoS 1
// message published meanwhile is delivered.
func TestPersistentSession(t *testing.T) {
	s := startStack(t, passwordAuth(), "", nil)
	expiry := uint32(300)
	cp := func() *paho.Connect {
		cp := pwConnect("persist", "bob")
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
		return cp
	}
	c1, ca := pahoDial(t, s.Addr, cp())
	require.False(t, ca.SessionPresent)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c1.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ok/persist", QoS: 1}}})
	require.NoError(t, err)
	require.NoError(t, c1.Disconnect(&paho.Disconnect{ReasonCode: 0}))
	<-c1.Done()

	pubc, _ := pahoDial(t, s.Addr, pwConnect("pub", "alice"))
	_, err = pubc.Publish(ctx, &paho.Publish{Topic: "ok/persist", QoS: 1, Payload: []byte("while away")})
	require.NoError(t, err)

	c2, ca := pahoDial(t, s.Addr, cp())
	require.True(t, ca.SessionPresent, "the broker's session present flag is relayed")
	select {
	case m := <-c2.Messages:
		require.Equal(t, "while away", string(m.Payload))
	case <-time.After(5 * time.Second):
		t.Fatal("the queued message was not delivered")
	}
}

// When the broker ends the session of the first client because a second
// one connected with its client identifier, the first client's connection
// ends too (mosquitto 2.0.11 closes the old connection without a
// DISCONNECT; a broker's DISCONNECT is relayed, see TestUpstreamDisconnect).
func TestSessionTakenOver(t *testing.T) {
	s := startStack(t, passwordAuth(), "", nil)
	c1, _ := pahoDial(t, s.Addr, pwConnect("same", "bob"))
	_, _ = pahoDial(t, s.Addr, pwConnect("same", "bob"))
	select {
	case <-c1.Done():
	case d := <-c1.Disconnects:
		require.Equal(t, byte(0x8E), d.ReasonCode)
	case <-time.After(5 * time.Second):
		t.Fatal("the first client is still connected")
	}
	require.Eventually(t, func() bool { return s.Gateway.Len() == 1 }, 5*time.Second, 10*time.Millisecond)
}

// A Will whose topic the principal may not publish to is refused at
// CONNECT with 0x87 (0x05 for 3.1.1).
func TestWillDenied(t *testing.T) {
	s := startStack(t, passwordAuth(), "", nil)
	cp := pwConnect("will", "alice")
	cp.WillMessage = &paho.WillMessage{Topic: "secret/will", Payload: []byte("x")}
	_, ca, err := conformance.Dial(t, s.Addr, cp, nil)
	require.Error(t, err)
	require.NotNil(t, ca)
	require.Equal(t, byte(0x87), ca.ReasonCode)

	cp = pwConnect("will2", "alice")
	cp.WillMessage = &paho.WillMessage{Topic: "ok/will", Payload: []byte("x")}
	_, ca, err = conformance.Dial(t, s.Addr, cp, nil)
	require.NoError(t, err)
	require.Equal(t, byte(0), ca.ReasonCode)
}

// rawClient speaks MQTT v5 with hand-made packets, for what paho does not
// do (topic aliases, oversized packets).
type rawClient struct {
	t *testing.T
	c net.Conn
}

func rawDial(t *testing.T, addr, id, user string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	cp := packets.NewControlPacket(packets.CONNECT)
	cc := cp.Content.(*packets.Connect)
	cc.ClientID, cc.CleanStart, cc.KeepAlive = id, true, 30
	cc.Username, cc.UsernameFlag = user, true
	cc.Password, cc.PasswordFlag = []byte(passwords[user]), true
	_, err = cp.WriteTo(c)
	require.NoError(t, err)
	r := &rawClient{t: t, c: c}
	ca := r.read()
	require.Equal(t, packets.CONNACK, ca.Type)
	require.Equal(t, byte(0), ca.Content.(*packets.Connack).ReasonCode)
	return r
}

// rawConnected sends an MQTT 5 CONNECT as id (no credentials: the
// certificate of an mTLS conn authenticates) on conn and requires a
// CONNACK.
func rawConnected(t *testing.T, conn net.Conn, id string) *rawClient {
	t.Helper()
	r := &rawClient{t: t, c: conn}
	cp := packets.NewControlPacket(packets.CONNECT)
	cp.Content.(*packets.Connect).ClientID = id
	_, err := cp.WriteTo(conn)
	require.NoError(t, err)
	require.Equal(t, packets.CONNACK, r.read().Type)
	return r
}

func (r *rawClient) read() *packets.ControlPacket {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := packets.ReadPacket(r.c)
	require.NoError(r.t, err)
	return p
}

func (r *rawClient) publish(topic string, alias uint16, qos byte, id uint16, payload string) {
	r.t.Helper()
	p := &packets.Publish{Topic: topic, QoS: qos, PacketID: id, Payload: []byte(payload), Properties: &packets.Properties{}}
	if alias != 0 {
		p.Properties.TopicAlias = &alias
	}
	_, err := p.WriteTo(r.c)
	require.NoError(r.t, err)
}

// Topic aliases from the client are resolved before authorization: an
// alias set on an allowed topic cannot carry a denied one, a denied topic
// cannot hide behind an alias, and the broker receives full topic names.
func TestTopicAliases(t *testing.T) {
	s := startStack(t, passwordAuth(), "", nil)
	subc, _ := pahoDial(t, s.Addr, pwConnect("sub", "bob"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := subc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ok/#", QoS: 1}}})
	require.NoError(t, err)

	r := rawDial(t, s.Addr, "aliaser", "alice")
	r.publish("ok/a", 1, 1, 1, "one") // sets alias 1
	require.Equal(t, packets.PUBACK, r.read().Type)
	r.publish("", 1, 1, 2, "two") // uses alias 1 → ok/a
	require.Equal(t, packets.PUBACK, r.read().Type)
	r.publish("secret/x", 2, 1, 3, "three") // alias 2 → denied topic
	ack := r.read()
	require.Equal(t, byte(0x87), ack.Content.(*packets.Puback).ReasonCode)
	r.publish("", 2, 1, 4, "four") // alias 2 still means secret/x
	ack = r.read()
	require.Equal(t, byte(0x87), ack.Content.(*packets.Puback).ReasonCode)

	for _, want := range []string{"one", "two"} {
		select {
		case m := <-subc.Messages:
			require.Equal(t, "ok/a", m.Topic)
			require.Equal(t, want, string(m.Payload))
		case <-time.After(5 * time.Second):
			t.Fatalf("no delivery of %s", want)
		}
	}

	// An unknown alias is a Protocol Error; an alias above the maximum
	// announced in CONNACK is 0x94.
	r.publish("", 100, 0, 0, "x")
	d := r.read()
	require.Equal(t, packets.DISCONNECT, d.Type)
	require.Equal(t, byte(0x94), d.Content.(*packets.Disconnect).ReasonCode)
	r2 := rawDial(t, s.Addr, "aliaser2", "alice")
	r2.publish("", 3, 0, 0, "x")
	d = r2.read()
	require.Equal(t, byte(0x82), d.Content.(*packets.Disconnect).ReasonCode)
}

// A packet that declares more than the maximum packet size is refused with
// DISCONNECT 0x95 before it is read.
func TestPacketTooLarge(t *testing.T) {
	s := startStack(t, passwordAuth(), "", func(c *gateway.Config) { c.Limits.MaxPacketSize = 1024 })
	r := rawDial(t, s.Addr, "big", "alice")
	// PUBLISH QoS 0 declaring 200 MB, of which nothing follows.
	_, err := r.c.Write([]byte{0x30, 0x80, 0x80, 0x80, 0x60})
	require.NoError(t, err)
	d := r.read()
	require.Equal(t, packets.DISCONNECT, d.Type)
	require.Equal(t, byte(0x95), d.Content.(*packets.Disconnect).ReasonCode)
}

// connect311 sends an MQTT 3.1.1 CONNECT with a user name and password and
// returns the connection and the CONNACK's return code.
func connect311(t *testing.T, addr, id, user, pw string) (net.Conn, byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	body := append(str("MQTT"), 4, 0xC2, 0, 30) // level 4; user name, password, clean session
	body = append(body, str(id)...)
	body = append(body, str(user)...)
	body = append(body, str(pw)...)
	_, err = c.Write(append([]byte{0x10, byte(len(body))}, body...))
	require.NoError(t, err)
	ack := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadFull(c, ack)
	require.NoError(t, err)
	require.Equal(t, []byte{0x20, 2}, ack[:2], "a 3.1.1 CONNACK")
	return c, ack[3]
}

// MQTT 3.1.1: a denied QoS 2 publish completes with PUBREC and, for the
// client's PUBREL, PUBCOMP from the gateway (3.1.1 has no failure code);
// the broker never sees it. A broker that cannot be reached is CONNACK
// return code 3 (server unavailable).
func TestMQTT311DeniedQoS2(t *testing.T) {
	s := startStack(t, passwordAuth(), "", nil)
	c, rc := connect311(t, s.Addr, "v311", "alice", "alice-pw")
	require.Zero(t, rc)
	_, err := c.Write([]byte{0x34, 13, 0, 8, 's', 'e', 'c', 'r', 'e', 't', '/', 'x', 0, 7, 'p'}) // QoS 2, id 7
	require.NoError(t, err)
	got := make([]byte, 4)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, []byte{0x50, 2, 0, 7}, got, "PUBREC for id 7")
	_, err = c.Write([]byte{0x62, 2, 0, 7}) // PUBREL
	require.NoError(t, err)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, []byte{0x70, 2, 0, 7}, got, "PUBCOMP for id 7, from the gateway")
	require.NotContains(t, s.Broker.Out.String(), "secret/x")

	_, rc = connect311(t, s.Addr, "v311-bad", "alice", "wrong")
	require.Equal(t, byte(4), rc, "bad user name or password")
}

// A broker that cannot be reached: CONNACK 0x88 (v5), 3 (3.1.1).
func TestUpstreamUnreachable(t *testing.T) {
	m, err := auth.NewManager(passwordAuth())
	require.NoError(t, err)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := dead.Addr().String()
	require.NoError(t, dead.Close())
	g, err := gateway.New(gateway.Config{Manager: m, Upstream: deadAddr, Logger: testLogger(t)})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { _ = g.Serve(ln); close(done) }()
	defer func() { _ = g.Close(); <-done }()

	_, ca, err := conformance.Dial(t, ln.Addr().String(), pwConnect("nobroker", "alice"), nil)
	require.Error(t, err)
	require.Equal(t, byte(0x88), ca.ReasonCode)
	_, rc := connect311(t, ln.Addr().String(), "nobroker311", "alice", "alice-pw")
	require.Equal(t, byte(3), rc)
}

// A policy change that removes only a Subscribe permission stops the
// deliveries of an existing subscription: the gateway checks each delivery
// as a Subscribe of its topic name, withholds the denied ones and
// acknowledges them to the broker, whose in-flight window (the client's
// Receive Maximum, 5 here) therefore never fills.
func TestDeliveriesFollowPolicy(t *testing.T) {
	var revoked atomic.Bool
	ac := passwordAuth()
	base := ac.Authorizer
	ac.Authorizer = auth.AuthorizerFunc(func(ctx context.Context, p *auth.Principal, a auth.Action) auth.Decision {
		if a.Kind == auth.Subscribe && revoked.Load() && p.Username() == "device-bob" {
			return auth.Deny
		}
		return base.Authorize(ctx, p, a)
	})
	s := startStack(t, ac, "", nil)
	rm := uint16(5)
	cp := pwConnect("sub", "bob")
	cp.Properties = &paho.ConnectProperties{ReceiveMaximum: &rm}
	subc, _ := pahoDial(t, s.Addr, cp)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := subc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ok/live", QoS: 1}}})
	require.NoError(t, err)
	pubc, _ := pahoDial(t, s.Addr, pwConnect("pub", "alice"))
	publish := func(payload string) {
		_, err := pubc.Publish(ctx, &paho.Publish{Topic: "ok/live", QoS: 1, Payload: []byte(payload)})
		require.NoError(t, err)
	}
	expect := func(payload string) {
		t.Helper()
		select {
		case m := <-subc.Messages:
			require.Equal(t, payload, string(m.Payload))
		case <-time.After(5 * time.Second):
			t.Fatalf("%s not delivered", payload)
		}
	}
	publish("before")
	expect("before")
	revoked.Store(true)
	for i := range 10 {
		publish(fmt.Sprintf("withheld-%d", i))
	}
	select {
	case m := <-subc.Messages:
		t.Fatalf("delivered after revocation: %s", m.Payload)
	case <-time.After(300 * time.Millisecond):
	}
	revoked.Store(false)
	publish("after")
	expect("after")
}

// X.509 clients through the gateway's x509auth listener: the broker sees
// the certificate's identity; a certificate of an untrusted CA fails the
// TLS handshake and never reaches the broker.
func TestX509(t *testing.T) {
	pki := authtest.NewTutorialPKI(t, time.Now())
	s := tutorialGateway(t, pki, "")
	require.NoError(t, connectOnce(s.Addr, authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", pki.Thermostat), "thermo-id"))
	waitLog(t, s.Broker, "as thermo-id (p5, c1, k30, u'thermostat')")
	intruder := authtest.NewRootCA(t, "Intruder Root").Leaf(t, "intruder", authtest.WithExtKeyUsage(x509.ExtKeyUsageClientAuth))
	require.Error(t, connectOnce(s.Addr, authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", intruder), "intruder"))
	require.NotContains(t, s.Broker.Out.String(), "intruder")
}

// With an abac policy (each connection then has a decision cache), the
// tutorial's thermostat may publish telemetry/temperature and not
// telemetry/humidity, through the x509auth listener.
func TestX509PublishABAC(t *testing.T) {
	pki := authtest.NewTutorialPKI(t, time.Now())
	s := tutorialGateway(t, pki, "")
	conn, err := tls.Dial("tcp", s.Addr, authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", pki.Thermostat))
	require.NoError(t, err)
	defer conn.Close()
	r := rawConnected(t, conn, "thermostat")
	for i, tc := range []struct {
		topic string
		want  byte
	}{{"telemetry/temperature", 0x10}, {"telemetry/humidity", 0x87}, {"telemetry/temperature", 0x10}, {"telemetry/humidity", 0x87}} {
		r.publish(tc.topic, 0, 1, uint16(i+1), "x")
		require.Equal(t, tc.want, r.read().Content.(*packets.Puback).ReasonCode, tc.topic) // 0x10: mosquitto, no subscriber
	}
	require.NotContains(t, s.Broker.Out.String(), "telemetry/humidity")
}

// heldConn holds what a TLS client writes while hold is set; release
// writes it in one Write: records that arrive together, as MQTT.js sends
// them (a record per packet).
type heldConn struct {
	net.Conn
	hold bool
	buf  bytes.Buffer
}

func (h *heldConn) Write(b []byte) (int, error) {
	if h.hold {
		return h.buf.Write(b)
	}
	return h.Conn.Write(b)
}

// writeCounter dials the broker and counts the gateway's writes to it.
type writeCounter struct{ n atomic.Int64 }

func (w *writeCounter) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: nc, n: &w.n}, nil
}

type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countedConn) Write(b []byte) (int, error) { c.n.Add(1); return c.Conn.Write(b) }

// TestTLSRecordsRelayedInOneWrite: eight QoS 1 PUBLISHes that a TLS
// client wrote as eight records in one segment reach the broker in one
// write, not one each (crypto/tls returns a record per read; the relay
// reads the ones already received before it writes), and each is
// acknowledged.
func TestTLSRecordsRelayedInOneWrite(t *testing.T) {
	pki := authtest.NewTutorialPKI(t, time.Now())
	var wc writeCounter
	s := tutorialGatewayWith(t, pki, func(c *gateway.Config) { c.Dialer = &wc })
	raw, err := net.Dial("tcp", s.Addr)
	require.NoError(t, err)
	held := &heldConn{Conn: raw}
	conn := tls.Client(held, authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", pki.Thermostat))
	defer conn.Close()
	r := rawConnected(t, conn, "thermostat")
	before := wc.n.Load()

	const n = 8
	held.hold = true
	for i := range n {
		r.publish("telemetry/temperature", 0, 1, uint16(i+1), "21.5")
	}
	held.hold = false
	_, err = raw.Write(held.buf.Bytes())
	require.NoError(t, err)
	for i := range n {
		ack, ok := r.read().Content.(*packets.Puback)
		require.True(t, ok)
		require.Equal(t, uint16(i+1), ack.PacketID)
		require.Equal(t, byte(0x10), ack.ReasonCode, "mosquitto: no subscriber")
	}
	require.EqualValues(t, 1, wc.n.Load()-before, "the %d PUBLISHes in one segment, written to the broker at once", n)
}
