package auth_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/mqttauth/mqttauth/auth"
)

// printObserver prints the events it is told of.
type printObserver struct{ auth.NopObserver }

func (printObserver) Authenticated(e auth.AuthnEvent) { fmt.Println("authn", e.Method, e.Outcome) }
func (printObserver) Authorized(e auth.AuthzEvent)    { fmt.Println("authz", e.Kind, e.Result) }
func (printObserver) Session(e auth.SessionEvent)     { fmt.Println("session", e.Kind, e.Code) }

// An Observer is told of each method of the chain, each authorization and
// each session event; the audit log has one record per decision.
func ExampleObserver() {
	audit := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	m, err := auth.NewManager(auth.Config{
		Authenticator: auth.Chain{simple{}, auth.Named("password", password)},
		Authorizer:    auth.AllowAuthenticated,
		Logger:        audit,
		Observer:      printObserver{},
		Audit:         auth.AuditConfig{DenyLevel: slog.LevelWarn},
	})
	if err != nil {
		panic(err)
	}
	s := m.NewSession(auth.ConnFunc(func(auth.Packet) {}))
	ctx := context.Background()
	s.Connect(ctx, &auth.Request{ClientID: "c1", Username: "alice", HasUsername: true, Password: []byte("secret"), HasPassword: true})
	s.Authorize(ctx, auth.Action{Kind: auth.Publish, Topic: "a/b"})
	s.Close()
	// Output:
	// authn unnamed-1 NotRelevant
	// authn password Pass
	// authz Connect allow
	// session connected Success (0x00)
	// level=INFO msg="mqttauth decision" decision=pass client_id=c1 method=password reason_code="Success (0x00)" username=alice
	// authz Publish allow
	// session closed Success (0x00)
}
