// Package scramauth is SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677)
// as MQTT v5 enhanced authentication methods, with re-authentication.
//
// The server stores, per user and mechanism, a salt, an iteration count and
// two keys derived from the password (StoredKey, ServerKey): never the
// password, and nothing it could check a password against without running
// PBKDF2, which the server never does. The client proves it knows the
// password without sending it, and the server proves it holds the user's
// keys in return. The mechanism itself is github.com/xdg-go/scram's server
// conversation, wrapped: this package adds a stricter message parser, the
// nonce and channel-binding checks below, fake credentials for unknown users,
// and the mapping onto the auth.Session's steps and reason codes.
//
// # Wire flow
//
// At CONNECT (Authentication Method "SCRAM-SHA-256" or "SCRAM-SHA-512"):
//
//	CONNECT   Authentication Data = client-first-message   n,,n=alice,r=CNONCE
//	AUTH 0x18 Authentication Data = server-first-message   r=CNONCE SNONCE,s=SALT,i=4096
//	AUTH 0x18 Authentication Data = client-final-message   c=biws,r=CNONCE SNONCE,p=PROOF
//	CONNACK 0x00 Authentication Data = server-final-message v=SIGNATURE
//
// Re-authentication runs the same exchange with fresh nonces:
//
//	AUTH 0x19 client-first, AUTH 0x18 server-first, AUTH 0x18 client-final,
//	AUTH 0x00 server-final.
//
// The client should check the server-final-message (the server signature):
// it proves the server holds the user's ServerKey.
//
// # Use
//
//	users, err := scramauth.NewFileStore(scramauth.FileStoreConfig{Path: "/etc/mqtt/users.json"})
//	...
//	authn, err := scramauth.New(scramauth.Config{Store: users, UnknownUserKey: key})
//	manager, err := auth.NewManager(auth.Config{
//		Authenticator: authn, Authorizer: policy,
//		// A removed user loses its live connections.
//		Watches: []auth.Watch{{Name: "scram users", Source: users, Check: scramauth.CheckStore(users)}},
//	})
//
// Create users with [NewCredential] or the scramuser command of the examples
// module (scramuser add alice -file users.json < password).
//
// The [auth.Principal] of a successful exchange has the SCRAM user name as its
// Username, the mechanism as its Method and the user's attributes from the
// store as its Attributes.
//
// # Reason codes
//
//   - Wrong password, tampered proof, unknown user: 0x87 (Not authorized),
//     at the client-final step. Not 0x86 (Bad User Name or Password):
//     SCRAM carries no User Name or Password in CONNECT, and the user name
//     it carries is not wrong on its own; 0x87 is also what a DISCONNECT can
//     carry, so CONNECT and re-authentication fail alike.
//   - Unknown user: the server-first-message looks like a real user's (a
//     salt derived from the user name with Config.UnknownUserKey, stable
//     per name, and Config.UnknownUserIterations), and the exchange fails
//     at the proof like a wrong password, so user names cannot be probed by
//     the reply or its timing. The log says ErrUnknownUser.
//   - Malformed or out-of-order SCRAM messages (a client-final-message at
//     step 0, a client-first-message at step 1, bad base64, a nonce that is
//     not printable, a c= that does not repeat the gs2 header): 0x87. Not
//     0x81 (Malformed Packet): the MQTT packet is well-formed, and
//     Authentication Data is opaque to MQTT; the SCRAM content is an
//     authentication failure. The log says ErrMalformed or ErrOutOfOrder.
//   - Channel binding requested (gs2 flag "p"): 0x8C (Bad authentication
//     method). Channel binding belongs to the -PLUS mechanisms, which this
//     package does not offer: the client picked the wrong method. Flags "n"
//     (no channel binding) and "y" (the client supports it, the server does
//     not advertise it, which is true) are accepted.
//   - An authzid other than the user name: 0x87 (ErrAuthzID).
//   - Re-authentication with another user name than the connection's: 0x87
//     in a DISCONNECT (ErrUserChanged, also auth.ErrIdentityChanged), before
//     any lookup.
//   - A replayed client-final-message fails: the server nonce is fresh per
//     exchange, so the nonce no longer matches (ErrNonce, 0x87).
//   - A client that leaves the server-first-message unanswered is ended by
//     the Session after auth.Config.ExchangeTimeout: CONNACK 0x87, or
//     DISCONNECT 0x87 during re-authentication.
//   - A Store that returns a credential that is not valid for the mechanism
//     is a server fault: Unavailable (CONNACK 0x88).
//
// # What xdg-go/scram does, and what this package adds
//
// The library draws the server nonce from crypto/rand (24 bytes, base64),
// compares the proof in constant time (hmac.Equal on the StoredKey), checks
// the whole combined nonce in the client-final-message, and refuses a second
// client-final-message on the same conversation. This package adds: a
// parser that runs before the library's and is stricter (printable non-empty
// client nonce, valid UTF-8, bounded lengths, well-formed extensions, exact
// proof length, base64 fields in the base64 alphabet only: encoding/base64,
// which the library uses, skips '\r' and '\n', so a proof re-encoded as
// "p=ab\rcd" would verify) so that errors are classified and never quote
// the message;
// an explicit check that the final nonce starts with the client's and equals
// the exchange's, in constant time; fake credentials for unknown users (the
// library answers "e=unknown-user" at the first step, which would let user
// names be probed); refusal of channel binding before the library sees it;
// refusal of an authzid that differs from the user name (the library only
// reports it).
package scramauth
