package throttle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mqttauth/mqttauth/auth"
)

// Defaults for the zero values of Config.
const (
	// DefaultEvery and DefaultBurst make the default [Limit] of both the
	// address and the identity counters: 10 failures in a row, then one
	// more every 6 s (10 failures a minute sustained).
	DefaultEvery = 6 * time.Second
	DefaultBurst = 10
	// DefaultIPv4Prefix and DefaultIPv6Prefix group client addresses: an
	// IPv4 address is its own group, an IPv6 address counts with its /64
	// (one subscriber's or one host's SLAAC range).
	DefaultIPv4Prefix = 32
	DefaultIPv6Prefix = 64
	// DefaultMaxEntries bounds the counters held (about 60 bytes each,
	// map overhead included: TestBoundedMemory measures it).
	DefaultMaxEntries = 100_000
)

// ErrThrottled is the error of a refused attempt.
var ErrThrottled = errors.New("throttle: too many failed authentications")

// The errors of refusals, made once so that a refusal allocates nothing.
var (
	errByAddress = fmt.Errorf("%w: by client address", ErrThrottled)
	errByUser    = fmt.Errorf("%w: by user name", ErrThrottled)
	errByClient  = fmt.Errorf("%w: by client identifier", ErrThrottled)
)

// Limit is a token bucket of failures: Burst failures in a row are
// allowed; each failure is forgiven after Every. When the bucket is empty,
// attempts are refused until the next failure is forgiven.
type Limit struct {
	// Every is the time after which one failure is forgiven; zero means
	// DefaultEvery.
	Every time.Duration
	// Burst is how many failures in a row are allowed; zero means
	// DefaultBurst.
	Burst int
}

// Config configures a [Throttle]. The zero Config is usable: the defaults
// above.
type Config struct {
	// Address limits failures per client address group (see IPv4Prefix,
	// IPv6Prefix).
	Address Limit
	// Identity limits failures per claimed identity (the CONNECT User
	// Name, the Client Identifier) and verified identity (the connection's
	// principal at a failed re-authentication, the Principal of a Fail).
	// Note that it lets anyone lock an identity out for a while by
	// failing in its name: that is the price of stopping a distributed
	// guessing attack on one account. Disable it with DisableIdentity
	// where that matters more.
	Identity Limit
	// DisableAddress and DisableIdentity turn a counter off.
	DisableAddress, DisableIdentity bool
	// MarkerUsernames are CONNECT User Names that name no one: a marker
	// that every client of a method sends, such as "jwt" for a token in
	// the password (jwtauth.Config.PasswordUsername, `-u jwt`). They are
	// never identity counters: a failure under a marker counts against
	// the client's address and client identifier only, so one client's
	// bad tokens lock no other client out.
	MarkerUsernames []string
	// MarkerMethods are Authentication Methods whose CONNECT User Name is
	// not the identity they verify (K8S-SAT: the token names the service
	// account and the User Name is not verified; JWT: the token's
	// subject). With one of them the User Name is never an identity
	// counter; the verified identity still is, where a Fail or the
	// connection's principal gives one.
	MarkerMethods []string
	// IPv4Prefix and IPv6Prefix are the prefix lengths that group client
	// addresses; zero means DefaultIPv4Prefix and DefaultIPv6Prefix.
	IPv4Prefix, IPv6Prefix int
	// MaxEntries bounds the counters held, addresses and identities
	// together; zero means DefaultMaxEntries. When the table is full, a
	// new counter evicts, among a few sampled ones, a forgiven counter or
	// else the one nearest to being forgiven.
	MaxEntries int
	// Code is the reason code of a refusal; zero means 0x9F (Connection
	// rate exceeded), which an MQTT 3.1.1 CONNACK carries as 3 (server
	// unavailable; auth.ReasonCode.ConnackV311). It must be a CONNACK
	// failure code.
	Code auth.ReasonCode
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives a Debug record per refusal; nil means slog.Default().
	Logger *slog.Logger
}

// Throttle is an [auth.Authenticator] that wraps another (usually the
// whole Chain) and refuses CONNECT attempts, before the wrapped
// authenticator is called, from addresses and identities that failed too
// often. It sees each Request before and each Result after: a Fail counts
// against the client's address group, its claimed user name and client
// identifier, and the verified identity where one is known; Pass,
// Continue, Unavailable and NotRelevant do not count.
//
// It is safe for concurrent use.
type Throttle struct {
	next             auth.Authenticator
	addr, ident      rule
	v4, v6           int
	code             auth.ReasonCode
	nowFn            func() time.Time
	log              *slog.Logger
	seed             maphash.Seed
	shardCap, maxAll int
	markers          map[string]bool // MarkerUsernames
	markerMethods    map[string]bool // MarkerMethods
	shards           [numShards]shard
}

// rule is a Limit in nanoseconds: refuse when the theoretical arrival
// time is more than limit past now.
type rule struct {
	on    bool
	every int64 // ns per forgiven failure
	limit int64 // (burst-1)*every: the debt at which attempts are refused
	max   int64 // burst*every: the most debt kept
}

func newRule(l Limit, off bool) (rule, error) {
	if l.Every < 0 || l.Burst < 0 {
		return rule{}, fmt.Errorf("negative Limit %+v", l)
	}
	every := int64(cmp.Or(l.Every, DefaultEvery))
	burst := int64(cmp.Or(l.Burst, DefaultBurst))
	return rule{on: !off, every: every, limit: (burst - 1) * every, max: burst * every}, nil
}

const numShards = 64

type shard struct {
	mu sync.Mutex
	m  map[uint64]int64 // key hash -> theoretical arrival time (unix ns)
	_  [48]byte         // keep shards on their own cache lines
}

// New returns a Throttle in front of next.
func New(next auth.Authenticator, cfg Config) (*Throttle, error) {
	if next == nil {
		return nil, errors.New("throttle: no authenticator to wrap")
	}
	t := &Throttle{
		next:  next,
		v4:    cmp.Or(cfg.IPv4Prefix, DefaultIPv4Prefix),
		v6:    cmp.Or(cfg.IPv6Prefix, DefaultIPv6Prefix),
		code:  cmp.Or(cfg.Code, auth.ConnectionRateExceeded),
		nowFn: cfg.Now,
		log:   cfg.Logger,
		seed:  maphash.MakeSeed(),
	}
	var err error
	if t.addr, err = newRule(cfg.Address, cfg.DisableAddress); err != nil {
		return nil, fmt.Errorf("throttle: Config.Address: %w", err)
	}
	if t.ident, err = newRule(cfg.Identity, cfg.DisableIdentity); err != nil {
		return nil, fmt.Errorf("throttle: Config.Identity: %w", err)
	}
	if t.v4 < 0 || t.v4 > 32 || t.v6 < 0 || t.v6 > 128 {
		return nil, fmt.Errorf("throttle: prefix lengths /%d (IPv4) and /%d (IPv6) out of range", t.v4, t.v6)
	}
	if !t.code.ValidConnackFailure() {
		return nil, fmt.Errorf("throttle: Config.Code %s is not a CONNACK failure code", t.code)
	}
	maxAll := cmp.Or(cfg.MaxEntries, DefaultMaxEntries)
	if maxAll < numShards {
		return nil, fmt.Errorf("throttle: Config.MaxEntries %d is below %d", maxAll, numShards)
	}
	t.maxAll, t.shardCap = maxAll, maxAll/numShards
	if t.nowFn == nil {
		t.nowFn = time.Now
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]int64)
	}
	t.markers, t.markerMethods = set(cfg.MarkerUsernames), set(cfg.MarkerMethods)
	return t, nil
}

func set(names []string) map[string]bool {
	if len(names) == 0 {
		return nil
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// keys are the counters a request touches; zero hashes are absent.
type keys struct {
	addr, user, client, verified uint64
}

// Key kinds, hashed first so that a user name and a client identifier
// with the same text are different counters.
const (
	kindAddr   = 'a'
	kindUser   = 'u' // claimed and verified user names share counters
	kindClient = 'c'
)

func (t *Throttle) hashString(kind byte, s string) uint64 {
	if s == "" {
		return 0
	}
	var h maphash.Hash
	h.SetSeed(t.seed)
	h.WriteByte(kind)
	h.WriteString(s)
	return h.Sum64() | 1 // never zero
}

// addrKey hashes the client's address group.
func (t *Throttle) addrKey(a net.Addr) uint64 {
	ip, ok := addrOf(a)
	if !ok {
		return 0
	}
	bits := t.v6
	if ip.Is4() {
		bits = t.v4
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return 0
	}
	b := p.Addr().As16()
	var h maphash.Hash
	h.SetSeed(t.seed)
	h.WriteByte(kindAddr)
	h.Write(b[:])
	return h.Sum64() | 1
}

// addrOf returns the IP address of a, IPv4-mapped IPv6 addresses unmapped.
func addrOf(a net.Addr) (netip.Addr, bool) {
	var ip netip.Addr
	switch a := a.(type) {
	case nil:
		return ip, false
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.IPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ip = ap.Addr()
		} else if ip, err = netip.ParseAddr(a.String()); err != nil {
			return ip, false
		}
	}
	ip = ip.Unmap().WithZone("")
	return ip, ip.IsValid()
}

// claimed returns the counters of what the request claims.
func (t *Throttle) claimed(req *auth.Request) keys {
	var k keys
	if t.addr.on {
		k.addr = t.addrKey(req.RemoteAddr)
	}
	if t.ident.on {
		if req.HasUsername && !t.markers[req.Username] && !t.markerMethods[req.AuthMethod] {
			k.user = t.hashString(kindUser, req.Username)
		}
		k.client = t.hashString(kindClient, req.ClientID)
		if req.Current != nil {
			k.verified = t.hashString(kindUser, req.Current.Username())
		}
	}
	return k
}

// Authenticate refuses a CONNECT whose address or identity is over its
// limit, and otherwise calls the wrapped authenticator and counts its Fail.
// Continuations and re-authentications are never refused (a failed
// re-authentication disconnects the client, whose next CONNECT is
// checked), but their failures count.
func (t *Throttle) Authenticate(ctx context.Context, req *auth.Request) auth.Result {
	return t.authenticate(ctx, req, t.next)
}

// ObserveMethods implements [auth.MethodsObserver]: the Throttle is not a
// method, so it is not labelled as one in metrics; the methods behind it
// report to o each under its own name, and the returned Authenticator
// shares t's counters. A CONNECT the Throttle refuses reaches no method:
// the Manager counts it as a refused connection (CONNACK 0x9F).
func (t *Throttle) ObserveMethods(o auth.Observer) auth.Authenticator {
	return observed{t: t, next: auth.ObserveMethods(t.next, o)}
}

// observed is a Throttle in front of observed methods.
type observed struct {
	t    *Throttle
	next auth.Authenticator
}

func (o observed) Authenticate(ctx context.Context, req *auth.Request) auth.Result {
	return o.t.authenticate(ctx, req, o.next)
}

// authenticate is Authenticate in front of next.
func (t *Throttle) authenticate(ctx context.Context, req *auth.Request, next auth.Authenticator) auth.Result {
	k := t.claimed(req)
	if req.Step == 0 && !req.Reauth {
		now := t.nowFn().UnixNano()
		var err error
		switch {
		case t.over(k.addr, t.addr, now):
			err = errByAddress
		case t.over(k.user, t.ident, now):
			err = errByUser
		case t.over(k.client, t.ident, now):
			err = errByClient
		}
		if err != nil {
			if t.log.Enabled(ctx, slog.LevelDebug) {
				t.log.LogAttrs(ctx, slog.LevelDebug, "throttle: attempt refused",
					slog.String("client_id", req.ClientID), slog.String("username", req.Username),
					slog.String("reason_code", t.code.String()), slog.Any("err", err))
			}
			return auth.FailResult(t.code, err)
		}
	}
	r := next.Authenticate(ctx, req)
	if r.Outcome == auth.Fail {
		if r.Principal != nil {
			k.verified = t.hashString(kindUser, r.Principal.Username())
		}
		now := t.nowFn().UnixNano()
		t.charge(k.addr, t.addr, now)
		t.charge(k.user, t.ident, now)
		t.charge(k.client, t.ident, now)
		if k.verified != k.user {
			t.charge(k.verified, t.ident, now)
		}
	}
	return r
}

func (t *Throttle) shard(key uint64) *shard { return &t.shards[key>>58] }

// over reports whether key's debt is past the rule's limit.
func (t *Throttle) over(key uint64, r rule, now int64) bool {
	if key == 0 || !r.on {
		return false
	}
	s := t.shard(key)
	s.mu.Lock()
	tat, ok := s.m[key]
	if ok && tat <= now {
		delete(s.m, key) // forgiven
	}
	s.mu.Unlock()
	return ok && tat-now > r.limit
}

// charge adds one failure to key's debt.
func (t *Throttle) charge(key uint64, r rule, now int64) {
	if key == 0 || !r.on {
		return
	}
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	tat, ok := s.m[key]
	if !ok && len(s.m) >= t.shardCap {
		s.evict(now)
	}
	tat = max(tat, now) + r.every
	s.m[key] = min(tat, now+r.max)
}

// evict removes, among a few sampled counters (map iteration begins at a
// random place), the forgiven ones, or else the one with the least debt.
func (s *shard) evict(now int64) {
	const sample = 8
	var victim uint64
	least, n, freed := int64(1<<63-1), 0, false
	for k, tat := range s.m {
		if tat <= now {
			delete(s.m, k)
			freed = true
		} else if tat < least {
			victim, least = k, tat
		}
		if n++; n == sample {
			break
		}
	}
	if !freed && victim != 0 {
		delete(s.m, victim)
	}
}

// Len returns how many counters are held.
func (t *Throttle) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
