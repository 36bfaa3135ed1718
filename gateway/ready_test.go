package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/gateway"
)

// The gateway is not ready while its broker cannot be reached (clients
// would get CONNACK 0x88), and is ready once it can: plain TCP, TLS (the
// handshake must pass) and the PROXY protocol (a LOCAL header first).
func TestUpstreamCheck(t *testing.T) {
	ctx := context.Background()
	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		err = gateway.NewUpstreamCheck(gateway.Config{Upstream: addr}).Check(ctx)
		require.ErrorIs(t, err, gateway.ErrUpstream)
		require.ErrorContains(t, err, addr+" unreachable")
	})
	t.Run("reachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}
		}()
		require.NoError(t, gateway.NewUpstreamCheck(gateway.Config{Upstream: ln.Addr().String()}).Check(ctx))
	})
	t.Run("tls", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		defer srv.Close()
		addr := srv.Listener.Addr().String()
		err := gateway.NewUpstreamCheck(gateway.Config{Upstream: addr, UpstreamTLS: &tls.Config{MinVersion: tls.VersionTLS12}}).Check(ctx)
		require.ErrorIs(t, err, gateway.ErrUpstream, "a broker whose certificate is not trusted is not reachable")
		require.ErrorContains(t, err, "TLS handshake")
		pool := x509.NewCertPool()
		pool.AddCert(srv.Certificate())
		require.NoError(t, gateway.NewUpstreamCheck(gateway.Config{Upstream: addr,
			UpstreamTLS: &tls.Config{RootCAs: pool, ServerName: "example.com", MinVersion: tls.VersionTLS12}}).Check(ctx))
	})
	t.Run("proxy_protocol_local_header", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		got := make(chan []byte, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			b, _ := io.ReadAll(c)
			got <- b
		}()
		require.NoError(t, gateway.NewUpstreamCheck(gateway.Config{Upstream: ln.Addr().String(), ProxyProtocol: true}).Check(ctx))
		require.Equal(t, []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"), <-got, "a v2 LOCAL header, then nothing")
	})
}
