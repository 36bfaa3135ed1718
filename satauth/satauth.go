package satauth

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mqttauth/mqttauth/auth"
)

// Method is the MQTT Authentication Method of service account tokens, and
// the method of the principals this package verifies.
const Method = "K8S-SAT"

// DefaultAnnotationPrefix is the prefix of the service account annotations
// that become attributes, as in Azure IoT Operations. (Its older releases
// used "aio-mq-broker-auth/"; set Config.AnnotationPrefix for those.)
const DefaultAnnotationPrefix = "aio-broker-auth/"

// Defaults for the zero values of Config.
const (
	DefaultRequestTimeout     = 5 * time.Second
	DefaultReadyRetry         = 5 * time.Second // ready at most 5 s after a missing permission is granted
	DefaultCacheSize          = 10000
	DefaultCacheTTL           = 5 * time.Minute
	DefaultAttributeTTL       = time.Minute
	DefaultMaxTokenSize       = 16 << 10
	DefaultKeyRefreshInterval = 10 * time.Second
	DefaultKeyMaxAge          = time.Hour
	DefaultLeeway             = 30 * time.Second
	DefaultJWKSPath           = "/openid/v1/jwks"
)

// Mode says how tokens are verified.
type Mode uint8

const (
	// ModeTokenReview asks the Kubernetes TokenReview API about each token
	// not in the cache. It is the default, and the only mode that notices
	// a token revoked by deleting its pod or secret before it expires.
	ModeTokenReview Mode = iota
	// ModeLocal verifies tokens with the cluster's public keys (OIDC
	// discovery and JWKS from the API server, or Config.JWKSFile), with no
	// API call per connect. Deleting a service account is still noticed
	// through the attribute lookup (at once while the watch
	// ([Authenticator.Watch]) runs, else within Config.AttributeTTL), unless
	// attributes are disabled; deleting a pod only through the watch.
	ModeLocal
)

// Config configures an [Authenticator]. The zero value of every field but
// Audiences is usable in a pod: TokenReview through the in-cluster API.
type Config struct {
	// Audiences are the audiences the broker accepts; a token must carry
	// at least one of them. At least one is required. Choose values that
	// name the broker ("aio-mq"), never the API server's own audience.
	Audiences []string
	// Mode selects TokenReview (default) or local verification.
	Mode Mode

	// APIServer is the Kubernetes API server's URL ("https://host:6443").
	// Empty means in-cluster: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT,
	// with the mounted CA and token of the broker's pod as defaults for
	// CAFile and TokenFile.
	APIServer string
	// CAFile is the PEM bundle that verifies the API server's certificate;
	// RootCAs, when set, is used instead. Neither: the system roots.
	CAFile  string
	RootCAs *x509.CertPool
	// TokenFile holds the broker's own bearer token, re-read when the file
	// changes (projected tokens rotate) and when the API answers 401.
	TokenFile string
	// Anonymous sends no bearer token (only useful for discovery on a
	// cluster that allows anonymous access to it).
	Anonymous bool
	// HTTPClient, when set, is used for every API call as is: it must
	// carry its own TLS configuration. Nil: a client built from CAFile.
	HTTPClient *http.Client
	// RequestTimeout bounds each API call; zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// InsecureSkipTLSVerify does not verify the API server's certificate.
	// Anyone on the path can then answer the TokenReview. Tests only.
	InsecureSkipTLSVerify bool
	// InsecureAllowHTTP allows an http:// APIServer. Tests only.
	InsecureAllowHTTP bool

	// Issuer is the iss claim tokens must carry in ModeLocal, usually
	// "https://kubernetes.default.svc.cluster.local". Empty: the issuer of
	// the API server's discovery document. When set it must equal that
	// document's issuer, although the document is fetched from APIServer
	// (the issuer URL itself rarely resolves from the broker).
	Issuer string
	// JWKSPath is where the API server serves its keys; empty means
	// DefaultJWKSPath.
	JWKSPath string
	// JWKSFile, when set, is a JSON Web Key Set file used instead of the
	// API's discovery and JWKS; it is re-read on an unknown key id. Issuer
	// is then required.
	JWKSFile string
	// Algorithms is the allow-list of signature algorithms; empty means
	// DefaultAlgorithms. Only asymmetric algorithms may be listed: "none"
	// and HMAC are always refused.
	Algorithms []string
	// KeyRefreshInterval is the least time between two fetches of the keys
	// (a token with an unknown key id causes one); zero means
	// DefaultKeyRefreshInterval.
	KeyRefreshInterval time.Duration
	// KeyMaxAge is how long fetched keys are used before they are fetched
	// again; zero means DefaultKeyMaxAge.
	KeyMaxAge time.Duration
	// Leeway is the clock skew allowed for nbf and iat in ModeLocal; zero
	// means DefaultLeeway, negative means none. exp gets no leeway.
	Leeway time.Duration

	// AnnotationPrefix selects the service account annotations that become
	// the principal's attributes (the prefix is removed); empty means
	// DefaultAnnotationPrefix.
	AnnotationPrefix string
	// DisableAttributes skips the ServiceAccount lookup: principals get no
	// attributes, and ModeLocal then makes no API call at all (and no
	// longer notices deleted service accounts).
	DisableAttributes bool
	// AttributeTTL is how long a ServiceAccount read is cached; zero means
	// DefaultAttributeTTL. While the account's namespace is watched (see
	// DisableWatch) the watch keeps the cached read current.
	AttributeTTL time.Duration

	// DisableWatch turns off following Kubernetes while clients are
	// connected ([Authenticator.Watch]): without it, a deleted
	// service account or pod and changed annotations reach connected
	// clients only when they re-authenticate or their token expires, and
	// new connections only after AttributeTTL and CacheTTL. The watch is
	// on by default; it needs list and watch on serviceaccounts and pods.
	DisableWatch bool

	// CacheSize bounds the cache of verified tokens, keyed by the token's
	// SHA-256, and of ServiceAccount reads; zero means DefaultCacheSize,
	// negative disables the token cache (not the ServiceAccount cache,
	// which AttributeTTL governs).
	CacheSize int
	// CacheTTL is the longest a verified token stays cached; an entry
	// never outlives the token's exp. Zero means DefaultCacheTTL.
	CacheTTL time.Duration
	// MaxTokenSize bounds the token's length in bytes; zero means
	// DefaultMaxTokenSize.
	MaxTokenSize int

	// AllowUsernameFallback accepts, from clients that send no
	// Authentication Method (MQTT 3.1.1), a CONNECT whose username begins
	// with "K8S-SAT", with the token as the password. The username is
	// never the identity. Off by default.
	AllowUsernameFallback bool

	// ReadyRetry is how often, while the last [Authenticator.CheckReady]
	// failed, the Authenticator checks again in the background, quietly,
	// until the check passes; then it logs "satauth: ready" at Info. A
	// permission granted at run time (a ClusterRole binding) is thus
	// noticed within ReadyRetry, whether or not a probe asks. Zero means
	// DefaultReadyRetry; negative means no background check.
	ReadyRetry time.Duration

	// Now is the time source; nil means time.Now.
	Now func() time.Time
	// Logger receives API failures (with what to fix for 401 and 403);
	// nil means slog.Default(). Tokens are never logged: a short SHA-256
	// prefix (key "token_sha256") correlates records.
	Logger *slog.Logger
	// Observer, when set, is told of each TokenReview call and each JWKS
	// or discovery fetch (with latency, failed or not), and of TokenReview
	// answers taken from the cache or shared with an identical call in
	// flight.
	Observer auth.Observer
}

// Authenticator verifies Kubernetes service account tokens. It is an
// [auth.Authenticator]: NotRelevant unless the client names the K8S-SAT
// method (or uses the username fallback), Pass with the service account as
// principal, Fail (0x87) for a token that is not valid, Unavailable when the
// Kubernetes API cannot be asked or refuses the broker itself.
//
// It is safe for concurrent use.
type Authenticator struct {
	mode        Mode
	audiences   []string
	issuer      string
	jwksFile    string
	jwksPath    string
	algs        []jose.SignatureAlgorithm
	leeway      time.Duration
	prefix      string
	noAttrs     bool
	attrTTL     time.Duration
	cacheTTL    time.Duration
	maxToken    int
	fallback    bool
	nowFn       func() time.Time
	log         *slog.Logger
	kube        *kubeClient // nil when no API is needed
	keys        *keySet     // ModeLocal
	tokens      *lru[[32]byte, identity]
	accounts    *lru[string, account]
	reviews     flight[[32]byte, identity]
	lookups     flight[string, account]
	follow      *follower // nil with Config.DisableWatch or without an API
	ready       atomic.Pointer[readiness]
	retry       readyRetry
	lastAPIWarn atomic.Int64
	stats       stats
}

// stats count what the authenticator did, for tests and benchmarks.
type stats struct {
	reviews, accountGets, keyFetches atomic.Int64
}

// account is a cached ServiceAccount lookup.
type account struct {
	uid   string
	attrs map[string]string
	found bool
}

// New validates cfg and returns an Authenticator. It makes no API call that
// can fail it: in ModeLocal it tries to fetch the keys with ctx and, if that
// fails, logs and fetches them on first use.
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	if len(cfg.Audiences) == 0 || slices.Contains(cfg.Audiences, "") {
		return nil, errors.New("satauth: Config.Audiences needs at least one non-empty audience")
	}
	if cfg.Mode > ModeLocal {
		return nil, fmt.Errorf("satauth: invalid Config.Mode %d", cfg.Mode)
	}
	a := &Authenticator{
		mode:      cfg.Mode,
		audiences: slices.Clone(cfg.Audiences),
		issuer:    cfg.Issuer,
		jwksFile:  cfg.JWKSFile,
		jwksPath:  cmp.Or(cfg.JWKSPath, DefaultJWKSPath),
		leeway:    cmp.Or(cfg.Leeway, DefaultLeeway),
		prefix:    cmp.Or(cfg.AnnotationPrefix, DefaultAnnotationPrefix),
		noAttrs:   cfg.DisableAttributes,
		attrTTL:   cmp.Or(cfg.AttributeTTL, DefaultAttributeTTL),
		cacheTTL:  cmp.Or(cfg.CacheTTL, DefaultCacheTTL),
		maxToken:  cmp.Or(cfg.MaxTokenSize, DefaultMaxTokenSize),
		fallback:  cfg.AllowUsernameFallback,
		nowFn:     cfg.Now,
		log:       cfg.Logger,
	}
	a.retry.init(cfg.ReadyRetry, cfg.RequestTimeout)
	if a.leeway < 0 {
		a.leeway = 0
	}
	if !strings.HasPrefix(a.jwksPath, "/") {
		return nil, fmt.Errorf("satauth: Config.JWKSPath %q must begin with /", a.jwksPath)
	}
	if a.nowFn == nil {
		a.nowFn = time.Now
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	names := cfg.Algorithms
	if len(names) == 0 {
		names = DefaultAlgorithms
	}
	for _, n := range names {
		alg := jose.SignatureAlgorithm(n)
		if !slices.Contains(asymmetric, alg) {
			return nil, fmt.Errorf("satauth: Config.Algorithms: %q is not an allowed asymmetric signature algorithm", n)
		}
		if !slices.Contains(a.algs, alg) {
			a.algs = append(a.algs, alg)
		}
	}
	size := cmp.Or(cfg.CacheSize, DefaultCacheSize)
	a.tokens = newLRU[[32]byte, identity](max(size, 0))
	// The ServiceAccount cache follows AttributeTTL; disabling the token
	// cache does not disable it.
	a.accounts = newLRU[string, account](max(size, DefaultCacheSize))
	if a.mode == ModeLocal && a.jwksFile != "" && a.issuer == "" {
		return nil, errors.New("satauth: Config.Issuer is required with Config.JWKSFile")
	}
	needAPI := a.mode == ModeTokenReview || a.jwksFile == "" || !a.noAttrs
	if needAPI {
		kc, err := newKubeClient(&cfg)
		if err != nil {
			return nil, err
		}
		a.kube = kc
	}
	if a.kube != nil && !cfg.DisableWatch {
		a.follow = newFollower(a)
	}
	if a.mode == ModeLocal {
		a.keys = &keySet{
			a:        a,
			interval: cmp.Or(cfg.KeyRefreshInterval, DefaultKeyRefreshInterval),
			maxAge:   cmp.Or(cfg.KeyMaxAge, DefaultKeyMaxAge),
		}
		_ = a.keys.refresh(ctx) // logged; retried on first use
	}
	return a, nil
}

// Close stops following Kubernetes (see [Authenticator.Watch]),
// waiting for its goroutines to end, and releases the idle connections to
// the API server.
func (a *Authenticator) Close() {
	a.retry.close()
	if a.follow != nil {
		a.follow.close()
	}
	if a.kube != nil {
		a.kube.close()
	}
}

func (a *Authenticator) now() time.Time { return a.nowFn() }

// token returns the token the request carries and whether the request is
// for this authenticator.
func (a *Authenticator) token(req *auth.Request) ([]byte, bool) {
	if req.AuthMethod == Method {
		return req.AuthData, true
	}
	if a.fallback && req.AuthMethod == "" && !req.Reauth && req.HasUsername && strings.HasPrefix(req.Username, Method) {
		return req.Password, true
	}
	return nil, false
}

// Authenticate verifies the token in req. See [Authenticator].
func (a *Authenticator) Authenticate(ctx context.Context, req *auth.Request) auth.Result {
	raw, ok := a.token(req)
	if !ok {
		return auth.Result{}
	}
	if len(raw) == 0 {
		return auth.FailResult(auth.NotAuthorized, fmt.Errorf("%w: empty token", ErrMalformed))
	}
	if len(raw) > a.maxToken {
		return auth.FailResult(auth.NotAuthorized, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(raw), a.maxToken))
	}
	id, err := a.verify(ctx, raw)
	if err != nil {
		return a.result(ctx, raw, err)
	}
	if id.podUID != "" && a.follow != nil && a.follow.podGone(id.podUID) {
		return a.result(ctx, raw, fmt.Errorf("%w: %s/%s", ErrPodDeleted, id.namespace, id.pod))
	}
	if req.Reauth && req.Current != nil && req.Current.Username() != id.username {
		return auth.FailResult(auth.NotAuthorized, fmt.Errorf("%w: from %q to %q", ErrIdentityChanged, req.Current.Username(), id.username))
	}
	var attrs map[string]string
	if !a.noAttrs {
		acct, err := a.account(ctx, id)
		if err != nil {
			return a.result(ctx, raw, err)
		}
		attrs = acct.attrs
	}
	p := auth.NewPrincipal(auth.PrincipalInfo{
		Method:     Method,
		Username:   id.username,
		ClientID:   req.ClientID,
		Listener:   req.Listener, // complete, so the Session keeps this very principal: the watch finds its sessions by it
		Attributes: attrs,
		Expiry:     id.expiry,
	})
	if a.follow != nil {
		a.follow.track(p, id)
	}
	return auth.PassResult(p)
}

// result turns a verification error into a Result: Unavailable for the API's
// and the broker's failures, Fail 0x87 for the token's.
func (a *Authenticator) result(ctx context.Context, raw []byte, err error) auth.Result {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrBrokerForbidden) || errors.Is(err, ErrBrokerUnauthorized) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		a.log.LogAttrs(ctx, slog.LevelDebug, "satauth: token not verified: API unavailable",
			slog.String("method", Method), slog.String("token_sha256", shortHash(raw)), slog.Any("err", err))
		return auth.UnavailableResult(err)
	}
	a.log.LogAttrs(ctx, slog.LevelDebug, "satauth: token refused",
		slog.String("method", Method), slog.String("token_sha256", shortHash(raw)), slog.Any("err", err))
	return auth.FailResult(auth.NotAuthorized, err)
}

// shortHash is the first 12 hex digits of the token's SHA-256, for logs.
func shortHash(raw []byte) string {
	h := sha256.Sum256(raw)
	return hex.EncodeToString(h[:6])
}

// verify returns the identity of a valid token, from the cache when it is
// there.
func (a *Authenticator) verify(ctx context.Context, raw []byte) (identity, error) {
	key := sha256.Sum256(raw)
	now := a.now()
	if id, ok := a.tokens.get(key, now); ok {
		a.observeReview(auth.CallCached)
		return id, nil
	}
	token := string(raw)
	tok, c, err := parseToken(token, a.algs)
	if err != nil {
		return identity{}, err
	}
	var id identity
	if a.mode == ModeLocal {
		id, err = a.verifyLocal(ctx, tok, c, now)
	} else {
		// Cheap local refusals first: a token past its exp, or for none of
		// our audiences, costs no API call.
		if err := checkTime(c, now, time.Duration(1<<62)); err != nil {
			return identity{}, err
		}
		if err := checkAudience(c.Audience, a.audiences); err != nil {
			return identity{}, err
		}
		var shared bool
		id, err, shared = a.reviews.do(ctx, key, func(ctx context.Context) (identity, error) {
			// A merged call that ended between our cache miss and now
			// has cached the answer.
			if id, ok := a.tokens.get(key, now); ok {
				return id, nil
			}
			id, err := a.review(ctx, token, c)
			if err == nil {
				// Cache before the merged call ends, so that no caller
				// arriving in between starts a second review.
				a.cache(key, id, now)
			}
			return id, err
		})
		if shared {
			a.observeReview(auth.CallCoalesced)
		}
		return id, err
	}
	if err != nil {
		return identity{}, err
	}
	a.cache(key, id, now)
	return id, nil
}

// cache keeps a verified identity until its expiry or the cache TTL,
// whichever is first.
func (a *Authenticator) cache(key [32]byte, id identity, now time.Time) {
	until := now.Add(a.cacheTTL)
	if id.expiry.Before(until) {
		until = id.expiry
	}
	a.tokens.put(key, id, until)
}

// review asks the TokenReview API. c are the token's unverified claims,
// trusted only once the API has authenticated the token.
func (a *Authenticator) review(ctx context.Context, token string, c *claims) (identity, error) {
	a.stats.reviews.Add(1)
	st, err := a.kube.review(ctx, token, a.audiences)
	if err != nil {
		a.logAPIError(ctx, "satauth: TokenReview failed", err)
		return identity{}, err
	}
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "the API did not authenticate the token"
		}
		return identity{}, fmt.Errorf("%w: %s", ErrNotAuthenticated, truncate(msg, 256))
	}
	if err := checkAudience(st.Audiences, a.audiences); err != nil {
		return identity{}, err
	}
	ns, name, ok := splitUsername(st.User.Username)
	if !ok {
		return identity{}, fmt.Errorf("%w: the API authenticated %q", ErrNotServiceAccount, truncate(st.User.Username, 128))
	}
	if c.Subject != st.User.Username {
		return identity{}, fmt.Errorf("%w: the token's subject differs from the reviewed user", ErrNotServiceAccount)
	}
	if c.Expiry == nil {
		return identity{}, fmt.Errorf("%w: no exp claim (legacy non-expiring tokens are refused)", ErrMalformed)
	}
	uid := st.User.UID
	if c.Kubernetes != nil && c.Kubernetes.ServiceAccount.UID != "" {
		uid = c.Kubernetes.ServiceAccount.UID
	}
	id := identity{username: st.User.Username, namespace: ns, name: name, uid: uid, expiry: c.Expiry.Time()}
	if pod := st.User.Extra[extraPodName]; len(pod) == 1 {
		id.pod = pod[0]
		if u := st.User.Extra[extraPodUID]; len(u) == 1 {
			id.podUID = u[0]
		}
	}
	return id, nil
}

// verifyLocal verifies the token's signature with the cluster's keys and
// its claims.
func (a *Authenticator) verifyLocal(ctx context.Context, tok *jwt.JSONWebToken, c *claims, now time.Time) (identity, error) {
	if err := checkTime(c, now, a.leeway); err != nil {
		return identity{}, err
	}
	if err := checkAudience(c.Audience, a.audiences); err != nil {
		return identity{}, err
	}
	kid := ""
	if len(tok.Headers) > 0 {
		kid = tok.Headers[0].KeyID
	}
	keys, iss, err := a.keys.key(ctx, kid)
	if err != nil {
		return identity{}, err
	}
	var verified claims
	err = ErrSignature
	for i := range keys {
		if e := tok.Claims(keys[i].Key, &verified); e == nil {
			err = nil
			break
		}
	}
	if err != nil {
		return identity{}, err
	}
	if verified.Issuer != iss {
		return identity{}, fmt.Errorf("%w: %q, want %q", ErrIssuer, truncate(verified.Issuer, 128), iss)
	}
	return kubeIdentity(&verified)
}

// account returns the token's service account, read from the API or the
// cache. A missing account, or one with another UID, is
// ErrServiceAccountNotFound.
func (a *Authenticator) account(ctx context.Context, id identity) (account, error) {
	key := id.namespace + "/" + id.name
	now := a.now()
	acct, ok := a.accounts.get(key, now)
	if !ok {
		var err error
		acct, err, _ = a.lookups.do(ctx, key, func(ctx context.Context) (account, error) {
			if acct, ok := a.accounts.get(key, now); ok {
				return acct, nil
			}
			a.stats.accountGets.Add(1)
			sa, err := a.kube.getServiceAccount(ctx, id.namespace, id.name)
			if errors.Is(err, ErrServiceAccountNotFound) {
				// Remember briefly, so a flood of tokens of a deleted
				// account does not become a flood of API calls.
				a.accounts.put(key, account{}, now.Add(min(a.attrTTL, 5*time.Second)))
				return account{}, nil
			}
			if err != nil {
				a.logAPIError(ctx, "satauth: reading the service account failed", err)
				return account{}, err
			}
			acct := account{uid: sa.Metadata.UID, attrs: a.attributes(sa.Metadata.Annotations), found: true}
			a.accounts.put(key, acct, now.Add(a.attrTTL))
			return acct, nil
		})
		if err != nil {
			return account{}, err
		}
	}
	if !acct.found {
		return account{}, fmt.Errorf("%w: %s", ErrServiceAccountNotFound, key)
	}
	if id.uid != "" && acct.uid != "" && id.uid != acct.uid {
		return account{}, fmt.Errorf("%w: %s was re-created (the token names another UID)", ErrServiceAccountNotFound, key)
	}
	return acct, nil
}

// logAPIError logs an API failure: the broker's own 401/403 at Error level
// (they need an operator), others at Warn, at most once a second.
func (a *Authenticator) logAPIError(ctx context.Context, msg string, err error) {
	level := slog.LevelWarn
	if errors.Is(err, ErrBrokerForbidden) || errors.Is(err, ErrBrokerUnauthorized) {
		level = slog.LevelError
	}
	now := time.Now().UnixNano()
	last := a.lastAPIWarn.Load()
	if now-last < int64(time.Second) || !a.lastAPIWarn.CompareAndSwap(last, now) {
		return
	}
	a.log.LogAttrs(ctx, level, msg, slog.String("method", Method), slog.Any("err", err))
}

// String returns "TokenReview" or "Local".
func (m Mode) String() string {
	switch m {
	case ModeTokenReview:
		return "TokenReview"
	case ModeLocal:
		return "Local"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}
