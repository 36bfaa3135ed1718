package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proc.Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// projected writes token into dir the way the kubelet updates a projected
// volume: a new timestamped directory, then an atomic rename of the ..data
// symlink to it; mqtt-token is a symlink through ..data.
func projected(t *testing.T, dir, token string) {
	t.Helper()
	ts := fmt.Sprintf("..%d", time.Now().UnixNano())
	require.NoError(t, os.Mkdir(filepath.Join(dir, ts), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ts, "mqtt-token"), []byte(token), 0o644))
	require.NoError(t, os.Symlink(ts, filepath.Join(dir, "..data_tmp")))
	require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	if _, err := os.Lstat(filepath.Join(dir, "mqtt-token")); os.IsNotExist(err) {
		require.NoError(t, os.Symlink(filepath.Join("..data", "mqtt-token"), filepath.Join(dir, "mqtt-token")))
	}
}

// TestReauth runs satclient in-process against the example broker binary,
// whose K8S-SAT method talks to satauth/sattest: a fake API server that
// signs tokens living a few seconds (a real API server's TokenRequest
// refuses less than 600 s; examples/e2e/sat covers the real one). The
// broker, the configuration shape and the sockets are the real ones.
func TestReauth(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with the broker binary: not in -short mode")
	}
	api := sattest.NewServer(t, sattest.Options{})
	api.AddServiceAccount("default", "sensor", map[string]string{
		"aio-broker-auth/group": "sensors", "aio-broker-auth/building": "17",
	})
	token := func(life time.Duration) (string, time.Time) {
		now := time.Now()
		return api.Token("default", "sensor", sattest.TokenOptions{Lifetime: life, IssuedAt: now}), now.Add(life).Truncate(time.Second)
	}
	pki := t.TempDir()
	_, err := devpki.Ensure(pki, time.Now())
	require.NoError(t, err)
	broker, port := proc.StartBroker(t, t.TempDir(),
		proc.SATConfig(pki, api.URL(), api.CAFile(), api.TokenFile(), "tokenReview", api.Issuer()))

	dir := t.TempDir()
	tok1, exp1 := token(4 * time.Second)
	projected(t, dir, tok1)

	out := &proc.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"-broker", "localhost:" + port, "-cafile", filepath.Join(pki, devpki.ServerRootCA),
			"-client-id", "sensor-17", "-token-file", filepath.Join(dir, "mqtt-token"),
			"-publish", "buildings/17/temperature", "-interval", "300ms",
			"-debounce", "100ms", "-timeout", "2s", "-max-backoff", "2s"}, out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-errc:
		case <-time.After(10 * time.Second):
			t.Error("satclient did not stop")
		}
	})
	proc.WaitFor(t, out, 10*time.Second, "msg=connected")
	proc.WaitFor(t, out, 5*time.Second, "msg=published", `reason_code="0x00 Success"`)

	// Rotation through the ..data symlink: AUTH 0x19, AUTH 0x00.
	tok2, _ := token(12 * time.Second)
	projected(t, dir, tok2)
	proc.WaitFor(t, out, 5*time.Second, "msg=re-authenticated", `reason_code="0x00 Success"`)
	// The broker's record of it is at Debug (routine): not in its Info log.
	require.Zero(t, broker.Out.Count("decision=reauth_pass", "client_id=sensor-17"))

	// Still connected and publishing after the first token's expiry.
	time.Sleep(time.Until(exp1.Add(1500 * time.Millisecond)))
	published := out.Count("msg=published", `reason_code="0x00 Success"`)
	require.Eventually(t, func() bool {
		return out.Count("msg=published", `reason_code="0x00 Success"`) > published+1
	}, 5*time.Second, 100*time.Millisecond, out.String())
	require.Len(t, errc, 0, out.String())

	// The API server fails: the broker answers AUTH 0x18 and keeps the
	// connection; satclient retries with backoff until it is back.
	api.Fail(503)
	tok3, exp3 := token(9 * time.Second)
	projected(t, dir, tok3)
	proc.WaitFor(t, out, 5*time.Second, `msg="broker cannot verify the token now"`, "0x18")
	proc.WaitFor(t, broker.Out, 5*time.Second, "decision=reauth_unavailable", "client_id=sensor-17")
	proc.WaitFor(t, out, 5*time.Second, `msg="re-authentication deferred by the broker, retrying"`)
	api.Fail(0)
	require.Eventually(t, func() bool {
		return out.Count("msg=re-authenticated", "token="+tokenID([]byte(tok3))) > 0
	}, 8*time.Second, 100*time.Millisecond, out.String())
	require.Len(t, errc, 0, out.String())

	// No new token: at the third token's expiry the broker sends
	// DISCONNECT 0xA0 and satclient ends with an error.
	select {
	case err := <-errc:
		require.Error(t, err)
		require.Contains(t, err.Error(), "0xa0 Maximum connect time")
		require.WithinDuration(t, exp3, time.Now(), 3*time.Second)
	case <-time.After(time.Until(exp3) + 5*time.Second):
		t.Fatalf("still connected after the token expired:\n%s", out)
	}
	errc <- nil                                                     // for the cleanup
	require.NotContains(t, out.String()+broker.Out.String(), "eyJ") // no token in any log
}

func TestRunErrors(t *testing.T) {
	var out bytes.Buffer
	require.ErrorContains(t, run(context.Background(), []string{"-token-file", filepath.Join(t.TempDir(), "missing")}, &out), "no such file")
	require.Error(t, run(context.Background(), []string{"-interval", "0"}, &out))
	require.Error(t, run(context.Background(), []string{"extra"}, &out))
}
