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
	return parsePEM(data, "CERTIFICATE", "certificate", x509.ParseCertificate)
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
	return parsePEM(data, "X509 CRL", "CRL", x509.ParseRevocationList)
}

// parsePEM parses every PEM block of data, which must all be of blockType,
// with parse. Text before a block is ignored; no block, another type, a block
// that does not parse or a truncated block is an error wrapping ErrParse.
func parsePEM[T any](data []byte, blockType, what string, parse func([]byte) (T, error)) ([]T, error) {
	var out []T
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != blockType {
			return nil, fmt.Errorf("%w: PEM block %d is %q, want %s", ErrParse, len(out)+1, block.Type, blockType)
		}
		v, err := parse(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %d: %w", ErrParse, what, len(out)+1, err)
		}
		out = append(out, v)
	}
	if bytes.Contains(rest, pemBegin) {
		return nil, fmt.Errorf("%w: truncated or malformed PEM block after %d %ss", ErrParse, len(out), what)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no PEM %s block (%d bytes)", ErrParse, blockType, len(data))
	}
	return out, nil
}
