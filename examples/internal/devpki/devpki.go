// Package devpki creates the development PKI of the example broker: the
// certificates of the Azure IoT Operations TLS, X.509 and ABAC tutorial.
//
// Server side (Contoso): "Contoso Root CA" → "Contoso Intermediate CA 1" →
// "mqtts-endpoint" (SANs localhost, 127.0.0.1, ::1), bundled with its
// intermediate. Client side (Fabrikam): "Fabrikam Root CA" → "Fabrikam
// Intermediate CA 1" → thermostat, hygrometer, heater and lightbulb, each
// bundled with the intermediate as `step certificate create --bundle` does.
// For negative tests it also makes "intruder" (from an untrusted CA) and
// "expired" (a Fabrikam leaf whose validity ended yesterday).
//
// The keys are written unencrypted with mode 0600, also over an existing
// file whatever its mode (see [WriteSecretFile]): for development only.
package devpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The file names, as in the tutorial.
const (
	ServerRootCA    = "contoso_root_ca.crt"
	ServerCert      = "mqtts-endpoint.crt" // leaf + intermediate
	ServerKey       = "mqtts-endpoint.key"
	ClientRootCA    = "fabrikam_root_ca.crt"
	ClientIntermCA  = "fabrikam_intermediate_ca.crt"
	UntrustedRootCA = "intruder_root_ca.crt"
	defaultValidity = 100 * 24 * time.Hour // --not-after 2400h
	caValidity      = 10 * 365 * 24 * time.Hour
	markerFile      = ".complete"
	privateFileMode = 0o600
	publicFileMode  = 0o644
	dirMode         = 0o755
)

// Clients are the tutorial's client certificates, signed by the Fabrikam
// intermediate.
var Clients = []string{"thermostat", "hygrometer", "heater", "lightbulb"}

// Negative-test clients: Intruder is signed by a CA the broker does not
// trust, Expired by the Fabrikam intermediate with a validity in the past.
const (
	Intruder = "intruder"
	Expired  = "expired"
)

// CertFile and KeyFile name a client's files.
func CertFile(client string) string { return client + ".crt" }

// KeyFile names a client's private key file.
func KeyFile(client string) string { return client + ".key" }

// Ensure creates the PKI in dir unless a complete one is there already, and
// reports whether it created it.
func Ensure(dir string, now time.Time) (created bool, err error) {
	if _, err := os.Stat(filepath.Join(dir, markerFile)); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return false, err
	}
	if err := create(dir, now); err != nil {
		return false, fmt.Errorf("devpki: %w", err)
	}
	return true, os.WriteFile(filepath.Join(dir, markerFile), []byte(now.UTC().Format(time.RFC3339)+"\n"), publicFileMode)
}

type ca struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func create(dir string, now time.Time) error {
	w := &writer{dir: dir}
	contosoRoot := w.ca("Contoso Root CA", nil, now)
	contosoInter := w.ca("Contoso Intermediate CA 1", contosoRoot, now)
	server := w.leaf("mqtts-endpoint", contosoInter, now, now.Add(defaultValidity), x509.ExtKeyUsageServerAuth)
	w.pem(ServerRootCA, publicFileMode, contosoRoot.cert)
	w.pem(ServerCert, publicFileMode, server.cert, contosoInter.cert)
	w.key(ServerKey, server.key)

	fabRoot := w.ca("Fabrikam Root CA", nil, now)
	fabInter := w.ca("Fabrikam Intermediate CA 1", fabRoot, now)
	w.pem(ClientRootCA, publicFileMode, fabRoot.cert)
	w.pem(ClientIntermCA, publicFileMode, fabInter.cert)
	for _, name := range Clients {
		c := w.leaf(name, fabInter, now, now.Add(defaultValidity), x509.ExtKeyUsageClientAuth)
		w.pem(CertFile(name), publicFileMode, c.cert, fabInter.cert)
		w.key(KeyFile(name), c.key)
	}
	expired := w.leaf(Expired, fabInter, now.Add(-48*time.Hour), now.Add(-24*time.Hour), x509.ExtKeyUsageClientAuth)
	w.pem(CertFile(Expired), publicFileMode, expired.cert, fabInter.cert)
	w.key(KeyFile(Expired), expired.key)

	intruderRoot := w.ca("Intruder Root CA", nil, now)
	intruder := w.leaf(Intruder, intruderRoot, now, now.Add(defaultValidity), x509.ExtKeyUsageClientAuth)
	w.pem(UntrustedRootCA, publicFileMode, intruderRoot.cert)
	w.pem(CertFile(Intruder), publicFileMode, intruder.cert)
	w.key(KeyFile(Intruder), intruder.key)
	return w.err
}

// writer creates keys, certificates and files, keeping the first error.
type writer struct {
	dir string
	err error
}

func (w *writer) newKey() crypto.Signer {
	if w.err != nil {
		return nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	w.err = err
	return k
}

func (w *writer) issue(tmpl *x509.Certificate, parent *ca, key crypto.Signer) *x509.Certificate {
	if w.err != nil {
		return nil
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		w.err = err
		return nil
	}
	tmpl.SerialNumber = serial
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		w.err = err
		return nil
	}
	c, err := x509.ParseCertificate(der)
	w.err = err
	return c
}

func (w *writer) ca(cn string, parent *ca, now time.Time) *ca {
	key := w.newKey()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	if parent != nil {
		tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
	}
	return &ca{cert: w.issue(tmpl, parent, key), key: key}
}

func (w *writer) leaf(cn string, parent *ca, notBefore, notAfter time.Time, eku x509.ExtKeyUsage) *ca {
	key := w.newKey()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore.Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{eku},
		BasicConstraintsValid: true,
	}
	if eku == x509.ExtKeyUsageServerAuth {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	return &ca{cert: w.issue(tmpl, parent, key), key: key}
}

func (w *writer) pem(name string, mode os.FileMode, certs ...*x509.Certificate) {
	if w.err != nil {
		return
	}
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	w.err = os.WriteFile(filepath.Join(w.dir, name), out, mode)
}

func (w *writer) key(name string, k crypto.Signer) {
	if w.err != nil {
		return
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		w.err = err
		return
	}
	w.err = WriteSecretFile(filepath.Join(w.dir, name), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// WriteSecretFile writes data (a private key, a password, derived keys) to
// path with mode 0600, whether or not path exists: os.WriteFile keeps the
// mode of an existing file, so a key written over a world-readable file
// would stay readable. The data goes to a temporary file of mode 0600 in
// the same directory, which is synced and renamed over path, so a reader
// sees the old file or the new one, never a partial or readable secret.
func WriteSecretFile(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(privateFileMode); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
