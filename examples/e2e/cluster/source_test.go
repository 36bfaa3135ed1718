package cluster_test

// The example broker PROCESS configured from a REAL kube-apiserver
// (-config-from-cluster): the seed 003 tutorial applied through the API as
// BrokerListener, BrokerAuthentication and BrokerAuthorization resources
// with its ConfigMap and Secret, the broker's identity holding exactly the
// Role of deploy/kubernetes/rbac.yaml. A policy change through the API
// denies a connected client's publish and disconnects a client that lost
// Connect, a new CA in the ConfigMap is trusted, an invalid resource keeps
// the last good policy and is reported as an Event, and the watch resumes
// after the API server restarts. Ports and authentication methods change
// live too: a port added through the API serves, a removed one sends its
// client DISCONNECT 0x8B, a method removed disconnects the sessions it
// authenticated (0x87 for X.509) and refuses new ones, and restored it
// takes them again. Latencies are measured from the API write's answer
// and logged.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/satauth/kubetest"
	"github.com/mqttauth/mqttauth/scramauth"
)

const (
	ns          = "mqttauth" // the namespace of deploy/kubernetes/rbac.yaml
	brokerGroup = "/apis/mqttbroker.iotoperations.azure.com/v1/namespaces/" + ns
	// within is how soon a change through the API must apply.
	within = time.Second
)

// seed003 reads a file of aioconfig/testdata/seed003 (the tutorial's
// x509Settings and rules, as the Azure portal takes them).
func seed003(t *testing.T, name string) any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "aioconfig", "testdata", "seed003", name))
	require.NoError(t, err)
	var v any
	require.NoError(t, json.Unmarshal(data, &v))
	return v
}

func resource(kind, name string, spec any) map[string]any {
	return map[string]any{
		"apiVersion": "mqttbroker.iotoperations.azure.com/v1", "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}
}

type client struct {
	*paho.Client
	conn         net.Conn
	disconnected chan time.Time
	reason       chan byte // the server's DISCONNECT reason code
}

// dial connects a tutorial client (its devpki certificate) over mutual
// TLS; the error is the TLS handshake's or the CONNACK's.
func dial(t *testing.T, pki, addr, name string) (*client, error) {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(pki, devpki.ServerRootCA))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))
	pair, err := tls.LoadX509KeyPair(filepath.Join(pki, devpki.CertFile(name)), filepath.Join(pki, devpki.KeyFile(name)))
	require.NoError(t, err)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	c := &client{conn: conn, disconnected: make(chan time.Time, 4), reason: make(chan byte, 1)}
	gone := func() {
		select {
		case c.disconnected <- time.Now():
		default:
		}
	}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.reason <- d.ReasonCode:
			default:
			}
			gone()
		},
		OnClientError: func(error) { gone() },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: name, KeepAlive: 30, CleanStart: true}); err != nil {
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		conn.Close()
	})
	return c, nil
}

// publish sends a QoS 1 PUBLISH and returns the PUBACK's reason code.
func (c *client) publish(t *testing.T, topic string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("21.5")})
	if r == nil {
		require.NoError(t, err)
	}
	return r.ReasonCode
}

// until polls f every 10 ms for at most d and returns how long it took
// from start.
func until(t *testing.T, start time.Time, d time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	for !f() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// disconnectedWithin requires the DISCONNECT reason a client receives on
// reason to be want, within d of start (the API write's answer), and
// logs the latency for who.
func disconnectedWithin(t *testing.T, reason <-chan byte, start time.Time, d time.Duration, want byte, who string) {
	t.Helper()
	select {
	case code := <-reason:
		require.Equal(t, want, code)
		t.Logf("latency from the API write's answer: %s disconnected (0x%02X) after %v", who, code, time.Since(start))
	case <-time.After(time.Until(start.Add(d))):
		t.Fatalf("%s: no DISCONNECT within %v", who, d)
	}
}

func rules(list ...map[string]any) map[string]any {
	return map[string]any{"spec": map[string]any{"authorizationPolicies": map[string]any{"rules": list}}}
}

func rule(principals map[string]any, resources ...map[string]any) map[string]any {
	return map[string]any{"principals": principals, "brokerResources": resources}
}

func res(method string, topics ...string) map[string]any {
	r := map[string]any{"method": method}
	if len(topics) > 0 {
		r["topics"] = topics
	}
	return r
}

// setupTutorial installs the CRDs and rbac.yaml, and applies (creates or
// replaces) seed 003's tutorial: the ConfigMap fabrikam-ca, the Secret
// broker-server-cert and the three resources. It returns the directory
// of the development PKI and a token file of the ServiceAccount of
// rbac.yaml.
func setupTutorial(t *testing.T, env *kubetest.Env) (pki, token string) {
	t.Helper()
	for _, o := range readManifest(t, "crds.yaml") {
		create(t, env, o, false, true)
	}
	waitServed(t, env, "default")
	for _, o := range readManifest(t, "rbac.yaml") {
		create(t, env, o, false, true) // the namespace, the identity, its Role
	}
	waitServed(t, env, ns)

	pki = t.TempDir()
	_, err := devpki.Ensure(pki, time.Now())
	require.NoError(t, err)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	// The tutorial's Kubernetes objects (kubectl create configmap
	// fabrikam-ca --from-file=client_ca.pem=..., kubectl create secret tls
	// broker-server-cert ...) and its resources, from seed 003.
	x509Settings := seed003(t, "x509-settings.json")
	for _, o := range []map[string]any{
		{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "fabrikam-ca", "namespace": ns},
			"data": map[string]any{"client_ca.pem": read(t, pki, devpki.ClientRootCA)}},
		{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": map[string]any{"name": "broker-server-cert", "namespace": ns},
			"data": map[string]any{"tls.crt": b64(read(t, pki, devpki.ServerCert)), "tls.key": b64(read(t, pki, devpki.ServerKey))}},
		resource("BrokerListener", "mqtts-endpoint", map[string]any{"serviceType": "LoadBalancer", "ports": []any{map[string]any{
			"port": 8883, "authenticationRef": "x509-auth", "authorizationRef": "abac-authz", "protocol": "Mqtt",
			"tls": map[string]any{"mode": "Manual", "manual": map[string]any{"secretRef": "broker-server-cert"}}}}}),
		resource("BrokerAuthentication", "x509-auth", map[string]any{"authenticationMethods": []any{
			map[string]any{"method": "X509", "x509Settings": x509Settings}}}),
		resource("BrokerAuthorization", "abac-authz", map[string]any{"authorizationPolicies": map[string]any{
			"cache": "Enabled", "rules": seed003(t, "abac-authz-rules.json")}}),
	} {
		raw, err := json.Marshal(o)
		require.NoError(t, err)
		applyYAML(t, env, string(raw))
	}

	return pki, saToken(t, env, ns, "mqttauth")
}

// read returns a file of the development PKI.
func read(t *testing.T, pki, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pki, name))
	require.NoError(t, err)
	return string(b)
}

func TestClusterSourceBrokerProcess(t *testing.T) {
	env := kubetest.Require(t)
	pki, token := setupTutorial(t, env)
	// The broker, as the ServiceAccount of rbac.yaml: exactly its Role.
	addr, adminAddr := proc.FreeAddr(t), proc.FreeAddr(t)
	bin := proc.Binary(t, "github.com/mqttauth/mqttauth/examples/broker")
	broker := proc.Start(t, bin, "-config-from-cluster", ns, "-kube-apiserver", env.URL, "-kube-ca", env.CAFile, "-kube-token", token,
		"-addr", addr, "-admin-addr", adminAddr)
	broker.WaitFor(t, 30*time.Second, `msg="broker listening"`)
	require.Equal(t, 1, broker.Out.Count(`msg="aioconfig: Kubernetes source ready"`), "the Role of rbac.yaml is enough")
	resp, err := http.Get("http://" + adminAddr + "/readyz?verbose")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	thermostat, err := dial(t, pki, addr, "thermostat")
	require.NoError(t, err)
	require.Zero(t, thermostat.publish(t, "telemetry/temperature"), "the tutorial's policy allows it")
	lightbulb, err := dial(t, pki, addr, "lightbulb")
	require.NoError(t, err, "manufacturer=fabrikam may Connect")
	_, err = dial(t, pki, addr, devpki.Intruder)
	require.Error(t, err, "the intruder's CA is not trusted")

	policy := brokerGroup + "/brokerauthorizations/abac-authz"
	t.Run("policy_change_applies_to_live_sessions", func(t *testing.T) {
		// thermostat keeps Connect but may publish elsewhere only; the
		// fabrikam rule is gone (lightbulb loses Connect); intruder may
		// Connect (used below).
		mergePatch(t, env, policy, rules(
			rule(map[string]any{"attributes": []any{map[string]any{"group": "thermostat_group"}}}, res("Connect"), res("Publish", "telemetry/other")),
			rule(map[string]any{"usernames": []any{"heater", devpki.Intruder}}, res("Connect")),
		))
		written := time.Now()
		denied := until(t, written, within, "thermostat's publish denied", func() bool {
			return thermostat.publish(t, "telemetry/temperature") == 0x87
		})
		var gone time.Duration
		select {
		case at := <-lightbulb.disconnected:
			gone = at.Sub(written)
		case <-time.After(within - time.Since(written)):
			t.Fatalf("lightbulb, which lost Connect, is still connected %v after the write", within)
		}
		require.Less(t, gone, within)
		t.Logf("latency from the API write's answer: publish denied after %v, lost-Connect client disconnected after %v", denied, gone)
		require.Zero(t, thermostat.publish(t, "telemetry/other"), "the new rule allows it on the same connection")
		broker.WaitFor(t, 2*time.Second, `msg="aioconfig: BrokerAuthorization applied"`, "name=abac-authz")
	})

	t.Run("new_ca_in_configmap_trusted", func(t *testing.T) {
		mergePatch(t, env, "/api/v1/namespaces/"+ns+"/configmaps/fabrikam-ca", map[string]any{
			"data": map[string]any{"intruder_ca.pem": read(t, pki, devpki.UntrustedRootCA)}})
		written := time.Now()
		var c *client
		took := until(t, written, within, "a client of the new CA connects", func() bool {
			var err error
			c, err = dial(t, pki, addr, devpki.Intruder)
			return err == nil
		})
		t.Logf("latency from the API write's answer: new CA trusted after %v", took)
		require.NotNil(t, c)
	})

	t.Run("garbage_ca_keeps_last_good_trust_and_is_reported", func(t *testing.T) {
		cm := "/api/v1/namespaces/" + ns + "/configmaps/fabrikam-ca"
		mergePatch(t, env, cm, map[string]any{"data": map[string]any{"broken.pem": "-----BEGIN CERTIFICATE-----\nnot base64\n"}})
		broker.WaitFor(t, 5*time.Second, `msg="aioconfig: invalid configuration in the cluster; keeping the last good one"`,
			"kind=BrokerAuthentication", "name=x509-auth", "field=spec.authenticationMethods[0].x509Settings.trustedClientCaCert")
		require.Zero(t, broker.Out.Count(`msg="aioconfig: configuration applied"`, "authentications_rebuilt=[x509-auth]"), "nothing of it reached the sources")
		waitEvent(t, env, "BrokerAuthentication", "x509-auth")
		_, err := dial(t, pki, addr, "heater") // another client identifier: thermostat stays connected
		require.NoError(t, err, "the last good CAs are still trusted")
		mergePatch(t, env, cm, map[string]any{"data": map[string]any{"broken.pem": nil}})
		broker.WaitFor(t, 5*time.Second, `msg="aioconfig: resource valid again"`, "name=x509-auth")
	})

	t.Run("invalid_resource_keeps_last_good_and_is_reported", func(t *testing.T) {
		mergePatch(t, env, policy, rules(
			rule(map[string]any{"usernames": []any{"heater"}}, res("Bogus", "x")),
		))
		broker.WaitFor(t, 5*time.Second, `msg="aioconfig: invalid configuration in the cluster; keeping the last good one"`,
			"kind=BrokerAuthorization", "name=abac-authz", "field=rules[0].brokerResources[0].method")
		require.Zero(t, thermostat.publish(t, "telemetry/other"), "the last good policy stays in force")
		waitEvent(t, env, "BrokerAuthorization", "abac-authz")
	})

	t.Run("watch_resumes_after_api_server_restart", func(t *testing.T) {
		require.NoError(t, env.RestartAPIServer(time.Second))
		broker.WaitFor(t, 60*time.Second, `msg="aioconfig: watch resumed"`, "resource=brokerauthorizations")
		mergePatch(t, env, policy, rules(
			rule(map[string]any{"attributes": []any{map[string]any{"group": "thermostat_group"}}}, res("Connect"), res("Publish", "telemetry/temperature")),
			rule(map[string]any{"usernames": []any{"heater"}}, res("Connect")), // for the subtests below
		))
		written := time.Now()
		took := until(t, written, within, "thermostat's publish allowed again", func() bool {
			return thermostat.publish(t, "telemetry/temperature") == 0
		})
		t.Logf("after the API server restart: policy applied %v after the write", took)
		broker.WaitFor(t, 2*time.Second, `msg="aioconfig: resource valid again"`, "name=abac-authz")
	})

	// Ports and authentication methods change live, through the same
	// reload path (aioconfig.Broker.Apply): a port added through the API
	// is served, a removed one sends its clients DISCONNECT 0x8B, and a
	// method removed from a BrokerAuthentication refuses new clients and
	// disconnects the live sessions it authenticated; unrelated sessions
	// stay.
	listener := brokerGroup + "/brokerlisteners/mqtts-endpoint"
	tutorialPort := map[string]any{"port": 8883, "authenticationRef": "x509-auth", "authorizationRef": "abac-authz", "protocol": "Mqtt",
		"tls": map[string]any{"mode": "Manual", "manual": map[string]any{"secretRef": "broker-server-cert"}}}
	addr2 := proc.FreeAddr(t)
	host2, port2, err := net.SplitHostPort(addr2)
	require.NoError(t, err)
	n2, err := strconv.Atoi(port2)
	require.NoError(t, err)
	var onPort2 *client
	outer := t // onPort2 outlives the subtest
	t.Run("port_added_through_the_api_serves", func(t *testing.T) {
		mergePatch(t, env, listener, map[string]any{"spec": map[string]any{"ports": []any{tutorialPort, map[string]any{
			"port": n2, "address": host2, "authenticationRef": "x509-auth", "authorizationRef": "abac-authz",
			"tls": map[string]any{"mode": "Manual", "manual": map[string]any{"secretRef": "broker-server-cert"}}}}}})
		written := time.Now()
		took := until(t, written, within, "a client connects to the added port", func() bool {
			var err error
			onPort2, err = dial(outer, pki, addr2, "heater")
			return err == nil
		})
		t.Logf("latency from the API write's answer: added port serving after %v", took)
		require.Zero(t, thermostat.publish(t, "telemetry/temperature"), "a session of the other port is not touched")
		require.Zero(t, broker.Out.Count("restart to apply"), "no restart asked for")
	})

	t.Run("port_removed_through_the_api_disconnects_0x8B", func(t *testing.T) {
		require.NotNil(t, onPort2)
		mergePatch(t, env, listener, map[string]any{"spec": map[string]any{"ports": []any{tutorialPort}}})
		disconnectedWithin(t, onPort2.reason, time.Now(), within, 0x8B, "removed port's client")
		_, err := net.DialTimeout("tcp", addr2, time.Second)
		require.Error(t, err, "the removed port no longer accepts")
		require.Zero(t, thermostat.publish(t, "telemetry/temperature"), "a session of the other port is not touched")
	})

	t.Run("authentication_method_removed_and_restored", func(t *testing.T) {
		// X509 replaced by SCRAM: X.509 sessions lose their method
		// (DISCONNECT 0x87: X.509 names no MQTT method) and a new client
		// certificate is no longer taken; X509 restored: it is again.
		users := &scramauth.File{}
		cred, err := scramauth.NewCredential(scramauth.SHA256, "secret", 4096)
		require.NoError(t, err)
		users.Put(scramauth.User{Name: "someone", Credentials: map[scramauth.Mechanism]scramauth.Credential{scramauth.SHA256: cred}})
		data, err := users.Marshal()
		require.NoError(t, err)
		applyYAML(t, env, mustJSON(t, map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "scram-users", "namespace": ns},
			"data": map[string]any{"users.json": base64.StdEncoding.EncodeToString(data)}}))
		authn := brokerGroup + "/brokerauthentications/x509-auth"
		mergePatch(t, env, authn, map[string]any{"spec": map[string]any{"authenticationMethods": []any{
			map[string]any{"method": "SCRAM", "scramSettings": map[string]any{"usersFile": "scram-users"}}}}})
		written := time.Now()
		disconnectedWithin(t, thermostat.reason, written, within, 0x87, "X.509 session (its method is gone)")
		until(t, written, within, "a new X.509 client refused", func() bool {
			_, err := dial(t, pki, addr, "heater")
			return err != nil
		})
		// A users Secret that does not parse keeps the users in force
		// and is reported on the BrokerAuthentication that names it.
		mergePatch(t, env, "/api/v1/namespaces/"+ns+"/secrets/scram-users", map[string]any{
			"data": map[string]any{"users.json": base64.StdEncoding.EncodeToString([]byte("{not json"))}})
		broker.WaitFor(t, 5*time.Second, `msg="aioconfig: invalid configuration in the cluster; keeping the last good one"`,
			"kind=BrokerAuthentication", "name=x509-auth", "field=spec.authenticationMethods[0].scramSettings.usersFile")
		mergePatch(t, env, authn, map[string]any{"spec": map[string]any{"authenticationMethods": []any{
			map[string]any{"method": "X509", "x509Settings": seed003(t, "x509-settings.json")}}}})
		written = time.Now()
		took := until(t, written, within, "a new X.509 client connects again", func() bool {
			_, err := dial(t, pki, addr, "heater")
			return err == nil
		})
		t.Logf("latency from the API write's answer: X509 method restored, new client connected after %v", took)
		require.Zero(t, broker.Out.Count("RestartRequired"))
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// The example gateway in front of mosquitto, configured from the cluster
// the same way: a policy change through the API denies the connected
// thermostat's next publish and disconnects lightbulb, which lost Connect.
func TestClusterSourceGatewayProcess(t *testing.T) {
	env := kubetest.Require(t)
	pki, token := setupTutorial(t, env)
	_, upstream := proc.StartMosquitto(t, "")
	addr, adminAddr := proc.FreeAddr(t), proc.FreeAddr(t)
	gw := proc.Start(t, proc.Binary(t, "github.com/mqttauth/mqttauth/examples/gateway"),
		"-config-from-cluster", ns, "-kube-apiserver", env.URL, "-kube-ca", env.CAFile, "-kube-token", token,
		"-addr", addr, "-admin-addr", adminAddr, "-upstream", upstream)
	gw.WaitFor(t, 30*time.Second, `msg="gateway listening"`)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond, "the gateway's /readyz, with the Kubernetes source's check")
	gw.WaitFor(t, 5*time.Second, `msg="aioconfig: Kubernetes source ready"`) // the probe ran the check

	thermostat, err := dial(t, pki, addr, "thermostat")
	require.NoError(t, err)
	// mosquitto answers 16 (No matching subscribers) to an allowed publish.
	require.NotEqual(t, byte(0x87), thermostat.publish(t, "telemetry/temperature"))
	lightbulb, err := dial(t, pki, addr, "lightbulb")
	require.NoError(t, err)

	mergePatch(t, env, brokerGroup+"/brokerauthorizations/abac-authz", rules(
		rule(map[string]any{"attributes": []any{map[string]any{"group": "thermostat_group"}}}, res("Connect"), res("Publish", "telemetry/other")),
	))
	written := time.Now()
	denied := until(t, written, within, "thermostat's publish denied by the gateway", func() bool {
		return thermostat.publish(t, "telemetry/temperature") == 0x87
	})
	select {
	case at := <-lightbulb.disconnected:
		t.Logf("gateway, latency from the API write's answer: publish denied after %v, lost-Connect client disconnected after %v", denied, at.Sub(written))
		require.Less(t, at.Sub(written), within)
	case <-time.After(within - time.Since(written)):
		t.Fatalf("lightbulb, which lost Connect, is still connected %v after the write", within)
	}

	// A port added through the API gets a gateway of its own; removed,
	// that gateway shuts down (DISCONNECT 0x8B to its client) while the
	// other port's session stays.
	mergePatch(t, env, brokerGroup+"/brokerauthorizations/abac-authz", rules(
		rule(map[string]any{"attributes": []any{map[string]any{"group": "thermostat_group"}}}, res("Connect"), res("Publish", "telemetry/other")),
		rule(map[string]any{"usernames": []any{"heater"}}, res("Connect")),
	))
	gw.WaitFor(t, 5*time.Second, `msg="aioconfig: BrokerAuthorization applied"`, "rules=2")
	tutorialPort := map[string]any{"port": 8883, "authenticationRef": "x509-auth", "authorizationRef": "abac-authz", "protocol": "Mqtt",
		"tls": map[string]any{"mode": "Manual", "manual": map[string]any{"secretRef": "broker-server-cert"}}}
	addr2 := proc.FreeAddr(t)
	host2, port2, err := net.SplitHostPort(addr2)
	require.NoError(t, err)
	n2, err := strconv.Atoi(port2)
	require.NoError(t, err)
	listener := brokerGroup + "/brokerlisteners/mqtts-endpoint"
	mergePatch(t, env, listener, map[string]any{"spec": map[string]any{"ports": []any{tutorialPort, map[string]any{
		"port": n2, "address": host2, "authenticationRef": "x509-auth", "authorizationRef": "abac-authz",
		"tls": map[string]any{"mode": "Manual", "manual": map[string]any{"secretRef": "broker-server-cert"}}}}}})
	written = time.Now()
	var heater *client
	took := until(t, written, within, "a client connects to the gateway's added port", func() bool {
		var err error
		heater, err = dial(t, pki, addr2, "heater")
		return err == nil
	})
	t.Logf("gateway, latency from the API write's answer: added port serving after %v", took)
	mergePatch(t, env, listener, map[string]any{"spec": map[string]any{"ports": []any{tutorialPort}}})
	disconnectedWithin(t, heater.reason, time.Now(), within, 0x8B, "gateway, removed port's client")
	require.NotEqual(t, byte(0x87), thermostat.publish(t, "telemetry/other"), "the other port's session stays")
}

// waitEvent waits for a Warning Event InvalidConfiguration on the
// resource kind/name (with its UID) and logs its message.
func waitEvent(t *testing.T, env *kubetest.Env, kind, name string) {
	t.Helper()
	require.Eventually(t, func() bool {
		body, err := env.Call(http.MethodGet, "/api/v1/namespaces/"+ns+"/events?fieldSelector="+
			"involvedObject.name%3D"+name+"%2Creason%3DInvalidConfiguration", env.AdminToken, nil)
		require.NoError(t, err)
		var list struct {
			Items []struct {
				Type           string `json:"type"`
				Message        string `json:"message"`
				InvolvedObject struct {
					Kind string `json:"kind"`
					UID  string `json:"uid"`
				} `json:"involvedObject"`
			} `json:"items"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &list))
		for _, e := range list.Items {
			if e.Type == "Warning" && e.InvolvedObject.Kind == kind && e.InvolvedObject.UID != "" {
				t.Logf("Event on %s %s: %s", kind, name, e.Message)
				return true
			}
		}
		return false
	}, 5*time.Second, 100*time.Millisecond, "a Warning Event on %s %s", kind, name)
}
