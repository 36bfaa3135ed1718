package auth

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/mqttauth/mqttauth/internal/certid"
)

// AuditConfig sets how a Manager's sessions write the audit log: one
// structured record to Config.Logger per authentication decision (pass,
// deny, re-authentication, disconnect) and per authorization deny, with
// the keys
//
//	decision            pass, reauth_pass, deny, reauth_unavailable,
//	                    disconnect, protocol_error, authorize_deny,
//	                    authorize_allow
//	client_id           the MQTT client identifier
//	username            the verified identity (the principal's user name)
//	method              the method that verified the client, else the
//	                    Authentication Method the client named
//	reason_code         the reason code sent
//	serial              the client certificate's serial, as openssl prints it
//	fingerprint_sha256  its SHA-256 fingerprint, as openssl prints it
//	action, topic, rule for authorization: the action, its topic and the
//	                    rule that decided
//	err                 why, for a deny
//
// Passwords, tokens and Authentication Data are never logged.
type AuditConfig struct {
	// Level is the level of the records of passes and of sampled
	// authorization allows. The zero value is slog.LevelInfo.
	Level slog.Level
	// DenyLevel is the level of the records of refusals, disconnects and
	// authorization denies. The zero value is slog.LevelInfo.
	DenyLevel slog.Level
	// SampleAllows logs one authorization allow in SampleAllows (1 logs
	// every allow); zero logs none. Denies are always logged.
	SampleAllows uint64
}

// audit is a Manager's AuditConfig in force.
type audit struct {
	level, deny slog.Level
	every       uint64
	allows      atomic.Uint64
}

func newAudit(cfg AuditConfig) audit {
	return audit{level: cfg.Level, deny: cfg.DenyLevel, every: cfg.SampleAllows}
}

// sampleAllow reports whether this authorization allow is logged.
func (a *audit) sampleAllow() bool {
	if a.every == 0 {
		return false
	}
	return a.allows.Add(1)%a.every == 0
}

// certIDsLocked returns the serial and fingerprint of the client's
// certificate, computed once per session; empty without one.
func (s *Session) certIDsLocked() (serial, fingerprint string) {
	if !s.certDone {
		s.certDone = true
		if st := s.base.TLS; st != nil && len(st.PeerCertificates) > 0 {
			c := st.PeerCertificates[0]
			s.certSerial, s.certFP = certid.Serial(c), certid.Fingerprint(c)
		}
	}
	return s.certSerial, s.certFP
}

// observeAuthz reports an authorization decision to the Observer and, for
// a deny or a sampled allow, to the audit log. p is nil when the session
// has no principal. It returns d.
func (s *Session) observeAuthz(ctx context.Context, p *Principal, a Action, d Decision) Decision {
	if d.Allowed && s.m.quietAllows {
		return d // the common case on the delivery path: nothing to report
	}
	r := AuthzAllow
	switch {
	case p == nil:
		r = AuthzError
	case !d.Allowed:
		r = AuthzDeny
	}
	s.m.obs.Authorized(AuthzEvent{Kind: a.Kind, Result: r})
	if r == AuthzAllow && !s.m.audit.sampleAllow() {
		return d
	}
	s.logAuthz(ctx, p, a, d)
	return d
}

// logAuthz writes the audit record of one authorization.
func (s *Session) logAuthz(ctx context.Context, p *Principal, a Action, d Decision) {
	level, decision := s.m.audit.deny, "authorize_deny"
	if d.Allowed {
		level, decision = s.m.audit.level, "authorize_allow"
	}
	if !s.m.log.Enabled(ctx, level) {
		return
	}
	s.mu.Lock()
	serial, fp := s.certIDsLocked()
	clientID := s.base.ClientID
	s.mu.Unlock()
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs,
		slog.String("decision", decision),
		slog.String("client_id", clientID),
		slog.String("action", a.Kind.String()),
		slog.String("topic", a.Topic),
		slog.String("reason_code", d.Code().String()),
	)
	if p != nil {
		attrs = append(attrs, slog.String("method", p.method), slog.String("username", p.username))
	}
	if d.Rule != "" {
		attrs = append(attrs, slog.String("rule", d.Rule))
	}
	attrs = appendCertIDs(attrs, serial, fp)
	s.m.log.LogAttrs(ctx, level, "mqttauth decision", attrs...)
}

func appendCertIDs(attrs []slog.Attr, serial, fp string) []slog.Attr {
	if serial == "" && fp == "" {
		return attrs
	}
	return append(attrs, slog.String("serial", serial), slog.String("fingerprint_sha256", fp))
}

// reportEndLocked tells the Observer how a session ended: refused before
// CONNACK, or disconnected after it for cause.
func (s *Session) reportEndLocked(code ReasonCode, cause Cause) {
	s.endCause = cause
	ev := SessionEvent{Kind: SessionRefused, Code: code}
	if s.state == stateConnected || s.state == stateReauthing {
		ev.Kind, ev.Cause = SessionDisconnected, cause
		if cause == CauseReauth {
			ev.Kind = SessionReauthFailed
		}
	}
	s.m.obs.Session(ev)
}
