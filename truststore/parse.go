package truststore

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

var pemBegin = []byte("-----BEGIN")

// ParseCertificates parses PEM CERTIFICATE blocks. Text before a block is
// ignored, as OpenSSL does; anything else is an error wrapping [ErrParse]:
// no block at all (an empty file, garbage), a block of another type, a
// block that does not parse, or a block that begins and does not end (a
// truncated file). It never panics.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: PEM block %d is %q, want CERTIFICATE", ErrParse, len(certs)+1, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %w", ErrParse, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if bytes.Contains(rest, pemBegin) {
		return nil, fmt.Errorf("%w: truncated or malformed PEM block after %d certificates", ErrParse, len(certs))
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no PEM CERTIFICATE block (%d bytes)", ErrParse, len(data))
	}
	return certs, nil
}

// ParseCRLs parses certificate revocation lists: PEM "X509 CRL" blocks, or
// one DER-encoded CRL when data holds no PEM. The same rules as
// [ParseCertificates] apply. Signatures are not checked here; a [Set] checks
// them against its CAs.
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) {
	if !bytes.Contains(data, pemBegin) {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, fmt.Errorf("%w: empty CRL", ErrParse)
		}
		crl, err := x509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("%w: DER CRL: %w", ErrParse, err)
		}
		return []*x509.RevocationList{crl}, nil
	}
	var crls []*x509.RevocationList
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("%w: PEM block %d is %q, want X509 CRL", ErrParse, len(crls)+1, block.Type)
		}
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: CRL %d: %w", ErrParse, len(crls)+1, err)
		}
		crls = append(crls, crl)
	}
	if bytes.Contains(rest, pemBegin) {
		return nil, fmt.Errorf("%w: truncated or malformed PEM block after %d CRLs", ErrParse, len(crls))
	}
	if len(crls) == 0 {
		return nil, fmt.Errorf("%w: no PEM X509 CRL block", ErrParse)
	}
	return crls, nil
}
