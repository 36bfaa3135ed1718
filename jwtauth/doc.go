// Package jwtauth authenticates MQTT clients with JSON Web Tokens from any
// OpenID Connect issuer (Entra ID, Keycloak, Auth0, Dex, a cloud workload
// identity, SPIFFE JWT-SVIDs): the token's signature is verified locally
// against the issuer's published keys, and its identity and chosen claims
// become the principal.
//
// # Model
//
//   - Keys: from the discovery document (Issuer +
//     "/.well-known/openid-configuration", or Config.DiscoveryURL), whose
//     issuer must equal Config.Issuer and whose jwks_uri names the key set,
//     or straight from Config.JWKSURL. They are fetched on first use (or
//     by Refresh), again when a token names an unknown key id (the issuer
//     rotated) but at most once per Config.KeyRefreshInterval (default
//     10 s, a golang.org/x/time/rate token bucket, concurrent refetches
//     merged into one), and when older than Config.KeyMaxAge (1 h). A
//     failed fetch keeps the last good keys. The key set code is shared
//     with satauth (internal/jwks).
//   - Algorithms: an explicit allow-list (default RS256 and ES256) of
//     asymmetric algorithms only. "none" and HMAC cannot be configured and
//     are refused from the raw header before go-jose parses the token, so
//     the issuer's public key can never serve as an HMAC secret. A key
//     whose "alg" is outside the list, private and symmetric keys, and
//     encryption keys are dropped from the set.
//   - Claims: iss must equal Config.Issuer; aud must contain one of
//     Config.Audiences; exp is required and strict (the session ends at
//     exp, so a leeway would only admit tokens for nothing); nbf and iat,
//     when present, may be up to Config.Leeway (default 1 min) in the
//     future, for clock skew. The identity is the string claim
//     Config.UsernameClaim (default "sub").
//   - Attributes: Config.ClaimsToAttributes maps top-level claim names to
//     principal attribute names for ABAC. Strings map as they are, numbers
//     as their JSON text, booleans as "true"/"false"; arrays, objects and
//     null are not mapped (the attribute is absent and an ABAC rule that
//     needs it does not match: fail closed).
//   - Where the token is: FromMethod (default): the Authentication Data
//     of a CONNECT naming Config.Method (default "JWT"; "OAUTH2-JWT" is
//     common), single-step: CONNACK 0x00 or a failure, no AUTH exchange.
//     Re-authentication (AUTH 0x19 with a fresh token in the data) swaps
//     the principal; its expiry, the new exp, re-arms the session's
//     timer; a token for another identity is refused. FromPassword: the
//     CONNECT Password, for MQTT 3.1.1 clients, with
//     Config.PasswordUsername as the marker user name or any user name;
//     there is no re-authentication, so the client reconnects with a fresh
//     token before exp.
//   - Outcomes: NotRelevant when the token is not where Config says; Pass
//     with the principal (method Config.Method, user name from the claim,
//     the mapped attributes, expiry = exp); Fail 0x87 (0x86 for a
//     password) for an invalid token, with an error wrapping ErrExpired,
//     ErrAudience, ...; Unavailable when no key can be had because the
//     issuer is down, so a Chain moves on and a Session answers 0x88.
//
// Tokens never reach logs or errors: records carry a SHA-256 prefix
// ("token_sha256"). Package jwttest runs a local issuer for tests.
//
// # Use
//
//	a, err := jwtauth.New(jwtauth.Config{
//		Issuer:             "https://login.example.com/tenant",
//		Audiences:          []string{"mqtt://broker.example.com"},
//		ClaimsToAttributes: map[string]string{"site": "site", "tier": "tier"},
//	})
//	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{a, others}, Authorizer: policy})
package jwtauth
