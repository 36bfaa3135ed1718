// Package certid names a certificate the way operators look it up: the
// serial number as `openssl x509 -serial` prints it and the SHA-256
// fingerprint as `openssl x509 -fingerprint -sha256` prints it, so that a
// log line can be matched against a certificate file or a CA's database.
package certid

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"math/big"
	"strings"
)

// Serial returns c's serial number in OpenSSL's form: upper-case hex, two
// digits per byte of the DER integer's magnitude ("00" for zero), with a
// leading "-" for a negative serial. It is what follows "serial=" in the
// output of `openssl x509 -serial -noout`.
func Serial(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	return SerialNumber(c.SerialNumber)
}

// SerialNumber formats a serial number as [Serial] does.
func SerialNumber(n *big.Int) string {
	if n == nil {
		return ""
	}
	b := n.Bytes() // magnitude, big-endian
	if len(b) == 0 {
		return "00"
	}
	s := strings.ToUpper(hex.EncodeToString(b))
	if n.Sign() < 0 {
		return "-" + s
	}
	return s
}

// Fingerprint returns the SHA-256 digest of c's DER encoding as upper-case
// hex byte pairs joined by colons, as `openssl x509 -fingerprint -sha256
// -noout` prints it after "sha256 Fingerprint=".
func Fingerprint(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	sum := sha256.Sum256(c.Raw)
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, len(sum)*3-1)
	for i, b := range sum {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[b>>4], digits[b&0x0f])
	}
	return string(out)
}
