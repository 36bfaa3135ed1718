package admin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/admin"
	"github.com/mqttauth/mqttauth/internal/freeport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func serve(t *testing.T, cfg admin.Config) string {
	t.Helper()
	h, err := admin.New(cfg)
	require.NoError(t, err)
	port, err := freeport.Loopback()
	require.NoError(t, err)
	srv, err := admin.Listen(fmt.Sprintf("127.0.0.1:%d", port), h)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, srv.Shutdown(context.Background()))
		http.DefaultClient.CloseIdleConnections()
	})
	return "http://" + srv.Addr().String()
}

func TestAdmin(t *testing.T) {
	ts, policy := admin.NewGate("truststore"), admin.NewGate("policy")
	users := admin.Check{Name: "users", Check: func(context.Context) error { return nil }}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "m 1\n") })
	base := serve(t, admin.Config{Metrics: metrics, Checks: []admin.Check{ts.Check(), policy.Check(), users}})

	code, body := get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)

	code, body = get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "m 1\n", body)

	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "not ready while a required source has never loaded")
	require.Contains(t, body, "[-] truststore: admin: not ready: truststore has never loaded")
	require.Contains(t, body, "[-] policy")

	ts.Open()
	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.NotContains(t, body, "truststore")

	policy.Open()
	code, body = get(t, base+"/readyz?verbose")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "[+] truststore ok\n[+] policy ok\n[+] users ok\nok\n", body)

	code, _ = get(t, base+"/debug/pprof/")
	require.Equal(t, http.StatusNotFound, code, "pprof is off unless enabled")
}

func TestAdminPprofWhenEnabled(t *testing.T) {
	base := serve(t, admin.Config{EnablePprof: true})
	code, body := get(t, base+"/debug/pprof/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "goroutine")
	code, _ = get(t, base+"/metrics")
	require.Equal(t, http.StatusNotFound, code, "no metrics handler, no /metrics")
}

func TestAdminRejectsUnnamedCheck(t *testing.T) {
	_, err := admin.New(admin.Config{Checks: []admin.Check{{Check: func(context.Context) error { return errors.New("x") }}}})
	require.Error(t, err)
}
