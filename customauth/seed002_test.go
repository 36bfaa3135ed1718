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
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// The three-method chain of seed 002: custom, then K8S-SAT, then X.509.
// While the custom server answers, its Pass or Fail ends the flow for every
// client; when it goes down mid-run, each client falls back to the method
// its credentials are relevant to.
func TestSeed002ThreeMethodChain(t *testing.T) {
	p := newPKI(t)
	clock := authtest.NewClock(time.Now().Truncate(time.Second))
	srv := startServer(t, p, authserver.Config{Now: clock.Now, Users: map[string]authserver.User{
		"alice": {Password: "secret", Attributes: map[string]string{"via": "custom"}},
	}})
	custom := newAuthn(t, customauth.Config{Endpoint: srv.URL(), RootCAs: p.ca.Pool(), Now: clock.Now, Timeout: 2 * time.Second,
		Breaker: customauth.BreakerConfig{Failures: 2, CoolDown: time.Minute}})

	kube := sattest.NewServer(t, sattest.Options{Now: clock.Now})
	kube.AddServiceAccount("default", "sensor", map[string]string{"aio-broker-auth/via": "sat"})
	satCfg := kube.Config("aio-mq")
	satCfg.Now, satCfg.Logger = clock.Now, discard
	sat, err := satauth.New(context.Background(), satCfg)
	require.NoError(t, err)
	t.Cleanup(sat.Close)

	deviceCA := authtest.NewRootCA(t, "Device CA")
	set, err := truststore.NewSet([]*x509.Certificate{deviceCA.Cert}, nil)
	require.NoError(t, err)
	x, err := x509auth.New(x509auth.Config{Trust: set, Now: clock.Now, Logger: discard,
		Mappings: []x509auth.Mapping{{Name: "ca", Subject: "CN = Device CA", Attributes: map[string]string{"via": "x509"}}}})
	require.NoError(t, err)

	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{custom, sat, x}, Authorizer: auth.AllowAuthenticated, Clock: clock, Logger: discard})
	require.NoError(t, err)

	token := kube.Token("default", "sensor", sattest.TokenOptions{Audiences: []string{"aio-mq"}, Lifetime: time.Hour})
	clients := map[string]func() *auth.Request{
		"password": func() *auth.Request { return connectReq("alice", "secret") },
		"sat": func() *auth.Request {
			return &auth.Request{ClientID: "sensor-1", AuthMethod: satauth.Method, AuthData: []byte(token)}
		},
		"x509": func() *auth.Request {
			return &auth.Request{ClientID: "dev-1", TLS: &tls.ConnectionState{PeerCertificates: deviceCA.Leaf(t, "dev-1").Chain}}
		},
	}
	connect := func(name string) (auth.Response, *auth.Principal) {
		s := m.NewSession(authtest.NewConn())
		t.Cleanup(s.Close)
		r := s.Connect(context.Background(), clients[name]())
		return r, s.Principal()
	}
	via := func(p *auth.Principal) string { v, _ := p.Attribute("via"); return v }

	// Up: the custom server decides for everyone. It knows alice; the SAT
	// and X.509 clients bring nothing it accepts, and its Fail ends the flow.
	r, pr := connect("password")
	require.Equal(t, auth.Success, r.Packet.Code)
	require.Equal(t, "custom", via(pr))
	r, _ = connect("sat")
	require.Equal(t, auth.NotAuthorized, r.Packet.Code, "a Fail from the server ends the flow")
	r, _ = connect("x509")
	require.Equal(t, auth.NotAuthorized, r.Packet.Code)
	require.Zero(t, kube.Calls(sattest.TokenReview), "SAT was not asked while the custom server answered")

	// Down, mid-run: each client falls back to its own method.
	srv.Down()
	r, pr = connect("sat")
	require.Equal(t, auth.Success, r.Packet.Code)
	require.Equal(t, "sat", via(pr))
	require.Equal(t, "system:serviceaccount:default:sensor", pr.Username())
	r, pr = connect("x509")
	require.Equal(t, auth.Success, r.Packet.Code)
	require.Equal(t, "x509", via(pr))
	r, _ = connect("password")
	require.Equal(t, auth.ServerUnavailable, r.Packet.Code, "nothing else is relevant to a password: 0x88, the client may retry")

	// Back up after the cool-down: the custom server decides again.
	require.NoError(t, srv.Up())
	clock.Advance(time.Minute)
	r, pr = connect("password")
	require.Equal(t, auth.Success, r.Packet.Code)
	require.Equal(t, "custom", via(pr))
}
