package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
)

func mqttString(b *bytes.Buffer, s string) {
	_ = binary.Write(b, binary.BigEndian, uint16(len(s)))
	b.WriteString(s)
}

// The example with the tutorial: a native NATS heater and an MQTT 3.1.1
// thermostat, both over mutual TLS with the development PKI, through the
// same port's chain and policy.
func TestTutorialOnNATS(t *testing.T) {
	dir := t.TempDir()
	mqttAddr, natsAddr := proc.FreeAddr(t), proc.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out proc.Buffer
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-dev-dir", dir, "-addr", mqttAddr, "-nats-addr", natsAddr}, &out,
			func(m, n string) { ready <- [2]string{m, n} })
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("the example stopped: %v\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the example did not start:\n%s", out.String())
	}
	require.Contains(t, out.String(), "mosquitto_sub")

	roots := x509.NewCertPool()
	pem, err := os.ReadFile(filepath.Join(dir, devpki.ServerRootCA))
	require.NoError(t, err)
	require.True(t, roots.AppendCertsFromPEM(pem))
	clientTLS := func(name string) *tls.Config {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, devpki.CertFile(name)), filepath.Join(dir, devpki.KeyFile(name)))
		require.NoError(t, err)
		return &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert}}
	}

	heater, err := natsgo.Connect("tls://"+natsAddr, natsgo.Secure(clientTLS("heater")), natsgo.NoReconnect())
	require.NoError(t, err, out.String())
	t.Cleanup(heater.Close)
	sub, err := heater.SubscribeSync("telemetry.temperature")
	require.NoError(t, err)
	require.NoError(t, heater.Flush())

	conn, err := tls.Dial("tcp", mqttAddr, clientTLS("thermostat"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	var body bytes.Buffer
	mqttString(&body, "MQTT")
	body.Write([]byte{4, 0x02, 0, 30}) // 3.1.1, clean session, keep alive 30 s
	mqttString(&body, "thermostat")
	_, err = conn.Write(append([]byte{0x10, byte(body.Len())}, body.Bytes()...))
	require.NoError(t, err)
	ack := make([]byte, 4)
	_, err = io.ReadFull(conn, ack)
	require.NoError(t, err)
	require.Equal(t, []byte{0x20, 2, 0, 0}, ack, "CONNACK accepted")

	body.Reset()
	mqttString(&body, "telemetry/temperature")
	body.WriteString("21.5")
	_, err = conn.Write(append([]byte{0x30, byte(body.Len())}, body.Bytes()...))
	require.NoError(t, err)
	msg, err := sub.NextMsg(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "21.5", string(msg.Data))
}
