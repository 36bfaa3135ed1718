package aioconfig_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/scramauth"
)

// The file source shares the Kubernetes source's reload path: a port added
// to a watched file is in force after the change, a removed one is gone,
// and an invalid version keeps the last good configuration.
func TestWatchFilesAppliesPorts(t *testing.T) {
	dir := t.TempDir()
	users := &scramauth.File{}
	cred, err := scramauth.NewCredential(scramauth.SHA256, "pw", 4096)
	require.NoError(t, err)
	users.Put(scramauth.User{Name: "u", Credentials: map[scramauth.Mechanism]scramauth.Credential{scramauth.SHA256: cred}})
	data, err := users.Marshal()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "users.json"), data, 0o600))
	cfgFile := filepath.Join(dir, "broker.yaml")
	write := func(ports string) {
		t.Helper()
		tmp := cfgFile + ".tmp"
		require.NoError(t, os.WriteFile(tmp, fmt.Appendf(nil, `
kind: BrokerListener
metadata: {name: l}
spec: {ports: [%s]}
---
kind: BrokerAuthentication
metadata: {name: a}
spec: {authenticationMethods: [{method: SCRAM, scramSettings: {usersFile: users.json}}]}
`, ports), 0o600))
		require.NoError(t, os.Rename(tmp, cfgFile))
	}
	write(`{port: 18831, address: 127.0.0.1, authenticationRef: a}`)
	c, err := aioconfig.Load(cfgFile)
	require.NoError(t, err)
	b, err := aioconfig.Build(context.Background(), c, aioconfig.Options{Logger: quiet})
	require.NoError(t, err)
	defer b.Close()
	m, err := auth.NewManager(b.AuthConfig())
	require.NoError(t, err)
	defer func() { _ = m.Close() }()
	changed := make(chan struct{}, 4)
	defer b.Notify(func() { changed <- struct{}{} })()
	fw, err := aioconfig.WatchFiles(b, []string{cfgFile}, aioconfig.FilesConfig{Logger: quiet, Debounce: 10 * time.Millisecond})
	require.NoError(t, err)
	defer func() { _ = fw.Close() }()

	write(`{port: 18831, address: 127.0.0.1, authenticationRef: a}, {port: 18832, address: 127.0.0.1, authenticationRef: a}`)
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("the added port was not applied")
	}
	require.NotNil(t, b.Port("l:18832"))
	require.Len(t, b.CurrentPorts(), 2)
	require.Len(t, b.Ports, 1, "Ports stay those of Build")

	write(`{port: 18831, address: 127.0.0.1, authenticationRef: nobody}`)
	require.Error(t, fw.Reload(context.Background()), "an invalid version")
	require.Len(t, b.CurrentPorts(), 2, "the last good configuration is kept")

	write(`{port: 18832, address: 127.0.0.1, authenticationRef: a}`)
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("the removed port was not applied")
	}
	require.Nil(t, b.Port("l:18831"))
	require.NotNil(t, b.Port("l:18832"))
}
