package customauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/customauth"
	"github.com/mqttauth/mqttauth/customauth/authserver"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// world is a broker's authentication as seed 002 configures it: custom
// authentication first, then X.509, behind real Sessions with a fake clock
// shared by the sessions, the authenticators and the reference server.
type world struct {
	clock  *authtest.Clock
	srv    *authserver.Server
	mgr    *auth.Manager
	device *authtest.Leaf // a client certificate the X.509 method trusts
}

func newWorld(t *testing.T) *world {
	t.Helper()
	p := newPKI(t)
	clock := authtest.NewClock(time.Now().Truncate(time.Second))
	srv := startServer(t, p, authserver.Config{
		Now:         clock.Now,
		TokenMethod: "TOKEN",
		Users: map[string]authserver.User{
			"alice": {Password: "secret", Attributes: map[string]string{"group": "custom"}, Lifetime: time.Hour},
		},
		Tokens: map[string]string{"token-1": "alice", "token-2": "alice"},
	})
	custom := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool(), Now: clock.Now, Timeout: 2 * time.Second,
		Breaker: customauth.BreakerConfig{Disabled: true}})

	clientCA := authtest.NewRootCA(t, "Device CA")
	set, err := truststore.NewSet([]*x509.Certificate{clientCA.Cert}, nil)
	require.NoError(t, err)
	x, err := x509auth.New(x509auth.Config{Trust: set, Now: clock.Now, Logger: discard})
	require.NoError(t, err)

	mgr, err := auth.NewManager(auth.Config{
		Authenticator: auth.Chain{custom, x},
		Authorizer:    auth.AllowAuthenticated,
		Clock:         clock,
		Logger:        discard,
	})
	require.NoError(t, err)
	return &world{clock: clock, srv: srv, mgr: mgr, device: clientCA.Leaf(t, "device-7")}
}

func (w *world) connect(t *testing.T, req *auth.Request) (*auth.Session, *authtest.Conn, auth.Response) {
	t.Helper()
	conn := authtest.NewConn()
	s := w.mgr.NewSession(conn)
	t.Cleanup(s.Close)
	return s, conn, s.Connect(context.Background(), req)
}

func (w *world) tlsState() *tls.ConnectionState {
	return &tls.ConnectionState{PeerCertificates: w.device.Chain}
}

// Seed 002: the custom server going down makes clients fall back to the
// next method at CONNECT.
func TestChainFallbackWhenServerDown(t *testing.T) {
	w := newWorld(t)
	req := func() *auth.Request {
		r := connectReq("alice", "secret")
		r.TLS = w.tlsState()
		return r
	}
	s, _, r := w.connect(t, req())
	require.Equal(t, auth.Success, r.Packet.Code)
	require.Equal(t, customauth.DefaultMethodName, s.Principal().Method(), "custom comes first and decides while it is up")
	g, _ := s.Principal().Attribute("group")
	require.Equal(t, "custom", g)

	w.srv.Down()
	s2, _, r := w.connect(t, req())
	require.Equal(t, auth.Success, r.Packet.Code, "the server is down: the next method decides")
	require.Equal(t, x509auth.Method, s2.Principal().Method())
	require.Equal(t, "device-7", s2.Principal().Username())

	// Without a certificate nothing else is relevant: 0x88, not a pass.
	_, _, r = w.connect(t, connectReq("alice", "secret"))
	require.Equal(t, auth.ServerUnavailable, r.Packet.Code)
	require.True(t, r.Close)

	// A Fail from the server ends the flow: X.509 is not asked.
	require.NoError(t, w.srv.Up())
	_, _, r = w.connect(t, func() *auth.Request { q := req(); q.Password = []byte("wrong"); return q }())
	require.Equal(t, auth.BadUserNameOrPassword, r.Packet.Code)
}

// Re-authentication while the server is down answers AUTH 0x18 and keeps
// the client connected on its old credential; once the server is back,
// AUTH 0x00 and a new expiry. The server's expiry ends the connection.
func TestReauthAcrossServerOutage(t *testing.T) {
	w := newWorld(t)
	s, conn, r := w.connect(t, &auth.Request{ClientID: "c1", Username: "alice", HasUsername: true, AuthMethod: "TOKEN", AuthData: []byte("token-1")})
	require.Equal(t, auth.Success, r.Packet.Code)
	require.Equal(t, "TOKEN", r.Packet.Method)
	first := s.Principal().Expiry()
	require.True(t, w.clock.Now().Add(time.Hour).Equal(first), "expiry %v", first)

	w.clock.Advance(50 * time.Minute)
	w.srv.Down()
	r = s.Auth(context.Background(), auth.Packet{Type: auth.AUTH, Code: auth.ReAuthenticate, Method: "TOKEN", Data: []byte("token-2")})
	require.Equal(t, auth.Packet{Type: auth.AUTH, Code: auth.ContinueAuthentication, Method: "TOKEN",
		Reason: "authentication is unavailable; the connection continues, re-authenticate later"}, r.Packet)
	require.False(t, r.Close)
	require.ErrorIs(t, r.Err, customauth.ErrServer)
	require.True(t, first.Equal(s.Principal().Expiry()), "still on the old credential")

	require.NoError(t, w.srv.Up())
	w.clock.Advance(5 * time.Minute)
	r = s.Auth(context.Background(), auth.Packet{Type: auth.AUTH, Code: auth.ReAuthenticate, Method: "TOKEN", Data: []byte("token-2")})
	require.Equal(t, auth.Packet{Type: auth.AUTH, Code: auth.Success, Method: "TOKEN"}, r.Packet)
	second := s.Principal().Expiry()
	require.True(t, w.clock.Now().Add(time.Hour).Equal(second), "the expiry moved: %v", second)

	w.clock.Advance(10 * time.Minute) // past the first expiry
	_, closed := conn.Final()
	require.False(t, closed)

	// A token the server refuses at re-auth: DISCONNECT and close.
	r = s.Auth(context.Background(), auth.Packet{Type: auth.AUTH, Code: auth.ReAuthenticate, Method: "TOKEN", Data: []byte("stolen")})
	require.Equal(t, auth.DISCONNECT, r.Packet.Type)
	require.Equal(t, auth.NotAuthorized, r.Packet.Code)
	require.True(t, r.Close)
}

func TestServerExpiryEndsConnection(t *testing.T) {
	w := newWorld(t)
	s, conn, r := w.connect(t, connectReq("alice", "secret"))
	require.Equal(t, auth.Success, r.Packet.Code)
	w.clock.Advance(time.Hour - time.Second)
	_, closed := conn.Final()
	require.False(t, closed)
	w.clock.Advance(time.Second)
	final, closed := conn.Final()
	require.True(t, closed)
	require.Equal(t, auth.MaximumConnectTime, final.Code)
	require.True(t, s.Closed())
}
