package mqttconn_test

import (
	"fmt"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/mqttconn"
)

// A refusal is encoded for the client's protocol version: MQTT 3.1.1 has
// a return code for 0x87 but none for 0x95, so that client gets no
// CONNACK at all (the connection is closed), never "accepted".
func ExampleEncode() {
	for _, code := range []auth.ReasonCode{auth.NotAuthorized, auth.PacketTooLarge} {
		p := auth.Packet{Type: auth.CONNACK, Code: code}
		v5, _ := mqttconn.Encode(mqttconn.V5, p)
		v311, ok := mqttconn.Encode(mqttconn.V311, p)
		fmt.Printf("%v: MQTT 5 % x; MQTT 3.1.1 % x (send: %t)\n", code, v5[:4], v311, ok)
	}
	// Output:
	// Not authorized (0x87): MQTT 5 20 03 00 87; MQTT 3.1.1 20 02 00 05 (send: true)
	// Packet too large (0x95): MQTT 5 20 03 00 95; MQTT 3.1.1  (send: false)
}

// The malformed-packet checks every adapter applies to a CONNECT.
func ExampleConnect_Validate() {
	c := mqttconn.Connect{ProtocolVersion: 5, ClientID: "thermostat-1",
		Will: &mqttconn.Will{Topic: "telemetry/+/status", QoS: 1}}
	fmt.Println(c.Validate())
	// Output: CONNECT Will topic: mqttconn: malformed packet: wildcard in topic name "telemetry/+/status" [MQTT-3.3.2-2]
}
