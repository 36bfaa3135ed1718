package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// KeyType selects the key algorithm of a certificate made by the test PKI.
type KeyType uint8

// The key types. ECDSA P-256 is the default: it is fast to generate.
const (
	ECDSA   KeyType = iota // ECDSA on P-256
	RSA                    // RSA, 2048 bits
	Ed25519                // Ed25519
)

// CertOption changes a certificate made by [NewRootCA], [CA.Intermediate] or
// [CA.Leaf].
type CertOption func(*certSpec)

type certSpec struct {
	subject   pkix.Name
	notBefore time.Time
	notAfter  time.Time
	keyType   KeyType
	ekus      []x509.ExtKeyUsage
	ekuSet    bool
	dnsNames  []string
	ips       []net.IP
	uris      []*url.URL
	emails    []string
	isCA      bool
	serial    *big.Int
	ocsp      []string
	crlDPs    []string
}

// WithValidity sets the certificate's validity period. The default is from
// one hour before the current time (see [WithNow]) to 24 hours after it.
func WithValidity(notBefore, notAfter time.Time) CertOption {
	return func(s *certSpec) { s.notBefore, s.notAfter = notBefore, notAfter }
}

// WithSubject replaces the certificate's subject. The common name given to
// the constructor is used only when subject.CommonName is empty.
func WithSubject(subject pkix.Name) CertOption {
	return func(s *certSpec) {
		cn := s.subject.CommonName
		s.subject = subject
		if s.subject.CommonName == "" {
			s.subject.CommonName = cn
		}
	}
}

// WithKeyType selects the key algorithm; the default is ECDSA P-256.
func WithKeyType(k KeyType) CertOption { return func(s *certSpec) { s.keyType = k } }

// WithExtKeyUsage sets the extended key usages. No arguments leaves the
// extension out. Leaves default to client authentication, CAs to none.
func WithExtKeyUsage(ekus ...x509.ExtKeyUsage) CertOption {
	return func(s *certSpec) { s.ekus, s.ekuSet = ekus, true }
}

// WithDNSNames adds DNS subject alternative names.
func WithDNSNames(names ...string) CertOption {
	return func(s *certSpec) { s.dnsNames = append(s.dnsNames, names...) }
}

// WithIPs adds IP address subject alternative names.
func WithIPs(ips ...net.IP) CertOption {
	return func(s *certSpec) { s.ips = append(s.ips, ips...) }
}

// WithURIs adds URI subject alternative names, such as SPIFFE IDs. It
// panics on a URI that does not parse, which is a bug in the test.
func WithURIs(uris ...string) CertOption {
	return func(s *certSpec) {
		for _, u := range uris {
			p, err := url.Parse(u)
			if err != nil {
				panic("authtest: WithURIs: " + err.Error())
			}
			s.uris = append(s.uris, p)
		}
	}
}

// WithEmails adds e-mail subject alternative names.
func WithEmails(emails ...string) CertOption {
	return func(s *certSpec) { s.emails = append(s.emails, emails...) }
}

// WithIsCA marks a leaf as a CA certificate (BasicConstraints CA:TRUE), to
// test that a CA certificate is refused as a client certificate.
func WithIsCA() CertOption { return func(s *certSpec) { s.isCA = true } }

// WithSerial sets the serial number; by default serials are unique within
// the test binary.
func WithSerial(serial int64) CertOption {
	return func(s *certSpec) { s.serial = big.NewInt(serial) }
}

// WithOCSPServer names OCSP responders in the certificate's authority
// information access extension.
func WithOCSPServer(urls ...string) CertOption {
	return func(s *certSpec) { s.ocsp = append(s.ocsp, urls...) }
}

// WithCRLDistributionPoints names the URLs of the CRLs that cover the
// certificate.
func WithCRLDistributionPoints(urls ...string) CertOption {
	return func(s *certSpec) { s.crlDPs = append(s.crlDPs, urls...) }
}

// serials makes serial numbers unique within the test binary.
var serials atomic.Int64

// CA is a certificate authority of the test PKI: a root or an intermediate.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key is the CA's private key.
	Key crypto.Signer
	// Parent is the issuing CA, nil for a root.
	Parent *CA

	now time.Time
}

// Leaf is an end-entity certificate of the test PKI with its key.
type Leaf struct {
	// Cert is the leaf certificate.
	Cert *x509.Certificate
	// Key is its private key.
	Key crypto.Signer
	// Chain is what a client presents: the leaf, then the intermediates up
	// to but not including the root.
	Chain []*x509.Certificate
	// Issuer is the CA that signed the leaf.
	Issuer *CA
}

// NewRootCA returns a self-signed root CA named cn, valid around the current
// time. The PKI is in memory: nothing needs cleaning up.
func NewRootCA(tb testing.TB, cn string, opts ...CertOption) *CA {
	tb.Helper()
	return NewRootCAAt(tb, time.Now(), cn, opts...)
}

// NewRootCAAt is [NewRootCA] with the PKI's notion of the current time set
// to now, for tests that use a fake clock. Intermediates and leaves issued
// below it default to validity periods around now.
func NewRootCAAt(tb testing.TB, now time.Time, cn string, opts ...CertOption) *CA {
	tb.Helper()
	spec := defaultSpec(now, cn, true)
	for _, o := range opts {
		o(spec)
	}
	cert, key := issue(tb, spec, nil, nil)
	return &CA{Cert: cert, Key: key, now: now}
}

// Intermediate returns a CA named cn issued by ca.
func (ca *CA) Intermediate(tb testing.TB, cn string, opts ...CertOption) *CA {
	tb.Helper()
	spec := defaultSpec(ca.now, cn, true)
	for _, o := range opts {
		o(spec)
	}
	cert, key := issue(tb, spec, ca.Cert, ca.Key)
	return &CA{Cert: cert, Key: key, Parent: ca, now: ca.now}
}

// Leaf returns an end-entity certificate named cn issued by ca, for client
// authentication unless [WithExtKeyUsage] says otherwise.
func (ca *CA) Leaf(tb testing.TB, cn string, opts ...CertOption) *Leaf {
	tb.Helper()
	spec := defaultSpec(ca.now, cn, false)
	for _, o := range opts {
		o(spec)
	}
	cert, key := issue(tb, spec, ca.Cert, ca.Key)
	chain := []*x509.Certificate{cert}
	for c := ca; c != nil && c.Parent != nil; c = c.Parent {
		chain = append(chain, c.Cert)
	}
	return &Leaf{Cert: cert, Key: key, Chain: chain, Issuer: ca}
}

// Root returns the root CA above ca (ca itself for a root).
func (ca *CA) Root() *CA {
	for ca.Parent != nil {
		ca = ca.Parent
	}
	return ca
}

// Pool returns a new CertPool holding ca's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// CRL returns a certificate revocation list signed by ca that revokes the
// given certificates, DER-encoded, valid from thisUpdate for nextUpdate-
// thisUpdate. number is the CRL number.
func (ca *CA) CRL(tb testing.TB, number int64, thisUpdate, nextUpdate time.Time, revoked ...*x509.Certificate) []byte {
	tb.Helper()
	return CRLSignedBy(tb, ca.Cert, ca.Key, number, thisUpdate, nextUpdate, revoked...)
}

// CRLSignedBy returns a DER CRL naming issuer and signed with key, which need
// not be issuer's key: use it to make a CRL with a bad signature.
func CRLSignedBy(tb testing.TB, issuer *x509.Certificate, key crypto.Signer, number int64, thisUpdate, nextUpdate time.Time, revoked ...*x509.Certificate) []byte {
	tb.Helper()
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, c := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: thisUpdate})
	}
	tmpl := &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}
	// x509.CreateRevocationList checks that key matches issuer; to sign with
	// another key, present a copy of issuer that carries that key.
	signer := issuer
	if !publicKeyEqual(issuer.PublicKey, key.Public()) {
		c := *issuer
		c.PublicKey = key.Public()
		c.PublicKeyAlgorithm = publicKeyAlgorithm(key)
		signer = &c
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, signer, key)
	if err != nil {
		tb.Fatalf("authtest: create CRL: %v", err)
	}
	return der
}

// TLSCertificate returns the leaf as a tls.Certificate with its chain.
func (l *Leaf) TLSCertificate() tls.Certificate {
	tc := tls.Certificate{PrivateKey: l.Key, Leaf: l.Cert}
	for _, c := range l.Chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}

// ChainPEM returns the leaf and its intermediates in PEM, as a client's
// certificate file holds them (step's --bundle).
func (l *Leaf) ChainPEM() []byte { return CertsPEM(l.Chain...) }

// KeyPEM returns the leaf's private key in PKCS #8 PEM.
func (l *Leaf) KeyPEM(tb testing.TB) []byte {
	tb.Helper()
	return KeyPEM(tb, l.Key)
}

// CertsPEM encodes certificates as PEM CERTIFICATE blocks.
func CertsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// CRLPEM encodes a DER CRL as a PEM X509 CRL block.
func CRLPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// KeyPEM encodes a private key as a PKCS #8 PEM block.
func KeyPEM(tb testing.TB, key crypto.Signer) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("authtest: marshal key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteFile writes data to name atomically (a temporary file renamed over
// it), so a watcher never sees a partial write unless the test wants one.
// A relative name is taken inside a directory that is removed when the
// test ends; WriteFile returns the full path.
func WriteFile(tb testing.TB, name string, data []byte) string {
	tb.Helper()
	if !filepath.IsAbs(name) {
		name = filepath.Join(tb.TempDir(), name)
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".authtest-*")
	if err != nil {
		tb.Fatalf("authtest: %v", err)
	}
	tb.Cleanup(func() { os.Remove(tmp.Name()) })
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		tb.Fatalf("authtest: %v", err)
	}
	if err := tmp.Close(); err != nil {
		tb.Fatalf("authtest: %v", err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		tb.Fatalf("authtest: %v", err)
	}
	return name
}

// ServerTLSConfig returns a server tls.Config presenting leaf (with its
// chain). It asks for no client certificate; set ClientAuth and the
// verification to test mutual TLS.
func ServerTLSConfig(tb testing.TB, leaf *Leaf) *tls.Config {
	tb.Helper()
	return &tls.Config{
		Certificates: []tls.Certificate{leaf.TLSCertificate()},
		MinVersion:   tls.VersionTLS12,
	}
}

// ClientTLSConfig returns a client tls.Config that trusts serverRoot for
// the server name serverName and presents client (which may be nil for no
// client certificate).
func ClientTLSConfig(tb testing.TB, serverRoot *CA, serverName string, client *Leaf) *tls.Config {
	tb.Helper()
	cfg := &tls.Config{
		RootCAs:    serverRoot.Pool(),
		ServerName: serverName,
		MinVersion: tls.VersionTLS12,
	}
	if client != nil {
		cfg.Certificates = []tls.Certificate{client.TLSCertificate()}
	}
	return cfg
}

// Fingerprint returns the SHA-256 of a certificate's DER encoding, for
// logs and assertions.
func Fingerprint(c *x509.Certificate) [32]byte { return sha256.Sum256(c.Raw) }

func defaultSpec(now time.Time, cn string, isCA bool) *certSpec {
	s := &certSpec{
		subject:   pkix.Name{CommonName: cn},
		notBefore: now.Add(-time.Hour).Truncate(time.Second),
		notAfter:  now.Add(24 * time.Hour).Truncate(time.Second),
		isCA:      isCA,
	}
	if !isCA {
		s.ekus = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	return s
}

func newKey(tb testing.TB, k KeyType) crypto.Signer {
	tb.Helper()
	var (
		key crypto.Signer
		err error
	)
	switch k {
	case RSA:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case Ed25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		tb.Fatalf("authtest: generate key: %v", err)
	}
	return key
}

// issue makes a certificate from spec, signed by parent (self-signed when
// parent is nil).
func issue(tb testing.TB, spec *certSpec, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer) {
	tb.Helper()
	key := newKey(tb, spec.keyType)
	serial := spec.serial
	if serial == nil {
		serial = big.NewInt(serials.Add(1) + 1000)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               spec.subject,
		NotBefore:             spec.notBefore,
		NotAfter:              spec.notAfter,
		BasicConstraintsValid: true,
		IsCA:                  spec.isCA,
		DNSNames:              spec.dnsNames,
		IPAddresses:           spec.ips,
		URIs:                  spec.uris,
		EmailAddresses:        spec.emails,
		ExtKeyUsage:           spec.ekus,
		OCSPServer:            spec.ocsp,
		CRLDistributionPoints: spec.crlDPs,
	}
	if spec.isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		if spec.keyType == RSA {
			tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
		}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		tb.Fatalf("authtest: create certificate %q: %v", spec.subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("authtest: parse certificate: %v", err)
	}
	return cert, key
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := a.(equaler); ok {
		return e.Equal(b)
	}
	return false
}

func publicKeyAlgorithm(k crypto.Signer) x509.PublicKeyAlgorithm {
	switch k.Public().(type) {
	case *rsa.PublicKey:
		return x509.RSA
	case ed25519.PublicKey:
		return x509.Ed25519
	default:
		return x509.ECDSA
	}
}

var serverAndClient = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
