package kubeapi

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// In-cluster locations, as client-go's rest.InClusterConfig reads them.
// Variables so that tests can point them elsewhere.
var (
	InClusterTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	InClusterCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// MaxResponse bounds every response body read from the API, and every
// object of a watch stream.
const MaxResponse = 1 << 20

// DefaultRequestTimeout bounds one call when Config.RequestTimeout is zero.
const DefaultRequestTimeout = 5 * time.Second

// ErrUnavailable is the sentinel of transport failures when
// Config.Unavailable is nil.
var ErrUnavailable = errors.New("kubeapi: Kubernetes API unavailable")

// ErrGone is a 410 Gone answer: a resourceVersion too old to watch from,
// or an expired continue token. The caller lists again.
var ErrGone = errors.New("kubeapi: resourceVersion too old (410 Gone)")

// Config says how to reach the API server.
type Config struct {
	// APIServer is the API server's URL ("https://host:6443"). Empty: the
	// in-cluster environment (KUBERNETES_SERVICE_HOST and _PORT, the pod's
	// service account token and CA) unless CAFile and TokenFile say
	// otherwise.
	APIServer string
	// CAFile is the PEM bundle that verifies the API server's certificate;
	// RootCAs, when set, is used instead. Neither: the system roots.
	CAFile  string
	RootCAs *x509.CertPool
	// TokenFile holds the bearer token, re-read when the file changes and
	// when the API answers 401.
	TokenFile string
	// Anonymous sends no bearer token.
	Anonymous bool
	// HTTPClient, when set, is used as is: it must carry its own TLS
	// configuration.
	HTTPClient *http.Client
	// RequestTimeout bounds each call (not a watch stream); zero means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// InsecureAllowHTTP allows an http:// APIServer. Tests only.
	InsecureAllowHTTP bool
	// InsecureSkipTLSVerify does not verify the API server's certificate.
	InsecureSkipTLSVerify bool

	// Name prefixes the client's own errors ("satauth").
	Name string
	// Unavailable is the sentinel that transport failures wrap; nil means
	// ErrUnavailable.
	Unavailable error
	// APIError makes the error of an unexpected answer; nil means a
	// *StatusError.
	APIError func(op string, status int, message string) error
	// WatchObserver, when set, is told of each watch stream: once it is
	// open (failed false, with the time it took to open), and when it
	// fails to open or breaks (failed true); a stream that the API server
	// ends normally or that the caller cancels is no failure.
	WatchObserver func(latency time.Duration, failed bool)
}

// StatusError is an unexpected answer when Config.APIError is nil.
type StatusError struct {
	Op      string
	Code    int
	Message string
}

// Error names the call and the status.
func (e *StatusError) Error() string {
	s := fmt.Sprintf("kubeapi: %s: %d %s", e.Op, e.Code, http.StatusText(e.Code))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Client makes the calls. It is safe for concurrent use.
type Client struct {
	base        *url.URL
	hc          *http.Client
	watchHC     *http.Client // hc without its overall timeout, for watch streams
	token       *tokenFile   // nil: send no Authorization (anonymous)
	timeout     time.Duration
	name        string
	unavailable error
	apiErr      func(op string, status int, message string) error
	watchObs    func(latency time.Duration, failed bool)
}

// New builds a Client from cfg, or from the in-cluster environment when
// cfg.APIServer is empty. It reads the token file once, so that a missing
// token fails here.
func New(cfg Config) (*Client, error) {
	name := cfg.Name
	if name == "" {
		name = "kubeapi"
	}
	server, caFile, tokenPath := cfg.APIServer, cfg.CAFile, cfg.TokenFile
	if server == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, fmt.Errorf("%s: Config.APIServer is empty and KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set (not in a cluster)", name)
		}
		server = "https://" + net.JoinHostPort(host, port)
		if caFile == "" {
			caFile = InClusterCAFile
		}
		if tokenPath == "" && !cfg.Anonymous {
			tokenPath = InClusterTokenFile
		}
	}
	u, err := url.Parse(server)
	if err != nil {
		return nil, fmt.Errorf("%s: Config.APIServer: %w", name, err)
	}
	if u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && cfg.InsecureAllowHTTP)) {
		return nil, fmt.Errorf("%s: Config.APIServer %q must be an https:// URL", name, server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	c := &Client{base: u, timeout: cfg.RequestTimeout, name: name, unavailable: cfg.Unavailable, apiErr: cfg.APIError,
		watchObs: cfg.WatchObserver}
	if c.unavailable == nil {
		c.unavailable = ErrUnavailable
	}
	if c.apiErr == nil {
		c.apiErr = func(op string, code int, msg string) error { return &StatusError{Op: op, Code: code, Message: msg} }
	}
	if tokenPath != "" && !cfg.Anonymous {
		c.token = &tokenFile{path: tokenPath, name: name}
		if _, err := c.token.get(false); err != nil {
			return nil, err
		}
	}
	if cfg.HTTPClient != nil {
		c.hc = cfg.HTTPClient
		return c.withWatchClient(), nil
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case cfg.InsecureSkipTLSVerify:
		tlsConf.InsecureSkipVerify = true
	case cfg.RootCAs != nil:
		tlsConf.RootCAs = cfg.RootCAs
	case caFile != "":
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s: reading the API server's CA: %w", name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate in %s", name, caFile)
		}
		tlsConf.RootCAs = pool
	}
	c.hc = &http.Client{
		Timeout: cfg.RequestTimeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: cfg.RequestTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       tlsConf,
			TLSHandshakeTimeout:   cfg.RequestTimeout,
			ResponseHeaderTimeout: cfg.RequestTimeout,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          16,
			MaxIdleConnsPerHost:   16,
			// A burst of connects must not become a burst of
			// connections to the API server (HTTP/2 multiplexes).
			MaxConnsPerHost: 16,
			IdleConnTimeout: 90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c.withWatchClient(), nil
}

// NewForTest returns a Client of base that sends every request through hc
// with no token, for tests of decoders.
func NewForTest(base string, hc *http.Client) *Client {
	u, _ := url.Parse(base)
	c := &Client{base: u, hc: hc, timeout: DefaultRequestTimeout, name: "kubeapi", unavailable: ErrUnavailable}
	c.apiErr = func(op string, code int, msg string) error { return &StatusError{Op: op, Code: code, Message: msg} }
	return c.withWatchClient()
}

// withWatchClient sets c.watchHC from c.hc and returns c.
func (c *Client) withWatchClient() *Client {
	w := *c.hc
	w.Timeout = 0
	c.watchHC = &w
	return c
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Unavailable returns the sentinel that transport failures wrap.
func (c *Client) Unavailable() error { return c.unavailable }

// tokenFile is the client's bearer token, re-read when the file changes
// (the kubelet rotates projected tokens by swapping a symlink) or when the
// API refuses it.
type tokenFile struct {
	path, name string

	mu    sync.Mutex
	token string
	mod   time.Time
	size  int64
	check time.Time
}

// tokenRecheck is how often the file is stat'ed for a rotation.
const tokenRecheck = time.Second

// get returns the current token; force re-reads the file.
func (t *tokenFile) get(force bool) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if !force && t.token != "" && now.Sub(t.check) < tokenRecheck {
		return t.token, nil
	}
	t.check = now
	fi, err := os.Stat(t.path)
	if err != nil {
		if t.token != "" {
			return t.token, nil // keep the last good token during a swap
		}
		return "", fmt.Errorf("%s: the broker's token file: %w", t.name, err)
	}
	if !force && t.token != "" && fi.ModTime().Equal(t.mod) && fi.Size() == t.size {
		return t.token, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		if t.token != "" {
			return t.token, nil
		}
		if err == nil {
			err = errors.New("empty file")
		}
		return "", fmt.Errorf("%s: the broker's token file %s: %w", t.name, t.path, err)
	}
	t.token, t.mod, t.size = string(bytes.TrimSpace(b)), fi.ModTime(), fi.Size()
	return t.token, nil
}

// Status is the part of a metav1.Status the client reads.
type Status struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
	Code    int    `json:"code"`
}

// Request is one call.
type Request struct {
	// Op names the call in errors: "create tokenreviews".
	Op string
	// Method and Path (with its query) of the call.
	Method, Path string
	// Body, when not nil, is sent as JSON (or as is when it is a
	// []byte); ContentType overrides application/json.
	Body        any
	ContentType string
	// Accept overrides application/json.
	Accept string
	// Errors are returned as they are for the statuses they name (a 404
	// the caller expects, say).
	Errors map[int]error
}

// Do sends one request and decodes a 2xx JSON answer into out (nil: the
// answer is read and dropped). A status r.Errors names returns that error;
// every other failure is Config.APIError's error or one wrapping the
// Unavailable sentinel.
func (c *Client) Do(ctx context.Context, r Request, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var payload []byte
	switch b := r.Body.(type) {
	case nil:
	case []byte:
		payload = b
	default:
		var err error
		if payload, err = json.Marshal(b); err != nil {
			return fmt.Errorf("%s: %s: %w", c.name, r.Op, err)
		}
	}
	for attempt := 0; ; attempt++ {
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, r.Method, c.base.String()+r.Path, rd)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", c.name, r.Op, err)
		}
		req.Header.Set("Accept", cmp.Or(r.Accept, "application/json"))
		if payload != nil {
			req.Header.Set("Content-Type", cmp.Or(r.ContentType, "application/json"))
		}
		sent, err := c.authorize(req, attempt > 0)
		if err != nil {
			return err
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			// url.Error carries the URL, never the token.
			return fmt.Errorf("%w: %s: %w", c.unavailable, r.Op, err)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("%w: %s: reading the answer: %w", c.unavailable, r.Op, err)
		}
		if len(data) > MaxResponse {
			return fmt.Errorf("%w: %s: answer larger than %d bytes", c.unavailable, r.Op, MaxResponse)
		}
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			if out == nil {
				return nil
			}
			if err := json.Unmarshal(data, out); err != nil {
				return fmt.Errorf("%w: %s: decoding the answer: %w", c.unavailable, r.Op, err)
			}
			return nil
		case r.Errors[resp.StatusCode] != nil:
			return r.Errors[resp.StatusCode]
		case resp.StatusCode == http.StatusUnauthorized && attempt == 0 && c.retryToken(sent):
			continue
		}
		return c.statusErr(r.Op, resp.StatusCode, data)
	}
}

// authorize sets the bearer token (re-read when force) and returns it.
func (c *Client) authorize(req *http.Request, force bool) (string, error) {
	if c.token == nil {
		return "", nil
	}
	sent, err := c.token.get(force)
	if err != nil {
		return "", fmt.Errorf("%w: %w", c.unavailable, err)
	}
	req.Header.Set("Authorization", "Bearer "+sent)
	return sent, nil
}

// retryToken reports whether a 401 is worth one retry: the token file
// holds another token than the one sent (it rotated since it was read).
func (c *Client) retryToken(sent string) bool {
	if c.token == nil {
		return false
	}
	fresh, err := c.token.get(true)
	return err == nil && fresh != sent
}

// statusErr makes the error of a non-2xx answer.
func (c *Client) statusErr(op string, code int, body []byte) error {
	var st Status
	_ = json.Unmarshal(body, &st)
	return c.apiErr(op, code, Truncate(st.Message, 256))
}

// Truncate cuts s to n bytes.
func Truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
