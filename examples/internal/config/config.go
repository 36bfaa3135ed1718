// Package config reads the example broker's configuration file: one YAML or
// JSON document whose authentication and authorization sections use the
// field names of the Azure IoT Operations BrokerAuthentication and
// BrokerAuthorization resources, so that a policy written for that broker
// works here.
//
//	listener:
//	  address: ":8883"
//	  serverCert: certs/mqtts-endpoint.crt   # PEM chain: leaf, then intermediates
//	  serverKey: certs/mqtts-endpoint.key
//	session:
//	  onExpiry: disconnect                   # or close (no DISCONNECT, as AIO)
//	authentication:                          # BrokerAuthentication spec
//	  authenticationMethods:
//	    - method: Custom
//	      customSettings:
//	        endpoint: https://auth.example.com/
//	        caCertFile: certs/auth-ca.crt        # AIO: caCertConfigMap
//	        headers: {X-Api-Key: "..."}
//	        auth: {x509: {certFile: certs/broker.crt, keyFile: certs/broker.key}}
//	    - method: X509
//	      x509Settings:
//	        trustedClientCaCert: certs/fabrikam_root_ca.crt   # AIO: a ConfigMap name; here a file or directory
//	        authorizationAttributes:
//	          thermostat: {subject: "CN = thermostat", attributes: {group: thermostat_group}}
//	authorization:                           # BrokerAuthorization spec.authorizationPolicies
//	  rules: [...]
//
// Where the AIO resource names a Kubernetes object (a ConfigMap, a Secret),
// this file names a file instead; relative paths are taken from the
// configuration file's directory. Unknown fields are errors.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"sigs.k8s.io/yaml"
)

// File is the configuration file.
type File struct {
	Listener       Listener       `json:"listener"`
	Session        Session        `json:"session,omitempty"`
	Authentication Authentication `json:"authentication"`
	// Authorization is the authorizationPolicies section of a
	// BrokerAuthorization resource: {rules: [...]} or {denyAll: true}.
	Authorization json.RawMessage `json:"authorization,omitempty"`
	// AuthorizationFile names a policy file in the same shape, watched and
	// reloaded on change; it replaces Authorization.
	AuthorizationFile string `json:"authorizationFile,omitempty"`

	dir string // the file's directory, for relative paths
}

// Listener is the MQTT listener.
type Listener struct {
	Address    string `json:"address"`
	ServerCert string `json:"serverCert"`
	ServerKey  string `json:"serverKey"`
}

// Session configures the sessions.
type Session struct {
	// OnExpiry is "disconnect" (DISCONNECT 0xA0, the default) or "close".
	OnExpiry string `json:"onExpiry,omitempty"`
	// AllowIdentityChange lets re-authentication change the user name.
	AllowIdentityChange bool `json:"allowIdentityChange,omitempty"`
	// ExchangeTimeout bounds an enhanced-authentication exchange
	// ("30s").
	ExchangeTimeout string `json:"exchangeTimeout,omitempty"`
}

// Authentication is the spec of a BrokerAuthentication resource.
type Authentication struct {
	AuthenticationMethods []Method `json:"authenticationMethods"`
}

// The method names of authenticationMethods.
const (
	MethodCustom = "Custom"
	MethodSAT    = "ServiceAccountToken"
	MethodX509   = "X509"
	MethodSCRAM  = "SCRAM"
)

// Method is one entry of authenticationMethods, tried in order.
type Method struct {
	Method                      string          `json:"method"`
	CustomSettings              *CustomSettings `json:"customSettings,omitempty"`
	ServiceAccountTokenSettings *SATSettings    `json:"serviceAccountTokenSettings,omitempty"`
	X509Settings                *X509Settings   `json:"x509Settings,omitempty"`
	SCRAMSettings               *SCRAMSettings  `json:"scramSettings,omitempty"`
}

// CustomSettings configures custom authentication.
type CustomSettings struct {
	Endpoint   string            `json:"endpoint"`
	CACertFile string            `json:"caCertFile,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	Auth       *CustomAuth       `json:"auth,omitempty"`
	Timeout    string            `json:"timeout,omitempty"`
	// CircuitBreaker tunes the breaker that stops calling a failing
	// server (ours); unset fields keep customauth's defaults (5 failures,
	// 10 s).
	CircuitBreaker *CircuitBreaker `json:"circuitBreaker,omitempty"`
}

// CircuitBreaker configures customauth's circuit breaker.
type CircuitBreaker struct {
	// FailureThreshold is the number of failures in a row that opens the
	// breaker; zero means the default.
	FailureThreshold int `json:"failureThreshold,omitempty"`
	// Cooldown is how long it stays open before a probe ("10s"); empty
	// means the default.
	Cooldown string `json:"cooldown,omitempty"`
}

// CustomAuth is how the broker authenticates itself to the custom server.
type CustomAuth struct {
	X509 *CertKey `json:"x509,omitempty"`
}

// CertKey names a certificate chain and its key.
type CertKey struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
}

// SATSettings configures Kubernetes service account token authentication.
type SATSettings struct {
	Audiences []string `json:"audiences"`
	// The rest is ours. Without APIServer the broker uses the in-cluster
	// configuration (KUBERNETES_SERVICE_HOST and the mounted CA and token).
	APIServer string `json:"apiServer,omitempty"`
	CAFile    string `json:"caFile,omitempty"`
	TokenFile string `json:"tokenFile,omitempty"`
	// Mode is "tokenReview" (the default: one TokenReview per new token)
	// or "local" (the cluster's OIDC discovery and JWKS, no call per
	// connect); Issuer and JWKSFile serve the local mode.
	Mode     string `json:"mode,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
	JWKSFile string `json:"jwksFile,omitempty"`
	// AnnotationPrefix selects the service account annotations that become
	// attributes; empty means aio-broker-auth/.
	AnnotationPrefix string `json:"annotationPrefix,omitempty"`
	// AllowUsernameFallback accepts MQTT 3.1.1 clients that put K8S-SAT in
	// the user name and the token in the password.
	AllowUsernameFallback bool `json:"allowUsernameFallback,omitempty"`
}

// X509Settings configures X.509 client certificate authentication.
type X509Settings struct {
	// TrustedClientCaCert is a PEM file or a directory of them (AIO: a
	// ConfigMap name).
	TrustedClientCaCert string `json:"trustedClientCaCert"`
	// CRLs are CRL files or directories (ours).
	CRLs []string `json:"crls,omitempty"`
	// AuthorizationAttributes map certificate subjects to attributes.
	AuthorizationAttributes map[string]AttributeEntry `json:"authorizationAttributes,omitempty"`
	// RequireClientAuthEku refuses client certificates without an
	// extended key usage extension (ours). By default they are accepted,
	// as RFC 5280, OpenSSL and mosquitto accept them; a certificate whose
	// extension lacks clientAuth is refused either way.
	RequireClientAuthEku bool `json:"requireClientAuthEku,omitempty"`
}

// AttributeEntry is one entry of authorizationAttributes.
type AttributeEntry struct {
	Subject    string            `json:"subject"`
	Attributes map[string]string `json:"attributes"`
}

// SCRAMSettings configures SCRAM-SHA-256/512 enhanced authentication
// (ours).
type SCRAMSettings struct {
	// UsersFile holds the users' derived keys (never passwords); it is
	// watched, and users removed from it lose their connections. Write it
	// with the scramuser command.
	UsersFile string `json:"usersFile"`
	// Mechanisms limits the methods offered; empty means SCRAM-SHA-256
	// and SCRAM-SHA-512.
	Mechanisms []string `json:"mechanisms,omitempty"`
	// UnknownUserKeyFile holds the secret from which unknown users' fake
	// salts are derived; share it between the nodes of a cluster. Empty
	// means a random key per process.
	UnknownUserKeyFile string `json:"unknownUserKeyFile,omitempty"`
}

// Load reads and validates a configuration file.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	f.dir = filepath.Dir(abs)
	return f, nil
}

// Parse decodes and validates a configuration document; relative paths in
// it are taken from the current directory.
func Parse(data []byte) (*File, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

func (f *File) validate() error {
	var errs []error
	if f.Listener.ServerCert == "" || f.Listener.ServerKey == "" {
		errs = append(errs, errors.New("listener.serverCert and listener.serverKey are required: the listener speaks TLS"))
	}
	switch f.Session.OnExpiry {
	case "", "disconnect", "close":
	default:
		errs = append(errs, fmt.Errorf("session.onExpiry %q: want disconnect or close", f.Session.OnExpiry))
	}
	if f.Session.ExchangeTimeout != "" {
		if _, err := time.ParseDuration(f.Session.ExchangeTimeout); err != nil {
			errs = append(errs, fmt.Errorf("session.exchangeTimeout: %w", err))
		}
	}
	if len(f.Authentication.AuthenticationMethods) == 0 {
		errs = append(errs, errors.New("authentication.authenticationMethods: at least one method is required"))
	}
	for i, m := range f.Authentication.AuthenticationMethods {
		at := fmt.Sprintf("authentication.authenticationMethods[%d]", i)
		set := 0
		for _, p := range []bool{m.CustomSettings != nil, m.ServiceAccountTokenSettings != nil, m.X509Settings != nil, m.SCRAMSettings != nil} {
			if p {
				set++
			}
		}
		want := map[string]bool{
			MethodCustom: m.CustomSettings != nil,
			MethodSAT:    m.ServiceAccountTokenSettings != nil,
			MethodX509:   m.X509Settings != nil,
			MethodSCRAM:  m.SCRAMSettings != nil,
		}
		ok, known := want[m.Method]
		switch {
		case !known:
			errs = append(errs, fmt.Errorf("%s.method %q: want Custom, ServiceAccountToken, X509 or SCRAM", at, m.Method))
		case !ok || set != 1:
			errs = append(errs, fmt.Errorf("%s: method %s needs its settings, and only those", at, m.Method))
		}
		if m.CustomSettings != nil && m.CustomSettings.Timeout != "" {
			if _, err := time.ParseDuration(m.CustomSettings.Timeout); err != nil {
				errs = append(errs, fmt.Errorf("%s.customSettings.timeout: %w", at, err))
			}
		}
		if m.CustomSettings != nil && m.CustomSettings.CircuitBreaker != nil {
			cb := m.CustomSettings.CircuitBreaker
			if cb.FailureThreshold < 0 {
				errs = append(errs, fmt.Errorf("%s.customSettings.circuitBreaker.failureThreshold %d: want a positive number", at, cb.FailureThreshold))
			}
			if cb.Cooldown != "" {
				if d, err := time.ParseDuration(cb.Cooldown); err != nil || d <= 0 {
					errs = append(errs, fmt.Errorf("%s.customSettings.circuitBreaker.cooldown %q: want a positive duration", at, cb.Cooldown))
				}
			}
		}
		if st := m.ServiceAccountTokenSettings; st != nil {
			if len(st.Audiences) == 0 {
				errs = append(errs, fmt.Errorf("%s.serviceAccountTokenSettings.audiences: at least one audience is required", at))
			}
			if st.Mode != "" && st.Mode != "tokenReview" && st.Mode != "local" {
				errs = append(errs, fmt.Errorf("%s.serviceAccountTokenSettings.mode %q: want tokenReview or local", at, st.Mode))
			}
		}
		if m.X509Settings != nil && m.X509Settings.TrustedClientCaCert == "" {
			errs = append(errs, fmt.Errorf("%s.x509Settings.trustedClientCaCert is required", at))
		}
		if m.SCRAMSettings != nil && m.SCRAMSettings.UsersFile == "" {
			errs = append(errs, fmt.Errorf("%s.scramSettings.usersFile is required", at))
		}
	}
	hasInline := len(bytes.TrimSpace(f.Authorization)) > 0 && string(bytes.TrimSpace(f.Authorization)) != "null"
	switch {
	case hasInline && f.AuthorizationFile != "":
		errs = append(errs, errors.New("authorization and authorizationFile are exclusive"))
	case !hasInline && f.AuthorizationFile == "":
		errs = append(errs, errors.New("authorization is required (rules, or denyAll: true); a broker without authorization would allow every authenticated client everything"))
	}
	return errors.Join(errs...)
}

// Path resolves p against the configuration file's directory.
func (f *File) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || f.dir == "" {
		return p
	}
	return filepath.Join(f.dir, p)
}
