package revocation_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/revocation"
	"github.com/mqttauth/mqttauth/revocation/revocationtest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// x509Fixture is an x509auth.Authenticator that consults a Checker, and a
// Manager over it.
type x509Fixture struct {
	*fixture
	checker *revocation.Checker
	a       *x509auth.Authenticator
	m       *auth.Manager
}

func newX509Fixture(t *testing.T, src string, cfg revocation.Config) *x509Fixture {
	t.Helper()
	f := newFixture(t, src == "ocsp", src == "crl")
	cfg.OCSP, cfg.CRLDistributionPoints = src == "ocsp", src == "crl"
	c := f.checker(t, cfg)
	set, err := truststore.NewSet([]*x509.Certificate{f.ca.Cert}, nil)
	require.NoError(t, err)
	a, err := x509auth.New(x509auth.Config{Trust: set, Revocation: c, Now: f.clock.Now, Logger: quiet})
	require.NoError(t, err)
	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{a}, Authorizer: auth.AllowAuthenticated, Logger: quiet})
	require.NoError(t, err)
	return &x509Fixture{fixture: f, checker: c, a: a, m: m}
}

func connect(t *testing.T, m *auth.Manager, leaf *authtest.Leaf) (*auth.Session, *authtest.Conn, auth.Response) {
	t.Helper()
	conn := authtest.NewConn()
	s := m.NewSession(conn)
	t.Cleanup(s.Close)
	res := s.Connect(context.Background(), &auth.Request{ClientID: "c1", ProtocolVersion: 5,
		TLS: &tls.ConnectionState{PeerCertificates: leaf.Chain}})
	return s, conn, res
}

// TestConnect: through x509auth and a Manager, CONNECT gets CONNACK 0x87
// for a revoked certificate and 0x88 (Server unavailable) in HardFail mode
// when no answer can be had.
func TestConnect(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status revocationtest.Status
		fault  revocationtest.Fault
		mode   revocation.Mode
		want   auth.ReasonCode
	}{
		{"good", revocationtest.Good, revocationtest.NoFault, revocation.HardFail, auth.Success},
		{"revoked", revocationtest.Revoked, revocationtest.NoFault, revocation.HardFail, auth.NotAuthorized},
		{"unknown", revocationtest.Unknown, revocationtest.NoFault, revocation.HardFail, auth.NotAuthorized},
		{"down_hard", revocationtest.Good, revocationtest.Down, revocation.HardFail, auth.ServerUnavailable},
		{"down_soft", revocationtest.Good, revocationtest.Down, revocation.SoftFail, auth.Success},
		{"stale_hard", revocationtest.Good, revocationtest.Stale, revocation.HardFail, auth.ServerUnavailable},
		{"wrong_key_hard", revocationtest.Revoked, revocationtest.WrongKey, revocation.HardFail, auth.ServerUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newX509Fixture(t, "ocsp", revocation.Config{Mode: tc.mode})
			f.resp.Set(f.leaf.Cert, tc.status)
			f.resp.SetFault(tc.fault)
			_, _, res := connect(t, f.m, f.leaf)
			require.Equal(t, auth.CONNACK, res.Packet.Type)
			require.Equal(t, tc.want, res.Packet.Code, "%v", res.Err)
		})
	}
}

// TestCachedChainJudgedAgain: x509auth's verified-chain cache does not
// bypass the revocation status: the same parsed certificate, verified
// before its revocation, is refused after it.
func TestCachedChainJudgedAgain(t *testing.T) {
	f := newX509Fixture(t, "ocsp", revocation.Config{})
	req := &auth.Request{ClientID: "c1", TLS: &tls.ConnectionState{PeerCertificates: f.leaf.Chain}}
	ctx := context.Background()
	require.Equal(t, auth.Pass, f.a.Authenticate(ctx, req).Outcome)
	f.resp.Set(f.leaf.Cert, revocationtest.Revoked)
	f.clock.Add(2 * time.Hour) // past nextUpdate: refreshed
	f.checker.Refresh(ctx)
	res := f.a.Authenticate(ctx, req)
	require.Equal(t, auth.Fail, res.Outcome)
	require.ErrorIs(t, res.Err, x509auth.ErrRevoked)
}

// TestRevokedWhileConnected: a certificate revoked while its client is
// connected is found by the background refresh, which re-checks the live
// sessions: that client gets DISCONNECT 0x87, the others stay. Both ways
// of hearing of it work: RecheckOnRevoke with the Manager, and the
// Checker as an auth.Watch of a Manager built with it (Checker.Watch).
func TestRevokedWhileConnected(t *testing.T) {
	for _, src := range []string{"ocsp", "crl"} {
		for _, via := range []string{"recheck_on_revoke", "watch"} {
			t.Run(src+"/"+via, func(t *testing.T) {
				revokedWhileConnected(t, src, via)
			})
		}
	}
}

func revokedWhileConnected(t *testing.T, src, via string) {
	f := newX509Fixture(t, src, revocation.Config{RefreshBefore: 10 * time.Minute})
	other := f.newLeaf(t, "other", src == "ocsp", src == "crl")
	if via == "watch" {
		m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{f.a}, Authorizer: auth.AllowAuthenticated, Logger: quiet,
			Watches: []auth.Watch{f.checker.Watch(f.a.Check, 0)}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = m.Close() })
		f.m = m
	} else {
		stop := f.checker.RecheckOnRevoke(f.m, f.a.Check, 0)
		defer stop()
	}

	_, conn, res := connect(t, f.m, f.leaf)
	require.Equal(t, auth.Success, res.Packet.Code, "%v", res.Err)
	_, otherConn, res := connect(t, f.m, other)
	require.Equal(t, auth.Success, res.Packet.Code, "%v", res.Err)

	f.resp.Set(f.leaf.Cert, revocationtest.Revoked)
	f.clock.Add(55 * time.Minute) // within RefreshBefore of nextUpdate
	f.checker.Refresh(context.Background())

	select {
	case <-conn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked client was not disconnected")
	}
	final, _ := conn.Final()
	require.Equal(t, auth.DISCONNECT, final.Type)
	require.Equal(t, auth.NotAuthorized, final.Code)
	_, closed := otherConn.Final()
	require.False(t, closed, "the other client stays")
	require.Equal(t, 1, f.m.Len())
	require.Equal(t, uint64(1), f.checker.Stats().Revocations)
}

// TestConnectedClient: what a re-check does to a connected client when
// its certificate's next answer is each thing the responder can send. A
// client is disconnected (0x87) for a revocation, and in HardFail mode for
// an "unknown" answer, as CONNECT would refuse it; never for want of an
// answer, even in HardFail mode.
func TestConnectedClient(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status revocationtest.Status
		fault  revocationtest.Fault
		delay  time.Duration
		mode   revocation.Mode
		drop   bool
	}{
		{"revoked", revocationtest.Revoked, revocationtest.NoFault, 0, revocation.HardFail, true},
		{"revoked_soft", revocationtest.Revoked, revocationtest.NoFault, 0, revocation.SoftFail, true},
		{"unknown", revocationtest.Unknown, revocationtest.NoFault, 0, revocation.HardFail, true},
		{"unknown_soft", revocationtest.Unknown, revocationtest.NoFault, 0, revocation.SoftFail, false},
		{"good", revocationtest.Good, revocationtest.NoFault, 0, revocation.HardFail, false},
		{"down", revocationtest.Good, revocationtest.Down, 0, revocation.HardFail, false},
		{"slow", revocationtest.Revoked, revocationtest.NoFault, time.Hour, revocation.HardFail, false}, // never in time
		{"stale", revocationtest.Good, revocationtest.Stale, 0, revocation.HardFail, false},
		{"wrong_key", revocationtest.Revoked, revocationtest.WrongKey, 0, revocation.HardFail, false},
		{"bad_signature", revocationtest.Revoked, revocationtest.BadSignature, 0, revocation.HardFail, false},
		{"malformed", revocationtest.Good, revocationtest.Malformed, 0, revocation.HardFail, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Only the slow answer is to time out: the others must arrive
			// within Timeout however loaded the machine is. The slow one
			// never arrives (the responder gives up when the client does).
			timeout := time.Minute
			if tc.delay > 0 {
				timeout = 200 * time.Millisecond
			}
			f := newX509Fixture(t, "ocsp", revocation.Config{Mode: tc.mode, Timeout: timeout})
			_, conn, res := connect(t, f.m, f.leaf)
			require.Equal(t, auth.Success, res.Packet.Code, "%v", res.Err)
			// In SoftFail mode CONNECT does not wait for the first answer:
			// wait for it here, so that it is the answer before the
			// change below.
			f.checker.Refresh(context.Background())
			require.Equal(t, uint64(1), f.checker.Stats().OCSPFetches)
			f.resp.Set(f.leaf.Cert, tc.status)
			f.resp.SetFault(tc.fault)
			f.resp.SetDelay(tc.delay)
			f.clock.Add(2 * time.Hour) // the first answer has expired
			// Refresh waits for the fetches of the answers due. The first
			// fetch may still be finishing after it stored its answer (it
			// ran in the background): a Refresh then joins it and returns
			// with that answer, now expired. The second one then fetches
			// anew; after a fetch that did, it has nothing due.
			f.checker.Refresh(context.Background())
			f.checker.Refresh(context.Background())
			require.Equal(t, uint64(2), f.checker.Stats().OCSPFetches, "one fetch after the change")
			rep := f.m.Recheck(context.Background(), f.a.Check)
			final, closed := conn.Final()
			require.Equal(t, tc.drop, closed, "%+v", f.checker.Stats())
			if tc.drop {
				require.Equal(t, 1, rep.Disconnected)
				require.Equal(t, auth.DISCONNECT, final.Type)
				require.Equal(t, auth.NotAuthorized, final.Code)
			}
		})
	}
}

// TestUnavailableKeepsConnected: a responder that goes down does not
// disconnect connected clients, even in HardFail mode.
func TestUnavailableKeepsConnected(t *testing.T) {
	f := newX509Fixture(t, "ocsp", revocation.Config{})
	_, conn, res := connect(t, f.m, f.leaf)
	require.Equal(t, auth.Success, res.Packet.Code)
	f.resp.SetFault(revocationtest.Down)
	f.clock.Add(2 * time.Hour)
	f.checker.Refresh(context.Background())
	rep := f.m.Recheck(context.Background(), f.a.Check)
	require.Equal(t, 0, rep.Disconnected)
	_, closed := conn.Final()
	require.False(t, closed)
}
