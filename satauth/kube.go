package satauth

import (
	"bytes"
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
	inClusterTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	inClusterCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// maxResponse bounds every response body read from the API.
const maxResponse = 1 << 20

// kubeClient is a small client of the few Kubernetes API calls satauth
// makes. It is not a general client: no watch, no retries, no discovery.
type kubeClient struct {
	base    *url.URL
	hc      *http.Client
	watchHC *http.Client // hc without its overall timeout, for watch streams
	token   *tokenFile   // nil: send no Authorization (anonymous)
	timeout time.Duration
	obs     observer // nil when not observed
}

// withWatchClient sets c.watchHC from c.hc and returns c.
func (c *kubeClient) withWatchClient() *kubeClient {
	w := *c.hc
	w.Timeout = 0
	c.watchHC = &w
	return c
}

// newKubeClient builds the client from cfg, or from the in-cluster
// environment when cfg.APIServer is empty.
func newKubeClient(cfg *Config) (*kubeClient, error) {
	server, caFile, tokenPath := cfg.APIServer, cfg.CAFile, cfg.TokenFile
	if server == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, errors.New("satauth: Config.APIServer is empty and KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set (not in a cluster)")
		}
		server = "https://" + net.JoinHostPort(host, port)
		if caFile == "" {
			caFile = inClusterCAFile
		}
		if tokenPath == "" && !cfg.Anonymous {
			tokenPath = inClusterTokenFile
		}
	}
	u, err := url.Parse(server)
	if err != nil {
		return nil, fmt.Errorf("satauth: Config.APIServer: %w", err)
	}
	if u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && cfg.InsecureAllowHTTP)) {
		return nil, fmt.Errorf("satauth: Config.APIServer %q must be an https:// URL", server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c := &kubeClient{base: u, timeout: cfg.RequestTimeout, obs: cfg.Observer}
	if tokenPath != "" && !cfg.Anonymous {
		c.token = &tokenFile{path: tokenPath}
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
			return nil, fmt.Errorf("satauth: reading the API server's CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("satauth: no PEM certificate in %s", caFile)
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

// close releases idle connections of a transport the client built.
func (c *kubeClient) close() { c.hc.CloseIdleConnections() }

// tokenFile is the broker's own token, re-read when the file changes (the
// kubelet rotates projected tokens by swapping a symlink) or when the API
// refuses it.
type tokenFile struct {
	path string

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
		return "", fmt.Errorf("satauth: the broker's token file: %w", err)
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
		return "", fmt.Errorf("satauth: the broker's token file %s: %w", t.path, err)
	}
	t.token, t.mod, t.size = string(bytes.TrimSpace(b)), fi.ModTime(), fi.Size()
	return t.token, nil
}

// status is the part of a metav1.Status the client reads.
type status struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
	Code    int    `json:"code"`
}

// do sends one request and decodes a 2xx JSON answer into out. A 404 with
// notFound set returns notFound. Every other failure is an *APIError or an
// error wrapping ErrUnavailable.
func (c *kubeClient) do(ctx context.Context, op, method, path string, body, out any, notFound error) (err error) {
	defer c.observe(op, time.Now(), &err)
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("satauth: %s: %w", op, err)
		}
	}
	for attempt := 0; ; attempt++ {
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
		if err != nil {
			return fmt.Errorf("satauth: %s: %w", op, err)
		}
		if accept, ok := ctx.Value(acceptKey{}).(string); ok {
			req.Header.Set("Accept", accept)
		} else if op == opJWKS {
			// kube-apiserver serves the JWKS only as this type (406
			// Not Acceptable for application/json alone).
			req.Header.Set("Accept", "application/jwk-set+json, application/json")
		} else {
			req.Header.Set("Accept", "application/json")
		}
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		var sent string
		if c.token != nil {
			if sent, err = c.token.get(attempt > 0); err != nil {
				return fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			req.Header.Set("Authorization", "Bearer "+sent)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			// url.Error carries the URL, never the token.
			return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("%w: %s: reading the answer: %w", ErrUnavailable, op, err)
		}
		if len(data) > maxResponse {
			return fmt.Errorf("%w: %s: answer larger than %d bytes", ErrUnavailable, op, maxResponse)
		}
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			if err := json.Unmarshal(data, out); err != nil {
				return fmt.Errorf("%w: %s: decoding the answer: %w", ErrUnavailable, op, err)
			}
			return nil
		case resp.StatusCode == http.StatusNotFound && notFound != nil:
			return notFound
		case resp.StatusCode == http.StatusUnauthorized && attempt == 0 && c.token != nil:
			// The token may have rotated since it was read: read it
			// again and retry once if it changed.
			if fresh, err := c.token.get(true); err == nil && fresh != sent {
				continue
			}
		}
		var st status
		_ = json.Unmarshal(data, &st)
		msg := st.Message
		if len(msg) > 256 {
			msg = msg[:256]
		}
		return &APIError{Op: op, StatusCode: resp.StatusCode, Message: msg}
	}
}

// tokenReview is the TokenReview of authentication.k8s.io/v1.
type tokenReview struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Spec       tokenReviewSpec   `json:"spec"`
	Status     tokenReviewStatus `json:"status"`
}

type tokenReviewSpec struct {
	Token     string   `json:"token"`
	Audiences []string `json:"audiences,omitempty"`
}

type tokenReviewStatus struct {
	Authenticated bool     `json:"authenticated"`
	User          userInfo `json:"user"`
	Audiences     []string `json:"audiences"`
	Error         string   `json:"error"`
}

type userInfo struct {
	Username string              `json:"username"`
	UID      string              `json:"uid"`
	Groups   []string            `json:"groups"`
	Extra    map[string][]string `json:"extra"`
}

// The TokenReview's user.extra keys that name a bound token's pod.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// review asks the TokenReview API about token.
func (c *kubeClient) review(ctx context.Context, token string, audiences []string) (tokenReviewStatus, error) {
	in := tokenReview{
		APIVersion: "authentication.k8s.io/v1",
		Kind:       "TokenReview",
		Spec:       tokenReviewSpec{Token: token, Audiences: audiences},
	}
	var out tokenReview
	if err := c.do(ctx, opTokenReview, http.MethodPost, "/apis/authentication.k8s.io/v1/tokenreviews", in, &out, nil); err != nil {
		return tokenReviewStatus{}, err
	}
	return out.Status, nil
}

// serviceAccount is the part of a core/v1 ServiceAccount satauth reads.
type serviceAccount struct {
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		UID         string            `json:"uid"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
}

// getServiceAccount reads one ServiceAccount; ErrServiceAccountNotFound
// when it does not exist.
func (c *kubeClient) getServiceAccount(ctx context.Context, ns, name string) (*serviceAccount, error) {
	var sa serviceAccount
	path := "/api/v1/namespaces/" + url.PathEscape(ns) + "/serviceaccounts/" + url.PathEscape(name)
	err := c.do(ctx, opGetServiceAccount, http.MethodGet, path, nil, &sa, ErrServiceAccountNotFound)
	if err != nil {
		return nil, err
	}
	return &sa, nil
}

// discovery is the part of the OIDC discovery document satauth reads.
type discovery struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}
