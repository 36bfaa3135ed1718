package clustersrc

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/aioconfig"
)

func TestFlags(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s := Flags(fs)
	require.NoError(t, fs.Parse(nil))
	require.False(t, s.Enabled())
	require.Empty(t, s.Name())

	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	s = Flags(fs)
	require.NoError(t, fs.Parse([]string{"-config-from-cluster", "mqttauth", "-kube-apiserver", "http://127.0.0.1:1", "-kube-token", "/nonexistent"}))
	require.True(t, s.Enabled())
	require.Equal(t, []string{"namespace mqttauth"}, s.Name())
	_, err := s.Load(context.Background(), nil, slog.New(slog.DiscardHandler), nil)
	require.ErrorContains(t, err, "https://", "the API server must be reached over TLS")
	s.Close() // nothing loaded: a no-op
}

// Without -config-from-cluster, Build is aioconfig.Build of the files'
// configuration.
func TestBuildWithoutCluster(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	s := Flags(fs)
	require.NoError(t, fs.Parse(nil))
	cfg, err := aioconfig.Parse([]byte(`
kind: BrokerListener
metadata: {name: l}
spec: {ports: [{port: 1883, authenticationRef: a}]}
---
kind: BrokerAuthentication
metadata: {name: a}
spec: {authenticationMethods: [{method: SCRAM, scramSettings: {usersFile: users.json}}]}
`), "test", t.TempDir())
	require.NoError(t, err)
	_, err = s.Build(context.Background(), cfg, aioconfig.Options{Logger: slog.New(slog.DiscardHandler)})
	require.ErrorIs(t, err, aioconfig.ErrNotFound, "the files' configuration is built: its users file does not exist")
}
