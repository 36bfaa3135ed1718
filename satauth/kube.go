package satauth

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/mqttauth/mqttauth/internal/kubeapi"
)

// maxResponse bounds every response body read from the API.
const maxResponse = kubeapi.MaxResponse

// kubeClient is the shared Kubernetes client (package internal/kubeapi)
// with satauth's errors and observation of the calls satauth makes.
type kubeClient struct {
	*kubeapi.Client
	obs observer // nil when not observed
}

// newKubeClient builds the client from cfg, or from the in-cluster
// environment when cfg.APIServer is empty.
func newKubeClient(cfg *Config) (*kubeClient, error) {
	kc := &kubeClient{obs: cfg.Observer}
	var watchObs func(time.Duration, bool)
	if cfg.Observer != nil {
		watchObs = kc.observeWatch
	}
	c, err := kubeapi.New(kubeapi.Config{
		APIServer: cfg.APIServer, CAFile: cfg.CAFile, RootCAs: cfg.RootCAs,
		TokenFile: cfg.TokenFile, Anonymous: cfg.Anonymous, HTTPClient: cfg.HTTPClient,
		RequestTimeout: cfg.RequestTimeout, InsecureAllowHTTP: cfg.InsecureAllowHTTP,
		InsecureSkipTLSVerify: cfg.InsecureSkipTLSVerify,
		Name:                  "satauth", Unavailable: ErrUnavailable,
		APIError: func(op string, code int, msg string) error {
			return &APIError{Op: op, StatusCode: code, Message: msg}
		},
		WatchObserver: watchObs,
	})
	if err != nil {
		return nil, err
	}
	kc.Client = c
	return kc, nil
}

// close releases idle connections of a transport the client built.
func (c *kubeClient) close() { c.Close() }

// do sends one request and decodes a 2xx JSON answer into out. A 404 with
// notFound set returns notFound. Every other failure is an *APIError or an
// error wrapping ErrUnavailable.
func (c *kubeClient) do(ctx context.Context, op, method, path string, body, out any, notFound error) (err error) {
	defer c.observe(op, time.Now(), &err)
	r := kubeapi.Request{Op: op, Method: method, Path: path, Body: body}
	if op == opJWKS {
		// kube-apiserver serves the JWKS only as this type (406 Not
		// Acceptable for application/json alone).
		r.Accept = "application/jwk-set+json, application/json"
	}
	if notFound != nil {
		r.Errors = map[int]error{http.StatusNotFound: notFound}
	}
	return c.Do(ctx, r, out)
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
