package x509auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/internal/certid"
	"github.com/mqttauth/mqttauth/truststore"
)

// Method is the principal method of clients authenticated by a client
// certificate, unless Config.Method names another.
const Method = "X.509"

// Errors, for errors.Is. The verification errors are those of package
// truststore, re-exported so callers need not import it.
var (
	ErrRevoked   = truststore.ErrRevoked   // a certificate of the chain is revoked
	ErrUntrusted = truststore.ErrUntrusted // no chain to a trusted CA
	ErrExpired   = truststore.ErrExpired   // a certificate is expired or not yet valid
	ErrUsage     = truststore.ErrUsage     // not valid for client authentication
	ErrCALeaf    = truststore.ErrCALeaf    // a CA certificate presented as the client's
	ErrEmpty     = truststore.ErrEmpty     // the truststore has no CA
	ErrStaleCRL  = truststore.ErrStaleCRL  // a CRL is stale and the policy refuses
	// ErrNoIdentity means the leaf lacks the field that Config.Identity
	// names (no common name, no URI SAN...).
	ErrNoIdentity = errors.New("x509auth: certificate has no identity")
)

// Identity says which field of the leaf certificate becomes the principal's
// user name.
type Identity uint8

const (
	// CommonName uses the subject's common name, as Azure IoT Operations
	// does. It is the default.
	CommonName Identity = iota
	// Subject uses the whole subject distinguished name in RFC 2253 form,
	// as crypto/x509/pkix.Name.String writes it ("CN=x,OU=y,C=US").
	Subject
	// URISAN uses the URI subject alternative name, such as a SPIFFE ID;
	// the leaf must have exactly one.
	URISAN
	// DNSSAN uses the first DNS subject alternative name.
	DNSSAN
	// EmailSAN uses the first e-mail subject alternative name.
	EmailSAN
)

// Mapping gives authorization attributes to the clients whose chain holds a
// certificate with Subject: an entry of Azure IoT Operations'
// authorizationAttributes.
type Mapping struct {
	// Name is the entry's name (the key in authorizationAttributes), for
	// logs.
	Name string
	// Subject is the distinguished name to match, as [ParseSubject]
	// accepts it: "CN = Fabrikam Intermediate CA 1".
	Subject string
	// Attributes are given to the principal when the entry matches.
	Attributes map[string]string
}

// Config configures an [Authenticator].
type Config struct {
	// Trust is the source of trusted client CAs and CRLs, usually a
	// *truststore.Store. Required.
	Trust truststore.Source
	// Identity selects the user name; the zero value is CommonName.
	Identity Identity
	// Mappings are the authorizationAttributes. Matching walks the
	// verified chain from the leaf up to the trusted CA; the first
	// certificate whose subject matches an entry gives that entry's
	// attributes, and nothing else is merged. Two entries with the same
	// subject are an error.
	Mappings []Mapping
	// Method is the principal's method; empty means [Method].
	Method string
	// StaleCRL says what to do when a CRL's nextUpdate has passed; the
	// default keeps enforcing it and logs once.
	StaleCRL truststore.StaleCRLPolicy
	// ClientCertOptional makes ServerTLSConfig request a client
	// certificate without requiring one, for a listener whose chain also
	// has methods that need none (custom, K8S-SAT, SCRAM). A certificate
	// that is presented must still verify, or the handshake fails.
	ClientCertOptional bool
	// RequireClientAuthEKU refuses client certificates that have no
	// extended key usage extension. By default they are accepted, as RFC
	// 5280, crypto/x509, OpenSSL and mosquitto accept them (no extension
	// means any usage). A certificate whose extension lacks clientAuth
	// (serverAuth only, say) is refused either way. See
	// truststore.VerifyOptions.
	RequireClientAuthEKU bool
	// RevokedCode is the DISCONNECT reason code for a session whose
	// certificate lost trust; zero means 0x87 (Not authorized).
	RevokedCode auth.ReasonCode
	// Revocation, when set, also judges each verified chain by OCSP or
	// CRL distribution points (see [RevocationChecker]); nil checks only
	// the truststore's CRLs.
	Revocation RevocationChecker
	// ChainCacheSize bounds the number of presented chains whose
	// verification is remembered by content (the SHA-256 of their DER),
	// so that a client presenting the same certificates again (a new
	// handshake, or a resumed TLS session) is not verified again by
	// signature: what a change of trust or time can alter (the CA still
	// trusted, CRLs, validity, usage) is still checked on every
	// connection, and Config.Revocation still runs. About 150 bytes an
	// entry. Zero means DefaultChainCacheSize; negative turns it off.
	ChainCacheSize int
	// RecheckTimeout bounds one re-check of all sessions started by a
	// change of the truststore ([Authenticator.Watch]); zero means 30
	// seconds.
	RecheckTimeout time.Duration
	// Now is the time source; nil means time.Now.
	Now func() time.Time
	// Logger receives refusals and re-check reports; nil means
	// slog.Default(). Subjects and serials are logged, never keys.
	Logger *slog.Logger
}

// Authenticator authenticates MQTT clients by the certificate they
// presented in TLS. It is an [auth.Authenticator]: relevant when the client
// presented a certificate, Pass when the chain verifies against the current
// trust set and nothing in it is revoked, Fail (0x87) otherwise. It never
// returns Continue or Unavailable.
//
// It is safe for concurrent use.
type Authenticator struct {
	trust       truststore.Source
	identity    Identity
	method      string
	mappings    []Mapping
	bySubject   map[string]int // canonical subject -> index in mappings
	staleCRL    truststore.StaleCRLPolicy
	requireEKU  bool // RequireClientAuthEKU
	optional    bool // ClientCertOptional
	revokedCode auth.ReasonCode
	timeout     time.Duration
	now         func() time.Time
	log         *slog.Logger
	revocation  RevocationChecker
	cache       cache
	verified    *verified    // by content; nil when Config.ChainCacheSize < 0
	verifies    atomic.Int64 // full verifications (by signature), for tests
	noCache     bool         // benchmarks: measure the uncached path
}

// New validates cfg and returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Trust == nil {
		return nil, errors.New("x509auth: Config.Trust is required")
	}
	if cfg.Identity > EmailSAN {
		return nil, fmt.Errorf("x509auth: invalid Config.Identity %d", cfg.Identity)
	}
	if cfg.StaleCRL > truststore.RefuseStaleCRL {
		return nil, fmt.Errorf("x509auth: invalid Config.StaleCRL %d", cfg.StaleCRL)
	}
	if cfg.RevokedCode != 0 && !cfg.RevokedCode.ValidDisconnect() {
		return nil, fmt.Errorf("x509auth: Config.RevokedCode %v is not a DISCONNECT failure code", cfg.RevokedCode)
	}
	a := &Authenticator{
		trust:       cfg.Trust,
		identity:    cfg.Identity,
		method:      cfg.Method,
		bySubject:   make(map[string]int, len(cfg.Mappings)),
		staleCRL:    cfg.StaleCRL,
		requireEKU:  cfg.RequireClientAuthEKU,
		optional:    cfg.ClientCertOptional,
		revokedCode: cfg.RevokedCode,
		timeout:     cfg.RecheckTimeout,
		revocation:  cfg.Revocation,
		now:         cfg.Now,
		log:         cfg.Logger,
	}
	if a.method == "" {
		a.method = Method
	}
	if a.revokedCode == 0 {
		a.revokedCode = auth.NotAuthorized
	}
	if a.timeout <= 0 {
		a.timeout = 30 * time.Second
	}
	if a.now == nil {
		a.now = time.Now
	}
	switch {
	case cfg.ChainCacheSize == 0:
		a.verified = newVerified(DefaultChainCacheSize)
	case cfg.ChainCacheSize > 0:
		a.verified = newVerified(cfg.ChainCacheSize)
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	for i, m := range cfg.Mappings {
		key, err := ParseSubject(m.Subject)
		if err != nil {
			return nil, fmt.Errorf("x509auth: mapping %q: %w", m.Name, err)
		}
		if j, dup := a.bySubject[key]; dup {
			return nil, fmt.Errorf("x509auth: mappings %q and %q have the same subject", cfg.Mappings[j].Name, m.Name)
		}
		a.bySubject[key] = i
		a.mappings = append(a.mappings, Mapping{Name: m.Name, Subject: m.Subject, Attributes: maps.Clone(m.Attributes)})
	}
	return a, nil
}

// Authenticate implements [auth.Authenticator]. Without a client
// certificate in req.TLS it is NotRelevant, and so it is when the client
// named an Authentication Method: a certificate never stands in for an
// enhanced-authentication method the client asked for. It verifies
// req.TLS.PeerCertificates against the current trust set itself: with
// RequireAnyClientCert crypto/tls leaves VerifiedChains empty, and a chain
// verified under an older set must not pass. When VerifiedChains is
// present (a listener that let crypto/tls verify), a chain from it is
// re-checked against the current set instead of verifying signatures again.
// The principal's user name comes from Config.Identity, its attributes from
// Config.Mappings, its expiry is the earliest notAfter of the chain.
func (a *Authenticator) Authenticate(ctx context.Context, req *auth.Request) auth.Result {
	if req.AuthMethod != "" {
		// The client named an enhanced-authentication method: a certificate
		// must not stand in for it [MQTT-4.12.0-1]. Let the method that
		// implements it decide, or the chain refuse it with 0x8C.
		return auth.Result{Err: fmt.Errorf("x509auth: the client named authentication method %q, which X.509 does not implement", req.AuthMethod)}
	}
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 || req.TLS.PeerCertificates[0] == nil {
		return auth.Result{Err: errors.New("x509auth: no client certificate")}
	}
	e, err := a.verify(req.TLS)
	if err != nil {
		a.logDeny(ctx, req.ClientID, req.TLS.PeerCertificates[0], err)
		return auth.FailResult(auth.NotAuthorized, fmt.Errorf("x509auth: %w", err))
	}
	if err := a.checkRevocation(ctx, req.TLS.PeerCertificates[0], e); err != nil {
		return a.revocationResult(ctx, req.ClientID, req.TLS.PeerCertificates[0], err)
	}
	if a.log.Enabled(ctx, slog.LevelDebug) {
		leaf := req.TLS.PeerCertificates[0]
		a.log.LogAttrs(ctx, slog.LevelDebug, "x509auth: client certificate accepted",
			slog.String("method", a.method),
			slog.String("decision", "pass"),
			slog.String("client_id", req.ClientID),
			slog.String("username", e.username),
			slog.String("subject", leaf.Subject.String()),
			slog.String("serial", certid.Serial(leaf)),
			slog.String("fingerprint_sha256", certid.Fingerprint(leaf)),
			slog.String("mapping", e.mapping))
	}
	return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{
		Method:     a.method,
		Username:   e.username,
		Attributes: e.attrs,
		Expiry:     e.expiry,
	}))
}

// Check is an [auth.CheckFunc]: it re-verifies the client certificate of
// a live session against the current trust set and returns an
// [*auth.DenyError] (Config.RevokedCode) when it no longer verifies, or when
// it now maps to other attributes than the session's principal has (the
// client reconnects to get them). Sessions without a client certificate
// keep access, whatever authenticated them; sessions with one are checked
// whatever authenticated them, since the listener would now refuse their
// certificate. A chain verified before is re-checked without repeating
// signature checks: trusted CA still present, nothing revoked, validity.
func (a *Authenticator) Check(ctx context.Context, s *auth.Session) error {
	cs := s.TLS()
	if cs == nil || len(cs.PeerCertificates) == 0 || cs.PeerCertificates[0] == nil {
		return nil
	}
	e, err := a.verify(cs)
	if err != nil {
		a.logRevoked(ctx, s.Principal(), cs.PeerCertificates[0], err)
		return &auth.DenyError{Code: a.revokedCode, Err: fmt.Errorf("x509auth: %w", err)}
	}
	if err := a.checkRevocation(ctx, cs.PeerCertificates[0], e); err != nil && !errors.Is(err, auth.ErrUnavailable) {
		a.logRevoked(ctx, s.Principal(), cs.PeerCertificates[0], err)
		return &auth.DenyError{Code: a.revokedCode, Err: fmt.Errorf("x509auth: %w", err)}
	}
	if p := s.Principal(); p != nil && p.Method() == a.method && !sameAttributes(p, e.attrs) {
		return &auth.DenyError{Code: a.revokedCode,
			Err: fmt.Errorf("%w: x509auth: the certificate chain now maps to other attributes", auth.ErrRevoked)}
	}
	return nil
}

func sameAttributes(p *auth.Principal, attrs map[string]string) bool {
	if p.NumAttributes() != len(attrs) {
		return false
	}
	for k, v := range attrs {
		if got, ok := p.Attribute(k); !ok || got != v {
			return false
		}
	}
	return true
}

// entry is the outcome of verifying one leaf: what Authenticate needs, and
// what re-checking needs. It must not refer to the leaf, directly or
// through a slice sharing an array with it (the cache holds the leaf
// weakly, and an entry that reaches it is never removed).
type entry struct {
	issuers  []*x509.Certificate // the verified chain above the leaf, ending at a trusted CA
	username string
	attrs    map[string]string // shared, read-only
	mapping  string
	expiry   time.Time
}

func (a *Authenticator) opts() truststore.VerifyOptions {
	return truststore.VerifyOptions{
		Now:                  a.now(),
		StaleCRL:             a.staleCRL,
		RequireClientAuthEKU: a.requireEKU,
		Logger:               a.log,
	}
}

// verify returns the verification entry of cs's client certificate under
// the current trust set.
func (a *Authenticator) verify(cs *tls.ConnectionState) (*entry, error) {
	leaf := cs.PeerCertificates[0]
	set := a.trust.Current()
	opts := a.opts()
	if !a.noCache {
		if e := a.cache.get(leaf); e != nil {
			if set.CheckVerified(leaf, e.issuers, opts) == nil {
				return e, nil
			}
		}
	}
	for _, ch := range cs.VerifiedChains {
		if len(ch) > 1 && ch[0] == leaf && set.CheckVerified(leaf, ch[1:], opts) == nil {
			return a.remember(leaf, ch)
		}
	}
	var key [32]byte
	byContent := a.verified != nil && !a.noCache
	if byContent {
		key = presentedKey(cs.PeerCertificates)
		if ch := a.verified.get(key, cs.PeerCertificates); ch != nil && set.CheckVerified(leaf, ch[1:], opts) == nil {
			return a.remember(leaf, ch)
		}
	}
	a.verifies.Add(1)
	chains, err := set.Verify(cs.PeerCertificates, opts)
	if err != nil {
		return nil, err
	}
	if byContent {
		a.verified.put(key, cs.PeerCertificates, chains[0])
	}
	return a.remember(leaf, chains[0])
}

// remember builds the entry of a verified chain and caches it.
func (a *Authenticator) remember(leaf *x509.Certificate, chain []*x509.Certificate) (*entry, error) {
	username, err := a.username(leaf)
	if err != nil {
		return nil, err
	}
	// The issuers get their own array: chain[1:] would share chain's, whose
	// first slot is the leaf, and an entry that reaches the leaf keeps the
	// cache's weak pointer from ever clearing (one entry per connection
	// ever made, never removed).
	e := &entry{issuers: slices.Clone(chain[1:]), username: username, expiry: leaf.NotAfter}
	for _, c := range chain[1:] {
		if c.NotAfter.Before(e.expiry) {
			e.expiry = c.NotAfter
		}
	}
	if len(a.bySubject) > 0 {
		for _, c := range chain {
			if i, ok := a.bySubject[CanonicalName(c.Subject)]; ok {
				e.attrs, e.mapping = a.mappings[i].Attributes, a.mappings[i].Name
				break
			}
		}
	}
	if !a.noCache {
		a.cache.put(leaf, e)
	}
	return e, nil
}

// CachedChains returns the number of verified chains the Authenticator
// remembers: one per parsed client certificate still referenced (by a
// live connection or session), so it follows the live connections and
// returns to their number once closed ones are collected by the garbage
// collector. It is for tests and metrics.
func (a *Authenticator) CachedChains() int { return a.cache.len() }

func (a *Authenticator) username(leaf *x509.Certificate) (string, error) {
	var id string
	switch a.identity {
	case CommonName:
		id = leaf.Subject.CommonName
	case Subject:
		id = leaf.Subject.String()
	case URISAN:
		if len(leaf.URIs) != 1 {
			return "", fmt.Errorf("%w: %q has %d URI SANs, want exactly one", ErrNoIdentity, leaf.Subject.String(), len(leaf.URIs))
		}
		id = leaf.URIs[0].String()
	case DNSSAN:
		if len(leaf.DNSNames) > 0 {
			id = leaf.DNSNames[0]
		}
	case EmailSAN:
		if len(leaf.EmailAddresses) > 0 {
			id = leaf.EmailAddresses[0]
		}
	}
	if id == "" {
		return "", fmt.Errorf("%w: %q lacks the %s", ErrNoIdentity, leaf.Subject.String(), a.identity)
	}
	return id, nil
}

// String names the identity field.
func (i Identity) String() string {
	switch i {
	case CommonName:
		return "common name"
	case Subject:
		return "subject"
	case URISAN:
		return "URI SAN"
	case DNSSAN:
		return "DNS SAN"
	case EmailSAN:
		return "e-mail SAN"
	}
	return fmt.Sprintf("Identity(%d)", uint8(i))
}

// logDeny logs a refused certificate; an empty truststore is an error, the
// rest warnings.
func (a *Authenticator) logDeny(ctx context.Context, clientID string, leaf *x509.Certificate, err error) {
	level := slog.LevelWarn
	if errors.Is(err, truststore.ErrEmpty) {
		level = slog.LevelError
	}
	a.log.LogAttrs(ctx, level, "x509auth: client certificate refused",
		slog.String("method", a.method),
		slog.String("decision", "deny"),
		slog.String("client_id", clientID),
		slog.String("subject", leaf.Subject.String()),
		slog.String("serial", certid.Serial(leaf)),
		slog.String("fingerprint_sha256", certid.Fingerprint(leaf)),
		slog.String("reason_code", auth.NotAuthorized.String()),
		slog.String("err", err.Error()))
}

// logRevoked logs a live session whose certificate no longer verifies; the
// session is disconnected with Config.RevokedCode.
func (a *Authenticator) logRevoked(ctx context.Context, p *auth.Principal, leaf *x509.Certificate, err error) {
	var clientID string
	if p != nil {
		clientID = p.ClientID()
	}
	a.log.LogAttrs(ctx, slog.LevelWarn, "x509auth: session's client certificate no longer verifies",
		slog.String("method", a.method),
		slog.String("decision", "deny"),
		slog.String("client_id", clientID),
		slog.String("subject", leaf.Subject.String()),
		slog.String("serial", certid.Serial(leaf)),
		slog.String("fingerprint_sha256", certid.Fingerprint(leaf)),
		slog.String("reason_code", a.revokedCode.String()),
		slog.String("err", err.Error()))
}
