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
// With -config it runs your set-up: Azure IoT Operations BrokerListener,
// BrokerAuthentication and BrokerAuthorization resources (package aioconfig,
// README.md "Configuration"), one mochi listener per port, each port with
// its own chain and policy; a port without tls is plain TCP.
//
//	broker                                   # the tutorial, with a generated PKI
//	broker -config broker.yaml               # your configuration
//	broker -config a.yaml -config b.yaml     # resources spread over files
//	broker -config broker.yaml -check-config # validate, print, exit
//
// The audit log has a structured record per pass, refusal, disconnect and
// authorization deny (why, and which policy); authorization allows are
// not logged unless MqttAuthSettings admin.audit.sampleAllows or
// -audit-allows N samples them. Passwords, tokens and Authentication Data
// never are. -check-config prints what the program does, flags included.
//
// An admin listener, on 127.0.0.1:9090 unless MqttAuthSettings
// admin.address or -admin-addr says otherwise ("off" turns it off), serves
// /metrics (package metrics/prometheus), /healthz, /readyz (every
// truststore, policy file and users file loaded, and the ports listening)
// and, with -pprof or admin.pprof, /debug/pprof.
//
//	broker -config broker.yaml -admin-addr 127.0.0.1:9191 -pprof
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/admin"
	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/examples/internal/adminserve"
	"github.com/mqttauth/mqttauth/examples/internal/clustersrc"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/examples/internal/liveports"
	"github.com/mqttauth/mqttauth/examples/internal/tutorial"
	"github.com/mqttauth/mqttauth/internal/logsink"
	"github.com/mqttauth/mqttauth/metrics/prometheus"
	"github.com/mqttauth/mqttauth/mqttconn"
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
	var cfgPaths []string
	fs.Func("config", "configuration file of Azure IoT Operations resources (YAML or JSON, several documents); repeat for several files; without it, the tutorial with a development PKI", func(v string) error {
		cfgPaths = append(cfgPaths, v)
		return nil
	})
	check := fs.Bool("check-config", false, "validate the configuration, print the effective listeners, chains and policies, and exit")
	devDir := fs.String("dev-dir", "mqttauth-dev", "directory of the development PKI and configuration (without -config)")
	addr := fs.String("addr", "", "listen address, overriding the address of the configuration's only port")
	logJSON := fs.Bool("log-json", false, "log in JSON rather than text")
	adminAddr := fs.String("admin-addr", "", `admin listener address (/metrics, /healthz, /readyz), overriding MqttAuthSettings admin.address (default 127.0.0.1:9090); "off" turns it off`)
	pprof := fs.Bool("pprof", false, "serve /debug/pprof on the admin listener")
	auditAllows := fs.Int64("audit-allows", adminserve.AuditAllowsFlag, "log one authorization allow in N (1: every allow, one record per delivered message; 0: none), overriding MqttAuthSettings admin.audit.sampleAllows (default: none)")
	cluster := clustersrc.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Two handlers, ours and mochi's, write to one stream, buffered: a
	// record costs a copy, not a write system call (package logsink); the
	// buffer's lock keeps their lines whole.
	logOut := logsink.New(stdout, logsink.DefaultInterval)
	defer logOut.Close()
	newHandler := func(level slog.Level) slog.Handler {
		opts := &slog.HandlerOptions{Level: level}
		if *logJSON {
			return slog.NewJSONHandler(logOut, opts)
		}
		return slog.NewTextHandler(logOut, opts)
	}
	log := slog.New(newHandler(slog.LevelInfo))

	isTutorial := len(cfgPaths) == 0 && !cluster.Enabled()
	if isTutorial {
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
	if *check {
		log = slog.New(slog.DiscardHandler)
	}
	opts := aioconfig.Options{Logger: log}
	var exp *prometheus.Exporter
	if !*check {
		if exp, err = prometheus.New(prometheus.Config{}); err != nil {
			return err
		}
		opts.Observer = exp
	}
	b, err := cluster.Build(ctx, cfg, opts)
	if err != nil {
		return err
	}
	defer b.Close()
	// The flags change b's settings, which -check-config prints and the
	// program runs: one source for both.
	adminCfg := adminserve.Config{Flag: *adminAddr, Pprof: *pprof, Config: cfg, Broker: b, Exporter: exp, Logger: log}
	adminserve.Apply(adminCfg)
	adminserve.ApplyAuditAllows(b, *auditAllows)
	if *check {
		fmt.Fprintf(stdout, "configuration %s is valid\n", strings.Join(append(cfgPaths, cluster.Name()...), ", "))
		return b.Describe(stdout)
	}
	// Start-up readiness (a ServiceAccountToken method's RBAC): each source
	// logs one line with what is missing; the broker runs on, not ready
	// (b.ReadyChecks), rather than exiting: its other methods still work.
	_ = b.CheckReady(ctx)
	stopFiles, err := cluster.FollowFiles(b, cfgPaths, *addr, log)
	if err != nil {
		return err
	}
	defer stopFiles()
	// The audit log is the configuration's (b.Audit, printed by
	// -check-config): by default passes, refusals, disconnects and denies,
	// and no authorization allow (-audit-allows or admin.audit.sampleAllows
	// samples them; 1 logs one record per delivered message).
	m, err := auth.NewManager(b.AuthConfig())
	if err != nil {
		return err
	}
	defer m.Close()

	// mochi's own warnings (a packet it refused before any hook saw it)
	// are kept, without the packet dumps that carry credentials.
	mochiLog := mochi.ServerLogger(newHandler(slog.LevelWarn)).With(slog.String("component", "mochi"))
	srv := mqtt.New(&mqtt.Options{InlineClient: false, Logger: mochiLog})
	// The connection layer's defaults bound what a peer holds before it
	// authenticates: 1 MiB packets, 10 s for the TLS handshake and CONNECT,
	// 256 connections not yet authenticated, 32 of them per source;
	// MqttAuthSettings limits change them.
	h, err := mochi.Attach(srv, hookConfig(m, b.Limits, log))
	if err != nil {
		return err
	}
	adminSrv, listening, err := startAdmin(adminCfg, h)
	if err != nil {
		return err
	}
	defer adminserve.Stop(adminSrv)
	// The listener ID is the port's name: the hook passes it as
	// auth.Request.Listener, which selects the port's chain and policy.
	// The listeners follow the configuration's ports (liveports): a port
	// added to the configuration is opened, a removed one shut down
	// (DISCONNECT 0x8B to its clients); b.TLS serves each port's TLS in
	// force at every handshake.
	var serving atomic.Bool
	ports := liveports.New(b, liveports.Funcs{
		Start: func(p *aioconfig.Port) error {
			var cfg *tls.Config
			if p.TLS != nil {
				cfg = b.TLS(p.Name)
			}
			l := h.Listener(p.Name, p.Address, cfg)
			if serving.Load() {
				if err := h.ServeListener(l); err != nil {
					return err
				}
			} else if err := srv.AddListener(l); err != nil {
				return err
			}
			log.Info("broker listening", slog.String("address", p.Address), slog.String("listener", p.Name), slog.Bool("tls", p.TLS != nil))
			return nil
		},
		Stop: h.RemoveListener,
	}, log)
	defer ports.Close()
	if err := ports.Sync(ctx); err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		return err
	}
	serving.Store(true)
	ports.Follow()
	// From here on the server ends through h.Shutdown, which closes it
	// (mochi's Close may run once only).
	listening.Open()
	if isTutorial {
		printTutorial(logOut, filepath.Dir(cfgPaths[0]), b.Ports[0].Address) // after the log lines before it
	}
	<-ctx.Done()
	ports.Close() // no port opens or closes past this point
	// Orderly: stop accepting, DISCONNECT 0x8B to every MQTT 5 client,
	// let exchanges in flight finish for up to 10 s.
	log.Info("broker stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Shutdown(sctx); err != nil {
		log.Warn("shutdown cut short", slog.String("err", err.Error()))
	}
	return nil
}

// startAdmin exports the counts the adapter and the configuration's
// components keep themselves and serves the admin listener, with the
// readiness checks of the configuration's sources and a gate, "listeners",
// that the caller opens once the broker listens.
func startAdmin(cfg adminserve.Config, h *mochi.Hook) (*admin.Server, *admin.Gate, error) {
	exp := cfg.Exporter
	if err := adminserve.RegisterBroker(exp, cfg.Broker); err != nil {
		return nil, nil, err
	}
	// The adapter's refusals of peers that never authenticated, by fixed
	// reason, and the offline sessions it keeps a principal for.
	pre := func(v func(mqttconn.Stats) uint64) func() float64 {
		return func() float64 { return float64(v(h.Stats())) }
	}
	const help = "Connections the adapter closed before authentication, by reason: over_pending (too many pending), over_source (too many pending from one source), timed_out (no TLS handshake and CONNECT in time), too_large, invalid."
	var errs []error
	for _, r := range []struct {
		reason string
		v      func(mqttconn.Stats) uint64
	}{
		{"over_pending", func(s mqttconn.Stats) uint64 { return s.OverPending }},
		{"over_source", func(s mqttconn.Stats) uint64 { return s.OverSource }},
		{"timed_out", func(s mqttconn.Stats) uint64 { return s.TimedOut }},
		{"too_large", func(s mqttconn.Stats) uint64 { return s.TooLarge }},
		{"invalid", func(s mqttconn.Stats) uint64 { return s.Invalid }},
	} {
		errs = append(errs, exp.CounterFunc("preauth_refused_total", help, map[string]string{"reason": r.reason}, pre(r.v)))
	}
	errs = append(errs,
		exp.GaugeFunc("preauth_pending", "Connections accepted and not yet authenticated.", nil,
			func() float64 { return float64(h.Stats().Pending) }),
		exp.GaugeFunc("offline_sessions", "Offline persistent sessions whose principal the adapter keeps.", nil,
			func() float64 { return float64(h.Offline()) }),
		exp.CounterFunc("wills_dropped_total", "Will Messages not published because the principal or the policy in force no longer allowed them.", nil,
			func() float64 { return float64(h.Stats().WillsDropped) }))
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	gate := admin.NewGate("listeners")
	cfg.Checks = append(cfg.Checks, gate.Check())
	srv, err := adminserve.Start(cfg)
	return srv, gate, err
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
		filepath.Join(dir, tutorial.SampleSCRAMPasswordFile),
		port, filepath.Join(dir, devpki.ServerRootCA), tutorial.SampleSCRAMUser, filepath.Join(dir, tutorial.SampleSCRAMPasswordFile))
}

// hookConfig is the adapter's configuration: the Manager, and the limits
// of MqttAuthSettings where it sets them.
func hookConfig(m *auth.Manager, l *aioconfig.Limits, log *slog.Logger) mochi.Config {
	return mochi.Config{Manager: m, Logger: log, Limits: l.Conn()}
}
