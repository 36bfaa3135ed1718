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
//	gateway -upstream 127.0.0.1:1883 -upstream-protocol 3.1.1 -upstream-password-file gw.pass  # RabbitMQ or NATS (3.1.1 only)
//	gateway -upstream 127.0.0.1:1883 -upstream-protocol 3.1.1 -coordination  # several gateways: 0x8E on takeover
//
// With a 3.1.1 broker, -coordination (or MqttAuthSettings
// upstream.coordination) makes the gateways tell each other through the
// broker which client identifiers they admit, so that an MQTT 5 client
// whose session a connection through another gateway took over gets
// DISCONNECT 0x8E rather than 0x80 (gateway.Config.Coordination; reserve
// its topic, $mqttauth/takeover, to the user mqttauth-gateway in the
// broker's ACL).
//
// -config may be repeated (resources spread over files) and
// -check-config prints the effective configuration, flags included, and
// exits, as with the example broker. The audit log has a record per pass,
// refusal, disconnect and authorization deny; allows only when sampled
// (admin.audit.sampleAllows, -audit-allows). Passwords, tokens and
// Authentication Data are never logged. An admin listener, on
// 127.0.0.1:9090 unless MqttAuthSettings admin.address or -admin-addr says
// otherwise ("off" turns it off), serves /metrics, /healthz, /readyz (the
// configuration's sources, the listeners, and the upstream broker's
// reachability) and, with -pprof or admin.pprof, /debug/pprof.
package main

import (
	"bytes"
	"cmp"
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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mqttauth/mqttauth/admin"
	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/examples/internal/adminserve"
	"github.com/mqttauth/mqttauth/examples/internal/clustersrc"
	"github.com/mqttauth/mqttauth/examples/internal/liveports"
	"github.com/mqttauth/mqttauth/examples/internal/tutorial"
	"github.com/mqttauth/mqttauth/gateway"
	"github.com/mqttauth/mqttauth/internal/logsink"
	"github.com/mqttauth/mqttauth/metrics/prometheus"
	"github.com/mqttauth/mqttauth/mqttconn"
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
	var cfgPaths []string
	fs.Func("config", "configuration file of Azure IoT Operations resources (YAML or JSON, several documents); repeat for several files; without it, the tutorial with a development PKI", func(v string) error {
		cfgPaths = append(cfgPaths, v)
		return nil
	})
	check := fs.Bool("check-config", false, "validate the configuration, print the effective listeners, chains, policies and upstream, and exit")
	devDir := fs.String("dev-dir", "mqttauth-dev", "directory of the development PKI and configuration (without -config)")
	addr := fs.String("addr", "", "listen address, overriding the address of the configuration's only port")
	upstream := fs.String("upstream", "127.0.0.1:1883", "the broker's address")
	upCA := fs.String("upstream-cafile", "", "CA bundle to verify the broker with: makes the broker leg TLS")
	upCert := fs.String("upstream-cert", "", "the gateway's client certificate for the broker (with -upstream-key)")
	upKey := fs.String("upstream-key", "", "the key of -upstream-cert")
	upName := fs.String("upstream-server-name", "", "the broker's TLS server name (default: the host of -upstream)")
	upProto := fs.String("upstream-protocol", "", `MQTT version spoken to the broker: 5, 3.1.1 (MQTT 5 clients translated) or auto (the client's), overriding MqttAuthSettings upstream.protocol (default auto)`)
	coordinate := fs.Bool("coordination", false, "coordinate takeovers with the other gateways through the broker (needs -upstream-protocol 3.1.1; MqttAuthSettings upstream.coordination sets its options and turns it on too): an MQTT 5 client whose session another gateway took over gets DISCONNECT 0x8E, not 0x80")
	upPassFile := fs.String("upstream-password-file", "", "file holding the password sent to the broker with every identity (RabbitMQ requires one)")
	drainTo := fs.String("drain-to", "", "on SIGTERM, send MQTT 5 clients DISCONNECT 0x9C (Use another server) with this Server Reference (host:port of another gateway) rather than 0x8B")
	proxy := fs.Bool("proxy-protocol", false, "send the client's address upstream with the PROXY protocol v2 (the broker must expect it)")
	maxPacket := fs.Int("max-packet-size", 0, "maximum packet size on both legs (0: 1 MiB)")
	maxPending := fs.Int("max-pending", 0, "maximum connections not yet authenticated (0: 256, 32 per source)")
	logJSON := fs.Bool("log-json", false, "log in JSON rather than text")
	adminAddr := fs.String("admin-addr", "", `admin listener address (/metrics, /healthz, /readyz), overriding MqttAuthSettings admin.address (default 127.0.0.1:9090); "off" turns it off`)
	pprof := fs.Bool("pprof", false, "serve /debug/pprof on the admin listener")
	auditAllows := fs.Int64("audit-allows", adminserve.AuditAllowsFlag, "log one authorization allow in N (1: every allow, one record per relayed message; 0: none), overriding MqttAuthSettings admin.audit.sampleAllows (default: none)")
	cluster := clustersrc.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Buffered: a record costs a copy, not a write system call (package
	// logsink).
	logOut := logsink.New(stdout, logsink.DefaultInterval)
	defer logOut.Close()
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	var h slog.Handler = slog.NewTextHandler(logOut, opts)
	if *logJSON {
		h = slog.NewJSONHandler(logOut, opts)
	}
	log := slog.New(h)

	if len(cfgPaths) == 0 && !cluster.Enabled() {
		path, err := tutorial.Ensure(*devDir, log)
		if err != nil {
			return err
		}
		cfgPaths = []string{path}
	}
	cfg, err := cluster.Config(ctx, cfgPaths, *addr, log)
	defer cluster.Close()
	if err != nil {
		return err
	}
	upTLS, err := upstreamTLS(*upstream, *upCA, *upCert, *upKey, *upName)
	if err != nil {
		return err
	}
	if *check {
		log = slog.New(slog.DiscardHandler)
	}
	buildOpts := aioconfig.Options{Logger: log}
	var exp *prometheus.Exporter
	if !*check {
		if exp, err = prometheus.New(prometheus.Config{}); err != nil {
			return err
		}
		buildOpts.Observer = exp
	}
	b, err := cluster.Build(ctx, cfg, buildOpts)
	if err != nil {
		return err
	}
	defer b.Close()
	// The flags change b's settings, which -check-config prints and the
	// program runs: one source for both.
	adminCfg := adminserve.Config{Flag: *adminAddr, Pprof: *pprof, Config: cfg, Broker: b, Exporter: exp, Logger: log}
	adminserve.Apply(adminCfg)
	adminserve.ApplyAuditAllows(b, *auditAllows)
	// The limits every port's gateway gets: a flag, else the
	// configuration, else the connection layer's default.
	lim := limits(*maxPacket, *maxPending, b.Limits)
	if *check {
		fmt.Fprintf(stdout, "configuration %s is valid\n", strings.Join(append(cfgPaths, cluster.Name()...), ", "))
		if err := b.Describe(stdout); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "upstream: %s, %s, PROXY protocol %s (/readyz checks it can be reached)\n",
			*upstream, describeTLS(upTLS), map[bool]string{true: "on", false: "off"}[*proxy])
		fmt.Fprintf(stdout, "takeover coordination: %s\n", describeCoordination(coordination(*coordinate, cfg.Settings.Upstream)))
		fmt.Fprintf(stdout, "gateway limits: maxPacketSize %d, maxUnauthenticatedConnections %d per port (%d per source), connectTimeout %s\n",
			cmp.Or(lim.MaxPacketSize, mqttconn.DefaultMaxPacketSize), cmp.Or(lim.MaxPending, mqttconn.DefaultMaxPending),
			cmp.Or(lim.MaxPendingPerSource, cmp.Or(lim.MaxPending, mqttconn.DefaultMaxPending)/mqttconn.DefaultPendingShare),
			cmp.Or(lim.ConnectTimeout, mqttconn.DefaultConnectTimeout))
		return nil
	}
	_ = b.CheckReady(ctx)
	stopFiles, err := cluster.FollowFiles(b, cfgPaths, *addr, log)
	if err != nil {
		return err
	}
	defer stopFiles()
	// The audit log is the configuration's (b.Audit, printed by
	// -check-config): by default passes, refusals, disconnects and denies,
	// and no authorization allow.
	m, err := auth.NewManager(b.AuthConfig())
	if err != nil {
		return err
	}
	defer m.Close()

	// Not ready while the broker cannot be reached: every client would get
	// CONNACK 0x88.
	upCheck := gateway.NewUpstreamCheck(gateway.Config{Upstream: *upstream, UpstreamTLS: upTLS, ProxyProtocol: *proxy})
	adminCfg.Checks = append(adminCfg.Checks, admin.Check{Name: "upstream " + *upstream, Check: upCheck.Check})
	if err := exp.GaugeFunc("gateway_upstream_up", "1 when the upstream broker accepts a connection (checked at each scrape), else 0.", nil, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if upCheck.Check(ctx) != nil {
			return 0
		}
		return 1
	}); err != nil {
		return err
	}
	if *upProto == "" && cfg.Settings.Upstream != nil {
		*upProto = cfg.Settings.Upstream.Protocol
	}
	protocol, err := gateway.ParseUpstreamProtocol(*upProto)
	if err != nil {
		return err
	}
	coord := coordination(*coordinate, cfg.Settings.Upstream)
	var upPass []byte
	if *upPassFile != "" {
		if upPass, err = os.ReadFile(*upPassFile); err != nil {
			return err
		}
		upPass = bytes.TrimRight(upPass, "\r\n")
	}
	// The gateways, one per port in force (see liveports below).
	var gwMu sync.Mutex
	gws := map[string]*gateway.Gateway{}
	current := func() []*gateway.Gateway {
		gwMu.Lock()
		defer gwMu.Unlock()
		out := make([]*gateway.Gateway, 0, len(gws))
		for _, g := range gws {
			out = append(out, g)
		}
		return out
	}
	// /readyz is not ready once the gateways drain or shut down.
	var stopping atomic.Bool
	draining := admin.Check{Name: "draining", Check: func(ctx context.Context) error {
		if stopping.Load() {
			return gateway.ErrDraining
		}
		for _, g := range current() {
			if err := g.DrainCheck(ctx); err != nil {
				return err
			}
		}
		return nil
	}}
	adminCfg.Checks = append(adminCfg.Checks, draining)
	adminSrv, listening, err := startAdmin(adminCfg)
	if err != nil {
		return err
	}
	defer adminserve.Stop(adminSrv)
	// One gateway per port of the configuration, all on one Manager: the
	// port's name is auth.Request.Listener, which selects its chain and
	// policy. The gateways follow the configuration's ports (liveports):
	// a port added is opened, a removed one shut down (DISCONNECT 0x8B to
	// its clients); b.TLS serves each port's TLS in force at every
	// handshake.
	served := make(chan error, 1)
	defer func() {
		for _, g := range current() {
			_ = g.Close()
		}
	}()
	ports := liveports.New(b, liveports.Funcs{
		Start: func(p *aioconfig.Port) error {
			var cfg *tls.Config
			if p.TLS != nil {
				cfg = b.TLS(p.Name)
			}
			g, err := gateway.New(gateway.Config{
				Manager:          m,
				Upstream:         *upstream,
				UpstreamTLS:      upTLS,
				ProxyProtocol:    *proxy,
				UpstreamProtocol: protocol,
				UpstreamPassword: upPass,
				Coordination:     coord,
				TLS:              cfg,
				Listener:         p.Name,
				Limits:           lim,
				Logger:           log,
			})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", p.Address)
			if err != nil {
				_ = g.Close()
				return err
			}
			gwMu.Lock()
			gws[p.Name] = g
			gwMu.Unlock()
			go func() {
				// A gateway shut down because its port was removed ends
				// with ErrClosed; any other end ends the program.
				if err := g.Serve(ln); !errors.Is(err, gateway.ErrClosed) {
					select {
					case served <- err:
					default:
					}
				}
			}()
			log.Info("gateway listening", slog.String("address", ln.Addr().String()), slog.String("listener", p.Name),
				slog.Bool("tls", p.TLS != nil), slog.String("upstream", *upstream), slog.Bool("upstream_tls", upTLS != nil),
				slog.String("upstream_protocol", protocol.String()))
			return nil
		},
		Stop: func(ctx context.Context, name string) error {
			gwMu.Lock()
			g := gws[name]
			delete(gws, name)
			gwMu.Unlock()
			if g == nil {
				return nil
			}
			return g.Shutdown(ctx)
		},
	}, log)
	defer ports.Close()
	if err := ports.Sync(ctx); err != nil {
		return err
	}
	ports.Follow()
	if err := exp.GaugeFunc("gateway_connections", "Client connections the gateways hold (pending and authenticated).", nil, func() float64 {
		n := 0
		for _, g := range current() {
			n += g.Len()
		}
		return float64(n)
	}); err != nil {
		return err
	}
	if coord != nil {
		if err := exp.GaugeFunc("gateway_coordination_up", "1 when every gateway's takeover coordination connection to the broker is up, else 0.", nil, func() float64 {
			for _, g := range current() {
				if g.CoordinationCheck(context.Background()) != nil {
					return 0
				}
			}
			return 1
		}); err != nil {
			return err
		}
	}
	listening.Open()
	select {
	case <-ctx.Done():
		stopping.Store(true)
		ports.Close() // no port opens or closes past this point
		// Orderly: stop accepting, DISCONNECT 0x8B (or 0x9C with
		// -drain-to) to every MQTT 5 client, let exchanges in flight
		// finish for up to 10 s.
		log.Info("gateway stopping", slog.String("drain_to", *drainTo))
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for _, g := range current() {
			wg.Go(func() {
				stop := g.Shutdown
				if *drainTo != "" {
					stop = func(ctx context.Context) error { return g.Drain(ctx, *drainTo) }
				}
				if err := stop(sctx); err != nil {
					log.Warn("shutdown cut short", slog.String("err", err.Error()))
				}
			})
		}
		wg.Wait()
		return nil
	case err := <-served:
		return err
	}
}

// startAdmin exports the counts of the configuration's components and
// serves the admin listener, with the readiness checks of the
// configuration's sources and a gate, "listeners", that the caller opens
// once every port listens.
func startAdmin(cfg adminserve.Config) (*admin.Server, *admin.Gate, error) {
	if err := adminserve.RegisterBroker(cfg.Exporter, cfg.Broker); err != nil {
		return nil, nil, err
	}
	gate := admin.NewGate("listeners")
	cfg.Checks = append(cfg.Checks, gate.Check())
	srv, err := adminserve.Start(cfg)
	return srv, gate, err
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

// describeTLS says how the broker leg is secured.
func describeTLS(c *tls.Config) string {
	switch {
	case c == nil:
		return "plain TCP"
	case len(c.Certificates) > 0:
		return "TLS with the gateway's client certificate, server name " + c.ServerName
	}
	return "TLS, server name " + c.ServerName
}

// limits are the configuration's limits (zero: the connection layer's
// defaults), with the flags' values where they are set.
func limits(maxPacket, maxPending int, l *aioconfig.Limits) mqttconn.Limits {
	lim := l.Conn()
	if maxPacket != 0 {
		lim.MaxPacketSize = uint32(maxPacket)
	}
	if maxPending != 0 {
		lim.MaxPending = maxPending
	}
	return lim
}

// coordination is the gateways' takeover coordination: on with -coordination
// or MqttAuthSettings upstream.coordination (whose options it takes), else
// nil (off).
func coordination(flag bool, up *aioconfig.Upstream) *gateway.Coordination {
	var c *aioconfig.Coordination
	if up != nil {
		c = up.Coordination
	}
	if !flag && c == nil {
		return nil
	}
	if c == nil {
		return &gateway.Coordination{}
	}
	notice, grace, window := c.Durations()
	return &gateway.Coordination{Topic: c.Topic, ClientIDPrefix: c.ClientIDPrefix, Username: c.Username,
		NoticeTimeout: notice, Grace: grace, Window: window}
}

// describeCoordination says whether takeovers are coordinated, and how.
func describeCoordination(c *gateway.Coordination) string {
	if c == nil {
		return "off (with a 3.1.1 broker a client whose session moved gets DISCONNECT 0x80)"
	}
	return fmt.Sprintf("on, topic %s, user %s (reserve the topic to that user in the broker's ACL)",
		cmp.Or(c.Topic, gateway.DefaultCoordinationTopic), cmp.Or(c.Username, gateway.DefaultCoordinationUsername))
}
