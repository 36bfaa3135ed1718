package prometheus

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mqttauth/mqttauth/auth"
)

// DefaultNamespace prefixes every metric name.
const DefaultNamespace = "mqttauth"

// Config configures an [Exporter].
type Config struct {
	// Registry receives the metrics. Nil means a new registry that also
	// holds the Go runtime and process collectors; Handler serves it.
	Registry *prom.Registry
	// Namespace prefixes the metric names; empty means DefaultNamespace.
	Namespace string
	// Buckets are the latency histogram buckets in seconds; nil means
	// DefaultBuckets.
	Buckets []float64
}

// DefaultBuckets are the latency buckets: 100 µs to 10 s.
var DefaultBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Exporter is an [auth.Observer] that keeps Prometheus metrics. Pass it as
// the Observer of auth.Config and of the components, and serve Handler.
type Exporter struct {
	reg *prom.Registry
	ns  string

	authn      *prom.CounterVec
	authnTime  *prom.HistogramVec
	authz      [4][3]prom.Counter // [ActionKind][AuthzResult], resolved once
	accepted   codeCounters       // connections_total{result="accepted"} by code
	refused    codeCounters       // connections_total{result="refused"} by code
	reauthPass prom.Counter
	reauthFail prom.Counter
	disconnect [len(causes)]codeCounters // disconnects_total by cause, code
	live       prom.Gauge
	rechecks   prom.Counter
	recheckN   prom.Counter
	recheckOff prom.Counter
	reloads    *prom.CounterVec
	calls      *prom.CounterVec
	callTime   *prom.HistogramVec
	breaker    *prom.GaugeVec

	mu      sync.Mutex // serialises the creation of a method's series
	methods sync.Map   // method label -> *methodMetrics
}

// causes are the disconnect causes, indexed by auth.Cause.
var causes = [...]auth.Cause{auth.CauseNone, auth.CauseExpiry, auth.CauseRevocation, auth.CausePolicy,
	auth.CauseTimeout, auth.CauseProtocol, auth.CauseReauth, auth.CauseRate}

// codeCounters are the series of one CounterVec whose last label is a
// reason code, created on first use (so that only codes that happened are
// exported) and then found with one atomic load.
type codeCounters struct {
	vec   *prom.CounterVec
	first string
	c     [256]atomic.Pointer[counter]
}

type counter struct{ prom.Counter }

func (cc *codeCounters) inc(code auth.ReasonCode) {
	c := cc.c[code].Load()
	if c == nil {
		c = &counter{cc.vec.WithLabelValues(cc.first, codeLabels[code])}
		cc.c[code].Store(c) // a racing store holds the same series
	}
	c.Inc()
}

// methodMetrics are one method's series, resolved once.
type methodMetrics struct {
	outcomes [5]prom.Counter // by auth.Outcome
	latency  prom.Observer
}

var outcomeLabels = [...]string{"not_relevant", "pass", "fail", "continue", "unavailable"}

var codeLabels = func() (l [256]string) {
	for i := range l {
		l[i] = fmt.Sprintf("0x%02X", i)
	}
	return l
}()

// New returns an Exporter whose metrics are registered in cfg.Registry.
func New(cfg Config) (*Exporter, error) {
	ns := cfg.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	buckets := cfg.Buckets
	if buckets == nil {
		buckets = DefaultBuckets
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prom.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	e := &Exporter{reg: reg, ns: ns}
	e.authn = prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "authentication_total",
		Help: "Authentication outcomes per method of the chain, per packet (CONNECT, AUTH continuation, re-authentication)."},
		[]string{"method", "result"})
	e.authnTime = prom.NewHistogramVec(prom.HistogramOpts{Namespace: ns, Name: "authentication_duration_seconds",
		Help: "Time one authentication method took for one packet.", Buckets: buckets}, []string{"method"})
	authz := prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "authorization_total",
		Help: "Authorization decisions per action: allow, deny, or error (no principal to decide for)."},
		[]string{"action", "result"})
	connects := prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "connections_total",
		Help: "CONNECT exchanges by result (accepted, refused) and CONNACK reason code."},
		[]string{"result", "reason_code"})
	reauths := prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "reauthentications_total",
		Help: "Re-authentications by result (pass, fail)."}, []string{"result"})
	disconnects := prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "disconnects_total",
		Help: "Live sessions ended by the library, by cause and DISCONNECT reason code (0x00: closed without one)."},
		[]string{"cause", "reason_code"})
	e.live = prom.NewGauge(prom.GaugeOpts{Namespace: ns, Name: "sessions",
		Help: "Live (authenticated, not closed) sessions."})
	e.rechecks = prom.NewCounter(prom.CounterOpts{Namespace: ns, Name: "rechecks_total",
		Help: "Re-check runs over the live sessions (trust, revocation or policy change)."})
	e.recheckN = prom.NewCounter(prom.CounterOpts{Namespace: ns, Name: "recheck_sessions_total",
		Help: "Sessions checked by re-check runs."})
	e.recheckOff = prom.NewCounter(prom.CounterOpts{Namespace: ns, Name: "recheck_disconnects_total",
		Help: "Sessions disconnected by re-check runs."})
	e.reloads = prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "reloads_total",
		Help: "Loads of a watched source (truststore, policy, users) by result (ok, failed)."},
		[]string{"component", "result"})
	e.calls = prom.NewCounterVec(prom.CounterOpts{Namespace: ns, Name: "backend_calls_total",
		Help: "Calls to a backend (custom server, TokenReview, JWKS) by result (ok, failed, coalesced, cached)."},
		[]string{"component", "result"})
	e.callTime = prom.NewHistogramVec(prom.HistogramOpts{Namespace: ns, Name: "backend_call_duration_seconds",
		Help: "Time of completed backend calls.", Buckets: buckets}, []string{"component"})
	e.breaker = prom.NewGaugeVec(prom.GaugeOpts{Namespace: ns, Name: "breaker_state",
		Help: "Circuit breaker state per backend: 0 closed, 1 half-open, 2 open."}, []string{"component"})
	for _, c := range []prom.Collector{e.authn, e.authnTime, authz, connects, reauths, disconnects, e.live,
		e.rechecks, e.recheckN, e.recheckOff, e.reloads, e.calls, e.callTime, e.breaker} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("prometheus: %w", err)
		}
	}
	for _, k := range []auth.ActionKind{auth.Connect, auth.Publish, auth.Subscribe} {
		for _, r := range []auth.AuthzResult{auth.AuthzAllow, auth.AuthzDeny, auth.AuthzError} {
			e.authz[k][r] = authz.WithLabelValues(k.String(), r.String())
		}
	}
	e.reauthPass, e.reauthFail = reauths.WithLabelValues("pass"), reauths.WithLabelValues("fail")
	e.accepted = codeCounters{vec: connects, first: "accepted"}
	e.refused = codeCounters{vec: connects, first: "refused"}
	for i, c := range causes {
		e.disconnect[i] = codeCounters{vec: disconnects, first: c.String()}
	}
	return e, nil
}

// GaugeFunc registers a gauge named namespace_name (mqttauth_name by
// default) whose value f returns at each scrape: for a count a component
// keeps itself, such as the connections pending authentication of the
// mochi adapter or the chains x509auth has cached. labels are constant
// labels, a fixed set chosen by the caller: never a client id, a topic or
// a user name. f must be safe to call concurrently and fast.
func (e *Exporter) GaugeFunc(name, help string, labels map[string]string, f func() float64) error {
	return e.register(prom.NewGaugeFunc(prom.GaugeOpts{Namespace: e.ns, Name: name, Help: help, ConstLabels: labels}, f))
}

// CounterFunc registers a counter whose value f returns at each scrape,
// as [Exporter.GaugeFunc] a gauge: for a counter a component keeps itself
// (revocation.Checker.Stats, adapters' refusals). f must never decrease.
func (e *Exporter) CounterFunc(name, help string, labels map[string]string, f func() float64) error {
	return e.register(prom.NewCounterFunc(prom.CounterOpts{Namespace: e.ns, Name: name, Help: help, ConstLabels: labels}, f))
}

func (e *Exporter) register(c prom.Collector) error {
	if err := e.reg.Register(c); err != nil {
		return fmt.Errorf("prometheus: %w", err)
	}
	return nil
}

// Registry returns the registry that holds the metrics.
func (e *Exporter) Registry() *prom.Registry { return e.reg }

// Handler serves the registry in the Prometheus exposition format, for
// /metrics.
func (e *Exporter) Handler() http.Handler {
	return promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{Registry: e.reg})
}

var _ auth.Observer = (*Exporter)(nil)

// Authenticated counts one method's outcome and observes its latency.
func (e *Exporter) Authenticated(ev auth.AuthnEvent) {
	m := e.method(ev.Method)
	if int(ev.Outcome) < len(m.outcomes) {
		m.outcomes[ev.Outcome].Inc()
	}
	m.latency.Observe(ev.Latency.Seconds())
}

// method returns the series of the method labelled name, creating them the
// first time. The labels come from the configuration, so they are few.
func (e *Exporter) method(name string) *methodMetrics {
	if m, ok := e.methods.Load(name); ok {
		return m.(*methodMetrics)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if m, ok := e.methods.Load(name); ok {
		return m.(*methodMetrics)
	}
	m := &methodMetrics{latency: e.authnTime.WithLabelValues(name)}
	for i := range m.outcomes {
		m.outcomes[i] = e.authn.WithLabelValues(name, outcomeLabels[i])
	}
	e.methods.Store(name, m)
	return m
}

// Authorized counts one decision. It allocates nothing.
func (e *Exporter) Authorized(ev auth.AuthzEvent) {
	if int(ev.Kind) < len(e.authz) && int(ev.Result) < len(e.authz[0]) {
		if c := e.authz[ev.Kind][ev.Result]; c != nil {
			c.Inc()
		}
	}
}

// Session counts connects, re-authentications and disconnects and keeps
// the live gauge.
func (e *Exporter) Session(ev auth.SessionEvent) {
	switch ev.Kind {
	case auth.SessionConnected:
		e.accepted.inc(ev.Code)
		e.live.Inc()
	case auth.SessionRefused:
		e.refused.inc(ev.Code)
	case auth.SessionReauthenticated:
		e.reauthPass.Inc()
	case auth.SessionReauthFailed:
		e.reauthFail.Inc()
		e.disconnect[auth.CauseReauth].inc(ev.Code)
	case auth.SessionDisconnected:
		if int(ev.Cause) < len(e.disconnect) {
			e.disconnect[ev.Cause].inc(ev.Code)
		}
	case auth.SessionClosed:
		e.live.Dec()
	}
}

// Component counts re-checks, reloads, backend calls and breaker changes.
func (e *Exporter) Component(ev auth.ComponentEvent) {
	c := ev.Component.String()
	switch ev.Kind {
	case auth.Recheck:
		e.rechecks.Inc()
		e.recheckN.Add(float64(ev.Count))
		e.recheckOff.Add(float64(ev.Disconnected))
	case auth.Reload:
		e.reloads.WithLabelValues(c, "ok").Inc()
	case auth.ReloadFailed:
		e.reloads.WithLabelValues(c, "failed").Inc()
	case auth.Call:
		r := "ok"
		if ev.Failed {
			r = "failed"
		}
		e.calls.WithLabelValues(c, r).Inc()
		e.callTime.WithLabelValues(c).Observe(ev.Latency.Seconds())
	case auth.CallCoalesced:
		e.calls.WithLabelValues(c, "coalesced").Inc()
	case auth.CallCached:
		e.calls.WithLabelValues(c, "cached").Inc()
	case auth.BreakerClosed:
		e.breaker.WithLabelValues(c).Set(0)
	case auth.BreakerHalfOpen:
		e.breaker.WithLabelValues(c).Set(1)
	case auth.BreakerOpen:
		e.breaker.WithLabelValues(c).Set(2)
	}
}
