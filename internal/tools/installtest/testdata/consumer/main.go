// Command consumer is what a user of mqttauth writes, built by installtest
// in a module outside the repository that requires the released modules:
// a mochi broker whose clients authenticate with X.509 client certificates
// (x509auth, a PKI generated here with crypto/x509) and are authorized by
// an abac policy, with the Prometheus exporter observing. One client
// connects over mTLS; the program prints the CONNACK's reason code and the
// exporter's count of accepted connections, and exits 1 unless the
// client was accepted (0x00) and counted.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/metrics/prometheus"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// policy lets the thermostats connect and publish their temperature.
const policy = `
rules:
  - principals:
      attributes:
        - group: thermostat_group
    brokerResources:
      - method: Connect
      - method: Publish
        topics: ["telemetry/temperature"]
`

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)

	ca, caKey, err := newCert("consumer root CA", nil, nil, true)
	if err != nil {
		return err
	}
	server, _, err := newCert("broker", ca, caKey, false)
	if err != nil {
		return err
	}
	client, _, err := newCert("thermostat", ca, caKey, false)
	if err != nil {
		return err
	}

	set, err := truststore.NewSet([]*x509.Certificate{ca.Leaf}, nil)
	if err != nil {
		return err
	}
	x509a, err := x509auth.New(x509auth.Config{
		Trust: truststore.NewMemory(set),
		Mappings: []x509auth.Mapping{{Name: "thermostat", Subject: "CN = thermostat",
			Attributes: map[string]string{"group": "thermostat_group"}}},
		Logger: quiet,
	})
	if err != nil {
		return err
	}
	authz, err := abac.Parse([]byte(policy))
	if err != nil {
		return err
	}
	exp, err := prometheus.New(prometheus.Config{})
	if err != nil {
		return err
	}
	m, err := auth.NewManager(auth.Config{
		Authenticator: auth.Chain{x509a},
		Authorizer:    authz,
		Observer:      exp,
		Logger:        quiet,
	})
	if err != nil {
		return err
	}
	defer m.Close()

	srv := mqtt.New(&mqtt.Options{Logger: quiet})
	hook, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
	if err != nil {
		return err
	}
	ln := hook.Listener("mqtts", "127.0.0.1:0", x509a.ServerTLSConfig(&tls.Config{Certificates: []tls.Certificate{*server}}))
	if err := srv.AddListener(ln); err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		return err
	}
	defer srv.Close()

	code, err := connect(ctx, ln.Address(), ca.Leaf, client)
	if err != nil {
		return err
	}
	fmt.Printf("CONNACK 0x%02X\n", code)
	if code != 0 {
		return fmt.Errorf("the client was refused: CONNACK 0x%02X", code)
	}

	rec := httptest.NewRecorder()
	exp.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	const accepted = `mqttauth_connections_total{reason_code="0x00",result="accepted"} 1`
	if !strings.Contains(rec.Body.String(), accepted) {
		return fmt.Errorf("the exporter has no %s in:\n%s", accepted, rec.Body.String())
	}
	fmt.Println(accepted)
	return nil
}

// connect dials addr over mTLS as cert, sends an MQTT v5 CONNECT with the
// client id "thermostat" and returns the CONNACK's reason code.
func connect(ctx context.Context, addr string, ca *x509.Certificate, cert *tls.Certificate) (byte, error) {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{*cert}, ServerName: "127.0.0.1"}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	id := "thermostat"
	connect := []byte{0x10, byte(10 + 1 + 2 + len(id)),
		0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 30, // protocol, version 5, Clean Start, keep alive 30 s
		0,                // no properties
		0, byte(len(id))} // client id
	if _, err := conn.Write(append(connect, id...)); err != nil {
		return 0, err
	}
	hdr := make([]byte, 4) // type, remaining length (< 128), flags, reason code
	if _, err := io.ReadFull(conn, hdr); err != nil {
		return 0, fmt.Errorf("no CONNACK: %w", err)
	}
	if hdr[0] != 0x20 {
		return 0, errors.New("the first packet is not a CONNACK")
	}
	return hdr[3], nil
}

// newCert makes a P-256 certificate for cn, signed by parent (self-signed
// when parent is nil): a CA, or a leaf for 127.0.0.1 usable by servers and
// clients.
func newCert(cn string, parent *tls.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*tls.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.Leaf, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, key, nil
}
