package aioconfig

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/mqttauth/mqttauth/abac"
)

// Config is what the configuration files say: the resources, checked one
// by one. [Config.Validate] checks the whole (references, required
// fields); [Build] makes it run.
type Config struct {
	Authentications []*Authentication
	Authorizations  []*Authorization
	Listeners       []*Listener
	// Settings is the MqttAuthSettings document's spec (zero when none).
	Settings Settings

	dir          string // the first file's directory: relative paths start there
	settingsDir  string // the directory of the file that held MqttAuthSettings
	haveSettings bool
	// objects are the ConfigMaps and Secrets the Kubernetes API source
	// holds in memory ("configmaps/NAME" -> key -> value): references
	// resolve there before the mount directories (memory.go).
	objects map[string]map[string][]byte
}

// Load reads configuration files, each one or more YAML or JSON documents
// (`---` between them, as kubectl writes them). Relative paths, and
// ConfigMap and Secret directories unless MqttAuthSettings says otherwise,
// are taken from the first file's directory.
func Load(paths ...string) (*Config, error) {
	if len(paths) == 0 {
		return nil, errors.New("aioconfig: no configuration file")
	}
	c := &Config{}
	for i, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("aioconfig: %w", err)
		}
		data, err := os.ReadFile(abs)
		if err != nil {
			return nil, fmt.Errorf("aioconfig: %w", err)
		}
		if i == 0 {
			c.dir = filepath.Dir(abs)
		}
		if err := c.add(data, p, filepath.Dir(abs)); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Parse reads one configuration text (source names it in errors);
// relative paths are taken from dir, or the current directory when dir is
// empty.
func Parse(data []byte, source, dir string) (*Config, error) {
	if dir == "" {
		dir = "."
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("aioconfig: %w", err)
	}
	c := &Config{dir: abs}
	if err := c.add(data, source, abs); err != nil {
		return nil, err
	}
	return c, nil
}

// splitDocuments splits a YAML stream at its `---` lines. It returns each
// document with the line it starts on.
func splitDocuments(data []byte) (docs [][]byte, lines []int) {
	var cur bytes.Buffer
	start, n := 1, 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		n++
		line := sc.Text()
		if t := strings.TrimRight(line, " \t\r"); t == "---" || strings.HasPrefix(t, "--- ") {
			docs, lines = append(docs, bytes.Clone(cur.Bytes())), append(lines, start)
			cur.Reset()
			start = n + 1
			if rest := strings.TrimSpace(strings.TrimPrefix(t, "---")); rest != "" {
				cur.WriteString(rest + "\n")
			}
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	return append(docs, cur.Bytes()), append(lines, start)
}

func (c *Config) add(data []byte, source, dir string) error {
	docs, lines := splitDocuments(data)
	for i, doc := range docs {
		d := docRef{source: source, doc: i + 1, line: lines[i], dir: dir}
		if err := c.addDoc(doc, d); err != nil {
			return err
		}
	}
	return nil
}

// docRef says where a document is, for errors.
type docRef struct {
	source    string
	doc, line int
	kind      string
	name      string
	dir       string
}

func (d docRef) err(field, value string, err error, hint string) *Error {
	return &Error{Source: d.source, Document: d.doc, Line: d.line, Kind: d.kind, Name: d.name, Field: field, Value: value, Err: err, Hint: hint}
}

func (c *Config) addDoc(doc []byte, d docRef) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return d.err("", "", fmt.Errorf("%w: %v", ErrSyntax, err), "")
	}
	j = bytes.TrimSpace(j)
	if len(j) == 0 || string(j) == "null" {
		return nil // an empty document, as between two ---
	}
	if j[0] == '[' {
		d.kind, d.name = KindAuthorization, "default"
		return c.addAuthorization(j, d)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(j, &top); err != nil {
		return d.err("", "", fmt.Errorf("%w: a document must be a resource (a mapping) or a BrokerAuthorization rules array", ErrSyntax), "")
	}
	var kind, api string
	_ = json.Unmarshal(top["kind"], &kind)
	_ = json.Unmarshal(top["apiVersion"], &api)
	var meta Metadata
	if raw, ok := top["metadata"]; ok {
		if err := json.Unmarshal(raw, &meta); err != nil {
			return d.err("metadata", "", fmt.Errorf("%w: %v", ErrSyntax, err), "")
		}
	}
	if kind == "List" {
		// kubectl get -o yaml of several resources.
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(j, &list); err != nil {
			return d.err("items", "", fmt.Errorf("%w: %v", ErrSyntax, err), "")
		}
		for _, it := range list.Items {
			if err := c.addDoc(it, d); err != nil {
				return err
			}
		}
		return nil
	}
	d.name = cmp.Or(meta.Name, "default")
	spec, isResource := top["spec"]
	if kind == "" {
		kind = inferKind(top)
	}
	d.kind = kind
	if kind != "" && isResourceShape(top) {
		for k := range top {
			switch k {
			case "apiVersion", "kind", "metadata", "spec", "status":
			default:
				return d.err(k, "", ErrUnknownField, "a resource has apiVersion, kind, metadata and spec")
			}
		}
	}
	if !isResource {
		spec = j // the spec alone
	}
	switch kind {
	case KindAuthentication:
		return c.addAuthentication(spec, api, d, isResource)
	case KindAuthorization:
		return c.addAuthorization(j, d)
	case KindListener:
		return c.addListener(spec, api, d, isResource)
	case KindSettings:
		return c.addSettings(spec, d, isResource)
	case "":
		hint := "want a BrokerAuthentication, BrokerAuthorization, BrokerListener or MqttAuthSettings resource, or one's spec"
		switch {
		case top["trustedClientCaCert"] != nil || top["authorizationAttributes"] != nil:
			hint = "this is the x509Settings of an X509 method: put it under spec.authenticationMethods[].x509Settings of a BrokerAuthentication"
		case top["listener"] != nil || top["authentication"] != nil || top["authorization"] != nil:
			hint = "this is the layout of the old examples/internal/config file: write a BrokerListener, a BrokerAuthentication and a BrokerAuthorization document (README.md, Configuration)"
		}
		return d.err("", "", fmt.Errorf("%w: cannot tell which resource this is", ErrUnknownKind), hint)
	default:
		return d.err("kind", kind, ErrUnknownKind, "this package reads BrokerAuthentication, BrokerAuthorization, BrokerListener and MqttAuthSettings")
	}
}

func isResourceShape(top map[string]json.RawMessage) bool {
	return top["spec"] != nil || top["apiVersion"] != nil || top["kind"] != nil || top["metadata"] != nil
}

// inferKind tells a resource without kind (or a spec alone) by its fields.
func inferKind(top map[string]json.RawMessage) string {
	m := top
	if raw, ok := top["spec"]; ok {
		var spec map[string]json.RawMessage
		if json.Unmarshal(raw, &spec) == nil {
			m = spec
		}
	}
	switch {
	case m["authenticationMethods"] != nil:
		return KindAuthentication
	case m["authorizationPolicies"] != nil || m["rules"] != nil || m["denyAll"] != nil:
		return KindAuthorization
	case m["ports"] != nil:
		return KindListener
	}
	return ""
}

func (c *Config) addAuthentication(spec json.RawMessage, api string, d docRef, resource bool) error {
	prefix := ""
	if resource {
		prefix = "spec."
	}
	if api != "" && api != APIv1 && api != APIv1beta1 {
		return d.err("apiVersion", api, ErrInvalidValue, "want "+APIv1+" or "+APIv1beta1)
	}
	var s struct {
		AuthenticationMethods []json.RawMessage `json:"authenticationMethods"`
	}
	if f, err := decodeStrict(spec, &s); err != nil {
		return d.err(prefix+f, "", err, nearMiss(f, &s))
	}
	a := &Authentication{Name: d.name, API: api, Source: d.source}
	for i, raw := range s.AuthenticationMethods {
		at := fmt.Sprintf("%sauthenticationMethods[%d]", prefix, i)
		m, err := decodeMethod(raw, api, at, d)
		if err != nil {
			return err
		}
		a.Methods = append(a.Methods, m)
	}
	for _, o := range c.Authentications {
		if o.Name == a.Name {
			return d.err("metadata.name", a.Name, ErrDuplicate, "another BrokerAuthentication ("+o.Source+") has this name")
		}
	}
	c.Authentications = append(c.Authentications, a)
	return nil
}

// settingsKeys are the settings fields of a method in both API shapes.
var settingsKeys = []struct{ v1, v1beta1, method string }{
	{"customSettings", "custom", MethodCustom},
	{"serviceAccountTokenSettings", "serviceAccountToken", MethodSAT},
	{"x509Settings", "x509Credentials", MethodX509},
	{"scramSettings", "scramSettings", MethodSCRAM},
	{"jwtSettings", "jwtSettings", MethodJWT},
}

func decodeMethod(raw json.RawMessage, api, at string, d docRef) (Method, error) {
	var r rawMethod
	if f, err := decodeStrict(raw, &r); err != nil {
		return Method{}, d.err(at+"."+f, "", err, nearMiss(f, &r))
	}
	given := []struct {
		key, method string
		body        json.RawMessage
	}{
		{"customSettings", MethodCustom, r.CustomSettings},
		{"custom", MethodCustom, r.Custom},
		{"serviceAccountTokenSettings", MethodSAT, r.ServiceAccountTokenSettings},
		{"serviceAccountToken", MethodSAT, r.ServiceAccountToken},
		{"x509Settings", MethodX509, r.X509Settings},
		{"x509Credentials", MethodX509, r.X509Credentials},
		{"scramSettings", MethodSCRAM, r.SCRAMSettings},
		{"jwtSettings", MethodJWT, r.JWTSettings},
	}
	var (
		key, method string
		body        json.RawMessage
		n           int
	)
	for _, g := range given {
		if g.body != nil {
			n++
			key, method, body = g.key, g.method, g.body
		}
	}
	if n > 1 {
		return Method{}, d.err(at, "", ErrInvalidValue, "a method has one settings field, the one its method names")
	}
	name := r.Method
	switch name {
	case MethodX509Credentials:
		name = MethodX509
	case "":
		if n == 0 {
			return Method{}, d.err(at+".method", "", ErrMissing, methodNames)
		}
		name = method // AIO's own example gives only the settings
	case MethodCustom, MethodSAT, MethodX509, MethodSCRAM, MethodJWT:
	default:
		hint := methodNames
		for _, known := range []string{MethodCustom, MethodSAT, MethodX509, MethodX509Credentials, MethodSCRAM, MethodJWT} {
			if strings.EqualFold(name, known) {
				hint = "method names are case-sensitive: " + known
			}
		}
		if strings.EqualFold(name, "K8S-SAT") || strings.EqualFold(name, "SAT") {
			hint = "the method is ServiceAccountToken (K8S-SAT is what clients send)"
		}
		return Method{}, d.err(at+".method", r.Method, ErrInvalidValue, hint)
	}
	if n == 1 && method != name {
		return Method{}, d.err(at+"."+key, "", ErrInvalidValue, fmt.Sprintf("method %s takes %s", r.Method, settingsField(name, api)))
	}
	if n == 1 {
		// The settings field must be the one of the document's API.
		for _, k := range settingsKeys {
			if k.method != name || k.v1 == k.v1beta1 {
				continue
			}
			if api == APIv1 && key == k.v1beta1 {
				return Method{}, d.err(at+"."+key, "", ErrUnknownField, fmt.Sprintf("%s is the v1beta1 spelling: write %s, or apiVersion %s", key, k.v1, APIv1beta1))
			}
			if api == APIv1beta1 && key == k.v1 {
				return Method{}, d.err(at+"."+key, "", ErrUnknownField, fmt.Sprintf("%s is the v1 spelling: write %s, or apiVersion %s", key, k.v1beta1, APIv1))
			}
		}
	}
	m := Method{Method: name}
	field := at + "." + key
	if n == 0 || string(body) == "null" {
		return m, nil // no settings: Validate says what is missing
	}
	var err error
	var f string
	switch name {
	case MethodCustom:
		m.Custom = new(CustomSettings)
		f, err = decodeStrict(body, m.Custom)
		if err == nil {
			err = checkDuration(m.Custom.Timeout)
			f = "timeout"
		}
		if cb := m.Custom.CircuitBreaker; err == nil && cb != nil {
			err = checkDuration(cb.Cooldown)
			f = "circuitBreaker.cooldown"
			if err == nil && cb.FailureThreshold < 0 {
				err = fmt.Errorf("%w: %d is not a positive number", ErrInvalidValue, cb.FailureThreshold)
				f = "circuitBreaker.failureThreshold"
			}
		}
		if err == nil {
			return m, nil
		}
		return m, d.err(field+"."+f, "", err, nearMiss(f, m.Custom))
	case MethodSAT:
		m.SAT = new(SATSettings)
		if f, err = decodeStrict(body, m.SAT); err != nil {
			return m, d.err(field+"."+f, "", err, nearMiss(f, m.SAT))
		}
		if f, v, err := checkSAT(m.SAT); err != nil {
			return m, d.err(field+"."+f, v, err, satHints[f])
		}
	case MethodX509:
		m.X509 = new(X509Settings)
		if f, err = decodeStrict(body, m.X509); err != nil {
			return m, d.err(field+"."+f, "", err, nearMiss(f, m.X509))
		}
		if r := m.X509.Revocation; r != nil {
			if f, v, err := checkRevocation(r); err != nil {
				return m, d.err(field+".revocation."+f, v, err, revocationHints[f])
			}
		}
	case MethodJWT:
		m.JWT = new(JWTSettings)
		if f, err = decodeStrict(body, m.JWT); err != nil {
			return m, d.err(field+"."+f, "", err, nearMiss(f, m.JWT))
		}
		if f, v, err := checkJWT(m.JWT); err != nil {
			return m, d.err(field+"."+f, v, err, jwtHints[f])
		}
	case MethodSCRAM:
		m.SCRAM = new(SCRAMSettings)
		if f, err = decodeStrict(body, m.SCRAM); err != nil {
			return m, d.err(field+"."+f, "", err, nearMiss(f, m.SCRAM))
		}
		for i, mech := range m.SCRAM.Mechanisms {
			if mech != "SCRAM-SHA-256" && mech != "SCRAM-SHA-512" {
				return m, d.err(fmt.Sprintf("%s.mechanisms[%d]", field, i), mech, ErrInvalidValue, "want SCRAM-SHA-256 or SCRAM-SHA-512")
			}
		}
	}
	return m, nil
}

// methodNames is the hint of a missing or unknown method name.
const methodNames = "want Custom, ServiceAccountToken, X509 (v1beta1: x509Credentials), SCRAM or JWT"

var revocationHints = map[string]string{
	"mode":       "want hardFail or softFail",
	"responder":  "an http:// or https:// URL",
	"maxEntries": "a count, zero for the default",
	"maxCRLs":    "a count, zero for the default",
}

// checkRevocation checks the values of x509Settings.revocation that can
// be checked without building; it returns the field, its value and the
// error.
func checkRevocation(r *RevocationSettings) (field, value string, err error) {
	switch r.Mode {
	case "", RevocationHardFail, RevocationSoftFail:
	default:
		return "mode", r.Mode, ErrInvalidValue
	}
	if r.Responder != "" && !isHTTPURL(r.Responder) {
		return "responder", r.Responder, ErrInvalidValue
	}
	for _, d := range []struct{ f, v string }{
		{"timeout", r.Timeout}, {"wait", r.Wait}, {"refreshBefore", r.RefreshBefore},
		{"retryInterval", r.RetryInterval}, {"refreshInterval", r.RefreshInterval}, {"maxAge", r.MaxAge},
	} {
		if err := checkDuration(d.v); err != nil {
			return d.f, d.v, err
		}
	}
	if r.MaxEntries < 0 {
		return "maxEntries", fmt.Sprint(r.MaxEntries), ErrInvalidValue
	}
	if r.MaxCRLs < 0 {
		return "maxCRLs", fmt.Sprint(r.MaxCRLs), ErrInvalidValue
	}
	return "", "", nil
}

var satHints = map[string]string{
	"mode":         "want tokenReview or local",
	"cacheTTL":     "a positive duration such as 5m (omit it for 5m)",
	"attributeTTL": "a positive duration such as 1m (omit it for 1m)",
}

// checkSAT checks the values of serviceAccountTokenSettings that can be
// checked without building.
func checkSAT(s *SATSettings) (field, value string, err error) {
	if md := s.Mode; md != "" && md != "tokenReview" && md != "local" {
		return "mode", md, ErrInvalidValue
	}
	for _, d := range []struct{ f, v string }{{"cacheTTL", s.CacheTTL}, {"attributeTTL", s.AttributeTTL}} {
		if d.v == "" {
			continue
		}
		if t, err := time.ParseDuration(d.v); err != nil || t <= 0 {
			return d.f, d.v, fmt.Errorf("%w: %q is not a positive duration", ErrInvalidValue, d.v)
		}
	}
	return "", "", nil
}

var jwtHints = map[string]string{
	"tokenFrom":    "want method (the CONNECT Authentication Data) or password",
	"issuer":       "an https:// URL (http:// only with insecureAllowHttp)",
	"discoveryUrl": "an https:// URL (http:// only with insecureAllowHttp)",
	"jwksUrl":      "an https:// URL (http:// only with insecureAllowHttp)",
	"caCert":       "caCert and caCertFile are exclusive",
}

// checkJWT checks the values of jwtSettings that can be checked without
// building.
func checkJWT(j *JWTSettings) (field, value string, err error) {
	switch j.TokenFrom {
	case "", TokenFromMethod, TokenFromPassword:
	default:
		return "tokenFrom", j.TokenFrom, ErrInvalidValue
	}
	for _, u := range []struct{ f, v string }{{"issuer", j.Issuer}, {"discoveryUrl", j.DiscoveryURL}, {"jwksUrl", j.JWKSURL}} {
		if u.v != "" && !isHTTPURL(u.v) {
			return u.f, u.v, ErrInvalidValue
		}
	}
	for _, d := range []struct{ f, v string }{
		{"leeway", j.Leeway}, {"keyRefreshInterval", j.KeyRefreshInterval}, {"keyMaxAge", j.KeyMaxAge}, {"requestTimeout", j.RequestTimeout},
	} {
		if err := checkDuration(d.v); err != nil {
			return d.f, d.v, err
		}
	}
	if j.CACert != "" && j.CACertFile != "" {
		return "caCert", "", ErrInvalidValue
	}
	return "", "", nil
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

func settingsField(method, api string) string {
	for _, k := range settingsKeys {
		if k.method == method {
			if api == APIv1beta1 {
				return k.v1beta1
			}
			return k.v1
		}
	}
	return ""
}

func (c *Config) addAuthorization(j json.RawMessage, d docRef) error {
	spec, err := abac.ParseSpec(j)
	if err != nil {
		var pe *abac.PolicyError
		field := ""
		if errors.As(err, &pe) {
			field = pe.Field
			if pe.Rule >= 0 {
				field = fmt.Sprintf("rules[%d].%s", pe.Rule, pe.Field)
			}
		}
		return d.err(field, "", fmt.Errorf("%w: %w", ErrInvalidValue, err), "")
	}
	for _, o := range c.Authorizations {
		if o.Name == d.name {
			return d.err("metadata.name", d.name, ErrDuplicate, "another BrokerAuthorization ("+o.Source+") has this name")
		}
	}
	c.Authorizations = append(c.Authorizations, &Authorization{Name: d.name, Policy: j, Rules: len(spec.Rules), Source: d.source})
	return nil
}

func (c *Config) addListener(spec json.RawMessage, api string, d docRef, resource bool) error {
	prefix := ""
	if resource {
		prefix = "spec."
	}
	if api != "" && api != APIv1 && api != APIv1beta1 {
		return d.err("apiVersion", api, ErrInvalidValue, "want "+APIv1+" or "+APIv1beta1)
	}
	var s listenerSpec
	if f, err := decodeStrict(spec, &s); err != nil {
		return d.err(prefix+f, "", err, nearMiss(f, &s))
	}
	l := &Listener{Name: d.name, Source: d.source}
	for i, p := range s.Ports {
		at := fmt.Sprintf("%sports[%d]", prefix, i)
		if p.Port < 1 || p.Port > 65535 {
			return d.err(at+".port", fmt.Sprint(p.Port), ErrInvalidValue, "want a TCP port, 1 to 65535")
		}
		switch p.Protocol {
		case "", "Mqtt":
		case "WebSockets":
			return d.err(at+".protocol", p.Protocol, ErrUnsupported, "only Mqtt (TCP) listeners are built here")
		default:
			return d.err(at+".protocol", p.Protocol, ErrInvalidValue, "want Mqtt")
		}
		if p.AuthorizationRef != "" && p.AuthorizationFile != "" {
			return d.err(at+".authorizationFile", p.AuthorizationFile, ErrInvalidValue, "authorizationRef and authorizationFile are exclusive")
		}
		if t := p.TLS; t != nil {
			switch t.Mode {
			case "Manual":
				if t.Manual == nil || (t.Manual.SecretRef == "") == (t.Manual.CertFile == "" || t.Manual.KeyFile == "") {
					return d.err(at+".tls.manual", "", ErrMissing, "give manual.secretRef (a kubernetes.io/tls Secret) or manual.certFile and manual.keyFile")
				}
			case "Automatic":
				return d.err(at+".tls.mode", t.Mode, ErrUnsupported, "cert-manager is not available here: use mode Manual with a Secret or files")
			case "", "None":
				if t.Manual != nil {
					return d.err(at+".tls.mode", t.Mode, ErrMissing, "set mode: Manual")
				}
				s.Ports[i].TLS = nil
			default:
				return d.err(at+".tls.mode", t.Mode, ErrInvalidValue, "want Manual")
			}
		}
	}
	l.Ports = s.Ports
	for _, o := range c.Listeners {
		if o.Name == l.Name {
			return d.err("metadata.name", l.Name, ErrDuplicate, "another BrokerListener ("+o.Source+") has this name")
		}
	}
	c.Listeners = append(c.Listeners, l)
	return nil
}

func (c *Config) addSettings(spec json.RawMessage, d docRef, resource bool) error {
	prefix := ""
	if resource {
		prefix = "spec."
	}
	if c.haveSettings {
		return d.err("", "", ErrDuplicate, "one MqttAuthSettings document per configuration")
	}
	var s Settings
	if f, err := decodeStrict(spec, &s); err != nil {
		return d.err(prefix+f, "", err, nearMiss(f, &s))
	}
	if err := checkSettings(&s, d, prefix); err != nil {
		return err
	}
	c.Settings, c.haveSettings, c.settingsDir = s, true, d.dir
	return nil
}

// checkSettings checks the values of MqttAuthSettings that can be checked
// without building; prefix is the path of its fields ("spec." in a
// resource).
func checkSettings(s *Settings, d docRef, prefix string) error {
	switch s.Session.OnExpiry {
	case "", "disconnect", "close":
	default:
		return d.err(prefix+"session.onExpiry", s.Session.OnExpiry, ErrInvalidValue, "want disconnect or close")
	}
	if err := checkDuration(s.Session.ExchangeTimeout); err != nil {
		return d.err(prefix+"session.exchangeTimeout", s.Session.ExchangeTimeout, err, "a Go duration: 30s, 2m")
	}
	if err := checkDuration(s.Session.ReauthInterval); err != nil || s.Session.ReauthInterval == "0s" {
		if err == nil {
			err = ErrInvalidValue
		}
		return d.err(prefix+"session.reauthInterval", s.Session.ReauthInterval, err, "a Go duration: 1s, 10s; -1s for no bound")
	}
	if s.Session.ReauthBurst < 0 {
		return d.err(prefix+"session.reauthBurst", fmt.Sprint(s.Session.ReauthBurst), ErrInvalidValue, "a number of re-authentications; zero for the default, 5")
	}
	if t := s.Throttle; t != nil {
		if f, v, hint, err := checkThrottle(t); err != nil {
			return d.err(prefix+"throttle."+f, v, err, hint)
		}
	}
	if l := s.Limits; l != nil {
		if err := checkDuration(l.ConnectTimeout); err != nil || l.ConnectTimeout == "0s" {
			if err == nil {
				err = ErrInvalidValue
			}
			return d.err(prefix+"limits.connectTimeout", l.ConnectTimeout, err, "a positive Go duration: 10s, 1m")
		}
		if l.MaxPacketSize != 0 && (l.MaxPacketSize < 64 || l.MaxPacketSize > 268435455) {
			return d.err(prefix+"limits.maxPacketSize", fmt.Sprint(l.MaxPacketSize), ErrInvalidValue,
				"bytes, from 64 to 268435455 (the largest MQTT packet); zero for the default, 1 MiB")
		}
		if l.MaxUnauthenticatedConnections < 0 {
			return d.err(prefix+"limits.maxUnauthenticatedConnections", fmt.Sprint(l.MaxUnauthenticatedConnections), ErrInvalidValue,
				"a number of connections; zero for the default")
		}
		if l.MaxUnauthenticatedPerSource < 0 || (l.MaxUnauthenticatedConnections > 0 && l.MaxUnauthenticatedPerSource > l.MaxUnauthenticatedConnections) {
			return d.err(prefix+"limits.maxUnauthenticatedPerSource", fmt.Sprint(l.MaxUnauthenticatedPerSource), ErrInvalidValue,
				"a number of connections, at most maxUnauthenticatedConnections; zero for an eighth of it")
		}
	}
	if a := s.Admin; a != nil {
		if f, v, hint, err := checkAdmin(a); err != nil {
			return d.err(prefix+"admin."+f, v, err, hint)
		}
	}
	if u := s.Upstream; u != nil {
		switch u.Protocol {
		case "", "auto", "3.1.1", "5":
		default:
			return d.err(prefix+"upstream.protocol", u.Protocol, ErrInvalidValue, "5, 3.1.1 or auto")
		}
		if c := u.Coordination; c != nil {
			if f, v, hint, err := checkCoordination(c, u.Protocol); err != nil {
				return d.err(prefix+"upstream."+f, v, err, hint)
			}
		}
	}
	return nil
}

// checkAdmin checks the admin section of MqttAuthSettings.
func checkAdmin(a *Admin) (field, value, hint string, err error) {
	if a.Address != nil {
		switch addr := *a.Address; addr {
		case "", "off":
		default:
			if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
				return "address", addr, `HOST:PORT ("127.0.0.1:9090", ":9090" for every interface), or "off"`, ErrInvalidValue
			}
		}
	}
	if au := a.Audit; au != nil {
		for _, l := range []struct{ f, v string }{{"level", au.Level}, {"denyLevel", au.DenyLevel}} {
			if _, err := parseLevel(l.v); err != nil {
				return "audit." + l.f, l.v, "debug, info, warn or error", ErrInvalidValue
			}
		}
	}
	return "", "", "", nil
}

// parseLevel reads a slog level name; empty is info.
func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return l, nil
	}
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// checkThrottle checks the throttle section of MqttAuthSettings.
func checkThrottle(t *Throttle) (field, value, hint string, err error) {
	for _, l := range []struct {
		f string
		l *ThrottleLimit
	}{{"address", t.Address}, {"identity", t.Identity}} {
		if l.l == nil {
			continue
		}
		if err := checkDuration(l.l.Every); err != nil {
			return l.f + ".every", l.l.Every, "a Go duration: 6s, 1m", err
		}
		if l.l.Burst < 0 {
			return l.f + ".burst", fmt.Sprint(l.l.Burst), "the failures allowed in a row, zero for the default (10)", ErrInvalidValue
		}
	}
	if t.IPv4Prefix < 0 || t.IPv4Prefix > 32 {
		return "ipv4Prefix", fmt.Sprint(t.IPv4Prefix), "a prefix length, 1 to 32 (zero for the default, 32)", ErrInvalidValue
	}
	if t.IPv6Prefix < 0 || t.IPv6Prefix > 128 {
		return "ipv6Prefix", fmt.Sprint(t.IPv6Prefix), "a prefix length, 1 to 128 (zero for the default, 64)", ErrInvalidValue
	}
	if t.MaxEntries != 0 && t.MaxEntries < 64 {
		return "maxEntries", fmt.Sprint(t.MaxEntries), "at least 64 (zero for the default, 100000)", ErrInvalidValue
	}
	return "", "", "", nil
}

func checkDuration(s string) error {
	if s == "" {
		return nil
	}
	if d, err := time.ParseDuration(s); err != nil || d < 0 {
		return fmt.Errorf("%w: %q is not a positive duration", ErrInvalidValue, s)
	}
	return nil
}

// decodeStrict decodes raw into v, refusing unknown fields; on error it
// returns the unknown field's name when that was the problem.
func decodeStrict(raw json.RawMessage, v any) (field string, err error) {
	// encoding/json matches names regardless of case; Kubernetes does not.
	if f := exactKeys(raw, reflect.TypeOf(v)); f != "" {
		return f, ErrUnknownField
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return strings.Trim(name, `"`), ErrUnknownField
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return te.Field, fmt.Errorf("%w: want %s, not a JSON %s", ErrSyntax, te.Type, te.Value)
		}
		return "", fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	return "", nil
}

// exactKeys returns the path of the first key of raw that is no field name
// of t, spelled exactly, or "".
func exactKeys(raw json.RawMessage, t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 { // json.RawMessage
			return ""
		}
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return ""
		}
		for i, it := range items {
			if f := exactKeys(it, t.Elem()); f != "" {
				return fmt.Sprintf("[%d].%s", i, f)
			}
		}
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return ""
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return ""
		}
		for k, v := range m {
			if f := exactKeys(v, t.Elem()); f != "" {
				return k + "." + f
			}
		}
	case reflect.Struct:
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return ""
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			if name != "" && name != "-" {
				fields[name] = t.Field(i).Type
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				return k
			}
			if f := exactKeys(m[k], ft); f != "" {
				if f[0] == '[' {
					return k + f
				}
				return k + "." + f
			}
		}
	}
	return ""
}

// known near-misses: a field of another shape, with the fix.
var nearMisses = map[string]string{
	"serverCert":                   "the port's certificate is tls: {mode: Manual, manual: {certFile, keyFile}} (or manual.secretRef)",
	"serverKey":                    "the port's certificate is tls: {mode: Manual, manual: {certFile, keyFile}} (or manual.secretRef)",
	"trustedClientCaCertConfigMap": "the field is trustedClientCaCert",
	"caCertSecret":                 "the field is caCertConfigMap (v1), caCert (v1beta1) or caCertFile",
	"authenticationMethod":         "the field is authenticationMethods (a list)",
	"authorizationPolicies":        "authorizationPolicies belongs in a BrokerAuthorization",
	"audience":                     "the field is audiences (a list)",
	"secretName":                   "a v1 port or custom x509 names its Secret with secretRef",
	"ocspResponder":                "the field is responder (revocation)",
	"crls_distribution_points":     "the field is crlDistributionPoints (revocation)",
	"issuerUrl":                    "the field is issuer (jwtSettings)",
	"jwks_uri":                     "the field is jwksUrl (jwtSettings)",
	"jwksUri":                      "the field is jwksUrl (jwtSettings)",
	"clientId":                     "jwtSettings has no client: a token's audience is checked against audiences",
}

// nearMiss suggests the fix for an unknown field at path f in v's type: a
// known near-miss, or a field that differs only in case.
func nearMiss(f string, v any) string {
	if f == "" {
		return ""
	}
	leaf := f[strings.LastIndexAny(f, ".]")+1:]
	if h, ok := nearMisses[leaf]; ok {
		return h
	}
	var names []string
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, top bool)
	walk = func(t reflect.Type, top bool) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			if strings.EqualFold(name, leaf) {
				names = append([]string{"!" + name}, names...)
			} else if top {
				names = append(names, name)
			}
			walk(t.Field(i).Type, false)
		}
	}
	walk(reflect.TypeOf(v), !strings.ContainsAny(f, ".["))
	if len(names) > 0 && names[0][0] == '!' {
		return "field names are case-sensitive: " + names[0][1:]
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return "known fields: " + strings.Join(names, ", ")
}
