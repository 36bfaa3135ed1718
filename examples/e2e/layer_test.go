package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
)

// devTLS trusts the development server root of dev and presents client's
// certificate.
func devTLS(t *testing.T, dev, client string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dev, devpki.ServerRootCA))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))
	pair, err := tls.LoadX509KeyPair(filepath.Join(dev, devpki.CertFile(client)), filepath.Join(dev, devpki.KeyFile(client)))
	require.NoError(t, err)
	return &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
}

// TestExampleShutdown: on SIGTERM, both example programs shut down through
// the connection layer: every connected MQTT 5 client receives DISCONNECT
// 0x8B (Server shutting down) before the connection closes. The example
// gateway used to close the connections without a word.
func TestExampleShutdown(t *testing.T) {
	const clients = 20
	for _, program := range []string{"broker", "gateway"} {
		t.Run(program, func(t *testing.T) {
			dev := filepath.Join(t.TempDir(), "dev")
			var p *proc.Process
			var port string
			if program == "broker" {
				addr := proc.FreeAddr(t)
				p = startReady(t, "broker listening", binary(t, "broker"), "-dev-dir", dev, "-addr", addr)
				_, port, _ = net.SplitHostPort(addr)
			} else {
				proc.RequireTool(t, "mosquitto", "mosquitto")
				s := startGateway(t, "-dev-dir", dev)
				p, port = s.gateway, s.port
			}
			cfg := devTLS(t, dev, "thermostat")
			got := make(chan byte, clients)
			for i := range clients {
				conn, err := tls.Dial("tcp", "localhost:"+port, cfg)
				require.NoError(t, err)
				t.Cleanup(func() { _ = conn.Close() })
				c := paho.NewClient(paho.ClientConfig{
					Conn:               packets.NewThreadSafeConn(conn),
					OnServerDisconnect: func(d *paho.Disconnect) { got <- d.ReasonCode },
					OnClientError:      func(error) {},
				})
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				ca, err := c.Connect(ctx, &paho.Connect{ClientID: fmt.Sprintf("shutdown-%d", i), CleanStart: true, KeepAlive: 60})
				cancel()
				require.NoError(t, err)
				require.Zero(t, ca.ReasonCode)
			}
			p.Signal(syscall.SIGTERM)
			deadline := time.After(20 * time.Second)
			for i := range clients {
				select {
				case code := <-got:
					require.Equal(t, byte(0x8B), code, "client %d", i)
				case <-deadline:
					t.Fatalf("%d of %d clients received DISCONNECT before the deadline:\n%s", i, clients, p.Out.String())
				}
			}
			exited, _ := p.Wait(20 * time.Second)
			require.True(t, exited, "the program exits after shutting down")
		})
	}
}
