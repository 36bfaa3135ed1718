package nats_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/abac"
	natsauth "github.com/mqttauth/mqttauth/adapters/nats"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(
			// nats-server's own: a process-wide access-time ticker, and
			// file store flush loops that a clustered server's Shutdown
			// leaves behind (nats-server v2.15.3).
			goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server/ats.Register.func1"),
			goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).flushStreamStateLoop"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// quiet is the logger of the sessions and the adapter; NATS_DEBUG=1 shows
// it.
var quiet = func() *slog.Logger {
	if os.Getenv("NATS_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}()

// broker is an embedded nats-server with JetStream (in a temporary
// directory) and an MQTT listener, on loopback, authenticating through an
// Authentication.
type broker struct {
	srv  *server.Server
	a    *natsauth.Authentication
	m    *auth.Manager
	mqtt string // host:port of the MQTT listener
	url  string // nats:// URL of the client port
}

// brokerConfig describes a broker to start.
type brokerConfig struct {
	manager *auth.Manager
	policy  natsauth.Grants
	mqttTLS *tls.Config // nil: plain MQTT
	natsTLS *tls.Config // nil: plain NATS
	sweep   time.Duration
}

func startBroker(t testing.TB, bc brokerConfig) *broker {
	t.Helper()
	a, err := natsauth.New(natsauth.Config{Manager: bc.manager, Policy: bc.policy, Logger: quiet, SweepInterval: bc.sweep})
	require.NoError(t, err)
	opts := &server.Options{
		ServerName: "mqttauth-test",
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
		MQTT:       server.MQTTOpts{Host: "127.0.0.1", Port: -1, TLSConfig: bc.mqttTLS},
	}
	if os.Getenv("NATS_DEBUG") != "" {
		opts.NoLog, opts.Debug = false, true
	}
	if bc.natsTLS != nil {
		opts.TLSConfig = bc.natsTLS
		opts.TLS, opts.TLSVerify = true, false
	}
	srv, err := natsauth.NewServer(opts, a)
	require.NoError(t, err)
	if !opts.NoLog {
		srv.ConfigureLogger()
	}
	go srv.Start()
	require.True(t, srv.ReadyForConnections(10*time.Second), "nats-server did not start")
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		a.Sweep()
		require.Equal(t, 0, a.Len(), "sessions left after shutdown")
		require.NoError(t, a.Close())
		require.Equal(t, 0, bc.manager.Len())
	})
	vz, err := srv.Varz(nil)
	require.NoError(t, err)
	require.NotZero(t, vz.MQTT.Port)
	return &broker{srv: srv, a: a, m: bc.manager, mqtt: fmt.Sprintf("127.0.0.1:%d", vz.MQTT.Port), url: srv.ClientURL()}
}

func newManager(t testing.TB, cfg auth.Config) *auth.Manager {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	m, err := auth.NewManager(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
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

// tutorial is the tutorial's set-up on NATS: x509auth over the tutorial
// PKI on the MQTT listener (and on the NATS port, for native clients),
// and the tutorial's policy, reloadable from a file.
type tutorial struct {
	*broker
	pki    *authtest.TutorialPKI
	store  *truststore.Store
	policy *abac.Watcher
	path   string
}

func startTutorial(t *testing.T) *tutorial {
	t.Helper()
	pki := authtest.NewTutorialPKI(t, time.Now())
	set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	require.NoError(t, err)
	store := truststore.NewMemory(set)
	xa := newX509(t, store)
	path := authtest.WriteFile(t, "policy.json", []byte(authtest.TutorialPolicy))
	w, err := abac.NewWatcher(abac.WatchConfig{Path: path, Logger: quiet, Debounce: 10 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() })
	m := newManager(t, auth.Config{Authenticator: auth.Chain{xa}, Authorizer: w})
	stopWatch, err := m.Watch(xa.Watch(store))
	require.NoError(t, err)
	t.Cleanup(stopWatch)
	// The tutorial's server certificate, also valid for 127.0.0.1, which
	// mosquitto's clients check against the host they dial.
	pki.Server = pki.ContosoIntermediate.Leaf(t, "mqtts-endpoint", authtest.WithDNSNames("localhost"),
		authtest.WithIPs(net.ParseIP("127.0.0.1")), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	tlsCfg := xa.ServerTLSConfig(authtest.ServerTLSConfig(t, pki.Server))
	b := startBroker(t, brokerConfig{manager: m, policy: w, mqttTLS: tlsCfg, natsTLS: tlsCfg})
	stop, err := m.Watch(auth.Watch{Name: "abac policy", Source: w, Check: b.a.CheckPermissions})
	require.NoError(t, err)
	t.Cleanup(stop)
	return &tutorial{broker: b, pki: pki, store: store, policy: w, path: path}
}

// mqttClient is a paho.mqtt.golang (MQTT 3.1.1) client.
type mqttClient struct {
	paho.Client
	lost chan error
	got  chan paho.Message
}

func dialMQTT(t testing.TB, addr string, tlsCfg *tls.Config, id, user, pass string, edit ...func(*paho.ClientOptions)) (*mqttClient, error) {
	t.Helper()
	scheme := "tcp"
	if tlsCfg != nil {
		scheme = "ssl"
	}
	mc := &mqttClient{lost: make(chan error, 1), got: make(chan paho.Message, 64)}
	opts := paho.NewClientOptions().AddBroker(scheme + "://" + addr).SetClientID(id).SetTLSConfig(tlsCfg).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetProtocolVersion(4).SetKeepAlive(30 * time.Second).
		SetConnectionLostHandler(func(_ paho.Client, err error) { mc.lost <- err }).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { mc.got <- m })
	if user != "" {
		opts.SetUsername(user).SetPassword(pass)
	}
	for _, e := range edit {
		e(opts)
	}
	mc.Client = paho.NewClient(opts)
	tok := mc.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { mc.Disconnect(100) })
	return mc, nil
}

// subscribe subscribes to filter at QoS 1 and returns the SUBACK return
// code (0x80: failure).
func (mc *mqttClient) subscribe(t testing.TB, filter string) byte {
	t.Helper()
	tok := mc.Subscribe(filter, 1, nil)
	require.True(t, tok.WaitTimeout(10*time.Second), "SUBACK")
	require.NoError(t, tok.Error())
	return tok.(*paho.SubscribeToken).Result()[filter]
}

// publish publishes at QoS 1 and waits for the PUBACK (or the loss of the
// connection).
func (mc *mqttClient) publish(t testing.TB, topic, payload string) error {
	t.Helper()
	tok := mc.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(5 * time.Second) {
		return fmt.Errorf("no PUBACK for %q", topic)
	}
	return tok.Error()
}

// expectMessage waits for a message on topic.
func (mc *mqttClient) expectMessage(t testing.TB, topic string) {
	t.Helper()
	select {
	case m := <-mc.got:
		require.Equal(t, topic, m.Topic())
	case <-time.After(5 * time.Second):
		t.Fatalf("no message on %q", topic)
	}
}

// expectNone checks that no message arrives for a while.
func (mc *mqttClient) expectNone(t testing.TB) {
	t.Helper()
	select {
	case m := <-mc.got:
		t.Fatalf("unexpected message on %q", m.Topic())
	case <-time.After(300 * time.Millisecond):
	}
}

// expectLost waits for the server to close the connection.
func (mc *mqttClient) expectLost(t testing.TB, within time.Duration) {
	t.Helper()
	select {
	case <-mc.lost:
	case <-time.After(within):
		t.Fatal("the connection was not closed")
	}
}

func clientTLS(t testing.TB, pki *authtest.TutorialPKI, leaf *authtest.Leaf) *tls.Config {
	return authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", leaf)
}

// dialNATS connects a nats.go client.
func dialNATS(t testing.TB, url string, opts ...natsgo.Option) (*natsgo.Conn, chan error, error) {
	t.Helper()
	errs := make(chan error, 16)
	opts = append([]natsgo.Option{natsgo.NoReconnect(), natsgo.Timeout(5 * time.Second),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, _ *natsgo.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		})}, opts...)
	nc, err := natsgo.Connect(url, opts...)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(nc.Close)
	return nc, errs, nil
}
