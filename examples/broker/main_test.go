package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"
	"github.com/xdg-go/scram"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/examples/internal/tutorial"
)

// twoPorts: 8883-like TLS port with X.509 and the tutorial's policy, and
// a plain TCP port on loopback with SCRAM and its own policy, the
// ConfigMaps and Secrets of the development PKI mounted next to the file.
const twoPorts = `apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: public}
spec:
  ports:
    - {port: %d, address: 127.0.0.1, authenticationRef: x509-only, authorizationRef: abac-authz,
       tls: {mode: Manual, manual: {secretRef: broker-server-cert}}}
    - {port: %d, address: 127.0.0.1, authenticationRef: scram-only, authorizationRef: sandbox}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: x509-only}
spec:
  authenticationMethods:
    - method: X509
      x509Settings:
        trustedClientCaCert: fabrikam-ca
        authorizationAttributes:
          thermostat: {subject: "CN = thermostat", attributes: {group: thermostat_group}}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: scram-only}
spec:
  authenticationMethods:
    - {method: SCRAM, scramSettings: {usersFile: scram-users.json}}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: {name: abac-authz}
spec:
  authorizationPolicies:
    rules:
      - principals: {attributes: [{group: thermostat_group}]}
        brokerResources: [{method: Connect}, {method: Publish, topics: [telemetry/temperature]}]
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: {name: sandbox}
spec:
  authorizationPolicies:
    rules:
      - principals: {usernames: [sample]}
        brokerResources: [{method: Connect}, {method: Publish, topics: ["sandbox/#"]}]
`

func devDir(t *testing.T) (dir, password string) {
	t.Helper()
	dir = t.TempDir()
	_, err := devpki.Ensure(dir, time.Now())
	require.NoError(t, err)
	pwFile, err := tutorial.EnsureSampleSCRAMUser(dir)
	require.NoError(t, err)
	require.NoError(t, tutorial.EnsureMounts(dir))
	pw, err := os.ReadFile(pwFile)
	require.NoError(t, err)
	return dir, strings.TrimSpace(string(pw))
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	var n int
	_, err = fmt.Sscan(p, &n)
	require.NoError(t, err)
	return n
}

// TestPortsOwnChains: one broker process, two ports, each with its own
// chain and policy, over real sockets with paho.golang: a certificate
// client on the TLS port, a SCRAM client on the plain port, and each
// refused on the other's port.
func TestPortsOwnChains(t *testing.T) {
	dir, password := devDir(t)
	tlsAddr, plainAddr := proc.FreeAddr(t), proc.FreeAddr(t)
	cfg := filepath.Join(dir, "two-ports.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, twoPorts, portOf(t, tlsAddr), portOf(t, plainAddr)), 0o644))

	out := runBroker(t, 2, "-config", cfg)

	// The certificate client on the TLS port: its chain, its policy.
	thermo := thermostatTLS(t, dir)
	conn, err := tls.Dial("tcp", tlsAddr, thermo)
	require.NoError(t, err)
	c, ca := connect(t, conn, &paho.Connect{ClientID: "thermostat"}, nil)
	require.Equal(t, byte(0), ca.ReasonCode)
	require.Equal(t, byte(0), publish(t, c, "telemetry/temperature"))
	require.Equal(t, byte(0x87), publish(t, c, "sandbox/x"), "the plain port's policy is not this port's")

	// The SCRAM client on the plain port.
	conn2, err := net.Dial("tcp", plainAddr)
	require.NoError(t, err)
	sc, err := scram.SHA256.NewClient(tutorial.SampleSCRAMUser, password, "")
	require.NoError(t, err)
	a := &scramAuther{conv: sc.NewConversation()}
	first, _ := a.conv.Step("")
	c2, ca2 := connect(t, conn2, &paho.Connect{ClientID: "sample", Properties: &paho.ConnectProperties{AuthMethod: "SCRAM-SHA-256", AuthData: []byte(first)}}, a)
	require.Equal(t, byte(0), ca2.ReasonCode)
	require.Equal(t, byte(0), publish(t, c2, "sandbox/x"))
	require.Equal(t, byte(0x87), publish(t, c2, "telemetry/temperature"))

	// SCRAM on the TLS port: the port requires a certificate.
	_, err = tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: thermo.RootCAs, ServerName: "localhost"})
	if err == nil {
		// TLS 1.3 reports the refused handshake on the first read.
		conn3, _ := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: thermo.RootCAs, ServerName: "localhost"})
		_ = conn3.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn3.Read(make([]byte, 1))
		conn3.Close()
	}
	require.Error(t, err, "no certificate, no TLS session on the X.509 port")

	// No credentials on the SCRAM port: refused.
	conn4, err := net.Dial("tcp", plainAddr)
	require.NoError(t, err)
	_, ca4 := connect(t, conn4, &paho.Connect{ClientID: "thermostat"}, nil)
	require.True(t, ca4.ReasonCode >= 0x80, "CONNACK 0x%02x", ca4.ReasonCode)

	// The default audit log (what -check-config prints): passes and
	// denies, each deny with its policy and why; no allow (before, the
	// example logged every allow: one line per delivered message).
	require.Eventually(t, func() bool { return out.Count("decision=authorize_deny") == 2 }, 5*time.Second, 10*time.Millisecond, out.String())
	require.Equal(t, 1, out.Count("decision=authorize_deny", "topic=sandbox/x", `policy="BrokerAuthorization abac-authz"`, `err="no rule matched"`), out.String())
	require.Equal(t, 1, out.Count("decision=authorize_deny", "topic=telemetry/temperature", `policy="BrokerAuthorization sandbox"`), out.String())
	require.Equal(t, 2, out.Count("decision=pass"))
	require.Zero(t, out.Count("decision=authorize_allow"), "allows are not logged by default")
}

// TestCheckConfigIsWhatRuns: -check-config prints the admin listener and
// the audit log the program would run with, flags included (before, it
// printed 127.0.0.1:9090 under -admin-addr off, and "allows not logged"
// while the broker logged every one).
func TestCheckConfigIsWhatRuns(t *testing.T) {
	dir, _ := devDir(t)
	cfg := filepath.Join(dir, "two-ports.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, twoPorts, 18883, 11883), 0o644))
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"admin: http://127.0.0.1:9090 (/metrics, /healthz, /readyz)\n", "authorization allows not logged\n"}},
		{[]string{"-admin-addr", "off"}, []string{"admin: off\n"}},
		{[]string{"-admin-addr", "127.0.0.1:9191", "-pprof"}, []string{"admin: http://127.0.0.1:9191 (/metrics, /healthz, /readyz, /debug/pprof)\n"}},
		{[]string{"-audit-allows", "1"}, []string{"every authorization allow logged (one record per delivered message)\n"}},
		{[]string{"-audit-allows", "100"}, []string{"one authorization allow in 100 logged\n"}},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			var out strings.Builder
			require.NoError(t, run(context.Background(), append([]string{"-config", cfg, "-check-config"}, tc.args...), &out))
			for _, w := range tc.want {
				require.Contains(t, out.String(), w)
			}
		})
	}

	// And the program under -admin-addr off serves no admin listener.
	runCfg := filepath.Join(dir, "run.yaml")
	require.NoError(t, os.WriteFile(runCfg, fmt.Appendf(nil, twoPorts, portOf(t, proc.FreeAddr(t)), portOf(t, proc.FreeAddr(t))), 0o644))
	ctx, cancel := context.WithCancel(context.Background())
	var out proc.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-config", runCfg, "-admin-addr", "off"}, &out) }()
	require.Eventually(t, func() bool { return out.Count("broker listening") == 2 }, 20*time.Second, 20*time.Millisecond, out.String())
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, 1, out.Count(`msg="admin listener off"`))
	require.Zero(t, out.Count(`msg="admin listening"`))
}

// runBroker runs the program with args until the test ends, and returns
// its output once it serves n listeners.
func runBroker(t *testing.T, n int, args ...string) *proc.Buffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := new(proc.Buffer)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, out) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return out.Count("broker listening") == n }, 20*time.Second, 20*time.Millisecond, out.String())
	return out
}

// thermostatTLS is the client TLS configuration of the development
// PKI's thermostat in dir.
func thermostatTLS(t *testing.T, dir string) *tls.Config {
	t.Helper()
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(filepath.Join(dir, devpki.ServerRootCA))
	require.NoError(t, err)
	require.True(t, roots.AppendCertsFromPEM(pem))
	thermo, err := tls.LoadX509KeyPair(filepath.Join(dir, devpki.CertFile("thermostat")), filepath.Join(dir, devpki.KeyFile("thermostat")))
	require.NoError(t, err)
	return &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{thermo}}
}

func connect(t *testing.T, conn net.Conn, cp *paho.Connect, a paho.Auther) (*paho.Client, *paho.Connack) {
	t.Helper()
	cfg := paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnClientError: func(error) {}}
	if a != nil {
		cfg.AuthHandler = a
	}
	c := paho.NewClient(cfg)
	cp.KeepAlive, cp.CleanStart = 30, true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, _ := c.Connect(ctx, cp)
	require.NotNil(t, ca, "no CONNACK")
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		conn.Close()
	})
	return c, ca
}

func publish(t *testing.T, c *paho.Client, topic string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x")})
	require.NotNil(t, r, "%v", err)
	return r.ReasonCode
}

// scramAuther answers the server-first-message with the client-final.
type scramAuther struct{ conv *scram.ClientConversation }

func (a *scramAuther) Authenticate(in *paho.Auth) *paho.Auth {
	final, _ := a.conv.Step(string(in.Properties.AuthData))
	return &paho.Auth{ReasonCode: 0x18, Properties: &paho.AuthProperties{AuthMethod: "SCRAM-SHA-256", AuthData: []byte(final)}}
}

func (a *scramAuther) Authenticated() {}

// TestCheckConfig: -check-config prints the effective ports, chains and
// policies and exits; a bad configuration is an error (non-zero exit).
func TestCheckConfig(t *testing.T) {
	dir, _ := devDir(t)
	cfg := filepath.Join(dir, "two-ports.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, twoPorts, 18883, 11883), 0o644))
	var out strings.Builder
	require.NoError(t, run(context.Background(), []string{"-config", cfg, "-check-config"}, &out))
	for _, want := range []string{
		"is valid", "port public:18883 on 127.0.0.1:18883", "client certificates required", "1. X509 trusting fabrikam-ca",
		"port public:11883 on 127.0.0.1:11883", "plain TCP", "1. SCRAM scram-users.json", "BrokerAuthorization sandbox (1 rules)",
		"throttle: per address (/32 IPv4, /64 IPv6) 10 failures in a row, then one per 6s", // on by default
		"admin: http://127.0.0.1:9090 (/metrics, /healthz, /readyz)",                       // on loopback by default
	} {
		require.Contains(t, out.String(), want)
	}

	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(string(fmt.Appendf(nil, twoPorts, 18883, 11883)), "trustedClientCaCert: fabrikam-ca", "trustedClientCaCert: fabrikam-cas", 1)), 0o644))
	err := run(context.Background(), []string{"-config", bad, "-check-config"}, &out)
	require.ErrorContains(t, err, `BrokerAuthentication "x509-only"`)
	require.ErrorContains(t, err, `ConfigMap "fabrikam-cas"`)
}

// TestAdminListener: -admin-addr serves /healthz, /readyz (the sources'
// checks and the listeners gate), /metrics with the adapter's and the
// components' own counts, and /debug/pprof with -pprof; an address given
// explicitly that cannot be bound is an error.
func TestAdminListener(t *testing.T) {
	dir, _ := devDir(t)
	cfg := filepath.Join(dir, "two-ports.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, twoPorts, portOf(t, proc.FreeAddr(t)), portOf(t, proc.FreeAddr(t))), 0o644))
	adminAddr := proc.FreeAddr(t)

	out := runBroker(t, 2, "-config", cfg, "-admin-addr", adminAddr, "-pprof")
	require.Contains(t, out.String(), `msg="admin listening" address=`+adminAddr+" pprof=true")

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + adminAddr + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, _ := get("/healthz")
	require.Equal(t, http.StatusOK, code)
	code, body := get("/readyz?verbose")
	require.Equal(t, http.StatusOK, code, body)
	for _, want := range []string{"truststore fabrikam-ca", "users scram-users.json", "listeners"} {
		require.Contains(t, body, want)
	}
	code, body = get("/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, want := range []string{
		"mqttauth_sessions 0", "mqttauth_preauth_pending 0", `mqttauth_preauth_refused_total{reason="timed_out"} 0`,
		"mqttauth_offline_sessions 0", "mqttauth_throttle_entries 0", "mqttauth_x509_cached_chains 0",
		`mqttauth_reloads_total{component="truststore",result="ok"} 1`, `mqttauth_reloads_total{component="users",result="ok"} 1`,
	} {
		require.Contains(t, body, want)
	}
	code, _ = get("/debug/pprof/")
	require.Equal(t, http.StatusOK, code, "-pprof")

	// The same address again, explicitly: an error, not a silent broker
	// without metrics.
	err := run(context.Background(), []string{"-config", cfg, "-admin-addr", adminAddr}, io.Discard)
	require.ErrorContains(t, err, "address already in use")
}

// TestConfigFileFollowedLive: the -config file is followed, through the
// same reload path as the Kubernetes source (aioconfig.Broker.Apply): a
// port added to the file is served, a port removed from it sends its
// MQTT 5 client DISCONNECT 0x8B, and the other port's session stays.
func TestConfigFileFollowedLive(t *testing.T) {
	dir, password := devDir(t)
	tlsAddr, plainAddr := proc.FreeAddr(t), proc.FreeAddr(t)
	full := fmt.Sprintf(twoPorts, portOf(t, tlsAddr), portOf(t, plainAddr))
	tlsLine := fmt.Sprintf("    - {port: %d, address: 127.0.0.1, authenticationRef: x509-only, authorizationRef: abac-authz,\n       tls: {mode: Manual, manual: {secretRef: broker-server-cert}}}\n", portOf(t, tlsAddr))
	plainLine := fmt.Sprintf("    - {port: %d, address: 127.0.0.1, authenticationRef: scram-only, authorizationRef: sandbox}\n", portOf(t, plainAddr))
	require.Contains(t, full, tlsLine)
	require.Contains(t, full, plainLine)
	cfg := filepath.Join(dir, "live.yaml")
	write := func(doc string) {
		t.Helper()
		require.NoError(t, os.WriteFile(cfg+".tmp", []byte(doc), 0o644))
		require.NoError(t, os.Rename(cfg+".tmp", cfg))
	}
	write(strings.Replace(full, plainLine, "", 1)) // the TLS port only

	out := runBroker(t, 1, "-config", cfg, "-admin-addr", "off")
	conn, err := tls.Dial("tcp", tlsAddr, thermostatTLS(t, dir))
	require.NoError(t, err)
	reason := make(chan byte, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnClientError: func(error) {},
		OnServerDisconnect: func(d *paho.Disconnect) { reason <- d.ReasonCode }})
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	ca, err := c.Connect(cctx, &paho.Connect{ClientID: "thermostat", KeepAlive: 30, CleanStart: true})
	require.NoError(t, err)
	require.Equal(t, byte(0), ca.ReasonCode)
	t.Cleanup(func() { conn.Close() })

	// The plain SCRAM port added to the file: served.
	write(full)
	written := time.Now()
	require.Eventually(t, func() bool { return out.Count("broker listening") == 2 }, 5*time.Second, 10*time.Millisecond, out.String())
	conn2, err := net.Dial("tcp", plainAddr)
	require.NoError(t, err)
	t.Logf("added port serving %v after the file was written", time.Since(written))
	sc, err := scram.SHA256.NewClient(tutorial.SampleSCRAMUser, password, "")
	require.NoError(t, err)
	a := &scramAuther{conv: sc.NewConversation()}
	first, _ := a.conv.Step("")
	c2, ca2 := connect(t, conn2, &paho.Connect{ClientID: "sample", Properties: &paho.ConnectProperties{AuthMethod: "SCRAM-SHA-256", AuthData: []byte(first)}}, a)
	require.Equal(t, byte(0), ca2.ReasonCode)
	require.Equal(t, byte(0), publish(t, c, "telemetry/temperature"), "the TLS port's session stays")

	// The TLS port removed from the file: its client gets 0x8B.
	write(strings.Replace(full, tlsLine, "", 1))
	written = time.Now()
	select {
	case code := <-reason:
		require.Equal(t, byte(0x8B), code, "Server shutting down")
		t.Logf("removed port's client disconnected (0x8B) %v after the file was written", time.Since(written))
	case <-time.After(5 * time.Second):
		t.Fatalf("no DISCONNECT for the removed port's client:\n%s", out.String())
	}
	require.Equal(t, byte(0), publish(t, c2, "sandbox/x"), "the SCRAM port's session stays")
	require.Eventually(t, func() bool { return out.Count("port closed", "listener=public:"+fmt.Sprint(portOf(t, tlsAddr))) == 1 },
		5*time.Second, 10*time.Millisecond, out.String())
}
