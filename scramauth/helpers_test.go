package scramauth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/xdg-go/scram"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/scramauth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var ctx = context.Background()

const exchangeTimeout = 10 * time.Second

// testUsers is computed once: PBKDF2 at 4096 iterations per credential.
var testUsers = sync.OnceValue(func() *scramauth.File {
	cred := func(m scramauth.Mechanism, pw string) scramauth.Credential {
		c, err := scramauth.NewCredential(m, pw, 4096)
		if err != nil {
			panic(err)
		}
		return c
	}
	return &scramauth.File{Users: []scramauth.User{
		{
			Name: "alice",
			Credentials: map[scramauth.Mechanism]scramauth.Credential{
				scramauth.SHA256: cred(scramauth.SHA256, "pencil"),
				scramauth.SHA512: cred(scramauth.SHA512, "pencil"),
			},
			Attributes: map[string]string{"group": "thermostats", "floor": "2"},
		},
		{
			Name: "bob",
			Credentials: map[scramauth.Mechanism]scramauth.Credential{
				scramauth.SHA256: cred(scramauth.SHA256, "hunter2"),
			},
		},
		{
			Name: "carol,=x", // needs =2C and =3D on the wire
			Credentials: map[scramauth.Mechanism]scramauth.Credential{
				scramauth.SHA256: cred(scramauth.SHA256, "s3cret"),
			},
		},
	}}
})

func newUsers(t testing.TB) *scramauth.Users {
	t.Helper()
	u, err := scramauth.NewUsers(testUsers())
	require.NoError(t, err)
	return u
}

func newAuthenticator(t testing.TB, cfg scramauth.Config) *scramauth.Authenticator {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = newUsers(t)
	}
	a, err := scramauth.New(cfg)
	require.NoError(t, err)
	return a
}

// rig is one connection: a Session of a Manager with the fake clock.
type rig struct {
	m     *auth.Manager
	clock *authtest.Clock
	conn  *authtest.Conn
	s     *auth.Session
	logs  *bytes.Buffer
}

func newRig(t testing.TB, a auth.Authenticator) *rig {
	t.Helper()
	clock := authtest.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var logs bytes.Buffer
	m, err := auth.NewManager(auth.Config{
		Authenticator:   a,
		Authorizer:      auth.AllowAuthenticated,
		Clock:           clock,
		ExchangeTimeout: exchangeTimeout,
		Logger:          newLogger(&logs),
	})
	require.NoError(t, err)
	conn := authtest.NewConn()
	s := m.NewSession(conn)
	t.Cleanup(s.Close)
	return &rig{m: m, clock: clock, conn: conn, s: s, logs: &logs}
}

func (r *rig) connect(mech scramauth.Mechanism, data string) auth.Response {
	return r.s.Connect(ctx, &auth.Request{
		ClientID: "client-1", AuthMethod: string(mech), AuthData: []byte(data), ProtocolVersion: 5,
	})
}

func (r *rig) auth(code auth.ReasonCode, mech scramauth.Mechanism, data string) auth.Response {
	return r.s.Auth(ctx, auth.Packet{Type: auth.AUTH, Code: code, Method: string(mech), Data: []byte(data)})
}

func hashOf(m scramauth.Mechanism) scram.HashGeneratorFcn {
	if m == scramauth.SHA512 {
		return scram.SHA512
	}
	return scram.SHA256
}

// newConv starts a client conversation of the same library.
func newConv(t testing.TB, m scramauth.Mechanism, user, pass string) *scram.ClientConversation {
	t.Helper()
	c, err := hashOf(m).NewClient(user, pass, "")
	require.NoError(t, err)
	return c.NewConversation()
}

func step(t testing.TB, conv *scram.ClientConversation, in string) string {
	t.Helper()
	out, err := conv.Step(in)
	require.NoError(t, err)
	return out
}

// requireChallenge checks an AUTH 0x18 carrying a server-first-message.
func requireChallenge(t testing.TB, resp auth.Response, mech scramauth.Mechanism) string {
	t.Helper()
	require.NoError(t, resp.Err)
	require.False(t, resp.Close)
	require.Equal(t, auth.AUTH, resp.Packet.Type)
	require.Equal(t, auth.ContinueAuthentication, resp.Packet.Code)
	require.Equal(t, string(mech), resp.Packet.Method)
	require.True(t, strings.HasPrefix(string(resp.Packet.Data), "r="), "server-first-message: %q", resp.Packet.Data)
	return string(resp.Packet.Data)
}

// fullConnect runs a successful CONNECT exchange and returns the client's
// conversation after it verified the server-final-message.
func fullConnect(t testing.TB, r *rig, mech scramauth.Mechanism, user, pass string) *scram.ClientConversation {
	t.Helper()
	conv := newConv(t, mech, user, pass)
	s1 := requireChallenge(t, r.connect(mech, step(t, conv, "")), mech)
	resp := r.auth(auth.ContinueAuthentication, mech, step(t, conv, s1))
	require.NoError(t, resp.Err)
	require.Equal(t, auth.Packet{Type: auth.CONNACK, Code: auth.Success, Method: string(mech), Data: resp.Packet.Data}, resp.Packet)
	require.True(t, strings.HasPrefix(string(resp.Packet.Data), "v="))
	step(t, conv, string(resp.Packet.Data))
	require.True(t, conv.Valid(), "the client verified the server signature")
	return conv
}

// tamper flips one bit of the proof of a client-final-message.
func tamper(t testing.TB, c2 string) string {
	t.Helper()
	i := strings.LastIndex(c2, ",p=")
	require.Positive(t, i)
	proof, err := base64.StdEncoding.DecodeString(c2[i+3:])
	require.NoError(t, err)
	proof[0] ^= 1
	return c2[:i+3] + base64.StdEncoding.EncodeToString(proof)
}

// lockedWriter serialises writes of a logger shared by goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newLogger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: buf}, nil))
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func slogTo(w *lockedWriter) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
