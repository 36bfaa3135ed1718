package aioconfig

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/customauth"
	"github.com/mqttauth/mqttauth/revocation"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/scramauth"
	"github.com/mqttauth/mqttauth/x509auth"
)

// Live reconfiguration: a Broker runs one generation of ports at a time,
// and Apply swaps in the next one. What did not change is carried over
// (the sources of an unchanged BrokerAuthentication, the policy source of
// an unchanged key), so that sessions and caches of unrelated ports are
// not touched.

// Errors of a live re-check, in the chain of the DISCONNECT's error.
var (
	// ErrPortRemoved: the session's port is no longer configured
	// (DISCONNECT 0x8B, Server shutting down).
	ErrPortRemoved = errors.New("aioconfig: the port was removed from the configuration")
	// ErrMethodRemoved: the port no longer offers the method that
	// authenticated the session (DISCONNECT 0x8C, Bad authentication
	// method; 0x87 for X.509, which names no MQTT method).
	ErrMethodRemoved = errors.New("aioconfig: the port no longer offers the session's authentication method")
)

// resources are what one BrokerAuthentication or policy source built:
// closed when no port uses it any more.
type resources struct {
	closers       []func()
	watches       []auth.Watch
	ready         []ReadyCheck
	startup       []startupCheck
	x509s         []*x509auth.Authenticator
	revocs        []*revocation.Checker
	markers       []string
	markerMethods []string
	// updates give in-memory sources (the Kubernetes API's ConfigMaps
	// and Secrets) the data of a new Config, in place.
	updates []func(*Config) error
}

func (r *resources) onClose(f func()) { r.closers = append(r.closers, f) }

// close runs the closers, last first.
func (r *resources) close() {
	closers := r.closers
	r.closers = nil
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
}

// portSet is the set of port names a source serves, read by the re-checks
// of its watch while Apply replaces it.
type portSet struct {
	m atomic.Pointer[map[string]bool]
}

func (s *portSet) has(name string) bool {
	m := s.m.Load()
	return m != nil && (*m)[name]
}

func (s *portSet) set(names map[string]bool) { s.m.Store(&names) }

// builtAuthn is what one BrokerAuthentication builds, shared by the ports
// that name it and carried over to the next generation while its key
// (methods and read-once data) is unchanged.
type builtAuthn struct {
	name, key string
	chain     auth.Chain
	x509      *x509auth.Authenticator
	methods   []string      // for Describe
	owners    []methodOwner // per method, for the live re-check
	ports     *portSet
	res       resources
	fresh     bool     // built by the generation being built
	stops     []func() // the configuration watch's subscriptions (built by Apply)
}

// builtAuthz is a port's policy source: a BrokerAuthorization (swapped in
// place when its rules change), a watched authorizationFile, or allow.
type builtAuthz struct {
	key    string
	authz  auth.Authorizer
	live   *livePolicy // a BrokerAuthorization
	policy []byte      // its rules as configured
	ports  *portSet
	res    resources
	fresh  bool
	stops  []func()
}

// policySwap is a changed BrokerAuthorization of a carried-over source.
type policySwap struct {
	bz    *builtAuthz
	pol   *abac.Policy
	src   []byte
	rules int
}

// methodOwner tells which principals a method of a chain authenticated
// and how to re-check them against its sources.
type methodOwner struct {
	kind  string   // MethodX509, ...
	names []string // principal methods it gives
	check auth.CheckFunc
}

// owns reports whether o gave p (Custom takes what no other kind
// claims: a custom server names its own methods).
func (o methodOwner) owns(p *auth.Principal, all []methodOwner) bool {
	m := p.Method()
	if o.kind != MethodCustom {
		return slices.Contains(o.names, m)
	}
	if m == customauth.DefaultMethodName {
		return true
	}
	if m == x509auth.Method || m == satauth.Method || scramauth.Mechanism(m).Valid() {
		return false
	}
	for _, x := range all {
		if x.kind == MethodJWT && slices.Contains(x.names, m) {
			return false
		}
	}
	return true
}

// generation is one version of the ports in force.
type generation struct {
	cfg        *Config
	ports      []*Port
	byName     map[string]*Port
	authns     map[string]*builtAuthn // by BrokerAuthentication name
	authzs     map[string]*builtAuthz // by policy key
	authnPorts map[string]map[string]bool
	authzPorts map[string]map[string]bool
	swaps      []policySwap
}

func (g *generation) port(listener string) *Port {
	if g == nil {
		return nil
	}
	if p, ok := g.byName[listener]; ok {
		return p
	}
	if listener == "" && len(g.ports) == 1 {
		return g.ports[0]
	}
	return nil
}

func (g *generation) authn(name string) *builtAuthn {
	if g == nil {
		return nil
	}
	return g.authns[name]
}

func (g *generation) authz(key string) *builtAuthz {
	if g == nil {
		return nil
	}
	return g.authzs[key]
}

// resources lists the resources of the generation's sources, in port
// order.
func (g *generation) resources() []*resources {
	var out []*resources
	seen := map[any]bool{}
	for _, p := range g.ports {
		if !seen[p.authn] {
			seen[p.authn] = true
			out = append(out, &p.authn.res)
		}
		if !seen[p.authz] {
			seen[p.authz] = true
			out = append(out, &p.authz.res)
		}
	}
	return out
}

// markers are the user names and methods of the generation's methods
// that the brute-force defence must not count as identities.
func (g *generation) markers() (names, methods []string) {
	for _, r := range g.resources() {
		names = append(names, r.markers...)
		methods = append(methods, r.markerMethods...)
	}
	slices.Sort(names)
	slices.Sort(methods)
	return slices.Compact(names), slices.Compact(methods)
}

// retireNew closes what a failed build made (not what it reused).
func (g *generation) retireNew(prev *generation) {
	for _, ba := range g.authns {
		if ba.fresh && prev.authn(ba.name) != ba {
			ba.res.close()
		}
	}
	for _, bz := range g.authzs {
		if bz.fresh && prev.authz(bz.key) != bz {
			bz.res.close()
		}
	}
}

// Port returns the port in force of a listener name (auth.Request.Listener).
// With a single port, the empty name is that port, for brokers that name
// no listener.
func (b *Broker) Port(listener string) *Port { return b.gen.Load().port(listener) }

// CurrentPorts returns the ports in force: Ports until the first
// [Broker.Apply] that changes them.
func (b *Broker) CurrentPorts() []*Port { return slices.Clone(b.gen.Load().ports) }

// Notify calls fn after each [Broker.Apply] that changed the ports (one
// added, removed, or changed in address, TLS, chain or policy), on the
// goroutine of Apply: a program serving the ports compares
// [Broker.CurrentPorts] with what it serves, opens the new ports and shuts
// the removed ones down. The returned function stops the calls.
func (b *Broker) Notify(fn func()) (cancel func()) { return b.portsSig.Notify(fn) }

// TLS returns the server TLS configuration to serve the port named port
// with: it takes the port's TLS in force at each handshake
// (GetConfigForClient), so that a new server certificate, or client
// certificate verification added or removed by a change of the port's
// BrokerAuthentication, applies to new connections at once. A handshake
// on a port that is gone or has no TLS any more fails. It returns nil
// when the port has no TLS now.
func (b *Broker) TLS(port string) *tls.Config {
	if p := b.Port(port); p == nil || p.TLS == nil {
		return nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			p := b.Port(port)
			if p == nil || p.TLS == nil {
				return nil, fmt.Errorf("%w: %s serves no TLS any more", ErrPortRemoved, port)
			}
			return p.TLS, nil
		},
	}
}

// Watches returns the watches of the reloadable sources the Broker built
// (those of the configuration Build was given) and the configuration watch
// (see [Broker.Apply]).
func (b *Broker) Watches() []auth.Watch {
	var out []auth.Watch
	for _, r := range b.first.resources() {
		out = append(out, r.watches...)
	}
	return append(out, auth.Watch{Name: ConfigurationWatch, Source: &b.changed, Check: b.recheck})
}

// ConfigurationWatch names the watch of [Broker.Watches] that re-checks
// live sessions after [Broker.Apply].
const ConfigurationWatch = "configuration"

// Changes says what [Broker.Apply] changed.
type Changes struct {
	// Ports added, removed, and changed (address, TLS, chain or policy),
	// by name.
	Added, Removed, Changed []string
	// Authentications are the BrokerAuthentications rebuilt (their
	// methods or the data they read once changed).
	Authentications []string
	// Policies are the BrokerAuthorizations whose rules were swapped.
	Policies []string
	// RestartRequired names what changed and applies only at the next
	// start: the MqttAuthSettings document (admin listener, session
	// settings, limits, throttle).
	RestartRequired []string
}

// Any reports whether anything changed.
func (c Changes) Any() bool {
	return len(c.Added)+len(c.Removed)+len(c.Changed)+len(c.Authentications)+len(c.Policies) > 0
}

// Apply puts c in force in place of the configuration the Broker runs,
// the one reload path of every source (files and the Kubernetes API):
//
//   - c is validated and built first; an invalid c (or one whose build
//     fails: a missing file, a bad certificate) changes nothing and is
//     returned as the error: the last good configuration stays.
//   - A BrokerAuthentication whose methods (and, from the Kubernetes API,
//     the data its build reads once: a custom server's CA and client
//     certificate, attribute Secrets, a JWT issuer's CA) are unchanged
//     keeps its sources; its in-memory truststore and SCRAM users are
//     updated in place. A changed one is rebuilt and its old sources
//     closed once no port uses them.
//   - A changed BrokerAuthorization is swapped in place (its watch
//     re-checks Connect on its ports); a port's other changes take
//     effect for new connections at once: [Broker.Port] and the TLS of
//     [Broker.TLS] read the new generation.
//   - Then the configuration watch ([Broker.Watches], named
//     ConfigurationWatch) fires and the Manager re-checks every live
//     session with one rule: a session keeps its connection when its
//     port still exists (else DISCONNECT 0x8B), the port still offers the
//     method that authenticated it (else 0x8C, or 0x87 for X.509), that
//     method's sources still take it (the X.509 trust and revocation, the
//     SCRAM user, the service account; for a session with a client
//     certificate, the port's X.509 trust whatever the method, as the
//     listener would now refuse the certificate), and the port's policy
//     still allows Connect (else 0x87). Credentials are not kept (nothing
//     secret is), so a custom or JWT session is not re-verified: it
//     keeps its connection until its expiry or re-authentication, which
//     the new chain judges. A change that does not touch a session's
//     port, method or policy never disconnects it.
//   - The Notify subscribers are told when the ports changed.
//
// MqttAuthSettings changes are reported in Changes.RestartRequired and
// not applied. Apply is safe for concurrent use (one runs at a time).
func (b *Broker) Apply(ctx context.Context, c *Config) (Changes, error) {
	var ch Changes
	if err := c.Validate(); err != nil {
		return ch, err
	}
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	prev := b.gen.Load()
	g, err := b.build(ctx, c, prev)
	if err != nil {
		return ch, err
	}
	if s := settingsDigest(c); !bytes.Equal(s, b.settings) {
		ch.RestartRequired = append(ch.RestartRequired, KindSettings)
	}
	// Carried-over sources held in memory follow the new data.
	for name, ba := range g.authns {
		if ba.fresh {
			ch.Authentications = append(ch.Authentications, name)
			continue
		}
		for _, up := range ba.res.updates {
			if err := up(c); err != nil {
				b.log.LogAttrs(ctx, slog.LevelError, "aioconfig: updating a source in memory failed; keeping its last good content",
					slog.String("kind", KindAuthentication), slog.String("name", name), slog.Any("err", err))
			}
		}
	}
	slices.Sort(ch.Authentications)
	for name, ba := range g.authns {
		ba.ports.set(g.authnPorts[name])
	}
	for key, bz := range g.authzs {
		bz.ports.set(g.authzPorts[key])
	}
	b.gen.Store(g)
	for _, sw := range g.swaps {
		sw.bz.policy = sw.src
		sw.bz.live.set(sw.pol)
		ch.Policies = append(ch.Policies, sw.bz.key)
		b.log.LogAttrs(ctx, slog.LevelInfo, "aioconfig: BrokerAuthorization applied", slog.String("name", sw.bz.key), slog.Int("rules", sw.rules))
	}
	g.swaps = nil
	// The configuration watch follows the sources built now (the
	// Manager subscribed to Build's own); a subscription also starts a
	// source that waits for one (satauth's follower).
	for _, ba := range g.authns {
		if ba.fresh {
			ba.fresh = false
			ba.stops = b.follow(ba.res.watches)
		}
	}
	for _, bz := range g.authzs {
		if bz.fresh {
			bz.fresh = false
			bz.stops = b.follow(bz.res.watches)
		}
	}
	b.retire(prev, g)
	// A method added or removed changes which user names are no
	// identity (a JWT password marker, a SAT method): the defence is
	// rebuilt with them (its counters start again).
	if names, methods := g.markers(); !slices.Equal(names, b.throttle.Load().markers) || !slices.Equal(methods, b.throttle.Load().markerMethods) {
		if err := b.buildThrottle(b.throttleSettings, names, methods); err != nil {
			b.log.LogAttrs(ctx, slog.LevelError, "aioconfig: brute-force defence not rebuilt; keeping the previous one", slog.Any("err", err))
		}
	}
	ch.Added, ch.Removed, ch.Changed = diffPorts(prev, g)
	for _, n := range ch.Added {
		b.log.LogAttrs(ctx, slog.LevelInfo, "aioconfig: port added", slog.String("port", n), slog.String("address", g.byName[n].Address))
	}
	for _, n := range ch.Removed {
		b.log.LogAttrs(ctx, slog.LevelInfo, "aioconfig: port removed", slog.String("port", n))
	}
	for _, n := range ch.Changed {
		b.log.LogAttrs(ctx, slog.LevelInfo, "aioconfig: port changed", slog.String("port", n), slog.String("address", g.byName[n].Address))
	}
	if len(ch.Added)+len(ch.Removed)+len(ch.Changed) > 0 {
		b.changed.Fire()
		b.portsSig.Fire()
	}
	return ch, nil
}

// follow subscribes the configuration watch to sources built by Apply.
func (b *Broker) follow(ws []auth.Watch) []func() {
	var stops []func()
	for _, w := range ws {
		stops = append(stops, w.Source.Notify(b.changed.Fire))
	}
	return stops
}

// retire stops and closes the sources of prev that g no longer uses.
func (b *Broker) retire(prev, g *generation) {
	if prev == nil {
		return
	}
	for name, ba := range prev.authns {
		if g.authns[name] != ba {
			retireSource(ba.ports, ba.stops, &ba.res)
		}
	}
	for key, bz := range prev.authzs {
		if g.authzs[key] != bz {
			retireSource(bz.ports, bz.stops, &bz.res)
		}
	}
}

// retireSource ends a source no port uses any more: it serves no port,
// its watch subscriptions stop, and its resources close.
func retireSource(ports *portSet, stops []func(), res *resources) {
	ports.set(nil)
	for _, stop := range stops {
		stop()
	}
	res.close()
}

// retireAll closes the sources of the generation in force (Close).
func (b *Broker) retireAll() {
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	g := b.gen.Load()
	if g == nil {
		return
	}
	b.retire(g, &generation{})
}

// diffPorts names the ports added, removed and changed from a to b.
func diffPorts(a, b *generation) (added, removed, changed []string) {
	for _, p := range b.ports {
		o := a.byName[p.Name]
		switch {
		case o == nil:
			added = append(added, p.Name)
		case o.Address != p.Address || o.authn != p.authn || o.authz != p.authz || !sameTLS(o.TLS, p.TLS) || !jsonEqualBytes(o.Spec, p.Spec):
			changed = append(changed, p.Name)
		}
	}
	for _, p := range a.ports {
		if b.byName[p.Name] == nil {
			removed = append(removed, p.Name)
		}
	}
	return added, removed, changed
}

func jsonEqualBytes(a, b any) bool { return bytes.Equal(mustJSON(a), mustJSON(b)) }

// sameTLS compares the server certificates of two port TLS configurations
// (each generation makes its own).
func sameTLS(a, b *tls.Config) bool {
	if a == nil || b == nil {
		return a == b
	}
	if len(a.Certificates) != len(b.Certificates) || a.ClientAuth != b.ClientAuth {
		return false
	}
	for i := range a.Certificates {
		if !slices.EqualFunc(a.Certificates[i].Certificate, b.Certificates[i].Certificate, bytes.Equal) {
			return false
		}
	}
	return true
}

// settingsDigest is what of c applies only at start: MqttAuthSettings.
func settingsDigest(c *Config) []byte {
	s := c.Settings
	s.ConfigMapDir, s.SecretDir = "", ""
	return mustJSON(s)
}

// recheck is the rule of the configuration watch (see Apply): the
// session against the generation in force. It is idempotent, so that
// changes that arrive during a re-check coalesce into one more.
func (b *Broker) recheck(ctx context.Context, s *auth.Session) error {
	p := s.Principal()
	if p == nil {
		return nil
	}
	port := b.gen.Load().port(p.Listener())
	if port == nil {
		return &auth.DenyError{Code: auth.ServerShuttingDown, Err: fmt.Errorf("%w: %s", ErrPortRemoved, p.Listener())}
	}
	owners := port.authn.owners
	i := slices.IndexFunc(owners, func(o methodOwner) bool { return o.owns(p, owners) })
	if i < 0 {
		code := auth.BadAuthenticationMethod
		if p.Method() == x509auth.Method {
			code = auth.NotAuthorized
		}
		return &auth.DenyError{Code: code, Err: fmt.Errorf("%w: %s on %s", ErrMethodRemoved, p.Method(), port.Name)}
	}
	if c := owners[i].check; c != nil {
		if err := c(ctx, s); err != nil {
			return err
		}
	}
	if x := port.authn.x509; x != nil && owners[i].kind != MethodX509 {
		if cs := s.TLS(); cs != nil && len(cs.PeerCertificates) > 0 {
			if err := x.Check(ctx, s); err != nil {
				return err
			}
		}
	}
	return auth.CheckConnect(port.Authorizer)(ctx, s)
}
