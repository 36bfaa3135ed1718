package mqttconn

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
)

// Every failure code an authenticator, the Session or an adapter can
// produce: a refused MQTT 3.1.1 client gets a return code from 1 to 5 or
// no CONNACK, never 0 (the gateway sent 20 02 00 00 for 0x80, 0x82, 0x83
// and 0x95).
func TestEncodeV311RefusalNeverAccepted(t *testing.T) {
	for code := 0x80; code <= 0xFF; code++ {
		b, ok := Encode(V311, auth.Packet{Type: auth.CONNACK, Code: auth.ReasonCode(code)})
		want, has := auth.ReasonCode(code).ConnackV311()
		if !has {
			require.False(t, ok, "0x%02x: 3.1.1 has no return code, so no CONNACK", code)
			require.Nil(t, b)
			continue
		}
		require.True(t, ok)
		require.Equal(t, []byte{0x20, 2, 0, want}, b, "0x%02x", code)
		require.NotZero(t, b[3], "0x%02x encoded as accepted", code)
	}
}

func TestEncodeV311NoAuthNoDisconnect(t *testing.T) {
	for _, p := range []auth.Packet{
		{Type: auth.AUTH, Code: auth.ContinueAuthentication, Method: "M"},
		{Type: auth.DISCONNECT, Code: auth.NotAuthorized},
		{Type: auth.None},
	} {
		b, ok := Encode(V311, p)
		require.False(t, ok, "%v", p.Type)
		require.Nil(t, b)
	}
	b, ok := Encode(V311, auth.Packet{Type: auth.CONNACK, Code: auth.Success})
	require.True(t, ok)
	require.Equal(t, []byte{0x20, 2, 0, 0}, b)
}

func TestEncodeV5(t *testing.T) {
	b, ok := encodePacket(V5, auth.Packet{Type: auth.DISCONNECT, Code: auth.UseAnotherServer, Reason: "draining"}, "other:1883")
	require.True(t, ok)
	cp, err := packets.ReadPacket(bytes.NewReader(b))
	require.NoError(t, err)
	d := cp.Content.(*packets.Disconnect)
	require.Equal(t, byte(0x9C), d.ReasonCode)
	require.Equal(t, "other:1883", d.Properties.ServerReference)
	require.Equal(t, "draining", d.Properties.ReasonString)

	b, ok = Encode(V5, auth.Packet{Type: auth.AUTH, Code: auth.ContinueAuthentication, Method: "SCRAM-SHA-256", Data: []byte("x")})
	require.True(t, ok)
	cp, err = packets.ReadPacket(bytes.NewReader(b))
	require.NoError(t, err)
	a := cp.Content.(*packets.Auth)
	require.Equal(t, byte(0x18), a.ReasonCode)
	require.Equal(t, "SCRAM-SHA-256", a.Properties.AuthMethod)
	require.Equal(t, []byte("x"), a.Properties.AuthData)
	require.Equal(t, byte(0xF0), b[0], "AUTH fixed header flags are 0 [MQTT-3.15.1-1]")

	b, ok = Encode(V5, auth.Packet{Type: auth.CONNACK, Code: auth.NotAuthorized})
	require.True(t, ok)
	cp, err = packets.ReadPacket(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, byte(0x87), cp.Content.(*packets.Connack).ReasonCode)
}

func TestConnectValidate(t *testing.T) {
	valid := Connect{ProtocolVersion: 5, ClientID: "dev-1", Username: "u", AuthMethod: "K8S-SAT",
		Will: &Will{Topic: "dev/1/status", QoS: 1}}
	require.NoError(t, valid.Validate())
	for name, mut := range map[string]func(*Connect){
		"invalid UTF-8 method": func(c *Connect) { c.AuthMethod = "K8S-\xffSAT" },
		"NUL in client id":     func(c *Connect) { c.ClientID = "dev\x001" },
		"NUL in user name":     func(c *Connect) { c.Username = "a\x00" },
		"surrogate half":       func(c *Connect) { c.ClientID = "\xed\xa0\x80" },
		"Will wildcard +":      func(c *Connect) { c.Will.Topic = "dev/+/status" },
		"Will wildcard #":      func(c *Connect) { c.Will.Topic = "dev/#" },
		"Will empty topic":     func(c *Connect) { c.Will.Topic = "" },
		"Will QoS 3":           func(c *Connect) { c.Will.QoS = 3 },
	} {
		t.Run(name, func(t *testing.T) {
			c := valid
			w := *valid.Will
			c.Will = &w
			mut(&c)
			require.ErrorIs(t, c.Validate(), ErrMalformed)
		})
	}
}

func TestCheckTopic(t *testing.T) {
	for _, ok := range []string{"a", "a/b", "/", "a//b", "$SYS/x"} {
		require.NoError(t, CheckTopicName(ok), ok)
		require.NoError(t, CheckTopicFilter(ok), ok)
	}
	for _, bad := range []string{"", "a/+", "#", "a/#", "a+b", "a\x00", "\xff"} {
		require.ErrorIs(t, CheckTopicName(bad), ErrMalformed, "%q", bad)
	}
	for _, ok := range []string{"#", "+", "a/+/b", "a/#", "+/+", "$share/g/a/#"} {
		require.NoError(t, CheckTopicFilter(ok), ok)
	}
	for _, bad := range []string{"", "a/#/b", "a#", "a/b#", "a+/b", "a/+b", "\x00"} {
		require.ErrorIs(t, CheckTopicFilter(bad), ErrMalformed, "%q", bad)
	}
}

func TestAdmission(t *testing.T) {
	var a admission
	a.init(4, 2)
	v4 := func(s string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(s), Port: 1000} }
	x1, _ := a.admit(v4("192.0.2.1"))
	x2, _ := a.admit(v4("192.0.2.1"))
	require.NotNil(t, x1)
	require.NotNil(t, x2)
	_, why := a.admit(v4("192.0.2.1"))
	require.Equal(t, overSource, why, "the third from one address")
	// The same address as IPv4-mapped IPv6 is the same source.
	_, why = a.admit(&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 1})
	require.Equal(t, overSource, why)
	// Another source still gets in.
	y1, _ := a.admit(v4("192.0.2.2"))
	require.NotNil(t, y1)
	// One IPv6 /64 is one source.
	z1, _ := a.admit(&net.TCPAddr{IP: net.ParseIP("2001:db8::1")})
	require.NotNil(t, z1)
	_, why = a.admit(&net.TCPAddr{IP: net.ParseIP("2001:db8::2")})
	require.Equal(t, overPending, why, "the global bound (4) is reached first")
	x1.release()
	x1.release() // once
	require.EqualValues(t, 3, a.pending())
	z2, _ := a.admit(&net.TCPAddr{IP: net.ParseIP("2001:db8::ffff")})
	require.NotNil(t, z2)
	_, why = a.admit(v4("192.0.2.9"))
	require.Equal(t, overPending, why)
	for _, s := range []*slot{x2, y1, z1, z2} {
		s.release()
	}
	require.Zero(t, a.pending())
	require.Empty(t, a.src, "no key left behind")
}

func TestLimitsDefaults(t *testing.T) {
	l := Limits{}.withDefaults()
	require.Equal(t, Limits{MaxPacketSize: DefaultMaxPacketSize, ConnectTimeout: DefaultConnectTimeout,
		WriteTimeout: DefaultWriteTimeout, MaxPending: 256, MaxPendingPerSource: 32}, l)
	require.Equal(t, 1, Limits{MaxPending: 3}.withDefaults().MaxPendingPerSource)
	require.Error(t, Limits{MaxPending: 2, MaxPendingPerSource: 3}.Validate())
	require.Error(t, Limits{ConnectTimeout: -1}.Validate())
	require.Error(t, Limits{MaxPacketSize: 8}.Validate())
}

func FuzzConnectValidate(f *testing.F) {
	f.Add("dev-1", "user", "K8S-SAT", "a/b")
	f.Add("\x00", "\xff", "", "+")
	f.Fuzz(func(t *testing.T, id, user, method, will string) {
		c := Connect{ProtocolVersion: 5, ClientID: id, Username: user, AuthMethod: method, Will: &Will{Topic: will}}
		err := c.Validate()
		bad := will == "" || strings.ContainsAny(will, "+#")
		for _, s := range []string{id, user, method, will} {
			bad = bad || strings.ContainsRune(s, 0) || !utf8.ValidString(s)
		}
		if bad != (err != nil) {
			t.Fatalf("Validate(%q, %q, %q, %q) = %v", id, user, method, will, err)
		}
		_ = CheckTopicFilter(will)
	})
}
