package promtest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/metrics/prometheus"
)

// Chain returns the authentication chain the exporter's end-to-end tests
// and benchmarks use, so that every method of a chain shows in the
// counts: first "TOKEN", relevant only to clients that name that method
// (its result is then a failure, 0x87), so that every other client shows
// not_relevant for it; then "password", which passes alice, bob and carol
// with the password "secret" (carol's credential expires a second after
// it passed) and fails every other user name or password with 0x86.
func Chain() auth.Chain { return auth.Chain{tokenMethod{}, passwords{}} }

type tokenMethod struct{}

func (tokenMethod) MethodName() string { return "TOKEN" }
func (tokenMethod) Authenticate(_ context.Context, req *auth.Request) auth.Result {
	if req.AuthMethod != "TOKEN" {
		return auth.Result{}
	}
	return auth.FailResult(auth.NotAuthorized, nil)
}

type passwords struct{}

func (passwords) MethodName() string { return "password" }
func (passwords) Authenticate(_ context.Context, req *auth.Request) auth.Result {
	if !req.HasUsername {
		return auth.Result{}
	}
	switch {
	case string(req.Password) != "secret":
	case req.Username == "alice" || req.Username == "bob":
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Method: "password", Username: req.Username}))
	case req.Username == "carol":
		return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Method: "password", Username: req.Username,
			Expiry: time.Now().Add(time.Second)}))
	}
	return auth.FailResult(auth.BadUserNameOrPassword, nil)
}

// Side is one side of a benchmark that measures what the exporter costs:
// a Manager observed by Observer (nil: not observed, the default).
type Side struct {
	Name     string // "none" or "prometheus", for the sub-benchmark's name
	Observer auth.Observer
}

// Sides returns the two sides of such a benchmark: no Observer, and an
// exporter on a registry of its own.
func Sides(tb testing.TB) []Side {
	tb.Helper()
	exp, err := prometheus.New(prometheus.Config{Registry: prom.NewRegistry()})
	if err != nil {
		tb.Fatalf("promtest: %v", err)
	}
	return []Side{{"none", nil}, {"prometheus", exp}}
}

// NewManager returns a Manager that authenticates with Chain, allows
// every authenticated principal everything, discards its logs and reports
// to obs (nil: nothing observes it). It is closed when the test ends.
func NewManager(tb testing.TB, obs auth.Observer) *auth.Manager {
	tb.Helper()
	m, err := auth.NewManager(auth.Config{
		Authenticator: Chain(),
		Authorizer: auth.AuthorizerFunc(func(_ context.Context, p *auth.Principal, _ auth.Action) auth.Decision {
			if p == nil {
				return auth.Deny
			}
			return auth.Allow("all")
		}),
		Logger:   slog.New(slog.DiscardHandler),
		Observer: obs,
	})
	if err != nil {
		tb.Fatalf("promtest: %v", err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	return m
}
