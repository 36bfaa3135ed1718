package aioconfig

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/mqttauth/mqttauth/scramauth"
	"github.com/mqttauth/mqttauth/truststore"
)

// In-memory ConfigMaps and Secrets: with the Kubernetes API as the source
// (Cluster), the ConfigMaps and Secrets the resources name are read
// through the API and held in memory, never written to disk. Each
// assembled Config carries an immutable snapshot of them (objects), and
// the sources Build makes read from it: a truststore (truststore.NewMemory)
// and a SCRAM users store (scramauth.MemoryStore) that Apply updates in
// place, as a file watch would; the data read once (a server certificate,
// a custom server's CA and client certificate, attribute Secrets, a JWT
// issuer's CA) is part of what tells a changed BrokerAuthentication, which
// Apply rebuilds.

// memory returns the keys of the ConfigMap (secret false) or Secret named
// value when the configuration holds them in memory.
func (c *Config) memory(value string, secret bool) (map[string][]byte, bool) {
	if c.objects == nil || value == "" || strings.ContainsAny(value, `/\`) {
		return nil, false
	}
	r := "configmaps/"
	if secret {
		r = "secrets/"
	}
	keys, ok := c.objects[r+value]
	return keys, ok
}

// sortedKeys are the keys of a ConfigMap or Secret in order, without the
// dot-files a mounted volume also holds.
func sortedKeys(keys map[string][]byte) []string {
	out := slices.Sorted(maps.Keys(keys))
	return slices.DeleteFunc(out, func(k string) bool { return strings.HasPrefix(k, ".") })
}

// digest adds the keys and values of an object to h, in order.
func digestKeys(h interface{ Write([]byte) (int, error) }, keys map[string][]byte) {
	var n [8]byte
	for _, k := range sortedKeys(keys) {
		binary.BigEndian.PutUint64(n[:], uint64(len(k)))
		_, _ = h.Write(n[:])
		_, _ = h.Write([]byte(k))
		binary.BigEndian.PutUint64(n[:], uint64(len(keys[k])))
		_, _ = h.Write(n[:])
		_, _ = h.Write(keys[k])
	}
}

// readRef reads the content of a ConfigMap or Secret value: every key of
// the in-memory object, or the file (or every file of the directory) it
// resolves to. Contents are returned in key order.
func (c *Config) readRef(value string, secret bool) ([][]byte, error) {
	if keys, ok := c.memory(value, secret); ok {
		var out [][]byte
		for _, k := range sortedKeys(keys) {
			out = append(out, keys[k])
		}
		return out, nil
	}
	path, err := c.resolve(value, secret)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		files = files[:0]
		for _, e := range entries {
			if e.Name()[0] != '.' && !e.IsDir() {
				files = append(files, path+string(os.PathSeparator)+e.Name())
			}
		}
	}
	var out [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, data)
	}
	return out, nil
}

// pemPoolOf reads the PEM certificates of a ConfigMap or file.
func (c *Config) pemPoolOf(value string) (*x509.CertPool, error) {
	data, err := c.readRef(value, false)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for _, d := range data {
		if pool.AppendCertsFromPEM(d) {
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrInvalidValue, value)
	}
	return pool, nil
}

// keyPair loads the certificate and key of a kubernetes.io/tls Secret
// (keys tls.crt and tls.key) held in memory or mounted, or of the files.
func (c *Config) keyPair(secretRef, certFile, keyFile string) (tls.Certificate, error) {
	if keys, ok := c.memory(secretRef, true); ok {
		crt, okc := keys["tls.crt"]
		key, okk := keys["tls.key"]
		if !okc || !okk {
			return tls.Certificate{}, fmt.Errorf("%w: Secret %s needs the keys tls.crt and tls.key", ErrNotFound, secretRef)
		}
		return tls.X509KeyPair(crt, key)
	}
	certFile, keyFile = c.Path(certFile), c.Path(keyFile)
	if secretRef != "" {
		var err error
		if certFile, err = c.resolveKey(secretRef, "tls.crt", true); err != nil {
			return tls.Certificate{}, err
		}
		if keyFile, err = c.resolveKey(secretRef, "tls.key", true); err != nil {
			return tls.Certificate{}, err
		}
	}
	return tls.LoadX509KeyPair(certFile, keyFile)
}

// memoryTrust is the trust set of an X509 method whose CA ConfigMap is
// held in memory, with its CRLs (ConfigMaps in memory, or files), and the
// digest of what it was made from.
func memoryTrust(c *Config, s *X509Settings) (*truststore.Set, [32]byte, error) {
	h := sha256.New()
	var cas []*x509.Certificate
	keys, _ := c.memory(s.TrustedClientCaCert, false)
	digestKeys(h, keys)
	for _, k := range sortedKeys(keys) {
		certs, err := truststore.ParseCertificates(keys[k])
		if err != nil {
			return nil, [32]byte{}, fmt.Errorf("trustedClientCaCert: key %s: %w", k, err)
		}
		cas = append(cas, certs...)
	}
	var crls []*x509.RevocationList
	for i, ref := range s.CRLs {
		data, err := c.readRef(ref, false)
		if err != nil {
			return nil, [32]byte{}, fmt.Errorf("crls[%d]: %w", i, err)
		}
		for _, d := range data {
			_, _ = h.Write(d)
			l, err := truststore.ParseCRLs(d)
			if err != nil {
				return nil, [32]byte{}, fmt.Errorf("crls[%d]: %w", i, err)
			}
			crls = append(crls, l...)
		}
	}
	set, err := truststore.NewSet(cas, crls)
	if err != nil {
		return nil, [32]byte{}, err
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return set, sum, nil
}

// usersKey is the key of a SCRAM users Secret.
const usersKey = "users.json"

// memoryUsers parses the users of a SCRAM users Secret held in memory.
func memoryUsers(keys map[string][]byte) (*scramauth.Users, [32]byte, error) {
	data, ok := keys[usersKey]
	if !ok {
		return nil, [32]byte{}, fmt.Errorf("%w: the Secret has no key %s", ErrNotFound, usersKey)
	}
	u, err := scramauth.ParseUsers(data)
	if err != nil {
		return nil, [32]byte{}, err
	}
	return u, sha256.Sum256(data), nil
}

// authnKey tells a changed BrokerAuthentication: its methods and the
// in-memory data its build reads once. The data its sources follow in
// place (the trusted CAs, CRLs and SCRAM users) is not part of it.
func authnKey(c *Config, a *Authentication) string {
	h := sha256.New()
	_, _ = h.Write([]byte(a.Name))
	_, _ = h.Write([]byte{0})
	_, _ = fmt.Fprintf(h, "%s", mustJSON(a.Methods))
	once := func(value string, secret bool) {
		if keys, ok := c.memory(value, secret); ok {
			_, _ = h.Write([]byte{1})
			digestKeys(h, keys)
		}
	}
	for _, m := range a.Methods {
		switch {
		case m.X509 != nil && m.X509.Attributes != nil:
			once(m.X509.Attributes.SecretName, true)
		case m.Custom != nil:
			once(m.Custom.CACert, false)
			once(m.Custom.CACertConfigMap, false)
			if x := m.Custom.Auth; x != nil && x.X509 != nil {
				once(x.X509.SecretRef, true)
				once(x.X509.SecretName, true)
			}
		case m.JWT != nil:
			once(m.JWT.CACert, false)
		}
	}
	return string(h.Sum(nil))
}

// mustJSON is v as JSON; the configuration types always marshal.
func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
