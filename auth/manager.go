package auth

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"
)

// ExpiryAction is what a Session does when its principal's credential
// expires.
type ExpiryAction uint8

const (
	// DisconnectOnExpiry sends DISCONNECT 0xA0 (Maximum connect time) with a
	// reason string, then closes. It is the default: the client learns why.
	DisconnectOnExpiry ExpiryAction = iota
	// CloseOnExpiry closes the network connection without a DISCONNECT, as
	// the Azure IoT Operations broker does.
	CloseOnExpiry
)

// Default limits of a [Config].
const (
	DefaultMaxMethodLength = 256
	DefaultMaxDataLength   = 65535
	DefaultExchangeTimeout = 30 * time.Second
	// DefaultReauthInterval and DefaultReauthBurst bound how often one
	// connection may re-authenticate: DefaultReauthBurst re-authentications
	// in a row, then one per DefaultReauthInterval. An honest client
	// re-authenticates once per credential lifetime (minutes to hours); a
	// client that loops makes every method call its backend (a SCRAM
	// verification, a TokenReview, a custom-server request) each time.
	DefaultReauthInterval = time.Second
	DefaultReauthBurst    = 5
)

// Config configures a [Manager] and the sessions it creates.
type Config struct {
	// Authenticator judges credentials; usually a Chain. Required.
	Authenticator Authenticator
	// Authorizer decides Connect, Publish and Subscribe. Required: use
	// AllowAuthenticated to allow every authenticated client explicitly.
	// Connect is checked after every successful authentication and
	// re-authentication.
	Authorizer Authorizer
	// Clock is the time source; nil means SystemClock.
	Clock Clock
	// Logger receives one structured record per decision; nil means
	// slog.Default(). Secrets are never logged.
	Logger *slog.Logger
	// OnExpiry says how a session ends when its credential expires.
	OnExpiry ExpiryAction
	// AllowIdentityChange lets re-authentication verify a different user
	// name than the connection had. By default such a re-authentication
	// fails with DISCONNECT 0x87: a connection keeps one identity.
	AllowIdentityChange bool
	// ExchangeTimeout bounds how long a client may take to answer an AUTH
	// 0x18 challenge. Zero means DefaultExchangeTimeout; negative means no
	// limit.
	ExchangeTimeout time.Duration
	// MaxMethodLength and MaxDataLength bound the Authentication Method and
	// Authentication Data a client may send, in bytes. Zero means the
	// defaults; longer values fail with 0x8C and 0x95 (Packet too large).
	MaxMethodLength int
	MaxDataLength   int
	// ReauthInterval and ReauthBurst bound the re-authentications of one
	// connection with a token bucket: ReauthBurst in a row, then one per
	// ReauthInterval. A client beyond it is sent DISCONNECT 0x96 (Message
	// rate too high) and closed; the Observer sees a disconnect with
	// CauseRate. Zero means DefaultReauthInterval and DefaultReauthBurst;
	// a negative ReauthInterval means no bound.
	ReauthInterval time.Duration
	ReauthBurst    int
	// Watches are the reloadable sources whose changes re-check every
	// live session (a truststore, a policy file, a users file). The
	// Manager subscribes to them itself; Close unsubscribes.
	Watches []Watch
	// Observer receives the events of every session and of each method of
	// the Authenticator (a Chain is observed per method), for metrics; nil
	// means NopObserver.
	Observer Observer
	// Audit sets the level and sampling of the decision records written to
	// Logger.
	Audit AuditConfig
}

// AllowAuthenticated is an Authorizer that allows every action of every
// authenticated principal. Use it only where authorization is not wanted.
var AllowAuthenticated Authorizer = AuthorizerFunc(func(_ context.Context, p *Principal, _ Action) Decision {
	if p == nil {
		return Deny
	}
	return Allow("AllowAuthenticated")
})

// Manager creates the sessions of a broker and keeps the live ones, so that a
// change of trust or policy can re-check them all and disconnect exactly
// those that lost access.
type Manager struct {
	authn           Authenticator
	authz           Authorizer
	clock           Clock
	log             *slog.Logger
	onExpiry        ExpiryAction
	allowIDChange   bool
	exchangeTimeout time.Duration
	maxMethod       int
	maxData         int
	reauthInterval  time.Duration
	reauthBurst     int
	watch           *watcher
	obs             Observer
	quietAllows     bool // NopObserver and no allow sampled: Session.Authorize reports no allow
	audit           audit

	mu   sync.Mutex
	live map[*Session]struct{}
}

// NewManager validates cfg and returns a Manager.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Authenticator == nil {
		return nil, errors.New("auth: Config.Authenticator is required")
	}
	if cfg.Authorizer == nil {
		return nil, errors.New("auth: Config.Authorizer is required (auth.AllowAuthenticated allows every authenticated client)")
	}
	if cfg.OnExpiry > CloseOnExpiry {
		return nil, fmt.Errorf("auth: invalid Config.OnExpiry %d", cfg.OnExpiry)
	}
	if cfg.MaxMethodLength < 0 || cfg.MaxDataLength < 0 || cfg.ReauthBurst < 0 {
		return nil, errors.New("auth: negative Config.MaxMethodLength, MaxDataLength or ReauthBurst")
	}
	m := &Manager{
		authn:           ObserveMethods(cfg.Authenticator, cfg.Observer),
		authz:           cfg.Authorizer,
		clock:           cfg.Clock,
		log:             cfg.Logger,
		onExpiry:        cfg.OnExpiry,
		allowIDChange:   cfg.AllowIdentityChange,
		exchangeTimeout: cfg.ExchangeTimeout,
		maxMethod:       cfg.MaxMethodLength,
		maxData:         cfg.MaxDataLength,
		reauthInterval:  cmp.Or(cfg.ReauthInterval, DefaultReauthInterval),
		reauthBurst:     cmp.Or(cfg.ReauthBurst, DefaultReauthBurst),
		live:            make(map[*Session]struct{}),
		obs:             cfg.Observer,
		audit:           newAudit(cfg.Audit),
	}
	if m.obs == nil {
		m.obs = NopObserver{}
	}
	if _, nop := m.obs.(NopObserver); nop && cfg.Audit.SampleAllows == 0 {
		m.quietAllows = true // allows are neither counted nor logged
	}
	if m.clock == nil {
		m.clock = SystemClock
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.exchangeTimeout == 0 {
		m.exchangeTimeout = DefaultExchangeTimeout
	}
	if m.maxMethod == 0 {
		m.maxMethod = DefaultMaxMethodLength
	}
	if m.maxData == 0 {
		m.maxData = DefaultMaxDataLength
	}
	if err := validateWatches(cfg.Watches); err != nil {
		return nil, err
	}
	m.startWatches(cfg.Watches)
	return m, nil
}

// NewSession returns a Session for a new network connection. conn is how the
// Session ends the connection on its own (expiry, revocation, a stalled
// exchange). The adapter must call Session.Close when the connection ends.
func (m *Manager) NewSession(conn Conn) *Session {
	s := &Session{m: m, conn: conn, authz: m.authz}
	if sa, ok := m.authz.(SessionAuthorizer); ok {
		if a := sa.NewSessionAuthorizer(); a != nil {
			s.authz, s.own = a, true
		}
	}
	return s
}

// Authorizer returns the configured Authorizer.
func (m *Manager) Authorizer() Authorizer { return m.authz }

// ExchangeTimeout returns how long a client may take to answer an AUTH
// 0x18 challenge (Config.ExchangeTimeout with its default applied;
// negative means no limit). An adapter that reads the client's answer
// with a deadline derives it from this, so the configured timeout holds
// end to end.
func (m *Manager) ExchangeTimeout() time.Duration { return m.exchangeTimeout }

// Clock returns the Manager's time source (Config.Clock, or SystemClock).
func (m *Manager) Clock() Clock { return m.clock }

// Len returns the number of live (authenticated, not closed) sessions.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.live)
}

func (m *Manager) register(s *Session) {
	m.mu.Lock()
	m.live[s] = struct{}{}
	m.mu.Unlock()
	m.obs.Session(SessionEvent{Kind: SessionConnected})
}

func (m *Manager) unregister(s *Session) {
	m.mu.Lock()
	delete(m.live, s)
	m.mu.Unlock()
	m.obs.Session(SessionEvent{Kind: SessionClosed})
}

// CheckFunc re-checks a live session after a change of trust or policy. It
// returns nil when the session keeps access, or an error saying why it lost
// it; a [*DenyError] in the error chain chooses the DISCONNECT reason code,
// otherwise 0x87 (Not authorized) is sent. It must be safe for concurrent
// use and must not block for long.
type CheckFunc func(ctx context.Context, s *Session) error

// CheckConnect returns a CheckFunc that asks az whether each session's
// principal may still connect: for a policy change.
func CheckConnect(az Authorizer) CheckFunc {
	return func(ctx context.Context, s *Session) error {
		p := s.Principal()
		if d := az.Authorize(ctx, p, Action{Kind: Connect}); !d.Allowed {
			return errPolicyRecheck
		}
		return nil
	}
}

// errPolicyRecheck is CheckConnect's error: a revocation whose cause is
// the policy, for the Observer.
var errPolicyRecheck = fmt.Errorf("%w: Connect is no longer allowed", ErrRevoked)

// RecheckReport says what a [Manager.Recheck] did.
type RecheckReport struct {
	Checked      int // sessions checked
	Disconnected int // sessions that lost access and were disconnected
}

// Recheck runs check over every live session, in parallel, and disconnects
// each session for which it returns an error. A session whose principal
// changed while it was being checked (it re-authenticated against the new
// trust) is left alone. Recheck returns when every session has been checked
// and every disconnect has been handed to its adapter, or when ctx is done.
func (m *Manager) Recheck(ctx context.Context, check CheckFunc) RecheckReport {
	start := time.Now()
	m.mu.Lock()
	sessions := make([]*Session, 0, len(m.live))
	for s := range m.live {
		sessions = append(sessions, s)
	}
	m.mu.Unlock()

	var (
		mu     sync.Mutex
		report RecheckReport
		next   = make(chan *Session)
		wg     sync.WaitGroup
	)
	workers := min(runtime.GOMAXPROCS(0), len(sessions))
	for range workers {
		wg.Go(func() {
			for s := range next {
				checked, revoked := s.recheck(ctx, check)
				mu.Lock()
				if checked {
					report.Checked++
				}
				if revoked {
					report.Disconnected++
				}
				mu.Unlock()
			}
		})
	}
	for _, s := range sessions {
		if ctx.Err() != nil {
			break
		}
		next <- s
	}
	close(next)
	wg.Wait()
	m.obs.Component(ComponentEvent{Component: ComponentManager, Kind: Recheck,
		Count: report.Checked, Disconnected: report.Disconnected, Latency: time.Since(start)})
	if report.Disconnected > 0 {
		m.log.LogAttrs(ctx, slog.LevelInfo, "re-check disconnected sessions",
			slog.Int("checked", report.Checked), slog.Int("disconnected", report.Disconnected))
	}
	return report
}

// TLS returns the TLS state of the session's connection, or nil.
func (s *Session) TLS() *tls.ConnectionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base.TLS
}
