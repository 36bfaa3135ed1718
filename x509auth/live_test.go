package x509auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// broker is a TLS listener whose connections become auth.Sessions, as an
// adapter would make them.
type broker struct {
	ln   net.Listener
	m    *auth.Manager
	wg   sync.WaitGroup
	mu   sync.Mutex
	sess map[string]*conn // by CN
	errs chan error       // handshake failures
}

type conn struct {
	s    *auth.Session
	rec  *authtest.Conn
	resp auth.Response
	cs   tls.ConnectionState
}

func startBroker(t *testing.T, cfg *tls.Config, m *auth.Manager) *broker {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	b := &broker{ln: ln, m: m, sess: map[string]*conn{}, errs: make(chan error, 100)}
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.wg.Go(func() { b.serve(c.(*tls.Conn)) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.sess {
			c.s.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *broker) serve(tc *tls.Conn) {
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		b.errs <- err
		return
	}
	cs := tc.ConnectionState()
	rec := authtest.NewConn()
	s := b.m.NewSession(auth.ConnFunc(func(final auth.Packet) { rec.Close(final); tc.Close() }))
	resp := s.Connect(context.Background(), &auth.Request{ClientID: cs.PeerCertificates[0].Subject.CommonName, TLS: &cs})
	c := &conn{s: s, rec: rec, resp: resp, cs: cs}
	b.mu.Lock()
	b.sess[cs.PeerCertificates[0].Subject.CommonName] = c
	b.mu.Unlock()
	tc.Write([]byte{byte(resp.Packet.Code)}) // lets the client read its session ticket
	tc.SetDeadline(time.Time{})
	io.Copy(io.Discard, tc) // until the client or the session closes
	s.Close()
}

func (b *broker) session(cn string) *conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sess[cn]
}

// dial connects as leaf and reads the broker's one-byte answer. It returns
// the answer, or the error (a refused certificate shows up here in TLS 1.3).
func dial(t *testing.T, addr string, cfg *tls.Config) (byte, bool, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return 0, false, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [1]byte
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return 0, false, err
	}
	return buf[0], c.ConnectionState().DidResume, nil
}

// TestLiveRevocation: real TLS handshakes on loopback, real sessions, real
// file rewrites; a CRL that revokes the thermostat, then the removal of the
// Fabrikam root, disconnect exactly the clients that lost trust, each
// within a second, with DISCONNECT 0x87.
func TestLiveRevocation(t *testing.T) {
	now := time.Now()
	pki := authtest.NewTutorialPKI(t, now)
	caDir, crlDir := t.TempDir(), t.TempDir()
	caFile := authtest.WriteFile(t, filepath.Join(caDir, "client_ca.pem"), authtest.CertsPEM(pki.FabrikamRoot.Cert, pki.FabrikamIntermediate.Cert))
	store, err := truststore.New(truststore.Config{
		CAPaths: []string{caFile}, CRLPaths: []string{crlDir},
		Debounce: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	defer store.Close()
	a, err := x509auth.New(x509auth.Config{Trust: store, Mappings: tutorialMappings, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{a}, Authorizer: auth.AllowAuthenticated, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	stop := a.RecheckOnChange(m, store)
	defer stop()
	srv := startBroker(t, a.ServerTLSConfig(authtest.ServerTLSConfig(t, pki.Server)), m)
	addr := srv.ln.Addr().String()

	caches := map[string]tls.ClientSessionCache{}
	clientCfg := func(l *authtest.Leaf) *tls.Config {
		cfg := authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", l)
		if caches[l.Cert.Subject.CommonName] == nil {
			caches[l.Cert.Subject.CommonName] = tls.NewLRUClientSessionCache(4)
		}
		cfg.ClientSessionCache = caches[l.Cert.Subject.CommonName]
		return cfg
	}
	leaves := []*authtest.Leaf{pki.Thermostat, pki.Hygrometer, pki.Heater, pki.Lightbulb}
	for _, l := range leaves {
		code, _, err := dial(t, addr, clientCfg(l))
		require.NoError(t, err)
		require.Equal(t, byte(0), code)
	}
	require.Eventually(t, func() bool { return m.Len() == 4 }, 5*time.Second, 5*time.Millisecond)
	p := srv.session("lightbulb").s.Principal()
	require.Equal(t, "fabrikam", must(p.Attribute("manufacturer")))

	// Session resumption works before the change.
	_, resumed, err := dial(t, addr, clientCfg(pki.Heater))
	require.NoError(t, err)
	require.True(t, resumed, "the client should resume")
	require.Eventually(t, func() bool { return m.Len() == 5 }, 5*time.Second, 5*time.Millisecond)

	// 1. A CRL revokes the thermostat.
	start := time.Now()
	authtest.WriteFile(t, filepath.Join(crlDir, "fabrikam.crl"),
		authtest.CRLPEM(pki.FabrikamIntermediate.CRL(t, 1, now, now.Add(time.Hour), pki.Thermostat.Cert)))
	th := srv.session("thermostat")
	select {
	case <-th.rec.Done():
	case <-time.After(time.Second):
		t.Fatal("thermostat not disconnected within a second of the CRL write")
	}
	t.Logf("CRL write to DISCONNECT: %v", time.Since(start))
	final, _ := th.rec.Final()
	require.Equal(t, auth.Packet{Type: auth.DISCONNECT, Code: auth.NotAuthorized, Reason: "access revoked"}, final)
	for _, cn := range []string{"hygrometer", "heater", "lightbulb"} {
		_, closed := srv.session(cn).rec.Final()
		require.False(t, closed, cn)
	}
	// Its new handshakes, full or resumed, fail at TLS.
	_, _, err = dial(t, addr, clientCfg(pki.Thermostat))
	require.Error(t, err)
	require.ErrorContains(t, <-srv.errs, "revoked")

	// 2. The Fabrikam CAs are removed from the bundle: every client goes.
	start = time.Now()
	authtest.WriteFile(t, caFile, authtest.CertsPEM(pki.ContosoRoot.Cert))
	for _, cn := range []string{"hygrometer", "heater", "lightbulb"} {
		c := srv.session(cn)
		select {
		case <-c.rec.Done():
		case <-time.After(time.Second):
			t.Fatalf("%s not disconnected within a second of the CA removal", cn)
		}
		final, _ := c.rec.Final()
		require.Equal(t, auth.NotAuthorized, final.Code)
	}
	t.Logf("CA removal to DISCONNECT: %v", time.Since(start))
	require.Eventually(t, func() bool { return m.Len() == 0 }, 5*time.Second, 5*time.Millisecond)
	// A resumed session of a client whose CA went is refused too:
	// VerifyConnection runs on resumption.
	_, _, err = dial(t, addr, clientCfg(pki.Heater))
	require.Error(t, err)
	require.ErrorIs(t, <-srv.errs, x509auth.ErrUntrusted)

	// 3. Garbage in the CA file: the last good set stays, nothing changes.
	authtest.WriteFile(t, caFile, []byte("-----BEGIN CERTIFICATE-----\nMIIB"))
	require.Eventually(t, func() bool { return store.Err() != nil }, 5*time.Second, 5*time.Millisecond)
	require.True(t, store.Current().Contains(pki.ContosoRoot.Cert))
}

func must(v string, ok bool) string {
	if !ok {
		return "<missing>"
	}
	return v
}

// TestRecheck100k: a re-check of 100,000 live X.509 sessions (and some
// without a certificate) takes well under a second and disconnects exactly
// the revoked ones.
func TestRecheck100k(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const sessions, leaves = 100_000, 200
	// The real clock: the sessions arm real expiry timers, which the fake
	// clock keeps in a slice that is slow to search at this size.
	now := time.Now()
	root := authtest.NewRootCAAt(t, now, "Root")
	inter := root.Intermediate(t, "Intermediate")
	set, err := truststore.NewSet([]*x509.Certificate{root.Cert}, nil)
	require.NoError(t, err)
	store := truststore.NewMemory(set)
	a, err := x509auth.New(x509auth.Config{Trust: store, Mappings: tutorialMappings, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: auth.AllowAuthenticated, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	states := make([]*tls.ConnectionState, leaves)
	var certs []*x509.Certificate
	for i := range states {
		l := inter.Leaf(t, "dev")
		certs = append(certs, l.Cert)
		// Each session has its own ConnectionState, as connections do; a
		// leaf is shared by 500 sessions to keep the test's setup short.
		states[i] = &tls.ConnectionState{PeerCertificates: l.Chain}
	}
	conns := make([]*authtest.Conn, sessions)
	for i := range sessions {
		conns[i] = authtest.NewConn()
		s := m.NewSession(conns[i])
		cs := *states[i%leaves]
		resp := s.Connect(context.Background(), &auth.Request{ClientID: "c", TLS: &cs})
		require.NoError(t, resp.Err)
	}
	require.Equal(t, sessions, m.Len())

	// Revoke leaf 0: 500 sessions.
	crl, err := x509.ParseRevocationList(inter.CRL(t, 1, now, now.Add(time.Hour), certs[0]))
	require.NoError(t, err)
	revoking, err := truststore.NewSet([]*x509.Certificate{root.Cert, inter.Cert}, []*x509.RevocationList{crl})
	require.NoError(t, err)
	store.Replace(revoking)
	start := time.Now()
	rep := m.Recheck(context.Background(), a.Check)
	took := time.Since(start)
	t.Logf("re-checked %d sessions in %v (%v per session)", rep.Checked, took, took/time.Duration(rep.Checked))
	require.Equal(t, sessions, rep.Checked)
	require.Equal(t, sessions/leaves, rep.Disconnected)
	budget := time.Second
	if raceEnabled {
		budget *= 10 // the race detector slows everything down
	}
	require.Less(t, took, budget)
	for i := 0; i < sessions; i += leaves {
		_, closed := conns[i].Final()
		require.True(t, closed)
	}
	_, closed := conns[1].Final()
	require.False(t, closed)
}

func TestRecheckLeavesCertlessSessions(t *testing.T) {
	set, _ := truststore.NewSet(nil, nil)
	a := newAuthenticator(t, set, authtest.NewClock(t0))
	other := auth.AuthenticatorFunc(func(context.Context, *auth.Request) auth.Result {
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: "u"}))
	})
	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{a, other}, Authorizer: auth.AllowAuthenticated, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	rec := authtest.NewConn()
	s := m.NewSession(rec)
	require.NoError(t, s.Connect(context.Background(), &auth.Request{ClientID: "c", TLS: &tls.ConnectionState{}}).Err)
	rep := m.Recheck(context.Background(), a.Check)
	require.Equal(t, auth.RecheckReport{Checked: 1}, rep)
	require.True(t, errors.Is(a.Check(context.Background(), s), nil))
}
