// Command broker is the example MQTT broker: mochi-mqtt with mqttauth.
//
// Started with no arguments it creates a development PKI in ./mqttauth-dev
// (the Contoso server chain and the Fabrikam client certificates of the
// Azure IoT Operations TLS, X.509 and ABAC tutorial), writes the tutorial's
// configuration next to it, listens on 127.0.0.1:8883 with mutual TLS and
// prints the mosquitto_pub and mosquitto_sub commands to try. It also offers
// SCRAM-SHA-256/512 with a sample user (random password, written next to the
// PKI) to clients without a certificate, and prints the scramclient command.
//
// With -config it runs your set-up: one YAML or JSON file whose
// authentication and authorization sections use the Azure IoT Operations
// field names (see package config in internal/config, or README.md).
//
//	broker                      # the tutorial, with a generated PKI
//	broker -config broker.yaml  # your configuration
//
// Every authentication and authorization decision is logged in structured
// form; passwords, tokens and Authentication Data never are.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/examples/internal/config"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(stdout)
	cfgPath := fs.String("config", "", "configuration file (YAML or JSON); without it, the tutorial with a development PKI")
	devDir := fs.String("dev-dir", "mqttauth-dev", "directory of the development PKI and configuration (without -config)")
	addr := fs.String("addr", "", "listen address, overriding the configuration's listener.address")
	logJSON := fs.Bool("log-json", false, "log in JSON rather than text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Two handlers, ours and mochi's, write to one stream: a lock keeps
	// their lines whole.
	logOut := &lockedWriter{w: stdout}
	newHandler := func(level slog.Level) slog.Handler {
		opts := &slog.HandlerOptions{Level: level}
		if *logJSON {
			return slog.NewJSONHandler(logOut, opts)
		}
		return slog.NewTextHandler(logOut, opts)
	}
	log := slog.New(newHandler(slog.LevelInfo))

	tutorial := *cfgPath == ""
	if tutorial {
		dir, err := filepath.Abs(*devDir)
		if err != nil {
			return err
		}
		created, err := devpki.Ensure(dir, time.Now())
		if err != nil {
			return err
		}
		if created {
			log.Info("development PKI created", slog.String("dir", dir))
		}
		if _, err := config.EnsureSampleSCRAMUser(dir); err != nil {
			return err
		}
		*cfgPath = filepath.Join(dir, "broker.yaml")
		if _, err := os.Stat(*cfgPath); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(*cfgPath, []byte(config.Tutorial), 0o644); err != nil {
				return err
			}
		}
	}
	f, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *addr != "" {
		f.Listener.Address = *addr
	}
	if f.Listener.Address == "" {
		f.Listener.Address = "127.0.0.1:8883"
	}

	setup, err := config.Build(f, log)
	if err != nil {
		return err
	}
	defer setup.Close()
	authz := setup.Auth.Authorizer
	setup.Auth.Authorizer = loggingAuthorizer{next: authz, log: log}
	m, err := auth.NewManager(setup.Auth)
	if err != nil {
		return err
	}
	setup.Attach(m)

	// mochi's own warnings (a packet it refused before any hook saw it)
	// are kept, without the packet dumps that carry credentials.
	mochiLog := mochi.ServerLogger(newHandler(slog.LevelWarn)).With(slog.String("component", "mochi"))
	srv := mqtt.New(&mqtt.Options{InlineClient: false, Logger: mochiLog})
	if _, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: log}); err != nil {
		return err
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "mqtts", Address: f.Listener.Address, TLSConfig: setup.ListenerTLS})); err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		return err
	}
	defer srv.Close()
	log.Info("broker listening", slog.String("address", f.Listener.Address), slog.String("config", *cfgPath))
	if tutorial {
		printTutorial(stdout, filepath.Dir(*cfgPath), f.Listener.Address)
	}
	<-ctx.Done()
	log.Info("broker stopping")
	return nil
}

// loggingAuthorizer logs every authorization decision with the rule that
// made it. A production broker would rather let the adapter keep its
// per-session decision cache (which needs the policy itself as the
// Authorizer) and log only denials; the example shows every decision.
type loggingAuthorizer struct {
	next auth.Authorizer
	log  *slog.Logger
}

func (l loggingAuthorizer) Authorize(ctx context.Context, p *auth.Principal, a auth.Action) auth.Decision {
	d := l.next.Authorize(ctx, p, a)
	decision := "allow"
	if !d.Allowed {
		decision = "deny"
	}
	attrs := []slog.Attr{
		slog.String("decision", decision),
		slog.String("action", a.Kind.String()),
		slog.String("topic", a.Topic),
		slog.String("reason_code", d.Code().String()),
	}
	if p != nil {
		attrs = append(attrs, slog.String("client_id", p.ClientID()), slog.String("username", p.Username()), slog.String("method", p.Method()))
	}
	if d.Rule != "" {
		attrs = append(attrs, slog.String("rule", d.Rule))
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "mqttauth authorization", attrs...)
	return d
}

func printTutorial(w io.Writer, dir, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		port = "8883"
	}
	tls := func(client string) string {
		return fmt.Sprintf("--cafile %s --cert %s --key %s",
			filepath.Join(dir, devpki.ServerRootCA), filepath.Join(dir, devpki.CertFile(client)), filepath.Join(dir, devpki.KeyFile(client)))
	}
	base := "-h localhost -p " + port + " -V mqttv5 -d -q 1"
	fmt.Fprintf(w, `
The Azure IoT Operations X.509 + ABAC tutorial is running (certificates in %s).
Try it with mosquitto-clients (apt-get install mosquitto-clients):

  # thermostat may publish telemetry/temperature (PUBACK RC:0) ...
  mosquitto_pub %s -i thermostat -t telemetry/temperature -m 21.5 %s
  # ... but not telemetry/humidity (PUBACK RC:135, Not authorized)
  mosquitto_pub %s -i thermostat -t telemetry/humidity -m 40 %s

  # heater may not subscribe to health/heartbeat (Subscribed: 135) ...
  mosquitto_sub %s -i heater -t health/heartbeat %s
  # ... but receives telemetry/temperature
  mosquitto_sub %s -i heater -t telemetry/temperature %s

  # lightbulb publishes health/heartbeat through its intermediate's attribute (manufacturer=fabrikam)
  mosquitto_pub %s -i lightbulb -t health/heartbeat -m alive %s

  # a client of an untrusted CA fails the TLS handshake, an expired certificate is refused
  mosquitto_pub %s -i intruder -t telemetry/temperature -m 0 %s
  mosquitto_pub %s -i expired -t telemetry/temperature -m 0 %s

Without a certificate, SCRAM-SHA-256 (or -512) enhanced authentication, a
two-round exchange that mosquitto_pub cannot do, as the sample user (its
password is in %s):

  go run ./examples/scramclient -broker localhost:%s -cafile %s -user %s -password-file %s -reauth -publish sandbox/hello

`, dir,
		base, tls("thermostat"), base, tls("thermostat"),
		base, tls("heater"), base, tls("heater"),
		base, tls("lightbulb"),
		base, tls(devpki.Intruder), base, tls(devpki.Expired),
		filepath.Join(dir, config.SampleSCRAMPasswordFile),
		port, filepath.Join(dir, devpki.ServerRootCA), config.SampleSCRAMUser, filepath.Join(dir, config.SampleSCRAMPasswordFile))
}

// lockedWriter serializes writes from several log handlers.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
