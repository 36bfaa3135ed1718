// Command authserver is a custom authentication server (the Azure IoT
// Operations custom authentication API 0.5.0) that authenticates MQTT
// clients from a users file. Point a broker's Custom method at it.
//
//	authserver -users users.yaml -cert server.crt -key server.key -addr 127.0.0.1:8443
//
// The users file:
//
//	tokenMethod: TOKEN          # enhanced authentication method whose data is a token (optional)
//	users:
//	  alice:
//	    password: s3cret
//	    attributes: {group: sensors}
//	    lifetime: 1h            # each Pass expires this long after it (optional)
//	tokens:
//	  token-1: alice            # token -> user, for tokenMethod and re-authentication
//
// The server answers 200 with the user's attributes, 403 with reason 0x86
// for a wrong password and 0x87 otherwise, and 422 to unsupported API
// versions. SIGHUP reloads the users file.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/mqttauth/mqttauth/customauth/authserver"
)

// usersFile is the users file.
type usersFile struct {
	TokenMethod string              `json:"tokenMethod,omitempty"`
	Users       map[string]userSpec `json:"users"`
	Tokens      map[string]string   `json:"tokens,omitempty"`
}

type userSpec struct {
	Password   string            `json:"password"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Lifetime   string            `json:"lifetime,omitempty"`
}

func loadUsers(path string) (authserver.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return authserver.Config{}, err
	}
	var f usersFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return authserver.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	cfg := authserver.Config{TokenMethod: f.TokenMethod, Tokens: f.Tokens, Users: map[string]authserver.User{}}
	for name, u := range f.Users {
		user := authserver.User{Password: u.Password, Attributes: u.Attributes}
		if u.Lifetime != "" {
			if user.Lifetime, err = time.ParseDuration(u.Lifetime); err != nil {
				return authserver.Config{}, fmt.Errorf("%s: users.%s.lifetime: %w", path, name, err)
			}
		}
		cfg.Users[name] = user
	}
	for _, name := range f.Tokens {
		if _, ok := cfg.Users[name]; !ok {
			return authserver.Config{}, fmt.Errorf("%s: a token names unknown user %q", path, name)
		}
	}
	return cfg, nil
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "authserver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("authserver", flag.ContinueOnError)
	users := fs.String("users", "", "users file (YAML or JSON), required")
	certFile := fs.String("cert", "", "server certificate chain (PEM), required")
	keyFile := fs.String("key", "", "server private key (PEM), required")
	addr := fs.String("addr", "127.0.0.1:8443", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *users == "" || *certFile == "" || *keyFile == "" {
		return errors.New("-users, -cert and -key are required: the API is HTTPS only")
	}
	cfg, err := loadUsers(*users)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stdout, nil))
	h := authserver.NewHandler(cfg)
	srv, err := authserver.Start(*addr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, h)
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("custom authentication server listening", slog.String("url", srv.URL()), slog.Int("users", len(cfg.Users)))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			next, err := loadUsers(*users)
			if err != nil {
				log.Error("reload failed; keeping the current users", slog.String("err", err.Error()))
				continue
			}
			h.Replace(next)
			log.Info("users reloaded", slog.Int("users", len(next.Users)))
		}
	}
}
