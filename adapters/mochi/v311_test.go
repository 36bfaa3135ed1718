package mochi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest/conformance"
)

// codeAuthn refuses a user named "code-NN" with the v5 reason code 0xNN and
// passes every other user name.
var codeAuthn = auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
	if hex, ok := strings.CutPrefix(req.Username, "code-"); ok {
		c, err := strconv.ParseUint(hex, 16, 8)
		if err != nil {
			return auth.FailResult(auth.NotAuthorized, err)
		}
		return auth.FailResult(auth.ReasonCode(c), errors.New("test refusal"))
	}
	return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: req.Username}))
})

// v311Connect writes an MQTT 3.1.1 CONNECT (Clean Session, keep alive 30)
// with a user name and the password "pw".
func v311Connect(t *testing.T, addr, id, user string) net.Conn {
	t.Helper()
	return v311ConnectPassword(t, addr, id, user, "pw")
}

// readAllUntilClose reads until the server closes the connection; a read
// deadline is a failure (the connection stayed open).
func readAllUntilClose(t *testing.T, conn net.Conn) []byte {
	t.Helper()
	b, err := io.ReadAll(conn)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server left the connection open; read %x", b)
	return b
}

// TestV311ConnackCodes: a refused MQTT 3.1.1 client gets the 3.1.1 return
// code for the session's v5 code (MQTT 3.1.1 section 3.2.2.3), or no CONNACK
// at all when 3.1.1 has none [MQTT-3.2.2-6 of 3.1.1 does not allow others].
// mochi alone sent 0x86 and 0x87 as they are.
func TestV311ConnackCodes(t *testing.T) {
	m := newManager(t, auth.Config{Authenticator: codeAuthn, Authorizer: auth.AllowAuthenticated})
	_, _, addr := startBroker(t, mochi.Config{Manager: m})
	for _, tc := range []struct {
		v5   byte
		want []byte // the bytes the client reads before the close
	}{
		{0x86, []byte{0x20, 2, 0, 4}}, // bad user name or password
		{0x87, []byte{0x20, 2, 0, 5}}, // not authorized
		{0x8A, []byte{0x20, 2, 0, 5}}, // banned: not authorized
		{0x8C, []byte{0x20, 2, 0, 5}},
		{0x88, []byte{0x20, 2, 0, 3}}, // server unavailable
		{0x89, []byte{0x20, 2, 0, 3}},
		{0x9F, []byte{0x20, 2, 0, 3}},
		{0x80, []byte{}}, // no 3.1.1 code: closed without CONNACK
		{0x95, []byte{}},
	} {
		t.Run("v5="+strconv.FormatUint(uint64(tc.v5), 16), func(t *testing.T) {
			conn := v311Connect(t, addr, "c", "code-"+strconv.FormatUint(uint64(tc.v5), 16))
			require.Equal(t, tc.want, readAllUntilClose(t, conn))
		})
	}
}

// TestV311DeniedPublish [MQTT-3.3.5-2] (3.1.1): a denied QoS 1 publish of
// an MQTT 3.1.1 client closes the network connection without writing
// anything (mochi alone wrote a DISCONNECT packet, which 3.1.1 has no
// server form of); a denied QoS 0 publish is dropped and the connection
// stays.
func TestV311DeniedPublish(t *testing.T) {
	m := newManager(t, (&conformance.Fixture{}).Config())
	_, h, addr := startBroker(t, mochi.Config{Manager: m})
	conn := v311ConnectPassword(t, addr, "v3", conformance.UserAlice, conformance.PasswordGood)
	ack := make([]byte, 4)
	_, err := io.ReadFull(conn, ack)
	require.NoError(t, err)
	require.Equal(t, []byte{0x20, 2, 0, 0}, ack)

	pub := func(qos byte, topic string, id byte) []byte {
		body := append([]byte{0, byte(len(topic))}, topic...)
		if qos > 0 {
			body = append(body, 0, id)
		}
		body = append(body, 'x')
		return append([]byte{0x30 | qos<<1, byte(len(body))}, body...)
	}
	// QoS 0 denied: dropped. Then QoS 1 allowed: acknowledged.
	_, err = conn.Write(pub(0, "denied/x", 0))
	require.NoError(t, err)
	_, err = conn.Write(pub(1, conformance.TopicAllowed+"x", 1))
	require.NoError(t, err)
	_, err = io.ReadFull(conn, ack)
	require.NoError(t, err)
	require.Equal(t, []byte{0x40, 2, 0, 1}, ack, "PUBACK of the allowed publish")

	_, err = conn.Write(pub(1, "denied/x", 2))
	require.NoError(t, err)
	require.Empty(t, readAllUntilClose(t, conn), "a 3.1.1 client was sent a packet for its denied publish")
	require.Eventually(t, func() bool { return h.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
}

// v311ConnectPassword writes an MQTT 3.1.1 CONNECT (Clean Session, keep
// alive 30) with a user name and password.
func v311ConnectPassword(t *testing.T, addr, id, user, pass string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	var body []byte
	body = append(body, str("MQTT")...)
	body = append(body, 4, 0xC2, 0, 30)
	body = append(body, str(id)...)
	body = append(body, str(user)...)
	body = append(body, str(pass)...)
	_, err = conn.Write(append([]byte{0x10, byte(len(body))}, body...))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	return conn
}

// TestV311Mosquitto: Debian's mosquitto_pub in MQTT 3.1.1 mode reads the
// adapter's refusals as 3.1.1 return codes.
func TestV311Mosquitto(t *testing.T) {
	pubBin := needTool(t, "mosquitto_pub")
	m := newManager(t, (&conformance.Fixture{}).Config())
	_, _, addr := startBroker(t, mochi.Config{Manager: m})
	host, port := splitAddr(t, addr)
	for _, tc := range []struct {
		name, user, pass, topic, want string
	}{
		{"not_authorized", conformance.UserMallory, "x", conformance.TopicAllowed + "x", "Connection Refused: not authorised."},
		{"bad_password", conformance.UserAlice, "wrong", conformance.TopicAllowed + "x", "Connection Refused: bad user name or password."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			var out bytes.Buffer
			cmd := exec.CommandContext(ctx, pubBin, "-h", host, "-p", port, "-V", "mqttv311", "-q", "1",
				"-u", tc.user, "-P", tc.pass, "-t", tc.topic, "-m", "x")
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			require.Error(t, err, "mosquitto_pub succeeded: %s", &out)
			require.Contains(t, out.String(), tc.want)
		})
	}
}

// TestRefusalLogged: mochi logs the error OnConnect returns for a refused
// client; it names the reason code and the cause (it read
// `error=": auth: ..."` when the error was a bare packets.Code, whose text
// is its empty reason string).
func TestRefusalLogged(t *testing.T) {
	var serverLog lockedBuffer
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(&serverLog, nil))})
	m := newManager(t, auth.Config{Authenticator: codeAuthn, Authorizer: auth.AllowAuthenticated})
	h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
	require.NoError(t, err)
	plain := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "plain", Address: "127.0.0.1:0"})
	guarded := h.Listener("guarded", "127.0.0.1:0", nil)
	require.NoError(t, srv.AddListener(plain))
	require.NoError(t, srv.AddListener(guarded))
	require.NoError(t, srv.Serve())
	b := &broker{Server: srv, tb: t}
	t.Cleanup(b.Stop)

	for _, addr := range []string{plain.Address(), guarded.Address()} {
		conn := v311Connect(t, addr, "c", "code-87")
		require.Equal(t, []byte{0x20, 2, 0, 5}, readAllUntilClose(t, conn))
	}
	// mochi's own listener logs the error at WARN; the hook's listener
	// leaves the record to the connection layer (one deny record per
	// refusal) and logs the error at DEBUG only.
	const want = `error="mochi: client refused with Not authorized (0x87): test refusal"`
	require.Eventually(t, func() bool { return strings.Count(serverLog.String(), want) == 1 }, 5*time.Second, 10*time.Millisecond,
		"log:\n%s", &serverLog)
	require.Contains(t, serverLog.String(), "listener=plain")
	require.NotContains(t, serverLog.String(), `error=":`)
}
