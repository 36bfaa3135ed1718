package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
)

// opensslPKI is a PKI made with the openssl command, as an operator
// following a generic guide makes one: a server CA and the listener's
// certificate, a client CA (`openssl req -x509`) and client certificates
// signed with `openssl x509 -req`.
type opensslPKI struct {
	dir     string
	openssl string
}

func (p opensslPKI) run(t *testing.T, args ...string) {
	t.Helper()
	out, err := proc.Run(t, 60*time.Second, p.openssl, args...)
	require.NoError(t, err, "openssl %s:\n%s", strings.Join(args, " "), out)
}

func (p opensslPKI) path(name string) string { return filepath.Join(p.dir, name) }

// ca makes a self-signed CA: name.crt, name.key.
func (p opensslPKI) ca(t *testing.T, name, cn string) {
	t.Helper()
	p.run(t, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", p.path(name+".key"), "-out", p.path(name+".crt"), "-subj", "/CN="+cn, "-days", "2")
}

// leaf makes name.crt, name.key signed by ca with `openssl x509 -req`; ext
// is the content of an extension file, or "" for none (no -extfile: the
// certificate has no extended key usage extension).
func (p opensslPKI) leaf(t *testing.T, ca, name, cn, ext string) {
	t.Helper()
	p.run(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", p.path(name+".key"), "-out", p.path(name+".csr"), "-subj", "/CN="+cn)
	args := []string{"x509", "-req", "-in", p.path(name + ".csr"), "-CA", p.path(ca + ".crt"), "-CAkey", p.path(ca + ".key"),
		"-CAcreateserial", "-out", p.path(name + ".crt"), "-days", "1"}
	if ext != "" {
		require.NoError(t, os.WriteFile(p.path(name+".ext"), []byte(ext), 0o600))
		args = append(args, "-extfile", p.path(name+".ext"))
	}
	p.run(t, args...)
}

// ids returns the serial and SHA-256 fingerprint of name.crt as openssl
// prints them.
func (p opensslPKI) ids(t *testing.T, name string) (serial, fingerprint string) {
	t.Helper()
	out, err := proc.Run(t, 20*time.Second, p.openssl, "x509", "-in", p.path(name+".crt"), "-noout", "-serial", "-fingerprint", "-sha256")
	require.NoError(t, err, out)
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "serial="); ok {
			serial = v
		}
		if _, v, ok := strings.Cut(line, "Fingerprint="); ok {
			fingerprint = v
		}
	}
	require.NotEmpty(t, serial, out)
	require.NotEmpty(t, fingerprint, out)
	return serial, fingerprint
}

const ekuBrokerConfig = `apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: eku}
spec:
  ports:
    - port: 8883
      address: 127.0.0.1
      authenticationRef: x509
      authorizationRef: devices
      tls: {mode: Manual, manual: {certFile: server.crt, keyFile: server.key}}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: x509}
spec:
  authenticationMethods:
    - method: X509
      x509Settings:
        trustedClientCaCert: client-ca.crt
        requireClientAuthEku: %t
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: {name: devices}
spec:
  authorizationPolicies:
    rules:
      - principals:
          usernames: [plain-device, client-auth-device, server-only-device]
        brokerResources:
          - method: Connect
          - method: Publish
            topics: ["devices/#"]
`

// TestOpenSSLClientCertificatesEKU: a client certificate made by `openssl
// x509 -req` without an extension file has no extended key usage; RFC 5280
// reads that as any usage, and mosquitto_pub connects with it to the
// example broker by default (x509Settings.requireClientAuthEku false). With
// requireClientAuthEku: true it is refused. A certificate whose extension
// names serverAuth only is refused in both modes; one naming clientAuth
// passes in both. Refusals are logged with the certificate's serial and
// SHA-256 fingerprint as openssl prints them.
func TestOpenSSLClientCertificatesEKU(t *testing.T) {
	openssl := proc.RequireTool(t, "openssl", "openssl")
	pub := proc.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	p := opensslPKI{dir: t.TempDir(), openssl: openssl}
	p.ca(t, "server-ca", "OpenSSL Server CA")
	p.leaf(t, "server-ca", "server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
	p.ca(t, "client-ca", "OpenSSL Client CA")
	p.leaf(t, "client-ca", "plain", "plain-device", "")
	p.leaf(t, "client-ca", "client-auth", "client-auth-device", "extendedKeyUsage=clientAuth\n")
	p.leaf(t, "client-ca", "server-only", "server-only-device", "extendedKeyUsage=serverAuth\n")

	out, err := proc.Run(t, 20*time.Second, openssl, "x509", "-in", p.path("plain.crt"), "-noout", "-text")
	require.NoError(t, err, out)
	require.NotContains(t, out, "Extended Key Usage", "the plain certificate must have no EKU extension")

	connect := func(t *testing.T, port, name string) (string, error) {
		t.Helper()
		return proc.Run(t, 20*time.Second, pub, "-h", "localhost", "-p", port, "-V", "mqttv5", "-d", "-q", "1",
			"-i", name, "-t", "devices/"+name, "-m", "hello",
			"--cafile", p.path("server-ca.crt"), "--cert", p.path(name+".crt"), "--key", p.path(name+".key"))
	}
	for _, tc := range []struct {
		require bool
		allowed []string
		refused []string
	}{
		{false, []string{"plain", "client-auth"}, []string{"server-only"}},
		{true, []string{"client-auth"}, []string{"plain", "server-only"}},
	} {
		t.Run(fmt.Sprintf("requireClientAuthEku=%t", tc.require), func(t *testing.T) {
			broker, port := proc.StartBroker(t, p.dir, fmt.Sprintf(ekuBrokerConfig, tc.require))
			for _, name := range tc.allowed {
				out, err := connect(t, port, name)
				require.NoError(t, err, "%s:\n%s", name, out)
				require.Contains(t, out, "received CONNACK (0)", name)
				require.Contains(t, out, "received PUBACK (Mid: 1, RC:0)", name)
			}
			for _, name := range tc.refused {
				out, err := connect(t, port, name)
				require.Error(t, err, "%s:\n%s", name, out)
				require.NotContains(t, out, "received CONNACK", name)
				serial, fp := p.ids(t, name)
				broker.WaitFor(t, 10*time.Second, "client certificate refused", "serial="+serial, "fingerprint_sha256="+fp)
			}
			require.NotContains(t, broker.Out.String(), "PRIVATE KEY")
		})
	}
}
