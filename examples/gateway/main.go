// Command gateway is the example mqttauth gateway: MQTT v5 enhanced
// authentication, re-authentication and attribute-based authorization in
// front of any MQTT broker (mosquitto, EMQX, VerneMQ).
//
// It reads the same configuration as the example broker (Azure IoT
// Operations resources, package aioconfig: one listener per port, each with
// its own chain and policy);
// started without -config it creates the development PKI and the X.509 +
// ABAC tutorial's configuration, like the broker. Clients connect to the
// gateway (-addr, mutual TLS with the configuration's X.509 trust, or
// SCRAM and the other methods); the gateway connects each authenticated
// client to the broker at -upstream with the client's identity as user
// name. Bind the broker to loopback or a private network (or make it
// require the gateway's client certificate with -upstream-cert).
//
//	mosquitto -c mosquitto.conf       # listener 1883 127.0.0.1, allow_anonymous true
//	gateway -upstream 127.0.0.1:1883  # the tutorial, with a generated PKI
//	gateway -config gateway.yaml -upstream broker.internal:8883 -upstream-cafile ca.pem -upstream-cert gw.pem -upstream-key gw.key
//
// Every decision is logged in structured form; passwords, tokens and
// Authentication Data never are.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/examples/internal/tutorial"
	"github.com/mqttauth/mqttauth/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stdout)
	cfgPath := fs.String("config", "", "configuration file (YAML or JSON); without it, the tutorial with a development PKI")
	devDir := fs.String("dev-dir", "mqttauth-dev", "directory of the development PKI and configuration (without -config)")
	addr := fs.String("addr", "", "listen address, overriding the address of the configuration's only port")
	upstream := fs.String("upstream", "127.0.0.1:1883", "the broker's address")
	upCA := fs.String("upstream-cafile", "", "CA bundle to verify the broker with: makes the broker leg TLS")
	upCert := fs.String("upstream-cert", "", "the gateway's client certificate for the broker (with -upstream-key)")
	upKey := fs.String("upstream-key", "", "the key of -upstream-cert")
	upName := fs.String("upstream-server-name", "", "the broker's TLS server name (default: the host of -upstream)")
	proxy := fs.Bool("proxy-protocol", false, "send the client's address upstream with the PROXY protocol v2 (the broker must expect it)")
	maxPacket := fs.Int("max-packet-size", 0, "maximum packet size on both legs (0: 1 MiB)")
	maxPending := fs.Int("max-pending", 0, "maximum connections not yet authenticated (0: 1024)")
	logJSON := fs.Bool("log-json", false, "log in JSON rather than text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	var h slog.Handler = slog.NewTextHandler(stdout, opts)
	if *logJSON {
		h = slog.NewJSONHandler(stdout, opts)
	}
	log := slog.New(h)

	isTutorial := *cfgPath == ""
	if isTutorial {
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
		if _, err := tutorial.EnsureSampleSCRAMUser(dir); err != nil {
			return err
		}
		if err := tutorial.EnsureMounts(dir); err != nil {
			return err
		}
		*cfgPath = filepath.Join(dir, tutorial.FileName)
		if _, err := os.Stat(*cfgPath); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(*cfgPath, []byte(tutorial.Config), 0o644); err != nil {
				return err
			}
		}
	}
	cfg, err := aioconfig.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *addr != "" {
		if err := overrideAddr(cfg, *addr); err != nil {
			return err
		}
	}
	b, err := aioconfig.Build(ctx, cfg, aioconfig.Options{Logger: log})
	if err != nil {
		return err
	}
	defer b.Close()
	authCfg := b.AuthConfig()
	authCfg.Audit.SampleAllows = 1 // the example logs every decision
	m, err := auth.NewManager(authCfg)
	if err != nil {
		return err
	}
	defer m.Close()

	upTLS, err := upstreamTLS(*upstream, *upCA, *upCert, *upKey, *upName)
	if err != nil {
		return err
	}
	// One gateway per port of the configuration, all on one Manager: the
	// port's name is auth.Request.Listener, which selects its chain and
	// policy.
	var gws []*gateway.Gateway
	served := make(chan error, len(b.Ports))
	defer func() {
		for _, g := range gws {
			_ = g.Close()
		}
	}()
	for _, p := range b.Ports {
		g, err := gateway.New(gateway.Config{
			Manager:          m,
			Upstream:         *upstream,
			UpstreamTLS:      upTLS,
			ProxyProtocol:    *proxy,
			TLS:              p.TLS,
			Listener:         p.Name,
			MaxPacketSize:    limit(*maxPacket, b.Limits, func(l *aioconfig.Limits) int { return l.MaxPacketSize }),
			MaxPending:       limit(*maxPending, b.Limits, func(l *aioconfig.Limits) int { return l.MaxUnauthenticatedConnections }),
			HandshakeTimeout: b.Limits.ConnectTimeoutDuration(),
			ConnectTimeout:   b.Limits.ConnectTimeoutDuration(),
			Logger:           log,
		})
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", p.Address)
		if err != nil {
			return err
		}
		gws = append(gws, g)
		go func() { served <- g.Serve(ln) }()
		log.Info("gateway listening", slog.String("address", ln.Addr().String()), slog.String("listener", p.Name),
			slog.Bool("tls", p.TLS != nil), slog.String("upstream", *upstream), slog.Bool("upstream_tls", upTLS != nil))
	}
	select {
	case <-ctx.Done():
		log.Info("gateway stopping")
		return nil
	case err := <-served:
		return err
	}
}

// overrideAddr sets the address of the configuration's only port.
func overrideAddr(cfg *aioconfig.Config, addr string) error {
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

// upstreamTLS builds the broker leg's TLS configuration, or nil for plain
// TCP when no CA is given.
func upstreamTLS(upstream, caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	if caFile == "" {
		if certFile != "" || keyFile != "" {
			return nil, errors.New("-upstream-cert and -upstream-key need -upstream-cafile")
		}
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	if serverName == "" {
		host, _, err := net.SplitHostPort(upstream)
		if err != nil {
			return nil, err
		}
		serverName = host
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// limit is a flag's value when set, else the configuration's (zero: the
// gateway's default).
func limit(flagValue int, l *aioconfig.Limits, field func(*aioconfig.Limits) int) int {
	if flagValue != 0 || l == nil {
		return flagValue
	}
	return field(l)
}
