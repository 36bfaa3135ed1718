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

// FollowAddr returns an edit for every configuration a live source reads
// (aioconfig.ClusterConfig.Edit): the first port of the first
// configuration listens on addr (as OverrideAddr), and in later ones the
// same port (its listener and configured port number) does, while the
// ports added meanwhile keep their own addresses.
func FollowAddr(addr string) func(*aioconfig.Config) error {
	var listener string
	var port int
	return func(cfg *aioconfig.Config) error {
		if listener == "" {
			if len(cfg.Listeners) == 0 || len(cfg.Listeners[0].Ports) == 0 {
				return OverrideAddr(cfg, addr) // says why not
			}
			listener, port = cfg.Listeners[0].Name, cfg.Listeners[0].Ports[0].Port
		}
		host, p, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("-addr: %w", err)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("-addr: %w", err)
		}
		for _, l := range cfg.Listeners {
			if l.Name != listener {
				continue
			}
			for i := range l.Ports {
				if l.Ports[i].Port == port {
					l.Ports[i].Address, l.Ports[i].Port = host, n
				}
			}
		}
		return nil
	}
}
