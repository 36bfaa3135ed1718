package revocation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/truststore"

	"github.com/mqttauth/mqttauth/internal/certid"
)

// Errors, for errors.Is. A refusal for revocation also matches
// truststore.ErrRevoked (x509auth.ErrRevoked); a refusal for want of an
// answer also matches auth.ErrUnavailable, which x509auth turns into an
// Unavailable result (CONNACK 0x88 when no other method decides).
var (
	// ErrRevoked means the issuer's OCSP responder or CRL says a
	// certificate of the chain is revoked.
	ErrRevoked = errors.New("revocation: certificate revoked")
	// ErrUnknown means the OCSP responder answered "unknown" for a
	// certificate and no other source said it is good (HardFail only).
	ErrUnknown = errors.New("revocation: responder does not know the certificate")
	// ErrUnavailable means no fresh answer exists and none could be
	// fetched in time (HardFail only).
	ErrUnavailable = errors.New("revocation: no fresh revocation status")
	// ErrResponse means a response or CRL was refused: malformed, badly
	// signed, for another certificate or too large. It is recorded as the
	// fetch error; Check reports ErrUnavailable.
	ErrResponse = errors.New("revocation: invalid response")
	// ErrClosed means the Checker was closed.
	ErrClosed = errors.New("revocation: closed")
)

// Mode says what Check does when no fresh answer exists for a certificate.
type Mode uint8

const (
	// HardFail refuses a certificate without a fresh answer: Check waits
	// up to Config.Wait for a fetch, then returns an error wrapping
	// ErrUnavailable (or ErrUnknown for an "unknown" answer). It is the
	// default: fail closed.
	HardFail Mode = iota
	// SoftFail (fail open) accepts a certificate without a fresh answer
	// and fetches one in the background; only a "revoked" answer refuses.
	SoftFail
)

// String names the mode as the configuration file does.
func (m Mode) String() string {
	switch m {
	case HardFail:
		return "hardFail"
	case SoftFail:
		return "softFail"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Defaults of a [Config], each with its worst case.
//
// How late a revocation is noticed: a certificate revoked just after its
// answer was fetched is seen at the next fetch, which starts when three
// quarters of the answer's span from thisUpdate to nextUpdate have passed
// (RefreshBefore's default), found at most DefaultRefreshInterval late and
// taking at most DefaultTimeout; its client is then disconnected. With a
// responder whose answers are valid one minute, that is 45 s + 10 s + 5 s
// = 60 s; with a CRL published daily, 18 hours: the issuer's cadence sets
// the bound. An answer without nextUpdate is given DefaultMaxAge, so it is
// fetched again 3 min 45 s after its thisUpdate: about 4 minutes.
const (
	// DefaultTimeout bounds one fetch: an unresponsive responder costs
	// at most 5 s per try.
	DefaultTimeout = 5 * time.Second
	// DefaultWait: a first CONNECT whose certificate has no answer yet
	// waits at most 2 s, then is refused with 0x88 (HardFail) or let in
	// (SoftFail); the fetch goes on for the next CONNECT.
	DefaultWait = 2 * time.Second
	// DefaultRetryInterval: after a failed fetch the next one waits 30 s,
	// so a responder back up is used again at most 30 s + 10 s later;
	// meanwhile the last good answer serves until it expires.
	DefaultRetryInterval = 30 * time.Second
	// DefaultRefreshInterval: the background refresher looks for due
	// answers every 10 s, so a refresh starts at most 10 s late.
	DefaultRefreshInterval = 10 * time.Second
	// DefaultMaxAge: an answer without nextUpdate (OCSP responders that
	// answer on demand) is fresh 5 minutes after its thisUpdate and
	// fetched again after 3 min 45 s: a revocation is noticed within
	// about 4 minutes. (It was an hour, that is 45 minutes.) An answer
	// whose thisUpdate is already 5 minutes old when it arrives is stale:
	// HardFail refuses the certificate; raise MaxAge for such a responder.
	DefaultMaxAge = 5 * time.Minute
	// DefaultMaxEntries: beyond 10000 certificates the least recently
	// used answers are evicted and no longer refreshed; such a
	// certificate's next check fetches again (waiting as a first CONNECT).
	DefaultMaxEntries = 10000
	// DefaultMaxCRLs: beyond 64 distribution points, the least recently
	// used CRL is evicted and downloaded again when needed.
	DefaultMaxCRLs = 64
	// DefaultMaxOCSPBytes and DefaultMaxCRLBytes: a larger response is a
	// failed fetch.
	DefaultMaxOCSPBytes = 64 << 10
	DefaultMaxCRLBytes  = 16 << 20
)

// Config configures a [Checker]. At least one of OCSP, Responder and
// CRLDistributionPoints must be set.
type Config struct {
	// Mode says what happens without a fresh answer; the zero value is
	// HardFail.
	Mode Mode
	// OCSP asks the responders named in each certificate's authority
	// information access extension (x509.Certificate.OCSPServer; the
	// first one).
	OCSP bool
	// Responder, when set, is the OCSP responder asked for every
	// certificate, whatever the certificate names; it implies OCSP.
	Responder string
	// CRLDistributionPoints fetches the CRLs named in each certificate's
	// CRL distribution points (HTTP URLs; others are ignored).
	CRLDistributionPoints bool
	// HTTPClient makes the requests; nil means a client with no timeout
	// of its own (each request is bounded by Timeout).
	HTTPClient *http.Client
	// Timeout bounds one fetch (connect, request, response); zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Wait bounds how long Check waits, in HardFail mode, for a fetch of
	// a certificate that has no fresh answer; zero means DefaultWait, and
	// it is capped at Timeout. The fetch goes on after Wait, so the next
	// connect finds its answer. Negative means do not wait.
	Wait time.Duration
	// RefreshBefore is how long before an answer's nextUpdate it is
	// fetched again; zero means a quarter of the span from thisUpdate to
	// nextUpdate, so that a revocation is noticed at most three quarters
	// of the span after the last fetch (see the defaults).
	RefreshBefore time.Duration
	// RetryInterval is how long after a failed fetch the next one may
	// start; zero means DefaultRetryInterval.
	RetryInterval time.Duration
	// RefreshInterval is how often the background refresher looks for
	// answers due for a refresh; zero means DefaultRefreshInterval.
	RefreshInterval time.Duration
	// MaxAge is how long an answer without nextUpdate stays fresh after
	// its thisUpdate; zero means DefaultMaxAge (5 minutes: revocation
	// noticed within about 4).
	MaxAge time.Duration
	// MaxEntries bounds the per-certificate OCSP cache; zero means
	// DefaultMaxEntries. The least recently used of a sample is evicted.
	MaxEntries int
	// MaxCRLs bounds the number of cached CRLs (one per distribution
	// point URL); zero means DefaultMaxCRLs.
	MaxCRLs int
	// MaxOCSPBytes and MaxCRLBytes bound the size of a response; zero
	// means DefaultMaxOCSPBytes and DefaultMaxCRLBytes.
	MaxOCSPBytes int64
	MaxCRLBytes  int64
	// Now is the time source for freshness; nil means time.Now.
	Now func() time.Time
	// Logger receives fetch failures and revocations; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Checker checks the revocation status of verified client certificate
// chains from cached OCSP answers and CRLs, and keeps them fresh in the
// background. Its Check method is an x509auth.RevocationChecker. It is safe
// for concurrent use; Close stops it.
type Checker struct {
	mode          Mode
	ocsp          bool
	responder     string
	crl           bool
	client        *http.Client
	timeout       time.Duration
	wait          time.Duration
	refreshBefore time.Duration
	retry         time.Duration
	interval      time.Duration
	maxAge        time.Duration
	maxOCSPBytes  int64
	maxCRLBytes   int64
	now           func() time.Time
	log           *slog.Logger

	certs *lru[*ocspEntry]
	crls  *lru[*crlEntry]
	sf    singleflight.Group

	ctx    context.Context // cancelled by Close; fetches run under it
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
	mu     sync.Mutex // guards wg.Add against Close and subs
	subs   map[*func()]struct{}

	stats     stats
	ownClient bool // made by New: Close closes its idle connections
}

// New validates cfg, returns a Checker and starts its background refresher.
func New(cfg Config) (*Checker, error) {
	if !cfg.OCSP && cfg.Responder == "" && !cfg.CRLDistributionPoints {
		return nil, errors.New("revocation: Config needs OCSP, Responder or CRLDistributionPoints")
	}
	if cfg.Mode > SoftFail {
		return nil, fmt.Errorf("revocation: invalid Config.Mode %d", cfg.Mode)
	}
	if cfg.Timeout < 0 || cfg.RefreshBefore < 0 || cfg.RetryInterval < 0 || cfg.RefreshInterval < 0 ||
		cfg.MaxAge < 0 || cfg.MaxEntries < 0 || cfg.MaxCRLs < 0 || cfg.MaxOCSPBytes < 0 || cfg.MaxCRLBytes < 0 {
		return nil, errors.New("revocation: negative Config value")
	}
	c := &Checker{
		mode:          cfg.Mode,
		ocsp:          cfg.OCSP || cfg.Responder != "",
		responder:     cfg.Responder,
		crl:           cfg.CRLDistributionPoints,
		client:        cfg.HTTPClient,
		timeout:       orDefault(cfg.Timeout, DefaultTimeout),
		wait:          orDefault(cfg.Wait, DefaultWait),
		refreshBefore: cfg.RefreshBefore,
		retry:         orDefault(cfg.RetryInterval, DefaultRetryInterval),
		interval:      orDefault(cfg.RefreshInterval, DefaultRefreshInterval),
		maxAge:        orDefault(cfg.MaxAge, DefaultMaxAge),
		maxOCSPBytes:  orDefault(cfg.MaxOCSPBytes, DefaultMaxOCSPBytes),
		maxCRLBytes:   orDefault(cfg.MaxCRLBytes, DefaultMaxCRLBytes),
		now:           cfg.Now,
		log:           cfg.Logger,
		certs:         newLRU[*ocspEntry](orDefault(cfg.MaxEntries, DefaultMaxEntries)),
		crls:          newLRU[*crlEntry](orDefault(cfg.MaxCRLs, DefaultMaxCRLs)),
		subs:          make(map[*func()]struct{}),
	}
	if cfg.Wait < 0 {
		c.wait = 0
	}
	c.wait = min(c.wait, c.timeout)
	if c.client == nil {
		c.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		c.ownClient = true
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Go(c.refresher)
	return c, nil
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Close stops the background refresher and the fetches in progress and
// waits for them. Check keeps answering from the cache after Close but
// fetches nothing.
func (c *Checker) Close() error {
	c.mu.Lock()
	c.closed.Store(true)
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	if c.ownClient {
		c.client.CloseIdleConnections()
	}
	return nil
}

// verdict is what the cached answers say about one certificate.
type verdict uint8

const (
	none    verdict = iota // no fresh answer
	unknown                // the responder does not know it
	good
	revoked
)

// Check judges a verified chain, leaf first and ending at its trusted CA,
// on the cached answers of every certificate but the CA (a certificate
// naming no responder and no distribution point is not checked). It never
// blocks on the network except, in HardFail mode, for up to Config.Wait
// when a certificate has no fresh answer. It returns nil, or an error
// wrapping ErrRevoked (and truststore.ErrRevoked), ErrUnknown, or
// ErrUnavailable (and auth.ErrUnavailable).
func (c *Checker) Check(ctx context.Context, chain []*x509.Certificate) error {
	for i := 0; i+1 < len(chain); i++ {
		if err := c.checkOne(ctx, chain[i], chain[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func (c *Checker) checkOne(ctx context.Context, cert, issuer *x509.Certificate) error {
	url := c.ocspURL(cert)
	dps := c.distributionPoints(cert)
	if url == "" && len(dps) == 0 {
		return nil
	}
	now := c.now()
	v, err := c.judge(cert, issuer, url, dps, now, true)
	switch {
	case v == revoked:
		return err
	case v == good:
		return nil
	case c.mode == SoftFail:
		c.stats.softPass.Add(1)
		return nil
	}
	// HardFail without a fresh good answer: wait a bounded time for the
	// fetches that judge started or joined (none when they failed within
	// RetryInterval; another source may still say good when OCSP said
	// unknown), then judge again.
	if done := c.pending(cert, issuer, url, dps); len(done) > 0 && c.wait > 0 {
		t := time.NewTimer(c.wait)
		defer t.Stop()
	wait:
		for _, d := range done {
			select {
			case <-d:
			case <-t.C:
				break wait
			case <-ctx.Done():
				break wait
			}
			if v, _ := c.judge(cert, issuer, url, dps, c.now(), false); v == good || v == revoked {
				break
			}
		}
	}
	v, err = c.judge(cert, issuer, url, dps, c.now(), false)
	switch v {
	case revoked:
		return err
	case good:
		return nil
	case unknown:
		return fmt.Errorf("%w: %q (serial %s)", ErrUnknown, cert.Subject.String(), certid.Serial(cert))
	}
	c.stats.unavailable.Add(1)
	return fmt.Errorf("%w: %w: %q (serial %s)%s", ErrUnavailable, auth.ErrUnavailable,
		cert.Subject.String(), certid.Serial(cert), c.lastErr(cert, issuer, url, dps))
}

func (c *Checker) ocspURL(cert *x509.Certificate) string {
	if !c.ocsp {
		return ""
	}
	if c.responder != "" {
		return c.responder
	}
	for _, u := range cert.OCSPServer {
		if isHTTP(u) {
			return u
		}
	}
	return ""
}

func (c *Checker) distributionPoints(cert *x509.Certificate) []string {
	if !c.crl {
		return nil
	}
	return cert.CRLDistributionPoints
}

func isHTTP(u string) bool {
	return len(u) > 7 && (u[:7] == "http://" || len(u) > 8 && u[:8] == "https://")
}

// judge combines the cached answers for cert: revoked by any source wins,
// then good from any fresh source, then unknown. With kick, it starts the
// fetches an absent, stale or nearly stale answer needs, in the
// background.
func (c *Checker) judge(cert, issuer *x509.Certificate, url string, dps []string, now time.Time, kick bool) (verdict, error) {
	best := none
	if url != "" {
		e := c.ocspEntryFor(cert, issuer, url, now, kick)
		if e != nil {
			v, err := e.verdict(now)
			if v == revoked {
				return revoked, err
			}
			best = max(best, v)
			if kick && e.due(now) {
				c.startOCSP(e)
			}
		}
	}
	for _, u := range dps {
		if !isHTTP(u) {
			continue
		}
		e := c.crlEntryFor(u, issuer, now, kick)
		if e == nil {
			continue
		}
		v, err := e.verdict(cert, issuer, now)
		if v == revoked {
			return revoked, err
		}
		best = max(best, v)
		if kick && e.due(now) {
			c.startCRL(e)
		}
	}
	return best, nil
}

// pending returns the completion channels of the fetches for cert in
// flight.
func (c *Checker) pending(cert, issuer *x509.Certificate, url string, dps []string) []<-chan struct{} {
	var done []<-chan struct{}
	if url != "" {
		if e := c.ocspEntryFor(cert, issuer, url, time.Time{}, false); e != nil {
			if d := e.waitable(); d != nil {
				done = append(done, d)
			}
		}
	}
	for _, u := range dps {
		if !isHTTP(u) {
			continue
		}
		if e := c.crlEntryFor(u, issuer, time.Time{}, false); e != nil {
			if d := e.waitable(); d != nil {
				done = append(done, d)
			}
		}
	}
	return done
}

// lastErr describes the last fetch failure for cert, for the error
// message.
func (c *Checker) lastErr(cert, issuer *x509.Certificate, url string, dps []string) string {
	if url != "" {
		if e := c.ocspEntryFor(cert, issuer, url, time.Time{}, false); e != nil {
			if st := e.state.Load(); st != nil && st.err != nil {
				return ": OCSP: " + st.err.Error()
			}
		}
	}
	for _, u := range dps {
		if e := c.crls.get(u); e != nil {
			if st := e.state.Load(); st != nil && st.err != nil {
				return ": CRL: " + st.err.Error()
			}
		}
	}
	return ""
}

// run starts fn in the background under the Checker's context and a
// Timeout, coalesced with any call of the same key in flight (an entry
// evicted and made again shares its predecessor's fetch), then calls
// after, and returns a channel closed when that is done. After Close it
// returns nil and starts nothing.
func (c *Checker) run(key string, fn func(ctx context.Context), after func()) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil
	}
	done := make(chan struct{})
	c.wg.Go(func() {
		defer close(done)
		defer after()
		c.sf.Do(key, func() (any, error) {
			ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
			defer cancel()
			fn(ctx)
			return nil, nil
		})
	})
	return done
}

// refresher refreshes, every RefreshInterval, the answers due for it, so
// that a connected client's certificate stays judged on a fresh answer and
// a revocation is seen while it is connected.
func (c *Checker) refresher() {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			c.Refresh(c.ctx)
		}
	}
}

// Refresh starts a fetch for every cached answer that is due for one
// (nextUpdate minus RefreshBefore has passed, or a failed fetch may be
// retried) and waits for them or for ctx. The background refresher calls
// it every RefreshInterval; tests call it directly.
func (c *Checker) Refresh(ctx context.Context) {
	now := c.now()
	var done []<-chan struct{}
	for _, e := range c.certs.all() {
		if e.due(now) {
			if d := c.startOCSP(e); d != nil {
				done = append(done, d)
			}
		}
	}
	for _, e := range c.crls.all() {
		if e.due(now) {
			if d := c.startCRL(e); d != nil {
				done = append(done, d)
			}
		}
	}
	for _, d := range done {
		select {
		case <-d:
		case <-ctx.Done():
			return
		}
	}
}

// OnRevoke calls fn each time a fetch finds a certificate newly revoked,
// from the fetch's goroutine: fn must not block. It returns a function
// that unregisters fn.
func (c *Checker) OnRevoke(fn func()) (cancel func()) {
	p := &fn
	c.mu.Lock()
	c.subs[p] = struct{}{}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		delete(c.subs, p)
		c.mu.Unlock()
	}
}

// Notify makes the Checker an auth.Notifier: fn is called each time a
// fetch finds a certificate newly revoked, as [Checker.OnRevoke]. Give it
// to a Manager as an auth.Watch with x509auth.Authenticator.Check as the
// check (see [Checker.Watch]), so the Manager re-checks its live sessions
// through its one change path and no Manager pointer is needed.
func (c *Checker) Notify(fn func()) (cancel func()) { return c.OnRevoke(fn) }

// Watch returns the auth.Watch that re-checks the live sessions of a
// Manager with check (an x509auth.Authenticator's Check, which consults
// this Checker) each time a fetch finds a certificate newly revoked. Give
// it to the Manager in auth.Config.Watches (or to auth.Manager.Watch).
// timeout bounds one re-check (zero
// means auth.DefaultRecheckTimeout).
func (c *Checker) Watch(check auth.CheckFunc, timeout time.Duration) auth.Watch {
	return auth.Watch{Name: "revocation", Source: c, Check: check, Timeout: timeout}
}

func (c *Checker) notifyRevoked() {
	c.stats.revocations.Add(1)
	c.mu.Lock()
	fns := make([]func(), 0, len(c.subs))
	for p := range c.subs {
		fns = append(fns, *p)
	}
	c.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// RecheckOnRevoke re-checks every live session of m with check (an
// x509auth.Authenticator's Check, which consults this Checker) each time a
// fetch finds a certificate newly revoked, so that a client whose
// certificate is revoked while it is connected is disconnected (DISCONNECT
// 0x87, or x509auth's Config.RevokedCode). Revocations found during a
// re-check are coalesced into one more. timeout bounds one re-check (zero
// means 30 seconds). It returns a function that stops listening, cancels a
// re-check in progress and waits for it.
//
// Deprecated: Use [Checker.Watch] in auth.Config.Watches (or
// auth.Manager.Watch): the same re-check through the Manager's one change
// path, with no Manager needed beforehand. See API.md.
func (c *Checker) RecheckOnRevoke(m *auth.Manager, check auth.CheckFunc, timeout time.Duration) (stop func()) {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	stop, err := m.Watch(c.Watch(check, timeout))
	if err != nil { // a nil check
		c.log.Error("revocation: no re-check on revocations", slog.String("err", err.Error()))
		return func() {}
	}
	return stop
}

// Stats counts what a Checker did, for metrics.
type Stats struct {
	OCSPFetches  uint64 // OCSP requests sent
	OCSPFailures uint64 // OCSP fetches that brought no valid answer
	CRLFetches   uint64 // CRL downloads
	CRLFailures  uint64 // CRL downloads that brought no valid CRL
	Revocations  uint64 // certificates found newly revoked by a fetch
	Unavailable  uint64 // HardFail checks refused for want of a fresh answer
	SoftPasses   uint64 // SoftFail checks passed without a fresh answer
	Evictions    uint64 // cache entries evicted to stay within bounds
	Entries      int    // OCSP answers cached now
	CRLs         int    // CRLs cached now
}

type stats struct {
	ocspFetches, ocspFailures, crlFetches, crlFailures atomic.Uint64
	revocations, unavailable, softPass                 atomic.Uint64
}

// Stats returns the counters.
func (c *Checker) Stats() Stats {
	return Stats{
		OCSPFetches:  c.stats.ocspFetches.Load(),
		OCSPFailures: c.stats.ocspFailures.Load(),
		CRLFetches:   c.stats.crlFetches.Load(),
		CRLFailures:  c.stats.crlFailures.Load(),
		Revocations:  c.stats.revocations.Load(),
		Unavailable:  c.stats.unavailable.Load(),
		SoftPasses:   c.stats.softPass.Load(),
		Evictions:    c.certs.evictions.Load() + c.crls.evictions.Load(),
		Entries:      c.certs.len(),
		CRLs:         c.crls.len(),
	}
}

// errRevoked is what a refusal for revocation wraps.
var errRevoked = fmt.Errorf("%w: %w", ErrRevoked, truststore.ErrRevoked)
