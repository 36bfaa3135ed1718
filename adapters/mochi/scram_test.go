package mochi_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"
	"github.com/xdg-go/scram"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/scramauth"
)

// scramAuther is a paho.Auther that runs the client side of a SCRAM exchange
// with xdg-go/scram: it answers the server-first-message (AUTH 0x18) with the
// client-final-message. The caller starts each exchange with begin and checks
// the server-final-message with finish.
type scramAuther struct {
	mech   scramauth.Mechanism
	client *scram.Client

	mu   sync.Mutex
	conv *scram.ClientConversation
	errs []error
}

func newScramAuther(t *testing.T, mech scramauth.Mechanism, user, pass string) *scramAuther {
	t.Helper()
	h := scram.SHA256
	if mech == scramauth.SHA512 {
		h = scram.SHA512
	}
	c, err := h.NewClient(user, pass, "")
	require.NoError(t, err)
	return &scramAuther{mech: mech, client: c}
}

// begin starts a new exchange and returns the client-first-message.
func (a *scramAuther) begin() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conv = a.client.NewConversation()
	c1, _ := a.conv.Step("")
	return []byte(c1)
}

// Authenticate answers AUTH 0x18 (server-first) with AUTH 0x18 (client-final).
func (a *scramAuther) Authenticate(in *paho.Auth) *paho.Auth {
	a.mu.Lock()
	defer a.mu.Unlock()
	var data []byte
	if in.Properties != nil {
		data = in.Properties.AuthData
	}
	c2, err := a.conv.Step(string(data))
	if err != nil {
		a.errs = append(a.errs, err)
	}
	return &paho.Auth{ReasonCode: 0x18, Properties: &paho.AuthProperties{AuthMethod: string(a.mech), AuthData: []byte(c2)}}
}

func (a *scramAuther) Authenticated() {}

// finish checks the server-final-message: the server proved it holds the
// user's ServerKey.
func (a *scramAuther) finish(t *testing.T, serverFinal []byte) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	require.Empty(t, a.errs)
	_, err := a.conv.Step(string(serverFinal))
	require.NoError(t, err)
	require.True(t, a.conv.Valid(), "the client verified the server signature")
}

// sniffConn copies what the client reads to a parser, so the test sees the
// AUTH 0x00 of a re-authentication whole: paho v0.23.0's Client.Authenticate
// returns an AuthResponse without the Authentication Data (see
// AuthResponseFromPacketAuth), so a paho client cannot check the
// server-final-message of a re-authentication itself.
type sniffConn struct {
	net.Conn
	pw    *io.PipeWriter
	auths chan *packets.Auth
	done  chan struct{}
	once  sync.Once
}

func newSniffConn(conn net.Conn) *sniffConn {
	pr, pw := io.Pipe()
	s := &sniffConn{Conn: conn, pw: pw, auths: make(chan *packets.Auth, 8), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			cp, err := packets.ReadPacket(pr)
			if err != nil {
				_ = pr.CloseWithError(err)
				return
			}
			if a, ok := cp.Content.(*packets.Auth); ok && a.ReasonCode == 0x00 {
				select {
				case s.auths <- a:
				default:
				}
			}
		}
	}()
	return s
}

func (s *sniffConn) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	if n > 0 {
		_, _ = s.pw.Write(p[:n])
	}
	if err != nil {
		s.stop()
	}
	return n, err
}

func (s *sniffConn) Close() error {
	s.stop()
	return s.Conn.Close()
}

func (s *sniffConn) stop() { s.once.Do(func() { _ = s.pw.Close() }) }

// authSuccess returns the data of the next AUTH 0x00 the client received.
func (s *sniffConn) authSuccess(t *testing.T) []byte {
	t.Helper()
	select {
	case a := <-s.auths:
		require.NotNil(t, a.Properties)
		return a.Properties.AuthData
	case <-time.After(5 * time.Second):
		t.Fatal("no AUTH 0x00")
		return nil
	}
}

func dialScram(t *testing.T, addr string, a *scramAuther) (*paho.Client, *paho.Connack, chan *paho.Disconnect, error) {
	c, ca, dis, _, err := dialScramSniff(t, addr, a)
	return c, ca, dis, err
}

func dialScramSniff(t *testing.T, addr string, a *scramAuther) (*paho.Client, *paho.Connack, chan *paho.Disconnect, *sniffConn, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	conn := newSniffConn(raw)
	t.Cleanup(func() {
		_ = conn.Close()
		<-conn.done
	})
	dis := make(chan *paho.Disconnect, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), AuthHandler: a, PacketTimeout: 5 * time.Second,
		OnServerDisconnect: func(d *paho.Disconnect) { dis <- d }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: "scram-" + string(a.mech), CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{AuthMethod: string(a.mech), AuthData: a.begin()}})
	if err != nil {
		_ = conn.Close()
		return nil, ca, dis, conn, err
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		<-c.Done()
	})
	return c, ca, dis, conn, nil
}

func scramBroker(t *testing.T) (*mochi.Hook, string) {
	t.Helper()
	f := &scramauth.File{}
	for _, u := range []struct{ name, pass string }{{"alice", "pencil"}, {"bob", "hunter2"}} {
		creds := map[scramauth.Mechanism]scramauth.Credential{}
		for _, m := range scramauth.Mechanisms {
			c, err := scramauth.NewCredential(m, u.pass, 4096)
			require.NoError(t, err)
			creds[m] = c
		}
		f.Put(scramauth.User{Name: u.name, Credentials: creds, Attributes: map[string]string{"group": "thermostats"}})
	}
	users, err := scramauth.NewUsers(f)
	require.NoError(t, err)
	authn, err := scramauth.New(scramauth.Config{Store: users})
	require.NoError(t, err)
	m := newManager(t, auth.Config{Authenticator: authn, Authorizer: auth.AllowAuthenticated})
	_, h, addr := startBroker(t, mochi.Config{Manager: m})
	return h, addr
}

// TestScram runs SCRAM-SHA-256 and SCRAM-SHA-512 through mochi with paho:
// CONNECT → AUTH 0x18 → AUTH 0x18 → CONNACK with the server-final-message,
// then re-authentication AUTH 0x19 → 0x18 → 0x18 → AUTH 0x00.
func TestScram(t *testing.T) {
	h, addr := scramBroker(t)
	for _, mech := range scramauth.Mechanisms {
		t.Run("connect_and_reauth_"+string(mech), func(t *testing.T) {
			a := newScramAuther(t, mech, "alice", "pencil")
			c, ca, _, sniff, err := dialScramSniff(t, addr, a)
			require.NoError(t, err)
			require.Equal(t, byte(0x00), ca.ReasonCode)
			require.NotNil(t, ca.Properties)
			require.Equal(t, string(mech), ca.Properties.AuthMethod)
			require.True(t, strings.HasPrefix(string(ca.Properties.AuthData), "v="), "CONNACK carries the server-final-message")
			a.finish(t, ca.Properties.AuthData)

			for range 2 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				ar, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19,
					Properties: &paho.AuthProperties{AuthMethod: string(mech), AuthData: a.begin()}})
				cancel()
				require.NoError(t, err)
				require.True(t, ar.Success)
				require.Equal(t, byte(0x00), ar.ReasonCode)
				final := sniff.authSuccess(t)
				require.True(t, strings.HasPrefix(string(final), "v="), "AUTH 0x00 carries the server-final-message")
				a.finish(t, final)
			}
			require.Eventually(t, func() bool { return h.Len() >= 1 }, 5*time.Second, 10*time.Millisecond)
		})
	}
	t.Run("wrong_password_CONNACK_0x87", func(t *testing.T) {
		a := newScramAuther(t, scramauth.SHA256, "alice", "wrong")
		_, ca, _, err := dialScram(t, addr, a)
		require.Error(t, err)
		require.NotNil(t, ca)
		require.Equal(t, byte(0x87), ca.ReasonCode)
	})
	t.Run("unknown_user_CONNACK_0x87", func(t *testing.T) {
		a := newScramAuther(t, scramauth.SHA256, "mallory", "pencil")
		_, ca, _, err := dialScram(t, addr, a)
		require.Error(t, err)
		require.NotNil(t, ca)
		require.Equal(t, byte(0x87), ca.ReasonCode)
	})
	t.Run("reauth_wrong_password_DISCONNECT_0x87", func(t *testing.T) {
		a := newScramAuther(t, scramauth.SHA256, "alice", "pencil")
		c, _, dis, err := dialScram(t, addr, a)
		require.NoError(t, err)
		wrong := newScramAuther(t, scramauth.SHA256, "alice", "wrong")
		a.mu.Lock()
		a.client = wrong.client
		a.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ar, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19,
			Properties: &paho.AuthProperties{AuthMethod: string(scramauth.SHA256), AuthData: a.begin()}})
		if err == nil {
			require.False(t, ar.Success)
			require.Equal(t, byte(0x87), ar.ReasonCode)
		}
		select {
		case d := <-dis:
			require.Equal(t, byte(0x87), d.ReasonCode)
		case <-time.After(5 * time.Second):
			t.Fatal("no DISCONNECT")
		}
	})
	t.Run("reauth_other_user_DISCONNECT_0x87", func(t *testing.T) {
		a := newScramAuther(t, scramauth.SHA512, "alice", "pencil")
		c, _, dis, err := dialScram(t, addr, a)
		require.NoError(t, err)
		bob := newScramAuther(t, scramauth.SHA512, "bob", "hunter2")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19,
			Properties: &paho.AuthProperties{AuthMethod: string(scramauth.SHA512), AuthData: bob.begin()}})
		select {
		case d := <-dis:
			require.Equal(t, byte(0x87), d.ReasonCode)
		case <-time.After(5 * time.Second):
			t.Fatal("no DISCONNECT")
		}
	})
}
