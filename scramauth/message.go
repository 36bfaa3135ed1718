package scramauth

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds on what a client may send; the Session bounds Authentication Data as
// a whole (auth.Config.MaxDataLength), these bound the SCRAM fields.
const (
	maxMessageLength  = 4096
	maxNonceLength    = 512
	maxUsernameLength = 512
)

// clientFirst is a parsed client-first-message (RFC 5802 section 7):
//
//	gs2-cbind-flag "," [ "a=" saslname ] "," [reserved-mext ","] "n=" saslname "," "r=" c-nonce ["," extensions]
type clientFirst struct {
	gs2Header string // "n,," or "y,," (with an authzid when one was sent)
	username  string // decoded
	authzID   string // decoded; empty when absent
	nonce     string // the client's nonce
}

// parseClientFirst parses and checks a client-first-message. It is stricter
// than xdg-go/scram's parser, which it runs before: the client nonce must be
// non-empty printable ASCII without commas, the user name valid UTF-8, the
// gs2 flag "n" or "y" (a "p" flag fails with ErrChannelBinding), and
// extensions well-formed.
func parseClientFirst(b []byte) (clientFirst, error) {
	var m clientFirst
	if len(b) == 0 {
		return m, fmt.Errorf("%w: empty client-first-message", ErrMalformed)
	}
	if len(b) > maxMessageLength {
		return m, fmt.Errorf("%w: client-first-message of %d bytes", ErrMalformed, len(b))
	}
	s := string(b)
	if !utf8.ValidString(s) {
		return m, fmt.Errorf("%w: client-first-message is not UTF-8", ErrMalformed)
	}
	f := strings.Split(s, ",")
	switch {
	case strings.HasPrefix(f[0], "p="):
		return m, fmt.Errorf("%w: the client requested channel binding (gs2 flag p); use a -PLUS method", ErrChannelBinding)
	case f[0] != "n" && f[0] != "y":
		return m, fmt.Errorf("%w: gs2 channel binding flag is not n, y or p", ErrMalformed)
	case len(f) < 4:
		return m, fmt.Errorf("%w: client-first-message has %d fields, want at least 4", ErrMalformed, len(f))
	}
	if f[1] != "" {
		raw, ok := strings.CutPrefix(f[1], "a=")
		if !ok {
			return m, fmt.Errorf("%w: gs2 authzid is not a=", ErrMalformed)
		}
		var err error
		if m.authzID, err = decodeSASLName(raw, "authzid"); err != nil {
			return m, err
		}
	}
	m.gs2Header = f[0] + "," + f[1] + ","
	if strings.HasPrefix(f[2], "m=") {
		return m, fmt.Errorf("%w: mandatory extension m= is not supported", ErrMalformed)
	}
	raw, ok := strings.CutPrefix(f[2], "n=")
	if !ok {
		return m, fmt.Errorf("%w: client-first-message has no n= user name", ErrMalformed)
	}
	var err error
	if m.username, err = decodeSASLName(raw, "user name"); err != nil {
		return m, err
	}
	nonce, ok := strings.CutPrefix(f[3], "r=")
	if !ok {
		return m, fmt.Errorf("%w: client-first-message has no r= nonce", ErrMalformed)
	}
	if err := checkNonce(nonce); err != nil {
		return m, err
	}
	m.nonce = nonce
	for _, ext := range f[4:] {
		if !isExtension(ext) {
			return m, fmt.Errorf("%w: bad extension in client-first-message", ErrMalformed)
		}
	}
	return m, nil
}

// clientFinal is a parsed client-final-message:
//
//	"c=" base64(cbind-input) "," "r=" nonce ["," extensions] "," "p=" base64(proof)
type clientFinal struct {
	cbind []byte
	nonce string
	proof []byte
}

// parseClientFinal parses a client-final-message of a mechanism whose proofs
// are size bytes.
func parseClientFinal(b []byte, size int) (clientFinal, error) {
	var m clientFinal
	if len(b) == 0 {
		return m, fmt.Errorf("%w: empty client-final-message", ErrMalformed)
	}
	if len(b) > maxMessageLength {
		return m, fmt.Errorf("%w: client-final-message of %d bytes", ErrMalformed, len(b))
	}
	s := string(b)
	if !utf8.ValidString(s) {
		return m, fmt.Errorf("%w: client-final-message is not UTF-8", ErrMalformed)
	}
	f := strings.Split(s, ",")
	if len(f) < 3 {
		return m, fmt.Errorf("%w: client-final-message has %d fields, want at least 3", ErrMalformed, len(f))
	}
	cb, ok := strings.CutPrefix(f[0], "c=")
	if !ok {
		return m, fmt.Errorf("%w: client-final-message has no c= channel binding", ErrMalformed)
	}
	var err error
	if m.cbind, err = decodeBase64(cb); err != nil {
		return m, fmt.Errorf("%w: c= is not base64", ErrMalformed)
	}
	if m.nonce, ok = strings.CutPrefix(f[1], "r="); !ok {
		return m, fmt.Errorf("%w: client-final-message has no r= nonce", ErrMalformed)
	}
	for _, ext := range f[2 : len(f)-1] {
		if !isExtension(ext) {
			return m, fmt.Errorf("%w: bad extension in client-final-message", ErrMalformed)
		}
	}
	p, ok := strings.CutPrefix(f[len(f)-1], "p=")
	if !ok {
		return m, fmt.Errorf("%w: client-final-message does not end with p= proof", ErrMalformed)
	}
	if m.proof, err = decodeBase64(p); err != nil {
		return m, fmt.Errorf("%w: p= is not base64", ErrMalformed)
	}
	if len(m.proof) != size {
		return m, fmt.Errorf("%w: proof of %d bytes, want %d", ErrMalformed, len(m.proof), size)
	}
	return m, nil
}

// decodeBase64 decodes standard padded base64 and nothing else.
// encoding/base64 skips '\r' and '\n' even in strict mode, which would let a
// proof be re-encoded ("p=ab\rcd") and still verify: the message would not be
// the one the client sent. RFC 5802's grammar allows the base64 alphabet only.
func decodeBase64(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=') {
			return nil, fmt.Errorf("%w: a character outside the base64 alphabet", ErrMalformed)
		}
	}
	return base64.StdEncoding.Strict().DecodeString(s)
}

// serverFirstNonce returns the nonce of a server-first-message this package
// produced ("r=NONCE,s=SALT,i=N").
func serverFirstNonce(s1 string) (string, bool) {
	r, ok := strings.CutPrefix(s1, "r=")
	if !ok {
		return "", false
	}
	nonce, _, ok := strings.Cut(r, ",")
	return nonce, ok
}

// decodeSASLName decodes a saslname: no NUL, '=' only in "=2C" (',') and
// "=3D" ('='), at least one character, valid UTF-8.
func decodeSASLName(s, what string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: empty %s", ErrMalformed, what)
	}
	if len(s) > maxUsernameLength {
		return "", fmt.Errorf("%w: %s of %d bytes", ErrMalformed, what, len(s))
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL in %s", ErrMalformed, what)
	}
	if strings.IndexByte(s, '=') < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for {
		i := strings.IndexByte(s, '=')
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", fmt.Errorf("%w: '=' in %s not followed by 2C or 3D", ErrMalformed, what)
		}
		s = s[i+3:]
	}
}

// checkNonce checks a client nonce: 1 to maxNonceLength printable ASCII
// characters other than ','.
func checkNonce(n string) error {
	if n == "" {
		return fmt.Errorf("%w: empty nonce", ErrMalformed)
	}
	if len(n) > maxNonceLength {
		return fmt.Errorf("%w: nonce of %d bytes", ErrMalformed, len(n))
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c < 0x21 || c > 0x7e || c == ',' {
			return fmt.Errorf("%w: nonce has a character outside printable ASCII", ErrMalformed)
		}
	}
	return nil
}

// isExtension reports whether s is an attr-val: one ASCII letter, '=', and a
// value.
func isExtension(s string) bool {
	return len(s) >= 2 && s[1] == '=' && (s[0]|0x20 >= 'a' && s[0]|0x20 <= 'z')
}
