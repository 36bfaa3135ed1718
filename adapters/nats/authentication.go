package nats

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
)

// DefaultTimeout bounds one authentication (the authenticator's backend
// calls included) when Config.Timeout is zero. nats-server waits for it on
// the client's own goroutine.
const DefaultTimeout = 10 * time.Second

// DefaultSweepInterval is how often an [Authentication] looks for
// connections that nats-server has closed, when Config.SweepInterval is
// zero.
const DefaultSweepInterval = 5 * time.Second

// Sentinel errors, for errors.Is on what the Authentication logs.
var (
	// ErrNotBound means a client arrived before [Authentication.Bind].
	ErrNotBound = errors.New("nats: Authentication used before Bind")
)

// Config configures an [Authentication].
type Config struct {
	// Manager creates the session of every client; its authenticator
	// judges the credentials and its Authorizer, which must be Policy,
	// decides Connect. Required.
	Manager *auth.Manager
	// Policy gives the Publish and Subscribe topic filters of each
	// principal: the *abac.Policy or *abac.Watcher that is the Manager's
	// Authorizer. Required. Its topic filters must pass [CheckPolicy].
	Policy Grants
	// Account is the account authenticated clients join; nil means
	// nats-server's global account.
	Account *server.Account
	// Listeners names the listeners; see [Listeners].
	Listeners Listeners
	// Timeout bounds one authentication; zero means DefaultTimeout.
	Timeout time.Duration
	// SweepInterval is how often sessions whose connection nats-server
	// has closed are ended; zero means DefaultSweepInterval.
	SweepInterval time.Duration
	// Logger receives the records of refusals the Session does not log
	// (permissions, an unsupported server); nil means slog.Default().
	// Secrets are never logged.
	Logger *slog.Logger
}

// Authentication is a nats-server [server.Authentication] (for
// server.Options.CustomClientAuthentication) that authenticates every
// client connection, MQTT and native NATS, through an [auth.Session] and
// gives it the NATS permissions its policy grants. Create it with [New],
// then [Authentication.Bind] it to the server.
type Authentication struct {
	m       *auth.Manager
	policy  Grants
	account *server.Account
	names   Listeners
	timeout time.Duration
	sweep   time.Duration
	log     *slog.Logger

	srv    atomic.Pointer[server.Server]
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	conns    sync.Map // nats client id (uint64) -> *conn
	sessions sync.Map // *auth.Session -> *conn
	n        atomic.Int64
}

var _ server.Authentication = (*Authentication)(nil)

// New validates cfg, checks that every topic filter of the policy in force
// can be expressed as NATS permissions, and returns an Authentication.
func New(cfg Config) (*Authentication, error) {
	if cfg.Manager == nil || cfg.Policy == nil {
		return nil, errors.New("nats: Config.Manager and Config.Policy are required")
	}
	if any(cfg.Manager.Authorizer()) != any(cfg.Policy) {
		return nil, errors.New("nats: Config.Policy must be the Manager's Authorizer, so that Connect and the permissions come from one policy")
	}
	if cfg.Timeout < 0 || cfg.SweepInterval < 0 {
		return nil, errors.New("nats: negative Config.Timeout or SweepInterval")
	}
	if src, ok := cfg.Policy.(abac.Source); ok {
		if err := CheckPolicy(src.Current().Spec()); err != nil {
			return nil, err
		}
	}
	a := &Authentication{
		m:       cfg.Manager,
		policy:  cfg.Policy,
		account: cfg.Account,
		names:   cfg.Listeners,
		timeout: cmp.Or(cfg.Timeout, DefaultTimeout),
		sweep:   cmp.Or(cfg.SweepInterval, DefaultSweepInterval),
		log:     cfg.Logger,
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

// NewServer sets a as opts.CustomClientAuthentication, creates the server
// and binds a to it. The caller starts the server.
func NewServer(opts *server.Options, a *Authentication) (*server.Server, error) {
	opts.CustomClientAuthentication = a
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	if err := a.Bind(srv); err != nil {
		return nil, err
	}
	return srv, nil
}

// Bind tells a which server it authenticates for, so that it can end
// connections (expiry, a re-check) and notice closed ones. Call it once,
// after server.NewServer and before the server starts.
func (a *Authentication) Bind(srv *server.Server) error {
	if srv == nil {
		return errors.New("nats: nil server")
	}
	if !a.srv.CompareAndSwap(nil, srv) {
		return errors.New("nats: Authentication already bound")
	}
	a.wg.Go(a.sweepLoop)
	return nil
}

// Close stops the sweep and ends every session (it sends nothing and
// closes no connection: shut the server down for that). It is safe to
// call more than once.
func (a *Authentication) Close() error {
	a.once.Do(func() {
		a.cancel()
		a.wg.Wait()
		a.conns.Range(func(k, v any) bool {
			a.forget(k.(uint64), v.(*conn))
			return true
		})
	})
	return nil
}

// Len returns the number of connections a holds a session for.
func (a *Authentication) Len() int { return int(a.n.Load()) }

// Session returns the session of the nats-server connection id (the CID
// of server.Connz), or nil.
func (a *Authentication) Session(id uint64) *auth.Session {
	if v, ok := a.conns.Load(id); ok {
		return v.(*conn).s
	}
	return nil
}

// Check implements server.Authentication: it authenticates the client
// through a new auth.Session and, when it passes and may Connect,
// registers it with the permissions its policy grants, the principal's
// user name, the configured account and the credential's expiry as
// ConnectionDeadline. It refuses (returns false) otherwise.
func (a *Authentication) Check(c server.ClientAuthentication) bool {
	srv := a.srv.Load()
	if srv == nil {
		a.refused(c, "", ErrNotBound)
		return false
	}
	if c.Kind() != server.CLIENT {
		a.refused(c, "", fmt.Errorf("nats: connection kind %d is not a client", c.Kind()))
		return false
	}
	ci, err := inspect(c)
	if err != nil {
		a.refused(c, "", err)
		return false
	}
	cp := connectOf(c, ci)
	if err := cp.Validate(); err != nil {
		clear(cp.Password)
		a.refused(c, "", err)
		return false
	}
	req := cp.Request(c.RemoteAddress(), c.GetTLSConnectionState(), ci.listener(a.names))
	id := c.GetID()
	cn := &conn{a: a, id: id}
	s := a.m.NewSession(cn)
	cn.s = s
	ctx, cancel := context.WithTimeout(a.ctx, a.timeout)
	resp := s.Connect(ctx, &req)
	cancel()
	clear(req.Password)
	if resp.Packet.Type != auth.CONNACK || resp.Packet.Code != auth.Success {
		s.Close() // the Session logged the decision
		return false
	}
	p := s.Principal()
	perms, err := Permissions(a.policy, p)
	if err != nil {
		s.Close()
		a.refused(c, req.ClientID, err)
		return false
	}
	cn.pub, cn.sub = perms.Publish.Allow, perms.Subscribe.Allow
	a.conns.Store(id, cn)
	a.sessions.Store(s, cn)
	a.n.Add(1)
	c.RegisterUser(&server.User{
		Username:           p.Username(),
		Account:            a.account,
		Permissions:        perms,
		ConnectionDeadline: p.Expiry(),
	})
	if s.Closed() {
		// A re-check ended it meanwhile: the connection is being closed.
		a.forget(id, cn)
		return false
	}
	return true
}

func (a *Authentication) refused(c server.ClientAuthentication, clientID string, err error) {
	a.log.LogAttrs(a.ctx, slog.LevelWarn, "mqttauth: nats client refused",
		slog.Uint64("cid", c.GetID()), slog.String("client_id", clientID),
		slog.String("decision", "deny"), slog.String("err", err.Error()))
}

// CheckPermissions is an auth.CheckFunc for a policy change: a session
// keeps its connection while Connect is still allowed and every subject of
// the permissions it was given at connect is still covered by those the
// current policy grants; otherwise it is disconnected (it lost access) and
// gets the current permissions when it connects again. NATS fixes a
// connection's permissions when it connects, so auth.CheckConnect alone
// would leave a narrowed policy unapplied. Give it to the Manager with
// the policy as the source:
//
//	stop, err := m.Watch(auth.Watch{Name: "abac policy", Source: watcher, Check: a.CheckPermissions})
func (a *Authentication) CheckPermissions(ctx context.Context, s *auth.Session) error {
	if err := auth.CheckConnect(a.m.Authorizer())(ctx, s); err != nil {
		return err
	}
	p := s.Principal()
	v, ok := a.sessions.Load(s)
	if !ok || p == nil {
		return nil
	}
	cn := v.(*conn)
	perms, err := Permissions(a.policy, p)
	if err != nil {
		return fmt.Errorf("%w: %w", auth.ErrRevoked, err)
	}
	if !coveredAll(cn.pub, perms.Publish.Allow) || !coveredAll(cn.sub, perms.Subscribe.Allow) {
		return fmt.Errorf("%w: the policy no longer grants every permission the connection was given", auth.ErrRevoked)
	}
	return nil
}

// sweepLoop ends the sessions of connections that nats-server has closed:
// it has no hook for a closed client connection.
func (a *Authentication) sweepLoop() {
	t := time.NewTicker(a.sweep)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
			a.Sweep()
		}
	}
}

// Sweep ends now the sessions of connections that nats-server has closed,
// as the periodic sweep does.
func (a *Authentication) Sweep() {
	srv := a.srv.Load()
	if srv == nil {
		return
	}
	a.conns.Range(func(k, v any) bool {
		if id := k.(uint64); srv.GetClient(id) == nil {
			a.forget(id, v.(*conn))
		}
		return true
	})
}

func (a *Authentication) forget(id uint64, c *conn) {
	if a.conns.CompareAndDelete(id, c) {
		a.n.Add(-1)
	}
	a.sessions.CompareAndDelete(c.s, c)
	c.s.Close()
}

// conn is the auth.Conn of one nats-server client connection.
type conn struct {
	a        *Authentication
	id       uint64
	s        *auth.Session
	pub, sub []string // the allow lists it was registered with
}

// Close implements auth.Conn: nats-server closes the connection (MQTT
// 3.1.1 has no DISCONNECT from the server; a native client gets no reason
// either).
func (c *conn) Close(auth.Packet) {
	if srv := c.a.srv.Load(); srv != nil {
		_ = srv.DisconnectClientByID(c.id)
	}
}

// coveredAll reports whether every subject of old is matched by a subject
// of cur (NATS wildcards).
func coveredAll(old, cur []string) bool {
	for _, o := range old {
		if !slices.ContainsFunc(cur, func(c string) bool { return covers(c, o) }) {
			return false
		}
	}
	return true
}

// covers reports whether every subject matched by g is matched by f.
func covers(f, g string) bool {
	ft, gt := splitTokens(f), splitTokens(g)
	for i, t := range ft {
		if t == ">" {
			return len(gt) > i
		}
		if i >= len(gt) {
			return false
		}
		switch {
		case t == "*":
			if gt[i] == ">" {
				return false
			}
		case t != gt[i]:
			return false
		}
	}
	return len(ft) == len(gt)
}

func splitTokens(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
