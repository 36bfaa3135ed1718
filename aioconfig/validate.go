package aioconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Validate checks the configuration as a whole: every method has its
// required settings, every value is well-formed (durations such as "10s"
// included, for a Config built in Go), every port names resources that
// exist, no two ports share an address. It reads no file; [Build] does, and reports missing
// ones.
func (c *Config) Validate() error {
	var errs []error
	for _, a := range c.Authentications {
		d := docRef{source: a.Source, kind: KindAuthentication, name: a.Name}
		prefix := "spec."
		if len(a.Methods) == 0 {
			errs = append(errs, d.err(prefix+"authenticationMethods", "", ErrMissing, "at least one method"))
		}
		for i, m := range a.Methods {
			at := fmt.Sprintf("%sauthenticationMethods[%d].%s", prefix, i, settingsField(m.Method, a.API))
			switch m.Method {
			case MethodCustom:
				if m.Custom == nil || m.Custom.Endpoint == "" {
					errs = append(errs, d.err(at+".endpoint", "", ErrMissing, "the custom authentication server's https:// URL"))
				} else if n := nonEmpty(m.Custom.CACert, m.Custom.CACertConfigMap, m.Custom.CACertFile); n > 1 {
					errs = append(errs, d.err(at+".caCert", "", ErrInvalidValue, "caCert, caCertConfigMap and caCertFile are exclusive"))
				}
			case MethodSAT:
				if m.SAT == nil || len(m.SAT.Audiences) == 0 {
					errs = append(errs, d.err(at+".audiences", "", ErrMissing, "at least one audience: a token must carry one"))
				}
			case MethodX509:
				if m.X509 == nil || m.X509.TrustedClientCaCert == "" {
					errs = append(errs, d.err(at+".trustedClientCaCert", "", ErrMissing, "the ConfigMap (or PEM file) of the trusted client CAs"))
				}
				if r := m.X509; r != nil && r.Revocation != nil && !r.Revocation.OCSP && r.Revocation.Responder == "" && !r.Revocation.CRLDistributionPoints {
					errs = append(errs, d.err(at+".revocation", "", ErrMissing, "say where to ask: ocsp: true, responder: URL or crlDistributionPoints: true"))
				}
			case MethodJWT:
				switch {
				case m.JWT == nil || m.JWT.Issuer == "":
					errs = append(errs, d.err(at+".issuer", "", ErrMissing, "the issuer URL, equal to the tokens' iss claim"))
				case len(m.JWT.Audiences) == 0:
					errs = append(errs, d.err(at+".audiences", "", ErrMissing, "at least one audience: a token must carry one"))
				}
			case MethodSCRAM:
				if m.SCRAM == nil || m.SCRAM.UsersFile == "" {
					errs = append(errs, d.err(at+".usersFile", "", ErrMissing, "write one with the scramuser command"))
				}
			}
		}
	}
	errs = append(errs, c.checkValues()...)
	if len(c.Listeners) == 0 {
		errs = append(errs, &Error{Kind: KindListener, Err: ErrMissing, Hint: "at least one BrokerListener with its ports"})
	}
	addrs := map[string]string{}
	for _, l := range c.Listeners {
		d := docRef{source: l.Source, kind: KindListener, name: l.Name}
		if len(l.Ports) == 0 {
			errs = append(errs, d.err("spec.ports", "", ErrMissing, "at least one port"))
		}
		for i, p := range l.Ports {
			at := fmt.Sprintf("spec.ports[%d]", i)
			addr := fmt.Sprintf("%s:%d", p.Address, p.Port)
			if o, ok := addrs[fmt.Sprint(p.Port)]; ok {
				errs = append(errs, d.err(at+".port", fmt.Sprint(p.Port), ErrDuplicate, "port already used by "+o))
			}
			addrs[fmt.Sprint(p.Port)] = l.Name + " " + addr
			switch a := c.authentication(p.AuthenticationRef); {
			case p.AuthenticationRef == "":
				errs = append(errs, d.err(at+".authenticationRef", "", ErrMissing, "name a BrokerAuthentication: Azure IoT Operations runs a port without authenticationRef unauthenticated, this library refuses to"))
			case a == nil:
				errs = append(errs, d.err(at+".authenticationRef", p.AuthenticationRef, ErrNotFound, "BrokerAuthentications: "+names(c.Authentications, func(a *Authentication) string { return a.Name })))
			case p.TLS == nil && a.has(MethodX509):
				errs = append(errs, d.err(at+".tls", "", ErrMissing, "BrokerAuthentication "+a.Name+" has an X509 method: the port needs tls: {mode: Manual, ...}"))
			}
			if p.AuthorizationRef != "" && c.authorization(p.AuthorizationRef) == nil {
				errs = append(errs, d.err(at+".authorizationRef", p.AuthorizationRef, ErrNotFound, "BrokerAuthorizations: "+names(c.Authorizations, func(a *Authorization) string { return a.Name })))
			}
		}
	}
	return errors.Join(errs...)
}

func nonEmpty(s ...string) (n int) {
	for _, v := range s {
		if v != "" {
			n++
		}
	}
	return n
}

func names[T any](xs []T, name func(T) string) string {
	if len(xs) == 0 {
		return "none"
	}
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = name(x)
	}
	return strings.Join(out, ", ")
}

func (c *Config) authentication(name string) *Authentication {
	for _, a := range c.Authentications {
		if a.Name == name {
			return a
		}
	}
	return nil
}

func (c *Config) authorization(name string) *Authorization {
	for _, a := range c.Authorizations {
		if a.Name == name {
			return a
		}
	}
	return nil
}

func (a *Authentication) has(method string) bool {
	for _, m := range a.Methods {
		if m.Method == method {
			return true
		}
	}
	return false
}

// mountDir returns where ConfigMaps (secret false) or Secrets are mounted.
func (c *Config) mountDir(secret bool) string {
	dir := c.Settings.ConfigMapDir
	if secret {
		dir = c.Settings.SecretDir
	}
	if dir == "" {
		return c.dir
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(c.settingsDir, dir)
	}
	return dir
}

// Path resolves a file path against the first configuration file's
// directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// resolve finds what a ConfigMap or Secret name (or a file path) refers
// to, as a pod sees it: the directory MOUNT/NAME, a file per key. A value
// that is no such directory is taken as a path, relative to the
// configuration's directory. It returns the path that exists.
func (c *Config) resolve(value string, secret bool) (string, error) {
	what := "ConfigMap"
	if secret {
		what = "Secret"
	}
	var tried []string
	if !strings.ContainsAny(value, `/\`) {
		mounted := filepath.Join(c.mountDir(secret), value)
		if fi, err := os.Stat(mounted); err == nil && fi.IsDir() {
			return mounted, nil
		}
		tried = append(tried, mounted+" (the "+what+" mounted as a directory)")
	}
	p := c.Path(value)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	tried = append(tried, p+" (a file)")
	return "", fmt.Errorf("%w: %s %q: neither %s exists", ErrNotFound, what, value, strings.Join(tried, " nor "))
}

// resolveKey finds one key of a Secret (or ConfigMap): MOUNT/NAME/KEY, or,
// when value is a directory path, value/KEY.
func (c *Config) resolveKey(value, key string, secret bool) (string, error) {
	dir, err := c.resolve(value, secret)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, key)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w: key %s of %q (%s)", ErrNotFound, key, value, p)
	}
	return p, nil
}
