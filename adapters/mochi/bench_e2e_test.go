package mochi_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	mqtt "github.com/mochi-mqtt/server/v2"
	mochiauth "github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
)

// serve starts srv with ln and closes it when b ends.
func serve(b *testing.B, srv *mqtt.Server, ln listeners.Listener) string {
	b.Helper()
	if err := srv.AddListener(ln); err != nil {
		b.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	return ln.Address()
}

// connectOnce dials addr over TLS, sends a v5 CONNECT, reads the CONNACK and
// closes: one full handshake (no session resumption) and one MQTT connect.
func connectOnce(addr string, cfg *tls.Config, id string) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.KeepAlive, c.CleanStart = "MQTT", 5, id, 30, true
	if _, err := cp.WriteTo(conn); err != nil {
		return err
	}
	p, err := packets.ReadPacket(conn)
	if err != nil {
		return err
	}
	ca, ok := p.Content.(*packets.Connack)
	if !ok || ca.ReasonCode != 0 {
		return fmt.Errorf("no successful CONNACK: %v", p)
	}
	_, _ = packets.NewControlPacket(packets.DISCONNECT).WriteTo(conn)
	return nil
}

// BenchmarkConnectMTLS measures full mTLS handshakes plus MQTT connects per
// second: through the adapter (x509auth verification, the tutorial's ABAC
// Connect check, a Session per client), against plain mochi verifying client
// certificates with crypto/tls (RequireAndVerifyClientCert) and mochi's
// allow-all hook (mochi refuses every client without an auth hook), and
// against Debian's mosquitto with require_certificate and
// use_identity_as_username.
func BenchmarkConnectMTLS(b *testing.B) {
	pki := authtest.NewTutorialPKI(b, time.Now())
	clientTLS := authtest.ClientTLSConfig(b, pki.ContosoRoot, "localhost", pki.Thermostat)
	run := func(b *testing.B, addr string) {
		b.ReportAllocs()
		b.ResetTimer()
		start, cpu0 := time.Now(), cpuTime()
		n := 0
		for b.Loop() {
			if err := connectOnce(addr, clientTLS, "thermostat"); err != nil {
				b.Fatal(err)
			}
			n++
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "connects/s")
		// CPU time of client and server (both in this process) per connect:
		// steady when neighbours load the machine, unlike wall time.
		if cpu := cpuTime() - cpu0; cpu > 0 {
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/op")
		}
	}

	b.Run("broker=adapter", func(b *testing.B) {
		set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
		if err != nil {
			b.Fatal(err)
		}
		store := truststore.NewMemory(set)
		a := newX509(b, store)
		policy, err := abac.Parse([]byte(authtest.TutorialPolicy))
		if err != nil {
			b.Fatal(err)
		}
		m := newManager(b, auth.Config{Authenticator: auth.Chain{a}, Authorizer: policy})
		srv := mqtt.New(&mqtt.Options{Logger: quiet})
		h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		run(b, serve(b, srv, h.Listener("mtls", "127.0.0.1:0", a.ServerTLSConfig(authtest.ServerTLSConfig(b, pki.Server)))))
	})

	b.Run("broker=mochi", func(b *testing.B) {
		srv := mqtt.New(&mqtt.Options{Logger: quiet})
		if err := srv.AddHook(new(mochiauth.AllowHook), nil); err != nil {
			b.Fatal(err)
		}
		tc := authtest.ServerTLSConfig(b, pki.Server)
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		tc.ClientCAs = pki.FabrikamRoot.Pool()
		run(b, serve(b, srv, listeners.NewTCP(listeners.Config{ID: "mtls", Address: "127.0.0.1:0", TLSConfig: tc})))
	})

	b.Run("broker=mosquitto", func(b *testing.B) {
		bin, err := exec.LookPath("mosquitto")
		if err != nil {
			b.Skip("mosquitto is not installed (apt-get install -y mosquitto): skipping the reference point")
		}
		addr := startMosquitto(b, bin, pki)
		run(b, addr)
	})
}

// startMosquitto runs mosquitto with an mTLS listener on a free loopback
// port, with the tutorial's server certificate and the Fabrikam root as the
// client CA.
func startMosquitto(b *testing.B, bin string, pki *authtest.TutorialPKI) string {
	b.Helper()
	dir := b.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			b.Fatal(err)
		}
		return p
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	conf := fmt.Sprintf(`per_listener_settings false
listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
log_dest none
persistence false
user root
set_tcp_nodelay true
`, port, write("ca.pem", authtest.CertsPEM(pki.FabrikamRoot.Cert)), write("server.pem", pki.Server.ChainPEM()), write("server.key", pki.Server.KeyPEM(b)))
	cmd := exec.Command(bin, "-c", write("mosquitto.conf", []byte(conf)))
	var stderr bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			b.Fatalf("mosquitto did not listen on %s: %v\n%s", addr, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawClient is a minimal v5 client over TCP, for throughput runs where
// paho's per-message goroutines would dominate.
type rawClient struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

func dialRaw(b *testing.B, addr, id, user string) *rawClient {
	b.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.KeepAlive, c.CleanStart = "MQTT", 5, id, 0, true
	c.Username, c.UsernameFlag, c.Password, c.PasswordFlag = user, true, []byte("secret"), true
	if _, err := cp.WriteTo(conn); err != nil {
		b.Fatal(err)
	}
	rc := &rawClient{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), w: bufio.NewWriterSize(conn, 64<<10)}
	p, err := packets.ReadPacket(rc.r)
	if err != nil {
		b.Fatal(err)
	}
	if ca, ok := p.Content.(*packets.Connack); !ok || ca.ReasonCode != 0 {
		b.Fatalf("connect %s: %v", id, p)
	}
	return rc
}

// BenchmarkPublishQoS0 measures QoS 0 messages per second from one publisher
// through the broker to one subscriber: each message costs a publish check
// and a delivery check. authz=abac is the adapter with an ABAC policy (and
// its per-session decision cache), authz=allow the adapter with
// auth.AllowAuthenticated, authz=none plain mochi with its allow-all hook.
// The publisher keeps at most 256 messages in flight, below mochi's
// outbound queue, so none is dropped.
func BenchmarkPublishQoS0(b *testing.B) {
	policy, err := abac.Parse([]byte(`{"rules": [{"principals": {"attributes": [{"role": "sensor"}]}, "brokerResources": [
	  {"method": "Connect"},
	  {"method": "Publish", "topics": ["sensors/{principal.clientId}/#"]},
	  {"method": "Subscribe", "topics": ["sensors/+/temperature"]}]}]}`))
	if err != nil {
		b.Fatal(err)
	}
	authn := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: req.Username, Attributes: map[string]string{"role": "sensor"}}))
	})
	for _, tc := range []struct {
		name  string
		authz auth.Authorizer // nil: plain mochi
	}{{"abac", policy}, {"allow", auth.AllowAuthenticated}, {"none", nil}} {
		b.Run("authz="+tc.name, func(b *testing.B) {
			srv := mqtt.New(&mqtt.Options{Logger: quiet})
			if tc.authz == nil {
				if err := srv.AddHook(new(mochiauth.AllowHook), nil); err != nil {
					b.Fatal(err)
				}
			} else {
				m := newManager(b, auth.Config{Authenticator: authn, Authorizer: tc.authz})
				if _, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet}); err != nil {
					b.Fatal(err)
				}
			}
			addr := serve(b, srv, listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"}))
			sub := dialRaw(b, addr, "sub", "sub")
			sp := packets.NewControlPacket(packets.SUBSCRIBE)
			s := sp.Content.(*packets.Subscribe)
			s.PacketID = 1
			s.Subscriptions = []packets.SubOptions{{Topic: "sensors/+/temperature", QoS: 0}}
			if _, err := sp.WriteTo(sub.conn); err != nil {
				b.Fatal(err)
			}
			if p, err := packets.ReadPacket(sub.r); err != nil || p.Content.(*packets.Suback).Reasons[0] != 0 {
				b.Fatalf("subscribe: %v %v", p, err)
			}
			pub := dialRaw(b, addr, "pub-1", "pub-1")
			pp := packets.NewControlPacket(packets.PUBLISH)
			pk := pp.Content.(*packets.Publish)
			pk.Topic, pk.Payload = "sensors/pub-1/temperature", []byte("21.5")
			var msg []byte
			{
				var buf writerBuf
				if _, err := pp.WriteTo(&buf); err != nil {
					b.Fatal(err)
				}
				msg = buf
			}
			received := make(chan int, 1)
			go func() {
				n := 0
				for {
					p, err := packets.ReadPacket(sub.r)
					if err != nil {
						close(received)
						return
					}
					if p.Type == packets.PUBLISH {
						n++
						if n%256 == 0 {
							received <- n
						}
					}
				}
			}()
			const window = 256
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			sent := 0
			for sent < b.N {
				k := min(window, b.N-sent)
				if k < window { // keep whole windows: round b.N up
					k = window
				}
				for range k {
					_, _ = pub.w.Write(msg)
				}
				if err := pub.w.Flush(); err != nil {
					b.Fatal(err)
				}
				sent += k
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
		})
	}
}

type writerBuf []byte

func (w *writerBuf) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }

// BenchmarkOnACLCheck is the hook's own cost per mochi ACL check (a
// delivery): the session lookup, the principal load and a cache hit.
func BenchmarkOnACLCheck(b *testing.B) {
	policy, err := abac.Parse([]byte(`{"rules": [{"principals": {"usernames": ["alice"]}, "brokerResources": [
	  {"method": "Connect"}, {"method": "Subscribe", "topics": ["sensors/+/temperature"]}]}]}`))
	if err != nil {
		b.Fatal(err)
	}
	authn := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: req.Username}))
	})
	m := newManager(b, auth.Config{Authenticator: authn, Authorizer: policy})
	srv := mqtt.New(&mqtt.Options{Logger: quiet})
	h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	addr := serve(b, srv, listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"}))
	dialRaw(b, addr, "alice", "alice")
	cl, ok := srv.Clients.Get("alice")
	if !ok {
		b.Fatal("no client")
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !h.OnACLCheck(cl, "sensors/s1/temperature", false) {
				b.Error("denied")
				return
			}
		}
	})
}
