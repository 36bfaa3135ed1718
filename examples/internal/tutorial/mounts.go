package tutorial

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mqttauth/mqttauth/examples/internal/devpki"
)

// The ConfigMap and Secret of Config, and the file the example broker
// writes Config to.
const (
	ClientCAConfigMap = "fabrikam-ca"
	ServerCertSecret  = "broker-server-cert"
	FileName          = "tutorial.yaml"
)

// EnsureMounts lays out, in dir, the ConfigMap and Secret that Config
// names the way a pod sees them mounted: fabrikam-ca/client_ca.pem (the
// Fabrikam root CA) and broker-server-cert/tls.crt and tls.key (the Contoso
// server chain), copied from the development PKI in dir. Existing files are
// kept.
func EnsureMounts(dir string) error {
	for _, c := range []struct {
		from, to string
		mode     os.FileMode
	}{
		{devpki.ClientRootCA, filepath.Join(ClientCAConfigMap, "client_ca.pem"), 0o644},
		{devpki.ServerCert, filepath.Join(ServerCertSecret, "tls.crt"), 0o644},
		{devpki.ServerKey, filepath.Join(ServerCertSecret, "tls.key"), 0o600},
	} {
		to := filepath.Join(dir, c.to)
		if _, err := os.Stat(to); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		data, err := os.ReadFile(filepath.Join(dir, c.from))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(to, data, c.mode); err != nil {
			return err
		}
	}
	return nil
}
