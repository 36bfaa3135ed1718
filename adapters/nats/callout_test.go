package nats_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	natsauth "github.com/mqttauth/mqttauth/adapters/nats"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
)

// binDir holds the nats-server binary built for the tests; TestMain
// removes it.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// stockServer builds the stock nats-server binary of the module's
// nats-server version (go build github.com/nats-io/nats-server/v2), once
// per test run. Without the go command the test is skipped, except under
// CI=true, where it fails.
func stockServer(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the go command is needed to build nats-server")
		}
		t.Skip("the go command is not in PATH: cannot build nats-server: skipping")
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "mqttauth-nats-server-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "nats-server")
		out, err := exec.Command(goBin, "build", "-o", binPath, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

// freePort returns a TCP port free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// stock is a stock nats-server process configured for the auth callout:
// account AUTH (the service's user "auth"), APP (the clients' account,
// with JetStream), SYS (the system account, user "sys"), and an MQTT
// listener over mTLS trusting the tutorial's Fabrikam root.
type stock struct {
	cmd      *exec.Cmd
	url      string
	mqtt     string
	issuer   nkeys.KeyPair
	logPath  string
	exited   chan struct{}
	stopOnce sync.Once
}

func startStock(t *testing.T, pki *authtest.TutorialPKI) *stock {
	t.Helper()
	issuer, err := nkeys.CreateAccount()
	require.NoError(t, err)
	return startStockNode(t, pki, stockNode{name: "stock1", issuer: issuer})
}

// stockNode describes one stock server: alone, or a node of a cluster.
type stockNode struct {
	name        string
	issuer      nkeys.KeyPair
	clusterPort int   // 0: no cluster
	routes      []int // the cluster ports of every node
}

func startStockNode(t *testing.T, pki *authtest.TutorialPKI, sn stockNode) *stock {
	t.Helper()
	bin := stockServer(t)
	dir := t.TempDir()
	issuer := sn.issuer
	issPub, err := issuer.PublicKey()
	require.NoError(t, err)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		return p
	}
	cert := write("server.pem", pki.Server.ChainPEM())
	key := write("server.key", pki.Server.KeyPEM(t))
	ca := write("clients-ca.pem", authtest.CertsPEM(pki.FabrikamRoot.Cert))
	port, mport := freePort(t), freePort(t)
	clusterConf, replicas := "", ""
	if sn.clusterPort != 0 {
		var routes []string
		for _, p := range sn.routes {
			routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("nats://127.0.0.1:%d", p)))
		}
		clusterConf = fmt.Sprintf("cluster { name: stock, listen: \"127.0.0.1:%d\", routes: [%s] }", sn.clusterPort, strings.Join(routes, ", "))
		replicas = "stream_replicas: 3"
	}
	conf := fmt.Sprintf(`
server_name: %s
listen: "127.0.0.1:%d"
%s
jetstream { store_dir: %q }
mqtt {
  listen: "127.0.0.1:%d"
  %s
  tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }
}
accounts {
  AUTH { users: [ { user: auth, password: authpw } ] }
  APP { jetstream: enabled }
  SYS { users: [ { user: sys, password: syspw } ] }
}
system_account: SYS
authorization {
  auth_callout {
    issuer: %q
    auth_users: [ auth, sys ]
    account: AUTH
  }
}
`, sn.name, port, clusterConf, filepath.Join(dir, "js"), mport, replicas, cert, key, ca, issPub)
	confPath := write("nats.conf", []byte(conf))
	logPath := filepath.Join(dir, "nats.log")
	cmd := exec.Command(bin, "-c", confPath, "-l", logPath)
	require.NoError(t, cmd.Start())
	s := &stock{cmd: cmd, url: fmt.Sprintf("nats://127.0.0.1:%d", port), mqtt: fmt.Sprintf("127.0.0.1:%d", mport),
		issuer: issuer, logPath: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.stop)
	require.Eventually(t, func() bool {
		nc, err := natsgo.Connect(s.url, natsgo.UserInfo("sys", "syspw"), natsgo.Timeout(time.Second))
		if err != nil {
			return false
		}
		nc.Close()
		return true
	}, 20*time.Second, 100*time.Millisecond, "nats-server did not start: %s", s.log())
	return s
}

func (s *stock) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

func (s *stock) stop() {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
}

// calloutReplica starts one replica of the service with its own Manager
// (x509auth over store, the tutorial's policy).
func calloutReplica(t *testing.T, s *stock, store *truststore.Store, policy *abac.Policy) (*natsauth.Callout, *auth.Manager) {
	t.Helper()
	xa := newX509(t, store)
	m := newManager(t, auth.Config{Authenticator: auth.Chain{xa}, Authorizer: policy})
	stopWatch, err := m.Watch(xa.Watch(store))
	require.NoError(t, err)
	t.Cleanup(stopWatch)
	svc, _, err := dialNATS(t, s.url, natsgo.UserInfo("auth", "authpw"))
	require.NoError(t, err)
	sys, _, err := dialNATS(t, s.url, natsgo.UserInfo("sys", "syspw"))
	require.NoError(t, err)
	c, err := natsauth.NewCallout(natsauth.CalloutConfig{Manager: m, Policy: policy, Issuer: s.issuer,
		Account: "APP", Conn: svc, System: sys, Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c, m
}

// The tutorial on a stock nats-server binary whose MQTT listener delegates
// to the auth callout service: two replicas in a queue group, X.509 from
// the chain the server forwards, the policy as the user JWT's
// permissions, revocation through the system account's kick, and a
// replica stopped while the other keeps answering.
func TestCalloutStockServer(t *testing.T) {
	pki := authtest.NewTutorialPKI(t, time.Now())
	pki.Server = pki.ContosoIntermediate.Leaf(t, "mqtts-endpoint", authtest.WithDNSNames("localhost"),
		authtest.WithIPs(net.ParseIP("127.0.0.1")), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	s := startStock(t, pki)
	set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	require.NoError(t, err)
	store := truststore.NewMemory(set)
	policy, err := abac.Parse([]byte(authtest.TutorialPolicy))
	require.NoError(t, err)
	r1, m1 := calloutReplica(t, s, store, policy)
	r2, m2 := calloutReplica(t, s, store, policy)
	live := func() int { return m1.Len() + m2.Len() }

	tlsFor := func(l *authtest.Leaf) *tls.Config { return clientTLS(t, pki, l) }
	heater, err := dialMQTT(t, s.mqtt, tlsFor(pki.Heater), "heater", "", "")
	require.NoError(t, err, s.log())
	require.Equal(t, byte(1), heater.subscribe(t, "telemetry/temperature"))
	require.Equal(t, byte(0x80), heater.subscribe(t, "telemetry/#"))
	thermo, err := dialMQTT(t, s.mqtt, tlsFor(pki.Thermostat), "thermostat", "", "")
	require.NoError(t, err)
	require.NoError(t, thermo.publish(t, "telemetry/temperature", "21.5"))
	heater.expectMessage(t, "telemetry/temperature")
	require.NoError(t, thermo.publish(t, "telemetry/humidity", "40")) // dropped
	heater.expectNone(t)
	hygro, err := dialMQTT(t, s.mqtt, tlsFor(pki.Hygrometer), "hygrometer", "", "")
	require.NoError(t, err)
	require.Equal(t, 3, live())
	require.Equal(t, 3, r1.Len()+r2.Len())

	t.Run("disconnect_event_ends_the_session", func(t *testing.T) {
		hygro.Disconnect(100)
		require.Eventually(t, func() bool { return live() == 2 }, 5*time.Second, 20*time.Millisecond)
	})

	t.Run("revoked_certificate_kicked", func(t *testing.T) {
		now := time.Now()
		crl, err := x509.ParseRevocationList(pki.FabrikamIntermediate.CRL(t, 1, now.Add(-time.Minute), now.Add(time.Hour), pki.Thermostat.Cert))
		require.NoError(t, err)
		set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, []*x509.RevocationList{crl})
		require.NoError(t, err)
		store.Replace(set)
		thermo.expectLost(t, 10*time.Second)
		require.Eventually(t, func() bool { return live() == 1 }, 5*time.Second, 20*time.Millisecond)
		require.True(t, heater.IsConnectionOpen())
		// The stock server trusts the chain (no CRL there); the service
		// refuses the revoked certificate.
		_, err = dialMQTT(t, s.mqtt, tlsFor(pki.Thermostat), "thermostat", "", "")
		require.Error(t, err)
	})

	t.Run("one_replica_stopped_the_other_answers", func(t *testing.T) {
		require.NoError(t, r1.Close())
		before := r2.Len()
		for i := range 4 {
			c, err := dialMQTT(t, s.mqtt, tlsFor(pki.Lightbulb), fmt.Sprintf("bulb-%d", i), "", "")
			require.NoError(t, err)
			require.NoError(t, c.publish(t, "health/heartbeat", "ok"))
		}
		require.Equal(t, before+4, r2.Len(), "the second replica answered for the four bulbs")
	})
	require.False(t, strings.Contains(s.log(), "[FTL]"), s.log())
}

// Three stock nodes in a cluster (routes, MQTT streams with three
// replicas) delegate to two replicas of the service, connected to
// different nodes: a client on one node publishes to a subscriber on
// another, a revoked certificate is kicked on the node that holds it
// whichever replica authenticated it, and with one replica stopped the
// other answers every node.
func TestCalloutStockCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes with JetStream: not in -short")
	}
	pki := authtest.NewTutorialPKI(t, time.Now())
	pki.Server = pki.ContosoIntermediate.Leaf(t, "mqtts-endpoint", authtest.WithDNSNames("localhost"),
		authtest.WithIPs(net.ParseIP("127.0.0.1")), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	issuer, err := nkeys.CreateAccount()
	require.NoError(t, err)
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var nodes []*stock
	for i := range 3 {
		nodes = append(nodes, startStockNode(t, pki, stockNode{name: fmt.Sprintf("s%d", i+1), issuer: issuer, clusterPort: ports[i], routes: ports}))
	}
	set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	require.NoError(t, err)
	store := truststore.NewMemory(set)
	policy, err := abac.Parse([]byte(authtest.TutorialPolicy))
	require.NoError(t, err)
	r1, m1 := calloutReplica(t, nodes[0], store, policy)
	_, m2 := calloutReplica(t, nodes[1], store, policy)

	dial := func(node int, leaf *authtest.Leaf, id string) *mqttClient {
		var mc *mqttClient
		require.Eventually(t, func() bool {
			var err error
			mc, err = dialMQTTOpts(t, nodes[node].mqtt, clientTLS(t, pki, leaf), id, true)
			return err == nil
		}, 30*time.Second, 200*time.Millisecond, "connect to s%d: %s", node+1, nodes[node].log())
		return mc
	}
	heater := dial(2, pki.Heater, "heater")
	require.Equal(t, byte(1), heater.subscribe(t, "telemetry/temperature"))
	thermo := dial(0, pki.Thermostat, "thermostat")
	require.Eventually(t, func() bool {
		if err := thermo.publish(t, "telemetry/temperature", "21.5"); err != nil {
			return false
		}
		select {
		case m := <-heater.got:
			return m.Topic() == "telemetry/temperature"
		case <-time.After(500 * time.Millisecond):
			return false
		}
	}, 15*time.Second, 10*time.Millisecond, "published on s1, not received on s3")
	hygro := dial(1, pki.Hygrometer, "hygrometer")
	require.Equal(t, 3, m1.Len()+m2.Len())

	now := time.Now()
	crl, err := x509.ParseRevocationList(pki.FabrikamIntermediate.CRL(t, 1, now.Add(-time.Minute), now.Add(time.Hour), pki.Thermostat.Cert))
	require.NoError(t, err)
	set, err = truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, []*x509.RevocationList{crl})
	require.NoError(t, err)
	store.Replace(set)
	thermo.expectLost(t, 10*time.Second)
	require.True(t, heater.IsConnectionOpen() && hygro.IsConnectionOpen())

	require.NoError(t, r1.Close())
	for i := range 3 {
		c := dial(i, pki.Lightbulb, fmt.Sprintf("bulb-%d", i))
		require.NoError(t, c.publish(t, "health/heartbeat", "ok"))
	}
}

// A slow authentication does not hold up the others: one replica answers
// requests concurrently.
func TestCalloutConcurrent(t *testing.T) {
	pki := authtest.NewTutorialPKI(t, time.Now())
	s := startStock(t, pki)
	policy, err := abac.Parse([]byte(`
rules:
  - principals: {usernames: [slow, fast]}
    brokerResources: [{method: Connect}, {method: Publish, topics: ["users/{principal.username}"]}]
`))
	require.NoError(t, err)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	authn := auth.AuthenticatorFunc(func(ctx context.Context, req *auth.Request) auth.Result {
		if req.Username == "slow" {
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return auth.UnavailableResult(ctx.Err())
			}
		}
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: req.Username}))
	})
	m := newManager(t, auth.Config{Authenticator: authn, Authorizer: policy})
	svc, _, err := dialNATS(t, s.url, natsgo.UserInfo("auth", "authpw"))
	require.NoError(t, err)
	c, err := natsauth.NewCallout(natsauth.CalloutConfig{Manager: m, Policy: policy, Issuer: s.issuer,
		Account: "APP", Conn: svc, Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	slowDone := make(chan error, 1)
	go func() {
		nc, err := natsgo.Connect(s.url, natsgo.UserInfo("slow", "x"), natsgo.NoReconnect(), natsgo.Timeout(10*time.Second))
		if err == nil {
			nc.Close()
		}
		slowDone <- err
	}()
	<-entered
	fast, _, err := dialNATS(t, s.url, natsgo.UserInfo("fast", "x"))
	require.NoError(t, err, "the fast client waited for the slow one")
	require.NoError(t, fast.Publish("users.fast", nil))
	require.NoError(t, fast.Flush())
	close(release)
	require.NoError(t, <-slowDone)
}

// The credential's expiry is the user JWT's: the stock server closes the
// connection when the client certificate's notAfter passes.
func TestCalloutExpiry(t *testing.T) {
	pki := authtest.NewTutorialPKI(t, time.Now())
	pki.Server = pki.ContosoIntermediate.Leaf(t, "mqtts-endpoint", authtest.WithDNSNames("localhost"),
		authtest.WithIPs(net.ParseIP("127.0.0.1")), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	s := startStock(t, pki)
	set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	require.NoError(t, err)
	policy, err := abac.Parse([]byte(authtest.TutorialPolicy))
	require.NoError(t, err)
	_, m := calloutReplica(t, s, truststore.NewMemory(set), policy)

	now := time.Now()
	short := pki.FabrikamIntermediate.Leaf(t, "thermostat", authtest.WithExtKeyUsage(x509.ExtKeyUsageClientAuth),
		authtest.WithValidity(now.Add(-time.Hour), now.Add(4*time.Second)))
	c, err := dialMQTT(t, s.mqtt, clientTLS(t, pki, short), "short-lived", "", "")
	require.NoError(t, err, s.log())
	long, err := dialMQTT(t, s.mqtt, clientTLS(t, pki, pki.Hygrometer), "long-lived", "", "")
	require.NoError(t, err)
	c.expectLost(t, 8*time.Second)
	require.False(t, time.Now().Before(short.Cert.NotAfter.Add(-time.Second)), "closed before the certificate expired")
	require.Eventually(t, func() bool { return m.Len() == 1 }, 5*time.Second, 20*time.Millisecond)
	require.True(t, long.IsConnectionOpen())
}
