package conformance

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/mqttconn"
)

// Setup is what a [Factory] builds one case's broker from.
type Setup struct {
	// Auth is the suite's auth.Config: the Fixture's Authenticator and
	// Authorizer and, per case, ExchangeTimeout, ReauthInterval and
	// ReauthBurst. The Factory builds the broker's auth.Manager from it; it
	// may add a Logger and must keep the rest.
	Auth auth.Config
	// Limits are the connection layer's limits of the case (a zero field
	// means its default): the Factory gives them to the broker's
	// mqttconn.Server.
	Limits mqttconn.Limits
	// TLS, when set, is the server's TLS configuration of the case, which
	// the suite built with x509auth's ServerTLSConfig over a truststore
	// the case controls (Auth's Authenticator is then that x509auth
	// Authenticator): the Factory must serve Broker.Addr with it, a TLS
	// listener instead of plain TCP (it may Clone it, and must keep its
	// VerifyConnection). The suite fails the case, it does not skip it,
	// when the handshake does not reach that VerifyConnection. Nil (every
	// case but the tls ones) means plain TCP.
	TLS *tls.Config
}

// Broker is a broker a [Factory] started for one case. Every field but
// Saw is required.
type Broker struct {
	// Addr is the host:port of its listener on 127.0.0.1: plain TCP, or
	// TLS with Setup.TLS when that is set. The
	// suite connects every client there, subscribers included: what a
	// subscriber receives is what the broker really publishes (through the
	// gateway, what the broker behind it publishes).
	Addr string
	// Manager is the auth.Manager the adapter uses (built from
	// Setup.Auth): the suite re-checks its sessions.
	Manager *auth.Manager
	// Shutdown shuts the broker down in order through the connection
	// layer (mqttconn.Server.Shutdown): every connected MQTT 5 client is
	// sent DISCONNECT 0x8B (Server shutting down) and closed. It returns
	// when every client is gone (nil) or ctx ends (ctx's error).
	Shutdown func(ctx context.Context) error
	// Drain is Shutdown with DISCONNECT 0x9C (Use another server)
	// carrying serverReference as the Server Reference property
	// (mqttconn.Server.Drain).
	Drain func(ctx context.Context, serverReference string) error
	// Stop stops the broker; the suite calls it at the end of the case,
	// after the clients have disconnected. It must be safe after Shutdown
	// or Drain.
	Stop func()
	// Saw, optional, reports whether the broker itself (the one behind
	// the gateway, say) has seen a client with this client identifier
	// connect, as its log tells. The tls cases check with it that a
	// resumed client reached the broker and a revoked one did not; nil
	// leaves those checks out.
	Saw func(clientID string) bool
}

// Factory starts a broker whose adapter authenticates and authorizes with
// an auth.Manager built from s.Auth, with the connection layer's limits
// s.Limits, listening on 127.0.0.1. It reports setup failures with
// tb.Fatal.
type Factory func(tb testing.TB, s Setup) Broker

// Case is one case of the suite.
type Case struct {
	// Name is the subtest name, "group/behaviour".
	Name string
	// Run drives clients against b; f is the authorizer state behind b.
	Run func(t *testing.T, b Broker, f *Fixture)
	// Setup, when set, changes the case's Setup (its timeouts, its
	// limits) before the Factory sees it.
	Setup func(s *Setup)

	// prepare, when set, changes the case's Setup after Setup, with the
	// case's tb (the tls cases build their PKI and Setup.TLS there).
	prepare func(tb testing.TB, s *Setup)
}

// Cases returns the suite's cases, for adapters that run a subset with
// [RunCase].
func Cases() []Case {
	return append([]Case{
		{Name: "connect/password_pass", Run: connectPasswordPass},
		{Name: "connect/bad_password_0x86", Run: connectRefused(&paho.Connect{ClientID: "c", Username: UserAlice, UsernameFlag: true, Password: []byte("wrong"), PasswordFlag: true}, 0x86)},
		{Name: "connect/not_authorized_0x87", Run: connectRefused(&paho.Connect{ClientID: "c", Username: UserMallory, UsernameFlag: true, Password: []byte(PasswordGood), PasswordFlag: true}, 0x87)},
		{Name: "connect/token_fail_0x87", Run: connectRefused(withMethod("c", MethodToken, "bad"), 0x87)},
		{Name: "connect/unknown_method_0x8C", Run: connectRefused(withMethod("c", "no-such-method", "x"), 0x8C)},   // [MQTT-4.12.0-1]
		{Name: "connect/unavailable_0x88", Run: connectRefused(withMethod("c", MethodToken, "unavailable"), 0x88)}, // auth package choice
		{Name: "connect/no_credentials_0x87", Run: connectRefused(&paho.Connect{ClientID: "anonymous"}, 0x87)},     // nothing relevant
		{Name: "connect/token_pass_method_on_connack", Run: connectTokenPass},                                      // [MQTT-4.12.0-5]
		{Name: "multistep/two_rounds", Run: multistepTwoRounds},                                                    // [MQTT-4.12.0-2/3]
		{Name: "multistep/wrong_answer_0x87", Run: multistepWrongAnswer},                                           // [MQTT-4.12.0-4]
		{Name: "reauth/success_0x00", Run: reauthSuccess},                                                          // [MQTT-4.12.1-1]
		{Name: "reauth/failure_disconnect_0x87", Run: reauthFailure},                                               // [MQTT-4.12.1-2]
		{Name: "reauth/wrong_method_disconnect_0x8C", Run: reauthWrongMethod},                                      // [MQTT-4.12.0-7]
		{Name: "reauth/unavailable_0x18_stays_connected", Run: reauthUnavailable},                                  // auth package choice
		{Name: "expiry/disconnect_0xA0", Run: expiry},                                                              // Maximum connect time
		{Name: "deny/publish_puback_0x87", Run: denyPublish},                                                       // PUBACK 0x87
		{Name: "deny/subscribe_suback_0x87", Run: denySubscribe},                                                   // SUBACK 0x87
		{Name: "revocation/recheck_disconnect_0x87", Run: revocation},                                              // Manager.Recheck
		{Name: "will/forbidden_refused_0x87", Run: willForbidden},
		{Name: "will/forbidden_v311_rc5", Run: willForbiddenV311},
		{Name: "will/forbidden_retained", Run: willForbiddenRetained},
		{Name: "will/allowed_published", Run: willAllowedPublished}, // MQTT 5.0 3.1.2.5
		{Name: "will/dropped_after_policy_reload", Run: willDroppedAfterReload},
		{Name: "will/dropped_after_expiry", Run: willDroppedAfterExpiry},
		{Name: "v311/refusal_return_codes", Run: v311RefusalReturnCodes}, // [MQTT-3.2.2-5]
		{Name: "admission/per_source_share", Run: admissionPerSourceShare,
			Setup: func(s *Setup) { s.Limits.MaxPending, s.Limits.MaxPendingPerSource = admissionBound, admissionShare }},
		{Name: "shutdown/disconnect_0x8B", Run: shutdownDisconnect0x8B},
		{Name: "shutdown/drain_0x9C", Run: shutdownDrain0x9C},
		{Name: "malformed/connect_auth_method_invalid_utf8", Run: malformedConnect(connectAuthMethodInvalidUTF8, "[MQTT-1.5.4-1]")},
		{Name: "malformed/connect_client_id_nul", Run: malformedConnect(connectClientIDNul, "[MQTT-1.5.4-2]")},
		{Name: "malformed/publish_wildcard_topic", Run: malformedPublishWildcard}, // [MQTT-3.3.2-2]
		{Name: "exchange/timeout_from_config_0x87", Run: exchangeTimeoutFromConfig,
			Setup: func(s *Setup) { s.Auth.ExchangeTimeout = 2 * time.Second }},
		{Name: "exchange/slow_answer_within_config", Run: exchangeSlowAnswerWithinConfig,
			Setup: func(s *Setup) { s.Auth.ExchangeTimeout = 4 * time.Second }},
		{Name: "reauth/rate_bound_0x96", Run: reauthRateBound0x96,
			Setup: func(s *Setup) { s.Auth.ReauthInterval, s.Auth.ReauthBurst = time.Second, 3 }},
	}, tlsCases()...)
}

// Run runs every case of the suite against brokers made by f, each case
// with a broker of its own.
func Run(t *testing.T, f Factory) {
	for _, c := range Cases() {
		RunCase(t, f, c)
	}
}

// RunCase runs case c (one of [Cases]) as a subtest of t, against a broker
// of its own made by f.
func RunCase(t *testing.T, f Factory, c Case) {
	t.Run(c.Name, func(t *testing.T) {
		fx := &Fixture{}
		s := Setup{Auth: fx.Config()}
		if c.Setup != nil {
			c.Setup(&s)
		}
		if c.prepare != nil {
			c.prepare(t, &s)
		}
		b := f(t, s)
		if b.Addr == "" || b.Manager == nil || b.Shutdown == nil || b.Drain == nil || b.Stop == nil {
			t.Fatal("conformance: the Factory returned a Broker without Addr, Manager, Shutdown, Drain or Stop")
		}
		t.Cleanup(b.Stop) // runs after the clients' cleanups
		c.Run(t, b, fx)
	})
}

func withMethod(id, method, data string) *paho.Connect {
	return &paho.Connect{ClientID: id, CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: method, AuthData: []byte(data),
			// paho's zero value asks for no reason strings [MQTT-3.1.2-29].
			RequestProblemInfo: true}}
}

func password(id, user string) *paho.Connect {
	return &paho.Connect{ClientID: id, CleanStart: true, Username: user, UsernameFlag: true,
		Password: []byte(PasswordGood), PasswordFlag: true}
}

func mustConnect(t *testing.T, b Broker, cp *paho.Connect, answers map[string]string) (*Client, *paho.Connack) {
	t.Helper()
	c, ca, err := dial(t, b.Addr, cp, answers)
	if err != nil {
		code := -1
		if ca != nil {
			code = int(ca.ReasonCode)
		}
		t.Fatalf("connect %s: CONNACK 0x%02x: %v", cp.ClientID, code, err)
	}
	return c, ca
}

func connectPasswordPass(t *testing.T, b Broker, _ *Fixture) {
	c, ca := mustConnect(t, b, password("alice-1", UserAlice), nil)
	if ca.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x, want 0x00", ca.ReasonCode)
	}
	if ca.Properties != nil && ca.Properties.AuthMethod != "" {
		t.Fatalf("CONNACK carries method %q for a client that named none", ca.Properties.AuthMethod)
	}
	if code := c.PublishQoS1(t, TopicAllowed+"x", "hi"); code != 0 {
		t.Fatalf("PUBACK 0x%02x after connect, want 0x00", code)
	}
}

func connectRefused(cp *paho.Connect, want byte) func(*testing.T, Broker, *Fixture) {
	return func(t *testing.T, b Broker, _ *Fixture) {
		_, ca, err := dial(t, b.Addr, cp, nil)
		if err == nil {
			t.Fatalf("connected; want CONNACK 0x%02x", want)
		}
		if ca == nil {
			t.Fatalf("no CONNACK (%v); want CONNACK 0x%02x", err, want)
		}
		if ca.ReasonCode != want {
			t.Fatalf("CONNACK 0x%02x, want 0x%02x", ca.ReasonCode, want)
		}
	}
}

func connectTokenPass(t *testing.T, b Broker, _ *Fixture) {
	_, ca := mustConnect(t, b, withMethod("tok", MethodToken, "good"), nil)
	if ca.Properties == nil || ca.Properties.AuthMethod != MethodToken {
		t.Fatalf("success CONNACK does not carry the method %q [MQTT-4.12.0-5]", MethodToken)
	}
}

func multistepTwoRounds(t *testing.T, b Broker, _ *Fixture) {
	c, ca := mustConnect(t, b, withMethod("multi", MethodChallenge, "hello"),
		map[string]string{"round-1": "answer-1", "round-2": "answer-2"})
	got := c.Handler.Received()
	if len(got) != 2 {
		t.Fatalf("client received %d AUTH packets before CONNACK, want 2", len(got))
	}
	for i, a := range got {
		if a.ReasonCode != 0x18 || a.Properties == nil || a.Properties.AuthMethod != MethodChallenge {
			t.Fatalf("AUTH %d: code 0x%02x, properties %+v; want 0x18 with method %q", i, a.ReasonCode, a.Properties, MethodChallenge)
		}
	}
	if string(got[0].Properties.AuthData) != "round-1" || string(got[1].Properties.AuthData) != "round-2" {
		t.Fatalf("challenges %q, %q; want round-1, round-2", got[0].Properties.AuthData, got[1].Properties.AuthData)
	}
	if ca.Properties == nil || ca.Properties.AuthMethod != MethodChallenge || string(ca.Properties.AuthData) != "final" {
		t.Fatalf("CONNACK properties %+v; want method %q and data \"final\"", ca.Properties, MethodChallenge)
	}
	if code := c.PublishQoS1(t, TopicAllowed+"multi", "x"); code != 0 {
		t.Fatalf("PUBACK 0x%02x, want 0x00", code)
	}
}

func multistepWrongAnswer(t *testing.T, b Broker, _ *Fixture) {
	_, ca, err := dial(t, b.Addr, withMethod("multi", MethodChallenge, "hello"),
		map[string]string{"round-1": "answer-1", "round-2": "wrong"})
	if err == nil || ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("got CONNACK %+v, err %v; want CONNACK 0x87", ca, err)
	}
}

func reauth(t *testing.T, c *Client, method, data string) *paho.AuthResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	ar, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19,
		Properties: &paho.AuthProperties{AuthMethod: method, AuthData: []byte(data)}})
	if err != nil {
		t.Fatalf("re-authenticate: %v", err)
	}
	return ar
}

func reauthSuccess(t *testing.T, b Broker, _ *Fixture) {
	c, _ := mustConnect(t, b, withMethod("re", MethodToken, "good"), nil)
	ar := reauth(t, c, MethodToken, "good")
	if !ar.Success || ar.ReasonCode != 0x00 {
		t.Fatalf("re-authentication answered 0x%02x (success %v), want AUTH 0x00", ar.ReasonCode, ar.Success)
	}
	if code := c.PublishQoS1(t, TopicAllowed+"re", "x"); code != 0 {
		t.Fatalf("PUBACK 0x%02x after re-authentication, want 0x00", code)
	}
}

func expectClosed(t *testing.T, c *Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(Timeout):
		t.Fatal("the connection is still open after a failing DISCONNECT [MQTT-4.13.2-1]")
	}
}

func reauthFailure(t *testing.T, b Broker, _ *Fixture) {
	c, _ := mustConnect(t, b, withMethod("re", MethodToken, "good"), nil)
	ar := reauth(t, c, MethodToken, "bad")
	if ar.Success || ar.ReasonCode != 0x87 {
		t.Fatalf("re-authentication answered 0x%02x (success %v), want DISCONNECT 0x87", ar.ReasonCode, ar.Success)
	}
	expectClosed(t, c)
}

func reauthWrongMethod(t *testing.T, b Broker, _ *Fixture) {
	c, _ := mustConnect(t, b, withMethod("re", MethodToken, "good"), nil)
	ar := reauth(t, c, "another-method", "good")
	if ar.Success || ar.ReasonCode != 0x8C {
		t.Fatalf("re-authentication answered 0x%02x (success %v), want DISCONNECT 0x8C", ar.ReasonCode, ar.Success)
	}
	expectClosed(t, c)
}

func reauthUnavailable(t *testing.T, b Broker, _ *Fixture) {
	// The server answers AUTH 0x18; paho answers it through the handler
	// with "good", which the session takes as a retry and accepts.
	c, _ := mustConnect(t, b, withMethod("re", MethodToken, "good"), map[string]string{"": "good"})
	ar := reauth(t, c, MethodToken, "unavailable")
	got := c.Handler.Received()
	if len(got) != 1 || got[0].ReasonCode != 0x18 || got[0].Properties.AuthMethod != MethodToken {
		t.Fatalf("client received %d AUTH packets (%+v); want one AUTH 0x18 with the method", len(got), got)
	}
	if got[0].Properties.ReasonString == "" {
		t.Error("AUTH 0x18 for an unavailable authenticator carries no reason string")
	}
	if !ar.Success || ar.ReasonCode != 0x00 {
		t.Fatalf("retry answered 0x%02x (success %v), want AUTH 0x00", ar.ReasonCode, ar.Success)
	}
	if code := c.PublishQoS1(t, TopicAllowed+"still", "x"); code != 0 {
		t.Fatalf("PUBACK 0x%02x, want 0x00: the client should still be connected", code)
	}
}

func expiry(t *testing.T, b Broker, _ *Fixture) {
	const life = 1500 * time.Millisecond
	start := time.Now()
	c, _ := mustConnect(t, b, withMethod("exp", MethodToken, "expire:1500"), nil)
	d := c.WaitDisconnect(t, life+Timeout)
	late := time.Since(start) - life
	if d.ReasonCode != 0xA0 {
		t.Fatalf("DISCONNECT 0x%02x, want 0xA0 (Maximum connect time)", d.ReasonCode)
	}
	if late > time.Second {
		t.Fatalf("DISCONNECT came %v after expiry, want within 1s", late)
	}
	expectClosed(t, c)
}

func denyPublish(t *testing.T, b Broker, _ *Fixture) {
	sub, _ := mustConnect(t, b, password("sub", UserAlice), nil)
	if code := sub.SubscribeCode(t, TopicAllowed+"#"); code >= 0x80 {
		t.Fatalf("SUBACK 0x%02x for an allowed filter", code)
	}
	pub, _ := mustConnect(t, b, password("pub", UserAlice), nil)
	if code := pub.PublishQoS1(t, "denied/x", "no"); code != 0x87 {
		t.Fatalf("PUBACK 0x%02x for a denied topic, want 0x87", code)
	}
	if code := pub.PublishQoS1(t, TopicAllowed+"x", "yes"); code != 0x00 {
		t.Fatalf("PUBACK 0x%02x for an allowed topic, want 0x00", code)
	}
	select {
	case m := <-sub.Messages:
		if m.Topic != TopicAllowed+"x" {
			t.Fatalf("delivered %q, want %q", m.Topic, TopicAllowed+"x")
		}
	case <-time.After(Timeout):
		t.Fatal("the allowed message was not delivered")
	}
}

func denySubscribe(t *testing.T, b Broker, _ *Fixture) {
	c, _ := mustConnect(t, b, password("sub", UserAlice), nil)
	if code := c.SubscribeCode(t, "denied/#"); code != 0x87 {
		t.Fatalf("SUBACK 0x%02x for a denied filter, want 0x87", code)
	}
	if code := c.SubscribeCode(t, TopicAllowed+"#"); code != 0x01 {
		t.Fatalf("SUBACK 0x%02x for an allowed filter, want 0x01", code)
	}
}

func revocation(t *testing.T, b Broker, f *Fixture) {
	doomed, _ := mustConnect(t, b, password("doomed", UserDoomed), nil)
	alice, _ := mustConnect(t, b, password("alice", UserAlice), nil)
	f.Revoke()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	rep := b.Manager.Recheck(ctx, auth.CheckConnect(f.Authorizer()))
	if rep.Checked != 2 || rep.Disconnected != 1 {
		t.Fatalf("Recheck %+v, want 2 checked and 1 disconnected", rep)
	}
	if d := doomed.WaitDisconnect(t, Timeout); d.ReasonCode != 0x87 {
		t.Fatalf("DISCONNECT 0x%02x, want 0x87", d.ReasonCode)
	}
	expectClosed(t, doomed)
	if code := alice.PublishQoS1(t, TopicAllowed+"x", "x"); code != 0 {
		t.Fatalf("PUBACK 0x%02x for the client that kept access, want 0x00", code)
	}
}
