package auth_test

import (
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
)

func TestPrincipalImmutable(t *testing.T) {
	attrs := map[string]string{"floor": "1", "city": "Seattle"}
	exp := t0.Add(time.Hour)
	p := auth.NewPrincipal(auth.PrincipalInfo{Method: "X.509", Username: "thermostat", ClientID: "t1", Attributes: attrs, Expiry: exp})
	attrs["floor"] = "99" // the caller's map is copied
	v, ok := p.Attribute("floor")
	require.True(t, ok)
	require.Equal(t, "1", v)
	_, ok = p.Attribute("missing")
	require.False(t, ok)
	require.Equal(t, map[string]string{"floor": "1", "city": "Seattle"}, maps.Collect(p.Attributes()))
	require.Equal(t, 2, p.NumAttributes())
	require.Equal(t, "X.509", p.Method())
	require.Equal(t, "thermostat", p.Username())
	require.Equal(t, "t1", p.ClientID())
	require.Equal(t, exp, p.Expiry())

	info := p.Info()
	info.Attributes["floor"] = "2" // changing a copy does not reach p
	q := auth.NewPrincipal(info)
	v, _ = p.Attribute("floor")
	require.Equal(t, "1", v)
	v, _ = q.Attribute("floor")
	require.Equal(t, "2", v)
}

func TestPrincipalManyAttributes(t *testing.T) {
	attrs := map[string]string{}
	for i := range 40 {
		attrs["k"+strconv.Itoa(i)] = "v" + strconv.Itoa(i)
	}
	p := auth.NewPrincipal(auth.PrincipalInfo{Attributes: attrs})
	for k, v := range attrs {
		got, ok := p.Attribute(k)
		require.True(t, ok, k)
		require.Equal(t, v, got)
	}
	_, ok := p.Attribute("k40")
	require.False(t, ok)
	var last string
	for k := range p.Attributes() {
		require.Less(t, last, k, "attributes come in name order")
		last = k
	}
}

func TestReasonCode(t *testing.T) {
	require.Equal(t, "Not authorized (0x87)", auth.NotAuthorized.String())
	require.Equal(t, "Success (0x00)", auth.Success.String())
	require.Equal(t, "Maximum connect time (0xa0)", auth.MaximumConnectTime.String())
	require.Equal(t, "reason code 0x42", auth.ReasonCode(0x42).String())
	require.True(t, auth.BadUserNameOrPassword.ValidConnackFailure())
	require.False(t, auth.BadUserNameOrPassword.ValidDisconnect(), "0x86 is CONNACK only")
	require.False(t, auth.MaximumConnectTime.ValidConnackFailure(), "0xA0 is DISCONNECT only")
	require.True(t, auth.BadAuthenticationMethod.ValidDisconnect())
	require.False(t, auth.ContinueAuthentication.IsFailure())
	require.Equal(t, "Continue", auth.Continue.String())
	require.Equal(t, "Outcome(9)", auth.Outcome(9).String())
	require.Equal(t, "Subscribe", auth.Subscribe.String())
	require.Equal(t, "DISCONNECT", auth.DISCONNECT.String())
	require.Equal(t, auth.NotAuthorized, auth.Deny.Code())
	require.Equal(t, auth.Success, auth.Allow("r").Code())
}

func TestConnackV311(t *testing.T) {
	for _, tc := range []struct {
		code auth.ReasonCode
		want byte
		ok   bool
	}{
		{auth.BadUserNameOrPassword, 4, true},
		{auth.NotAuthorized, 5, true},
		{auth.BadAuthenticationMethod, 5, true},
		{auth.Banned, 5, true},
		{auth.ServerUnavailable, 3, true},
		{auth.ConnectionRateExceeded, 3, true},
		{0x85, 2, true},
		{0x84, 1, true},
		{auth.ProtocolError, 0, false},
		{auth.PacketTooLarge, 0, false},
	} {
		got, ok := tc.code.ConnackV311()
		if got != tc.want || ok != tc.ok {
			t.Errorf("%v.ConnackV311() = %d, %v; want %d, %v", tc.code, got, ok, tc.want, tc.ok)
		}
	}
}

// FromConnackV311 inverts ConnackV311 for every code that has a 3.1.1
// return code: a refusal relayed from a 3.1.1 broker and encoded again
// for a 3.1.1 client keeps its return code.
func TestFromConnackV311(t *testing.T) {
	for rc := byte(1); rc <= 5; rc++ {
		back, ok := auth.FromConnackV311(rc).ConnackV311()
		require.True(t, ok)
		require.Equal(t, rc, back)
	}
	require.Equal(t, auth.Success, auth.FromConnackV311(0))
	require.Equal(t, auth.NotAuthorized, auth.FromConnackV311(0x80))
}
