package mochi_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
)

// TestServeAndRemoveListener: a listener added to a running server is
// served, with its id as auth.Request.Listener; removed, its MQTT 5 client
// gets DISCONNECT 0x8B (Server shutting down) and it accepts no more,
// while the client of the server's other listener stays.
func TestServeAndRemoveListener(t *testing.T) {
	listenersSeen := make(chan string, 4)
	m := newManager(t, auth.Config{
		Authenticator: auth.AuthenticatorFunc(func(_ context.Context, r *auth.Request) auth.Result {
			listenersSeen <- r.Listener
			return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: r.ClientID}))
		}),
		Authorizer: auth.AllowAuthenticated,
	})
	_, h, addr := startBroker(t, mochi.Config{Manager: m})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	added := ln.Addr().String()
	require.NoError(t, ln.Close())
	require.NoError(t, h.ServeListener(h.Listener("added", added, nil)))

	dial := func(addr, id string) (*paho.Client, chan *paho.Disconnect) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		gone := make(chan *paho.Disconnect, 1)
		c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), PacketTimeout: 5 * time.Second,
			OnServerDisconnect: func(d *paho.Disconnect) { gone <- d }, OnClientError: func(error) {}})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true})
		require.NoError(t, err)
		require.Equal(t, byte(0), ca.ReasonCode)
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}); conn.Close() })
		return c, gone
	}
	_, goneOther := dial(addr, "other")
	require.Equal(t, "tcp", <-listenersSeen)
	_, goneAdded := dial(added, "on-added")
	require.Equal(t, "added", <-listenersSeen, "the id is the request's listener")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.RemoveListener(ctx, "added"))
	select {
	case d := <-goneAdded:
		require.Equal(t, byte(auth.ServerShuttingDown), d.ReasonCode)
	case <-time.After(5 * time.Second):
		t.Fatal("the removed listener's client got no DISCONNECT")
	}
	_, err = net.DialTimeout("tcp", added, time.Second)
	require.Error(t, err, "the removed listener accepts no more")
	select {
	case <-goneOther:
		t.Fatal("the other listener's client was disconnected")
	default:
	}
	require.Error(t, h.RemoveListener(ctx, "added"), "removed already")
	require.NoError(t, h.ServeListener(h.Listener("added", added, nil)), "the id may be added again")
}
