package mochi_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
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

// rssBytes returns the process's resident set size.
func rssBytes(b *testing.B) uint64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skipf("no /proc/self/statm: %v", err)
	}
	f := strings.Fields(string(data))
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return pages * uint64(os.Getpagesize())
}

func heapBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// connectIdle opens an mTLS connection, sends CONNECT (keep alive 0, so
// nothing more is sent) and reads the CONNACK; the connection stays open.
func connectIdle(addr string, cfg *tls.Config, id string) (net.Conn, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.CleanStart = "MQTT", 5, id, true
	if _, err := cp.WriteTo(conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	p, err := packets.ReadPacket(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if ca, ok := p.Content.(*packets.Connack); !ok || ca.ReasonCode != 0 {
		_ = conn.Close()
		return nil, fmt.Errorf("no successful CONNACK: %v", p)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// BenchmarkIdleMTLS measures the memory of N idle connected mTLS clients:
// the Go heap after GC and the process RSS, before and after connecting
// them, per client. Client and server run in this process, so both halves
// of each connection are counted; plain mochi (crypto/tls verification and
// mochi's allow-all hook) is the same measurement without the adapter, and
// the difference is the adapter's cost per client. Run each broker in its
// own process (-test.bench 'IdleMTLS/broker=adapter') for a meaningful RSS.
func BenchmarkIdleMTLS(b *testing.B) {
	n := 1000
	if s := os.Getenv("IDLE_CLIENTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	pki := authtest.NewTutorialPKI(b, time.Now())
	clientTLS := authtest.ClientTLSConfig(b, pki.ContosoRoot, "localhost", pki.Thermostat)
	clientTLS.ClientSessionCache = nil
	run := func(b *testing.B, addr string, held func() int) {
		for b.Loop() {
			heap0, rss0 := heapBytes(), rssBytes(b)
			conns := make([]net.Conn, 0, n)
			for i := range n {
				c, err := connectIdle(addr, clientTLS, "thermostat-"+strconv.Itoa(i))
				if err != nil {
					b.Fatal(err)
				}
				conns = append(conns, c)
			}
			heap1, rss1 := heapBytes(), rssBytes(b)
			if held != nil && held() != n {
				b.Fatalf("the hook holds %d clients, want %d", held(), n)
			}
			b.ReportMetric(float64(int64(heap1)-int64(heap0))/float64(n), "heap-B/client")
			b.ReportMetric(float64(int64(rss1)-int64(rss0))/float64(n), "rss-B/client")
			b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
			for _, c := range conns {
				_ = c.Close()
			}
		}
	}

	b.Run("broker=adapter", func(b *testing.B) {
		set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
		if err != nil {
			b.Fatal(err)
		}
		a := newX509(b, truststore.NewMemory(set))
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
		run(b, serve(b, srv, h.Listener("mtls", "127.0.0.1:0", a.ServerTLSConfig(authtest.ServerTLSConfig(b, pki.Server)))), h.Len)
	})

	b.Run("broker=mochi", func(b *testing.B) {
		srv := mqtt.New(&mqtt.Options{Logger: quiet})
		if err := srv.AddHook(new(mochiauth.AllowHook), nil); err != nil {
			b.Fatal(err)
		}
		tc := authtest.ServerTLSConfig(b, pki.Server)
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		tc.ClientCAs = pki.FabrikamRoot.Pool()
		run(b, serve(b, srv, listeners.NewTCP(listeners.Config{ID: "mtls", Address: "127.0.0.1:0", TLSConfig: tc})), nil)
	})
}
