package e2e

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/examples/internal/tutorial"
)

// A two-round enhanced-authentication method before CONNACK, with a
// paho.golang client (scramclient): the example broker's SCRAM sample user
// connects with client-first in CONNECT, answers the server-first (AUTH
// 0x18) with client-final (AUTH 0x18), and verifies the server's signature
// on the CONNACK; then re-authenticates the same way (AUTH 0x19 … AUTH
// 0x00) and publishes.
func TestSCRAMTwoRounds(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "dev")
	addr := proc.FreeAddr(t)
	broker := startReady(t, "broker listening", binary(t, "broker"), "-dev-dir", dev, "-addr", addr)
	broker.WaitFor(t, 5*time.Second, "go run ./examples/scramclient") // the broker says how to connect
	_, port, _ := net.SplitHostPort(addr)
	client := binary(t, "scramclient")
	args := func(mech, pwFile string, extra ...string) []string {
		return append([]string{"-broker", "localhost:" + port, "-cafile", filepath.Join(dev, devpki.ServerRootCA),
			"-user", tutorial.SampleSCRAMUser, "-password-file", pwFile, "-mech", mech}, extra...)
	}
	pw := filepath.Join(dev, tutorial.SampleSCRAMPasswordFile)

	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
		out, err := proc.Run(t, 20*time.Second, client, args(mech, pw, "-client-id", "scram-"+mech, "-reauth", "-publish", "sandbox/hello")...)
		require.NoError(t, err, out)
		require.Contains(t, out, "CONNACK 0x00, server signature verified")
		require.Contains(t, out, "re-authenticated: AUTH 0x00")
		require.Contains(t, out, "published to sandbox/hello: PUBACK 0x00")
		broker.WaitFor(t, 5*time.Second, "decision=pass", "client_id=scram-"+mech, "method="+mech)
		require.Zero(t, broker.Out.Count("decision=reauth_pass", "client_id=scram-"+mech), "re-authentication passes are Debug records")
	}

	// A wrong password is refused at the proof, with CONNACK 0x87.
	wrong := filepath.Join(t.TempDir(), "wrong")
	require.NoError(t, os.WriteFile(wrong, []byte("not-the-password\n"), 0o600))
	out, err := proc.Run(t, 20*time.Second, client, args("SCRAM-SHA-256", wrong)...)
	require.Error(t, err, out)
	require.Contains(t, out, "CONNACK 0x87")
	broker.WaitFor(t, 5*time.Second, "decision=deny", "method=SCRAM-SHA-256", "invalid client proof")

	// The sample user may not leave its sandbox.
	out, err = proc.Run(t, 20*time.Second, client, args("SCRAM-SHA-256", pw, "-publish", "telemetry/temperature")...)
	require.NoError(t, err, out)
	require.Contains(t, out, "PUBACK 0x87")

	require.NotContains(t, broker.Out.String(), "not-the-password")
}
