package jwtauth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/jwtauth"
	"github.com/mqttauth/mqttauth/jwtauth/jwttest"
)

// FuzzToken feeds arbitrary tokens to the authenticator: nothing panics,
// nothing but a Fail or the one real token's Pass comes out, and no error
// carries the token.
func FuzzToken(f *testing.F) {
	iss := jwttest.NewIssuer(f)
	a, clock := newAuth(f, iss, func(c *jwtauth.Config) {
		c.ClaimsToAttributes = map[string]string{"site": "site", "n": "n"}
		c.KeyRefreshInterval = time.Hour // the fuzzer's invented kids cost one fetch
	})
	good := iss.Mint(f, jwttest.Claims{Audience: []string{aud}, IssuedAt: clock.Now(), Extra: map[string]any{"site": "s", "n": 1.5}})
	parts := strings.Split(good, ".")
	f.Add(good)
	f.Add(b64(`{"alg":"none"}`) + "." + parts[1] + ".")
	f.Add(b64(`{"alg":"HS256","kid":"key-1"}`) + "." + parts[1] + "." + parts[2])
	f.Add(parts[0] + "." + parts[1])
	f.Add("..")
	f.Add("e30.e30.e30")
	f.Add(b64(`{"alg":"RS256","kid":"x","crit":["b64"]}`) + "." + parts[1] + "." + parts[2])
	f.Add(parts[0] + "." + b64(`{"exp":1e400,"aud":{"a":1}}`) + "." + parts[2])
	f.Add(parts[0] + "." + b64(`{"iss":"`+iss.URL()+`","sub":"x","aud":"`+aud+`","exp":99999999999,"site":[1]}`) + "." + parts[2])
	f.Fuzz(func(t *testing.T, token string) {
		r := a.Authenticate(context.Background(), &auth.Request{AuthMethod: "JWT", AuthData: []byte(token)})
		switch r.Outcome {
		case auth.Pass:
			if r.Principal.Username() != "device-1" {
				t.Fatalf("a mutated token passed as %q", r.Principal.Username())
			}
		case auth.Fail:
			if r.Err == nil || len(token) > 20 && strings.Contains(r.Err.Error(), token) {
				t.Fatalf("bad error %v", r.Err)
			}
		default:
			t.Fatalf("outcome %v: %v", r.Outcome, r.Err)
		}
	})
}
