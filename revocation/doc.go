// Package revocation checks client certificates against their issuers' OCSP
// responders and the CRLs named in their CRL distribution points, without
// putting a network lookup on the TLS handshake or, for a known
// certificate, on the CONNECT.
//
// A [Checker] is an x509auth.RevocationChecker: x509auth calls its Check
// with each verified chain at CONNECT (Authenticate) and when it re-checks
// live sessions, also for chains from its verified-chain cache, so a
// cached chain is judged on the current status. It is not called during
// the TLS handshake.
//
//	rc, _ := revocation.New(revocation.Config{OCSP: true, CRLDistributionPoints: true, Mode: revocation.HardFail})
//	defer rc.Close()
//	a, _ := x509auth.New(x509auth.Config{Trust: store, Revocation: rc})
//	m, _ := auth.NewManager(auth.Config{Authenticator: auth.Chain{a}, Authorizer: policy,
//		Watches: []auth.Watch{rc.Watch(a.Check, 0)}}) // disconnect clients revoked while connected
//	defer m.Close()
//
// # Sources
//
// OCSP (Config.OCSP) asks the first HTTP responder of a certificate's
// authority information access extension, or Config.Responder for every
// certificate, with an RFC 6960 POST request (SHA-1 CertID, no nonce: RFC
// 5019 responders pre-sign their answers, and none is required). An
// answer is accepted only when it is for the certificate's serial and
// signed by the issuer, or by a delegated responder whose certificate the
// issuer signed, that names id-kp-OCSPSigning and is valid now; its
// thisUpdate may not be more than five minutes ahead.
//
// CRLs (Config.CRLDistributionPoints) are downloaded from each HTTP URL
// of a certificate's CRL distribution points (DER or PEM) and accepted
// only when their issuer name and signature are the certificate's
// issuer's. Indirect CRLs and delta CRLs are not supported. These CRLs
// are separate from the truststore's CRL files, which x509auth keeps
// enforcing.
//
// Every certificate of the chain below the trusted CA is checked, the leaf
// and its intermediates; one that names neither a responder nor a
// distribution point (and no Config.Responder is set) is not checked.
//
// # The decision
//
// For each certificate, the cached answers decide in this order:
//
//  1. revoked by any source: refused, ErrRevoked (x509auth: CONNACK 0x87,
//     or DISCONNECT Config.RevokedCode on a re-check). A revocation is
//     final: it is enforced even from a stale answer.
//  2. good by any fresh source (now before its nextUpdate; an answer
//     without nextUpdate is fresh for Config.MaxAge, 5 minutes by default,
//     after thisUpdate):
//     accepted.
//  3. otherwise (no answer yet, "unknown", stale, or the last fetch failed:
//     unreachable, slow, badly signed, malformed, too large) Config.Mode
//     decides:
//     - HardFail, the default, fails closed. Check starts the missing
//     fetches (or joins those in flight) and waits for them up to
//     Config.Wait (2 s by default, at most Config.Timeout), then judges
//     again. Without a decisive answer by then, an "unknown" answer is
//     refused with ErrUnknown (CONNACK 0x87) and anything else with
//     ErrUnavailable, which wraps auth.ErrUnavailable (x509auth returns
//     Unavailable: CONNACK 0x88 Server unavailable unless another method
//     of the chain decides). After a failed fetch, Check does not wait
//     again for Config.RetryInterval: clients are refused at once.
//     - SoftFail (fail open) accepts and starts the fetches in the
//     background; the certificate is refused only once an answer says
//     revoked.
//
// So the first CONNECT of a certificate never seen before waits up to
// Config.Wait in HardFail mode and not at all in SoftFail mode; every
// later CONNECT is judged on the cache, in about 200 ns (see BENCHMARKS.md,
// "OCSP").
//
// A re-check of a live session (x509auth.Authenticator.Check) applies the
// same rules except one: it never disconnects for want of an answer, even
// in HardFail mode, so a responder that goes down does not drop connected
// clients. It disconnects (DISCONNECT 0x87) for a revocation and, in
// HardFail mode, for an "unknown" answer, as CONNECT would refuse them.
//
// # Caching and refresh
//
// Answers are cached per certificate (issuer name and serial; at most
// Config.MaxEntries, the least recently used of a random sample evicted
// first) and CRLs per URL (at most Config.MaxCRLs). An answer is fetched
// again Config.RefreshBefore before its nextUpdate (by default a quarter of
// its validity span before), and not sooner than Config.RetryInterval after
// the previous fetch; a failed fetch is retried after RetryInterval while
// the last good answer is kept until it expires. A background goroutine
// does this every Config.RefreshInterval for every cached entry, so
// connected clients stay covered; Check also starts a due refresh when it
// meets one. MaxEntries should exceed the number of clients connected at
// once: an evicted answer is no longer refreshed, and the certificate's
// next check fetches it again (waiting, in HardFail mode, as for a first
// connect). Concurrent fetches of one certificate or URL are coalesced
// into one request (golang.org/x/sync/singleflight). Every fetch is bounded
// by Config.Timeout and by Config.MaxOCSPBytes / MaxCRLBytes, and is
// cancelled by Close.
//
// # Live revocation
//
// When a fetch finds a certificate newly revoked (an OCSP answer, or a CRL
// that lists a serial its predecessor did not), the watch [Checker.Watch]
// (in auth.Config.Watches) re-checks every live session through
// auth.Manager.Recheck with the given check
// (x509auth.Authenticator.Check), which now fails for that
// certificate: its client gets DISCONNECT 0x87. [Checker.OnRevoke] is the
// underlying hook. The Checker is also an auth.Notifier (Checker.Notify,
// the same signal): [Checker.Watch] is that re-check as an auth.Watch for
// auth.Config.Watches, so a Manager built with it subscribes itself and
// needs no handle on the Checker (package aioconfig does this).
//
// [Checker.Stats] counts fetches, failures, revocations, hard-fail
// refusals, soft-fail passes and evictions, for metrics. Package
// revocationtest provides an OCSP responder and CRL server for tests.
package revocation
