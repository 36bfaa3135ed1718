package mochi_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/revocation"
	"github.com/mqttauth/mqttauth/revocation/revocationtest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// resumeConnect dials addr over TLS, sends a v5 CONNECT and reads the
// CONNACK. It returns the TLS state as the client saw it when its
// handshake ended (a TLS 1.3 server judges the client, or its resumed
// session, after that: a refusal arrives as an alert on the first read),
// the CONNACK, and the first error.
func resumeConnect(addr string, cfg *tls.Config, id string) (tls.ConnectionState, *packets.Connack, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, nil, err
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.KeepAlive, c.CleanStart = "MQTT", 5, id, 30, true
	if _, err := cp.WriteTo(conn); err != nil {
		// Refused and closed before the CONNECT arrived: the alert may
		// still be there to read.
		if _, rerr := conn.Read(make([]byte, 1)); rerr != nil && strings.Contains(rerr.Error(), "remote error") {
			return cs, nil, rerr
		}
		return cs, nil, err
	}
	p, err := packets.ReadPacket(conn)
	if err != nil {
		return cs, nil, err
	}
	ca, ok := p.Content.(*packets.Connack)
	if !ok {
		return cs, nil, fmt.Errorf("first packet is not CONNACK: %v", p)
	}
	if ca.ReasonCode == 0 {
		_, _ = packets.NewControlPacket(packets.DISCONNECT).WriteTo(conn)
	}
	return cs, ca, nil
}

// TestResumeRevoked: TLS 1.3 session resumption on the adapter's x509auth
// listener, over real sockets, as gateway's TestResumeRevoked does for the
// gateway. A ticket resumes (the positive control); once the certificate
// is revoked by a CRL in the hot truststore (crl) or its CA is removed
// (ca_removed), the resumption is refused in the handshake (x509auth's
// VerifyConnection, which crypto/tls runs on resumed sessions: the client
// reads a bad_certificate alert); once an OCSP responder says revoked
// (ocsp: the RevocationChecker runs at CONNECT), the resumed handshake
// succeeds and CONNACK is 0x87.
func TestResumeRevoked(t *testing.T) {
	type setup struct {
		a         *x509auth.Authenticator
		client    *tls.Config
		server    *authtest.Leaf
		revoke    func()
		errIs     error
		connackIs byte
	}
	newA := func(t *testing.T, store truststore.Source, rc x509auth.RevocationChecker) *x509auth.Authenticator {
		cfg := x509auth.Config{Trust: store, Logger: quiet}
		if rc != nil {
			cfg.Revocation = rc
		}
		a, err := x509auth.New(cfg)
		require.NoError(t, err)
		return a
	}
	set := func(t *testing.T, cas []*x509.Certificate, crls []*x509.RevocationList) *truststore.Set {
		s, err := truststore.NewSet(cas, crls)
		require.NoError(t, err)
		return s
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) setup
	}{
		{"crl", func(t *testing.T) setup {
			now := time.Now()
			pki := authtest.NewTutorialPKI(t, now)
			store := truststore.NewMemory(set(t, []*x509.Certificate{pki.FabrikamRoot.Cert}, nil))
			crl, err := x509.ParseRevocationList(pki.FabrikamIntermediate.CRL(t, 1, now, now.Add(time.Hour), pki.Thermostat.Cert))
			require.NoError(t, err)
			return setup{a: newA(t, store, nil), client: authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", pki.Thermostat),
				server: pki.Server, errIs: x509auth.ErrRevoked, revoke: func() {
					store.Replace(set(t, []*x509.Certificate{pki.FabrikamRoot.Cert}, []*x509.RevocationList{crl}))
				}}
		}},
		{"ca_removed", func(t *testing.T) setup {
			pki := authtest.NewTutorialPKI(t, time.Now())
			store := truststore.NewMemory(set(t, []*x509.Certificate{pki.FabrikamRoot.Cert, pki.ContosoRoot.Cert}, nil))
			return setup{a: newA(t, store, nil), client: authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", pki.Thermostat),
				server: pki.Server, errIs: x509auth.ErrUntrusted, revoke: func() {
					store.Replace(set(t, []*x509.Certificate{pki.ContosoRoot.Cert}, nil))
				}}
		}},
		{"ocsp", func(t *testing.T) setup {
			ca := authtest.NewRootCA(t, "OCSP Test CA")
			resp := revocationtest.NewResponder(t, ca)
			leaf := ca.Leaf(t, "thermostat", authtest.WithOCSPServer(resp.OCSPURL()))
			server := ca.Leaf(t, "localhost", authtest.WithDNSNames("localhost"), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
			rc, err := revocation.New(revocation.Config{OCSP: true, Mode: revocation.HardFail, Logger: quiet,
				RefreshBefore: 2 * time.Hour, RefreshInterval: time.Hour, RetryInterval: 10 * time.Millisecond})
			require.NoError(t, err)
			t.Cleanup(func() { _ = rc.Close() })
			return setup{a: newA(t, truststore.NewMemory(set(t, []*x509.Certificate{ca.Cert}, nil)), rc),
				client: authtest.ClientTLSConfig(t, ca, "localhost", leaf), server: server, connackIs: 0x87, revoke: func() {
					resp.Set(leaf.Cert, revocationtest.Revoked)
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					require.Eventually(t, func() bool {
						rc.Refresh(ctx)
						return errors.Is(rc.Check(ctx, []*x509.Certificate{leaf.Cert, ca.Cert}), revocation.ErrRevoked)
					}, 5*time.Second, 20*time.Millisecond, "the checker never saw the revocation")
				}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.setup(t)
			m := newManager(t, auth.Config{Authenticator: auth.Chain{s.a}, Authorizer: auth.AllowAuthenticated})
			// Record the server's verdicts: resumed or not, and x509auth's error.
			var mu sync.Mutex
			type verdict struct {
				resumed bool
				err     error
			}
			var verdicts []verdict
			last := func() verdict {
				mu.Lock()
				defer mu.Unlock()
				require.NotEmpty(t, verdicts)
				return verdicts[len(verdicts)-1]
			}
			cfg := s.a.ServerTLSConfig(authtest.ServerTLSConfig(t, s.server))
			verify := cfg.VerifyConnection
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				err := verify(cs)
				mu.Lock()
				verdicts = append(verdicts, verdict{cs.DidResume, err})
				mu.Unlock()
				return err
			}
			srv := mqtt.New(&mqtt.Options{Logger: quiet})
			h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
			require.NoError(t, err)
			ln := h.Listener("mtls", "127.0.0.1:0", cfg)
			require.NoError(t, srv.AddListener(ln))
			require.NoError(t, srv.Serve())
			t.Cleanup(func() {
				require.NoError(t, srv.Close())
				require.Eventually(t, func() bool { return h.Len() == 0 && m.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
			})
			s.client.ClientSessionCache = tls.NewLRUClientSessionCache(4)

			cs, ca, err := resumeConnect(ln.Address(), s.client, "full")
			require.NoError(t, err)
			require.Equal(t, byte(0), ca.ReasonCode)
			require.Equal(t, uint16(tls.VersionTLS13), cs.Version)
			require.False(t, cs.DidResume)
			// The positive control.
			cs, ca, err = resumeConnect(ln.Address(), s.client, "resumed")
			require.NoError(t, err)
			require.Equal(t, byte(0), ca.ReasonCode)
			require.True(t, cs.DidResume, "the client should resume its session")
			require.Equal(t, verdict{resumed: true}, last())

			s.revoke()
			cs, ca, err = resumeConnect(ln.Address(), s.client, "revoked")
			require.True(t, cs.DidResume, "the client offered its ticket and the server accepted it")
			v := last()
			require.True(t, v.resumed, "the server judged a resumed session")
			if s.errIs != nil {
				require.Error(t, err, "resumed after revocation: CONNACK %v", ca)
				require.ErrorContains(t, err, "remote error: tls: bad certificate")
				require.ErrorIs(t, v.err, s.errIs)
			} else {
				require.NoError(t, err)
				require.NoError(t, v.err, "the handshake does not consult the RevocationChecker")
				require.Equal(t, s.connackIs, ca.ReasonCode)
			}
		})
	}
}
