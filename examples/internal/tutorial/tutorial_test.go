package tutorial_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/examples/internal/tutorial"
)

func TestTutorialBuilds(t *testing.T) {
	dir := t.TempDir()
	_, err := devpki.Ensure(dir, time.Now())
	require.NoError(t, err)
	pwFile, err := tutorial.EnsureSampleSCRAMUser(dir)
	require.NoError(t, err)
	info, err := os.Stat(pwFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	password, err := os.ReadFile(pwFile)
	require.NoError(t, err)
	users, err := os.ReadFile(filepath.Join(dir, tutorial.SampleSCRAMUsersFile))
	require.NoError(t, err)
	require.NotContains(t, string(users), strings.TrimSpace(string(password)), "the users file holds derived keys, not the password")
	again, err := tutorial.EnsureSampleSCRAMUser(dir)
	require.NoError(t, err)
	require.Equal(t, pwFile, again)
	kept, _ := os.ReadFile(pwFile)
	require.Equal(t, password, kept, "an existing sample user is kept")

	require.NoError(t, tutorial.EnsureMounts(dir))
	key, err := os.Stat(filepath.Join(dir, tutorial.ServerCertSecret, "tls.key"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), key.Mode().Perm(), "the Secret's key is private")

	path := filepath.Join(dir, tutorial.FileName)
	require.NoError(t, os.WriteFile(path, []byte(tutorial.Config), 0o644))
	cfg, err := aioconfig.Load(path)
	require.NoError(t, err)
	b, err := aioconfig.Build(context.Background(), cfg, aioconfig.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer b.Close()
	require.Len(t, b.Ports, 1)
	p := b.Ports[0]
	require.Equal(t, "127.0.0.1:8883", p.Address)
	require.NotNil(t, p.TLS.VerifyConnection, "client certificates are verified")
	require.Equal(t, tls.RequestClientCert, p.TLS.ClientAuth, "SCRAM clients come without a certificate")

	// The heater may subscribe to temperature but not to heartbeat; the
	// thermostat may publish temperature, not humidity.
	heater := auth.NewPrincipal(auth.PrincipalInfo{Username: "heater", Listener: p.Name, Attributes: map[string]string{"manufacturer": "fabrikam"}})
	thermo := auth.NewPrincipal(auth.PrincipalInfo{Username: "thermostat", Listener: p.Name, Attributes: map[string]string{"group": "thermostat_group"}})
	ctx := context.Background()
	require.True(t, b.Authorize(ctx, heater, auth.Action{Kind: auth.Subscribe, Topic: "telemetry/temperature"}).Allowed)
	require.False(t, b.Authorize(ctx, heater, auth.Action{Kind: auth.Subscribe, Topic: "health/heartbeat"}).Allowed)
	require.True(t, b.Authorize(ctx, thermo, auth.Action{Kind: auth.Publish, Topic: "telemetry/temperature"}).Allowed)
	require.False(t, b.Authorize(ctx, thermo, auth.Action{Kind: auth.Publish, Topic: "telemetry/humidity"}).Allowed)
}
