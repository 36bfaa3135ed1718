package mochi_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
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

// TestOCSP: over real sockets, mochi with x509auth consulting a
// revocation.Checker (HardFail) against an OCSP responder: a good
// certificate connects, a revoked one gets CONNACK 0x87, one whose
// responder is down gets CONNACK 0x88, and a client whose certificate is
// revoked while it is connected gets DISCONNECT 0x87 once the background
// refresh sees it.
func TestOCSP(t *testing.T) {
	ca := authtest.NewRootCA(t, "OCSP Test CA")
	resp := revocationtest.NewResponder(t, ca)
	down := revocationtest.NewResponder(t, ca)
	down.SetFault(revocationtest.Down)
	good := ca.Leaf(t, "good", authtest.WithOCSPServer(resp.OCSPURL()))
	staying := ca.Leaf(t, "staying", authtest.WithOCSPServer(resp.OCSPURL()))
	revoked := ca.Leaf(t, "revoked", authtest.WithOCSPServer(resp.OCSPURL()))
	resp.Set(revoked.Cert, revocationtest.Revoked)
	unreachable := ca.Leaf(t, "unreachable", authtest.WithOCSPServer(down.OCSPURL()))
	server := ca.Leaf(t, "localhost", authtest.WithDNSNames("localhost"), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))

	// Refresh every answer every 50 ms (RefreshBefore is longer than the
	// answers' span, so the refresh time is RetryInterval after a fetch).
	rc, err := revocation.New(revocation.Config{OCSP: true, Mode: revocation.HardFail, Logger: quiet,
		RefreshInterval: 50 * time.Millisecond, RetryInterval: 20 * time.Millisecond, RefreshBefore: 2 * time.Hour})
	require.NoError(t, err)
	set, err := truststore.NewSet([]*x509.Certificate{ca.Cert}, nil)
	require.NoError(t, err)
	a, err := x509auth.New(x509auth.Config{Trust: set, Revocation: rc, Logger: quiet})
	require.NoError(t, err)
	m := newManager(t, auth.Config{Authenticator: auth.Chain{a}, Authorizer: auth.AllowAuthenticated})
	stop, err := m.Watch(rc.Watch(a.Check, 0))
	require.NoError(t, err)

	srv := mqtt.New(&mqtt.Options{Logger: quiet})
	h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
	require.NoError(t, err)
	ln := mochi.TLSListener("mtls", "127.0.0.1:0", a, authtest.ServerTLSConfig(t, server))
	require.NoError(t, srv.AddListener(ln))
	require.NoError(t, srv.Serve())
	t.Cleanup(func() {
		require.NoError(t, closeServer(t, srv))
		require.Eventually(t, func() bool { return h.Len() == 0 && m.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
		stop()
		rc.Close()
	})

	dial := func(t *testing.T, leaf *authtest.Leaf, id string) (*paho.Client, chan *paho.Disconnect, byte, error) {
		t.Helper()
		d := &net.Dialer{Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", ln.Address(), authtest.ClientTLSConfig(t, ca, "localhost", leaf))
		require.NoError(t, err, "the handshake does not wait for OCSP")
		dis := make(chan *paho.Disconnect, 1)
		c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), PacketTimeout: 5 * time.Second,
			OnServerDisconnect: func(d *paho.Disconnect) { dis <- d }})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ack, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
		if err != nil {
			_ = conn.Close()
			var code byte
			if ack != nil {
				code = ack.ReasonCode
			}
			return nil, nil, code, err
		}
		t.Cleanup(func() {
			_ = c.Disconnect(&paho.Disconnect{})
			<-c.Done()
		})
		return c, dis, ack.ReasonCode, nil
	}

	_, goodDis, code, err := dial(t, good, "good")
	require.NoError(t, err)
	require.Equal(t, byte(0x00), code)
	_, stayingDis, _, err := dial(t, staying, "staying")
	require.NoError(t, err)

	_, _, code, err = dial(t, revoked, "revoked")
	require.Error(t, err)
	require.Equal(t, byte(0x87), code, "revoked: Not authorized")

	_, _, code, err = dial(t, unreachable, "unreachable")
	require.Error(t, err)
	require.Equal(t, byte(0x88), code, "no answer in HardFail: Server unavailable")

	resp.Set(good.Cert, revocationtest.Revoked)
	select {
	case d := <-goodDis:
		require.Equal(t, byte(0x87), d.ReasonCode)
	case <-time.After(10 * time.Second):
		t.Fatal("the client revoked while connected was not disconnected")
	}
	require.Eventually(t, func() bool { return m.Len() == 1 }, 5*time.Second, 10*time.Millisecond)
	select {
	case d := <-stayingDis:
		t.Fatalf("the other client was disconnected: %v", d.ReasonCode)
	default:
	}
}
