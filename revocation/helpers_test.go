package revocation_test

import (
	"context"
	"crypto/x509"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/revocation"
	"github.com/mqttauth/mqttauth/revocation/revocationtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a CA, its responder and a leaf that names it.
type fixture struct {
	ca    *authtest.CA
	resp  *revocationtest.Responder
	leaf  *authtest.Leaf
	chain []*x509.Certificate // leaf, CA
	clock *clock
}

// newFixture makes a CA and a responder; leaves name the responder's OCSP
// URL (ocsp) and CRL URL (crl).
func newFixture(t testing.TB, ocsp, crl bool) *fixture {
	t.Helper()
	f := &fixture{clock: newClock()}
	f.ca = authtest.NewRootCA(t, "Revocation Test CA")
	f.resp = revocationtest.NewResponder(t, f.ca)
	f.resp.SetNow(f.clock.Now)
	f.leaf = f.newLeaf(t, "device", ocsp, crl)
	f.chain = []*x509.Certificate{f.leaf.Cert, f.ca.Cert}
	return f
}

func (f *fixture) newLeaf(t testing.TB, cn string, ocsp, crl bool) *authtest.Leaf {
	t.Helper()
	var opts []authtest.CertOption
	if ocsp {
		opts = append(opts, authtest.WithOCSPServer(f.resp.OCSPURL()))
	}
	if crl {
		opts = append(opts, authtest.WithCRLDistributionPoints(f.resp.CRLURL()))
	}
	return f.ca.Leaf(t, cn, opts...)
}

// checker returns a Checker with cfg completed by the fixture's clock, a
// quiet logger and OCSP unless cfg names a source; it is closed when the
// test ends.
func (f *fixture) checker(t testing.TB, cfg revocation.Config) *revocation.Checker {
	t.Helper()
	if !cfg.OCSP && !cfg.CRLDistributionPoints && cfg.Responder == "" {
		cfg.OCSP = true
	}
	cfg.Now = f.clock.Now
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	c, err := revocation.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// settle waits until the fetches in flight end.
func settle(t testing.TB, c *revocation.Checker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.Refresh(ctx)
	require.NoError(t, ctx.Err())
}

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
