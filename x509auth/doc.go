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
// handshake, resumed sessions included. Authenticate verifies
// Request.TLS.PeerCertificates again against the current set rather than
// trusting ConnectionState.VerifiedChains, which crypto/tls leaves empty
// in this mode; the chain the handshake verified is remembered with the
// parsed certificate (held weakly, so it goes with the connection), so
// this costs a few map lookups. If VerifiedChains is present (a listener
// configured some other way), a chain from it is re-checked against the
// current set: its CA must still be trusted and nothing in it revoked.
//
// A chain is valid when it leads to a trusted CA, every certificate is
// within its validity period, the leaf is not a CA and names clientAuth in
// its extended key usage (Config.AllowMissingEKU also accepts a leaf with no
// such extension), and no certificate is on its issuer's CRL.
// Refusals are logged with the subject and serial, never keys.
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
