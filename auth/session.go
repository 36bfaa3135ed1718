package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

type sessionState uint8

const (
	stateNew        sessionState = iota // waiting for CONNECT
	stateConnecting                     // CONNECT exchange: AUTH 0x18 sent, waiting for the client
	stateConnected                      // CONNACK 0x00 sent
	stateReauthing                      // re-authentication: AUTH 0x18 sent, waiting for the client
	stateClosed                         // ended; nothing more is sent
)

// Session is the MQTT v5 enhanced-authentication state machine of one
// connection. It is broker-neutral: the adapter feeds it the CONNECT packet
// ([Session.Connect]), each AUTH packet ([Session.Auth]) and the arrival of
// any other packet before CONNACK ([Session.OtherPacket]); the Session answers
// with what to send and whether to close. Time-driven endings (expiry, a
// stalled exchange) and re-checks go through the [Conn] the adapter gave.
//
// The rules it enforces, with the MQTT 5.0 statement numbers:
//
//   - AUTH when CONNECT named no Authentication Method is a Protocol Error
//     [MQTT-4.12.0-6]; an AUTH whose method differs from CONNECT's is
//     answered with 0x8C (Bad authentication method) [MQTT-4.12.0-7].
//   - Before CONNACK the server sends nothing but AUTH [MQTT-3.2.0-1]; a
//     client that named a method sends nothing but AUTH (or DISCONNECT)
//     before CONNACK [MQTT-3.1.2-30].
//   - Every AUTH and the success CONNACK carry CONNECT's method
//     [MQTT-4.12.0-5].
//   - AUTH 0x19 comes only from the client and only after CONNACK
//     [MQTT-3.15.2-1, 4.12.1-1]; one re-authentication runs at a time;
//     0x00 from the client is a Protocol Error; any other code is a
//     Malformed Packet (0x81).
//   - Any CONNACK or DISCONNECT with a code of 0x80 or more closes the
//     connection [MQTT-4.13.2-1, 4.12.0-4, 4.12.1-2].
//   - Re-authentication: Pass swaps the principal atomically, re-arms the
//     expiry timer and answers AUTH 0x00; Unavailable answers AUTH 0x18
//     (Continue authentication) and the connection keeps its principal (the
//     client may send AUTH 0x19 again, or answer the 0x18 with AUTH 0x18,
//     which is taken as one retry: if that is Unavailable too, nothing is
//     sent, so that a client whose handler always answers does not
//     ping-pong with the server); Fail sends DISCONNECT (0x87 for codes a
//     DISCONNECT cannot carry) and closes; a different user name fails
//     unless Config.AllowIdentityChange.
//   - When the principal's expiry passes, the session sends DISCONNECT 0xA0
//     (Maximum connect time) or closes silently (Config.OnExpiry).
//
// The methods of a Session are safe for concurrent use; an adapter normally
// calls them from the connection's read loop.
type Session struct {
	m     *Manager
	conn  Conn
	authz Authorizer // the Manager's, or its SessionAuthorizer's for this session
	own   bool       // authz was made for this session

	// principal is read on every authorization, without the lock.
	principal atomic.Pointer[Principal]

	mu        sync.Mutex
	state     sessionState
	retryable bool    // the last re-authentication was Unavailable: AUTH 0x18 may retry it
	retried   bool    // the current re-authentication is that one retry
	base      Request // CONNECT's fields, without secrets
	step      int     // packets of the current exchange so far
	exchange  any     // State of the last Continue
	passState any     // State of the last Pass, for re-authentication
	gen       uint64  // bumped whenever a timer must be ignored
	inflight  bool    // an authenticator call is running without the lock
	expiry    Timer
	stall     Timer

	certDone           bool   // certSerial and certFP are set, for the audit log
	certSerial, certFP string // the client certificate's, or empty

	// last is the principal the session had when it ended, and endCause
	// why it ended (CauseNone: the connection ended, Close): the Will is
	// judged with them (see AuthorizeWill).
	last     *Principal
	endCause Cause

	// reauthTokens and reauthAt are the re-authentication token bucket
	// (Config.ReauthInterval, Config.ReauthBurst).
	reauthTokens float64
	reauthAt     time.Time
}

// Principal returns the connection's current principal, or nil before a
// successful CONNACK and after the session has ended.
func (s *Session) Principal() *Principal { return s.principal.Load() }

// Authorize asks the session's Authorizer (see [Session.Authorizer]) about
// a with the current principal. Before authentication and after close it
// denies.
func (s *Session) Authorize(ctx context.Context, a Action) Decision {
	p := s.principal.Load()
	if p == nil {
		return s.observeAuthz(ctx, nil, a, Deny)
	}
	return s.observeAuthz(ctx, p, a, s.authz.Authorize(ctx, p, a))
}

// Authorizer returns the Authorizer that [Session.Authorize] asks: the one
// the Manager's [SessionAuthorizer] made for this session, or the Manager's
// own. An adapter uses it to decide for the principal a session last had
// after the connection ended, e.g. deliveries queued for an offline
// persistent session.
func (s *Session) Authorizer() Authorizer { return s.authz }

// resetAuthz drops what the session's own Authorizer remembers.
func (s *Session) resetAuthz() {
	if r, ok := s.authz.(interface{ Reset() }); ok && s.own {
		r.Reset()
	}
}

// Closed reports whether the session has ended.
func (s *Session) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == stateClosed
}

// Connect handles the CONNECT packet. req describes it; its Reauth, Step,
// State and Current fields are reset. The Session keeps no secret from req:
// Password and AuthData are not retained.
//
// The authenticator runs without the session's lock, so an expiry or a
// re-check is never held up by a slow backend; if the session ends during
// the call, the result is dropped and the returned Response says ErrClosed.
func (s *Session) Connect(ctx context.Context, req *Request) Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight {
		return s.endLocked(Packet{}, errConcurrent)
	}
	switch s.state {
	case stateClosed:
		return closedResponse
	case stateNew:
	default:
		// A second CONNECT is a Protocol Error [MQTT-3.1.0-2].
		return s.endLocked(s.protocolErrorPacket(ProtocolError), fmt.Errorf("%w: second CONNECT", ErrProtocol))
	}
	s.base = *req
	s.base.Password, s.base.AuthData = nil, nil
	s.base.Reauth, s.base.Step, s.base.State, s.base.Current = false, 0, nil, nil
	switch {
	case len(req.AuthMethod) > s.m.maxMethod:
		s.base.AuthMethod = "" // never echo it
		return s.endLocked(Packet{Type: CONNACK, Code: BadAuthenticationMethod},
			fmt.Errorf("%w: method of %d bytes exceeds %d", ErrBadMethod, len(req.AuthMethod), s.m.maxMethod))
	case len(req.AuthData) > s.m.maxData:
		return s.endLocked(Packet{Type: CONNACK, Code: PacketTooLarge},
			fmt.Errorf("%w: authentication data of %d bytes exceeds %d", ErrProtocol, len(req.AuthData), s.m.maxData))
	case req.AuthMethod == "" && len(req.AuthData) > 0:
		return s.endLocked(Packet{Type: CONNACK, Code: ProtocolError},
			fmt.Errorf("%w: authentication data without an authentication method", ErrProtocol))
	}
	req.Reauth, req.Step, req.State, req.Current = false, 0, nil, nil
	res, ok := s.callLocked(ctx, req)
	if !ok {
		return closedResponse
	}
	return s.connectResultLocked(ctx, res)
}

// Auth handles an AUTH packet from the client. p.Type must be AUTH.
func (s *Session) Auth(ctx context.Context, p Packet) Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight {
		return s.endLocked(Packet{}, errConcurrent)
	}
	switch s.state {
	case stateClosed:
		return closedResponse
	case stateNew:
		// Nothing may precede CONNECT [MQTT-3.1.0-1]; no CONNACK has been
		// sent, so the connection closes without a packet.
		return s.endLocked(Packet{}, fmt.Errorf("%w: AUTH before CONNECT", ErrProtocol))
	}
	if err := s.checkAuthLocked(p); err != nil {
		code := ProtocolError
		var de *DenyError
		if errors.As(err, &de) {
			code = de.Code
		}
		return s.endLocked(s.protocolErrorPacket(code), err)
	}
	switch s.state {
	case stateConnecting:
		if p.Code != ContinueAuthentication {
			return s.endLocked(s.protocolErrorPacket(ProtocolError),
				fmt.Errorf("%w: AUTH %v before CONNACK", ErrProtocol, p.Code))
		}
		res, ok := s.authenticateLocked(ctx, p, false)
		if !ok {
			return closedResponse
		}
		return s.connectResultLocked(ctx, res)

	case stateConnected:
		switch {
		case p.Code == ReAuthenticate, p.Code == ContinueAuthentication && s.retryable:
			if !s.reauthAllowedLocked() {
				return s.endLocked(Packet{Type: DISCONNECT, Code: MessageRateTooHigh, Reason: "re-authentication rate exceeded"},
					fmt.Errorf("%w: more than %d re-authentications in a row, then one per %v", ErrReauthRate, s.m.reauthBurst, s.m.reauthInterval))
			}
			s.retried = p.Code == ContinueAuthentication
			s.retryable = false
			s.step = 0
			s.exchange = s.passState
			res, ok := s.authenticateLocked(ctx, p, true)
			if !ok {
				return closedResponse
			}
			return s.reauthResultLocked(ctx, res)
		case p.Code == ContinueAuthentication:
			return s.endLocked(s.protocolErrorPacket(ProtocolError),
				fmt.Errorf("%w: AUTH 0x18 with no exchange in progress", ErrProtocol))
		}
	case stateReauthing:
		if p.Code == ContinueAuthentication {
			res, ok := s.authenticateLocked(ctx, p, true)
			if !ok {
				return closedResponse
			}
			return s.reauthResultLocked(ctx, res)
		}
		return s.endLocked(s.protocolErrorPacket(ProtocolError),
			fmt.Errorf("%w: AUTH %v while a re-authentication is in progress", ErrProtocol, p.Code))
	}
	return s.endLocked(s.protocolErrorPacket(ProtocolError), fmt.Errorf("%w: unexpected AUTH %v", ErrProtocol, p.Code))
}

// checkAuthLocked validates an AUTH packet against the rules that do not
// depend on the exchange: a *DenyError selects a code other than 0x82.
func (s *Session) checkAuthLocked(p Packet) error {
	switch {
	case p.Type != AUTH:
		return fmt.Errorf("%w: %v handed to Session.Auth", ErrProtocol, p.Type)
	case s.base.AuthMethod == "":
		return fmt.Errorf("%w: AUTH on a connection whose CONNECT named no authentication method [MQTT-4.12.0-6]", ErrProtocol)
	case p.Code == Success:
		return fmt.Errorf("%w: AUTH 0x00 from a client [MQTT-3.15.2-1]", ErrProtocol)
	case p.Code != ContinueAuthentication && p.Code != ReAuthenticate:
		return &DenyError{Code: MalformedPacket, Err: fmt.Errorf("%w: AUTH reason code 0x%02x is not defined", ErrProtocol, byte(p.Code))}
	case p.Code == ReAuthenticate && s.state == stateConnecting:
		return fmt.Errorf("%w: AUTH 0x19 before CONNACK [MQTT-4.12.1-1]", ErrProtocol)
	case p.Method != s.base.AuthMethod:
		return &DenyError{Code: BadAuthenticationMethod, Err: fmt.Errorf("%w: AUTH method differs from CONNECT's [MQTT-4.12.0-7]", ErrBadMethod)}
	case len(p.Data) > s.m.maxData:
		return &DenyError{Code: PacketTooLarge, Err: fmt.Errorf("%w: authentication data of %d bytes exceeds %d", ErrProtocol, len(p.Data), s.m.maxData)}
	}
	return nil
}

// authenticateLocked asks the authenticator about one AUTH packet of an
// exchange. It reports false when the session ended during the call.
func (s *Session) authenticateLocked(ctx context.Context, p Packet, reauth bool) (Result, bool) {
	s.stopStallLocked()
	req := s.base
	req.AuthMethod = p.Method
	req.AuthData = p.Data
	req.Reauth = reauth
	req.Step = s.step
	req.State = s.exchange
	if reauth {
		req.Current = s.principal.Load()
	}
	return s.callLocked(ctx, &req)
}

var errConcurrent = fmt.Errorf("%w: a packet was handed to the session while it was still authenticating the previous one", ErrProtocol)

// callLocked runs the authenticator without holding the lock, so that an
// expiry, a stalled-exchange timer or a re-check is never held up behind a
// slow backend. It reports false when the session ended meanwhile (the
// adapter was then told through Conn), so the result is dropped.
func (s *Session) callLocked(ctx context.Context, req *Request) (Result, bool) {
	s.inflight = true
	s.mu.Unlock()
	r := s.m.authn.Authenticate(ctx, req)
	s.mu.Lock()
	s.inflight = false
	return r, s.state != stateClosed
}

// OtherPacket tells the session that the client sent a packet other than
// CONNECT and AUTH. Before CONNACK, when the client named an Authentication
// Method, that is a Protocol Error [MQTT-3.1.2-30]; before CONNECT it is one
// too [MQTT-3.1.0-1]. Otherwise the returned Response is empty.
func (s *Session) OtherPacket() Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateClosed:
		return closedResponse
	case stateNew:
		return s.endLocked(Packet{}, fmt.Errorf("%w: a packet before CONNECT", ErrProtocol))
	case stateConnecting:
		return s.endLocked(Packet{Type: CONNACK, Code: ProtocolError},
			fmt.Errorf("%w: a packet other than AUTH before CONNACK [MQTT-3.1.2-30]", ErrProtocol))
	}
	return Response{}
}

// Close ends the session because the connection has ended: it stops the
// timers and leaves the Manager's registry. It sends nothing. It is safe to
// call more than once.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

var closedResponse = Response{Close: true, Err: ErrClosed}

// connectResultLocked turns the result for a CONNECT-time packet into a
// response.
func (s *Session) connectResultLocked(ctx context.Context, r Result) Response {
	method := s.base.AuthMethod
	switch r.Outcome {
	case Pass:
		if err := s.methodRanLocked(r.Principal); err != nil {
			return s.denyLocked(ctx, Packet{Type: CONNACK, Code: BadAuthenticationMethod}, err)
		}
		now := s.m.clock.Now()
		p, err := s.acceptLocked(ctx, r.Principal, nil, now)
		if err != nil {
			return s.denyLocked(ctx, Packet{Type: CONNACK, Code: NotAuthorized}, err)
		}
		s.principal.Store(p)
		s.passState = r.State
		s.exchange = nil
		s.state = stateConnected
		s.armExpiryLocked(p, now)
		s.m.register(s)
		s.logDecision(ctx, "pass", p, Success, nil)
		out := Packet{Type: CONNACK, Code: Success}
		if method != "" {
			out.Method, out.Data = method, r.Data
		}
		return Response{Packet: out}
	case Continue:
		if method == "" {
			return s.denyLocked(ctx, Packet{Type: CONNACK, Code: NotAuthorized},
				errors.New("auth: an authenticator asked to continue but the client named no authentication method"))
		}
		s.state = stateConnecting
		s.step++
		s.exchange = r.State
		s.armStallLocked()
		return Response{Packet: Packet{Type: AUTH, Code: ContinueAuthentication, Method: method, Data: r.Data}}
	case Fail:
		return s.denyLocked(ctx, Packet{Type: CONNACK, Code: r.failCode().forConnack()}, r.Err)
	case Unavailable:
		return s.denyLocked(ctx, Packet{Type: CONNACK, Code: ServerUnavailable}, wrapUnavailable(r.Err))
	default:
		nr := noRelevant(&s.base)
		return s.denyLocked(ctx, Packet{Type: CONNACK, Code: nr.Code}, nr.Err)
	}
}

// reauthResultLocked turns the result for a re-authentication packet into a
// response.
func (s *Session) reauthResultLocked(ctx context.Context, r Result) Response {
	method := s.base.AuthMethod
	switch r.Outcome {
	case Pass:
		if err := s.methodRanLocked(r.Principal); err != nil {
			return s.denyLocked(ctx, Packet{Type: DISCONNECT, Code: BadAuthenticationMethod, Reason: "re-authentication failed"}, err)
		}
		cur := s.principal.Load()
		now := s.m.clock.Now()
		p, err := s.acceptLocked(ctx, r.Principal, cur, now)
		if err != nil {
			return s.denyLocked(ctx, Packet{Type: DISCONNECT, Code: NotAuthorized, Reason: "re-authentication failed"}, err)
		}
		s.principal.Store(p)
		s.passState = r.State
		s.exchange = nil
		s.state = stateConnected
		s.retryable, s.retried = false, false
		s.armExpiryLocked(p, now)
		s.resetAuthz()
		s.logDecision(ctx, "reauth_pass", p, Success, nil) // at Debug: see AuditConfig
		s.m.obs.Session(SessionEvent{Kind: SessionReauthenticated})
		return Response{Packet: Packet{Type: AUTH, Code: Success, Method: method, Data: r.Data}}
	case Continue:
		s.state = stateReauthing
		s.step++
		s.exchange = r.State
		s.armStallLocked()
		return Response{Packet: Packet{Type: AUTH, Code: ContinueAuthentication, Method: method, Data: r.Data}}
	case Unavailable:
		s.state = stateConnected
		s.exchange = nil
		err := wrapUnavailable(r.Err)
		s.logDecision(ctx, "reauth_unavailable", s.principal.Load(), ContinueAuthentication, err)
		if s.retried {
			// The client answered our AUTH 0x18 and the backend is still
			// down. Another 0x18 would start a ping-pong with clients whose
			// auth handler always answers (paho.golang's does), so nothing is
			// sent: the connection keeps its principal, and the client
			// starts again with AUTH 0x19 when it wants.
			s.retryable, s.retried = false, false
			return Response{Err: err}
		}
		s.retryable = true
		return Response{
			Packet: Packet{Type: AUTH, Code: ContinueAuthentication, Method: method,
				Reason: "authentication is unavailable; the connection continues, re-authenticate later"},
			Err: err,
		}
	case Fail:
		return s.denyLocked(ctx, Packet{Type: DISCONNECT, Code: r.failCode().forDisconnect(), Reason: "re-authentication failed"}, r.Err)
	default:
		return s.denyLocked(ctx, Packet{Type: DISCONNECT, Code: NotAuthorized, Reason: "re-authentication failed"},
			fmt.Errorf("%w: no authenticator accepted the re-authentication", ErrNoRelevant))
	}
}

// methodRanLocked checks that a Pass for an exchange that named an
// Authentication Method came from an authenticator that ran that method:
// its principal carries the method (or none, which the Session fills in).
// A principal verified by something else, a client certificate say, must
// not stand in for the named method: the CONNACK or AUTH 0x00 would carry
// the method and tell the client that an exchange it never had succeeded
// (for SCRAM, that the server proved its key) [MQTT-4.12.0-1, 4.12.0-5].
func (s *Session) methodRanLocked(p *Principal) error {
	named := s.base.AuthMethod
	if named == "" || p == nil || p.method == "" || p.method == named {
		return nil
	}
	return fmt.Errorf("%w: %q was named but the client was authenticated by %q, which does not implement it [MQTT-4.12.0-1]",
		ErrBadMethod, named, p.method)
}

// acceptLocked checks a principal that passed authentication: it must
// exist, not be expired, keep the identity on re-authentication, and be
// allowed to connect.
func (s *Session) acceptLocked(ctx context.Context, p, cur *Principal, now time.Time) (*Principal, error) {
	if p == nil {
		return nil, errors.New("auth: an authenticator passed without a principal")
	}
	p = p.withDefaults(s.base.AuthMethod, s.base.ClientID, s.base.Listener)
	if p.expired(now) {
		return nil, fmt.Errorf("%w at %s", ErrExpired, p.expiry.UTC().Format("2006-01-02T15:04:05Z07:00"))
	}
	if cur != nil && p.username != cur.username && !s.m.allowIDChange {
		return nil, fmt.Errorf("%w: from %q to %q", ErrIdentityChanged, cur.username, p.username)
	}
	if d := s.m.authz.Authorize(ctx, p, Action{Kind: Connect}); !d.Allowed {
		if cur == nil { // a first CONNECT: the client never had access
			return nil, fmt.Errorf("%w: Connect denied by policy", ErrNotAuthorized)
		}
		return nil, fmt.Errorf("%w: at re-authentication", errPolicyRecheck)
	}
	return p, nil
}

// denyLocked logs a failed authentication and ends the session with out.
func (s *Session) denyLocked(ctx context.Context, out Packet, err error) Response {
	s.logDecision(ctx, "deny", s.principal.Load(), out.Code, err)
	s.reportEndLocked(out.Code, CauseReauth)
	s.closeLocked()
	return Response{Packet: out, Close: true, Err: err}
}

// protocolErrorPacket is the packet that reports a protocol error in the
// current state: a CONNACK before CONNACK was sent, a DISCONNECT after.
func (s *Session) protocolErrorPacket(code ReasonCode) Packet {
	if s.state == stateConnected || s.state == stateReauthing {
		return Packet{Type: DISCONNECT, Code: code.forDisconnect()}
	}
	return Packet{Type: CONNACK, Code: code.forConnack()}
}

// endLocked logs a protocol violation, closes the session and returns the
// response that sends out and closes the connection.
func (s *Session) endLocked(out Packet, err error) Response {
	decision, cause := "protocol_error", CauseProtocol
	if errors.Is(err, ErrReauthRate) {
		decision, cause = "reauth_rate", CauseRate
	}
	s.logDecision(context.Background(), decision, s.principal.Load(), out.Code, err)
	s.reportEndLocked(out.Code, cause)
	s.closeLocked()
	return Response{Packet: out, Close: true, Err: err}
}

func (s *Session) closeLocked() {
	if s.state == stateClosed {
		return
	}
	wasLive := s.state == stateConnected || s.state == stateReauthing
	if wasLive {
		s.last = s.principal.Load()
	}
	s.state = stateClosed
	s.gen++
	s.exchange, s.passState = nil, nil
	s.principal.Store(nil) // closed means closed: Authorize denies from now on
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	s.stopStallLocked()
	if wasLive {
		s.m.unregister(s)
	}
}

// terminate ends the session on its own initiative (a timer, a re-check).
// decide runs under the lock on a session that has not ended; it returns the
// packet to send and whether to end the session at all. The adapter is told
// outside the lock. terminate reports whether it ended the session.
func (s *Session) terminate(decide func() (Packet, bool), err error) bool {
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		return false
	}
	final, ok := decide()
	if !ok {
		s.mu.Unlock()
		return false
	}
	s.logDecision(context.Background(), "disconnect", s.principal.Load(), final.Code, err)
	s.reportEndLocked(final.Code, causeOf(err))
	s.closeLocked()
	s.mu.Unlock()
	s.conn.Close(final) // outside the lock: it may block on the network
	return true
}

func (s *Session) armExpiryLocked(p *Principal, now time.Time) {
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	s.gen++
	if p.expiry.IsZero() {
		return
	}
	gen := s.gen
	s.expiry = s.m.clock.AfterFunc(p.expiry.Sub(now), func() { s.expire(gen) })
}

// expire runs when the expiry timer of generation gen fires.
func (s *Session) expire(gen uint64) {
	s.terminate(func() (Packet, bool) {
		if s.m.onExpiry == CloseOnExpiry {
			return Packet{}, s.gen == gen
		}
		return Packet{Type: DISCONNECT, Code: MaximumConnectTime, Reason: "credential expired"}, s.gen == gen
	}, ErrExpired)
}

func (s *Session) armStallLocked() {
	if s.m.exchangeTimeout < 0 {
		return
	}
	s.stopStallLocked()
	gen, step := s.gen, s.step
	s.stall = s.m.clock.AfterFunc(s.m.exchangeTimeout, func() { s.stalled(gen, step) })
}

func (s *Session) stopStallLocked() {
	if s.stall != nil {
		s.stall.Stop()
		s.stall = nil
	}
}

// stalled runs when the client left the challenge of step unanswered.
func (s *Session) stalled(gen uint64, step int) {
	s.terminate(func() (Packet, bool) {
		if s.gen != gen || s.step != step {
			return Packet{}, false
		}
		switch s.state {
		case stateConnecting:
			return Packet{Type: CONNACK, Code: NotAuthorized}, true
		case stateReauthing:
			return Packet{Type: DISCONNECT, Code: NotAuthorized, Reason: "re-authentication timed out"}, true
		}
		return Packet{}, false
	}, ErrTimeout)
}

// recheck runs check on a live session and disconnects it on an error. It
// reports whether the session was checked and whether it was disconnected.
func (s *Session) recheck(ctx context.Context, check CheckFunc) (checked, revoked bool) {
	s.mu.Lock()
	live := s.state == stateConnected || s.state == stateReauthing
	gen := s.gen
	s.mu.Unlock()
	if !live {
		return false, false
	}
	err := check(ctx, s)
	if err == nil {
		s.resetAuthz()
		return true, false
	}
	code := NotAuthorized
	var de *DenyError
	if errors.As(err, &de) {
		code = de.Code.forDisconnect()
	}
	return true, s.terminate(func() (Packet, bool) {
		return Packet{Type: DISCONNECT, Code: code, Reason: "access revoked"}, s.gen == gen
	}, err)
}

// Update replaces the principal of a live session with p, as a successful
// re-authentication would but without an exchange with the client: for an
// authenticator that learns that an identity's attributes changed (satauth
// follows a service account's annotations this way). It acts only while
// the session's principal is still old, so a re-authentication that ran
// meanwhile wins. p is checked as a re-authentication's principal is: not
// expired, the same user name (unless Config.AllowIdentityChange), Connect
// allowed by the Authorizer. When the check fails, nothing changes and the
// error is returned: a [CheckFunc] that returns it makes [Manager.Recheck]
// disconnect the session. On success the expiry timer is re-armed when p's
// expiry differs (during a re-authentication such a p is left to it).
// The session's own Authorizer is reset (see [SessionAuthorizer]), so no
// decision made for old is reused for p. Update returns nil, changing nothing, when the session is
// not live or its principal is no longer old.
func (s *Session) Update(ctx context.Context, old, p *Principal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.state == stateConnected || s.state == stateReauthing
	if !live || s.principal.Load() != old || old == nil {
		return nil
	}
	now := s.m.clock.Now()
	q, err := s.acceptLocked(ctx, p, old, now)
	if err != nil {
		return err
	}
	if !q.expiry.Equal(old.expiry) {
		if s.state != stateConnected {
			// Re-arming would cancel the exchange's stall timer; the
			// re-authentication in progress sets the principal anyway.
			return nil
		}
		s.armExpiryLocked(q, now)
	}
	s.principal.Store(q)
	s.resetAuthz() // no decision made for the old attributes outlives them
	s.logDecision(ctx, "update", q, Success, nil)
	return nil
}

func wrapUnavailable(err error) error {
	if err == nil {
		return ErrUnavailable
	}
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// logDecision writes the audit record of one authentication decision (see
// AuditConfig). It never logs credentials. s.mu is held.
func (s *Session) logDecision(ctx context.Context, decision string, p *Principal, code ReasonCode, err error) {
	level := s.m.audit.deny
	switch decision {
	case "pass":
		level = s.m.audit.level
	case "reauth_pass":
		// A client may re-authenticate every few minutes for its whole
		// life: one record per connect is the audit trail, the rest is
		// detail.
		level = min(s.m.audit.level, slog.LevelDebug)
	}
	if !s.m.log.Enabled(ctx, level) {
		return
	}
	method := s.base.AuthMethod
	if p != nil && p.method != "" {
		method = p.method // the method that verified the client, e.g. X.509
	}
	attrs := []slog.Attr{
		slog.String("decision", decision),
		slog.String("client_id", s.base.ClientID),
		slog.String("method", method),
		slog.String("reason_code", code.String()),
	}
	if p != nil {
		attrs = append(attrs, slog.String("username", p.username))
	}
	serial, fp := s.certIDsLocked()
	attrs = appendCertIDs(attrs, serial, fp)
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	s.m.log.LogAttrs(ctx, level, "mqttauth decision", attrs...)
}

// reauthAllowedLocked takes one token from the session's re-authentication
// bucket (Config.ReauthBurst tokens, one more every Config.ReauthInterval)
// and reports whether there was one.
func (s *Session) reauthAllowedLocked() bool {
	if s.m.reauthInterval < 0 {
		return true
	}
	now := s.m.clock.Now()
	burst := float64(s.m.reauthBurst)
	if s.reauthAt.IsZero() {
		s.reauthTokens = burst
	} else if d := now.Sub(s.reauthAt); d > 0 {
		s.reauthTokens = min(burst, s.reauthTokens+float64(d)/float64(s.m.reauthInterval))
	}
	s.reauthAt = now
	if s.reauthTokens < 1 {
		return false
	}
	s.reauthTokens--
	return true
}

// AuthorizeWill decides whether the Will Message of the connection may be
// published now, as a Publish of topic: with the principal the session has,
// or had when the connection ended, and the Authorizer's policy in force
// now (never a decision cached before a reload). The Will of a session that
// the library ended because its credential expired, was revoked, lost
// Connect or failed re-authentication is denied: no valid principal stands
// behind it. So is the Will of a principal whose expiry has passed, or that
// may no longer Connect. The decision is observed and audited like any
// other authorization.
//
// Adapters call it when they are about to publish the Will (the connection
// layer, package mqttconn, does); at CONNECT the Will is checked with
// [Session.Authorize] like any Publish.
func (s *Session) AuthorizeWill(ctx context.Context, topic string) Decision {
	a := Action{Kind: Publish, Topic: topic}
	s.mu.Lock()
	p := s.principal.Load()
	if p == nil && s.state == stateClosed {
		switch s.endCause {
		case CauseNone, CauseProtocol, CauseTimeout, CauseRate:
			p = s.last // the principal was still valid when the connection ended
		}
	}
	s.mu.Unlock()
	if p == nil || p.expired(s.m.clock.Now()) {
		return s.observeAuthz(ctx, nil, a, Deny)
	}
	if d := s.m.authz.Authorize(ctx, p, Action{Kind: Connect}); !d.Allowed {
		return s.observeAuthz(ctx, p, a, d)
	}
	return s.observeAuthz(ctx, p, a, s.m.authz.Authorize(ctx, p, a))
}
