package gateway_test

import (
	"fmt"

	"github.com/mqttauth/mqttauth/gateway"
)

// MQTT 5 clients in front of a broker that speaks only MQTT 3.1.1 (NATS's
// MQTT listener, RabbitMQ's rabbitmq_mqtt): the setting as the example
// gateway reads it (-upstream-protocol, MqttAuthSettings
// upstream.protocol), for gateway.Config.UpstreamProtocol.
func ExampleParseUpstreamProtocol() {
	for _, s := range []string{"auto", "3.1.1", "5", "4.0"} {
		p, err := gateway.ParseUpstreamProtocol(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(s, "->", p, p == gateway.UpstreamV311)
	}
	// Output:
	// auto -> auto false
	// 3.1.1 -> 3.1.1 true
	// 5 -> 5 false
	// gateway: unknown upstream protocol (want 5, 3.1.1 or auto): "4.0"
}
