// Package adminserve serves the admin listener of the example programs
// (broker and gateway): /metrics from the Prometheus exporter, /healthz,
// /readyz with the readiness checks of the configuration's sources, and
// /debug/pprof when enabled.
package adminserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mqttauth/mqttauth/admin"
	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/metrics/prometheus"
	"github.com/mqttauth/mqttauth/revocation"
)

// Off is the -admin-addr value (and MqttAuthSettings admin.address) that
// turns the admin listener off.
const Off = "off"

// Config is what Start needs.
type Config struct {
	// Flag is the -admin-addr flag ("" when not given): it overrides the
	// configuration; "off" turns the listener off.
	Flag string
	// Pprof is the -pprof flag; the configuration's admin.pprof turns
	// pprof on too.
	Pprof bool
	// Config and Broker are the loaded and built configuration.
	Config *aioconfig.Config
	Broker *aioconfig.Broker
	// Exporter serves /metrics.
	Exporter *prometheus.Exporter
	// Checks are readiness checks besides the Broker's (a gate opened
	// once the program listens).
	Checks []admin.Check
	// Logger receives the start record ("admin listening", key address).
	Logger *slog.Logger
}

// Start serves the admin handler. The address is the -admin-addr flag,
// else MqttAuthSettings admin.address, else the loopback default; an
// address given by the flag or the configuration that cannot be bound is
// an error, while the default one that cannot (another program holds it)
// is logged as a warning and the program runs without. It returns nil
// when the listener is off or not started.
func Start(cfg Config) (*admin.Server, error) {
	addr, explicit := resolve(cfg)
	if addr == "" {
		cfg.Logger.Info("admin listener off")
		return nil, nil
	}
	checks := make([]admin.Check, 0, len(cfg.Checks))
	for _, c := range cfg.Broker.ReadyChecks() {
		checks = append(checks, admin.Check{Name: c.Name, Check: c.Check})
	}
	checks = append(checks, cfg.Checks...)
	h, err := admin.New(admin.Config{
		Metrics:     cfg.Exporter.Handler(),
		Checks:      checks,
		EnablePprof: cfg.Pprof || cfg.Broker.Admin.Pprof,
	})
	if err != nil {
		return nil, err
	}
	srv, err := admin.Listen(addr, h)
	if err != nil {
		if !explicit {
			cfg.Logger.Warn("admin listener not started: the default address is taken; set -admin-addr or MqttAuthSettings admin.address",
				slog.String("address", addr), slog.Any("err", err))
			return nil, nil
		}
		return nil, err
	}
	cfg.Logger.Info("admin listening", slog.String("address", srv.Addr().String()),
		slog.Bool("pprof", cfg.Pprof || cfg.Broker.Admin.Pprof))
	return srv, nil
}

// resolve returns the admin address (empty: off) of the flag, else the
// configuration, else the default, and whether it was given explicitly.
func resolve(cfg Config) (addr string, explicit bool) {
	addr = cfg.Broker.Admin.Address
	if s := cfg.Config.Settings.Admin; s != nil && s.Address != nil {
		explicit = true
	}
	if cfg.Flag != "" {
		addr, explicit = cfg.Flag, true
		if addr == Off {
			addr = ""
		}
	}
	return addr, explicit
}

// Apply writes the -admin-addr and -pprof flags into cfg.Broker.Admin, so
// that cfg.Broker.Describe (-check-config) prints the admin listener that
// Start serves ("admin: off" under -admin-addr off).
func Apply(cfg Config) {
	cfg.Broker.Admin.Address, _ = resolve(cfg)
	cfg.Broker.Admin.Pprof = cfg.Broker.Admin.Pprof || cfg.Pprof
}

// AuditAllowsFlag is the -audit-allows flag's default: the configuration's
// admin.audit.sampleAllows applies.
const AuditAllowsFlag = -1

// ApplyAuditAllows sets b.Audit.SampleAllows to the -audit-allows flag
// unless it kept its default (AuditAllowsFlag).
func ApplyAuditAllows(b *aioconfig.Broker, flag int64) {
	if flag >= 0 {
		b.Audit.SampleAllows = uint64(flag)
	}
}

// Stop shuts srv down (nil: nothing), waiting at most 5 s.
func Stop(srv *admin.Server) {
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// RegisterBroker exports the counts the configuration's components keep
// themselves: the brute-force defence's counters, the chains x509auth has
// cached and the revocation checkers' fetches and refusals, summed over
// the X509 methods (no per-method label: one series each).
func RegisterBroker(exp *prometheus.Exporter, b *aioconfig.Broker) error {
	var errs []error
	// The components are asked for at each scrape: Apply may replace
	// them (aioconfig.Broker.Apply).
	if t := b.Throttle(); t != nil {
		errs = append(errs, exp.GaugeFunc("throttle_entries", "Failure counters the brute-force defence holds (throttle.Len).", nil,
			func() float64 {
				if t := b.Throttle(); t != nil {
					return float64(t.Len())
				}
				return 0
			}))
	}
	if xs := b.X509(); len(xs) > 0 {
		errs = append(errs, exp.GaugeFunc("x509_cached_chains", "Verified client certificate chains cached by the X509 methods (x509auth CachedChains).", nil,
			func() float64 {
				n := 0
				for _, x := range b.X509() {
					n += x.CachedChains()
				}
				return float64(n)
			}))
	}
	if rcs := b.Revocation(); len(rcs) > 0 {
		sum := func(v func(revocation.Stats) int) func() float64 {
			return func() float64 {
				n := 0
				for _, rc := range b.Revocation() {
					n += v(rc.Stats())
				}
				return float64(n)
			}
		}
		ocsp, crl := map[string]string{"source": "ocsp"}, map[string]string{"source": "crl"}
		const (
			fetches  = "OCSP requests and CRL downloads of the revocation checkers, by source."
			failures = "OCSP requests and CRL downloads that brought no valid answer, by source."
			cached   = "OCSP answers and CRLs cached now, by source."
		)
		errs = append(errs,
			exp.CounterFunc("revocation_fetches_total", fetches, ocsp, sum(func(s revocation.Stats) int { return int(s.OCSPFetches) })),
			exp.CounterFunc("revocation_fetches_total", fetches, crl, sum(func(s revocation.Stats) int { return int(s.CRLFetches) })),
			exp.CounterFunc("revocation_fetch_failures_total", failures, ocsp, sum(func(s revocation.Stats) int { return int(s.OCSPFailures) })),
			exp.CounterFunc("revocation_fetch_failures_total", failures, crl, sum(func(s revocation.Stats) int { return int(s.CRLFailures) })),
			exp.CounterFunc("revocation_revoked_total", "Certificates found newly revoked by a fetch.",
				nil, sum(func(s revocation.Stats) int { return int(s.Revocations) })),
			exp.CounterFunc("revocation_unavailable_total", "hardFail checks refused for want of a fresh answer.",
				nil, sum(func(s revocation.Stats) int { return int(s.Unavailable) })),
			exp.CounterFunc("revocation_soft_passes_total", "softFail checks passed without a fresh answer.",
				nil, sum(func(s revocation.Stats) int { return int(s.SoftPasses) })),
			exp.GaugeFunc("revocation_cached", cached, ocsp, sum(func(s revocation.Stats) int { return s.Entries })),
			exp.GaugeFunc("revocation_cached", cached, crl, sum(func(s revocation.Stats) int { return s.CRLs })),
		)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("adminserve: %w", err)
	}
	return nil
}
