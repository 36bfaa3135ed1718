package config

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/customauth"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/scramauth"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// Setup is what a configuration file builds: the manager's configuration,
// the listener's TLS configuration, and the watchers that re-check live
// sessions when trust or policy files change.
type Setup struct {
	// Auth is the configuration of the auth.Manager.
	Auth auth.Config
	// ListenerTLS is the listener's TLS configuration: the server
	// certificate, and client certificate verification when an X509
	// method is configured.
	ListenerTLS *tls.Config

	x509    *x509auth.Authenticator
	trust   *truststore.Store
	policy  *abac.Watcher
	manager atomic.Pointer[auth.Manager]
	log     *slog.Logger

	mu      sync.Mutex
	closers []func()
}

// Build creates the authenticators, the authorizer and the listener TLS of
// f. Close the Setup to stop its watchers.
func Build(f *File, log *slog.Logger) (_ *Setup, err error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Setup{log: log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	cert, err := tls.LoadX509KeyPair(f.Path(f.Listener.ServerCert), f.Path(f.Listener.ServerKey))
	if err != nil {
		return nil, fmt.Errorf("config: listener certificate: %w", err)
	}
	base := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.ListenerTLS = base

	methods := f.Authentication.AuthenticationMethods
	onlyX509 := len(methods) == 1 && methods[0].Method == MethodX509
	chain := make(auth.Chain, 0, len(methods))
	for i, m := range methods {
		var a auth.Authenticator
		switch m.Method {
		case MethodCustom:
			a, err = s.custom(f, m.CustomSettings)
		case MethodX509:
			a, err = s.x509auth(f, m.X509Settings, !onlyX509)
		case MethodSAT:
			a, err = s.sat(f, m.ServiceAccountTokenSettings)
		case MethodSCRAM:
			a, err = s.scram(f, m.SCRAMSettings)
		default:
			err = fmt.Errorf("method %s is not supported by this broker build", m.Method)
		}
		if err != nil {
			return nil, fmt.Errorf("config: authentication.authenticationMethods[%d] (%s): %w", i, m.Method, err)
		}
		chain = append(chain, a)
	}
	if s.x509 != nil {
		s.ListenerTLS = s.x509.ServerTLSConfig(base)
	}

	authz, err := s.authorizer(f)
	if err != nil {
		return nil, err
	}
	s.Auth = auth.Config{
		Authenticator:       chain,
		Authorizer:          authz,
		Logger:              log,
		AllowIdentityChange: f.Session.AllowIdentityChange,
	}
	if f.Session.OnExpiry == "close" {
		s.Auth.OnExpiry = auth.CloseOnExpiry
	}
	if f.Session.ExchangeTimeout != "" {
		s.Auth.ExchangeTimeout, _ = time.ParseDuration(f.Session.ExchangeTimeout) // validated by Parse
	}
	return s, nil
}

func (s *Setup) custom(f *File, c *CustomSettings) (auth.Authenticator, error) {
	cfg := customauth.Config{Endpoint: c.Endpoint, Logger: s.log}
	if c.CACertFile != "" {
		pem, err := os.ReadFile(f.Path(c.CACertFile))
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caCertFile %s holds no PEM certificate", c.CACertFile)
		}
	}
	if c.Auth != nil && c.Auth.X509 != nil {
		pair, err := tls.LoadX509KeyPair(f.Path(c.Auth.X509.CertFile), f.Path(c.Auth.X509.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("auth.x509: %w", err)
		}
		cfg.ClientCertificate = &pair
	}
	if len(c.Headers) > 0 {
		cfg.Headers = http.Header{}
		for k, v := range c.Headers {
			cfg.Headers.Set(k, v)
		}
	}
	if c.Timeout != "" {
		cfg.Timeout, _ = time.ParseDuration(c.Timeout) // validated by Parse
	}
	if cb := c.CircuitBreaker; cb != nil {
		cfg.Breaker.Failures = cb.FailureThreshold
		if cb.Cooldown != "" {
			cfg.Breaker.CoolDown, _ = time.ParseDuration(cb.Cooldown) // validated by Parse
		}
	}
	a, err := customauth.New(cfg)
	if err != nil {
		return nil, err
	}
	s.onClose(a.CloseIdleConnections)
	return a, nil
}

func (s *Setup) sat(f *File, c *SATSettings) (auth.Authenticator, error) {
	cfg := satauth.Config{
		Audiences:             c.Audiences,
		APIServer:             c.APIServer,
		CAFile:                f.Path(c.CAFile),
		TokenFile:             f.Path(c.TokenFile),
		Issuer:                c.Issuer,
		JWKSFile:              f.Path(c.JWKSFile),
		AnnotationPrefix:      c.AnnotationPrefix,
		AllowUsernameFallback: c.AllowUsernameFallback,
		Logger:                s.log,
	}
	if c.Mode == "local" {
		cfg.Mode = satauth.ModeLocal
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := satauth.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.onClose(a.Close)
	return a, nil
}

func (s *Setup) scram(f *File, c *SCRAMSettings) (auth.Authenticator, error) {
	store, err := scramauth.NewFileStore(scramauth.FileStoreConfig{
		Path:   f.Path(c.UsersFile),
		Logger: s.log,
		OnChange: func(u *scramauth.Users) {
			if m := s.manager.Load(); m != nil {
				rep := m.Recheck(context.Background(), scramauth.CheckStore(u))
				s.log.Info("SCRAM users changed: sessions re-checked", slog.Int("checked", rep.Checked), slog.Int("disconnected", rep.Disconnected))
			}
		},
	})
	if err != nil {
		return nil, err
	}
	s.onClose(func() { _ = store.Close() })
	cfg := scramauth.Config{Store: store}
	for _, m := range c.Mechanisms {
		cfg.Mechanisms = append(cfg.Mechanisms, scramauth.Mechanism(m))
	}
	if c.UnknownUserKeyFile != "" {
		if cfg.UnknownUserKey, err = os.ReadFile(f.Path(c.UnknownUserKeyFile)); err != nil {
			return nil, err
		}
	}
	return scramauth.New(cfg)
}

func (s *Setup) x509auth(f *File, c *X509Settings, optional bool) (auth.Authenticator, error) {
	if s.x509 != nil {
		return nil, errors.New("only one X509 method per listener")
	}
	crls := make([]string, len(c.CRLs))
	for i, p := range c.CRLs {
		crls[i] = f.Path(p)
	}
	store, err := truststore.New(truststore.Config{CAPaths: []string{f.Path(c.TrustedClientCaCert)}, CRLPaths: crls, Logger: s.log})
	if err != nil {
		return nil, err
	}
	s.trust = store
	s.onClose(func() { _ = store.Close() })
	names := make([]string, 0, len(c.AuthorizationAttributes))
	for name := range c.AuthorizationAttributes {
		names = append(names, name)
	}
	slices.Sort(names)
	mappings := make([]x509auth.Mapping, 0, len(names))
	for _, name := range names {
		e := c.AuthorizationAttributes[name]
		mappings = append(mappings, x509auth.Mapping{Name: name, Subject: e.Subject, Attributes: e.Attributes})
	}
	a, err := x509auth.New(x509auth.Config{Trust: store, Mappings: mappings, ClientCertOptional: optional,
		RequireClientAuthEKU: c.RequireClientAuthEku, Logger: s.log})
	if err != nil {
		return nil, err
	}
	s.x509 = a
	return a, nil
}

func (s *Setup) authorizer(f *File) (auth.Authorizer, error) {
	if f.AuthorizationFile != "" {
		w, err := abac.NewWatcher(abac.WatchConfig{
			Path:   f.Path(f.AuthorizationFile),
			Logger: s.log,
			OnChange: func(p *abac.Policy) {
				if m := s.manager.Load(); m != nil {
					rep := m.Recheck(context.Background(), auth.CheckConnect(p))
					s.log.Info("policy changed: sessions re-checked", slog.Int("checked", rep.Checked), slog.Int("disconnected", rep.Disconnected))
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("config: authorizationFile: %w", err)
		}
		s.policy = w
		s.onClose(func() { _ = w.Close() })
		return w, nil
	}
	p, err := abac.Parse(f.Authorization)
	if err != nil {
		return nil, fmt.Errorf("config: authorization: %w", err)
	}
	return p, nil
}

// Attach starts the live re-checks against m: a truststore change
// disconnects the X.509 clients that lost trust, a policy file change those
// that lost Connect permission.
func (s *Setup) Attach(m *auth.Manager) {
	s.manager.Store(m)
	if s.x509 != nil {
		s.onClose(s.x509.RecheckOnChange(m, s.trust))
	}
}

// Trust returns the truststore of the X509 method, or nil.
func (s *Setup) Trust() *truststore.Store { return s.trust }

func (s *Setup) onClose(f func()) {
	s.mu.Lock()
	s.closers = append(s.closers, f)
	s.mu.Unlock()
}

// Close stops the watchers and re-checks, last started first.
func (s *Setup) Close() {
	s.mu.Lock()
	closers := s.closers
	s.closers = nil
	s.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
}
