package adminserve_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/examples/internal/adminserve"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/metrics/prometheus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// revocationConfig is one X509 port with revocation (softFail, OCSP) and
// the admin settings admin.
const revocationConfig = `
kind: BrokerListener
metadata: {name: l}
spec:
  ports:
    - {port: 8883, address: 127.0.0.1, authenticationRef: x509, tls: {mode: Manual, manual: {certFile: mqtts-endpoint.crt, keyFile: mqtts-endpoint.key}}}
---
kind: BrokerAuthentication
metadata: {name: x509}
spec:
  authenticationMethods:
    - method: X509
      x509Settings: {trustedClientCaCert: fabrikam_root_ca.crt, revocation: {mode: softFail, ocsp: true}}
---
apiVersion: mqttauth.dev/v1alpha1
kind: MqttAuthSettings
spec:
  admin: %s
`

func build(t *testing.T, admin string) (*aioconfig.Config, *aioconfig.Broker, *prometheus.Exporter) {
	t.Helper()
	dir := t.TempDir()
	_, err := devpki.Ensure(dir, time.Now())
	require.NoError(t, err)
	path := filepath.Join(dir, "broker.yaml")
	require.NoError(t, os.WriteFile(path, fmt.Appendf(nil, revocationConfig, admin), 0o600))
	cfg, err := aioconfig.Load(path)
	require.NoError(t, err)
	exp, err := prometheus.New(prometheus.Config{})
	require.NoError(t, err)
	b, err := aioconfig.Build(context.Background(), cfg, aioconfig.Options{Logger: quiet, Observer: exp})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return cfg, b, exp
}

// TestRegisterBroker: the throttle's counters, the cached chains and the
// revocation checker's stats are exported, one series each or per
// source; registering twice is an error.
func TestRegisterBroker(t *testing.T) {
	_, b, exp := build(t, "null")
	require.NoError(t, adminserve.RegisterBroker(exp, b))
	rec := httptest.NewRecorder()
	exp.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`mqttauth_revocation_fetches_total{source="crl"} 0`, `mqttauth_revocation_fetches_total{source="ocsp"} 0`,
		`mqttauth_revocation_fetch_failures_total{source="ocsp"} 0`, `mqttauth_revocation_cached{source="ocsp"} 0`,
		"# TYPE mqttauth_revocation_cached gauge", "# TYPE mqttauth_revocation_fetches_total counter",
		"mqttauth_revocation_revoked_total 0", "mqttauth_revocation_unavailable_total 0", "mqttauth_revocation_soft_passes_total 0",
		"# TYPE mqttauth_throttle_entries gauge", "mqttauth_throttle_entries 0", "mqttauth_x509_cached_chains 0",
	} {
		require.Contains(t, rec.Body.String(), want)
	}
	require.Error(t, adminserve.RegisterBroker(exp, b), "the same metrics twice")
}

// TestStart: the flag overrides the configuration, "off" turns the
// listener off, the configuration's pprof reaches the handler.
func TestStart(t *testing.T) {
	addr := proc.FreeAddr(t)
	cfg, b, exp := build(t, fmt.Sprintf("{address: %q, pprof: true}", addr))
	srv, err := adminserve.Start(adminserve.Config{Flag: adminserve.Off, Config: cfg, Broker: b, Exporter: exp, Logger: quiet})
	require.NoError(t, err)
	require.Nil(t, srv, "-admin-addr off")

	srv, err = adminserve.Start(adminserve.Config{Config: cfg, Broker: b, Exporter: exp, Logger: quiet})
	require.NoError(t, err)
	defer adminserve.Stop(srv)
	require.Equal(t, addr, srv.Addr().String(), "the configuration's address")
	for path, want := range map[string]int{"/readyz": http.StatusOK, "/debug/pprof/": http.StatusOK, "/metrics": http.StatusOK} {
		resp, err := http.Get("http://" + addr + path)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, path)
	}

	// The configuration's address is taken (by srv): an error.
	_, err = adminserve.Start(adminserve.Config{Config: cfg, Broker: b, Exporter: exp, Logger: quiet})
	require.ErrorContains(t, err, "address already in use")
	// The flag overrides it.
	other := proc.FreeAddr(t)
	srv2, err := adminserve.Start(adminserve.Config{Flag: other, Config: cfg, Broker: b, Exporter: exp, Logger: quiet})
	require.NoError(t, err)
	defer adminserve.Stop(srv2)
	require.Equal(t, other, srv2.Addr().String())
}

// TestStartDefaultTaken: the default address, taken by another program,
// is a warning, not an error: the program runs without the listener.
func TestStartDefaultTaken(t *testing.T) {
	if ln, err := net.Listen("tcp", aioconfig.DefaultAdminAddress); err == nil {
		defer ln.Close()
	} // else another program holds it already
	cfg, b, exp := build(t, "null")
	var log strings.Builder
	srv, err := adminserve.Start(adminserve.Config{Config: cfg, Broker: b, Exporter: exp, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	require.NoError(t, err)
	require.Nil(t, srv)
	require.Contains(t, log.String(), "admin listener not started")
}
