package gateway_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/gateway"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// quietBroker keeps mosquitto from logging in benchmarks.
const quietBroker = "log_dest none\nset_tcp_nodelay true\n"

// tutorialPolicy is the abac policy of the Azure IoT Operations tutorial
// "TLS, X.509 client authentication, and ABAC authorization".
const tutorialPolicy = `{"rules": [
  {"principals": {"attributes": [{"group": "thermostat_group"}]},
   "brokerResources": [{"method": "Connect"}, {"method": "Publish", "topics": ["telemetry/temperature"]}]},
  {"principals": {"attributes": [{"manufacturer": "fabrikam"}]},
   "brokerResources": [{"method": "Connect"}, {"method": "Publish", "topics": ["health/heartbeat"]}]},
  {"principals": {"usernames": ["heater"]},
   "brokerResources": [{"method": "Connect"}, {"method": "Subscribe", "topics": ["telemetry/temperature", "telemetry/humidity"]}]}
]}`

// tutorialGateway starts mosquitto (plain TCP on loopback) and a gateway
// with x509auth over the tutorial PKI and the tutorial's ABAC policy.
func tutorialGateway(b testing.TB, pki *authtest.TutorialPKI, brokerConf string) *stack {
	b.Helper()
	set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	require.NoError(b, err)
	a, err := x509auth.New(x509auth.Config{Trust: truststore.NewMemory(set), Logger: testLogger(b), Mappings: []x509auth.Mapping{
		{Name: "thermostat", Subject: "CN = thermostat", Attributes: map[string]string{"group": "thermostat_group"}},
		{Name: "intermediate", Subject: "CN = Fabrikam Intermediate CA 1", Attributes: map[string]string{"manufacturer": "fabrikam"}},
	}})
	require.NoError(b, err)
	policy, err := abac.Parse([]byte(tutorialPolicy))
	require.NoError(b, err)
	return startStack(b, auth.Config{Authenticator: auth.Chain{a}, Authorizer: policy, Logger: testLogger(b)}, brokerConf, func(c *gateway.Config) {
		c.TLS = a.ServerTLSConfig(authtest.ServerTLSConfig(b, pki.Server))
	})
}

// connectOnce dials addr over TLS, sends a v5 CONNECT, reads the CONNACK,
// sends DISCONNECT and closes: one full handshake and one MQTT connect.
func connectOnce(addr string, cfg *tls.Config, id string) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ClientID, c.KeepAlive, c.CleanStart = id, 30, true
	if _, err := cp.WriteTo(conn); err != nil {
		return err
	}
	p, err := packets.ReadPacket(conn)
	if err != nil {
		return err
	}
	if ca, ok := p.Content.(*packets.Connack); !ok || ca.ReasonCode != 0 {
		return fmt.Errorf("no successful CONNACK: %v", p)
	}
	_, _ = (&packets.Disconnect{Properties: &packets.Properties{}}).WriteTo(conn)
	return nil
}

// BenchmarkConnectMTLS measures full mTLS handshakes plus MQTT connects per
// second: through the gateway (x509auth, the tutorial's ABAC Connect check,
// a Session, a plain-TCP upstream CONNECT to mosquitto) against Debian's
// mosquitto doing mTLS itself (require_certificate, use_identity_as_username).
// The mochi adapter's number comes from adapters/mochi's
// BenchmarkConnectMTLS/broker=adapter, run in the same session.
func BenchmarkConnectMTLS(b *testing.B) {
	pki := authtest.NewTutorialPKI(b, time.Now())
	clientTLS := authtest.ClientTLSConfig(b, pki.ContosoRoot, "localhost", pki.Thermostat)
	run := func(b *testing.B, addr string) {
		b.ReportAllocs()
		start := time.Now()
		n := 0
		for b.Loop() {
			if err := connectOnce(addr, clientTLS, "thermostat"); err != nil {
				b.Fatal(err)
			}
			n++
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "connects/s")
	}
	b.Run("broker=gateway+mosquitto", func(b *testing.B) {
		run(b, tutorialGateway(b, pki, quietBroker).Addr)
	})
	b.Run("broker=mosquitto", func(b *testing.B) {
		dir := readableDir(b)
		write := func(name string, data []byte) string {
			p := filepath.Join(dir, name)
			require.NoError(b, os.WriteFile(p, data, 0o644))
			return p
		}
		conf := fmt.Sprintf("cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\nuse_identity_as_username true\n%s",
			write("ca.pem", authtest.CertsPEM(pki.FabrikamRoot.Cert)), write("server.pem", pki.Server.ChainPEM()),
			write("server.key", pki.Server.KeyPEM(b)), quietBroker)
		m := startMosquitto(b, conf)
		run(b, m.Addr)
	})
}

// benchClient is a minimal v5 client over TCP with buffered I/O.
type benchClient struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

func benchDial(b testing.TB, addr, id, user string) *benchClient {
	b.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(b, err)
	b.Cleanup(func() { _ = conn.Close() })
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ClientID, c.CleanStart = id, true
	c.Username, c.UsernameFlag, c.Password, c.PasswordFlag = user, true, []byte(passwords[user]), true
	_, err = cp.WriteTo(conn)
	require.NoError(b, err)
	bc := &benchClient{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), w: bufio.NewWriterSize(conn, 64<<10)}
	p, err := packets.ReadPacket(bc.r)
	require.NoError(b, err)
	ca, ok := p.Content.(*packets.Connack)
	require.True(b, ok && ca.ReasonCode == 0, "connect %s: %v", id, p)
	return bc
}

// BenchmarkPublish measures messages per second from one publisher to one
// subscriber through mosquitto, through=gateway (password authentication,
// every PUBLISH authorized), through=gateway311 (the same, MQTT 5 clients
// translated to MQTT 3.1.1 upstream: gateway.UpstreamV311) or
// through=direct. QoS 0 keeps 256 messages in
// flight; QoS 1 keeps 16 unacknowledged (below mosquitto's default receive
// maximum of 20).
func BenchmarkPublish(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		for _, through := range []string{"gateway", "direct", "gateway311"} {
			b.Run(fmt.Sprintf("qos=%d/through=%s", qos, through), func(b *testing.B) {
				var v311 func(*gateway.Config)
				if through == "gateway311" { // MQTT 5 clients translated to 3.1.1 upstream
					v311 = func(c *gateway.Config) { c.UpstreamProtocol = gateway.UpstreamV311 }
				}
				s := startStack(b, passwordAuth(), quietBroker+"max_queued_messages 100000\n", v311)
				addr := s.Addr
				if through == "direct" {
					addr = s.Broker.Addr
				}
				benchPublish(b, addr, qos)
			})
		}
	}
}

func benchPublish(b *testing.B, addr string, qos byte) {
	sub := benchDial(b, addr, "sub", "bob")
	_, err := (&packets.Subscribe{PacketID: 1, Properties: &packets.Properties{},
		Subscriptions: []packets.SubOptions{{Topic: "ok/bench", QoS: 0}}}).WriteTo(sub.conn)
	require.NoError(b, err)
	p, err := packets.ReadPacket(sub.r)
	require.NoError(b, err)
	require.Equal(b, packets.SUBACK, p.Type)

	pub := benchDial(b, addr, "pub", "alice")
	window := 256
	if qos == 1 {
		window = 16
	}
	msgs := make([][]byte, window)
	for i := range msgs {
		var buf bytes.Buffer
		_, _ = (&packets.Publish{Topic: "ok/bench", QoS: qos, PacketID: uint16(i + 1), Payload: []byte("21.5"),
			Properties: &packets.Properties{}}).WriteTo(&buf)
		msgs[i] = buf.Bytes()
	}
	received := make(chan int, 1)
	go func() {
		defer close(received)
		n := 0
		for {
			p, err := packets.ReadPacket(sub.r)
			if err != nil {
				return
			}
			if p.Type == packets.PUBLISH {
				n++
				if n%window == 0 {
					received <- n
				}
			}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	sent := 0
	for sent < b.N {
		for _, m := range msgs {
			_, _ = pub.w.Write(m)
		}
		require.NoError(b, pub.w.Flush())
		sent += window
		if qos == 1 {
			for range window {
				p, err := packets.ReadPacket(pub.r)
				if err != nil || p.Type != packets.PUBACK {
					b.Fatalf("PUBACK: %v %v", p, err)
				}
			}
		}
		select {
		case n, ok := <-received:
			if !ok || n != sent {
				b.Fatalf("subscriber got %d of %d", n, sent)
			}
		case <-time.After(10 * time.Second):
			b.Fatalf("subscriber stalled at %d", sent)
		}
	}
	b.ReportMetric(float64(sent)/time.Since(start).Seconds(), "msgs/s")
	b.StopTimer()
	_ = sub.conn.Close()
	<-received
}

// BenchmarkIdleConnection measures the gateway's memory per idle
// authenticated connection (plain TCP, password authentication): heap and
// goroutine stacks in use after GC with N connections through the gateway,
// minus the same with N connections straight to mosquitto (the clients'
// own share, which runs in the same process).
func BenchmarkIdleConnection(b *testing.B) {
	const n = 1000
	s := startStack(b, passwordAuth(), quietBroker+"max_connections -1\n", nil)
	inUse := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	open := func(addr, prefix string) []*benchClient {
		cs := make([]*benchClient, n)
		for i := range cs {
			cs[i] = benchDial(b, addr, fmt.Sprintf("%s-%d", prefix, i), "bob")
			cs[i].r, cs[i].w = nil, nil // the clients' buffers are not the gateway's
		}
		return cs
	}
	closeAll := func(cs []*benchClient) {
		for _, c := range cs {
			_ = c.conn.Close()
		}
	}
	var perConn float64
	for b.Loop() {
		base := inUse()
		direct := open(s.Broker.Addr, "direct")
		clients := inUse() - base
		closeAll(direct)
		direct = nil
		require.Eventually(b, func() bool { return s.Gateway.Len() == 0 }, 10*time.Second, 10*time.Millisecond)
		base = inUse()
		through := open(s.Addr, "gw")
		total := inUse() - base
		perConn = (float64(total) - float64(clients)) / n
		runtime.KeepAlive(through)
		closeAll(through)
		require.Eventually(b, func() bool { return s.Gateway.Len() == 0 }, 10*time.Second, 10*time.Millisecond)
	}
	b.ReportMetric(perConn, "bytes/conn")
}
