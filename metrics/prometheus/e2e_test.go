package prometheus_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/admin"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/metrics/prometheus"
	"github.com/mqttauth/mqttauth/metrics/prometheus/promtest"
	"github.com/mqttauth/mqttauth/truststore"
)

// client is a session of the test's Manager and the Conn it ends.
type client struct {
	*auth.Session
	conn *authtest.Conn
}

// connect runs a v5 CONNECT with a user name and password through a new
// session of m and requires the CONNACK reason code want; a session that
// was accepted is closed when the test ends.
func connect(t *testing.T, m *auth.Manager, id, user, password string, want auth.ReasonCode) client {
	t.Helper()
	c := client{conn: authtest.NewConn()}
	c.Session = m.NewSession(c.conn)
	r := c.Connect(context.Background(), &auth.Request{ClientID: id, Username: user, HasUsername: true,
		Password: []byte(password), HasPassword: true, ProtocolVersion: 5})
	require.Equal(t, want, r.Packet.Code, "CONNACK of %s: %v", id, r.Err)
	if want != 0 {
		require.True(t, r.Close)
		c.Close()
		return c
	}
	t.Cleanup(c.Close)
	return c
}

// TestPrometheusScrapesExporter runs the core's sessions with the exporter
// and the admin handler; a real Prometheus scrapes /metrics while clients
// pass, fail, expire and get revoked, and the counts are read back through
// Prometheus's query API. The same with a broker and real MQTT clients is
// examples/e2e's TestPrometheusScrapesMochiBroker.
func TestPrometheusScrapesExporter(t *testing.T) {
	promBin := promtest.Binary(t)

	exp, err := prometheus.New(prometheus.Config{})
	require.NoError(t, err)
	quiet := slog.New(slog.DiscardHandler)

	// A truststore, so that its loads are counted too.
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, authtest.CertsPEM(authtest.NewRootCA(t, "root").Cert), 0o600))
	tsGate := admin.NewGate("truststore")
	store, err := truststore.New(truststore.Config{CAPaths: []string{caFile}, DisableWatch: true, Logger: quiet, Observer: exp})
	require.NoError(t, err)
	tsGate.Open()

	var revoked sync.Map // user name -> struct{}
	az := auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, a auth.Action) auth.Decision {
		if p == nil {
			return auth.Deny
		}
		if _, gone := revoked.Load(p.Username()); gone {
			return auth.Deny
		}
		return auth.Allow("all")
	})
	m, err := auth.NewManager(auth.Config{
		Authenticator: promtest.Chain(),
		Authorizer:    az,
		Logger:        quiet,
		Observer:      exp,
	})
	require.NoError(t, err)

	h, err := admin.New(admin.Config{Metrics: exp.Handler(), Checks: []admin.Check{tsGate.Check()}})
	require.NoError(t, err)
	adminSrv, err := admin.Listen("127.0.0.1:0", h)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, adminSrv.Shutdown(context.Background())) })

	base := promtest.Start(t, promBin, adminSrv.Addr().String())
	require.Eventually(t, func() bool { return promtest.Query(t, base, `up{job="mqttauth"}`) == 1 },
		30*time.Second, 250*time.Millisecond, "prometheus never scraped the admin handler")

	// Clients: alice (twice, the second closing again) and bob pass; one
	// with a wrong password fails (CONNACK 0x86 in v5).
	connect(t, m, "paho-alice", "alice", "secret", 0)
	bob := connect(t, m, "paho-bob", "bob", "secret", 0)
	mosq := connect(t, m, "mosq-alice", "alice", "secret", 0)
	mosq.Close()
	connect(t, m, "mosq-alice", "alice", "wrong", auth.BadUserNameOrPassword)

	// Carol's credential expires: DISCONNECT 0xA0.
	carol := connect(t, m, "paho-carol", "carol", "secret", 0)
	select {
	case <-carol.conn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("carol's session did not end at her credential's expiry")
	}
	final, _ := carol.conn.Final()
	require.Equal(t, auth.MaximumConnectTime, final.Code)

	// Bob loses Connect permission; the re-check disconnects him.
	revoked.Store("bob", struct{}{})
	rep := m.Recheck(context.Background(), auth.CheckConnect(az))
	require.Equal(t, 1, rep.Disconnected)

	// A failed reload of the truststore keeps the last good set.
	require.NoError(t, os.WriteFile(caFile, []byte("garbage"), 0o600))
	require.Error(t, store.Reload())
	require.Eventually(t, func() bool { return m.Len() == 1 }, 5*time.Second, 10*time.Millisecond)
	final, closed := bob.conn.Final()
	require.True(t, closed)
	require.Equal(t, auth.NotAuthorized, final.Code)

	want := map[string]float64{
		`mqttauth_authentication_total{method="password",result="pass"}`:      4,
		`mqttauth_authentication_total{method="password",result="fail"}`:      1,
		`mqttauth_authentication_total{method="TOKEN",result="not_relevant"}`: 5,
		`mqttauth_connections_total{result="accepted",reason_code="0x00"}`:    4,
		`mqttauth_connections_total{result="refused",reason_code="0x86"}`:     1,
		`mqttauth_disconnects_total{cause="expiry",reason_code="0xA0"}`:       1,
		`mqttauth_disconnects_total{cause="policy",reason_code="0x87"}`:       1,
		`mqttauth_sessions`:                                                      1,
		`mqttauth_rechecks_total`:                                                1,
		`mqttauth_recheck_disconnects_total`:                                     1,
		`mqttauth_reloads_total{component="truststore",result="ok"}`:             1,
		`mqttauth_reloads_total{component="truststore",result="failed"}`:         1,
		`sum(mqttauth_authentication_duration_seconds_count{method="password"})`: 5,
		`mqttauth_authentication_duration_seconds_count{method="TOKEN"}`:         5,
	}
	for expr, v := range want {
		require.Eventually(t, func() bool { return promtest.Query(t, base, expr) == v }, 15*time.Second, 250*time.Millisecond,
			"%s: want %v, Prometheus has %v", expr, v, promtest.Query(t, base, expr))
	}
	// No series carries a client id, a user name or a topic.
	resp, err := http.Get("http://" + adminSrv.Addr().String() + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	for _, bad := range []string{"alice", "bob", "carol", "paho-", "mosq-"} {
		require.NotContains(t, string(body), bad)
	}
	http.DefaultClient.CloseIdleConnections()
}
