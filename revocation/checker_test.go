package revocation_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/auth/authtest"
	"github.com/mqttauth/mqttauth/revocation"
	"github.com/mqttauth/mqttauth/revocation/revocationtest"
	"github.com/mqttauth/mqttauth/truststore"
)

// TestCheck: the first check of a certificate and the check after the
// fetch, for each answer the responder can give, in both modes and for
// both sources.
func TestCheck(t *testing.T) {
	type want struct{ first, after error }
	ok := want{}
	for _, tc := range []struct {
		name   string
		status revocationtest.Status
		fault  revocationtest.Fault
		hard   want // HardFail: first waits for the fetch
		soft   want // SoftFail: first passes, the fetch runs behind
	}{
		{"good", revocationtest.Good, revocationtest.NoFault, ok, ok},
		{"revoked", revocationtest.Revoked, revocationtest.NoFault,
			want{revocation.ErrRevoked, revocation.ErrRevoked}, want{nil, revocation.ErrRevoked}},
		{"unknown", revocationtest.Unknown, revocationtest.NoFault,
			want{revocation.ErrUnknown, revocation.ErrUnknown}, ok},
		{"stale", revocationtest.Good, revocationtest.Stale,
			want{revocation.ErrUnavailable, revocation.ErrUnavailable}, ok},
		{"stale_revoked_stays_revoked", revocationtest.Revoked, revocationtest.Stale,
			want{revocation.ErrRevoked, revocation.ErrRevoked}, want{nil, revocation.ErrRevoked}},
		{"wrong_key", revocationtest.Good, revocationtest.WrongKey,
			want{revocation.ErrUnavailable, revocation.ErrUnavailable}, ok},
		{"bad_signature", revocationtest.Good, revocationtest.BadSignature,
			want{revocation.ErrUnavailable, revocation.ErrUnavailable}, ok},
		{"wrong_key_revoked_ignored", revocationtest.Revoked, revocationtest.WrongKey,
			want{revocation.ErrUnavailable, revocation.ErrUnavailable}, ok},
		{"malformed", revocationtest.Good, revocationtest.Malformed,
			want{revocation.ErrUnavailable, revocation.ErrUnavailable}, ok},
		{"down", revocationtest.Good, revocationtest.Down,
			want{revocation.ErrUnavailable, revocation.ErrUnavailable}, ok},
	} {
		for _, src := range []string{"ocsp", "crl"} {
			if src == "crl" && tc.status == revocationtest.Unknown {
				continue // a CRL has no "unknown"
			}
			for _, mode := range []revocation.Mode{revocation.HardFail, revocation.SoftFail} {
				t.Run(fmt.Sprintf("%s/%s/%s", tc.name, src, mode), func(t *testing.T) {
					f := newFixture(t, src == "ocsp", src == "crl")
					f.resp.Set(f.leaf.Cert, tc.status)
					f.resp.SetFault(tc.fault)
					c := f.checker(t, revocation.Config{Mode: mode, OCSP: src == "ocsp", CRLDistributionPoints: src == "crl"})
					w := tc.hard
					if mode == revocation.SoftFail {
						w = tc.soft
					}
					ctx := context.Background()
					requireIs(t, w.first, c.Check(ctx, f.chain))
					settle(t, c)
					requireIs(t, w.after, c.Check(ctx, f.chain))
				})
			}
		}
	}
}

func requireIs(t *testing.T, want, err error) {
	t.Helper()
	if want == nil {
		require.NoError(t, err)
		return
	}
	require.ErrorIs(t, err, want)
	switch want {
	case revocation.ErrRevoked:
		require.ErrorIs(t, err, truststore.ErrRevoked, "x509auth.ErrRevoked matches")
	case revocation.ErrUnavailable:
		require.ErrorIs(t, err, auth.ErrUnavailable, "x509auth makes it Unavailable")
	}
}

// TestCheckSlowResponder: with HardFail, a first connect waits at most
// Config.Wait, is refused as unavailable, and the fetch goes on so that
// the next connect passes; a responder slower than Timeout is a failed
// fetch.
func TestCheckSlowResponder(t *testing.T) {
	ctx := context.Background()
	// The bounds on elapsed times sit far from the times compared (Wait
	// against a slow answer or a Timeout many times longer), so a loaded
	// machine does not decide the outcome.
	t.Run("slower_than_wait", func(t *testing.T) {
		f := newFixture(t, true, false)
		f.resp.SetDelay(3 * time.Second)
		c := f.checker(t, revocation.Config{Wait: 50 * time.Millisecond, Timeout: 30 * time.Second})
		start := time.Now()
		require.ErrorIs(t, c.Check(ctx, f.chain), revocation.ErrUnavailable)
		require.Less(t, time.Since(start), 2*time.Second, "bounded by Wait, not the 3 s answer")
		settle(t, c)
		require.NoError(t, c.Check(ctx, f.chain))
		require.Equal(t, 1, f.resp.OCSPRequests())
	})
	t.Run("within_wait", func(t *testing.T) {
		f := newFixture(t, true, false)
		f.resp.SetDelay(50 * time.Millisecond)
		c := f.checker(t, revocation.Config{Wait: time.Minute, Timeout: time.Minute})
		require.NoError(t, c.Check(ctx, f.chain))
	})
	t.Run("slower_than_timeout", func(t *testing.T) {
		f := newFixture(t, true, false)
		f.resp.SetDelay(time.Hour) // never in time; the responder gives up with the client
		c := f.checker(t, revocation.Config{Wait: time.Minute, Timeout: 2 * time.Second})
		start := time.Now()
		require.ErrorIs(t, c.Check(ctx, f.chain), revocation.ErrUnavailable)
		require.Less(t, time.Since(start), 30*time.Second, "Wait (a minute) is capped at Timeout (2 s)")
		settle(t, c)
		require.Equal(t, uint64(1), c.Stats().OCSPFailures)
		// Within RetryInterval, no new fetch and no wait.
		start = time.Now()
		require.ErrorIs(t, c.Check(ctx, f.chain), revocation.ErrUnavailable)
		require.Less(t, time.Since(start), time.Second, "no wait of 2 s")
		require.Equal(t, 1, f.resp.OCSPRequests())
	})
	t.Run("soft_fail_does_not_wait", func(t *testing.T) {
		f := newFixture(t, true, false)
		f.resp.SetDelay(time.Hour)
		c := f.checker(t, revocation.Config{Mode: revocation.SoftFail, Wait: time.Minute, Timeout: time.Minute})
		start := time.Now()
		require.NoError(t, c.Check(ctx, f.chain))
		require.Less(t, time.Since(start), 30*time.Second, "no wait of a minute")
	})
	t.Run("caller_context", func(t *testing.T) {
		f := newFixture(t, true, false)
		f.resp.SetDelay(time.Hour)
		c := f.checker(t, revocation.Config{Wait: time.Minute, Timeout: time.Minute})
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		require.ErrorIs(t, c.Check(cctx, f.chain), revocation.ErrUnavailable)
		require.Less(t, time.Since(start), 30*time.Second, "the caller's 50 ms, not Wait's minute")
	})
}

// TestDelegatedResponder: RFC 6960 4.2.2.2: a responder other than the
// issuer must be issued by it and name id-kp-OCSPSigning.
func TestDelegatedResponder(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		make func(f *fixture) *authtest.Leaf
		want error
	}{
		{"ocsp_signing", func(f *fixture) *authtest.Leaf {
			return f.ca.Leaf(t, "responder", authtest.WithExtKeyUsage(x509.ExtKeyUsageOCSPSigning))
		}, nil},
		{"no_ocsp_signing_eku", func(f *fixture) *authtest.Leaf {
			return f.ca.Leaf(t, "responder", authtest.WithExtKeyUsage(x509.ExtKeyUsageClientAuth))
		}, revocation.ErrUnavailable},
		{"issued_by_another_ca", func(f *fixture) *authtest.Leaf {
			other := authtest.NewRootCA(t, "Other CA")
			return other.Leaf(t, "responder", authtest.WithExtKeyUsage(x509.ExtKeyUsageOCSPSigning))
		}, revocation.ErrUnavailable},
		{"expired", func(f *fixture) *authtest.Leaf {
			return f.ca.Leaf(t, "responder", authtest.WithExtKeyUsage(x509.ExtKeyUsageOCSPSigning),
				authtest.WithValidity(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)))
		}, revocation.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, true, false)
			f.resp.Delegate(tc.make(f))
			c := f.checker(t, revocation.Config{})
			requireIs(t, tc.want, c.Check(ctx, f.chain))
		})
	}
}

// TestCaching: an answer is used until its nextUpdate without asking
// again, refreshed RefreshBefore ahead of it, and no longer trusted once
// it has passed without a refresh.
func TestCaching(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, true, true)
	f.resp.SetValidity(time.Hour)
	c := f.checker(t, revocation.Config{OCSP: true, CRLDistributionPoints: true, RefreshBefore: 10 * time.Minute})
	require.NoError(t, c.Check(ctx, f.chain))
	settle(t, c)
	for range 100 {
		require.NoError(t, c.Check(ctx, f.chain))
	}
	require.Equal(t, 1, f.resp.OCSPRequests(), "answered from the cache")
	require.Equal(t, 1, f.resp.CRLRequests())

	f.clock.Add(45 * time.Minute) // 15 minutes before nextUpdate: not due yet
	c.Refresh(ctx)
	require.Equal(t, 1, f.resp.OCSPRequests())
	f.clock.Add(6 * time.Minute) // 9 minutes before: due
	c.Refresh(ctx)
	require.Equal(t, 2, f.resp.OCSPRequests(), "refreshed ahead of nextUpdate")
	require.Equal(t, 2, f.resp.CRLRequests())

	// The responder goes down; the answers run out.
	f.resp.SetFault(revocationtest.Down)
	f.clock.Add(55 * time.Minute)
	require.NoError(t, c.Check(ctx, f.chain), "still fresh")
	f.clock.Add(10 * time.Minute)
	require.ErrorIs(t, c.Check(ctx, f.chain), revocation.ErrUnavailable, "nextUpdate passed")
}

// TestCRLAndOCSPCombined: a revocation from either source refuses; a
// fresh good answer from one source is enough.
func TestCRLAndOCSPCombined(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, true, true)
	f.resp.Set(f.leaf.Cert, revocationtest.Unknown) // OCSP unknown, CRL does not list it
	c := f.checker(t, revocation.Config{OCSP: true, CRLDistributionPoints: true})
	require.NoError(t, c.Check(ctx, f.chain), "unknown to OCSP, good by the CRL")

	// OCSP's "unknown" is cached, the CRL's server was down and is back:
	// Check waits for the CRL rather than refusing on "unknown".
	crlServer := revocationtest.NewResponder(t, f.ca)
	crlServer.SetNow(f.clock.Now)
	late := f.ca.Leaf(t, "late", authtest.WithOCSPServer(f.resp.OCSPURL()), authtest.WithCRLDistributionPoints(crlServer.CRLURL()))
	lateChain := []*x509.Certificate{late.Cert, f.ca.Cert}
	f.resp.Set(late.Cert, revocationtest.Unknown)
	crlServer.SetFault(revocationtest.Down)
	c3 := f.checker(t, revocation.Config{OCSP: true, CRLDistributionPoints: true, RetryInterval: time.Second})
	require.ErrorIs(t, c3.Check(ctx, lateChain), revocation.ErrUnknown, "OCSP unknown, CRL down")
	crlServer.SetFault(revocationtest.NoFault)
	f.clock.Add(2 * time.Second)
	require.NoError(t, c3.Check(ctx, lateChain), "OCSP unknown, CRL good")

	// OCSP good, CRL revokes.
	other := f.newLeaf(t, "other", true, true)
	f.resp.Set(other.Cert, revocationtest.Revoked)
	c2 := f.checker(t, revocation.Config{OCSP: true, CRLDistributionPoints: true})
	require.NoError(t, c2.Check(ctx, f.chain), "unknown to OCSP, good by the CRL")
	require.ErrorIs(t, c2.Check(ctx, []*x509.Certificate{other.Cert, f.ca.Cert}), revocation.ErrRevoked)
}

// TestConfiguredResponder: Config.Responder is asked for certificates that
// name no responder.
func TestConfiguredResponder(t *testing.T) {
	f := newFixture(t, false, false)
	f.resp.Set(f.leaf.Cert, revocationtest.Revoked)
	c := f.checker(t, revocation.Config{Responder: f.resp.OCSPURL()})
	require.ErrorIs(t, c.Check(context.Background(), f.chain), revocation.ErrRevoked)

	// Without it, a certificate naming no source is not checked.
	c2 := f.checker(t, revocation.Config{OCSP: true})
	require.NoError(t, c2.Check(context.Background(), f.chain))
}

// TestIntermediate: every certificate below the trusted CA is checked.
func TestIntermediate(t *testing.T) {
	f := newFixture(t, true, false)
	inter := f.ca.Intermediate(t, "Intermediate", authtest.WithOCSPServer(f.resp.OCSPURL()))
	leaf := inter.Leaf(t, "device")
	f.resp.Set(inter.Cert, revocationtest.Revoked)
	c := f.checker(t, revocation.Config{})
	require.ErrorIs(t, c.Check(context.Background(), []*x509.Certificate{leaf.Cert, inter.Cert, f.ca.Cert}), revocation.ErrRevoked)
}

// TestCoalesced: concurrent first connects of one certificate make one
// request.
func TestCoalesced(t *testing.T) {
	f := newFixture(t, true, true)
	f.resp.SetDelay(200 * time.Millisecond)
	c := f.checker(t, revocation.Config{OCSP: true, CRLDistributionPoints: true})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() { errs <- c.Check(context.Background(), f.chain) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, 1, f.resp.OCSPRequests())
	require.Equal(t, 1, f.resp.CRLRequests())
}

// TestBounded: the cache stays within MaxEntries however many
// certificates are checked, and the heap and goroutines come back down.
func TestBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("makes thousands of certificates")
	}
	const max, n = 100, 2000
	f := newFixture(t, true, false)
	// No pooled connections, so that every goroutine a fetch starts ends.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	c := f.checker(t, revocation.Config{Mode: revocation.SoftFail, MaxEntries: max, HTTPClient: client})
	leaves := make([][]*x509.Certificate, n)
	for i := range leaves {
		leaves[i] = []*x509.Certificate{f.newLeaf(t, fmt.Sprint("d", i), true, false).Cert, f.ca.Cert}
	}
	goroutines := runtime.NumGoroutine()
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	ctx := context.Background()
	for i := range max {
		require.NoError(t, c.Check(ctx, leaves[i]))
	}
	settle(t, c)
	before := heap()
	for _, ch := range leaves {
		require.NoError(t, c.Check(ctx, ch))
		if c.Stats().Entries >= max { // keep the fetches in flight few
			settle(t, c)
		}
	}
	settle(t, c)
	st := c.Stats()
	require.LessOrEqual(t, st.Entries, max)
	require.GreaterOrEqual(t, st.Evictions, uint64(n-max))
	after := heap()
	require.Less(t, int64(after)-int64(before), int64(2<<20), "heap grew by %d bytes", int64(after)-int64(before))
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.LessOrEqual(t, runtime.NumGoroutine(), goroutines, "goroutines\n%s", stacks())
}

// TestClose: Close stops the refresher and fetches in flight; Check still
// answers, from the cache, without fetching.
func TestClose(t *testing.T) {
	f := newFixture(t, true, false)
	f.resp.SetDelay(time.Hour)
	c := f.checker(t, revocation.Config{Wait: -1, Timeout: time.Hour})
	require.ErrorIs(t, c.Check(context.Background(), f.chain), revocation.ErrUnavailable)
	start := time.Now()
	require.NoError(t, c.Close())
	require.Less(t, time.Since(start), 30*time.Second, "the fetch in flight is cancelled, not waited for (an hour)")
	require.ErrorIs(t, c.Check(context.Background(), f.chain), revocation.ErrUnavailable)
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []revocation.Config{
		{},
		{OCSP: true, Mode: 7},
		{OCSP: true, Timeout: -1},
		{OCSP: true, MaxEntries: -1},
	} {
		_, err := revocation.New(cfg)
		require.Error(t, err, "%+v", cfg)
	}
}
