package mochi_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	mochiauth "github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	mpackets "github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// recorder is a tiny storage hook: it records what mochi's storage hooks
// would persist (the client's properties, the CONNECT packet) on the same
// events the badger, bolt, pebble and redis hooks write on.
type recorder struct {
	mqtt.HookBase
	mu       sync.Mutex
	authData [][]byte // cl.Properties.Props.AuthenticationData seen
	password [][]byte // pk.Connect.Password seen
	connData [][]byte // pk.Properties.AuthenticationData seen
}

func (r *recorder) ID() string { return "recorder" }
func (r *recorder) Provides(b byte) bool {
	return b == mqtt.OnSessionEstablished || b == mqtt.OnDisconnect
}
func (r *recorder) OnSessionEstablished(cl *mqtt.Client, pk mpackets.Packet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.authData = append(r.authData, bytes.Clone(cl.Properties.Props.AuthenticationData))
	r.password = append(r.password, bytes.Clone(pk.Connect.Password))
	r.connData = append(r.connData, bytes.Clone(pk.Properties.AuthenticationData))
}
func (r *recorder) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.authData = append(r.authData, bytes.Clone(cl.Properties.Props.AuthenticationData))
}

func TestScrubbedBeforeStorage(t *testing.T) {
	fx := &conformance.Fixture{}
	m := newManager(t, fx.Config())
	rec := &recorder{}
	b, _, addr := startBroker(t, mochi.Config{Manager: m}, rec)
	_ = b

	c, _, err := conformance.Dial(t, addr, &paho.Connect{ClientID: "pw", CleanStart: true,
		Username: conformance.UserAlice, UsernameFlag: true, Password: []byte(conformance.PasswordGood), PasswordFlag: true}, nil)
	require.NoError(t, err)
	tok, _, err := conformance.Dial(t, addr, &paho.Connect{ClientID: "tok", CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: conformance.MethodToken, AuthData: []byte("good")}}, nil)
	require.NoError(t, err)
	require.NoError(t, c.Disconnect(&paho.Disconnect{}))
	require.NoError(t, tok.Disconnect(&paho.Disconnect{}))
	require.Eventually(t, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.authData) == 4
	}, 5*time.Second, 10*time.Millisecond)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, d := range rec.authData {
		require.Empty(t, d, "Authentication Data reached a storage hook")
	}
	for i := range rec.password {
		require.NotContains(t, string(rec.password[i]), conformance.PasswordGood, "the password reached a storage hook")
		require.NotContains(t, string(rec.connData[i]), "good", "CONNECT's Authentication Data reached a storage hook")
	}
}

func TestOtherAuthHookRefused(t *testing.T) {
	m := newManager(t, (&conformance.Fixture{}).Config())

	t.Run("attached_before", func(t *testing.T) {
		srv := mqtt.New(&mqtt.Options{Logger: quiet})
		require.NoError(t, srv.AddHook(new(mochiauth.AllowHook), nil))
		_, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
		require.ErrorIs(t, err, mochi.ErrOtherAuthHook)
		require.ErrorContains(t, err, "allow-all-auth")
	})

	t.Run("ledger_acl_only", func(t *testing.T) {
		srv := mqtt.New(&mqtt.Options{Logger: quiet})
		require.NoError(t, srv.AddHook(new(mochiauth.Hook), &mochiauth.Options{Ledger: &mochiauth.Ledger{}}))
		_, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
		require.ErrorIs(t, err, mochi.ErrOtherAuthHook)
	})

	t.Run("insecure_allow", func(t *testing.T) {
		srv := mqtt.New(&mqtt.Options{Logger: quiet})
		require.NoError(t, srv.AddHook(new(mochiauth.AllowHook), nil))
		h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet, InsecureAllowOtherAuthHooks: true})
		require.NoError(t, err)
		require.NotNil(t, h)
	})

	t.Run("added_by_serve_refuses_and_closes", func(t *testing.T) {
		srv := mqtt.New(&mqtt.Options{Logger: quiet,
			Hooks: []mqtt.HookLoadConfig{{Hook: new(mochiauth.AllowHook)}}})
		h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
		require.ErrorIs(t, err, mochi.ErrOtherAuthHook, "Options.Hooks are checked at Attach")
		require.Nil(t, h)

		// Added after Attach, before Serve: OnStarted catches it.
		var serverLog lockedBuffer
		srv = mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(&serverLog, nil))})
		h, err = mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
		require.NoError(t, err)
		srv.Options.Hooks = []mqtt.HookLoadConfig{{Hook: new(mochiauth.AllowHook)}}
		ln := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tcp", Address: "127.0.0.1:0"})
		require.NoError(t, srv.AddListener(ln))
		require.NoError(t, srv.Serve())
		// Wait for the end of srv.Close before dialing: a connection
		// accepted while mochi closes trips a data race inside mochi
		// (mochi-mqtt/server#541).
		require.Eventually(t, func() bool {
			return strings.Contains(serverLog.String(), "mochi mqtt server stopped")
		}, 5*time.Second, 10*time.Millisecond, "the server was not closed:\n%s", serverLog.String())
		c, err := net.DialTimeout("tcp", ln.Address(), time.Second)
		if err == nil {
			_ = c.Close()
		}
		require.Error(t, err, "the server kept listening")
		require.Equal(t, 0, h.Len())
	})
}

// swap is an authorizer whose policy can be replaced, as an abac.Watcher's is.
type swap struct{ p atomic.Pointer[abac.Policy] }

func (s *swap) Current() *abac.Policy { return s.p.Load() }

// NewSessionAuthorizer gives each session an abac.Cache of the current
// policy, as abac.Watcher does.
func (s *swap) NewSessionAuthorizer() auth.Authorizer { return abac.NewCache(s, 0) }
func (s *swap) Authorize(ctx context.Context, p *auth.Principal, a auth.Action) auth.Decision {
	return s.p.Load().Authorize(ctx, p, a)
}

func mustPolicy(t *testing.T, doc string) *abac.Policy {
	t.Helper()
	p, err := abac.Parse([]byte(doc))
	require.NoError(t, err)
	return p
}

// TestACLCacheDropped: the per-session abac.Cache answers mochi's checks; a
// re-authentication that changes the principal's attributes, and a policy
// reload, both change the next decision.
func TestACLCacheDropped(t *testing.T) {
	pol := &swap{}
	pol.p.Store(mustPolicy(t, `{"rules": [
	  {"principals": {"usernames": ["dev"]}, "brokerResources": [{"method": "Connect"}]},
	  {"principals": {"attributes": [{"role": "writer"}]},
	   "brokerResources": [{"method": "Publish", "topics": ["data/#"]}, {"method": "Subscribe", "topics": ["data/#"]}]}
	]}`))
	authn := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if req.AuthMethod != "role" {
			return auth.Result{}
		}
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: "dev",
			Attributes: map[string]string{"role": string(req.AuthData)}}))
	})
	m := newManager(t, auth.Config{Authenticator: authn, Authorizer: pol})
	_, h, addr := startBroker(t, mochi.Config{Manager: m})

	c, _, err := conformance.Dial(t, addr, &paho.Connect{ClientID: "dev", CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: "role", AuthData: []byte("reader")}}, nil)
	require.NoError(t, err)
	require.Equal(t, byte(0x87), c.PublishQoS1(t, "data/1", "x"), "a reader may not publish")
	require.Equal(t, byte(0x87), c.PublishQoS1(t, "data/1", "x"), "cached deny")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ar, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: "role", AuthData: []byte("writer")}})
	require.NoError(t, err)
	require.True(t, ar.Success)
	require.Equal(t, byte(0x00), c.PublishQoS1(t, "data/1", "x"), "re-authenticated as a writer: the cached deny is gone")
	require.Equal(t, 1, h.Len())

	// A reload that takes Publish away applies at the next check.
	pol.p.Store(mustPolicy(t, `{"rules": [
	  {"principals": {"usernames": ["dev"]}, "brokerResources": [{"method": "Connect"}]}]}`))
	require.Equal(t, byte(0x87), c.PublishQoS1(t, "data/1", "x"), "policy reloaded: the cached allow is gone")
}

// TestDeliveryChecked: mochi asks OnACLCheck on every delivery, so a
// subscriber that loses read access stops receiving on an existing
// subscription.
func TestDeliveryChecked(t *testing.T) {
	pol := &swap{}
	readAll := `{"rules": [{"principals": {"usernames": ["alice"]}, "brokerResources": [
	  {"method": "Connect"}, {"method": "Publish", "topics": ["#"]}, {"method": "Subscribe", "topics": ["news/#"]}]}]}`
	pol.p.Store(mustPolicy(t, readAll))
	fx := &conformance.Fixture{}
	cfg := fx.Config()
	cfg.Authorizer = pol
	m := newManager(t, cfg)
	_, _, addr := startBroker(t, mochi.Config{Manager: m})

	sub, _, err := conformance.Dial(t, addr, &paho.Connect{ClientID: "sub", CleanStart: true, Username: "alice", UsernameFlag: true, Password: []byte("secret"), PasswordFlag: true}, nil)
	require.NoError(t, err)
	require.Equal(t, byte(1), sub.SubscribeCode(t, "news/#"))
	pub, _, err := conformance.Dial(t, addr, &paho.Connect{ClientID: "pub", CleanStart: true, Username: "alice", UsernameFlag: true, Password: []byte("secret"), PasswordFlag: true}, nil)
	require.NoError(t, err)
	require.Equal(t, byte(0), pub.PublishQoS1(t, "news/a", "1"))
	select {
	case msg := <-sub.Messages:
		require.Equal(t, "news/a", msg.Topic)
	case <-time.After(5 * time.Second):
		t.Fatal("not delivered")
	}
	pol.p.Store(mustPolicy(t, `{"rules": [{"principals": {"usernames": ["alice"]}, "brokerResources": [
	  {"method": "Connect"}, {"method": "Publish", "topics": ["#"]}, {"method": "Subscribe", "topics": ["news/public"]}]}]}`))
	require.Equal(t, byte(0), pub.PublishQoS1(t, "news/secret", "2"))
	require.Equal(t, byte(0), pub.PublishQoS1(t, "news/public", "3"))
	select {
	case msg := <-sub.Messages:
		require.Equal(t, "news/public", msg.Topic, "news/secret was delivered after read access was withdrawn")
	case <-time.After(5 * time.Second):
		t.Fatal("news/public not delivered")
	}
}

func newX509(t testing.TB, store *truststore.Store) *x509auth.Authenticator {
	t.Helper()
	a, err := x509auth.New(x509auth.Config{Trust: store, Logger: quiet, Mappings: []x509auth.Mapping{
		{Name: "thermostat", Subject: "CN = thermostat", Attributes: map[string]string{"group": "thermostat_group"}},
		{Name: "hygrometer", Subject: "CN = hygrometer", Attributes: map[string]string{"group": "hygrometer_group"}},
		{Name: "intermediate", Subject: "CN = Fabrikam Intermediate CA 1", Attributes: map[string]string{"manufacturer": "fabrikam"}},
	}})
	require.NoError(t, err)
	return a
}

// tutorial starts mochi with the hook on an mTLS listener wired to
// x509auth over the tutorial PKI, with the tutorial's ABAC policy.
type tutorial struct {
	pki   *authtest.TutorialPKI
	store *truststore.Store
	m     *auth.Manager
	h     *mochi.Hook
	addr  string
}

func startTutorial(t *testing.T) *tutorial {
	t.Helper()
	pki := authtest.NewTutorialPKI(t, time.Now())
	set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	require.NoError(t, err)
	store := truststore.NewMemory(set)
	a := newX509(t, store)
	policy, err := abac.Parse([]byte(authtest.TutorialPolicy))
	require.NoError(t, err)
	m := newManager(t, auth.Config{Authenticator: auth.Chain{a}, Authorizer: policy})
	stop, err := m.Watch(a.Watch(store))
	require.NoError(t, err)
	t.Cleanup(stop)

	srv := mqtt.New(&mqtt.Options{Logger: quiet})
	h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
	require.NoError(t, err)
	ln := h.Listener("mtls", "127.0.0.1:0", a.ServerTLSConfig(authtest.ServerTLSConfig(t, pki.Server)))
	require.NoError(t, srv.AddListener(ln))
	require.NoError(t, srv.Serve())
	t.Cleanup(func() {
		require.NoError(t, closeServer(t, srv))
		require.Eventually(t, func() bool { return h.Len() == 0 && m.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
	})
	return &tutorial{pki: pki, store: store, m: m, h: h, addr: ln.Address()}
}

// dialTLS connects a paho client over mTLS presenting leaf.
func dialTLS(t *testing.T, tu *tutorial, leaf *authtest.Leaf, id string) (*paho.Client, chan *paho.Disconnect, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", tu.addr, authtest.ClientTLSConfig(t, tu.pki.ContosoRoot, "localhost", leaf))
	if err != nil {
		return nil, nil, err
	}
	dis := make(chan *paho.Disconnect, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), PacketTimeout: 5 * time.Second,
		OnServerDisconnect: func(d *paho.Disconnect) { dis <- d }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		<-c.Done()
	})
	return c, dis, nil
}

func publish(t *testing.T, c *paho.Client, topic string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("21.5")})
	require.NotNil(t, pr, "%v", err)
	return pr.ReasonCode
}

func TestTutorialMTLS(t *testing.T) {
	tu := startTutorial(t)

	heater, _, err := dialTLS(t, tu, tu.pki.Heater, "heater")
	require.NoError(t, err)
	got := make(chan string, 8)
	heater.AddOnPublishReceived(func(pr paho.PublishReceived) (bool, error) {
		got <- pr.Packet.Topic
		return true, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := heater.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "telemetry/temperature", QoS: 1}, {Topic: "telemetry/#", QoS: 1}}})
	require.NotNil(t, sa, "%v", err)
	require.Equal(t, []byte{0x01, 0x87}, sa.Reasons, "heater may subscribe to telemetry/temperature only")

	thermo, thermoDis, err := dialTLS(t, tu, tu.pki.Thermostat, "thermostat")
	require.NoError(t, err)
	require.Equal(t, byte(0x00), publish(t, thermo, "telemetry/temperature"))
	require.Equal(t, byte(0x87), publish(t, thermo, "telemetry/humidity"))
	require.Equal(t, byte(0x87), publish(t, thermo, "health/heartbeat"), "matched by its own CN, the thermostat does not get the intermediate's attributes")
	select {
	case topic := <-got:
		require.Equal(t, "telemetry/temperature", topic)
	case <-time.After(5 * time.Second):
		t.Fatal("heater did not receive the temperature")
	}

	hygro, _, err := dialTLS(t, tu, tu.pki.Hygrometer, "hygrometer")
	require.NoError(t, err)
	require.Equal(t, byte(0x00), publish(t, hygro, "telemetry/humidity"))
	require.Equal(t, byte(0x87), publish(t, hygro, "telemetry/temperature"))

	bulb, _, err := dialTLS(t, tu, tu.pki.Lightbulb, "lightbulb")
	require.NoError(t, err)
	require.Equal(t, byte(0x00), publish(t, bulb, "health/heartbeat"))
	require.Equal(t, 4, tu.m.Len())

	t.Run("untrusted_client_fails_handshake", func(t *testing.T) {
		other := authtest.NewRootCA(t, "Other Root CA").Leaf(t, "intruder", authtest.WithExtKeyUsage(x509.ExtKeyUsageClientAuth))
		_, _, err := dialTLS(t, tu, other, "intruder")
		require.Error(t, err)
	})

	t.Run("revoked_by_crl_disconnected_0x87", func(t *testing.T) {
		now := time.Now()
		crl, err := x509.ParseRevocationList(tu.pki.FabrikamIntermediate.CRL(t, 1, now.Add(-time.Minute), now.Add(time.Hour), tu.pki.Thermostat.Cert))
		require.NoError(t, err)
		set, err := truststore.NewSet([]*x509.Certificate{tu.pki.FabrikamRoot.Cert}, []*x509.RevocationList{crl})
		require.NoError(t, err)
		tu.store.Replace(set)
		select {
		case d := <-thermoDis:
			require.Equal(t, byte(0x87), d.ReasonCode)
		case <-time.After(5 * time.Second):
			t.Fatal("the revoked thermostat was not disconnected")
		}
		require.Eventually(t, func() bool { return tu.m.Len() == 3 }, 5*time.Second, 10*time.Millisecond)
		_, _, err = dialTLS(t, tu, tu.pki.Thermostat, "thermostat-again")
		require.Error(t, err, "a revoked certificate must fail the handshake")
	})
}

// rawConnect writes a v5 CONNECT naming method with data on a raw TCP
// connection, for the cases paho cannot produce.
func rawConnect(t *testing.T, addr, method, data string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.KeepAlive, c.CleanStart = "MQTT", 5, "raw", 30, true
	c.Properties = &packets.Properties{AuthMethod: method, AuthData: []byte(data)}
	_, err = cp.WriteTo(conn)
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	return conn
}

func readPacket(t *testing.T, conn net.Conn) *packets.ControlPacket {
	t.Helper()
	p, err := packets.ReadPacket(conn)
	require.NoError(t, err)
	return p
}

func expectEOF(t *testing.T, conn net.Conn) {
	t.Helper()
	_, err := packets.ReadPacket(conn)
	require.Error(t, err, "the connection stayed open")
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the connection stayed open: %v", err)
}

// TestExchangeEdges covers what paho never does during a CONNECT exchange.
func TestExchangeEdges(t *testing.T) {
	fx := &conformance.Fixture{}
	cfg := fx.Config()
	cfg.ExchangeTimeout = 300 * time.Millisecond
	m := newManager(t, cfg)
	_, h, addr := startBroker(t, mochi.Config{Manager: m})

	t.Run("unanswered_challenge_connack_0x87", func(t *testing.T) {
		conn := rawConnect(t, addr, conformance.MethodChallenge, "hello")
		require.Equal(t, byte(packets.AUTH), readPacket(t, conn).Type)
		start := time.Now()
		p := readPacket(t, conn)
		require.Equal(t, byte(packets.CONNACK), p.Type)
		require.Equal(t, byte(0x87), p.Content.(*packets.Connack).ReasonCode)
		require.Less(t, time.Since(start), 3*time.Second)
		expectEOF(t, conn)
	})
	t.Run("other_packet_before_connack_0x82", func(t *testing.T) { // [MQTT-3.1.2-30]
		conn := rawConnect(t, addr, conformance.MethodChallenge, "hello")
		require.Equal(t, byte(packets.AUTH), readPacket(t, conn).Type)
		_, err := packets.NewControlPacket(packets.PINGREQ).WriteTo(conn)
		require.NoError(t, err)
		p := readPacket(t, conn)
		require.Equal(t, byte(packets.CONNACK), p.Type)
		require.Equal(t, byte(0x82), p.Content.(*packets.Connack).ReasonCode)
		expectEOF(t, conn)
	})
	t.Run("reauth_before_connack_0x82", func(t *testing.T) { // [MQTT-4.12.1-1]
		conn := rawConnect(t, addr, conformance.MethodChallenge, "hello")
		require.Equal(t, byte(packets.AUTH), readPacket(t, conn).Type)
		ap := packets.NewControlPacket(packets.AUTH)
		a := ap.Content.(*packets.Auth)
		a.ReasonCode = 0x19
		a.Properties = &packets.Properties{AuthMethod: conformance.MethodChallenge, AuthData: []byte("answer-1")}
		_, err := a.WriteTo(conn)
		require.NoError(t, err)
		p := readPacket(t, conn)
		require.Equal(t, byte(packets.CONNACK), p.Type)
		require.Equal(t, byte(0x82), p.Content.(*packets.Connack).ReasonCode)
		expectEOF(t, conn)
	})
	t.Run("malformed_auth_connack_0x81", func(t *testing.T) {
		conn := rawConnect(t, addr, conformance.MethodChallenge, "hello")
		require.Equal(t, byte(packets.AUTH), readPacket(t, conn).Type)
		_, err := conn.Write([]byte{0xF2, 0x00}) // AUTH with reserved flags set [MQTT-2.1.3-1]
		require.NoError(t, err)
		p := readPacket(t, conn)
		require.Equal(t, byte(packets.CONNACK), p.Type)
		require.Equal(t, byte(0x81), p.Content.(*packets.Connack).ReasonCode)
		expectEOF(t, conn)
	})
	t.Run("client_leaves_mid_exchange", func(t *testing.T) {
		conn := rawConnect(t, addr, conformance.MethodChallenge, "hello")
		require.Equal(t, byte(packets.AUTH), readPacket(t, conn).Type)
		require.NoError(t, conn.Close())
	})
	require.Eventually(t, func() bool { return h.Len() == 0 && m.Len() == 0 }, 5*time.Second, 10*time.Millisecond,
		"sessions or map entries left behind")
}

// TestCleanup counts what the hook holds while many clients come and go.
func TestCleanup(t *testing.T) {
	fx := &conformance.Fixture{}
	m := newManager(t, fx.Config())
	_, h, addr := startBroker(t, mochi.Config{Manager: m})
	for i := range 20 {
		id := "c" + string(rune('a'+i))
		cp := &paho.Connect{ClientID: id, CleanStart: true, Properties: &paho.ConnectProperties{AuthMethod: conformance.MethodToken, AuthData: []byte("good")}}
		if i%4 == 3 {
			cp.Properties.AuthData = []byte("bad")
		}
		c, _, err := conformance.Dial(t, addr, cp, nil)
		if i%4 == 3 {
			require.Error(t, err)
			continue
		}
		require.NoError(t, err)
		if i%2 == 0 {
			require.NoError(t, c.Disconnect(&paho.Disconnect{}))
		}
	}
	require.Eventually(t, func() bool { return h.Len() == 5 && m.Len() == 5 }, 5*time.Second, 10*time.Millisecond,
		"want the 5 clients still connected; hook holds %d, manager %d", h.Len(), m.Len())
}

// TestACLCheckAllocs: OnACLCheck, called by mochi on every delivery,
// allocates nothing once the session's cache holds the decision. The audit
// record of a deny is the one cost a deny may have; here its level
// (Debug) is below the logger's, as an operator who does not want one
// record per denied message sets it.
func TestACLCheckAllocs(t *testing.T) {
	policy := mustPolicy(t, `{"rules": [{"principals": {"usernames": ["alice"]}, "brokerResources": [
	  {"method": "Connect"}, {"method": "Publish", "topics": ["a/#"]}, {"method": "Subscribe", "topics": ["a/#"]}]}]}`)
	cfg := (&conformance.Fixture{}).Config()
	cfg.Authorizer = policy
	cfg.Audit.DenyLevel = slog.LevelDebug
	m := newManager(t, cfg)
	b, h, addr := startBroker(t, mochi.Config{Manager: m})
	_, _, err := conformance.Dial(t, addr, &paho.Connect{ClientID: "alice", CleanStart: true, Username: "alice", UsernameFlag: true, Password: []byte("secret"), PasswordFlag: true}, nil)
	require.NoError(t, err)
	cl, ok := b.Clients.Get("alice")
	require.True(t, ok)
	require.True(t, h.OnACLCheck(cl, "a/b", true))
	require.True(t, h.OnACLCheck(cl, "a/b", false))
	require.False(t, h.OnACLCheck(cl, "b", true))
	allocs := testing.AllocsPerRun(1000, func() {
		h.OnACLCheck(cl, "a/b", true)
		h.OnACLCheck(cl, "a/b", false)
		h.OnACLCheck(cl, "b", true)
	})
	require.Zero(t, allocs)
}

// TestSilentExpiry: with auth.CloseOnExpiry the connection is closed
// without a DISCONNECT, as the Azure IoT Operations broker does.
func TestSilentExpiry(t *testing.T) {
	cfg := (&conformance.Fixture{}).Config()
	cfg.OnExpiry = auth.CloseOnExpiry
	m := newManager(t, cfg)
	_, h, addr := startBroker(t, mochi.Config{Manager: m})
	c, _, err := conformance.Dial(t, addr, &paho.Connect{ClientID: "exp", CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: conformance.MethodToken, AuthData: []byte("expire:300")}}, nil)
	require.NoError(t, err)
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the connection outlived its credential")
	}
	require.Empty(t, c.Disconnects, "a silent close sent a DISCONNECT")
	require.Eventually(t, func() bool { return h.Len() == 0 && m.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
}
