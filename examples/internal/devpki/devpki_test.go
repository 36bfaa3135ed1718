package devpki_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/internal/devpki"
)

func TestEnsure(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	created, err := devpki.Ensure(dir, now)
	require.NoError(t, err)
	require.True(t, created)
	created, err = devpki.Ensure(dir, now)
	require.NoError(t, err)
	require.False(t, created, "an existing PKI is kept")

	roots := x509.NewCertPool()
	rootPEM, err := os.ReadFile(filepath.Join(dir, devpki.ClientRootCA))
	require.NoError(t, err)
	require.True(t, roots.AppendCertsFromPEM(rootPEM))
	for _, name := range append(devpki.Clients, devpki.Expired, devpki.Intruder) {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, devpki.CertFile(name)), filepath.Join(dir, devpki.KeyFile(name)))
		require.NoError(t, err, name)
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		require.NoError(t, err)
		require.Equal(t, name, leaf.Subject.CommonName)
		inter := x509.NewCertPool()
		for _, der := range pair.Certificate[1:] {
			c, err := x509.ParseCertificate(der)
			require.NoError(t, err)
			inter.AddCert(c)
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		switch name {
		case devpki.Expired, devpki.Intruder:
			require.Error(t, err, name)
		default:
			require.NoError(t, err, name)
			require.Len(t, pair.Certificate, 2, "%s is bundled with its intermediate", name)
		}
		info, err := os.Stat(filepath.Join(dir, devpki.KeyFile(name)))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	}

	serverRoots := x509.NewCertPool()
	rootPEM, err = os.ReadFile(filepath.Join(dir, devpki.ServerRootCA))
	require.NoError(t, err)
	serverRoots.AppendCertsFromPEM(rootPEM)
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, devpki.ServerCert), filepath.Join(dir, devpki.ServerKey))
	require.NoError(t, err)
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	inter := x509.NewCertPool()
	c, _ := x509.ParseCertificate(pair.Certificate[1])
	inter.AddCert(c)
	for _, host := range []string{"localhost", "127.0.0.1"} {
		_, err = leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: serverRoots, Intermediates: inter})
		require.NoError(t, err, host)
	}
}

// TestKeysOverLooseFilesAre0600: a key file that exists already (an
// interrupted run, a file copied in by hand) with mode 0644 gets mode 0600
// when the PKI is written over it; os.WriteFile would keep 0644.
func TestKeysOverLooseFilesAre0600(t *testing.T) {
	dir := t.TempDir()
	keys := []string{devpki.ServerKey}
	for _, name := range append(devpki.Clients, devpki.Expired, devpki.Intruder) {
		keys = append(keys, devpki.KeyFile(name))
	}
	for _, k := range keys {
		p := filepath.Join(dir, k)
		require.NoError(t, os.WriteFile(p, []byte("old"), 0o644))
		require.NoError(t, os.Chmod(p, 0o644)) // whatever the umask
	}
	created, err := devpki.Ensure(dir, time.Now())
	require.NoError(t, err)
	require.True(t, created)
	for _, k := range keys {
		info, err := os.Stat(filepath.Join(dir, k))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), k)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		require.NotContains(t, e.Name(), ".tmp", "no temporary file is left")
	}
}

func TestWriteSecretFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		prev os.FileMode // 0: no file before
	}{{"new", 0}, {"existing_0644", 0o644}, {"existing_0666", 0o666}, {"existing_0600", 0o600}} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "secret")
			if tc.prev != 0 {
				require.NoError(t, os.WriteFile(p, []byte("old secret, longer than the new one"), tc.prev))
				require.NoError(t, os.Chmod(p, tc.prev))
			}
			require.NoError(t, devpki.WriteSecretFile(p, []byte("new")))
			info, err := os.Stat(p)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, "new", string(data))
		})
	}
}
