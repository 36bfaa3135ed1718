package tutorial

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
)

// Ensure prepares dir for the example programs run without a
// configuration: the development PKI, the sample SCRAM user, the mounted
// ConfigMap and Secret, and Config written to FileName, each kept when it
// already exists. It returns the configuration's path.
func Ensure(dir string, log *slog.Logger) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	created, err := devpki.Ensure(dir, time.Now())
	if err != nil {
		return "", err
	}
	if created {
		log.Info("development PKI created", slog.String("dir", dir))
	}
	if _, err := EnsureSampleSCRAMUser(dir); err != nil {
		return "", err
	}
	if err := EnsureMounts(dir); err != nil {
		return "", err
	}
	path := filepath.Join(dir, FileName)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(path, []byte(Config), 0o644); err != nil {
			return "", err
		}
	}
	return path, nil
}

// OverrideAddr sets the address of the configuration's only port, as the
// programs' -addr flag does.
func OverrideAddr(cfg *aioconfig.Config, addr string) error {
	ports := 0
	for _, l := range cfg.Listeners {
		ports += len(l.Ports)
	}
	if ports != 1 {
		return fmt.Errorf("-addr needs a configuration with one port, not %d", ports)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	p := &cfg.Listeners[0].Ports[0]
	p.Address = host
	if p.Port, err = strconv.Atoi(port); err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	return nil
}
