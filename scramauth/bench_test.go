package scramauth_test

import (
	"log/slog"
	"testing"

	"github.com/xdg-go/scram"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/scramauth"
)

// BenchmarkExchange measures the server's side of one full SCRAM exchange
// (client-first → server-first, client-final → server-final) at 4096
// iterations; the client's steps run with the timer stopped.
//
// server=stored_keys is this package: the store holds StoredKey and
// ServerKey, so a connect costs a few HMACs and hashes. server=pbkdf2_per_connect
// is the design this package avoids: a store that keeps the password (or
// re-derives from it) and runs PBKDF2 on every connect.
func BenchmarkExchange(b *testing.B) {
	users := newUsers(b)
	salts := map[scramauth.Mechanism][]byte{}
	for _, m := range scramauth.Mechanisms {
		c, _ := users.Lookup(m, "alice")
		salts[m] = c.Salt
	}
	perConnect := scramauth.StoreFunc(func(m scramauth.Mechanism, name string) (scramauth.Credential, bool) {
		if name != "alice" {
			return scramauth.Credential{}, false
		}
		c, err := hashOf(m).NewClient("", "pencil", "") // a fresh client: no cache
		if err != nil {
			return scramauth.Credential{}, false
		}
		sc, err := c.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salts[m]), Iters: 4096})
		if err != nil {
			return scramauth.Credential{}, false
		}
		return scramauth.Credential{Salt: salts[m], Iterations: 4096, StoredKey: sc.StoredKey, ServerKey: sc.ServerKey}, true
	})
	for _, server := range []struct {
		name  string
		store scramauth.Store
	}{
		{"stored_keys", users},
		{"pbkdf2_per_connect", perConnect},
	} {
		for _, mech := range scramauth.Mechanisms {
			b.Run("server="+server.name+"/mech="+string(mech), func(b *testing.B) {
				a := newAuthenticator(b, scramauth.Config{Store: server.store})
				client, err := hashOf(mech).NewClient("alice", "pencil", "")
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					conv := client.NewConversation() // derived keys cached by the client
					c1, _ := conv.Step("")
					b.StartTimer()
					r1 := a.Authenticate(ctx, &auth.Request{AuthMethod: string(mech), AuthData: []byte(c1)})
					b.StopTimer()
					c2, err := conv.Step(string(r1.Data))
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					r2 := a.Authenticate(ctx, &auth.Request{AuthMethod: string(mech), Step: 1, State: r1.State, AuthData: []byte(c2)})
					if r2.Outcome != auth.Pass {
						b.Fatal(r2.Err)
					}
				}
			})
		}
	}
}

// BenchmarkSession is the same exchange through an auth.Session (CONNECT,
// AUTH, CONNACK, registration in the Manager), client steps included, as a
// broker runs it.
func BenchmarkSession(b *testing.B) {
	a := newAuthenticator(b, scramauth.Config{})
	m, err := auth.NewManager(auth.Config{Authenticator: a, Authorizer: auth.AllowAuthenticated, ExchangeTimeout: -1,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	client, err := scram.SHA256.NewClient("alice", "pencil", "")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		s := m.NewSession(auth.ConnFunc(func(auth.Packet) {}))
		conv := client.NewConversation()
		c1, _ := conv.Step("")
		r := s.Connect(ctx, &auth.Request{ClientID: "c", AuthMethod: "SCRAM-SHA-256", AuthData: []byte(c1)})
		c2, _ := conv.Step(string(r.Packet.Data))
		r = s.Auth(ctx, auth.Packet{Type: auth.AUTH, Code: auth.ContinueAuthentication, Method: "SCRAM-SHA-256", Data: []byte(c2)})
		if r.Packet.Code != auth.Success {
			b.Fatal(r.Err)
		}
		s.Close()
	}
}
