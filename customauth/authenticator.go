package customauth

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// Errors, for errors.Is on the Err of a Result.
var (
	// ErrCircuitOpen means the breaker is open: no request was made.
	ErrCircuitOpen = errors.New("customauth: circuit breaker open")
	// ErrBadResponse means the server's answer could not be used.
	ErrBadResponse = errors.New("customauth: bad response")
	// ErrServer means the server could not be reached or failed (a
	// transport error, a timeout, a 5xx status).
	ErrServer = errors.New("customauth: server unavailable")
	// ErrVersion means the server speaks no API version this package
	// speaks.
	ErrVersion = errors.New("customauth: no common API version")
	// ErrDenied means the server refused the client (403).
	ErrDenied = errors.New("customauth: denied by the server")
)

// StatusError is an unexpected HTTP status from the server.
type StatusError struct {
	Status int
	// Body is the start of the response body, for the log.
	Body string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return "customauth: unexpected status " + strconv.Itoa(e.Status)
	}
	return fmt.Sprintf("customauth: unexpected status %d: %q", e.Status, e.Body)
}

// Authenticator is an [auth.Authenticator] that asks a custom
// authentication server (the Azure IoT Operations custom authentication API
// 0.5.0). Every client is relevant to it: it answers Pass, Fail or, when the
// server cannot be reached or answers something unusable, Unavailable.
type Authenticator struct {
	endpoint *url.URL
	version  atomic.Pointer[string] // the API version in use
	client   *http.Client
	headers  http.Header
	timeout  time.Duration
	maxBody  int64
	sem      chan struct{}
	breaker  *breaker // nil when disabled
	flights  flights
	obs      auth.Observer // nil when not observed
	cache    *cache        // nil when disabled
	method   string
	log      *slog.Logger
	now      func() time.Time
	hashKey  []byte
}

// New validates cfg and returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	u, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	headers, err := cleanHeaders(cfg.Headers)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{
		endpoint: u,
		client:   &http.Client{Transport: cfg.transport(), CheckRedirect: noRedirects},
		headers:  headers,
		timeout:  cmp.Or(cfg.Timeout, DefaultTimeout),
		maxBody:  cmp.Or(cfg.MaxResponseBytes, DefaultMaxResponseBytes),
		sem:      make(chan struct{}, cmp.Or(cfg.MaxConcurrent, DefaultMaxConcurrent)),
		method:   cmp.Or(cfg.MethodName, DefaultMethodName),
		log:      cfg.Logger,
		now:      cfg.Now,
		hashKey:  make([]byte, 32),
	}
	a.flights.m = map[[32]byte]*flight{}
	v := APIVersion
	a.version.Store(&v)
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	if !cfg.Breaker.Disabled {
		a.breaker = &breaker{
			threshold: cmp.Or(cfg.Breaker.Failures, DefaultBreakerFailures),
			coolDown:  cmp.Or(cfg.Breaker.CoolDown, DefaultBreakerCoolDown),
			now:       a.now,
			log:       a.log,
		}
	}
	if cfg.Cache.TTL > 0 {
		a.cache = newCache(cfg.Cache.TTL, cmp.Or(cfg.Cache.MaxEntries, DefaultCacheEntries), a.now)
	}
	a.observeWith(cfg.Observer)
	if _, err := rand.Read(a.hashKey); err != nil {
		return nil, fmt.Errorf("customauth: %w", err)
	}
	if u.Scheme == "http" {
		a.log.Warn("customauth: InsecureAllowHTTP: credentials go to the server in clear text", slog.String("endpoint", u.String()))
	}
	return a, nil
}

func noRedirects(*http.Request, []*http.Request) error {
	// A redirect could carry credentials elsewhere: never follow one.
	return http.ErrUseLastResponse
}

// CloseIdleConnections closes the idle connections to the server.
func (a *Authenticator) CloseIdleConnections() { a.client.CloseIdleConnections() }

// Version returns the API version in use: APIVersion, or the version a 422
// answer made the Authenticator switch to.
func (a *Authenticator) Version() string { return *a.version.Load() }

// apiRequest is the body of a request.
type apiRequest struct {
	Type                   string        `json:"type"`
	Username               *string       `json:"username,omitempty"`
	Password               *string       `json:"password,omitempty"`
	Certs                  string        `json:"certs,omitempty"`
	EnhancedAuthentication *enhancedAuth `json:"enhancedAuthentication,omitempty"`
}

type enhancedAuth struct {
	Method string `json:"method"`
	Data   string `json:"data,omitempty"`
}

// body returns the JSON body for req: a connect request for the CONNECT
// packet, an auth request for AUTH packets.
func body(req *auth.Request) ([]byte, error) {
	r := apiRequest{Type: "connect"}
	if req.Step > 0 || req.Reauth {
		r.Type = "auth"
	} else {
		if req.HasUsername {
			r.Username = &req.Username
		}
		if req.HasPassword {
			p := base64.StdEncoding.EncodeToString(req.Password)
			r.Password = &p
		}
		if req.TLS != nil {
			var certs bytes.Buffer
			for _, c := range req.TLS.PeerCertificates {
				_ = pem.Encode(&certs, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
			}
			r.Certs = certs.String()
		}
	}
	if req.AuthMethod != "" {
		r.EnhancedAuthentication = &enhancedAuth{Method: req.AuthMethod, Data: base64.StdEncoding.EncodeToString(req.AuthData)}
	}
	return json.Marshal(r)
}

// verdict is the server's answer, reduced to what is shared between
// coalesced requests and kept in the cache.
type verdict struct {
	outcome auth.Outcome // Pass, Fail or Unavailable
	code    auth.ReasonCode
	expiry  time.Time
	attrs   map[string]string
	err     error
	// malformed marks an answer that does not follow the API (a body
	// that does not parse, the wrong content type, an oversized body):
	// it counts as a failure of the server for the circuit breaker.
	malformed bool
}

// Authenticate sends req to the server and returns its verdict.
func (a *Authenticator) Authenticate(ctx context.Context, req *auth.Request) auth.Result {
	b, err := body(req)
	if err != nil {
		return auth.UnavailableResult(fmt.Errorf("customauth: encoding the request: %w", err))
	}
	key := a.key(b)
	if a.cache != nil {
		if v, ok := a.cache.get(key); ok {
			a.observe(auth.CallCached, false, 0)
			return a.result(req, v)
		}
	}
	if a.breaker != nil && a.breaker.open() {
		return auth.UnavailableResult(ErrCircuitOpen) // no goroutine, no request
	}
	v, err := a.flights.do(ctx, key, func() verdict { return a.ask(ctx, b) })
	if err != nil {
		return auth.UnavailableResult(fmt.Errorf("%w: %w", ErrServer, err))
	}
	if a.cache != nil && v.outcome == auth.Pass {
		a.cache.put(key, v)
	}
	if v.outcome != auth.Pass && !errors.Is(v.err, ErrCircuitOpen) {
		level := slog.LevelWarn
		if v.outcome == auth.Fail {
			level = slog.LevelInfo
		}
		a.log.LogAttrs(ctx, level, "customauth: client not authenticated",
			slog.String("client_id", req.ClientID),
			slog.String("decision", v.outcome.String()),
			slog.String("reason_code", v.code.String()),
			slog.Bool("reauth", req.Reauth),
			slog.String("err", errString(v.err)))
	}
	return a.result(req, v)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (a *Authenticator) key(body []byte) (k [32]byte) {
	m := hmac.New(sha256.New, a.hashKey)
	m.Write(body)
	m.Sum(k[:0])
	return k
}

// result turns a verdict into the Result for req.
func (a *Authenticator) result(req *auth.Request, v verdict) auth.Result {
	switch v.outcome {
	case auth.Pass:
		method := req.AuthMethod
		if method == "" {
			method = a.method
		}
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{
			Method:     method,
			Username:   req.Username, // CONNECT's user name, which the server judged with the rest
			ClientID:   req.ClientID,
			Attributes: v.attrs,
			Expiry:     v.expiry,
		}))
	case auth.Fail:
		return auth.FailResult(v.code, v.err)
	default:
		return auth.UnavailableResult(v.err)
	}
}

// ask makes the HTTP request (and its one 422 retry), guarded by the
// breaker and the concurrency limit. Coalesced callers share its verdict,
// so it runs on a context that the first caller's cancellation does not
// end, bounded by that caller's deadline and the configured ceiling.
func (a *Authenticator) ask(ctx context.Context, body []byte) verdict {
	probe := false
	if a.breaker != nil {
		var ok bool
		if ok, probe = a.breaker.allow(); !ok {
			return verdict{outcome: auth.Unavailable, err: ErrCircuitOpen}
		}
	}
	// Deadlines run on the real clock, never on Config.Now.
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.timeout)
	defer cancel()
	if d, ok := ctx.Deadline(); ok {
		var cancelCaller context.CancelFunc
		callCtx, cancelCaller = context.WithDeadline(callCtx, d)
		defer cancelCaller()
	}

	start := time.Now()
	v, reachable := a.post(callCtx, body, true)
	a.observe(auth.Call, !reachable, time.Since(start))
	if a.breaker != nil {
		// A malformed answer is a failure of the server as much as no
		// answer: a server that answers 200 with garbage must trip the
		// breaker too, or every client keeps waiting on it.
		a.breaker.record(reachable && !v.malformed, probe)
	}
	return v
}

// post sends one request. reachable is false when the failure says the
// server is down: a transport error, a timeout, a 5xx status. A malformed
// answer is reachable, with v.malformed set.
func (a *Authenticator) post(ctx context.Context, body []byte, retry422 bool) (v verdict, reachable bool) {
	select {
	case a.sem <- struct{}{}:
		defer func() { <-a.sem }()
	case <-ctx.Done():
		return unavailable(fmt.Errorf("%w: waiting for a request slot: %w", ErrServer, ctx.Err())), false
	}
	version := a.Version()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, endpointFor(a.endpoint, version), bytes.NewReader(body))
	if err != nil {
		return unavailable(fmt.Errorf("%w: %w", ErrServer, err)), false
	}
	for k, vs := range a.headers {
		hreq.Header[k] = vs
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(hreq)
	if err != nil {
		return unavailable(fmt.Errorf("%w: %w", ErrServer, scrubURL(err))), false
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, a.maxBody+1))
	if err != nil {
		return unavailable(fmt.Errorf("%w: reading the response: %w", ErrServer, err)), false
	}
	if int64(len(data)) > a.maxBody {
		return malformed(fmt.Errorf("%w: status %d with a body over %d bytes", ErrBadResponse, resp.StatusCode, a.maxBody)), true
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return a.parsePass(resp.Header, data), true
	case http.StatusForbidden:
		return parseFail(data), true
	case http.StatusUnprocessableEntity:
		next, err := a.chooseVersion(data, version)
		if err != nil || !retry422 {
			if err == nil {
				err = fmt.Errorf("%w: the server refused version %s after asking for it", ErrVersion, version)
			}
			if errors.Is(err, ErrBadResponse) {
				return malformed(err), true
			}
			return unavailable(err), true
		}
		a.log.Info("customauth: switching API version after 422", slog.String("from", version), slog.String("to", next))
		a.version.Store(&next)
		return a.post(ctx, body, false)
	}
	se := &StatusError{Status: resp.StatusCode, Body: snippet(data)}
	if resp.StatusCode >= 500 {
		return unavailable(fmt.Errorf("%w: %w", ErrServer, se)), false
	}
	return unavailable(se), true
}

func unavailable(err error) verdict { return verdict{outcome: auth.Unavailable, err: err} }

// malformed is the verdict on an answer that breaks the API: Unavailable,
// and a failure for the circuit breaker.
func malformed(err error) verdict {
	return verdict{outcome: auth.Unavailable, err: err, malformed: true}
}

// scrubURL drops the URL from a transport error: it is the configured
// endpoint, known already, and keeping errors short helps the log.
func scrubURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

func snippet(b []byte) string {
	const max = 256
	if len(b) > max {
		b = b[:max]
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}

// isJSON reports whether raw is a JSON value that starts with first ('{'
// for an object, '"' for a string).
func isJSON(raw json.RawMessage, first byte) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == first
}

// decodeStrict decodes exactly one JSON value from data into v.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// parsePass reads a 200 answer: {"expiry": RFC 3339 (optional),
// "attributes": {name: string}}. Anything else is Unavailable, never Pass.
func (a *Authenticator) parsePass(h http.Header, data []byte) verdict {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return malformed(fmt.Errorf("%w: 200 with content type %q, want application/json", ErrBadResponse, h.Get("Content-Type")))
	}
	var body struct {
		Expiry     *string         `json:"expiry"`
		Attributes json.RawMessage `json:"attributes"`
	}
	if err := decodeStrict(data, &body); err != nil {
		return malformed(fmt.Errorf("%w: 200 body: %w", ErrBadResponse, err))
	}
	// The API requires an attributes object, empty when there are none;
	// JSON null decodes into anything, so the types are checked by hand.
	if !isJSON(body.Attributes, '{') {
		return malformed(fmt.Errorf("%w: 200 body has no attributes object", ErrBadResponse))
	}
	var attrs map[string]json.RawMessage
	if err := json.Unmarshal(body.Attributes, &attrs); err != nil {
		return malformed(fmt.Errorf("%w: attributes: %w", ErrBadResponse, err))
	}
	v := verdict{outcome: auth.Pass, attrs: make(map[string]string, len(attrs))}
	for name, raw := range attrs {
		var s string
		if !isJSON(raw, '"') || json.Unmarshal(raw, &s) != nil {
			return malformed(fmt.Errorf("%w: attribute %q is not a string", ErrBadResponse, snippet([]byte(name))))
		}
		v.attrs[name] = s
	}
	if body.Expiry != nil {
		t, err := time.Parse(time.RFC3339, *body.Expiry)
		if err != nil {
			return malformed(fmt.Errorf("%w: expiry %q is not RFC 3339", ErrBadResponse, snippet([]byte(*body.Expiry))))
		}
		v.expiry = t
	}
	return v
}

// parseFail reads a 403 answer: {"reason": uint8, "message": string}. A 403
// always fails the client; a reason that is not a CONNACK failure code
// becomes 0x87.
func parseFail(data []byte) verdict {
	var body struct {
		Reason  *int   `json:"reason"`
		Message string `json:"message"`
	}
	v := verdict{outcome: auth.Fail, code: auth.NotAuthorized}
	if err := decodeStrict(data, &body); err != nil {
		v.err = fmt.Errorf("%w (unreadable 403 body: %v)", ErrDenied, err)
		v.malformed = true // the client is refused all the same
		return v
	}
	if body.Reason != nil && *body.Reason >= 0 && *body.Reason <= 255 && auth.ReasonCode(*body.Reason).ValidConnackFailure() {
		v.code = auth.ReasonCode(*body.Reason)
	}
	v.err = ErrDenied
	if body.Message != "" {
		v.err = fmt.Errorf("%w: %q", ErrDenied, snippet([]byte(body.Message)))
	}
	return v
}

// chooseVersion reads a 422 answer and picks the first version we speak
// that the server lists, other than the one just refused.
func (a *Authenticator) chooseVersion(data []byte, refused string) (string, error) {
	var body struct {
		SupportedVersions []string `json:"supportedVersions"`
	}
	if err := decodeStrict(data, &body); err != nil {
		return "", fmt.Errorf("%w: 422 body: %w", ErrBadResponse, err)
	}
	for _, v := range spokenVersions {
		if v != refused && slices.Contains(body.SupportedVersions, v) {
			return v, nil
		}
	}
	if slices.Contains(body.SupportedVersions, refused) {
		// The server lists the version it refused: retry it once.
		return refused, nil
	}
	return "", fmt.Errorf("%w: the server supports %q, this client %q", ErrVersion, body.SupportedVersions, spokenVersions)
}
