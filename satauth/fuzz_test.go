package satauth_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

// FuzzToken feeds arbitrary tokens to local verification (JWKS file, no
// API): nothing panics, and only the one real token passes.
func FuzzToken(f *testing.F) {
	srv := sattest.NewServer(f, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", nil)
	good := srv.Token("default", "sensor", sattest.TokenOptions{})
	parts := strings.Split(good, ".")
	f.Add(good)
	f.Add(b64(`{"alg":"none"}`) + "." + parts[1] + ".")
	f.Add(b64(`{"alg":"HS256"}`) + "." + parts[1] + "." + parts[2])
	f.Add(parts[0] + "." + parts[1])
	f.Add("..")
	f.Add("e30.e30.e30")
	f.Add(b64(`{"alg":"RS256","kid":"x","crit":["b64"]}`) + "." + parts[1] + "." + parts[2])
	f.Add(parts[0] + "." + b64(`{"exp":1e400,"aud":{"a":1}}`) + "." + parts[2])
	a, err := satauth.New(context.Background(), satauth.Config{
		Audiences: []string{"aio-mq"}, Mode: satauth.ModeLocal, JWKSFile: srv.JWKSFile(), Issuer: srv.Issuer(),
		DisableAttributes: true, CacheSize: -1, Logger: newDiscardLogger(),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(a.Close)
	f.Fuzz(func(t *testing.T, token string) {
		r := a.Authenticate(context.Background(), &auth.Request{AuthMethod: satauth.Method, AuthData: []byte(token)})
		switch r.Outcome {
		case auth.Pass:
			if token != good {
				// Base64 has a few encodings of the same bytes
				// (trailing bits); anything else passing is a bug.
				if r.Principal.Username() != "system:serviceaccount:default:sensor" {
					t.Fatalf("a mutated token passed as %q", r.Principal.Username())
				}
			}
		case auth.Fail:
			if r.Err == nil || strings.Contains(r.Err.Error(), token) && len(token) > 20 {
				t.Fatalf("bad error %v", r.Err)
			}
		default:
			t.Fatalf("outcome %v: %v", r.Outcome, r.Err)
		}
	})
}
