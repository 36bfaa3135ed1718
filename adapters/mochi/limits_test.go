package mochi_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	mpackets "github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
	"github.com/mqttauth/mqttauth/mqttconn"
	"github.com/mqttauth/mqttauth/truststore"
)

// guarded starts mochi with the hook and two of its listeners, plain TCP
// and TLS (no client certificate), and returns their addresses.
func guarded(t *testing.T, cfg mochi.Config) (h *mochi.Hook, tcpAddr, tlsAddr string, clientTLS *tls.Config) {
	t.Helper()
	pki := authtest.NewTutorialPKI(t, time.Now())
	srv := mqtt.New(&mqtt.Options{Logger: quiet})
	if cfg.Manager == nil {
		cfg.Manager = newManager(t, (&conformance.Fixture{}).Config())
	}
	cfg.Logger = quiet
	h, err := mochi.Attach(srv, cfg)
	require.NoError(t, err)
	tcp := h.Listener("tcp", "127.0.0.1:0", nil)
	tl := h.Listener("tls", "127.0.0.1:0", authtest.ServerTLSConfig(t, pki.Server))
	require.NoError(t, srv.AddListener(tcp))
	require.NoError(t, srv.AddListener(tl))
	require.NoError(t, srv.Serve())
	b := &broker{Server: srv, tb: t}
	t.Cleanup(func() {
		b.Stop()
		require.Eventually(t, func() bool { return h.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
	})
	return h, tcp.Address(), tl.Address(), authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", nil)
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// closedWithin reports whether the server closes conn within d (a read
// returns EOF or a reset rather than hitting the deadline).
func closedWithin(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// settle waits for the goroutine count to fall back to base (a few of the
// runtime's own may come and go).
func settle(t *testing.T, base int) {
	t.Helper()
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= base+2 }, 10*time.Second, 20*time.Millisecond,
		"goroutines: %d, baseline %d", runtime.NumGoroutine(), base)
}

// TestSilentPeersClosed: TCP peers that never send CONNECT, TLS peers that
// never start the handshake and TLS peers that complete it but never send
// CONNECT are all closed within ConnectTimeout and counted; a valid client
// connects meanwhile; the goroutines they held are released. mochi alone
// keeps such connections forever.
func TestSilentPeersClosed(t *testing.T) {
	const timeout = 2 * time.Second
	// Every peer dials from 127.0.0.1: the per-source share is the whole bound.
	h, tcpAddr, tlsAddr, clientTLS := guarded(t, mochi.Config{Limits: mqttconn.Limits{ConnectTimeout: timeout, MaxPendingPerSource: mqttconn.DefaultMaxPending}})
	base := runtime.NumGoroutine()
	const n = 20
	var conns []net.Conn
	for range n {
		conns = append(conns, dial(t, tcpAddr), dial(t, tlsAddr))
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tlsAddr, clientTLS)
		require.NoError(t, err)
		t.Cleanup(func() { _ = tc.Close() })
		conns = append(conns, tc)
	}
	require.Positive(t, h.Stats().Pending)

	// A valid client connects while they wait.
	c, _, err := conformance.Dial(t, tcpAddr, &paho.Connect{ClientID: "valid", CleanStart: true,
		Username: conformance.UserAlice, UsernameFlag: true, Password: []byte(conformance.PasswordGood), PasswordFlag: true}, nil)
	require.NoError(t, err)

	var wg sync.WaitGroup
	closed := make(chan bool, len(conns))
	for _, conn := range conns {
		wg.Go(func() { closed <- closedWithin(conn, timeout+3*time.Second) })
	}
	wg.Wait()
	close(closed)
	for ok := range closed {
		require.True(t, ok, "a silent peer was still open %v after its deadline", 3*time.Second)
	}
	// The listener counts a peer once mochi's handler for it has returned,
	// just after the close the peer saw.
	require.Eventually(t, func() bool { st := h.Stats(); return st.TimedOut == 3*n && st.Pending == 0 },
		5*time.Second, 10*time.Millisecond, "want %d timed out and none pending: %+v", 3*n, h.Stats())
	require.Equal(t, 1, h.Len(), "the valid client is still connected")
	require.NoError(t, c.Disconnect(&paho.Disconnect{}))
	<-c.Done()
	settle(t, base)
}

// TestOversizeConnectRefused: a CONNECT that declares 256 MiB is refused
// from its fixed header, without reading or allocating its body
// [MQTT-3.2.2-15]; mochi's default (no maximum) allocates the whole
// declared size for each such peer before any hook runs.
func TestOversizeConnectRefused(t *testing.T) {
	h, tcpAddr, _, _ := guarded(t, mochi.Config{})
	// 0x10 CONNECT, remaining length 268,435,455 (the largest MQTT allows).
	header := []byte{0x10, 0xFF, 0xFF, 0xFF, 0x7F}
	const n = 8
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		conn := dial(t, tcpAddr)
		_, err := conn.Write(header)
		require.NoError(t, err)
		require.True(t, closedWithin(conn, 5*time.Second), "an oversize CONNECT was not refused")
	}
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20),
		"%d oversize CONNECTs allocated %d MiB", n, (after.TotalAlloc-before.TotalAlloc)>>20)
	require.Eventually(t, func() bool { return h.Stats().TooLarge == n }, 5*time.Second, 10*time.Millisecond, "%+v", h.Stats())
}

// TestMaxPacketSizeDefault: Attach sets the server's maximum packet size
// when it has none, and keeps one that was set.
func TestMaxPacketSizeDefault(t *testing.T) {
	m := newManager(t, (&conformance.Fixture{}).Config())
	for _, tc := range []struct {
		server, config, want uint32
	}{
		{0, 0, mqttconn.DefaultMaxPacketSize},
		{0, 4096, 4096},
		{65536, 4096, 65536},
	} {
		srv := mqtt.New(&mqtt.Options{Logger: quiet})
		srv.Options.Capabilities.MaximumPacketSize = tc.server
		_, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet, Limits: mqttconn.Limits{MaxPacketSize: tc.config}})
		require.NoError(t, err)
		require.Equal(t, tc.want, srv.Options.Capabilities.MaximumPacketSize)
	}
}

// TestPendingBound: beyond MaxPending connections that have not
// authenticated, a new connection is closed at once and counted; when the
// pending ones go, valid clients connect again.
func TestPendingBound(t *testing.T) {
	const bound = 5
	h, tcpAddr, tlsAddr, _ := guarded(t, mochi.Config{Limits: mqttconn.Limits{MaxPending: bound, MaxPendingPerSource: bound, ConnectTimeout: time.Minute}})
	base := runtime.NumGoroutine()
	var pending []net.Conn
	for i := range bound {
		addr := tcpAddr
		if i%2 == 1 {
			addr = tlsAddr
		}
		pending = append(pending, dial(t, addr))
	}
	require.Eventually(t, func() bool { return h.Stats().Pending == bound }, 5*time.Second, 10*time.Millisecond)
	for range 3 {
		require.True(t, closedWithin(dial(t, tcpAddr), 2*time.Second), "a connection beyond the bound stayed open")
	}
	require.True(t, closedWithin(dial(t, tlsAddr), 2*time.Second), "a connection beyond the bound stayed open")
	require.Equal(t, uint64(4), h.Stats().OverPending)

	for _, c := range pending {
		_ = c.Close()
	}
	require.Eventually(t, func() bool { return h.Stats().Pending == 0 }, 5*time.Second, 10*time.Millisecond)
	c, _, err := conformance.Dial(t, tcpAddr, &paho.Connect{ClientID: "valid", CleanStart: true,
		Username: conformance.UserAlice, UsernameFlag: true, Password: []byte(conformance.PasswordGood), PasswordFlag: true}, nil)
	require.NoError(t, err)
	require.NoError(t, c.Disconnect(&paho.Disconnect{}))
	<-c.Done()
	st := h.Stats()
	require.Equal(t, uint64(bound), st.Invalid, "the closed pending peers are counted as invalid: %+v", st)
	require.Zero(t, st.TimedOut)
	settle(t, base)
}

// TestLimitsConfigValidated: negative limits are refused.
func TestLimitsConfigValidated(t *testing.T) {
	m := newManager(t, auth.Config{Authenticator: userAuthn, Authorizer: auth.AllowAuthenticated})
	for _, cfg := range []mochi.Config{
		{Manager: m, Limits: mqttconn.Limits{ConnectTimeout: -1}},
		{Manager: m, Limits: mqttconn.Limits{MaxPending: -1}},
	} {
		_, err := mochi.Attach(mqtt.New(&mqtt.Options{Logger: quiet}), cfg)
		require.Error(t, err)
	}
}

// TestTLSListener: mochi's own listener with an x509auth configuration
// still serves mTLS clients (without the CONNECT deadline).
func TestTLSListener(t *testing.T) {
	pki := authtest.NewTutorialPKI(t, time.Now())
	set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	require.NoError(t, err)
	a := newX509(t, truststore.NewMemory(set))
	m := newManager(t, auth.Config{Authenticator: auth.Chain{a}, Authorizer: mustPolicy(t, authtest.TutorialPolicy)})
	srv := mqtt.New(&mqtt.Options{Logger: quiet})
	h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
	require.NoError(t, err)
	ln := mochi.TLSListener("mtls", "127.0.0.1:0", a, authtest.ServerTLSConfig(t, pki.Server))
	require.NoError(t, srv.AddListener(ln))
	require.NoError(t, srv.Serve())
	b := &broker{Server: srv, tb: t}
	t.Cleanup(b.Stop)
	conn, err := connectIdle(ln.Address(), authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", pki.Thermostat), "thermostat")
	require.NoError(t, err)
	require.Equal(t, 1, h.Len())
	require.NoError(t, conn.Close())
	require.Eventually(t, func() bool { return h.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
}

// holdEstablish is a mochi hook that holds the client id in
// OnSessionEstablish, which mochi calls after the hook has judged the
// client and before it lists it among its clients, until release closes.
type holdEstablish struct {
	mqtt.HookBase
	id               string
	entered, release chan struct{}
}

func (h *holdEstablish) ID() string { return "hold-establish" }

func (h *holdEstablish) Provides(b byte) bool { return b == mqtt.OnSessionEstablish }

func (h *holdEstablish) OnSessionEstablish(cl *mqtt.Client, _ mpackets.Packet) {
	if cl.ID == h.id {
		close(h.entered)
		<-h.release
	}
}

// TestCloseWithConnectionsInFlight: mochi's Close returns at once while
// the hook's listener has a connection that never sent CONNECT, one in
// the middle of a two-round authentication, one whose authenticator call
// waits for its context, and one the hook has judged and mochi has not
// listed yet (mochi's own close of the listener's clients misses those
// four); each is closed. Before, Close waited for each until its peer
// left or its call returned (mochi waits for every connection it has
// begun to establish): for the silent one, its CONNECT deadline, here
// ten minutes; for the waiting call, for ever.
func TestCloseWithConnectionsInFlight(t *testing.T) {
	cfg := (&conformance.Fixture{}).Config()
	fixture := cfg.Authenticator
	waiting := make(chan struct{})
	cfg.Authenticator = auth.AuthenticatorFunc(func(ctx context.Context, r *auth.Request) auth.Result {
		if r.ClientID != "waits" {
			return fixture.Authenticate(ctx, r)
		}
		close(waiting)
		<-ctx.Done()
		return auth.UnavailableResult(ctx.Err())
	})
	m := newManager(t, cfg)
	srv := mqtt.New(&mqtt.Options{Logger: quiet})
	hold := &holdEstablish{id: "held", entered: make(chan struct{}), release: make(chan struct{})}
	require.NoError(t, srv.AddHook(hold, nil))
	h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet, Limits: mqttconn.Limits{ConnectTimeout: 10 * time.Minute}})
	require.NoError(t, err)
	ln := h.Listener("tcp", "127.0.0.1:0", nil)
	require.NoError(t, srv.AddListener(ln))
	require.NoError(t, srv.Serve())
	addr := ln.Address()

	silent := dial(t, addr)
	challenged := rawConnect(t, addr, conformance.MethodChallenge, "hello")
	require.Equal(t, byte(0x0F), readPacket(t, challenged).Type, "the first round's AUTH")
	waits := v311ConnectPassword(t, addr, "waits", conformance.UserAlice, conformance.PasswordGood)
	select {
	case <-waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("the authenticator was not called")
	}
	held := v311ConnectPassword(t, addr, "held", conformance.UserAlice, conformance.PasswordGood)
	select {
	case <-hold.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the valid client did not reach OnSessionEstablish")
	}
	require.Eventually(t, func() bool { return h.Stats().Pending == 3 }, 5*time.Second, 10*time.Millisecond,
		"the silent, the challenged and the waiting connections pending: %+v", h.Stats())

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	// mochi's sweep of its listed clients has passed when the held client
	// goes on to be listed.
	time.Sleep(200 * time.Millisecond)
	close(hold.release)
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("mochi's Close waited for the connections in flight")
	}
	for name, c := range map[string]net.Conn{"silent": silent, "challenged": challenged, "waits": waits, "held": held} {
		require.True(t, closedWithin(c, 2*time.Second), "the %s connection is still open", name)
	}
	require.Eventually(t, func() bool { return h.Len() == 0 && m.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
}
