package auth

import (
	"errors"
	"fmt"
)

// Sentinel errors, for errors.Is.
var (
	// ErrProtocol marks a violation of the MQTT v5 rules for enhanced
	// authentication by the client.
	ErrProtocol = errors.New("auth: protocol error")
	// ErrBadMethod marks an Authentication Method that no authenticator
	// supports, or that differs from the one the exchange began with.
	ErrBadMethod = errors.New("auth: bad authentication method")
	// ErrNoRelevant means no authenticator found the credentials relevant.
	ErrNoRelevant = errors.New("auth: no authentication method is relevant")
	// ErrUnavailable means an authenticator could not decide.
	ErrUnavailable = errors.New("auth: authentication unavailable")
	// ErrExpired means the credential's expiry has passed.
	ErrExpired = errors.New("auth: credential expired")
	// ErrIdentityChanged means re-authentication verified another user.
	ErrIdentityChanged = errors.New("auth: identity changed on re-authentication")
	// ErrTimeout means the client did not answer a challenge in time.
	ErrTimeout = errors.New("auth: authentication exchange timed out")
	// ErrClosed means the session has ended.
	ErrClosed = errors.New("auth: session closed")
	// ErrRevoked means a connection lost the access it had: a re-check
	// or a re-authentication found that it may no longer connect.
	ErrRevoked = errors.New("auth: access revoked")
	// ErrNotAuthorized means the authorizer denied Connect to a client
	// that authenticated at CONNECT: it never had access, so nothing was
	// revoked. The CONNACK is 0x87 (Not authorized).
	ErrNotAuthorized = errors.New("auth: not authorized to connect")
	// ErrReauthRate means a client re-authenticated more often than
	// Config.ReauthInterval and Config.ReauthBurst allow; the session is
	// disconnected with 0x96 (Message rate too high).
	ErrReauthRate = errors.New("auth: re-authentication rate exceeded")
)

// DenyError is an error that carries the reason code to send.
type DenyError struct {
	Code ReasonCode
	Err  error
}

// Error returns the reason code and the cause.
func (e *DenyError) Error() string {
	if e.Err == nil {
		return "auth: denied: " + e.Code.String()
	}
	return fmt.Sprintf("auth: denied: %v: %v", e.Code, e.Err)
}

// Unwrap returns the cause.
func (e *DenyError) Unwrap() error { return e.Err }
