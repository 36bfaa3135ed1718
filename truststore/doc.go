// Package truststore holds the CAs that a broker trusts to issue client
// certificates, and the CRLs that revoke them, and reloads both in place
// when their files change.
//
// A [Set] is an immutable snapshot: trusted CAs (roots or intermediates;
// each is a trust anchor) and, per issuer, the CRL in force, checked
// against that issuer's signature. A [Source] gives the current Set; a Set
// is a Source that never changes, and a [Store] is one that reloads:
//
//	store, err := truststore.New(truststore.Config{
//		CAPaths:  []string{"/etc/mqtt/client-ca"}, // a ConfigMap volume
//		CRLPaths: []string{"/etc/mqtt/crl"},
//	})
//	if err != nil { ... }
//	defer store.Close()
//	chains, err := store.Current().Verify(peerCerts, truststore.VerifyOptions{})
//
// # Reload
//
// A Store watches the directory of each file it reads (and each directory
// it reads), so a Kubernetes ConfigMap or Secret update, which swaps the
// "..data" symbolic link, is seen like any edit. Events are debounced
// (Config.Debounce), then every file is read again and a new Set replaces
// the old one with one atomic store; readers never lock. Subscribers
// ([Store.Subscribe]) and [Store.Updated] hear of each new generation.
//
// A reload that fails keeps the last good Set: a truncated or empty file,
// garbage, a block that does not parse, a CA that is not a CA, a CRL that
// its issuer in the set did not sign, a file named in the Config that is
// missing. The error is logged, kept for [Store.Err], passed to
// Config.OnError and sent to subscribers as Event.Err. Removing a CA
// (deleting its file from a watched directory or its block from a bundle)
// is not an error: it is how every certificate below that CA is revoked.
// A Set with no CA refuses everything and is logged at error level.
//
// # Revocation
//
// CRLs may be PEM ("X509 CRL" blocks) or DER. A CRL whose issuer is a CA
// of the set must be signed by it, or the load fails. A CRL whose issuer
// is not in the set (an intermediate that clients present) is kept and
// checked, when a chain passes through that issuer, against the presented
// issuer's key; a mismatch refuses the chain ([ErrCRLSignature]). So a CA
// can be removed while its CRL stays in place. A certificate whose serial is
// on its issuer's CRL is refused ([ErrRevoked]), whichever position it has
// in the chain. When a CRL's nextUpdate has passed, [EnforceStaleCRL] (the
// default) keeps enforcing it and logs a warning once; [RefuseStaleCRL]
// refuses everything below that issuer until a fresh CRL is loaded.
//
// # Verification
//
// [Set.Verify] verifies a presented chain with crypto/x509 (signatures,
// validity, name constraints, the clientAuth extended key usage), refuses a
// CA certificate presented as a leaf, then drops chains that contain a
// revoked certificate. A leaf without an extended key usage extension may
// be used for anything (RFC 5280) and is accepted unless
// VerifyOptions.RequireClientAuthEKU; a leaf whose extension lacks
// clientAuth is always refused. A revocation error names the revoked
// certificate by subject, serial and SHA-256 fingerprint in openssl's
// forms (package internal/certid). [Set.CheckVerified] re-checks a chain verified
// before, without repeating signature checks, which is what a re-check of
// many live connections needs.
package truststore
