package satauth_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/satauth"
	"github.com/mqttauth/mqttauth/satauth/sattest"
)

// BenchmarkCachedVerification: a token already reviewed, its service
// account already read: the cost of every reconnect and re-authentication
// with a known token.
func BenchmarkCachedVerification(b *testing.B) {
	srv := sattest.NewServer(b, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", annotations)
	a, _ := newAuth(b, srv, func(c *satauth.Config) { c.Logger = newDiscardLogger() })
	tok := srv.Token("default", "sensor", sattest.TokenOptions{})
	req := &auth.Request{ClientID: "c", AuthMethod: satauth.Method, AuthData: []byte(tok)}
	if r := a.Authenticate(context.Background(), req); r.Outcome != auth.Pass {
		b.Fatal(r.Err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := a.Authenticate(context.Background(), req); r.Outcome != auth.Pass {
			b.Fatal(r.Err)
		}
	}
	b.ReportMetric(float64(srv.Calls(sattest.TokenReview)+srv.Calls(sattest.ServiceAccountGet)), "api-calls")
}

// BenchmarkLocalVerification: a full local verification of a token the
// cache has not seen (RS256 signature, claims), keys and service account
// already cached.
func BenchmarkLocalVerification(b *testing.B) {
	srv := sattest.NewServer(b, sattest.Options{})
	srv.AddServiceAccount("default", "sensor", annotations)
	a, _ := newAuth(b, srv, func(c *satauth.Config) {
		c.Logger = newDiscardLogger()
		c.Mode = satauth.ModeLocal
		c.CacheSize = -1 // every connect verifies the signature
	})
	tok := srv.Token("default", "sensor", sattest.TokenOptions{})
	req := &auth.Request{ClientID: "c", AuthMethod: satauth.Method, AuthData: []byte(tok)}
	if r := a.Authenticate(context.Background(), req); r.Outcome != auth.Pass {
		b.Fatal(r.Err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := a.Authenticate(context.Background(), req); r.Outcome != auth.Pass {
			b.Fatal(r.Err)
		}
	}
	b.ReportMetric(float64(srv.Calls(sattest.TokenReview)+srv.Calls(sattest.ServiceAccountGet)), "api-calls")
}

// BenchmarkAPICalls: 10,000 connects, from 100 concurrent clients, by 100
// distinct tokens of `accounts` service accounts, against a fresh
// authenticator; counts the fake API server's calls. One op is the 10,000
// connects.
func BenchmarkAPICalls(b *testing.B) {
	for _, accounts := range []int{100, 10} {
		b.Run(fmt.Sprintf("tokens=100/accounts=%d", accounts), func(b *testing.B) {
			srv := sattest.NewServer(b, sattest.Options{})
			for i := range accounts {
				srv.AddServiceAccount("default", fmt.Sprintf("sa-%d", i), annotations)
			}
			tokens := make([][]byte, 100)
			for i := range tokens {
				tokens[i] = []byte(srv.Token("default", fmt.Sprintf("sa-%d", i%accounts), sattest.TokenOptions{}))
			}
			var reviews, gets, runs int
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				a, _ := newAuth(b, srv, func(c *satauth.Config) { c.Logger = newDiscardLogger() })
				srv.ResetCalls()
				b.StartTimer()
				var wg sync.WaitGroup
				for w := range 100 {
					wg.Go(func() {
						for i := range 100 {
							tok := tokens[(w*7+i)%100]
							r := a.Authenticate(context.Background(), &auth.Request{AuthMethod: satauth.Method, AuthData: tok})
							if r.Outcome != auth.Pass {
								b.Error(r.Err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				reviews += srv.Calls(sattest.TokenReview)
				gets += srv.Calls(sattest.ServiceAccountGet)
				runs++
				a.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(reviews)/float64(runs), "reviews/10k-connects")
			b.ReportMetric(float64(gets)/float64(runs), "sa-gets/10k-connects")
			b.ReportMetric(float64(reviews+gets)/float64(runs), "api-calls/10k-connects")
			if reviews > 100*runs { // at most one TokenReview per distinct token and run
				b.Fatalf("%d TokenReviews for %d runs of 100 distinct tokens", reviews, runs)
			}
		})
	}
}
