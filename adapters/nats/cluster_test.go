package nats_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	natsauth "github.com/mqttauth/mqttauth/adapters/nats"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
)

// clusterNode is one embedded nats-server of a three-node cluster on
// loopback, with mqttauth in process.
type clusterNode struct {
	name    string
	opts    *server.Options
	srv     *server.Server
	a       *natsauth.Authentication
	m       *auth.Manager
	mqtt    string
	storeJS string
}

type cluster struct {
	nodes  []*clusterNode
	pki    *authtest.TutorialPKI
	store  *truststore.Store
	policy *abac.Policy
}

func (c *cluster) start(t *testing.T, n *clusterNode) {
	t.Helper()
	xa := newX509(t, c.store)
	m := newManager(t, auth.Config{Authenticator: auth.Chain{xa}, Authorizer: c.policy})
	stopWatch, err := m.Watch(xa.Watch(c.store))
	require.NoError(t, err)
	t.Cleanup(stopWatch)
	a, err := natsauth.New(natsauth.Config{Manager: m, Policy: c.policy, Logger: quiet})
	require.NoError(t, err)
	opts := *n.opts
	opts.MQTT.TLSConfig = xa.ServerTLSConfig(authtest.ServerTLSConfig(t, c.pki.Server))
	srv, err := natsauth.NewServer(&opts, a)
	require.NoError(t, err)
	go srv.Start()
	require.True(t, srv.ReadyForConnections(20*time.Second), "%s did not start", n.name)
	n.srv, n.a, n.m = srv, a, m
	t.Cleanup(func() { n.stop() })
}

func (n *clusterNode) stop() {
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.a.Sweep()
	_ = n.a.Close()
	n.srv = nil
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	pki := authtest.NewTutorialPKI(t, time.Now())
	pki.Server = pki.ContosoIntermediate.Leaf(t, "mqtts-endpoint", authtest.WithDNSNames("localhost"),
		authtest.WithIPs(net.ParseIP("127.0.0.1")), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	require.NoError(t, err)
	policy, err := abac.Parse([]byte(authtest.TutorialPolicy))
	require.NoError(t, err)
	c := &cluster{pki: pki, store: truststore.NewMemory(set), policy: policy}
	var routes []*url.URL
	var clusterPorts, mqttPorts []int
	for range 3 {
		p := freePort(t)
		clusterPorts = append(clusterPorts, p)
		mqttPorts = append(mqttPorts, freePort(t))
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		n := &clusterNode{name: name, storeJS: t.TempDir(), mqtt: fmt.Sprintf("127.0.0.1:%d", mqttPorts[i])}
		n.opts = &server.Options{
			ServerName: name, Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: n.storeJS,
			Cluster: server.ClusterOpts{Name: "mqttauth", Host: "127.0.0.1", Port: clusterPorts[i]},
			Routes:  routes,
			MQTT:    server.MQTTOpts{Host: "127.0.0.1", Port: mqttPorts[i], StreamReplicas: 3},
		}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		c.start(t, n)
	}
	c.waitReady(t)
	return c
}

// waitReady waits for the routes and a JetStream meta leader.
func (c *cluster) waitReady(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		leader := false
		for _, n := range c.nodes {
			if n.srv == nil {
				continue
			}
			if n.srv.NumRoutes() < 2 {
				return false
			}
			leader = leader || n.srv.JetStreamIsLeader()
		}
		return leader
	}, 30*time.Second, 100*time.Millisecond, "the cluster did not form")
}

// dialNode connects an MQTT client to node i, retrying while the
// cluster's MQTT streams are being created.
func (c *cluster) dialNode(t *testing.T, i int, leaf *authtest.Leaf, id string, clean bool) *mqttClient {
	t.Helper()
	var mc *mqttClient
	require.Eventually(t, func() bool {
		var err error
		mc, err = dialMQTTOpts(t, c.nodes[i].mqtt, clientTLS(t, c.pki, leaf), id, clean)
		return err == nil
	}, 30*time.Second, 200*time.Millisecond, "connect to %s", c.nodes[i].name)
	return mc
}

func dialMQTTOpts(t testing.TB, addr string, tlsCfg *tls.Config, id string, clean bool) (*mqttClient, error) {
	mc := &mqttClient{lost: make(chan error, 1), got: make(chan paho.Message, 64)}
	opts := paho.NewClientOptions().AddBroker("ssl://" + addr).SetClientID(id).SetTLSConfig(tlsCfg).
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(10 * time.Second).
		SetProtocolVersion(4).SetKeepAlive(30 * time.Second).SetResumeSubs(true).
		SetConnectionLostHandler(func(_ paho.Client, err error) { mc.lost <- err }).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { mc.got <- m })
	mc.Client = paho.NewClient(opts)
	tok := mc.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		mc.Disconnect(0)
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { mc.Disconnect(100) })
	return mc, nil
}

// Three nodes on loopback (routes, JetStream, MQTT streams with three
// replicas), mqttauth in process on each: a client authorized on one node
// publishes and a subscriber on another receives; a revoked certificate
// is disconnected on the node that holds it; a node stopped and started
// again loses no QoS 1 message of a persistent session.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes with JetStream: not in -short")
	}
	c := startCluster(t)

	heater := c.dialNode(t, 2, c.pki.Heater, "heater", true)
	require.Equal(t, byte(1), heater.subscribe(t, "telemetry/temperature"))
	thermo := c.dialNode(t, 0, c.pki.Thermostat, "thermostat", true)
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
	}, 10*time.Second, 10*time.Millisecond, "published on n1, not received on n3")
	require.NoError(t, thermo.publish(t, "telemetry/humidity", "40")) // dropped on n1
	heater.expectNone(t)

	t.Run("revoked_on_the_node_that_holds_it", func(t *testing.T) {
		hygro := c.dialNode(t, 1, c.pki.Hygrometer, "hygrometer", true)
		require.Equal(t, 1, c.nodes[1].m.Len())
		now := time.Now()
		crl, err := x509.ParseRevocationList(c.pki.FabrikamIntermediate.CRL(t, 1, now.Add(-time.Minute), now.Add(time.Hour), c.pki.Hygrometer.Cert))
		require.NoError(t, err)
		set, err := truststore.NewSet([]*x509.Certificate{c.pki.FabrikamRoot.Cert}, []*x509.RevocationList{crl})
		require.NoError(t, err)
		c.store.Replace(set)
		hygro.expectLost(t, 10*time.Second)
		require.True(t, heater.IsConnectionOpen() && thermo.IsConnectionOpen())
	})

	t.Run("node_restart_keeps_qos1_of_a_persistent_session", func(t *testing.T) {
		// The heater's persistent session lives in the MQTT streams,
		// replicated on the three nodes.
		ps := c.dialNode(t, 0, c.pki.Heater, "heater-persistent", false)
		require.Equal(t, byte(1), ps.subscribe(t, "telemetry/temperature"))
		ps.Disconnect(100)
		for i := range 3 {
			require.NoError(t, thermo.publish(t, "telemetry/temperature", fmt.Sprintf("q%d", i)))
		}
		// Stop n1 and start it again with its store.
		c.nodes[0].stop()
		c.start(t, c.nodes[0])
		c.waitReady(t)
		back := c.dialNode(t, 0, c.pki.Heater, "heater-persistent", false)
		got := map[string]bool{}
		deadline := time.After(20 * time.Second)
		for len(got) < 3 {
			select {
			case m := <-back.got:
				got[string(m.Payload())] = true
			case <-deadline:
				t.Fatalf("after the restart the persistent session got %v", got)
			}
		}
	})
}
