package mochi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/adapters/mochi"
	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/jwtauth"
	"github.com/mqttauth/mqttauth/jwtauth/jwttest"
	"github.com/mqttauth/mqttauth/throttle"
)

const jwtAudience = "mqtt-broker"

// noopAuther satisfies paho, which panics on a success CONNACK naming a
// method when no AuthHandler is set; JWT is single-step, so it is never
// asked anything.
type noopAuther struct{}

func (noopAuther) Authenticate(*paho.Auth) *paho.Auth { return nil }
func (noopAuther) Authenticated()                     {}

func jwtBroker(t *testing.T, iss *jwttest.Issuer, wrap func(auth.Authenticator) auth.Authenticator, edit ...func(*jwtauth.Config)) (*auth.Manager, string) {
	t.Helper()
	cfg := iss.Config(jwtAudience)
	cfg.Logger = quiet
	cfg.ClaimsToAttributes = map[string]string{"site": "site"}
	for _, e := range edit {
		e(&cfg)
	}
	a, err := jwtauth.New(cfg)
	require.NoError(t, err)
	var authn auth.Authenticator = a
	if wrap != nil {
		authn = wrap(a)
	}
	m := newManager(t, auth.Config{Authenticator: authn, Authorizer: auth.AllowAuthenticated})
	_, _, addr := startBroker(t, mochi.Config{Manager: m})
	return m, addr
}

func dialJWT(t *testing.T, addr, id, token string) (*paho.Client, *paho.Connack, chan *paho.Disconnect, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	dis := make(chan *paho.Disconnect, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), AuthHandler: noopAuther{}, PacketTimeout: 5 * time.Second,
		OnServerDisconnect: func(d *paho.Disconnect) { dis <- d }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{AuthMethod: "JWT", AuthData: []byte(token)}})
	if err != nil {
		_ = conn.Close()
		return nil, ca, dis, err
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		<-c.Done()
	})
	return c, ca, dis, nil
}

// expiries returns the expiry of each live session's principal, by client
// identifier.
func expiries(t *testing.T, m *auth.Manager) map[string]time.Time {
	t.Helper()
	got := make(chan [2]any, 64)
	m.Recheck(context.Background(), func(_ context.Context, s *auth.Session) error {
		p := s.Principal()
		got <- [2]any{p.ClientID(), p.Expiry()}
		return nil
	})
	close(got)
	out := map[string]time.Time{}
	for kv := range got {
		out[kv[0].(string)] = kv[1].(time.Time)
	}
	return out
}

// TestJWT: a JWT in the CONNECT's Authentication Data over real sockets;
// re-authentication (AUTH 0x19) with a fresh token moves the session's
// expiry, so the client outlives its first token, while a client that does
// not re-authenticate is disconnected at exp (0xA0).
func TestJWT(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	m, addr := jwtBroker(t, iss, nil)
	now := time.Now()
	firstExp := now.Add(3 * time.Second).Truncate(time.Second)
	short := iss.Mint(t, jwttest.Claims{Subject: "device-1", Audience: []string{jwtAudience}, IssuedAt: now, Expiry: firstExp})

	renewing, ca, dis, err := dialJWT(t, addr, "renewing", short)
	require.NoError(t, err)
	require.Equal(t, byte(0x00), ca.ReasonCode)
	_, lapsingCA, lapsingDis, err := dialJWT(t, addr, "lapsing", short)
	require.NoError(t, err)
	require.Equal(t, byte(0x00), lapsingCA.ReasonCode)
	require.True(t, expiries(t, m)["renewing"].Equal(firstExp))

	freshExp := now.Add(time.Hour).Truncate(time.Second)
	fresh := iss.Mint(t, jwttest.Claims{Subject: "device-1", Audience: []string{jwtAudience}, IssuedAt: now, Expiry: freshExp})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	ar, err := renewing.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: "JWT", AuthData: []byte(fresh)}})
	cancel()
	require.NoError(t, err)
	require.True(t, ar.Success)
	require.True(t, expiries(t, m)["renewing"].Equal(freshExp), "re-authentication moved the expiry to the new exp")

	select {
	case d := <-lapsingDis:
		require.Equal(t, byte(auth.MaximumConnectTime), d.ReasonCode, "the client without a fresh token is disconnected at exp")
	case <-time.After(10 * time.Second):
		t.Fatal("the lapsing client outlived its token")
	}
	select {
	case d := <-dis:
		t.Fatalf("the re-authenticated client was disconnected: %v", d.ReasonCode)
	case <-time.After(500 * time.Millisecond):
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = renewing.Publish(ctx, &paho.Publish{Topic: "t", QoS: 1, Payload: []byte("x")})
	require.NoError(t, err, "the re-authenticated client still works after its first token's exp")

	t.Run("reauth_other_identity_DISCONNECT_0x87", func(t *testing.T) {
		c, _, dis, err := dialJWT(t, addr, "switcher", fresh)
		require.NoError(t, err)
		other := iss.Mint(t, jwttest.Claims{Subject: "device-2", Audience: []string{jwtAudience}})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: "JWT", AuthData: []byte(other)}})
		select {
		case d := <-dis:
			require.Equal(t, byte(0x87), d.ReasonCode)
		case <-time.After(5 * time.Second):
			t.Fatal("no DISCONNECT")
		}
	})
	t.Run("expired_token_CONNACK_0x87", func(t *testing.T) {
		old := iss.Mint(t, jwttest.Claims{Audience: []string{jwtAudience}, IssuedAt: now.Add(-2 * time.Hour), Expiry: now.Add(-time.Hour)})
		_, ca, _, err := dialJWT(t, addr, "old", old)
		require.Error(t, err)
		require.NotNil(t, ca)
		require.Equal(t, byte(0x87), ca.ReasonCode)
	})
	t.Run("issuer_down_CONNACK_0x88", func(t *testing.T) {
		iss2 := jwttest.NewIssuer(t)
		_, addr2 := jwtBroker(t, iss2, nil)
		iss2.SetDown(true)
		_, ca, _, err := dialJWT(t, addr2, "down", iss2.Mint(t, jwttest.Claims{Audience: []string{jwtAudience}}))
		require.Error(t, err)
		require.NotNil(t, ca)
		require.Equal(t, byte(0x88), ca.ReasonCode)
	})
}

// connect311 writes an MQTT 3.1.1 CONNECT with a user name and password and
// returns the CONNACK return code.
func connect311(t *testing.T, addr, id, user, pass string) byte {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	str := func(b *bytes.Buffer, s string) {
		_ = binary.Write(b, binary.BigEndian, uint16(len(s)))
		b.WriteString(s)
	}
	var body bytes.Buffer
	str(&body, "MQTT")
	body.Write([]byte{4, 0xC2, 0, 30}) // level 4; user name, password, clean session; keep alive 30
	str(&body, id)
	str(&body, user)
	str(&body, pass)
	pkt := []byte{0x10}
	for n := body.Len(); ; { // Remaining Length, a variable byte integer
		b := byte(n % 128)
		if n /= 128; n > 0 {
			pkt = append(pkt, b|0x80)
			continue
		}
		pkt = append(pkt, b)
		break
	}
	_, err = conn.Write(append(pkt, body.Bytes()...))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	ack := make([]byte, 4)
	_, err = io.ReadFull(conn, ack)
	require.NoError(t, err)
	require.Equal(t, []byte{0x20, 2}, ack[:2])
	return ack[3]
}

// TestPasswordJWT: an MQTT 3.1.1 client sends its token as the password.
func TestPasswordJWT(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	_, addr := jwtBroker(t, iss, nil, func(c *jwtauth.Config) { c.TokenFrom = jwtauth.FromPassword; c.PasswordUsername = "$jwt" })
	good := iss.Mint(t, jwttest.Claims{Audience: []string{jwtAudience}})
	require.Equal(t, byte(0), connect311(t, addr, "pw-ok", "$jwt", good))
	// Refused; the 3.1.1 return code (4 for 0x86, ReasonCode.ConnackV311)
	// is the adapter's to map, which on this branch still sends 0x86.
	require.NotZero(t, connect311(t, addr, "pw-bad", "$jwt", good[:len(good)-8]+"AAAAAAAA"), "a tampered token is refused")
	other := iss.Mint(t, jwttest.Claims{Audience: []string{"another-service"}})
	require.NotZero(t, connect311(t, addr, "pw-aud", "$jwt", other), "a token for another audience is refused")
}

// TestThrottleJWT: the throttle in front of the JWT authenticator refuses
// a flood of bad tokens with CONNACK 0x9F without verifying them. (An
// MQTT 3.1.1 client should get return code 3, auth.ReasonCode.ConnackV311;
// the adapter on this branch still hands mochi the v5 code.)
func TestThrottleJWT(t *testing.T) {
	iss := jwttest.NewIssuer(t)
	const burst = 3
	var verified atomic.Int64
	_, addr := jwtBroker(t, iss, func(a auth.Authenticator) auth.Authenticator {
		counting := auth.AuthenticatorFunc(func(ctx context.Context, req *auth.Request) auth.Result {
			verified.Add(1)
			return a.Authenticate(ctx, req)
		})
		th, err := throttle.New(counting, throttle.Config{Address: throttle.Limit{Burst: burst}, DisableIdentity: true, Logger: quiet})
		require.NoError(t, err)
		return th
	})
	good := iss.Mint(t, jwttest.Claims{Audience: []string{jwtAudience}})
	for range burst {
		_, ca, _, err := dialJWT(t, addr, "flood", good[:len(good)-8]+"AAAAAAAA")
		require.Error(t, err)
		require.Equal(t, byte(0x87), ca.ReasonCode)
	}
	_, ca, _, err := dialJWT(t, addr, "flood", good)
	require.Error(t, err, "even a valid token is refused from a throttled address")
	require.Equal(t, byte(0x9F), ca.ReasonCode)
	require.EqualValues(t, burst, verified.Load(), "refused attempts never reached the JWT authenticator")
}
