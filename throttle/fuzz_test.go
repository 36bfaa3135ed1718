package throttle_test

import (
	"context"
	"testing"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/throttle"
)

// strAddr is a net.Addr of any text, as a broker may hand over (a
// WebSocket or a Unix socket address).
type strAddr string

func (a strAddr) Network() string { return "test" }
func (a strAddr) String() string  { return string(a) }

// FuzzAuthenticate feeds arbitrary addresses and identities: nothing
// panics, the table stays bounded, and a Pass from the backend is never
// turned into anything else unless the request was refused as throttled.
func FuzzAuthenticate(f *testing.F) {
	f.Add("192.0.2.1:1883", "alice", "c1", "wrong")
	f.Add("[2001:db8::1%eth0]:1883", "", "", "secret")
	f.Add("::ffff:10.0.0.1", "bob", "", "x")
	f.Add("not an address", "\x00", "\xff", "")
	f.Add("[fe80::1%25zone]:0", "a", "b", "secret")
	th, _, _ := newThrottle(f, throttle.Config{MaxEntries: 64 * 4, Address: throttle.Limit{Burst: 2}, Identity: throttle.Limit{Burst: 2}})
	f.Fuzz(func(t *testing.T, addr, user, client, pass string) {
		r := th.Authenticate(context.Background(), &auth.Request{ClientID: client, Username: user, HasUsername: user != "",
			Password: []byte(pass), HasPassword: true, RemoteAddr: strAddr(addr)})
		switch {
		case r.Outcome == auth.Pass:
			if pass != "secret" {
				t.Fatal("a wrong password passed")
			}
		case r.Code == auth.ConnectionRateExceeded:
		case r.Code != auth.BadUserNameOrPassword || pass == "secret":
			t.Fatalf("unexpected %v %v", r.Outcome, r.Code)
		}
		if n := th.Len(); n > 64*4 {
			t.Fatalf("%d counters", n)
		}
	})
}
