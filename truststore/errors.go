package truststore

import "errors"

// Sentinel errors, for errors.Is. Verification errors wrap one of them and
// the crypto/x509 error that caused it, when there is one.
var (
	// ErrEmpty means the set holds no trusted CA: every client certificate
	// is refused.
	ErrEmpty = errors.New("truststore: no trusted client CA")
	// ErrUntrusted means no chain leads from the certificate to a trusted
	// CA: an unknown CA, a missing intermediate or a bad signature.
	ErrUntrusted = errors.New("truststore: certificate not issued by a trusted CA")
	// ErrExpired means a certificate of the chain is expired or not yet
	// valid.
	ErrExpired = errors.New("truststore: certificate expired or not yet valid")
	// ErrUsage means the certificate may not be used for client
	// authentication (its extended key usage says otherwise).
	ErrUsage = errors.New("truststore: certificate not valid for client authentication")
	// ErrCALeaf means a CA certificate was presented as a client
	// certificate.
	ErrCALeaf = errors.New("truststore: a CA certificate cannot be a client certificate")
	// ErrRevoked means a certificate of the chain is on its issuer's CRL.
	ErrRevoked = errors.New("truststore: certificate revoked")
	// ErrStaleCRL means a CRL's nextUpdate has passed and the policy is
	// RefuseStaleCRL.
	ErrStaleCRL = errors.New("truststore: CRL is past its nextUpdate")
	// ErrCRLSignature means a CRL is not signed by any trusted CA with its
	// issuer's name.
	ErrCRLSignature = errors.New("truststore: CRL not signed by a trusted CA")
	// ErrNotCA means a certificate given as a trusted CA is not a CA.
	ErrNotCA = errors.New("truststore: trusted certificate is not a CA")
	// ErrParse means a file or buffer does not hold what it should: no PEM
	// block, a truncated block, a block of another type, or a DER error.
	ErrParse = errors.New("truststore: parse error")
	// ErrClosed means the Store was closed.
	ErrClosed = errors.New("truststore: closed")
)
