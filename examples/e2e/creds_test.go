package e2e

import (
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/jwtauth/jwttest"
	"github.com/mqttauth/mqttauth/metrics/prometheus/promtest"
	"github.com/mqttauth/mqttauth/revocation/revocationtest"
)

// jwtBrokerConfig is a port with two JWT methods of one issuer: the token
// in the Authentication Data of method JWT, or in the password of user
// name jwt. The brute-force defence is on by default.
const jwtBrokerConfig = `apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: jwt}
spec:
  ports:
    - {port: 1883, address: 127.0.0.1, authenticationRef: jwt, authorizationRef: sites}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: jwt}
spec:
  authenticationMethods:
    - method: JWT
      jwtSettings:
        issuer: %[1]s
        audiences: [mqtt://broker]
        claimsToAttributes: {site: site}
        caCertFile: issuer.pem
    - method: JWT
      jwtSettings:
        issuer: %[1]s
        audiences: [mqtt://broker]
        claimsToAttributes: {site: site}
        tokenFrom: password
        passwordUsername: jwt
        caCertFile: issuer.pem
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: {name: sites}
spec:
  authorizationPolicies:
    rules:
      - principals: {attributes: [{site: paris}]}
        brokerResources:
          - method: Connect
          - method: Publish
            topics: ["sites/{principal.attributes.site}/#"]
`

// TestJWTWithMosquitto: the example broker, configured with method JWT
// against a jwttest issuer running in the test process, lets mosquitto_pub
// in with a token as MQTT v5 Authentication Data (-D connect
// authentication-method JWT) and as the password of an MQTT 3.1.1
// client; the token's site claim selects its topics. A token for another
// audience is refused (CONNACK 0x87), and after ten failures in a row from
// one address the next CONNECT gets 0x9F (Connection rate exceeded), the
// default brute-force defence.
func TestJWTWithMosquitto(t *testing.T) {
	pub := proc.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	iss := jwttest.NewIssuer(t)
	dir := t.TempDir()
	authtest.WriteFile(t, filepath.Join(dir, "issuer.pem"), authtest.CertsPEM(iss.Certificate()))
	adminAddr := proc.FreeAddr(t)
	broker, port := proc.StartBroker(t, dir, fmt.Sprintf(jwtBrokerConfig, iss.URL())+adminSettings(adminAddr))

	out, err := proc.Run(t, 20*time.Second, binary(t, "broker"), "-config", filepath.Join(dir, "broker.yaml"), "-check-config")
	require.NoError(t, err, out)
	require.Contains(t, out, "1. JWT issuer "+iss.URL()+", audiences [mqtt://broker], issuer CA issuer.pem, token in the Authentication Data of method JWT")
	require.Contains(t, out, "2. JWT issuer "+iss.URL()+", audiences [mqtt://broker], issuer CA issuer.pem, token in the password of user name jwt")
	require.Contains(t, out, "throttle: per address (/32 IPv4, /64 IPv6) 10 failures in a row")

	token := iss.Mint(t, jwttest.Claims{Subject: "device-7", Audience: []string{"mqtt://broker"}, Extra: map[string]any{"site": "paris"}})
	publish := func(id, topic string, auth ...string) (string, error) {
		args := append([]string{"-h", "127.0.0.1", "-p", port, "-d", "-q", "1", "-i", id, "-t", topic, "-m", "hello"}, auth...)
		return proc.Run(t, 20*time.Second, pub, args...)
	}
	viaMethod := func(tok string) []string {
		return []string{"-V", "mqttv5", "-D", "connect", "authentication-method", "JWT", "-D", "connect", "authentication-data", tok}
	}

	out, err = publish("jwt-v5", "sites/paris/t", viaMethod(token)...)
	require.NoError(t, err, out)
	require.Contains(t, out, "received CONNACK (0)")
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:0)")
	broker.WaitFor(t, 10*time.Second, "client_id=jwt-v5", "method=JWT", "username=device-7")

	out, err = publish("jwt-v311", "sites/paris/t", "-V", "mqttv311", "-u", "jwt", "-P", token)
	require.NoError(t, err, out)
	require.Contains(t, out, "received CONNACK (0)")

	out, err = publish("jwt-rome", "sites/rome/t", viaMethod(token)...)
	require.NoError(t, err, out)
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:135)", "the token's site is paris")

	other := iss.Mint(t, jwttest.Claims{Audience: []string{"another-service"}})
	for i := range 10 {
		out, err = publish(fmt.Sprint("guess-", i), "sites/paris/t", viaMethod(other)...)
		require.Error(t, err, out)
		require.Contains(t, out, "received CONNACK (135)", "attempt %d", i+1)
	}
	out, err = publish("guess-10", "sites/paris/t", viaMethod(token)...)
	require.Error(t, err, out)
	require.Contains(t, out, "received CONNACK (159)", "the eleventh attempt from 127.0.0.1, even with a good token: 0x9F")
	broker.WaitFor(t, 10*time.Second, "client_id=guess-10", "throttle: too many failed authentications")
	require.NotContains(t, broker.Out.String(), token, "tokens never reach the log")

	// Through a real Prometheus: the JWT methods are labelled JWT, never
	// with a Go type (method="*jwtauth.Authenticator" before).
	base := promtest.Start(t, promtest.Binary(t), adminAddr)
	promtest.Eventually(t, base, `sum(mqttauth_authentication_total{method="JWT",result="pass"})`, 3, 20*time.Second)
	promtest.Eventually(t, base, `sum(mqttauth_authentication_total{method="JWT",result="fail"})`, 10, 20*time.Second)
	promtest.Eventually(t, base, `count(mqttauth_authentication_total{method=~".*[*.].*"}) or vector(0)`, 0, 20*time.Second)
	promtest.Eventually(t, base, `sum(mqttauth_connections_total{result="refused",reason_code="0x9F"})`, 1, 20*time.Second)
}

// adminSettings is an MqttAuthSettings document that puts the admin
// listener on addr.
func adminSettings(addr string) string {
	return "---\napiVersion: mqttauth.dev/v1alpha1\nkind: MqttAuthSettings\nspec: {admin: {address: \"" + addr + "\"}}\n"
}

// revocationBrokerConfig is an X.509 port whose certificates are checked
// with the OCSP responder they name.
const revocationBrokerConfig = `apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: devices}
spec:
  ports:
    - port: 8883
      address: 127.0.0.1
      authenticationRef: x509
      tls: {mode: Manual, manual: {certFile: server.crt, keyFile: server.key}}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: x509}
spec:
  authenticationMethods:
    - method: X509
      x509Settings:
        trustedClientCaCert: devices-ca.pem
        revocation: {mode: hardFail, ocsp: true}
`

// TestRevokedCertificateWithMosquitto: the example broker, configured with
// x509Settings.revocation, asks a revocationtest OCSP responder running in
// the test process: mosquitto_pub gets in with a good certificate and is
// refused (CONNACK 0x87) with one the responder says is revoked.
func TestRevokedCertificateWithMosquitto(t *testing.T) {
	pub := proc.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	serverCA := authtest.NewRootCA(t, "Server CA")
	server := serverCA.Leaf(t, "localhost", authtest.WithDNSNames("localhost"), authtest.WithIPs(net.IPv4(127, 0, 0, 1)),
		authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	devicesCA := authtest.NewRootCA(t, "Devices CA")
	resp := revocationtest.NewResponder(t, devicesCA)
	dir := t.TempDir()
	write := func(name string, data []byte) string { return authtest.WriteFile(t, filepath.Join(dir, name), data) }
	write("server.crt", server.ChainPEM())
	write("server.key", server.KeyPEM(t))
	write("devices-ca.pem", authtest.CertsPEM(devicesCA.Cert))
	serverCAFile := write("server-ca.pem", authtest.CertsPEM(serverCA.Cert))
	leaves := map[string]*authtest.Leaf{}
	for _, name := range []string{"good-device", "revoked-device"} {
		leaves[name] = devicesCA.Leaf(t, name, authtest.WithOCSPServer(resp.OCSPURL()))
		write(name+".crt", leaves[name].ChainPEM())
		write(name+".key", leaves[name].KeyPEM(t))
	}
	resp.Set(leaves["revoked-device"].Cert, revocationtest.Revoked)
	adminAddr := proc.FreeAddr(t)
	broker, port := proc.StartBroker(t, dir, revocationBrokerConfig+adminSettings(adminAddr))
	// The port has no authorizationRef: every authenticated client may do
	// everything, and the broker says so at start-up.
	require.Equal(t, 1, broker.Out.Count("level=WARN", "without authorizationRef", "port=devices:"), broker.Out.String())

	connect := func(name string) (string, error) {
		return proc.Run(t, 20*time.Second, pub, "-h", "localhost", "-p", port, "-V", "mqttv5", "-d", "-q", "1",
			"-i", name, "-t", "devices/"+name, "-m", "hello", "--cafile", serverCAFile,
			"--cert", filepath.Join(dir, name+".crt"), "--key", filepath.Join(dir, name+".key"))
	}
	out, err := connect("good-device")
	require.NoError(t, err, out)
	require.Contains(t, out, "received CONNACK (0)")
	require.Contains(t, out, "received PUBACK (Mid: 1, RC:0)")

	out, err = connect("revoked-device")
	require.Error(t, err, out)
	require.Contains(t, out, "received CONNACK (135)")
	broker.WaitFor(t, 10*time.Second, "client_id=revoked-device", "revoked")
	require.GreaterOrEqual(t, resp.OCSPRequests(), 2, "both certificates were asked about")

	// "Is revocation working?" through a real Prometheus: the responder
	// is asked, answers, and the revoked certificate is refused.
	base := promtest.Start(t, promtest.Binary(t), adminAddr)
	const wait = 20 * time.Second
	promtest.Eventually(t, base, `clamp_max(mqttauth_revocation_fetches_total{source="ocsp"} >= 2, 1)`, 1, wait)
	promtest.Eventually(t, base, `mqttauth_revocation_fetch_failures_total{source="ocsp"}`, 0, wait)
	promtest.Eventually(t, base, `mqttauth_revocation_revoked_total`, 1, wait)
	promtest.Eventually(t, base, `mqttauth_revocation_cached{source="ocsp"}`, 2, wait)
	promtest.Eventually(t, base, `sum(mqttauth_connections_total{result="refused",reason_code="0x87"})`, 1, wait)
}
