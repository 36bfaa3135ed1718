package x509auth_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/internal/certid"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// logLines decodes the JSON log lines in b.
func logLines(t *testing.T, b *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	return out
}

// TestLogsTellCertificatesApart: two certificates with the same common
// name are told apart in the logs by their serial and SHA-256 fingerprint,
// written as openssl prints them, when refused and when accepted (debug
// level).
func TestLogsTellCertificatesApart(t *testing.T) {
	root := authtest.NewRootCAAt(t, t0, "Log Root CA")
	other := authtest.NewRootCAAt(t, t0, "Log Other CA")
	good := root.Leaf(t, "twin")
	bad := other.Leaf(t, "twin") // same CN, other CA: refused
	set, err := truststore.NewSet([]*x509.Certificate{root.Cert}, nil)
	require.NoError(t, err)
	logs := &syncBuffer{}
	a := newAuthenticator(t, set, authtest.NewClock(t0), func(c *x509auth.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})

	require.Equal(t, auth.Pass, a.Authenticate(context.Background(), request(good.Chain...)).Outcome)
	require.Equal(t, auth.Fail, a.Authenticate(context.Background(), request(bad.Chain...)).Outcome)

	lines := logLines(t, logs)
	require.Len(t, lines, 2)
	for i, tc := range []struct {
		cert     *x509.Certificate
		decision string
	}{{good.Cert, "pass"}, {bad.Cert, "deny"}} {
		l := lines[i]
		require.Equal(t, tc.decision, l["decision"])
		require.Equal(t, "CN=twin", l["subject"])
		require.Equal(t, certid.Serial(tc.cert), l["serial"], "line %d", i)
		require.Equal(t, certid.Fingerprint(tc.cert), l["fingerprint_sha256"], "line %d", i)
	}
	require.NotEqual(t, lines[0]["fingerprint_sha256"], lines[1]["fingerprint_sha256"])
	require.NotContains(t, logs.String(), "PRIVATE")
}
