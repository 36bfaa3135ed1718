package aioconfig

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/customauth"
	"github.com/mqttauth/mqttauth/jwtauth"
	"github.com/mqttauth/mqttauth/revocation"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/scramauth"
	"github.com/mqttauth/mqttauth/throttle"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// DefaultJWTPasswordMarker is the user name that marks a token in the
// password when a JWT method reading the password sets no
// passwordUsername (the README's `-u jwt`): the brute-force defence never
// counts it as an identity.
const DefaultJWTPasswordMarker = "jwt"

// Options are what a build needs besides the files.
type Options struct {
	// Logger receives the components' records; nil means slog.Default().
	Logger *slog.Logger
	// Observer receives the events of every source Build makes
	// (truststores, policy watchers, SCRAM users files, custom servers,
	// service account tokens, JWT key sets) and of the auth.Manager of
	// [Broker.AuthConfig]: the Prometheus exporter, usually. Nil means
	// none.
	Observer auth.Observer
}

// Broker is a built configuration: one [Port] per BrokerListener port,
// each with its chain, authorizer and TLS, and the watches that keep live
// sessions in step with reloads. It is itself the Authenticator and
// Authorizer of one auth.Manager for all ports (see [Broker.AuthConfig]):
// it hands each request to the chain of the port it came in on
// (auth.Request.Listener) and each authorization to the policy of the port
// the principal connected through (auth.Principal.Listener). Unless
// MqttAuthSettings throttle says disabled, a brute-force defence
// (package throttle) is outermost, in front of every port's chain.
type Broker struct {
	// Ports are the ports Build made, in the order the listeners give
	// them; [Broker.CurrentPorts] are those in force after Apply.
	Ports []*Port
	// Session are the session settings of MqttAuthSettings.
	Session Session
	// Limits are the pre-authentication limits of MqttAuthSettings, nil
	// when it has none (the adapter's or gateway's defaults apply).
	Limits *Limits
	// Admin is the admin listener of MqttAuthSettings admin, defaults
	// applied: an empty Address means off. A program that overrides it
	// (a command-line flag) sets it here, so that [Broker.Describe] prints
	// what the program serves.
	Admin AdminListener
	// Audit is the audit log of MqttAuthSettings admin.audit, defaults
	// applied: passes, refusals and denies at Info, authorization allows
	// not logged. [Broker.AuthConfig] and [Broker.Describe] read it: a
	// program that overrides it sets it here before calling them.
	Audit auth.AuditConfig

	log *slog.Logger
	obs auth.Observer // nil when none

	// Of the whole Broker: what Cluster.Build adds, and Close.
	ready   []ReadyCheck
	startup []startupCheck // CheckReady
	closers []func()

	// The configuration in force, swapped whole by Apply (generation.go).
	gen      atomic.Pointer[generation]
	first    *generation // Build's: its watches are AuthConfig's
	settings []byte      // MqttAuthSettings as built: a change needs a restart
	applyMu  sync.Mutex  // Build and Apply
	cfg      *Config     // the Config being built (under applyMu)
	res      *resources  // where the sources being built go (under applyMu)
	changed  auth.Signal // the configuration watch: Apply, and sources built by Apply
	portsSig auth.Signal // Notify: the ports changed

	// The brute-force defence, rebuilt by Apply when the user names and
	// methods it must not count as identities change.
	throttle         atomic.Pointer[throttled]
	throttleSettings *Throttle
}

// throttled is the brute-force defence in force: t is nil when disabled.
type throttled struct {
	t                      *throttle.Throttle
	desc                   string
	markers, markerMethods []string // as given, to tell a change
}

// AdminListener is the admin listener's resolved settings.
type AdminListener struct {
	// Address is HOST:PORT; empty means the listener is off.
	Address string
	// Pprof serves /debug/pprof.
	Pprof bool
}

// ReadyCheck is one named readiness check of a source the Broker built, in
// the shape of admin.Check (admin.Check{Name: c.Name, Check: c.Check}):
// nil once the source has loaded and can admit someone (a truststore
// holding no CA is not ready: [ErrNoTrustedCA]). A source that loaded
// once keeps its last good version on a failed reload and stays ready.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// ErrNotLoaded is the error of a readiness check whose source has never
// loaded.
var ErrNotLoaded = errors.New("aioconfig: not loaded")

// ErrNoTrustedCA is the error of the readiness check of a truststore that
// loaded and holds no CA certificate: every client certificate is refused.
var ErrNoTrustedCA = errors.New("aioconfig: no trusted client CA: every client certificate is refused")

// Port is one built listener port.
type Port struct {
	// Name is the listener name the broker must give its connections
	// (auth.Request.Listener; a mochi listener's ID): LISTENER:PORT.
	Name string
	// Address is the address to listen on, HOST:PORT.
	Address string
	// TLS is the port's server TLS, with client certificate verification
	// when its authentication has an X509 method; nil means plain TCP.
	TLS *tls.Config
	// Authenticator is the port's chain, in authenticationMethods order.
	Authenticator auth.Chain
	// Authorizer is the port's policy: a BrokerAuthorization swapped in
	// place by Apply (an abac.Source), an *abac.Watcher
	// (authorizationFile), or auth.AllowAuthenticated without
	// authorizationRef.
	Authorizer auth.Authorizer
	// Spec is the port as configured.
	Spec PortSpec
	// Listener is the BrokerListener's name.
	Listener string

	methods    []string // for Describe
	policy     string
	policyName string      // Decision.Policy of the port's decisions
	authn      *builtAuthn // the sources of its chain, shared by the ports that name it
	authz      *builtAuthz // the source of its policy
}

// Build validates c and builds its ports. Every reloadable source it makes
// (truststores and CRLs, policy files, SCRAM users files) is a watch of
// [Broker.AuthConfig]. Close the Broker to stop them. [Broker.Apply] puts
// a later version of the configuration in force in place.
func Build(ctx context.Context, c *Config, opts Options) (_ *Broker, err error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b := &Broker{log: opts.Logger, obs: opts.Observer, Session: c.Settings.Session, Limits: c.Settings.Limits}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.Admin, b.Audit = adminSettings(c.Settings.Admin)
	g, err := b.build(ctx, c, nil) // b is not shared yet: no applyMu

	if err != nil {
		return nil, err
	}
	for _, ba := range g.authns {
		ba.fresh = false // the Manager watches them (AuthConfig)
	}
	for _, bz := range g.authzs {
		bz.fresh = false
	}
	b.first = g
	b.gen.Store(g)
	b.Ports = g.ports
	b.settings = settingsDigest(c)
	b.onClose(b.retireAll)
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	b.throttleSettings = c.Settings.Throttle
	markers, methods := g.markers()
	if err := b.buildThrottle(c.Settings.Throttle, markers, methods); err != nil {
		d := docRef{source: "MqttAuthSettings", kind: KindSettings}
		return nil, d.err("spec.throttle", "", err, "")
	}
	return b, nil
}

// build builds the ports of c, reusing from prev (the generation in force,
// nil at Build) every BrokerAuthentication whose methods and read-once
// data are unchanged and every policy source of the same key. On error
// what it built is closed and prev is untouched.
func (b *Broker) build(ctx context.Context, c *Config, prev *generation) (_ *generation, err error) {
	b.cfg = c
	g := &generation{cfg: c, byName: map[string]*Port{}, authns: map[string]*builtAuthn{}, authzs: map[string]*builtAuthz{}}
	defer func() {
		if err != nil {
			g.retireNew(prev)
		}
	}()
	authnPorts := map[string]map[string]bool{}
	authzPorts := map[string]map[string]bool{}
	for _, l := range c.Listeners {
		for i, ps := range l.Ports {
			d := docRef{source: l.Source, kind: KindListener, name: l.Name}
			at := fmt.Sprintf("spec.ports[%d]", i)
			p := &Port{
				Name:     l.Name + ":" + strconv.Itoa(ps.Port),
				Address:  net.JoinHostPort(ps.Address, strconv.Itoa(ps.Port)),
				Spec:     ps,
				Listener: l.Name,
			}
			ba := g.authns[ps.AuthenticationRef]
			if ba == nil {
				a := c.authentication(ps.AuthenticationRef)
				key := authnKey(c, a)
				if old := prev.authn(a.Name); old != nil && old.key == key {
					ba = old
				} else if ba, err = b.authentication(ctx, a); err != nil {
					return nil, err
				} else {
					ba.key, ba.fresh = key, true
				}
				g.authns[ps.AuthenticationRef] = ba
				authnPorts[ps.AuthenticationRef] = map[string]bool{}
			}
			authnPorts[ps.AuthenticationRef][p.Name] = true
			p.authn = ba
			p.Authenticator, p.methods = ba.chain, ba.methods
			if ps.TLS != nil {
				if p.TLS, err = b.serverTLS(ps.TLS.Manual); err != nil {
					return nil, d.err(at+".tls.manual", "", err, "")
				}
				if ba.x509 != nil {
					p.TLS = ba.x509.ServerTLSConfig(p.TLS)
				}
				// The same certificate and verification: keep the
				// configuration in force, and its session ticket keys, so
				// that clients resume their TLS sessions across a reload.
				if old := prev.port(p.Name); old != nil && old.authn == ba && sameTLS(old.TLS, p.TLS) {
					p.TLS = old.TLS
				}
			}
			key := ps.AuthorizationRef
			switch {
			case ps.AuthorizationFile != "":
				key = "file:" + c.Path(ps.AuthorizationFile)
				p.policyName = "authorizationFile " + ps.AuthorizationFile
				p.policy = p.policyName + " (watched)"
			case key != "":
				p.policyName = "BrokerAuthorization " + key
				p.policy = fmt.Sprintf("%s (%d rules)", p.policyName, c.authorization(key).Rules)
			default:
				key = "allow"
				p.policyName = "none (no authorizationRef)"
				p.policy = "none: every authenticated client may do everything (no authorizationRef)"
				// AIO's semantics, on purpose; but an operator who forgot
				// the reference must hear of it.
				if prev == nil {
					b.log.LogAttrs(ctx, slog.LevelWarn, "aioconfig: port without authorizationRef: every authenticated client may connect, publish and subscribe to every topic",
						slog.String("port", p.Name), slog.String("address", p.Address))
				}
			}
			bz := g.authzs[key]
			if bz == nil {
				if bz, err = b.authorization(g, c, key, ps, p.policyName, prev, d, at); err != nil {
					return nil, err
				}
				g.authzs[key] = bz
				authzPorts[key] = map[string]bool{}
			}
			authzPorts[key][p.Name] = true
			p.authz = bz
			p.Authorizer = bz.authz
			g.ports = append(g.ports, p)
			g.byName[p.Name] = p
		}
	}
	// The port sets of reused sources change only when the generation
	// is installed (Apply); fresh ones are private until then.
	g.authnPorts, g.authzPorts = authnPorts, authzPorts
	for name, ba := range g.authns {
		if ba.fresh {
			ba.ports.set(authnPorts[name])
		}
	}
	for key, bz := range g.authzs {
		if bz.fresh {
			bz.ports.set(authzPorts[key])
		}
	}
	return g, nil
}

// authorization builds (or reuses from prev) the policy source of key.
func (b *Broker) authorization(g *generation, c *Config, key string, ps PortSpec, policyName string, prev *generation, d docRef, at string) (*builtAuthz, error) {
	old := prev.authz(key)
	switch {
	case ps.AuthorizationFile != "":
		if old != nil {
			return old, nil
		}
		bz := &builtAuthz{key: key, ports: &portSet{}, fresh: true}
		b.res = &bz.res
		defer func() { b.res = nil }()
		w, err := abac.NewWatcher(abac.WatchConfig{Path: c.Path(ps.AuthorizationFile), Logger: b.log, Observer: b.obs, Name: policyName})
		if err != nil {
			return nil, d.err(at+".authorizationFile", ps.AuthorizationFile, err, "")
		}
		bz.authz = w
		b.res.ready = append(b.res.ready, ReadyCheck{Name: "policy " + ps.AuthorizationFile, Check: loaded(func() bool { return w.Current() != nil })})
		b.res.onClose(func() { _ = w.Close() })
		b.res.watches = append(b.res.watches, auth.Watch{Name: "abac policy " + ps.AuthorizationFile, Source: w, Check: onPorts(bz.ports, auth.CheckConnect(w))})
		return bz, nil
	case ps.AuthorizationRef != "":
		a := c.authorization(key)
		pol, err := abac.ParseNamed(a.Policy, policyName)
		if err != nil {
			return nil, fmt.Errorf("aioconfig: BrokerAuthorization %q: %w", key, err)
		}
		if old != nil && old.live != nil {
			// Swapped in place when the generation is installed, so that
			// the per-session caches follow (livePolicy).
			if !bytes.Equal(old.policy, a.Policy) {
				g.swaps = append(g.swaps, policySwap{bz: old, pol: pol, src: a.Policy, rules: a.Rules})
			}
			return old, nil
		}
		bz := &builtAuthz{key: key, ports: &portSet{}, fresh: true, policy: a.Policy}
		bz.live = newLivePolicy(pol)
		bz.authz = bz.live
		bz.res.watches = append(bz.res.watches, auth.Watch{Name: "BrokerAuthorization " + key, Source: bz.live, Check: onPorts(bz.ports, auth.CheckConnect(bz.live))})
		return bz, nil
	}
	if old != nil {
		return old, nil
	}
	return &builtAuthz{key: key, ports: &portSet{}, fresh: true, authz: auth.AllowAuthenticated}, nil
}

// buildThrottle puts the brute-force defence in front of every port's
// chain: on with throttle's defaults unless s says disabled.
func (b *Broker) buildThrottle(s *Throttle, markerNames, markerMethods []string) error {
	if s == nil {
		s = &Throttle{}
	}
	th := &throttled{markers: markerNames, markerMethods: markerMethods}
	if s.Disabled {
		th.desc = "off (disabled)"
		b.throttle.Store(th)
		return nil
	}
	markers := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(s.MarkerUsernames), markerNames...))))
	methods := slices.Compact(slices.Sorted(slices.Values(markerMethods)))
	cfg := throttle.Config{
		DisableAddress: s.DisableAddress, DisableIdentity: s.DisableIdentity,
		IPv4Prefix: s.IPv4Prefix, IPv6Prefix: s.IPv6Prefix, MaxEntries: s.MaxEntries,
		MarkerUsernames: markers, MarkerMethods: methods,
		Logger: b.log,
	}
	limit := func(l *ThrottleLimit) throttle.Limit {
		if l == nil {
			return throttle.Limit{}
		}
		every, _ := time.ParseDuration(l.Every) // checked by Load
		return throttle.Limit{Every: every, Burst: l.Burst}
	}
	cfg.Address, cfg.Identity = limit(s.Address), limit(s.Identity)
	t, err := throttle.New(auth.AuthenticatorFunc(b.authenticate), cfg)
	if err != nil {
		return err
	}
	th.t = t
	describe := func(l throttle.Limit, off bool) string {
		if off {
			return "off"
		}
		return fmt.Sprintf("%d failures in a row, then one per %s", cmp.Or(l.Burst, throttle.DefaultBurst), cmp.Or(l.Every, throttle.DefaultEvery))
	}
	th.desc = fmt.Sprintf("per address (/%d IPv4, /%d IPv6) %s; per identity %s; at most %d counters; CONNACK 0x9F when over",
		cmp.Or(s.IPv4Prefix, throttle.DefaultIPv4Prefix), cmp.Or(s.IPv6Prefix, throttle.DefaultIPv6Prefix),
		describe(cfg.Address, s.DisableAddress), describe(cfg.Identity, s.DisableIdentity), cmp.Or(s.MaxEntries, throttle.DefaultMaxEntries))
	if len(markers) > 0 {
		th.desc += fmt.Sprintf("; user names %q are markers, never identities", markers)
	}
	if len(methods) > 0 {
		th.desc += fmt.Sprintf("; the user name of methods %q is not counted (they do not verify it)", methods)
	}
	b.throttle.Store(th)
	return nil
}

// onPorts limits a re-check to the sessions of the given ports: a change
// of one port's truststore or policy leaves the other ports' sessions
// alone.
func onPorts(ports *portSet, check auth.CheckFunc) auth.CheckFunc {
	return func(ctx context.Context, s *auth.Session) error {
		if p := s.Principal(); p == nil || !ports.has(p.Listener()) {
			return nil
		}
		return check(ctx, s)
	}
}

func (b *Broker) serverTLS(m *ManualTLS) (*tls.Config, error) {
	cert, err := b.cfg.keyPair(m.SecretRef, m.CertFile, m.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: server certificate: %w", ErrInvalidValue, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func (b *Broker) authentication(ctx context.Context, a *Authentication) (_ *builtAuthn, err error) {
	ba := &builtAuthn{name: a.Name, ports: &portSet{}}
	b.res = &ba.res
	defer func() {
		b.res = nil
		if err != nil {
			ba.res.close()
		}
	}()
	onlyX509 := len(a.Methods) == 1 && a.Methods[0].Method == MethodX509
	for i, m := range a.Methods {
		var (
			x   auth.Authenticator
			own methodOwner
		)
		desc := m.Method
		switch m.Method {
		case MethodCustom:
			x, desc, err = b.custom(m.Custom)
			own = methodOwner{kind: MethodCustom}
		case MethodSAT:
			var sa *satauth.Authenticator
			sa, desc, err = b.sat(ctx, m.SAT, ba.ports, fmt.Sprintf("%s method %d", a.Name, i+1))
			if sa != nil {
				x = sa
				own = methodOwner{kind: MethodSAT, names: []string{satauth.Method}}
				if sa.Following() {
					own.check = sa.Watch(0).Check
				}
			}
		case MethodX509:
			if ba.x509 != nil {
				err = errors.New("one X509 method per BrokerAuthentication")
				break
			}
			ba.x509, desc, err = b.x509(m.X509, !onlyX509, ba.ports)
			x = ba.x509
			if ba.x509 != nil {
				own = methodOwner{kind: MethodX509, names: []string{x509auth.Method}, check: ba.x509.Check}
			}
		case MethodSCRAM:
			var st scramauth.Store
			x, st, desc, err = b.scram(m.SCRAM, ba.ports)
			own = methodOwner{kind: MethodSCRAM, check: scramauth.CheckStore(st)}
			own.names = append(own.names, m.SCRAM.Mechanisms...)
			if len(own.names) == 0 {
				own.names = []string{string(scramauth.SHA256), string(scramauth.SHA512)}
			}
		case MethodJWT:
			var ja *jwtauth.Authenticator
			ja, desc, err = b.jwt(m.JWT)
			if ja != nil {
				x = ja
				own = methodOwner{kind: MethodJWT, names: []string{ja.Method()}}
			}
		}
		if err != nil {
			d := docRef{source: a.Source, kind: KindAuthentication, name: a.Name}
			return nil, d.err(fmt.Sprintf("spec.authenticationMethods[%d].%s", i, settingsField(m.Method, a.API)), "", err, "")
		}
		ba.chain = append(ba.chain, x)
		ba.methods = append(ba.methods, desc)
		ba.owners = append(ba.owners, own)
	}
	if b.obs != nil {
		ba.chain = auth.ObserveMethods(ba.chain, b.obs).(auth.Chain)
	}
	return ba, nil
}

func (b *Broker) custom(s *CustomSettings) (auth.Authenticator, string, error) {
	cfg := customauth.Config{Endpoint: s.Endpoint, Logger: b.log, Observer: b.obs}
	desc := "Custom " + s.Endpoint
	if ca := cmp.Or(cmp.Or(s.CACert, s.CACertConfigMap), s.CACertFile); ca != "" {
		pool, err := b.cfg.pemPoolOf(ca)
		if err != nil {
			return nil, "", err
		}
		cfg.RootCAs = pool
		desc += ", server CA " + ca
	}
	if s.Auth != nil && s.Auth.X509 != nil {
		x := s.Auth.X509
		pair, err := b.cfg.keyPair(cmp.Or(x.SecretRef, x.SecretName), x.CertFile, x.KeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("auth.x509: %w", err)
		}
		cfg.ClientCertificate = &pair
		desc += ", client certificate"
	}
	if len(s.Headers) > 0 {
		cfg.Headers = http.Header{}
		for k, v := range s.Headers {
			cfg.Headers.Set(k, v)
		}
	}
	if s.Timeout != "" {
		cfg.Timeout, _ = time.ParseDuration(s.Timeout) // checked by Load
	}
	if cb := s.CircuitBreaker; cb != nil {
		cfg.Breaker.Failures = cb.FailureThreshold
		if cb.Cooldown != "" {
			cfg.Breaker.CoolDown, _ = time.ParseDuration(cb.Cooldown) // checked by Load
			desc += ", breaker cool-down " + cb.Cooldown
		}
	}
	a, err := customauth.New(cfg)
	if err != nil {
		return nil, "", err
	}
	b.res.onClose(a.CloseIdleConnections)
	return a, desc, nil
}

func (b *Broker) sat(ctx context.Context, s *SATSettings, ports *portSet, where string) (*satauth.Authenticator, string, error) {
	cfg := satauth.Config{
		Audiences:             s.Audiences,
		APIServer:             s.APIServer,
		CAFile:                b.cfg.Path(s.CAFile),
		TokenFile:             b.cfg.Path(s.TokenFile),
		Issuer:                s.Issuer,
		JWKSFile:              b.cfg.Path(s.JWKSFile),
		AnnotationPrefix:      s.AnnotationPrefix,
		AllowUsernameFallback: s.AllowUsernameFallback,
		DisableWatch:          !s.Following(),
		Logger:                b.log,
		Observer:              b.obs,
	}
	cfg.CacheTTL, _ = time.ParseDuration(cmp.Or(s.CacheTTL, "0s"))         // checked by Load
	cfg.AttributeTTL, _ = time.ParseDuration(cmp.Or(s.AttributeTTL, "0s")) // checked by Load
	if s.Mode == "local" {
		cfg.Mode = satauth.ModeLocal
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	a, err := satauth.New(ctx, cfg)
	if err != nil {
		return nil, "", err
	}
	b.res.onClose(a.Close)
	name := "serviceAccountToken (BrokerAuthentication " + where + ")"
	if a.Following() {
		// The Manager subscribes to the follower; its Close stops it.
		w := a.Watch(0)
		w.Name = "kubernetes serviceaccounts and pods of " + name
		w.Check = onPorts(ports, w.Check)
		b.res.watches = append(b.res.watches, w)
	}
	b.res.markerMethods = append(b.res.markerMethods, satauth.Method) // the CONNECT user name is not verified
	if s.AllowUsernameFallback {
		b.res.markers = append(b.res.markers, satauth.Method) // MQTT 3.1.1 clients send user name K8S-SAT, the token as password
	}
	startup, ready := satReady(name, a)
	b.res.startup = append(b.res.startup, startup)
	b.res.ready = append(b.res.ready, ready)
	desc := fmt.Sprintf("ServiceAccountToken audiences %v, %s, cacheTTL %s, attributeTTL %s, watch %s",
		s.Audiences, cmp.Or(s.Mode, "tokenReview"), cmp.Or(s.CacheTTL, "5m"), cmp.Or(s.AttributeTTL, "1m"), onOff(a.Following()))
	return a, desc, nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

func (b *Broker) x509(s *X509Settings, optional bool, ports *portSet) (*x509auth.Authenticator, string, error) {
	var store *truststore.Store
	var crls []string
	if _, ok := b.cfg.memory(s.TrustedClientCaCert, false); ok {
		// Held in memory (the Kubernetes API): Apply replaces the set
		// when the ConfigMaps change.
		set, sum, err := memoryTrust(b.cfg, s)
		if err != nil {
			return nil, "", err
		}
		store = truststore.NewMemory(set)
		b.res.updates = append(b.res.updates, func(c *Config) error {
			set, next, err := memoryTrust(c, s)
			if err != nil || next == sum {
				return err
			}
			sum = next
			store.Replace(set)
			return nil
		})
		crls = s.CRLs
	} else {
		ca, err := b.cfg.resolve(s.TrustedClientCaCert, false)
		if err != nil {
			return nil, "", fmt.Errorf("trustedClientCaCert: %w", err)
		}
		crls = make([]string, len(s.CRLs))
		for i, p := range s.CRLs {
			if crls[i], err = b.cfg.resolve(p, false); err != nil {
				return nil, "", fmt.Errorf("crls[%d]: %w", i, err)
			}
		}
		if store, err = truststore.New(truststore.Config{CAPaths: []string{ca}, CRLPaths: crls, Logger: b.log, Observer: b.obs}); err != nil {
			return nil, "", err
		}
	}
	b.res.ready = append(b.res.ready, ReadyCheck{Name: "truststore " + s.TrustedClientCaCert, Check: func(context.Context) error {
		switch set := store.Current(); {
		case set == nil:
			return ErrNotLoaded
		case set.Len() == 0:
			return ErrNoTrustedCA
		}
		return nil
	}})
	b.res.onClose(func() { _ = store.Close() })
	attrs := map[string]AttributeEntry{}
	if s.Attributes != nil && s.Attributes.SecretName != "" {
		if err := b.attributeSecret(s.Attributes.SecretName, attrs); err != nil {
			return nil, "", fmt.Errorf("attributes.secretName: %w", err)
		}
	}
	for k, v := range s.AuthorizationAttributes {
		attrs[k] = v
	}
	names := make([]string, 0, len(attrs))
	for name := range attrs {
		names = append(names, name)
	}
	slices.Sort(names)
	mappings := make([]x509auth.Mapping, 0, len(names))
	for _, name := range names {
		e := attrs[name]
		mappings = append(mappings, x509auth.Mapping{Name: name, Subject: e.Subject, Attributes: e.Attributes})
	}
	xcfg := x509auth.Config{Trust: store, Mappings: mappings, ClientCertOptional: optional,
		RequireClientAuthEKU: s.RequireClientAuthEku, Logger: b.log}
	var rc *revocation.Checker
	if s.Revocation != nil {
		var err error
		if rc, err = b.revocation(s.Revocation); err != nil {
			return nil, "", fmt.Errorf("revocation: %w", err)
		}
		xcfg.Revocation = rc // only when set: a nil *Checker in the interface would be called
	}
	a, err := x509auth.New(xcfg)
	if err != nil {
		return nil, "", err
	}
	b.res.x509s = append(b.res.x509s, a)
	if rc != nil {
		b.res.revocs = append(b.res.revocs, rc)
	}
	w := a.Watch(store)
	w.Name = "truststore " + s.TrustedClientCaCert
	w.Check = onPorts(ports, w.Check)
	b.res.watches = append(b.res.watches, w)
	if rc != nil {
		rw := rc.Watch(onPorts(ports, a.Check), 0)
		rw.Name = "revocation (" + revocationSources(s.Revocation) + ") of certificates trusted by " + s.TrustedClientCaCert
		b.res.watches = append(b.res.watches, rw)
	}
	desc := fmt.Sprintf("X509 trusting %s (%d CA), %d attribute mappings", s.TrustedClientCaCert, store.Current().Len(), len(mappings))
	if len(crls) > 0 {
		desc += fmt.Sprintf(", %d CRL paths", len(crls))
	}
	if optional {
		desc += ", certificate optional"
	}
	if s.RequireClientAuthEku {
		desc += ", clientAuth extended key usage required"
	}
	if r := s.Revocation; r != nil {
		desc += fmt.Sprintf(", revocation %s %s", cmp.Or(r.Mode, RevocationHardFail), revocationSources(r))
	}
	return a, desc, nil
}

// revocation builds the checker of an X509 method's revocation settings;
// it is closed with the Broker.
func (b *Broker) revocation(s *RevocationSettings) (*revocation.Checker, error) {
	cfg := revocation.Config{
		OCSP: s.OCSP, Responder: s.Responder, CRLDistributionPoints: s.CRLDistributionPoints,
		MaxEntries: s.MaxEntries, MaxCRLs: s.MaxCRLs, Logger: b.log,
	}
	if s.Mode == RevocationSoftFail {
		cfg.Mode = revocation.SoftFail
	}
	// Durations are checked by Load; an explicit zero wait means none.
	for _, d := range []struct {
		v   string
		dst *time.Duration
	}{
		{s.Timeout, &cfg.Timeout}, {s.Wait, &cfg.Wait}, {s.RefreshBefore, &cfg.RefreshBefore},
		{s.RetryInterval, &cfg.RetryInterval}, {s.RefreshInterval, &cfg.RefreshInterval}, {s.MaxAge, &cfg.MaxAge},
	} {
		*d.dst, _ = time.ParseDuration(cmp.Or(d.v, "0s"))
	}
	if s.Wait != "" && cfg.Wait == 0 {
		cfg.Wait = -1
	}
	rc, err := revocation.New(cfg)
	if err != nil {
		return nil, err
	}
	b.res.onClose(func() { _ = rc.Close() })
	return rc, nil
}

func revocationSources(s *RevocationSettings) string {
	var src []string
	switch {
	case s.Responder != "":
		src = append(src, "OCSP "+s.Responder)
	case s.OCSP:
		src = append(src, "OCSP")
	}
	if s.CRLDistributionPoints {
		src = append(src, "CRL distribution points")
	}
	return strings.Join(src, " + ")
}

// jwt builds a JWT method. The keys are fetched on first use, so an
// issuer that is down at start does not stop the broker.
func (b *Broker) jwt(s *JWTSettings) (*jwtauth.Authenticator, string, error) {
	cfg := jwtauth.Config{
		Issuer: s.Issuer, DiscoveryURL: s.DiscoveryURL, JWKSURL: s.JWKSURL,
		Audiences: s.Audiences, Algorithms: s.Algorithms, UsernameClaim: s.UsernameClaim,
		ClaimsToAttributes: s.ClaimsToAttributes, Method: s.Method, PasswordUsername: s.PasswordUsername,
		InsecureAllowHTTP: s.InsecureAllowHTTP, Logger: b.log, Observer: b.obs,
	}
	if s.TokenFrom == TokenFromPassword {
		cfg.TokenFrom = jwtauth.FromPassword
	}
	// Durations are checked by Load; an explicit zero leeway means none.
	for _, d := range []struct {
		v   string
		dst *time.Duration
	}{
		{s.Leeway, &cfg.Leeway}, {s.KeyRefreshInterval, &cfg.KeyRefreshInterval},
		{s.KeyMaxAge, &cfg.KeyMaxAge}, {s.RequestTimeout, &cfg.RequestTimeout},
	} {
		*d.dst, _ = time.ParseDuration(cmp.Or(d.v, "0s"))
	}
	if s.Leeway != "" && cfg.Leeway == 0 {
		cfg.Leeway = -1
	}
	desc := fmt.Sprintf("JWT issuer %s, audiences %v", s.Issuer, s.Audiences)
	if ca := cmp.Or(s.CACert, s.CACertFile); ca != "" {
		pool, err := b.cfg.pemPoolOf(ca)
		if err != nil {
			return nil, "", fmt.Errorf("caCert: %w", err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		cfg.HTTPClient = &http.Client{Transport: tr, Timeout: cmp.Or(cfg.RequestTimeout, jwtauth.DefaultRequestTimeout)}
		b.res.onClose(tr.CloseIdleConnections)
		desc += ", issuer CA " + ca
	}
	a, err := jwtauth.New(cfg)
	if err != nil {
		return nil, "", err
	}
	b.res.onClose(a.Close)
	if cfg.TokenFrom == jwtauth.FromPassword {
		desc += ", token in the password"
		if s.PasswordUsername != "" {
			desc += " of user name " + s.PasswordUsername
		}
		// The user name is a marker every client sends, not an identity.
		b.res.markers = append(b.res.markers, cmp.Or(s.PasswordUsername, DefaultJWTPasswordMarker))
	} else {
		desc += ", token in the Authentication Data of method " + a.Method()
		b.res.markerMethods = append(b.res.markerMethods, a.Method())
	}
	if s.InsecureAllowHTTP {
		desc += ", http:// allowed (insecure)"
	}
	return a, desc, nil
}

// attributeSecret reads a v1beta1 attributes Secret: each key holds an
// authorizationAttributes mapping (YAML or JSON).
func (b *Broker) attributeSecret(name string, into map[string]AttributeEntry) error {
	data, err := b.cfg.readRef(name, true)
	if err != nil {
		return err
	}
	for _, d := range data {
		var m map[string]AttributeEntry
		if err := yaml.UnmarshalStrict(d, &m); err != nil {
			return fmt.Errorf("%w: Secret %s: %v", ErrSyntax, name, err)
		}
		for k, v := range m {
			into[k] = v
		}
	}
	return nil
}

func (b *Broker) scram(s *SCRAMSettings, ports *portSet) (auth.Authenticator, scramauth.Store, string, error) {
	var (
		store scramauth.Store
		n     int
	)
	if keys, ok := b.cfg.memory(s.UsersFile, true); ok {
		// Held in memory (the Kubernetes API): Apply replaces the users
		// when the Secret changes.
		u, sum, err := memoryUsers(keys)
		if err != nil {
			return nil, nil, "", fmt.Errorf("usersFile: %w", err)
		}
		ms := scramauth.NewMemoryStore(u)
		b.res.updates = append(b.res.updates, func(c *Config) error {
			keys, _ := c.memory(s.UsersFile, true)
			u, next, err := memoryUsers(keys)
			if err != nil || next == sum {
				return err
			}
			sum = next
			ms.Replace(u)
			return nil
		})
		b.res.watches = append(b.res.watches, auth.Watch{Name: "scram users " + s.UsersFile, Source: ms, Check: onPorts(ports, scramauth.CheckStore(ms))})
		store, n = ms, u.Len()
	} else {
		path, err := b.cfg.resolve(s.UsersFile, true)
		if err != nil {
			return nil, nil, "", fmt.Errorf("usersFile: %w", err)
		}
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			path = filepath.Join(path, usersKey) // the Secret's key
		}
		fs, err := scramauth.NewFileStore(scramauth.FileStoreConfig{Path: path, Logger: b.log, Observer: b.obs})
		if err != nil {
			return nil, nil, "", err
		}
		b.res.ready = append(b.res.ready, ReadyCheck{Name: "users " + s.UsersFile, Check: loaded(func() bool { return fs.Current() != nil })})
		b.res.onClose(func() { _ = fs.Close() })
		b.res.watches = append(b.res.watches, auth.Watch{Name: "scram users " + s.UsersFile, Source: fs, Check: onPorts(ports, scramauth.CheckStore(fs))})
		store, n = fs, fs.Current().Len()
	}
	cfg := scramauth.Config{Store: store}
	for _, m := range s.Mechanisms {
		cfg.Mechanisms = append(cfg.Mechanisms, scramauth.Mechanism(m))
	}
	if s.UnknownUserKeyFile != "" {
		var err error
		if cfg.UnknownUserKey, err = os.ReadFile(b.cfg.Path(s.UnknownUserKeyFile)); err != nil {
			return nil, nil, "", err
		}
	}
	a, err := scramauth.New(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	return a, store, fmt.Sprintf("SCRAM %s (%d users)", s.UsersFile, n), nil
}

// AuthConfig returns the configuration of the one auth.Manager of all the
// ports: the Broker as Authenticator and Authorizer, the session settings,
// and every watch. The Manager subscribes to the watches when it is built;
// close it before the Broker.
func (b *Broker) AuthConfig() auth.Config {
	cfg := auth.Config{
		Authenticator:       b,
		Authorizer:          b,
		Logger:              b.log,
		AllowIdentityChange: b.Session.AllowIdentityChange,
		Watches:             b.Watches(),
		Audit:               b.Audit,
	}
	if b.obs != nil {
		cfg.Observer = b.obs
	}
	if b.Session.OnExpiry == "close" {
		cfg.OnExpiry = auth.CloseOnExpiry
	}
	if b.Session.ExchangeTimeout != "" {
		cfg.ExchangeTimeout, _ = time.ParseDuration(b.Session.ExchangeTimeout) // checked by Load
	}
	if b.Session.ReauthInterval != "" {
		cfg.ReauthInterval, _ = time.ParseDuration(b.Session.ReauthInterval) // checked by Load
	}
	cfg.ReauthBurst = b.Session.ReauthBurst
	return cfg
}

// ReadyChecks returns a readiness check per source the Broker loaded (each
// truststore, policy file and SCRAM users file) and per ServiceAccountToken
// method (its broker identity's RBAC, see [Broker.CheckReady]), for the
// admin handler's
// /readyz:
//
//	for _, c := range b.ReadyChecks() {
//		checks = append(checks, admin.Check{Name: c.Name, Check: c.Check})
//	}
func (b *Broker) ReadyChecks() []ReadyCheck {
	out := slices.Clone(b.ready)
	for _, r := range b.gen.Load().resources() {
		out = append(out, r.ready...)
	}
	return out
}

// loaded makes a readiness check of a source's "has a current version".
func loaded(has func() bool) func(context.Context) error {
	return func(context.Context) error {
		if !has() {
			return ErrNotLoaded
		}
		return nil
	}
}

// adminSettings applies the defaults of MqttAuthSettings admin (checked by
// Load).
func adminSettings(a *Admin) (AdminListener, auth.AuditConfig) {
	l := AdminListener{Address: DefaultAdminAddress}
	var audit auth.AuditConfig
	if a == nil {
		return l, audit
	}
	if a.Address != nil {
		l.Address = *a.Address
		if l.Address == "off" {
			l.Address = ""
		}
	}
	l.Pprof = a.Pprof
	if au := a.Audit; au != nil {
		audit.Level, _ = parseLevel(au.Level)
		audit.DenyLevel, _ = parseLevel(au.DenyLevel)
		audit.SampleAllows = au.SampleAllows
	}
	return l, audit
}

// Throttle returns the brute-force defence, nil when it is disabled: its
// Len is the number of failure counters held.
func (b *Broker) Throttle() *throttle.Throttle {
	if th := b.throttle.Load(); th != nil {
		return th.t
	}
	return nil
}

// X509 returns the X509 authenticators built, one per BrokerAuthentication
// with an X509 method (their CachedChains, for metrics).
func (b *Broker) X509() []*x509auth.Authenticator {
	var out []*x509auth.Authenticator
	for _, r := range b.gen.Load().resources() {
		out = append(out, r.x509s...)
	}
	return out
}

// Revocation returns the revocation checkers built, one per X509 method
// with revocation settings (their Stats, for metrics).
func (b *Broker) Revocation() []*revocation.Checker {
	var out []*revocation.Checker
	for _, r := range b.gen.Load().resources() {
		out = append(out, r.revocs...)
	}
	return out
}

// ObserveMethods implements [auth.MethodsObserver]: a Manager does not
// label the Broker as one method. The methods of every port already report
// to Options.Observer, each under its own name (Build wraps them), so it
// returns the Broker itself, whatever o: pass Options.Observer to the
// Manager ([Broker.AuthConfig] does). A CONNECT the brute-force defence
// refuses reaches no method: it is counted by the Manager's connection
// events (CONNACK 0x9F).
func (b *Broker) ObserveMethods(auth.Observer) auth.Authenticator { return b }

// ErrUnknownListener is the error of a request from a listener the
// configuration has no port for.
var ErrUnknownListener = errors.New("aioconfig: no port is configured for this listener")

// Authenticate hands the request to the chain of its port, through the
// brute-force defence unless it is disabled (an address or identity over
// its limit gets 0x9F); a request from an unknown listener fails (0x87).
func (b *Broker) Authenticate(ctx context.Context, req *auth.Request) auth.Result {
	if th := b.throttle.Load(); th != nil && th.t != nil {
		return th.t.Authenticate(ctx, req)
	}
	return b.authenticate(ctx, req)
}

// authenticate is the dispatch to the port's chain, behind the throttle.
func (b *Broker) authenticate(ctx context.Context, req *auth.Request) auth.Result {
	p := b.Port(req.Listener)
	if p == nil {
		return auth.FailResult(auth.NotAuthorized, fmt.Errorf("%w: %q", ErrUnknownListener, req.Listener))
	}
	return p.Authenticator.Authenticate(ctx, req)
}

// Authorize asks the policy of the port the principal connected through;
// a principal of an unknown listener is denied.
func (b *Broker) Authorize(ctx context.Context, pr *auth.Principal, a auth.Action) auth.Decision {
	if pr == nil {
		return auth.Deny
	}
	p := b.Port(pr.Listener())
	if p == nil {
		return auth.Deny
	}
	d := p.Authorizer.Authorize(ctx, pr, a)
	d.Policy = p.policyName
	return d
}

// NewSessionAuthorizer implements [auth.SessionAuthorizer], so that every
// Session keeps the decision cache of its own port's policy: the returned
// Authorizer picks the port of the principal's listener on its first
// decision (a session connects through one port) and, when that port's
// policy keeps per-session state ([auth.SessionAuthorizer], as abac's
// policies do), asks it for the session's own. Later decisions cost an
// atomic load and a string comparison more than the policy's.
func (b *Broker) NewSessionAuthorizer() auth.Authorizer { return &portSession{b: b} }

// portSession is one Session's authorizer: its port's policy, or that
// policy's per-session authorizer, chosen on first use and again after
// Apply put another generation of ports in force.
type portSession struct {
	b   *Broker
	cur atomic.Pointer[portChoice]
}

type portChoice struct {
	listener string
	gen      *generation
	authz    auth.Authorizer
	policy   string // the port's policyName
}

// Authorize asks the policy of the principal's port.
func (s *portSession) Authorize(ctx context.Context, pr *auth.Principal, a auth.Action) auth.Decision {
	if pr == nil {
		return auth.Deny
	}
	c := s.cur.Load()
	if g := s.b.gen.Load(); c == nil || c.gen != g || c.listener != pr.Listener() {
		p := g.port(pr.Listener())
		if p == nil {
			return auth.Deny
		}
		if c != nil && c.gen != g && c.listener == pr.Listener() && c.policy == p.policyName && c.authz != nil && sameAuthz(c, p) {
			// Same policy source in the new generation: keep the cache.
			c = &portChoice{listener: c.listener, gen: g, authz: c.authz, policy: c.policy}
		} else {
			c = &portChoice{listener: pr.Listener(), gen: g, authz: p.Authorizer, policy: p.policyName}
			if sa, ok := p.Authorizer.(auth.SessionAuthorizer); ok {
				if own := sa.NewSessionAuthorizer(); own != nil {
					c.authz = own
				}
			}
		}
		s.cur.Store(c)
	}
	d := c.authz.Authorize(ctx, pr, a)
	d.Policy = c.policy
	return d
}

// sameAuthz reports whether the port of c in its generation had the same
// policy source as p.
func sameAuthz(c *portChoice, p *Port) bool {
	old := c.gen.port(c.listener)
	return old != nil && old.authz == p.authz
}

// Reset drops what the port's per-session authorizer remembers (the
// Session calls it after re-authentication and re-checks).
func (s *portSession) Reset() {
	if c := s.cur.Load(); c != nil {
		if r, ok := c.authz.(interface{ Reset() }); ok {
			r.Reset()
		}
	}
}

func (b *Broker) onClose(f func()) { b.closers = append(b.closers, f) }

// Close stops the watchers, last started first. Close the Manager first.
func (b *Broker) Close() {
	closers := b.closers
	b.closers = nil
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
}
