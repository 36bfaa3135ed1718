package e2e

// BenchmarkBrokerConnect lives here rather than in metrics/prometheus (whose
// other benchmarks it is reported with in BENCHMARKS.md) so that the
// exporter's module does not depend on a broker.

import (
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/metrics/prometheus/promtest"
)

// BenchmarkBrokerConnect is the connect rate of an in-process mochi broker
// with the adapter over plain TCP on loopback (no TLS: the cheapest connect,
// so the exporter's share is the largest it can be): dial, CONNECT with a
// user name and password through the two-method chain, CONNACK,
// DISCONNECT.
func BenchmarkBrokerConnect(b *testing.B) {
	for _, o := range promtest.Sides(b) {
		b.Run("observer="+o.Name, func(b *testing.B) {
			m := promtest.NewManager(b, o.Observer)
			quiet := slog.New(slog.DiscardHandler)
			srv := mqtt.New(&mqtt.Options{Logger: quiet})
			if _, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet}); err != nil {
				b.Fatal(err)
			}
			ln := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tcp", Address: "127.0.0.1:0"})
			if err := srv.AddListener(ln); err != nil {
				b.Fatal(err)
			}
			if err := srv.Serve(); err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			addr := ln.Address()
			b.ReportAllocs()
			start := time.Now()
			n := 0
			for b.Loop() {
				if err := connectOnce(addr); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "connects/s")
		})
	}
}

// connectOnce dials addr, sends a v5 CONNECT as alice, reads the CONNACK and
// disconnects.
func connectOnce(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.KeepAlive, c.CleanStart = "MQTT", 5, "bench", 30, true
	c.UsernameFlag, c.Username, c.PasswordFlag, c.Password = true, "alice", true, []byte("secret")
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
	_, err = packets.NewControlPacket(packets.DISCONNECT).WriteTo(conn)
	return err
}
