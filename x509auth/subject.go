package x509auth

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrSubject marks a subject in a Mapping that does not parse.
var ErrSubject = errors.New("x509auth: bad subject")

// attributeTypes maps the short names OpenSSL and RFC 4514 use to OIDs.
var attributeTypes = map[string]asn1.ObjectIdentifier{
	"cn":                     {2, 5, 4, 3},
	"commonname":             {2, 5, 4, 3},
	"sn":                     {2, 5, 4, 4},
	"surname":                {2, 5, 4, 4},
	"serialnumber":           {2, 5, 4, 5},
	"c":                      {2, 5, 4, 6},
	"countryname":            {2, 5, 4, 6},
	"l":                      {2, 5, 4, 7},
	"localityname":           {2, 5, 4, 7},
	"st":                     {2, 5, 4, 8},
	"s":                      {2, 5, 4, 8},
	"stateorprovincename":    {2, 5, 4, 8},
	"street":                 {2, 5, 4, 9},
	"streetaddress":          {2, 5, 4, 9},
	"o":                      {2, 5, 4, 10},
	"organizationname":       {2, 5, 4, 10},
	"ou":                     {2, 5, 4, 11},
	"organizationalunitname": {2, 5, 4, 11},
	"title":                  {2, 5, 4, 12},
	"postalcode":             {2, 5, 4, 17},
	"name":                   {2, 5, 4, 41},
	"gn":                     {2, 5, 4, 42},
	"givenname":              {2, 5, 4, 42},
	"initials":               {2, 5, 4, 43},
	"dnqualifier":            {2, 5, 4, 46},
	"pseudonym":              {2, 5, 4, 65},
	"uid":                    {0, 9, 2342, 19200300, 100, 1, 1},
	"dc":                     {0, 9, 2342, 19200300, 100, 1, 25},
	"emailaddress":           {1, 2, 840, 113549, 1, 9, 1},
	"email":                  {1, 2, 840, 113549, 1, 9, 1},
	"e":                      {1, 2, 840, 113549, 1, 9, 1},
}

// maxSubjectLen bounds a subject string, so a configuration cannot make
// parsing costly.
const maxSubjectLen = 4096

// ParseSubject parses a distinguished name written as OpenSSL prints it
// ("CN = Contoso Root CA Cert, OU = Engineering, C = US"), as RFC 4514
// writes it ("CN=x,OU=y"), or in OpenSSL's slash form ("/C=DE/O=Acme/CN=x").
// Attribute names are the usual short or long names, case-insensitive, or
// dotted OIDs. Values may be quoted ("...") and may escape characters with
// a backslash, or with a backslash and two hex digits. Multi-valued RDNs
// ('+') are accepted and, like everything else, compared without order.
//
// The result is the subject's canonical form (see [CanonicalName]): it is
// what matches, not the string.
func ParseSubject(s string) (string, error) {
	if len(s) > maxSubjectLen {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrSubject, maxSubjectLen)
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: not UTF-8", ErrSubject)
	}
	t := strings.TrimSpace(s)
	if t == "" {
		return "", fmt.Errorf("%w: empty", ErrSubject)
	}
	seps := ",;+"
	if strings.HasPrefix(t, "/") {
		t, seps = t[1:], "/+"
	}
	var attrs []pkix.AttributeTypeAndValue
	for i := 0; ; {
		// Attribute type, up to '='.
		eq := strings.IndexByte(t[i:], '=')
		if eq < 0 {
			return "", fmt.Errorf("%w: %q: missing '=' after %q", ErrSubject, s, strings.TrimSpace(t[i:]))
		}
		name := strings.TrimSpace(t[i : i+eq])
		oid, err := attributeType(name)
		if err != nil {
			return "", fmt.Errorf("%w: %q: %w", ErrSubject, s, err)
		}
		i += eq + 1
		value, n, err := parseValue(t[i:], seps)
		if err != nil {
			return "", fmt.Errorf("%w: %q: %s: %w", ErrSubject, s, name, err)
		}
		if value == "" {
			return "", fmt.Errorf("%w: %q: empty value for %s", ErrSubject, s, name)
		}
		attrs = append(attrs, pkix.AttributeTypeAndValue{Type: oid, Value: value})
		i += n
		if i >= len(t) {
			break
		}
		i++ // the separator
		if strings.TrimSpace(t[i:]) == "" {
			return "", fmt.Errorf("%w: %q: trailing separator", ErrSubject, s)
		}
	}
	return canonical(attrs), nil
}

func attributeType(name string) (asn1.ObjectIdentifier, error) {
	if name == "" {
		return nil, errors.New("empty attribute name")
	}
	if oid, ok := attributeTypes[strings.ToLower(name)]; ok {
		return oid, nil
	}
	// A dotted OID: at least two arcs of digits.
	parts := strings.Split(name, ".")
	if len(parts) < 2 || len(parts) > 64 {
		return nil, fmt.Errorf("unknown attribute %q", name)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p == "" || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("unknown attribute %q", name)
		}
		oid[i] = n
	}
	return oid, nil
}

// parseValue reads an attribute value up to an unescaped separator and
// returns it unescaped, with the number of bytes consumed (not counting
// the separator).
func parseValue(t string, seps string) (string, int, error) {
	var b strings.Builder
	i := 0
	for i < len(t) && t[i] == ' ' {
		i++
	}
	if i < len(t) && t[i] == '"' {
		i++
		for {
			if i >= len(t) {
				return "", 0, errors.New("unterminated quote")
			}
			c := t[i]
			if c == '"' {
				i++
				break
			}
			if c == '\\' {
				r, n, err := unescape(t[i:])
				if err != nil {
					return "", 0, err
				}
				b.WriteString(r)
				i += n
				continue
			}
			b.WriteByte(c)
			i++
		}
		for i < len(t) && t[i] == ' ' {
			i++
		}
		if i < len(t) && !strings.ContainsRune(seps, rune(t[i])) {
			return "", 0, errors.New("text after a quoted value")
		}
		return b.String(), i, nil
	}
	for i < len(t) {
		c := t[i]
		if strings.IndexByte(seps, c) >= 0 {
			break
		}
		if c == '\\' {
			r, n, err := unescape(t[i:])
			if err != nil {
				return "", 0, err
			}
			b.WriteString(r)
			i += n
			continue
		}
		b.WriteByte(c)
		i++
	}
	return b.String(), i, nil
}

// unescape decodes "\c" or "\XX" at the start of t.
func unescape(t string) (string, int, error) {
	if len(t) < 2 {
		return "", 0, errors.New("dangling backslash")
	}
	if len(t) >= 3 && isHex(t[1]) && isHex(t[2]) {
		v, _ := hex.DecodeString(t[1:3])
		return string(v), 3, nil
	}
	_, size := utf8.DecodeRuneInString(t[1:])
	return t[1 : 1+size], 1 + size, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// CanonicalName returns the canonical form of a certificate's subject or
// issuer, to compare with what [ParseSubject] returns. Two names are equal
// when they hold the same attributes, in any order, with values equal
// after trimming, collapsing runs of white space and folding case (as
// OpenSSL compares names).
func CanonicalName(n pkix.Name) string { return canonical(n.Names) }

func canonical(attrs []pkix.AttributeTypeAndValue) string {
	parts := make([]string, 0, len(attrs))
	for _, a := range attrs {
		var v string
		switch x := a.Value.(type) {
		case string:
			v = x
		default:
			v = fmt.Sprint(x)
		}
		v = foldValue(v)
		parts = append(parts, a.Type.String()+"="+strconv.Itoa(len(v))+":"+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, "\n")
}

// foldValue trims, collapses white space and folds case.
func foldValue(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	space := false
	for _, r := range strings.TrimSpace(v) {
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}
