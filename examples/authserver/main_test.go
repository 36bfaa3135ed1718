package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth/authtest"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestRun(t *testing.T) {
	dir := t.TempDir()
	ca := authtest.NewRootCA(t, "CA")
	leaf := ca.Leaf(t, "authserver", authtest.WithIPs(net.ParseIP("127.0.0.1")), authtest.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	cert := authtest.WriteFile(t, filepath.Join(dir, "s.crt"), leaf.ChainPEM())
	key := authtest.WriteFile(t, filepath.Join(dir, "s.key"), leaf.KeyPEM(t))
	users := authtest.WriteFile(t, filepath.Join(dir, "users.yaml"), []byte(`
tokenMethod: TOKEN
users:
  alice: {password: s3cret, attributes: {group: sensors}, lifetime: 1h}
tokens:
  tok-1: alice
`))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuf{}
	done := make(chan error)
	go func() { done <- run(ctx, []string{"-users", users, "-cert", cert, "-key", key, "-addr", addr}, out) }()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "listening") }, 10*time.Second, 10*time.Millisecond)

	tr := &http.Transport{TLSClientConfig: authtest.ClientTLSConfig(t, ca, "127.0.0.1", nil)}
	defer tr.CloseIdleConnections()
	body := `{"type":"connect","username":"alice","password":"` + base64.StdEncoding.EncodeToString([]byte("s3cret")) + `"}`
	resp, err := (&http.Client{Transport: tr}).Post("https://"+addr+"/?api-version=0.5.0", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, map[string]any{"group": "sensors"}, m["attributes"])
	require.Contains(t, m, "expiry")

	cancel()
	require.NoError(t, <-done)
}

func TestLoadUsersErrors(t *testing.T) {
	dir := t.TempDir()
	for name, doc := range map[string]string{
		"unknown field": "users: {a: {password: p, colour: red}}",
		"lifetime":      "users: {a: {password: p, lifetime: forever}}",
		"unknown user":  "users: {a: {password: p}}\ntokens: {t: b}",
	} {
		p := filepath.Join(dir, "u.yaml")
		require.NoError(t, os.WriteFile(p, []byte(doc), 0o600))
		_, err := loadUsers(p)
		require.ErrorContains(t, err, name)
	}
	require.Error(t, run(context.Background(), []string{"-users", "x"}, &bytes.Buffer{}), "TLS files are required")
}
