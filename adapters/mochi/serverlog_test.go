package mochi_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
)

// lockedBuffer is a log destination written by mochi's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// An AUTH packet that mochi rejects by itself (reason code 0x05) reaches no
// hook; mochi logs the decoded packet, Authentication Data included.
// ServerLogger keeps the record and drops the packet.
func TestServerLoggerDropsPackets(t *testing.T) {
	var out lockedBuffer
	srv := mqtt.New(&mqtt.Options{Logger: mochi.ServerLogger(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	token := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if req.AuthMethod != "TOKEN" {
			return auth.Result{Outcome: auth.NotRelevant}
		}
		return auth.Result{Outcome: auth.Pass, Principal: auth.NewPrincipal(auth.PrincipalInfo{Method: "TOKEN", ClientID: req.ClientID})}
	})
	m := newManager(t, auth.Config{Authenticator: auth.Chain{token}, Authorizer: auth.AllowAuthenticated})
	h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
	require.NoError(t, err)
	ln := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tcp", Address: "127.0.0.1:0"})
	require.NoError(t, srv.AddListener(ln))
	require.NoError(t, srv.Serve())
	t.Cleanup(func() {
		require.NoError(t, closeServer(t, srv))
		require.Eventually(t, func() bool { return h.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
	})

	conn, err := net.DialTimeout("tcp", ln.Address(), 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	connect := packets.NewControlPacket(packets.CONNECT)
	cp := connect.Content.(*packets.Connect)
	cp.ClientID, cp.CleanStart, cp.KeepAlive, cp.ProtocolName, cp.ProtocolVersion = "leaky", true, 30, "MQTT", 5
	cp.Properties = &packets.Properties{AuthMethod: "TOKEN", AuthData: []byte("connect-secret")}
	_, err = connect.WriteTo(conn)
	require.NoError(t, err)
	ack, err := packets.ReadPacket(conn)
	require.NoError(t, err)
	require.Zero(t, ack.Content.(*packets.Connack).ReasonCode, "%+v", ack.Content)

	// AUTH with reason code 0x05, written by hand: paho's
	// NewControlPacket(AUTH) sets fixed-header flags to 1, which mochi
	// refuses as malformed before it reads the reason code.
	props := []byte{0x15, 0, 5, 'T', 'O', 'K', 'E', 'N', 0x16, 0, 11}
	props = append(props, "auth-secret"...)
	body := append([]byte{0x05, byte(len(props))}, props...)
	_, err = conn.Write(append([]byte{0xF0, byte(len(body))}, body...))
	require.NoError(t, err)
	d, err := packets.ReadPacket(conn)
	require.NoError(t, err, out.String())
	require.EqualValues(t, 0x82, d.Content.(*packets.Disconnect).ReasonCode, "mochi refuses the reason code itself")

	require.Eventually(t, func() bool {
		return strings.Contains(out.String(), `"msg":"error processing packet"`)
	}, 5*time.Second, 10*time.Millisecond, out.String())
	logs := out.String()
	require.Contains(t, logs, `"client":"leaky"`, "the rest of the record is kept")
	require.NotContains(t, logs, `"pk":`)
	require.NotContains(t, logs, "auth-secret")
	require.NotContains(t, logs, "connect-secret")
}

func TestServerLoggerWithAttrs(t *testing.T) {
	var out lockedBuffer
	l := mochi.ServerLogger(slog.NewJSONHandler(&out, nil)).With("packet", "secret", "hook", "x")
	l.Info("m", "pk", "secret", "client", "c")
	require.NotContains(t, out.String(), "secret")
	require.Contains(t, out.String(), `"hook":"x"`)
	require.Contains(t, out.String(), `"client":"c"`)
}
