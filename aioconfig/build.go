package aioconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	// Ports are the ports in the order the listeners give them.
	Ports []*Port
	// Session are the session settings of MqttAuthSettings.
	Session Session
	// Limits are the pre-authentication limits of MqttAuthSettings, nil
	// when it has none (the adapter's or gateway's defaults apply).
	Limits *Limits
	// Admin is the admin listener of MqttAuthSettings admin, defaults
	// applied: an empty Address means off.
	Admin AdminListener

	cfg     *Config
	log     *slog.Logger
	obs     auth.Observer // nil when none
	audit   auth.AuditConfig
	byName  map[string]*Port
	ready   []ReadyCheck
	x509s   []*x509auth.Authenticator
	revocs  []*revocation.Checker
	watches []auth.Watch
	startup []startupCheck // CheckReady
	closers []func()

	throttle     *throttle.Throttle // nil when disabled
	throttleDesc string
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
// nil once the source has loaded. A source that loaded once keeps its last
// good version on a failed reload and stays ready.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// ErrNotLoaded is the error of a readiness check whose source has never
// loaded.
var ErrNotLoaded = errors.New("aioconfig: not loaded")

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
	// Authorizer is the port's policy: an *abac.Policy, an *abac.Watcher
	// (authorizationFile), or auth.AllowAuthenticated without
	// authorizationRef.
	Authorizer auth.Authorizer
	// Spec is the port as configured.
	Spec PortSpec
	// Listener is the BrokerListener's name.
	Listener string

	methods []string // for Describe
	policy  string
}

// built caches what one BrokerAuthentication builds, shared by the ports
// that name it.
type builtAuthn struct {
	chain   auth.Chain
	x509    *x509auth.Authenticator
	methods []string
	ports   map[string]bool
}

// Build validates c and builds its ports. Every reloadable source it makes
// (truststores and CRLs, policy files, SCRAM users files) is a watch of
// [Broker.AuthConfig]. Close the Broker to stop them.
func Build(ctx context.Context, c *Config, opts Options) (_ *Broker, err error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b := &Broker{cfg: c, log: opts.Logger, obs: opts.Observer, byName: map[string]*Port{}, Session: c.Settings.Session, Limits: c.Settings.Limits}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.Admin, b.audit = adminSettings(c.Settings.Admin)
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	authns := map[string]*builtAuthn{}
	authzs := map[string]auth.Authorizer{}
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
			ba := authns[ps.AuthenticationRef]
			if ba == nil {
				if ba, err = b.authentication(ctx, c.authentication(ps.AuthenticationRef)); err != nil {
					return nil, err
				}
				authns[ps.AuthenticationRef] = ba
			}
			ba.ports[p.Name] = true
			p.Authenticator, p.methods = ba.chain, ba.methods
			if ps.TLS != nil {
				if p.TLS, err = b.serverTLS(ps.TLS.Manual); err != nil {
					return nil, d.err(at+".tls.manual", "", err, "")
				}
				if ba.x509 != nil {
					p.TLS = ba.x509.ServerTLSConfig(p.TLS)
				}
			}
			key := ps.AuthorizationRef
			switch {
			case ps.AuthorizationFile != "":
				key = "file:" + c.Path(ps.AuthorizationFile)
				p.policy = "authorizationFile " + ps.AuthorizationFile + " (watched)"
			case key != "":
				p.policy = fmt.Sprintf("BrokerAuthorization %s (%d rules)", key, c.authorization(key).Rules)
			default:
				key = "allow"
				p.policy = "none: every authenticated client may do everything (no authorizationRef)"
			}
			if authzs[key] == nil {
				switch {
				case ps.AuthorizationFile != "":
					w, err := abac.NewWatcher(abac.WatchConfig{Path: c.Path(ps.AuthorizationFile), Logger: b.log, Observer: b.obs})
					if err != nil {
						return nil, d.err(at+".authorizationFile", ps.AuthorizationFile, err, "")
					}
					b.ready = append(b.ready, ReadyCheck{Name: "policy " + ps.AuthorizationFile, Check: loaded(func() bool { return w.Current() != nil })})
					b.onClose(func() { _ = w.Close() })
					authzs[key] = w
					authzPorts[key] = map[string]bool{}
					b.watches = append(b.watches, auth.Watch{Name: "abac policy " + ps.AuthorizationFile, Source: w, Check: onPorts(authzPorts[key], auth.CheckConnect(w))})
				case ps.AuthorizationRef != "":
					pol, err := abac.Parse(c.authorization(key).Policy)
					if err != nil {
						return nil, fmt.Errorf("aioconfig: BrokerAuthorization %q: %w", key, err)
					}
					authzs[key] = pol
				default:
					authzs[key] = auth.AllowAuthenticated
				}
			}
			if authzPorts[key] != nil {
				authzPorts[key][p.Name] = true
			}
			p.Authorizer = authzs[key]
			b.Ports = append(b.Ports, p)
			b.byName[p.Name] = p
		}
	}
	if err := b.buildThrottle(c.Settings.Throttle); err != nil {
		d := docRef{source: "MqttAuthSettings", kind: KindSettings}
		return nil, d.err("spec.throttle", "", err, "")
	}
	return b, nil
}

// buildThrottle puts the brute-force defence in front of every port's
// chain: on with throttle's defaults unless s says disabled.
func (b *Broker) buildThrottle(s *Throttle) error {
	if s == nil {
		s = &Throttle{}
	}
	if s.Disabled {
		b.throttleDesc = "off (disabled)"
		return nil
	}
	cfg := throttle.Config{
		DisableAddress: s.DisableAddress, DisableIdentity: s.DisableIdentity,
		IPv4Prefix: s.IPv4Prefix, IPv6Prefix: s.IPv6Prefix, MaxEntries: s.MaxEntries,
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
	b.throttle = t
	describe := func(l throttle.Limit, off bool) string {
		if off {
			return "off"
		}
		return fmt.Sprintf("%d failures in a row, then one per %s", cmpOrInt(l.Burst, throttle.DefaultBurst), cmpOrDur(l.Every, throttle.DefaultEvery))
	}
	b.throttleDesc = fmt.Sprintf("per address (/%d IPv4, /%d IPv6) %s; per identity %s; at most %d counters; CONNACK 0x9F when over",
		cmpOrInt(s.IPv4Prefix, throttle.DefaultIPv4Prefix), cmpOrInt(s.IPv6Prefix, throttle.DefaultIPv6Prefix),
		describe(cfg.Address, s.DisableAddress), describe(cfg.Identity, s.DisableIdentity), cmpOrInt(s.MaxEntries, throttle.DefaultMaxEntries))
	return nil
}

func cmpOrInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func cmpOrDur(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// onPorts limits a re-check to the sessions of the given ports: a change
// of one port's truststore or policy leaves the other ports' sessions
// alone.
func onPorts(ports map[string]bool, check auth.CheckFunc) auth.CheckFunc {
	return func(ctx context.Context, s *auth.Session) error {
		if p := s.Principal(); p == nil || !ports[p.Listener()] {
			return nil
		}
		return check(ctx, s)
	}
}

func (b *Broker) serverTLS(m *ManualTLS) (*tls.Config, error) {
	certFile, keyFile := b.cfg.Path(m.CertFile), b.cfg.Path(m.KeyFile)
	if m.SecretRef != "" {
		var err error
		if certFile, err = b.cfg.resolveKey(m.SecretRef, "tls.crt", true); err != nil {
			return nil, err
		}
		if keyFile, err = b.cfg.resolveKey(m.SecretRef, "tls.key", true); err != nil {
			return nil, err
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: server certificate: %w", ErrInvalidValue, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func (b *Broker) authentication(ctx context.Context, a *Authentication) (*builtAuthn, error) {
	ba := &builtAuthn{ports: map[string]bool{}}
	onlyX509 := len(a.Methods) == 1 && a.Methods[0].Method == MethodX509
	for i, m := range a.Methods {
		var (
			x   auth.Authenticator
			err error
		)
		desc := m.Method
		switch m.Method {
		case MethodCustom:
			x, desc, err = b.custom(m.Custom)
		case MethodSAT:
			x, desc, err = b.sat(ctx, m.SAT, ba.ports, fmt.Sprintf("%s method %d", a.Name, i+1))
		case MethodX509:
			if ba.x509 != nil {
				err = errors.New("one X509 method per BrokerAuthentication")
				break
			}
			ba.x509, desc, err = b.x509(m.X509, !onlyX509, ba.ports)
			x = ba.x509
		case MethodSCRAM:
			x, desc, err = b.scram(m.SCRAM, ba.ports)
		case MethodJWT:
			x, desc, err = b.jwt(m.JWT)
		}
		if err != nil {
			d := docRef{source: a.Source, kind: KindAuthentication, name: a.Name}
			return nil, d.err(fmt.Sprintf("spec.authenticationMethods[%d].%s", i, settingsField(m.Method, a.API)), "", err, "")
		}
		ba.chain = append(ba.chain, x)
		ba.methods = append(ba.methods, desc)
	}
	if b.obs != nil {
		ba.chain = auth.ObserveMethods(ba.chain, b.obs).(auth.Chain)
	}
	return ba, nil
}

func (b *Broker) custom(s *CustomSettings) (auth.Authenticator, string, error) {
	cfg := customauth.Config{Endpoint: s.Endpoint, Logger: b.log, Observer: b.obs}
	desc := "Custom " + s.Endpoint
	if ca := cmpOr(cmpOr(s.CACert, s.CACertConfigMap), s.CACertFile); ca != "" {
		path, err := b.cfg.resolve(ca, false)
		if err != nil {
			return nil, "", err
		}
		pool, err := pemPool(path)
		if err != nil {
			return nil, "", err
		}
		cfg.RootCAs = pool
		desc += ", server CA " + ca
	}
	if s.Auth != nil && s.Auth.X509 != nil {
		x := s.Auth.X509
		certFile, keyFile := b.cfg.Path(x.CertFile), b.cfg.Path(x.KeyFile)
		if ref := cmpOr(x.SecretRef, x.SecretName); ref != "" {
			var err error
			if certFile, err = b.cfg.resolveKey(ref, "tls.crt", true); err != nil {
				return nil, "", err
			}
			if keyFile, err = b.cfg.resolveKey(ref, "tls.key", true); err != nil {
				return nil, "", err
			}
		}
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
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
	b.onClose(a.CloseIdleConnections)
	return a, desc, nil
}

// pemPool reads the PEM certificates of a file, or of every file of a
// directory (a mounted ConfigMap; dot files skipped).
func pemPool(path string) (*x509.CertPool, error) {
	files := []string{path}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		files = files[:0]
		for _, e := range entries {
			if e.Name()[0] != '.' {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	pool := x509.NewCertPool()
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if pool.AppendCertsFromPEM(data) {
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrInvalidValue, path)
	}
	return pool, nil
}

func (b *Broker) sat(ctx context.Context, s *SATSettings, ports map[string]bool, where string) (auth.Authenticator, string, error) {
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
	cfg.CacheTTL, _ = time.ParseDuration(cmpOr(s.CacheTTL, "0s"))         // checked by Load
	cfg.AttributeTTL, _ = time.ParseDuration(cmpOr(s.AttributeTTL, "0s")) // checked by Load
	if s.Mode == "local" {
		cfg.Mode = satauth.ModeLocal
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	a, err := satauth.New(ctx, cfg)
	if err != nil {
		return nil, "", err
	}
	b.onClose(a.Close)
	name := "serviceAccountToken (BrokerAuthentication " + where + ")"
	if a.Following() {
		// The Manager subscribes to the follower; its Close stops it.
		w := a.Watch(0)
		w.Name = "kubernetes serviceaccounts and pods of " + name
		w.Check = onPorts(ports, w.Check)
		b.watches = append(b.watches, w)
	}
	startup, ready := satReady(name, a)
	b.startup = append(b.startup, startup)
	b.ready = append(b.ready, ready)
	desc := fmt.Sprintf("ServiceAccountToken audiences %v, %s, cacheTTL %s, attributeTTL %s, watch %s",
		s.Audiences, cmpOr(s.Mode, "tokenReview"), cmpOr(s.CacheTTL, "5m"), cmpOr(s.AttributeTTL, "1m"), onOff(a.Following()))
	return a, desc, nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

func (b *Broker) x509(s *X509Settings, optional bool, ports map[string]bool) (*x509auth.Authenticator, string, error) {
	ca, err := b.cfg.resolve(s.TrustedClientCaCert, false)
	if err != nil {
		return nil, "", fmt.Errorf("trustedClientCaCert: %w", err)
	}
	crls := make([]string, len(s.CRLs))
	for i, p := range s.CRLs {
		if crls[i], err = b.cfg.resolve(p, false); err != nil {
			return nil, "", fmt.Errorf("crls[%d]: %w", i, err)
		}
	}
	store, err := truststore.New(truststore.Config{CAPaths: []string{ca}, CRLPaths: crls, Logger: b.log, Observer: b.obs})
	if err != nil {
		return nil, "", err
	}
	b.ready = append(b.ready, ReadyCheck{Name: "truststore " + s.TrustedClientCaCert, Check: loaded(func() bool { return store.Current() != nil })})
	b.onClose(func() { _ = store.Close() })
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
		if rc, err = b.revocation(s.Revocation); err != nil {
			return nil, "", fmt.Errorf("revocation: %w", err)
		}
		xcfg.Revocation = rc // only when set: a nil *Checker in the interface would be called
	}
	a, err := x509auth.New(xcfg)
	if err != nil {
		return nil, "", err
	}
	b.x509s = append(b.x509s, a)
	if rc != nil {
		b.revocs = append(b.revocs, rc)
	}
	w := a.Watch(store)
	w.Name = "truststore " + s.TrustedClientCaCert
	w.Check = onPorts(ports, w.Check)
	b.watches = append(b.watches, w)
	if rc != nil {
		rw := rc.Watch(onPorts(ports, a.Check), 0)
		rw.Name = "revocation (" + revocationSources(s.Revocation) + ") of certificates trusted by " + s.TrustedClientCaCert
		b.watches = append(b.watches, rw)
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
		desc += fmt.Sprintf(", revocation %s %s", cmpOr(r.Mode, RevocationHardFail), revocationSources(r))
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
		*d.dst, _ = time.ParseDuration(cmpOr(d.v, "0s"))
	}
	if s.Wait != "" && cfg.Wait == 0 {
		cfg.Wait = -1
	}
	rc, err := revocation.New(cfg)
	if err != nil {
		return nil, err
	}
	b.onClose(func() { _ = rc.Close() })
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
func (b *Broker) jwt(s *JWTSettings) (auth.Authenticator, string, error) {
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
		*d.dst, _ = time.ParseDuration(cmpOr(d.v, "0s"))
	}
	if s.Leeway != "" && cfg.Leeway == 0 {
		cfg.Leeway = -1
	}
	desc := fmt.Sprintf("JWT issuer %s, audiences %v", s.Issuer, s.Audiences)
	if ca := cmpOr(s.CACert, s.CACertFile); ca != "" {
		path, err := b.cfg.resolve(ca, false)
		if err != nil {
			return nil, "", fmt.Errorf("caCert: %w", err)
		}
		pool, err := pemPool(path)
		if err != nil {
			return nil, "", fmt.Errorf("caCert: %w", err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		cfg.HTTPClient = &http.Client{Transport: tr, Timeout: cmpOrDur(cfg.RequestTimeout, jwtauth.DefaultRequestTimeout)}
		b.onClose(tr.CloseIdleConnections)
		desc += ", issuer CA " + ca
	}
	a, err := jwtauth.New(cfg)
	if err != nil {
		return nil, "", err
	}
	b.onClose(a.Close)
	if cfg.TokenFrom == jwtauth.FromPassword {
		desc += ", token in the password"
		if s.PasswordUsername != "" {
			desc += " of user name " + s.PasswordUsername
		}
	} else {
		desc += ", token in the Authentication Data of method " + a.Method()
	}
	if s.InsecureAllowHTTP {
		desc += ", http:// allowed (insecure)"
	}
	return a, desc, nil
}

// attributeSecret reads a v1beta1 attributes Secret: each key holds an
// authorizationAttributes mapping (YAML or JSON).
func (b *Broker) attributeSecret(name string, into map[string]AttributeEntry) error {
	dir, err := b.cfg.resolve(name, true)
	if err != nil {
		return err
	}
	files := []string{dir}
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		files = files[:0]
		for _, e := range entries {
			if e.Name()[0] != '.' && !e.IsDir() {
				files = append(files, filepath.Join(dir, e.Name()))
			}
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var m map[string]AttributeEntry
		if err := yaml.UnmarshalStrict(data, &m); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrSyntax, f, err)
		}
		for k, v := range m {
			into[k] = v
		}
	}
	return nil
}

func (b *Broker) scram(s *SCRAMSettings, ports map[string]bool) (auth.Authenticator, string, error) {
	path, err := b.cfg.resolve(s.UsersFile, true)
	if err != nil {
		return nil, "", fmt.Errorf("usersFile: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "users.json") // the Secret's key
	}
	store, err := scramauth.NewFileStore(scramauth.FileStoreConfig{Path: path, Logger: b.log, Observer: b.obs})
	if err != nil {
		return nil, "", err
	}
	b.ready = append(b.ready, ReadyCheck{Name: "users " + s.UsersFile, Check: loaded(func() bool { return store.Current() != nil })})
	b.onClose(func() { _ = store.Close() })
	b.watches = append(b.watches, auth.Watch{Name: "scram users " + s.UsersFile, Source: store, Check: onPorts(ports, scramauth.CheckStore(store))})
	cfg := scramauth.Config{Store: store}
	for _, m := range s.Mechanisms {
		cfg.Mechanisms = append(cfg.Mechanisms, scramauth.Mechanism(m))
	}
	if s.UnknownUserKeyFile != "" {
		if cfg.UnknownUserKey, err = os.ReadFile(b.cfg.Path(s.UnknownUserKeyFile)); err != nil {
			return nil, "", err
		}
	}
	a, err := scramauth.New(cfg)
	if err != nil {
		return nil, "", err
	}
	return a, fmt.Sprintf("SCRAM %s (%d users)", s.UsersFile, store.Current().Len()), nil
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
		Watches:             slices.Clone(b.watches),
		Audit:               b.audit,
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
func (b *Broker) ReadyChecks() []ReadyCheck { return slices.Clone(b.ready) }

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
func (b *Broker) Throttle() *throttle.Throttle { return b.throttle }

// X509 returns the X509 authenticators built, one per BrokerAuthentication
// with an X509 method (their CachedChains, for metrics).
func (b *Broker) X509() []*x509auth.Authenticator { return slices.Clone(b.x509s) }

// Revocation returns the revocation checkers built, one per X509 method
// with revocation settings (their Stats, for metrics).
func (b *Broker) Revocation() []*revocation.Checker { return slices.Clone(b.revocs) }

// ObserveMethods implements [auth.MethodsObserver]: a Manager does not
// label the Broker as one method. The methods of every port already report
// to Options.Observer, each under its own name (Build wraps them), so it
// returns the Broker itself, whatever o: pass Options.Observer to the
// Manager ([Broker.AuthConfig] does). A CONNECT the brute-force defence
// refuses reaches no method: it is counted by the Manager's connection
// events (CONNACK 0x9F).
func (b *Broker) ObserveMethods(auth.Observer) auth.Authenticator { return b }

// Watches returns the watches of the reloadable sources the Broker built.
func (b *Broker) Watches() []auth.Watch { return slices.Clone(b.watches) }

// Port returns the port of a listener name (auth.Request.Listener). With a
// single port, the empty name is that port, for brokers that name no
// listener.
func (b *Broker) Port(listener string) *Port {
	if p, ok := b.byName[listener]; ok {
		return p
	}
	if listener == "" && len(b.Ports) == 1 {
		return b.Ports[0]
	}
	return nil
}

// ErrUnknownListener is the error of a request from a listener the
// configuration has no port for.
var ErrUnknownListener = errors.New("aioconfig: no port is configured for this listener")

// Authenticate hands the request to the chain of its port, through the
// brute-force defence unless it is disabled (an address or identity over
// its limit gets 0x9F); a request from an unknown listener fails (0x87).
func (b *Broker) Authenticate(ctx context.Context, req *auth.Request) auth.Result {
	if b.throttle != nil {
		return b.throttle.Authenticate(ctx, req)
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
	return p.Authorizer.Authorize(ctx, pr, a)
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
// policy's per-session authorizer, chosen on first use.
type portSession struct {
	b   *Broker
	cur atomic.Pointer[portChoice]
}

type portChoice struct {
	listener string
	authz    auth.Authorizer
}

// Authorize asks the policy of the principal's port.
func (s *portSession) Authorize(ctx context.Context, pr *auth.Principal, a auth.Action) auth.Decision {
	if pr == nil {
		return auth.Deny
	}
	c := s.cur.Load()
	if c == nil || c.listener != pr.Listener() {
		p := s.b.Port(pr.Listener())
		if p == nil {
			return auth.Deny
		}
		c = &portChoice{listener: pr.Listener(), authz: p.Authorizer}
		if sa, ok := p.Authorizer.(auth.SessionAuthorizer); ok {
			if own := sa.NewSessionAuthorizer(); own != nil {
				c.authz = own
			}
		}
		s.cur.Store(c)
	}
	return c.authz.Authorize(ctx, pr, a)
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
