package customauth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// APIVersion is the version of the custom authentication API this package
// speaks.
const APIVersion = "0.5.0"

// spokenVersions are the API versions this package speaks, most preferred
// first. A 422 answer is retried with the first of these the server lists.
var spokenVersions = []string{APIVersion}

// Defaults of a [Config].
const (
	DefaultTimeout          = 5 * time.Second
	DefaultMaxResponseBytes = 64 << 10
	DefaultMaxConcurrent    = 64
	DefaultBreakerFailures  = 5
	DefaultBreakerCoolDown  = 10 * time.Second
	DefaultCacheEntries     = 10_000
	DefaultMethodName       = "Custom"
)

// Config configures an [Authenticator].
type Config struct {
	// Endpoint is the custom authentication server's URL, for example
	// https://auth.example.com/. It must be https unless
	// InsecureAllowHTTP is set. Requests go to
	// Endpoint?api-version=0.5.0. Required.
	Endpoint string
	// RootCAs verifies the server's certificate; nil means the system
	// roots.
	RootCAs *x509.CertPool
	// ClientCertificate, when set, is presented to the server (mutual TLS):
	// the broker authenticates itself. GetClientCertificate, when set,
	// takes precedence and lets the certificate rotate.
	ClientCertificate    *tls.Certificate
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// Headers are sent with every request (for example an API key the
	// server expects).
	Headers http.Header
	// Timeout is the ceiling of one request, applied on top of the
	// caller's context deadline. Zero means DefaultTimeout.
	Timeout time.Duration
	// MaxResponseBytes bounds a response body. Zero means
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// MaxConcurrent bounds the requests in flight; more wait for a slot
	// until their context ends. Zero means DefaultMaxConcurrent.
	MaxConcurrent int
	// Breaker configures the circuit breaker.
	Breaker BreakerConfig
	// Cache configures the optional cache of Pass results.
	Cache CacheConfig
	// MethodName is the Principal's method when the client named no
	// Authentication Method. Zero means DefaultMethodName.
	MethodName string
	// Logger receives structured records of failures; nil means
	// slog.Default(). Credentials are never logged.
	Logger *slog.Logger
	// Now is the time source; nil means time.Now.
	Now func() time.Time
	// Observer, when set, is told of each call to the server (with its
	// latency), each call answered from the cache or shared with an
	// identical one in flight, and each breaker change, as
	// auth.ComponentCustom.
	Observer auth.Observer
	// Transport, when set, replaces the HTTP transport this package builds
	// from RootCAs and the client certificate (a test may count requests
	// with it). It must do TLS itself.
	Transport http.RoundTripper

	// InsecureAllowHTTP allows a plain http:// Endpoint. It sends
	// client passwords and tokens in clear text over the network: for tests
	// on loopback only.
	InsecureAllowHTTP bool
}

// BreakerConfig configures the circuit breaker: after Failures
// consecutive failures to reach the server (transport errors, timeouts,
// 5xx and malformed answers), no request is made for CoolDown and every
// client gets Unavailable at once; then one probe request is let through,
// and its success closes the breaker again.
type BreakerConfig struct {
	// Failures opens the breaker; zero means DefaultBreakerFailures.
	Failures int
	// CoolDown is how long the breaker stays open; zero means
	// DefaultBreakerCoolDown.
	CoolDown time.Duration
	// Disabled turns the breaker off: every client waits for its own
	// request to fail.
	Disabled bool
}

// CacheConfig configures the cache of Pass results. A result is kept until
// the credential's expiry or TTL, whichever is first; failures and errors
// are never cached. Entries are keyed by a keyed hash (HMAC-SHA-256 with a
// random per-process key) of everything sent to the server, never by the
// credentials themselves.
type CacheConfig struct {
	// TTL enables the cache when positive.
	TTL time.Duration
	// MaxEntries bounds the cache; zero means DefaultCacheEntries. When it
	// is full, the least recently used entry goes.
	MaxEntries int
}

func (c *Config) validate() (*url.URL, error) {
	if c.Endpoint == "" {
		return nil, errors.New("customauth: Config.Endpoint is required")
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("customauth: Config.Endpoint: %w", err)
	}
	switch {
	case u.Host == "":
		return nil, fmt.Errorf("customauth: Config.Endpoint %q has no host", c.Endpoint)
	case u.Scheme == "https":
	case u.Scheme == "http" && c.InsecureAllowHTTP:
	case u.Scheme == "http":
		return nil, fmt.Errorf("customauth: Config.Endpoint %q: plain HTTP would send credentials in clear text; use https (InsecureAllowHTTP exists for tests)", c.Endpoint)
	default:
		return nil, fmt.Errorf("customauth: Config.Endpoint %q: scheme must be https", c.Endpoint)
	}
	if u.User != nil {
		return nil, errors.New("customauth: Config.Endpoint must not carry user information; use Headers")
	}
	if c.Timeout < 0 || c.MaxResponseBytes < 0 || c.MaxConcurrent < 0 || c.Breaker.Failures < 0 || c.Breaker.CoolDown < 0 || c.Cache.TTL < 0 || c.Cache.MaxEntries < 0 {
		return nil, errors.New("customauth: negative Config value")
	}
	if u.Path == "" {
		u.Path = "/"
	}
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

// endpointFor returns the request URL for an API version.
func endpointFor(u *url.URL, version string) string {
	q := url.Values{"api-version": {version}}
	return u.String() + "?" + q.Encode()
}

func (c *Config) transport() http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    c.RootCAs,
	}
	switch {
	case c.GetClientCertificate != nil:
		tc.GetClientCertificate = c.GetClientCertificate
	case c.ClientCertificate != nil:
		tc.Certificates = []tls.Certificate{*c.ClientCertificate}
	}
	max := c.MaxConcurrent
	if max == 0 {
		max = DefaultMaxConcurrent
	}
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        max,
		MaxIdleConnsPerHost: max, // connections are reused across clients
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
}

// cleanHeaders copies the configured headers, refusing the ones this
// package sets itself.
func cleanHeaders(h http.Header) (http.Header, error) {
	out := http.Header{}
	for k, vs := range h {
		switch strings.ToLower(k) {
		case "content-type", "content-length", "host":
			return nil, fmt.Errorf("customauth: Config.Headers must not set %s", k)
		}
		for _, v := range vs {
			out.Add(k, v)
		}
	}
	return out, nil
}
