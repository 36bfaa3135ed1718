package x509auth_test

import (
	"testing"

	"github.com/mqttauth/mqttauth/x509auth"
)

func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{
		"CN = Contoso Root CA Cert, OU = Engineering, C = US", "/C=DE/O=Smart Factory Inc./CN=device001",
		`CN="a, b"+O=x\2C`, "2.5.4.3=x", `CN=\`, `CN="`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := x509auth.ParseSubject(s)
		if err != nil {
			return
		}
		if c == "" {
			t.Fatalf("%q: empty canonical form without an error", s)
		}
		// Parsing is deterministic.
		c2, err := x509auth.ParseSubject(s)
		if err != nil || c2 != c {
			t.Fatalf("%q: not deterministic", s)
		}
	})
}
