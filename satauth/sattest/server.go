package sattest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mqttauth/mqttauth/satauth"
)

// DefaultIssuer is the issuer of a Server's tokens unless Options.Issuer
// names another: the one a default cluster uses.
const DefaultIssuer = "https://kubernetes.default.svc.cluster.local"

// Options configure a [Server]. The zero value is usable.
type Options struct {
	// Issuer is the iss of the tokens; empty means DefaultIssuer.
	Issuer string
	// Now is the server's clock, for token times and its own checks; nil
	// means time.Now.
	Now func() time.Time
}

// Server is a fake Kubernetes API server over TLS. It serves the calls
// package satauth makes, with the semantics of a real API server:
//
//   - POST /apis/authentication.k8s.io/v1/tokenreviews authenticates the
//     tokens the Server signed (signature, exp, nbf, audiences, service
//     account existence and UID);
//   - GET /api/v1/namespaces/NS/serviceaccounts/NAME returns the service
//     accounts added with AddServiceAccount, with their annotations;
//   - GET /.well-known/openid-configuration and /openid/v1/jwks publish the
//     signing keys;
//   - GET /api/v1/namespaces/NS/serviceaccounts lists the accounts and,
//     with ?watch=1&resourceVersion=RV, streams their changes (ADDED,
//     MODIFIED, DELETED) as JSON events; Compact makes older versions 410
//     Gone and EndWatches ends the streams, as a restarting API server
//     does; GET .../pods lists and watches the pods of AddPod and DeletePod;
//   - POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews allows
//     every permission but those Forbid took away.
//
// Every call must carry the broker's token (BrokerToken), else 401; Forbid
// makes it lack RBAC (403). Fail and Hang inject outages.
type Server struct {
	tb     testing.TB
	srv    *httptest.Server
	issuer string
	now    func() time.Time

	caFile, tokenFile, jwksFile string
	brokerToken                 string

	mu       sync.Mutex
	keys     []*signingKey // keys[0] signs
	accounts map[string]*account
	pods     map[string]*account // "ns/name" -> the pod's UID
	forbid   map[string]bool     // endpoint -> 403
	fail     int
	hang     bool
	hangCh   chan struct{}

	// The watch: every change of a service account is an event with the
	// next resourceVersion; watchers wait on changed.
	rv       int64
	events   []event // since the last Compact
	compacts int64   // resourceVersions at or below it are gone (410)
	changed  chan struct{}
	endWatch chan struct{}

	counts [numEndpoints]atomic.Int64
}

// event is one change of a service account, as a watch reports it.
type event struct {
	rv   int64
	res  string // "serviceaccounts" or "pods"
	typ  string
	ns   string
	meta map[string]any
}

type signingKey struct {
	priv *rsa.PrivateKey
	kid  string
}

type account struct {
	uid         string
	annotations map[string]string
}

// Endpoint names a call the Server serves, for Calls.
type Endpoint int

// The endpoints.
const (
	TokenReview Endpoint = iota
	ServiceAccountGet
	Discovery
	JWKS
	// List and Watch count the list and watch calls on serviceaccounts and
	// pods.
	List
	Watch
	// AccessReview counts SelfSubjectAccessReviews.
	AccessReview
	numEndpoints
)

// NewServer starts a Server; it is closed when the test ends.
func NewServer(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s := &Server{
		tb:       tb,
		issuer:   opts.Issuer,
		now:      opts.Now,
		accounts: make(map[string]*account),
		pods:     make(map[string]*account),
		forbid:   make(map[string]bool),
		hangCh:   make(chan struct{}),
		changed:  make(chan struct{}),
		endWatch: make(chan struct{}),
	}
	if s.issuer == "" {
		s.issuer = DefaultIssuer
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.keys = []*signingKey{newKey(tb)}
	s.brokerToken = "broker-" + randomHex(tb, 16)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /apis/authentication.k8s.io/v1/tokenreviews", s.wrap(TokenReview, "tokenreviews", s.tokenReview))
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/serviceaccounts/{name}", s.wrap(ServiceAccountGet, "serviceaccounts", s.getServiceAccount))
	mux.HandleFunc("GET /.well-known/openid-configuration", s.wrap(Discovery, "discovery", s.discovery))
	mux.HandleFunc("GET /openid/v1/jwks", s.wrap(JWKS, "discovery", s.jwks))
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/serviceaccounts", s.wrapList("serviceaccounts", s.listServiceAccounts))
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods", s.wrapList("pods", s.listPods))
	mux.HandleFunc("POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews", s.wrap(AccessReview, "selfsubjectaccessreviews", s.accessReview))
	s.srv = httptest.NewUnstartedServer(mux)
	s.srv.EnableHTTP2 = true
	// Clients that give up mid-handshake are part of the tests.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.StartTLS()

	dir := tb.TempDir()
	s.caFile = filepath.Join(dir, "ca.crt")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
	if err := os.WriteFile(s.caFile, ca, 0o600); err != nil {
		tb.Fatalf("sattest: %v", err)
	}
	s.tokenFile = filepath.Join(dir, "token")
	if err := os.WriteFile(s.tokenFile, []byte(s.brokerToken), 0o600); err != nil {
		tb.Fatalf("sattest: %v", err)
	}
	s.jwksFile = filepath.Join(dir, "jwks.json")
	tb.Cleanup(func() {
		s.mu.Lock()
		if s.hang {
			s.hang = false
			close(s.hangCh)
		}
		s.mu.Unlock()
		s.EndWatches()
		s.srv.Close()
	})
	return s
}

func newKey(tb testing.TB) *signingKey {
	tb.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("sattest: %v", err)
	}
	return &signingKey{priv: priv, kid: randomHex(tb, 8)}
}

func randomHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("sattest: %v", err)
	}
	return hex.EncodeToString(b)
}

// URL returns the server's base URL (https://127.0.0.1:PORT).
func (s *Server) URL() string { return s.srv.URL }

// Issuer returns the iss of the server's tokens.
func (s *Server) Issuer() string { return s.issuer }

// CAFile returns the path of a PEM file with the server's certificate.
func (s *Server) CAFile() string { return s.caFile }

// TokenFile returns the path of a file holding the broker's token.
func (s *Server) TokenFile() string { return s.tokenFile }

// BrokerToken returns the bearer token the server accepts from the broker.
func (s *Server) BrokerToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.brokerToken
}

// Client returns an HTTP client that trusts the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Config returns a satauth.Config that verifies this server's tokens with
// TokenReview and the given audiences. Change Mode to satauth.ModeLocal for
// local verification.
func (s *Server) Config(audiences ...string) satauth.Config {
	return satauth.Config{
		Audiences: audiences,
		APIServer: s.URL(),
		CAFile:    s.caFile,
		TokenFile: s.tokenFile,
		Issuer:    s.issuer,
	}
}

// JWKSFile writes the server's current public keys to a file and returns
// its path, for satauth.Config.JWKSFile.
func (s *Server) JWKSFile() string {
	s.tb.Helper()
	if err := os.WriteFile(s.jwksFile, s.jwksJSON(), 0o600); err != nil {
		s.tb.Fatalf("sattest: %v", err)
	}
	return s.jwksFile
}

// AddServiceAccount creates (or replaces, with a new UID) a service account
// and returns its UID.
func (s *Server) AddServiceAccount(namespace, name string, annotations map[string]string) string {
	s.tb.Helper()
	uid := uuid(s.tb)
	ann := make(map[string]string, len(annotations))
	for k, v := range annotations {
		ann[k] = v
	}
	s.mu.Lock()
	if old := s.accounts[namespace+"/"+name]; old != nil {
		s.notifyLocked("DELETED", namespace, name, old)
	}
	acct := &account{uid: uid, annotations: ann}
	s.accounts[namespace+"/"+name] = acct
	s.notifyLocked("ADDED", namespace, name, acct)
	s.mu.Unlock()
	return uid
}

// SetAnnotations replaces the annotations of an existing service account,
// keeping its UID.
func (s *Server) SetAnnotations(namespace, name string, annotations map[string]string) {
	s.tb.Helper()
	ann := make(map[string]string, len(annotations))
	for k, v := range annotations {
		ann[k] = v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	acct := s.accounts[namespace+"/"+name]
	if acct == nil {
		s.tb.Fatalf("sattest: no service account %s/%s", namespace, name)
	}
	acct.annotations = ann
	s.notifyLocked("MODIFIED", namespace, name, acct)
}

// RotateBrokerToken gives the broker a new token, written to TokenFile, as
// the kubelet rotates a projected token; the old one is refused from now on.
func (s *Server) RotateBrokerToken() {
	s.tb.Helper()
	tok := "broker-" + randomHex(s.tb, 16)
	s.mu.Lock()
	s.brokerToken = tok
	s.mu.Unlock()
	tmp := s.tokenFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok), 0o600); err != nil {
		s.tb.Fatalf("sattest: %v", err)
	}
	if err := os.Rename(tmp, s.tokenFile); err != nil {
		s.tb.Fatalf("sattest: %v", err)
	}
}

// DeleteServiceAccount deletes a service account: its tokens stop being
// authenticated.
func (s *Server) DeleteServiceAccount(namespace, name string) {
	s.mu.Lock()
	if old := s.accounts[namespace+"/"+name]; old != nil {
		delete(s.accounts, namespace+"/"+name)
		s.notifyLocked("DELETED", namespace, name, old)
	}
	s.mu.Unlock()
}

func uuid(tb testing.TB) string {
	h := randomHex(tb, 16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// TokenOptions shape a token from [Server.Token]. The zero value gives a
// valid token for one hour with the audience "aio-mq".
type TokenOptions struct {
	// Audiences are the token's aud; nil means ["aio-mq"].
	Audiences []string
	// Lifetime is exp minus iat; zero means an hour.
	Lifetime time.Duration
	// IssuedAt is the iat and nbf; zero means the server's now.
	IssuedAt time.Time
	// NotBefore overrides nbf when set.
	NotBefore time.Time
	// Issuer overrides the server's issuer.
	Issuer string
	// UID overrides the service account UID in the kubernetes.io claim.
	UID string
	// Subject overrides sub.
	Subject string
	// KeyID overrides the kid header (the key used stays the current one).
	KeyID string
	// Pod binds the token to the pod of that name in the account's
	// namespace, which must have been added with AddPod: the token carries
	// the kubernetes.io.pod claim, and TokenReview authenticates it only
	// while the pod exists (with the pod in user.extra).
	Pod string
}

// Token signs a token for the service account namespace/name, which must
// have been added, with the server's current key.
func (s *Server) Token(namespace, name string, opts TokenOptions) string {
	s.tb.Helper()
	s.mu.Lock()
	acct := s.accounts[namespace+"/"+name]
	key := s.keys[0]
	s.mu.Unlock()
	uid := opts.UID
	if uid == "" {
		if acct == nil {
			s.tb.Fatalf("sattest: no service account %s/%s: call AddServiceAccount first", namespace, name)
		}
		uid = acct.uid
	}
	aud := opts.Audiences
	if aud == nil {
		aud = []string{"aio-mq"}
	}
	iat := opts.IssuedAt
	if iat.IsZero() {
		iat = s.now()
	}
	life := opts.Lifetime
	if life == 0 {
		life = time.Hour
	}
	nbf := iat
	if !opts.NotBefore.IsZero() {
		nbf = opts.NotBefore
	}
	iss := opts.Issuer
	if iss == "" {
		iss = s.issuer
	}
	sub := opts.Subject
	if sub == "" {
		sub = "system:serviceaccount:" + namespace + ":" + name
	}
	kid := opts.KeyID
	if kid == "" {
		kid = key.kid
	}
	c := map[string]any{
		"iss": iss,
		"sub": sub,
		"aud": aud,
		"iat": iat.Unix(),
		"nbf": nbf.Unix(),
		"exp": iat.Add(life).Unix(),
		"jti": uuid(s.tb),
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"serviceaccount": map[string]string{"name": name, "uid": uid},
		},
	}
	if opts.Pod != "" {
		s.mu.Lock()
		p := s.pods[namespace+"/"+opts.Pod]
		s.mu.Unlock()
		if p == nil {
			s.tb.Fatalf("sattest: no pod %s/%s: call AddPod first", namespace, opts.Pod)
		}
		c["kubernetes.io"].(map[string]any)["pod"] = map[string]string{"name": opts.Pod, "uid": p.uid}
	}
	return s.Sign(c, kid)
}

// Sign signs arbitrary claims with RS256 and the current key, with kid as
// the key id; for tests of malformed tokens.
func (s *Server) Sign(claims any, kid string) string {
	s.tb.Helper()
	s.mu.Lock()
	key := s.keys[0]
	s.mu.Unlock()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid))
	if err != nil {
		s.tb.Fatalf("sattest: %v", err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		s.tb.Fatalf("sattest: %v", err)
	}
	return tok
}

// PublicKey returns the current signing key's public key.
func (s *Server) PublicKey() *rsa.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &s.keys[0].priv.PublicKey
}

// RotateKey makes a new key the signing key. The old key stays published
// when keepOld is set, as during a real rotation.
func (s *Server) RotateKey(keepOld bool) {
	s.tb.Helper()
	k := newKey(s.tb)
	s.mu.Lock()
	defer s.mu.Unlock()
	if keepOld {
		s.keys = append([]*signingKey{k}, s.keys...)
	} else {
		s.keys = []*signingKey{k}
	}
}

// Forbid makes the broker lack RBAC for an endpoint: the server answers 403
// to TokenReview or ServiceAccountGet (Discovery and JWKS go together).
func (s *Server) Forbid(e Endpoint, forbidden bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forbid[groupOf(e)] = forbidden
}

func groupOf(e Endpoint) string {
	switch e {
	case TokenReview:
		return "tokenreviews"
	case ServiceAccountGet, List, Watch:
		return "serviceaccounts"
	case AccessReview:
		return "selfsubjectaccessreviews"
	default:
		return "discovery"
	}
}

// Fail makes every call answer with the HTTP status code (500, 503, 401...)
// until Fail(0).
func (s *Server) Fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = status
}

// Hang makes every call block until the client gives up or Hang(false).
func (s *Server) Hang(hang bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hang == s.hang {
		return
	}
	s.hang = hang
	if hang {
		s.hangCh = make(chan struct{})
	} else {
		close(s.hangCh)
	}
}

// Calls returns how many calls the endpoint has answered.
func (s *Server) Calls(e Endpoint) int { return int(s.counts[e].Load()) }

// ResetCalls sets every count to zero.
func (s *Server) ResetCalls() {
	for i := range s.counts {
		s.counts[i].Store(0)
	}
}

func (s *Server) wrap(e Endpoint, group string, h func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.counts[e].Add(1)
		s.mu.Lock()
		fail, hang, hangCh, forbid, broker := s.fail, s.hang, s.hangCh, s.forbid[group], s.brokerToken
		s.mu.Unlock()
		if hang {
			select {
			case <-hangCh:
			case <-r.Context().Done():
				return
			}
		}
		if fail != 0 {
			writeStatus(w, fail, "injected failure")
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+broker {
			writeStatus(w, http.StatusUnauthorized, "Unauthorized")
			return
		}
		if forbid {
			writeStatus(w, http.StatusForbidden, "forbidden: User \"system:serviceaccount:default:broker\" cannot "+group)
			return
		}
		h(w, r)
	}
}

func writeStatus(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "code": code,
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

type reviewBody struct {
	Spec struct {
		Token     string   `json:"token"`
		Audiences []string `json:"audiences"`
	} `json:"spec"`
}

func (s *Server) tokenReview(w http.ResponseWriter, r *http.Request) {
	var in reviewBody
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in); err != nil {
		writeStatus(w, http.StatusBadRequest, "bad TokenReview")
		return
	}
	user, aud, errMsg := s.authenticate(in.Spec.Token, in.Spec.Audiences)
	st := map[string]any{"authenticated": errMsg == ""}
	if errMsg == "" {
		st["user"] = user
		st["audiences"] = aud
	} else {
		st["error"] = errMsg
		st["user"] = map[string]any{}
	}
	writeJSON(w, map[string]any{
		"apiVersion": "authentication.k8s.io/v1",
		"kind":       "TokenReview",
		"status":     st,
	})
}

// authenticate checks a token as the service account authenticator of
// kube-apiserver does.
func (s *Server) authenticate(token string, audiences []string) (map[string]any, []string, string) {
	s.mu.Lock()
	keys := slices.Clone(s.keys)
	s.mu.Unlock()
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, nil, "invalid bearer token"
	}
	var c struct {
		jwt.Claims
		K struct {
			Namespace      string `json:"namespace"`
			ServiceAccount struct {
				Name string `json:"name"`
				UID  string `json:"uid"`
			} `json:"serviceaccount"`
			Pod *struct {
				Name string `json:"name"`
				UID  string `json:"uid"`
			} `json:"pod"`
		} `json:"kubernetes.io"`
	}
	verified := false
	for _, k := range keys {
		if tok.Claims(&k.priv.PublicKey, &c) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, nil, "invalid bearer token, square/go-jose: error in cryptographic primitive"
	}
	if c.Issuer != s.issuer {
		return nil, nil, "invalid bearer token, token issuer is not trusted"
	}
	if len(audiences) == 0 {
		audiences = []string{s.issuer}
	}
	var both []string
	for _, a := range audiences {
		if c.Audience.Contains(a) {
			both = append(both, a)
		}
	}
	if len(both) == 0 {
		return nil, nil, "invalid bearer token, token audiences " + strings.Join(c.Audience, ",") + " is invalid for the target audiences " + strings.Join(audiences, ",")
	}
	if err := c.Claims.ValidateWithLeeway(jwt.Expected{Time: s.now()}, 0); err != nil {
		return nil, nil, "invalid bearer token, service account token has expired"
	}
	s.mu.Lock()
	acct := s.accounts[c.K.Namespace+"/"+c.K.ServiceAccount.Name]
	var pod *account
	if c.K.Pod != nil {
		pod = s.pods[c.K.Namespace+"/"+c.K.Pod.Name]
	}
	s.mu.Unlock()
	if c.K.Pod != nil && (pod == nil || pod.uid != c.K.Pod.UID) {
		return nil, nil, "invalid bearer token, pod " + c.K.Namespace + "/" + c.K.Pod.Name + " not found"
	}
	if acct == nil {
		return nil, nil, "invalid bearer token, service account " + c.K.Namespace + "/" + c.K.ServiceAccount.Name + " not found"
	}
	if acct.uid != c.K.ServiceAccount.UID {
		return nil, nil, "invalid bearer token, service account UID does not match"
	}
	username := "system:serviceaccount:" + c.K.Namespace + ":" + c.K.ServiceAccount.Name
	if c.Subject != username {
		return nil, nil, "invalid bearer token"
	}
	user := map[string]any{
		"username": username,
		"uid":      acct.uid,
		"groups":   []string{"system:serviceaccounts", "system:serviceaccounts:" + c.K.Namespace, "system:authenticated"},
	}
	if c.K.Pod != nil {
		user["extra"] = map[string][]string{
			"authentication.kubernetes.io/pod-name": {c.K.Pod.Name},
			"authentication.kubernetes.io/pod-uid":  {c.K.Pod.UID},
		}
	}
	return user, both, ""
}

func (s *Server) getServiceAccount(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	s.mu.Lock()
	acct := s.accounts[ns+"/"+name]
	var ann map[string]string
	if acct != nil {
		ann = make(map[string]string, len(acct.annotations))
		for k, v := range acct.annotations {
			ann[k] = v
		}
	}
	s.mu.Unlock()
	if acct == nil {
		writeStatus(w, http.StatusNotFound, "serviceaccounts \""+name+"\" not found")
		return
	}
	writeJSON(w, map[string]any{
		"apiVersion": "v1",
		"kind":       "ServiceAccount",
		"metadata":   map[string]any{"name": name, "namespace": ns, "uid": acct.uid, "annotations": ann},
	})
}

func (s *Server) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{
		"issuer":                                s.issuer,
		"jwks_uri":                              s.issuer + "/openid/v1/jwks",
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	// As kube-apiserver: only application/jwk-set+json is served.
	if !strings.Contains(r.Header.Get("Accept"), "application/jwk-set+json") {
		writeStatus(w, http.StatusNotAcceptable, "406: Not Acceptable\n\nAvailable representations: application/jwk-set+json")
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(s.jwksJSON())
}

func (s *Server) jwksJSON() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var set jose.JSONWebKeySet
	for _, k := range s.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: "RS256", Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err) // cannot happen with RSA public keys
	}
	return b
}
