package gateway_test

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
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/gateway"
	"github.com/mqttauth/mqttauth/revocation"
	"github.com/mqttauth/mqttauth/revocation/revocationtest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// tlsConnect dials addr over TLS, sends a v5 CONNECT as id and reads the
// CONNACK, then sends DISCONNECT and closes. It returns the TLS state as
// the client saw it when its handshake ended (in TLS 1.3 the server
// judges the client's certificate, or the resumed session, after that:
// a refusal then arrives as an alert on the first read), the CONNACK, and
// the first error.
func tlsConnect(addr string, cfg *tls.Config, id string) (tls.ConnectionState, *packets.Connack, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, nil, err
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ClientID, c.KeepAlive, c.CleanStart = id, 30, true
	if _, err := cp.WriteTo(conn); err != nil {
		// The server refused and closed before the CONNECT arrived: its
		// alert may still be there to read.
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
		_, _ = (&packets.Disconnect{Properties: &packets.Properties{}}).WriteTo(conn)
	}
	return cs, ca, nil
}

// handshakes records the server's verdicts on client certificates:
// whether the handshake resumed a session, and x509auth's error.
type handshakes struct {
	mu  sync.Mutex
	log []handshake
}

type handshake struct {
	resumed bool
	err     error
}

// wrap makes cfg record every VerifyConnection verdict.
func (h *handshakes) wrap(cfg *tls.Config) *tls.Config {
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verify(cs)
		h.mu.Lock()
		h.log = append(h.log, handshake{resumed: cs.DidResume, err: err})
		h.mu.Unlock()
		return err
	}
	return cfg
}

func (h *handshakes) last(t *testing.T) handshake {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	require.NotEmpty(t, h.log)
	return h.log[len(h.log)-1]
}

// TestResumeRevoked: TLS 1.3 session resumption through the gateway's
// x509auth listener, over real sockets, in front of mosquitto. A client
// connects with a full mTLS handshake and gets a session ticket; a
// resumed connection with it works (DidResume on both sides: the positive
// control). Then its certificate loses trust, and the next resumption
// with a ticket issued before is refused:
//
//   - crl: a CRL revoking it is added to the hot truststore;
//   - ca_removed: its root CA is removed from the truststore;
//
// both refuse in the handshake: crypto/tls calls x509auth's
// VerifyConnection on resumed sessions too (VerifyPeerCertificate it does
// not call), which re-checks the session's certificates against the
// current trust set; the client sees a bad_certificate alert on its
// first read and the broker never sees the client. And
//
//   - ocsp: an OCSP responder starts answering "revoked" (x509auth's
//     RevocationChecker, which runs at CONNECT, never in the handshake):
//     the resumed handshake succeeds and the CONNECT gets CONNACK 0x87.
func TestResumeRevoked(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup returns the Authenticator, the client's TLS configuration,
		// the server's certificate, and the revocation to apply.
		setup func(t *testing.T) (*x509auth.Authenticator, *tls.Config, *authtest.Leaf, func())
		// Either a TLS alert with the server's error wrapping errIs, or
		// CONNACK code.
		errIs error
		code  byte
	}{
		{name: "crl", errIs: x509auth.ErrRevoked, setup: func(t *testing.T) (*x509auth.Authenticator, *tls.Config, *authtest.Leaf, func()) {
			now := time.Now()
			pki := authtest.NewTutorialPKI(t, now)
			store := truststore.NewMemory(mustSet(t, []*x509.Certificate{pki.FabrikamRoot.Cert}, nil))
			a := newX509(t, store, nil)
			crl, err := x509.ParseRevocationList(pki.FabrikamIntermediate.CRL(t, 1, now, now.Add(time.Hour), pki.Thermostat.Cert))
			require.NoError(t, err)
			return a, authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", pki.Thermostat), pki.Server, func() {
				store.Replace(mustSet(t, []*x509.Certificate{pki.FabrikamRoot.Cert}, []*x509.RevocationList{crl}))
			}
		}},
		{name: "ca_removed", errIs: x509auth.ErrUntrusted, setup: func(t *testing.T) (*x509auth.Authenticator, *tls.Config, *authtest.Leaf, func()) {
			pki := authtest.NewTutorialPKI(t, time.Now())
			store := truststore.NewMemory(mustSet(t, []*x509.Certificate{pki.FabrikamRoot.Cert, pki.ContosoRoot.Cert}, nil))
			a := newX509(t, store, nil)
			return a, authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", pki.Thermostat), pki.Server, func() {
				store.Replace(mustSet(t, []*x509.Certificate{pki.ContosoRoot.Cert}, nil))
			}
		}},
		{name: "ocsp", code: 0x87, setup: func(t *testing.T) (*x509auth.Authenticator, *tls.Config, *authtest.Leaf, func()) {
			ca := authtest.NewRootCA(t, "OCSP Test CA")
			resp := revocationtest.NewResponder(t, ca)
			leaf := ca.Leaf(t, "thermostat", authtest.WithOCSPServer(resp.OCSPURL()))
			server := ca.Leaf(t, "localhost", authtest.WithDNSNames("localhost"), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
			// Every answer is due for a refresh RetryInterval after its
			// fetch (RefreshBefore is longer than its span): Refresh below
			// fetches it again.
			rc, err := revocation.New(revocation.Config{OCSP: true, Mode: revocation.HardFail, Logger: testLogger(t),
				RefreshBefore: 2 * time.Hour, RefreshInterval: time.Hour, RetryInterval: 10 * time.Millisecond})
			require.NoError(t, err)
			t.Cleanup(func() { _ = rc.Close() })
			a := newX509(t, truststore.NewMemory(mustSet(t, []*x509.Certificate{ca.Cert}, nil)), rc)
			return a, authtest.ClientTLSConfig(t, ca, "localhost", leaf), server, func() {
				resp.Set(leaf.Cert, revocationtest.Revoked)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				require.Eventually(t, func() bool {
					rc.Refresh(ctx)
					return errors.Is(rc.Check(ctx, []*x509.Certificate{leaf.Cert, ca.Cert}), revocation.ErrRevoked)
				}, 5*time.Second, 20*time.Millisecond, "the checker never saw the revocation")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, clientTLS, server, revoke := tc.setup(t)
			var hs handshakes
			s := startStack(t, auth.Config{Authenticator: auth.Chain{a}, Authorizer: auth.AllowAuthenticated}, "", func(c *gateway.Config) {
				c.TLS = hs.wrap(a.ServerTLSConfig(authtest.ServerTLSConfig(t, server)))
			})
			clientTLS.ClientSessionCache = tls.NewLRUClientSessionCache(4)

			cs, ca, err := tlsConnect(s.Addr, clientTLS, "full")
			require.NoError(t, err)
			require.Equal(t, byte(0), ca.ReasonCode)
			require.Equal(t, uint16(tls.VersionTLS13), cs.Version)
			require.False(t, cs.DidResume)
			require.Equal(t, handshake{}, hs.last(t))

			// The positive control: the ticket resumes the session.
			cs, ca, err = tlsConnect(s.Addr, clientTLS, "resumed")
			require.NoError(t, err)
			require.Equal(t, byte(0), ca.ReasonCode)
			require.True(t, cs.DidResume, "the client should resume its session")
			require.Equal(t, handshake{resumed: true}, hs.last(t))
			waitLog(t, s.Broker, "as resumed")

			revoke()
			cs, ca, err = tlsConnect(s.Addr, clientTLS, "revoked")
			require.True(t, cs.DidResume, "the client offered its ticket and the server accepted it")
			last := hs.last(t)
			require.True(t, last.resumed, "the server judged a resumed session")
			if tc.errIs != nil {
				require.Error(t, err, "resumed after revocation: CONNACK %v", ca)
				require.ErrorContains(t, err, "remote error: tls: bad certificate")
				require.ErrorIs(t, last.err, tc.errIs)
			} else {
				require.NoError(t, err)
				require.NoError(t, last.err, "the handshake does not consult the RevocationChecker")
				require.Equal(t, tc.code, ca.ReasonCode)
			}
			require.NotContains(t, s.Broker.Out.String(), "as revoked", "the broker saw the revoked client")

			// A full handshake is refused the same way.
			full := clientTLS.Clone()
			full.ClientSessionCache = nil
			cs, ca, err = tlsConnect(s.Addr, full, "revoked-full")
			require.False(t, cs.DidResume)
			if tc.errIs != nil {
				// The alert, or a broken pipe when the CONNECT is written
				// after the server closed.
				require.Error(t, err)
				require.ErrorIs(t, hs.last(t).err, tc.errIs)
			} else {
				require.NoError(t, err)
				require.Equal(t, tc.code, ca.ReasonCode)
			}
		})
	}
}

func mustSet(t *testing.T, cas []*x509.Certificate, crls []*x509.RevocationList) *truststore.Set {
	t.Helper()
	set, err := truststore.NewSet(cas, crls)
	require.NoError(t, err)
	return set
}

func newX509(t *testing.T, store truststore.Source, rc x509auth.RevocationChecker) *x509auth.Authenticator {
	t.Helper()
	cfg := x509auth.Config{Trust: store, Logger: testLogger(t)}
	if rc != nil {
		cfg.Revocation = rc
	}
	a, err := x509auth.New(cfg)
	require.NoError(t, err)
	return a
}
