package scramauth

import "errors"

// Sentinel errors, for errors.Is. They reach logs through auth.Result.Err and
// never carry a password, a key, a proof or Authentication Data.
var (
	// ErrMalformed means a SCRAM message does not follow the RFC 5802
	// grammar, or arrived at the wrong step of the exchange (a
	// client-final-message where a client-first-message belongs).
	ErrMalformed = errors.New("scramauth: malformed SCRAM message")
	// ErrChannelBinding means the client asked for channel binding (gs2 flag
	// "p"), which the SCRAM-SHA-256 and SCRAM-SHA-512 methods do not offer:
	// that is what the -PLUS variants are for.
	ErrChannelBinding = errors.New("scramauth: channel binding is not supported")
	// ErrAuthzID means the client asked to act as another identity (a gs2
	// authzid that differs from its user name).
	ErrAuthzID = errors.New("scramauth: authorization identity differs from the user name")
	// ErrNonce means the nonce of the client-final-message is not the one
	// of this exchange: a replay, or a message of another exchange.
	ErrNonce = errors.New("scramauth: nonce does not match the exchange")
	// ErrInvalidProof means the client proof is wrong: a wrong password, a
	// tampered message, or an unknown user (see ErrUnknownUser).
	ErrInvalidProof = errors.New("scramauth: invalid client proof")
	// ErrUnknownUser is wrapped together with ErrInvalidProof when the user
	// does not exist for the mechanism. The client cannot tell the two
	// apart; only the server's log can.
	ErrUnknownUser = errors.New("scramauth: unknown user")
	// ErrUserChanged means a re-authentication named a user other than the
	// connection's. Errors with it also match auth.ErrIdentityChanged.
	ErrUserChanged = errors.New("scramauth: re-authentication names another user")
	// ErrOutOfOrder means a packet arrived with no SCRAM exchange in
	// progress for it, or after the exchange ended.
	ErrOutOfOrder = errors.New("scramauth: message out of order")
	// ErrInvalidCredential means a stored credential or a users file is not
	// usable: too few iterations, a key of the wrong size, an unknown
	// mechanism, a user name that SASLprep would change.
	ErrInvalidCredential = errors.New("scramauth: invalid credential")
)
