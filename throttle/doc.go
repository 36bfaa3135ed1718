// Package throttle defends authentication against brute force and
// flapping clients: it counts failed authentications per client address
// and per identity and, past a rate, refuses further CONNECT attempts fast,
// before any backend (a custom authentication server, the TokenReview API,
// an OCSP responder, a password hash) is asked.
//
// # Model
//
// A [Throttle] is an [auth.Authenticator] that wraps another one, usually
// the whole [auth.Chain], so it composes with every method:
//
//	Session -> Throttle -> Chain{x509auth, jwtauth, satauth, customauth, ...}
//
// It sees each Request before the chain and each Result after it:
//
//   - Before: a CONNECT (Step 0, not a re-authentication) whose client
//     address group, claimed User Name or Client Identifier is over its
//     limit is refused with CONNACK 0x9F (Connection rate exceeded;
//     MQTT 3.1.1 clients get return code 3, see
//     auth.ReasonCode.ConnackV311). The chain is not called. Refusals do
//     not count, so the client gets in again as soon as a failure is
//     forgiven.
//   - After: a Fail counts against the address group, the claimed user
//     name, the client identifier, and the verified identity where one is
//     known (the connection's principal at a failed re-authentication, a
//     Principal carried by the Fail). Pass does not count and does not
//     reset the counters (so a valid login cannot launder guesses from
//     the same address); Continue, Unavailable (the backend's fault, not
//     the client's) and NotRelevant do not count.
//
// Each counter is a token bucket of failures ([Limit]): Burst failures in
// a row, then one more per Every. The defaults are 10 in a row and one per
// 6 s (10 a minute sustained), for addresses and identities alike. IPv4
// addresses count alone (/32) and IPv6 addresses by their /64
// (Config.IPv6Prefix), so a host cannot escape by rotating through its
// prefix; IPv4-mapped IPv6 addresses count as IPv4.
//
// Memory is bounded: at most Config.MaxEntries counters (default 100,000,
// about 60 bytes each, 6 MB in all) in 64 locked shards keyed by a seeded
// 64-bit hash, so a long user name costs no more than a short one. A
// counter whose failures are all forgiven is dropped when next seen; when
// a shard is full, a new counter evicts among a few sampled ones a
// forgiven counter, else the one with the least debt, so blocked clients
// are the last to be forgotten. A refused attempt costs well under a
// microsecond and no allocation (see BENCHMARKS.md).
//
// A user name that names no one is never an identity counter
// (Config.MarkerUsernames: "jwt" for a token in the password, where every
// client sends the same one; Config.MarkerMethods: methods such as K8S-SAT
// that do not verify the CONNECT user name). Otherwise one client's bad
// tokens would lock every client of the method out.
//
// The identity counter lets anyone lock an account out for a while by
// failing in its name; that is the trade-off for stopping a distributed
// guessing attack on one account. Turn it off with DisableIdentity where
// availability of single accounts matters more; behind a NAT, raise the
// address limit.
//
// # Use
//
//	th, err := throttle.New(auth.Chain{certs, tokens, passwords}, throttle.Config{})
//	m, err := auth.NewManager(auth.Config{Authenticator: th, Authorizer: policy})
package throttle
