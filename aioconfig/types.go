package aioconfig

import (
	"encoding/json"
	"time"

	"github.com/mqttauth/mqttauth/mqttconn"
)

// The API groups and kinds this package reads.
const (
	// APIv1beta1 is the API of seed 002's resources: methods Custom,
	// ServiceAccountToken and x509Credentials with settings under custom,
	// serviceAccountToken and x509Credentials.
	APIv1beta1 = "mqttbroker.iotoperations.azure.com/v1beta1"
	// APIv1 is the current API: methods Custom, ServiceAccountToken and
	// X509 with settings under customSettings, serviceAccountTokenSettings
	// and x509Settings.
	APIv1 = "mqttbroker.iotoperations.azure.com/v1"
	// APISettings is the API of this library's own document kind,
	// MqttAuthSettings: what Azure IoT Operations has no resource for.
	APISettings = "mqttauth.dev/v1alpha1"

	KindAuthentication = "BrokerAuthentication"
	KindAuthorization  = "BrokerAuthorization"
	KindListener       = "BrokerListener"
	KindSettings       = "MqttAuthSettings"
)

// The method names of authenticationMethods. x509Credentials is the
// v1beta1 spelling of X509; SCRAM and JWT are this library's.
const (
	MethodCustom          = "Custom"
	MethodSAT             = "ServiceAccountToken"
	MethodX509            = "X509"
	MethodX509Credentials = "x509Credentials"
	MethodSCRAM           = "SCRAM"
	MethodJWT             = "JWT"
)

// Metadata is a resource's metadata; only the name is used.
type Metadata struct {
	Name        string            `json:"name,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Authentication is a BrokerAuthentication resource: the ordered methods
// of the ports that name it in authenticationRef.
type Authentication struct {
	// Name is metadata.name; a document without metadata is "default".
	Name string
	// API is the document's apiVersion ("" when it gave none).
	API string
	// Methods are spec.authenticationMethods, both API shapes normalised.
	Methods []Method
	// Source says where the resource was read, for messages.
	Source string
}

// Method is one entry of authenticationMethods, tried in order. Exactly one
// of the settings is set, the one its Method names.
type Method struct {
	// Method is Custom, ServiceAccountToken, X509, SCRAM or JWT
	// (x509Credentials is read as X509).
	Method string `json:"method"`

	Custom *CustomSettings `json:"customSettings,omitempty"`
	SAT    *SATSettings    `json:"serviceAccountTokenSettings,omitempty"`
	X509   *X509Settings   `json:"x509Settings,omitempty"`
	SCRAM  *SCRAMSettings  `json:"scramSettings,omitempty"`
	JWT    *JWTSettings    `json:"jwtSettings,omitempty"`
}

// rawMethod is a method as written, in either API shape.
type rawMethod struct {
	Method string `json:"method"`
	// v1
	CustomSettings              json.RawMessage `json:"customSettings,omitempty"`
	ServiceAccountTokenSettings json.RawMessage `json:"serviceAccountTokenSettings,omitempty"`
	X509Settings                json.RawMessage `json:"x509Settings,omitempty"`
	// v1beta1
	Custom              json.RawMessage `json:"custom,omitempty"`
	ServiceAccountToken json.RawMessage `json:"serviceAccountToken,omitempty"`
	X509Credentials     json.RawMessage `json:"x509Credentials,omitempty"`
	// ours
	SCRAMSettings json.RawMessage `json:"scramSettings,omitempty"`
	JWTSettings   json.RawMessage `json:"jwtSettings,omitempty"`
}

// CustomSettings configures custom authentication: the custom-auth HTTP
// API client.
type CustomSettings struct {
	// Endpoint is the server's HTTPS URL. Required.
	Endpoint string `json:"endpoint"`
	// CACert (v1beta1) and CACertConfigMap (v1) name the ConfigMap of
	// the server's CA; CACertFile (ours) is a PEM file. Empty means the
	// system roots.
	CACert          string `json:"caCert,omitempty"`
	CACertConfigMap string `json:"caCertConfigMap,omitempty"`
	CACertFile      string `json:"caCertFile,omitempty"`
	// Auth is how the broker authenticates itself to the server.
	Auth *CustomAuth `json:"auth,omitempty"`
	// Headers are sent with every request.
	Headers map[string]string `json:"headers,omitempty"`
	// Timeout bounds one request ("5s"; ours).
	Timeout string `json:"timeout,omitempty"`
	// CircuitBreaker tunes the breaker that stops calling a failing server
	// (ours); unset fields keep customauth's defaults (5 failures, 10 s).
	CircuitBreaker *CircuitBreaker `json:"circuitBreaker,omitempty"`
}

// CircuitBreaker configures customauth's circuit breaker (ours).
type CircuitBreaker struct {
	// FailureThreshold is the number of failures in a row (transport
	// errors, timeouts, 5xx, malformed answers) that opens the breaker;
	// zero means the default.
	FailureThreshold int `json:"failureThreshold,omitempty"`
	// Cooldown is how long the breaker stays open before one probe
	// ("10s"); empty means the default.
	Cooldown string `json:"cooldown,omitempty"`
}

// CustomAuth is the broker's client certificate for the custom server.
type CustomAuth struct {
	X509 *CustomX509 `json:"x509,omitempty"`
}

// CustomX509 names the broker's client certificate: a kubernetes.io/tls
// Secret (v1beta1 secretName and namespace, v1 secretRef; keys tls.crt and
// tls.key) or files (ours).
type CustomX509 struct {
	SecretName string `json:"secretName,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	SecretRef  string `json:"secretRef,omitempty"`
	CertFile   string `json:"certFile,omitempty"`
	KeyFile    string `json:"keyFile,omitempty"`
}

// SATSettings configures Kubernetes service account token authentication.
type SATSettings struct {
	// Audiences: a token must carry one. Required.
	Audiences []string `json:"audiences"`
	// The rest is ours. Without APIServer the broker uses the in-cluster
	// configuration.
	APIServer string `json:"apiServer,omitempty"`
	CAFile    string `json:"caFile,omitempty"`
	TokenFile string `json:"tokenFile,omitempty"`
	// Mode is tokenReview (the default) or local (OIDC discovery and
	// JWKS, no call per connect); Issuer and JWKSFile serve local.
	Mode     string `json:"mode,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
	JWKSFile string `json:"jwksFile,omitempty"`
	// AnnotationPrefix selects the service account annotations that
	// become attributes; empty means aio-broker-auth/.
	AnnotationPrefix string `json:"annotationPrefix,omitempty"`
	// AllowUsernameFallback accepts MQTT 3.1.1 clients that put K8S-SAT
	// in the user name and the token in the password.
	AllowUsernameFallback bool `json:"allowUsernameFallback,omitempty"`
	// CacheTTL is the longest a verified token stays cached (never past
	// its exp), a duration such as "5m"; empty means 5m.
	CacheTTL string `json:"cacheTTL,omitempty"`
	// AttributeTTL is how long a ServiceAccount read (its attributes, and
	// that it exists) is cached, a duration; empty means 1m. While the
	// watch follows the account's namespace it keeps the read current.
	AttributeTTL string `json:"attributeTTL,omitempty"`
	// Watch follows Kubernetes while clients are connected (list+watch of
	// the ServiceAccounts and Pods of their namespaces): a deleted account
	// or pod disconnects its sessions with 0x87 within seconds, changed
	// annotations change their attributes. Absent means true; false turns
	// it off (changes then reach new connections only, after cacheTTL and
	// attributeTTL). It needs list and watch on serviceaccounts and pods.
	Watch *bool `json:"watch,omitempty"`
}

// Following reports whether the watch is on: Watch absent or true.
func (s *SATSettings) Following() bool { return s.Watch == nil || *s.Watch }

// X509Settings configures X.509 client certificate authentication.
type X509Settings struct {
	// TrustedClientCaCert names the ConfigMap of the trusted client CAs
	// (every key a PEM file), or a PEM file or directory. Required.
	TrustedClientCaCert string `json:"trustedClientCaCert"`
	// AuthorizationAttributes map certificate subjects to attributes.
	AuthorizationAttributes map[string]AttributeEntry `json:"authorizationAttributes,omitempty"`
	// Attributes (v1beta1) names a Secret whose keys each hold an
	// authorizationAttributes mapping in YAML or JSON, merged with the
	// inline ones.
	Attributes *SecretName `json:"attributes,omitempty"`
	// CRLs are CRL files or directories, or ConfigMap names (ours);
	// watched like the CAs.
	CRLs []string `json:"crls,omitempty"`
	// RequireClientAuthEku refuses client certificates without an
	// extended key usage extension (ours). By default they are accepted,
	// as RFC 5280, OpenSSL and mosquitto accept them; a certificate whose
	// extension lacks clientAuth is refused either way.
	RequireClientAuthEku bool `json:"requireClientAuthEku,omitempty"`
	// Revocation checks client certificates with OCSP and the CRLs of
	// their CRL distribution points (ours; package revocation). Without
	// it only the crls files are consulted.
	Revocation *RevocationSettings `json:"revocation,omitempty"`
}

// The revocation modes.
const (
	RevocationHardFail = "hardFail"
	RevocationSoftFail = "softFail"
)

// RevocationSettings configures package revocation for an X509 method
// (ours). At least one of OCSP, Responder and CRLDistributionPoints must
// be set. Durations are Go durations ("5s"); an empty one or a zero count
// keeps revocation's default.
type RevocationSettings struct {
	// Mode is hardFail (the default: without a fresh answer a client is
	// refused, CONNACK 0x88 or 0x87) or softFail (accepted until an
	// answer says revoked).
	Mode string `json:"mode,omitempty"`
	// OCSP asks the responder each certificate names (its authority
	// information access).
	OCSP bool `json:"ocsp,omitempty"`
	// Responder is an OCSP responder URL asked for every certificate,
	// whatever it names; it implies ocsp.
	Responder string `json:"responder,omitempty"`
	// CRLDistributionPoints downloads the CRLs each certificate names.
	CRLDistributionPoints bool `json:"crlDistributionPoints,omitempty"`
	// Timeout bounds one fetch (default 5s).
	Timeout string `json:"timeout,omitempty"`
	// Wait bounds how long a CONNECT waits, in hardFail mode, for the
	// first answer about its certificate (default 2s, at most timeout;
	// "0s": no wait).
	Wait string `json:"wait,omitempty"`
	// RefreshBefore is how long before an answer's nextUpdate it is
	// fetched again (default a quarter of its validity: a revocation is
	// noticed at most three quarters of the validity after the last
	// fetch, plus refreshInterval and timeout).
	RefreshBefore string `json:"refreshBefore,omitempty"`
	// RetryInterval is the least time between a failed fetch and the
	// next (default 30s: a responder back up is used within 40s).
	RetryInterval string `json:"retryInterval,omitempty"`
	// RefreshInterval is how often cached answers are looked at for a
	// refresh (default 10s: a refresh starts at most 10s late).
	RefreshInterval string `json:"refreshInterval,omitempty"`
	// MaxAge is how long an answer without nextUpdate stays fresh
	// (default 5m: refreshed after 3m45s, so a revocation is noticed
	// within about 4 minutes).
	MaxAge string `json:"maxAge,omitempty"`
	// MaxEntries bounds the cached OCSP answers (default 10000; make it
	// more than the clients connected at once); MaxCRLs the cached CRLs
	// (default 64).
	MaxEntries int `json:"maxEntries,omitempty"`
	MaxCRLs    int `json:"maxCRLs,omitempty"`
}

// SecretName names a Secret.
type SecretName struct {
	SecretName string `json:"secretName"`
}

// AttributeEntry is one entry of authorizationAttributes.
type AttributeEntry struct {
	Subject    string            `json:"subject"`
	Attributes map[string]string `json:"attributes"`
}

// SCRAMSettings configures SCRAM-SHA-256/512 enhanced authentication
// (ours).
type SCRAMSettings struct {
	// UsersFile holds the users' derived keys (never passwords), a file
	// or a Secret name (the Secret's users.json key); it is watched, and
	// users removed from it lose their connections.
	UsersFile string `json:"usersFile"`
	// Mechanisms limits the methods offered; empty means both.
	Mechanisms []string `json:"mechanisms,omitempty"`
	// UnknownUserKeyFile holds the secret from which unknown users' fake
	// salts are derived; share it between the nodes of a cluster.
	UnknownUserKeyFile string `json:"unknownUserKeyFile,omitempty"`
}

// The places a JWT method reads its token from (JWTSettings.TokenFrom).
const (
	TokenFromMethod   = "method"
	TokenFromPassword = "password"
)

// JWTSettings configures JSON Web Token authentication against one OpenID
// Connect issuer (ours; package jwtauth). Durations are Go durations; an
// empty one keeps jwtauth's default.
type JWTSettings struct {
	// Issuer is the issuer URL, equal to the tokens' iss. Required.
	Issuer string `json:"issuer"`
	// DiscoveryURL is where the discovery document is read (default
	// issuer + /.well-known/openid-configuration); JWKSURL, when set, is
	// the key set itself, and no discovery is done.
	DiscoveryURL string `json:"discoveryUrl,omitempty"`
	JWKSURL      string `json:"jwksUrl,omitempty"`
	// Audiences: a token must carry one. Required.
	Audiences []string `json:"audiences"`
	// Algorithms are the allowed signature algorithms (default RS256 and
	// ES256; asymmetric ones only).
	Algorithms []string `json:"algorithms,omitempty"`
	// Leeway is the clock skew allowed on nbf and iat (default 1m; "0s":
	// none).
	Leeway string `json:"leeway,omitempty"`
	// UsernameClaim is the claim that is the user name (default sub).
	UsernameClaim string `json:"usernameClaim,omitempty"`
	// ClaimsToAttributes maps claim names to principal attribute names,
	// for BrokerAuthorization rules.
	ClaimsToAttributes map[string]string `json:"claimsToAttributes,omitempty"`
	// TokenFrom is method (the default: the Authentication Data of a
	// CONNECT naming Method; re-authentication swaps the token) or
	// password (the CONNECT password, for MQTT 3.1.1 clients).
	TokenFrom string `json:"tokenFrom,omitempty"`
	// Method is the MQTT Authentication Method and the principal's method
	// (default JWT).
	Method string `json:"method,omitempty"`
	// PasswordUsername, with tokenFrom password, is the user name that
	// marks a token in the password; empty means any user name.
	PasswordUsername string `json:"passwordUsername,omitempty"`
	// KeyRefreshInterval is the least time between two key set fetches
	// for an unknown key id (default 10s); KeyMaxAge the age after which
	// the keys are fetched again (default 1h); RequestTimeout bounds one
	// fetch (default 10s).
	KeyRefreshInterval string `json:"keyRefreshInterval,omitempty"`
	KeyMaxAge          string `json:"keyMaxAge,omitempty"`
	RequestTimeout     string `json:"requestTimeout,omitempty"`
	// CACert names the ConfigMap of the issuer's CA (every key a PEM
	// file), or a PEM file; CACertFile is a PEM file. Empty means the
	// system roots.
	CACert     string `json:"caCert,omitempty"`
	CACertFile string `json:"caCertFile,omitempty"`
	// InsecureAllowHTTP allows http:// issuer, discovery and key set
	// URLs: for tests and loopback issuers only.
	InsecureAllowHTTP bool `json:"insecureAllowHttp,omitempty"`
}

// Authorization is a BrokerAuthorization resource: its policy, compiled
// by package abac when built.
type Authorization struct {
	// Name is metadata.name; a document without metadata is "default".
	Name string
	// Policy is the document as written (whole resource, spec, the
	// authorizationPolicies mapping or the bare rules array), validated.
	Policy json.RawMessage
	// Rules is the number of rules, for messages.
	Rules int
	// Source says where the resource was read.
	Source string
}

// Listener is a BrokerListener resource.
type Listener struct {
	Name   string
	Ports  []PortSpec
	Source string
}

// listenerSpec is a BrokerListener's spec. serviceName, serviceType and
// the rest of the Kubernetes service settings are accepted and ignored.
type listenerSpec struct {
	BrokerRef   string     `json:"brokerRef,omitempty"`
	ServiceName string     `json:"serviceName,omitempty"`
	ServiceType string     `json:"serviceType,omitempty"`
	Ports       []PortSpec `json:"ports"`
}

// PortSpec is one port of a BrokerListener, linked to its own authentication
// and authorization.
type PortSpec struct {
	// Port is the TCP port. Required.
	Port int `json:"port"`
	// NodePort and Protocol are AIO's; Protocol must be Mqtt (the
	// default) here.
	NodePort int    `json:"nodePort,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	// AuthenticationRef names a BrokerAuthentication. Required: where AIO
	// would run without authentication, this library refuses.
	AuthenticationRef string `json:"authenticationRef,omitempty"`
	// AuthorizationRef names a BrokerAuthorization. Empty means every
	// authenticated client may do everything (AIO's behaviour).
	AuthorizationRef string `json:"authorizationRef,omitempty"`
	// TLS is the port's server TLS; nil means plain TCP (development, or
	// behind a TLS-terminating load balancer).
	TLS *PortTLS `json:"tls,omitempty"`

	// Ours.

	// Address is the host to bind ("127.0.0.1"); empty means every
	// interface.
	Address string `json:"address,omitempty"`
	// AuthorizationFile is a policy file (any BrokerAuthorization shape),
	// watched and reloaded on change; it replaces AuthorizationRef.
	AuthorizationFile string `json:"authorizationFile,omitempty"`
}

// PortTLS is a port's TLS: mode Manual with the server certificate in a
// kubernetes.io/tls Secret (manual.secretRef) or in files (manual.certFile,
// manual.keyFile; ours). Automatic (cert-manager) is not available here.
type PortTLS struct {
	Mode   string     `json:"mode"`
	Manual *ManualTLS `json:"manual,omitempty"`
	// CertManagerCertificateSpec is AIO's Automatic mode; refused.
	CertManagerCertificateSpec json.RawMessage `json:"certManagerCertificateSpec,omitempty"`
}

// ManualTLS names the port's certificate chain (leaf first) and key.
type ManualTLS struct {
	SecretRef string `json:"secretRef,omitempty"`
	CertFile  string `json:"certFile,omitempty"`
	KeyFile   string `json:"keyFile,omitempty"`
}

// Settings is the spec of the MqttAuthSettings document: what Azure IoT
// Operations has no resource for. At most one per configuration.
type Settings struct {
	// Session configures every session.
	Session Session `json:"session,omitempty"`
	// ConfigMapDir and SecretDir are where ConfigMaps and Secrets are
	// mounted, a directory per name and a file per key; relative to the
	// file that says so. Empty means the first configuration file's
	// directory.
	ConfigMapDir string `json:"configMapDir,omitempty"`
	SecretDir    string `json:"secretDir,omitempty"`
	// Throttle is the brute-force defence of every port (ours; package
	// throttle). It is on without this section, with throttle's
	// defaults; disabled: true turns it off.
	Throttle *Throttle `json:"throttle,omitempty"`
	// Limits bound what a peer may hold before it has authenticated
	// (ours). Without this section the broker adapter's and the gateway's
	// own defaults apply.
	Limits *Limits `json:"limits,omitempty"`
	// Admin is the admin HTTP listener (/metrics, /healthz, /readyz,
	// /debug/pprof) and the audit log (ours; package admin). Without this
	// section the listener is on DefaultAdminAddress.
	Admin *Admin `json:"admin,omitempty"`
	// Upstream configures the broker leg of a gateway (ours; package
	// gateway); brokers ignore it.
	Upstream *Upstream `json:"upstream,omitempty"`
}

// Upstream configures a gateway's broker leg (ours).
type Upstream struct {
	// Protocol is the MQTT version spoken to the broker: "5", "3.1.1" (MQTT
	// 5 clients are translated, for brokers that speak only 3.1.1) or
	// "auto" (the client's; the default). See gateway.Config.UpstreamProtocol.
	Protocol string `json:"protocol,omitempty"`
	// Coordination, when present, turns on takeover coordination between
	// gateways (see Coordination); it needs Protocol "3.1.1".
	Coordination *Coordination `json:"coordination,omitempty"`
}

// Limits bound what a peer may hold before it has authenticated (ours):
// the connection layer's limits (mqttconn.Limits), the same for the
// example broker and the example gateway. Zero values keep their
// defaults, which are safe: 1 MiB packets, 10 s for the TLS handshake and
// CONNECT, 256 connections not yet authenticated, of which one source (an
// IPv4 address, an IPv6 /64) may hold 32. A peer over a limit is closed
// and counted; a client within them is never refused.
type Limits struct {
	// MaxPacketSize is the largest packet accepted, in bytes; a packet
	// that declares more is refused from its fixed header, before its body
	// is read [MQTT-3.1.2-24].
	MaxPacketSize int `json:"maxPacketSize,omitempty"`
	// ConnectTimeout bounds the time from accepting a connection to its
	// CONNECT packet, the TLS handshake included ("10s").
	ConnectTimeout string `json:"connectTimeout,omitempty"`
	// MaxUnauthenticatedConnections bounds the connections that have not
	// yet authenticated; connections beyond it are closed at once.
	MaxUnauthenticatedConnections int `json:"maxUnauthenticatedConnections,omitempty"`
	// MaxUnauthenticatedPerSource bounds the connections of one source (an
	// IPv4 address, an IPv6 /64) that have not yet authenticated, so that
	// one source cannot keep the others out; zero means an eighth of
	// MaxUnauthenticatedConnections.
	MaxUnauthenticatedPerSource int `json:"maxUnauthenticatedPerSource,omitempty"`
}

// Conn returns the connection layer's limits that l sets; zero fields keep
// the layer's defaults. A nil l sets none.
func (l *Limits) Conn() mqttconn.Limits {
	if l == nil {
		return mqttconn.Limits{}
	}
	return mqttconn.Limits{
		MaxPacketSize:       uint32(l.MaxPacketSize), // at most 268435455, checked by Load
		ConnectTimeout:      l.ConnectTimeoutDuration(),
		MaxPending:          l.MaxUnauthenticatedConnections,
		MaxPendingPerSource: l.MaxUnauthenticatedPerSource,
	}
}

// ConnectTimeoutDuration returns ConnectTimeout, zero when it is unset or
// l is nil. A value that does not parse also gives zero: Parse refuses one
// while decoding and [Config.Validate] (which Build runs) refuses one set
// in Go, so use it on a validated configuration.
func (l *Limits) ConnectTimeoutDuration() time.Duration {
	if l == nil || l.ConnectTimeout == "" {
		return 0
	}
	d, _ := time.ParseDuration(l.ConnectTimeout)
	return d
}

// DefaultAdminAddress is the admin listener's address when the
// configuration names none: loopback only.
const DefaultAdminAddress = "127.0.0.1:9090"

// Admin configures the admin listener and the audit log (ours).
type Admin struct {
	// Address is HOST:PORT; absent means DefaultAdminAddress, "" or "off"
	// turns the listener off. A non-loopback address exposes the metrics
	// (and pprof, when on) to the network.
	Address *string `json:"address,omitempty"`
	// Pprof serves /debug/pprof (off by default: it shows the program's
	// memory and lets a caller profile it).
	Pprof bool `json:"pprof,omitempty"`
	// Audit sets the levels and sampling of the decision records
	// (auth.AuditConfig).
	Audit *Audit `json:"audit,omitempty"`
}

// Audit configures the audit log (auth.AuditConfig). Levels are slog
// level names: debug, info, warn, error (info when empty).
type Audit struct {
	// Level is the level of passes and sampled authorization allows.
	Level string `json:"level,omitempty"`
	// DenyLevel is the level of refusals, disconnects and authorization
	// denies.
	DenyLevel string `json:"denyLevel,omitempty"`
	// SampleAllows logs one authorization allow in SampleAllows (1: every
	// allow); zero logs none. Denies are always logged.
	SampleAllows uint64 `json:"sampleAllows,omitempty"`
}

// Throttle configures the brute-force defence (ours; package throttle):
// one set of failure counters for all ports, in front of every port's
// chain. A CONNECT from an address group or identity over its limit gets
// CONNACK 0x9F (Connection rate exceeded) without its chain being asked.
// Zero values keep throttle's defaults.
type Throttle struct {
	// Disabled turns the defence off.
	Disabled bool `json:"disabled,omitempty"`
	// Address limits failures per client address group (default: 10 in a
	// row, then one per 6s).
	Address *ThrottleLimit `json:"address,omitempty"`
	// Identity limits failures per claimed user name, client identifier
	// and verified identity (default: 10 in a row, then one per 6s).
	Identity *ThrottleLimit `json:"identity,omitempty"`
	// DisableAddress and DisableIdentity turn one counter off. The
	// identity counter lets anyone lock an account out for a while by
	// failing in its name.
	DisableAddress  bool `json:"disableAddress,omitempty"`
	DisableIdentity bool `json:"disableIdentity,omitempty"`
	// IPv4Prefix and IPv6Prefix group client addresses (default /32 and
	// /64).
	IPv4Prefix int `json:"ipv4Prefix,omitempty"`
	IPv6Prefix int `json:"ipv6Prefix,omitempty"`
	// MaxEntries bounds the counters held (default 100000, about 60 bytes
	// each; at least 64).
	MaxEntries int `json:"maxEntries,omitempty"`
	// MarkerUsernames are CONNECT user names that name no one (a marker
	// every client of some method sends): never identity counters
	// (throttle.Config.MarkerUsernames). The passwordUsername of each JWT
	// method reading the password is one without being listed ("jwt" when
	// it sets none, the README's `-u jwt`), and so is the user name of
	// any ServiceAccountToken or JWT Authentication Method, which those
	// methods do not verify, and "K8S-SAT" when a ServiceAccountToken
	// method allows the user name fallback of MQTT 3.1.1 clients.
	MarkerUsernames []string `json:"markerUsernames,omitempty"`
}

// ThrottleLimit is a token bucket of failures: Burst in a row, then one
// more per Every.
type ThrottleLimit struct {
	// Every is the time after which one failure is forgiven ("6s").
	Every string `json:"every,omitempty"`
	// Burst is how many failures in a row are allowed.
	Burst int `json:"burst,omitempty"`
}

// Session configures the sessions (auth.Config).
type Session struct {
	// OnExpiry is disconnect (DISCONNECT 0xA0, the default) or close (no
	// DISCONNECT, as AIO).
	OnExpiry string `json:"onExpiry,omitempty"`
	// AllowIdentityChange lets re-authentication change the user name.
	AllowIdentityChange bool `json:"allowIdentityChange,omitempty"`
	// ExchangeTimeout bounds an enhanced-authentication exchange ("30s").
	ExchangeTimeout string `json:"exchangeTimeout,omitempty"`
	// ReauthInterval and ReauthBurst bound the re-authentications of one
	// connection: ReauthBurst in a row, then one per ReauthInterval
	// (defaults "1s" and 5; "-1s" turns the bound off). A client beyond
	// them is disconnected with 0x96 (Message rate too high).
	ReauthInterval string `json:"reauthInterval,omitempty"`
	ReauthBurst    int    `json:"reauthBurst,omitempty"`
}
