package e2e

// The exporter with a broker: an in-process mochi broker with the mqttauth
// hook, the Prometheus exporter and the admin handler, scraped by a real
// Prometheus. It lives here rather than in metrics/prometheus so that the
// exporter's module does not depend on a broker.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/admin"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/metrics/prometheus"
	"github.com/mqttauth/mqttauth/metrics/prometheus/promtest"
	"github.com/mqttauth/mqttauth/truststore"
)

func pahoConnect(t *testing.T, addr, id, user string) *paho.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), PacketTimeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Username: user, UsernameFlag: true, Password: []byte("secret"), PasswordFlag: true})
	require.NoError(t, err)
	require.Zero(t, ca.ReasonCode)
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		<-c.Done()
	})
	return c
}

// TestPrometheusScrapesMochiBroker runs an in-process mochi broker with the
// mqttauth hook, the exporter and the admin handler; a real Prometheus
// scrapes /metrics while paho.golang and mosquitto_pub clients pass, fail
// and get revoked, and the counts are read back through Prometheus's query
// API.
func TestPrometheusScrapesMochiBroker(t *testing.T) {
	promBin := promtest.Binary(t)
	pub := proc.RequireTool(t, "mosquitto_pub", "mosquitto-clients")

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

	srv := mqtt.New(&mqtt.Options{Logger: quiet, InlineClient: true})
	hook, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
	require.NoError(t, err)
	ln := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tcp", Address: "127.0.0.1:0"})
	require.NoError(t, srv.AddListener(ln))
	require.NoError(t, srv.Serve())
	t.Cleanup(func() {
		_ = srv.Close()
		require.Eventually(t, func() bool { return hook.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
	})
	brokerAddr := ln.Address()

	h, err := admin.New(admin.Config{Metrics: exp.Handler(), Checks: []admin.Check{tsGate.Check()}})
	require.NoError(t, err)
	adminSrv, err := admin.Listen("127.0.0.1:0", h)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, adminSrv.Shutdown(context.Background())) })

	base := promtest.Start(t, promBin, adminSrv.Addr().String())
	require.Eventually(t, func() bool { return promtest.Query(t, base, `up{job="mqttauth"}`) == 1 },
		30*time.Second, 250*time.Millisecond, "prometheus never scraped the admin handler")

	// Clients: paho alice and bob pass; mosquitto_pub as alice passes and
	// once with a wrong password fails (CONNACK 0x86 in v5).
	pahoConnect(t, brokerAddr, "paho-alice", "alice")
	pahoConnect(t, brokerAddr, "paho-bob", "bob")
	host, port, _ := net.SplitHostPort(brokerAddr)
	mosq := func(password string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, pub, "-V", "mqttv5", "-h", host, "-p", port, "-i", "mosq-alice",
			"-u", "alice", "-P", password, "-t", "sensors/1", "-m", "21.5", "-q", "1").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	require.NoError(t, mosq("secret"))
	require.Error(t, mosq("wrong"))

	// Carol's credential expires: DISCONNECT 0xA0.
	pahoConnect(t, brokerAddr, "paho-carol", "carol")

	// Bob loses Connect permission; the re-check disconnects him.
	revoked.Store("bob", struct{}{})
	rep := m.Recheck(context.Background(), auth.CheckConnect(az))
	require.Equal(t, 1, rep.Disconnected)

	// A failed reload of the truststore keeps the last good set.
	require.NoError(t, os.WriteFile(caFile, []byte("garbage"), 0o600))
	require.Error(t, store.Reload())
	require.Eventually(t, func() bool { return m.Len() == 1 }, 5*time.Second, 10*time.Millisecond)

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
	for _, bad := range []string{"alice", "bob", "carol", "paho-", "mosq-", "sensors/1"} {
		require.NotContains(t, string(body), bad)
	}
	http.DefaultClient.CloseIdleConnections()
}
