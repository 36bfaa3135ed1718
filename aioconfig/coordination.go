package aioconfig

import (
	"strings"
	"time"
)

// Coordination is MqttAuthSettings upstream.coordination (ours): gateways
// in front of one MQTT 3.1.1 broker or cluster tell each other through
// the broker which client identifiers they admit, so that an MQTT 5
// client whose session a connection through another gateway took over
// gets DISCONNECT 0x8E rather than 0x80 (gateway.Config.Coordination).
// The section's presence turns it on ("coordination: {}" for the
// defaults); without it, it is off. It needs upstream.protocol "3.1.1".
// The control connection's password is the gateway's upstream password.
type Coordination struct {
	// Topic of the notices; empty means "$mqttauth/takeover". No
	// wildcards. Reserve it in the broker's ACL to Username.
	Topic string `json:"topic,omitempty"`
	// ClientIDPrefix begins every gateway's control connection client
	// identifier; empty means "mqttauth-gw-".
	ClientIDPrefix string `json:"clientIdPrefix,omitempty"`
	// Username of the control connection; empty means
	// "mqttauth-gateway".
	Username string `json:"username,omitempty"`
	// NoticeTimeout bounds waiting for the broker's PUBACK of a notice
	// ("1s" by default).
	NoticeTimeout string `json:"noticeTimeout,omitempty"`
	// Grace is how long after the broker closed a client's leg a notice
	// is awaited ("250ms" by default).
	Grace string `json:"grace,omitempty"`
	// Window is how long before the close a notice counts ("10s" by
	// default).
	Window string `json:"window,omitempty"`
}

// Durations returns NoticeTimeout, Grace and Window; zero stands for an
// empty field (the gateway's default). The values were checked when the
// configuration was loaded.
func (c *Coordination) Durations() (notice, grace, window time.Duration) {
	parse := func(s string) time.Duration {
		d, _ := time.ParseDuration(s)
		return d
	}
	return parse(c.NoticeTimeout), parse(c.Grace), parse(c.Window)
}

// checkCoordination checks upstream.coordination, given upstream.protocol.
func checkCoordination(c *Coordination, protocol string) (field, value, hint string, err error) {
	if protocol != "3.1.1" {
		return "protocol", protocol, `"3.1.1" with coordination (an MQTT 5 broker says 0x8E itself)`, ErrInvalidValue
	}
	if strings.ContainsAny(c.Topic, "+#\x00") {
		return "coordination.topic", c.Topic, `a topic name without wildcards ("$mqttauth/takeover")`, ErrInvalidValue
	}
	for _, d := range []struct{ f, v string }{{"noticeTimeout", c.NoticeTimeout}, {"grace", c.Grace}, {"window", c.Window}} {
		if err := checkDuration(d.v); err != nil || d.v == "0s" {
			return "coordination." + d.f, d.v, "a positive Go duration: 250ms, 1s", ErrInvalidValue
		}
	}
	return "", "", "", nil
}
