package auth

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
)

// Request is what a client presented, handed to an [Authenticator].
//
// The same Request type serves the CONNECT packet, each AUTH packet that
// continues a multi-step exchange, and re-authentication (AUTH 0x19).
// Authenticators must not keep the Request or its byte slices after
// Authenticate returns, and must never log Password or AuthData.
type Request struct {
	// ClientID is the client identifier from CONNECT.
	ClientID string
	// Username is the User Name from CONNECT; HasUsername says whether the
	// packet carried one. It is what the client claims, not an identity.
	Username    string
	HasUsername bool
	// Password is the Password from CONNECT; HasPassword says whether the
	// packet carried one. It is empty after CONNECT.
	Password    []byte
	HasPassword bool
	// AuthMethod is the Authentication Method of the CONNECT packet, or of
	// the AUTH packet being answered; empty when the client named none.
	AuthMethod string
	// AuthData is the Authentication Data of the packet being answered.
	AuthData []byte
	// TLS is the state of the client's TLS connection, or nil for a plain
	// connection. VerifiedChains is empty when the listener verifies
	// client certificates itself in VerifyConnection (as x509auth's does,
	// so that trust reloads apply): an authenticator verifies
	// PeerCertificates against its own trust rather than relying on it.
	TLS *tls.ConnectionState
	// RemoteAddr is the client's network address, when known.
	RemoteAddr net.Addr
	// Listener names the listener the client connected to.
	Listener string
	// ProtocolVersion is 5 for MQTT v5, 4 for v3.1.1, 3 for v3.1.
	ProtocolVersion byte

	// Reauth is true during re-authentication: the exchange began with
	// AUTH 0x19 after CONNACK.
	Reauth bool
	// Step counts the packets of the current exchange: 0 for the CONNECT
	// packet or the AUTH 0x19 that began it, 1 for the client's first AUTH
	// 0x18 answer, and so on.
	Step int
	// State is what the authenticator returned in its last Result of this
	// exchange (the Continue that asked for this step). At Step 0 of a
	// re-authentication it is the State of the Pass that authenticated the
	// connection, so an authenticator can keep what it needs to verify the
	// client again. It is nil at CONNECT.
	State any
	// Current is the connection's principal during re-authentication, and
	// nil before CONNACK.
	Current *Principal
}

// Outcome says how an [Authenticator] judged a [Request].
type Outcome uint8

// The outcomes. The zero Outcome is NotRelevant, so a zero Result never
// grants access.
const (
	// NotRelevant: the credentials are not for this authenticator (no
	// client certificate for X.509, another Authentication Method). A Chain
	// moves on to the next authenticator.
	NotRelevant Outcome = iota
	// Pass: the credentials are valid; Result.Principal is the identity.
	Pass
	// Fail: the credentials are relevant and invalid; Result.Code says why.
	Fail
	// Continue: a multi-step exchange needs another packet from the client.
	// Result.Data is the challenge sent in AUTH 0x18.
	Continue
	// Unavailable: the authenticator could not decide (its backend is
	// down). At CONNECT a Chain moves on; during re-authentication the
	// client is told to continue later and stays connected.
	Unavailable
)

var outcomeNames = [...]string{"NotRelevant", "Pass", "Fail", "Continue", "Unavailable"}

// String returns the outcome's name.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Result is an [Authenticator]'s judgement of one Request. Build it with
// [PassResult], [FailResult], [ContinueResult] or [UnavailableResult]; the zero
// Result is NotRelevant.
type Result struct {
	Outcome Outcome
	// Principal is the verified identity, for Pass.
	Principal *Principal
	// Code is the reason code for Fail: a CONNACK failure code at CONNECT,
	// turned into a valid DISCONNECT code after CONNACK. Zero means 0x87.
	Code ReasonCode
	// Data is the Authentication Data to send: the challenge for Continue;
	// for Pass, optional final data carried by the CONNACK or AUTH 0x00
	// (a SCRAM server signature).
	Data []byte
	// State is kept by the Session and handed back in Request.State: with
	// Continue, for the next step; with Pass, for re-authentication.
	State any
	// Err says why, for Fail, Unavailable and NotRelevant. It reaches logs:
	// it must not contain secrets.
	Err error
}

// PassResult returns a Pass for p.
func PassResult(p *Principal) Result { return Result{Outcome: Pass, Principal: p} }

// FailResult returns a Fail with the reason code and the error that explains
// it.
func FailResult(code ReasonCode, err error) Result {
	return Result{Outcome: Fail, Code: code, Err: err}
}

// ContinueResult returns a Continue that sends data as the challenge and keeps
// state for the next step.
func ContinueResult(data []byte, state any) Result {
	return Result{Outcome: Continue, Data: data, State: state}
}

// UnavailableResult returns an Unavailable caused by err.
func UnavailableResult(err error) Result { return Result{Outcome: Unavailable, Err: err} }

// failCode returns the Fail code, 0x87 when unset.
func (r Result) failCode() ReasonCode {
	if r.Code < 0x80 {
		return NotAuthorized
	}
	return r.Code
}

// Authenticator judges the credentials a client presents.
//
// Implementations must be safe for concurrent use. Authenticate should
// return promptly when ctx is done, with an Unavailable result.
type Authenticator interface {
	Authenticate(ctx context.Context, req *Request) Result
}

// AuthenticatorFunc adapts a function to an [Authenticator].
type AuthenticatorFunc func(ctx context.Context, req *Request) Result

// Authenticate calls f(ctx, req).
func (f AuthenticatorFunc) Authenticate(ctx context.Context, req *Request) Result {
	return f(ctx, req)
}
