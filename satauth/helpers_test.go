package satauth_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

// logBuffer collects log records for assertions, safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newAuth builds an Authenticator for srv with audience aio-mq; mut edits
// the Config first. Logs go to the returned buffer at debug level.
func newAuth(t testing.TB, srv *sattest.Server, mut func(*satauth.Config)) (*satauth.Authenticator, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg := srv.Config("aio-mq")
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if mut != nil {
		mut(&cfg)
	}
	a, err := satauth.New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return a, logs
}

func connect(a auth.Authenticator, token string) auth.Result {
	return a.Authenticate(context.Background(), &auth.Request{
		ClientID: "client-1", AuthMethod: satauth.Method, AuthData: []byte(token), ProtocolVersion: 5,
	})
}

func attrs(p *auth.Principal) map[string]string {
	m := map[string]string{}
	for k, v := range p.Attributes() {
		m[k] = v
	}
	return m
}

// modes runs f for both verification modes.
func modes(t *testing.T, f func(t *testing.T, mode satauth.Mode)) {
	t.Run("tokenreview", func(t *testing.T) { f(t, satauth.ModeTokenReview) })
	t.Run("local", func(t *testing.T) { f(t, satauth.ModeLocal) })
}

func newDiscardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// hmacWithPublicKey signs payload with HS256 using the server's RSA public
// key (PKIX DER) as the HMAC secret: the classic algorithm confusion attack.
func hmacWithPublicKey(t testing.TB, srv *sattest.Server, payload string) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(srv.PublicKey())
	require.NoError(t, err)
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	signing := b64(`{"alg":"HS256","typ":"JWT"}`) + "." + payload
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func newTextLogger(w *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
