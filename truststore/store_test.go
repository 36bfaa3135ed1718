package truststore_test

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/truststore"
)

// syncBuffer is a log sink safe for the watcher goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// events records what a subscriber hears.
type events struct {
	mu  sync.Mutex
	evs []truststore.Event
}

func (e *events) add(ev truststore.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
}

func (e *events) last() (truststore.Event, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.evs) == 0 {
		return truststore.Event{}, 0
	}
	return e.evs[len(e.evs)-1], len(e.evs)
}

const wait, tick = 5 * time.Second, 10 * time.Millisecond

func TestStoreReload(t *testing.T) {
	a := authtest.NewRootCAAt(t, t0, "A Root")
	b := authtest.NewRootCAAt(t, t0, "B Root")
	dir := t.TempDir()
	path := authtest.WriteFile(t, filepath.Join(dir, "ca.pem"), authtest.CertsPEM(a.Cert))
	logs := &syncBuffer{}
	var errs []error
	var errMu sync.Mutex
	s, err := truststore.New(truststore.Config{
		CAPaths:  []string{path},
		Debounce: 20 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
		OnError: func(err error) {
			errMu.Lock()
			errs = append(errs, err)
			errMu.Unlock()
		},
	})
	require.NoError(t, err)
	defer s.Close()
	var evs events
	defer s.Subscribe(evs.add)()
	require.Equal(t, uint64(1), s.Current().Generation())

	// A good write: both CAs.
	authtest.WriteFile(t, path, authtest.CertsPEM(a.Cert, b.Cert))
	// The set is current before subscribers are told: wait for the event.
	require.Eventually(t, func() bool { ev, _ := evs.last(); return ev.Generation == 2 || ev.Err != nil }, wait, tick)
	ev, _ := evs.last()
	require.NoError(t, ev.Err)
	require.Equal(t, uint64(2), ev.Generation)
	require.Equal(t, 2, s.Current().Len())
	require.Same(t, s.Current(), ev.Set)
	select {
	case <-s.Updated():
	default:
		t.Fatal("Updated not signalled")
	}

	// Bad writes keep the last good set.
	for name, data := range map[string][]byte{
		"garbage":   []byte("garbage"),
		"empty":     nil,
		"truncated": authtest.CertsPEM(a.Cert, b.Cert)[:900],
	} {
		t.Run(name, func(t *testing.T) {
			_, n := evs.last()
			require.NoError(t, os.WriteFile(path, data, 0o600)) // in place, not atomic
			require.Eventually(t, func() bool { ev, m := evs.last(); return m > n && ev.Err != nil }, wait, tick)
			require.Equal(t, 2, s.Current().Len())
			require.Equal(t, uint64(2), s.Current().Generation())
			require.ErrorIs(t, s.Err(), truststore.ErrParse)
			require.Contains(t, logs.String(), "keeping the last good set")
		})
	}
	errMu.Lock()
	require.NotEmpty(t, errs)
	errMu.Unlock()

	// Removing a CA from the bundle is a change, not an error.
	authtest.WriteFile(t, path, authtest.CertsPEM(b.Cert))
	require.Eventually(t, func() bool { ev, _ := evs.last(); return ev.Err == nil && ev.Generation == 3 }, wait, tick)
	require.NoError(t, s.Err())
	require.False(t, s.Current().Contains(a.Cert))
	require.True(t, s.Current().Contains(b.Cert))

	// Rewriting the same content does not bump the generation.
	authtest.WriteFile(t, path, authtest.CertsPEM(b.Cert))
	time.Sleep(100 * time.Millisecond) // debounce: nothing should happen
	require.Equal(t, uint64(3), s.Current().Generation())
}

// TestStoreKubernetesSwap reproduces the kubelet's atomic writer: files are
// links through "..data", which is swapped by a rename.
func TestStoreKubernetesSwap(t *testing.T) {
	a := authtest.NewRootCAAt(t, t0, "A Root")
	b := authtest.NewRootCAAt(t, t0, "B Root")
	dir := t.TempDir()
	version := func(name string, certs []byte) {
		require.NoError(t, os.Mkdir(filepath.Join(dir, name), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name, "client_ca.pem"), certs, 0o644))
		require.NoError(t, os.Symlink(name, filepath.Join(dir, "..data_tmp")))
		require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	}
	version("..2026_03_01_1", authtest.CertsPEM(a.Cert))
	require.NoError(t, os.Symlink("..data/client_ca.pem", filepath.Join(dir, "client_ca.pem")))

	for _, paths := range [][]string{{dir}, {filepath.Join(dir, "client_ca.pem")}} {
		s, err := truststore.New(truststore.Config{CAPaths: paths, Debounce: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		require.True(t, s.Current().Contains(a.Cert) || s.Current().Contains(b.Cert))
		want := b
		if s.Current().Contains(b.Cert) {
			want = a
		}
		name := "..v" + want.Cert.Subject.CommonName[:1] + filepath.Base(t.TempDir())
		version(name, authtest.CertsPEM(want.Cert))
		require.Eventually(t, func() bool { return s.Current().Contains(want.Cert) && s.Current().Len() == 1 }, wait, tick, "paths %v", paths)
		require.NoError(t, s.Close())
	}
}

func TestStoreDirectory(t *testing.T) {
	a := authtest.NewRootCAAt(t, t0, "A Root")
	inter := a.Intermediate(t, "A Intermediate")
	leaf := inter.Leaf(t, "device")
	dir, crlDir := t.TempDir(), t.TempDir()
	authtest.WriteFile(t, filepath.Join(dir, "a.pem"), authtest.CertsPEM(a.Cert))
	authtest.WriteFile(t, filepath.Join(dir, "inter.pem"), authtest.CertsPEM(inter.Cert))
	logs := &syncBuffer{}
	s, err := truststore.New(truststore.Config{
		CAPaths: []string{dir}, CRLPaths: []string{crlDir},
		Debounce: 20 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, 2, s.Current().Len())
	opts := truststore.VerifyOptions{Now: t0}
	_, err = s.Current().Verify(leaf.Chain, opts)
	require.NoError(t, err)

	// A DER CRL arrives: the leaf is revoked.
	authtest.WriteFile(t, filepath.Join(crlDir, "inter.crl"), inter.CRL(t, 1, t0, t0.Add(time.Hour), leaf.Cert))
	require.Eventually(t, func() bool { return s.Current().IsRevoked(leaf.Cert) }, wait, tick)
	_, err = s.Current().Verify(leaf.Chain, opts)
	require.ErrorIs(t, err, truststore.ErrRevoked)

	// A CRL signed by the wrong key is refused; the last good set stays.
	gen := s.Current().Generation()
	impostor := authtest.NewRootCAAt(t, t0, "A Intermediate")
	authtest.WriteFile(t, filepath.Join(crlDir, "inter.crl"), authtest.CRLSignedBy(t, inter.Cert, impostor.Key, 2, t0, t0.Add(time.Hour)))
	require.Eventually(t, func() bool { return s.Err() != nil }, wait, tick)
	require.ErrorIs(t, s.Err(), truststore.ErrCRLSignature)
	require.Equal(t, gen, s.Current().Generation())
	require.True(t, s.Current().IsRevoked(leaf.Cert))
	require.NoError(t, os.Remove(filepath.Join(crlDir, "inter.crl")))
	require.Eventually(t, func() bool { return s.Err() == nil && !s.Current().IsRevoked(leaf.Cert) }, wait, tick)

	// Every CA removed: an empty set, loudly logged, everything refused.
	require.NoError(t, os.Remove(filepath.Join(dir, "a.pem")))
	require.NoError(t, os.Remove(filepath.Join(dir, "inter.pem")))
	require.Eventually(t, func() bool { return s.Current().Len() == 0 }, wait, tick)
	require.Contains(t, logs.String(), "level=ERROR msg=\"truststore: no trusted client CA: every client certificate will be refused\"")
	_, err = s.Current().Verify(leaf.Chain, opts)
	require.ErrorIs(t, err, truststore.ErrEmpty)
}

func TestStoreErrors(t *testing.T) {
	_, err := truststore.New(truststore.Config{})
	require.Error(t, err)
	_, err = truststore.New(truststore.Config{CAPaths: []string{filepath.Join(t.TempDir(), "missing.pem")}})
	require.ErrorContains(t, err, "no such file")
	bad := authtest.WriteFile(t, "bad.pem", []byte("garbage"))
	_, err = truststore.New(truststore.Config{CAPaths: []string{bad}})
	require.ErrorIs(t, err, truststore.ErrParse)
	require.ErrorContains(t, err, "bad.pem")
}

func TestMemoryStore(t *testing.T) {
	a := authtest.NewRootCAAt(t, t0, "A Root")
	s := truststore.NewMemory(nil)
	defer s.Close()
	require.Equal(t, 0, s.Current().Len())
	var evs events
	cancel := s.Subscribe(evs.add)
	set, err := truststore.NewSet([]*x509.Certificate{a.Cert}, nil)
	require.NoError(t, err)
	s.Replace(set)
	ev, n := evs.last()
	require.Equal(t, 1, n)
	require.Equal(t, uint64(2), ev.Generation)
	require.True(t, s.Current().Contains(a.Cert))
	require.NoError(t, s.Reload()) // nothing to read
	cancel()
	s.Replace(nil)
	_, n = evs.last()
	require.Equal(t, 1, n, "cancelled subscriber")
	require.Equal(t, 0, s.Current().Len())
}
