// Command nats is the example NATS server with mqttauth: nats-server
// (embedded from github.com/nats-io/nats-server/v2) with its MQTT 3.1.1
// listener, JetStream for the MQTT sessions, and mqttauth in process
// (adapters/nats): X.509 and the other methods, and ABAC policies as NATS
// permissions, from Azure IoT Operations resources (package aioconfig), as
// examples/broker does for mochi-mqtt.
//
// Started with no arguments it creates the development PKI of the Azure
// IoT Operations TLS, X.509 and ABAC tutorial in ./mqttauth-dev, listens
// for MQTT on 127.0.0.1:8883 with mutual TLS and for native NATS clients
// on 127.0.0.1:4222 (the same TLS, chain and policy), and prints the
// mosquitto_pub and mosquitto_sub commands to try.
//
//	nats                                  # the tutorial, with a generated PKI
//	nats -config broker.yaml              # your configuration: exactly one port
//	nats -nats-addr 127.0.0.1:4223 -store /var/lib/nats
//
// nats-server has one MQTT listener, so the configuration must have one
// port; its chain and policy serve native NATS clients too. A policy whose
// topic filters NATS permissions cannot express (see adapters/nats) is
// refused at start. Every authentication decision is logged; passwords and
// tokens never are.
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
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mqttauth/mqttauth/abac"
	natsauth "github.com/mqttauth/mqttauth/adapters/nats"
	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/examples/internal/tutorial"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, nil); err != nil {
		fmt.Fprintln(os.Stderr, "nats:", err)
		os.Exit(1)
	}
}

// run runs the server until ctx is done; ready, when set, receives the
// MQTT and NATS addresses once both listen.
func run(ctx context.Context, args []string, stdout io.Writer, ready func(mqttAddr, natsAddr string)) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var cfgPaths []string
	fs.Func("config", "configuration file of Azure IoT Operations resources, one port; repeat for several files; without it, the tutorial with a development PKI", func(v string) error {
		cfgPaths = append(cfgPaths, v)
		return nil
	})
	devDir := fs.String("dev-dir", "mqttauth-dev", "directory of the development PKI and configuration (without -config)")
	addr := fs.String("addr", "", "MQTT listen address, overriding the configuration's port")
	natsAddr := fs.String("nats-addr", "127.0.0.1:4222", "listen address of native NATS clients")
	store := fs.String("store", "", "JetStream directory (MQTT sessions and retained messages); default: jetstream beside the configuration")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stdout, nil))

	isTutorial := len(cfgPaths) == 0
	if isTutorial {
		path, err := tutorial.Ensure(*devDir, log)
		if err != nil {
			return err
		}
		cfgPaths = []string{path}
	}
	cfg, err := aioconfig.Load(cfgPaths...)
	if err != nil {
		return err
	}
	if *addr != "" {
		if err := tutorial.OverrideAddr(cfg, *addr); err != nil {
			return err
		}
	}
	b, err := aioconfig.Build(ctx, cfg, aioconfig.Options{Logger: log})
	if err != nil {
		return err
	}
	defer b.Close()
	if len(b.Ports) != 1 {
		return fmt.Errorf("nats-server has one MQTT listener: the configuration has %d ports", len(b.Ports))
	}
	port := b.Ports[0]
	var watchers []*abac.Watcher
	if src, ok := port.Authorizer.(abac.Source); ok {
		if err := natsauth.CheckPolicy(src.Current().Spec()); err != nil {
			return err
		}
		if w, ok := src.(*abac.Watcher); ok {
			watchers = append(watchers, w)
		}
	}
	m, err := auth.NewManager(b.AuthConfig())
	if err != nil {
		return err
	}
	defer m.Close()
	// Native NATS clients go through the same port's chain and policy.
	a, err := natsauth.New(natsauth.Config{Manager: m, Policy: b, Logger: log,
		Listeners: natsauth.Listeners{MQTT: port.Name, NATS: port.Name}})
	if err != nil {
		return err
	}
	defer a.Close()
	// NATS fixes a connection's permissions when it connects: a policy
	// change re-checks them, not only Connect.
	for _, w := range watchers {
		stop, err := m.Watch(auth.Watch{Name: "abac policy (NATS permissions)", Source: w, Check: a.CheckPermissions})
		if err != nil {
			return err
		}
		defer stop()
	}

	mqttHost, mqttPort, err := splitAddr(port.Address)
	if err != nil {
		return err
	}
	natsHost, natsPort, err := splitAddr(*natsAddr)
	if err != nil {
		return fmt.Errorf("-nats-addr: %w", err)
	}
	if *store == "" {
		*store = filepath.Join(filepath.Dir(cfgPaths[0]), "jetstream")
	}
	opts := &server.Options{
		ServerName: "mqttauth-example", Host: natsHost, Port: natsPort, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: *store,
		MQTT: server.MQTTOpts{Host: mqttHost, Port: mqttPort, TLSConfig: port.TLS},
	}
	if port.TLS != nil {
		opts.TLSConfig, opts.TLS = port.TLS, true
	}
	srv, err := natsauth.NewServer(opts, a)
	if err != nil {
		return err
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return errors.New("nats-server did not start")
	}
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	vz, err := srv.Varz(nil)
	if err != nil {
		return err
	}
	mqttListen := net.JoinHostPort(mqttHost, strconv.Itoa(vz.MQTT.Port))
	log.Info("nats-server listening", slog.String("mqtt", mqttListen), slog.String("nats", srv.Addr().String()),
		slog.String("listener", port.Name), slog.Bool("tls", port.TLS != nil), slog.String("jetstream", *store))
	if isTutorial {
		printTutorial(stdout, filepath.Dir(cfgPaths[0]), vz.MQTT.Port)
	}
	if ready != nil {
		ready(mqttListen, srv.Addr().String())
	}
	<-ctx.Done()
	log.Info("nats-server stopping")
	return nil
}

func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	if port == 0 {
		port = -1 // nats-server's "any free port"
	}
	return host, port, nil
}

func printTutorial(w io.Writer, dir string, port int) {
	tls := func(client string) string {
		return fmt.Sprintf("--cafile %s --cert %s --key %s",
			filepath.Join(dir, devpki.ServerRootCA), filepath.Join(dir, devpki.CertFile(client)), filepath.Join(dir, devpki.KeyFile(client)))
	}
	base := fmt.Sprintf("-h localhost -p %d -V mqttv311 -d -q 1", port)
	fmt.Fprintf(w, `
The Azure IoT Operations X.509 + ABAC tutorial is running on nats-server's
MQTT listener (MQTT 3.1.1; certificates in %s).
Try it with mosquitto-clients (apt-get install mosquitto-clients):

  # heater receives telemetry/temperature ...
  mosquitto_sub %s -i heater -t telemetry/temperature %s
  # ... which thermostat may publish
  mosquitto_pub %s -i thermostat -t telemetry/temperature -m 21.5 %s
  # thermostat may not publish telemetry/humidity: nats-server acknowledges and drops it
  mosquitto_pub %s -i thermostat -t telemetry/humidity -m 40 %s
  # heater may not subscribe to health/heartbeat (Subscribed: 128)
  mosquitto_sub %s -i heater -t health/heartbeat %s

`, dir, base, tls("heater"), base, tls("thermostat"), base, tls("thermostat"), base, tls("heater"))
}
