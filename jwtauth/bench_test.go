package jwtauth_test

import (
	"context"
	"testing"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/jwtauth"
	"github.com/mqttauth/mqttauth/jwtauth/jwttest"
)

// BenchmarkVerify: a full verification (RS256 signature, claims, two
// mapped attributes) with the issuer's key already fetched: the cost of
// every CONNECT and re-authentication. The issuer is not asked again.
func BenchmarkVerify(b *testing.B) {
	iss := jwttest.NewIssuer(b)
	a, clock := newAuth(b, iss, func(c *jwtauth.Config) { c.ClaimsToAttributes = map[string]string{"site": "site", "floor": "floor"} })
	tok := iss.Mint(b, jwttest.Claims{Audience: []string{aud}, IssuedAt: clock.Now(), Extra: map[string]any{"site": "berlin", "floor": 3}})
	req := &auth.Request{ClientID: "c", AuthMethod: "JWT", AuthData: []byte(tok)}
	if r := a.Authenticate(context.Background(), req); r.Outcome != auth.Pass {
		b.Fatal(r.Err)
	}
	fetches := iss.JWKSFetches()
	b.ReportAllocs()
	for b.Loop() {
		if r := a.Authenticate(context.Background(), req); r.Outcome != auth.Pass {
			b.Fatal(r.Err)
		}
	}
	if iss.JWKSFetches() != fetches {
		b.Fatal("the key was fetched again")
	}
}
