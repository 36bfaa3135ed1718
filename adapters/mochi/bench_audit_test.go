package mochi_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/internal/logsink"
	"github.com/mqttauth/mqttauth/truststore"
)

// connectTCP dials addr, connects with a user name and password, reads the
// CONNACK and disconnects: one MQTT connect over plain TCP.
func connectTCP(addr, id string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.ClientID, c.KeepAlive, c.CleanStart = "MQTT", 5, id, 30, true
	c.Username, c.UsernameFlag, c.Password, c.PasswordFlag = "sensor", true, []byte("secret"), true
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
	_, _ = packets.NewControlPacket(packets.DISCONNECT).WriteTo(conn)
	return nil
}

// BenchmarkConnectAudit measures what the audit log's pass record costs a
// connect, side by side: audit=off has slog's text handler at Warn, so the
// record is skipped; audit=direct writes the record straight into a file
// (one write system call per record, as a handler on os.Stdout does);
// audit=buffered writes it through internal/logsink, as the example
// programs do. transport=mtls is a full
// mTLS handshake with x509auth and the tutorial's ABAC policy (the record
// then carries the certificate's serial and fingerprint); transport=tcp a
// plain TCP connect with a password, the cheapest connect there is. Run
// with -count so that the two sides interleave.
func BenchmarkConnectAudit(b *testing.B) {
	pki := authtest.NewTutorialPKI(b, time.Now())
	clientTLS := authtest.ClientTLSConfig(b, pki.ContosoRoot, "localhost", pki.Thermostat)
	policy, err := abac.Parse([]byte(authtest.TutorialPolicy))
	if err != nil {
		b.Fatal(err)
	}
	password := auth.Named("password", auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		if req.Username != "sensor" || string(req.Password) != "secret" {
			return auth.Result{}
		}
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: req.Username, Attributes: map[string]string{"group": "thermostat_group"}}))
	}))
	for _, transport := range []string{"mtls", "tcp"} {
		for _, mode := range []string{"off", "direct", "buffered"} {
			on := mode != "off"
			b.Run(fmt.Sprintf("transport=%s/audit=%s", transport, mode), func(b *testing.B) {
				f, err := os.Create(filepath.Join(b.TempDir(), "audit.log"))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = f.Close() })
				level := slog.LevelWarn
				if on {
					level = slog.LevelInfo
				}
				var out io.Writer = f
				if mode == "buffered" {
					sink := logsink.New(f, logsink.DefaultInterval)
					b.Cleanup(func() { _ = sink.Close() })
					out = sink
				}
				audit := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
				srv := mqtt.New(&mqtt.Options{Logger: quiet})
				var (
					ln      listeners.Listener
					connect func() error
				)
				cfg := auth.Config{Authorizer: policy, Logger: audit}
				if transport == "mtls" {
					set, err := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
					if err != nil {
						b.Fatal(err)
					}
					a := newX509(b, truststore.NewMemory(set))
					cfg.Authenticator = auth.Chain{a}
					m := newManager(b, cfg)
					h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
					if err != nil {
						b.Fatal(err)
					}
					ln = h.Listener("mtls", "127.0.0.1:0", a.ServerTLSConfig(authtest.ServerTLSConfig(b, pki.Server)))
				} else {
					cfg.Authenticator = auth.Chain{password}
					m := newManager(b, cfg)
					h, err := mochi.Attach(srv, mochi.Config{Manager: m, Logger: quiet})
					if err != nil {
						b.Fatal(err)
					}
					ln = h.Listener("tcp", "127.0.0.1:0", nil)
				}
				addr := serve(b, srv, ln)
				if transport == "mtls" {
					connect = func() error { return connectOnce(addr, clientTLS, "thermostat") }
				} else {
					connect = func() error { return connectTCP(addr, "sensor") }
				}
				b.ReportAllocs()
				b.ResetTimer()
				start, cpu0 := time.Now(), cpuTime()
				n := 0
				for b.Loop() {
					if err := connect(); err != nil {
						b.Fatal(err)
					}
					n++
				}
				b.ReportMetric(float64(n)/time.Since(start).Seconds(), "connects/s")
				if cpu := cpuTime() - cpu0; cpu > 0 {
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/op")
				}
				b.StopTimer()
				if f, ok := out.(interface{ Flush() error }); ok {
					_ = f.Flush()
				}
				if fi, err := f.Stat(); err == nil && on && fi.Size() == 0 {
					b.Fatal("the audit log has no record")
				}
			})
		}
	}
}
