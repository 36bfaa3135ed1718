// Package x509auth authenticates MQTT clients by their TLS client
// certificates, against a [truststore.Source] that may reload, and maps
// certificate subjects to authorization attributes as Azure IoT
// Operations' authorizationAttributes do.
//
// An [Authenticator] is an [auth.Authenticator] and provides the listener's
// TLS configuration:
//
//	store, _ := truststore.New(truststore.Config{CAPaths: []string{"/etc/mqtt/client-ca"}})
//	a, _ := x509auth.New(x509auth.Config{
//		Trust: store,
//		Mappings: []x509auth.Mapping{
//			{Name: "thermostat", Subject: "CN = thermostat", Attributes: map[string]string{"group": "thermostat_group"}},
//			{Name: "intermediate", Subject: "CN = Fabrikam Intermediate CA 1", Attributes: map[string]string{"manufacturer": "fabrikam"}},
//		},
//	})
//	ln, _ := tls.Listen("tcp", ":8883", a.ServerTLSConfig(&tls.Config{Certificates: serverCerts}))
//	m, _ := auth.NewManager(auth.Config{
//		Authenticator: auth.Chain{a}, Authorizer: policy,
//		Watches: []auth.Watch{a.Watch(store)}, // disconnect clients that lose trust
//	})
//	defer m.Close()
//
// # Verification
//
// The listener requires a certificate (tls.RequireAnyClientCert) and
// verifies it in VerifyConnection against the trust set current at that
// handshake, resumed sessions included (crypto/tls calls VerifyConnection
// on a resumption, never VerifyPeerCertificate: a base configuration's
// VerifyPeerCertificate is called from VerifyConnection on resumed
// sessions). Authenticate verifies
// Request.TLS.PeerCertificates again against the current set rather than
// trusting ConnectionState.VerifiedChains, which crypto/tls leaves empty
// in this mode; the chain the handshake verified is remembered with the
// parsed certificate (held weakly, so it goes with the connection), so
// this costs a few map lookups. If VerifiedChains is present (a listener
// configured some other way), a chain from it is re-checked against the
// current set: its CA must still be trusted and nothing in it revoked.
//
// A chain is valid when it leads to a trusted CA, every certificate is
// within its validity period, the leaf is not a CA and may be used for
// client authentication, and no certificate is on its issuer's CRL.
//
// # Extended key usage
//
// As RFC 5280 (4.2.1.12) says and crypto/x509, OpenSSL and mosquitto do, a
// leaf without an extended key usage extension may be used for anything,
// client authentication included: `openssl x509 -req` without an
// extension file makes such certificates, and they are accepted by
// default. Config.RequireClientAuthEKU refuses them, for a PKI that always
// names the usage. A leaf whose extension exists and names neither
// clientAuth nor anyExtendedKeyUsage (a server certificate, serverAuth
// only) is refused in both modes ([ErrUsage]).
//
// # Logs
//
// Every certificate logged (a refusal at the handshake or at CONNECT, a
// session disconnected by a re-check, an accepted client at debug level)
// carries its subject, its serial (key "serial") and its SHA-256
// fingerprint (key "fingerprint_sha256") in the forms `openssl x509
// -serial -fingerprint -sha256` prints, so that two certificates with the
// same common name can be told apart and found in a CA's database. A
// revocation error names the revoked certificate the same way. Keys are
// never logged.
//
// # Cache
//
// The verified chain is remembered per parsed leaf, which is held weakly:
// the entry goes when the connection and its session let go of the
// certificate and the garbage collector runs, so the cache follows the
// live connections ([Authenticator.CachedChains]). An entry keeps the
// issuers above the leaf in its own slice, never one that shares an array
// with the leaf.
//
// crypto/tls parses the client's certificates anew on every full
// handshake, and a resumed session's from its ticket, so a client that
// reconnects usually brings a certificate the per-certificate cache has
// never seen. Presented chains that verified are therefore also
// remembered by content (the SHA-256 of their DER, leaf first, in the
// order presented; bounded by Config.ChainCacheSize, 4096 by default,
// about 150 bytes each): the same chain presented again is not verified
// by signature again, since signatures depend on those bytes alone.
// Everything that a change of trust or time can alter is still checked on
// every connection, full or resumed: the CA is still trusted, nothing in
// the chain is on a CRL, every certificate is within its validity period,
// the leaf's usage; and Config.Revocation still runs at CONNECT. A chain
// that fails these checks is verified from scratch, in case another chain
// still leads to a trusted CA.
//
// A client that names an MQTT v5 Authentication Method in CONNECT is not
// authenticated by its certificate: [Authenticator.Authenticate] is
// NotRelevant then, so the method the client asked for runs (a Chain moves
// on to it) or the client is refused with 0x8C. A certificate never stands
// in for SCRAM or any other method [MQTT-4.12.0-1].
//
// # Identity and attributes
//
// The user name is the leaf's common name by default; Config.Identity can
// pick the subject DN, the URI SAN (a SPIFFE ID), the first DNS SAN or the
// first e-mail SAN. The principal's method is "X.509" ([Method]) and its
// expiry the earliest notAfter of the verified chain, so the session ends
// when any certificate of the chain expires.
//
// Attributes follow authorizationAttributes: the verified chain is walked
// from the leaf up to the trusted CA, and the first certificate whose
// subject matches a [Mapping] gives that mapping's attributes; matching
// stops there (a thermostat matched by its own CN does not also get its
// intermediate's attributes). Subjects are written OpenSSL-style ("CN =
// Contoso Root CA Cert, OU = Engineering, C = US"), RFC 4514-style or in
// OpenSSL's slash form, and compared as parsed names: the same set of
// attributes in any order, values compared after trimming, collapsing
// white space and folding case, as OpenSSL compares names. A subject
// matches only a certificate subject with exactly its attributes.
//
// # Live revocation
//
// [Authenticator.Watch], given to the Manager (auth.Config.Watches),
// re-checks every live session when the store changes, through [auth.Manager.Recheck], and disconnects those
// whose certificate no longer verifies (a CA removed, a serial revoked):
// DISCONNECT 0x87 unless Config.RevokedCode says otherwise. A re-check
// costs a map lookup per certificate of a remembered chain; a full
// verification happens only when the remembered chain lost its CA, in
// case another chain still leads to a trusted one.
package x509auth
