package x509auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
	"github.com/mqttauth/mqttauth/x509auth"
)

// BenchmarkVerify compares Authenticate (verification plus attribute
// mapping over the tutorial's three-certificate chain) with a plain
// x509.Certificate.Verify of the same chain.
func BenchmarkVerify(b *testing.B) {
	now := time.Now()
	pki := authtest.NewTutorialPKI(b, now)
	set, _ := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	ctx := context.Background()
	newA := func() *x509auth.Authenticator {
		a, err := x509auth.New(x509auth.Config{Trust: set, Mappings: tutorialMappings, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		return a
	}
	b.Run("x509.Verify", func(b *testing.B) {
		roots := pki.FabrikamRoot.Pool()
		b.ReportAllocs()
		for b.Loop() {
			inter := x509.NewCertPool()
			inter.AddCert(pki.FabrikamIntermediate.Cert)
			if _, err := pki.Heater.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Authenticate/uncached", func(b *testing.B) {
		a := newA()
		x509auth.DisableCache(a)
		req := request(pki.Heater.Chain...)
		b.ReportAllocs()
		for b.Loop() {
			if res := a.Authenticate(ctx, req); res.Outcome != auth.Pass {
				b.Fatal(res.Err)
			}
		}
	})
	b.Run("Authenticate/cached", func(b *testing.B) {
		// The steady state: the handshake's VerifyConnection verified the
		// chain; Authenticate re-checks it against the current set.
		a := newA()
		req := request(pki.Heater.Chain...)
		a.Authenticate(ctx, req)
		b.ReportAllocs()
		for b.Loop() {
			if res := a.Authenticate(ctx, req); res.Outcome != auth.Pass {
				b.Fatal(res.Err)
			}
		}
	})
	b.Run("Check", func(b *testing.B) {
		// One session's share of a re-check after a truststore change.
		a := newA()
		m, _ := auth.NewManager(auth.Config{Authenticator: a, Authorizer: auth.AllowAuthenticated, Logger: slog.New(slog.DiscardHandler)})
		s := m.NewSession(authtest.NewConn())
		s.Connect(ctx, request(pki.Heater.Chain...))
		defer s.Close()
		b.ReportAllocs()
		for b.Loop() {
			if err := a.Check(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkHandshake compares a full mutual-TLS handshake on loopback plus
// Authenticate, through ServerTLSConfig, with a plain crypto/tls server
// using RequireAndVerifyClientCert. Each iteration is one new connection
// (no resumption), TLS 1.3, ECDSA P-256, the tutorial's chains.
func BenchmarkHandshake(b *testing.B) {
	now := time.Now()
	pki := authtest.NewTutorialPKI(b, now)
	set, _ := truststore.NewSet([]*x509.Certificate{pki.FabrikamRoot.Cert}, nil)
	a, err := x509auth.New(x509auth.Config{Trust: set, Mappings: tutorialMappings, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	serverCert := []tls.Certificate{pki.Server.TLSCertificate()}
	plain := &tls.Config{Certificates: serverCert, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: pki.FabrikamRoot.Pool(), MinVersion: tls.VersionTLS12}
	ours := a.ServerTLSConfig(&tls.Config{Certificates: serverCert})
	client := authtest.ClientTLSConfig(b, pki.ContosoRoot, "localhost", pki.Thermostat)

	run := func(b *testing.B, cfg *tls.Config, after func(*tls.ConnectionState) bool) {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					tc.Close()
					continue
				}
				cs := tc.ConnectionState()
				ok := after(&cs)
				if ok {
					tc.Write([]byte{0})
				}
				tc.Close()
			}
		})
		defer func() { ln.Close(); wg.Wait() }()
		addr := ln.Addr().String()
		b.ReportAllocs()
		for b.Loop() {
			c, err := tls.Dial("tcp", addr, client)
			if err != nil {
				b.Fatal(err)
			}
			var buf [1]byte
			if _, err := io.ReadFull(c, buf[:]); err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	}
	b.Run("plain", func(b *testing.B) {
		run(b, plain, func(cs *tls.ConnectionState) bool { return len(cs.VerifiedChains) > 0 })
	})
	b.Run("x509auth", func(b *testing.B) {
		ctx := context.Background()
		run(b, ours, func(cs *tls.ConnectionState) bool {
			return a.Authenticate(ctx, &auth.Request{ClientID: "c", TLS: cs}).Outcome == auth.Pass
		})
	})
}
