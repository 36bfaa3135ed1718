package nats

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/mqttauth/mqttauth/abac"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/mqttconn"
)

// DefaultQueue is the queue group the replicas of a [Callout] service
// share when CalloutConfig.Queue is empty: each authorization request goes
// to one of them.
const DefaultQueue = "mqttauth"

// DefaultMaxConcurrent is CalloutConfig.MaxConcurrent when it is zero.
const DefaultMaxConcurrent = 64

// CalloutConfig configures a [Callout] service.
type CalloutConfig struct {
	// Manager creates the session of every client; its Authorizer must be
	// Policy. Required.
	Manager *auth.Manager
	// Policy gives each principal's topic filters (the Manager's
	// Authorizer). Required.
	Policy Grants
	// Issuer is the account key pair named as auth_callout issuer in the
	// servers' configuration: it signs the responses and the user JWTs.
	// Required.
	Issuer nkeys.KeyPair
	// Account is the account the authenticated users join (the user JWT's
	// audience, servers configured without an operator). Required.
	Account string
	// Conn is a connection of one of the callout account's auth_users,
	// on which the service answers "$SYS.REQ.USER.AUTH". Required.
	Conn *natsgo.Conn
	// System is a connection of a system account user, on which the
	// service asks a server to close a connection that lost access (the
	// system account's kick request) and hears of closed connections; nil
	// means no live revocation (expiry still ends connections: it is in
	// the user JWT).
	System *natsgo.Conn
	// Listeners names the listeners; see [Listeners].
	Listeners Listeners
	// Queue is the queue group of the service's replicas; empty means
	// DefaultQueue.
	Queue string
	// Timeout bounds one authentication; zero means DefaultTimeout. It
	// should be shorter than the servers' auth_timeout.
	Timeout time.Duration
	// MaxConcurrent bounds the requests one replica authenticates at a
	// time (a slow backend holds one each); zero means
	// DefaultMaxConcurrent. Further requests wait in the subscription.
	MaxConcurrent int
	// Logger receives the service's records; nil means slog.Default().
	// Secrets are never logged.
	Logger *slog.Logger
}

// Callout is an auth callout service: it answers the authorization
// requests of NATS servers (2.10 and later, the stock binary included)
// with an auth.Session per client connection, and a user JWT carrying the
// permissions the policy grants the principal and the credential's expiry.
// Several replicas, in one queue group, serve a cluster.
type Callout struct {
	m       *auth.Manager
	policy  Grants
	issuer  nkeys.KeyPair
	issPub  string
	account string
	names   Listeners
	sys     *natsgo.Conn
	timeout time.Duration
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	subs   []*natsgo.Subscription
	once   sync.Once
	sem    chan struct{} // one slot per request being authenticated
	wg     sync.WaitGroup

	mu       sync.Mutex
	closing  bool
	conns    map[connKey]*calloutConn
	sessions map[*auth.Session]*calloutConn
	n        atomic.Int64
}

// connKey names a client connection in a cluster: its server and the
// server's connection id.
type connKey struct {
	server string
	cid    uint64
}

// NewCallout validates cfg, checks the policy as [New] does, and starts
// answering authorization requests.
func NewCallout(cfg CalloutConfig) (*Callout, error) {
	if cfg.Manager == nil || cfg.Policy == nil || cfg.Issuer == nil || cfg.Conn == nil || cfg.Account == "" {
		return nil, errors.New("nats: CalloutConfig.Manager, Policy, Issuer, Account and Conn are required")
	}
	if any(cfg.Manager.Authorizer()) != any(cfg.Policy) {
		return nil, errors.New("nats: CalloutConfig.Policy must be the Manager's Authorizer")
	}
	if cfg.Timeout < 0 || cfg.MaxConcurrent < 0 {
		return nil, errors.New("nats: negative CalloutConfig.Timeout or MaxConcurrent")
	}
	pub, err := cfg.Issuer.PublicKey()
	if err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		return nil, fmt.Errorf("nats: CalloutConfig.Issuer must be an account key pair: %v", err)
	}
	if src, ok := cfg.Policy.(abac.Source); ok {
		if err := CheckPolicy(src.Current().Spec()); err != nil {
			return nil, err
		}
	}
	c := &Callout{
		m: cfg.Manager, policy: cfg.Policy, issuer: cfg.Issuer, issPub: pub, account: cfg.Account, names: cfg.Listeners,
		sys: cfg.System, timeout: cmp.Or(cfg.Timeout, DefaultTimeout), log: cfg.Logger,
		conns: make(map[connKey]*calloutConn), sessions: make(map[*auth.Session]*calloutConn),
		sem: make(chan struct{}, cmp.Or(cfg.MaxConcurrent, DefaultMaxConcurrent)),
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	sub, err := cfg.Conn.QueueSubscribe(server.AuthCalloutSubject, cmp.Or(cfg.Queue, DefaultQueue), c.handle)
	if err != nil {
		c.cancel()
		return nil, fmt.Errorf("nats: subscribing to %s: %w", server.AuthCalloutSubject, err)
	}
	c.subs = append(c.subs, sub)
	if c.sys != nil {
		sub, err := c.sys.Subscribe("$SYS.ACCOUNT.*.DISCONNECT", c.disconnected)
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("nats: subscribing to disconnect events: %w", err)
		}
		c.subs = append(c.subs, sub)
		if err := c.sys.Flush(); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("nats: %w", err)
		}
	}
	if err := cfg.Conn.Flush(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	return c, nil
}

// Close stops answering (the queue group's other replicas take over),
// cancels the authentications in progress and waits for them, and ends
// every session; connections stay. It is safe to call more than once.
func (c *Callout) Close() error {
	c.once.Do(func() {
		for _, s := range c.subs {
			_ = s.Unsubscribe()
		}
		c.mu.Lock()
		c.closing = true // no request starts after this
		c.mu.Unlock()
		c.cancel()
		c.wg.Wait()
		c.mu.Lock()
		all := make([]*calloutConn, 0, len(c.conns))
		for _, cc := range c.conns {
			all = append(all, cc)
		}
		c.mu.Unlock()
		for _, cc := range all {
			c.forget(cc)
		}
	})
	return nil
}

// Len returns the number of client connections the service holds a
// session for.
func (c *Callout) Len() int { return int(c.n.Load()) }

// handle starts answering one authorization request: nats.go delivers a
// subscription's messages one at a time, and a slow authenticator must
// not hold up the others.
func (c *Callout) handle(msg *natsgo.Msg) {
	select {
	case c.sem <- struct{}{}:
	case <-c.ctx.Done():
		return
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.sem
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		defer func() { <-c.sem }()
		c.answer(msg)
	}()
}

// answer answers one authorization request.
func (c *Callout) answer(msg *natsgo.Msg) {
	rc, err := jwt.DecodeAuthorizationRequestClaims(string(msg.Data))
	if err != nil {
		c.log.LogAttrs(c.ctx, slog.LevelWarn, "mqttauth: invalid authorization request", slog.String("err", err.Error()))
		return
	}
	ujwt, reason := c.authorize(rc)
	resp := jwt.NewAuthorizationResponseClaims(rc.UserNkey)
	resp.Audience = rc.Server.ID
	if reason != "" {
		resp.Error = reason
	} else {
		resp.Jwt = ujwt
	}
	token, err := resp.Encode(c.issuer)
	if err != nil {
		c.log.LogAttrs(c.ctx, slog.LevelError, "mqttauth: encoding the authorization response", slog.String("err", err.Error()))
		return
	}
	_ = msg.Respond([]byte(token))
}

// authorize runs the session of one request: the user JWT, or why not.
func (c *Callout) authorize(rc *jwt.AuthorizationRequestClaims) (string, string) {
	ci := rc.ClientInformation
	co := rc.ConnectOptions
	cp := &mqttconn.Connect{Username: co.Username, HasUsername: co.Username != ""}
	info := clientInfo{mqtt: ci.MQTT != "" || ci.Type == "mqtt", ws: ci.Type == "websocket"}
	pw := co.Password
	switch {
	case info.mqtt:
		cp.ClientID, cp.ProtocolVersion = ci.MQTT, 4
	default:
		cp.ClientID = ci.Name
		if pw == "" {
			pw = co.Token
		}
	}
	if pw != "" {
		cp.Password, cp.HasPassword = []byte(pw), true
	}
	if err := cp.Validate(); err != nil {
		return "", "not authorized"
	}
	cs, err := tlsState(rc.TLS)
	if err != nil {
		c.log.LogAttrs(c.ctx, slog.LevelWarn, "mqttauth: client certificates in the authorization request", slog.String("err", err.Error()))
		return "", "not authorized"
	}
	var remote net.Addr
	if ip := net.ParseIP(ci.Host); ip != nil {
		remote = &net.TCPAddr{IP: ip}
	}
	req := cp.Request(remote, cs, info.listener(c.names))
	cc := &calloutConn{c: c, key: connKey{server: rc.Server.ID, cid: ci.ID}}
	s := c.m.NewSession(cc)
	cc.s = s
	ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
	resp := s.Connect(ctx, &req)
	cancel()
	clear(req.Password)
	if resp.Packet.Type != auth.CONNACK || resp.Packet.Code != auth.Success {
		s.Close()
		return "", "not authorized" // the Session logged why
	}
	p := s.Principal()
	perms, err := Permissions(c.policy, p)
	if err != nil {
		s.Close()
		c.log.LogAttrs(c.ctx, slog.LevelWarn, "mqttauth: nats client refused", slog.String("client_id", req.ClientID), slog.String("err", err.Error()))
		return "", "not authorized"
	}
	uc := jwt.NewUserClaims(rc.UserNkey)
	uc.Audience = c.account
	uc.Name = p.Username()
	if e := p.Expiry(); !e.IsZero() {
		uc.Expires = e.Unix()
	}
	uc.Pub.Allow = perms.Publish.Allow
	if len(perms.Publish.Allow) == 0 {
		uc.Pub.Deny = jwt.StringList{">"} // an empty allow list means everything
	}
	uc.Sub.Allow = perms.Subscribe.Allow
	uc.Sub.Deny = perms.Subscribe.Deny
	ujwt, err := uc.Encode(c.issuer)
	if err != nil {
		s.Close()
		c.log.LogAttrs(c.ctx, slog.LevelError, "mqttauth: encoding the user JWT", slog.String("err", err.Error()))
		return "", "not authorized"
	}
	cc.pub, cc.sub = perms.Publish.Allow, perms.Subscribe.Allow
	c.mu.Lock()
	if old := c.conns[cc.key]; old != nil {
		delete(c.sessions, old.s)
		c.n.Add(-1)
		defer old.s.Close()
	}
	c.conns[cc.key] = cc
	c.sessions[s] = cc
	c.n.Add(1)
	c.mu.Unlock()
	return ujwt, ""
}

// tlsState rebuilds the client's TLS state from the request: the chain the
// client presented (or the first chain the server verified), leaf first,
// for x509auth, which verifies it against its own trust.
func tlsState(ct *jwt.ClientTLS) (*tls.ConnectionState, error) {
	if ct == nil {
		return nil, nil
	}
	pems := []string(ct.Certs)
	if len(pems) == 0 && len(ct.VerifiedChains) > 0 {
		pems = ct.VerifiedChains[0]
	}
	if len(pems) == 0 {
		return &tls.ConnectionState{HandshakeComplete: true}, nil
	}
	cs := &tls.ConnectionState{HandshakeComplete: true}
	for _, p := range pems {
		blk, _ := pem.Decode([]byte(p))
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, errors.New("nats: a client certificate is not PEM")
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("nats: %w", err)
		}
		cs.PeerCertificates = append(cs.PeerCertificates, cert)
	}
	return cs, nil
}

// disconnected ends the session of a connection a server reports closed.
func (c *Callout) disconnected(msg *natsgo.Msg) {
	var ev server.DisconnectEventMsg
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		return
	}
	c.mu.Lock()
	cc := c.conns[connKey{server: ev.Server.ID, cid: ev.Client.ID}]
	c.mu.Unlock()
	if cc != nil {
		c.forget(cc)
	}
}

func (c *Callout) forget(cc *calloutConn) {
	c.mu.Lock()
	if c.conns[cc.key] == cc {
		delete(c.conns, cc.key)
		delete(c.sessions, cc.s)
		c.n.Add(-1)
	}
	c.mu.Unlock()
	cc.s.Close()
}

// CheckPermissions is the auth.CheckFunc of a policy change, as
// [Authentication.CheckPermissions]: a session whose Connect or whose
// permissions are no longer all granted is kicked, and gets the current
// policy's permissions when it connects again.
func (c *Callout) CheckPermissions(ctx context.Context, s *auth.Session) error {
	if err := auth.CheckConnect(c.m.Authorizer())(ctx, s); err != nil {
		return err
	}
	c.mu.Lock()
	cc := c.sessions[s]
	c.mu.Unlock()
	p := s.Principal()
	if cc == nil || p == nil {
		return nil
	}
	perms, err := Permissions(c.policy, p)
	if err != nil {
		return fmt.Errorf("%w: %w", auth.ErrRevoked, err)
	}
	if !coveredAll(cc.pub, perms.Publish.Allow) || !coveredAll(cc.sub, perms.Subscribe.Allow) {
		return fmt.Errorf("%w: the policy no longer grants every permission the connection was given", auth.ErrRevoked)
	}
	return nil
}

// calloutConn is the auth.Conn of one client connection of a server.
type calloutConn struct {
	c        *Callout
	key      connKey
	s        *auth.Session
	pub, sub []string
}

// Close implements auth.Conn: the connection's server is asked, through
// the system account, to close it.
func (cc *calloutConn) Close(auth.Packet) {
	sys := cc.c.sys
	if sys == nil {
		cc.c.log.LogAttrs(cc.c.ctx, slog.LevelWarn, "mqttauth: cannot close a connection that lost access: no system account connection",
			slog.String("server", cc.key.server), slog.Uint64("cid", cc.key.cid))
		return
	}
	body, _ := json.Marshal(server.KickClientReq{CID: cc.key.cid})
	if _, err := sys.Request(fmt.Sprintf("$SYS.REQ.SERVER.%s.KICK", cc.key.server), body, 5*time.Second); err != nil {
		cc.c.log.LogAttrs(cc.c.ctx, slog.LevelWarn, "mqttauth: kick request failed",
			slog.String("server", cc.key.server), slog.Uint64("cid", cc.key.cid), slog.String("err", err.Error()))
	}
}
