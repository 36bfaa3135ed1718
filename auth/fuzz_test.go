package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
)

// FuzzSession drives random sequences of CONNECT, AUTH, other packets, time
// and re-checks into a Session and checks the invariants that must hold
// whatever the client does.
func FuzzSession(f *testing.F) {
	f.Add([]byte{0, 2, 1, 0x12, 3, 70})               // TWO exchange, then expiry
	f.Add([]byte{0, 1, 1, 0x21, 1, 0x22, 1, 0x13})    // ONE, re-auth, retry
	f.Add([]byte{1, 0x10, 0, 1, 4, 1, 2, 0})          // AUTH first
	f.Add([]byte{0, 2, 1, 0x12, 1, 0x2a, 1, 0x26, 5}) // re-auth exchange, close
	methods := []string{"", "ONE", "TWO", "X"}
	connectData := []string{"ok", "hello", "down", "bad", "past", "ok:bob", ""}
	codes := []auth.ReasonCode{0x00, 0x18, 0x19, 0x05}
	authData := []string{"answer-1", "hello", "ok", "down", "ok:bob", "\x86"}
	f.Fuzz(func(t *testing.T, in []byte) {
		h := newHarness(t, auth.Config{Authenticator: auth.Chain{simple{expiry: time.Minute}, twoStep{expiry: time.Minute}, password}, ExchangeTimeout: 20 * time.Second})
		var (
			method     string
			connected  bool // a success CONNACK was sent
			ended      bool // a response closed the connection or the session ended it
			failed     bool // a failure was sent
			connectSet bool
		)
		for i := 0; i+1 < len(in) && i < 200; i += 2 {
			op, arg := in[i]%6, in[i+1]
			var r auth.Response
			switch op {
			case 0:
				m := methods[int(arg)%len(methods)]
				req := &auth.Request{ClientID: "c", AuthMethod: m}
				if m != "" {
					req.AuthData = []byte(connectData[int(arg>>2)%len(connectData)])
				}
				if !connectSet {
					method, connectSet = m, true
				}
				r = h.s.Connect(context.Background(), req)
			case 1:
				p := auth.Packet{Type: auth.AUTH, Code: codes[int(arg)%len(codes)], Method: methods[int(arg>>2)%len(methods)]}
				p.Data = []byte(authData[int(arg>>4)%len(authData)])
				r = h.s.Auth(context.Background(), p)
			case 2:
				r = h.s.OtherPacket()
			case 3:
				h.clock.Advance(time.Duration(arg) * time.Second)
			case 4:
				h.mgr.Recheck(context.Background(), func(context.Context, *auth.Session) error {
					if arg%2 == 0 {
						return errors.New("revoked")
					}
					return nil
				})
			case 5:
				h.s.Close()
				ended = true
			}
			checkInvariants(t, r)
			if ended {
				require.Equal(t, auth.None, r.Packet.Type, "closed means closed: nothing is sent after the end")
				if op <= 2 {
					require.True(t, r.Close)
					require.ErrorIs(t, r.Err, auth.ErrClosed)
				}
			}
			switch r.Packet.Type {
			case auth.CONNACK:
				require.False(t, connected, "one CONNACK per connection")
				if r.Packet.Code == auth.Success {
					require.False(t, failed, "never a Pass after a Fail")
					connected = true
					require.Equal(t, method, r.Packet.Method, "the success CONNACK carries CONNECT's method [MQTT-4.12.0-5]")
				}
			case auth.AUTH:
				require.Equal(t, method, r.Packet.Method, "AUTH carries CONNECT's method [MQTT-4.12.0-5]")
				if !connected {
					require.Equal(t, auth.ContinueAuthentication, r.Packet.Code, "only AUTH 0x18 before CONNACK")
				}
			case auth.DISCONNECT:
				require.True(t, connected, "nothing but AUTH before CONNACK [MQTT-3.2.0-1]")
			}
			if r.Packet.Code.IsFailure() {
				failed = true
			}
			if r.Close {
				ended = true
			}
			if _, closed := h.conn.Final(); closed {
				ended = true
			}
			if ended {
				require.True(t, h.s.Closed())
				require.Nil(t, h.s.Principal())
			}
			if h.s.Principal() != nil {
				require.True(t, connected, "a principal only after a success CONNACK")
			}
		}
		require.LessOrEqual(t, h.conn.Calls(), 1)
		h.s.Close()
		require.Zero(t, h.mgr.Len(), "no session left in the registry")
		require.Zero(t, h.clock.Pending(), "no timer left behind")
	})
}
