package jwtauth

import "errors"

// Errors, for errors.Is. The ones that judge the token make Fail results
// (reason code 0x87 Not authorized, or 0x86 Bad User Name or Password when
// the token came in the password field); ErrUnavailable makes an
// Unavailable result.
var (
	// ErrMalformed means the token is not a compact JWS JWT, or its
	// claims cannot be read.
	ErrMalformed = errors.New("jwtauth: malformed token")
	// ErrTooLarge means the token is longer than Config.MaxTokenSize.
	ErrTooLarge = errors.New("jwtauth: token too large")
	// ErrAlgorithm means the token's alg is outside Config.Algorithms
	// ("none" and every HMAC algorithm always are).
	ErrAlgorithm = errors.New("jwtauth: signature algorithm not allowed")
	// ErrSignature means no key of the issuer verifies the signature, or
	// the token names a key id the issuer does not publish.
	ErrSignature = errors.New("jwtauth: invalid signature")
	// ErrIssuer means the iss claim is not Config.Issuer.
	ErrIssuer = errors.New("jwtauth: wrong issuer")
	// ErrAudience means none of the token's audiences is in
	// Config.Audiences.
	ErrAudience = errors.New("jwtauth: wrong audience")
	// ErrExpired means the token's exp has passed.
	ErrExpired = errors.New("jwtauth: token expired")
	// ErrNotYetValid means the token's nbf or iat is later than now plus
	// Config.Leeway.
	ErrNotYetValid = errors.New("jwtauth: token not yet valid")
	// ErrMissingClaim means a required claim (exp, iss, aud, or the
	// identity claim) is absent or empty.
	ErrMissingClaim = errors.New("jwtauth: required claim missing")
	// ErrIdentityChanged means a re-authentication presented a token for
	// another identity than the connection's.
	ErrIdentityChanged = errors.New("jwtauth: re-authentication for another identity")
	// ErrUnavailable means the issuer's discovery document or key set
	// could not be fetched: a connection error, a timeout, a non-2xx
	// answer, or a document that does not parse.
	ErrUnavailable = errors.New("jwtauth: issuer unavailable")
)
