package mochi_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/scramauth"
	"github.com/mqttauth/mqttauth/truststore"
)

// TestNamedMethodRuns: a client that presents a certificate and names an
// Authentication Method is authenticated by that method or refused with
// CONNACK 0x8C; the certificate never stands in for it [MQTT-4.12.0-1].
// Every order of X.509 and SCRAM in the chain, over mTLS with paho.
func TestNamedMethodRuns(t *testing.T) {
	pki := authtest.NewTutorialPKI(t, time.Now())
	set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	require.NoError(t, err)
	x509a := newX509(t, truststore.NewMemory(set))
	scram := scramAuthenticator(t)

	for _, tc := range []struct {
		name      string
		chain     auth.Chain
		hasSCRAM  bool
		certFirst bool
	}{
		{"x509_then_scram", auth.Chain{x509a, scram}, true, true},
		{"scram_then_x509", auth.Chain{scram, x509a}, true, false},
		{"x509_only", auth.Chain{x509a}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, auth.Config{Authenticator: tc.chain, Authorizer: auth.AllowAuthenticated})
			srv := mqtt.New(&mqtt.Options{Logger: quiet})
			h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
			require.NoError(t, err)
			ln := mochi.TLSListener("mtls", "127.0.0.1:0", x509a, authtest.ServerTLSConfig(t, pki.Server))
			require.NoError(t, srv.AddListener(ln))
			require.NoError(t, srv.Serve())
			t.Cleanup(func() {
				require.NoError(t, closeServer(t, srv))
				require.Eventually(t, func() bool { return h.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
			})
			tlsCfg := authtest.ClientTLSConfig(t, pki.ContosoRoot, "localhost", pki.Thermostat)

			t.Run("certificate_and_no_method_passes_as_X.509", func(t *testing.T) {
				c, ca, err := dialMethod(t, ln.Address(), tlsCfg, "", nil, nil)
				require.NoError(t, err)
				require.Equal(t, byte(0x00), ca.ReasonCode)
				if ca.Properties != nil {
					require.Empty(t, ca.Properties.AuthMethod, "no method was named: none is echoed")
				}
				_ = c
			})

			t.Run("made_up_method_0x8C_not_echoed", func(t *testing.T) {
				_, ca, err := dialMethod(t, ln.Address(), tlsCfg, "MADE-UP", []byte("anything"), &nopAuther{})
				require.Error(t, err)
				require.NotNil(t, ca, "a CONNACK refuses the client: %v", err)
				require.Equal(t, byte(0x8C), ca.ReasonCode)
				if ca.Properties != nil {
					require.Empty(t, ca.Properties.AuthMethod)
					require.Empty(t, ca.Properties.AuthData)
				}
			})

			t.Run("scram_named_with_certificate", func(t *testing.T) {
				a := newScramAuther(t, scramauth.SHA256, "alice", "pencil")
				c, ca, err := dialMethod(t, ln.Address(), tlsCfg, string(scramauth.SHA256), a.begin(), a)
				if !tc.hasSCRAM {
					// No authenticator implements SCRAM: refused, not
					// passed on the certificate.
					require.Error(t, err)
					require.NotNil(t, ca)
					require.Equal(t, byte(0x8C), ca.ReasonCode)
					if ca.Properties != nil {
						require.Empty(t, ca.Properties.AuthMethod)
						require.Empty(t, ca.Properties.AuthData, "no server-final-message for an exchange that never ran")
					}
					return
				}
				// SCRAM runs whatever the order: the CONNACK carries a
				// server-final-message that proves the server's key.
				require.NoError(t, err)
				require.Equal(t, byte(0x00), ca.ReasonCode)
				require.Equal(t, string(scramauth.SHA256), ca.Properties.AuthMethod)
				require.True(t, strings.HasPrefix(string(ca.Properties.AuthData), "v="), "CONNACK carries the server-final-message")
				a.finish(t, ca.Properties.AuthData)
				require.Eventually(t, func() bool { return h.Len() >= 1 }, 5*time.Second, 10*time.Millisecond)
				var methods []string
				m.Recheck(context.Background(), func(_ context.Context, s *auth.Session) error {
					if p := s.Principal(); p != nil {
						methods = append(methods, p.Method()+":"+p.Username())
					}
					return nil
				})
				require.Equal(t, []string{string(scramauth.SHA256) + ":alice"}, methods, "SCRAM, not X.509, authenticated the client")

				// Re-authentication with garbage data is judged by SCRAM
				// (DISCONNECT 0x87), never passed on the certificate.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				ar, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19,
					Properties: &paho.AuthProperties{AuthMethod: string(scramauth.SHA256), AuthData: []byte("garbage")}})
				if err == nil {
					require.False(t, ar.Success, "garbage re-authentication must not succeed")
				}
			})
		})
	}
}

// nopAuther answers every challenge with empty data; it lets paho accept a
// CONNACK that names a method.
type nopAuther struct{}

func (nopAuther) Authenticate(in *paho.Auth) *paho.Auth {
	return &paho.Auth{ReasonCode: 0x18, Properties: &paho.AuthProperties{AuthMethod: in.Properties.AuthMethod}}
}
func (nopAuther) Authenticated() {}

// dialMethod connects over TLS with the given Authentication Method (none
// when empty).
func dialMethod(t *testing.T, addr string, cfg *tls.Config, method string, data []byte, ah paho.Auther) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), AuthHandler: ah, PacketTimeout: 5 * time.Second})
	cp := &paho.Connect{ClientID: "method-test", CleanStart: true, KeepAlive: 30}
	if method != "" {
		cp.Properties = &paho.ConnectProperties{AuthMethod: method, AuthData: data}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		return nil, ca, err
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		<-c.Done()
	})
	return c, ca, nil
}

// scramAuthenticator is a SCRAM authenticator with user alice/pencil.
func scramAuthenticator(t *testing.T) *scramauth.Authenticator {
	t.Helper()
	f := &scramauth.File{}
	creds := map[scramauth.Mechanism]scramauth.Credential{}
	for _, m := range scramauth.Mechanisms {
		c, err := scramauth.NewCredential(m, "pencil", 4096)
		require.NoError(t, err)
		creds[m] = c
	}
	f.Put(scramauth.User{Name: "alice", Credentials: creds})
	users, err := scramauth.NewUsers(f)
	require.NoError(t, err)
	a, err := scramauth.New(scramauth.Config{Store: users})
	require.NoError(t, err)
	return a
}
