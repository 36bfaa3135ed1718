package scramauth_test

import (
	"testing"

	"github.com/xdg-go/scram"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/scramauth"
)

// FuzzAuthenticate feeds arbitrary data at each step: nothing panics, every
// failure carries a documented code, and nothing passes (no input can carry a
// proof for a server nonce drawn after it was chosen).
func FuzzAuthenticate(f *testing.F) {
	for _, s := range [][2]string{
		{"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL", "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="},
		{"y,,n=mallory,r=abc", "c=eSws,r=abc,p=AAAA"},
		{"n,a=alice,n=alice,r=x,e=1", "c=biws,r=x,x=1,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
		{"p=tls-exporter,,n=alice,r=abc", ""},
		{"n,,n=carol=2C=3Dx,r=abc", "n,,n=alice,r=abc"},
		{"", ""},
		{"\x00\xff", "\xff\x00"},
	} {
		f.Add([]byte(s[0]), []byte(s[1]), byte(0), false)
		f.Add([]byte(s[0]), []byte(s[1]), byte(1), true)
	}
	a := newAuthenticator(f, scramauth.Config{})
	current := auth.NewPrincipal(auth.PrincipalInfo{Method: string(scramauth.SHA256), Username: "alice"})
	f.Fuzz(func(t *testing.T, first, final []byte, mech byte, reauth bool) {
		m := scramauth.Mechanisms[int(mech)%len(scramauth.Mechanisms)]
		req := &auth.Request{AuthMethod: string(m), AuthData: first, Reauth: reauth}
		if reauth {
			req.Current = current
		}
		res := a.Authenticate(ctx, req)
		checkNotPass(t, res)
		if res.Outcome != auth.Continue {
			return
		}
		req.Step, req.State, req.AuthData = 1, res.State, final
		checkNotPass(t, a.Authenticate(ctx, req))
		// A third packet after the exchange ended.
		req.Step = 2
		checkNotPass(t, a.Authenticate(ctx, req))
	})
}

func checkNotPass(t *testing.T, res auth.Result) {
	t.Helper()
	switch res.Outcome {
	case auth.Pass:
		t.Fatal("Pass without a valid proof")
	case auth.Fail:
		if res.Code != auth.NotAuthorized && res.Code != auth.BadAuthenticationMethod {
			t.Fatalf("undocumented code %v", res.Code)
		}
		if res.Err == nil {
			t.Fatal("Fail without an error")
		}
	case auth.Continue:
		if len(res.Data) == 0 || res.State == nil {
			t.Fatal("Continue without a challenge or state")
		}
	default:
		t.Fatalf("unexpected outcome %v", res.Outcome)
	}
}

// FuzzClientFinalEdit runs real exchanges and edits the client's genuine
// client-final-message at a fuzzed position: the result passes if and only
// if the edit changed nothing.
func FuzzClientFinalEdit(f *testing.F) {
	f.Add(uint16(0), uint8(0), []byte{})
	f.Add(uint16(3), uint8(1), []byte("x"))
	f.Add(uint16(200), uint8(4), []byte("AAAA"))
	f.Add(uint16(60), uint8(0), []byte(",e=1"))
	a := newAuthenticator(f, scramauth.Config{})
	client, err := scram.SHA256.NewClient("alice", "pencil", "")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pos uint16, del uint8, ins []byte) {
		conv := client.NewConversation()
		c1, _ := conv.Step("")
		res := a.Authenticate(ctx, &auth.Request{AuthMethod: string(scramauth.SHA256), AuthData: []byte(c1)})
		if res.Outcome != auth.Continue {
			t.Fatalf("client-first refused: %v", res.Err)
		}
		c2, err := conv.Step(string(res.Data))
		if err != nil {
			t.Fatal(err)
		}
		p := int(pos) % (len(c2) + 1)
		end := min(p+int(del), len(c2))
		edited := c2[:p] + string(ins) + c2[end:]
		out := a.Authenticate(ctx, &auth.Request{AuthMethod: string(scramauth.SHA256), Step: 1, State: res.State, AuthData: []byte(edited)})
		if edited == c2 {
			if out.Outcome != auth.Pass {
				t.Fatalf("the genuine message failed: %v", out.Err)
			}
			if _, err := conv.Step(string(out.Data)); err != nil || !conv.Valid() {
				t.Fatalf("server-final not verified: %v", err)
			}
			return
		}
		checkNotPass(t, out)
	})
}
