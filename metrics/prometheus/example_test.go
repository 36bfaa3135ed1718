package prometheus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/metrics/prometheus"
	"github.com/mqttauth/mqttauth/metrics/prometheus/promtest"
)

// Export the events of a Manager: every method of the chain is counted on
// its own.
func Example() {
	exp, err := prometheus.New(prometheus.Config{})
	if err != nil {
		panic(err)
	}
	m, err := auth.NewManager(auth.Config{
		Authenticator: promtest.Chain(), // TOKEN (not relevant here), then password
		Authorizer:    auth.AllowAuthenticated,
		Logger:        slog.New(slog.DiscardHandler),
		Observer:      exp,
	})
	if err != nil {
		panic(err)
	}
	s := m.NewSession(nopConn{})
	s.Connect(context.Background(), &auth.Request{ClientID: "c1", Username: "alice", HasUsername: true,
		Password: []byte("secret"), HasPassword: true, ProtocolVersion: 5})
	s.Authorize(context.Background(), auth.Action{Kind: auth.Publish, Topic: "a/b"})
	s.Close()

	rec := httptest.NewRecorder()
	exp.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		for _, want := range []string{
			`mqttauth_authentication_total{method="TOKEN",result="not_relevant"}`,
			`mqttauth_authentication_total{method="password",result="pass"}`,
			`mqttauth_authorization_total{action="Publish",result="allow"}`,
			`mqttauth_sessions `,
		} {
			if strings.HasPrefix(line, want) {
				fmt.Println(line)
			}
		}
	}
	// Output:
	// mqttauth_authentication_total{method="TOKEN",result="not_relevant"} 1
	// mqttauth_authentication_total{method="password",result="pass"} 1
	// mqttauth_authorization_total{action="Publish",result="allow"} 1
	// mqttauth_sessions 0
}

// nopConn is an auth.Conn that ignores what the Session asks.
type nopConn struct{}

func (nopConn) Close(auth.Packet) {}
