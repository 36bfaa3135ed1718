package conformance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	revchk "github.com/mqttauth/mqttauth/revocation"
	"github.com/mqttauth/mqttauth/revocation/revocationtest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// tlsCase is the state of one TLS session-resumption case, shared by its
// prepare (before the Factory) and its Run (after): the client's TLS
// configuration, the server's verdicts, and the revocation to apply.
type tlsCase struct {
	client *tls.Config
	log    *verdicts
	revoke func(t *testing.T)
	// Either the server's handshake error wraps errIs (the client reads a
	// bad_certificate alert), or the CONNECT is refused with code.
	errIs error
	code  byte
}

// tlsResumeCase returns the case name with its state: prepare builds the
// PKI, the x509auth Authenticator over a truststore the case controls and
// Setup.TLS; the run drives the clients.
// build returns the Authenticator and the server's certificate.
func tlsResumeCase(name string, build func(tb testing.TB, st *tlsCase) (*x509auth.Authenticator, *authtest.Leaf)) Case {
	st := &tlsCase{}
	return Case{
		Name: name,
		Run: func(t *testing.T, b Broker, _ *Fixture) {
			if st.client == nil {
				t.Fatal("conformance: this case needs the Setup its Run function makes: run it with RunCase")
			}
			tlsResumeRevoked(t, b, st)
		},
		prepare: func(tb testing.TB, s *Setup) {
			*st = tlsCase{log: &verdicts{}}
			a, server := build(tb, st)
			s.Auth.Authenticator = auth.Chain{a}
			s.TLS = st.log.wrap(a.ServerTLSConfig(authtest.ServerTLSConfig(tb, server)))
		},
	}
}

// tlsCases are the TLS 1.3 session-resumption cases: a certificate that
// loses trust cannot resume its session.
func tlsCases() []Case {
	return []Case{
		tlsResumeCase("tls/resume_crl_revoked_bad_certificate", func(tb testing.TB, st *tlsCase) (*x509auth.Authenticator, *authtest.Leaf) {
			now := time.Now()
			pki := authtest.NewTutorialPKI(tb, now)
			store := truststore.NewMemory(trustSet(tb, []*x509.Certificate{pki.FabrikamRoot.Cert}, nil))
			crl, err := x509.ParseRevocationList(pki.FabrikamIntermediate.CRL(tb, 1, now, now.Add(time.Hour), pki.Thermostat.Cert))
			if err != nil {
				tb.Fatalf("conformance: %v", err)
			}
			st.client = authtest.ClientTLSConfig(tb, pki.ContosoRoot, "localhost", pki.Thermostat)
			st.errIs = x509auth.ErrRevoked
			st.revoke = func(t *testing.T) {
				store.Replace(trustSet(t, []*x509.Certificate{pki.FabrikamRoot.Cert}, []*x509.RevocationList{crl}))
			}
			return newX509(tb, store, nil), pki.Server
		}),
		tlsResumeCase("tls/resume_ca_removed_bad_certificate", func(tb testing.TB, st *tlsCase) (*x509auth.Authenticator, *authtest.Leaf) {
			pki := authtest.NewTutorialPKI(tb, time.Now())
			store := truststore.NewMemory(trustSet(tb, []*x509.Certificate{pki.FabrikamRoot.Cert, pki.ContosoRoot.Cert}, nil))
			st.client = authtest.ClientTLSConfig(tb, pki.ContosoRoot, "localhost", pki.Thermostat)
			st.errIs = x509auth.ErrUntrusted
			st.revoke = func(t *testing.T) {
				store.Replace(trustSet(t, []*x509.Certificate{pki.ContosoRoot.Cert}, nil))
			}
			return newX509(tb, store, nil), pki.Server
		}),
		tlsResumeCase("tls/resume_ocsp_revoked_0x87", func(tb testing.TB, st *tlsCase) (*x509auth.Authenticator, *authtest.Leaf) {
			ca := authtest.NewRootCA(tb, "OCSP Test CA")
			resp := revocationtest.NewResponder(tb, ca)
			leaf := ca.Leaf(tb, "thermostat", authtest.WithOCSPServer(resp.OCSPURL()))
			server := ca.Leaf(tb, "localhost", authtest.WithDNSNames("localhost"), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
			// Every answer is due for a refresh RetryInterval after its
			// fetch (RefreshBefore is longer than its span): Refresh
			// fetches it again.
			rc, err := revchk.New(revchk.Config{OCSP: true, Mode: revchk.HardFail, Logger: discard,
				RefreshBefore: 2 * time.Hour, RefreshInterval: time.Hour, RetryInterval: 10 * time.Millisecond})
			if err != nil {
				tb.Fatalf("conformance: %v", err)
			}
			tb.Cleanup(func() { _ = rc.Close() })
			st.client = authtest.ClientTLSConfig(tb, ca, "localhost", leaf)
			st.code = 0x87
			st.revoke = func(t *testing.T) {
				resp.Set(leaf.Cert, revocationtest.Revoked)
				ctx, cancel := context.WithTimeout(context.Background(), Timeout)
				defer cancel()
				for {
					rc.Refresh(ctx)
					if errors.Is(rc.Check(ctx, []*x509.Certificate{leaf.Cert, ca.Cert}), revchk.ErrRevoked) {
						return
					}
					if ctx.Err() != nil {
						t.Fatal("conformance: the revocation checker never saw the revocation")
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			return newX509(tb, truststore.NewMemory(trustSet(tb, []*x509.Certificate{ca.Cert}, nil)), rc), server
		}),
	}
}

var discard = slog.New(slog.DiscardHandler)

func trustSet(tb testing.TB, cas []*x509.Certificate, crls []*x509.RevocationList) *truststore.Set {
	tb.Helper()
	set, err := truststore.NewSet(cas, crls)
	if err != nil {
		tb.Fatalf("conformance: %v", err)
	}
	return set
}

func newX509(tb testing.TB, store truststore.Source, rc x509auth.RevocationChecker) *x509auth.Authenticator {
	tb.Helper()
	cfg := x509auth.Config{Trust: store, Logger: discard}
	if rc != nil {
		cfg.Revocation = rc
	}
	a, err := x509auth.New(cfg)
	if err != nil {
		tb.Fatalf("conformance: %v", err)
	}
	return a
}

// verdict is the server's judgement of one handshake: whether it resumed
// a session, and x509auth's error.
type verdict struct {
	resumed bool
	err     error
}

// verdicts records the verdicts of the VerifyConnection of Setup.TLS.
type verdicts struct {
	mu  sync.Mutex
	log []verdict
}

// wrap makes cfg record every VerifyConnection verdict.
func (v *verdicts) wrap(cfg *tls.Config) *tls.Config {
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verify(cs)
		v.mu.Lock()
		v.log = append(v.log, verdict{resumed: cs.DidResume, err: err})
		v.mu.Unlock()
		return err
	}
	return cfg
}

func (v *verdicts) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.log)
}

// last returns the last verdict; the suite fails when there is none.
func (v *verdicts) last(t *testing.T) verdict {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.log) == 0 {
		t.Fatal("conformance: no handshake reached the VerifyConnection of Setup.TLS: the Factory does not serve Broker.Addr with Setup.TLS")
	}
	return v.log[len(v.log)-1]
}

// ConnectTLS dials addr over TLS with cfg, sends an MQTT 5 CONNECT (clean
// start, keep-alive 30 s) as clientID and reads the CONNACK, then sends
// DISCONNECT after a CONNACK 0x00 and closes. It returns the TLS state as
// the client saw it when its handshake ended (in TLS 1.3 the server
// judges the client's certificate, or the resumed session, after that: a
// refusal then arrives as an alert on the first read, and the error is
// that alert), the CONNACK, and the first error. Every step is bounded by
// [Timeout].
func ConnectTLS(addr string, cfg *tls.Config, clientID string) (tls.ConnectionState, *packets.Connack, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: Timeout}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, nil, fmt.Errorf("conformance: TLS handshake with %s: %w", addr, err)
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	_ = conn.SetDeadline(time.Now().Add(Timeout))
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.KeepAlive, c.CleanStart = "MQTT", 5, clientID, 30, true
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
		_, _ = packets.NewControlPacket(packets.DISCONNECT).WriteTo(conn)
	}
	return cs, ca, nil
}

// tlsResumeRevoked: TLS 1.3 session resumption on Setup.TLS, over real
// sockets. A client connects with a full mTLS handshake and gets a
// session ticket; a resumed connection with it works (DidResume on both
// sides: the positive control). Then its certificate loses trust, and the
// next resumption with a ticket issued before is refused: a CRL in the
// hot truststore and the removal of its CA refuse it in the handshake
// (crypto/tls calls x509auth's VerifyConnection on resumed sessions too;
// the client reads a bad_certificate alert, and the broker never sees the
// client); an OCSP responder answering "revoked" (x509auth's
// RevocationChecker, which runs at CONNECT, never in the handshake)
// refuses the CONNECT with 0x87. A full handshake is then refused the
// same way.
func tlsResumeRevoked(t *testing.T, b Broker, st *tlsCase) {
	client := st.client.Clone()
	client.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	full, resumed, revoked := CaseClientID(t, "full"), CaseClientID(t, "resumed"), CaseClientID(t, "revoked")

	cs, ca, err := ConnectTLS(b.Addr, client, full)
	if err != nil {
		t.Fatalf("full handshake and CONNECT (does the Factory serve Setup.TLS at Broker.Addr?): %v", err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("full handshake: CONNACK 0x%02x, want 0x00", ca.ReasonCode)
	}
	if cs.Version != tls.VersionTLS13 {
		t.Fatalf("TLS version 0x%04x, want TLS 1.3", cs.Version)
	}
	if cs.DidResume {
		t.Fatal("the first connection resumed a session")
	}
	if v := st.log.last(t); v != (verdict{}) {
		t.Fatalf("server verdict on the full handshake %+v, want not resumed and no error", v)
	}

	// The positive control: the ticket resumes the session.
	cs, ca, err = ConnectTLS(b.Addr, client, resumed)
	if err != nil {
		t.Fatalf("resumed connection: %v", err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("resumed connection: CONNACK 0x%02x, want 0x00", ca.ReasonCode)
	}
	if !cs.DidResume {
		t.Fatal("the client should resume its session")
	}
	if v := st.log.last(t); v != (verdict{resumed: true}) {
		t.Fatalf("server verdict on the resumption %+v, want resumed and no error", v)
	}
	if b.Saw != nil {
		deadline := time.Now().Add(Timeout)
		for !b.Saw(resumed) {
			if time.Now().After(deadline) {
				t.Fatalf("the broker never saw the resumed client %q", resumed)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	st.revoke(t)
	n := st.log.len()
	cs, ca, err = ConnectTLS(b.Addr, client, revoked)
	if !cs.DidResume {
		t.Fatalf("the client offered its ticket and the server should accept it (err %v)", err)
	}
	if st.log.len() == n {
		t.Fatal("the resumed handshake after the revocation reached no VerifyConnection")
	}
	v := st.log.last(t)
	if !v.resumed {
		t.Fatal("the server should judge a resumed session")
	}
	if st.errIs != nil {
		if err == nil {
			t.Fatalf("resumed after the revocation: CONNACK %v", ca)
		}
		if !strings.Contains(err.Error(), "remote error: tls: bad certificate") {
			t.Fatalf("resumed after the revocation: %v, want a bad_certificate alert", err)
		}
		if !errors.Is(v.err, st.errIs) {
			t.Fatalf("server verdict %v, want %v", v.err, st.errIs)
		}
	} else {
		if err != nil {
			t.Fatalf("resumed after the revocation: %v, want CONNACK 0x%02x", err, st.code)
		}
		if v.err != nil {
			t.Fatalf("server verdict %v: the handshake does not consult the RevocationChecker", v.err)
		}
		if ca.ReasonCode != st.code {
			t.Fatalf("resumed after the revocation: CONNACK 0x%02x, want 0x%02x", ca.ReasonCode, st.code)
		}
	}

	// A full handshake is refused the same way.
	nocache := st.client.Clone()
	cs, ca, err = ConnectTLS(b.Addr, nocache, revoked)
	if cs.DidResume {
		t.Fatal("a client without a ticket resumed")
	}
	if st.errIs != nil {
		// The alert, or a broken pipe when the CONNECT is written after
		// the server closed.
		if err == nil {
			t.Fatalf("full handshake after the revocation: CONNACK %v", ca)
		}
		if v := st.log.last(t); !errors.Is(v.err, st.errIs) {
			t.Fatalf("server verdict on the full handshake %v, want %v", v.err, st.errIs)
		}
	} else {
		if err != nil {
			t.Fatalf("full handshake after the revocation: %v, want CONNACK 0x%02x", err, st.code)
		}
		if ca.ReasonCode != st.code {
			t.Fatalf("full handshake after the revocation: CONNACK 0x%02x, want 0x%02x", ca.ReasonCode, st.code)
		}
	}
	if b.Saw != nil && b.Saw(revoked) {
		t.Fatalf("the broker saw the revoked client %q", revoked)
	}
}
