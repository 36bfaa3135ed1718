package auth_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/internal/logsink"
)

// BenchmarkPassRecord is the pass record's own cost: a Session's CONNECT
// with the audit log off (slog's text handler into a file, at Warn),
// direct (the same at Info: one write system call per record) and
// buffered (through internal/logsink, as the example programs write),
// with and without a client certificate (whose serial and fingerprint the
// record carries). The difference is what the
// record adds to a broker's connect (adapters/mochi BenchmarkConnectAudit
// measures it against a whole connect over a socket).
func BenchmarkPassRecord(b *testing.B) {
	ca := authtest.NewRootCA(b, "root")
	leaf := ca.Leaf(b, "dev-1")
	for _, cert := range []bool{false, true} {
		for _, mode := range []string{"off", "direct", "buffered"} {
			name := map[bool]string{false: "cert=no", true: "cert=yes"}[cert] + "/audit=" + mode
			b.Run(name, func(b *testing.B) {
				f, err := os.Create(filepath.Join(b.TempDir(), "audit.log"))
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				var w io.Writer = f
				if mode == "buffered" {
					sink := logsink.New(f, logsink.DefaultInterval)
					defer sink.Close()
					w = sink
				}
				level := slog.LevelInfo
				if mode == "off" {
					level = slog.LevelWarn
				}
				m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{benchPassword}, Authorizer: auth.AllowAuthenticated,
					Logger: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))})
				if err != nil {
					b.Fatal(err)
				}
				req := benchRequest()
				if cert {
					req.TLS = &tls.ConnectionState{PeerCertificates: leaf.Chain}
				}
				ctx := context.Background()
				conn := auth.ConnFunc(func(auth.Packet) {})
				b.ReportAllocs()
				cpu0, n := cpuTime(), 0
				for b.Loop() {
					s := m.NewSession(conn)
					if r := s.Connect(ctx, req); r.Packet.Code != auth.Success {
						b.Fatal(r.Packet.Code)
					}
					s.Close()
					n++
				}
				if cpu := cpuTime() - cpu0; cpu > 0 {
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/op")
				}
			})
		}
	}
}
