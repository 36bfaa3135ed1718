package conformance

import (
	"fmt"
	"testing"

	"github.com/mqttauth/mqttauth/auth"
)

// refusalCodes are the reason codes the authenticator chain can refuse a
// CONNECT with: every CONNACK failure code, and two that are not CONNACK
// codes (the Session refuses those with 0x87).
func refusalCodes() []auth.ReasonCode {
	var codes []auth.ReasonCode
	for c := 0x80; c <= 0xff; c++ {
		if auth.ReasonCode(c).ValidConnackFailure() {
			codes = append(codes, auth.ReasonCode(c))
		}
	}
	return append(codes, auth.ServerShuttingDown, auth.MessageRateTooHigh)
}

// v311RefusalReturnCodes: a refused MQTT 3.1.1 client gets the return code
// of auth.ReasonCode.ConnackV311 (1 to 5) and is closed, or, when 3.1.1 has
// no return code for the refusal, is closed without a CONNACK: it is never
// told 0, Connection Accepted (MQTT 3.1.1 3.2.2.3, [MQTT-3.2.2-5]). One
// subtest per code; "unavailable" is the unavailable authenticator (0x88).
func v311RefusalReturnCodes(t *testing.T, b Broker, _ *Fixture) {
	type refusal struct {
		name, user string
		code       auth.ReasonCode // what the Session refuses with
	}
	var rs []refusal
	for _, c := range refusalCodes() {
		sent := c
		if !c.ValidConnackFailure() {
			sent = auth.NotAuthorized
		}
		rs = append(rs, refusal{fmt.Sprintf("0x%02X", byte(c)), fmt.Sprintf("%s0x%02X", UserFailPrefix, byte(c)), sent})
	}
	rs = append(rs, refusal{"unavailable", UserUnavailable, auth.ServerUnavailable})
	for _, r := range rs {
		t.Run(r.name, func(t *testing.T) {
			c := dialRaw(t, b.Addr)
			got := c.connectV311(t, "v311-"+r.name, r.user, "any", nil)
			want, ok := r.code.ConnackV311()
			switch {
			case got == 0:
				t.Fatalf("CONNACK return code 0 (Connection Accepted) for a client refused with %v; want %s", r.code, v311Want(want, ok))
			case !ok && got != -1:
				t.Fatalf("CONNACK return code %d for a refusal with %v; want %s", got, r.code, v311Want(want, ok))
			case ok && got != int(want):
				t.Fatalf("CONNACK return code %d (-1: none) for a refusal with %v; want %s", got, r.code, v311Want(want, ok))
			}
			if ok {
				c.expectClosed(t, Timeout, "after a refusing CONNACK the server closes the connection [MQTT-3.2.2-5]", nil)
			}
		})
	}
}

func v311Want(rc byte, ok bool) string {
	if !ok {
		return "no CONNACK (MQTT 3.1.1 has no return code for it) and the connection closed"
	}
	return fmt.Sprintf("return code %d", rc)
}
